//! The method table: every method Switchboard serves, the scope it needs, the schema its
//! params are validated against, and which protocol generations advertise it. The
//! connection loop consults this one table before any handler runs.

pub mod sessions;

use std::sync::Arc;

use serde_json::{Value, json};
use std::time::Duration;
use switchboard_schemas::ProtocolVersion::{self, V3, V4};

use switchboard_schemas::methods::{
    AgentParams, AgentWaitParams, ChannelsLogoutParams, ChatAbortParams, ChatAbortResult,
    ChatHistoryParams, ChatSendParams, DeviceTokenRevokeParams, DeviceTokenRotateParams,
    LogsTailParams, LogsTailResult, NodeDescribeParams, NodeEventParams, NodeInvokeParams,
    NodePairVerifyParams, NodeRenameParams, PairingCodeParams, PairingListParams,
    PairingRequestParams, PairingRevokeParams, SendParams, SessionsListParams, SystemEventParams,
    WebLoginStartParams, WebLoginWaitParams, WorkerControlParams, WorkerControlResult, WorkersList,
};

use crate::agent;
use crate::app::App;
use crate::auth::access::Access;
use crate::clock::now_ms;
use crate::events::hub::Broadcast;
use crate::events::hub::ConnHandle;
use crate::protocol::error::RpcError;
use crate::workers::Control;

pub struct MethodSpec {
    pub name: &'static str,
    pub access: Access,
    /// Catalog name of the params schema.
    pub params: &'static str,
    /// Generations whose `hello-ok.features.methods` lists it.
    pub advertised: &'static [ProtocolVersion],
}

const BOTH: &[ProtocolVersion] = &[V3, V4];
/// v4 answers `unknown method` for these.
const V3_ONLY: &[ProtocolVersion] = &[V3];
const NONE: &[ProtocolVersion] = &[];

pub const TABLE: &[MethodSpec] = &[
    MethodSpec {
        name: "health",
        access: Access::Health,
        params: "params/health",
        advertised: BOTH,
    },
    MethodSpec {
        name: "status",
        access: Access::Read,
        params: "params/status",
        advertised: BOTH,
    },
    MethodSpec {
        name: "system-presence",
        access: Access::Read,
        params: "params/system-presence",
        advertised: BOTH,
    },
    MethodSpec {
        name: "last-heartbeat",
        access: Access::Read,
        params: "params/last-heartbeat",
        advertised: BOTH,
    },
    MethodSpec {
        name: "system-event",
        access: Access::Admin,
        params: "params/system-event",
        advertised: BOTH,
    },
    MethodSpec {
        name: "sessions.list",
        access: Access::Read,
        params: "params/sessions.list",
        advertised: BOTH,
    },
    MethodSpec {
        name: "logs.tail",
        access: Access::Read,
        params: "params/logs.tail",
        advertised: BOTH,
    },
    MethodSpec {
        name: "chat.history",
        access: Access::Read,
        params: "params/chat.history",
        advertised: BOTH,
    },
    MethodSpec {
        name: "channels.status",
        access: Access::Read,
        params: "params/channels.status",
        advertised: BOTH,
    },
    MethodSpec {
        name: "models.list",
        access: Access::Read,
        params: "params/models.list",
        advertised: BOTH,
    },
    MethodSpec {
        name: "device.pair.list",
        access: Access::Pairing,
        params: "params/device.pair.list",
        advertised: BOTH,
    },
    MethodSpec {
        name: "device.pair.approve",
        access: Access::Pairing,
        params: "params/device.pair.request-id",
        advertised: BOTH,
    },
    MethodSpec {
        name: "device.pair.reject",
        access: Access::Pairing,
        params: "params/device.pair.request-id",
        advertised: BOTH,
    },
    MethodSpec {
        name: "device.token.rotate",
        access: Access::Pairing,
        params: "params/device.token.rotate",
        advertised: BOTH,
    },
    MethodSpec {
        name: "device.token.revoke",
        access: Access::Pairing,
        params: "params/device.token.revoke",
        advertised: BOTH,
    },
    MethodSpec {
        name: "node.pair.request",
        access: Access::Pairing,
        params: "params/node.pair.request",
        advertised: V3_ONLY,
    },
    MethodSpec {
        name: "node.pair.list",
        access: Access::Pairing,
        params: "params/device.pair.list",
        advertised: BOTH,
    },
    MethodSpec {
        name: "node.pair.approve",
        access: Access::Pairing,
        params: "params/device.pair.request-id",
        advertised: BOTH,
    },
    MethodSpec {
        name: "node.pair.reject",
        access: Access::Pairing,
        params: "params/device.pair.request-id",
        advertised: BOTH,
    },
    MethodSpec {
        name: "node.pair.verify",
        access: Access::Pairing,
        params: "params/node.pair.verify",
        advertised: V3_ONLY,
    },
    MethodSpec {
        name: "node.rename",
        access: Access::Pairing,
        params: "params/node.rename",
        advertised: BOTH,
    },
    MethodSpec {
        name: "node.list",
        access: Access::Read,
        params: "params/node.list",
        advertised: BOTH,
    },
    MethodSpec {
        name: "node.describe",
        access: Access::Read,
        params: "params/node.describe",
        advertised: BOTH,
    },
    MethodSpec {
        name: "node.invoke",
        access: Access::Write,
        params: "params/node.invoke",
        advertised: BOTH,
    },
    MethodSpec {
        name: "node.invoke.result",
        access: Access::NodeOnly,
        params: "params/node.invoke.result",
        advertised: BOTH,
    },
    MethodSpec {
        name: "node.event",
        access: Access::NodeOnly,
        params: "params/node.event",
        advertised: BOTH,
    },
    MethodSpec {
        name: "send",
        access: Access::Write,
        params: "params/send",
        advertised: BOTH,
    },
    MethodSpec {
        name: "web.login.start",
        access: Access::Admin,
        params: "params/web.login.start",
        advertised: BOTH,
    },
    MethodSpec {
        name: "web.login.wait",
        access: Access::Admin,
        params: "params/web.login.wait",
        advertised: BOTH,
    },
    MethodSpec {
        name: "channels.logout",
        access: Access::Admin,
        params: "params/channels.logout",
        advertised: BOTH,
    },
    MethodSpec {
        name: "pairing.list",
        access: Access::Pairing,
        params: "params/pairing.list",
        advertised: BOTH,
    },
    MethodSpec {
        name: "pairing.approve",
        access: Access::Pairing,
        params: "params/pairing.code",
        advertised: BOTH,
    },
    MethodSpec {
        name: "pairing.reject",
        access: Access::Pairing,
        params: "params/pairing.code",
        advertised: BOTH,
    },
    MethodSpec {
        name: "pairing.revoke",
        access: Access::Pairing,
        params: "params/pairing.revoke",
        advertised: BOTH,
    },
    MethodSpec {
        name: "agent",
        access: Access::Write,
        params: "params/agent",
        advertised: BOTH,
    },
    MethodSpec {
        name: "agent.wait",
        access: Access::Write,
        params: "params/agent.wait",
        advertised: BOTH,
    },
    MethodSpec {
        name: "chat.send",
        access: Access::Write,
        params: "params/chat.send",
        advertised: BOTH,
    },
    MethodSpec {
        name: "chat.abort",
        access: Access::Write,
        params: "params/chat.abort",
        advertised: BOTH,
    },
    MethodSpec {
        name: "workers.list",
        access: Access::Admin,
        params: "params/workers.list",
        advertised: BOTH,
    },
    MethodSpec {
        name: "workers.restart",
        access: Access::Admin,
        params: "params/workers.control",
        advertised: BOTH,
    },
    MethodSpec {
        name: "workers.stop",
        access: Access::Admin,
        params: "params/workers.control",
        advertised: BOTH,
    },
    MethodSpec {
        name: "workers.start",
        access: Access::Admin,
        params: "params/workers.control",
        advertised: BOTH,
    },
    // A second `connect` after the handshake: known, never advertised.
    MethodSpec {
        name: "connect",
        access: Access::Admin,
        params: "params/status",
        advertised: NONE,
    },
];

/// Events Switchboard emits, as listed in `hello-ok.features.events`.
pub const EVENTS: &[&str] = &[
    "connect.challenge",
    "agent",
    "chat",
    "device.pair.requested",
    "device.pair.resolved",
    "node.invoke.request",
    "node.pair.requested",
    "node.pair.resolved",
    "presence",
    "tick",
    "shutdown",
    "health",
];

/// The method as `version` knows it: a method advertised only to other generations is
/// unknown here (a method advertised to none, like a second `connect`, is known to all).
pub fn lookup(name: &str, version: ProtocolVersion) -> Option<&'static MethodSpec> {
    TABLE
        .iter()
        .find(|m| m.name == name)
        .filter(|m| m.advertised.is_empty() || m.advertised.contains(&version))
}

/// Every method name of the table, for the metrics registry's latency labels.
pub fn method_names() -> Vec<&'static str> {
    TABLE.iter().map(|m| m.name).collect()
}

/// The methods `hello-ok` lists for `version` (built once, shared by every handshake).
pub fn advertised(version: ProtocolVersion) -> std::sync::Arc<Vec<String>> {
    static LISTS: std::sync::OnceLock<[std::sync::Arc<Vec<String>>; 2]> =
        std::sync::OnceLock::new();
    let lists = LISTS.get_or_init(|| {
        [V3, V4].map(|v| {
            std::sync::Arc::new(
                TABLE
                    .iter()
                    .filter(|m| m.advertised.contains(&v))
                    .map(|m| m.name.to_owned())
                    .collect(),
            )
        })
    });
    std::sync::Arc::clone(&lists[usize::from(version == V4)])
}

/// The events `hello-ok` lists (built once).
pub fn events() -> std::sync::Arc<Vec<String>> {
    static LIST: std::sync::OnceLock<std::sync::Arc<Vec<String>>> = std::sync::OnceLock::new();
    std::sync::Arc::clone(
        LIST.get_or_init(|| std::sync::Arc::new(EVENTS.iter().map(|s| s.to_string()).collect())),
    )
}

/// A handler's answer: a JSON value, a payload already encoded, or a whole response
/// frame (e.g. a replayed failure that carries a payload too).
pub enum Reply {
    Json(Value),
    Encoded(Arc<str>),
    Frame(String),
    /// The handler answers later itself (through the hub).
    Deferred,
}

/// Runs a slow handler off the connection's read loop (its other requests are not held
/// up) and sends its answer when it is ready.
fn deferred(
    app: &Arc<App>,
    conn: &Arc<ConnHandle>,
    request_id: &str,
    work: impl std::future::Future<Output = Result<Value, RpcError>> + Send + 'static,
) -> Reply {
    let (app, conn, id) = (Arc::clone(app), Arc::clone(conn), request_id.to_owned());
    tokio::spawn(async move {
        let frame = match work.await {
            Ok(v) => crate::protocol::frame::ok(&id, &v),
            Err(e) => {
                app.metrics.error(e.code);
                crate::protocol::frame::err(&id, &e)
            }
        };
        app.hub.send_direct(&conn, frame);
    });
    Reply::Deferred
}

/// Runs the handler of an authorized, validated request.
pub async fn dispatch(
    app: &Arc<App>,
    conn: &Arc<ConnHandle>,
    request_id: &str,
    method: &'static MethodSpec,
    params: Value,
) -> Result<Reply, RpcError> {
    match method.name {
        "agent" => {
            let p: AgentParams = parse(method.name, params)?;
            match agent::start(app, conn, request_id, p).await? {
                agent::Admission::Accepted(ack) => Ok(Reply::Json(ack)),
                agent::Admission::Replay { ok: true, payload, .. } => Ok(Reply::Json(payload)),
                agent::Admission::Replay { payload, error, .. } => Ok(Reply::Frame(
                    json!({"type": "res", "id": request_id, "ok": false, "payload": payload, "error": error})
                        .to_string(),
                )),
            }
        }
        "agent.wait" => {
            let p: AgentWaitParams = parse(method.name, params)?;
            let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(30_000));
            Ok(Reply::Json(agent::wait(app, &p.run_id, timeout).await))
        }
        "chat.send" => {
            let p: ChatSendParams = parse(method.name, params)?;
            match agent::chat_send(app, p).await? {
                agent::Admission::Accepted(ack) => Ok(Reply::Json(ack)),
                agent::Admission::Replay { ok: true, payload, .. } => Ok(Reply::Json(payload)),
                agent::Admission::Replay { payload, error, .. } => Ok(Reply::Frame(
                    json!({"type": "res", "id": request_id, "ok": false, "payload": payload, "error": error})
                        .to_string(),
                )),
            }
        }
        "chat.abort" => {
            let p: ChatAbortParams = parse(method.name, params)?;
            let key = crate::state::history::canonical_session_key(
                Some(&p.session_key),
                p.agent_id.as_deref(),
            );
            let run_ids = app.runs.abort(&key, p.run_id.as_deref());
            Ok(Reply::Json(to_value(&ChatAbortResult {
                ok: true,
                aborted: !run_ids.is_empty(),
                run_ids,
            })))
        }
        "sessions.list" => {
            let p: SessionsListParams = parse(method.name, params)?;
            Ok(Reply::Json(sessions::list(app, conn.version, &p).await?))
        }
        "chat.history" => {
            let p: ChatHistoryParams = parse(method.name, params)?;
            Ok(Reply::Json(sessions::history(app, conn.version, &p).await?))
        }
        "channels.status" => Ok(Reply::Json(sessions::channels_status(app, conn.version))),
        "send" => {
            let p: SendParams = parse(method.name, params)?;
            Ok(
                match crate::channels::send::send(app, conn, request_id, p).await? {
                    Some(v) => Reply::Json(v),
                    None => Reply::Deferred,
                },
            )
        }
        "web.login.start" => {
            let p: WebLoginStartParams = parse(method.name, params)?;
            let g = Arc::clone(app);
            Ok(deferred(app, conn, request_id, async move {
                crate::channels::linking::start(&g, p.force == Some(true), p.timeout_ms).await
            }))
        }
        "web.login.wait" => {
            let p: WebLoginWaitParams = parse(method.name, params)?;
            let g = Arc::clone(app);
            Ok(deferred(app, conn, request_id, async move {
                crate::channels::linking::wait(&g, p.timeout_ms).await
            }))
        }
        "channels.logout" => {
            let p: ChannelsLogoutParams = parse(method.name, params)?;
            let g = Arc::clone(app);
            Ok(deferred(app, conn, request_id, async move {
                crate::channels::linking::logout(&g, &p.channel, p.account_id.as_deref()).await
            }))
        }
        "pairing.list" => {
            let p: PairingListParams = parse(method.name, params)?;
            let channel = p.channel.map(|c| c.trim().to_ascii_lowercase());
            crate::channels::sender_pairing::list(&app.db, channel)
                .await
                .map(Reply::Json)
                .map_err(store_err)
        }
        "pairing.approve" => {
            let p: PairingCodeParams = parse(method.name, params)?;
            let channel = p.channel.trim().to_ascii_lowercase();
            let Some(a) = crate::channels::sender_pairing::approve(&app.db, &channel, &p.code)
                .await
                .map_err(store_err)?
            else {
                return Err(RpcError::invalid_request(format!(
                    "no pending pairing code {} for {channel} (codes expire after an hour)",
                    p.code.trim().to_ascii_uppercase()
                )));
            };
            tracing::info!(channel = %a.channel, sender = %a.id, "sender approved by pairing");
            let mut notified = false;
            if p.notify == Some(true) && app.config.channel(&channel).is_some() {
                let d = crate::channels::outbox_store::NewDelivery {
                    channel: channel.clone(),
                    account_id: "default".into(),
                    target: a.chat_id.clone(),
                    text: crate::channels::sender_pairing::APPROVED_TEXT.into(),
                    source: "notice",
                    key: Some(format!("approved:{channel}:{}:{}", a.id, now_ms())),
                    session_key: None,
                };
                notified = app.outbox.enqueue(d).await.map_err(store_err)?.created;
            }
            Ok(Reply::Json(json!({"approved": a, "notified": notified})))
        }
        "pairing.reject" => {
            let p: PairingCodeParams = parse(method.name, params)?;
            let channel = p.channel.trim().to_ascii_lowercase();
            let found = crate::channels::sender_pairing::reject(&app.db, &channel, &p.code)
                .await
                .map_err(store_err)?;
            if !found {
                return Err(RpcError::invalid_request(format!(
                    "no pending pairing code {} for {channel}",
                    p.code.trim().to_ascii_uppercase()
                )));
            }
            Ok(Reply::Json(json!({"ok": true})))
        }
        "pairing.revoke" => {
            let p: PairingRevokeParams = parse(method.name, params)?;
            let channel = p.channel.trim().to_ascii_lowercase();
            let found = crate::channels::sender_pairing::revoke(&app.db, &channel, &p.id)
                .await
                .map_err(store_err)?;
            if !found {
                return Err(RpcError::invalid_request(format!(
                    "{} is not an approved {channel} sender",
                    p.id.trim()
                )));
            }
            Ok(Reply::Json(json!({"ok": true})))
        }
        "logs.tail" => {
            let p: LogsTailParams = parse(method.name, params)?;
            logs_tail(app, p).await.map(Reply::Json)
        }
        "models.list" => Ok(Reply::Json(sessions::models(app).await)),
        "node.pair.request" => {
            let (request, created) =
                app.node_pairing
                    .request(&params)
                    .await
                    .map_err(|e| match e {
                        crate::auth::node_pairing::NodePairingError::Db(e) => store_err(e),
                        other => RpcError::invalid_request(other.to_string()),
                    })?;
            if created {
                app.hub
                    .broadcast(&Broadcast::new("node.pair.requested", &request, None, true));
            }
            Ok(Reply::Json(
                json!({"status": "pending", "request": request, "created": created}),
            ))
        }
        "node.pair.list" => Ok(Reply::Json(app.node_pairing.list())),
        "node.pair.approve" => {
            let p: PairingRequestParams = parse(method.name, params)?;
            let Some(approved) = app
                .node_pairing
                .approve(&p.request_id)
                .await
                .map_err(store_err)?
            else {
                return Err(RpcError::invalid_request("unknown requestId"));
            };
            let ev = json!({"requestId": p.request_id, "nodeId": approved["node"]["nodeId"], "decision": "approved", "ts": now_ms()});
            let b = Broadcast::new("node.pair.resolved", &ev, None, true);
            app.hub.broadcast(&b);
            // v4: a connected node waiting on this request gets its commands now, and hears so.
            let commands: Vec<String> = approved["node"]["commands"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect();
            if let Some(node_conn) = app.nodes.approve_commands(&p.request_id, &commands) {
                app.hub.send_event(&node_conn, &b);
            }
            Ok(Reply::Json(approved))
        }
        "node.pair.reject" => {
            let p: PairingRequestParams = parse(method.name, params)?;
            let Some(rejected) = app
                .node_pairing
                .reject(&p.request_id)
                .await
                .map_err(store_err)?
            else {
                return Err(RpcError::invalid_request("unknown requestId"));
            };
            let ev = json!({"requestId": p.request_id, "nodeId": rejected["nodeId"], "decision": "rejected", "ts": now_ms()});
            app.hub
                .broadcast(&Broadcast::new("node.pair.resolved", &ev, None, true));
            Ok(Reply::Json(rejected))
        }
        "node.pair.verify" => {
            let p: NodePairVerifyParams = parse(method.name, params)?;
            Ok(Reply::Json(app.node_pairing.verify(&p.node_id, &p.token)))
        }
        "node.rename" => {
            let p: NodeRenameParams = parse(method.name, params)?;
            let name = p.display_name.trim();
            if name.is_empty() {
                return Err(RpcError::invalid_request("displayName required"));
            }
            match app
                .node_pairing
                .rename(&p.node_id, name)
                .await
                .map_err(store_err)?
            {
                Some(v) => Ok(Reply::Json(v)),
                None => Err(RpcError::invalid_request("unknown nodeId")),
            }
        }
        "node.list" => Ok(Reply::Json(node_list(app))),
        "node.describe" => {
            let p: NodeDescribeParams = parse(method.name, params)?;
            let all = node_list(app);
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
        "node.invoke" => {
            let p: NodeInvokeParams = parse(method.name, params)?;
            let key = format!("node.invoke:{}", p.idempotency_key);
            match app.idempotency.get(&key).await.map_err(store_err)? {
                Some(crate::state::idempotency::Record::Final {
                    ok: true, payload, ..
                }) => return Ok(Reply::Json(payload)),
                Some(crate::state::idempotency::Record::Final { payload, error, .. }) => {
                    return Ok(Reply::Frame(
                        json!({"type": "res", "id": request_id, "ok": false, "payload": payload, "error": error}).to_string(),
                    ));
                }
                Some(crate::state::idempotency::Record::Accepted { .. }) => {
                    let mut e = RpcError::unavailable(
                        "an invoke with this idempotencyKey is still in flight",
                    );
                    e.retryable = Some(true);
                    return Err(e);
                }
                None => {}
            }
            app.idempotency
                .claim(
                    &key,
                    "node.invoke",
                    &crate::state::idempotency::Record::Accepted { ack: json!({}) },
                )
                .await
                .map_err(store_err)?;
            let result = app
                .nodes
                .invoke(
                    &app.hub,
                    conn.version,
                    &p.node_id,
                    &p.command,
                    p.params.as_ref(),
                    p.timeout_ms,
                    &p.idempotency_key,
                )
                .await;
            let record = match &result {
                Ok(v) => crate::state::idempotency::Record::Final {
                    ok: true,
                    payload: v.clone(),
                    error: None,
                },
                Err(e) => crate::state::idempotency::Record::Final {
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
        "node.invoke.result" => {
            let node_id = conn
                .device_id
                .clone()
                .unwrap_or_else(|| conn.client_id.clone());
            if params["nodeId"] != node_id.as_str() {
                return Err(RpcError::invalid_request("nodeId mismatch"));
            }
            let matched = app.nodes.result(&node_id, &params);
            Ok(Reply::Json(if matched {
                json!({"ok": true})
            } else {
                json!({"ok": true, "ignored": true})
            }))
        }
        "node.event" => {
            let p: NodeEventParams = parse(method.name, params)?;
            tracing::debug!(node = %conn.client_id, event = %p.event, "node event");
            Ok(Reply::Json(json!({"ok": true})))
        }
        "device.pair.list" => Ok(Reply::Json(app.devices.list())),
        "device.pair.approve" => {
            let p: PairingRequestParams = parse(method.name, params)?;
            let device = app
                .devices
                .approve(&p.request_id)
                .await
                .map_err(store_err)?;
            let Some(device) = device else {
                return Err(RpcError::invalid_request("unknown requestId"));
            };
            tracing::info!(device = %device.device_id, "device pairing approved");
            let ev = json!({"requestId": p.request_id, "deviceId": device.device_id, "decision": "approved", "ts": now_ms()});
            app.hub
                .broadcast(&Broadcast::new("device.pair.resolved", &ev, None, true));
            Ok(Reply::Json(
                json!({"requestId": p.request_id, "device": device}),
            ))
        }
        "device.pair.reject" => {
            let p: PairingRequestParams = parse(method.name, params)?;
            let Some(req) = app.devices.reject(&p.request_id).await.map_err(store_err)? else {
                return Err(RpcError::invalid_request("unknown requestId"));
            };
            let ev = json!({"requestId": p.request_id, "deviceId": req.device_id, "decision": "rejected", "ts": now_ms()});
            app.hub
                .broadcast(&Broadcast::new("device.pair.resolved", &ev, None, true));
            Ok(Reply::Json(
                json!({"requestId": p.request_id, "deviceId": req.device_id}),
            ))
        }
        "device.token.rotate" => {
            let p: DeviceTokenRotateParams = parse(method.name, params)?;
            let Some((token, info)) = app
                .devices
                .rotate(&p.device_id, &p.role, p.scopes)
                .await
                .map_err(store_err)?
            else {
                return Err(RpcError::invalid_request("unknown deviceId/role"));
            };
            Ok(Reply::Json(
                json!({"deviceId": info.device_id, "role": info.role, "token": token,
                                  "scopes": info.scopes, "rotatedAtMs": info.issued_at_ms}),
            ))
        }
        "device.token.revoke" => {
            let p: DeviceTokenRevokeParams = parse(method.name, params)?;
            let Some(info) = app
                .devices
                .revoke(&p.device_id, &p.role)
                .await
                .map_err(store_err)?
            else {
                return Err(RpcError::invalid_request("unknown deviceId/role"));
            };
            let closed = app.disconnect_device(&p.device_id, &p.role, "device token revoked");
            tracing::info!(device = %p.device_id, role = %p.role, closed, "device token revoked");
            Ok(Reply::Json(
                json!({"deviceId": info.device_id, "role": info.role,
                                  "revokedAtMs": info.revoked_at_ms}),
            ))
        }
        "workers.list" => Ok(Reply::Json(to_value(&WorkersList {
            workers: app.workers().list(),
        }))),
        "workers.restart" | "workers.stop" | "workers.start" => {
            let p: WorkerControlParams = parse(method.name, params)?;
            let control = match method.name {
                "workers.restart" => Control::Restart,
                "workers.stop" => Control::Stop,
                _ => Control::Start,
            };
            let workers = app.workers();
            workers
                .control(&p.name, control)
                .await
                .map_err(|e| RpcError::invalid_request(e.to_string()))?;
            let worker = workers
                .health_of(&p.name)
                .map_err(|e| RpcError::invalid_request(e.to_string()))?;
            Ok(Reply::Json(to_value(&WorkerControlResult {
                ok: true,
                worker,
            })))
        }
        "health" => {
            let probe = params.get("probe").and_then(Value::as_bool) == Some(true);
            let cached = app.health_cache();
            let fresh = crate::clock::now_ms().saturating_sub(cached.snapshot.ts)
                < crate::app::HEALTH_CACHE_MS;
            if !probe && fresh {
                return Ok(Reply::Encoded(Arc::clone(&cached.encoded)));
            }
            let cache = app.refresh_health(false).await;
            Ok(Reply::Encoded(Arc::clone(&cache.encoded)))
        }
        "status" => Ok(Reply::Json(to_value(&app.status().await))),
        "system-presence" => Ok(Reply::Json(to_value(&app.presence_list(conn.version)))),
        "last-heartbeat" => Ok(Reply::Json(Value::Null)),
        "system-event" => {
            let p: SystemEventParams = serde_json::from_value(params).map_err(|e| {
                RpcError::invalid_request(format!("invalid system-event params: {e}"))
            })?;
            let text = p.text.as_deref().map(str::trim).unwrap_or("");
            if text.is_empty() {
                return Err(RpcError::invalid_request("text required"));
            }
            app.push_system_event(text);
            app.update_presence(|pr| pr.system_event(&p, text));
            Ok(Reply::Json(json!({ "ok": true })))
        }
        "connect" => Err(RpcError::invalid_request(
            "connect is only valid as the first request",
        )),
        other => Err(RpcError::invalid_request(format!(
            "unknown method: {other}"
        ))),
    }
}

/// `logs.tail`: a slice of the gateway's own log file.
async fn logs_tail(app: &App, p: LogsTailParams) -> Result<Value, RpcError> {
    use crate::ops::logging::{TAIL_DEFAULT_BYTES, TAIL_DEFAULT_LIMIT};
    let Some(path) = app.config.logging.file.clone() else {
        return Err(RpcError::unavailable(
            "this gateway writes no log file (logging.file is false)",
        ));
    };
    let limit = p.limit.map(|l| l as usize).unwrap_or(TAIL_DEFAULT_LIMIT);
    let max_bytes = p.max_bytes.unwrap_or(TAIL_DEFAULT_BYTES);
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            crate::ops::logging::tail(&path, p.cursor, limit, max_bytes)
        })
        .await
    };
    match read {
        Ok(Ok(t)) => Ok(to_value(&LogsTailResult {
            file: path.display().to_string(),
            cursor: t.cursor,
            size: t.size,
            lines: t.lines,
            truncated: Some(t.truncated),
            reset: Some(t.reset),
        })),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the log file");
            Err(RpcError::unavailable(format!(
                "cannot read the log file: {e}"
            )))
        }
        Err(e) => Err(RpcError::unavailable(format!(
            "cannot read the log file: {e}"
        ))),
    }
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

fn store_err(e: crate::state::db::DbError) -> RpcError {
    tracing::error!(error = %e, "device store failed");
    RpcError::unavailable("the gateway's database is unavailable; retry later")
}

/// Typed params; the schema already passed, so a failure here is a bug worth reporting.
fn parse<T: serde::de::DeserializeOwned>(method: &str, params: Value) -> Result<T, RpcError> {
    serde_json::from_value(params)
        .map_err(|e| RpcError::invalid_request(format!("invalid {method} params: {e}")))
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_names_a_schema_that_exists() {
        let v = crate::protocol::validate::Validators::build().unwrap();
        for m in TABLE {
            assert!(
                v.has(m.params),
                "{} names missing schema {}",
                m.name,
                m.params
            );
        }
    }
}
