//! Everything `sudo`: the command that runs a call through it, the watch
//! on its stderr, and the clear error when it refuses.
//!
//! The command is
//! `sudo -S -p PROMPT [-u USER] -- /bin/sh -c 'printf MARKER >&2; ... "$0" -c "$1" ...' LOGIN_SHELL SCRIPT`,
//! sent as an argv so that the launcher quotes it for any login shell
//! (an argv payload runs `"$@"` in place of the login shell, so its words
//! are never re-quoted). The `...` make a stop reach root's processes
//! ([`FORWARD`]). PROMPT
//! and MARKER carry a fresh random nonce each, so neither sudo's other
//! messages nor the command's output can forge them:
//!
//! - `-S` makes sudo read the password from the channel, and only when
//!   PROMPT shows on stderr is it written there. With `NOPASSWD` or cached
//!   credentials sudo never asks, so the password is never sent and cannot
//!   reach the command's stdin. It never appears in a command line, an
//!   environment or a log.
//! - MARKER on stderr says sudo has authenticated and the command starts:
//!   only then does the command's own stdin follow. Before it, what sudo
//!   says is kept to name the cause if it refuses.
//! - A second PROMPT means the password was wrong: stdin is closed at once,
//!   so sudo gives up instead of asking again.
//!
//! PROMPT and MARKER are removed from stderr; sudo's own messages
//! ("Sorry, try again.") stay, as they would in a terminal.

use std::borrow::Cow;

use zeroize::Zeroizing;

use super::launch::Payload;
use super::{SshError, Sudo};

const RS: u8 = 0x1e;
/// The root side of a stop. The login user's stop cannot signal root's
/// processes, and sudo passes a TERM on to its child alone, so a shell that
/// forked (`dash -c 'a; b'`) would die and leave its children running. So
/// the command runs as a child of a root `/bin/sh` that, on TERM or HUP,
/// sends TERM to the whole process group, and KILL 1.5 s later to what
/// is left of it (the login user's own KILL, 2 s after its TERM, cannot
/// reach root's processes), then reaps the command and exits with its
/// status (a signal shows as 128+N). Stdin goes through fd 3: an
/// asynchronous command gets `/dev/null` before its own redirections. Being
/// asynchronous, the command also starts with SIGINT and SIGQUIT ignored
/// (POSIX, without job control); stops use TERM.
const FORWARD: &str = "trap 'trap \"\" TERM HUP; kill -TERM 0; (sleep 1.5; kill -KILL 0) </dev/null >/dev/null 2>&1 &' TERM HUP; exec 3<&0; ";
const WAIT: &str = " <&3 3<&- & c=$!; exec 3<&-; while :; do wait $c; s=$?; kill -0 $c 2>/dev/null || exit $s; done";
/// sudo's messages before the marker, kept to explain a refusal.
const SAID_MAX: usize = 4096;
/// How long sudo gets to give up once it was refused the password (its own
/// delay after a wrong one is about 2 s).
pub(crate) const GIVE_UP: std::time::Duration = std::time::Duration::from_secs(3);

/// sudo quotes the command it refused (`not allowed to execute '/bin/sh -c
/// ...'`): that is this module's script with the session's variables in
/// it, which a message must not carry.
fn redact(said: &str) -> String {
    let mut out = String::with_capacity(said.len());
    let mut rest = said;
    while let Some(at) = rest.find("execute '") {
        let (head, tail) = rest.split_at(at + "execute '".len());
        out.push_str(head);
        match tail.find("' as ") {
            Some(end) => {
                out.push_str("/bin/sh -c …");
                rest = &tail[end..];
            }
            None => {
                out.push_str("/bin/sh -c …'");
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// How sudo refused to run the command. Each message names the cause and
/// what to do; none holds the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SudoError {
    #[error(
        "sudo refused the password (wrong password); nothing was run. Pass the right \
         sudo_password, or open the session with the login user's password"
    )]
    WrongPassword,
    #[error(
        "sudo asks for a password and none is available: pass sudo_password, or open the \
         session with a password; nothing was run"
    )]
    NoPassword,
    #[error(
        "the login user is not in the sudoers file of the host, so it may not use sudo: {said}"
    )]
    NotInSudoers { said: String },
    #[error(
        "sudoers does not allow the login user to run `/bin/sh` (every sudo command runs \
         through it) as the requested user: {said}"
    )]
    NotAllowed { said: String },
    #[error(
        "sudo needs a terminal on this host (`Defaults requiretty` in sudoers), and commands run \
         without one: allow this user without requiretty (`Defaults:USER !requiretty`)"
    )]
    RequireTty,
    #[error("sudo is not installed on the host, or not in the login shell's PATH: {said}")]
    Missing { said: String },
    #[error("sudo did not run the command (exit status {status}): {said}")]
    Failed { status: String, said: String },
    #[error("sudo_password must be one line (no newline, carriage return or NUL)")]
    BadPassword,
}

impl SudoError {
    /// The error a caller gets, naming the session.
    pub(crate) fn into_ssh(self, session: &str) -> SshError {
        let msg = format!("{session}: {self}");
        match self {
            Self::WrongPassword => SshError::Auth(msg),
            Self::NoPassword | Self::BadPassword => SshError::InvalidArgument(msg),
            Self::NotInSudoers { .. } | Self::NotAllowed { .. } | Self::RequireTty => {
                SshError::Denied(msg)
            }
            Self::Missing { .. } | Self::Failed { .. } => SshError::Other(msg),
        }
    }
}

/// A command ready to go through sudo.
pub(crate) struct Plan {
    /// The words to run (a [`Payload::Argv`]).
    pub(crate) argv: Vec<String>,
    pub(crate) watch: Watch,
    /// The password and its newline, when one is available.
    pub(crate) password: Option<Zeroizing<Vec<u8>>>,
}

/// Wraps `payload` for `sudo`. `script` is a command line for the login
/// shell `login_shell` (`/bin/sh` when not yet known); an argv payload runs
/// as exactly those words. `fallback` is the password that opened the
/// session.
pub(crate) fn plan(
    payload: Payload<'_>,
    sudo: &Sudo,
    login_shell: Option<&str>,
    fallback: Option<&Zeroizing<String>>,
) -> Result<Plan, SudoError> {
    let password = match sudo.password.as_ref().or(fallback) {
        Some(p) if p.contains(['\n', '\r', '\0']) => return Err(SudoError::BadPassword),
        Some(p) => {
            let mut line = Zeroizing::new(Vec::with_capacity(p.len() + 1));
            line.extend_from_slice(p.as_bytes());
            line.push(b'\n');
            Some(line)
        }
        None => None,
    };
    let prompt = format!("\x1emcp-ssh-sudo-prompt:{}\x1e", nonce());
    let mark = nonce();
    let mut argv: Vec<String> = vec!["sudo".into(), "-S".into(), "-p".into(), prompt.clone()];
    if let Some(user) = &sudo.user {
        argv.extend(["-u".into(), user.clone()]);
    }
    argv.extend(["--".into(), "/bin/sh".into(), "-c".into()]);
    let announce = format!("printf '\\036mcp-ssh-sudo:{mark}\\036' >&2");
    match payload {
        Payload::Line(script) => {
            argv.push(format!("{announce}; {FORWARD}\"$0\" -c \"$1\"{WAIT}"));
            argv.push(login_shell.unwrap_or("/bin/sh").to_string());
            argv.push(script.to_string());
        }
        Payload::Argv(words) => {
            argv.push(format!("{announce}; {FORWARD}\"$@\"{WAIT}"));
            argv.push("sh".into());
            argv.extend(words.iter().cloned());
        }
    }
    let mut marker = vec![RS];
    marker.extend_from_slice(b"mcp-ssh-sudo:");
    marker.extend_from_slice(mark.as_bytes());
    marker.push(RS);
    Ok(Plan {
        argv,
        watch: Watch::new(prompt.into_bytes(), marker),
        password,
    })
}

fn nonce() -> String {
    let mut bytes = [0u8; 12];
    // The nonces only have to be unknown to the command and to sudo's
    // other output; the clock still separates calls.
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        bytes[..8].copy_from_slice(&(t.as_nanos() as u64).to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What sudo's stderr showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// sudo asks for the password (the first time, or again).
    Prompt,
    /// sudo authenticated; the command starts.
    Started,
}

/// Watches stderr for the prompt and the marker, removing both. Bytes that
/// may begin either are held back until they can be told apart.
#[derive(Debug)]
pub(crate) struct Watch {
    prompt: Vec<u8>,
    marker: Vec<u8>,
    held: Vec<u8>,
    prompts: u32,
    started: bool,
    said: Vec<u8>,
}

impl Watch {
    fn new(prompt: Vec<u8>, marker: Vec<u8>) -> Self {
        Self {
            prompt,
            marker,
            held: Vec::new(),
            prompts: 0,
            started: false,
            said: Vec::new(),
        }
    }

    /// How many times sudo asked.
    pub(crate) fn prompts(&self) -> u32 {
        self.prompts
    }

    /// Whether sudo authenticated and started the command.
    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// Returns the part of `data` that is stderr as the caller sees it,
    /// and what happened in it.
    pub(crate) fn feed<'a>(&mut self, data: &'a [u8], events: &mut Vec<Event>) -> Cow<'a, [u8]> {
        if self.started {
            return data.into();
        }
        if self.held.is_empty() && !data.contains(&RS) {
            self.note(data);
            return data.into();
        }
        self.held.extend_from_slice(data);
        let buf = std::mem::take(&mut self.held);
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        while i < buf.len() {
            if self.started {
                out.extend_from_slice(&buf[i..]);
                break;
            }
            let Some(at) = buf[i..].iter().position(|&b| b == RS) else {
                self.note(&buf[i..]);
                out.extend_from_slice(&buf[i..]);
                break;
            };
            self.note(&buf[i..i + at]);
            out.extend_from_slice(&buf[i..i + at]);
            let rest = &buf[i + at..];
            let (found, partial) = [
                (&self.prompt, Event::Prompt),
                (&self.marker, Event::Started),
            ]
            .iter()
            .fold((None, false), |(found, partial), (token, event)| {
                let n = rest.len().min(token.len());
                match (rest[..n] == token[..n], rest.len() >= token.len()) {
                    (true, true) => (Some((token.len(), *event)), partial),
                    (true, false) => (found, true),
                    _ => (found, partial),
                }
            });
            if let Some((len, event)) = found {
                match event {
                    Event::Prompt => self.prompts += 1,
                    Event::Started => self.started = true,
                }
                events.push(event);
                i += at + len;
            } else if partial {
                self.held = rest.to_vec();
                break;
            } else {
                self.note(&[RS]);
                out.push(RS);
                i += at + 1;
            }
        }
        out.into()
    }

    fn note(&mut self, data: &[u8]) {
        let room = SAID_MAX.saturating_sub(self.said.len());
        self.said.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// What is still held back when the stream ends.
    pub(crate) fn flush(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }

    /// Why sudo did not run the command, once the channel ended without
    /// the marker; `no_password`: it asked and there was nothing to give.
    pub(crate) fn failure(&self, exit_status: Option<u32>, no_password: bool) -> SudoError {
        let said = String::from_utf8_lossy(&self.said);
        let said = said.trim();
        let quoted = || {
            let s: String = redact(said).chars().take(500).collect();
            if s.is_empty() {
                "sudo said nothing".to_string()
            } else {
                s.replace('\n', " ")
            }
        };
        if self.prompts >= 2 || said.contains("incorrect password attempt") {
            return SudoError::WrongPassword;
        }
        if no_password {
            return SudoError::NoPassword;
        }
        if said.contains("must have a tty") || said.contains("a terminal is required") {
            return SudoError::RequireTty;
        }
        if said.contains("is not in the sudoers file") {
            return SudoError::NotInSudoers { said: quoted() };
        }
        if said.contains("is not allowed to execute") || said.contains("may not run sudo") {
            return SudoError::NotAllowed { said: quoted() };
        }
        if exit_status == Some(127) && said.contains("sudo") {
            return SudoError::Missing { said: quoted() };
        }
        let status = exit_status.map_or_else(|| "none".to_string(), |s| s.to_string());
        SudoError::Failed {
            status,
            said: quoted(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sudo(user: Option<&str>, password: Option<&str>) -> Sudo {
        Sudo {
            user: user.map(String::from),
            password: password.map(|p| Zeroizing::new(p.to_string())),
        }
    }

    fn run(watch: &mut Watch, chunks: &[&[u8]]) -> (Vec<u8>, Vec<Event>) {
        let mut out = Vec::new();
        let mut events = Vec::new();
        for c in chunks {
            out.extend_from_slice(&watch.feed(c, &mut events));
        }
        out.extend(watch.flush());
        (out, events)
    }

    #[test]
    fn the_password_is_in_no_word_of_the_command() {
        let p = plan(
            Payload::Line("id -u"),
            &sudo(Some("bob"), Some("hunter2")),
            Some("/bin/bash"),
            None,
        )
        .unwrap();
        assert!(
            p.argv.iter().all(|w| !w.contains("hunter2")),
            "{:?}",
            p.argv
        );
        assert_eq!(&p.argv[..3], ["sudo", "-S", "-p"]);
        assert_eq!(&p.argv[4..7], ["-u", "bob", "--"]);
        assert_eq!(&p.argv[p.argv.len() - 2..], ["/bin/bash", "id -u"]);
        assert_eq!(
            p.password.as_deref().map(Vec::as_slice),
            Some(&b"hunter2\n"[..])
        );
        let argv = ["printf".to_string(), "%s".to_string()];
        let p = plan(Payload::Argv(&argv), &sudo(None, None), None, None).unwrap();
        assert!(!p.argv.contains(&"-u".to_string()));
        assert_eq!(&p.argv[p.argv.len() - 3..], ["sh", "printf", "%s"]);
        assert!(p.password.is_none());
        let fallback = Zeroizing::new("opened".to_string());
        let p = plan(Payload::Line("x"), &sudo(None, None), None, Some(&fallback)).unwrap();
        assert_eq!(
            p.password.as_deref().map(Vec::as_slice),
            Some(&b"opened\n"[..])
        );
        assert_eq!(
            plan(Payload::Line("x"), &sudo(None, Some("a\nb")), None, None).err(),
            Some(SudoError::BadPassword)
        );
    }

    #[test]
    fn prompt_and_marker_are_stripped_across_chunks() {
        let p = plan(Payload::Line("x"), &sudo(None, None), None, None).unwrap();
        let mut w = p.watch;
        let prompt = w.prompt.clone();
        let marker = w.marker.clone();
        let mut stream = b"lecture\x1e".to_vec();
        stream.extend_from_slice(&prompt);
        stream.extend_from_slice(b"Sorry, try again.\n");
        stream.extend_from_slice(&marker);
        stream.extend_from_slice(&prompt);
        stream.extend_from_slice(b"own\n");
        let chunks: Vec<&[u8]> = stream.chunks(3).collect();
        let (out, events) = run(&mut w, &chunks);
        // After the marker, the prompt's text is the command's own.
        let mut want = b"lecture\x1eSorry, try again.\n".to_vec();
        want.extend_from_slice(&prompt);
        want.extend_from_slice(b"own\n");
        assert_eq!(out, want);
        assert_eq!(events, [Event::Prompt, Event::Started]);
        assert!(w.started() && w.prompts() == 1);
    }

    #[test]
    fn refusals_are_named() {
        let mut w = plan(Payload::Line("x"), &sudo(None, None), None, None)
            .unwrap()
            .watch;
        let prompt = w.prompt.clone();
        let said = |w: &mut Watch, text: &[u8]| {
            let mut e = Vec::new();
            let _ = w.feed(text, &mut e);
        };
        said(&mut w, b"sudo: sorry, you must have a tty to run sudo\n");
        assert_eq!(w.failure(Some(1), false), SudoError::RequireTty);
        let mut w2 = Watch::new(prompt.clone(), b"\x1em\x1e".to_vec());
        said(&mut w2, &prompt);
        said(&mut w2, b"alice is not in the sudoers file.\n");
        assert!(matches!(
            w2.failure(Some(1), false),
            SudoError::NotInSudoers { .. }
        ));
        let mut w3 = Watch::new(prompt.clone(), b"\x1em\x1e".to_vec());
        said(&mut w3, b"sh: 1: sudo: not found\n");
        assert!(matches!(
            w3.failure(Some(127), false),
            SudoError::Missing { .. }
        ));
        let mut w4 = Watch::new(prompt.clone(), b"\x1em\x1e".to_vec());
        said(&mut w4, &prompt);
        said(&mut w4, b"Sorry, try again.\n");
        said(&mut w4, &prompt);
        assert_eq!(w4.failure(Some(1), false), SudoError::WrongPassword);
        let e = SudoError::NoPassword.into_ssh("u@h:22");
        assert!(matches!(e, SshError::InvalidArgument(_)), "{e:?}");
    }
}
