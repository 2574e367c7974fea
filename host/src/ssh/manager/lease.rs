//! The one way to get a channel on a target: connect (or reuse the
//! session), check the peer policy, take a slot, open the channel, replace
//! a connection that does not answer once; and what a failed run means.

use std::sync::Arc;

use russh::Channel;
use russh::client::Msg;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant as Deadline;
use tokio_util::sync::CancellationToken;

use super::super::destination::Destination;
use super::super::exec::RunError;
use super::super::{SessionKey, SshError, Target};
use super::connection::Connection;
use super::{OPEN_STALL, SessionManager};

/// What kind of channel a caller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// A command that ends within its call.
    Command,
    /// A background job, from the job slots.
    Job,
}

/// A channel on a target's session, with the slots it holds.
pub(super) struct Lease {
    pub(super) conn: Arc<Connection>,
    pub(super) channel: Channel<Msg>,
    pub(super) slots: (OwnedSemaphorePermit, Option<OwnedSemaphorePermit>),
}

impl SessionManager {
    /// What a failed run means for the caller, and for the connection.
    pub(super) fn run_error(&self, key: &SessionKey, conn: &Connection, e: RunError) -> SshError {
        match e {
            RunError::NotStarted(why) => {
                self.mark_broken(conn);
                SshError::Channel(format!("{key}: could not start the command: {why}"))
            }
            RunError::Stalled => SshError::Timeout(format!(
                "{key}: the call's time ran out opening a channel: the server does not answer; \
                 nothing was run"
            )),
            RunError::Refused(why) => SshError::Channel(format!("{key}: {why}")),
            RunError::Sudo(e) => e.into_ssh(&key.to_string()),
            RunError::TooLarge(why) => SshError::InvalidArgument(format!("{key}: {why}")),
            RunError::Before(e) => e,
            RunError::Lost { bytes } => {
                self.mark_broken(conn);
                SshError::ConnectionLost(format!(
                    "{key}: the connection was lost while the command was running, after {bytes} \
                     bytes of output; it may or may not have completed, and it was not re-run"
                ))
            }
        }
    }

    /// The one way to get a channel on a target: connect (or reuse the
    /// session), check the peer policy, take a slot, open a channel. A
    /// connection that does not answer the open is replaced once. Every
    /// step waits at most until `deadline`, and stops waiting when `cancel`
    /// fires.
    pub(super) async fn lease(
        &self,
        target: &Target,
        dest: &Destination,
        kind: Use,
        deadline: Deadline,
        cancel: &CancellationToken,
    ) -> Result<Lease, SshError> {
        let key = &dest.key;
        let credentials = target.credentials.as_ref().filter(|c| !c.is_empty());
        let cancelled =
            || SshError::Cancelled(format!("{key}: cancelled before the command started"));
        let out_of_time = |what: &str| {
            SshError::Timeout(format!(
                "{key}: the call's time ran out {what}; nothing was run"
            ))
        };
        let mut retried = false;
        loop {
            let connect_by = deadline.min(Deadline::now() + dest.connect_timeout);
            let conn = tokio::select! {
                c = tokio::time::timeout_at(connect_by, self.connection(dest, credentials, &[])) => match c {
                    Ok(c) => c?,
                    Err(_) if connect_by < deadline => return Err(SshError::Timeout(format!(
                        "{key}: connecting and authenticating took longer than {} s",
                        dest.connect_timeout.as_secs_f64()
                    ))),
                    Err(_) => return Err(out_of_time("while connecting")),
                },
                () = cancel.cancelled() => return Err(cancelled()),
            };
            conn.check_peer(target)?;
            let job_slot = match kind {
                Use::Command => None,
                Use::Job => {
                    let slot = conn.job_slots.clone().try_acquire_owned().map_err(|_| {
                        SshError::Limit(format!(
                            "resource limit reached: {key} already runs {} background jobs, \
                             the most one session may; interrupt one or wait for one to end",
                            self.inner.config.jobs_per_connection
                        ))
                    })?;
                    // A session being replaced meanwhile (a call with other
                    // credentials) saw no job: this one would be stopped
                    // with it. It goes to the new session instead.
                    if !self.is_live(key, &conn) {
                        drop(slot);
                        if retried {
                            return Err(SshError::Channel(format!(
                                "{key}: the session was replaced as the job started; nothing \
                                 was run"
                            )));
                        }
                        retried = true;
                        continue;
                    }
                    Some(slot)
                }
            };
            let slot = tokio::select! {
                p = tokio::time::timeout_at(deadline, conn.channels.clone().acquire_owned()) => match p {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) if !retried => {
                        // Closed while we queued: the next round reconnects.
                        retried = true;
                        continue;
                    }
                    Ok(Err(_)) => return Err(SshError::Channel(format!("{key}: the session closed"))),
                    Err(_) => return Err(out_of_time(&format!(
                        "waiting for a free channel ({} commands were running on the session)",
                        conn.channel_slots
                    ))),
                },
                () = cancel.cancelled() => return Err(cancelled()),
            };
            let wait = deadline.saturating_duration_since(Deadline::now());
            let opened = tokio::select! {
                c = conn.open_channel(wait.min(OPEN_STALL)) => c,
                () = cancel.cancelled() => return Err(cancelled()),
            };
            match opened {
                Ok(channel) => {
                    return Ok(Lease {
                        conn,
                        channel,
                        slots: (slot, job_slot),
                    });
                }
                Err(RunError::Stalled | RunError::NotStarted(_))
                    if !retried && Deadline::now() + OPEN_STALL < deadline =>
                {
                    tracing::info!("connection to {key} does not answer; reconnecting");
                    self.mark_broken(&conn);
                    retried = true;
                }
                Err(e) => return Err(self.run_error(key, &conn, e)),
            }
        }
    }
}
