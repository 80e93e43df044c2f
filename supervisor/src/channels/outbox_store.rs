//! The durable outbox: every message Switchboard sends through a provider — an
//! operator's `send`, an agent's reply, a pairing notice — is a row here before anything
//! is acknowledged, and one dispatcher task per channel delivers the rows through the
//! channel's worker.
//!
//! Guarantees:
//! * **Never lost.** A row is committed before the request is answered; the dispatcher
//!   resumes after a worker restart or a gateway restart.
//! * **Never doubled by a retry.** A row may carry a key (`send:<idempotencyKey>`,
//!   `reply:<inbound id>`); a second request with the key finds the first row.
//! * **Ordered per chat.** A row is attempted only when no older row to the same target
//!   is still open.
//! * **Acknowledged only once durable.** A `send` is answered "delivered" only after the
//!   outcome is committed (WAL, `synchronous = FULL`: it survives a power loss). When the
//!   outcome cannot be written (disk full, I/O error), the client gets `UNAVAILABLE`
//!   naming what the provider said and why it is not recorded; the row stays `sending`.
//! * **The provider's verdict is honoured.** Delivered: its message id is kept. Rate
//!   limited: the row waits `retry_after`. Refused for good (chat not found, blocked):
//!   the row fails at once with the provider's reason. Anything else is retried with
//!   backoff (1 s doubling to 5 min) until the row is a day old.
//!
//! The one window left: a worker (or the gateway) that dies after the provider accepted
//! a message but before its reply was recorded. The row is then still `sending`; the next
//! attempt goes to the worker with `uncertain` set, and what happens is the provider's:
//! sent again (at-least-once) where the provider has no idempotency key and no lookup;
//! looked up first where it keeps what was sent; deduplicated where it takes a key (a
//! nonce, a message id derived from the row id). Each provider's case is in the README's
//! table ("What a `send` promises") with the test that shows it.
//!
//! That window is one provider response plus one local gRPC reply long. Neither these
//! docs nor the README promise more than a test shows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction, params};
use tokio::sync::{Notify, watch};

use crate::clock::now_ms;
use crate::state::db::{Db, DbError};

/// Finished rows are kept this long (they are the `send` dedupe window).
const KEEP_FINISHED_MS: u64 = 7 * 24 * 60 * 60_000;

/// A delivery to make.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub channel: String,
    pub account_id: String,
    pub target: String,
    pub text: String,
    /// `send`, `reply`, `pairing`, `notice`.
    pub source: &'static str,
    /// Dedupe key; a second delivery with it is not made.
    pub key: Option<String>,
    /// Mirror the text into this session's history once delivered.
    pub session_key: Option<String>,
    /// Deliver into this thread at the provider (empty: none).
    pub thread_id: String,
}

/// A row's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        message_id: String,
    },
    Failed {
        error: String,
    },
    /// The worker answered, but its verdict could not be committed (full disk, I/O
    /// error): nothing is acknowledged. The row stays `sending` (what is durably known)
    /// while the dispatcher keeps trying to record the verdict; a restart before that
    /// makes it an uncertain delivery, attempted again with the worker told so.
    Unrecorded {
        verdict: String,
        error: String,
    },
}

/// A row as `enqueue` found or made it.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub channel: String,
    pub account_id: String,
    pub target: String,
    pub state: String,
    pub outcome: Option<Outcome>,
    /// False when the key was already used for another channel/account.
    pub same_route: bool,
    pub created: bool,
}

pub struct Outbox {
    db: Db,
    /// Wakes the dispatchers: a row was added or a worker came back.
    pub(crate) wake: Notify,
    waiters: Mutex<HashMap<String, watch::Sender<Option<Outcome>>>>,
}

impl Outbox {
    pub fn new(db: Db) -> Outbox {
        Outbox {
            db,
            wake: Notify::new(),
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// Adds a delivery (or finds the one with its key). Committed when this returns.
    pub async fn enqueue(&self, d: NewDelivery) -> Result<Row, DbError> {
        let row = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let row = enqueue_in(&tx, &d)?;
                tx.commit()?;
                Ok(row)
            })
            .await?;
        if row.created {
            self.wake.notify_waiters();
        }
        Ok(row)
    }

    /// Tells the dispatchers to look again (new rows committed by someone else).
    pub fn kick(&self) {
        self.wake.notify_waiters();
    }

    /// Waits up to `timeout` for the row to finish.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Option<Outcome> {
        let mut rx = {
            let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            w.entry(id.to_owned())
                .or_insert_with(|| watch::channel(None).0)
                .subscribe()
        };
        // Subscribed first, so a finish between the check and the wait is not missed.
        if let Ok(Some(o)) = self.outcome(id).await {
            self.forget_waiter(id);
            return Some(o);
        }
        let got = tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|o| o.clone()));
        self.forget_waiter(id);
        got
    }

    fn forget_waiter(&self, id: &str) {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if w.get(id).is_some_and(|tx| tx.receiver_count() <= 1) {
            w.remove(id);
        }
    }

    pub(crate) fn finished(&self, id: &str, outcome: Outcome) {
        if let Some(tx) = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            tx.send_replace(Some(outcome));
        }
    }

    async fn outcome(&self, id: &str) -> Result<Option<Outcome>, DbError> {
        let id = id.to_owned();
        self.db
            .call(move |c| {
                c.query_row(
                    "SELECT state, message_id, error FROM outbox WHERE id = ?1",
                    [id],
                    |r| Ok(row_outcome(&r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map(Option::flatten)
            })
            .await
    }

    /// Open rows per channel (`pending` and `sending`), for metrics and status.
    pub async fn backlog(&self) -> Result<Vec<(String, u64)>, DbError> {
        self.db
            .call(|c| {
                let mut stmt = c.prepare_cached(
                    "SELECT channel, COUNT(*) FROM outbox WHERE state IN ('pending', 'sending') GROUP BY channel",
                )?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }

    /// At start-up: rows a previous gateway left `sending` are attempted again (their
    /// outcome is unknown; see the module docs); old finished rows are dropped.
    pub async fn recover(&self) -> Result<(u64, u64), DbError> {
        let now = now_ms() as i64;
        self.db
            .call(move |c| {
                let resumed = c.execute(
                    "UPDATE outbox SET state = 'pending', uncertain = 1, next_attempt_at = ?1, updated_at = ?1 WHERE state = 'sending'",
                    [now],
                )?;
                let pruned = c.execute(
                    "DELETE FROM outbox WHERE state IN ('delivered', 'failed') AND updated_at < ?1",
                    [now - KEEP_FINISHED_MS as i64],
                )?;
                Ok((resumed as u64, pruned as u64))
            })
            .await
    }
}

fn row_outcome(state: &str, message_id: Option<String>, error: Option<String>) -> Option<Outcome> {
    match state {
        "delivered" => Some(Outcome::Delivered {
            message_id: message_id.unwrap_or_default(),
        }),
        "failed" => Some(Outcome::Failed {
            error: error.unwrap_or_else(|| "delivery failed".into()),
        }),
        _ => None,
    }
}

/// `enqueue` inside a caller's transaction (so a reply and its inbound message's state
/// change commit together). Call [`Outbox::kick`] after the commit.
pub fn enqueue_in(tx: &Transaction<'_>, d: &NewDelivery) -> Result<Row, rusqlite::Error> {
    if let Some(key) = &d.key {
        let existing = tx
            .query_row(
                "SELECT id, channel, account_id, target, state, message_id, error FROM outbox WHERE idem_key = ?1",
                [key],
                |r| {
                    let state: String = r.get(4)?;
                    let channel: String = r.get(1)?;
                    let account_id: String = r.get(2)?;
                    Ok(Row {
                        id: r.get(0)?,
                        same_route: channel == d.channel && account_id == d.account_id,
                        channel,
                        account_id,
                        target: r.get(3)?,
                        outcome: row_outcome(&state, r.get(5)?, r.get(6)?),
                        state,
                        created: false,
                    })
                },
            )
            .optional()?;
        if let Some(row) = existing {
            return Ok(row);
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms() as i64;
    tx.execute(
        "INSERT INTO outbox (id, channel, account_id, target, text, source, idem_key, session_key, state,
                             next_attempt_at, created_at, updated_at, thread_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?9, ?9, ?10)",
        params![
            id,
            d.channel,
            d.account_id,
            d.target,
            d.text,
            d.source,
            d.key,
            d.session_key,
            now,
            d.thread_id
        ],
    )?;
    Ok(Row {
        id,
        channel: d.channel.clone(),
        account_id: d.account_id.clone(),
        target: d.target.clone(),
        state: "pending".into(),
        outcome: None,
        same_route: true,
        created: true,
    })
}

/// One row being delivered.
pub(crate) struct Due {
    pub(crate) seq: i64,
    pub(crate) id: String,
    pub(crate) account_id: String,
    pub(crate) target: String,
    pub(crate) text: String,
    pub(crate) session_key: Option<String>,
    pub(crate) thread_id: String,
    /// An earlier attempt's outcome was lost: it may have been delivered.
    pub(crate) uncertain: bool,
    pub(crate) attempts: i64,
    pub(crate) created_at: i64,
}

/// The next row to deliver on `channel`, or when the next one falls due.
pub(crate) enum Next {
    Due(Due),
    At(u64),
    Idle,
}

pub(crate) async fn next(db: &Db, channel: &str) -> Result<Next, DbError> {
    let channel = channel.to_owned();
    db.call(move |c| {
        // The oldest open row of each target is its head; later rows wait behind it.
        let mut stmt = c.prepare_cached(
            "SELECT o.seq, o.id, o.account_id, o.target, o.text, o.session_key, o.attempts,
                    o.created_at, o.next_attempt_at, o.thread_id, o.uncertain
             FROM outbox o
             WHERE o.channel = ?1 AND o.state = 'pending'
               AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.channel = o.channel AND p.target = o.target
                               AND p.state IN ('pending', 'sending') AND p.seq < o.seq)
             ORDER BY o.next_attempt_at, o.seq LIMIT 1",
        )?;
        let row = stmt
            .query_row([&channel], |r| {
                Ok((
                    Due {
                        seq: r.get(0)?,
                        id: r.get(1)?,
                        account_id: r.get(2)?,
                        target: r.get(3)?,
                        text: r.get(4)?,
                        session_key: r.get(5)?,
                        attempts: r.get(6)?,
                        created_at: r.get(7)?,
                        thread_id: r.get(9)?,
                        uncertain: r.get(10)?,
                    },
                    r.get::<_, i64>(8)?,
                ))
            })
            .optional()?;
        Ok(match row {
            None => Next::Idle,
            Some((due, at)) if at as u64 > now_ms() => {
                let _ = due;
                Next::At(at as u64)
            }
            Some((due, _)) => Next::Due(due),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(key: &str, channel: &str) -> NewDelivery {
        NewDelivery {
            channel: channel.into(),
            account_id: "default".into(),
            target: "42".into(),
            text: "hi".into(),
            source: "send",
            key: Some(key.into()),
            session_key: None,
            thread_id: String::new(),
        }
    }

    #[tokio::test]
    async fn a_key_makes_one_row_and_remembers_its_route() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.sqlite")).unwrap();
        let o = Outbox::new(db);
        let a = o.enqueue(delivery("send:k1", "chat-a")).await.unwrap();
        let b = o.enqueue(delivery("send:k1", "chat-a")).await.unwrap();
        assert!(a.created && !b.created);
        assert_eq!(a.id, b.id);
        assert!(b.same_route);
        let c = o.enqueue(delivery("send:k1", "chat-b")).await.unwrap();
        assert!(!c.same_route);
        assert_eq!(o.backlog().await.unwrap(), vec![("chat-a".to_owned(), 1)]);
    }
}
