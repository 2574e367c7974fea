//! The SFTP backend: one client per connection on a long-lived subsystem
//! channel, shared by concurrent calls (russh-sftp matches replies by
//! request id).
//!
//! Large reads and writes are pipelined: up to [`IN_FLIGHT`] requests of
//! the server's largest size (`limits@openssh.com`, else 32 KiB) are
//! outstanding at once, so a transfer is not one round trip per chunk.
//! Writes go to a temporary file beside the target, created exclusively
//! with mode 0600, then renamed over it: with `posix-rename@openssh.com`
//! when the server offers it (atomic), else by removing the target and
//! renaming (the only rename SFTPv3 has refuses to replace; a reader can
//! then see the name missing for a moment).

use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::{FuturesOrdered, StreamExt};
use russh::client::Msg;
use russh::{Channel, ChannelMsg};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;

use super::common::{self, Ctl, Sum};
use super::stream::{Collect, Sink};
use super::{FileError, FileKind, FileStat, parse};
use crate::ssh::SshError;

/// Requests outstanding at once in a transfer.
const IN_FLIGHT: usize = 16;
/// The largest read or write asked for, under OpenSSH's 256 KiB packets.
const MAX_IO: u64 = 255 * 1024;
/// What every SFTP server takes.
const MIN_IO: u64 = 32 * 1024;
/// Closing a handle or removing a temporary file after a failure or a
/// cancel takes at most this long.
const CLEANUP: std::time::Duration = std::time::Duration::from_secs(10);
/// One request's answer: generous, the call's own deadline bounds it all.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// A connection's SFTP client.
pub(crate) struct Sftp {
    raw: RawSftpSession,
    session: String,
    posix_rename: bool,
    io_len: u64,
    dead: AtomicBool,
    /// The channel slot it holds while open (see `manager::files`).
    _slot: OwnedSemaphorePermit,
}

mod write;

/// A file written to its temporary name, not yet in place.
pub(crate) struct Staged {
    pub(crate) temp: String,
    pub(crate) bytes: u64,
    pub(crate) sha256: [u8; 32],
}

/// How long closing a refused SFTP channel may take.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Sftp {
    /// Starts the SFTP subsystem on `channel`. `None`: the server has
    /// none, or what it started does not speak SFTP.
    pub(crate) async fn open(
        mut channel: Channel<Msg>,
        slot: OwnedSemaphorePermit,
        session: String,
    ) -> Result<Option<Self>, SshError> {
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| SshError::Channel(format!("{session}: cannot request SFTP: {e}")))?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(
                    ChannelMsg::Failure
                    | ChannelMsg::Close
                    | ChannelMsg::Eof
                    | ChannelMsg::ExitStatus { .. },
                )
                | None => {
                    // Refused, the channel stays open at the server and
                    // holds one of its MaxSessions until it is closed.
                    let _ = tokio::time::timeout(CLOSE_WAIT, channel.close()).await;
                    return Ok(None);
                }
                Some(_) => {}
            }
        }
        let config = russh_sftp::client::Config {
            request_timeout_secs: REQUEST_TIMEOUT_SECS,
            ..russh_sftp::client::Config::default()
        };
        let mut raw = RawSftpSession::new_with_config(channel.into_stream(), config);
        // Dropbear starts a missing sftp-server as a command that fails:
        // the channel closes and init fails (dropping the stream closes
        // our side).
        let Ok(version) = raw.init().await else {
            return Ok(None);
        };
        let has = |name: &str| version.extensions.contains_key(name);
        let mut io_len = MIN_IO;
        if has("limits@openssh.com")
            && let Ok(limits) = raw.limits().await
        {
            let limits = russh_sftp::client::rawsession::Limits::from(limits);
            let fits = |l: Option<u64>| l.unwrap_or(MIN_IO).clamp(MIN_IO, MAX_IO);
            io_len = fits(limits.read_len).min(fits(limits.write_len));
            raw.set_limits(limits);
        }
        tracing::debug!(%session, io_len, "SFTP client started");
        Ok(Some(Self {
            raw,
            posix_rename: has("posix-rename@openssh.com"),
            session,
            io_len,
            dead: AtomicBool::new(false),
            _slot: slot,
        }))
    }

    pub(crate) fn alive(&self) -> bool {
        !self.dead.load(Ordering::Relaxed)
    }

    /// Maps an SFTP error on `path`; a transport error marks the client
    /// dead, so the next call opens a new one.
    fn err(&self, path: &str, what: &str, e: SftpError) -> FileError {
        let s = &self.session;
        match e {
            SftpError::Status(st) => match st.status_code {
                StatusCode::NoSuchFile => common::not_found(s, path),
                StatusCode::PermissionDenied => common::denied(s, path),
                StatusCode::OpUnsupported => FileError::Unsupported(format!(
                    "{s}: {what} {path}: the SFTP server does not support it"
                )),
                // sshd's sftp-server says "Failure" for every other errno;
                // its message is the strerror (never file contents).
                _ => parse::classify(s, path, &format!("{what} {path}"), &st.error_message),
            },
            SftpError::Timeout => {
                self.dead.store(true, Ordering::Relaxed);
                FileError::Ssh(SshError::Timeout(format!(
                    "{s}: {what} {path}: the SFTP server did not answer in {REQUEST_TIMEOUT_SECS} s"
                )))
            }
            SftpError::Limited(m) => {
                FileError::Ssh(SshError::Other(format!("{s}: {what} {path}: {m}")))
            }
            other => {
                self.dead.store(true, Ordering::Relaxed);
                FileError::Ssh(SshError::ConnectionLost(format!(
                    "{s}: {what} {path}: the SFTP session ended ({other}); it is reopened on the \
                     next call"
                )))
            }
        }
    }

    /// `lstat` (or `stat` when `follow`) of `path`, with a symlink's target.
    pub(crate) async fn stat(&self, path: &str, follow: bool) -> Result<FileStat, FileError> {
        let attrs = if follow {
            self.raw.stat(path).await
        } else {
            self.raw.lstat(path).await
        }
        .map_err(|e| self.err(path, "stat", e))?
        .attrs;
        let mut stat = to_stat(&attrs);
        if stat.kind == FileKind::Symlink {
            stat.link_target = match self.raw.readlink(path).await {
                Ok(name) => name.files.into_iter().next().map(|f| f.filename),
                Err(e) => return Err(self.err(path, "readlink", e)),
            };
        }
        Ok(stat)
    }

    /// Whether `path` exists; other errors are errors.
    async fn exists(&self, path: &str, follow: bool) -> Result<Option<FileStat>, FileError> {
        match self.stat(path, follow).await {
            Ok(s) => Ok(Some(s)),
            Err(FileError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens `path` for reading after checking it is a regular file (a
    /// FIFO would block the server's read).
    async fn open_regular(&self, path: &str) -> Result<(String, FileStat), FileError> {
        let attrs = self
            .raw
            .stat(path)
            .await
            .map_err(|e| self.err(path, "stat", e))?
            .attrs;
        let stat = to_stat(&attrs);
        match stat.kind {
            FileKind::File => {}
            FileKind::Directory => return Err(common::is_dir(&self.session, path)),
            _ => {
                let kind = parse::kind_name(attrs.permissions.unwrap_or(0));
                return Err(common::not_regular(&self.session, path, kind));
            }
        }
        let handle = self
            .raw
            .open(path, OpenFlags::READ, FileAttributes::empty())
            .await
            .map_err(|e| self.err(path, "open", e))?
            .handle;
        Ok((handle, stat))
    }

    /// Closes a handle, within [`CLEANUP`] even after a cancel.
    async fn close(&self, handle: String, path: &str) -> Result<(), FileError> {
        match tokio::time::timeout(CLEANUP, self.raw.close(handle)).await {
            Ok(r) => r.map(drop).map_err(|e| self.err(path, "close", e)),
            Err(_) => Err(self.err(path, "close", SftpError::Timeout)),
        }
    }

    /// Up to `max` bytes of `path` from `offset`.
    pub(crate) async fn read(
        &self,
        path: &str,
        offset: u64,
        max: u64,
        ctl: &Ctl,
    ) -> Result<(Vec<u8>, FileStat, bool), FileError> {
        let (handle, stat) = self.open_regular(path).await?;
        let mut data = Collect {
            out: Vec::new(),
            limit: usize::MAX,
        };
        // Past the size the file had when opened, a refusal means there is
        // nothing to read: sftp-server seeks first, and Linux refuses a
        // seek past the file system's largest file ("Bad message" at 1e15
        // on ext4). No file has a byte past 2^63 - 1 (`off_t`). A size of
        // 0 says nothing (/proc): its errors stay, unless it is empty.
        let past_end = offset > i64::MAX as u64 || stat.is_past(offset);
        let res = ctl
            .guard(
                &self.session,
                "read",
                self.read_pipelined(&handle, path, (offset, past_end), max, &mut data),
            )
            .await;
        let res = match res {
            Err(_) if stat.size == 0 && offset > 0 && self.reads_nothing(&handle).await => {
                Ok((0, true))
            }
            r => r,
        };
        let closed = self.close(handle, path).await;
        let (got, eof) = res?;
        closed?;
        // Or a read that found nothing there.
        let eof = eof || (got == 0 && max > 0) || stat.reached_by(offset, got);
        Ok((data.out, stat, eof))
    }

    /// Whether an open file has nothing at its start: empty, whatever its
    /// size said.
    async fn reads_nothing(&self, handle: &str) -> bool {
        match self.raw.read(handle, 0, 1).await {
            Ok(d) => d.data.is_empty(),
            Err(SftpError::Status(st)) => st.status_code == StatusCode::Eof,
            Err(_) => false,
        }
    }

    /// Streams `remote` into `local`, hashing into `sum`; returns the
    /// bytes read.
    pub(crate) async fn download<W: AsyncWrite + Unpin>(
        &self,
        remote: &str,
        local: &mut W,
        sum: &mut Sum,
        ctl: &Ctl,
    ) -> Result<u64, FileError> {
        let (handle, stat) = self.open_regular(remote).await?;
        sum.report.set_total(Some(stat.size));
        let res = ctl
            .guard(&self.session, "download", async {
                let mut sink = ToLocal { local, sum };
                let got = self
                    .read_pipelined(&handle, remote, (0, false), u64::MAX, &mut sink)
                    .await?
                    .0;
                local
                    .flush()
                    .await
                    .map_err(|e| FileError::Local(format!("writing the local file: {e}")))?;
                Ok(got)
            })
            .await;
        let closed = self.close(handle, remote).await;
        let got = res?;
        closed?;
        Ok(got)
    }

    /// Reads `[offset, offset + limit)` of an open file in order, with
    /// [`IN_FLIGHT`] requests outstanding, handing each chunk to `sink`.
    /// Returns the bytes read and whether the end of the file was seen. A
    /// short read (not a regular file, or the file shrank) restarts the
    /// pipeline where it stopped. With `past_end`, a status the server
    /// answers a read with is the end of the file.
    async fn read_pipelined<S: Sink>(
        &self,
        handle: &str,
        path: &str,
        (offset, past_end): (u64, bool),
        limit: u64,
        sink: &mut S,
    ) -> Result<(u64, bool), FileError> {
        let end = offset.saturating_add(limit);
        let mut done = 0u64;
        'window: loop {
            let mut next = offset + done;
            let mut pending = FuturesOrdered::new();
            loop {
                while pending.len() < IN_FLIGHT && next < end {
                    let len = self.io_len.min(end - next) as u32;
                    let at = next;
                    pending.push_back(async move { (len, self.raw.read(handle, at, len).await) });
                    next += u64::from(len);
                }
                let Some((len, result)) = pending.next().await else {
                    return Ok((done, false));
                };
                match result {
                    Ok(d) if d.data.is_empty() => return Ok((done, true)),
                    Ok(d) => {
                        let n = d.data.len() as u64;
                        done += n;
                        sink.data(&d.data).await?;
                        if n < u64::from(len) {
                            continue 'window;
                        }
                    }
                    Err(SftpError::Status(st)) if st.status_code == StatusCode::Eof || past_end => {
                        return Ok((done, true));
                    }
                    Err(e) => return Err(self.err(path, "read", e)),
                }
            }
        }
    }

    /// The first `max` entries of `dir` by name, with `.` and `..` left
    /// out, and how many more there are.
    pub(crate) async fn list(
        &self,
        dir: &str,
        max: usize,
        ctl: &Ctl,
    ) -> Result<(Vec<(String, FileStat)>, u64), FileError> {
        let s = &self.session;
        match self.stat(dir, true).await?.kind {
            FileKind::Directory => {}
            _ => return Err(common::not_dir(s, dir)),
        }
        let handle = self
            .raw
            .opendir(dir)
            .await
            .map_err(|e| self.err(dir, "open directory", e))?
            .handle;
        let res = ctl
            .guard(s, "list", async {
                let mut out = Vec::new();
                loop {
                    match self.raw.readdir(handle.as_str()).await {
                        Ok(name) => {
                            for f in name.files {
                                if f.filename == "." || f.filename == ".." {
                                    continue;
                                }
                                let stat = to_stat(&f.attrs);
                                out.push((f.filename, stat));
                            }
                        }
                        Err(SftpError::Status(st)) if st.status_code == StatusCode::Eof => {
                            return Ok(out);
                        }
                        Err(e) => return Err(self.err(dir, "list", e)),
                    }
                }
            })
            .await;
        let closed = self.close(handle, dir).await;
        let mut out = res?;
        closed?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let omitted = out.len().saturating_sub(max) as u64;
        out.truncate(max);
        // readdir gives lstat attributes; link targets need a round trip
        // each, sent together.
        let mut links = FuturesOrdered::new();
        for (i, (name, stat)) in out.iter().enumerate() {
            if stat.kind == FileKind::Symlink {
                let full = join(dir, name);
                links.push_back(async move { (i, self.raw.readlink(full).await) });
            }
        }
        let links: Vec<_> = links.collect().await;
        for (i, r) in links {
            if let (Ok(name), Some(entry)) = (r, out.get_mut(i)) {
                entry.1.link_target = name.files.into_iter().next().map(|f| f.filename);
            }
        }
        Ok((out, omitted))
    }
}

pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn to_stat(attrs: &FileAttributes) -> FileStat {
    let raw = attrs.permissions.unwrap_or(0);
    FileStat {
        kind: parse::kind_of(raw),
        size: attrs.size.unwrap_or(0),
        mode: raw & 0o7777,
        mtime: attrs.mtime.map(u64::from),
        link_target: None,
    }
}

/// Downloaded bytes: hashed, then written to the local file.
struct ToLocal<'a, W> {
    local: &'a mut W,
    sum: &'a mut Sum,
}

impl<W: AsyncWrite + Unpin> Sink for ToLocal<'_, W> {
    async fn data(&mut self, data: &[u8]) -> Result<(), FileError> {
        self.sum.add(data);
        self.local
            .write_all(data)
            .await
            .map_err(|e| FileError::Local(format!("writing the local file: {e}")))
    }
}

impl Sink for Sum {
    async fn data(&mut self, data: &[u8]) -> Result<(), FileError> {
        self.add(data);
        Ok(())
    }
}
