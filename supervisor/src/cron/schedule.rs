//! Schedules as pure functions of time: when a job fires next, how many fire times a
//! stopped gateway missed. Cron expressions are croner's (5 fields, or 6 with seconds),
//! time zones jiff's (the system tz database); nothing here reads a clock.

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use switchboard_schemas::methods::{CronSchedule, CronScheduleKind};

/// A schedule checked and ready to compute fire times.
#[derive(Debug, Clone)]
pub enum Schedule {
    At(u64),
    Every { every_ms: u64, anchor_ms: u64 },
    Cron { cron: Box<Cron>, tz: TimeZone },
}

/// Misses counted past this are reported as "at least".
pub const MISSED_COUNT_MAX: u32 = 1000;

impl Schedule {
    /// Checks a schedule; `created_ms` anchors an interval that names no anchor.
    pub fn parse(s: &CronSchedule, created_ms: u64) -> Result<Schedule, String> {
        match s.kind {
            CronScheduleKind::At => {
                if let Some(ms) = s.at_ms {
                    return Ok(Schedule::At(ms));
                }
                let at = s.at.as_deref().map(str::trim).unwrap_or("");
                if at.is_empty() {
                    return Err("schedule.at (or atMs) is required for kind \"at\"".into());
                }
                parse_at(at).map(Schedule::At)
            }
            CronScheduleKind::Every => {
                let every_ms = s
                    .every_ms
                    .filter(|e| *e > 0)
                    .ok_or("schedule.everyMs must be a positive integer")?;
                Ok(Schedule::Every {
                    every_ms,
                    anchor_ms: s.anchor_ms.unwrap_or(created_ms),
                })
            }
            CronScheduleKind::Cron => {
                let expr = s.expr.as_deref().map(str::trim).unwrap_or("");
                if expr.is_empty() {
                    return Err("schedule.expr is required for kind \"cron\"".into());
                }
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .build()
                    .parse(expr)
                    .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))?;
                let tz = match s.tz.as_deref().map(str::trim).filter(|z| !z.is_empty()) {
                    Some(z) => TimeZone::get(z).map_err(|_| format!("unknown time zone {z:?}"))?,
                    None => TimeZone::system(),
                };
                Ok(Schedule::Cron {
                    cron: Box::new(cron),
                    tz,
                })
            }
        }
    }

    /// The first fire time strictly after `after_ms`, if there is one.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        match self {
            Schedule::At(at) => (*at > after_ms).then_some(*at),
            Schedule::Every {
                every_ms,
                anchor_ms,
            } => {
                if after_ms < *anchor_ms {
                    return Some(*anchor_ms);
                }
                let k = (after_ms - anchor_ms) / every_ms + 1;
                anchor_ms.checked_add(k.checked_mul(*every_ms)?)
            }
            Schedule::Cron { cron, tz } => {
                let start = Timestamp::from_millisecond(after_ms as i64)
                    .ok()?
                    .to_zoned(tz.clone());
                let next = cron.find_next_occurrence(&start, false).ok()?;
                u64::try_from(next.timestamp().as_millisecond()).ok()
            }
        }
    }

    /// Fire times in `[from_ms, until_ms]`, counted up to [`MISSED_COUNT_MAX`].
    pub fn count_between(&self, from_ms: u64, until_ms: u64) -> u32 {
        if from_ms > until_ms {
            return 0;
        }
        let mut n = 1;
        let mut t = from_ms;
        while n < MISSED_COUNT_MAX {
            match self.next_after(t) {
                Some(next) if next <= until_ms => {
                    n += 1;
                    t = next;
                }
                _ => break,
            }
        }
        n
    }
}

/// `2026-12-02T18:00:00Z`, with an offset, or a local time (the host's zone), or
/// milliseconds since the epoch.
fn parse_at(at: &str) -> Result<u64, String> {
    if let Ok(ms) = at.parse::<u64>() {
        return Ok(ms);
    }
    if let Ok(ts) = at.parse::<Timestamp>() {
        return u64::try_from(ts.as_millisecond()).map_err(|_| "schedule.at is before 1970".into());
    }
    let local = at
        .parse::<jiff::civil::DateTime>()
        .map_err(|_| format!("schedule.at {at:?} is not an ISO date-time"))?;
    let zoned = local
        .to_zoned(TimeZone::system())
        .map_err(|e| format!("schedule.at {at:?}: {e}"))?;
    u64::try_from(zoned.timestamp().as_millisecond())
        .map_err(|_| "schedule.at is before 1970".into())
}

/// `"30m"`, `"1h"`, `"90s"`, `"1500ms"`, `"2d"`, or a bare number of minutes (the
/// reference's default unit for `heartbeat.every`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30m, 1h or 90s"))?;
    let ms = match unit.trim() {
        "ms" => n,
        "s" => n * 1000,
        "" | "m" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return Err(format!("{s:?} is not a duration like 30m, 1h or 90s")),
    };
    Ok(Duration::from_millis(ms))
}

/// `"HH:MM"` to minutes after midnight (`"24:00"` = 1440).
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    let total = h * 60 + m;
    (m < 60 && total <= 24 * 60).then_some(total)
}

/// Whether `now_ms` falls in `[start, end)` minutes of the day in `tz` (a window may
/// wrap midnight: 22:00-06:00).
pub fn in_active_hours(now_ms: u64, start: u32, end: u32, tz: Option<&str>) -> bool {
    let zone = tz
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or_else(TimeZone::system);
    let Ok(ts) = Timestamp::from_millisecond(now_ms as i64) else {
        return true;
    };
    let z = ts.to_zoned(zone);
    let minute = z.hour() as u32 * 60 + z.minute() as u32;
    if start == end {
        return true;
    }
    if start < end {
        (start..end).contains(&minute)
    } else {
        minute >= start || minute < end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: CronScheduleKind) -> CronSchedule {
        CronSchedule {
            kind,
            at: None,
            at_ms: None,
            every_ms: None,
            anchor_ms: None,
            expr: None,
            tz: None,
            stagger_ms: None,
        }
    }

    #[test]
    fn cron_expression_fires_in_its_time_zone() {
        let mut s = sched(CronScheduleKind::Cron);
        s.expr = Some("0 9 * * *".into());
        s.tz = Some("America/New_York".into());
        let parsed = Schedule::parse(&s, 0).unwrap();
        // 2026-12-02T12:00:00Z is 07:00 in New York (EST, UTC-5): next is 14:00Z.
        let noon = "2026-12-02T12:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond() as u64;
        let want = "2026-12-02T14:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond() as u64;
        assert_eq!(parsed.next_after(noon), Some(want));
        // Strictly after: a fire time is not its own next.
        assert_eq!(
            parsed.next_after(want),
            Some(want + 24 * 3_600_000),
            "the next day"
        );
    }

    #[test]
    fn interval_counts_from_its_anchor() {
        let mut s = sched(CronScheduleKind::Every);
        s.every_ms = Some(1000);
        let p = Schedule::parse(&s, 500).unwrap();
        assert_eq!(p.next_after(0), Some(500));
        assert_eq!(p.next_after(500), Some(1500));
        assert_eq!(p.next_after(1499), Some(1500));
        assert_eq!(p.count_between(1500, 4500), 4);
    }

    #[test]
    fn one_shot_at_accepts_iso_times_and_fires_once() {
        let mut s = sched(CronScheduleKind::At);
        s.at = Some("2026-12-02T18:00:00+01:00".into());
        let p = Schedule::parse(&s, 0).unwrap();
        let at = "2026-12-02T17:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond() as u64;
        assert_eq!(p.next_after(at - 1), Some(at));
        assert_eq!(p.next_after(at), None);
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        let mut s = sched(CronScheduleKind::Cron);
        s.expr = Some("61 * * * *".into());
        assert!(
            Schedule::parse(&s, 0)
                .unwrap_err()
                .contains("invalid cron expression")
        );
        s.expr = Some("0 * * * *".into());
        s.tz = Some("Mars/Olympus".into());
        assert!(
            Schedule::parse(&s, 0)
                .unwrap_err()
                .contains("unknown time zone")
        );
        assert!(Schedule::parse(&sched(CronScheduleKind::Every), 0).is_err());
    }

    #[test]
    fn durations_and_active_hours() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("0m").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("08:61"), None);
        let t = "2026-12-02T23:30:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_millisecond() as u64;
        assert!(in_active_hours(t, 22 * 60, 6 * 60, Some("UTC")));
        assert!(!in_active_hours(t, 8 * 60, 22 * 60, Some("UTC")));
    }
}
