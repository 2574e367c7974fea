//! The binary's entry points, each on a tokio runtime made here.
//!
//! They are plain functions so that the binary never polls one of this
//! crate's futures itself: rustc compiles an async body in every crate that
//! polls it, and a binary awaiting `serve_stdio` compiled the whole server
//! (rmcp, tokio, russh and wasmtime generics) a second time, a minute of a
//! first build on two cores.

use std::future::Future;
use std::path::Path;

use crate::{Settings, doctor, http, plugins};

/// Serves MCP on stdin/stdout until the client leaves; see
/// [`crate::serve_stdio`].
pub fn stdio(config: Settings) -> anyhow::Result<()> {
    block_on(crate::serve_stdio(config))?
}

/// Serves MCP over streamable HTTP until SIGINT or SIGTERM; see
/// [`crate::serve_http`].
pub fn http(config: Settings, options: http::HttpOptions) -> anyhow::Result<()> {
    block_on(crate::serve_http(config, options))?
}

/// `plugin check`: what [`plugins::PluginHost::check`] reports of `file`.
pub fn plugin_check(config: Settings, file: &Path) -> anyhow::Result<plugins::CheckReport> {
    block_on(plugins::PluginHost::check(config.plugins, file))?
}

/// `doctor`: the report of [`doctor::run`].
pub fn doctor(settings: Settings, options: doctor::Options) -> anyhow::Result<doctor::Report> {
    block_on(doctor::run(settings, options))
}

/// The runtime `#[tokio::main]` would make: one worker per core, I/O and
/// timers.
fn block_on<F: Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    Ok(runtime.block_on(future))
}
