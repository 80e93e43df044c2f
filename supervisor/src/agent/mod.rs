//! Agent runs: the `agent` method's two responses, the streamed `agent` and `chat`
//! events, `agent.wait` and `chat.abort`. The run itself happens in the agent worker;
//! conversation history lives in SQLite and is sent with each run.
//!
//! Guarantees: one idempotency key starts at most one run, ever (the key is recorded
//! before the ack is sent, and survives restarts); every accepted run ends with a final
//! response and a terminal event, also when the worker dies mid-run.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;
use serde_json::{Value, json};
use switchboard_proto::v1::agent_runner_client::AgentRunnerClient;
use switchboard_proto::v1::{AbortRequest, ChatMessage, RunRequest, run_event};
use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::methods::AgentParams;
use tokio::sync::oneshot;

pub mod runs;

use crate::state::history::canonical_session_key;
use runs::{Outcome, Run};

use crate::app::App;
use crate::clock::now_ms;
use crate::config::AGENT_WORKER;
use crate::config::DEFAULT_AGENT_ID;
use crate::events::hub::{Broadcast, ConnHandle};
use crate::protocol::error::RpcError;
use crate::protocol::frame;
use crate::state::idempotency::Record;

/// How long a request waits for a restarting agent worker before `UNAVAILABLE`.
const WORKER_WAIT: Duration = Duration::from_secs(5);
/// Prior messages sent with a run.
const HISTORY_LIMIT: i64 = 50;
/// Default run timeout when the request gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// After asking the worker to abort, how long to wait for its `aborted`.
const ABORT_GRACE: Duration = Duration::from_secs(2);

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

async fn wait_for_worker(app: &App) -> Result<tonic::transport::Channel, RpcError> {
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
    if let Some(existing) = app.idempotency.get(&key).await.map_err(db_err)? {
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
        .await
        .map_err(db_err)?
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
    if let Some(existing) = app.idempotency.get(&key).await.map_err(db_err)? {
        return Ok(chat_replay(existing));
    }
    let channel = wait_for_worker(app).await?;
    let ack = json!({"runId": run_id, "status": "started"});
    if let Some(existing) = app
        .idempotency
        .claim(&key, "chat.send", &Record::Accepted { ack: ack.clone() })
        .await
        .map_err(db_err)?
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

/// Attachments in all (decoded), as `hello-ok.policy.attachments` announces on v4.
pub const ATTACHMENTS_MAX_BYTES: u64 = 5_000_000;

/// One attachment: `{type?, mimeType?, fileName?, content: <base64>}` (the reference's).
fn decode_attachment(a: &Value) -> Result<(String, String, Vec<u8>), RpcError> {
    use base64::Engine;
    let content = a["content"].as_str().ok_or_else(|| {
        RpcError::invalid_request("invalid attachment: content must be a base64 string")
    })?;
    let b64 = content
        .split_once(";base64,")
        .map(|x| x.1)
        .unwrap_or(content);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim()))
        .map_err(|_| RpcError::invalid_request("invalid attachment: content is not base64"))?;
    let name = a["fileName"].as_str().unwrap_or("attachment").to_owned();
    let mime = a["mimeType"]
        .as_str()
        .unwrap_or("application/octet-stream")
        .to_owned();
    Ok((name, mime, bytes))
}

/// Refuses attachments that are malformed or too large, before anything is recorded.
fn check_attachments(list: &[Value]) -> Result<(), RpcError> {
    let mut total = 0u64;
    for a in list {
        total += decode_attachment(a)?.2.len() as u64;
    }
    if total > ATTACHMENTS_MAX_BYTES {
        return Err(RpcError::invalid_request(format!(
            "attachments too large: {total} bytes, at most {ATTACHMENTS_MAX_BYTES}"
        )));
    }
    Ok(())
}

/// What the agent is told of attachments: text files in full, other files by name (the
/// backends here read text only).
fn describe_attachments(list: &[Value]) -> String {
    let mut out = String::new();
    for a in list {
        let Ok((name, mime, bytes)) = decode_attachment(a) else {
            continue;
        };
        let texty = mime.starts_with("text/")
            || matches!(
                mime.as_str(),
                "application/json" | "application/xml" | "application/yaml" | "application/x-yaml"
            );
        match std::str::from_utf8(&bytes) {
            Ok(text) if texty => out.push_str(&format!(
                "\n\n[attachment {name} ({mime}, {} bytes)]\n{text}",
                bytes.len()
            )),
            _ => out.push_str(&format!(
                "\n\n[attachment {name} ({mime}, {} bytes): not shown; only text attachments reach the agent]",
                bytes.len()
            )),
        }
    }
    out
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

fn db_err(e: crate::state::db::DbError) -> RpcError {
    tracing::error!(error = %e, "idempotency store failed");
    RpcError::unavailable("the gateway's database is unavailable; retry later")
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

/// Who started a run, and so who hears how it ended.
enum Origin {
    /// An `agent` request: its second response goes to the connection.
    Request {
        conn: Arc<ConnHandle>,
        request_id: String,
    },
    /// An inbound message from a channel: the result goes back to the router.
    Inbound { done: oneshot::Sender<RunResult> },
    /// A `chat.send`: the answer is the `chat` events; nothing more is sent.
    Chat,
}

/// How a run ended, with its reply text.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub status: &'static str,
    pub text: String,
    pub error: Option<String>,
}

struct RunTask {
    app: Arc<App>,
    origin: Origin,
    run: Arc<Run>,
    /// The durable idempotency key (`agent` requests); inbound runs are deduplicated by
    /// their inbound message instead.
    key: Option<String>,
    params: AgentParams,
    channel: tonic::transport::Channel,
    started_at: u64,
}

/// Per-run event numbering and the reply so far.
struct Emitter {
    app: Arc<App>,
    run: Arc<Run>,
    run_id: String,
    session_key: String,
    agent_seq: u64,
    chat_seq: u64,
    text: String,
}

impl Emitter {
    fn agent(&mut self, stream: &str, data: Value) {
        self.agent_seq += 1;
        let payload = json!({
            "runId": self.run_id, "stream": stream, "data": data,
            "sessionKey": self.session_key, "seq": self.agent_seq, "ts": now_ms(),
        });
        self.app
            .hub
            .broadcast(&Broadcast::new("agent", &payload, None, false));
    }

    fn message(&self) -> Value {
        json!({"role": "assistant", "content": [{"type": "text", "text": self.text}], "timestamp": now_ms()})
    }

    fn chat(&mut self, state: &str, extra: impl Fn(ProtocolVersion, &mut Value)) {
        self.chat_seq += 1;
        let base = json!({"runId": self.run_id, "sessionKey": self.session_key, "seq": self.chat_seq, "state": state});
        let b = Broadcast::per_version(
            "chat",
            |v| {
                let mut p = base.clone();
                extra(v, &mut p);
                p
            },
            None,
            false,
        );
        self.app.hub.broadcast(&b);
    }

    fn delta(&mut self, delta: &str) {
        self.text.push_str(delta);
        self.run
            .partial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_str(delta);
        self.agent("assistant", json!({"text": self.text, "delta": delta}));
        let message = self.message();
        let delta = delta.to_owned();
        self.chat("delta", |v, p| {
            p["message"] = message.clone();
            if v == ProtocolVersion::V4 {
                p["deltaText"] = json!(delta);
            }
        });
    }
}

impl RunTask {
    async fn run(self) {
        let session_key = self.run.session_key.clone();
        let mut em = Emitter {
            app: Arc::clone(&self.app),
            run: Arc::clone(&self.run),
            run_id: self.run.run_id.clone(),
            session_key: session_key.clone(),
            agent_seq: 0,
            chat_seq: 0,
            text: String::new(),
        };
        let started_at = self.started_at;
        em.agent(
            "lifecycle",
            json!({"phase": "start", "startedAt": started_at}),
        );
        let (status, error) = match self.drive(&mut em).await {
            Ok(stop) if stop == "aborted" => ("aborted", None),
            Ok(_) => ("ok", None),
            Err(e) => ("error", Some(e)),
        };
        let ended_at = now_ms();
        match (status, &error) {
            ("ok", _) => {
                em.agent(
                    "lifecycle",
                    json!({"phase": "end", "startedAt": started_at, "endedAt": ended_at}),
                );
                let message = em.message();
                em.chat("final", |_, p| p["message"] = message.clone());
            }
            ("aborted", _) => {
                em.agent(
                    "lifecycle",
                    json!({"phase": "end", "startedAt": started_at, "endedAt": ended_at,
                           "status": "cancelled", "aborted": true, "stopReason": "aborted"}),
                );
                em.chat("aborted", |_, _| {});
            }
            (_, e) => {
                let e = e.clone().unwrap_or_default();
                em.agent(
                    "lifecycle",
                    json!({"phase": "error", "startedAt": started_at, "endedAt": ended_at, "error": e}),
                );
                em.chat("error", |_, p| p["errorMessage"] = json!(e));
            }
        }
        let run_id = self.run.run_id.clone();
        let (record, ok, payload, err) = match status {
            // `chat.send`'s stored answer is the reference's `{runId, status}`.
            _ if matches!(self.origin, Origin::Chat) => {
                let mut payload = json!({"runId": run_id, "status": status});
                let err = error.clone().map(|e| {
                    payload["summary"] = json!(e);
                    RpcError::unavailable(e)
                });
                (
                    Record::Final {
                        ok: err.is_none(),
                        payload: payload.clone(),
                        error: err
                            .as_ref()
                            .and_then(|e| serde_json::to_value(e.to_shape()).ok()),
                    },
                    err.is_none(),
                    payload,
                    err,
                )
            }
            "error" => {
                let summary = error.clone().unwrap_or_default();
                let payload = json!({"runId": run_id, "status": "error", "summary": summary});
                let err = RpcError::unavailable(summary);
                (
                    Record::Final {
                        ok: false,
                        payload: payload.clone(),
                        error: serde_json::to_value(err.to_shape()).ok(),
                    },
                    false,
                    payload,
                    Some(err),
                )
            }
            _ => {
                let payload = json!({
                    "runId": run_id,
                    "status": status,
                    "summary": if status == "ok" { "completed" } else { "aborted" },
                    "result": {
                        "payloads": [{"text": em.text}],
                        "meta": {"durationMs": ended_at.saturating_sub(started_at)},
                    },
                });
                (
                    Record::Final {
                        ok: true,
                        payload: payload.clone(),
                        error: None,
                    },
                    true,
                    payload,
                    None,
                )
            }
        };
        if let Some(key) = &self.key
            && let Err(e) = self.app.idempotency.set(key, &record).await
        {
            tracing::error!(run = %run_id, error = %e, "recording the run's final answer failed");
        }
        let outcome = Outcome {
            status,
            started_at,
            ended_at,
            error: error.clone(),
        };
        self.app.metrics.run_finished(status);
        self.app.runs.finish(&run_id, outcome.clone());
        let _ = self.run.done.send(Some(outcome));
        match self.origin {
            Origin::Request { conn, request_id } => {
                // The requester may be gone; the final answer is recorded for its retry.
                let frame = match (ok, &err) {
                    (false, Some(err)) => frame::err_with_payload(&request_id, &payload, err),
                    _ => frame::ok(&request_id, &payload),
                };
                self.app.hub.send_direct(&conn, frame);
            }
            Origin::Inbound { done } => {
                let _ = done.send(RunResult {
                    status,
                    text: em.text.clone(),
                    error,
                });
            }
            Origin::Chat => {}
        }
        self.app.health_changed();
        tracing::info!(run = %run_id, status, "agent run finished");
    }

    /// Streams the run; `Ok(stop_reason)` or `Err(message)`.
    async fn drive(&self, em: &mut Emitter) -> Result<String, String> {
        let session_key = self.run.session_key.clone();
        let user_text = match &self.params.attachments {
            Some(list) if !list.is_empty() => {
                format!("{}{}", self.params.message, describe_attachments(list))
            }
            _ => self.params.message.clone(),
        };
        let run_id = self.run.run_id.clone();
        let history = {
            let session_key = session_key.clone();
            let run_id = run_id.clone();
            self.app
                .db
                .call(move |c| {
                    let now = now_ms() as i64;
                    let tx = c.transaction()?;
                    let history = {
                        let mut stmt = tx.prepare_cached(
                            "SELECT role, content FROM (SELECT id, role, content FROM messages
                             WHERE session_key = ?1 AND (run_id IS NULL OR run_id != ?3)
                             ORDER BY id DESC LIMIT ?2) ORDER BY id ASC",
                        )?;
                        stmt.query_map(params![session_key, HISTORY_LIMIT, run_id], |r| {
                            Ok(ChatMessage {
                                role: r.get(0)?,
                                content: r.get(1)?,
                            })
                        })?
                        .collect::<Result<Vec<_>, _>>()?
                    };
                    crate::state::history::append_in(
                        &tx,
                        &session_key,
                        "user",
                        &user_text,
                        Some(&run_id),
                        now,
                    )?;
                    tx.commit()?;
                    let mut history = history;
                    history.push(ChatMessage {
                        role: "user".into(),
                        content: user_text,
                    });
                    Ok(history)
                })
                .await
                .map_err(|e| format!("cannot read the conversation: {e}"))?
        };
        let timeout = self
            .params
            .timeout
            .filter(|t| *t > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        let mut client = AgentRunnerClient::new(self.channel.clone());
        let request = RunRequest {
            run_id: run_id.clone(),
            session_key: session_key.clone(),
            agent_id: self
                .params
                .agent_id
                .clone()
                .unwrap_or_else(|| DEFAULT_AGENT_ID.into()),
            messages: history,
            extra_system_prompt: self.params.extra_system_prompt.clone().unwrap_or_default(),
            timeout_ms: timeout.as_millis() as u64,
        };
        let mut stream = client
            .run(request)
            .await
            .map_err(|s| format!("agent worker refused the run: {}", s.message()))?
            .into_inner();
        let deadline = tokio::time::sleep(timeout + Duration::from_secs(5));
        tokio::pin!(deadline);
        let mut abort_sent = false;
        let result = loop {
            let next = tokio::select! {
                m = stream.message() => m,
                _ = self.run.cancel.cancelled(), if !abort_sent => {
                    abort_sent = true;
                    let mut c = AgentRunnerClient::new(self.channel.clone());
                    let _ = tokio::time::timeout(ABORT_GRACE, c.abort(AbortRequest { run_id: run_id.clone() })).await;
                    deadline.as_mut().reset(tokio::time::Instant::now() + ABORT_GRACE);
                    continue;
                }
                _ = &mut deadline => {
                    break if abort_sent { Ok("aborted".to_owned()) } else { Err(format!("agent run timed out after {} s", timeout.as_secs())) };
                }
            };
            match next {
                Ok(Some(ev)) => match ev.event {
                    Some(run_event::Event::Started(s)) => {
                        em.agent(
                            "lifecycle",
                            json!({"phase": "model", "backend": s.backend, "model": s.model}),
                        );
                    }
                    Some(run_event::Event::Delta(d)) => em.delta(&d),
                    Some(run_event::Event::Finished(f)) => {
                        if em.text.is_empty() && !f.text.is_empty() {
                            em.delta(&f.text);
                        }
                        break Ok(if f.stop_reason.is_empty() {
                            "stop".into()
                        } else {
                            f.stop_reason
                        });
                    }
                    Some(run_event::Event::Failed(f)) => break Err(f.error),
                    Some(run_event::Event::Aborted(_)) => break Ok("aborted".into()),
                    None => continue,
                },
                Ok(None) => break Err("agent worker ended the run without a result".into()),
                Err(status) => {
                    break Err(format!(
                        "agent worker failed during the run ({}); it is being restarted",
                        status.message()
                    ));
                }
            }
        };
        if !em.text.is_empty() {
            let text = em.text.clone();
            let session_key = session_key.clone();
            let row_run_id = run_id.clone();
            if let Err(e) = self
                .app
                .db
                .call(move |c| {
                    let tx = c.transaction()?;
                    crate::state::history::append_in(
                        &tx,
                        &session_key,
                        "assistant",
                        &text,
                        Some(&row_run_id),
                        now_ms() as i64,
                    )?;
                    tx.commit()
                })
                .await
            {
                tracing::error!(run = %run_id, error = %e, "storing the reply failed");
            }
        }
        result
    }
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
