//! Requests: the method table and the one path every request frame takes.
//!
//! Each row of [`TABLE`] says everything about a method: its name, the access it needs,
//! the schema its params are validated against, the generations that advertise it, and
//! its handler. There is no second list: a method exists exactly when it has a row.
//! Handlers live in files by domain (`system`, `agent`, `chat`, `sessions`, `channels`,
//! `pairing`, `devices`, `nodes`, `workers`) and return a [`Reply`]; the response frame is
//! built by [`crate::protocol::frame`] alone.
//!
//! A request's way: [`request`] parses and validates the frame, looks up the row,
//! [`access::authorize`] checks it, validates the params, runs the handler, encodes the
//! reply and queues it on the connection.

pub mod agent;
pub mod canvas;
pub mod channels;
pub mod chat;
pub mod config;
pub mod control_ui;
pub mod cron;
pub mod devices;
pub mod nodes;
pub mod pairing;
pub mod sessions;
pub mod system;
pub mod workers;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use switchboard_schemas::ProtocolVersion::{self, V3, V4};

use crate::app::App;
use crate::auth::access::{self, Access, Grant};
use crate::auth::request_budget::{self, Admit, RequestBudget, RequestRate};
use crate::events::hub::ConnHandle;
use crate::protocol::error::RpcError;
use crate::protocol::frame;
use crate::protocol::validate::{Report, Validators};

/// Methods whose effect the database must record (a side effect, an acknowledgement, a
/// pairing). While the database cannot record ([`crate::state::db::Db::fault`]) they are
/// refused with `UNAVAILABLE` and the reason, before anything is done.
const RECORDING: &[&str] = &[
    "send",
    "agent",
    "chat.send",
    "device.pair.approve",
    "device.pair.reject",
    "device.token.rotate",
    "device.token.revoke",
    "node.pair.request",
    "node.pair.approve",
    "node.pair.reject",
    "node.rename",
    "pairing.approve",
    "pairing.reject",
    "pairing.revoke",
    "cron.add",
    "cron.update",
    "cron.remove",
    "cron.run",
];

/// The refusal of a recording method while the database cannot record.
pub fn storage_refusal(app: &App) -> Option<RpcError> {
    let fault = app.db.fault()?;
    let mut e = RpcError::unavailable(format!(
        "the gateway cannot record to its database {} ({}); nothing was done. \
         The operator must fix the storage (see `health`)",
        app.db.path().display(),
        fault.reason
    ));
    e.retryable = Some(!fault.sticky);
    Some(e)
}

/// v4: this many `unauthorized role` refusals in a row close the connection.
const UNAUTHORIZED_FLOOD: u32 = 11;

/// One request being handled: who asked, what, and with which (validated) params.
pub struct Call {
    pub app: Arc<App>,
    pub conn: Arc<ConnHandle>,
    /// The request's `id`, echoed in the response.
    pub id: String,
    pub method: &'static str,
    pub params: Value,
}

impl Call {
    pub fn version(&self) -> ProtocolVersion {
        self.conn.version
    }

    /// The typed params. The schema already passed, so a failure here is a bug worth
    /// reporting to the caller rather than a panic.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, RpcError> {
        T::deserialize(&self.params)
            .map_err(|e| RpcError::invalid_request(format!("invalid {} params: {e}", self.method)))
    }

    /// Runs slow work off the connection's read loop (its other requests are not held
    /// up); the answer is queued when it is ready.
    pub fn defer(
        self,
        work: impl std::future::Future<Output = Result<Value, RpcError>> + Send + 'static,
    ) -> Reply {
        tokio::spawn(async move {
            let text = match work.await {
                Ok(v) => frame::ok(&self.id, &v),
                Err(e) => {
                    self.app.metrics.error(e.code);
                    frame::err(&self.id, &e)
                }
            };
            self.app.hub.send_direct(&self.conn, text);
        });
        Reply::Deferred
    }
}

/// A handler's answer.
pub enum Reply {
    /// `ok:true` with this payload.
    Json(Value),
    /// `ok:true` with a payload already encoded (e.g. the cached health snapshot).
    Encoded(Arc<str>),
    /// A recorded answer replayed for a repeated idempotency key: a failure may carry a
    /// payload too.
    Replay {
        ok: bool,
        payload: Value,
        error: Option<Value>,
    },
    /// The handler answers later itself (through the hub).
    Deferred,
}

pub type Handler = fn(Call) -> BoxFuture<'static, Result<Reply, RpcError>>;

pub struct Method {
    pub name: &'static str,
    pub access: Access,
    /// Catalog name of the params schema.
    pub params: &'static str,
    /// Generations that know it, and whose `hello-ok.features.methods` lists it unless
    /// `hidden`.
    pub advertised: &'static [ProtocolVersion],
    /// Known to those generations but never listed (as the reference hides it).
    pub hidden: bool,
    pub handler: Handler,
}

const BOTH: &[ProtocolVersion] = &[V3, V4];
/// v4 answers `unknown method` for these.
const V3_ONLY: &[ProtocolVersion] = &[V3];
/// v3 answers `unknown method` for these.
const V4_ONLY: &[ProtocolVersion] = &[V4];
const NONE: &[ProtocolVersion] = &[];

/// One row: `m!(name, access, schema, versions, handler)`.
macro_rules! m {
    ($name:literal, $access:ident, $params:literal, $adv:expr, $handler:path) => {
        Method {
            name: $name,
            access: Access::$access,
            params: $params,
            advertised: $adv,
            hidden: false,
            handler: |c| Box::pin($handler(c)),
        }
    };
    (hidden $name:literal, $access:ident, $params:literal, $adv:expr, $handler:path) => {
        Method {
            hidden: true,
            ..m!($name, $access, $params, $adv, $handler)
        }
    };
}

#[rustfmt::skip]
pub const TABLE: &[Method] = &[
    m!("health", Health, "params/health", BOTH, system::health),
    m!("status", Read, "params/status", BOTH, system::status),
    m!("system-presence", Read, "params/system-presence", BOTH, system::presence),
    m!("last-heartbeat", Read, "params/last-heartbeat", BOTH, cron::last_heartbeat),
    m!("set-heartbeats", Admin, "params/set-heartbeats", BOTH, cron::set_heartbeats),
    m!("wake", Write, "params/wake", BOTH, cron::wake),
    m!("system-event", Admin, "params/system-event", BOTH, system::system_event),
    m!("sessions.list", Read, "params/sessions.list", BOTH, sessions::list),
    m!("logs.tail", Read, "params/logs.tail", BOTH, system::logs_tail),
    m!("chat.history", Read, "params/chat.history", BOTH, chat::history),
    m!("channels.status", Read, "params/channels.status", BOTH, channels::status),
    m!("models.list", Read, "params/models.list", BOTH, sessions::models),
    m!("device.pair.list", Pairing, "params/device.pair.list", BOTH, devices::list),
    m!("device.pair.approve", Pairing, "params/device.pair.request-id", BOTH, devices::approve),
    m!("device.pair.reject", Pairing, "params/device.pair.request-id", BOTH, devices::reject),
    m!("device.token.rotate", Pairing, "params/device.token.rotate", BOTH, devices::rotate),
    m!("device.token.revoke", Pairing, "params/device.token.revoke", BOTH, devices::revoke),
    m!("node.pair.request", Pairing, "params/node.pair.request", V3_ONLY, nodes::pair_request),
    m!("node.pair.list", Pairing, "params/device.pair.list", BOTH, nodes::pair_list),
    m!("node.pair.approve", Pairing, "params/device.pair.request-id", BOTH, nodes::pair_approve),
    m!("node.pair.reject", Pairing, "params/device.pair.request-id", BOTH, nodes::pair_reject),
    m!("node.pair.verify", Pairing, "params/node.pair.verify", V3_ONLY, nodes::pair_verify),
    m!("node.rename", Pairing, "params/node.rename", BOTH, nodes::rename),
    m!("node.list", Read, "params/node.list", BOTH, nodes::list),
    m!("node.describe", Read, "params/node.describe", BOTH, nodes::describe),
    m!("node.invoke", Write, "params/node.invoke", BOTH, nodes::invoke),
    m!("node.invoke.result", NodeOnly, "params/node.invoke.result", BOTH, nodes::invoke_result),
    m!("node.event", NodeOnly, "params/node.event", BOTH, nodes::event),
    m!("skills.bins", NodeOnly, "params/skills.bins", BOTH, nodes::skills_bins),
    m!("node.invoke.progress", NodeOnly, "params/node.invoke.progress", V4_ONLY, nodes::invoke_progress),
    m!("node.skills.update", NodeOnly, "params/node.skills.update", V4_ONLY, nodes::skills_update),
    m!("node.pluginTools.update", NodeOnly, "params/node.pluginTools.update", V4_ONLY, nodes::plugin_tools_update),
    // The reference does not advertise it either.
    m!(hidden "node.runnerInventory.update", NodeOnly, "params/node.runnerInventory.update", V4_ONLY, nodes::runner_inventory_update),
    m!("node.pluginSurface.refresh", NodeOnly, "params/plugin.surface.refresh", V4_ONLY, canvas::refresh),
    m!("plugin.surface.refresh", Read, "params/plugin.surface.refresh", V4_ONLY, canvas::refresh),
    m!("send", Write, "params/send", BOTH, channels::send),
    m!("web.login.start", Admin, "params/web.login.start", BOTH, channels::login_start),
    m!("web.login.wait", Admin, "params/web.login.wait", BOTH, channels::login_wait),
    m!("channels.logout", Admin, "params/channels.logout", BOTH, channels::logout),
    m!("pairing.list", Pairing, "params/pairing.list", BOTH, pairing::list),
    m!("pairing.approve", Pairing, "params/pairing.code", BOTH, pairing::approve),
    m!("pairing.reject", Pairing, "params/pairing.code", BOTH, pairing::reject),
    m!("pairing.revoke", Pairing, "params/pairing.revoke", BOTH, pairing::revoke),
    m!("agent", Write, "params/agent", BOTH, agent::agent),
    m!("agent.wait", Write, "params/agent.wait", BOTH, agent::wait),
    m!("chat.send", Write, "params/chat.send", BOTH, chat::send),
    m!("chat.abort", Write, "params/chat.abort", BOTH, chat::abort),
    m!("workers.list", Admin, "params/workers.list", BOTH, workers::list),
    m!("workers.restart", Admin, "params/workers.control", BOTH, workers::restart),
    m!("workers.stop", Admin, "params/workers.control", BOTH, workers::stop),
    m!("workers.start", Admin, "params/workers.control", BOTH, workers::start),
    // The Control UIs' methods (`control_ui`): real where Switchboard has the data, the
    // reference's empty shape for features it does not offer (README: "not offered").
    m!("chat.startup", Read, "params/chat.startup", V4_ONLY, control_ui::chat_startup),
    m!("chat.metadata", Read, "params/open", V4_ONLY, control_ui::chat_metadata),
    m!("agents.list", Read, "params/open", BOTH, control_ui::agents_list),
    m!("agent.identity.get", Read, "params/open", BOTH, control_ui::agent_identity),
    m!("sessions.describe", Read, "params/open", V4_ONLY, control_ui::sessions_describe),
    m!("sessions.subscribe", Read, "params/sessions.list", V4_ONLY, control_ui::sessions_subscribe),
    m!("sessions.messages.subscribe", Read, "params/open", V4_ONLY, control_ui::sessions_messages_subscribe),
    m!("sessions.messages.unsubscribe", Read, "params/open", V4_ONLY, control_ui::sessions_messages_unsubscribe),
    m!("sessions.observer.visibility", Read, "params/open", V4_ONLY, control_ui::observer_visibility),
    m!("sessions.branches.list", Read, "params/open", V4_ONLY, control_ui::no_branches),
    m!("sessions.companion.state", Read, "params/open", V4_ONLY, control_ui::no_companion),
    m!("sessions.usage", Read, "params/open", V4_ONLY, control_ui::sessions_usage),
    m!("usage.status", Read, "params/open", V4_ONLY, control_ui::usage_status),
    m!("models.authStatus", Read, "params/open", V4_ONLY, control_ui::models_auth_status),
    m!("config.get", Read, "params/open", BOTH, config::config_get),
    m!("config.schema", Read, "params/open", BOTH, config::config_schema),
    m!("config.set", Admin, "params/open", BOTH, config::config_set),
    m!("config.patch", Admin, "params/open", BOTH, config::config_patch),
    m!("config.apply", Admin, "params/open", BOTH, config::config_apply),
    m!("channels.pairing.list", Pairing, "params/open", V4_ONLY, control_ui::channels_pairing_list),
    m!("system.info", Read, "params/open", V4_ONLY, control_ui::system_info),
    m!("diagnostics.lanes", Read, "params/open", V4_ONLY, control_ui::diagnostics_lanes),
    m!("update.status", Admin, "params/open", V4_ONLY, control_ui::update_status),
    // Cron (`cron`): read methods are `operator.read`, changes `operator.admin`.
    m!("cron.list", Read, "params/cron.list", BOTH, cron::list),
    m!("cron.status", Read, "params/open", BOTH, cron::status),
    m!("cron.get", Read, "params/cron.job", V4_ONLY, cron::get),
    m!("cron.add", Admin, "params/cron.add", BOTH, cron::add),
    m!("cron.update", Admin, "params/cron.update", BOTH, cron::update),
    m!("cron.remove", Admin, "params/cron.job", BOTH, cron::remove),
    m!("cron.run", Admin, "params/cron.run", BOTH, cron::run),
    m!("cron.runs", Read, "params/cron.runs", BOTH, cron::runs),
    m!("cron.scratch.get", Admin, "params/cron.job", V4_ONLY, cron::scratch_get),
    m!("cron.scratch.set", Admin, "params/cron.scratch.set", V4_ONLY, cron::scratch_set),
    m!("exec.approvals.get", Admin, "params/open", BOTH, control_ui::exec_approvals_get),
    m!("exec.approval.list", Approvals, "params/open", V4_ONLY, control_ui::empty_array),
    m!("plugin.approval.list", Approvals, "params/open", V4_ONLY, control_ui::empty_array),
    m!("openclaw.approval.list", Approvals, "params/open", V4_ONLY, control_ui::empty_array),
    m!("approval.history", Approvals, "params/open", V4_ONLY, control_ui::no_approval_history),
    m!("question.list", Questions, "params/open", V4_ONLY, control_ui::no_questions),
    m!("tasks.list", Read, "params/open", V4_ONLY, control_ui::no_tasks),
    m!("progressCard.get", Read, "params/open", V4_ONLY, control_ui::no_progress_card),
    m!("talk.catalog", Read, "params/open", V4_ONLY, control_ui::talk_catalog),
    m!("plugins.list", Read, "params/open", V4_ONLY, control_ui::plugins_list),
    m!("environments.list", Read, "params/open", V4_ONLY, control_ui::no_environments),
    m!("skills.status", Read, "params/open", BOTH, control_ui::skills_status),
    m!("skills.library.list", Read, "params/open", V4_ONLY, control_ui::skills_library),
    m!("skills.search", Read, "params/open", V4_ONLY, control_ui::skills_search),
    m!("plugins.catalog.browse", Read, "params/open", V4_ONLY, control_ui::plugins_catalog),
    m!("artifacts.list", Read, "params/open", V4_ONLY, control_ui::no_artifacts),
    m!("themes.list", Read, "params/open", V4_ONLY, control_ui::themes_list),
    // A second `connect` after the handshake: known, never advertised.
    m!("connect", Admin, "params/status", NONE, system::second_connect),
];

/// Events Switchboard emits, as listed in `hello-ok.features.events`.
pub const EVENTS: &[&str] = &[
    "connect.challenge",
    "agent",
    "chat",
    "device.pair.requested",
    "device.pair.resolved",
    "node.invoke.request",
    "node.pair.requested",
    "node.pair.resolved",
    "presence",
    "tick",
    "shutdown",
    "health",
    "cron",
    "heartbeat",
];

/// The method as `version` knows it: a method advertised only to other generations is
/// unknown here (a method advertised to none, like a second `connect`, is known to all).
pub fn lookup(name: &str, version: ProtocolVersion) -> Option<&'static Method> {
    TABLE
        .iter()
        .find(|m| m.name == name)
        .filter(|m| m.advertised.is_empty() || m.advertised.contains(&version))
}

/// Every method name of the table, for the metrics registry's latency labels.
pub fn method_names() -> Vec<&'static str> {
    TABLE.iter().map(|m| m.name).collect()
}

/// The methods `hello-ok` lists for `version` (built once, shared by every handshake).
pub fn advertised(version: ProtocolVersion) -> Arc<Vec<String>> {
    static LISTS: OnceLock<[Arc<Vec<String>>; 2]> = OnceLock::new();
    let lists = LISTS.get_or_init(|| {
        [V3, V4].map(|v| {
            Arc::new(
                TABLE
                    .iter()
                    .filter(|m| m.advertised.contains(&v) && !m.hidden)
                    .map(|m| m.name.to_owned())
                    .collect(),
            )
        })
    });
    Arc::clone(&lists[usize::from(version == V4)])
}

/// Events only v4 clients are sent (and told of).
pub const V4_EVENTS: &[&str] = &["node.hostStats"];

/// The events `hello-ok` lists for `version` (built once).
pub fn events(version: ProtocolVersion) -> Arc<Vec<String>> {
    static LISTS: OnceLock<[Arc<Vec<String>>; 2]> = OnceLock::new();
    let lists = LISTS.get_or_init(|| {
        [V3, V4].map(|v| {
            let extra = if v == V4 { V4_EVENTS } else { &[] };
            Arc::new(EVENTS.iter().chain(extra).map(|s| s.to_string()).collect())
        })
    });
    Arc::clone(&lists[usize::from(version == V4)])
}

/// What a connection remembers between its requests.
pub struct Session {
    unauthorized_streak: u32,
    /// How fast this connection may make requests (`auth::request_budget`).
    budget: RequestBudget,
    /// Over its budget: the connection's next frame is not read before this.
    paused_until: Option<std::time::Instant>,
}

impl Session {
    pub fn new(rate: RequestRate) -> Session {
        Session {
            unauthorized_streak: 0,
            budget: RequestBudget::new(rate),
            paused_until: None,
        }
    }

    /// When the reader may take the connection's next frame, if not at once.
    pub fn take_pause(&mut self) -> Option<std::time::Instant> {
        self.paused_until.take()
    }
}

/// Only what answering a refused frame needs: its `id` (and `method`, for the message).
#[derive(serde::Deserialize)]
struct FrameHead<'a> {
    #[serde(borrow, default)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    method: Option<std::borrow::Cow<'a, str>>,
}

/// The answer to a request over its connection's budget: not dispatched.
fn over_budget(app: &App, conn: &ConnHandle, session: &mut Session, text: &str, wait: Duration) {
    let rate = session.budget.rate();
    session.paused_until = Some(std::time::Instant::now() + wait);
    let Ok(head) = serde_json::from_str::<FrameHead>(text) else {
        return;
    };
    let Some(id) = head.id else {
        return;
    };
    let method = head.method.as_deref().unwrap_or("request");
    let ms = wait.as_millis().max(1) as u64;
    let mut e = RpcError::unavailable(format!(
        "rate limit exceeded for {method}: more than {} requests per second on this connection; retry after {ms} ms",
        rate.per_second
    ))
    .with_details(json!({
        "method": method,
        "limit": format!("{} per 1s, burst {}", rate.per_second, rate.burst),
        "scope": "connection",
    }));
    e.retryable = Some(true);
    e.retry_after_ms = Some(ms);
    app.metrics.error(e.code);
    app.metrics
        .rate_limited
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    app.hub.send_direct(conn, frame::err(&id, &e));
}

/// The v4 reference's control-plane write limit, in its words.
fn write_over_budget(method: &str, wait: Duration) -> RpcError {
    let ms = wait.as_millis() as u64;
    let mut e = RpcError::unavailable(format!(
        "rate limit exceeded for {method}; retry after {}s",
        ms.div_ceil(1000)
    ))
    .with_details(json!({
        "method": method,
        "limit": format!("{} per {}s", request_budget::WRITES_PER_WINDOW, request_budget::WRITE_WINDOW.as_secs()),
    }));
    e.retryable = Some(true);
    e.retry_after_ms = Some(ms);
    e
}

/// Frames larger than this are parsed and validated on the blocking pool, so one huge
/// frame never holds an async worker thread (and the other connections it serves).
pub const OFFLOAD_BYTES: usize = 64 * 1024;

/// What checking a frame came to.
pub enum Checked {
    /// Not JSON: ignored, as the references do.
    Ignored,
    /// Refused before any handler: the response, and whether it was an unauthorized role.
    Refused {
        frame: String,
        code: switchboard_schemas::frames::ErrorCode,
        method: String,
        unauthorized_role: bool,
    },
    /// Valid and authorized.
    Ready {
        id: String,
        method: &'static Method,
        params: Value,
    },
}

fn check(app: &App, conn: &ConnHandle, text: &str) -> Checked {
    check_frame(&app.validators, conn.version, &conn.grant, text, || {
        storage_refusal(app)
    })
}

/// Parse, frame schema, method lookup, authorization, params schema, in the references'
/// order. Linear in the frame's size, with a bounded error list. `storage` says whether
/// the database can record a side effect (asked only for recording methods).
///
/// Pure (no I/O): the `frame` fuzz target drives it directly.
pub fn check_frame(
    validators: &Validators,
    version: ProtocolVersion,
    grant: &Grant,
    text: &str,
    storage: impl FnOnce() -> Option<RpcError>,
) -> Checked {
    let Ok(parsed) = serde_json::from_str::<Value>(text) else {
        return Checked::Ignored;
    };
    let report = match version {
        V3 => Report::All,
        V4 => Report::First,
    };
    let schema = format!("frames/request.{}", version.tag());
    if let Err(msg) = validators.check(&schema, version, report, &parsed) {
        let e = RpcError::invalid_request(format!("invalid request frame: {msg}"));
        return Checked::Refused {
            frame: frame::err_for_frame(parsed.get("id"), &e),
            code: e.code,
            method: String::new(),
            unauthorized_role: false,
        };
    }
    let id = parsed["id"].as_str().unwrap_or_default().to_owned();
    let name = parsed["method"].as_str().unwrap_or_default().to_owned();
    let method = lookup(&name, version);
    let refused = |e: RpcError, unauthorized_role: bool| Checked::Refused {
        frame: frame::err(&id, &e),
        code: e.code,
        method: name.clone(),
        unauthorized_role,
    };
    if let Err(e) = access::authorize(version, grant, method.map(|s| s.access)) {
        let role = e.is_unauthorized_role();
        return refused(e, role);
    }
    let Some(method) = method else {
        return refused(
            RpcError::invalid_request(format!("unknown method: {name}")),
            false,
        );
    };
    if RECORDING.contains(&method.name)
        && let Some(e) = storage()
    {
        return refused(e, false);
    }
    // Absent or null params mean "none", as in the references.
    let params = match parsed.get("params") {
        None | Some(Value::Null) => json!({}),
        Some(p) => p.clone(),
    };
    if let Err(msg) = validators.check(method.params, version, Report::All, &params) {
        return refused(
            RpcError::invalid_request(format!("invalid {name} params: {msg}")),
            false,
        );
    }
    Checked::Ready { id, method, params }
}

/// One request frame, from text to the queued response.
pub async fn request(app: &Arc<App>, conn: &Arc<ConnHandle>, session: &mut Session, text: String) {
    let version = conn.version;
    let started = std::time::Instant::now();
    if let Admit::No { retry_after } = session.budget.admit(started) {
        over_budget(app, conn, session, &text, retry_after);
        return;
    }
    let checked = if text.len() > OFFLOAD_BYTES {
        let (a, c) = (Arc::clone(app), Arc::clone(conn));
        match tokio::task::spawn_blocking(move || check(&a, &c, &text)).await {
            Ok(checked) => checked,
            Err(e) => {
                tracing::error!(conn = %conn.conn_id, error = %e, "checking a frame failed");
                return;
            }
        }
    } else {
        check(app, conn, &text)
    };
    let (id, method, params) = match checked {
        Checked::Ignored => {
            tracing::debug!(conn = %conn.conn_id, "ignoring non-JSON frame");
            return;
        }
        Checked::Refused {
            frame,
            code,
            method,
            unauthorized_role,
        } => {
            app.metrics.error(code);
            app.hub.send_direct(conn, frame);
            if version == V4 && unauthorized_role {
                session.unauthorized_streak += 1;
                if session.unauthorized_streak >= UNAUTHORIZED_FLOOD {
                    conn.close_after_queued(1008, "repeated unauthorized calls");
                }
            } else {
                session.unauthorized_streak = 0;
            }
            if !method.is_empty() {
                app.metrics.request(&method, started.elapsed());
            }
            return;
        }
        Checked::Ready { id, method, params } => (id, method, params),
    };
    session.unauthorized_streak = 0;
    if request_budget::CONTROL_PLANE_WRITES.contains(&method.name)
        && let Some(wait) = app.write_budgets.admit(
            method.name,
            &conn
                .device_id
                .clone()
                .unwrap_or_else(|| conn.peer.ip().to_string()),
            started,
        )
    {
        let e = write_over_budget(method.name, wait);
        tracing::warn!(conn = %conn.conn_id, method = method.name, retry_after_ms = e.retry_after_ms, "control-plane write rate-limited");
        app.metrics.error(e.code);
        app.hub.send_direct(conn, frame::err(&id, &e));
        app.metrics.request(method.name, started.elapsed());
        return;
    }
    let call = Call {
        app: Arc::clone(app),
        conn: Arc::clone(conn),
        id: id.clone(),
        method: method.name,
        params,
    };
    let text = match (method.handler)(call).await {
        Ok(Reply::Json(v)) => frame::ok(&id, &v),
        Ok(Reply::Encoded(payload)) => frame::ok_encoded(&id, &payload),
        Ok(Reply::Replay { ok, payload, error }) => {
            frame::replayed(&id, ok, &payload, error.as_ref())
        }
        Ok(Reply::Deferred) => {
            app.metrics.request(method.name, started.elapsed());
            return;
        }
        Err(e) => {
            app.metrics.error(e.code);
            frame::err(&id, &e)
        }
    };
    app.hub.send_direct(conn, text);
    app.metrics.request(method.name, started.elapsed());
}

/// Serializes a typed result (our own types always serialize).
pub fn to_value<T: serde::Serialize>(v: &T) -> Value {
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

    #[test]
    fn method_names_are_unique() {
        let mut names: Vec<_> = TABLE.iter().map(|m| m.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a method has two rows");
    }
}
