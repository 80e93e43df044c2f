//! Cron jobs and their run history in SQLite (`cron_jobs`, `cron_runs`). A job row holds
//! the job as the wire shows it (`Job`, its scheduler state included), so a restart
//! reads back exactly what `cron.get` answered. The history keeps the newest
//! [`RUNS_KEPT`] entries per job.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_schemas::methods::{CronMisfire, CronPayload, CronSchedule};

use crate::state::db::{Db, DbError};

/// Run-history entries kept per job (the reference's ceiling).
pub const RUNS_KEPT: i64 = 2000;

/// A job as `cron.list` / `cron.get` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after_run: Option<bool>,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    pub schedule: CronSchedule,
    pub session_target: String,
    pub wake_mode: String,
    pub payload: CronPayload,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Value>,
    /// Switchboard's addition: what a fire time missed while stopped comes to.
    pub misfire: CronMisfire,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declaration_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_alert: Option<Value>,
    #[serde(default)]
    pub state: JobState,
}

/// What the scheduler keeps about a job.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_at_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_at_ms: Option<u64>,
    /// v4's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_status: Option<String>,
    /// v3's name (v4 keeps it as a deprecated alias).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_errors: Option<u64>,
}

fn bad_row(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

/// Every job, oldest first.
pub async fn load_all(db: &Db) -> Result<Vec<Job>, DbError> {
    db.call(|c| {
        let mut st = c.prepare("SELECT job FROM cron_jobs ORDER BY created_at, id")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let text = row?;
            match serde_json::from_str::<Job>(&text) {
                Ok(j) => out.push(j),
                Err(e) => tracing::error!(error = %e, "skipping an unreadable cron job row"),
            }
        }
        Ok(out)
    })
    .await
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Job>, DbError> {
    let id = id.to_owned();
    db.call(move |c| {
        let text: Option<String> = c
            .query_row("SELECT job FROM cron_jobs WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .optional()?;
        text.map(|t| serde_json::from_str(&t).map_err(bad_row))
            .transpose()
    })
    .await
}

/// Inserts or replaces the job's row.
pub async fn put(db: &Db, job: &Job) -> Result<(), DbError> {
    let text = serde_json::to_string(job).unwrap_or_default();
    let (id, created) = (job.id.clone(), job.created_at_ms as i64);
    db.call(move |c| {
        c.execute(
            "INSERT INTO cron_jobs (id, job, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET job = excluded.job",
            params![id, text, created],
        )?;
        Ok(())
    })
    .await
}

/// Removes the job (its history stays readable in `cron.runs`).
/// Removes a job and its scratch (its run history stays, for `cron.runs` of all jobs).
pub async fn delete(db: &Db, id: &str) -> Result<bool, DbError> {
    let id = id.to_owned();
    db.call(move |c| {
        let tx = c.transaction()?;
        let n = tx.execute("DELETE FROM cron_jobs WHERE id = ?1", [&id])?;
        tx.execute("DELETE FROM cron_scratch WHERE job_id = ?1", [&id])?;
        tx.commit()?;
        Ok(n > 0)
    })
    .await
}

/// A job's scratch: its text (`None` once cleared), its revision (0: never written).
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    pub content: Option<String>,
    pub revision: u64,
    pub source_sha256: Option<String>,
    pub updated_at_ms: u64,
}

/// The scratch of job `id` (revision 0 and no text when never written).
pub async fn scratch(db: &Db, id: &str) -> Result<Scratch, DbError> {
    let id = id.to_owned();
    db.call(move |c| {
        Ok(c.query_row(
            "SELECT content, revision, source_sha, updated_at FROM cron_scratch WHERE job_id = ?1",
            [&id],
            |r| {
                Ok(Scratch {
                    content: r.get(0)?,
                    revision: r.get::<_, i64>(1)?.max(0) as u64,
                    source_sha256: r.get(2)?,
                    updated_at_ms: r.get::<_, i64>(3)?.max(0) as u64,
                })
            },
        )
        .optional()?
        .unwrap_or_default())
    })
    .await
}

/// What a scratch write did.
#[derive(Debug)]
pub enum ScratchWrite {
    /// Written (or nothing to clear): the scratch now.
    Done(Scratch),
    /// `expected` was not the current revision: nothing written.
    Conflict { current: u64 },
}

/// Replaces job `id`'s scratch with `content` (`None` clears it) in one transaction,
/// when `expected` is absent or the current revision; the revision goes up by one on
/// every write, and clearing a scratch never written writes nothing (as the reference).
pub async fn write_scratch(
    db: &Db,
    id: &str,
    content: Option<String>,
    expected: Option<u64>,
    source_sha256: Option<String>,
    now: u64,
) -> Result<ScratchWrite, DbError> {
    let id = id.to_owned();
    db.call(move |c| {
        let tx = c.transaction()?;
        let current: u64 = tx
            .query_row(
                "SELECT revision FROM cron_scratch WHERE job_id = ?1",
                [&id],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .unwrap_or(0)
            .max(0) as u64;
        if expected.is_some_and(|e| e != current) {
            return Ok(ScratchWrite::Conflict { current });
        }
        if content.is_none() && current == 0 {
            return Ok(ScratchWrite::Done(Scratch::default()));
        }
        let source_sha256 = source_sha256.filter(|_| content.is_some());
        let written = Scratch {
            content,
            revision: current + 1,
            source_sha256,
            updated_at_ms: now,
        };
        tx.execute(
            "INSERT INTO cron_scratch (job_id, content, revision, source_sha, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(job_id) DO UPDATE SET content = excluded.content,
               revision = excluded.revision, source_sha = excluded.source_sha,
               updated_at = excluded.updated_at",
            params![
                id,
                written.content,
                written.revision as i64,
                written.source_sha256,
                now as i64
            ],
        )?;
        tx.commit()?;
        Ok(ScratchWrite::Done(written))
    })
    .await
}

/// Appends a run entry and trims the job's history to [`RUNS_KEPT`].
pub async fn append_run(db: &Db, job_id: &str, ts: u64, entry: &Value) -> Result<(), DbError> {
    let text = entry.to_string();
    let job_id = job_id.to_owned();
    db.call(move |c| {
        let tx = c.transaction()?;
        tx.execute(
            "INSERT INTO cron_runs (job_id, ts, entry) VALUES (?1, ?2, ?3)",
            params![job_id, ts as i64, text],
        )?;
        tx.execute(
            "DELETE FROM cron_runs WHERE job_id = ?1 AND seq NOT IN
               (SELECT seq FROM cron_runs WHERE job_id = ?1 ORDER BY seq DESC LIMIT ?2)",
            params![job_id, RUNS_KEPT],
        )?;
        tx.commit()
    })
    .await
}

/// One page of run entries (of one job, or all), newest first when `desc`; and the total.
pub async fn runs(
    db: &Db,
    job_id: Option<&str>,
    offset: u64,
    limit: u64,
    desc: bool,
) -> Result<(Vec<Value>, u64), DbError> {
    let job_id = job_id.map(str::to_owned);
    db.call(move |c| {
        let order = if desc { "DESC" } else { "ASC" };
        let filter = if job_id.is_some() {
            "WHERE job_id = ?1"
        } else {
            "WHERE ?1 IS NULL"
        };
        let total: i64 = c.query_row(
            &format!("SELECT COUNT(*) FROM cron_runs {filter}"),
            [&job_id],
            |r| r.get(0),
        )?;
        let mut st = c.prepare(&format!(
            "SELECT entry FROM cron_runs {filter} ORDER BY seq {order} LIMIT ?2 OFFSET ?3"
        ))?;
        let rows = st.query_map(params![job_id, limit as i64, offset as i64], |r| {
            r.get::<_, String>(0)
        })?;
        let mut out = Vec::new();
        for row in rows {
            if let Ok(v) = serde_json::from_str(&row?) {
                out.push(v);
            }
        }
        Ok((out, total.max(0) as u64))
    })
    .await
}

/// What `cron.runs` may narrow a listing to (v4); `None` everywhere is every run.
#[derive(Debug, Default)]
pub struct RunFilter {
    pub status: Option<String>,
    pub delivery_status: Option<String>,
    pub query: Option<String>,
    pub run_id: Option<String>,
}

impl RunFilter {
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.delivery_status.is_none()
            && self.query.is_none()
            && self.run_id.is_none()
    }

    /// Whether a run entry passes: `status`/`deliveryStatus` equal (`all` passes all;
    /// a run that asked for no delivery is `not-requested`), `runId` equal, `query` a
    /// case-insensitive part of its summary, error or job name.
    pub fn matches(&self, e: &Value) -> bool {
        let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default();
        if let Some(s) = self.status.as_deref().filter(|s| *s != "all")
            && field("status") != s
        {
            return false;
        }
        if let Some(d) = self.delivery_status.as_deref().filter(|s| *s != "all") {
            let have = match field("deliveryStatus") {
                "" => "not-requested",
                other => other,
            };
            if have != d {
                return false;
            }
        }
        if let Some(r) = self.run_id.as_deref()
            && field("runId") != r
        {
            return false;
        }
        if let Some(q) = self
            .query
            .as_deref()
            .map(str::to_lowercase)
            .filter(|q| !q.is_empty())
        {
            let hay = ["summary", "error", "jobName"]
                .iter()
                .map(|k| field(k).to_lowercase())
                .collect::<Vec<_>>()
                .join("\n");
            if !hay.contains(&q) {
                return false;
            }
        }
        true
    }
}

/// A page of the runs that pass `filter`, in the order asked, and how many pass. The
/// history is bounded ([`RUNS_KEPT`] per job), so filtering reads it whole.
pub async fn runs_filtered(
    db: &Db,
    job_id: Option<&str>,
    filter: RunFilter,
    offset: u64,
    limit: u64,
    desc: bool,
) -> Result<(Vec<Value>, u64), DbError> {
    let (all, _) = runs(db, job_id, 0, i64::MAX as u64, desc).await?;
    let passing: Vec<Value> = all.into_iter().filter(|e| filter.matches(e)).collect();
    let total = passing.len() as u64;
    let page = passing
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    Ok((page, total))
}
