//! Giving memory back after a crowd leaves. glibc's allocator keeps the pages of freed
//! blocks inside its heaps (one per thread that allocated, up to eight per core), so a
//! gateway that once held a thousand clients would keep their memory for the rest of its
//! life. After connections fall well below their recent peak, the free pages are
//! returned with `malloc_trim` (on the blocking pool: it walks every heap). Elsewhere
//! (musl, macOS) the allocator returns memory by itself and this does nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;

/// How often the connection count is looked at.
const EVERY: Duration = Duration::from_secs(5);
/// Trim when this many connections fewer than the peak since the last trim…
const MIN_DROP: usize = 64;
/// …and at most this share of that peak is left (in percent).
const LEFT_PERCENT: usize = 75;

/// Whether a fall from `peak` to `now` connections is worth a trim.
fn worth_trimming(peak: usize, now: usize) -> bool {
    peak >= now + MIN_DROP && now * 100 <= peak * LEFT_PERCENT
}

pub async fn run_trimmer(app: Arc<App>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The hub notes every peak, however short, between two looks.
        let (peak, now) = app.hub.take_peak();
        if worth_trimming(peak, now) {
            let _ = tokio::task::spawn_blocking(trim).await;
        }
    }
}

/// Returns free heap pages to the operating system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks and releases the allocator's own free lists.
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(
            released = released != 0,
            "returned free memory after clients left"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::worth_trimming;

    #[test]
    fn a_crowd_leaving_is_worth_a_trim_a_few_clients_are_not() {
        assert!(worth_trimming(1000, 0));
        assert!(worth_trimming(1000, 700));
        assert!(!worth_trimming(1000, 900), "most are still here");
        assert!(!worth_trimming(50, 0), "too few to matter");
        assert!(!worth_trimming(10, 10));
    }
}
