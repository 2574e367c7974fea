//! What a command's channel gets on its stdin, in order: the launcher's
//! words when they were too large for the exec request, the sudo password
//! once sudo asks for it, the command's own stdin once it runs, then
//! end-of-file.
//!
//! The writing runs beside the reading of the command's output (the
//! caller polls [`feed`] in the same `select!`), so a command that writes
//! much before it reads its stdin cannot deadlock against us. Writes go
//! through russh's `AsyncWrite` half, which waits for the remote window:
//! the bytes are borrowed from the request, never copied whole.
//!
//! Under sudo, [`SudoWatch`] reads stderr and opens the gate the feeder
//! waits at ([`Gate`]); see [`super::sudo`].

use std::borrow::Cow;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::exec::Ending;
use super::sudo::{self, Event, SudoError};

/// What goes to the command besides its words.
#[derive(Clone, Copy, Default)]
pub(crate) struct Input<'a> {
    /// The command's stdin.
    pub(crate) stdin: Option<&'a [u8]>,
    /// Run it through sudo.
    pub(crate) sudo: Option<&'a super::Sudo>,
}

impl<'a> Input<'a> {
    pub(crate) fn of(options: &'a super::CommandOptions) -> Self {
        Self {
            stdin: options.stdin.as_deref(),
            sudo: options.sudo.as_ref(),
        }
    }
}

/// What the watch on sudo's stderr lets the feeder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Nothing yet: sudo has neither asked nor started the command.
    Wait,
    /// sudo asked for the password: write it, once.
    Password,
    /// sudo started the command: its stdin may follow.
    Open,
    /// sudo will not run the command: end stdin so it gives up.
    Close,
}

/// The sudo part of a feed: the password (if any) and the gate.
pub(crate) struct SudoFeed {
    pub(crate) password: Option<Zeroizing<Vec<u8>>>,
    pub(crate) gate: watch::Receiver<Gate>,
}

/// Writes everything in order, then end-of-file. An error means the
/// channel or the remote stdin closed: what is left is not wanted.
pub(crate) async fn feed<W: AsyncWrite + Unpin>(
    mut w: W,
    launcher: Option<Vec<u8>>,
    stdin: Option<&[u8]>,
    sudo: Option<SudoFeed>,
) -> std::io::Result<()> {
    if let Some(words) = launcher {
        write(&mut w, &words).await?;
    }
    if let Some(SudoFeed {
        mut password,
        mut gate,
    }) = sudo
    {
        loop {
            let now = *gate.borrow_and_update();
            match now {
                Gate::Wait => {}
                Gate::Password => {
                    if let Some(p) = password.take() {
                        write(&mut w, &p).await?;
                    }
                }
                Gate::Open => break,
                Gate::Close => return w.shutdown().await,
            }
            if gate.changed().await.is_err() {
                return Ok(());
            }
        }
    }
    if let Some(data) = stdin {
        write(&mut w, data).await?;
    }
    w.shutdown().await
}

async fn write<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8]) -> std::io::Result<()> {
    // russh's writer refuses an empty buffer.
    if data.is_empty() {
        return Ok(());
    }
    w.write_all(data).await
}

/// The reading side of a sudo run: the watch on its stderr, and the gate
/// it opens for [`feed`].
pub(crate) struct SudoWatch {
    watch: sudo::Watch,
    gate: watch::Sender<Gate>,
    has_password: bool,
    /// It asked, and there was no password to give.
    no_password: bool,
    /// When a refused sudo must have given up.
    give_up: Option<Instant>,
}

impl SudoWatch {
    /// The watch, and what the feeder needs of `plan`.
    pub(crate) fn new(plan: sudo::Plan) -> (Self, SudoFeed) {
        let (tx, rx) = watch::channel(Gate::Wait);
        let watch = Self {
            watch: plan.watch,
            gate: tx,
            has_password: plan.password.is_some(),
            no_password: false,
            give_up: None,
        };
        let feed = SudoFeed {
            password: plan.password,
            gate: rx,
        };
        (watch, feed)
    }

    /// stderr as the caller sees it. Opens the gate as sudo goes: the
    /// password on the first prompt, the command's stdin on the marker; a
    /// second prompt (or one with no password to give) closes stdin, so
    /// sudo gives up at once instead of asking again.
    pub(crate) fn stderr<'a>(&mut self, data: &'a [u8]) -> Cow<'a, [u8]> {
        let mut events = Vec::new();
        let own = self.watch.feed(data, &mut events);
        for event in events {
            let gate = match event {
                Event::Started => Gate::Open,
                Event::Prompt if self.watch.prompts() == 1 && self.has_password => Gate::Password,
                Event::Prompt => {
                    self.no_password = !self.has_password;
                    self.give_up = Some(Instant::now() + sudo::GIVE_UP);
                    Gate::Close
                }
            };
            self.gate.send_replace(gate);
        }
        own
    }

    /// What is still held back when the stream ends.
    pub(crate) fn flush(&mut self) -> Vec<u8> {
        self.watch.flush()
    }

    /// Why sudo did not run the command, when the run ended by itself (or
    /// was cut after sudo was refused) before sudo started it.
    pub(crate) fn refusal(&self, e: &Ending) -> Option<SudoError> {
        let ended = !e.timed_out && !e.cancelled && (!e.lost || self.give_up.is_some());
        (ended && !self.watch.started())
            .then(|| self.watch.failure(e.exit_status, self.no_password))
    }
}

/// Resolves when a refused sudo should have given up; never without one.
pub(crate) async fn give_up(watch: Option<&SudoWatch>) {
    match watch.and_then(|w| w.give_up) {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
