//! SDK for mcp-ssh-session tool components.
//!
//! Owns the guest side of the `mcp-ssh:tools` WIT world: the generated
//! bindings, a typed [`Tool`] trait whose JSON input schema is derived from
//! the argument struct, the argument types tools share ([`TargetArgs`],
//! [`CredentialArgs`]), typed helpers for the `files` interface ([`files`]),
//! and [`export_tools!`], which turns a list of tools
//! into the component's `tool` export. It re-exports serde and schemars, so
//! a tool crate depends on this crate alone:
//!
//! ```ignore
//! use mcp_ssh_guest::{Deserialize, JsonSchema, Output, SshError, TargetArgs, Tool, export_tools};
//!
//! #[derive(Deserialize, JsonSchema)]
//! #[serde(crate = "mcp_ssh_guest::serde", deny_unknown_fields)]
//! #[schemars(crate = "mcp_ssh_guest::schemars")]
//! struct Args {
//!     #[serde(flatten)]
//!     target: TargetArgs,
//! }
//!
//! struct Uptime;
//! impl Tool for Uptime {
//!     type Args = Args;
//!     const NAME: &'static str = "uptime";
//!     const DESCRIPTION: &'static str = "How long a host has been up.";
//!     fn call(a: Args) -> Result<Output, SshError> {
//!         let out = mcp_ssh_guest::ssh::exec_argv(&a.target.into(), /* .. */)?;
//!         Ok(Output::text(mcp_ssh_guest::stream_text(&out.stdout)))
//!     }
//! }
//!
//! export_tools!(Uptime);
//! ```

mod args;
pub mod files;
pub mod fit;

pub use args::{CredentialArgs, RunArgs, TargetArgs};

/// The generated bindings for the `tool-component` world.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "tool-component",
        pub_export_macro: true,
        default_bindings_module: "mcp_ssh_guest::bindings",
    });
}

pub use bindings::exports::mcp_ssh::tools::tool::{
    Annotations, CallError, CallResult, Content, ToolInfo,
};
pub use bindings::mcp_ssh::tools::jobs;
pub use bindings::mcp_ssh::tools::log;
pub use bindings::mcp_ssh::tools::progress;
pub use bindings::mcp_ssh::tools::ssh;
pub use bindings::mcp_ssh::tools::types::{self, Credentials, SshError, Target};
pub use schemars::{self, JsonSchema};
pub use serde::{self, Deserialize, Serialize, de::DeserializeOwned};
pub use serde_json::{self, Value, json};

/// One MCP tool. Its arguments arrive already validated against the schema
/// derived from [`Tool::Args`], so `call` only sees well-formed input.
pub trait Tool {
    /// The arguments, deserialized from the call's JSON object. Doc comments
    /// on its fields become the schema's descriptions.
    type Args: DeserializeOwned + JsonSchema;
    /// Unique across every component the host loads.
    const NAME: &'static str;
    const DESCRIPTION: &'static str;

    fn annotations() -> Option<Annotations> {
        None
    }

    /// The JSON Schema of [`Output::structured`], if the tool returns one.
    fn output_schema() -> Option<Value> {
        None
    }

    /// Runs the tool. An `Err` reaches the client as a tool error
    /// (`isError: true`) saying what kind of failure it was, so host calls
    /// can be chained with `?`.
    fn call(args: Self::Args) -> Result<Output, SshError>;
}

/// Arguments of a tool that takes none.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// What a tool returns: text for people (and models), optional structured
/// JSON for programs, and whether the tool failed.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub text: String,
    pub structured: Option<Value>,
    pub is_error: bool,
}

impl Output {
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }

    /// A tool that ran and failed: the client sees `isError: true`.
    pub fn error(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            is_error: true,
            ..Self::default()
        }
    }

    pub fn with_structured(mut self, value: Value) -> Self {
        self.structured = Some(value);
        self
    }
}

impl From<SshError> for Output {
    fn from(e: SshError) -> Self {
        Output::error(describe(&e))
    }
}

/// A readable sentence for an [`SshError`], prefixed with what kind it is.
pub fn describe(e: &SshError) -> String {
    let (what, msg) = match e {
        SshError::InvalidArgument(m) => ("Invalid argument", m),
        SshError::Connect(m) => ("Connection failed", m),
        SshError::Auth(m) => ("Authentication failed", m),
        SshError::HostKey(m) => ("Host key rejected", m),
        SshError::Timeout(m) => ("Timed out", m),
        SshError::Channel(m) => ("Channel error", m),
        SshError::ConnectionLost(m) => ("Connection lost", m),
        SshError::Denied(m) => ("Denied", m),
        SshError::Cancelled(m) => ("Cancelled", m),
        SshError::Other(m) => ("Error", m),
    };
    format!("{what}: {msg}")
}

impl Annotations {
    /// Hints for a tool that only reads: no side effects, safe to repeat,
    /// reaches nothing beyond the server.
    pub fn read_only(title: &str) -> Option<Self> {
        Some(Self {
            title: Some(title.into()),
            read_only: Some(true),
            destructive: Some(false),
            idempotent: Some(true),
            open_world: Some(false),
        })
    }

    /// Hints for a tool that changes something.
    pub fn changes(
        title: &str,
        destructive: bool,
        idempotent: bool,
        open_world: bool,
    ) -> Option<Self> {
        Some(Self {
            title: Some(title.into()),
            read_only: Some(false),
            destructive: Some(destructive),
            idempotent: Some(idempotent),
            open_world: Some(open_world),
        })
    }
}

impl Target {
    /// `username@host:port` with no credentials of its own: an open
    /// session, or the operator's agent and default keys, serve it.
    pub fn new(host: impl Into<String>, username: Option<String>, port: Option<u16>) -> Self {
        Self {
            host: host.into(),
            username,
            port,
            credentials: None,
        }
    }

    /// Adds the credentials a tool's caller gave, if any: a password, or a
    /// key file (with its passphrase).
    pub fn with_credentials(mut self, credentials: CredentialArgs) -> Self {
        self.credentials = credentials.into();
        self
    }
}

/// Seconds, as a tool argument gives them, to the host's milliseconds.
pub fn seconds_to_ms(seconds: Option<f64>) -> Option<u64> {
    seconds.map(|s| (s * 1000.0).round() as u64)
}

/// Decodes captured output for display: head, an omission notice, tail.
///
/// The host cuts truncated streams on UTF-8 boundaries, so valid UTF-8 stays
/// valid; anything else is replaced with U+FFFD rather than failing.
pub fn stream_text(s: &ssh::StreamOutput) -> String {
    render_stream(&s.head, &s.tail, s.truncated, s.total_bytes)
}

/// [`stream_text`], cut further in its middle so that it takes at most
/// `budget` bytes as a JSON string ([`fit`]); and whether it was.
pub fn stream_text_within(s: &ssh::StreamOutput, budget: usize) -> (String, bool) {
    let whole = s.head.len().saturating_add(s.tail.len());
    if whole.saturating_mul(6) <= budget {
        return (stream_text(s), false);
    }
    let (head, tail) = (fit::json_cost(&s.head), fit::json_cost(&s.tail));
    if head.saturating_add(tail) <= budget {
        return (stream_text(s), false);
    }
    // What one end does not need, the other may use.
    let half = budget / 2;
    let (for_head, for_tail) = match () {
        () if head <= half => (head, budget - head),
        () if tail <= half => (budget - tail, tail),
        () => (half, budget - half),
    };
    let head = &s.head[..fit::prefix_within(&s.head, for_head)];
    let tail = &s.tail[fit::suffix_within(&s.tail, for_tail)..];
    (render_stream(head, tail, true, s.total_bytes), true)
}

fn render_stream(head: &[u8], tail: &[u8], truncated: bool, total_bytes: u64) -> String {
    let kept = (head.len() + tail.len()) as u64;
    let head = decode_lossy(head);
    if !truncated {
        return head.into_owned();
    }
    let omitted = total_bytes.saturating_sub(kept);
    let notice = format!("\n[... {omitted} bytes omitted ...]\n");
    let tail = decode_lossy(tail);
    let mut text = String::with_capacity(head.len() + notice.len() + tail.len());
    text.push_str(&head);
    text.push_str(&notice);
    text.push_str(&tail);
    text
}

/// `String::from_utf8_lossy`, with valid UTF-8 (nearly all output) checked
/// a word at a time first: the lossy decoder walks every byte, which in a
/// component costs milliseconds per MiB of output.
pub fn decode_lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.into(),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Reports progress to the client (if it asked for progress). `progress`
/// must grow from report to report; the host drops reports that come too
/// fast.
pub fn report_progress(progress: f64, total: Option<f64>, message: Option<&str>) {
    progress::report(progress, total, message);
}

/// Logs into the host's log, tagged with this component.
pub fn log(level: log::Level, message: impl AsRef<str>) {
    log::log(level, message.as_ref());
}

fn schema_json<T: JsonSchema>() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
        // MCP clients differ in how well they follow $ref; inline everything.
        s.inline_subschemas = true;
    });
    let mut schema = settings
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value();
    plain_schema(&mut schema);
    schema
}

/// JSON Schema formats every validator and form renderer knows; schemars'
/// own (`uint16`, `double`, ...) are dropped, their bounds stay.
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "uuid",
    "regex",
];

/// The range of schemars' integer `format`s, in this component's own
/// widths (`usize` is 32 bits in wasm32).
fn integer_range(format: &str) -> Option<(Value, Value)> {
    Some(match format {
        "uint8" => (0.into(), u8::MAX.into()),
        "uint16" => (0.into(), u16::MAX.into()),
        "uint32" => (0.into(), u32::MAX.into()),
        "uint64" => (0.into(), u64::MAX.into()),
        "uint" => (0.into(), usize::MAX.into()),
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "int64" => (i64::MIN.into(), i64::MAX.into()),
        "int" => (isize::MIN.into(), isize::MAX.into()),
        _ => return None,
    })
}

/// Rewrites schemars' rendering of optional fields into what form-based
/// clients render: an optional field is one absent from `required`, with a
/// single `type` (no `["integer", "null"]`, no `anyOf` with `null`), no
/// `"default": null` and no non-standard `format`. Nested objects and
/// array items get the same.
pub fn plain_schema(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = obj.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if kept.len() == 1 {
            obj.insert("type".into(), kept[0].clone());
        }
    }
    if let Some(Value::Array(any)) = obj.get("anyOf") {
        let kept: Vec<Value> = any
            .iter()
            .filter(|s| s.get("type") != Some(&Value::from("null")))
            .cloned()
            .collect();
        if kept.len() == 1 && kept.len() < any.len() {
            obj.remove("anyOf");
            if let Some(Value::Object(only)) = kept.into_iter().next() {
                for (k, v) in only {
                    obj.entry(k).or_insert(v);
                }
            }
        }
    }
    if obj.get("default") == Some(&Value::Null) {
        obj.remove("default");
    }
    if let Some(Value::String(f)) = obj.get("format")
        && !STANDARD_FORMATS.contains(&f.as_str())
    {
        // The format carried the integer's range where schemars writes no
        // bound: without one, 2^64 would pass the schema and fail only in
        // the tool, with a message naming the value.
        if let Some((min, max)) = integer_range(f) {
            obj.entry("minimum").or_insert(min);
            obj.entry("maximum").or_insert(max);
        }
        obj.remove("format");
    }
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        props.values_mut().for_each(plain_schema);
    }
    if let Some(items) = obj.get_mut("items") {
        plain_schema(items);
    }
}

#[doc(hidden)]
pub fn __info<T: Tool>() -> ToolInfo {
    ToolInfo {
        name: T::NAME.to_string(),
        description: T::DESCRIPTION.to_string(),
        input_schema: schema_json::<T::Args>().to_string(),
        output_schema: T::output_schema().map(|v| v.to_string()),
        annotations: T::annotations(),
    }
}

#[doc(hidden)]
pub fn __call<T: Tool>(arguments: &str) -> Result<CallResult, CallError> {
    let args: T::Args = serde_json::from_str(arguments).map_err(|e| {
        CallError::InvalidArguments(format!("{}: {}", T::NAME, without_value(&e.to_string())))
    })?;
    let out = T::call(args).unwrap_or_else(Output::from);
    // A tool's structured result mostly repeats its text (a command's
    // output is in both): sized from it, a large result is written once
    // instead of through a dozen doublings of a small buffer.
    let structured = out.structured.map(|v| {
        // A little more than the text: field names, and its escapes.
        let mut json = Vec::with_capacity(out.text.len() + out.text.len() / 8 + 4096);
        match serde_json::to_writer(&mut json, &v).map(|()| String::from_utf8(json)) {
            Ok(Ok(text)) => text,
            // Neither fails for a Value; if one did, the plain path decides.
            _ => v.to_string(),
        }
    });
    Ok(CallResult {
        content: vec![Content::Text(out.text)],
        structured_content: structured,
        is_error: out.is_error,
    })
}

/// serde's message for arguments that passed the schema but do not fit
/// the tool's types, without the value it quotes (an argument may be a
/// secret): "invalid value: integer `70000`, expected u16 at line 1 column
/// 9" becomes "invalid value, expected u16 at line 1 column 9". The last
/// ", expected" is serde's own: a quoted string may hold another.
fn without_value(msg: &str) -> String {
    for kind in [
        "invalid type",
        "invalid value",
        "invalid length",
        "unknown variant",
    ] {
        let Some(rest) = msg.strip_prefix(kind) else {
            continue;
        };
        return match rest.rfind(", expected") {
            Some(at) => format!("{kind}{}", &rest[at..]),
            None => kind.to_string(),
        };
    }
    msg.to_string()
}

/// Exports the listed [`Tool`]s as this component's `tool` interface.
#[macro_export]
macro_rules! export_tools {
    ($($tool:ty),+ $(,)?) => {
        struct __McpSshTools;

        impl $crate::bindings::exports::mcp_ssh::tools::tool::Guest for __McpSshTools {
            fn list_tools() -> ::std::vec::Vec<$crate::ToolInfo> {
                ::std::vec![$($crate::__info::<$tool>()),+]
            }

            fn call_tool(
                name: ::std::string::String,
                arguments: ::std::string::String,
            ) -> ::std::result::Result<$crate::CallResult, $crate::CallError> {
                $(
                    if name == <$tool as $crate::Tool>::NAME {
                        return $crate::__call::<$tool>(&arguments);
                    }
                )+
                ::std::result::Result::Err($crate::CallError::UnknownTool(name))
            }
        }

        $crate::bindings::export!(__McpSshTools with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_lose_the_value_they_quote() {
        let cases = [
            (
                "invalid value: integer `70000`, expected u16 at line 1 column 9",
                "invalid value, expected u16 at line 1 column 9",
            ),
            (
                "invalid type: string \"s3cr3t, expected x\", expected u64",
                "invalid type, expected u64",
            ),
            (
                "unknown variant `s3cr3t`, expected one of `a`, `b`",
                "unknown variant, expected one of `a`, `b`",
            ),
            ("invalid length 3, expected 2", "invalid length, expected 2"),
            ("invalid value: s3cr3t", "invalid value"),
            ("missing field `command`", "missing field `command`"),
        ];
        for (serde, ours) in cases {
            assert_eq!(without_value(serde), ours);
        }
    }

    #[test]
    fn integer_formats_keep_their_range() {
        #[derive(serde::Deserialize, JsonSchema)]
        #[allow(dead_code)]
        struct Args {
            big: Option<u64>,
            signed: i64,
            small: u16,
        }
        let schema = schema_json::<Args>();
        let props = &schema["properties"];
        assert_eq!(props["big"]["maximum"], u64::MAX, "{schema}");
        assert_eq!(props["big"]["minimum"], 0, "{schema}");
        assert_eq!(props["signed"]["minimum"], i64::MIN, "{schema}");
        assert_eq!(props["small"]["maximum"], 65535, "{schema}");
        assert!(!schema.to_string().contains("format"), "{schema}");
    }
}
