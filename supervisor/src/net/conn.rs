//! One client connection, from TCP accept to close: the WebSocket upgrade, the
//! `connect.challenge`, the handshake, then a reader (this task) and a writer task that
//! drains the connection's bounded queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchboard_schemas::ProtocolVersion::{self, V3, V4};
use switchboard_schemas::hello::{
    Features, HelloAuth, HelloOk, Policy, PresenceEntry, ServerInfo, SessionDefaults, Snapshot,
};
use switchboard_schemas::methods::{HealthSnapshot, SessionSummary};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::VERSION;
use crate::app::App;
use crate::auth::access;
use crate::auth::handshake::{self, Accepted, HandshakeCtx, Peer};
use crate::clock::now_ms;
use crate::config::DEFAULT_AGENT_ID;
use crate::events::hub::{Broadcast, ConnHandle, NewConn, Queue};
use crate::net::budget::{Budget, BudgetStream};
use crate::net::http::{self, Prefixed};
use crate::net::outgoing::{self, CLOSE_GRACE, close_frame};
use crate::protocol::{PRE_HANDSHAKE_MAX_PAYLOAD, frame, limits};
use crate::rpc;

/// Any byte stream a client can arrive on: plain TCP or TLS.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

type Ws<S> = WebSocketStream<Prefixed<BudgetStream<S>>>;

/// Bytes a client may send before its `connect` is accepted: the HTTP upgrade, one
/// maximal first frame and its header, and one read buffer of look-ahead.
const PRE_HANDSHAKE_BUDGET: usize = 16 * 1024 + PRE_HANDSHAKE_MAX_PAYLOAD + 14 + READ_BUFFER;
const READ_BUFFER: usize = 1024;

fn ws_config() -> WebSocketConfig {
    let max = limits(ProtocolVersion::LATEST).max_payload;
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Sends a close frame, then waits briefly for the peer's answer so the close is clean.
async fn close_ws<S: Transport>(mut ws: Ws<S>, code: u16, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_GRACE, ws.send(close_frame(code, reason))).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, async { while ws.next().await.is_some() {} }).await;
}

fn is_too_big(e: &WsError) -> bool {
    matches!(e, WsError::Capacity(_))
}

/// The close code for a broken frame (0: the connection just went away): too big 1009,
/// not UTF-8 1007, any other protocol violation 1002.
fn violation_code(e: &WsError) -> u16 {
    match e {
        WsError::Capacity(_) => 1009,
        WsError::Utf8(_) => 1007,
        WsError::Protocol(_) => 1002,
        _ => 0,
    }
}

/// Reads and discards what a client still sends, until it closes or [`CLOSE_GRACE`]
/// passes, so that our close frame reaches it before our socket goes away.
async fn drain<S: AsyncRead + Unpin>(s: &mut S) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
    // On the heap: a buffer in the future would be part of every live session's state.
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

/// The gateway port's service: each connection upgraded and served as a session.
#[derive(Clone, Copy)]
pub struct Gateway;

impl crate::net::accept::Service for Gateway {
    fn serve<S: Transport>(
        self,
        app: Arc<App>,
        stream: S,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send {
        serve(app, stream, peer)
    }
}

/// Serves one connection. The handshake runs in a boxed future of its own and each
/// request's handler is boxed too, so the long-lived task holds only what an idle
/// session needs (a task's size is that of its largest state, fixed when it is spawned).
pub async fn serve<S: Transport>(app: Arc<App>, tcp: S, peer: SocketAddr) {
    let Some((ws, accepted, upgrade)) = Box::pin(handshake_phase(&app, tcp, peer)).await else {
        return;
    };
    // Boxed too: the spawned task then holds only this small future, and a live
    // session's state is one allocation of its own size.
    Box::pin(run_session(app, ws, peer, accepted, upgrade)).await;
}

/// Upgrade, challenge, first frame, decision. `None` when the connection was refused or
/// went away (already closed as the protocol says). With it, what the upgrade said.
async fn handshake_phase<S: Transport>(
    app: &Arc<App>,
    tcp: S,
    peer: SocketAddr,
) -> Option<(Ws<S>, Accepted, Upgrade)> {
    let budget = Budget::new(PRE_HANDSHAKE_BUDGET);
    let mut stream = BudgetStream::new(tcp, budget.clone());
    let deadline = tokio::time::Instant::now() + app.config.handshake_timeout;
    let (head, read) = match tokio::time::timeout_at(deadline, http::read_head(&mut stream)).await {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "no HTTP request");
            http::refuse_head(&mut stream, &e).await;
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "HTTP request timed out");
            return None;
        }
    };
    if !head.is_websocket() {
        http::serve(app, &head, stream, peer).await;
        return None;
    }
    let proxied = head.is_proxied();
    let host = head.header("host").map(str::to_owned);
    drop(head);
    let upgrade =
        tokio_tungstenite::accept_async_with_config(Prefixed::new(read, stream), Some(ws_config()));
    let mut ws = match tokio::time::timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "websocket upgrade failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "websocket upgrade timed out");
            return None;
        }
    };
    // A loopback peer is local unless it forwards someone else's request.
    let local = peer.ip().is_loopback() && !proxied;
    let nonce = uuid::Uuid::new_v4().to_string();
    let challenge = frame::unsequenced_event(
        "connect.challenge",
        &Challenge {
            nonce: &nonce,
            ts: now_ms(),
        },
    );
    if ws.send(Message::text(challenge)).await.is_err() {
        return None;
    }

    let first = loop {
        let next = tokio::select! {
            m = ws.next() => m,
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!(%peer, "handshake timeout");
                close_ws(ws, 1000, "").await;
                return None;
            }
            _ = budget.exceeded() => {
                close_ws(ws, 1009, "").await;
                return None;
            }
            _ = app.draining.cancelled() => {
                close_ws(ws, 1012, "service restart").await;
                return None;
            }
        };
        match next {
            Some(Ok(Message::Text(t))) => break t.as_str().to_owned(),
            Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                Ok(s) => break s,
                Err(_) => {
                    close_ws(ws, 1000, "").await;
                    return None;
                }
            },
            Some(Ok(Message::Close(_))) | None => return None,
            Some(Ok(_)) => continue,
            Some(Err(e)) if is_too_big(&e) => {
                close_ws(ws, 1009, "").await;
                return None;
            }
            Some(Err(_)) => return None,
        }
    };
    if first.len() > PRE_HANDSHAKE_MAX_PAYLOAD {
        close_ws(ws, 1009, "").await;
        return None;
    }

    let ctx = HandshakeCtx {
        validators: &app.validators,
        devices: &app.devices,
        auth: &app.config.auth,
        limiter: &app.limiter,
        nonce: &nonce,
        peer: Peer {
            ip: peer.ip(),
            local,
        },
        now_ms: now_ms(),
    };
    let decided = std::time::Instant::now();
    let decision = handshake::decide(&ctx, &first).await;
    app.metrics.handshake_latency.observe(decided.elapsed());
    app.metrics.frames_in.fetch_add(1, Relaxed);
    let accepted = match decision {
        Ok(a) => {
            app.metrics.handshakes_ok.fetch_add(1, Relaxed);
            a
        }
        Err(rejected) => {
            app.metrics.handshakes_refused.fetch_add(1, Relaxed);
            if let Some(code) = rejected.code {
                app.metrics.error(code);
            }
            for (event, payload) in &rejected.events {
                app.hub
                    .broadcast(&Broadcast::new(event, payload, None, true));
            }
            if !rejected.delay.is_zero() {
                tokio::time::sleep(rejected.delay).await;
            }
            if let Some(reply) = rejected.reply {
                let _ = ws.send(Message::text(reply)).await;
            }
            close_ws(ws, rejected.close_code, &rejected.close_reason).await;
            return None;
        }
    };
    budget.disable();
    for (event, payload) in &accepted.events {
        app.hub
            .broadcast(&Broadcast::new(event, payload, None, true));
    }
    Some((ws, accepted, Upgrade { host, local }))
}

/// What the upgrade request said that the session needs later.
struct Upgrade {
    /// Its `Host` (the canvas URLs of `hello-ok` are built on it).
    host: Option<String>,
    /// A loopback peer that forwards no one else's request.
    local: bool,
}

/// The `connect.challenge` payload (typed: nothing on the handshake path builds a
/// `serde_json::Value` to encode it).
#[derive(serde::Serialize)]
struct Challenge<'a> {
    nonce: &'a str,
    ts: u64,
}

/// Whether a client appears in the presence list, as each reference decides it (its
/// scopes do not matter): v3 (clawdbot) leaves out CLI clients; v4 (OpenClaw) leaves out
/// every ephemeral client: `cli`, `backend` and `probe` modes.
fn tracked(a: &Accepted) -> bool {
    let mode = a.params.client.mode.as_str();
    match a.version {
        V3 => mode != "cli",
        V4 => !matches!(mode, "cli" | "backend" | "probe"),
    }
}

/// What a live session keeps after its set-up.
struct Live {
    handle: Arc<ConnHandle>,
    rx: Queue,
    node_id: Option<String>,
}

/// Registration and `hello-ok`. Runs boxed: its large locals (the connect params, the
/// hello) never become part of the long-lived session future.
async fn session_setup<S: Transport>(
    app: &Arc<App>,
    ws: &mut Ws<S>,
    peer: SocketAddr,
    a: Accepted,
    upgrade: Upgrade,
) -> Option<Live> {
    let version = a.version;
    let conn_id = uuid::Uuid::new_v4().to_string();
    let client = &a.params.client;
    let presence_key = tracked(&a).then(|| {
        a.device_id
            .clone()
            .or_else(|| client.instance_id.clone())
            .unwrap_or_else(|| conn_id.clone())
    });
    if let Some(key) = &presence_key {
        let entry = PresenceEntry {
            host: Some(
                client
                    .display_name
                    .clone()
                    .unwrap_or_else(|| client.id.clone()),
            ),
            client_id: Some(client.id.clone()),
            ip: (!peer.ip().is_loopback()).then(|| peer.ip().to_string()),
            version: Some(client.version.clone()),
            platform: Some(client.platform.clone()),
            device_family: client.device_family.clone(),
            model_identifier: client.model_identifier.clone(),
            time_zone: client.time_zone.clone(),
            mode: Some(client.mode.clone()),
            reason: Some("connect".into()),
            device_id: a.device_id.clone(),
            roles: Some(vec![a.grant.role.as_str().to_owned()]),
            scopes: Some(a.grant.scopes.clone()),
            instance_id: a.device_id.clone().or_else(|| client.instance_id.clone()),
            online_since: Some(now_ms()),
            ..Default::default()
        };
        app.update_presence(|p| p.upsert(key, entry));
    }
    let id = app.hub.next_id();
    let (handle, rx) = ConnHandle::new(
        id,
        NewConn {
            conn_id: conn_id.clone(),
            version,
            grant: a.grant.clone(),
            peer,
            client_id: client.id.clone(),
            client_mode: client.mode.clone(),
            presence_key: presence_key.clone(),
            device_id: a.device_id.clone(),
            max_buffered: limits(version).max_buffered_bytes,
            total: app.hub.total_counter(),
        },
    );
    let resumed = match &a.params.resume {
        None => {
            app.hub.insert(Arc::clone(&handle));
            None
        }
        Some(r) => {
            let ask = match (&r.session_id, &r.epoch, r.last_seq) {
                (Some(id), Some(epoch), Some(seq)) => Some((id.as_str(), epoch.as_str(), seq)),
                _ => None,
            };
            let resumed = app.hub.insert_resumable(&handle, ask);
            match resumed.refused {
                Some(why) => tracing::info!(conn = %conn_id, session = %resumed.session_id,
                    reason = why.as_str(), "resume refused: a fresh session"),
                None if ask.is_some() => tracing::info!(conn = %conn_id,
                    session = %resumed.session_id, replayed = resumed.replayed, "session resumed"),
                None => {}
            }
            Some(resumed)
        }
    };
    let node_id = if a.grant.role == access::Role::Node {
        Some(register_node(app, &a, &handle, peer).await)
    } else {
        None
    };
    let mut hello = hello_ok(app, &a, &conn_id);
    canvas_urls(
        app,
        &mut hello,
        &a,
        &conn_id,
        node_id.as_deref(),
        upgrade.host.as_deref(),
        upgrade.local,
    );
    hello.resume = resumed.map(|r| switchboard_schemas::hello::HelloResume {
        ok: r.refused.is_none(),
        reason: r.refused.map(|why| why.as_str().to_owned()),
        session_id: r.session_id,
        epoch: r.epoch,
    });
    handle.saw_presence(hello.snapshot.state_version.presence);
    let (_, placeholder) = health_placeholder();
    let hello = frame::hello_ok(
        &a.request_id,
        &hello,
        placeholder,
        &app.presence_encoded(version),
        &app.health_cache().encoded,
    );
    if outgoing::send_pieces(ws, &hello).await.is_err() {
        app.hub.remove(id);
        finish(app, &handle);
        return None;
    }
    tracing::info!(
        conn = %conn_id, %peer, client = %client.id, mode = %client.mode,
        protocol = version.number(), role = a.grant.role.as_str(), auth = a.auth_method,
        device = a.device_id.is_some(),
        "client connected"
    );
    app.health_changed();
    Some(Live {
        handle,
        rx,
        node_id,
    })
}

async fn run_session<S: Transport>(
    app: Arc<App>,
    mut ws: Ws<S>,
    peer: SocketAddr,
    a: Accepted,
    upgrade: Upgrade,
) {
    let version = a.version;
    let Some(Live {
        handle,
        rx,
        node_id,
    }) = Box::pin(session_setup(&app, &mut ws, peer, a, upgrade)).await
    else {
        return;
    };
    let id = handle.id;
    let conn_id = handle.conn_id.clone();
    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(outgoing::write_loop(
        sink,
        rx,
        Arc::clone(&handle),
        Arc::clone(&app.metrics),
    ));
    let cut = handle.cut_token();
    let mut session = rpc::Session::new(app.config.request_rate);
    // Set when the client broke the protocol: it may still be writing, so its socket is
    // drained for a moment after our close frame (else its kernel answers our close with
    // a reset and it sees 1006 instead of our code).
    let mut linger = false;
    loop {
        // Over its request budget: its next frame waits (TCP pushes back on the client).
        if let Some(until) = session.take_pause() {
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = cut.cancelled() => break,
            }
        }
        let next = tokio::select! {
            m = stream.next() => m,
            _ = cut.cancelled() => break,
        };
        let text = match next {
            None | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
            Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                Ok(s) => s,
                Err(_) => continue,
            },
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                let code = violation_code(&e);
                tracing::debug!(conn = %conn_id, error = %e, code, "read failed");
                if code != 0 {
                    handle.close(code, "");
                    linger = true;
                }
                break;
            }
        };
        if version == V3 && text.len() > limits(V3).max_payload {
            handle.close(1009, "");
            break;
        }
        app.metrics.frames_in.fetch_add(1, Relaxed);
        Box::pin(rpc::request(&app, &handle, &mut session, text)).await;
    }
    // Stop the writer unless it is already closing with a code of its own.
    handle.cut_token().cancel();
    if let Ok(sink) = writer.await
        && linger
        && let Ok(mut ws) = sink.reunite(stream)
    {
        drain(ws.get_mut()).await;
    }
    app.hub.remove(id);
    if let Some(node) = &node_id {
        app.nodes.unregister(node, id);
    }
    finish(&app, &handle);
    tracing::info!(conn = %conn_id, "client disconnected");
}

/// Registers a node. On v4 its declared commands wait for an operator's approval (a
/// `node.pair` request) unless they were approved before; v3 nodes have no such step.
async fn register_node(
    app: &Arc<App>,
    a: &Accepted,
    handle: &Arc<ConnHandle>,
    peer: SocketAddr,
) -> String {
    let client = &a.params.client;
    let id = a.device_id.clone().unwrap_or_else(|| client.id.clone());
    let mut info = crate::nodes::NodeInfo {
        node_id: id.clone(),
        display_name: client.display_name.clone(),
        platform: client.platform.clone(),
        version: client.version.clone(),
        device_family: client.device_family.clone(),
        model_identifier: client.model_identifier.clone(),
        remote_ip: (!peer.ip().is_loopback()).then(|| peer.ip().to_string()),
        caps: a
            .params
            .caps
            .iter()
            .flatten()
            .map(|c| c.0.clone())
            .collect(),
        commands: a
            .params
            .commands
            .iter()
            .flatten()
            .map(|c| c.0.clone())
            .collect(),
        permissions: a
            .params
            .permissions
            .as_ref()
            .and_then(|p| serde_json::to_value(p).ok()),
        path_env: a.params.path_env.clone(),
        connected_at_ms: now_ms(),
        declared: Vec::new(),
        approval_state: None,
        pending_request: None,
        client_id: client.id.clone(),
        client_mode: client.mode.clone(),
        skills: Vec::new(),
        declared_tools: Vec::new(),
        runner_inventory: None,
        host_stats: None,
        generation: a.version,
    };
    app.nodes.filter_commands(&mut info);
    if a.version == V4 && !info.declared.is_empty() {
        let approved = app.node_pairing.approved_commands(&id);
        if info.declared.iter().all(|c| approved.contains(c)) {
            info.approval_state = Some("approved".into());
        } else {
            let request = json!({
                "nodeId": id, "displayName": client.display_name, "platform": client.platform,
                "version": client.version, "commands": info.declared, "caps": info.caps,
            });
            match app.node_pairing.request(&request).await {
                Ok((req, created)) => {
                    if created {
                        app.hub
                            .broadcast(&Broadcast::new("node.pair.requested", &req, None, true));
                    }
                    info.pending_request = req["requestId"].as_str().map(str::to_owned);
                }
                Err(e) => {
                    tracing::warn!(node = %id, error = %e, "cannot file the node's command approval")
                }
            }
            info.approval_state = Some("pending-approval".into());
            info.commands.clear();
        }
    }
    let info = app.nodes.register(info, Arc::clone(handle));
    tracing::info!(node = %id, commands = ?info.commands, approval = ?info.approval_state, "node connected");
    id
}

/// Bookkeeping after a connection is gone.
fn finish(app: &App, handle: &ConnHandle) {
    // Its canvas capability dies with it (the reference's: 401 right after the close).
    app.canvas.caps.revoke_conn(&handle.conn_id);
    if let Some(key) = &handle.presence_key {
        app.update_presence(|p| p.disconnect(key));
    }
    app.health_changed();
}

/// The health snapshot `hello-ok` is serialized with before the cached encoding takes
/// its place (`frame::hello_ok`), and that placeholder's own encoding.
fn health_placeholder() -> &'static (Arc<HealthSnapshot>, String) {
    static P: std::sync::OnceLock<(Arc<HealthSnapshot>, String)> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let h = HealthSnapshot {
            ok: false,
            ts: 0,
            duration_ms: 0,
            channels: Default::default(),
            channel_order: vec!["\u{0}switchboard-placeholder".into()],
            channel_labels: Default::default(),
            heartbeat_seconds: 0,
            default_agent_id: String::new(),
            agents: vec![],
            sessions: SessionSummary {
                path: String::new(),
                count: 0,
                recent: vec![],
            },
            gateway: None,
            workers: None,
        };
        let json = serde_json::to_string(&h).unwrap_or_default();
        (Arc::new(h), json)
    })
}

/// The canvas URLs of `hello-ok` (`net::canvas_http`): v3 `canvasHostUrl`, the v3 canvas
/// port's origin (with a capability prefix for a client that is not on this host); v4
/// `pluginSurfaceUrls.canvas` with this connection's capability, for every operator and
/// for a node that declared the `canvas` cap and is approved (as the reference gives it).
fn canvas_urls(
    app: &App,
    hello: &mut HelloOk,
    a: &Accepted,
    conn_id: &str,
    node_id: Option<&str>,
    host: Option<&str>,
    local: bool,
) {
    use super::canvas_http::{origin, origin_with_port};
    if app.canvas.root().is_none() {
        return;
    }
    let tls = app.config.tls.is_some();
    match a.version {
        V3 => {
            let Some(port) = app.canvas.v3_port() else {
                return;
            };
            let origin = origin_with_port(host, tls, port);
            hello.canvas_host_url = Some(if local {
                origin
            } else {
                app.canvas.caps.issue(conn_id, &origin, false).0
            });
        }
        V4 => {
            let eligible = match node_id {
                None => true,
                Some(id) => app.nodes.get(id).is_some_and(|n| {
                    n.caps.iter().any(|c| c == "canvas")
                        && n.approval_state.as_deref() != Some("pending-approval")
                }),
            };
            if eligible {
                let origin = origin(host, tls, app.port);
                let (canvas, _) = app.canvas.caps.issue(conn_id, &origin, true);
                hello.plugin_surface_urls =
                    Some(switchboard_schemas::hello::PluginSurfaceUrls { canvas });
            }
        }
    }
}

/// `hello-ok` with the presence list empty and the placeholder health: the encoded ones
/// go in their place (`frame::hello_ok`).
fn hello_ok(app: &App, a: &Accepted, conn_id: &str) -> HelloOk {
    let version = a.version;
    let l = limits(version);
    let health = Arc::clone(&health_placeholder().0);
    let state_dir = app.config.state_dir.display().to_string();
    HelloOk {
        kind: "hello-ok".into(),
        protocol: version.number(),
        server: ServerInfo {
            version: VERSION.into(),
            commit: None,
            host: (version == V3).then(|| app.host.clone()),
            build_id: None,
            boot_id: (version == V4).then(|| app.boot_id.clone()),
            conn_id: conn_id.to_owned(),
        },
        features: Features {
            methods: rpc::advertised(version),
            events: rpc::events(version),
            capabilities: None,
        },
        snapshot: Snapshot {
            presence: Vec::new(),
            health,
            state_version: app.state_version(),
            uptime_ms: app.uptime_ms(),
            config_path: None,
            state_dir: Some(state_dir),
            session_defaults: Some(SessionDefaults {
                default_agent_id: DEFAULT_AGENT_ID.into(),
                main_key: "main".into(),
                main_session_key: format!("agent:{DEFAULT_AGENT_ID}:main"),
                scope: Some("per-sender".into()),
            }),
            auth_mode: (version == V4).then(|| app.config.auth.mode().to_owned()),
        },
        canvas_host_url: None,
        plugin_surface_urls: None,
        auth: match (version, &a.device_token) {
            (V3, None) => None,
            (_, Some((token, info))) => Some(HelloAuth {
                method: (version == V4).then(|| a.auth_method.to_owned()),
                device_token: Some(token.clone()),
                role: info.role.clone(),
                scopes: info.scopes.clone(),
                issued_at_ms: Some(info.issued_at_ms),
            }),
            (V4, None) => Some(HelloAuth {
                method: Some(a.auth_method.to_owned()),
                device_token: None,
                role: a.grant.role.as_str().to_owned(),
                scopes: a.grant.scopes.clone(),
                issued_at_ms: None,
            }),
        },
        policy: Policy {
            max_payload: l.max_payload as u64,
            max_buffered_bytes: l.max_buffered_bytes as u64,
            tick_interval_ms: app.config.tick_interval.as_millis() as u64,
            // v4 clients size uploads by this; chat.send/agent enforce it.
            attachments: (version == V4).then_some(switchboard_schemas::hello::AttachmentPolicy {
                max_bytes: crate::agent::ATTACHMENTS_MAX_BYTES,
                max_image_bytes: crate::agent::ATTACHMENTS_MAX_BYTES,
            }),
        },
        resume: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, without calling it.
    fn future_size<A, B, C, D, E, F: std::future::Future>(_: fn(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }
    fn future_size3<A, B, C, F: std::future::Future>(_: fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every connection's task holds its future for the connection's life: the spawned
    /// one is a few hundred bytes (the handshake and the session are boxed), and an idle
    /// session's state stays small (no buffers inline; each request's work is boxed).
    #[test]
    fn a_live_connection_holds_small_futures() {
        let spawned = future_size3(serve::<tokio::net::TcpStream>);
        let session = future_size(run_session::<tokio::net::TcpStream>);
        assert!(spawned <= 512, "serve's future is {spawned} bytes");
        // (Unoptimized builds lay futures out larger: the bound is for both.)
        assert!(
            session <= 4 * 1024,
            "run_session's future is {session} bytes"
        );
    }
}
