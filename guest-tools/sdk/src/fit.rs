//! How much of some output fits in a result.
//!
//! A result carries its text twice (as text, and in the structured
//! content), as JSON: a control character there takes 6 bytes (`\u0001`),
//! a byte that is not UTF-8 takes 3 (U+FFFD), so 16 MiB of output can
//! become a 200 MB answer, past what the host takes and what a component's
//! memory holds. Tools cut such output to a JSON size, counted here as
//! serde_json writes a string, and say so.

/// JSON bytes a tool may spend on one stream or one file's content: two
/// copies of two streams stay well under the host's 80 MiB result limit.
pub const JSON_BUDGET: usize = 18 << 20;

/// What `c` takes inside a JSON string.
fn char_cost(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Calls `go` after each character of `bytes` decoded as
/// [`crate::decode_lossy`] does (a run that is not UTF-8 is one U+FFFD)
/// with the offset in `bytes` reached and the JSON bytes so far, until it
/// returns false.
fn walk(bytes: &[u8], mut go: impl FnMut(usize, usize) -> bool) {
    let (mut at, mut cost) = (0, 0);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            at += c.len_utf8();
            cost += char_cost(c);
            if !go(at, cost) {
                return;
            }
        }
        if !chunk.invalid().is_empty() {
            at += chunk.invalid().len();
            cost += '\u{fffd}'.len_utf8();
            if !go(at, cost) {
                return;
            }
        }
    }
}

/// The JSON bytes `bytes` takes as a string.
pub fn json_cost(bytes: &[u8]) -> usize {
    let mut total = 0;
    walk(bytes, |_, cost| {
        total = cost;
        true
    });
    total
}

/// Whether `bytes` takes at most `budget` JSON bytes; no byte takes more
/// than 6, so most output is not walked.
pub fn fits(bytes: &[u8], budget: usize) -> bool {
    bytes.len().saturating_mul(6) <= budget || json_cost(bytes) <= budget
}

/// The length of the longest prefix of `bytes`, ending between
/// characters, that takes at most `budget` JSON bytes.
pub fn prefix_within(bytes: &[u8], budget: usize) -> usize {
    let mut end = 0;
    walk(bytes, |at, cost| {
        if cost > budget {
            return false;
        }
        end = at;
        true
    });
    end
}

/// Where the longest suffix of `bytes`, starting between characters,
/// that takes at most `budget` JSON bytes starts.
pub fn suffix_within(bytes: &[u8], budget: usize) -> usize {
    let total = json_cost(bytes);
    let Some(over) = total.checked_sub(budget).filter(|&o| o > 0) else {
        return 0;
    };
    let mut start = bytes.len();
    walk(bytes, |at, cost| {
        if cost >= over {
            start = at;
            return false;
        }
        true
    });
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(bytes: &[u8]) -> usize {
        let text = crate::decode_lossy(bytes);
        serde_json::to_string(&text).unwrap().len() - 2
    }

    #[test]
    fn the_cost_is_what_serde_json_writes() {
        for bytes in [
            &b"plain text\n"[..],
            b"\x01\x02\x1f\x7f\"\\\t\r\x08\x0c",
            "h\u{e9}llo \u{2713} \u{1f600}".as_bytes(),
            b"\xff\xfe ok \xc3",
            b"",
        ] {
            assert_eq!(json_cost(bytes), encoded(bytes), "{bytes:?}");
        }
    }

    #[test]
    fn prefixes_and_suffixes_fit_and_end_between_characters() {
        let bytes = "ab\u{1}\u{e9}\u{2713}\n\u{ff}z".as_bytes();
        for budget in 0..30 {
            let end = prefix_within(bytes, budget);
            assert!(std::str::from_utf8(&bytes[..end]).is_ok(), "{budget}");
            assert!(encoded(&bytes[..end]) <= budget, "{budget}");
            let start = suffix_within(bytes, budget);
            assert!(std::str::from_utf8(&bytes[start..]).is_ok(), "{budget}");
            assert!(encoded(&bytes[start..]) <= budget, "{budget}: {start}");
        }
        assert_eq!(prefix_within(bytes, 100), bytes.len());
        assert_eq!(suffix_within(bytes, 100), 0);
        // Control characters: 6 bytes each.
        assert_eq!(prefix_within(&[1; 100], 60), 10);
        assert_eq!(suffix_within(&[1; 100], 60), 90);
    }
}
