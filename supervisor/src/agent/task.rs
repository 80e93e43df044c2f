//! One agent run from start to final answer: the worker's stream turned into `agent`
//! and `chat` events (numbered per run), the reply stored in the session's history, the
//! final response recorded durably and sent to whoever started it.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;
use serde_json::{Value, json};
use switchboard_proto::v1::agent_runner_client::AgentRunnerClient;
use switchboard_proto::v1::{AbortRequest, ChatMessage, RunRequest, ToolResultRequest, run_event};
use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::methods::AgentParams;
use tokio::sync::oneshot;

use super::runs::{Outcome, Run};
use crate::app::App;
use crate::clock::now_ms;
use crate::config::DEFAULT_AGENT_ID;
use crate::events::hub::{Broadcast, ConnHandle};
use crate::protocol::error::RpcError;
use crate::protocol::frame;
use crate::state::idempotency::Record;

use super::attachments::describe_attachments;

/// Prior messages sent with a run.
const HISTORY_LIMIT: i64 = 50;
/// Default run timeout when the request gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// After asking the worker to abort, how long to wait for its `aborted`.
const ABORT_GRACE: Duration = Duration::from_secs(2);

/// Who started a run, and so who hears how it ended.
pub(super) enum Origin {
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

pub(super) struct RunTask {
    pub(super) app: Arc<App>,
    pub(super) origin: Origin,
    pub(super) run: Arc<Run>,
    /// The durable idempotency key (`agent` requests); inbound runs are deduplicated by
    /// their inbound message instead.
    pub(super) key: Option<String>,
    pub(super) params: AgentParams,
    pub(super) channel: crate::workers::WorkerChannel,
    pub(super) started_at: u64,
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
    pub(super) async fn run(self) {
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
        // The reply is in the session's history by now: the row says so.
        super::sessions_changed::run_phase(&self.app, &session_key, "end", &run_id).await;
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
        // The user's message is in the session (a new session exists now).
        super::sessions_changed::run_phase(&self.app, &session_key, "start", &run_id).await;
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
            tools: super::tools::offered(&self.app),
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
                    Some(run_event::Event::ToolCall(call)) => {
                        // The reference's `agent` events of stream `tool`: the call, then
                        // its result; the worker waits for the outcome.
                        em.agent(
                            "tool",
                            json!({"phase": "start", "name": call.name, "toolCallId": call.call_id}),
                        );
                        let outcome = super::tools::call(
                            &self.app,
                            &run_id,
                            &call.name,
                            &call.arguments_json,
                        )
                        .await;
                        em.agent(
                            "tool",
                            json!({"phase": "result", "name": call.name, "toolCallId": call.call_id,
                                "isError": outcome.is_err()}),
                        );
                        let (ok, output) = match outcome {
                            Ok(o) => (true, o),
                            Err(e) => (false, e),
                        };
                        let mut c = AgentRunnerClient::new(self.channel.clone());
                        let answer = c.tool_result(ToolResultRequest {
                            run_id: run_id.clone(),
                            call_id: call.call_id.clone(),
                            ok,
                            output,
                        });
                        match tokio::time::timeout(Duration::from_secs(10), answer).await {
                            Ok(Ok(r)) if r.get_ref().accepted => {}
                            other => tracing::warn!(run = %run_id, tool = %call.name,
                                answered = ?other.map(|r| r.map(|r| r.into_inner().accepted)),
                                "the agent worker did not take a tool's outcome"),
                        }
                    }
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
