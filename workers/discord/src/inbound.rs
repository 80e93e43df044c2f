//! A `MESSAGE_CREATE` dispatch as the contract's `InboundMessage`.
//!
//! DMs (no `guild_id`) and guild channel messages both come; the supervisor's routing
//! decides which are answered. The bot's own messages and other bots' are dropped here
//! (two bots answering each other would never stop), and so are system messages (joins,
//! pins) and messages without text.

use serde_json::Value;
use switchboard_proto::v1::InboundMessage;

use crate::Me;

/// Discord's epoch (2015-01-01) in Unix ms: a snowflake's top 42 bits count from it.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// `DEFAULT` and `REPLY` messages: what people type.
const TEXT_TYPES: [u64; 2] = [0, 19];

pub fn message(d: &Value, me: &Me) -> Option<InboundMessage> {
    let id = d["id"].as_str()?;
    let channel_id = d["channel_id"].as_str()?;
    let author = &d["author"];
    let author_id = author["id"].as_str()?;
    if author_id == me.id {
        return None;
    }
    if author["bot"].as_bool() == Some(true) || d["webhook_id"].is_string() {
        tracing::debug!(message = id, "skipping a message from a bot or webhook");
        return None;
    }
    if !TEXT_TYPES.contains(&d["type"].as_u64().unwrap_or(0)) {
        return None;
    }
    let content = d["content"].as_str().unwrap_or_default();
    if content.trim().is_empty() {
        tracing::info!(
            message = id,
            channel = channel_id,
            "skipping a message without text (attachments are not supported yet; in a guild channel without a mention, Message Content must be enabled)"
        );
        return None;
    }
    let guild = d["guild_id"].as_str().filter(|g| !g.is_empty());
    let username = author["username"].as_str().unwrap_or_default();
    let name = author["global_name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or(username);
    Some(InboundMessage {
        channel: "discord".into(),
        account_id: "default".into(),
        chat_id: channel_id.to_owned(),
        sender_id: author_id.to_owned(),
        sender_name: name.to_owned(),
        sender_username: username.to_owned(),
        text: readable_mentions(content, me),
        is_group: guild.is_some(),
        mentioned: mentions_bot(d, content, me),
        provider_message_id: id.to_owned(),
        timestamp_ms: snowflake_ms(id) as i64,
        chat_type: if guild.is_some() { "guild" } else { "dm" }.into(),
        chat_title: String::new(),
        thread_id: String::new(),
    })
}

/// A mention of the bot (in `mentions` or as `<@id>` in the text), or a reply to it.
fn mentions_bot(d: &Value, content: &str, me: &Me) -> bool {
    let listed = d["mentions"]
        .as_array()
        .is_some_and(|m| m.iter().any(|u| u["id"].as_str() == Some(me.id.as_str())));
    let in_text =
        content.contains(&format!("<@{}>", me.id)) || content.contains(&format!("<@!{}>", me.id));
    let reply_to_bot = d["referenced_message"]["author"]["id"].as_str() == Some(me.id.as_str());
    listed || in_text || reply_to_bot
}

/// `<@123>` of the bot as `@name`, so the agent reads who was addressed.
fn readable_mentions(content: &str, me: &Me) -> String {
    if me.id.is_empty() {
        return content.to_owned();
    }
    let handle = format!("@{}", me.username);
    content
        .replace(&format!("<@{}>", me.id), &handle)
        .replace(&format!("<@!{}>", me.id), &handle)
}

/// The creation time a snowflake carries, in Unix ms (0 for a malformed id).
pub fn snowflake_ms(id: &str) -> u64 {
    id.parse::<u64>()
        .map(|n| (n >> 22) + DISCORD_EPOCH_MS)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn me() -> Me {
        Me {
            id: "900".into(),
            username: "sb".into(),
        }
    }

    #[test]
    fn dms_and_mentions_become_messages_and_the_bots_own_do_not() {
        let dm = json!({"id": "175928847299117063", "channel_id": "5", "type": 0, "content": "hi",
            "author": {"id": "42", "username": "alice", "global_name": "Alice"}});
        let m = message(&dm, &me()).unwrap();
        assert_eq!(
            (m.chat_id.as_str(), m.sender_id.as_str(), m.is_group),
            ("5", "42", false)
        );
        assert_eq!(m.sender_name, "Alice");
        assert_eq!(m.timestamp_ms, 1_462_015_105_796);
        let g = json!({"id": "2", "channel_id": "7", "guild_id": "1", "type": 0,
            "content": "<@900> ping", "mentions": [{"id": "900"}], "author": {"id": "42", "username": "alice"}});
        let m = message(&g, &me()).unwrap();
        assert!(m.is_group && m.mentioned);
        assert_eq!(m.text, "@sb ping");
        let reply = json!({"id": "3", "channel_id": "7", "guild_id": "1", "type": 19, "content": "yes",
            "referenced_message": {"author": {"id": "900"}}, "author": {"id": "42", "username": "a"}});
        assert!(message(&reply, &me()).unwrap().mentioned);
        let own = json!({"id": "4", "channel_id": "7", "type": 0, "content": "x", "author": {"id": "900"}});
        assert!(message(&own, &me()).is_none());
        let bot = json!({"id": "5", "channel_id": "7", "type": 0, "content": "x", "author": {"id": "1", "bot": true}});
        assert!(message(&bot, &me()).is_none());
        let join =
            json!({"id": "6", "channel_id": "7", "type": 7, "content": "", "author": {"id": "42"}});
        assert!(message(&join, &me()).is_none());
        assert!(
            message(&json!({"id": 5}), &me()).is_none(),
            "malformed: skipped"
        );
    }
}
