//! Where log records go: stderr, one record per line, whatever a record
//! holds.
//!
//! Records carry text the server does not choose: a JSON-RPC id or method
//! a client sent (rmcp logs them at `warn`), a host name, a remote error.
//! Written as they are, a newline in one forges a record of its own, an
//! escape sequence drives the operator's terminal, and a 5 MiB id is a
//! 5 MiB line. So each record is written whole, once it is formatted, with
//! its control characters, Unicode line separators and bidirectional
//! controls escaped (`\n`, `\u{1b}`, `\u{2028}`), bytes that are not UTF-8
//! escaped (`\x85`), and cut at
//! [`MAX_RECORD`] bytes, saying how much was dropped. Colours are off for
//! the same reason: an escape sequence in a record can no longer be told
//! from one the formatter wrote.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// Bytes of one record, its text as written before escaping.
pub const MAX_RECORD: usize = 16 << 10;

/// Makes the writer of each record; see the module header.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Record<io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        Record::new(io::stderr())
    }
}

/// One record, gathered as the formatter writes it and written to `out`,
/// escaped and cut, when dropped.
pub struct Record<W: Write> {
    text: Vec<u8>,
    /// Bytes past [`MAX_RECORD`], not kept.
    dropped: usize,
    out: W,
}

impl<W: Write> Record<W> {
    pub fn new(out: W) -> Self {
        Self {
            text: Vec::new(),
            dropped: 0,
            out,
        }
    }
}

impl<W: Write> Write for Record<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = MAX_RECORD.saturating_sub(self.text.len());
        let kept = buf.len().min(room);
        self.text.extend_from_slice(&buf[..kept]);
        self.dropped += buf.len() - kept;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for Record<W> {
    fn drop(&mut self) {
        if self.text.is_empty() {
            return;
        }
        let line = escape(&self.text, self.dropped);
        // Nowhere to report a failed write of the log itself.
        let _ = self.out.write_all(&line);
    }
}

/// Whether `c` may break a line or drive a terminal or reorder what is
/// shown: C0 and C1 controls, DEL, Unicode's line and paragraph
/// separators, and the bidirectional controls.
fn breaks_lines(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
                | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` as one line: control characters escaped (tab kept), the
/// formatter's final newline restored, and a note of `dropped` bytes.
fn escape(text: &[u8], mut dropped: usize) -> Vec<u8> {
    let mut body = text.strip_suffix(b"\n").unwrap_or(text);
    // A cut may fall inside a character: end before it.
    if dropped > 0
        && let Err(e) = std::str::from_utf8(body)
        && e.error_len().is_none()
    {
        dropped += body.len() - e.valid_up_to();
        body = &body[..e.valid_up_to()];
    }
    let mut line = Vec::with_capacity(body.len() + 64);
    for chunk in body.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => line.extend_from_slice(b"\\n"),
                '\r' => line.extend_from_slice(b"\\r"),
                '\t' => line.push(b'\t'),
                c if breaks_lines(c) => {
                    let _ = write!(line, "\\u{{{:x}}}", u32::from(c));
                }
                c => {
                    let mut utf8 = [0; 4];
                    line.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        // Bytes that are not UTF-8 (0x85 is a line break in Latin-1).
        for b in chunk.invalid() {
            let _ = write!(line, "\\x{b:02x}");
        }
    }
    if dropped > 0 {
        let _ = write!(line, " ... ({dropped} more bytes of this record dropped)");
    }
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(parts: &[&[u8]]) -> String {
        let mut out = Vec::new();
        {
            let mut record = Record::new(&mut out);
            for part in parts {
                record.write_all(part).unwrap();
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_record_is_one_line_whatever_it_holds() {
        let line = written(&[
            b"WARN response error id=1\n2026-11-30T06:00:00Z  INFO forged",
            b" \x1b[31mred\r\x07\tend\n",
        ]);
        assert_eq!(
            line,
            "WARN response error id=1\\n2026-11-30T06:00:00Z  INFO forged \\u{1b}[31mred\\r\\u{7}\tend\n"
        );
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn unicode_line_breaks_controls_and_stray_bytes_are_escaped() {
        let line = written(&[
            "a\u{85}b\u{9b}c\u{2028}d\u{2029}e\u{202e}f\n".as_bytes(),
            b"\x85g",
        ]);
        assert_eq!(
            line,
            "a\\u{85}b\\u{9b}c\\u{2028}d\\u{2029}e\\u{202e}f\\n\\x85g\n"
        );
    }

    #[test]
    fn a_huge_record_is_cut_and_says_so() {
        let huge = vec![b'x'; 5 << 20];
        let line = written(&[b"id=", &huge, b"\n"]);
        assert!(line.len() < MAX_RECORD + 100, "{}", line.len());
        assert!(
            line.ends_with(&format!(
                " ... ({} more bytes of this record dropped)\n",
                3 + huge.len() + 1 - MAX_RECORD
            )),
            "{}",
            &line[line.len() - 80..]
        );
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn a_cut_inside_a_character_ends_before_it() {
        let mut text = vec![b'x'; MAX_RECORD - 1];
        text.extend_from_slice("é and more".as_bytes());
        let line = written(&[&text]);
        assert!(line.starts_with(&"x".repeat(MAX_RECORD - 1)));
        assert!(
            line.ends_with(" ... (11 more bytes of this record dropped)\n"),
            "{}",
            &line[MAX_RECORD - 10..]
        );
    }

    #[test]
    fn utf8_and_plain_records_pass_unchanged() {
        assert_eq!(written(&["hôte é ✓ done\n".as_bytes()]), "hôte é ✓ done\n");
        assert_eq!(written(&[]), "");
    }
}
