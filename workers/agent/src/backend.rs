//! The two backends, behind one `run` function that streams [`Step`]s.

use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use switchboard_proto::v1::{ChatMessage, ToolSpec};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Retries of a rate-limited request before the run fails.
const MAX_RATE_LIMIT_RETRIES: u32 = 3;
/// The longest `Retry-After` we wait for within a run.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Echo,
    Openai,
}

/// The worker's configuration (from the supervisor, as JSON).
#[derive(Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct BackendConfig {
    pub backend: BackendKind,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub model: Option<String>,
    /// Echo only: pause between streamed words (to make streaming observable).
    pub echo_delay_ms: u64,
    /// Default run timeout.
    pub timeout_ms: Option<u64>,
}

impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("backend", &self.backend)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .finish()
    }
}

impl BackendConfig {
    pub fn label(&self) -> &'static str {
        match self.backend {
            BackendKind::Echo => "echo",
            BackendKind::Openai => "openai",
        }
    }

    pub fn model(&self) -> String {
        match self.backend {
            BackendKind::Echo => "echo".into(),
            BackendKind::Openai => self.model.clone().unwrap_or_else(|| "gpt-4o-mini".into()),
        }
    }

    pub fn base_url(&self) -> String {
        self.base_url
            .clone()
            .unwrap_or_else(|| "https://api.openai.com/v1".into())
            .trim_end_matches('/')
            .to_owned()
    }
}

/// What a run produces, in order: deltas, then one terminal step.
#[derive(Debug)]
pub enum Step {
    Delta(String),
    Done {
        text: String,
        stop_reason: String,
    },
    Failed {
        error: String,
        retryable: bool,
    },
    Aborted {
        partial: String,
    },
    /// The model calls a tool; the run waits for its [`ToolOutcome`].
    ToolCall {
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Runs one turn. Sends steps to `out`; returns when a terminal step was sent.
pub async fn run(
    cfg: &BackendConfig,
    http: &reqwest::Client,
    messages: &[ChatMessage],
    tools: &[ToolSpec],
    results: &mut mpsc::Receiver<ToolOutcome>,
    cancel: &CancellationToken,
    out: &mpsc::Sender<Step>,
) {
    // The echo backend is no model: it calls no tools.
    let step = match cfg.backend {
        BackendKind::Echo => echo(cfg, messages, cancel, out).await,
        BackendKind::Openai => openai(cfg, http, messages, tools, results, cancel, out).await,
    };
    let _ = out.send(step).await;
}

async fn echo(
    cfg: &BackendConfig,
    messages: &[ChatMessage],
    cancel: &CancellationToken,
    out: &mpsc::Sender<Step>,
) -> Step {
    let last = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or("");
    let reply = format!("[echo] {last}");
    let mut sent = String::new();
    for word in reply.split_inclusive(' ') {
        if cfg.echo_delay_ms > 0 {
            tokio::select! {
                _ = cancel.cancelled() => return Step::Aborted { partial: sent },
                _ = tokio::time::sleep(Duration::from_millis(cfg.echo_delay_ms)) => {}
            }
        }
        if cancel.is_cancelled() {
            return Step::Aborted { partial: sent };
        }
        sent.push_str(word);
        if out.send(Step::Delta(word.to_owned())).await.is_err() {
            return Step::Aborted { partial: sent };
        }
    }
    Step::Done {
        text: sent,
        stop_reason: "stop".into(),
    }
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: ChunkDelta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallDelta>,
}

/// A piece of a streamed tool call (OpenAI's `delta.tool_calls[]`): the first piece of
/// a call carries its `id` and `function.name`, the others more of `arguments`.
#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: usize,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// A tool call as the model finished writing it.
#[derive(Debug, Default, Clone)]
struct PendingCall {
    id: String,
    name: String,
    arguments: String,
}

fn retry_after(resp: &reqwest::Response) -> Duration {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| Duration::from_millis((s.max(0.0) * 1000.0) as u64))
        .unwrap_or(Duration::from_secs(1))
        .min(MAX_RETRY_AFTER)
}

/// The most model rounds one run makes when the model keeps calling tools; the last
/// round offers no tools, so the run always ends with an answer.
pub const MAX_TOOL_ROUNDS: usize = 8;
/// How long a run waits for the supervisor to carry out one tool call.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// A tool's outcome, from the supervisor (`ToolResult`).
#[derive(Debug)]
pub struct ToolOutcome {
    pub call_id: String,
    pub ok: bool,
    pub output: String,
}

async fn openai(
    cfg: &BackendConfig,
    http: &reqwest::Client,
    messages: &[ChatMessage],
    tools: &[ToolSpec],
    results: &mut mpsc::Receiver<ToolOutcome>,
    cancel: &CancellationToken,
    out: &mpsc::Sender<Step>,
) -> Step {
    let url = format!("{}/chat/completions", cfg.base_url());
    let mut convo: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::json!({"role": m.role, "content": m.content}))
        .collect();
    let offered: Vec<serde_json::Value> = tools
        .iter()
        .map(|t| {
            let parameters: serde_json::Value = serde_json::from_str(&t.parameters_json)
                .unwrap_or_else(|_| serde_json::json!({"type": "object"}));
            serde_json::json!({"type": "function", "function":
                {"name": t.name, "description": t.description, "parameters": parameters}})
        })
        .collect();
    let mut text = String::new();
    for round in 0..=MAX_TOOL_ROUNDS {
        let mut body = serde_json::json!({"model": cfg.model(), "stream": true, "messages": convo});
        if !offered.is_empty() && round < MAX_TOOL_ROUNDS {
            body["tools"] = serde_json::Value::Array(offered.clone());
        }
        let resp = match open_stream(cfg, http, &url, &body, cancel).await {
            Ok(r) => r,
            Err(Step::Aborted { .. }) => return Step::Aborted { partial: text },
            Err(step) => return step,
        };
        let (stop_reason, calls) = match read_stream(resp, cancel, out, &mut text).await {
            Ok(end) => end,
            Err(step) => return step,
        };
        if calls.is_empty() {
            return Step::Done {
                text,
                stop_reason: if stop_reason.is_empty() {
                    "stop".into()
                } else {
                    stop_reason
                },
            };
        }
        // The model's turn with its calls, then each call's outcome, in order.
        convo.push(
            serde_json::json!({"role": "assistant", "content": null, "tool_calls":
            calls.iter().map(|c| serde_json::json!({"id": c.id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments}})).collect::<Vec<_>>()}),
        );
        for call in calls {
            let asked = Step::ToolCall {
                call_id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            };
            if out.send(asked).await.is_err() {
                return Step::Aborted { partial: text };
            }
            let outcome = loop {
                let got = tokio::select! {
                    _ = cancel.cancelled() => return Step::Aborted { partial: text },
                    r = tokio::time::timeout(TOOL_TIMEOUT, results.recv()) => r,
                };
                match got {
                    Ok(Some(o)) if o.call_id == call.id => break o,
                    // An answer to a call of an earlier round that timed out.
                    Ok(Some(_)) => continue,
                    Ok(None) => return Step::Aborted { partial: text },
                    Err(_) => {
                        break ToolOutcome {
                            call_id: call.id.clone(),
                            ok: false,
                            output: format!(
                                "the tool did not answer within {} s",
                                TOOL_TIMEOUT.as_secs()
                            ),
                        };
                    }
                }
            };
            let content = if outcome.ok {
                outcome.output
            } else {
                format!("error: {}", outcome.output)
            };
            convo.push(
                serde_json::json!({"role": "tool", "tool_call_id": call.id, "content": content}),
            );
        }
    }
    Step::Done {
        text,
        stop_reason: "tool_rounds".into(),
    }
}

/// Sends one request (rate-limit retries included) and answers the streaming response,
/// or the terminal step that ends the run.
async fn open_stream(
    cfg: &BackendConfig,
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    cancel: &CancellationToken,
) -> Result<reqwest::Response, Step> {
    let mut attempt = 0;
    loop {
        let mut req = http.post(url).json(body);
        if let Some(key) = &cfg.api_key {
            req = req.bearer_auth(key);
        }
        let sent = tokio::select! {
            _ = cancel.cancelled() => return Err(Step::Aborted { partial: String::new() }),
            r = req.send() => r,
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Err(Step::Failed {
                    error: format!("model backend unreachable: {}", without_url(&e)),
                    retryable: true,
                });
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status.as_u16() == 429 && attempt < MAX_RATE_LIMIT_RETRIES {
            attempt += 1;
            let wait = retry_after(&resp);
            tracing::warn!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "model backend rate-limited the run; retrying"
            );
            tokio::select! {
                _ = cancel.cancelled() => return Err(Step::Aborted { partial: String::new() }),
                _ = tokio::time::sleep(wait) => continue,
            }
        }
        let detail = resp.text().await.unwrap_or_default();
        let detail: String = detail.chars().take(300).collect();
        return Err(match status.as_u16() {
            401 | 403 => Step::Failed {
                error: format!(
                    "model backend refused the API key (HTTP {}): check the agent apiKey",
                    status.as_u16()
                ),
                retryable: false,
            },
            429 => Step::Failed {
                error: format!(
                    "model backend is rate-limiting (HTTP 429) after {attempt} retries: {detail}"
                ),
                retryable: true,
            },
            code => Step::Failed {
                error: format!("model backend answered HTTP {code}: {detail}"),
                retryable: code >= 500,
            },
        });
    }
}

/// Reads one streamed answer: its text deltas go out as they come (appended to
/// `text`); the end is its finish reason and the tool calls it made (none: the answer).
async fn read_stream(
    resp: reqwest::Response,
    cancel: &CancellationToken,
    out: &mpsc::Sender<Step>,
    text: &mut String,
) -> Result<(String, Vec<PendingCall>), Step> {
    let mut stop_reason = String::new();
    let mut calls: Vec<PendingCall> = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    loop {
        let chunk = tokio::select! {
            _ = cancel.cancelled() => return Err(Step::Aborted { partial: text.clone() }),
            c = stream.next() => c,
        };
        let bytes = match chunk {
            None => {
                return Err(Step::Failed {
                    error: "model stream broke before completion (no [DONE])".into(),
                    retryable: true,
                });
            }
            Some(Err(e)) => {
                return Err(Step::Failed {
                    error: format!("model stream broke: {}", without_url(&e)),
                    retryable: true,
                });
            }
            Some(Ok(b)) => b,
        };
        buf.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(pos) = buf.find('\n') {
            let line = buf[..pos].trim_end_matches('\r').to_owned();
            buf.drain(..=pos);
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                calls.retain(|c| !c.name.is_empty());
                for (i, c) in calls.iter_mut().enumerate() {
                    if c.id.is_empty() {
                        c.id = format!("call_{i}");
                    }
                }
                return Ok((stop_reason, calls));
            }
            let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
                tracing::warn!("ignoring an unparsable stream chunk");
                continue;
            };
            for choice in chunk.choices {
                if let Some(reason) = choice.finish_reason {
                    stop_reason = reason;
                }
                for d in choice.delta.tool_calls {
                    // Bounded: a model cannot make the worker hold unbounded calls.
                    if d.index >= 16 {
                        continue;
                    }
                    if calls.len() <= d.index {
                        calls.resize(d.index + 1, PendingCall::default());
                    }
                    let c = &mut calls[d.index];
                    if let Some(id) = d.id {
                        c.id = id;
                    }
                    if let Some(f) = d.function {
                        if let Some(n) = f.name {
                            c.name.push_str(&n);
                        }
                        if let Some(a) = f.arguments
                            && c.arguments.len() + a.len() <= 8 * 1024 * 1024
                        {
                            c.arguments.push_str(&a);
                        }
                    }
                }
                if let Some(delta) = choice.delta.content.filter(|d| !d.is_empty()) {
                    text.push_str(&delta);
                    if out.send(Step::Delta(delta)).await.is_err() {
                        return Err(Step::Aborted {
                            partial: text.clone(),
                        });
                    }
                }
            }
        }
    }
}

/// reqwest errors include the URL; keep the message, drop query strings that might carry keys.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(
            url.as_str(),
            &format!("{}://{}", url.scheme(), url.host_str().unwrap_or("")),
        );
    }
    s
}
