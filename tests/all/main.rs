//! The integration suite, one binary (as wasmtime's `tests/all`): every SSH
//! test talks to a real OpenSSH sshd on loopback, and every MCP test drives
//! the real server binary with rmcp's MCP client.
//!
//! Run it through `scripts/test`, which installs sshd, the wasm target and
//! the test account first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod auth;
mod blackhole;
mod clients;
mod doctor;
mod dropbear;
mod dropbear_server;
mod exec;
mod file_transfers;
mod files;
mod files_core;
mod grants;
mod host_keys;
mod hostile_files;
mod http;
mod http_clients;
mod http_jwks;
mod http_jwt;
mod http_server;
mod jobs;
mod jump;
mod limits;
mod openssh;
mod plugins;
mod progress;
mod protocol;
mod sandbox;
mod secrets;
mod server;
mod sessions;
mod shells;
mod sshd;
mod state;
mod state_hostile;
mod stdin;
mod stdio;
mod stopping;
mod sudo;
