//! Approving who may message the agent on a channel: `pairing.list`, `pairing.approve`,
//! `pairing.reject`, `pairing.revoke` (DM pairing codes, `channels::sender_pairing`).

use serde_json::json;
use switchboard_schemas::methods::{PairingCodeParams, PairingListParams, PairingRevokeParams};

use super::{Call, Reply};
use crate::channels::outbox_store::NewDelivery;
use crate::channels::sender_pairing;
use crate::clock::now_ms;
use crate::protocol::error::RpcError;

fn channel_of(given: &str) -> String {
    given.trim().to_ascii_lowercase()
}

pub async fn list(c: Call) -> Result<Reply, RpcError> {
    let p: PairingListParams = c.parse()?;
    let channel = p.channel.as_deref().map(channel_of);
    Ok(Reply::Json(sender_pairing::list(&c.app.db, channel).await?))
}

pub async fn approve(c: Call) -> Result<Reply, RpcError> {
    let p: PairingCodeParams = c.parse()?;
    let channel = channel_of(&p.channel);
    let Some(a) = sender_pairing::approve(&c.app.db, &channel, &p.code).await? else {
        return Err(RpcError::invalid_request(format!(
            "no pending pairing code {} for {channel} (codes expire after an hour)",
            p.code.trim().to_ascii_uppercase()
        )));
    };
    tracing::info!(channel = %a.channel, sender = %a.id, "sender approved by pairing");
    let mut notified = false;
    if p.notify == Some(true) && c.app.config.channel(&channel).is_some() {
        let d = NewDelivery {
            channel: channel.clone(),
            account_id: "default".into(),
            target: a.chat_id.clone(),
            text: sender_pairing::APPROVED_TEXT.into(),
            source: "notice",
            key: Some(format!("approved:{channel}:{}:{}", a.id, now_ms())),
            session_key: None,
            thread_id: String::new(),
        };
        notified = c.app.outbox.enqueue(d).await?.created;
    }
    Ok(Reply::Json(json!({"approved": a, "notified": notified})))
}

pub async fn reject(c: Call) -> Result<Reply, RpcError> {
    let p: PairingCodeParams = c.parse()?;
    let channel = channel_of(&p.channel);
    if !sender_pairing::reject(&c.app.db, &channel, &p.code).await? {
        return Err(RpcError::invalid_request(format!(
            "no pending pairing code {} for {channel}",
            p.code.trim().to_ascii_uppercase()
        )));
    }
    Ok(Reply::Json(json!({"ok": true})))
}

pub async fn revoke(c: Call) -> Result<Reply, RpcError> {
    let p: PairingRevokeParams = c.parse()?;
    let channel = channel_of(&p.channel);
    if !sender_pairing::revoke(&c.app.db, &channel, &p.id).await? {
        return Err(RpcError::invalid_request(format!(
            "{} is not an approved {channel} sender",
            p.id.trim()
        )));
    }
    Ok(Reply::Json(json!({"ok": true})))
}
