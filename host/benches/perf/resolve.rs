//! The ssh_config row: what resolving a target costs in-process, parsed
//! and as calls see it (cached while no file changes).

use std::path::Path;
use std::time::{Duration, Instant};

use super::table::{Stats, micros, ms, ratio, row, stats};

/// Measures and prints the rows; `warm` is the warm call's median.
pub fn measure(quick: bool, dir: &Path, warm: Duration) {
    let samples = if quick { 200 } else { 2000 };
    let (parsed, cached) = resolve_cost(dir, samples);
    for (what, r) in [("parsed", parsed), ("cached (a stat per file)", cached)] {
        row([
            &format!(
                "ssh_config resolution, 200 Host blocks + the system file, {what}, n={samples}"
            ),
            &micros(r.median),
            &micros(r.p90),
            &micros(r.p99),
            &format!("warm call: {}", ms(warm)),
            &ratio(r.median, warm),
        ]);
    }
}

/// In-process cost of resolving a target through ssh_config, which every
/// call pays: a user file of 200 `Host` blocks (the match is the last) and
/// this machine's `/etc/ssh/ssh_config` with its `Include`. Parsed every
/// time, then as calls see it (cached while no file changes).
fn resolve_cost(dir: &Path, n: usize) -> (Stats, Stats) {
    use mcp_ssh_session::ssh::ssh_config::{Files, Query};
    use mcp_ssh_session::ssh::{SessionManager, SshSettings, Target};
    let path = dir.join("ssh_config_bench");
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!(
            "Host web-{i} web-{i}.example\n  HostName 10.0.{}.{}\n  User deploy\n  \
             Port {}\n  IdentityFile ~/.ssh/id_web_{i}\n\n",
            i / 250,
            i % 250,
            2200 + i
        ));
    }
    text.push_str("Host *\n  ServerAliveInterval 30\n  SendEnv LANG\n");
    std::fs::write(&path, text).unwrap();
    let files = Files {
        user: Some(path),
        system: Some("/etc/ssh/ssh_config".into()),
    };
    let query = Query {
        host: "web-199",
        user: None,
        port: None,
        local_user: "bench",
    };
    let mut parsed = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let config = files.resolve(&query).unwrap();
        parsed.push(started.elapsed());
        assert_eq!(config.port, Some(2399));
    }
    let manager = SessionManager::new(SshSettings {
        ssh_config: files,
        ..SshSettings::default()
    });
    let target = Target {
        host: "web-199".into(),
        ..Target::default()
    };
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let dest = manager.resolve(&target).unwrap();
        times.push(started.elapsed());
        assert_eq!(dest.key.port, 2399);
    }
    (stats(parsed), stats(times))
}
