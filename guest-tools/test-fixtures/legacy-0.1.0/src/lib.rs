//! Test fixture: a tool component built against the frozen 0.1.0 WIT in
//! `wit/` beside it, with raw bindings and no SDK, as a third party who
//! built before later interface versions would have. Newer hosts must keep
//! loading and running it.

wit_bindgen::generate!({
    path: "wit",
    world: "tool-component",
});

use exports::mcp_ssh::tools::tool::{CallError, CallResult, Content, Guest, ToolInfo};
use mcp_ssh::tools::ssh;
use mcp_ssh::tools::types::Target;

struct Legacy;

impl Guest for Legacy {
    fn list_tools() -> Vec<ToolInfo> {
        vec![ToolInfo {
            name: "legacy_hostname".into(),
            description: "Runs `hostname` over the operator's session (0.1.0 interface).".into(),
            input_schema: r#"{"type":"object","properties":{"host":{"type":"string"},"port":{"type":"integer"},"username":{"type":"string"}},"required":["host","port","username"]}"#.into(),
            output_schema: None,
            annotations: None,
        }]
    }

    fn call_tool(name: String, arguments: String) -> Result<CallResult, CallError> {
        if name != "legacy_hostname" {
            return Err(CallError::UnknownTool(name));
        }
        // A deliberately crude parser: this fixture has no serde.
        let field = |key: &str| -> Option<String> {
            let at = arguments.find(&format!("\"{key}\":"))? + key.len() + 3;
            let rest = arguments[at..].trim_start();
            let value: String = if let Some(s) = rest.strip_prefix('"') {
                s.chars().take_while(|&c| c != '"').collect()
            } else {
                rest.chars().take_while(|c| c.is_ascii_digit()).collect()
            };
            Some(value)
        };
        let (Some(host), Some(port), Some(user)) =
            (field("host"), field("port"), field("username"))
        else {
            return Err(CallError::InvalidArguments(
                "host, port and username".into(),
            ));
        };
        let target = Target {
            host,
            username: Some(user),
            port: port.parse().ok(),
            credentials: None,
        };
        let request = ssh::ExecRequest {
            command: "echo legacy-ok".into(),
            timeout_ms: None,
            max_output_bytes: None,
        };
        let (text, is_error) = match ssh::exec(&target, &request) {
            Ok(out) => (
                String::from_utf8_lossy(&out.stdout.head).into_owned(),
                false,
            ),
            Err(e) => (format!("{e:?}"), true),
        };
        Ok(CallResult {
            content: vec![Content::Text(text)],
            structured_content: None,
            is_error,
        })
    }
}

export!(Legacy);
