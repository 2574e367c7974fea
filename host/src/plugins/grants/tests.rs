//! Unit tests of the effective grant: intersection, argv matching, where
//! hosts are checked, budgets and what a bad value does.

use super::*;

fn spec(hosts: &[&str], commands: &[&[&str]]) -> GrantSpec {
    GrantSpec {
        hosts: hosts.iter().map(|s| s.to_string()).collect(),
        users: vec!["*".into()],
        commands: commands
            .iter()
            .map(|c| c.iter().map(|s| s.to_string()).collect())
            .collect(),
        ..GrantSpec::default()
    }
}

fn target(host: &str) -> Target {
    Target {
        host: host.into(),
        username: Some("u".into()),
        ..Target::default()
    }
}

fn route(host: &str) -> Resolved {
    Resolved {
        given: host.into(),
        host_name: host.into(),
        port: 22,
        default_port: 22,
        direct: true,
    }
}

fn check(g: &Grant, host: &str, action: Action<'_>) -> Result<(), String> {
    g.authorize(&target(host), &route(host), action).map(|_| ())
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| s.to_string()).collect()
}

fn both(manifest: GrantSpec, operator: &GrantSpec) -> Grant {
    let m = Manifest { requests: manifest };
    Grant::for_plugin("c", Some(&m), Some(operator), Path::new("c.toml"))
}

#[test]
fn the_effective_grant_is_the_intersection() {
    let manifest = spec(&["*"], &[&["systemctl", "status", "*"], &["uptime"]]);
    let operator = spec(&["10.0.0.*"], &[&["systemctl", "status", "*"]]);
    let g = both(manifest, &operator);
    assert!(check(&g, "10.0.0.7", Action::Describe).is_ok());
    assert!(check(&g, "10.0.1.7", Action::Describe).is_err());
    let status = argv(&["systemctl", "status", "nginx"]);
    assert!(check(&g, "10.0.0.7", Action::Argv(&status)).is_ok());
    // Requested by the manifest, not granted by the operator.
    let uptime = argv(&["uptime"]);
    assert!(check(&g, "10.0.0.7", Action::Argv(&uptime)).is_err());
    assert!(check(&g, "10.0.0.7", Action::Shell).is_err());
    assert!(!g.see_all_sessions());
}

#[test]
fn argv_patterns_match_word_by_word() {
    let m = spec(&["*"], &[&["systemctl", "status", "*"]]);
    let g = both(m.clone(), &m);
    let denied = |words: &[&str]| check(&g, "h", Action::Argv(&argv(words))).is_err();
    assert!(denied(&["systemctl", "status"]));
    assert!(denied(&["systemctl", "status", "a", "b"]));
    assert!(denied(&["systemctl", "restart", "a"]));
    // Allowed, and harmless: the launcher passes it on as one word.
    let evil = argv(&["systemctl", "status", "x; rm -rf /"]);
    assert!(check(&g, "h", Action::Argv(&evil)).is_ok());
}

#[test]
fn an_ungranted_plugin_is_told_what_to_add() {
    let m = Manifest {
        requests: spec(&["*"], &[&["df", "-P", "*"]]),
    };
    let g = Grant::for_plugin("disk", Some(&m), None, Path::new("/etc/x.toml"));
    let why = check(&g, "h", Action::Describe).unwrap_err();
    assert!(
        why.contains("[plugins.disk]") && why.contains("/etc/x.toml"),
        "{why}"
    );
    assert!(why.contains(r#"commands = [["df", "-P", "*"]]"#), "{why}");
    let none = Grant::for_plugin("bare", None, None, Path::new("x"));
    assert!(
        check(&none, "h", Action::Shell)
            .unwrap_err()
            .contains("no manifest")
    );
}

#[test]
fn credentials_and_output_follow_the_stricter_side() {
    let mut m = spec(&["*"], &[]);
    m.credentials = true;
    m.max_output_bytes = Some(1000);
    let mut o = m.clone();
    o.credentials = false;
    o.max_output_bytes = Some(500);
    let g = both(m, &o);
    let mut t = target("h");
    t.credentials = Some(crate::ssh::Credentials {
        password: Some(zeroize::Zeroizing::new("pw".into())),
        ..Default::default()
    });
    assert!(g.authorize(&t, &route("h"), Action::Describe).is_err());
    assert_eq!(g.clamp_output(None), Some(500));
    assert_eq!(g.clamp_output(Some(100)), Some(100));
    assert_eq!(Grant::full().clamp_output(None), None);
}

#[test]
fn hosts_are_checked_where_the_call_really_goes() {
    let mut o = spec(&["db-*", "10.0.0.0/24"], &[]);
    o.ports = vec![22, 2222];
    let g = both(spec(&["*"], &[]), &o);
    assert!(check(&g, "db-1", Action::Describe).is_ok());
    assert!(check(&g, "DB-1", Action::Describe).is_ok());
    // Not by name: only if it connects to a granted address.
    let evil = "db-1.attacker.example";
    let needs_peer = g.authorize(&target(evil), &route(evil), Action::Describe);
    assert!(needs_peer.unwrap().is_some());
    assert!(check(&g, "10.0.0.9", Action::Describe).is_ok());
    assert!(check(&g, "10.0.1.9", Action::Describe).is_err());
    // A DNS name outside the name globs: decided on the peer address.
    let peer = g
        .authorize(&target("web"), &route("web"), Action::Describe)
        .unwrap()
        .unwrap();
    assert!((peer.0)(Some("10.0.0.3".parse().unwrap())).is_ok());
    assert!((peer.0)(Some("10.0.9.3".parse().unwrap())).is_err());
    let mut r = route("db-1");
    r.port = 2222;
    assert!(g.authorize(&target("db-1"), &r, Action::Describe).is_ok());
    r.port = 2200;
    let why = g
        .authorize(&target("db-1"), &r, Action::Describe)
        .unwrap_err();
    assert!(why.contains("2200"), "{why}");
}

#[test]
fn a_manifest_lowers_the_budget_and_only_the_operator_raises_it() {
    let ceiling = Duration::from_secs(10);
    let mut m = spec(&["*"], &[]);
    m.cpu_seconds = Some(100_000.0 - 20_000.0);
    m.memory_mib = Some(4096);
    let g = both(m.clone(), &spec(&["*"], &[]));
    assert_eq!(g.cpu_limit(ceiling), ceiling);
    assert_eq!(g.memory_limit(256 << 20), 256 << 20);
    // Ungranted, the manifest still may not raise its budget.
    let alone = Grant::for_plugin(
        "c",
        Some(&Manifest {
            requests: m.clone(),
        }),
        None,
        Path::new("x"),
    );
    assert_eq!(alone.cpu_limit(ceiling), ceiling);
    let mut o = spec(&["*"], &[]);
    o.cpu_seconds = Some(60.0);
    o.memory_mib = Some(1024);
    let raised = both(m.clone(), &o);
    assert_eq!(raised.cpu_limit(ceiling), Duration::from_secs(60));
    assert_eq!(raised.memory_limit(256 << 20), 1024 << 20);
    m.cpu_seconds = Some(0.5);
    m.memory_mib = Some(32);
    let lowered = both(m, &o);
    assert_eq!(lowered.cpu_limit(ceiling), Duration::from_millis(500));
    assert_eq!(lowered.memory_limit(256 << 20), 32 << 20);
    assert_eq!(Grant::full().cpu_limit(ceiling), ceiling);
}

#[test]
fn invalid_values_are_refused_naming_their_key() {
    type Spoil = fn(&mut GrantSpec);
    let cases: [(&str, Spoil); 10] = [
        ("cpu_seconds", |s| s.cpu_seconds = Some(f64::NAN)),
        ("cpu_seconds", |s| s.cpu_seconds = Some(f64::INFINITY)),
        ("cpu_seconds", |s| s.cpu_seconds = Some(0.0)),
        ("cpu_seconds", |s| s.cpu_seconds = Some(-1.0)),
        ("cpu_seconds", |s| s.cpu_seconds = Some(100_000.0)),
        ("memory_mib", |s| s.memory_mib = Some(0)),
        ("memory_mib", |s| s.memory_mib = Some(usize::MAX >> 10)),
        ("max_concurrency", |s| s.max_concurrency = Some(0)),
        ("ports", |s| s.ports = vec![0]),
        ("hosts", |s| s.hosts = vec!["10.0.0.0/40".into()]),
    ];
    for (key, spoil) in cases {
        let mut s = spec(&["*"], &[]);
        assert_eq!(s.validate(), Ok(()));
        spoil(&mut s);
        let err = s.validate().unwrap_err().to_string();
        assert!(err.starts_with(key), "{key}: {err}");
    }
}

#[test]
fn a_full_slot_is_a_resource_limit() {
    let mut o = spec(&["*"], &[]);
    o.max_concurrency = Some(1);
    let g = both(spec(&["*"], &[]), &o);
    let first = g.slot().unwrap();
    assert!(first.is_some());
    assert!(g.slot().unwrap_err().starts_with("resource limit reached"));
    drop(first);
    assert!(g.slot().is_ok());
}

fn file(path: &str, write: bool, transfer: bool) -> Action<'_> {
    Action::File {
        path,
        write,
        transfer,
    }
}

#[test]
fn file_paths_are_granted_for_reading_and_writing_apart() {
    let m = GrantSpec {
        read_paths: vec!["/srv/app/**".into(), "/var/log/*.log".into()],
        write_paths: vec!["/srv/app/data/**".into()],
        ..spec(&["*"], &[])
    };
    let g = both(m.clone(), &m);
    assert!(check(&g, "h", file("/srv/app/conf/a.toml", false, false)).is_ok());
    assert!(check(&g, "h", file("/var/log/syslog.log", false, false)).is_ok());
    let err = check(&g, "h", file("/srv/app/conf/a.toml", true, false)).unwrap_err();
    assert!(
        err.contains("may not write") && err.contains("write_paths"),
        "{err}"
    );
    assert!(check(&g, "h", file("/srv/app/data/x", true, false)).is_ok());
    let err = check(&g, "h", file("/etc/shadow", false, false)).unwrap_err();
    assert!(
        err.contains("may not read") && err.contains("read_paths"),
        "{err}"
    );
    let err = check(&g, "h", file("/srv/app/../../etc/shadow", false, false)).unwrap_err();
    assert!(err.contains(".."), "{err}");
    let err = check(&g, "h", file("notes.txt", false, false)).unwrap_err();
    assert!(err.contains("relative"), "{err}");
    // Transfers need their own grant, on both sides.
    let err = check(&g, "h", file("/srv/app/x", false, true)).unwrap_err();
    assert!(err.contains("transfer = true"), "{err}");
    let operator = GrantSpec {
        transfer: true,
        ..m.clone()
    };
    let g = both(m.clone(), &operator);
    assert!(check(&g, "h", file("/srv/app/x", false, true)).is_err());
    let g = both(
        GrantSpec {
            transfer: true,
            ..m
        },
        &operator,
    );
    assert!(check(&g, "h", file("/srv/app/x", false, true)).is_ok());
    // Built-ins hold the full grant.
    assert!(check(&Grant::full(), "h", file("relative/../x", true, true)).is_ok());
}

#[test]
fn path_patterns_must_be_absolute_without_dot_dot() {
    for (key, spec) in [
        (
            "read_paths",
            GrantSpec {
                read_paths: vec!["srv/**".into()],
                ..GrantSpec::default()
            },
        ),
        (
            "write_paths",
            GrantSpec {
                write_paths: vec!["/srv/../etc".into()],
                ..GrantSpec::default()
            },
        ),
    ] {
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.starts_with(key), "{err}");
    }
}

#[test]
fn sudo_needs_both_sides_and_built_ins_hold_it() {
    assert!(Grant::full().check_sudo().is_ok());
    let with = GrantSpec {
        sudo: true,
        ..spec(&["*"], &[])
    };
    let without = spec(&["*"], &[]);
    assert!(both(with.clone(), &with).check_sudo().is_ok());
    for (m, o) in [(&with, &without), (&without, &with), (&without, &without)] {
        let err = both(m.clone(), o).check_sudo().unwrap_err();
        assert!(err.contains("sudo = true"), "{err}");
    }
    let parsed: Manifest = toml::from_str("[requests]\nsudo = true\n").unwrap();
    assert!(parsed.requests.sudo);
}
