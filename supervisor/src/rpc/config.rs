//! `config.get`, `config.schema`, `config.set`, `config.patch`, `config.apply`: the
//! config file as the Control UIs edit it, in the v4 reference's shapes. The checks, the
//! redaction and the write are `config::edit`; a change that needs one restarts the
//! gateway in place (as `switchboard gateway restart`), after the answer is sent.

use serde_json::{Value, json};

use super::{Call, Reply};
use crate::clock::now_ms;
use crate::config::edit::{self, EditError, FileSnapshot};
use crate::protocol::error::RpcError;

/// How long after answering a write the gateway restarts, so the answer reaches the
/// client before its socket closes with 1012.
const RESTART_DELAY_MS: u64 = 200;

fn snapshot(c: &Call) -> Result<FileSnapshot, RpcError> {
    edit::read(&c.app.config.config_path).map_err(to_rpc)
}

fn to_rpc(e: EditError) -> RpcError {
    match &e {
        EditError::Invalid(problems) => RpcError::invalid_request(e.to_string()).with_details(
            json!({"issues": problems.iter().map(|p| json!({"message": p})).collect::<Vec<_>>()}),
        ),
        EditError::Conflict(_) => RpcError::invalid_request(e.to_string()),
        EditError::Io(_) => {
            tracing::error!(error = %e, "config write failed");
            let mut r = RpcError::unavailable(e.to_string());
            r.retryable = Some(true);
            r
        }
    }
}

fn raw_param(c: &Call, method: &str) -> Result<String, RpcError> {
    c.params
        .get("raw")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            RpcError::invalid_request(format!("invalid {method} params: raw (string) required"))
        })
}

fn base_hash(c: &Call) -> Option<&str> {
    c.params.get("baseHash").and_then(Value::as_str)
}

/// `config.get`: the file (secrets redacted, with its hash for a later write) and the
/// effective config (masked, as `switchboard config show`).
pub async fn config_get(c: Call) -> Result<Reply, RpcError> {
    let file = snapshot(&c)?;
    let parsed = edit::redact(&file.value);
    let raw = file
        .exists
        .then(|| serde_json::to_string_pretty(&parsed).unwrap_or_default());
    let (valid, issues) = if file.exists {
        let text = std::fs::read_to_string(&file.path).unwrap_or_default();
        match crate::config::file::parse(&text, &file.path) {
            Ok(_) => (true, vec![]),
            Err(e) => (false, vec![json!({"path": "", "message": e.to_string()})]),
        }
    } else {
        (true, vec![])
    };
    Ok(Reply::Json(json!({
        "path": file.path.display().to_string(),
        "exists": file.exists,
        "raw": raw,
        "hash": file.hash,
        "parsed": parsed,
        "sourceConfig": parsed,
        "resolved": c.app.config.masked(),
        "config": parsed,
        "valid": valid,
        "issues": issues,
        "warnings": [],
        "legacyIssues": [],
        "includedPaths": [],
    })))
}

/// `config.schema`: the config file's JSON Schema, derived from its types and made plain
/// for the UIs' forms (`config::schema`); `uiHints` marks the secrets.
pub async fn config_schema(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({
        "schema": crate::config::schema::file_schema(),
        "uiHints": crate::config::schema::ui_hints(),
        "version": env!("CARGO_PKG_VERSION"),
        "generatedAt": now_ms(),
    })))
}

/// What a write answers: the reference's fields.
fn written(c: &Call, hash: &str, value: &Value) -> Value {
    json!({
        "ok": true,
        "path": c.app.config.config_path.display().to_string(),
        "hash": hash,
        "config": edit::redact(value),
    })
}

/// Validates and writes `next` (the file's whole new value, secrets restored).
async fn write(c: &Call, next: Value) -> Result<String, RpcError> {
    let flags = c.app.config.flags.0.clone();
    let path = c.app.config.config_path.clone();
    tokio::task::spawn_blocking(move || {
        edit::write_validated(&flags, &crate::config::ProcessEnv, &path, &next)
    })
    .await
    .map_err(|_| RpcError::unavailable("the config write did not finish"))?
    .map_err(to_rpc)
}

/// Restarts the gateway in place shortly after this answer; the reference's `restart`.
fn restart(c: &Call, reason: &str) -> Value {
    let app = std::sync::Arc::clone(&c.app);
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(RESTART_DELAY_MS)).await;
        app.request_restart();
    });
    tracing::info!(reason, "config changed: restarting in place");
    json!({
        // The reference also says which OS signal its process sent itself; this restart
        // is no signal but the in-place restart `switchboard gateway restart` asks for.
        "ok": true, "pid": std::process::id(), "reason": reason,
        "mode": "in-place", "cooldownMsApplied": 0, "delayMs": RESTART_DELAY_MS,
    })
}

fn sentinel(kind: &str, mode: &str, path: &str, requires_restart: bool) -> Value {
    json!({
        "persisted": false,
        "payload": {
            "kind": kind, "status": "ok", "ts": now_ms(), "message": null,
            "stats": {"mode": mode, "root": path, "requiresRestart": requires_restart},
        },
    })
}

/// The submitted whole file, its secrets put back from the file as it is.
fn submitted(c: &Call, method: &str, file: &FileSnapshot) -> Result<Value, RpcError> {
    edit::check_base(file, base_hash(c)).map_err(to_rpc)?;
    let mut next = edit::parse_object(&raw_param(c, method)?).map_err(to_rpc)?;
    edit::restore(&mut next, &file.value).map_err(to_rpc)?;
    Ok(next)
}

/// `config.set`: writes the whole file; it takes effect at the next restart (the UI
/// then offers `config.apply`).
pub async fn config_set(c: Call) -> Result<Reply, RpcError> {
    let file = snapshot(&c)?;
    let next = submitted(&c, "config.set", &file)?;
    let hash = write(&c, next.clone()).await?;
    tracing::info!(conn = %c.conn.conn_id, "config.set wrote the config file");
    Ok(Reply::Json(written(&c, &hash, &next)))
}

/// `config.apply`: writes the whole file and restarts the gateway in place to apply it.
pub async fn config_apply(c: Call) -> Result<Reply, RpcError> {
    let file = snapshot(&c)?;
    let next = submitted(&c, "config.apply", &file)?;
    let changed = edit::changed_paths(&file.value, &next);
    let hash = write(&c, next.clone()).await?;
    let path = c.app.config.config_path.display().to_string();
    let mut out = written(&c, &hash, &next);
    out["restart"] = restart(&c, "config.apply");
    out["sentinel"] = sentinel("config-apply", "config.apply", &path, true);
    out["changedPaths"] = json!(changed);
    Ok(Reply::Json(out))
}

/// `config.patch`: a JSON merge patch on the file. Without `baseHash` only `ui.prefs`
/// may change (the reference's rule). Restarts when what changed needs it.
pub async fn config_patch(c: Call) -> Result<Reply, RpcError> {
    let file = snapshot(&c)?;
    let patch = edit::parse_object(&raw_param(&c, "config.patch")?).map_err(to_rpc)?;
    let mut next = file.value.clone();
    edit::merge_patch(&mut next, &patch);
    edit::restore(&mut next, &file.value).map_err(to_rpc)?;
    let changed = edit::changed_paths(&file.value, &next);
    let path = c.app.config.config_path.display().to_string();
    if changed.is_empty() {
        return Ok(Reply::Json(json!({
            "ok": true, "noop": true, "changedPaths": [], "path": path,
            "config": edit::redact(&file.value),
        })));
    }
    if base_hash(&c).is_none() && file.exists {
        if !edit::only_hashless(&changed) {
            let guarded: Vec<&str> = changed
                .iter()
                .filter(|p| !edit::only_hashless(std::slice::from_ref(*p)))
                .map(String::as_str)
                .collect();
            return Err(RpcError::invalid_request(format!(
                "config base hash required for {}; re-run config.get and retry with baseHash",
                guarded.join(", ")
            )));
        }
    } else {
        edit::check_base(&file, base_hash(&c)).map_err(to_rpc)?;
    }
    let hash = write(&c, next.clone()).await?;
    let restart_needed = edit::needs_restart(&changed);
    let mut out = written(&c, &hash, &next);
    out["changedPaths"] = json!(changed);
    if restart_needed {
        out["restart"] = restart(&c, "config.patch");
    }
    out["sentinel"] = sentinel("config-patch", "config.patch", &path, restart_needed);
    Ok(Reply::Json(out))
}
