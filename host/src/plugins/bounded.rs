//! Caps on everything a guest controls that leaves the sandbox as text:
//! its `log` messages, its progress reports, and the host names, user
//! names, argv words and command lines that reach the log and the audit
//! log. A hostile component must not be able to fill the operator's disk
//! or a client's memory, whatever it sends.

use std::borrow::Cow;
use std::sync::Arc;

use super::ProgressSink;

/// Longest host or user name, argv word or denial reason logged or audited.
pub(crate) const MAX_FIELD: usize = 1024;
/// Longest command line logged or audited.
pub(crate) const MAX_COMMAND: usize = 4096;
/// Bytes of argv (all words) audited.
const MAX_ARGV: usize = 4096;
/// Longest single `log` message.
const MAX_LOG_MESSAGE: usize = 4096;
/// Bytes of `log` messages per call, as for stderr.
const LOG_CAPACITY: usize = 64 << 10;
/// `log` messages per call: each costs a line of prefix too.
const MAX_LOG_MESSAGES: u32 = 200;
/// Longest progress message sent to the client.
const MAX_PROGRESS_MESSAGE: usize = 1024;

/// `text` cut to at most `max` bytes (at a character boundary), with a
/// marker saying how much was cut.
pub(crate) fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!(
        "{}[... {} more bytes cut]",
        &text[..cut],
        text.len() - cut
    ))
}

/// `[user@]host[:port]` with each name clipped.
pub(crate) fn target(host: &str, username: Option<&str>, port: Option<u16>) -> String {
    let mut out = String::new();
    if let Some(u) = username {
        out.push_str(&clip(u, MAX_FIELD));
        out.push('@');
    }
    out.push_str(&clip(host, MAX_FIELD));
    if let Some(p) = port {
        out.push_str(&format!(":{p}"));
    }
    out
}

/// argv with each word clipped, and the words past [`MAX_ARGV`] bytes
/// replaced by one marker word.
pub(crate) fn argv(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut used = 0;
    for (i, w) in words.iter().enumerate() {
        let word = clip(w, MAX_FIELD);
        if used + word.len() > MAX_ARGV {
            let rest = &words[i..];
            let bytes: usize = rest.iter().map(String::len).sum();
            out.push(format!(
                "[... {} more words, {bytes} bytes, cut]",
                rest.len()
            ));
            break;
        }
        used += word.len();
        out.push(word.into_owned());
    }
    out
}

/// What one call may still write to the log through the `log` import.
#[derive(Debug, Default)]
pub(crate) struct LogBudget {
    bytes: usize,
    messages: u32,
    dropped_bytes: u64,
    dropped_messages: u64,
}

impl LogBudget {
    /// The message as it may be logged, or `None` once the call's budget
    /// is spent. Control characters are escaped so that a guest cannot
    /// forge log lines of its own.
    pub(crate) fn admit(&mut self, message: &str) -> Option<String> {
        if self.messages >= MAX_LOG_MESSAGES || self.bytes >= LOG_CAPACITY {
            self.dropped_messages += 1;
            self.dropped_bytes += message.len() as u64;
            return None;
        }
        let limit = MAX_LOG_MESSAGE.min(LOG_CAPACITY - self.bytes);
        let mut escaped = String::new();
        for c in clip(message, limit).chars() {
            if c.is_control() {
                escaped.extend(c.escape_default());
            } else {
                escaped.push(c);
            }
        }
        // Escaping may have grown it past the limit again.
        let escaped = clip(&escaped, limit).into_owned();
        self.messages += 1;
        self.bytes += escaped.len();
        Some(escaped)
    }

    /// One line on what was dropped, if anything was.
    pub(crate) fn report_dropped(&self, component: &str) {
        if self.dropped_messages > 0 {
            tracing::warn!(
                component,
                "[{} bytes of log dropped: {} more messages past the cap of {} KiB or {} messages per call]",
                self.dropped_bytes,
                self.dropped_messages,
                LOG_CAPACITY >> 10,
                MAX_LOG_MESSAGES
            );
        }
    }
}

/// Wraps a call's progress sink so that only what clients accept goes
/// out: finite numbers (JSON has no NaN; serde writes `null`, which
/// clients reject) and short messages.
pub(crate) fn progress(sink: ProgressSink) -> ProgressSink {
    Arc::new(
        move |progress: f64, total: Option<f64>, message: Option<String>| {
            if !progress.is_finite() {
                tracing::debug!("progress report dropped: progress is {progress}");
                return;
            }
            let total = match total {
                Some(t) if !t.is_finite() => {
                    tracing::debug!("progress total {t} dropped");
                    None
                }
                t => t,
            };
            let message = message.map(|m| match clip(&m, MAX_PROGRESS_MESSAGE) {
                Cow::Borrowed(_) => m,
                Cow::Owned(short) => short,
            });
            sink(progress, total, message);
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn clipping_keeps_whole_characters_and_says_what_was_cut() {
        assert_eq!(clip("short", 10), "short");
        let c = clip("ééééé", 5);
        assert_eq!(c, "éé[... 6 more bytes cut]");
    }

    #[test]
    fn argv_is_bounded_in_words_and_bytes() {
        let words: Vec<String> = (0..100).map(|_| "w".repeat(5000)).collect();
        let out = argv(&words);
        let bytes: usize = out.iter().map(String::len).sum();
        assert!(bytes < MAX_ARGV + 200, "{bytes}");
        assert!(out.last().unwrap().contains("more words"), "{out:?}");
        assert_eq!(argv(&["id".to_string()]), ["id"]);
    }

    #[test]
    fn the_log_budget_caps_bytes_and_messages_and_escapes_newlines() {
        let mut b = LogBudget::default();
        assert_eq!(b.admit("a\nb").unwrap(), "a\\nb");
        let big = "x".repeat(1 << 20);
        let mut kept = 0;
        for _ in 0..100 {
            kept += b.admit(&big).map_or(0, |m| m.len());
        }
        assert!(kept <= LOG_CAPACITY + 100, "{kept}");
        assert!(b.dropped_messages > 0);
        let mut b = LogBudget::default();
        let admitted = (0..1000).filter(|_| b.admit("x").is_some()).count();
        assert_eq!(admitted, MAX_LOG_MESSAGES as usize);
    }

    #[test]
    fn progress_values_are_finite_and_messages_short() {
        type Report = (f64, Option<f64>, Option<String>);
        let seen: Arc<Mutex<Vec<Report>>> = Arc::default();
        let s = seen.clone();
        let sink = progress(Arc::new(move |p, t, m| {
            s.lock().unwrap().push((p, t, m));
        }));
        sink(f64::NAN, None, None);
        sink(f64::INFINITY, Some(1.0), None);
        sink(1.0, Some(f64::NAN), Some("m".repeat(1 << 20)));
        sink(2.0, Some(3.0), Some("ok".into()));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].1, None);
        assert!(seen[0].2.as_ref().unwrap().len() < MAX_PROGRESS_MESSAGE + 64);
        assert_eq!(seen[1], (2.0, Some(3.0), Some("ok".into())));
    }
}
