//! The host side of the WIT `log` interface: a component's messages in
//! the host's log, tagged with the component and capped per call.

use crate::plugins::bindings::log;
use crate::plugins::state::StoreState;

impl log::Host for StoreState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let Some(message) = self.log.admit(&message) else {
            return Ok(());
        };
        let component = &*self.component;
        match level {
            log::Level::Trace => tracing::trace!(component, "{message}"),
            log::Level::Debug => tracing::debug!(component, "{message}"),
            log::Level::Info => tracing::info!(component, "{message}"),
            log::Level::Warn => tracing::warn!(component, "{message}"),
            log::Level::Error => tracing::error!(component, "{message}"),
        }
        Ok(())
    }
}
