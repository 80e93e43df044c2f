//! Issue #17, point 3: the state directory knows it has been used. A missing, empty or
//! unreadable database in a used directory refuses to start (exit 8) unless the
//! operator passes `--reset-state`; a corrupt or unwritable database fails `health` and
//! `/healthz` with the reason and refuses requests that would have to record something.
//! Real files, changed between runs of the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::harness::*;

/// The exit code for a lost database in a used state directory (`ops::exit`).
const STATE_LOST: i32 = 8;

fn db_file(dir: &Path) -> PathBuf {
    dir.join("switchboard.sqlite")
}

/// Starts a gateway on `state`, then stops it cleanly: the directory has been used.
fn use_once(state: &Arc<tempfile::TempDir>) {
    let mut gw = Gateway::start_with(GatewayOpts {
        state: Some(Arc::clone(state)),
        ..Default::default()
    });
    gw.signal(Signal::SIGTERM);
    assert_eq!(gw.wait_exit(), Some(0), "{}", gw.log());
    assert!(state.path().join("state-initialized").exists());
}

/// Runs `gateway run` on `state` expecting it to exit by itself; its code and log.
fn run_to_exit(state: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let opts = GatewayOpts {
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let (mut child, log) = spawn_gateway(&opts, state);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            // The log reader gets the last lines once the pipe closes.
            wait_log(&log, "the refusal", |l| {
                l.contains("ERROR") || l.contains("error")
            });
            return (status.code(), log.lock().unwrap().clone());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the gateway did not exit by itself:\n{}",
                log.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `GET path` on the gateway's port: status code and body.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// The refusal a recording method gets while the database cannot record.
pub async fn assert_side_effect_refused(c: &mut Client, reason: &str) {
    let r = c
        .request(
            "agent",
            json!({"message": "hello", "idempotencyKey": format!("k-{reason}")}),
        )
        .await;
    assert_eq!(r["ok"], false, "{r}");
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("cannot record") && msg.contains(reason) && msg.contains("nothing was done"),
        "{r}"
    );
    assert_eq!(r["error"]["code"], "UNAVAILABLE", "{r}");
}

/// `health` fails with the reason, `/healthz` answers 503 with it.
pub async fn assert_unhealthy(gw: &Gateway, c: &mut Client, reason: &str) {
    let h = c.request("health", json!({"probe": true})).await;
    assert_eq!(h["ok"], false, "{h}");
    let msg = h["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("unhealthy") && msg.contains(reason), "{h}");
    let (code, body) = http_get(gw.port, "/healthz");
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains(reason),
        "{v}"
    );
}

#[tokio::test]
async fn a_used_state_dir_whose_database_is_gone_refuses_to_start_until_reset_state() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    use_once(&state);
    let db = db_file(state.path());
    for f in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{f}", db.display()));
    }
    let (code, log) = run_to_exit(state.path(), &[]);
    assert_eq!(code, Some(STATE_LOST), "{log}");
    assert!(log.contains("is missing or empty"), "{log}");
    assert!(log.contains(&db.display().to_string()), "{log}");
    assert!(
        log.contains("state-initialized"),
        "names the evidence: {log}"
    );
    assert!(log.contains("--reset-state"), "says what to do: {log}");
    assert!(!db.exists(), "nothing was created in its place");

    // The operator decides: one start with --reset-state begins afresh.
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(Arc::clone(&state)),
        extra: vec!["--reset-state".into()],
        ..Default::default()
    });
    gw.wait_log("the reset noted", |l| {
        l.contains("--reset-state: the missing or empty database starts afresh")
    });
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    assert_eq!(c.request("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn a_truncated_database_is_refused_and_so_is_one_missing_beside_an_old_key_file() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    use_once(&state);
    let db = db_file(state.path());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(0)
        .unwrap();
    let (code, log) = run_to_exit(state.path(), &[]);
    assert_eq!(code, Some(STATE_LOST), "{log}");
    assert!(log.contains("is missing or empty"), "{log}");
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "left as found");

    // A directory from before the marker existed: its key file shows it was used.
    let old = tempfile::tempdir().unwrap();
    std::fs::write(old.path().join("device-token.key"), [7u8; 32]).unwrap();
    let (code, log) = run_to_exit(old.path(), &[]);
    assert_eq!(code, Some(STATE_LOST), "{log}");
    assert!(log.contains("device-token.key"), "{log}");
}

#[tokio::test]
async fn a_database_with_a_corrupt_header_is_refused_and_reset_state_moves_it_aside() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    use_once(&state);
    let db = db_file(state.path());
    let mut bytes = std::fs::read(&db).unwrap();
    bytes[..100].copy_from_slice(&[0x5a; 100]);
    std::fs::write(&db, &bytes).unwrap();
    let (code, log) = run_to_exit(state.path(), &[]);
    assert_eq!(code, Some(STATE_LOST), "{log}");
    assert!(log.contains("is damaged"), "{log}");
    assert!(log.contains("--reset-state"), "{log}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes,
        "the damaged file is untouched"
    );

    let gw = Gateway::start_with(GatewayOpts {
        state: Some(Arc::clone(&state)),
        extra: vec!["--reset-state".into()],
        ..Default::default()
    });
    gw.wait_log("the move noted", |l| {
        l.contains("the damaged database was moved aside")
    });
    let aside: Vec<_> = std::fs::read_dir(state.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("switchboard.sqlite.damaged-")
        })
        .collect();
    assert_eq!(aside.len(), 1, "the damaged file is kept aside");
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), bytes);
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    assert_eq!(c.request("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn a_corrupt_outbox_page_fails_health_and_refuses_side_effects_without_a_log_loop() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    use_once(&state);
    let db = db_file(state.path());
    let (root, page_size): (i64, i64) = {
        let c = rusqlite::Connection::open(&db).unwrap();
        let root = c
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'outbox'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let size = c
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        (root, size)
    };
    let mut bytes = std::fs::read(&db).unwrap();
    let at = ((root - 1) * page_size) as usize;
    bytes[at..at + page_size as usize].fill(0xa5);
    std::fs::write(&db, &bytes).unwrap();

    let gw = Gateway::start_degraded(GatewayOpts {
        state: Some(Arc::clone(&state)),
        ..Default::default()
    });
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    assert_unhealthy(&gw, &mut c, "corrupt").await;
    assert_side_effect_refused(&mut c, "corrupt").await;
    // Reads that do not touch the damaged table still answer.
    let s = c.request("sessions.list", json!({})).await;
    assert_eq!(s["ok"], true, "{s}");
    // Said once, not every second: ask again and count.
    assert_unhealthy(&gw, &mut c, "corrupt").await;
    let log = gw.log();
    assert_eq!(
        log.matches("the database cannot record").count(),
        1,
        "{log}"
    );
    assert!(log.matches("cannot read the outbox").count() <= 1, "{log}");
}

/// Makes `file` read-only for this process, however privileged it is: a read-only bind
/// mount when running as root (root ignores file modes), else mode 0400.
struct ReadOnly {
    file: PathBuf,
    mounted: bool,
}

impl ReadOnly {
    fn new(file: &Path) -> Option<ReadOnly> {
        if !nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o400)).unwrap();
            return Some(ReadOnly {
                file: file.to_owned(),
                mounted: false,
            });
        }
        let bind = Command::new("mount")
            .arg("--bind")
            .arg(file)
            .arg(file)
            .status()
            .ok()?;
        if !bind.success() {
            return None;
        }
        let ro = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(file)
            .status()
            .ok()?;
        let guard = ReadOnly {
            file: file.to_owned(),
            mounted: true,
        };
        ro.success().then_some(guard)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if self.mounted {
            // Lazily: the gateway still holds the file open through the mount.
            let _ = Command::new("umount").arg("-l").arg(&self.file).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.file, std::fs::Permissions::from_mode(0o600));
        }
    }
}

#[tokio::test]
async fn a_read_only_database_fails_health_with_the_reason_and_refuses_side_effects() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    use_once(&state);
    let Some(ro) = ReadOnly::new(&db_file(state.path())) else {
        println!("skipped: the kernel refused a read-only bind mount (not permitted here)");
        return;
    };
    let probe = std::fs::OpenOptions::new()
        .write(true)
        .open(db_file(state.path()));
    assert!(probe.is_err(), "the file really is read-only");
    let gw = Gateway::start_degraded(GatewayOpts {
        state: Some(Arc::clone(&state)),
        ..Default::default()
    });
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    assert_unhealthy(&gw, &mut c, "read-only").await;
    assert_side_effect_refused(&mut c, "read-only").await;

    // Writable again: the gateway notices by itself (its probe) and records again.
    drop(ro);
    gw.wait_log("the recovery logged", |l| {
        l.contains("the database records again")
    });
    let h = c.request("health", json!({"probe": true})).await;
    assert_eq!(h["ok"], true, "{h}");
    let (code, _) = http_get(gw.port, "/healthz");
    assert_eq!(code, 200);
    let r = c
        .request(
            "agent",
            json!({"message": "hello", "idempotencyKey": "after-ro"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    drop(c);
    drop(gw);
}
