//! The session-state row: a warm `execute_command true` on a server that
//! keeps each session's directory and variables, against the same call on
//! a `--stateless` server, on the same sshd, in interleaved blocks so drift
//! on a shared machine hits both.

use std::path::Path;

use serde_json::json;

use super::sshd::{Sshd, TEST_USER};
use super::{call, ms, ratio, row, spawn_from, stats, timed_call};

/// Measures and prints the row.
pub(super) async fn measure(quick: bool, cache: &Path, sshd: &Sshd) {
    let (blocks, per_block) = if quick { (4, 25) } else { (10, 50) };
    let builder = || super::server::Server::builder();
    let (stateful, _) = spawn_from(builder(), cache, "warn").await;
    let (stateless, _) = spawn_from(builder().arg("--stateless"), cache, "warn").await;
    let open = super::key_args(sshd, sshd.port(), "true");
    // A session with a directory and a few variables to replay, as an
    // agent's would have.
    let setup = super::key_args(
        sshd,
        sshd.port(),
        "cd /tmp && export APP_ENV=bench APP_HOME=/srv/app PATH=\"$PATH:/opt/bin\"",
    );
    call(&stateful, "execute_command", &setup).await.unwrap();
    call(&stateless, "execute_command", &open).await.unwrap();
    let args = json!({"host": "127.0.0.1", "port": sshd.port(), "username": TEST_USER,
                      "command": "true"});
    for server in [&stateful, &stateless] {
        for _ in 0..20 {
            call(server, "execute_command", &args).await.unwrap();
        }
    }
    let (mut kept, mut fresh) = (Vec::new(), Vec::new());
    for _ in 0..blocks {
        for _ in 0..per_block {
            kept.push(timed_call(&stateful, "execute_command", &args).await);
        }
        for _ in 0..per_block {
            fresh.push(timed_call(&stateless, "execute_command", &args).await);
        }
    }
    let (k, f) = (stats(kept), stats(fresh));
    let label = format!(
        "warm `execute_command true`, session state kept (cwd + 3 variables), n={}",
        blocks * per_block
    );
    row([
        &label,
        &ms(k.median),
        &ms(k.p90),
        &ms(k.p99),
        &format!("`--stateless`, interleaved: {}", ms(f.median)),
        &ratio(k.median, f.median),
    ]);
}
