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

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use zeroize::Zeroizing;

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
