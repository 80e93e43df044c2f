//! The gateway's durable state: one SQLite file in the state directory, WAL mode,
//! schema migrations versioned with `PRAGMA user_version`.
//!
//! Blocking SQLite calls never run on the async workers: [`Db::call`] moves them to
//! tokio's blocking pool. A migration is append-only: never edit one that has shipped.
//!
//! **Durability.** `journal_mode = WAL` with `synchronous = FULL`: every commit fsyncs
//! the WAL before it returns, so anything the gateway acknowledged (an accepted `send`,
//! a delivery's outcome, an idempotency record, a paired device) survives a power loss
//! or a kernel crash, not only a crash of the process. `NORMAL` would be faster but may
//! lose the last commits on power loss, which is exactly the acknowledged work. Measured
//! on the development machine (2 vCPU VM, ext4 on virtio; `cargo test -p switchboard
//! --lib -- --ignored commit_rate --nocapture`): see `BENCHMARKS.md`, "SQLite commits".
//!
//! **Faults.** A storage failure (corrupt file, I/O error, full disk, read-only file)
//! seen by any call, or by the integrity check at open, is kept as the database's
//! [`Fault`]: `health` and `/healthz` fail with it and the gateway refuses the requests
//! that would have to record something ([`Db::fault`]). A corrupt database stays faulted
//! until a restart; the others clear when a write probe succeeds again ([`Db::probe`]).

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
    // 7: small facts about the database itself (the write probe's row).
    "CREATE TABLE state_meta (
        key         TEXT PRIMARY KEY,
        value       TEXT NOT NULL
     );",
    // 8: cron jobs (each row the job as the wire shows it, state included) and their
    // run history, misfires included (`cron::store`).
    "CREATE TABLE cron_jobs (
        id          TEXT PRIMARY KEY,
        job         TEXT NOT NULL,
        created_at  INTEGER NOT NULL
     );
     CREATE TABLE cron_runs (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id      TEXT NOT NULL,
        ts          INTEGER NOT NULL,
        entry       TEXT NOT NULL
     );
     CREATE INDEX cron_runs_by_job ON cron_runs (job_id, seq);",
    // 9: each cron job's private scratch text (v4 `cron.scratch.*`): its revision
    // outlives a clear (`content` NULL) so a compare-and-swap never goes back.
    "CREATE TABLE cron_scratch (
        job_id      TEXT PRIMARY KEY,
        content     TEXT,
        revision    INTEGER NOT NULL,
        source_sha  TEXT,
        updated_at  INTEGER NOT NULL
     );",
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
    #[error(
        "the database {path} is missing or empty, but the state directory {dir} was used \
         before ({evidence}): its history, paired devices and delivery records would be \
         silently replaced. Restore the database from a backup, or start once with \
         `switchboard gateway run --reset-state` to begin with an empty database"
    )]
    Missing {
        path: PathBuf,
        dir: PathBuf,
        evidence: String,
    },
    #[error(
        "the database {path} is damaged ({reason}). Restore it from a backup, or start once \
         with `switchboard gateway run --reset-state` to move it aside and begin empty"
    )]
    Damaged { path: PathBuf, reason: String },
}

/// A storage failure that stops the database from recording what the gateway does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What is wrong, for `health`, `/healthz` and refused requests.
    pub reason: String,
    /// Corruption does not heal by itself; the others may (space freed, remounted).
    pub sticky: bool,
}

/// What kind of storage failure an error is, if it is one.
fn storage_failure(e: &rusqlite::Error) -> Option<(&'static str, bool)> {
    use rusqlite::ErrorCode::*;
    let rusqlite::Error::SqliteFailure(f, _) = e else {
        return None;
    };
    match f.code {
        DatabaseCorrupt | NotADatabase => Some(("the database file is corrupt", true)),
        DiskFull => Some(("the disk is full", false)),
        ReadOnly => Some(("the database cannot be written (read-only)", false)),
        SystemIoFailure => Some(("an I/O error", false)),
        CannotOpen => Some(("the database file cannot be opened", false)),
        PermissionDenied => Some(("permission denied", false)),
        _ => None,
    }
}

/// A handle to the database, cheap to clone.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
    fault: Arc<tokio::sync::watch::Sender<Option<Fault>>>,
}

impl Db {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let mut conn = connect(path)?;
        migrate(&mut conn, path)?;
        Ok(Db::from_conn(conn, path))
    }

    /// Opens the gateway's database. `Some(evidence)`: the state directory was used
    /// before, so a missing or empty database is refused ([`DbError::Missing`]) instead of
    /// being replaced. A file SQLite cannot read at all is [`DbError::Damaged`]. Then the
    /// integrity check runs (`quick_check`) and a write probe: a failure there does not
    /// stop the start, it becomes the [`Fault`] `health` reports.
    pub fn open_state(path: &Path, used_before: Option<&str>) -> Result<Db, DbError> {
        let empty = std::fs::metadata(path)
            .map(|m| m.len() == 0)
            .unwrap_or(true);
        let missing = |evidence: &str| DbError::Missing {
            path: path.to_owned(),
            dir: path.parent().unwrap_or(Path::new(".")).to_owned(),
            evidence: evidence.to_owned(),
        };
        if let (true, Some(evidence)) = (empty, used_before) {
            return Err(missing(evidence));
        }
        let damaged = |e: &rusqlite::Error| DbError::Damaged {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut conn = connect(path).map_err(|e| match &e {
            DbError::Open { source, .. } if storage_failure(source).is_some_and(|f| f.1) => {
                damaged(source)
            }
            _ => e,
        })?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| damaged(&e))?;
        if let (0, Some(evidence)) = (version, used_before) {
            return Err(missing(evidence));
        }
        migrate(&mut conn, path)?;
        let check: Result<String, _> = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0));
        let db = Db::from_conn(conn, path);
        match check {
            Ok(s) if s == "ok" => {}
            Ok(s) => db.set_fault(Fault {
                reason: format!("the database file is corrupt: {s}"),
                sticky: true,
            }),
            Err(e) => db.note(&e),
        }
        if db.fault().is_none() {
            let _ = db.probe_blocking();
        }
        Ok(db)
    }

    fn from_conn(conn: Connection, path: &Path) -> Db {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        Db {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_owned(),
            fault: Arc::new(tokio::sync::watch::channel(None).0),
        }
    }

    /// The storage failure that currently stops the database from recording, if any.
    pub fn fault(&self) -> Option<Fault> {
        self.fault.borrow().clone()
    }

    /// Watches [`Db::fault`] (a dispatcher waits on it instead of retrying in a loop).
    pub fn watch_fault(&self) -> tokio::sync::watch::Receiver<Option<Fault>> {
        self.fault.subscribe()
    }

    fn set_fault(&self, fault: Fault) {
        let mut logged = false;
        self.fault.send_if_modified(|slot| {
            if slot.as_ref().is_some_and(|f| f.sticky) || slot.as_ref() == Some(&fault) {
                return false;
            }
            if slot.is_none() {
                logged = true;
            }
            *slot = Some(fault.clone());
            true
        });
        if logged {
            tracing::error!(
                path = %self.path.display(),
                reason = %fault.reason,
                "the database cannot record: health fails and requests that would write are refused until it can"
            );
        }
    }

    /// Keeps a storage failure as the database's fault.
    fn note(&self, e: &rusqlite::Error) {
        if let Some((what, sticky)) = storage_failure(e) {
            self.set_fault(Fault {
                reason: format!("{what}: {e}"),
                sticky,
            });
        }
    }

    /// One small durable write; clears a non-sticky fault when it succeeds.
    pub async fn probe(&self) -> Result<(), DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.probe_blocking())
            .await
            .map_err(|e| DbError::Join(e.to_string()))?
    }

    fn probe_blocking(&self) -> Result<(), DbError> {
        let result = {
            let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
            // SQLite opens a file it cannot write read-only, for good: once the file is
            // writable again, only a new connection can write.
            if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false)
                && let Ok(fresh) = connect(&self.path)
                && !fresh.is_readonly(rusqlite::MAIN_DB).unwrap_or(true)
            {
                *conn = fresh;
            }
            conn.execute(
                "INSERT INTO state_meta (key, value) VALUES ('probe', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [crate::clock::now_ms().to_string()],
            )
        };
        match result {
            Ok(_) => {
                let cleared = self.fault.send_if_modified(|slot| {
                    if slot.as_ref().is_some_and(|f| !f.sticky) {
                        *slot = None;
                        true
                    } else {
                        false
                    }
                });
                if cleared {
                    tracing::info!(path = %self.path.display(), "the database records again");
                }
                Ok(())
            }
            Err(e) => {
                self.note(&e);
                Err(DbError::Sqlite(e))
            }
        }
    }
}

fn connect(path: &Path) -> Result<Connection, DbError> {
    let open_err = |source| DbError::Open {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    // Acknowledged work must survive a power loss (module docs).
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(open_err)?;
    Ok(conn)
}

impl Db {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (it is
            // transactional), so a poisoned lock is safe to reuse.
            let mut guard = db.conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard).map_err(|e| {
                db.note(&e);
                DbError::from(e)
            })
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
        // FULL = 2: a commit is on disk before the gateway acknowledges it.
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2);
    }

    /// The cost of `synchronous = FULL` against `NORMAL` on this machine (for the module
    /// docs and BENCHMARKS.md): one small outbox-sized commit at a time, as the gateway
    /// makes them. `cargo test -p switchboard --lib -- --ignored commit_rate --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn commit_rate() {
        let dir = tempfile::tempdir().unwrap();
        for sync in ["NORMAL", "FULL"] {
            let path = dir.path().join(format!("{sync}.sqlite"));
            let db = Db::open(&path).unwrap();
            let conn = db.conn.lock().unwrap();
            conn.pragma_update(None, "synchronous", sync).unwrap();
            let n = 2000;
            let t0 = std::time::Instant::now();
            for i in 0..n {
                conn.execute(
                    "INSERT INTO state_meta (key, value) VALUES (?1, ?2)",
                    [format!("k{i}"), "x".repeat(200)],
                )
                .unwrap();
            }
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "synchronous={sync}: {:.0} commits/s ({:.3} ms each)",
                n as f64 / secs,
                secs * 1000.0 / n as f64
            );
        }
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
