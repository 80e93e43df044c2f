//! Device pairing and device tokens: `device.pair.*`, `device.token.*`.

use serde_json::json;
use switchboard_schemas::methods::{
    DeviceTokenRevokeParams, DeviceTokenRotateParams, PairingRequestParams,
};

use super::{Call, Reply};
use crate::clock::now_ms;
use crate::events::hub::Broadcast;
use crate::protocol::error::RpcError;

pub async fn list(c: Call) -> Result<Reply, RpcError> {
    Ok(Reply::Json(c.app.devices.list()))
}

pub async fn approve(c: Call) -> Result<Reply, RpcError> {
    let p: PairingRequestParams = c.parse()?;
    let Some(device) = c.app.devices.approve(&p.request_id).await? else {
        return Err(RpcError::invalid_request("unknown requestId"));
    };
    tracing::info!(device = %device.device_id, "device pairing approved");
    let ev = json!({"requestId": p.request_id, "deviceId": device.device_id, "decision": "approved", "ts": now_ms()});
    c.app
        .hub
        .broadcast(&Broadcast::new("device.pair.resolved", &ev, None, true));
    Ok(Reply::Json(
        json!({"requestId": p.request_id, "device": device}),
    ))
}

pub async fn reject(c: Call) -> Result<Reply, RpcError> {
    let p: PairingRequestParams = c.parse()?;
    let Some(req) = c.app.devices.reject(&p.request_id).await? else {
        return Err(RpcError::invalid_request("unknown requestId"));
    };
    let ev = json!({"requestId": p.request_id, "deviceId": req.device_id, "decision": "rejected", "ts": now_ms()});
    c.app
        .hub
        .broadcast(&Broadcast::new("device.pair.resolved", &ev, None, true));
    Ok(Reply::Json(
        json!({"requestId": p.request_id, "deviceId": req.device_id}),
    ))
}

pub async fn rotate(c: Call) -> Result<Reply, RpcError> {
    let p: DeviceTokenRotateParams = c.parse()?;
    let Some((token, info)) = c
        .app
        .devices
        .rotate(&p.device_id, &p.role, p.scopes)
        .await?
    else {
        return Err(RpcError::invalid_request("unknown deviceId/role"));
    };
    Ok(Reply::Json(
        json!({"deviceId": info.device_id, "role": info.role, "token": token,
               "scopes": info.scopes, "rotatedAtMs": info.issued_at_ms}),
    ))
}

pub async fn revoke(c: Call) -> Result<Reply, RpcError> {
    let p: DeviceTokenRevokeParams = c.parse()?;
    let Some(info) = c.app.devices.revoke(&p.device_id, &p.role).await? else {
        return Err(RpcError::invalid_request("unknown deviceId/role"));
    };
    let closed = c
        .app
        .disconnect_device(&p.device_id, &p.role, "device token revoked");
    tracing::info!(device = %p.device_id, role = %p.role, closed, "device token revoked");
    Ok(Reply::Json(
        json!({"deviceId": info.device_id, "role": info.role,
               "revokedAtMs": info.revoked_at_ms}),
    ))
}
