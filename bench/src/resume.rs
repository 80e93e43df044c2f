//! The cost of Switchboard's resumable events (`docs/resume.md`): gateway RSS per idle
//! resumable session (attached, then detached and waiting for a resume), and the time to
//! replay `--events` missed events on a resume. A gateway without the extension (either
//! reference) refuses `connect.params.resume`; the scenario then says so and fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{Args, Report, Ws, call, connect_params, read_json, rss_kib};

/// Opens a connection with `resume`; returns the socket and `hello-ok`.
async fn connect_resuming(a: &Args, resume: Value) -> Result<(Ws, Value)> {
    let (mut ws, _) = tokio_tungstenite::connect_async(&a.url)
        .await
        .context("connect")?;
    let ch = read_json(&mut ws).await?;
    if ch["event"] != "connect.challenge" {
        bail!("expected connect.challenge, got {ch}");
    }
    let mut params = connect_params(a);
    params["resume"] = resume;
    let req = json!({"type":"req","id":"c","method":"connect","params": params});
    ws.send(Message::text(req.to_string())).await?;
    loop {
        let v = read_json(&mut ws).await?;
        if v["id"] == "c" {
            if v["ok"] != true {
                bail!(
                    "connect with resume refused (a gateway without resumable events?): {}",
                    v["error"]
                );
            }
            return Ok((ws, v["payload"].clone()));
        }
    }
}

pub async fn resume(a: Arc<Args>) -> Result<Report> {
    let Some(pid) = a.pid else {
        bail!("--pid is required for resume")
    };
    let deadline = Instant::now() + Duration::from_secs(a.max_seconds);
    let mut r = Report::new(&a, "resume");

    // 1. RSS per idle resumable session, attached and then detached.
    let before = rss_kib(pid).context("read gateway RSS")?;
    let mut held = Vec::new();
    while (held.len() as u64) < a.count && Instant::now() < deadline {
        let (ws, _) = connect_resuming(&a, json!({})).await?;
        held.push(crate::churn::hold(ws));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attached = rss_kib(pid).context("read gateway RSS")?;
    let n = held.len() as u64;
    futures_util::future::join_all(held.into_iter().map(crate::churn::Held::leave)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let detached = rss_kib(pid).context("read gateway RSS")?;
    let per =
        |kib: u64| ((kib.saturating_sub(before)) as f64 / n.max(1) as f64 * 10.0).round() / 10.0;
    r.set("sessions", n);
    r.set("rss_before_kib", before);
    r.set("rss_attached_kib", attached);
    r.set("kib_per_attached_session", per(attached));
    r.set("rss_detached_kib", detached);
    r.set("kib_per_detached_session", per(detached));

    // 2. Replay: a client goes away, `--events` events happen, it resumes.
    let want = a.events;
    let (mut ws, hello) = connect_resuming(&a, json!({})).await?;
    let session = hello["resume"].clone();
    // What it had received when it left (the welcome events, if any).
    let mut last_seq = 0;
    while let Ok(Ok(v)) = tokio::time::timeout(Duration::from_millis(300), read_json(&mut ws)).await
    {
        if let Some(s) = v["seq"].as_u64() {
            last_seq = s;
        }
    }
    ws.close(None).await.ok();
    drop(ws);
    // Runs of the echo agent make the events (an `agent` and a `chat` delta per word):
    // short words, so that `--events` of them fit the default 1 MiB buffer.
    let (mut publisher, _) = connect_resuming(&a, json!({})).await?;
    let words = ["w"; 10].join(" ");
    let mut published = 0u64;
    let mut runs = 0u64;
    let mut last_run = String::new();
    while published < want && Instant::now() < deadline {
        runs += 1;
        last_run = format!("bench-resume-{runs}");
        let id = format!("a{runs}");
        let ack = call(
            &mut publisher,
            &id,
            "agent",
            json!({"message": words, "sessionKey": last_run, "idempotencyKey": format!("{last_run}-{}", std::process::id())}),
        )
        .await?;
        if ack["ok"] != true {
            bail!("agent refused: {}", ack["error"]);
        }
        // Count what the run broadcast until its final answer.
        loop {
            let v = read_json(&mut publisher).await?;
            if v["type"] == "event" && (v["event"] == "agent" || v["event"] == "chat") {
                published += 1;
            }
            if v["type"] == "res" && v["id"] == id {
                break;
            }
        }
    }
    let final_key = format!("agent:main:{last_run}");
    let started = Instant::now();
    let (mut ws, hello) = connect_resuming(
        &a,
        json!({"sessionId": session["sessionId"], "epoch": session["epoch"], "lastSeq": last_seq}),
    )
    .await?;
    let hello_at = started.elapsed();
    if hello["resume"]["ok"] != true {
        bail!("the resume was refused: {}", hello["resume"]);
    }
    let mut replayed = 0u64;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = tokio::time::timeout(left.max(Duration::from_millis(1)), read_json(&mut ws))
            .await
            .context("replay did not finish in time")??;
        if v["type"] == "event" {
            replayed += 1;
            if v["event"] == "chat"
                && v["payload"]["state"] == "final"
                && v["payload"]["sessionKey"] == final_key
            {
                break;
            }
        }
    }
    let total = started.elapsed();
    r.set("events_published", published);
    r.set("events_replayed", replayed);
    r.set("hello_us", hello_at.as_micros() as u64);
    r.set("replay_us", total.as_micros() as u64);
    r.set(
        "us_per_replayed_event",
        (total.saturating_sub(hello_at).as_micros() as u64) / replayed.max(1),
    );
    Ok(r)
}
