//! What a call may ask beyond the command itself: a directory and
//! variables for this call only, bytes for the command's stdin, and `sudo`.
//! Checked here, once, before anything is sent: a bad value is an
//! `invalid-argument` naming the field, never echoing a secret.

use std::fmt;

use zeroize::Zeroizing;

/// Largest `stdin` a call may send.
pub const MAX_STDIN: usize = 16 << 20;
/// Largest per-call `env`, names and values together.
pub const MAX_ENV_BYTES: usize = 64 << 10;
/// Largest `cwd`: Linux's `PATH_MAX`.
const MAX_CWD: usize = 4096;

/// How to run a command, beyond what to run.
#[derive(Clone, Default)]
pub struct CommandOptions {
    /// Run there, for this call only.
    pub cwd: Option<String>,
    /// Variables for this call only, on top of the session's.
    pub env: Vec<(String, String)>,
    /// Written to the command, then end-of-file.
    pub stdin: Option<Vec<u8>>,
    pub sudo: Option<Sudo>,
    /// Start in the login state and keep nothing: the session is shared
    /// by several clients, and one's directory and variables are not the
    /// other's to see.
    pub fresh: bool,
}

/// Run the command through `sudo`.
#[derive(Clone, Default)]
pub struct Sudo {
    /// Absent: root.
    pub user: Option<String>,
    /// Absent: the password that opened the session, if any.
    pub password: Option<Zeroizing<String>>,
}

// By hand: stdin may be anybody's data and the password is a secret; a
// `{:?}` in a log line must show neither.
impl fmt::Debug for CommandOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandOptions")
            .field("cwd", &self.cwd)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("sudo", &self.sudo)
            .field("fresh", &self.fresh)
            .finish()
    }
}

impl fmt::Debug for Sudo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sudo")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl CommandOptions {
    /// Whether the command runs exactly as it would without options.
    pub fn is_plain(&self) -> bool {
        self.cwd.is_none() && self.env.is_empty() && self.stdin.is_none() && self.sudo.is_none()
    }

    /// Refuses what no remote could use.
    pub fn check(&self) -> Result<(), String> {
        if let Some(cwd) = &self.cwd {
            if cwd.is_empty() {
                return Err("cwd must not be empty".into());
            }
            if cwd.contains('\0') || cwd.len() > MAX_CWD {
                return Err(format!(
                    "cwd must be a path of at most {MAX_CWD} bytes without NUL"
                ));
            }
        }
        let mut total = 0;
        for (name, value) in &self.env {
            if !is_name(name) {
                return Err(format!(
                    "env: {:?} is not a variable name (letters, digits and _, not starting with a digit)",
                    name.chars().take(64).collect::<String>()
                ));
            }
            if name.starts_with("__mcp_") {
                return Err(format!(
                    "env: {name}: names starting with __mcp_ are this server's own"
                ));
            }
            if value.contains('\0') {
                return Err(format!("env: the value of {name} contains a NUL byte"));
            }
            total += name.len() + value.len() + 2;
        }
        if total > MAX_ENV_BYTES {
            return Err(format!(
                "env is {total} bytes; at most {MAX_ENV_BYTES} may be set for one call"
            ));
        }
        if let Some(stdin) = &self.stdin
            && stdin.len() > MAX_STDIN
        {
            return Err(format!(
                "stdin is {} bytes; at most {MAX_STDIN} may be sent with one call. Upload larger \
                 input as a file and redirect it",
                stdin.len()
            ));
        }
        if let Some(user) = self.sudo.as_ref().and_then(|s| s.user.as_deref())
            && !is_user(user)
        {
            return Err(
                "sudo_user must be a user name (letters, digits, '.', '_' and '-', not starting \
                 with '-')"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A POSIX shell variable name.
pub(crate) fn is_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b == b'_' || b.is_ascii_alphabetic())
        && bytes.all(|b| b == b'_' || b.is_ascii_alphanumeric())
}

fn is_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 64
        && !user.starts_with('-')
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_are_shell_identifiers() {
        for good in ["A", "_", "foo_BAR9", "_1"] {
            assert!(is_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "é", "$(x)"] {
            assert!(!is_name(bad), "{bad}");
        }
    }

    #[test]
    fn bad_options_are_refused_naming_the_field_without_the_secret() {
        let env = |k: &str, v: &str| CommandOptions {
            env: vec![(k.into(), v.into())],
            ..CommandOptions::default()
        };
        assert!(env("PATH", "/bin").check().is_ok());
        assert!(env("A;B", "x").check().unwrap_err().starts_with("env:"));
        assert!(
            env("__mcp_w", "nocwd")
                .check()
                .unwrap_err()
                .contains("__mcp_")
        );
        let err = env("TOKEN", "se\0cret").check().unwrap_err();
        assert!(err.contains("TOKEN") && !err.contains("se"), "{err}");
        let big = CommandOptions {
            stdin: Some(vec![0; MAX_STDIN + 1]),
            ..CommandOptions::default()
        };
        assert!(big.check().unwrap_err().contains("stdin"));
        let cwd = CommandOptions {
            cwd: Some(String::new()),
            ..CommandOptions::default()
        };
        assert!(cwd.check().unwrap_err().contains("cwd"));
        let sudo = CommandOptions {
            sudo: Some(Sudo {
                user: Some("-u root".into()),
                password: Some(Zeroizing::new("hunter2".into())),
            }),
            ..CommandOptions::default()
        };
        let err = sudo.check().unwrap_err();
        assert!(
            err.contains("sudo_user") && !err.contains("hunter2"),
            "{err}"
        );
        assert!(!format!("{sudo:?}").contains("hunter2"));
    }
}
