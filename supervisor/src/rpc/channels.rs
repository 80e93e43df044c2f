//! Messaging channels as clients see them: `channels.status`, `send`, linking
//! (`web.login.start`, `web.login.wait`) and `channels.logout`.

use serde_json::{Value, json};
use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::methods::{
    ChannelsLogoutParams, SendParams, WebLoginStartParams, WebLoginWaitParams,
};

use super::{Call, Reply};
use crate::app::App;
use crate::clock::now_ms;
use crate::protocol::error::RpcError;

pub async fn status(c: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(channels_status(&c.app, c.version())))
}

pub async fn send(c: Call) -> Result<Reply, RpcError> {
    let p: SendParams = c.parse()?;
    Ok(
        match crate::channels::send::send(&c.app, &c.conn, &c.id, p).await? {
            Some(v) => Reply::Json(v),
            None => Reply::Deferred,
        },
    )
}

pub async fn login_start(c: Call) -> Result<Reply, RpcError> {
    let p: WebLoginStartParams = c.parse()?;
    let app = c.app.clone();
    Ok(c.defer(async move {
        crate::channels::linking::start(&app, p.force == Some(true), p.timeout_ms).await
    }))
}

pub async fn login_wait(c: Call) -> Result<Reply, RpcError> {
    let p: WebLoginWaitParams = c.parse()?;
    let app = c.app.clone();
    Ok(c.defer(async move { crate::channels::linking::wait(&app, p.timeout_ms).await }))
}

pub async fn logout(c: Call) -> Result<Reply, RpcError> {
    let p: ChannelsLogoutParams = c.parse()?;
    let app = c.app.clone();
    Ok(c.defer(async move {
        crate::channels::linking::logout(&app, &p.channel, p.account_id.as_deref()).await
    }))
}

pub fn channels_status(app: &App, version: ProtocolVersion) -> Value {
    let mut channels = serde_json::Map::new();
    let mut order = Vec::new();
    let mut labels = serde_json::Map::new();
    for c in app.channel_states() {
        let id = c.config.channel.clone();
        order.push(json!(id));
        labels.insert(id.clone(), json!(c.label));
        channels.insert(
            id,
            json!({
                "configured": true,
                "running": c.running,
                "connected": c.connected,
                "state": c.state,
                "workerState": c.worker_state,
                "lastError": c.last_error,
                "capabilities": c.capabilities,
            }),
        );
    }
    let mut out = json!({
        "ts": now_ms(),
        "channelOrder": order,
        "channelLabels": labels,
        "channelDetailLabels": {},
        "channelSystemImages": {},
        "channelMeta": [],
        "channels": channels,
        "channelAccounts": {},
        "channelDefaultAccountId": {},
    });
    if version == ProtocolVersion::V4 {
        out["statusIssues"] = json!([]);
    }
    out
}
