//! A guest's stderr: kept up to a cap, the rest counted and dropped, never
//! a trap. After the call it goes to the log, tagged with the component and
//! bounded in lines, so a chatty guest cannot flood the operator's log.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Lines of one call's stderr that reach the log.
const MAX_LINES: usize = 50;

#[derive(Clone, Default)]
pub(crate) struct GuestStderr {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: u64,
}

impl GuestStderr {
    fn write(&self, data: &[u8], cap: usize) {
        let mut c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let room = cap.saturating_sub(c.kept.len()).min(data.len());
        c.kept.extend_from_slice(&data[..room]);
        c.dropped += (data.len() - room) as u64;
    }

    /// Sends what the guest wrote to the log.
    pub(crate) fn log(&self, component: &str) {
        let c = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&c.kept);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in lines.iter().take(MAX_LINES) {
            tracing::info!(component, "guest stderr: {line}");
        }
        let more_lines = lines.len().saturating_sub(MAX_LINES);
        if more_lines > 0 || c.dropped > 0 {
            tracing::warn!(
                component,
                "guest stderr: {more_lines} more lines and {} more bytes not logged",
                c.dropped
            );
        }
    }
}

/// The stream handed to WASI, with the per-call cap.
pub(crate) struct Capped {
    pub(crate) sink: GuestStderr,
    pub(crate) cap: usize,
}

impl IsTerminal for Capped {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capped {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(Writer {
            sink: self.sink.clone(),
            cap: self.cap,
        })
    }
}

struct Writer {
    sink: GuestStderr,
    cap: usize,
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.sink.write(buf, self.cap);
        // Accept everything: what is past the cap is counted, not refused.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_past_the_cap_is_counted_not_kept() {
        let s = GuestStderr::default();
        s.write(b"hello ", 8);
        s.write(b"world", 8);
        let c = s.inner.lock().unwrap();
        assert_eq!((c.kept.as_slice(), c.dropped), (&b"hello wo"[..], 3));
    }
}
