use super::*;

fn sniff(nonce: &str, chunks: &[&[u8]]) -> (Vec<u8>, Option<Started>) {
    let mut m = Marker::new(nonce);
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&m.feed(c));
    }
    out.extend(m.flush());
    (out, m.started().cloned())
}

#[test]
fn the_marker_is_found_across_chunks_and_after_a_banner() {
    let (out, s) = sniff(
        "ab12",
        &[
            b"Welcome!\n\x1e\x1emcp-s",
            b"sh:ab12:4242:G:/bin/b",
            b"ash\x1ehello\n",
        ],
    );
    assert_eq!(out, b"Welcome!\n\x1ehello\n");
    let s = s.unwrap();
    assert_eq!(
        (s.pid, s.reach, s.shell.as_str()),
        (4242, Reach::Session, "/bin/bash")
    );
}

#[test]
fn a_script_stream_passes_only_what_follows_the_marker() {
    let run = |chunks: &[&[u8]]| {
        let mut m = Marker::after("ab12");
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&m.feed(c));
        }
        out.extend(m.flush());
        (out, m.started().is_some())
    };
    let banner: &[u8] = b"Welcome!\n\x1emcp-ssh:ffff:1:G:/bin/sh\x1e";
    let (out, found) = run(&[banner, b"\x1emcp-ssh:ab", b"12:7:G:/bin/sh\x1eS 81a4 5 1\n"]);
    assert_eq!((out.as_slice(), found), (&b"S 81a4 5 1\n"[..], true));
    let (out, found) = run(&[b"banner\x1emcp-ssh:ab12:7:G:/bin/sh\x1e/tmp/x\0", b"H -\n"]);
    assert_eq!((out.as_slice(), found), (&b"/tmp/x\0H -\n"[..], true));
    // No marker (a ForceCommand): nothing is the script's.
    let big = vec![b'x'; SCAN_LIMIT + 10];
    let (out, found) = run(&[b"forced \x1e output", &big, b"more"]);
    assert_eq!((out.len(), found), (0, false));
    // A banner longer than a command's scan still ends at the marker.
    let (out, found) = run(&[&big, &big, b"\x1emcp-ssh:ab12:7:G:/bin/sh\x1e/tmp/t\0"]);
    assert_eq!((out.as_slice(), found), (&b"/tmp/t\0"[..], true));
}

#[test]
fn a_marker_with_another_nonce_is_output() {
    let forged = b"\x1emcp-ssh:ffff:1:G:/bin/sh\x1e";
    let (out, s) = sniff("ab12", &[forged, b"\x1emcp-ssh:ab12:7:N:/bin/sh\x1e"]);
    assert_eq!(out, forged);
    assert_eq!(s.map(|s| (s.pid, s.reach)), Some((7, Reach::Tree)));
}

#[test]
fn output_without_a_marker_passes_whole() {
    let (out, s) = sniff("ab12", &[b"plain", b"\x1emcp-ssh:ab"]);
    assert_eq!(out, b"plain\x1emcp-ssh:ab");
    assert!(s.is_none());
}

#[test]
fn plain_words_stay_plain_and_the_rest_is_octal() {
    assert_eq!(encode("ls -la /tmp | wc"), "pls -la /tmp | wc");
    assert_eq!(encode("it's!\n"), "eit\\0047s\\0041\\0012");
    assert_eq!(encode("é"), "e\\0303\\0251");
}

fn openssh(shell: Option<&str>) -> Server<'_> {
    Server {
        shell,
        openssh: true,
        packet: 32768,
    }
}

fn dropbear(shell: Option<&str>) -> Server<'_> {
    Server {
        openssh: false,
        ..openssh(shell)
    }
}

#[test]
fn the_launcher_is_literal_in_every_login_shell() {
    let argv = ["echo".to_string(), "a'b\n!c\\".to_string()];
    let l = build(Payload::Argv(&argv), &openssh(None));
    assert!(l.stdin.is_none());
    let quoted = l.line.split('\'').skip(1).step_by(2);
    for q in quoted {
        assert!(!q.contains(['!', '\n']), "{q}");
        assert!(
            q.match_indices('\\')
                .all(|(i, _)| q.as_bytes()[i + 1].is_ascii_digit()),
            "{q}"
        );
    }
}

#[test]
fn a_posix_login_shell_gets_the_command_directly() {
    let l = build(Payload::Line("echo hi"), &openssh(Some("/usr/bin/bash")));
    assert!(
        l.line.ends_with("; echo hi") && !l.line.contains('\n') && !l.line.contains("setsid"),
        "{}",
        l.line
    );
    // Elsewhere the command may need setsid: it runs again under it.
    let l = build(Payload::Line("echo hi"), &dropbear(Some("/usr/bin/bash")));
    assert!(
        l.line.contains("exec setsid") && l.line.ends_with("; echo hi"),
        "{}",
        l.line
    );
    let argv = ["printf".to_string(), "it's".to_string()];
    let l = build(Payload::Argv(&argv), &openssh(Some("/bin/sh")));
    assert!(l.line.ends_with(r"exec 'printf' 'it'\''s'"), "{}", l.line);
}

#[test]
fn other_login_shells_get_a_marker_child_or_the_launcher() {
    let argv = ["echo".to_string()];
    let l = build(Payload::Argv(&argv), &openssh(Some("/usr/bin/fish")));
    assert!(l.line.starts_with("exec /bin/sh -c '"), "{}", l.line);
    let l = build(Payload::Line("echo hi"), &openssh(Some("/usr/bin/fish")));
    assert!(
        l.line.starts_with("/bin/sh -c '") && l.line.ends_with("; echo hi"),
        "{}",
        l.line
    );
    // Not OpenSSH: nothing says the login shell leads a session.
    let l = build(Payload::Line("echo hi"), &dropbear(Some("/usr/bin/fish")));
    assert!(l.line.starts_with("exec /bin/sh -c '"), "{}", l.line);
}

#[test]
fn large_payloads_go_on_stdin() {
    let big = "x".repeat(40_000);
    let l = build(Payload::Line(&big), &openssh(Some("/bin/sh")));
    assert!(l.line.ends_with(" c s") && l.line.len() < 2000);
    // `p` + the word + its newline, then the empty line that ends them.
    let stdin = l.stdin.unwrap();
    assert_eq!(stdin.len(), big.len() + 3);
    assert!(stdin.ends_with(b"x\n\n"));
    assert!(check(Payload::Line(&"y".repeat(MAX_COMMAND_BYTES + 1))).is_err());
    // Dropbear drops a connection for a command past 9000 bytes.
    let mid = "z".repeat(9_000);
    let l = build(Payload::Line(&mid), &dropbear(Some("/bin/sh")));
    assert!(l.stdin.is_some() && l.line.len() < 2000, "{}", l.line.len());
    let l = build(Payload::Line(&mid), &openssh(Some("/bin/sh")));
    assert!(l.stdin.is_none());
}
