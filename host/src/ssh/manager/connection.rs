//! One authenticated connection of the session table: its handle, the
//! credentials that opened it, its channel, job and stop slots, and how it
//! closes.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::{Handle, Msg};
use russh::{Channel, Disconnect};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::super::connect::{self, ClientHandler};
use super::super::exec::{Remote, RunError};
use super::super::files::ConnFiles;
use super::super::kill::Stopper;
use super::super::state::SessionState;
use super::super::{Credentials, SessionKey, SshError, Target};
use super::{OPEN_STALL, SessionInfo};

pub(super) struct Connection {
    pub(super) handle: Arc<Handle<ClientHandler>>,
    pub(super) key: SessionKey,
    pub(super) alias: Option<String>,
    /// What authenticated it: compared with later calls' credentials, and
    /// reused to reopen it when it dies. Taken (and zeroed) when it closes.
    pub(super) credentials: Mutex<Option<Credentials>>,
    pub(super) channels: Arc<Semaphore>,
    pub(super) channel_slots: u32,
    /// Background jobs hold a channel for long: they get fewer slots than
    /// `channels`, so they can never starve `exec`.
    pub(super) job_slots: Arc<Semaphore>,
    /// How many [`Self::job_slots`] there are.
    pub(super) job_slot_count: usize,
    /// Stops have channels of their own: they never wait on the commands
    /// they stop.
    pub(super) stopper: Stopper,
    pub(super) opened: Instant,
    pub(super) last_used: Mutex<Instant>,
    pub(super) active: AtomicU32,
    /// Set when a call found it unusable before russh noticed.
    pub(super) broken: AtomicBool,
    /// When it was first seen dead.
    pub(super) dead_since: Mutex<Option<Instant>>,
    /// The address connected to, on a direct route.
    pub(super) peer: Option<std::net::IpAddr>,
    /// Fired when the session is closed: its background jobs stop.
    pub(super) closing: CancellationToken,
    /// The server is OpenSSH, which makes every command's login shell the
    /// leader of a session of its own.
    pub(super) openssh: bool,
    /// The login shell, once a command has shown it.
    pub(super) shell: std::sync::OnceLock<String>,
    /// Its SFTP client, or that it has none.
    pub(super) files: ConnFiles,
    /// The working directory and variables its commands left; handed on
    /// to the connection that replaces it.
    pub(super) state: Mutex<SessionState>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection {
    pub(super) fn alive(&self) -> bool {
        !self.broken.load(Ordering::Relaxed) && !self.handle.is_closed()
    }

    /// Background jobs running on it.
    pub(super) fn running_jobs(&self) -> usize {
        self.job_slot_count
            .saturating_sub(self.job_slots.available_permits())
    }

    /// Whether `target`'s peer policy allows this connection's address.
    pub(super) fn check_peer(&self, target: &Target) -> Result<(), SshError> {
        match &target.peer_check {
            Some(check) => (check.0)(self.peer).map_err(SshError::Denied),
            None => Ok(()),
        }
    }

    pub(super) fn info(&self) -> SessionInfo {
        SessionInfo {
            key: self.key.clone(),
            alias: self.alias.clone(),
            active_commands: self.active.load(Ordering::Relaxed),
            age: self.opened.elapsed(),
            idle: lock(&self.last_used).elapsed(),
        }
    }

    pub(super) fn remote(&self) -> Remote<'_, ClientHandler> {
        Remote {
            handle: &self.handle,
            stopper: &self.stopper,
            shell: &self.shell,
            openssh: self.openssh,
            credentials: &self.credentials,
        }
    }

    /// Stops its jobs, forgets its credentials, and disconnects once the
    /// commands running on it have finished (each within its timeout); the
    /// task ends once it has.
    pub(super) fn close(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.closing.cancel();
        drop(lock(&self.credentials).take());
        tokio::spawn(async move {
            // The SFTP client holds a channel slot: it goes first (calls
            // using it keep it until they end).
            drop(self.files.sftp.lock().await.take());
            let _all = self.channels.acquire_many(self.channel_slots).await;
            let _ = self
                .handle
                .disconnect(Disconnect::ByApplication, "session closed", "en")
                .await;
        })
    }

    /// Opens a session channel within `wait`; one that gets no answer for
    /// [`OPEN_STALL`] marks the connection dead.
    pub(super) async fn open_channel(&self, wait: Duration) -> Result<Channel<Msg>, RunError> {
        match tokio::time::timeout(wait, connect::open_session(&self.handle, 20)).await {
            Ok(Ok(ch)) => Ok(ch),
            Ok(Err(russh::Error::ChannelOpenFailure(f))) => Err(RunError::Refused(format!(
                "the server refused to open a session channel: {f:?}"
            ))),
            Ok(Err(e)) => Err(RunError::NotStarted(e.to_string())),
            Err(_) => {
                if wait >= OPEN_STALL {
                    self.broken.store(true, Ordering::Relaxed);
                }
                Err(RunError::Stalled)
            }
        }
    }
}
