//! Writes over SFTP: the temporary file, pipelined writes, the checks
//! before the rename, and the rename itself.

use futures::stream::{FuturesUnordered, StreamExt};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::io::AsyncRead;

use super::super::common::{self, Ctl, Feed, Sum};
use super::super::{FileError, FileKind};
use super::{CLEANUP, IN_FLIGHT, Sftp, Staged};
use crate::ssh::SshError;

impl Sftp {
    /// Creates missing directories of `dir`, like `mkdir -p`.
    async fn mkdir_p(&self, dir: &str) -> Result<(), FileError> {
        let mut prefix = String::new();
        let absolute = dir.starts_with('/');
        for part in dir.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if !prefix.is_empty() || absolute {
                prefix.push('/');
            }
            prefix.push_str(part);
            match self.exists(&prefix, true).await? {
                Some(s) if s.kind == FileKind::Directory => continue,
                Some(_) => return Err(common::not_dir(&self.session, &prefix)),
                None => {}
            }
            if let Err(e) = self
                .raw
                .mkdir(prefix.as_str(), FileAttributes::empty())
                .await
            {
                // Someone else may have made it meanwhile.
                if !matches!(self.exists(&prefix, true).await?, Some(s) if s.kind == FileKind::Directory)
                {
                    return Err(self.err(&prefix, "mkdir", e));
                }
            }
        }
        Ok(())
    }

    /// Checks where `path` goes and writes `feed` to a temporary file
    /// beside it. The temporary file is removed on any failure.
    pub(crate) async fn stage<R: AsyncRead + Unpin>(
        &self,
        path: &str,
        feed: &mut Feed<R>,
        create_parents: bool,
        ctl: &Ctl,
    ) -> Result<Staged, FileError> {
        let s = &self.session;
        let (dir, _) = common::split_path(s, path)?;
        match self.exists(dir, true).await? {
            Some(st) if st.kind == FileKind::Directory => {}
            Some(_) => return Err(common::not_dir(s, dir)),
            None if create_parents => self.mkdir_p(dir).await?,
            None => return Err(common::parent_not_found(s, path, dir)),
        }
        if let Some(st) = self.exists(path, true).await?
            && st.kind == FileKind::Directory
        {
            return Err(common::is_dir(s, path));
        }
        let temp = common::temp_name(dir);
        let attrs = FileAttributes {
            permissions: Some(0o600),
            ..FileAttributes::empty()
        };
        let handle = self
            .raw
            .open(
                temp.as_str(),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE,
                attrs,
            )
            .await
            .map_err(|e| self.err(path, "create a temporary file for", e))?
            .handle;
        let written = ctl
            .guard(s, "write", self.write_pipelined(&handle, path, feed))
            .await;
        // A close can report what the writes could not (a full disk on
        // NFS).
        let closed = self.close(handle, path).await;
        let checked = match (written, closed) {
            (Ok(n), Ok(())) => self.check_size(&temp, path, n).await,
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        };
        match checked {
            Ok(bytes) => Ok(Staged {
                temp,
                bytes,
                sha256: feed.sha256(),
            }),
            Err(e) => {
                self.abort(&temp).await;
                Err(e)
            }
        }
    }

    async fn check_size(&self, temp: &str, path: &str, expected: u64) -> Result<u64, FileError> {
        let size = self.stat(temp, false).await?.size;
        if size != expected {
            return Err(FileError::Ssh(SshError::Other(format!(
                "{}: writing {path}: the server stored {size} bytes of {expected}",
                self.session
            ))));
        }
        Ok(size)
    }

    /// Writes all of `feed` at increasing offsets, [`IN_FLIGHT`] requests
    /// outstanding.
    async fn write_pipelined<R: AsyncRead + Unpin>(
        &self,
        handle: &str,
        path: &str,
        feed: &mut Feed<R>,
    ) -> Result<u64, FileError> {
        let mut pending = FuturesUnordered::new();
        let mut offset = 0u64;
        let mut more = true;
        loop {
            while more && pending.len() < IN_FLIGHT {
                match feed.next(self.io_len as usize).await? {
                    Some(chunk) => {
                        let at = offset;
                        offset += chunk.len() as u64;
                        pending.push(self.raw.write(handle, at, chunk));
                    }
                    None => more = false,
                }
            }
            match pending.next().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(self.err(path, "write", e)),
                None if !more => return Ok(offset),
                None => {}
            }
        }
    }

    /// Removes a temporary file, best effort (logged).
    pub(crate) async fn abort(&self, temp: &str) {
        let removed = tokio::time::timeout(CLEANUP, self.raw.remove(temp)).await;
        if !matches!(removed, Ok(Ok(_))) {
            tracing::warn!(session = %self.session, %temp, "could not remove a temporary file");
        }
    }

    /// Puts a staged file in place: checks `if_match` against the current
    /// content, sets the mode (given, else the current file's, else 0644),
    /// renames. Returns whether the file was created. The caller removes
    /// the temporary file when this fails. `ctl`'s cancel is heeded until
    /// the mode and the rename (the caller's guard may bound those).
    pub(crate) async fn commit(
        &self,
        staged: &Staged,
        path: &str,
        mode: Option<u32>,
        if_match: Option<&[u8; 32]>,
        ctl: &Ctl,
    ) -> Result<bool, FileError> {
        let s = &self.session;
        let current = self.exists(path, true).await?;
        if current
            .as_ref()
            .is_some_and(|c| c.kind == FileKind::Directory)
        {
            return Err(common::is_dir(s, path));
        }
        if let Some(want) = if_match {
            if current.is_none() {
                return Err(common::conflict(s, path, true));
            }
            // The race left: a write between this hash and the rename is
            // overwritten. SFTP has no compare-and-swap.
            let (handle, _) = self.open_regular(path).await?;
            let mut sum = Sum::new(common::Reporter::new(None, None));
            let res = ctl
                .guard(
                    s,
                    "hash",
                    self.read_pipelined(&handle, path, (0, false), u64::MAX, &mut sum),
                )
                .await;
            let closed = self.close(handle, path).await;
            res?;
            closed?;
            if &sum.sha256() != want {
                return Err(common::conflict(s, path, false));
            }
        }
        // A cancel is heeded up to here; the rest is one round trip each,
        // and a rename cut off would leave its outcome unknown.
        if ctl.cancel.is_cancelled() {
            return Err(common::cancelled(s, "write"));
        }
        let mode = mode.or(current.as_ref().map(|c| c.mode)).unwrap_or(0o644) & 0o7777;
        let attrs = FileAttributes {
            permissions: Some(mode),
            ..FileAttributes::empty()
        };
        self.raw
            .setstat(staged.temp.as_str(), attrs)
            .await
            .map_err(|e| self.err(path, "set the mode of", e))?;
        self.rename(&staged.temp, path, current.is_some()).await?;
        Ok(current.is_none())
    }

    async fn rename(&self, temp: &str, path: &str, exists: bool) -> Result<(), FileError> {
        if self.posix_rename {
            let mut data = Vec::with_capacity(temp.len() + path.len() + 8);
            for s in [temp, path] {
                data.extend_from_slice(&(s.len() as u32).to_be_bytes());
                data.extend_from_slice(s.as_bytes());
            }
            return match self.raw.extended("posix-rename@openssh.com", data).await {
                Ok(Packet::Status(st)) if st.status_code == StatusCode::Ok => Ok(()),
                Ok(Packet::Status(st)) => Err(self.err(path, "rename to", SftpError::Status(st))),
                Ok(_) => Err(self.err(path, "rename to", SftpError::UnexpectedPacket)),
                Err(e) => Err(self.err(path, "rename to", e)),
            };
        }
        if exists {
            // SFTPv3's rename refuses an existing target.
            self.raw
                .remove(path)
                .await
                .map_err(|e| self.err(path, "replace", e))?;
        }
        self.raw
            .rename(temp, path)
            .await
            .map(drop)
            .map_err(|e| self.err(path, "rename to", e))
    }
}
