//! The replay buffer behind `Last-Event-ID`: the last events of every SSE
//! stream, kept after its call has ended, so a client whose connection
//! dropped gets its result even when the call finished before it came
//! back. rmcp's own per-stream cache forgets a call's stream the moment
//! the call answers; an event store replaces it.
//!
//! A reconnect gets the events after the one it names, then, while the
//! call still runs, the ones that follow as they come; the stream ends
//! with the call's answer. Event ids are `STREAM/INDEX` where STREAM is
//! rmcp's random per-stream id (or the session's id for its standalone
//! stream): as hard to guess as a session id, and only ever sent to the
//! client whose stream it is.
//!
//! Bounded: [`EVENTS_PER_STREAM`] events per stream (the oldest dropped;
//! a call's answer is its stream's last event, so it stays), at most
//! [`MAX_STREAMS`] streams and [`MAX_BYTES`] of events, and a stream whose
//! call ended is forgotten after [`ENDED_TTL`]. Room is made by forgetting
//! streams whose call has ended, oldest first, before any still running:
//! another client's many short calls cannot push out a long call.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rmcp::model::ServerJsonRpcMessage;
use rmcp::transport::streamable_http_server::session::{
    EventStore, EventStoreError, EventStream, ServerSseMessage,
};
use tokio::sync::mpsc;

/// Events kept per stream.
const EVENTS_PER_STREAM: usize = 64;
/// Streams kept at once; the least recently written go first.
const MAX_STREAMS: usize = 1024;
/// Bytes of events kept, all streams together (a 16 MiB result is one
/// event).
const MAX_BYTES: usize = 128 << 20;
/// How long a stream is kept after its call answered.
const ENDED_TTL: Duration = Duration::from_secs(10 * 60);
/// Events a reconnected reader may fall behind before it is cut off (it
/// reconnects from its last event).
const READER_BACKLOG: usize = 256;
/// Reconnected readers a running stream follows at once; a new one past
/// this cuts the oldest off. A client reads a stream once: the rest are
/// readers that went away, or a client resuming again and again, each
/// holding a channel until the stream's next event.
const MAX_READERS: usize = 8;

/// Why a `Last-Event-ID` cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("malformed Last-Event-ID")]
    Malformed,
    #[error("no such stream (it ended long ago, or never was)")]
    Unknown,
}

#[derive(Default)]
struct Log {
    /// `(index, event)`, oldest first.
    events: VecDeque<(u64, ServerSseMessage)>,
    next: u64,
    /// When its call answered.
    ended: Option<Instant>,
    written: Option<Instant>,
    /// Bytes of its events, about.
    bytes: usize,
    /// Reconnected readers waiting for what comes next.
    readers: Vec<mpsc::Sender<ServerSseMessage>>,
}

/// The in-memory event store; see the module header.
#[derive(Default)]
pub(crate) struct Replay {
    streams: Mutex<HashMap<String, Log>>,
    /// Bytes of every stream's events.
    bytes: Mutex<usize>,
}

fn is_answer(event: &ServerSseMessage) -> bool {
    matches!(
        event.message.as_deref(),
        Some(ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_))
    )
}

impl Replay {
    fn store(&self, stream: &str, event: &ServerSseMessage) -> String {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if !streams.contains_key(stream) {
            streams.retain(|_, log| {
                let keep = log.ended.is_none_or(|at| now - at < ENDED_TTL);
                if !keep {
                    *total = total.saturating_sub(log.bytes);
                }
                keep
            });
            if streams.len() >= MAX_STREAMS {
                evict(&mut streams, &mut total, stream, true);
            }
        }
        let size = event_size(event);
        while *total + size > MAX_BYTES && evict(&mut streams, &mut total, stream, false) {}
        *total += size;
        let log = streams.entry(stream.to_string()).or_default();
        log.bytes += size;
        let index = log.next;
        log.next += 1;
        log.written = Some(now);
        let id = format!("{stream}/{index}");
        let mut event = event.clone();
        event.event_id = Some(id.clone());
        log.readers
            .retain(|reader| reader.try_send(event.clone()).is_ok());
        if is_answer(&event) {
            log.ended = Some(now);
            log.readers.clear();
        }
        if log.events.len() >= EVENTS_PER_STREAM
            && let Some((_, dropped)) = log.events.pop_front()
        {
            let dropped = event_size(&dropped);
            log.bytes = log.bytes.saturating_sub(dropped);
            *total = total.saturating_sub(dropped);
        }
        log.events.push_back((index, event));
        id
    }

    fn replay(&self, last: &str) -> Result<EventStream, ReplayError> {
        let (stream, index) = last.rsplit_once('/').ok_or(ReplayError::Malformed)?;
        let index: u64 = index.parse().map_err(|_| ReplayError::Malformed)?;
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let log = streams.get_mut(stream).ok_or(ReplayError::Unknown)?;
        let missed: Vec<ServerSseMessage> = log
            .events
            .iter()
            .filter(|(i, _)| *i > index)
            .map(|(_, e)| e.clone())
            .collect();
        let backlog = futures::stream::iter(missed);
        if log.ended.is_some() {
            return Ok(Box::pin(backlog));
        }
        log.readers.retain(|reader| !reader.is_closed());
        if log.readers.len() >= MAX_READERS {
            log.readers.remove(0);
        }
        let (tx, rx) = mpsc::channel(READER_BACKLOG);
        log.readers.push(tx);
        Ok(Box::pin(backlog.chain(tokio_stream_from(rx))))
    }
}

/// About how many bytes `event` holds: its message as JSON, and its id.
fn event_size(event: &ServerSseMessage) -> usize {
    event
        .message
        .as_deref()
        .and_then(|m| serde_json::to_string(m).ok())
        .map_or(64, |m| m.len() + 64)
}

/// Forgets one stream other than `keep`: the one whose call ended first,
/// else (when `running_too`) the least recently written. Returns whether
/// one went.
fn evict(
    streams: &mut HashMap<String, Log>,
    total: &mut usize,
    keep: &str,
    running_too: bool,
) -> bool {
    let ended = streams
        .iter()
        .filter(|(k, log)| k.as_str() != keep && log.ended.is_some())
        .min_by_key(|(_, log)| log.ended)
        .map(|(k, _)| k.clone());
    let victim = ended.or_else(|| {
        running_too
            .then(|| {
                streams
                    .iter()
                    .filter(|(k, _)| k.as_str() != keep)
                    .min_by_key(|(_, log)| log.written)
                    .map(|(k, _)| k.clone())
            })
            .flatten()
    });
    match victim.and_then(|k| streams.remove(&k)) {
        Some(log) => {
            *total = total.saturating_sub(log.bytes);
            true
        }
        None => false,
    }
}

/// An mpsc receiver as a stream (what `tokio_stream::ReceiverStream`
/// does, without the dependency).
fn tokio_stream_from(
    rx: mpsc::Receiver<ServerSseMessage>,
) -> impl futures::Stream<Item = ServerSseMessage> + Send + Sync + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        Some((event, rx))
    })
}

#[async_trait::async_trait]
impl EventStore for Replay {
    async fn store_event(
        &self,
        stream_id: &str,
        event: &ServerSseMessage,
    ) -> Result<String, EventStoreError> {
        Ok(self.store(stream_id, event))
    }

    async fn replay_events_after(
        &self,
        last_event_id: &str,
    ) -> Result<EventStream, EventStoreError> {
        Ok(self.replay(last_event_id)?)
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ErrorData, JsonRpcError, NumberOrString};

    use super::*;

    fn answer(id: i64) -> ServerSseMessage {
        ServerSseMessage::from_message(ServerJsonRpcMessage::Error(JsonRpcError::new(
            Some(NumberOrString::Number(id)),
            ErrorData::internal_error("x", None),
        )))
    }

    #[tokio::test]
    async fn an_ended_stream_replays_what_followed_the_last_event_seen() {
        let replay = Replay::default();
        let priming = replay.store("s", &ServerSseMessage::default());
        replay.store("s", &answer(1));
        let events: Vec<_> = replay.replay(&priming).unwrap().collect().await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_id.as_deref(), Some("s/1"));
        assert!(is_answer(&events[0]));
        assert!(matches!(replay.replay("t/0"), Err(ReplayError::Unknown)));
        assert!(matches!(replay.replay("s"), Err(ReplayError::Malformed)));
    }

    #[tokio::test]
    async fn a_running_stream_is_followed_until_its_answer() {
        let replay = Replay::default();
        let priming = replay.store("s", &ServerSseMessage::default());
        let reader = replay.replay(&priming).unwrap();
        replay.store("s", &answer(1));
        let events: Vec<_> = reader.collect().await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_id.as_deref(), Some("s/1"));
    }

    #[tokio::test]
    async fn many_short_calls_do_not_push_out_a_long_one() {
        let replay = Replay::default();
        let long = replay.store("long", &ServerSseMessage::default());
        for i in 0..(MAX_STREAMS as i64 + 100) {
            let stream = format!("short{i}");
            replay.store(&stream, &ServerSseMessage::default());
            replay.store(&stream, &answer(i));
        }
        let reader = replay.replay(&long).unwrap();
        replay.store("long", &answer(-1));
        let events: Vec<_> = reader.collect().await;
        assert_eq!(events.len(), 1, "the long call's answer is still delivered");
    }

    #[tokio::test]
    async fn readers_that_went_away_or_resume_again_and_again_are_not_kept() {
        let replay = Replay::default();
        let priming = replay.store("s", &ServerSseMessage::default());
        let readers = |replay: &Replay| replay.streams.lock().unwrap()["s"].readers.len();
        // Resumed and dropped at once, over and over, on a quiet call.
        for _ in 0..1000 {
            drop(replay.replay(&priming).unwrap());
        }
        assert!(readers(&replay) <= 1, "{}", readers(&replay));
        // Resumed and kept: the oldest are cut off, the newest follow.
        let kept: Vec<_> = (0..20).map(|_| replay.replay(&priming).unwrap()).collect();
        assert_eq!(readers(&replay), MAX_READERS);
        replay.store("s", &answer(1));
        let mut got = vec![];
        for reader in kept {
            got.push(reader.collect::<Vec<_>>().await.len());
        }
        assert_eq!(got[..20 - MAX_READERS], vec![0; 20 - MAX_READERS]);
        assert_eq!(got[20 - MAX_READERS..], vec![1; MAX_READERS]);
    }

    #[test]
    fn the_bytes_kept_stay_under_the_budget() {
        let replay = Replay::default();
        let big = ServerSseMessage::from_message(ServerJsonRpcMessage::Error(JsonRpcError::new(
            Some(NumberOrString::Number(1)),
            ErrorData::internal_error("x".repeat(8 << 20), None),
        )));
        for i in 0..40 {
            replay.store(&format!("s{i}"), &big);
        }
        let total = *replay.bytes.lock().unwrap();
        assert!(total <= MAX_BYTES, "{total}");
    }
}
