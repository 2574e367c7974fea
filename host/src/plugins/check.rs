//! `plugin check`: loads one component beside the built-ins, without
//! running any of its tools, and reports what it exports, what its
//! manifest requests and what the operator's config grants it.

use std::path::{Path, PathBuf};

use super::PluginHost;
use super::discovery::{self, PluginSettings};
use super::grants::{Grant, GrantSpec, Manifest};
use super::registry::{AddError, ToolSpec};
use crate::ssh::SessionManager;

/// What `plugin check` found in a component that passed.
#[derive(Debug)]
pub struct CheckReport {
    /// The name grants use: the file's stem.
    pub name: String,
    pub tools: Vec<ToolSpec>,
    /// Its manifest, if one lies beside it.
    pub manifest: Option<Manifest>,
    /// What the operator's config grants it, if anything.
    pub operator: Option<GrantSpec>,
    pub config_path: PathBuf,
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "tools:")?;
        for t in &self.tools {
            writeln!(f, "  {}: {}", t.name, t.description)?;
        }
        match &self.manifest {
            Some(m) => writeln!(
                f,
                "\nrequested grants (its manifest):\n{}",
                toml::to_string(&m.requests).unwrap_or_default()
            )?,
            None => writeln!(
                f,
                "\nno manifest beside it: it requests nothing, so it may not use SSH at all"
            )?,
        }
        match &self.operator {
            Some(g) => writeln!(
                f,
                "granted by {}:\n{}",
                self.config_path.display(),
                toml::to_string(g).unwrap_or_default()
            ),
            None => writeln!(
                f,
                "not granted in {}: its calls will be denied until [plugins.{}] is added",
                self.config_path.display(),
                self.name
            ),
        }
    }
}

impl PluginHost {
    /// Validates the component at `path` without running any of its
    /// tools: it links against this host's WIT world, answers
    /// `list-tools` within its CPU budget, its schemas are valid, and its
    /// tool names clash with no built-in's.
    pub async fn check(config: PluginSettings, path: &Path) -> anyhow::Result<CheckReport> {
        let name = discovery::plugin_name(path);
        let manifest = Manifest::beside(path)?;
        let operator = config.grants.get(&name).cloned();
        let bytes = discovery::read_component(path)?;
        let builtins = PluginSettings {
            plugin_dir: None,
            audit_log: None,
            ..config.clone()
        };
        let sessions = SessionManager::new(crate::ssh::SshSettings::default());
        let mut host = Self::load(builtins, sessions).await?;
        let component = host.runtime.compile_uncached(bytes).await;
        let grant = Grant::for_plugin(
            &name,
            manifest.as_ref(),
            operator.as_ref(),
            &config.config_path,
        );
        match host.add(path.display().to_string(), grant, component).await {
            Ok(names) => Ok(CheckReport {
                name,
                tools: host
                    .tools()
                    .filter(|t| names.contains(&t.name))
                    .cloned()
                    .collect(),
                manifest,
                operator,
                config_path: config.config_path,
            }),
            Err(AddError::Rejected(e) | AddError::Clash(e)) => Err(e),
        }
    }
}
