//! The supervisor's shared state: one value every connection and task holds an `Arc` to.
//!
//! Mutable pieces sit behind small locks never held across `.await`; the health snapshot
//! is rebuilt by one task ([`App::run_health_refresher`]) and served pre-encoded.

pub mod metrics;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::frames::StateVersion;
use switchboard_schemas::hello::PresenceEntry;
use switchboard_schemas::methods::{
    AgentHealth, AgentHeartbeat, AgentSessions, ConnectionCounts, GatewayHealth, HealthSnapshot,
    RecentSession, SessionModelDefaults, SessionSummary, StatusHeartbeat, StatusHeartbeatAgent,
    StatusSessions, StatusSummary,
};
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
    workers: OnceLock<Arc<Workers>>,
    presence: Mutex<Presence>,
    presence_version: AtomicU64,
    health_version: AtomicU64,
    health: Mutex<Arc<HealthCache>>,
    health_dirty: Notify,
    system_events: Mutex<VecDeque<String>>,
}

/// A channel's display name.
fn label(channel: &str) -> String {
    match channel {
        "telegram" => "Telegram".into(),
        "whatsapp" => "WhatsApp".into(),
        other => other.to_owned(),
    }
}

impl App {
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
        let app = Arc::new(App {
            config,
            host,
            boot_id: uuid::Uuid::new_v4().to_string(),
            started: Instant::now(),
            port,
            hub: Hub::default(),
            db: db.clone(),
            validators,
            limiter: AuthLimiter::default(),
            shutdown,
            draining: CancellationToken::new(),
            idempotency: Idempotency::new(db.clone()),
            devices,
            nodes: crate::nodes::Nodes::default(),
            node_pairing,
            runs: Runs::default(),
            outbox: crate::channels::outbox_store::Outbox::new(db.clone()),
            chat_locks: Default::default(),
            metrics,
            workers: OnceLock::new(),
            presence: Mutex::new(presence),
            presence_version: AtomicU64::new(1),
            health_version: AtomicU64::new(1),
            health: Mutex::new(Arc::new(HealthCache {
                encoded: Arc::from("{}"),
                fingerprint: String::new(),
                snapshot: Arc::new(placeholder),
            })),
            health_dirty: Notify::new(),
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

    /// Changes the presence list, bumps its version and tells every client.
    pub fn update_presence(&self, change: impl FnOnce(&mut Presence)) {
        let list = {
            let mut p = self.presence.lock().unwrap_or_else(|p| p.into_inner());
            change(&mut p);
            p.list()
        };
        self.presence_version.fetch_add(1, Ordering::Relaxed);
        let b = Broadcast::per_version(
            "presence",
            |v| serde_json::json!({ "presence": presence::for_version(&list, v) }),
            Some(self.state_version()),
            true,
        );
        self.hub.broadcast(&b);
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

    fn system_events(&self) -> Vec<String> {
        self.system_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    // ---- health ---------------------------------------------------------------------

    pub fn health_cache(&self) -> Arc<HealthCache> {
        Arc::clone(&self.health.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Asks the refresher to rebuild health soon (coalesced).
    pub fn health_changed(&self) {
        self.health_dirty.notify_one();
    }

    fn gateway_health(&self) -> GatewayHealth {
        let c = self.hub.counts();
        GatewayHealth {
            version: VERSION.into(),
            pid: std::process::id(),
            uptime_ms: self.uptime_ms(),
            port: self.port,
            connections: ConnectionCounts {
                total: c.total,
                operators: c.operators,
                nodes: c.nodes,
            },
        }
    }

    async fn sessions(&self) -> (u64, Vec<RecentSession>) {
        let now = now_ms();
        let res = self
            .db
            .call(move |c| {
                let count: i64 = c.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))?;
                let mut stmt = c.prepare_cached(
                    "SELECT key, updated_at FROM sessions ORDER BY updated_at DESC LIMIT 5",
                )?;
                let recent = stmt
                    .query_map([], |r| {
                        let updated: i64 = r.get(1)?;
                        Ok(RecentSession {
                            key: r.get(0)?,
                            updated_at: Some(updated as u64),
                            age: Some(now.saturating_sub(updated as u64)),
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((count as u64, recent))
            })
            .await;
        match res {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "reading sessions for health failed");
                (0, vec![])
            }
        }
    }

    /// Rebuilds the snapshot; broadcasts `health` when it changed (or when `force`).
    pub async fn refresh_health(&self, force: bool) -> Arc<HealthCache> {
        let t0 = Instant::now();
        let (count, recent) = self.sessions().await;
        let path = self.db.path().display().to_string();
        let summary = SessionSummary {
            path: path.clone(),
            count,
            recent,
        };
        let workers = self.workers().list();
        let mut channels = std::collections::BTreeMap::new();
        let mut channel_labels = std::collections::BTreeMap::new();
        let mut channel_order = Vec::new();
        for c in &self.config.channels {
            let w = workers.iter().find(|w| w.name == c.channel);
            let provider = w.and_then(|w| w.provider_state.clone());
            channels.insert(
                c.channel.clone(),
                serde_json::json!({
                    "configured": true,
                    "running": w.is_some_and(|w| w.state == "running"),
                    "state": provider.clone().or_else(|| w.map(|w| w.state.clone())),
                    "connected": matches!(provider.as_deref(), Some("polling" | "connected")),
                    "lastError": w.and_then(|w| w.detail.clone()),
                    "dmPolicy": c.dm_policy,
                    "groupPolicy": c.group_policy,
                }),
            );
            channel_labels.insert(c.channel.clone(), label(&c.channel));
            channel_order.push(c.channel.clone());
        }
        let mut snapshot = HealthSnapshot {
            ok: true,
            ts: now_ms(),
            duration_ms: 0,
            channels,
            channel_order,
            channel_labels,
            heartbeat_seconds: 0,
            default_agent_id: DEFAULT_AGENT_ID.into(),
            agents: vec![AgentHealth {
                agent_id: DEFAULT_AGENT_ID.into(),
                is_default: true,
                heartbeat: AgentHeartbeat {
                    enabled: false,
                    every: "disabled".into(),
                    every_ms: None,
                    prompt: String::new(),
                    target: "none".into(),
                    ack_max_chars: 0,
                },
                sessions: summary.clone(),
            }],
            sessions: summary,
            gateway: Some(self.gateway_health()),
            workers: Some(workers),
        };
        let mut fp = snapshot.clone();
        fp.ts = 0;
        if let Some(g) = fp.gateway.as_mut() {
            g.uptime_ms = 0;
        }
        for w in fp.workers.iter_mut().flatten() {
            w.uptime_ms = None;
        }
        let fingerprint = serde_json::to_string(&fp).unwrap_or_default();
        snapshot.duration_ms = t0.elapsed().as_millis() as u64;
        let encoded: Arc<str> = Arc::from(serde_json::to_string(&snapshot).unwrap_or_default());
        let cache = Arc::new(HealthCache {
            snapshot: Arc::new(snapshot),
            encoded,
            fingerprint,
        });
        let changed = {
            let mut slot = self.health.lock().unwrap_or_else(|p| p.into_inner());
            let changed = slot.fingerprint != cache.fingerprint;
            *slot = Arc::clone(&cache);
            changed
        };
        if changed || force {
            self.health_version.fetch_add(1, Ordering::Relaxed);
            let b = Broadcast::new("health", &cache.snapshot, Some(self.state_version()), false);
            self.hub.broadcast(&b);
        }
        cache
    }

    /// Keeps the health snapshot fresh: after changes (coalesced) and every minute.
    pub async fn run_health_refresher(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = self.health_dirty.notified() => {
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return,
                        _ = tokio::time::sleep(HEALTH_DEBOUNCE) => {}
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(HEALTH_CACHE_MS)) => {}
            }
            self.refresh_health(false).await;
        }
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

    // ---- status ---------------------------------------------------------------------

    pub async fn status(&self) -> StatusSummary {
        let (count, recent) = self.sessions().await;
        let path = self.db.path().display().to_string();
        StatusSummary {
            heartbeat: StatusHeartbeat {
                default_agent_id: DEFAULT_AGENT_ID.into(),
                agents: vec![StatusHeartbeatAgent {
                    agent_id: DEFAULT_AGENT_ID.into(),
                    enabled: false,
                    every: "disabled".into(),
                    every_ms: None,
                }],
            },
            channel_summary: vec![],
            queued_system_events: self.system_events(),
            sessions: StatusSessions {
                paths: vec![path.clone()],
                count,
                defaults: SessionModelDefaults {
                    model: None,
                    context_tokens: None,
                },
                recent: recent.clone(),
                by_agent: vec![AgentSessions {
                    agent_id: DEFAULT_AGENT_ID.into(),
                    path,
                    count,
                    recent,
                }],
            },
            gateway: Some(self.gateway_health()),
            workers: Some(self.workers().list()),
        }
    }
}
