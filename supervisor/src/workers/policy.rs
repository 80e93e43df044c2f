//! When to restart a worker: exponential backoff with jitter, and an OTP-style restart
//! intensity limit. Pure logic over an injected clock, so tests need no sleeping.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct RestartLimits {
    pub base: Duration,
    pub cap: Duration,
    /// More than `max_restarts` restarts within `window` → give up (state `failed`).
    pub max_restarts: usize,
    pub window: Duration,
}

impl Default for RestartLimits {
    fn default() -> Self {
        RestartLimits {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    RestartAfter(Duration),
    GiveUp { restarts: usize },
}

#[derive(Debug)]
pub struct RestartPolicy {
    limits: RestartLimits,
    recent: VecDeque<Instant>,
}

impl RestartPolicy {
    pub fn new(limits: RestartLimits) -> RestartPolicy {
        RestartPolicy {
            limits,
            recent: VecDeque::new(),
        }
    }

    /// Forget the history (an operator started the worker again).
    pub fn reset(&mut self) {
        self.recent.clear();
    }

    /// The worker exited at `now`: restart (after how long) or give up.
    /// `jitter` in [0, 1) spreads the delay by ±20%.
    pub fn on_exit(&mut self, now: Instant, jitter: f64) -> Decision {
        while let Some(first) = self.recent.front() {
            if now.duration_since(*first) > self.limits.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back(now);
        let n = self.recent.len();
        if n > self.limits.max_restarts {
            return Decision::GiveUp { restarts: n };
        }
        let exp = (n - 1).min(16) as u32;
        let raw = self
            .limits
            .base
            .saturating_mul(1u32 << exp)
            .min(self.limits.cap);
        let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
        Decision::RestartAfter(raw.mul_f64(factor))
    }
}

/// A number in [0, 1) from the OS's randomness (via a v4 UUID, already a dependency).
pub fn jitter() -> f64 {
    let bits = uuid::Uuid::new_v4().as_u128() as u64;
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_from_100ms_and_gives_up_after_five_restarts_a_minute() {
        let mut p = RestartPolicy::new(RestartLimits::default());
        let t = Instant::now();
        let delays: Vec<Decision> = (0..5)
            .map(|i| p.on_exit(t + Duration::from_secs(i), 0.5))
            .collect();
        assert_eq!(
            delays,
            vec![
                Decision::RestartAfter(Duration::from_millis(100)),
                Decision::RestartAfter(Duration::from_millis(200)),
                Decision::RestartAfter(Duration::from_millis(400)),
                Decision::RestartAfter(Duration::from_millis(800)),
                Decision::RestartAfter(Duration::from_millis(1600)),
            ]
        );
        assert_eq!(
            p.on_exit(t + Duration::from_secs(6), 0.5),
            Decision::GiveUp { restarts: 6 }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn restarts_older_than_the_window_are_forgotten() {
        let mut p = RestartPolicy::new(RestartLimits::default());
        let t = Instant::now();
        for i in 0..5 {
            p.on_exit(t + Duration::from_secs(i), 0.0);
        }
        let later = t + Duration::from_secs(200);
        assert_eq!(
            p.on_exit(later, 0.5),
            Decision::RestartAfter(Duration::from_millis(100))
        );
    }

    #[test]
    fn jitter_spreads_by_twenty_percent() {
        let mut p = RestartPolicy::new(RestartLimits::default());
        let Decision::RestartAfter(low) = p.on_exit(Instant::now(), 0.0) else {
            panic!()
        };
        p.reset();
        let Decision::RestartAfter(high) = p.on_exit(Instant::now(), 0.999_999) else {
            panic!()
        };
        assert_eq!(low, Duration::from_millis(80));
        assert!(high > Duration::from_millis(119) && high <= Duration::from_millis(120));
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
