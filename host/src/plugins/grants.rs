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

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::pattern::glob_match;
use crate::ssh::Target;

/// One side of a grant: what a manifest requests, or what the operator
/// grants. Absent fields allow nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// Host patterns (`*`, `?` globs) the component may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
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
    /// Listing and closing every session and job, not only its own jobs.
    #[serde(default, skip_serializing_if = "is_false")]
    pub all_sessions: bool,
    /// Bytes kept per output stream, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// Commands running at once, at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
    /// Guest CPU seconds per tool call (default: --guest-cpu-limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    /// Guest memory per tool call, all memories together, in MiB
    /// (default: --guest-memory-limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<usize>,
}

fn is_false(b: &bool) -> bool {
    !b
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
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("manifest {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("manifest {}: {e}", path.display())),
        }
    }
}

/// The effective grant of one component.
#[derive(Debug)]
pub struct Grant {
    /// Every layer must allow a request. No layers: the full grant.
    layers: Vec<GrantSpec>,
    /// Set when nothing is granted: the reason, and what to add.
    ungranted: Option<String>,
    concurrency: Option<Arc<Semaphore>>,
}

impl Grant {
    /// Everything: the built-in tools.
    pub fn full() -> Self {
        Self {
            layers: Vec::new(),
            ungranted: None,
            concurrency: None,
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
        let layers: Vec<GrantSpec> = match (manifest, operator) {
            (Some(m), Some(o)) => vec![m.requests.clone(), o.clone()],
            _ => Vec::new(),
        };
        let concurrency = layers
            .iter()
            .filter_map(|l| l.max_concurrency)
            .min()
            .map(|n| Arc::new(Semaphore::new(n.max(1))));
        Self {
            layers,
            ungranted,
            concurrency,
        }
    }

    fn granted(&self) -> Result<(), String> {
        match &self.ungranted {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// May this component reach `target` (host, user, credentials)?
    pub(crate) fn check_target(&self, target: &Target) -> Result<(), String> {
        self.granted()?;
        let user = target.username.as_deref().unwrap_or("");
        for layer in &self.layers {
            if !layer
                .hosts
                .iter()
                .any(|p| glob_match(&p.to_ascii_lowercase(), &target.host.to_ascii_lowercase()))
            {
                return Err(format!(
                    "host {:?} is not among the granted hosts {:?}",
                    target.host, layer.hosts
                ));
            }
            if !layer.users.iter().any(|p| glob_match(p, user)) {
                return Err(format!(
                    "user {user:?} is not among the granted users {:?}",
                    layer.users
                ));
            }
        }
        let supplies = target.credentials.as_ref().is_some_and(|c| !c.is_empty());
        if supplies && !self.layers.iter().all(|l| l.credentials) {
            return Err(
                "this component may not supply credentials; it can only use the \
                        operator's ssh-agent, default keys and open sessions"
                    .into(),
            );
        }
        Ok(())
    }

    /// May it run a raw shell command line?
    pub(crate) fn check_shell(&self) -> Result<(), String> {
        self.granted()?;
        if self.layers.iter().all(|l| l.shell) {
            return Ok(());
        }
        let patterns: Vec<&Vec<String>> = self.layers.iter().flat_map(|l| &l.commands).collect();
        Err(format!(
            "this component may not run shell command lines; it may run only programs whose argv \
             matches its granted commands {patterns:?}, through exec-argv"
        ))
    }

    /// May it run `argv`?
    pub(crate) fn check_argv(&self, argv: &[String]) -> Result<(), String> {
        self.granted()?;
        for layer in &self.layers {
            let matched = layer.shell
                || layer.commands.iter().any(|p| {
                    p.len() == argv.len() && p.iter().zip(argv).all(|(p, a)| glob_match(p, a))
                });
            if !matched {
                return Err(format!(
                    "argv {argv:?} matches none of the granted commands {:?}",
                    layer.commands
                ));
            }
        }
        Ok(())
    }

    /// May it list and close every session, and see every job?
    pub(crate) fn see_all_sessions(&self) -> bool {
        self.ungranted.is_none() && self.layers.iter().all(|l| l.all_sessions)
    }

    /// The requested output size, within the grant.
    pub(crate) fn clamp_output(&self, requested: Option<u64>) -> Option<u64> {
        let cap = self.layers.iter().filter_map(|l| l.max_output_bytes).min();
        match (requested, cap) {
            (Some(r), Some(c)) => Some(r.min(c)),
            (r, c) => r.or(c),
        }
    }

    /// Guest CPU time per call, if the grant sets one (the smaller side's).
    pub(crate) fn cpu_limit(&self) -> Option<std::time::Duration> {
        self.layers
            .iter()
            .filter_map(|l| l.cpu_seconds)
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(std::time::Duration::from_secs_f64)
            .min()
    }

    /// Guest memory per call in bytes, if the grant sets it.
    pub(crate) fn memory_limit(&self) -> Option<usize> {
        self.layers
            .iter()
            .filter_map(|l| l.memory_mib)
            .min()
            .map(|m| m.max(1) << 20)
    }

    /// A slot for one running command, if the grant limits concurrency.
    pub(crate) fn slot(&self) -> Result<Option<OwnedSemaphorePermit>, String> {
        match &self.concurrency {
            None => Ok(None),
            Some(s) => s.clone().try_acquire_owned().map(Some).map_err(|_| {
                "this component already runs as many commands as its grant allows".to_string()
            }),
        }
    }
}

/// One argv as a shell command line: every word single-quoted, so the
/// shell sees each as exactly one argument whatever it contains.
pub(crate) fn quote_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The operator's grants, by component name.
pub type Grants = BTreeMap<String, GrantSpec>;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hosts: &[&str], commands: &[&[&str]]) -> GrantSpec {
        GrantSpec {
            hosts: hosts.iter().map(|s| s.to_string()).collect(),
            users: vec!["*".into()],
            commands: commands
                .iter()
                .map(|c| c.iter().map(|s| s.to_string()).collect())
                .collect(),
            ..GrantSpec::default()
        }
    }

    fn target(host: &str) -> Target {
        Target {
            host: host.into(),
            username: Some("u".into()),
            ..Target::default()
        }
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_effective_grant_is_the_intersection() {
        let manifest = Manifest {
            requests: spec(&["*"], &[&["systemctl", "status", "*"], &["uptime"]]),
        };
        let operator = spec(&["10.0.0.*"], &[&["systemctl", "status", "*"]]);
        let g = Grant::for_plugin("svc", Some(&manifest), Some(&operator), Path::new("c.toml"));
        assert!(g.check_target(&target("10.0.0.7")).is_ok());
        assert!(g.check_target(&target("10.0.1.7")).is_err());
        assert!(
            g.check_argv(&argv(&["systemctl", "status", "nginx"]))
                .is_ok()
        );
        // Requested by the manifest, not granted by the operator.
        assert!(g.check_argv(&argv(&["uptime"])).is_err());
        assert!(g.check_shell().is_err());
        assert!(!g.see_all_sessions());
    }

    #[test]
    fn argv_patterns_match_word_by_word() {
        let m = Manifest {
            requests: spec(&["*"], &[&["systemctl", "status", "*"]]),
        };
        let g = Grant::for_plugin("svc", Some(&m), Some(&m.requests), Path::new("c.toml"));
        assert!(g.check_argv(&argv(&["systemctl", "status"])).is_err());
        assert!(
            g.check_argv(&argv(&["systemctl", "status", "a", "b"]))
                .is_err()
        );
        assert!(g.check_argv(&argv(&["systemctl", "restart", "a"])).is_err());
        // Allowed, and harmless once quoted: it is one argument.
        let evil = argv(&["systemctl", "status", "x; rm -rf /"]);
        assert!(g.check_argv(&evil).is_ok());
        assert_eq!(quote_argv(&evil), "'systemctl' 'status' 'x; rm -rf /'");
    }

    #[test]
    fn quoting_survives_quotes_and_newlines() {
        let q = quote_argv(&argv(&["echo", "it's", "a\nb", "$(id)"]));
        assert_eq!(q, "'echo' 'it'\\''s' 'a\nb' '$(id)'");
    }

    #[test]
    fn an_ungranted_plugin_is_told_what_to_add() {
        let m = Manifest {
            requests: spec(&["*"], &[&["df", "-P", "*"]]),
        };
        let g = Grant::for_plugin("disk", Some(&m), None, Path::new("/etc/x.toml"));
        let why = g.check_target(&target("h")).unwrap_err();
        assert!(
            why.contains("[plugins.disk]") && why.contains("/etc/x.toml"),
            "{why}"
        );
        assert!(why.contains(r#"commands = [["df", "-P", "*"]]"#), "{why}");
        let none = Grant::for_plugin("bare", None, None, Path::new("x"));
        assert!(none.check_shell().unwrap_err().contains("no manifest"));
    }

    #[test]
    fn credentials_and_output_follow_the_stricter_side() {
        let mut m = spec(&["*"], &[]);
        m.credentials = true;
        m.max_output_bytes = Some(1000);
        let mut o = m.clone();
        o.credentials = false;
        o.max_output_bytes = Some(500);
        let g = Grant::for_plugin(
            "c",
            Some(&Manifest { requests: m }),
            Some(&o),
            Path::new("x"),
        );
        let mut t = target("h");
        t.credentials = Some(crate::ssh::Credentials {
            password: Some(zeroize::Zeroizing::new("pw".into())),
            ..Default::default()
        });
        assert!(g.check_target(&t).is_err());
        assert_eq!(g.clamp_output(None), Some(500));
        assert_eq!(g.clamp_output(Some(100)), Some(100));
        assert_eq!(Grant::full().clamp_output(None), None);
    }
}
