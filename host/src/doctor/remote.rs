//! The remote half of `doctor HOST`: the route ssh_config gives and each
//! step of connecting (through the SSH core's own `establish_probed`, jump
//! host by jump host), each failure with its fix. What a command then meets
//! on the host is [`super::on_host`]'s.

use std::sync::Arc;
use std::time::Instant;

use russh::Disconnect;
use russh::client::{Handle, Msg};
use russh::keys::{PublicKey, PublicKeyOrCertificate};

use super::{Item, Section};
use crate::ssh::connect::{self, ClientHandler, Probe, ProbeLog};
use crate::ssh::destination::{Destination, Route};
use crate::ssh::{Credentials, HostKeyPolicy, SessionManager, SshError, Target, known_hosts};

/// Jump hosts followed at most, as the session manager does.
const MAX_JUMP_DEPTH: usize = 8;

/// `HOST` as given: an alias or `host`, with `user@` and `:port` optional
/// (`[v6]:port` for an IPv6 address with a port).
pub(super) fn parse_target(given: &str) -> Result<Target, String> {
    let (user, rest) = match given.rsplit_once('@') {
        Some((u, r)) if !u.is_empty() => (Some(u.to_string()), r),
        Some(_) => return Err(format!("{given:?}: the user before @ is empty")),
        None => (None, given),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("{given:?}: [ without ]"))?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("{given:?}: unexpected {after:?} after ]")),
        }
    } else {
        match rest.split_once(':') {
            // More colons: a bare IPv6 address.
            Some((h, p)) if !p.contains(':') => (h, Some(p)),
            _ => (rest, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{given:?}: port {p:?} is not 1 to 65535"))?,
        ),
    };
    if host.is_empty() {
        return Err(format!("{given:?}: no host"));
    }
    Ok(Target {
        host: host.to_string(),
        username: user,
        port,
        ..Target::default()
    })
}

/// An authenticated connection, and the jump connections it runs through.
pub(super) struct Link {
    pub(super) handle: Arc<Handle<ClientHandler>>,
    /// The server is OpenSSH (the launcher builds its line for it).
    pub(super) openssh: bool,
    via: Vec<Link>,
}

impl Link {
    async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "doctor done", "en")
            .await;
        for link in self.via {
            Box::pin(link.close()).await;
        }
    }
}

pub(super) async fn check(
    manager: &SessionManager,
    target: Result<Target, String>,
    credentials: Option<Credentials>,
) -> Vec<Section> {
    let mut route = Section::new("Route");
    let dest = match target.map(|t| manager.resolve(&t).map_err(|e| e.to_string())) {
        Ok(Ok(dest)) => dest,
        Err(e) | Ok(Err(e)) => {
            route.push(Item::fail(
                "host",
                e,
                "give an ssh_config alias, host, user@host or user@host:port",
            ));
            return vec![route];
        }
    };
    describe_route(&mut route, &dest);
    let mut steps = Section::new(format!("Connecting to {}", dest.display_name()));
    let link = connect_link(manager, &dest, credentials.as_ref(), &mut steps, 0).await;
    let mut sections = vec![route, steps];
    if let Some(link) = link {
        let cfg = manager.config();
        sections.push(super::on_host::check(&link, cfg.channels_per_connection).await);
        link.close().await;
    }
    sections
}

fn describe_route(section: &mut Section, dest: &Destination) {
    let key = &dest.key;
    let alias = match &dest.alias {
        Some(a) => format!("{a} is "),
        None => String::new(),
    };
    section.push(Item::info(
        "destination",
        format!(
            "{alias}HostName {}, User {}, Port {}",
            key.host, key.username, key.port
        ),
    ));
    let via = match &dest.route {
        Route::Direct => "direct TCP".to_string(),
        Route::Jump(hops) => {
            let hops: Vec<String> = hops.iter().map(hop_name).collect();
            format!("ProxyJump through {}", hops.join(" then "))
        }
        Route::Command(c) => format!("ProxyCommand {c}"),
    };
    section.push(Item::info("route", via));
    section.push(Item::info(
        "connect timeout",
        format!("{} s", dest.connect_timeout.as_secs_f64()),
    ));
}

fn hop_name(hop: &crate::ssh::destination::Hop) -> String {
    let mut s = String::new();
    if let Some(u) = &hop.user {
        s.push_str(u);
        s.push('@');
    }
    s.push_str(&hop.host);
    if let Some(p) = hop.port {
        s.push_str(&format!(":{p}"));
    }
    s
}

/// Connects to `dest` as the server would (its jump hosts first, each
/// reported), noting each step in `steps`.
async fn connect_link(
    manager: &SessionManager,
    dest: &Destination,
    credentials: Option<&Credentials>,
    steps: &mut Section,
    depth: usize,
) -> Option<Link> {
    let name = if depth == 0 {
        String::new()
    } else {
        format!("jump host {}: ", dest.display_name())
    };
    let (tunnel, via) = match &dest.route {
        Route::Jump(hops) => {
            let (tunnel, link) = tunnel(manager, dest, hops, steps, depth).await?;
            (Some(tunnel), vec![link])
        }
        _ => (None, Vec::new()),
    };
    let probe = Arc::new(Probe::default());
    let started = Instant::now();
    let attempt = connect::establish_probed(dest, credentials, tunnel, Some(probe.clone()));
    let result = tokio::time::timeout(dest.connect_timeout, attempt).await;
    let log = probe.take();
    report_steps(steps, dest, &log, started, &name);
    match result {
        Ok(Ok(connected)) => Some(Link {
            openssh: connected.server_id.starts_with("SSH-2.0-OpenSSH"),
            handle: Arc::new(connected.handle),
            via,
        }),
        Ok(Err(e)) => {
            steps.push(failure(dest, &log, credentials.is_some(), e, &name));
            None
        }
        Err(_) => {
            steps.push(stalled(dest, &log, &name));
            None
        }
    }
}

/// A channel to `dest` through the last of `hops`, reached through the
/// hops before it (or its own ssh_config route), as the manager does.
async fn tunnel(
    manager: &SessionManager,
    dest: &Destination,
    hops: &[crate::ssh::destination::Hop],
    steps: &mut Section,
    depth: usize,
) -> Option<(russh::ChannelStream<Msg>, Link)> {
    let key = &dest.key;
    let fail = |detail: String, fix: &str| Item::fail("jump host", detail, fix);
    let Some((last, before)) = hops.split_last() else {
        steps.push(fail("empty ProxyJump".into(), "correct ssh_config"));
        return None;
    };
    if depth >= MAX_JUMP_DEPTH {
        steps.push(fail(
            format!("more than {MAX_JUMP_DEPTH} jump hosts"),
            "does ssh_config's ProxyJump loop?",
        ));
        return None;
    }
    let jump = manager.resolve(&Target {
        host: last.host.clone(),
        username: last.user.clone(),
        port: last.port,
        ..Target::default()
    });
    let mut jump = match jump {
        Ok(j) => j,
        Err(e) => {
            steps.push(fail(
                format!("{}: {e}", hop_name(last)),
                "correct ssh_config",
            ));
            return None;
        }
    };
    if !before.is_empty() {
        jump.route = Route::Jump(before.to_vec());
    }
    let link = Box::pin(connect_link(manager, &jump, None, steps, depth + 1)).await?;
    let t = Instant::now();
    let opened = tokio::time::timeout(
        dest.connect_timeout,
        link.handle.channel_open_direct_tcpip(
            key.host.as_str(),
            u32::from(key.port),
            "127.0.0.1",
            0,
        ),
    )
    .await;
    match opened {
        Ok(Ok(channel)) => {
            steps.push(
                Item::ok(
                    "tunnel",
                    format!(
                        "jump host {} opened a channel to {}:{}",
                        jump.display_name(),
                        key.host,
                        key.port
                    ),
                )
                .took(t.elapsed()),
            );
            Some((channel.into_stream(), link))
        }
        Ok(Err(e)) => {
            steps.push(fail(
                format!(
                    "{} could not connect to {}:{}: {e}",
                    jump.display_name(),
                    key.host,
                    key.port
                ),
                "check HostName and Port as the jump host sees them, that sshd runs there, and \
                 that the jump host allows forwarding (AllowTcpForwarding)",
            ));
            link.close().await;
            None
        }
        Err(_) => {
            steps.push(fail(
                format!("{} did not open a channel in time", jump.display_name()),
                "the target may drop packets from the jump host: check its address and firewall",
            ));
            link.close().await;
            None
        }
    }
}

/// One item per step the probe saw, each timed from the step before.
fn report_steps(
    steps: &mut Section,
    dest: &Destination,
    log: &ProbeLog,
    started: Instant,
    name: &str,
) {
    let mut last = started;
    let mut since = |t: Instant| {
        let d = t.saturating_duration_since(last);
        last = t;
        d
    };
    match (&dest.route, &log.tcp) {
        (Route::Direct, Some((t, addr))) => {
            let to = addr.map_or_else(|| "?".to_string(), |a| a.to_string());
            steps.push(Item::ok(format!("{name}TCP connect"), format!("to {to}")).took(since(*t)));
        }
        (Route::Command(c), _) => {
            steps.push(Item::info(
                format!("{name}ProxyCommand"),
                format!("started: {c}"),
            ));
        }
        _ => {}
    }
    // The host key is checked inside the key exchange: the handshake's
    // time covers it.
    if let Some((t, id)) = &log.handshake {
        steps
            .push(Item::ok(format!("{name}SSH handshake"), format!("server {id}")).took(since(*t)));
    }
    if let Some((_, offered, Ok(()))) = &log.host_key {
        steps.push(host_key_item(dest, offered, name));
    }
    if let Some(offered) = &log.offered {
        steps.push(Item::info(
            format!("{name}auth methods offered"),
            if offered.is_empty() {
                "none named".to_string()
            } else {
                offered.join(", ")
            },
        ));
    }
    if let Some((t, how)) = &log.auth {
        steps.push(
            Item::ok(
                format!("{name}authentication"),
                format!("logged in as {} with {how}", dest.key.username),
            )
            .took(since(*t)),
        );
    }
}

fn plain_key(offered: &PublicKeyOrCertificate) -> PublicKey {
    match offered {
        PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
        PublicKeyOrCertificate::Certificate(c) => PublicKey::from(c.public_key().clone()),
    }
}

/// The accepted host key: which line vouches for it, or why it passed
/// without one.
fn host_key_item(dest: &Destination, offered: &PublicKeyOrCertificate, name: &str) -> Item {
    let what = format!("{name}host key");
    let fp = known_hosts::fingerprint(&plain_key(offered));
    let cert = matches!(offered, PublicKeyOrCertificate::Certificate(_));
    let (host, port) = (&dest.key.host, dest.key.port);
    if let Some((path, line)) = known_hosts::vouching_line(&dest.known_hosts, host, port, offered) {
        let how = if cert {
            "a host certificate signed by the authority in"
        } else {
            "known:"
        };
        return Item::ok(what, format!("{fp}, {how} {} line {line}", path.display()));
    }
    match dest.host_key_policy {
        HostKeyPolicy::Off => Item::warn(
            what,
            format!("{fp}, accepted unchecked (host key policy off)"),
            "use --host-key-policy accept-new (or strict)",
        ),
        _ => {
            let file = dest
                .known_hosts
                .user
                .first()
                .map_or_else(|| "?".into(), |p| p.display().to_string());
            Item::ok(
                what,
                format!(
                    "{fp}, NEW: under accept-new the server records it in {file} on first \
                     contact (doctor wrote nothing)"
                ),
            )
        }
    }
}

/// The step that failed, and its fix.
fn failure(
    dest: &Destination,
    log: &ProbeLog,
    gave_password: bool,
    e: SshError,
    name: &str,
) -> Item {
    let (host, port) = (&dest.key.host, dest.key.port);
    match e {
        SshError::HostKey(msg) => {
            let offered = log
                .host_key
                .as_ref()
                .map(|(_, k, _)| known_hosts::fingerprint(&plain_key(k)));
            let what = format!("{name}host key");
            if let Some((detail, fix)) = msg.split_once("If the change is expected, ") {
                Item::fail(
                    what,
                    detail.trim(),
                    format!("if the change is expected, {fix}"),
                )
            } else if msg.contains("@revoked") {
                Item::fail(
                    what,
                    msg,
                    "the key was revoked on purpose: ask the host's administrator",
                )
            } else if msg.contains("is not in the known_hosts files") {
                let file = dest
                    .known_hosts
                    .user
                    .first()
                    .map_or_else(|| "~/.ssh/known_hosts".into(), |p| p.display().to_string());
                Item::fail(
                    what,
                    msg,
                    format!(
                        "compare {} with the host's own key (ssh-keygen -lf \
                         /etc/ssh/ssh_host_ed25519_key.pub, run there), then record it: \
                         ssh-keyscan -p {port} {host} >> '{file}', or connect once with \
                         --host-key-policy accept-new",
                        offered.as_deref().unwrap_or("the fingerprint")
                    ),
                )
            } else {
                Item::fail(what, msg, "check the known_hosts files listed above")
            }
        }
        SshError::Auth(msg) => {
            let offered = log
                .offered
                .as_ref()
                .map(|o| format!(" The server offers: {}.", o.join(", ")))
                .unwrap_or_default();
            let fix = if gave_password {
                "check the password (one line on stdin) and that the account may log in with one \
                 (PasswordAuthentication or KbdInteractiveAuthentication on the server)"
                    .to_string()
            } else {
                format!(
                    "put the public key in ~{}/.ssh/authorized_keys on the host and offer its \
                     private key: ssh-add it to the agent, or name it as IdentityFile for this \
                     host in ~/.ssh/config; or try --password-stdin",
                    dest.key.username
                )
            };
            Item::fail(
                format!("{name}authentication"),
                format!("{msg}{offered}"),
                fix,
            )
        }
        SshError::Connect(msg) if log.tcp.is_none() && dest.route == Route::Direct => {
            let fix = if msg.contains("refused") {
                format!(
                    "nothing listens on {host}:{port}: is sshd running there, and is the port \
                     right (Port in ssh_config, or user@host:port)?"
                )
            } else if msg.contains("lookup") || msg.contains("resolve") {
                format!("{host} does not resolve: check the name, or HostName in ssh_config")
            } else {
                format!("check the network path to {host}:{port} (routes, firewall)")
            };
            Item::fail(format!("{name}TCP connect"), msg, fix)
        }
        SshError::Connect(msg) if log.handshake.is_none() => Item::fail(
            format!("{name}SSH handshake"),
            msg,
            format!(
                "is an SSH server listening on {host}:{port}? A proxy or another service may \
                 answer there"
            ),
        ),
        other => Item::fail(
            format!("{name}connect"),
            other.to_string(),
            "run again with MCP_SSH_LOG=debug for details",
        ),
    }
}

/// Connecting ran out of time: the step it was stuck at.
fn stalled(dest: &Destination, log: &ProbeLog, name: &str) -> Item {
    let secs = dest.connect_timeout.as_secs_f64();
    let (host, port) = (&dest.key.host, dest.key.port);
    let (step, fix) = if log.tcp.is_none() && dest.route == Route::Direct {
        (
            "TCP connect",
            format!(
                "no answer from {host}:{port}: a firewall dropping packets or a wrong address; \
                 check HostName and Port, or raise ConnectTimeout"
            ),
        )
    } else if log.handshake.is_none() {
        (
            "SSH handshake",
            "the server took the connection but did not speak SSH in time".to_string(),
        )
    } else {
        (
            "authentication",
            "the server or the agent is slow to answer: raise --connect-timeout".to_string(),
        )
    };
    Item::fail(
        format!("{name}{step}"),
        format!("timed out after {secs} s (connect timeout)"),
        fix,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_arguments_take_every_ssh_form() {
        let t = parse_target("deploy@db:2200").unwrap();
        assert_eq!(
            (t.username.as_deref(), t.host.as_str(), t.port),
            (Some("deploy"), "db", Some(2200))
        );
        let t = parse_target("prod").unwrap();
        assert_eq!((t.username, t.host.as_str(), t.port), (None, "prod", None));
        let t = parse_target("u@[::1]:22").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", Some(22)));
        assert_eq!(parse_target("::1").unwrap().host, "::1");
        for bad in ["h:0", "h:x", "@h", "[::1", ":22"] {
            assert!(parse_target(bad).is_err(), "{bad} accepted");
        }
    }
}
