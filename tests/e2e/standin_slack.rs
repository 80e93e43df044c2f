//! A local stand-in of Slack, written from Slack's documentation:
//!
//! * The Web API (https://docs.slack.dev/apis/web-api): `POST`/`GET
//!   /api/<method>`, the token in `Authorization: Bearer …`, JSON or form bodies,
//!   answers `{"ok":true,…}` or `{"ok":false,"error":"<code>"}` with HTTP 200; a rate
//!   limit is HTTP 429 with a `Retry-After` header (seconds). Served: `auth.test`,
//!   `apps.connections.open` (app-level token in the header only; a single-use
//!   `wss://…/link/?ticket=…` URL, here `ws://127.0.0.1:<port>/link/?ticket=…`) and
//!   `chat.postMessage` (`channel`, `text`, `thread_ts`; errors `channel_not_found`,
//!   `not_in_channel`, `is_archived`, `no_text`, `msg_too_long`, `invalid_auth`).
//! * Socket Mode (https://docs.slack.dev/apis/events-api/using-socket-mode): a
//!   connection first receives `{"type":"hello",…}`; events come as `events_api`
//!   envelopes (`envelope_id`, `payload` = the Events API `event_callback`,
//!   `accepts_response_payload`, `retry_attempt`, `retry_reason`) and are acknowledged by
//!   sending `{"envelope_id":…}` back; an envelope not acknowledged is delivered again
//!   with `retry_attempt` raised (at most 3 retries); `{"type":"disconnect","reason":
//!   "refresh_requested"|"warning"|"link_disabled"}` asks the app to reconnect.
//!
//! Tests push user messages, script failures of the next `chat.postMessage` calls, send
//! `disconnect`s, make the open socket go silent (half-open: nothing is read, sent or
//! answered), and look at what arrived.

mod socket_mode;

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const BOT_TOKEN: &str = "xoxb-1111-2222-standinBOTsecret";
pub const APP_TOKEN: &str = "xapp-1-A0STANDIN-3333-standinAPPsecret";
pub const BOT_USER: &str = "U0BOT";
pub const BOT_ID: &str = "B0BOT";
pub const BOT_NAME: &str = "switchboard";
pub const TEAM: &str = "T0STANDIN";

/// What the next `chat.postMessage` does instead of succeeding.
#[derive(Debug, Clone)]
pub enum Fail {
    /// HTTP 429, `Retry-After: <secs>`, `{"ok":false,"error":"ratelimited"}`.
    RateLimited(u64),
    /// HTTP 200 `{"ok":false,"error":<code>}`.
    Error(&'static str),
    /// HTTP 500 with a non-JSON body.
    ServerError,
}

#[derive(Debug, Clone)]
pub struct Posted {
    pub channel: String,
    pub text: String,
    pub thread_ts: Option<String>,
    pub ts: String,
}

/// An envelope sent and not acknowledged yet.
#[derive(Debug, Clone)]
struct Unacked {
    /// Every envelope id it was sent under (an acknowledgement of any one counts).
    ids: Vec<String>,
    payload: Value,
    attempt: u64,
    sent_at: Instant,
}

pub struct State {
    pub auth_test_calls: u64,
    pub connections_open_calls: u64,
    /// Calls refused for a bad or missing token.
    pub refused_calls: u64,
    /// The bot token's answer to every call: `None` valid, else the error code.
    pub bot_token_error: Option<&'static str>,
    pub posted: Vec<Posted>,
    pub post_attempts: Vec<Instant>,
    pub fail_next: VecDeque<Fail>,
    /// What the next `apps.connections.open` calls do instead of succeeding.
    pub open_fail_next: VecDeque<Fail>,
    pub open_attempts: Vec<Instant>,
    tickets: HashSet<String>,
    next_id: u64,
    /// Socket connections opened, and open now (as the server sees them).
    pub sockets_opened: u64,
    pub sockets_open: u64,
    /// The most sockets open at the same time.
    pub max_open: u64,
    /// The connection that receives envelopes (the latest one).
    current: u64,
    /// Payloads to send on the current connection.
    outbox: VecDeque<Value>,
    unacked: Vec<Unacked>,
    /// Every envelope id sent, with its payload's event id.
    sent_ids: std::collections::HashMap<String, String>,
    /// Envelope ids acknowledged, in order, with the payload's event id.
    pub acks: Vec<(String, String)>,
    /// Acknowledgements of envelopes never sent, or sent once and acknowledged twice.
    pub unknown_acks: Vec<String>,
    /// Deliveries of an envelope again (`retry_attempt` > 0).
    pub retries_sent: u64,
    /// Unacknowledged envelopes are delivered again after this long (Slack: seconds).
    pub retry_after: Duration,
    /// Commands for the current connection.
    disconnect: Option<&'static str>,
    silence: bool,
    /// When the last silenced socket went quiet, and when the next one said hello.
    pub silenced_at: Option<Instant>,
    /// When the client dropped the silenced socket.
    pub silent_closed_at: Option<Instant>,
    pub hello_at: Vec<Instant>,
    ws_port: u16,
}

impl State {
    /// Envelopes sent and not acknowledged.
    pub fn unacked_count(&self) -> usize {
        self.unacked.len()
    }
}

pub struct Slack {
    /// The Web API base (`channels.slack.apiUrl`).
    pub url: String,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    _stop: (
        tokio::sync::oneshot::Sender<()>,
        tokio::sync::oneshot::Sender<()>,
    ),
}

impl Slack {
    /// Starts the Web API and the Socket Mode server on free loopback ports, each on a
    /// thread and runtime of its own.
    pub fn start() -> Slack {
        let state = Arc::new(Mutex::new(State {
            auth_test_calls: 0,
            connections_open_calls: 0,
            refused_calls: 0,
            bot_token_error: None,
            posted: Vec::new(),
            post_attempts: Vec::new(),
            fail_next: VecDeque::new(),
            open_fail_next: VecDeque::new(),
            open_attempts: Vec::new(),
            tickets: HashSet::new(),
            next_id: 0,
            sockets_opened: 0,
            sockets_open: 0,
            max_open: 0,
            current: 0,
            outbox: VecDeque::new(),
            unacked: Vec::new(),
            sent_ids: Default::default(),
            acks: Vec::new(),
            unknown_acks: Vec::new(),
            retries_sent: 0,
            retry_after: Duration::from_secs(3),
            disconnect: None,
            silence: false,
            silenced_at: None,
            silent_closed_at: None,
            hello_at: Vec::new(),
            ws_port: 0,
        }));
        let changed = Arc::new(Notify::new());
        let (s, n) = (Arc::clone(&state), Arc::clone(&changed));
        let (ws_port, ws_stop) =
            crate::harness::serve_on_thread(move |l| socket_mode::serve_sockets(l, s, n));
        state.lock().unwrap().ws_port = ws_port;
        let (s, n) = (Arc::clone(&state), Arc::clone(&changed));
        let (port, stop) = crate::harness::serve_on_thread(move |l| serve_api(l, s, n));
        Slack {
            url: format!("http://127.0.0.1:{port}/api"),
            state,
            changed,
            _stop: (stop, ws_stop),
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let t = f(&mut self.state.lock().unwrap());
        self.changed.notify_waiters();
        t
    }

    fn next_ts(s: &mut State) -> String {
        s.next_id += 1;
        format!("{}.{:06}", 1_700_000_000 + s.next_id, s.next_id)
    }

    /// Queues an `event_callback` for the current connection.
    fn push_event(&self, event: Value) {
        self.with(|s| {
            s.next_id += 1;
            let payload = json!({
                "token": "verification-token-unused",
                "team_id": TEAM,
                "api_app_id": "A0STANDIN",
                "event": event,
                "type": "event_callback",
                "event_id": format!("Ev{:08}", s.next_id),
                "event_time": 1_700_000_000 + s.next_id,
                "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": true}],
            });
            s.outbox.push_back(payload);
        });
    }

    /// A direct message from `user` (in the DM `D` + the user id's rest); its `ts`.
    pub fn push_dm(&self, user: &str, text: &str) -> String {
        let ts = self.with(Self::next_ts);
        self.push_event(json!({
            "type": "message", "channel": dm_of(user), "channel_type": "im",
            "user": user, "text": text, "ts": ts, "event_ts": ts,
        }));
        ts
    }

    /// A message in a channel. With `mention`, it starts with `<@U0BOT>` and comes as
    /// Slack sends it: a `message` event and an `app_mention` event for the same `ts`.
    pub fn push_channel(
        &self,
        channel: &str,
        user: &str,
        text: &str,
        mention: bool,
        thread_ts: Option<&str>,
    ) -> String {
        let ts = self.with(Self::next_ts);
        let text = if mention {
            format!("<@{BOT_USER}> {text}")
        } else {
            text.to_owned()
        };
        let mut ev = json!({
            "type": "message", "channel": channel, "channel_type": "channel",
            "user": user, "text": text, "ts": ts, "event_ts": ts,
        });
        if let Some(t) = thread_ts {
            ev["thread_ts"] = json!(t);
        }
        self.push_event(ev.clone());
        if mention {
            ev["type"] = json!("app_mention");
            ev.as_object_mut().unwrap().remove("channel_type");
            self.push_event(ev);
        }
        ts
    }

    /// Sends `{"type":"disconnect","reason":…}` on the current connection.
    pub fn disconnect(&self, reason: &'static str) {
        self.with(|s| s.disconnect = Some(reason));
    }

    /// The current connection stops reading, sending and answering pings (half-open).
    pub fn go_silent(&self) {
        self.with(|s| s.silence = true);
    }

    pub fn posted_to(&self, channel: &str) -> Vec<Posted> {
        self.with(|s| {
            s.posted
                .iter()
                .filter(|p| p.channel == channel)
                .cloned()
                .collect()
        })
    }

    /// Waits until `cond` holds on the state.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + crate::harness::WAIT;
        while Instant::now() < deadline {
            if cond(&self.state.lock().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("stand-in slack: timed out waiting for {what}");
    }
}

/// The DM channel id Slack would give the conversation with `user` (`U0ALICE` →
/// `D0ALICE`).
pub fn dm_of(user: &str) -> String {
    format!("D{}", &user[1..])
}

// ---- the Web API -----------------------------------------------------------------

async fn serve_api(listener: TcpListener, state: Arc<Mutex<State>>, changed: Arc<Notify>) {
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
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn error(code: &str) -> Response<Full<Bytes>> {
    reply(200, json!({"ok": false, "error": code}))
}

/// The arguments of a call: the query, then a JSON or form body.
fn arguments(query: &str, content_type: &str, body: &[u8]) -> Value {
    let mut args = json!({});
    let mut form = |text: &str| {
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            if let Some((k, v)) = pair.split_once('=') {
                args[k] = json!(v.replace('+', " "));
            }
        }
    };
    form(query);
    if content_type.starts_with("application/x-www-form-urlencoded") {
        form(&String::from_utf8_lossy(body));
    } else if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
        for (k, v) in m {
            args[k] = v;
        }
    }
    args
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
) -> Response<Full<Bytes>> {
    let method = req
        .uri()
        .path()
        .strip_prefix("/api/")
        .unwrap_or_default()
        .to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let post = req.method() == hyper::Method::POST;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let bearer = header("authorization")
        .strip_prefix("Bearer ")
        .map(str::to_owned);
    let content_type = header("content-type");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let args = arguments(&query, &content_type, &body);
    // "Tokens should be passed as an HTTP Authorization header or alternatively, as a
    // POST parameter."
    let token = bearer.or_else(|| args["token"].as_str().map(str::to_owned));
    let mut s = state.lock().unwrap();
    let r = match method.as_str() {
        "auth.test" => {
            s.auth_test_calls += 1;
            match bot_token(&mut s, token.as_deref()) {
                Err(code) => error(code),
                Ok(()) => reply(
                    200,
                    json!({"ok": true, "url": "https://standin.slack.com/", "team": "Standin",
                        "user": BOT_NAME, "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID,
                        "is_enterprise_install": false}),
                ),
            }
        }
        "apps.connections.open" => {
            s.connections_open_calls += 1;
            s.open_attempts.push(Instant::now());
            if let Some(f) = s.open_fail_next.pop_front() {
                return failure(f);
            }
            if !post {
                error("insecure_request")
            } else if token.as_deref() != Some(APP_TOKEN) {
                s.refused_calls += 1;
                error(if token.is_none() {
                    "not_authed"
                } else {
                    "invalid_auth"
                })
            } else {
                s.next_id += 1;
                let ticket = format!("tk{:06}", s.next_id);
                s.tickets.insert(ticket.clone());
                reply(
                    200,
                    json!({"ok": true, "url": format!("ws://127.0.0.1:{}/link/?ticket={ticket}&app_id=A0STANDIN", s.ws_port)}),
                )
            }
        }
        "chat.postMessage" => post_message(&mut s, token.as_deref(), &args),
        _ => error("unknown_method"),
    };
    drop(s);
    changed.notify_waiters();
    r
}

fn bot_token(s: &mut State, token: Option<&str>) -> Result<(), &'static str> {
    let refusal = match token {
        None => Some("not_authed"),
        Some(BOT_TOKEN) => s.bot_token_error,
        Some(_) => Some("invalid_auth"),
    };
    match refusal {
        Some(code) => {
            s.refused_calls += 1;
            Err(code)
        }
        None => Ok(()),
    }
}

fn failure(f: Fail) -> Response<Full<Bytes>> {
    match f {
        Fail::RateLimited(secs) => Response::builder()
            .status(429)
            .header("retry-after", secs.to_string())
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(
                r#"{"ok":false,"error":"ratelimited"}"#,
            )))
            .unwrap(),
        Fail::Error(code) => error(code),
        Fail::ServerError => Response::builder()
            .status(500)
            .header("content-type", "text/html")
            .body(Full::new(Bytes::from("<html>Internal Server Error</html>")))
            .unwrap(),
    }
}

fn post_message(s: &mut State, token: Option<&str>, args: &Value) -> Response<Full<Bytes>> {
    s.post_attempts.push(Instant::now());
    if let Err(code) = bot_token(s, token) {
        return error(code);
    }
    if let Some(f) = s.fail_next.pop_front() {
        return match f {
            Fail::RateLimited(secs) => Response::builder()
                .status(429)
                .header("retry-after", secs.to_string())
                .header("content-type", "application/json; charset=utf-8")
                .body(Full::new(Bytes::from(
                    r#"{"ok":false,"error":"ratelimited"}"#,
                )))
                .unwrap(),
            Fail::Error(code) => error(code),
            Fail::ServerError => Response::builder()
                .status(500)
                .header("content-type", "text/html")
                .body(Full::new(Bytes::from("<html>Internal Server Error</html>")))
                .unwrap(),
        };
    }
    let Some(channel) = args["channel"].as_str().filter(|c| !c.is_empty()) else {
        return error("channel_not_found");
    };
    let text = args["text"].as_str().unwrap_or_default();
    if text.is_empty() {
        return error("no_text");
    }
    if text.chars().count() > 40_000 {
        return error("msg_too_long");
    }
    // A user id posts into the app's DM with that user.
    let channel = if channel.starts_with('U') {
        dm_of(channel)
    } else {
        channel.to_owned()
    };
    let ts = Slack::next_ts(s);
    let thread_ts = args["thread_ts"].as_str().map(str::to_owned);
    s.posted.push(Posted {
        channel: channel.clone(),
        text: text.to_owned(),
        thread_ts: thread_ts.clone(),
        ts: ts.clone(),
    });
    let mut message = json!({"type": "message", "text": text, "user": BOT_USER, "bot_id": BOT_ID,
        "ts": ts, "team": TEAM});
    if let Some(t) = &thread_ts {
        message["thread_ts"] = json!(t);
    }
    // Slack sends the bot's own message back as an event: the worker must ignore it.
    let mut echo = message.clone();
    echo["channel"] = json!(channel);
    echo["channel_type"] = json!(if channel.starts_with('D') {
        "im"
    } else {
        "channel"
    });
    s.next_id += 1;
    let payload = json!({"type": "event_callback", "team_id": TEAM, "api_app_id": "A0STANDIN",
        "event": echo, "event_id": format!("Ev{:08}", s.next_id), "event_time": 1_700_000_000 + s.next_id});
    s.outbox.push_back(payload);
    reply(
        200,
        json!({"ok": true, "channel": channel, "ts": ts, "message": message}),
    )
}
