//! Signal with the daemon spawned by the worker (`cliPath`, issue #20): the stand-in
//! executable `standin-signal-cli` (tests/src/bin; it serves the stand-in of signal-cli's
//! documented daemon API, see `standin_signal`) in place of signal-cli, which cannot run
//! here. Checked: the command line, waiting for `/api/v1/check`, restart when it dies,
//! and no orphan after `kill -9` of the worker.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;
use crate::standin_signal::{ACCOUNT, ALICE, envelope, http, uuid_of};

fn gateway(cli: &str, env: &[(&str, String)], dir: &Path) -> Gateway {
    let state = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(
        state.path().join("config.json5"),
        format!(
            r#"{{ channels: {{ signal: {{ account: "{ACCOUNT}", cliPath: "{cli}", eventStreamTimeoutSeconds: 2, allowFrom: ["{ALICE}"] }} }} }}"#
        ),
    )
    .unwrap();
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    env.push(("STANDIN_SIGNAL_DIR".into(), dir.display().to_string()));
    env.push(("STANDIN_SIGNAL_KEEPALIVE_MS".into(), "200".into()));
    Gateway::start_with(GatewayOpts {
        state: Some(state),
        extra: vec!["--worker-health-interval-ms".into(), "100".into()],
        env,
        ..Default::default()
    })
}

/// The stand-in runs recorded in `dir` (`<pid>.json`: pid, port, args).
fn runs(dir: &Path) -> Vec<Value> {
    let mut out: Vec<Value> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
        .collect();
    out.sort_by_key(|v| v["pid"].as_i64());
    out
}

fn wait_runs(dir: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = runs(dir);
        if r.len() >= n {
            return r;
        }
        assert!(Instant::now() < deadline, "no stand-in run #{n}: {r:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Gone: no such process, or a zombie (dead, not yet reaped by its new parent).
fn gone(pid: i64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn wait_gone(pid: i64, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !gone(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) is still running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill9(pid: i64) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

/// What the stand-in executable on `port` sent.
fn sent(port: u16) -> Vec<String> {
    let (code, body) = http(port, "GET", "/standin/state", "");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect()
}

fn push_dm(port: u16, ts: i64, text: &str) {
    let env = envelope(
        ALICE,
        &uuid_of(ALICE),
        "Alice",
        ts,
        json!({"message": text}),
    );
    let (code, body) = http(port, "POST", "/standin/push", &env.to_string());
    assert_eq!(code, 200, "{body}");
}

fn wait_sent(port: u16, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = sent(port);
        if s.len() >= n {
            return s;
        }
        assert!(Instant::now() < deadline, "only {s:?} sent");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_spawned_daemon_serves_is_restarted_when_it_dies_and_never_outlives_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let cli = bin("standin-signal-cli");
    let mut gw = gateway(&cli.display().to_string(), &[], dir.path());
    let mut op = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await.0;
    let w = op
        .wait_worker("signal", "connected", |w| w["providerState"] == "connected")
        .await;
    let first = wait_runs(dir.path(), 1)[0].clone();
    let args: Vec<&str> = first["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let port = first["port"].as_u64().unwrap() as u16;
    assert_eq!(
        args,
        vec![
            "-a",
            ACCOUNT,
            "daemon",
            "--http",
            &format!("127.0.0.1:{port}"),
            "--no-receive-stdout",
            "--receive-mode",
            "on-connection"
        ]
    );
    // It is the worker's own child.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", first["pid"])).unwrap();
    let ppid: i64 = stat
        .rsplit_once(") ")
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, w["pid"].as_i64().unwrap());
    // Messages flow both ways through it.
    push_dm(port, 1_700_000_000_100, "through the child");
    assert_eq!(wait_sent(port, 1), vec!["[echo] through the child"]);

    // The daemon dies: the worker (not the supervisor) starts a new one.
    kill9(first["pid"].as_i64().unwrap());
    let second = wait_runs(dir.path(), 2)[1].clone();
    assert_ne!(second["pid"], first["pid"]);
    let w2 = op
        .wait_worker("signal", "connected again", |w| {
            w["providerState"] == "connected"
        })
        .await;
    assert_eq!(w2["pid"], w["pid"], "the same worker");
    assert_eq!(w2["restarts"], 0);
    let port2 = second["port"].as_u64().unwrap() as u16;
    push_dm(port2, 1_700_000_000_200, "after the restart");
    assert_eq!(wait_sent(port2, 1), vec!["[echo] after the restart"]);

    // kill -9 of the worker: its daemon goes with it (PR_SET_PDEATHSIG), and the new
    // worker starts its own.
    kill9(w["pid"].as_i64().unwrap());
    wait_gone(
        second["pid"].as_i64().unwrap(),
        "the dead worker's signal-cli",
    );
    let third = wait_runs(dir.path(), 3)[2].clone();
    op.wait_worker("signal", "a new worker connected", |x| {
        x["providerState"] == "connected" && x["pid"] != w["pid"]
    })
    .await;
    // The gateway stops: nothing is left behind.
    drop(op);
    gw.signal(nix::sys::signal::Signal::SIGTERM);
    gw.wait_exit();
    wait_gone(
        third["pid"].as_i64().unwrap(),
        "signal-cli after the gateway stopped",
    );
}

#[tokio::test]
async fn a_missing_signal_cli_and_an_unregistered_account_wait_for_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway("/nonexistent/signal-cli", &[], dir.path());
    let mut op = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await.0;
    let w = op
        .wait_worker("signal", "not-found", |w| w["providerState"] == "not-found")
        .await;
    assert!(
        w["detail"]
            .as_str()
            .unwrap()
            .contains("signal-cli not found"),
        "{w}"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(op.worker("signal").await["restarts"], 0);
    drop(op);
    drop(gw);

    let cli = bin("standin-signal-cli");
    let gw = gateway(
        &cli.display().to_string(),
        &[("STANDIN_SIGNAL_UNREGISTERED", "1".into())],
        dir.path(),
    );
    let mut op = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await.0;
    let w = op
        .wait_worker("signal", "unregistered", |w| {
            w["providerState"] == "unregistered"
        })
        .await;
    let detail = w["detail"].as_str().unwrap();
    assert!(
        detail.contains("account not registered") && detail.contains("is not registered"),
        "{w}"
    );
    assert_eq!(w["restarts"], 0);
}
