//! Resumable events (issue #23, `docs/resume.md`): `connect.params.resume` asks for a
//! session, a reconnect with `{sessionId, epoch, lastSeq}` gets every missed event in
//! order before any new one, or `hello-ok.resume.ok: false` with the reason: never a
//! silent gap. Neither reference gateway replays (their clients never send the field,
//! and see today's frames).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::harness::*;

const READ: &[&str] = &["operator.read"];
const RW: &[&str] = &["operator.read", "operator.write"];

fn with_resume(mut params: Value, resume: Value) -> Value {
    params["resume"] = resume;
    params
}

fn ask(hello: &Value, last_seq: u64) -> Value {
    json!({
        "sessionId": hello["resume"]["sessionId"],
        "epoch": hello["resume"]["epoch"],
        "lastSeq": last_seq,
    })
}

/// Runs the echo agent through `client` and waits for its final answer.
async fn run_agent(client: &mut Client, message: &str, key: &str, idem: &str) {
    let r = client
        .request(
            "agent",
            json!({"message": message, "sessionKey": key, "idempotencyKey": idem}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let id = format!("r{}", client.requests_sent());
    let fin = client.response(&id).await;
    assert_eq!(fin["payload"]["status"], "ok", "{fin}");
}

/// Reads events until one satisfies `done`; returns every event read (the backlog
/// first), in order.
async fn events_until(c: &mut Client, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut out: Vec<Value> = std::mem::take(&mut c.backlog)
        .into_iter()
        .filter(|v| v["type"] == "event")
        .collect();
    if out.iter().any(&done) {
        return out;
    }
    loop {
        let v = c.frame().await;
        if v["type"] != "event" {
            continue;
        }
        let stop = done(&v);
        out.push(v);
        if stop {
            return out;
        }
    }
}

fn is_final_of(key: &'static str) -> impl Fn(&Value) -> bool {
    move |v: &Value| {
        v["event"] == "chat"
            && v["payload"]["state"] == "final"
            && v["payload"]["sessionKey"] == format!("agent:main:{key}")
    }
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

fn assert_contiguous(seqs: &[u64], from: u64, what: &str) {
    let want: Vec<u64> = (from..from + seqs.len() as u64).collect();
    assert_eq!(seqs, want.as_slice(), "{what}");
}

/// The `agent`/`chat` events of these runs' sessions: name and payload (without the
/// per-connection `seq`).
fn run_events(events: &[Value], keys: &[&str]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["event"] == "agent" || e["event"] == "chat")
        .filter(|e| {
            keys.iter()
                .any(|k| e["payload"]["sessionKey"] == format!("agent:main:{k}"))
        })
        .map(|e| json!([e["event"], e["payload"]]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_client_that_asks_gets_hello_ok_resume_and_a_half_given_resume_is_invalid() {
    let gw = Gateway::start();
    for params in [v3_params(Some(TOKEN)), v4_cli_params(TOKEN, READ)] {
        let (_plain, hello) = Client::connect(&gw.url(), params.clone()).await;
        assert!(hello.get("resume").is_none(), "{hello}");
        let (_r, hello) = Client::connect(&gw.url(), with_resume(params.clone(), json!({}))).await;
        let r = &hello["resume"];
        assert_eq!(r["ok"], true, "{hello}");
        assert!(r.get("reason").is_none(), "{r}");
        assert_eq!(r["sessionId"].as_str().map(str::len), Some(32), "{r}");
        assert!(!r["epoch"].as_str().unwrap().is_empty(), "{r}");
        // All three fields or none.
        let mut c = Client::open(&gw.url()).await;
        let res = c
            .connect_raw(with_resume(params, json!({"sessionId": r["sessionId"]})))
            .await;
        assert_eq!(res["ok"], false, "{res}");
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{res}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_clean_close_every_missed_event_is_replayed_in_order_then_numbering_goes_on() {
    let gw = Gateway::start();
    for (i, params) in [v3_params(Some(TOKEN)), v4_cli_params(TOKEN, READ)]
        .into_iter()
        .enumerate()
    {
        let key = ["clean-v3", "clean-v4"][i];
        let key2 = ["clean2-v3", "clean2-v4"][i];
        let key3 = ["clean3-v3", "clean3-v4"][i];
        let (mut writer, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, RW)).await;
        // An observer that stays connected throughout sees what the resumer must see.
        let (mut observer, _) = Client::connect(&gw.url(), params.clone()).await;
        let (mut c, hello) =
            Client::connect(&gw.url(), with_resume(params.clone(), json!({}))).await;

        run_agent(&mut writer, "one two three", key, &format!("{key}-1")).await;
        let seen = events_until(&mut c, is_final_of(key)).await;
        let last_seq = *seqs(&seen).last().unwrap();
        assert_contiguous(&seqs(&seen), 1, "the session numbers from 1");
        c.ws.close(None).await.expect("close");
        assert!(matches!(c.closed().await, Some((1000, _)) | None));

        // Away: a whole run happens.
        run_agent(
            &mut writer,
            "four five six seven",
            key2,
            &format!("{key}-2"),
        )
        .await;
        let (mut c, hello2) = Client::connect(
            &gw.url(),
            with_resume(params.clone(), ask(&hello, last_seq)),
        )
        .await;
        assert_eq!(hello2["resume"]["ok"], true, "{hello2}");
        assert_eq!(hello2["resume"]["sessionId"], hello["resume"]["sessionId"]);
        let missed = events_until(&mut c, is_final_of(key2)).await;
        assert_contiguous(&seqs(&missed), last_seq + 1, "replayed in order, no gap");

        // Live again: the next event goes on from the replayed ones.
        run_agent(&mut writer, "eight", key3, &format!("{key}-3")).await;
        let live = events_until(&mut c, is_final_of(key3)).await;
        let all: Vec<Value> = missed.iter().chain(&live).cloned().collect();
        assert_contiguous(&seqs(&all), last_seq + 1, "numbering goes on");

        let watched = events_until(&mut observer, is_final_of(key3)).await;
        assert!(!run_events(&all, &[key2, key3]).is_empty());
        assert_eq!(
            run_events(&all, &[key2, key3]),
            run_events(&watched, &[key2, key3]),
            "the resumer saw exactly what a client connected throughout saw"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_socket_was_killed_without_a_close_frame_the_resume_takes_over_and_loses_nothing()
{
    let gw = Gateway::start();
    let params = v4_cli_params(TOKEN, READ);
    let (mut writer, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, RW)).await;
    let (mut c, hello) = Client::connect(&gw.url(), with_resume(params.clone(), json!({}))).await;
    run_agent(&mut writer, "alpha beta", "killed-1", "k1").await;
    let seen = events_until(&mut c, is_final_of("killed-1")).await;
    let last_seq = *seqs(&seen).last().unwrap();

    // Half-open: the old socket is still open as far as the gateway knows (it stopped
    // being read), and the client resumes on a new one. The old one is closed.
    let mut stale = c;
    run_agent(&mut writer, "gamma delta", "killed-2", "k2").await;
    let (mut c, hello2) = Client::connect(
        &gw.url(),
        with_resume(params.clone(), ask(&hello, last_seq)),
    )
    .await;
    assert_eq!(hello2["resume"]["ok"], true, "{hello2}");
    let missed = events_until(&mut c, is_final_of("killed-2")).await;
    assert_contiguous(&seqs(&missed), last_seq + 1, "replayed after a takeover");
    let closed = stale.closed().await;
    assert_eq!(
        closed,
        Some((1000, "resumed on another connection".into())),
        "the stale connection is closed"
    );
    let last_seq = *seqs(&missed).last().unwrap();

    // Killed: a reset, no close frame.
    kill(c);
    run_agent(&mut writer, "epsilon zeta eta", "killed-3", "k3").await;
    let (mut c, hello3) =
        Client::connect(&gw.url(), with_resume(params, ask(&hello, last_seq))).await;
    assert_eq!(hello3["resume"]["ok"], true, "{hello3}");
    let missed = events_until(&mut c, is_final_of("killed-3")).await;
    assert_contiguous(&seqs(&missed), last_seq + 1, "replayed after a reset");
    let fin = missed.last().unwrap();
    assert_eq!(
        fin["payload"]["message"]["content"][0]["text"], "[echo] epsilon zeta eta",
        "{fin}"
    );
}

/// Drops the client's TCP connection with a reset: no close frame, no FIN.
fn kill(c: Client) {
    match c.ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.set_zero_linger().unwrap(),
        _ => unreachable!("plain ws"),
    }
    drop(c);
}

fn config_with(state: &tempfile::TempDir, resume: Value) {
    std::fs::write(
        state.path().join("config.json5"),
        json!({"gateway": {"resume": resume}}).to_string(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_bigger_than_the_buffer_is_reported_as_a_gap_with_a_fresh_session() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    config_with(&state, json!({"maxEvents": 16}));
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(Arc::clone(&state)),
        ..Default::default()
    });
    let params = v4_cli_params(TOKEN, READ);
    let (mut writer, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, RW)).await;
    let (mut c, hello) = Client::connect(&gw.url(), with_resume(params.clone(), json!({}))).await;
    run_agent(&mut writer, "a b", "burst-1", "b1").await;
    let seen = events_until(&mut c, is_final_of("burst-1")).await;
    let last_seq = *seqs(&seen).last().unwrap();
    drop(c);
    // 30 words: about 60 `agent`/`chat` deltas, more than the 16 held.
    let words: Vec<String> = (0..30).map(|i| format!("w{i}")).collect();
    run_agent(&mut writer, &words.join(" "), "burst-2", "b2").await;
    let (mut c, hello2) = Client::connect(
        &gw.url(),
        with_resume(params.clone(), ask(&hello, last_seq)),
    )
    .await;
    let r = &hello2["resume"];
    assert_eq!(r["ok"], false, "{hello2}");
    assert_eq!(r["reason"], "events-lost", "{r}");
    assert_ne!(
        r["sessionId"], hello["resume"]["sessionId"],
        "a fresh session"
    );
    assert_eq!(r["epoch"], hello["resume"]["epoch"], "same process");
    // Nothing of the old session is replayed into the fresh one: its first event is 1.
    run_agent(&mut writer, "after", "burst-3", "b3").await;
    let fresh = events_until(&mut c, is_final_of("burst-3")).await;
    assert_eq!(seqs(&fresh)[0], 1, "{fresh:#?}");
    assert!(
        fresh
            .iter()
            .all(|e| e["payload"]["sessionKey"] != "agent:main:burst-2"),
        "{fresh:#?}"
    );
    // Within the bound the same wait resumes fine.
    let last = *seqs(&fresh).last().unwrap();
    drop(c);
    run_agent(&mut writer, "small", "burst-4", "b4").await;
    let (mut c, hello3) = Client::connect(&gw.url(), with_resume(params, ask(&hello2, last))).await;
    assert_eq!(hello3["resume"]["ok"], true, "{hello3}");
    let missed = events_until(&mut c, is_final_of("burst-4")).await;
    assert_contiguous(&seqs(&missed), last + 1, "a small gap is replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_a_gateway_restart_the_epoch_is_new_and_the_gap_is_reported() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    let opts = || GatewayOpts {
        state: Some(Arc::clone(&state)),
        ..Default::default()
    };
    let mut gw = Gateway::start_with(opts());
    let params = v3_params(Some(TOKEN));
    let (_c, hello) = Client::connect(&gw.url(), with_resume(params.clone(), json!({}))).await;
    gw.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(gw.wait_exit(), Some(0));
    let gw = Gateway::start_with(opts());
    let (_c, hello2) = Client::connect(&gw.url(), with_resume(params, ask(&hello, 0))).await;
    let r = &hello2["resume"];
    assert_eq!(r["ok"], false, "{hello2}");
    assert_eq!(r["reason"], "epoch-changed", "{r}");
    assert_ne!(r["epoch"], hello["resume"]["epoch"], "{r}");
    assert_ne!(r["sessionId"], hello["resume"]["sessionId"], "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_streamed_across_a_reconnect_arrives_complete_with_nothing_doubled() {
    // A word every 25 ms: the run is still streaming when the socket goes.
    let gw = Gateway::start_with(GatewayOpts {
        env: vec![("SWITCHBOARD_AGENT_ECHO_DELAY_MS".into(), "25".into())],
        ..Default::default()
    });
    let params = v4_cli_params(TOKEN, RW);
    let (mut c, hello) = Client::connect(&gw.url(), with_resume(params.clone(), json!({}))).await;
    let words: Vec<String> = (0..40).map(|i| format!("word{i}")).collect();
    let text = words.join(" ");
    let r = c
        .request(
            "agent",
            json!({"message": text, "sessionKey": "streamed", "idempotencyKey": "s1"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    // A few deltas in, the connection is killed under the client.
    let first = events_until(&mut c, |e| {
        e["event"] == "agent"
            && e["payload"]["stream"] == "assistant"
            && e["payload"]["seq"].as_u64() >= Some(4)
    })
    .await;
    let last_seq = *seqs(&first).last().unwrap();
    kill(c);
    let (mut c, hello2) =
        Client::connect(&gw.url(), with_resume(params, ask(&hello, last_seq))).await;
    assert_eq!(hello2["resume"]["ok"], true, "{hello2}");
    let rest = events_until(&mut c, is_final_of("streamed")).await;
    assert!(
        rest.iter()
            .any(|e| e["event"] == "agent" && e["payload"]["stream"] == "assistant"),
        "the run was still streaming when the socket went: {rest:#?}"
    );
    let all: Vec<Value> = first.into_iter().chain(rest).collect();
    assert_contiguous(&seqs(&all), 1, "every event once, in order");
    // Per stream, the run's own numbering is complete and the deltas make the answer.
    let mut per: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut deltas = String::new();
    for e in all.iter().filter(|e| e["payload"]["runId"].is_string()) {
        per.entry(e["event"].as_str().unwrap().to_owned())
            .or_default()
            .push(e["payload"]["seq"].as_u64().unwrap());
        if e["event"] == "agent" && e["payload"]["stream"] == "assistant" {
            deltas.push_str(e["payload"]["data"]["delta"].as_str().unwrap());
        }
    }
    for (event, s) in &per {
        assert_contiguous(s, 1, &format!("{event} payload seq"));
    }
    // The echo agent answers `[echo] ` and the message.
    let answer = format!("[echo] {text}");
    assert_eq!(deltas, answer, "every delta once");
    let fin = all.last().unwrap();
    assert_eq!(
        fin["payload"]["message"]["content"][0]["text"],
        answer.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_foreign_session_id_is_refused_and_another_clients_events_are_never_replayed() {
    let gw = Gateway::start();
    let (mut writer, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, RW)).await;
    // The owner: a read-only CLI.
    let owner_params = v4_cli_params(TOKEN, READ);
    let (mut owner, hello) =
        Client::connect(&gw.url(), with_resume(owner_params.clone(), json!({}))).await;
    run_agent(&mut writer, "private words", "foreign-1", "f1").await;
    let seen = events_until(&mut owner, is_final_of("foreign-1")).await;
    drop(owner);

    // Another client (another kind, other scopes) naming the owner's session.
    let other = with_resume(v4_params(Some(TOKEN)), ask(&hello, 0));
    let (mut thief, h) = Client::connect(&gw.url(), other).await;
    assert_eq!(h["resume"]["ok"], false, "{h}");
    assert_eq!(h["resume"]["reason"], "unknown-session", "{h}");
    assert_ne!(h["resume"]["sessionId"], hello["resume"]["sessionId"]);
    // A made-up id.
    let wrong =
        json!({"sessionId": "0".repeat(32), "epoch": hello["resume"]["epoch"], "lastSeq": 0});
    let (_w, h2) = Client::connect(&gw.url(), with_resume(owner_params.clone(), wrong)).await;
    assert_eq!(h2["resume"]["reason"], "unknown-session", "{h2}");
    // The thief gets nothing of the owner's past: a health probe answers before any
    // event, and no event of the first run ever arrives.
    assert_eq!(thief.request("health", json!({})).await["ok"], true);
    assert!(
        thief
            .backlog
            .iter()
            .all(|e| e["payload"]["sessionKey"] != "agent:main:foreign-1"),
        "{:#?}",
        thief.backlog
    );
    // The refusals did not spoil the owner's session: it resumes from 0 and gets all.
    let (mut owner, h3) =
        Client::connect(&gw.url(), with_resume(owner_params, ask(&hello, 0))).await;
    assert_eq!(h3["resume"]["ok"], true, "{h3}");
    let again = events_until(&mut owner, is_final_of("foreign-1")).await;
    assert_eq!(
        run_events(&again, &["foreign-1"]),
        run_events(&seen, &["foreign-1"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_session_is_released_after_its_window() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    config_with(&state, json!({"windowMs": 1000}));
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(Arc::clone(&state)),
        extra: vec!["--tick-interval-ms".into(), "100".into()],
        ..Default::default()
    });
    let params = v4_cli_params(TOKEN, READ);
    let (c, hello) = Client::connect(&gw.url(), with_resume(params.clone(), json!({}))).await;
    drop(c);
    // Waits on the gateway's own word, not a sleep.
    gw.wait_log("the detached session to be released", |l| {
        l.contains("resumable sessions released") && l.contains("released=1")
    });
    let (_c, h) = Client::connect(&gw.url(), with_resume(params, ask(&hello, 0))).await;
    assert_eq!(h["resume"]["ok"], false, "{h}");
    assert_eq!(h["resume"]["reason"], "unknown-session", "{h}");
}

/// Lines the child prints on stdout, as they come.
fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines, each made a `T` by `parse`, until one satisfies `done`; returns them all.
fn read_until<T: std::fmt::Debug>(
    rx: &std::sync::mpsc::Receiver<String>,
    what: &str,
    parse: impl Fn(String) -> T,
    done: impl Fn(&T) -> bool,
) -> Vec<T> {
    let mut out = Vec::new();
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no {what} in time; so far: {out:#?}"));
        let v = parse(line);
        let stop = done(&v);
        out.push(v);
        if stop {
            return out;
        }
    }
}

/// Reads JSON lines until one satisfies `done`; returns them all.
fn lines_until(
    rx: &std::sync::mpsc::Receiver<String>,
    done: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let parse =
        |line: String| serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    read_until(rx, "line", parse, done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_events_follow_loses_nothing_across_a_blip_and_reports_a_restart_as_a_gap() {
    let gw = Gateway::start();
    let relay = Relay::start(gw.port).await;
    let mut child = std::process::Command::new(bin("switchboard"))
        .args([
            "events", "-f", "--json", "--event", "chat", "--event", "agent",
        ])
        .args([
            "--url",
            &format!("ws://127.0.0.1:{}", relay.port),
            "--token",
            TOKEN,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn switchboard events");
    let rx = stdout_lines(&mut child);
    gw.wait_log("the follower to connect", |l| {
        l.contains("client connected")
    });
    let (mut writer, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, RW)).await;
    run_agent(&mut writer, "first run", "ev-1", "ev1").await;
    let first = lines_until(&rx, is_final_of("ev-1"));

    // A blip: the follower reconnects and resumes; a run meanwhile arrives whole, once.
    relay.cut();
    run_agent(&mut writer, "second run here", "ev-2", "ev2").await;
    let second = lines_until(&rx, is_final_of("ev-2"));
    gw.wait_log("the follower to resume", |l| l.contains("session resumed"));
    let all: Vec<Value> = first.iter().chain(&second).cloned().collect();
    let s = seqs(&all);
    assert!(
        s.windows(2).all(|w| w[0] < w[1]),
        "in order, none doubled: {s:?}"
    );
    let deltas: String = second
        .iter()
        .filter(|e| e["event"] == "agent" && e["payload"]["stream"] == "assistant")
        .map(|e| e["payload"]["data"]["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        deltas, "[echo] second run here",
        "every delta of the run once"
    );

    // A restart: the follower says events were missed, then carries on.
    gw.signal(nix::sys::signal::Signal::SIGUSR1);
    let gap = lines_until(&rx, |v| v["type"] == "gap");
    assert_eq!(gap.last().unwrap()["reason"], "epoch-changed", "{gap:#?}");
    // The gateway serves again on the same port once it has restarted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut writer = loop {
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(gw.url()).await {
            let mut c = Client::from_ws(ws);
            if c.connect_raw(v4_cli_params(TOKEN, RW)).await["ok"] == true {
                break c;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway did not come back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    run_agent(&mut writer, "third", "ev-3", "ev3").await;
    let third = lines_until(&rx, is_final_of("ev-3"));
    // A fresh session after the gap: its numbering started again.
    assert!(seqs(&third)[0] < *seqs(&all).last().unwrap(), "{third:#?}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for a line containing `needle`; returns every line read, in order.
fn text_until(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    read_until(
        rx,
        &format!("line with {needle:?}"),
        |l| l,
        |l| l.contains(needle),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_logs_follow_goes_on_from_its_cursor_after_a_blip_with_no_line_twice() {
    let gw = Gateway::start();
    let relay = Relay::start(gw.port).await;
    let mut child = std::process::Command::new(bin("switchboard"))
        .args(["logs", "-f", "-n", "5"])
        .args([
            "--url",
            &format!("ws://127.0.0.1:{}", relay.port),
            "--token",
            TOKEN,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn switchboard logs");
    let rx = stdout_lines(&mut child);
    // Each connection's id is in its hello-ok and in the log's "client connected" line.
    let (_a, hello) = Client::connect(&gw.url(), v4_cli_params(TOKEN, READ)).await;
    let before = text_until(&rx, hello["server"]["connId"].as_str().unwrap());
    relay.cut();
    let (_b, hello) = Client::connect(&gw.url(), v4_cli_params(TOKEN, READ)).await;
    let after = text_until(&rx, hello["server"]["connId"].as_str().unwrap());
    let _ = child.kill();
    let _ = child.wait();
    let all: Vec<&String> = before.iter().chain(&after).collect();
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), all.len(), "a line printed twice: {all:#?}");
}
