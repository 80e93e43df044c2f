//! Agent runs: the `agent` method's two responses, the streamed `agent` and `chat`
//! events, `agent.wait` and `chat.abort`. The run itself happens in the agent worker;
//! conversation history lives in SQLite and is sent with each run.
//!
//! Guarantees: one idempotency key starts at most one run, ever (the key is recorded
//! before the ack is sent, and survives restarts); every accepted run ends with a final
//! response and a terminal event, also when the worker dies mid-run.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::methods::AgentParams;
use tokio::sync::oneshot;

mod attachments;
pub mod runs;
mod sessions_changed;
mod task;
pub mod tools;

pub use attachments::ATTACHMENTS_MAX_BYTES;
use attachments::check_attachments;
pub use task::RunResult;
use task::{Origin, RunTask};

use crate::state::history::canonical_session_key;
use runs::{Outcome, Run};

use crate::app::App;
use crate::clock::now_ms;
use crate::config::AGENT_WORKER;
use crate::events::hub::ConnHandle;
use crate::protocol::error::RpcError;
use crate::state::idempotency::Record;

/// How long a request waits for a restarting agent worker before `UNAVAILABLE`.
const WORKER_WAIT: Duration = Duration::from_secs(5);

/// What the `agent` handler answers first.
pub enum Admission {
    /// A new run was accepted; this is the ack.
    Accepted(Value),
    /// A repeated key: answer with this (no new run).
    Replay {
        ok: bool,
        payload: Value,
        error: Option<Value>,
    },
}

async fn wait_for_worker(app: &App) -> Result<crate::workers::WorkerChannel, RpcError> {
    let deadline = tokio::time::Instant::now() + WORKER_WAIT;
    loop {
        match app.workers().channel(AGENT_WORKER) {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                let mut err = RpcError::unavailable(e.to_string());
                err.retryable = Some(true);
                err.retry_after_ms = Some(1000);
                return Err(err);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The `agent` method: dedupe, ack, and start the run in the background.
pub async fn start(
    app: &Arc<App>,
    conn: &Arc<ConnHandle>,
    request_id: &str,
    p: AgentParams,
) -> Result<Admission, RpcError> {
    let run_id = p.idempotency_key.clone();
    let key = format!("agent:{run_id}");
    if let Some(existing) = app.idempotency.get(&key).await? {
        return Ok(replay(conn.version, &run_id, existing));
    }
    if let Some(list) = &p.attachments {
        check_attachments(list)?;
    }
    let channel = wait_for_worker(app).await?;
    let accepted_at = now_ms();
    let ack = json!({"runId": run_id, "status": "accepted", "acceptedAt": accepted_at});
    if let Some(existing) = app
        .idempotency
        .claim(&key, "agent", &Record::Accepted { ack: ack.clone() })
        .await?
    {
        // Another request with the same key won the race.
        return Ok(replay(conn.version, &run_id, existing));
    }
    let session_key = canonical_session_key(p.session_key.as_deref(), p.agent_id.as_deref());
    let run = Run::new(&run_id, session_key);
    app.runs.insert(Arc::clone(&run));
    let task = RunTask {
        app: Arc::clone(app),
        origin: Origin::Request {
            conn: Arc::clone(conn),
            request_id: request_id.to_owned(),
        },
        run,
        key: Some(key),
        params: p,
        channel,
        started_at: accepted_at,
    };
    tokio::spawn(task.run());
    Ok(Admission::Accepted(ack))
}

/// `chat.send`: `/stop` aborts the session's runs; a known key answers from the record
/// (`in_flight` while running, the stored result after); a new key is recorded, then
/// acknowledged `{runId, status:"started"}`, and the run streams `chat` events.
pub async fn chat_send(
    app: &Arc<App>,
    p: switchboard_schemas::methods::ChatSendParams,
) -> Result<Admission, RpcError> {
    let session_key = canonical_session_key(Some(&p.session_key), p.agent_id.as_deref());
    if is_stop_command(&p.message) {
        let run_ids = app.runs.abort(&session_key, None);
        return Ok(Admission::Accepted(
            json!({"ok": true, "aborted": !run_ids.is_empty(), "runIds": run_ids}),
        ));
    }
    if let Some(list) = &p.attachments {
        check_attachments(list)?;
    }
    let run_id = p.idempotency_key.clone();
    let key = format!("chat:{run_id}");
    let chat_replay = |existing: Record| match existing {
        Record::Accepted { .. } => Admission::Replay {
            ok: true,
            payload: json!({"runId": run_id, "status": "in_flight"}),
            error: None,
        },
        Record::Final { ok, payload, error } => Admission::Replay { ok, payload, error },
    };
    if let Some(existing) = app.idempotency.get(&key).await? {
        return Ok(chat_replay(existing));
    }
    let channel = wait_for_worker(app).await?;
    let ack = json!({"runId": run_id, "status": "started"});
    if let Some(existing) = app
        .idempotency
        .claim(&key, "chat.send", &Record::Accepted { ack: ack.clone() })
        .await?
    {
        return Ok(chat_replay(existing));
    }
    let mut params = json!({
        "message": p.message,
        "idempotencyKey": run_id,
        "sessionKey": session_key,
    });
    if let Some(list) = p.attachments.filter(|l| !l.is_empty()) {
        params["attachments"] = json!(list);
    }
    if let Some(ms) = p.timeout_ms.filter(|t| *t > 0) {
        params["timeout"] = json!(ms.div_ceil(1000));
    }
    let params: AgentParams = serde_json::from_value(params)
        .map_err(|e| RpcError::invalid_request(format!("invalid chat.send params: {e}")))?;
    let run = Run::new(&run_id, session_key);
    app.runs.insert(Arc::clone(&run));
    let task = RunTask {
        app: Arc::clone(app),
        origin: Origin::Chat,
        run,
        key: Some(key),
        params,
        channel,
        started_at: now_ms(),
    };
    tokio::spawn(task.run());
    Ok(Admission::Accepted(ack))
}

/// `/stop` (the reference's stop command) in a chat message.
fn is_stop_command(message: &str) -> bool {
    matches!(
        message.trim().to_ascii_lowercase().as_str(),
        "/stop" | "/abort"
    )
}

/// Runs the agent on a message that came in through a channel and waits for the end.
/// `run_id` is derived from the inbound message, so a run resumed after a restart keeps
/// its identity (and its user message is not stored twice).
pub async fn run_inbound(
    app: &Arc<App>,
    run_id: &str,
    session_key: &str,
    message: &str,
    extra_system_prompt: Option<String>,
) -> Result<RunResult, RpcError> {
    let channel = wait_for_worker(app).await?;
    let params: AgentParams = serde_json::from_value(json!({
        "message": message,
        "idempotencyKey": run_id,
        "sessionKey": session_key,
        "extraSystemPrompt": extra_system_prompt,
    }))
    .map_err(|e| RpcError::unavailable(format!("cannot build the run: {e}")))?;
    let run = Run::new(run_id, session_key.to_owned());
    app.runs.insert(Arc::clone(&run));
    let (tx, rx) = oneshot::channel();
    let task = RunTask {
        app: Arc::clone(app),
        origin: Origin::Inbound { done: tx },
        run,
        key: None,
        params,
        channel,
        started_at: now_ms(),
    };
    tokio::spawn(task.run());
    rx.await
        .map_err(|_| RpcError::unavailable("the agent run ended without a result"))
}

fn replay(version: ProtocolVersion, run_id: &str, existing: Record) -> Admission {
    match existing {
        Record::Accepted { ack } => match version {
            ProtocolVersion::V3 => Admission::Replay {
                ok: true,
                payload: ack,
                error: None,
            },
            ProtocolVersion::V4 => Admission::Replay {
                ok: true,
                payload: json!({"runId": run_id, "status": "in_flight"}),
                error: None,
            },
        },
        Record::Final { ok, payload, error } => Admission::Replay { ok, payload, error },
    }
}

/// `agent.wait`: the run's outcome, or `timeout`.
pub async fn wait(app: &App, run_id: &str, timeout: Duration) -> Value {
    let shape = |o: &Outcome| {
        let mut v = json!({"runId": run_id, "status": o.status, "startedAt": o.started_at, "endedAt": o.ended_at});
        if let Some(e) = &o.error {
            v["error"] = json!(e);
        }
        v
    };
    if let Some(run) = app.runs.live(run_id) {
        let mut rx = run.done.subscribe();
        let finished = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        if let Ok(Ok(o)) = finished
            && let Some(o) = o.as_ref()
        {
            return shape(o);
        }
        if let Some(o) = app.runs.finished(run_id) {
            return shape(&o);
        }
        return json!({"runId": run_id, "status": "timeout"});
    }
    if let Some(o) = app.runs.finished(run_id) {
        return shape(&o);
    }
    // Finished before a restart: the durable record has the final payload.
    if let Ok(Some(Record::Final { payload, .. })) =
        app.idempotency.get(&format!("agent:{run_id}")).await
    {
        let status = payload["status"].as_str().unwrap_or("ok").to_owned();
        let mut v = json!({"runId": run_id, "status": status});
        if status == "error" {
            v["error"] = payload["summary"].clone();
        }
        return v;
    }
    // Unknown run: nothing to wait for.
    json!({"runId": run_id, "status": "timeout"})
}

/// Runs accepted by a previous gateway process died with it: record their final answer.
pub async fn finish_orphans(app: &App) {
    let orphans = match app.idempotency.orphaned().await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "cannot scan for interrupted runs");
            return;
        }
    };
    for (key, method) in orphans {
        let run_id = match method.as_str() {
            "agent" => key.trim_start_matches("agent:").to_owned(),
            "chat.send" => key.trim_start_matches("chat:").to_owned(),
            _ => continue,
        };
        let summary = "the gateway restarted during this run; it did not finish";
        let payload = json!({"runId": run_id, "status": "error", "summary": summary});
        let record = Record::Final {
            ok: false,
            payload,
            error: serde_json::to_value(RpcError::unavailable(summary).to_shape()).ok(),
        };
        if let Err(e) = app.idempotency.set(&key, &record).await {
            tracing::error!(error = %e, "cannot close an interrupted run");
        } else {
            tracing::warn!(run = %run_id, "closed a run interrupted by the last shutdown");
        }
    }
}
