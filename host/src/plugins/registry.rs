//! The tool registry: every tool the loaded components export, by name,
//! with its schema compiled for validation. It refuses tools that are
//! badly named, described in too many bytes or with schemas that are not
//! JSON objects, and names that two components both claim. Invalid
//! arguments are described by field, never by value.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::bail;
use serde_json::{Map, Value};

use super::bindings::tool;
use super::bounded;

/// Largest description plus schemas of one tool: every client receives
/// them with each tools/list.
const MAX_TOOL_INFO_BYTES: usize = 256 << 10;
/// Tools one component may export.
const MAX_TOOLS_PER_COMPONENT: usize = 256;

/// A tool as the registry knows it.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub input_schema: Map<String, Value>,
    pub output_schema: Option<Map<String, Value>>,
    pub annotations: Option<Annotations>,
    /// The component that exports it.
    pub component: Arc<str>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    pub title: Option<String>,
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    pub idempotent: Option<bool>,
    pub open_world: Option<bool>,
}

/// A call that did not produce a tool result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("unknown tool: {0}")]
    UnknownTool(String),
    #[error("invalid arguments for {tool}: {message}")]
    InvalidArguments { tool: String, message: String },
}

/// Why a component's tools were not added.
pub(crate) enum AddError {
    /// It is not a usable tool component: it is skipped.
    Rejected(anyhow::Error),
    /// One of its tool names is taken: ambiguous, so a startup error.
    Clash(anyhow::Error),
}

/// A registered tool and the component (by load index) that exports it.
pub(crate) struct Registered {
    pub(crate) spec: ToolSpec,
    validator: jsonschema::Validator,
    pub(crate) component: usize,
}

/// Every tool, in load order, and an index by name.
#[derive(Default)]
pub(crate) struct Registry {
    tools: Vec<Registered>,
    by_name: HashMap<String, usize>,
}

impl Registry {
    pub(crate) fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.iter().map(|t| &t.spec)
    }

    pub(crate) fn len(&self) -> usize {
        self.tools.len()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Registered> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// The tool `name`, if `arguments` are valid for it.
    pub(crate) fn validate(
        &self,
        name: &str,
        arguments: &mut Value,
    ) -> Result<&Registered, CallError> {
        let tool = self
            .get(name)
            .ok_or_else(|| CallError::UnknownTool(name.to_string()))?;
        coerce(&tool.spec.input_schema, arguments);
        match tool.validator.iter_errors(arguments).next() {
            None => Ok(tool),
            Some(err) => Err(CallError::InvalidArguments {
                tool: name.to_string(),
                message: describe_invalid(&err, &tool.spec.input_schema, arguments),
            }),
        }
    }

    /// Adds the tools `infos` of component `index`, named `component`, all
    /// or none. Returns their names.
    pub(crate) fn register(
        &mut self,
        component: &Arc<str>,
        index: usize,
        infos: Vec<tool::ToolInfo>,
    ) -> Result<Vec<String>, AddError> {
        if infos.len() > MAX_TOOLS_PER_COMPONENT {
            return Err(AddError::Rejected(anyhow::anyhow!(
                "{component}: exports {} tools, more than the limit of {MAX_TOOLS_PER_COMPONENT}",
                infos.len()
            )));
        }
        let specs = infos
            .into_iter()
            .map(|info| tool_spec(component, info))
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(AddError::Rejected)?;
        let mut seen = HashSet::new();
        for (spec, _) in &specs {
            let clash = match self.by_name.get(&spec.name) {
                Some(&other) => Some(self.tools[other].spec.component.to_string()),
                None if !seen.insert(spec.name.clone()) => Some(component.to_string()),
                None => None,
            };
            if let Some(other) = clash {
                return Err(AddError::Clash(anyhow::anyhow!(
                    "tool name clash: {:?} is exported by both {other} and {component}; remove one of them",
                    spec.name
                )));
            }
        }
        let names = specs.iter().map(|(s, _)| s.name.clone()).collect();
        for (spec, validator) in specs {
            self.by_name.insert(spec.name.clone(), self.tools.len());
            self.tools.push(Registered {
                spec,
                validator,
                component: index,
            });
        }
        Ok(names)
    }
}

/// Takes arguments the way clients send them: many (the MCP Inspector's
/// forms, models writing JSON) send numbers and booleans as strings. A
/// string for a top-level integer, number or boolean field is replaced by
/// its value when it is exactly one (`"2212"`, `"2.5"`, `"true"`); anything
/// else is left for validation to refuse, naming the field.
fn coerce(schema: &Map<String, Value>, arguments: &mut Value) {
    let (Some(props), Some(args)) = (
        schema.get("properties").and_then(Value::as_object),
        arguments.as_object_mut(),
    ) else {
        return;
    };
    // An explicit `null` for an optional field means "not given", as many
    // clients send it; the schema no longer lists `null` as a type.
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    args.retain(|field, value| !value.is_null() || required.contains(&field.as_str()));
    for (field, value) in args.iter_mut() {
        // JSON Schema counts `22.0` as an integer; serde does not.
        if let Value::Number(n) = value
            && n.is_f64()
            && props.get(field).and_then(|p| p.get("type")) == Some(&Value::from("integer"))
            && let Some(f) = n.as_f64()
            && f.fract() == 0.0
            && f.abs() < 9.0e15
        {
            *value = Value::from(f as i64);
            continue;
        }
        let Value::String(text) = value else { continue };
        let Some(prop) = props.get(field) else {
            continue;
        };
        let types: Vec<&str> = match prop.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => continue,
        };
        if types.contains(&"string") {
            continue;
        }
        let parsed = if types.contains(&"integer") {
            text.parse::<i64>()
                .map(Value::from)
                .or_else(|_| text.parse::<u64>().map(Value::from))
                .ok()
        } else {
            None
        };
        let parsed = parsed.or_else(|| {
            types
                .contains(&"number")
                .then(|| text.parse::<f64>().ok().filter(|f| f.is_finite()))
                .flatten()
                .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
        });
        let parsed = parsed.or_else(|| match (types.contains(&"boolean"), text.as_str()) {
            (true, "true") => Some(Value::Bool(true)),
            (true, "false") => Some(Value::Bool(false)),
            _ => None,
        });
        if let Some(v) = parsed {
            *value = v;
        }
    }
}

/// A schema violation in words that name the field but never quote its
/// value: the message travels through logs, and the value may be a password.
fn describe_invalid(
    err: &jsonschema::ValidationError<'_>,
    schema: &Map<String, Value>,
    arguments: &Value,
) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    let path = err.instance_path().to_string();
    let field = path.trim_start_matches('/');
    match err.kind() {
        // `additionalProperties: false` with no `properties` is reported
        // against the whole object: name the keys ourselves.
        Kind::FalseSchema if field.is_empty() => {
            let known = schema.get("properties").and_then(Value::as_object);
            let unexpected: Vec<&str> = arguments
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .filter(|k| !known.is_some_and(|p| p.contains_key(*k)))
                .map(String::as_str)
                .collect();
            format!("unexpected field(s): {}", unexpected.join(", "))
        }
        Kind::AdditionalProperties { unexpected } => {
            format!("unexpected field(s): {}", unexpected.join(", "))
        }
        Kind::Required { property } => {
            format!(
                "missing required field: {}",
                property.as_str().unwrap_or("?")
            )
        }
        Kind::FalseSchema if !field.is_empty() => format!("unexpected field: {field}"),
        _ if field.is_empty() => err.masked().to_string(),
        _ => format!("{field}: {}", err.masked_with("the value")),
    }
}

fn tool_spec(
    component: &Arc<str>,
    info: tool::ToolInfo,
) -> anyhow::Result<(ToolSpec, jsonschema::Validator)> {
    let name = info.name;
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid_name {
        bail!(
            "{component}: invalid tool name {:?} (1-64 of A-Z a-z 0-9 _ - .)",
            bounded::clip(&name, 64)
        );
    }
    let size = info.description.len()
        + info.input_schema.len()
        + info.output_schema.as_ref().map_or(0, String::len);
    if size > MAX_TOOL_INFO_BYTES {
        bail!(
            "{component}: tool {name} is described in {size} bytes, more than the {} KiB limit",
            MAX_TOOL_INFO_BYTES >> 10
        );
    }
    let object = |what: &str, text: &str| -> anyhow::Result<Map<String, Value>> {
        match serde_json::from_str(text) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => bail!("{component}: the {what} of tool {name} is not a JSON object"),
            Err(e) => bail!("{component}: the {what} of tool {name} is not JSON: {e}"),
        }
    };
    let input_schema = object("input schema", &info.input_schema)?;
    if input_schema.get("type").and_then(Value::as_str) != Some("object") {
        bail!("{component}: the input schema of tool {name} must have \"type\": \"object\"");
    }
    let validator =
        jsonschema::validator_for(&Value::Object(input_schema.clone())).map_err(|e| {
            anyhow::anyhow!("{component}: the input schema of tool {name} is invalid: {e}")
        })?;
    let output_schema = info
        .output_schema
        .map(|s| object("output schema", &s))
        .transpose()?;
    let annotations = info.annotations.map(|a| Annotations {
        title: a.title,
        read_only: a.read_only,
        destructive: a.destructive,
        idempotent: a.idempotent,
        open_world: a.open_world,
    });
    Ok((
        ToolSpec {
            name,
            description: info.description,
            input_schema,
            output_schema,
            annotations,
            component: component.clone(),
        },
        validator,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn first_error(schema: Value, instance: Value) -> String {
        let v = jsonschema::validator_for(&schema).unwrap();
        let err = v.iter_errors(&instance).next().expect("invalid");
        describe_invalid(&err, schema.as_object().unwrap(), &instance)
    }

    #[test]
    fn a_tool_described_in_megabytes_or_with_a_huge_name_is_refused_briefly() {
        let component: Arc<str> = "c.wasm".into();
        let info = |name: String, description: String| tool::ToolInfo {
            name,
            description,
            input_schema: r#"{"type":"object"}"#.into(),
            output_schema: None,
            annotations: None,
        };
        let err = tool_spec(&component, info("t".into(), "d".repeat(1 << 20)))
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than the 256 KiB limit"), "{err}");
        let err = tool_spec(&component, info("n".repeat(1 << 20), "d".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("invalid tool name") && err.len() < 300,
            "{err}"
        );
        assert!(tool_spec(&component, info("t".into(), "d".into())).is_ok());
    }

    #[test]
    fn invalid_argument_messages_name_the_field_and_hide_the_value() {
        let schema = json!({
            "type": "object",
            "properties": {"command": {"type": "string"}, "port": {"type": ["integer", "null"]}},
            "required": ["command"],
            "additionalProperties": false
        });
        let m = first_error(schema.clone(), json!({}));
        assert!(m.contains("missing") && m.contains("command"), "{m}");
        let m = first_error(
            schema.clone(),
            json!({"command": "x", "surprise": "s3cr3t"}),
        );
        assert!(m.contains("surprise") && !m.contains("s3cr3t"), "{m}");
        let m = first_error(schema, json!({"command": "x", "port": "s3cr3t"}));
        assert!(m.starts_with("port: ") && !m.contains("s3cr3t"), "{m}");
        let none = json!({"type": "object", "additionalProperties": false});
        let m = first_error(none, json!({"surprise": "s3cr3t"}));
        assert_eq!(m, "unexpected field(s): surprise");
    }
}
