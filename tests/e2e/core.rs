//! protocol.md (v3) rules: handshake, frames, methods, events, limits.

use serde_json::{Value, json};

use crate::harness::*;

#[tokio::test]
async fn challenge_is_the_first_frame_without_seq() {
    let gw = Gateway::start();
    let mut c = Client::open(&gw.url()).await;
    let ch = c.frame().await;
    assert_eq!(ch["type"], "event");
    assert_eq!(ch["event"], "connect.challenge");
    assert!(
        ch["payload"]["nonce"]
            .as_str()
            .is_some_and(|n| n.len() == 36),
        "{ch}"
    );
    assert!(ch["payload"]["ts"].as_u64().is_some());
    assert!(ch.get("seq").is_none());
}

#[tokio::test]
async fn non_json_first_frame_closes_1000_without_reply() {
    let gw = Gateway::start();
    let mut c = Client::open(&gw.url()).await;
    c.frame().await;
    c.send_text("hello there").await;
    assert_eq!(c.closed().await, Some((1000, String::new())));
    assert!(c.backlog.is_empty(), "no reply expected: {:?}", c.backlog);
}

#[tokio::test]
async fn json_that_is_not_a_request_closes_1008_without_reply() {
    let gw = Gateway::start();
    let mut c = Client::open(&gw.url()).await;
    c.frame().await;
    c.send_json(&json!({"type": "x"})).await;
    assert_eq!(
        c.closed().await,
        Some((1008, "invalid request frame".into()))
    );
    assert!(c.backlog.is_empty());
}

#[tokio::test]
async fn first_request_other_than_connect_is_answered_then_closed_1008() {
    let gw = Gateway::start();
    let mut c = Client::open(&gw.url()).await;
    c.frame().await;
    c.send_json(&json!({"type":"req","id":"a","method":"health"}))
        .await;
    let res = c.response("a").await;
    assert_eq!(res["ok"], false);
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert_eq!(
        res["error"]["message"],
        "invalid handshake: first request must be connect"
    );
    assert_eq!(
        c.closed().await,
        Some((
            1008,
            "invalid handshake: first request must be connect".into()
        ))
    );
}

#[tokio::test]
async fn invalid_connect_params_name_the_field_and_close_1008() {
    let gw = Gateway::start();
    let mut c = Client::open(&gw.url()).await;
    let mut p = v3_params(Some(TOKEN));
    p["client"]["id"] = json!("no-such-client");
    p["extra"] = json!(1);
    let res = c.connect_raw(p).await;
    let msg = res["error"]["message"].as_str().unwrap();
    assert_eq!(
        msg,
        "invalid connect params: at root: unexpected property 'extra'; \
         at /client/id: must be equal to constant; at /client/id: must match a schema in anyOf"
    );
    let (code, reason) = c.closed().await.unwrap();
    assert_eq!(code, 1008);
    assert!(msg.starts_with(&reason) && reason.len() <= 120, "{reason}");
}

#[tokio::test]
async fn wrong_or_missing_token_is_refused_with_the_reference_wording() {
    let gw = Gateway::start();
    let mut c = Client::open(&gw.url()).await;
    let res = c.connect_raw(v3_params(Some("wrong"))).await;
    assert_eq!(res["error"]["code"], "INVALID_REQUEST");
    assert_eq!(
        res["error"]["message"],
        "unauthorized: gateway token mismatch (provide gateway auth token)"
    );
    assert!(
        res["error"].get("details").is_none(),
        "v3 has no details: {res}"
    );
    assert_eq!(
        c.closed().await,
        Some((
            1008,
            "unauthorized: gateway token mismatch (provide gateway auth token)".into()
        ))
    );
    // No token and no device: a device identity is required.
    let mut c = Client::open(&gw.url()).await;
    let res = c.connect_raw(v3_params(None)).await;
    assert_eq!(res["error"]["code"], "NOT_PAIRED");
    assert_eq!(res["error"]["message"], "device identity required");
}

#[tokio::test]
async fn hello_ok_v3_carries_every_field_of_the_protocol() {
    let gw = Gateway::start();
    let (_c, hello) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    assert_eq!(hello["type"], "hello-ok");
    assert_eq!(hello["protocol"], 3);
    assert!(hello["server"]["version"].is_string());
    assert!(hello["server"]["connId"].is_string());
    assert!(hello["server"]["host"].is_string());
    let methods: Vec<&str> = hello["features"]["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for m in [
        "health",
        "status",
        "system-presence",
        "system-event",
        "last-heartbeat",
    ] {
        assert!(methods.contains(&m), "{m} missing from {methods:?}");
    }
    let events = hello["features"]["events"].as_array().unwrap();
    for e in [
        "connect.challenge",
        "tick",
        "presence",
        "health",
        "shutdown",
    ] {
        assert!(events.contains(&json!(e)), "{e} missing");
    }
    let snap = &hello["snapshot"];
    assert!(snap["presence"].is_array());
    assert_eq!(snap["health"]["ok"], true);
    assert!(snap["stateVersion"]["presence"].as_u64().unwrap() >= 1);
    assert!(snap["stateVersion"]["health"].as_u64().unwrap() >= 1);
    assert!(snap["uptimeMs"].is_u64());
    assert_eq!(snap["sessionDefaults"]["mainSessionKey"], "agent:main:main");
    assert_eq!(
        hello["policy"],
        json!({"maxPayload": 524288, "maxBufferedBytes": 1572864, "tickIntervalMs": 30000})
    );
    assert!(
        hello.get("auth").is_none(),
        "v3 sends auth only with a device token"
    );
}

#[tokio::test]
async fn health_status_and_presence_have_the_reference_shapes() {
    let gw = Gateway::start();
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let h = c.request("health", json!({})).await;
    let p = &h["payload"];
    for k in [
        "ok",
        "ts",
        "durationMs",
        "channels",
        "channelOrder",
        "channelLabels",
        "heartbeatSeconds",
        "defaultAgentId",
        "agents",
        "sessions",
    ] {
        assert!(p.get(k).is_some(), "health lacks {k}: {p}");
    }
    assert_eq!(p["gateway"]["pid"], gw.pid());
    let s = c.request("status", json!(null)).await;
    for k in [
        "heartbeat",
        "channelSummary",
        "queuedSystemEvents",
        "sessions",
    ] {
        assert!(s["payload"].get(k).is_some(), "status lacks {k}: {s}");
    }
    assert_eq!(s["payload"]["gateway"]["connections"]["total"], 1);
    let pr = c.request("system-presence", json!({})).await;
    let list = pr["payload"].as_array().unwrap();
    assert_eq!(list[0]["mode"], "gateway");
    assert_eq!(list[0]["reason"], "self");
    assert!(
        list.iter()
            .any(|e| e["mode"] == "test" && e["reason"] == "connect")
    );
    let lh = c.request("last-heartbeat", json!({})).await;
    assert_eq!(lh["ok"], true);
    assert_eq!(lh["payload"], Value::Null);
    let se = c
        .request("system-event", json!({"text": "deploy finished"}))
        .await;
    assert_eq!(se["payload"], json!({"ok": true}));
    let s = c.request("status", json!({})).await;
    assert_eq!(
        s["payload"]["queuedSystemEvents"],
        json!(["deploy finished"])
    );
}

#[tokio::test]
async fn invalid_params_are_answered_and_the_connection_stays_up() {
    let gw = Gateway::start();
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let r = c.request("system-event", json!({"text": 5})).await;
    assert_eq!(r["ok"], false);
    assert_eq!(r["error"]["code"], "INVALID_REQUEST");
    assert_eq!(
        r["error"]["message"],
        "invalid system-event params: at /text: must be string"
    );
    let r = c.request("system-event", json!({})).await;
    assert_eq!(r["error"]["message"], "text required");
    c.send_text("{\"type\":\"req\"}").await;
    let r = c.response("invalid").await;
    assert_eq!(
        r["error"]["message"],
        "invalid request frame: must have required property 'id'; must have required property 'method'"
    );
    c.send_text("not json at all").await;
    let r = c.request("health", json!({})).await;
    assert_eq!(r["ok"], true, "still serving after bad frames");
}

#[tokio::test]
async fn unknown_method_needs_admin_then_is_named() {
    let gw = Gateway::start();
    let (mut admin, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let r = admin.request("no.such.method", json!({})).await;
    assert_eq!(r["error"]["message"], "unknown method: no.such.method");
    let mut p = v3_params(Some(TOKEN));
    p["scopes"] = json!(["operator.read"]);
    let (mut reader, _) = Client::connect(&gw.url(), p).await;
    let r = reader.request("no.such.method", json!({})).await;
    assert_eq!(r["error"]["code"], "INVALID_REQUEST");
    assert_eq!(r["error"]["message"], "missing scope: operator.admin");
    let r = reader.request("system-event", json!({"text": "x"})).await;
    assert_eq!(r["error"]["message"], "missing scope: operator.admin");
    assert_eq!(reader.request("status", json!({})).await["ok"], true);
}

#[tokio::test]
async fn oversize_frames_close_1009() {
    let gw = Gateway::start();
    // Before the handshake: more than 64 KiB.
    let mut c = Client::open(&gw.url()).await;
    c.frame().await;
    c.send_text("x".repeat(70 * 1024)).await;
    assert_eq!(c.closed().await.map(|c| c.0), Some(1009));
    // After a v3 handshake: more than 512 KiB.
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let big = json!({"type":"req","id":"big","method":"system-event","params":{"text": "y".repeat(600 * 1024)}});
    c.send_json(&big).await;
    assert_eq!(c.closed().await.map(|c| c.0), Some(1009));
}

#[tokio::test]
async fn tick_arrives_at_the_policy_interval() {
    let gw = Gateway::start_with(GatewayOpts {
        extra: vec!["--tick-interval-ms".into(), "200".into()],
        ..Default::default()
    });
    let (mut c, hello) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    assert_eq!(hello["policy"]["tickIntervalMs"], 200);
    let t1 = c.event("tick").await;
    let t2 = c.event("tick").await;
    assert!(t1["payload"]["ts"].as_u64().unwrap() < t2["payload"]["ts"].as_u64().unwrap());
    assert!(t1.get("stateVersion").is_none());
    assert!(t2["seq"].as_u64().unwrap() > t1["seq"].as_u64().unwrap());
}

#[tokio::test]
async fn presence_is_broadcast_on_join_and_leave() {
    let gw = Gateway::start();
    let (mut watcher, hello) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let v0 = hello["snapshot"]["stateVersion"]["presence"]
        .as_u64()
        .unwrap();
    let mut p = v3_params(Some(TOKEN));
    p["client"]["instanceId"] = json!("joiner-1");
    p["client"]["displayName"] = json!("Joiner");
    let (joiner, _) = Client::connect(&gw.url(), p).await;
    let ev = watcher.event("presence").await;
    assert!(ev["stateVersion"]["presence"].as_u64().unwrap() > v0);
    let entry = ev["payload"]["presence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["instanceId"] == "joiner-1")
        .cloned()
        .expect("joiner listed");
    assert_eq!(entry["reason"], "connect");
    assert_eq!(entry["host"], "Joiner");
    drop(joiner);
    loop {
        let ev = watcher.event("presence").await;
        let gone = ev["payload"]["presence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["instanceId"] == "joiner-1" && e["reason"] == "disconnect");
        if gone {
            break;
        }
    }
}

#[tokio::test]
async fn seq_counts_per_connection_from_one() {
    let gw = Gateway::start_with(GatewayOpts {
        extra: vec!["--tick-interval-ms".into(), "100".into()],
        ..Default::default()
    });
    let (mut a, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let mut seen = vec![];
    while seen.len() < 3 {
        let v = a.frame().await;
        if v["type"] == "event" {
            seen.push(v["seq"].as_u64().expect("broadcast events carry seq"));
        }
    }
    assert_eq!(seen, vec![1, 2, 3], "a's events");
    // A later connection starts at 1 too, whatever a has seen.
    let (mut b, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let first = loop {
        let v = b.frame().await;
        if v["type"] == "event" {
            break v;
        }
    };
    assert_eq!(first["seq"], 1);
}

#[tokio::test]
async fn slow_consumer_is_cut_and_gateway_memory_stays_bounded() {
    use tokio::io::AsyncWriteExt;
    // The per-connection request budget would slow this client's requests before its
    // unread answers pile up; this test is about the bound on those answers.
    let gw = Gateway::start_with(GatewayOpts {
        env: vec![("SWITCHBOARD_REQUESTS_PER_SECOND".into(), "0".into())],
        ..Default::default()
    });
    let rss_before = gw.rss_kib();
    // A client that sends requests but never reads a byte of the answers.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let req = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    raw.write_all(req.as_bytes()).await.unwrap();
    // Wait for the 101 (and the challenge) before sending frames, as a real client does.
    let mut head = vec![0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut raw, &mut head)
        .await
        .unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 101"), "upgrade refused");
    let connect =
        json!({"type":"req","id":"c1","method":"connect","params": v3_params(Some(TOKEN))});
    raw.write_all(&masked_text_frame(&connect.to_string()))
        .await
        .unwrap();
    let health = masked_text_frame(&json!({"type":"req","id":"h","method":"health"}).to_string());
    let (mut watcher, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let mut cut = false;
    let mut sent = 0;
    // Bounded: at most 20 000 requests (~20 MiB of answers, 13x the 1.5 MiB bound).
    for i in 0..20_000 {
        let write =
            tokio::time::timeout(std::time::Duration::from_secs(1), raw.write_all(&health)).await;
        let blocked = !matches!(write, Ok(Ok(())));
        sent = i;
        if blocked || i % 500 == 499 {
            let s = watcher.request("status", json!({})).await;
            if s["payload"]["gateway"]["connections"]["total"] == 1 {
                cut = true;
                break;
            }
        }
    }
    // On a loaded machine the requests may all be written before the gateway has read
    // enough of them to exceed the bound: then wait (bounded) for it to catch up.
    let deadline = std::time::Instant::now() + WAIT;
    while !cut && std::time::Instant::now() < deadline {
        let s = watcher.request("status", json!({})).await;
        cut = s["payload"]["gateway"]["connections"]["total"] == 1;
        if !cut {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    assert!(cut, "the silent client was never cut off");
    eprintln!("cut after {sent} requests");
    let rss_after = gw.rss_kib();
    assert!(
        rss_after < rss_before + 16 * 1024,
        "gateway grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(gw.log().contains("slow consumer cut"), "{}", gw.log());
    // Everyone else is still served.
    assert_eq!(watcher.request("health", json!({})).await["ok"], true);
}

/// A client-to-server text frame (masked, as RFC 6455 requires).
fn masked_text_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mut f = vec![0x81u8];
    let len = payload.len();
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

#[tokio::test]
async fn handshake_timeout_closes_the_socket() {
    let gw = Gateway::start_with(GatewayOpts {
        extra: vec!["--handshake-timeout-ms".into(), "300".into()],
        ..Default::default()
    });
    let mut c = Client::open(&gw.url()).await;
    c.frame().await;
    assert_eq!(c.closed().await, Some((1000, String::new())));
}

#[tokio::test]
async fn health_is_broadcast_when_it_changes() {
    let gw = Gateway::start();
    let (mut a, hello) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let v0 = hello["snapshot"]["stateVersion"]["health"]
        .as_u64()
        .unwrap();
    // Another client connecting changes the gateway's connection count.
    let (_b, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    loop {
        let ev = a.event("health").await;
        assert!(ev["stateVersion"]["health"].as_u64().unwrap() > v0);
        if ev["payload"]["gateway"]["connections"]["total"] == 2 {
            break;
        }
    }
}

#[tokio::test]
async fn no_input_of_any_shape_brings_the_gateway_down() {
    let gw = Gateway::start();
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let nasty: Vec<String> = vec![
        "".into(),
        "null".into(),
        "[]".into(),
        "[1,2,3]".into(),
        "\"req\"".into(),
        "{}".into(),
        "{\"type\":null}".into(),
        "{\"type\":\"req\",\"id\":5,\"method\":[]}".into(),
        "{\"type\":\"req\",\"id\":\"x\",\"method\":\"health\",\"params\":\"str\"}".into(),
        "{\"type\":\"req\",\"id\":\"x\",\"method\":\"system-event\",\"params\":{\"text\":{\"a\":1}}}".into(),
        "{\"type\":\"req\",\"id\":\"x\",\"method\":\"agent\",\"params\":{\"message\":\"\"}}".into(),
        "{\"type\":\"req\",\"id\":\"x\",\"method\":\"chat.history\",\"params\":{\"sessionKey\":\"k\",\"limit\":-1}}".into(),
        "{\"type\":\"req\",\"id\":\"x\",\"method\":\"workers.stop\",\"params\":{\"name\":\"\"}}".into(),
        format!("{{\"type\":\"req\",\"id\":\"{}\",\"method\":\"health\"}}", "\u{1F600}".repeat(1000)),
        "{\"a\":".repeat(2000),
        "[".repeat(100_000),
        "{\"type\":\"req\",\"id\":\"x\",\"method\":\"health\",\"params\":{\"probe\":1e400}}".into(),
    ];
    for frame in &nasty {
        c.send_text(frame.clone()).await;
    }
    // Binary junk too.
    use futures_util::SinkExt;
    c.ws.send(tokio_tungstenite::tungstenite::Message::binary(vec![
        0xff, 0xfe, 0x00, 0x80,
    ]))
    .await
    .unwrap();
    let r = c.request("health", json!({})).await;
    assert_eq!(r["ok"], true, "still serving");
    // And a fresh connection is served too.
    let (mut d, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    assert_eq!(d.request("status", json!({})).await["ok"], true);
}
