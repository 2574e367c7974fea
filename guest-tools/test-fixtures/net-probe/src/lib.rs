//! Test fixture: a tool that opens a TCP connection, so the component
//! imports wasi:sockets, which the host does not link. It must be skipped
//! at load, naming the missing interface, rather than run without it.

use mcp_ssh_guest::{NoArgs, Output, SshError, Tool, export_tools};

struct Connect;
impl Tool for Connect {
    type Args = NoArgs;
    const NAME: &'static str = "net_probe_connect";
    const DESCRIPTION: &'static str = "Connects to 127.0.0.1:22.";
    fn call(_: NoArgs) -> Result<Output, SshError> {
        Ok(match std::net::TcpStream::connect("127.0.0.1:22") {
            Ok(_) => Output::text("connected"),
            Err(e) => Output::error(format!("no connection: {e}")),
        })
    }
}

export_tools!(Connect);
