//! The chat surface of a session: `chat.send`, `chat.abort`, `chat.history`.

use switchboard_schemas::methods::{
    ChatAbortParams, ChatAbortResult, ChatHistoryParams, ChatSendParams,
};

use super::agent::admitted;
use super::{Call, Reply, to_value};
use crate::protocol::error::RpcError;
use crate::state::history::canonical_session_key;

pub async fn send(c: Call) -> Result<Reply, RpcError> {
    let p: ChatSendParams = c.parse()?;
    Ok(admitted(crate::agent::chat_send(&c.app, p).await?))
}

pub async fn abort(c: Call) -> Result<Reply, RpcError> {
    let p: ChatAbortParams = c.parse()?;
    let key = canonical_session_key(Some(&p.session_key), p.agent_id.as_deref());
    let run_ids = c.app.runs.abort(&key, p.run_id.as_deref());
    Ok(Reply::Json(to_value(&ChatAbortResult {
        ok: true,
        aborted: !run_ids.is_empty(),
        run_ids,
    })))
}

pub async fn history(c: Call) -> Result<Reply, RpcError> {
    let p: ChatHistoryParams = c.parse()?;
    Ok(Reply::Json(
        super::sessions::history(&c.app, c.version(), &p).await?,
    ))
}
