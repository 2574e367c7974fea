//! What one HTTP client may reach (`[clients.NAME]`): hosts, users and
//! argv patterns, with the same patterns as a plugin grant. A call's
//! effective policy is the client's and its component's grant together:
//! the gate (`imports::authorize`) asks both, and both must allow it.
//!
//! Unlike a grant, what a client's table leaves out it does not restrict:
//! a client with only a token may do what the tools may. A client with
//! `commands` runs only matching argv: raw shell lines, background jobs
//! and file writes are refused, since each could run anything.

use std::sync::Arc;

use super::hosts::{self, HostPattern, Net, Resolved};
use super::{Action, GrantError, invalid};
use crate::pattern::glob_match;
use crate::ssh::{PeerCheck, Target};

/// One client's restrictions; `None` fields restrict nothing.
#[derive(Debug, Clone)]
pub struct ClientPolicy {
    name: Arc<str>,
    hosts: Option<(Vec<HostPattern>, Vec<String>)>,
    users: Option<Vec<String>>,
    commands: Option<Vec<Vec<String>>>,
    /// May name key files on the server.
    key_files: bool,
}

impl ClientPolicy {
    /// Lets the client name private key files on the server.
    pub fn with_key_files(mut self, allowed: bool) -> Self {
        self.key_files = allowed;
        self
    }

    /// Refuses a key file on the server unless the operator allowed it:
    /// over the network, `key_filename` would be any file the server can
    /// read.
    pub(crate) fn check_key_file(&self, target: &crate::ssh::Target) -> Result<(), String> {
        let named = target
            .credentials
            .as_ref()
            .is_some_and(|c| c.key_file.is_some());
        if named && !self.key_files {
            return Err(format!(
                "client {}: key_filename names a file on the server, which HTTP clients may not \
                 use unless the operator sets key_files = true in [clients.{}]; send a password",
                self.name, self.name
            ));
        }
        Ok(())
    }

    /// Parses the host patterns; a bad one is an error naming it.
    pub fn new(
        name: &str,
        hosts: Option<Vec<String>>,
        users: Option<Vec<String>>,
        commands: Option<Vec<Vec<String>>>,
    ) -> Result<Self, GrantError> {
        let hosts = match hosts {
            None => None,
            Some(shown) => {
                let parsed = shown
                    .iter()
                    .map(|h| {
                        HostPattern::parse(h)
                            .map_err(|why| invalid("hosts", format!("{h:?}"), &why))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some((parsed, shown))
            }
        };
        Ok(Self {
            name: name.into(),
            hosts,
            users,
            commands,
            key_files: false,
        })
    }

    /// The client's name, as the audit log shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// May this client have `action` done on `target`, which goes to
    /// `route`? `Ok(Some(check))`: if the address connected to passes it.
    pub(crate) fn authorize(
        &self,
        target: &Target,
        route: &Resolved,
        action: Action<'_>,
    ) -> Result<Option<PeerCheck>, String> {
        let client = &self.name;
        let nets = match &self.hosts {
            None => None,
            Some((parsed, shown)) => hosts::check_hosts(parsed, shown, route)
                .map_err(|why| format!("client {client}: {why}"))?
                .map(|nets| (nets, shown.clone())),
        };
        if let Some(users) = &self.users {
            let user = target.username.as_deref().unwrap_or("");
            if !users.iter().any(|p| glob_match(p, user)) {
                return Err(format!(
                    "client {client}: user {user:?} is not among its users {users:?}"
                ));
            }
        }
        if let Some(commands) = &self.commands {
            match action {
                Action::Describe => {}
                Action::File { write: false, .. } => {}
                Action::Shell => {
                    return Err(format!(
                        "client {client} may run only commands matching {commands:?}, not \
                         shell command lines"
                    ));
                }
                Action::File { write: true, .. } => {
                    return Err(format!(
                        "client {client} may run only commands matching {commands:?}, so it \
                         may not write files"
                    ));
                }
                Action::Argv(argv) => {
                    let matched = commands.iter().any(|p| {
                        p.len() == argv.len() && p.iter().zip(argv).all(|(p, a)| glob_match(p, a))
                    });
                    if !matched {
                        return Err(format!(
                            "client {client}: argv {argv:?} matches none of its commands \
                             {commands:?}"
                        ));
                    }
                }
            }
        }
        Ok(nets.map(|side: (Vec<Net>, Vec<String>)| {
            hosts::peer_check(route.given.clone(), vec![side])
        }))
    }
}

/// Both peer checks, when both sides allow the host only by address.
pub(crate) fn both(a: Option<PeerCheck>, b: Option<PeerCheck>) -> Option<PeerCheck> {
    match (a, b) {
        (Some(a), Some(b)) => Some(PeerCheck(Arc::new(move |peer| {
            (a.0)(peer)?;
            (b.0)(peer)
        }))),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(host: &str) -> Resolved {
        Resolved {
            given: host.into(),
            host_name: host.into(),
            port: 22,
            default_port: 22,
            direct: true,
        }
    }

    fn target(user: &str) -> Target {
        Target {
            host: "web1".into(),
            username: Some(user.into()),
            ..Target::default()
        }
    }

    #[test]
    fn a_client_without_restrictions_is_allowed_everything() {
        let p = ClientPolicy::new("a", None, None, None).unwrap();
        assert!(
            p.authorize(&target("root"), &route("db"), Action::Shell)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn hosts_users_and_commands_each_restrict_a_client() {
        let p = ClientPolicy::new(
            "ci",
            Some(vec!["web*".into()]),
            Some(vec!["deploy".into()]),
            Some(vec![vec!["systemctl".into(), "status".into(), "*".into()]]),
        )
        .unwrap();
        let argv = ["systemctl".to_string(), "status".into(), "nginx".into()];
        let ok = p.authorize(&target("deploy"), &route("web1"), Action::Argv(&argv));
        assert!(ok.is_ok(), "{ok:?}");
        let err = p
            .authorize(&target("deploy"), &route("db1"), Action::Argv(&argv))
            .unwrap_err();
        assert!(err.contains("client ci") && err.contains("db1"), "{err}");
        let err = p
            .authorize(&target("root"), &route("web1"), Action::Argv(&argv))
            .unwrap_err();
        assert!(err.contains("root"), "{err}");
        let err = p
            .authorize(&target("deploy"), &route("web1"), Action::Shell)
            .unwrap_err();
        assert!(err.contains("shell"), "{err}");
        let write = Action::File {
            path: "/etc/x",
            write: true,
            transfer: false,
        };
        assert!(
            p.authorize(&target("deploy"), &route("web1"), write)
                .is_err()
        );
        let other = ["rm".to_string(), "-rf".into(), "/".into()];
        assert!(
            p.authorize(&target("deploy"), &route("web1"), Action::Argv(&other))
                .is_err()
        );
    }

    #[test]
    fn a_bad_host_pattern_is_an_error_naming_it() {
        let err = ClientPolicy::new("a", Some(vec!["10.0.0.0/99".into()]), None, None).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/99"), "{err}");
    }
}
