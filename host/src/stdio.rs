//! stdin and stdout as the MCP transport reads and writes them.
//!
//! Tokio's own `stdin()`/`stdout()` do every read and write on a thread
//! of the blocking pool, so each message crosses threads twice more than
//! it must: measured, a warm call's server CPU was a third scheduler work.
//! When stdin and stdout are a pipe or a socket, as every MCP client
//! makes them, they are put in non-blocking mode and polled by the
//! runtime's own reactor instead (tokio's pipe and Unix socket types). A
//! terminal or a file keeps tokio's threads: non-blocking mode on a
//! terminal would leak to the shell that shares it.
//!
//! Non-blocking mode belongs to the open file, which a parent process may
//! share; [`Restore`]'s drop puts the flags back on a normal exit (a
//! signal that kills the server leaves them as they are).
//!
//! [`Input::ended`] tells when stdin ended, so the server can leave even
//! when a client that closed stdin reads no more answers (rmcp's shutdown
//! would otherwise wait on that write for ever).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::net::unix::pipe;
use tokio::sync::Notify;

/// What the server reads its messages from, and a signal for when it
/// ended.
pub struct Input {
    source: Source,
    ended: Arc<Notify>,
}

enum Source {
    Pipe(pipe::Receiver),
    Socket(UnixStream),
    Other(tokio::io::Stdin),
}

impl Input {
    /// Notified once stdin has ended (read returned nothing).
    pub fn ended(&self) -> Arc<Notify> {
        self.ended.clone()
    }
}

/// What the server writes its messages to.
pub enum Output {
    Pipe(pipe::Sender),
    Socket(UnixStream),
    Other(tokio::io::Stdout),
}

/// The file status flags stdin and stdout had, put back on drop.
pub struct Restore(Vec<(OwnedFd, libc::c_int)>);

enum Kind {
    Pipe,
    Socket,
    Other,
}

fn kind(fd: BorrowedFd<'_>) -> Kind {
    // SAFETY: fstat writes into the zeroed struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Kind::Other;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => Kind::Pipe,
        libc::S_IFSOCK => Kind::Socket,
        _ => Kind::Other,
    }
}

/// The file status flags of `fd`, to put back later.
fn flags(fd: &OwnedFd) -> Option<libc::c_int> {
    // SAFETY: F_GETFL takes no argument.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    (flags >= 0).then_some(flags)
}

/// stdin and stdout, polled by the reactor where they can be. Must be
/// called within the runtime.
pub fn open() -> (Input, Output, Restore) {
    let mut restore = Vec::new();
    let mut own = |fd: BorrowedFd<'_>| -> Option<OwnedFd> {
        let owned = fd.try_clone_to_owned().ok()?;
        let saved = flags(&owned)?;
        restore.push((owned.try_clone().ok()?, saved));
        Some(owned)
    };
    let stdin = io::stdin();
    let input = match kind(stdin.as_fd()) {
        Kind::Pipe => own(stdin.as_fd())
            .and_then(|fd| pipe::Receiver::from_owned_fd(fd).ok())
            .map(Source::Pipe),
        Kind::Socket => own(stdin.as_fd())
            .and_then(|fd| socket(fd).ok())
            .map(Source::Socket),
        Kind::Other => None,
    }
    .unwrap_or_else(|| Source::Other(tokio::io::stdin()));
    let input = Input {
        source: input,
        ended: Arc::default(),
    };
    let stdout = io::stdout();
    let output = match kind(stdout.as_fd()) {
        Kind::Pipe => own(stdout.as_fd())
            .and_then(|fd| pipe::Sender::from_owned_fd(fd).ok())
            .map(Output::Pipe),
        Kind::Socket => own(stdout.as_fd())
            .and_then(|fd| socket(fd).ok())
            .map(Output::Socket),
        Kind::Other => None,
    }
    .unwrap_or_else(|| Output::Other(tokio::io::stdout()));
    (input, output, Restore(restore))
}

fn socket(fd: OwnedFd) -> io::Result<UnixStream> {
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true)?;
    UnixStream::from_std(std)
}

impl Drop for Restore {
    fn drop(&mut self) {
        // Last saved first: stdin and stdout may be one open file (a
        // socket), whose flags stdout saw already changed.
        for (fd, saved) in self.0.iter().rev() {
            // SAFETY: F_SETFL with the flags F_GETFL gave for this fd.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, *saved) };
        }
    }
}

impl AsyncRead for Input {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (room, before) = (buf.remaining(), buf.filled().len());
        let res = match &mut this.source {
            Source::Pipe(p) => Pin::new(p).poll_read(cx, buf),
            Source::Socket(s) => Pin::new(s).poll_read(cx, buf),
            Source::Other(o) => Pin::new(o).poll_read(cx, buf),
        };
        if room > 0 && buf.filled().len() == before && matches!(res, Poll::Ready(Ok(()))) {
            this.ended.notify_one();
        }
        res
    }
}

impl AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Pipe(p) => Pin::new(p).poll_write(cx, buf),
            Self::Socket(s) => Pin::new(s).poll_write(cx, buf),
            Self::Other(o) => Pin::new(o).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Pipe(p) => Pin::new(p).poll_flush(cx),
            Self::Socket(s) => Pin::new(s).poll_flush(cx),
            Self::Other(o) => Pin::new(o).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Pipe(p) => Pin::new(p).poll_shutdown(cx),
            // Not a shutdown of the socket: the client may still read
            // what was written.
            Self::Socket(_) => Poll::Ready(Ok(())),
            Self::Other(o) => Pin::new(o).poll_shutdown(cx),
        }
    }
}
