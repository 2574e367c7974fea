//! Every login shell a user may have (sh, dash, bash, zsh, ksh93, mksh,
//! csh, tcsh, fish, BusyBox ash), one test account each ([`SHELL_USERS`]):
//! a command line runs in the login shell, a timeout stops the command and
//! its children, and a granted argv reaches the program word for word or is
//! refused, never run as something else.
//!
//! The argv checks go through the `argv_probe` test component, which hands
//! `["/usr/bin/printf", "<%s>\n", WORDS..., "end"]` to the host's
//! `exec-argv`: each word comes back between `<` and `>` on a line of its
//! own, so a split, joined, dropped or rewritten word shows.

use serde_json::{Value, json};

use crate::plugins::{guest_wasm, install_plugin};
use crate::server::{
    Leftovers, Server, honest_stop, remote_running_as, stdout, structured, succeeded, text,
};
use crate::sshd::{BASHRC_BANNER, BASHRC_USER, BASHRC_WARNING, SHELL_USERS, Sshd, TEST_PASSWORD};

/// Arguments that reach the program unchanged or make the call refused.
/// Each attacks one shell's quoting: csh/tcsh history (`!`) and newlines,
/// fish's escapes inside single quotes and its `(...)` substitution, every
/// shell's `$`, backticks, globs, braces and `~`.
const HOSTILE_WORDS: &[&str] = &[
    "new\nline",
    "trailing\n",
    "x\necho INJECTED",
    "single'quote",
    "'",
    "''",
    "double\"quote",
    "\"",
    "!",
    "!!",
    "!$",
    "a!b",
    "!-1",
    "$HOME",
    "${HOME}",
    "$",
    "$$",
    "$(id)",
    "`id`",
    "(id)",
    "\\",
    "\\\\",
    "\\\\n",
    "\\n",
    "\\'",
    "back\\slash",
    "end\\",
    "*",
    "?",
    "[a]",
    "/*",
    "{a,b}",
    "~",
    "~root",
    "#comment",
    "a;b",
    "a|b",
    "a&b",
    "a>b",
    "%",
    "%s%d%n",
    "\\xff",
    "tab\there",
    "  two  spaces  ",
];

/// Arguments any shell can carry: a launcher may not refuse these.
const PLAIN_WORDS: &[&str] = &[
    "plain",
    "two words",
    "-n",
    "-",
    "--",
    "",
    "é",
    "日本",
    "%s",
    "-e",
];

/// The longest argv the grant allows: printf, its format, the words, "end".
const MAX_WORDS: usize = 64;

fn password_args(sshd: &Sshd, user: &str, command: &str) -> Value {
    json!({
        "host": "127.0.0.1",
        "port": sshd.port(),
        "username": user,
        "password": TEST_PASSWORD,
        "command": command,
    })
}

/// A command line only `user`'s login shell understands, and what it prints.
fn dialect(user: &str) -> (&'static str, &'static str) {
    match user {
        "mcpssh-bash" => ("echo \"${BASH_VERSION:+bash}\"", "bash\n"),
        "mcpssh-zsh" => ("echo \"${ZSH_VERSION:+zsh}\"", "zsh\n"),
        "mcpssh-ksh" => ("echo \"${.sh.version:+ksh93}\"", "ksh93\n"),
        "mcpssh-mksh" => ("case $KSH_VERSION in *MIRBSD*) echo mksh;; esac", "mksh\n"),
        "mcpssh-csh" => ("set x = csh; echo $x", "csh\n"),
        "mcpssh-tcsh" => ("if ($?tcsh) echo tcsh", "tcsh\n"),
        "mcpssh-fish" => ("set x fish; echo $x", "fish\n"),
        _ => ("x=posix; echo \"$x\"", "posix\n"),
    }
}

async fn runs_command_lines_in_the_login_shell(user: &str) {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = server
        .call("execute_command", password_args(&sshd, user, "echo hi"))
        .await;
    succeeded(&res);
    assert_eq!(stdout(&res), "hi\n", "{}", text(&res));
    let (command, expected) = dialect(user);
    let res = server
        .call("execute_command", password_args(&sshd, user, command))
        .await;
    succeeded(&res);
    assert_eq!(stdout(&res), expected, "{command}: {}", text(&res));
}

/// Login shells whose language is not POSIX sh: no state is kept there.
const NOT_POSIX: &[&str] = &["mcpssh-csh", "mcpssh-tcsh", "mcpssh-fish"];

/// `cd` and `export` carry over to the next call in a POSIX login shell
/// (the value holds every quote and a newline); elsewhere each call says
/// the session keeps no state, and a call's own `cwd` is a clear error.
async fn the_session_keeps_its_directory_and_variables(user: &str) {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let value = "a b'c\"d $HOME `x` \\ é\nline2";
    if NOT_POSIX.contains(&user) {
        let res = server
            .call("execute_command", password_args(&sshd, user, "cd /tmp"))
            .await;
        succeeded(&res);
        assert!(
            text(&res).contains("keeps no working directory"),
            "{}",
            text(&res)
        );
        let res = server
            .call("execute_command", password_args(&sshd, user, "pwd"))
            .await;
        assert_ne!(stdout(&res), "/tmp\n", "{}", text(&res));
        let mut args = password_args(&sshd, user, "pwd");
        args["cwd"] = json!("/tmp");
        let res = server.call("execute_command", args).await;
        assert_eq!(res.is_error, Some(true), "{}", text(&res));
        assert!(text(&res).contains("POSIX sh"), "{}", text(&res));
        return;
    }
    let dir = format!("/tmp/state-{user}-{}", sshd.port());
    let setup = format!(
        "mkdir -p {dir} && cd {dir} && export MCP_STATE_VAR='{}' && unset LOGNAME",
        value.replace('\'', "'\\''")
    );
    let res = server
        .call("execute_command", password_args(&sshd, user, &setup))
        .await;
    succeeded(&res);
    assert_eq!(structured(&res)["cwd"], json!(dir), "{}", text(&res));
    let res = server
        .call(
            "execute_command",
            password_args(
                &sshd,
                user,
                "pwd; printf '[%s][%s]' \"$MCP_STATE_VAR\" \"${LOGNAME-unset}\"",
            ),
        )
        .await;
    succeeded(&res);
    assert_eq!(
        stdout(&res),
        format!("{dir}\n[{value}][unset]"),
        "{}",
        text(&res)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn a_timeout_stops_the_command_and_its_children(user: &str) {
    let sshd = Sshd::start();
    let server = Server::start().await;
    let sleeper = format!("sleep 4711.{}", sshd.port());
    let _cleanup = Leftovers::new(user, &sleeper);
    let mut args = password_args(&sshd, user, &format!("{sleeper} & {sleeper}; echo never"));
    args["timeout"] = json!(1);
    let res = server.call("execute_command", args).await;
    assert_eq!(structured(&res)["timed_out"], true, "{}", text(&res));
    assert!(!stdout(&res).contains("never"), "{}", text(&res));
    assert!(
        !remote_running_as(user, &sleeper),
        "{sleeper} still runs under {user} after the timeout: {}",
        text(&res)
    );
    assert_eq!(
        honest_stop(&res),
        Some(true),
        "the stop was not verified under {user}: {}",
        text(&res)
    );
}

/// A server with `argv_probe` granted printf with up to [`MAX_WORDS`]
/// free words, for every test account, with credentials.
async fn probe_server(port: u16) -> Server {
    let mut patterns = vec![r#"['/usr/bin/printf', '<%s>\n', '*', 'end']"#.to_string()];
    for n in 2..=MAX_WORDS {
        patterns.push(format!(
            r#"['/usr/bin/printf', '<%s>\n', {}'end']"#,
            "'*', ".repeat(n)
        ));
    }
    let grant = format!(
        "hosts = [\"127.0.0.1\"]\nusers = [\"mcpssh-*\"]\ncredentials = true\n\
         commands = [{}]\n",
        patterns.join(", ")
    );
    install_plugin(
        Server::builder(),
        &guest_wasm("argv_probe"),
        "argv_probe",
        Some(&format!("[requests]\n{grant}")),
        &format!("[plugins.argv_probe]\n{grant}ports = [{port}]\n"),
    )
    .spawn()
    .await
}

/// What became of one argv.
#[derive(Debug)]
enum Outcome {
    /// The program printed these bytes.
    Ran(Vec<u8>),
    /// The host refused it, with this message.
    Refused(String),
}

async fn run_argv(server: &Server, sshd: &Sshd, user: &str, words: &[&str]) -> Outcome {
    let mut argv = vec!["/usr/bin/printf", r"<%s>\n"];
    argv.extend_from_slice(words);
    argv.push("end");
    let res = server
        .call(
            "run_argv",
            json!({"host": "127.0.0.1", "port": sshd.port(), "username": user,
                   "password": TEST_PASSWORD, "argv": argv}),
        )
        .await;
    if res.is_error == Some(true) {
        let msg = text(&res);
        // A refusal names itself; a lost connection or a timeout is not one.
        assert!(
            msg.starts_with("Invalid argument") || msg.starts_with("Denied"),
            "{user}: {words:?} failed without a clear refusal: {msg}"
        );
        return Outcome::Refused(msg);
    }
    let out = structured(&res);
    let bytes = out["stdout"]
        .as_array()
        .unwrap_or_else(|| panic!("no stdout bytes: {out}"))
        .iter()
        .map(|b| b.as_u64().unwrap() as u8)
        .collect();
    Outcome::Ran(bytes)
}

fn expected(words: &[&str]) -> Vec<u8> {
    words
        .iter()
        .chain(&["end"])
        .flat_map(|w| format!("<{w}>\n").into_bytes())
        .collect()
}

async fn a_granted_argv_reaches_the_program_word_for_word(user: &str) {
    let sshd = Sshd::start();
    let server = probe_server(sshd.port()).await;
    match run_argv(&server, &sshd, user, PLAIN_WORDS).await {
        Outcome::Ran(out) => assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&expected(PLAIN_WORDS)),
            "{user}: plain words changed on the way"
        ),
        Outcome::Refused(msg) => panic!("{user}: plain words were refused: {msg}"),
    }
    // All at once first (one channel); word by word only to say which
    // words were refused or changed.
    if let Outcome::Ran(out) = run_argv(&server, &sshd, user, HOSTILE_WORDS).await
        && out == expected(HOSTILE_WORDS)
    {
        return;
    }
    // A word refused alone is honest; one run differently is the bug.
    let mut changed = Vec::new();
    for word in HOSTILE_WORDS {
        match run_argv(&server, &sshd, user, &[word]).await {
            Outcome::Ran(out) if out == expected(&[word]) => {}
            Outcome::Ran(out) => changed.push(format!(
                "{word:?} came out as {:?}",
                String::from_utf8_lossy(&out)
            )),
            Outcome::Refused(_) => {}
        }
    }
    assert!(
        changed.is_empty(),
        "{user}: {} of {} words were run differently from the granted argv:\n{}",
        changed.len(),
        HOSTILE_WORDS.len(),
        changed.join("\n")
    );
}

#[tokio::test]
async fn the_pid_marker_is_found_after_an_rc_files_banner_and_never_leaks() {
    let (user, _) = BASHRC_USER;
    let sshd = Sshd::start();
    let server = Server::start().await;
    let res = server
        .call("execute_command", password_args(&sshd, user, "echo hi"))
        .await;
    succeeded(&res);
    assert_eq!(
        stdout(&res),
        format!("{BASHRC_BANNER}\nhi\n"),
        "{}",
        text(&res)
    );
    let warning = format!("{BASHRC_WARNING}\n");
    assert_eq!(structured(&res)["stderr"], warning, "{}", text(&res));
    let sleeper = format!("sleep 4715.{}", sshd.port());
    let _cleanup = Leftovers::new(user, &sleeper);
    let mut args = password_args(&sshd, user, &sleeper);
    args["timeout"] = json!(1);
    let res = server.call("execute_command", args).await;
    assert_eq!(structured(&res)["timed_out"], true, "{}", text(&res));
    // The banner is the account's output; the host's marker is not.
    assert_eq!(stdout(&res), format!("{BASHRC_BANNER}\n"), "{}", text(&res));
    assert!(
        !remote_running_as(user, &sleeper),
        "{sleeper} still runs after the timeout: {}",
        text(&res)
    );
    assert_eq!(honest_stop(&res), Some(true), "{}", text(&res));
}

macro_rules! per_shell {
    ($($shell:ident => $user:literal),* $(,)?) => {
        $(
            mod $shell {
                #[tokio::test]
                async fn runs_command_lines_in_the_login_shell() {
                    super::runs_command_lines_in_the_login_shell($user).await;
                }

                #[tokio::test]
                async fn the_session_keeps_its_directory_and_variables() {
                    super::the_session_keeps_its_directory_and_variables($user).await;
                }

                #[tokio::test]
                async fn a_timeout_stops_the_command_and_its_children() {
                    super::a_timeout_stops_the_command_and_its_children($user).await;
                }

                #[tokio::test]
                async fn a_granted_argv_reaches_the_program_word_for_word() {
                    super::a_granted_argv_reaches_the_program_word_for_word($user).await;
                }
            }
        )*

        #[test]
        fn every_test_account_has_its_shell_tests() {
            let tested = [$($user),*];
            for (user, _) in SHELL_USERS.iter().filter(|(u, _)| *u != "mcpssh-bashrc") {
                assert!(tested.contains(user), "{user} has no tests");
            }
        }
    };
}

per_shell! {
    sh => "mcpssh-sh",
    dash => "mcpssh-dash",
    bash => "mcpssh-bash",
    zsh => "mcpssh-zsh",
    ksh => "mcpssh-ksh",
    mksh => "mcpssh-mksh",
    csh => "mcpssh-csh",
    tcsh => "mcpssh-tcsh",
    fish => "mcpssh-fish",
    ash => "mcpssh-ash",
}
