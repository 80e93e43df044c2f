//! Wall-clock time in the protocol's unit (milliseconds since the Unix epoch): the one
//! clock of the gateway (cron, heartbeat, ticks, expiries all read it).
//!
//! Tests can move it: with `SWITCHBOARD_TEST_CLOCK=1` set (an explicit test flag, never
//! set in production), `SWITCHBOARD_TEST_CLOCK_OFFSET_MS` shifts the clock by that many
//! milliseconds for the whole process. An end-to-end test stops the gateway, restarts it
//! "later" (a larger offset) and so crosses a cron fire time without sleeping. The
//! offset is read once, at the first reading of the clock.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The test flag that makes the clock honour [`OFFSET_ENV`].
pub const TEST_FLAG_ENV: &str = "SWITCHBOARD_TEST_CLOCK";
/// The shift, in milliseconds (may be negative), applied only under [`TEST_FLAG_ENV`].
pub const OFFSET_ENV: &str = "SWITCHBOARD_TEST_CLOCK_OFFSET_MS";

fn offset_ms() -> i64 {
    static OFFSET: OnceLock<i64> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        if std::env::var(TEST_FLAG_ENV).ok().as_deref() != Some("1") {
            return 0;
        }
        std::env::var(OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0)
    })
}

/// Whether the test offset moves this process's clock (logged at start-up).
pub fn test_offset() -> Option<i64> {
    Some(offset_ms()).filter(|o| *o != 0)
}

pub fn now_ms() -> u64 {
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    real.saturating_add(offset_ms()).max(0) as u64
}
