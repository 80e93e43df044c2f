//! The imsg child's life and the inbound stream: start `imsg rpc`, check that it
//! answers, subscribe (`watch.subscribe`, `since_rowid` = what the supervisor stored)
//! while a supervisor listens, forward `message` notifications as events whose cursor is
//! the row id, and start imsg again with back-off when it exits or stops answering.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard_proto::v1::{InboundMessage, WorkerEvent, worker_event};
use tokio::sync::mpsc;
use worker_runtime::backoff::Backoff;
use worker_runtime::events::EventSender;

use crate::rpc::{self, CallError, Imsg};
use crate::{Shared, permission_problem};

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A child that lived this long was healthy: the next restart starts the back-off over.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
/// How often imsg is asked whether it still answers, and how long it may take.
const PING_EVERY: Duration = Duration::from_secs(15);
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the stream stands: what the supervisor stored, and what this worker forwarded
/// or skipped since.
#[derive(Debug, Default, Clone, Copy)]
pub struct Position {
    /// The cursor the supervisor gave when it subscribed (its last stored row).
    pub stored: Option<i64>,
    /// The highest row forwarded as an event.
    pub forwarded: i64,
    /// The highest row skipped (from this Mac, no text).
    pub skipped: i64,
}

impl Position {
    /// The row to resume after: everything up to it is stored or was skipped. `acked` is
    /// the highest event (row) the supervisor acknowledged.
    pub fn resume_after(&self, acked: i64) -> Option<i64> {
        let mut r = self.stored.unwrap_or(0).max(acked);
        // Skipped rows may be passed over once every forwarded row before them is stored.
        if self.skipped > r && acked >= self.forwarded {
            r = self.skipped;
        }
        (r > 0 || self.stored.is_some()).then_some(r)
    }
}

/// Why a child's session ended.
enum End {
    Shutdown,
    /// It exited or stopped answering: start it again.
    Restart(String),
    /// An operator must act (permission missing): state set, nothing more to do.
    Operator,
}

pub async fn run(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(BACKOFF_START, BACKOFF_MAX);
    let mut pos = Position::default();
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let started = Instant::now();
        let end = match rpc::spawn(&shared.cfg) {
            Ok((imsg, notes)) => {
                let end = session(&shared, &imsg, notes, &mut pos).await;
                shared.set_imsg(None);
                let exit = imsg.stop().await;
                match end {
                    End::Restart(why) => match exited_for_good(&shared, &exit) {
                        Some((state, detail)) => {
                            shared.state.set(state, detail, false);
                            End::Operator
                        }
                        None => End::Restart(format!("{why} ({})", exit.describe())),
                    },
                    other => other,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let detail = if shared.cfg.remote_host.is_some() {
                    "ssh was not found on this computer: install OpenSSH's client, or run the gateway on the Mac without remoteHost".to_owned()
                } else {
                    format!(
                        "imsg was not found ({:?}): install it on the Mac with `brew install steipete/tap/imsg` or set channels.imessage.cliPath to its full path; on another computer set channels.imessage.remoteHost to reach the Mac over SSH",
                        shared.cfg.cli_path
                    )
                };
                shared.state.set("missing", detail, false);
                End::Operator
            }
            Err(e) => End::Restart(format!("cannot start imsg: {e}")),
        };
        match end {
            End::Shutdown => return,
            End::Operator => {
                // Nothing is retried until an operator acts (a restart of the worker).
                shared.shutdown.cancelled().await;
                return;
            }
            End::Restart(why) => {
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff.reset();
                }
                let d = backoff.next_delay();
                tracing::warn!(delay_ms = d.as_millis() as u64, "imsg stopped: {why}");
                shared.state.set(
                    "backoff",
                    format!(
                        "imsg {}: {why}; starting it again in {} s",
                        shared.place(),
                        d.as_secs_f32().ceil()
                    ),
                    true,
                );
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(d) => {}
                }
            }
        }
    }
}

/// An exit that starting again cannot fix: imsg missing on the Mac (127), or ssh
/// refusing to log in.
fn exited_for_good(shared: &Shared, exit: &rpc::Exit) -> Option<(&'static str, String)> {
    let stderr = exit.stderr.to_lowercase();
    match (&shared.cfg.remote_host, exit.code()) {
        (Some(host), Some(127)) => Some((
            "missing",
            format!(
                "imsg was not found on {host}: install it there (`brew install steipete/tap/imsg`) or set channels.imessage.cliPath to its full path (ssh's non-interactive PATH may lack /opt/homebrew/bin)"
            ),
        )),
        (Some(host), Some(255))
            if stderr.contains("permission denied")
                || stderr.contains("host key verification failed")
                || stderr.contains("could not resolve hostname") =>
        {
            Some((
                "ssh",
                format!(
                    "ssh to {host} failed: {}; set up key login (`ssh-copy-id {host}`, then `ssh {host} true` must work without a prompt)",
                    exit.stderr
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or_default()
                        .trim()
                ),
            ))
        }
        (None, Some(127)) => Some((
            "missing",
            format!(
                "imsg ({:?}) could not be run: install it with `brew install steipete/tap/imsg` or fix channels.imessage.cliPath",
                shared.cfg.cli_path
            ),
        )),
        _ => None,
    }
}

/// A failed call: the end it means (permission problems are reported here).
fn failed(shared: &Shared, what: &str, e: CallError) -> End {
    if let CallError::Rpc(r) = &e
        && let Some(detail) = permission_problem(&shared.cfg, &r.text())
    {
        shared.state.set("permission", detail, false);
        return End::Operator;
    }
    End::Restart(format!("{what}: {e}"))
}

/// One child, from its first answer to its end.
async fn session(
    shared: &Shared,
    imsg: &Arc<Imsg>,
    mut notes: mpsc::Receiver<Value>,
    pos: &mut Position,
) -> End {
    // A start-up failure (no Full Disk Access) is the answer to the first request.
    let probe = tokio::select! {
        _ = shared.shutdown.cancelled() => return End::Shutdown,
        r = imsg.call("chats.list", json!({"limit": 1}), CALL_TIMEOUT) => r,
    };
    if let Err(e) = probe {
        return failed(shared, "chats.list", e);
    }
    shared.set_imsg(Some(Arc::clone(imsg)));
    shared.state.set(
        "connected",
        format!("imsg {} answers", shared.place()),
        true,
    );
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    loop {
        // Subscribe only while a supervisor listens: until then rows stay in chat.db.
        let tx = tokio::select! {
            _ = shared.shutdown.cancelled() => return End::Shutdown,
            e = imsg.wait_exit() => return End::Restart(format!("exited ({})", e.describe())),
            _ = ping.tick() => {
                if let Err(e) = imsg.call("chats.list", json!({"limit": 1}), CALL_TIMEOUT).await {
                    return failed(shared, "ping", e);
                }
                continue;
            }
            tx = shared.events.listener(&shared.shutdown) => match tx {
                Some(tx) => tx,
                None => return End::Shutdown,
            },
        };
        let cursor = shared.events.cursor();
        pos.stored = match cursor.trim() {
            "" => None,
            c => match c.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => {
                    tracing::warn!(cursor = %c, "the stored cursor is not a row id; starting from new messages");
                    None
                }
            },
        };
        match stream(shared, imsg, &mut notes, pos, &tx, &mut ping).await {
            Some(end) => return end,
            None => continue, // the supervisor resubscribed: from its cursor again
        }
    }
}

/// Subscribes and forwards until the subscriber goes (`None`) or the session ends.
async fn stream(
    shared: &Shared,
    imsg: &Arc<Imsg>,
    notes: &mut mpsc::Receiver<Value>,
    pos: &mut Position,
    tx: &EventSender,
    ping: &mut tokio::time::Interval,
) -> Option<End> {
    'subscribe: loop {
        let acked = i64::try_from(shared.events.last_acked()).unwrap_or(i64::MAX);
        let since = pos.resume_after(acked);
        let mut params = json!({});
        if let Some(s) = since {
            params["since_rowid"] = json!(s);
        }
        imsg.overflowed.store(false, Ordering::SeqCst);
        let sub = match imsg.call("watch.subscribe", params, CALL_TIMEOUT).await {
            Ok(r) => r["subscription"].clone(),
            Err(e) => return Some(failed(shared, "watch.subscribe", e)),
        };
        tracing::info!(since_rowid = ?since, subscription = %sub, "watching for new messages");
        loop {
            tokio::select! {
                _ = shared.shutdown.cancelled() => return Some(End::Shutdown),
                e = imsg.wait_exit() => return Some(End::Restart(format!("exited ({})", e.describe()))),
                _ = tx.closed() => {
                    let _ = imsg.call("watch.unsubscribe", json!({"subscription": sub}), CALL_TIMEOUT).await;
                    return None;
                }
                _ = ping.tick() => {
                    if let Err(e) = imsg.call("chats.list", json!({"limit": 1}), CALL_TIMEOUT).await {
                        return Some(failed(shared, "ping", e));
                    }
                    // A permission problem found by a send stays until an operator acts.
                    if !matches!(shared.state.get().state, "connected" | "permission") {
                        shared.state.set("connected", format!("imsg {} answers", shared.place()), true);
                    }
                }
                n = notes.recv() => {
                    let Some(n) = n else {
                        return Some(End::Restart("its output ended".into()));
                    };
                    if n["params"]["subscription"] != sub {
                        continue; // an earlier subscription's last words
                    }
                    let msg = &n["params"]["message"];
                    let Some(row) = msg["id"].as_i64() else {
                        tracing::warn!("a message notification without a row id; ignored");
                        continue;
                    };
                    match inbound(msg) {
                        Some(m) => {
                            let ev = WorkerEvent {
                                event_id: u64::try_from(row).unwrap_or(0),
                                cursor: row.to_string(),
                                event: Some(worker_event::Event::Message(m)),
                            };
                            if tx.send(Ok(ev)).await.is_err() {
                                return None;
                            }
                            pos.forwarded = pos.forwarded.max(row);
                        }
                        None => pos.skipped = pos.skipped.max(row),
                    }
                    if imsg.overflowed.load(Ordering::SeqCst) {
                        // Notifications were dropped: subscribe again from what is stored.
                        let _ = imsg.call("watch.unsubscribe", json!({"subscription": sub}), CALL_TIMEOUT).await;
                        tracing::warn!("imsg's notifications overflowed; subscribing again from the cursor");
                        continue 'subscribe;
                    }
                }
            }
        }
    }
}

/// A handle as the routing config holds it: e-mails in lower case.
pub fn normalize_handle(h: &str) -> String {
    let h = h.trim();
    if h.contains('@') {
        h.to_lowercase()
    } else {
        h.to_owned()
    }
}

/// An imsg `Message` as the contract's event; `None` for messages from this Mac, without
/// text, or without a sender.
pub fn inbound(msg: &Value) -> Option<InboundMessage> {
    if msg["is_from_me"].as_bool().unwrap_or(false) || msg["is_reaction"] == true {
        return None;
    }
    let text = msg["text"].as_str().unwrap_or_default();
    if text.trim().is_empty() {
        tracing::info!(row = %msg["id"], "skipping a message without text (attachments are not supported yet)");
        return None;
    }
    let sender = normalize_handle(msg["sender"].as_str().unwrap_or_default());
    let is_group = msg["is_group"].as_bool().unwrap_or(false);
    let chat_id = msg["chat_id"].as_i64();
    if sender.is_empty() || (is_group && chat_id.is_none()) {
        tracing::info!(row = %msg["id"], "skipping a message without a sender or chat");
        return None;
    }
    let guid = msg["guid"].as_str().unwrap_or_default();
    Some(InboundMessage {
        channel: "imessage".into(),
        account_id: "default".into(),
        // Groups by imsg's chat id (the send target); people by their handle.
        chat_id: if is_group {
            chat_id.unwrap_or_default().to_string()
        } else {
            sender.clone()
        },
        sender_id: sender,
        sender_name: msg["sender_name"].as_str().unwrap_or_default().to_owned(),
        sender_username: String::new(),
        text: text.to_owned(),
        is_group,
        mentioned: false,
        provider_message_id: if guid.is_empty() {
            msg["id"].to_string()
        } else {
            guid.to_owned()
        },
        timestamp_ms: msg["created_at"]
            .as_str()
            .and_then(parse_iso8601_ms)
            .unwrap_or_default(),
        chat_type: if is_group { "group" } else { "private" }.into(),
        chat_title: if is_group {
            msg["chat_name"].as_str().unwrap_or_default().to_owned()
        } else {
            String::new()
        },
        thread_id: String::new(),
    })
}

/// `2026-01-02T03:04:05.678Z` or `…+01:00` → milliseconds since the epoch.
pub fn parse_iso8601_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let num = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if s.get(4..5)? != "-" || !matches!(s.get(10..11)?, "T" | "t" | " ") {
        return None;
    }
    let mut rest = s.get(19..)?;
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        let first3 = format!("{digits:0<3}");
        ms = first3.get(..3)?.parse::<i64>().ok()?;
        rest = &frac[digits.len()..];
    }
    let offset_min = match rest {
        "Z" | "z" | "" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let o = o.get(1..)?.replace(':', "");
            let oh = o.get(0..2)?.parse::<i64>().ok()?;
            let om = o.get(2..4).unwrap_or("00").parse::<i64>().ok()?;
            sign * (oh * 60 + om)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_iso8601_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso8601_ms("2026-01-02T03:04:05.678Z"),
            Some(1_767_323_045_678)
        );
        assert_eq!(
            parse_iso8601_ms("2026-01-02T04:04:05.678+01:00"),
            Some(1_767_323_045_678)
        );
        assert_eq!(parse_iso8601_ms("yesterday"), None);
    }

    #[test]
    fn messages_from_me_or_without_text_are_skipped() {
        let m = json!({"id": 5, "chat_id": 3, "guid": "G5", "sender": "Bob@Example.com",
                       "is_from_me": false, "text": "hi", "created_at": "2026-01-02T03:04:05Z",
                       "is_group": false});
        let ev = inbound(&m).unwrap();
        assert_eq!(ev.chat_id, "bob@example.com");
        assert_eq!(ev.provider_message_id, "G5");
        let mut g = m.clone();
        g["is_group"] = json!(true);
        assert_eq!(inbound(&g).unwrap().chat_id, "3");
        let mut me = m.clone();
        me["is_from_me"] = json!(true);
        assert!(inbound(&me).is_none());
        let mut empty = m;
        empty["text"] = json!(" ");
        assert!(inbound(&empty).is_none());
    }

    #[test]
    fn the_resume_point_never_passes_an_unstored_row() {
        let mut p = Position {
            stored: Some(10),
            ..Position::default()
        };
        assert_eq!(p.resume_after(0), Some(10));
        p.forwarded = 12;
        p.skipped = 13;
        // 11 and 12 forwarded but only 11 stored: resume after 11, not after 13.
        assert_eq!(p.resume_after(11), Some(11));
        assert_eq!(p.resume_after(12), Some(13));
        assert_eq!(Position::default().resume_after(0), None);
    }
}
