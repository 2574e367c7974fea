//! The session table's side of session state ([`crate::ssh::state`]):
//! which frame a call runs in, learning the login shell first when a frame
//! needs it, keeping what a command left, and handing the state on to the
//! connection that replaces a dead one.

use russh::Channel;
use russh::client::Msg;
use tokio::time::Instant as Deadline;
use tokio_util::sync::CancellationToken;

use super::super::exec::{self, ExecOutput, OutputSink, RunError};
use super::super::launch::{self, Payload};
use super::super::state::{Frame, FrameOut, NoCwd, SessionState};
use super::super::{CommandOptions, SshError};
use super::connection::{Connection, lock};
use super::{OPEN_STALL, SessionManager};

/// How a call runs within its session's state.
pub(super) struct Framing {
    pub(super) frame: Option<Frame>,
    /// The state the call started from.
    start: SessionState,
    /// Said in the result: state is not kept on this login shell.
    note: Option<String>,
}

struct Discard;

impl OutputSink for Discard {
    fn stdout(&mut self, _: &[u8]) {}
    fn stderr(&mut self, _: &[u8]) {}
}

impl SessionManager {
    /// Whether a call with `options` runs in a frame: always while state
    /// is kept, else when it brings its own directory or variables.
    fn wants_frame(&self, options: &CommandOptions) -> bool {
        !self.stateless(options) || options.cwd.is_some() || !options.env.is_empty()
    }

    /// Whether a call neither uses nor keeps its session's state.
    fn stateless(&self, options: &CommandOptions) -> bool {
        self.inner.config.stateless || options.fresh
    }

    /// A frame needs the login shell to be known: on a connection's first
    /// call that wants one, a command that does nothing shows it, on
    /// `channel`, and a fresh channel is returned for the call itself.
    pub(super) async fn ready_shell(
        &self,
        conn: &Connection,
        channel: Channel<Msg>,
        options: &CommandOptions,
        deadline: Deadline,
        cancel: &CancellationToken,
    ) -> Result<Channel<Msg>, RunError> {
        if !self.wants_frame(options) || conn.shell.get().is_some() {
            return Ok(channel);
        }
        learn_shell(conn, channel, deadline, cancel).await
    }

    /// The frame for a call on `conn`, after [`Self::ready_shell`].
    /// `capture` reads the end state back (a command line of
    /// `execute_command`, not a job or an argv).
    pub(super) fn framing(
        &self,
        conn: &Connection,
        options: &CommandOptions,
        capture: bool,
    ) -> Result<Framing, SshError> {
        let mut framing = Framing {
            frame: None,
            start: SessionState::default(),
            note: None,
        };
        if !self.wants_frame(options) {
            return Ok(framing);
        }
        let shell = conn.shell.get().map_or("", String::as_str);
        if !launch::is_posix(shell) {
            if options.cwd.is_some() || !options.env.is_empty() {
                return Err(SshError::InvalidArgument(format!(
                    "{}: cwd and env need a login shell that reads POSIX sh; this user's is {}. \
                     Put `cd` and variables in the command instead",
                    conn.key,
                    shell_name(shell)
                )));
            }
            framing.note = Some(format!(
                "this user's login shell ({}) does not read POSIX sh: the session keeps no \
                 working directory or variables between commands",
                shell_name(shell)
            ));
            return Ok(framing);
        }
        if !self.stateless(options) {
            framing.start = lock(&conn.state).clone();
        }
        // A command under sudo is another user's shell: it uses the state
        // but does not change it.
        let capture = capture && !self.stateless(options) && options.sudo.is_none();
        framing.frame = Some(Frame::new(
            &framing.start,
            (options.cwd.as_deref(), &options.env),
            capture,
            (shell, options.sudo.is_some()),
            &launch::new_nonce(),
        ));
        Ok(framing)
    }

    /// Keeps what the command left on `conn`, and says it in `out`.
    pub(super) fn settle(
        &self,
        conn: &Connection,
        framing: &Framing,
        found: &FrameOut,
        out: &mut ExecOutput,
    ) -> Result<(), SshError> {
        out.notes.extend(framing.note.clone());
        let Some(frame) = &framing.frame else {
            return Ok(());
        };
        match frame.finish(&framing.start, found) {
            Ok(mut done) => {
                if let Some(state) = done.state.filter(|_| frame.captures()) {
                    let mut kept = lock(&conn.state);
                    if kept.epoch == framing.start.epoch {
                        *kept = state;
                    } else {
                        done.notes.push(
                            "the session was reset while this command ran: what it changed \
                             was not kept"
                                .into(),
                        );
                    }
                }
                out.cwd = done.cwd;
                out.notes.extend(done.notes);
                Ok(())
            }
            Err(NoCwd(dir)) => Err(SshError::InvalidArgument(format!(
                "{}: cwd {dir}: no such directory, or not one this user may enter; nothing was run",
                conn.key
            ))),
        }
    }
}

/// What to call a login shell in a message.
fn shell_name(shell: &str) -> &str {
    if shell.is_empty() { "unknown" } else { shell }
}

/// Runs a command that does nothing, so its marker shows the login shell;
/// returns a fresh channel. A server that prints no marker (a
/// `ForceCommand`) leaves the shell unknown for good: no frame, no probe
/// again.
async fn learn_shell(
    conn: &Connection,
    channel: Channel<Msg>,
    deadline: Deadline,
    cancel: &CancellationToken,
) -> Result<Channel<Msg>, RunError> {
    let ending = exec::drive(
        conn.remote(),
        channel,
        Payload::Line("true"),
        None,
        exec::Input::default(),
        Some(deadline),
        cancel,
        &mut Discard,
        None,
    )
    .await?;
    if ending.lost {
        return Err(RunError::NotStarted(
            "the connection was lost learning the login shell".into(),
        ));
    }
    // A login shell still starting when the call ended (slow rc files) has
    // not shown that it prints no marker: the next call learns it again.
    let key = &conn.key;
    if ending.cancelled {
        return Err(RunError::Before(SshError::Cancelled(format!(
            "{key}: cancelled while the login shell started; nothing was run"
        ))));
    }
    if ending.timed_out {
        return Err(RunError::Before(SshError::Timeout(format!(
            "{key}: the call's time ran out while the login shell started (slow rc files?); \
             nothing was run"
        ))));
    }
    let _ = conn.shell.set(String::new());
    let wait = deadline.saturating_duration_since(Deadline::now());
    conn.open_channel(wait.min(OPEN_STALL)).await
}

/// A connection replacing a dead one for the same session keeps its
/// state, and its login shell is the same.
pub(super) fn hand_over(old: &Connection, new: &Connection) {
    *lock(&new.state) = lock(&old.state).clone();
    if let Some(shell) = old.shell.get() {
        let _ = new.shell.set(shell.clone());
    }
}
