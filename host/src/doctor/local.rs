//! The local half of `doctor`: the files and sockets the server would use,
//! as the server itself resolves them, and every problem found there (the
//! tool components are [`super::plugins`]'s).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use russh::keys::agent::client::AgentClient;

use super::{Item, Section};
use crate::Settings;
use crate::plugins::PluginSettings;
use crate::ssh::destination::{Agent, Destination};
use crate::ssh::ssh_config::Query;
use crate::ssh::{HostKeyPolicy, SessionManager, Target, known_hosts};

/// The name resolved when no host is given: only `Host *` blocks and
/// lines outside any block apply to it.
const ANY_HOST: &str = "*";

/// Every local finding, section by section. `target` is the host asked
/// about, if any: its ssh_config resolution decides which known_hosts,
/// identities and agent are shown.
pub(super) async fn check(
    settings: &Settings,
    manager: &SessionManager,
    config_error: Option<&str>,
    target: Option<&Target>,
) -> Vec<Section> {
    let any = Target {
        host: ANY_HOST.into(),
        ..Target::default()
    };
    let target = target.unwrap_or(&any);
    let mut config = Section::new("Configuration");
    operator_config(&mut config, &settings.plugins, config_error);
    ssh_config_files(&mut config, settings, target);
    let dest = manager.resolve(target).ok();
    let mut sections = vec![config, super::plugins::check(&settings.plugins).await];
    if let Some(dest) = &dest {
        let scope = if target.host == ANY_HOST {
            " (for a host no Host block names)".to_string()
        } else {
            format!(" (for {})", dest.display_name())
        };
        sections.push(host_keys(dest, settings, &scope));
        sections.push(authentication(dest, settings, &scope).await);
    }
    sections.push(server(settings));
    sections
}

/// The mode of `path` when group or others may write it.
pub(super) fn writable_by_others(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & 0o022 != 0).then_some(mode)
}

fn operator_config(section: &mut Section, plugins: &PluginSettings, error: Option<&str>) {
    let path = &plugins.config_path;
    let shown = path.display();
    if let Some(e) = error {
        section.push(Item::fail(
            "config file",
            format!("{e}: the server refuses to start with it"),
            format!("correct the key or value named in {shown} (PLUGINS.md lists every key)"),
        ));
    } else if !path.exists() {
        section.push(Item::info(
            "config file",
            format!("{shown} does not exist: no plugin is granted anything"),
        ));
    } else {
        section.push(Item::ok(
            "config file",
            format!("{shown}: {} plugin grant(s)", plugins.grants.len()),
        ));
    }
    if let Some(mode) = writable_by_others(path) {
        section.push(Item::warn(
            "config file",
            format!(
                "{shown} is writable by group or others (mode {mode:04o}): they could grant any \
                 component anything"
            ),
            format!("chmod 600 '{shown}'"),
        ));
    }
}

fn ssh_config_files(section: &mut Section, settings: &Settings, target: &Target) {
    let files = &settings.ssh.ssh_config;
    for (which, file) in [("user", &files.user), ("system", &files.system)] {
        if file.is_none() {
            section.push(Item::info(
                "ssh_config",
                format!("no {which} file is read (\"none\")"),
            ));
        }
    }
    let local_user = crate::ssh::default_username().unwrap_or_default();
    let query = Query {
        host: &target.host,
        user: target.username.as_deref(),
        port: target.port,
        local_user: &local_user,
    };
    let (result, seen) = files.resolve_listing(&query);
    for path in seen {
        let shown = path.display();
        let meta = std::fs::metadata(&path);
        let detail = match &meta {
            Ok(m) if m.is_dir() => format!("{shown} (directory listed by Include)"),
            Ok(_) => format!("{shown} (read)"),
            Err(_) => format!("{shown} (does not exist)"),
        };
        match meta {
            Ok(_) => section.push(Item::ok("ssh_config", detail)),
            Err(_) => section.push(Item::info("ssh_config", detail)),
        }
        if path.is_file()
            && let Some(mode) = writable_by_others(&path)
        {
            section.push(Item::warn(
                "ssh_config",
                format!(
                    "{shown} is writable by group or others (mode {mode:04o}): they could send \
                     your connections anywhere (ssh refuses such a file: \"Bad owner or \
                     permissions\")"
                ),
                format!("chmod 600 '{shown}'"),
            ));
        }
    }
    if let Err(e) = result {
        section.push(Item::fail(
            "ssh_config",
            format!("{e}: every call naming a host fails while it is malformed"),
            format!("correct line {} of {}", e.line, e.file),
        ));
    }
}

fn host_keys(dest: &Destination, settings: &Settings, scope: &str) -> Section {
    let mut section = Section::new(format!("Host keys{scope}"));
    let policy = match dest.host_key_policy {
        HostKeyPolicy::Strict => "strict: unknown hosts are refused",
        HostKeyPolicy::AcceptNew => "accept-new: a new host's key is recorded on first contact",
        HostKeyPolicy::Off => "off: every key is accepted",
    };
    let from = if settings.ssh.host_key_policy.is_some() {
        "--host-key-policy"
    } else {
        "ssh_config StrictHostKeyChecking, else the default"
    };
    let policy = format!("{policy}; a changed key is always refused (from {from})");
    if dest.host_key_policy == HostKeyPolicy::Off {
        section.push(Item::warn(
            "host key policy",
            policy.replace("; a changed key is always refused", ""),
            "use --host-key-policy accept-new (or strict): with off, anyone on the path can \
             impersonate the host and read the password",
        ));
    } else {
        section.push(Item::ok("host key policy", policy));
    }
    let files = &dest.known_hosts;
    for (i, path) in files.user.iter().chain(&files.global).enumerate() {
        let user = i < files.user.len();
        let shown = path.display();
        let role = match (user, i) {
            (true, 0) => "; new keys are recorded here",
            (true, _) => "",
            (false, _) => " (system-wide, never written)",
        };
        match known_hosts::count_entries(path) {
            Ok(_) if !path.exists() => section.push(Item::info(
                "known_hosts",
                format!("{shown} does not exist{role}"),
            )),
            Ok(n) => section.push(Item::ok(
                "known_hosts",
                format!("{shown}: {n} entries{role}"),
            )),
            Err(e) => section.push(Item::fail(
                "known_hosts",
                format!("{e}: every connection checked against it fails"),
                format!("make it a readable regular file (chmod 644 '{shown}'), or remove it"),
            )),
        }
        if let Some(mode) = writable_by_others(path) {
            section.push(Item::warn(
                "known_hosts",
                format!(
                    "{shown} is writable by group or others (mode {mode:04o}): they could add a \
                     key that vouches for an impostor"
                ),
                format!("chmod {} '{shown}'", if user { "600" } else { "644" }),
            ));
        }
    }
    section
}

async fn authentication(dest: &Destination, settings: &Settings, scope: &str) -> Section {
    let mut section = Section::new(format!("Authentication{scope}"));
    let methods: Vec<&str> = dest.methods.iter().map(|m| m.name()).collect();
    section.push(Item::info(
        "methods",
        format!("tried in this order: {}", methods.join(", ")),
    ));
    let agent_keys = agent(&mut section, dest, settings).await;
    let mut usable = 0;
    for path in &dest.identity_files {
        let shown = path.display();
        if !path.exists() {
            section.push(Item::info(
                "identity file",
                format!("{shown} does not exist"),
            ));
            continue;
        }
        usable += 1;
        let readable_by_others = std::fs::metadata(path)
            .ok()
            .map(|m| m.mode() & 0o7777)
            .filter(|m| m & 0o077 != 0);
        match readable_by_others {
            Some(mode) => section.push(Item::warn(
                "identity file",
                format!(
                    "{shown} is open to group or others (mode {mode:04o}); ssh refuses such a key"
                ),
                format!("chmod 600 '{shown}'"),
            )),
            None => section.push(Item::ok("identity file", format!("{shown}"))),
        }
    }
    if dest.identities_only {
        section.push(Item::info(
            "IdentitiesOnly",
            "yes: only the identity files are offered",
        ));
    }
    if agent_keys == 0 && usable == 0 {
        section.push(Item::warn(
            "keys",
            "no ssh-agent key and no identity file: a host can be logged into only with a \
             password (doctor --password-stdin, or a tool call's password)",
            "make a key (ssh-keygen -t ed25519) and install it (ssh-copy-id HOST), or load one \
             into the agent (ssh-add KEY), or name an IdentityFile in ~/.ssh/config",
        ));
    }
    section
}

/// Reports the agent the destination would use; returns its key count.
async fn agent(section: &mut Section, dest: &Destination, settings: &Settings) -> usize {
    let connected = match &dest.agent {
        None if !settings.ssh.use_agent => {
            section.push(Item::info("ssh-agent", "not used (--no-agent)"));
            return 0;
        }
        None => {
            section.push(Item::info("ssh-agent", "not used (IdentityAgent none)"));
            return 0;
        }
        Some(Agent::Env) => match std::env::var_os("SSH_AUTH_SOCK") {
            None => {
                section.push(Item::info(
                    "ssh-agent",
                    "none: SSH_AUTH_SOCK is not set in the server's environment",
                ));
                return 0;
            }
            Some(path) => (
                PathBuf::from(path),
                tokio::time::timeout(Duration::from_secs(5), AgentClient::connect_env()).await,
            ),
        },
        Some(Agent::Socket(path)) => (
            path.clone(),
            tokio::time::timeout(Duration::from_secs(5), AgentClient::connect_uds(path)).await,
        ),
    };
    let (path, connected) = connected;
    let shown = path.display();
    let fix = "start one (eval \"$(ssh-agent)\"; ssh-add) in the environment the MCP client \
               starts the server in, or point IdentityAgent at a live socket";
    let mut client = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            section.push(Item::warn(
                "ssh-agent",
                format!("{shown}: cannot connect: {e}"),
                fix,
            ));
            return 0;
        }
        Err(_) => {
            section.push(Item::warn(
                "ssh-agent",
                format!("{shown}: no answer in 5 s"),
                fix,
            ));
            return 0;
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), client.request_identities()).await {
        Ok(Ok(ids)) => {
            section.push(Item::ok(
                "ssh-agent",
                format!("{shown}: {} key(s)", ids.len()),
            ));
            ids.len()
        }
        Ok(Err(e)) => {
            section.push(Item::warn(
                "ssh-agent",
                format!("{shown}: did not list its keys: {e}"),
                fix,
            ));
            0
        }
        Err(_) => {
            section.push(Item::warn(
                "ssh-agent",
                format!("{shown}: did not list its keys in 5 s"),
                fix,
            ));
            0
        }
    }
}

fn server(settings: &Settings) -> Section {
    let mut section = Section::new("Server");
    match &settings.plugins.cache_dir {
        None => section.push(Item::info(
            "compile cache",
            "off (--no-cache): components compile on every start",
        )),
        Some(dir) => section.push(cache_dir(dir)),
    }
    match &settings.plugins.audit_log {
        None => section.push(Item::info("audit log", "none")),
        Some(path) => section.push(Item::info("audit log", format!("{}", path.display()))),
    }
    let ssh = &settings.ssh;
    section.push(Item::info(
        "limits",
        format!(
            "{} sessions, {} commands at once per connection ({} of them background jobs), \
             connect timeout {} s, command timeout {} s",
            ssh.max_sessions,
            ssh.channels_per_connection,
            ssh.jobs_per_connection,
            ssh.connect_timeout.as_secs_f64(),
            ssh.default_command_timeout.as_secs_f64()
        ),
    ));
    section
}

/// The cache is used only where no one else can write (see
/// `plugins::cache`): say so when the server would turn it off.
fn cache_dir(dir: &Path) -> Item {
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(_) => {
            return Item::info(
                "compile cache",
                format!("{shown} (created, private, on first start)"),
            );
        }
    };
    let me = crate::fsutil::effective_uid();
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.is_dir() || meta.uid() != me || mode & 0o022 != 0 {
        return Item::warn(
            "compile cache",
            format!(
                "{shown} is not a private directory of this user (uid {}, mode {mode:04o}): the \
                 server will not use it and compiles every component on every start",
                meta.uid()
            ),
            format!("chown {me} '{shown}' && chmod 700 '{shown}', or pick another --cache-dir"),
        );
    }
    Item::ok("compile cache", format!("{shown}"))
}
