//! `cron.*`, `wake`, `set-heartbeats`, `last-heartbeat` (logic in `crate::cron`).
//! v3 answers `cron.list` `{jobs}` and `cron.runs` `{entries}`; v4 pages both
//! (`total`, `offset`, `limit`, `hasMore`, `nextOffset`).

use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::methods::{
    CRON_SCRATCH_MAX_BYTES, CronAddParams, CronJobRef, CronListParams, CronRunMode, CronRunParams,
    CronRunsParams, CronScratchSetParams, CronUpdateParams, SetHeartbeatsParams, WakeMode,
    WakeParams,
};

use super::{Call, Reply, to_value};
use crate::clock::now_ms;
use crate::cron::{self, Trigger, store};
use crate::protocol::error::RpcError;

fn db_err(e: crate::state::db::DbError) -> RpcError {
    RpcError::from(e)
}

fn job_id(method: &str, id: &Option<String>, job_id: &Option<String>) -> Result<String, RpcError> {
    id.as_deref()
        .or(job_id.as_deref())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| RpcError::invalid_request(format!("invalid {method} params: missing id")))
}

/// A job id that names no job, in the reference's words and details (its CLI tells
/// "not found" from other errors by `details.code`): `cron.get` says "cron job not
/// found", the other methods "Automation not found".
fn unknown(method: &str, id: &str) -> RpcError {
    let message = if method == "cron.get" {
        format!("cron job not found: {id}. List automations and retry with a current job id.")
    } else {
        format!("Automation not found: {id}. List automations and retry with a current job id.")
    };
    RpcError::invalid_request(message)
        .with_details(json!({"code": "CRON_JOB_NOT_FOUND", "jobId": id}))
}

/// The job `id`, or the reference's not-found error for the call's method.
async fn known_job(c: &Call, id: &str) -> Result<store::Job, RpcError> {
    store::get(&c.app.db, id)
        .await
        .map_err(db_err)?
        .ok_or_else(|| unknown(c.method, id))
}

/// The agent a job runs as: its own, or the default one.
fn effective_agent(job: &store::Job) -> &str {
    job.agent_id
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or(crate::config::DEFAULT_AGENT_ID)
}

/// Where a job's answer goes, in a few words (the v4 list's `deliveryPreviews`).
fn delivery_preview(job: &store::Job) -> Value {
    let d = job.delivery.as_ref();
    let s = |k: &str| d.and_then(|d| d.get(k)).and_then(Value::as_str);
    let (label, detail) = match s("mode") {
        Some("announce") => {
            let channel = s("channel").unwrap_or("last");
            let to = s("to").map(|t| format!(":{t}")).unwrap_or_default();
            (
                format!("announce -> {channel}{to}"),
                if channel == "last" {
                    "the channel the session last spoke on".to_owned()
                } else {
                    "explicit".to_owned()
                },
            )
        }
        Some("webhook") => (
            format!("webhook:{}", s("to").unwrap_or("")),
            "webhook".to_owned(),
        ),
        _ if job.payload.deliver == Some(true) => (
            format!(
                "announce -> {}{}",
                job.payload.channel.as_deref().unwrap_or("last"),
                job.payload
                    .to
                    .as_deref()
                    .map(|t| format!(":{t}"))
                    .unwrap_or_default()
            ),
            "explicit".to_owned(),
        ),
        _ => ("not requested".to_owned(), "not requested".to_owned()),
    };
    json!({"label": label, "detail": detail})
}

/// A job as a v4 listing shows it: the stored job plus `effectiveAgentId` and the
/// top-level `nextRunAtMs`.
fn listed(job: &store::Job) -> Value {
    let mut v = to_value(job);
    v["effectiveAgentId"] = json!(effective_agent(job));
    v["nextRunAtMs"] = json!(job.state.next_run_at_ms);
    v
}

fn page(
    v: ProtocolVersion,
    key: &str,
    items: Vec<Value>,
    total: u64,
    offset: u64,
    limit: u64,
) -> Value {
    match v {
        ProtocolVersion::V3 => json!({ key: items }),
        ProtocolVersion::V4 => {
            let end = offset + items.len() as u64;
            let more = end < total;
            json!({key: items, "total": total, "offset": offset, "limit": limit,
                "hasMore": more, "nextOffset": if more { json!(end) } else { Value::Null }})
        }
    }
}

pub async fn status(c: Call) -> Result<Reply, RpcError> {
    let jobs = store::load_all(&c.app.db).await.map_err(db_err)?;
    let enabled = c.app.config.cron_enabled;
    let next = if enabled {
        cron::next_wake(&c.app).await
    } else {
        None
    };
    let path = c.app.db.path().display().to_string();
    let mut out = json!({
        "enabled": enabled,
        "storePath": path,
        "jobs": jobs.len(),
        "nextWakeAtMs": next,
    });
    if c.version() == ProtocolVersion::V4 {
        // v4 also says where and how jobs are kept, and whether they fire (one switch
        // here: `cron.enabled`).
        out["triggersEnabled"] = json!(enabled);
        out["storage"] = json!("sqlite");
        out["sqlitePath"] = json!(path);
    }
    Ok(Reply::Json(out))
}

pub async fn list(c: Call) -> Result<Reply, RpcError> {
    let p: CronListParams = c.parse()?;
    let mut jobs = store::load_all(&c.app.db).await.map_err(db_err)?;
    let include_disabled = p.include_disabled == Some(true)
        || matches!(p.enabled.as_deref(), Some("all") | Some("disabled"));
    jobs.retain(|j| match p.enabled.as_deref() {
        Some("disabled") => !j.enabled,
        _ => include_disabled || j.enabled,
    });
    if let Some(agent) = p.agent_id.as_deref().map(str::trim) {
        jobs.retain(|j| effective_agent(j) == agent);
    }
    if let Some(q) = p
        .query
        .as_deref()
        .map(str::to_lowercase)
        .filter(|q| !q.is_empty())
    {
        jobs.retain(|j| {
            [
                Some(&j.id),
                Some(&j.name),
                j.description.as_ref(),
                j.display_name.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|f| f.to_lowercase().contains(&q))
        });
    }
    jobs.sort_by_key(|j| j.state.next_run_at_ms.unwrap_or(u64::MAX));
    let total = jobs.len() as u64;
    let offset = p.offset.unwrap_or(0);
    let limit = p.limit.unwrap_or(50);
    if c.version() == ProtocolVersion::V3 {
        let items = jobs.iter().map(to_value).collect();
        return Ok(Reply::Json(page(
            c.version(),
            "jobs",
            items,
            total,
            0,
            limit,
        )));
    }
    // The revision of the whole listing (the same on each of its pages): a client that
    // pages through sees whether the jobs changed in between, as the reference's does.
    let revision = {
        use base64::Engine;
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for j in &jobs {
            h.update(serde_json::to_vec(j).unwrap_or_default());
            h.update(b"\n");
        }
        format!(
            "sha256:{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.finalize())
        )
    };
    let shown: Vec<&store::Job> = jobs
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    let previews: serde_json::Map<String, Value> = shown
        .iter()
        .map(|j| (j.id.clone(), delivery_preview(j)))
        .collect();
    let mut out = page(
        c.version(),
        "jobs",
        shown.iter().map(|j| listed(j)).collect(),
        total,
        offset,
        limit,
    );
    out["snapshotRevision"] = json!(revision);
    out["deliveryPreviews"] = Value::Object(previews);
    Ok(Reply::Json(out))
}

pub async fn get(c: Call) -> Result<Reply, RpcError> {
    let p: CronJobRef = c.parse()?;
    let id = job_id(c.method, &p.id, &p.job_id)?;
    Ok(Reply::Json(to_value(&known_job(&c, &id).await?)))
}

fn check_target(job: &store::Job) -> Result<(), RpcError> {
    let t = job.session_target.as_str();
    if !matches!(t, "main" | "isolated" | "current") && !t.starts_with("session:") {
        return Err(RpcError::invalid_request(format!(
            "invalid sessionTarget {t:?}: main, isolated, current or session:<key>"
        )));
    }
    if !matches!(job.payload.kind.as_str(), "agentTurn" | "systemEvent") {
        return Err(RpcError::invalid_request(format!(
            "unsupported payload kind {:?}: Switchboard runs agentTurn and systemEvent",
            job.payload.kind
        )));
    }
    if job.payload.message.is_none() && job.payload.text.is_none() {
        return Err(RpcError::invalid_request(
            "payload.message (or text) is required",
        ));
    }
    Ok(())
}

pub async fn add(c: Call) -> Result<Reply, RpcError> {
    let p: CronAddParams = c.parse()?;
    let now = now_ms();
    let mut job = store::Job {
        id: uuid::Uuid::new_v4().to_string(),
        agent_id: p.agent_id,
        session_key: p.session_key,
        name: p.name.trim().to_owned(),
        description: p.description,
        enabled: p.enabled.unwrap_or(true),
        delete_after_run: p.delete_after_run,
        created_at_ms: now,
        updated_at_ms: now,
        schedule: p.schedule,
        session_target: p.session_target.unwrap_or_else(|| "isolated".into()),
        wake_mode: p.wake_mode.unwrap_or_else(|| "now".into()),
        payload: p.payload,
        delivery: p.delivery,
        misfire: p.misfire.unwrap_or(c.app.config.cron_default_misfire),
        display_name: p.display_name,
        declaration_key: p.declaration_key.map(|k| k.trim().to_owned()),
        failure_alert: p.failure_alert,
        state: Default::default(),
    };
    check_target(&job)?;
    job.state.next_run_at_ms = cron::first_fire(&job, now).map_err(RpcError::invalid_request)?;
    {
        let _g = c.app.cron.edit.lock().await;
        // A declared job is added once: the same key again answers the job that has it.
        if let Some(key) = job.declaration_key.as_deref() {
            let existing = store::load_all(&c.app.db).await.map_err(db_err)?;
            if let Some(have) = existing
                .iter()
                .find(|j| j.declaration_key.as_deref() == Some(key))
            {
                return Ok(Reply::Json(
                    json!({"created": false, "updated": false, "job": to_value(have)}),
                ));
            }
        }
        store::put(&c.app.db, &job).await.map_err(db_err)?;
    }
    c.app.cron.changed.notify_one();
    cron::emit(
        &c.app,
        json!({"jobId": job.id, "action": "added", "nextRunAtMs": job.state.next_run_at_ms}),
    );
    if job.declaration_key.is_some() {
        return Ok(Reply::Json(json!({"created": true, "job": to_value(&job)})));
    }
    Ok(Reply::Json(to_value(&job)))
}

pub async fn update(c: Call) -> Result<Reply, RpcError> {
    let p: CronUpdateParams = c.parse()?;
    let id = job_id(c.method, &p.id, &p.job_id)?;
    let now = now_ms();
    let job = {
        let _g = c.app.cron.edit.lock().await;
        let job = known_job(&c, &id).await?;
        let mut v = to_value(&job);
        for (k, val) in p.patch {
            match k.as_str() {
                "id" | "createdAtMs" | "updatedAtMs" | "state" => {}
                "payload" | "delivery" if val.is_object() && v[&k].is_object() => {
                    if let (Some(dst), Some(src)) = (v[&k].as_object_mut(), val.as_object()) {
                        for (pk, pv) in src {
                            if pv.is_null() {
                                dst.remove(pk);
                            } else {
                                dst.insert(pk.clone(), pv.clone());
                            }
                        }
                    }
                }
                _ if val.is_null() => {
                    if let Some(o) = v.as_object_mut() {
                        o.remove(&k);
                    }
                }
                _ => v[&k] = val,
            }
        }
        let mut job: store::Job = serde_json::from_value(v)
            .map_err(|e| RpcError::invalid_request(format!("invalid cron.update params: {e}")))?;
        check_target(&job)?;
        job.updated_at_ms = now;
        job.state.next_run_at_ms =
            cron::first_fire(&job, now).map_err(RpcError::invalid_request)?;
        store::put(&c.app.db, &job).await.map_err(db_err)?;
        job
    };
    c.app.cron.changed.notify_one();
    cron::emit(
        &c.app,
        json!({"jobId": id, "action": "updated", "nextRunAtMs": job.state.next_run_at_ms}),
    );
    Ok(Reply::Json(to_value(&job)))
}

pub async fn remove(c: Call) -> Result<Reply, RpcError> {
    let p: CronJobRef = c.parse()?;
    let id = job_id(c.method, &p.id, &p.job_id)?;
    let removed = {
        let _g = c.app.cron.edit.lock().await;
        store::delete(&c.app.db, &id).await.map_err(db_err)?
    };
    if !removed {
        return Err(unknown(c.method, &id));
    }
    c.app.cron.changed.notify_one();
    cron::emit(&c.app, json!({"jobId": id, "action": "removed"}));
    Ok(Reply::Json(json!({"ok": true, "removed": true})))
}

/// A scratch as the reference shows it: `null` when there is no text.
fn public_scratch(s: &store::Scratch) -> Value {
    match &s.content {
        Some(text) => {
            json!({"content": text, "revision": s.revision, "updatedAtMs": s.updated_at_ms})
        }
        None => Value::Null,
    }
}

/// v4 `cron.scratch.get`: a job's private scratch text and its revision. The text is
/// the job's own store: never in `cron.list`/`get`/`runs`, and Switchboard's runs do not
/// read it (README: cron).
pub async fn scratch_get(c: Call) -> Result<Reply, RpcError> {
    let p: CronJobRef = c.parse()?;
    let id = job_id(c.method, &p.id, &p.job_id)?;
    known_job(&c, &id).await?;
    let s = store::scratch(&c.app.db, &id).await.map_err(db_err)?;
    Ok(Reply::Json(json!({
        "scratch": public_scratch(&s),
        "currentRevision": s.revision,
        "maxBytes": CRON_SCRATCH_MAX_BYTES,
    })))
}

/// v4 `cron.scratch.set`: replaces (or, with `content: null`, clears) the scratch;
/// with `expectedRevision`, only when that is still the current revision (else
/// `{ok: false, reason: "revision-conflict", currentRevision}`, nothing written).
pub async fn scratch_set(c: Call) -> Result<Reply, RpcError> {
    let p: CronScratchSetParams = c.parse()?;
    let id = job_id(c.method, &p.id, &p.job_id)?;
    if let Some(text) = &p.content
        && text.len() > CRON_SCRATCH_MAX_BYTES
    {
        return Err(RpcError::invalid_request(format!(
            "invalid {} params: cron scratch exceeds {CRON_SCRATCH_MAX_BYTES} bytes ({} bytes provided)",
            c.method,
            text.len()
        )));
    }
    // Under the edit lock: a job removed meanwhile leaves no scratch behind.
    let _g = c.app.cron.edit.lock().await;
    known_job(&c, &id).await?;
    let written = store::write_scratch(
        &c.app.db,
        &id,
        p.content,
        p.expected_revision,
        p.source_sha256,
        now_ms(),
    )
    .await
    .map_err(db_err)?;
    Ok(Reply::Json(match written {
        store::ScratchWrite::Done(s) => json!({
            "ok": true,
            "scratch": public_scratch(&s),
            "currentRevision": s.revision,
            "maxBytes": CRON_SCRATCH_MAX_BYTES,
        }),
        store::ScratchWrite::Conflict { current } => json!({
            "ok": false, "reason": "revision-conflict", "currentRevision": current,
        }),
    }))
}

/// `cron.run`: `force` runs now, `due` only when due (the default, as the reference),
/// `if-enabled` only when enabled. v3 answers when the run has finished, v4 at once.
pub async fn run(c: Call) -> Result<Reply, RpcError> {
    let p: CronRunParams = c.parse()?;
    let id = job_id(c.method, &p.id, &p.job_id)?;
    let job = known_job(&c, &id).await?;
    let now = now_ms();
    let mode = p.mode.unwrap_or(CronRunMode::Due);
    let go = match mode {
        CronRunMode::Force => true,
        CronRunMode::IfEnabled => job.enabled,
        CronRunMode::Due => job.enabled && job.state.next_run_at_ms.is_some_and(|t| t <= now),
    };
    if !go {
        let reason = if mode == CronRunMode::IfEnabled {
            "disabled"
        } else {
            "not-due"
        };
        return Ok(Reply::Json(
            json!({"ok": true, "ran": false, "reason": reason}),
        ));
    }
    if c.version() == ProtocolVersion::V4 {
        // v4 queues the run and answers at once; `cron.runs {runId}` tells its end.
        return Ok(Reply::Json(match cron::enqueue(&c.app, &id) {
            Some(run_id) => json!({"ok": true, "enqueued": true, "runId": run_id}),
            None => json!({"ok": true, "ran": false, "reason": "already-running"}),
        }));
    }
    let app = std::sync::Arc::clone(&c.app);
    Ok(c.defer(async move {
        match cron::execute(&app, &id, Trigger::Manual).await {
            Some(entry) => Ok(json!({"ok": true, "ran": true, "runId": entry["runId"],
                "status": entry["status"]})),
            None => Ok(json!({"ok": true, "ran": false, "reason": "already-running"})),
        }
    }))
}

pub async fn runs(c: Call) -> Result<Reply, RpcError> {
    let p: CronRunsParams = c.parse()?;
    let all = p.scope.as_deref() == Some("all");
    let id = if all && c.version() == ProtocolVersion::V4 {
        None
    } else {
        Some(job_id(c.method, &p.id, &p.job_id)?)
    };
    // A v4 client asking for one job's runs learns that the job does not exist (its
    // history outlives it only for the runs of all jobs).
    if let Some(id) = id.as_deref()
        && c.version() == ProtocolVersion::V4
    {
        known_job(&c, id).await?;
    }
    let offset = p.offset.unwrap_or(0);
    let (limit, desc) = match c.version() {
        ProtocolVersion::V3 => (p.limit.unwrap_or(200), false),
        ProtocolVersion::V4 => (
            p.limit.unwrap_or(50).min(200),
            p.sort_dir.as_deref() != Some("asc"),
        ),
    };
    let filter = store::RunFilter {
        status: p.status,
        delivery_status: p.delivery_status,
        query: p.query,
        run_id: p.run_id,
    };
    let (mut entries, total) =
        if c.version() == ProtocolVersion::V4 && (!filter.is_empty() || !desc) {
            store::runs_filtered(&c.app.db, id.as_deref(), filter, offset, limit, desc)
                .await
                .map_err(db_err)?
        } else if desc {
            store::runs(&c.app.db, id.as_deref(), offset, limit, true)
                .await
                .map_err(db_err)?
        } else {
            // v3: the last `limit` entries, oldest first.
            let (mut e, t) = store::runs(&c.app.db, id.as_deref(), 0, limit, true)
                .await
                .map_err(db_err)?;
            e.reverse();
            (e, t)
        };
    entries.truncate(limit as usize);
    Ok(Reply::Json(page(
        c.version(),
        "entries",
        entries,
        total,
        offset,
        limit,
    )))
}

pub async fn wake(c: Call) -> Result<Reply, RpcError> {
    let p: WakeParams = c.parse()?;
    let text = p.text.trim();
    if text.is_empty() {
        return Err(RpcError::invalid_request(
            "invalid wake params: text required",
        ));
    }
    c.app.cron.heartbeat.wake(text, p.mode == WakeMode::Now);
    Ok(Reply::Json(json!({"ok": true})))
}

pub async fn set_heartbeats(c: Call) -> Result<Reply, RpcError> {
    let p: SetHeartbeatsParams = c.parse()?;
    c.app
        .cron
        .heartbeats_off
        .store(!p.enabled, Ordering::Relaxed);
    Ok(Reply::Json(json!({"ok": true, "enabled": p.enabled})))
}

pub async fn last_heartbeat(c: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(
        c.app.cron.heartbeat.last().unwrap_or(Value::Null),
    ))
}
