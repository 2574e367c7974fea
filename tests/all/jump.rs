//! Jump hosts: `ProxyJump` through russh direct-tcpip channels (every hop's
//! key checked, jump sessions shared), chains, and `ProxyCommand`.
//!
//! The routing test builds three network namespaces (client, jump,
//! target) joined by veth pairs, so the client's namespace has no route to
//! the target at all and only the jump host's has. Where namespaces cannot
//! be made it says so and falls back to loopback, proving the path from the
//! jump sshd's own log of the forwarded connection.

use std::process::Command;

use serde_json::json;

use crate::server::{Builder, Server, session_names, stdout, succeeded, tool_error};
use crate::sshd::{Options, Sshd, TEST_USER};

/// Network namespaces made for one test, deleted on drop.
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    /// client <-> jump on 10.77.1.0/24, jump <-> target on 10.77.2.0/24;
    /// the client has no route to the second network. The reason when this
    /// machine cannot make namespaces.
    fn client_jump_target() -> Result<Self, String> {
        let id = format!("{}-{}", std::process::id(), crate::sshd::free_port());
        let names: Vec<String> = ["c", "j", "t"]
            .iter()
            .map(|r| format!("mcpssh-{id}-{r}"))
            .collect();
        let ns = Self { names };
        let (c, j, t) = (&ns.names[0], &ns.names[1], &ns.names[2]);
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", c],
            vec!["netns", "add", j],
            vec!["netns", "add", t],
            vec![
                "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "j0", "netns", j,
            ],
            vec![
                "link", "add", "j1", "netns", j, "type", "veth", "peer", "name", "t0", "netns", t,
            ],
            vec!["-n", c, "addr", "add", "10.77.1.1/24", "dev", "c0"],
            vec!["-n", j, "addr", "add", "10.77.1.2/24", "dev", "j0"],
            vec!["-n", j, "addr", "add", "10.77.2.1/24", "dev", "j1"],
            vec!["-n", t, "addr", "add", "10.77.2.2/24", "dev", "t0"],
        ];
        for step in steps {
            ip(&step)?;
        }
        for (name, links) in [
            (c, &["lo", "c0"][..]),
            (j, &["lo", "j0", "j1"]),
            (t, &["lo", "t0"]),
        ] {
            for link in links {
                ip(&["-n", name, "link", "set", link, "up"])?;
            }
        }
        Ok(ns)
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn host_block(alias: &str, sshd: &Sshd, extra: &str) -> String {
    format!(
        "Host {alias}\n  HostName {}\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n{extra}",
        sshd.addr(),
        sshd.port(),
        sshd.client_key().display()
    )
}

/// The target is reachable only through the jump host; both hops' keys
/// are checked; two targets share one jump connection; a changed key on
/// either hop is refused.
#[tokio::test]
async fn proxy_jump_reaches_a_target_only_the_jump_host_can_route_to() {
    let namespaces = match Namespaces::client_jump_target() {
        Ok(ns) => Some(ns),
        Err(why) => {
            eprintln!(
                "network namespaces cannot be made here ({why}); falling back to loopback \
                 and the jump sshd's log as proof of the path"
            );
            None
        }
    };
    let in_ns = |i: usize, addr: &str, log_level: &str| Options {
        netns: namespaces
            .as_ref()
            .map(|ns| (ns.names[i].clone(), addr.to_string())),
        extra: log_level.to_string(),
        ..Options::default()
    };
    // DEBUG1 makes sshd log each direct-tcpip request it serves.
    let mut jump = Sshd::start_opts(in_ns(1, "10.77.1.2", "LogLevel DEBUG1\n"));
    let mut target = Sshd::start_opts(in_ns(2, "10.77.2.2", ""));
    let target2 = Sshd::start_opts(in_ns(2, "10.77.2.2", ""));
    let config = [
        host_block("target", &target, "  ProxyJump jump\n"),
        host_block("target2", &target2, "  ProxyJump jump\n"),
        host_block("jump", &jump, ""),
    ]
    .concat();
    let mut builder: Builder = Server::builder().ssh_config(&config);
    if let Some(ns) = &namespaces {
        builder = builder.netns(&ns.names[0]);
    }
    let server = builder.spawn().await;

    if namespaces.is_some() {
        // No route from the client's namespace to the target.
        let direct = server
            .call(
                "execute_command",
                json!({"host": target.addr(), "port": target.port(), "username": TEST_USER,
                       "key_filename": target.client_key(), "command": "true"}),
            )
            .await;
        let err = tool_error(&direct);
        assert!(err.contains("unreachable"), "{err}");
    }

    let res = server
        .call(
            "execute_command",
            json!({"host": "target", "command": "echo $SSH_CONNECTION"}),
        )
        .await;
    succeeded(&res);
    let from = stdout(&res);
    if namespaces.is_some() {
        // The target saw the jump host's address on the inner network.
        assert!(from.starts_with("10.77.2.1 "), "{from}");
    }
    let forwarded = format!("port {}", target.port());
    assert!(
        jump.log().contains("server_request_direct_tcpip") && jump.log().contains(&forwarded),
        "the jump host did not forward to the target:\n{}",
        jump.log()
    );
    succeeded(
        &server
            .call(
                "execute_command",
                json!({"host": "target2", "command": "true"}),
            )
            .await,
    );
    // One connection to the jump host served both targets.
    assert_eq!(jump.log().matches("Accepted publickey").count(), 1);
    let list = server.call("list_sessions", json!({})).await;
    let shown = session_names(&list);
    for (alias, sshd) in [("jump", &jump), ("target", &target), ("target2", &target2)] {
        let name = format!("{alias} ({TEST_USER}@{}:{})", sshd.addr(), sshd.port());
        assert!(shown.contains(&name), "{name} not in {shown:?}");
    }

    // A changed key on the target is refused...
    succeeded(&server.call("close_all_sessions", json!({})).await);
    target.change_host_key();
    let err = tool_error(
        &server
            .call(
                "execute_command",
                json!({"host": "target", "command": "true"}),
            )
            .await,
    );
    assert!(err.contains("CHANGED"), "{err}");
    assert!(
        err.contains(&format!("[{}]:{}", target.addr(), target.port())),
        "{err}"
    );

    // ...and so is one on the jump host, before any target is reached.
    succeeded(&server.call("close_all_sessions", json!({})).await);
    jump.change_host_key();
    let err = tool_error(
        &server
            .call(
                "execute_command",
                json!({"host": "target2", "command": "true"}),
            )
            .await,
    );
    assert!(
        err.contains("jump host") && err.contains("CHANGED"),
        "{err}"
    );
    assert!(
        err.contains(&format!("[{}]:{}", jump.addr(), jump.port())),
        "{err}"
    );
}

/// `ProxyJump a,b`: the connection goes client -> a -> b -> target, each
/// hop forwarding to the next.
#[tokio::test]
async fn proxy_jump_chains_go_through_every_hop_in_order() {
    let debug = || Options {
        extra: "LogLevel DEBUG1\n".into(),
        ..Options::default()
    };
    let (first, second, target) = (
        Sshd::start_opts(debug()),
        Sshd::start_opts(debug()),
        Sshd::start(),
    );
    let config = [
        host_block("target", &target, "  ProxyJump first,second\n"),
        host_block("first", &first, ""),
        host_block("second", &second, ""),
    ]
    .concat();
    let server = Server::builder().ssh_config(&config).spawn().await;
    let res = server
        .call(
            "execute_command",
            json!({"host": "target", "command": "echo through"}),
        )
        .await;
    succeeded(&res);
    assert_eq!(stdout(&res).trim(), "through");
    let forwards = |sshd: &Sshd, to: &Sshd| {
        let log = sshd.log();
        log.lines().any(|l| {
            l.contains("server_request_direct_tcpip") && l.contains(&format!("port {}", to.port()))
        })
    };
    assert!(forwards(&first, &second), "first hop:\n{}", first.log());
    assert!(forwards(&second, &target), "second hop:\n{}", second.log());
    assert!(!forwards(&first, &target), "first hop skipped the second");
}

/// A loop of jump hosts is an error, not a hang.
#[tokio::test]
async fn a_proxy_jump_loop_is_an_error() {
    let server = Server::builder()
        .ssh_config("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
        .spawn()
        .await;
    let res = server
        .call(
            "execute_command",
            json!({"host": "a", "username": TEST_USER, "command": "true"}),
        )
        .await;
    let err = tool_error(&res);
    assert!(err.contains("loop"), "{err}");
}

/// `ProxyCommand`: the real `ssh -W` carries the connection; a failing
/// command's stderr is in the error.
#[tokio::test]
async fn proxy_command_carries_the_connection() {
    let jump = Sshd::start_with("LogLevel DEBUG1\n");
    let target = Sshd::start();
    let via_ssh = format!(
        "  ProxyCommand ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -i {} -p {} {TEST_USER}@127.0.0.1 -W %h:%p\n",
        jump.client_key().display(),
        jump.port()
    );
    let config = [
        host_block("target", &target, &via_ssh),
        // Another port, so it is not the session "target" opened.
        format!(
            "Host broken\n  HostName 127.0.0.1\n  Port {}\n  User {TEST_USER}\n  \
             ProxyCommand sh -c 'echo proxy-says-no >&2; exit 3'\n",
            jump.port()
        ),
    ]
    .concat();
    let server = Server::builder().ssh_config(&config).spawn().await;
    let res = server
        .call(
            "execute_command",
            json!({"host": "target", "command": "echo proxied"}),
        )
        .await;
    succeeded(&res);
    assert_eq!(stdout(&res).trim(), "proxied");
    assert!(
        jump.log().contains("server_request_direct_tcpip"),
        "{}",
        jump.log()
    );
    let err = tool_error(
        &server
            .call(
                "execute_command",
                json!({"host": "broken", "command": "true"}),
            )
            .await,
    );
    assert!(err.contains("proxy-says-no"), "{err}");
}

/// A host name from a tool call never reaches `/bin/sh` through a
/// `ProxyCommand`'s `%h`: shell metacharacters are refused before anything
/// runs.
#[tokio::test]
async fn a_hostile_host_name_cannot_inject_into_proxy_command() {
    let marker = tempfile::tempdir().unwrap();
    let pwned = marker.path().join("pwned");
    let server = Server::builder()
        .ssh_config("Host *\n  ProxyCommand nc %h %p\n")
        .spawn()
        .await;
    for host in [
        // No blanks: those are refused as a host name anyway.
        format!("x$(touch${{IFS}}{})", pwned.display()),
        format!("x;touch${{IFS}}{}", pwned.display()),
        format!("`touch${{IFS}}{}`", pwned.display()),
    ] {
        let res = server
            .call(
                "execute_command",
                json!({"host": host, "username": TEST_USER, "command": "true"}),
            )
            .await;
        let err = tool_error(&res);
        assert!(err.contains("cannot go into a command line"), "{err}");
    }
    assert!(!pwned.exists(), "the shell ran the injected command");
}

/// A jump host is resolved through ssh_config when the route is taken: a
/// malformed value in its own block fails the call with that file and line,
/// and neither the jump host nor the target is contacted.
#[tokio::test]
async fn a_malformed_value_in_a_jump_hosts_block_names_file_and_line() {
    let (jump, target) = (Sshd::start(), Sshd::start());
    let config = [
        host_block("target", &target, "  ProxyJump bastion\n"),
        host_block("bastion", &jump, "  StrictHostKeyChecking sometimes\n"),
    ]
    .concat();
    let line = 1 + config
        .lines()
        .position(|l| l.contains("sometimes"))
        .unwrap();
    let builder = Server::builder().ssh_config(&config);
    let file = builder.home().join(".ssh").join("config");
    let server = builder.spawn().await;
    let res = server
        .call(
            "execute_command",
            json!({"host": "target", "command": "true"}),
        )
        .await;
    let err = tool_error(&res);
    let at = format!("{} line {line}: ", file.display());
    assert!(
        err.contains(&at) && err.contains("StrictHostKeyChecking \"sometimes\""),
        "{err}"
    );
    for sshd in [&jump, &target] {
        assert!(!sshd.log().contains("Accepted"), "{}", sshd.log());
    }
}

/// Jump hosts count against `--max-sessions`, and a lost session's
/// reconnect gets its jump host even when the table has filled meanwhile.
#[tokio::test]
async fn jump_hosts_count_as_sessions_and_a_reconnect_gets_its_jump_host_back() {
    let (jump, target, others) = (Sshd::start(), Sshd::start(), Sshd::start_ports(2));
    let other = |i: usize| {
        format!(
            "Host other{i}\n  HostName {}\n  Port {}\n  User {TEST_USER}\n  IdentityFile {}\n",
            others.addr(),
            others.ports()[i],
            others.client_key().display()
        )
    };
    let config = [
        host_block("target", &target, "  ProxyJump jump\n"),
        host_block("jump", &jump, ""),
        other(0),
        other(1),
    ]
    .concat();
    let server = Server::builder()
        .ssh_config(&config)
        .arg("--max-sessions")
        .arg("2")
        .spawn()
        .await;
    let run = |host: &str| {
        server.call(
            "execute_command",
            json!({"host": host, "command": "echo on"}),
        )
    };
    // With one place left, the target takes it and its jump host is
    // refused: a limit, not a host that cannot be reached.
    succeeded(&run("other0").await);
    let msg = tool_error(&run("target").await);
    assert!(
        msg.contains("jump host") && msg.contains("resource limit reached"),
        "{msg}"
    );
    assert!(!msg.contains("cannot reach"), "{msg}");
    let close = |host: &'static str| {
        server.call(
            "close_session",
            json!({"host": host, "username": TEST_USER}),
        )
    };
    succeeded(&close("other0").await);
    succeeded(&run("target").await);
    let msg = tool_error(&run("other0").await);
    assert!(
        msg.contains("2 SSH sessions are open") && msg.contains("close_session"),
        "{msg}"
    );
    // Closing the jump host loses the target's connection with it.
    succeeded(&close("jump").await);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !session_names(&server.call("list_sessions", json!({})).await).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the target still listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    succeeded(&run("other0").await);
    succeeded(&run("other1").await);
    // The table is full, yet the target reconnects through a new jump.
    let res = run("target").await;
    succeeded(&res);
    assert_eq!(stdout(&res).trim(), "on");
}
