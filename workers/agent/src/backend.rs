//! The two backends, behind one `run` function that streams [`Step`]s.

use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use switchboard_proto::v1::ChatMessage;
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
    Done { text: String, stop_reason: String },
    Failed { error: String, retryable: bool },
    Aborted { partial: String },
}

/// Runs one turn. Sends steps to `out`; returns when a terminal step was sent.
pub async fn run(
    cfg: &BackendConfig,
    http: &reqwest::Client,
    messages: &[ChatMessage],
    cancel: &CancellationToken,
    out: &mpsc::Sender<Step>,
) {
    let step = match cfg.backend {
        BackendKind::Echo => echo(cfg, messages, cancel, out).await,
        BackendKind::Openai => openai(cfg, http, messages, cancel, out).await,
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

async fn openai(
    cfg: &BackendConfig,
    http: &reqwest::Client,
    messages: &[ChatMessage],
    cancel: &CancellationToken,
    out: &mpsc::Sender<Step>,
) -> Step {
    let url = format!("{}/chat/completions", cfg.base_url());
    let body = serde_json::json!({
        "model": cfg.model(),
        "stream": true,
        "messages": messages.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
    });
    let mut attempt = 0;
    let resp = loop {
        let mut req = http.post(&url).json(&body);
        if let Some(key) = &cfg.api_key {
            req = req.bearer_auth(key);
        }
        let sent = tokio::select! {
            _ = cancel.cancelled() => return Step::Aborted { partial: String::new() },
            r = req.send() => r,
        };
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Step::Failed {
                    error: format!("model backend unreachable: {}", without_url(&e)),
                    retryable: true,
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            break resp;
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
                _ = cancel.cancelled() => return Step::Aborted { partial: String::new() },
                _ = tokio::time::sleep(wait) => continue,
            }
        }
        let detail = resp.text().await.unwrap_or_default();
        let detail: String = detail.chars().take(300).collect();
        return match status.as_u16() {
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
        };
    };
    let mut text = String::new();
    let mut stop_reason = String::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    loop {
        let chunk = tokio::select! {
            _ = cancel.cancelled() => return Step::Aborted { partial: text },
            c = stream.next() => c,
        };
        let bytes = match chunk {
            None => {
                return Step::Failed {
                    error: "model stream broke before completion (no [DONE])".into(),
                    retryable: true,
                };
            }
            Some(Err(e)) => {
                return Step::Failed {
                    error: format!("model stream broke: {}", without_url(&e)),
                    retryable: true,
                };
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
                return Step::Done {
                    text,
                    stop_reason: if stop_reason.is_empty() {
                        "stop".into()
                    } else {
                        stop_reason
                    },
                };
            }
            let Ok(chunk) = serde_json::from_str::<Chunk>(data) else {
                tracing::warn!("ignoring an unparsable stream chunk");
                continue;
            };
            for choice in chunk.choices {
                if let Some(reason) = choice.finish_reason {
                    stop_reason = reason;
                }
                if let Some(delta) = choice.delta.content.filter(|d| !d.is_empty()) {
                    text.push_str(&delta);
                    if out.send(Step::Delta(delta)).await.is_err() {
                        return Step::Aborted { partial: text };
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
