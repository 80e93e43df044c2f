//! `sessions.changed`: what the session lists of v4 clients (the OpenClaw Control UI's
//! Sessions page and chat sidebar) refresh from, sent only to connections that called
//! `sessions.subscribe` (the hub checks).
//!
//! The reference's shape, for an agent run: `{sessionKey, agentId, phase: "start" | "end",
//! runId, ts, session: <row>, updatedAt, kind, archived}`: the row is the session as
//! `sessions.list` lists it, read after the change. It is `drop-if-slow`: a client that
//! falls behind loses a refresh, never its connection, and its next list is whole.

use serde_json::json;
use switchboard_schemas::ProtocolVersion;

use crate::app::App;
use crate::clock::now_ms;
use crate::events::hub::{Broadcast, SESSIONS_CHANGED};
use crate::state::history::{agent_of, session_row};

/// Tells the subscribed clients that a run of `session_key` started or ended.
pub async fn run_phase(app: &App, session_key: &str, phase: &str, run_id: &str) {
    if !app.hub.has_sessions_subscribers() {
        return;
    }
    let key = session_key.to_owned();
    let row = match app.db.call(move |c| session_row(c, &key)).await {
        Ok(row) => row,
        Err(e) => {
            tracing::warn!(error = %e, "reading a session for sessions.changed failed");
            None
        }
    };
    let mut payload = json!({
        "sessionKey": session_key,
        "agentId": agent_of(session_key),
        "phase": phase,
        "runId": run_id,
        "ts": now_ms(),
    });
    if let Some(row) = row {
        for field in ["updatedAt", "kind", "archived"] {
            payload[field] = row[field].clone();
        }
        payload["session"] = row;
    }
    let b = Broadcast::new(SESSIONS_CHANGED, &payload, None, true).only_for(ProtocolVersion::V4);
    app.hub.broadcast(&b);
}
