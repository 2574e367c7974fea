//! The TCP stream under every SSH connection.
//!
//! OpenSSH sends an unsolicited packet right after authentication; Linux
//! answers it with a delayed ACK, and with Nagle on the server side the reply
//! to our first channel-open waits for that ACK: a 40-45 ms stall on the first
//! command of each connection. Re-arming `TCP_QUICKACK` after every read
//! (the kernel clears it on its own) makes the ACK immediate. Public for
//! the benchmark, whose raw russh floor runs on the same stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A `TcpStream` with `TCP_NODELAY` set and `TCP_QUICKACK` re-armed after
/// each read.
pub struct QuickAckStream {
    inner: TcpStream,
}

impl QuickAckStream {
    pub fn new(inner: TcpStream) -> Self {
        // Best effort: both are latency tweaks, not correctness.
        let _ = inner.set_nodelay(true);
        let s = Self { inner };
        s.rearm();
        s
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn rearm(&self) {
        let _ = socket2::SockRef::from(&self.inner).set_tcp_quickack(true);
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn rearm(&self) {}
}

impl AsyncRead for QuickAckStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.rearm();
        }
        res
    }
}

impl AsyncWrite for QuickAckStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
