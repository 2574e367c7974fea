//! The MCP face of the server: an rmcp `ServerHandler` whose tools are the
//! plugin registry's, and the one place where call outcomes become MCP
//! results.
//!
//! A tool that ran, even one that failed, is a `CallToolResult` (failures
//! with `isError: true`), and so is a call whose arguments do not match the
//! schema; only a call that cannot be routed is a JSON-RPC invalid-params
//! error.
//!
//! Protocol versions are rmcp's: `initialize` is answered with the version
//! the client asked for when it is one rmcp knows and has a handshake
//! (2024-11-05 to 2025-11-25), else with the newest that has one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    InitializeResult, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use tokio_util::task::TaskTracker;

use crate::plugins::{CallError, Caller, PluginHost, ProgressSink, ToolOutput, ToolSpec};

/// At most one progress notification per call per this interval.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Where a call's progress goes: `notifications/progress` for the token
/// the client sent, or nowhere if it sent none. Reports that come too fast,
/// or whose value does not grow (MCP requires it to), are dropped.
fn progress_sink(context: &RequestContext<RoleServer>) -> Option<ProgressSink> {
    let token = context.meta.get_progress_token()?;
    let peer = context.peer.clone();
    let last: Mutex<Option<(Instant, f64)>> = Mutex::new(None);
    Some(Arc::new(move |progress, total, message| {
        {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, value)) = *last
                && (progress <= value || at.elapsed() < PROGRESS_INTERVAL)
            {
                return;
            }
            *last = Some((Instant::now(), progress));
        }
        let mut param = ProgressNotificationParam::new(token.clone(), progress);
        param.total = total;
        param.message = message;
        let peer = peer.clone();
        tokio::spawn(async move {
            if let Err(e) = peer.notify_progress(param).await {
                tracing::debug!("progress notification not sent: {e}");
            }
        });
    }))
}

const INSTRUCTIONS: &str = "Runs commands on SSH hosts over persistent sessions. \
execute_command opens a session on first use (password, key_filename, or the operator's \
ssh-agent and default keys) and reuses it afterwards: later calls need only host, username \
and command. Sessions are keyed by username@host:port; see list_sessions.";

/// Who may call, and how a call finds its caller.
pub enum Callers {
    /// stdio, or HTTP with no clients configured (loopback only): one
    /// caller, the operator.
    One(Caller),
    /// HTTP with clients: the one the HTTP layer verified, by name; a
    /// name not configured is asked of the second field (JWT subjects
    /// without a `[clients.NAME]` table, when the operator allows them).
    Clients(HashMap<String, Caller>, Option<MakeCaller>),
}

/// Finds or makes the caller of a verified client name not configured.
pub type MakeCaller = Arc<dyn Fn(&str) -> Option<Caller> + Send + Sync>;

/// The verified client of an HTTP request: the HTTP layer puts it in the
/// request's extensions after checking its bearer token, and rmcp hands
/// the request's parts to the handler.
#[derive(Debug, Clone)]
pub struct ClientName(pub Arc<str>);

impl Callers {
    /// The caller of a request; `None` when clients are configured and the
    /// request carries no verified one (never, behind the HTTP layer).
    fn of(&self, context: &RequestContext<RoleServer>) -> Option<Caller> {
        match self {
            Self::One(caller) => Some(caller.clone()),
            Self::Clients(clients, others) => {
                let parts = context.extensions.get::<axum::http::request::Parts>()?;
                let ClientName(name) = parts.extensions.get::<ClientName>()?;
                match clients.get(&**name) {
                    Some(caller) => Some(caller.clone()),
                    None => others.as_ref()?(name),
                }
            }
        }
    }
}

/// The MCP server. Cheap to clone: clones share the plugin host.
#[derive(Clone)]
pub struct McpServer {
    plugins: Arc<PluginHost>,
    tools: Arc<Vec<Tool>>,
    callers: Arc<Callers>,
    calls: TaskTracker,
}

impl McpServer {
    pub fn new(plugins: Arc<PluginHost>, callers: Arc<Callers>) -> Self {
        let tools = plugins.tools().map(to_mcp_tool).collect();
        Self {
            plugins,
            tools: Arc::new(tools),
            callers,
            calls: TaskTracker::new(),
        }
    }

    /// The tool calls in flight. A leaving server cancels them and waits
    /// (for a bounded time) until they have stopped their commands, so
    /// that none is left running on a remote host.
    pub fn calls(&self) -> TaskTracker {
        self.calls.clone()
    }
}

fn to_mcp_tool(spec: &ToolSpec) -> Tool {
    let mut tool = Tool::new(
        spec.name.clone(),
        spec.description.clone(),
        Arc::new(spec.input_schema.clone()),
    );
    if let Some(schema) = &spec.output_schema {
        tool = tool.with_raw_output_schema(Arc::new(schema.clone()));
    }
    if let Some(a) = &spec.annotations {
        // Clients show `title` first (MCP 2025-06-18 and later); many never
        // read `annotations.title`, and would show the bare name.
        if let Some(title) = &a.title {
            tool = tool.with_title(title.clone());
        }
        tool = tool.with_annotations(ToolAnnotations::from_raw(
            a.title.clone(),
            a.read_only,
            a.destructive,
            a.idempotent,
            a.open_world,
        ));
    }
    tool
}

/// The one mapping from a call's outcome to what the client sees.
pub fn to_mcp_result(outcome: Result<ToolOutput, CallError>) -> Result<CallToolResult, McpError> {
    match outcome {
        Ok(out) => {
            let content = out.text.into_iter().map(ContentBlock::text).collect();
            let mut result = if out.is_error {
                CallToolResult::error(content)
            } else {
                CallToolResult::success(content)
            };
            result.structured_content = out.structured;
            Ok(result)
        }
        Err(e @ CallError::UnknownTool(_)) => Err(McpError::invalid_params(e.to_string(), None)),
        // MCP 2025-11-25 (SEP-1303): arguments that do not match the schema
        // are a tool error the model can read and correct, not a protocol
        // error.
        Err(e @ CallError::InvalidArguments { .. }) => {
            Ok(CallToolResult::error(vec![ContentBlock::text(
                e.to_string(),
            )]))
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        InitializeResult::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("mcp-ssh-session", env!("CARGO_PKG_VERSION"))
                    .with_title("SSH sessions for agents"),
            )
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let Some(caller) = self.callers.of(&context) else {
            return Err(McpError::invalid_request("no verified client", None));
        };
        let _in_flight = self.calls.token();
        let arguments = request.arguments.unwrap_or_default();
        let progress = progress_sink(&context);
        // rmcp cancels this token on the client's notifications/cancelled.
        let outcome = self
            .plugins
            .call(&request.name, arguments, context.ct, progress, &caller)
            .await;
        // The reason is not logged: it may quote argument values.
        match &outcome {
            Err(CallError::UnknownTool(_)) => tracing::info!(tool = %request.name, "unknown tool"),
            Err(CallError::InvalidArguments { .. }) => {
                tracing::info!(tool = %request.name, "invalid arguments")
            }
            Ok(_) => {}
        }
        to_mcp_result(outcome).map(Into::into)
    }
}
