//! The heartbeat: a periodic agent turn in the main session, driven by `HEARTBEAT.md`
//! in the agent workspace, when `agents.defaults.heartbeat.every` turns it on (within
//! `activeHours`). `wake` queues a line for the next turn and can start one now;
//! `set-heartbeats` stops and restarts them. Each beat ends in a record (the v3 shape:
//! `{ts, status: sent|ok-empty|ok-token|skipped|failed, reason?, preview?, durationMs?}`),
//! kept as `last-heartbeat` and broadcast as the `heartbeat` event.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::app::App;
use crate::clock::now_ms;
use crate::config::HeartbeatTarget;
use crate::events::hub::Broadcast;
use crate::state::history::canonical_session_key;

/// Lines `wake` queued for the next beat, at most this many (the oldest go first).
const WAKE_TEXTS_MAX: usize = 20;
/// `HEARTBEAT.md` is read up to this size.
const FILE_MAX_BYTES: u64 = 64 * 1024;
/// The answer that means "nothing needs attention".
const OK_TOKEN: &str = "HEARTBEAT_OK";

#[derive(Default)]
pub struct HeartbeatState {
    last: Mutex<Option<Value>>,
    wake_texts: Mutex<VecDeque<String>>,
    now: Notify,
}

impl HeartbeatState {
    pub fn last(&self) -> Option<Value> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `wake`: queues the line; `now` starts a beat at once.
    pub fn wake(&self, text: &str, now: bool) {
        let mut q = self.wake_texts.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(text.to_owned());
        while q.len() > WAKE_TEXTS_MAX {
            q.pop_front();
        }
        drop(q);
        if now {
            self.now.notify_one();
        }
    }

    fn take_texts(&self) -> Vec<String> {
        self.wake_texts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect()
    }
}

fn record(app: &App, mut rec: Value) {
    rec["ts"] = json!(now_ms());
    *app.cron
        .heartbeat
        .last
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(rec.clone());
    app.hub.broadcast(&Broadcast::encoded(
        "heartbeat",
        &rec.to_string(),
        None,
        true,
    ));
}

/// The heartbeat task: a beat every `every` (when configured) or on `wake` now. The
/// beat times are read from the one clock ([`crate::clock`]) and looked at again at least
/// every [`super::MAX_SLEEP`], so a suspended laptop or a moved clock beats when it is
/// due, not an interval of sleep later. A woken beat does not move the schedule.
pub async fn run(app: Arc<App>) {
    let h = &app.config.heartbeat;
    let every_ms = h.every.map(|e| e.as_millis() as u64);
    if let Some(every_ms) = every_ms {
        tracing::info!(every_ms, "heartbeat: on");
    }
    if h.to.is_some() && !matches!(h.target, HeartbeatTarget::Channel(_)) {
        tracing::warn!(target = ?h.target, "agents.defaults.heartbeat.to is ignored without a channel target (set target to a channel id)");
    }
    let mut due = every_ms.map(|e| now_ms().saturating_add(e));
    loop {
        let wait = until_due(now_ms(), due);
        let scheduled = tokio::select! {
            _ = tokio::time::sleep(wait) => match (due, every_ms) {
                (Some(d), Some(e)) if now_ms() >= d => {
                    due = Some(next_due(d, e, now_ms()));
                    true
                }
                _ => continue,
            },
            _ = app.cron.heartbeat.now.notified() => false,
            _ = app.shutdown.cancelled() => return,
        };
        beat(&app, scheduled).await;
    }
}

/// How long to sleep before looking again: until `due`, at most [`super::MAX_SLEEP`].
fn until_due(now: u64, due: Option<u64>) -> Duration {
    due.map_or(super::MAX_SLEEP, |d| {
        Duration::from_millis(d.saturating_sub(now)).min(super::MAX_SLEEP)
    })
}

/// The next beat after one due at `due`: a whole number of intervals later, past `now`
/// (beats missed while the host slept are one beat, not a burst).
fn next_due(due: u64, every: u64, now: u64) -> u64 {
    let every = every.max(1);
    let behind = now.saturating_sub(due) / every;
    due.saturating_add((behind + 1).saturating_mul(every))
}

/// One beat; `scheduled` beats honour the active hours, woken ones do not.
pub async fn beat(app: &Arc<App>, scheduled: bool) {
    if app.cron.heartbeats_off.load(Ordering::Relaxed) {
        record(app, json!({"status": "skipped", "reason": "disabled"}));
        return;
    }
    if scheduled
        && let Some((start, end, tz)) = app.config.heartbeat.active_hours.clone()
        && !super::schedule::in_active_hours(now_ms(), start, end, tz.as_deref())
    {
        record(app, json!({"status": "skipped", "reason": "quiet-hours"}));
        return;
    }
    let path = app.config.workspace.join("HEARTBEAT.md");
    let file = tokio::task::spawn_blocking(move || read_bounded(&path))
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    let texts = app.cron.heartbeat.take_texts();
    if is_effectively_empty(&file) && texts.is_empty() {
        record(
            app,
            json!({"status": "skipped", "reason": "empty-heartbeat-file"}),
        );
        return;
    }
    let prompt = &app.config.heartbeat.prompt;
    let mut message = format!("{prompt}\n\nHEARTBEAT.md:\n{file}");
    for t in &texts {
        message.push_str("\n\nSystem: ");
        message.push_str(t);
    }
    let started = now_ms();
    let run_id = format!("heartbeat:{started}");
    let session = canonical_session_key(None, None);
    let res = crate::agent::run_inbound(app, &run_id, &session, &message, None).await;
    let duration = now_ms().saturating_sub(started);
    match res {
        Ok(r) if r.status == "ok" => {
            let text = r.text.trim();
            let status = if text.is_empty() {
                "ok-empty"
            } else if text == OK_TOKEN || text.ends_with(OK_TOKEN) && text.len() < 300 {
                "ok-token"
            } else {
                "sent"
            };
            let preview: String = text.chars().take(200).collect();
            let mut rec = json!({"status": status, "preview": preview, "durationMs": duration});
            if status == "sent" {
                let (delivery, channel) = deliver(app, &run_id, text, &session).await;
                rec["deliveryStatus"] = json!(delivery);
                if let Some(c) = channel {
                    rec["channel"] = json!(c);
                }
            }
            record(app, rec);
        }
        Ok(r) => record(
            app,
            json!({"status": "failed", "reason": r.error.unwrap_or_else(|| r.status.to_owned()), "durationMs": duration}),
        ),
        Err(e) => record(
            app,
            json!({"status": "failed", "reason": e.message, "durationMs": duration}),
        ),
    }
}

/// An answer that needs attention goes through the outbox to the route `target` names
/// (see [`route`]); with `target: "none"`, or no route, the beat still ran and nothing
/// is sent. The delivery status and the channel, for the record.
async fn deliver(
    app: &App,
    run_id: &str,
    text: &str,
    session: &str,
) -> (&'static str, Option<String>) {
    let cfg = &app.config.heartbeat;
    if cfg.target == HeartbeatTarget::None {
        return ("not-requested", None);
    }
    let Some((channel, to)) = route(app, &cfg.target, cfg.to.as_deref()).await else {
        tracing::warn!(target = ?cfg.target, "the heartbeat's answer has no route (no owner in allowFrom, no conversation yet, or no such channel configured); not sent");
        return ("not-delivered", None);
    };
    let status = super::deliver(app, run_id.to_owned(), &channel, &to, text, session).await;
    (status, Some(channel))
}

/// The channel and recipient of a beat's answer:
/// * `owner`: the first configured channel with a concrete `allowFrom` entry (not `*`,
///   not an `@handle`, which is no address), that entry; never a group;
/// * `last`: the chat of the latest message the agent answered, groups included;
/// * a channel: `to`, else that channel's owner.
async fn route(app: &App, target: &HeartbeatTarget, to: Option<&str>) -> Option<(String, String)> {
    let owner_of = |c: &crate::config::channel::ChannelConfig| {
        c.allow_from.iter().find_map(|e| {
            let id = crate::channels::providers::bare_id(e, c.id_prefixes);
            (!id.is_empty() && id != "*" && !id.starts_with('@')).then(|| id.to_owned())
        })
    };
    match target {
        HeartbeatTarget::None => None,
        HeartbeatTarget::Owner => app
            .config
            .channels
            .iter()
            .find_map(|c| Some((c.channel.clone(), owner_of(c)?))),
        HeartbeatTarget::Channel(name) => {
            let c = app.config.channel(name)?;
            let to = to.map(str::to_owned).or_else(|| owner_of(c))?;
            Some((c.channel.clone(), to))
        }
        HeartbeatTarget::Last => {
            let (channel, chat) = crate::channels::inbound::last_answered(app).await?;
            app.config.channel(&channel)?;
            Some((channel, chat))
        }
    }
}

fn read_bounded(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).ok()?;
    let mut buf = String::new();
    f.take(FILE_MAX_BYTES).read_to_string(&mut buf).ok()?;
    Some(buf)
}

/// Only blank lines and Markdown headings: nothing to act on (as the reference).
fn is_effectively_empty(s: &str) -> bool {
    s.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_follow_the_clock_and_a_long_gap_is_one_beat() {
        // On time: the next one interval later.
        assert_eq!(next_due(1_000, 500, 1_000), 1_500);
        // Woken a little late: still on the original grid.
        assert_eq!(next_due(1_000, 500, 1_120), 1_500);
        // The host slept through ten intervals: one beat now, the next on the grid ahead.
        assert_eq!(next_due(1_000, 500, 6_250), 6_500);
        // The sleep is until due, but never longer than the look-again bound.
        assert_eq!(until_due(1_000, Some(1_250)), Duration::from_millis(250));
        assert_eq!(until_due(1_000, Some(900)), Duration::ZERO);
        assert_eq!(until_due(0, Some(u64::MAX)), crate::cron::MAX_SLEEP);
        assert_eq!(until_due(0, None), crate::cron::MAX_SLEEP);
    }

    #[test]
    fn only_headings_and_blank_lines_mean_nothing_to_do() {
        assert!(is_effectively_empty("# Checklist\n\n  ## Later\n"));
        assert!(is_effectively_empty(""));
        assert!(!is_effectively_empty("# Checklist\n- water the plants\n"));
    }
}
