//! Cron and heartbeat: scheduled agent turns.
//!
//! `store`: jobs and run history in SQLite. `schedule`: fire times as pure functions.
//! This file: the scheduler task (one loop; it sleeps until the earliest fire time, a
//! job change wakes it), a job's run (an agent turn in the job's session, its answer
//! optionally delivered through the outbox), start-up misfire handling, `cron` events.
//! `heartbeat`: the periodic `HEARTBEAT.md` turn, `wake`, `set-heartbeats`.
//!
//! Misfires: a fire time that fell while the gateway was stopped is handled at start-up
//! by the job's `misfire` (`run-once`: one run now, however many were missed — the
//! reference's default, `cron.skipMissedJobs: false`; `skip`: a `skipped` entry and the
//! next future time). Either way `cron.runs` records it (`misfire`, `missed`,
//! `scheduledAtMs`). Time comes from [`crate::clock`] alone.

pub mod heartbeat;
pub mod schedule;
pub mod store;

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_schemas::methods::CronMisfire;
use tokio::sync::Notify;

use crate::app::App;
use crate::channels::outbox_store::{NewDelivery, Outcome};
use crate::clock::now_ms;
use crate::events::hub::Broadcast;
use crate::state::history::canonical_session_key;
use schedule::Schedule;
use store::Job;

/// The longest the scheduler sleeps without looking again (a moved clock is noticed).
pub(crate) const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How long a run's delivery is waited for before it is recorded as `unknown`.
const DELIVERY_WAIT: Duration = Duration::from_secs(20);

/// The scheduler's shared state (held by `App`).
#[derive(Default)]
pub struct Cron {
    /// A job changed: look at the schedule again.
    pub changed: Notify,
    /// Serializes changes to job rows (API and scheduler).
    pub edit: tokio::sync::Mutex<()>,
    /// Jobs with a run in flight.
    running: Mutex<HashSet<String>>,
    pub heartbeat: heartbeat::HeartbeatState,
    /// `set-heartbeats`: false stops heartbeat turns.
    pub heartbeats_off: AtomicBool,
}

impl Cron {
    fn claim(&self, id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned())
    }

    fn release(&self, id: &str) {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// Why a run happens.
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// Its fire time came.
    Schedule { scheduled_at: u64 },
    /// `cron.run`.
    Manual,
    /// At start-up, for fire times missed while stopped (`run-once`).
    Misfire { scheduled_at: u64, missed: u32 },
}

/// Broadcasts a `cron` event.
pub fn emit(app: &App, payload: Value) {
    app.hub.broadcast(&Broadcast::encoded(
        "cron",
        &payload.to_string(),
        None,
        false,
    ));
}

/// The first fire time of a job that was just created or changed.
pub fn first_fire(job: &Job, now: u64) -> Result<Option<u64>, String> {
    let s = Schedule::parse(&job.schedule, job.created_at_ms)?;
    if !job.enabled {
        return Ok(None);
    }
    Ok(match s {
        // A one-shot time already past fires at once.
        Schedule::At(at) => Some(at),
        other => other.next_after(now),
    })
}

/// The session a job's runs go to.
pub fn session_of(job: &Job) -> String {
    let agent = job.agent_id.as_deref();
    match job.session_target.as_str() {
        "isolated" => canonical_session_key(Some(&format!("cron:{}", job.id)), agent),
        t if t.starts_with("session:") => {
            canonical_session_key(Some(&t["session:".len()..]), agent)
        }
        _ => canonical_session_key(job.session_key.as_deref(), agent),
    }
}

/// Where a job delivers its answer: `(channel, to)` from v4 `delivery` (`announce`) or
/// v3 `payload.deliver`.
fn delivery_target(app: &App, job: &Job) -> Option<(String, String)> {
    let (channel, to) = match &job.delivery {
        Some(d) if d["mode"] == "announce" => (
            d["channel"].as_str().map(str::to_owned),
            d["to"].as_str().map(str::to_owned),
        ),
        Some(_) => return None,
        None if job.payload.deliver == Some(true) => {
            (job.payload.channel.clone(), job.payload.to.clone())
        }
        None => return None,
    };
    let to = to?.trim().to_owned();
    let channel = channel.filter(|c| c != "last");
    let channel = crate::channels::send::resolve_channel(
        app,
        switchboard_schemas::ProtocolVersion::V4,
        channel.as_deref(),
    )
    .ok()?;
    (!to.is_empty()).then_some((channel, to))
}

/// Runs a job now: an agent turn, the answer delivered if asked, the state and the run
/// entry recorded, `cron` events `started` and `finished`. `None` when the job is unknown
/// or already running.
pub async fn execute(app: &Arc<App>, id: &str, trigger: Trigger) -> Option<Value> {
    if !app.cron.claim(id) {
        return None;
    }
    run_claimed(app, id, trigger, now_ms()).await
}

/// Starts a manual run in the background, as v4's `cron.run` does (the reference answers
/// `enqueued` at once and its CLI's `--wait` polls `cron.runs` by `runId`): the run id the
/// entry will carry, or `None` when the job is already running.
pub fn enqueue(app: &Arc<App>, id: &str) -> Option<String> {
    if !app.cron.claim(id) {
        return None;
    }
    let started = now_ms();
    let run_id = run_id_of(id, started);
    let (app, id) = (Arc::clone(app), id.to_owned());
    tokio::spawn(async move { run_claimed(&app, &id, Trigger::Manual, started).await });
    Some(run_id)
}

/// A claimed job's run, then the claim released and the scheduler told.
async fn run_claimed(app: &Arc<App>, id: &str, trigger: Trigger, started: u64) -> Option<Value> {
    let out = execute_claimed(app, id, trigger, started).await;
    app.cron.release(id);
    app.cron.changed.notify_one();
    out
}

fn run_id_of(id: &str, started: u64) -> String {
    format!("cron:{id}:{started}")
}

async fn execute_claimed(
    app: &Arc<App>,
    id: &str,
    trigger: Trigger,
    started: u64,
) -> Option<Value> {
    let job = {
        let _g = app.cron.edit.lock().await;
        let mut job = store::get(&app.db, id).await.ok()??;
        job.state.running_at_ms = Some(started);
        if !matches!(trigger, Trigger::Manual) {
            job.state.next_run_at_ms = Schedule::parse(&job.schedule, job.created_at_ms)
                .ok()
                .and_then(|s| s.next_after(started));
        }
        if let Err(e) = store::put(&app.db, &job).await {
            tracing::error!(job = %id, error = %e, "cannot record a cron run's start");
            return None;
        }
        job
    };
    emit(
        app,
        json!({"jobId": id, "action": "started", "runAtMs": started}),
    );
    let session_key = session_of(&job);
    let run_id = run_id_of(id, started);
    let message = job
        .payload
        .message
        .clone()
        .or_else(|| job.payload.text.clone())
        .unwrap_or_default();
    let result = crate::agent::run_inbound(app, &run_id, &session_key, &message, None).await;
    let (status, error, summary) = match result {
        Ok(r) if r.status == "ok" => ("ok", None, Some(r.text)),
        Ok(r) => (
            "error",
            Some(r.error.unwrap_or_else(|| r.status.to_owned())),
            None,
        ),
        Err(e) => ("error", Some(e.message.clone()), None),
    };
    let mut delivery_status = "not-requested";
    if let (Some(text), Some((channel, to))) = (summary.as_ref(), delivery_target(app, &job)) {
        delivery_status = deliver(
            app,
            format!("cron:{run_id}"),
            &channel,
            &to,
            text,
            &session_key,
        )
        .await;
    }
    let ended = now_ms();
    let duration = ended.saturating_sub(started);
    let mut entry = json!({
        "ts": ended, "jobId": id, "action": "finished", "status": status,
        "runAtMs": started, "durationMs": duration, "sessionKey": session_key,
        "runId": run_id, "deliveryStatus": delivery_status, "jobName": job.name,
        "completionStatus": completion_status(status, delivery_status, &job),
    });
    if let Some(e) = &error {
        entry["error"] = json!(e);
    }
    if let Some(s) = &summary {
        entry["summary"] = json!(s);
    }
    if let Trigger::Misfire {
        scheduled_at,
        missed,
    } = trigger
    {
        entry["misfire"] = json!("run-once");
        entry["missed"] = json!(missed);
        entry["scheduledAtMs"] = json!(scheduled_at);
    } else if let Trigger::Schedule { scheduled_at } = trigger {
        entry["scheduledAtMs"] = json!(scheduled_at);
    }
    let mut removed = false;
    let mut next = None;
    {
        let _g = app.cron.edit.lock().await;
        if let Ok(Some(mut job)) = store::get(&app.db, id).await {
            let st = &mut job.state;
            st.running_at_ms = None;
            st.last_run_at_ms = Some(started);
            st.last_run_status = Some(status.into());
            st.last_status = Some(status.into());
            st.last_error = error.clone();
            st.last_duration_ms = Some(duration);
            st.last_delivery_status = Some(delivery_status.into());
            st.consecutive_errors = Some(if status == "ok" {
                0
            } else {
                st.consecutive_errors.unwrap_or(0) + 1
            });
            if matches!(Schedule::parse(&job.schedule, 0), Ok(Schedule::At(_)))
                && !matches!(trigger, Trigger::Manual)
            {
                // A one-shot is done: removed after success (unless told to keep it),
                // else disabled.
                if status == "ok" && job.delete_after_run != Some(false) {
                    removed = store::delete(&app.db, id).await.unwrap_or(false);
                } else {
                    job.enabled = false;
                    job.state.next_run_at_ms = None;
                }
            }
            next = job.state.next_run_at_ms;
            if !removed && let Err(e) = store::put(&app.db, &job).await {
                tracing::error!(job = %id, error = %e, "cannot record a cron run's end");
            }
        }
        if let Some(n) = next {
            entry["nextRunAtMs"] = json!(n);
        }
        if let Err(e) = store::append_run(&app.db, id, ended, &entry).await {
            tracing::error!(job = %id, error = %e, "cannot record a cron run");
        }
    }
    let mut ev = json!({
        "jobId": id, "action": "finished", "status": status, "runAtMs": started,
        "durationMs": duration, "nextRunAtMs": next,
    });
    if let Some(e) = &error {
        ev["error"] = json!(e);
    }
    if let Some(s) = &summary {
        ev["summary"] = json!(s);
    }
    emit(app, ev);
    if removed {
        emit(app, json!({"jobId": id, "action": "removed"}));
    }
    tracing::info!(job = %id, status, "cron run finished");
    Some(entry)
}

/// The reference's verdict on a finished run, which its CLI's `cron run --wait` exits by:
/// `succeeded` when the turn succeeded and any delivery it required was made, `failed`
/// when the turn failed or a required delivery was refused, else `unknown` (a delivery
/// still queued). A delivery marked `bestEffort` is never required.
fn completion_status(status: &str, delivery: &str, job: &store::Job) -> &'static str {
    let best_effort = job
        .delivery
        .as_ref()
        .is_some_and(|d| d["bestEffort"] == true);
    match (status, delivery) {
        ("error" | "skipped", _) => "failed",
        ("ok", _) if best_effort => "succeeded",
        ("ok", "not-requested" | "delivered") => "succeeded",
        ("ok", "not-delivered") => "failed",
        _ => "unknown",
    }
}

/// Hands `text` to the outbox for `channel`/`to` under the idempotency key `key` (a
/// retried run never sends twice) and waits, bounded, for the outcome:
/// `delivered`, `not-delivered` or `unknown` (still queued; the outbox goes on).
pub(crate) async fn deliver(
    app: &App,
    key: String,
    channel: &str,
    to: &str,
    text: &str,
    session_key: &str,
) -> &'static str {
    let row = app
        .outbox
        .enqueue(NewDelivery {
            channel: channel.to_owned(),
            account_id: "default".into(),
            target: to.to_owned(),
            text: text.to_owned(),
            source: "notice",
            key: Some(key),
            session_key: Some(session_key.to_owned()),
            thread_id: String::new(),
        })
        .await;
    let Ok(row) = row else {
        return "not-delivered";
    };
    app.outbox.kick();
    match app.outbox.wait(&row.id, DELIVERY_WAIT).await {
        Some(Outcome::Delivered { .. }) => "delivered",
        Some(_) => "not-delivered",
        None => "unknown",
    }
}

/// At start-up: runs a previous process left unfinished are recorded as errors, and
/// fire times missed while stopped are handled by each job's misfire choice.
async fn recover(app: &Arc<App>) {
    let now = now_ms();
    let jobs = match store::load_all(&app.db).await {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the cron jobs");
            return;
        }
    };
    for mut job in jobs {
        if let Some(at) = job.state.running_at_ms.take() {
            let entry = json!({"ts": now, "jobId": job.id, "action": "finished", "status": "error",
                "error": "the gateway stopped during this run", "runAtMs": at, "jobName": job.name});
            let _ = store::append_run(&app.db, &job.id, now, &entry).await;
            job.state.last_run_status = Some("error".into());
            job.state.last_status = Some("error".into());
            let _ = store::put(&app.db, &job).await;
        }
        let Some(due) = job
            .state
            .next_run_at_ms
            .filter(|d| *d <= now && job.enabled)
        else {
            continue;
        };
        let Ok(sched) = Schedule::parse(&job.schedule, job.created_at_ms) else {
            continue;
        };
        let missed = sched.count_between(due, now);
        tracing::warn!(job = %job.id, missed, misfire = ?job.misfire, "cron fire time missed while stopped");
        match job.misfire {
            CronMisfire::RunOnce => {
                let app = Arc::clone(app);
                let id = job.id.clone();
                tokio::spawn(async move {
                    execute(
                        &app,
                        &id,
                        Trigger::Misfire {
                            scheduled_at: due,
                            missed,
                        },
                    )
                    .await;
                });
            }
            CronMisfire::Skip => {
                let next = sched.next_after(now);
                let at_once = matches!(sched, Schedule::At(_));
                job.state.next_run_at_ms = if at_once { None } else { next };
                if at_once {
                    job.enabled = false;
                }
                job.state.last_run_status = Some("skipped".into());
                job.state.last_status = Some("skipped".into());
                let summary = format!(
                    "{missed} fire time(s) missed while the gateway was stopped; misfire: skip"
                );
                let mut entry = json!({"ts": now, "jobId": job.id, "action": "finished",
                    "status": "skipped", "summary": summary, "misfire": "skip", "missed": missed,
                    "scheduledAtMs": due, "runAtMs": due, "jobName": job.name,
                    "deliveryStatus": "not-requested"});
                if let Some(n) = job.state.next_run_at_ms {
                    entry["nextRunAtMs"] = json!(n);
                }
                let _ = store::put(&app.db, &job).await;
                let _ = store::append_run(&app.db, &job.id, now, &entry).await;
                emit(
                    app,
                    json!({"jobId": job.id, "action": "finished", "status": "skipped",
                        "summary": summary, "runAtMs": due, "nextRunAtMs": job.state.next_run_at_ms}),
                );
            }
        }
    }
}

/// The scheduler: misfires first, then fire times as they come, until shutdown.
pub async fn run_scheduler(app: Arc<App>) {
    if !app.config.cron_enabled {
        tracing::info!("cron: disabled (cron.enabled is false)");
        return;
    }
    recover(&app).await;
    loop {
        let now = now_ms();
        let mut wake: Option<u64> = None;
        match store::load_all(&app.db).await {
            Ok(jobs) => {
                for job in jobs.iter().filter(|j| j.enabled) {
                    match job.state.next_run_at_ms {
                        Some(t) if t <= now => {
                            let app = Arc::clone(&app);
                            let id = job.id.clone();
                            tokio::spawn(async move {
                                execute(&app, &id, Trigger::Schedule { scheduled_at: t }).await;
                            });
                        }
                        Some(t) => wake = Some(wake.map_or(t, |w| w.min(t))),
                        None => {}
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cron: cannot read the jobs"),
        }
        let delay = wake
            .map(|w| Duration::from_millis(w.saturating_sub(now)))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = app.cron.changed.notified() => {}
            _ = app.shutdown.cancelled() => return,
        }
    }
}

/// The earliest fire time of the enabled jobs.
pub async fn next_wake(app: &App) -> Option<u64> {
    store::load_all(&app.db)
        .await
        .ok()?
        .iter()
        .filter(|j| j.enabled)
        .filter_map(|j| j.state.next_run_at_ms)
        .min()
}
