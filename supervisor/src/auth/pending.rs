//! Pending pairing requests, for device pairing and node pairing alike: one request per
//! subject (device or node), expiring after five minutes (the protocol's figure), at most
//! [`MAX_PENDING`] at once so a flood cannot grow the store. Kept in memory, written
//! through to SQLite (`pending_requests`, by kind), reloaded at start-up.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use rusqlite::params;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::clock::now_ms;
use crate::state::db::{Db, DbError};

/// Pending requests expire after this long (protocol: 5 minutes).
pub const PENDING_TTL_MS: u64 = 5 * 60 * 1000;
/// At most this many pending requests of one kind at once; a flood beyond it is refused.
pub const MAX_PENDING: usize = 64;

/// What a pending request must tell the store about itself.
pub trait Request: Clone + Serialize + DeserializeOwned + Send + 'static {
    fn request_id(&self) -> &str;
    /// The device or node it is for: one live request per subject.
    fn subject(&self) -> &str;
    /// When it was filed (ms since the epoch).
    fn filed_at(&self) -> u64;
}

#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("too many pending pairing requests ({0}); approve or reject some first")]
    Full(usize),
}

pub struct Pending<T> {
    db: Db,
    /// `device` or `node`.
    kind: &'static str,
    items: Mutex<HashMap<String, T>>,
}

fn live(filed_at: u64, now: u64) -> bool {
    now.saturating_sub(filed_at) < PENDING_TTL_MS
}

impl<T: Request> Pending<T> {
    /// Loads the unexpired requests of `kind`.
    pub async fn open(db: Db, kind: &'static str) -> Result<Pending<T>, DbError> {
        let items = db
            .call(move |c| {
                let mut stmt = c.prepare(
                    "SELECT record FROM pending_requests WHERE kind = ?1 AND expires_at > ?2",
                )?;
                let mut items = HashMap::new();
                for rec in
                    stmt.query_map(params![kind, now_ms() as i64], |r| r.get::<_, String>(0))?
                {
                    if let Ok(t) = serde_json::from_str::<T>(&rec?) {
                        items.insert(t.request_id().to_owned(), t);
                    }
                }
                Ok(items)
            })
            .await?;
        Ok(Pending {
            db,
            kind,
            items: Mutex::new(items),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, T>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The subject's live request, or a new one from `make` (stored). `created` says which.
    pub async fn file(
        &self,
        subject: &str,
        make: impl FnOnce() -> T,
    ) -> Result<(T, bool), PendingError> {
        let now = now_ms();
        let req = {
            let mut items = self.lock();
            items.retain(|_, r| live(r.filed_at(), now));
            if let Some(r) = items.values().find(|r| r.subject() == subject) {
                return Ok((r.clone(), false));
            }
            if items.len() >= MAX_PENDING {
                return Err(PendingError::Full(items.len()));
            }
            let req = make();
            items.insert(req.request_id().to_owned(), req.clone());
            req
        };
        let (kind, id, subject, rec, exp) = (
            self.kind,
            req.request_id().to_owned(),
            req.subject().to_owned(),
            serde_json::to_string(&req).unwrap_or_default(),
            (req.filed_at() + PENDING_TTL_MS) as i64,
        );
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO pending_requests (kind, request_id, subject_id, record, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![kind, id, subject, rec, exp],
                )
                .map(|_| ())
            })
            .await?;
        Ok((req, true))
    }

    /// Takes a request out of the store's memory to decide it: `None` when unknown or
    /// expired. The caller then removes its row ([`Pending::delete_in`] or [`Pending::delete`]).
    pub fn take(&self, request_id: &str) -> Option<T> {
        self.lock()
            .remove(request_id)
            .filter(|r| live(r.filed_at(), now_ms()))
    }

    /// A live request, left in the store (to check who may decide it).
    pub fn peek(&self, request_id: &str) -> Option<T> {
        self.lock()
            .get(request_id)
            .filter(|r| live(r.filed_at(), now_ms()))
            .cloned()
    }

    /// Removes the request's row.
    pub async fn delete(&self, request_id: &str) -> Result<(), DbError> {
        let (kind, id) = (self.kind, request_id.to_owned());
        self.db
            .call(move |c| {
                let tx = c.transaction()?;
                Self::delete_in(&tx, kind, &id)?;
                tx.commit()
            })
            .await
    }

    /// Removes a request's row inside a caller's transaction (its decision commits with it).
    pub fn delete_in(
        tx: &rusqlite::Transaction<'_>,
        kind: &str,
        request_id: &str,
    ) -> Result<(), rusqlite::Error> {
        tx.execute(
            "DELETE FROM pending_requests WHERE kind = ?1 AND request_id = ?2",
            params![kind, request_id],
        )
        .map(|_| ())
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The live requests, newest first.
    pub fn list(&self) -> Vec<T> {
        let now = now_ms();
        let mut v: Vec<T> = self
            .lock()
            .values()
            .filter(|r| live(r.filed_at(), now))
            .cloned()
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.filed_at()));
        v
    }

    /// Changes a request in memory (tests age requests this way).
    #[cfg(test)]
    pub fn with_mut(&self, request_id: &str, f: impl FnOnce(&mut T)) {
        if let Some(r) = self.lock().get_mut(request_id) {
            f(r);
        }
    }
}

/// Node pairing keeps its requests as the JSON the client sent (plus ours).
impl Request for serde_json::Value {
    fn request_id(&self) -> &str {
        self["requestId"].as_str().unwrap_or_default()
    }
    fn subject(&self) -> &str {
        self["nodeId"].as_str().unwrap_or_default()
    }
    fn filed_at(&self) -> u64 {
        self["ts"].as_u64().unwrap_or(0)
    }
}
