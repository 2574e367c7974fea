//! mcp-ssh-session: an MCP server giving AI agents persistent, safe SSH
//! sessions, whose tools are sandboxed WebAssembly components.
//!
//! Dependencies run one way: [`mcp`] serves the tools of [`plugins`], whose
//! components reach SSH only through the host's [`ssh`] core; [`config`]
//! builds the settings of both.

pub mod audit;
pub mod config;
mod fsutil;
pub mod mcp;
mod pattern;
pub mod plugins;
pub mod ssh;

use std::sync::Arc;

use anyhow::Context;
use rmcp::ServiceExt;

pub use config::{Cli, Command, Config, PluginCommand};

/// A log directive every subscriber of this crate's binaries must add:
/// rmcp's service layer logs requests with their arguments at debug.
pub const SECRET_SAFE_DIRECTIVE: &str = "rmcp::service=info";

/// Loads the tools and serves MCP on stdin/stdout until the client leaves.
pub async fn serve_stdio(config: Config) -> anyhow::Result<()> {
    let sessions = ssh::SessionManager::new(config.ssh);
    let plugins = plugins::PluginHost::load(config.plugins, sessions.clone())
        .await
        .context("loading tool components")?;
    let server = mcp::McpServer::new(Arc::new(plugins));
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .context("MCP initialization failed")?;
    let reason = running.waiting().await?;
    tracing::info!(?reason, "client disconnected");
    sessions.close_all();
    Ok(())
}
