//! How much request data all clients may have in the server at once.
//!
//! One request may carry up to [`crate::MAX_MESSAGE`] (a write's content),
//! and up to 512 connections are served at once: without a bound across
//! them, one token holder sending large bodies side by side could make the
//! server hold tens of GiB. A request larger than [`SMALL`] (or of unknown
//! length) takes its size from a budget of [`BUDGET`] bytes until its
//! answer has been sent: while the budget is spent, it waits up to
//! [`WAIT`], then gets 503. Smaller requests (every call but large writes)
//! never wait.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of large requests in the server at once, all clients together.
pub(crate) const BUDGET: usize = 256 << 20;
/// Requests up to this size do not count.
pub(crate) const SMALL: usize = 1 << 20;
/// How long a large request waits for room.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// The budget; its unit is a KiB.
pub(crate) struct BodyBudget {
    kib: Arc<Semaphore>,
}

impl Default for BodyBudget {
    fn default() -> Self {
        Self::new(BUDGET)
    }
}

impl BodyBudget {
    pub(crate) fn new(bytes: usize) -> Self {
        Self {
            kib: Arc::new(Semaphore::new(bytes.div_ceil(1024))),
        }
    }

    /// Room for a request with `headers`: `Ok(None)` for a small one,
    /// `Ok(Some(permit))` to hold until its answer is sent, `Err(())` when
    /// none was made within [`WAIT`].
    pub(crate) async fn admit(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<OwnedSemaphorePermit>, ()> {
        self.admit_within(headers, WAIT).await
    }

    async fn admit_within(
        &self,
        headers: &HeaderMap,
        wait: Duration,
    ) -> Result<Option<OwnedSemaphorePermit>, ()> {
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
        let kib = u32::try_from(size.div_ceil(1024)).unwrap_or(u32::MAX);
        match tokio::time::timeout(wait, self.kib.clone().acquire_many_owned(kib)).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(()),
        }
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
        let budget = BodyBudget::new(200 << 20);
        let first = budget.admit_within(&sized(99 << 20), SHORT).await.unwrap();
        let second = budget.admit_within(&sized(99 << 20), SHORT).await.unwrap();
        assert!(first.is_some() && second.is_some());
        // No room for a third: refused after the wait.
        assert!(budget.admit_within(&sized(99 << 20), SHORT).await.is_err());
        // Nor for a chunked one, counted at the largest size.
        let mut chunked = HeaderMap::new();
        chunked.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        assert!(budget.admit_within(&chunked, SHORT).await.is_err());
        // Small requests pass meanwhile.
        assert!(
            budget
                .admit_within(&sized(SMALL), SHORT)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            budget
                .admit_within(&HeaderMap::new(), SHORT)
                .await
                .unwrap()
                .is_none()
        );
        // Room comes back when an answer has been sent.
        drop(first);
        assert!(
            budget
                .admit_within(&sized(99 << 20), SHORT)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_waiting_request_gets_room_when_it_is_freed() {
        let budget = Arc::new(BodyBudget::new(100 << 20));
        let held = budget.admit_within(&sized(90 << 20), SHORT).await.unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget
                    .admit_within(&sized(90 << 20), WAIT)
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
