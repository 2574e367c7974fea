//! The host side of the WIT `jobs` interface: commands that outlive one
//! call. Starting one goes through the gate (grant, slot, audit, clock)
//! and the job keeps the slot until it ends; stopping one is timed there.
//! Status, reads and listing touch no server: the job table's owner check
//! is all they need.

use std::time::Duration;

use super::authorize::{Access, Command};
use super::ssh::options_from_wit;
use super::target_from_wit;
use crate::plugins::bindings::{jobs, types};
use crate::plugins::bounded;
use crate::plugins::state::StoreState;
use crate::ssh::{self as core, SshError};

/// Largest read of a job's output in one call.
const MAX_JOB_READ: u32 = 4 << 20;

impl StoreState {
    /// Components that may see everything see every job; others only
    /// their own.
    fn job_owner(&self) -> Option<&str> {
        (!self.grant.see_all_sessions()).then_some(&*self.component)
    }
}

impl StoreState {
    #[tracing::instrument(skip_all, fields(component = %self.component, host = %bounded::clip(&target.host, bounded::MAX_FIELD)))]
    async fn start_job(
        &mut self,
        target: types::Target,
        request: jobs::JobRequest,
        options: core::CommandOptions,
    ) -> Result<jobs::JobInfo, SshError> {
        let mut target = target_from_wit(target);
        options.check().map_err(SshError::InvalidArgument)?;
        let mut pass = self.authorize(Access::command(
            &mut target,
            Command::Line(&request.command),
            &options,
        ))?;
        let request = core::JobRequest {
            command: request.command,
            timeout: request.timeout_ms.map(Duration::from_millis),
            slot: pass.take_slot(),
            options,
        };
        let owner = self.component.clone();
        let result = self.sessions.start_job(&target, request, owner).await;
        pass.finish(result).map(job_to_wit)
    }
}

impl jobs::Host for StoreState {
    async fn start(
        &mut self,
        target: types::Target,
        request: jobs::JobRequest,
    ) -> Result<jobs::JobInfo, SshError> {
        self.start_job(target, request, core::CommandOptions::default())
            .await
    }

    async fn start_with(
        &mut self,
        target: types::Target,
        request: jobs::JobRequest,
        options: types::CommandOptions,
    ) -> Result<jobs::JobInfo, SshError> {
        self.start_job(target, request, options_from_wit(options))
            .await
    }

    async fn status(&mut self, id: String) -> Result<jobs::JobInfo, SshError> {
        let owner = self.job_owner();
        self.sessions.jobs().status(&id, owner).map(job_to_wit)
    }

    async fn read(
        &mut self,
        id: String,
        which: jobs::OutputStream,
        offset: u64,
        max_bytes: u32,
    ) -> Result<jobs::Chunk, SshError> {
        let which = match which {
            jobs::OutputStream::Stdout => core::Stream::Stdout,
            jobs::OutputStream::Stderr => core::Stream::Stderr,
        };
        let max = max_bytes.min(MAX_JOB_READ) as usize;
        let owner = self.job_owner();
        self.sessions
            .jobs()
            .read(&id, owner, which, offset, max)
            .map(|c| jobs::Chunk {
                data: c.data,
                offset: c.offset,
                next_offset: c.next_offset,
                dropped: c.dropped,
                complete: c.complete,
            })
    }

    async fn interrupt(&mut self, id: String) -> Result<jobs::JobInfo, SshError> {
        let pass = self.authorize(Access::StopJob)?;
        let owner = self.job_owner().map(str::to_string);
        let result = self.sessions.jobs().interrupt(&id, owner.as_deref()).await;
        pass.finish(result).map(job_to_wit)
    }

    async fn list_jobs(&mut self) -> wasmtime::Result<Vec<jobs::JobInfo>> {
        Ok(self
            .sessions
            .jobs()
            .list(self.job_owner())
            .into_iter()
            .map(job_to_wit)
            .collect())
    }
}

fn job_to_wit(j: core::JobInfo) -> jobs::JobInfo {
    jobs::JobInfo {
        id: j.id,
        session: j.session,
        command: j.command,
        state: match j.state {
            core::JobState::Running => jobs::JobState::Running,
            core::JobState::Exited => jobs::JobState::Exited,
            core::JobState::Killed => jobs::JobState::Killed,
            core::JobState::Lost => jobs::JobState::Lost,
        },
        exit_status: j.exit_status,
        exit_signal: j.exit_signal,
        duration_ms: j.duration.as_millis() as u64,
        stdout_bytes: j.stdout_bytes,
        stderr_bytes: j.stderr_bytes,
        remote_stopped: j.remote_stopped,
    }
}
