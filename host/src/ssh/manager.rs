//! The session table: one authenticated russh connection per
//! `username@host:port`, shared by every call.
//!
//! Connecting is serialized per key (a per-key gate), so two simultaneous
//! first calls open one connection while calls to other hosts go on. A call
//! whose credentials differ from the ones that opened the session never
//! rides on it: it must authenticate on a connection of its own, which then
//! replaces the old one. Channels per connection are capped below OpenSSH's
//! `MaxSessions`; callers beyond the cap queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::Channel;
use russh::client::{self, Handle, Msg};
use russh::keys::{PublicKey, PublicKeyOrCertificate};
use russh::{ChannelOpenFailure, Disconnect};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::exec::{self, ExecOutput, ExecRequest, RunError};
use super::jobs::{JobInfo, JobRequest, JobSink, Jobs};
use super::net::QuickAckStream;
use super::{
    Credentials, HostKeyPolicy, SessionKey, SshConfig, SshError, Target, auth, known_hosts,
};

/// An open session as shown to tools: never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub key: SessionKey,
    pub active_commands: u32,
    pub age: Duration,
    pub idle: Duration,
}

/// Owns every SSH connection. Cheap to clone; clones share the table.
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

struct Inner {
    config: SshConfig,
    russh: Arc<client::Config>,
    /// Established connections. A std mutex: it is never held across an
    /// `.await`, and lookups are far more frequent than connects.
    live: Mutex<HashMap<SessionKey, Arc<Connection>>>,
    /// Per-key gates serializing connection attempts.
    gates: Mutex<HashMap<SessionKey, Arc<tokio::sync::Mutex<()>>>>,
    jobs: Jobs,
}

struct Connection {
    handle: Handle<ClientHandler>,
    key: SessionKey,
    /// What authenticated it: compared with later calls' credentials, and
    /// reused to reconnect when the connection dies.
    credentials: Option<Credentials>,
    channels: Arc<Semaphore>,
    channel_slots: u32,
    /// Background jobs hold a channel for long: they get fewer slots than
    /// `channels`, so they can never starve `exec`.
    job_slots: Arc<Semaphore>,
    opened: Instant,
    last_used: Mutex<Instant>,
    active: AtomicU32,
    /// Set when a call found it unusable before russh noticed.
    broken: AtomicBool,
}

impl Connection {
    fn alive(&self) -> bool {
        !self.broken.load(Ordering::Relaxed) && !self.handle.is_closed()
    }

    fn info(&self) -> SessionInfo {
        let last = *self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        SessionInfo {
            key: self.key.clone(),
            active_commands: self.active.load(Ordering::Relaxed),
            age: self.opened.elapsed(),
            idle: last.elapsed(),
        }
    }

    /// Disconnects once the commands running on it have finished.
    fn close_when_idle(self: Arc<Self>) {
        tokio::spawn(async move {
            let _all = self.channels.acquire_many(self.channel_slots).await;
            let _ = self
                .handle
                .disconnect(Disconnect::ByApplication, "session closed", "en")
                .await;
        });
    }

    async fn run(
        &self,
        request: &ExecRequest,
        timeout: Duration,
        limit: usize,
        open_timeout: Duration,
    ) -> Result<ExecOutput, RunError> {
        let _permit = tokio::select! {
            p = self.channels.acquire() => {
                p.map_err(|_| RunError::NotStarted("session closed".into()))?
            }
            () = request.cancel.cancelled() => return Err(RunError::Cancelled),
        };
        self.active.fetch_add(1, Ordering::Relaxed);
        let res = self
            .run_on_channel(request, timeout, limit, open_timeout)
            .await;
        self.active.fetch_sub(1, Ordering::Relaxed);
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        res
    }

    async fn run_on_channel(
        &self,
        request: &ExecRequest,
        timeout: Duration,
        limit: usize,
        open_timeout: Duration,
    ) -> Result<ExecOutput, RunError> {
        let channel = self.open_channel(open_timeout).await?;
        if request.cancel.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        let session = self.key.to_string();
        exec::run(&self.handle, channel, session, request, timeout, limit).await
    }

    async fn open_channel(&self, open_timeout: Duration) -> Result<Channel<Msg>, RunError> {
        let mut attempt = 0u64;
        loop {
            let opened =
                tokio::time::timeout(open_timeout, self.handle.channel_open_session()).await;
            match opened {
                Ok(Ok(ch)) => return Ok(ch),
                // The server is out of sessions: a MaxSessions below our
                // cap, or a slot it has not yet freed after a close. OpenSSH
                // says so with "connect failed". Nothing ran: wait, retry.
                Ok(Err(russh::Error::ChannelOpenFailure(
                    ChannelOpenFailure::ResourceShortage
                    | ChannelOpenFailure::AdministrativelyProhibited
                    | ChannelOpenFailure::ConnectFailed,
                ))) if attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(5 * attempt)).await;
                }
                Ok(Err(russh::Error::ChannelOpenFailure(f))) => {
                    return Err(RunError::Refused(format!(
                        "the server refused to open a session channel: {f:?}"
                    )));
                }
                Ok(Err(e)) => return Err(RunError::NotStarted(e.to_string())),
                Err(_) => return Err(RunError::NotStarted("opening a channel timed out".into())),
            }
        }
    }
}

impl SessionManager {
    pub fn new(config: SshConfig) -> Self {
        let russh = client::Config {
            nodelay: true,
            keepalive_interval: Some(config.keepalive_interval),
            keepalive_max: 3,
            inactivity_timeout: None,
            ..client::Config::default()
        };
        let jobs = Jobs::new(config.job_buffer_bytes, config.job_history);
        Self {
            inner: Arc::new(Inner {
                jobs,
                config,
                russh: Arc::new(russh),
                live: Mutex::new(HashMap::new()),
                gates: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn config(&self) -> &SshConfig {
        &self.inner.config
    }

    /// Runs a command on `target`, connecting or reusing its session.
    ///
    /// A connection found dead before the command was sent is replaced
    /// transparently; one lost after it was sent is reported, never re-run.
    #[tracing::instrument(skip_all, fields(session))]
    pub async fn exec(
        &self,
        target: &Target,
        request: &ExecRequest,
    ) -> Result<ExecOutput, SshError> {
        let key = SessionKey::from_target(target)?;
        tracing::Span::current().record("session", tracing::field::display(&key));
        validate_command(&request.command)?;
        let cfg = &self.inner.config;
        let timeout = request
            .timeout
            .unwrap_or(cfg.default_command_timeout)
            .min(cfg.max_command_timeout);
        let limit = request
            .max_output_bytes
            .unwrap_or(cfg.default_max_output)
            .min(cfg.max_output_cap) as usize;
        let credentials = target.credentials.as_ref().filter(|c| !c.is_empty());

        let cancelled =
            || SshError::Cancelled(format!("{key}: cancelled before the command started"));
        let mut retried = false;
        loop {
            let conn = tokio::select! {
                c = self.connection(&key, credentials) => c?,
                () = request.cancel.cancelled() => return Err(cancelled()),
            };
            match conn.run(request, timeout, limit, cfg.connect_timeout).await {
                Ok(out) => return Ok(out),
                Err(RunError::NotStarted(why)) if !retried => {
                    tracing::info!("connection to {key} is unusable ({why}); reconnecting");
                    self.mark_broken(&conn);
                    retried = true;
                }
                Err(RunError::NotStarted(why)) => {
                    self.mark_broken(&conn);
                    return Err(SshError::Channel(format!(
                        "{key}: could not start the command: {why}"
                    )));
                }
                Err(RunError::Refused(why)) => {
                    return Err(SshError::Channel(format!("{key}: {why}")));
                }
                Err(RunError::Cancelled) => return Err(cancelled()),
                Err(RunError::Lost { bytes }) => {
                    self.mark_broken(&conn);
                    return Err(SshError::ConnectionLost(format!(
                        "{key}: the connection was lost while the command was running, after \
                         {bytes} bytes of output; it may or may not have completed, and it was \
                         not re-run"
                    )));
                }
            }
        }
    }

    /// Starts `request` in the background on `target`'s session and returns
    /// at once. `owner` names the component: only it (or a component that
    /// may see everything) can read or stop the job.
    pub async fn start_job(
        &self,
        target: &Target,
        request: JobRequest,
        owner: Arc<str>,
    ) -> Result<JobInfo, SshError> {
        let key = SessionKey::from_target(target)?;
        validate_command(&request.command)?;
        let cfg = &self.inner.config;
        let credentials = target.credentials.as_ref().filter(|c| !c.is_empty());
        let mut retried = false;
        loop {
            let conn = self.connection(&key, credentials).await?;
            let Ok(job_slot) = conn.job_slots.clone().try_acquire_owned() else {
                return Err(SshError::Denied(format!(
                    "{key} already runs {} background jobs, the most one session may; \
                     interrupt one or wait for one to end",
                    cfg.jobs_per_connection
                )));
            };
            let channel_slot = conn
                .channels
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| SshError::Channel(format!("{key}: the session closed")))?;
            let channel = match conn.open_channel(cfg.connect_timeout).await {
                Ok(c) => c,
                Err(RunError::NotStarted(why)) if !retried => {
                    tracing::info!("connection to {key} is unusable ({why}); reconnecting");
                    self.mark_broken(&conn);
                    retried = true;
                    continue;
                }
                Err(e) => return Err(SshError::Channel(format!("{key}: {e:?}"))),
            };
            let job = self
                .inner
                .jobs
                .create(key.to_string(), request.command.clone(), owner);
            let deadline = request.timeout.map(|t| tokio::time::Instant::now() + t);
            let (task_job, manager, command) = (job.clone(), self.clone(), request.command);
            tokio::spawn(async move {
                let _slots = (job_slot, channel_slot);
                conn.active.fetch_add(1, Ordering::Relaxed);
                let mut sink = JobSink(task_job.clone());
                let cancel = task_job.interrupt.clone();
                let ending = exec::drive(
                    &conn.handle,
                    channel,
                    &command,
                    deadline,
                    &cancel,
                    &mut sink,
                    None,
                )
                .await;
                conn.active.fetch_sub(1, Ordering::Relaxed);
                *conn.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                if matches!(&ending, Ok(e) if e.lost) {
                    manager.mark_broken(&conn);
                }
                task_job.finish(ending.map_err(|e| format!("{e:?}")));
            });
            return self.inner.jobs.status(job.id(), None);
        }
    }

    /// Every background job of this server.
    pub fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    /// The open sessions, sorted by key. A dead session is not listed, but
    /// stays in the table so the next call can reconnect it with the
    /// credentials that opened it.
    pub fn list(&self) -> Vec<SessionInfo> {
        let live = self.live();
        let mut out: Vec<_> = live
            .values()
            .filter(|c| c.alive())
            .map(|c| c.info())
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Closes one session; running commands finish first. Returns whether
    /// one was open.
    pub fn close(&self, target: &Target) -> Result<bool, SshError> {
        let key = SessionKey::from_target(target)?;
        let removed = self.live().remove(&key);
        Ok(match removed {
            Some(conn) => {
                let was_alive = conn.alive();
                conn.close_when_idle();
                was_alive
            }
            None => false,
        })
    }

    /// Closes every session; returns how many were open.
    pub fn close_all(&self) -> u32 {
        let drained: Vec<_> = self.live().drain().map(|(_, c)| c).collect();
        let mut n = 0;
        for conn in drained {
            n += u32::from(conn.alive());
            conn.close_when_idle();
        }
        n
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Arc<Connection>>> {
        self.inner.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `conn` unusable; the next call for its key reconnects.
    fn mark_broken(&self, conn: &Connection) {
        conn.broken.store(true, Ordering::Relaxed);
    }

    /// The live session for `key` if `credentials` may use it.
    fn reusable(
        &self,
        key: &SessionKey,
        credentials: Option<&Credentials>,
    ) -> Option<Arc<Connection>> {
        let live = self.live();
        let conn = live.get(key)?;
        let allowed = match credentials {
            None => true,
            Some(c) => conn.credentials.as_ref() == Some(c),
        };
        (allowed && conn.alive()).then(|| conn.clone())
    }

    async fn connection(
        &self,
        key: &SessionKey,
        credentials: Option<&Credentials>,
    ) -> Result<Arc<Connection>, SshError> {
        if let Some(conn) = self.reusable(key, credentials) {
            return Ok(conn);
        }
        let gate = {
            let mut gates = self.inner.gates.lock().unwrap_or_else(|e| e.into_inner());
            gates.entry(key.clone()).or_default().clone()
        };
        let _gate = gate.lock().await;
        // Whoever held the gate before us may have connected already.
        if let Some(conn) = self.reusable(key, credentials) {
            return Ok(conn);
        }
        // With no credentials of its own, a call reconnects a dead session
        // with the credentials that opened it.
        let credentials = match credentials {
            Some(c) => Some(c.clone()),
            None => self.live().get(key).and_then(|c| c.credentials.clone()),
        };
        let conn = self.connect(key, credentials).await?;
        let old = self.live().insert(key.clone(), conn.clone());
        if let Some(old) = old {
            old.close_when_idle();
        }
        Ok(conn)
    }

    async fn connect(
        &self,
        key: &SessionKey,
        credentials: Option<Credentials>,
    ) -> Result<Arc<Connection>, SshError> {
        let cfg = &self.inner.config;
        let started = Instant::now();
        let attempt = async {
            let tcp = TcpStream::connect((key.host.as_str(), key.port))
                .await
                .map_err(|e| {
                    SshError::Connect(format!("cannot connect to {}:{}: {e}", key.host, key.port))
                })?;
            let stream = QuickAckStream::new(tcp);
            tracing::debug!(peer = ?stream.peer_addr().ok(), "TCP connected");
            let handler = ClientHandler {
                host: key.host.clone(),
                port: key.port,
                policy: cfg.host_key_policy,
                known_hosts: cfg.known_hosts.clone(),
            };
            let mut handle = client::connect_stream(self.inner.russh.clone(), stream, handler)
                .await
                .map_err(|e| match e {
                    HandlerError::HostKey(e) => e,
                    HandlerError::Ssh(e) => {
                        SshError::Connect(format!("{key}: SSH handshake failed: {e}"))
                    }
                })?;
            auth::authenticate(&mut handle, key, credentials.as_ref(), cfg).await?;
            Ok::<_, SshError>(handle)
        };
        let handle = tokio::time::timeout(cfg.connect_timeout, attempt)
            .await
            .map_err(|_| {
                SshError::Timeout(format!(
                    "{key}: connecting and authenticating took longer than {} s",
                    cfg.connect_timeout.as_secs_f64()
                ))
            })??;
        tracing::info!(session = %key, ms = started.elapsed().as_millis() as u64, "connected");
        let slots = cfg.channels_per_connection.max(1);
        Ok(Arc::new(Connection {
            handle,
            key: key.clone(),
            credentials,
            channels: Arc::new(Semaphore::new(slots)),
            channel_slots: slots as u32,
            job_slots: Arc::new(Semaphore::new(
                cfg.jobs_per_connection.min(slots.saturating_sub(1)).max(1),
            )),
            opened: Instant::now(),
            last_used: Mutex::new(Instant::now()),
            active: AtomicU32::new(0),
            broken: AtomicBool::new(false),
        }))
    }
}

fn validate_command(command: &str) -> Result<(), SshError> {
    if command.trim().is_empty() {
        return Err(SshError::InvalidArgument(
            "command must not be empty".into(),
        ));
    }
    if command.contains('\0') {
        return Err(SshError::InvalidArgument(
            "command must not contain NUL bytes".into(),
        ));
    }
    Ok(())
}

/// russh's per-connection callbacks: host-key verification.
struct ClientHandler {
    host: String,
    port: u16,
    policy: HostKeyPolicy,
    known_hosts: std::path::PathBuf,
}

#[derive(Debug)]
enum HandlerError {
    Ssh(russh::Error),
    HostKey(SshError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        Self::Ssh(e)
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // Without a @cert-authority line, OpenSSH checks a host
            // certificate's plain key; so do we.
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        known_hosts::verify(self.policy, &self.known_hosts, &self.host, self.port, &key)
            .map_err(HandlerError::HostKey)?;
        Ok(true)
    }
}
