//! The host side of the WIT imports, one file per interface (`ssh`, `jobs`,
//! `files`, `progress`, `log`), and the conversions they share.
//!
//! Every import that touches SSH goes through [`authorize`]: the grant, the
//! concurrency slot, the audit line and the guest clock are handled there
//! once, so a new import cannot forget one of them. Imports return
//! `Result<_, SshError>` (see `bindings`): a guest-visible failure is an
//! `ssh-error`; a wasmtime `Err` (a trap) is kept for host bugs and limits.

pub(crate) mod authorize;
mod files;
mod jobs;
mod log;
mod progress;
mod ssh;

pub(crate) use files::WriteLocks;

use zeroize::Zeroizing;

use super::bindings::types;
use super::state::StoreState;
use crate::ssh as core;

impl types::Host for StoreState {
    fn convert_ssh_error(&mut self, e: core::SshError) -> wasmtime::Result<types::SshError> {
        Ok(e.into())
    }
}

impl From<core::SshError> for types::SshError {
    fn from(e: core::SshError) -> Self {
        use core::SshError as E;
        match e {
            E::InvalidArgument(m) => Self::InvalidArgument(m),
            E::Connect(m) => Self::Connect(m),
            E::Auth(m) => Self::Auth(m),
            E::HostKey(m) => Self::HostKey(m),
            E::Timeout(m) => Self::Timeout(m),
            E::Channel(m) => Self::Channel(m),
            E::ConnectionLost(m) => Self::ConnectionLost(m),
            E::Denied(m) => Self::Denied(m),
            E::Cancelled(m) => Self::Cancelled(m),
            // WIT 0.1.x has no case for it, and adding one would break
            // older components: the message says what it is.
            E::Limit(m) => Self::Other(m),
            E::Other(m) => Self::Other(m),
        }
    }
}

/// The SSH core's target for a guest's. It carries no peer check until
/// the gate arms one.
fn target_from_wit(t: types::Target) -> core::Target {
    core::Target {
        host: t.host,
        username: t.username,
        port: t.port,
        credentials: t.credentials.map(|c| core::Credentials {
            password: c.password.map(Zeroizing::new),
            key_file: c.key_file.map(Into::into),
            passphrase: c.passphrase.map(Zeroizing::new),
        }),
        peer_check: None,
    }
}
