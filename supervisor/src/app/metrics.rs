//! The metrics registry: counters and latency histograms updated lock-free on the hot
//! paths, and the text exposition format they are written in. A leaf: the method names
//! are given when it is built, so it never looks at the method table.
//!
//! Label values are bounded: methods come from the list it was built with (anything else
//! is `unknown`), error codes from the protocol's fixed set.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard_schemas::frames::ErrorCode;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A fixed-bucket latency histogram.
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(d.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("{{{s}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {count}", braces(labels));
    }
}

/// Every counter and histogram of the gateway.
pub struct Metrics {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub handshakes_ok: AtomicU64,
    pub handshakes_refused: AtomicU64,
    pub http_requests: AtomicU64,
    /// Requests refused for being over their connection's budget.
    pub rate_limited: AtomicU64,
    pub handshake_latency: Histogram,
    /// One histogram per method of the table, then one for unknown methods.
    request_latency: Vec<Histogram>,
    methods: Vec<&'static str>,
    errors: Vec<AtomicU64>,
    pub agent_runs: [AtomicU64; 3],
}

impl Metrics {
    /// A registry with one latency histogram per method name (and one for the rest).
    pub fn new(methods: Vec<&'static str>) -> Metrics {
        Metrics {
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            handshakes_ok: AtomicU64::new(0),
            handshakes_refused: AtomicU64::new(0),
            http_requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            handshake_latency: Histogram::default(),
            request_latency: (0..=methods.len()).map(|_| Histogram::default()).collect(),
            methods,
            errors: ErrorCode::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            agent_runs: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The outcome labels of `switchboard_agent_runs_total`.
pub const RUN_OUTCOMES: [&str; 3] = ["ok", "error", "aborted"];

impl Metrics {
    pub fn request(&self, method: &str, took: Duration) {
        let i = self
            .methods
            .iter()
            .position(|m| *m == method)
            .unwrap_or(self.methods.len());
        self.request_latency[i].observe(took);
    }

    pub fn error(&self, code: ErrorCode) {
        if let Some(i) = ErrorCode::ALL.iter().position(|c| *c == code) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn run_finished(&self, status: &str) {
        if let Some(i) = RUN_OUTCOMES.iter().position(|s| *s == status) {
            self.agent_runs[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters and histograms, in exposition format (gauges are added by the caller).
    pub fn render_into(&self, out: &mut Exposition) {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        out.counter(
            "switchboard_frames_received_total",
            "WebSocket frames received from clients.",
            &[("", c(&self.frames_in))],
        );
        out.counter(
            "switchboard_frames_sent_total",
            "WebSocket frames written to clients.",
            &[("", c(&self.frames_out))],
        );
        out.counter(
            "switchboard_handshakes_total",
            "Finished connect handshakes by outcome.",
            &[
                ("outcome=\"ok\"", c(&self.handshakes_ok)),
                ("outcome=\"refused\"", c(&self.handshakes_refused)),
            ],
        );
        out.counter(
            "switchboard_http_requests_total",
            "Plain HTTP requests served on the gateway port.",
            &[("", c(&self.http_requests))],
        );
        out.counter(
            "switchboard_requests_rate_limited_total",
            "Requests refused unanswered by a handler: over their connection's request budget.",
            &[("", c(&self.rate_limited))],
        );
        let errors: Vec<(String, u64)> = ErrorCode::ALL
            .iter()
            .zip(&self.errors)
            .map(|(code, n)| (format!("code=\"{}\"", code.as_str()), c(n)))
            .collect();
        out.counter_owned(
            "switchboard_errors_total",
            "Error responses sent to clients, by protocol error code.",
            &errors,
        );
        let runs: Vec<(String, u64)> = RUN_OUTCOMES
            .iter()
            .zip(&self.agent_runs)
            .map(|(s, n)| (format!("status=\"{s}\""), c(n)))
            .collect();
        out.counter_owned(
            "switchboard_agent_runs_total",
            "Agent runs finished, by status.",
            &runs,
        );
        out.header(
            "switchboard_handshake_duration_seconds",
            "From the connect frame to the decision (hello-ok or refusal).",
            "histogram",
        );
        self.handshake_latency
            .render(&mut out.text, "switchboard_handshake_duration_seconds", "");
        out.header(
            "switchboard_request_duration_seconds",
            "From a request frame to its response being queued, by method.",
            "histogram",
        );
        for (i, h) in self.request_latency.iter().enumerate() {
            if h.count() == 0 {
                continue;
            }
            let name = self.methods.get(i).copied().unwrap_or("unknown");
            h.render(
                &mut out.text,
                "switchboard_request_duration_seconds",
                &format!("method=\"{name}\""),
            );
        }
    }
}

/// Text being built for one scrape.
#[derive(Default)]
pub struct Exposition {
    pub text: String,
}

impl Exposition {
    pub fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn samples<L: AsRef<str>>(&mut self, name: &str, samples: &[(L, u64)]) {
        for (labels, v) in samples {
            let labels = labels.as_ref();
            if labels.is_empty() {
                let _ = writeln!(self.text, "{name} {v}");
            } else {
                let _ = writeln!(self.text, "{name}{{{labels}}} {v}");
            }
        }
    }

    pub fn counter(&mut self, name: &str, help: &str, samples: &[(&str, u64)]) {
        self.header(name, help, "counter");
        self.samples(name, samples);
    }

    pub fn counter_owned(&mut self, name: &str, help: &str, samples: &[(String, u64)]) {
        self.header(name, help, "counter");
        self.samples(name, samples);
    }

    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(String, u64)]) {
        self.header(name, help, "gauge");
        self.samples(name, samples);
    }
}

/// Escapes a label value (backslash, quote, newline).
pub fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_count_everything() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "m=\"a\"");
        assert!(out.contains("x_bucket{m=\"a\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{m=\"a\",le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{m=\"a\",le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{m=\"a\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{m=\"a\"} 3\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
