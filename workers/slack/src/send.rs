//! Outbound: one `Send` = one text to one conversation, as `chat.postMessage` calls (one
//! per part of a text split at 4000 characters), into the request's thread if it has one.
//!
//! The supervisor's outbox retries a delivery that failed for a passing reason; the parts
//! of a long text already posted under the same delivery id are remembered (in memory,
//! bounded) so such a retry continues where it stopped instead of repeating them.

use switchboard_proto::v1::SendRequest;
use worker_runtime::channel::Delivery;
use worker_runtime::text::{Progress, chunks};

use crate::Shared;
use crate::api::Verdict;

/// Slack truncates a message's text at 40 000 characters and advises staying under 4000
/// (chat.postMessage, "Truncating content").
pub const CHUNK_CHARS: usize = 4000;
/// Parts already posted, per delivery id (the last 1024 deliveries).
static PROGRESS: Progress = Progress::new(1024);

/// A conversation id (`C…`, `G…`, `D…`) or a user id (`U…`, `W…`: their DM with the
/// app), with an optional `slack:`, `channel:` or `user:` prefix.
pub fn parse_target(to: &str) -> Option<String> {
    let mut t = to.trim();
    for p in ["slack:", "channel:", "user:"] {
        t = t.strip_prefix(p).unwrap_or(t).trim();
    }
    let ok = t.len() >= 2
        && t.len() <= 32
        && t.starts_with(['C', 'G', 'D', 'U', 'W'])
        && t.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    ok.then(|| t.to_owned())
}

pub async fn deliver(shared: &Shared, req: SendRequest) -> Delivery {
    if shared.state.needs_operator() {
        return Delivery::Refused(
            "slack refused a token; an operator must fix channels.slack and restart the worker"
                .into(),
        );
    }
    let Some(channel) = parse_target(&req.to) else {
        return Delivery::Refused(format!(
            "invalid slack target {:?}: expected a channel id (C…, G…, D…) or a user id (U…)",
            req.to
        ));
    };
    if req.text.trim().is_empty() {
        return Delivery::Refused("the message is empty".into());
    }
    let thread = (!req.thread_id.is_empty()).then_some(req.thread_id.as_str());
    let parts = chunks(&req.text, CHUNK_CHARS);
    let (mut sent, mut last_ts) = PROGRESS.of(&req.delivery_id);
    while sent < parts.len() {
        let r = tokio::select! {
            _ = shared.shutdown.cancelled() => {
                return Delivery::Retry("the slack worker is stopping".into());
            }
            r = shared.api.post_message(&channel, &parts[sent], thread) => r,
        };
        match r {
            Ok(ts) => {
                sent += 1;
                last_ts = ts;
                PROGRESS.record(&req.delivery_id, sent, &last_ts);
            }
            Err(v) => {
                tracing::warn!(delivery = %req.delivery_id, part = sent, verdict = ?v, "chat.postMessage failed");
                return match v {
                    Verdict::Unauthorized(code) => {
                        shared.token_refused(&code, "bot token");
                        Delivery::Refused(format!("slack refused the bot token ({code})"))
                    }
                    Verdict::RetryAfter(d) => Delivery::RetryAfter {
                        after: d,
                        error: format!("rate limited by slack (retry after {} ms)", d.as_millis()),
                    },
                    Verdict::Transient(m) => Delivery::Retry(m),
                    Verdict::Permanent(code) => {
                        Delivery::Refused(format!("slack refused the message: {code}"))
                    }
                };
            }
        }
    }
    Delivery::Delivered(last_ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(parse_target("C0123ABC").as_deref(), Some("C0123ABC"));
        assert_eq!(parse_target(" slack:U42 ").as_deref(), Some("U42"));
        assert_eq!(parse_target("channel:G7").as_deref(), Some("G7"));
        assert!(parse_target("#general").is_none());
        assert!(parse_target("x123").is_none());
        assert!(parse_target("C").is_none());
        assert!(parse_target("C12 3").is_none());
    }
}
