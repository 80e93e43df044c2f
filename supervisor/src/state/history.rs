//! Conversation history: sessions and their messages in SQLite, and the one way a message
//! enters a session ([`append_in`]). Session keys are `agent:<agent id>:<rest>`.

use rusqlite::params;

use crate::config::DEFAULT_AGENT_ID;

/// `agent:<id>:<key>`: the canonical form of a session key.
pub fn canonical_session_key(key: Option<&str>, agent_id: Option<&str>) -> String {
    let agent = agent_id
        .filter(|a| !a.is_empty())
        .unwrap_or(DEFAULT_AGENT_ID);
    match key.map(str::trim).filter(|k| !k.is_empty()) {
        Some(k) if k.starts_with("agent:") => k.to_owned(),
        Some(k) => format!("agent:{agent}:{k}"),
        None => format!("agent:{agent}:main"),
    }
}

/// `agent:main:<channel>:<kind>:<peer>`: the session of one conversation on a messaging
/// channel (the registry decides kind and peer: `channels::providers::session_key`).
pub fn conversation_key(channel: &str, kind: &str, peer: &str) -> String {
    format!("agent:{DEFAULT_AGENT_ID}:{channel}:{kind}:{peer}")
}

/// The agent a session key belongs to.
pub fn agent_of(session_key: &str) -> &str {
    session_key
        .strip_prefix("agent:")
        .and_then(|r| r.split(':').next())
        .unwrap_or(DEFAULT_AGENT_ID)
}

/// Appends a message to a session's history (creating the session), inside a caller's
/// transaction. With a `run_id`, a message of that run and role already there is not
/// added twice (a run resumed after a restart).
pub fn append_in(
    tx: &rusqlite::Transaction<'_>,
    session_key: &str,
    role: &str,
    content: &str,
    run_id: Option<&str>,
    now: i64,
) -> Result<(), rusqlite::Error> {
    let agent_id = session_key
        .strip_prefix("agent:")
        .and_then(|r| r.split(':').next())
        .unwrap_or(DEFAULT_AGENT_ID);
    tx.execute(
        "INSERT INTO sessions (key, agent_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT(key) DO UPDATE SET updated_at = excluded.updated_at",
        params![session_key, agent_id, now],
    )?;
    if let Some(run) = run_id {
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM messages WHERE session_key = ?1 AND run_id = ?2 AND role = ?3)",
            params![session_key, run, role],
            |r| r.get(0),
        )?;
        if exists {
            return Ok(());
        }
    }
    tx.execute(
        "INSERT INTO messages (session_key, role, content, run_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![session_key, role, content, run_id, now],
    )?;
    Ok(())
}

/// One session as the session lists show it (`sessions.list`, `sessions.describe`,
/// `sessions.changed`): `None` when it does not exist.
pub fn session_row(
    c: &rusqlite::Connection,
    key: &str,
) -> Result<Option<serde_json::Value>, rusqlite::Error> {
    use rusqlite::OptionalExtension;
    let row = c
        .query_row(
            "SELECT updated_at, (SELECT COUNT(*) FROM messages m WHERE m.session_key = s.key)
             FROM sessions s WHERE key = ?1",
            [key],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .optional()?;
    Ok(row.map(|(updated, messages)| {
        let agent = agent_of(key);
        serde_json::json!({
            "key": key,
            "kind": if key.contains(":group:") { "group" } else { "direct" },
            "agentId": agent,
            "isMain": key == format!("agent:{agent}:main"),
            "updatedAt": updated,
            "messageCount": messages,
            "totalTokens": 0,
            "archived": false,
        })
    }))
}
