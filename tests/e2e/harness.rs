//! Starting the real binaries and talking to them over real sockets.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous bound for anything a loaded 2-core machine should do "at once".
pub const WAIT: Duration = Duration::from_secs(20);

/// A binary of the workspace, next to this test executable.
///
/// `cargo test --workspace` builds only the binaries of packages that have integration
/// tests of their own, so the first call builds every target of the workspace (a no-op
/// when they are fresh) into the same target directory and profile; a stale binary can
/// never be tested by accident.
pub fn bin(name: &str) -> PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    BUILD.call_once(|| {
        let target_dir = profile_dir.parent().expect("target dir");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut cmd = Command::new(env!("CARGO"));
        // `--all-targets` resolves features as `cargo test --workspace` does (dev-dependency
        // features included), so this is a no-op after the test build, not a rebuild.
        cmd.args(["build", "--workspace", "--all-targets", "--quiet"])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the workspace binaries failed");
    });
    let path = profile_dir.join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A running `switchboard gateway run`, killed (by PID) when dropped.
pub struct Gateway {
    pub child: Child,
    pub port: u16,
    pub state: Arc<tempfile::TempDir>,
    log: Arc<Mutex<String>>,
}

pub struct GatewayOpts {
    pub token: Option<String>,
    pub extra: Vec<String>,
    pub state: Option<Arc<tempfile::TempDir>>,
    pub port: u16,
    pub env: Vec<(String, String)>,
}

impl Default for GatewayOpts {
    fn default() -> Self {
        GatewayOpts {
            token: Some(TOKEN.into()),
            extra: vec![],
            state: None,
            port: 0,
            env: vec![],
        }
    }
}

pub const TOKEN: &str = "e2e-secret-token-3f9a";

/// Spawns the gateway without waiting for it; returns the child and its log.
pub fn spawn_gateway(opts: &GatewayOpts, state: &Path) -> (Child, Arc<Mutex<String>>) {
    let mut cmd = Command::new(bin("switchboard"));
    cmd.args(["gateway", "run", "--port", &opts.port.to_string()])
        .arg("--state-dir")
        .arg(state)
        .args(&opts.extra)
        .env_remove("SWITCHBOARD_GATEWAY_TOKEN")
        .env_remove("CLAWDBOT_GATEWAY_TOKEN")
        .env_remove("OPENCLAW_GATEWAY_TOKEN")
        .env("SWITCHBOARD_LOG", "info")
        // Replies at once unless a test asks for a visible stream (the default streams a
        // word every 40 ms: a 1 000-word reply would take 40 s).
        .env("SWITCHBOARD_AGENT_ECHO_DELAY_MS", "0")
        // Each test gateway's v3 canvas port is a free one (not the default 18793, which
        // only one of the many gateways a run starts could have).
        .env("SWITCHBOARD_CANVAS_PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(t) = &opts.token {
        cmd.args(["--token", t]);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn switchboard");
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("stderr piped");
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    (child, log)
}

/// Waits until `cond` holds on the log, or panics with the log.
pub fn wait_log(log: &Mutex<String>, what: &str, cond: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond(&log.lock().unwrap()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!(
        "timed out waiting for {what}; log:\n{}",
        log.lock().unwrap()
    );
}

impl Gateway {
    pub fn start() -> Gateway {
        Gateway::start_with(GatewayOpts::default())
    }

    pub fn start_with(opts: GatewayOpts) -> Gateway {
        Gateway::start_until(opts, |l| l.contains(" ERROR "))
    }

    /// Starts a gateway expected to log errors while it serves (a damaged database):
    /// waits for it to listen, or to exit.
    pub fn start_degraded(opts: GatewayOpts) -> Gateway {
        Gateway::start_until(opts, |l| l.contains("gateway stopped"))
    }

    fn start_until(opts: GatewayOpts, failed: impl Fn(&str) -> bool) -> Gateway {
        let state = opts
            .state
            .clone()
            .unwrap_or_else(|| Arc::new(tempfile::tempdir().expect("tempdir")));
        let (child, log) = spawn_gateway(&opts, state.path());
        let child = std::cell::RefCell::new(child);
        wait_log(&log, "the gateway to listen", |l| {
            l.contains("listening on ws://")
                || l.contains("listening on wss://")
                || failed(l)
                || child.borrow_mut().try_wait().ok().flatten().is_some()
        });
        let child = child.into_inner();
        let port = {
            let l = log.lock().unwrap();
            let Some(at) = l.find("listening on ws") else {
                panic!("gateway failed to start:\n{l}");
            };
            let Some(scheme_end) = l[at..].find("://") else {
                panic!("no address in the listening line:\n{l}");
            };
            let addr: String = l[at + scheme_end + 3..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            let port = addr.rsplit(':').next().unwrap_or_default();
            port.parse().expect("port number")
        };
        Gateway {
            child,
            port,
            state,
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `cond` holds on the gateway's log.
    pub fn wait_log(&self, what: &str, cond: impl Fn(&str) -> bool) {
        wait_log(&self.log, what, cond);
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)
            .expect("signal gateway");
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Give the log reader a moment to drain the pipe.
                std::thread::sleep(Duration::from_millis(50));
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("gateway did not exit; log:\n{}", self.log());
    }

    /// Resident memory of the gateway process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A raw WebSocket client.
pub struct Client {
    pub ws: Ws,
    next_id: u64,
    /// Frames read while looking for something else.
    pub backlog: Vec<Value>,
}

/// What the socket did next.
#[derive(Debug)]
pub enum Next {
    Frame(Value),
    /// A text frame that is not JSON.
    Text(#[allow(dead_code)] String),
    Closed(Option<(u16, String)>),
}

impl Client {
    /// This worker's row of `workers.list` (`null` when there is none).
    pub async fn worker(&mut self, name: &str) -> Value {
        let r = self.request("workers.list", json!({})).await;
        assert_eq!(r["ok"], true, "{r}");
        r["payload"]["workers"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["name"] == name).cloned())
            .unwrap_or(Value::Null)
    }

    /// Polls `workers.list` until `pred` holds for worker `name`; `what` names the
    /// condition in the failure message.
    pub async fn wait_worker(
        &mut self,
        name: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let w = self.worker(name).await;
            if pred(&w) {
                return w;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for worker {name} to be {what}: {w}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn open(url: &str) -> Client {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("websocket connect");
        Client {
            ws,
            next_id: 0,
            backlog: vec![],
        }
    }

    /// A client on a WebSocket the test opened itself (e.g. from a chosen source address).
    pub fn from_ws(ws: Ws) -> Client {
        Client {
            ws,
            next_id: 0,
            backlog: vec![],
        }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("send frame");
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.send_text(v.to_string()).await;
    }

    pub async fn next(&mut self) -> Next {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("timed out waiting for a frame");
            match msg {
                None => return Next::Closed(None),
                Some(Err(_)) => return Next::Closed(None),
                Some(Ok(Message::Text(t))) => {
                    return match serde_json::from_str(t.as_str()) {
                        Ok(v) => Next::Frame(v),
                        Err(_) => Next::Text(t.as_str().to_owned()),
                    };
                }
                Some(Ok(Message::Close(f))) => {
                    return Next::Closed(
                        f.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                    );
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    pub async fn frame(&mut self) -> Value {
        match self.next().await {
            Next::Frame(v) => v,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Reads until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> Option<(u16, String)> {
        loop {
            match self.next().await {
                Next::Closed(c) => return c,
                Next::Frame(v) => self.backlog.push(v),
                Next::Text(_) => {}
            }
        }
    }

    /// Reads the challenge, sends `connect`, returns the response frame.
    pub async fn connect_raw(&mut self, params: Value) -> Value {
        let challenge = self.frame().await;
        assert_eq!(challenge["event"], "connect.challenge", "{challenge}");
        self.send_json(&json!({"type":"req","id":"c1","method":"connect","params": params}))
            .await;
        self.response("c1").await
    }

    /// Opens, connects and asserts success; returns the client and `hello-ok`.
    pub async fn connect(url: &str, params: Value) -> (Client, Value) {
        let mut c = Client::open(url).await;
        let res = c.connect_raw(params).await;
        assert_eq!(res["ok"], true, "connect failed: {res}");
        let hello = res["payload"].clone();
        (c, hello)
    }

    /// The next response with this id (events read meanwhile go to the backlog).
    pub async fn response(&mut self, id: &str) -> Value {
        loop {
            let v = self.frame().await;
            if v["type"] == "res" && v["id"] == id {
                return v;
            }
            self.backlog.push(v);
        }
    }

    /// How many requests `request` has sent (the last one's id is `r` and this number).
    pub fn requests_sent(&self) -> u64 {
        self.next_id
    }

    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        self.send_json(&json!({"type":"req","id": id,"method": method,"params": params}))
            .await;
        self.response(&id).await
    }

    /// The next event with this name (from the backlog first).
    pub async fn event(&mut self, name: &str) -> Value {
        if let Some(pos) = self.backlog.iter().position(|v| v["event"] == name) {
            return self.backlog.remove(pos);
        }
        loop {
            let v = self.frame().await;
            if v["type"] == "event" && v["event"] == name {
                return v;
            }
            self.backlog.push(v);
        }
    }
}

/// The first text block of every message in a `chat.history` payload, in order.
pub fn message_texts(history: &Value) -> Vec<&str> {
    history["messages"]
        .as_array()
        .expect("chat.history payload without messages")
        .iter()
        .map(|m| {
            m["content"][0]["text"]
                .as_str()
                .expect("message without text")
        })
        .collect()
}

pub fn v3_params(token: Option<&str>) -> Value {
    let mut p = json!({
        "minProtocol": 3, "maxProtocol": 3,
        "client": {"id": "test", "version": "1.0.0", "platform": "linux", "mode": "test"},
    });
    if let Some(t) = token {
        p["auth"] = json!({"token": t});
    }
    p
}

pub fn v4_params(token: Option<&str>) -> Value {
    let mut p = v3_params(token);
    p["minProtocol"] = json!(4);
    p["maxProtocol"] = json!(4);
    p
}

/// A v4 CLI-style client (token-only cli/cli keeps its requested scopes on loopback).
pub fn v4_cli_params(token: &str, scopes: &[&str]) -> Value {
    json!({
        "minProtocol": 4, "maxProtocol": 4,
        "client": {"id": "cli", "version": "1.0.0", "platform": "linux", "mode": "cli"},
        "auth": {"token": token},
        "scopes": scopes,
    })
}

static NS_SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace with a veth pair: the host side gets 10.231.N.1, the namespace
/// 10.231.N.2. Removed on drop.
pub struct NetNs {
    name: String,
    host_veth: String,
    pub host_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetNs {
    pub fn create() -> NetNs {
        let n = (std::process::id() % 200) + NS_SEQ.fetch_add(1, Ordering::Relaxed) * 7 % 50;
        let name = format!("sbtest{}-{n}", std::process::id());
        let host_veth = format!("sbh{}x{n}", std::process::id() % 10000);
        let ns_veth = format!("sbn{}x{n}", std::process::id() % 10000);
        let net = 1 + (n % 250);
        let host_ip = format!("10.231.{net}.1");
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_veth, "type", "veth", "peer", "name", &ns_veth,
        ]);
        ip(&["link", "set", &ns_veth, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_veth]);
        ip(&["link", "set", &host_veth, "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("10.231.{net}.2/24"),
            "dev",
            &ns_veth,
        ]);
        ip(&["-n", &name, "link", "set", &ns_veth, "up"]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        NetNs {
            name,
            host_veth,
            host_ip,
        }
    }

    /// Runs `f` on a thread inside the namespace, with a runtime of its own.
    pub fn run<T: Send>(&self, f: impl std::future::Future<Output = T> + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = std::fs::File::open(format!("/var/run/netns/{}", self.name))
                    .expect("netns file");
                nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(f)
            })
            .join()
            .expect("netns thread")
        })
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

impl NetNs {
    /// The namespace side's address (the peer the gateway sees).
    pub fn peer_ip(&self) -> String {
        format!(
            "{}.2",
            self.host_ip.strip_suffix(".1").expect("host ip ends in .1")
        )
    }
}

/// Runs a stand-in server on a free loopback port, on a thread and runtime of its own
/// (the tests' runtimes are single-threaded and block while they wait on the gateway).
/// Returns the port and a handle that stops the server when dropped.
pub fn serve_on_thread<F, Fut>(serve: F) -> (u16, tokio::sync::oneshot::Sender<()>)
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            tokio::select! {
                _ = stop_rx => {}
                _ = serve(listener) => {}
            }
        });
    });
    (port_rx.recv().expect("stand-in port"), stop_tx)
}

/// A TCP relay in front of the gateway whose connections the test can cut at once (the
/// network blip: the browser and the gateway each see their socket end, no close frame).
pub struct Relay {
    pub port: u16,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    pub async fn start(to: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let held = Arc::clone(&conns);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                held.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay { port, conns }
    }

    /// Cuts every connection relayed so far.
    pub fn cut(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

/// One HTTP answer: its status, its head (lower-cased header names) and its body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `METHOD target` sent as is (no normalization of `..` or escapes, unlike a browser or
/// an HTTP library) to 127.0.0.1:`port`, with `headers`; the whole answer (the gateway
/// closes after one).
pub fn http_raw(port: u16, method: &str, target: &str, headers: &[(&str, &str)]) -> HttpAnswer {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read response");
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body: out[split + 4..].to_vec(),
    }
}

pub fn http_get_path(port: u16, target: &str) -> HttpAnswer {
    http_raw(port, "GET", target, &[])
}
