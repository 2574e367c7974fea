//! The host side of the WIT `ssh` interface: commands on a target, where
//! a target goes, and the session table. Each goes through the gate
//! ([`super::authorize`]).

use std::sync::Arc;
use std::time::Duration;

use super::authorize::{Access, Command, SessionOp};
use super::target_from_wit;
use crate::plugins::ProgressSink;
use crate::plugins::bindings::{ssh, types};
use crate::plugins::bounded;
use crate::plugins::state::StoreState;
use crate::ssh::{self as core, SshError};

impl ssh::Host for StoreState {
    async fn exec(
        &mut self,
        target: types::Target,
        request: ssh::ExecRequest,
    ) -> Result<ssh::ExecOutput, SshError> {
        Ok(self.run(target, request).await?.output)
    }

    async fn exec_argv(
        &mut self,
        target: types::Target,
        request: ssh::ArgvRequest,
    ) -> Result<ssh::ExecOutput, SshError> {
        Ok(self.run_argv(target, request).await?.output)
    }

    async fn run(
        &mut self,
        target: types::Target,
        request: ssh::ExecRequest,
    ) -> Result<ssh::RunOutput, SshError> {
        let out = self
            .run_line(target, request, core::CommandOptions::default())
            .await?;
        Ok(run_output(out))
    }

    async fn run_argv(
        &mut self,
        target: types::Target,
        request: ssh::ArgvRequest,
    ) -> Result<ssh::RunOutput, SshError> {
        let out = self
            .run_argv_words(target, request, core::CommandOptions::default())
            .await?;
        Ok(run_output(out))
    }

    async fn run_with(
        &mut self,
        target: types::Target,
        request: ssh::ExecRequest,
        options: types::CommandOptions,
    ) -> Result<ssh::CommandOutput, SshError> {
        let options = options_from_wit(options);
        let out = self.run_line(target, request, options).await?;
        Ok(command_output(out))
    }

    async fn run_argv_with(
        &mut self,
        target: types::Target,
        request: ssh::ArgvRequest,
        options: types::CommandOptions,
    ) -> Result<ssh::CommandOutput, SshError> {
        let options = options_from_wit(options);
        let out = self.run_argv_words(target, request, options).await?;
        Ok(command_output(out))
    }

    async fn describe_target(&mut self, target: types::Target) -> Result<String, SshError> {
        let mut target = target_from_wit(target);
        let pass = self.authorize(Access::Describe(&mut target))?;
        pass.finish(self.sessions.resolve(&target).map(|d| d.display_name()))
    }

    async fn list_sessions(&mut self) -> wasmtime::Result<Vec<ssh::SessionInfo>> {
        // A component that may not see every session sees none.
        let Ok(pass) = self.authorize(Access::Sessions(SessionOp::List, None)) else {
            return Ok(Vec::new());
        };
        let sessions = pass.finish(Ok(self.visible_sessions())).unwrap_or_default();
        Ok(sessions.into_iter().map(session_to_wit).collect())
    }

    async fn close_session(&mut self, target: types::Target) -> Result<bool, SshError> {
        let target = target_from_wit(target);
        let pass = self.authorize(Access::Sessions(SessionOp::Close, Some(&target)))?;
        pass.finish(self.sessions.close(&target))
    }

    async fn close_all_sessions(&mut self) -> Result<u32, SshError> {
        let pass = self.authorize(Access::Sessions(SessionOp::CloseAll, None))?;
        pass.finish(Ok(self.sessions.close_all()))
    }

    async fn session_states(&mut self) -> wasmtime::Result<Vec<ssh::SessionState>> {
        let Ok(pass) = self.authorize(Access::Sessions(SessionOp::List, None)) else {
            return Ok(Vec::new());
        };
        let states = pass.finish(Ok(self.sessions.states())).unwrap_or_default();
        Ok(states
            .into_iter()
            .map(|s| ssh::SessionState {
                key: core::destination::display_name(s.alias.as_deref(), &s.key),
                cwd: s.cwd,
                variables: s.variables,
            })
            .collect())
    }

    async fn reset_session(&mut self, target: types::Target) -> Result<bool, SshError> {
        let target = target_from_wit(target);
        let pass = self.authorize(Access::Sessions(SessionOp::Close, Some(&target)))?;
        pass.finish(self.sessions.reset(&target))
    }
}

impl StoreState {
    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn run_line(
        &mut self,
        target: types::Target,
        request: ssh::ExecRequest,
        options: core::CommandOptions,
    ) -> Result<core::ExecOutput, SshError> {
        let command = core::Command::Line(request.command);
        let limits = (request.timeout_ms, request.max_output_bytes);
        self.run_command(target, command, limits, options).await
    }

    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn run_argv_words(
        &mut self,
        target: types::Target,
        request: ssh::ArgvRequest,
        options: core::CommandOptions,
    ) -> Result<core::ExecOutput, SshError> {
        if request.argv.is_empty() {
            return Err(SshError::InvalidArgument("argv must not be empty".into()));
        }
        let command = core::Command::Argv(request.argv);
        let limits = (request.timeout_ms, request.max_output_bytes);
        self.run_command(target, command, limits, options).await
    }

    /// Every way to run a command: through the gate, then the SSH core.
    async fn run_command(
        &mut self,
        target: types::Target,
        command: core::Command,
        (timeout_ms, max_output_bytes): (Option<u64>, Option<u64>),
        options: core::CommandOptions,
    ) -> Result<core::ExecOutput, SshError> {
        let mut target = target_from_wit(target);
        options.check().map_err(SshError::InvalidArgument)?;
        let access = Access::command(&mut target, Command::from(&command), &options);
        let pass = self.authorize(access)?;
        let mut request = core::ExecRequest {
            command,
            timeout: timeout_ms.map(Duration::from_millis),
            max_output_bytes: self.grant.clamp_output(max_output_bytes),
            cancel: self.cancel.clone(),
            progress: self.progress.clone().map(exec_progress),
            options,
        };
        let table = self.sessions_for(&target);
        // A session shared between clients keeps no state for any of them.
        request.options.fresh = self.shared.as_ref().is_some_and(|s| std::ptr::eq(s, table));
        let result = table.exec(&target, &request).await;
        pass.finish(result)
    }
}

/// The WIT options as the SSH core takes them; secrets go straight into
/// zeroizing buffers.
pub(super) fn options_from_wit(o: types::CommandOptions) -> core::CommandOptions {
    core::CommandOptions {
        cwd: o.cwd,
        env: o.env,
        stdin: o.stdin,
        sudo: o.sudo.map(|s| core::Sudo {
            user: s.user,
            password: s.password.map(zeroize::Zeroizing::new),
        }),
        fresh: false,
    }
}

fn session_to_wit(s: core::SessionInfo) -> ssh::SessionInfo {
    ssh::SessionInfo {
        key: core::destination::display_name(s.alias.as_deref(), &s.key),
        username: s.key.username,
        host: s.key.host,
        port: s.key.port,
        active_commands: s.active_commands,
        age_ms: s.age.as_millis() as u64,
        idle_ms: s.idle.as_millis() as u64,
    }
}

fn command_output(out: core::ExecOutput) -> ssh::CommandOutput {
    let cwd = out.cwd.clone();
    let notes = out.notes.clone();
    let run = run_output(out);
    ssh::CommandOutput {
        output: run.output,
        remote_stopped: run.remote_stopped,
        cwd,
        notes,
    }
}

fn run_output(out: core::ExecOutput) -> ssh::RunOutput {
    ssh::RunOutput {
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
