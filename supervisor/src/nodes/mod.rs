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
mod publish;

use crate::events::hub::{Broadcast, ConnHandle, Hub};
use crate::protocol::error::RpcError;

/// Default invoke timeout.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

pub use allowlist::{
    CommandPolicy, NodeFacts, Stage, allowlist, approval_needs_admin, is_admin_only,
    is_browser_profile_mutation, is_claude_run, is_private, platform_id,
};
pub use publish::{
    PublishRefusal, RunnerInventory, declared_tools, normalize_skills, parse_host_stats,
    parse_runner_inventory,
};

/// At most this many disconnected nodes are remembered (for `node.list`).
const MAX_DEPARTED: usize = 1024;

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
    /// The connect's `client.id` and `client.mode`.
    pub client_id: String,
    pub client_mode: String,
    /// v4, published by the node (see [`publish`]): its skills (normalized), its plugin
    /// tools as declared, its runner inventory and its latest host stats.
    pub skills: Vec<Value>,
    pub declared_tools: Vec<Value>,
    pub runner_inventory: Option<Value>,
    pub host_stats: Option<Value>,
    /// The protocol generation the node connected with: its command policy.
    pub generation: switchboard_schemas::ProtocolVersion,
}

/// A node that was connected, as it was when it left.
struct Departed {
    info: NodeInfo,
    at_ms: u64,
}

struct Live {
    info: NodeInfo,
    conn: Arc<ConnHandle>,
}

struct Pending {
    node_id: String,
    command: String,
    version: switchboard_schemas::ProtocolVersion,
    /// The node sent `node.invoke.progress` for it.
    progressed: bool,
    tx: oneshot::Sender<Result<Value, RpcError>>,
}

#[derive(Default)]
pub struct Nodes {
    live: Mutex<HashMap<String, Live>>,
    pending: Mutex<HashMap<String, Pending>>,
    departed: Mutex<HashMap<String, Departed>>,
    /// The config's `gateway.nodes` allow and deny lists.
    policy: CommandPolicy,
}

impl NodeInfo {
    /// The entry of `node.list` / `node.describe`; v4 callers also see what the node
    /// published, as the reference shows it.
    pub fn to_json(
        &self,
        version: switchboard_schemas::ProtocolVersion,
        paired: bool,
        connected: bool,
    ) -> Value {
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
        if version == switchboard_schemas::ProtocolVersion::V4 {
            v["clientId"] = json!(self.client_id);
            v["clientMode"] = json!(self.client_mode);
            // Switchboard hosts no agent sessions on nodes.
            v["sessionHost"] = json!(false);
            if let Some(stats) = &self.host_stats {
                v["hostStats"] = stats.clone();
            }
            if connected {
                v["nodePluginTools"] = json!(publish::effective_tools(
                    &self.declared_tools,
                    &self.commands
                ));
            }
        }
        if !connected {
            v.as_object_mut().map(|o| o.remove("connectedAtMs"));
            v["lastConnectedAtMs"] = json!(self.connected_at_ms);
        }
        v
    }
}

impl NodeInfo {
    fn facts(&self) -> NodeFacts<'_> {
        NodeFacts {
            generation: self.generation,
            platform: &self.platform,
            device_family: self.device_family.as_deref(),
            client_id: &self.client_id,
            client_mode: &self.client_mode,
            caps: &self.caps,
            declared: &self.declared,
        }
    }
}

impl Nodes {
    pub fn new(policy: CommandPolicy) -> Nodes {
        Nodes {
            policy,
            ..Nodes::default()
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn departed(&self) -> std::sync::MutexGuard<'_, HashMap<String, Departed>> {
        self.departed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A node that is not connected, as it was when it left (and when).
    pub fn departed_info(&self, node_id: &str) -> Option<(NodeInfo, u64)> {
        self.departed()
            .get(node_id)
            .map(|d| (d.info.clone(), d.at_ms))
    }

    /// Filters declared commands through the policy of the node's generation (v4: what a
    /// pairing request may name; approval and the invoke-time check come after).
    pub fn filter_commands(&self, info: &mut NodeInfo) {
        let mut declared: Vec<String> = Vec::new();
        for c in &info.commands {
            let c = c.trim();
            if !c.is_empty() && !is_private(c) && !declared.iter().any(|d| d == c) {
                declared.push(c.to_owned());
            }
        }
        let count = info.commands.len();
        info.declared = declared;
        let allowed = self.policy.allowed(&info.facts(), Stage::Pairing, &[]);
        info.declared.retain(|c| allowed.contains(c));
        info.declared.sort();
        info.commands = info.declared.clone();
        info.caps.sort();
        info.caps.dedup();
        if info.commands.len() < count {
            tracing::info!(node = %info.node_id, declared = count, allowed = info.commands.len(), "node commands filtered by the allow-list");
        }
    }

    /// A node connected (commands already filtered, and emptied while pending approval).
    pub fn register(&self, info: NodeInfo, conn: Arc<ConnHandle>) -> NodeInfo {
        self.departed().remove(&info.node_id);
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
        let Some(removed) = removed else {
            return;
        };
        {
            let mut departed = self.departed();
            if departed.len() >= MAX_DEPARTED
                && let Some(oldest) = departed
                    .iter()
                    .min_by_key(|(_, d)| d.at_ms)
                    .map(|(id, _)| id.clone())
            {
                departed.remove(&oldest);
            }
            departed.insert(
                node_id.to_owned(),
                Departed {
                    info: removed.info,
                    at_ms: crate::clock::now_ms(),
                },
            );
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
        let v4 = version == switchboard_schemas::ProtocolVersion::V4;
        if v4 && command.starts_with("system.execApprovals.") {
            return Err(RpcError::invalid_request(
                "node.invoke does not allow system.execApprovals.*; use exec.approvals.node.*",
            )
            .with_details(json!({"command": command})));
        }
        let (conn, info) = {
            let live = self.live();
            let Some(l) = live.get(node_id) else {
                let details = if v4 {
                    json!({"code": "NOT_CONNECTED", "nodeError": {"code": "NOT_CONNECTED", "message": "node not connected"}, "nodeCommandDispatched": false})
                } else {
                    json!({"code": "NOT_CONNECTED"})
                };
                return Err(RpcError::unavailable("node not connected").with_details(details));
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
        let facts = info.facts();
        let platform = facts.platform();
        let allowed = self.policy.allowed(&facts, Stage::Invoke, &info.commands);
        let reason = if !allowed.contains(command) {
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
                version,
                progressed: false,
                tx,
            },
        );
        let timeout = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        // v4, as the reference: a `system.run` carries a run id (the node's exec events
        // name it), and the node is told the timeout the gateway waits for.
        let mut params = params.cloned();
        if v4
            && command == "system.run"
            && let Some(Value::Object(p)) = params.as_mut()
            && !p.contains_key("runId")
        {
            p.insert("runId".into(), json!(uuid::Uuid::new_v4().to_string()));
        }
        let mut payload = json!({
            "id": id, "nodeId": node_id, "command": command,
            "paramsJSON": params.map(|p| Value::from(p.to_string())).unwrap_or(Value::Null),
            "idempotencyKey": idempotency_key,
        });
        if v4 || timeout_ms.is_some() {
            payload["timeoutMs"] = json!(timeout);
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

    /// A node's `node.invoke.progress` for one of its running invokes. Returns whether a
    /// consumer took the chunk: as in the reference, only in-process stream consumers
    /// take chunks, and a WebSocket operator's `node.invoke` has none, so the chunk is
    /// acknowledged as ignored (the invoke is marked as having made progress, which turns a
    /// later `NODE_NOT_READY` into a failure).
    pub fn progress(&self, node_id: &str, invoke_id: &str) -> bool {
        if let Some(p) = self.pending().get_mut(invoke_id)
            && p.node_id == node_id
        {
            p.progressed = true;
        }
        false
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
        } else if w.version == switchboard_schemas::ProtocolVersion::V4 {
            // The reference's wording: "CODE: message", and what the node said.
            let mut node_error = p.get("error").cloned().unwrap_or(Value::Null);
            if w.progressed && node_error["code"] == "NODE_NOT_READY" {
                node_error = json!({"code": "UNAVAILABLE", "message": "node reported not-ready after invocation progress"});
            }
            let text = |k: &str| {
                node_error[k]
                    .as_str()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
            };
            let message = text("message").unwrap_or("node invoke failed");
            let message = match text("code") {
                Some(code) => format!("{code}: {message}"),
                None => message.to_owned(),
            };
            Err(RpcError::unavailable(message)
                .with_details(json!({"nodeError": node_error, "nodeCommandDispatched": true})))
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
