//! The session table: one authenticated russh connection per
//! `username@host:port`, shared by every call.
//!
//! Connecting is serialized per key (a per-key gate), so two simultaneous
//! first calls open one connection while calls to other hosts go on. A call
//! whose credentials differ from the ones that opened the session never
//! rides on it: it must authenticate on a connection of its own, which then
//! replaces the old one (refused while the old one runs background jobs,
//! which replacing would stop). Channels per connection are capped below
//! OpenSSH's `MaxSessions`; callers beyond the cap queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::client::Msg;
use tokio::sync::Semaphore;
use tokio::time::Instant as Deadline;
use tokio_util::sync::CancellationToken;

use super::connect;
use super::destination::{self, Destination, Route};
use super::exec::{self, ExecOutput, ExecRequest, RunError};
use super::jobs::{JobInfo, JobRequest, JobSink, Jobs};
use super::kill::Stopper;
use super::launch::{self, Payload};
use super::ssh_config;
use connection::{Connection, lock};
use lease::Use;

mod connection;
mod files;
mod lease;
mod quota;
mod state;

use super::{Credentials, SessionKey, SshError, SshSettings, Target};
pub(crate) use files::{Backend, FileChannel};

/// Jump hosts reached through jump hosts, at most: deeper is a loop in
/// ssh_config more often than a network.
const MAX_JUMP_DEPTH: usize = 8;
/// A dead session is kept this long so the next call can reopen it with
/// the credentials that opened it; then it and its secrets are dropped.
const REOPEN_WINDOW: Duration = Duration::from_secs(10 * 60);
/// A channel open that takes longer than this on an open connection means
/// the connection is dead (a frozen server, a black-holed network).
const OPEN_STALL: Duration = Duration::from_secs(5);

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
    config: SshSettings,
    /// Established connections. A std mutex: it is never held across an
    /// `.await`, and lookups are far more frequent than connects.
    live: Mutex<HashMap<SessionKey, Arc<Connection>>>,
    /// Per-key gates serializing connection attempts; an entry lives only
    /// while someone connects.
    gates: Mutex<HashMap<SessionKey, Arc<tokio::sync::Mutex<()>>>>,
    /// New sessions being connected ([`quota`]).
    connecting: std::sync::atomic::AtomicUsize,
    jobs: Jobs,
    ssh_config: ssh_config::Cache,
}

impl SessionManager {
    pub fn new(config: SshSettings) -> Self {
        let jobs = Jobs::new(config.job_buffer_bytes, config.job_history);
        Self {
            inner: Arc::new(Inner {
                jobs,
                config,
                live: Mutex::new(HashMap::new()),
                gates: Mutex::new(HashMap::new()),
                connecting: Default::default(),
                ssh_config: ssh_config::Cache::default(),
            }),
        }
    }

    pub fn config(&self) -> &SshSettings {
        &self.inner.config
    }

    /// Runs a command on `target`, connecting or reusing its session. The
    /// call returns within its timeout plus [`super::kill::STOP_BOUND`],
    /// whatever the network does.
    ///
    /// A connection found dead before the command was sent is replaced
    /// transparently; one lost after it was sent is reported, never re-run.
    #[tracing::instrument(skip_all, fields(session))]
    pub async fn exec(
        &self,
        target: &Target,
        request: &ExecRequest,
    ) -> Result<ExecOutput, SshError> {
        let cfg = &self.inner.config;
        let timeout = request
            .timeout
            .unwrap_or(cfg.default_command_timeout)
            .min(cfg.max_command_timeout);
        let deadline = Deadline::now() + timeout;
        let limit = request
            .max_output_bytes
            .unwrap_or(cfg.default_max_output)
            .min(cfg.max_output_cap) as usize;
        launch::check(request.command.payload()).map_err(SshError::InvalidArgument)?;
        request.options.check().map_err(SshError::InvalidArgument)?;
        let dest = self.resolve(target)?;
        tracing::Span::current().record("session", tracing::field::display(&dest.key));
        let mut retried = false;
        loop {
            let lease = self
                .lease(target, &dest, Use::Command, deadline, &request.cancel)
                .await?;
            let conn = lease.conn.clone();
            let session = destination::display_name(conn.alias.as_deref(), &conn.key);
            conn.active.fetch_add(1, Ordering::Relaxed);
            let capture = matches!(request.command, exec::Command::Line(_));
            let res = async {
                let channel = self
                    .ready_shell(
                        &conn,
                        lease.channel,
                        &request.options,
                        deadline,
                        &request.cancel,
                    )
                    .await?;
                let framing = match self.framing(&conn, &request.options, capture) {
                    Ok(f) => f,
                    Err(e) => return Ok(Err(e)),
                };
                if let Err(e) = framed_fits(&framing, &request.command) {
                    return Ok(Err(e));
                }
                let (out, ending) = exec::run(
                    conn.remote(),
                    channel,
                    session,
                    request,
                    framing.frame.as_ref(),
                    deadline,
                    limit,
                )
                .await?;
                Ok(Ok((out, ending, framing)))
            }
            .await;
            conn.active.fetch_sub(1, Ordering::Relaxed);
            *lock(&conn.last_used) = Instant::now();
            drop(lease.slots);
            match res {
                Ok(Err(e)) => return Err(e),
                Ok(Ok((mut out, ending, framing))) => {
                    if ending.stop_unanswered {
                        // A stop that got no answer at all: the connection
                        // is likely dead; the next call opens a new one.
                        self.mark_broken(&conn);
                    }
                    self.settle(&conn, &framing, &ending.frame, &mut out)?;
                    return Ok(out);
                }
                Err(RunError::NotStarted(why)) if !retried => {
                    tracing::info!(
                        "connection to {} is unusable ({why}); reconnecting",
                        dest.key
                    );
                    self.mark_broken(&conn);
                    retried = true;
                }
                Err(e) => return Err(self.run_error(&dest.key, &conn, e)),
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
        launch::check(Payload::Line(&request.command)).map_err(SshError::InvalidArgument)?;
        request.options.check().map_err(SshError::InvalidArgument)?;
        let dest = self.resolve(target)?;
        let deadline = Deadline::now() + dest.connect_timeout;
        let lease = self
            .lease(target, &dest, Use::Job, deadline, &CancellationToken::new())
            .await?;
        let conn = lease.conn.clone();
        let job = self.inner.jobs.create(
            destination::display_name(conn.alias.as_deref(), &conn.key),
            request.command.clone(),
            owner,
        );
        let job_deadline = request.timeout.map(|t| Deadline::now() + t);
        let held = (lease.slots, request.slot.take());
        let (task_job, manager, command, channel, options) = (
            job.clone(),
            self.clone(),
            request.command,
            lease.channel,
            request.options,
        );
        let channel = match self
            .ready_shell(
                &conn,
                channel,
                &options,
                deadline,
                &CancellationToken::new(),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => return Err(self.run_error(&dest.key, &conn, e)),
        };
        let framing = self.framing(&conn, &options, false)?;
        tokio::spawn(async move {
            let _held = held;
            conn.active.fetch_add(1, Ordering::Relaxed);
            let mut sink = JobSink(task_job.clone());
            let cancel = task_job.interrupt.clone();
            let drive = exec::drive(
                conn.remote(),
                channel,
                Payload::Line(&command),
                framing.frame.as_ref(),
                exec::Input::of(&options),
                job_deadline,
                &cancel,
                &mut sink,
                None,
            );
            tokio::pin!(drive);
            // Closing the session stops its jobs.
            let ending = loop {
                tokio::select! {
                    e = &mut drive => break e,
                    () = conn.closing.cancelled(), if !cancel.is_cancelled() => cancel.cancel(),
                }
            };
            conn.active.fetch_sub(1, Ordering::Relaxed);
            *lock(&conn.last_used) = Instant::now();
            if matches!(&ending, Ok(e) if e.lost || e.stop_unanswered) {
                manager.mark_broken(&conn);
            }
            task_job.finish(ending.map_err(|e| e.to_string()));
        });
        self.inner.jobs.status(job.id(), None)
    }

    /// Every background job of this server.
    pub fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    /// The open sessions, sorted by key. A dead session is not listed, but
    /// stays in the table for a while so the next call can reopen it with
    /// the credentials that opened it.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut out: Vec<_> = self
            .live()
            .values()
            .filter(|c| c.alive())
            .map(|c| c.info())
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Closes one session; running commands finish first, background jobs
    /// are stopped. Returns whether one was open.
    pub fn close(&self, target: &Target) -> Result<bool, SshError> {
        let key = self.resolve(target)?.key;
        let removed = self.live().remove(&key);
        Ok(match removed {
            Some(conn) => {
                let was_alive = conn.alive();
                // Closing goes on in its task; the call need not wait.
                drop(conn.close());
                was_alive
            }
            None => false,
        })
    }

    /// The kept state of every open session that has some, sorted by key.
    pub fn states(&self) -> Vec<super::StateInfo> {
        let mut out: Vec<_> = self
            .live()
            .values()
            .filter(|c| c.alive())
            .filter_map(|c| {
                let state = lock(&c.state);
                (!state.is_empty()).then(|| super::StateInfo {
                    key: c.key.clone(),
                    alias: c.alias.clone(),
                    cwd: state.cwd.clone(),
                    variables: state.vars.len() as u32,
                })
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Returns `target`'s session to the login state; its connection stays
    /// open. Returns whether there was state to forget.
    pub fn reset(&self, target: &Target) -> Result<bool, SshError> {
        let key = self.resolve(target)?.key;
        let live = self.live();
        Ok(match live.get(&key) {
            Some(conn) => lock(&conn.state).reset(),
            None => false,
        })
    }

    /// Closes every session; returns how many were open.
    pub fn close_all(&self) -> u32 {
        self.close_every().0
    }

    /// Closes every session, as [`Self::close_all`], and waits until their
    /// jobs are stopped and they are disconnected, at most as long as one
    /// stop may take: a server that leaves leaves nothing running on a
    /// remote host.
    pub async fn shut_down(&self) -> u32 {
        let bound = super::kill::STOP_BOUND;
        let (n, closing) = self.close_every();
        if tokio::time::timeout(bound, futures::future::join_all(closing))
            .await
            .is_err()
        {
            tracing::warn!(
                "sessions still closing after {} s: leaving them",
                bound.as_secs()
            );
        }
        n
    }

    fn close_every(&self) -> (u32, Vec<tokio::task::JoinHandle<()>>) {
        let drained: Vec<_> = self.live().drain().map(|(_, c)| c).collect();
        let mut n = 0;
        let mut closing = Vec::with_capacity(drained.len());
        for conn in drained {
            n += u32::from(conn.alive());
            closing.push(conn.close());
        }
        (n, closing)
    }

    /// The table, after dropping sessions dead for longer than
    /// [`REOPEN_WINDOW`] (their credentials with them).
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<SessionKey, Arc<Connection>>> {
        let mut live = lock(&self.inner.live);
        let now = Instant::now();
        live.retain(|_, c| {
            if c.alive() {
                return true;
            }
            let mut since = lock(&c.dead_since);
            let since = *since.get_or_insert(now);
            let keep = now.duration_since(since) < REOPEN_WINDOW;
            if !keep {
                c.closing.cancel();
                drop(lock(&c.credentials).take());
            }
            keep
        });
        live
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
            Some(c) => lock(&conn.credentials).as_ref() == Some(c),
        };
        (allowed && conn.alive()).then(|| conn.clone())
    }

    /// Whether `conn` is the live session for `key` (not one replaced).
    fn is_live(&self, key: &SessionKey, conn: &Arc<Connection>) -> bool {
        self.live().get(key).is_some_and(|c| Arc::ptr_eq(c, conn))
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
        let gate = lock(&self.inner.gates)
            .entry(key.clone())
            .or_default()
            .clone();
        let result = async {
            let _gate = gate.lock().await;
            // Whoever held the gate before us may have connected already.
            if let Some(conn) = self.reusable(key, credentials) {
                return Ok(conn);
            }
            // With no credentials of its own, a call reopens a dead session
            // with the credentials that opened it.
            let credentials = match credentials {
                Some(c) => Some(c.clone()),
                None => self
                    .live()
                    .get(key)
                    .and_then(|c| lock(&c.credentials).clone()),
            };
            if let Some(jobs) = jobs_in_the_way(&self.live(), key, credentials.as_ref()) {
                return Err(jobs);
            }
            let reserved = self.reserve(key, via)?;
            let conn = self.connect(dest, credentials, via).await?;
            // Checked again, with the table held: a job may have started
            // on the old session while this one connected (a job checks,
            // under the same lock, that its session is still the live one).
            let old = {
                let mut live = self.live();
                let new_credentials = lock(&conn.credentials).clone();
                if let Some(jobs) = jobs_in_the_way(&live, key, new_credentials.as_ref()) {
                    drop(live);
                    conn.close();
                    return Err(jobs);
                }
                live.insert(key.clone(), conn.clone())
            };
            drop(reserved);
            if let Some(old) = old {
                state::hand_over(&old, &conn);
                old.close();
            }
            Ok(conn)
        }
        .await;
        let mut gates = lock(&self.inner.gates);
        // The map's and ours: nobody else waits on this gate.
        if Arc::strong_count(&gate) == 2 {
            gates.remove(key);
        }
        result
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
        let attempt = async {
            let tunnel = match &dest.route {
                Route::Jump(hops) => Some(self.through_jump_hosts(dest, hops, via).await?),
                _ => None,
            };
            connect::establish(dest, credentials.as_ref(), tunnel).await
        };
        let connected = tokio::time::timeout(dest.connect_timeout, attempt)
            .await
            .map_err(|_| {
                SshError::Timeout(format!(
                    "{key}: connecting and authenticating took longer than {} s",
                    dest.connect_timeout.as_secs_f64()
                ))
            })??;
        tracing::info!(session = %dest.display_name(), server = %connected.server_id, ms = started.elapsed().as_millis() as u64, "connected");
        let slots = cfg.channels_per_connection.max(1);
        let job_slots = cfg.jobs_per_connection.min(slots.saturating_sub(1)).max(1);
        Ok(Arc::new(Connection {
            handle: Arc::new(connected.handle),
            key: key.clone(),
            alias: dest.alias.clone(),
            credentials: Mutex::new(credentials),
            channels: Arc::new(Semaphore::new(slots)),
            channel_slots: slots as u32,
            job_slots: Arc::new(Semaphore::new(job_slots)),
            job_slot_count: job_slots,
            stopper: Stopper::default(),
            opened: Instant::now(),
            last_used: Mutex::new(Instant::now()),
            active: AtomicU32::new(0),
            broken: AtomicBool::new(false),
            dead_since: Mutex::new(None),
            peer: connected.peer,
            closing: CancellationToken::new(),
            shell: std::sync::OnceLock::new(),
            openssh: connected.server_id.starts_with("SSH-2.0-OpenSSH"),
            files: Default::default(),
            state: Mutex::default(),
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
                // Refusals of this server's own, not of the network: they
                // keep their kind (a limit may be retried, a cancel ends).
                SshError::Limit(m) => {
                    SshError::Limit(format!("{key}: jump host {}: {m}", jump.display_name()))
                }
                SshError::Denied(m) => {
                    SshError::Denied(format!("{key}: jump host {}: {m}", jump.display_name()))
                }
                SshError::Cancelled(m) => SshError::Cancelled(m),
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
}

/// The command inside its frame must still be one argument the remote
/// kernel takes ([`launch::MAX_COMMAND_BYTES`]).
fn framed_fits(framing: &state::Framing, command: &exec::Command) -> Result<(), SshError> {
    let Some(frame) = &framing.frame else {
        return Ok(());
    };
    let own = match command {
        exec::Command::Line(c) => c.len(),
        exec::Command::Argv(a) => a.iter().map(|w| launch::sh_quote(w).len() + 1).sum(),
    };
    let total = own + frame.overhead();
    if total <= launch::MAX_COMMAND_BYTES {
        return Ok(());
    }
    Err(SshError::InvalidArgument(format!(
        "the command and the session's state (its directory and {} KiB of variables) are \
         {total} bytes together; at most {} fit in one remote command. Unset large variables \
         or call reset_session, or put large data in a file on the host",
        frame.overhead() >> 10,
        launch::MAX_COMMAND_BYTES
    )))
}

/// A call with credentials of its own would replace the live session for
/// `key` in `live` (the session table), and the replaced session is
/// closed, which stops its background jobs: refused while any runs,
/// rather than stopping them unasked.
fn jobs_in_the_way(
    live: &HashMap<SessionKey, Arc<Connection>>,
    key: &SessionKey,
    credentials: Option<&Credentials>,
) -> Option<SshError> {
    let old = live.get(key).filter(|c| c.alive())?;
    if lock(&old.credentials).as_ref() == credentials {
        return None;
    }
    let jobs = old.running_jobs();
    (jobs > 0).then(|| {
        SshError::InvalidArgument(format!(
            "{key}: the session has {jobs} background job(s) running, started with other \
             credentials; these credentials would open a new session replacing it, which \
             stops its jobs. Call without credentials to use the session as it is, or stop \
             its jobs first (interrupt_command, or close_session); nothing was run"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connect_gates_do_not_pile_up_with_every_name_tried() {
        let dir = tempfile::tempdir().unwrap();
        let manager = SessionManager::new(SshSettings {
            ssh_config: super::super::ssh_config::Files {
                user: None,
                system: None,
            },
            known_hosts: Some(dir.path().join("known_hosts")),
            connect_timeout: Duration::from_secs(2),
            use_agent: false,
            ..SshSettings::default()
        });
        // Port 1 on loopback refuses at once: every call fails to connect.
        for user in ["a", "b", "c", "d"] {
            let target = Target {
                host: "127.0.0.1".into(),
                username: Some(user.into()),
                port: Some(1),
                ..Target::default()
            };
            let request = ExecRequest {
                command: super::super::Command::Line("true".into()),
                ..ExecRequest::default()
            };
            let err = manager.exec(&target, &request).await.unwrap_err();
            assert!(matches!(err, SshError::Connect(_)), "{err:?}");
        }
        assert!(lock(&manager.inner.gates).is_empty());
        assert!(manager.live().is_empty());
    }
}
