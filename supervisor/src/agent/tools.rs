//! The tools a run's agent may call (`RunRequest.tools`), carried out here — the agent
//! worker is confined and touches none of the gateway's state; it asks (`tool_call`),
//! the supervisor acts and answers (`ToolResult`).
//!
//! * `canvas_write {path, content}`: a file in `<state dir>/canvas/` (`crate::canvas`).
//! * `canvas_a2ui_push {jsonl, node?}`: A2UI v0.8 messages to a node's canvas panel
//!   (`canvas.a2ui.pushJSONL` through `node.invoke`, as the reference's `canvas` tool).
//! * `canvas_a2ui_reset {node?}`: clears that panel (`canvas.a2ui.reset`).
//!
//! Every failure is an answer the model reads (`ok: false` and why), never a failed run.

use serde_json::{Value, json};
use switchboard_proto::v1::ToolSpec;

use crate::app::App;

/// What the tools are called.
pub const CANVAS_WRITE: &str = "canvas_write";
pub const A2UI_PUSH: &str = "canvas_a2ui_push";
pub const A2UI_RESET: &str = "canvas_a2ui_reset";

/// The A2UI v0.8 message kinds a JSONL line may be (exactly one per line).
const A2UI_KINDS: &[&str] = &[
    "beginRendering",
    "surfaceUpdate",
    "dataModelUpdate",
    "deleteSurface",
];
/// How long a node has to answer a canvas command.
const NODE_TIMEOUT_MS: u64 = 30_000;

/// The tools a run is offered: the canvas ones while the canvas is on.
pub fn offered(app: &App) -> Vec<ToolSpec> {
    if app.canvas.root().is_none() {
        return Vec::new();
    }
    let spec = |name: &str, description: &str, parameters: Value| ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters_json: parameters.to_string(),
    };
    vec![
        spec(
            CANVAS_WRITE,
            "Write a file of the canvas (HTML, CSS, JS, images as text) that node canvas panels and browsers show. \
             `path` is relative to the canvas folder (e.g. `index.html`, `app/chart.js`); the file is replaced whole.",
            json!({"type": "object", "additionalProperties": false, "required": ["path", "content"],
                "properties": {"path": {"type": "string", "maxLength": 512}, "content": {"type": "string"}}}),
        ),
        spec(
            A2UI_PUSH,
            "Render A2UI v0.8 on a connected node's canvas panel: one JSON message per line \
             (surfaceUpdate, dataModelUpdate, beginRendering, deleteSurface). `node` names the node \
             when several are connected.",
            json!({"type": "object", "additionalProperties": false, "required": ["jsonl"],
                "properties": {"jsonl": {"type": "string"}, "node": {"type": "string"}}}),
        ),
        spec(
            A2UI_RESET,
            "Clear the A2UI surfaces of a connected node's canvas panel.",
            json!({"type": "object", "additionalProperties": false,
                "properties": {"node": {"type": "string"}}}),
        ),
    ]
}

/// Carries out one call: `Ok(output)` or `Err(why)`, both for the model.
pub async fn call(app: &App, run_id: &str, name: &str, arguments: &str) -> Result<String, String> {
    let args: Value = serde_json::from_str(if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    })
    .map_err(|e| format!("the arguments are not a JSON object: {e}"))?;
    let text = |k: &str| args.get(k).and_then(Value::as_str);
    match name {
        CANVAS_WRITE => {
            let path = text("path").ok_or("`path` (a string) is required")?;
            let content = text("content").ok_or("`content` (a string) is required")?;
            let written = app
                .canvas
                .write(path, content.as_bytes())
                .map_err(|e| e.to_string())?;
            tracing::info!(run = %run_id, path = %written, bytes = content.len(), "canvas file written by the agent");
            Ok(format!(
                "wrote {written} ({} bytes); it is served at /__openclaw__/canvas/{written} (v4) and /__clawdbot__/canvas/{written} (v3)",
                content.len()
            ))
        }
        A2UI_PUSH => {
            let jsonl = text("jsonl").ok_or("`jsonl` (a string) is required")?;
            let count = check_a2ui(jsonl)?;
            let node = pick_node(app, text("node"), "canvas.a2ui.pushJSONL")?;
            invoke(
                app,
                run_id,
                &node,
                "canvas.a2ui.pushJSONL",
                Some(json!({"jsonl": jsonl})),
            )
            .await?;
            Ok(format!("pushed {count} A2UI messages to node {node}"))
        }
        A2UI_RESET => {
            let node = pick_node(app, text("node"), "canvas.a2ui.reset")?;
            invoke(app, run_id, &node, "canvas.a2ui.reset", None).await?;
            Ok(format!("reset the A2UI surfaces of node {node}"))
        }
        other => Err(format!("unknown tool {other:?}")),
    }
}

/// Each non-empty line one JSON object with exactly one A2UI v0.8 message key, as the
/// reference's CLI checks; how many there are.
fn check_a2ui(jsonl: &str) -> Result<usize, String> {
    let mut n = 0;
    for (i, line) in jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
        let keys: Vec<&String> = v
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        match keys.as_slice() {
            [k] if A2UI_KINDS.contains(&k.as_str()) => n += 1,
            [k] if k.as_str() == "createSurface" => {
                return Err(format!(
                    "line {}: A2UI v0.9 (createSurface) is not supported; use v0.8",
                    i + 1
                ));
            }
            _ => {
                return Err(format!(
                    "line {}: one of {} expected as the only key",
                    i + 1,
                    A2UI_KINDS.join(", ")
                ));
            }
        }
    }
    if n == 0 {
        return Err("`jsonl` has no A2UI message".into());
    }
    Ok(n)
}

/// The connected node to draw on: the one named (id or display name), or the only one
/// whose allowed commands include `command`.
fn pick_node(app: &App, named: Option<&str>, command: &str) -> Result<String, String> {
    let able: Vec<_> = app
        .nodes
        .list()
        .into_iter()
        .filter(|n| n.commands.iter().any(|c| c == command))
        .collect();
    if let Some(q) = named.map(str::trim).filter(|q| !q.is_empty()) {
        return able
            .iter()
            .find(|n| {
                n.node_id == q
                    || n.display_name
                        .as_deref()
                        .is_some_and(|d| d.eq_ignore_ascii_case(q))
            })
            .map(|n| n.node_id.clone())
            .ok_or_else(|| format!("no connected node {q:?} can run {command}"));
    }
    match able.as_slice() {
        [one] => Ok(one.node_id.clone()),
        [] => Err(format!(
            "no connected node can run {command} (a canvas panel: the iOS, Android or macOS app)"
        )),
        many => Err(format!(
            "several connected nodes can run {command} ({}); name one with `node`",
            many.iter()
                .map(|n| n.node_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

async fn invoke(
    app: &App,
    run_id: &str,
    node: &str,
    command: &str,
    params: Option<Value>,
) -> Result<Value, String> {
    let key = format!("{run_id}:{command}:{}", uuid::Uuid::new_v4().simple());
    app.nodes
        .invoke(
            &app.hub,
            switchboard_schemas::ProtocolVersion::V4,
            node,
            command,
            params.as_ref(),
            Some(NODE_TIMEOUT_MS),
            &key,
        )
        .await
        .map_err(|e| format!("node {node}: {}", e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a2ui_lines_are_checked_as_the_reference_checks_them() {
        assert_eq!(
            check_a2ui("{\"surfaceUpdate\":{}}\n\n{\"beginRendering\":{}}"),
            Ok(2)
        );
        assert!(check_a2ui("").unwrap_err().contains("no A2UI message"));
        assert!(
            check_a2ui("{\"createSurface\":{}}")
                .unwrap_err()
                .contains("v0.9")
        );
        assert!(
            check_a2ui("{\"surfaceUpdate\":{},\"x\":1}")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(check_a2ui("nope").unwrap_err().contains("not JSON"));
    }
}
