//! Discord end to end (issue #19): the real gateway, the real Discord worker (a
//! twilight-gateway shard, REST over HTTP) pointed at a local stand-in of Discord's
//! gateway and REST API, the real agent worker (echo backend).

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;
use crate::standin_discord::{
    BOT_TOKEN, DIRECT_MESSAGES, Discord, Fail, GUILD_MESSAGES, MESSAGE_CONTENT,
};

/// A gateway with Discord configured against the stand-in; `extra` adds keys to the
/// `channels.discord` section (JSON5).
fn gateway(dc: &Discord, extra: &str) -> Gateway {
    let state = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(
        state.path().join("config.json5"),
        format!(
            r#"{{ channels: {{ discord: {{ token: "{BOT_TOKEN}", apiUrl: "{}", {extra} }} }} }}"#,
            dc.api_url
        ),
    )
    .unwrap();
    Gateway::start_with(GatewayOpts {
        state: Some(state),
        extra: vec!["--worker-health-interval-ms".into(), "100".into()],
        ..Default::default()
    })
}

async fn operator(gw: &Gateway) -> Client {
    Client::connect(&gw.url(), v3_params(Some(TOKEN))).await.0
}

async fn connected(op: &mut Client) -> Value {
    op.wait_worker("discord", "connected", |w| {
        w["providerState"] == "connected" && w["connected"] == true
    })
    .await
}

fn cli(gw: &Gateway, args: &[&str]) -> std::process::Output {
    Command::new(bin("switchboard"))
        .args(args)
        .args(["--url", &gw.url(), "--token", TOKEN])
        .output()
        .unwrap()
}

async fn history(op: &mut Client, key: &str) -> Vec<String> {
    let h = op.request("chat.history", json!({"sessionKey": key})).await;
    message_texts(&h["payload"])
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_dm_reaches_the_agent_and_the_reply_goes_out_over_rest() {
    let dc = Discord::start();
    let gw = gateway(&dc, r#"allowFrom: ["42"]"#);
    let mut op = operator(&gw).await;
    let w = connected(&mut op).await;
    assert_eq!(w["labels"]["bot"], "sb_test_bot", "{w}");
    // The gateway's URL came from GET /gateway/bot; IDENTIFY asked for DMs and guild
    // messages only (no privileged intent: every admitted channel requires a mention).
    assert_eq!(dc.with(|s| s.gateway_bot_calls), 1);
    let ids = dc.identifies();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0]["intents"], GUILD_MESSAGES | DIRECT_MESSAGES);
    let dm = dc.dm_channel("42");
    dc.push_dm("42", "Alice", "hello bot");
    dc.wait_for("the reply", |s| s.sent.iter().any(|m| m.channel_id == dm));
    let sent = dc.sent_to(&dm);
    assert_eq!(sent[0].content, "[echo] hello bot");
    assert_eq!(
        history(&mut op, "agent:main:discord:dm:42").await,
        vec!["hello bot", "[echo] hello bot"]
    );
    // The bot's own message came back on the gateway and was not answered: a later DM
    // gets exactly one more reply.
    dc.push_dm("42", "Alice", "again");
    dc.wait_for("the second reply", |s| {
        s.sent.iter().filter(|m| m.channel_id == dm).count() >= 2
    });
    let texts: Vec<String> = dc.sent_to(&dm).into_iter().map(|m| m.content).collect();
    assert_eq!(texts, vec!["[echo] hello bot", "[echo] again"]);
    let status = op.request("channels.status", json!({})).await;
    assert_eq!(
        status["payload"]["channels"]["discord"]["connected"], true,
        "{status}"
    );
    assert!(
        !gw.log().contains(BOT_TOKEN),
        "the bot token reached the log"
    );
}

#[tokio::test]
async fn health_says_connected_only_after_ready() {
    let dc = Discord::start();
    // A long interval: the held READY is not mistaken for a zombie connection.
    dc.with(|s| {
        s.hold_ready = true;
        s.heartbeat_interval_ms = 10_000;
    });
    let gw = gateway(&dc, "");
    let mut op = operator(&gw).await;
    dc.wait_for("the IDENTIFY", |s| {
        s.conns.iter().any(|c| c.identify.is_some())
    });
    // Several health checks (every 100 ms) while READY is held back.
    let mut seen = 0;
    while seen < 5 {
        let w = op.worker("discord").await;
        if w["providerState"].is_string() {
            assert_ne!(w["providerState"], "connected", "{w}");
            assert_ne!(w["connected"], true, "{w}");
            seen += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    dc.with(|s| s.hold_ready = false);
    connected(&mut op).await;
}

#[tokio::test]
async fn unknown_senders_get_a_pairing_code_that_an_operator_approves() {
    let dc = Discord::start();
    let gw = gateway(&dc, "");
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    let dm = dc.dm_channel("77");
    dc.push_dm("77", "Bob", "hi there");
    dc.wait_for("the pairing reply", |s| {
        s.sent.iter().any(|m| m.channel_id == dm)
    });
    let reply = dc.sent_to(&dm)[0].content.clone();
    assert!(reply.contains("Your discord user id: 77"), "{reply}");
    assert!(
        reply.contains("switchboard pairing approve discord"),
        "{reply}"
    );
    let code = reply
        .lines()
        .find_map(|l| l.strip_prefix("Pairing code: "))
        .unwrap()
        .to_owned();
    let list = op
        .request("pairing.list", json!({"channel": "discord"}))
        .await;
    assert_eq!(list["payload"]["requests"][0]["code"], code.as_str());
    assert_eq!(list["payload"]["requests"][0]["id"], "77");
    let ok = cli(&gw, &["pairing", "approve", "discord", &code, "--notify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("approved discord sender 77"));
    dc.wait_for("the approval notice", |s| {
        s.sent.iter().filter(|m| m.channel_id == dm).count() == 2
    });
    assert!(dc.sent_to(&dm)[1].content.contains("access approved"));
    dc.push_dm("77", "Bob", "now?");
    dc.wait_for("the agent's reply", |s| {
        s.sent.iter().filter(|m| m.channel_id == dm).count() == 3
    });
    assert_eq!(dc.sent_to(&dm)[2].content, "[echo] now?");
    assert_eq!(
        history(&mut op, "agent:main:discord:dm:77").await,
        vec!["now?", "[echo] now?"],
        "the message before approval was not run"
    );
}

#[tokio::test]
async fn guild_channels_answer_mentions_and_replies_only_where_admitted() {
    let dc = Discord::start();
    let gw = gateway(
        &dc,
        r#"allowFrom: ["42"], guilds: { "500": { channels: { "600": {} } } }"#,
    );
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    dc.push_guild("500", "600", "9", "chatting among ourselves", false, None);
    dc.push_guild("500", "600", "9", "ping", true, None);
    dc.push_guild("500", "999", "9", "other channel", true, None);
    dc.wait_for("the channel reply", |s| {
        s.sent.iter().any(|m| m.channel_id == "600")
    });
    let first = dc.sent_to("600");
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0]
            .content
            .starts_with("[echo] [Carol]: @sb_test_bot ping"),
        "{}",
        first[0].content
    );
    // A reply to the bot's message counts as addressing it.
    dc.push_guild("500", "600", "9", "and this?", false, Some(&first[0].id));
    dc.wait_for("the reply to a reply", |s| {
        s.sent.iter().filter(|m| m.channel_id == "600").count() == 2
    });
    // The unlisted channel got nothing: a DM sent after it is answered, then look.
    let dm = dc.dm_channel("42");
    dc.push_dm("42", "Alice", "am I heard?");
    dc.wait_for("the DM reply", |s| {
        s.sent.iter().any(|m| m.channel_id == dm)
    });
    assert!(dc.sent_to("999").is_empty());
    assert_eq!(dc.sent_to("600").len(), 2);
    let h = history(&mut op, "agent:main:discord:channel:600").await;
    assert_eq!(h.len(), 4, "{h:?}");
}

#[tokio::test]
async fn op7_reconnect_resumes_at_the_resume_url_and_loses_or_doubles_nothing() {
    let dc = Discord::start();
    let gw = gateway(&dc, r#"allowFrom: ["42"]"#);
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    let dm = dc.dm_channel("42");
    let session = dc.session_id();
    dc.push_dm("42", "Alice", "one");
    dc.wait_for("the first reply", |s| {
        s.sent.iter().any(|m| m.channel_id == dm)
    });
    // The resume redelivers the last two dispatches (the first message and the bot's
    // own reply) besides the one sent while the worker is away.
    dc.with(|s| s.replay_overlap = 2);
    dc.reconnect();
    dc.push_dm("42", "Alice", "two");
    dc.wait_for("the RESUME", |s| s.conns.iter().any(|c| c.resume.is_some()));
    let (path, resume) = dc.resumes()[0].clone();
    assert!(
        path.starts_with("/resume"),
        "resumed at {path}, not resume_gateway_url"
    );
    assert_eq!(resume["session_id"], session.as_str());
    assert!(resume["seq"].as_u64().unwrap() >= 2, "{resume}");
    dc.wait_for("the second reply", |s| {
        s.sent.iter().filter(|m| m.channel_id == dm).count() >= 2
    });
    connected(&mut op).await;
    dc.push_dm("42", "Alice", "three");
    dc.wait_for("the third reply", |s| {
        s.sent.iter().filter(|m| m.channel_id == dm).count() >= 3
    });
    let texts: Vec<String> = dc.sent_to(&dm).into_iter().map(|m| m.content).collect();
    assert_eq!(texts, vec!["[echo] one", "[echo] two", "[echo] three"]);
    assert_eq!(dc.identifies().len(), 1, "resumed, never identified again");
    assert_eq!(
        history(&mut op, "agent:main:discord:dm:42").await.len(),
        6,
        "each message stored once"
    );
}

#[tokio::test]
async fn a_dropped_socket_and_a_going_away_close_resume_and_the_missed_messages_arrive() {
    let dc = Discord::start();
    let gw = gateway(&dc, r#"allowFrom: ["42"]"#);
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    let dm = dc.dm_channel("42");
    dc.drop_socket();
    dc.push_dm("42", "Alice", "while you were away");
    dc.wait_for("the RESUME", |s| s.conns.iter().any(|c| c.resume.is_some()));
    dc.wait_for("the reply", |s| s.sent.iter().any(|m| m.channel_id == dm));
    assert_eq!(dc.sent_to(&dm)[0].content, "[echo] while you were away");
    connected(&mut op).await;
    // A 1001 (going away) close from the gateway is resumed too.
    dc.close(1001);
    dc.push_dm("42", "Alice", "and again");
    dc.wait_for("the second RESUME", |s| {
        s.conns.iter().filter(|c| c.resume.is_some()).count() == 2
    });
    dc.wait_for("the second reply", |s| {
        s.sent.iter().filter(|m| m.channel_id == dm).count() == 2
    });
    assert_eq!(dc.identifies().len(), 1, "resumed both times");
    connected(&mut op).await;
}

#[tokio::test]
async fn a_non_resumable_invalid_session_identifies_anew() {
    let dc = Discord::start();
    let gw = gateway(&dc, r#"allowFrom: ["42"]"#);
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    let first = dc.session_id();
    dc.invalid_session(false);
    // The identify queue spaces identifies 5 s apart: WAIT is generous enough.
    dc.wait_for("a second IDENTIFY", |s| {
        s.conns.iter().filter(|c| c.identify.is_some()).count() == 2
    });
    let w = connected(&mut op).await;
    assert_eq!(w["restarts"], 0, "{w}");
    assert_ne!(dc.session_id(), first);
    assert!(
        dc.resumes().is_empty(),
        "an invalidated session is not resumed"
    );
    let dm = dc.dm_channel("42");
    dc.push_dm("42", "Alice", "fresh session");
    dc.wait_for("the reply", |s| s.sent.iter().any(|m| m.channel_id == dm));
}

#[tokio::test]
async fn a_silent_socket_is_a_zombie_and_is_replaced() {
    let dc = Discord::start();
    let gw = gateway(&dc, r#"allowFrom: ["42"]"#);
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    let beats = dc.with(|s| s.conns[0].heartbeats);
    dc.go_silent();
    dc.wait_for("a RESUME on a new connection", |s| {
        s.conns.len() >= 2 && s.conns.iter().any(|c| c.resume.is_some())
    });
    // The silent connection got a heartbeat it never acknowledged, then was given up.
    assert!(dc.with(|s| s.conns[0].heartbeats) > beats);
    gw.wait_log("the worker to call it a zombie", |l| {
        l.contains("\"zombied\"")
    });
    assert!(
        dc.with(|s| s.conns[0].closed),
        "the zombie connection was closed"
    );
    connected(&mut op).await;
    let dm = dc.dm_channel("42");
    dc.push_dm("42", "Alice", "still there?");
    dc.wait_for("the reply", |s| s.sent.iter().any(|m| m.channel_id == dm));
}

#[tokio::test]
async fn close_4004_is_fatal_reported_and_never_retried() {
    let dc = Discord::start();
    let state = Arc::new(tempfile::tempdir().unwrap());
    let wrong = "MTk5OTk5.Gwrong.wrong-token-zz";
    std::fs::write(
        state.path().join("config.json5"),
        format!(
            r#"{{ channels: {{ discord: {{ token: "{wrong}", apiUrl: "{}", gatewayUrl: "{}" }} }} }}"#,
            dc.api_url, dc.gateway_url
        ),
    )
    .unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(state),
        extra: vec!["--worker-health-interval-ms".into(), "100".into()],
        ..Default::default()
    });
    let mut op = operator(&gw).await;
    let w = op
        .wait_worker("discord", "unauthorized", |w| {
            w["providerState"] == "unauthorized"
        })
        .await;
    assert!(
        w["detail"]
            .as_str()
            .unwrap()
            .contains("channels.discord.token"),
        "{w}"
    );
    assert_eq!(w["connected"], false);
    // Many health checks later: one connection, no reconnects, no restarts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let w = op.worker("discord").await;
    assert_eq!(w["restarts"], 0, "{w}");
    assert_eq!(w["state"], "running");
    assert_eq!(dc.with(|s| s.conns.len()), 1, "no reconnect storm");
    let r = op
        .request(
            "send",
            json!({"to": "channel:600", "message": "x", "idempotencyKey": "u-1"}),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bot token"),
        "{r}"
    );
    assert_eq!(
        dc.with(|s| s.unauthorized_calls + s.send_attempts.len() as u64),
        0
    );
    assert!(!gw.log().contains("wrong-token-zz"));
}

#[tokio::test]
async fn close_4014_asks_for_the_message_content_intent() {
    let dc = Discord::start();
    dc.with(|s| s.message_content_allowed = false);
    let gw = gateway(
        &dc,
        r#"guilds: { "500": { channels: { "600": { requireMention: false } } } }"#,
    );
    let mut op = operator(&gw).await;
    let w = op
        .wait_worker("discord", "intents-not-allowed", |w| {
            w["providerState"] == "intents-not-allowed"
        })
        .await;
    let detail = w["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("intents not allowed: enable Message Content in the developer portal"),
        "{w}"
    );
    let intents = dc.identifies()[0]["intents"].as_u64().unwrap();
    assert_eq!(intents, GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(dc.with(|s| s.conns.len()), 1);
    assert_eq!(op.worker("discord").await["restarts"], 0);
}

#[tokio::test]
async fn send_delivers_exactly_once_to_users_and_channels() {
    let dc = Discord::start();
    let gw = gateway(&dc, "");
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    let params = json!({"to": "user:42", "message": "hello from the operator",
        "channel": "discord", "idempotencyKey": "send-1"});
    let r = op.request("send", params.clone()).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["payload"]["channel"], "discord");
    let dm = dc.dm_channel("42");
    let sent = dc.sent_to(&dm);
    assert_eq!(sent.len(), 1);
    assert_eq!(r["payload"]["messageId"], sent[0].id.as_str());
    assert_eq!(dc.with(|s| s.dm_opens.clone()), vec!["42"]);
    // The same key again: the first result, nothing sent.
    let again = op.request("send", params).await;
    assert_eq!(again["payload"], r["payload"]);
    assert_eq!(dc.sent_to(&dm).len(), 1);
    assert_eq!(
        history(&mut op, "agent:main:discord:dm:42").await,
        vec!["hello from the operator"]
    );
    // A second send to the user reuses the DM channel.
    let r = op
        .request("send", json!({"to": "user:42", "message": "second", "channel": "discord", "idempotencyKey": "send-2"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        dc.with(|s| s.dm_opens.len()),
        1,
        "the DM channel is opened once"
    );
    // A long text is split at 2,000 characters and arrives whole.
    let long: String = (0..45)
        .map(|i| format!("{i:02} {}\n", "x".repeat(96)))
        .collect();
    let r = op
        .request("send", json!({"to": "channel:600", "message": long, "channel": "discord", "idempotencyKey": "long-1"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let parts = dc.sent_to("600");
    assert_eq!(parts.len(), 3, "{parts:?}");
    assert!(parts.iter().all(|p| p.content.chars().count() <= 2000));
    assert_eq!(
        parts.iter().map(|p| p.content.as_str()).collect::<String>(),
        long.trim()
    );
    // A message created whose answer was lost (502): the outbox's retry finds it by its
    // nonce; one message, not two.
    dc.with(|s| s.fail_next.push_back(Fail::CreatedThen502));
    let r = op
        .request("send", json!({"to": "700", "message": "once", "channel": "discord", "idempotencyKey": "lost-1"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let sent = dc.sent_to("700");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(r["payload"]["messageId"], sent[0].id.as_str());
    assert_eq!(
        dc.with(|s| s.send_attempts.len()),
        7,
        "1 + 1 + 3 parts + the lost answer and its retry"
    );
}

#[tokio::test]
async fn rate_limits_are_honoured_in_the_worker_up_to_a_bound_then_by_the_outbox() {
    let dc = Discord::start();
    let gw = gateway(&dc, "");
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    // A short 429: the worker waits it out and the send succeeds in one delivery attempt.
    dc.with(|s| s.fail_next.push_back(Fail::RateLimited(0.5)));
    let r = op
        .request(
            "send",
            json!({"to": "600", "message": "patience", "idempotencyKey": "ra-1"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let a = dc.with(|s| s.send_attempts.clone());
    assert_eq!(a.len(), 2);
    assert!(
        a[1] - a[0] >= Duration::from_millis(480),
        "retried after {:?}",
        a[1] - a[0]
    );
    assert_eq!(dc.sent_to("600").len(), 1);
    // A 429 longer than the bound: handed back to the outbox, which retries after it.
    dc.with(|s| s.fail_next.push_back(Fail::RateLimited(3.0)));
    let r = op
        .request(
            "send",
            json!({"to": "601", "message": "later", "idempotencyKey": "ra-2"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let a = dc.with(|s| s.send_attempts.clone());
    assert_eq!(a.len(), 4);
    assert!(
        a[3] - a[2] >= Duration::from_millis(2900),
        "retried after {:?}",
        a[3] - a[2]
    );
    assert_eq!(dc.sent_to("601").len(), 1);
    let log = gw.log();
    assert!(
        log.contains("delivery not made yet: rate limited by discord (retry after 3000 ms)"),
        "the outbox scheduled the retry:\n{log}"
    );
}

#[tokio::test]
async fn forbidden_and_unknown_channels_are_refused_at_once() {
    let dc = Discord::start();
    let gw = gateway(&dc, "");
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    dc.with(|s| s.fail_next.push_back(Fail::Forbidden));
    let r = op
        .request(
            "send",
            json!({"to": "600", "message": "hello?", "idempotencyKey": "f-1"}),
        )
        .await;
    assert_eq!(r["error"]["code"], "UNAVAILABLE", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Missing Access (50001)"),
        "{r}"
    );
    dc.with(|s| s.fail_next.push_back(Fail::UnknownChannel));
    let r = op
        .request(
            "send",
            json!({"to": "601", "message": "anyone?", "idempotencyKey": "f-2"}),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown Channel (10003)"),
        "{r}"
    );
    assert_eq!(
        dc.with(|s| s.send_attempts.len()),
        2,
        "no retries of refusals"
    );
    let r = op
        .request(
            "send",
            json!({"to": "bob", "message": "x", "idempotencyKey": "f-3"}),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid discord target"),
        "{r}"
    );
}

#[tokio::test]
async fn a_killed_worker_is_restarted_alone_and_delivers_the_queued_send_once() {
    let dc = Discord::start();
    let gw = gateway(&dc, r#"allowFrom: ["42"]"#);
    let mut op = operator(&gw).await;
    let (mut bystander, _) = Client::connect(&gw.url(), v4_params(Some(TOKEN))).await;
    let before = connected(&mut op).await;
    // Rate limited past the bound: the send is queued in the outbox when the worker dies.
    dc.with(|s| s.fail_next.push_back(Fail::RateLimited(3.0)));
    op.send_json(&json!({"type": "req", "id": "s1", "method": "send",
        "params": {"to": "600", "message": "survives", "idempotencyKey": "kill-1"}}))
        .await;
    dc.wait_for("the rate-limited attempt", |s| s.send_attempts.len() == 1);
    let pid = before["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let r = op.response("s1").await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(dc.sent_to("600").len(), 1);
    let after = connected(&mut op).await;
    assert_ne!(after["pid"], before["pid"]);
    assert_eq!(dc.identifies().len(), 2, "the new worker identified anew");
    // Inbound works again, and the rest of the gateway never noticed.
    let dm = dc.dm_channel("42");
    dc.push_dm("42", "Alice", "back?");
    dc.wait_for("the reply", |s| s.sent.iter().any(|m| m.channel_id == dm));
    let h = bystander.request("health", json!({})).await;
    assert_eq!(h["ok"], true);
    assert!(gw.log().contains("worker exited; restarting"));
}
