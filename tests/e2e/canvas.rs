//! Issue #22, the canvas host, against the real binary. The shapes are the reference
//! gateways' as found on them (2026-12-03):
//!
//! * v4 (OpenClaw 2026.9.6): `hello-ok.pluginSurfaceUrls = {canvas:
//!   "http://<Host>/__openclaw__/cap/<24 base64url chars>"}` for every operator; files at
//!   `/__openclaw__/canvas/…`, A2UI at `/__openclaw__/a2ui/…`, authorized by the gateway
//!   token as a bearer or the capability (path prefix `/__openclaw__/cap/<cap>/…` or
//!   `?oc_cap=`), else `401 {"error":{"message":"Unauthorized","type":"unauthorized"}}`;
//!   `plugin.surface.refresh {surface, observedUrl?}` → `{surface, pluginSurfaceUrls,
//!   expiresAtMs}` rotating (the old capability is dead at once), a stale `observedUrl`
//!   answered the current URL without `expiresAtMs`; `surface required`; `<surface>
//!   plugin surface unavailable`; the capability dies with its connection.
//! * v3 (Clawdbot 2026.1): `hello-ok.canvasHostUrl` is an origin (no path) the client
//!   appends `/__clawdbot__/canvas/` or `/__clawdbot__/a2ui/` to. Switchboard serves it
//!   on its own port (`gateway.canvasHost.port`, default 18793), as the issue asks.

use serde_json::json;

use crate::harness::*;

/// The gateway's HTTP port.
fn gw_port(gw: &Gateway) -> u16 {
    gw.url().rsplit(':').next().unwrap().parse().unwrap()
}

/// The capability of a `pluginSurfaceUrls.canvas` URL.
fn cap_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_owned()
}

/// A folder outside the canvas with a secret in it, and links to it from inside.
fn plant(canvas: &std::path::Path) -> tempfile::TempDir {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "the secret").unwrap();
    std::fs::create_dir_all(canvas.join("sub")).unwrap();
    std::fs::create_dir_all(canvas.join("empty")).unwrap();
    std::fs::write(canvas.join("sub/page.html"), "<h1>sub page</h1>").unwrap();
    std::fs::write(canvas.join("style.css"), "h1{}").unwrap();
    std::fs::write(canvas.join("data.json"), "{}").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), canvas.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(outside.path(), canvas.join("linkdir")).unwrap();
    outside
}

/// Every way out of the folder we know of, and what must come back: never the secret,
/// never a listing, never a file of the state directory.
fn assert_no_way_out(port: u16, prefix: &str, auth: &[(&str, &str)]) {
    for target in [
        format!("{prefix}/../config.json5"),
        format!("{prefix}/sub/../../switchboard.sqlite"),
        format!("{prefix}/%2e%2e/switchboard.sqlite"),
        format!("{prefix}/%2E%2E%2Fswitchboard.sqlite"),
        format!("{prefix}/sub/..%2f..%2fswitchboard.sqlite"),
        format!("{prefix}/link.txt"),
        format!("{prefix}/linkdir/secret.txt"),
        format!("{prefix}//etc/passwd"),
        format!("{prefix}/%2Fetc%2Fpasswd"),
        format!("{prefix}/sub%00.html"),
        format!("{prefix}/sub\\..\\..\\config.json5"),
        format!("{prefix}/empty/"),
    ] {
        let a = http_raw(port, "GET", &target, auth);
        assert!(
            a.status == 400 || a.status == 404,
            "{target}: {} {}",
            a.status,
            a.text()
        );
        let body = a.text();
        assert!(
            !body.contains("the secret") && !body.contains("root:") && !body.contains("SQLite"),
            "{target}: {body}"
        );
        assert!(
            !body.contains("sub/") && !body.contains("page.html"),
            "no listing: {target}"
        );
    }
}

#[tokio::test]
async fn v4_canvas_is_served_read_only_with_the_connections_capability_or_the_token() {
    let gw = Gateway::start();
    let port = gw_port(&gw);
    let canvas = gw.state.path().join("canvas");
    assert!(
        canvas.join("index.html").is_file(),
        "a fresh canvas starts with its default page"
    );
    let _outside = plant(&canvas);
    let (mut op, hello) =
        Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    assert!(
        hello.get("canvasHostUrl").is_none(),
        "v4 has no canvasHostUrl"
    );
    let url = hello["pluginSurfaceUrls"]["canvas"]
        .as_str()
        .unwrap()
        .to_owned();
    let cap = cap_of(&url);
    assert_eq!(
        url,
        format!("http://127.0.0.1:{port}/__openclaw__/cap/{cap}")
    );
    assert_eq!(cap.len(), 24);
    assert!(
        cap.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    // Without credentials: the reference's 401.
    let none = http_get_path(port, "/__openclaw__/canvas/sub/page.html");
    assert_eq!(none.status, 401);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&none.body).unwrap(),
        json!({"error": {"message": "Unauthorized", "type": "unauthorized"}})
    );
    assert_eq!(none.header("x-content-type-options"), Some("nosniff"));
    let wrong = http_get_path(
        port,
        "/__openclaw__/cap/AAAAAAAAAAAAAAAAAAAAAAAA/__openclaw__/canvas/sub/page.html",
    );
    assert_eq!(wrong.status, 401);
    for bad in [
        "/__openclaw__/cap/",
        "/__openclaw__/cap//x",
        &format!("/__openclaw__/cap/{cap}"),
    ] {
        assert_eq!(http_get_path(port, bad).status, 401, "{bad}");
    }

    // With the capability (path prefix or query) or the token: the file, with its type
    // and the sandboxing policy.
    let by_prefix = http_get_path(
        port,
        &format!("/__openclaw__/cap/{cap}/__openclaw__/canvas/sub/page.html"),
    );
    assert_eq!(by_prefix.status, 200, "{}", by_prefix.text());
    assert_eq!(by_prefix.text(), "<h1>sub page</h1>");
    assert_eq!(
        by_prefix.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = by_prefix.header("content-security-policy").unwrap();
    assert!(
        csp.contains("sandbox allow-scripts") && csp.contains("connect-src 'none'"),
        "{csp}"
    );
    assert_eq!(by_prefix.header("referrer-policy"), Some("no-referrer"));
    assert!(by_prefix.header("permissions-policy").is_some());
    assert_eq!(by_prefix.header("cache-control"), Some("no-store"));
    let by_query = http_get_path(
        port,
        &format!("/__openclaw__/canvas/style.css?oc_cap={cap}"),
    );
    assert_eq!(by_query.status, 200);
    assert_eq!(
        by_query.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    let bearer = format!("Bearer {TOKEN}");
    let by_token = http_raw(
        port,
        "GET",
        "/__openclaw__/canvas/data.json",
        &[("Authorization", &bearer)],
    );
    assert_eq!(by_token.status, 200);
    assert_eq!(by_token.header("content-type"), Some("application/json"));
    let index = http_raw(
        port,
        "GET",
        "/__openclaw__/canvas/",
        &[("Authorization", &bearer)],
    );
    assert_eq!(index.status, 200);
    assert!(
        index.text().contains("Switchboard canvas"),
        "the folder's index.html"
    );
    let head = http_raw(
        port,
        "HEAD",
        "/__openclaw__/canvas/data.json",
        &[("Authorization", &bearer)],
    );
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), Some("2"));
    let post = http_raw(
        port,
        "POST",
        "/__openclaw__/canvas/data.json",
        &[("Authorization", &bearer)],
    );
    assert_eq!(post.status, 405, "read-only");
    assert_no_way_out(port, "/__openclaw__/canvas", &[("Authorization", &bearer)]);
    assert_no_way_out(
        port,
        &format!("/__openclaw__/cap/{cap}/__openclaw__/canvas"),
        &[],
    );

    // The A2UI host page and its renderer, under the same rules.
    assert_eq!(http_get_path(port, "/__openclaw__/a2ui/").status, 401);
    let page = http_get_path(port, &format!("/__openclaw__/cap/{cap}/__openclaw__/a2ui/"));
    assert_eq!(page.status, 200);
    assert!(page.text().contains("a2ui.js"));
    let a2ui_csp = page.header("content-security-policy").unwrap();
    assert!(
        a2ui_csp.starts_with("default-src 'none'; script-src 'self';"),
        "{a2ui_csp}"
    );
    let js = http_get_path(
        port,
        &format!("/__openclaw__/a2ui/a2ui.bundle.js?oc_cap={cap}"),
    );
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js.text().contains("applyMessages"));

    // Refresh: rotation kills the old capability at once; a stale observer gets the
    // current URL unchanged; the reference's errors.
    let r = op
        .request("plugin.surface.refresh", json!({"surface": "canvas"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let fresh = r["payload"]["pluginSurfaceUrls"]["canvas"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(r["payload"]["surface"], "canvas");
    assert!(r["payload"]["expiresAtMs"].as_u64().unwrap() > 0);
    assert_ne!(fresh, url);
    let page_of = |cap: &str| {
        http_get_path(
            port,
            &format!("/__openclaw__/cap/{cap}/__openclaw__/canvas/sub/page.html"),
        )
        .status
    };
    assert_eq!(page_of(&cap), 401, "rotated away");
    assert_eq!(page_of(&cap_of(&fresh)), 200);
    let stale = op
        .request(
            "plugin.surface.refresh",
            json!({"surface": "canvas", "observedUrl": url}),
        )
        .await;
    assert_eq!(
        stale["payload"],
        json!({"surface": "canvas", "pluginSurfaceUrls": {"canvas": fresh}}),
        "a stale caller gets the current URL, not a rotation"
    );
    let missing = op
        .request("plugin.surface.refresh", json!({"surface": " "}))
        .await;
    assert_eq!(missing["error"]["code"], "INVALID_REQUEST");
    assert_eq!(missing["error"]["message"], "surface required");
    let nope = op
        .request("plugin.surface.refresh", json!({"surface": "nope"}))
        .await;
    assert_eq!(nope["error"]["code"], "UNAVAILABLE");
    assert_eq!(nope["error"]["message"], "nope plugin surface unavailable");
    let as_node = op
        .request("node.pluginSurface.refresh", json!({"surface": "canvas"}))
        .await;
    assert_eq!(as_node["error"]["message"], "unauthorized role: operator");

    // Each connection has its own; closing one kills only its own.
    let (other, hello2) =
        Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    let other_cap = cap_of(hello2["pluginSurfaceUrls"]["canvas"].as_str().unwrap());
    assert_ne!(other_cap, cap_of(&fresh));
    drop(op);
    let deadline = std::time::Instant::now() + WAIT;
    while page_of(&cap_of(&fresh)) != 401 {
        assert!(
            std::time::Instant::now() < deadline,
            "the capability outlived its connection"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(page_of(&other_cap), 200);
    drop(other);
}

#[tokio::test]
async fn v3_canvas_host_url_names_its_own_port_which_serves_the_same_folder() {
    let gw = Gateway::start();
    let canvas = gw.state.path().join("canvas");
    let _outside = plant(&canvas);
    let (_c, hello) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    assert!(
        hello.get("pluginSurfaceUrls").is_none(),
        "v3 has no pluginSurfaceUrls"
    );
    let url = hello["canvasHostUrl"].as_str().unwrap().to_owned();
    let canvas_port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("an origin without a path for a local client: {url}"))
        .parse()
        .unwrap();
    assert_ne!(canvas_port, gw_port(&gw), "its own port");
    gw.wait_log("the canvas port's line", |l| {
        l.contains(&format!(
            "v3 at /__clawdbot__/canvas/ on port {canvas_port}"
        ))
    });

    // What a v3 client appends: served to a loopback client as the reference serves.
    let index = http_get_path(canvas_port, "/__clawdbot__/canvas/");
    assert_eq!(index.status, 200, "{}", index.text());
    assert!(index.text().contains("Switchboard canvas"));
    assert!(
        index
            .header("content-security-policy")
            .unwrap()
            .contains("sandbox")
    );
    let page = http_get_path(canvas_port, "/__clawdbot__/canvas/sub/page.html");
    assert_eq!(page.text(), "<h1>sub page</h1>");
    let a2ui = http_get_path(canvas_port, "/__clawdbot__/a2ui/");
    assert_eq!(a2ui.status, 200);
    assert!(a2ui.text().contains("a2ui.js"));
    assert_no_way_out(canvas_port, "/__clawdbot__/canvas", &[]);
    // Nothing else on that port: no v4 paths, no WebSocket, no writes.
    assert_eq!(
        http_get_path(canvas_port, "/__openclaw__/canvas/").status,
        404
    );
    assert_eq!(http_get_path(canvas_port, "/").status, 404);
    let upgrade = http_raw(
        canvas_port,
        "GET",
        "/__clawdbot__/canvas/",
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
    );
    assert_ne!(upgrade.status, 101);
    assert_eq!(
        http_raw(canvas_port, "PUT", "/__clawdbot__/canvas/x.html", &[]).status,
        405
    );
    // The v3 paths are not on the gateway's own port.
    assert_ne!(
        http_get_path(gw_port(&gw), "/__clawdbot__/canvas/sub/page.html").text(),
        "<h1>sub page</h1>"
    );

    // A request a proxy forwarded is not a local one: it needs the token (or the
    // capability a non-local client's canvasHostUrl carries).
    let proxied = http_raw(
        canvas_port,
        "GET",
        "/__clawdbot__/canvas/sub/page.html",
        &[("X-Forwarded-For", "203.0.113.9")],
    );
    assert_eq!(proxied.status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let with_token = http_raw(
        canvas_port,
        "GET",
        "/__clawdbot__/canvas/sub/page.html",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("Authorization", &bearer),
        ],
    );
    assert_eq!(with_token.status, 200);
}

#[tokio::test]
async fn a_turned_off_canvas_names_no_url_and_serves_nothing() {
    let state = std::sync::Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(
        state.path().join("config.json5"),
        r#"{ gateway: { canvasHost: { enabled: false } } }"#,
    )
    .unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(state),
        ..Default::default()
    });
    let (_a, v4) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    assert!(v4.get("pluginSurfaceUrls").is_none(), "{v4}");
    let (mut b, v3) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    assert!(v3.get("canvasHostUrl").is_none());
    assert!(!gw.state.path().join("canvas").exists(), "no folder made");
    let bearer = format!("Bearer {TOKEN}");
    let a = http_raw(
        gw_port(&gw),
        "GET",
        "/__openclaw__/canvas/",
        &[("Authorization", &bearer)],
    );
    assert_eq!(a.status, 404);
    assert!(
        a.text().contains("gateway.canvasHost.enabled"),
        "{}",
        a.text()
    );
    let r = b.request("status", json!({})).await;
    assert_eq!(r["ok"], true);
}

fn canvas_node(version: u64, platform: &str, commands: &[&str]) -> serde_json::Value {
    json!({
        "minProtocol": version, "maxProtocol": version,
        "client": {"id": "node-host", "version": "1.0.0", "platform": platform, "mode": "node"},
        "role": "node",
        "caps": ["canvas"],
        "commands": commands,
        "auth": {"token": TOKEN},
    })
}

/// Invokes `command` on node `node-host` and answers it as the node: what the node got.
async fn invoke_through(
    op: &mut Client,
    node: &mut Client,
    command: &str,
    params: serde_json::Value,
    key: &str,
) -> (serde_json::Value, serde_json::Value) {
    op.send_json(
        &json!({"type": "req", "id": key, "method": "node.invoke", "params":
        {"nodeId": "node-host", "command": command, "params": params, "idempotencyKey": key}}),
    )
    .await;
    let req = node.event("node.invoke.request").await;
    let p = req["payload"].clone();
    node.request(
        "node.invoke.result",
        json!({"id": p["id"], "nodeId": "node-host", "ok": true, "payloadJSON": "{\"ok\":true}"}),
    )
    .await;
    (p, op.response(key).await)
}

/// Operators drive a node's canvas with `node.invoke`, as each reference's command
/// policy allows: a v3 iOS node takes every `canvas.*` and `canvas.a2ui.*` command with
/// the reference CLI's params; a Linux node none; a v4 macOS node `canvas.present`,
/// `canvas.hide`, `canvas.navigate` once approved (and then its hello carries the canvas
/// URL), never `canvas.eval` or A2UI (v4 has none).
#[tokio::test]
async fn operators_drive_a_nodes_canvas_within_each_generations_command_policy() {
    let gw = Gateway::start();
    let all = [
        "canvas.present",
        "canvas.hide",
        "canvas.navigate",
        "canvas.eval",
        "canvas.snapshot",
        "canvas.a2ui.push",
        "canvas.a2ui.pushJSONL",
        "canvas.a2ui.reset",
    ];
    let (mut node, hello) = Client::connect(&gw.url(), canvas_node(3, "ios", &all)).await;
    let base = hello["canvasHostUrl"].as_str().unwrap().to_owned();
    let (mut op, _) = Client::connect(
        &gw.url(),
        v4_cli_params(TOKEN, &["operator.write", "operator.read"]),
    )
    .await;
    let jsonl = "{\"surfaceUpdate\":{\"surfaceId\":\"main\",\"components\":[{\"id\":\"root\",\"component\":{\"Text\":{\"text\":{\"literalString\":\"Hello A2UI\"}}}}]}}\n{\"beginRendering\":{\"surfaceId\":\"main\",\"root\":\"root\"}}";
    let cases = [
        (
            "canvas.present",
            json!({"url": format!("{base}/__clawdbot__/canvas/"), "placement": {"x": 1, "y": 2, "width": 300, "height": 200}}),
        ),
        (
            "canvas.navigate",
            json!({"url": format!("{base}/__clawdbot__/a2ui/")}),
        ),
        ("canvas.eval", json!({"javaScript": "document.title"})),
        (
            "canvas.snapshot",
            json!({"format": "png", "maxWidth": 800, "quality": 0.8}),
        ),
        ("canvas.a2ui.pushJSONL", json!({"jsonl": jsonl})),
        (
            "canvas.a2ui.push",
            json!({"messages": [{"beginRendering": {"surfaceId": "main", "root": "root"}}]}),
        ),
        ("canvas.a2ui.reset", json!({})),
        ("canvas.hide", json!({})),
    ];
    for (i, (command, params)) in cases.iter().enumerate() {
        let (got, res) = invoke_through(
            &mut op,
            &mut node,
            command,
            params.clone(),
            &format!("c{i}"),
        )
        .await;
        assert_eq!(got["command"], *command);
        let sent: serde_json::Value =
            serde_json::from_str(got["paramsJSON"].as_str().unwrap_or("null")).unwrap();
        assert_eq!(
            &sent, params,
            "{command}: the node gets the operator's params"
        );
        assert_eq!(res["ok"], true, "{command}: {res}");
        assert_eq!(res["payload"]["payload"], json!({"ok": true}), "{command}");
    }
    drop(node);

    let (_linux, _) = Client::connect(&gw.url(), canvas_node(3, "linux", &all)).await;
    let r = op
        .request("node.invoke", json!({"nodeId": "node-host", "command": "canvas.present", "params": {}, "idempotencyKey": "l1"}))
        .await;
    assert_eq!(
        r["error"]["message"],
        "node command not allowed: \"canvas.present\" is not in the allowlist for platform \"linux\"",
        "{r}"
    );
    drop(_linux);

    // v4: a macOS panel waits for approval, then gets the three panel commands and, on
    // its next connection, the canvas URL.
    let (mut admin, _) =
        Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.admin"])).await;
    let (mac, first) = Client::connect(&gw.url(), canvas_node(4, "macos", &all)).await;
    assert!(
        first.get("pluginSurfaceUrls").is_none(),
        "not before approval: {first}"
    );
    let requested = admin.event("node.pair.requested").await;
    assert_eq!(
        requested["payload"]["commands"],
        json!(["canvas.hide", "canvas.navigate", "canvas.present"]),
        "the reference's macOS canvas defaults: no eval, snapshot or A2UI in v4"
    );
    let a = admin
        .request(
            "node.pair.approve",
            json!({"requestId": requested["payload"]["requestId"]}),
        )
        .await;
    assert_eq!(a["ok"], true, "{a}");
    drop(mac);
    let (mut mac, again) = Client::connect(&gw.url(), canvas_node(4, "macos", &all)).await;
    let url = again["pluginSurfaceUrls"]["canvas"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(url.contains("/__openclaw__/cap/"), "approved: {again}");
    let ok = mac
        .request(
            "node.pluginSurface.refresh",
            json!({"surface": "canvas", "observedUrl": url}),
        )
        .await;
    assert_ne!(
        ok["payload"]["pluginSurfaceUrls"]["canvas"],
        json!(url),
        "{ok}"
    );
    let (got, res) = invoke_through(
        &mut op,
        &mut mac,
        "canvas.present",
        json!({"url": "/__openclaw__/canvas/index.html"}),
        "m1",
    )
    .await;
    assert_eq!(got["command"], "canvas.present");
    assert_eq!(res["ok"], true, "{res}");
    let r = op
        .request("node.invoke", json!({"nodeId": "node-host", "command": "canvas.eval", "params": {"javaScript": "1"}, "idempotencyKey": "m2"}))
        .await;
    assert_eq!(r["ok"], false, "{r}");
}

/// The A2UI host page renders A2UI v0.8 in a real browser as a node's panel would drive
/// it: `clawdbotA2UI.applyMessages` (the name the v3 apps call) with the reference CLI's
/// JSONL, a data-bound text, a button whose press reaches the native bridge as the
/// reference's `userAction`, `deleteSurface` and `reset`; markup in a message stays text.
#[tokio::test]
async fn the_a2ui_host_page_renders_v0_8_surfaces_in_a_browser() {
    let Some(mut b) = crate::browser::Browser::launch().await else {
        return;
    };
    let gw = Gateway::start();
    let (_c, hello) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let base = hello["canvasHostUrl"].as_str().unwrap().to_owned();
    b.goto(&format!("{base}/__clawdbot__/a2ui/")).await;
    b.wait_for("the renderer", "typeof globalThis.clawdbotA2UI === 'object' && globalThis.openclawA2UI === globalThis.clawdbotA2UI")
        .await;
    // A stand-in for the apps' native bridge (WKWebView's message handler).
    b.eval("globalThis.sent = []; globalThis.webkit = {messageHandlers: {clawdbotCanvasA2UIAction: {postMessage: (m) => sent.push(m)}}}; true")
        .await;
    let jsonl = r#"{"surfaceUpdate":{"surfaceId":"main","components":[{"id":"root","component":{"Column":{"children":{"explicitList":["title","who","go"]}}}},{"id":"title","component":{"Text":{"text":{"literalString":"Hello A2UI <b>not bold</b>"},"usageHint":"h1"}}},{"id":"who","component":{"Text":{"text":{"path":"/user/name"}}}},{"id":"label","component":{"Text":{"text":{"literalString":"Go"}}}},{"id":"go","component":{"Button":{"child":"label","action":{"name":"start","context":[{"key":"who","value":{"path":"/user/name"}}]}}}}]}}
{"dataModelUpdate":{"surfaceId":"main","path":"/user","contents":[{"key":"name","valueString":"Ada"}]}}
{"beginRendering":{"surfaceId":"main","root":"root"}}"#;
    let r = b
        .eval(&format!(
            "JSON.stringify(clawdbotA2UI.applyMessages({}))",
            serde_json::to_string(jsonl).unwrap()
        ))
        .await;
    assert_eq!(r, json!("{\"ok\":true,\"surfaces\":[\"main\"]}"));
    let shown = b
        .eval("document.querySelector('[data-surface-id=main]').innerText")
        .await;
    let shown = shown.as_str().unwrap();
    assert!(
        shown.contains("Hello A2UI <b>not bold</b>"),
        "markup stays text: {shown}"
    );
    assert!(shown.contains("Ada"), "bound to the data model: {shown}");
    assert_eq!(
        b.eval("document.querySelectorAll('b').length").await,
        json!(0)
    );
    b.screenshot("a2ui-1-rendered").await;
    b.click("button.a2ui-button").await;
    let action = b
        .wait_for("the user action", "sent.length && JSON.stringify(sent[0])")
        .await;
    let action: serde_json::Value = serde_json::from_str(action.as_str().unwrap()).unwrap();
    let ua = &action["userAction"];
    assert_eq!(ua["name"], "start");
    assert_eq!(ua["surfaceId"], "main");
    assert_eq!(ua["sourceComponentId"], "go");
    assert_eq!(ua["context"], json!({"who": "Ada"}));
    assert!(ua["timestamp"].as_str().unwrap().ends_with('Z'));
    // A data update re-renders in place; an unknown message is a clear error.
    b.eval(r#"clawdbotA2UI.applyMessages([{dataModelUpdate:{surfaceId:"main",path:"/user",contents:[{key:"name",valueString:"Grace"}]}}]).ok"#).await;
    assert!(
        b.eval("document.body.innerText")
            .await
            .as_str()
            .unwrap()
            .contains("Grace")
    );
    let bad = b
        .eval(r#"JSON.stringify(clawdbotA2UI.applyMessages([{createSurface:{surfaceId:"x"}}]))"#)
        .await;
    assert!(
        bad.as_str()
            .unwrap()
            .contains("unknown A2UI message: createSurface"),
        "{bad}"
    );
    b.eval(r#"clawdbotA2UI.applyMessages([{deleteSurface:{surfaceId:"main"}}]).ok"#)
        .await;
    assert_eq!(
        b.eval("document.querySelectorAll('.a2ui-surface').length")
            .await,
        json!(0)
    );
    b.eval(r#"clawdbotA2UI.applyMessages([{surfaceUpdate:{surfaceId:"s2",components:[{id:"r",component:{Text:{text:{literalString:"two"}}}}]}},{beginRendering:{surfaceId:"s2",root:"r"}}]).ok"#).await;
    assert_eq!(
        b.eval("JSON.stringify(clawdbotA2UI.reset())").await,
        json!("{\"ok\":true}")
    );
    assert_eq!(b.eval("clawdbotA2UI.getSurfaces().length").await, json!(0));
    // The page's policy let its own script run and nothing else was needed.
    let errors = b
        .eval("document.querySelectorAll('.a2ui-unknown').length")
        .await;
    assert_eq!(errors, json!(0));
}

async fn agent_turn(c: &mut Client, message: &str, key: &str) -> serde_json::Value {
    let id = format!("agent-{key}");
    c.send_json(&json!({"type": "req", "id": id, "method": "agent",
        "params": {"message": message, "idempotencyKey": key}}))
        .await;
    let ack = c.response(&id).await;
    assert_eq!(ack["ok"], true, "{ack}");
    c.response(&id).await
}

/// Point 2: the agent writes canvas files and pushes A2UI through tools the supervisor
/// offers and carries out (the worker only asks). The model is a local stand-in of
/// OpenAI's streaming chat completions that calls a tool the documented way; the
/// answer it gets back is what the supervisor did, or why not.
#[tokio::test]
async fn the_agent_writes_canvas_files_and_pushes_a2ui_to_a_node_through_its_tools() {
    let api = crate::standin_openai::start();
    let gw = Gateway::start_with(GatewayOpts {
        env: vec![
            ("SWITCHBOARD_AGENT_BASE_URL".into(), api.base_url.clone()),
            ("SWITCHBOARD_AGENT_API_KEY".into(), "sk-test-standin".into()),
        ],
        ..Default::default()
    });
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;

    let write = json!({"path": "agent/hello.html", "content": "<h1>from the agent</h1>"});
    let fin = agent_turn(&mut c, &format!("please-tool canvas_write {write}"), "t1").await;
    let text = fin["payload"]["result"]["payloads"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        text,
        "tool said: wrote agent/hello.html (23 bytes); it is served at /__openclaw__/canvas/agent/hello.html (v4) and /__clawdbot__/canvas/agent/hello.html (v3)",
        "{fin}"
    );
    assert_eq!(
        std::fs::read_to_string(gw.state.path().join("canvas/agent/hello.html")).unwrap(),
        "<h1>from the agent</h1>"
    );
    // The model was offered the tools, and got the outcome as the tool's message.
    let first: serde_json::Value = serde_json::from_str(&api.seen.all()[0].1).unwrap();
    let names: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["canvas_write", "canvas_a2ui_push", "canvas_a2ui_reset"]
    );
    let second: serde_json::Value = serde_json::from_str(&api.seen.all()[1].1).unwrap();
    let msgs = second["messages"].as_array().unwrap();
    assert_eq!(
        msgs[msgs.len() - 2]["tool_calls"][0]["function"]["arguments"],
        write.to_string()
    );
    assert_eq!(msgs[msgs.len() - 1]["role"], "tool");
    // The clients saw the call and its result as `agent` events of stream `tool`.
    let tool_events: Vec<serde_json::Value> = c
        .backlog
        .iter()
        .filter(|e| e["event"] == "agent" && e["payload"]["stream"] == "tool")
        .map(|e| e["payload"]["data"].clone())
        .collect();
    assert_eq!(tool_events.len(), 2, "{tool_events:?}");
    assert_eq!(tool_events[1]["isError"], false);
    // A path out of the folder is refused, and the model is told why.
    let out = json!({"path": "../config.json5", "content": "x"});
    let fin = agent_turn(&mut c, &format!("please-tool canvas_write {out}"), "t2").await;
    let text = fin["payload"]["result"]["payloads"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.starts_with("tool said: error: invalid canvas path"),
        "{fin}"
    );
    assert!(!gw.state.path().join("config.json5").exists());

    // A2UI: no panel connected, then one (a v3 iOS node) that gets the JSONL.
    let jsonl = "{\"surfaceUpdate\":{\"surfaceId\":\"main\",\"components\":[{\"id\":\"root\",\"component\":{\"Text\":{\"text\":{\"literalString\":\"hi\"}}}}]}}\n{\"beginRendering\":{\"surfaceId\":\"main\",\"root\":\"root\"}}";
    let push = json!({"jsonl": jsonl});
    let fin = agent_turn(
        &mut c,
        &format!("please-tool canvas_a2ui_push {push}"),
        "t3",
    )
    .await;
    let text = fin["payload"]["result"]["payloads"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("error: no connected node can run canvas.a2ui.pushJSONL"),
        "{fin}"
    );
    let (mut node, _) = Client::connect(
        &gw.url(),
        canvas_node(3, "ios", &["canvas.a2ui.pushJSONL", "canvas.a2ui.reset"]),
    )
    .await;
    let id = "agent-t4";
    c.send_json(&json!({"type": "req", "id": id, "method": "agent",
        "params": {"message": format!("please-tool canvas_a2ui_push {push}"), "idempotencyKey": "t4"}}))
        .await;
    let req = node.event("node.invoke.request").await;
    assert_eq!(req["payload"]["command"], "canvas.a2ui.pushJSONL");
    let sent: serde_json::Value =
        serde_json::from_str(req["payload"]["paramsJSON"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"jsonl": jsonl}));
    node.request(
        "node.invoke.result",
        json!({"id": req["payload"]["id"], "nodeId": "node-host", "ok": true, "payloadJSON": "{\"ok\":true}"}),
    )
    .await;
    let _ack = c.response(id).await;
    let fin = c.response(id).await;
    assert_eq!(
        fin["payload"]["result"]["payloads"][0]["text"],
        "tool said: pushed 2 A2UI messages to node node-host",
        "{fin}"
    );
    assert!(!gw.log().contains("sk-test-standin"), "API key in the log");
}
