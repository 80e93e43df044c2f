//! Issue #17, point 6: token guessing is bounded per gateway, not only per connection and
//! address. Waves of parallel wrong-token connects from loopback (from several 127.x
//! addresses) get their guesses checked no faster than the documented budget (20 at once,
//! then 2 a second, `auth::rate_limit`); the rest are refused unchecked with a retry
//! hint. The owner's right token is held during the lockout and gets in once it ends,
//! and no guess ever reaches the log.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::TcpSocket;

use crate::harness::*;

const BURST: f64 = 20.0;
const PER_SECOND: f64 = 2.0;
/// Part of every guess, so the log can be searched for any of them.
const MARK: &str = "zq9xguess";

#[derive(Debug, PartialEq)]
enum Answer {
    /// The guess was checked and refused.
    Checked,
    /// Refused unchecked: the gateway-wide budget is spent.
    Limited {
        retry_after_ms: u64,
    },
    Accepted,
}

/// One connect from `source` (a loopback address) with `token`.
async fn attempt(port: u16, source: [u8; 4], token: &str) -> Answer {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind((std::net::Ipv4Addr::from(source), 0).into())
        .unwrap();
    let tcp = sock.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(
        format!("ws://127.0.0.1:{port}"),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .unwrap();
    let mut c = Client::from_ws(ws);
    let r = c.connect_raw(v3_params(Some(token))).await;
    if r["ok"] == true {
        return Answer::Accepted;
    }
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    if msg.contains("too many failed authentication attempts") {
        let retry_after_ms = r["error"]["retryAfterMs"].as_u64().expect("a retry hint");
        return Answer::Limited { retry_after_ms };
    }
    assert!(msg.starts_with("unauthorized"), "{r}");
    Answer::Checked
}

#[tokio::test]
async fn parallel_guesses_from_loopback_are_held_to_the_gateway_wide_budget_and_never_logged() {
    let gw = Gateway::start();
    let started = Instant::now();
    let mut checked = 0u32;
    let mut limited = 0u32;
    for wave in 0..3u8 {
        let tasks: Vec<_> = (0..40u8)
            .map(|i| {
                let port = gw.port;
                tokio::spawn(async move {
                    // Rotating source addresses: a per-address limit alone would not hold.
                    let source = [127, 1 + wave, i / 8, 1 + i % 8];
                    attempt(port, source, &format!("{MARK}-{wave}-{i}")).await
                })
            })
            .collect();
        for t in tasks {
            match t.await.unwrap() {
                Answer::Checked => checked += 1,
                Answer::Limited { .. } => limited += 1,
                Answer::Accepted => panic!("a guess got in"),
            }
        }
    }
    // Then guessing without pause for three seconds: the budget refills at its rate, and
    // only at its rate, however fast the attempts come.
    let sustained = Instant::now() + Duration::from_secs(3);
    let loops: Vec<_> = (0..3u8)
        .map(|l| {
            let port = gw.port;
            tokio::spawn(async move {
                let (mut checked, mut limited, mut n) = (0u32, 0u32, 0u32);
                while Instant::now() < sustained {
                    n += 1;
                    let source = [127, 20 + l, (n / 250) as u8, 1 + (n % 250) as u8];
                    match attempt(port, source, &format!("{MARK}-s{l}-{n}")).await {
                        Answer::Checked => checked += 1,
                        Answer::Limited { .. } => limited += 1,
                        Answer::Accepted => panic!("a guess got in"),
                    }
                }
                (checked, limited)
            })
        })
        .collect();
    for l in loops {
        let (c, r) = l.await.unwrap();
        checked += c;
        limited += r;
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        checked as f64 >= BURST + PER_SECOND * 2.0,
        "the budget refills: {checked} checked in {elapsed:.1} s"
    );
    println!("{checked} guesses checked, {limited} refused unchecked, in {elapsed:.1} s");
    let allowed = BURST + PER_SECOND * elapsed + 1.0;
    assert!(
        (checked as f64) <= allowed,
        "{checked} guesses checked in {elapsed:.1} s; the budget allows {allowed:.0}"
    );
    assert!(
        limited >= 100,
        "most guesses were refused unchecked: {limited}"
    );

    // During a lockout the right token is held too; it gets in once the lockout ends.
    let wave: Vec<_> = (0..30u8)
        .map(|i| {
            let port = gw.port;
            tokio::spawn(async move {
                attempt(port, [127, 9, 0, 1 + i], &format!("{MARK}-last-{i}")).await
            })
        })
        .collect();
    let mut tries = 0;
    let owner = loop {
        tries += 1;
        assert!(tries < 30, "the budget never ran out during the last wave");
        match attempt(gw.port, [127, 0, 0, 1], TOKEN).await {
            Answer::Limited { retry_after_ms } => break retry_after_ms,
            Answer::Checked => panic!("the right token was refused as wrong"),
            // The budget had room at that instant: try once more while the wave runs.
            Answer::Accepted => continue,
        }
    };
    assert!(
        owner <= 500,
        "the hint names the next free attempt: {owner} ms"
    );
    for t in wave {
        t.await.unwrap();
    }
    let guessing_stopped = Instant::now();
    let got_in = loop {
        match attempt(gw.port, [127, 0, 0, 1], TOKEN).await {
            Answer::Accepted => break guessing_stopped.elapsed(),
            Answer::Limited { retry_after_ms } => {
                // The server's own hint, not a guess at a duration.
                tokio::time::sleep(Duration::from_millis(retry_after_ms)).await;
            }
            Answer::Checked => panic!("the right token was refused as wrong"),
        }
        assert!(
            guessing_stopped.elapsed() < WAIT,
            "the owner never got back in"
        );
    };
    assert!(
        got_in < Duration::from_secs(2),
        "the owner got in {got_in:?} after the guessing stopped"
    );
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    assert_eq!(c.request("health", json!({})).await["ok"], true);

    gw.wait_log("the lockout logged", |l| {
        l.contains("exceed the gateway-wide budget")
    });
    let mut log = gw.log();
    let file = gw.state.path().join("logs").join("switchboard.log");
    log.push_str(&std::fs::read_to_string(file).unwrap_or_default());
    assert!(!log.contains(MARK), "a guess reached the log:\n{log}");
    assert!(!log.contains(TOKEN), "the token reached the log");
}
