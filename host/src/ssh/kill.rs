//! Stopping a remote command for real: its whole process group, verified.
//!
//! sshd starts every exec in a new session (`setsid`), so the login shell
//! that runs the command leads a process group holding the command and all
//! its children. The command line is prefixed with a marker that prints the
//! shell's PID; the host strips it from stdout. To stop the command, a
//! second channel sends TERM to the group, waits a grace period, sends
//! KILL, and reports whether anything is left. An SSH `signal` request is
//! not enough: OpenSSH honours it only from 7.9 on, and it reaches only the
//! shell, not its children.
//!
//! A process that leaves the group itself (a daemon calling `setsid`) is
//! out of reach, as it would be for `kill` in a terminal.

use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{Handle, Handler};

const MARKER_START: &[u8] = b"\x1emcp-ssh-pid:";
const MARKER_END: u8 = 0x1e;
/// The longest marker: start, a PID, end.
const MARKER_MAX: usize = MARKER_START.len() + 10 + 1;

/// TERM, then KILL after this long.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// `command`, preceded on the same line (so the shell's line numbers in
/// error messages stay the user's) by the PID marker.
pub(crate) fn wrap(command: &str) -> String {
    format!("printf '\\036mcp-ssh-pid:%s\\036' \"$$\"; {command}")
}

/// Finds and removes the PID marker at the start of stdout.
#[derive(Debug, Default)]
pub(crate) struct PidSniffer {
    buf: Vec<u8>,
    done: bool,
    pid: Option<u32>,
}

impl PidSniffer {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Returns the part of `data` that is the command's own output.
    pub(crate) fn feed<'a>(&mut self, data: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if self.done {
            return data.into();
        }
        self.buf.extend_from_slice(data);
        let n = self.buf.len().min(MARKER_START.len());
        if self.buf[..n] != MARKER_START[..n] {
            // Not our marker (a shell that did not run it): pass all through.
            self.done = true;
            return std::mem::take(&mut self.buf).into();
        }
        let body = &self.buf[n..];
        if let Some(end) = body.iter().position(|&b| b == MARKER_END) {
            self.done = true;
            self.pid = std::str::from_utf8(&body[..end])
                .ok()
                .and_then(|s| s.parse().ok());
            let rest = body[end + 1..].to_vec();
            self.buf.clear();
            return rest.into();
        }
        if self.buf.len() > MARKER_MAX || !body.iter().all(u8::is_ascii_digit) {
            self.done = true;
            return std::mem::take(&mut self.buf).into();
        }
        Vec::new().into()
    }

    /// What is still held back when the stream ends.
    pub(crate) fn flush(&mut self) -> Vec<u8> {
        self.done = true;
        std::mem::take(&mut self.buf)
    }
}

/// What became of a process group we were asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KillOutcome {
    /// Nothing of the group is left.
    Gone,
    /// Something survived KILL (uninterruptible sleep, most likely).
    Survived,
    /// The kill could not be run or its answer was not understood.
    Unknown(String),
}

/// Runs TERM, grace, KILL and a final check for group `pgid`, on a second
/// channel of `handle`. The script runs under `/bin/sh` whatever the login
/// shell is.
pub(crate) async fn kill_group<H: Handler>(handle: &Handle<H>, pgid: u32) -> KillOutcome {
    if pgid <= 1 {
        return KillOutcome::Unknown(format!("refusing to signal process group {pgid}"));
    }
    let grace_ticks = GRACE.as_millis() / 100;
    let script = format!(
        "exec /bin/sh -c 'p=$1; kill -TERM -$p 2>/dev/null || {{ echo gone; exit 0; }}; i=0; \
         while kill -0 -$p 2>/dev/null; do i=$((i+1)); \
         [ $i -eq {grace_ticks} ] && kill -KILL -$p 2>/dev/null; \
         [ $i -gt {limit} ] && {{ echo survived; exit 0; }}; \
         sleep 0.1 2>/dev/null || sleep 1; done; echo gone' sh {pgid}",
        limit = grace_ticks * 2,
    );
    let mut channel = match handle.channel_open_session().await {
        Ok(c) => c,
        Err(e) => return KillOutcome::Unknown(format!("cannot open a channel to stop it: {e}")),
    };
    if let Err(e) = channel.exec(true, script).await {
        return KillOutcome::Unknown(format!("cannot run kill: {e}"));
    }
    let _ = channel.eof().await;
    let mut answer = Vec::new();
    let wait = GRACE * 3 + Duration::from_secs(5);
    let read = async {
        while let Some(msg) = channel.wait().await {
            if let ChannelMsg::Data { data } = msg {
                answer.extend_from_slice(&data);
            }
        }
    };
    if tokio::time::timeout(wait, read).await.is_err() {
        return KillOutcome::Unknown("the kill script did not answer".into());
    }
    match String::from_utf8_lossy(&answer).trim() {
        "gone" => KillOutcome::Gone,
        "survived" => KillOutcome::Survived,
        other => KillOutcome::Unknown(format!("unexpected answer from kill: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(chunks: &[&[u8]]) -> (Vec<u8>, Option<u32>) {
        let mut s = PidSniffer::default();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&s.feed(c));
        }
        out.extend(s.flush());
        (out, s.pid())
    }

    #[test]
    fn the_marker_is_removed_and_parsed_across_chunks() {
        let (out, pid) = sniff(&[b"\x1emcp-ssh", b"-pid:123", b"45\x1ehello\n", b"world\n"]);
        assert_eq!(pid, Some(12345));
        assert_eq!(out, b"hello\nworld\n");
    }

    #[test]
    fn output_without_the_marker_passes_through_untouched() {
        let (out, pid) = sniff(&[b"hello", b"\x1emcp-ssh-pid:1\x1e"]);
        assert_eq!(pid, None);
        assert_eq!(out, b"hello\x1emcp-ssh-pid:1\x1e");
        let (out, pid) = sniff(&[b"\x1emcp-ssh-pid:12x"]);
        assert_eq!((out.as_slice(), pid), (&b"\x1emcp-ssh-pid:12x"[..], None));
    }

    #[test]
    fn a_truncated_marker_at_end_of_stream_is_returned() {
        let (out, pid) = sniff(&[b"\x1emcp-ssh"]);
        assert_eq!((out.as_slice(), pid), (&b"\x1emcp-ssh"[..], None));
    }

    #[test]
    fn the_wrapper_keeps_the_command_on_the_first_line() {
        let w = wrap("echo hi");
        assert!(!w.contains('\n'));
        assert!(w.ends_with("; echo hi"));
    }
}
