//! Remote access over TLS with certificate pinning (issue #4 point 5).

use std::process::Command;

use serde_json::Value;

use crate::harness::*;

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(bin("switchboard"))
        .args(args)
        .output()
        .expect("run the CLI")
}

#[tokio::test]
async fn the_cli_reaches_a_tls_gateway_only_with_the_pinned_fingerprint() {
    let state = std::sync::Arc::new(tempfile::tempdir().unwrap());
    // The fingerprint is known before the first start (the certificate is generated).
    let out = cli(&[
        "gateway",
        "fingerprint",
        "--json",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fp: Value = serde_json::from_slice(&out.stdout).unwrap();
    let colons = fp["fingerprint256"].as_str().unwrap().to_owned();
    assert_eq!(colons.len(), 95, "AB:CD:… form: {colons}");
    let gw = Gateway::start_with(GatewayOpts {
        extra: vec!["--tls".into()],
        state: Some(state),
        ..Default::default()
    });
    assert!(
        gw.log().contains("listening on wss://127.0.0.1:"),
        "{}",
        gw.log()
    );
    assert!(gw.log().contains(&colons), "the log names the fingerprint");
    let url = format!("wss://127.0.0.1:{}", gw.port);
    let ok = cli(&[
        "health",
        "--json",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--tls-fingerprint",
        &colons,
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let health: Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(health["ok"], true);
    // Any spelling of the same pin works.
    let hex = fp["sha256"].as_str().unwrap();
    assert!(
        cli(&[
            "status",
            "--url",
            &url,
            "--token",
            TOKEN,
            "--tls-fingerprint",
            &format!("sha256:{hex}")
        ])
        .status
        .success()
    );
    // Another pin is refused, and says why.
    let wrong = "00".repeat(32);
    let bad = cli(&[
        "health",
        "--url",
        &url,
        "--token",
        TOKEN,
        "--tls-fingerprint",
        &wrong,
    ]);
    assert_eq!(bad.status.code(), Some(7));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("fingerprint mismatch"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // Without a pin, a self-signed certificate is not trusted.
    let unpinned = cli(&["health", "--url", &url, "--token", TOKEN]);
    assert_eq!(unpinned.status.code(), Some(7));
    // Plain WebSocket on the TLS port does not get through.
    let plain = cli(&[
        "health",
        "--url",
        &format!("ws://127.0.0.1:{}", gw.port),
        "--token",
        TOKEN,
    ]);
    assert_eq!(plain.status.code(), Some(7));
}

#[tokio::test]
async fn a_given_certificate_that_is_not_pem_is_a_clear_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "not a key").unwrap();
    let opts = GatewayOpts {
        extra: vec![
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ],
        ..Default::default()
    };
    let (mut child, log) = spawn_gateway(&opts, dir.path());
    let status = child.wait().unwrap();
    wait_log(&log, "the error", |l| l.contains("TLS certificate"));
    assert_eq!(status.code(), Some(3), "{}", log.lock().unwrap());
}
