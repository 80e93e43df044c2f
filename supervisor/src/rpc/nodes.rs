//! Nodes: their pairing store (`node.pair.*`, `node.rename`), the live list
//! (`node.list`, `node.describe`), `node.invoke` and what nodes send back
//! (`node.invoke.result`, `node.event`).

use serde_json::{Value, json};
use switchboard_schemas::methods::{
    NodeDescribeParams, NodeEventParams, NodeInvokeParams, NodePairVerifyParams, NodeRenameParams,
    PairingRequestParams,
};

use super::{Call, Reply};
use crate::app::App;
use crate::auth::node_pairing::NodePairingError;
use crate::auth::pending::PendingError;
use crate::clock::now_ms;
use crate::events::hub::Broadcast;
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
    Ok(Reply::Json(node_list(&c.app)))
}

pub async fn describe(c: Call) -> Result<Reply, RpcError> {
    let p: NodeDescribeParams = c.parse()?;
    let all = node_list(&c.app);
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

pub async fn invoke_result(c: Call) -> Result<Reply, RpcError> {
    let node_id = c
        .conn
        .device_id
        .clone()
        .unwrap_or_else(|| c.conn.client_id.clone());
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

pub async fn event(c: Call) -> Result<Reply, RpcError> {
    let p: NodeEventParams = c.parse()?;
    tracing::debug!(node = %c.conn.client_id, event = %p.event, "node event");
    Ok(Reply::Json(json!({"ok": true})))
}

/// Live nodes, then paired node devices that are not connected.
fn node_list(app: &App) -> Value {
    let mut nodes: Vec<Value> = app
        .nodes
        .list()
        .iter()
        .map(|n| n.to_json(false, true))
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
        nodes.push(json!({
            "nodeId": id, "displayName": d["displayName"], "platform": d["platform"],
            "caps": [], "commands": [], "paired": true, "connected": false,
        }));
    }
    json!({"ts": now_ms(), "nodes": nodes})
}
