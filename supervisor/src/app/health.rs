//! The health snapshot (rebuilt by one task, served pre-encoded), `status`, and the one
//! list of the configured channels with their state that both `health` and
//! `channels.status` show.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_schemas::methods::{
    AgentHealth, AgentHeartbeat, AgentSessions, ConnectionCounts, GatewayHealth, HealthSnapshot,
    RecentSession, SessionModelDefaults, SessionSummary, StatusHeartbeat, StatusHeartbeatAgent,
    StatusSessions, StatusSummary,
};

use super::{App, HEALTH_CACHE_MS, HEALTH_DEBOUNCE, HealthCache};
use crate::VERSION;
use crate::channels::providers;
use crate::clock::now_ms;
use crate::config::{ChannelConfig, DEFAULT_AGENT_ID};
use crate::events::hub::Broadcast;

/// One configured channel as clients see it.
pub struct ChannelState<'a> {
    pub config: &'a ChannelConfig,
    pub label: String,
    pub running: bool,
    pub connected: bool,
    /// The provider's state word, else the worker's.
    pub state: Option<String>,
    pub worker_state: Option<String>,
    pub last_error: Option<String>,
    pub capabilities: Vec<String>,
}

impl App {
    /// Every configured channel, in config order, with its worker's last known state.
    pub fn channel_states(&self) -> Vec<ChannelState<'_>> {
        let workers = self.workers().list();
        self.config
            .channels
            .iter()
            .map(|c| {
                let w = workers.iter().find(|w| w.name == c.channel);
                let provider_state = w.and_then(|w| w.provider_state.clone());
                let running = w.is_some_and(|w| w.state == "running");
                // The worker's own judgement, else what the registry says its states mean.
                let connected = running
                    && match w.and_then(|w| w.connected) {
                        Some(c) => c,
                        None => providers::get(&c.channel).is_some_and(|p| {
                            provider_state
                                .as_deref()
                                .is_some_and(|s| p.connected_states.contains(&s))
                        }),
                    };
                ChannelState {
                    config: c,
                    label: providers::label(&c.channel),
                    running,
                    connected,
                    state: provider_state.or_else(|| w.map(|w| w.state.clone())),
                    worker_state: w.map(|w| w.state.clone()),
                    last_error: w.and_then(|w| w.detail.clone()),
                    capabilities: w.and_then(|w| w.capabilities.clone()).unwrap_or_default(),
                }
            })
            .collect()
    }

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
        for c in self.channel_states() {
            let id = c.config.channel.clone();
            channels.insert(
                id.clone(),
                json!({
                    "configured": true,
                    "running": c.running,
                    "state": c.state,
                    "connected": c.connected,
                    "lastError": c.last_error,
                    "dmPolicy": c.config.dm_policy,
                    "groupPolicy": c.config.group_policy,
                }),
            );
            channel_labels.insert(id.clone(), c.label);
            channel_order.push(id);
        }
        let mut snapshot = HealthSnapshot {
            ok: self.db.fault().is_none(),
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

    /// While the database cannot record for a reason that may pass (full disk, I/O
    /// error, read-only), probes it every two seconds; health follows every change.
    pub async fn run_storage_watch(self: Arc<Self>) {
        let mut fault = self.db.watch_fault();
        loop {
            let passing = fault
                .borrow_and_update()
                .as_ref()
                .is_some_and(|f| !f.sticky);
            if passing {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
                let _ = self.db.probe().await;
            } else {
                tokio::select! {
                    _ = self.shutdown.cancelled() => return,
                    _ = fault.changed() => {}
                }
            }
            self.health_changed();
        }
    }

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
