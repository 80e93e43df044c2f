//! The gateway itself: `health`, `status`, `system-presence`, `last-heartbeat`,
//! `system-event`, `logs.tail`, and a second `connect`.

use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_schemas::methods::{LogsTailParams, LogsTailResult, SystemEventParams};

use super::{Call, Reply, to_value};
use crate::protocol::error::RpcError;

pub async fn health(c: Call) -> Result<Reply, RpcError> {
    if let Some(fault) = c.app.db.fault() {
        let mut e = RpcError::unavailable(format!(
            "unhealthy: the database {} cannot record: {}",
            c.app.db.path().display(),
            fault.reason
        ));
        e.retryable = Some(!fault.sticky);
        return Err(e);
    }
    let probe = c.params.get("probe").and_then(Value::as_bool) == Some(true);
    let cached = c.app.health_cache();
    let fresh =
        crate::clock::now_ms().saturating_sub(cached.snapshot.ts) < crate::app::HEALTH_CACHE_MS;
    if !probe && fresh {
        return Ok(Reply::Encoded(Arc::clone(&cached.encoded)));
    }
    let cache = c.app.refresh_health(false).await;
    Ok(Reply::Encoded(Arc::clone(&cache.encoded)))
}

pub async fn status(c: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(to_value(&c.app.status().await)))
}

pub async fn presence(c: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(to_value(&c.app.presence_list(c.version()))))
}

pub async fn system_event(c: Call) -> Result<Reply, RpcError> {
    // Parsed here rather than with `Call::parse`: the reference words this error itself.
    let p: SystemEventParams = serde_json::from_value(c.params.clone())
        .map_err(|e| RpcError::invalid_request(format!("invalid system-event params: {e}")))?;
    let text = p.text.as_deref().map(str::trim).unwrap_or("");
    if text.is_empty() {
        return Err(RpcError::invalid_request("text required"));
    }
    c.app.push_system_event(text);
    c.app.update_presence(|pr| pr.system_event(&p, text));
    Ok(Reply::Json(json!({ "ok": true })))
}

pub async fn second_connect(_: Call) -> Result<Reply, RpcError> {
    Err(RpcError::invalid_request(
        "connect is only valid as the first request",
    ))
}

/// `logs.tail`: a slice of the gateway's own log file.
pub async fn logs_tail(c: Call) -> Result<Reply, RpcError> {
    use crate::ops::logging::{TAIL_DEFAULT_BYTES, TAIL_DEFAULT_LIMIT};
    let p: LogsTailParams = c.parse()?;
    let Some(path) = c.app.config.logging.file.clone() else {
        return Err(RpcError::unavailable(
            "this gateway writes no log file (logging.file is false)",
        ));
    };
    let limit = p.limit.map(|l| l as usize).unwrap_or(TAIL_DEFAULT_LIMIT);
    let max_bytes = p.max_bytes.unwrap_or(TAIL_DEFAULT_BYTES);
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            crate::ops::logging::tail(&path, p.cursor, limit, max_bytes)
        })
        .await
    };
    match read {
        Ok(Ok(t)) => Ok(Reply::Json(to_value(&LogsTailResult {
            file: path.display().to_string(),
            cursor: t.cursor,
            size: t.size,
            lines: t.lines,
            truncated: Some(t.truncated),
            reset: Some(t.reset),
        }))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read the log file");
            Err(RpcError::unavailable(format!(
                "cannot read the log file: {e}"
            )))
        }
        Err(e) => Err(RpcError::unavailable(format!(
            "cannot read the log file: {e}"
        ))),
    }
}
