//! The outbox's dispatchers: one task per channel delivers the store's rows through the
//! channel's worker, one at a time, and records the provider's verdict
//! (see [`crate::channels::outbox_store`] for the guarantees).

use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;
use switchboard_proto::v1::SendRequest;
use switchboard_proto::v1::worker_client::WorkerClient;

use crate::app::App;
use crate::channels::outbox_store::{Due, Next, Outcome, next};
use crate::clock::now_ms;

/// How long one `Send` to a worker may take.
const SEND_DEADLINE: Duration = Duration::from_secs(60);
const RETRY_START_MS: u64 = 1_000;
const RETRY_MAX_MS: u64 = 5 * 60_000;
/// A delivery still failing for passing reasons after this long fails for good.
const GIVE_UP_AFTER_MS: u64 = 24 * 60 * 60_000;

/// Delivers `channel`'s rows, one at a time, for the gateway's life.
pub async fn dispatch(app: Arc<App>, channel: String) {
    let Ok(mut worker) = app.workers().watch(&channel) else {
        tracing::error!(
            channel,
            "no worker for this channel: its outbox is not delivered"
        );
        return;
    };
    let outbox = &app.outbox;
    let mut fault = app.db.watch_fault();
    loop {
        // The database cannot record: deliver nothing (an outcome could not be kept)
        // until it can, without retrying in a loop.
        if fault.borrow_and_update().is_some() {
            tokio::select! {
                _ = app.shutdown.cancelled() => return,
                _ = fault.changed() => {}
            }
            continue;
        }
        // Registered before looking, so a row added meanwhile is not missed.
        let woken = outbox.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let next = match next(&app.db, &channel).await {
            Ok(n) => n,
            Err(_) if app.db.fault().is_some() => continue,
            Err(e) => {
                tracing::error!(channel, error = %e, "cannot read the outbox; retrying");
                Next::At(now_ms() + 1000)
            }
        };
        let due = match next {
            Next::Due(d) => d,
            Next::At(at) => {
                let wait = Duration::from_millis(at.saturating_sub(now_ms()));
                tokio::select! {
                    _ = app.shutdown.cancelled() => return,
                    _ = &mut woken => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            Next::Idle => {
                tokio::select! {
                    _ = app.shutdown.cancelled() => return,
                    _ = &mut woken => {}
                }
                continue;
            }
        };
        let current = worker.borrow_and_update().clone();
        let Some(ch) = current else {
            // The worker is down: wait for it (rows stay pending meanwhile).
            tokio::select! {
                _ = app.shutdown.cancelled() => return,
                _ = worker.changed() => {}
            }
            continue;
        };
        deliver(&app, &channel, ch, due).await;
    }
}

async fn deliver(app: &App, channel: &str, ch: crate::workers::WorkerChannel, due: Due) {
    let id = due.id.clone();
    let seq = due.seq;
    let marked = app
        .db
        .call(move |c| {
            c.execute(
                "UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = ?2 WHERE seq = ?1",
                params![seq, now_ms() as i64],
            )
        })
        .await;
    if let Err(e) = marked {
        // Not sent: the row stays pending. A storage fault is waited out by `dispatch`.
        if app.db.fault().is_none() {
            tracing::error!(delivery = %id, error = %e, "cannot mark a delivery as sending");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        return;
    }
    let mut client = WorkerClient::new(ch);
    let request = SendRequest {
        delivery_id: id.clone(),
        to: due.target.clone(),
        text: due.text.clone(),
        account_id: due.account_id.clone(),
        thread_id: due.thread_id.clone(),
        uncertain: due.uncertain,
    };
    let reply = tokio::time::timeout(SEND_DEADLINE, client.send(request)).await;
    let attempts = due.attempts as u64 + 1;
    // No answer from the worker: it may have delivered before it died or hung.
    let lost = !matches!(reply, Ok(Ok(_)));
    let (verdict, detail) = match reply {
        Ok(Ok(r)) => {
            let r = r.into_inner();
            if r.error.is_empty() {
                (Verdict::Delivered(r.provider_message_id), String::new())
            } else if r.permanent {
                (Verdict::Failed, r.error)
            } else if r.retry_after_ms > 0 {
                (Verdict::RetryIn(r.retry_after_ms), r.error)
            } else {
                (Verdict::RetryIn(backoff(attempts)), r.error)
            }
        }
        Ok(Err(status)) => (
            Verdict::RetryIn(backoff(attempts)),
            format!("the {channel} worker failed: {}", status.message()),
        ),
        Err(_) => (
            Verdict::RetryIn(backoff(attempts)),
            format!(
                "the {channel} worker did not answer within {} s",
                SEND_DEADLINE.as_secs()
            ),
        ),
    };
    let verdict = match verdict {
        Verdict::RetryIn(_)
            if now_ms().saturating_sub(due.created_at as u64) > GIVE_UP_AFTER_MS =>
        {
            Verdict::Failed
        }
        v => v,
    };
    let outcome = match &verdict {
        Verdict::Delivered(mid) => {
            tracing::info!(channel, delivery = %id, message_id = %mid, attempts, "delivered");
            Some(Outcome::Delivered {
                message_id: mid.clone(),
            })
        }
        Verdict::Failed => {
            tracing::warn!(channel, delivery = %id, attempts, "delivery failed for good: {detail}");
            Some(Outcome::Failed {
                error: detail.clone(),
            })
        }
        Verdict::RetryIn(ms) => {
            tracing::warn!(channel, delivery = %id, attempts, retry_in_ms = ms, "delivery not made yet: {detail}");
            None
        }
    };
    let said = match &verdict {
        Verdict::Delivered(mid) => format!("delivered (message id {mid})"),
        Verdict::Failed => format!("a permanent failure ({detail})"),
        Verdict::RetryIn(_) => format!("not delivered yet ({detail})"),
    };
    let record = Record {
        seq,
        verdict,
        detail,
        lost,
        session: due.session_key.clone(),
        text: due.text.clone(),
    };
    // Acknowledged only once durable: until the verdict is committed, a waiting client
    // hears that it is not confirmed, and the dispatcher keeps trying to record it.
    let mut told = false;
    let mut fault = app.db.watch_fault();
    loop {
        let r = record.clone();
        match app.db.call(move |c| r.store(c)).await {
            Ok(()) => break,
            Err(e) => {
                if !told {
                    tracing::error!(delivery = %id, error = %e, "cannot record a delivery's outcome; holding it until it can be recorded");
                    app.outbox.finished(
                        &id,
                        Outcome::Unrecorded {
                            verdict: said.clone(),
                            error: e.to_string(),
                        },
                    );
                    told = true;
                }
                fault.borrow_and_update();
                tokio::select! {
                    // The row stays `sending`: the next start resumes it as uncertain.
                    _ = app.shutdown.cancelled() => return,
                    _ = fault.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    }
    if told {
        tracing::info!(delivery = %id, "a delivery's outcome is recorded after all");
    }
    if let Some(o) = outcome {
        app.outbox.finished(&id, o);
    }
}

/// A verdict to commit.
#[derive(Clone)]
struct Record {
    seq: i64,
    verdict: Verdict,
    detail: String,
    lost: bool,
    session: Option<String>,
    text: String,
}

impl Record {
    fn store(self, c: &mut rusqlite::Connection) -> Result<(), rusqlite::Error> {
        let Record {
            seq,
            verdict,
            detail,
            lost,
            session,
            text,
        } = self;
        {
            let now = now_ms() as i64;
            let tx = c.transaction()?;
            match verdict {
                Verdict::Delivered(mid) => {
                    tx.execute(
                        "UPDATE outbox SET state = 'delivered', message_id = ?2, error = NULL, updated_at = ?3 WHERE seq = ?1",
                        params![seq, mid, now],
                    )?;
                    if let Some(key) = session {
                        crate::state::history::append_in(&tx, &key, "assistant", &text, None, now)?;
                    }
                }
                Verdict::Failed => {
                    tx.execute(
                        "UPDATE outbox SET state = 'failed', error = ?2, updated_at = ?3 WHERE seq = ?1",
                        params![seq, detail, now],
                    )?;
                }
                Verdict::RetryIn(ms) => {
                    tx.execute(
                        "UPDATE outbox SET state = 'pending', error = ?2, next_attempt_at = ?3, updated_at = ?4,
                                uncertain = MAX(uncertain, ?5) WHERE seq = ?1",
                        params![seq, detail, now + ms as i64, now, lost],
                    )?;
                }
            }
            tx.commit()
        }
    }
}

#[derive(Clone)]
enum Verdict {
    Delivered(String),
    Failed,
    RetryIn(u64),
}

/// 1 s, 2 s, 4 s … 5 min.
fn backoff(attempts: u64) -> u64 {
    let shift = attempts.saturating_sub(1).min(20) as u32;
    RETRY_START_MS
        .saturating_mul(1u64 << shift)
        .min(RETRY_MAX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff(1), 1_000);
        assert_eq!(backoff(3), 4_000);
        assert_eq!(backoff(100), RETRY_MAX_MS);
    }
}
