//! The one `bindgen!` site: Rust types and traits for the `mcp-ssh:tools`
//! WIT world. Every other module uses these, never its own bindings.

wasmtime::component::bindgen!({
    world: "tool-component",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use exports::mcp_ssh::tools::tool;
pub use mcp_ssh::tools::{jobs, log, progress, ssh, types};
