//! What one tool call's store holds. The host side of the WIT imports
//! lives in `imports`, one file per interface.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::ProgressSink;
use super::grants::Grant;
use crate::audit::AuditLog;
use crate::ssh::SessionManager;

/// Everything one tool call's store holds.
pub(crate) struct StoreState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: super::limits::MemoryBudget,
    pub(crate) component: Arc<str>,
    pub(crate) grant: Arc<Grant>,
    /// The caller's session table: its namespace.
    pub(crate) sessions: SessionManager,
    /// The operator's sessions, when `shared_operator_sessions` lets every
    /// client use them for calls without credentials.
    pub(crate) shared: Option<SessionManager>,
    /// Who called, for the audit log.
    pub(crate) client: Arc<str>,
    /// The client's restrictions, checked beside the grant.
    pub(crate) client_policy: Option<Arc<super::ClientPolicy>>,
    /// The call's time budget; host imports that wait on SSH stop it.
    pub(crate) clock: super::clock::GuestClock,
    pub(crate) stderr: super::stderr::GuestStderr,
    /// What the `log` import may still write in this call.
    pub(crate) log: super::bounded::LogBudget,
    /// Cancelled when the MCP client cancels the call.
    pub(crate) cancel: CancellationToken,
    /// Where progress goes, when the client asked for it.
    pub(crate) progress: Option<ProgressSink>,
    pub(crate) audit: Option<Arc<AuditLog>>,
    /// The tool being called, for the audit log.
    pub(crate) tool: Arc<str>,
    /// Where uploads and downloads may touch local files.
    pub(crate) transfer_roots: Arc<super::transfer_roots::TransferRoots>,
    /// Serialises writes to one remote path across every call.
    pub(crate) write_locks: Arc<super::imports::WriteLocks>,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl StoreState {
    /// The session table a call on `target` uses: the caller's own, or
    /// the operator's shared one for a call without credentials that the
    /// caller has no session of its own for (sharing on). Jobs always use
    /// the caller's own: they are listed and stopped by their owner.
    pub(crate) fn sessions_for(&self, target: &crate::ssh::Target) -> &SessionManager {
        let Some(shared) = &self.shared else {
            return &self.sessions;
        };
        let bare = target.credentials.as_ref().is_none_or(|c| c.is_empty());
        let own = self
            .sessions
            .resolve(target)
            .is_ok_and(|dest| self.sessions.list().iter().any(|s| s.key == dest.key));
        if bare && !own { shared } else { &self.sessions }
    }

    /// The sessions `list-sessions` shows: the caller's, then the shared
    /// ones it may use.
    pub(crate) fn visible_sessions(&self) -> Vec<crate::ssh::SessionInfo> {
        let mut out = self.sessions.list();
        if let Some(shared) = &self.shared {
            out.extend(shared.list());
        }
        out
    }
}
