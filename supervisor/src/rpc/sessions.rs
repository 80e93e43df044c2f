//! Sessions and their history, in each generation's shape: `sessions.list`, the body of
//! `chat.history`, and `models.list` (what the agent worker offers).

use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};
use switchboard_proto::v1::ModelsRequest;
use switchboard_proto::v1::agent_runner_client::AgentRunnerClient;
use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::methods::{ArchivedFilter, ChatHistoryParams, SessionsListParams};

use crate::app::App;
use crate::clock::now_ms;
use crate::config::AGENT_WORKER;
use crate::protocol::error::RpcError;
use crate::state::history::canonical_session_key;

/// `chat.history` answers are kept under this many bytes of messages (the reference's
/// bound, so clients' WebSocket limits are never hit).
const HISTORY_MAX_BYTES: usize = 6 * 1024 * 1024;
const HISTORY_DEFAULT_LIMIT: u64 = 200;
const SESSIONS_DEFAULT_LIMIT: u64 = 100;

fn model_defaults(app: &App) -> Value {
    let models = app.model_labels();
    json!({"modelProvider": models.0, "model": models.1, "contextTokens": Value::Null})
}

pub(super) async fn list_sessions(
    app: &App,
    version: ProtocolVersion,
    p: &SessionsListParams,
) -> Result<Value, RpcError> {
    // Switchboard has no boards and never archives: asking only for those lists none.
    let none = p.has_board == Some(true) || p.archived == Some(ArchivedFilter::Flag(true));
    let limit = if none {
        0
    } else {
        p.limit.unwrap_or(SESSIONS_DEFAULT_LIMIT).min(10_000)
    };
    let offset = p.offset.unwrap_or(0);
    let since = p
        .active_minutes
        .map(|m| now_ms().saturating_sub(m * 60_000))
        .unwrap_or(0);
    let agent = p.agent_id.clone();
    let search = p.search.clone().filter(|s| !s.is_empty());
    let (total, rows) = app
        .db
        .call(move |c| {
            let like = search.map(|s| format!("%{s}%"));
            let total: i64 = c.query_row(
                "SELECT COUNT(*) FROM sessions WHERE updated_at >= ?1 AND (?2 IS NULL OR agent_id = ?2)
                 AND (?3 IS NULL OR key LIKE ?3)",
                params![since as i64, agent, like],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare(
                "SELECT key, updated_at, (SELECT COUNT(*) FROM messages m WHERE m.session_key = s.key)
                 FROM sessions s WHERE updated_at >= ?1 AND (?2 IS NULL OR agent_id = ?2)
                 AND (?3 IS NULL OR key LIKE ?3)
                 ORDER BY updated_at DESC LIMIT ?4 OFFSET ?5",
            )?;
            let rows = stmt
                .query_map(params![since as i64, agent, like, limit as i64, offset as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((if none { 0 } else { total as u64 }, rows))
        })
        .await
        ?;
    let sessions: Vec<Value> = rows
        .into_iter()
        .map(|(key, updated, messages)| {
            json!({"key": key, "kind": "direct", "updatedAt": updated, "totalTokens": 0, "messageCount": messages})
        })
        .collect();
    let count = sessions.len() as u64;
    let mut out = json!({
        "ts": now_ms(),
        "path": app.db.path().display().to_string(),
        "count": count,
        "defaults": model_defaults(app),
        "sessions": sessions,
    });
    if version == ProtocolVersion::V4 {
        let next = offset + count;
        out["totalCount"] = json!(total);
        out["limitApplied"] = json!(p.limit.unwrap_or(SESSIONS_DEFAULT_LIMIT).min(10_000));
        out["nextOffset"] = if next < total {
            json!(next)
        } else {
            Value::Null
        };
        out["hasMore"] = json!(next < total);
        out["owners"] = json!([]);
    }
    Ok(out)
}

pub async fn history(
    app: &App,
    version: ProtocolVersion,
    p: &ChatHistoryParams,
) -> Result<Value, RpcError> {
    let key = canonical_session_key(Some(&p.session_key), p.agent_id.as_deref());
    let limit = p.limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
    let max_bytes = p
        .max_bytes
        .map_or(HISTORY_MAX_BYTES, |m| (m as usize).min(HISTORY_MAX_BYTES));
    let before = p.before.map(|b| b as i64);
    let (total, older, updated_at, mut rows) = {
        let key = key.clone();
        app.db
            .call(move |c| {
                let total: i64 = c.query_row(
                    "SELECT COUNT(*) FROM messages WHERE session_key = ?1",
                    [&key],
                    |r| r.get(0),
                )?;
                let mut stmt = c.prepare_cached(
                    "SELECT id, role, content, created_at FROM messages
                     WHERE session_key = ?1 AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?2",
                )?;
                let rows = stmt
                    .query_map(params![key, limit as i64, before], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, i64>(3)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                // Whether anything older than the oldest returned remains (paging on).
                let oldest = rows.last().map(|r| r.0);
                let older: bool = match oldest {
                    Some(o) => c.query_row(
                        "SELECT EXISTS(SELECT 1 FROM messages WHERE session_key = ?1 AND id < ?2)",
                        params![key, o],
                        |r| r.get(0),
                    )?,
                    None => false,
                };
                let updated: Option<i64> = c
                    .query_row(
                        "SELECT updated_at FROM sessions WHERE key = ?1",
                        [&key],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok((total as u64, older, updated, rows))
            })
            .await?
    };
    // Newest first from the query; keep the newest that fit, then put them in order.
    let mut bytes = 0usize;
    let mut kept = Vec::new();
    let mut cut = false;
    for (id, role, content, ts) in rows.drain(..) {
        bytes += content.len() + 64;
        if bytes > max_bytes && !kept.is_empty() {
            cut = true;
            break;
        }
        kept.push(json!({"role": role, "content": [{"type": "text", "text": content}], "timestamp": ts, "id": id}));
    }
    kept.reverse();
    let mut out = json!({"sessionKey": p.session_key, "messages": kept});
    if version == ProtocolVersion::V4 {
        out["pendingInputs"] = json!({"items": [], "total": 0});
        out["hasMore"] = json!(older || cut);
        out["totalMessages"] = json!(total);
        let live = app.runs.live_in(&key);
        let agent_id = key
            .split(':')
            .nth(1)
            .unwrap_or(crate::config::DEFAULT_AGENT_ID);
        out["sessionInfo"] = json!({
            "key": key,
            "kind": if key.contains(":group:") { "group" } else { "direct" },
            "agentId": agent_id,
            "isMain": key == format!("agent:{agent_id}:main"),
            "updatedAt": updated_at,
            "hasActiveRun": !live.is_empty(),
            "activeRunIds": live.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
        });
        if let Some(run) = live.first() {
            out["inFlightRun"] =
                json!({"runId": run.run_id, "text": run.partial(), "startedAt": run.started_at});
        }
        out["defaults"] = model_defaults(app);
    }
    Ok(out)
}

/// The models the agent backends offer (asked of the agent worker).
async fn agent_models(app: &App) -> Value {
    let Ok(channel) = app.workers().channel(AGENT_WORKER) else {
        return json!({"models": []});
    };
    let mut client = AgentRunnerClient::new(channel);
    match tokio::time::timeout(Duration::from_secs(5), client.models(ModelsRequest {})).await {
        Ok(Ok(reply)) => {
            let models: Vec<Value> = reply
                .into_inner()
                .models
                .into_iter()
                .map(|m| {
                    let mut v = json!({"id": m.id, "name": m.name, "provider": m.provider});
                    if m.context_window > 0 {
                        v["contextWindow"] = json!(m.context_window);
                    }
                    v
                })
                .collect();
            json!({"models": models})
        }
        _ => json!({"models": []}),
    }
}

pub async fn list(c: super::Call) -> Result<super::Reply, RpcError> {
    let p: SessionsListParams = c.parse()?;
    Ok(super::Reply::Json(
        list_sessions(&c.app, c.version(), &p).await?,
    ))
}

pub async fn models(c: super::Call) -> Result<super::Reply, RpcError> {
    Ok(super::Reply::Json(agent_models(&c.app).await))
}
