//! Where a call really goes: a tool's [`Target`] resolved through ssh_config
//! into a session key, a route (direct, jump hosts or a proxy command) and
//! the options of that connection, as `ssh` would resolve them.
//!
//! Precedence follows `ssh`: explicit tool arguments, then the operator's
//! command-line flags, then ssh_config (first value wins), then defaults.

use std::path::PathBuf;
use std::time::Duration;

use super::known_hosts::KnownHostsFiles;
use super::ssh_config::{self, Proxy, Query, Tokens, expand_hostname};
use super::{HostKeyPolicy, SessionKey, SshError, SshSettings, Target};

pub use super::ssh_config::{Hop, Method};

/// A resolved destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub key: SessionKey,
    /// The name the call used, when ssh_config maps it to another host name.
    pub alias: Option<String>,
    pub route: Route,
    /// Keys tried when a call brings no credentials of its own.
    pub identity_files: Vec<PathBuf>,
    pub certificate_files: Vec<PathBuf>,
    /// Only `identity_files` are offered, never the agent's other keys.
    pub identities_only: bool,
    pub agent: Option<Agent>,
    /// Authentication methods in the order they are tried.
    pub methods: Vec<Method>,
    pub known_hosts: KnownHostsFiles,
    pub host_key_policy: HostKeyPolicy,
    pub connect_timeout: Duration,
    /// Keepalive interval and how many unanswered ones end the connection.
    pub keepalive: Option<(Duration, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Direct,
    /// Through these hosts, first to last, over direct-tcpip channels.
    Jump(Vec<Hop>),
    /// Through the stdin and stdout of this shell command.
    Command(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agent {
    /// `SSH_AUTH_SOCK`.
    Env,
    Socket(PathBuf),
}

/// Without `PreferredAuthentications`: as OpenSSH, except that `password`
/// comes before `keyboard-interactive`. Every failed attempt costs ~10 ms
/// of sshd's padding, and most servers take passwords through `password`;
/// a server that refuses it says so, and keyboard-interactive follows.
const DEFAULT_METHODS: [Method; 3] = [
    Method::PublicKey,
    Method::Password,
    Method::KeyboardInteractive,
];

impl Destination {
    /// How the session is shown: `user@host:port`, or `alias (user@host:port)`.
    pub fn display_name(&self) -> String {
        display_name(self.alias.as_deref(), &self.key)
    }
}

pub(crate) fn display_name(alias: Option<&str>, key: &SessionKey) -> String {
    match alias {
        Some(alias) => format!("{alias} ({key})"),
        None => key.to_string(),
    }
}

/// Resolves `target` through the operator's settings and ssh_config.
pub(crate) fn resolve(
    target: &Target,
    config: &SshSettings,
    cache: &ssh_config::Cache,
) -> Result<Destination, SshError> {
    let given = super::validate_host(&target.host)?;
    let local_user = super::default_username().unwrap_or_default();
    let query = Query {
        host: &given,
        user: target.username.as_deref(),
        port: target.port,
        local_user: &local_user,
    };
    let options = cache
        .resolve(&config.ssh_config, &query)
        .map_err(|e| SshError::InvalidArgument(format!("ssh_config: {e}")))?;

    let hostname = options
        .hostname
        .as_deref()
        .map_or_else(|| given.clone(), |h| expand_hostname(h, &given));
    let username = match options.user.clone() {
        Some(u) => u,
        None if !local_user.is_empty() => local_user.clone(),
        None => {
            return Err(SshError::InvalidArgument(
                "username is required: ssh_config names no User and no local user name is known"
                    .into(),
            ));
        }
    };
    let key = SessionKey::new(username, &hostname, options.port.unwrap_or(22))?;
    let alias = (key.host != given).then(|| given.clone());

    let tokens = Tokens {
        host: &key.host,
        original_host: &given,
        port: key.port,
        remote_user: &key.username,
        local_user: &local_user,
    };
    // ssh_config checked each value's tokens where it was read (with its
    // file and line); what can still fail here is a name unfit for a path
    // or a command line, which comes from the call, not the file.
    let expand = |what: &str, value: &str| {
        tokens
            .expand(value)
            .map_err(|e| SshError::InvalidArgument(format!("ssh_config {what}: {e}")))
    };
    let paths = |what: &str, values: &[String]| -> Result<Vec<PathBuf>, SshError> {
        values
            .iter()
            .filter(|v| !v.eq_ignore_ascii_case("none"))
            .map(|v| expand(what, v).map(PathBuf::from))
            .collect()
    };

    let identity_files = if options.identity_files.is_empty() {
        config.default_identities.clone()
    } else {
        paths("IdentityFile", &options.identity_files)?
    };
    let certificate_files = paths("CertificateFile", &options.certificate_files)?;

    let route = match &options.proxy {
        Some(Proxy::Jump(hops)) => Route::Jump(hops.clone()),
        Some(Proxy::Command(command)) => Route::Command(expand("ProxyCommand", command)?),
        Some(Proxy::None) | None => Route::Direct,
    };

    let agent = match options.identity_agent.as_deref() {
        _ if !config.use_agent => None,
        None => Some(Agent::Env),
        Some(v) if v.eq_ignore_ascii_case("none") => None,
        Some("SSH_AUTH_SOCK") => Some(Agent::Env),
        Some(v) => match v.strip_prefix('$') {
            Some(var) => std::env::var_os(var.trim_matches(['{', '}']))
                .filter(|s| !s.is_empty())
                .map(|s| Agent::Socket(PathBuf::from(s))),
            None => Some(Agent::Socket(PathBuf::from(expand("IdentityAgent", v)?))),
        },
    };

    let mut methods: Vec<Method> = match &options.preferred_authentications {
        Some(list) => list.clone(),
        None => DEFAULT_METHODS.to_vec(),
    };
    let off = [
        (options.pubkey_authentication, Method::PublicKey),
        (
            options.kbd_interactive_authentication,
            Method::KeyboardInteractive,
        ),
        (options.password_authentication, Method::Password),
    ];
    for (enabled, method) in off {
        if enabled == Some(false) {
            methods.retain(|m| *m != method);
        }
    }
    methods.dedup();

    let ssh_dir = dirs::home_dir().unwrap_or_default().join(".ssh");
    let user_known_hosts = match (&config.known_hosts, &options.user_known_hosts_files) {
        (Some(path), _) => vec![path.clone()],
        (None, Some(files)) => paths("UserKnownHostsFile", files)?,
        (None, None) => vec![ssh_dir.join("known_hosts"), ssh_dir.join("known_hosts2")],
    };
    let global_known_hosts = match &options.global_known_hosts_files {
        Some(files) => paths("GlobalKnownHostsFile", files)?,
        None => vec![
            PathBuf::from("/etc/ssh/ssh_known_hosts"),
            PathBuf::from("/etc/ssh/ssh_known_hosts2"),
        ],
    };
    let host_key_policy = config
        .host_key_policy
        .or(options.strict_host_key_checking)
        .unwrap_or(HostKeyPolicy::AcceptNew);

    let connect_timeout = options
        .connect_timeout
        .filter(|s| *s > 0)
        .map_or(config.connect_timeout, Duration::from_secs);
    let keepalive = match options.server_alive_interval {
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
        None => Some(config.keepalive_interval),
    }
    .map(|interval| {
        let max = options.server_alive_count_max.unwrap_or(3).max(1);
        (interval, max as usize)
    });

    Ok(Destination {
        key,
        alias,
        route,
        identity_files,
        certificate_files,
        identities_only: options.identities_only.unwrap_or(false),
        agent,
        methods,
        known_hosts: KnownHostsFiles {
            user: user_known_hosts,
            global: global_known_hosts,
            hash: options.hash_known_hosts.unwrap_or(false),
        },
        host_key_policy,
        connect_timeout,
        keepalive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(text: &str) -> (tempfile::TempDir, SshSettings) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, text).unwrap();
        let config = SshSettings {
            ssh_config: ssh_config::Files {
                user: Some(path),
                system: None,
            },
            ..SshSettings::default()
        };
        (dir, config)
    }

    fn target(host: &str, user: Option<&str>, port: Option<u16>) -> Target {
        Target {
            host: host.into(),
            username: user.map(Into::into),
            port,
            ..Target::default()
        }
    }

    #[test]
    fn alias_resolves_to_user_hostname_port() {
        let (_d, cfg) = config_with(
            "Host db-prod\n HostName 10.0.0.5\n User deploy\n Port 2200\n \
             IdentityFile %d/keys/%r@%h\n ProxyJump ops@bastion:2222,[::1]\n",
        );
        let d = resolve(
            &target("db-prod", None, None),
            &cfg,
            &ssh_config::Cache::default(),
        )
        .unwrap();
        assert_eq!(d.key.to_string(), "deploy@10.0.0.5:2200");
        assert_eq!(d.display_name(), "db-prod (deploy@10.0.0.5:2200)");
        let home = dirs::home_dir().unwrap();
        assert_eq!(
            d.identity_files,
            [home.join("keys/deploy@10.0.0.5")],
            "identity files"
        );
        assert_eq!(
            d.route,
            Route::Jump(vec![
                Hop {
                    host: "bastion".into(),
                    user: Some("ops".into()),
                    port: Some(2222)
                },
                Hop {
                    host: "::1".into(),
                    user: None,
                    port: None
                },
            ])
        );
        let explicit = resolve(
            &target("db-prod", Some("root"), Some(22)),
            &cfg,
            &ssh_config::Cache::default(),
        )
        .unwrap();
        assert_eq!(explicit.key.to_string(), "root@10.0.0.5:22");
    }

    #[test]
    fn no_config_means_the_host_as_given_and_defaults() {
        let (_d, cfg) = config_with("");
        let d = resolve(
            &target("127.0.0.1", Some("u"), None),
            &cfg,
            &ssh_config::Cache::default(),
        )
        .unwrap();
        assert_eq!(d.key.to_string(), "u@127.0.0.1:22");
        assert_eq!(d.alias, None);
        assert_eq!(d.route, Route::Direct);
        assert_eq!(d.methods, DEFAULT_METHODS);
        assert_eq!(d.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(d.identity_files, cfg.default_identities);
    }

    #[test]
    fn auth_and_host_key_options() {
        let (_d, cfg) = config_with(
            "Host h\n PreferredAuthentications password,publickey\n PasswordAuthentication no\n \
             StrictHostKeyChecking yes\n UserKnownHostsFile ~/kh1 /tmp/kh2\n HashKnownHosts yes\n \
             IdentityAgent none\n ConnectTimeout 4\n ServerAliveInterval 0\n ProxyJump none\n \
             ProxyCommand nc %h %p\n",
        );
        let d = resolve(
            &target("h", Some("u"), None),
            &cfg,
            &ssh_config::Cache::default(),
        )
        .unwrap();
        assert_eq!(d.methods, [Method::PublicKey]);
        assert_eq!(d.host_key_policy, HostKeyPolicy::Strict);
        let home = dirs::home_dir().unwrap();
        assert_eq!(
            d.known_hosts.user,
            [home.join("kh1"), PathBuf::from("/tmp/kh2")]
        );
        assert!(d.known_hosts.hash);
        assert_eq!(d.agent, None);
        assert_eq!(d.connect_timeout, Duration::from_secs(4));
        assert_eq!(d.keepalive, None);
        // ProxyJump none came first, so the ProxyCommand is not used.
        assert_eq!(d.route, Route::Direct);
    }

    #[test]
    fn operator_flags_beat_ssh_config() {
        let (_d, mut cfg) = config_with("Host *\n StrictHostKeyChecking no\n");
        cfg.host_key_policy = Some(HostKeyPolicy::Strict);
        cfg.known_hosts = Some(PathBuf::from("/k"));
        let d = resolve(
            &target("h", Some("u"), None),
            &cfg,
            &ssh_config::Cache::default(),
        )
        .unwrap();
        assert_eq!(d.host_key_policy, HostKeyPolicy::Strict);
        assert_eq!(d.known_hosts.user, [PathBuf::from("/k")]);
    }
}
