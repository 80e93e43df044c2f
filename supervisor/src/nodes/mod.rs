//! Nodes: devices that lend commands (camera, screen, canvas, system.run…). A node
//! connects with `role:"node"` and declares `caps`, `commands`, `permissions`; operators
//! call `node.invoke`, which is forwarded to the node as a `node.invoke.request` event and
//! answered when the node sends `node.invoke.result` (or times out).
//!
//! A command is invocable only if the node declared it **and** the gateway's allow-list
//! for the node's platform permits it; declared commands are filtered at connect.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

mod allowlist;

use crate::events::hub::{Broadcast, ConnHandle, Hub};
use crate::protocol::error::RpcError;

/// Default invoke timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

pub use allowlist::{allowlist, platform_id};

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub display_name: Option<String>,
    pub platform: String,
    pub version: String,
    pub device_family: Option<String>,
    pub model_identifier: Option<String>,
    pub remote_ip: Option<String>,
    pub caps: Vec<String>,
    pub commands: Vec<String>,
    pub permissions: Option<Value>,
    pub path_env: Option<String>,
    pub connected_at_ms: u64,
    /// What the node declared (after the allow-list), before approval.
    pub declared: Vec<String>,
    /// v4: `pending-approval` until an operator approves the declared commands, then
    /// `approved`. v3 nodes have no approval step (`None`).
    pub approval_state: Option<String>,
    /// v4: the pending `node.pair` request for the declared commands.
    pub pending_request: Option<String>,
}

struct Live {
    info: NodeInfo,
    conn: Arc<ConnHandle>,
}

struct Pending {
    node_id: String,
    command: String,
    tx: oneshot::Sender<Result<Value, RpcError>>,
}

#[derive(Default)]
pub struct Nodes {
    live: Mutex<HashMap<String, Live>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl NodeInfo {
    pub fn to_json(&self, paired: bool, connected: bool) -> Value {
        let mut v = json!({
            "nodeId": self.node_id,
            "platform": self.platform,
            "version": self.version,
            "caps": self.caps,
            "commands": self.commands,
            "connectedAtMs": self.connected_at_ms,
            "paired": paired,
            "connected": connected,
        });
        for (k, val) in [
            ("displayName", self.display_name.clone().map(Value::from)),
            ("deviceFamily", self.device_family.clone().map(Value::from)),
            (
                "modelIdentifier",
                self.model_identifier.clone().map(Value::from),
            ),
            ("remoteIp", self.remote_ip.clone().map(Value::from)),
            ("permissions", self.permissions.clone()),
            ("pathEnv", self.path_env.clone().map(Value::from)),
            (
                "approvalState",
                self.approval_state.clone().map(Value::from),
            ),
        ] {
            if let Some(val) = val {
                v[k] = val;
            }
        }
        v
    }
}

impl Nodes {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Filters declared commands through the node platform's allow-list.
    pub fn filter_commands(info: &mut NodeInfo) {
        let allowed = allowlist(platform_id(&info.platform, info.device_family.as_deref()));
        let declared = info.commands.len();
        info.commands.retain(|c| allowed.contains(&c.trim()));
        info.commands.sort();
        info.commands.dedup();
        info.caps.sort();
        info.caps.dedup();
        if info.commands.len() < declared {
            tracing::info!(node = %info.node_id, declared, allowed = info.commands.len(), "node commands filtered by the allow-list");
        }
        info.declared = info.commands.clone();
    }

    /// A node connected (commands already filtered, and emptied while pending approval).
    pub fn register(&self, info: NodeInfo, conn: Arc<ConnHandle>) -> NodeInfo {
        self.live().insert(
            info.node_id.clone(),
            Live {
                info: info.clone(),
                conn,
            },
        );
        info
    }

    /// v4: the operator approved a node's commands; they are live at once. Returns the
    /// node's connection to tell it, if it is connected and was waiting on `request_id`.
    pub fn approve_commands(
        &self,
        request_id: &str,
        approved: &[String],
    ) -> Option<Arc<ConnHandle>> {
        let mut live = self.live();
        let l = live
            .values_mut()
            .find(|l| l.info.pending_request.as_deref() == Some(request_id))?;
        l.info.commands = l
            .info
            .declared
            .iter()
            .filter(|c| approved.contains(c))
            .cloned()
            .collect();
        l.info.approval_state = Some("approved".into());
        l.info.pending_request = None;
        Some(Arc::clone(&l.conn))
    }

    /// A node's connection closed: pending invokes fail at once.
    pub fn unregister(&self, node_id: &str, conn_id: u64) {
        let removed = {
            let mut live = self.live();
            match live.get(node_id) {
                Some(l) if l.conn.id == conn_id => live.remove(node_id),
                _ => None,
            }
        };
        if removed.is_none() {
            return;
        }
        let failed: Vec<Pending> = {
            let mut pending = self.pending();
            let ids: Vec<String> = pending
                .iter()
                .filter(|(_, p)| p.node_id == node_id)
                .map(|(id, _)| id.clone())
                .collect();
            ids.into_iter()
                .filter_map(|id| pending.remove(&id))
                .collect()
        };
        for p in failed {
            let _ = p.tx.send(Err(RpcError::unavailable(format!(
                "node disconnected ({})",
                p.command
            ))));
        }
    }

    pub fn list(&self) -> Vec<NodeInfo> {
        let mut v: Vec<NodeInfo> = self.live().values().map(|l| l.info.clone()).collect();
        v.sort_by(|a, b| {
            a.display_name
                .clone()
                .unwrap_or_else(|| a.node_id.clone())
                .to_lowercase()
                .cmp(
                    &b.display_name
                        .clone()
                        .unwrap_or_else(|| b.node_id.clone())
                        .to_lowercase(),
                )
        });
        v
    }

    pub fn get(&self, node_id: &str) -> Option<NodeInfo> {
        self.live().get(node_id).map(|l| l.info.clone())
    }

    /// Forwards a command to a node and waits for its result.
    #[allow(clippy::too_many_arguments)]
    pub async fn invoke(
        &self,
        hub: &Hub,
        version: switchboard_schemas::ProtocolVersion,
        node_id: &str,
        command: &str,
        params: Option<&Value>,
        timeout_ms: Option<u64>,
        idempotency_key: &str,
    ) -> Result<Value, RpcError> {
        let (conn, info) = {
            let live = self.live();
            let Some(l) = live.get(node_id) else {
                return Err(RpcError::unavailable("node not connected")
                    .with_details(json!({"code": "NOT_CONNECTED"})));
            };
            (Arc::clone(&l.conn), l.info.clone())
        };
        if info.approval_state.as_deref() == Some("pending-approval")
            && info.declared.iter().any(|c| c == command)
        {
            let mut e = RpcError::unavailable("node pairing changed while invocation was active")
                .with_details(json!({"code": "PAIRING_CHANGED"}));
            e.retryable = Some(true);
            return Err(e);
        }
        let platform = platform_id(&info.platform, info.device_family.as_deref());
        let allowed = allowlist(platform);
        let reason = if !allowed.contains(&command) {
            Some("command not allowlisted")
        } else if info.commands.is_empty() {
            Some("node did not declare commands")
        } else if !info.commands.iter().any(|c| c == command) {
            Some("command not declared by node")
        } else {
            None
        };
        if let Some(reason) = reason {
            let message = match (version, reason) {
                (switchboard_schemas::ProtocolVersion::V3, _) => {
                    "node command not allowed".to_owned()
                }
                (_, "command not allowlisted") => {
                    format!(
                        "node command not allowed: \"{command}\" is not in the allowlist for platform \"{platform}\""
                    )
                }
                (_, "node did not declare commands") => {
                    "node command not allowed: the node did not declare any supported commands"
                        .to_owned()
                }
                (_, other) => format!("node command not allowed: {other}"),
            };
            return Err(RpcError::invalid_request(message)
                .with_details(json!({"reason": reason, "command": command})));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.pending().insert(
            id.clone(),
            Pending {
                node_id: node_id.to_owned(),
                command: command.to_owned(),
                tx,
            },
        );
        let timeout = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        let mut payload = json!({
            "id": id, "nodeId": node_id, "command": command,
            "paramsJSON": params.map(|p| Value::from(p.to_string())).unwrap_or(Value::Null),
            "idempotencyKey": idempotency_key,
        });
        if let Some(t) = timeout_ms {
            payload["timeoutMs"] = json!(t);
        }
        hub.send_event(
            &conn,
            &Broadcast::new("node.invoke.request", &payload, None, false),
        );
        let result = tokio::time::timeout(Duration::from_millis(timeout), rx).await;
        self.pending().remove(&id);
        match result {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(RpcError::unavailable("node invoke failed")),
            Err(_) => Err(RpcError::unavailable("node invoke timed out").with_details(
                json!({"nodeError": {"code": "TIMEOUT", "message": "node invoke timed out"}}),
            )),
        }
    }

    /// A node's `node.invoke.result`. Returns whether it matched a waiting invoke.
    pub fn result(&self, node_id: &str, p: &Value) -> bool {
        let id = p["id"].as_str().unwrap_or_default();
        let pending = {
            let mut pending = self.pending();
            match pending.get(id) {
                Some(w) if w.node_id == node_id => pending.remove(id),
                _ => None,
            }
        };
        let Some(w) = pending else {
            return false;
        };
        let outcome = if p["ok"] == true {
            let payload = match p.get("payloadJSON").and_then(Value::as_str) {
                Some(s) => serde_json::from_str(s).unwrap_or(Value::Null),
                None => p.get("payload").cloned().unwrap_or(Value::Null),
            };
            Ok(json!({
                "ok": true, "nodeId": node_id, "command": w.command, "payload": payload,
                "payloadJSON": p.get("payloadJSON").cloned().unwrap_or(Value::Null),
            }))
        } else {
            let message = p["error"]["message"]
                .as_str()
                .unwrap_or("node invoke failed")
                .to_owned();
            Err(RpcError::unavailable(message)
                .with_details(json!({"nodeError": p.get("error").cloned().unwrap_or(Value::Null)})))
        };
        let _ = w.tx.send(outcome);
        true
    }
}
