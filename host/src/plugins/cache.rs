//! On-disk cache of compiled components, so a warm start does not compile.
//!
//! An entry is named by the component's sha256 and the engine's
//! compatibility hash, and starts with a header holding the sha256 of the
//! artifact that follows. Loading a precompiled artifact is `unsafe` in
//! wasmtime (it is trusted machine code): we only load files this host wrote
//! into its own 0700 directory, and a file whose checksum does not match is
//! recompiled, never loaded.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 8] = b"MCPSSHC1";
const HEADER_LEN: usize = MAGIC.len() + 32;

pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
    engine_tag: String,
}

impl CompileCache {
    /// A cache in `dir`, or none: every start then compiles.
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        let dir = dir.and_then(|d| match create_private_dir(&d) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::warn!("compile cache disabled: cannot create {}: {e}", d.display());
                None
            }
        });
        Self {
            dir,
            engine_tag: format!("{:016x}", h.finish()),
        }
    }

    /// Loads `wasm` from the cache, or compiles it and stores the result.
    /// Blocking and CPU-heavy: call it off the async threads.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        name: &str,
        wasm: &[u8],
    ) -> anyhow::Result<Component> {
        let Some(dir) = &self.dir else {
            return Ok(Component::new(engine, wasm)?);
        };
        let digest = Sha256::digest(wasm);
        let path = dir.join(format!("{}-{}.cwasm", hex(&digest[..16]), self.engine_tag));
        match std::fs::read(&path) {
            Ok(bytes) => match checked_artifact(&bytes) {
                // SAFETY: the checksum proves these are the bytes this host
                // wrote after compiling with an engine of the same tag.
                Some(artifact) => match unsafe { Component::deserialize(engine, artifact) } {
                    Ok(c) => {
                        tracing::debug!(component = name, "loaded from compile cache");
                        return Ok(c);
                    }
                    Err(e) => tracing::warn!(
                        component = name,
                        "recompiling: cached artifact rejected: {e}"
                    ),
                },
                None => tracing::warn!(component = name, "recompiling: cached artifact is corrupt"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(component = name, "recompiling: cannot read cache: {e}"),
        }
        let started = std::time::Instant::now();
        let artifact = engine.precompile_component(wasm)?;
        tracing::info!(
            component = name,
            ms = started.elapsed().as_millis() as u64,
            "compiled"
        );
        if let Err(e) = store(&path, &artifact) {
            tracing::warn!(component = name, "cannot write compile cache: {e}");
        }
        // SAFETY: produced just now by this engine.
        Ok(unsafe { Component::deserialize(engine, &artifact)? })
    }
}

fn checked_artifact(bytes: &[u8]) -> Option<&[u8]> {
    let (header, artifact) = bytes.split_at_checked(HEADER_LEN)?;
    let (magic, sum) = header.split_at(MAGIC.len());
    (magic == MAGIC && sum == Sha256::digest(artifact).as_slice()).then_some(artifact)
}

/// Writes atomically: a crash mid-write leaves no half file under the name.
fn store(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(MAGIC)?;
    tmp.1.write_all(&Sha256::digest(artifact))?;
    tmp.1.write_all(artifact)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let path = dir.join(format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&path);
    opts.open(&path).map(|f| (path, f))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    crate::fsutil::create_private_dir(dir)?;
    // An existing directory may have been created with looser modes.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_guards_the_artifact() {
        let artifact = b"not really machine code";
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(&Sha256::digest(artifact));
        file.extend_from_slice(artifact);
        assert_eq!(checked_artifact(&file), Some(&artifact[..]));
        let last = file.len() - 1;
        file[last] ^= 1;
        assert_eq!(checked_artifact(&file), None);
        assert_eq!(checked_artifact(b"short"), None);
    }
}
