//! Driving the stand-in `imsg` (`tests/src/bin/standin-imsg.rs`, written from imsg's
//! `docs/rpc.md` and `docs/json.md`): its "Messages database" is a file of JSON lines
//! (row id = line number) that these helpers append to, and it records its starts, the
//! requests it got and what it sent in files next to it. No Mac here: this is the only
//! way iMessage can be tested on Linux.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value, json};

use crate::harness::WAIT;

pub struct Imsg {
    _dir: tempfile::TempDir,
    /// The database file, given to the worker as `dbPath`.
    pub db: PathBuf,
}

impl Imsg {
    pub fn new() -> Imsg {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("chat.db");
        std::fs::write(&db, "").unwrap();
        Imsg { _dir: dir, db }
    }

    pub fn side(&self, what: &str) -> PathBuf {
        let mut s = self.db.as_os_str().to_owned();
        s.push(format!(".{what}"));
        PathBuf::from(s)
    }

    /// Appends a message row; its row id.
    pub fn push(&self, mut m: Value) -> i64 {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.db)
            .unwrap();
        f.lock().unwrap();
        let rows = std::fs::read_to_string(&self.db).unwrap().lines().count() as i64;
        let row = rows + 1;
        if m["guid"].is_null() {
            m["guid"] = json!(format!("IN-{row}"));
        }
        writeln!(f, "{m}").unwrap();
        row
    }

    /// A direct message from `handle` (its chat: `chat_id`).
    pub fn push_dm(&self, chat_id: i64, handle: &str, text: &str) -> i64 {
        self.push(
            json!({"chat_id": chat_id, "chat_identifier": handle, "sender": handle,
            "sender_name": "", "is_from_me": false, "is_group": false, "text": text,
            "participants": [handle], "created_at": "2026-01-02T03:04:05.000Z"}),
        )
    }

    pub fn push_group(&self, chat_id: i64, handle: &str, text: &str) -> i64 {
        self.push(
            json!({"chat_id": chat_id, "chat_identifier": format!("chat{chat_id}"),
            "chat_name": "Team", "sender": handle, "is_from_me": false, "is_group": true,
            "text": text, "participants": [handle, "+15550000002"],
            "created_at": "2026-01-02T03:04:05.000Z"}),
        )
    }

    fn lines(&self, what: &str) -> Vec<Value> {
        read_lines(&self.side(what))
    }

    /// Every `send` the stand-in accepted.
    pub fn sent(&self) -> Vec<Value> {
        self.lines("sent")
    }

    pub fn sent_texts(&self) -> Vec<String> {
        self.sent()
            .iter()
            .map(|s| s["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// One line per start of the stand-in: `{pid, args}`.
    pub fn spawns(&self) -> Vec<Value> {
        self.lines("spawns")
    }

    /// Every request received, across starts.
    pub fn requests(&self) -> Vec<Value> {
        self.lines("requests")
    }

    pub fn subscribes(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["method"] == "watch.subscribe")
            .collect()
    }

    /// The running stand-in exits (status 1), as a crash of imsg.
    pub fn exit(&self) {
        std::fs::write(self.side("exit"), "").unwrap();
    }

    /// From its next start on, the stand-in lacks Full Disk Access.
    pub fn without_full_disk_access(&self) {
        std::fs::write(self.side("fda"), "").unwrap();
    }

    /// Waits until `cond` holds for the stand-in's files.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&Imsg) -> bool) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if cond(self) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!(
            "timed out waiting for {what}; spawns {:?}, sent {:?}, requests {:?}",
            self.spawns(),
            self.sent(),
            self.requests()
        );
    }
}

fn read_lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Whether a process with this PID exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}
