//! Linking a device-based channel by QR code, and logging it out:
//! `web.login.start`, `web.login.wait` and `channels.logout`, in the reference's shapes,
//! carried out by the channel's worker over the `Linker` service.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_proto::capability;
use switchboard_proto::v1::linker_client::LinkerClient;
use switchboard_proto::v1::{LoginStartRequest, LoginWaitRequest, LogoutRequest};

use crate::app::App;
use crate::protocol::error::RpcError;

/// Extra time for the gRPC call beyond what the worker itself waits.
const LEEWAY: Duration = Duration::from_secs(5);

/// The configured channel whose worker links by QR code (it announced `login.qr`).
fn qr_channel(app: &App) -> Result<String, RpcError> {
    let workers = app.workers();
    app.config
        .channels
        .iter()
        .map(|c| c.channel.clone())
        .find(|c| workers.can(c, capability::LOGIN_QR))
        .ok_or_else(|| RpcError::invalid_request("web login provider is not available"))
}

fn linker(
    app: &App,
    channel: &str,
) -> Result<LinkerClient<crate::workers::WorkerChannel>, RpcError> {
    if app.config.channel(channel).is_none() {
        return Err(RpcError::invalid_request(
            "web login provider is not available",
        ));
    }
    let workers = app.workers();
    let ch = workers.channel(channel).map_err(|e| {
        let why = workers
            .health_of(channel)
            .ok()
            .and_then(|w| w.last_exit)
            .map(|r| format!(" (last exit: {r})"))
            .unwrap_or_default();
        RpcError::unavailable(format!("{e}{why}"))
    })?;
    Ok(LinkerClient::new(ch))
}

fn failed(channel: &str, s: &tonic::Status) -> RpcError {
    RpcError::unavailable(format!("the {channel} worker failed: {}", s.message()))
}

/// A call that failed on the connection, not in the worker (tonic's transport errors).
fn is_connection_error(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::Unavailable && s.message().contains("transport error")
}

fn late(channel: &str) -> RpcError {
    RpcError::unavailable(format!("the {channel} worker did not answer in time"))
}

/// `web.login.start`: `{qrDataUrl?, message}` (the reference's), plus `qrCode` (the raw
/// text, for terminals) and `linkedAs`.
pub async fn start(app: &App, force: bool, timeout_ms: Option<u64>) -> Result<Value, RpcError> {
    let channel = qr_channel(app)?;
    let mut client = linker(app, &channel)?;
    let wait = Duration::from_millis(timeout_ms.unwrap_or(30_000).clamp(1_000, 300_000));
    let reply = tokio::time::timeout(
        wait + LEEWAY,
        client.login_start(LoginStartRequest {
            force,
            timeout_ms: wait.as_millis() as u64,
        }),
    )
    .await
    .map_err(|_| late(&channel))?
    .map_err(|s| failed(&channel, &s))?
    .into_inner();
    let mut out = json!({"message": reply.message});
    if !reply.qr_code.is_empty() {
        if let Some(url) = crate::channels::qr::data_url(&reply.qr_code) {
            out["qrDataUrl"] = json!(url);
        }
        out["qrCode"] = json!(reply.qr_code);
        out["qrValidMs"] = json!(reply.qr_valid_ms);
    }
    if !reply.linked_as.is_empty() {
        out["linkedAs"] = json!(reply.linked_as);
    }
    Ok(out)
}

/// `web.login.wait`: `{connected, message}`.
pub async fn wait(app: &App, timeout_ms: Option<u64>) -> Result<Value, RpcError> {
    let channel = qr_channel(app)?;
    let mut client = linker(app, &channel)?;
    let wait = Duration::from_millis(timeout_ms.unwrap_or(120_000).clamp(1_000, 600_000));
    let reply = tokio::time::timeout(
        wait + LEEWAY,
        client.login_wait(LoginWaitRequest {
            timeout_ms: wait.as_millis() as u64,
        }),
    )
    .await
    .map_err(|_| late(&channel))?
    .map_err(|s| failed(&channel, &s))?
    .into_inner();
    if reply.connected {
        app.health_changed();
    }
    Ok(json!({"connected": reply.connected, "message": reply.message}))
}

/// `channels.logout`: `{channel, accountId, cleared, loggedOut, message}`.
pub async fn logout(app: &App, channel: &str, account: Option<&str>) -> Result<Value, RpcError> {
    let channel = channel.trim().to_ascii_lowercase();
    if app.config.channel(&channel).is_none() {
        return Err(RpcError::invalid_request("invalid channels.logout channel"));
    }
    if !app.workers().can(&channel, capability::LOGIN_QR) {
        return Err(RpcError::invalid_request(format!(
            "channel {channel} does not support logout"
        )));
    }
    let mut client = linker(app, &channel)?;
    let mut answer =
        tokio::time::timeout(Duration::from_secs(30), client.logout(LogoutRequest {})).await;
    // A connection to the worker that broke since the last call fails the first call on
    // it while the channel reconnects; logging out is idempotent, so it is asked again.
    if let Ok(Err(s)) = &answer
        && is_connection_error(s)
    {
        tracing::warn!(%channel, error = %s.message(), "the worker connection broke; asking again");
        let mut client = linker(app, &channel)?;
        answer =
            tokio::time::timeout(Duration::from_secs(30), client.logout(LogoutRequest {})).await;
    }
    let reply = answer
        .map_err(|_| late(&channel))?
        .map_err(|s| failed(&channel, &s))?
        .into_inner();
    app.health_changed();
    Ok(json!({
        "channel": channel,
        "accountId": account.map(str::trim).filter(|a| !a.is_empty()).unwrap_or("default"),
        "cleared": reply.was_linked,
        "loggedOut": reply.was_linked,
        "message": reply.message,
    }))
}
