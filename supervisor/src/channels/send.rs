//! The `send` method: an operator's message to a chat, through the durable outbox.
//!
//! The delivery is committed to the outbox before anything is answered. The response
//! then waits for the provider's verdict (at most [`SEND_WAIT`], off the connection's
//! read loop): delivered → `{runId, messageId, channel, chatId}`; refused → `UNAVAILABLE`
//! with the provider's reason; still queued (worker down, rate limited) → `UNAVAILABLE`
//! `retryable`, and a retry with the same `idempotencyKey` returns the first result.
//! The key is bound to its route (channel and account): reused on another route it is
//! refused, as in the v4 reference.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::methods::{SendParams, SendResult};

use crate::app::App;
use crate::channels::outbox_store::{NewDelivery, Outcome};
use crate::channels::providers;
use crate::events::hub::ConnHandle;
use crate::protocol::error::RpcError;
use crate::protocol::frame;
use crate::state::history::canonical_session_key;

/// How long a `send` response waits for the delivery before answering "queued".
pub const SEND_WAIT: Duration = Duration::from_secs(20);

/// The channel a `send` goes to: the one named, else the only one configured.
pub fn resolve_channel(
    app: &App,
    version: ProtocolVersion,
    given: Option<&str>,
) -> Result<String, RpcError> {
    let configured: Vec<&str> = app
        .config
        .channels
        .iter()
        .map(|c| c.channel.as_str())
        .collect();
    match given
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
    {
        Some(c) if configured.contains(&c.as_str()) => Ok(c),
        Some(c) => Err(RpcError::invalid_request(format!(
            "unsupported channel: {c}"
        ))),
        None => match configured.as_slice() {
            [only] => Ok((*only).to_owned()),
            [] => Err(RpcError::invalid_request(match version {
                // v3 defaulted to one channel and named it.
                ProtocolVersion::V3 => {
                    format!(
                        "unsupported channel: {}",
                        providers::V3_DEFAULT_SEND_CHANNEL
                    )
                }
                ProtocolVersion::V4 => format!(
                    "Error: Channel is required (no configured channels detected). \
                     Configure one in config.json5 ({}), or pass channel.",
                    providers::ALL
                        .iter()
                        .map(|p| format!("channels.{}", p.id))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })),
            many => Err(RpcError::invalid_request(format!(
                "Error: Channel is required when multiple channels are configured: {}. Pass channel to choose one.",
                many.join(", ")
            ))),
        },
    }
}

/// Enqueues; the answer is sent later on `conn` (`None`), or at once when the key was
/// used before and its result is known (`Some`).
pub async fn send(
    app: &Arc<App>,
    conn: &Arc<ConnHandle>,
    request_id: &str,
    p: SendParams,
) -> Result<Option<serde_json::Value>, RpcError> {
    if p.media_url.is_some() || p.media_urls.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(RpcError::invalid_request(
            "media is not supported yet: send the text only (mediaUrl / mediaUrls)",
        ));
    }
    let channel = resolve_channel(app, conn.version, p.channel.as_deref())?;
    let account_id = p
        .account_id
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .unwrap_or("default")
        .to_owned();
    let to = p.to.trim().to_owned();
    let text = p.message.trim().to_owned();
    if to.is_empty() || text.is_empty() {
        return Err(RpcError::invalid_request(
            "invalid send params: to and message must not be blank",
        ));
    }
    let session_key = match p
        .session_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        Some(k) => canonical_session_key(Some(k), None),
        None => {
            let group = providers::get(&channel).is_some_and(|p| (p.is_group_target)(&to));
            providers::session_key(&channel, &to, &to, group)
        }
    };
    let row = app
        .outbox
        .enqueue(NewDelivery {
            channel: channel.clone(),
            account_id,
            target: to.clone(),
            text,
            source: "send",
            key: Some(format!("send:{}", p.idempotency_key)),
            session_key: Some(session_key),
            thread_id: String::new(),
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot queue a send");
            RpcError::unavailable("the gateway's database is unavailable; retry later")
        })?;
    if !row.same_route {
        return Err(RpcError::invalid_request(
            "idempotency key is already bound to a different message route",
        ));
    }
    let run_id = p.idempotency_key.clone();
    if let Some(outcome) = &row.outcome {
        return answer(&run_id, &row.channel, &row.target, outcome).map(Some);
    }
    if !row.created {
        tracing::debug!(delivery = %row.id, "send repeated while in flight: waiting for the first one");
    }
    let (app, conn, request_id) = (Arc::clone(app), Arc::clone(conn), request_id.to_owned());
    tokio::spawn(async move {
        let frame = match app.outbox.wait(&row.id, SEND_WAIT).await {
            Some(outcome) => match answer(&run_id, &row.channel, &row.target, &outcome) {
                Ok(payload) => frame::ok(&request_id, &payload),
                Err(e) => {
                    app.metrics.error(e.code);
                    frame::err(&request_id, &e)
                }
            },
            None => {
                let state = app
                    .workers()
                    .health_of(&row.channel)
                    .map(|w| w.provider_state.unwrap_or(w.state))
                    .unwrap_or_else(|_| "unknown".into());
                let mut e = RpcError::unavailable(format!(
                    "queued for delivery: the {} worker has not delivered it yet (state: {state}); \
                     it will be delivered when it can; retry with the same idempotencyKey for the result",
                    row.channel
                ))
                .with_details(json!({"status": "queued", "deliveryId": row.id}));
                e.retryable = Some(true);
                e.retry_after_ms = Some(5_000);
                app.metrics.error(e.code);
                frame::err(&request_id, &e)
            }
        };
        app.hub.send_direct(&conn, frame);
    });
    Ok(None)
}

fn answer(
    run_id: &str,
    channel: &str,
    to: &str,
    o: &Outcome,
) -> Result<serde_json::Value, RpcError> {
    match o {
        Outcome::Delivered { message_id } => Ok(serde_json::to_value(SendResult {
            run_id: run_id.to_owned(),
            message_id: message_id.clone(),
            channel: channel.to_owned(),
            chat_id: Some(to.to_owned()),
        })
        .unwrap_or_default()),
        Outcome::Failed { error } => Err(RpcError::unavailable(error.clone())),
        Outcome::Unrecorded { verdict, error } => {
            let mut e = RpcError::unavailable(format!(
                "not confirmed: the {channel} worker reported {verdict}, but the gateway could not \
                 record it ({error}); the delivery stays open until it is recorded. Do not send \
                 it again under a new key; retry with the same idempotencyKey for the result"
            ))
            .with_details(json!({"status": "unrecorded"}));
            e.retryable = Some(true);
            Err(e)
        }
    }
}
