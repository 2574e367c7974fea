//! Where a grant lets a component go: its host patterns and ports, checked
//! against where a call really goes.
//!
//! A `hosts` entry is one of three kinds:
//! - `*` alone: any host, by any name or address.
//! - A name glob (`db-*.corp`, `10.0.0.*`): matched, case-insensitively,
//!   against the host name the component gave, as OpenSSH's `Host` matches
//!   the name on the command line, not the `HostName` ssh_config maps it
//!   to. The component chooses only the name; the operator's ssh_config,
//!   which maps names, is trusted. `*` and `?` stay within one DNS label, so
//!   `10.0.0.*` never matches `10.0.0.1.attacker.example`. Only DNS names
//!   (letters, digits, `-`, `_`, dots) and dotted quads can match a name
//!   glob: not an IPv6 literal, nor a name whose labels all start with a
//!   digit but that is not a plain dotted quad (`10.0.0.010`, `0x7f.1`),
//!   which the resolver would read as some other address.
//! - An address (`10.0.0.5`, `::1`) or a CIDR block (`10.0.0.0/24`):
//!   matched against the address the session is connected to, whatever
//!   name led there. When ssh_config resolves the name to an address
//!   literal on a direct route, that address is checked before connecting;
//!   a DNS name is checked on the connection's peer address before anything
//!   runs. Through a jump host or a ProxyCommand the address is not known
//!   here, so an address pattern never allows such a route.
//!
//! Ports: the operator's `ports = [22, 2222]`; without it, only the port
//! ssh_config gives for the host (else 22), so a component cannot pick a
//! port of its own. A manifest's `ports` can only narrow that.

use std::net::IpAddr;
use std::sync::Arc;

use crate::pattern::label_glob_match;
use crate::ssh::PeerCheck;

/// One parsed `hosts` entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HostPattern {
    Any,
    /// Lower-cased, label-bound glob.
    Name(String),
    Net(Net),
}

/// An address block: `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, bits) = match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => (u32::from(n).into(), u32::from(a).into(), 32),
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || net >> shift == ip >> shift
    }
}

impl HostPattern {
    pub(crate) fn parse(pattern: &str) -> Result<Self, String> {
        if pattern == "*" {
            return Ok(Self::Any);
        }
        if let Some((addr, bits)) = pattern.split_once('/') {
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("{pattern:?}: {addr:?} is not an IP address"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = bits
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{pattern:?}: the prefix must be 0 to {max}"))?;
            return Ok(Self::Net(Net { addr, prefix }));
        }
        let bare = pattern
            .strip_prefix('[')
            .and_then(|p| p.strip_suffix(']'))
            .unwrap_or(pattern);
        if let Ok(addr) = bare.parse::<IpAddr>() {
            let addr = addr.to_canonical();
            let prefix = if addr.is_ipv4() { 32 } else { 128 };
            return Ok(Self::Net(Net { addr, prefix }));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || "-_.*?".contains(c);
        if pattern.is_empty() || !pattern.chars().all(valid) {
            return Err(format!(
                "{pattern:?} is not a host name pattern (letters, digits, '-', '_', '.', \
                 '*', '?'), an IP address or a CIDR block"
            ));
        }
        Ok(Self::Name(pattern.to_ascii_lowercase()))
    }

    fn matches_name(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Name(glob) => dns_name(name) && label_glob_match(glob, name),
            Self::Net(_) => false,
        }
    }
}

/// A host name a glob may match: DNS characters only, and no numeric
/// look-alike (every label starting with a digit) unless a plain dotted
/// quad, since `inet_aton` reads `10.1`, `010.0.0.1` or `0x7f.1` as
/// addresses.
fn dns_name(name: &str) -> bool {
    let dns = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    let numeric = name
        .split('.')
        .all(|l| l.starts_with(|c: char| c.is_ascii_digit()));
    name.chars().all(dns) && (!numeric || name.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Where a call goes, as ssh_config resolves it.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The name the component gave, lower-cased.
    pub given: String,
    /// ssh_config's `HostName` for it (else the name given).
    pub host_name: String,
    pub port: u16,
    /// The port ssh_config gives for the host when the call names none.
    pub default_port: u16,
    /// Neither a jump host nor a ProxyCommand: the host is dialled here.
    pub direct: bool,
}

/// One side's host patterns, checked on `route`: `Ok(None)` allowed,
/// `Ok(Some(nets))` allowed if the address connected to is in `nets`.
pub(crate) fn check_hosts(
    hosts: &[HostPattern],
    shown: &[String],
    route: &Resolved,
) -> Result<Option<Vec<Net>>, String> {
    if hosts.iter().any(|p| p.matches_name(&route.given)) {
        return Ok(None);
    }
    let nets: Vec<Net> = hosts
        .iter()
        .filter_map(|p| match p {
            HostPattern::Net(n) => Some(*n),
            _ => None,
        })
        .collect();
    let refused = || {
        format!(
            "host {:?} is not among the granted hosts {shown:?}",
            route.given
        )
    };
    if nets.is_empty() {
        return Err(refused());
    }
    if !route.direct {
        return Err(format!(
            "host {:?} is granted only by address ({shown:?}), but ssh_config routes it \
             through a jump host or a ProxyCommand, where the address connected to is not \
             known here",
            route.given
        ));
    }
    match route.host_name.parse::<IpAddr>() {
        Ok(ip) if nets.iter().any(|n| n.contains(ip)) => Ok(None),
        Ok(ip) => Err(format!("{} (address {ip})", refused())),
        Err(_) => Ok(Some(nets)),
    }
}

/// The check run on a session's peer address: every side that allowed the
/// host only by address must contain it.
pub(crate) fn peer_check(given: String, sides: Vec<(Vec<Net>, Vec<String>)>) -> PeerCheck {
    PeerCheck(Arc::new(move |peer: Option<IpAddr>| {
        let Some(ip) = peer else {
            return Err(format!(
                "host {given:?} is granted only by address, but the session does not connect \
                 to it directly (jump host or ProxyCommand), so its address is not known here"
            ));
        };
        match sides
            .iter()
            .find(|(nets, _)| !nets.iter().any(|n| n.contains(ip)))
        {
            Some((_, shown)) => Err(format!(
                "host {given:?} (address {ip}) is not among the granted hosts {shown:?}"
            )),
            None => Ok(()),
        }
    }))
}

/// One side's ports: its own list, or for the operator's side the default
/// port when it lists none.
pub(crate) fn check_port(ports: &[u16], operator: bool, route: &Resolved) -> Result<(), String> {
    if ports.is_empty() {
        if !operator || route.port == route.default_port {
            return Ok(());
        }
        return Err(format!(
            "port {} of host {:?} is not granted: without `ports` in the grant, only the \
             port ssh_config gives for it ({}) is granted",
            route.port, route.given, route.default_port
        ));
    }
    if ports.contains(&route.port) {
        return Ok(());
    }
    Err(format!(
        "port {} of host {:?} is not among the granted ports {ports:?}",
        route.port, route.given
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(p: &str) -> Net {
        match HostPattern::parse(p).unwrap() {
            HostPattern::Net(n) => n,
            other => panic!("{p}: {other:?}"),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn resolved(given: &str, host_name: &str) -> Resolved {
        Resolved {
            given: given.into(),
            host_name: host_name.into(),
            port: 22,
            default_port: 22,
            direct: true,
        }
    }

    #[test]
    fn cidr_blocks_contain_their_addresses_only() {
        let n = net("10.0.0.0/24");
        assert!(n.contains(ip("10.0.0.0")) && n.contains(ip("10.0.0.255")));
        assert!(!n.contains(ip("10.0.1.0")) && !n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.0.0.9")), "v4-mapped peer");
        assert!(!n.contains(ip("::1")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        let v6 = net("fd00::/8");
        assert!(v6.contains(ip("fdaa::1")) && !v6.contains(ip("fe80::1")));
        assert!(net("[::1]").contains(ip("::1")) && !net("::1").contains(ip("::2")));
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/",
            "!bad.example",
            "a b",
            "",
            "[db]",
            "host:22",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            HostPattern::parse("DB-*.Corp").unwrap(),
            HostPattern::Name("db-*.corp".into())
        );
    }

    #[test]
    fn name_globs_match_the_name_given_within_labels() {
        let hosts = [HostPattern::parse("10.0.0.*").unwrap()];
        let shown = ["10.0.0.*".to_string()];
        assert!(check_hosts(&hosts, &shown, &resolved("10.0.0.1", "10.0.0.1")).is_ok());
        let evil = resolved("10.0.0.1.attacker.example", "10.0.0.1.attacker.example");
        assert!(check_hosts(&hosts, &shown, &evil).is_err());
        // Octal and short forms resolve elsewhere.
        for sly in ["10.0.0.010", "10.0.0.0x1", "10.0.0.1e"] {
            assert!(
                check_hosts(&hosts, &shown, &resolved(sly, sly)).is_err(),
                "{sly}"
            );
        }
        let db = [HostPattern::parse("db-*").unwrap()];
        for odd in ["db-1%eth0", "db-:1", "db-1/x", "db-1@x"] {
            assert!(check_hosts(&db, &[], &resolved(odd, odd)).is_err(), "{odd}");
        }
        let ends_in_1 = [HostPattern::parse("*1").unwrap()];
        assert!(check_hosts(&ends_in_1, &[], &resolved("::1", "::1")).is_err());
        assert!(check_hosts(&db, &[], &resolved("db-x", "10.9.9.9")).is_ok());
        assert!(check_hosts(&db, &[], &resolved("db-x.attacker.example", "x")).is_err());
    }

    #[test]
    fn address_patterns_check_the_address_connected_to() {
        let hosts = [HostPattern::parse("127.0.0.0/8").unwrap()];
        // An address literal is decided before connecting.
        assert!(
            check_hosts(&hosts, &[], &resolved("127.0.0.1", "127.0.0.1"))
                .unwrap()
                .is_none()
        );
        assert!(check_hosts(&hosts, &[], &resolved("x", "10.0.0.1")).is_err());
        // A DNS name is decided on the peer address.
        let nets = check_hosts(&hosts, &[], &resolved("localhost", "localhost"))
            .unwrap()
            .unwrap();
        let check = peer_check("localhost".into(), vec![(nets, vec!["127.0.0.0/8".into()])]);
        assert!((check.0)(Some(ip("127.0.0.1"))).is_ok());
        let why = (check.0)(Some(ip("10.1.2.3"))).unwrap_err();
        assert!(
            why.contains("10.1.2.3") && why.contains("127.0.0.0/8"),
            "{why}"
        );
        assert!((check.0)(None).unwrap_err().contains("jump host"));
        // Through a jump host the address is unknown: refused up front.
        let mut jumped = resolved("localhost", "localhost");
        jumped.direct = false;
        let why = check_hosts(&hosts, &[], &jumped).unwrap_err();
        assert!(why.contains("jump host"), "{why}");
    }

    #[test]
    fn ports_default_to_the_one_ssh_config_gives() {
        let mut r = resolved("h", "h");
        assert!(check_port(&[], true, &r).is_ok());
        r.port = 2222;
        assert!(check_port(&[], true, &r).unwrap_err().contains("(22)"));
        assert!(
            check_port(&[], false, &r).is_ok(),
            "a manifest only narrows"
        );
        assert!(check_port(&[22, 2222], true, &r).is_ok());
        assert!(check_port(&[22], false, &r).is_err());
        r.default_port = 2222;
        assert!(check_port(&[], true, &r).is_ok());
    }
}
