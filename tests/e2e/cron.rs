//! Issue #22, points 3-5: cron jobs and the heartbeat against the real gateway and the
//! real echo agent worker. Shapes found on the references: v4 (OpenClaw 2026.9)
//! `cron.list` pages `{jobs,total,offset,limit,hasMore,nextOffset}`, v3 (Clawdbot)
//! answers `{jobs}`; `cron.runs` likewise with `entries`; `cron.remove` answers
//! `{ok, removed}`; `cron.run` `{ok, ran}` (`reason: "not-due"` when not run); `cron`
//! events carry `{jobId, action: added|updated|started|finished|removed}`; the
//! `heartbeat` event and `last-heartbeat` `{ts, status, reason?, preview?}`.
//! Misfires move the gateway's one clock with the test-only `SWITCHBOARD_TEST_CLOCK`
//! offset across a stop, never by sleeping.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

fn admin_v4() -> Value {
    v4_cli_params(TOKEN, &["operator.admin"])
}

/// Polls `method` until `cond` holds on its payload (bounded).
async fn until(
    c: &mut Client,
    method: &str,
    params: Value,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c.request(method, params.clone()).await;
        assert_eq!(r["ok"], true, "{method}: {r}");
        if cond(&r["payload"]) {
            return r["payload"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on {method}: {r}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cron_add_run_runs_update_remove_over_v4_with_cron_events() {
    let gw = Gateway::start();
    let (mut c, hello) = Client::connect(&gw.url(), admin_v4()).await;
    let methods = hello["features"]["methods"].as_array().unwrap();
    for m in [
        "cron.add",
        "cron.get",
        "cron.run",
        "cron.runs",
        "wake",
        "set-heartbeats",
    ] {
        assert!(methods.iter().any(|x| x == m), "{m} not advertised");
    }
    let added = c
        .request(
            "cron.add",
            json!({"name": "hourly", "schedule": {"kind": "cron", "expr": "0 * * * *", "tz": "Europe/Berlin"},
                "sessionTarget": "isolated", "wakeMode": "now",
                "payload": {"kind": "agentTurn", "message": "cron says hi"}}),
        )
        .await;
    assert_eq!(added["ok"], true, "{added}");
    let job = &added["payload"];
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(
        job["misfire"], "run-once",
        "the reference's default is to catch up"
    );
    let next = job["state"]["nextRunAtMs"].as_u64().unwrap();
    assert_eq!(
        next % 3_600_000,
        0,
        "on the hour (Berlin is a whole-hour offset)"
    );
    let ev = c.event("cron").await;
    assert_eq!(ev["payload"]["action"], "added");
    // v4's status says where the jobs are kept and when the scheduler wakes next.
    let status = c.request("cron.status", json!({})).await;
    let st = &status["payload"];
    assert_eq!(st["enabled"], true, "{status}");
    assert_eq!(st["triggersEnabled"], true, "{status}");
    assert_eq!(st["jobs"], 1, "{status}");
    assert_eq!(st["nextWakeAtMs"], next, "{status}");
    assert_eq!(st["storage"], "sqlite", "{status}");
    assert_eq!(st["sqlitePath"], st["storePath"], "{status}");
    assert!(
        std::path::Path::new(st["sqlitePath"].as_str().unwrap()).is_file(),
        "{status}"
    );

    let list = c.request("cron.list", json!({})).await;
    assert_eq!(list["payload"]["total"], 1, "{list}");
    assert_eq!(list["payload"]["jobs"][0]["id"], id.as_str());
    assert_eq!(list["payload"]["hasMore"], false);
    // What the openclaw CLI's `cron list` needs of a page (it refuses one without a
    // revision) and shows: the agent a job runs as, and where its answer goes.
    let revision = list["payload"]["snapshotRevision"]
        .as_str()
        .unwrap_or_default();
    assert!(
        revision.starts_with("sha256:") && revision.len() > 20,
        "{list}"
    );
    assert_eq!(list["payload"]["jobs"][0]["effectiveAgentId"], "main");
    assert_eq!(list["payload"]["jobs"][0]["nextRunAtMs"], next);
    assert_eq!(
        list["payload"]["deliveryPreviews"][&id]["label"],
        "not requested"
    );
    let again = c.request("cron.list", json!({})).await;
    assert_eq!(
        again["payload"]["snapshotRevision"], revision,
        "the same jobs, the same revision"
    );
    let other = c
        .request("cron.list", json!({"agentId": "other", "query": "hour"}))
        .await;
    assert_eq!(other["payload"]["total"], 0, "{other}");
    let found = c.request("cron.list", json!({"query": "HOUR"})).await;
    assert_eq!(found["payload"]["total"], 1, "{found}");

    let not_due = c
        .request("cron.run", json!({"id": id, "mode": "due"}))
        .await;
    assert_eq!(
        not_due["payload"],
        json!({"ok": true, "ran": false, "reason": "not-due"})
    );
    let ran = c
        .request("cron.run", json!({"id": id, "mode": "force"}))
        .await;
    // v4 queues a forced run and answers at once, as the reference: `{ok, enqueued,
    // runId}`; the run's entry carries that id (the CLI's `--wait` polls for it).
    assert_eq!(ran["payload"]["ok"], true, "{ran}");
    assert_eq!(ran["payload"]["enqueued"], true, "{ran}");
    assert!(ran["payload"].get("ran").is_none(), "{ran}");
    let queued_id = ran["payload"]["runId"].as_str().unwrap().to_owned();
    let started = c.event("cron").await;
    assert_eq!(started["payload"]["action"], "started");
    let finished = c.event("cron").await;
    assert_eq!(finished["payload"]["action"], "finished");
    assert_eq!(finished["payload"]["summary"], "[echo] cron says hi");

    let runs = c.request("cron.runs", json!({"id": id})).await;
    let e = &runs["payload"]["entries"][0];
    assert_eq!(e["status"], "ok", "{runs}");
    assert_eq!(e["sessionKey"], format!("agent:main:cron:{id}"));
    assert_eq!(e["deliveryStatus"], "not-requested");
    assert_eq!(e["completionStatus"], "succeeded", "{runs}");
    let run_id = e["runId"].as_str().unwrap().to_owned();
    assert_eq!(run_id, queued_id);
    for (filter, want) in [
        (json!({"status": "error"}), 0),
        (json!({"status": "ok", "sortDir": "asc"}), 1),
        (json!({"deliveryStatus": "delivered"}), 0),
        (
            json!({"deliveryStatus": "not-requested", "query": "SAYS HI"}),
            1,
        ),
        (json!({"runId": run_id}), 1),
        (json!({"runId": "no-such-run"}), 0),
    ] {
        let mut params = filter.clone();
        params["id"] = json!(id);
        let r = c.request("cron.runs", params).await;
        assert_eq!(r["payload"]["total"], want, "{filter}: {r}");
    }
    // The turn is in the job's own session.
    let hist = c
        .request(
            "chat.history",
            json!({"sessionKey": format!("agent:main:cron:{id}")}),
        )
        .await;
    assert!(
        message_texts(&hist["payload"]).contains(&"[echo] cron says hi"),
        "{hist}"
    );

    let upd = c
        .request(
            "cron.update",
            json!({"id": id, "patch": {"enabled": false, "misfire": "skip"}}),
        )
        .await;
    assert_eq!(upd["payload"]["enabled"], false, "{upd}");
    assert_eq!(upd["payload"]["misfire"], "skip");
    assert!(upd["payload"]["state"]["nextRunAtMs"].is_null());
    let list = c.request("cron.list", json!({})).await;
    assert_eq!(
        list["payload"]["total"], 0,
        "disabled jobs are hidden by default"
    );
    let list = c
        .request("cron.list", json!({"includeDisabled": true}))
        .await;
    assert_eq!(list["payload"]["total"], 1);

    let bad = c
        .request("cron.add", json!({"name": "x", "schedule": {"kind": "cron", "expr": "61 * * * *"},
            "sessionTarget": "main", "wakeMode": "now", "payload": {"kind": "agentTurn", "message": "m"}}))
        .await;
    assert_eq!(bad["ok"], false);
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid cron expression"),
        "{bad}"
    );

    // A declared job is added once; the options the agent runner cannot act on are kept
    // and shown back, never dropped.
    let declared = json!({"name": "decl", "displayName": "Declared", "declarationKey": "my:decl",
        "schedule": {"kind": "cron", "expr": "0 9 * * *", "staggerMs": 0},
        "payload": {"kind": "agentTurn", "message": "m", "thinking": "low", "toolsAllow": ["exec"],
            "lightContext": true, "fallbacks": ["openai/gpt-4o"]}});
    let first = c.request("cron.add", declared.clone()).await;
    assert_eq!(first["payload"]["created"], true, "{first}");
    let job = &first["payload"]["job"];
    assert_eq!(job["displayName"], "Declared");
    assert_eq!(job["schedule"]["staggerMs"], 0);
    assert_eq!(job["payload"]["thinking"], "low");
    assert_eq!(job["payload"]["toolsAllow"], json!(["exec"]));
    assert_eq!(job["payload"]["lightContext"], true);
    assert_eq!(job["payload"]["fallbacks"], json!(["openai/gpt-4o"]));
    let second = c.request("cron.add", declared).await;
    assert_eq!(second["payload"]["created"], false, "{second}");
    assert_eq!(second["payload"]["job"]["id"], job["id"]);
    let decl_id = job["id"].clone();
    let rm = c.request("cron.remove", json!({"id": decl_id})).await;
    assert_eq!(rm["ok"], true, "{rm}");

    let rm = c.request("cron.remove", json!({"id": id})).await;
    assert_eq!(rm["payload"], json!({"ok": true, "removed": true}));
    let gone = c.request("cron.get", json!({"id": id})).await;
    assert_eq!(gone["ok"], false);
    // The reference's words and details: its CLI tells "not found" by `details.code`.
    assert_eq!(
        gone["error"]["message"],
        format!("cron job not found: {id}. List automations and retry with a current job id.")
    );
    assert_eq!(
        gone["error"]["details"],
        json!({"code": "CRON_JOB_NOT_FOUND", "jobId": id})
    );
    for (method, params) in [
        ("cron.remove", json!({"id": id})),
        ("cron.runs", json!({"id": id})),
        ("cron.run", json!({"id": id, "mode": "force"})),
    ] {
        let r = c.request(method, params).await;
        assert_eq!(r["ok"], false, "{method}: {r}");
        assert_eq!(
            r["error"]["details"]["code"], "CRON_JOB_NOT_FOUND",
            "{method}: {r}"
        );
    }
}

#[tokio::test]
async fn cron_changes_need_admin_and_reads_need_read() {
    let gw = Gateway::start();
    let (mut c, _) = Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    let list = c.request("cron.list", json!({})).await;
    assert_eq!(list["ok"], true, "{list}");
    let add = c
        .request("cron.add", json!({"name": "x", "schedule": {"kind": "every", "everyMs": 60000},
            "sessionTarget": "main", "wakeMode": "now", "payload": {"kind": "agentTurn", "message": "m"}}))
        .await;
    assert_eq!(add["ok"], false, "{add}");
    assert!(
        add["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operator.admin"),
        "{add}"
    );
}

#[tokio::test]
async fn v3_one_shot_at_job_fires_by_itself_and_is_removed_after_success() {
    let gw = Gateway::start();
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 300;
    let added = c
        .request(
            "cron.add",
            json!({"name": "soon", "schedule": {"kind": "at", "atMs": at_ms},
            "sessionTarget": "main", "wakeMode": "now",
            "payload": {"kind": "agentTurn", "message": "one shot"}}),
        )
        .await;
    assert_eq!(added["ok"], true, "{added}");
    let id = added["payload"]["id"].as_str().unwrap().to_owned();
    let list = c.request("cron.list", json!({})).await;
    assert!(
        list["payload"].get("total").is_none(),
        "v3 answers {{jobs}}: {list}"
    );
    assert_eq!(list["payload"]["jobs"][0]["id"], id.as_str());
    let runs = until(&mut c, "cron.runs", json!({"id": id}), |p| {
        p["entries"].as_array().is_some_and(|e| !e.is_empty())
    })
    .await;
    assert_eq!(runs["entries"][0]["status"], "ok", "{runs}");
    assert_eq!(runs["entries"][0]["scheduledAtMs"], at_ms);
    assert_eq!(runs["entries"][0]["sessionKey"], "agent:main:main");
    until(&mut c, "cron.list", json!({"includeDisabled": true}), |p| {
        p["jobs"].as_array().is_some_and(|j| j.is_empty())
    })
    .await;
    // v3's forced run answers when the run is over, as the reference (`{ok, ran: true}`).
    let every = c
        .request(
            "cron.add",
            json!({"name": "hourly", "schedule": {"kind": "every", "everyMs": 3_600_000},
            "sessionTarget": "isolated", "wakeMode": "now",
            "payload": {"kind": "agentTurn", "message": "forced"}}),
        )
        .await;
    let id = every["payload"]["id"].as_str().unwrap().to_owned();
    let status = c.request("cron.status", json!({})).await;
    assert_eq!(status["payload"]["jobs"], 1, "{status}");
    assert!(
        status["payload"].get("storage").is_none(),
        "v3's status is {{enabled, storePath, jobs, nextWakeAtMs}}: {status}"
    );
    let ran = c
        .request("cron.run", json!({"id": id, "mode": "force"}))
        .await;
    assert_eq!(ran["payload"]["ran"], true, "{ran}");
    assert_eq!(ran["payload"]["status"], "ok", "{ran}");
    let runs = c.request("cron.runs", json!({"id": id})).await;
    assert_eq!(
        runs["payload"]["entries"][0]["runId"], ran["payload"]["runId"],
        "{runs}"
    );
}

fn clock_env(offset_ms: i64) -> Vec<(String, String)> {
    vec![
        ("SWITCHBOARD_TEST_CLOCK".into(), "1".into()),
        (
            "SWITCHBOARD_TEST_CLOCK_OFFSET_MS".into(),
            offset_ms.to_string(),
        ),
    ]
}

#[tokio::test]
async fn misfire_while_stopped_run_once_runs_once_and_skip_records_a_skipped_run() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    let opts = |offset| GatewayOpts {
        state: Some(Arc::clone(&state)),
        env: clock_env(offset),
        ..Default::default()
    };
    let mut gw = Gateway::start_with(opts(0));
    let (mut c, _) = Client::connect(&gw.url(), admin_v4()).await;
    let mut ids = vec![];
    for misfire in ["run-once", "skip"] {
        let r = c
            .request(
                "cron.add",
                json!({"name": misfire,
                "schedule": {"kind": "cron", "expr": "0 * * * *", "tz": "UTC"},
                "sessionTarget": "isolated", "wakeMode": "now", "misfire": misfire,
                "payload": {"kind": "agentTurn", "message": format!("missed {misfire}")}}),
            )
            .await;
        assert_eq!(r["ok"], true, "{r}");
        ids.push((
            r["payload"]["id"].as_str().unwrap().to_owned(),
            r["payload"]["state"]["nextRunAtMs"].as_u64().unwrap(),
        ));
    }
    drop(c);
    gw.signal(nix::sys::signal::Signal::SIGTERM);
    gw.wait_exit();

    // Restart three hours "later": two or three top-of-the-hour fire times fell while
    // the gateway was stopped.
    let gw = Gateway::start_with(opts(3 * 3_600_000));
    let (mut c, _) = Client::connect(&gw.url(), admin_v4()).await;
    let (run_once, due_a) = &ids[0];
    let runs = until(&mut c, "cron.runs", json!({"id": run_once}), |p| {
        p["entries"].as_array().is_some_and(|e| !e.is_empty())
    })
    .await;
    let e = &runs["entries"][0];
    assert_eq!(e["status"], "ok", "{runs}");
    assert_eq!(e["misfire"], "run-once");
    assert_eq!(e["scheduledAtMs"], *due_a);
    assert!(e["missed"].as_u64().unwrap() >= 2, "{e}");
    assert_eq!(e["summary"], "[echo] missed run-once");
    let now = e["runAtMs"].as_u64().unwrap();
    assert!(
        e["nextRunAtMs"].as_u64().unwrap() > now,
        "then the next future time"
    );

    let (skip, due_b) = &ids[1];
    let runs = c.request("cron.runs", json!({"id": skip})).await;
    let entries = runs["payload"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{runs}");
    assert_eq!(entries[0]["status"], "skipped");
    assert_eq!(entries[0]["misfire"], "skip");
    assert_eq!(entries[0]["scheduledAtMs"], *due_b);
    let job = c.request("cron.get", json!({"id": skip})).await;
    assert_eq!(job["payload"]["state"]["lastRunStatus"], "skipped", "{job}");
    assert!(job["payload"]["state"]["nextRunAtMs"].as_u64().unwrap() > now);
    // The run-once job ran exactly once.
    let all = c.request("cron.runs", json!({"id": run_once})).await;
    assert_eq!(all["payload"]["total"], 1, "{all}");
}

#[tokio::test]
async fn heartbeat_reads_heartbeat_md_on_its_interval_and_on_wake_and_can_be_switched_off() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(
        state.path().join("config.json5"),
        r#"{ agents: { defaults: { heartbeat: { every: "300ms", prompt: "beat" } } } }"#,
    )
    .unwrap();
    std::fs::create_dir_all(state.path().join("workspace")).unwrap();
    std::fs::write(state.path().join("workspace/HEARTBEAT.md"), "# Checklist\n").unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(Arc::clone(&state)),
        ..Default::default()
    });
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    // Headings only: nothing to do, no turn.
    let ev = c.event("heartbeat").await;
    assert_eq!(ev["payload"]["status"], "skipped", "{ev}");
    assert_eq!(ev["payload"]["reason"], "empty-heartbeat-file");
    std::fs::write(
        state.path().join("workspace/HEARTBEAT.md"),
        "# Checklist\n- water the plants\n",
    )
    .unwrap();
    let sent = loop {
        let ev = c.event("heartbeat").await;
        if ev["payload"]["status"] == "sent" {
            break ev;
        }
    };
    assert!(
        sent["payload"]["preview"]
            .as_str()
            .unwrap()
            .contains("water the plants"),
        "{sent}"
    );
    let last = c.request("last-heartbeat", json!({})).await;
    assert!(last["payload"]["ts"].as_u64().is_some(), "{last}");

    let off = c.request("set-heartbeats", json!({"enabled": false})).await;
    assert_eq!(off["payload"], json!({"ok": true, "enabled": false}));
    loop {
        let ev = c.event("heartbeat").await;
        if ev["payload"]["reason"] == "disabled" {
            break;
        }
    }
    c.request("set-heartbeats", json!({"enabled": true})).await;
    let w = c
        .request("wake", json!({"mode": "now", "text": "door bell rang"}))
        .await;
    assert_eq!(w["payload"], json!({"ok": true}), "{w}");
    loop {
        let ev = c.event("heartbeat").await;
        if ev["payload"]["preview"]
            .as_str()
            .is_some_and(|p| p.contains("door bell rang"))
        {
            break;
        }
    }
}

/// v4 `cron.scratch.get`/`set`, as the reference: a job's private text, never in the
/// job's listing, compare-and-swapped on `expectedRevision`, capped at 256 KiB, cleared
/// by `content: null` (the revision goes on), and gone with the job. v3 has no scratch.
#[tokio::test]
async fn a_jobs_scratch_is_private_compare_and_swapped_and_goes_with_the_job() {
    let gw = Gateway::start();
    let (mut c, _) = Client::connect(&gw.url(), admin_v4()).await;
    let added = c
        .request(
            "cron.add",
            json!({"name": "monitor", "schedule": {"kind": "every", "everyMs": 3_600_000},
                "payload": {"kind": "agentTurn", "message": "check"}}),
        )
        .await;
    let id = added["payload"]["id"].as_str().unwrap().to_owned();
    let empty = c.request("cron.scratch.get", json!({"id": id})).await;
    assert_eq!(
        empty["payload"],
        json!({"scratch": null, "currentRevision": 0, "maxBytes": 262_144}),
        "{empty}"
    );
    let set = c
        .request(
            "cron.scratch.set",
            json!({"id": id, "content": "- the secret checklist", "expectedRevision": 0}),
        )
        .await;
    assert_eq!(set["payload"]["ok"], true, "{set}");
    assert_eq!(set["payload"]["currentRevision"], 1);
    assert_eq!(
        set["payload"]["scratch"]["content"],
        "- the secret checklist"
    );
    assert_eq!(set["payload"]["scratch"]["revision"], 1);
    // A writer that read revision 0 loses, and nothing is written.
    let stale = c
        .request(
            "cron.scratch.set",
            json!({"id": id, "content": "stale", "expectedRevision": 0}),
        )
        .await;
    assert_eq!(
        stale["payload"],
        json!({"ok": false, "reason": "revision-conflict", "currentRevision": 1}),
        "{stale}"
    );
    let got = c.request("cron.scratch.get", json!({"id": id})).await;
    assert_eq!(
        got["payload"]["scratch"]["content"],
        "- the secret checklist"
    );
    for (method, params) in [
        ("cron.get", json!({"id": id})),
        ("cron.list", json!({})),
        ("cron.runs", json!({"id": id})),
    ] {
        let r = c.request(method, params).await;
        assert_eq!(r["ok"], true, "{r}");
        assert!(
            !r.to_string().contains("secret checklist"),
            "{method} shows the scratch: {r}"
        );
    }
    // A missing `content` never clears; too much is refused with the size.
    let no_content = c.request("cron.scratch.set", json!({"id": id})).await;
    assert_eq!(no_content["ok"], false, "{no_content}");
    let big = "x".repeat(262_145);
    let too_big = c
        .request("cron.scratch.set", json!({"id": id, "content": big}))
        .await;
    assert_eq!(too_big["ok"], false);
    let msg = too_big["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("262144"), "{msg}");
    let cleared = c
        .request(
            "cron.scratch.set",
            json!({"id": id, "content": null, "expectedRevision": 1}),
        )
        .await;
    assert_eq!(
        cleared["payload"],
        json!({"ok": true, "scratch": null, "currentRevision": 2, "maxBytes": 262_144}),
        "{cleared}"
    );
    // Read-only operators do not see it (the reference's admin scope).
    let (mut reader, _) =
        Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    let r = reader.request("cron.scratch.get", json!({"id": id})).await;
    assert_eq!(r["ok"], false, "{r}");
    // Gone with the job.
    c.request("cron.remove", json!({"id": id})).await;
    let r = c.request("cron.scratch.get", json!({"id": id})).await;
    assert_eq!(r["error"]["details"]["code"], "CRON_JOB_NOT_FOUND", "{r}");
    let (mut v3, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    let r = v3.request("cron.scratch.get", json!({"id": id})).await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown method"),
        "{r}"
    );
}
