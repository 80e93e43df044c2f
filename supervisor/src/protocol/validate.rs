//! JSON Schema validation of inbound frames, compiled once at start-up from
//! [`switchboard_schemas::catalog`], with error messages in each protocol generation's
//! wording (v3: AJV's, v4: TypeBox's), ordered as the reference gateways order them.

use std::collections::HashMap;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::ProtocolVersion;

/// Every compiled schema, by catalog name (`connect-params.v4`, `params/health`, …).
pub struct Validators {
    by_name: HashMap<String, Compiled>,
}

struct Compiled {
    schema: Value,
    validator: jsonschema::Validator,
}

#[derive(Debug, thiserror::Error)]
#[error("schema {name} does not compile: {message}")]
pub struct SchemaError {
    name: String,
    message: String,
}

/// A message lists at most this many errors (then says there are more).
pub const MAX_ERRORS_REPORTED: usize = 20;
/// At most this many schema errors are looked at per frame.
const MAX_ERRORS_SCANNED: usize = 100;
/// Of one error with many parts (unexpected properties), at most this many are described.
const MAX_PARTS_PER_ERROR: usize = MAX_ERRORS_REPORTED + 1;

/// How many errors a message lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    All,
    First,
}

impl Validators {
    pub fn build() -> Result<Validators, SchemaError> {
        let mut by_name = HashMap::new();
        for entry in switchboard_schemas::catalog() {
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&entry.schema)
                .map_err(|e| SchemaError {
                    name: entry.name.clone(),
                    message: e.to_string(),
                })?;
            by_name.insert(
                entry.name,
                Compiled {
                    schema: entry.schema,
                    validator,
                },
            );
        }
        Ok(Validators { by_name })
    }

    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Validates `instance` against schema `name`; on failure, the message the reference
    /// would give after its prefix (e.g. `at /client/id: must be equal to …`).
    ///
    /// An unknown schema name is a bug in the method table; it fails closed.
    pub fn check(
        &self,
        name: &str,
        version: ProtocolVersion,
        report: Report,
        instance: &Value,
    ) -> Result<(), String> {
        let Some(compiled) = self.by_name.get(name) else {
            tracing::error!(schema = name, "no such schema");
            return Err("unknown validation error".into());
        };
        if compiled.validator.is_valid(instance) {
            return Ok(());
        }
        // Bounded: a frame with a hundred thousand bad keys costs one pass over it and a
        // short message, never a quadratic dedupe or a megabyte of error text.
        let mut found: Vec<Found> = compiled
            .validator
            .iter_errors(instance)
            .take(MAX_ERRORS_SCANNED)
            .map(|e| {
                let path = e.instance_path().as_str().to_owned();
                Found {
                    rank: rank(&compiled.schema, &path, e.kind()),
                    parts: describe(&path, e.kind(), &e.to_string(), version),
                }
            })
            .collect();
        found.sort_by(|a, b| a.rank.cmp(&b.rank));
        let mut parts: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut more = 0usize;
        'all: for f in &found {
            for part in &f.parts {
                if parts.len() >= MAX_ERRORS_REPORTED {
                    more += 1;
                    if more > 1000 {
                        break 'all;
                    }
                    continue;
                }
                if seen.insert(part.as_str()) {
                    parts.push(part.clone());
                }
            }
            if report == Report::First && !parts.is_empty() {
                break;
            }
        }
        if parts.is_empty() {
            parts.push("unknown validation error".into());
        }
        let mut message = parts.join("; ");
        if more > 0 {
            message.push_str("; … and more errors not shown");
        }
        Err(message)
    }
}

struct Found {
    rank: Vec<usize>,
    parts: Vec<String>,
}

/// Sort key mimicking AJV's traversal: an object's own errors (`type`, then `required`,
/// then `additionalProperties`) come before its properties' errors, and properties come
/// in the schema's declaration order.
fn rank(schema: &Value, path: &str, kind: &ValidationErrorKind) -> Vec<usize> {
    let mut key = Vec::new();
    let mut node = schema;
    for seg in path.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let idx = match node.get("properties").and_then(Value::as_object) {
            Some(props) => match props.keys().position(|k| *k == seg) {
                Some(i) => {
                    node = &props[&seg];
                    i
                }
                None => props.len(),
            },
            None => {
                if let Some(items) = node.get("items") {
                    node = items;
                }
                seg.parse().unwrap_or(usize::MAX / 2)
            }
        };
        // Own errors of a node sort before its children: children get +4 offset slots.
        key.push(4 + idx);
    }
    key.push(match kind {
        ValidationErrorKind::Type { .. } => 0,
        ValidationErrorKind::Required { .. } => 1,
        ValidationErrorKind::AdditionalProperties { .. } => 2,
        _ => 3,
    });
    key
}

fn describe(
    path: &str,
    kind: &ValidationErrorKind,
    fallback: &str,
    version: ProtocolVersion,
) -> Vec<String> {
    let at = |msg: String| {
        if path.is_empty() {
            msg
        } else {
            format!("at {path}: {msg}")
        }
    };
    let not = match version {
        ProtocolVersion::V3 => "NOT",
        ProtocolVersion::V4 => "not",
    };
    match kind {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let place = if path.is_empty() {
                "at root".to_owned()
            } else {
                format!("at {path}")
            };
            unexpected
                .iter()
                .take(MAX_PARTS_PER_ERROR)
                .map(|p| format!("{place}: unexpected property '{p}'"))
                .collect()
        }
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| property.to_string());
            vec![at(format!("must have required property '{name}'"))]
        }
        ValidationErrorKind::Type { kind } => {
            let types = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            };
            vec![at(format!("must be {types}"))]
        }
        // The v3 reference models enums as unions of literals, which AJV reports twice.
        ValidationErrorKind::Enum { .. } => match version {
            ProtocolVersion::V3 => vec![
                at("must be equal to constant".into()),
                at("must match a schema in anyOf".into()),
            ],
            ProtocolVersion::V4 => vec![at("must be equal to one of the allowed values".into())],
        },
        ValidationErrorKind::Constant { .. } => vec![at("must be equal to constant".into())],
        ValidationErrorKind::MinLength { limit } => {
            vec![at(format!("must {not} have fewer than {limit} characters"))]
        }
        ValidationErrorKind::MaxLength { limit } => {
            vec![at(format!("must {not} have more than {limit} characters"))]
        }
        ValidationErrorKind::MinItems { limit } => {
            vec![at(format!("must {not} have fewer than {limit} items"))]
        }
        ValidationErrorKind::MaxItems { limit } => {
            vec![at(format!("must {not} have more than {limit} items"))]
        }
        ValidationErrorKind::Minimum { limit } => vec![at(format!("must be >= {limit}"))],
        ValidationErrorKind::Maximum { limit } => vec![at(format!("must be <= {limit}"))],
        ValidationErrorKind::ExclusiveMinimum { limit } => vec![at(format!("must be > {limit}"))],
        ValidationErrorKind::ExclusiveMaximum { limit } => vec![at(format!("must be < {limit}"))],
        ValidationErrorKind::Pattern { pattern } => {
            vec![at(format!("must match pattern \"{pattern}\""))]
        }
        ValidationErrorKind::AnyOf { .. } => vec![at("must match a schema in anyOf".into())],
        ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. } => {
            vec![at("must match exactly one schema in oneOf".into())]
        }
        _ => vec![at(fallback.to_owned())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v() -> Validators {
        Validators::build().expect("catalog compiles")
    }

    #[test]
    fn connect_errors_read_like_the_v3_reference() {
        let err = v()
            .check(
                "connect-params.v3",
                ProtocolVersion::V3,
                Report::All,
                &json!({"minProtocol":3,"maxProtocol":"x","client":{"id":"openclaw-macos","version":"","platform":"linux","mode":"zz"},"auth":{"token":5}}),
            )
            .unwrap_err();
        assert_eq!(
            err,
            "at /maxProtocol: must be integer; at /client/id: must be equal to constant; \
             at /client/id: must match a schema in anyOf; at /client/version: must NOT have fewer than 1 characters; \
             at /client/mode: must be equal to constant; at /client/mode: must match a schema in anyOf; \
             at /auth/token: must be string"
        );
    }

    #[test]
    fn connect_errors_read_like_the_v4_reference() {
        let err = v()
            .check(
                "connect-params.v4",
                ProtocolVersion::V4,
                Report::All,
                &json!({"minProtocol":4,"maxProtocol":"x","client":{"id":"clawdbot-macos","version":"","platform":"linux","mode":"zz"},"auth":{"token":5}}),
            )
            .unwrap_err();
        assert_eq!(
            err,
            "at /maxProtocol: must be integer; at /client/id: must be equal to one of the allowed values; \
             at /client/version: must not have fewer than 1 characters; \
             at /client/mode: must be equal to one of the allowed values; at /auth/token: must be string"
        );
    }

    #[test]
    fn missing_and_unexpected_fields_come_first_then_nested() {
        let err = v()
            .check(
                "connect-params.v3",
                ProtocolVersion::V3,
                Report::All,
                &json!({"minProtocol":3}),
            )
            .unwrap_err();
        assert_eq!(
            err,
            "must have required property 'maxProtocol'; must have required property 'client'"
        );
        let err = v()
            .check(
                "connect-params.v3",
                ProtocolVersion::V3,
                Report::All,
                &json!({"minProtocol":3,"maxProtocol":3,"client":{"id":"test","version":"1.0","platform":"linux","mode":"test","zz":1},"auth":{"token":"t"},"extra":2}),
            )
            .unwrap_err();
        assert_eq!(
            err,
            "at root: unexpected property 'extra'; at /client: unexpected property 'zz'"
        );
    }
}
