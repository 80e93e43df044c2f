//! The stand-in's Socket Mode server: the single-use ticket checked at the handshake,
//! `hello`, `events_api` envelopes, their acknowledgements and redeliveries, `disconnect`
//! and a half-open socket (see the parent module).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

use super::{State, Unacked};

// tungstenite's handshake callback returns its `ErrorResponse` unboxed.
#[allow(clippy::result_large_err)]
pub(super) async fn serve_sockets(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (s, n) = (Arc::clone(&state), Arc::clone(&changed));
        tokio::spawn(async move {
            let ticket_ok = {
                let s = Arc::clone(&s);
                move |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                    let ticket = req
                        .uri()
                        .query()
                        .unwrap_or_default()
                        .split('&')
                        .find_map(|p| p.strip_prefix("ticket="))
                        .unwrap_or_default()
                        .to_owned();
                    // Tickets are single-use.
                    if req.uri().path() == "/link/" && s.lock().unwrap().tickets.remove(&ticket) {
                        Ok(resp)
                    } else {
                        let mut r =
                            tokio_tungstenite::tungstenite::handshake::server::ErrorResponse::new(
                                Some("invalid ticket".into()),
                            );
                        *r.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                        Err(r)
                    }
                }
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, ticket_ok).await else {
                return;
            };
            socket(ws, s, n).await;
        });
    }
}

fn envelope(s: &mut State, payload: Value, attempt: u64) -> (String, String) {
    s.next_id += 1;
    let id = format!("{:08x}-5a7d-4c1e-9b0f-standin", s.next_id);
    let event_id = payload["event_id"].as_str().unwrap_or_default().to_owned();
    s.sent_ids.insert(id.clone(), event_id);
    let frame = json!({
        "envelope_id": id, "payload": payload, "type": "events_api",
        "accepts_response_payload": false, "retry_attempt": attempt,
        "retry_reason": if attempt > 0 { "timeout" } else { "" },
    });
    (id, frame.to_string())
}

async fn socket(
    mut ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
) {
    let conn = {
        let mut s = state.lock().unwrap();
        s.sockets_opened += 1;
        s.sockets_open += 1;
        s.current = s.sockets_opened;
        s.sockets_opened
    };
    // A socket the client closed may still be winding down on this thread: give it a
    // moment before counting how many are open.
    for _ in 0..50 {
        if state.lock().unwrap().sockets_open <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    {
        let mut s = state.lock().unwrap();
        s.max_open = s.max_open.max(s.sockets_open);
        s.hello_at.push(Instant::now());
    }
    let hello = json!({"type": "hello", "num_connections": 1,
        "debug_info": {"host": "applink-standin", "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": "A0STANDIN"}});
    let _ = ws.send(Message::Text(hello.to_string().into())).await;
    changed.notify_waiters();
    let mut disconnected_at: Option<Instant> = None;
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (frames, silent) = {
            let mut s = state.lock().unwrap();
            let mut frames = Vec::new();
            let mut silent = false;
            if s.current == conn {
                if s.silence {
                    s.silence = false;
                    s.silenced_at = Some(Instant::now());
                    silent = true;
                } else if let Some(reason) = s.disconnect.take() {
                    frames.push(
                        json!({"type": "disconnect", "reason": reason,
                        "debug_info": {"host": "applink-standin"}})
                        .to_string(),
                    );
                    disconnected_at = Some(Instant::now());
                } else {
                    while let Some(p) = s.outbox.pop_front() {
                        let (id, frame) = envelope(&mut s, p.clone(), 0);
                        s.unacked.push(Unacked {
                            ids: vec![id],
                            payload: p,
                            attempt: 0,
                            sent_at: Instant::now(),
                        });
                        frames.push(frame);
                    }
                    let due: Vec<usize> = (0..s.unacked.len())
                        .filter(|&i| {
                            s.unacked[i].attempt < 3
                                && s.unacked[i].sent_at.elapsed() >= s.retry_after
                        })
                        .collect();
                    for i in due {
                        let payload = s.unacked[i].payload.clone();
                        let attempt = s.unacked[i].attempt + 1;
                        let (id, frame) = envelope(&mut s, payload, attempt);
                        let u = &mut s.unacked[i];
                        u.ids.push(id);
                        u.attempt = attempt;
                        u.sent_at = Instant::now();
                        s.retries_sent += 1;
                        frames.push(frame);
                    }
                }
            }
            (frames, silent)
        };
        if silent {
            // Half-open: read raw bytes (pings and closes go unanswered) until the client
            // drops the TCP connection.
            let tcp = ws.get_mut();
            let mut buf = [0u8; 4096];
            while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            state.lock().unwrap().silent_closed_at = Some(Instant::now());
            break;
        }
        for f in frames {
            if ws.send(Message::Text(f.into())).await.is_err() {
                break;
            }
        }
        if disconnected_at.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) {
            break; // Slack closes a connection it asked the app to leave
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(t))) => {
                    let id = serde_json::from_str::<Value>(t.as_str())
                        .ok()
                        .and_then(|v| v["envelope_id"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    let mut s = state.lock().unwrap();
                    let twice = s.acks.iter().any(|(a, _)| *a == id);
                    match s.sent_ids.get(&id).cloned() {
                        Some(ev) if !twice => {
                            s.unacked.retain(|u| !u.ids.contains(&id));
                            s.acks.push((id, ev));
                        }
                        _ => s.unknown_acks.push(id),
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    state.lock().unwrap().sockets_open -= 1;
    changed.notify_waiters();
}
