//! The `imsg rpc` child: spawned (locally or through `ssh -T`), spoken to in JSON-RPC 2.0,
//! one JSON object per line on its stdin and stdout (imsg's `docs/rpc.md`).
//!
//! The child never outlives the worker: it gets SIGKILL when the worker dies (Linux
//! `PR_SET_PDEATHSIG`; elsewhere its stdin closes, which ends `imsg rpc`), and it is killed
//! when its handle is dropped. Every queue is bounded: at most [`MAX_PENDING`] calls in
//! flight, [`NOTIFICATIONS`] unread notifications (more are dropped and flagged, so the
//! watcher re-subscribes from its cursor and loses nothing), lines of at most [`MAX_LINE`].

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot, watch};

use crate::Config;

pub const MAX_PENDING: usize = 64;
pub const NOTIFICATIONS: usize = 1024;
pub const MAX_LINE: usize = 4 << 20;
/// The last bytes of imsg's stderr kept for error reports.
const STDERR_TAIL: usize = 2048;

/// The program and arguments that start `imsg rpc`.
pub fn command_line(cfg: &Config) -> (String, Vec<String>) {
    let mut imsg = vec![cfg.cli_path.clone(), "rpc".into(), "--json".into()];
    if let Some(db) = &cfg.db_path {
        imsg.push("--db".into());
        imsg.push(db.clone());
    }
    match &cfg.remote_host {
        None => {
            let program = imsg.remove(0);
            (program, imsg)
        }
        Some(host) => {
            // ssh joins the remote command with spaces for the remote shell: quote each
            // word. BatchMode: never prompt (there is no terminal), fail instead.
            let remote = imsg
                .iter()
                .map(|w| shell_quote(w))
                .collect::<Vec<_>>()
                .join(" ");
            let args = [
                "-T",
                "-o",
                "BatchMode=yes",
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "ServerAliveCountMax=3",
                "--",
                host,
                &remote,
            ];
            ("ssh".into(), args.iter().map(|s| s.to_string()).collect())
        }
    }
}

/// A word for a POSIX shell: as is when it is plainly safe, else in single quotes.
pub fn shell_quote(w: &str) -> String {
    let safe = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,~".contains(c));
    if safe && !w.starts_with('~') {
        w.to_owned()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// A JSON-RPC error object from imsg.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    /// imsg puts the human-readable reason here (`data`), when there is one.
    pub data: String,
}

impl RpcError {
    /// Message and data in one text, as imsg gave them.
    pub fn text(&self) -> String {
        if self.data.is_empty() || self.data == self.message {
            self.message.clone()
        } else {
            format!("{}: {}", self.message, self.data)
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    #[error("imsg answered with an error: {}", .0.text())]
    Rpc(RpcError),
    #[error("imsg exited")]
    Exited,
    #[error("imsg did not answer {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("too many imsg calls in flight")]
    Busy,
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>>;

/// One running `imsg rpc`.
pub struct Imsg {
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    pending: Arc<Pending>,
    next_id: AtomicU64,
    /// Set when a notification was dropped because the queue was full.
    pub overflowed: Arc<AtomicBool>,
    /// `Some` once the child exited.
    exit: watch::Receiver<Option<Exit>>,
    kill: Mutex<Option<oneshot::Sender<()>>>,
    pub pid: u32,
    stderr: Arc<Mutex<String>>,
}

/// How the child ended.
#[derive(Debug, Clone)]
pub struct Exit {
    pub status: Option<ExitStatus>,
    /// The end of what it wrote on stderr.
    pub stderr: String,
}

impl Exit {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn describe(&self) -> String {
        let how = match self.status {
            Some(s) => s.to_string(),
            None => "ended".into(),
        };
        let tail = self.stderr.trim();
        if tail.is_empty() {
            how
        } else {
            format!("{how}; stderr: {}", last_lines(tail, 3))
        }
    }
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// Spawns `imsg rpc`; the notifications (`method` `message`) come on the receiver.
pub fn spawn(cfg: &Config) -> std::io::Result<(Arc<Imsg>, mpsc::Receiver<Value>)> {
    let (program, args) = command_line(cfg);
    let mut cmd = Command::new(&program);
    cmd.args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of the parent.
    unsafe {
        let parent = std::process::id() as i32;
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            // The worker died between fork and prctl: do not start at all.
            if nix::unistd::getppid().as_raw() != parent {
                return Err(std::io::Error::other("the worker is gone"));
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or(0);
    let stdin = child.stdin.take();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let stderr_pipe = child.stderr.take();
    let pending: Arc<Pending> = Arc::default();
    let overflowed = Arc::new(AtomicBool::new(false));
    let stderr = Arc::new(Mutex::new(String::new()));
    let (notify_tx, notify_rx) = mpsc::channel(NOTIFICATIONS);
    let (exit_tx, exit_rx) = watch::channel(None);
    let (kill_tx, kill_rx) = oneshot::channel();
    if let Some(e) = stderr_pipe {
        tokio::spawn(keep_stderr(e, Arc::clone(&stderr)));
    }
    let reader = tokio::spawn(read_stdout(
        stdout,
        Arc::clone(&pending),
        notify_tx,
        Arc::clone(&overflowed),
    ));
    tokio::spawn(reap(
        child,
        kill_rx,
        reader,
        Arc::clone(&pending),
        Arc::clone(&stderr),
        exit_tx,
    ));
    tracing::info!(pid, program = %program, "imsg rpc started");
    Ok((
        Arc::new(Imsg {
            stdin: tokio::sync::Mutex::new(stdin),
            pending,
            next_id: AtomicU64::new(1),
            overflowed,
            exit: exit_rx,
            kill: Mutex::new(Some(kill_tx)),
            pid,
            stderr,
        }),
        notify_rx,
    ))
}

/// Waits for the child (or kills it when asked), then fails every call still waiting.
async fn reap(
    mut child: Child,
    kill: oneshot::Receiver<()>,
    reader: tokio::task::JoinHandle<()>,
    pending: Arc<Pending>,
    stderr: Arc<Mutex<String>>,
    exit: watch::Sender<Option<Exit>>,
) {
    let status = tokio::select! {
        s = child.wait() => s.ok(),
        _ = kill => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    // Whatever it still wrote is read (briefly), so its last answers are not lost.
    let _ = tokio::time::timeout(Duration::from_millis(500), reader).await;
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let stderr = stderr.lock().unwrap_or_else(|p| p.into_inner()).clone();
    exit.send_replace(Some(Exit { status, stderr }));
}

async fn keep_stderr(pipe: impl AsyncRead + Unpin, tail: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_line_bounded(&mut lines, &mut buf, STDERR_TAIL).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        tracing::debug!(target: "imsg", "{line}");
        let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
        t.push_str(line);
        t.push('\n');
        if t.len() > STDERR_TAIL {
            let mut cut = t.len() - STDERR_TAIL;
            while !t.is_char_boundary(cut) {
                cut += 1;
            }
            t.drain(..cut);
        }
    }
}

/// Reads one line of at most `max` bytes into `buf` (without the newline; a longer line
/// is cut there and its rest skipped). `Ok(0)` at the end.
async fn read_line_bounded<R: AsyncBufReadExt + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(total);
        }
        let (used, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let keep = used - usize::from(done);
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..keep.min(room)]);
        total += used;
        r.consume(used);
        if done {
            return Ok(total);
        }
    }
}

async fn read_stdout(
    stdout: impl AsyncRead + Unpin,
    pending: Arc<Pending>,
    notify: mpsc::Sender<Value>,
    overflowed: Arc<AtomicBool>,
) {
    let mut r = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_line_bounded(&mut r, &mut buf, MAX_LINE + 1).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.len() > MAX_LINE {
            tracing::warn!("imsg wrote a line over {MAX_LINE} bytes; ignored");
            overflowed.store(true, Ordering::SeqCst);
            continue;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&buf) else {
            tracing::warn!("imsg wrote a line that is not JSON; ignored");
            continue;
        };
        if v.get("method").is_some() && v.get("id").is_none_or(Value::is_null) {
            if v["method"] == "message" {
                if notify.try_send(v).is_err() {
                    overflowed.store(true, Ordering::SeqCst);
                }
            } else {
                tracing::debug!(method = %v["method"], "imsg notification ignored");
            }
            continue;
        }
        let Some(id) = response_id(&v) else {
            tracing::warn!("imsg answered without a usable id; ignored");
            continue;
        };
        let Some(tx) = pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
        else {
            continue; // a call that timed out meanwhile
        };
        let outcome = match v.get("error") {
            Some(e) if !e.is_null() => Err(RpcError {
                code: e["code"].as_i64().unwrap_or(0),
                message: e["message"].as_str().unwrap_or("unknown error").to_owned(),
                data: match &e["data"] {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            }),
            _ => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        };
        let _ = tx.send(outcome);
    }
}

/// Our ids are numbers; imsg echoes them (as numbers or, leniently, strings).
fn response_id(v: &Value) -> Option<u64> {
    match &v["id"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

impl Imsg {
    /// One request and its answer.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        if self.exited().is_some() {
            return Err(CallError::Exited);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if p.len() >= MAX_PENDING {
                return Err(CallError::Busy);
            }
            p.insert(id, tx);
        }
        let mut line =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        line.push('\n');
        let written = {
            let mut stdin = self.stdin.lock().await;
            match stdin.as_mut() {
                Some(s) => s.write_all(line.as_bytes()).await.is_ok() && s.flush().await.is_ok(),
                None => false,
            }
        };
        if !written {
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            return Err(CallError::Exited);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r.map_err(CallError::Rpc),
            Ok(Err(_)) => Err(CallError::Exited),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                Err(CallError::Timeout(method.to_owned(), timeout))
            }
        }
    }

    /// How it ended, once it did.
    pub fn exited(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    /// Waits until the child has exited.
    pub async fn wait_exit(&self) -> Exit {
        let mut rx = self.exit.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(e) => e.clone().unwrap_or(Exit {
                status: None,
                stderr: String::new(),
            }),
            Err(_) => Exit {
                status: None,
                stderr: String::new(),
            },
        }
    }

    /// The end of its stderr so far.
    pub fn stderr_tail(&self) -> String {
        last_lines(&self.stderr.lock().unwrap_or_else(|p| p.into_inner()), 3)
    }

    /// Kills the child and waits for it to be reaped.
    pub async fn stop(&self) -> Exit {
        // Closing stdin ends `imsg rpc` cleanly; the kill makes sure.
        self.stdin.lock().await.take();
        if let Some(k) = self.kill.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = k.send(());
        }
        self.wait_exit().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(remote: Option<&str>) -> Config {
        Config {
            cli_path: "/opt/homebrew/bin/imsg".into(),
            db_path: Some("/Users/me/Library/Messages/chat db".into()),
            remote_host: remote.map(Into::into),
            service: None,
        }
    }

    #[test]
    fn the_command_line_is_imsg_rpc_locally_and_through_ssh() {
        let (p, a) = command_line(&cfg(None));
        assert_eq!(p, "/opt/homebrew/bin/imsg");
        assert_eq!(
            a,
            [
                "rpc",
                "--json",
                "--db",
                "/Users/me/Library/Messages/chat db"
            ]
        );
        let (p, a) = command_line(&cfg(Some("me@mac.local")));
        assert_eq!(p, "ssh");
        assert_eq!(a[0], "-T");
        assert_eq!(a[a.len() - 2], "me@mac.local");
        assert_eq!(a[a.len() - 3], "--");
        assert_eq!(
            a[a.len() - 1],
            "/opt/homebrew/bin/imsg rpc --json --db '/Users/me/Library/Messages/chat db'"
        );
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_next_one_is_read() {
        let data = b"0123456789abc\nok\n".to_vec();
        let mut r = BufReader::with_capacity(4, &data[..]);
        let mut buf = Vec::new();
        assert_eq!(read_line_bounded(&mut r, &mut buf, 5).await.unwrap(), 14);
        assert_eq!(buf, b"01234");
        buf.clear();
        read_line_bounded(&mut r, &mut buf, 5).await.unwrap();
        assert_eq!(buf, b"ok");
    }
}
