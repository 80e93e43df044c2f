//! Outbound: one `Send` = one text to one chat, split at Telegram's length limit.
//!
//! The supervisor's outbox retries a delivery that failed for a passing reason; the
//! chunks of a long text already sent under the same delivery id are remembered (in
//! memory, bounded) so such a retry continues where it stopped instead of repeating them.

use std::collections::VecDeque;
use std::sync::Mutex;

use switchboard_proto::v1::{SendReply, SendRequest};
use teloxide_core::prelude::Requester;
use teloxide_core::types::{ChatId, Recipient};

use crate::Shared;
use crate::poll::{Verdict, classify};

/// Telegram allows 4096 characters per message; stay below it.
pub const CHUNK_CHARS: usize = 4000;
/// Deliveries whose progress is remembered.
const REMEMBERED: usize = 1024;

/// Chunks already sent per delivery id: (delivery id, chunks sent, last message id).
static PROGRESS: Mutex<VecDeque<(String, usize, String)>> = Mutex::new(VecDeque::new());

fn progress(delivery: &str) -> (usize, String) {
    PROGRESS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|(d, _, _)| d == delivery)
        .map(|(_, n, id)| (*n, id.clone()))
        .unwrap_or((0, String::new()))
}

fn record(delivery: &str, sent: usize, last_id: &str) {
    let mut p = PROGRESS.lock().unwrap_or_else(|p| p.into_inner());
    p.retain(|(d, _, _)| d != delivery);
    p.push_back((delivery.to_owned(), sent, last_id.to_owned()));
    while p.len() > REMEMBERED {
        p.pop_front();
    }
}

/// `123`, `-100123` (chat ids), `@channel`, with an optional `telegram:` / `tg:` prefix.
pub fn parse_target(to: &str) -> Option<Recipient> {
    let t = to.trim();
    let t = t
        .strip_prefix("telegram:")
        .or_else(|| t.strip_prefix("tg:"))
        .unwrap_or(t)
        .trim();
    if let Ok(id) = t.parse::<i64>() {
        return Some(Recipient::Id(ChatId(id)));
    }
    let name = t.strip_prefix('@')?;
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| Recipient::ChannelUsername(t.to_owned()))
}

/// Splits at the limit, preferring a line break in the last quarter of a chunk.
pub fn chunks(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= CHUNK_CHARS {
        return vec![text.to_owned()];
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < chars.len() {
        let mut end = (start + CHUNK_CHARS).min(chars.len());
        if end < chars.len()
            && let Some(nl) = chars[start + CHUNK_CHARS * 3 / 4..end]
                .iter()
                .rposition(|c| *c == '\n')
        {
            end = start + CHUNK_CHARS * 3 / 4 + nl + 1;
        }
        out.push(chars[start..end].iter().collect());
        start = end;
    }
    out
}

fn refused(error: impl Into<String>) -> SendReply {
    SendReply {
        error: error.into(),
        permanent: true,
        ..Default::default()
    }
}

pub async fn deliver(shared: &Shared, req: SendRequest) -> SendReply {
    let state = shared.state();
    if state.state == "unauthorized" {
        return refused("telegram refused the bot token; an operator must fix it");
    }
    let Some(target) = parse_target(&req.to) else {
        return refused(format!(
            "invalid telegram target {:?}: expected a chat id (e.g. 123456789) or @channelname",
            req.to
        ));
    };
    if req.text.trim().is_empty() {
        return refused("the message is empty");
    }
    let parts = chunks(&req.text);
    let (mut sent, mut last_id) = progress(&req.delivery_id);
    while sent < parts.len() {
        let r = tokio::select! {
            _ = shared.shutdown.cancelled() => {
                return SendReply { error: "the telegram worker is stopping".into(), ..Default::default() };
            }
            r = shared.bot.send_message(target.clone(), parts[sent].clone()).into_future() => r,
        };
        match r {
            Ok(msg) => {
                sent += 1;
                last_id = msg.id.0.to_string();
                record(&req.delivery_id, sent, &last_id);
            }
            Err(e) => {
                let v = classify(shared, &e);
                tracing::warn!(delivery = %req.delivery_id, chunk = sent, verdict = ?v, "sendMessage failed");
                return match v {
                    Verdict::Unauthorized => {
                        shared.set_state(
                            "unauthorized",
                            "Telegram refused the bot token (401 Unauthorized): fix channels.telegram.botToken",
                            false,
                        );
                        refused("telegram refused the bot token (401 Unauthorized)")
                    }
                    Verdict::RetryAfter(d) => SendReply {
                        error: format!("rate limited by telegram (retry after {} s)", d.as_secs()),
                        retry_after_ms: d.as_millis() as u64,
                        ..Default::default()
                    },
                    Verdict::Transient(m) => SendReply {
                        error: m,
                        ..Default::default()
                    },
                    Verdict::Permanent(m) => refused(format!("telegram refused the message: {m}")),
                };
            }
        }
    }
    SendReply {
        provider_message_id: last_id,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert!(matches!(
            parse_target("123"),
            Some(Recipient::Id(ChatId(123)))
        ));
        assert!(matches!(
            parse_target("tg:-100200"),
            Some(Recipient::Id(ChatId(-100200)))
        ));
        assert!(
            matches!(parse_target(" telegram:@news_1 "), Some(Recipient::ChannelUsername(n)) if n == "@news_1")
        );
        assert!(parse_target("bob").is_none());
        assert!(parse_target("@").is_none());
    }

    #[test]
    fn long_texts_split_at_line_breaks_below_the_limit() {
        assert_eq!(chunks("short"), vec!["short"]);
        let line = "x".repeat(99) + "\n";
        let text = line.repeat(100); // 10 000 chars
        let parts = chunks(&text);
        assert!(parts.len() >= 3);
        assert!(
            parts
                .iter()
                .all(|p| p.chars().count() <= CHUNK_CHARS && p.ends_with('\n'))
        );
        assert_eq!(parts.concat(), text);
        let wide = "é".repeat(CHUNK_CHARS + 1);
        assert_eq!(chunks(&wide).len(), 2);
    }
}
