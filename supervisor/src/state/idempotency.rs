//! The durable dedupe table: a side effect's idempotency key → its recorded answer.
//!
//! A key is recorded *before* the effect is acknowledged, so a retry — also after a
//! supervisor restart — finds it and never repeats the effect. Records expire after
//! [`TTL_MS`] (much longer than the references' 5 minutes; durability is the point).

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::clock::now_ms;
use crate::state::db::{Db, DbError};

pub const TTL_MS: u64 = 24 * 60 * 60 * 1000;

/// What is stored under a key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Record {
    /// Accepted, effect in progress; `ack` is the payload first returned.
    Accepted { ack: Value },
    /// Finished: the final response (`ok`, `payload`, `error`).
    Final {
        ok: bool,
        payload: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<Value>,
    },
}

pub struct Idempotency {
    db: Db,
}

impl Idempotency {
    pub fn new(db: Db) -> Idempotency {
        Idempotency { db }
    }

    /// Records `record` under `key` unless the key exists; returns the existing record if
    /// there was one (then nothing was written).
    pub async fn claim(
        &self,
        key: &str,
        method: &str,
        record: &Record,
    ) -> Result<Option<Record>, DbError> {
        let key = key.to_owned();
        let method = method.to_owned();
        let json = serde_json::to_string(record).unwrap_or_default();
        let now = now_ms();
        let existing: Option<String> = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let existing: Option<String> = tx
                    .query_row(
                        "SELECT response FROM idempotency WHERE key = ?1 AND created_at >= ?2",
                        params![key, now.saturating_sub(TTL_MS) as i64],
                        |r| r.get(0),
                    )
                    .optional()?;
                if existing.is_none() {
                    tx.execute(
                        "INSERT OR REPLACE INTO idempotency (key, method, created_at, response) VALUES (?1, ?2, ?3, ?4)",
                        params![key, method, now as i64, json],
                    )?;
                }
                tx.commit()?;
                Ok(existing)
            })
            .await?;
        Ok(existing.and_then(|s| serde_json::from_str(&s).ok()))
    }

    pub async fn get(&self, key: &str) -> Result<Option<Record>, DbError> {
        let key = key.to_owned();
        let s: Option<String> = self
            .db
            .call(move |c| {
                c.query_row(
                    "SELECT response FROM idempotency WHERE key = ?1",
                    [key],
                    |r| r.get(0),
                )
                .optional()
            })
            .await?;
        Ok(s.and_then(|s| serde_json::from_str(&s).ok()))
    }

    pub async fn set(&self, key: &str, record: &Record) -> Result<(), DbError> {
        let key = key.to_owned();
        let json = serde_json::to_string(record).unwrap_or_default();
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE idempotency SET response = ?2 WHERE key = ?1",
                    params![key, json],
                )
                .map(|_| ())
            })
            .await
    }

    /// Records still `accepted` from a previous run of the gateway: their effects died
    /// with it. Returns their keys and methods so callers can finish them.
    pub async fn orphaned(&self) -> Result<Vec<(String, String)>, DbError> {
        self.db
            .call(|c| {
                let mut stmt = c.prepare(
                    "SELECT key, method FROM idempotency WHERE json_extract(response, '$.state') = 'accepted'",
                )?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<(String, String)>, _>>()?;
                Ok(rows)
            })
            .await
    }

    /// Drops expired records.
    pub async fn prune(&self) -> Result<usize, DbError> {
        let cutoff = now_ms().saturating_sub(TTL_MS) as i64;
        self.db
            .call(move |c| c.execute("DELETE FROM idempotency WHERE created_at < ?1", [cutoff]))
            .await
    }
}
