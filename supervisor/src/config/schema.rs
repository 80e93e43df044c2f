//! The config file's JSON Schema, as `config.schema` answers it: derived from the file's
//! own types (`file.rs`, `schemars`), so it can never drift from what `config validate`
//! accepts, then put in the plain form both Control UIs' config forms can edit.
//!
//! Those forms (OpenClaw's and, stricter, Clawdbot's) render a schema only when every
//! field is a plain one: no `$ref` (definitions are inlined here), a `type` on every leaf
//! (a free-form value becomes an object of anything), no `additionalProperties: true`
//! (becomes `{}`: keys the form does not know are kept, not edited), and an `anyOf` only
//! of one real variant plus `null`, of literals, or of primitive types. A schema that
//! breaks one rule makes the Clawdbot form say "Form view can't safely edit some
//! fields"; the unit test below applies its rules to this schema.

use serde_json::{Map, Value, json};

/// Deeper than any real config nesting; a recursive type stops here as a free-form object.
const MAX_DEPTH: usize = 24;

/// The file's schema, form-ready, with each provider's `channels.<id>` section.
pub fn file_schema() -> Value {
    let raw =
        serde_json::to_value(schemars::schema_for!(super::file::FileConfig)).unwrap_or(Value::Null);
    let defs = raw
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut schema = plain(&raw, &defs, 0);
    if let Some(o) = schema.as_object_mut() {
        o.remove("$defs");
        o.insert(
            "$schema".into(),
            json!("http://json-schema.org/draft-07/schema#"),
        );
    }
    // Every provider's `channels.<id>` section: the routing keys all channels share
    // (`config::channel`); its own credentials keys are the provider's and kept as they
    // are by the form.
    let ids = json!({"type": "array", "items": {"type": ["string", "integer"]}});
    let section = json!({
        "type": "object",
        "properties": {
            "enabled": {"type": "boolean"},
            "dmPolicy": {"type": "string", "enum": ["pairing", "allowlist", "open", "disabled"]},
            "allowFrom": ids,
            "groupPolicy": {"type": "string", "enum": ["open", "allowlist", "disabled"]},
            "groupAllowFrom": ids,
            "groups": {"type": "object", "additionalProperties": {
                "type": "object", "properties": {"requireMention": {"type": "boolean"}}}},
        },
        "additionalProperties": {},
    });
    let channels: Map<String, Value> = crate::channels::providers::ALL
        .iter()
        .map(|p| (p.id.to_owned(), section.clone()))
        .collect();
    schema["properties"]["channels"] =
        json!({"type": "object", "properties": channels, "additionalProperties": false});
    schema
}

/// The paths whose values are secrets (the UIs mask them): the form's `uiHints`.
pub fn ui_hints() -> Value {
    let hints: Map<String, Value> = [
        "gateway.auth.token",
        "gateway.auth.password",
        "agent.apiKey",
    ]
    .iter()
    .map(|p| ((*p).to_owned(), json!({"sensitive": true})))
    .collect();
    Value::Object(hints)
}

fn free_form() -> Value {
    json!({"type": "object", "additionalProperties": {}})
}

/// `schema` with its references inlined and every construct the forms cannot render
/// replaced by one they can.
fn plain(schema: &Value, defs: &Map<String, Value>, depth: usize) -> Value {
    let Some(o) = schema.as_object() else {
        // `true` (anything) or `false`.
        return if schema == &Value::Bool(false) {
            json!({"not": {}})
        } else {
            free_form()
        };
    };
    if depth > MAX_DEPTH {
        return free_form();
    }
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or_default();
        let mut target = defs
            .get(name)
            .map_or_else(free_form, |d| plain(d, defs, depth + 1));
        // The reference's own annotations (a field's description) win.
        for (k, v) in o {
            if k != "$ref" {
                target[k] = v.clone();
            }
        }
        return target;
    }
    let mut out = Map::new();
    for (k, v) in o {
        match k.as_str() {
            "properties" => {
                let props: Map<String, Value> = v
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(name, s)| (name.clone(), plain(s, defs, depth + 1)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "additionalProperties" => {
                let ap = match v {
                    Value::Bool(true) => json!({}),
                    Value::Bool(false) => json!(false),
                    s if s.as_object().is_some_and(Map::is_empty) => json!({}),
                    s => plain(s, defs, depth + 1),
                };
                out.insert(k.clone(), ap);
            }
            "items" => {
                out.insert(k.clone(), plain(v, defs, depth + 1));
            }
            "anyOf" | "oneOf" => {
                let variants: Vec<Value> = v
                    .as_array()
                    .map(|a| a.iter().map(|s| plain(s, defs, depth + 1)).collect())
                    .unwrap_or_default();
                one_of(variants, &mut out);
            }
            "$defs" | "definitions" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if !out.contains_key("type")
        && !out.contains_key("enum")
        && !out.contains_key("anyOf")
        && !out.contains_key("const")
    {
        if out.contains_key("properties") || out.contains_key("additionalProperties") {
            out.insert("type".into(), json!("object"));
        } else {
            let mut any = free_form();
            for (k, v) in out {
                any[k] = v;
            }
            return any;
        }
    }
    Value::Object(out)
}

fn is_null(s: &Value) -> bool {
    s.get("type") == Some(&json!("null")) || s.get("const") == Some(&Value::Null)
}

fn literal(s: &Value) -> Option<Vec<Value>> {
    if let Some(c) = s.get("const") {
        return Some(vec![c.clone()]);
    }
    s.get("enum").and_then(Value::as_array).cloned()
}

const PRIMITIVES: [&str; 4] = ["string", "number", "integer", "boolean"];

/// An `anyOf` made plain: a nullable single variant, an `enum` of literals, a list of
/// primitive types, or (otherwise) a free-form value.
fn one_of(variants: Vec<Value>, out: &mut Map<String, Value>) {
    let nullable = variants.iter().any(is_null);
    let real: Vec<Value> = variants.into_iter().filter(|s| !is_null(s)).collect();
    let mut set = |schema: Value| {
        if let Value::Object(m) = schema {
            for (k, v) in m {
                out.entry(k).or_insert(v);
            }
        }
    };
    if real.len() == 1 {
        let mut only = real.into_iter().next().unwrap_or_default();
        if nullable {
            only["nullable"] = json!(true);
        }
        set(only);
    } else if let Some(values) = real
        .iter()
        .map(literal)
        .collect::<Option<Vec<_>>>()
        .map(|v| v.concat())
    {
        set(json!({"type": "string", "enum": values, "nullable": nullable}));
    } else if real.iter().all(|s| {
        s.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| PRIMITIVES.contains(&t))
    }) {
        let types: Vec<Value> = real.iter().filter_map(|s| s.get("type").cloned()).collect();
        set(json!({"type": types, "nullable": nullable}));
    } else {
        set(free_form());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Clawdbot 2026.1 Control UI's form analysis (its `dist/control-ui` bundle),
    /// restated: the paths it would not edit.
    fn unsupported(schema: &Value, path: &str, out: &mut Vec<String>) {
        let here = if path.is_empty() { "<root>" } else { path };
        let Some(o) = schema.as_object() else {
            out.push(here.into());
            return;
        };
        if o.contains_key("$ref") || o.contains_key("allOf") {
            out.push(here.into());
            return;
        }
        if let Some(vs) = o.get("anyOf").or_else(|| o.get("oneOf")) {
            let real: Vec<&Value> = vs
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| !is_null(s))
                .collect();
            let literals = real.iter().all(|s| literal(s).is_some());
            let primitives = real.iter().all(|s| {
                s.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| PRIMITIVES.contains(&t))
            });
            if real.len() == 1 {
                unsupported(real[0], path, out);
            } else if !(literals || primitives) {
                out.push(here.into());
            }
            return;
        }
        let ty = match o.get("type") {
            Some(Value::String(t)) => Some(t.as_str()),
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
            _ if o.contains_key("properties") || o.contains_key("additionalProperties") => {
                Some("object")
            }
            _ => None,
        };
        let join = |k: &str| {
            if path.is_empty() {
                k.to_owned()
            } else {
                format!("{path}.{k}")
            }
        };
        match ty {
            Some("object") => {
                for (k, s) in o
                    .get("properties")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    unsupported(s, &join(k), out);
                }
                match o.get("additionalProperties") {
                    Some(Value::Bool(true)) => out.push(here.into()),
                    Some(ap @ Value::Object(m)) if !m.is_empty() => {
                        let mut inner = Vec::new();
                        unsupported(ap, &join("*"), &mut inner);
                        if !inner.is_empty() {
                            out.push(here.into());
                        }
                    }
                    _ => {}
                }
            }
            Some("array") => match o.get("items") {
                Some(items) => {
                    let mut inner = Vec::new();
                    unsupported(items, &join("*"), &mut inner);
                    if !inner.is_empty() {
                        out.push(here.into());
                    }
                }
                None => out.push(here.into()),
            },
            Some(t) if PRIMITIVES.contains(&t) => {}
            _ if o.contains_key("enum") => {}
            _ => out.push(here.into()),
        }
    }

    #[test]
    fn the_config_schema_is_one_both_control_ui_forms_can_edit() {
        let schema = file_schema();
        let mut bad = Vec::new();
        unsupported(&schema, "", &mut bad);
        assert_eq!(bad, Vec::<String>::new(), "{schema:#}");
        // It is the file's schema: its sections and a field deep inside one.
        for section in [
            "gateway", "logging", "agent", "channels", "workers", "cron", "agents",
        ] {
            assert!(schema["properties"][section].is_object(), "{section}");
        }
        assert_eq!(
            schema["properties"]["agent"]["properties"]["backend"]["enum"],
            json!(["echo", "openai"]),
            "{:#}",
            schema["properties"]["agent"]
        );
        for p in crate::channels::providers::ALL {
            assert!(
                schema["properties"]["channels"]["properties"][p.id].is_object(),
                "{}",
                p.id
            );
        }
    }

    #[test]
    fn the_checker_finds_what_the_form_cannot_edit() {
        let mut bad = Vec::new();
        let s = json!({"type": "object", "properties": {
            "a": {"$ref": "#/$defs/A"},
            "b": {"anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "string"}}]},
            "c": {"type": "object", "additionalProperties": true},
            "d": {},
            "ok": {"type": ["string", "null"]},
        }});
        unsupported(&s, "", &mut bad);
        assert_eq!(bad, ["a", "b", "c", "d"]);
    }
}
