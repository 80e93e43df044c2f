//! A local stand-in of Discord's documented gateway (v10, JSON encoding) and REST API,
//! from the developer documentation (topics/gateway, gateway-events,
//! opcodes-and-status-codes, rate-limits; resources/channel, resources/user,
//! resources/message).
//!
//! Gateway (a WebSocket server, `?v=10&encoding=json`): `HELLO` (op 10) with
//! `heartbeat_interval` → `IDENTIFY` (op 2: the token is checked, close 4004 when wrong;
//! privileged intents the application may not use, close 4014) → `READY` (op 0, `s` 1)
//! with `session_id`, the bot's `user` and a `resume_gateway_url` pointing back here.
//! Heartbeats (op 1) are answered with op 11. Dispatches carry increasing sequence
//! numbers and are kept per session; `RESUME` (op 6) with `session_id` and `seq` replays
//! the ones after `seq`, then `RESUMED`; an unknown session gets `INVALID_SESSION`
//! `d:false`. Guild messages need the `GUILD_MESSAGES` intent, DMs `DIRECT_MESSAGES`;
//! without `MESSAGE_CONTENT` a guild message that does not mention the bot arrives with
//! an empty `content`. Tests drive the live connection: op 7 `RECONNECT`, op 9, a close
//! code, a dropped socket, or a socket that goes silent (no ACKs, no events).
//!
//! REST (HTTP/1.1 at `/api/v10`, `Authorization: Bot <token>`, else 401): `GET
//! /gateway/bot`, `POST /users/@me/channels` (`recipient_id` → the DM channel), `POST
//! /channels/{id}/messages` (`content` of 1 to 2,000 characters, else 400 code 50035 /
//! 50006; `nonce` with `enforce_nonce` returns the message already created with that
//! nonce instead of a second one). Scripted failures: 429 with the documented JSON body
//! (`message`, `retry_after` in seconds, `global`) and headers (`Retry-After`,
//! `X-RateLimit-*`), 403 Missing Access (50001), 404 Unknown Channel (10003), and a 502
//! after the message was created. Like Discord, a message the bot posts comes back to it
//! as a `MESSAGE_CREATE`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

pub const BOT_TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GstAnd.in-secret_TOKEN_x";
pub const BOT_ID: &str = "123456789012345678";
pub const BOT_NAME: &str = "sb_test_bot";
pub const GUILD_MESSAGES: u64 = 1 << 9;
pub const DIRECT_MESSAGES: u64 = 1 << 12;
pub const MESSAGE_CONTENT: u64 = 1 << 15;
/// Privileged intents: GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT.
const PRIVILEGED: u64 = (1 << 1) | (1 << 8) | MESSAGE_CONTENT;
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

mod rest;

/// What the next `POST /channels/{id}/messages` does instead of succeeding.
#[derive(Debug, Clone)]
pub enum Fail {
    /// 429 with `retry_after` seconds (body and headers).
    RateLimited(f64),
    /// 403, code 50001 Missing Access.
    Forbidden,
    /// 404, code 10003 Unknown Channel.
    UnknownChannel,
    /// The message is created, but the answer is a 502 (a proxy lost it).
    CreatedThen502,
}

/// What the test makes the live gateway connection do.
#[derive(Debug, Clone)]
enum Control {
    Send(Value),
    Close(u16),
    Drop,
    Silent,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub channel_id: String,
    pub content: String,
    pub id: String,
}

/// One WebSocket connection to the gateway.
#[derive(Debug, Clone, Default)]
pub struct Conn {
    /// The request target (`/?v=10&encoding=json`, `/resume/?v=10…`).
    pub path: String,
    pub identify: Option<Value>,
    pub resume: Option<Value>,
    pub heartbeats: u64,
    pub closed: bool,
}

struct Session {
    id: String,
    intents: u64,
    seq: u64,
    /// Every dispatch of the session, for replay: (seq, payload).
    log: Vec<(u64, Value)>,
}

#[derive(Default)]
pub struct State {
    pub gateway_port: u16,
    pub heartbeat_interval_ms: u64,
    /// Whether the application may use `MESSAGE_CONTENT` (the portal's toggle).
    pub message_content_allowed: bool,
    /// Hold `READY` back until this is cleared.
    pub hold_ready: bool,
    /// Replay this many already-acknowledged dispatches too on the next resume (a
    /// redelivery the client must absorb).
    pub replay_overlap: u64,
    pub conns: Vec<Conn>,
    sessions: Vec<Session>,
    /// The live connection: its index and control queue.
    live: Option<(usize, mpsc::UnboundedSender<Control>)>,
    next_id: u64,
    /// Guild channel id → guild id (channels not listed are DM channels).
    pub guild_channels: HashMap<String, String>,
    dm_channels: HashMap<String, String>,
    pub dm_opens: Vec<String>,
    pub sent: Vec<Sent>,
    pub send_attempts: Vec<Instant>,
    nonces: HashMap<String, Value>,
    pub fail_next: VecDeque<Fail>,
    pub unauthorized_calls: u64,
    pub gateway_bot_calls: u64,
}

impl State {
    fn snowflake(&mut self) -> String {
        self.next_id += 1;
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        (((ms - DISCORD_EPOCH_MS) << 22) + (self.next_id & 0xfff)).to_string()
    }

    /// Adds a dispatch to the current session and sends it on the live connection.
    fn dispatch(&mut self, t: &str, d: Value) {
        let Some(s) = self.sessions.last_mut() else {
            panic!("stand-in discord: no session to dispatch {t} on");
        };
        if !admitted(s.intents, &d) {
            return;
        }
        s.seq += 1;
        let payload = json!({"op": 0, "t": t, "s": s.seq, "d": visible(s.intents, d)});
        s.log.push((s.seq, payload.clone()));
        if let Some((_, tx)) = &self.live {
            let _ = tx.send(Control::Send(payload));
        }
    }

    fn control(&mut self, c: Control) {
        let (_, tx) = self
            .live
            .take()
            .expect("stand-in discord: no live connection");
        let _ = tx.send(c);
    }
}

/// Whether the session's intents let this message through.
fn admitted(intents: u64, d: &Value) -> bool {
    if d.get("guild_id").is_some() {
        intents & GUILD_MESSAGES != 0
    } else {
        intents & DIRECT_MESSAGES != 0
    }
}

/// Without `MESSAGE_CONTENT`, a guild message that does not mention the bot (and is not
/// its own) arrives with empty content.
fn visible(intents: u64, mut d: Value) -> Value {
    let mentioned = d["mentions"]
        .as_array()
        .is_some_and(|m| m.iter().any(|u| u["id"] == BOT_ID));
    if d.get("guild_id").is_some()
        && intents & MESSAGE_CONTENT == 0
        && !mentioned
        && d["author"]["id"] != BOT_ID
    {
        d["content"] = json!("");
    }
    d
}

pub struct Discord {
    pub api_url: String,
    pub gateway_url: String,
    state: Arc<Mutex<State>>,
    _stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Discord {
    pub fn start() -> Discord {
        let state = Arc::new(Mutex::new(State {
            heartbeat_interval_ms: 1000,
            message_content_allowed: true,
            ..State::default()
        }));
        let s = Arc::clone(&state);
        let (gw_port, gw_stop) = crate::harness::serve_on_thread(move |l| serve_gateway(l, s));
        state.lock().unwrap().gateway_port = gw_port;
        let s = Arc::clone(&state);
        let (api_port, api_stop) = crate::harness::serve_on_thread(move |l| rest::serve(l, s));
        Discord {
            api_url: format!("http://127.0.0.1:{api_port}"),
            gateway_url: format!("ws://127.0.0.1:{gw_port}"),
            state,
            _stops: vec![gw_stop, api_stop],
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Waits until `cond` holds on the state.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + crate::harness::WAIT;
        while Instant::now() < deadline {
            if self.with(|s| cond(s)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("stand-in discord: timed out waiting for {what}");
    }

    fn author(user: &str, name: &str) -> Value {
        json!({"id": user, "username": name.to_lowercase(), "global_name": name,
               "discriminator": "0", "avatar": null})
    }

    fn message(&self, channel: &str, user: &str, name: &str, content: &str) -> (String, Value) {
        self.with(|s| {
            let id = s.snowflake();
            let mut m = json!({
                "id": id, "channel_id": channel, "type": 0, "content": content,
                "author": Self::author(user, name), "timestamp": "2026-01-01T00:00:00.000000+00:00",
                "edited_timestamp": null, "tts": false, "mention_everyone": false,
                "mentions": [], "mention_roles": [], "attachments": [], "embeds": [], "pinned": false,
            });
            if let Some(g) = s.guild_channels.get(channel) {
                m["guild_id"] = json!(g);
            }
            (id, m)
        })
    }

    /// The DM channel of `user` (created on first use, as `POST /users/@me/channels`).
    pub fn dm_channel(&self, user: &str) -> String {
        self.with(|s| dm_channel_of(s, user))
    }

    /// A DM from a user; returns the message id.
    pub fn push_dm(&self, user: &str, name: &str, text: &str) -> String {
        let channel = self.dm_channel(user);
        let (id, m) = self.message(&channel, user, name, text);
        self.with(|s| s.dispatch("MESSAGE_CREATE", m));
        id
    }

    /// A guild channel message; `mention` starts it with `<@bot>` (and lists the bot in
    /// `mentions`), `reply_to` makes it a reply to that message of the bot.
    pub fn push_guild(
        &self,
        guild: &str,
        channel: &str,
        user: &str,
        text: &str,
        mention: bool,
        reply_to_bot: Option<&str>,
    ) -> String {
        self.with(|s| s.guild_channels.insert(channel.into(), guild.into()));
        let content = if mention {
            format!("<@{BOT_ID}> {text}")
        } else {
            text.to_owned()
        };
        let (id, mut m) = self.message(channel, user, "Carol", &content);
        if mention {
            m["mentions"] = json!([Self::author(BOT_ID, BOT_NAME)]);
        }
        if let Some(r) = reply_to_bot {
            // A reply pings the replied-to author by default: the bot is in `mentions`.
            m["mentions"] = json!([Self::author(BOT_ID, BOT_NAME)]);
            m["type"] = json!(19);
            m["message_reference"] =
                json!({"message_id": r, "channel_id": channel, "guild_id": guild});
            m["referenced_message"] = json!({"id": r, "channel_id": channel, "content": "…",
                "author": Self::author(BOT_ID, BOT_NAME)});
        }
        self.with(|s| s.dispatch("MESSAGE_CREATE", m));
        id
    }

    /// Op 7: the client must reconnect and resume. The connection sends nothing more.
    pub fn reconnect(&self) {
        self.with(|s| s.control(Control::Send(json!({"op": 7, "d": null}))));
    }

    /// Op 9 with `d: resumable`; a non-resumable session is forgotten.
    pub fn invalid_session(&self, resumable: bool) {
        self.with(|s| {
            if !resumable {
                s.sessions.clear();
            }
            s.control(Control::Send(json!({"op": 9, "d": resumable})))
        });
    }

    /// Closes the live connection with `code`.
    pub fn close(&self, code: u16) {
        self.with(|s| s.control(Control::Close(code)));
    }

    /// Drops the live connection's TCP socket without a close frame (the client sees 1006).
    pub fn drop_socket(&self) {
        self.with(|s| s.control(Control::Drop));
    }

    /// The live connection stops answering heartbeats and sending events (a zombie).
    pub fn go_silent(&self) {
        self.with(|s| s.control(Control::Silent));
    }

    pub fn identifies(&self) -> Vec<Value> {
        self.with(|s| s.conns.iter().filter_map(|c| c.identify.clone()).collect())
    }

    pub fn resumes(&self) -> Vec<(String, Value)> {
        self.with(|s| {
            s.conns
                .iter()
                .filter_map(|c| c.resume.clone().map(|r| (c.path.clone(), r)))
                .collect()
        })
    }

    pub fn session_id(&self) -> String {
        self.with(|s| s.sessions.last().map(|x| x.id.clone()).unwrap_or_default())
    }

    pub fn sent_to(&self, channel: &str) -> Vec<Sent> {
        self.with(|s| {
            s.sent
                .iter()
                .filter(|m| m.channel_id == channel)
                .cloned()
                .collect()
        })
    }
}

fn dm_channel_of(s: &mut State, user: &str) -> String {
    if let Some(c) = s.dm_channels.get(user) {
        return c.clone();
    }
    let c = s.snowflake();
    s.dm_channels.insert(user.to_owned(), c.clone());
    c
}

/// IDENTIFY's and RESUME's `token`: the bot token, which the gateway takes with or
/// without REST's `Bot ` prefix.
fn token_ok(t: &str) -> bool {
    t.strip_prefix("Bot ").unwrap_or(t) == BOT_TOKEN
}

async fn serve_gateway(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(gateway_conn(tcp, Arc::clone(&state)));
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn gateway_conn(tcp: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let path = Arc::new(Mutex::new(String::new()));
    let p = Arc::clone(&path);
    // tungstenite's callback signature fixes the error type.
    #[allow(clippy::result_large_err)]
    let cb = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                   resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
        *p.lock().unwrap() = req.uri().to_string();
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, cb).await else {
        return;
    };
    let path = path.lock().unwrap().clone();
    let (idx, interval) = {
        let mut s = state.lock().unwrap();
        s.conns.push(Conn {
            path: path.clone(),
            ..Conn::default()
        });
        (s.conns.len() - 1, s.heartbeat_interval_ms)
    };
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    if !query.split('&').any(|kv| kv == "v=10") || !query.split('&').any(|kv| kv == "encoding=json")
    {
        close(&mut ws, 4012, "Invalid API version.").await;
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _ = ws
        .send(text(
            json!({"op": 10, "d": {"heartbeat_interval": interval}, "s": null, "t": null}),
        ))
        .await;
    let mut silent = false;
    loop {
        tokio::select! {
            m = ws.next() => {
                let m = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(m.as_str()) else {
                    close(&mut ws, 4002, "Error while decoding payload.").await;
                    break;
                };
                match v["op"].as_u64() {
                    Some(1) => {
                        state.lock().unwrap().conns[idx].heartbeats += 1;
                        if !silent {
                            let _ = ws.send(text(json!({"op": 11}))).await;
                        }
                    }
                    Some(2) => {
                        if !identify(&mut ws, &state, idx, &tx, &v["d"]).await {
                            break;
                        }
                    }
                    Some(6) => {
                        if !resume(&mut ws, &state, idx, &tx, &v["d"]).await {
                            break;
                        }
                    }
                    _ => {
                        close(&mut ws, 4001, "Unknown opcode.").await;
                        break;
                    }
                }
            }
            c = rx.recv() => match c {
                Some(Control::Send(v)) => {
                    if v["op"] != 0 && v["op"] != 11 {
                        // Op 7 or 9: nothing more is dispatched on this connection.
                        let mut s = state.lock().unwrap();
                        if s.live.as_ref().is_some_and(|(i, _)| *i == idx) {
                            s.live = None;
                        }
                    }
                    if ws.send(text(v)).await.is_err() {
                        break;
                    }
                }
                Some(Control::Close(code)) => {
                    close(&mut ws, code, "closed by the test").await;
                    break;
                }
                Some(Control::Drop) | None => break,
                Some(Control::Silent) => silent = true,
            },
        }
    }
    let mut s = state.lock().unwrap();
    s.conns[idx].closed = true;
    if s.live.as_ref().is_some_and(|(i, _)| *i == idx) {
        s.live = None;
    }
}

fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

async fn close(ws: &mut Ws, code: u16, reason: &str) {
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        })))
        .await;
    // Wait for the client's answering close frame (or its going away), briefly.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

/// `IDENTIFY`: checks, a new session, `READY`. `false` when the connection was closed.
async fn identify(
    ws: &mut Ws,
    state: &Arc<Mutex<State>>,
    idx: usize,
    tx: &mpsc::UnboundedSender<Control>,
    d: &Value,
) -> bool {
    let intents = d["intents"].as_u64();
    let (token_good, allowed) = {
        let mut s = state.lock().unwrap();
        s.conns[idx].identify = Some(d.clone());
        (
            token_ok(d["token"].as_str().unwrap_or_default()),
            s.message_content_allowed,
        )
    };
    if !token_good {
        close(ws, 4004, "Authentication failed.").await;
        return false;
    }
    let Some(intents) = intents.filter(|i| *i < (1 << 26)) else {
        close(ws, 4013, "Invalid intent(s).").await;
        return false;
    };
    if intents & PRIVILEGED & !(if allowed { MESSAGE_CONTENT } else { 0 }) != 0 {
        close(ws, 4014, "Disallowed intent(s).").await;
        return false;
    }
    // READY may be held back by the test.
    let deadline = Instant::now() + crate::harness::WAIT;
    while state.lock().unwrap().hold_ready && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ready = {
        let mut s = state.lock().unwrap();
        let n = s.sessions.len() + s.conns.len();
        let id = format!("session-{n}-{}", s.snowflake());
        s.sessions.push(Session {
            id: id.clone(),
            intents,
            seq: 1,
            log: Vec::new(),
        });
        s.live = Some((idx, tx.clone()));
        json!({"op": 0, "t": "READY", "s": 1, "d": {
            "v": 10,
            "user": {"id": BOT_ID, "username": BOT_NAME, "discriminator": "0", "bot": true, "avatar": null, "global_name": null},
            "guilds": [],
            "session_id": id,
            "resume_gateway_url": format!("ws://127.0.0.1:{}/resume", s.gateway_port),
            "shard": [0, 1],
            "application": {"id": BOT_ID, "flags": 0},
        }})
    };
    ws.send(text(ready)).await.is_ok()
}

/// `RESUME`: replays the session's dispatches after `seq`, then `RESUMED`.
async fn resume(
    ws: &mut Ws,
    state: &Arc<Mutex<State>>,
    idx: usize,
    tx: &mpsc::UnboundedSender<Control>,
    d: &Value,
) -> bool {
    let seq = d["seq"].as_u64().unwrap_or(0);
    let sid = d["session_id"].as_str().unwrap_or_default().to_owned();
    let replay = {
        let mut s = state.lock().unwrap();
        s.conns[idx].resume = Some(d.clone());
        if !token_ok(d["token"].as_str().unwrap_or_default()) {
            None
        } else {
            let overlap = std::mem::take(&mut s.replay_overlap);
            let live = (idx, tx.clone());
            match s.sessions.iter_mut().find(|x| x.id == sid) {
                None => Some(Err(())),
                Some(sess) => {
                    let from = seq.saturating_sub(overlap);
                    let mut out: Vec<Value> = sess
                        .log
                        .iter()
                        .filter(|(n, _)| *n > from)
                        .map(|(_, p)| p.clone())
                        .collect();
                    sess.seq += 1;
                    out.push(json!({"op": 0, "t": "RESUMED", "s": sess.seq, "d": null}));
                    s.live = Some(live);
                    Some(Ok(out))
                }
            }
        }
    };
    match replay {
        None => {
            close(ws, 4004, "Authentication failed.").await;
            false
        }
        Some(Err(())) => ws.send(text(json!({"op": 9, "d": false}))).await.is_ok(),
        Some(Ok(out)) => {
            for p in out {
                if ws.send(text(p)).await.is_err() {
                    return false;
                }
            }
            true
        }
    }
}
