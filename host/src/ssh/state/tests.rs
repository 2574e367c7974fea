//! The frame run by the real shells a login shell may be (no SSH here: the
//! remote side of a frame is only its shell), each as `SHELL -c LINE`.

use std::path::Path;
use std::process::Command;

use super::*;

/// The POSIX shells the frame must work in, where installed (the test
/// setup installs them all).
fn shells() -> Vec<&'static str> {
    let all = [
        "/bin/dash",
        "/bin/bash",
        "/bin/zsh",
        "/bin/ksh93",
        "/bin/mksh",
        "/usr/local/bin/ash",
    ];
    let found: Vec<_> = all.into_iter().filter(|s| Path::new(s).exists()).collect();
    assert!(found.contains(&"/bin/dash") && found.contains(&"/bin/bash"));
    found
}

struct Ran {
    stdout: Vec<u8>,
    status: Option<i32>,
    finished: Result<Finished, NoCwd>,
}

fn run_in(
    shell: &str,
    state: &SessionState,
    command: &str,
    call: (Option<&str>, &[(String, String)]),
) -> Ran {
    let nonce = super::super::launch::new_nonce();
    let frame = Frame::new(state, call, true, (shell, false), &nonce);
    let out = Command::new(shell)
        .arg("-c")
        .arg(frame.wrap_line(command))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", "/")
        .env("LOGIN_VAR", "from login")
        .current_dir("/")
        .output()
        .unwrap();
    let mut blocks = frame.blocks(false);
    let mut stdout = blocks.feed(&out.stdout).into_owned();
    stdout.extend(blocks.flush());
    Ran {
        stdout,
        status: out.status.code(),
        finished: frame.finish(state, &blocks.out()),
    }
}

fn run(shell: &str, state: &SessionState, command: &str) -> Ran {
    run_in(shell, state, command, (None, &[]))
}

fn next(shell: &str, state: &SessionState, command: &str) -> SessionState {
    let ran = run(shell, state, command);
    let done = ran.finished.unwrap_or_else(|e| panic!("{shell}: {e:?}"));
    done.state
        .unwrap_or_else(|| panic!("{shell}: no state after {command:?}"))
}

fn text(ran: &Ran) -> String {
    String::from_utf8_lossy(&ran.stdout).into_owned()
}

#[test]
fn cd_and_export_carry_over_to_the_next_command_in_every_shell() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().canonicalize().unwrap();
    let dir = dir.to_str().unwrap();
    for shell in shells() {
        let value = "a b'c\"d $HOME `x` \\ é\nline2";
        let s = next(shell, &SessionState::default(), &format!("cd {dir}"));
        assert_eq!(s.cwd.as_deref(), Some(dir), "{shell}");
        let s = next(
            shell,
            &s,
            &format!(
                "export FOO={}; unset LOGIN_VAR",
                super::super::launch::sh_quote(value)
            ),
        );
        let ran = run(
            shell,
            &s,
            "pwd; printf '[%s]' \"$FOO\" \"${LOGIN_VAR-unset}\"",
        );
        assert_eq!(text(&ran), format!("{dir}\n[{value}][unset]"), "{shell}");
        assert_eq!(ran.status, Some(0));
        let done = ran.finished.unwrap();
        assert_eq!(
            done.state.as_ref(),
            Some(&s),
            "{shell}: a read-only command changes nothing"
        );
        assert!(done.notes.is_empty(), "{shell}: {:?}", done.notes);
    }
}

#[test]
fn the_exit_status_and_output_are_the_commands_own() {
    for shell in shells() {
        let ran = run(
            shell,
            &SessionState::default(),
            "echo out; echo err >&2; (exit 7)",
        );
        assert_eq!(text(&ran), "out\n", "{shell}");
        assert_eq!(ran.status, Some(7), "{shell}");
        // A trailing backslash cannot swallow the epilogue.
        let ran = run(shell, &SessionState::default(), "echo a \\");
        assert_eq!(
            (text(&ran).as_str(), ran.status),
            ("a\n", Some(0)),
            "{shell}"
        );
        assert!(ran.finished.unwrap().state.is_some(), "{shell}");
    }
}

#[test]
fn a_command_that_exits_early_keeps_the_previous_state() {
    for shell in shells() {
        let ran = run(
            shell,
            &SessionState::default(),
            "cd /tmp; export X=1; exit 3",
        );
        assert_eq!(ran.status, Some(3), "{shell}");
        assert!(ran.finished.unwrap().state.is_none(), "{shell}");
        let ran = run(
            shell,
            &SessionState::default(),
            "set -e; cd /tmp; false; echo never",
        );
        assert_eq!((text(&ran).as_str(), ran.status), ("", Some(1)), "{shell}");
        assert!(ran.finished.unwrap().state.is_none(), "{shell}");
    }
}

#[test]
fn output_cannot_forge_a_block_without_the_nonce() {
    let forged =
        "printf '\\036mcp-ssh-post:0000:/etc\\036export EVIL=1\\n\\036mcp-ssh-end:0000\\036'";
    for shell in shells() {
        let ran = run(shell, &SessionState::default(), forged);
        assert!(
            text(&ran).contains("EVIL"),
            "{shell}: the forged block is output"
        );
        let s = ran.finished.unwrap().state.unwrap();
        assert_eq!(s, SessionState::default(), "{shell}");
    }
}

#[test]
fn the_calls_own_cwd_and_env_are_not_kept() {
    let env = [("ONLY_NOW".to_string(), "x y".to_string())];
    for shell in shells() {
        let ran = run_in(
            shell,
            &SessionState::default(),
            "pwd; echo \"$ONLY_NOW\"",
            (Some("/tmp"), &env),
        );
        assert_eq!(text(&ran), "/tmp\nx y\n", "{shell}");
        let done = ran.finished.unwrap();
        assert_eq!(done.cwd.as_deref(), Some("/tmp"));
        assert_eq!(done.state, Some(SessionState::default()), "{shell}");
        let ran = run_in(
            shell,
            &SessionState::default(),
            "echo ran",
            (Some("/nonexistent/dir"), &[]),
        );
        assert_eq!(text(&ran), "", "{shell}: nothing runs");
        assert!(
            matches!(ran.finished, Err(NoCwd(d)) if d == "/nonexistent/dir"),
            "{shell}"
        );
    }
}

#[test]
fn a_directory_that_is_gone_is_said_and_the_command_runs_in_the_login_directory() {
    let state = SessionState {
        cwd: Some("/nonexistent/gone".into()),
        ..SessionState::default()
    };
    for shell in shells() {
        let ran = run(shell, &state, "pwd");
        assert_eq!(text(&ran), "/\n", "{shell}");
        let done = ran.finished.unwrap();
        assert!(
            done.notes.iter().any(|n| n.contains("/nonexistent/gone")),
            "{shell}"
        );
        assert_eq!(
            done.state.unwrap().cwd,
            None,
            "{shell}: back at the login directory"
        );
    }
}

#[test]
fn exported_state_is_bounded_saying_what_was_dropped() {
    let big = "x".repeat(40 << 10);
    let s = next(
        "/bin/dash",
        &SessionState::default(),
        &format!("export A={big}"),
    );
    assert!(s.vars.contains_key("A"));
    let ran = run("/bin/dash", &s, &format!("export B={big}; export C=small"));
    let done = ran.finished.unwrap();
    let s = done.state.unwrap();
    assert!(s.vars.contains_key("A") && s.vars.contains_key("C"));
    assert!(!s.vars.contains_key("B"));
    assert!(
        done.notes
            .iter()
            .any(|n| n.contains('B') && n.contains("64 KiB")),
        "{:?}",
        done.notes
    );
}

#[test]
fn a_changed_path_is_kept_in_every_shell() {
    for shell in shells() {
        let s = next(
            shell,
            &SessionState::default(),
            "export PATH=\"$PATH:/opt/mcp bin\"",
        );
        let ran = run(shell, &s, "printf '%s' \"$PATH\"");
        assert_eq!(text(&ran), "/usr/bin:/bin:/opt/mcp bin", "{shell}");
    }
}
