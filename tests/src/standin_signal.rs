//! A stand-in of signal-cli's JSON-RPC daemon in HTTP mode (`signal-cli -a ACCOUNT daemon
//! --http HOST:PORT`), written from its documentation: the `signal-cli-jsonrpc(5)` and
//! `signal-cli(1)` man pages (0.14). signal-cli itself cannot run here (it needs Java 21+
//! and a registered phone number), so this stand-in is the whole test of the Signal
//! worker. What it serves, as documented:
//!
//! * `POST /api/v1/rpc`: one JSON-RPC 2.0 request (`Content-Type: application/json`,
//!   else 415). Methods: `version`, `listAccounts` (multi-account daemons only; a
//!   single-account daemon answers -32601), `send` (`recipient` list or `groupId`,
//!   `message`) answering `{timestamp, results:[{recipientAddress, type,
//!   retryAfterSeconds?}]}`; a direct send without any success is an error whose
//!   `data.response` holds those results: −4 when only untrusted identities failed, −5
//!   when only rate limits did, else −1; −3 for I/O errors.
//! * `GET /api/v1/events`: Server-Sent Events, `event:receive` / `data:{"envelope":…,
//!   "account":…}`, a `:` keep-alive every 15 s (configurable here).
//! * `GET /api/v1/check`: 200 while running.
//! * A `Host` header other than the bound host or loopback names is refused with 421.
//!
//! Receiving: with `--receive-mode on-connection` signal-cli fetches messages from Signal
//! only while an event stream is open, so messages sent meanwhile wait at Signal's
//! servers (here: in `queue`); with the default `on-start` it receives all the time and
//! what arrives while no stream is open goes to stdout or, with `--no-receive-stdout`,
//! nowhere (here: `dropped`).
//!
//! For tests only (not signal-cli's API): `POST /standin/push` queues an envelope and
//! `GET /standin/state` shows what was sent, for tests that drive a stand-in executable.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

pub const VERSION: &str = "0.14.0";

/// What the next `send` does instead of succeeding.
#[derive(Debug, Clone)]
pub enum Fail {
    /// Every recipient `RATE_LIMIT_FAILURE` with `retryAfterSeconds` (a direct send:
    /// error −5).
    RateLimit(u64),
    /// `UNREGISTERED_FAILURE` (a direct send: error −1).
    Unregistered,
    /// `IDENTITY_FAILURE` (error −4).
    Untrusted,
    /// Error −3.
    IoError,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub recipients: Vec<String>,
    pub group_id: Option<String>,
    pub message: String,
    pub timestamp: i64,
}

pub struct State {
    pub account: String,
    /// `listAccounts` (a multi-account daemon); `None`: a single-account daemon.
    pub accounts: Option<Vec<String>>,
    pub keepalive: Duration,
    /// `--receive-mode on-connection`.
    pub on_connection: bool,
    /// Envelopes waiting at "Signal's servers" for an open stream.
    queue: VecDeque<Value>,
    /// Envelopes received while no stream was open in `on-start` mode: gone.
    pub dropped: Vec<Value>,
    /// Events written to streams.
    pub delivered: u64,
    pub sent: Vec<Sent>,
    pub send_attempts: Vec<Instant>,
    pub fail_next: VecDeque<Fail>,
    pub streams_opened: u64,
    pub streams_open: u64,
    /// Streams with an id up to this one send nothing at all (a wedged stream).
    silent_upto: u64,
    /// The stream writing the next events is cut after this many more.
    cut_after: Option<u64>,
    pub methods: Vec<String>,
    /// `version` fails with an I/O error (a daemon that stopped answering).
    pub version_fails: bool,
    /// Requests refused with 4xx (wrong content type, Host, method).
    pub refused_requests: u64,
    next_ts: i64,
    /// Runs when a `send` has been accepted, before the answer goes out (a test kills
    /// the worker exactly there).
    pub on_accept: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
}

impl State {
    pub fn new_for(account: &str) -> State {
        State {
            account: account.to_owned(),
            accounts: None,
            keepalive: Duration::from_secs(15),
            on_connection: true,
            queue: VecDeque::new(),
            dropped: Vec::new(),
            delivered: 0,
            sent: Vec::new(),
            send_attempts: Vec::new(),
            fail_next: VecDeque::new(),
            streams_opened: 0,
            streams_open: 0,
            silent_upto: 0,
            cut_after: None,
            methods: Vec::new(),
            version_fails: false,
            refused_requests: 0,
            next_ts: 1_700_000_000_000,
            on_accept: None,
        }
    }

    fn ts(&mut self) -> i64 {
        self.next_ts += 1;
        self.next_ts
    }

    fn healthy_streams(&self) -> u64 {
        // Streams are numbered in order; the silent ones are the oldest.
        self.streams_open
            .saturating_sub(self.silent_upto.min(self.streams_open))
    }

    /// Queues a received envelope, as Signal's servers hold it for signal-cli.
    pub fn receive(&mut self, envelope: Value) {
        let v = json!({"envelope": envelope, "account": self.account});
        if !self.on_connection && self.healthy_streams() == 0 {
            self.dropped.push(v);
        } else {
            self.queue.push_back(v);
        }
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The streams open now go silent (no keep-alive, no event) until closed.
    pub fn silence_open_streams(&mut self) {
        self.silent_upto = self.streams_opened;
    }

    /// The stream that writes the next `n` events is cut right after them.
    pub fn cut_after(&mut self, n: u64) {
        self.cut_after = Some(n);
    }
}

/// An envelope with a text `dataMessage`, as signal-cli writes it.
pub fn envelope(number: &str, uuid: &str, name: &str, ts: i64, data: Value) -> Value {
    let mut dm = json!({"timestamp": ts, "expiresInSeconds": 0, "viewOnce": false, "mentions": [], "attachments": []});
    if let (Some(o), Some(d)) = (dm.as_object_mut(), data.as_object()) {
        for (k, v) in d {
            o.insert(k.clone(), v.clone());
        }
    }
    json!({"source": number, "sourceNumber": number, "sourceUuid": uuid, "sourceName": name,
        "sourceDevice": 1, "timestamp": ts, "serverReceivedTimestamp": ts + 5,
        "serverDeliveredTimestamp": ts + 6, "dataMessage": dm})
}

/// A running stand-in daemon, on a thread and runtime of its own; stops when dropped.
pub struct Daemon {
    pub url: String,
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    pub changed: Arc<Notify>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Daemon {
    /// On a free loopback port; `set` adjusts the state first (keep-alive, accounts).
    pub fn start(account: &str, set: impl FnOnce(&mut State)) -> Daemon {
        let mut st = State::new_for(account);
        set(&mut st);
        let state = Arc::new(Mutex::new(st));
        let changed = Arc::new(Notify::new());
        let (s, n) = (Arc::clone(&state), Arc::clone(&changed));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                port_tx.send(l.local_addr().unwrap().port()).unwrap();
                tokio::select! {
                    _ = stop_rx => {}
                    _ = serve(l, "127.0.0.1".into(), s, n) => {}
                }
            });
        });
        let port = port_rx.recv().expect("stand-in port");
        Daemon {
            url: format!("http://127.0.0.1:{port}"),
            port,
            state,
            changed,
            stop: Some(stop_tx),
        }
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let r = f(&mut self.state.lock().unwrap());
        self.changed.notify_waiters();
        r
    }

    /// A direct message; returns its timestamp.
    pub fn push_dm(&self, number: &str, uuid: &str, name: &str, text: &str) -> i64 {
        self.with(|s| {
            let ts = s.ts();
            s.receive(envelope(number, uuid, name, ts, json!({"message": text})));
            ts
        })
    }

    /// A group message; with `mention`, it mentions the account (U+FFFC in the text).
    pub fn push_group(
        &self,
        group: &str,
        number: &str,
        name: &str,
        text: &str,
        mention: bool,
    ) -> i64 {
        self.with(|s| {
            let ts = s.ts();
            let acct = s.account.clone();
            let mut data = json!({"message": text, "groupInfo": {"groupId": group, "groupName": "Team", "revision": 3, "type": "DELIVER"}});
            if mention {
                data["message"] = json!(format!("\u{FFFC} {text}"));
                data["mentions"] = json!([{"name": acct, "number": acct, "uuid": "5a3c0000-0000-4000-8000-00000000b075", "start": 0, "length": 1}]);
            }
            s.receive(envelope(number, &uuid_of(number), name, ts, data));
            ts
        })
    }

    /// The same envelope again (as after a redelivery).
    pub fn push_raw(&self, envelope: Value) {
        self.with(|s| s.receive(envelope));
    }

    pub fn sent_to(&self, who: &str) -> Vec<Sent> {
        self.with(|s| {
            s.sent
                .iter()
                .filter(|m| {
                    m.recipients.iter().any(|r| r == who) || m.group_id.as_deref() == Some(who)
                })
                .cloned()
                .collect()
        })
    }

    /// Waits until `cond` holds on the state.
    pub fn wait_for(&self, what: &str, timeout: Duration, cond: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond(&self.state.lock().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("stand-in signal-cli: timed out waiting for {what}");
    }
}

/// A stable fake UUID for a number (`+15550000042` → `…-000015550000042`).
pub fn uuid_of(number: &str) -> String {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    format!(
        "0b3d6c1e-3f0a-4d5e-9a8b-{:0>12}",
        &digits[digits.len().saturating_sub(12)..]
    )
}

type Body = BoxBody<Bytes, Infallible>;

/// Serves the daemon's API on `listener`; `host` is the address it was bound to.
pub async fn serve(
    listener: TcpListener,
    host: String,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (s, n, h) = (Arc::clone(&state), Arc::clone(&changed), host.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (s, n, h) = (Arc::clone(&s), Arc::clone(&n), h.clone());
                async move { Ok::<_, Infallible>(handle(req, &h, s, n).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn status(code: u16) -> Response<Body> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}

fn json_reply(v: Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap()
}

fn host_allowed(req: &Request<hyper::body::Incoming>, bound: &str) -> bool {
    let Some(h) = req.headers().get("host").and_then(|h| h.to_str().ok()) else {
        return true;
    };
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        h.rsplit_once(':').map(|(n, _)| n).unwrap_or(h)
    };
    let name = name.to_ascii_lowercase();
    name == bound || ["localhost", "127.0.0.1", "::1"].contains(&name.as_str())
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    bound: &str,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().as_str().to_owned();
    let refuse = |code: u16| {
        state.lock().unwrap().refused_requests += 1;
        status(code)
    };
    match path.as_str() {
        "/api/v1/check" if method == "GET" => return status(200),
        "/api/v1/check" => return refuse(405),
        "/api/v1/rpc" | "/api/v1/events" if !host_allowed(&req, bound) => return refuse(421),
        "/api/v1/rpc" if method != "POST" => return refuse(405),
        "/api/v1/events" if method != "GET" => return refuse(405),
        "/api/v1/events" => return events(state, changed),
        _ => {}
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    match path.as_str() {
        "/api/v1/rpc" => {
            if !content_type.starts_with("application/json") {
                return refuse(415);
            }
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return json_reply(
                    json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error", "data": null}, "id": null}),
                );
            };
            let id = v.get("id").cloned().unwrap_or(Value::Null);
            let out = match rpc(&v, &state) {
                Ok(result) => json!({"jsonrpc": "2.0", "result": result, "id": id}),
                Err((code, message, data)) => {
                    json!({"jsonrpc": "2.0", "error": {"code": code, "message": message, "data": data}, "id": id})
                }
            };
            changed.notify_waiters();
            json_reply(out)
        }
        "/standin/push" if method == "POST" => {
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return refuse(400);
            };
            state.lock().unwrap().receive(v);
            changed.notify_waiters();
            status(200)
        }
        "/standin/state" => {
            let s = state.lock().unwrap();
            let sent: Vec<Value> = s
                .sent
                .iter()
                .map(|m| json!({"recipients": m.recipients, "groupId": m.group_id, "message": m.message, "timestamp": m.timestamp}))
                .collect();
            json_reply(
                json!({"sent": sent, "streamsOpened": s.streams_opened, "streamsOpen": s.streams_open,
                "queued": s.queue.len(), "dropped": s.dropped.len(), "delivered": s.delivered}),
            )
        }
        _ => refuse(404),
    }
}

type RpcResult = Result<Value, (i64, String, Value)>;

fn rpc(v: &Value, state: &Mutex<State>) -> RpcResult {
    let mut s = state.lock().unwrap();
    let Some(method) = v["method"].as_str() else {
        return Err((-32600, "method field must be set".into(), Value::Null));
    };
    s.methods.push(method.to_owned());
    let params = v.get("params").cloned().unwrap_or(json!({}));
    if let (Some(accounts), Some(a)) = (&s.accounts, params["account"].as_str())
        && !accounts.iter().any(|x| x == a)
    {
        return Err((
            -32602,
            "Specified account does not exist".into(),
            Value::Null,
        ));
    }
    match method {
        "version" if s.version_fails => Err((-3, "IO error".into(), Value::Null)),
        "version" => Ok(json!({"version": VERSION})),
        "listAccounts" => match &s.accounts {
            Some(list) => Ok(Value::Array(
                list.iter().map(|n| json!({"number": n})).collect(),
            )),
            None => Err((-32601, "Method not implemented".into(), Value::Null)),
        },
        "send" => send(&mut s, &params),
        _ => Err((-32601, "Method not implemented".into(), Value::Null)),
    }
}

fn send(s: &mut State, p: &Value) -> RpcResult {
    s.send_attempts.push(Instant::now());
    let Some(message) = p["message"].as_str() else {
        return Err((-1, "No message given".into(), Value::Null));
    };
    let recipients: Vec<String> = match &p["recipient"] {
        Value::String(r) => vec![r.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect(),
        _ => vec![],
    };
    let group = p["groupId"].as_str().map(str::to_owned);
    if recipients.is_empty() && group.is_none() {
        return Err((-1, "No recipients given".into(), Value::Null));
    }
    let ts = s.ts();
    // A group's results name its members.
    let addresses: Vec<String> = match &group {
        Some(_) => vec!["+15550009001".into(), "+15550009002".into()],
        None => recipients.clone(),
    };
    let address = |r: &str| {
        if r.starts_with('+') {
            json!({"uuid": uuid_of(r), "number": r})
        } else {
            json!({"uuid": r, "number": null})
        }
    };
    let fail = s.fail_next.pop_front();
    if let Some(Fail::IoError) = fail {
        return Err((
            -3,
            "Failed to send message: connection to Signal's servers failed".into(),
            Value::Null,
        ));
    }
    let results: Vec<Value> = addresses
        .iter()
        .map(|r| {
            let mut one = json!({"recipientAddress": address(r), "type": "SUCCESS"});
            if let Some(g) = &group {
                one["groupId"] = json!(g);
            }
            match &fail {
                Some(Fail::RateLimit(secs)) => {
                    one["type"] = json!("RATE_LIMIT_FAILURE");
                    one["retryAfterSeconds"] = json!(secs);
                }
                Some(Fail::Unregistered) => one["type"] = json!("UNREGISTERED_FAILURE"),
                Some(Fail::Untrusted) => one["type"] = json!("IDENTITY_FAILURE"),
                _ => {}
            }
            one
        })
        .collect();
    let response = json!({"timestamp": ts, "results": results});
    match (&fail, &group) {
        (None, _) => {
            s.sent.push(Sent {
                recipients,
                group_id: group,
                message: message.to_owned(),
                timestamp: ts,
            });
            if let Some(hook) = s.on_accept.clone() {
                hook();
            }
            Ok(response)
        }
        // A group send reports per-member failures in its result.
        (Some(_), Some(_)) => Ok(response),
        (Some(Fail::Untrusted), None) => Err((
            -4,
            "Failed to send message due to untrusted identities".into(),
            json!({"response": response}),
        )),
        (Some(Fail::RateLimit(_)), None) => Err((
            -5,
            "Failed to send message due to rate limiting".into(),
            json!({"response": response}),
        )),
        (Some(_), None) => Err((
            -1,
            "Failed to send message".into(),
            json!({"response": response}),
        )),
    }
}

/// One event stream: queued envelopes as `receive` events, `:` keep-alives.
fn events(state: Arc<Mutex<State>>, changed: Arc<Notify>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let id = {
        let mut s = state.lock().unwrap();
        s.streams_opened += 1;
        s.streams_open += 1;
        s.streams_opened
    };
    changed.notify_waiters();
    tokio::spawn(async move {
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (event, cut, keepalive, silent) = {
                let mut s = state.lock().unwrap();
                let silent = id <= s.silent_upto;
                let mut event = None;
                let mut cut = false;
                if !silent && let Some(v) = s.queue.pop_front() {
                    s.delivered += 1;
                    if let Some(n) = s.cut_after.as_mut() {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            s.cut_after = None;
                            cut = true;
                        }
                    }
                    event = Some(v);
                }
                (event, cut, s.keepalive, silent)
            };
            if let Some(v) = event {
                let frame = format!("event:receive\ndata:{v}\n\n");
                if tx.send(Bytes::from(frame)).await.is_err() {
                    state.lock().unwrap().queue.push_front(v);
                    break;
                }
                if cut {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = notified => {}
                _ = tx.closed() => break,
                _ = tokio::time::sleep(keepalive) => {
                    if !silent && tx.send(Bytes::from_static(b":\n")).await.is_err() {
                        break;
                    }
                }
            }
        }
        drop(tx);
        state.lock().unwrap().streams_open -= 1;
        changed.notify_waiters();
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(stream).boxed())
        .unwrap()
}
