//! Inbound: the daemon's Server-Sent Events (`GET /api/v1/events`), opened only while the
//! supervisor listens, watched for silence, and turned into the contract's events.
//!
//! signal-cli has already confirmed a message to Signal's servers when it writes it to
//! the stream, so this worker keeps every message it read until the supervisor
//! acknowledged it (in memory, bounded) and sends the unacknowledged ones again to the
//! next subscriber; the supervisor drops duplicates (a message is its sender and its
//! timestamp). Started with `--receive-mode on-connection`, signal-cli fetches messages
//! from Signal only while a stream is open, so nothing arrives while none is.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchboard_proto::v1::{InboundMessage, WorkerEvent, worker_event};
use worker_runtime::backoff::Backoff;
use worker_runtime::events::EventSender;

use crate::Shared;
use crate::rpc::{self, RpcError};

/// Messages read but not yet acknowledged, at most; then reading waits for acks.
const MAX_PENDING: usize = 256;
/// How long to wait for the supervisor's acknowledgements when that many are pending.
const ACK_WAIT: Duration = Duration::from_secs(60);
/// An event larger than this is a broken stream, not a message.
const MAX_EVENT_BYTES: usize = 1 << 20;

enum Ended {
    Shutdown,
    /// The supervisor stopped listening.
    Subscriber,
    /// The stream failed or went silent; why.
    Dead(String),
}

pub async fn run(shared: Arc<Shared>) {
    let mut pending: VecDeque<WorkerEvent> = VecDeque::new();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut checked: Option<String> = None;
    loop {
        if shared.state.needs_operator() {
            // Only an operator can fix it (and restarts the worker to say so).
            shared.shutdown.cancelled().await;
            return;
        }
        // Nothing is received while no supervisor listens: messages stay with Signal.
        let Some(tx) = shared.events.listener(&shared.shutdown).await else {
            return;
        };
        let Some(base) = daemon_url(&shared).await else {
            return;
        };
        if checked.as_deref() != Some(base.as_str()) {
            match check_account(&shared).await {
                Ok(()) => checked = Some(base.clone()),
                Err(None) => continue, // needs an operator now
                Err(Some(why)) => {
                    let d = backoff.next_delay();
                    shared.state.set("backoff", why, true);
                    if !shared.pause(d).await {
                        return;
                    }
                    continue;
                }
            }
        }
        prune(&shared, &mut pending, &tx).await;
        let mut resent = true;
        for ev in &pending {
            if tx.send(Ok(ev.clone())).await.is_err() {
                resent = false;
                break;
            }
        }
        if !resent {
            continue;
        }
        let ended = read(&shared, &base, &tx, &mut pending, &mut backoff).await;
        shared.stream_open.store(false, Ordering::SeqCst);
        match ended {
            Ended::Shutdown => return,
            Ended::Subscriber => {
                if !shared.state.needs_operator() {
                    shared
                        .state
                        .set("connecting", "waiting for the gateway to listen", true);
                }
            }
            Ended::Dead(why) => {
                let d = backoff.next_delay();
                tracing::warn!(
                    delay_ms = d.as_millis() as u64,
                    "event stream: {why}; reopening"
                );
                if !shared.state.needs_operator() {
                    shared
                        .state
                        .set("backoff", format!("event stream: {why}; reopening"), true);
                }
                if !shared.pause(d).await {
                    return;
                }
            }
        }
    }
}

/// Waits until the daemon is up; `None` on shutdown.
async fn daemon_url(shared: &Shared) -> Option<String> {
    let mut rx = shared.daemon.subscribe();
    loop {
        if let Some(b) = rx.borrow_and_update().clone() {
            return Some(b);
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => return None,
            c = rx.changed() => if c.is_err() { return None },
        }
    }
}

/// `listAccounts` must list the account (a single-account daemon does not implement
/// it: it serves only its own, registered, account). `Err(None)`: unregistered, an
/// operator must act; `Err(Some(why))`: try again later.
async fn check_account(shared: &Shared) -> Result<(), Option<String>> {
    let account = &shared.cfg.account;
    match rpc::call(shared, "listAccounts", json!({}), Duration::from_secs(10)).await {
        Ok(Value::Array(list)) => {
            if list
                .iter()
                .any(|a| a["number"].as_str() == Some(account.as_str()))
            {
                Ok(())
            } else {
                shared.state.set(
                    "unregistered",
                    format!(
                        "account not registered: signal-cli does not know {account}; register it (`signal-cli -a {account} register`, then `verify`) or link it (`signal-cli link`), then `switchboard workers restart signal`"
                    ),
                    false,
                );
                Err(None)
            }
        }
        Ok(_) | Err(RpcError::Rpc { .. }) => Ok(()),
        Err(e) => Err(Some(format!("listAccounts: {e}"))),
    }
}

/// Drops the pending messages the supervisor acknowledged.
async fn prune(shared: &Shared, pending: &mut VecDeque<WorkerEvent>, tx: &EventSender) {
    while let Some(front) = pending.front() {
        // A zero timeout still looks at the acknowledged id once.
        if shared
            .events
            .acked(front.event_id, tx, Duration::ZERO, &shared.shutdown)
            .await
        {
            pending.pop_front();
        } else {
            break;
        }
    }
}

async fn read(
    shared: &Shared,
    base: &str,
    tx: &EventSender,
    pending: &mut VecDeque<WorkerEvent>,
    backoff: &mut Backoff,
) -> Ended {
    let idle = Duration::from_secs(u64::from(shared.cfg.event_stream_timeout_seconds.max(1)));
    let account = shared.cfg.account.clone();
    let request = shared
        .http
        .get(format!("{base}/api/v1/events"))
        .query(&[("account", account.as_str())])
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send();
    let resp = tokio::select! {
        _ = shared.shutdown.cancelled() => return Ended::Shutdown,
        r = tokio::time::timeout(idle, request) => r,
    };
    let resp = match resp {
        Err(_) => {
            return Ended::Dead(format!(
                "no answer to GET /api/v1/events in {} s",
                idle.as_secs()
            ));
        }
        Ok(Err(e)) => return Ended::Dead(format!("GET /api/v1/events: {}", rpc::describe(&e))),
        Ok(Ok(r)) => r,
    };
    if resp.status() != 200 {
        return Ended::Dead(format!(
            "GET /api/v1/events answered HTTP {}",
            resp.status().as_u16()
        ));
    }
    shared.stream_open.store(true, Ordering::SeqCst);
    shared.state.set("connected", "", true);
    backoff.reset();
    let mut body = resp.bytes_stream();
    let mut parser = SseParser::default();
    loop {
        let next = tokio::select! {
            _ = shared.shutdown.cancelled() => return Ended::Shutdown,
            _ = tx.closed() => return Ended::Subscriber,
            n = tokio::time::timeout(idle, body.next()) => n,
        };
        let chunk = match next {
            Err(_) => {
                return Ended::Dead(format!(
                    "silent for {} s (no keep-alive, no event)",
                    idle.as_secs()
                ));
            }
            Ok(None) => return Ended::Dead("signal-cli closed it".into()),
            Ok(Some(Err(e))) => return Ended::Dead(rpc::describe(&e)),
            Ok(Some(Ok(c))) => c,
        };
        let events = match parser.feed(&chunk) {
            Ok(e) => e,
            Err(why) => return Ended::Dead(why),
        };
        for (name, data) in events {
            if name != "receive" && !name.is_empty() {
                continue;
            }
            let v: Value = match serde_json::from_str(&data) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("skipping an event whose data is not JSON: {e}");
                    continue;
                }
            };
            let Some(m) = inbound(&v, &account) else {
                continue;
            };
            let id = shared.next_event.fetch_add(1, Ordering::SeqCst) + 1;
            let ev = WorkerEvent {
                event_id: id,
                cursor: String::new(),
                event: Some(worker_event::Event::Message(m)),
            };
            pending.push_back(ev.clone());
            if tx.send(Ok(ev)).await.is_err() {
                return Ended::Subscriber;
            }
        }
        prune(shared, pending, tx).await;
        if pending.len() >= MAX_PENDING {
            let last = pending.back().map(|e| e.event_id).unwrap_or(0);
            if !shared
                .events
                .acked(last, tx, ACK_WAIT, &shared.shutdown)
                .await
            {
                return Ended::Subscriber;
            }
            prune(shared, pending, tx).await;
        }
    }
}

/// Server-Sent Events, as the HTML standard defines them: lines `field:value` (one
/// optional space after the colon), `:` comments (keep-alives), a blank line ends an
/// event. Only `event` and `data` matter here.
#[derive(Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: Vec<String>,
    size: usize,
}

impl SseParser {
    /// Feeds bytes; the complete events `(event name, data)` in them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push((std::mem::take(&mut self.event), self.data.join("\n")));
                }
                self.event.clear();
                self.data.clear();
                self.size = 0;
                continue;
            }
            if line.starts_with(':') {
                continue; // a comment: the keep-alive
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()),
                None => (line.clone(), String::new()),
            };
            self.size += value.len();
            if self.size > MAX_EVENT_BYTES {
                return Err(format!("an event larger than {MAX_EVENT_BYTES} bytes"));
            }
            match field.as_str() {
                "event" => self.event = value,
                "data" => self.data.push(value),
                _ => {}
            }
        }
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(format!("a line longer than {MAX_EVENT_BYTES} bytes"));
        }
        Ok(out)
    }
}

fn text(v: &Value) -> Option<&str> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// A received envelope as the contract's message; `None` for what is not a text
/// message to this account (receipts, typing, sync messages, media without text).
pub fn inbound(v: &Value, account: &str) -> Option<InboundMessage> {
    if let Some(a) = text(&v["account"])
        && a != account
    {
        return None;
    }
    let env = v.get("envelope")?;
    let dm = env.get("dataMessage")?;
    let body = dm["message"].as_str().filter(|t| !t.trim().is_empty())?;
    let number =
        text(&env["sourceNumber"]).or_else(|| text(&env["source"]).filter(|s| s.starts_with('+')));
    let uuid = text(&env["sourceUuid"]);
    let sender = number.or(uuid)?;
    if number == Some(account) {
        return None; // our own message, synced from another device
    }
    let ts = env["timestamp"]
        .as_i64()
        .or_else(|| dm["timestamp"].as_i64())?;
    let group = text(&dm["groupInfo"]["groupId"]);
    let mentions = dm["mentions"].as_array().cloned().unwrap_or_default();
    let quoted_us = text(&dm["quote"]["authorNumber"]).or_else(|| text(&dm["quote"]["author"]))
        == Some(account);
    let mentioned = quoted_us
        || mentions
            .iter()
            .any(|m| m["number"].as_str() == Some(account));
    Some(InboundMessage {
        channel: "signal".into(),
        account_id: String::new(),
        chat_id: group.unwrap_or(sender).to_owned(),
        sender_id: sender.to_owned(),
        sender_name: text(&env["sourceName"]).unwrap_or(sender).to_owned(),
        text: with_mentions(body, &mentions),
        is_group: group.is_some(),
        mentioned,
        // Signal names a message by its sender and timestamp.
        provider_message_id: format!("{}:{ts}", uuid.or(number).unwrap_or(sender)),
        timestamp_ms: ts,
        chat_type: if group.is_some() { "group" } else { "private" }.into(),
        // The UUID, so allow-lists may name people by it too (when the number is the id).
        sender_username: if number.is_some() {
            uuid.unwrap_or_default().to_owned()
        } else {
            String::new()
        },
        chat_title: text(&dm["groupInfo"]["groupName"])
            .unwrap_or_default()
            .to_owned(),
        thread_id: String::new(),
    })
}

/// Signal marks each mention with U+FFFC in the text; put `@name` back in its place.
fn with_mentions(body: &str, mentions: &[Value]) -> String {
    if !body.contains('\u{FFFC}') {
        return body.to_owned();
    }
    let mut sorted: Vec<&Value> = mentions.iter().collect();
    sorted.sort_by_key(|m| m["start"].as_i64().unwrap_or(0));
    let mut names = sorted.into_iter().map(|m| {
        text(&m["name"])
            .or_else(|| text(&m["number"]))
            .or_else(|| text(&m["uuid"]))
            .unwrap_or("someone")
            .to_owned()
    });
    body.chars()
        .map(|c| {
            if c == '\u{FFFC}' {
                format!("@{}", names.next().unwrap_or_else(|| "someone".into()))
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_lines_split_anywhere_make_the_same_events() {
        let raw =
            b":\n\nevent:receive\ndata:{\"a\":1}\n\n:\nevent: receive\r\ndata: {\"b\":2}\r\n\r\n";
        for split in 1..raw.len() {
            let mut p = SseParser::default();
            let mut got = p.feed(&raw[..split]).unwrap();
            got.extend(p.feed(&raw[split..]).unwrap());
            assert_eq!(
                got,
                vec![
                    ("receive".to_owned(), "{\"a\":1}".to_owned()),
                    ("receive".to_owned(), "{\"b\":2}".to_owned())
                ]
            );
        }
        let mut p = SseParser::default();
        assert!(p.feed(&vec![b'x'; MAX_EVENT_BYTES + 1]).is_err());
    }

    #[test]
    fn envelopes_become_messages_and_the_rest_is_skipped() {
        let acct = "+15550000001";
        let dm = json!({"account": acct, "envelope": {"source": "+15550000002", "sourceNumber": "+15550000002",
            "sourceUuid": "0b3d6c1e-3f0a-4d5e-9a8b-1c2d3e4f5a6b", "sourceName": "Alice", "sourceDevice": 1,
            "timestamp": 1700000000123_i64, "dataMessage": {"timestamp": 1700000000123_i64, "message": "hi"}}});
        let m = inbound(&dm, acct).unwrap();
        assert_eq!(m.chat_id, "+15550000002");
        assert_eq!(
            m.provider_message_id,
            "0b3d6c1e-3f0a-4d5e-9a8b-1c2d3e4f5a6b:1700000000123"
        );
        assert!(!m.is_group);
        let group = json!({"envelope": {"sourceUuid": "0b3d6c1e-3f0a-4d5e-9a8b-1c2d3e4f5a6b", "timestamp": 5,
            "dataMessage": {"message": "\u{FFFC} look", "groupInfo": {"groupId": "R0lE", "type": "DELIVER"},
            "mentions": [{"name": "Bot", "number": acct, "start": 0, "length": 1}]}}});
        let m = inbound(&group, acct).unwrap();
        assert!(m.is_group && m.mentioned);
        assert_eq!(m.chat_id, "R0lE");
        assert_eq!(m.sender_id, "0b3d6c1e-3f0a-4d5e-9a8b-1c2d3e4f5a6b");
        assert_eq!(m.text, "@Bot look");
        let typing = json!({"envelope": {"sourceNumber": "+1555", "timestamp": 1, "typingMessage": {"action": "STARTED"}}});
        assert!(inbound(&typing, acct).is_none());
        assert!(inbound(&json!({"envelope": "nonsense"}), acct).is_none());
        assert!(inbound(&json!([1, 2]), acct).is_none());
    }
}
