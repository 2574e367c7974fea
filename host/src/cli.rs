//! The command line: flags (each also read from an environment variable),
//! validated into the library's [`Settings`]. Only the binary knows flags.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;

use mcp_ssh_session::config::{OperatorConfig, Settings};
use mcp_ssh_session::plugins::grants::{MAX_CPU_SECONDS, MAX_MEMORY_MIB};
use mcp_ssh_session::plugins::{PluginSettings, default_config_path, default_plugin_dir};
use mcp_ssh_session::ssh::{HostKeyPolicy, SshSettings};

/// MCP server (stdio, or streamable HTTP with --http) giving AI agents
/// persistent, safe SSH sessions.
/// Every tool is a sandboxed WebAssembly component.
#[derive(Debug, Parser)]
#[command(name = "mcp-ssh-session", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The operator's config file (TOML): grants for plugin components
    /// and the audit log [default: ~/.config/mcp-ssh-session/config.toml,
    /// if it exists]
    #[arg(long, env = "MCP_SSH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory of extra tool components (every *.wasm in it)
    /// [default: ~/.config/mcp-ssh-session/plugins, if it exists]
    #[arg(long, env = "MCP_SSH_PLUGINS", value_name = "DIR")]
    pub plugins: Option<PathBuf>,

    /// Load only the built-in tools.
    #[arg(long, conflicts_with = "plugins")]
    pub no_plugins: bool,

    /// The user's ssh_config, read first ("none" to read none)
    /// [default: ~/.ssh/config]
    #[arg(long, env = "MCP_SSH_SSH_CONFIG", value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,

    /// The system-wide ssh_config, read after the user's ("none" to read
    /// none) [default: /etc/ssh/ssh_config]
    #[arg(long, env = "MCP_SSH_SYSTEM_SSH_CONFIG", value_name = "FILE")]
    pub system_ssh_config: Option<PathBuf>,

    /// known_hosts file to check server keys against and record new ones
    /// in, for every host (replaces ssh_config's UserKnownHostsFile)
    /// [default: UserKnownHostsFile, else ~/.ssh/known_hosts]
    #[arg(long, env = "MCP_SSH_KNOWN_HOSTS", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// What to do with server keys known_hosts does not list, for every
    /// host (replaces ssh_config's StrictHostKeyChecking): record them
    /// (accept-new), refuse them (strict), or skip checking (off). A changed
    /// key is always refused unless off [default: StrictHostKeyChecking,
    /// else accept-new]
    #[arg(long, env = "MCP_SSH_HOST_KEY_POLICY", value_enum)]
    pub host_key_policy: Option<Policy>,

    /// Default timeout of execute_command, in seconds.
    #[arg(
        long,
        env = "MCP_SSH_COMMAND_TIMEOUT",
        default_value_t = 60.0,
        value_name = "SECS"
    )]
    pub command_timeout: f64,

    /// Timeout for connecting and authenticating, in seconds.
    #[arg(
        long,
        env = "MCP_SSH_CONNECT_TIMEOUT",
        default_value_t = 15.0,
        value_name = "SECS"
    )]
    pub connect_timeout: f64,

    /// Default bytes kept of each of stdout and stderr (head and tail).
    #[arg(long, env = "MCP_SSH_MAX_OUTPUT_BYTES", default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_output_bytes: u64,

    /// Concurrent commands per SSH connection; more calls queue. Keep it
    /// below the server's MaxSessions (OpenSSH: 10).
    #[arg(
        long,
        env = "MCP_SSH_CHANNELS_PER_SESSION",
        default_value_t = 8,
        value_name = "N"
    )]
    pub channels_per_session: usize,

    /// SSH sessions open at once (each a connection; jump hosts count);
    /// a new one past it is refused until one is closed.
    #[arg(
        long,
        env = "MCP_SSH_MAX_SESSIONS",
        default_value_t = 256,
        value_name = "N"
    )]
    pub max_sessions: usize,

    /// Background jobs running at once per session (they hold a channel
    /// each, so keep it below --channels-per-session).
    #[arg(
        long,
        env = "MCP_SSH_JOBS_PER_SESSION",
        default_value_t = 4,
        value_name = "N"
    )]
    pub jobs_per_session: usize,

    /// Bytes kept of each output stream of a background job (its tail).
    #[arg(long, env = "MCP_SSH_JOB_BUFFER_BYTES", default_value_t = 1 << 20, value_name = "BYTES")]
    pub job_buffer_bytes: usize,

    /// Append an audit log (JSON lines, mode 0600) to FILE [default: the
    /// config file's `audit_log`, else none]
    #[arg(long, env = "MCP_SSH_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// A local directory upload_file may read from and download_file may
    /// write into (repeatable; symlinks leading out are refused) [default:
    /// the config file's `transfer_roots`, else none: transfers are off]
    #[arg(long = "transfer-root", value_name = "DIR")]
    pub transfer_roots: Vec<PathBuf>,

    /// Do not use ssh-agent (SSH_AUTH_SOCK) for calls without credentials.
    #[arg(long)]
    pub no_agent: bool,

    /// Start every command afresh in the login directory and environment:
    /// a session keeps no working directory or exported variables.
    #[arg(long, env = "MCP_SSH_STATELESS")]
    pub stateless: bool,

    /// Compile cache directory [default: ~/.cache/mcp-ssh-session/components]
    #[arg(long, env = "MCP_SSH_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Compile components on every start instead of caching them.
    #[arg(long)]
    pub no_cache: bool,

    /// Guest time allowed per tool call, in seconds: time spent computing
    /// and time spent waiting (a sleep counts too); time the host spends
    /// running its SSH commands does not.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub guest_cpu_limit: f64,

    /// Guest memory allowed per tool call, in MiB.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub guest_memory_limit: usize,

    /// Serve MCP over streamable HTTP at http://ADDR:PORT/mcp instead of
    /// stdio; a bare PORT binds 127.0.0.1 (port 0 picks a free one; the
    /// address is printed on stderr). A non-loopback address needs
    /// [clients.NAME] tokens in the config.
    #[arg(long, env = "MCP_SSH_HTTP", value_name = "[ADDR:]PORT", value_parser = http_addr)]
    pub http: Option<std::net::SocketAddr>,

    /// Drop an HTTP MCP session after this many seconds without a request
    /// (its SSH sessions stay: they belong to the client).
    #[arg(long, default_value_t = 600.0, value_name = "SECS", requires = "http")]
    pub http_session_idle: f64,

    /// Serve HTTPS: the certificate chain (PEM). A reverse proxy that
    /// terminates TLS is the alternative.
    #[arg(long, value_name = "FILE", requires_all = ["http", "tls_key"])]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Log filter (tracing EnvFilter syntax); logs go to stderr.
    #[arg(
        long,
        env = "MCP_SSH_LOG",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Tool component utilities.
    Plugin {
        #[command(subcommand)]
        action: PluginCommand,
    },
    /// Report what the server would use (config files, plugins and their
    /// grants, known_hosts, ssh-agent, cache) and every problem found,
    /// with its fix. With HOST, also connect to it step by step as the
    /// server would and report each step: the first thing to run when a
    /// host does not work. Exits 1 when something fails. A new host key
    /// is never recorded.
    Doctor {
        /// An ssh_config alias, host, user@host or user@host:port
        /// ([v6]:port for an IPv6 address with a port).
        host: Option<String>,
        /// Read a password from the first line of stdin and log in with
        /// it (passwords are never taken on the command line).
        #[arg(long, requires = "host")]
        password_stdin: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bearer tokens of HTTP clients.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Print a fresh random token for client NAME, once, and the
    /// [clients.NAME] lines to add to the config (which keep only its
    /// SHA-256).
    New {
        /// The client's name, as the audit log will show it.
        name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Validate a tool component without running any of its tools: it
    /// links against this host's WIT world, answers list-tools in time, its
    /// schemas are valid and its tool names clash with no built-in's. Prints
    /// its tools and the grants it requests.
    Check {
        /// The component (.wasm); its manifest is read from beside it.
        file: PathBuf,
    },
}

/// `--host-key-policy`: the flag's spelling of [`HostKeyPolicy`].
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Policy {
    /// Unknown hosts are refused.
    Strict,
    /// Unknown hosts are recorded on first contact; changed keys are refused.
    AcceptNew,
    /// Every key is accepted and nothing is recorded. For throwaway hosts only.
    Off,
}

impl From<Policy> for HostKeyPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Strict => Self::Strict,
            Policy::AcceptNew => Self::AcceptNew,
            Policy::Off => Self::Off,
        }
    }
}

/// `--http`: `ADDR:PORT`, `localhost:PORT`, or a bare `PORT` on loopback.
fn http_addr(s: &str) -> Result<std::net::SocketAddr, String> {
    let loopback = |port: &str| {
        port.parse::<u16>()
            .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)))
    };
    if let Ok(addr) = loopback(s) {
        return Ok(addr);
    }
    if let Some(port) = s.strip_prefix("localhost:")
        && let Ok(addr) = loopback(port)
    {
        return Ok(addr);
    }
    s.parse()
        .map_err(|_| format!("{s:?} is not PORT, ADDR:PORT or [V6ADDR]:PORT"))
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    if !v.is_finite() || v <= 0.0 || v > 7.0 * 24.0 * 3600.0 {
        bail!("--{name} must be a positive number of seconds (at most a week), not {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

impl Cli {
    /// The HTTP transport's flags, if `--http` was given.
    pub fn http_options(&self) -> anyhow::Result<Option<mcp_ssh_session::http::HttpOptions>> {
        let Some(addr) = self.http else {
            return Ok(None);
        };
        Ok(Some(mcp_ssh_session::http::HttpOptions {
            addr,
            session_idle: seconds("http-session-idle", self.http_session_idle)?,
            tls: self.tls_cert.clone().zip(self.tls_key.clone()),
        }))
    }

    pub fn into_settings(self) -> anyhow::Result<Settings> {
        let config_path = self.config.clone().unwrap_or_else(default_config_path);
        let file = OperatorConfig::load(&config_path, self.config.is_some())?;
        self.with_file(config_path, file)
    }

    /// For `doctor`: a config file that does not load is a finding to
    /// report (its error is returned beside settings without its grants),
    /// not the end of the run.
    pub fn into_doctor_settings(self) -> anyhow::Result<(Settings, Option<String>)> {
        let config_path = self.config.clone().unwrap_or_else(default_config_path);
        match OperatorConfig::load(&config_path, self.config.is_some()) {
            Ok(file) => Ok((self.with_file(config_path, file)?, None)),
            Err(e) => Ok((
                self.with_file(config_path, OperatorConfig::default())?,
                Some(format!("{e:#}")),
            )),
        }
    }

    fn with_file(self, config_path: PathBuf, file: OperatorConfig) -> anyhow::Result<Settings> {
        let mut ssh = SshSettings::default();
        let none = |p: &PathBuf| p.as_os_str() == "none";
        if let Some(path) = self.ssh_config {
            ssh.ssh_config.user = (!none(&path)).then_some(path);
        }
        if let Some(path) = self.system_ssh_config {
            ssh.ssh_config.system = (!none(&path)).then_some(path);
        }
        ssh.known_hosts = self.known_hosts;
        ssh.host_key_policy = self.host_key_policy.map(Into::into);
        ssh.default_command_timeout = seconds("command-timeout", self.command_timeout)?;
        ssh.connect_timeout = seconds("connect-timeout", self.connect_timeout)?;
        ssh.default_max_output = self.max_output_bytes;
        ssh.max_output_cap = ssh.max_output_cap.max(self.max_output_bytes);
        if self.channels_per_session == 0 {
            bail!("--channels-per-session must be at least 1");
        }
        ssh.channels_per_connection = self.channels_per_session;
        if self.max_sessions == 0 {
            bail!("--max-sessions must be at least 1");
        }
        ssh.max_sessions = self.max_sessions;
        if self.jobs_per_session == 0 || self.jobs_per_session >= self.channels_per_session {
            bail!(
                "--jobs-per-session must be at least 1 and below --channels-per-session ({})",
                self.channels_per_session
            );
        }
        ssh.jobs_per_connection = self.jobs_per_session;
        if self.job_buffer_bytes < 1024 {
            bail!("--job-buffer-bytes must be at least 1024");
        }
        ssh.job_buffer_bytes = self.job_buffer_bytes;
        ssh.use_agent = !self.no_agent;
        ssh.stateless = self.stateless;

        let mut plugins = PluginSettings::default();
        plugins.plugin_dir_required = self.plugins.is_some();
        plugins.plugin_dir = match (self.no_plugins, self.plugins) {
            (true, _) => None,
            (false, Some(dir)) => Some(dir),
            (false, None) => default_plugin_dir(),
        };
        if self.no_cache {
            plugins.cache_dir = None;
        } else if let Some(dir) = self.cache_dir {
            plugins.cache_dir = Some(dir);
        }
        if !(self.guest_cpu_limit.is_finite()
            && self.guest_cpu_limit > 0.0
            && self.guest_cpu_limit <= MAX_CPU_SECONDS)
        {
            bail!(
                "--guest-cpu-limit must be a positive number of seconds, at most 86400 (one \
                 day), not {}",
                self.guest_cpu_limit
            );
        }
        plugins.cpu_limit = Duration::from_secs_f64(self.guest_cpu_limit);
        if !(16..=MAX_MEMORY_MIB).contains(&self.guest_memory_limit) {
            bail!("--guest-memory-limit must be 16 to 65536 MiB (64 GiB)");
        }
        plugins.memory_limit = self.guest_memory_limit << 20;
        plugins.grants = file.plugins;
        plugins.config_path = config_path;
        plugins.audit_log = self.audit_log.or(file.audit_log);
        plugins.transfer_roots = if self.transfer_roots.is_empty() {
            file.transfer_roots
        } else {
            self.transfer_roots
        };
        Ok(Settings {
            ssh,
            plugins,
            clients: file.clients,
            http: file.http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_http_port_binds_loopback() {
        assert_eq!(http_addr("8722").unwrap().to_string(), "127.0.0.1:8722");
        assert_eq!(http_addr("localhost:1").unwrap().to_string(), "127.0.0.1:1");
        assert_eq!(http_addr("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(http_addr("bastion:80").is_err());
    }
}
