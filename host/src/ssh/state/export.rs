//! Reading a POSIX login shell's `export -p`: which variables it exports,
//! each with the shell's own entry that sets it again.
//!
//! Entries are kept as the shell wrote them (`export A='x'` in dash,
//! `declare -x A="x"` in bash, `export A=$'x\ny'` in zsh and ksh) and replayed
//! verbatim to the same shell, so no value is ever re-quoted here. What is
//! checked is that an entry is exactly one assignment: a known command, `-x`
//! style flags, and one word `NAME=VALUE` whose value holds no unquoted
//! expansion or operator. Anything else is skipped, never replayed: a value
//! crafted to look like the end of an entry cannot become code.

use std::collections::BTreeMap;

/// Names a session never keeps: the shell maintains them itself (the
/// directory is kept apart), or they are the frame's own.
fn ignored(name: &str) -> bool {
    // `_AST_FEATURES`: ksh93 exports it on its own when a builtin needs it.
    matches!(
        name,
        "PWD" | "OLDPWD" | "SHLVL" | "_" | "RANDOM" | "LINENO" | "_AST_FEATURES"
    ) || name.starts_with("__mcp_")
}

/// The exported variables in `text`, by name: `Some(entry)` for one with a
/// value, `None` for one exported without a value (as good as unset).
pub(crate) fn parse(text: &[u8]) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let text = String::from_utf8_lossy(text);
    for entry in entries(&text) {
        if let Some((name, has_value)) = assignment(entry)
            && !ignored(&name)
        {
            out.insert(name, has_value.then(|| entry.to_string()));
        }
    }
    out
}

/// Splits `text` into logical lines: a newline inside quotes, or after a
/// backslash, continues the entry.
fn entries(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut quote = Quote::None;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Quote::None => match b {
                b'\\' => i += 1,
                b'\'' => quote = Quote::Single,
                b'"' => quote = Quote::Double,
                b'$' if bytes.get(i + 1) == Some(&b'\'') => {
                    quote = Quote::Dollar;
                    i += 1;
                }
                b'\n' => {
                    out.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            },
            Quote::Single if b == b'\'' => quote = Quote::None,
            Quote::Double | Quote::Dollar if b == b'\\' => i += 1,
            Quote::Double if b == b'"' => quote = Quote::None,
            Quote::Dollar if b == b'\'' => quote = Quote::None,
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() && quote == Quote::None {
        out.push(&text[start..]);
    }
    out
}

/// `piece` (one shell word or command) with no newline in it, so that a
/// prelude of such pieces stays on the command's first line and the
/// shell's error messages give the user's own line numbers. A newline
/// inside quotes becomes the variable `__mcp_nl`, which the prelude sets
/// first; a backslash-newline outside quotes is a line continuation, and
/// goes. Returns whether `__mcp_nl` is needed.
pub(crate) fn one_line(piece: &str) -> (String, bool) {
    if !piece.contains('\n') {
        return (piece.to_string(), false);
    }
    let mut out = String::with_capacity(piece.len() + 16);
    let mut quote = Quote::None;
    let mut chars = piece.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Quote::None, '\\') if chars.peek() == Some(&'\n') => {
                chars.next();
            }
            (Quote::None | Quote::Double | Quote::Dollar, '\\') => {
                out.push(c);
                out.extend(chars.next());
            }
            (Quote::None, '\'') => {
                quote = Quote::Single;
                out.push(c);
            }
            (Quote::None, '"') => {
                quote = Quote::Double;
                out.push(c);
            }
            (Quote::None, '$') if chars.peek() == Some(&'\'') => {
                quote = Quote::Dollar;
                out.push(c);
                out.extend(chars.next());
            }
            (Quote::Single | Quote::Dollar, '\'') | (Quote::Double, '"') => {
                quote = Quote::None;
                out.push(c);
            }
            (Quote::Single, '\n') => out.push_str("'\"$__mcp_nl\"'"),
            (Quote::Double, '\n') => out.push_str("${__mcp_nl}"),
            (Quote::Dollar, '\n') => out.push_str("\\n"),
            // Outside quotes a newline ends a command; a piece has none.
            (Quote::None, '\n') => out.push(' '),
            _ => out.push(c),
        }
    }
    (out, true)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
    Dollar,
}

/// The variable `entry` sets, and whether it gives a value; `None` when
/// the entry is anything but one plain assignment.
fn assignment(entry: &str) -> Option<(String, bool)> {
    if let Some(tied) = entry.strip_prefix("export -T ") {
        return tied_assignment(tied);
    }
    let words = words(entry)?;
    let (command, rest) = words.split_first()?;
    if !matches!(*command, "export" | "declare" | "typeset") {
        return None;
    }
    let (word, flags) = rest.split_last()?;
    // `-x` exported, `-i` integer; anything else (readonly, arrays,
    // functions) is the shell's, not the session's.
    let plain_flag = |f: &&str| {
        f.len() > 1 && f.starts_with('-') && f[1..].bytes().all(|b| matches!(b, b'x' | b'i'))
    };
    if !flags.iter().all(plain_flag) {
        return None;
    }
    let (name, has_value) = match word.split_once('=') {
        Some((name, _)) => (name, true),
        None => (*word, false),
    };
    super::super::options::is_name(name).then(|| (name.to_string(), has_value))
}

/// zsh's listing of a scalar tied to an array, as `PATH` is:
/// `export -T PATH path=( /usr/bin '/a b' )`. Replayed as it is, it sets
/// both again; the elements must be plain words.
fn tied_assignment(tied: &str) -> Option<(String, bool)> {
    let (name, rest) = tied.split_once(' ')?;
    let (array, elements) = rest.split_once("=( ")?;
    let elements = match elements {
        ")" => "",
        e => e.strip_suffix(" )")?,
    };
    let is_name = super::super::options::is_name;
    (is_name(name) && is_name(array) && words(elements).is_some()).then(|| (name.to_string(), true))
}

/// The blank-separated words of `entry`, or `None` when it holds anything
/// that would run or redirect: an unquoted `;`, `&`, `|`, `<`, `>`, `(`,
/// `)`, backquote or `$` expansion, or one inside double quotes.
fn words(entry: &str) -> Option<Vec<&str>> {
    let bytes = entry.as_bytes();
    let mut words = Vec::new();
    let mut start = None;
    let mut quote = Quote::None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if quote == Quote::None && matches!(b, b' ' | b'\t') {
            if let Some(s) = start.take() {
                words.push(&entry[s..i]);
            }
            i += 1;
            continue;
        }
        start.get_or_insert(i);
        match quote {
            Quote::None => match b {
                b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' | b'`' | b'\n' => return None,
                b'$' if bytes.get(i + 1) == Some(&b'\'') => {
                    quote = Quote::Dollar;
                    i += 1;
                }
                b'$' => return None,
                b'\\' => i += 1,
                b'\'' => quote = Quote::Single,
                b'"' => quote = Quote::Double,
                _ => {}
            },
            Quote::Single if b == b'\'' => quote = Quote::None,
            Quote::Double => match b {
                b'\\' => i += 1,
                b'"' => quote = Quote::None,
                b'$' | b'`' => return None,
                _ => {}
            },
            Quote::Dollar => match b {
                b'\\' => i += 1,
                b'\'' => quote = Quote::None,
                _ => {}
            },
            Quote::Single => {}
        }
        i += 1;
    }
    if quote != Quote::None {
        return None;
    }
    if let Some(s) = start {
        words.push(&entry[s..]);
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<(String, Option<String>)> {
        parse(text.as_bytes()).into_iter().collect()
    }

    #[test]
    fn each_shells_own_quoting_is_read_whole() {
        // As dash, bash, zsh, ksh93 and mksh print A="x'y z", B="multi\nline".
        let dash = "export A='x'\"'\"'y z'\nexport B='multi\nline'\nexport PWD='/tmp'\n";
        let bash = "declare -x A=\"x'y z\"\ndeclare -x B=$'multi\\nline'\ndeclare -x OLDPWD\n";
        let zsh = "export A='x'\\''y z'\nexport B=$'multi\\nline'\nexport C='$(echo)\\a\"b'\n";
        let ksh = "export A=$'x\\'y z'\nexport B=$'multi\\nline'\nexport D=$'\\xc3\\xa9'\n";
        for text in [dash, bash, zsh, ksh] {
            let got = parse(text.as_bytes());
            let a = got["A"].as_deref().unwrap_or_else(|| panic!("{text}"));
            assert!(a.contains("A=") && a.contains("y z"), "{a}");
            assert!(got["B"].as_deref().is_some_and(|b| b.contains("line")));
            assert!(!got.contains_key("PWD") && !got.contains_key("OLDPWD"));
        }
        assert_eq!(
            names("export C='$(echo)\\a\"b'\n"),
            [("C".into(), Some("export C='$(echo)\\a\"b'".into()))]
        );
    }

    #[test]
    fn zshs_tied_path_is_kept_and_only_with_plain_elements() {
        let path = "export -T PATH path=( '/a b' '/c'\\''d' '$x' /usr/bin /bin )";
        assert_eq!(names(path), [("PATH".into(), Some(path.into()))]);
        assert_eq!(names("export -T FPATH fpath=( )").len(), 1);
        for bad in [
            "export -T PATH path=( $(id) )",
            "export -T PATH path=( /a ); id )",
            "export -T PATH path=( /a",
            "export -T 1X x=( /a )",
        ] {
            assert!(parse(bad.as_bytes()).is_empty(), "{bad}");
        }
    }

    #[test]
    fn an_exported_name_without_a_value_counts_as_unset() {
        assert_eq!(names("declare -x FOO\n"), [("FOO".into(), None)]);
    }

    #[test]
    fn entries_that_could_run_anything_are_skipped() {
        for bad in [
            "export A=$(id)",
            "export A=`id`",
            "export A=x; id",
            "export A=x && id",
            "export A=x | id",
            "export A=x >f",
            "declare -x A=\"$(id)\"",
            "declare -x A=\"`id`\"",
            "export A='unterminated",
            "export A=x B=y",
            "declare -rx A=\"x\"",
            "declare -ax A=()",
            "id",
            "export 1A=x",
            "export A-B=x",
        ] {
            assert!(parse(bad.as_bytes()).is_empty(), "{bad}");
        }
    }

    #[test]
    fn a_value_that_imitates_the_next_entry_stays_inside_its_quotes() {
        let text = "export A='x\nexport EVIL=1; id\n'\nexport B='ok'\n";
        let got = parse(text.as_bytes());
        assert_eq!(got.keys().collect::<Vec<_>>(), ["A", "B"]);
        assert!(got["A"].as_deref().is_some_and(|a| a.contains("EVIL")));
    }

    #[test]
    fn one_line_keeps_the_value_and_drops_the_newlines() {
        for (piece, expected) in [
            ("export A='x\ny'", "export A='x'\"$__mcp_nl\"'y'"),
            ("declare -x A=\"x\ny\"", "declare -x A=\"x${__mcp_nl}y\""),
            ("export A=$'x\ny'", "export A=$'x\\ny'"),
            ("export A=x\\\ny", "export A=xy"),
            ("export A='a\\'\"\n\"", "export A='a\\'\"${__mcp_nl}\""),
            ("export A='plain'", "export A='plain'"),
        ] {
            assert_eq!(one_line(piece).0, expected, "{piece:?}");
        }
    }

    #[test]
    fn the_frames_own_and_the_shells_variables_are_not_kept() {
        let text = "export __mcp_s='0'\nexport SHLVL='1'\nexport _='/bin/x'\nexport K='v'\n";
        assert_eq!(names(text), [("K".into(), Some("export K='v'".into()))]);
    }
}
