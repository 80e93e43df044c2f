//! Devices, pairing and device tokens (issue #4), and one device store for both protocol
//! generations (issue #11, point 3). "Non-local" is real: the client runs in a network
//! namespace joined to this host by a veth pair.

use std::process::Command;

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::*;

struct Device {
    key: SigningKey,
}

impl Device {
    fn new(seed: u8) -> Device {
        Device {
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }
    fn public(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.key.verifying_key().to_bytes())
    }
    fn id(&self) -> String {
        Sha256::digest(self.key.verifying_key().to_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Connect params with a device proof over `nonce` (v3 uses the v2 payload, v4 the v3 one).
fn device_params(
    protocol: u64,
    dev: &Device,
    nonce: &str,
    token_field: (&str, &str),
    scopes: &[&str],
) -> Value {
    let (field, token) = token_field;
    let scopes_joined = scopes.join(",");
    let at = now_ms();
    let payload = if protocol == 3 {
        format!(
            "v2|{}|test|test|operator|{scopes_joined}|{at}|{token}|{nonce}",
            dev.id()
        )
    } else {
        format!(
            "v3|{}|test|test|operator|{scopes_joined}|{at}|{token}|{nonce}|linux|",
            dev.id()
        )
    };
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(dev.key.sign(payload.as_bytes()).to_bytes());
    let mut p = if protocol == 3 {
        v3_params(None)
    } else {
        v4_params(None)
    };
    p["auth"] = json!({ field: token });
    p["scopes"] = json!(scopes);
    p["device"] = json!({"id": dev.id(), "publicKey": dev.public(), "signature": sig, "signedAt": at, "nonce": nonce});
    p
}

/// Opens a connection and connects with a device proof over the real challenge.
async fn device_connect(
    url: &str,
    protocol: u64,
    dev: &Device,
    token_field: (&str, &str),
    scopes: &[&str],
) -> (Client, Value) {
    let mut c = Client::open(url).await;
    let ch = c.frame().await;
    let nonce = ch["payload"]["nonce"].as_str().unwrap().to_owned();
    let p = device_params(protocol, dev, &nonce, token_field, scopes);
    c.send_json(&json!({"type":"req","id":"c1","method":"connect","params": p}))
        .await;
    let res = c.response("c1").await;
    (c, res)
}

async fn pairing_admin(gw: &Gateway) -> Client {
    let mut p = v3_params(Some(TOKEN));
    p["scopes"] = json!(["operator.pairing", "operator.read"]);
    Client::connect(&gw.url(), p).await.0
}

#[tokio::test]
async fn a_local_device_pairs_silently_and_its_token_works_across_generations() {
    let gw = Gateway::start();
    let mut admin = pairing_admin(&gw).await;
    let dev = Device::new(11);
    let (_c, res) = device_connect(&gw.url(), 3, &dev, ("token", TOKEN), &["operator.read"]).await;
    assert_eq!(res["ok"], true, "{res}");
    let auth = &res["payload"]["auth"];
    let token = auth["deviceToken"]
        .as_str()
        .expect("a device token in hello-ok.auth")
        .to_owned();
    assert_eq!(auth["role"], "operator");
    assert_eq!(auth["scopes"], json!(["operator.read"]));
    assert!(auth.get("method").is_none(), "v3 auth has no method");
    let ev = admin.event("device.pair.resolved").await;
    assert_eq!(ev["payload"]["deviceId"], dev.id());
    assert_eq!(ev["payload"]["decision"], "approved");
    // The same device over v4, with its device token instead of the shared token.
    let (_c4, res) = device_connect(
        &gw.url(),
        4,
        &dev,
        ("deviceToken", &token),
        &["operator.read"],
    )
    .await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["auth"]["method"], "device-token");
    assert_eq!(
        res["payload"]["auth"]["deviceToken"],
        token.as_str(),
        "the same token, reused"
    );
    // …and back over v3 with the token in auth.token.
    let (_c3, res) =
        device_connect(&gw.url(), 3, &dev, ("token", &token), &["operator.read"]).await;
    assert_eq!(res["ok"], true, "{res}");
    // A device token does not stretch to scopes it was not paired with.
    let (_cx, res) = device_connect(
        &gw.url(),
        4,
        &dev,
        ("deviceToken", &token),
        &["operator.admin"],
    )
    .await;
    assert_eq!(
        res["error"]["message"],
        "unauthorized: device token scope mismatch (re-pair or approve scope upgrade)"
    );
    // Listing shows the device, never the token.
    let list = admin.request("device.pair.list", json!({})).await;
    assert!(!list.to_string().contains(&token));
    assert_eq!(list["payload"]["paired"][0]["deviceId"], dev.id());
    assert!(!gw.log().contains(&token), "device token in the log");
    let db = std::fs::read(gw.state.path().join("switchboard.sqlite")).unwrap();
    assert!(
        !String::from_utf8_lossy(&db).contains(&token),
        "device token stored in the clear"
    );
}

#[tokio::test]
async fn revoking_a_token_closes_the_devices_live_connections_and_rotation_replaces_it() {
    let gw = Gateway::start();
    let mut admin = pairing_admin(&gw).await;
    let dev = Device::new(12);
    let (mut live, res) =
        device_connect(&gw.url(), 4, &dev, ("token", TOKEN), &["operator.read"]).await;
    let token = res["payload"]["auth"]["deviceToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotated = admin
        .request(
            "device.token.rotate",
            json!({"deviceId": dev.id(), "role": "operator"}),
        )
        .await;
    let new_token = rotated["payload"]["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token);
    let (_, res) = device_connect(
        &gw.url(),
        4,
        &dev,
        ("deviceToken", &token),
        &["operator.read"],
    )
    .await;
    assert_eq!(res["ok"], false, "the old token is dead");
    let (_, res) = device_connect(
        &gw.url(),
        4,
        &dev,
        ("deviceToken", &new_token),
        &["operator.read"],
    )
    .await;
    assert_eq!(res["ok"], true);
    // Revocation, via the CLI, closes what is connected.
    let out = Command::new(bin("switchboard"))
        .args([
            "devices",
            "revoke",
            &dev.id(),
            "--json",
            "--url",
            &gw.url(),
            "--token",
            TOKEN,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        live.closed().await,
        Some((1008, "device token revoked".into()))
    );
    let (_, res) = device_connect(
        &gw.url(),
        4,
        &dev,
        ("deviceToken", &new_token),
        &["operator.read"],
    )
    .await;
    assert_eq!(res["ok"], false);
}

#[tokio::test]
async fn a_remote_device_must_be_approved_and_signs_this_connections_nonce() {
    let ns = NetNs::create();
    let gw = Gateway::start_with(GatewayOpts {
        extra: vec!["--bind".into(), "lan".into()],
        ..Default::default()
    });
    let mut admin = pairing_admin(&gw).await;
    let url = format!("ws://{}:{}", ns.host_ip, gw.port);
    let dev = Device::new(21);
    // 1. Unknown remote device: a pending request, NOT_PAIRED with its id.
    let (first, replay_params) = ns.run(async {
        let mut c = Client::open(&url).await;
        let ch = c.frame().await;
        let nonce = ch["payload"]["nonce"].as_str().unwrap().to_owned();
        let p = device_params(4, &dev, &nonce, ("token", TOKEN), &["operator.read"]);
        c.send_json(&json!({"type":"req","id":"c1","method":"connect","params": p}))
            .await;
        (c.response("c1").await, p)
    });
    assert_eq!(first["error"]["code"], "NOT_PAIRED", "{first}");
    assert_eq!(
        first["error"]["message"],
        "pairing required: device is not approved yet"
    );
    let request_id = first["error"]["details"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let ev = admin.event("device.pair.requested").await;
    assert_eq!(ev["payload"]["requestId"], request_id.as_str());
    assert_eq!(ev["payload"]["deviceId"], dev.id());
    assert!(
        ev["payload"]["remoteIp"]
            .as_str()
            .unwrap()
            .starts_with("10.231.")
    );
    // 2. Approve from the CLI.
    let out = Command::new(bin("switchboard"))
        .args([
            "devices",
            "approve",
            &request_id,
            "--url",
            &gw.url(),
            "--token",
            TOKEN,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ev = admin.event("device.pair.resolved").await;
    assert_eq!(ev["payload"]["decision"], "approved");
    // 3. A replayed proof (the first connection's nonce) is refused; a fresh one passes.
    let (replayed, fresh, v1) = ns.run(async {
        let mut c = Client::open(&url).await;
        c.frame().await;
        c.send_json(&json!({"type":"req","id":"c1","method":"connect","params": replay_params}))
            .await;
        let replayed = c.response("c1").await;
        let (_c, fresh) = device_connect(&url, 4, &dev, ("token", TOKEN), &["operator.read"]).await;
        // v3 without a nonce (a `v1` proof) is for local peers only.
        let mut c = Client::open(&url).await;
        c.frame().await;
        let mut p = device_params(3, &dev, "unused", ("token", TOKEN), &["operator.read"]);
        p["device"].as_object_mut().unwrap().remove("nonce");
        c.send_json(&json!({"type":"req","id":"c1","method":"connect","params": p}))
            .await;
        (replayed, fresh, c.response("c1").await)
    });
    assert_eq!(replayed["error"]["message"], "device nonce mismatch");
    assert_eq!(fresh["ok"], true, "{fresh}");
    assert!(fresh["payload"]["auth"]["deviceToken"].is_string());
    assert_eq!(v1["error"]["message"], "device nonce required");
    // 4. A rejected request leaves the device unpaired.
    let other = Device::new(22);
    let res = ns.run(async {
        device_connect(&url, 3, &other, ("token", TOKEN), &["operator.read"])
            .await
            .1
    });
    let rid = res["error"]["details"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = admin
        .request("device.pair.reject", json!({"requestId": rid}))
        .await;
    assert_eq!(r["payload"]["deviceId"], other.id());
    let res = ns.run(async {
        device_connect(&url, 3, &other, ("token", TOKEN), &["operator.read"])
            .await
            .1
    });
    assert_eq!(res["error"]["code"], "NOT_PAIRED");
}

#[tokio::test]
async fn pairing_methods_need_the_pairing_scope() {
    let gw = Gateway::start();
    let mut p = v3_params(Some(TOKEN));
    p["scopes"] = json!(["operator.read"]);
    let (mut reader, _) = Client::connect(&gw.url(), p).await;
    let r = reader.request("device.pair.list", json!({})).await;
    assert_eq!(r["error"]["message"], "missing scope: operator.pairing");
    let mut admin = pairing_admin(&gw).await;
    let r = admin
        .request("device.pair.approve", json!({"requestId": "nope"}))
        .await;
    assert_eq!(r["error"]["message"], "unknown requestId");
}

#[tokio::test]
async fn repeated_failed_auth_is_rate_limited_and_logged_without_the_guesses() {
    let ns = NetNs::create();
    let gw = Gateway::start_with(GatewayOpts {
        extra: vec!["--bind".into(), "lan".into()],
        ..Default::default()
    });
    let url = format!("ws://{}:{}", ns.host_ip, gw.port);
    // A remote peer gets ten tries; then even the right token is refused for a while.
    let (tenth, eleventh) = ns.run(async {
        let mut last = Value::Null;
        for i in 0..10 {
            let mut c = Client::open(&url).await;
            last = c
                .connect_raw(v4_params(Some(&format!("guess-{i}-x7q"))))
                .await;
        }
        let mut c = Client::open(&url).await;
        (last, c.connect_raw(v4_params(Some(TOKEN))).await)
    });
    assert_eq!(tenth["error"]["details"]["code"], "AUTH_TOKEN_MISMATCH");
    assert_eq!(
        eleventh["error"]["message"],
        "unauthorized: too many failed authentication attempts (retry later)",
        "{eleventh}"
    );
    assert_eq!(eleventh["error"]["details"]["code"], "AUTH_RATE_LIMITED");
    assert_eq!(eleventh["error"]["retryable"], true);
    assert!(eleventh["error"]["retryAfterMs"].as_u64().unwrap() > 60_000);
    gw.wait_log("the lockout to be logged", |l| {
        l.contains("authentication locked out")
    });
    let log = gw.log();
    let peer = ns.peer_ip();
    assert!(log.contains(&peer), "the log names the peer {peer}:\n{log}");
    assert!(
        !log.contains("-x7q"),
        "a guessed token reached the log:\n{log}"
    );
    // Loopback is never locked out, but a second failure in a row is answered late.
    for _ in 0..2 {
        let mut c = Client::open(&gw.url()).await;
        assert_eq!(c.connect_raw(v4_params(Some("wrong"))).await["ok"], false);
    }
    let started = std::time::Instant::now();
    let mut c = Client::open(&gw.url()).await;
    assert_eq!(c.connect_raw(v4_params(Some("wrong"))).await["ok"], false);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "third failure in a row answered after {:?}",
        started.elapsed()
    );
    let (_ok, hello) = Client::connect(&gw.url(), v4_params(Some(TOKEN))).await;
    assert_eq!(hello["type"], "hello-ok");
}

#[tokio::test]
async fn a_flood_of_pairing_requests_is_bounded() {
    let ns = NetNs::create();
    let gw = Gateway::start_with(GatewayOpts {
        extra: vec!["--bind".into(), "lan".into()],
        ..Default::default()
    });
    let url = format!("ws://{}:{}", ns.host_ip, gw.port);
    let answers = ns.run(async {
        let mut answers = Vec::new();
        for seed in 100..=164u8 {
            let dev = Device::new(seed);
            answers.push(
                device_connect(&url, 4, &dev, ("token", TOKEN), &["operator.read"])
                    .await
                    .1,
            );
        }
        answers
    });
    for a in &answers[..64] {
        assert_eq!(a["error"]["details"]["code"], "PAIRING_REQUIRED", "{a}");
        assert!(a["error"]["details"]["requestId"].is_string());
    }
    let refused = &answers[64];
    assert_eq!(refused["error"]["code"], "NOT_PAIRED");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many pending pairing requests"),
        "{refused}"
    );
    let mut admin = pairing_admin(&gw).await;
    let list = admin.request("device.pair.list", json!({})).await;
    assert_eq!(list["payload"]["pending"].as_array().unwrap().len(), 64);
}
