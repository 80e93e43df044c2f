//! Outbound: one `Send` = one text to one chat, split at Telegram's length limit.
//!
//! The supervisor's outbox retries a delivery that failed for a passing reason; the
//! chunks of a long text already sent under the same delivery id are remembered (in
//! memory, bounded) so such a retry continues where it stopped instead of repeating them.

use switchboard_proto::v1::SendRequest;
use teloxide_core::prelude::Requester;
use teloxide_core::types::{ChatId, Recipient};
use worker_runtime::channel::Delivery;
use worker_runtime::text::{Progress, chunks};

use crate::Shared;
use crate::poll::{Verdict, classify};

/// Telegram allows 4096 characters per message; stay below it.
pub const CHUNK_CHARS: usize = 4000;
/// Chunks already sent, per delivery id (the last 1024 deliveries).
static PROGRESS: Progress = Progress::new(1024);

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

pub async fn deliver(shared: &Shared, req: SendRequest) -> Delivery {
    let state = shared.state.get();
    if state.state == "unauthorized" {
        return Delivery::Refused("telegram refused the bot token; an operator must fix it".into());
    }
    let Some(target) = parse_target(&req.to) else {
        return Delivery::Refused(format!(
            "invalid telegram target {:?}: expected a chat id (e.g. 123456789) or @channelname",
            req.to
        ));
    };
    if req.text.trim().is_empty() {
        return Delivery::Refused("the message is empty".into());
    }
    let parts = chunks(&req.text, CHUNK_CHARS);
    let (mut sent, mut last_id) = PROGRESS.of(&req.delivery_id);
    while sent < parts.len() {
        let r = tokio::select! {
            _ = shared.shutdown.cancelled() => {
                return Delivery::Retry("the telegram worker is stopping".into());
            }
            r = shared.bot.send_message(target.clone(), parts[sent].clone()).into_future() => r,
        };
        match r {
            Ok(msg) => {
                sent += 1;
                last_id = msg.id.0.to_string();
                PROGRESS.record(&req.delivery_id, sent, &last_id);
            }
            Err(e) => {
                let v = classify(shared, &e);
                tracing::warn!(delivery = %req.delivery_id, chunk = sent, verdict = ?v, "sendMessage failed");
                return match v {
                    Verdict::Unauthorized => {
                        shared.state.set(
                            "unauthorized",
                            "Telegram refused the bot token (401 Unauthorized): fix channels.telegram.botToken",
                            false,
                        );
                        Delivery::Refused(
                            "telegram refused the bot token (401 Unauthorized)".into(),
                        )
                    }
                    Verdict::RetryAfter(d) => Delivery::RetryAfter {
                        after: d,
                        error: format!("rate limited by telegram (retry after {} s)", d.as_secs()),
                    },
                    Verdict::Transient(m) => Delivery::Retry(m),
                    Verdict::Permanent(m) => {
                        Delivery::Refused(format!("telegram refused the message: {m}"))
                    }
                };
            }
        }
    }
    Delivery::Delivered(last_id)
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
}
