//! The `mcp-ssh-session` binary: parse flags, log to stderr, serve stdio.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = mcp_ssh_session::Cli::parse();
    let mut filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // rmcp logs whole requests, tool arguments and their passwords included,
    // at debug: hold it at info whatever the user asked for.
    if let Ok(directive) = mcp_ssh_session::SECRET_SAFE_DIRECTIVE.parse() {
        filter = filter.add_directive(directive);
    }
    // stdout carries JSON-RPC only: every log line goes to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
    let result = match cli.into_config() {
        Ok(config) => mcp_ssh_session::serve_stdio(config).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
