//! Operations (issue #8): the config file, the CLI, systemd/launchd deployment, metrics,
//! logs, and restarts that lose no accepted work.

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

fn switchboard(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin("switchboard"));
    c.args(args)
        .env_remove("SWITCHBOARD_GATEWAY_TOKEN")
        .env_remove("CLAWDBOT_GATEWAY_TOKEN")
        .env_remove("OPENCLAW_GATEWAY_TOKEN")
        .env_remove("SWITCHBOARD_GATEWAY_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run switchboard")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A plain HTTP GET on the gateway port; the status code and body.
fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read response");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn the_config_file_is_read_and_a_bad_one_never_starts_a_gateway() {
    let state = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let dir = state.path().to_str().unwrap().to_owned();
    std::fs::write(
        state.path().join("config.json5"),
        r#"{
          // from the file, not a flag
          gateway: { auth: { token: "file-token-7c1" } },
          logging: { format: "json" },
        }"#,
    )
    .unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        token: None,
        state: Some(state.clone()),
        ..Default::default()
    });
    let mut c = Client::open(&gw.url()).await;
    assert_eq!(c.connect_raw(v3_params(Some(TOKEN))).await["ok"], false);
    let (_c, hello) = Client::connect(&gw.url(), v3_params(Some("file-token-7c1"))).await;
    assert_eq!(hello["type"], "hello-ok");
    // `config show` names where the secret came from and never prints it.
    let shown = switchboard(&["config", "show", "--state-dir", &dir], &[]);
    let shown_text = text(&shown);
    assert!(shown.status.success(), "{shown_text}");
    let v: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(v["gateway"]["auth"]["token"], "*** (set, from config file)");
    assert_eq!(v["logging"]["format"], "json");
    assert!(!shown_text.contains("file-token-7c1"));
    drop(gw);

    // A bad file: every problem named by key, exit 3, nothing served.
    std::fs::write(
        state.path().join("config.json5"),
        r#"{ gateway: { bind: "moon", auth: { token: "file-token-7c1" } },
             channels: { telegram: { botToken: "123:abc", dmPolicy: "open" } } }"#,
    )
    .unwrap();
    let v = switchboard(&["config", "validate", "--state-dir", &dir], &[]);
    let out = text(&v);
    assert_eq!(v.status.code(), Some(3), "{out}");
    assert!(
        out.contains("gateway.bind:") && out.contains("channels.telegram.dmPolicy:"),
        "{out}"
    );
    let j = switchboard(&["config", "validate", "--state-dir", &dir, "--json"], &[]);
    let j: Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(j["ok"], false);
    assert_eq!(j["problems"].as_array().unwrap().len(), 2, "{j}");
    let (mut child, log) = spawn_gateway(
        &GatewayOpts {
            token: None,
            ..Default::default()
        },
        state.path(),
    );
    let code = child.wait().unwrap().code();
    wait_log(&log, "the refusal", |l| l.contains("gateway.bind"));
    assert_eq!(code, Some(3), "{}", log.lock().unwrap());
    assert!(!log.lock().unwrap().contains("listening on"));
    // A syntax error names the line.
    std::fs::write(
        state.path().join("config.json5"),
        "{\n gateway: { port: 1,\n",
    )
    .unwrap();
    let v = switchboard(&["config", "validate", "--state-dir", &dir], &[]);
    assert!(text(&v).contains("line "), "{}", text(&v));
    // And a good one validates.
    std::fs::write(
        state.path().join("config.json5"),
        "{ gateway: { port: 18999 } }",
    )
    .unwrap();
    let v = switchboard(&["config", "validate", "--state-dir", &dir], &[]);
    assert!(v.status.success(), "{}", text(&v));
}

#[tokio::test]
async fn metrics_are_served_to_loopback_or_with_the_token() {
    let ns = NetNs::create();
    let gw = Gateway::start_with(GatewayOpts {
        extra: vec!["--bind".into(), "lan".into()],
        ..Default::default()
    });
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    c.request("health", json!({})).await;
    let r = c.request("no.such.method", json!({})).await;
    assert_eq!(r["ok"], false);
    let local = format!("127.0.0.1:{}", gw.port);
    let (status, body) = http_get(&local, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    for needle in [
        "switchboard_connections{role=\"operator\",protocol=\"3\"} 1",
        "switchboard_handshakes_total{outcome=\"ok\"} 1",
        "switchboard_request_duration_seconds_count{method=\"health\"} 1",
        "switchboard_errors_total{code=\"INVALID_REQUEST\"} 1",
        "switchboard_worker_state{worker=\"agent\",state=\"running\"}",
        "switchboard_slow_consumer_disconnects_total 0",
        "# TYPE switchboard_handshake_duration_seconds histogram",
        "switchboard_event_queue_bytes",
    ] {
        assert!(body.contains(needle), "{needle} missing:\n{body}");
    }
    assert!(!body.contains(TOKEN));
    // A peer on another host needs the token.
    let remote = format!("{}:{}", ns.host_ip, gw.port);
    let (denied, with_token, health) = ns.run(async move {
        let r = remote.clone();
        tokio::task::spawn_blocking(move || {
            (
                http_get(&r, "/metrics", None).0,
                http_get(&r, "/metrics", Some(TOKEN)).0,
                http_get(&r, "/healthz", None).0,
            )
        })
        .await
        .unwrap()
    });
    assert_eq!((denied, with_token, health), (401, 200, 200));
    // The WebSocket still works on the same port after all that HTTP.
    let (_c2, hello) = Client::connect(&gw.url(), v4_params(Some(TOKEN))).await;
    assert_eq!(hello["protocol"], 4);
}

#[tokio::test]
async fn logs_go_to_a_file_that_logs_tail_and_the_cli_read() {
    let gw = Gateway::start();
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let r = c.request("logs.tail", json!({"limit": 50})).await;
    assert_eq!(r["ok"], true, "{r}");
    let p = &r["payload"];
    assert!(
        p["file"]
            .as_str()
            .unwrap()
            .ends_with("logs/switchboard.log")
    );
    let lines: Vec<&str> = p["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("listening on ws://")),
        "{lines:?}"
    );
    // The cursor returns only what follows.
    let cursor = p["cursor"].as_u64().unwrap();
    c.request("system-event", json!({"text": "marker"})).await;
    let (_other, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    gw.wait_log("the second connection to be logged", |l| {
        l.matches("client connected").count() >= 2
    });
    let r = c.request("logs.tail", json!({"cursor": cursor})).await;
    let next = r["payload"]["lines"].as_array().unwrap();
    assert!(!next.is_empty() && next.len() < lines.len() + 5, "{r}");
    assert!(
        next.iter()
            .any(|l| l.as_str().unwrap().contains("client connected"))
    );
    // The CLI, over the WebSocket and straight from the file.
    let dir = gw.state.path().to_str().unwrap().to_owned();
    for extra in [&[][..], &["--local"][..]] {
        let mut args = vec!["logs", "-n", "3", "--state-dir", &dir, "--token", TOKEN];
        args.extend_from_slice(extra);
        let out = switchboard(&args, &[]);
        assert!(out.status.success(), "{}", text(&out));
        let printed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(printed.lines().count(), 3, "{printed}");
    }
    assert!(
        !std::fs::read_to_string(gw.state.path().join("logs/switchboard.log"))
            .unwrap()
            .contains(TOKEN)
    );
}

#[tokio::test]
async fn gateway_status_finds_the_running_gateway_and_says_when_there_is_none() {
    let mut gw = Gateway::start();
    let dir = gw.state.path().to_str().unwrap().to_owned();
    let out = switchboard(
        &["gateway", "status", "--state-dir", &dir, "--json"],
        &[("SWITCHBOARD_GATEWAY_TOKEN", TOKEN)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["running"], true);
    assert_eq!(v["pid"], gw.pid());
    assert_eq!(v["url"], gw.url());
    assert!(v["uptimeMs"].as_u64().is_some());
    assert_eq!(v["workers"][0]["name"], "agent");
    // Other commands find the gateway the same way: no --url, token from the env.
    let out = switchboard(
        &["workers", "list", "--state-dir", &dir],
        &[("SWITCHBOARD_GATEWAY_TOKEN", TOKEN)],
    );
    assert!(text(&out).contains("agent"), "{}", text(&out));
    gw.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(gw.wait_exit(), Some(0));
    let out = switchboard(&["gateway", "status", "--state-dir", &dir], &[]);
    assert_eq!(out.status.code(), Some(7));
    assert!(text(&out).contains("not running"), "{}", text(&out));
}

#[test]
fn the_systemd_unit_verifies_and_the_launchd_plist_parses() {
    let home = tempfile::tempdir().unwrap();
    let home_s = home.path().to_str().unwrap();
    let state = home.path().join("state dir");
    let state_s = state.to_str().unwrap();
    // The rendered unit runs this build's binary with the state directory.
    let out = switchboard(
        &[
            "gateway",
            "install",
            "--print",
            "--manager",
            "systemd",
            "--state-dir",
            state_s,
        ],
        &[("HOME", home_s)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let unit = String::from_utf8(out.stdout).unwrap();
    let exe = bin("switchboard");
    assert!(
        unit.contains(&format!(
            "ExecStart={} gateway run --state-dir \"{state_s}\"",
            exe.display()
        )),
        "{unit}"
    );
    let unit_path = home.path().join("switchboard.service");
    std::fs::write(&unit_path, &unit).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_path)
        .output()
        .expect("systemd-analyze (Debian package systemd)");
    assert!(
        verify.status.success() && verify.stderr.is_empty() && verify.stdout.is_empty(),
        "systemd-analyze verify: {}",
        text(&verify)
    );
    // The plist, as written for a Mac, parses with an independent parser.
    let out = switchboard(
        &[
            "gateway",
            "install",
            "--print",
            "--manager",
            "launchd",
            "--state-dir",
            state_s,
        ],
        &[("HOME", home_s)],
    );
    assert!(out.status.success(), "{}", text(&out));
    let plist_path = home.path().join("gateway.plist");
    std::fs::write(&plist_path, &out.stdout).unwrap();
    let parsed = Command::new("python3")
        .args([
            "-c",
            "import json,plistlib,sys; print(json.dumps(plistlib.load(open(sys.argv[1],'rb'))))",
        ])
        .arg(&plist_path)
        .output()
        .expect("python3");
    assert!(parsed.status.success(), "{}", text(&parsed));
    let p: Value = serde_json::from_slice(&parsed.stdout).unwrap();
    assert_eq!(p["Label"], "ai.switchboard.gateway");
    assert_eq!(
        p["ProgramArguments"],
        json!([
            exe.display().to_string(),
            "gateway",
            "run",
            "--state-dir",
            state_s
        ])
    );
    assert_eq!(p["KeepAlive"], json!({"SuccessfulExit": false}));
    assert_eq!(p["ThrottleInterval"], 10);
    assert!(p["StandardErrorPath"].as_str().unwrap().starts_with(home_s));
    // The shipped template parses too.
    let template = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/launchd/ai.switchboard.gateway.plist"
    );
    let parsed = Command::new("python3")
        .args([
            "-c",
            "import plistlib,sys; plistlib.load(open(sys.argv[1],'rb'))",
            template,
        ])
        .output()
        .unwrap();
    assert!(parsed.status.success(), "{}", text(&parsed));
}

#[test]
fn install_writes_the_user_unit_and_uninstall_removes_it() {
    let home = tempfile::tempdir().unwrap();
    let home_s = home.path().to_str().unwrap();
    let state = home.path().join("st");
    let state_s = state.to_str().unwrap();
    let install = || {
        switchboard(
            &[
                "gateway",
                "install",
                "--no-start",
                "--manager",
                "systemd",
                "--state-dir",
                state_s,
            ],
            &[("HOME", home_s)],
        )
    };
    let out = install();
    assert!(out.status.success(), "{}", text(&out));
    let unit = home.path().join(".config/systemd/user/switchboard.service");
    let written = std::fs::read_to_string(&unit).unwrap();
    assert!(
        written.contains("Type=notify")
            && written.contains(&bin("switchboard").display().to_string())
    );
    // A config that would fail at start is refused before anything is written.
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("config.json5"), "{ gateway: { bind: 'moon' } }").unwrap();
    std::fs::remove_file(&unit).unwrap();
    let out = install();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!unit.exists());
    std::fs::remove_file(state.join("config.json5")).unwrap();
    assert!(install().status.success());
    let out = switchboard(
        &["gateway", "uninstall", "--no-start", "--manager", "systemd"],
        &[("HOME", home_s)],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!unit.exists());
    assert!(text(&out).contains("removed"));
}

/// Reads notify messages until one satisfies `want`.
fn notified(sock: &UnixDatagram, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if want(&m) {
                return m;
            }
        }
    }
    panic!("no matching notify message");
}

#[tokio::test]
async fn systemd_hears_ready_watchdog_reloading_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut gw = Gateway::start_with(GatewayOpts {
        env: vec![
            ("NOTIFY_SOCKET".into(), path.to_str().unwrap().into()),
            ("WATCHDOG_USEC".into(), "200000".into()),
        ],
        ..Default::default()
    });
    let ready = notified(&sock, |m| m.contains("READY=1"));
    assert!(ready.contains(&format!("MAINPID={}", gw.pid())), "{ready}");
    // READY comes after the port is bound: a client connects at once.
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    notified(&sock, |m| m == "WATCHDOG=1");
    notified(&sock, |m| m == "WATCHDOG=1");
    // Restart in place: RELOADING, clients told to come back, READY again, same pid.
    gw.signal(nix::sys::signal::Signal::SIGUSR1);
    let reloading = notified(&sock, |m| m.contains("RELOADING=1"));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let ev = c.event("shutdown").await;
    assert_eq!(
        ev["payload"],
        json!({"reason": "gateway restarting", "restartExpectedMs": 1500})
    );
    assert_eq!(c.closed().await.map(|c| c.0), Some(1012));
    let ready = notified(&sock, |m| m.contains("READY=1"));
    assert!(ready.contains(&format!("MAINPID={}", gw.pid())), "{ready}");
    let (_c, hello) = Client::connect(&gw.url(), v4_params(Some(TOKEN))).await;
    assert_eq!(hello["type"], "hello-ok");
    gw.signal(nix::sys::signal::Signal::SIGTERM);
    notified(&sock, |m| m.contains("STOPPING=1"));
    assert_eq!(gw.wait_exit(), Some(0));
}

#[tokio::test]
async fn a_restart_keeps_accepted_work_and_tells_clients_when_to_return() {
    let mut gw = Gateway::start_with(GatewayOpts {
        env: vec![("SWITCHBOARD_AGENT_ECHO_DELAY_MS".into(), "150".into())],
        ..Default::default()
    });
    let dir = gw.state.path().to_str().unwrap().to_owned();
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    c.send_json(&json!({"type":"req","id":"a1","method":"agent",
        "params":{"message":"one two three four","idempotencyKey":"restart-run-1"}}))
        .await;
    let ack = c.response("a1").await;
    assert_eq!(ack["payload"]["status"], "accepted", "{ack}");
    // The restart the CLI asks for waits for the gateway to serve again.
    let out = switchboard(
        &["gateway", "restart", "--state-dir", &dir, "--token", TOKEN],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("serving again"), "{}", text(&out));
    let ev = c.event("shutdown").await;
    assert_eq!(ev["payload"]["restartExpectedMs"], 1500);
    // The run accepted before the restart finished during the drain: its retry gets
    // the real answer, not an error.
    let (mut c2, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let r = c2
        .request(
            "agent",
            json!({"message":"one two three four","idempotencyKey":"restart-run-1"}),
        )
        .await;
    assert_eq!(r["payload"]["status"], "ok", "{r}");
    assert_eq!(
        r["payload"]["result"]["payloads"][0]["text"],
        "[echo] one two three four"
    );
    gw.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(gw.wait_exit(), Some(0));
}

#[test]
fn completions_are_generated_for_the_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let out = switchboard(&["completions", shell], &[]);
        assert!(out.status.success());
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(
            s.contains("switchboard") && s.contains("gateway"),
            "{shell}"
        );
    }
}

/// A raw HTTP GET of `target` exactly as written: status, head, body.
fn http_get_raw(addr: &str, target: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read response");
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn a_configured_control_ui_folder_is_served_at_the_root_and_nothing_outside_it() {
    let state = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let ui = state.path().join("ui");
    std::fs::create_dir_all(ui.join("assets")).unwrap();
    std::fs::write(
        ui.join("index.html"),
        "<!doctype html><script>window.boot=1</script><script type=module src=\"./assets/app.js\"></script>",
    )
    .unwrap();
    std::fs::write(ui.join("assets/app.js"), "console.log('ui')").unwrap();
    std::fs::write(ui.join("assets/style.css"), "body{}").unwrap();
    std::fs::write(state.path().join("outside.txt"), "SECRET-OUTSIDE").unwrap();
    std::os::unix::fs::symlink(state.path().join("outside.txt"), ui.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(state.path(), ui.join("up")).unwrap();
    std::fs::write(
        state.path().join("config.json5"),
        json!({"gateway": {"controlUi": {"root": "ui"}}}).to_string(),
    )
    .unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(state.clone()),
        ..Default::default()
    });
    let addr = format!("127.0.0.1:{}", gw.port);

    // The UI at `/`, with a CSP that allows its own scripts (the inline one by hash) and
    // connections back to this gateway, and nothing framed.
    let (status, head, body) = http_get_raw(&addr, "/");
    assert_eq!(status, 200, "{head}");
    assert!(body.contains("window.boot=1"), "{body}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    let csp = head
        .lines()
        .find_map(|l| l.strip_prefix("content-security-policy: "))
        .unwrap_or_default();
    assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    assert!(csp.contains("connect-src 'self' ws: wss:"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    // Its assets with their types; its routes (no extension) get index.html; a missing
    // asset is a 404, not the page.
    let (status, head, body) = http_get_raw(&addr, "/assets/app.js");
    assert_eq!((status, body.as_str()), (200, "console.log('ui')"));
    assert!(head.contains("content-type: text/javascript"), "{head}");
    let (_, head, _) = http_get_raw(&addr, "/assets/style.css");
    assert!(head.contains("content-type: text/css"), "{head}");
    let (status, _, body) = http_get_raw(&addr, "/sessions?x=1");
    assert_eq!(status, 200);
    assert!(body.contains("window.boot=1"));
    assert_eq!(http_get_raw(&addr, "/assets/missing.js").0, 404);
    // No directory listing: the folder's own path is its index.html or nothing.
    // (A listing would name style.css, which the page does not.)
    let (status, _, body) = http_get_raw(&addr, "/assets/");
    assert!(
        !body.contains("style.css") && (status == 404 || body.contains("window.boot=1")),
        "{status}: {body}"
    );

    // Nothing outside the folder, however the path is written.
    for target in [
        "/../outside.txt",
        "/assets/../../outside.txt",
        "/%2e%2e/outside.txt",
        "/%2E%2E%2Foutside.txt",
        "/assets%2f..%2f..%2foutside.txt",
        "/..%5coutside.txt",
        "/link.txt",
        "/up/outside.txt",
        "/up/config.json5",
        &format!("/{}", state.path().join("outside.txt").display()),
        &format!("/%2f{}", state.path().join("outside.txt").display()),
        "/etc/passwd",
        "//etc/passwd",
    ] {
        let (status, _, body) = http_get_raw(&addr, target);
        assert!(
            !body.contains("SECRET-OUTSIDE")
                && !body.contains("controlUi")
                && !body.contains("root:"),
            "{target} leaked: {body}"
        );
        // Refused outright (400), or a route of the app (its page), or nothing (404).
        assert!(
            status == 400 || status == 404 || body.contains("window.boot=1"),
            "{target}: {status} {body}"
        );
    }
    for target in [
        "/../outside.txt",
        "/%2e%2e/outside.txt",
        "/..%5coutside.txt",
    ] {
        assert_eq!(http_get_raw(&addr, target).0, 400, "{target}");
    }
    assert_eq!(http_get_raw(&addr, "/link.txt").0, 404);

    // WebChat moved to /webchat; health and WebSocket clients are where they were.
    let (status, _, body) = http_get_raw(&addr, "/webchat");
    assert_eq!(status, 200);
    assert!(body.contains("switchboard"), "{body}");
    assert_eq!(http_get_raw(&addr, "/healthz").0, 200);
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    assert_eq!(c.request("health", json!({})).await["ok"], true);
}

#[test]
fn a_control_ui_root_without_an_index_is_a_config_error_that_names_the_key() {
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(state.path().join("empty")).unwrap();
    let dir = state.path().to_str().unwrap();
    for root in ["empty", "missing"] {
        std::fs::write(
            state.path().join("config.json5"),
            json!({"gateway": {"controlUi": {"root": root}}}).to_string(),
        )
        .unwrap();
        let v = switchboard(&["config", "validate", "--state-dir", dir], &[]);
        assert!(!v.status.success(), "{}", text(&v));
        assert!(text(&v).contains("gateway.controlUi.root"), "{}", text(&v));
    }
}
