//! Test fixture: a component built against `mcp-ssh:tools@1.0.0`. The host
//! speaks 0.1.x, so it must refuse the component at load with a clear
//! error and keep serving.

wit_bindgen::generate!({
    path: "wit",
    world: "tool-component",
});

use exports::mcp_ssh::tools::tool::{CallError, CallResult, Guest, ToolInfo};

struct Future;

impl Guest for Future {
    fn list_tools() -> Vec<ToolInfo> {
        vec![ToolInfo {
            name: "from_the_future".into(),
            description: "Built against WIT 1.0.0.".into(),
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: None,
            annotations: None,
        }]
    }

    fn call_tool(name: String, _arguments: String) -> Result<CallResult, CallError> {
        // Touch an import so the component really depends on ssh@1.0.0.
        let _ = mcp_ssh::tools::ssh::list_sessions();
        Err(CallError::UnknownTool(name))
    }
}

export!(Future);
