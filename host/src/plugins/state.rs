//! Per-call store state, and the host side of the WIT imports (`ssh`,
//! `log`) that a tool component calls.
//!
//! Guest-visible failures are WIT `ssh-error` values; a wasmtime `Err`
//! (a trap) is reserved for host bugs and limits.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use zeroize::Zeroizing;

use super::ProgressSink;
use super::bindings::{jobs, log, progress, ssh, types};
use super::bounded;
use super::grants::{Action, Grant, Resolved};
use crate::audit::{self, AuditLog};
use crate::ssh as core;

/// Everything one tool call's store holds.
pub(crate) struct StoreState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: super::limits::MemoryBudget,
    pub(crate) component: Arc<str>,
    pub(crate) grant: Arc<Grant>,
    pub(crate) sessions: core::SessionManager,
    /// The call's time budget; host imports that wait on SSH stop it.
    pub(crate) clock: super::clock::GuestClock,
    pub(crate) stderr: super::stderr::GuestStderr,
    /// What the `log` import may still write in this call.
    pub(crate) log: super::bounded::LogBudget,
    /// Cancelled when the MCP client cancels the call.
    pub(crate) cancel: CancellationToken,
    /// Where progress goes, when the client asked for it.
    pub(crate) progress: Option<ProgressSink>,
    pub(crate) audit: Option<Arc<AuditLog>>,
    /// The tool being called, for the audit log.
    pub(crate) tool: Arc<str>,
}

impl StoreState {
    /// Components that may see everything see every job; others only
    /// their own.
    fn job_owner(&self) -> Option<&str> {
        (!self.grant.see_all_sessions()).then_some(&*self.component)
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl From<core::SshError> for types::SshError {
    fn from(e: core::SshError) -> Self {
        use core::SshError as E;
        match e {
            E::InvalidArgument(m) => Self::InvalidArgument(m),
            E::Connect(m) => Self::Connect(m),
            E::Auth(m) => Self::Auth(m),
            E::HostKey(m) => Self::HostKey(m),
            E::Timeout(m) => Self::Timeout(m),
            E::Channel(m) => Self::Channel(m),
            E::ConnectionLost(m) => Self::ConnectionLost(m),
            E::Denied(m) => Self::Denied(m),
            E::Cancelled(m) => Self::Cancelled(m),
            E::Other(m) => Self::Other(m),
        }
    }
}

fn target_from_wit(t: types::Target) -> core::Target {
    core::Target {
        host: t.host,
        username: t.username,
        port: t.port,
        credentials: t.credentials.map(|c| core::Credentials {
            password: c.password.map(Zeroizing::new),
            key_file: c.key_file.map(Into::into),
            passphrase: c.passphrase.map(Zeroizing::new),
        }),
        peer_check: None,
    }
}

fn stream_to_wit(s: core::StreamOutput) -> ssh::StreamOutput {
    ssh::StreamOutput {
        head: s.head,
        tail: s.tail,
        total_bytes: s.total_bytes,
        truncated: s.truncated,
    }
}

impl types::Host for StoreState {}

/// The message a guest-visible error carries.
fn types_error_message(e: &types::SshError) -> String {
    use types::SshError as E;
    match e {
        E::InvalidArgument(m)
        | E::Connect(m)
        | E::Auth(m)
        | E::HostKey(m)
        | E::Timeout(m)
        | E::Channel(m)
        | E::ConnectionLost(m)
        | E::Denied(m)
        | E::Cancelled(m)
        | E::Other(m) => m.clone(),
    }
}

impl ssh::Host for StoreState {
    async fn exec(
        &mut self,
        target: types::Target,
        request: ssh::ExecRequest,
    ) -> wasmtime::Result<Result<ssh::ExecOutput, types::SshError>> {
        Ok(self.run(target, request).await?.map(|r| r.output))
    }

    async fn exec_argv(
        &mut self,
        target: types::Target,
        request: ssh::ArgvRequest,
    ) -> wasmtime::Result<Result<ssh::ExecOutput, types::SshError>> {
        Ok(self.run_argv(target, request).await?.map(|r| r.output))
    }

    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn run(
        &mut self,
        target: types::Target,
        request: ssh::ExecRequest,
    ) -> wasmtime::Result<Result<ssh::RunOutput, types::SshError>> {
        let mut target = target_from_wit(target);
        if let Err(denied) = self.authorize(&mut target, Action::Shell, Some(&request.command)) {
            return Ok(Err(denied));
        }
        let request = core::ExecRequest {
            command: core::Command::Line(request.command),
            timeout: request.timeout_ms.map(Duration::from_millis),
            max_output_bytes: self.grant.clamp_output(request.max_output_bytes),
            cancel: self.cancel.clone(),
            progress: self.progress.clone().map(exec_progress),
        };
        self.run_exec(target, request, None).await
    }

    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn run_argv(
        &mut self,
        target: types::Target,
        request: ssh::ArgvRequest,
    ) -> wasmtime::Result<Result<ssh::RunOutput, types::SshError>> {
        let mut target = target_from_wit(target);
        if request.argv.is_empty() {
            return Ok(Err(types::SshError::InvalidArgument(
                "argv must not be empty".into(),
            )));
        }
        if let Err(denied) = self.authorize(&mut target, Action::Argv(&request.argv), None) {
            return Ok(Err(denied));
        }
        let argv = request.argv;
        let request = core::ExecRequest {
            command: core::Command::Argv(argv.clone()),
            timeout: request.timeout_ms.map(Duration::from_millis),
            max_output_bytes: self.grant.clamp_output(request.max_output_bytes),
            cancel: self.cancel.clone(),
            progress: self.progress.clone().map(exec_progress),
        };
        self.run_exec(target, request, Some(argv)).await
    }

    async fn describe_target(
        &mut self,
        target: types::Target,
    ) -> wasmtime::Result<Result<String, types::SshError>> {
        let mut target = target_from_wit(target);
        if let Err(denied) = self.authorize(&mut target, Action::Describe, None) {
            return Ok(Err(denied));
        }
        Ok(self
            .sessions
            .resolve(&target)
            .map(|d| d.display_name())
            .map_err(Into::into))
    }

    async fn list_sessions(&mut self) -> wasmtime::Result<Vec<ssh::SessionInfo>> {
        if !self.grant.see_all_sessions() {
            return Ok(Vec::new());
        }
        Ok(self
            .sessions
            .list()
            .into_iter()
            .map(|s| ssh::SessionInfo {
                key: core::destination::display_name(s.alias.as_deref(), &s.key),
                username: s.key.username,
                host: s.key.host,
                port: s.key.port,
                active_commands: s.active_commands,
                age_ms: s.age.as_millis() as u64,
                idle_ms: s.idle.as_millis() as u64,
            })
            .collect())
    }

    async fn close_session(
        &mut self,
        target: types::Target,
    ) -> wasmtime::Result<Result<bool, types::SshError>> {
        if !self.grant.see_all_sessions() {
            let why = format!("component {} may not close sessions", self.component);
            return Ok(Err(self.denied(why)));
        }
        Ok(self
            .sessions
            .close(&target_from_wit(target))
            .map_err(Into::into))
    }

    async fn close_all_sessions(&mut self) -> wasmtime::Result<Result<u32, types::SshError>> {
        if !self.grant.see_all_sessions() {
            let why = format!("component {} may not close sessions", self.component);
            return Ok(Err(self.denied(why)));
        }
        Ok(Ok(self.sessions.close_all()))
    }
}

impl StoreState {
    /// The denial the guest gets, with its reason clipped: the reason
    /// may quote a host or argv word of any size.
    fn denied(&self, why: String) -> types::SshError {
        let why = bounded::clip(&why, bounded::MAX_FIELD).into_owned();
        tracing::warn!(component = %self.component, "denied: {why}");
        types::SshError::Denied(why)
    }

    /// The one gate of every SSH import: whether the grant lets this
    /// component do `action` (running `command`, if a shell line) where
    /// `target` really goes, as ssh_config resolves it. Arms the target's
    /// check of the address connected to when the grant allows the host
    /// only by address. A refusal of a command is audited; every refusal
    /// is logged.
    fn authorize(
        &self,
        target: &mut core::Target,
        action: Action<'_>,
        command: Option<&str>,
    ) -> Result<(), types::SshError> {
        let argv = match action {
            Action::Argv(argv) => Some(argv),
            _ => None,
        };
        let refuse = |why: String| {
            if !matches!(action, Action::Describe) {
                self.audit_ssh(target, command, argv, Some(&why), None);
            }
            self.denied(why)
        };
        self.grant.granted().map_err(refuse)?;
        let route = self.resolve_route(target).inspect_err(|e| {
            // A target that cannot even be resolved is refused too, and
            // the audit log says so.
            if !matches!(action, Action::Describe) {
                let why = types_error_message(e);
                self.audit_ssh(target, command, argv, Some(&why), None);
            }
        })?;
        let peer_check = self
            .grant
            .authorize(target, &route, action)
            .map_err(refuse)?;
        target.peer_check = peer_check;
        Ok(())
    }

    /// Where `target` goes: its ssh_config host name, port and route, and
    /// the port ssh_config gives when the call names none.
    fn resolve_route(&self, target: &core::Target) -> Result<Resolved, types::SshError> {
        let dest = self.sessions.resolve(target)?;
        let default_port = match target.port {
            None => dest.key.port,
            Some(_) => {
                let portless = core::Target {
                    host: target.host.clone(),
                    username: target.username.clone(),
                    ..core::Target::default()
                };
                self.sessions.resolve(&portless)?.key.port
            }
        };
        Ok(Resolved {
            given: core::validate_host(&target.host)?.to_ascii_lowercase(),
            host_name: dest.key.host,
            port: dest.key.port,
            default_port,
            direct: matches!(dest.route, core::destination::Route::Direct),
        })
    }

    /// Records an SSH command (allowed, or denied for `denied`) in the
    /// audit log, with its outcome when it ran.
    fn audit_ssh(
        &self,
        target: &core::Target,
        command: Option<&str>,
        argv: Option<&[String]>,
        denied: Option<&str>,
        result: Option<&Result<core::ExecOutput, core::SshError>>,
    ) {
        let Some(log) = &self.audit else { return };
        let (out, err) = match result {
            Some(Ok(o)) => (Some(o), None),
            Some(Err(e)) => (
                None,
                Some(bounded::clip(&e.to_string(), bounded::MAX_FIELD).into_owned()),
            ),
            None => (None, None),
        };
        // Everything below may come from the guest, at any size.
        let argv = argv.map(bounded::argv);
        let command = match argv {
            Some(_) => None,
            None => command.map(|c| bounded::clip(c, bounded::MAX_COMMAND)),
        };
        log.record(&audit::Entry {
            kind: "ssh_command",
            component: &self.component,
            tool: Some(&self.tool),
            target: Some(bounded::target(
                &target.host,
                target.username.as_deref(),
                target.port,
            )),
            command: command.as_deref(),
            argv: argv.as_deref(),
            decision: denied.map_or_else(
                || "allowed".into(),
                |why| format!("denied: {}", bounded::clip(why, bounded::MAX_FIELD)),
            ),
            exit_status: out.and_then(|o| o.exit_status),
            exit_signal: out.and_then(|o| o.exit_signal.as_deref()),
            error: err,
            duration_ms: out.and_then(|o| audit::millis(o.duration)),
            bytes_out: out.map(|o| o.stdout.total_bytes + o.stderr.total_bytes),
            ..audit::Entry::default()
        });
    }

    /// Runs a granted command within the component's concurrency limit.
    async fn run_exec(
        &mut self,
        target: core::Target,
        request: core::ExecRequest,
        argv: Option<Vec<String>>,
    ) -> wasmtime::Result<Result<ssh::RunOutput, types::SshError>> {
        let line = match &request.command {
            core::Command::Line(l) => Some(l.as_str()),
            core::Command::Argv(_) => None,
        };
        let _slot = match self.grant.slot() {
            Ok(slot) => slot,
            Err(why) => {
                self.audit_ssh(&target, line, argv.as_deref(), Some(&why), None);
                return Ok(Err(self.denied(why)));
            }
        };
        let in_host = self.clock.in_host();
        let result = self.sessions.exec(&target, &request).await;
        drop(in_host);
        self.audit_ssh(&target, line, argv.as_deref(), None, Some(&result));
        let out = match result {
            Ok(out) => out,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(Ok(ssh::RunOutput {
            remote_stopped: out.remote_stopped,
            output: ssh::ExecOutput {
                session: out.session,
                exit_status: out.exit_status,
                exit_signal: out.exit_signal,
                stdout: stream_to_wit(out.stdout),
                stderr: stream_to_wit(out.stderr),
                duration_ms: out.duration.as_millis() as u64,
                timed_out: out.timed_out,
                cancelled: out.cancelled,
            },
        }))
    }
}

/// Turns the SSH core's progress into the client's: `progress` is the
/// elapsed seconds (it must grow), the message says bytes and last line.
fn exec_progress(sink: ProgressSink) -> core::ProgressFn {
    core::ProgressFn(Arc::new(move |p: core::Progress| {
        let mut message = format!(
            "{} bytes received, {:.1} s elapsed",
            p.bytes,
            p.elapsed.as_secs_f64()
        );
        if let Some(line) = p.last_line {
            message.push_str("; last line: ");
            message.push_str(&line);
        }
        sink(p.elapsed.as_secs_f64(), None, Some(message));
    }))
}

impl progress::Host for StoreState {
    async fn report(
        &mut self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> wasmtime::Result<()> {
        // The sink was made bounded (finite values, short messages) when
        // the call started. It never waits, so its time stays the guest's:
        // a loop of cheap imports must not escape the budget.
        if let Some(sink) = &self.progress {
            sink(progress, total, message);
        }
        Ok(())
    }
}

fn job_to_wit(j: core::JobInfo) -> jobs::JobInfo {
    jobs::JobInfo {
        id: j.id,
        session: j.session,
        command: j.command,
        state: match j.state {
            core::JobState::Running => jobs::JobState::Running,
            core::JobState::Exited => jobs::JobState::Exited,
            core::JobState::Killed => jobs::JobState::Killed,
            core::JobState::Lost => jobs::JobState::Lost,
        },
        exit_status: j.exit_status,
        exit_signal: j.exit_signal,
        duration_ms: j.duration.as_millis() as u64,
        stdout_bytes: j.stdout_bytes,
        stderr_bytes: j.stderr_bytes,
        remote_stopped: j.remote_stopped,
    }
}

/// Largest read of a job's output in one call.
const MAX_JOB_READ: u32 = 4 << 20;

impl jobs::Host for StoreState {
    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn start(
        &mut self,
        target: types::Target,
        request: jobs::JobRequest,
    ) -> wasmtime::Result<Result<jobs::JobInfo, types::SshError>> {
        let mut target = target_from_wit(target);
        if let Err(denied) = self.authorize(&mut target, Action::Shell, Some(&request.command)) {
            return Ok(Err(denied));
        }
        // The job holds the slot until it ends, not only while it starts.
        let slot = match self.grant.slot() {
            Ok(slot) => slot,
            Err(why) => {
                self.audit_ssh(&target, Some(&request.command), None, Some(&why), None);
                return Ok(Err(self.denied(why)));
            }
        };
        // A job is audited when it starts; its end is in get_command_status.
        self.audit_ssh(&target, Some(&request.command), None, None, None);
        let request = core::JobRequest {
            command: request.command,
            timeout: request.timeout_ms.map(Duration::from_millis),
            slot,
        };
        let owner = self.component.clone();
        let in_host = self.clock.in_host();
        let result = self.sessions.start_job(&target, request, owner).await;
        drop(in_host);
        Ok(result.map(job_to_wit).map_err(Into::into))
    }

    async fn status(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<jobs::JobInfo, types::SshError>> {
        let owner = self.job_owner();
        Ok(self
            .sessions
            .jobs()
            .status(&id, owner)
            .map(job_to_wit)
            .map_err(Into::into))
    }

    async fn read(
        &mut self,
        id: String,
        which: jobs::OutputStream,
        offset: u64,
        max_bytes: u32,
    ) -> wasmtime::Result<Result<jobs::Chunk, types::SshError>> {
        let which = match which {
            jobs::OutputStream::Stdout => core::Stream::Stdout,
            jobs::OutputStream::Stderr => core::Stream::Stderr,
        };
        let max = max_bytes.min(MAX_JOB_READ) as usize;
        let owner = self.job_owner();
        Ok(self
            .sessions
            .jobs()
            .read(&id, owner, which, offset, max)
            .map(|c| jobs::Chunk {
                data: c.data,
                offset: c.offset,
                next_offset: c.next_offset,
                dropped: c.dropped,
                complete: c.complete,
            })
            .map_err(Into::into))
    }

    async fn interrupt(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<jobs::JobInfo, types::SshError>> {
        let owner = self.job_owner().map(str::to_string);
        let in_host = self.clock.in_host();
        let result = self.sessions.jobs().interrupt(&id, owner.as_deref()).await;
        drop(in_host);
        Ok(result.map(job_to_wit).map_err(Into::into))
    }

    async fn list_jobs(&mut self) -> wasmtime::Result<Vec<jobs::JobInfo>> {
        Ok(self
            .sessions
            .jobs()
            .list(self.job_owner())
            .into_iter()
            .map(job_to_wit)
            .collect())
    }
}

impl log::Host for StoreState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let Some(message) = self.log.admit(&message) else {
            return Ok(());
        };
        let component = &*self.component;
        match level {
            log::Level::Trace => tracing::trace!(component, "{message}"),
            log::Level::Debug => tracing::debug!(component, "{message}"),
            log::Level::Info => tracing::info!(component, "{message}"),
            log::Level::Warn => tracing::warn!(component, "{message}"),
            log::Level::Error => tracing::error!(component, "{message}"),
        }
        Ok(())
    }
}
