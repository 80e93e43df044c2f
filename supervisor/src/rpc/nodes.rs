//! Nodes: their pairing store (`node.pair.*`, `node.rename`), the live list
//! (`node.list`, `node.describe`), `node.invoke` and what nodes send back
//! (`node.invoke.result`, `node.invoke.progress`, `node.event`) or publish about
//! themselves (v4: `node.skills.update`, `node.pluginTools.update`,
//! `node.runnerInventory.update`, the `node.host.stats` event).

use serde_json::{Value, json};
use switchboard_schemas::ProtocolVersion::V4;
use switchboard_schemas::methods::{
    NodeDescribeParams, NodeEventParams, NodeInvokeParams, NodeInvokeProgressParams,
    NodePairVerifyParams, NodePluginToolsUpdateParams, NodeRenameParams, NodeSkillsUpdateParams,
    PairingRequestParams,
};

use super::{Call, Reply};
use crate::app::App;
use crate::auth::access::{ADMIN, PAIRING, WRITE};
use crate::auth::node_pairing::NodePairingError;
use crate::auth::pending::PendingError;
use crate::clock::now_ms;
use crate::events::hub::Broadcast;
use crate::nodes::{self, PublishRefusal, RunnerInventory};
use crate::protocol::error::RpcError;
use crate::state::idempotency::Record;

pub async fn pair_request(c: Call) -> Result<Reply, RpcError> {
    let (request, created) = c
        .app
        .node_pairing
        .request(&c.params)
        .await
        .map_err(|e| match e {
            NodePairingError::Db(e) | NodePairingError::Pending(PendingError::Db(e)) => {
                RpcError::from(e)
            }
            other => RpcError::invalid_request(other.to_string()),
        })?;
    if created {
        c.app
            .hub
            .broadcast(&Broadcast::new("node.pair.requested", &request, None, true));
    }
    Ok(Reply::Json(
        json!({"status": "pending", "request": request, "created": created}),
    ))
}

pub async fn pair_list(c: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(c.app.node_pairing.list()))
}

pub async fn pair_approve(c: Call) -> Result<Reply, RpcError> {
    let p: PairingRequestParams = c.parse()?;
    // v4: host commands (`system.run*`, `system.execApprovals.*`, the admin-only ones)
    // are approved only by an admin, any other command by a writer (with pairing).
    if c.version() == V4
        && let Some(request) = c.app.node_pairing.pending_request(&p.request_id)
    {
        let commands: Vec<&str> = request["commands"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let needed = if commands.iter().any(|c| nodes::approval_needs_admin(c)) {
            Some(ADMIN)
        } else if !commands.is_empty() {
            Some(WRITE)
        } else {
            None
        };
        if let Some(scope) = needed
            && !c.conn.grant.has(V4, scope)
        {
            return Err(RpcError::missing_scope(V4, scope).with_details(json!({
                "code": "MISSING_SCOPE",
                "missingScope": scope,
                "requiredScopes": [PAIRING, scope],
            })));
        }
    }
    let Some(approved) = c.app.node_pairing.approve(&p.request_id).await? else {
        return Err(RpcError::invalid_request("unknown requestId"));
    };
    let ev = json!({"requestId": p.request_id, "nodeId": approved["node"]["nodeId"], "decision": "approved", "ts": now_ms()});
    let b = Broadcast::new("node.pair.resolved", &ev, None, true);
    c.app.hub.broadcast(&b);
    // v4: a connected node waiting on this request gets its commands now, and hears so.
    let commands: Vec<String> = approved["node"]["commands"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    if let Some(node_conn) = c.app.nodes.approve_commands(&p.request_id, &commands) {
        c.app.hub.send_event(&node_conn, &b);
    }
    Ok(Reply::Json(approved))
}

pub async fn pair_reject(c: Call) -> Result<Reply, RpcError> {
    let p: PairingRequestParams = c.parse()?;
    let Some(rejected) = c.app.node_pairing.reject(&p.request_id).await? else {
        return Err(RpcError::invalid_request("unknown requestId"));
    };
    let ev = json!({"requestId": p.request_id, "nodeId": rejected["nodeId"], "decision": "rejected", "ts": now_ms()});
    c.app
        .hub
        .broadcast(&Broadcast::new("node.pair.resolved", &ev, None, true));
    Ok(Reply::Json(rejected))
}

pub async fn pair_verify(c: Call) -> Result<Reply, RpcError> {
    let p: NodePairVerifyParams = c.parse()?;
    Ok(Reply::Json(c.app.node_pairing.verify(&p.node_id, &p.token)))
}

pub async fn rename(c: Call) -> Result<Reply, RpcError> {
    let p: NodeRenameParams = c.parse()?;
    let name = p.display_name.trim();
    if name.is_empty() {
        return Err(RpcError::invalid_request("displayName required"));
    }
    match c.app.node_pairing.rename(&p.node_id, name).await? {
        Some(v) => Ok(Reply::Json(v)),
        None => Err(RpcError::invalid_request("unknown nodeId")),
    }
}

pub async fn list(c: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(node_list(&c.app, c.version())))
}

pub async fn describe(c: Call) -> Result<Reply, RpcError> {
    let p: NodeDescribeParams = c.parse()?;
    let all = node_list(&c.app, c.version());
    let found = all["nodes"].as_array().and_then(|n| {
        n.iter()
            .find(|n| n["nodeId"] == p.node_id.as_str())
            .cloned()
    });
    let Some(mut node) = found else {
        return Err(RpcError::invalid_request("unknown nodeId"));
    };
    node["ts"] = json!(now_ms());
    Ok(Reply::Json(node))
}

/// `node.invoke`: forwarded to the node, deduplicated durably on its idempotency key.
pub async fn invoke(c: Call) -> Result<Reply, RpcError> {
    let p: NodeInvokeParams = c.parse()?;
    if c.version() == V4 {
        refuse_v4_invoke(&c, &p)?;
    }
    let app = &c.app;
    let key = format!("node.invoke:{}", p.idempotency_key);
    match app.idempotency.get(&key).await? {
        Some(Record::Final { ok, payload, error }) => {
            return Ok(Reply::Replay { ok, payload, error });
        }
        Some(Record::Accepted { .. }) => {
            let mut e =
                RpcError::unavailable("an invoke with this idempotencyKey is still in flight");
            e.retryable = Some(true);
            return Err(e);
        }
        None => {}
    }
    app.idempotency
        .claim(&key, "node.invoke", &Record::Accepted { ack: json!({}) })
        .await?;
    let result = app
        .nodes
        .invoke(
            &app.hub,
            c.conn.version,
            &p.node_id,
            &p.command,
            p.params.as_ref(),
            p.timeout_ms,
            &p.idempotency_key,
        )
        .await;
    let record = match &result {
        Ok(v) => Record::Final {
            ok: true,
            payload: v.clone(),
            error: None,
        },
        Err(e) => Record::Final {
            ok: false,
            payload: Value::Null,
            error: serde_json::to_value(e.to_shape()).ok(),
        },
    };
    if let Err(e) = app.idempotency.set(&key, &record).await {
        tracing::error!(error = %e, "recording a node invoke failed");
    }
    result.map(Reply::Json)
}

/// v4: what OpenClaw's `node.invoke` refuses before it looks at the node, in its order
/// and words.
fn refuse_v4_invoke(c: &Call, p: &NodeInvokeParams) -> Result<(), RpcError> {
    let command = p.command.trim();
    let details = json!({"command": command});
    if nodes::is_private(command) {
        return Err(
            RpcError::invalid_request("node.invoke does not allow private node controls")
                .with_details(details),
        );
    }
    if nodes::is_claude_run(command) {
        return Err(RpcError::invalid_request(
            "node.invoke does not allow Claude agent runs; use sessions.catalog.continue",
        )
        .with_details(details));
    }
    if nodes::is_browser_profile_mutation(command, p.params.as_ref()) {
        return Err(RpcError::invalid_request(format!(
            "node.invoke cannot mutate persistent browser profiles via {command}"
        ))
        .with_details(details));
    }
    // The reference asks for the literal scope here (no implications).
    if nodes::is_admin_only(command) && !c.conn.grant.scopes.iter().any(|s| s == ADMIN) {
        return Err(RpcError::missing_scope(V4, ADMIN));
    }
    Ok(())
}

/// The calling node's id: its device id, else its client id (as the reference).
fn caller_node_id(c: &Call) -> String {
    c.conn
        .device_id
        .clone()
        .unwrap_or_else(|| c.conn.client_id.clone())
}

pub async fn invoke_result(c: Call) -> Result<Reply, RpcError> {
    let node_id = caller_node_id(&c);
    if c.params["nodeId"] != node_id.as_str() {
        return Err(RpcError::invalid_request("nodeId mismatch"));
    }
    let matched = c.app.nodes.result(&node_id, &c.params);
    Ok(Reply::Json(if matched {
        json!({"ok": true})
    } else {
        json!({"ok": true, "ignored": true})
    }))
}

/// v4 `node.invoke.progress`: one ordered output chunk of a running invoke.
pub async fn invoke_progress(c: Call) -> Result<Reply, RpcError> {
    let p: NodeInvokeProgressParams = c.parse()?;
    let node_id = caller_node_id(&c);
    if p.node_id != node_id {
        return Err(RpcError::invalid_request("nodeId mismatch"));
    }
    if p.chunk.len() > 16 * 1024 {
        return Err(RpcError::invalid_request("progress chunk too large"));
    }
    let taken = c.app.nodes.progress(&node_id, &p.invoke_id);
    Ok(Reply::Json(json!({"ok": true, "ignored": !taken})))
}

/// `skills.bins`: the executables the gateway's skills need, which a node's exec policy
/// may trust (`autoAllowSkills`). Switchboard installs no skills, so none.
pub async fn skills_bins(_c: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"bins": []})))
}

/// v4 `node.skills.update`: the node's skill catalog, kept for the agent.
pub async fn skills_update(c: Call) -> Result<Reply, RpcError> {
    let p: NodeSkillsUpdateParams = c.parse()?;
    let node_id = caller_node_id(&c);
    let skills = crate::nodes::normalize_skills(&p.skills).map_err(RpcError::invalid_request)?;
    let Some(kept) = c.app.nodes.update_skills(&node_id, c.conn.id, skills) else {
        return Err(RpcError::invalid_request("unknown nodeId"));
    };
    tracing::debug!(node = %node_id, skills = kept.len(), "node skills updated");
    Ok(Reply::Json(json!({"nodeId": node_id, "skills": kept})))
}

/// v4 `node.pluginTools.update`: the node's plugin/MCP tools (shown as `nodePluginTools`).
pub async fn plugin_tools_update(c: Call) -> Result<Reply, RpcError> {
    let p: NodePluginToolsUpdateParams = c.parse()?;
    let node_id = caller_node_id(&c);
    let declared = crate::nodes::declared_tools(&p.tools);
    let Some(tools) = c
        .app
        .nodes
        .update_plugin_tools(&node_id, c.conn.id, declared)
    else {
        return Err(RpcError::invalid_request("unknown nodeId"));
    };
    Ok(Reply::Json(json!({"nodeId": node_id, "tools": tools})))
}

/// v4 `node.runnerInventory.update`: whether the node could host agent workers. Taken
/// once the node's commands are approved; until then the reference's retry answer.
pub async fn runner_inventory_update(c: Call) -> Result<Reply, RpcError> {
    let Some(inventory) = crate::nodes::parse_runner_inventory(&c.params) else {
        return Err(RpcError::invalid_request("invalid node runner inventory"));
    };
    // Only a node with a device identity owns a runner inventory.
    let Some(node_id) = c.conn.device_id.clone() else {
        return Err(RpcError::invalid_request("unknown nodeId"));
    };
    if inventory == RunnerInventory::Retired {
        return Err(RpcError::invalid_request(format!(
            "device worker node {node_id} requires an update before it can host sessions; \
             run openclaw update, then reconnect it (for a headless node, run openclaw node restart)"
        )));
    }
    let declared = c.params.clone();
    match c
        .app
        .nodes
        .update_runner_inventory(&node_id, c.conn.id, declared)
    {
        Ok(()) => {
            tracing::info!(node = %node_id, "node runner inventory recorded (no session hosting)");
            Ok(Reply::Json(json!({"nodeId": node_id})))
        }
        Err(PublishRefusal::UnknownNode) => Err(RpcError::invalid_request("unknown nodeId")),
        Err(PublishRefusal::AwaitingApproval(Some(request_id))) => {
            Err(RpcError::unavailable(format!(
                "node capability surface is awaiting operator approval; run `openclaw nodes approve {request_id}` \
                 (see `openclaw nodes pending`), then this node retries automatically"
            )))
        }
        Err(PublishRefusal::AwaitingApproval(None)) => Err(RpcError::unavailable(
            "node runner inventory publication is not current; retry after pairing completes",
        )),
    }
}

pub async fn event(c: Call) -> Result<Reply, RpcError> {
    let p: NodeEventParams = c.parse()?;
    tracing::debug!(node = %c.conn.client_id, event = %p.event, "node event");
    if c.version() == V4 && p.event == "node.host.stats" {
        return Ok(Reply::Json(host_stats_event(&c, &p)));
    }
    Ok(Reply::Json(json!({"ok": true})))
}

/// v4 `node.host.stats`: kept for `node.list` and broadcast to readers as
/// `node.hostStats`; answered with the reference's event result.
fn host_stats_event(c: &Call, p: &NodeEventParams) -> Value {
    let outcome = |handled: bool, reason: &str| json!({"ok": true, "event": p.event, "handled": handled, "reason": reason});
    let payload = match (&p.payload_json, &p.payload) {
        (Some(text), _) => serde_json::from_str::<Value>(text).ok(),
        (None, payload) => payload.clone(),
    };
    let Some(stats) = payload.as_ref().and_then(crate::nodes::parse_host_stats) else {
        return outcome(false, "invalid_payload");
    };
    let node_id = caller_node_id(c);
    let Some(stats) = c.app.nodes.update_host_stats(&node_id, c.conn.id, stats) else {
        return outcome(false, "stale_connection");
    };
    let ev = json!({"nodeId": node_id, "hostStats": stats});
    c.app
        .hub
        .broadcast(&Broadcast::new("node.hostStats", &ev, None, true).only_for(V4));
    outcome(true, "updated")
}

/// Live nodes, then paired node devices that are not connected (as they were when they
/// left, if they connected since the gateway started).
fn node_list(app: &App, version: switchboard_schemas::ProtocolVersion) -> Value {
    let mut nodes: Vec<Value> = app
        .nodes
        .list()
        .iter()
        .map(|n| n.to_json(version, false, true))
        .collect();
    let paired = app.devices.list();
    for d in paired["paired"].as_array().into_iter().flatten() {
        let is_node = d["roles"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r == "node"));
        if !is_node {
            continue;
        }
        let id = d["deviceId"].as_str().unwrap_or_default();
        if let Some(live) = nodes.iter_mut().find(|n| n["nodeId"] == id) {
            live["paired"] = json!(true);
            continue;
        }
        // v4 lists it as it was when it left (the reference keeps its approved surface);
        // the v3 reference lists a bare entry.
        let departed = (version == V4)
            .then(|| app.nodes.departed_info(id))
            .flatten();
        let node = match departed {
            Some((info, left_at_ms)) => {
                let mut n = info.to_json(version, true, false);
                n["lastDisconnectedAtMs"] = json!(left_at_ms);
                n
            }
            None => json!({
                "nodeId": id, "displayName": d["displayName"], "platform": d["platform"],
                "caps": [], "commands": [], "paired": true, "connected": false,
            }),
        };
        nodes.push(node);
    }
    json!({"ts": now_ms(), "nodes": nodes})
}
