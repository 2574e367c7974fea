//! How many SSH sessions the table holds: `--max-sessions`. Each one is a
//! TCP connection here, a process on its server and memory in both, and
//! nothing else bounds how many distinct `user@host:port` a client names.
//! A new session past the quota is refused, saying how to make room; one
//! that replaces a session of the same key (a reconnect) never is, nor are
//! the jump hosts it goes through. Sessions alive count, as
//! `list_sessions` shows them (a lost one kept for its reconnect holds no
//! connection), and so do the new ones being connected. Also whether a
//! table holds anything at all, for whoever bounds the tables themselves
//! (the namespaces of unmapped JWT subjects).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::super::jobs::JobState;
use super::super::{SessionKey, SshError};
use super::SessionManager;

/// A place in the table for a session being connected; given back on drop
/// (the session is in the table by then, or failed).
pub(super) struct Reserved<'a>(Option<&'a AtomicUsize>);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if let Some(connecting) = self.0 {
            connecting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl SessionManager {
    /// Whether this table holds nothing to come back for but finished
    /// jobs' history: no session (open, or lost and kept for a reconnect),
    /// no job running. A namespace made per caller may then be dropped.
    pub(crate) fn is_idle(&self) -> bool {
        self.live().is_empty()
            && (self.inner.jobs.list(None).iter()).all(|j| j.state != JobState::Running)
    }

    /// A place for a new session `key`, counting those being connected,
    /// or the refusal when the table is full. `via` are the sessions being
    /// connected through `key` (a jump host): a reconnect's jump hosts
    /// are let in as it is.
    pub(super) fn reserve(
        &self,
        key: &SessionKey,
        via: &[SessionKey],
    ) -> Result<Reserved<'_>, SshError> {
        // Checked and taken under the table's lock, so concurrent connects
        // to different hosts cannot all pass the check.
        let live = self.live();
        if live.contains_key(key) || via.iter().any(|k| live.contains_key(k)) {
            return Ok(Reserved(None));
        }
        let connecting = &self.inner.connecting;
        let max = self.inner.config.max_sessions;
        let open = live.values().filter(|c| c.alive()).count();
        let pending = connecting.load(Ordering::Relaxed);
        if open + pending >= max {
            let counted = match pending {
                0 => format!("{open} SSH sessions are open"),
                n => format!("{open} SSH sessions are open and {n} more being connected"),
            };
            return Err(SshError::Limit(format!(
                "resource limit reached: {counted}, and this server keeps {max} \
                 (--max-sessions); close one with close_session (list_sessions shows the open \
                 ones), or wait for the connections in progress, before connecting to {key}"
            )));
        }
        connecting.fetch_add(1, Ordering::Relaxed);
        Ok(Reserved(Some(connecting)))
    }
}
