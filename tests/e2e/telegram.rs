//! Telegram end to end (issue #5): the real gateway, the real Telegram worker (teloxide)
//! pointed at a local stand-in of the Bot API, the real agent worker (echo backend).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;
use crate::standin_telegram::{BOT_TOKEN, Fail, Telegram};

/// A gateway with Telegram configured against the stand-in; `extra` adds keys to the
/// `channels.telegram` section (JSON5).
fn gateway(tg: &Telegram, extra: &str, token: &str) -> Gateway {
    let state = Arc::new(tempfile::tempdir().unwrap());
    write_config(state.path(), tg, extra, token);
    Gateway::start_with(GatewayOpts {
        state: Some(state),
        extra: vec!["--worker-health-interval-ms".into(), "100".into()],
        ..Default::default()
    })
}

fn write_config(dir: &std::path::Path, tg: &Telegram, extra: &str, token: &str) {
    std::fs::write(
        dir.join("config.json5"),
        format!(
            r#"{{ channels: {{ telegram: {{ botToken: "{token}", apiUrl: "{}", pollTimeoutSeconds: 1, {extra} }} }} }}"#,
            tg.url
        ),
    )
    .unwrap();
}

async fn operator(gw: &Gateway) -> Client {
    Client::connect(&gw.url(), v3_params(Some(TOKEN))).await.0
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn cli(gw: &Gateway, args: &[&str]) -> std::process::Output {
    Command::new(bin("switchboard"))
        .args(args)
        .args(["--url", &gw.url(), "--token", TOKEN])
        .output()
        .unwrap()
}

#[tokio::test]
async fn an_allowed_sender_gets_the_agents_reply_and_operators_see_the_conversation() {
    let tg = Telegram::start();
    let gw = gateway(&tg, "allowFrom: [42]", BOT_TOKEN);
    let mut op = operator(&gw).await;
    op.wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    tg.push_photo(42); // no text: skipped, never a crash
    let msg_id = tg.push_dm(42, "Alice", "hello bot");
    tg.wait_for("the reply", |s| s.sent.iter().any(|m| m.chat_id == "42"));
    let sent = tg.sent_to("42");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].text, "[echo] hello bot");
    // The update was confirmed to Telegram only after the gateway stored it.
    tg.wait_for("the offset to move on", |s| s.confirmed_offset > 1000);
    // Operators saw the run as events, on the chat's own session.
    let fin = loop {
        let ev = op.event("chat").await;
        if ev["payload"]["state"] == "final" {
            break ev;
        }
    };
    assert_eq!(fin["payload"]["sessionKey"], "agent:main:telegram:dm:42");
    let h = op
        .request(
            "chat.history",
            json!({"sessionKey": "agent:main:telegram:dm:42"}),
        )
        .await;
    let texts = message_texts(&h["payload"]);
    assert_eq!(texts, vec!["hello bot", "[echo] hello bot"]);
    let status = op.request("channels.status", json!({})).await;
    assert_eq!(
        status["payload"]["channels"]["telegram"]["connected"], true,
        "{status}"
    );
    assert!(msg_id > 0);
    assert!(
        !gw.log().contains(BOT_TOKEN),
        "the bot token reached the log"
    );
}

#[tokio::test]
async fn unknown_senders_get_a_pairing_code_that_an_operator_approves() {
    let tg = Telegram::start();
    let gw = gateway(&tg, "", BOT_TOKEN);
    let mut op = operator(&gw).await;
    op.wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    tg.push_dm(77, "Bob", "hi there");
    tg.wait_for("the pairing reply", |s| {
        s.sent.iter().any(|m| m.chat_id == "77")
    });
    let reply = tg.sent_to("77")[0].text.clone();
    assert!(reply.contains("Your telegram user id: 77"), "{reply}");
    assert!(
        reply.contains("switchboard pairing approve telegram"),
        "{reply}"
    );
    let code = reply
        .lines()
        .find_map(|l| l.strip_prefix("Pairing code: "))
        .unwrap()
        .to_owned();
    assert_eq!(code.len(), 8);
    let list = op
        .request("pairing.list", json!({"channel": "telegram"}))
        .await;
    assert_eq!(list["payload"]["requests"][0]["code"], code.as_str());
    assert_eq!(list["payload"]["requests"][0]["id"], "77");
    // A wrong code is refused clearly; the right one, from the CLI, lets Bob in.
    let bad = cli(&gw, &["pairing", "approve", "telegram", "ZZZZZZZZ"]);
    assert_eq!(bad.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no pending pairing code ZZZZZZZZ"));
    let ok = cli(
        &gw,
        &[
            "pairing",
            "approve",
            "telegram",
            &code.to_lowercase(),
            "--notify",
        ],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("approved telegram sender 77"));
    tg.wait_for("the approval notice", |s| {
        s.sent.iter().filter(|m| m.chat_id == "77").count() == 2
    });
    assert!(tg.sent_to("77")[1].text.contains("access approved"));
    tg.push_dm(77, "Bob", "now?");
    tg.wait_for("the agent's reply", |s| {
        s.sent.iter().filter(|m| m.chat_id == "77").count() == 3
    });
    assert_eq!(tg.sent_to("77")[2].text, "[echo] now?");
    // The message sent before approval was not processed by the agent.
    let h = op
        .request(
            "chat.history",
            json!({"sessionKey": "agent:main:telegram:dm:77"}),
        )
        .await;
    assert_eq!(h["payload"]["messages"].as_array().unwrap().len(), 2, "{h}");
}

#[tokio::test]
async fn allowlist_drops_strangers_and_groups_answer_only_when_mentioned() {
    let tg = Telegram::start();
    let gw = gateway(
        &tg,
        r#"dmPolicy: "allowlist", allowFrom: [42], groups: { "-100500": {} }"#,
        BOT_TOKEN,
    );
    let mut op = operator(&gw).await;
    op.wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    tg.push_dm(66, "Mallory", "let me in");
    tg.push_group(-100500, 9, "Carol", "chatting among ourselves", false);
    tg.push_group(-100500, 9, "Carol", "ping", true);
    tg.push_group(-100999, 9, "Carol", "other group", true);
    tg.wait_for("the group reply", |s| {
        s.sent.iter().any(|m| m.chat_id == "-100500")
    });
    // A chat's messages are handled in order, so the unmentioned one was decided first.
    let group = tg.sent_to("-100500");
    assert_eq!(group.len(), 1, "{group:?}");
    assert!(
        group[0]
            .text
            .starts_with("[echo] [Carol]: @sb_test_bot ping"),
        "{}",
        group[0].text
    );
    // The stranger and the unlisted group got nothing: wait for the DM reply to a known
    // sender sent after them, then look.
    tg.push_dm(42, "Alice", "am I heard?");
    tg.wait_for("the allowed sender's reply", |s| {
        s.sent.iter().any(|m| m.chat_id == "42")
    });
    assert!(tg.sent_to("66").is_empty());
    assert!(tg.sent_to("-100999").is_empty());
}

#[tokio::test]
async fn send_delivers_exactly_once_and_a_repeated_key_sends_nothing() {
    let tg = Telegram::start();
    let gw = gateway(&tg, "", BOT_TOKEN);
    let mut op = operator(&gw).await;
    op.wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    let params =
        json!({"to": "42", "message": "hello from the operator", "idempotencyKey": "send-1"});
    let r = op.request("send", params.clone()).await;
    assert_eq!(r["ok"], true, "{r}");
    let p = &r["payload"];
    assert_eq!(p["runId"], "send-1");
    assert_eq!(p["channel"], "telegram");
    assert_eq!(p["chatId"], "42");
    let sent = tg.sent_to("42");
    assert_eq!(sent.len(), 1);
    assert_eq!(p["messageId"], sent[0].message_id.to_string());
    // The same key again: the first result, nothing sent.
    let again = op.request("send", params.clone()).await;
    assert_eq!(again["payload"], r["payload"]);
    let mut other = params.clone();
    other["accountId"] = json!("second");
    let clash = op.request("send", other).await;
    assert_eq!(
        clash["error"]["message"],
        "idempotency key is already bound to a different message route"
    );
    assert_eq!(tg.sent_to("42").len(), 1);
    // The delivered text is part of the chat's conversation.
    let h = op
        .request(
            "chat.history",
            json!({"sessionKey": "agent:main:telegram:dm:42"}),
        )
        .await;
    assert_eq!(
        h["payload"]["messages"][0]["content"][0]["text"],
        "hello from the operator"
    );
    // Bad requests are refused before anything is queued.
    let r = op
        .request(
            "send",
            json!({"to": "42", "message": "x", "channel": "signal", "idempotencyKey": "s2"}),
        )
        .await;
    assert_eq!(r["error"]["message"], "unsupported channel: signal");
    let r = op
        .request("send", json!({"to": "42", "message": "x", "mediaUrl": "http://x/a.png", "idempotencyKey": "s3"}))
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("media is not supported")
    );
}

#[tokio::test]
async fn permanent_errors_fail_at_once_and_rate_limits_are_honoured() {
    let tg = Telegram::start();
    let gw = gateway(&tg, "", BOT_TOKEN);
    let mut op = operator(&gw).await;
    op.wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    tg.with(|s| s.fail_next.push_back(Fail::ChatNotFound));
    let r = op
        .request(
            "send",
            json!({"to": "404", "message": "anyone?", "idempotencyKey": "nf-1"}),
        )
        .await;
    assert_eq!(r["error"]["code"], "UNAVAILABLE", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("chat not found"),
        "{r}"
    );
    let not_found = r["error"].clone();
    tg.with(|s| s.fail_next.push_back(Fail::Blocked));
    let r = op
        .request(
            "send",
            json!({"to": "405", "message": "hello?", "idempotencyKey": "bl-1"}),
        )
        .await;
    assert!(
        r["error"]["message"].as_str().unwrap().contains("blocked"),
        "{r}"
    );
    // A retry of a failed send answers the same failure and tries nothing.
    let r2 = op
        .request(
            "send",
            json!({"to": "404", "message": "anyone?", "idempotencyKey": "nf-1"}),
        )
        .await;
    assert_eq!(r2["error"], not_found);
    assert_eq!(
        tg.with(|s| s.send_attempts.len()),
        2,
        "no retries of permanent failures"
    );
    // 429: the next attempt waits for retry_after.
    tg.with(|s| s.fail_next.push_back(Fail::RetryAfter(1)));
    let r = op
        .request(
            "send",
            json!({"to": "42", "message": "patience", "idempotencyKey": "ra-1"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let attempts = tg.with(|s| s.send_attempts.clone());
    let gap = attempts[attempts.len() - 1] - attempts[attempts.len() - 2];
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert_eq!(tg.sent_to("42").len(), 1);
    // A server error is passing: retried (after a second), then delivered once.
    tg.with(|s| s.fail_next.push_back(Fail::ServerError));
    let r = op
        .request(
            "send",
            json!({"to": "42", "message": "again", "idempotencyKey": "se-1"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(tg.sent_to("42").len(), 2);
}

#[tokio::test]
async fn a_killed_worker_delivers_the_queued_sends_exactly_once_after_its_restart() {
    let tg = Telegram::start();
    let gw = gateway(&tg, "", BOT_TOKEN);
    let mut op = operator(&gw).await;
    let (mut bystander, _) = Client::connect(&gw.url(), v4_params(Some(TOKEN))).await;
    let before = op
        .wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    // The first attempt is rate limited, so the sends are queued when the worker dies.
    tg.with(|s| s.fail_next.push_back(Fail::RetryAfter(4)));
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        op.send_json(
            &json!({"type": "req", "id": format!("s{i}"), "method": "send",
            "params": {"to": "42", "message": text, "idempotencyKey": format!("q-{i}")}}),
        )
        .await;
    }
    tg.wait_for("the first attempt", |s| s.send_attempts.len() == 1);
    // All three are in the outbox's backlog (the metric operators watch).
    let metrics = format!("127.0.0.1:{}", gw.port);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let body = http_get(&metrics, "/metrics");
        if body.contains("switchboard_outbox_backlog{channel=\"telegram\"} 3") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "backlog never reached 3:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = before["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    for i in 0..3 {
        let r = op.response(&format!("s{i}")).await;
        assert_eq!(r["ok"], true, "{r}");
    }
    let texts: Vec<String> = tg.sent_to("42").into_iter().map(|m| m.text).collect();
    assert_eq!(
        texts,
        vec!["one", "two", "three"],
        "each exactly once, in order"
    );
    let after = op.worker("telegram").await;
    assert_ne!(after["pid"], before["pid"]);
    assert!(after["restarts"].as_u64().unwrap() >= 1);
    // The supervisor and its other clients never noticed.
    let h = bystander.request("health", json!({})).await;
    assert_eq!(h["ok"], true);
    assert!(gw.log().contains("worker exited; restarting"));
}

#[tokio::test]
async fn a_gateway_killed_with_pending_deliveries_makes_them_after_its_restart() {
    let tg = Telegram::start();
    let state = Arc::new(tempfile::tempdir().unwrap());
    write_config(state.path(), &tg, "", BOT_TOKEN);
    let opts = || GatewayOpts {
        state: Some(Arc::clone(&state)),
        ..Default::default()
    };
    let gw = Gateway::start_with(opts());
    let mut op = operator(&gw).await;
    op.wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    // Rate limited for 3 s: the row is pending (not in flight) when the gateway dies,
    // and the wait Telegram asked for is honoured across the restart.
    tg.with(|s| s.fail_next.push_back(Fail::RetryAfter(3)));
    op.send_json(&json!({"type": "req", "id": "s1", "method": "send",
        "params": {"to": "42", "message": "survives", "idempotencyKey": "restart-1"}}))
        .await;
    tg.wait_for("the rate-limited attempt", |s| s.send_attempts.len() == 1);
    gw.signal(nix::sys::signal::Signal::SIGKILL);
    drop(op);
    drop(gw);
    let gw = Gateway::start_with(opts());
    tg.wait_for("the delivery after the restart", |s| !s.sent.is_empty());
    // The retry of the request finds the delivery made (and makes no second one).
    let mut op = operator(&gw).await;
    let r = op
        .request(
            "send",
            json!({"to": "42", "message": "survives", "idempotencyKey": "restart-1"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let sent = tg.sent_to("42");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(r["payload"]["messageId"], sent[0].message_id.to_string());
}

#[tokio::test]
async fn a_refused_bot_token_is_reported_and_never_retried() {
    let tg = Telegram::start();
    let gw = gateway(&tg, "", "999:wrong-token-zz");
    let mut op = operator(&gw).await;
    let w = op
        .wait_worker("telegram", "unauthorized", |w| {
            w["providerState"] == "unauthorized"
        })
        .await;
    assert!(w["detail"].as_str().unwrap().contains("botToken"), "{w}");
    // Many health checks later (every 100 ms): still one call, no restarts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let w = op.worker("telegram").await;
    assert_eq!(w["restarts"], 0, "{w}");
    assert_eq!(w["state"], "running");
    assert_eq!(
        tg.with(|s| s.unauthorized_calls),
        1,
        "one getMe, then silence"
    );
    let health = op.request("health", json!({})).await;
    assert_eq!(
        health["payload"]["channels"]["telegram"]["state"],
        "unauthorized"
    );
    let r = op
        .request(
            "send",
            json!({"to": "42", "message": "x", "idempotencyKey": "u-1"}),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bot token"),
        "{r}"
    );
    assert_eq!(tg.with(|s| s.unauthorized_calls), 1);
    assert!(!gw.log().contains("wrong-token-zz"));
}

#[tokio::test]
async fn an_unreachable_api_is_reported_as_backoff_with_the_error_and_no_restarts() {
    // A port nothing listens on: connections are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let state = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(
        state.path().join("config.json5"),
        format!(r#"{{ channels: {{ telegram: {{ botToken: "{BOT_TOKEN}", apiUrl: "http://127.0.0.1:{port}" }} }} }}"#),
    )
    .unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(state),
        extra: vec!["--worker-health-interval-ms".into(), "100".into()],
        ..Default::default()
    });
    let mut op = operator(&gw).await;
    let w = op
        .wait_worker("telegram", "backoff", |w| w["providerState"] == "backoff")
        .await;
    let detail = w["detail"].as_str().unwrap();
    assert!(
        detail.contains("getMe") && detail.contains("cannot connect"),
        "{w}"
    );
    assert!(
        !detail.contains(BOT_TOKEN),
        "the token leaked into health: {detail}"
    );
    assert_eq!(w["restarts"], 0, "the worker backs off itself: {w}");
    // A send meanwhile is accepted and queued, not lost.
    let r = op
        .request(
            "send",
            json!({"to": "42", "message": "later", "idempotencyKey": "bo-1"}),
        )
        .await;
    assert_eq!(r["error"]["details"]["status"], "queued", "{r}");
    assert_eq!(r["error"]["retryable"], true);
    assert!(!gw.log().contains(BOT_TOKEN));
}

/// The outbox's guarantee for Telegram, exactly (README, `outbox_store.rs`): the Bot API
/// has no idempotency key and no way to ask whether a message arrived, so a worker that
/// dies after Telegram took a message but before the outcome reached the supervisor makes
/// the message go out again: at-least-once, in exactly that window. The `send` is still
/// answered once.
#[tokio::test]
async fn telegram_is_at_least_once_a_worker_killed_after_telegram_took_the_message_sends_it_again()
{
    let tg = Telegram::start();
    let gw = gateway(&tg, "", BOT_TOKEN);
    let mut op = operator(&gw).await;
    let before = op
        .wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    let pid = before["pid"].as_i64().unwrap() as i32;
    let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = Arc::clone(&killed);
    tg.with(|s| {
        s.on_accept = Some(Arc::new(move || {
            if !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }))
    });
    let r = op
        .request(
            "send",
            json!({"to": "42", "message": "in the window", "idempotencyKey": "w-1"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(killed.load(std::sync::atomic::Ordering::SeqCst));
    let texts: Vec<String> = tg.sent_to("42").into_iter().map(|m| m.text).collect();
    assert_eq!(texts, vec!["in the window", "in the window"], "sent twice");
    assert_eq!(
        r["payload"]["messageId"],
        tg.sent_to("42")[1].message_id.to_string()
    );
}

/// A gateway with one Telegram account (`routing`: its DM keys) and a heartbeat
/// (`heartbeat`: its keys besides the prompt), with something in `HEARTBEAT.md`.
fn heartbeat_gateway(
    tg: &Telegram,
    state: &Arc<tempfile::TempDir>,
    routing: &str,
    heartbeat: &str,
) -> Gateway {
    std::fs::write(
        state.path().join("config.json5"),
        format!(
            r#"{{ channels: {{ telegram: {{ botToken: "{BOT_TOKEN}", apiUrl: "{}", pollTimeoutSeconds: 1, {routing} }} }},
                 agents: {{ defaults: {{ heartbeat: {{ prompt: "beat", {heartbeat} }} }} }} }}"#,
            tg.url
        ),
    )
    .unwrap();
    std::fs::create_dir_all(state.path().join("workspace")).unwrap();
    std::fs::write(
        state.path().join("workspace/HEARTBEAT.md"),
        "- water the plants\n",
    )
    .unwrap();
    Gateway::start_with(GatewayOpts {
        state: Some(Arc::clone(state)),
        extra: vec!["--worker-health-interval-ms".into(), "100".into()],
        ..Default::default()
    })
}

/// Wakes a beat now (the echo agent repeats its message: something that needs
/// attention) and returns its `sent` record.
async fn woken_beat(op: &mut Client, text: &str) -> Value {
    let w = op
        .request("wake", json!({"mode": "now", "text": text}))
        .await;
    assert_eq!(w["ok"], true, "{w}");
    loop {
        let ev = op.event("heartbeat").await;
        if ev["payload"]["status"] == "sent" {
            break ev["payload"].clone();
        }
    }
}

/// Issue #22 point 5: a heartbeat whose answer needs attention is delivered to
/// `agents.defaults.heartbeat.target`/`to` through the outbox (once), and the record says
/// so, also when only woken (no interval).
#[tokio::test]
async fn a_heartbeat_that_needs_attention_is_delivered_to_its_target() {
    let tg = Telegram::start();
    let state = Arc::new(tempfile::tempdir().unwrap());
    // No recurring beats ("0m"): a woken beat still follows the configured route.
    let gw = heartbeat_gateway(
        &tg,
        &state,
        "",
        r#"every: "0m", target: "telegram", to: "42""#,
    );
    let mut op = operator(&gw).await;
    op.wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    let rec = woken_beat(&mut op, "check the mail").await;
    assert_eq!(rec["deliveryStatus"], "delivered", "{rec}");
    assert_eq!(rec["channel"], "telegram");
    let sent = tg.sent_to("42");
    assert_eq!(sent.len(), 1, "once");
    assert!(
        sent[0].text.contains("water the plants") && sent[0].text.contains("check the mail"),
        "{}",
        sent[0].text
    );
    let last = op.request("last-heartbeat", json!({})).await;
    assert_eq!(last["payload"]["deliveryStatus"], "delivered", "{last}");
}

/// The v4 reference's routes: by default a beat goes to the owner, the first concrete
/// `allowFrom` entry (not `*`, not an `@handle`); `target: "last"` follows the
/// conversation the agent last answered.
#[tokio::test]
async fn a_heartbeat_goes_to_the_owner_by_default_or_to_the_last_conversation() {
    let tg = Telegram::start();
    let state = Arc::new(tempfile::tempdir().unwrap());
    let routing = r#"dmPolicy: "allowlist", allowFrom: ["*", "@alice", 777, 555]"#;
    let mut gw = heartbeat_gateway(&tg, &state, routing, r#"every: "1h""#);
    let mut op = operator(&gw).await;
    op.wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    let rec = woken_beat(&mut op, "owner beat").await;
    assert_eq!(rec["deliveryStatus"], "delivered", "{rec}");
    assert_eq!(tg.sent_to("777").len(), 1, "the owner");
    drop(op);
    gw.signal(nix::sys::signal::Signal::SIGTERM);
    gw.wait_exit();

    let gw = heartbeat_gateway(&tg, &state, routing, r#"every: "1h", target: "last""#);
    let mut op = operator(&gw).await;
    op.wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    tg.push_dm(555, "Bob", "hello there");
    tg.wait_for("the reply to Bob", |s| {
        s.sent.iter().any(|m| m.chat_id == "555")
    });
    let rec = woken_beat(&mut op, "last beat").await;
    assert_eq!(rec["deliveryStatus"], "delivered", "{rec}");
    let to_bob = tg.sent_to("555");
    assert_eq!(to_bob.len(), 2, "the reply, then the beat");
    assert!(to_bob[1].text.contains("last beat"), "{}", to_bob[1].text);
    assert_eq!(tg.sent_to("777").len(), 1, "the owner got nothing more");
}
