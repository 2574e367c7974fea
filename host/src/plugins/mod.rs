//! The plugin host: one wasmtime engine, the tool components it loaded, and
//! the registry of the tools they export.
//!
//! Components are compiled (or loaded from the compile cache) off the async
//! threads at startup, and asked once for their tools. Each call then gets
//! a fresh store from the component's cached pre-instance, so a trap
//! poisons only that call. Guests get no WASI capability: no files, no
//! environment, no stdout, and sockets are not even linked (`wasi`); their
//! stderr goes to the log. Each call has a time budget that counts waiting
//! (`clock`), a memory budget that counts tables (`limits`), and caps on
//! every text it can make the host log, audit or send (`bounded`).

mod bindings;
mod bounded;
mod cache;
mod clock;
pub mod grants;
mod imports;
mod limits;
mod state;
mod stderr;
mod wasi;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

use bindings::{ToolComponent, ToolComponentPre, tool};
pub use grants::{Grant, GrantSpec, Grants, Manifest};
use state::StoreState;

use crate::audit::{self, AuditLog};
use crate::ssh::SessionManager;

/// The components compiled into this binary by `build.rs`.
mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_components.rs"));
}

/// How often the epoch ticks: how often a running guest yields, so that
/// a spent budget or a cancelled call can drop it.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Largest tool result accepted from a component (text plus structured
/// content): room for execute_command's largest output, twice.
const MAX_RESULT_BYTES: usize = 80 << 20;
/// Largest description plus schemas of one tool: every client receives
/// them with each tools/list.
const MAX_TOOL_INFO_BYTES: usize = 256 << 10;
/// Tools one component may export.
const MAX_TOOLS_PER_COMPONENT: usize = 256;
/// Bytes of guest stderr kept per call.
const STDERR_CAPACITY: usize = 64 << 10;
/// A component must answer `list-tools` within this much guest time.
const LIST_TOOLS_CPU: Duration = Duration::from_secs(2);
/// A component file larger than this is refused at load: the largest
/// tool components are a few MiB.
const COMPONENT_FILE_CAP: u64 = 256 << 20;
/// After the client cancels, a call gets this long to stop its command
/// (TERM, grace, KILL, check) and return before its instance is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(8);

#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// Extra components: every `*.wasm` in it. `None`: built-ins only.
    pub plugin_dir: Option<PathBuf>,
    /// Whether a missing `plugin_dir` is an error (it was asked for).
    pub plugin_dir_required: bool,
    /// Compiled components; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Guest time per call: computing or waiting in WASI, not time in
    /// this host's `ssh`, `jobs` and `progress` imports.
    pub cpu_limit: Duration,
    /// Bytes of all of a call's linear memories together.
    pub memory_limit: usize,
    /// The operator's grants for plugin components, by name (file stem).
    pub grants: Grants,
    /// Where those grants live, for messages that say what to add.
    pub config_path: PathBuf,
    /// Append an audit log here.
    pub audit_log: Option<PathBuf>,
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            plugin_dir: default_plugin_dir(),
            plugin_dir_required: false,
            cache_dir: dirs::cache_dir().map(|d| d.join("mcp-ssh-session").join("components")),
            cpu_limit: Duration::from_secs(10),
            memory_limit: 256 << 20,
            grants: Grants::new(),
            config_path: default_config_path(),
            audit_log: None,
        }
    }
}

/// `~/.config/mcp-ssh-session/config.toml` (or the platform's equivalent).
pub fn default_config_path() -> PathBuf {
    dirs::config_dir()
        .unwrap_or_default()
        .join("mcp-ssh-session")
        .join("config.toml")
}

/// `~/.config/mcp-ssh-session/plugins` (or the platform's equivalent).
pub fn default_plugin_dir() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("mcp-ssh-session").join("plugins"))
}

/// Where a call's progress reports go: `(progress, total, message)`. The
/// MCP layer turns them into rate-limited `notifications/progress`.
pub type ProgressSink = Arc<dyn Fn(f64, Option<f64>, Option<String>) + Send + Sync>;

/// A tool as the registry knows it.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub input_schema: Map<String, Value>,
    pub output_schema: Option<Map<String, Value>>,
    pub annotations: Option<Annotations>,
    /// The component that exports it.
    pub component: Arc<str>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    pub title: Option<String>,
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

/// A tool that ran: its result, failed or not.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    pub text: Vec<String>,
    pub structured: Option<Value>,
    pub is_error: bool,
}

/// A call that did not produce a tool result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("unknown tool: {0}")]
    UnknownTool(String),
    #[error("invalid arguments for {tool}: {message}")]
    InvalidArguments { tool: String, message: String },
}

/// What `plugin check` found in a component that passed.
#[derive(Debug)]
pub struct CheckReport {
    /// The name grants use: the file's stem.
    pub name: String,
    pub tools: Vec<ToolSpec>,
    /// Its manifest, if one lies beside it.
    pub manifest: Option<Manifest>,
    /// What the operator's config grants it, if anything.
    pub operator: Option<GrantSpec>,
    pub config_path: PathBuf,
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "tools:")?;
        for t in &self.tools {
            writeln!(f, "  {}: {}", t.name, t.description)?;
        }
        match &self.manifest {
            Some(m) => writeln!(
                f,
                "\nrequested grants (its manifest):\n{}",
                toml::to_string(&m.requests).unwrap_or_default()
            )?,
            None => writeln!(
                f,
                "\nno manifest beside it: it requests nothing, so it may not use SSH at all"
            )?,
        }
        match &self.operator {
            Some(g) => writeln!(
                f,
                "granted by {}:\n{}",
                self.config_path.display(),
                toml::to_string(g).unwrap_or_default()
            ),
            None => writeln!(
                f,
                "not granted in {}: its calls will be denied until [plugins.{}] is added",
                self.config_path.display(),
                self.name
            ),
        }
    }
}

/// Why a component was not added.
enum AddError {
    /// It is not a usable tool component: it is skipped.
    Rejected(anyhow::Error),
    /// One of its tool names is taken: ambiguous, so a startup error.
    Clash(anyhow::Error),
}

struct Loaded {
    name: Arc<str>,
    pre: ToolComponentPre<StoreState>,
    grant: Arc<Grant>,
}

struct Registered {
    spec: ToolSpec,
    validator: jsonschema::Validator,
    component: usize,
}

/// Every loaded component and its tools. Shared by all calls.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<StoreState>,
    audit: Option<Arc<AuditLog>>,
    sessions: SessionManager,
    config: PluginConfig,
    components: Vec<Loaded>,
    tools: Vec<Registered>,
    by_name: HashMap<String, usize>,
}

impl PluginHost {
    /// Loads the built-in components and those in the plugin directory.
    pub async fn load(config: PluginConfig, sessions: SessionManager) -> anyhow::Result<Self> {
        let mut wasm_config = wasmtime::Config::new();
        wasm_config
            .epoch_interruption(true)
            .wasm_component_model(true);
        let engine = Engine::new(&wasm_config)?;
        spawn_epoch_ticker(&engine);

        let mut sources: Vec<(String, Vec<u8>, Grant)> = builtin::COMPONENTS
            .iter()
            .map(|(name, bytes)| (format!("built-in:{name}"), bytes.to_vec(), Grant::full()))
            .collect();
        if let Some(dir) = &config.plugin_dir {
            for path in plugin_files(dir, config.plugin_dir_required)? {
                let name = path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let manifest = match Manifest::beside(&path) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::error!("skipping plugin {}: {e:#}", path.display());
                        continue;
                    }
                };
                let operator = config.grants.get(&name);
                let grant =
                    Grant::for_plugin(&name, manifest.as_ref(), operator, &config.config_path);
                let bytes = crate::fsutil::read_regular(&path, COMPONENT_FILE_CAP)
                    .with_context(|| format!("reading {}", path.display()))?;
                sources.push((path.display().to_string(), bytes, grant));
            }
            for name in config.grants.keys() {
                if !dir.join(format!("{name}.wasm")).exists() {
                    tracing::warn!(
                        "the config grants {name}, but there is no {name}.wasm in {}",
                        dir.display()
                    );
                }
            }
        }

        let cache = Arc::new(cache::CompileCache::new(&engine, config.cache_dir.clone()));
        let mut linker = Linker::<StoreState>::new(&engine);
        wasi::add_to_linker(&mut linker)?;
        ToolComponent::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?;

        // Compile in parallel, off the async threads.
        let compiles: Vec<_> = sources
            .into_iter()
            .map(|(name, bytes, grant)| {
                let (engine, cache) = (engine.clone(), cache.clone());
                tokio::task::spawn_blocking(move || {
                    let component = cache.load(&engine, &name, &bytes);
                    (name, grant, component)
                })
            })
            .collect();

        let audit = match &config.audit_log {
            Some(path) => Some(Arc::new(
                AuditLog::open(path).with_context(|| format!("audit log {}", path.display()))?,
            )),
            None => None,
        };
        let mut host = Self {
            linker: linker.clone(),
            engine,
            audit,
            sessions,
            config,
            components: Vec::new(),
            tools: Vec::new(),
            by_name: HashMap::new(),
        };
        for task in compiles {
            let (name, grant, component) = task.await?;
            let builtin = name.starts_with("built-in:");
            match host.add(&linker, name, grant, component).await {
                Ok(_) => {}
                Err(AddError::Rejected(e)) if !builtin => tracing::error!("skipping plugin: {e:#}"),
                Err(AddError::Rejected(e) | AddError::Clash(e)) => return Err(e),
            }
        }
        tracing::info!(
            components = host.components.len(),
            tools = host.tools.len(),
            "plugins loaded"
        );
        Ok(host)
    }

    /// Validates the component at `path` without running any of its
    /// tools: it links against this host's WIT world, answers
    /// `list-tools` within its CPU budget, its schemas are valid, and its
    /// tool names clash with no built-in's.
    pub async fn check(
        config: PluginConfig,
        path: &std::path::Path,
    ) -> anyhow::Result<CheckReport> {
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let manifest = Manifest::beside(path)?;
        let operator = config.grants.get(&name).cloned();
        let bytes = crate::fsutil::read_regular(path, COMPONENT_FILE_CAP)
            .with_context(|| format!("reading {}", path.display()))?;
        let builtins = PluginConfig {
            plugin_dir: None,
            audit_log: None,
            ..config.clone()
        };
        let sessions = SessionManager::new(crate::ssh::SshConfig::default());
        let mut host = Self::load(builtins, sessions).await?;
        let engine = host.engine.clone();
        let component = tokio::task::spawn_blocking(move || {
            Ok::<_, anyhow::Error>(wasmtime::component::Component::new(&engine, &bytes)?)
        })
        .await?;
        let grant = Grant::for_plugin(
            &name,
            manifest.as_ref(),
            operator.as_ref(),
            &config.config_path,
        );
        let linker = host.linker.clone();
        match host
            .add(&linker, path.display().to_string(), grant, component)
            .await
        {
            Ok(names) => Ok(CheckReport {
                name,
                tools: host
                    .tools()
                    .filter(|t| names.contains(&t.name))
                    .cloned()
                    .collect(),
                manifest,
                operator,
                config_path: config.config_path,
            }),
            Err(AddError::Rejected(e) | AddError::Clash(e)) => Err(e),
        }
    }

    /// Every tool, in load order.
    pub fn tools(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.iter().map(|t| &t.spec)
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
    ) -> Result<ToolOutput, CallError> {
        let started = std::time::Instant::now();
        let outcome = self.call_unaudited(name, arguments, cancel, progress).await;
        if let Some(log) = &self.audit {
            let component = self
                .by_name
                .get(name)
                .map_or("-", |&i| &*self.components[self.tools[i].component].name);
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
    ) -> Result<ToolOutput, CallError> {
        let &index = self
            .by_name
            .get(name)
            .ok_or_else(|| CallError::UnknownTool(name.to_string()))?;
        let tool = &self.tools[index];
        let arguments = Value::Object(arguments);
        if let Some(err) = tool.validator.iter_errors(&arguments).next() {
            return Err(CallError::InvalidArguments {
                tool: name.to_string(),
                message: describe_invalid(&err, &tool.spec.input_schema, &arguments),
            });
        }
        let component = &self.components[tool.component];
        let args = arguments.to_string();
        let result = self
            .with_instance(
                tool.component,
                tool.spec.name.as_str().into(),
                // Only the operator's grant may raise the flag's ceiling.
                component.grant.cpu_limit(self.config.cpu_limit),
                cancel,
                progress,
                async |store, instance| instance.call_call_tool(store, name, &args).await,
            )
            .await;
        match result {
            Ok(Ok(r)) if result_size(&r) > MAX_RESULT_BYTES => Ok(guest_failure(
                &component.name,
                &format!(
                    "it returned a {} MB result, more than the {} MB limit",
                    result_size(&r) >> 20,
                    MAX_RESULT_BYTES >> 20
                ),
            )),
            Ok(Ok(r)) => Ok(ToolOutput {
                text: r
                    .content
                    .into_iter()
                    .map(|tool::Content::Text(t)| t)
                    .collect(),
                structured: match r.structured_content.map(|s| serde_json::from_str(&s)) {
                    None => None,
                    Some(Ok(v)) => Some(v),
                    Some(Err(e)) => {
                        return Ok(guest_failure(
                            &component.name,
                            &format!("invalid structured content: {e}"),
                        ));
                    }
                },
                is_error: r.is_error,
            }),
            Ok(Err(tool::CallError::UnknownTool(_))) => {
                Err(CallError::UnknownTool(name.to_string()))
            }
            Ok(Err(tool::CallError::InvalidArguments(message))) => {
                Err(CallError::InvalidArguments {
                    tool: name.to_string(),
                    message: bounded::clip(&message, bounded::MAX_COMMAND).into_owned(),
                })
            }
            Err(e) => Ok(guest_failure(&component.name, &e)),
        }
    }

    /// Runs `f` against a fresh instance of component `index`, within the
    /// time budget `budget`. Guest stderr and log overflow are logged
    /// afterwards.
    async fn with_instance<R>(
        &self,
        index: usize,
        tool: Arc<str>,
        budget: Duration,
        cancel: CancellationToken,
        progress: Option<ProgressSink>,
        f: impl AsyncFnOnce(&mut Store<StoreState>, &tool::Guest) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        let component = &self.components[index];
        // Only the operator's grant may raise the flag's ceiling.
        let memory = component.grant.memory_limit(self.config.memory_limit);
        let stderr = stderr::GuestStderr::default();
        let clock = clock::GuestClock::start(budget);
        let state = StoreState {
            wasi: wasi::context(&stderr, STDERR_CAPACITY),
            table: Default::default(),
            limits: limits::MemoryBudget::new(memory),
            component: component.name.clone(),
            grant: component.grant.clone(),
            sessions: self.sessions.clone(),
            clock: clock.clone(),
            stderr: stderr.clone(),
            log: bounded::LogBudget::default(),
            cancel: cancel.clone(),
            progress: progress.map(bounded::progress),
            audit: self.audit.clone(),
            tool: tool.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(1);
        // Yielding each tick keeps a busy guest from starving the other
        // tasks and lets the watchdog below drop it; checking the clock
        // here too stops it from inside, even if the task is slow to be
        // polled again.
        store.epoch_deadline_callback(|ctx| {
            let s = ctx.data();
            if s.clock.remaining().is_zero() {
                return Err(time_limit_error(&s.component, s.clock.budget()));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        let started = std::time::Instant::now();
        let mut instantiated = Duration::ZERO;
        let run = async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            instantiated = started.elapsed();
            f(&mut store, instance.mcp_ssh_tools_tool()).await
        };
        // The watchdog catches a guest that waits in WASI (a sleep, a
        // poll): epochs do not tick then, but its clock runs on.
        let result = tokio::select! {
            r = run => r,
            () = clock.expired() => Err(time_limit_error(&component.name, budget)),
            () = async {
                cancel.cancelled().await;
                tokio::time::sleep(CANCEL_GRACE).await;
            } => Err(wasmtime::format_err!("cancelled by the client")),
        };
        let total = started.elapsed();
        let host = clock.host_time();
        tracing::debug!(
            component = %component.name,
            instantiate_us = instantiated.as_micros() as u64,
            guest_us = total.saturating_sub(host).saturating_sub(instantiated).as_micros() as u64,
            host_us = host.as_micros() as u64,
            "call timing"
        );
        store.data().stderr.log(&component.name);
        store.data().log.report_dropped(&component.name);
        result.map_err(|e| {
            // The full chain, with wasm and host backtraces, is for the
            // operator; the client gets the root cause.
            tracing::debug!(component = %component.name, "guest call failed: {e:?}");
            summarize_failure(&e)
        })
    }

    async fn list_component_tools(&self, index: usize) -> anyhow::Result<Vec<tool::ToolInfo>> {
        let name = self.components[index].name.clone();
        let never = CancellationToken::new();
        self.with_instance(
            index,
            "list-tools".into(),
            LIST_TOOLS_CPU,
            never,
            None,
            async |store, instance| instance.call_list_tools(store).await,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{name}: list-tools failed: {e}"))
    }

    /// Adds a compiled component: links it against the host's world, asks
    /// for its tools and validates them. Returns its tool names.
    async fn add(
        &mut self,
        linker: &Linker<StoreState>,
        name: String,
        grant: Grant,
        component: anyhow::Result<wasmtime::component::Component>,
    ) -> Result<Vec<String>, AddError> {
        let pre = component
            .and_then(|c| Ok(ToolComponentPre::new(linker.instantiate_pre(&c)?)?))
            .map_err(|e| {
                AddError::Rejected(anyhow::anyhow!(
                    "{name}: not a usable tool component: {e:#}"
                ))
            })?;
        let name: Arc<str> = name.into();
        let index = self.components.len();
        self.components.push(Loaded {
            name: name.clone(),
            pre,
            grant: Arc::new(grant),
        });
        let specs = match self.list_component_tools(index).await.and_then(|tools| {
            if tools.len() > MAX_TOOLS_PER_COMPONENT {
                bail!(
                    "{name}: exports {} tools, more than the limit of {MAX_TOOLS_PER_COMPONENT}",
                    tools.len()
                );
            }
            tools
                .into_iter()
                .map(|info| tool_spec(&name, info))
                .collect::<anyhow::Result<Vec<_>>>()
        }) {
            Ok(specs) => specs,
            Err(e) => {
                self.components.pop();
                return Err(AddError::Rejected(e));
            }
        };
        let mut seen = std::collections::HashSet::new();
        for (spec, _) in &specs {
            let clash = match self.by_name.get(&spec.name) {
                Some(&other) => Some(self.tools[other].spec.component.to_string()),
                None if !seen.insert(spec.name.clone()) => Some(name.to_string()),
                None => None,
            };
            if let Some(other) = clash {
                self.components.pop();
                return Err(AddError::Clash(anyhow::anyhow!(
                    "tool name clash: {:?} is exported by both {other} and {name}; remove one of them",
                    spec.name
                )));
            }
        }
        let names = specs.iter().map(|(s, _)| s.name.clone()).collect();
        for (spec, validator) in specs {
            self.by_name.insert(spec.name.clone(), self.tools.len());
            self.tools.push(Registered {
                spec,
                validator,
                component: index,
            });
        }
        Ok(names)
    }
}

/// A schema violation in words that name the field but never quote its
/// value: the message travels through logs, and the value may be a password.
fn describe_invalid(
    err: &jsonschema::ValidationError<'_>,
    schema: &Map<String, Value>,
    arguments: &Value,
) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    let path = err.instance_path().to_string();
    let field = path.trim_start_matches('/');
    match err.kind() {
        // `additionalProperties: false` with no `properties` is reported
        // against the whole object: name the keys ourselves.
        Kind::FalseSchema if field.is_empty() => {
            let known = schema.get("properties").and_then(Value::as_object);
            let unexpected: Vec<&str> = arguments
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .filter(|k| !known.is_some_and(|p| p.contains_key(*k)))
                .map(String::as_str)
                .collect();
            format!("unexpected field(s): {}", unexpected.join(", "))
        }
        Kind::AdditionalProperties { unexpected } => {
            format!("unexpected field(s): {}", unexpected.join(", "))
        }
        Kind::Required { property } => {
            format!(
                "missing required field: {}",
                property.as_str().unwrap_or("?")
            )
        }
        Kind::FalseSchema if !field.is_empty() => format!("unexpected field: {field}"),
        _ if field.is_empty() => err.masked().to_string(),
        _ => format!("{field}: {}", err.masked_with("the value")),
    }
}

fn result_size(r: &tool::CallResult) -> usize {
    let text: usize = r.content.iter().map(|tool::Content::Text(t)| t.len()).sum();
    text + r.structured_content.as_ref().map_or(0, String::len)
}

fn time_limit_error(component: &str, budget: Duration) -> wasmtime::Error {
    wasmtime::format_err!(
        "component {component} exceeded its time limit of {} ms",
        budget.as_millis()
    )
}

/// One line on why a guest call failed: a trap's kind or a limit hit.
fn summarize_failure(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "it trapped (wasm `unreachable`: a panic or abort in the component)".into()
        }
        Some(trap) => format!("it trapped: {trap}"),
        None => e.root_cause().to_string(),
    }
}

fn guest_failure(component: &str, detail: &str) -> ToolOutput {
    tracing::warn!(component, "tool call failed in the component: {detail}");
    ToolOutput {
        text: vec![format!("The tool component {component} failed: {detail}")],
        structured: None,
        is_error: true,
    }
}

fn tool_spec(
    component: &Arc<str>,
    info: tool::ToolInfo,
) -> anyhow::Result<(ToolSpec, jsonschema::Validator)> {
    let name = info.name;
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid_name {
        bail!(
            "{component}: invalid tool name {:?} (1-64 of A-Z a-z 0-9 _ - .)",
            bounded::clip(&name, 64)
        );
    }
    let size = info.description.len()
        + info.input_schema.len()
        + info.output_schema.as_ref().map_or(0, String::len);
    if size > MAX_TOOL_INFO_BYTES {
        bail!(
            "{component}: tool {name} is described in {size} bytes, more than the {} KiB limit",
            MAX_TOOL_INFO_BYTES >> 10
        );
    }
    let object = |what: &str, text: &str| -> anyhow::Result<Map<String, Value>> {
        match serde_json::from_str(text) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => bail!("{component}: the {what} of tool {name} is not a JSON object"),
            Err(e) => bail!("{component}: the {what} of tool {name} is not JSON: {e}"),
        }
    };
    let input_schema = object("input schema", &info.input_schema)?;
    if input_schema.get("type").and_then(Value::as_str) != Some("object") {
        bail!("{component}: the input schema of tool {name} must have \"type\": \"object\"");
    }
    let validator =
        jsonschema::validator_for(&Value::Object(input_schema.clone())).map_err(|e| {
            anyhow::anyhow!("{component}: the input schema of tool {name} is invalid: {e}")
        })?;
    let output_schema = info
        .output_schema
        .map(|s| object("output schema", &s))
        .transpose()?;
    let annotations = info.annotations.map(|a| Annotations {
        title: a.title,
        read_only: a.read_only,
        destructive: a.destructive,
        idempotent: a.idempotent,
        open_world: a.open_world,
    });
    Ok((
        ToolSpec {
            name,
            description: info.description,
            input_schema,
            output_schema,
            annotations,
            component: component.clone(),
        },
        validator,
    ))
}

fn plugin_files(dir: &std::path::Path, required: bool) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("plugin directory {}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Advances the engine's epoch forever, from a plain thread so that a busy
/// async runtime cannot delay the deadlines that keep guests in check.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the epoch thread; guest CPU limits are off: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn first_error(schema: Value, instance: Value) -> String {
        let v = jsonschema::validator_for(&schema).unwrap();
        let err = v.iter_errors(&instance).next().expect("invalid");
        describe_invalid(&err, schema.as_object().unwrap(), &instance)
    }

    #[test]
    fn a_tool_described_in_megabytes_or_with_a_huge_name_is_refused_briefly() {
        let component: Arc<str> = "c.wasm".into();
        let info = |name: String, description: String| tool::ToolInfo {
            name,
            description,
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: None,
            annotations: None,
        };
        let err = tool_spec(&component, info("t".into(), "d".repeat(1 << 20)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than the 256 KiB limit"), "{err}");
        let err = tool_spec(&component, info("n".repeat(1 << 20), "d".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid tool name") && err.len() < 300,
            "{err}"
        );
        assert!(tool_spec(&component, info("t".into(), "d".into())).is_ok());
    }

    #[test]
    fn invalid_argument_messages_name_the_field_and_hide_the_value() {
        let schema = json!({
            "type": "object",
            "properties": {"command": {"type": "string"}, "port": {"type": ["integer", "null"]}},
            "required": ["command"],
            "additionalProperties": false
        });
        let m = first_error(schema.clone(), json!({}));
        assert!(m.contains("missing") && m.contains("command"), "{m}");
        let m = first_error(
            schema.clone(),
            json!({"command": "x", "surprise": "s3cr3t"}),
        );
        assert!(m.contains("surprise") && !m.contains("s3cr3t"), "{m}");
        let m = first_error(schema, json!({"command": "x", "port": "s3cr3t"}));
        assert!(m.starts_with("port: ") && !m.contains("s3cr3t"), "{m}");
        let none = json!({"type": "object", "additionalProperties": false});
        let m = first_error(none, json!({"surprise": "s3cr3t"}));
        assert_eq!(m, "unexpected field(s): surprise");
    }
}
