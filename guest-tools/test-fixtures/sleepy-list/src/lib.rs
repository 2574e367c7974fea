//! Test fixture: a component whose `list-tools` sleeps for an hour. It
//! burns no CPU, so only a time budget that counts waiting stops it; the
//! host must skip it at load and start without it.

use mcp_ssh_guest::bindings::exports::mcp_ssh::tools::tool::Guest;
use mcp_ssh_guest::{CallError, CallResult, ToolInfo};

struct SleepyList;

impl Guest for SleepyList {
    fn list_tools() -> Vec<ToolInfo> {
        std::thread::sleep(std::time::Duration::from_secs(3600));
        Vec::new()
    }

    fn call_tool(name: String, _arguments: String) -> Result<CallResult, CallError> {
        Err(CallError::UnknownTool(name))
    }
}

mcp_ssh_guest::bindings::export!(SleepyList with_types_in mcp_ssh_guest::bindings);
