//! The time budget of one tool call: wall time since the call started,
//! less the time spent inside those of this host's own imports that wait
//! on the network on the guest's behalf (`ssh` exec, `jobs` start and
//! interrupt). Quick imports (`log`, `progress`, job status) stay guest
//! time, so that a loop of cheap host calls cannot escape the budget.
//!
//! Epochs tick only while guest code runs, so they cannot see a guest that
//! waits in WASI (a sleep, a poll on a clock) without burning CPU: that
//! time must count too, or a sleeping guest holds its call, or the server's
//! startup, for as long as it likes. The clock is shared with a watchdog
//! task, hence the lock; every section under it is a few field updates.
//!
//! A cancelled call's budget is cut to a short grace of guest time
//! ([`GuestClock::cut`]): its imports stop their commands on their own
//! time, and a guest that computes or sleeps instead of returning is
//! dropped then, not when its whole budget is spent.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shortest sleep of the watchdog while a host import runs: the budget
/// stands still then, and re-checking more often would only spin.
const MIN_REARM: Duration = Duration::from_millis(10);

/// One call's guest clock.
#[derive(Clone, Debug)]
pub(crate) struct GuestClock {
    inner: Arc<Mutex<Inner>>,
    budget: Duration,
    /// Wakes the watchdog when the budget is cut.
    cut: Arc<tokio::sync::Notify>,
}

#[derive(Debug)]
struct Inner {
    started: Instant,
    /// Host import time of the imports that have returned.
    host_total: Duration,
    /// When the outermost running host import began.
    in_host_since: Option<Instant>,
    /// Host imports running now (they do not nest today, but may).
    depth: u32,
    /// Guest time allowed in all: the budget, or less once cut.
    limit: Duration,
}

impl Inner {
    fn host_time(&self, now: Instant) -> Duration {
        self.host_total
            + self
                .in_host_since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// Time charged to the guest so far: computing and waiting alike.
    fn guest_time(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
            .saturating_sub(self.host_time(now))
    }
}

impl GuestClock {
    /// Starts the clock of a call allowed `budget` of guest time.
    pub(crate) fn start(budget: Duration) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                started: Instant::now(),
                host_total: Duration::ZERO,
                in_host_since: None,
                depth: 0,
                limit: budget,
            })),
            budget,
            cut: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn budget(&self) -> Duration {
        self.budget
    }

    /// Time spent in this host's own imports so far.
    pub(crate) fn host_time(&self) -> Duration {
        self.lock().host_time(Instant::now())
    }

    /// Guest time left before the budget is spent.
    pub(crate) fn remaining(&self) -> Duration {
        let inner = self.lock();
        inner.limit.saturating_sub(inner.guest_time(Instant::now()))
    }

    /// Leaves the guest at most `grace` more of its own time.
    pub(crate) fn cut(&self, grace: Duration) {
        {
            let mut inner = self.lock();
            inner.limit = inner.limit.min(inner.guest_time(Instant::now()) + grace);
        }
        self.cut.notify_waiters();
    }

    /// Stops charging the guest until the returned guard is dropped: for a
    /// host import that waits on the network on the guest's behalf.
    pub(crate) fn in_host(&self) -> InHost {
        let mut inner = self.lock();
        if inner.depth == 0 {
            inner.in_host_since = Some(Instant::now());
        }
        inner.depth += 1;
        InHost {
            clock: self.clone(),
        }
    }

    /// Resolves once the guest has spent its budget; never while a host
    /// import runs.
    pub(crate) async fn expired(&self) {
        loop {
            // Registered before the budget is read: a cut in between
            // still wakes this wait.
            let cut = self.cut.notified();
            let left = self.remaining();
            if left.is_zero() {
                return;
            }
            let in_host = self.lock().depth > 0;
            let wait = if in_host { left.max(MIN_REARM) } else { left };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cut => {}
            }
        }
    }
}

/// A host import in progress; see [`GuestClock::in_host`].
#[must_use]
pub(crate) struct InHost {
    clock: GuestClock,
}

impl Drop for InHost {
    fn drop(&mut self) {
        let mut inner = self.clock.lock();
        inner.depth = inner.depth.saturating_sub(1);
        if inner.depth == 0
            && let Some(since) = inner.in_host_since.take()
        {
            inner.host_total += since.elapsed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_counts_against_the_budget() {
        let clock = GuestClock::start(Duration::from_millis(50));
        let started = Instant::now();
        // The guest does nothing at all: still, its time runs out.
        clock.expired().await;
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(clock.remaining().is_zero());
    }

    #[tokio::test]
    async fn time_inside_host_imports_does_not_count() {
        let clock = GuestClock::start(Duration::from_millis(100));
        {
            let _host = clock.in_host();
            let nested = clock.in_host();
            tokio::time::sleep(Duration::from_millis(150)).await;
            drop(nested);
            // Still inside the outer import: nothing is charged yet.
            assert!(clock.remaining() > Duration::from_millis(50));
            assert!(!clock.remaining().is_zero());
        }
        assert!(clock.host_time() >= Duration::from_millis(150));
        assert!(!clock.remaining().is_zero());
        let started = Instant::now();
        clock.expired().await;
        assert!(started.elapsed() >= Duration::from_millis(40));
    }

    #[tokio::test]
    async fn a_cut_wakes_the_watchdog_and_leaves_only_the_grace() {
        let clock = GuestClock::start(Duration::from_secs(60));
        let watchdog = tokio::spawn({
            let clock = clock.clone();
            async move { clock.expired().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let started = Instant::now();
        clock.cut(Duration::from_millis(50));
        assert!(clock.remaining() <= Duration::from_millis(50));
        watchdog.await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert!(started.elapsed() < Duration::from_secs(5));
        // A later, longer grace gives nothing back.
        clock.cut(Duration::from_secs(30));
        assert!(clock.remaining().is_zero());
    }

    #[tokio::test]
    async fn a_cut_does_not_count_the_host_import_that_stops_a_command() {
        let clock = GuestClock::start(Duration::from_secs(60));
        let host = clock.in_host();
        clock.cut(Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!clock.remaining().is_zero());
        drop(host);
        let started = Instant::now();
        clock.expired().await;
        assert!(started.elapsed() >= Duration::from_millis(40));
    }
}
