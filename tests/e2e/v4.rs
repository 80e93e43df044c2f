//! protocol-v4.md rules, and v3 and v4 clients on one gateway.

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::*;

fn with_range(mut p: Value, min: u64, max: u64) -> Value {
    p["minProtocol"] = json!(min);
    p["maxProtocol"] = json!(max);
    p
}

async fn hello_protocol(url: &str, params: Value) -> Value {
    let mut c = Client::open(url).await;
    c.connect_raw(params).await
}

#[tokio::test]
async fn negotiation_answers_the_highest_common_version_rule_1() {
    let gw = Gateway::start();
    let url = gw.url();
    for (min, max, want) in [(3, 3, 3), (3, 4, 4), (4, 4, 4), (4, 9, 4), (3, 5, 4)] {
        let res = hello_protocol(&url, with_range(v4_cli_params(TOKEN, &[]), min, max)).await;
        // v3 clients must use v3 client ids; `cli` is valid in both.
        assert_eq!(res["payload"]["protocol"], want, "[{min},{max}] → {res}");
    }
    let mut probe = v3_params(Some(TOKEN));
    probe["client"]["mode"] = json!("probe");
    let res = hello_protocol(&url, with_range(probe, 2, 3)).await;
    assert_eq!(res["payload"]["protocol"], 3, "a v3 probe gets 3");
    let mut node = v3_params(Some(TOKEN));
    node["role"] = json!("node");
    node["client"]["mode"] = json!("node");
    let res = hello_protocol(&url, node).await;
    assert_eq!(res["payload"]["protocol"], 3, "a v3 node gets 3: {res}");
}

#[tokio::test]
async fn no_common_version_is_a_v4_shaped_protocol_mismatch_closed_1002() {
    let gw = Gateway::start();
    for (min, max) in [(5, 5), (1, 2)] {
        let mut c = Client::open(&gw.url()).await;
        let res = c
            .connect_raw(with_range(v4_params(Some(TOKEN)), min, max))
            .await;
        assert_eq!(res["error"]["code"], "INVALID_REQUEST");
        assert_eq!(res["error"]["message"], "protocol mismatch");
        assert_eq!(
            res["error"]["details"],
            json!({"code":"PROTOCOL_MISMATCH","clientMinProtocol":min,"clientMaxProtocol":max,
                   "expectedProtocol":4,"minimumProbeProtocol":3})
        );
        assert_eq!(c.closed().await, Some((1002, "protocol mismatch".into())));
    }
    // A node that does not say mode "node" has no v3 window.
    let mut c = Client::open(&gw.url()).await;
    let mut p = v3_params(Some(TOKEN));
    p["role"] = json!("node");
    let res = c.connect_raw(p).await;
    assert_eq!(res["error"]["message"], "protocol mismatch");
}

#[tokio::test]
async fn client_ids_belong_to_their_generation_rule_4_3() {
    let gw = Gateway::start();
    let mut p = v4_params(Some(TOKEN));
    p["client"]["id"] = json!("clawdbot-macos");
    let res = hello_protocol(&gw.url(), p).await;
    assert_eq!(
        res["error"]["message"],
        "invalid connect params: at /client/id: must be equal to one of the allowed values"
    );
    let mut p = v3_params(Some(TOKEN));
    p["client"]["id"] = json!("openclaw-macos");
    let res = hello_protocol(&gw.url(), p).await;
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid connect params: at /client/id")
    );
    let mut p = v4_params(Some(TOKEN));
    p["client"]["id"] = json!("openclaw-macos");
    p["client"]["timeZone"] = json!("Europe/Berlin");
    assert_eq!(hello_protocol(&gw.url(), p).await["ok"], true);
}

#[tokio::test]
async fn v4_schema_errors_come_before_the_protocol_check_rule_1() {
    let gw = Gateway::start();
    let mut p = with_range(v4_params(Some(TOKEN)), 9, 9);
    p["client"]["version"] = json!("");
    let res = hello_protocol(&gw.url(), p).await;
    assert_eq!(
        res["error"]["message"],
        "invalid connect params: at /client/version: must not have fewer than 1 characters"
    );
}

#[tokio::test]
async fn hello_ok_v4_always_carries_auth_and_v4_policy_rule_8() {
    let gw = Gateway::start();
    let (_c, hello) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    assert_eq!(hello["protocol"], 4);
    assert_eq!(
        hello["auth"],
        json!({"method":"token","role":"operator","scopes":["operator.read"]})
    );
    assert_eq!(hello["policy"]["maxPayload"], 26214400);
    assert_eq!(hello["policy"]["maxBufferedBytes"], 52428800);
    assert_eq!(
        hello["policy"]["attachments"],
        json!({"maxBytes": 5000000, "maxImageBytes": 5000000}),
        "v4 announces its attachment limits"
    );
    assert!(hello["server"]["bootId"].is_string());
    assert!(
        hello["server"].get("host").is_none(),
        "v4 server info is a closed object"
    );
    assert!(hello.get("canvasHostUrl").is_none());
    assert_eq!(hello["snapshot"]["authMode"], "token");
}

#[tokio::test]
async fn v4_operators_get_no_implicit_admin_and_token_only_scopes_are_cleared_rule_5() {
    let gw = Gateway::start();
    // cli/cli on loopback keeps what it asked for.
    let (_c, hello) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &[])).await;
    assert_eq!(hello["auth"]["scopes"], json!([]));
    // Any other token-only client is cleared to [] whatever it asks.
    let mut p = v4_params(Some(TOKEN));
    p["scopes"] = json!(["operator.admin"]);
    let (mut c, hello) = Client::connect(&gw.url(), p).await;
    assert_eq!(hello["auth"]["scopes"], json!([]));
    // …and can still call health, nothing else.
    assert_eq!(c.request("health", json!({})).await["ok"], true);
    let r = c.request("status", json!({})).await;
    assert_eq!(r["error"]["code"], "FORBIDDEN");
}

#[tokio::test]
async fn v4_missing_scope_is_forbidden_with_details_rule_9() {
    let gw = Gateway::start();
    let (mut c, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    let r = c.request("system-event", json!({"text": "x"})).await;
    assert_eq!(
        r["error"],
        json!({"code":"FORBIDDEN","message":"missing scope: operator.admin",
               "details":{"code":"MISSING_SCOPE","missingScope":"operator.admin","requiredScopes":["operator.admin"]}})
    );
    let r = c.request("nope", json!({})).await;
    assert_eq!(r["error"]["message"], "missing scope: operator.admin");
    assert_eq!(c.request("status", json!({})).await["ok"], true);
}

#[tokio::test]
async fn v4_health_skips_every_check_but_v3_needs_read_rule_9() {
    let gw = Gateway::start();
    let mut p = v4_params(Some(TOKEN));
    p["role"] = json!("node");
    p["client"]["mode"] = json!("node");
    let (mut node, _) = Client::connect(&gw.url(), p).await;
    assert_eq!(node.request("health", json!({})).await["ok"], true);
    let mut p = v3_params(Some(TOKEN));
    p["scopes"] = json!(["operator.approvals"]);
    let (mut v3, _) = Client::connect(&gw.url(), p).await;
    let r = v3.request("health", json!({})).await;
    assert_eq!(r["error"]["message"], "missing scope: operator.read");
    assert_eq!(r["error"]["code"], "INVALID_REQUEST");
}

#[tokio::test]
async fn v4_closes_after_eleven_unauthorized_role_calls_in_a_row_rule_9() {
    let gw = Gateway::start();
    let mut p = v4_params(Some(TOKEN));
    p["role"] = json!("node");
    p["client"]["mode"] = json!("node");
    let (mut node, _) = Client::connect(&gw.url(), p).await;
    for i in 0..10 {
        let r = node.request("status", json!({})).await;
        assert_eq!(r["error"]["message"], "unauthorized role: node", "call {i}");
    }
    // Another answer resets the streak.
    assert_eq!(node.request("health", json!({})).await["ok"], true);
    for _ in 0..10 {
        node.request("status", json!({})).await;
    }
    node.send_json(&json!({"type":"req","id":"last","method":"status"}))
        .await;
    let r = node.response("last").await;
    assert_eq!(r["error"]["message"], "unauthorized role: node");
    assert_eq!(
        node.closed().await,
        Some((1008, "repeated unauthorized calls".into()))
    );
}

#[tokio::test]
async fn traceparent_is_a_v4_field_only_rule_3() {
    let gw = Gateway::start();
    let (mut v4, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    v4.send_json(&json!({"type":"req","id":"t","method":"status","traceparent":"00-abc-def-01"}))
        .await;
    assert_eq!(v4.response("t").await["ok"], true);
    v4.send_json(&json!({"type":"req","id":"t2","method":"status","traceparent":"x".repeat(129)}))
        .await;
    let r = v4.response("t2").await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid request frame"),
        "{r}"
    );
    let (mut v3, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    v3.send_json(&json!({"type":"req","id":"t","method":"status","traceparent":"00-abc-def-01"}))
        .await;
    let r = v3.response("t").await;
    assert_eq!(
        r["error"]["message"],
        "invalid request frame: at root: unexpected property 'traceparent'"
    );
}

#[tokio::test]
async fn v4_frames_may_exceed_the_v3_limit_rule_2() {
    let gw = Gateway::start();
    let (mut c, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.admin"])).await;
    // A 600 KiB frame (whitespace: each field keeps its own maximum length).
    let frame = format!(
        r#"{{"type":"req","id":"big","method":"system-event","params":{{"text":"z"}}{}}}"#,
        " ".repeat(600 * 1024)
    );
    c.send_text(frame).await;
    let r = c.response("big").await;
    assert_eq!(r["ok"], true, "600 KiB is fine on v4: {r}");
}

#[tokio::test]
async fn v4_auth_errors_carry_details_rule_7() {
    let gw = Gateway::start();
    let mut c = Client::open(&gw.url()).await;
    let res = c.connect_raw(v4_cli_params("wrong", &[])).await;
    assert_eq!(
        res["error"],
        json!({"code":"INVALID_REQUEST",
               "message":"unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)",
               "details":{"code":"AUTH_TOKEN_MISMATCH","authReason":"token_mismatch",
                          "canRetryWithDeviceToken":false,"recommendedNextStep":"update_auth_credentials"}})
    );
    let mut c = Client::open(&gw.url()).await;
    let res = c.connect_raw(v4_params(None)).await;
    assert_eq!(
        res["error"],
        json!({"code":"NOT_PAIRED","message":"device identity required","details":{"code":"DEVICE_IDENTITY_REQUIRED"}})
    );
}

#[tokio::test]
async fn one_presence_list_serves_both_generations_rule_14() {
    let gw = Gateway::start();
    let (mut v3, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let mut p = v4_params(Some(TOKEN));
    p["client"]["id"] = json!("openclaw-macos");
    p["client"]["mode"] = json!("ui");
    p["client"]["instanceId"] = json!("mac-4");
    p["client"]["timeZone"] = json!("Europe/Paris");
    let (v4client, _) = Client::connect(&gw.url(), p).await;
    let ev = v3.event("presence").await;
    let entry = ev["payload"]["presence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["instanceId"] == "mac-4")
        .cloned()
        .expect("v3 observer sees the v4 client");
    assert!(
        entry.get("timeZone").is_none() && entry.get("clientId").is_none(),
        "v3 shape: {entry}"
    );
    // A v4 observer sees the v3 client, with v4 fields.
    let (mut obs, hello) =
        Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    let listed = hello["snapshot"]["presence"].as_array().unwrap();
    assert!(listed.iter().any(|e| e["mode"] == "test"), "{listed:?}");
    let mac = listed.iter().find(|e| e["instanceId"] == "mac-4").unwrap();
    assert_eq!(mac["timeZone"], "Europe/Paris");
    drop(v4client);
    let ev = obs.event("presence").await;
    assert!(ev["seq"].is_u64() && ev["stateVersion"]["presence"].is_u64());
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

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
        b64url(&self.key.verifying_key().to_bytes())
    }
    fn id(&self) -> String {
        Sha256::digest(self.key.verifying_key().to_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
    fn sign(&self, payload: &str) -> String {
        b64url(&self.key.sign(payload.as_bytes()).to_bytes())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Connects with a device proof built by `payload(id, signedAt, nonce)`.
async fn device_connect(
    gw: &Gateway,
    protocol: u64,
    dev: &Device,
    signed_at: u64,
    payload: impl Fn(&str, u64, &str) -> String,
    nonce_override: Option<&str>,
) -> Value {
    let mut c = Client::open(&gw.url()).await;
    let ch = c.frame().await;
    let nonce = nonce_override
        .unwrap_or(ch["payload"]["nonce"].as_str().unwrap())
        .to_owned();
    let sig = dev.sign(&payload(&dev.id(), signed_at, &nonce));
    let mut p = if protocol == 3 {
        v3_params(Some(TOKEN))
    } else {
        v4_params(Some(TOKEN))
    };
    p["client"]["deviceFamily"] = json!("Desk");
    p["client"]["platform"] = json!("Linux");
    p["scopes"] = json!(["operator.read"]);
    p["device"] = json!({"id": dev.id(), "publicKey": dev.public(), "signature": sig,
                         "signedAt": signed_at, "nonce": nonce});
    c.send_json(&json!({"type":"req","id":"c1","method":"connect","params": p}))
        .await;
    c.response("c1").await
}

#[tokio::test]
async fn device_proofs_use_each_generations_payload_rule_6() {
    let gw = Gateway::start();
    let dev = Device::new(3);
    let now = now_ms();
    let v2 = |id: &str, at: u64, n: &str| {
        format!("v2|{id}|test|test|operator|operator.read|{at}|{TOKEN}|{n}")
    };
    let v3 = |id: &str, at: u64, n: &str| {
        format!("v3|{id}|test|test|operator|operator.read|{at}|{TOKEN}|{n}|linux|desk")
    };
    let r = device_connect(&gw, 3, &dev, now, v2, None).await;
    assert_eq!(r["ok"], true, "v3 protocol, v2 payload: {r}");
    let r = device_connect(&gw, 4, &dev, now, v3, None).await;
    assert_eq!(r["ok"], true, "v4 protocol, v3 payload: {r}");
    assert_eq!(
        r["payload"]["auth"]["scopes"],
        json!(["operator.read"]),
        "device keeps its scopes"
    );
    let r = device_connect(&gw, 4, &dev, now, v2, None).await;
    assert_eq!(r["ok"], true, "v4 protocol also accepts v2: {r}");
    let r = device_connect(&gw, 3, &dev, now, v3, None).await;
    assert_eq!(r["error"]["message"], "device signature invalid");
}

#[tokio::test]
async fn device_proofs_over_another_nonce_or_an_old_time_are_refused_rule_6() {
    let gw = Gateway::start();
    let dev = Device::new(4);
    let v2 = |id: &str, at: u64, n: &str| {
        format!("v2|{id}|test|test|operator|operator.read|{at}|{TOKEN}|{n}")
    };
    let r = device_connect(&gw, 4, &dev, now_ms(), v2, Some("not-the-challenge")).await;
    assert_eq!(r["error"]["message"], "device nonce mismatch");
    assert_eq!(r["error"]["details"]["code"], "DEVICE_AUTH_NONCE_MISMATCH");
    // v4 allows 2 minutes of skew, v3 ten.
    let three_min_ago = now_ms() - 3 * 60 * 1000;
    let r = device_connect(&gw, 4, &dev, three_min_ago, v2, None).await;
    assert_eq!(r["error"]["message"], "device signature expired");
    let r = device_connect(&gw, 3, &dev, three_min_ago, v2, None).await;
    assert_eq!(r["ok"], true, "3 minutes is within v3's 10: {r}");
    let r = device_connect(&gw, 3, &dev, now_ms() - 11 * 60 * 1000, v2, None).await;
    assert_eq!(r["error"]["message"], "device signature expired");
    // A proof for another key.
    let other = Device::new(5);
    let mut c = Client::open(&gw.url()).await;
    c.frame().await;
    let mut p = v4_params(Some(TOKEN));
    p["device"] = json!({"id": dev.id(), "publicKey": other.public(), "signature": "AAAA",
                         "signedAt": now_ms(), "nonce": "n"});
    c.send_json(&json!({"type":"req","id":"c1","method":"connect","params": p}))
        .await;
    let r = c.response("c1").await;
    assert_eq!(r["error"]["message"], "device identity mismatch");
}

#[tokio::test]
async fn session_and_channel_methods_answer_in_each_generations_shape_rule_10() {
    let gw = Gateway::start();
    let (mut v3, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let (mut v4, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.write"])).await;
    v3.send_json(&json!({"type":"req","id":"a","method":"agent","params":{"message":"remember me","idempotencyKey":"hist-1"}}))
        .await;
    v3.response("a").await;
    let fin = v3.response("a").await;
    assert_eq!(fin["payload"]["status"], "ok");
    let s3 = v3.request("sessions.list", json!({})).await["payload"].clone();
    assert_eq!(s3["sessions"][0]["key"], "agent:main:main");
    assert!(s3.get("hasMore").is_none(), "v3 shape: {s3}");
    let s4 = v4.request("sessions.list", json!({"limit": 10})).await["payload"].clone();
    assert_eq!(s4["totalCount"], 1);
    assert_eq!(s4["hasMore"], false);
    assert_eq!(s4["limitApplied"], 10);
    let h3 = v3
        .request("chat.history", json!({"sessionKey": "main"}))
        .await["payload"]
        .clone();
    let texts = message_texts(&h3);
    assert_eq!(texts, vec!["remember me", "[echo] remember me"]);
    assert!(h3.get("totalMessages").is_none());
    let h4 = v4
        .request(
            "chat.history",
            json!({"sessionKey": "agent:main:main", "limit": 1}),
        )
        .await["payload"]
        .clone();
    assert_eq!(h4["messages"].as_array().unwrap().len(), 1);
    assert_eq!(h4["totalMessages"], 2);
    assert_eq!(h4["hasMore"], true);
    let bad = v3.request("chat.history", json!({})).await;
    assert_eq!(
        bad["error"]["message"],
        "invalid chat.history params: must have required property 'sessionKey'"
    );
    let bad = v4.request("sessions.list", json!({"zz": 1})).await;
    assert_eq!(
        bad["error"]["message"],
        "invalid sessions.list params: at root: unexpected property 'zz'"
    );
    let ch = v4.request("channels.status", json!({})).await["payload"].clone();
    assert!(
        ch["channels"].is_object() && ch["statusIssues"].is_array(),
        "{ch}"
    );
    let m = v3.request("models.list", json!({})).await["payload"].clone();
    assert_eq!(m["models"][0]["id"], "echo");
    assert_eq!(m["models"][0]["provider"], "switchboard");
}

#[tokio::test]
async fn v4_chat_deltas_carry_delta_text_and_v3_ones_do_not_rule_11() {
    let gw = Gateway::start();
    let (mut v3, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let (mut v4, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.write"])).await;
    v4.send_json(&json!({"type":"req","id":"a","method":"agent","params":{"message":"two words","idempotencyKey":"delta-1"}}))
        .await;
    let d4 = v4.event("chat").await;
    assert_eq!(d4["payload"]["state"], "delta");
    assert!(d4["payload"]["deltaText"].is_string(), "{d4}");
    let d3 = v3.event("chat").await;
    assert_eq!(d3["payload"]["state"], "delta");
    assert!(d3["payload"].get("deltaText").is_none(), "{d3}");
    assert_eq!(d3["payload"]["message"]["role"], "assistant");
}

/// The next `sessions.changed` event, skipping other frames.
async fn next_sessions_changed(c: &mut Client) -> Value {
    c.event("sessions.changed").await
}

#[tokio::test]
async fn sessions_subscribe_sends_sessions_changed_for_each_run_only_to_subscribers() {
    let gw = Gateway::start();
    let scopes = ["operator.read", "operator.write"];
    let (mut sub, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &scopes)).await;
    let (mut other, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &scopes)).await;
    // Without params: the reference's bare acknowledgement.
    let r = sub.request("sessions.subscribe", json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["payload"], json!({"subscribed": true}), "{r}");
    // Its params are `sessions.list`'s: validated as those, answered with the list.
    let r = sub
        .request("sessions.subscribe", json!({"limit": 5, "bogus": 1}))
        .await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], "INVALID_REQUEST", "{r}");
    let r = sub.request("sessions.subscribe", json!({"limit": 5})).await;
    assert_eq!(r["payload"]["subscribed"], true, "{r}");
    assert_eq!(r["payload"]["list"]["count"], 0, "{r}");

    // A run in a new session: `start` once the user's message is in it, `end` once the
    // reply is.
    let r = other
        .request(
            "agent",
            json!({"message": "two words", "sessionKey": "sub-test", "idempotencyKey": "sc-1"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let run_id = r["payload"]["runId"].as_str().unwrap().to_owned();
    let start = next_sessions_changed(&mut sub).await;
    let p = &start["payload"];
    assert_eq!(p["phase"], "start", "{start}");
    assert_eq!(p["sessionKey"], "agent:main:sub-test", "{start}");
    assert_eq!(p["agentId"], "main", "{start}");
    assert_eq!(p["runId"], run_id.as_str(), "{start}");
    assert!(p["ts"].as_u64().is_some(), "{start}");
    assert_eq!(p["session"]["key"], "agent:main:sub-test", "{start}");
    assert_eq!(p["session"]["messageCount"], 1, "{start}");
    assert_eq!(p["updatedAt"], p["session"]["updatedAt"], "{start}");
    let end = next_sessions_changed(&mut sub).await;
    assert_eq!(end["payload"]["phase"], "end", "{end}");
    assert_eq!(end["payload"]["runId"], run_id.as_str(), "{end}");
    assert_eq!(end["payload"]["session"]["messageCount"], 2, "{end}");
    assert!(end["seq"].as_u64() > start["seq"].as_u64(), "{start} {end}");
    // The list the subscriber refreshes to agrees.
    let list = sub.request("sessions.list", json!({})).await;
    assert_eq!(list["payload"]["sessions"][0]["key"], "agent:main:sub-test");

    // The client that never subscribed got the run's own answer and events, and no
    // `sessions.changed` before its final answer, nor after.
    let fin = other.response(&format!("r{}", 1)).await;
    assert_eq!(fin["payload"]["status"], "ok", "{fin}");
    assert_eq!(other.request("health", json!({})).await["ok"], true);
    assert!(
        other
            .backlog
            .iter()
            .all(|v| v["event"] != "sessions.changed"),
        "{:#?}",
        other.backlog
    );
    assert!(
        other.backlog.iter().any(|v| v["event"] == "chat"),
        "the unsubscribed client still sees the run: {:#?}",
        other.backlog
    );
}
