//! Nodes (issue #4 point 4): a real second WebSocket client acts as the node.

use serde_json::{Value, json};

use crate::harness::*;

fn node_params(commands: &[&str]) -> Value {
    json!({
        "minProtocol": 3, "maxProtocol": 3,
        "client": {"id": "node-host", "version": "1.0.0", "platform": "linux", "mode": "node", "displayName": "Build box"},
        "role": "node",
        "caps": ["system"],
        "commands": commands,
        "permissions": {"system.run": true},
        "auth": {"token": TOKEN},
    })
}

#[tokio::test]
async fn node_invoke_round_trips_through_a_real_node_within_the_allow_list() {
    let gw = Gateway::start();
    let (mut node, _) =
        Client::connect(&gw.url(), node_params(&["system.run", "camera.snap"])).await;
    let (mut op, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.write"])).await;
    let list = op.request("node.list", json!({})).await;
    let n = &list["payload"]["nodes"][0];
    assert_eq!(n["nodeId"], "node-host");
    assert_eq!(n["connected"], true);
    assert_eq!(
        n["commands"],
        json!(["system.run"]),
        "camera.snap is not allowed on linux: {n}"
    );
    let d = op
        .request("node.describe", json!({"nodeId": "node-host"}))
        .await;
    assert_eq!(d["payload"]["displayName"], "Build box");
    assert_eq!(d["payload"]["permissions"], json!({"system.run": true}));
    // The operator invokes; the node gets the request as an event and answers.
    op.send_json(&json!({"type":"req","id":"inv","method":"node.invoke","params":
        {"nodeId":"node-host","command":"system.run","params":{"argv":["echo","hi"]},"idempotencyKey":"inv-1"}}))
        .await;
    let req = node.event("node.invoke.request").await;
    let p = &req["payload"];
    assert_eq!(p["command"], "system.run");
    assert_eq!(p["paramsJSON"], r#"{"argv":["echo","hi"]}"#);
    assert_eq!(p["idempotencyKey"], "inv-1");
    let r = node
        .request("node.invoke.result", json!({"id": p["id"], "nodeId": "node-host", "ok": true, "payloadJSON": "{\"stdout\":\"hi\\n\"}"}))
        .await;
    assert_eq!(r["payload"], json!({"ok": true}));
    let res = op.response("inv").await;
    assert_eq!(res["ok"], true, "{res}");
    assert_eq!(res["payload"]["payload"], json!({"stdout": "hi\n"}));
    // The same key again: the first answer, and the node hears nothing new.
    let again = op
        .request(
            "node.invoke",
            json!({"nodeId":"node-host","command":"system.run","idempotencyKey":"inv-1"}),
        )
        .await;
    assert_eq!(again["payload"], res["payload"]);
    // Not declared / not allowed.
    let r = op
        .request(
            "node.invoke",
            json!({"nodeId":"node-host","command":"camera.snap","idempotencyKey":"inv-2"}),
        )
        .await;
    // The caller speaks v4, so it gets v4's wording (v3 callers get "node command not allowed").
    assert_eq!(
        r["error"]["message"],
        "node command not allowed: \"camera.snap\" is not in the allowlist for platform \"linux\""
    );
    assert_eq!(r["error"]["details"]["reason"], "command not allowlisted");
    let (mut v3op, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let r = v3op
        .request(
            "node.invoke",
            json!({"nodeId":"node-host","command":"camera.snap","idempotencyKey":"inv-2b"}),
        )
        .await;
    assert_eq!(r["error"]["message"], "node command not allowed");
    // A node that does not answer: the invoke times out.
    let r = op
        .request("node.invoke", json!({"nodeId":"node-host","command":"system.run","timeoutMs":200,"idempotencyKey":"inv-3"}))
        .await;
    assert_eq!(r["error"]["message"], "node invoke timed out");
    // An unknown node.
    let r = op
        .request(
            "node.invoke",
            json!({"nodeId":"nope","command":"system.run","idempotencyKey":"inv-4"}),
        )
        .await;
    assert_eq!(r["error"]["message"], "node not connected");
    // A node may answer only for itself.
    let r = node
        .request(
            "node.invoke.result",
            json!({"id": "x", "nodeId": "someone-else", "ok": true}),
        )
        .await;
    assert_eq!(r["error"]["message"], "nodeId mismatch");
}

#[tokio::test]
async fn a_node_that_disconnects_fails_its_pending_invokes_at_once() {
    let gw = Gateway::start();
    let (mut node, _) = Client::connect(&gw.url(), node_params(&["system.run"])).await;
    let (mut op, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.write"])).await;
    op.send_json(
        &json!({"type":"req","id":"inv","method":"node.invoke","params":
        {"nodeId":"node-host","command":"system.run","idempotencyKey":"dc-1"}}),
    )
    .await;
    node.event("node.invoke.request").await;
    drop(node);
    let res = op.response("inv").await;
    assert_eq!(res["error"]["message"], "node disconnected (system.run)");
    let list = op.request("node.list", json!({})).await;
    assert_eq!(list["payload"]["nodes"], json!([]));
}

#[tokio::test]
async fn node_pairing_requests_are_approved_with_a_fresh_token_that_verifies() {
    let gw = Gateway::start();
    let mut p = v3_params(Some(TOKEN));
    p["scopes"] = json!(["operator.pairing"]);
    let (mut op, _) = Client::connect(&gw.url(), p.clone()).await;
    let (mut watcher, _) = Client::connect(&gw.url(), p).await;
    let r = op
        .request(
            "node.pair.request",
            json!({"nodeId": "ipad-1", "displayName": "Kitchen iPad", "platform": "iOS"}),
        )
        .await;
    assert_eq!(r["payload"]["status"], "pending");
    assert_eq!(r["payload"]["created"], true);
    let request_id = r["payload"]["request"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let ev = watcher.event("node.pair.requested").await;
    assert_eq!(ev["payload"]["requestId"], request_id.as_str());
    // Idempotent per node.
    let again = op
        .request("node.pair.request", json!({"nodeId": "ipad-1"}))
        .await;
    assert_eq!(
        again["payload"]["request"]["requestId"],
        request_id.as_str()
    );
    assert_eq!(again["payload"]["created"], false);
    let approved = op
        .request("node.pair.approve", json!({"requestId": request_id}))
        .await;
    let token = approved["payload"]["node"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ev = watcher.event("node.pair.resolved").await;
    assert_eq!(ev["payload"]["decision"], "approved");
    let v = op
        .request(
            "node.pair.verify",
            json!({"nodeId": "ipad-1", "token": token}),
        )
        .await;
    assert_eq!(v["payload"]["ok"], true);
    let v = op
        .request(
            "node.pair.verify",
            json!({"nodeId": "ipad-1", "token": "guess"}),
        )
        .await;
    assert_eq!(v["payload"], json!({"ok": false}));
    let list = op.request("node.pair.list", json!({})).await;
    assert_eq!(list["payload"]["paired"][0]["nodeId"], "ipad-1");
    assert!(!list.to_string().contains(&token), "tokens are not listed");
    let renamed = op
        .request(
            "node.rename",
            json!({"nodeId": "ipad-1", "displayName": "Hall iPad"}),
        )
        .await;
    assert_eq!(renamed["payload"]["displayName"], "Hall iPad");
    // Reject.
    let r = op
        .request("node.pair.request", json!({"nodeId": "phone-2"}))
        .await;
    let rid = r["payload"]["request"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    let rejected = op
        .request("node.pair.reject", json!({"requestId": rid}))
        .await;
    assert_eq!(rejected["payload"]["nodeId"], "phone-2");
    let v = op
        .request("node.pair.approve", json!({"requestId": rid}))
        .await;
    assert_eq!(v["error"]["message"], "unknown requestId");
}

fn v4_node_params(commands: &[&str]) -> Value {
    let mut p = node_params(commands);
    p["minProtocol"] = json!(4);
    p["maxProtocol"] = json!(4);
    p
}

#[tokio::test]
async fn v4_node_commands_wait_for_operator_approval_rule_10() {
    let gw = Gateway::start();
    let (mut op, _) = Client::connect(
        &gw.url(),
        v4_cli_params(TOKEN, &["operator.write", "operator.pairing"]),
    )
    .await;
    let (mut node, hello) = Client::connect(&gw.url(), v4_node_params(&["system.run"])).await;
    assert_eq!(hello["protocol"], 4);
    let requested = op.event("node.pair.requested").await;
    let request_id = requested["payload"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(requested["payload"]["commands"], json!(["system.run"]));
    let n = op.request("node.list", json!({})).await["payload"]["nodes"][0].clone();
    assert_eq!(n["approvalState"], "pending-approval");
    assert_eq!(n["commands"], json!([]));
    let r = op
        .request(
            "node.invoke",
            json!({"nodeId":"node-host","command":"system.run","idempotencyKey":"v4-1"}),
        )
        .await;
    assert_eq!(r["error"]["code"], "UNAVAILABLE");
    assert_eq!(
        r["error"]["message"],
        "node pairing changed while invocation was active"
    );
    assert_eq!(r["error"]["details"]["code"], "PAIRING_CHANGED");
    let r = op
        .request(
            "node.invoke",
            json!({"nodeId":"node-host","command":"camera.snap","idempotencyKey":"v4-2"}),
        )
        .await;
    assert_eq!(
        r["error"]["message"],
        "node command not allowed: \"camera.snap\" is not in the allowlist for platform \"linux\""
    );
    // Approval makes the commands live without a reconnect, and the node hears of it.
    let a = op
        .request("node.pair.approve", json!({"requestId": request_id}))
        .await;
    assert_eq!(a["ok"], true, "{a}");
    let resolved = node.event("node.pair.resolved").await;
    assert_eq!(resolved["payload"]["decision"], "approved");
    let n = op.request("node.list", json!({})).await["payload"]["nodes"][0].clone();
    assert_eq!(n["approvalState"], "approved");
    assert_eq!(n["commands"], json!(["system.run"]));
    op.send_json(
        &json!({"type":"req","id":"inv","method":"node.invoke","params":
        {"nodeId":"node-host","command":"system.run","idempotencyKey":"v4-3"}}),
    )
    .await;
    let req = node.event("node.invoke.request").await;
    node.request("node.invoke.result", json!({"id": req["payload"]["id"], "nodeId": "node-host", "ok": true, "payload": {"done": true}}))
        .await;
    assert_eq!(
        op.response("inv").await["payload"]["payload"],
        json!({"done": true})
    );
    // A later connection with the same commands is approved at once.
    drop(node);
    let (_node2, _) = Client::connect(&gw.url(), v4_node_params(&["system.run"])).await;
    let n = loop {
        let list = op.request("node.list", json!({})).await;
        if let Some(n) = list["payload"]["nodes"]
            .as_array()
            .and_then(|a| a.first())
            .cloned()
        {
            break n;
        }
    };
    assert_eq!(n["approvalState"], "approved");
}
