//! The local side of uploads and downloads: the operator's transfer roots
//! (`--transfer-root DIR`, `transfer_roots` in config.toml), and the only
//! two ways a transfer touches a local file.
//!
//! With no root, transfers are off. A local path must be absolute and lie
//! inside a root once every symlink is resolved, so `..` and a symlink that
//! leads out are refused. The path is resolved, then the file is opened
//! without following a final symlink, and the opened file's own path (its
//! `/proc/self/fd` link) is checked again: a directory swapped for a
//! symlink between the check and the open is caught there.
//!
//! An upload reads a regular file (a FIFO or device is refused before a
//! byte is read). A download writes a temporary file in the destination's
//! directory (created exclusively, mode 0600, a name no one can guess) and
//! renames it over the destination only once the transfer is verified; a
//! failed or abandoned download removes it, and the old file stays.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::ssh::FileError;

/// The operator's transfer roots, resolved (symlinks and `..` gone) when
/// the server starts.
#[derive(Debug, Default)]
pub(crate) struct TransferRoots {
    roots: Vec<PathBuf>,
}

/// A download's temporary file, renamed over its destination by
/// [`PendingDownload::commit`] or removed when dropped.
#[derive(Debug)]
pub(crate) struct PendingDownload {
    pub(crate) file: File,
    temp: PathBuf,
    name: std::ffi::OsString,
    root: PathBuf,
    committed: bool,
}

impl TransferRoots {
    /// Resolves every root; a root that is missing or not a directory
    /// stops the start with its path.
    pub(crate) fn new(dirs: &[PathBuf]) -> anyhow::Result<Self> {
        let mut roots = Vec::new();
        for dir in dirs {
            let root = std::fs::canonicalize(dir)
                .with_context(|| format!("transfer root {}", dir.display()))?;
            if !root.is_dir() {
                anyhow::bail!("transfer root {} is not a directory", dir.display());
            }
            roots.push(root);
        }
        Ok(Self { roots })
    }

    /// Transfers are off: the message says how to enable them.
    fn check_enabled(&self) -> Result<(), FileError> {
        if self.roots.is_empty() {
            return Err(FileError::Unsupported(
                "uploads and downloads are off on this server: the operator enables them with \
                 --transfer-root DIR (repeatable) or transfer_roots = [\"DIR\"] in config.toml, \
                 and local paths must then lie inside one of those directories"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The root that holds the resolved `path`.
    fn root_of(&self, given: &str, path: &Path) -> Result<&Path, FileError> {
        self.roots
            .iter()
            .find(|r| path.starts_with(r))
            .map(PathBuf::as_path)
            .ok_or_else(|| {
                FileError::Local(format!(
                    "{given} is outside the transfer roots {:?} (it resolves to {})",
                    self.roots,
                    path.display()
                ))
            })
    }

    /// Opens the local regular file `given` for an upload; returns it and
    /// its resolved path.
    pub(crate) fn open_upload(&self, given: &str) -> Result<(File, PathBuf), FileError> {
        self.check_enabled()?;
        let path = resolve(given, absolute(given)?)?;
        let root = self.root_of(given, &path)?.to_path_buf();
        // O_NONBLOCK: opening a FIFO with no writer would otherwise wait.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| local(given, "cannot open", &e))?;
        let meta = file
            .metadata()
            .map_err(|e| local(given, "cannot stat", &e))?;
        if !meta.file_type().is_file() {
            return Err(FileError::Local(format!(
                "{given} is not a regular file ({})",
                kind(&meta)
            )));
        }
        // Another name of the same file may lie outside every root: a hard
        // link is a way out that no path check sees.
        if std::os::unix::fs::MetadataExt::nlink(&meta) > 1 {
            return Err(FileError::Local(format!(
                "{given} has {} hard links, and one may lie outside the transfer roots; \
                 copy it to upload it",
                std::os::unix::fs::MetadataExt::nlink(&meta)
            )));
        }
        opened_inside(&file, given, &root)?;
        Ok((file, path))
    }

    /// Creates the temporary file of a download to `given`, in its
    /// directory, which must exist inside a root.
    pub(crate) fn create_download(&self, given: &str) -> Result<PendingDownload, FileError> {
        self.check_enabled()?;
        let path = absolute(given)?;
        // `Path` drops a trailing `/` or `/.`, which would turn "into this
        // directory" into "replace this file".
        if given.ends_with('/') || given.ends_with("/.") {
            return Err(FileError::Local(format!(
                "{given} names a directory: give the path of the file to write"
            )));
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(FileError::Local(format!("{given} does not name a file")));
        };
        let dir = resolve(given, parent)?;
        let root = self.root_of(given, &dir)?.to_path_buf();
        let dest = dir.join(name);
        match std::fs::symlink_metadata(&dest) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(FileError::Local(format!(
                    "{given} is a symbolic link; refusing to replace it"
                )));
            }
            Ok(m) if m.is_dir() => {
                return Err(FileError::Local(format!("{given} is a directory")));
            }
            Ok(m) if !m.is_file() => {
                return Err(FileError::Local(format!(
                    "{given} exists and is not a regular file ({})",
                    kind(&m)
                )));
            }
            _ => {}
        }
        let temp = dir.join(format!(
            ".{}.mcpssh-{}.part",
            name.to_string_lossy(),
            random_hex()?
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)
            .map_err(|e| local(given, "cannot create a temporary file beside", &e))?;
        let pending = PendingDownload {
            file,
            temp,
            name: name.to_os_string(),
            root,
            committed: false,
        };
        opened_inside(&pending.file, given, &pending.root)?;
        Ok(pending)
    }
}

impl PendingDownload {
    /// Renames the finished temporary file over the destination, in the
    /// directory the temporary file really is in; returns the
    /// destination's path.
    pub(crate) fn commit(mut self, given: &str) -> Result<PathBuf, FileError> {
        let real = opened_inside(&self.file, given, &self.root)?;
        let dir = real.parent().unwrap_or(&self.root).to_path_buf();
        let dest = dir.join(&self.name);
        std::fs::rename(&real, &dest).map_err(|e| local(given, "cannot rename onto", &e))?;
        self.committed = true;
        Ok(dest)
    }
}

impl Drop for PendingDownload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

fn absolute(given: &str) -> Result<PathBuf, FileError> {
    if given.contains('\0') {
        return Err(FileError::Local("a local path must not contain NUL".into()));
    }
    let path = PathBuf::from(given);
    if !path.is_absolute() {
        return Err(FileError::Local(format!(
            "local path {given:?} is relative: give an absolute path inside a transfer root"
        )));
    }
    Ok(path)
}

/// `path` with every symlink and `..` resolved.
fn resolve(given: &str, path: impl AsRef<Path>) -> Result<PathBuf, FileError> {
    std::fs::canonicalize(path.as_ref()).map_err(|e| local(given, "cannot resolve", &e))
}

/// The path `file` was really opened at, which must lie inside `root`.
fn opened_inside(file: &File, given: &str, root: &Path) -> Result<PathBuf, FileError> {
    use std::os::fd::AsRawFd;
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(|e| local(given, "cannot check where it was opened", &e))?;
    if !real.starts_with(root) {
        return Err(FileError::Local(format!(
            "{given} was opened at {}, outside the transfer root {} (a symlink changed under it)",
            real.display(),
            root.display()
        )));
    }
    Ok(real)
}

fn local(given: &str, what: &str, e: &io::Error) -> FileError {
    let why = if e.raw_os_error() == Some(libc::ELOOP) {
        "it is a symbolic link, which is not followed".to_string()
    } else {
        e.to_string()
    };
    FileError::Local(format!("{what} local file {given}: {why}"))
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}

fn random_hex() -> Result<String, FileError> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|e| FileError::Local(format!("no randomness for a temporary name: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(dir: &Path) -> TransferRoots {
        TransferRoots::new(&[dir.to_path_buf()]).unwrap()
    }

    #[test]
    fn no_root_means_transfers_are_off_and_the_message_says_how_to_enable_them() {
        let err = TransferRoots::default()
            .open_upload("/etc/hostname")
            .unwrap_err();
        assert!(
            matches!(&err, FileError::Unsupported(m) if m.contains("--transfer-root")),
            "{err}"
        );
    }

    #[test]
    fn uploads_outside_a_root_through_dot_dot_or_a_symlink_are_refused() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(base.path().join("secret"), "s").unwrap();
        std::fs::write(root.join("ok"), "fine").unwrap();
        std::os::unix::fs::symlink(base.path().join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(root.join("ok"), root.join("inside")).unwrap();
        let r = roots(&root);
        let at = |p: &Path| p.display().to_string();
        assert!(r.open_upload(&at(&root.join("ok"))).is_ok());
        assert!(r.open_upload(&at(&root.join("inside"))).is_ok());
        for bad in [
            at(&root.join("../secret")),
            at(&root.join("escape")),
            at(&base.path().join("secret")),
        ] {
            let err = r.open_upload(&bad).unwrap_err();
            assert!(
                matches!(&err, FileError::Local(m) if m.contains("outside")),
                "{bad}: {err}"
            );
        }
        assert!(matches!(r.open_upload("ok"), Err(FileError::Local(m)) if m.contains("relative")));
        let err = r.open_upload(&at(&root)).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_download_lands_only_when_committed_and_never_through_a_symlink() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let r = roots(&root);
        let dest = root.join("out.bin");
        let given = dest.display().to_string();
        let pending = r.create_download(&given).unwrap();
        drop(pending);
        assert_eq!(
            std::fs::read_dir(&root).unwrap().count(),
            0,
            "temp file left behind"
        );

        let mut pending = r.create_download(&given).unwrap();
        std::io::Write::write_all(&mut pending.file, b"data").unwrap();
        assert!(!dest.exists());
        assert_eq!(
            pending.commit(&given).unwrap(),
            std::fs::canonicalize(&dest).unwrap()
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"data");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);

        std::os::unix::fs::symlink(base.path().join("elsewhere"), root.join("link")).unwrap();
        let err = r
            .create_download(&root.join("link").display().to_string())
            .unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        std::os::unix::fs::symlink(base.path(), root.join("up")).unwrap();
        let err = r
            .create_download(&root.join("up/x").display().to_string())
            .unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
    }
}
