//! On-disk cache of compiled components, so a warm start does not compile.
//!
//! An entry is named by the component's digest ([`Wasm::digest`]: a
//! plugin file's bytes or a built-in's deflated ones, each kind under its
//! own prefix) and the engine's compatibility hash: the artifact as
//! wasmtime wrote it (`.cwasm`), and beside it the sha256 of that name and
//! the artifact (`.sum`), so one entry's files copied over another's are
//! refused. The artifact is mapped from the file rather than copied into
//! memory, so only the pages of code that run count in the server's
//! memory. Loading a precompiled artifact is
//! `unsafe` in wasmtime (it is trusted machine code), and the checksum only
//! catches accidents: anyone who can write an entry can write a valid
//! checksum. So the cache is used only where no one else can write: a
//! directory owned by this server's effective user and not writable by
//! group or others (else the cache is off, with one warning, and nothing is
//! written there), and entries that are regular files (opened without
//! following symlinks) owned by that user and not writable by others (else
//! recompiled). The mapping is of the file that was opened and checked.
//! Rewriting it in place while it is mapped would change or stop the
//! server's code, as for a shared library: entries are replaced by rename
//! and written read-only, so only root's `cp` over one could; this user
//! could do as much to the server's memory anyway.
//!
//! Entries this start did not use are removed past a quota ([`prune`]).

mod prune;

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::discovery::Wasm;

/// The start of a `.sum` file; the sha256 of the entry's name and its
/// artifact follows.
const MAGIC: &[u8; 8] = b"MCPSSHC2";
const SUM_LEN: u64 = MAGIC.len() as u64 + 32;
/// The largest artifact kept: a file beyond it is neither read nor written
/// (a compiled component is a few MB; a huge one would be read whole).
const MAX_ARTIFACT: u64 = 256 << 20;

pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
    engine_tag: String,
    /// Names of the entries this start loaded or wrote.
    used: Mutex<HashSet<String>>,
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
            used: Mutex::default(),
        }
    }

    /// Removes the entries this start did not use past
    /// [`prune::KEEP_UNUSED`], and what crashed writes left. Blocking:
    /// call it off the async threads, after every [`Self::load`].
    pub(crate) fn prune(&self) {
        let Some(dir) = &self.dir else { return };
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let removed = prune::prune(dir, &used);
        if removed > 0 {
            tracing::info!(
                files = removed,
                "compile cache: removed entries no recent start used"
            );
        }
    }

    /// Loads `wasm` from the cache, or compiles it and stores the result.
    /// Blocking and CPU-heavy: call it off the async threads.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        name: &str,
        wasm: &Wasm,
    ) -> anyhow::Result<Component> {
        let Some(dir) = &self.dir else {
            return Ok(Component::new(engine, wasm.bytes()?)?);
        };
        let digest = wasm.digest();
        let entry = format!("{}-{}", hex(&digest[..16]), self.engine_tag);
        let path = dir.join(format!("{entry}.cwasm"));
        (self.used.lock().unwrap_or_else(|e| e.into_inner())).insert(entry);
        match load_entry(engine, &path) {
            Ok(c) => {
                tracing::debug!(component = name, "loaded from compile cache");
                return Ok(c);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(component = name, "recompiling: cached artifact: {e}"),
        }
        let started = std::time::Instant::now();
        let artifact = engine.precompile_component(&wasm.bytes()?)?;
        tracing::info!(
            component = name,
            ms = started.elapsed().as_millis() as u64,
            "compiled"
        );
        match store(&path, &artifact) {
            // Mapped from the new entry, as a warm start would.
            Ok(()) => match load_entry(engine, &path) {
                Ok(c) => return Ok(c),
                Err(e) => tracing::debug!(component = name, "cannot load the new entry: {e}"),
            },
            Err(e) => tracing::warn!(component = name, "cannot write compile cache: {e}"),
        }
        // SAFETY: produced just now by this engine.
        Ok(unsafe { Component::deserialize(engine, &artifact)? })
    }
}

/// The component of entry `path`, mapped from the file after its checks
/// and its checksum held.
fn load_entry(engine: &Engine, path: &Path) -> std::io::Result<Component> {
    let (artifact, file) = read_entry(path, MAX_ARTIFACT)?;
    let (sum, _) = read_entry(&path.with_extension("sum"), SUM_LEN)?;
    if !checksum_holds(&sum, &entry_name(path), &artifact) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is corrupt (its checksum does not match)",
        ));
    }
    // Its use, for the pruning's "most recently used".
    let _ = file.set_modified(SystemTime::now());
    // The file already opened and checked, not whatever is at `path` now.
    let opened = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    let mapped = if opened.exists() { &opened } else { path };
    // SAFETY: only this user can have written the file (see the module
    // header), and the checksum proves it is whole: these are the bytes
    // this host wrote after compiling with an engine of the same tag.
    let component = unsafe { Component::deserialize_file(engine, mapped) }.or_else(|e| {
        // A cache on a `noexec` mount cannot be mapped executable: copy.
        tracing::debug!("cannot map {}, copying it: {e:#}", path.display());
        // SAFETY: as above, the same checked bytes.
        unsafe { Component::deserialize(engine, &artifact) }
    });
    component
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("rejected: {e}")))
}

/// What a `.sum` holds: the digest covers the entry's name (the
/// component's hash and the engine's tag) as well as the artifact, so the
/// two files of one entry copied over another's are refused rather than
/// run as the other component.
fn sum_of(name: &str, artifact: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0]);
    h.update(artifact);
    let mut sum = MAGIC.to_vec();
    sum.extend_from_slice(&h.finalize());
    sum
}

fn checksum_holds(sum: &[u8], name: &str, artifact: &[u8]) -> bool {
    sum == sum_of(name, artifact).as_slice()
}

/// `<component hash>-<engine tag>`, the name both files of an entry share.
fn entry_name(path: &Path) -> String {
    path.file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes atomically: a crash mid-write leaves no half file under the name.
/// The artifact first, its checksum last: an entry whose sum is missing or
/// belongs to another artifact is recompiled.
fn store(path: &Path, artifact: &[u8]) -> std::io::Result<()> {
    if artifact.len() as u64 > MAX_ARTIFACT {
        return Ok(());
    }
    write_file(path, artifact)?;
    write_file(
        &path.with_extension("sum"),
        &sum_of(&entry_name(path), artifact),
    )
}

/// Read-only for its owner too, so that a `cp` or `dd` over a mapped entry
/// fails rather than change code the server runs (see the module header);
/// a temporary file a failed write leaves is removed.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (tmp, mut file) = tempfile_in(dir)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o400);
    // Random, not the process id: servers in other PID namespaces share it.
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    let path = dir.join(format!(".tmp-{}", hex(&bytes)));
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

/// An entry's bytes and open file, if it is a regular file this user alone
/// could have written; a symlink is refused (`O_NOFOLLOW`), and the checks
/// are made on the opened file, so it cannot be swapped in between.
fn read_entry(path: &Path, max: u64) -> std::io::Result<(Vec<u8>, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
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
    check_owner(&meta)?;
    let bytes = crate::fsutil::read_opened(&file, &meta, path, max)?;
    Ok((bytes, file))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_guards_the_artifact_and_its_name() {
        let artifact = b"not really machine code".to_vec();
        let name = "00aa-0123456789abcdef";
        let sum = sum_of(name, &artifact);
        assert_eq!(sum.len() as u64, SUM_LEN);
        assert!(checksum_holds(&sum, name, &artifact));
        let mut changed = artifact.clone();
        changed[3] ^= 1;
        assert!(!checksum_holds(&sum, name, &changed));
        assert!(
            !checksum_holds(&sum, "00ab-0123456789abcdef", &artifact),
            "another entry's name"
        );
        assert!(!checksum_holds(&sum[..20], name, &artifact));
        assert!(!checksum_holds(b"short", name, &artifact));
        let mut old = b"MCPSSHC1".to_vec();
        old.extend_from_slice(&sum[MAGIC.len()..]);
        assert!(
            !checksum_holds(&old, name, &artifact),
            "another format's sum"
        );
    }

    #[test]
    fn an_entry_larger_than_its_limit_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.sum");
        std::fs::write(&path, [0u8; 41]).unwrap();
        let err = read_entry(&path, SUM_LEN).unwrap_err();
        assert!(err.to_string().contains("larger than 40 bytes"), "{err}");
        std::fs::write(&path, [0u8; 40]).unwrap();
        assert_eq!(read_entry(&path, SUM_LEN).unwrap().0.len(), 40);
        // A sparse file of 1 TB is refused from its size, not read.
        let big = std::fs::File::create(&path).unwrap();
        big.set_len(1 << 40).unwrap();
        assert!(read_entry(&path, MAX_ARTIFACT).is_err());
    }

    #[test]
    fn an_entry_is_written_read_only_and_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x-tag.cwasm");
        store(&path, b"artifact").unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["x-tag.cwasm", "x-tag.sum"]);
        for name in names {
            let meta = std::fs::metadata(dir.path().join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o400);
        }
        let (sum, _) = read_entry(&path.with_extension("sum"), SUM_LEN).unwrap();
        assert!(checksum_holds(&sum, "x-tag", b"artifact"));
    }
}
