//! Inbound: `getMe`, then long polling. The offset moves past a batch of updates only
//! once the supervisor acknowledged every event of it.

use std::sync::Arc;
use std::time::Duration;

use switchboard_proto::v1::{InboundMessage, WorkerEvent, worker_event};
use teloxide_core::RequestError;
use teloxide_core::payloads::GetUpdatesSetters;
use teloxide_core::prelude::Requester;
use teloxide_core::types::{AllowedUpdate, Me, Message, MessageEntityKind, UpdateKind};

use crate::Shared;

/// How long to wait for the supervisor's acknowledgement of a batch before asking again.
const ACK_WAIT: Duration = Duration::from_secs(60);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What a failed Bot API call means for us.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The token was refused (401): stop calling Telegram.
    Unauthorized,
    /// Flood control: wait this long.
    RetryAfter(Duration),
    /// Network trouble or a server error: try again later.
    Transient(String),
    /// The request itself was refused (chat not found, bot blocked, …).
    Permanent(String),
}

/// Classifies an error; texts have the bot token removed.
pub fn classify(shared: &Shared, e: &RequestError) -> Verdict {
    use teloxide_core::ApiError;
    match e {
        RequestError::Api(ApiError::InvalidToken) => Verdict::Unauthorized,
        RequestError::RetryAfter(s) => Verdict::RetryAfter(s.duration()),
        RequestError::Api(ApiError::Unknown(desc)) if is_server_error(desc) => {
            Verdict::Transient(format!("telegram server error: {}", redact(shared, desc)))
        }
        RequestError::Api(ApiError::TerminatedByOtherGetUpdates) => Verdict::Transient(
            "another client is polling this bot (409 Conflict): only one may; stop the other one"
                .into(),
        ),
        RequestError::Api(api) => Verdict::Permanent(redact(shared, &api.to_string())),
        RequestError::MigrateToChatId(id) => Verdict::Permanent(format!(
            "the group became a supergroup; send to chat {id} instead"
        )),
        RequestError::Network(n) => {
            let what = if n.is_timeout() {
                "timed out"
            } else if n.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            // reqwest's text names the URL, which holds the token: redact it.
            Verdict::Transient(format!(
                "network: {what}: {}",
                redact(shared, &source_chain(n.as_ref()))
            ))
        }
        RequestError::InvalidJson { .. } => {
            Verdict::Transient("telegram answered something that is not the Bot API's JSON".into())
        }
        RequestError::Io(e) => Verdict::Transient(format!("i/o: {e}")),
    }
}

fn is_server_error(desc: &str) -> bool {
    [
        "Internal Server Error",
        "Bad Gateway",
        "Service Unavailable",
        "Gateway Timeout",
    ]
    .iter()
    .any(|p| desc.starts_with(p))
}

fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Removes the bot token from a text meant for a log or an error.
pub fn redact(shared: &Shared, text: &str) -> String {
    let token = shared.bot.token();
    if token.is_empty() {
        text.to_owned()
    } else {
        text.replace(token, "<bot-token>")
    }
}

fn unauthorized(shared: &Shared) {
    shared.state.set(
        "unauthorized",
        "Telegram refused the bot token (401 Unauthorized): fix channels.telegram.botToken, then `switchboard workers restart telegram`",
        false,
    );
    tracing::error!(
        "the bot token was refused; no more calls to Telegram until the worker is restarted"
    );
}

/// Sleeps unless shut down first; `false` when shut down.
async fn pause(shared: &Shared, d: Duration) -> bool {
    tokio::select! {
        _ = shared.shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// Handles a failed call's verdict; `false` when the poller must stop.
async fn failed(
    shared: &Shared,
    what: &str,
    v: Verdict,
    backoff: &mut worker_runtime::backoff::Backoff,
) -> bool {
    match v {
        Verdict::Unauthorized => {
            unauthorized(shared);
            false
        }
        Verdict::RetryAfter(d) => {
            shared.state.set(
                "backoff",
                format!("{what}: rate limited, retrying after {} s", d.as_secs()),
                true,
            );
            pause(shared, d).await
        }
        Verdict::Transient(msg) | Verdict::Permanent(msg) => {
            let d = backoff.next_delay();
            tracing::warn!(delay_ms = d.as_millis() as u64, "{what} failed: {msg}");
            shared.state.set("backoff", format!("{what}: {msg}"), true);
            pause(shared, d).await
        }
    }
}

pub async fn run(shared: Arc<Shared>) {
    let mut backoff = worker_runtime::backoff::Backoff::new(BACKOFF_START, BACKOFF_MAX);
    let me = loop {
        let r = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = shared.bot.get_me() => r,
        };
        match r {
            Ok(me) => break me,
            Err(e) => {
                let v = classify(&shared, &e);
                if !failed(&shared, "getMe", v, &mut backoff).await {
                    return;
                }
            }
        }
    };
    backoff.reset();
    *shared.username.lock().unwrap_or_else(|p| p.into_inner()) = me.user.username.clone();
    tracing::info!(bot = ?me.user.username, "bot token accepted");
    shared.state.set("polling", "", true);

    let mut offset: Option<u32> = None;
    loop {
        // Nothing is polled while no supervisor listens: updates stay with Telegram.
        let Some(tx) = shared.events.listener(&shared.shutdown).await else {
            return;
        };
        let mut request = shared
            .bot
            .get_updates()
            .timeout(shared.poll_timeout)
            .allowed_updates(vec![AllowedUpdate::Message]);
        if let Some(o) = offset {
            request = request.offset(o as i32);
        }
        let r = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            r = request.into_future() => r,
        };
        let updates = match r {
            Ok(u) => u,
            Err(e) => {
                let v = classify(&shared, &e);
                if !failed(&shared, "getUpdates", v, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        if shared.state.get().state != "polling" {
            shared.state.set("polling", "", true);
        }
        let Some(last) = updates.iter().map(|u| u.id.0).max() else {
            continue;
        };
        let mut last_event = 0u64;
        let mut delivered = true;
        for u in &updates {
            let UpdateKind::Message(msg) = &u.kind else {
                tracing::debug!(update = u.id.0, "skipping an update that is not a message");
                continue;
            };
            let Some(m) = inbound(msg, &me) else {
                tracing::info!(
                    update = u.id.0,
                    chat = msg.chat.id.0,
                    "skipping a message without text (media is not supported yet)"
                );
                continue;
            };
            let ev = WorkerEvent {
                event_id: u64::from(u.id.0),
                cursor: String::new(),
                event: Some(worker_event::Event::Message(m)),
            };
            if tx.send(Ok(ev)).await.is_err() {
                delivered = false;
                break;
            }
            last_event = u64::from(u.id.0);
        }
        if !delivered {
            continue; // the supervisor went away: poll the same offset again later
        }
        if last_event > 0
            && !shared
                .events
                .acked(last_event, &tx, ACK_WAIT, &shared.shutdown)
                .await
        {
            tracing::warn!(
                update = last_event,
                "the supervisor did not acknowledge; asking Telegram again"
            );
            continue;
        }
        offset = Some(last + 1);
    }
}

/// An incoming message as the contract's event; `None` for messages without text.
pub fn inbound(msg: &Message, me: &Me) -> Option<InboundMessage> {
    let text = msg.text().or(msg.caption())?.to_owned();
    let chat = &msg.chat;
    let from = msg.from.as_ref();
    let chat_type = if chat.is_private() {
        "private"
    } else if chat.is_group() {
        "group"
    } else if chat.is_supergroup() {
        "supergroup"
    } else {
        "channel"
    };
    Some(InboundMessage {
        channel: "telegram".into(),
        account_id: "default".into(),
        chat_id: chat.id.0.to_string(),
        sender_id: from.map(|u| u.id.0.to_string()).unwrap_or_default(),
        sender_name: from.map(|u| u.full_name()).unwrap_or_default(),
        sender_username: from.and_then(|u| u.username.clone()).unwrap_or_default(),
        text,
        is_group: !chat.is_private(),
        mentioned: mentions_bot(msg, me),
        provider_message_id: msg.id.0.to_string(),
        timestamp_ms: msg.date.timestamp_millis(),
        chat_type: chat_type.into(),
        chat_title: chat.title().unwrap_or_default().to_owned(),
        thread_id: String::new(),
    })
}

/// `@botname`, a text mention of the bot, `/command@botname`, or a reply to the bot.
fn mentions_bot(msg: &Message, me: &Me) -> bool {
    let handle = me
        .user
        .username
        .as_deref()
        .map(|u| format!("@{u}").to_lowercase());
    let entities = msg
        .parse_entities()
        .or_else(|| msg.parse_caption_entities())
        .unwrap_or_default();
    let by_entity = entities.iter().any(|e| match e.kind() {
        MessageEntityKind::Mention => handle.as_deref() == Some(e.text().to_lowercase().as_str()),
        MessageEntityKind::TextMention { user } => user.id == me.user.id,
        MessageEntityKind::BotCommand => handle
            .as_deref()
            .is_some_and(|h| e.text().to_lowercase().ends_with(h)),
        _ => false,
    });
    let replied_to_bot = msg
        .reply_to_message()
        .and_then(|m| m.from.as_ref())
        .is_some_and(|u| u.id == me.user.id);
    by_entity || replied_to_bot
}
