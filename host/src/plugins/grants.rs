//! What a component may do through the host's interfaces.
//!
//! A third-party component declares what it needs in a manifest beside it
//! (`NAME.toml` next to `NAME.wasm`, a `[requests]` table); the operator
//! grants in the config file (`[plugins.NAME]`). The effective grant is the
//! intersection: every request must be allowed by both. A component without
//! a manifest, or that the operator did not grant, gets nothing: its tools
//! are listed, and every call it makes to SSH is denied with a message that
//! says what to add to the config. Built-in tools hold the full grant. No
//! tool can change a grant: grants come from files the agent cannot reach.
//!
//! Commands are matched by argv, never by string prefix: a pattern such as
//! `["systemctl", "status", "*"]` matches a program and its arguments word
//! by word, and the host quotes each word itself before the shell sees it,
//! so `x; rm -rf /` stays one argument of `systemctl`.
//!
//! Hosts and ports are matched against where a call really goes
//! ([`hosts`]). CPU and memory budgets: the operator's flags are ceilings
//! that only the operator's grant may raise; a manifest may only lower
//! them. Every value is checked when the file is read, so a bad one is a
//! load error, never a surprise at call time.

mod client;
mod hosts;
mod paths;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use self::client::ClientPolicy;
pub(crate) use self::client::both as both_peer_checks;
pub(crate) use self::hosts::Resolved;
use self::hosts::{HostPattern, Net};
use crate::pattern::glob_match;
use crate::ssh::{PeerCheck, Target};

/// Largest CPU budget a grant or `--guest-cpu-limit` may set: one day.
pub const MAX_CPU_SECONDS: f64 = 24.0 * 3600.0;
/// Largest memory budget a grant or `--guest-memory-limit` may set: 64 GiB.
pub const MAX_MEMORY_MIB: usize = 64 << 10;

/// One side of a grant: what a manifest requests, or what the operator
/// grants. Absent fields allow nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// Hosts the component may reach: `*` (any), name globs matched on the
    /// name given (`*` and `?` within one label), addresses and CIDR blocks
    /// matched on the address connected to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Ports it may reach. Absent in the operator's grant: only the port
    /// ssh_config gives for the host, else 22. Absent in a manifest: no
    /// narrower than the operator's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// User-name patterns it may log in as.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Argv patterns it may run through `exec-argv`: each word a glob
    /// matching one argument, same length as the argv.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Vec<String>>,
    /// Raw shell command lines (`exec`, background jobs): anything goes on
    /// the allowed hosts. Grant it only to code you trust like a shell.
    #[serde(default, skip_serializing_if = "is_false")]
    pub shell: bool,
    /// Passwords and key files passed by the component (otherwise only the
    /// operator's agent, default keys and open sessions serve it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub credentials: bool,
    /// Commands and jobs through `sudo` (as any user sudoers allows the
    /// login user), on top of `shell` or `commands` for what they run.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sudo: bool,
    /// Listing and closing every session and job, not only its own jobs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub all_sessions: bool,
    /// Remote paths it may stat, read and list, and download from:
    /// absolute globs, `*` within a segment, `**` across segments
    /// (`/var/log/**`). See [`paths`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_paths: Vec<String>,
    /// Remote paths it may write, and upload to (the same patterns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_paths: Vec<String>,
    /// Uploads and downloads between this machine and a host. Local paths
    /// must still lie inside the operator's transfer roots.
    #[serde(default, skip_serializing_if = "is_false")]
    pub transfer: bool,
    /// Bytes kept per output stream, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Commands and background jobs running at once, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// Guest CPU seconds per tool call. The operator's replaces
    /// --guest-cpu-limit; a manifest's may only lower it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    /// Guest memory per tool call, all memories together, in MiB. The
    /// operator's replaces --guest-memory-limit; a manifest's may only
    /// lower it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<usize>,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// A value in a grant that cannot be honoured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GrantError {
    #[error("{key} = {value}: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: String,
    },
}

fn invalid(key: &'static str, value: impl std::fmt::Display, why: &str) -> GrantError {
    GrantError::Invalid {
        key,
        value: value.to_string(),
        why: why.into(),
    }
}

impl GrantSpec {
    /// Checks every value, so that a bad one is a load error naming its key.
    pub fn validate(&self) -> Result<(), GrantError> {
        if let Some(s) = self.cpu_seconds
            && !(s.is_finite() && s > 0.0 && s <= MAX_CPU_SECONDS)
        {
            return Err(invalid(
                "cpu_seconds",
                s,
                "must be a positive number of seconds, at most 86400 (one day)",
            ));
        }
        if let Some(m) = self.memory_mib
            && !(1..=MAX_MEMORY_MIB).contains(&m)
        {
            return Err(invalid("memory_mib", m, "must be 1 to 65536 MiB (64 GiB)"));
        }
        if self.max_concurrency == Some(0) {
            return Err(invalid(
                "max_concurrency",
                0,
                "must be at least 1 (to allow no commands, grant no hosts)",
            ));
        }
        if self.ports.contains(&0) {
            return Err(invalid("ports", 0, "ports are 1 to 65535"));
        }
        for h in &self.hosts {
            HostPattern::parse(h).map_err(|why| invalid("hosts", format!("{h:?}"), &why))?;
        }
        for (key, patterns) in [
            ("read_paths", &self.read_paths),
            ("write_paths", &self.write_paths),
        ] {
            for p in patterns {
                paths::check_pattern(p).map_err(|why| invalid(key, format!("{p:?}"), &why))?;
            }
        }
        Ok(())
    }
}

/// The manifest beside a component: `NAME.toml` next to `NAME.wasm`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub requests: GrantSpec,
}

impl Manifest {
    /// The manifest beside `wasm`, if there is one.
    pub fn beside(wasm: &Path) -> anyhow::Result<Option<Self>> {
        let path = wasm.with_extension("toml");
        match crate::fsutil::read_regular_string(&path, crate::fsutil::CONFIG_FILE_CAP) {
            Ok(text) => {
                let manifest: Self = toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("manifest {}: {e}", path.display()))?;
                manifest
                    .requests
                    .validate()
                    .map_err(|e| anyhow::anyhow!("manifest {}: {e}", path.display()))?;
                Ok(Some(manifest))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("manifest {}: {e}", path.display())),
        }
    }
}

/// One side of an effective grant, its host patterns parsed.
#[derive(Debug)]
struct Layer {
    spec: GrantSpec,
    hosts: Vec<HostPattern>,
    /// The operator's side: its absent `ports` mean the default port.
    operator: bool,
}

impl Layer {
    fn new(spec: &GrantSpec, operator: bool) -> Self {
        Self {
            // Validated when read; an entry that still fails allows nothing.
            hosts: spec
                .hosts
                .iter()
                .filter_map(|h| HostPattern::parse(h).ok())
                .collect(),
            spec: spec.clone(),
            operator,
        }
    }
}

/// What a component asks to do with a target, checked after the target.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action<'a> {
    /// Only learn where the target goes.
    Describe,
    /// Run a raw shell command line (`exec`, a background job).
    Shell,
    /// Run this argv through `exec-argv`.
    Argv(&'a [String]),
    /// Read (stat, read, list, download from) or write (write, upload to)
    /// the remote `path`; `transfer`: to or from this machine.
    File {
        path: &'a str,
        write: bool,
        transfer: bool,
    },
}

/// The effective grant of one component.
#[derive(Debug)]
pub struct Grant {
    /// Every layer must allow a request. No layers: the full grant.
    layers: Vec<Layer>,
    /// Set when nothing is granted: the reason, and what to add.
    ungranted: Option<String>,
    concurrency: Option<(Arc<Semaphore>, usize)>,
    /// `cpu_seconds` and `memory_mib` of the operator's grant and of the
    /// manifest, kept apart: only the operator's may raise the flags.
    operator_budget: (Option<f64>, Option<usize>),
    manifest_budget: (Option<f64>, Option<usize>),
}

impl Grant {
    /// Everything: the built-in tools.
    pub fn full() -> Self {
        Self {
            layers: Vec::new(),
            ungranted: None,
            concurrency: None,
            operator_budget: (None, None),
            manifest_budget: (None, None),
        }
    }

    /// The intersection of a plugin's manifest and the operator's grant.
    pub fn for_plugin(
        name: &str,
        manifest: Option<&Manifest>,
        operator: Option<&GrantSpec>,
        config_path: &Path,
    ) -> Self {
        let ungranted = match (manifest, operator) {
            (None, _) => Some(format!(
                "component {name} has no manifest ({name}.toml beside {name}.wasm) declaring \
                 what it needs, so it may not use SSH at all"
            )),
            (Some(m), None) => Some(format!(
                "component {name} is not granted anything. To allow what it requests, add to \
                 {}:\n\n[plugins.{name}]\n{}",
                config_path.display(),
                toml::to_string(&m.requests).unwrap_or_default()
            )),
            (Some(_), Some(_)) => None,
        };
        let layers: Vec<Layer> = match (manifest, operator) {
            (Some(m), Some(o)) => vec![Layer::new(&m.requests, false), Layer::new(o, true)],
            _ => Vec::new(),
        };
        let concurrency = layers
            .iter()
            .filter_map(|l| l.spec.max_concurrency)
            .min()
            .map(|n| n.max(1))
            .map(|n| (Arc::new(Semaphore::new(n)), n));
        let budget =
            |s: Option<&GrantSpec>| s.map_or((None, None), |s| (s.cpu_seconds, s.memory_mib));
        Self {
            layers,
            ungranted,
            concurrency,
            operator_budget: budget(operator),
            manifest_budget: budget(manifest.map(|m| &m.requests)),
        }
    }

    /// Whether the component is granted anything at all.
    pub(crate) fn granted(&self) -> Result<(), String> {
        match &self.ungranted {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// May this component do `action` on `target`, which ssh_config
    /// resolves to `route`? Checked in the order a reader would ask: host,
    /// user, credentials, the action, then the port. `Ok(Some(check))`:
    /// allowed if the address the session is connected to passes `check`
    /// (host allowed only by address, not yet known).
    pub(crate) fn authorize(
        &self,
        target: &Target,
        route: &Resolved,
        action: Action<'_>,
    ) -> Result<Option<PeerCheck>, String> {
        self.granted()?;
        let mut by_address: Vec<(Vec<Net>, Vec<String>)> = Vec::new();
        for layer in &self.layers {
            if let Some(nets) = hosts::check_hosts(&layer.hosts, &layer.spec.hosts, route)? {
                by_address.push((nets, layer.spec.hosts.clone()));
            }
        }
        self.check_user_and_credentials(target)?;
        match action {
            Action::Describe => {}
            Action::Shell => self.check_shell()?,
            Action::Argv(argv) => self.check_argv(argv)?,
            Action::File {
                path,
                write,
                transfer,
            } => self.check_file(path, write, transfer)?,
        }
        for layer in &self.layers {
            hosts::check_port(&layer.spec.ports, layer.operator, route)?;
        }
        Ok((!by_address.is_empty()).then(|| hosts::peer_check(route.given.clone(), by_address)))
    }

    fn check_user_and_credentials(&self, target: &Target) -> Result<(), String> {
        let user = target.username.as_deref().unwrap_or("");
        for layer in &self.layers {
            if !layer.spec.users.iter().any(|p| glob_match(p, user)) {
                return Err(format!(
                    "user {user:?} is not among the granted users {:?}",
                    layer.spec.users
                ));
            }
        }
        let supplies = target.credentials.as_ref().is_some_and(|c| !c.is_empty());
        if supplies && !self.layers.iter().all(|l| l.spec.credentials) {
            return Err(
                "this component may not supply credentials; it can only use the \
                        operator's ssh-agent, default keys and open sessions"
                    .into(),
            );
        }
        Ok(())
    }

    /// May it run a raw shell command line?
    fn check_shell(&self) -> Result<(), String> {
        if self.layers.iter().all(|l| l.spec.shell) {
            return Ok(());
        }
        let patterns: Vec<&Vec<String>> =
            self.layers.iter().flat_map(|l| &l.spec.commands).collect();
        Err(format!(
            "this component may not run shell command lines; it may run only programs whose argv \
             matches its granted commands {patterns:?}, through exec-argv"
        ))
    }

    /// May it run commands through sudo?
    pub(crate) fn check_sudo(&self) -> Result<(), String> {
        if self.layers.iter().all(|l| l.spec.sudo) {
            return Ok(());
        }
        Err(
            "this component may not run commands through sudo (`sudo = true` in its grant and \
             its manifest allows it)"
                .into(),
        )
    }

    /// May it run `argv`?
    fn check_argv(&self, argv: &[String]) -> Result<(), String> {
        for layer in &self.layers {
            let matched = layer.spec.shell
                || layer.spec.commands.iter().any(|p| {
                    p.len() == argv.len() && p.iter().zip(argv).all(|(p, a)| glob_match(p, a))
                });
            if !matched {
                return Err(format!(
                    "argv {argv:?} matches none of the granted commands {:?}",
                    layer.spec.commands
                ));
            }
        }
        Ok(())
    }

    /// May it read or write `path`, and transfer files?
    fn check_file(&self, path: &str, write: bool, transfer: bool) -> Result<(), String> {
        if self.layers.is_empty() {
            return Ok(());
        }
        let segments = paths::segments(path)?;
        let (key, verb) = if write {
            ("write_paths", "write")
        } else {
            ("read_paths", "read")
        };
        for layer in &self.layers {
            let patterns = if write {
                &layer.spec.write_paths
            } else {
                &layer.spec.read_paths
            };
            if !patterns.iter().any(|p| paths::matches(p, &segments)) {
                return Err(format!(
                    "this component may not {verb} {path:?}: it matches none of the granted \
                     {key} {patterns:?}"
                ));
            }
            if transfer && !layer.spec.transfer {
                return Err(
                    "this component may not transfer files between this machine and a host \
                     (`transfer = true` in its grant and its manifest allows it)"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// May it list and close every session, and see every job?
    pub(crate) fn see_all_sessions(&self) -> bool {
        self.ungranted.is_none() && self.layers.iter().all(|l| l.spec.all_sessions)
    }

    /// The requested output size, within the grant.
    pub(crate) fn clamp_output(&self, requested: Option<u64>) -> Option<u64> {
        let cap = self
            .layers
            .iter()
            .filter_map(|l| l.spec.max_output_bytes)
            .min();
        match (requested, cap) {
            (Some(r), Some(c)) => Some(r.min(c)),
            (r, c) => r.or(c),
        }
    }

    /// Guest CPU time per call: `ceiling` (--guest-cpu-limit) unless the
    /// operator's grant sets another, lowered by the manifest's.
    pub(crate) fn cpu_limit(&self, ceiling: Duration) -> Duration {
        let secs = |s: f64| {
            // Validated at load; a value that still slipped through falls
            // back to the operator's ceiling instead of panicking here.
            (s.is_finite() && s > 0.0 && s <= MAX_CPU_SECONDS).then(|| Duration::from_secs_f64(s))
        };
        let ceiling = self.operator_budget.0.and_then(secs).unwrap_or(ceiling);
        self.manifest_budget
            .0
            .and_then(secs)
            .map_or(ceiling, |m| m.min(ceiling))
    }

    /// Guest memory per call in bytes: `ceiling` (--guest-memory-limit)
    /// unless the operator's grant sets another, lowered by the manifest's.
    pub(crate) fn memory_limit(&self, ceiling: usize) -> usize {
        let bytes = |m: usize| {
            (1..=MAX_MEMORY_MIB)
                .contains(&m)
                .then(|| m.checked_mul(1 << 20))
                .flatten()
        };
        let ceiling = self.operator_budget.1.and_then(bytes).unwrap_or(ceiling);
        self.manifest_budget
            .1
            .and_then(bytes)
            .map_or(ceiling, |m| m.min(ceiling))
    }

    /// A slot for one running command or job, if the grant limits
    /// concurrency. Held until the command or job ends.
    pub(crate) fn slot(&self) -> Result<Option<OwnedSemaphorePermit>, String> {
        match &self.concurrency {
            None => Ok(None),
            Some((s, n)) => s.clone().try_acquire_owned().map(Some).map_err(|_| {
                format!(
                    "resource limit reached: this component already runs {n} command(s) or \
                     job(s) at once, the most its grant allows (max_concurrency = {n}); \
                     retry when one has ended"
                )
            }),
        }
    }
}

/// The operator's grants, by component name.
pub type Grants = BTreeMap<String, GrantSpec>;

#[cfg(test)]
mod tests;
