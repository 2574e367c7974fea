//! The tool components `doctor` reports: the built-ins, each plugin of the
//! plugin directory loaded as `plugin check` loads it, with its effective
//! grant, and grants that name no component.

use std::path::{Path, PathBuf};

use super::local::writable_by_others;
use super::{Item, Section};
use crate::plugins::{GrantSpec, PluginHost, PluginSettings};
use crate::ssh::SessionManager;

pub(super) async fn check(settings: &PluginSettings) -> Section {
    let mut section = Section::new("Tool components");
    let builtins = PluginSettings {
        plugin_dir: None,
        audit_log: None,
        ..settings.clone()
    };
    let sessions = SessionManager::new(crate::ssh::SshSettings::default());
    match PluginHost::load(builtins, sessions).await {
        Ok(host) => {
            let names: Vec<&str> = host.tools().map(|t| t.name.as_str()).collect();
            section.push(Item::ok(
                "built-in tools",
                format!("{}: {}", names.len(), names.join(", ")),
            ));
        }
        Err(e) => section.push(Item::fail(
            "built-in tools",
            format!("do not load: {e:#}"),
            "reinstall the binary (cargo install --path host); if the compile cache is at fault, \
             run with --no-cache",
        )),
    }
    let Some(dir) = &settings.plugin_dir else {
        section.push(Item::info("plugin directory", "none (--no-plugins)"));
        return section;
    };
    let shown = dir.display();
    let files = match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
                .collect();
            files.sort();
            section.push(Item::ok(
                "plugin directory",
                format!("{shown}: {} component(s)", files.len()),
            ));
            files
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !settings.plugin_dir_required => {
            section.push(Item::info(
                "plugin directory",
                format!("{shown} does not exist: built-in tools only"),
            ));
            Vec::new()
        }
        Err(e) => {
            section.push(Item::fail(
                "plugin directory",
                format!("{shown}: {e}: the server refuses to start"),
                format!("create it (mkdir -p '{shown}') or drop --plugins"),
            ));
            Vec::new()
        }
    };
    if let Some(mode) = writable_by_others(dir) {
        section.push(Item::warn(
            "plugin directory",
            format!(
                "{shown} is writable by group or others (mode {mode:04o}): they could add tools \
                 to your agent"
            ),
            format!("chmod 700 '{shown}'"),
        ));
    }
    for file in &files {
        section.push(plugin(settings, file).await);
    }
    for name in settings.grants.keys() {
        if !dir.join(format!("{name}.wasm")).exists() {
            section.push(Item::warn(
                "grant",
                format!(
                    "{} grants [plugins.{name}], but there is no {name}.wasm in {shown}",
                    settings.config_path.display()
                ),
                format!("install {name}.wasm there, or remove [plugins.{name}]"),
            ));
        }
    }
    section
}

/// One plugin, loaded as `plugin check` loads it, with its effective grant.
async fn plugin(settings: &PluginSettings, file: &Path) -> Item {
    let what = format!("plugin {}", file.display());
    let report = match PluginHost::check(settings.clone(), file).await {
        Ok(r) => r,
        Err(e) => {
            return Item::warn(
                what,
                format!("does not load, the server skips it: {e:#}"),
                format!(
                    "`mcp-ssh-session plugin check '{}'` says why; rebuild it against this \
                     host's WIT (PLUGINS.md)",
                    file.display()
                ),
            );
        }
    };
    let tools: Vec<&str> = report.tools.iter().map(|t| t.name.as_str()).collect();
    let tools = format!("tools {}", tools.join(", "));
    match (&report.manifest, &report.operator) {
        (None, _) => Item::info(
            what,
            format!(
                "{tools}; no manifest beside it ({}.toml), so it may not use SSH at all",
                report.name
            ),
        ),
        (Some(m), None) => Item::warn(
            what,
            format!(
                "{tools}; requests {}, but is not granted anything: every SSH call it makes is \
                 denied",
                summary(&m.requests)
            ),
            format!(
                "to allow what it requests, add [plugins.{}] to {} (`plugin check` prints the \
                 table)",
                report.name,
                report.config_path.display()
            ),
        ),
        (Some(m), Some(g)) => Item::ok(
            what,
            format!(
                "{tools}; effective grant: what both allow of requested {{{}}} and granted {{{}}}",
                summary(&m.requests),
                summary(g)
            ),
        ),
    }
}

/// A grant on one line.
fn summary(g: &GrantSpec) -> String {
    let mut parts = Vec::new();
    let list = |v: &[String]| format!("{v:?}");
    if !g.hosts.is_empty() {
        parts.push(format!("hosts {}", list(&g.hosts)));
    }
    if !g.ports.is_empty() {
        parts.push(format!("ports {:?}", g.ports));
    }
    if !g.users.is_empty() {
        parts.push(format!("users {}", list(&g.users)));
    }
    if !g.commands.is_empty() {
        parts.push(format!("commands {:?}", g.commands));
    }
    for (on, name) in [
        (g.shell, "shell"),
        (g.credentials, "credentials"),
        (g.all_sessions, "all_sessions"),
    ] {
        if on {
            parts.push(name.into());
        }
    }
    if let Some(n) = g.max_output_bytes {
        parts.push(format!("max_output_bytes {n}"));
    }
    if let Some(n) = g.max_concurrency {
        parts.push(format!("max_concurrency {n}"));
    }
    if let Some(n) = g.cpu_seconds {
        parts.push(format!("cpu_seconds {n}"));
    }
    if let Some(n) = g.memory_mib {
        parts.push(format!("memory_mib {n}"));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}
