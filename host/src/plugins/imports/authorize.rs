//! The one gate of every import that touches SSH, as Spin's key-value
//! factor checks permission once and Zed grants capabilities in one place.
//! An import asks [`StoreState::authorize`] for a [`Pass`], does its work,
//! and hands the outcome to [`Pass::finish`]. The gate:
//!
//! - checks the grant where the target really goes (ssh_config applied),
//!   and arms the target's check of the address connected to when the
//!   grant allows the host only by address; a command through sudo also
//!   needs the `sudo` grant;
//! - takes the component's concurrency slot, held by the pass (or, for a
//!   job, by the job until it ends);
//! - stops the guest's clock while the host works on its behalf;
//! - writes the audit line, allowed or denied, with the outcome.
//!
//! Commands, jobs and file operations are audited whatever the decision
//! (a file line has the path, the operation and the bytes, never content);
//! listing and closing
//! sessions only when refused (an allowed one runs nothing remote);
//! `describe-target` connects nothing, so its refusals are only logged.
//! Stopping a job is checked by the job table (a component stops only its
//! own jobs unless it may see every session) and is only timed here.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::audit::{self, AuditLog};
use crate::plugins::bounded;
use crate::plugins::clock::InHost;
use crate::plugins::grants::{Action, Resolved, both_peer_checks};
use crate::plugins::state::StoreState;
use crate::ssh::{self as core, SshError};

/// What an import asks the gate for.
pub(crate) enum Access<'a> {
    /// Learn where a target goes: the grant is checked, nothing runs.
    Describe(&'a mut core::Target),
    /// Run a command or start a job on a target.
    Command(&'a mut core::Target, Command<'a>),
    /// The same through sudo, as this user.
    SudoCommand(&'a mut core::Target, Command<'a>, &'a str),
    /// Stop one of the component's jobs.
    StopJob,
    /// List or close sessions: needs `all_sessions`.
    Sessions(SessionOp, Option<&'a core::Target>),
    /// A file operation on a target.
    File(&'a mut core::Target, FileAccess<'a>),
}

/// A file operation as the guest gave it, for the grant and the audit line.
#[derive(Clone, Copy)]
pub(crate) struct FileAccess<'a> {
    pub(crate) op: FileOp,
    /// The remote path.
    pub(crate) path: &'a str,
    /// The local path of an upload or download.
    pub(crate) local_path: Option<&'a str>,
}

/// A `files` import, named as in the WIT.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileOp {
    Stat,
    Read,
    Write,
    List,
    Upload,
    Download,
}

impl FileOp {
    fn name(self) -> &'static str {
        match self {
            Self::Stat => "stat",
            Self::Read => "read",
            Self::Write => "write",
            Self::List => "list-directory",
            Self::Upload => "upload",
            Self::Download => "download",
        }
    }
}

/// A command as the guest gave it, for the grant and the audit line.
#[derive(Clone, Copy)]
pub(crate) enum Command<'a> {
    /// A raw shell command line.
    Line(&'a str),
    /// A program and its arguments.
    Argv(&'a [String]),
    /// A program and its arguments in a directory or with variables the
    /// call chose: those can change which program runs and what it does
    /// (`PATH`, `LD_PRELOAD`, a relative path), so it needs the grant a
    /// shell command line needs.
    ArgvIn(&'a [String]),
}

impl<'a> Command<'a> {
    fn action(self) -> Action<'a> {
        match self {
            Self::Line(_) | Self::ArgvIn(_) => Action::Shell,
            Self::Argv(argv) => Action::Argv(argv),
        }
    }
}

impl<'a> From<&'a core::Command> for Command<'a> {
    fn from(c: &'a core::Command) -> Self {
        match c {
            core::Command::Line(line) => Self::Line(line),
            core::Command::Argv(argv) => Self::Argv(argv),
        }
    }
}

impl<'a> Access<'a> {
    /// Running `command` on `target` with `options`: through sudo when
    /// they ask for it; an argv in the call's own directory or variables
    /// as a command line.
    pub(crate) fn command(
        target: &'a mut core::Target,
        command: Command<'a>,
        options: &'a core::CommandOptions,
    ) -> Self {
        let command = match command {
            Command::Argv(argv) if options.cwd.is_some() || !options.env.is_empty() => {
                Command::ArgvIn(argv)
            }
            c => c,
        };
        match &options.sudo {
            Some(s) => Self::SudoCommand(target, command, s.user.as_deref().unwrap_or("root")),
            None => Self::Command(target, command),
        }
    }
}

/// A session-table import, named as in the WIT.
#[derive(Clone, Copy)]
pub(crate) enum SessionOp {
    List,
    Close,
    CloseAll,
}

impl SessionOp {
    fn name(self) -> &'static str {
        match self {
            Self::List => "list-sessions",
            Self::Close => "close-session",
            Self::CloseAll => "close-all-sessions",
        }
    }
}

/// What the gate let through. It holds the concurrency slot and keeps the
/// guest's clock stopped until it is finished or dropped; a pass dropped
/// unfinished (the call was abandoned mid-command) still writes its audit
/// line, saying so.
#[must_use = "finish the pass with the outcome, so that it is audited"]
pub(crate) struct Pass {
    record: Option<Record>,
    slot: Option<OwnedSemaphorePermit>,
    in_host: Option<InHost>,
}

impl Pass {
    fn bare() -> Self {
        Self {
            record: None,
            slot: None,
            in_host: None,
        }
    }

    /// Hands the concurrency slot to a job, which holds it until it ends.
    pub(crate) fn take_slot(&mut self) -> Option<OwnedSemaphorePermit> {
        self.slot.take()
    }

    /// Ends the host's part and audits `result`; returns it.
    pub(crate) fn finish<T: Audited>(self, result: Result<T, SshError>) -> Result<T, SshError> {
        self.finish_with(result)
    }

    /// [`Pass::finish`] for an import with its own error type
    /// (`file-error`).
    pub(crate) fn finish_with<T: Audited, E: std::fmt::Display>(
        mut self,
        result: Result<T, E>,
    ) -> Result<T, E> {
        drop(self.in_host.take());
        if let Some(record) = self.record.take() {
            let done = result.as_ref().map_err(|e| e as &dyn std::fmt::Display);
            record.write(None, Outcome::Done(done));
        }
        result
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        drop(self.in_host.take());
        if let Some(record) = self.record.take() {
            record.write::<()>(None, Outcome::Abandoned);
        }
    }
}

/// What an import's result adds to its audit line.
pub(crate) trait Audited {
    fn fill<'a>(&'a self, _entry: &mut audit::Entry<'a>) {}
}

impl Audited for core::ExecOutput {
    fn fill<'a>(&'a self, entry: &mut audit::Entry<'a>) {
        entry.exit_status = self.exit_status;
        entry.exit_signal = self.exit_signal.as_deref();
        entry.duration_ms = audit::millis(self.duration);
        entry.bytes_out = Some(self.stdout.total_bytes + self.stderr.total_bytes);
    }
}

// A job is audited when it starts; how it ended is in its status.
impl Audited for core::JobInfo {}
impl Audited for String {}
impl Audited for bool {}
impl Audited for u32 {}
impl Audited for () {}
impl Audited for Vec<core::SessionInfo> {}
impl Audited for Vec<core::StateInfo> {}

enum Outcome<'a, T> {
    Done(Result<&'a T, &'a dyn std::fmt::Display>),
    /// The call ended (cancelled past its grace, out of time) while the
    /// host was still working: the command may have run.
    Abandoned,
    Refused,
}

/// Why the gate said no.
enum Refusal {
    /// The grant does not allow it.
    Policy(String),
    /// The grant's `max_concurrency` is reached: a resource limit, not a
    /// policy ([`SshError::Limit`]; the guest sees WIT's `other`, with a
    /// message that says which).
    Limit(String),
    /// Where the target goes cannot be worked out: refused with that error.
    Unresolved(SshError),
}

/// An audit line waiting for its outcome. It owns clipped copies of what
/// the guest gave, which may be of any size.
struct Record {
    log: Arc<AuditLog>,
    kind: &'static str,
    client: Arc<str>,
    component: Arc<str>,
    tool: Arc<str>,
    operation: Option<&'static str>,
    target: Option<String>,
    command: Option<String>,
    argv: Option<Vec<String>>,
    path: Option<String>,
    local_path: Option<String>,
    sudo: Option<String>,
}

impl Record {
    fn write<T: Audited>(&self, denied: Option<&str>, outcome: Outcome<'_, T>) {
        let mut entry = audit::Entry {
            kind: self.kind,
            client: Some(&self.client),
            component: &self.component,
            tool: Some(&self.tool),
            operation: self.operation,
            target: self.target.clone(),
            command: self.command.as_deref(),
            argv: self.argv.as_deref(),
            path: self.path.as_deref(),
            local_path: self.local_path.as_deref(),
            sudo: self.sudo.as_deref(),
            decision: denied.map_or_else(
                || "allowed".into(),
                |why| format!("denied: {}", bounded::clip(why, bounded::MAX_FIELD)),
            ),
            ..audit::Entry::default()
        };
        match outcome {
            Outcome::Done(Ok(out)) => out.fill(&mut entry),
            Outcome::Done(Err(e)) => {
                entry.error = Some(bounded::clip(&e.to_string(), bounded::MAX_FIELD).into_owned());
            }
            Outcome::Abandoned => {
                entry.error = Some("the tool call ended before the host's work did".into());
            }
            Outcome::Refused => {}
        }
        self.log.record(&entry);
    }
}

impl StoreState {
    /// The gate: see the module header. A refusal is logged, and audited
    /// where the module header says.
    pub(crate) fn authorize(&self, access: Access<'_>) -> Result<Pass, SshError> {
        match access {
            Access::Describe(target) => {
                self.check_target(target, Action::Describe)
                    .map_err(|r| self.refuse(None, r))?;
                Ok(Pass::bare())
            }
            Access::Command(target, command) => {
                let record = self.record("ssh_command", None, Some(target), Some(command));
                self.admit(target, command.action(), record, false)
            }
            Access::SudoCommand(target, command, user) => {
                let mut record = self.record("ssh_command", None, Some(target), Some(command));
                if let Some(r) = record.as_mut() {
                    r.sudo = Some(bounded::clip(user, bounded::MAX_FIELD).into_owned());
                }
                self.admit(target, command.action(), record, true)
            }
            Access::StopJob => Ok(Pass {
                record: None,
                slot: None,
                in_host: Some(self.clock.in_host()),
            }),
            Access::Sessions(op, target) => {
                if self.grant.see_all_sessions() {
                    return Ok(Pass::bare());
                }
                let verb = match op {
                    SessionOp::List => "list",
                    SessionOp::Close | SessionOp::CloseAll => "close",
                };
                let why = format!("component {} may not {verb} sessions", self.component);
                let record = self.record("ssh_sessions", Some(op.name()), target, None);
                Err(self.refuse(record.as_ref(), Refusal::Policy(why)))
            }
            Access::File(target, file) => {
                let mut record = self.record("file", Some(file.op.name()), Some(target), None);
                if let Some(r) = record.as_mut() {
                    r.path = Some(bounded::clip(file.path, bounded::MAX_COMMAND).into_owned());
                    r.local_path = file
                        .local_path
                        .map(|p| bounded::clip(p, bounded::MAX_COMMAND).into_owned());
                }
                let action = Action::File {
                    path: file.path,
                    write: matches!(file.op, FileOp::Write | FileOp::Upload),
                    transfer: matches!(file.op, FileOp::Upload | FileOp::Download),
                };
                self.admit(target, action, record, false)
            }
        }
    }

    /// A pass for `action` on `target` (through sudo if `sudo`) when the
    /// grant allows it there and a concurrency slot is free; otherwise the
    /// refusal, recorded.
    fn admit(
        &self,
        target: &mut core::Target,
        action: Action<'_>,
        record: Option<Record>,
        sudo: bool,
    ) -> Result<Pass, SshError> {
        self.check_target(target, action)
            .map_err(|r| self.refuse(record.as_ref(), r))?;
        if sudo {
            self.grant
                .check_sudo()
                .map_err(|why| self.refuse(record.as_ref(), Refusal::Policy(why)))?;
        }
        let slot = self
            .grant
            .slot()
            .map_err(|why| self.refuse(record.as_ref(), Refusal::Limit(why)))?;
        Ok(Pass {
            record,
            slot,
            in_host: Some(self.clock.in_host()),
        })
    }

    /// Whether the grant lets this component do `action` where `target`
    /// really goes, as ssh_config resolves it; arms the target's peer check.
    fn check_target(&self, target: &mut core::Target, action: Action<'_>) -> Result<(), Refusal> {
        self.grant.granted().map_err(Refusal::Policy)?;
        let route = self.resolve_route(target).map_err(Refusal::Unresolved)?;
        let grant = self
            .grant
            .authorize(target, &route, action)
            .map_err(Refusal::Policy)?;
        // The effective policy is the client's and the grant's together.
        let client = match &self.client_policy {
            Some(policy) => {
                policy.check_key_file(target).map_err(Refusal::Policy)?;
                policy
                    .authorize(target, &route, action)
                    .map_err(Refusal::Policy)?
            }
            None => None,
        };
        target.peer_check = both_peer_checks(grant, client);
        Ok(())
    }

    /// Where `target` goes: its ssh_config host name, port and route, and
    /// the port ssh_config gives when the call names none.
    fn resolve_route(&self, target: &core::Target) -> Result<Resolved, SshError> {
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

    /// The audit line of a request, if there is an audit log.
    fn record(
        &self,
        kind: &'static str,
        operation: Option<&'static str>,
        target: Option<&core::Target>,
        command: Option<Command<'_>>,
    ) -> Option<Record> {
        let log = self.audit.clone()?;
        let (command, argv) = match command {
            Some(Command::Line(line)) => (
                Some(bounded::clip(line, bounded::MAX_COMMAND).into_owned()),
                None,
            ),
            Some(Command::Argv(argv) | Command::ArgvIn(argv)) => (None, Some(bounded::argv(argv))),
            None => (None, None),
        };
        Some(Record {
            log,
            kind,
            client: self.client.clone(),
            component: self.component.clone(),
            tool: self.tool.clone(),
            operation,
            target: target.map(|t| bounded::target(&t.host, t.username.as_deref(), t.port)),
            command,
            argv,
            path: None,
            local_path: None,
            sudo: None,
        })
    }

    /// Logs and audits a refusal; the error the guest gets, its reason
    /// clipped (it may quote a host or argv word of any size).
    fn refuse(&self, record: Option<&Record>, refusal: Refusal) -> SshError {
        let (why, error) = match refusal {
            Refusal::Policy(why) => {
                let why = bounded::clip(&why, bounded::MAX_FIELD).into_owned();
                tracing::warn!(component = %self.component, "denied: {why}");
                (why.clone(), SshError::Denied(why))
            }
            Refusal::Limit(why) => {
                let why = bounded::clip(&why, bounded::MAX_FIELD).into_owned();
                tracing::warn!(component = %self.component, "{why}");
                (why.clone(), SshError::Limit(why))
            }
            Refusal::Unresolved(e) => (e.to_string(), e),
        };
        if let Some(record) = record {
            record.write::<()>(Some(&why), Outcome::Refused);
        }
        error
    }
}

#[cfg(test)]
mod tests;
