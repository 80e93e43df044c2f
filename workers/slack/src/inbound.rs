//! Events API payloads (the `payload` of an `events_api` envelope) as the contract's
//! `InboundMessage`, and the bounded memory of messages already stored.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use serde_json::Value;
use switchboard_proto::v1::InboundMessage;

use crate::Me;

/// Message subtypes that carry a person's text; every other subtype (edits, deletions,
/// joins, bot messages, …) is skipped.
const TEXT_SUBTYPES: &[&str] = &["thread_broadcast", "file_share", "me_message"];

/// What one `event_callback` means for us.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    /// A message for the supervisor; `key` names it (`<channel>:<ts>`).
    Message {
        key: String,
        msg: Box<InboundMessage>,
    },
    /// Nothing to store (our own message, an edit, an event we do not subscribe to …):
    /// acknowledged at once. The text says why, for the debug log.
    Skip(&'static str),
}

/// Reads an envelope's payload.
pub fn parse(payload: &Value, me: &Me) -> Inbound {
    if payload["type"] != "event_callback" {
        return Inbound::Skip("not an event_callback");
    }
    let ev = &payload["event"];
    let kind = ev["type"].as_str().unwrap_or_default();
    if kind != "message" && kind != "app_mention" {
        return Inbound::Skip("an event type the worker does not handle");
    }
    if let Some(sub) = ev["subtype"].as_str()
        && !TEXT_SUBTYPES.contains(&sub)
    {
        return Inbound::Skip("a message subtype without new text");
    }
    let user = ev["user"].as_str().unwrap_or_default();
    let bot_id = ev["bot_id"].as_str().unwrap_or_default();
    if user.is_empty() || user == me.user_id || (!bot_id.is_empty() && bot_id == me.bot_id) {
        return Inbound::Skip("the bot's own message, or one without a sender");
    }
    let (Some(channel), Some(ts)) = (ev["channel"].as_str(), ev["ts"].as_str()) else {
        return Inbound::Skip("a message without channel or ts");
    };
    let raw_text = ev["text"].as_str().unwrap_or_default();
    if raw_text.trim().is_empty() {
        return Inbound::Skip("a message without text (files are not supported yet)");
    }
    let channel_type = ev["channel_type"]
        .as_str()
        .unwrap_or(if channel.starts_with('D') {
            "im"
        } else {
            "channel"
        });
    let is_dm = channel_type == "im";
    let mention = format!("<@{}>", me.user_id);
    let mentioned =
        kind == "app_mention" || (!me.user_id.is_empty() && raw_text.contains(&mention));
    let text = if me.user_id.is_empty() || me.name.is_empty() {
        raw_text.to_owned()
    } else {
        raw_text.replace(&mention, &format!("@{}", me.name))
    };
    let profile = &ev["user_profile"];
    let name = ["display_name", "real_name", "name"]
        .iter()
        .filter_map(|k| profile[*k].as_str())
        .find(|n| !n.is_empty())
        // Without a profile in the event, the user id names the sender.
        .unwrap_or(user);
    Inbound::Message {
        key: format!("{channel}:{ts}"),
        msg: Box::new(InboundMessage {
            channel: "slack".into(),
            account_id: "default".into(),
            chat_id: channel.to_owned(),
            sender_id: user.to_owned(),
            sender_name: name.to_owned(),
            sender_username: profile["name"].as_str().unwrap_or_default().to_owned(),
            text,
            is_group: !is_dm,
            mentioned,
            provider_message_id: ts.to_owned(),
            timestamp_ms: ts_millis(ts),
            chat_type: channel_type.to_owned(),
            chat_title: String::new(),
            thread_id: ev["thread_ts"].as_str().unwrap_or_default().to_owned(),
        }),
    }
}

/// `1355517523.000005` → milliseconds since the epoch (0 when it is not a number).
fn ts_millis(ts: &str) -> i64 {
    ts.parse::<f64>().map(|s| (s * 1000.0) as i64).unwrap_or(0)
}

/// The last `keep` message keys seen stored (the oldest are forgotten first).
pub struct Seen {
    inner: Mutex<(VecDeque<String>, HashSet<String>)>,
    keep: usize,
}

impl Seen {
    pub fn new(keep: usize) -> Seen {
        Seen {
            inner: Mutex::new((VecDeque::new(), HashSet::new())),
            keep,
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .contains(key)
    }

    pub fn insert(&self, key: String) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (order, set) = &mut *g;
        if set.insert(key.clone()) {
            order.push_back(key);
        }
        while order.len() > self.keep {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn me() -> Me {
        Me {
            user_id: "UBOT".into(),
            bot_id: "BBOT".into(),
            name: "switchboard".into(),
            team: "T".into(),
        }
    }

    fn payload(event: Value) -> Value {
        json!({"type": "event_callback", "event_id": "Ev1", "event": event})
    }

    #[test]
    fn dms_and_mentions_become_messages_and_the_bots_own_do_not() {
        let dm = payload(
            json!({"type": "message", "channel": "D1", "channel_type": "im",
            "user": "U1", "text": "hi", "ts": "1700000000.000100"}),
        );
        let Inbound::Message { key, msg } = parse(&dm, &me()) else {
            panic!("a DM is a message")
        };
        assert_eq!(key, "D1:1700000000.000100");
        assert!(!msg.is_group && !msg.mentioned);
        assert_eq!(msg.timestamp_ms, 1_700_000_000_000);
        let m = payload(
            json!({"type": "message", "channel": "C1", "channel_type": "channel",
            "user": "U1", "text": "<@UBOT> ping", "ts": "1.2", "thread_ts": "1.0"}),
        );
        let Inbound::Message { msg, .. } = parse(&m, &me()) else {
            panic!("a mention is a message")
        };
        assert!(msg.is_group && msg.mentioned);
        assert_eq!(msg.text, "@switchboard ping");
        assert_eq!(msg.thread_id, "1.0");
        let own = payload(json!({"type": "message", "channel": "D1", "user": "UBOT",
            "bot_id": "BBOT", "text": "[echo] hi", "ts": "2.0"}));
        assert!(matches!(parse(&own, &me()), Inbound::Skip(_)));
        let edit =
            payload(json!({"type": "message", "subtype": "message_changed", "channel": "D1"}));
        assert!(matches!(parse(&edit, &me()), Inbound::Skip(_)));
        assert!(matches!(
            parse(&json!({"nonsense": 1}), &me()),
            Inbound::Skip(_)
        ));
        assert!(matches!(parse(&json!("x"), &me()), Inbound::Skip(_)));
    }

    #[test]
    fn seen_keys_are_bounded() {
        let s = Seen::new(2);
        s.insert("a".into());
        s.insert("b".into());
        s.insert("a".into());
        s.insert("c".into());
        assert!(!s.contains("a") && s.contains("b") && s.contains("c"));
    }
}
