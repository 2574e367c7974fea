//! The remote side's sha256 of a transfer, checked against ours: of the
//! temporary file after an upload (before it is renamed into place), of
//! the file beside a download. `None` wherever the host has no hasher or
//! runs no commands (an SFTP-only account): then only the size is
//! verified.

use super::FileError;
use super::common::Ctl;
use super::shell::Shell;
use crate::ssh::SshError;

/// The remote sha256 of `path` (of `size` bytes, when known), through
/// exec. A cancel or the deadline still ends the call; other failures mean
/// unverified.
pub(super) async fn remote_hash(
    sh: &Shell<'_>,
    path: &str,
    size: Option<u64>,
    ctl: &Ctl,
) -> Result<Option<[u8; 32]>, FileError> {
    match sh.sha256(path, size, ctl).await {
        Ok(h) => Ok(h),
        Err(e @ FileError::Ssh(SshError::Cancelled(_) | SshError::Timeout(_))) => Err(e),
        Err(e) => {
            tracing::info!(session = %sh.session, "no remote sha256, size verified only: {e}");
            Ok(None)
        }
    }
}

pub(super) fn mismatch(session: &str, path: &str) -> FileError {
    FileError::Ssh(SshError::Other(format!(
        "{session}: {path}: the sha256 computed on the remote side differs from the bytes sent \
         or received: the transfer is corrupt and was not kept"
    )))
}
