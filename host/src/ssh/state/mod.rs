//! What a session remembers between commands: its working directory and
//! the variables its commands exported or unset.

use std::collections::BTreeMap;

/// A session's kept state, as shown to tools: never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateInfo {
    pub key: super::SessionKey,
    pub alias: Option<String>,
    /// Absent: the login directory.
    pub cwd: Option<String>,
    /// How many variables it has exported or unset.
    pub variables: u32,
}

/// The state one session keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionState {
    /// Absent: the login directory.
    pub(crate) cwd: Option<String>,
    /// By name: the login shell's own `export -p` entry that sets it, or
    /// `None` for a variable the session unset.
    pub(crate) vars: BTreeMap<String, Option<String>>,
}

impl SessionState {
    pub(crate) fn is_empty(&self) -> bool {
        self.cwd.is_none() && self.vars.is_empty()
    }
}
