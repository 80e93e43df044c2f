//! Slows down and locks out repeated failed authentication, per peer address and for the
//! whole gateway.
//!
//! * **Per address.** A loopback peer's failures in a row delay its answer: 250 ms,
//!   doubling to 5 s (as the v4 reference does). Other peers get ten tries a minute,
//!   then five minutes of `AUTH_RATE_LIMITED`.
//! * **Per gateway.** Every connect draws one attempt from one budget shared by all
//!   peers (loopback included, whatever their address or however many connections run
//!   in parallel): [`GLOBAL_BURST`] at once, refilled at [`GLOBAL_PER_SECOND`] per second.
//!   A connect that authenticates gives its attempt back, so only failures spend the
//!   budget. With the budget spent, connects are refused unchecked with
//!   `AUTH_RATE_LIMITED` and `retryAfterMs` (the time to the next attempt): however
//!   many connections a guesser opens, it gets at most 20 guesses and then 2 a second.
//!
//! The owner during a lockout: a right secret is held too (letting it through would tell
//! a guesser when it is right, at full speed). The lockout ends by itself: it lasts only
//! while failures come faster than the budget refills, and the owner gets in at the
//! first attempt after `retryAfterMs` (at most 500 ms) once the guessing stops.
//! Connections already open are never affected. The lockout is logged once when it
//! starts and once when it ends, with counts only: no guessed secret is ever recorded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const LOOPBACK_FIRST_DELAY: Duration = Duration::from_millis(250);
const LOOPBACK_MAX_DELAY: Duration = Duration::from_secs(5);
const REMOTE_WINDOW: Duration = Duration::from_secs(60);
const REMOTE_MAX_FAILURES: u32 = 10;
const REMOTE_LOCKOUT: Duration = Duration::from_secs(300);
/// Peers tracked at most; the oldest entries are forgotten beyond this.
const MAX_PEERS: usize = 4096;
/// Gateway-wide: attempts that may fail at once.
pub const GLOBAL_BURST: f64 = 20.0;
/// Gateway-wide: attempts that may fail per second after the burst.
pub const GLOBAL_PER_SECOND: f64 = 2.0;

/// The gateway-wide attempt budget (a token bucket).
struct Budget {
    tokens: f64,
    at: Instant,
    /// In a lockout: attempts refused unchecked since it began.
    refused: Option<u64>,
}

impl Budget {
    fn refill(&mut self, now: Instant) {
        let dt = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * GLOBAL_PER_SECOND).min(GLOBAL_BURST);
        self.at = now;
    }
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            tokens: GLOBAL_BURST,
            at: Instant::now(),
            refused: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

#[derive(Default)]
pub struct AuthLimiter {
    peers: Mutex<HashMap<IpAddr, Failures>>,
    budget: Mutex<Budget>,
}

/// What to do about a peer before checking its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    Locked { retry_after: Duration },
}

impl AuthLimiter {
    /// Before a connect's credentials are checked: open (one attempt drawn from the
    /// gateway's budget; [`AuthLimiter::succeeded`] gives it back) or locked.
    pub fn gate(&self, ip: IpAddr) -> Gate {
        let now = Instant::now();
        if !ip.is_loopback() {
            let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(until) = peers.get(&ip).and_then(|f| f.locked_until)
                && until > now
            {
                return Gate::Locked {
                    retry_after: until - now,
                };
            }
        }
        let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        b.refill(now);
        if b.tokens < 1.0 {
            let retry_after = Duration::from_secs_f64((1.0 - b.tokens) / GLOBAL_PER_SECOND)
                .max(Duration::from_millis(1));
            match &mut b.refused {
                Some(n) => *n += 1,
                None => {
                    b.refused = Some(1);
                    tracing::warn!(
                        burst = GLOBAL_BURST,
                        per_second = GLOBAL_PER_SECOND,
                        "authentication failures exceed the gateway-wide budget: new connects are \
                         refused unchecked (AUTH_RATE_LIMITED) until the budget refills"
                    );
                }
            }
            return Gate::Locked { retry_after };
        }
        if let Some(refused) = b.refused.take() {
            tracing::warn!(
                refused,
                "gateway-wide authentication lockout ended (connects refused unchecked meanwhile)"
            );
        }
        b.tokens -= 1.0;
        Gate::Open
    }

    /// Records a failure; returns how long to wait before answering.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if peers.len() >= MAX_PEERS
            && !peers.contains_key(&ip)
            && let Some(oldest) = peers
                .iter()
                .min_by_key(|(_, f)| f.window_start)
                .map(|(k, _)| *k)
        {
            peers.remove(&oldest);
        }
        let f = peers.entry(ip).or_insert(Failures {
            count: 0,
            window_start: now,
            locked_until: None,
        });
        if !ip.is_loopback() && now.duration_since(f.window_start) > REMOTE_WINDOW {
            f.count = 0;
            f.window_start = now;
        }
        f.count += 1;
        if ip.is_loopback() {
            let factor = 1u32 << (f.count - 1).min(5);
            (LOOPBACK_FIRST_DELAY * factor).min(LOOPBACK_MAX_DELAY)
        } else {
            if f.count >= REMOTE_MAX_FAILURES {
                f.locked_until = Some(now + REMOTE_LOCKOUT);
                tracing::warn!(peer = %ip, failures = f.count, "authentication locked out for 5 minutes");
            }
            Duration::ZERO
        }
    }

    /// The connect authenticated: its attempt goes back to the budget.
    pub fn succeeded(&self, ip: IpAddr) {
        {
            let mut b = self.budget.lock().unwrap_or_else(|p| p.into_inner());
            b.tokens = (b.tokens + 1.0).min(GLOBAL_BURST);
        }
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_failures_back_off_and_reset_on_success() {
        let l = AuthLimiter::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(l.failed(ip), Duration::from_millis(250));
        assert_eq!(l.failed(ip), Duration::from_millis(500));
        assert_eq!(l.failed(ip), Duration::from_millis(1000));
        for _ in 0..10 {
            l.failed(ip);
        }
        assert_eq!(l.failed(ip), Duration::from_secs(5));
        assert_eq!(l.gate(ip), Gate::Open);
        l.succeeded(ip);
        assert_eq!(l.failed(ip), Duration::from_millis(250));
    }

    #[test]
    fn the_gateway_wide_budget_holds_every_address_and_successes_give_back() {
        let l = AuthLimiter::default();
        for i in 0..GLOBAL_BURST as u32 {
            let ip: IpAddr = format!("127.0.{}.{}", i / 200, i % 200 + 1)
                .parse()
                .unwrap();
            assert_eq!(l.gate(ip), Gate::Open, "attempt {i}");
            l.failed(ip);
        }
        let other: IpAddr = "127.9.9.9".parse().unwrap();
        let Gate::Locked { retry_after } = l.gate(other) else {
            panic!("the budget is spent");
        };
        assert!(retry_after <= Duration::from_millis(500), "{retry_after:?}");
        l.succeeded(other);
        assert_eq!(l.gate(other), Gate::Open);
    }

    #[test]
    fn remote_peers_are_locked_out_after_ten_failures() {
        let l = AuthLimiter::default();
        let ip: IpAddr = "10.9.9.9".parse().unwrap();
        for _ in 0..9 {
            l.failed(ip);
            assert_eq!(l.gate(ip), Gate::Open);
        }
        l.failed(ip);
        assert!(matches!(l.gate(ip), Gate::Locked { .. }));
    }
}
