//! How fast one client may make requests, so that a client retrying in a tight loop
//! (a UI page re-asking an unknown method hundreds of times a second, a broken script)
//! cannot take the gateway's time from everyone else.
//!
//! * **Per connection** ([`RequestBudget`]): a token bucket, [`RequestRate::burst`]
//!   requests at once, refilled at [`RequestRate::per_second`] (defaults
//!   [`DEFAULT_PER_SECOND`], [`DEFAULT_BURST`]; `gateway.requests.perSecond` and
//!   `.burst`, `0` for no limit). A request past the budget is answered at once with
//!   `UNAVAILABLE`, `retryable: true` and `retryAfterMs`, and is not dispatched; and the
//!   connection's next frame is not read before a token is back, so a flooding client
//!   costs the gateway at most two frames per token, however fast it writes (what it
//!   writes meanwhile waits in its own socket buffers: TCP pushes back). Neither
//!   reference gateway has such a limit; the numbers are ours, documented in the README.
//! * **Control-plane writes** ([`WriteBudgets`]): the v4 reference's own limit, 30 per
//!   method per 60 s for each client (its device, else its address), on the methods it
//!   marks as control-plane writes (config writes, cron changes), with its error text.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Requests a connection may make per second, sustained, unless configured.
pub const DEFAULT_PER_SECOND: u32 = 200;
/// Requests a connection may make at once, unless configured.
pub const DEFAULT_BURST: u32 = 1000;

/// One connection's allowance (`per_second == 0`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRate {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for RequestRate {
    fn default() -> RequestRate {
        RequestRate {
            per_second: DEFAULT_PER_SECOND,
            burst: DEFAULT_BURST,
        }
    }
}

/// What the budget said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Over the budget: the time until the next token.
    No {
        retry_after: Duration,
    },
}

/// A connection's token bucket. Starts full.
#[derive(Debug)]
pub struct RequestBudget {
    rate: RequestRate,
    tokens: f64,
    at: Instant,
}

impl RequestBudget {
    pub fn new(rate: RequestRate) -> RequestBudget {
        RequestBudget {
            rate,
            tokens: f64::from(rate.burst.max(1)),
            at: Instant::now(),
        }
    }

    /// Takes one token for a request arriving at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        if self.rate.per_second == 0 {
            return Admit::Yes;
        }
        let per_second = f64::from(self.rate.per_second);
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * per_second).min(f64::from(self.rate.burst.max(1)));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Admit::Yes
        } else {
            let missing = 1.0 - self.tokens;
            Admit::No {
                retry_after: Duration::from_secs_f64(missing / per_second),
            }
        }
    }

    pub fn rate(&self) -> RequestRate {
        self.rate
    }
}

/// The v4 reference's control-plane write limit: this many per method per window.
pub const WRITES_PER_WINDOW: u32 = 30;
pub const WRITE_WINDOW: Duration = Duration::from_secs(60);
/// Clients tracked at most (the reference's cap); the stalest are forgotten past it.
const MAX_WRITE_KEYS: usize = 10_000;

/// The methods the v4 reference counts as control-plane writes, among those Switchboard has.
pub const CONTROL_PLANE_WRITES: &[&str] = &[
    "config.apply",
    "config.patch",
    "cron.add",
    "cron.update",
    "cron.remove",
    "cron.run",
];

/// Control-plane write windows, per `method|client`.
#[derive(Debug, Default)]
pub struct WriteBudgets {
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl WriteBudgets {
    /// Counts one write of `method` by `client` (its device id, else its address) at
    /// `now`; `Some(retry_after)` when the window's allowance is spent.
    pub fn admit(&self, method: &str, client: &str, now: Instant) -> Option<Duration> {
        if !CONTROL_PLANE_WRITES.contains(&method) {
            return None;
        }
        let key = format!("{method}|{client}");
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        if !w.contains_key(&key) && w.len() >= MAX_WRITE_KEYS {
            w.retain(|_, (start, _)| now.saturating_duration_since(*start) < WRITE_WINDOW);
            if w.len() >= MAX_WRITE_KEYS
                && let Some(oldest) = w
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone())
            {
                w.remove(&oldest);
            }
        }
        let slot = w.entry(key).or_insert((now, 0));
        if now.saturating_duration_since(slot.0) >= WRITE_WINDOW {
            *slot = (now, 0);
        }
        if slot.1 >= WRITES_PER_WINDOW {
            return Some((slot.0 + WRITE_WINDOW).saturating_duration_since(now));
        }
        slot.1 += 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = RequestBudget::new(RequestRate {
            per_second: 10,
            burst: 5,
        });
        for _ in 0..5 {
            assert_eq!(b.admit(t0), Admit::Yes);
        }
        let Admit::No { retry_after } = b.admit(t0) else {
            panic!("the sixth request at once is over the burst");
        };
        assert!(retry_after <= Duration::from_millis(100) && retry_after > Duration::ZERO);
        // 100 ms later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.admit(t1), Admit::Yes);
        assert!(matches!(b.admit(t1), Admit::No { .. }));
        // Idle for long: back to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(b.admit(t2), Admit::Yes);
        }
        assert!(matches!(b.admit(t2), Admit::No { .. }));
    }

    #[test]
    fn zero_per_second_is_no_limit() {
        let t0 = Instant::now();
        let mut b = RequestBudget::new(RequestRate {
            per_second: 0,
            burst: 0,
        });
        for _ in 0..100_000 {
            assert_eq!(b.admit(t0), Admit::Yes);
        }
    }

    #[test]
    fn control_plane_writes_get_30_a_minute_per_method_and_client() {
        let w = WriteBudgets::default();
        let t0 = Instant::now();
        for _ in 0..30 {
            assert_eq!(w.admit("config.patch", "dev-a", t0), None);
        }
        let after = w.admit("config.patch", "dev-a", t0 + Duration::from_secs(10));
        assert_eq!(after, Some(Duration::from_secs(50)));
        // Another method, another client, and reads: their own budgets.
        assert_eq!(w.admit("config.apply", "dev-a", t0), None);
        assert_eq!(w.admit("config.patch", "dev-b", t0), None);
        assert_eq!(w.admit("health", "dev-a", t0), None);
        // A new window.
        assert_eq!(w.admit("config.patch", "dev-a", t0 + WRITE_WINDOW), None);
    }
}
