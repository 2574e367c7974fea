//! The `mcp-ssh-session` binary: parse flags, log to stderr, serve stdio
//! (or HTTP with `--http`).

mod cli;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command, PluginCommand, TokenCommand};
use mcp_ssh_session::{Settings, run};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

// No `#[tokio::main]`: the async work runs on the library's runtime
// (`run`), so that this crate compiles none of the server's futures again.
fn main() -> ExitCode {
    // Before anything else: passwords must never land in a core file.
    let hardened = mcp_ssh_session::disable_core_dumps();
    let mut cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // stdout carries JSON-RPC only: every log line goes to stderr, one
    // line per record whatever a client put in it (`logging`).
    tracing_subscriber::fmt()
        .with_writer(mcp_ssh_session::logging::Stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .finish()
        .with(mcp_ssh_session::secret_guard())
        .init();
    if let Err(e) = hardened {
        tracing::warn!("could not disable core dumps: {e}");
    }
    let command = cli.command.take();
    if let Some(Command::Doctor {
        host,
        password_stdin,
        json,
    }) = command
    {
        return doctor(cli, host, password_stdin, json);
    }
    if let Some(Command::Token {
        action: TokenCommand::New { name },
    }) = command
    {
        return new_token(&name);
    }
    let http = match cli.http_options() {
        Ok(http) => http,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match (cli.into_settings(), command) {
        (Err(e), _) => Err(e),
        (Ok(config), None) => match http {
            Some(options) => run::http(config, options),
            None => run::stdio(config),
        },
        (
            Ok(config),
            Some(Command::Plugin {
                action: PluginCommand::Check { file },
            }),
        ) => check(config, &file),
        (Ok(_), Some(Command::Doctor { .. } | Command::Token { .. })) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `token new`: the token goes to stdout once; only its hash is kept.
fn new_token(name: &str) -> ExitCode {
    match mcp_ssh_session::http::new_token(name) {
        Ok((token, lines)) => {
            println!(
                "Token for client {name} (shown once; give it to the client as \
                 `Authorization: Bearer <token>`):\n\n{token}\n\nAdd to the config file:\n\n{lines}"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `plugin check`: the report goes to stdout, as for any CLI command.
fn check(config: Settings, file: &std::path::Path) -> anyhow::Result<()> {
    let report = run::plugin_check(config, file)?;
    println!(
        "ok: {} is a usable tool component\n\n{report}",
        file.display()
    );
    Ok(())
}

/// `doctor`: the report goes to stdout (doctor is no MCP server); exit 1
/// when something fails.
fn doctor(cli: Cli, host: Option<String>, password_stdin: bool, json: bool) -> ExitCode {
    let password = if password_stdin {
        match mcp_ssh_session::doctor::read_password_line() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!("--password-stdin: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let (settings, config_error) = match cli.into_doctor_settings() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let options = mcp_ssh_session::doctor::Options {
        host,
        password,
        config_error,
    };
    let report = match run::doctor(settings, options) {
        Ok(report) => report,
        Err(e) => {
            tracing::error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                tracing::error!("cannot write the report as JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{report}");
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
