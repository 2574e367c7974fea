//! What the file operations need of the session table: the connection's
//! SFTP client (opened on first use, cached, reopened when it died), and
//! exec channels for the fallback.
//!
//! The SFTP channel is long-lived, so it holds one of the connection's
//! command slots for as long as it is open: the connection never has more
//! channels than `channels_per_connection` plus the stop reserve (within
//! sshd's `MaxSessions`), and commands keep every other slot. It takes that
//! slot the way a command does (waiting its turn), so it cannot starve
//! commands either; it is closed, and the slot freed, when the connection
//! closes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use russh::Channel;
use russh::client::Msg;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant as Deadline;
use tokio_util::sync::CancellationToken;

use super::super::connect::ClientHandler;
use super::super::destination;
use super::super::exec::Remote;
use super::super::files::Sftp;
use super::super::{SshError, Target};
use super::SessionManager;
use super::connection::Connection;
use super::lease::Use;

/// How a connection's file operations reach the server.
pub(crate) enum Backend {
    Sftp(Arc<Sftp>),
    /// No SFTP subsystem: exec channels.
    Shell,
}

/// An exec channel for a file operation.
pub(crate) struct FileChannel {
    pub(crate) channel: Channel<Msg>,
    pub(crate) conn: FileConn,
}

/// The connection of a [`FileChannel`], and the slot the channel holds.
pub(crate) struct FileConn {
    conn: Arc<Connection>,
    _slot: OwnedSemaphorePermit,
}

impl FileConn {
    pub(crate) fn remote(&self) -> Remote<'_, ClientHandler> {
        self.conn.remote()
    }

    /// The channel died with neither exit status nor signal: the next
    /// call reconnects.
    pub(crate) fn mark_broken(&self) {
        self.conn.broken.store(true, Ordering::Relaxed);
    }
}

impl SessionManager {
    /// The backend of `target`'s connection, plus its display name
    /// (`user@host:port`). Opens the SFTP client on first use; a server
    /// that refuses the subsystem is remembered as exec-only.
    pub(crate) async fn file_backend(
        &self,
        target: &Target,
        deadline: Deadline,
        cancel: &CancellationToken,
    ) -> Result<(Backend, String), SshError> {
        let dest = self.resolve(target)?;
        let key = dest.key.clone();
        let credentials = target.credentials.as_ref().filter(|c| !c.is_empty());
        let conn = tokio::select! {
            c = tokio::time::timeout_at(deadline, self.connection(&dest, credentials, &[])) => match c {
                Ok(c) => c?,
                Err(_) => return Err(SshError::Timeout(format!(
                    "{key}: the call's time ran out while connecting; nothing was done"
                ))),
            },
            () = cancel.cancelled() => return Err(SshError::Cancelled(format!("{key}: cancelled before it started"))),
        };
        conn.check_peer(target)?;
        let session = destination::display_name(conn.alias.as_deref(), &conn.key);
        if !self.inner.config.sftp || conn.files.no_sftp.load(Ordering::Relaxed) {
            return Ok((Backend::Shell, session));
        }
        let mut cached = conn.files.sftp.lock().await;
        // Callers that queued behind the first probe learn its answer here
        // rather than each probing (and holding a channel) again.
        if conn.files.no_sftp.load(Ordering::Relaxed) {
            return Ok((Backend::Shell, session));
        }
        if let Some(sftp) = cached.as_ref().filter(|s| s.alive()) {
            return Ok((Backend::Sftp(sftp.clone()), session));
        }
        *cached = None;
        let lease = self
            .lease(target, &dest, Use::Command, deadline, cancel)
            .await?;
        if !Arc::ptr_eq(&lease.conn, &conn) {
            // The connection was replaced while we waited: its successor
            // gets its own client on the next call.
            drop(cached);
            return Box::pin(self.file_backend(target, deadline, cancel)).await;
        }
        let (slot, _) = lease.slots;
        let wait = deadline.saturating_duration_since(Deadline::now());
        match tokio::time::timeout(wait, Sftp::open(lease.channel, slot, session.clone())).await {
            Ok(Ok(Some(sftp))) => {
                let sftp = Arc::new(sftp);
                *cached = Some(sftp.clone());
                Ok((Backend::Sftp(sftp), session))
            }
            Ok(Ok(None)) => {
                tracing::info!(%session, "no SFTP subsystem; file operations use exec channels");
                conn.files.no_sftp.store(true, Ordering::Relaxed);
                Ok((Backend::Shell, session))
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(SshError::Timeout(format!(
                "{session}: the SFTP subsystem did not answer in time"
            ))),
        }
    }

    /// An exec channel on `target`'s session for a file operation.
    pub(crate) async fn file_channel(
        &self,
        target: &Target,
        deadline: Deadline,
        cancel: &CancellationToken,
    ) -> Result<FileChannel, SshError> {
        let dest = self.resolve(target)?;
        let lease = self
            .lease(target, &dest, Use::Command, deadline, cancel)
            .await?;
        Ok(FileChannel {
            channel: lease.channel,
            conn: FileConn {
                conn: lease.conn,
                _slot: lease.slots.0,
            },
        })
    }
}
