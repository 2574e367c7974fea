//! The server's settings, as the library takes them (the binary builds
//! them from its flags), and the operator's config file.

use std::path::PathBuf;

use anyhow::bail;

use crate::plugins::{Grants, PluginSettings};
use crate::ssh::SshSettings;

/// The operator's config file (`config.toml`): grants and the audit log.
/// Unknown keys are errors, never silently ignored.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Grants for plugin components, by name (the `.wasm` file's stem).
    #[serde(default)]
    pub plugins: Grants,
    /// Where to append the audit log (JSON lines, created with mode 0600).
    pub audit_log: Option<PathBuf>,
    /// Local directories uploads and downloads may use; `--transfer-root`
    /// replaces them.
    #[serde(default)]
    pub transfer_roots: Vec<PathBuf>,
}

impl OperatorConfig {
    /// Reads `path`; a missing file is an error only if it was asked for.
    /// Every grant is checked here, so a bad value stops the start with
    /// its file, table and key.
    pub fn load(path: &std::path::Path, required: bool) -> anyhow::Result<Self> {
        let file: Self =
            match crate::fsutil::read_regular_string(path, crate::fsutil::CONFIG_FILE_CAP) {
                Ok(text) => toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Self::default(),
                Err(e) => bail!("config file {}: {e}", path.display()),
            };
        for (name, grant) in &file.plugins {
            if let Err(e) = grant.validate() {
                bail!("config file {}: [plugins.{name}] {e}", path.display());
            }
        }
        Ok(file)
    }
}

/// Everything the server runs with: the SSH core's settings and the
/// plugin host's.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ssh: SshSettings,
    pub plugins: PluginSettings,
}
