//! Per-call store state, and the host side of the WIT imports (`ssh`,
//! `log`) that a tool component calls.
//!
//! Guest-visible failures are WIT `ssh-error` values; a wasmtime `Err`
//! (a trap) is reserved for host bugs and limits.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use zeroize::Zeroizing;

use super::bindings::{log, ssh, types};
use super::grants::Grant;
use crate::ssh as core;

/// Everything one tool call's store holds.
pub(crate) struct StoreState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: StoreLimits,
    pub(crate) component: Arc<str>,
    pub(crate) grant: Arc<Grant>,
    pub(crate) sessions: core::SessionManager,
    /// Epoch ticks spent running guest code in this call.
    pub(crate) cpu_ticks: u64,
    pub(crate) cpu_budget_ticks: u64,
    pub(crate) stderr: MemoryOutputPipe,
    /// Cancelled when the MCP client cancels the call.
    pub(crate) cancel: CancellationToken,
    /// Time spent in host imports that wait on SSH, to tell guest time
    /// from network time.
    pub(crate) host_time: Duration,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl From<core::SshError> for types::SshError {
    fn from(e: core::SshError) -> Self {
        use core::SshError as E;
        match e {
            E::InvalidArgument(m) => Self::InvalidArgument(m),
            E::Connect(m) => Self::Connect(m),
            E::Auth(m) => Self::Auth(m),
            E::HostKey(m) => Self::HostKey(m),
            E::Timeout(m) => Self::Timeout(m),
            E::Channel(m) => Self::Channel(m),
            E::ConnectionLost(m) => Self::ConnectionLost(m),
            E::Denied(m) => Self::Denied(m),
            E::Cancelled(m) => Self::Cancelled(m),
            E::Other(m) => Self::Other(m),
        }
    }
}

fn target_from_wit(t: types::Target) -> core::Target {
    core::Target {
        host: t.host,
        username: t.username,
        port: t.port,
        credentials: t.credentials.map(|c| core::Credentials {
            password: c.password.map(Zeroizing::new),
            key_file: c.key_file.map(Into::into),
            passphrase: c.passphrase.map(Zeroizing::new),
        }),
    }
}

fn stream_to_wit(s: core::StreamOutput) -> ssh::StreamOutput {
    ssh::StreamOutput {
        head: s.head,
        tail: s.tail,
        total_bytes: s.total_bytes,
        truncated: s.truncated,
    }
}

impl types::Host for StoreState {}

impl ssh::Host for StoreState {
    #[tracing::instrument(skip_all, fields(component = %self.component, host = %target.host))]
    async fn exec(
        &mut self,
        target: types::Target,
        request: ssh::ExecRequest,
    ) -> wasmtime::Result<Result<ssh::ExecOutput, types::SshError>> {
        let target = target_from_wit(target);
        if let Err(why) = self.grant.check_target(&target) {
            return Ok(Err(types::SshError::Denied(why)));
        }
        let request = core::ExecRequest {
            command: request.command,
            timeout: request.timeout_ms.map(Duration::from_millis),
            max_output_bytes: request.max_output_bytes,
            cancel: self.cancel.clone(),
        };
        let started = std::time::Instant::now();
        let result = self.sessions.exec(&target, &request).await;
        self.host_time += started.elapsed();
        let out = match result {
            Ok(out) => out,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(Ok(ssh::ExecOutput {
            session: out.session,
            exit_status: out.exit_status,
            exit_signal: out.exit_signal,
            stdout: stream_to_wit(out.stdout),
            stderr: stream_to_wit(out.stderr),
            duration_ms: out.duration.as_millis() as u64,
            timed_out: out.timed_out,
            cancelled: out.cancelled,
        }))
    }

    async fn list_sessions(&mut self) -> wasmtime::Result<Vec<ssh::SessionInfo>> {
        if !self.grant.see_all_sessions {
            return Ok(Vec::new());
        }
        Ok(self
            .sessions
            .list()
            .into_iter()
            .map(|s| ssh::SessionInfo {
                key: s.key.to_string(),
                username: s.key.username,
                host: s.key.host,
                port: s.key.port,
                active_commands: s.active_commands,
                age_ms: s.age.as_millis() as u64,
                idle_ms: s.idle.as_millis() as u64,
            })
            .collect())
    }

    async fn close_session(
        &mut self,
        target: types::Target,
    ) -> wasmtime::Result<Result<bool, types::SshError>> {
        if !self.grant.see_all_sessions {
            return Ok(Err(types::SshError::Denied(format!(
                "component {} may not close sessions",
                self.component
            ))));
        }
        Ok(self
            .sessions
            .close(&target_from_wit(target))
            .map_err(Into::into))
    }

    async fn close_all_sessions(&mut self) -> wasmtime::Result<Result<u32, types::SshError>> {
        if !self.grant.see_all_sessions {
            return Ok(Err(types::SshError::Denied(format!(
                "component {} may not close sessions",
                self.component
            ))));
        }
        Ok(Ok(self.sessions.close_all()))
    }
}

/// Longest guest log message kept; the rest is cut.
const MAX_LOG_MESSAGE: usize = 4096;

impl log::Host for StoreState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let mut message = message;
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str(" [...]");
        }
        let component = &*self.component;
        match level {
            log::Level::Trace => tracing::trace!(component, "{message}"),
            log::Level::Debug => tracing::debug!(component, "{message}"),
            log::Level::Info => tracing::info!(component, "{message}"),
            log::Level::Warn => tracing::warn!(component, "{message}"),
            log::Level::Error => tracing::error!(component, "{message}"),
        }
        Ok(())
    }
}
