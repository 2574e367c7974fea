//! `sudo` on `execute_command` and `start_command`, against real sudo and
//! the sudoers rules `scripts/test` writes: the password goes to sudo only
//! when sudo asks, never to the command, a process, a log or the audit log;
//! each refusal names its cause within seconds; third-party components
//! need the `sudo` grant.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::dropbear_server::Dropbear;
use crate::plugins::{HOSTILE_MANIFEST, guest_wasm, install_plugin};
use crate::server::{
    Leftovers, Server, honest_stop, stdout, structured, succeeded, text, tool_error,
};
use crate::sshd::{Sshd, TEST_PASSWORD, TEST_USER};

/// An account of its own with a password used nowhere else: a scan of the
/// machine for it finds only a leak. sudoers: anything, with the password.
const SUDO_USER: &str = "mcpssh-sudo";
fn sudo_password() -> String {
    format!("{TEST_PASSWORD}-sudo")
}
/// sudoers: anything, without a password.
const NOPASSWD_USER: &str = "mcpssh-dash";

/// An sshd that also lets [`SUDO_USER`] in.
fn sshd() -> Sshd {
    Sshd::start_with(&format!("AllowUsers {SUDO_USER}\n"))
}

/// `execute_command` through sudo, logged in with the fixture's key.
fn key_args(sshd: &Sshd, user: &str, command: &str) -> Value {
    json!({
        "host": "127.0.0.1", "port": sshd.port(), "username": user,
        "key_filename": sshd.client_key(), "command": command, "sudo": true,
    })
}

/// `execute_command` through sudo, logged in with `password`.
fn password_args(sshd: &Sshd, user: &str, password: &str, command: &str) -> Value {
    json!({
        "host": "127.0.0.1", "port": sshd.port(), "username": user,
        "password": password, "command": command, "sudo": true,
    })
}

#[tokio::test]
async fn sudo_runs_the_command_as_root_with_the_password_that_opened_the_session() {
    let sshd = sshd();
    let server = Server::start().await;
    let args = password_args(&sshd, TEST_USER, TEST_PASSWORD, "id -u; echo own >&2");
    let res = server.call("execute_command", args).await;
    succeeded(&res);
    assert_eq!(stdout(&res), "0\n", "{}", text(&res));
    // The prompt and the marker are gone; the command's stderr is whole.
    assert_eq!(structured(&res)["stderr"], "own\n", "{}", text(&res));
    assert_eq!(structured(&res)["exit_status"], 0);
}

#[tokio::test]
async fn sudo_user_runs_the_command_as_that_user() {
    let sshd = sshd();
    let server = Server::start().await;
    let mut args = key_args(&sshd, NOPASSWD_USER, "id -un");
    args["sudo_user"] = json!("mcpssh-sh");
    let res = server.call("execute_command", args).await;
    succeeded(&res);
    assert_eq!(stdout(&res), "mcpssh-sh\n", "{}", text(&res));
}

/// Every process's command line and environment, as root reads them.
fn processes_holding(secret: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        for file in ["cmdline", "environ"] {
            let Ok(bytes) = std::fs::read(entry.path().join(file)) else {
                continue;
            };
            if bytes.windows(secret.len()).any(|w| w == secret) {
                found.push(format!("/proc/{name}/{file}"));
            }
        }
    }
    found
}

/// Whether root runs a process whose command line is exactly `words`.
fn root_runs(words: &[&str]) -> bool {
    let want: Vec<u8> = words
        .iter()
        .flat_map(|w| [w.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        use std::os::unix::fs::MetadataExt;
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want)
            && e.metadata().is_ok_and(|m| m.uid() == 0)
    })
}

#[tokio::test]
async fn no_process_holds_the_sudo_password_while_the_command_runs() {
    let sshd = sshd();
    let server = Server::start().await;
    let password = sudo_password();
    let seconds = format!("2.0{}", sshd.port());
    let mut args = key_args(&sshd, SUDO_USER, &format!("sleep {seconds}"));
    args["sudo_password"] = json!(password);
    let call = server.call("execute_command", args);
    tokio::pin!(call);
    let (mut scans, mut saw_sleep) = (0, false);
    let res = loop {
        tokio::select! {
            res = &mut call => break res,
            () = tokio::time::sleep(Duration::from_millis(25)) => {
                let leaks = processes_holding(password.as_bytes());
                assert!(leaks.is_empty(), "the sudo password is in {leaks:?}");
                saw_sleep |= root_runs(&["sleep", &seconds]);
                scans += 1;
            }
        }
    };
    succeeded(&res);
    assert!(
        saw_sleep,
        "root's sleep was never seen in {scans} scans: {}",
        text(&res)
    );
}

#[tokio::test]
async fn nopasswd_never_sends_the_password() {
    let sshd = sshd();
    let server = Server::start().await;
    // A wrong password that would show in `cat`'s output if it were sent.
    let mut args = key_args(&sshd, NOPASSWD_USER, "id -u; cat");
    args["sudo_password"] = json!(format!("never-sent-{}", sshd.port()));
    args["stdin"] = json!("the call's stdin\n");
    let res = server.call("execute_command", args).await;
    succeeded(&res);
    assert_eq!(stdout(&res), "0\nthe call's stdin\n", "{}", text(&res));
}

#[tokio::test]
async fn stdin_reaches_the_command_only_after_sudo_authenticated() {
    let sshd = sshd();
    let server = Server::start().await;
    let password = sudo_password();
    let mut args = password_args(&sshd, SUDO_USER, &password, "id -u; cat; id -u");
    args["stdin"] = json!("line 1\nline 2\n");
    let res = server.call("execute_command", args).await;
    succeeded(&res);
    assert_eq!(stdout(&res), "0\nline 1\nline 2\n0\n", "{}", text(&res));
    assert!(!text(&res).contains(&password));
}

#[tokio::test]
async fn a_wrong_password_fails_within_five_seconds_with_a_clear_error() {
    let sshd = sshd();
    let server = Server::start().await;
    let wrong = format!("wrong-{}", sshd.port());
    let mut args = key_args(&sshd, TEST_USER, "id -u");
    args["sudo_password"] = json!(wrong);
    let started = Instant::now();
    let res = server.call("execute_command", args).await;
    let msg = tool_error(&res);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(msg.contains("wrong password"), "{msg}");
    assert!(!msg.contains(&wrong), "{msg}");
}

#[tokio::test]
async fn sudo_without_a_password_to_give_says_so() {
    let sshd = sshd();
    let server = Server::start().await;
    let started = Instant::now();
    let res = server
        .call("execute_command", key_args(&sshd, TEST_USER, "id -u"))
        .await;
    let msg = tool_error(&res);
    assert!(msg.contains("none is available"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn each_refusal_by_sudo_names_its_cause() {
    let sshd = sshd();
    let no_sudo = Sshd::start_with("SetEnv PATH=/usr/local/mcpssh-nowhere\n");
    let server = Server::start().await;
    let cases = [
        // No rule at all.
        (
            password_args(&sshd, "mcpssh-ksh", TEST_PASSWORD, "id -u"),
            "not in the sudoers file",
        ),
        // `Defaults requiretty`.
        (
            key_args(&sshd, "mcpssh-bash", "id -u"),
            "Defaults requiretty",
        ),
        // Only `/usr/bin/id` is allowed, not the shell sudo runs.
        (
            password_args(&sshd, "mcpssh-mksh", TEST_PASSWORD, "id -u"),
            "does not allow the login user to run `/bin/sh`",
        ),
        // No sudo in the login shell's PATH.
        (
            key_args(&no_sudo, NOPASSWD_USER, "id -u"),
            "sudo is not installed",
        ),
    ];
    for (args, cause) in cases {
        let started = Instant::now();
        let res = server.call("execute_command", args.clone()).await;
        let msg = tool_error(&res);
        assert!(msg.contains(cause), "{}: {msg}", args["username"]);
        assert!(!msg.contains(TEST_PASSWORD), "{msg}");
        assert!(started.elapsed() < Duration::from_secs(5), "{msg}");
    }
}

#[tokio::test]
async fn a_background_job_runs_through_sudo_with_its_stdin() {
    let sshd = sshd();
    let server = Server::start().await;
    let mut args = password_args(&sshd, TEST_USER, TEST_PASSWORD, "id -u; cat");
    args["stdin"] = json!("job input\n");
    let res = server.call("start_command", args).await;
    succeeded(&res);
    let id = structured(&res)["job_id"].as_str().unwrap().to_string();
    let s = crate::jobs::wait_done(&server, &id).await;
    assert_eq!(s["exit_status"], 0, "{s}");
    let out = server
        .call("get_command_output", json!({"job_id": id}))
        .await;
    assert_eq!(structured(&out)["data"], "0\njob input\n", "{}", text(&out));
    // A refused job says why on its stderr.
    let mut args = key_args(&sshd, TEST_USER, "id -u");
    args["sudo_password"] = json!("wrong");
    let res = server.call("start_command", args).await;
    let id = structured(&res)["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server
        .call("get_command_status", json!({"job_id": id}))
        .await
        .structured_content
        .is_some_and(|s| s["state"] == "running")
    {
        assert!(Instant::now() < deadline, "refused job still running");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = server
        .call(
            "get_command_output",
            json!({"job_id": id, "stream": "stderr"}),
        )
        .await;
    let data = structured(&err)["data"].as_str().unwrap().to_string();
    assert!(data.contains("wrong password"), "{data}");
}

#[tokio::test]
async fn a_component_needs_the_sudo_grant() {
    let sshd = sshd();
    let grant = |sudo: bool| {
        format!(
            "[plugins.hostile]\nhosts = [\"127.0.0.1\"]\nusers = [\"{NOPASSWD_USER}\"]\nports = [{}]\nshell = true\nsudo = {sudo}\n",
            sshd.port()
        )
    };
    let call = json!({"host": "127.0.0.1", "port": sshd.port(), "username": NOPASSWD_USER, "command": "id -u"});
    for (manifest_sudo, operator_sudo) in [(false, true), (true, false), (true, true)] {
        let manifest = format!("{HOSTILE_MANIFEST}sudo = {manifest_sudo}\n");
        let server = install_plugin(
            Server::builder(),
            &guest_wasm("hostile_tools"),
            "hostile",
            Some(&manifest),
            &grant(operator_sudo),
        )
        .spawn()
        .await;
        // The component rides on a session the operator opened.
        server
            .call("execute_command", json!({"host": "127.0.0.1", "port": sshd.port(), "username": NOPASSWD_USER, "key_filename": sshd.client_key(), "command": "true"}))
            .await;
        let res = server.call("hostile_sudo", call.clone()).await;
        if manifest_sudo && operator_sudo {
            assert_eq!(succeeded(&res), "0\n");
        } else {
            let msg = tool_error(&res);
            assert!(
                msg.contains("Denied") && msg.contains("may not run commands through sudo"),
                "{msg}"
            );
        }
        // Without sudo, the same command runs: only sudo is refused.
        let res = server.call("hostile_shell", call.clone()).await;
        assert_ne!(res.is_error, Some(true), "{}", text(&res));
    }
}

#[tokio::test]
async fn the_audit_line_marks_sudo_and_no_log_holds_the_password() {
    let sshd = sshd();
    let builder = Server::builder().env("MCP_SSH_LOG", "trace");
    let audit = builder.home().join("audit.jsonl");
    let server = builder
        .arg("--audit-log")
        .arg(audit.display().to_string())
        .spawn()
        .await;
    let password = sudo_password();
    let mut args = password_args(&sshd, SUDO_USER, &password, "id -u");
    args["sudo_password"] = json!(password);
    let res = server.call("execute_command", args).await;
    succeeded(&res);
    let mut plain = password_args(&sshd, SUDO_USER, &password, "id -u");
    plain.as_object_mut().unwrap().remove("sudo");
    succeeded(&server.call("execute_command", plain).await);

    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(
        !text.contains(&password),
        "the password is in the audit log"
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|l: &Value| l["kind"] == "ssh_command")
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["sudo"], "root", "{text}");
    assert!(lines[1].get("sudo").is_none(), "{text}");
    let log = server.log();
    // A release build has no trace records of its own in this flow (the
    // dependencies' are compiled out): their debug records show the
    // filter is below info.
    assert!(log.contains("DEBUG"), "not logging at trace");
    if let Some(at) = log.find(&password) {
        let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
        panic!("the password is in the log: {}", &log[start..at + 40]);
    }
}

#[tokio::test]
async fn sudo_works_under_every_kind_of_login_shell() {
    let sshd = sshd();
    let server = Server::start().await;
    // The first call does not know the login shell yet; the second does.
    for user in ["mcpssh-fish", "mcpssh-tcsh", NOPASSWD_USER] {
        for _ in 0..2 {
            let res = server
                .call(
                    "execute_command",
                    key_args(&sshd, user, "id -u; echo \"it's\"!"),
                )
                .await;
            succeeded(&res);
            assert_eq!(stdout(&res), "0\nit's!\n", "{user}: {}", text(&res));
        }
    }
}

#[tokio::test]
async fn sudo_works_on_dropbear() {
    let dropbear = Dropbear::start();
    let server = Server::start().await;
    let args = json!({
        "host": "127.0.0.1", "port": dropbear.port(), "username": TEST_USER,
        "password": TEST_PASSWORD, "command": "id -u; cat", "sudo": true,
        "stdin": "over dropbear\n",
    });
    let res = server.call("execute_command", args).await;
    succeeded(&res);
    assert_eq!(
        stdout(&res),
        "0\nover dropbear\n",
        "{}\n{}",
        text(&res),
        dropbear.log()
    );
}

/// The login user's stop cannot signal root's processes, and sudo passes
/// TERM on to its child alone: the root side must take the whole group
/// down, children of a shell that forked included.
#[tokio::test]
async fn a_timed_out_sudo_command_is_stopped_with_its_root_children() {
    let sshd = sshd();
    let server = Server::start().await;
    let (a, b) = (format!("30.{}", sshd.port()), format!("31.{}", sshd.port()));
    let _cleanup = (
        Leftovers::new("root", &format!("sleep {a}")),
        Leftovers::new("root", &format!("sleep {b}")),
    );
    let mut args = key_args(
        &sshd,
        NOPASSWD_USER,
        &format!("sleep {a} & sleep {b}; true"),
    );
    args["timeout"] = json!(1);
    let started = Instant::now();
    let res = server.call("execute_command", args).await;
    assert_eq!(structured(&res)["timed_out"], true, "{}", text(&res));
    assert!(started.elapsed() < Duration::from_secs(8));
    let survivors: Vec<&String> = [&a, &b]
        .into_iter()
        .filter(|s| root_runs(&["sleep", s]))
        .collect();
    assert!(
        survivors.is_empty(),
        "root's sleep {survivors:?} survived: {}",
        text(&res)
    );
    assert_eq!(honest_stop(&res), Some(true), "{}", text(&res));
}

#[tokio::test]
async fn a_sudo_command_that_ignores_term_is_still_stopped_as_root() {
    let sshd = sshd();
    let server = Server::start().await;
    let a = format!("32.{}", sshd.port());
    let _cleanup = Leftovers::new("root", &format!("sleep {a}"));
    let mut args = key_args(&sshd, NOPASSWD_USER, &format!("trap '' TERM; sleep {a}"));
    args["timeout"] = json!(1);
    let res = server.call("execute_command", args).await;
    assert_eq!(structured(&res)["timed_out"], true, "{}", text(&res));
    assert!(
        !root_runs(&["sleep", &a]),
        "root's sleep {a} survived: {}",
        text(&res)
    );
    assert_eq!(honest_stop(&res), Some(true), "{}", text(&res));
}

#[tokio::test]
async fn a_sudo_on_the_sessions_path_never_gets_the_password() {
    let sshd = sshd();
    let server = Server::start().await;
    let dir = format!("/tmp/fake-sudo-{}", sshd.port());
    let captured = format!("{dir}/captured");
    // A `sudo` earlier on the PATH the session keeps: it prints sudo's
    // prompt, takes a line, then runs the real sudo.
    let plant = format!(
        "mkdir -p {dir} && printf '%s\\n' '#!/bin/sh' 'printf %s \"$3\" >&2; read -r l; printf %s \"$l\" > {captured}; exec /usr/bin/sudo \"$@\"' > {dir}/sudo && chmod +x {dir}/sudo && export PATH={dir}:$PATH"
    );
    let mut args = password_args(&sshd, TEST_USER, TEST_PASSWORD, &plant);
    args["sudo"] = json!(false);
    succeeded(&server.call("execute_command", args).await);
    let res = server
        .call(
            "execute_command",
            password_args(&sshd, TEST_USER, TEST_PASSWORD, "id -u"),
        )
        .await;
    let got = std::fs::read_to_string(&captured).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !got.contains(TEST_PASSWORD),
        "the fake sudo got the password: {}",
        text(&res)
    );
    assert_eq!(stdout(&res), "0\n", "{}", text(&res));
}

#[tokio::test]
async fn a_cwd_under_sudo_is_entered_as_the_sudo_user_or_is_a_clear_error() {
    let sshd = sshd();
    let server = Server::start().await;
    let mut args = key_args(&sshd, NOPASSWD_USER, "pwd");
    args["cwd"] = json!("/root");
    let res = server.call("execute_command", args.clone()).await;
    assert_eq!(stdout(&res), "/root\n", "{}", text(&res));
    args["cwd"] = json!("/nonexistent/dir");
    let err = tool_error(&server.call("execute_command", args).await);
    assert!(
        err.contains("cwd /nonexistent/dir") && err.contains("nothing was run"),
        "{err}"
    );
}

#[tokio::test]
async fn a_command_too_large_once_quoted_for_sudo_is_a_clear_error() {
    let sshd = sshd();
    let server = Server::start().await;
    let command = format!("echo ok #{}", "'".repeat(33_000));
    let err = tool_error(
        &server
            .call("execute_command", key_args(&sshd, NOPASSWD_USER, &command))
            .await,
    );
    assert!(err.contains("sudo") && err.contains("bytes"), "{err}");
}

#[tokio::test]
async fn a_refusal_by_sudo_does_not_quote_the_sessions_variables() {
    let sshd = sshd();
    let server = Server::start().await;
    // mcpssh-mksh may run /usr/bin/id alone.
    let user = "mcpssh-mksh";
    let mut set = password_args(&sshd, user, TEST_PASSWORD, "export TOKEN=session-secret-42");
    set["sudo"] = json!(false);
    succeeded(&server.call("execute_command", set).await);
    let res = server
        .call(
            "execute_command",
            password_args(&sshd, user, TEST_PASSWORD, "id -u"),
        )
        .await;
    let err = tool_error(&res);
    assert!(err.contains("not allowed"), "{err}");
    assert!(!err.contains("session-secret-42"), "{err}");
}
