//! Outbound: one `Send` = one text to one channel (or to a user, through the DM channel
//! `POST /users/@me/channels` opens), split at Discord's 2,000-character limit.
//!
//! Exactly once: each part carries a `nonce` derived from the delivery id and the part's
//! index, with `enforce_nonce`, so Discord returns the message already created instead
//! of creating a second one when a part is sent again (an answer lost to a timeout or a
//! crash). The parts already sent in this worker's life are also remembered, so a retry
//! of a delivery continues where it stopped.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::json;
use switchboard_proto::v1::SendRequest;
use worker_runtime::channel::Delivery;
use worker_runtime::text::{Progress, chunks};

use crate::Shared;
use crate::rest::{self, RestError};

/// Discord's limit on a message's `content`.
pub const CHUNK_CHARS: usize = 2000;
/// Parts already sent, per delivery id (the last 1024 deliveries).
static PROGRESS: Progress = Progress::new(1024);
/// DM channels opened, by user id (at most this many; then forgotten and reopened).
const DM_CACHE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Channel(String),
    User(String),
}

/// `channel:<id>`, `<#id>` or a bare id: a channel; `user:<id>`, `<@id>`: a person.
/// An optional `discord:` prefix.
pub fn parse_target(to: &str) -> Option<Target> {
    let t = to.trim();
    let t = t.strip_prefix("discord:").unwrap_or(t).trim();
    let id = |s: &str| {
        let s = s.trim();
        ((1..=20).contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit())).then(|| s.to_owned())
    };
    if let Some(u) = t.strip_prefix("user:") {
        return id(u).map(Target::User);
    }
    if let Some(m) = t.strip_prefix("<@").and_then(|m| m.strip_suffix('>')) {
        return id(m.strip_prefix('!').unwrap_or(m)).map(Target::User);
    }
    if let Some(c) = t.strip_prefix("<#").and_then(|c| c.strip_suffix('>')) {
        return id(c).map(Target::Channel);
    }
    id(t.strip_prefix("channel:").unwrap_or(t)).map(Target::Channel)
}

/// A stable nonce of at most 25 characters (Discord's limit) for a delivery's part.
pub fn nonce(delivery: &str, part: usize) -> String {
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in delivery.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("sb{h:016x}{part}").chars().take(25).collect()
}

static DMS: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

async fn dm_channel(shared: &Shared, user: &str) -> Result<String, RestError> {
    if let Some(c) = DMS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|m| m.get(user).cloned())
    {
        return Ok(c);
    }
    let v = rest::call(
        shared,
        reqwest::Method::POST,
        "/users/@me/channels",
        Some(&json!({"recipient_id": user})),
    )
    .await?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| {
            RestError::Transient("POST /users/@me/channels answered without an id".into())
        })?
        .to_owned();
    let mut dms = DMS.lock().unwrap_or_else(|p| p.into_inner());
    let map = dms.get_or_insert_with(HashMap::new);
    if map.len() >= DM_CACHE {
        map.clear();
    }
    map.insert(user.to_owned(), id.clone());
    Ok(id)
}

pub async fn deliver(shared: &Shared, req: SendRequest) -> Delivery {
    let state = shared.state.get();
    if state.state == "unauthorized" {
        return Delivery::Refused("discord refused the bot token; an operator must fix it".into());
    }
    if !state.restartable {
        return Delivery::Retry(format!(
            "the discord worker waits for an operator: {}",
            state.detail
        ));
    }
    let Some(target) = parse_target(&req.to) else {
        return Delivery::Refused(format!(
            "invalid discord target {:?}: expected channel:<id> (or a bare channel id) or user:<id>",
            req.to
        ));
    };
    if req.text.trim().is_empty() {
        return Delivery::Refused("the message is empty".into());
    }
    let channel = if !req.thread_id.trim().is_empty() {
        // A thread is a channel of its own.
        Ok(req.thread_id.trim().to_owned())
    } else {
        match &target {
            Target::Channel(c) => Ok(c.clone()),
            Target::User(u) => dm_channel(shared, u).await,
        }
    };
    let channel = match channel {
        Ok(c) => c,
        Err(e) => return verdict(shared, &req, "POST /users/@me/channels", e),
    };
    let parts = chunks(&req.text, CHUNK_CHARS);
    let (mut sent, mut last_id) = PROGRESS.of(&req.delivery_id);
    let path = format!("/channels/{channel}/messages");
    while sent < parts.len() {
        let body = json!({
            "content": parts[sent],
            "nonce": nonce(&req.delivery_id, sent),
            "enforce_nonce": true,
            // The agent's text never pings @everyone, roles or people by accident.
            "allowed_mentions": {"parse": []},
        });
        match rest::call(shared, reqwest::Method::POST, &path, Some(&body)).await {
            Ok(v) => {
                sent += 1;
                last_id = v["id"].as_str().unwrap_or_default().to_owned();
                PROGRESS.record(&req.delivery_id, sent, &last_id);
            }
            Err(e) => return verdict(shared, &req, "POST /channels/{id}/messages", e),
        }
    }
    Delivery::Delivered(last_id)
}

fn verdict(shared: &Shared, req: &SendRequest, what: &str, e: RestError) -> Delivery {
    tracing::warn!(delivery = %req.delivery_id, error = %e, "{what} failed");
    match e {
        RestError::Unauthorized => {
            shared.unauthorized("401 Unauthorized from the REST API");
            Delivery::Refused("discord refused the bot token (401 Unauthorized)".into())
        }
        RestError::RateLimited(after) => Delivery::RetryAfter {
            after,
            error: format!(
                "rate limited by discord (retry after {} ms)",
                after.as_millis()
            ),
        },
        RestError::Refused(m) => Delivery::Refused(format!("discord refused the message: {m}")),
        RestError::Transient(m) => Delivery::Retry(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(parse_target("123"), Some(Target::Channel("123".into())));
        assert_eq!(parse_target("channel:9"), Some(Target::Channel("9".into())));
        assert_eq!(parse_target("<#9>"), Some(Target::Channel("9".into())));
        assert_eq!(
            parse_target(" discord:user:42 "),
            Some(Target::User("42".into()))
        );
        assert_eq!(parse_target("<@!42>"), Some(Target::User("42".into())));
        assert_eq!(parse_target("bob"), None);
        assert_eq!(parse_target("user:"), None);
    }

    #[test]
    fn nonces_are_stable_short_and_distinct_per_part() {
        let a = nonce("d3b07384-d9a0-4c3f-9f3a-5f4e2d1c0b9a", 0);
        assert_eq!(a, nonce("d3b07384-d9a0-4c3f-9f3a-5f4e2d1c0b9a", 0));
        assert_ne!(a, nonce("d3b07384-d9a0-4c3f-9f3a-5f4e2d1c0b9a", 1));
        assert_ne!(a, nonce("other", 0));
        assert!(a.len() <= 25);
    }
}
