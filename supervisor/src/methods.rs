//! The method table: every method Switchboard serves, the scope it needs, the schema its
//! params are validated against, and which protocol generations advertise it. The
//! connection loop consults this one table before any handler runs.

use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_schemas::ProtocolVersion::{self, V3, V4};
use switchboard_schemas::methods::SystemEventParams;

use crate::access::Access;
use crate::gateway::Gateway;
use crate::hub::ConnHandle;
use crate::protocol::error::RpcError;

pub struct MethodSpec {
    pub name: &'static str,
    pub access: Access,
    /// Catalog name of the params schema.
    pub params: &'static str,
    /// Generations whose `hello-ok.features.methods` lists it.
    pub advertised: &'static [ProtocolVersion],
}

const BOTH: &[ProtocolVersion] = &[V3, V4];
const NONE: &[ProtocolVersion] = &[];

pub const TABLE: &[MethodSpec] = &[
    MethodSpec {
        name: "health",
        access: Access::Health,
        params: "params/health",
        advertised: BOTH,
    },
    MethodSpec {
        name: "status",
        access: Access::Read,
        params: "params/status",
        advertised: BOTH,
    },
    MethodSpec {
        name: "system-presence",
        access: Access::Read,
        params: "params/system-presence",
        advertised: BOTH,
    },
    MethodSpec {
        name: "last-heartbeat",
        access: Access::Read,
        params: "params/last-heartbeat",
        advertised: BOTH,
    },
    MethodSpec {
        name: "system-event",
        access: Access::Admin,
        params: "params/system-event",
        advertised: BOTH,
    },
    // A second `connect` after the handshake: known, never advertised.
    MethodSpec {
        name: "connect",
        access: Access::Admin,
        params: "params/status",
        advertised: NONE,
    },
];

/// Events Switchboard emits, as listed in `hello-ok.features.events`.
pub const EVENTS: &[&str] = &[
    "connect.challenge",
    "presence",
    "tick",
    "shutdown",
    "health",
];

pub fn lookup(name: &str) -> Option<&'static MethodSpec> {
    TABLE.iter().find(|m| m.name == name)
}

pub fn advertised(version: ProtocolVersion) -> Vec<String> {
    TABLE
        .iter()
        .filter(|m| m.advertised.contains(&version))
        .map(|m| m.name.to_owned())
        .collect()
}

/// A handler's answer: a JSON value, or a payload already encoded.
pub enum Reply {
    Json(Value),
    Encoded(Arc<str>),
}

/// Runs the handler of an authorized, validated request.
pub async fn dispatch(
    gw: &Arc<Gateway>,
    conn: &Arc<ConnHandle>,
    method: &'static MethodSpec,
    params: Value,
) -> Result<Reply, RpcError> {
    match method.name {
        "health" => {
            let probe = params.get("probe").and_then(Value::as_bool) == Some(true);
            let cached = gw.health_cache();
            let fresh = crate::clock::now_ms().saturating_sub(cached.snapshot.ts)
                < crate::gateway::HEALTH_CACHE_MS;
            if !probe && fresh {
                return Ok(Reply::Encoded(Arc::clone(&cached.encoded)));
            }
            let cache = gw.refresh_health(false).await;
            Ok(Reply::Encoded(Arc::clone(&cache.encoded)))
        }
        "status" => Ok(Reply::Json(to_value(&gw.status().await))),
        "system-presence" => Ok(Reply::Json(to_value(&gw.presence_list(conn.version)))),
        "last-heartbeat" => Ok(Reply::Json(Value::Null)),
        "system-event" => {
            let p: SystemEventParams = serde_json::from_value(params).map_err(|e| {
                RpcError::invalid_request(format!("invalid system-event params: {e}"))
            })?;
            let text = p.text.as_deref().map(str::trim).unwrap_or("");
            if text.is_empty() {
                return Err(RpcError::invalid_request("text required"));
            }
            gw.push_system_event(text);
            gw.update_presence(|pr| pr.system_event(&p, text));
            Ok(Reply::Json(json!({ "ok": true })))
        }
        "connect" => Err(RpcError::invalid_request(
            "connect is only valid as the first request",
        )),
        other => Err(RpcError::invalid_request(format!(
            "unknown method: {other}"
        ))),
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_names_a_schema_that_exists() {
        let v = crate::protocol::validate::Validators::build().unwrap();
        for m in TABLE {
            assert!(
                v.has(m.params),
                "{} names missing schema {}",
                m.name,
                m.params
            );
        }
    }
}
