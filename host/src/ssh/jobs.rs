//! Background jobs: commands that outlive the call that started them.
//!
//! A job runs on its session's connection in a task of its own. Each output
//! stream goes into a bounded ring: when the ring is full its oldest bytes
//! are dropped and counted, so a reader paging by offset learns exactly what
//! it missed. A job whose connection dies is `Lost`, never `Exited`.
//! Finished jobs are kept in a bounded history.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::SshError;
use super::exec::{Ending, OutputSink};
use super::output::utf8_floor;

/// What to run in the background.
#[derive(Debug, Default)]
pub struct JobRequest {
    pub command: String,
    pub timeout: Option<Duration>,
    /// Held until the job ends: a caller's concurrency slot (a grant's
    /// `max_concurrency`), so a job counts like any running command.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Where, with what, and as whom.
    pub options: super::CommandOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Exited,
    Killed,
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A job as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    pub id: String,
    pub session: String,
    pub command: String,
    pub state: JobState,
    pub exit_status: Option<u32>,
    pub exit_signal: Option<String>,
    pub duration: Duration,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub remote_stopped: Option<bool>,
}

/// A slice of a stream; see the WIT `chunk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub offset: u64,
    pub next_offset: u64,
    pub dropped: u64,
    pub complete: bool,
}

/// The last `cap` bytes of a stream, and where they start in it.
#[derive(Debug)]
pub(crate) struct Ring {
    buf: VecDeque<u8>,
    cap: usize,
    /// Stream offset of `buf[0]`: everything before it was dropped.
    start: u64,
}

impl Ring {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::new(),
            cap,
            start: 0,
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    pub(crate) fn push(&mut self, data: &[u8]) {
        let data = if data.len() > self.cap {
            self.start += (data.len() - self.cap) as u64;
            &data[data.len() - self.cap..]
        } else {
            data
        };
        let overflow = (self.buf.len() + data.len()).saturating_sub(self.cap);
        self.buf.drain(..overflow);
        self.start += overflow as u64;
        self.buf.extend(data);
    }

    /// Up to `max` bytes from `offset`, cut before a partial UTF-8
    /// character unless that would return nothing.
    pub fn read(&self, offset: u64, max: usize) -> (Vec<u8>, u64, u64) {
        let from = offset.clamp(self.start, self.total());
        let dropped = from - offset.min(from);
        let skip = (from - self.start) as usize;
        let mut data: Vec<u8> = self.buf.iter().skip(skip).take(max).copied().collect();
        let whole = utf8_floor(&data);
        if whole > 0 {
            data.truncate(whole);
        }
        (data, from, dropped)
    }
}

struct Output {
    stdout: Ring,
    stderr: Ring,
    state: JobState,
    ending: Ending,
    ended: Option<Instant>,
}

pub(crate) struct Job {
    id: String,
    session: String,
    command: String,
    owner: Arc<str>,
    started: Instant,
    output: Mutex<Output>,
    /// Fired by `interrupt`; the job's task stops the command.
    pub(crate) interrupt: CancellationToken,
    state_tx: watch::Sender<JobState>,
}

impl Job {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self) -> JobInfo {
        let o = self.lock();
        JobInfo {
            id: self.id.clone(),
            session: self.session.clone(),
            command: self.command.clone(),
            state: o.state,
            exit_status: o.ending.exit_status,
            exit_signal: o.ending.exit_signal.clone(),
            duration: o.ended.unwrap_or_else(Instant::now) - self.started,
            stdout_bytes: o.stdout.total(),
            stderr_bytes: o.stderr.total(),
            remote_stopped: o.ending.remote_stopped,
        }
    }

    /// Records how the job's command ended.
    pub(crate) fn finish(&self, ending: Result<Ending, String>) {
        let state = {
            let mut o = self.lock();
            o.state = match &ending {
                Ok(e) if e.lost => JobState::Lost,
                Ok(e) if e.timed_out || e.cancelled => JobState::Killed,
                Ok(_) => JobState::Exited,
                Err(_) => JobState::Lost,
            };
            if let Ok(e) = ending {
                o.ending = e;
            }
            o.ended = Some(Instant::now());
            o.state
        };
        self.state_tx.send_replace(state);
    }
}

/// Feeds a job's rings from its command.
pub(crate) struct JobSink(pub(crate) Arc<Job>);

impl OutputSink for JobSink {
    fn stdout(&mut self, data: &[u8]) {
        self.0.lock().stdout.push(data);
    }

    fn stderr(&mut self, data: &[u8]) {
        self.0.lock().stderr.push(data);
    }
}

/// Every job of this server. `owner: None` in a lookup sees every job;
/// a component name sees only that component's.
pub struct Jobs {
    jobs: Mutex<VecDeque<Arc<Job>>>,
    next_id: AtomicU64,
    ring_bytes: usize,
    history: usize,
}

impl Jobs {
    pub(crate) fn new(ring_bytes: usize, history: usize) -> Self {
        Self {
            jobs: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            ring_bytes,
            history,
        }
    }

    fn all(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Job>>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new running job, dropping the oldest finished ones
    /// beyond the history bound.
    pub(crate) fn create(&self, session: String, command: String, owner: Arc<str>) -> Arc<Job> {
        let id = format!("job-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (state_tx, _) = watch::channel(JobState::Running);
        let job = Arc::new(Job {
            id,
            session,
            command,
            owner,
            started: Instant::now(),
            output: Mutex::new(Output {
                stdout: Ring::new(self.ring_bytes),
                stderr: Ring::new(self.ring_bytes),
                state: JobState::Running,
                ending: Ending::default(),
                ended: None,
            }),
            interrupt: CancellationToken::new(),
            state_tx,
        });
        let mut all = self.all();
        all.push_back(job.clone());
        let finished = all
            .iter()
            .filter(|j| j.lock().state != JobState::Running)
            .count();
        let mut excess = finished.saturating_sub(self.history);
        all.retain(|j| {
            let drop = excess > 0 && j.lock().state != JobState::Running;
            excess -= usize::from(drop);
            !drop
        });
        job
    }

    /// The job `id`, if `owner` may see it (`None`: any owner).
    fn get(&self, id: &str, owner: Option<&str>) -> Result<Arc<Job>, SshError> {
        self.all()
            .iter()
            .find(|j| j.id == id && owner.is_none_or(|o| *j.owner == *o))
            .cloned()
            .ok_or_else(|| {
                SshError::InvalidArgument(format!(
                    "no job {id:?}: it never existed, or it left the history of finished jobs"
                ))
            })
    }

    pub fn status(&self, id: &str, owner: Option<&str>) -> Result<JobInfo, SshError> {
        Ok(self.get(id, owner)?.info())
    }

    pub fn read(
        &self,
        id: &str,
        owner: Option<&str>,
        which: Stream,
        offset: u64,
        max: usize,
    ) -> Result<Chunk, SshError> {
        let job = self.get(id, owner)?;
        let o = job.lock();
        let ring = match which {
            Stream::Stdout => &o.stdout,
            Stream::Stderr => &o.stderr,
        };
        let (data, from, dropped) = ring.read(offset, max);
        let next_offset = from + data.len() as u64;
        Ok(Chunk {
            complete: o.state != JobState::Running && next_offset >= ring.total(),
            data,
            offset: from,
            next_offset,
            dropped,
        })
    }

    /// Stops a running job and waits until its task has recorded the end.
    pub async fn interrupt(&self, id: &str, owner: Option<&str>) -> Result<JobInfo, SshError> {
        let job = self.get(id, owner)?;
        let mut state = job.state_tx.subscribe();
        job.interrupt.cancel();
        // The stop itself is bounded (TERM, grace, KILL, check); this only
        // guards against a task that never reports.
        let waited = tokio::time::timeout(
            Duration::from_secs(30),
            state.wait_for(|s| *s != JobState::Running),
        )
        .await;
        if waited.is_err() {
            return Err(SshError::Timeout(format!(
                "job {id} did not stop within 30 s"
            )));
        }
        Ok(job.info())
    }

    pub fn list(&self, owner: Option<&str>) -> Vec<JobInfo> {
        self.all()
            .iter()
            .filter(|j| owner.is_none_or(|o| *j.owner == *o))
            .map(|j| j.info())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_the_tail_and_counts_what_it_dropped() {
        let mut r = Ring::new(10);
        r.push(b"0123456789");
        r.push(b"abcde");
        assert_eq!(r.total(), 15);
        let (data, from, dropped) = r.read(0, 100);
        assert_eq!((data.as_slice(), from, dropped), (&b"56789abcde"[..], 5, 5));
        let (data, from, dropped) = r.read(12, 2);
        assert_eq!((data.as_slice(), from, dropped), (&b"cd"[..], 12, 0));
        let (data, from, _) = r.read(99, 10);
        assert_eq!((data.len(), from), (0, 15));
        r.push(&[b'x'; 25]);
        assert_eq!((r.total(), r.read(0, 100).1), (40, 30));
    }

    #[test]
    fn reads_stop_before_a_split_character() {
        let mut r = Ring::new(100);
        r.push("aé".as_bytes());
        let (data, _, _) = r.read(0, 2);
        assert_eq!(data, b"a");
    }

    #[test]
    fn finished_jobs_beyond_the_history_are_dropped() {
        let jobs = Jobs::new(16, 2);
        let owner: Arc<str> = "t".into();
        let first: Vec<_> = (0..3)
            .map(|_| jobs.create("s".into(), "c".into(), owner.clone()))
            .collect();
        for j in &first {
            j.finish(Ok(Ending::default()));
        }
        let running = jobs.create("s".into(), "c".into(), owner.clone());
        let ids: Vec<_> = jobs.list(None).into_iter().map(|i| i.id).collect();
        assert_eq!(
            ids,
            [first[1].id.clone(), first[2].id.clone(), running.id.clone()]
        );
        assert!(jobs.status(&first[0].id, None).is_err());
        assert!(jobs.status(&running.id, Some("someone else")).is_err());
    }
}
