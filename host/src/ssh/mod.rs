//! The SSH core: persistent russh connections, one per `username@host:port`,
//! shared by every tool call.
//!
//! It owns connecting (with `TCP_QUICKACK` re-armed, see [`net`]),
//! authentication ([`auth`]), host-key verification ([`known_hosts`]),
//! command execution with bounded output ([`exec`]) and the session table
//! ([`manager`]). Nothing here knows about WebAssembly or MCP: the plugin
//! host calls [`SessionManager`] on behalf of tool components.

pub mod auth;
pub mod exec;
pub mod jobs;
mod kill;
pub mod known_hosts;
pub mod manager;
mod net;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

pub use exec::{ExecOutput, ExecRequest, Progress, ProgressFn, StreamOutput};
pub use jobs::{Chunk, JobInfo, JobRequest, JobState, Jobs, Stream};
pub use known_hosts::HostKeyPolicy;
pub use manager::{SessionInfo, SessionManager};

/// Why an SSH request failed. The variants mirror the WIT `ssh-error`, so a
/// guest can tell a wrong password from a refused port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    HostKey(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Channel(String),
    #[error("{0}")]
    ConnectionLost(String),
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Cancelled(String),
    #[error("{0}")]
    Other(String),
}

/// Credentials supplied with a call. Secrets are zeroed on drop and never
/// printed: `Debug` shows only which fields are set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub password: Option<Zeroizing<String>>,
    pub key_file: Option<PathBuf>,
    pub passphrase: Option<Zeroizing<String>>,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.password.is_none() && self.key_file.is_none()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("key_file", &self.key_file)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Where a command runs.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub host: String,
    pub username: Option<String>,
    pub port: Option<u16>,
    pub credentials: Option<Credentials>,
}

/// The identity of a persistent session: `username@host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    pub username: String,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}@[{}]:{}", self.username, self.host, self.port)
        } else {
            write!(f, "{}@{}:{}", self.username, self.host, self.port)
        }
    }
}

impl SessionKey {
    /// Validates a target's names: they end up in known_hosts lines, logs and
    /// the remote login, so control characters and blanks are refused.
    pub fn from_target(target: &Target) -> Result<Self, SshError> {
        let host = target.host.trim();
        if host.is_empty() {
            return Err(SshError::InvalidArgument("host must not be empty".into()));
        }
        if host.len() > 255 || host.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(SshError::InvalidArgument(format!(
                "host {host:?} is not a valid host name or address"
            )));
        }
        let username = match &target.username {
            Some(u) => u.clone(),
            None => default_username().ok_or_else(|| {
                SshError::InvalidArgument(
                    "username is required: no local user name is known".into(),
                )
            })?,
        };
        if username.is_empty()
            || username.len() > 255
            || username
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(SshError::InvalidArgument(format!(
                "username {username:?} is not a valid user name"
            )));
        }
        let port = target.port.unwrap_or(22);
        if port == 0 {
            return Err(SshError::InvalidArgument(
                "port must be between 1 and 65535".into(),
            ));
        }
        // `[::1]` and `::1` name the same host; keep the bare form.
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_string();
        Ok(Self {
            username,
            host,
            port,
        })
    }
}

fn default_username() -> Option<String> {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// Tunables of the SSH core. Defaults are what a user gets with no flags.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// The known_hosts file checked and (under `accept-new`) appended to.
    pub known_hosts: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    /// TCP connect, handshake and authentication together.
    pub connect_timeout: Duration,
    pub default_command_timeout: Duration,
    /// Upper bound on any requested command timeout.
    pub max_command_timeout: Duration,
    /// Bytes kept of each output stream when a call does not say.
    pub default_max_output: u64,
    /// Upper bound on any requested output size, per stream.
    pub max_output_cap: u64,
    /// Concurrent channels per connection. OpenSSH's default `MaxSessions`
    /// is 10; staying under it leaves room for a channel the server has not
    /// yet freed after we saw it close.
    pub channels_per_connection: usize,
    pub keepalive_interval: Duration,
    /// Tried, in order, when a call gives no credentials (after ssh-agent).
    pub default_identities: Vec<PathBuf>,
    /// Use `SSH_AUTH_SOCK` when a call gives no credentials.
    pub use_agent: bool,
    /// Background jobs running at once per connection (they hold a channel
    /// each; they get fewer than `channels_per_connection`).
    pub jobs_per_connection: usize,
    /// Bytes kept of each stream of a background job (its tail).
    pub job_buffer_bytes: usize,
    /// Finished jobs remembered.
    pub job_history: usize,
}

impl Default for SshConfig {
    fn default() -> Self {
        let ssh_dir = dirs::home_dir().unwrap_or_default().join(".ssh");
        Self {
            known_hosts: ssh_dir.join("known_hosts"),
            host_key_policy: HostKeyPolicy::AcceptNew,
            connect_timeout: Duration::from_secs(15),
            default_command_timeout: Duration::from_secs(60),
            max_command_timeout: Duration::from_secs(24 * 3600),
            default_max_output: 1 << 20,
            max_output_cap: 16 << 20,
            channels_per_connection: 8,
            keepalive_interval: Duration::from_secs(15),
            default_identities: ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|n| ssh_dir.join(n))
                .collect(),
            use_agent: true,
            jobs_per_connection: 4,
            job_buffer_bytes: 1 << 20,
            job_history: 50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, user: Option<&str>, port: Option<u16>) -> Target {
        Target {
            host: host.into(),
            username: user.map(Into::into),
            port,
            credentials: None,
        }
    }

    #[test]
    fn session_key_defaults_port_22_and_strips_brackets() {
        let k = SessionKey::from_target(&target("[::1]", Some("bob"), None)).unwrap();
        assert_eq!(k.to_string(), "bob@[::1]:22");
    }

    #[test]
    fn session_key_rejects_port_zero_and_blank_names() {
        for t in [
            target("h", Some("u"), Some(0)),
            target("  ", Some("u"), None),
            target("a b", Some("u"), None),
            target("h", Some("u\nx"), None),
            target("h", Some(""), None),
        ] {
            assert!(
                matches!(
                    SessionKey::from_target(&t),
                    Err(SshError::InvalidArgument(_))
                ),
                "{t:?} accepted"
            );
        }
    }

    #[test]
    fn credentials_debug_never_shows_secrets() {
        let c = Credentials {
            password: Some(Zeroizing::new("hunter2".into())),
            key_file: None,
            passphrase: Some(Zeroizing::new("s3cret".into())),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }
}
