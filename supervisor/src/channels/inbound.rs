//! Messages arriving through a messaging channel, from the worker's event stream to the
//! agent's reply.
//!
//! 1. **Receive**: the message is written to SQLite, deduplicated on the provider's
//!    message id, and only then acknowledged to the worker (which may then confirm it to
//!    the provider). A crash at any point loses nothing and processes nothing twice.
//! 2. **Decide** ([`decide`]): the channel's `dmPolicy` / `groupPolicy`, allow-lists,
//!    senders approved by pairing, and in groups the mention rule.
//! 3. **Run** the agent on the chat's session (`agent:main:<channel>:dm:<chat>` or
//!    `…:group:<chat>`), one message at a time per chat, then put the reply in the
//!    outbox in the same transaction that marks the message done. A message whose run
//!    was cut off by a restart is run again (its user message is not stored twice).
//!
//! Operators see the conversation as the run's `agent`/`chat` events and in
//! `chat.history` of the session. Message texts are never logged at `info`.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use switchboard_proto::v1::worker_client::WorkerClient;
use switchboard_proto::v1::{AckRequest, EventsRequest, InboundMessage, WorkerEvent, worker_event};

use crate::app::App;
use crate::channels::outbox_store::{self, NewDelivery};
use crate::channels::policy::{Decision, Facts, decide};
use crate::channels::sender_pairing::{self, Requested};
use crate::clock::now_ms;
use crate::state::db::DbError;

/// Listens to one channel worker's events for the gateway's life, through restarts.
pub async fn listen(app: Arc<App>, channel: String) {
    let Ok(mut worker) = app.workers().watch(&channel) else {
        return;
    };
    loop {
        let current = worker.borrow_and_update().clone();
        if let Some(ch) = current {
            let mut client = WorkerClient::new(ch);
            let cursor = match stored_cursor(&app, &channel).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(channel, error = %e, "cannot read the channel's cursor; retrying");
                    tokio::select! {
                        _ = app.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    continue;
                }
            };
            match client.events(EventsRequest { cursor }).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    tracing::info!(channel, "listening for inbound messages");
                    loop {
                        let next = tokio::select! {
                            _ = app.shutdown.cancelled() => return,
                            m = stream.message() => m,
                        };
                        match next {
                            Ok(Some(ev)) => handle(&app, &channel, &mut client, ev).await,
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
                Err(status) => {
                    tracing::warn!(channel, error = %status.message(), "cannot subscribe to the worker's events")
                }
            }
        }
        // The stream ended (the worker stopped or restarted): wait for a change, and
        // retry now and then in case the worker is up but its stream failed.
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = worker.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn handle(
    app: &Arc<App>,
    channel: &str,
    client: &mut WorkerClient<crate::workers::WorkerChannel>,
    ev: WorkerEvent,
) {
    match ev.event {
        Some(worker_event::Event::Message(m)) => {
            let stored = loop {
                match receive(app, channel, &m, &ev.cursor).await {
                    Ok(id) => break id,
                    Err(e) => {
                        tracing::error!(channel, error = %e, "cannot store an inbound message; retrying");
                        tokio::select! {
                            _ = app.shutdown.cancelled() => return,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            };
            // Durable (or a duplicate of something durable): the worker may confirm it.
            if ev.event_id > 0
                && let Err(s) = client
                    .ack(AckRequest {
                        event_id: ev.event_id,
                    })
                    .await
            {
                tracing::warn!(channel, error = %s.message(), "cannot acknowledge an event (it will come again)");
            }
            match stored {
                Some(id) => {
                    tokio::spawn(process(Arc::clone(app), id));
                }
                None => {
                    tracing::debug!(channel, message = %m.provider_message_id, "duplicate message ignored")
                }
            }
        }
        Some(worker_event::Event::State(s)) => {
            tracing::info!(channel, state = %s.state, detail = %s.detail, "provider state");
            app.health_changed();
        }
        None => {}
    }
}

/// The replay position stored with the channel's last message (empty: none).
async fn stored_cursor(app: &App, channel: &str) -> Result<String, DbError> {
    let channel = channel.to_owned();
    app.db
        .call(move |c| {
            c.query_row(
                "SELECT cursor FROM channel_cursors WHERE channel = ?1",
                [channel],
                |r| r.get(0),
            )
            .optional()
            .map(Option::unwrap_or_default)
        })
        .await
}

/// Stores a message (and the channel's cursor after it, in the same transaction); its
/// row id, or `None` when it was already there.
async fn receive(
    app: &App,
    channel: &str,
    m: &InboundMessage,
    cursor: &str,
) -> Result<Option<i64>, DbError> {
    let channel = channel.to_owned();
    let m = m.clone();
    let cursor = cursor.to_owned();
    app.db
        .call(move |c| {
            let tx = c.transaction()?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO inbound (channel, account_id, chat_id, message_id, sender_id, sender_name,
                    sender_username, chat_type, chat_title, is_group, mentioned, text, received_at, state, thread_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'received', ?14)",
                params![
                    channel,
                    if m.account_id.is_empty() { "default" } else { m.account_id.as_str() },
                    m.chat_id,
                    m.provider_message_id,
                    m.sender_id,
                    m.sender_name,
                    m.sender_username,
                    m.chat_type,
                    m.chat_title,
                    m.is_group,
                    m.mentioned,
                    m.text,
                    now_ms() as i64,
                    m.thread_id
                ],
            )?;
            let id = (n > 0).then(|| tx.last_insert_rowid());
            if !cursor.is_empty() {
                tx.execute(
                    "INSERT INTO channel_cursors (channel, cursor, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(channel) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
                    params![channel, cursor, now_ms() as i64],
                )?;
            }
            tx.commit()?;
            Ok(id)
        })
        .await
}

/// The channel and chat of the latest message the agent answered (a heartbeat's `last`
/// route); `None` before the first, or when the database cannot say.
pub async fn last_answered(app: &App) -> Option<(String, String)> {
    app.db
        .call(|c| {
            c.query_row(
                "SELECT channel, chat_id FROM inbound WHERE outcome LIKE 'agent run %'
                 ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
        })
        .await
        .ok()
        .flatten()
}

/// Messages a previous gateway accepted but did not finish: handled again now.
pub async fn resume(app: &Arc<App>) {
    let open = app
        .db
        .call(|c| {
            let mut stmt = c.prepare(
                "SELECT id FROM inbound WHERE state IN ('received', 'running') ORDER BY id",
            )?;
            let ids = stmt
                .query_map([], |r| r.get::<_, i64>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ids)
        })
        .await;
    match open {
        Ok(ids) => {
            if !ids.is_empty() {
                tracing::info!(
                    messages = ids.len(),
                    "resuming inbound messages from before the restart"
                );
            }
            for id in ids {
                tokio::spawn(process(Arc::clone(app), id));
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read unfinished inbound messages"),
    }
}

struct Stored {
    channel: String,
    account_id: String,
    chat_id: String,
    sender_id: String,
    sender_name: String,
    sender_username: String,
    chat_title: String,
    is_group: bool,
    mentioned: bool,
    text: String,
    thread_id: String,
}

async fn load(app: &App, id: i64) -> Result<Option<Stored>, DbError> {
    app.db
        .call(move |c| {
            c.query_row(
                "SELECT channel, account_id, chat_id, sender_id, sender_name, sender_username, chat_title,
                        is_group, mentioned, text, thread_id FROM inbound WHERE id = ?1",
                [id],
                |r| {
                    Ok(Stored {
                        channel: r.get(0)?,
                        account_id: r.get(1)?,
                        chat_id: r.get(2)?,
                        sender_id: r.get(3)?,
                        sender_name: r.get(4)?,
                        sender_username: r.get(5)?,
                        chat_title: r.get(6)?,
                        is_group: r.get(7)?,
                        mentioned: r.get(8)?,
                        text: r.get(9)?,
                        thread_id: r.get(10)?,
                    })
                },
            )
            .optional()
        })
        .await
}

async fn set_state(app: &App, id: i64, state: &'static str, outcome: Option<String>) {
    let r = app
        .db
        .call(move |c| {
            c.execute(
                "UPDATE inbound SET state = ?2, outcome = ?3 WHERE id = ?1",
                params![id, state, outcome],
            )
        })
        .await;
    if let Err(e) = r {
        tracing::error!(inbound = id, error = %e, "cannot record an inbound message's state");
    }
}

/// Decides about one stored message and carries the decision out.
pub async fn process(app: Arc<App>, id: i64) {
    let m = match load(&app, id).await {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(inbound = id, error = %e, "cannot load an inbound message");
            return;
        }
    };
    let lock = app.chat_locks.get(&format!("{}:{}", m.channel, m.chat_id));
    let _in_order = lock.lock().await;
    let Some(policy) = app.config.channel(&m.channel).cloned() else {
        set_state(
            &app,
            id,
            "dropped",
            Some("the channel is not configured".into()),
        )
        .await;
        return;
    };
    let paired = sender_pairing::is_allowed(&app.db, &m.channel, &m.sender_id)
        .await
        .unwrap_or(false);
    let facts = Facts {
        sender_id: &m.sender_id,
        sender_username: &m.sender_username,
        chat_id: &m.chat_id,
        is_group: m.is_group,
        mentioned: m.mentioned,
        paired,
    };
    let decision = decide(&policy, &facts);
    match decision {
        Decision::Drop(why) => {
            tracing::info!(channel = %m.channel, sender = %m.sender_id, chat = %m.chat_id, "message dropped: {why}");
            set_state(&app, id, "dropped", Some(why.into())).await;
        }
        Decision::Skip(why) => {
            tracing::debug!(channel = %m.channel, chat = %m.chat_id, "message skipped: {why}");
            set_state(&app, id, "skipped", Some(why.into())).await;
        }
        Decision::Pairing => pairing(&app, id, &m).await,
        Decision::Run => run(&app, id, &m).await,
    }
}

async fn pairing(app: &Arc<App>, id: i64, m: &Stored) {
    let sender = sender_pairing::Sender {
        channel: m.channel.clone(),
        sender_id: m.sender_id.clone(),
        chat_id: m.chat_id.clone(),
        name: m.sender_name.clone(),
        username: m.sender_username.clone(),
    };
    match sender_pairing::request(&app.db, sender).await {
        Ok(Requested::New(code)) => {
            tracing::info!(channel = %m.channel, sender = %m.sender_id, "pairing requested (see `switchboard pairing list`)");
            let d = NewDelivery {
                channel: m.channel.clone(),
                account_id: m.account_id.clone(),
                target: m.chat_id.clone(),
                text: sender_pairing::request_text(&m.channel, &m.sender_id, &code),
                source: "pairing",
                key: Some(format!("pairing:{}:{}:{code}", m.channel, m.sender_id)),
                session_key: None,
                thread_id: String::new(),
            };
            if let Err(e) = app.outbox.enqueue(d).await {
                tracing::error!(error = %e, "cannot queue the pairing reply");
            }
            set_state(app, id, "pairing", Some("pairing code sent".into())).await;
        }
        Ok(Requested::Pending) => {
            set_state(
                app,
                id,
                "pairing",
                Some("a pairing code is already pending".into()),
            )
            .await
        }
        Ok(Requested::Full) => {
            tracing::warn!(channel = %m.channel, sender = %m.sender_id, "pairing request ignored: {} are pending already", sender_pairing::MAX_PENDING);
            set_state(
                app,
                id,
                "dropped",
                Some("too many pending pairing requests".into()),
            )
            .await;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot file a pairing request (the message stays open)")
        }
    }
}

const FAILED_REPLY: &str =
    "⚠️ Sorry, I could not answer that just now. Please try again in a moment.";

async fn run(app: &Arc<App>, id: i64, m: &Stored) {
    set_state(app, id, "running", None).await;
    let session =
        crate::channels::providers::session_key(&m.channel, &m.chat_id, &m.sender_id, m.is_group);
    let handle = if m.sender_username.is_empty() {
        String::new()
    } else {
        format!(" (@{})", m.sender_username)
    };
    let (text, context) = if m.is_group {
        (
            format!("[{}]: {}", m.sender_name, m.text),
            format!(
                "You are replying in the {} group \"{}\"; the message is from {}{handle}.",
                m.channel, m.chat_title, m.sender_name
            ),
        )
    } else {
        (
            m.text.clone(),
            format!(
                "You are replying in a {} direct chat with {}{handle}.",
                m.channel, m.sender_name
            ),
        )
    };
    let run_id = format!("in-{}-{id}", m.channel);
    let mut delay = Duration::from_secs(1);
    let result = loop {
        match crate::agent::run_inbound(app, &run_id, &session, &text, Some(context.clone())).await
        {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!(inbound = id, error = %e.message, "the agent is not available; retrying");
                tokio::select! {
                    // Left `running`: resumed by the next gateway.
                    _ = app.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    let reply = match result.status {
        "ok" if !result.text.trim().is_empty() => Some(result.text.clone()),
        "error" => {
            tracing::warn!(inbound = id, error = ?result.error, "the agent run failed; telling the sender");
            Some(FAILED_REPLY.to_owned())
        }
        _ => None,
    };
    let outcome = format!("agent run {}", result.status);
    let delivery = reply.map(|text| NewDelivery {
        channel: m.channel.clone(),
        account_id: m.account_id.clone(),
        target: m.chat_id.clone(),
        text,
        source: "reply",
        key: Some(format!("reply:{}:{id}", m.channel)),
        session_key: None,
        thread_id: m.thread_id.clone(),
    });
    let done = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            if let Some(d) = &delivery {
                outbox_store::enqueue_in(&tx, d)?;
            }
            tx.execute(
                "UPDATE inbound SET state = 'done', outcome = ?2 WHERE id = ?1",
                params![id, outcome],
            )?;
            tx.commit()
        })
        .await;
    match done {
        Ok(()) => app.outbox.kick(),
        Err(e) => {
            tracing::error!(inbound = id, error = %e, "cannot queue the reply (the message will be handled again)")
        }
    }
}
