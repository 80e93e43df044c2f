//! Discord's REST API (v10): the few calls this worker makes, and what their failures
//! mean.
//!
//! A 429 says how long to wait (`retry_after` in its JSON body, in seconds, or the
//! `Retry-After` / `X-RateLimit-Reset-After` headers). The request was not carried out,
//! so it is repeated after that wait, as long as the waits of one call stay within
//! [`RETRY_AFTER_BOUND`]; a longer wait is handed back ([`RestError::RateLimited`]) for
//! the caller to schedule, never slept through here.

use std::time::Duration;

use serde_json::Value;

use crate::Shared;

/// The longest a call waits in total for 429s before giving the wait back.
pub const RETRY_AFTER_BOUND: Duration = Duration::from_secs(2);
/// A `retry_after` above this is not believed (a broken header): this is used instead.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestError {
    /// 401: the token is wrong or was reset.
    #[error("401 Unauthorized: the bot token was refused")]
    Unauthorized,
    /// 429 with a wait longer than the bound.
    #[error("rate limited by Discord for {} ms", .0.as_millis())]
    RateLimited(Duration),
    /// 400/403/404 and other refusals of this request: retrying cannot help.
    #[error("{0}")]
    Refused(String),
    /// Network trouble or a server error: try again later.
    #[error("{0}")]
    Transient(String),
}

/// `GET /gateway/bot`'s answer.
pub struct GatewayBot {
    pub url: String,
    /// Session starts left today, and when the budget resets.
    pub remaining: u64,
    pub reset_after: Duration,
}

pub async fn gateway_bot(shared: &Shared) -> Result<GatewayBot, RestError> {
    let v = call(shared, reqwest::Method::GET, "/gateway/bot", None).await?;
    let url = v["url"]
        .as_str()
        .filter(|u| u.starts_with("wss://") || u.starts_with("ws://"))
        .ok_or_else(|| RestError::Transient("GET /gateway/bot answered without a url".into()))?;
    let limit = &v["session_start_limit"];
    Ok(GatewayBot {
        url: url.to_owned(),
        remaining: limit["remaining"].as_u64().unwrap_or(1),
        reset_after: Duration::from_millis(limit["reset_after"].as_u64().unwrap_or(0))
            .min(RETRY_AFTER_MAX),
    })
}

/// One call: `path` below `/api/v10`, an optional JSON body; the JSON answer.
pub async fn call(
    shared: &Shared,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, RestError> {
    let url = format!("{}/api/v10{path}", shared.cfg.api_url);
    let mut waited = Duration::ZERO;
    loop {
        let mut req = shared.http.request(method.clone(), &url).header(
            reqwest::header::AUTHORIZATION,
            format!("Bot {}", shared.cfg.token),
        );
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = tokio::select! {
            _ = shared.shutdown.cancelled() => {
                return Err(RestError::Transient("the discord worker is stopping".into()));
            }
            r = req.send() => r,
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Err(RestError::Transient(network(shared, &e))),
        };
        let status = resp.status().as_u16();
        let header_wait = retry_after_headers(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        match status {
            200..=299 => return Ok(json),
            401 => return Err(RestError::Unauthorized),
            429 => {
                let wait = json["retry_after"]
                    .as_f64()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64)
                    .or(header_wait)
                    .unwrap_or(Duration::from_secs(1))
                    .min(RETRY_AFTER_MAX);
                let global = json["global"].as_bool() == Some(true);
                tracing::info!(
                    path,
                    wait_ms = wait.as_millis() as u64,
                    global,
                    "rate limited by Discord"
                );
                if waited + wait > RETRY_AFTER_BOUND {
                    return Err(RestError::RateLimited(wait.max(Duration::from_millis(1))));
                }
                if !shared.pause(wait).await {
                    return Err(RestError::Transient(
                        "the discord worker is stopping".into(),
                    ));
                }
                waited += wait;
            }
            500..=599 => {
                return Err(RestError::Transient(format!(
                    "Discord server error {status}{}",
                    api_message(&json)
                )));
            }
            _ => {
                return Err(RestError::Refused(format!(
                    "{status} {}{}",
                    reason(status),
                    api_message(&json)
                )));
            }
        }
    }
}

fn retry_after_headers(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    ["retry-after", "x-ratelimit-reset-after"]
        .iter()
        .find_map(|n| h.get(*n)?.to_str().ok()?.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        _ => "refused",
    }
}

/// `: Missing Access (50001)` from Discord's `{code, message}` error body.
fn api_message(json: &Value) -> String {
    match (json["message"].as_str(), json["code"].as_u64()) {
        (Some(m), Some(c)) => format!(": {m} ({c})"),
        (Some(m), None) => format!(": {m}"),
        _ => String::new(),
    }
}

fn network(shared: &Shared, e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut chain = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        cur = s.source();
    }
    format!("network: {what}: {}", shared.redact(&chain))
}
