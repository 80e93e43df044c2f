//! A local stand-in of the OpenAI chat-completions API (streaming), as documented:
//! `POST /v1/chat/completions` with `stream: true` answers `text/event-stream` lines
//! `data: {"choices":[{"delta":{"content":"…"}}]}` and finally `data: [DONE]`.
//!
//! What it does is chosen by the last user message: `please-401`, `please-429` (one 429
//! with `Retry-After: 0`, then a normal answer), `please-break` (the stream stops early);
//! `please-tool NAME {ARGS}` calls that tool the documented streaming way
//! (`delta.tool_calls[{index, id, type, function: {name, arguments}}]`, the arguments in
//! two pieces, `finish_reason: "tool_calls"`), and once the request carries the tool's
//! answer (`{"role": "tool", "tool_call_id", "content"}`), streams `tool said: CONTENT`;
//! anything else streams `Hello` `, ` `world` then `[DONE]`.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Default, Clone)]
pub struct Seen {
    pub requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl Seen {
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    pub fn all(&self) -> Vec<(String, String)> {
        self.requests.lock().unwrap().clone()
    }
}

pub struct StandIn {
    pub base_url: String,
    pub seen: Seen,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts the stand-in on a free loopback port, on a thread and runtime of its own (the
/// tests' runtimes are single-threaded and block while they wait on the gateway).
pub fn start() -> StandIn {
    let seen = Seen::default();
    let s = seen.clone();
    let (port, stop_tx) = crate::harness::serve_on_thread(move |l| serve(l, s));
    StandIn {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        seen,
        stop: Some(stop_tx),
    }
}

async fn serve(listener: TcpListener, s: Seen) {
    let mut rate_limited = false;
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let (auth, body) = read_request(&mut sock).await;
        s.requests.lock().unwrap().push((auth, body.clone()));
        let last = last_user_message(&body);
        if last.contains("please-401") {
            let b = r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}"#;
            let _ = sock.write_all(format!("HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}", b.len()).as_bytes()).await;
            continue;
        }
        if last.contains("please-429") && !rate_limited {
            rate_limited = true;
            let b = r#"{"error":{"message":"Rate limit reached"}}"#;
            let _ = sock.write_all(format!("HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}", b.len()).as_bytes()).await;
            continue;
        }
        let _ = sock
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n")
            .await;
        if let Some(call) = last.strip_prefix("please-tool ") {
            let (name, args) = call.split_once(' ').unwrap_or((call, "{}"));
            let chunks = match tool_answer(&body) {
                Some(content) => vec![
                    serde_json::json!({"choices":[{"index":0,"delta":{"content": format!("tool said: {content}")},"finish_reason":null}]}),
                    serde_json::json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
                ],
                None => {
                    let (a, b) = args.split_at(args.len() / 2);
                    vec![
                        serde_json::json!({"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":name,"arguments":a}}]},"finish_reason":null}]}),
                        serde_json::json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":b}}]},"finish_reason":null}]}),
                        serde_json::json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
                    ]
                }
            };
            for c in chunks {
                let _ = sock.write_all(format!("data: {c}\n\n").as_bytes()).await;
            }
            let _ = sock.write_all(b"data: [DONE]\n\n").await;
            let _ = sock.shutdown().await;
            continue;
        }
        for p in ["Hello", ", ", "world"] {
            let chunk = serde_json::json!({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":p},"finish_reason":null}]});
            let _ = sock
                .write_all(format!("data: {chunk}\n\n").as_bytes())
                .await;
            if last.contains("please-break") {
                break;
            }
        }
        if !last.contains("please-break") {
            let end = serde_json::json!({"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]});
            let _ = sock
                .write_all(format!("data: {end}\n\ndata: [DONE]\n\n").as_bytes())
                .await;
        }
        let _ = sock.shutdown().await;
    }
}

/// The tool's answer the request carries, if it carries one.
fn tool_answer(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["messages"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == "call_1")
        .and_then(|m| m["content"].as_str())
        .map(str::to_owned)
}

fn last_user_message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = sock.read(&mut tmp).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = sock.read(&mut tmp).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            let auth = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("authorization")
                        .then(|| v.trim().to_owned())
                })
                .unwrap_or_default();
            let body = String::from_utf8_lossy(&buf[end + 4..]).to_string();
            return (auth, body);
        }
    }
    (String::new(), String::new())
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}
