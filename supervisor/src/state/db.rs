//! The gateway's durable state: one SQLite file in the state directory, WAL mode,
//! schema migrations versioned with `PRAGMA user_version`.
//!
//! Blocking SQLite calls never run on the async workers: [`Db::call`] moves them to
//! tokio's blocking pool. A migration is append-only: never edit one that has shipped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

/// Migrations in order; `user_version` = how many have been applied.
const MIGRATIONS: &[&str] = &[
    // 1: sessions (conversation keys) and the durable idempotency table.
    "CREATE TABLE sessions (
        key         TEXT PRIMARY KEY,
        agent_id    TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
     );
     CREATE INDEX sessions_updated ON sessions(updated_at DESC);
     CREATE TABLE idempotency (
        key         TEXT PRIMARY KEY,
        method      TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        response    TEXT
     );
     CREATE INDEX idempotency_created ON idempotency(created_at);",
    // 2: conversation history, one row per message.
    "CREATE TABLE messages (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        session_key TEXT NOT NULL,
        role        TEXT NOT NULL,
        content     TEXT NOT NULL,
        run_id      TEXT,
        created_at  INTEGER NOT NULL
     );
     CREATE INDEX messages_session ON messages(session_key, id);",
    // 3: devices, pairing requests, device tokens (hashes only).
    "CREATE TABLE devices (
        device_id   TEXT PRIMARY KEY,
        record      TEXT NOT NULL
     );
     CREATE TABLE pairing_requests (
        request_id  TEXT PRIMARY KEY,
        device_id   TEXT NOT NULL,
        record      TEXT NOT NULL,
        expires_at  INTEGER NOT NULL
     );
     CREATE TABLE device_tokens (
        device_id   TEXT NOT NULL,
        role        TEXT NOT NULL,
        generation  INTEGER NOT NULL,
        token_hash  TEXT NOT NULL,
        scopes      TEXT NOT NULL,
        issued_at   INTEGER NOT NULL,
        revoked_at  INTEGER,
        PRIMARY KEY (device_id, role)
     );",
    // 4: the node pairing store (`node.pair.*`), separate from device pairing.
    "CREATE TABLE node_pairing_pending (
        request_id  TEXT PRIMARY KEY,
        node_id     TEXT NOT NULL,
        record      TEXT NOT NULL,
        expires_at  INTEGER NOT NULL
     );
     CREATE TABLE node_pairing_paired (
        node_id     TEXT PRIMARY KEY,
        record      TEXT NOT NULL,
        token_hash  TEXT NOT NULL
     );",
    // 5: messaging channels: inbound messages (the dedupe key is the provider's message),
    // the durable outbox, and DM pairing (pending codes, approved senders).
    "CREATE TABLE inbound (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        channel         TEXT NOT NULL,
        account_id      TEXT NOT NULL,
        chat_id         TEXT NOT NULL,
        message_id      TEXT NOT NULL,
        sender_id       TEXT NOT NULL,
        sender_name     TEXT NOT NULL,
        sender_username TEXT NOT NULL,
        chat_type       TEXT NOT NULL,
        chat_title      TEXT NOT NULL,
        is_group        INTEGER NOT NULL,
        mentioned       INTEGER NOT NULL,
        text            TEXT NOT NULL,
        received_at     INTEGER NOT NULL,
        state           TEXT NOT NULL,
        outcome         TEXT,
        UNIQUE (channel, account_id, chat_id, message_id)
     );
     CREATE INDEX inbound_open ON inbound(state) WHERE state IN ('received', 'running');
     CREATE TABLE outbox (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        id              TEXT NOT NULL UNIQUE,
        channel         TEXT NOT NULL,
        account_id      TEXT NOT NULL,
        target          TEXT NOT NULL,
        text            TEXT NOT NULL,
        source          TEXT NOT NULL,
        idem_key        TEXT UNIQUE,
        session_key     TEXT,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        message_id      TEXT,
        error           TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
     );
     CREATE INDEX outbox_open ON outbox(channel, target, seq) WHERE state IN ('pending', 'sending');
     CREATE TABLE dm_pairing (
        channel         TEXT NOT NULL,
        code            TEXT NOT NULL,
        sender_id       TEXT NOT NULL,
        chat_id         TEXT NOT NULL,
        sender_name     TEXT NOT NULL,
        sender_username TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL,
        PRIMARY KEY (channel, code)
     );
     CREATE TABLE dm_allowed (
        channel         TEXT NOT NULL,
        sender_id       TEXT NOT NULL,
        sender_name     TEXT NOT NULL,
        sender_username TEXT NOT NULL,
        approved_at     INTEGER NOT NULL,
        PRIMARY KEY (channel, sender_id)
     );",
    // 6: threads (a reply goes back into the thread of its message), each channel's
    // replay cursor (stored with the message it came with), and one table for the
    // pending pairing requests of devices and nodes.
    "ALTER TABLE inbound ADD COLUMN thread_id TEXT NOT NULL DEFAULT '';
     ALTER TABLE outbox ADD COLUMN thread_id TEXT NOT NULL DEFAULT '';
     ALTER TABLE outbox ADD COLUMN uncertain INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE channel_cursors (
        channel     TEXT PRIMARY KEY,
        cursor      TEXT NOT NULL,
        updated_at  INTEGER NOT NULL
     );
     CREATE TABLE pending_requests (
        kind        TEXT NOT NULL,
        request_id  TEXT NOT NULL,
        subject_id  TEXT NOT NULL,
        record      TEXT NOT NULL,
        expires_at  INTEGER NOT NULL,
        PRIMARY KEY (kind, request_id)
     );
     INSERT INTO pending_requests (kind, request_id, subject_id, record, expires_at)
        SELECT 'device', request_id, device_id, record, expires_at FROM pairing_requests;
     INSERT INTO pending_requests (kind, request_id, subject_id, record, expires_at)
        SELECT 'node', request_id, node_id, record, expires_at FROM node_pairing_pending;
     DROP TABLE pairing_requests;
     DROP TABLE node_pairing_pending;",
];

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this build knows ({known}); upgrade switchboard"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },
    #[error("migration {version} failed: {source}")]
    Migration {
        version: usize,
        source: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database task failed: {0}")]
    Join(String),
}

/// A handle to the database, cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Db {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let open_err = |source| DbError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        migrate(&mut conn, path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (it is
            // transactional), so a poisoned lock is safe to reuse.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard).map_err(DbError::from)
        })
        .await
        .map_err(|e| DbError::Join(e.to_string()))?
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current < 0 || current as usize > MIGRATIONS.len() {
        return Err(DbError::TooNew {
            path: path.to_owned(),
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i + 1;
        let tx = conn
            .transaction()
            .map_err(|source| DbError::Migration { version, source })?;
        tx.execute_batch(sql)
            .map_err(|source| DbError::Migration { version, source })?;
        tx.pragma_update(None, "user_version", version as i64)
            .map_err(|source| DbError::Migration { version, source })?;
        tx.commit()
            .map_err(|source| DbError::Migration { version, source })?;
        tracing::info!(version, "database migrated");
    }
    Ok(())
}

/// Schema version this build migrates to.
pub fn schema_version() -> usize {
    MIGRATIONS.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_twice_migrates_once_and_uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        drop(Db::open(&path).unwrap());
        let db = Db::open(&path).unwrap();
        let conn = db.conn.lock().unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, schema_version());
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", 999).unwrap();
        }
        let err = Db::open(&path).err().expect("refused").to_string();
        assert!(err.contains("newer than this build"), "{err}");
    }
}
