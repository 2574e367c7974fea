//! Where components come from: the built-ins compiled into this binary,
//! the `*.wasm` files of the plugin directory with the manifests beside
//! them, and the default places of the plugin directory and the config
//! file that grants them.

use std::borrow::Cow;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::grants::{Grant, Grants, Manifest};

/// The components compiled into this binary by `build.rs`.
mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_components.rs"));
}

/// A component file larger than this is refused at load: the largest
/// tool components are a few MiB.
const COMPONENT_FILE_CAP: u64 = 256 << 20;

/// How the plugin host is set up: where components and grants come from,
/// and the budgets of each call.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Extra components: every `*.wasm` in it. `None`: built-ins only.
    pub plugin_dir: Option<PathBuf>,
    /// Whether a missing `plugin_dir` is an error (it was asked for).
    pub plugin_dir_required: bool,
    /// Compiled components; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Guest time per call: computing or waiting in WASI, not time in
    /// this host's `ssh`, `jobs` and `progress` imports.
    pub cpu_limit: Duration,
    /// Bytes of all of a call's linear memories together.
    pub memory_limit: usize,
    /// The operator's grants for plugin components, by name (file stem).
    pub grants: Grants,
    /// Where those grants live, for messages that say what to add.
    pub config_path: PathBuf,
    /// Append an audit log here.
    pub audit_log: Option<PathBuf>,
    /// Local directories uploads may read from and downloads write into
    /// (`--transfer-root`). Empty: transfers are off.
    pub transfer_roots: Vec<PathBuf>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            plugin_dir: default_plugin_dir(),
            plugin_dir_required: false,
            cache_dir: dirs::cache_dir().map(|d| d.join("mcp-ssh-session").join("components")),
            cpu_limit: Duration::from_secs(10),
            memory_limit: 256 << 20,
            grants: Grants::new(),
            config_path: default_config_path(),
            audit_log: None,
            transfer_roots: Vec::new(),
        }
    }
}

/// `~/.config/mcp-ssh-session/config.toml` (or the platform's equivalent).
pub fn default_config_path() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_default()
        .join("mcp-ssh-session")
        .join("config.toml")
}

/// `~/.config/mcp-ssh-session/plugins` (or the platform's equivalent).
pub fn default_plugin_dir() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("mcp-ssh-session").join("plugins"))
}

/// A component to compile: its name in logs, its bytes, what it may do.
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) wasm: Wasm,
    pub(crate) grant: Grant,
}

/// A component's bytes: a plugin's file as read, or a built-in as this
/// binary keeps it, deflated by `build.rs` (a third of its size), so it is
/// inflated only when it must be compiled, not at every start.
pub(crate) enum Wasm {
    File(Vec<u8>),
    Deflated(&'static [u8]),
}

impl Wasm {
    /// The sha256 that names the component in the compile cache: of the
    /// bytes held, so a warm start inflates nothing. Each kind hashes its
    /// own prefix first, and the two differ before either ends, so no file
    /// can be named as a built-in is (its entry would be the built-in's
    /// code, whatever the file holds).
    pub(crate) fn digest(&self) -> [u8; 32] {
        let (domain, bytes): (&[u8], &[u8]) = match self {
            Self::File(bytes) => (b"mcp-ssh-session component file\0", bytes),
            Self::Deflated(bytes) => (b"mcp-ssh-session built-in, deflated\0", bytes),
        };
        Sha256::new()
            .chain_update(domain)
            .chain_update(bytes)
            .finalize()
            .into()
    }

    /// The component itself, to compile.
    pub(crate) fn bytes(&self) -> anyhow::Result<Cow<'_, [u8]>> {
        match self {
            Self::File(bytes) => Ok(Cow::Borrowed(bytes)),
            Self::Deflated(deflated) => {
                let mut out = Vec::with_capacity(deflated.len() * 3);
                flate2::read::DeflateDecoder::new(*deflated)
                    .take(COMPONENT_FILE_CAP)
                    .read_to_end(&mut out)
                    .context("inflating a built-in component")?;
                Ok(Cow::Owned(out))
            }
        }
    }
}

/// The prefix of a built-in component's name.
const BUILTIN: &str = "built-in:";

/// Whether `name` (a [`Source`]'s) is a built-in's: a built-in that does
/// not load is a startup error, a plugin that does not is skipped.
pub(crate) fn is_builtin(name: &str) -> bool {
    name.starts_with(BUILTIN)
}

/// The built-in components, then those of the plugin directory, each with
/// its grant. A plugin whose manifest is unreadable is skipped, logged.
pub(crate) fn sources(config: &PluginSettings) -> anyhow::Result<Vec<Source>> {
    let mut sources: Vec<Source> = builtin::COMPONENTS
        .iter()
        .map(|(name, deflated)| Source {
            name: format!("{BUILTIN}{name}"),
            wasm: Wasm::Deflated(deflated),
            grant: Grant::full(),
        })
        .collect();
    let Some(dir) = &config.plugin_dir else {
        return Ok(sources);
    };
    for path in plugin_files(dir, config.plugin_dir_required)? {
        let name = plugin_name(&path);
        let manifest = match Manifest::beside(&path) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!("skipping plugin {}: {e:#}", path.display());
                continue;
            }
        };
        let operator = config.grants.get(&name);
        let grant = Grant::for_plugin(&name, manifest.as_ref(), operator, &config.config_path);
        sources.push(Source {
            name: path.display().to_string(),
            wasm: Wasm::File(read_component(&path)?),
            grant,
        });
    }
    for name in config.grants.keys() {
        if !dir.join(format!("{name}.wasm")).exists() {
            tracing::warn!(
                "the config grants {name}, but there is no {name}.wasm in {}",
                dir.display()
            );
        }
    }
    Ok(sources)
}

/// The name grants use for the component at `path`: its file's stem.
pub(crate) fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The bytes of a component file, refused if it is not a regular file or
/// is too large to be one.
pub(crate) fn read_component(path: &Path) -> anyhow::Result<Vec<u8>> {
    crate::fsutil::read_regular(path, COMPONENT_FILE_CAP)
        .with_context(|| format!("reading {}", path.display()))
}

fn plugin_files(dir: &Path, required: bool) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("plugin directory {}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_inflates_to_a_component() {
        assert!(!builtin::COMPONENTS.is_empty());
        for (name, deflated) in builtin::COMPONENTS {
            let wasm = Wasm::Deflated(deflated);
            let bytes = wasm.bytes().unwrap();
            // The WebAssembly magic, then the component encoding's version
            // and layer (0x0d, 0x00, 0x01, 0x00), not a core module's.
            assert_eq!(bytes[..8], *b"\0asm\x0d\x00\x01\x00", "{name}");
            assert!(bytes.len() > deflated.len(), "{name} was not deflated");
        }
    }

    #[test]
    fn deflated_bytes_are_named_apart_from_the_same_bytes_in_a_file() {
        let (name, deflated) = builtin::COMPONENTS[0];
        let inflated = Wasm::Deflated(deflated).bytes().unwrap().into_owned();
        let built_in = Wasm::Deflated(deflated).digest();
        // A plugin file holding the deflated stream, the component itself,
        // or the deflated stream behind the built-ins' prefix, is not taken
        // for the built-in's cache entry.
        assert_ne!(built_in, Wasm::File(deflated.to_vec()).digest(), "{name}");
        assert_ne!(built_in, Wasm::File(inflated).digest(), "{name}");
        let mut forged = b"mcp-ssh-session built-in, deflated\0".to_vec();
        forged.extend_from_slice(deflated);
        assert_ne!(built_in, Wasm::File(forged).digest(), "{name}");
        assert_eq!(built_in, Wasm::Deflated(deflated).digest());
    }

    #[test]
    fn a_corrupt_deflated_component_is_an_error() {
        let err = Wasm::Deflated(b"\xff\xff\xff\xff not deflate")
            .bytes()
            .unwrap_err();
        assert!(format!("{err:#}").contains("inflating"), "{err:#}");
    }
}
