//! A local stand-in of the Telegram Bot API (https://core.telegram.org/bots/api), as
//! documented: `POST /bot<token>/<method>` with a JSON body, answered with
//! `{"ok":true,"result":…}` or `{"ok":false,"error_code":…,"description":…,
//! "parameters":{"retry_after":…}}`. It serves `getMe`, `getUpdates` (offsets confirm
//! updates; long polling waits up to `timeout` seconds) and `sendMessage`.
//!
//! Tests push user messages in, script failures of the next `sendMessage` calls, and
//! count what arrived. The real worker's HTTP client (teloxide-core over reqwest) talks to
//! it with keep-alive connections, hence a real HTTP/1.1 server (hyper).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const BOT_TOKEN: &str = "123456:standin-secret-TOKEN_x";
pub const BOT_USERNAME: &str = "sb_test_bot";
pub const BOT_ID: i64 = 123456;

/// What the next `sendMessage` does instead of succeeding.
#[derive(Debug, Clone)]
pub enum Fail {
    /// 429 with `parameters.retry_after`.
    RetryAfter(u64),
    /// 400 `Bad Request: chat not found`.
    ChatNotFound,
    /// 403 `Forbidden: bot was blocked by the user`.
    Blocked,
    /// 500 `Internal Server Error`.
    ServerError,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub chat_id: String,
    pub text: String,
    pub message_id: i64,
}

#[derive(Default)]
pub struct State {
    /// Updates not yet confirmed by an offset.
    queue: Vec<Value>,
    next_update_id: i64,
    next_message_id: i64,
    pub sent: Vec<Sent>,
    pub send_attempts: Vec<Instant>,
    pub get_me_calls: u64,
    pub get_updates_calls: u64,
    /// The highest offset a `getUpdates` confirmed with.
    pub confirmed_offset: i64,
    pub fail_next: VecDeque<Fail>,
    /// Requests whose path did not carry the right token.
    pub unauthorized_calls: u64,
    /// Runs when a `sendMessage` has been accepted, before the answer goes out (a test
    /// breaks the gateway's disk exactly there).
    pub on_accept: Option<Arc<dyn Fn() + Send + Sync>>,
}

pub struct Telegram {
    pub url: String,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Telegram {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Telegram {
    /// Starts on a free loopback port, on a thread and runtime of its own.
    pub fn start() -> Telegram {
        let state = Arc::new(Mutex::new(State {
            next_update_id: 1000,
            next_message_id: 500,
            ..State::default()
        }));
        let changed = Arc::new(Notify::new());
        let (s, n) = (Arc::clone(&state), Arc::clone(&changed));
        let (port, stop_tx) = crate::harness::serve_on_thread(move |l| serve(l, s, n));
        Telegram {
            url: format!("http://127.0.0.1:{port}"),
            state,
            changed,
            stop: Some(stop_tx),
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    fn push(&self, message: Value) -> i64 {
        let id = self.with(|s| {
            s.next_update_id += 1;
            s.next_message_id += 1;
            let mut m = message;
            m["message_id"] = json!(s.next_message_id);
            m["date"] = json!(unix_now());
            s.queue
                .push(json!({"update_id": s.next_update_id, "message": m}));
            s.next_message_id
        });
        self.changed.notify_waiters();
        id
    }

    /// A direct message from a user; returns its message id.
    pub fn push_dm(&self, user_id: i64, name: &str, text: &str) -> i64 {
        let user = json!({"id": user_id, "is_bot": false, "first_name": name, "username": name.to_lowercase()});
        self.push(json!({
            "from": user,
            "chat": {"id": user_id, "type": "private", "first_name": name, "username": name.to_lowercase()},
            "text": text,
        }))
    }

    /// A message in a supergroup; with `mention`, it starts with `@<bot>` (a mention entity).
    pub fn push_group(
        &self,
        chat_id: i64,
        user_id: i64,
        name: &str,
        text: &str,
        mention: bool,
    ) -> i64 {
        let user = json!({"id": user_id, "is_bot": false, "first_name": name});
        let (text, entities) = if mention {
            let handle = format!("@{BOT_USERNAME}");
            (
                format!("{handle} {text}"),
                json!([{"type": "mention", "offset": 0, "length": handle.chars().count()}]),
            )
        } else {
            (text.to_owned(), json!([]))
        };
        self.push(json!({
            "from": user,
            "chat": {"id": chat_id, "type": "supergroup", "title": "Team"},
            "text": text,
            "entities": entities,
        }))
    }

    /// A photo without a caption: no text at all.
    pub fn push_photo(&self, user_id: i64) -> i64 {
        self.push(json!({
            "from": {"id": user_id, "is_bot": false, "first_name": "P"},
            "chat": {"id": user_id, "type": "private", "first_name": "P"},
            "photo": [{"file_id": "f1", "file_unique_id": "u1", "width": 10, "height": 10}],
        }))
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.with(|s| s.sent.clone())
    }

    pub fn sent_to(&self, chat: &str) -> Vec<Sent> {
        self.sent()
            .into_iter()
            .filter(|m| m.chat_id == chat)
            .collect()
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
        panic!("stand-in telegram: timed out waiting for {what}");
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>, changed: Arc<Notify>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (s, n) = (Arc::clone(&state), Arc::clone(&changed));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (s, n) = (Arc::clone(&s), Arc::clone(&n));
                async move { Ok::<_, Infallible>(handle(req, s, n).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn api_error(code: u16, description: &str, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(r) = retry_after {
        body["parameters"] = json!({"retry_after": r});
    }
    reply(code, body)
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut params: Value = serde_json::from_slice(&body).unwrap_or_else(|_| json!({}));
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if let Some((k, v)) = pair.split_once('=') {
            params[k] = v
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| json!(v));
        }
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (auth, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if auth != format!("bot{BOT_TOKEN}") {
        state.lock().unwrap().unauthorized_calls += 1;
        return api_error(401, "Unauthorized", None);
    }
    match method.to_ascii_lowercase().as_str() {
        "getme" => {
            state.lock().unwrap().get_me_calls += 1;
            reply(
                200,
                json!({"ok": true, "result": {
                    "id": BOT_ID, "is_bot": true, "first_name": "Switchboard Test", "username": BOT_USERNAME,
                    "can_join_groups": true, "can_read_all_group_messages": false,
                    "supports_inline_queries": false, "has_main_web_app": false,
                }}),
            )
        }
        "getupdates" => {
            let offset = params["offset"].as_i64();
            let timeout = params["timeout"].as_u64().unwrap_or(0).min(60);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
            loop {
                let notified = changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let ready = {
                    let mut s = state.lock().unwrap();
                    s.get_updates_calls += 1;
                    if let Some(o) = offset {
                        // An offset confirms every update before it (the API's rule).
                        s.queue
                            .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= o);
                        s.confirmed_offset = s.confirmed_offset.max(o);
                    }
                    s.queue.clone()
                };
                if !ready.is_empty() || tokio::time::Instant::now() >= deadline {
                    return reply(200, json!({"ok": true, "result": ready}));
                }
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
        "sendmessage" => {
            let chat_id = match &params["chat_id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let text = params["text"].as_str().unwrap_or("").to_owned();
            let mut s = state.lock().unwrap();
            s.send_attempts.push(Instant::now());
            if let Some(f) = s.fail_next.pop_front() {
                return match f {
                    Fail::RetryAfter(secs) => api_error(
                        429,
                        &format!("Too Many Requests: retry after {secs}"),
                        Some(secs),
                    ),
                    Fail::ChatNotFound => api_error(400, "Bad Request: chat not found", None),
                    Fail::Blocked => api_error(403, "Forbidden: bot was blocked by the user", None),
                    Fail::ServerError => api_error(500, "Internal Server Error", None),
                };
            }
            if text.is_empty() {
                return api_error(400, "Bad Request: message text is empty", None);
            }
            s.next_message_id += 1;
            let id = s.next_message_id;
            s.sent.push(Sent {
                chat_id: chat_id.clone(),
                text: text.clone(),
                message_id: id,
            });
            if let Some(hook) = s.on_accept.clone() {
                hook();
            }
            let chat_num: i64 = chat_id.parse().unwrap_or(0);
            let chat = if chat_num < 0 {
                json!({"id": chat_num, "type": "supergroup", "title": "Team"})
            } else {
                json!({"id": chat_num, "type": "private", "first_name": "U"})
            };
            reply(
                200,
                json!({"ok": true, "result": {
                    "message_id": id, "date": unix_now(), "chat": chat, "text": text,
                    "from": {"id": BOT_ID, "is_bot": true, "first_name": "Switchboard Test", "username": BOT_USERNAME},
                }}),
            )
        }
        other => api_error(404, &format!("Not Found: method {other}"), None),
    }
}
