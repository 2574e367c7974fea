//! The plugin host: the tool components it loaded and the tools they
//! export, behind one facade, [`PluginHost`]: load, list tools, call.
//!
//! The rooms behind it: `discovery` finds components and their grants,
//! `runtime` compiles them and runs each call in a fresh instance within
//! its budgets, `registry` knows the tools and validates arguments,
//! `check` is `plugin check`, and `imports` is the host side of each WIT
//! interface, every SSH import going through one gate
//! (`imports::authorize`). `grants` says what a component may do.

mod bindings;
mod bounded;
mod cache;
mod check;
mod clock;
mod discovery;
pub mod grants;
mod imports;
mod limits;
mod registry;
mod runtime;
mod state;
mod stderr;
mod transfer_roots;
mod wasi;

use std::sync::Arc;

use anyhow::Context;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use wasmtime::component::Component;

pub use check::CheckReport;
pub use discovery::{PluginSettings, default_config_path, default_plugin_dir};
pub use grants::{ClientPolicy, Grant, GrantSpec, Grants, Manifest};
pub use registry::{Annotations, CallError, ToolSpec};

use crate::audit::{self, AuditLog};
use crate::ssh::SessionManager;
use registry::{AddError, Registry};
use runtime::{Loaded, Runtime};

/// Where a call's progress reports go: `(progress, total, message)`. The
/// MCP layer turns them into rate-limited `notifications/progress`.
pub type ProgressSink = Arc<dyn Fn(f64, Option<f64>, Option<String>) + Send + Sync>;

/// Who is calling, and the namespace their calls run in: the SSH sessions
/// and jobs they may see. Over stdio the one caller is the operator; over
/// HTTP each configured client has a namespace of its own.
#[derive(Clone)]
pub struct Caller {
    /// The name audit lines carry: the client's, or `stdio`.
    pub name: Arc<str>,
    /// The caller's own session table (and job table).
    pub sessions: SessionManager,
    /// The client's restrictions, checked beside each component's grant.
    pub policy: Option<Arc<ClientPolicy>>,
    /// The operator's session table, shared for calls without credentials
    /// (`shared_operator_sessions`).
    pub shared: Option<SessionManager>,
}

impl Caller {
    /// The operator over stdio: the one namespace, no restriction.
    pub fn operator(name: &str, sessions: SessionManager) -> Self {
        Self {
            name: name.into(),
            sessions,
            policy: None,
            shared: None,
        }
    }
}

/// A tool that ran: its result, failed or not.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    pub text: Vec<String>,
    pub structured: Option<Value>,
    pub is_error: bool,
}

/// Every loaded component and its tools. Shared by all calls.
pub struct PluginHost {
    runtime: Runtime,
    audit: Option<Arc<AuditLog>>,
    config: PluginSettings,
    components: Vec<Loaded>,
    registry: Registry,
}

impl PluginHost {
    /// Loads the built-in components and those in the plugin directory.
    /// A built-in that does not load, or a tool name two components claim,
    /// is a startup error; a plugin that does not load is skipped, logged.
    pub async fn load(config: PluginSettings, sessions: SessionManager) -> anyhow::Result<Self> {
        let mut runtime = Runtime::new(&config, sessions)?;
        let compiles = runtime.compile(discovery::sources(&config)?);
        let audit = match &config.audit_log {
            Some(path) => Some(Arc::new(
                AuditLog::open(path).with_context(|| format!("audit log {}", path.display()))?,
            )),
            None => None,
        };
        runtime.audit = audit.clone();
        let mut host = Self {
            runtime,
            audit,
            config,
            components: Vec::new(),
            registry: Registry::default(),
        };
        for task in compiles {
            let compiled = task.await?;
            let builtin = discovery::is_builtin(&compiled.name);
            match host
                .add(compiled.name, compiled.grant, compiled.component)
                .await
            {
                Ok(_) => {}
                Err(AddError::Rejected(e)) if !builtin => tracing::error!("skipping plugin: {e:#}"),
                Err(AddError::Rejected(e) | AddError::Clash(e)) => return Err(e),
            }
        }
        host.runtime.prune_cache().await;
        tracing::info!(
            components = host.components.len(),
            tools = host.registry.len(),
            "plugins loaded"
        );
        Ok(host)
    }

    /// The audit log, if there is one: the HTTP transport records refused
    /// clients in it.
    pub fn audit_log(&self) -> Option<Arc<AuditLog>> {
        self.audit.clone()
    }

    /// Every tool, in load order.
    pub fn tools(&self) -> impl Iterator<Item = &ToolSpec> {
        self.registry.specs()
    }

    /// Validates `arguments` and runs the tool in a fresh instance.
    ///
    /// `cancel` fires when the client gives up: a running command is then
    /// stopped and the call winds down. Every call is audited.
    pub async fn call(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        cancel: CancellationToken,
        progress: Option<ProgressSink>,
        caller: &Caller,
    ) -> Result<ToolOutput, CallError> {
        let started = std::time::Instant::now();
        let outcome = self
            .call_unaudited(name, arguments, cancel, progress, caller)
            .await;
        if let Some(log) = &self.audit {
            let component = self
                .registry
                .get(name)
                .map_or("-", |t| &*self.components[t.component].name);
            let decision = match &outcome {
                Ok(_) => "allowed".to_string(),
                Err(e) => format!(
                    "denied: {}",
                    match e {
                        CallError::UnknownTool(_) => "unknown tool",
                        CallError::InvalidArguments { .. } => "invalid arguments",
                    }
                ),
            };
            log.record(&audit::Entry {
                kind: "tool_call",
                client: Some(&caller.name),
                component,
                // An unknown tool's name is the client's, of any size.
                tool: Some(&bounded::clip(name, bounded::MAX_FIELD)),
                decision,
                is_error: outcome.as_ref().ok().map(|o| o.is_error),
                duration_ms: audit::millis(started.elapsed()),
                ..audit::Entry::default()
            });
        }
        outcome
    }

    async fn call_unaudited(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        cancel: CancellationToken,
        progress: Option<ProgressSink>,
        caller: &Caller,
    ) -> Result<ToolOutput, CallError> {
        let mut arguments = Value::Object(arguments);
        let tool = self.registry.validate(name, &mut arguments)?;
        let component = &self.components[tool.component];
        // Only the operator's grant may raise the flag's ceiling.
        let budget = component.grant.cpu_limit(self.config.cpu_limit);
        let arguments = arguments.to_string();
        self.runtime
            .call_tool(
                component,
                name,
                &arguments,
                budget,
                runtime::CallEnv {
                    cancel,
                    progress,
                    caller: caller.clone(),
                },
            )
            .await
    }

    /// Adds a compiled component: links it against the host's world, asks
    /// for its tools and registers them. Returns its tool names.
    async fn add(
        &mut self,
        name: String,
        grant: Grant,
        component: anyhow::Result<Component>,
    ) -> Result<Vec<String>, AddError> {
        let loaded = self
            .runtime
            .prepare(name.into(), grant, component)
            .map_err(AddError::Rejected)?;
        let infos = self
            .runtime
            .list_tools(&loaded)
            .await
            .map_err(AddError::Rejected)?;
        let names = self
            .registry
            .register(&loaded.name, self.components.len(), infos)?;
        self.components.push(loaded);
        Ok(names)
    }
}
