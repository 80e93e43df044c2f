//! Slows down and locks out repeated failed authentication, per peer address.
//!
//! Loopback peers are never locked out, but each failure in a row delays the answer:
//! 250 ms, doubling to 5 s (as the v4 reference does). Other peers get ten tries a
//! minute, then five minutes of `AUTH_RATE_LIMITED`. Guessed secrets are never recorded.

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

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

#[derive(Default)]
pub struct AuthLimiter {
    peers: Mutex<HashMap<IpAddr, Failures>>,
}

/// What to do about a peer before checking its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    Locked { retry_after: Duration },
}

impl AuthLimiter {
    pub fn gate(&self, ip: IpAddr) -> Gate {
        if ip.is_loopback() {
            return Gate::Open;
        }
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        match peers.get(&ip).and_then(|f| f.locked_until) {
            Some(until) if until > Instant::now() => Gate::Locked {
                retry_after: until - Instant::now(),
            },
            _ => Gate::Open,
        }
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

    pub fn succeeded(&self, ip: IpAddr) {
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
