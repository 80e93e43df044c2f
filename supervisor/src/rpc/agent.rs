//! Agent runs requested by clients: `agent` (ack, streamed events, final response) and
//! `agent.wait`. The runs themselves are `crate::agent`'s.

use std::time::Duration;

use switchboard_schemas::methods::{AgentParams, AgentWaitParams};

use super::{Call, Reply};
use crate::agent::Admission;
use crate::protocol::error::RpcError;

pub async fn agent(c: Call) -> Result<Reply, RpcError> {
    let p: AgentParams = c.parse()?;
    Ok(admitted(
        crate::agent::start(&c.app, &c.conn, &c.id, p).await?,
    ))
}

pub async fn wait(c: Call) -> Result<Reply, RpcError> {
    let p: AgentWaitParams = c.parse()?;
    let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(30_000));
    Ok(Reply::Json(
        crate::agent::wait(&c.app, &p.run_id, timeout).await,
    ))
}

/// A new run's ack, or a repeated key's recorded answer.
pub fn admitted(a: Admission) -> Reply {
    match a {
        Admission::Accepted(ack) => Reply::Json(ack),
        Admission::Replay { ok, payload, error } => Reply::Replay { ok, payload, error },
    }
}
