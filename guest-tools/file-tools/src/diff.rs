//! A short unified diff of an edit, for the agent to check what changed.
//!
//! The lines the two texts share at the start and at the end are trimmed,
//! and what lies between is one hunk with a few lines of context. An exact
//! replacement changes one contiguous stretch per occurrence, so for a
//! single edit this is the minimal hunk; with `replace_all` it spans from
//! the first change to the last. Bounded either way: at most
//! [`MAX_LINES`] lines of at most [`MAX_LINE_CHARS`] characters, the rest
//! counted.

/// Context lines around the change, as `diff -u` prints.
const CONTEXT: usize = 3;
/// Diff lines shown at most; the rest are counted in a closing line.
pub const MAX_LINES: usize = 60;
/// Characters kept of one line.
const MAX_LINE_CHARS: usize = 200;

/// `--- a/PATH`, `+++ b/PATH`, one `@@` hunk. Empty when nothing changed.
pub fn unified(path: &str, old: &str, new: &str) -> String {
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_suffix = a.len().min(b.len()) - prefix;
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    if prefix == a.len() && prefix == b.len() {
        return String::new();
    }
    let start = prefix.saturating_sub(CONTEXT);
    let a_end = (a.len() - suffix + CONTEXT).min(a.len());
    let b_end = (b.len() - suffix + CONTEXT).min(b.len());
    let mut lines: Vec<String> = Vec::new();
    lines.extend(a[start..prefix].iter().map(|l| line(' ', l)));
    lines.extend(a[prefix..a.len() - suffix].iter().map(|l| line('-', l)));
    lines.extend(b[prefix..b.len() - suffix].iter().map(|l| line('+', l)));
    lines.extend(a[a.len() - suffix..a_end].iter().map(|l| line(' ', l)));
    let mut out = format!(
        "--- a/{path}\n+++ b/{path}\n@@ -{} +{} @@\n",
        range(start, a_end),
        range(start, b_end)
    );
    let shown = lines.len().min(MAX_LINES);
    for l in &lines[..shown] {
        out.push_str(l);
    }
    if lines.len() > shown {
        out.push_str(&format!(
            "[... {} more diff lines not shown ...]\n",
            lines.len() - shown
        ));
    }
    out
}

/// A hunk range as `diff -u` writes it: `start,count`, 1-based; an empty
/// range names the line before it.
fn range(start: usize, end: usize) -> String {
    let count = end - start;
    if count == 0 {
        format!("{start},0")
    } else {
        format!("{},{count}", start + 1)
    }
}

fn line(mark: char, text: &str) -> String {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut out = String::with_capacity(body.len().min(MAX_LINE_CHARS) + 2);
    out.push(mark);
    match body.char_indices().nth(MAX_LINE_CHARS) {
        Some((cut, _)) => {
            out.push_str(&body[..cut]);
            out.push_str(" [...]");
        }
        None => out.push_str(body),
    }
    out.push('\n');
    if !text.ends_with('\n') {
        out.push_str("\\ No newline at end of file\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_changed_line_shows_with_its_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n";
        assert_eq!(
            unified("f", old, new),
            "--- a/f\n+++ b/f\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
    }

    #[test]
    fn an_insertion_at_the_start_and_a_missing_final_newline() {
        assert_eq!(
            unified("f", "a", "x\na"),
            "--- a/f\n+++ b/f\n@@ -1,1 +1,2 @@\n+x\n a\n\\ No newline at end of file\n"
        );
        assert_eq!(unified("f", "same\n", "same\n"), "");
    }

    #[test]
    fn a_huge_change_is_cut_and_counted() {
        let old: String = (0..500).map(|i| format!("{i}\n")).collect();
        let new: String = (0..500).map(|i| format!("n{i}\n")).collect();
        let diff = unified("f", &old, &new);
        assert!(
            diff.contains("[... 940 more diff lines not shown ...]"),
            "{diff}"
        );
        assert!(diff.lines().count() <= MAX_LINES + 4);
        let long = "x".repeat(10_000);
        let diff = unified("f", "a\n", &format!("{long}\n"));
        assert!(diff.len() < 600, "{}", diff.len());
    }
}
