//! Worker processes under supervision (issue #3): the agent worker and the `agent` flow,
//! crashes, hangs, restart intensity, contract versions, death with the supervisor.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::harness::*;
use crate::standin_openai;

fn test_worker(name: &str, config: Value) -> String {
    json!({"name": name, "program": bin("switchboard-worker-test"), "config": config}).to_string()
}

fn opts(extra: Vec<String>, env: Vec<(&str, String)>) -> GatewayOpts {
    GatewayOpts {
        extra,
        env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        ..Default::default()
    }
}

async fn admin(gw: &Gateway) -> Client {
    Client::connect(&gw.url(), v3_params(Some(TOKEN))).await.0
}

fn alive(pid: u64) -> bool {
    // A zombie is dead for our purposes (its parent is gone and init reaps it).
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

async fn run_agent(c: &mut Client, message: &str, key: &str) -> (Value, Value) {
    let id = format!("agent-{key}");
    c.send_json(&json!({"type":"req","id": id,"method":"agent","params":{"message": message,"idempotencyKey": key}}))
        .await;
    let ack = c.response(&id).await;
    let fin = c.response(&id).await;
    (ack, fin)
}

#[tokio::test]
async fn agent_acks_then_streams_then_answers_finally() {
    let gw = Gateway::start();
    let mut c = admin(&gw).await;
    let (ack, fin) = run_agent(&mut c, "hello there", "run-1").await;
    assert_eq!(ack["ok"], true);
    assert_eq!(ack["payload"]["runId"], "run-1");
    assert_eq!(ack["payload"]["status"], "accepted");
    assert!(ack["payload"]["acceptedAt"].is_u64());
    assert_eq!(fin["ok"], true, "{fin}");
    assert_eq!(fin["payload"]["status"], "ok");
    assert_eq!(fin["payload"]["summary"], "completed");
    assert_eq!(
        fin["payload"]["result"]["payloads"][0]["text"],
        "[echo] hello there"
    );
    // The stream arrived between the two answers, in order.
    let agent_events: Vec<&Value> = c.backlog.iter().filter(|v| v["event"] == "agent").collect();
    let streams: Vec<String> = agent_events
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["payload"]["stream"].as_str().unwrap(),
                e["payload"]["data"]["phase"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        streams.first().map(String::as_str),
        Some("lifecycle:start"),
        "{streams:?}"
    );
    assert_eq!(
        streams.last().map(String::as_str),
        Some("lifecycle:end"),
        "{streams:?}"
    );
    assert!(streams.iter().any(|s| s == "assistant:"), "{streams:?}");
    let seqs: Vec<u64> = agent_events
        .iter()
        .map(|e| e["payload"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "per-run seq"
    );
    let last_text = agent_events
        .iter()
        .rev()
        .find(|e| e["payload"]["stream"] == "assistant")
        .unwrap()["payload"]["data"]["text"]
        .clone();
    assert_eq!(last_text, "[echo] hello there");
    let chat_final = c
        .backlog
        .iter()
        .find(|v| v["event"] == "chat" && v["payload"]["state"] == "final");
    assert!(chat_final.is_some(), "a final chat event");
}

fn user_messages(gw: &Gateway, run_id: &str) -> i64 {
    let db = rusqlite::Connection::open(gw.state.path().join("switchboard.sqlite")).unwrap();
    db.query_row(
        "SELECT COUNT(*) FROM messages WHERE run_id = ?1 AND role = 'user'",
        [run_id],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn a_repeated_idempotency_key_never_starts_a_second_run_even_after_a_restart() {
    let mut gw = Gateway::start_with(opts(
        vec![],
        vec![("SWITCHBOARD_AGENT_ECHO_DELAY_MS", "150".into())],
    ));
    let mut v3 = admin(&gw).await;
    let (mut v4, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.write"])).await;
    v3.send_json(&json!({"type":"req","id":"a","method":"agent","params":{"message":"one two three","idempotencyKey":"dup-1"}}))
        .await;
    let ack = v3.response("a").await;
    assert_eq!(ack["payload"]["status"], "accepted");
    // While it runs: v3 gets the first ack again, v4 gets in_flight.
    let again = v3
        .request("agent", json!({"message":"other","idempotencyKey":"dup-1"}))
        .await;
    assert_eq!(again["payload"], ack["payload"]);
    let v4again = v4
        .request("agent", json!({"message":"other","idempotencyKey":"dup-1"}))
        .await;
    assert_eq!(
        v4again["payload"],
        json!({"runId":"dup-1","status":"in_flight"})
    );
    let fin = v3.response("a").await;
    assert_eq!(fin["payload"]["status"], "ok");
    // After: the stored final answer, for both generations.
    let after = v4
        .request("agent", json!({"message":"x","idempotencyKey":"dup-1"}))
        .await;
    assert_eq!(after["payload"], fin["payload"]);
    // After a restart of the supervisor, still the first answer and no new run.
    let state = std::sync::Arc::clone(&gw.state);
    gw.signal(Signal::SIGTERM);
    assert_eq!(gw.wait_exit(), Some(0));
    let gw2 = Gateway::start_with(GatewayOpts {
        state: Some(state),
        ..Default::default()
    });
    let mut c = admin(&gw2).await;
    let replay = c
        .request("agent", json!({"message":"x","idempotencyKey":"dup-1"}))
        .await;
    assert_eq!(replay["payload"], fin["payload"]);
    assert_eq!(user_messages(&gw2, "dup-1"), 1, "exactly one run happened");
}

#[tokio::test]
async fn chat_abort_stops_a_running_agent() {
    let gw = Gateway::start_with(opts(
        vec![],
        vec![("SWITCHBOARD_AGENT_ECHO_DELAY_MS", "200".into())],
    ));
    let mut c = admin(&gw).await;
    let words = (0..40)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    c.send_json(&json!({"type":"req","id":"a","method":"agent","params":{"message": words,"idempotencyKey":"abort-1"}}))
        .await;
    assert_eq!(c.response("a").await["payload"]["status"], "accepted");
    let delta = c.event("agent").await;
    assert_eq!(delta["payload"]["runId"], "abort-1");
    loop {
        let e = c.event("agent").await;
        if e["payload"]["stream"] == "assistant" {
            break;
        }
    }
    let r = c.request("chat.abort", json!({"sessionKey": "main"})).await;
    assert_eq!(
        r["payload"],
        json!({"ok": true, "aborted": true, "runIds": ["abort-1"]})
    );
    let fin = c.response("a").await;
    assert_eq!(fin["payload"]["status"], "aborted", "{fin}");
    let text = fin["payload"]["result"]["payloads"][0]["text"]
        .as_str()
        .unwrap();
    assert!(text.len() < words.len(), "stopped early: {text}");
    let wait = c
        .request("agent.wait", json!({"runId": "abort-1", "timeoutMs": 1000}))
        .await;
    assert_eq!(wait["payload"]["status"], "aborted");
    let nothing = c.request("chat.abort", json!({"sessionKey": "main"})).await;
    assert_eq!(nothing["payload"]["aborted"], false);
}

#[tokio::test]
async fn agent_wait_reports_the_outcome_or_timeout() {
    let gw = Gateway::start_with(opts(
        vec![],
        vec![("SWITCHBOARD_AGENT_ECHO_DELAY_MS", "100".into())],
    ));
    let mut c = admin(&gw).await;
    c.send_json(&json!({"type":"req","id":"a","method":"agent","params":{"message":"a b c d e f","idempotencyKey":"wait-1"}}))
        .await;
    c.response("a").await;
    let early = c
        .request("agent.wait", json!({"runId": "wait-1", "timeoutMs": 10}))
        .await;
    assert_eq!(
        early["payload"],
        json!({"runId": "wait-1", "status": "timeout"})
    );
    let done = c
        .request("agent.wait", json!({"runId": "wait-1", "timeoutMs": 20000}))
        .await;
    assert_eq!(done["payload"]["status"], "ok");
    assert!(done["payload"]["endedAt"].as_u64() >= done["payload"]["startedAt"].as_u64());
}

#[tokio::test]
async fn the_openai_backend_streams_from_a_local_standin() {
    let api = standin_openai::start();
    let gw = Gateway::start_with(opts(
        vec![],
        vec![
            ("SWITCHBOARD_AGENT_BASE_URL", api.base_url.clone()),
            ("SWITCHBOARD_AGENT_API_KEY", "sk-test-standin".into()),
            ("SWITCHBOARD_AGENT_MODEL", "gpt-test".into()),
        ],
    ));
    let mut c = admin(&gw).await;
    let (_, fin) = run_agent(&mut c, "say hello", "oa-1").await;
    assert_eq!(
        fin["payload"]["result"]["payloads"][0]["text"], "Hello, world",
        "{fin}"
    );
    let deltas: Vec<String> = c
        .backlog
        .iter()
        .filter(|v| v["event"] == "agent" && v["payload"]["stream"] == "assistant")
        .map(|v| v["payload"]["data"]["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, vec!["Hello", ", ", "world"]);
    let (auth, body) = api.seen.all()[0].clone();
    assert_eq!(auth, "Bearer sk-test-standin");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["stream"], true);
    // The conversation continues: the second run sends the first exchange as history.
    run_agent(&mut c, "again", "oa-2").await;
    let body: Value = serde_json::from_str(&api.seen.all()[1].1).unwrap();
    let roles: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, vec!["user", "assistant", "user"]);
    assert!(!gw.log().contains("sk-test-standin"), "API key in the log");
}

#[tokio::test]
async fn backend_errors_become_clear_run_errors() {
    let api = standin_openai::start();
    let gw = Gateway::start_with(opts(
        vec![],
        vec![
            ("SWITCHBOARD_AGENT_BASE_URL", api.base_url.clone()),
            ("SWITCHBOARD_AGENT_API_KEY", "sk-wrong".into()),
        ],
    ));
    let mut c = admin(&gw).await;
    let (_, fin) = run_agent(&mut c, "please-401", "err-401").await;
    assert_eq!(fin["ok"], false);
    assert_eq!(fin["error"]["code"], "UNAVAILABLE");
    let msg = fin["payload"]["summary"].as_str().unwrap();
    assert!(msg.contains("refused the API key (HTTP 401)"), "{msg}");
    assert!(!msg.contains("sk-wrong"));
    let err_event = c
        .backlog
        .iter()
        .find(|v| v["event"] == "agent" && v["payload"]["data"]["phase"] == "error")
        .expect("lifecycle error event");
    assert!(
        err_event["payload"]["data"]["error"]
            .as_str()
            .unwrap()
            .contains("401")
    );

    let before = api.seen.count();
    let (_, fin) = run_agent(&mut c, "please-429", "err-429").await;
    assert_eq!(fin["payload"]["status"], "ok", "retried after 429: {fin}");
    assert_eq!(api.seen.count() - before, 2, "one 429, then one success");

    let (_, fin) = run_agent(&mut c, "please-break", "err-break").await;
    assert_eq!(fin["ok"], false);
    assert!(
        fin["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("stream broke"),
        "{fin}"
    );
}

#[tokio::test]
async fn a_killed_worker_is_restarted_and_everything_else_keeps_serving() {
    let gw = Gateway::start_with(opts(
        vec!["--worker".into(), test_worker("t1", json!({}))],
        vec![],
    ));
    let mut c = admin(&gw).await;
    let agent = c
        .wait_worker("agent", "running", |w| w["state"] == "running")
        .await;
    let t1 = c
        .wait_worker("t1", "running", |w| w["state"] == "running")
        .await;
    let pid = agent["pid"].as_u64().unwrap();
    let killed_at = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let back = c
        .wait_worker("agent", "running again", |w| {
            w["state"] == "running" && w["pid"].as_u64() != Some(pid)
        })
        .await;
    eprintln!(
        "agent worker serving again {} ms after kill -9",
        killed_at.elapsed().as_millis()
    );
    assert_eq!(back["restarts"], 1);
    assert_eq!(back["lastExit"], "killed by SIGKILL");
    // The other worker was not touched.
    let t1_now = c.worker("t1").await;
    assert_eq!(t1_now["pid"], t1["pid"]);
    assert_eq!(t1_now["restarts"], 0);
    // Health shows it, and the agent answers again.
    let h = c.request("health", json!({"probe": true})).await;
    let listed = h["payload"]["workers"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|w| w["name"] == "agent" && w["restarts"] == 1),
        "{listed:?}"
    );
    let (_, fin) = run_agent(&mut c, "still there?", "after-kill").await;
    assert_eq!(fin["payload"]["status"], "ok");
}

#[tokio::test]
async fn a_worker_dying_mid_run_ends_the_run_with_an_error() {
    let gw = Gateway::start_with(opts(
        vec![],
        vec![("SWITCHBOARD_AGENT_ECHO_DELAY_MS", "300".into())],
    ));
    let mut c = admin(&gw).await;
    let agent = c
        .wait_worker("agent", "running", |w| w["state"] == "running")
        .await;
    c.send_json(&json!({"type":"req","id":"a","method":"agent","params":{"message":"a b c d e f g h","idempotencyKey":"mid-1"}}))
        .await;
    c.response("a").await;
    loop {
        let e = c.event("agent").await;
        if e["payload"]["stream"] == "assistant" {
            break;
        }
    }
    let pid = agent["pid"].as_u64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let fin = c.response("a").await;
    assert_eq!(fin["ok"], false);
    assert_eq!(fin["payload"]["status"], "error");
    assert!(
        fin["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("agent worker failed during the run"),
        "{fin}"
    );
    let ev = c.event("chat").await;
    let mut ev = ev;
    while ev["payload"]["state"] != "error" {
        ev = c.event("chat").await;
    }
}

#[tokio::test]
async fn a_hung_worker_is_killed_and_restarted() {
    use switchboard_proto::v1::SendRequest;
    use switchboard_proto::v1::worker_client::WorkerClient;
    let gw = Gateway::start_with(opts(
        vec![
            "--worker".into(),
            test_worker("t1", json!({})),
            "--worker-health-interval-ms".into(),
            "200".into(),
        ],
        vec![],
    ));
    let mut c = admin(&gw).await;
    let before = c
        .wait_worker("t1", "running", |w| w["state"] == "running")
        .await;
    // Tell the worker, over its control socket, to stop answering health checks.
    let socket = gw.state.path().join("sockets/t1/t1.control.sock");
    let channel = tonic::transport::Endpoint::from_shared(format!("unix://{}", socket.display()))
        .unwrap()
        .connect()
        .await
        .expect("connect to the worker socket");
    WorkerClient::new(channel)
        .send(SendRequest {
            text: "hang".into(),
            ..Default::default()
        })
        .await
        .expect("send hang");
    let after = c
        .wait_worker("t1", "restarted", |w| {
            w["state"] == "running" && w["pid"] != before["pid"]
        })
        .await;
    assert_eq!(after["lastExit"], "hung: 3 health checks missed; killed");
    assert_eq!(after["restarts"], 1);
}

#[tokio::test]
async fn restart_intensity_reached_means_failed_until_an_operator_starts_it() {
    let flag = tempfile::NamedTempFile::new().unwrap();
    let gw = Gateway::start_with(opts(
        vec![
            "--no-agent".into(),
            "--worker".into(),
            test_worker(
                "t1",
                json!({"mode": "fail-while-file", "file": flag.path()}),
            ),
        ],
        vec![],
    ));
    let mut c = admin(&gw).await;
    let failed = c
        .wait_worker("t1", "failed", |w| w["state"] == "failed")
        .await;
    assert_eq!(failed["restarts"], 5, "{failed}");
    assert!(
        failed["lastExit"]
            .as_str()
            .unwrap()
            .contains("gave up after 6 exits"),
        "{failed}"
    );
    // It stays failed: no restart storm.
    let still = c.worker("t1").await;
    assert_eq!(still["state"], "failed");
    std::fs::remove_file(flag.path()).unwrap();
    let r = c.request("workers.start", json!({"name": "t1"})).await;
    assert_eq!(r["ok"], true, "{r}");
    c.wait_worker("t1", "running", |w| w["state"] == "running")
        .await;
}

#[tokio::test]
async fn a_worker_speaking_another_contract_version_is_refused() {
    let gw = Gateway::start_with(opts(
        vec![
            "--no-agent".into(),
            "--worker".into(),
            test_worker("t1", json!({"mode": "wrong-contract"})),
        ],
        vec![],
    ));
    let mut c = admin(&gw).await;
    let w = c
        .wait_worker("t1", "failed", |w| w["state"] == "failed")
        .await;
    let why = w["lastExit"].as_str().unwrap();
    assert!(
        why.contains("speaks contract version 999, this supervisor speaks 1"),
        "{why}"
    );
    assert_eq!(w["restarts"], 0);
}

#[tokio::test]
async fn a_config_error_exit_is_not_restarted() {
    let gw = Gateway::start_with(opts(
        vec![
            "--no-agent".into(),
            "--worker".into(),
            test_worker("t1", json!({"mode": "config-error"})),
        ],
        vec![],
    ));
    let mut c = admin(&gw).await;
    let w = c
        .wait_worker("t1", "failed", |w| w["state"] == "failed")
        .await;
    assert_eq!(w["restarts"], 0);
    assert!(
        w["lastExit"].as_str().unwrap().contains("exit code 3"),
        "{w}"
    );
}

#[tokio::test]
async fn workers_are_controlled_one_at_a_time_from_the_cli() {
    let gw = Gateway::start_with(opts(
        vec!["--worker".into(), test_worker("t1", json!({}))],
        vec![],
    ));
    let mut c = admin(&gw).await;
    let agent = c
        .wait_worker("agent", "running", |w| w["state"] == "running")
        .await;
    c.wait_worker("t1", "running", |w| w["state"] == "running")
        .await;
    let cli = |args: &[&str]| {
        std::process::Command::new(bin("switchboard"))
            .args(args)
            .args(["--url", &gw.url(), "--token", TOKEN])
            .output()
            .expect("run the CLI")
    };
    let out = cli(&["workers", "stop", "t1", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    c.wait_worker("t1", "stopped", |w| w["state"] == "stopped")
        .await;
    let out = cli(&["workers", "list", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["agent", "t1"]);
    assert!(cli(&["workers", "start", "t1"]).status.success());
    c.wait_worker("t1", "running", |w| w["state"] == "running")
        .await;
    assert!(cli(&["workers", "restart", "t1"]).status.success());
    c.wait_worker("t1", "restarted", |w| {
        w["state"] == "running" && w["restarts"] == 1
    })
    .await;
    // The agent worker never moved.
    assert_eq!(c.worker("agent").await["pid"], agent["pid"]);
    let out = cli(&["workers", "stop", "nope"]);
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown worker: nope"));
    let text = cli(&["workers", "list"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("NAME"),
        "a table without --json"
    );
}

#[tokio::test]
async fn a_supervisor_killed_with_sigkill_leaves_no_worker_behind() {
    let mut gw = Gateway::start_with(opts(
        vec!["--worker".into(), test_worker("t1", json!({}))],
        vec![],
    ));
    let mut c = admin(&gw).await;
    let a = c
        .wait_worker("agent", "running", |w| w["state"] == "running")
        .await;
    let t = c
        .wait_worker("t1", "running", |w| w["state"] == "running")
        .await;
    let pids = [a["pid"].as_u64().unwrap(), t["pid"].as_u64().unwrap()];
    gw.signal(Signal::SIGKILL);
    gw.wait_exit();
    let killed = Instant::now();
    while pids.iter().any(|p| alive(*p)) {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "workers outlived the supervisor: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "workers gone {} ms after the supervisor's SIGKILL",
        killed.elapsed().as_millis()
    );
}

#[tokio::test]
async fn workers_methods_need_admin() {
    let gw = Gateway::start();
    let (mut c, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.write"])).await;
    let r = c.request("workers.list", json!({})).await;
    assert_eq!(r["error"]["code"], "FORBIDDEN");
    let r = c.request("workers.restart", json!({"name": "agent"})).await;
    assert_eq!(r["error"]["message"], "missing scope: operator.admin");
}
