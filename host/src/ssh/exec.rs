//! Running one command on one exec channel, with bounded output
//! ([`super::output`]), progress, and a verified stop on timeout or cancel.
//!
//! Stdin gets what [`super::input`] feeds it (the call's `stdin`, through
//! [`super::sudo`] when asked), then end-of-file; without any, it is
//! closed at once, so a command that reads it sees end-of-file instead of
//! hanging.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::OptionFuture;
use russh::client::{Handle, Handler, Msg};
use russh::{Channel, ChannelMsg, Sig};
use tokio_util::sync::CancellationToken;

pub(crate) use super::input::Input;
use super::input::{self, SudoWatch};
use super::kill::{self, KillOutcome, Stopper, Victim};
use super::launch::{self, Marker, Payload, Reach};
pub use super::output::StreamOutput;
use super::output::{Capture, LastLine};
use super::state::{Blocks, Frame, FrameOut};
use super::sudo::{self, SudoError};

/// What to run: a command line for the login shell, or a program and its
/// arguments passed on as exactly those words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Line(String),
    Argv(Vec<String>),
}

impl Default for Command {
    fn default() -> Self {
        Self::Line(String::new())
    }
}

impl Command {
    pub(crate) fn payload(&self) -> Payload<'_> {
        match self {
            Self::Line(l) => Payload::Line(l),
            Self::Argv(a) => Payload::Argv(a),
        }
    }
}

/// What to run and how much of it to keep.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub command: Command,
    pub timeout: Option<Duration>,
    pub max_output_bytes: Option<u64>,
    /// Cancelled when the client gives up on the call: the command is then
    /// stopped as on a timeout.
    pub cancel: CancellationToken,
    /// Called now and then while the command runs.
    pub progress: Option<ProgressFn>,
    /// Where, with what, and as whom.
    pub options: super::CommandOptions,
}

/// How far a running command has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Bytes received so far, both streams.
    pub bytes: u64,
    pub elapsed: Duration,
    /// The last complete output line, when it is short.
    pub last_line: Option<String>,
}

/// A progress callback. Called from the command's task: it must not block.
#[derive(Clone)]
pub struct ProgressFn(pub std::sync::Arc<dyn Fn(Progress) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

/// At most one progress report per this interval.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// The `username@host:port` that ran it.
    pub session: String,
    pub exit_status: Option<u32>,
    pub exit_signal: Option<String>,
    pub stdout: StreamOutput,
    pub stderr: StreamOutput,
    pub duration: Duration,
    pub timed_out: bool,
    pub cancelled: bool,
    /// After a timeout or a cancel: whether the command and its children
    /// are verifiably gone (`None`: the stop could not be verified).
    pub remote_stopped: Option<bool>,
    /// The directory the command ended in, when known.
    pub cwd: Option<String>,
    /// What the caller should know about the session's state.
    pub notes: Vec<String>,
}

/// How a run ended short of an exit status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// The exec request never reached the server: safe to retry elsewhere.
    #[error("the command was not started: {0}")]
    NotStarted(String),
    /// Opening a channel got no answer in time: nothing was sent.
    #[error("the server did not answer a channel open")]
    Stalled,
    /// The server refused to start the command.
    #[error("{0}")]
    Refused(String),
    /// The channel ended with neither exit status nor signal: the
    /// connection died, and the command may or may not have run.
    #[error("the connection was lost after {bytes} bytes of output")]
    Lost { bytes: u64 },
    /// sudo did not run the command.
    #[error("{0}")]
    Sudo(SudoError),
    /// The command, as it must be sent, is too large: nothing was sent.
    #[error("{0}")]
    TooLarge(String),
    /// The call ended (out of time, or cancelled) before the command was
    /// sent: nothing was run. The error says which.
    #[error("{0}")]
    Before(super::SshError),
}

pub(crate) fn signal_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT",
        Sig::ALRM => "ALRM",
        Sig::FPE => "FPE",
        Sig::HUP => "HUP",
        Sig::ILL => "ILL",
        Sig::INT => "INT",
        Sig::KILL => "KILL",
        Sig::PIPE => "PIPE",
        Sig::QUIT => "QUIT",
        Sig::SEGV => "SEGV",
        Sig::TERM => "TERM",
        Sig::USR1 => "USR1",
        Sig::Custom(s) => s.as_str(),
    }
    .to_string()
}

/// Where a run's output goes: head-and-tail captures for `exec`, bounded
/// rings for background jobs.
pub(crate) trait OutputSink: Send {
    fn stdout(&mut self, data: &[u8]);
    fn stderr(&mut self, data: &[u8]);
}

struct Captures {
    stdout: Capture,
    stderr: Capture,
}

impl OutputSink for Captures {
    fn stdout(&mut self, data: &[u8]) {
        self.stdout.push(data);
    }

    fn stderr(&mut self, data: &[u8]) {
        self.stderr.push(data);
    }
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ending {
    pub(crate) exit_status: Option<u32>,
    pub(crate) exit_signal: Option<String>,
    pub(crate) timed_out: bool,
    pub(crate) cancelled: bool,
    /// After a stop: whether the process group is verifiably gone.
    pub(crate) remote_stopped: Option<bool>,
    /// The channel ended with no exit status or signal and no stop: the
    /// connection died under it.
    pub(crate) lost: bool,
    /// A stop got no answer at all: the connection is likely dead.
    pub(crate) stop_unanswered: bool,
    /// What the state frame, if any, printed.
    pub(crate) frame: FrameOut,
    /// sudo refused to run the command (its clear message is also on
    /// stderr, for a job's reader).
    pub(crate) sudo_failure: Option<SudoError>,
}

/// Feeds channel messages to a sink, tracking how the command ends and how
/// far it has come.
struct Driver<'a, S> {
    sink: &'a mut S,
    sniffer: Marker,
    /// The state frame's blocks, lifted out of stdout.
    blocks: Option<Blocks>,
    sudo: Option<SudoWatch>,
    ending: Ending,
    bytes: u64,
    /// Only when progress is reported.
    lines: Option<LastLine>,
}

impl<S: OutputSink> Driver<'_, S> {
    fn take(&mut self, msg: ChannelMsg) -> Result<(), RunError> {
        match msg {
            ChannelMsg::Data { data } => {
                let own = self.sniffer.feed(&data);
                let own = match (&mut self.blocks, own) {
                    (Some(b), Cow::Borrowed(d)) => b.feed(d),
                    (Some(b), Cow::Owned(v)) => Cow::Owned(b.feed(&v).into_owned()),
                    (None, own) => own,
                };
                self.note(&own);
                self.sink.stdout(&own);
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                let own = match self.sudo.as_mut() {
                    Some(sw) => sw.stderr(&data),
                    None => data[..].into(),
                };
                let own = match (&mut self.blocks, own) {
                    (Some(b), Cow::Borrowed(d)) => b.feed_err(d),
                    (Some(b), Cow::Owned(v)) => Cow::Owned(b.feed_err(&v).into_owned()),
                    (None, own) => own,
                };
                self.note(&own);
                self.sink.stderr(&own);
            }
            // Keep reading after ExitStatus: data may still follow it.
            ChannelMsg::ExitStatus { exit_status } => self.ending.exit_status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name: s, .. } => {
                self.ending.exit_signal = Some(signal_name(&s));
            }
            ChannelMsg::Failure => {
                return Err(RunError::Refused(
                    "the server refused to run the command".into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Counts bytes and, when progress is reported, keeps the last
    /// complete line: the scan is skipped when nobody asked for it.
    fn note(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Some(lines) = &mut self.lines {
            lines.push(data);
        }
    }

    fn finish(mut self) -> Ending {
        let mut held = self.sniffer.flush();
        let mut held_err = self.sudo.as_mut().map(SudoWatch::flush).unwrap_or_default();
        if let Some(b) = &mut self.blocks {
            held = b.feed(&held).into_owned();
            held.extend(b.flush());
            held_err = b.feed_err(&held_err).into_owned();
            held_err.extend(b.flush_err());
            self.ending.frame = b.out();
        }
        self.sink.stdout(&held);
        self.sink.stderr(&held_err);
        let e = &mut self.ending;
        e.lost = !e.timed_out && !e.cancelled && e.exit_status.is_none() && e.exit_signal.is_none();
        if let Some(failure) = self.sudo.as_mut().and_then(|sw| sw.refusal(e)) {
            // A job's reader learns it from its stderr.
            self.sink
                .stderr(format!("mcp-ssh-session: {failure}\n").as_bytes());
            e.lost = false;
            e.sudo_failure = Some(failure);
        }
        self.ending
    }
}

/// The connection a command runs on, as far as running and stopping it
/// needs.
pub(crate) struct Remote<'a, H: Handler> {
    pub(crate) handle: &'a Arc<Handle<H>>,
    pub(crate) stopper: &'a Stopper,
    /// The login shell, learnt from the first command's marker.
    pub(crate) shell: &'a std::sync::OnceLock<String>,
    /// The server is OpenSSH (see [`launch::build`]).
    pub(crate) openssh: bool,
    /// What opened the connection: its password is sudo's when a call
    /// gives none.
    pub(crate) credentials: &'a std::sync::Mutex<Option<super::Credentials>>,
}

impl<H: Handler> Clone for Remote<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: Handler> Copy for Remote<'_, H> {}

/// Runs `payload` on `channel` (a fresh session channel of `remote`), in
/// `frame` if given, with `input` (stdin, sudo), until it ends, `deadline`
/// passes or `cancel` fires; a stopped command's process group is killed
/// and checked.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn drive<H: Handler + 'static, S: OutputSink>(
    remote: Remote<'_, H>,
    mut channel: Channel<Msg>,
    payload: Payload<'_>,
    frame: Option<&Frame>,
    input: Input<'_>,
    deadline: Option<tokio::time::Instant>,
    cancel: &CancellationToken,
    sink: &mut S,
    progress: Option<&ProgressFn>,
) -> Result<Ending, RunError> {
    let started = Instant::now();
    // 0 when russh does not know it: both OpenSSH and Dropbear take 32 KiB.
    let packet = match channel.writable_packet_size().await {
        0 => 32 * 1024,
        n => n,
    };
    let server = launch::Server {
        shell: remote.shell.get().map(String::as_str),
        openssh: remote.openssh,
        packet,
    };
    // Under sudo the environment is reset: the session's variables go
    // into the command sudo runs (the frame's `cd` still applies outside).
    let script;
    let plan = match input.sudo {
        Some(s) => {
            let fallback = (remote.credentials.lock())
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .and_then(|c| c.password.clone());
            let shell = remote.shell.get().map(String::as_str);
            let inner = match frame {
                Some(f) => {
                    let command = match payload {
                        Payload::Line(c) => c.to_string(),
                        Payload::Argv(a) => launch::exec_line(a),
                    };
                    script = format!("{}{command}", f.inner());
                    Payload::Line(&script)
                }
                None => payload,
            };
            Some(sudo::plan(inner, s, shell, fallback.as_ref()).map_err(RunError::Sudo)?)
        }
        None => None,
    };
    let payload = match &plan {
        Some(p) => Payload::Argv(&p.argv),
        None => payload,
    };
    let framed;
    let (payload, nonce, blocks) = match frame {
        Some(f) => {
            let argv = matches!(payload, Payload::Argv(_));
            framed = match payload {
                Payload::Line(c) => f.wrap_line(c),
                Payload::Argv(a) => f.wrap_argv(a),
            };
            (
                Payload::Line(&framed),
                f.nonce().to_string(),
                Some(f.blocks(argv)),
            )
        }
        None => (payload, launch::new_nonce(), None),
    };
    // What the session's state and sudo add (sudo's quoting too) must
    // still fit in one remote command.
    launch::check(payload).map_err(|e| {
        RunError::TooLarge(format!(
            "{e} (with the session's state{} added to the command)",
            if input.sudo.is_some() {
                " and sudo"
            } else {
                ""
            }
        ))
    })?;
    let launch = launch::build_with(payload, &server, nonce);
    channel
        .exec(true, launch.line)
        .await
        .map_err(|e| RunError::NotStarted(e.to_string()))?;
    // The request went out: from here on a failure is a lost command,
    // never one that may be sent again.
    let never = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let deadline = deadline.unwrap_or(never);
    let (watch, sudo_feed) = match plan.map(SudoWatch::new) {
        Some((w, f)) => (Some(w), Some(f)),
        None => (None, None),
    };
    // Without stdin this ends at once with end-of-file, which is what
    // makes `cat` return.
    // Dropped, not just left unpolled, before a stop: russh's writer,
    // parked on the channel's window, keeps its place in the queue of the
    // window's lock, and the connection's reader waits for that lock at
    // the next window adjustment, stalling every channel, the stop's too.
    let mut feed = Some(Box::pin(input::feed(
        channel.make_writer(),
        launch.stdin,
        input.stdin,
        sudo_feed,
    )));

    let mut d = Driver {
        sink,
        sudo: watch,
        sniffer: Marker::new(&launch.nonce),
        blocks,
        ending: Ending::default(),
        bytes: 0,
        lines: progress.is_some().then(LastLine::default),
    };
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = None;
    // Made once, not per message: each would register with the token and
    // the timer wheel and leave again, thousands of times for a large
    // output (a 4 KiB packet each, as `tr` writes them).
    let cancelled = cancel.cancelled();
    let expired = tokio::time::sleep_until(deadline);
    tokio::pin!(cancelled, expired);
    loop {
        let msg = tokio::select! {
            biased;
            () = &mut cancelled => {
                d.ending.cancelled = true;
                None
            }
            () = &mut expired => {
                d.ending.timed_out = true;
                None
            }
            r = OptionFuture::from(feed.as_mut()), if feed.is_some() => {
                feed = None;
                if let Some(Err(e)) = r {
                    tracing::debug!("stdin not fully written: {e}");
                }
                continue;
            }
            () = input::give_up(d.sudo.as_ref()) => {
                // sudo was refused and did not give up in time.
                let _ = channel.close().await;
                break;
            }
            m = channel.wait() => Some(m),
            _ = ticker.tick(), if progress.is_some() => {
                if let Some(p) = progress {
                    let now = (d.bytes, d.lines.as_ref().and_then(LastLine::last).cloned());
                    // A silent command still reports its elapsed time.
                    if reported.as_ref() != Some(&now) || started.elapsed() >= Duration::from_secs(1) {
                        (p.0)(Progress { bytes: d.bytes, elapsed: started.elapsed(), last_line: now.1.clone() });
                        reported = Some(now);
                    }
                }
                continue;
            }
        };
        match msg {
            Some(Some(m)) => d.take(m)?,
            Some(None) => break,
            None => {
                drop(feed.take());
                stop(remote, &mut channel, &mut d).await;
                break;
            }
        }
    }
    if let Some(started) = d.sniffer.started() {
        let _ = remote.shell.set(started.shell.clone());
    }
    Ok(d.finish())
}

/// Runs `request` on `channel`, in `frame` if given, until `deadline`,
/// keeping at most `limit` bytes per stream.
pub(crate) async fn run<H: Handler + 'static>(
    remote: Remote<'_, H>,
    channel: Channel<Msg>,
    session: String,
    request: &ExecRequest,
    frame: Option<&Frame>,
    deadline: tokio::time::Instant,
    limit: usize,
) -> Result<(ExecOutput, Ending), RunError> {
    let started = Instant::now();
    let mut caps = Captures {
        stdout: Capture::new(limit),
        stderr: Capture::new(limit),
    };
    let ending = drive(
        remote,
        channel,
        request.command.payload(),
        frame,
        Input::of(&request.options),
        Some(deadline),
        &request.cancel,
        &mut caps,
        request.progress.as_ref(),
    )
    .await?;
    if let Some(failure) = ending.sudo_failure.clone() {
        return Err(RunError::Sudo(failure));
    }
    if ending.lost {
        return Err(RunError::Lost {
            bytes: caps.stdout.total + caps.stderr.total,
        });
    }
    let out = ExecOutput {
        session,
        exit_status: ending.exit_status,
        exit_signal: ending.exit_signal.clone(),
        stdout: caps.stdout.finish(),
        stderr: caps.stderr.finish(),
        duration: started.elapsed(),
        timed_out: ending.timed_out,
        cancelled: ending.cancelled,
        remote_stopped: ending.remote_stopped,
        cwd: None,
        notes: Vec::new(),
    };
    Ok((out, ending))
}

/// Stops the command after a timeout or a cancel, still collecting what it
/// prints meanwhile, within [`kill::STOP_BOUND`]. Records whether the
/// remote processes are verifiably gone.
async fn stop<H: Handler + 'static, S: OutputSink>(
    remote: Remote<'_, H>,
    channel: &mut Channel<Msg>,
    d: &mut Driver<'_, S>,
) {
    let bound = tokio::time::Instant::now() + kill::STOP_BOUND;
    // A command stopped as soon as it was sent (an interrupt right after
    // `start_command`) may not have printed its marker yet: give it a
    // moment, or the stop could not be verified.
    if d.sniffer.started().is_none() {
        let wait = tokio::time::sleep(kill::MARKER_WAIT);
        tokio::pin!(wait);
        while d.sniffer.started().is_none() {
            tokio::select! {
                () = &mut wait => break,
                m = channel.wait() => match m {
                    Some(msg) => {
                        let _ = d.take(msg);
                    }
                    None => break,
                },
            }
        }
    }
    let Some(started) = d.sniffer.started().cloned() else {
        // No marker (a ForceCommand, or the launcher never ran): the best
        // left is the SSH signal request, which reaches the shell alone.
        let _ = channel.signal(Sig::KILL).await;
        let _ = channel.close().await;
        tracing::warn!("no PID for the command; sent KILL to its shell only, unverified");
        return;
    };
    let victim = match started.reach {
        Reach::Session => Victim::Group(started.pid),
        Reach::Tree => Victim::Tree(started.pid),
        Reach::Unknown => {
            let _ = channel.signal(Sig::KILL).await;
            let _ = channel.close().await;
            tracing::warn!(
                pid = started.pid,
                "the command's processes are not known; sent KILL to its shell only, unverified"
            );
            return;
        }
    };
    let kill = tokio::time::timeout_at(bound, remote.stopper.stop(remote.handle.clone(), victim));
    tokio::pin!(kill);
    let mut outcome = None;
    let mut open = true;
    // After the answer, the last output and the exit signal get this long
    // to arrive, once: a process that left the session and keeps the
    // channel's stdout open must not hold the call.
    let settle = tokio::time::sleep_until(bound);
    tokio::pin!(settle);
    // Read the main channel while the kill runs: the exit signal and the
    // last output arrive there.
    while outcome.is_none() || open {
        tokio::select! {
            o = &mut kill, if outcome.is_none() => {
                let o = o.unwrap_or_else(|_| KillOutcome::NoAnswer("the stop did not answer in time".into()));
                // No answer: the connection is likely dead, and so is the
                // channel; waiting for its close would only add time.
                let dead = matches!(o, KillOutcome::NoAnswer(_));
                outcome = Some(o);
                if dead {
                    break;
                }
                settle.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(500));
            }
            m = channel.wait(), if open => match m {
                Some(msg) => {
                    let _ = d.take(msg);
                }
                None => open = false,
            },
            () = &mut settle, if outcome.is_some() => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_millis(200), channel.close()).await;
    let outcome = outcome.unwrap_or_else(|| KillOutcome::Unknown("not run".into()));
    match &outcome {
        KillOutcome::Gone => {
            tracing::info!(pid = started.pid, "stopped the command and its children")
        }
        other => tracing::warn!(
            pid = started.pid,
            "could not verify the command stopped: {other:?}"
        ),
    }
    d.ending.stop_unanswered = matches!(outcome, KillOutcome::NoAnswer(_));
    d.ending.remote_stopped = outcome.verified();
}
