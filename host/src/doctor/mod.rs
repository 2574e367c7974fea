//! `mcp-ssh-session doctor [HOST]`: what the server would use, and why a
//! host does not work.
//!
//! Without a host it reports the local setup ([`local`], the components in
//! [`plugins`]): config files, plugins and their grants, known_hosts, the
//! agent, the cache, and every problem found with its fix. With a host it
//! also resolves it through ssh_config and connects step by step through
//! the SSH core's own code ([`remote`], with `connect::establish_probed`:
//! the same handshake, host-key check and authentication the server runs,
//! except that a new host key is never recorded), then probes what commands
//! meet there with the launcher and stop the server uses ([`on_host`]).
//!
//! Nothing here prints a secret: a password only travels from stdin to the
//! SSH core, zeroed when dropped.

mod local;
mod on_host;
mod plugins;
mod remote;

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::Settings;
use crate::ssh::{Credentials, SessionManager};

/// How one finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Worked, or is as it should be.
    Ok,
    /// Plain information.
    Info,
    /// Works, but something is off (with a fix).
    Warn,
    /// Does not work (with a fix).
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub status: Status,
    /// What was checked: `known_hosts`, `TCP connect`, `host key`...
    pub what: String,
    pub detail: String,
    /// How long the step took, for the steps of a connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Item {
    pub(crate) fn new(status: Status, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            status,
            what: what.into(),
            detail: detail.into(),
            ms: None,
            fix: None,
        }
    }

    pub(crate) fn ok(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(Status::Ok, what, detail)
    }

    pub(crate) fn info(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(Status::Info, what, detail)
    }

    pub(crate) fn warn(
        what: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(Status::Warn, what, detail).fix(fix)
    }

    pub(crate) fn fail(
        what: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(Status::Fail, what, detail).fix(fix)
    }

    pub(crate) fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    pub(crate) fn took(mut self, d: Duration) -> Self {
        self.ms = Some((d.as_secs_f64() * 10_000.0).round() / 10.0);
        self
    }
}

/// A titled group of findings.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub title: String,
    pub items: Vec<Item>,
}

impl Section {
    pub(crate) fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            items: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, item: Item) {
        self.items.push(item);
    }
}

/// Everything `doctor` found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub sections: Vec<Section>,
    /// The host asked about, as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// No finding failed: the server can start and, with a host, reach it.
    pub ok: bool,
}

/// What `doctor` was asked.
#[derive(Default)]
pub struct Options {
    /// `HOST`: an ssh_config alias, `host`, `user@host`, `user@host:port`.
    pub host: Option<String>,
    /// Read from stdin (`--password-stdin`), never from the command line.
    pub password: Option<Zeroizing<String>>,
    /// The operator's config file failed to load (the server would not
    /// start): the error, reported as a finding.
    pub config_error: Option<String>,
}

/// Runs every check and returns the report.
pub async fn run(settings: Settings, options: Options) -> Report {
    let manager = SessionManager::new(settings.ssh.clone());
    let target = options.host.as_deref().map(remote::parse_target);
    let mut sections = local::check(
        &settings,
        &manager,
        options.config_error.as_deref(),
        target.as_ref().and_then(|t| t.as_ref().ok()),
    )
    .await;
    if let Some(target) = target {
        let credentials = options.password.map(|password| Credentials {
            password: Some(password),
            ..Credentials::default()
        });
        sections.extend(remote::check(&manager, target, credentials).await);
    }
    let ok = sections
        .iter()
        .flat_map(|s| &s.items)
        .all(|i| i.status != Status::Fail);
    Report {
        sections,
        host: options.host,
        ok,
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut problems = Vec::new();
        for section in &self.sections {
            writeln!(f, "{}", section.title)?;
            for item in &section.items {
                write_item(f, item)?;
                if matches!(item.status, Status::Warn | Status::Fail) {
                    problems.push(item);
                }
            }
            writeln!(f)?;
        }
        let fails = problems.iter().filter(|i| i.status == Status::Fail).count();
        let warns = problems.len() - fails;
        if problems.is_empty() {
            writeln!(f, "No problems found.")?;
        } else {
            writeln!(f, "Problems: {fails} failing, {warns} to look at")?;
            for item in &problems {
                write_item(f, item)?;
            }
        }
        let verdict = match (&self.host, self.ok) {
            (Some(h), true) => format!("\n{h}: works"),
            (Some(h), false) => format!("\n{h}: does NOT work (see FAIL above)"),
            (None, true) => String::new(),
            (None, false) => "\nThe server would not work as configured (see FAIL above)".into(),
        };
        if !verdict.is_empty() {
            writeln!(f, "{verdict}")?;
        }
        Ok(())
    }
}

fn write_item(f: &mut std::fmt::Formatter<'_>, item: &Item) -> std::fmt::Result {
    let mark = match item.status {
        Status::Ok => "ok  ",
        Status::Info => "    ",
        Status::Warn => "WARN",
        Status::Fail => "FAIL",
    };
    let mut line = format!("  {mark} {}: {}", item.what, item.detail);
    if let Some(ms) = item.ms {
        let _ = write!(line, " ({ms} ms)");
    }
    writeln!(f, "{line}")?;
    if let Some(fix) = &item.fix {
        writeln!(f, "       fix: {fix}")?;
    }
    Ok(())
}

/// Longest password taken from stdin.
const MAX_PASSWORD: usize = 4096;

/// One line from stdin (the newline and a `\r` before it dropped), read a
/// byte at a time straight from the descriptor: no buffer of the standard
/// library keeps a copy, and nothing after the line is consumed.
pub fn read_password_line() -> std::io::Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_PASSWORD));
    loop {
        let mut b = Zeroizing::new([0u8; 1]);
        // SAFETY: reads at most one byte into `b`, which outlives the call.
        let n = unsafe { libc::read(0, b.as_mut_ptr().cast(), 1) };
        match n {
            0 => break,
            1 if b[0] == b'\n' => break,
            1 if bytes.len() >= MAX_PASSWORD => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("the password on stdin is longer than {MAX_PASSWORD} bytes"),
                ));
            }
            1 => bytes.push(b[0]),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    match String::from_utf8(std::mem::take(&mut *bytes)) {
        Ok(s) => Ok(Zeroizing::new(s)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the password on stdin is not UTF-8",
            ))
        }
    }
}
