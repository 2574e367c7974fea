//! One output stream kept within a byte limit: the first half and the last
//! half, with the count of what was dropped between. Cuts land on UTF-8
//! character boundaries so valid text stays valid. Also the stream's last
//! short line, which progress reports show.

use std::collections::VecDeque;

/// One captured stream: all of it, or its head and tail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOutput {
    pub head: Vec<u8>,
    /// Empty unless `truncated`.
    pub tail: Vec<u8>,
    pub total_bytes: u64,
    pub truncated: bool,
}

/// Head-and-tail capture of one stream.
pub(crate) struct Capture {
    head_cap: usize,
    tail_cap: usize,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    pub(crate) total: u64,
}

impl Capture {
    pub(crate) fn new(limit: usize) -> Self {
        let head_cap = limit.div_ceil(2);
        Self {
            head_cap,
            tail_cap: limit - head_cap,
            head: Vec::new(),
            tail: VecDeque::new(),
            total: 0,
        }
    }

    pub(crate) fn push(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let n = room.min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        if data.is_empty() || self.tail_cap == 0 {
            return;
        }
        if data.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&data[data.len() - self.tail_cap..]);
        } else {
            let overflow = (self.tail.len() + data.len()).saturating_sub(self.tail_cap);
            self.tail.drain(..overflow);
            self.tail.extend(data);
        }
    }

    pub(crate) fn finish(self) -> StreamOutput {
        let mut head = self.head;
        let mut tail: Vec<u8> = self.tail.into();
        let truncated = self.total > (head.len() + tail.len()) as u64;
        if !truncated {
            head.append(&mut tail);
            return StreamOutput {
                head,
                tail,
                total_bytes: self.total,
                truncated,
            };
        }
        head.truncate(utf8_floor(&head));
        let skip = tail
            .iter()
            .take(3)
            .take_while(|&&b| is_continuation(b))
            .count();
        tail.drain(..skip);
        StreamOutput {
            head,
            tail,
            total_bytes: self.total,
            truncated,
        }
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// The length of the longest prefix of `b` that does not end inside a
/// multi-byte UTF-8 character.
pub(crate) fn utf8_floor(b: &[u8]) -> usize {
    let n = b.len();
    for back in 1..=4.min(n) {
        let lead = b[n - back];
        if is_continuation(lead) {
            continue;
        }
        let width = match lead {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            _ => 4,
        };
        return if width > back { n - back } else { n };
    }
    n
}

/// The last complete, non-empty line of a stream that is at most
/// [`LastLine::MAX`] bytes long, for progress reports.
///
/// Each chunk is searched backwards for its newlines (memchr), so a
/// 50 MB stream costs a few vector passes rather than a branch per byte:
/// a per-byte loop here was half of the server's CPU on a large output
/// whenever a client asked for progress.
#[derive(Default)]
pub(crate) struct LastLine {
    /// The line not yet ended, kept to `MAX + 1` bytes: one more than a
    /// line may have is enough to know it is too long.
    partial: Vec<u8>,
    last: Option<String>,
}

impl LastLine {
    pub(crate) const MAX: usize = 200;

    pub(crate) fn push(&mut self, data: &[u8]) {
        let Some(last_newline) = memchr::memrchr(b'\n', data) else {
            self.extend_partial(data);
            return;
        };
        // Lines wholly inside this chunk, newest first; the first one that
        // qualifies is the answer and everything before it is moot. Runs
        // of empty lines are skipped in one pass and a long line in one
        // search, so a chunk of nothing but newlines costs no more than
        // any other.
        let mut end = last_newline;
        loop {
            let Some(last_byte) = data[..end].iter().rposition(|&b| b != b'\n') else {
                // Only newlines before: the chunk's first line is empty and
                // ends the one held from earlier chunks as it is.
                self.end_partial(&[]);
                break;
            };
            match memchr::memrchr(b'\n', &data[..last_byte]) {
                Some(newline) => {
                    let line = &data[newline + 1..=last_byte];
                    if line.len() <= Self::MAX {
                        self.last = Some(String::from_utf8_lossy(line).into_owned());
                        break;
                    }
                    end = newline;
                }
                None => {
                    // The chunk's first line: it ends the held one.
                    self.end_partial(&data[..=last_byte]);
                    break;
                }
            }
        }
        self.partial.clear();
        self.extend_partial(&data[last_newline + 1..]);
    }

    /// The held line, ended by `rest` and a newline.
    fn end_partial(&mut self, rest: &[u8]) {
        self.extend_partial(rest);
        if !self.partial.is_empty() && self.partial.len() <= Self::MAX {
            self.last = Some(String::from_utf8_lossy(&self.partial).into_owned());
        }
    }

    pub(crate) fn last(&self) -> Option<&String> {
        self.last.as_ref()
    }

    fn extend_partial(&mut self, bytes: &[u8]) {
        let room = (Self::MAX + 1).saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(limit: usize, chunks: &[&[u8]]) -> StreamOutput {
        let mut c = Capture::new(limit);
        for ch in chunks {
            c.push(ch);
        }
        c.finish()
    }

    /// What [`LastLine`] must agree with: a byte at a time.
    fn last_line_byte_by_byte(chunks: &[&[u8]]) -> Option<String> {
        let (mut line, mut last) = (Vec::new(), None);
        for &b in chunks.concat().iter() {
            if b == b'\n' {
                if !line.is_empty() && line.len() <= LastLine::MAX {
                    last = Some(String::from_utf8_lossy(&line).into_owned());
                }
                line.clear();
            } else {
                line.push(b);
            }
        }
        last
    }

    #[test]
    fn the_last_line_is_the_last_short_complete_one_however_the_stream_is_cut() {
        let max = LastLine::MAX;
        let long = "x".repeat(max + 1);
        let fits = "y".repeat(max);
        let streams: Vec<Vec<u8>> = vec![
            b"one\ntwo\n".to_vec(),
            b"one\ntwo".to_vec(),
            b"one\n\n\n".to_vec(),
            format!("short\n{long}\n").into_bytes(),
            format!("short\n{fits}\n\n").into_bytes(),
            format!("{long}\nlast\n{long}").into_bytes(),
            format!("a\n{}\n", "z".repeat(10_000)).into_bytes(),
            b"\xff\xfe bytes\n".to_vec(),
            b"no newline at all".to_vec(),
            b"held\n\n\n\nlast\n\n\n".to_vec(),
            vec![b'\n'; 100_000],
            [b"held".as_slice(), &[b'\n'; 70_000]].concat(),
        ];
        // A fixed pseudo-random mix of short lines, long lines and runs of
        // newlines, so cuts land everywhere.
        let mut mixed = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = match seed % 5 {
                0 => 0,
                1 => max,
                2 => max + 1,
                _ => (seed >> 8) as usize % 300,
            };
            mixed.extend(std::iter::repeat_n(b'a' + (seed % 26) as u8, len));
            mixed.push(b'\n');
        }
        let mut streams = streams;
        streams.push(mixed);
        for stream in &streams {
            for size in [1, 2, 3, 7, 64, 199, 200, 201, 202, 4096, usize::MAX] {
                let chunks: Vec<&[u8]> = stream.chunks(size.min(stream.len().max(1))).collect();
                let mut tracker = LastLine::default();
                for c in &chunks {
                    tracker.push(c);
                }
                assert_eq!(
                    tracker.last().cloned(),
                    last_line_byte_by_byte(&chunks),
                    "chunks of {size}"
                );
            }
        }
    }

    #[test]
    fn small_output_is_kept_whole_across_chunks() {
        let out = capture(10, &[b"abc", b"defg", b"hij"]);
        assert_eq!(out.head, b"abcdefghij");
        assert!(out.tail.is_empty() && !out.truncated);
        assert_eq!(out.total_bytes, 10);
    }

    #[test]
    fn large_output_keeps_head_and_tail() {
        let data: Vec<u8> = (0..100u8).collect();
        let out = capture(10, &[&data[..33], &data[33..34], &data[34..]]);
        assert!(out.truncated);
        assert_eq!(out.head, (0..5u8).collect::<Vec<_>>());
        assert_eq!(out.tail, (95..100u8).collect::<Vec<_>>());
        assert_eq!(out.total_bytes, 100);
    }

    #[test]
    fn cuts_fall_on_utf8_boundaries() {
        let text = "é".repeat(50); // 2 bytes each
        let bytes = text.as_bytes();
        // Odd limit: the naive head and tail both split a character.
        let out = capture(11, &[&bytes[..7], &bytes[7..]]);
        assert!(out.truncated);
        assert!(std::str::from_utf8(&out.head).is_ok(), "{:?}", out.head);
        assert!(std::str::from_utf8(&out.tail).is_ok(), "{:?}", out.tail);
        assert_eq!(out.head.len() % 2, 0);
    }

    #[test]
    fn zero_limit_keeps_nothing_but_counts() {
        let out = capture(0, &[b"hello"]);
        assert!(out.truncated && out.head.is_empty() && out.tail.is_empty());
        assert_eq!(out.total_bytes, 5);
    }

    #[test]
    fn utf8_floor_handles_complete_and_partial_tails() {
        assert_eq!(utf8_floor("a€".as_bytes()), 4);
        assert_eq!(utf8_floor(&"a€".as_bytes()[..3]), 1);
        assert_eq!(utf8_floor(b"abc"), 3);
        assert_eq!(utf8_floor(&"😀".as_bytes()[..3]), 0);
    }
}
