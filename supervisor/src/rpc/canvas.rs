//! `plugin.surface.refresh` (operators) and `node.pluginSurface.refresh` (nodes): one
//! handler, as the reference's; the role check is the table's.

use serde_json::json;
use switchboard_schemas::methods::PluginSurfaceRefreshParams;

use super::{Call, Reply};
use crate::protocol::error::RpcError;

/// `{surface, observedUrl?}` → `{surface, pluginSurfaceUrls: {canvas}, expiresAtMs}`: a
/// fresh capability (the old one is revoked at once). A caller whose `observedUrl` is
/// no longer current while the current one is valid gets the current URL unchanged,
/// without `expiresAtMs`.
pub async fn refresh(c: Call) -> Result<Reply, RpcError> {
    let p: PluginSurfaceRefreshParams = c.parse()?;
    let surface = p.surface.as_deref().map(str::trim).unwrap_or_default();
    if surface.is_empty() {
        return Err(RpcError::invalid_request("surface required"));
    }
    let unavailable = || RpcError::unavailable(format!("{surface} plugin surface unavailable"));
    if surface != "canvas" || c.app.canvas.root().is_none() {
        return Err(unavailable());
    }
    let conn_id = c.conn.conn_id.as_str();
    let (current, origin, valid) = c.app.canvas.caps.current(conn_id).ok_or_else(unavailable)?;
    if let Some(observed) = p.observed_url.as_deref()
        && observed != current
        && valid
    {
        return Ok(Reply::Json(
            json!({"surface": surface, "pluginSurfaceUrls": {"canvas": current}}),
        ));
    }
    let (url, expires) = c.app.canvas.caps.issue(conn_id, &origin, true);
    Ok(Reply::Json(json!({
        "surface": surface,
        "pluginSurfaceUrls": {"canvas": url},
        "expiresAtMs": expires,
    })))
}
