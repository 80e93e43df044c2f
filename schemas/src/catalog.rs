//! Every schema of the client-facing protocol, generated from the Rust types.
//!
//! A version-specific schema is the superset type's schema narrowed by a small, named
//! transform (`narrow_*`), so v3 and v4 come from the same Rust type.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::ProtocolVersion::{self, V3, V4};
use crate::connect::{self, ConnectParams};
use crate::frames::{ErrorShape, EventFrame, RequestFrame, ResponseFrame};
use crate::hello::{self, HelloOk, PresenceEntry, PresenceEvent};
use crate::methods::{
    AgentEvent, AgentParams, AgentWaitParams, ChannelsLogoutParams, ChannelsStatusParams,
    ChatAbortParams, ChatAbortResult, ChatHistoryParams, ChatSendParams, ChatStartupParams,
    ClosedNoParams, CronAddParams, CronJobRef, CronListParams, CronRunParams, CronRunsParams,
    CronScratchSetParams, CronUpdateParams, DeviceTokenRevokeParams, DeviceTokenRotateParams,
    HealthParams, HealthSnapshot, LogsTailParams, LogsTailResult, ModelsListParams, NoParams,
    NodeDescribeParams, NodeEventParams, NodeEventResult, NodeInvokeParams,
    NodeInvokeProgressParams, NodeInvokeResultParams, NodePairRequestParams, NodePairVerifyParams,
    NodePluginToolsUpdateParams, NodeRenameParams, NodeSkillsUpdateParams, OkResult,
    PairingCodeParams, PairingListParams, PairingRequestParams, PairingRevokeParams,
    PluginSurfaceRefreshParams, SendParams, SendResult, SessionsListParams, SetHeartbeatsParams,
    ShutdownEvent, StatusSummary, SystemEventParams, TickEvent, WakeParams, WebLoginStartParams,
    WebLoginWaitParams, WorkerControlParams, WorkerControlResult, WorkersList,
};

/// One schema: `name` is its path under `schemas/json/` without the `.json`.
#[derive(Debug, Clone)]
pub struct SchemaEntry {
    pub name: String,
    pub schema: Value,
}

/// The file a schema is written to, relative to `schemas/json/`.
pub fn schema_file_name(name: &str) -> String {
    format!("{name}.json")
}

fn generate<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    strip_optional_nulls(&mut schema);
    schema
}

/// Optional fields are omitted on the wire, never `null`: drop the `null` that schemars
/// adds to every `Option` unless the property is required (then `null` is a real value).
fn strip_optional_nulls(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let required: Vec<String> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(props)) = obj.get_mut("properties") {
        for (name, prop) in props.iter_mut() {
            if !required.contains(name) {
                remove_null(prop);
            }
        }
    }
    for (_, child) in obj.iter_mut() {
        match child {
            Value::Object(map) => {
                for (_, v) in map.iter_mut() {
                    strip_optional_nulls(v);
                }
                strip_optional_nulls(child);
            }
            Value::Array(items) => items.iter_mut().for_each(strip_optional_nulls),
            _ => {}
        }
    }
}

fn remove_null(prop: &mut Value) {
    let Some(obj) = prop.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types[0].clone();
            obj.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(branches)) = obj.get("anyOf").cloned() {
        let kept: Vec<Value> = branches
            .into_iter()
            .filter(|b| b.get("type") != Some(&json!("null")))
            .collect();
        if kept.len() == 1 {
            obj.remove("anyOf");
            if let Value::Object(inner) = &kept[0] {
                for (k, v) in inner {
                    obj.insert(k.clone(), v.clone());
                }
            }
        } else {
            obj.insert("anyOf".into(), Value::Array(kept));
        }
    }
}

/// The sub-schema at `path` (a list of property names).
fn at<'a>(schema: &'a mut Value, path: &[&str]) -> &'a mut Value {
    path.iter()
        .fold(schema, |s, key| &mut s["properties"][*key])
}

fn remove_props(schema: &mut Value, names: &[&str]) {
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        for n in names {
            props.shift_remove(*n);
        }
    }
    if let Some(Value::Array(req)) = schema.get_mut("required") {
        req.retain(|r| !names.iter().any(|n| r == n));
    }
}

fn require(schema: &mut Value, name: &str) {
    if let Some(Value::Array(req)) = schema.get_mut("required") {
        if !req.iter().any(|r| r == name) {
            req.push(json!(name));
        }
    } else if let Some(obj) = schema.as_object_mut() {
        obj.insert("required".into(), json!([name]));
    }
}

fn set_enum(schema: &mut Value, values: &[&str]) {
    *schema = json!({ "type": "string", "enum": values });
}

fn narrow_request_frame(version: ProtocolVersion) -> Value {
    let mut s = generate::<RequestFrame>();
    if version == V3 {
        remove_props(&mut s, &["traceparent", "expectedProfileId"]);
    }
    s
}

/// `connect` params for one version: its client ids and modes, its fields, and on v4 a
/// required `device.nonce`.
pub(crate) fn narrow_connect_params(version: ProtocolVersion) -> Value {
    let mut s = generate::<ConnectParams>();
    set_enum(at(&mut s, &["client", "id"]), connect::client_ids(version));
    set_enum(
        at(&mut s, &["client", "mode"]),
        connect::client_modes(version),
    );
    match version {
        V3 => {
            remove_props(&mut s, connect::V4_ONLY_FIELDS);
            remove_props(at(&mut s, &["client"]), connect::V4_ONLY_CLIENT_FIELDS);
            remove_props(at(&mut s, &["auth"]), connect::V4_ONLY_AUTH_FIELDS);
        }
        V4 => require(at(&mut s, &["device"]), "nonce"),
    }
    s
}

fn narrow_presence_entry(schema: &mut Value, version: ProtocolVersion) {
    if version == V3 {
        remove_props(schema, hello::V4_ONLY_PRESENCE_FIELDS);
    }
}

fn narrow_hello_ok(version: ProtocolVersion) -> Value {
    let mut s = generate::<HelloOk>();
    narrow_presence_entry(&mut at(&mut s, &["snapshot", "presence"])["items"], version);
    match version {
        V3 => {
            remove_props(at(&mut s, &["server"]), &["buildId", "bootId"]);
            remove_props(at(&mut s, &["features"]), &["capabilities"]);
            remove_props(at(&mut s, &["snapshot"]), &["authMode"]);
            remove_props(at(&mut s, &["policy"]), &["attachments"]);
            remove_props(at(&mut s, &["auth"]), &["method"]);
            remove_props(&mut s, &["pluginSurfaceUrls"]);
            // v3 sends `auth` only with a device token, and then the token is required.
            require(at(&mut s, &["auth"]), "deviceToken");
        }
        V4 => {
            remove_props(&mut s, &["canvasHostUrl"]);
            remove_props(at(&mut s, &["server"]), &["commit", "host"]);
            require(&mut s, "auth");
        }
    }
    s
}

fn presence_list(version: ProtocolVersion) -> Value {
    let mut s = generate::<Vec<PresenceEntry>>();
    narrow_presence_entry(&mut s["items"], version);
    s
}

fn presence_event(version: ProtocolVersion) -> Value {
    let mut s = generate::<PresenceEvent>();
    narrow_presence_entry(&mut at(&mut s, &["presence"])["items"], version);
    s
}

fn entry(name: impl Into<String>, schema: Value) -> SchemaEntry {
    SchemaEntry {
        name: name.into(),
        schema,
    }
}

/// Every schema, in a stable order.
pub fn catalog() -> Vec<SchemaEntry> {
    let mut out = vec![
        entry("frames/response", generate::<ResponseFrame>()),
        entry("frames/event", generate::<EventFrame>()),
        entry("frames/error-shape", generate::<ErrorShape>()),
        entry("params/health", generate::<HealthParams>()),
        entry("params/status", generate::<NoParams>()),
        entry("params/system-presence", generate::<NoParams>()),
        entry("params/last-heartbeat", generate::<NoParams>()),
        entry("params/system-event", generate::<SystemEventParams>()),
        entry("results/health", generate::<HealthSnapshot>()),
        entry("results/status", generate::<StatusSummary>()),
        entry("results/system-event", generate::<OkResult>()),
        entry(
            "results/last-heartbeat",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": "LastHeartbeat",
                "description": "The last agent heartbeat record, or null when none ran yet.",
                "type": ["object", "null"]
            }),
        ),
        entry("params/workers.list", generate::<NoParams>()),
        entry("params/workers.control", generate::<WorkerControlParams>()),
        entry("results/workers.list", generate::<WorkersList>()),
        entry("results/workers.control", generate::<WorkerControlResult>()),
        entry("params/agent", generate::<AgentParams>()),
        entry("params/agent.wait", generate::<AgentWaitParams>()),
        entry("params/chat.abort", generate::<ChatAbortParams>()),
        entry("results/chat.abort", generate::<ChatAbortResult>()),
        entry("events/agent", generate::<AgentEvent>()),
        entry("params/sessions.list", generate::<SessionsListParams>()),
        entry("params/logs.tail", generate::<LogsTailParams>()),
        entry("params/send", generate::<SendParams>()),
        entry("params/web.login.start", generate::<WebLoginStartParams>()),
        entry("params/web.login.wait", generate::<WebLoginWaitParams>()),
        entry("params/channels.logout", generate::<ChannelsLogoutParams>()),
        entry("results/send", generate::<SendResult>()),
        entry("params/pairing.list", generate::<PairingListParams>()),
        entry("params/pairing.code", generate::<PairingCodeParams>()),
        entry("params/pairing.revoke", generate::<PairingRevokeParams>()),
        entry("results/logs.tail", generate::<LogsTailResult>()),
        entry("params/chat.history", generate::<ChatHistoryParams>()),
        entry("params/chat.send", generate::<ChatSendParams>()),
        entry("params/channels.status", generate::<ChannelsStatusParams>()),
        entry("params/models.list", generate::<ModelsListParams>()),
        entry("params/chat.startup", generate::<ChatStartupParams>()),
        // The Control UIs' methods whose params Switchboard does not act on (features it
        // does not offer, or lists that take no filter here): any object.
        entry("params/open", generate::<NoParams>()),
        entry("params/cron.list", generate::<CronListParams>()),
        entry("params/cron.job", generate::<CronJobRef>()),
        entry("params/cron.add", generate::<CronAddParams>()),
        entry("params/cron.update", generate::<CronUpdateParams>()),
        entry("params/cron.run", generate::<CronRunParams>()),
        entry("params/cron.runs", generate::<CronRunsParams>()),
        entry(
            "params/cron.scratch.set",
            generate::<CronScratchSetParams>(),
        ),
        entry("params/set-heartbeats", generate::<SetHeartbeatsParams>()),
        entry("params/wake", generate::<WakeParams>()),
        entry("params/device.pair.list", generate::<ClosedNoParams>()),
        entry("params/node.list", generate::<ClosedNoParams>()),
        entry("params/skills.bins", generate::<ClosedNoParams>()),
        entry(
            "params/node.pair.request",
            generate::<NodePairRequestParams>(),
        ),
        entry(
            "params/node.pair.verify",
            generate::<NodePairVerifyParams>(),
        ),
        entry("params/node.rename", generate::<NodeRenameParams>()),
        entry("params/node.describe", generate::<NodeDescribeParams>()),
        entry("params/node.invoke", generate::<NodeInvokeParams>()),
        entry(
            "params/node.invoke.result",
            generate::<NodeInvokeResultParams>(),
        ),
        entry("params/node.event", generate::<NodeEventParams>()),
        entry("results/node.event", generate::<NodeEventResult>()),
        entry(
            "params/node.skills.update",
            generate::<NodeSkillsUpdateParams>(),
        ),
        entry(
            "params/plugin.surface.refresh",
            generate::<PluginSurfaceRefreshParams>(),
        ),
        entry(
            "params/node.pluginTools.update",
            generate::<NodePluginToolsUpdateParams>(),
        ),
        entry(
            "params/node.invoke.progress",
            generate::<NodeInvokeProgressParams>(),
        ),
        // Parsed by the handler, as the reference does (its errors are the reference's).
        entry("params/node.runnerInventory.update", generate::<NoParams>()),
        entry(
            "params/device.pair.request-id",
            generate::<PairingRequestParams>(),
        ),
        entry(
            "params/device.token.rotate",
            generate::<DeviceTokenRotateParams>(),
        ),
        entry(
            "params/device.token.revoke",
            generate::<DeviceTokenRevokeParams>(),
        ),
        entry("events/tick", generate::<TickEvent>()),
        entry("events/shutdown", generate::<ShutdownEvent>()),
        entry("events/health", generate::<HealthSnapshot>()),
    ];
    for v in ProtocolVersion::ALL {
        let tag = v.tag();
        out.push(entry(
            format!("frames/request.{tag}"),
            narrow_request_frame(v),
        ));
        out.push(entry(
            format!("connect-params.{tag}"),
            narrow_connect_params(v),
        ));
        out.push(entry(format!("hello-ok.{tag}"), narrow_hello_ok(v)));
        out.push(entry(
            format!("results/system-presence.{tag}"),
            presence_list(v),
        ));
        out.push(entry(format!("events/presence.{tag}"), presence_event(v)));
    }
    out
}
