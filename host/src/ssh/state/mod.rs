//! What a session remembers between commands: its working directory and
//! the variables its commands exported or unset.
//!
//! A command on a login shell that reads POSIX sh runs inside a frame:
//!
//! ```text
//! <prelude>   on the command's first line (so the shell's errors give
//!             the user's line numbers): cd to the session's directory,
//!             replay its variables, apply the call's own cwd and env, then
//!             print the environment (block `env`: a flag, the login
//!             directory, `export -p`)
//! <command>
//! <epilogue>  keep $?, print the directory and `export -p` (block `post`),
//!             exit with the command's status
//! ```
//!
//! Both blocks carry the call's nonce and are lifted out of stdout
//! ([`extract`]). What changed between the two listings, and where the
//! command ended, become the session's state, applied to the state the call
//! started from: of concurrent calls, the last to finish wins. A command
//! that exits early (`exit 3`, `set -e`), or is stopped, prints no `post`
//! block, and the state stays as it was. Variables are replayed with the
//! shell's own `export -p` entries ([`export`]), never re-quoted here.

pub(crate) mod export;
pub(crate) mod extract;

use std::borrow::Cow;
use std::collections::BTreeMap;

use extract::Block;

/// Most exported state a session keeps, entries and names together.
pub const MAX_STATE_BYTES: usize = 64 << 10;
/// Start of the frame's blocks: the record separator, as the launcher's
/// marker uses.
const RS: char = '\u{1e}';

/// A session's kept state, as shown to tools: never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateInfo {
    pub key: super::SessionKey,
    pub alias: Option<String>,
    /// Absent: the login directory.
    pub cwd: Option<String>,
    /// How many variables it has exported or unset.
    pub variables: u32,
}

/// The state one session keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionState {
    /// Absent: the login directory.
    pub(crate) cwd: Option<String>,
    /// By name: the login shell's own `export -p` entry that sets it, or
    /// `None` for a variable the session unset.
    pub(crate) vars: BTreeMap<String, Option<String>>,
}

impl SessionState {
    pub(crate) fn is_empty(&self) -> bool {
        self.cwd.is_none() && self.vars.is_empty()
    }
}

/// POSIX single quoting: exact in every POSIX shell, newlines included.
pub(crate) fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// How one call runs inside its session's state.
#[derive(Debug)]
pub(crate) struct Frame {
    prelude: String,
    /// The session's and the call's variables alone, for a command that
    /// starts in an environment of its own (`sudo` resets it).
    variables: String,
    /// Whether the command's end state is read back (a command line, not
    /// an argv, and state kept).
    capture: bool,
    nonce: String,
    /// The call's own `cwd`, for its error message.
    call_cwd: Option<String>,
    /// The session's directory the prelude goes to, for its note.
    session_cwd: Option<String>,
}

/// What a frame lifts out of a command's stdout.
#[derive(Debug)]
pub(crate) struct Blocks {
    env: Block,
    post: Option<Block>,
}

/// The blocks a frame found in a command's stdout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FrameOut {
    env: Option<Vec<u8>>,
    post: Option<Vec<u8>>,
}

/// How a framed call ended, as far as the state goes.
#[derive(Debug, Default)]
pub(crate) struct Finished {
    /// The session's state after it; `None`: unchanged.
    pub(crate) state: Option<SessionState>,
    /// Where the command ended, when known.
    pub(crate) cwd: Option<String>,
    pub(crate) notes: Vec<String>,
}

/// The call's own `cwd` could not be entered: nothing ran.
#[derive(Debug)]
pub(crate) struct NoCwd(pub(crate) String);

impl Frame {
    /// The frame for a call starting from `state`, with the call's own
    /// directory and variables; `capture` reads the end state back.
    pub(crate) fn new(
        state: &SessionState,
        call_cwd: Option<&str>,
        call_env: &[(String, String)],
        capture: bool,
        nonce: &str,
    ) -> Self {
        let env_tag = format!("\\036mcp-ssh-env:{nonce}:");
        let env_end = format!("\\036mcp-ssh-env-end:{nonce}\\036");
        let mut pieces = vec!["__mcp_w= __mcp_h=$PWD".to_string()];
        if let Some(dir) = &state.cwd {
            pieces.push(format!(
                "cd -- {} 2>/dev/null || __mcp_w=gone",
                sh_quote(dir)
            ));
        }
        if let Some(dir) = call_cwd {
            pieces.push(format!(
                "cd -- {} 2>/dev/null || {{ printf '{env_tag}nocwd\\036{env_end}'; exit 1; }}",
                sh_quote(dir)
            ));
        }
        let variables = variable_pieces(state, call_env);
        pieces.extend(variables.iter().cloned());
        pieces.push(format!(
            "printf '{env_tag}%s\\036%s\\036' \"$__mcp_w\" \"$__mcp_h\"; {}printf '{env_end}'; \
             unset __mcp_w __mcp_h __mcp_nl",
            if capture { "export -p; " } else { "" }
        ));
        // All on the command's first line: the shell's error messages then
        // give the user's own line numbers.
        let prelude = one_line(&pieces);
        Self {
            prelude,
            variables: one_line(&variables),
            capture,
            nonce: nonce.to_string(),
            call_cwd: call_cwd.map(str::to_string),
            session_cwd: state.cwd.clone(),
        }
    }

    /// The session's and the call's variables as commands for the login
    /// shell, on one line, each ended by `; `.
    pub(crate) fn variables(&self) -> &str {
        &self.variables
    }

    /// The call's nonce: the launcher's marker uses it too.
    pub(crate) fn nonce(&self) -> &str {
        &self.nonce
    }

    /// Whether the end state is read back.
    pub(crate) fn captures(&self) -> bool {
        self.capture
    }

    /// The command line to send: `command` inside the frame.
    pub(crate) fn wrap_line(&self, command: &str) -> String {
        if !self.capture {
            return format!("{}{command}", self.prelude);
        }
        let nonce = &self.nonce;
        // The blank line ends a trailing backslash-newline in the command,
        // so the epilogue always starts a command of its own.
        format!(
            "{}{command}\n\n__mcp_s=$?; printf '\\036mcp-ssh-post:{nonce}:%s\\036' \"$PWD\"; export -p; \
             printf '\\036mcp-ssh-end:{nonce}\\036'; exit \"$__mcp_s\"",
            self.prelude
        )
    }

    /// A program and its arguments inside the frame: it cannot change the
    /// state, so nothing is read back.
    pub(crate) fn wrap_argv(&self, argv: &[String]) -> String {
        let words: Vec<String> = argv.iter().map(|w| sh_quote(w)).collect();
        format!("{}exec {}", self.prelude, words.join(" "))
    }

    /// The blocks to lift out of the command's stdout.
    pub(crate) fn blocks(&self, argv: bool) -> Blocks {
        let tag = |t: &str| format!("{RS}mcp-ssh-{t}:{}", self.nonce).into_bytes();
        let with = |mut v: Vec<u8>, c: char| {
            v.extend_from_slice(c.to_string().as_bytes());
            v
        };
        Blocks {
            env: Block::new(with(tag("env"), ':'), with(tag("env-end"), RS)),
            post: (self.capture && !argv)
                .then(|| Block::new(with(tag("post"), ':'), with(tag("end"), RS))),
        }
    }

    /// The state after the call, from what `blocks` found. `start` is the
    /// state the call started from.
    pub(crate) fn finish(&self, start: &SessionState, out: &FrameOut) -> Result<Finished, NoCwd> {
        let mut done = Finished::default();
        let Some(env) = out.env.as_deref() else {
            return Ok(done);
        };
        let mut parts = env.splitn(3, |&b| b == 0x1e);
        let flag = parts.next().unwrap_or_default();
        let login_dir = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let before = parts.next().unwrap_or_default();
        if flag == b"nocwd" {
            return Err(NoCwd(self.call_cwd.clone().unwrap_or_default()));
        }
        if flag == b"gone"
            && let Some(dir) = &self.session_cwd
        {
            done.notes.push(format!(
                "the session's working directory {dir} no longer exists or cannot be entered; \
                 the command ran in the login directory"
            ));
        }
        let Some(post) = out.post.as_deref() else {
            return Ok(done);
        };
        let (pwd, after) = match post.iter().position(|&b| b == 0x1e) {
            Some(at) => (&post[..at], &post[at + 1..]),
            None => return Ok(done),
        };
        let pwd = String::from_utf8_lossy(pwd).into_owned();
        let mut next = start.clone();
        if self.call_cwd.is_none() {
            next.cwd = (pwd != login_dir).then(|| pwd.clone());
        }
        let (before, after) = (export::parse(before), export::parse(after));
        let mut changed: Vec<(&String, Option<&String>)> = Vec::new();
        for name in before.keys().chain(after.keys()) {
            let (b, a) = (
                before.get(name).cloned().flatten(),
                after.get(name).cloned().flatten(),
            );
            if b != a && !changed.iter().any(|(n, _)| *n == name) {
                changed.push((name, after.get(name).and_then(Option::as_ref)));
            }
        }
        for (name, entry) in changed {
            next.vars.insert(name.clone(), entry.cloned());
        }
        if let Some(note) = bound(&mut next, start) {
            done.notes.push(note);
        }
        done.cwd = Some(pwd);
        done.state = Some(next);
        Ok(done)
    }
}

impl Blocks {
    /// Returns the part of `data` that is the command's own output.
    pub(crate) fn feed<'a>(&mut self, data: &'a [u8]) -> Cow<'a, [u8]> {
        let out = self.env.feed(data);
        match (&mut self.post, out) {
            (Some(post), Cow::Borrowed(d)) => post.feed(d),
            (Some(post), Cow::Owned(v)) => Cow::Owned(post.feed(&v).into_owned()),
            (None, out) => out,
        }
    }

    /// What was found.
    pub(crate) fn out(&self) -> FrameOut {
        FrameOut {
            env: self.env.content().map(<[u8]>::to_vec),
            post: self
                .post
                .as_ref()
                .and_then(Block::content)
                .map(<[u8]>::to_vec),
        }
    }

    /// What is still held back when the stream ends.
    pub(crate) fn flush(&mut self) -> Vec<u8> {
        let out = self.env.flush();
        match &mut self.post {
            Some(post) => {
                let mut out = post.feed(&out).into_owned();
                out.extend(post.flush());
                out
            }
            None => out,
        }
    }
}

/// The commands that set the session's variables again, then the call's.
fn variable_pieces(state: &SessionState, call_env: &[(String, String)]) -> Vec<String> {
    let mut pieces = Vec::new();
    for (name, entry) in &state.vars {
        pieces.push(match entry {
            Some(entry) => entry.clone(),
            None => format!("unset {name}"),
        });
    }
    for (name, value) in call_env {
        pieces.push(format!("export {name}={}", sh_quote(value)));
    }
    pieces
}

/// `pieces` on one line, each ended by `; `; a newline inside one goes
/// through `__mcp_nl`, set first (see [`export::one_line`]).
fn one_line(pieces: &[String]) -> String {
    let mut newline = false;
    let mut line = String::new();
    for piece in pieces {
        let (piece, nl) = export::one_line(piece);
        newline |= nl;
        line.push_str(&piece);
        line.push_str("; ");
    }
    if newline {
        line.insert_str(0, "__mcp_nl=$(printf '\\nx'); __mcp_nl=${__mcp_nl%x}; ");
    }
    line
}

/// Keeps `state` within [`MAX_STATE_BYTES`]: variables the call added or
/// changed go back to what they were at `start`, largest first. Says which.
fn bound(state: &mut SessionState, start: &SessionState) -> Option<String> {
    let size = |s: &SessionState| -> usize {
        s.vars
            .iter()
            .map(|(n, e)| n.len() + e.as_ref().map_or(0, String::len) + 8)
            .sum()
    };
    if size(state) <= MAX_STATE_BYTES {
        return None;
    }
    let mut new: Vec<(String, usize)> = state
        .vars
        .iter()
        .filter(|(n, e)| start.vars.get(*n) != Some(*e))
        .map(|(n, e)| (n.clone(), e.as_ref().map_or(0, String::len)))
        .collect();
    new.sort_by_key(|e| std::cmp::Reverse(e.1));
    let mut dropped = Vec::new();
    for (name, _) in new {
        if size(state) <= MAX_STATE_BYTES {
            break;
        }
        match start.vars.get(&name) {
            Some(old) => state.vars.insert(name.clone(), old.clone()),
            None => state.vars.remove(&name),
        };
        dropped.push(name);
    }
    Some(format!(
        "not kept for later commands: {} (a session keeps at most {} KiB of exported variables)",
        dropped.join(", "),
        MAX_STATE_BYTES >> 10
    ))
}

#[cfg(test)]
mod tests;
