//! WhatsApp messages as the contract's `InboundMessage`, and `send` targets as JIDs.
//!
//! Only text (a plain or extended text message, or a media caption) is carried; other
//! message types are skipped with a log line, never an error. Status updates,
//! newsletters, broadcast lists and our own messages are never routed to the agent.

use switchboard_proto::v1::InboundMessage;
use whatsapp_rust::prelude::{Jid, MessageExt, Server};
use whatsapp_rust::types::events::InboundMessage as WaInbound;
use whatsapp_rust::wacore_binary::jid::JidExt;

/// This device's identities (phone number and LID), for mentions and replies.
#[derive(Debug, Clone, Default)]
pub struct Own {
    pub pn: Option<Jid>,
    pub lid: Option<Jid>,
}

impl Own {
    fn is_me(&self, jid_text: &str) -> bool {
        let user = jid_text.split(['@', ':']).next().unwrap_or("");
        !user.is_empty()
            && [&self.pn, &self.lid]
                .into_iter()
                .flatten()
                .any(|j| j.user.as_str() == user)
    }
}

/// Why a message was not mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    FromMe,
    NotAChat(&'static str),
    NoText,
}

/// The sender as the routing policy sees it: `+<number>` for phone numbers (as
/// `allowFrom` lists them), else the JID.
fn sender_id(sender: &Jid, alt: Option<&Jid>) -> String {
    let pick = match (sender.server, alt) {
        (Server::Pn, _) => Some(sender),
        (_, Some(a)) if a.server == Server::Pn => Some(a),
        _ => None,
    };
    match pick {
        Some(pn) => format!("+{}", pn.user),
        None => sender.to_non_ad_string(),
    }
}

pub fn inbound(m: &WaInbound, own: &Own) -> Result<InboundMessage, Skip> {
    let src = &m.info.source;
    if src.is_from_me {
        return Err(Skip::FromMe);
    }
    if src.chat.is_status_broadcast() {
        return Err(Skip::NotAChat("status update"));
    }
    if src.chat.is_newsletter() {
        return Err(Skip::NotAChat("newsletter"));
    }
    if src.chat.is_broadcast_list() {
        return Err(Skip::NotAChat("broadcast list"));
    }
    let base = m.message.get_base_message();
    let text = base
        .text_content()
        .or_else(|| base.get_caption())
        .filter(|t| !t.trim().is_empty())
        .ok_or(Skip::NoText)?
        .to_owned();
    let context = [
        base.extended_text_message
            .as_option()
            .and_then(|e| e.context_info.as_option()),
        base.image_message
            .as_option()
            .and_then(|e| e.context_info.as_option()),
        base.video_message
            .as_option()
            .and_then(|e| e.context_info.as_option()),
    ];
    let mentioned = context.iter().flatten().any(|c| {
        c.mentioned_jid.iter().any(|j| own.is_me(j))
            || c.participant.as_deref().is_some_and(|p| own.is_me(p))
    });
    let is_group = src.is_group || src.chat.is_group();
    let sender = sender_id(&src.sender, src.sender_alt.as_ref());
    Ok(InboundMessage {
        channel: "whatsapp".into(),
        account_id: "default".into(),
        chat_id: src.chat.to_non_ad_string(),
        // Stanza ids are unique within a (chat, sender) only.
        provider_message_id: format!("{}:{}", src.sender.to_non_ad_string(), m.info.id),
        sender_id: sender,
        sender_name: m.info.push_name.clone(),
        sender_username: String::new(),
        text,
        is_group,
        mentioned,
        timestamp_ms: m.info.timestamp.timestamp_millis(),
        chat_type: if is_group { "group" } else { "private" }.into(),
        chat_title: String::new(),
        thread_id: String::new(),
    })
}

/// A `send` target: `+15551234567` / `15551234567` (any spaces or dashes), a full JID
/// (`…@s.whatsapp.net`, `…@g.us`), with an optional `whatsapp:` prefix.
pub fn parse_target(to: &str) -> Option<Jid> {
    let t = to.trim();
    let t = t.strip_prefix("whatsapp:").unwrap_or(t).trim();
    if t.contains('@') {
        return t.parse::<Jid>().ok();
    }
    let digits: String = t
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')'))
        .collect();
    ((6..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()))
        .then(|| Jid::pn(digits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use whatsapp_rust::prelude::{MessageField, MessageInfo, wa};
    use whatsapp_rust::types::message::MessageSource;

    fn msg(chat: &str, sender: &str, message: wa::Message) -> WaInbound {
        let chat: Jid = chat.parse().unwrap();
        let info = MessageInfo {
            source: MessageSource {
                is_group: chat.is_group(),
                chat,
                sender: sender.parse().unwrap(),
                ..Default::default()
            },
            id: "3EB0ABC".into(),
            push_name: "Alice".into(),
            ..Default::default()
        };
        WaInbound::builder()
            .message(Arc::new(message))
            .info(Arc::new(info))
            .build()
    }

    fn text(t: &str) -> wa::Message {
        wa::Message {
            conversation: Some(t.into()),
            ..Default::default()
        }
    }

    fn own() -> Own {
        Own {
            pn: Some(Jid::pn("15550001111")),
            lid: None,
        }
    }

    #[test]
    fn a_direct_text_maps_with_a_phone_number_sender() {
        let m = inbound(
            &msg(
                "15552223333@s.whatsapp.net",
                "15552223333@s.whatsapp.net",
                text("hi"),
            ),
            &own(),
        )
        .unwrap();
        assert_eq!(m.text, "hi");
        assert_eq!(m.sender_id, "+15552223333");
        assert_eq!(m.chat_id, "15552223333@s.whatsapp.net");
        assert_eq!(m.sender_name, "Alice");
        assert_eq!(m.provider_message_id, "15552223333@s.whatsapp.net:3EB0ABC");
        assert!(!m.is_group && !m.mentioned);
    }

    #[test]
    fn group_mentions_and_replies_to_us_are_recognised() {
        let mention = wa::Message {
            extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
                text: Some("@15550001111 hello".into()),
                context_info: MessageField::some(wa::ContextInfo {
                    mentioned_jid: vec!["15550001111@s.whatsapp.net".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = inbound(
            &msg("1203630@g.us", "15552223333@s.whatsapp.net", mention),
            &own(),
        )
        .unwrap();
        assert!(m.is_group && m.mentioned);
        assert_eq!(m.chat_type, "group");
        let plain = inbound(
            &msg(
                "1203630@g.us",
                "15552223333@s.whatsapp.net",
                text("hello all"),
            ),
            &own(),
        )
        .unwrap();
        assert!(!plain.mentioned);
    }

    #[test]
    fn captions_count_as_text_and_other_types_are_skipped() {
        let image = wa::Message {
            image_message: MessageField::some(wa::message::ImageMessage {
                caption: Some("look".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let m = inbound(
            &msg(
                "15552223333@s.whatsapp.net",
                "15552223333@s.whatsapp.net",
                image,
            ),
            &own(),
        )
        .unwrap();
        assert_eq!(m.text, "look");
        let sticker = wa::Message {
            sticker_message: MessageField::some(wa::message::StickerMessage::default()),
            ..Default::default()
        };
        assert_eq!(
            inbound(
                &msg(
                    "15552223333@s.whatsapp.net",
                    "15552223333@s.whatsapp.net",
                    sticker
                ),
                &own()
            ),
            Err(Skip::NoText)
        );
        assert_eq!(
            inbound(
                &msg("status@broadcast", "15552223333@s.whatsapp.net", text("x")),
                &own()
            ),
            Err(Skip::NotAChat("status update"))
        );
    }

    #[test]
    fn targets_parse_from_numbers_and_jids() {
        assert_eq!(
            parse_target("+1 555-222-3333").unwrap().to_string(),
            "15552223333@s.whatsapp.net"
        );
        assert_eq!(
            parse_target("whatsapp:1203630@g.us").unwrap().to_string(),
            "1203630@g.us"
        );
        assert!(parse_target("bob").is_none());
        assert!(parse_target("12").is_none());
    }
}
