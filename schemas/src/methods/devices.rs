//! Device pairing and tokens: `device.pair.*`, `device.token.*`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `device.pair.approve` / `device.pair.reject` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PairingRequestParams {
    #[schemars(length(min = 1))]
    pub request_id: String,
}

/// `device.token.rotate` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceTokenRotateParams {
    #[schemars(length(min = 1))]
    pub device_id: String,
    #[schemars(length(min = 1))]
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

/// `device.token.revoke` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeviceTokenRevokeParams {
    #[schemars(length(min = 1))]
    pub device_id: String,
    #[schemars(length(min = 1))]
    pub role: String,
}
