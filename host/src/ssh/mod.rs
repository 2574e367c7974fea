//! The SSH core: persistent russh connections, one per `username@host:port`,
//! shared by every tool call.
//!
//! It owns connecting (with `TCP_QUICKACK` re-armed, see [`net`]),
//! authentication ([`auth`]), host-key verification ([`known_hosts`]),
//! command execution with bounded output ([`exec`]) and the session table
//! ([`manager`]), and file operations over SFTP or exec ([`files`]).
//! Nothing here knows about WebAssembly or MCP: the plugin
//! host calls [`SessionManager`] on behalf of tool components.

pub mod auth;
pub mod cipher;
pub(crate) mod connect;
pub mod destination;
pub mod exec;
pub mod files;
mod input;
pub mod jobs;
pub(crate) mod kill;
pub mod known_hosts;
pub(crate) mod launch;
pub mod manager;
pub mod net;
pub mod options;
mod output;
mod proxy;
pub mod ssh_config;
pub mod state;
pub(crate) mod sudo;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

pub use destination::Destination;
pub use exec::{Command, ExecOutput, ExecRequest, Progress, ProgressFn, StreamOutput};
pub use files::{
    DirEntry, DirListing, FileError, FileKind, FileStat, ReadChunk, Transfer, TransferOutcome,
    TransferProgressFn, WriteOutcome, WriteRequest,
};
pub use jobs::{Chunk, JobInfo, JobRequest, JobState, Jobs, Stream};
pub use known_hosts::{HostKeyPolicy, KnownHostsFiles};
pub use manager::{SessionInfo, SessionManager};
pub use options::{CommandOptions, Sudo};
pub use state::StateInfo;

/// Why an SSH request failed. The variants mirror the WIT `ssh-error`, so a
/// guest can tell a wrong password from a refused port.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    /// The request itself is malformed (an empty host, port 0, a command
    /// line too long for any remote).
    #[error("{0}")]
    InvalidArgument(String),
    /// The TCP connection or the SSH handshake failed.
    #[error("{0}")]
    Connect(String),
    /// The server rejected every credential, or a key could not be read.
    #[error("{0}")]
    Auth(String),
    /// The server's host key is refused (changed, revoked, or unknown
    /// under `strict`).
    #[error("{0}")]
    HostKey(String),
    /// Connecting, or the call's own time, ran out.
    #[error("{0}")]
    Timeout(String),
    /// The server refused a channel or the command.
    #[error("{0}")]
    Channel(String),
    /// The connection died after the command was sent.
    #[error("{0}")]
    ConnectionLost(String),
    /// A policy refuses it: a grant, a peer address.
    #[error("{0}")]
    Denied(String),
    /// A resource limit is reached (a session's background jobs): retrying
    /// later may work.
    #[error("{0}")]
    Limit(String),
    /// The client cancelled the call before the command started.
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
    /// Checked against the address the session is actually connected to
    /// before anything runs on it (a grant's address patterns).
    pub peer_check: Option<PeerCheck>,
}

/// A policy on the peer address of a session: `None` when the route goes
/// through a jump host or a ProxyCommand, where the address is not known
/// here. `Err` says why the address is refused.
#[derive(Clone)]
pub struct PeerCheck(
    pub std::sync::Arc<dyn Fn(Option<std::net::IpAddr>) -> Result<(), String> + Send + Sync>,
);

impl fmt::Debug for PeerCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerCheck")
    }
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

impl Target {
    /// The target as the call named it, for logs and the audit log:
    /// `[user@]host[:port]`, before ssh_config fills in the rest.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if let Some(u) = &self.username {
            out.push_str(u);
            out.push('@');
        }
        out.push_str(&self.host);
        if let Some(p) = self.port {
            out.push_str(&format!(":{p}"));
        }
        out
    }
}

/// Validates a host name as given: it ends up in ssh_config matching,
/// known_hosts lines and logs, so control characters and blanks are
/// refused. `[::1]` and `::1` name the same host; the bare form is kept.
pub(crate) fn validate_host(host: &str) -> Result<String, SshError> {
    let host = host.trim();
    if host.is_empty() {
        return Err(SshError::InvalidArgument("host must not be empty".into()));
    }
    if host.len() > 255 {
        return Err(SshError::InvalidArgument(format!(
            "host name of {} bytes is too long (at most 255)",
            host.len()
        )));
    }
    if host.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(SshError::InvalidArgument(format!(
            "host {host:?} is not a valid host name or address"
        )));
    }
    Ok(host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_string())
}

impl SessionKey {
    /// Validates resolved names: they reach known_hosts lines, logs and the
    /// remote login.
    pub fn new(username: String, host: &str, port: u16) -> Result<Self, SshError> {
        let host = validate_host(host)?;
        if username.len() > 255 {
            return Err(SshError::InvalidArgument(format!(
                "user name of {} bytes is too long (at most 255)",
                username.len()
            )));
        }
        if username.is_empty()
            || username
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(SshError::InvalidArgument(format!(
                "username {username:?} is not a valid user name"
            )));
        }
        if port == 0 {
            return Err(SshError::InvalidArgument(
                "port must be between 1 and 65535".into(),
            ));
        }
        Ok(Self {
            username,
            host,
            port,
        })
    }
}

/// The local user name, as `ssh` finds it: `USER` or `LOGNAME`, else the
/// passwd entry of this process's user (services often run without either
/// variable).
pub(crate) fn default_username() -> Option<String> {
    // Looked up once: every call resolves its target with it.
    static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        ["USER", "LOGNAME"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .or_else(passwd_name)
    })
    .clone()
}

fn passwd_name() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_string())
    })
}

/// Tunables of the SSH core. Defaults are what a user gets with no flags.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// The ssh_config files read for every destination.
    pub ssh_config: ssh_config::Files,
    /// The operator's known_hosts file: replaces `UserKnownHostsFile`.
    pub known_hosts: Option<PathBuf>,
    /// The operator's host-key policy: replaces `StrictHostKeyChecking`.
    pub host_key_policy: Option<HostKeyPolicy>,
    /// TCP connect, handshake and authentication together, unless
    /// ssh_config's `ConnectTimeout` says otherwise for a host.
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
    /// SSH sessions open at once (connections, jump hosts included).
    pub max_sessions: usize,
    pub keepalive_interval: Duration,
    /// Tried, in order, when a call gives no credentials (after ssh-agent)
    /// and ssh_config names no `IdentityFile`.
    pub default_identities: Vec<PathBuf>,
    /// Use an ssh-agent (`IdentityAgent`, else `SSH_AUTH_SOCK`) when a call
    /// gives no credentials.
    pub use_agent: bool,
    /// Background jobs running at once per connection (they hold a channel
    /// each; they get fewer than `channels_per_connection`).
    pub jobs_per_connection: usize,
    /// Bytes kept of each stream of a background job (its tail).
    pub job_buffer_bytes: usize,
    /// Finished jobs remembered.
    pub job_history: usize,
    /// File operations use SFTP when the server offers it; `false` sends
    /// them over exec channels always (for a server whose SFTP is broken).
    pub sftp: bool,
    /// Commands start afresh: sessions keep no working directory or
    /// variables between calls (per-call `cwd` and `env` still apply).
    pub stateless: bool,
}

impl Default for SshSettings {
    fn default() -> Self {
        let ssh_dir = dirs::home_dir().unwrap_or_default().join(".ssh");
        Self {
            ssh_config: ssh_config::Files::default(),
            known_hosts: None,
            host_key_policy: None,
            connect_timeout: Duration::from_secs(15),
            default_command_timeout: Duration::from_secs(60),
            max_command_timeout: Duration::from_secs(24 * 3600),
            default_max_output: 1 << 20,
            max_output_cap: 16 << 20,
            channels_per_connection: 8,
            max_sessions: 256,
            keepalive_interval: Duration::from_secs(15),
            default_identities: ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|n| ssh_dir.join(n))
                .collect(),
            use_agent: true,
            jobs_per_connection: 4,
            job_buffer_bytes: 1 << 20,
            job_history: 50,
            sftp: true,
            stateless: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_key_strips_brackets() {
        let k = SessionKey::new("bob".into(), "[::1]", 22).unwrap();
        assert_eq!(k.to_string(), "bob@[::1]:22");
    }

    #[test]
    fn session_key_rejects_port_zero_and_blank_names() {
        for (user, host, port) in [
            ("u", "h", 0),
            ("u", "  ", 22),
            ("u", "a b", 22),
            ("u\nx", "h", 22),
            ("", "h", 22),
        ] {
            assert!(
                matches!(
                    SessionKey::new(user.into(), host, port),
                    Err(SshError::InvalidArgument(_))
                ),
                "{user:?} {host:?} {port} accepted"
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
