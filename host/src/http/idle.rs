//! Dropping MCP sessions idle past `--http-session-idle`, and bounding how
//! many there are.
//!
//! Idle means no request and no answer still streaming. rmcp's own
//! keep-alive counts only messages, so a long call that prints nothing
//! would be cut off in the middle; here an open response keeps its
//! session, and a client away longer than the limit loses it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::transport::streamable_http_server::session::SessionManager as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio_util::sync::CancellationToken;

/// MCP sessions open at once, all clients together: a new one past this
/// is refused (503) until one ends.
pub(crate) const MAX_SESSIONS: usize = 1024;

#[derive(Default)]
struct Entry {
    last: Option<Instant>,
    streaming: u32,
}

/// Which sessions are in use.
#[derive(Default)]
pub(crate) struct Activity {
    sessions: Mutex<HashMap<String, Entry>>,
}

/// Held while a request of a session is served, its answer included.
pub(crate) struct InUse {
    activity: Arc<Activity>,
    id: String,
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Session `id` is in use until the returned guard drops.
    pub(crate) fn begin(self: &Arc<Self>, id: &str) -> InUse {
        let mut sessions = self.lock();
        let entry = sessions.entry(id.to_string()).or_default();
        entry.streaming += 1;
        entry.last = Some(Instant::now());
        InUse {
            activity: self.clone(),
            id: id.to_string(),
        }
    }

    /// How many sessions are tracked.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.lock().len()
    }

    /// Closes the sessions idle past `idle`, and forgets those rmcp has
    /// closed.
    async fn reap(&self, sessions: &LocalSessionManager, idle: Duration) {
        let live: Vec<_> = sessions.sessions.read().await.keys().cloned().collect();
        let now = Instant::now();
        let idle_ones: Vec<_> = {
            let mut map = self.lock();
            let names: HashSet<String> = live.iter().map(|id| id.to_string()).collect();
            map.retain(|id, _| names.contains(id));
            live.into_iter()
                .filter(|id| {
                    let entry = map.entry(id.to_string()).or_default();
                    let last = *entry.last.get_or_insert(now);
                    entry.streaming == 0 && now.duration_since(last) >= idle
                })
                .collect()
        };
        for id in idle_ones {
            tracing::info!(session = %id, "MCP session idle past --http-session-idle: closed");
            let _ = sessions.close_session(&id).await;
            self.lock().remove(&*id);
        }
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut sessions = self.activity.lock();
        if let Some(entry) = sessions.get_mut(&self.id) {
            entry.streaming = entry.streaming.saturating_sub(1);
            entry.last = Some(Instant::now());
        }
    }
}

/// Closes idle sessions until `stop`.
pub(crate) fn spawn_reaper(
    activity: Arc<Activity>,
    sessions: Arc<LocalSessionManager>,
    idle: Duration,
    stop: CancellationToken,
) {
    let every = (idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => activity.reap(&sessions, idle).await,
                () = stop.cancelled() => return,
            }
        }
    });
}
