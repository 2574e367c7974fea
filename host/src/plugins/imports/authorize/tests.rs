//! Unit tests of the gate: refusals and what they audit, the slot, and a
//! pass that is dropped before it is finished.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::plugins::grants::{Grant, GrantSpec, Manifest};
use crate::plugins::{clock, limits, stderr, wasi};

fn store(grant: Grant, log: &std::path::Path) -> StoreState {
    let stderr = stderr::GuestStderr::default();
    StoreState {
        wasi: wasi::context(&stderr, 1024),
        table: Default::default(),
        limits: limits::MemoryBudget::new(1 << 20),
        component: "c.wasm".into(),
        grant: Arc::new(grant),
        sessions: core::SessionManager::new(core::SshSettings::default()),
        client: "stdio".into(),
        client_policy: None,
        shared: None,
        clock: clock::GuestClock::start(Duration::from_secs(60)),
        stderr,
        log: bounded::LogBudget::default(),
        cancel: Default::default(),
        progress: None,
        audit: Some(Arc::new(AuditLog::open(log).unwrap())),
        tool: "t".into(),
        transfer_roots: Default::default(),
        write_locks: Default::default(),
    }
}

fn plugin(max_concurrency: Option<usize>) -> Grant {
    let spec = GrantSpec {
        hosts: vec!["*".into()],
        users: vec!["*".into()],
        shell: true,
        max_concurrency,
        ..GrantSpec::default()
    };
    let manifest = Manifest {
        requests: spec.clone(),
    };
    Grant::for_plugin("c", Some(&manifest), Some(&spec), "config.toml".as_ref())
}

fn target() -> core::Target {
    core::Target {
        host: "127.0.0.1".into(),
        username: Some("u".into()),
        ..core::Target::default()
    }
}

fn lines(log: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn an_ungranted_command_is_refused_and_audited_as_denied() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let state = store(
        Grant::for_plugin("c", None, None, "config.toml".as_ref()),
        &log,
    );
    let mut t = target();
    let refused = state.authorize(Access::Command(&mut t, Command::Line("id")));
    assert!(matches!(refused, Err(SshError::Denied(ref m)) if m.contains("no manifest")));
    let entries = lines(&log);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["kind"], "ssh_command");
    assert_eq!(entries[0]["command"], "id");
    assert!(
        entries[0]["decision"]
            .as_str()
            .unwrap()
            .starts_with("denied: component c has no manifest")
    );
    // Learning where a target goes is refused too, and not audited.
    let mut t = target();
    assert!(state.authorize(Access::Describe(&mut t)).is_err());
    assert_eq!(lines(&log).len(), 1);
}

#[tokio::test]
async fn a_full_slot_is_refused_as_a_resource_limit_until_the_pass_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let state = store(plugin(Some(1)), &log);
    let mut t = target();
    let pass = state
        .authorize(Access::Command(&mut t, Command::Line("sleep 1")))
        .unwrap();
    let mut t = target();
    match state.authorize(Access::Command(&mut t, Command::Line("id"))) {
        Err(SshError::Limit(m)) => assert!(m.starts_with("resource limit reached"), "{m}"),
        other => panic!("not refused: {:?}", other.map(|_| ())),
    }
    let failed: Result<(), SshError> = Err(SshError::ConnectionLost("gone".into()));
    assert!(pass.finish(failed).is_err());
    let mut t = target();
    let again = state.authorize(Access::Command(&mut t, Command::Line("id")));
    assert!(again.is_ok(), "the slot was not given back");
    let entries = lines(&log);
    let decisions: Vec<&str> = entries
        .iter()
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert!(decisions[0].starts_with("denied: resource limit reached"));
    assert_eq!(decisions[1], "allowed");
    assert_eq!(entries[1]["command"], "sleep 1");
    assert_eq!(entries[1]["error"], "gone");
}

#[tokio::test]
async fn a_pass_dropped_unfinished_is_still_audited_and_stops_the_host_clock() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let state = store(plugin(None), &log);
    let argv = vec!["id".to_string()];
    let mut t = target();
    let pass = state
        .authorize(Access::Command(&mut t, Command::Argv(&argv)))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    drop(pass);
    assert!(state.clock.host_time() >= Duration::from_millis(30));
    let entries = lines(&log);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["argv"], serde_json::json!(["id"]));
    assert_eq!(entries[0]["decision"], "allowed");
    assert!(
        entries[0]["error"]
            .as_str()
            .unwrap()
            .contains("ended before")
    );
}

#[tokio::test]
async fn sessions_are_listed_and_closed_only_with_all_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let state = store(plugin(None), &log);
    let t = target();
    let refused = state.authorize(Access::Sessions(SessionOp::Close, Some(&t)));
    assert!(matches!(refused, Err(SshError::Denied(ref m)) if m.contains("may not close")));
    let entries = lines(&log);
    assert_eq!(entries[0]["kind"], "ssh_sessions");
    assert_eq!(entries[0]["operation"], "close-session");
    assert_eq!(entries[0]["target"], "u@127.0.0.1");
    let full = store(Grant::full(), &log);
    assert!(
        full.authorize(Access::Sessions(SessionOp::List, None))
            .is_ok()
    );
    assert_eq!(lines(&log).len(), 1);
}

#[tokio::test]
async fn a_file_operation_is_refused_by_path_and_audited_with_path_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    // `plugin` grants shell but no paths.
    let state = store(plugin(None), &log);
    let mut t = target();
    let access = FileAccess {
        op: FileOp::Download,
        path: "/etc/shadow",
        local_path: Some("/srv/out"),
    };
    match state.authorize(Access::File(&mut t, access)) {
        Err(SshError::Denied(m)) => assert!(m.contains("read_paths"), "{m}"),
        other => panic!("not refused: {:?}", other.map(|_| ())),
    }
    let state = store(Grant::full(), &log);
    let mut t = target();
    let access = FileAccess {
        op: FileOp::Write,
        path: "/srv/f",
        local_path: None,
    };
    let pass = state.authorize(Access::File(&mut t, access)).unwrap();
    let written = core::WriteOutcome {
        bytes: 42,
        sha256: [0; 32],
        created: true,
    };
    assert!(pass.finish_with::<_, core::FileError>(Ok(written)).is_ok());
    let entries = lines(&log);
    assert_eq!(entries.len(), 2, "{entries:?}");
    let (denied, allowed) = (&entries[0], &entries[1]);
    assert_eq!(denied["kind"], "file");
    assert_eq!(denied["operation"], "download");
    assert_eq!(denied["path"], "/etc/shadow");
    assert_eq!(denied["local_path"], "/srv/out");
    assert!(denied["decision"].as_str().unwrap().starts_with("denied: "));
    assert_eq!(allowed["operation"], "write");
    assert_eq!(allowed["path"], "/srv/f");
    assert_eq!(allowed["bytes"], 42);
    assert_eq!(allowed["decision"], "allowed");
}

#[tokio::test]
async fn an_argv_with_the_calls_own_cwd_or_env_needs_the_shell_grant() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let spec = GrantSpec {
        hosts: vec!["*".into()],
        users: vec!["*".into()],
        commands: vec![vec!["systemctl".into(), "status".into(), "*".into()]],
        ..GrantSpec::default()
    };
    let manifest = Manifest {
        requests: spec.clone(),
    };
    let grant = Grant::for_plugin("c", Some(&manifest), Some(&spec), "config.toml".as_ref());
    let state = store(grant, &log);
    let argv: Vec<String> = ["systemctl", "status", "x"].map(String::from).to_vec();
    let mut t = target();
    assert!(
        state
            .authorize(Access::Command(&mut t, Command::Argv(&argv)))
            .is_ok()
    );
    // `env: {"PATH": "/tmp/evil"}` would pick another `systemctl`.
    let refused = state.authorize(Access::Command(&mut t, Command::ArgvIn(&argv)));
    assert!(matches!(refused, Err(SshError::Denied(_))));
}

#[tokio::test]
async fn a_clients_restrictions_narrow_even_the_full_grant_and_audit_lines_name_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut state = store(Grant::full(), &log);
    state.client = "ci".into();
    state.client_policy = Some(Arc::new(
        crate::plugins::ClientPolicy::new("ci", Some(vec!["10.0.0.0/8".into()]), None, None)
            .unwrap(),
    ));
    let mut t = target();
    match state.authorize(Access::Command(&mut t, Command::Line("id"))) {
        Err(SshError::Denied(m)) => assert!(m.starts_with("client ci: host"), "{m}"),
        other => panic!("not refused: {:?}", other.map(|_| ())),
    }
    let mut elsewhere = core::Target {
        host: "10.1.2.3".into(),
        ..target()
    };
    let pass = state
        .authorize(Access::Command(&mut elsewhere, Command::Line("id")))
        .unwrap();
    drop(pass);
    let entries = lines(&log);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries.iter().all(|e| e["client"] == "ci"), "{entries:?}");
}
