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
use russh::keys::PublicKeyOrCertificate;
use russh::{ChannelOpenFailure, Disconnect};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::destination::{self, Destination, Route};
use super::exec::{self, ExecOutput, ExecRequest, RunError};
use super::jobs::{JobInfo, JobRequest, JobSink, Jobs};
use super::net::QuickAckStream;
use super::openssh_config::ConfigCache;
use super::{
    Credentials, HostKeyPolicy, KnownHostsFiles, SessionKey, SshConfig, SshError, Target, auth,
    known_hosts, proxy,
};

/// Jump hosts reached through jump hosts, at most: deeper is a loop in
/// ssh_config more often than a network.
const MAX_JUMP_DEPTH: usize = 8;

/// An open session as shown to tools: never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub key: SessionKey,
    /// The ssh_config alias it was opened under, if any.
    pub alias: Option<String>,
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
    /// Established connections. A std mutex: it is never held across an
    /// `.await`, and lookups are far more frequent than connects.
    live: Mutex<HashMap<SessionKey, Arc<Connection>>>,
    /// Per-key gates serializing connection attempts.
    gates: Mutex<HashMap<SessionKey, Arc<tokio::sync::Mutex<()>>>>,
    jobs: Jobs,
    ssh_config: ConfigCache,
}

struct Connection {
    handle: Handle<ClientHandler>,
    key: SessionKey,
    alias: Option<String>,
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
    /// The address connected to, on a direct route.
    peer: Option<std::net::IpAddr>,
}

impl Connection {
    fn alive(&self) -> bool {
        !self.broken.load(Ordering::Relaxed) && !self.handle.is_closed()
    }

    /// Whether `target`'s peer policy allows this connection's address.
    fn check_peer(&self, target: &Target) -> Result<(), SshError> {
        match &target.peer_check {
            Some(check) => (check.0)(self.peer).map_err(SshError::Denied),
            None => Ok(()),
        }
    }

    fn info(&self) -> SessionInfo {
        let last = *self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        SessionInfo {
            key: self.key.clone(),
            alias: self.alias.clone(),
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
        let session = destination::display_name(self.alias.as_deref(), &self.key);
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
        let jobs = Jobs::new(config.job_buffer_bytes, config.job_history);
        Self {
            inner: Arc::new(Inner {
                jobs,
                config,
                live: Mutex::new(HashMap::new()),
                gates: Mutex::new(HashMap::new()),
                ssh_config: ConfigCache::default(),
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
        let dest = self.resolve(target)?;
        let key = dest.key.clone();
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
                c = self.connection(&dest, credentials, &[]) => c?,
                () = request.cancel.cancelled() => return Err(cancelled()),
            };
            conn.check_peer(target)?;
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
        mut request: JobRequest,
        owner: Arc<str>,
    ) -> Result<JobInfo, SshError> {
        let dest = self.resolve(target)?;
        let key = dest.key.clone();
        validate_command(&request.command)?;
        let cfg = &self.inner.config;
        let credentials = target.credentials.as_ref().filter(|c| !c.is_empty());
        let mut retried = false;
        loop {
            let conn = self.connection(&dest, credentials, &[]).await?;
            conn.check_peer(target)?;
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
                .create(dest.display_name(), request.command.clone(), owner);
            let deadline = request.timeout.map(|t| tokio::time::Instant::now() + t);
            let (task_job, manager, command) = (job.clone(), self.clone(), request.command);
            let caller_slot = request.slot.take();
            tokio::spawn(async move {
                let _slots = (job_slot, channel_slot, caller_slot);
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
        let key = self.resolve(target)?.key;
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

    /// Where `target` really goes, through ssh_config.
    pub fn resolve(&self, target: &Target) -> Result<Destination, SshError> {
        destination::resolve(target, &self.inner.config, &self.inner.ssh_config)
    }

    /// The live session for `dest`, connecting it (through its jump hosts)
    /// if needed. `via` lists the sessions being connected that lead here,
    /// so a loop of jump hosts is an error instead of a deadlock on a gate.
    async fn connection(
        &self,
        dest: &Destination,
        credentials: Option<&Credentials>,
        via: &[SessionKey],
    ) -> Result<Arc<Connection>, SshError> {
        let key = &dest.key;
        if let Some(conn) = self.reusable(key, credentials) {
            return Ok(conn);
        }
        if via.contains(key) {
            return Err(SshError::InvalidArgument(format!(
                "ssh_config ProxyJump loops: {key} is reached through itself"
            )));
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
        let conn = self.connect(dest, credentials, via).await?;
        let old = self.live().insert(key.clone(), conn.clone());
        if let Some(old) = old {
            old.close_when_idle();
        }
        Ok(conn)
    }

    async fn connect(
        &self,
        dest: &Destination,
        credentials: Option<Credentials>,
        via: &[SessionKey],
    ) -> Result<Arc<Connection>, SshError> {
        let cfg = &self.inner.config;
        let key = &dest.key;
        let started = Instant::now();
        let mut peer = None;
        let attempt = async {
            let handler = ClientHandler {
                host: key.host.clone(),
                port: key.port,
                policy: dest.host_key_policy,
                known_hosts: dest.known_hosts.clone(),
            };
            let russh = Arc::new(Self::russh_config(dest));
            let handshake_failed = |e: HandlerError, detail: &str| match e {
                HandlerError::HostKey(e) => e,
                HandlerError::Ssh(e) => {
                    SshError::Connect(format!("{key}: SSH handshake failed: {e}{detail}"))
                }
            };
            let mut handle = match &dest.route {
                Route::Direct => {
                    let tcp = TcpStream::connect((key.host.as_str(), key.port))
                        .await
                        .map_err(|e| {
                            SshError::Connect(format!(
                                "cannot connect to {}:{}: {e}",
                                key.host, key.port
                            ))
                        })?;
                    let stream = QuickAckStream::new(tcp);
                    peer = stream.peer_addr().ok().map(|a| a.ip());
                    tracing::debug!(?peer, "TCP connected");
                    client::connect_stream(russh, stream, handler)
                        .await
                        .map_err(|e| handshake_failed(e, ""))?
                }
                Route::Jump(hops) => {
                    let stream = self.through_jump_hosts(dest, hops, via).await?;
                    client::connect_stream(russh, stream, handler)
                        .await
                        .map_err(|e| handshake_failed(e, ""))?
                }
                Route::Command(command) => {
                    let (stream, stderr) = proxy::spawn(command).map_err(|e| {
                        SshError::Connect(format!("{key}: cannot start ProxyCommand: {e}"))
                    })?;
                    match client::connect_stream(russh, stream, handler).await {
                        Ok(handle) => handle,
                        Err(e) => {
                            // Let the command finish its complaint.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let said = stderr.text();
                            let detail = if said.is_empty() {
                                String::new()
                            } else {
                                format!(" (ProxyCommand said: {said})")
                            };
                            return Err(handshake_failed(e, &detail));
                        }
                    }
                }
            };
            auth::authenticate(&mut handle, dest, credentials.as_ref()).await?;
            Ok::<_, SshError>(handle)
        };
        let handle = tokio::time::timeout(dest.connect_timeout, attempt)
            .await
            .map_err(|_| {
                SshError::Timeout(format!(
                    "{key}: connecting and authenticating took longer than {} s",
                    dest.connect_timeout.as_secs_f64()
                ))
            })??;
        tracing::info!(session = %dest.display_name(), ms = started.elapsed().as_millis() as u64, "connected");
        let slots = cfg.channels_per_connection.max(1);
        Ok(Arc::new(Connection {
            handle,
            key: key.clone(),
            alias: dest.alias.clone(),
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
            peer,
        }))
    }

    /// A direct-tcpip channel to `dest` from the last of `hops`, whose own
    /// session (reached through the hops before it, or its own ssh_config
    /// route when it is the first) is shared like any other session.
    async fn through_jump_hosts(
        &self,
        dest: &Destination,
        hops: &[destination::Hop],
        via: &[SessionKey],
    ) -> Result<russh::ChannelStream<Msg>, SshError> {
        let key = &dest.key;
        let Some((last, before)) = hops.split_last() else {
            return Err(SshError::InvalidArgument("empty ProxyJump".into()));
        };
        if via.len() >= MAX_JUMP_DEPTH {
            return Err(SshError::InvalidArgument(format!(
                "{key}: more than {MAX_JUMP_DEPTH} jump hosts; does ssh_config's ProxyJump loop?"
            )));
        }
        let mut jump = self.resolve(&Target {
            host: last.host.clone(),
            username: last.user.clone(),
            port: last.port,
            ..Target::default()
        })?;
        if !before.is_empty() {
            jump.route = Route::Jump(before.to_vec());
        }
        let mut chain = via.to_vec();
        chain.push(key.clone());
        let conn = Box::pin(self.connection(&jump, None, &chain))
            .await
            .map_err(|e| match e {
                SshError::HostKey(m) => SshError::HostKey(format!("jump host: {m}")),
                SshError::Auth(m) => SshError::Auth(format!("jump host: {m}")),
                other => SshError::Connect(format!(
                    "{key}: cannot reach jump host {}: {other}",
                    jump.display_name()
                )),
            })?;
        let channel = conn
            .handle
            .channel_open_direct_tcpip(key.host.as_str(), u32::from(key.port), "127.0.0.1", 0)
            .await
            .map_err(|e| {
                if conn.handle.is_closed() {
                    self.mark_broken(&conn);
                }
                SshError::Connect(format!(
                    "{key}: jump host {} could not connect to {}:{}: {e}",
                    conn.key, key.host, key.port
                ))
            })?;
        tracing::debug!(session = %key, jump = %conn.key, "tunnel open through jump host");
        Ok(channel.into_stream())
    }

    /// russh's settings for one connection: keepalive from
    /// `ServerAliveInterval`, host-key algorithms of known keys first, and
    /// host certificates asked for only when an
    /// `@cert-authority` line could vouch for one (as OpenSSH does).
    fn russh_config(dest: &Destination) -> client::Config {
        let mut config = client::Config {
            nodelay: true,
            keepalive_interval: dest.keepalive.map(|(interval, _)| interval),
            keepalive_max: dest.keepalive.map_or(3, |(_, max)| max),
            inactivity_timeout: None,
            ..client::Config::default()
        };
        let (files, host, port) = (&dest.known_hosts, &dest.key.host, dest.key.port);
        config.preferred.key =
            known_hosts::preferred_algorithms(files, host, port, &config.preferred.key).into();
        if known_hosts::has_cert_authority(&dest.known_hosts, &dest.key.host, dest.key.port) {
            config.preferred.host_key_certificates = config.preferred.key.clone();
        }
        config
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
    known_hosts: KnownHostsFiles,
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
        known_hosts::verify(
            self.policy,
            &self.known_hosts,
            &self.host,
            self.port,
            server_key,
        )
        .map_err(HandlerError::HostKey)?;
        Ok(true)
    }
}
