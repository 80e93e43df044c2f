//! The process: single instance, signals, state directory, logs.

use std::sync::Arc;

use nix::sys::signal::Signal;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn second_gateway_on_the_same_port_fails_fast_with_exit_4() {
    let gw = Gateway::start();
    let other = tempfile::tempdir().unwrap();
    let opts = GatewayOpts {
        port: gw.port,
        ..Default::default()
    };
    let (mut child, log) = spawn_gateway(&opts, other.path());
    let status = child.wait().unwrap();
    wait_log(&log, "the refusal", |l| l.contains("another gateway"));
    assert_eq!(status.code(), Some(4), "{}", log.lock().unwrap());
    assert!(log.lock().unwrap().contains(&format!(
        "another gateway instance is already listening on ws://127.0.0.1:{}",
        gw.port
    )));
}

#[tokio::test]
async fn second_gateway_on_the_same_state_dir_fails_fast_with_exit_5() {
    let gw = Gateway::start();
    let (mut child, log) = spawn_gateway(&GatewayOpts::default(), gw.state.path());
    let status = child.wait().unwrap();
    wait_log(&log, "the refusal", |l| {
        l.contains("already uses the state directory")
    });
    assert_eq!(status.code(), Some(5));
    assert!(log.lock().unwrap().contains(&format!("pid {}", gw.pid())));
}

#[tokio::test]
async fn a_gateway_killed_with_sigkill_leaves_no_lock_that_blocks_a_restart() {
    let mut gw = Gateway::start();
    let state = Arc::clone(&gw.state);
    gw.signal(Signal::SIGKILL);
    gw.wait_exit();
    assert!(
        state.path().join("gateway.lock").exists(),
        "stale lock file left behind"
    );
    let again = Gateway::start_with(GatewayOpts {
        state: Some(state),
        ..Default::default()
    });
    let (mut c, _) = Client::connect(&again.url(), v3_params(Some(TOKEN))).await;
    assert_eq!(c.request("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn sigterm_sends_shutdown_to_every_client_and_exits_0() {
    let mut gw = Gateway::start();
    let (mut v3, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let (mut v4, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    gw.signal(Signal::SIGTERM);
    for c in [&mut v3, &mut v4] {
        let ev = c.event("shutdown").await;
        assert_eq!(ev["payload"]["reason"], "gateway stopping");
        assert!(ev["seq"].is_u64());
        assert_eq!(c.closed().await, Some((1012, "service restart".into())));
    }
    assert_eq!(gw.wait_exit(), Some(0));
    assert!(gw.log().contains("gateway stopped"));
}

#[tokio::test]
async fn sigint_also_stops_cleanly() {
    let mut gw = Gateway::start();
    gw.signal(Signal::SIGINT);
    assert_eq!(gw.wait_exit(), Some(0));
}

#[tokio::test]
async fn tokens_never_reach_the_log() {
    let mut gw = Gateway::start();
    let guess = "guessed-secret-77ab";
    let mut c = Client::open(&gw.url()).await;
    let _ = c.connect_raw(v3_params(Some(guess))).await;
    let (mut ok, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    ok.request("health", json!({})).await;
    gw.signal(Signal::SIGTERM);
    gw.wait_exit();
    let log = gw.log();
    assert!(log.contains("connect refused"), "{log}");
    assert!(!log.contains(TOKEN), "gateway token in log:\n{log}");
    assert!(!log.contains(guess), "guessed token in log:\n{log}");
}

#[tokio::test]
async fn binding_beyond_loopback_without_auth_is_refused_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let opts = GatewayOpts {
        token: None,
        extra: vec!["--bind".into(), "lan".into()],
        ..Default::default()
    };
    let (mut child, log) = spawn_gateway(&opts, dir.path());
    let status = child.wait().unwrap();
    wait_log(&log, "the refusal", |l| l.contains("refusing to bind"));
    assert_eq!(status.code(), Some(3));
    assert!(
        log.lock()
            .unwrap()
            .contains("refusing to bind gateway to 0.0.0.0:0 without auth")
    );
}

#[tokio::test]
async fn without_a_configured_token_it_generates_one_and_says_so() {
    let gw = Gateway::start_with(GatewayOpts {
        token: None,
        ..Default::default()
    });
    assert!(
        gw.log().contains("gateway token generated at first start"),
        "{}",
        gw.log()
    );
    // No token is no longer "any token": the generated one is required.
    let mut c = Client::open(&gw.url()).await;
    assert_eq!(
        c.connect_raw(v3_params(Some("anything"))).await["ok"],
        false
    );
    let token = std::fs::read_to_string(gw.state.path().join("gateway-token")).unwrap();
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(token.trim()))).await;
    assert_eq!(c.request("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn token_from_the_clawdbot_environment_variable_is_honoured() {
    let gw = Gateway::start_with(GatewayOpts {
        token: None,
        env: vec![("CLAWDBOT_GATEWAY_TOKEN".into(), "from-env-tok".into())],
        ..Default::default()
    });
    let mut c = Client::open(&gw.url()).await;
    assert_eq!(c.connect_raw(v3_params(Some(TOKEN))).await["ok"], false);
    let (_c, _) = Client::connect(&gw.url(), v3_params(Some("from-env-tok"))).await;
}

#[tokio::test]
async fn state_lives_in_a_wal_sqlite_file_in_the_state_dir() {
    let gw = Gateway::start();
    let db = gw.state.path().join("switchboard.sqlite");
    assert!(db.exists());
    let wal = gw.state.path().join("switchboard.sqlite-wal");
    assert!(
        wal.exists(),
        "WAL mode keeps a -wal file next to the database"
    );
}
