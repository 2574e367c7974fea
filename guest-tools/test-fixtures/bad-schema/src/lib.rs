//! Test fixture: a component whose `list-tools` returns an input schema
//! that is not a JSON Schema object. The host must skip it and run on.

use mcp_ssh_guest::bindings::exports::mcp_ssh::tools::tool::Guest;
use mcp_ssh_guest::{CallError, CallResult, ToolInfo};

struct BadSchema;

impl Guest for BadSchema {
    fn list_tools() -> Vec<ToolInfo> {
        vec![ToolInfo {
            name: "bad_schema".into(),
            description: "Its schema is a string.".into(),
            input_schema: r#""not a schema""#.into(),
            output_schema: None,
            annotations: None,
        }]
    }

    fn call_tool(name: String, _arguments: String) -> Result<CallResult, CallError> {
        Err(CallError::UnknownTool(name))
    }
}

mcp_ssh_guest::bindings::export!(BadSchema with_types_in mcp_ssh_guest::bindings);
