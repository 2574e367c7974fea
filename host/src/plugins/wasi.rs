//! The WASI a tool component gets: only the interfaces Rust's standard
//! library needs to start and print, each with no capability behind it.
//!
//! wasmtime's `add_to_linker_async` links all of WASI, sockets included;
//! here each interface is linked by hand, so a component that imports
//! anything else (a socket, a future WASI interface) fails to link and is
//! skipped at load with the missing import named, rather than finding a
//! capability it was never meant to have.

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView as _};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView as _};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView as _};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, io, random};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiView};

use super::stderr;

/// `wasi:io` works on the resource table alone.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links the WASI interfaces a tool may import into `linker`.
pub(crate) fn add_to_linker<T: WasiView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let l = linker;
    io::error::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    io::poll::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;
    io::streams::add_to_linker::<T, Io>(l, |t| t.ctx().table)?;

    // Clocks and randomness: std's `Instant`, `SystemTime`, `sleep` and
    // `HashMap` seeds. A sleep is charged to the call's time budget.
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.ctx().ctx.random())?;

    // std imports all of these at start-up: arguments and environment
    // (empty), exit, the three standard streams (stdin empty, stdout
    // discarded, stderr to the log) and the terminal queries (no terminal).
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;

    // The filesystem is linked, but with no preopened directory: every
    // path resolves against a directory the guest can only get from
    // `preopens`, which is empty, so it grants nothing. Refusing to link
    // it instead would turn away any component whose code merely mentions
    // `std::fs` (many crates do, for paths they never take in a tool).
    filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;

    // Deliberately absent: wasi:sockets (tcp, udp, name lookup, network).
    // A tool reaches hosts through the `ssh` import, under its grant.
    Ok(())
}

/// A call's WASI context: no arguments, environment, preopens or network;
/// stderr kept, up to its cap, for the log.
pub(crate) fn context(stderr: &stderr::GuestStderr, cap: usize) -> WasiCtx {
    WasiCtxBuilder::new()
        .stderr(stderr::Capped {
            sink: stderr.clone(),
            cap,
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}
