//! The worker processes: `workers.list`, `workers.restart`, `workers.stop`, `workers.start`.

use switchboard_schemas::methods::{WorkerControlParams, WorkerControlResult, WorkersList};

use super::{Call, Reply, to_value};
use crate::protocol::error::RpcError;
use crate::workers::Control;

pub async fn list(c: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(to_value(&WorkersList {
        workers: c.app.workers().list(),
    })))
}

pub async fn restart(c: Call) -> Result<Reply, RpcError> {
    control(c, Control::Restart).await
}

pub async fn stop(c: Call) -> Result<Reply, RpcError> {
    control(c, Control::Stop).await
}

pub async fn start(c: Call) -> Result<Reply, RpcError> {
    control(c, Control::Start).await
}

async fn control(c: Call, control: Control) -> Result<Reply, RpcError> {
    let p: WorkerControlParams = c.parse()?;
    let workers = c.app.workers();
    workers
        .control(&p.name, control)
        .await
        .map_err(|e| RpcError::invalid_request(e.to_string()))?;
    let worker = workers
        .health_of(&p.name)
        .map_err(|e| RpcError::invalid_request(e.to_string()))?;
    Ok(Reply::Json(to_value(&WorkerControlResult {
        ok: true,
        worker,
    })))
}
