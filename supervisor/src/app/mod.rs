//! The supervisor's shared state: one value every connection and task holds an `Arc` to.
//!
//! Mutable pieces sit behind small locks never held across `.await`; the health snapshot
//! is rebuilt by one task ([`App::run_health_refresher`]) and served pre-encoded.

pub mod metrics;

pub mod health;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::frames::StateVersion;
use switchboard_schemas::hello::PresenceEntry;
use switchboard_schemas::methods::{HealthSnapshot, SessionSummary};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::VERSION;
use crate::agent::runs::Runs;
use crate::auth::device_pairing::Devices;
use crate::auth::rate_limit::AuthLimiter;
use crate::clock::now_ms;
use crate::config::DEFAULT_AGENT_ID;
use crate::config::GatewayConfig;
use crate::events::hub::{Broadcast, Hub};
use crate::events::presence::{self, Presence};
use crate::protocol::validate::Validators;
use crate::state::db::Db;
use crate::state::idempotency::Idempotency;
use crate::workers::Workers;

/// A health snapshot younger than this is served from the cache.
pub const HEALTH_CACHE_MS: u64 = 60_000;
/// Bursts of changes (e.g. a storm of connects) are coalesced into one refresh.
const HEALTH_DEBOUNCE: Duration = Duration::from_millis(200);
/// Presence changes within this long go out as one `presence` event.
pub const PRESENCE_COALESCE: Duration = Duration::from_millis(50);
/// The window grows with the audience: 50 µs per connection, up to [`PRESENCE_COALESCE`]
/// (a hundred clients hear of back-to-back changes within 5 ms, a thousand within 50).
const PRESENCE_COALESCE_PER_CONN: Duration = Duration::from_micros(50);

fn presence_window(connections: usize) -> Duration {
    PRESENCE_COALESCE_PER_CONN
        .saturating_mul(u32::try_from(connections).unwrap_or(u32::MAX))
        .min(PRESENCE_COALESCE)
}
/// System-event lines kept for `status`.
const SYSTEM_EVENTS_MAX: usize = 20;

/// The encoded health snapshot and when it was taken.
pub struct HealthCache {
    pub snapshot: Arc<HealthSnapshot>,
    pub encoded: Arc<str>,
    /// The snapshot minus its timestamps, to tell a real change from a refresh.
    fingerprint: String,
}

pub struct App {
    pub config: GatewayConfig,
    pub host: String,
    pub boot_id: String,
    pub started: Instant,
    /// The port actually bound (differs from the config when it asked for port 0).
    pub port: u16,
    pub hub: Hub,
    pub db: Db,
    pub validators: Validators,
    pub limiter: AuthLimiter,
    /// The v4 reference's control-plane write limit (`auth::request_budget`).
    pub write_budgets: crate::auth::request_budget::WriteBudgets,
    /// Stop everything (workers, timers).
    pub shutdown: CancellationToken,
    /// Stop accepting and serving clients (the first phase of stopping).
    pub draining: CancellationToken,
    pub idempotency: Idempotency,
    pub devices: Devices,
    pub nodes: crate::nodes::Nodes,
    pub node_pairing: crate::auth::node_pairing::NodePairing,
    pub runs: Runs,
    pub outbox: crate::channels::outbox_store::Outbox,
    pub chat_locks: crate::channels::policy::ChatLocks,
    pub metrics: Arc<metrics::Metrics>,
    /// Cron jobs' and the heartbeat's shared state (`crate::cron`).
    pub cron: crate::cron::Cron,
    /// The canvas folder and its capabilities (`crate::canvas`).
    pub canvas: crate::canvas::CanvasHost,
    workers: OnceLock<Arc<Workers>>,
    presence: Mutex<Presence>,
    presence_version: AtomicU64,
    /// The encoded list and the presence version it is of.
    presence_cache: Mutex<(u64, [Option<Arc<str>>; 2])>,
    presence_dirty: Notify,
    health_version: AtomicU64,
    health: Mutex<Arc<HealthCache>>,
    health_dirty: Notify,
    /// Set by `config.apply`/`config.patch`: the server restarts in place.
    restart_requested: Notify,
    system_events: Mutex<VecDeque<String>>,
}

impl App {
    /// Asks the server to restart in place (as SIGUSR1 does); kept until it looks.
    pub fn request_restart(&self) {
        self.restart_requested.notify_one();
    }

    /// Resolves when a restart was asked for.
    pub async fn restart_requested(&self) {
        self.restart_requested.notified().await;
    }

    #[allow(clippy::too_many_arguments)] // the parts are built by the start-up sequence, in order
    pub async fn new(
        config: GatewayConfig,
        port: u16,
        db: Db,
        devices: Devices,
        node_pairing: crate::auth::node_pairing::NodePairing,
        validators: Validators,
        metrics: Arc<metrics::Metrics>,
        shutdown: CancellationToken,
    ) -> Arc<App> {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        let presence = Presence::new(&host, VERSION);
        let max_queued = config.max_queued_bytes;
        let placeholder = HealthSnapshot {
            ok: true,
            ts: now_ms(),
            duration_ms: 0,
            channels: Default::default(),
            channel_order: vec![],
            channel_labels: Default::default(),
            heartbeat_seconds: 0,
            default_agent_id: DEFAULT_AGENT_ID.into(),
            agents: vec![],
            sessions: SessionSummary {
                path: db.path().display().to_string(),
                count: 0,
                recent: vec![],
            },
            gateway: None,
            workers: None,
        };
        let node_commands = config.node_commands.clone();
        let boot_id = uuid::Uuid::new_v4().to_string();
        let hub = Hub::new(max_queued).with_resume(config.resume, &boot_id);
        let canvas = crate::canvas::CanvasHost::open(&config.state_dir, config.canvas_enabled);
        let app = Arc::new(App {
            config,
            host,
            boot_id,
            started: Instant::now(),
            port,
            hub,
            db: db.clone(),
            validators,
            limiter: AuthLimiter::default(),
            write_budgets: Default::default(),
            shutdown,
            draining: CancellationToken::new(),
            idempotency: Idempotency::new(db.clone()),
            devices,
            nodes: crate::nodes::Nodes::new(node_commands),
            node_pairing,
            runs: Runs::default(),
            outbox: crate::channels::outbox_store::Outbox::new(db.clone()),
            chat_locks: Default::default(),
            metrics,
            cron: Default::default(),
            canvas,
            workers: OnceLock::new(),
            presence: Mutex::new(presence),
            presence_version: AtomicU64::new(1),
            presence_cache: Mutex::new((0, [None, None])),
            presence_dirty: Notify::new(),
            health_version: AtomicU64::new(1),
            health: Mutex::new(Arc::new(HealthCache {
                encoded: Arc::from("{}"),
                fingerprint: String::new(),
                snapshot: Arc::new(placeholder),
            })),
            health_dirty: Notify::new(),
            restart_requested: Notify::new(),
            system_events: Mutex::new(VecDeque::new()),
        });
        app.refresh_health(false).await;
        app
    }

    /// Sets the worker manager (once, right after start-up).
    pub fn attach_workers(&self, workers: Arc<Workers>) {
        let _ = self.workers.set(workers);
    }

    /// `(provider, model)` of the agent backend, from the agent worker's last health check.
    pub fn model_labels(&self) -> (Value, Value) {
        let agent = self.workers().health_of(crate::config::AGENT_WORKER).ok();
        let labels = agent.and_then(|a| a.labels).unwrap_or_default();
        let provider = labels
            .get("backend")
            .map(|b| Value::from(b.as_str()))
            .unwrap_or(Value::Null);
        let model = labels
            .get("model")
            .map(|m| Value::from(m.as_str()))
            .unwrap_or(Value::Null);
        (provider, model)
    }

    /// The worker manager (empty until attached).
    pub fn workers(&self) -> Arc<Workers> {
        self.workers.get().cloned().unwrap_or_else(Workers::none)
    }

    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn state_version(&self) -> StateVersion {
        StateVersion {
            presence: self.presence_version.load(Ordering::Relaxed),
            health: self.health_version.load(Ordering::Relaxed),
        }
    }

    // ---- presence -------------------------------------------------------------------

    pub fn presence_list(&self, version: ProtocolVersion) -> Vec<PresenceEntry> {
        let list = self
            .presence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .list();
        presence::for_version(&list, version)
    }

    /// The presence list's JSON for `version`, encoded once per presence version and
    /// shared by every `hello-ok` and `presence` event until the list changes.
    pub fn presence_encoded(&self, version: ProtocolVersion) -> Arc<str> {
        let current = self.presence_version.load(Ordering::Acquire);
        let v = usize::from(version == ProtocolVersion::V4);
        let mut cache = self
            .presence_cache
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.0 != current {
            *cache = (current, [None, None]);
        }
        // Each generation's list is built when a client of it first needs this version
        // of the list (a gateway with only v3 clients never builds the v4 one).
        let list = cache.1[v].get_or_insert_with(|| {
            Arc::from(
                self.presence
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .encoded_for(version),
            )
        });
        Arc::clone(list)
    }

    /// Changes the presence list and bumps its version; every client hears of it in the
    /// next `presence` event, within [`PRESENCE_COALESCE`].
    pub fn update_presence(&self, change: impl FnOnce(&mut Presence)) {
        {
            let mut p = self.presence.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut p);
            self.presence_version.fetch_add(1, Ordering::AcqRel);
        }
        self.presence_dirty.notify_one();
    }

    /// Sends `presence` events: a change is sent at once, then changes within the next
    /// window ([`presence_window`], at most [`PRESENCE_COALESCE`]) go out together when it
    /// ends, carrying the list as it is
    /// then. A lone change costs no delay; a storm of joins and leaves costs one event per
    /// window, each encoded once, instead of one full list per change per client (a
    /// client only ever needed the newest list; the events are drop-if-slow in the
    /// reference too).
    pub async fn run_presence_broadcaster(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.presence_dirty.notified() => {}
            }
            self.broadcast_presence();
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(presence_window(self.hub.connections())) => {}
            }
        }
    }

    fn broadcast_presence(&self) {
        {
            let sv = self.state_version();
            let list = |v| self.presence_encoded(v);
            let b = Broadcast::wrapped_per_version(
                "presence",
                ("{\"presence\":", "}"),
                [&list(ProtocolVersion::V3), &list(ProtocolVersion::V4)],
                Some(sv),
                true,
            )
            .of_presence_version(sv.presence);
            self.hub.broadcast(&b);
        }
    }

    /// Closes every live connection of a device in `role` (its token was revoked).
    pub fn disconnect_device(&self, device_id: &str, role: &str, reason: &str) -> usize {
        let mut n = 0;
        for conn in self.hub.snapshot() {
            if conn.device_id.as_deref() == Some(device_id) && conn.grant.role.as_str() == role {
                conn.close(1008, reason);
                n += 1;
            }
        }
        n
    }

    // ---- system events --------------------------------------------------------------

    pub fn push_system_event(&self, text: &str) {
        let mut q = self.system_events.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(text.to_owned());
        while q.len() > SYSTEM_EVENTS_MAX {
            q.pop_front();
        }
    }

    pub(crate) fn system_events(&self) -> Vec<String> {
        self.system_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Sends `tick {ts}` to everyone at the policy interval.
    pub async fn run_ticker(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.config.tick_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = every.tick() => {
                    let b = Broadcast::new("tick", &serde_json::json!({ "ts": now_ms() }), None, true);
                    self.hub.broadcast(&b);
                }
            }
        }
    }
}
