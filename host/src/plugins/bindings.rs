//! The one `bindgen!` site: Rust types and traits for the `mcp-ssh:tools`
//! WIT world. Every other module uses these, never its own bindings.
//!
//! `ssh-error` is trappable: imports return `Result<_, crate::ssh::SshError>`
//! so that `?` carries the SSH core's errors straight to the guest, and
//! `types::Host::convert_ssh_error` turns them into the WIT value;
//! `file-error` likewise, from `crate::ssh::FileError` through
//! `files::Host::convert_file_error`. A trap
//! stays a `wasmtime::Error`, for host bugs and limits only.

wasmtime::component::bindgen!({
    world: "tool-component",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
    trappable_error_type: {
        "mcp-ssh:tools/types.ssh-error" => crate::ssh::SshError,
        "mcp-ssh:tools/files.file-error" => crate::ssh::FileError,
    },
});

pub use exports::mcp_ssh::tools::tool;
pub use mcp_ssh::tools::{files, jobs, log, progress, ssh, types};
