//! The `mcp-ssh-session` binary: parse flags, log to stderr, serve stdio.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, PluginCommand};
use mcp_ssh_session::Settings;
use mcp_ssh_session::plugins::PluginHost;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main]
async fn main() -> ExitCode {
    // Before anything else: passwords must never land in a core file.
    let hardened = mcp_ssh_session::disable_core_dumps();
    let mut cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // stdout carries JSON-RPC only: every log line goes to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .finish()
        .with(mcp_ssh_session::secret_guard())
        .init();
    if let Err(e) = hardened {
        tracing::warn!("could not disable core dumps: {e}");
    }
    let command = cli.command.take();
    let result = match (cli.into_settings(), command) {
        (Err(e), _) => Err(e),
        (Ok(config), None) => mcp_ssh_session::serve_stdio(config).await,
        (
            Ok(config),
            Some(Command::Plugin {
                action: PluginCommand::Check { file },
            }),
        ) => check(config, &file).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `plugin check`: the report goes to stdout, as for any CLI command.
async fn check(config: Settings, file: &std::path::Path) -> anyhow::Result<()> {
    let report = PluginHost::check(config.plugins, file).await?;
    println!(
        "ok: {} is a usable tool component\n\n{report}",
        file.display()
    );
    Ok(())
}
