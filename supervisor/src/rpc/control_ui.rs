//! The methods the Control UIs (OpenClaw's v4 one, Clawdbot's v3 one) call beyond the
//! core protocol, in the references' shapes.
//!
//! Where Switchboard has the data (its agent and model, its config, its sessions and
//! messages, DM pairing requests) the answer is real. Where it has no such feature
//! (plugins, skills, tasks, boards, questions, approval queues, cron, talk, updates) the
//! answer is the reference's empty shape: nothing is claimed that did not happen. The
//! README lists those features as not offered.

use rusqlite::params;
use serde_json::{Value, json};
use switchboard_schemas::methods::{ChatHistoryParams, ChatStartupParams};

use super::{Call, Reply};
use crate::clock::now_ms;
use crate::config::DEFAULT_AGENT_ID;
use crate::protocol::error::RpcError;
use crate::state::history::canonical_session_key;

fn str_param<'a>(c: &'a Call, key: &str) -> Option<&'a str> {
    c.params.get(key).and_then(Value::as_str)
}

/// The agent backend and model from the config (the echo backend's model is `echo`),
/// known before the worker reports its health.
fn configured_model(c: &Call) -> (String, String) {
    let spec = c
        .app
        .config
        .workers
        .iter()
        .find(|w| w.name == crate::config::AGENT_WORKER);
    let cfg = spec.map(|w| &w.config);
    let backend = cfg
        .and_then(|c| c["backend"].as_str())
        .unwrap_or("echo")
        .to_owned();
    let model = cfg
        .and_then(|c| c["model"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| backend.clone());
    (backend, model)
}

/// The one agent Switchboard runs, as the reference lists an agent.
fn agent_row(c: &Call) -> Value {
    let (provider, model) = configured_model(c);
    json!({
        "id": DEFAULT_AGENT_ID,
        "name": "Assistant",
        "kind": "agent",
        "identity": {"name": "Assistant", "avatar": "A"},
        "model": {"provider": provider, "primary": model},
    })
}

pub async fn agents_list(c: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({
        "defaultId": DEFAULT_AGENT_ID,
        "mainKey": "main",
        "scope": "per-sender",
        "selectionRequired": false,
        "agents": [agent_row(&c)],
    })))
}

pub async fn agent_identity(c: Call) -> Result<Reply, RpcError> {
    let agent = str_param(&c, "agentId").unwrap_or(DEFAULT_AGENT_ID);
    if agent != DEFAULT_AGENT_ID {
        return Err(RpcError::invalid_request(format!(
            "unknown agent id: {agent}"
        )));
    }
    Ok(Reply::Json(json!({
        "agentId": agent, "name": "Assistant", "nameSource": "default", "avatar": "A",
    })))
}

/// `chat.startup`: the history of the session the UI opens, with how it was resolved.
pub async fn chat_startup(c: Call) -> Result<Reply, RpcError> {
    let p: ChatStartupParams = c.parse()?;
    let Some(session_key) = p.session_key.clone() else {
        // Switchboard has no short ids or slugs to resolve a session from.
        return Ok(Reply::Json(json!({"resolution": {"ok": false}})));
    };
    let h = ChatHistoryParams {
        session_key,
        limit: p.limit,
        before: None,
        max_bytes: p.max_bytes,
        input_run_ids: None,
        cursor: None,
        agent_id: p.agent_id.clone(),
    };
    let mut out = super::sessions::history(&c.app, c.version(), &h).await?;
    let key = canonical_session_key(Some(&h.session_key), p.agent_id.as_deref());
    let agent = key.split(':').nth(1).unwrap_or(DEFAULT_AGENT_ID).to_owned();
    out["resolution"] = json!({"ok": true, "key": key, "agentId": agent});
    Ok(Reply::Json(out))
}

/// `sessions.describe`: one session's row, or `null` when there is none.
pub async fn sessions_describe(c: Call) -> Result<Reply, RpcError> {
    let given = str_param(&c, "key")
        .or_else(|| str_param(&c, "sessionKey"))
        .ok_or_else(|| {
            RpcError::invalid_request("invalid sessions.describe params: key is required")
        })?;
    let key = canonical_session_key(Some(given), str_param(&c, "agentId"));
    let session = {
        let key = key.clone();
        c.app
            .db
            .call(move |db| crate::state::history::session_row(db, &key))
            .await?
    };
    Ok(Reply::Json(json!({"session": session})))
}

/// `sessions.subscribe`: from now on this connection gets `sessions.changed` (for as
/// long as it is connected; there is no unsubscribe, as in the reference). With
/// `sessions.list` params it answers that list too, as `{subscribed, list}`.
pub async fn sessions_subscribe(c: Call) -> Result<Reply, RpcError> {
    c.conn.subscribe_sessions();
    let asked_for_list = c.params.as_object().is_some_and(|p| !p.is_empty());
    if !asked_for_list {
        return Ok(Reply::Json(json!({"subscribed": true})));
    }
    let p: switchboard_schemas::methods::SessionsListParams = c.parse()?;
    let list = super::sessions::list_sessions(&c.app, c.version(), &p).await?;
    Ok(Reply::Json(json!({"subscribed": true, "list": list})))
}

pub async fn sessions_messages_subscribe(c: Call) -> Result<Reply, RpcError> {
    let key = str_param(&c, "key").unwrap_or("main").to_owned();
    let key = canonical_session_key(Some(&key), None);
    Ok(Reply::Json(json!({
        "subscribed": true,
        "key": key,
        "approvalReplay": {"sessionKey": key, "updatedAtMs": now_ms(), "approvals": [], "truncated": false},
    })))
}

pub async fn sessions_messages_unsubscribe(c: Call) -> Result<Reply, RpcError> {
    let key = str_param(&c, "key").unwrap_or("main").to_owned();
    let key = canonical_session_key(Some(&key), None);
    Ok(Reply::Json(json!({"subscribed": false, "key": key})))
}

/// `channels.pairing.list`: the DM pairing requests waiting for an operator.
pub async fn channels_pairing_list(c: Call) -> Result<Reply, RpcError> {
    let all = crate::channels::sender_pairing::list(&c.app.db, None).await?;
    let requests: Vec<Value> = all["requests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            json!({
                "channel": r["channel"], "accountId": "default", "code": r["code"],
                "id": r["id"], "senderId": r["id"], "name": r["name"], "username": r["username"],
                "createdAt": r["createdAt"], "expiresAt": r["expiresAt"],
            })
        })
        .collect();
    Ok(Reply::Json(json!({
        "accounts": [],
        "requests": requests,
        "commandOwnerConfigured": false,
        "limits": {"pendingPerAccount": 3, "ttlMs": 3_600_000},
    })))
}

pub async fn system_info(c: Call) -> Result<Reply, RpcError> {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Ok(Reply::Json(json!({
        "machineName": c.app.host, "hostname": c.app.host,
        "platform": std::env::consts::OS, "arch": std::env::consts::ARCH,
        "port": c.app.port, "pid": std::process::id(),
        "uptimeMs": c.app.started.elapsed().as_millis() as u64,
        "cpuCount": cpus,
    })))
}

/// `sessions.usage`: messages per session in the date range, from the stored history.
/// The agent backends report no token counts, so tokens and costs are 0.
pub async fn sessions_usage(c: Call) -> Result<Reply, RpcError> {
    let start = str_param(&c, "startDate").map(str::to_owned);
    let end = str_param(&c, "endDate").map(str::to_owned);
    let day_ms = |d: &str| -> Option<i64> {
        let mut it = d.split('-').map(|p| p.parse::<i64>().ok());
        let (y, m, dd) = (it.next()??, it.next()??, it.next()??);
        // Days from civil (Howard Hinnant's algorithm), UTC.
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + dd - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Some((era * 146_097 + doe - 719_468) * 86_400_000)
    };
    let from = start.as_deref().and_then(day_ms).unwrap_or(0);
    let to = end
        .as_deref()
        .and_then(day_ms)
        .map(|t| t + 86_400_000)
        .unwrap_or(i64::MAX);
    let rows = c
        .app
        .db
        .call(move |db| {
            let mut stmt = db.prepare(
                "SELECT session_key, SUM(role = 'user'), SUM(role = 'assistant'), COUNT(*)
                 FROM messages WHERE created_at >= ?1 AND created_at < ?2 GROUP BY session_key",
            )?;
            let rows = stmt
                .query_map(params![from, to], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await?;
    let (mut user, mut assistant, mut total) = (0, 0, 0);
    let zero = json!({"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0,
        "totalCost": 0, "inputCost": 0, "outputCost": 0, "cacheReadCost": 0, "cacheWriteCost": 0,
        "missingCostEntries": 0});
    let sessions: Vec<Value> = rows
        .into_iter()
        .map(|(key, u, a, t)| {
            user += u;
            assistant += a;
            total += t;
            json!({"key": key, "usage": zero, "messageCounts": {"total": t, "user": u, "assistant": a,
                "toolCalls": 0, "toolResults": 0, "errors": 0}})
        })
        .collect();
    Ok(Reply::Json(json!({
        "updatedAt": now_ms(),
        "startDate": start, "endDate": end,
        "sessions": sessions,
        "totals": zero,
        "aggregates": {
            "sessionCount": sessions.len(),
            "messages": {"total": total, "user": user, "assistant": assistant, "toolCalls": 0, "toolResults": 0, "errors": 0},
            "tools": {"totalCalls": 0, "uniqueTools": 0, "tools": []},
            "byModel": [], "byProvider": [], "byAgent": [], "byChannel": [], "byCreator": [],
            "costDaily": [], "dailyLatency": [], "modelDaily": [], "daily": [],
        },
        "creatorOptions": [],
    })))
}

pub async fn usage_status(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"updatedAt": now_ms(), "providers": []})))
}

pub async fn models_auth_status(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(
        json!({"ts": now_ms(), "providers": [], "providerCapabilities": []}),
    ))
}

pub async fn diagnostics_lanes(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"ts": now_ms(), "lanes": []})))
}

/// Switchboard does not update itself.
pub async fn update_status(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(
        json!({"sentinel": null, "updateAvailable": null}),
    ))
}

/// Switchboard's agents run no commands on hosts: no exec approval policy file.
pub async fn exec_approvals_get(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({
        "path": null, "exists": false, "hash": null,
        "file": {"version": 1, "agents": {}},
        "resolvedDefaults": {},
    })))
}

pub async fn skills_status(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(
        json!({"agentId": DEFAULT_AGENT_ID, "skills": []}),
    ))
}

pub async fn skills_library(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(
        json!({"entries": [], "multipleProfiles": false, "canManageWorkspace": false}),
    ))
}

pub async fn plugins_list(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"plugins": []})))
}

pub async fn chat_metadata(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"models": [], "commands": []})))
}

pub async fn talk_catalog(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(
        json!({"modes": [], "transports": [], "brains": [], "speech": {"providers": []}}),
    ))
}

/// Empty lists of the features Switchboard does not offer.
pub async fn empty_array(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!([])))
}

pub async fn no_questions(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"questions": []})))
}

pub async fn no_tasks(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"tasks": []})))
}

pub async fn no_progress_card(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"card": null})))
}

pub async fn no_branches(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"branches": []})))
}

pub async fn no_companion(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"exchanges": []})))
}

pub async fn no_environments(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"environments": []})))
}

pub async fn no_approval_history(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"items": []})))
}

/// The UI says whether it is looking; Switchboard keeps no per-viewer state.
pub async fn observer_visibility(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"ok": true})))
}

/// The reference searches an online catalog; Switchboard offers no skills.
pub async fn skills_search(_: Call) -> Result<Reply, RpcError> {
    Err(RpcError::unavailable(
        "skill search is not offered by Switchboard (it has no skills)",
    ))
}

pub async fn plugins_catalog(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"items": []})))
}

/// The UI's own built-in default theme; Switchboard serves no others.
static CLAW_THEME: std::sync::LazyLock<Value> = std::sync::LazyLock::new(
    || json!({"id": "claw", "name": "Claw", "source": "builtin", "modes": ["light", "dark"]}),
);

/// No themes are served: the UI keeps its built-in default.
pub async fn themes_list(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({
        "current": {"id": "claw", "mode": "system", "scope": "profile", "overrides": {}},
        "theme": CLAW_THEME.clone(),
        "themes": [CLAW_THEME.clone()],
    })))
}

/// Switchboard's agents produce no artifacts (files, images) beside their text.
pub async fn no_artifacts(_: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(json!({"artifacts": []})))
}
