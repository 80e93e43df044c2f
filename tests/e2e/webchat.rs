//! WebChat (issue #6) in a real browser: headless Chromium loads the page from the real
//! gateway, a person's keystrokes and clicks drive it, and the agent worker (echo, with
//! a delay per word so replies visibly stream) answers. Every test saves screenshots in
//! `<target>/screenshots/`.

use std::sync::Arc;

use serde_json::json;

use crate::browser::Browser;
use crate::harness::*;

fn gateway(echo_delay_ms: u64) -> Gateway {
    Gateway::start_with(GatewayOpts {
        env: vec![(
            "SWITCHBOARD_AGENT_ECHO_DELAY_MS".into(),
            echo_delay_ms.to_string(),
        )],
        ..Default::default()
    })
}

fn page_url(gw: &Gateway) -> String {
    format!("http://127.0.0.1:{}/", gw.port)
}

/// Loads the page from the gateway's own host, where it connects by itself (the gateway
/// hands it its token), and waits until it is connected.
async fn log_in(b: &mut Browser, url: &str) {
    b.goto(url).await;
    b.wait_for(
        "the page to connect",
        "document.getElementById('status').textContent.startsWith('connected')",
    )
    .await;
}

/// The text of the last assistant bubble once it is done.
async fn last_reply(b: &mut Browser) -> String {
    b.wait_for(
        "a finished reply",
        "(() => { const m = [...document.querySelectorAll('.msg.assistant')].pop();
                  return m && m.dataset.done ? m.textContent : ''; })()",
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

#[tokio::test]
async fn a_browser_chats_sees_the_reply_stream_and_finds_it_again_after_a_reload() {
    let Some(mut b) = Browser::launch().await else {
        return;
    };
    let gw = gateway(60);
    log_in(&mut b, &page_url(&gw)).await;
    let status = b
        .eval("document.getElementById('status').textContent")
        .await;
    assert_eq!(
        status, "connected (protocol v4)",
        "Ed25519 device identity, v4"
    );
    b.screenshot("webchat-1-connected").await;
    b.type_into("#input", "hello from the browser one two three four five")
        .await;
    b.press_enter().await;
    // Streaming: a partial reply shows before the whole one.
    let partial = b
        .wait_for(
            "a partial reply",
            "(() => { const m = document.querySelector('.msg.assistant.streaming');
                      return m && m.textContent.length > 0 ? m.textContent : ''; })()",
        )
        .await;
    let full = "[echo] hello from the browser one two three four five";
    let partial = partial.as_str().unwrap().to_owned();
    assert!(
        full.starts_with(&partial) && partial.len() < full.len(),
        "{partial:?}"
    );
    b.screenshot("webchat-2-streaming").await;
    assert_eq!(last_reply(&mut b).await, full);
    assert_eq!(b.eval("document.getElementById('input').value").await, "");
    b.screenshot("webchat-3-replied").await;
    // Another client sees the same conversation in the same session.
    let (mut op, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let h = op
        .request("chat.history", json!({"sessionKey": "agent:main:main"}))
        .await;
    let texts = message_texts(&h["payload"]);
    assert_eq!(
        texts,
        vec!["hello from the browser one two three four five", full]
    );
    // A reload keeps the token (no form) and shows the history.
    b.reload().await;
    b.wait_for(
        "the history after the reload",
        "document.querySelectorAll('.msg').length === 2",
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('login').hidden").await,
        true
    );
    b.screenshot("webchat-4-after-reload").await;
    // The v3 path (browsers without Ed25519) works too.
    b.goto(&format!("{}?protocol=3", page_url(&gw))).await;
    b.wait_for(
        "the v3 connection",
        "document.getElementById('status').textContent === 'connected (protocol v3)'",
    )
    .await;
    b.type_into("#input", "and over v3").await;
    b.click("#send").await;
    b.wait_for(
        "the v3 reply",
        "[...document.querySelectorAll('.msg.assistant')].some(m => m.dataset.done && m.textContent === '[echo] and over v3')",
    )
    .await;
    b.screenshot("webchat-5-v3").await;
}

#[tokio::test]
async fn a_long_reply_is_stopped_from_the_page() {
    let Some(mut b) = Browser::launch().await else {
        return;
    };
    let gw = gateway(250);
    log_in(&mut b, &page_url(&gw)).await;
    let long: Vec<String> = (1..=40).map(|i| format!("word{i}")).collect();
    let long = long.join(" ");
    b.type_into("#input", &long).await;
    b.click("#send").await;
    b.wait_for(
        "the reply to start",
        "(() => { const m = document.querySelector('.msg.assistant.streaming');
                  return m && m.textContent.length > 0; })()",
    )
    .await;
    b.wait_for(
        "the stop button",
        "!document.getElementById('abort').hidden",
    )
    .await;
    b.click("#abort").await;
    b.wait_for(
        "the reply to be marked stopped",
        "(() => { const m = document.querySelector('.msg.assistant'); return m && m.querySelector('.tag'); })()",
    )
    .await;
    let text = b
        .eval("document.querySelector('.msg.assistant').firstChild.textContent")
        .await;
    let text = text.as_str().unwrap();
    let full = format!("[echo] {long}");
    assert!(
        full.starts_with(text) && text.len() < full.len(),
        "{text:?}"
    );
    assert_eq!(
        b.eval("document.getElementById('abort').hidden").await,
        true
    );
    b.screenshot("webchat-6-stopped").await;
}

#[tokio::test]
async fn the_page_reconnects_by_itself_after_a_gateway_restart() {
    let Some(mut b) = Browser::launch().await else {
        return;
    };
    let gw = gateway(0);
    log_in(&mut b, &page_url(&gw)).await;
    b.type_into("#input", "before the restart").await;
    b.press_enter().await;
    assert_eq!(last_reply(&mut b).await, "[echo] before the restart");
    gw.signal(nix::sys::signal::Signal::SIGUSR1);
    b.wait_for(
        "the page to notice",
        "document.getElementById('status').textContent.includes('reconnecting')
         || document.getElementById('banner').textContent.includes('restarting')",
    )
    .await;
    b.screenshot("webchat-7-restarting").await;
    b.wait_for(
        "the page to reconnect",
        "document.getElementById('status').textContent.startsWith('connected')",
    )
    .await;
    b.type_into("#input", "after the restart").await;
    b.press_enter().await;
    b.wait_for(
        "the reply after the restart",
        "[...document.querySelectorAll('.msg.assistant')].some(m => m.dataset.done && m.textContent === '[echo] after the restart')",
    )
    .await;
    assert_eq!(
        b.eval("document.querySelectorAll('.msg').length").await,
        4,
        "the history came back after the reconnect"
    );
    b.screenshot("webchat-8-reconnected").await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_message_and_nothing_typed_is_lost() {
    let Some(mut b) = Browser::launch().await else {
        return;
    };
    let state = Arc::new(tempfile::tempdir().unwrap());
    let mut gw = Gateway::start_with(GatewayOpts {
        state: Some(Arc::clone(&state)),
        ..Default::default()
    });
    let port = gw.port;
    log_in(&mut b, &page_url(&gw)).await;
    // Too long: refused in the page, the text stays.
    b.eval(
        "(() => { const i = document.getElementById('input'); i.value = 'x'.repeat(100001);
                  i.dispatchEvent(new Event('input')); })()",
    )
    .await;
    b.click("#send").await;
    let banner = b
        .wait_for("the error", "document.getElementById('banner').textContent")
        .await;
    assert!(
        banner
            .as_str()
            .unwrap()
            .contains("too long: 100001 characters, at most 100000"),
        "{banner}"
    );
    assert_eq!(
        b.eval("document.getElementById('input').value.length")
            .await,
        100001
    );
    assert_eq!(
        b.eval("document.querySelectorAll('.msg').length").await,
        0,
        "nothing was sent"
    );
    b.screenshot("webchat-9-too-long").await;
    // An unknown session is said to be new.
    b.eval("document.getElementById('input').value = ''").await;
    b.goto(&format!("{}#session=agent:main:nowhere", page_url(&gw)))
        .await;
    let notice = b
        .wait_for("the notice", "document.getElementById('notice').hidden ? '' : document.getElementById('notice').textContent")
        .await;
    assert_eq!(
        notice,
        "“agent:main:nowhere” is a new session: it starts with your first message."
    );
    b.screenshot("webchat-10-new-session").await;
    // The gateway goes away: sending keeps the text and says why.
    gw.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(gw.wait_exit(), Some(0));
    b.wait_for(
        "the page to notice the gateway is gone",
        "document.getElementById('status').textContent.includes('reconnecting')",
    )
    .await;
    b.type_into("#input", "typed while disconnected").await;
    b.press_enter().await;
    let banner = b
        .wait_for("the error", "document.getElementById('banner').textContent.includes('Not connected') && document.getElementById('banner').textContent")
        .await;
    assert!(
        banner
            .as_str()
            .unwrap()
            .contains("your text is still in the box"),
        "{banner}"
    );
    assert_eq!(
        b.eval("document.getElementById('input').value").await,
        "typed while disconnected"
    );
    b.screenshot("webchat-11-disconnected").await;
    // The gateway comes back on the same port: the page reconnects, the text goes out.
    let _gw2 = Gateway::start_with(GatewayOpts {
        state: Some(state),
        port,
        ..Default::default()
    });
    b.wait_for(
        "the page to reconnect",
        "document.getElementById('status').textContent.startsWith('connected')",
    )
    .await;
    b.click("#send").await;
    b.wait_for(
        "the reply",
        "[...document.querySelectorAll('.msg.assistant')].some(m => m.dataset.done && m.textContent === '[echo] typed while disconnected')",
    )
    .await;
    b.screenshot("webchat-12-sent-after-reconnect").await;
}

/// `chat.send` as protocol.md gives it, over raw frames (both generations).
#[tokio::test]
async fn chat_send_acks_then_streams_and_its_key_is_never_run_twice() {
    let gw = gateway(40);
    let (mut v4, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.write"])).await;
    let params =
        json!({"sessionKey": "main", "message": "one two three", "idempotencyKey": "cs-1"});
    let ack = v4.request("chat.send", params.clone()).await;
    assert_eq!(
        ack["payload"],
        json!({"runId": "cs-1", "status": "started"})
    );
    // A repeat while it runs: in flight, not a second run.
    let again = v4.request("chat.send", params.clone()).await;
    assert_eq!(
        again["payload"],
        json!({"runId": "cs-1", "status": "in_flight"})
    );
    let mut deltas = 0;
    let fin = loop {
        let ev = v4.event("chat").await;
        assert_eq!(ev["payload"]["sessionKey"], "agent:main:main");
        match ev["payload"]["state"].as_str().unwrap() {
            "delta" => {
                deltas += 1;
                assert!(ev["payload"]["deltaText"].is_string(), "{ev}");
            }
            "final" => break ev,
            other => panic!("unexpected chat state {other}: {ev}"),
        }
    };
    assert!(deltas >= 2, "the reply streamed in {deltas} deltas");
    assert_eq!(
        fin["payload"]["message"]["content"][0]["text"],
        "[echo] one two three"
    );
    // After the run: the stored result, from either generation.
    let (mut v3, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let after = v3.request("chat.send", params).await;
    assert_eq!(after["payload"], json!({"runId": "cs-1", "status": "ok"}));
    let h = v3
        .request("chat.history", json!({"sessionKey": "main"}))
        .await;
    assert_eq!(
        h["payload"]["messages"].as_array().unwrap().len(),
        2,
        "one run only: {h}"
    );
    // `/stop` aborts the session's runs.
    v4.request(
        "chat.send",
        json!({"sessionKey": "main", "message": "a b c d e f g h i j k l m n o p", "idempotencyKey": "cs-2"}),
    )
    .await;
    let stop = v4
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": "/stop", "idempotencyKey": "cs-3"}),
        )
        .await;
    assert_eq!(stop["payload"]["aborted"], true, "{stop}");
    assert_eq!(stop["payload"]["runIds"], json!(["cs-2"]));
    loop {
        let ev = v4.event("chat").await;
        if ev["payload"]["runId"] == "cs-2" && ev["payload"]["state"] == "aborted" {
            break;
        }
    }
    // History pages back with `before`: page by page, the same as all at once.
    let all = v4
        .request("chat.history", json!({"sessionKey": "main", "limit": 100}))
        .await;
    let all: Vec<serde_json::Value> = all["payload"]["messages"].as_array().unwrap().clone();
    assert!(all.len() >= 3, "{all:?}");
    let mut paged: Vec<serde_json::Value> = Vec::new();
    let mut before: Option<serde_json::Value> = None;
    loop {
        let mut p = json!({"sessionKey": "main", "limit": 2});
        if let Some(b) = &before {
            p["before"] = b.clone();
        }
        let page = v4.request("chat.history", p).await;
        let msgs = page["payload"]["messages"].as_array().unwrap().clone();
        assert!(!msgs.is_empty() && msgs.len() <= 2);
        before = Some(msgs[0]["id"].clone());
        let more = page["payload"]["hasMore"] == true;
        paged.splice(0..0, msgs);
        if !more {
            break;
        }
    }
    assert_eq!(paged, all);
    // v4 history says which session it is and whether a run is going on.
    let h = v4
        .request("chat.history", json!({"sessionKey": "main", "limit": 1}))
        .await;
    let info = &h["payload"]["sessionInfo"];
    assert_eq!(info["key"], "agent:main:main");
    assert_eq!(info["isMain"], true);
    assert_eq!(info["hasActiveRun"], false, "{info}");
    // A text attachment reaches the agent; an oversized one is refused before anything.
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    v4.request(
        "chat.send",
        json!({"sessionKey": "att", "message": "read this", "idempotencyKey": "cs-5",
               "attachments": [{"type": "file", "mimeType": "text/plain", "fileName": "notes.txt", "content": b64(b"hello notes")}]}),
    )
    .await;
    let fin = loop {
        let ev = v4.event("chat").await;
        if ev["payload"]["runId"] == "cs-5" && ev["payload"]["state"] == "final" {
            break ev;
        }
    };
    assert_eq!(
        fin["payload"]["message"]["content"][0]["text"],
        "[echo] read this\n\n[attachment notes.txt (text/plain, 11 bytes)]\nhello notes"
    );
    let big = b64(&vec![b'x'; 5_000_001]);
    let r = v4
        .request(
            "chat.send",
            json!({"sessionKey": "att", "message": "big", "idempotencyKey": "cs-6",
                   "attachments": [{"mimeType": "text/plain", "content": big}]}),
        )
        .await;
    assert_eq!(
        r["error"]["message"],
        "attachments too large: 5000001 bytes, at most 5000000"
    );
    // Too long is refused by the schema, naming the field.
    let long = "x".repeat(100_001);
    let r = v4
        .request(
            "chat.send",
            json!({"sessionKey": "main", "message": long, "idempotencyKey": "cs-4"}),
        )
        .await;
    assert_eq!(r["error"]["code"], "INVALID_REQUEST");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid chat.send params"),
        "{r}"
    );
}

#[test]
fn the_page_is_one_file_that_loads_nothing_from_elsewhere() {
    use std::io::{Read, Write};
    let gw = gateway(0);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Type: text/html; charset=utf-8"));
    let csp = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Security-Policy: "))
        .expect("a CSP header");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "an external reference"
    );
    assert!(
        !body.contains("<script src") && !body.contains("<link"),
        "an external file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_network_blip_mid_reply_the_page_resumes_and_the_reply_goes_on_where_it_was() {
    let Some(mut b) = Browser::launch().await else {
        return;
    };
    // A word every 60 ms: the reply is still streaming when the link goes.
    let gw = gateway(60);
    let relay = Relay::start(gw.port).await;
    // Through the relay the page is not on the gateway's own address, so it is not handed
    // the token: a person types it once.
    b.goto(&format!("http://127.0.0.1:{}/", relay.port)).await;
    b.wait_for("the token form", "!document.getElementById('login').hidden")
        .await;
    b.type_into("#token", TOKEN).await;
    b.press_enter().await;
    b.wait_for(
        "the page to connect",
        "document.getElementById('status').textContent.startsWith('connected')",
    )
    .await;
    let words: Vec<String> = (0..30).map(|i| format!("w{i}")).collect();
    let text = words.join(" ");
    b.type_into("#input", &text).await;
    b.press_enter().await;
    // Some of the reply is on screen: mark that very bubble.
    b.wait_for(
        "the reply to start streaming",
        "(() => { const m = [...document.querySelectorAll('.msg.assistant.streaming')].pop();
                  if (!m || !m.textContent.includes('w3')) return false;
                  m.dataset.marker = 'before-the-blip'; return true; })()",
    )
    .await;
    relay.cut();
    b.wait_for(
        "the page to notice the blip",
        "document.getElementById('status').textContent.includes('reconnecting')",
    )
    .await;
    gw.wait_log("the page to resume", |l| l.contains("session resumed"));
    // The same bubble (no reload of the conversation) finishes with the whole reply.
    let done = b
        .wait_for(
            "the reply to finish in the same bubble",
            "(() => { const m = document.querySelector('[data-marker=before-the-blip]');
                      return m && m.dataset.done ? m.textContent : ''; })()",
        )
        .await;
    assert_eq!(done.as_str().unwrap(), format!("[echo] {text}"));
    assert_eq!(
        b.eval("document.querySelectorAll('.msg').length").await,
        2,
        "one question, one answer: nothing doubled, nothing reloaded"
    );
    b.screenshot("webchat-9-resumed-after-a-blip").await;
}
