//! `switchboard-bench`: a load generator for any protocol-v3/v4 gateway.
//!
//! Every loop is bounded in count and in time. Results print as a table and as one JSON
//! line per run (prefixed `RESULT `) for scripts. Only point it at gateways you run on
//! loopback (or your own test namespaces).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod churn;
mod resume;
mod wsfuzz;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Scenario {
    Handshake,
    Health,
    Pipelined,
    Idle,
    Fanout,
    Coldstart,
    Recovery,
    /// Open N connections that all read their sockets, hold them, let them all leave:
    /// time to open, RSS with N, RSS after they left, slow-consumer cuts.
    JoinStorm,
    /// Clients join and leave continuously around a held population, for `--max-seconds`
    /// (bounded by `--count` joins); RSS sampled every `--sample-seconds`.
    Soak,
    /// A black-box WebSocket fuzzer: `--concurrency` attackers send up to `--count`
    /// mutated frames (before and after the handshake, both versions) while a watchdog
    /// asks `health`; fails if the gateway stops answering or dies (`--pid`).
    WsFuzz,
    /// Switchboard's resumable events: RSS per idle resumable session (`--count` of
    /// them, attached then detached) and the time to replay `--events` missed events.
    Resume,
}

#[derive(Debug, Parser)]
#[command(
    name = "switchboard-bench",
    about = "Load generator for protocol-v3/v4 gateways"
)]
struct Args {
    /// Gateway URL.
    #[arg(long, default_value = "ws://127.0.0.1:18789")]
    url: String,
    /// Gateway token.
    #[arg(long, env = "SWITCHBOARD_GATEWAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Protocol version to speak (3 or 4).
    #[arg(long, default_value_t = 3)]
    protocol: u64,
    /// Label for the results (e.g. "switchboard", "clawdbot").
    #[arg(long, default_value = "gateway")]
    label: String,
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Handshakes / requests / connections (per the scenario).
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 10)]
    concurrency: u64,
    /// Pipeline depth (requests in flight per connection) for `pipelined`.
    #[arg(long, default_value_t = 16)]
    depth: u64,
    /// health: send at this total rate (requests/s, spread over the connections) instead
    /// of closed-loop, and measure each latency from the request's scheduled time, so a
    /// stall cannot hide behind the requests it delayed (no coordinated omission).
    #[arg(long)]
    rate: Option<u64>,
    /// Hard time limit for the scenario, in seconds.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Gateway pid (idle: RSS per connection from /proc).
    #[arg(long)]
    pid: Option<i32>,
    /// coldstart: the gateway command line to spawn (run with `sh -c`).
    #[arg(long)]
    spawn: Option<String>,
    /// recovery: the worker to kill.
    #[arg(long, default_value = "agent")]
    worker: String,
    /// Connect as a presence-tracked client (client id and mode `test`, as apps, nodes
    /// and UIs are tracked) instead of an untracked CLI client.
    #[arg(long)]
    tracked: bool,
    /// join-storm: seconds to wait after everyone left before the last RSS reading.
    #[arg(long, default_value_t = 10)]
    settle_seconds: u64,
    /// soak: seconds between RSS readings.
    #[arg(long, default_value_t = 10)]
    sample_seconds: u64,
    /// ws-fuzz: seed of the mutations (the same seed sends the same frames).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// resume: events to miss and have replayed.
    #[arg(long, default_value_t = 1000)]
    events: u64,
}

fn connect_params(a: &Args) -> Value {
    // By default a CLI client: not tracked in presence (so the presence list does not
    // grow with the load) and, on v4, it keeps the scopes it asks for over loopback.
    // `--tracked`: a client that joins the presence list, as apps, nodes and UIs do.
    let client = if a.tracked {
        json!({"id": "test", "version": "bench", "platform": "linux", "mode": "test"})
    } else {
        json!({"id": "cli", "version": "bench", "platform": "linux", "mode": "cli"})
    };
    let mut p = json!({
        "minProtocol": a.protocol, "maxProtocol": a.protocol,
        "client": client,
        "scopes": ["operator.admin"],
    });
    if let Some(t) = &a.token {
        p["auth"] = json!({"token": t});
    }
    p
}

async fn read_json(ws: &mut Ws) -> Result<Value> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(t.as_str())?),
            Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

/// What the handshake looks at in a frame. The rest (a `hello-ok` carries the whole
/// presence list and health snapshot) is checked as JSON but not built into a tree: the
/// load generator shares the gateway's cores, and a full parse of a 200-entry `hello-ok`
/// costs it more than the gateway spends on the handshake, for either gateway.
#[derive(serde::Deserialize)]
struct FrameHead {
    event: Option<String>,
    id: Option<String>,
    ok: Option<bool>,
    error: Option<Value>,
}

async fn read_head(ws: &mut Ws) -> Result<FrameHead> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                // Both gateways put `type`, `id` and `ok` before the payload: an accepted
                // `connect` is known by its first bytes (anything else is parsed whole).
                let t = t.as_str();
                let start = &t.as_bytes()[..t.len().min(96)];
                let has = |needle: &[u8]| start.windows(needle.len()).any(|w| w == needle);
                if has(br#""type":"res""#) && has(br#""id":"c""#) && has(br#""ok":true"#) {
                    return Ok(FrameHead {
                        event: None,
                        id: Some("c".into()),
                        ok: Some(true),
                        error: None,
                    });
                }
                return Ok(serde_json::from_str(t)?);
            }
            Some(Ok(Message::Close(f))) => bail!("closed: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("connection ended"),
        }
    }
}

/// Opens and completes the handshake; returns the socket.
async fn handshake(a: &Args) -> Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(&a.url)
        .await
        .context("connect")?;
    let ch = read_head(&mut ws).await?;
    if ch.event.as_deref() != Some("connect.challenge") {
        bail!("expected connect.challenge, got {:?}", ch.event);
    }
    let req = json!({"type":"req","id":"c","method":"connect","params": connect_params(a)});
    ws.send(Message::text(req.to_string())).await?;
    loop {
        let v = read_head(&mut ws).await?;
        if v.id.as_deref() == Some("c") {
            if v.ok != Some(true) {
                bail!("connect refused: {}", v.error.unwrap_or(Value::Null));
            }
            return Ok(ws);
        }
    }
}

/// A handshake for set-up (not measured): retried a few times, so a gateway that is still
/// settling after start-up does not fail a whole scenario.
async fn setup_connection(a: &Args) -> Result<Ws> {
    let mut last = None;
    for attempt in 0..10u64 {
        match handshake(a).await {
            Ok(ws) => return Ok(ws),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("connect failed")))
}

async fn call(ws: &mut Ws, id: &str, method: &str, params: Value) -> Result<Value> {
    let req = json!({"type":"req","id": id,"method": method,"params": params});
    ws.send(Message::text(req.to_string())).await?;
    loop {
        let v = read_json(ws).await?;
        if v["type"] == "res" && v["id"] == id {
            return Ok(v);
        }
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn us(d: Duration) -> u64 {
    d.as_micros().max(1) as u64
}

struct Report {
    fields: Vec<(&'static str, Value)>,
}

impl Report {
    fn new(a: &Args, scenario: &str) -> Report {
        Report {
            fields: vec![
                ("gateway", json!(a.label)),
                ("scenario", json!(scenario)),
                ("protocol", json!(a.protocol)),
                ("tracked", json!(a.tracked)),
            ],
        }
    }
    fn set(&mut self, k: &'static str, v: impl Into<Value>) {
        self.fields.push((k, v.into()));
    }
    fn latency(&mut self, h: &Histogram<u64>) {
        for (k, q) in [("p50_us", 0.5), ("p99_us", 0.99), ("p999_us", 0.999)] {
            self.set(k, h.value_at_quantile(q));
        }
        self.set("max_us", h.max());
    }
    /// What the scenario counted (handshakes, requests, deliveries, …).
    fn operations(&self) -> u64 {
        let get = |k: &str| {
            self.fields
                .iter()
                .find(|(f, _)| *f == k)
                .and_then(|(_, v)| v.as_u64())
        };
        [
            "handshakes",
            "requests",
            "deliveries",
            "runs",
            "kills",
            "joins",
            "frames",
            "events_replayed",
        ]
        .iter()
        .filter_map(|k| get(k))
        .max()
        .or_else(|| get("connections"))
        .unwrap_or(0)
    }

    /// Nothing was measured: every attempt failed (e.g. nothing listens at the URL).
    fn measured_nothing(&self) -> bool {
        self.operations() == 0
    }

    fn print(&self) {
        for (k, v) in &self.fields {
            println!("  {k:<22} {v}");
        }
        let obj: serde_json::Map<String, Value> = self
            .fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        println!("RESULT {}", Value::Object(obj));
    }
}

async fn handshake_storm(a: Arc<Args>) -> Result<Report> {
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (a, next) = (Arc::clone(&a), Arc::clone(&next));
        tasks.push(tokio::spawn(async move {
            let mut h = hist();
            let mut errors = 0u64;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < a.count
                && Instant::now() < deadline
            {
                let s = Instant::now();
                match handshake(&a).await {
                    Ok(mut ws) => {
                        h.record(us(s.elapsed())).ok();
                        let _ = ws.close(None).await;
                    }
                    Err(_) => errors += 1,
                }
            }
            (h, errors)
        }));
    }
    let mut h = hist();
    let mut errors = 0;
    for t in tasks {
        let (th, e) = t.await?;
        h.add(th).ok();
        errors += e;
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut r = Report::new(&a, "handshake");
    r.set("handshakes", h.len());
    r.set("errors", errors);
    r.set("concurrency", a.concurrency);
    r.set("per_second", (h.len() as f64 / secs).round());
    r.latency(&h);
    Ok(r)
}

async fn requests(a: Arc<Args>, pipelined: bool) -> Result<Report> {
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let per_conn = a.count.div_ceil(a.concurrency);
    let mut conns = Vec::new();
    for _ in 0..a.concurrency {
        conns.push(setup_connection(&a).await?);
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    let paced = if pipelined {
        None
    } else {
        a.rate.filter(|r| *r > 0)
    };
    for (i, mut ws) in conns.into_iter().enumerate() {
        let a = Arc::clone(&a);
        if let Some(rate) = paced {
            tasks.push(tokio::spawn(async move {
                // Each connection sends every `concurrency / rate` s, phases staggered.
                let every = Duration::from_secs_f64(a.concurrency as f64 / rate as f64);
                let offset = every.mul_f64(i as f64 / a.concurrency as f64);
                let start = tokio::time::Instant::now() + offset;
                let mut h = hist();
                for n in 0..per_conn {
                    let due = start + every * n as u32;
                    if due.into_std() > deadline {
                        break;
                    }
                    // The latency's origin: the scheduled time when an earlier (slow)
                    // response made this request late, so the stall is counted; else
                    // the moment the client's timer actually woke (tokio's timers
                    // have 1 ms granularity: that slack is the client's, not the
                    // gateway's).
                    let origin = if tokio::time::Instant::now() < due {
                        tokio::time::sleep_until(due).await;
                        tokio::time::Instant::now()
                    } else {
                        due
                    };
                    let req = json!({"type":"req","id": n.to_string(),"method":"health"});
                    if ws.send(Message::text(req.to_string())).await.is_err() {
                        return h;
                    }
                    loop {
                        match read_json(&mut ws).await {
                            Ok(v) if v["type"] == "res" => break,
                            Ok(_) => {}
                            Err(_) => return h,
                        }
                    }
                    h.record(us(origin.elapsed())).ok();
                }
                h
            }));
            continue;
        }
        tasks.push(tokio::spawn(async move {
            let mut h = hist();
            let depth = if pipelined { a.depth.max(1) } else { 1 };
            let mut sent = 0u64;
            let mut in_flight = std::collections::VecDeque::new();
            while (sent < per_conn || !in_flight.is_empty()) && Instant::now() < deadline {
                while sent < per_conn && (in_flight.len() as u64) < depth {
                    let req = json!({"type":"req","id": sent.to_string(),"method":"health"});
                    if ws.send(Message::text(req.to_string())).await.is_err() {
                        return h;
                    }
                    in_flight.push_back(Instant::now());
                    sent += 1;
                }
                match read_json(&mut ws).await {
                    Ok(v) if v["type"] == "res" => {
                        if let Some(s) = in_flight.pop_front() {
                            h.record(us(s.elapsed())).ok();
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return h,
                }
            }
            h
        }));
    }
    let mut h = hist();
    for t in tasks {
        h.add(t.await?).ok();
    }
    let secs = t0.elapsed().as_secs_f64();
    let mut r = Report::new(
        &a,
        if pipelined {
            "health-pipelined"
        } else if paced.is_some() {
            "health-paced"
        } else {
            "health"
        },
    );
    r.set("requests", h.len());
    r.set("connections", a.concurrency);
    if pipelined {
        r.set("depth", a.depth);
    }
    if let Some(rate) = paced {
        r.set("rate", rate);
    }
    r.set("per_second", (h.len() as f64 / secs).round());
    r.latency(&h);
    Ok(r)
}

/// CPU time (user + system) a process has used so far, in milliseconds.
fn cpu_ms(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Some(ticks * 1000 / hz.max(1))
}

fn rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

async fn idle(a: Arc<Args>) -> Result<Report> {
    let Some(pid) = a.pid else {
        bail!("--pid is required for idle")
    };
    let before = rss_kib(pid).context("read gateway RSS")?;
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let mut conns = Vec::new();
    // Each connection is drained by its own task, as a real client reads its socket
    // (tracked clients are sent every join's presence).
    while (conns.len() as u64) < a.count && Instant::now() < deadline {
        conns.push(churn::hold(setup_connection(&a).await?));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid).context("read gateway RSS")?;
    let n = conns.len() as u64;
    let mut r = Report::new(&a, "idle");
    r.set("connections", n);
    r.set("rss_before_kib", before);
    r.set("rss_after_kib", after);
    r.set(
        "kib_per_connection",
        ((after.saturating_sub(before)) as f64 / n.max(1) as f64 * 10.0).round() / 10.0,
    );
    futures_util::future::join_all(conns.into_iter().map(churn::Held::leave)).await;
    Ok(r)
}

async fn fanout(a: Arc<Args>) -> Result<Report> {
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let mut subs = Vec::new();
    for _ in 0..a.concurrency {
        subs.push(setup_connection(&a).await?);
    }
    let mut publisher = setup_connection(&a).await?;
    let rounds = a.count.max(1);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    for mut ws in subs {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(v) = read_json(&mut ws).await {
                if v["event"] == "presence"
                    && let Some(round) = v["payload"]["presence"].as_array().and_then(|l| {
                        l.iter()
                            .find_map(|e| e["text"].as_str()?.strip_prefix("bench-")?.parse().ok())
                    })
                {
                    let _ = tx.send((round, Instant::now()));
                }
            }
        });
    }
    drop(tx);
    let mut h = hist();
    for round in 0..rounds {
        if Instant::now() > deadline {
            break;
        }
        let sent = Instant::now();
        let r = call(
            &mut publisher,
            &format!("p{round}"),
            "system-event",
            json!({"text": format!("bench-{round}")}),
        )
        .await?;
        if r["ok"] != true {
            bail!("system-event refused: {}", r["error"]);
        }
        let mut got = 0;
        // A delivery lost to a slow subscriber must not stall the run: 5 s per round at most.
        let round_deadline = (Instant::now() + Duration::from_secs(5)).min(deadline);
        while got < a.concurrency {
            let left = round_deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left.max(Duration::from_millis(1)), rx.recv()).await {
                Ok(Some((n, at))) if n == round => {
                    h.record(us(at.duration_since(sent))).ok();
                    got += 1;
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
    let mut r = Report::new(&a, "fanout");
    r.set("subscribers", a.concurrency);
    r.set("deliveries", h.len());
    r.set("expected", a.concurrency * rounds);
    r.latency(&h);
    Ok(r)
}

async fn coldstart(a: Arc<Args>) -> Result<Report> {
    let Some(cmd) = &a.spawn else {
        bail!("--spawn is required for coldstart")
    };
    let mut h = hist();
    for _ in 0..a.count.min(50) {
        let t0 = Instant::now();
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", cmd])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let limit = t0 + Duration::from_secs(a.max_seconds);
        loop {
            if Instant::now() > limit {
                bail!("the gateway did not answer within {} s", a.max_seconds);
            }
            if handshake(&a).await.is_ok() {
                h.record(us(t0.elapsed())).ok();
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut r = Report::new(&a, "coldstart");
    r.set("runs", h.len());
    r.latency(&h);
    Ok(r)
}

async fn recovery(a: Arc<Args>) -> Result<Report> {
    let mut ws = setup_connection(&a).await?;
    let mut h = hist();
    let mut first = None;
    for round in 0..a.count.min(5) {
        let list = call(&mut ws, &format!("l{round}"), "workers.list", json!({})).await?;
        let w = list["payload"]["workers"]
            .as_array()
            .and_then(|l| l.iter().find(|w| w["name"] == a.worker.as_str()).cloned())
            .context("no such worker")?;
        let pid = w["pid"].as_i64().context("worker not running")? as i32;
        let t0 = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        let limit = t0 + Duration::from_secs(a.max_seconds);
        loop {
            if Instant::now() > limit {
                bail!("worker did not come back within {} s", a.max_seconds);
            }
            let l = call(
                &mut ws,
                &format!("w{round}-{}", t0.elapsed().as_micros()),
                "workers.list",
                json!({}),
            )
            .await?;
            let back = l["payload"]["workers"].as_array().is_some_and(|ws| {
                ws.iter().any(|w| {
                    w["name"] == a.worker.as_str()
                        && w["state"] == "running"
                        && w["pid"].as_i64() != Some(pid as i64)
                })
            });
            if back {
                h.record(us(t0.elapsed())).ok();
                first.get_or_insert(us(t0.elapsed()));
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Let the restart-intensity window breathe between rounds.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut r = Report::new(&a, "recovery");
    r.set("kills", h.len());
    // Later kills within the restart-intensity window wait out a growing backoff.
    r.set("first_kill_us", first.unwrap_or(0));
    r.latency(&h);
    Ok(r)
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = Arc::new(Args::parse());
    if a.concurrency == 0 || a.count == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    println!(
        "{} / {:?} / protocol {} / {}",
        a.label, a.scenario, a.protocol, a.url
    );
    let server_before = a.pid.and_then(|p| cpu_ms(&p.to_string()));
    let client_before = cpu_ms("self");
    let mut report = match a.scenario {
        Scenario::Handshake => handshake_storm(Arc::clone(&a)).await?,
        Scenario::Health => requests(Arc::clone(&a), false).await?,
        Scenario::Pipelined => requests(Arc::clone(&a), true).await?,
        Scenario::Idle => idle(Arc::clone(&a)).await?,
        Scenario::Fanout => fanout(Arc::clone(&a)).await?,
        Scenario::Coldstart => coldstart(Arc::clone(&a)).await?,
        Scenario::Recovery => recovery(Arc::clone(&a)).await?,
        Scenario::JoinStorm => churn::join_storm(Arc::clone(&a)).await?,
        Scenario::Soak => churn::soak(Arc::clone(&a)).await?,
        Scenario::WsFuzz => wsfuzz::ws_fuzz(Arc::clone(&a)).await?,
        Scenario::Resume => resume::resume(Arc::clone(&a)).await?,
    };
    // Where the CPU went: who limits the figure, the gateway or this load generator.
    if !matches!(
        a.scenario,
        Scenario::Idle
            | Scenario::Coldstart
            | Scenario::Recovery
            | Scenario::JoinStorm
            | Scenario::Soak
            | Scenario::WsFuzz
            | Scenario::Resume
    ) {
        let ops = report.operations();
        if let (Some(b), Some(after)) = (server_before, a.pid.and_then(|p| cpu_ms(&p.to_string())))
        {
            report.set("server_cpu_ms", after.saturating_sub(b));
            if let Some(per_op) = (after.saturating_sub(b) * 1000).checked_div(ops) {
                report.set("server_cpu_us_per_op", per_op);
            }
        }
        if let (Some(b), Some(after)) = (client_before, cpu_ms("self")) {
            report.set("client_cpu_ms", after.saturating_sub(b));
            if let Some(per_op) = (after.saturating_sub(b) * 1000).checked_div(ops) {
                report.set("client_cpu_us_per_op", per_op);
            }
        }
    }
    report.print();
    if report.measured_nothing() {
        bail!(
            "no {:?} succeeded against {}: is a gateway listening there, with this token?",
            a.scenario,
            a.url
        );
    }
    Ok(())
}
