//! The host side of the WIT `progress` interface: reports about the
//! current call, passed to the MCP client. It touches no server, so it
//! needs no gate, and its time stays the guest's.

use crate::plugins::bindings::progress;
use crate::plugins::state::StoreState;

impl progress::Host for StoreState {
    async fn report(
        &mut self,
        progress: f64,
        total: Option<f64>,
        message: Option<String>,
    ) -> wasmtime::Result<()> {
        // The sink was made bounded (finite values, short messages) when
        // the call started. It never waits, so its time stays the guest's:
        // a loop of cheap imports must not escape the budget.
        if let Some(sink) = &self.progress {
            sink(progress, total, message);
        }
        Ok(())
    }
}
