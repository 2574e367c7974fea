//! Filesystem primitives for every file the server reads because a user or
//! a config named it, and for the private files it writes.
//!
//! A path from a tool call or a config file may name `/dev/zero`,
//! `/dev/stdin`, a FIFO or a huge file: [`read_regular`] opens without
//! blocking, checks the opened file (not the path, which could be swapped)
//! and reads at most a cap, so no such path can grow the server, block a
//! thread forever or read the JSON-RPC pipe.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Cap for a private key or a certificate: real ones are a few KiB.
pub(crate) const KEY_FILE_CAP: u64 = 64 * 1024;
/// Cap for a text config (ssh_config, manifests, known_hosts, TOML).
pub(crate) const CONFIG_FILE_CAP: u64 = 4 * 1024 * 1024;

/// The contents of `path`, which must be a regular file of at most `cap`
/// bytes. Errors name the path: "/dev/zero is not a regular file (a
/// character device)", "... is larger than 65536 bytes".
pub(crate) fn read_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    // O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    // `UserKnownHostsFile /dev/null`, `ssh -F /dev/null`: OpenSSH's idiom
    // for "no such file", which reads as empty.
    if meta.file_type().is_char_device() && meta.rdev() == libc::makedev(1, 3) {
        return Ok(Vec::new());
    }
    read_opened(&file, &meta, path, cap)
}

/// The contents of `file`, opened from `path` and of metadata `meta`
/// (checked by the caller as it needs, before anything is read), which
/// must be a regular file of at most `cap` bytes.
pub(crate) fn read_opened(
    file: &File,
    meta: &std::fs::Metadata,
    path: &Path,
    cap: u64,
) -> io::Result<Vec<u8>> {
    if !meta.file_type().is_file() {
        return Err(not_regular(path, meta));
    }
    if meta.len() > cap {
        return Err(too_large(path, cap));
    }
    let mut out = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow after the fstat: the cap holds whatever it does.
    file.take(cap + 1).read_to_end(&mut out)?;
    if out.len() as u64 > cap {
        return Err(too_large(path, cap));
    }
    Ok(out)
}

/// [`read_regular`] for text; invalid UTF-8 is an `InvalidData` error.
pub(crate) fn read_regular_string(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_regular(path, cap)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not UTF-8 text", path.display()),
        )
    })
}

/// Whether `e` came from [`read_regular`] refusing the file itself (a
/// device, FIFO, directory or one too large) rather than from the OS.
pub(crate) fn is_refusal(e: &io::Error) -> bool {
    // The OS's own errors of these kinds (EINVAL reading `/proc/self/pagemap`)
    // do not name the path.
    e.raw_os_error().is_none()
        && matches!(
            e.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::FileTooLarge | io::ErrorKind::InvalidData
        )
}

fn not_regular(path: &Path, meta: &std::fs::Metadata) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is not a regular file ({})",
            path.display(),
            kind_of(meta)
        ),
    )
}

fn too_large(path: &Path, cap: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("{} is larger than {cap} bytes", path.display()),
    )
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}

/// Opens `path` for appending, creating it with mode 0600 (and a missing
/// parent directory with mode 0700).
pub(crate) fn open_private_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        create_private_dir(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.append(true).create(true).mode(0o600);
    opts.open(path)
}

/// Opens a log only this user may read, for appending: created 0600; a
/// symlink at `path` is refused (it could point the log at any file this
/// user can write); an existing file must be a regular file owned by the
/// effective user, and a wider mode is narrowed to 0600 with a warning.
pub(crate) fn open_owned_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        create_private_dir(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symbolic link; refusing to follow it",
                        path.display()
                    ),
                )
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(not_regular(path, &meta));
    }
    if meta.uid() != effective_uid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {}, not by this server's user (uid {})",
                path.display(),
                meta.uid(),
                effective_uid()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "{} had mode {mode:04o}: narrowing it to 0600",
            path.display()
        );
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// The effective user id of this process.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `dir` (and parents) readable by its owner only.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_fifos_and_big_files_are_refused_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let big = dir.path().join("big");
        File::create(&big).unwrap().set_len(1 << 20).unwrap();
        for (path, why) in [
            (Path::new("/dev/zero"), "character device"),
            (dir.path(), "directory"),
            (&fifo, "FIFO"),
            (&big, "larger than"),
        ] {
            let err = read_regular(path, KEY_FILE_CAP).unwrap_err();
            assert!(is_refusal(&err), "{err}");
            assert!(err.to_string().contains(why), "{err}");
        }
        assert_eq!(read_regular(Path::new("/dev/null"), 1).unwrap(), b"");
        let small = dir.path().join("small");
        std::fs::write(&small, "hello").unwrap();
        assert_eq!(read_regular(&small, 5).unwrap(), b"hello");
    }

    #[test]
    fn a_log_behind_a_symlink_is_refused_and_a_wide_mode_narrowed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = open_owned_log(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");

        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        open_owned_log(&target).unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
