//! The reader against the real shells' own listings, every byte value
//! included, and the writer read back by the same shells.

use std::path::Path;
use std::process::Command;

use super::*;

const SHELLS: [&str; 6] = [
    "/bin/dash",
    "/bin/bash",
    "/bin/zsh",
    "/bin/ksh93",
    "/bin/mksh",
    "/usr/local/bin/ash",
];

fn shells() -> Vec<&'static str> {
    let found: Vec<_> = SHELLS
        .into_iter()
        .filter(|s| Path::new(s).exists())
        .collect();
    assert!(found.len() >= 2, "the test setup installs the shells");
    found
}

/// What `shell` lists after running `script`.
fn listing(shell: &str, script: &str) -> BTreeMap<String, Option<Vec<u8>>> {
    let out = Command::new(shell)
        .arg("-c")
        .arg(format!(
            "{script}\n[ -z \"$ZSH_VERSION\" ] || setopt print_eight_bit\nexport -p"
        ))
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    parse(&out.stdout).unwrap_or_else(|| {
        panic!(
            "{shell}: unreadable listing:\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Every byte but NUL, in runs a shell variable takes.
fn every_byte() -> Vec<Vec<u8>> {
    let all: Vec<u8> = (1..=255).collect();
    let mut values: Vec<Vec<u8>> = all.chunks(32).map(<[u8]>::to_vec).collect();
    values.push("é ü 日本 \u{1F600}".as_bytes().to_vec());
    values.push(b"trailing newlines\n\n".to_vec());
    // ksh93 writes `\x[a9]` when a hex digit follows.
    values.push(b"\xc3\xa9b\x01f".to_vec());
    values.push(Vec::new());
    values
}

fn octal(value: &[u8]) -> String {
    value.iter().map(|b| format!("\\0{b:03o}")).collect()
}

#[test]
fn every_byte_value_reads_back_exactly_from_every_shells_listing() {
    for shell in shells() {
        let values = every_byte();
        let mut script = String::new();
        for (i, v) in values.iter().enumerate() {
            script.push_str(&format!(
                "V{i}=$(printf '%bx' '{}'); V{i}=${{V{i}%x}}; export V{i}\n",
                octal(v)
            ));
        }
        let got = listing(shell, &script);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(
                got.get(&format!("V{i}")),
                Some(&Some(v.clone())),
                "{shell}: V{i}"
            );
        }
    }
}

#[test]
fn written_values_read_back_exactly_in_every_shell() {
    for shell in shells() {
        for v in every_byte() {
            let line = format!("{NEWLINE}{}; printf %s \"$X\"", assign("X", &v));
            assert!(!line.contains('\n'), "one line: {line:?}");
            let out = Command::new(shell).arg("-c").arg(&line).output().unwrap();
            assert_eq!(out.stdout, v, "{shell}: {line}");
        }
    }
}

#[test]
fn attributes_do_not_hide_a_variable() {
    let script = "export R=1 L=abc P=/a; readonly R";
    for shell in shells() {
        let got = listing(shell, script);
        assert_eq!(got.get("R"), Some(&Some(b"1".to_vec())), "{shell}");
        assert_eq!(got.get("L"), Some(&Some(b"abc".to_vec())), "{shell}");
    }
    let bash = listing(
        "/bin/bash",
        "export L=Abc; declare -l L; declare -i N=4; export N",
    );
    assert_eq!(bash.get("L"), Some(&Some(b"Abc".to_vec())));
    assert_eq!(bash.get("N"), Some(&Some(b"4".to_vec())));
}

#[test]
fn zshs_tied_path_reads_as_the_joined_scalar() {
    let got = listing("/bin/zsh", "export PATH=\"/a b:/c'd:\\$x:$PATH\"");
    assert_eq!(
        got.get("PATH"),
        Some(&Some(b"/a b:/c'd:$x:/usr/bin:/bin".to_vec()))
    );
}

#[test]
fn a_listing_with_anything_that_would_run_is_refused_whole() {
    for bad in [
        "export A=$(id)",
        "export A=`id`",
        "export A=x; id",
        "export A=x && id",
        "export A=x | id",
        "export A=x >f",
        "declare -x A=\"$(id)\"",
        "declare -x A=\"`id`\"",
        "export A='unterminated",
        "export A=x B=y",
        "id",
        "export 1A=x",
        "export A-B=x",
        "export -T PATH path=( $(id) )",
        "export -T PATH path=( /a",
    ] {
        assert!(parse(bad.as_bytes()).is_none(), "{bad}");
        let with_good = format!("export OK=1\n{bad}\n");
        assert!(parse(with_good.as_bytes()).is_none(), "{bad}");
    }
}

#[test]
fn a_value_that_imitates_the_next_entry_stays_a_value() {
    let text = "export A='x\nexport EVIL=1; id\n'\nexport B='ok'\n";
    let got = parse(text.as_bytes()).unwrap();
    assert_eq!(got.keys().collect::<Vec<_>>(), ["A", "B"]);
    assert_eq!(got["A"].as_deref(), Some(&b"x\nexport EVIL=1; id\n"[..]));
}

#[test]
fn the_frames_own_and_the_shells_variables_are_not_kept() {
    let text =
        "export __mcp_s='0'\nexport SHLVL='1'\nexport _='/bin/x'\nexport K='v'\ndeclare -x E\n";
    let got = parse(text.as_bytes()).unwrap();
    assert_eq!(got.keys().collect::<Vec<_>>(), ["E", "K"]);
    assert_eq!(got["E"], None);
}
