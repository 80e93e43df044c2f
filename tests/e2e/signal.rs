//! Signal end to end (issue #20): the real gateway, the real Signal worker and the real
//! agent worker (echo backend) against a local stand-in of signal-cli's JSON-RPC daemon,
//! written from signal-cli's documentation (see `standin_signal`). signal-cli itself
//! cannot run on this machine (it needs Java 21+ and a registered number): the stand-in
//! is the whole test. Daemon reached at `httpUrl` here; spawned from `cliPath` in
//! `signal_spawn`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;
use crate::standin_signal::{ACCOUNT, ALICE, Daemon, Fail, GROUP, daemon, envelope, uuid_of};

/// A gateway with `channels.signal` at the stand-in; `extra` adds keys (JSON5).
fn gateway(d: &Daemon, extra: &str) -> Gateway {
    let state = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(
        state.path().join("config.json5"),
        format!(
            r#"{{ channels: {{ signal: {{ account: "{ACCOUNT}", httpUrl: "{}", eventStreamTimeoutSeconds: 2, {extra} }} }} }}"#,
            d.url
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
    op.wait_worker("signal", "connected", |w| w["providerState"] == "connected")
        .await
}

async fn history(op: &mut Client, key: &str) -> Vec<String> {
    let h = op.request("chat.history", json!({"sessionKey": key})).await;
    message_texts(&h["payload"])
        .into_iter()
        .map(str::to_owned)
        .collect()
}

fn replies(d: &Daemon, to: &str) -> Vec<String> {
    d.sent_to(to).into_iter().map(|m| m.message).collect()
}

#[tokio::test]
async fn a_direct_message_reaches_the_agent_once_and_the_reply_goes_back() {
    let d = daemon(|_| {});
    let gw = gateway(&d, &format!(r#"allowFrom: ["{ALICE}"]"#));
    let mut op = operator(&gw).await;
    let w = connected(&mut op).await;
    assert_eq!(w["restarts"], 0, "{w}");
    let ts = d.push_dm(ALICE, &uuid_of(ALICE), "Alice", "hello signal");
    d.wait_for("the reply", WAIT, |s| {
        s.sent.iter().any(|m| m.recipients == [ALICE])
    });
    assert_eq!(replies(&d, ALICE), vec!["[echo] hello signal"]);
    // signal-cli delivers the same envelope again (same sender and timestamp): ignored.
    d.push_raw(envelope(
        ALICE,
        &uuid_of(ALICE),
        "Alice",
        ts,
        json!({"message": "hello signal"}),
    ));
    d.push_dm(ALICE, &uuid_of(ALICE), "Alice", "second");
    d.wait_for("the second reply", WAIT, |s| s.sent.len() == 2);
    let key = format!("agent:main:signal:dm:{ALICE}");
    assert_eq!(
        history(&mut op, &key).await,
        vec![
            "hello signal",
            "[echo] hello signal",
            "second",
            "[echo] second"
        ]
    );
    assert_eq!(d.sent_to(ALICE).len(), 2, "the duplicate got no reply");
    let status = op.request("channels.status", json!({})).await;
    assert_eq!(
        status["payload"]["channels"]["signal"]["connected"], true,
        "{status}"
    );
    // The worker sent JSON (anything else is a 415 at signal-cli) to an allowed Host.
    assert_eq!(d.with(|s| s.refused_requests), 0);
    assert!(d.with(|s| s.methods.iter().any(|m| m == "version")));
}

#[tokio::test]
async fn groups_are_admitted_by_id_answer_when_mentioned_and_allow_lists_take_uuids() {
    let d = daemon(|_| {});
    let bob_uuid = "7ccae375-cd51-4c82-8b1e-7be3280aa485";
    let gw = gateway(
        &d,
        &format!(
            r#"dmPolicy: "allowlist", allowFrom: ["uuid:{bob_uuid}"], groups: {{ "{GROUP}": {{}} }}"#
        ),
    );
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    d.push_dm(
        "+15550000666",
        &uuid_of("+15550000666"),
        "Mallory",
        "let me in",
    );
    d.push_group(
        GROUP,
        "+15550000009",
        "Carol",
        "chatting among ourselves",
        false,
    );
    d.push_group(GROUP, "+15550000009", "Carol", "ping", true);
    d.push_group(
        "T3RoZXJHcm91cElkMTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY=",
        "+15550000009",
        "Carol",
        "other",
        true,
    );
    d.wait_for("the group reply", WAIT, |s| {
        s.sent.iter().any(|m| m.group_id.is_some())
    });
    let group = d.sent_to(GROUP);
    assert_eq!(group.len(), 1, "{group:?}");
    assert!(
        group[0].message.starts_with("[echo]") && group[0].message.ends_with("ping"),
        "{}",
        group[0].message
    );
    // Bob has a UUID and a number; the allow-list names him by UUID.
    d.push_dm("+15550000077", bob_uuid, "Bob", "am I heard?");
    d.wait_for("Bob's reply", WAIT, |s| s.sent.len() == 2);
    assert_eq!(replies(&d, "+15550000077"), vec!["[echo] am I heard?"]);
    assert!(d.sent_to("+15550000666").is_empty());
    let h = history(&mut op, &format!("agent:main:signal:group:{GROUP}")).await;
    assert_eq!(h.len(), 2, "{h:?}");
}

#[tokio::test]
async fn a_silent_stream_is_reopened_and_what_came_meanwhile_arrives_once() {
    let d = daemon(|_| {});
    let gw = gateway(&d, &format!(r#"allowFrom: ["{ALICE}"]"#));
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    let opened = d.with(|s| s.streams_opened);
    // The open stream wedges: no keep-alive, no event (openclaw#75426).
    d.with(|s| s.silence_open_streams());
    let wedged_at = Instant::now();
    d.push_dm(ALICE, &uuid_of(ALICE), "Alice", "are you there?");
    op.wait_worker("signal", "reconnecting", |w| {
        w["providerState"] != "connected"
    })
    .await;
    d.wait_for("a new stream", WAIT, |s| s.streams_opened > opened);
    assert!(
        wedged_at.elapsed() >= Duration::from_millis(1900),
        "reopened after {:?}",
        wedged_at.elapsed()
    );
    d.wait_for("the reply", WAIT, |s| !s.sent.is_empty());
    connected(&mut op).await;
    d.push_dm(ALICE, &uuid_of(ALICE), "Alice", "and now?");
    d.wait_for("the second reply", WAIT, |s| s.sent.len() == 2);
    assert_eq!(
        replies(&d, ALICE),
        vec!["[echo] are you there?", "[echo] and now?"]
    );
    let log = gw.log();
    assert!(log.contains("silent for 2 s"), "{log}");
}

#[tokio::test]
async fn a_stream_cut_between_two_events_loses_and_doubles_nothing() {
    let d = daemon(|_| {});
    let gw = gateway(&d, &format!(r#"allowFrom: ["{ALICE}"]"#));
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    d.with(|s| s.cut_after(1));
    d.push_dm(ALICE, &uuid_of(ALICE), "Alice", "one");
    d.push_dm(ALICE, &uuid_of(ALICE), "Alice", "two");
    d.wait_for("both replies", WAIT, |s| s.sent.len() >= 2);
    assert!(d.with(|s| s.streams_opened) >= 2, "the stream was reopened");
    assert_eq!(replies(&d, ALICE), vec!["[echo] one", "[echo] two"]);
    assert_eq!(
        history(&mut op, &format!("agent:main:signal:dm:{ALICE}")).await,
        vec!["one", "[echo] one", "two", "[echo] two"]
    );
}

#[tokio::test]
async fn messages_sent_while_no_stream_is_open_arrive_with_the_next_one() {
    // signal-cli started with `--receive-mode on-connection` fetches from Signal only
    // while a stream is open: what is sent meanwhile waits at Signal's servers.
    let d = daemon(|_| {});
    let gw = gateway(&d, &format!(r#"allowFrom: ["{ALICE}"]"#));
    let mut op = operator(&gw).await;
    let before = connected(&mut op).await;
    let pid = before["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.wait_for("no stream open", WAIT, |s| s.streams_open == 0);
    d.push_dm(ALICE, &uuid_of(ALICE), "Alice", "while you were away");
    d.wait_for("the reply after the restart", WAIT, |s| !s.sent.is_empty());
    let after = connected(&mut op).await;
    assert_ne!(after["pid"], before["pid"]);
    assert_eq!(replies(&d, ALICE), vec!["[echo] while you were away"]);
    assert!(d.with(|s| s.dropped.is_empty()));
}

#[tokio::test]
async fn sends_follow_the_per_recipient_results_exactly_once_per_key() {
    let d = daemon(|_| {});
    let gw = gateway(&d, "");
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    let params = json!({"to": ALICE, "message": "hello from the operator", "channel": "signal", "idempotencyKey": "sig-1"});
    let r = op.request("send", params.clone()).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["payload"]["channel"], "signal");
    let sent = d.sent_to(ALICE);
    assert_eq!(sent.len(), 1);
    assert_eq!(r["payload"]["messageId"], sent[0].timestamp.to_string());
    let again = op.request("send", params).await;
    assert_eq!(again["payload"], r["payload"]);
    assert_eq!(d.sent_to(ALICE).len(), 1, "a repeated key sends nothing");
    // UNREGISTERED_FAILURE (error -1): refused at once, never retried.
    d.with(|s| s.fail_next.push_back(Fail::Unregistered));
    let r = op
        .request("send", json!({"to": "+15550000404", "message": "x", "channel": "signal", "idempotencyKey": "sig-2"}))
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not registered on Signal"),
        "{r}"
    );
    // An untrusted identity (-4): refused, saying how to trust the key.
    d.with(|s| s.fail_next.push_back(Fail::Untrusted));
    let r = op
        .request("send", json!({"to": "+15550000405", "message": "x", "channel": "signal", "idempotencyKey": "sig-3"}))
        .await;
    let m = r["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("untrusted identity") && m.contains(&format!("signal-cli -a {ACCOUNT} trust")),
        "{r}"
    );
    assert_eq!(
        d.with(|s| s.send_attempts.len()),
        3,
        "no retries of refusals"
    );
    // Rate limited (-5, retryAfterSeconds 1): the next attempt waits for it.
    d.with(|s| s.fail_next.push_back(Fail::RateLimit(1)));
    let r = op
        .request("send", json!({"to": ALICE, "message": "patience", "channel": "signal", "idempotencyKey": "sig-4"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let gap = d.with(|s| {
        let a = &s.send_attempts;
        a[a.len() - 1] - a[a.len() - 2]
    });
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    // A group whose members are all rate limited (RATE_LIMIT_FAILURE in the result).
    d.with(|s| s.fail_next.push_back(Fail::RateLimit(1)));
    let r = op
        .request(
            "send",
            json!({"to": GROUP, "message": "team", "channel": "signal", "idempotencyKey": "sig-5"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let gap = d.with(|s| {
        let a = &s.send_attempts;
        a[a.len() - 1] - a[a.len() - 2]
    });
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    assert_eq!(d.sent_to(GROUP).len(), 1);
    // An I/O error (-3) is passing: retried, then delivered once.
    d.with(|s| s.fail_next.push_back(Fail::IoError));
    let r = op
        .request("send", json!({"to": ALICE, "message": "again", "channel": "signal", "idempotencyKey": "sig-6"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        replies(&d, ALICE),
        vec!["hello from the operator", "patience", "again"]
    );
}

#[tokio::test]
async fn health_is_connected_only_while_the_stream_is_open_and_the_daemon_answers() {
    let d = daemon(|_| {});
    let gw = gateway(&d, "");
    let mut op = operator(&gw).await;
    let w = connected(&mut op).await;
    assert_eq!(w["restarts"], 0);
    assert_eq!(
        w["labels"]["signalCliVersion"],
        crate::standin_signal::VERSION,
        "{w}"
    );
    // The stream is open but `version` stops answering: not connected.
    d.with(|s| s.version_fails = true);
    let w = op
        .wait_worker("signal", "unresponsive", |w| {
            w["providerState"] == "unresponsive"
        })
        .await;
    assert!(w["detail"].as_str().unwrap().contains("version"), "{w}");
    d.with(|s| s.version_fails = false);
    connected(&mut op).await;
    drop(d); // the daemon goes away
    let w = op
        .wait_worker("signal", "backoff", |w| w["providerState"] == "backoff")
        .await;
    assert!(
        w["detail"].as_str().unwrap().contains("event stream"),
        "{w}"
    );
    let status = op.request("channels.status", json!({})).await;
    assert_eq!(
        status["payload"]["channels"]["signal"]["connected"], false,
        "{status}"
    );
    // A send meanwhile is kept, not lost.
    let r = op
        .request(
            "send",
            json!({"to": ALICE, "message": "later", "channel": "signal", "idempotencyKey": "h-1"}),
        )
        .await;
    assert_eq!(r["error"]["details"]["status"], "queued", "{r}");
}

#[tokio::test]
async fn an_account_the_daemon_does_not_list_is_reported_and_not_retried() {
    let d = daemon(|s| s.accounts = Some(vec!["+15559999999".into()]));
    let gw = gateway(&d, "");
    let mut op = operator(&gw).await;
    let w = op
        .wait_worker("signal", "unregistered", |w| {
            w["providerState"] == "unregistered"
        })
        .await;
    assert!(
        w["detail"]
            .as_str()
            .unwrap()
            .contains("account not registered"),
        "{w}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let w = op.worker("signal").await;
    assert_eq!(w["restarts"], 0, "{w}");
    assert_eq!(w["providerState"], "unregistered");
    assert_eq!(
        d.with(|s| s.streams_opened),
        0,
        "no stream for an unknown account"
    );
    let calls = d.with(|s| s.methods.iter().filter(|m| *m == "listAccounts").count());
    assert_eq!(calls, 1, "asked once, then waits for an operator");
}

#[tokio::test]
async fn unknown_senders_get_a_pairing_code_that_an_operator_approves() {
    let d = daemon(|_| {});
    let gw = gateway(&d, "");
    let mut op = operator(&gw).await;
    connected(&mut op).await;
    let bob = "+15550000077";
    d.push_dm(bob, &uuid_of(bob), "Bob", "hi there");
    d.wait_for("the pairing reply", WAIT, |s| {
        s.sent.iter().any(|m| m.recipients == [bob])
    });
    let reply = replies(&d, bob)[0].clone();
    assert!(
        reply.contains(&format!("Your signal user id: {bob}")),
        "{reply}"
    );
    let code = reply
        .lines()
        .find_map(|l| l.strip_prefix("Pairing code: "))
        .unwrap()
        .to_owned();
    let ok = std::process::Command::new(bin("switchboard"))
        .args(["pairing", "approve", "signal", &code, "--notify"])
        .args(["--url", &gw.url(), "--token", TOKEN])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!("approved signal sender {bob}")));
    d.wait_for("the approval notice", WAIT, |s| s.sent.len() == 2);
    assert!(replies(&d, bob)[1].contains("access approved"));
    d.push_dm(bob, &uuid_of(bob), "Bob", "now?");
    d.wait_for("the agent's reply", WAIT, |s| s.sent.len() == 3);
    assert_eq!(replies(&d, bob)[2], "[echo] now?");
}

#[tokio::test]
async fn a_killed_worker_delivers_the_queued_sends_exactly_once_after_its_restart() {
    let d = daemon(|_| {});
    let gw = gateway(&d, "");
    let mut op = operator(&gw).await;
    let before = connected(&mut op).await;
    // The first attempt is rate limited, so the sends are queued when the worker dies.
    d.with(|s| s.fail_next.push_back(Fail::RateLimit(4)));
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        op.send_json(&json!({"type": "req", "id": format!("s{i}"), "method": "send",
            "params": {"to": ALICE, "message": text, "channel": "signal", "idempotencyKey": format!("q-{i}")}}))
            .await;
    }
    d.wait_for("the first attempt", WAIT, |s| s.send_attempts.len() == 1);
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
    assert_eq!(
        replies(&d, ALICE),
        vec!["one", "two", "three"],
        "each exactly once, in order"
    );
    let after = op.worker("signal").await;
    assert_ne!(after["pid"], before["pid"]);
}

/// The outbox's guarantee for Signal, exactly (README, `outbox_store.rs`): signal-cli's
/// `send` takes no idempotency key (each send gets a new timestamp), so a worker that dies
/// after signal-cli took a message but before the outcome reached the supervisor makes the
/// message go out again: at-least-once, in exactly that window. The `send` is still
/// answered once.
#[tokio::test]
async fn signal_is_at_least_once_a_worker_killed_after_signal_cli_took_the_message_sends_it_again()
{
    let d = daemon(|_| {});
    let gw = gateway(&d, "");
    let mut op = operator(&gw).await;
    let before = connected(&mut op).await;
    let pid = before["pid"].as_i64().unwrap() as i32;
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let once = std::sync::Arc::clone(&killed);
    d.with(|s| {
        s.on_accept = Some(std::sync::Arc::new(move || {
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
            json!({"to": ALICE, "message": "in the window", "channel": "signal", "idempotencyKey": "w-1"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(killed.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(
        replies(&d, ALICE),
        vec!["in the window", "in the window"],
        "sent twice"
    );
}
