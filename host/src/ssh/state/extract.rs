//! Lifting the frame's blocks out of a command's stdout as it streams.
//!
//! A block is `START ... END`, both tags carrying the call's nonce, so the
//! command's output cannot forge one. Output passes through as it arrives;
//! only bytes that may begin a tag are held back. A block's content is
//! capped: past the cap it is dropped as it comes (the tags are the
//! frame's, so it is never output) and the block counts as unread.

use std::borrow::Cow;

/// Largest block: two `export -p` listings of a generous environment.
const BLOCK_CAP: usize = 1 << 20;

/// Finds one block in a stream.
#[derive(Debug)]
pub(crate) struct Block {
    start: Vec<u8>,
    end: Vec<u8>,
    /// Bytes held back: a possible start of `start` (outside), or the
    /// content so far (inside).
    held: Vec<u8>,
    inside: bool,
    /// Found: the rest is output.
    done: bool,
    /// The content passed the cap and was dropped.
    oversized: bool,
    content: Option<Vec<u8>>,
}

impl Block {
    pub(crate) fn new(start: Vec<u8>, end: Vec<u8>) -> Self {
        Self {
            start,
            end,
            held: Vec::new(),
            inside: false,
            done: false,
            oversized: false,
            content: None,
        }
    }

    /// The block's content, once it has ended within its cap.
    pub(crate) fn content(&self) -> Option<&[u8]> {
        self.content.as_deref()
    }

    /// Whether a block began and grew past its cap.
    pub(crate) fn oversized(&self) -> bool {
        self.oversized
    }

    /// Whether nothing of a block is held or open: data without an RS
    /// byte then passes untouched.
    pub(crate) fn idle(&self) -> bool {
        self.done || (self.held.is_empty() && !self.inside)
    }

    /// Returns the part of `data` that is output, not block.
    pub(crate) fn feed<'a>(&mut self, data: &'a [u8]) -> Cow<'a, [u8]> {
        // A block found is done for good: later bytes, RS or not, are the
        // command's.
        if self.done || (self.idle() && memchr::memchr(0x1e, data).is_none()) {
            return data.into();
        }
        self.held.extend_from_slice(data);
        let buf = std::mem::take(&mut self.held);
        let mut out = Vec::new();
        if !self.inside {
            match find_tag(&buf, &self.start) {
                Found::At(at) => {
                    out.extend_from_slice(&buf[..at]);
                    self.inside = true;
                    self.held = buf[at + self.start.len()..].to_vec();
                }
                Found::Partial(at) => {
                    out.extend_from_slice(&buf[..at]);
                    self.held = buf[at..].to_vec();
                    return out.into();
                }
                Found::No => return buf.into(),
            }
        } else {
            self.held = buf;
        }
        // Inside: look for the end in everything held.
        let buf = std::mem::take(&mut self.held);
        match find_tag(&buf, &self.end) {
            Found::At(at) => {
                if !self.oversized {
                    self.content = Some(buf[..at].to_vec());
                }
                self.done = true;
                self.inside = false;
                out.extend_from_slice(&buf[at + self.end.len()..]);
            }
            _ if buf.len() > BLOCK_CAP => {
                // Drop it, keeping what may begin the end tag.
                self.oversized = true;
                let keep = self.end.len().saturating_sub(1).min(buf.len());
                self.held = buf[buf.len() - keep..].to_vec();
            }
            _ => self.held = buf,
        }
        out.into()
    }

    /// What is still held back when the stream ends: output, since a block
    /// cut off is no block (but one already past its cap stays dropped).
    pub(crate) fn flush(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.oversized {
            self.held.clear();
            return out;
        }
        if self.inside {
            out.extend_from_slice(&self.start);
        }
        out.append(&mut self.held);
        out
    }
}

enum Found {
    At(usize),
    /// `buf` ends with a proper prefix of the tag, from here.
    Partial(usize),
    No,
}

fn find_tag(buf: &[u8], tag: &[u8]) -> Found {
    let mut from = 0;
    while let Some(off) = buf[from..].iter().position(|&b| b == tag[0]) {
        let at = from + off;
        let rest = &buf[at..];
        if rest.len() >= tag.len() {
            if &rest[..tag.len()] == tag {
                return Found::At(at);
            }
        } else if tag.starts_with(rest) {
            return Found::Partial(at);
        }
        from = at + 1;
    }
    Found::No
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> Block {
        Block::new(b"\x1estart:n1:".to_vec(), b"\x1eend:n1\x1e".to_vec())
    }

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut b = block();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&b.feed(c));
        }
        out.extend(b.flush());
        (out, b.content().map(<[u8]>::to_vec))
    }

    #[test]
    fn a_block_is_lifted_out_wherever_the_chunks_cut_it() {
        let whole: &[u8] = b"before\x1estart:n1:inner\x1e data\x1eend:n1\x1eafter";
        for cut in 0..whole.len() {
            for cut2 in cut..whole.len() {
                let (out, content) = run(&[&whole[..cut], &whole[cut..cut2], &whole[cut2..]]);
                assert_eq!(out, b"beforeafter", "cut at {cut}/{cut2}");
                assert_eq!(content.as_deref(), Some(&b"inner\x1e data"[..]));
            }
        }
    }

    #[test]
    fn output_without_the_nonce_passes_untouched() {
        let text: &[u8] = b"a\x1estart:n2:x\x1eend:n2\x1e\x1e";
        assert_eq!(run(&[text]), (text.to_vec(), None));
    }

    #[test]
    fn a_block_cut_off_by_the_end_of_the_stream_is_output() {
        let text: &[u8] = b"a\x1estart:n1:partial";
        assert_eq!(run(&[text]), (text.to_vec(), None));
        let tail: &[u8] = b"a\x1esta";
        assert_eq!(run(&[tail]), (tail.to_vec(), None));
    }

    #[test]
    fn a_block_past_its_cap_is_dropped_never_output() {
        let mut b = block();
        let mut out = b.feed(b"before\x1estart:n1:").into_owned();
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..(BLOCK_CAP / chunk.len() + 2) {
            out.extend_from_slice(&b.feed(&chunk));
        }
        out.extend_from_slice(&b.feed(b"\x1eend:n1\x1eafter"));
        out.extend(b.flush());
        assert_eq!(out, b"beforeafter");
        assert!(b.oversized() && b.content().is_none());
    }

    #[test]
    fn after_its_block_output_passes_in_order_wherever_an_rs_falls() {
        let chunks: &[&[u8]] = &[b"\x1estart:n1:one\x1eend:n1\x1e", b"A\x1e", b"B\n", b"\x1e"];
        for cut in 1..chunks.len() {
            let (out, content) = run(&chunks[..=cut]);
            assert_eq!(out, chunks[1..=cut].concat(), "{cut}");
            assert_eq!(content.as_deref(), Some(&b"one"[..]));
        }
    }

    #[test]
    fn only_the_first_block_is_taken() {
        let text: &[u8] = b"\x1estart:n1:one\x1eend:n1\x1e\x1estart:n1:two\x1eend:n1\x1e";
        let (out, content) = run(&[text]);
        assert_eq!(content.as_deref(), Some(&b"one"[..]));
        assert_eq!(out, b"\x1estart:n1:two\x1eend:n1\x1e");
    }
}
