//! Stopping a remote command for real: its whole process group, verified.
//!
//! The launcher ([`super::launch`]) makes every command lead its own session
//! and process group and reports its PID. To stop commands, a second channel
//! runs a script that sends TERM to each session and group, waits a grace
//! period, sends KILL, and answers, per command, whether anything is left. An SSH `signal`
//! request is not enough: OpenSSH honours it only from 7.9 on, and it
//! reaches only the shell, not its children.
//!
//! Those channels come from a reserve of their own per connection
//! ([`STOP_CHANNELS`], on top of the command channels), so a stop never
//! competes with the commands it stops for sshd's `MaxSessions`; and
//! requests that arrive while a stop runs are batched into the next one, so
//! 64 timeouts at once need a few channels, not 64.
//!
//! A process that leaves the group itself (a daemon calling `setsid`) is
//! out of reach, as it would be for `kill` in a terminal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{Handle, Handler};
use tokio::sync::{Semaphore, oneshot};

/// TERM, then KILL after this long.
pub(crate) const GRACE: Duration = Duration::from_secs(2);
/// A whole stop, from the request to the answer, never takes longer: it
/// is the grace a call may run past its timeout.
pub(crate) const STOP_BOUND: Duration = Duration::from_secs(5);
/// How long a stop waits for the marker (and so the PID) of a command
/// that has not printed it yet; it counts against the stop's bound.
pub(crate) const MARKER_WAIT: Duration = Duration::from_secs(1);
/// Channels kept for stops on each connection.
pub(crate) const STOP_CHANNELS: usize = 2;
/// How long the script waits after KILL before it answers "survived".
const AFTER_KILL: Duration = Duration::from_secs(1);

/// What to signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Victim {
    /// A process group: the command and its children.
    Group(u32),
    /// A process that does not lead a group (a server that did not
    /// `setsid` it, with no `setsid` to fix that): it and every process
    /// descended from it, found through their parents, frozen first so none
    /// can fork away while they are collected.
    Tree(u32),
}

/// What became of a command we were asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KillOutcome {
    /// Nothing of the group is left.
    Gone,
    /// Something survived KILL (uninterruptible sleep, most likely).
    Survived,
    /// The kill ran, but what it said does not prove the command gone.
    Unknown(String),
    /// No answer: no channel, or none in time. The connection is likely
    /// dead.
    NoAnswer(String),
}

impl KillOutcome {
    /// `remote_stopped` as tools report it: known only for groups.
    pub(crate) fn verified(&self) -> Option<bool> {
        match self {
            Self::Gone => Some(true),
            Self::Survived => Some(false),
            Self::Unknown(_) | Self::NoAnswer(_) => None,
        }
    }
}

type Waiter = (Victim, oneshot::Sender<KillOutcome>);

/// The stops of one connection: a reserve of channels and a queue.
pub(crate) struct Stopper {
    slots: Arc<Semaphore>,
    pending: Arc<Mutex<Vec<Waiter>>>,
}

impl Default for Stopper {
    fn default() -> Self {
        Self {
            slots: Arc::new(Semaphore::new(STOP_CHANNELS)),
            pending: Arc::default(),
        }
    }
}

impl Stopper {
    /// Stops `victim`, batched with every other stop waiting on this
    /// connection. The work runs in a task of its own, so a caller that
    /// gives up does not abandon the others in its batch.
    pub(crate) async fn stop<H: Handler + 'static>(
        &self,
        handle: Arc<Handle<H>>,
        victim: Victim,
    ) -> KillOutcome {
        if let Victim::Group(p) | Victim::Tree(p) = victim
            && p <= 1
        {
            return KillOutcome::Unknown(format!("refusing to signal process {p}"));
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).push((victim, tx));
        let (slots, pending) = (self.slots.clone(), self.pending.clone());
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire().await else {
                return;
            };
            let batch = std::mem::take(&mut *lock(&pending));
            if batch.is_empty() {
                return;
            }
            let victims: Vec<Victim> = batch.iter().map(|(v, _)| *v).collect();
            let outcomes = match tokio::time::timeout(STOP_BOUND, kill_all(&handle, &victims)).await
            {
                Ok(o) => o,
                Err(_) => vec![
                    KillOutcome::NoAnswer("the stop did not answer in time".into());
                    victims.len()
                ],
            };
            for ((_, tx), outcome) in batch.into_iter().zip(outcomes) {
                let _ = tx.send(outcome);
            }
        });
        rx.await
            .unwrap_or_else(|_| KillOutcome::NoAnswer("the stop was abandoned".into()))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stop script for `victims` (`gPID` for a command that leads its
/// session and group, `tPID` for a process tree). A group leader is stopped
/// with its whole session: shells with job control (csh, tcsh) put
/// background jobs in process groups of their own, but never in another
/// session. A tree is frozen (`STOP`) and collected again until it stops
/// growing, then signalled and resumed. Run by `/bin/sh` whatever the login
/// shell is, and written in characters every login shell leaves alone
/// inside single quotes.
fn script(victims: &[Victim]) -> String {
    let ticks = GRACE.as_millis() / 100;
    let limit = ticks + AFTER_KILL.as_millis() / 100;
    let ids: Vec<String> = victims.iter().map(victim_id).collect();
    let body = [
        // pgrep may be missing (then only the group is checked, and the
        // answer says so) or too old for -r (then zombies count as alive).
        "P=; Q=; command -v pgrep >/dev/null 2>&1 && P=1",
        "[ -n \"$P\" ] && { pgrep -r R -s 0 >/dev/null 2>&1; [ $? -le 1 ] && Q=\"-r R,S,D,T,t\"; }",
        "live() { st=; read -r y y st y </proc/$1/stat 2>/dev/null || { kill -0 $1 2>/dev/null; return; }; \
         case $st in Z|X) return 1;; esac; }",
        "tree() { echo $1; for c in $(pgrep -P $1 2>/dev/null); do tree $c; done; }",
        "grow() { for v; do case $v in t*) p=${v#t}; eval \"l=\\$t_$p\"; n=; \
         for x in $l; do live $x && n=\"$n $(tree $x)\"; done; \
         eval \"t_$p=\\\"\\$n\\\"\";; esac; done; }",
        "sig() { for v; do p=${v#?}; case $v in g*) kill -$s -$p; pkill -$s -s $p;; \
         t*) eval \"kill -$s \\$t_$p\";; esac; done 2>/dev/null; }",
        "alive() { p=${1#?}; case $1 in \
         g*) if [ -n \"$Q\" ]; then pgrep $Q -g $p >/dev/null || pgrep $Q -s $p >/dev/null; \
         else kill -0 -$p 2>/dev/null || pgrep -s $p >/dev/null 2>&1; fi;; \
         t*) eval \"[ -n \\\"\\$t_$p\\\" ]\";; esac; }",
        "for v; do case $v in t*) eval \"t_${v#t}=${v#t}\";; esac; done",
        // Only trees are frozen: a session holds its members whatever they
        // fork, and each signal round costs a pkill.
        "T=; for v; do case $v in t*) T=1;; esac; done",
        "if [ -n \"$T\" ]; then for r in 1 2 3; do grow \"$@\"; s=STOP; sig \"$@\"; done; fi",
        "s=TERM; sig \"$@\"; if [ -n \"$T\" ]; then s=CONT; sig \"$@\"; fi",
        "i=0; while :; do grow \"$@\"; a=; for v; do alive $v && a=1; done; [ -z \"$a\" ] && break",
        format!("i=$((i+1)); if [ $i -eq {ticks} ]; then s=KILL; sig \"$@\"; fi").as_str(),
        format!("[ $i -gt {limit} ] && break; sleep 0.1 2>/dev/null || sleep 1; done").as_str(),
        // A line of its own: an rc file's banner without a final newline
        // would otherwise run into the first answer.
        "echo",
        "[ -z \"$P\" ] && echo nopgrep",
        "for v; do if alive $v; then echo left $v; else echo gone $v; fi; done",
    ]
    .join("; ");
    format!("exec /bin/sh -c '{body}' sh {}", ids.join(" "))
}

fn victim_id(v: &Victim) -> String {
    match v {
        Victim::Group(p) => format!("g{p}"),
        Victim::Tree(p) => format!("t{p}"),
    }
}

/// Runs the stop script for `victims` on a new channel of `handle`;
/// returns one outcome per victim, in order.
async fn kill_all<H: Handler>(handle: &Handle<H>, victims: &[Victim]) -> Vec<KillOutcome> {
    let unknown = |why: String| vec![KillOutcome::NoAnswer(why); victims.len()];
    // The server may still count a channel we saw close: the stop's bound
    // covers the retries.
    let mut channel = match super::connect::open_session(handle, 40).await {
        Ok(c) => c,
        Err(e) => return unknown(format!("cannot open a channel to stop it: {e}")),
    };
    if let Err(e) = channel.exec(true, script(victims)).await {
        return unknown(format!("cannot run kill: {e}"));
    }
    let _ = channel.eof().await;
    let mut answer = Vec::new();
    while let Some(msg) = channel.wait().await {
        if let ChannelMsg::Data { data } = msg {
            answer.extend_from_slice(&data);
        }
    }
    read_answer(&String::from_utf8_lossy(&answer), victims)
}

/// The outcome for each of `victims` in what the stop script printed.
fn read_answer(answer: &str, victims: &[Victim]) -> Vec<KillOutcome> {
    victims
        .iter()
        .map(|v| {
            let id = victim_id(v);
            let said = answer.lines().find_map(|l| match l.split_once(' ') {
                Some(("gone", rest)) if rest == id => Some(true),
                Some(("left", rest)) if rest == id => Some(false),
                _ => None,
            });
            let no_pgrep = answer.lines().any(|l| l == "nopgrep");
            match (said, v) {
                (Some(true), Victim::Group(_)) if no_pgrep => KillOutcome::Unknown(
                    "its process group is gone, but the remote host has no pgrep, so the rest \
                     of its session could not be checked"
                        .into(),
                ),
                (Some(true), Victim::Group(_)) => KillOutcome::Gone,
                // A process that double-forked left the tree while it ran.
                (Some(true), Victim::Tree(_)) => KillOutcome::Unknown(
                    "its process tree is gone, but it led no session, so processes that left \
                     the tree could not be checked"
                        .into(),
                ),
                (Some(false), _) => KillOutcome::Survived,
                (None, _) => KillOutcome::Unknown(format!(
                    "unexpected answer from kill: {:?}",
                    answer.trim()
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the stop script here, as a login shell would, against a real
    /// session with a background job in a group of its own.
    #[test]
    fn the_script_stops_a_whole_session_and_says_so() {
        let mut leader = std::process::Command::new("setsid")
            .args(["sh", "-c", "set -m; sleep 4731 & sleep 4732 & wait"])
            .spawn()
            .unwrap();
        let pid = leader.id();
        std::thread::sleep(Duration::from_millis(300));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&[Victim::Group(pid)]))
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout);
        assert_eq!(answer.trim(), format!("gone g{pid}"), "{answer}");
        let left = std::process::Command::new("pgrep")
            .args(["-f", "sleep 473[12]"])
            .output()
            .unwrap();
        assert!(left.stdout.is_empty(), "{:?}", left);
        let _ = leader.wait();
    }

    /// An rc file that prints a banner without a final newline, before
    /// the script runs, does not hide its answer.
    #[test]
    fn a_banner_without_a_newline_does_not_hide_the_answer() {
        let mut leader = std::process::Command::new("setsid")
            .args(["sleep", "4733"])
            .spawn()
            .unwrap();
        let pid = leader.id();
        std::thread::sleep(Duration::from_millis(200));
        let victims = [Victim::Group(pid)];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf 'Welcome!'; {}", script(&victims)))
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout);
        assert!(answer.starts_with("Welcome!\n"), "{answer}");
        assert!(
            matches!(read_answer(&answer, &victims)[..], [KillOutcome::Gone]),
            "{answer}"
        );
        let _ = leader.wait();
    }

    #[test]
    fn the_script_is_literal_in_every_login_shell() {
        let s = script(&[Victim::Group(4242), Victim::Tree(77)]);
        let quoted = s.split('\'').nth(1).unwrap();
        assert!(!quoted.contains(['!', '\n']), "{quoted}");
        // fish reads `\\` and `\'` inside single quotes; nothing else.
        assert!(!quoted.contains("\\\\"), "{quoted}");
        assert!(s.ends_with("sh g4242 t77"), "{s}");
    }
}
