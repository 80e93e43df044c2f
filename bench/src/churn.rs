//! Many clients joining and leaving: the join storm and the churn soak. Every held
//! connection reads its socket the whole time, as a real app does, so a gateway that cuts
//! one of them as a slow consumer is cutting a client that kept up.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::{Args, Report, Ws, handshake, rss_kib};

/// How a held connection ended.
#[derive(Debug, Default, Clone, Copy)]
pub struct Ending {
    /// Frames it read while held (presence and other events).
    pub frames: u64,
    /// The gateway closed it as a slow consumer (close reason says so).
    pub cut: bool,
    /// The gateway closed it (any reason) or the socket failed before we left.
    pub lost: bool,
}

/// A connection held open by a task that drains it until told to leave.
pub struct Held {
    leave: oneshot::Sender<()>,
    done: JoinHandle<Ending>,
}

impl Held {
    /// Closes the connection (a clean WebSocket close) and says how it went.
    pub async fn leave(self) -> Ending {
        let _ = self.leave.send(());
        self.done.await.unwrap_or_default()
    }
}

pub fn hold(mut ws: Ws) -> Held {
    let (leave, mut told) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        let mut e = Ending::default();
        loop {
            tokio::select! {
                _ = &mut told => break,
                m = ws.next() => match m {
                    Some(Ok(Message::Text(_))) => e.frames += 1,
                    Some(Ok(Message::Close(f))) => {
                        e.lost = true;
                        e.cut = f.is_some_and(|f| f.reason.as_str().contains("slow"));
                        return e;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        e.lost = true;
                        return e;
                    }
                },
            }
        }
        // Leave cleanly: send the close and read until the gateway answers it (bounded).
        let _ = ws.send(Message::Close(None)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(m)) = ws.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
        e
    });
    Held { leave, done }
}

/// Opens `count` connections, `concurrency` handshakes at a time, each held and drained.
async fn open_many(a: &Arc<Args>, deadline: Instant) -> (Vec<Held>, u64) {
    let next = Arc::new(AtomicU64::new(0));
    let held = Arc::new(Mutex::new(Vec::with_capacity(a.count as usize)));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (a, next, held, errors) = (
            Arc::clone(a),
            Arc::clone(&next),
            Arc::clone(&held),
            Arc::clone(&errors),
        );
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Relaxed) < a.count && Instant::now() < deadline {
                match handshake(&a).await {
                    Ok(ws) => held.lock().await.push(hold(ws)),
                    Err(_) => {
                        errors.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let held = std::mem::take(&mut *held.lock().await);
    (held, errors.load(Relaxed))
}

/// Lets every held connection leave; returns (slow-consumer cuts, other losses, frames).
async fn leave_all(held: Vec<Held>) -> (u64, u64, u64) {
    let endings = futures_util::future::join_all(held.into_iter().map(Held::leave)).await;
    let cuts = endings.iter().filter(|e| e.cut).count() as u64;
    let lost = endings.iter().filter(|e| e.lost && !e.cut).count() as u64;
    (cuts, lost, endings.iter().map(|e| e.frames).sum())
}

fn pid(a: &Args) -> Result<i32> {
    a.pid
        .context("--pid is required (RSS is read from /proc/<pid>/status)")
}

pub async fn join_storm(a: Arc<Args>) -> Result<Report> {
    let pid = pid(&a)?;
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let before = rss_kib(pid).context("read gateway RSS")?;
    let t0 = Instant::now();
    let (held, errors) = open_many(&a, deadline).await;
    let open = t0.elapsed();
    let n = held.len() as u64;
    if n == 0 {
        bail!("no connection could be opened ({errors} errors)");
    }
    // Let the joins' presence broadcasts reach everyone before reading the memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with = rss_kib(pid).context("read gateway RSS")?;
    let t1 = Instant::now();
    let (cuts, lost, frames) = leave_all(held).await;
    let left = t1.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid).context("read gateway RSS")?;
    tokio::time::sleep(Duration::from_secs(a.settle_seconds)).await;
    let settled = rss_kib(pid).context("read gateway RSS")?;

    let mut r = Report::new(&a, "join-storm");
    r.set("joins", n);
    r.set("connections", n);
    r.set("concurrency", a.concurrency);
    r.set("errors", errors);
    r.set("open_ms", open.as_millis() as u64);
    r.set("per_second", (n as f64 / open.as_secs_f64()).round());
    r.set("leave_ms", left.as_millis() as u64);
    r.set("rss_before_kib", before);
    r.set("rss_with_kib", with);
    r.set(
        "kib_per_connection",
        (with.saturating_sub(before) as f64 / n as f64 * 10.0).round() / 10.0,
    );
    r.set("rss_after_leave_kib", after);
    r.set("rss_settled_kib", settled);
    r.set(
        "settled_over_before_pct",
        ((settled as f64 / before.max(1) as f64 - 1.0) * 1000.0).round() / 10.0,
    );
    r.set("slow_consumer_cuts", cuts);
    r.set("other_losses", lost);
    r.set("frames_read", frames);
    Ok(r)
}

/// Keeps `concurrency` clients held; for each join the oldest leaves, at `--rate` joins/s
/// (default 50), until `--count` joins or `--max-seconds`.
pub async fn soak(a: Arc<Args>) -> Result<Report> {
    let pid = pid(&a)?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(a.max_seconds);
    let before = rss_kib(pid).context("read gateway RSS")?;
    let mut held: VecDeque<Held> = VecDeque::new();
    while (held.len() as u64) < a.concurrency && Instant::now() < deadline {
        held.push_back(hold(handshake(&a).await?));
    }
    let rate = a.rate.filter(|r| *r > 0).unwrap_or(50);
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let sample_every = Duration::from_secs(a.sample_seconds.max(1));
    let mut series = vec![json!([0, rss_kib(pid).unwrap_or(0)])];
    let mut next_sample = Instant::now() + sample_every;
    let (mut joins, mut errors, mut cuts, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let start = tokio::time::Instant::now();
    while joins < a.count && Instant::now() < deadline {
        tokio::time::sleep_until(start + every * joins as u32).await;
        joins += 1;
        match handshake(&a).await {
            Ok(ws) => held.push_back(hold(ws)),
            Err(_) => errors += 1,
        }
        if held.len() as u64 > a.concurrency
            && let Some(old) = held.pop_front()
        {
            let e = old.leave().await;
            cuts += e.cut as u64;
            lost += (e.lost && !e.cut) as u64;
        }
        if Instant::now() >= next_sample {
            let secs = t0.elapsed().as_secs();
            series.push(json!([secs, rss_kib(pid).unwrap_or(0)]));
            next_sample += sample_every;
        }
    }
    let (c, l, _) = leave_all(held.into_iter().collect()).await;
    cuts += c;
    lost += l;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid).unwrap_or(0);
    let rss: Vec<u64> = series.iter().filter_map(|p| p[1].as_u64()).collect();
    // Flat means: the second half of the run holds no more than the first half did.
    let half = rss.len() / 2;
    let first_max = rss[..half.max(1)].iter().copied().max().unwrap_or(0);
    let second_max = rss[half..].iter().copied().max().unwrap_or(0);

    let mut r = Report::new(&a, "soak");
    r.set("joins", joins);
    r.set("held", a.concurrency);
    r.set("rate", rate);
    r.set("seconds", t0.elapsed().as_secs());
    r.set("errors", errors);
    r.set("slow_consumer_cuts", cuts);
    r.set("other_losses", lost);
    r.set("rss_before_kib", before);
    r.set("rss_first_half_max_kib", first_max);
    r.set("rss_second_half_max_kib", second_max);
    r.set("rss_after_leave_kib", after);
    r.set("rss_series", json!(series));
    Ok(r)
}
