//! iMessage end to end (issue #21): the real gateway, the real iMessage worker, the real
//! agent worker (echo backend), and a stand-in `imsg` executable as `cliPath`.
//!
//! There is no Mac on this machine (Linux CI): the stand-in follows imsg's documented
//! JSON-RPC (`docs/rpc.md`) over stdio with a file as its Messages database; what needs
//! Messages.app itself (AppleScript sends, real permission prompts, SSH to a Mac) is not
//! exercised here.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::harness::*;
use crate::standin_imessage::{Imsg, alive};

const ALICE: &str = "+14155550101";

fn write_config(dir: &std::path::Path, imsg: &Imsg, extra: &str) {
    std::fs::write(
        dir.join("config.json5"),
        format!(
            r#"{{ channels: {{ imessage: {{ cliPath: "{}", dbPath: "{}", {extra} }} }} }}"#,
            bin("standin-imsg").display(),
            imsg.db.display()
        ),
    )
    .unwrap();
}

fn opts(state: &Arc<tempfile::TempDir>) -> GatewayOpts {
    GatewayOpts {
        state: Some(Arc::clone(state)),
        extra: vec!["--worker-health-interval-ms".into(), "100".into()],
        ..Default::default()
    }
}

fn gateway(imsg: &Imsg, extra: &str) -> Gateway {
    let state = Arc::new(tempfile::tempdir().unwrap());
    write_config(state.path(), imsg, extra);
    Gateway::start_with(opts(&state))
}

async fn operator(gw: &Gateway) -> Client {
    Client::connect(&gw.url(), v3_params(Some(TOKEN))).await.0
}

/// Waits until the worker reports `connected` and imsg has a watch open.
async fn connected(op: &mut Client, imsg: &Imsg, subscribes: usize) -> serde_json::Value {
    let w = op
        .wait_worker("imessage", "connected", |w| {
            w["providerState"] == "connected"
        })
        .await;
    imsg.wait_for("watch.subscribe", |i| i.subscribes().len() >= subscribes);
    w
}

fn pid_of(spawn: &serde_json::Value) -> i32 {
    spawn["pid"].as_i64().unwrap() as i32
}

#[tokio::test]
async fn a_new_message_gets_the_agents_reply_through_send_and_own_messages_are_ignored() {
    let imsg = Imsg::new();
    let gw = gateway(
        &imsg,
        &format!(
            r#"allowFrom: ["{ALICE}", "Bob@Example.com"], groups: {{ "7": {{ requireMention: false }} }}"#
        ),
    );
    let mut op = operator(&gw).await;
    connected(&mut op, &imsg, 1).await;
    let spawn = &imsg.spawns()[0];
    assert_eq!(spawn["args"][0], "rpc");
    assert_eq!(spawn["args"][1], "--json");
    assert_eq!(
        spawn["args"][3],
        imsg.db.display().to_string(),
        "dbPath is passed as --db"
    );
    imsg.push_dm(1, ALICE, "hello mac");
    imsg.wait_for("the reply", |i| !i.sent().is_empty());
    let sent = imsg.sent();
    assert_eq!(sent[0]["to"], ALICE, "{sent:?}");
    assert_eq!(sent[0]["text"], "[echo] hello mac");
    // The reply came back through the watch as is_from_me and was not answered; an
    // e-mail handle matches allowFrom in any case; a listed group is answered by chat id.
    imsg.push_dm(2, "bob@example.com", "from bob");
    imsg.wait_for("bob's reply", |i| i.sent().len() == 2);
    imsg.push_group(7, "+15550000002", "team hello");
    imsg.wait_for("the group reply", |i| i.sent().len() == 3);
    let sent = imsg.sent();
    assert_eq!(sent[1]["to"], "bob@example.com");
    assert_eq!(sent[2]["chat_id"], 7, "{sent:?}");
    assert!(
        sent[2]["text"].as_str().unwrap().ends_with("team hello"),
        "{sent:?}"
    );
    assert_eq!(
        imsg.sent().len(),
        3,
        "own messages were answered: {:?}",
        imsg.sent()
    );
    let h = op
        .request(
            "chat.history",
            json!({"sessionKey": format!("agent:main:imessage:dm:{ALICE}")}),
        )
        .await;
    assert_eq!(
        message_texts(&h["payload"]),
        vec!["hello mac", "[echo] hello mac"]
    );
    let h = op
        .request(
            "chat.history",
            json!({"sessionKey": "agent:main:imessage:group:7"}),
        )
        .await;
    assert_eq!(message_texts(&h["payload"]).len(), 2, "{h}");
    let status = op.request("channels.status", json!({})).await;
    assert_eq!(
        status["payload"]["channels"]["imessage"]["connected"], true,
        "{status}"
    );
}

#[tokio::test]
async fn an_exiting_imsg_is_restarted_and_resumes_from_since_rowid_losing_and_repeating_nothing() {
    let imsg = Imsg::new();
    let gw = gateway(&imsg, &format!(r#"allowFrom: ["{ALICE}"]"#));
    let mut op = operator(&gw).await;
    connected(&mut op, &imsg, 1).await;
    imsg.push_dm(1, ALICE, "one");
    imsg.wait_for("the first reply", |i| i.sent().len() == 1);
    let first = pid_of(&imsg.spawns()[0]);
    imsg.exit();
    imsg.wait_for("imsg to exit", |_| !alive(first));
    // Arrives while imsg is down.
    let two = imsg.push_dm(1, ALICE, "two");
    imsg.wait_for("the restart", |i| i.spawns().len() == 2);
    imsg.wait_for("the second reply", |i| i.sent().len() == 2);
    imsg.push_dm(1, ALICE, "three");
    imsg.wait_for("the third reply", |i| i.sent().len() == 3);
    // A chat's messages are handled in order: a repeat of "one" would be before "three".
    assert_eq!(
        imsg.sent_texts(),
        vec!["[echo] one", "[echo] two", "[echo] three"]
    );
    // The new imsg was asked for what came after the last row already handled: "one"
    // (row 1) was stored, and its reply (row 2, this Mac's own) is passed over once
    // the watch has seen it; "two" was not handled yet.
    let subs = imsg.subscribes();
    assert_eq!(subs.len(), 2, "{subs:?}");
    let since = subs[1]["params"]["since_rowid"].as_i64().unwrap();
    assert!((1..two).contains(&since), "{subs:?}");
    let w = op
        .wait_worker("imessage", "connected", |w| {
            w["providerState"] == "connected"
        })
        .await;
    assert_eq!(w["restarts"], 0, "imsg restarted inside the worker: {w}");
}

#[tokio::test]
async fn a_gateway_restart_resumes_from_the_cursor_it_stored() {
    let imsg = Imsg::new();
    let state = Arc::new(tempfile::tempdir().unwrap());
    write_config(state.path(), &imsg, &format!(r#"allowFrom: ["{ALICE}"]"#));
    let gw = Gateway::start_with(opts(&state));
    let mut op = operator(&gw).await;
    connected(&mut op, &imsg, 1).await;
    let row = imsg.push_dm(1, ALICE, "before");
    imsg.wait_for("the reply", |i| i.sent().len() == 1);
    // kill -9 of the gateway: its worker and the worker's imsg go with it.
    gw.signal(Signal::SIGKILL);
    drop(op);
    drop(gw);
    let first = pid_of(&imsg.spawns()[0]);
    imsg.wait_for("imsg to die with the worker", |_| !alive(first));
    imsg.push_dm(1, ALICE, "while down");
    let gw = Gateway::start_with(opts(&state));
    imsg.wait_for("the reply after the restart", |i| i.sent().len() == 2);
    imsg.push_dm(1, ALICE, "after");
    imsg.wait_for("the last reply", |i| i.sent().len() == 3);
    assert_eq!(
        imsg.sent_texts(),
        vec!["[echo] before", "[echo] while down", "[echo] after"]
    );
    let subs = imsg.subscribes();
    assert_eq!(
        subs.last().unwrap()["params"]["since_rowid"],
        row,
        "{subs:?}"
    );
    drop(gw);
}

#[tokio::test]
async fn missing_full_disk_access_is_reported_in_those_words_and_not_retried() {
    let imsg = Imsg::new();
    imsg.without_full_disk_access();
    let gw = gateway(&imsg, "");
    let mut op = operator(&gw).await;
    let w = op
        .wait_worker("imessage", "permission", |w| {
            w["providerState"] == "permission"
        })
        .await;
    let detail = w["detail"].as_str().unwrap();
    assert!(detail.starts_with("Full Disk Access is missing"), "{w}");
    assert!(
        detail.contains("System Settings → Privacy & Security → Full Disk Access"),
        "{w}"
    );
    assert!(
        detail.contains("switchboard workers restart imessage"),
        "{w}"
    );
    // Absence can only be seen over time: many health checks (every 100 ms) later, still
    // one start of imsg, one request, no worker restarts.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(imsg.spawns().len(), 1, "{:?}", imsg.spawns());
    assert_eq!(imsg.requests().len(), 1, "{:?}", imsg.requests());
    let w = op.worker("imessage").await;
    assert_eq!(w["restarts"], 0, "{w}");
    assert_eq!(w["providerState"], "permission");
    let status = op.request("channels.status", json!({})).await;
    assert_eq!(
        status["payload"]["channels"]["imessage"]["connected"], false,
        "{status}"
    );
    let health = op.request("health", json!({})).await;
    assert_eq!(
        health["payload"]["channels"]["imessage"]["state"], "permission",
        "{health}"
    );
}

#[tokio::test]
async fn a_missing_imsg_is_named_with_how_to_install_it() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(
        state.path().join("config.json5"),
        r#"{ channels: { imessage: { cliPath: "/nonexistent/imsg" } } }"#,
    )
    .unwrap();
    let gw = Gateway::start_with(opts(&state));
    let mut op = operator(&gw).await;
    let w = op
        .wait_worker("imessage", "missing", |w| w["providerState"] == "missing")
        .await;
    let detail = w["detail"].as_str().unwrap();
    assert!(detail.contains("imsg was not found"), "{w}");
    assert!(detail.contains("brew install steipete/tap/imsg"), "{w}");
    assert_eq!(w["restarts"], 0, "{w}");
}

#[tokio::test]
async fn kill_9_of_the_worker_leaves_no_imsg_behind_and_loses_no_message() {
    let imsg = Imsg::new();
    let gw = gateway(&imsg, &format!(r#"allowFrom: ["{ALICE}"]"#));
    let mut op = operator(&gw).await;
    let w = connected(&mut op, &imsg, 1).await;
    imsg.push_dm(1, ALICE, "one");
    imsg.wait_for("the first reply", |i| i.sent().len() == 1);
    let child = pid_of(&imsg.spawns()[0]);
    assert!(alive(child));
    let worker = w["pid"].as_i64().unwrap() as i32;
    kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    imsg.wait_for("the orphan to be gone", |_| !alive(child));
    imsg.push_dm(1, ALICE, "two"); // while no worker runs
    // The restarted worker has its own imsg.
    imsg.wait_for("a new imsg", |i| i.spawns().len() == 2);
    let w = op
        .wait_worker("imessage", "connected again", |w| {
            w["providerState"] == "connected" && w["pid"].as_i64() != Some(i64::from(worker))
        })
        .await;
    assert!(w["restarts"].as_u64().unwrap() >= 1, "{w}");
    assert!(alive(pid_of(&imsg.spawns()[1])));
    imsg.wait_for("the second reply", |i| i.sent().len() == 2);
    imsg.push_dm(1, ALICE, "three");
    imsg.wait_for("the third reply", |i| i.sent().len() == 3);
    assert_eq!(
        imsg.sent_texts(),
        vec!["[echo] one", "[echo] two", "[echo] three"]
    );
    drop(gw);
}

#[tokio::test]
async fn send_with_channel_imessage_is_delivered_once_per_idempotency_key() {
    let imsg = Imsg::new();
    let gw = gateway(&imsg, "");
    let mut op = operator(&gw).await;
    connected(&mut op, &imsg, 1).await;
    let params = json!({"to": ALICE, "message": "from the operator", "channel": "imessage",
        "idempotencyKey": "im-1"});
    let r = op.request("send", params.clone()).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["payload"]["channel"], "imessage");
    let sent = imsg.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["to"], ALICE);
    assert_eq!(r["payload"]["messageId"], sent[0]["guid"], "{r}");
    let again = op.request("send", params).await;
    assert_eq!(again["payload"], r["payload"]);
    assert_eq!(imsg.sent().len(), 1, "the same key sent twice");
    // imsg's error is the verdict: a refused target fails at once, without a retry.
    std::fs::write(imsg.side("send-error"), "Invalid chat target: 999").unwrap();
    let r = op
        .request(
            "send",
            json!({"to": "999", "message": "x", "channel": "imessage",
            "idempotencyKey": "im-2"}),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid chat target"),
        "{r}"
    );
    let r = op
        .request(
            "send",
            json!({"to": "nobody", "message": "x", "channel": "imessage",
            "idempotencyKey": "im-3"}),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid imessage target"),
        "{r}"
    );
    assert_eq!(imsg.sent().len(), 1);
    // Automation refused (AppleScript's -1743): said in those words, and no more sends
    // are tried until an operator acts.
    std::fs::write(
        imsg.side("send-error"),
        "AppleScript failed: Not authorized to send Apple events to Messages. (-1743)",
    )
    .unwrap();
    let r = op
        .request(
            "send",
            json!({"to": ALICE, "message": "x", "channel": "imessage",
            "idempotencyKey": "im-4"}),
        )
        .await;
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(msg.contains("Automation permission is missing"), "{r}");
    assert!(msg.contains("Privacy & Security → Automation"), "{r}");
    let w = op
        .wait_worker("imessage", "permission", |w| {
            w["providerState"] == "permission"
        })
        .await;
    assert!(
        w["detail"].as_str().unwrap().starts_with("Automation"),
        "{w}"
    );
    let sends = |i: &Imsg| {
        i.requests()
            .iter()
            .filter(|r| r["method"] == "send")
            .count()
    };
    let before = sends(&imsg);
    let r = op
        .request(
            "send",
            json!({"to": ALICE, "message": "y", "channel": "imessage",
            "idempotencyKey": "im-5"}),
        )
        .await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Automation"),
        "{r}"
    );
    assert_eq!(
        sends(&imsg),
        before,
        "a send was tried without the permission"
    );
}

/// An `ssh` on `PATH` that records its arguments and runs the remote command here, as
/// sshd would run it on the Mac (through a shell).
fn fake_ssh(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let args = dir.join("ssh-args");
    let script = dir.join("ssh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\nwhile [ \"$#\" -gt 0 ] && [ \"$1\" != \"--\" ]; do shift; done\nshift 2\nexec sh -c \"$1\"\n",
            args.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, args)
}

#[tokio::test]
async fn remote_host_runs_imsg_through_ssh_and_a_missing_remote_imsg_is_named() {
    let imsg = Imsg::new();
    let tools = tempfile::tempdir().unwrap();
    let (path, args) = fake_ssh(tools.path());
    let state = Arc::new(tempfile::tempdir().unwrap());
    // The fake ssh plays the Mac here, on this host and inside the worker's confinement
    // (which allows ssh, not what runs on the remote side): the test loosens it by what
    // the "remote" side needs, the stand-in imsg and its folders.
    std::fs::write(
        state.path().join("config.json5"),
        format!(
            r#"{{ channels: {{ imessage: {{ cliPath: "{}", dbPath: "{}", remoteHost: "me@mac.local", allowFrom: ["{ALICE}"] }} }},
                 confinement: {{ imessage: {{ exec: ["{}"], readWrite: ["{}", "{}"] }} }} }}"#,
            bin("standin-imsg").display(),
            imsg.db.display(),
            bin("standin-imsg").display(),
            imsg.db.parent().unwrap().display(),
            tools.path().display(),
        ),
    )
    .unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        env: vec![("PATH".into(), path.clone())],
        ..opts(&state)
    });
    let mut op = operator(&gw).await;
    connected(&mut op, &imsg, 1).await;
    let argv = std::fs::read_to_string(&args).unwrap();
    let argv: Vec<&str> = argv.lines().collect();
    assert_eq!(argv[0], "-T", "{argv:?}");
    assert!(argv.contains(&"BatchMode=yes"), "{argv:?}");
    assert_eq!(argv[argv.len() - 2], "me@mac.local", "{argv:?}");
    let remote = format!(
        "{} rpc --json --db {}",
        bin("standin-imsg").display(),
        imsg.db.display()
    );
    assert_eq!(argv[argv.len() - 1], remote, "the remote command: {argv:?}");
    imsg.push_dm(1, ALICE, "over ssh");
    imsg.wait_for("the reply", |i| i.sent().len() == 1);
    assert_eq!(imsg.sent_texts(), vec!["[echo] over ssh"]);
    let w = op.worker("imessage").await;
    assert_eq!(w["labels"]["remoteHost"], "me@mac.local", "{w}");
    drop(op);
    drop(gw);

    // imsg not installed on the Mac: the remote shell's 127, named, not retried.
    let state = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(
        state.path().join("config.json5"),
        r#"{ channels: { imessage: { remoteHost: "mac-mini", cliPath: "/nonexistent/imsg" } } }"#,
    )
    .unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        env: vec![("PATH".into(), path)],
        ..opts(&state)
    });
    let mut op = operator(&gw).await;
    let w = op
        .wait_worker("imessage", "missing", |w| w["providerState"] == "missing")
        .await;
    let detail = w["detail"].as_str().unwrap();
    assert!(detail.contains("imsg was not found on mac-mini"), "{w}");
    assert_eq!(w["restarts"], 0, "{w}");
}

#[tokio::test]
async fn an_unknown_sender_gets_a_pairing_code_that_lets_them_in_once_approved() {
    let imsg = Imsg::new();
    let gw = gateway(&imsg, "");
    let mut op = operator(&gw).await;
    connected(&mut op, &imsg, 1).await;
    let bob = "Bob@Example.com";
    imsg.push_dm(3, bob, "who are you?");
    imsg.wait_for("the pairing reply", |i| i.sent().len() == 1);
    let reply = imsg.sent_texts()[0].clone();
    assert!(reply.contains("bob@example.com"), "{reply}");
    assert!(
        reply.contains("switchboard pairing approve imessage"),
        "{reply}"
    );
    let code = reply
        .lines()
        .find_map(|l| l.strip_prefix("Pairing code: "))
        .unwrap()
        .to_owned();
    let ok = std::process::Command::new(bin("switchboard"))
        .args(["pairing", "approve", "imessage", &code])
        .args(["--url", &gw.url(), "--token", TOKEN])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    imsg.push_dm(3, bob, "and now?");
    imsg.wait_for("the agent's reply", |i| i.sent().len() == 2);
    assert_eq!(imsg.sent_texts()[1], "[echo] and now?");
    assert_eq!(imsg.sent()[1]["to"], "bob@example.com");
}

/// The outbox's guarantee for iMessage, exactly (README, `outbox_store.rs`): imsg has no
/// idempotency key, but Messages keeps what was sent, so an attempt whose outcome was
/// lost (here the worker is killed while imsg holds its answer) is looked up in the chat's
/// recent messages before it is repeated: the message goes out once.
#[tokio::test]
async fn imessage_checks_an_attempt_whose_outcome_was_lost_and_does_not_send_it_again() {
    let imsg = Imsg::new();
    let gw = gateway(&imsg, "");
    let mut op = operator(&gw).await;
    let before = connected(&mut op, &imsg, 1).await;
    std::fs::write(imsg.side("send-hang"), "").unwrap();
    op.send_json(&json!({"type": "req", "id": "w", "method": "send",
        "params": {"to": ALICE, "message": "in the window", "channel": "imessage",
        "idempotencyKey": "w-1"}}))
        .await;
    imsg.wait_for("Messages took the message", |i| i.sent().len() == 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(before["pid"].as_i64().unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let r = op.response("w").await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(imsg.sent_texts(), vec!["in the window"], "sent once");
    assert_eq!(r["payload"]["messageId"], imsg.sent()[0]["guid"], "{r}");
    let after = op.worker("imessage").await;
    assert_ne!(after["pid"], before["pid"]);
}
