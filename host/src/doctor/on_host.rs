//! What a command meets on a host `doctor` connected to: the launcher's
//! marker (the login shell, and whether the command leads a process group
//! the stop can signal), a real stop of a test command through the
//! server's own stop script, and how many sessions one connection takes.

use std::time::{Duration, Instant};

use russh::client::Msg;
use russh::{Channel, ChannelMsg};

use super::remote::Link;
use super::{Item, Section};
use crate::ssh::connect;
use crate::ssh::kill::{KillOutcome, STOP_BOUND, STOP_CHANNELS, Stopper, Victim};
use crate::ssh::launch::{self, Marker, Payload, Reach, Started};

/// Sessions opened at most when probing `MaxSessions`.
const MAX_SESSIONS_PROBE: usize = 64;
/// Any one probe on the host gives up after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a command meets on the host: the launcher's marker (the login
/// shell and how the command can be stopped), a real stop, MaxSessions.
pub(super) async fn check(link: &Link, channels_per_connection: usize) -> Section {
    let mut section = Section::new("On the host");
    let t = Instant::now();
    let first = match launched(link, None, Payload::Line("true")).await {
        Ok((started, channel)) => {
            drain(channel).await;
            started
        }
        Err(e) => {
            section.push(Item::fail(
                "launcher",
                e,
                "a ForceCommand or a restricted shell stands in the way: commands would run, \
                 but could not be stopped or told apart from the shell's output",
            ));
            return section;
        }
    };
    section.push(Item::ok("login shell", first.shell.clone()).took(t.elapsed()));
    section.push(reach_item("first command of a connection", &first));
    let later = if launch::is_posix(&first.shell) {
        let t = Instant::now();
        match launched(link, Some(&first.shell), Payload::Line("true")).await {
            Ok((started, channel)) => {
                drain(channel).await;
                section.push(reach_item("later commands", &started).took(t.elapsed()));
                started
            }
            Err(e) => {
                section.push(Item::warn(
                    "later commands",
                    e,
                    "report this: later commands skip the extra /bin/sh",
                ));
                first.clone()
            }
        }
    } else {
        first.clone()
    };
    section.push(stop_probe(link, &later.shell).await);
    section.push(max_sessions(link, channels_per_connection).await);
    section
}

/// The marker's verdict on how a command started this way can be stopped.
fn reach_item(what: &str, started: &Started) -> Item {
    match started.reach {
        Reach::Session => Item::ok(
            what,
            "leads its own session and process group: a timeout stops it and all its children",
        ),
        Reach::Tree => Item::warn(
            what,
            "leads no process group (the server did not make it a leader, and the host has no \
             setsid): a timeout stops its process tree, but processes that leave the tree survive",
            "install setsid (util-linux) on the host",
        ),
        Reach::Unknown => Item::warn(
            what,
            format!(
                "the login shell {} does not show which process runs the command: a timeout \
                 sends KILL to the shell only, unverified",
                started.shell
            ),
            "give this account a POSIX login shell (sh, bash, zsh...)",
        ),
    }
}

/// Starts `payload` the way the server does (the launcher's line for a
/// connection whose login shell is `shell`) and waits for the marker.
async fn launched(
    link: &Link,
    shell: Option<&str>,
    payload: Payload<'_>,
) -> Result<(Started, Channel<Msg>), String> {
    let work = async {
        let mut channel = connect::open_session(&link.handle, 5)
            .await
            .map_err(|e| format!("cannot open a session channel: {e}"))?;
        let packet = match channel.writable_packet_size().await {
            0 => 32 * 1024,
            n => n,
        };
        let server = launch::Server {
            shell,
            openssh: link.openssh,
            packet,
        };
        let launch = launch::build(payload, &server);
        channel
            .exec(true, launch.line)
            .await
            .map_err(|e| format!("cannot run a command: {e}"))?;
        if let Some(stdin) = launch.stdin {
            let _ = channel.data(&stdin[..]).await;
        }
        let _ = channel.eof().await;
        let mut marker = Marker::new(&launch.nonce);
        while let Some(msg) = channel.wait().await {
            if let ChannelMsg::Data { data } = msg {
                marker.feed(&data);
                if let Some(started) = marker.started() {
                    return Ok((started.clone(), channel));
                }
            }
        }
        Err("the command ended without the launcher's marker".to_string())
    };
    tokio::time::timeout(PROBE_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(format!("no marker within {} s", PROBE_TIMEOUT.as_secs())))
}

/// Reads `channel` to its end (bounded), so its session slot is free.
async fn drain(mut channel: Channel<Msg>) {
    let _ = tokio::time::timeout(PROBE_TIMEOUT, async {
        while channel.wait().await.is_some() {}
    })
    .await;
}

/// Starts a `sleep` as a later command would start and stops it with the
/// server's own stop (TERM to its group, then a check that nothing is
/// left).
async fn stop_probe(link: &Link, shell: &str) -> Item {
    let what = "process-group stop";
    let t = Instant::now();
    let shell = launch::is_posix(shell).then_some(shell);
    let (started, channel) = match launched(link, shell, Payload::Line("sleep 3607")).await {
        Ok(s) => s,
        Err(e) => {
            return Item::warn(
                what,
                format!("could not start a test command: {e}"),
                "see the launcher above",
            );
        }
    };
    let victim = match started.reach {
        Reach::Session => Victim::Group(started.pid),
        Reach::Tree => Victim::Tree(started.pid),
        Reach::Unknown => {
            let _ = channel.close().await;
            return Item::warn(
                what,
                "not possible: the command's processes are not known (see above)",
                "give this account a POSIX login shell",
            );
        }
    };
    let stopper = Stopper::default();
    let outcome = tokio::time::timeout(
        STOP_BOUND + Duration::from_secs(1),
        stopper.stop(link.handle.clone(), victim),
    )
    .await
    .unwrap_or_else(|_| KillOutcome::NoAnswer("no answer in time".into()));
    drain(channel).await;
    let item = match outcome {
        KillOutcome::Gone => Item::ok(
            what,
            "works: a test command was stopped with TERM and nothing of its session or group is \
             left",
        ),
        KillOutcome::Survived => Item::warn(
            what,
            "a test command survived TERM and KILL",
            "look for processes in uninterruptible sleep on the host (ps -eo stat,cmd | grep ^D)",
        ),
        KillOutcome::Unknown(why) => Item::warn(
            what,
            format!("unverified: {why}"),
            if why.contains("pgrep") {
                "install pgrep (procps) on the host"
            } else {
                "install setsid (util-linux) on the host"
            },
        ),
        KillOutcome::NoAnswer(why) => Item::fail(
            what,
            format!("the stop got no answer: {why}"),
            "the host may limit sessions or be overloaded; run again with MCP_SSH_LOG=debug",
        ),
    };
    item.took(t.elapsed())
}

/// Opens sessions on the connection until the server refuses one (or
/// [`MAX_SESSIONS_PROBE`]), then closes them.
async fn max_sessions(link: &Link, channels_per_connection: usize) -> Item {
    let what = "MaxSessions";
    // Channels just closed may not be freed yet on the server.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut open = Vec::new();
    let mut retried = false;
    while open.len() < MAX_SESSIONS_PROBE {
        let opening = link.handle.channel_open_session();
        match tokio::time::timeout(Duration::from_secs(5), opening).await {
            Ok(Ok(channel)) => open.push(channel),
            // A refusal may be a slot the server has not freed yet: once
            // more after a pause.
            Ok(Err(_)) if !retried => {
                retried = true;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            _ => break,
        }
    }
    let n = open.len();
    for channel in open {
        let _ = channel.close().await;
    }
    if n >= MAX_SESSIONS_PROBE {
        return Item::ok(
            what,
            format!("at least {n} sessions at once on one connection"),
        );
    }
    let needed = channels_per_connection + STOP_CHANNELS;
    let detail = format!(
        "{n}: the server refused session {} on one connection",
        n + 1
    );
    if n < needed {
        Item::warn(
            what,
            format!(
                "{detail}; the server opens up to {channels_per_connection} command channels \
                 plus {STOP_CHANNELS} for stops, so commands beyond {n} wait and retry"
            ),
            format!(
                "run the server with --channels-per-session {} (and fewer --jobs-per-session), \
                 or raise MaxSessions in the host's sshd_config",
                n.saturating_sub(STOP_CHANNELS).max(2)
            ),
        )
    } else {
        Item::ok(what, detail)
    }
}
