//! `ws-fuzz`: a black-box WebSocket fuzzer against a running gateway (any of them).
//!
//! `--concurrency` attackers connect over and over and send mutated frames, before and
//! after a valid handshake, in both protocol versions: byte flips, cut and spliced JSON,
//! wrong types, huge strings and arrays, deep nesting, thousands of keys, invalid UTF-8
//! in text frames, binary frames, stray continuations, reserved opcodes, pings. A watchdog
//! connection asks `health` every 100 ms the whole time; the run fails if the gateway
//! stops answering it for `WATCHDOG_LIMIT`, or if the process (`--pid`) dies.
//!
//! Bounded: at most `--count` frames and `--max-seconds`. The same `--seed` gives the same
//! inputs. Only point it at a gateway you run on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::{Args, Report, Ws, call, connect_params, read_json, setup_connection};

/// The gateway must answer `health` within this long, however hard it is being hit.
const WATCHDOG_LIMIT: Duration = Duration::from_secs(5);
/// Frames an attacker sends on one connection before it starts a new one.
const FRAMES_PER_CONNECTION: u64 = 200;

/// xorshift64*: small, fast, reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Valid frames of both generations, the starting points of every mutation.
const SEEDS: &[&str] = &[
    r#"{"type":"req","id":"1","method":"health","params":{}}"#,
    r#"{"type":"req","id":"2","method":"status"}"#,
    r#"{"type":"req","id":"3","method":"system-presence","params":{}}"#,
    r#"{"type":"req","id":"4","method":"sessions.list","params":{"limit":5}}"#,
    r#"{"type":"req","id":"5","method":"chat.history","params":{"sessionKey":"main","limit":3}}"#,
    r#"{"type":"req","id":"6","method":"logs.tail","params":{"limit":5,"maxBytes":1000}}"#,
    r#"{"type":"req","id":"7","method":"node.list","params":{}}"#,
    r#"{"type":"req","id":"8","method":"channels.status","params":{"probe":false}}"#,
    r#"{"type":"req","id":"9","method":"models.list","params":{}}"#,
    r#"{"type":"req","id":"10","method":"device.pair.list","params":{}}"#,
    r#"{"type":"req","id":"11","method":"node.invoke","params":{"nodeId":"n","command":"system.which","params":{},"idempotencyKey":"k"}}"#,
    r#"{"type":"req","id":"12","method":"connect","params":{"minProtocol":3,"maxProtocol":4,"client":{"id":"cli","version":"1","platform":"linux","mode":"cli"}}}"#,
    r#"{"type":"req","id":"13","method":"pairing.list","params":{"channel":"telegram"}}"#,
    r#"{"type":"req","id":"14","method":"last-heartbeat","params":{}}"#,
];

/// Fragments spliced into frames.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "-0",
    "1e308",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"type\"",
    "\"req\"",
    "\"method\"",
    "\"params\"",
    "\"id\"",
    "{}",
    "[]",
    "\"operator.admin\"",
    "\"node\"",
    "\"connect\"",
    "18446744073709551616",
];

fn mutate(rng: &mut Rng, seed: &str) -> Vec<u8> {
    let mut b = seed.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(10) {
            0 => {
                // Flip bytes.
                for _ in 0..=rng.below(8) {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            1 | 2 => {
                let i = rng.below(b.len() + 1);
                let t = rng.pick(TOKENS).as_bytes();
                b.splice(i..i, t.iter().copied());
            }
            3 => {
                let i = rng.below(b.len());
                let j = (i + rng.below(16)).min(b.len());
                b.drain(i..j);
            }
            4 => {
                let i = rng.below(b.len());
                let j = (i + rng.below(32)).min(b.len());
                let piece = b[i..j].to_vec();
                for _ in 0..=rng.below(64) {
                    b.splice(i..i, piece.iter().copied());
                }
            }
            5 => b.truncate(rng.below(b.len() + 1)),
            _ => {
                // A structural attack on a parsed frame.
                let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&b) else {
                    continue;
                };
                if rng.chance(6) && v.is_object() {
                    // Deep nesting, as raw JSON (a parser's recursion limit is the target).
                    let depth = 1 + rng.below(5_000);
                    let mut s = serde_json::to_string(&v).unwrap_or_default();
                    s.pop();
                    if !s.ends_with('{') {
                        s.push(',');
                    }
                    s.push_str("\"nested\":");
                    s.push_str(&"[".repeat(depth));
                    s.push_str(&"]".repeat(depth));
                    s.push('}');
                    b = s.into_bytes();
                    continue;
                }
                let target = if v["params"].is_object() && rng.chance(2) {
                    &mut v["params"]
                } else {
                    &mut v
                };
                let Some(obj) = target.as_object_mut() else {
                    continue;
                };
                // Large frames (thousands of keys, long strings, long arrays) are one
                // in fifty: they cost the sender too.
                match rng.below(50) {
                    0 => {
                        let n = 1 + rng.below(20_000);
                        for i in 0..n {
                            obj.insert(format!("k{i}"), json!(i));
                        }
                    }
                    1 => {
                        let key = obj.keys().nth(rng.below(obj.len())).cloned();
                        if let Some(k) = key {
                            obj.insert(k, json!("x".repeat(1 + rng.below(200_000))));
                        }
                    }
                    3..=25 => {
                        let key = obj.keys().nth(rng.below(obj.len())).cloned();
                        let other = rng
                            .pick(&[json!(null), json!(7), json!([1]), json!({}), json!(true)])
                            .clone();
                        if let Some(k) = key {
                            obj.insert(k, other);
                        }
                    }
                    2 => {
                        obj.insert("items".into(), json!(vec![0; 1 + rng.below(100_000)]));
                    }
                    _ => {
                        let key = obj.keys().nth(rng.below(obj.len())).cloned();
                        if let Some(k) = key {
                            obj.remove(&k);
                        }
                    }
                }
                b = serde_json::to_vec(&v).unwrap_or_default();
            }
        }
        if b.is_empty() {
            b.push(b'{');
        }
    }
    b
}

/// One message to send: mostly mutated text, sometimes a frame no gateway should accept.
fn next_message(rng: &mut Rng) -> Message {
    let seed = *rng.pick(SEEDS);
    // Frames that end the connection (a protocol violation) are rare, so most frames
    // reach the request path; each kind still comes up thousands of times in a run.
    match rng.below(400) {
        0 => Message::Binary(mutate(rng, seed).into()),
        1 => Message::Ping(
            (0..rng.below(126))
                .map(|_| rng.next() as u8)
                .collect::<Vec<u8>>()
                .into(),
        ),
        2 => Message::Frame(Frame::message(
            mutate(rng, seed),
            OpCode::Data(Data::Continue),
            true,
        )),
        3 => Message::Frame(Frame::message(
            mutate(rng, seed),
            OpCode::Data(Data::Reserved(3 + rng.below(5) as u8)),
            true,
        )),
        4 => Message::Frame(Frame::message(
            mutate(rng, seed),
            OpCode::Data(Data::Text),
            false,
        )),
        5 => {
            // Invalid UTF-8 in a text frame.
            let mut b = mutate(rng, seed);
            let i = rng.below(b.len());
            b.insert(i, 0xC3);
            b.insert(i + 1, 0x28);
            Message::Frame(Frame::message(b, OpCode::Data(Data::Text), true))
        }
        _ => {
            // Valid UTF-8 (invalid text is case 5's), so the frame reaches the parser.
            Message::text(String::from_utf8_lossy(&mutate(rng, seed)).into_owned())
        }
    }
}

#[derive(Default)]
struct Tally {
    frames: AtomicU64,
    connections: AtomicU64,
    refused_connects: AtomicU64,
    answers: AtomicU64,
    /// How the gateway closed connections: close code (0: no close frame) → count.
    close_codes: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl Tally {
    fn closed(&self, code: u16) {
        *self.close_codes.lock().unwrap().entry(code).or_default() += 1;
    }
}

/// Reads whatever is there for up to `wait`; false once the connection is gone.
async fn drain(ws: &mut Ws, wait: Duration, tally: &Tally) -> bool {
    let end = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Err(_) => return true,
            Ok(Some(Ok(Message::Close(f)))) => {
                tally.closed(f.map_or(0, |f| u16::from(f.code)));
                return false;
            }
            Ok(None) | Ok(Some(Err(_))) => {
                tally.closed(0);
                return false;
            }
            Ok(Some(Ok(_))) => {
                tally.answers.fetch_add(1, Relaxed);
            }
        }
    }
}

async fn attacker(
    a: Arc<Args>,
    seed: u64,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
) {
    let mut rng = Rng(seed | 1);
    while !stop.load(Relaxed) && Instant::now() < deadline {
        let Ok(Ok((mut ws, _))) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(&a.url),
        )
        .await
        else {
            tally.refused_connects.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tally.connections.fetch_add(1, Relaxed);
        if tokio::time::timeout(Duration::from_secs(5), read_json(&mut ws))
            .await
            .is_err()
        {
            continue;
        }
        // Four in five connections first complete a valid handshake (v3 or v4).
        if !rng.chance(5) {
            let mut params = connect_params(&a);
            let v = if rng.chance(2) { 3 } else { 4 };
            params["minProtocol"] = json!(v);
            params["maxProtocol"] = json!(v);
            let req = json!({"type":"req","id":"c","method":"connect","params": params});
            if ws.send(Message::text(req.to_string())).await.is_err()
                || !drain(&mut ws, Duration::from_millis(200), &tally).await
            {
                continue;
            }
        }
        for _ in 0..FRAMES_PER_CONNECTION {
            if tally.frames.fetch_add(1, Relaxed) >= a.count || Instant::now() >= deadline {
                stop.store(true, Relaxed);
                break;
            }
            if ws.send(next_message(&mut rng)).await.is_err()
                || !drain(&mut ws, Duration::ZERO, &tally).await
            {
                break;
            }
        }
        let _ = ws.close(None).await;
    }
}

pub async fn ws_fuzz(a: Arc<Args>) -> Result<Report> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.max_seconds);
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut watch = setup_connection(&a).await?;
    let attackers: Vec<_> = (0..a.concurrency)
        .map(|i| {
            let seed = a.seed.wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            tokio::spawn(attacker(
                Arc::clone(&a),
                seed,
                Arc::clone(&tally),
                Arc::clone(&stop),
                deadline,
            ))
        })
        .collect();
    let mut health = Histogram::<u64>::new(3)?;
    let mut n = 0u64;
    let mut failure = None;
    while !stop.load(Relaxed) && Instant::now() < deadline {
        n += 1;
        let t = Instant::now();
        match tokio::time::timeout(
            WATCHDOG_LIMIT,
            call(&mut watch, &format!("w{n}"), "health", json!({})),
        )
        .await
        {
            Ok(Ok(v)) if v["ok"] == true => health.record(t.elapsed().as_micros() as u64)?,
            Ok(Ok(v)) => {
                failure = Some(format!("health refused during the run: {}", v["error"]));
                break;
            }
            Ok(Err(e)) => {
                failure = Some(format!("the watchdog connection failed: {e}"));
                break;
            }
            Err(_) => {
                failure = Some(format!("health unanswered for {WATCHDOG_LIMIT:?}"));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Relaxed);
    for t in attackers {
        let _ = t.await;
    }
    if let Some(pid) = a.pid
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
    {
        failure.get_or_insert_with(|| format!("the gateway process {pid} is gone"));
    }
    // Still serving after the run.
    if failure.is_none() && setup_connection(&a).await.is_err() {
        failure = Some("no new connection is accepted after the run".into());
    }
    let mut r = Report::new(&a, "ws-fuzz");
    r.set("seed", a.seed);
    r.set("frames", tally.frames.load(Relaxed).min(a.count));
    r.set("connections", tally.connections.load(Relaxed));
    r.set("refused_connects", tally.refused_connects.load(Relaxed));
    r.set(
        "closed_by_gateway",
        tally.close_codes.lock().unwrap().values().sum::<u64>(),
    );
    r.set("answers", tally.answers.load(Relaxed));
    let codes: serde_json::Map<String, serde_json::Value> = tally
        .close_codes
        .lock()
        .unwrap()
        .iter()
        .map(|(c, n)| (c.to_string(), json!(n)))
        .collect();
    r.set("close_codes", serde_json::Value::Object(codes));
    r.set("health_checks", health.len());
    r.set("seconds", started.elapsed().as_secs_f64());
    r.latency(&health);
    if let Some(f) = failure {
        r.print();
        bail!("ws-fuzz: {f}");
    }
    Ok(r)
}
