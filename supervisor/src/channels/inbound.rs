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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use switchboard_proto::v1::worker_client::WorkerClient;
use switchboard_proto::v1::{AckRequest, EventsRequest, InboundMessage, WorkerEvent, worker_event};

use crate::app::{DEFAULT_AGENT_ID, Gateway};
use crate::channels::outbox::{self, NewDelivery};
use crate::channels::sender_pairing::{self, Requested};
use crate::clock::now_ms;
use crate::config::{ChannelConfig, DmPolicy, GroupPolicy};
use crate::state::db::DbError;

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run the agent and reply.
    Run,
    /// An unknown sender under `dmPolicy: pairing`.
    Pairing,
    /// Not allowed; no reply.
    Drop(&'static str),
    /// Allowed, but not addressed to the bot (a group message without a mention).
    Skip(&'static str),
}

/// The facts about a message the policy looks at.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub sender_id: &'a str,
    pub sender_username: &'a str,
    pub chat_id: &'a str,
    pub is_group: bool,
    pub mentioned: bool,
    /// Approved earlier through DM pairing.
    pub paired: bool,
}

/// Whether `list` admits the sender: `*`, the id (also as `tg:<id>` / `telegram:<id>`),
/// or the username (`@name` or `name`, any case).
fn listed(list: &[String], f: &Facts<'_>) -> bool {
    list.iter().any(|entry| {
        let e = entry.trim();
        let bare = e
            .strip_prefix("tg:")
            .or_else(|| e.strip_prefix("telegram:"))
            .or_else(|| e.strip_prefix("whatsapp:"))
            .unwrap_or(e);
        e == "*"
            || bare == f.sender_id
            || (!f.sender_username.is_empty()
                && bare
                    .trim_start_matches('@')
                    .eq_ignore_ascii_case(f.sender_username))
    })
}

/// The routing rule, as the reference gateway defines it.
pub fn decide(p: &ChannelConfig, f: &Facts<'_>) -> Decision {
    if !f.is_group {
        let allowed = f.paired || listed(&p.allow_from, f);
        return match p.dm_policy {
            DmPolicy::Disabled => {
                Decision::Drop("direct messages are disabled (dmPolicy: disabled)")
            }
            DmPolicy::Open => Decision::Run,
            DmPolicy::Allowlist if allowed => Decision::Run,
            DmPolicy::Allowlist => {
                Decision::Drop("the sender is not in allowFrom (dmPolicy: allowlist)")
            }
            DmPolicy::Pairing if allowed => Decision::Run,
            DmPolicy::Pairing => Decision::Pairing,
        };
    }
    let group_listed = p.groups.contains_key(f.chat_id) || p.groups.contains_key("*");
    let senders = if p.group_allow_from.is_empty() {
        &p.allow_from
    } else {
        &p.group_allow_from
    };
    let admitted = match p.group_policy {
        GroupPolicy::Disabled => {
            return Decision::Drop("group messages are disabled (groupPolicy: disabled)");
        }
        GroupPolicy::Open => true,
        GroupPolicy::Allowlist => group_listed || f.paired || listed(senders, f),
    };
    if !admitted {
        return Decision::Drop(
            "neither the group nor the sender is allowed (groupPolicy: allowlist)",
        );
    }
    let require_mention = p
        .groups
        .get(f.chat_id)
        .and_then(|g| g.require_mention)
        .or_else(|| p.groups.get("*").and_then(|g| g.require_mention))
        .unwrap_or(true);
    if require_mention && !f.mentioned {
        return Decision::Skip("not mentioned (requireMention)");
    }
    Decision::Run
}

/// One chat at a time: messages of a chat are handled in order, never concurrently.
#[derive(Default)]
pub struct ChatLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ChatLocks {
    fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut l = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget idle chats now and then (only this map holds their lock).
        if l.len() > 1024 {
            l.retain(|_, m| Arc::strong_count(m) > 1);
        }
        Arc::clone(l.entry(key.to_owned()).or_default())
    }
}

/// Listens to one channel worker's events for the gateway's life, through restarts.
pub async fn listen(gw: Arc<Gateway>, channel: String) {
    let Ok(mut worker) = gw.workers().watch(&channel) else {
        return;
    };
    loop {
        let current = worker.borrow_and_update().clone();
        if let Some(ch) = current {
            let mut client = WorkerClient::new(ch);
            match client.events(EventsRequest {}).await {
                Ok(stream) => {
                    let mut stream = stream.into_inner();
                    tracing::info!(channel, "listening for inbound messages");
                    loop {
                        let next = tokio::select! {
                            _ = gw.shutdown.cancelled() => return,
                            m = stream.message() => m,
                        };
                        match next {
                            Ok(Some(ev)) => handle(&gw, &channel, &mut client, ev).await,
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
            _ = gw.shutdown.cancelled() => return,
            _ = worker.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn handle(
    gw: &Arc<Gateway>,
    channel: &str,
    client: &mut WorkerClient<tonic::transport::Channel>,
    ev: WorkerEvent,
) {
    match ev.event {
        Some(worker_event::Event::Message(m)) => {
            let stored = loop {
                match receive(gw, channel, &m).await {
                    Ok(id) => break id,
                    Err(e) => {
                        tracing::error!(channel, error = %e, "cannot store an inbound message; retrying");
                        tokio::select! {
                            _ = gw.shutdown.cancelled() => return,
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
                    tokio::spawn(process(Arc::clone(gw), id));
                }
                None => {
                    tracing::debug!(channel, message = %m.provider_message_id, "duplicate message ignored")
                }
            }
        }
        Some(worker_event::Event::State(s)) => {
            tracing::info!(channel, state = %s.state, detail = %s.detail, "provider state");
            gw.health_changed();
        }
        None => {}
    }
}

/// Stores a message; its row id, or `None` when it was already there.
async fn receive(gw: &Gateway, channel: &str, m: &InboundMessage) -> Result<Option<i64>, DbError> {
    let channel = channel.to_owned();
    let m = m.clone();
    gw.db
        .call(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO inbound (channel, account_id, chat_id, message_id, sender_id, sender_name,
                    sender_username, chat_type, chat_title, is_group, mentioned, text, received_at, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'received')",
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
                    now_ms() as i64
                ],
            )?;
            Ok((n > 0).then(|| c.last_insert_rowid()))
        })
        .await
}

/// Messages a previous gateway accepted but did not finish: handled again now.
pub async fn resume(gw: &Arc<Gateway>) {
    let open = gw
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
                tokio::spawn(process(Arc::clone(gw), id));
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
}

async fn load(gw: &Gateway, id: i64) -> Result<Option<Stored>, DbError> {
    gw.db
        .call(move |c| {
            c.query_row(
                "SELECT channel, account_id, chat_id, sender_id, sender_name, sender_username, chat_title,
                        is_group, mentioned, text FROM inbound WHERE id = ?1",
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
                    })
                },
            )
            .optional()
        })
        .await
}

async fn set_state(gw: &Gateway, id: i64, state: &'static str, outcome: Option<String>) {
    let r = gw
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
pub async fn process(gw: Arc<Gateway>, id: i64) {
    let m = match load(&gw, id).await {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(inbound = id, error = %e, "cannot load an inbound message");
            return;
        }
    };
    let lock = gw.chat_locks.get(&format!("{}:{}", m.channel, m.chat_id));
    let _in_order = lock.lock().await;
    let Some(policy) = gw.config.channel(&m.channel).cloned() else {
        set_state(
            &gw,
            id,
            "dropped",
            Some("the channel is not configured".into()),
        )
        .await;
        return;
    };
    let paired = sender_pairing::is_allowed(&gw.db, &m.channel, &m.sender_id)
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
            set_state(&gw, id, "dropped", Some(why.into())).await;
        }
        Decision::Skip(why) => {
            tracing::debug!(channel = %m.channel, chat = %m.chat_id, "message skipped: {why}");
            set_state(&gw, id, "skipped", Some(why.into())).await;
        }
        Decision::Pairing => pairing(&gw, id, &m).await,
        Decision::Run => run(&gw, id, &m).await,
    }
}

async fn pairing(gw: &Arc<Gateway>, id: i64, m: &Stored) {
    let sender = sender_pairing::Sender {
        channel: m.channel.clone(),
        sender_id: m.sender_id.clone(),
        chat_id: m.chat_id.clone(),
        name: m.sender_name.clone(),
        username: m.sender_username.clone(),
    };
    match sender_pairing::request(&gw.db, sender).await {
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
            };
            if let Err(e) = gw.outbox.enqueue(d).await {
                tracing::error!(error = %e, "cannot queue the pairing reply");
            }
            set_state(gw, id, "pairing", Some("pairing code sent".into())).await;
        }
        Ok(Requested::Pending) => {
            set_state(
                gw,
                id,
                "pairing",
                Some("a pairing code is already pending".into()),
            )
            .await
        }
        Ok(Requested::Full) => {
            tracing::warn!(channel = %m.channel, sender = %m.sender_id, "pairing request ignored: {} are pending already", sender_pairing::MAX_PENDING);
            set_state(
                gw,
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

/// The session of a chat.
pub fn session_key(channel: &str, chat_id: &str, is_group: bool) -> String {
    let kind = if is_group { "group" } else { "dm" };
    format!("agent:{DEFAULT_AGENT_ID}:{channel}:{kind}:{chat_id}")
}

const FAILED_REPLY: &str =
    "⚠️ Sorry, I could not answer that just now. Please try again in a moment.";

async fn run(gw: &Arc<Gateway>, id: i64, m: &Stored) {
    set_state(gw, id, "running", None).await;
    let session = session_key(&m.channel, &m.chat_id, m.is_group);
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
        match crate::agent::run_inbound(gw, &run_id, &session, &text, Some(context.clone())).await {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!(inbound = id, error = %e.message, "the agent is not available; retrying");
                tokio::select! {
                    // Left `running`: resumed by the next gateway.
                    _ = gw.shutdown.cancelled() => return,
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
    });
    let done = gw
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            if let Some(d) = &delivery {
                outbox::enqueue_in(&tx, d)?;
            }
            tx.execute(
                "UPDATE inbound SET state = 'done', outcome = ?2 WHERE id = ?1",
                params![id, outcome],
            )?;
            tx.commit()
        })
        .await;
    match done {
        Ok(()) => gw.outbox.kick(),
        Err(e) => {
            tracing::error!(inbound = id, error = %e, "cannot queue the reply (the message will be handled again)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupSettings;

    fn facts<'a>(sender: &'a str, group: bool, mentioned: bool) -> Facts<'a> {
        Facts {
            sender_id: sender,
            sender_username: "Alice",
            chat_id: "-100",
            is_group: group,
            mentioned,
            paired: false,
        }
    }

    #[test]
    fn direct_messages_follow_the_dm_policy() {
        let mut p = ChannelConfig::defaults("telegram");
        assert_eq!(decide(&p, &facts("1", false, false)), Decision::Pairing);
        p.allow_from = vec!["@alice".into()];
        assert_eq!(
            decide(&p, &facts("1", false, false)),
            Decision::Run,
            "usernames match in any case"
        );
        p.allow_from = vec!["tg:1".into()];
        assert_eq!(decide(&p, &facts("1", false, false)), Decision::Run);
        p.dm_policy = DmPolicy::Allowlist;
        assert!(matches!(
            decide(&p, &facts("2", false, false)),
            Decision::Drop(_)
        ));
        let mut paired = facts("2", false, false);
        paired.paired = true;
        assert_eq!(decide(&p, &paired), Decision::Run);
        p.dm_policy = DmPolicy::Disabled;
        assert!(matches!(decide(&p, &paired), Decision::Drop(_)));
        p.dm_policy = DmPolicy::Open;
        assert_eq!(decide(&p, &facts("9", false, false)), Decision::Run);
    }

    #[test]
    fn groups_need_admission_and_a_mention_unless_configured_otherwise() {
        let mut p = ChannelConfig::defaults("telegram");
        assert!(
            matches!(decide(&p, &facts("1", true, true)), Decision::Drop(_)),
            "allowlist, nothing listed"
        );
        let mut paired = facts("1", true, true);
        paired.paired = true;
        assert_eq!(
            decide(&p, &paired),
            Decision::Run,
            "a paired sender may address the bot in a group"
        );
        p.groups.insert("-100".into(), GroupSettings::default());
        assert_eq!(decide(&p, &facts("7", true, true)), Decision::Run);
        assert!(matches!(
            decide(&p, &facts("7", true, false)),
            Decision::Skip(_)
        ));
        p.groups.insert(
            "*".into(),
            GroupSettings {
                require_mention: Some(false),
            },
        );
        assert_eq!(
            decide(&p, &facts("7", true, false)),
            Decision::Run,
            "\"*\" turns the mention rule off"
        );
        p.groups.insert(
            "-100".into(),
            GroupSettings {
                require_mention: Some(true),
            },
        );
        assert!(
            matches!(decide(&p, &facts("7", true, false)), Decision::Skip(_)),
            "the group's own setting wins"
        );
        p.group_policy = GroupPolicy::Disabled;
        assert!(matches!(
            decide(&p, &facts("7", true, true)),
            Decision::Drop(_)
        ));
    }
}
