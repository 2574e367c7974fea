//! What a component may do through the `ssh` interface.
//!
//! Built-in tools hold the full grant. A component loaded from the plugin
//! directory may run commands with the operator's credentials (ssh-agent,
//! default keys, sessions already open) but may not supply credentials of
//! its own, nor see or close sessions. Operator-configured grants build on
//! this type.

use crate::ssh::Target;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// May pass passwords and key files in `target.credentials`.
    pub supply_credentials: bool,
    /// May list and close every session, not only run commands.
    pub see_all_sessions: bool,
}

impl Grant {
    pub fn full() -> Self {
        Self {
            supply_credentials: true,
            see_all_sessions: true,
        }
    }

    pub fn plugin_default() -> Self {
        Self {
            supply_credentials: false,
            see_all_sessions: false,
        }
    }

    /// `Err` carries the reason the guest sees in `ssh-error::denied`.
    pub(crate) fn check_target(&self, target: &Target) -> Result<(), String> {
        let supplies = target.credentials.as_ref().is_some_and(|c| !c.is_empty());
        if supplies && !self.supply_credentials {
            return Err(
                "this component may not supply credentials; it can only use the \
                        operator's ssh-agent, default keys and open sessions"
                    .into(),
            );
        }
        Ok(())
    }
}
