//! WhatsApp (issue #9): the real gateway and the real WhatsApp worker (whatsapp-rust).
//! There is no stand-in for WhatsApp's protocol, so the worker is pointed at local
//! sockets that count connection attempts and refuse to speak; everything around the
//! connection is tested for real: the session lock across workers and gateways, linking
//! without a server, logged-out and unreachable behaviour.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

/// A TCP listener standing where WhatsApp's servers would be: it accepts and at once
/// drops every connection, recording when.
struct DeadServer {
    port: u16,
    accepted: Arc<Mutex<Vec<Instant>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl DeadServer {
    fn start() -> DeadServer {
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let a = Arc::clone(&accepted);
        let (port, stop) = serve_on_thread(move |l| async move {
            loop {
                if let Ok((sock, _)) = l.accept().await {
                    a.lock().unwrap().push(Instant::now());
                    drop(sock);
                }
            }
        });
        DeadServer {
            port,
            accepted,
            _stop: stop,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws/chat", self.port)
    }

    fn attempts(&self) -> Vec<Instant> {
        self.accepted.lock().unwrap().clone()
    }
}

fn config(session_dir: &std::path::Path, server: &DeadServer) -> String {
    format!(
        r#"{{ channels: {{ whatsapp: {{ sessionDir: "{}", serverUrl: "{}", clientVersion: [2, 3000, 1023456789] }} }} }}"#,
        session_dir.display(),
        server.url()
    )
}

fn gateway_with(config: &str) -> Gateway {
    let state = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(state.path().join("config.json5"), config).unwrap();
    Gateway::start_with(GatewayOpts {
        state: Some(state),
        extra: vec!["--worker-health-interval-ms".into(), "100".into()],
        ..Default::default()
    })
}

async fn operator(gw: &Gateway) -> Client {
    Client::connect(&gw.url(), v3_params(Some(TOKEN))).await.0
}

fn pid_alive(pid: i64) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

#[tokio::test]
async fn one_whatsapp_session_per_host_across_workers_and_gateways() {
    let shared = tempfile::tempdir().unwrap();
    let session = shared.path().join("wa-session");
    let server = DeadServer::start();
    let cfg = config(&session, &server);
    let a = gateway_with(&cfg);
    let mut op_a = operator(&a).await;
    let holder = op_a
        .wait_worker("whatsapp", "ran", |w| w["providerState"] == "logged_out")
        .await;
    let holder_pid = holder["pid"].as_i64().unwrap();
    // A second gateway (its own state directory) configured for the same session: its
    // WhatsApp worker fails at once, naming the holder, and is not restarted.
    let b = gateway_with(&cfg);
    let mut op_b = operator(&b).await;
    let refused = op_b
        .wait_worker("whatsapp", "failed", |w| w["state"] == "failed")
        .await;
    let why = refused["lastExit"].as_str().unwrap();
    assert!(
        why.contains(&format!(
            "another WhatsApp session is running on this host (pid {holder_pid} holds"
        )),
        "{refused}"
    );
    b.wait_log("the refusal to be logged", |l| {
        l.contains("another WhatsApp session")
    });
    assert_eq!(refused["restarts"], 0, "{refused}");
    // A third worker process, started by hand like the supervisor starts one.
    let mut third = Command::new(bin("switchboard-worker-whatsapp"))
        .env("SWITCHBOARD_WORKER_SOCKET", shared.path().join("w3.sock"))
        .env("SWITCHBOARD_WORKER_NAME", "whatsapp")
        .env("SWITCHBOARD_SUPERVISOR_PID", std::process::id().to_string())
        .env(
            "SWITCHBOARD_WORKER_CONFIG",
            json!({"sessionDir": session}).to_string(),
        )
        // Confined as the supervisor confines it: its session folder read-write.
        .env(
            "SWITCHBOARD_WORKER_CONFINEMENT",
            json!({"readWrite": [session]}).to_string(),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its secret, as the supervisor hands it over: the first line of stdin.
    {
        use std::io::Write;
        let mut stdin = third.stdin.take().unwrap();
        writeln!(stdin, "{}", "5".repeat(64)).unwrap();
    }
    let out = third.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "exit code 5: locked");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("SWITCHBOARD_WORKER_FAILED another WhatsApp session")
            && stdout.contains(&holder_pid.to_string()),
        "{stdout}"
    );
    // kill -9 of the holder: the lock dies with it, and its supervisor's restart takes it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let back = op_a
        .wait_worker("whatsapp", "came back", |w| {
            w["state"] == "running" && w["pid"] != holder_pid && w["providerState"] == "logged_out"
        })
        .await;
    assert_eq!(back["restarts"], 1);
    // The refused gateway still has not restarted its worker (no storm)…
    assert_eq!(op_b.worker("whatsapp").await["restarts"], 0);
    // …and once the first gateway is gone (SIGKILL: its worker dies with it), an
    // operator starts it.
    let new_holder = back["pid"].as_i64().unwrap();
    a.signal(nix::sys::signal::Signal::SIGKILL);
    let deadline = Instant::now() + WAIT;
    while pid_alive(new_holder) {
        assert!(Instant::now() < deadline, "the orphaned worker did not die");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = op_b
        .request("workers.start", json!({"name": "whatsapp"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    op_b.wait_worker("whatsapp", "took the lock", |w| {
        w["state"] == "running" && w["providerState"] == "logged_out"
    })
    .await;
}

#[tokio::test]
async fn an_unlinked_whatsapp_stays_idle_and_says_how_to_link() {
    let dir = tempfile::tempdir().unwrap();
    let server = DeadServer::start();
    let gw = gateway_with(&config(&dir.path().join("wa"), &server));
    let mut op = operator(&gw).await;
    let w = op
        .wait_worker("whatsapp", "reported", |w| {
            w["providerState"] == "logged_out"
        })
        .await;
    assert!(
        w["detail"]
            .as_str()
            .unwrap()
            .contains("switchboard channels login whatsapp"),
        "{w}"
    );
    let health = op.request("health", json!({"probe": true})).await;
    assert_eq!(
        health["payload"]["channels"]["whatsapp"]["state"],
        "logged_out"
    );
    assert_eq!(
        health["payload"]["channels"]["whatsapp"]["connected"],
        false
    );
    let wait = op
        .request("web.login.wait", json!({"timeoutMs": 1000}))
        .await;
    assert_eq!(
        wait["payload"],
        json!({"connected": false, "message": "No active WhatsApp login in progress."})
    );
    let out = op
        .request("channels.logout", json!({"channel": "whatsapp"}))
        .await;
    assert_eq!(out["payload"]["cleared"], false, "{out}");
    assert_eq!(
        out["payload"]["message"],
        "WhatsApp was not linked; nothing to log out."
    );
    let send = op
        .request("send", json!({"to": "+15551234567", "message": "hi", "channel": "whatsapp", "idempotencyKey": "wa-1"}))
        .await;
    assert!(
        send["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WhatsApp is not linked"),
        "{send}"
    );
    // A second of health probes later (paced well under the per-connection request
    // limit): not one connection attempt, no restart.
    for _ in 0..25 {
        let h = op.request("health", json!({"probe": true})).await;
        assert_eq!(
            h["payload"]["channels"]["whatsapp"]["state"], "logged_out",
            "{h}"
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert!(server.attempts().is_empty(), "an unlinked worker connected");
    assert_eq!(op.worker("whatsapp").await["restarts"], 0);
    let r = op
        .request("channels.logout", json!({"channel": "telegram"}))
        .await;
    assert_eq!(r["error"]["message"], "invalid channels.logout channel");
}

#[tokio::test]
async fn linking_against_an_unreachable_server_backs_off_and_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("wa");
    let server = DeadServer::start();
    let gw = gateway_with(&config(&session, &server));
    let mut op = operator(&gw).await;
    op.wait_worker("whatsapp", "started", |w| {
        w["providerState"] == "logged_out"
    })
    .await;
    let started = Instant::now();
    let r = op
        .request("web.login.start", json!({"timeoutMs": 6000}))
        .await;
    let message = r["payload"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with("Failed to get QR: cannot reach WhatsApp"),
        "{r}"
    );
    assert!(r["payload"].get("qrDataUrl").is_none());
    let w = op
        .wait_worker("whatsapp", "backed off", |w| {
            w["providerState"] == "backoff"
        })
        .await;
    assert!(
        w["detail"]
            .as_str()
            .unwrap()
            .contains("attempts in a row failed"),
        "{w}"
    );
    assert_eq!(w["restarts"], 0, "the worker itself is fine: {w}");
    // It does retry, but spaced out (WhatsApp Web's backoff: 1, 1, 2, 3, 5 s …).
    let attempts = server.attempts();
    let elapsed = started.elapsed().as_secs_f64();
    assert!(
        attempts.len() >= 2,
        "it should retry: {} attempts",
        attempts.len()
    );
    assert!(
        (attempts.len() as f64) <= elapsed + 2.0,
        "a tight reconnect loop: {} attempts in {elapsed:.1} s",
        attempts.len()
    );
    if attempts.len() >= 4 {
        let gap = attempts[3] - attempts[2];
        assert!(
            gap >= Duration::from_millis(1500),
            "the backoff did not grow: {gap:?}"
        );
    }
    // The session files exist only for the owner.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&session), 0o700);
    for e in std::fs::read_dir(&session).unwrap() {
        let p = e.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    // The CLI says it plainly and exits 7.
    let out = Command::new(bin("switchboard"))
        .args([
            "channels",
            "login",
            "whatsapp",
            "--timeout",
            "5",
            "--url",
            &gw.url(),
            "--token",
            TOKEN,
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach WhatsApp"));
    // Logging out ends the attempt: no more connection attempts after it.
    let r = op
        .request("channels.logout", json!({"channel": "whatsapp"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let w = op
        .wait_worker("whatsapp", "went idle", |w| {
            w["providerState"] == "logged_out"
        })
        .await;
    assert_eq!(w["restarts"], 0);
    let after = server.attempts().len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        server.attempts().len(),
        after,
        "still connecting after logout"
    );
}
