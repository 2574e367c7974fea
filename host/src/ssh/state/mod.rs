//! What a session remembers between commands: its working directory and
//! the variables its commands exported or unset.
//!
//! A command on a login shell that reads POSIX sh runs inside a frame:
//!
//! ```text
//! <prelude>   on the command's first line (so the shell's errors give
//!             the user's line numbers): cd to the session's directory,
//!             set its variables, apply the call's own cwd and env, then
//!             print the environment (block `env`: a flag, the login
//!             directory, `export -p`)
//! <command>
//! <epilogue>  keep $?, print the directory and `export -p` (block `post`),
//!             exit with the command's status
//! ```
//!
//! Both blocks carry the call's nonce and are lifted out of stdout, and the
//! `post` block out of stderr too, for a command that sent its stdout there
//! ([`extract`]). What changed between the two listings, and where the
//! command ended, become the session's state, applied to the state the call
//! started from: of concurrent calls, the last to finish wins. A command
//! that exits early (`exit 3`, `set -e`), or is stopped, prints no `post`
//! block, and the state stays as it was; so does one whose listing cannot
//! be read whole. Values are decoded byte for byte from each shell's own
//! quoting and set again with POSIX single quotes ([`export`]).

pub(crate) mod export;
pub(crate) mod extract;

use std::borrow::Cow;
use std::collections::BTreeMap;

use extract::Block;

/// Most exported state a session keeps: the commands that set it again.
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
    /// By name: the value it was exported with, or `None` for a variable
    /// the session unset.
    pub(crate) vars: BTreeMap<String, Option<Vec<u8>>>,
    /// Counts resets: a command that started before one does not bring
    /// the old state back when it ends.
    pub(crate) epoch: u64,
}

impl SessionState {
    pub(crate) fn is_empty(&self) -> bool {
        self.cwd.is_none() && self.vars.is_empty()
    }

    /// The login state, as a reset leaves it.
    pub(crate) fn reset(&mut self) -> bool {
        let had = !self.is_empty();
        *self = Self {
            epoch: self.epoch + 1,
            ..Self::default()
        };
        had
    }
}

/// How one call runs inside its session's state.
#[derive(Debug)]
pub(crate) struct Frame {
    prelude: String,
    /// Under sudo: the call's directory and the variables, for the command
    /// sudo runs; empty otherwise.
    inner: String,
    /// Whether the command's end state is read back (a command line, not
    /// an argv, and state kept).
    capture: bool,
    nonce: String,
    /// What makes the login shell list bytes raw (zsh), before a listing.
    eight_bit: &'static str,
    /// The call's own `cwd`, for its error message.
    call_cwd: Option<String>,
    /// The session's directory the prelude goes to, for its note.
    session_cwd: Option<String>,
}

/// What a frame lifts out of a command's output.
#[derive(Debug)]
pub(crate) struct Blocks {
    env: Block,
    /// The call's own directory could not be entered.
    nocwd: Block,
    post: Option<Block>,
    /// The `post` block, when a command sent its stdout to stderr.
    post_err: Option<Block>,
}

/// The blocks a frame found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FrameOut {
    env: Option<Vec<u8>>,
    nocwd: bool,
    post: Option<Vec<u8>>,
    /// A block was past its size cap: found, but not read.
    oversized: bool,
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
    /// Under `sudo` (which resets the environment and may run as a user
    /// who can enter other directories) the call's directory and the
    /// variables go inside, in [`Self::inner`].
    pub(crate) fn new(
        state: &SessionState,
        call: (Option<&str>, &[(String, String)]),
        capture: bool,
        (shell, sudo): (&str, bool),
        nonce: &str,
    ) -> Self {
        let (call_cwd, call_env) = call;
        // zsh lists bytes past 0x7f as `\M-X`, which is ambiguous (`\M-\t`
        // is both 0x89 and 0xdc `t`), unless told to print them raw; the
        // option is put back before the command runs.
        let (eight_on, eight_off) = if shell.rsplit('/').next() == Some("zsh") {
            (
                "[[ -o print_eight_bit ]] || { __mcp_8=1; setopt print_eight_bit; }; ",
                "[ -z \"$__mcp_8\" ] || unsetopt print_eight_bit; ",
            )
        } else {
            ("", "")
        };
        let env_tag = format!("\\036mcp-ssh-env:{nonce}:");
        let env_end = format!("\\036mcp-ssh-env-end:{nonce}\\036");
        let mut pieces = vec!["__mcp_w= __mcp_h=$PWD".to_string()];
        if let Some(dir) = &state.cwd {
            pieces.push(format!(
                "cd -- {} 2>/dev/null || __mcp_w=gone",
                export::one_line_quote(dir)
            ));
        }
        let mut inside: Vec<String> = call_cwd
            .map(|dir| {
                // `./`: a relative `-` is a directory, not OLDPWD, and
                // CDPATH is not searched.
                let dir = if dir.starts_with('/') {
                    dir.to_string()
                } else {
                    format!("./{dir}")
                };
                format!(
                    "cd -- {} 2>/dev/null || {{ printf '\\036mcp-ssh-nocwd:{nonce}:\\036'; exit 1; }}",
                    export::one_line_quote(&dir)
                )
            })
            .into_iter()
            .collect();
        inside.extend(variable_pieces(state, call_env));
        if !sudo {
            pieces.append(&mut inside);
        }
        // `&&`: a shell where printf is not a builtin and PATH lacks it
        // (mksh) prints no listing without its block.
        let listing = if capture {
            format!("{eight_on}export -p && ")
        } else {
            String::new()
        };
        pieces.push(format!(
            "printf '{env_tag}%s\\036%s\\036' \"$__mcp_w\" \"$__mcp_h\" && {{ {listing}printf '{env_end}'; }}; \
             {eight_off}unset __mcp_w __mcp_h __mcp_nl __mcp_8",
        ));
        Self {
            prelude: one_line(&pieces),
            inner: one_line(&inside),
            capture,
            nonce: nonce.to_string(),
            eight_bit: if eight_on.is_empty() {
                ""
            } else {
                "setopt print_eight_bit; "
            },
            call_cwd: call_cwd.map(str::to_string),
            session_cwd: state.cwd.clone(),
        }
    }

    /// Under sudo: what goes before the command sudo runs (the call's
    /// directory, the variables), for the login shell, on one line.
    pub(crate) fn inner(&self) -> &str {
        &self.inner
    }

    /// How many bytes the frame adds to a command line.
    pub(crate) fn overhead(&self) -> usize {
        self.wrap_line("").len()
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
        // so the epilogue always starts a command of its own; its trace
        // under `set -x` goes nowhere, and a DEBUG trap the command set
        // stops before the listing.
        format!(
            "{}{command}\n\n{{ __mcp_s=$?; trap - DEBUG; set +vx; }} 2>/dev/null; {}\
             printf '\\036mcp-ssh-post:{nonce}:%s\\036' \"$PWD\" && export -p && \
             printf '\\036mcp-ssh-end:{nonce}\\036'; exit \"$__mcp_s\"",
            self.prelude, self.eight_bit
        )
    }

    /// A program and its arguments inside the frame: it cannot change the
    /// state, so nothing is read back.
    pub(crate) fn wrap_argv(&self, argv: &[String]) -> String {
        format!("{}{}", self.prelude, super::launch::exec_line(argv))
    }

    /// The blocks to lift out of the command's output.
    pub(crate) fn blocks(&self, argv: bool) -> Blocks {
        let tag = |t: &str, end: char| format!("{RS}mcp-ssh-{t}:{}{end}", self.nonce).into_bytes();
        let post = || Block::new(tag("post", ':'), tag("end", RS));
        let capture = self.capture && !argv;
        Blocks {
            env: Block::new(tag("env", ':'), tag("env-end", RS)),
            nocwd: Block::new(tag("nocwd", ':'), RS.to_string().into_bytes()),
            post: capture.then(post),
            post_err: capture.then(post),
        }
    }

    /// The state after the call, from what the blocks held. `start` is the
    /// state the call started from.
    pub(crate) fn finish(&self, start: &SessionState, out: &FrameOut) -> Result<Finished, NoCwd> {
        let mut done = Finished::default();
        if out.nocwd {
            return Err(NoCwd(self.call_cwd.clone().unwrap_or_default()));
        }
        let Some(env) = out.env.as_deref() else {
            if out.oversized {
                done.notes.push(unreadable());
            }
            return Ok(done);
        };
        let mut parts = env.splitn(3, |&b| b == 0x1e);
        let flag = parts.next().unwrap_or_default();
        let login_dir = parts.next().unwrap_or_default();
        let before = parts.next().unwrap_or_default();
        if flag == b"gone"
            && let Some(dir) = &self.session_cwd
        {
            done.notes.push(format!(
                "the session's working directory {dir} no longer exists or cannot be entered; \
                 the command ran in the login directory"
            ));
        }
        let Some(post) = out.post.as_deref() else {
            if out.oversized {
                done.notes.push(unreadable());
            }
            return Ok(done);
        };
        let Some(at) = post.iter().position(|&b| b == 0x1e) else {
            return Ok(done);
        };
        let (pwd, after) = (&post[..at], &post[at + 1..]);
        let Ok(pwd) = String::from_utf8(pwd.to_vec()) else {
            // A directory name that is not text (or holds the separator):
            // keep what was.
            done.notes.push(unreadable());
            return Ok(done);
        };
        let mut next = start.clone();
        if self.call_cwd.is_none() {
            next.cwd = (pwd.as_bytes() != login_dir).then(|| pwd.clone());
        }
        // Most commands change no variable: the two listings are the same
        // bytes, and there is nothing to read.
        if before != after {
            let (Some(before), Some(after)) = (export::parse(before), export::parse(after)) else {
                // A listing this reader cannot take whole: keep what was.
                done.notes.push(unreadable());
                return Ok(done);
            };
            if after.is_empty() && !before.is_empty() {
                // Not the shell's listing (`export` aliased to `true`): taken
                // at its word it would unset everything.
                done.notes.push(unreadable());
                return Ok(done);
            }
            for name in before.keys().chain(after.keys()) {
                let (b, a) = (
                    before.get(name).cloned().flatten(),
                    after.get(name).cloned().flatten(),
                );
                if b != a {
                    next.vars.insert(name.clone(), a);
                }
            }
        }
        if let Some(note) = bound(&mut next, start) {
            done.notes.push(note);
        }
        done.cwd = Some(pwd);
        done.state = Some(next);
        Ok(done)
    }
}

fn unreadable() -> String {
    "the command's environment could not be read back whole: its working directory and \
     variables were not kept for later commands"
        .into()
}

impl Blocks {
    /// Returns the part of stdout `data` that is the command's own.
    pub(crate) fn feed<'a>(&mut self, data: &'a [u8]) -> Cow<'a, [u8]> {
        // One scan of the bulk of a large output, not one per block.
        let blocks = [Some(&self.env), Some(&self.nocwd), self.post.as_ref()];
        if blocks.into_iter().flatten().all(Block::idle) && memchr::memchr(RS as u8, data).is_none()
        {
            return data.into();
        }
        let out = match self.env.feed(data) {
            Cow::Borrowed(d) => self.nocwd.feed(d),
            Cow::Owned(v) => Cow::Owned(self.nocwd.feed(&v).into_owned()),
        };
        match (&mut self.post, out) {
            (Some(post), Cow::Borrowed(d)) => post.feed(d),
            (Some(post), Cow::Owned(v)) => Cow::Owned(post.feed(&v).into_owned()),
            (None, out) => out,
        }
    }

    /// Returns the part of stderr `data` that is the command's own.
    pub(crate) fn feed_err<'a>(&mut self, data: &'a [u8]) -> Cow<'a, [u8]> {
        match &mut self.post_err {
            Some(post) => post.feed(data),
            None => data.into(),
        }
    }

    /// What was found.
    pub(crate) fn out(&self) -> FrameOut {
        let post = [&self.post, &self.post_err]
            .into_iter()
            .flatten()
            .find_map(|b| b.content().map(<[u8]>::to_vec));
        FrameOut {
            env: self.env.content().map(<[u8]>::to_vec),
            nocwd: self.nocwd.content().is_some(),
            post,
            oversized: [Some(&self.env), self.post.as_ref(), self.post_err.as_ref()]
                .into_iter()
                .flatten()
                .any(Block::oversized),
        }
    }

    /// What is still held back of stdout when the stream ends.
    pub(crate) fn flush(&mut self) -> Vec<u8> {
        let mut out = self.env.flush();
        out = self.nocwd.feed(&out).into_owned();
        out.extend(self.nocwd.flush());
        match &mut self.post {
            Some(post) => {
                let mut out = post.feed(&out).into_owned();
                out.extend(post.flush());
                out
            }
            None => out,
        }
    }

    /// What is still held back of stderr when the stream ends.
    pub(crate) fn flush_err(&mut self) -> Vec<u8> {
        self.post_err.as_mut().map(Block::flush).unwrap_or_default()
    }
}

/// The commands that set the session's variables again, then the call's.
fn variable_pieces(state: &SessionState, call_env: &[(String, String)]) -> Vec<String> {
    let mut pieces: Vec<String> = state
        .vars
        .iter()
        .map(|(name, value)| set_again(name, value.as_deref()))
        .collect();
    for (name, value) in call_env {
        pieces.push(export::assign(name, value.as_bytes()));
    }
    pieces
}

fn set_again(name: &str, value: Option<&[u8]>) -> String {
    match value {
        Some(v) => export::assign(name, v),
        None => format!("unset {name}"),
    }
}

/// `pieces` on one line, each ended by `; `, with `$__mcp_nl` set first
/// when one needs it.
fn one_line(pieces: &[String]) -> String {
    let mut line = String::new();
    if pieces.iter().any(|p| p.contains("$__mcp_nl")) {
        line.push_str(export::NEWLINE);
    }
    for piece in pieces {
        line.push_str(piece);
        line.push_str("; ");
    }
    line
}

/// Keeps `state` within [`MAX_STATE_BYTES`] of commands that set it again:
/// variables the call added or changed go back to what they were at
/// `start`, largest first. Says which.
fn bound(state: &mut SessionState, start: &SessionState) -> Option<String> {
    let cost = |n: &str, v: &Option<Vec<u8>>| set_again(n, v.as_deref()).len() + 2;
    let size = |s: &SessionState| -> usize { s.vars.iter().map(|(n, v)| cost(n, v)).sum() };
    if size(state) <= MAX_STATE_BYTES {
        return None;
    }
    let mut new: Vec<(String, usize)> = state
        .vars
        .iter()
        .filter(|(n, v)| start.vars.get(*n) != Some(*v))
        .map(|(n, v)| (n.clone(), cost(n, v)))
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
