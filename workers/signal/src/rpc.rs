//! JSON-RPC 2.0 over `POST /api/v1/rpc` (signal-cli-jsonrpc(5)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::Shared;

/// signal-cli's error codes (its `SignalJsonRpcCommandHandler`).
pub const USER_ERROR: i64 = -1;
pub const IO_ERROR: i64 = -3;
pub const UNTRUSTED_KEY_ERROR: i64 = -4;
pub const RATELIMIT_ERROR: i64 = -5;

#[derive(Debug, Clone, PartialEq)]
pub enum RpcError {
    /// The daemon is not up (being started, or gone).
    NotRunning,
    /// The request did not reach the daemon or its answer did not come back.
    Transport(String),
    /// An HTTP status other than 200 (415: not JSON; 421: a Host it does not accept).
    Http(u16),
    /// The answer is not a JSON-RPC response.
    Malformed(String),
    /// A JSON-RPC error: code, message, and `data` (signal-cli puts the command's
    /// result, e.g. a send's per-recipient results, in `data.response`).
    Rpc {
        code: i64,
        message: String,
        data: Value,
    },
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::NotRunning => write!(f, "signal-cli is not running"),
            RpcError::Transport(e) => write!(f, "cannot reach signal-cli: {e}"),
            RpcError::Http(s) => write!(f, "signal-cli answered HTTP {s}"),
            RpcError::Malformed(e) => {
                write!(f, "signal-cli answered something that is not JSON-RPC: {e}")
            }
            RpcError::Rpc { code, message, .. } => write!(f, "{message} (error {code})"),
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Calls `method` with `params`; the `result`, or why not.
pub async fn call(
    shared: &Shared,
    method: &str,
    params: Value,
    timeout: Duration,
) -> Result<Value, RpcError> {
    let base = shared.base_url().ok_or(RpcError::NotRunning)?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
    let r = shared
        .http
        .post(format!("{base}/api/v1/rpc"))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(timeout)
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| RpcError::Transport(describe(&e)))?;
    let status = r.status().as_u16();
    if status != 200 {
        return Err(RpcError::Http(status));
    }
    let bytes = r
        .bytes()
        .await
        .map_err(|e| RpcError::Transport(describe(&e)))?;
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| RpcError::Malformed(e.to_string()))?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(RpcError::Rpc {
            code: err["code"].as_i64().unwrap_or(0),
            message: err["message"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
            data: err.get("data").cloned().unwrap_or(Value::Null),
        });
    }
    v.get("result")
        .cloned()
        .ok_or_else(|| RpcError::Malformed("neither result nor error".into()))
}

/// A reqwest error in a few words (it names only the daemon's URL: no secrets there).
pub fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut out = what.to_owned();
    let mut cur = std::error::Error::source(e);
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}
