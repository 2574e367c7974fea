//! Reading a POSIX login shell's `export -p` into exact values, and
//! writing values back as commands any POSIX shell reads the same way.
//!
//! Each shell quotes its listing its own way: dash and BusyBox ash put raw
//! bytes in single quotes, bash double quotes and `$'\NNN'`, ksh93
//! `$'\xHH'` and `$'\x[HH]'`, mksh raw bytes inside `$'...'`, zsh
//! `$'\M-\C-X'` (which zsh itself cannot read back) and a tied
//! `export -T PATH path=( ... )`. The listing is decoded here, byte for
//! byte, by a strict reader: a word holding anything but quoted or plain
//! text (an expansion, an operator) fails the whole listing, which then
//! changes nothing. Values go back as `export NAME='...'`, never as the
//! shell's own text.

use std::collections::BTreeMap;

/// Names a session never keeps: the shell maintains them itself (the
/// directory is kept apart), or they are the frame's own.
fn ignored(name: &str) -> bool {
    // `_AST_FEATURES`: ksh93 exports it on its own when a builtin needs it.
    // bash's read-only ones (`export SHELLOPTS` is an idiom for carrying
    // `set -o` options to child shells): setting them again fails.
    matches!(
        name,
        "PWD"
            | "OLDPWD"
            | "SHLVL"
            | "_"
            | "RANDOM"
            | "LINENO"
            | "_AST_FEATURES"
            | "SHELLOPTS"
            | "BASHOPTS"
            | "UID"
            | "EUID"
            | "PPID"
            | "BASHPID"
    ) || name.starts_with("__mcp_")
}

/// The exported variables `text` lists, by name: `Some(value)`, or `None`
/// for one exported without a value (as good as unset). `None` overall
/// when the listing is not one this reader understands whole.
pub(crate) fn parse(text: &[u8]) -> Option<BTreeMap<String, Option<Vec<u8>>>> {
    let mut out = BTreeMap::new();
    let mut r = Reader { b: text, i: 0 };
    loop {
        while r.peek() == Some(b'\n') {
            r.i += 1;
        }
        if r.peek().is_none() {
            return Some(out);
        }
        let words = r.entry()?;
        let (name, value) = assignment(&words)?;
        if !ignored(&name) {
            out.insert(name, value);
        }
    }
}

/// One word of an entry: its decoded bytes, and whether it was a plain
/// `(` or `)` of zsh's array syntax.
#[derive(Debug)]
enum Word {
    Text(Vec<u8>),
    Open,
    Close,
}

/// The variable an entry sets and its value.
fn assignment(words: &[Word]) -> Option<(String, Option<Vec<u8>>)> {
    let text = |w: &Word| match w {
        Word::Text(t) => Some(t.clone()),
        _ => None,
    };
    let mut it = words.iter();
    let command = text(it.next()?)?;
    if !matches!(&command[..], b"export" | b"declare" | b"typeset") {
        return None;
    }
    let mut tied = false;
    let mut rest: Vec<&Word> = Vec::new();
    for w in it {
        match w {
            Word::Text(t) if rest.is_empty() && t.first() == Some(&b'-') => {
                tied |= t.contains(&b'T')
            }
            w => rest.push(w),
        }
    }
    if tied {
        // `NAME array=( elements... )`: the scalar is the elements joined.
        let [
            Word::Text(name),
            Word::Text(array),
            Word::Open,
            elements @ ..,
            Word::Close,
        ] = rest.as_slice()
        else {
            return None;
        };
        let name = String::from_utf8(name.clone()).ok()?;
        if !is_name(&name) || array.last() != Some(&b'=') {
            return None;
        }
        let mut value = Vec::new();
        for (i, e) in elements.iter().enumerate() {
            if i > 0 {
                value.push(b':');
            }
            value.extend(text(e)?);
        }
        return Some((name, Some(value)));
    }
    let [Word::Text(word)] = rest.as_slice() else {
        return None;
    };
    let (name, value) = match word.iter().position(|&b| b == b'=') {
        Some(at) => (&word[..at], Some(word[at + 1..].to_vec())),
        None => (&word[..], None),
    };
    let name = String::from_utf8(name.to_vec()).ok()?;
    is_name(&name).then_some((name, value))
}

fn is_name(name: &str) -> bool {
    super::super::options::is_name(name)
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    /// The words up to an unquoted newline (or the end).
    fn entry(&mut self) -> Option<Vec<Word>> {
        let mut words = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\n') => return Some(words),
                Some(b' ' | b'\t') => self.i += 1,
                Some(b'(') => {
                    self.i += 1;
                    words.push(Word::Open);
                }
                Some(b')') => {
                    self.i += 1;
                    words.push(Word::Close);
                }
                Some(_) => words.push(Word::Text(self.word()?)),
            }
        }
    }

    /// One word, decoded; `None` at anything that would expand or run.
    fn word(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b' ' | b'\t' | b'\n' | b'(' | b')') => return Some(out),
                Some(b';' | b'&' | b'|' | b'<' | b'>' | b'`') => return None,
                Some(b'\'') => {
                    self.i += 1;
                    loop {
                        match self.next()? {
                            b'\'' => break,
                            c => out.push(c),
                        }
                    }
                }
                Some(b'"') => {
                    self.i += 1;
                    loop {
                        match self.next()? {
                            b'"' => break,
                            b'$' | b'`' => return None,
                            b'\\' => match self.next()? {
                                b'\n' => {}
                                c @ (b'$' | b'`' | b'"' | b'\\') => out.push(c),
                                c => out.extend([b'\\', c]),
                            },
                            c => out.push(c),
                        }
                    }
                }
                Some(b'$') if self.b.get(self.i + 1) == Some(&b'\'') => {
                    self.i += 2;
                    loop {
                        match self.next()? {
                            b'\'' => break,
                            b'\\' => self.c_escape(&mut out)?,
                            c => out.push(c),
                        }
                    }
                }
                Some(b'$') => return None,
                Some(b'\\') => {
                    self.i += 1;
                    match self.next()? {
                        b'\n' => {}
                        c => out.push(c),
                    }
                }
                Some(c) => {
                    self.i += 1;
                    out.push(c);
                }
            }
        }
    }

    /// One escape of `$'...'`, after its backslash, as bash, ksh93, mksh
    /// and zsh write them.
    fn c_escape(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let c = self.next()?;
        match c {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'e' | b'E' => out.push(0x1b),
            b'f' => out.push(0xc),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0xb),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            self.i += 1;
                            v = v * 8 + u32::from(d - b'0');
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let bracket = self.peek() == Some(b'[') || self.peek() == Some(b'{');
                if bracket {
                    self.i += 1;
                }
                let v = self.hex(if bracket { 8 } else { 2 })?;
                if bracket && !matches!(self.next()?, b']' | b'}') {
                    return None;
                }
                // ksh93 brackets a byte when a hex digit follows it.
                match u8::try_from(v) {
                    Ok(b) => out.push(b),
                    Err(_) => push_char(out, v)?,
                }
            }
            b'u' => push_char(out, self.hex(4)?)?,
            b'U' => push_char(out, self.hex(8)?)?,
            b'c' => out.push(ctrl(self.next()?)),
            // zsh: `\C-X` and `\M-X`, X itself possibly an escape.
            b'C' if self.peek() == Some(b'-') => {
                self.i += 1;
                out.push(ctrl(self.next()?));
            }
            // After `\M-` zsh writes `\C-X` or else one byte as it is,
            // a backslash too (`\M-\` is 0xdc).
            b'M' if self.peek() == Some(b'-') => {
                self.i += 1;
                let b = if self.b[self.i..].starts_with(b"\\C-") {
                    self.i += 3;
                    ctrl(self.next()?)
                } else {
                    self.next()?
                };
                out.push(b | 0x80);
            }
            c => out.push(c),
        }
        Some(())
    }

    fn hex(&mut self, max: usize) -> Option<u32> {
        let mut v = 0u32;
        let mut n = 0;
        while n < max {
            let Some(d) = self.peek().and_then(|c| (c as char).to_digit(16)) else {
                break;
            };
            self.i += 1;
            v = v.checked_mul(16)? + d;
            n += 1;
        }
        (n > 0).then_some(v)
    }
}

fn ctrl(c: u8) -> u8 {
    if c == b'?' { 0x7f } else { c & 0x1f }
}

fn push_char(out: &mut Vec<u8>, v: u32) -> Option<()> {
    let c = char::from_u32(v)?;
    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
    Some(())
}

/// The command that sets `name` to `value` in any POSIX shell, on one
/// line: single quotes, a newline through `$__mcp_nl` (which the prelude
/// sets first, see [`NEWLINE`]), and bytes that are not UTF-8 through
/// `printf %b`.
pub(crate) fn assign(name: &str, value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => format!("export {name}={}", one_line_quote(text)),
        Err(_) => {
            let mut escaped = String::with_capacity(value.len() * 2);
            for &b in value {
                if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b':') {
                    escaped.push(b as char);
                } else {
                    escaped.push_str(&format!("\\0{b:03o}"));
                }
            }
            // `x` keeps trailing newlines from the command substitution.
            format!(
                "__mcp_v=$(printf '%bx' '{escaped}'); export {name}=\"${{__mcp_v%x}}\"; unset __mcp_v"
            )
        }
    }
}

/// Sets `$__mcp_nl` to a newline, for [`one_line_quote`].
pub(crate) const NEWLINE: &str = "__mcp_nl=$(printf '\\nx'); __mcp_nl=${__mcp_nl%x}; ";

/// `text` single-quoted, with each newline outside the quotes as
/// `$__mcp_nl`, so the command stays on one line.
pub(crate) fn one_line_quote(text: &str) -> String {
    let quoted = format!("'{}'", text.replace('\'', r"'\''"));
    quoted.replace('\n', "'\"$__mcp_nl\"'")
}

#[cfg(test)]
mod tests;
