//! Slack end to end (issue #18): the real gateway, the real Slack worker and the real
//! agent worker (echo backend) against a local stand-in of Slack's Web API and Socket
//! Mode, written from Slack's documentation (see `standin_slack`).

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;
use crate::standin_slack::{APP_TOKEN, BOT_TOKEN, Fail, Slack, dm_of};

const ALICE: &str = "U0ALICE";
const TEAM_CHANNEL: &str = "C0TEAM";

/// A gateway with `channels.slack` at the stand-in; `extra` adds keys (JSON5).
fn gateway(slack: &Slack, extra: &str, bot_token: &str) -> Gateway {
    let state = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(
        state.path().join("config.json5"),
        format!(
            r#"{{ channels: {{ slack: {{ botToken: "{bot_token}", appToken: "{APP_TOKEN}", apiUrl: "{}", {extra} }} }} }}"#,
            slack.url
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
    op.wait_worker("slack", "connected", |w| w["providerState"] == "connected")
        .await
}

async fn history(op: &mut Client, key: &str) -> Vec<String> {
    let h = op.request("chat.history", json!({"sessionKey": key})).await;
    message_texts(&h["payload"])
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn texts(slack: &Slack, channel: &str) -> Vec<String> {
    slack
        .posted_to(channel)
        .into_iter()
        .map(|p| p.text)
        .collect()
}

fn cli(gw: &Gateway, args: &[&str]) -> std::process::Output {
    Command::new(bin("switchboard"))
        .args(args)
        .args(["--url", &gw.url(), "--token", TOKEN])
        .output()
        .unwrap()
}

#[tokio::test]
async fn a_direct_message_reaches_the_agent_and_its_envelope_is_acknowledged() {
    let slack = Slack::start();
    let gw = gateway(&slack, &format!(r#"allowFrom: ["{ALICE}"]"#), BOT_TOKEN);
    let mut op = operator(&gw).await;
    let w = connected(&mut op).await;
    assert_eq!(w["restarts"], 0, "{w}");
    slack.push_dm(ALICE, "hello slack");
    let dm = dm_of(ALICE);
    slack.wait_for("the reply", |s| s.posted.iter().any(|p| p.channel == dm));
    assert_eq!(texts(&slack, &dm), vec!["[echo] hello slack"]);
    // The DM was acknowledged, and so was the bot's own reply echoed back as an event
    // (ignored: no reply to it, no loop).
    slack.wait_for("both acknowledgements", |s| s.acks.len() == 2);
    slack.push_dm(ALICE, "second");
    slack.wait_for("the second reply", |s| s.posted.len() == 2);
    let key = format!("agent:main:slack:dm:{ALICE}");
    assert_eq!(
        history(&mut op, &key).await,
        vec![
            "hello slack",
            "[echo] hello slack",
            "second",
            "[echo] second"
        ]
    );
    slack.with(|s| {
        assert_eq!(s.auth_test_calls, 1);
        assert_eq!(s.sockets_opened, 1, "one connection for the whole test");
        assert!(s.unknown_acks.is_empty(), "{:?}", s.unknown_acks);
        assert!(s.posted.iter().all(|p| p.thread_ts.is_none()));
    });
    let status = op.request("channels.status", json!({})).await;
    assert_eq!(
        status["payload"]["channels"]["slack"]["connected"], true,
        "{status}"
    );
    let log = gw.log();
    assert!(
        !log.contains(BOT_TOKEN) && !log.contains(APP_TOKEN),
        "a token reached the log"
    );
    assert!(!log.contains("ticket="), "the socket URL reached the log");
}

#[tokio::test]
async fn channels_answer_mentions_once_in_their_thread_and_ignore_the_rest() {
    let slack = Slack::start();
    let gw = gateway(
        &slack,
        &format!(
            r#"dmPolicy: "allowlist", allowFrom: ["{ALICE}"], channels: {{ "{TEAM_CHANNEL}": {{}} }}"#
        ),
        BOT_TOKEN,
    );
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    slack.push_dm("U0MALLORY", "let me in");
    slack.push_channel(
        TEAM_CHANNEL,
        "U0CAROL",
        "chatting among ourselves",
        false,
        None,
    );
    // A mention inside a thread: Slack sends `message` and `app_mention` for it.
    let root = slack.push_channel(TEAM_CHANNEL, "U0CAROL", "start", false, None);
    slack.push_channel(TEAM_CHANNEL, "U0CAROL", "ping", true, Some(&root));
    slack.push_channel("C0OTHER", "U0CAROL", "other channel", true, None);
    slack.wait_for("the channel reply", |s| {
        s.posted.iter().any(|p| p.channel == TEAM_CHANNEL)
    });
    // The stranger, the unlisted channel and the chatter got nothing: wait for the
    // reply to a message sent after them, then look.
    slack.push_dm(ALICE, "am I heard?");
    slack.wait_for("the allowed sender's reply", |s| {
        s.posted.iter().any(|p| p.channel == dm_of(ALICE))
    });
    let replies = slack.posted_to(TEAM_CHANNEL);
    assert_eq!(
        replies.len(),
        1,
        "one reply for message + app_mention: {replies:?}"
    );
    assert!(
        replies[0]
            .text
            .starts_with("[echo] [U0CAROL]: @switchboard ping"),
        "{}",
        replies[0].text
    );
    assert_eq!(
        replies[0].thread_ts.as_deref(),
        Some(root.as_str()),
        "in the thread"
    );
    assert!(slack.posted_to(&dm_of("U0MALLORY")).is_empty());
    assert!(slack.posted_to("C0OTHER").is_empty());
    let key = format!("agent:main:slack:channel:{TEAM_CHANNEL}");
    let h = history(&mut op, &key).await;
    assert_eq!(h.len(), 2, "{h:?}");
    // Every envelope was acknowledged, the skipped ones included.
    slack.wait_for("no envelope left unacknowledged", |s| s.acks.len() >= 8);
}

#[tokio::test]
async fn envelopes_are_acknowledged_only_after_the_gateway_stored_them_and_redeliveries_count_once()
{
    let slack = Slack::start();
    slack.with(|s| s.retry_after = Duration::from_millis(500));
    let gw = gateway(&slack, &format!(r#"allowFrom: ["{ALICE}"]"#), BOT_TOKEN);
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    // The gateway cannot store anything while it is stopped: the worker must not
    // acknowledge, so Slack delivers the envelope again.
    gw.signal(nix::sys::signal::Signal::SIGSTOP);
    slack.push_dm(ALICE, "stored first, then confirmed");
    slack.wait_for("a redelivery of the unacknowledged envelope", |s| {
        s.retries_sent >= 1
    });
    assert!(
        slack.with(|s| s.acks.is_empty()),
        "acknowledged before the gateway stored it"
    );
    gw.signal(nix::sys::signal::Signal::SIGCONT);
    let dm = dm_of(ALICE);
    slack.wait_for("the reply", |s| s.posted.iter().any(|p| p.channel == dm));
    slack.wait_for("the message acknowledged", |s| {
        s.unacked_count() == 0 && !s.acks.is_empty()
    });
    // Later redeliveries of a stored message are acknowledged and not processed again.
    slack.push_dm(ALICE, "after");
    slack.wait_for("the second reply", |s| {
        s.posted.iter().filter(|p| p.channel == dm).count() == 2
    });
    assert_eq!(
        texts(&slack, &dm),
        vec!["[echo] stored first, then confirmed", "[echo] after"],
        "each message answered once"
    );
    let h = history(&mut op, &format!("agent:main:slack:dm:{ALICE}")).await;
    assert_eq!(h.len(), 4, "{h:?}");
}

#[tokio::test]
async fn refreshes_and_silent_sockets_are_replaced_one_connection_at_a_time() {
    let slack = Slack::start();
    let gw = gateway(
        &slack,
        &format!(r#"allowFrom: ["{ALICE}"], socketTimeoutSeconds: 1"#),
        BOT_TOKEN,
    );
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    // Slack asks for a refresh: a new connection, the old one closed first.
    slack.disconnect("warning");
    slack.disconnect("refresh_requested");
    slack.wait_for("the second connection", |s| s.sockets_opened == 2);
    slack.push_dm(ALICE, "after the refresh");
    slack.wait_for("the reply", |s| s.posted.len() == 1);
    // The socket goes half-open: no frames, no pongs. It is replaced within the
    // timeout (1 s here, 30 s by default), and health says so meanwhile.
    slack.go_silent();
    slack.wait_for("the replacement connection", |s| s.sockets_opened == 3);
    let (silenced, dropped) = slack.with(|s| (s.silenced_at.unwrap(), s.silent_closed_at.unwrap()));
    let took = dropped - silenced;
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3500),
        "the half-open socket was dropped after {took:?}"
    );
    slack.push_dm(ALICE, "after the silence");
    slack.wait_for("the reply over the new socket", |s| s.posted.len() == 2);
    // A disabled link is a lost connection too: reconnected after a backoff.
    slack.disconnect("link_disabled");
    slack.wait_for("the fourth connection", |s| s.sockets_opened == 4);
    connected(&mut op).await;
    slack.with(|s| {
        assert_eq!(s.max_open, 1, "never two connections at once");
        assert_eq!(s.connections_open_calls, 4, "one fresh URL per connection");
    });
    let w = op.worker("slack").await;
    assert_eq!(w["restarts"], 0, "the worker reconnects itself: {w}");
}

#[tokio::test]
async fn health_is_not_connected_while_the_socket_is_silent() {
    let slack = Slack::start();
    let gw = gateway(&slack, "socketTimeoutSeconds: 3", BOT_TOKEN);
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    slack.go_silent();
    let start = Instant::now();
    let w = op
        .wait_worker("slack", "reported as not connected", |w| {
            w["providerState"] != "connected"
        })
        .await;
    assert!(start.elapsed() < Duration::from_secs(6), "{w}");
    assert_eq!(w["providerState"], "reconnecting", "{w}");
    connected(&mut op).await;
    assert_eq!(slack.with(|s| s.max_open), 1);
}

#[tokio::test]
async fn unknown_senders_get_a_pairing_code_that_an_operator_approves() {
    let slack = Slack::start();
    let gw = gateway(&slack, "", BOT_TOKEN);
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    let bob = "U0BOB";
    let dm = dm_of(bob);
    slack.push_dm(bob, "hi there");
    slack.wait_for("the pairing reply", |s| {
        s.posted.iter().any(|p| p.channel == dm)
    });
    let reply = texts(&slack, &dm)[0].clone();
    assert!(reply.contains("Your slack user id: U0BOB"), "{reply}");
    assert!(
        reply.contains("switchboard pairing approve slack"),
        "{reply}"
    );
    let code = reply
        .lines()
        .find_map(|l| l.strip_prefix("Pairing code: "))
        .unwrap()
        .to_owned();
    let ok = cli(&gw, &["pairing", "approve", "slack", &code, "--notify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("approved slack sender U0BOB"));
    slack.wait_for("the approval notice", |s| {
        s.posted.iter().filter(|p| p.channel == dm).count() == 2
    });
    assert!(texts(&slack, &dm)[1].contains("access approved"));
    slack.push_dm(bob, "now?");
    slack.wait_for("the agent's reply", |s| {
        s.posted.iter().filter(|p| p.channel == dm).count() == 3
    });
    assert_eq!(texts(&slack, &dm)[2], "[echo] now?");
    let h = history(&mut op, "agent:main:slack:dm:U0BOB").await;
    assert_eq!(
        h,
        vec!["now?", "[echo] now?"],
        "the message before approval was not run"
    );
}

#[tokio::test]
async fn send_delivers_exactly_once_per_key_and_splits_long_texts() {
    let slack = Slack::start();
    let gw = gateway(&slack, "", BOT_TOKEN);
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    let params = json!({"channel": "slack", "to": TEAM_CHANNEL, "message": "hello team", "idempotencyKey": "sl-1"});
    let r = op.request("send", params.clone()).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["payload"]["channel"], "slack");
    let sent = slack.posted_to(TEAM_CHANNEL);
    assert_eq!(sent.len(), 1);
    assert_eq!(r["payload"]["messageId"], sent[0].ts.as_str());
    let again = op.request("send", params).await;
    assert_eq!(again["payload"], r["payload"]);
    assert_eq!(
        slack.posted_to(TEAM_CHANNEL).len(),
        1,
        "a repeated key sends nothing"
    );
    // 9000 characters: three posts of at most 4000, in order, the text intact.
    let line = "y".repeat(99) + "\n";
    let long = line.repeat(90);
    let r = op
        .request(
            "send",
            json!({"channel": "slack", "to": ALICE, "message": long, "idempotencyKey": "sl-2"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let parts = texts(&slack, &dm_of(ALICE));
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p.chars().count() <= 4000));
    // The gateway trims the text's trailing newline; nothing else changes.
    assert!(
        parts.concat() == long.trim_end(),
        "the parts do not join to the text"
    );
    let h = history(&mut op, &format!("agent:main:slack:channel:{TEAM_CHANNEL}")).await;
    assert_eq!(h, vec!["hello team"]);
    let r = op
        .request(
            "send",
            json!({"channel": "slack", "to": "#general", "message": "x", "idempotencyKey": "sl-3"}),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid slack target"),
        "{r}"
    );
}

#[tokio::test]
async fn slack_errors_are_refusals_rate_limits_are_honoured_and_server_errors_retried() {
    let slack = Slack::start();
    let gw = gateway(&slack, "", BOT_TOKEN);
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    for (i, code) in ["channel_not_found", "not_in_channel", "is_archived"]
        .iter()
        .enumerate()
    {
        slack.with(|s| s.fail_next.push_back(Fail::Error(code)));
        let r = op
            .request(
                "send",
                json!({"channel": "slack", "to": "C0GONE", "message": "anyone?", "idempotencyKey": format!("e-{i}")}),
            )
            .await;
        assert_eq!(r["error"]["code"], "UNAVAILABLE", "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(code),
            "{r}"
        );
    }
    assert_eq!(
        slack.with(|s| s.post_attempts.len()),
        3,
        "refusals are not retried"
    );
    // 429 with Retry-After: 1 — the next attempt a second later.
    slack.with(|s| s.fail_next.push_back(Fail::RateLimited(1)));
    let r = op
        .request(
            "send",
            json!({"channel": "slack", "to": TEAM_CHANNEL, "message": "patience", "idempotencyKey": "ra-1"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let attempts = slack.with(|s| s.post_attempts.clone());
    let gap = attempts[attempts.len() - 1] - attempts[attempts.len() - 2];
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    // A server error is passing: retried, then delivered once.
    slack.with(|s| s.fail_next.push_back(Fail::ServerError));
    let r = op
        .request(
            "send",
            json!({"channel": "slack", "to": TEAM_CHANNEL, "message": "again", "idempotencyKey": "se-1"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(texts(&slack, TEAM_CHANNEL), vec!["patience", "again"]);
}

#[tokio::test]
async fn a_refused_token_stops_every_call_and_is_reported_as_unauthorized() {
    let slack = Slack::start();
    let gw = gateway(&slack, "", "xoxb-9999-wrong-tokenzz");
    let mut op = operator(&gw).await;
    let w = op
        .wait_worker("slack", "unauthorized", |w| {
            w["providerState"] == "unauthorized"
        })
        .await;
    assert!(
        w["detail"].as_str().unwrap().contains("invalid_auth"),
        "{w}"
    );
    assert!(w["detail"].as_str().unwrap().contains("botToken"), "{w}");
    let r = op
        .request(
            "send",
            json!({"channel": "slack", "to": TEAM_CHANNEL, "message": "x", "idempotencyKey": "u-1"}),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("slack refused"),
        "{r}"
    );
    // Many health checks later (every 100 ms): still one call, no restarts.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let w = op.worker("slack").await;
    assert_eq!(w["restarts"], 0, "{w}");
    slack.with(|s| {
        assert_eq!(s.refused_calls, 1, "one auth.test, then silence");
        assert_eq!(s.connections_open_calls, 0);
        assert_eq!(s.post_attempts.len(), 0);
    });
    assert!(!gw.log().contains("wrong-tokenzz"));
}

#[tokio::test]
async fn a_token_revoked_while_running_stops_the_worker_calling_slack() {
    let slack = Slack::start();
    let gw = gateway(&slack, "", BOT_TOKEN);
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    slack.with(|s| s.bot_token_error = Some("account_inactive"));
    let r = op
        .request(
            "send",
            json!({"channel": "slack", "to": TEAM_CHANNEL, "message": "x", "idempotencyKey": "r-1"}),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("account_inactive"),
        "{r}"
    );
    let w = op
        .wait_worker("slack", "unauthorized", |w| {
            w["providerState"] == "unauthorized"
        })
        .await;
    assert_eq!(w["connected"], false, "{w}");
    // The socket is closed and no new one is opened; later sends make no calls.
    slack.wait_for("the socket closed", |s| s.sockets_open == 0);
    let r = op
        .request(
            "send",
            json!({"channel": "slack", "to": TEAM_CHANNEL, "message": "y", "idempotencyKey": "r-2"}),
        )
        .await;
    assert_eq!(r["error"]["code"], "UNAVAILABLE", "{r}");
    slack.with(|s| {
        assert_eq!(s.post_attempts.len(), 1);
        assert_eq!(s.sockets_opened, 1);
    });
}

#[tokio::test]
async fn a_rate_limited_connections_open_waits_its_retry_after_then_connects() {
    let slack = Slack::start();
    slack.with(|s| {
        s.open_fail_next.push_back(Fail::RateLimited(1));
        s.open_fail_next.push_back(Fail::Error("internal_error"));
    });
    let gw = gateway(&slack, "", BOT_TOKEN);
    let mut op = operator(&gw).await;
    let w = op
        .wait_worker("slack", "in backoff", |w| w["providerState"] == "backoff")
        .await;
    assert!(
        w["detail"]
            .as_str()
            .unwrap()
            .contains("apps.connections.open"),
        "{w}"
    );
    connected(&mut op).await;
    let attempts = slack.with(|s| s.open_attempts.clone());
    assert_eq!(attempts.len(), 3, "429, internal_error, then success");
    assert!(
        attempts[1] - attempts[0] >= Duration::from_millis(950),
        "the Retry-After was not honoured: {:?}",
        attempts[1] - attempts[0]
    );
    let w = op.worker("slack").await;
    assert_eq!(w["restarts"], 0, "{w}");
}

#[tokio::test]
async fn a_worker_killed_before_confirming_a_message_gets_it_again_and_answers_once() {
    let slack = Slack::start();
    slack.with(|s| s.retry_after = Duration::from_millis(500));
    let gw = gateway(&slack, &format!(r#"allowFrom: ["{ALICE}"]"#), BOT_TOKEN);
    let mut op = operator(&gw).await;
    let before = connected(&mut op).await;
    // The gateway is stopped, so the worker holds the message unconfirmed when it dies.
    gw.signal(nix::sys::signal::Signal::SIGSTOP);
    slack.push_dm(ALICE, "survive the crash");
    slack.wait_for("the worker holding it unconfirmed", |s| s.retries_sent >= 1);
    let pid = before["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    gw.signal(nix::sys::signal::Signal::SIGCONT);
    let dm = dm_of(ALICE);
    slack.wait_for("the reply after the restart", |s| {
        s.posted.iter().any(|p| p.channel == dm)
    });
    slack.wait_for("the envelope confirmed", |s| {
        s.unacked_count() == 0 && s.sockets_opened >= 2
    });
    slack.push_dm(ALICE, "still there?");
    slack.wait_for("the next reply", |s| {
        s.posted.iter().filter(|p| p.channel == dm).count() == 2
    });
    assert_eq!(
        texts(&slack, &dm),
        vec!["[echo] survive the crash", "[echo] still there?"],
        "answered exactly once"
    );
    let after = op.worker("slack").await;
    assert_ne!(after["pid"], before["pid"]);
    assert_eq!(slack.with(|s| s.max_open), 1, "{after}");
}
