//! How much request data all clients may have in the server at once.
//!
//! One request may carry up to [`crate::MAX_MESSAGE`] (a write's content),
//! and up to 512 connections are served at once: without a bound across
//! them, one token holder sending large bodies side by side could make the
//! server hold tens of GiB. A request larger than [`SMALL`] (or of unknown
//! length) takes its size from a budget of [`BUDGET`] bytes until its
//! answer has been sent, and from its client's share of it ([`SHARE`]), so
//! one client announcing large bodies and sending nothing cannot hold all
//! of it. While there is no room, it waits up to [`WAIT`], then gets 503.
//! Smaller requests (every call but large writes) never wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of large requests in the server at once, all clients together.
pub(crate) const BUDGET: usize = 256 << 20;
/// Bytes of large requests one client may have in the server at once: the
/// largest request fits, and half the budget stays for the others.
pub(crate) const SHARE: usize = BUDGET / 2;
/// Requests up to this size do not count.
pub(crate) const SMALL: usize = 1 << 20;
/// How long a large request waits for room.
pub(crate) const WAIT: Duration = Duration::from_secs(30);
/// Clients whose shares are kept while none is in use.
const IDLE_SHARES: usize = 1024;

/// The budget and the clients' shares; their unit is a KiB.
pub(crate) struct BodyBudget {
    all: Arc<Semaphore>,
    share: u32,
    shares: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Room taken for one request, given back when dropped.
pub(crate) struct Room {
    _share: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

impl Default for BodyBudget {
    fn default() -> Self {
        Self::new(BUDGET, SHARE)
    }
}

fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

impl BodyBudget {
    pub(crate) fn new(bytes: usize, share: usize) -> Self {
        Self {
            all: Arc::new(Semaphore::new(bytes.div_ceil(1024))),
            share: kib(share),
            shares: Mutex::default(),
        }
    }

    /// Room for a request of `client` with `headers`: `Ok(None)` for a
    /// small one, `Ok(Some(room))` to hold until its answer is sent,
    /// `Err(())` when none was made within [`WAIT`].
    pub(crate) async fn admit(
        &self,
        client: &str,
        headers: &HeaderMap,
    ) -> Result<Option<Room>, ()> {
        self.admit_within(client, headers, WAIT).await
    }

    async fn admit_within(
        &self,
        client: &str,
        headers: &HeaderMap,
        wait: Duration,
    ) -> Result<Option<Room>, ()> {
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let size = match length {
            Some(n) if n <= SMALL => return Ok(None),
            // rmcp refuses more than this (413) before it has read it.
            Some(n) => n.min(crate::MAX_MESSAGE),
            None if headers.contains_key(header::TRANSFER_ENCODING) => crate::MAX_MESSAGE,
            None => return Ok(None),
        };
        let need = kib(size).min(self.share);
        let share = self.share_of(client);
        let taken = async {
            let share = share.acquire_many_owned(need).await.ok()?;
            let all = self.all.clone().acquire_many_owned(need).await.ok()?;
            Some(Room {
                _share: share,
                _all: all,
            })
        };
        match tokio::time::timeout(wait, taken).await {
            Ok(Some(room)) => Ok(Some(room)),
            _ => Err(()),
        }
    }

    fn share_of(&self, client: &str) -> Arc<Semaphore> {
        let mut shares = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        if shares.len() >= IDLE_SHARES && !shares.contains_key(client) {
            let full = self.share as usize;
            shares.retain(|_, s| s.available_permits() < full);
        }
        shares
            .entry(client.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.share as usize)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(50);

    fn sized(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, n.to_string().parse().unwrap());
        h
    }

    #[tokio::test]
    async fn large_requests_share_the_budget_and_small_ones_never_wait() {
        let budget = BodyBudget::new(200 << 20, 200 << 20);
        let first = budget
            .admit_within("a", &sized(99 << 20), SHORT)
            .await
            .unwrap();
        let second = budget
            .admit_within("a", &sized(99 << 20), SHORT)
            .await
            .unwrap();
        assert!(first.is_some() && second.is_some());
        // No room for a third: refused after the wait.
        assert!(
            budget
                .admit_within("a", &sized(99 << 20), SHORT)
                .await
                .is_err()
        );
        // Nor for a chunked one, counted at the largest size.
        let mut chunked = HeaderMap::new();
        chunked.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(budget.admit_within("a", &chunked, SHORT).await.is_err());
        // Small requests pass meanwhile.
        assert!(
            budget
                .admit_within("a", &sized(SMALL), SHORT)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            budget
                .admit_within("a", &HeaderMap::new(), SHORT)
                .await
                .unwrap()
                .is_none()
        );
        // Room comes back when an answer has been sent.
        drop(first);
        assert!(
            budget
                .admit_within("a", &sized(99 << 20), SHORT)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn one_client_cannot_take_the_others_share() {
        let budget = BodyBudget::new(256 << 20, 128 << 20);
        let first = budget
            .admit_within("alice", &sized(99 << 20), SHORT)
            .await
            .unwrap();
        assert!(first.is_some());
        // Past her share: she waits, however much the budget has left.
        assert!(
            budget
                .admit_within("alice", &sized(99 << 20), SHORT)
                .await
                .is_err()
        );
        // Bob's share is his own.
        let bob = budget
            .admit_within("bob", &sized(99 << 20), SHORT)
            .await
            .unwrap();
        assert!(bob.is_some());
        drop(first);
        assert!(
            budget
                .admit_within("alice", &sized(99 << 20), SHORT)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_waiting_request_gets_room_when_it_is_freed() {
        let budget = Arc::new(BodyBudget::new(100 << 20, 100 << 20));
        let held = budget
            .admit_within("a", &sized(90 << 20), SHORT)
            .await
            .unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget
                    .admit_within("a", &sized(90 << 20), WAIT)
                    .await
                    .map(|p| p.is_some())
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished());
        drop(held);
        assert_eq!(waiting.await.unwrap(), Ok(true));
    }
}
