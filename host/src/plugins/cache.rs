//! On-disk cache of compiled components, so a warm start does not compile.
//!
//! An entry is named by the component's sha256 and the engine's
//! compatibility hash, and starts with a header holding the sha256 of the
//! artifact that follows. Loading a precompiled artifact is `unsafe` in
//! wasmtime (it is trusted machine code), and the checksum only catches
//! accidents: anyone who can write an entry can write a valid header. So
//! the cache is used only where no one else can write: a directory owned by
//! this server's effective user and not writable by group or others (else
//! the cache is off, with one warning, and nothing is written there), and
//! entries that are regular files (opened without following symlinks)
//! owned by that user and not writable by others (else recompiled).

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
        let dir = dir.and_then(
            |d| match create_private_dir(&d).and_then(|()| owned_by_us(&d)) {
                Ok(()) => Some(d),
                Err(e) => {
                    tracing::warn!(
                        "compile cache disabled, every component is compiled: {}: {e}",
                        d.display()
                    );
                    None
                }
            },
        );
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
        match read_entry(&path) {
            Ok(bytes) => match checked_artifact(&bytes) {
                // SAFETY: only this user can have written the file (see the
                // module header), and the checksum proves it is whole: these
                // are the bytes this host wrote after compiling with an
                // engine of the same tag.
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
    if dir.exists() {
        return Ok(());
    }
    crate::fsutil::create_private_dir(dir)
}

/// Refuses metadata of a file or directory someone else could have
/// written: owned by another user, or writable by group or others.
fn check_owner(meta: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let me = crate::fsutil::effective_uid();
    if meta.uid() != me {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "owned by uid {}, not by this server's user (uid {me})",
                meta.uid()
            ),
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("writable by group or others (mode {:04o})", mode & 0o7777),
        ));
    }
    Ok(())
}

fn owned_by_us(dir: &Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a directory",
        ));
    }
    check_owner(&meta)
}

/// An entry's bytes, if it is a regular file this user alone could have
/// written; a symlink is refused (`O_NOFOLLOW`), and the checks are made
/// on the opened file, so it cannot be swapped in between.
fn read_entry(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the entry is a symbolic link",
                )
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the entry is not a regular file",
        ));
    }
    check_owner(&meta)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
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
