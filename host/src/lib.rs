//! mcp-ssh-session: an MCP server giving AI agents persistent, safe SSH
//! sessions, whose tools are sandboxed WebAssembly components.
//!
//! Dependencies run one way: [`mcp`] serves the tools of [`plugins`], whose
//! components reach SSH only through the host's [`ssh`] core; [`config`]
//! builds the settings of both. [`http`] carries [`mcp`] over streamable
//! HTTP, with a namespace (session and job tables) per client.

pub mod audit;
pub mod config;
pub mod doctor;
mod fsutil;
pub mod http;
pub mod logging;
pub mod mcp;
mod pattern;
pub mod plugins;
pub mod run;
pub mod ssh;
mod stdio;

use std::sync::Arc;

use anyhow::Context;
use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

pub use config::Settings;

/// A filter every subscriber of this crate's binaries must add: rmcp logs
/// requests with their arguments at debug, a line it cannot parse verbatim
/// (password and all), and notifications with their params at info. It is
/// a filter of its own rather than an `EnvFilter` directive because a more
/// specific directive the user gives (`rmcp::transport=trace`) would beat
/// ours: here every `rmcp` target is held at warn whatever was asked.
pub fn secret_guard() -> tracing_subscriber::filter::FilterFn {
    tracing_subscriber::filter::FilterFn::new(secret_safe as fn(&tracing::Metadata<'_>) -> bool)
}

fn secret_safe(meta: &tracing::Metadata<'_>) -> bool {
    let target = meta.target();
    let rmcp = target == "rmcp" || target.starts_with("rmcp::");
    !rmcp || *meta.level() <= tracing::Level::WARN
}

/// Keeps secrets out of core dumps: none is written (`RLIMIT_CORE` 0) and
/// the process is not dumpable, which also stops same-user `ptrace` and
/// `/proc/PID/mem` reads by non-root processes. Call it first in `main`,
/// before any secret can be in memory.
pub fn disable_core_dumps() -> std::io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass; prctl with
    // PR_SET_DUMPABLE takes plain integers.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The largest JSON-RPC message taken, on stdin or in an HTTP request: a
/// call with the largest `stdin` (16 MiB) must fit however its client
/// escapes it (up to 6 bytes a byte, `\u0001`), or it would be dropped
/// unanswered.
pub(crate) const MAX_MESSAGE: usize = 100 << 20;

/// Loads the tools and serves MCP on stdin/stdout until the client leaves.
pub async fn serve_stdio(config: Settings) -> anyhow::Result<()> {
    let sessions = ssh::SessionManager::new(config.ssh);
    let plugins = plugins::PluginHost::load(config.plugins, sessions.clone())
        .await
        .context("loading tool components")?;
    let callers = mcp::Callers::One(plugins::Caller::operator("stdio", sessions.clone()));
    let server = mcp::McpServer::new(Arc::new(plugins), Arc::new(callers));
    let calls = server.calls();
    // rmcp drops a message past 16 MiB by default.
    let (stdin, stdout, _restore) = stdio::open();
    let ended = stdin.ended();
    let transport = rmcp::transport::async_rw::AsyncRwTransport::new_server(stdin, stdout)
        .with_max_line_length(MAX_MESSAGE);
    let running = server
        .serve(transport)
        .await
        .context("MCP initialization failed")?;
    // SIGINT and SIGTERM cancel the service, and with it every call in
    // flight, as a client's cancel would: each stops its command.
    let signalled = CancellationToken::new();
    tokio::spawn(stop_on_signal(signalled.clone()));
    let service = running.cancellation_token();
    let quit = async {
        tokio::select! {
            () = ended.notified() => {}
            () = signalled.cancelled() => service.cancel(),
        }
    };
    // When stdin ends, rmcp drains answers for 5 s, then cancels the calls
    // still running; the server waits for them to stop their commands.
    // A client that reads no more answers keeps it waiting: leave after a
    // margin, whatever is left.
    let finished = async {
        match running.waiting().await {
            Ok(reason) => tracing::info!(?reason, "client disconnected"),
            Err(e) => tracing::error!("the MCP service failed: {e}"),
        }
        calls.close();
        calls.wait().await;
    };
    let left = async {
        quit.await;
        tokio::time::sleep(STDIN_ENDED_GRACE).await;
    };
    tokio::select! {
        () = finished => {}
        () = left => tracing::warn!(
            "{} s after stdin ended or a signal, calls are still running or the client \
             reads no more answers: exiting",
            STDIN_ENDED_GRACE.as_secs()
        ),
    }
    sessions.shut_down().await;
    Ok(())
}

/// Cancels `stop` on the first SIGINT or SIGTERM.
pub(crate) async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("cannot listen for SIGTERM/SIGINT: {e}");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    stop.cancel();
}

/// How long after stdin ends (or a signal) the server leaves, answered or
/// not: rmcp's own drain of in-flight answers (5 s), and the stop of the
/// commands of calls it then cancels.
const STDIN_ENDED_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Loads the tools and serves MCP over streamable HTTP until SIGINT or
/// SIGTERM; see [`http`].
pub async fn serve_http(config: Settings, options: http::HttpOptions) -> anyhow::Result<()> {
    http::serve(config, options).await
}
