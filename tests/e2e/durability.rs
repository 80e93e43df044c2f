//! Issue #17, point 4: a side effect is acknowledged only once its outcome is durable.
//! The gateway's state directory is a small tmpfs that the test fills at the moment the
//! provider (a stand-in of the Telegram Bot API) accepts the message: the outcome cannot
//! be recorded, so the client must hear "not confirmed", never "delivered", the row must
//! stay `sending`, and once the disk has room again the outcome is recorded and a retry
//! with the same key returns it without a second message.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::json;

use crate::harness::*;
use crate::standin_telegram::{BOT_TOKEN, Telegram};
use crate::state_loss::{assert_side_effect_refused, assert_unhealthy};

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
pub struct Tmpfs {
    pub dir: Arc<tempfile::TempDir>,
}

impl Tmpfs {
    /// `Err(reason)` when the kernel does not let this test mount one.
    pub fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs { dir })
    }
}

/// Writes a filler file into `dir` until its file system is full; returns its path.
pub fn fill(dir: &Path) -> PathBuf {
    {
        let path = dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn row_state(db: &Path, key: &str) -> (String, Option<String>) {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row(
        "SELECT state, message_id FROM outbox WHERE idem_key = ?1",
        [format!("send:{key}")],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

#[tokio::test]
async fn an_outcome_that_cannot_be_recorded_is_not_acknowledged_and_is_kept_once_there_is_room() {
    let fs = match Tmpfs::mount("16m") {
        Ok(fs) => fs,
        Err(reason) => {
            println!("skipped: cannot mount a tmpfs here ({reason})");
            return;
        }
    };
    let tg = Telegram::start();
    std::fs::write(
        fs.dir.path().join("config.json5"),
        format!(
            r#"{{ channels: {{ telegram: {{ botToken: "{BOT_TOKEN}", apiUrl: "{}", pollTimeoutSeconds: 1 }} }} }}"#,
            tg.url
        ),
    )
    .unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(Arc::clone(&fs.dir)),
        extra: vec!["--worker-health-interval-ms".into(), "100".into()],
        ..Default::default()
    });
    let (mut op, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    op.wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;

    // The disk fills up exactly when Telegram has accepted the message.
    let filler: Arc<std::sync::Mutex<Option<PathBuf>>> = Arc::default();
    let (hook_fs, hook_filler) = (Arc::clone(&fs.dir), Arc::clone(&filler));
    tg.with(|s| {
        s.on_accept = Some(Arc::new(move || {
            let mut f = hook_filler.lock().unwrap();
            if f.is_none() {
                *f = Some(fill(hook_fs.path()));
            }
        }))
    });
    let params = json!({"to": "42", "message": "durable or nothing", "idempotencyKey": "full-1"});
    let r = op.request("send", params.clone()).await;
    assert_eq!(
        r["ok"], false,
        "never 'delivered' while the outcome is not recorded: {r}"
    );
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("not confirmed") && msg.contains("delivered"),
        "{r}"
    );
    assert!(msg.contains("full"), "says why: {r}");
    assert_eq!(r["error"]["details"]["status"], "unrecorded", "{r}");
    assert_eq!(tg.sent_to("42").len(), 1, "the provider has it");
    // What is durably known: the delivery was under way.
    let db = fs.dir.path().join("switchboard.sqlite");
    assert_eq!(row_state(&db, "full-1").0, "sending");
    assert_unhealthy(&gw, &mut op, "full").await;
    assert_side_effect_refused(&mut op, "full").await;

    // Room again: the held outcome is recorded, health recovers, the retry returns it.
    let path = filler.lock().unwrap().take().expect("the disk was filled");
    std::fs::remove_file(path).unwrap();
    gw.wait_log("the outcome recorded", |l| {
        l.contains("a delivery's outcome is recorded after all")
    });
    let (state, message_id) = row_state(&db, "full-1");
    assert_eq!(state, "delivered");
    let sent = tg.sent_to("42");
    assert_eq!(message_id, Some(sent[0].message_id.to_string()));
    let h = op.request("health", json!({"probe": true})).await;
    assert_eq!(h["ok"], true, "{h}");
    let again = op.request("send", params).await;
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(
        again["payload"]["messageId"],
        sent[0].message_id.to_string()
    );
    assert_eq!(tg.sent_to("42").len(), 1, "no second message");
    drop(op);
    drop(gw);
}
