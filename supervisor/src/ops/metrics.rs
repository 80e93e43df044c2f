//! `/metrics`: one scrape in Prometheus text exposition format 0.0.4, served on the
//! gateway port (`net/http.rs`): the registry's counters and histograms
//! ([`crate::app::metrics`]), then gauges read live (connections, queue depths, worker
//! states, outbox backlog). Worker and channel labels come from the config.

use crate::app::App;
use crate::app::metrics::{Exposition, label};

/// One scrape: the counters, then the gauges read live from the gateway.
pub async fn render(app: &App) -> String {
    let mut out = Exposition::default();
    app.metrics.render_into(&mut out);
    let conns = app.hub.snapshot();
    let mut by_role: std::collections::BTreeMap<(&str, u8), u64> = Default::default();
    let (mut queued, mut max_queued) = (0u64, 0u64);
    for c in &conns {
        *by_role
            .entry((c.role().as_str(), c.version.number() as u8))
            .or_default() += 1;
        let q = c.queued_bytes() as u64;
        queued += q;
        max_queued = max_queued.max(q);
    }
    for role in ["operator", "node"] {
        for v in [3u8, 4] {
            by_role.entry((role, v)).or_default();
        }
    }
    let samples: Vec<(String, u64)> = by_role
        .iter()
        .map(|((role, v), n)| (format!("role=\"{role}\",protocol=\"{v}\""), *n))
        .collect();
    out.gauge(
        "switchboard_connections",
        "Live WebSocket connections after the handshake, by role and protocol version.",
        &samples,
    );
    out.gauge(
        "switchboard_event_queue_bytes",
        "Bytes queued for clients but not yet written: the total over all connections.",
        &[(String::new(), queued)],
    );
    out.gauge(
        "switchboard_event_queue_max_bytes",
        "Bytes queued for the connection with the longest queue.",
        &[(String::new(), max_queued)],
    );
    out.counter(
        "switchboard_slow_consumer_disconnects_total",
        "Connections cut because they did not read their events.",
        &[("", app.hub.slow_cuts())],
    );
    let workers = app.workers().list();
    let states = ["starting", "running", "backoff", "failed", "stopped"];
    let mut state_samples = Vec::new();
    let mut restarts = Vec::new();
    for w in &workers {
        let name = label(&w.name);
        for s in states {
            state_samples.push((
                format!("worker=\"{name}\",state=\"{s}\""),
                u64::from(w.state == s),
            ));
        }
        restarts.push((format!("worker=\"{name}\""), w.restarts));
    }
    out.gauge(
        "switchboard_worker_state",
        "1 for each worker's current state.",
        &state_samples,
    );
    out.counter_owned(
        "switchboard_worker_restarts_total",
        "Restarts of each worker since the gateway started.",
        &restarts,
    );
    for (name, help, value) in durable_gauges(app).await {
        out.gauge(name, help, &value);
    }
    out.gauge(
        "switchboard_uptime_seconds",
        "Seconds since the gateway started.",
        &[(String::new(), app.uptime_ms() / 1000)],
    );
    out.gauge(
        "switchboard_build_info",
        "Always 1; the labels carry the version.",
        &[(format!("version=\"{}\"", crate::VERSION), 1)],
    );
    out.text
}

/// Gauges read from the database at scrape time (name, help, samples).
async fn durable_gauges(app: &App) -> Vec<(&'static str, &'static str, Vec<(String, u64)>)> {
    let mut backlog: Vec<(String, u64)> = app
        .config
        .channels
        .iter()
        .map(|c| (format!("channel=\"{}\"", label(&c.channel)), 0))
        .collect();
    match app.outbox.backlog().await {
        Ok(rows) => {
            for (channel, n) in rows {
                let key = format!("channel=\"{}\"", label(&channel));
                match backlog.iter_mut().find(|(k, _)| *k == key) {
                    Some(slot) => slot.1 = n,
                    None => backlog.push((key, n)),
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read the outbox backlog"),
    }
    vec![(
        "switchboard_outbox_backlog",
        "Outbound messages accepted but not yet delivered, by channel.",
        backlog,
    )]
}
