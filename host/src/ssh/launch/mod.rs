//! How a command reaches the remote process, whatever the login shell.
//!
//! sshd hands every exec request to the user's login shell (`$SHELL -c
//! LINE`), and login shells disagree on quoting: csh and tcsh expand `!`
//! even inside single quotes and refuse newlines in them, fish treats `\\`
//! and `\'` specially there and has no `$$`. So the line sent is always the
//! same small launcher, `exec /bin/sh -c '<script>' sh <words>`, written only
//! in characters that every one of those shells takes literally inside
//! single quotes (printable ASCII without `'`, `\` and `!`). Any other byte
//! of the payload travels as a `\0NNN` octal escape that `/bin/sh` decodes
//! with `printf %b` (a backslash followed by a digit is literal in all of
//! them). A payload too large for one SSH packet travels on stdin instead,
//! one encoded word per line, ended by an empty line (the command's own
//! stdin follows it; `read` takes one byte at a time from a pipe, so
//! the launcher reads nothing past it): Dropbear drops a connection whose packet
//! exceeds 35000 bytes, OpenSSH one past 256 KiB.
//!
//! The launcher, in `/bin/sh`:
//! - makes the command lead its own process group where the server did not
//!   (Dropbear), with `setsid`, which keeps its PID;
//! - prints `RS mcp-ssh:NONCE:PID:FLAG:SHELL RS` on stdout, found and removed
//!   by [`Marker`]; the nonce is fresh per call, so output cannot forge it,
//!   and `FLAG` is `G` when the PID is a process group the stop can signal;
//! - runs a command line in the login shell (`exec "$SHELL" -c`) or an argv
//!   with `exec`, so every word reaches the program unchanged.
//!
//! The marker names the login shell. Once it is known to read POSIX sh, a
//! connection's later commands skip the extra `/bin/sh` ([`direct`]).

use std::borrow::Cow;

/// Linux refuses a single `execve` argument past 128 KiB
/// (`MAX_ARG_STRLEN`), and the login shell gets the command line as one.
pub(crate) const MAX_COMMAND_BYTES: usize = 128 * 1024 - 1;
/// The whole argv of `exec-argv`, well under Linux's `ARG_MAX`.
pub(crate) const MAX_ARGV_BYTES: usize = 1 << 20;
/// Largest exec request sent inline to OpenSSH; beyond it the payload goes
/// on stdin. OpenSSH takes 32 KiB packets and commands of any length.
const MAX_INLINE: usize = 30 * 1024;
/// The same for other servers: Dropbear takes commands of 9000 bytes.
const MAX_INLINE_OTHER: usize = 8 * 1024;

/// The launcher script. No `'`, `\` (but before a digit), `!` or newline:
/// see the module comment.
const SCRIPT: &str = concat!(
    "n=$1 m=$2 s=$3; shift 3; ",
    "g=; read -r _ _ _ _ g _ </proc/self/stat 2>/dev/null; l=; f=G; ",
    "if [ \"${g:-$$}\" = $$ ]; then :; elif command -v setsid >/dev/null 2>&1; then l=setsid; else f=N; fi; ",
    "printf \"\\036mcp-ssh:%s:%s:%s:%s\\036\" \"$n\" $$ $f \"$SHELL\"; ",
    "if [ $s = s ]; then set --; while IFS= read -r w && [ -n \"$w\" ]; do set -- \"$@\" \"$w\"; done; fi; ",
    "for w; do shift; case $w in e*) w=$(printf %b \"${w#e}x\"); w=${w%x};; *) w=${w#p};; esac; ",
    "set -- \"$@\" \"$w\"; done; ",
    "if [ $m = a ]; then exec $l \"$@\"; fi; ",
    "exec $l \"${SHELL:-/bin/sh}\" -c \"$1\"",
);

/// For a command line whose login shell is not known to read POSIX sh: a
/// child `/bin/sh` prints the marker for the login shell, which then runs
/// the command itself, so rc files run once and the command is read in the
/// shell's own language. The login shell is the leader of this session
/// when sshd made it so (its `comm` is `$SHELL`'s name): flag `G`, stopped
/// with its session. Otherwise (Dropbear) the parent is the login shell if
/// its name says so: flag `N`, stopped as a process tree. Otherwise (csh may
/// run the line in a subshell of its own) nothing is claimed: flag `X`.
const MARK_PARENT: &str = concat!(
    "n=${SHELL##*/}; s=; read -r x x x x x s x </proc/self/stat 2>/dev/null; ",
    "c=; read -r x c x </proc/$s/stat 2>/dev/null; ",
    "if [ \"$c\" = \"($n)\" ]; then p=$s; f=G; else p=$PPID; c=; ",
    "read -r x c x </proc/$p/stat 2>/dev/null; f=X; [ \"$c\" = \"($n)\" ] && f=N; fi; ",
    "printf \"\\036mcp-ssh:%s:%s:%s:%s\\036\" \"$1\" $p $f \"$SHELL\"",
);

/// Login shells that read POSIX sh: once a connection's first command has
/// shown its login shell is one of these, commands are sent to it directly
/// (POSIX-quoted, no extra `/bin/sh`), so they cost what a plain `ssh host
/// cmd` does and the shell's errors read as usual (`sh: 1: x: not found`).
const POSIX_SHELLS: &[&str] = &[
    "sh", "dash", "bash", "zsh", "ksh", "ksh93", "mksh", "ash", "yash",
];

/// Whether `shell` (a `$SHELL` path) reads POSIX sh.
pub(crate) fn is_posix(shell: &str) -> bool {
    let name = shell.rsplit('/').next().unwrap_or(shell);
    POSIX_SHELLS.contains(&name)
}

/// POSIX single quoting: exact in every POSIX shell, newlines included.
pub(crate) fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// `exec` of `argv`, POSIX-quoted: the program replaces the shell.
pub(crate) fn exec_line(argv: &[String]) -> String {
    let words: Vec<String> = argv.iter().map(|w| sh_quote(w)).collect();
    format!("exec {}", words.join(" "))
}

/// The line for a login shell known to read POSIX sh: the marker, then
/// the command itself on the same line, so the shell's line numbers stay
/// the user's. Where the server did not make the command a group leader,
/// it runs again under `setsid` (same PID).
fn direct(payload: Payload<'_>, nonce: &str, openssh: bool) -> String {
    let body = match payload {
        Payload::Line(c) => c.to_string(),
        Payload::Argv(argv) => exec_line(argv),
    };
    let stat = "g=; read -r x x x x g x </proc/self/stat 2>/dev/null";
    let inner = format!(
        "{stat}; f=N; [ \"${{g:-$$}}\" = $$ ] && f=G; \
         printf '\\036mcp-ssh:{nonce}:%s:%s:%s\\036' $$ $f \"$SHELL\"; unset x g f; {body}"
    );
    if openssh {
        // sshd made the login shell a session leader already.
        return inner;
    }
    format!(
        "{stat}; if [ \"${{g:-$$}}\" = $$ ]; then :; elif command -v setsid >/dev/null 2>&1; \
         then exec setsid \"$SHELL\" -c {}; fi; {inner}",
        sh_quote(&inner)
    )
}

/// What to run: a command line for the login shell, or a program and its
/// arguments.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Payload<'a> {
    Line(&'a str),
    Argv(&'a [String]),
}

/// The exec request for one command, and what to write on its stdin first.
#[derive(Debug)]
pub(crate) struct Launch {
    pub(crate) line: String,
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) nonce: String,
}

/// Refuses what no remote could run, before anything is sent.
pub(crate) fn check(payload: Payload<'_>) -> Result<(), String> {
    match payload {
        Payload::Line(c) => {
            if c.trim().is_empty() {
                return Err("command must not be empty".into());
            }
            if c.contains('\0') {
                return Err("command must not contain NUL bytes".into());
            }
            if c.len() > MAX_COMMAND_BYTES {
                return Err(format!(
                    "the command line is {} bytes; at most {MAX_COMMAND_BYTES} fit in one remote \
                     command (Linux's limit for one argument). Put large data in a file on the \
                     remote host and read it from there",
                    c.len()
                ));
            }
        }
        Payload::Argv(argv) => {
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err("argv must name a program".into());
            }
            if argv.iter().any(|a| a.contains('\0')) {
                return Err("argv words must not contain NUL bytes".into());
            }
            let total: usize = argv.iter().map(|a| a.len() + 1).sum();
            if argv.iter().any(|a| a.len() > MAX_COMMAND_BYTES) || total > MAX_ARGV_BYTES {
                return Err(format!(
                    "the argv is {total} bytes; each word may have at most {MAX_COMMAND_BYTES} \
                     and all together {MAX_ARGV_BYTES}"
                ));
            }
        }
    }
    Ok(())
}

/// What the launcher needs to know of the server a command goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Server<'a> {
    /// The login shell, once a command has shown it.
    pub(crate) shell: Option<&'a str>,
    /// OpenSSH makes every command's login shell the leader of a session
    /// of its own; other servers (Dropbear) may not.
    pub(crate) openssh: bool,
    /// The largest packet the server takes on this channel.
    pub(crate) packet: usize,
}

impl Server<'_> {
    /// The longest exec request sent inline: Dropbear refuses command
    /// strings past 9000 bytes (`MAX_CMD_LEN`) and drops the connection.
    fn inline_max(&self) -> usize {
        let server = if self.openssh {
            MAX_INLINE
        } else {
            MAX_INLINE_OTHER
        };
        self.packet.min(server)
    }
}

/// The exec request for `payload`, with a fresh nonce.
pub(crate) fn build(payload: Payload<'_>, server: &Server<'_>) -> Launch {
    build_with(payload, server, new_nonce())
}

/// The exec request for `payload`, marked with `nonce`.
pub(crate) fn build_with(payload: Payload<'_>, server: &Server<'_>, nonce: String) -> Launch {
    let inline = |line: String| Launch {
        line,
        stdin: None,
        nonce: nonce.clone(),
    };
    if server.shell.is_some_and(is_posix) {
        let line = direct(payload, &nonce, server.openssh);
        if line.len() <= server.inline_max() {
            return inline(line);
        }
    }
    // Only under OpenSSH is the login shell known to lead the session that
    // the marker names; elsewhere the launcher's `setsid` is needed.
    if let (Payload::Line(c), true) = (payload, server.openssh) {
        let line = format!("/bin/sh -c '{MARK_PARENT}' sh {nonce}; {c}");
        if line.len() <= server.inline_max() {
            return inline(line);
        }
    }
    let (mode, words): (&str, Vec<&str>) = match payload {
        Payload::Line(c) => ("c", vec![c]),
        Payload::Argv(argv) => ("a", argv.iter().map(String::as_str).collect()),
    };
    let encoded: Vec<String> = words.iter().map(|w| encode(w)).collect();
    let head = format!("exec /bin/sh -c '{SCRIPT}' sh {nonce} {mode}");
    let inline_len = head.len() + encoded.iter().map(|w| w.len() + 3).sum::<usize>() + 2;
    if inline_len <= server.inline_max() {
        let mut line = head;
        line.push_str(" i");
        for w in &encoded {
            line.push_str(" '");
            line.push_str(w);
            line.push('\'');
        }
        return Launch {
            line,
            stdin: None,
            nonce,
        };
    }
    let mut stdin = Vec::with_capacity(inline_len + 1);
    for w in &encoded {
        stdin.extend_from_slice(w.as_bytes());
        stdin.push(b'\n');
    }
    // The end of the words (no encoded word is empty): what follows on
    // stdin is the command's own.
    stdin.push(b'\n');
    Launch {
        line: head + " s",
        stdin: Some(stdin),
        nonce,
    }
}

pub(crate) fn new_nonce() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the nonce still separates calls; it only has to
    // be unknown to what runs before the launcher.
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        bytes = (t.as_nanos() as u64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `p` + the word when it is plain, else `e` + the word with every other
/// byte as `\0NNN`.
fn encode(word: &str) -> String {
    let plain = |b: u8| (0x20..0x7f).contains(&b) && !matches!(b, b'\'' | b'\\' | b'!');
    if word.bytes().all(plain) {
        return format!("p{word}");
    }
    let mut out = String::with_capacity(word.len() * 2 + 1);
    out.push('e');
    for b in word.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\0{b:03o}"));
        }
    }
    out
}

/// How the command's processes can be found for a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// The PID leads the command's session and process group (`G`).
    Session,
    /// The PID is the login shell, but leads nothing (`N`): its process
    /// tree is what there is.
    Tree,
    /// The PID is not known to be the command's (`X`): no stop can be
    /// verified.
    Unknown,
}

/// What the launcher told about the remote process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Started {
    pub(crate) pid: u32,
    pub(crate) reach: Reach,
    /// The login shell (`$SHELL`).
    pub(crate) shell: String,
}

const RS: u8 = 0x1e;
/// Output scanned for the marker before giving up on it: rc files and
/// banners print before it, but not this much.
const SCAN_LIMIT: usize = 64 << 10;
/// The fields after the nonce: a PID, a flag, a shell path.
const FIELDS_MAX: usize = 512;

/// Finds and removes the launcher's marker in stdout, wherever the login
/// shell's start-up output put it. Output passes through as it arrives;
/// only bytes that may begin the marker are held back.
#[derive(Debug)]
pub(crate) struct Marker {
    prefix: Vec<u8>,
    held: Vec<u8>,
    scanned: usize,
    done: bool,
    started: Option<Started>,
    /// Output before the marker is dropped, not passed on.
    after_only: bool,
}

impl Marker {
    pub(crate) fn new(nonce: &str) -> Self {
        let mut prefix = vec![RS];
        prefix.extend_from_slice(b"mcp-ssh:");
        prefix.extend_from_slice(nonce.as_bytes());
        prefix.push(b':');
        Self {
            prefix,
            held: Vec::new(),
            scanned: 0,
            done: false,
            started: None,
            after_only: false,
        }
    }

    /// A marker whose stream passes on only what comes after it: the
    /// output of a script of ours, without what the login shell's start-up
    /// files printed first (a banner would read as the script's answer).
    /// It is looked for however long the banner (nothing is held but a
    /// marker's first bytes).
    pub(crate) fn after(nonce: &str) -> Self {
        Self {
            after_only: true,
            ..Self::new(nonce)
        }
    }

    pub(crate) fn started(&self) -> Option<&Started> {
        self.started.as_ref()
    }

    /// Returns the part of `data` that is the command's own output.
    pub(crate) fn feed<'a>(&mut self, data: &'a [u8]) -> Cow<'a, [u8]> {
        if self.done {
            return if self.after_only && self.started.is_none() {
                Cow::Borrowed(&[])
            } else {
                data.into()
            };
        }
        if self.held.is_empty() && memchr::memchr(RS, data).is_none() {
            self.scanned += data.len();
            if self.scanned > SCAN_LIMIT && !self.after_only {
                self.done = true;
            }
            return if self.after_only {
                Cow::Borrowed(&[])
            } else {
                data.into()
            };
        }
        self.held.extend_from_slice(data);
        let buf = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        while i < buf.len() {
            let Some(at) = buf[i..].iter().position(|&b| b == RS) else {
                out.extend_from_slice(&buf[i..]);
                i = buf.len();
                break;
            };
            out.extend_from_slice(&buf[i..i + at]);
            let rest = &buf[i + at..];
            match self.parse(rest) {
                Parse::Found(len) => {
                    if self.after_only {
                        out.clear();
                    }
                    out.extend_from_slice(&rest[len..]);
                    self.done = true;
                    return out.into();
                }
                Parse::Partial => {
                    self.held = rest.to_vec();
                    i = buf.len();
                    break;
                }
                Parse::No => {
                    out.push(RS);
                    i += at + 1;
                }
            }
        }
        debug_assert!(i >= buf.len());
        self.scanned += out.len();
        if self.scanned > SCAN_LIMIT && !self.after_only {
            self.done = true;
            out.append(&mut self.held);
        }
        if self.after_only {
            out.clear();
        }
        out.into()
    }

    fn parse(&mut self, rest: &[u8]) -> Parse {
        let n = rest.len().min(self.prefix.len());
        if rest[..n] != self.prefix[..n] {
            return Parse::No;
        }
        if rest.len() < self.prefix.len() {
            return Parse::Partial;
        }
        let body = &rest[self.prefix.len()..];
        let Some(end) = body.iter().position(|&b| b == RS) else {
            return if body.len() > FIELDS_MAX {
                Parse::No
            } else {
                Parse::Partial
            };
        };
        let text = String::from_utf8_lossy(&body[..end]);
        let mut fields = text.splitn(3, ':');
        let pid = fields.next().and_then(|p| p.parse::<u32>().ok());
        let flag = fields.next();
        let shell = fields.next().unwrap_or("").to_string();
        match (pid, flag) {
            (Some(pid), Some(flag)) => {
                let reach = match flag {
                    "G" => Reach::Session,
                    "N" => Reach::Tree,
                    _ => Reach::Unknown,
                };
                self.started = Some(Started { pid, reach, shell });
                Parse::Found(self.prefix.len() + end + 1)
            }
            _ => Parse::No,
        }
    }

    /// What is still held back when the stream ends.
    pub(crate) fn flush(&mut self) -> Vec<u8> {
        self.done = true;
        let held = std::mem::take(&mut self.held);
        if self.after_only { Vec::new() } else { held }
    }
}

enum Parse {
    Found(usize),
    Partial,
    No,
}

#[cfg(test)]
mod tests;
