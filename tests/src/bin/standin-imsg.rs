//! A stand-in for `imsg rpc` (steipete/imsg v0.9), written from its documentation
//! (`docs/rpc.md`, `docs/json.md`, README "Permissions Troubleshooting"): JSON-RPC 2.0
//! over stdin/stdout, one JSON object per line; `chats.list`, `messages.history`,
//! `watch.subscribe` (`since_rowid` is an exclusive cursor; without it, only new rows)
//! with `message` notifications, `watch.unsubscribe`, `send`. There is no Mac here: the
//! "Messages database" is a file of JSON lines, one message per line, its row id the
//! line number, that tests append to.
//!
//! `imsg rpc [--json] --db <file>` (or `STANDIN_IMSG_DB`). Files next to `<file>`:
//! * `<file>.spawns` — one line per start: `{"pid", "args"}` (written by the stand-in);
//! * `<file>.requests` — every request line received (written);
//! * `<file>.sent` — every accepted `send`, with its row id and guid (written);
//! * `<file>.fda` — present: start as imsg does without Full Disk Access, answering every
//!   request with the start-up error (read);
//! * `<file>.exit` — appears: the stand-in removes it and exits with status 1 (read);
//! * `<file>.send-error` — present: the next `send` fails with its text (read, removed).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

type Out = Arc<Mutex<std::io::Stdout>>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("rpc") {
        eprintln!("standin-imsg: only `imsg rpc` is implemented");
        std::process::exit(2);
    }
    let db = args
        .iter()
        .position(|a| a == "--db")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var("STANDIN_IMSG_DB").ok())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            eprintln!("standin-imsg: --db <file> is required here");
            std::process::exit(2)
        });
    append(
        &side(&db, "spawns"),
        &json!({"pid": std::process::id(), "args": args}),
    );
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    // `<file>.exit` ends the process, as a crash of imsg would.
    {
        let db = db.clone();
        std::thread::spawn(move || {
            loop {
                if std::fs::remove_file(side(&db, "exit")).is_ok() {
                    eprintln!("standin-imsg: exiting as asked");
                    std::process::exit(1);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }
    let fda = side(&db, "fda").exists();
    let next_sub = AtomicI64::new(1);
    let mut subs: Vec<(i64, Arc<AtomicBool>)> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        append_raw(&side(&db, "requests"), line.trim());
        let req: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                write(
                    &out,
                    &json!({"jsonrpc": "2.0", "id": null,
                    "error": {"code": -32700, "message": "Parse error", "data": e.to_string()}}),
                );
                continue;
            }
        };
        let id = req["id"].clone();
        let params = req["params"].clone();
        if fda {
            // What imsg answers when it cannot open chat.db (README, docs/rpc.md).
            let path = db.display();
            write(
                &out,
                &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603,
                "message": "Internal error",
                "data": format!("authorization denied (code: 23)\n\n⚠️  Permission Error: Cannot access Messages database\n\nThe Messages database at {path} requires Full Disk Access permission.\n\nTo fix:\n1. Open System Settings → Privacy & Security → Full Disk Access\n2. Add your terminal application and any parent launcher")}}),
            );
            continue;
        }
        let result = match req["method"].as_str().unwrap_or_default() {
            "chats.list" => Ok(json!({"chats": chats(&read_all(&db), limit(&params, 20))})),
            "messages.history" => match params["chat_id"].as_i64() {
                Some(chat) => {
                    let mut ms: Vec<Value> = read_all(&db)
                        .into_iter()
                        .filter(|m| m["chat_id"] == chat)
                        .collect();
                    ms.reverse();
                    ms.truncate(limit(&params, 50));
                    Ok(json!({"messages": ms}))
                }
                None => Err((-32602, "chat_id is required".to_owned())),
            },
            "watch.subscribe" => {
                let sub = next_sub.fetch_add(1, Ordering::SeqCst);
                let stop = Arc::new(AtomicBool::new(false));
                let since = params["since_rowid"]
                    .as_i64()
                    .unwrap_or_else(|| read_all(&db).len() as i64);
                let chat = params["chat_id"].as_i64();
                let (db, out, stop2) = (db.clone(), Arc::clone(&out), Arc::clone(&stop));
                subs.push((sub, stop));
                // The answer goes out before the first notification.
                write(
                    &out,
                    &json!({"jsonrpc": "2.0", "id": id, "result": {"subscription": sub}}),
                );
                std::thread::spawn(move || watch(&db, &out, sub, since, chat, &stop2));
                continue;
            }
            "watch.unsubscribe" => {
                let sub = params["subscription"].as_i64().unwrap_or(-1);
                match subs.iter().position(|(s, _)| *s == sub) {
                    Some(i) => {
                        subs.remove(i).1.store(true, Ordering::SeqCst);
                        Ok(json!({"ok": true}))
                    }
                    None => Err((-32602, format!("unknown subscription {sub}"))),
                }
            }
            "send" => send(&db, &params),
            other => Err((-32601, other.to_owned())),
        };
        let reply = match result {
            Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
            Err((code, data)) => {
                let message = match code {
                    -32601 => "Method not found",
                    -32602 => "Invalid params",
                    _ => "Internal error",
                };
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
            }
        };
        write(&out, &reply);
    }
    // stdin closed: `imsg rpc` exits cleanly.
}

fn limit(p: &Value, default: usize) -> usize {
    p["limit"].as_u64().map(|l| l as usize).unwrap_or(default)
}

fn side(db: &Path, what: &str) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(format!(".{what}"));
    PathBuf::from(s)
}

fn write(out: &Out, v: &Value) {
    let mut o = out.lock().unwrap();
    let _ = writeln!(o, "{v}");
    let _ = o.flush();
}

fn append_raw(path: &Path, line: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let _ = f.lock();
    writeln!(f, "{line}").unwrap();
}

fn append(path: &Path, v: &Value) {
    append_raw(path, &v.to_string());
}

/// Every message, with `id` = its row (line number).
fn read_all(db: &Path) -> Vec<Value> {
    let Ok(f) = File::open(db) else {
        return vec![];
    };
    let _ = f.lock_shared();
    std::io::BufReader::new(&f)
        .lines()
        .map_while(Result::ok)
        .enumerate()
        .map(|(i, l)| {
            let mut v: Value = serde_json::from_str(&l).unwrap_or(json!({}));
            v["id"] = json!(i as i64 + 1);
            v
        })
        .collect()
}

fn watch(db: &Path, out: &Out, sub: i64, mut since: i64, chat: Option<i64>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        for m in read_all(db) {
            let row = m["id"].as_i64().unwrap_or(0);
            if row <= since {
                continue;
            }
            since = row;
            if chat.is_some_and(|c| m["chat_id"] != c) {
                continue;
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
            write(
                out,
                &json!({"jsonrpc": "2.0", "method": "message",
                "params": {"subscription": sub, "message": m}}),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The chats the messages belong to (a direct chat's identifier is the handle).
fn chats(all: &[Value], limit: usize) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for m in all.iter().rev() {
        let id = m["chat_id"].as_i64().unwrap_or(0);
        if out.iter().any(|c| c["id"] == id) {
            continue;
        }
        let group = m["is_group"] == true;
        let ident = m["chat_identifier"].as_str().unwrap_or_default();
        out.push(json!({"id": id, "identifier": ident, "guid": format!("iMessage;{};{ident}", if group {"+"} else {"-"}),
            "name": m["chat_name"].as_str().unwrap_or(ident), "service": "iMessage", "is_group": group,
            "participants": m["participants"].clone(), "last_message_at": m["created_at"].clone()}));
    }
    out.truncate(limit);
    out
}

fn send(db: &Path, p: &Value) -> Result<Value, (i64, String)> {
    let text = p["text"].as_str().unwrap_or_default();
    if text.is_empty() && p["file"].is_null() {
        return Err((-32602, "text or file is required".into()));
    }
    if let Ok(e) = std::fs::read_to_string(side(db, "send-error")) {
        let _ = std::fs::remove_file(side(db, "send-error"));
        return Err((-32603, e.trim().to_owned()));
    }
    let all = read_all(db);
    let (chat_id, ident, group) = match (p["chat_id"].as_i64(), p["to"].as_str()) {
        (Some(c), None) => {
            let Some(m) = all.iter().find(|m| m["chat_id"] == c) else {
                return Err((-32603, format!("Chat not found: {c}")));
            };
            (
                c,
                m["chat_identifier"].as_str().unwrap_or_default().to_owned(),
                m["is_group"] == true,
            )
        }
        (None, Some(to)) if !to.is_empty() => {
            let existing = all
                .iter()
                .find(|m| m["chat_identifier"] == to && m["is_group"] != true)
                .and_then(|m| m["chat_id"].as_i64());
            let next = all
                .iter()
                .filter_map(|m| m["chat_id"].as_i64())
                .max()
                .unwrap_or(0)
                + 1;
            (existing.unwrap_or(next), to.to_owned(), false)
        }
        _ => return Err((-32602, "exactly one of to or chat_id is required".into())),
    };
    let rows = {
        // The row is appended and numbered under the lock the tests append under.
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(db)
            .unwrap();
        f.lock().unwrap();
        let rows = std::fs::read_to_string(db)
            .unwrap_or_default()
            .lines()
            .count() as i64;
        let guid = format!("SENT-{}", rows + 1);
        let row = json!({"chat_id": chat_id, "chat_identifier": ident, "guid": guid, "sender": "",
            "is_from_me": true, "is_group": group, "text": text, "created_at": "2026-01-01T00:00:00Z"});
        writeln!(f, "{row}").unwrap();
        rows + 1
    };
    let guid = format!("SENT-{rows}");
    let mut record = p.clone();
    record["id"] = json!(rows);
    record["guid"] = json!(guid);
    append(&side(db, "sent"), &record);
    // `<file>.send-hang`: Messages took the message, but the answer never comes (a test
    // kills the worker in exactly this window).
    if std::fs::remove_file(side(db, "send-hang")).is_ok() {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    Ok(json!({"ok": true, "id": rows, "guid": guid}))
}
