//! The wasmtime side of the plugin host: one engine and its epoch ticker,
//! the linker of this host's world, compiling components (off the async
//! threads, through the compile cache), and running one call in a fresh
//! store and instance, within its time and memory budgets.
//!
//! Each call gets a fresh store from the component's cached pre-instance,
//! so a trap poisons only that call. Guests get no WASI capability: no
//! files, no environment, no stdout, and sockets are not even linked
//! (`wasi`); their stderr goes to the log. Each call has a time budget
//! that counts waiting (`clock`), a memory budget that counts tables
//! (`limits`), and caps on every text it can make the host log, audit or
//! send (`bounded`). A failed call is summed up in one line for the
//! client; the full chain goes to the operator's log.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

use super::bindings::{ToolComponent, ToolComponentPre, tool};
use super::discovery::{PluginSettings, Source};
use super::grants::Grant;
use super::registry::CallError;
use super::state::StoreState;
use super::{Caller, ProgressSink, ToolOutput};
use super::{bounded, cache, clock, limits, stderr, wasi};
use crate::audit::AuditLog;
use crate::ssh::SessionManager;

/// How often the epoch ticks: how often a running guest yields, so that
/// a spent budget or a cancelled call can drop it.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Largest tool result accepted from a component (text plus structured
/// content): room for execute_command's largest output, twice.
const MAX_RESULT_BYTES: usize = 80 << 20;
/// Bytes of guest stderr kept per call.
const STDERR_CAPACITY: usize = 64 << 10;
/// A component must answer `list-tools` within this much guest time.
const LIST_TOOLS_CPU: Duration = Duration::from_secs(2);
/// After the client cancels, a call gets this long to stop its command
/// (TERM, grace, KILL, check) and return before its instance is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(8);
/// Of that, the guest's own time (its imports' is not counted): enough to
/// make a result, not to go on computing or sleeping.
const CANCEL_GUEST_GRACE: Duration = Duration::from_millis(250);

/// What a call runs with besides its arguments: the client's cancel, where
/// progress goes, and who called (their namespace and restrictions).
pub(crate) struct CallEnv {
    pub(crate) cancel: CancellationToken,
    pub(crate) progress: Option<ProgressSink>,
    pub(crate) caller: Caller,
}

/// A component ready to instantiate, and what it may do.
pub(crate) struct Loaded {
    pub(crate) name: Arc<str>,
    pre: ToolComponentPre<StoreState>,
    pub(crate) grant: Arc<Grant>,
}

/// A component as compiled off the async threads.
pub(crate) struct Compiled {
    pub(crate) name: String,
    pub(crate) grant: Grant,
    pub(crate) component: anyhow::Result<Component>,
}

/// The engine, the linker, and what every call's store is given.
pub(crate) struct Runtime {
    engine: Engine,
    linker: Linker<StoreState>,
    cache: Arc<cache::CompileCache>,
    sessions: SessionManager,
    /// Set once the log is open; every store gets it.
    pub(crate) audit: Option<Arc<AuditLog>>,
    /// `--guest-memory-limit`: only the operator's grant may raise it.
    memory_ceiling: usize,
    transfer_roots: Arc<super::transfer_roots::TransferRoots>,
    write_locks: Arc<super::imports::WriteLocks>,
}

impl Runtime {
    /// An engine with epochs ticking, and the linker of this host's world.
    pub(crate) fn new(config: &PluginSettings, sessions: SessionManager) -> anyhow::Result<Self> {
        let mut wasm_config = wasmtime::Config::new();
        wasm_config
            .epoch_interruption(true)
            .wasm_component_model(true);
        let engine = Engine::new(&wasm_config)?;
        spawn_epoch_ticker(&engine);
        let cache = Arc::new(cache::CompileCache::new(&engine, config.cache_dir.clone()));
        let mut linker = Linker::<StoreState>::new(&engine);
        wasi::add_to_linker(&mut linker)?;
        ToolComponent::add_to_linker::<_, HasSelf<StoreState>>(&mut linker, |s| s)?;
        Ok(Self {
            engine,
            linker,
            cache,
            sessions,
            audit: None,
            memory_ceiling: config.memory_limit,
            transfer_roots: Arc::new(super::transfer_roots::TransferRoots::new(
                &config.transfer_roots,
            )?),
            write_locks: Arc::default(),
        })
    }

    /// Starts compiling every source in parallel, off the async threads,
    /// through the compile cache; await the handles in order.
    pub(crate) fn compile(&self, sources: Vec<Source>) -> Vec<tokio::task::JoinHandle<Compiled>> {
        sources
            .into_iter()
            .map(|Source { name, wasm, grant }| {
                let (engine, cache) = (self.engine.clone(), self.cache.clone());
                tokio::task::spawn_blocking(move || {
                    let component = cache.load(&engine, &name, &wasm);
                    Compiled {
                        name,
                        grant,
                        component,
                    }
                })
            })
            .collect()
    }

    /// Trims the compile cache to what recent starts used, once every
    /// component is loaded.
    pub(crate) async fn prune_cache(&self) {
        let cache = self.cache.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || cache.prune()).await {
            tracing::debug!("compile cache: pruning failed: {e}");
        }
    }

    /// Compiles `bytes` without the cache: a component only being checked.
    pub(crate) async fn compile_uncached(&self, bytes: Vec<u8>) -> anyhow::Result<Component> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || Ok(Component::new(&engine, &bytes)?)).await?
    }

    /// Links a compiled component against this host's world.
    pub(crate) fn prepare(
        &self,
        name: Arc<str>,
        grant: Grant,
        component: anyhow::Result<Component>,
    ) -> anyhow::Result<Loaded> {
        let pre = component
            .and_then(|c| Ok(ToolComponentPre::new(self.linker.instantiate_pre(&c)?)?))
            .map_err(|e| anyhow::anyhow!("{name}: not a usable tool component: {e:#}"))?;
        Ok(Loaded {
            name,
            pre,
            grant: Arc::new(grant),
        })
    }

    /// The tools `component` exports, asked within [`LIST_TOOLS_CPU`].
    pub(crate) async fn list_tools(
        &self,
        component: &Loaded,
    ) -> anyhow::Result<Vec<tool::ToolInfo>> {
        let env = CallEnv {
            cancel: CancellationToken::new(),
            progress: None,
            caller: Caller::operator("-", self.sessions.clone()),
        };
        self.with_instance(
            component,
            "list-tools".into(),
            LIST_TOOLS_CPU,
            env,
            async |store, instance| instance.call_list_tools(store).await,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}: list-tools failed: {e}", component.name))
    }

    /// Calls tool `name` of `component` with JSON `arguments` in a fresh
    /// instance. A component that fails, or returns too much or invalid
    /// structured content, gives a failed tool result naming it.
    pub(crate) async fn call_tool(
        &self,
        component: &Loaded,
        name: &str,
        arguments: &str,
        budget: Duration,
        env: CallEnv,
    ) -> Result<ToolOutput, CallError> {
        let result = self
            .with_instance(
                component,
                name.into(),
                budget,
                env,
                async |store, instance| instance.call_call_tool(store, name, arguments).await,
            )
            .await;
        let r = match result {
            Ok(Ok(r)) => r,
            Ok(Err(tool::CallError::UnknownTool(_))) => {
                return Err(CallError::UnknownTool(name.to_string()));
            }
            Ok(Err(tool::CallError::InvalidArguments(message))) => {
                return Err(CallError::InvalidArguments {
                    tool: name.to_string(),
                    message: bounded::clip(&message, bounded::MAX_COMMAND).into_owned(),
                });
            }
            Err(e) => return Ok(guest_failure(&component.name, &e)),
        };
        let size = result_size(&r);
        if size > MAX_RESULT_BYTES {
            let detail = format!(
                "it returned a {} MB result, more than the {} MB limit",
                size >> 20,
                MAX_RESULT_BYTES >> 20
            );
            return Ok(guest_failure(&component.name, &detail));
        }
        let structured = match r.structured_content.map(|s| serde_json::from_str(&s)) {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                let detail = format!("invalid structured content: {e}");
                return Ok(guest_failure(&component.name, &detail));
            }
        };
        Ok(ToolOutput {
            text: r
                .content
                .into_iter()
                .map(|tool::Content::Text(t)| t)
                .collect(),
            structured,
            is_error: r.is_error,
        })
    }

    /// Runs `f` against a fresh instance of `component`, within the time
    /// budget `budget`. Guest stderr and log overflow are logged
    /// afterwards.
    async fn with_instance<R>(
        &self,
        component: &Loaded,
        tool: Arc<str>,
        budget: Duration,
        env: CallEnv,
        f: impl AsyncFnOnce(&mut Store<StoreState>, &tool::Guest) -> wasmtime::Result<R>,
    ) -> Result<R, String> {
        // Only the operator's grant may raise the flag's ceiling.
        let memory = component.grant.memory_limit(self.memory_ceiling);
        let stderr = stderr::GuestStderr::default();
        let clock = clock::GuestClock::start(budget);
        let CallEnv {
            cancel,
            progress,
            caller,
        } = env;
        let state = StoreState {
            wasi: wasi::context(&stderr, STDERR_CAPACITY),
            table: Default::default(),
            limits: limits::MemoryBudget::new(memory),
            component: component.name.clone(),
            grant: component.grant.clone(),
            sessions: caller.sessions,
            shared: caller.shared,
            client: caller.name,
            client_policy: caller.policy,
            clock: clock.clone(),
            stderr: stderr.clone(),
            log: bounded::LogBudget::default(),
            cancel: cancel.clone(),
            progress: progress.map(bounded::progress),
            audit: self.audit.clone(),
            tool,
            transfer_roots: self.transfer_roots.clone(),
            write_locks: self.write_locks.clone(),
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
                return Err(if s.cancel.is_cancelled() {
                    cancelled_error()
                } else {
                    time_limit_error(&s.component, s.clock.budget())
                });
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
            () = clock.expired() => Err(if cancel.is_cancelled() {
                cancelled_error()
            } else {
                time_limit_error(&component.name, budget)
            }),
            () = async {
                cancel.cancelled().await;
                clock.cut(CANCEL_GUEST_GRACE);
                let _ = tokio::time::timeout(CANCEL_GRACE, clock.expired()).await;
            } => Err(cancelled_error()),
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
}

fn result_size(r: &tool::CallResult) -> usize {
    let text: usize = r.content.iter().map(|tool::Content::Text(t)| t.len()).sum();
    text + r.structured_content.as_ref().map_or(0, String::len)
}

fn cancelled_error() -> wasmtime::Error {
    wasmtime::format_err!("cancelled by the client")
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
