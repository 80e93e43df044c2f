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
    // A v4 caller's system.run carries a run id, as the reference adds one.
    let sent: Value = serde_json::from_str(p["paramsJSON"].as_str().unwrap()).unwrap();
    assert_eq!(sent["argv"], json!(["echo", "hi"]));
    assert!(sent["runId"].is_string(), "{sent}");
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
    // `system.run` is a host command: a writer with pairing may not approve it (the
    // reference's `resolveNodePairApprovalScopes`), an admin may.
    let a = op
        .request("node.pair.approve", json!({"requestId": request_id}))
        .await;
    assert_eq!(a["error"]["code"], "FORBIDDEN", "{a}");
    assert_eq!(a["error"]["message"], "missing scope: operator.admin");
    assert_eq!(
        a["error"]["details"]["requiredScopes"],
        json!(["operator.pairing", "operator.admin"])
    );
    let (mut admin, _) =
        Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.admin"])).await;
    // Approval makes the commands live without a reconnect, and the node hears of it.
    let a = admin
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let n = loop {
        let list = op.request("node.list", json!({})).await;
        if let Some(n) = list["payload"]["nodes"]
            .as_array()
            .and_then(|a| a.first())
            .cloned()
        {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no node listed: {list}"
        );
        // Paced under the per-connection request limit.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(n["approvalState"], "approved");
}

/// A v4 node with a device identity (the node host's shape: `client.id` "node-host",
/// mode and role `node`), its proof signed over the connection's challenge.
struct NodeDevice(ed25519_dalek::SigningKey);

impl NodeDevice {
    fn id(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(self.0.verifying_key().to_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    async fn connect(&self, url: &str, commands: &[&str]) -> Client {
        use base64::Engine;
        use ed25519_dalek::Signer;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let mut c = Client::open(url).await;
        let nonce = c.frame().await["payload"]["nonce"]
            .as_str()
            .unwrap()
            .to_owned();
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id = self.id();
        let signed = format!("v3|{id}|node-host|node|node||{at}|{TOKEN}|{nonce}|linux|");
        let sig = b64(&self.0.sign(signed.as_bytes()).to_bytes());
        let mut p = v4_node_params(commands);
        p["scopes"] = json!([]);
        p["device"] = json!({"id": id, "publicKey": b64(&self.0.verifying_key().to_bytes()),
            "signature": sig, "signedAt": at, "nonce": nonce});
        c.send_json(&json!({"type":"req","id":"c1","method":"connect","params": p}))
            .await;
        let res = c.response("c1").await;
        assert_eq!(res["ok"], true, "{res}");
        c
    }
}

/// The node host's host stats event (`node.event`, `node.host.stats`).
fn host_stats(cpus: u64) -> Value {
    json!({"event": "node.host.stats", "payloadJSON": json!({"cpuCount": cpus,
        "loadAverage": [0.5, 0.25, 0.125], "memoryTotalBytes": 1000, "memoryFreeBytes": 400,
        "diskTotalBytes": 5000, "diskAvailableBytes": 2500}).to_string()})
}

/// Issue #26: what the real node host publishes after it connects, answered with the
/// shapes recorded from the v4 reference (openclaw 2026.9.6) with that node host.
#[tokio::test]
async fn a_v4_node_publishes_skills_tools_runner_inventory_and_stats_as_the_reference_answers() {
    let gw = Gateway::start();
    // Approving host commands (`system.run`) needs admin.
    let (mut op, _) = Client::connect(
        &gw.url(),
        v4_cli_params(TOKEN, &["operator.admin", "operator.pairing"]),
    )
    .await;
    let dev = NodeDevice(ed25519_dalek::SigningKey::from_bytes(&[26; 32]));
    let id = dev.id();
    let mut node = dev
        .connect(&gw.url(), &["system.run", "system.which"])
        .await;
    let request_id = op.event("node.pair.requested").await["payload"]["requestId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Before approval: the runner inventory waits (the reference's retry answer, naming
    // the command that approves), skills and tools are taken (tools need live commands).
    let inventory = json!({"protocolFeatures": ["node-worker-supervisor-v6"], "workerHost": {"enabled": false}});
    let r = node
        .request("node.runnerInventory.update", inventory.clone())
        .await;
    assert_eq!(r["error"]["code"], "UNAVAILABLE", "{r}");
    assert_eq!(
        r["error"]["message"],
        format!(
            "node capability surface is awaiting operator approval; run `openclaw nodes approve {request_id}` \
             (see `openclaw nodes pending`), then this node retries automatically"
        )
    );
    let skills = json!({"skills": [
        {"name": "deploy", "description": " Ship it ", "content": "# Deploy\n"},
        {"name": "alpha", "description": "First", "content": "a"},
        {"name": "alpha", "description": "Again", "content": "b"},
    ]});
    let r = node.request("node.skills.update", skills).await;
    assert_eq!(
        r["payload"],
        json!({"nodeId": id, "skills": [
            {"name": "alpha", "description": "First", "content": "a"},
            {"name": "deploy", "description": "Ship it", "content": "# Deploy\n"},
        ]}),
        "{r}"
    );
    let r = node
        .request(
            "node.skills.update",
            json!({"skills": [{"name": "Not A Name", "description": "d", "content": "c"}]}),
        )
        .await;
    assert_eq!(r["error"]["code"], "INVALID_REQUEST");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid node.skills.update params"),
        "{r}"
    );
    let tools = json!({"tools": [
        {"pluginId": "linux-node", "name": "which_bins", "description": "Find binaries", "command": "system.which"},
        {"pluginId": "linux-node", "name": "snap", "description": "Photo", "command": "camera.snap"},
    ]});
    let r = node.request("skills.bins", json!({})).await;
    assert_eq!(r["payload"], json!({"bins": []}), "{r}");
    let r = node.request("node.pluginTools.update", tools).await;
    assert_eq!(r["payload"], json!({"nodeId": id, "tools": []}), "{r}");
    // Host stats: kept, broadcast to readers, answered with the reference's event result.
    let r = node.request("node.event", host_stats(2)).await;
    assert_eq!(
        r["payload"],
        json!({"ok": true, "event": "node.host.stats", "handled": true, "reason": "updated"})
    );
    let ev = op.event("node.hostStats").await;
    assert_eq!(ev["payload"]["nodeId"], id.as_str());
    assert_eq!(ev["payload"]["hostStats"]["cpuCount"], 2);
    let bad = json!({"event": "node.host.stats", "payloadJSON": "{\"cpuCount\":0}"});
    let r = node.request("node.event", bad).await;
    assert_eq!(r["payload"]["handled"], false);
    assert_eq!(r["payload"]["reason"], "invalid_payload");
    // Operators may not publish for nodes.
    let r = op
        .request("node.skills.update", json!({"skills": []}))
        .await;
    assert_eq!(r["error"]["message"], "unauthorized role: operator");

    // Approval: the tools that run through approved commands appear, the inventory is taken.
    let a = op
        .request("node.pair.approve", json!({"requestId": request_id}))
        .await;
    assert_eq!(a["ok"], true, "{a}");
    let n = op.request("node.describe", json!({"nodeId": id})).await["payload"].clone();
    assert_eq!(n["approvalState"], "approved");
    assert_eq!(
        (n["clientId"].clone(), n["clientMode"].clone()),
        (json!("node-host"), json!("node"))
    );
    assert_eq!(n["sessionHost"], false);
    assert_eq!(n["hostStats"]["memoryFreeBytes"], 400);
    assert!(n["hostStats"]["updatedAtMs"].as_u64().unwrap() > 0);
    let shown = n["nodePluginTools"].as_array().unwrap();
    assert_eq!(shown.len(), 1, "{n}");
    assert_eq!(shown[0]["name"], "which_bins");
    assert_eq!(shown[0]["parameters"]["type"], "object");
    let r = node.request("node.runnerInventory.update", inventory).await;
    assert_eq!(r["payload"], json!({"nodeId": id}), "{r}");
    let r = node
        .request(
            "node.runnerInventory.update",
            json!({"protocolFeatures": ["x"]}),
        )
        .await;
    assert_eq!(r["error"]["message"], "invalid node runner inventory");
    let retired = json!({"protocolFeatures": ["node-worker-supervisor-v5"]});
    let r = node.request("node.runnerInventory.update", retired).await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("device worker node {id} requires an update")),
        "{r}"
    );

    // Progress: acknowledged as the reference acknowledges it for a WebSocket operator
    // (no stream consumer: ignored), and a later NODE_NOT_READY becomes a failure.
    op.send_json(&json!({"type":"req","id":"inv1","method":"node.invoke","params":
        {"nodeId": id, "command":"system.run","params":{"command":["echo","hi"]},"idempotencyKey":"p-1"}}))
        .await;
    let req = node.event("node.invoke.request").await["payload"].clone();
    assert_eq!(req["timeoutMs"], 30_000);
    let sent: Value = serde_json::from_str(req["paramsJSON"].as_str().unwrap()).unwrap();
    assert!(
        sent["runId"].as_str().is_some_and(|r| !r.is_empty()),
        "{sent}"
    );
    let progress = |node_id: &str, chunk: String| json!({"invokeId": req["id"], "nodeId": node_id, "seq": 0, "chunk": chunk});
    let r = node
        .request("node.invoke.progress", progress(&id, "hi\n".into()))
        .await;
    assert_eq!(r["payload"], json!({"ok": true, "ignored": true}), "{r}");
    let r = node
        .request("node.invoke.progress", progress("other", "x".into()))
        .await;
    assert_eq!(r["error"]["message"], "nodeId mismatch");
    let r = node
        .request("node.invoke.progress", progress(&id, "é".repeat(9000)))
        .await;
    assert_eq!(r["error"]["message"], "progress chunk too large");
    node.request(
        "node.invoke.result",
        json!({"id": req["id"], "nodeId": id, "ok": false,
        "error": {"code": "NODE_NOT_READY", "message": "not ready"}}),
    )
    .await;
    let r = op.response("inv1").await;
    assert_eq!(
        r["error"]["message"],
        "UNAVAILABLE: node reported not-ready after invocation progress"
    );
    // A node's refusal reaches the operator worded as the reference words it.
    op.send_json(&json!({"type":"req","id":"inv2","method":"node.invoke","params":
        {"nodeId": id, "command":"system.run","params":{"command":["echo","hi"]},"idempotencyKey":"p-2"}}))
        .await;
    let req = node.event("node.invoke.request").await["payload"].clone();
    node.request(
        "node.invoke.result",
        json!({"id": req["id"], "nodeId": id, "ok": false,
        "error": {"code": "SYSTEM_RUN_DENIED", "message": "SYSTEM_RUN_DISABLED: security=deny"}}),
    )
    .await;
    let r = op.response("inv2").await;
    assert_eq!(r["error"]["code"], "UNAVAILABLE");
    assert_eq!(
        r["error"]["message"],
        "SYSTEM_RUN_DENIED: SYSTEM_RUN_DISABLED: security=deny"
    );
    assert_eq!(r["error"]["details"]["nodeCommandDispatched"], true);
    let r = op
        .request(
            "node.invoke",
            json!({"nodeId": id, "command": "system.execApprovals.get", "idempotencyKey": "p-3"}),
        )
        .await;
    assert_eq!(
        r["error"]["message"],
        "node.invoke does not allow system.execApprovals.*; use exec.approvals.node.*"
    );

    // Gone: listed as it left (paired, disconnected, its stats and approved commands).
    drop(node);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let n = loop {
        let list = op.request("node.list", json!({})).await;
        let n = list["payload"]["nodes"][0].clone();
        if n["connected"] == false {
            break n;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still connected: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(n["paired"], true);
    assert_eq!(n["commands"], json!(["system.run", "system.which"]));
    assert_eq!(n["hostStats"]["cpuCount"], 2);
    assert!(n["lastDisconnectedAtMs"].as_u64().is_some(), "{n}");
    assert!(n.get("nodePluginTools").is_none(), "{n}");
    let r = op
        .request(
            "node.invoke",
            json!({"nodeId": id, "command": "system.which", "idempotencyKey": "p-4"}),
        )
        .await;
    assert_eq!(r["error"]["message"], "node not connected");
    assert_eq!(r["error"]["details"]["code"], "NOT_CONNECTED");
    assert_eq!(r["error"]["details"]["nodeCommandDispatched"], false);
}

/// Issue #26 point 3: a v3 node and a v4 node live on one gateway at once, each invoked
/// by a v3 and a v4 operator.
#[tokio::test]
async fn a_v3_node_and_a_v4_node_are_live_at_once_each_invoked_by_both_generations() {
    let gw = Gateway::start();
    // Approving `system.which` (a host command) needs admin, as at the reference.
    let (mut op4, _) = Client::connect(
        &gw.url(),
        v4_cli_params(TOKEN, &["operator.admin", "operator.pairing"]),
    )
    .await;
    let (mut op3, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    // The v3 node is known by its client id, the v4 one by its device id.
    let (mut node3, h3) = Client::connect(&gw.url(), node_params(&["system.which"])).await;
    assert_eq!(h3["protocol"], 3);
    let dev = NodeDevice(ed25519_dalek::SigningKey::from_bytes(&[4; 32]));
    let v4_id = dev.id();
    let mut node4 = dev.connect(&gw.url(), &["system.which"]).await;
    let rid = op4.event("node.pair.requested").await["payload"]["requestId"].clone();
    let a = op4
        .request("node.pair.approve", json!({"requestId": rid}))
        .await;
    assert_eq!(a["ok"], true, "{a}");
    let list = op3.request("node.list", json!({})).await;
    let live: Vec<_> = list["payload"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["connected"] == true)
        .map(|n| n["nodeId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(live.len(), 2, "{list}");
    // The v4-only fields stay out of a v3 operator's list.
    assert!(
        list["payload"]["nodes"][0].get("sessionHost").is_none(),
        "{list}"
    );
    // The v4-only node methods are unknown to a v3 node, as at the v3 reference.
    let r = node3
        .request("node.skills.update", json!({"skills": []}))
        .await;
    assert_eq!(r["error"]["message"], "unauthorized role: node");
    let mut n = 0;
    for (node_id, node) in [("node-host", &mut node3), (v4_id.as_str(), &mut node4)] {
        for op in [&mut op3, &mut op4] {
            n += 1;
            let key = format!("both-{n}");
            op.send_json(&json!({"type":"req","id": key,"method":"node.invoke","params":
                {"nodeId": node_id, "command":"system.which","params":{"bins":["sh"]},"idempotencyKey": key}}))
                .await;
            let req = node.event("node.invoke.request").await["payload"].clone();
            let answer = json!({"bins": {"sh": format!("/bin/sh-{n}")}}).to_string();
            let r = node
                .request(
                    "node.invoke.result",
                    json!({"id": req["id"], "nodeId": node_id, "ok": true, "payloadJSON": answer}),
                )
                .await;
            assert_eq!(r["payload"], json!({"ok": true}));
            let res = op.response(&key).await;
            assert_eq!(res["payload"]["nodeId"], node_id, "{res}");
            assert_eq!(
                res["payload"]["payload"]["bins"]["sh"],
                format!("/bin/sh-{n}")
            );
        }
    }
}

/// Issue #26: a v4 node gets OpenClaw 2026.9's command policy (its
/// `docs/nodes/command-policy.md`): on Linux the node host may name its host commands in
/// the pairing request, dangerous ones need `gateway.nodes.commands.allow`, `deny` wins,
/// private controls never pass, and `browser.proxy` needs an admin to invoke.
#[tokio::test]
async fn v4_nodes_get_the_openclaw_command_policy_with_the_config_allow_and_deny_lists() {
    let state = std::sync::Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(
        state.path().join("config.json5"),
        r#"{ gateway: { nodes: { commands: { allow: ["camera.snap"], deny: ["fs.listDir"] } } } }"#,
    )
    .unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(state),
        ..Default::default()
    });
    let (mut admin, _) =
        Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.admin"])).await;
    let (mut writer, _) = Client::connect(
        &gw.url(),
        v4_cli_params(TOKEN, &["operator.write", "operator.pairing"]),
    )
    .await;
    let declared = [
        "system.run",
        "system.notify",
        "browser.proxy",
        "camera.snap",
        "camera.clip",
        "fs.listDir",
        "worker.launch.v1",
        "canvas.present",
    ];
    let (mut node, _) = Client::connect(&gw.url(), v4_node_params(&declared)).await;
    let requested = admin.event("node.pair.requested").await;
    assert_eq!(
        requested["payload"]["commands"],
        json!([
            "browser.proxy",
            "camera.snap",
            "system.notify",
            "system.run"
        ]),
        "linux: host commands, the opted-in camera.snap; not camera.clip (dangerous), \
         fs.listDir (denied), worker.* (private) or canvas.* (macOS only)"
    );
    let rid = requested["payload"]["requestId"].clone();
    let a = admin
        .request("node.pair.approve", json!({"requestId": rid}))
        .await;
    assert_eq!(a["ok"], true, "{a}");
    let invoke = |command: &str, key: &str| json!({"nodeId": "node-host", "command": command, "idempotencyKey": key});
    let r = writer
        .request("node.invoke", invoke("worker.launch.v1", "p1"))
        .await;
    assert_eq!(
        r["error"]["message"],
        "node.invoke does not allow private node controls"
    );
    let r = writer
        .request("node.invoke", invoke("browser.proxy", "p2"))
        .await;
    assert_eq!(r["error"]["code"], "FORBIDDEN");
    assert_eq!(r["error"]["message"], "missing scope: operator.admin");
    let r = writer
        .request("node.invoke", invoke("camera.clip", "p3"))
        .await;
    assert_eq!(
        r["error"]["message"],
        "node command not allowed: \"camera.clip\" is not in the allowlist for platform \"linux\""
    );
    let r = writer
        .request(
            "node.invoke",
            json!({"nodeId": "node-host", "command": "browser.proxy", "idempotencyKey": "p4",
                   "params": {"method": "DELETE", "path": "/profiles/work"}}),
        )
        .await;
    assert_eq!(
        r["error"]["message"],
        "node.invoke cannot mutate persistent browser profiles via browser.proxy"
    );
    // An approved, allowed command reaches the node: the admin's browser.proxy, the
    // writer's opted-in camera.snap.
    for (op, command, key) in [
        (&mut admin, "browser.proxy", "p5"),
        (&mut writer, "camera.snap", "p6"),
    ] {
        op.send_json(&json!({"type": "req", "id": key, "method": "node.invoke", "params": invoke(command, key)}))
            .await;
        let req = node.event("node.invoke.request").await;
        assert_eq!(req["payload"]["command"], command);
        node.request(
            "node.invoke.result",
            json!({"id": req["payload"]["id"], "nodeId": "node-host", "ok": true, "payload": {"ran": command}}),
        )
        .await;
        let res = op.response(key).await;
        assert_eq!(res["payload"]["payload"]["ran"], command, "{res}");
    }
}
