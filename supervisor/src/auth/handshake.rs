//! The `connect` handshake as one decision: the first client frame in, accepted session
//! or the exact refusal (reply frame and close code) out. The negotiated version is
//! decided first and every later rule reads it.
//!
//! Order of checks (both references agree): frame shape → method → schema of the
//! negotiated (or, without a common version, the newest) generation → protocol → role →
//! lockout → device identity required → device proof → shared secret → pairing → scopes.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_schemas::ProtocolVersion::{self, V3, V4};
use switchboard_schemas::connect::ConnectParams;
use switchboard_schemas::frames::ErrorCode;

use crate::auth::access::{self, Grant, Role};
use crate::auth::device_identity::{self, PayloadVersion, SignedFields};
use crate::auth::device_pairing::{Claim, Devices, PairStatus, TokenInfo};
use crate::auth::rate_limit::{AuthLimiter, Gate};
use crate::config::AuthConfig;
use crate::protocol::error::RpcError;
use crate::protocol::frame;
use crate::protocol::truncate_close_reason;
use crate::protocol::validate::{Report, Validators};

/// The peer as the handshake sees it.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub ip: IpAddr,
    /// Loopback, and not behind a proxy that forwarded someone else's address.
    pub local: bool,
}

pub struct HandshakeCtx<'a> {
    pub validators: &'a Validators,
    pub devices: &'a Devices,
    pub auth: &'a AuthConfig,
    pub limiter: &'a AuthLimiter,
    pub nonce: &'a str,
    pub peer: Peer,
    pub now_ms: u64,
}

/// A connection that may proceed to `hello-ok`.
#[derive(Debug)]
pub struct Accepted {
    pub request_id: String,
    pub version: ProtocolVersion,
    pub params: ConnectParams,
    pub grant: Grant,
    /// `token`, `password`, `none` (v4's `hello-ok.auth.method`).
    pub auth_method: &'static str,
    /// The verified device id, when the client proved one.
    pub device_id: Option<String>,
    /// The device's token for `hello-ok.auth`, when it has a device.
    pub device_token: Option<(String, TokenInfo)>,
    /// Events to broadcast (pairing resolved).
    pub events: Vec<(String, Value)>,
}

/// A refused handshake: what to send, then how to close.
#[derive(Debug)]
pub struct Rejected {
    pub reply: Option<String>,
    /// The error code of the reply, if there is one.
    pub code: Option<ErrorCode>,
    pub close_code: u16,
    pub close_reason: String,
    /// Wait this long before answering (failed authentication back-off).
    pub delay: Duration,
    /// Events to broadcast (a new pairing request).
    pub events: Vec<(String, Value)>,
}

impl Rejected {
    fn silent(code: u16, reason: &str) -> Rejected {
        Rejected {
            reply: None,
            code: None,
            close_code: code,
            close_reason: reason.to_owned(),
            delay: Duration::ZERO,
            events: Vec::new(),
        }
    }

    fn answered(id: &str, error: RpcError, code: u16) -> Rejected {
        let reason = truncate_close_reason(&error.message).to_owned();
        Rejected {
            reply: Some(frame::err(id, &error)),
            code: Some(error.code),
            close_code: code,
            close_reason: reason,
            delay: Duration::ZERO,
            events: Vec::new(),
        }
    }
}

fn store_failure(id: &str, why: String) -> Rejected {
    tracing::error!(error = %why, "device store failed during a handshake");
    Rejected::answered(
        id,
        RpcError::unavailable("the gateway's device store is unavailable; retry later"),
        1011,
    )
}

fn int_field(params: &Value, name: &str) -> Option<u64> {
    params.get(name).and_then(Value::as_u64)
}

fn v4_details(version: ProtocolVersion, error: RpcError, details: Value) -> RpcError {
    match version {
        V3 => error,
        V4 => error.with_details(details),
    }
}

pub async fn decide(ctx: &HandshakeCtx<'_>, text: &str) -> Result<Accepted, Rejected> {
    let Ok(parsed) = serde_json::from_str::<Value>(text) else {
        return Err(Rejected::silent(1000, ""));
    };
    // Before the version is known the newest frame schema applies (it is the superset).
    if ctx
        .validators
        .check("frames/request.v4", V4, Report::All, &parsed)
        .is_err()
    {
        return Err(Rejected::silent(1008, "invalid request frame"));
    }
    let id = parsed["id"].as_str().unwrap_or("invalid").to_owned();
    if parsed["method"] != "connect" {
        let e = RpcError::invalid_request("invalid handshake: first request must be connect");
        return Err(Rejected::answered(&id, e, 1008));
    }
    let raw_params = parsed.get("params").cloned().unwrap_or(Value::Null);
    let negotiated = match (
        int_field(&raw_params, "minProtocol"),
        int_field(&raw_params, "maxProtocol"),
    ) {
        (Some(min), Some(max)) => ProtocolVersion::negotiate(min, max),
        _ => None,
    };
    let schema_version = negotiated.unwrap_or(ProtocolVersion::LATEST);
    let schema = format!("connect-params.{}", schema_version.tag());
    if let Err(msg) = ctx
        .validators
        .check(&schema, schema_version, Report::All, &raw_params)
    {
        let e = RpcError::invalid_request(format!("invalid connect params: {msg}"));
        return Err(Rejected::answered(&id, e, 1008));
    }
    let params: ConnectParams = match serde_json::from_value(raw_params) {
        Ok(p) => p,
        Err(e) => {
            let e = RpcError::invalid_request(format!("invalid connect params: {e}"));
            return Err(Rejected::answered(&id, e, 1008));
        }
    };
    if params.client.mode == "worker" {
        // Only the gateway's own workers may claim this identity, and never over this socket.
        return Err(Rejected::silent(1008, "invalid-handshake"));
    }
    let role_raw = params.role.as_deref().unwrap_or("operator");
    let version = match negotiated {
        // A v3 node must say so with `mode:"node"`; other v3 roles are plain v3 clients.
        Some(V3) if role_raw == "node" && params.client.mode != "node" => None,
        other => other,
    };
    let Some(version) = version else {
        let e = RpcError::invalid_request("protocol mismatch").with_details(json!({
            "code": "PROTOCOL_MISMATCH",
            "clientMinProtocol": params.min_protocol,
            "clientMaxProtocol": params.max_protocol,
            "expectedProtocol": ProtocolVersion::LATEST.number(),
            "minimumProbeProtocol": 3,
        }));
        return Err(Rejected::answered(&id, e, 1002));
    };
    let Some(role) = Role::parse(role_raw) else {
        return Err(Rejected::answered(
            &id,
            RpcError::invalid_request("invalid role"),
            1008,
        ));
    };
    if let Gate::Locked { retry_after } = ctx.limiter.gate(ctx.peer.ip) {
        let mut e = RpcError::invalid_request(
            "unauthorized: too many failed authentication attempts (retry later)",
        );
        e.retryable = Some(true);
        e.retry_after_ms = Some(retry_after.as_millis() as u64);
        let e = v4_details(version, e, json!({"code": "AUTH_RATE_LIMITED"}));
        return Err(Rejected::answered(&id, e, 1008));
    }
    let auth = params.auth.clone().unwrap_or_default();
    let presented_token = auth.token.as_deref().filter(|t| !t.is_empty());
    let presented_password = auth.password.as_deref().filter(|t| !t.is_empty());

    let device_id = match &params.device {
        None => {
            if presented_token.is_none() && presented_password.is_none() {
                let e = RpcError::new(ErrorCode::NotPaired, "device identity required");
                let e = v4_details(version, e, json!({"code": "DEVICE_IDENTITY_REQUIRED"}));
                return Err(Rejected::answered(&id, e, 1008));
            }
            None
        }
        Some(_) => Some(
            verify_device(ctx, version, &params, role)
                .map_err(|e| Rejected::answered(&id, e, 1008))?,
        ),
    };

    let requested: Vec<String> = params
        .scopes
        .as_ref()
        .map(|s| s.iter().map(|x| x.0.clone()).collect())
        .unwrap_or_default();
    let scopes = match version {
        // v3: an operator that asks for nothing gets admin (also what a device pairs with).
        V3 if requested.is_empty() && role == Role::Operator => vec![access::ADMIN.to_owned()],
        _ => requested.clone(),
    };
    let auth_method = match check_shared_secret(
        ctx,
        version,
        &params,
        presented_token,
        presented_password,
    ) {
        Ok(m) => m,
        Err(shared_err) => {
            // A device may present its device token instead of the shared secret.
            let presented_device_token = match version {
                V3 => auth.token.as_deref(),
                V4 => auth.device_token.as_deref().or(auth.token.as_deref()),
            }
            .filter(|t| !t.is_empty());
            let verified = match (&device_id, presented_device_token) {
                (Some(dev), Some(tok)) => ctx.devices.verify_token(dev, role.as_str(), tok),
                _ => None,
            };
            match verified {
                Some(info) if scopes.iter().all(|s| info.scopes.contains(s)) => "device-token",
                Some(_) => {
                    let e = RpcError::invalid_request(
                        "unauthorized: device token scope mismatch (re-pair or approve scope upgrade)",
                    );
                    let e = v4_details(version, e, json!({"code": "AUTH_SCOPE_MISMATCH"}));
                    return Err(Rejected::answered(&id, e, 1008));
                }
                None => {
                    let e = if version == V4 && auth.device_token.is_some() && device_id.is_some() {
                        RpcError::invalid_request(
                            "unauthorized: device token mismatch (rotate/reissue device token)",
                        )
                        .with_details(json!({"code": "AUTH_DEVICE_TOKEN_MISMATCH"}))
                    } else {
                        shared_err
                    };
                    let mut r = Rejected::answered(&id, e, 1008);
                    r.delay = ctx.limiter.failed(ctx.peer.ip);
                    tracing::warn!(peer = %ctx.peer.ip, client = %params.client.id, "connect refused: bad credentials");
                    return Err(r);
                }
            }
        }
    };
    ctx.limiter.succeeded(ctx.peer.ip);

    let mut events = Vec::new();
    let mut device_token = None;
    if let (Some(dev_id), Some(dev)) = (&device_id, &params.device) {
        let public_key = device_identity::raw_public_key(&dev.public_key)
            .map(|k| device_identity::encode_b64url(&k))
            .unwrap_or_default();
        let claim = Claim {
            device_id: dev_id.clone(),
            public_key: public_key.clone(),
            display_name: params.client.display_name.clone(),
            platform: Some(params.client.platform.clone()),
            client_id: Some(params.client.id.clone()),
            client_mode: Some(params.client.mode.clone()),
            role: role.as_str().to_owned(),
            scopes: scopes.clone(),
            remote_ip: (!ctx.peer.local).then(|| ctx.peer.ip.to_string()),
        };
        let status = ctx
            .devices
            .pair_status(dev_id, &public_key, role.as_str(), &scopes);
        if status != PairStatus::Paired {
            if ctx.peer.local {
                let (request_id, _) = ctx
                    .devices
                    .approve_silently(&claim)
                    .await
                    .map_err(|e| store_failure(&id, e.to_string()))?;
                events.push((
                    "device.pair.resolved".to_owned(),
                    json!({"requestId": request_id, "deviceId": dev_id, "decision": "approved", "ts": crate::clock::now_ms()}),
                ));
            } else {
                match ctx.devices.request(&claim).await {
                    Ok((req, created)) => {
                        let mut rejected_events = Vec::new();
                        if created {
                            tracing::info!(device = %dev_id, peer = %ctx.peer.ip, "pairing requested");
                            rejected_events.push((
                                "device.pair.requested".to_owned(),
                                serde_json::to_value(&req).unwrap_or_default(),
                            ));
                        }
                        let (message, details) = match version {
                            V3 => ("pairing required", json!({"requestId": req.request_id})),
                            V4 => (
                                "pairing required: device is not approved yet",
                                json!({"code": "PAIRING_REQUIRED", "reason": status.reason(),
                                       "requestId": req.request_id,
                                       "remediationHint": "approve it with: switchboard devices approve <requestId>"}),
                            ),
                        };
                        let e = RpcError::new(ErrorCode::NotPaired, message).with_details(details);
                        let mut r = Rejected::answered(&id, e, 1008);
                        r.close_reason = "pairing required".into();
                        r.events = rejected_events;
                        return Err(r);
                    }
                    Err(e) => {
                        let e = v4_details(
                            version,
                            RpcError::new(ErrorCode::NotPaired, format!("pairing required: {e}")),
                            json!({"code": "PAIRING_REQUIRED"}),
                        );
                        return Err(Rejected::answered(&id, e, 1008));
                    }
                }
            }
        }
        let token = ctx
            .devices
            .ensure_token(dev_id, role.as_str(), &scopes)
            .await
            .map_err(|e| store_failure(&id, e.to_string()))?;
        device_token = Some(token);
    }

    let scopes = match version {
        V3 => scopes,
        V4 => {
            let trusted_token_client = matches!(
                (params.client.id.as_str(), params.client.mode.as_str()),
                ("cli", "cli") | ("gateway-client", "backend")
            ) && ctx.peer.local;
            if device_id.is_none() && !trusted_token_client {
                Vec::new()
            } else {
                requested
            }
        }
    };
    Ok(Accepted {
        request_id: id,
        version,
        grant: Grant { role, scopes },
        auth_method,
        device_id,
        device_token,
        events,
        params,
    })
}

/// The device proof: id, clock skew, nonce, signature, in the reference's order.
fn verify_device(
    ctx: &HandshakeCtx<'_>,
    version: ProtocolVersion,
    params: &ConnectParams,
    role: Role,
) -> Result<String, RpcError> {
    let Some(dev) = params.device.as_ref() else {
        return Err(RpcError::invalid_request("device identity required"));
    };
    let fail = |message: &str, code: &str, reason: &str| {
        v4_details(
            version,
            RpcError::invalid_request(message),
            json!({"code": code, "reason": reason}),
        )
    };
    let raw = device_identity::raw_public_key(&dev.public_key);
    let derived = raw.as_ref().map(device_identity::device_id);
    if derived.as_deref() != Some(dev.id.as_str()) {
        return Err(fail(
            "device identity mismatch",
            "DEVICE_AUTH_DEVICE_ID_MISMATCH",
            "device-id-mismatch",
        ));
    }
    let skew_ms: u64 = match version {
        V3 => 10 * 60 * 1000,
        V4 => 2 * 60 * 1000,
    };
    if ctx.now_ms.abs_diff(dev.signed_at) > skew_ms {
        return Err(fail(
            "device signature expired",
            "DEVICE_AUTH_SIGNATURE_EXPIRED",
            "device-signature-stale",
        ));
    }
    let nonce = dev
        .nonce
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let nonce_required = version == V4 || !ctx.peer.local;
    if nonce_required && nonce.is_none() {
        return Err(fail(
            "device nonce required",
            "DEVICE_AUTH_NONCE_REQUIRED",
            "device-nonce-missing",
        ));
    }
    if nonce.is_some_and(|n| n != ctx.nonce) {
        return Err(fail(
            "device nonce mismatch",
            "DEVICE_AUTH_NONCE_MISMATCH",
            "device-nonce-mismatch",
        ));
    }
    let auth = params.auth.clone().unwrap_or_default();
    let token = match version {
        V3 => auth.token.clone(),
        V4 => auth
            .token
            .clone()
            .or(auth.device_token.clone())
            .or(auth.bootstrap_token.clone()),
    }
    .unwrap_or_default();
    let scopes: Vec<String> = params
        .scopes
        .as_ref()
        .map(|s| s.iter().map(|x| x.0.clone()).collect())
        .unwrap_or_default();
    let fields = SignedFields {
        device_id: &dev.id,
        client_id: &params.client.id,
        client_mode: &params.client.mode,
        role: role.as_str(),
        scopes: &scopes,
        signed_at_ms: dev.signed_at,
        token: &token,
        nonce,
        platform: &params.client.platform,
        device_family: params.client.device_family.as_deref().unwrap_or(""),
    };
    let layouts: &[PayloadVersion] = match (version, nonce.is_some()) {
        (V3, true) => &[PayloadVersion::V2],
        (V3, false) => &[PayloadVersion::V1],
        (V4, _) => &[PayloadVersion::V3, PayloadVersion::V2],
    };
    let raw = raw.expect("derived id matched, so the key decoded");
    let ok = layouts.iter().any(|l| {
        device_identity::verify(&raw, &device_identity::payload(*l, &fields), &dev.signature)
    });
    if !ok {
        return Err(fail(
            "device signature invalid",
            "DEVICE_AUTH_SIGNATURE_INVALID",
            "device-signature",
        ));
    }
    Ok(dev.id.clone())
}

/// The gateway's shared token or password, compared in constant time.
fn check_shared_secret(
    ctx: &HandshakeCtx<'_>,
    version: ProtocolVersion,
    params: &ConnectParams,
    token: Option<&str>,
    password: Option<&str>,
) -> Result<&'static str, RpcError> {
    let has_device = params.device.is_some();
    let (kind, expected, presented) = match (&ctx.auth.token, &ctx.auth.password) {
        (Some(t), _) => ("token", t, token),
        (None, Some(p)) => ("password", p, password),
        (None, None) => return Ok(if token.is_some() { "token" } else { "none" }),
    };
    let reason = match presented {
        Some(p) if expected.matches(p) => return Ok(kind),
        Some(_) => "mismatch",
        None => "missing",
    };
    let is_cli = params.client.mode == "cli";
    let is_ui = params.client.mode == "webchat"
        || matches!(
            params.client.id.as_str(),
            "webchat-ui" | "clawdbot-control-ui" | "openclaw-control-ui"
        );
    let hint = match (version, kind) {
        (_, "token") if is_ui => {
            "open a tokenized dashboard URL or paste token in Control UI settings"
        }
        (_, _) if is_ui => "enter the password in Control UI settings",
        (V4, "token") if is_cli && ctx.peer.local => {
            "use this gateway's gateway.auth.token or pair the device"
        }
        (V4, _) if is_cli && ctx.peer.local => {
            "use this gateway's gateway.auth.password or pair the device"
        }
        (_, "token") if is_cli => "set gateway.remote.token to match gateway.auth.token",
        (_, _) if is_cli => "set gateway.remote.password to match gateway.auth.password",
        (_, "token") => "provide gateway auth token",
        _ => "provide gateway auth password",
    };
    let message = format!("unauthorized: gateway {kind} {reason} ({hint})");
    let upper = kind.to_ascii_uppercase();
    let details = match reason {
        "mismatch" => json!({
            "code": format!("AUTH_{upper}_MISMATCH"),
            "authReason": format!("{kind}_mismatch"),
            "canRetryWithDeviceToken": has_device,
            "recommendedNextStep": if has_device { "retry_with_device_token" } else { "update_auth_credentials" },
        }),
        _ => json!({
            "code": format!("AUTH_{upper}_MISSING"),
            "authReason": format!("{kind}_missing"),
            "canRetryWithDeviceToken": has_device,
            "recommendedNextStep": "update_auth_configuration",
        }),
    };
    Err(v4_details(
        version,
        RpcError::invalid_request(message),
        details,
    ))
}
