//! The spawned daemon (`cliPath`): `signal-cli -a ACCOUNT daemon --http 127.0.0.1:PORT
//! --no-receive-stdout --receive-mode on-connection`, this worker's own child.
//!
//! Never an orphan: the child is killed when the worker stops (SIGTERM, then SIGKILL),
//! when its handle is dropped, and by the kernel when the worker dies however it dies
//! (`PR_SET_PDEATHSIG`, set between fork and exec). It is restarted with backoff when
//! it exits; a missing executable or an unregistered account waits for an operator.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use worker_runtime::backoff::Backoff;

use crate::Shared;

/// The child's pid while it runs (for `close` to wait on).
static RUNNING: Mutex<Option<u32>> = Mutex::new(None);
/// Lines of the child's stderr kept for error reports.
const TAIL: usize = 20;
/// A daemon that ran this long before it died is restarted without delay growth.
const STABLE: Duration = Duration::from_secs(60);

pub async fn supervise(shared: Arc<Shared>) {
    let Some(cli) = shared.cfg.cli_path.clone() else {
        return;
    };
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let port = match free_port() {
            Ok(p) => p,
            Err(e) => {
                shared
                    .state
                    .set("backoff", format!("no free loopback port: {e}"), true);
                if !shared.pause(backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        shared.state.set(
            "starting",
            format!("starting {cli} (daemon on 127.0.0.1:{port})"),
            true,
        );
        let mut child = match spawn(&cli, &shared.cfg.account, port) {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                shared.state.set(
                    "not-found",
                    format!(
                        "signal-cli not found: cannot run {cli:?} ({e}); install signal-cli (it needs Java 21+) or set channels.signal.cliPath, then `switchboard workers restart signal`"
                    ),
                    false,
                );
                return;
            }
            Err(e) => {
                let d = backoff.next_delay();
                shared.state.set(
                    "backoff",
                    format!("cannot start {cli}: {e}; retrying in {} s", d.as_secs()),
                    true,
                );
                if !shared.pause(d).await {
                    return;
                }
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        *RUNNING.lock().unwrap_or_else(|p| p.into_inner()) = Some(pid);
        tracing::info!(pid, port, "signal-cli started");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(err) = child.stderr.take() {
            let tail = Arc::clone(&tail);
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let line: String = line.chars().take(500).collect();
                    tracing::info!(target: "signal-cli", "signal-cli: {line}");
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    t.push_back(line);
                    while t.len() > TAIL {
                        t.pop_front();
                    }
                }
            });
        }
        let base = format!("http://127.0.0.1:{port}");
        // Long ago, unless it came up: a daemon that dies soon after it is up backs off.
        let mut started = Instant::now() - STABLE;
        let startup = Duration::from_secs(u64::from(shared.cfg.startup_timeout_seconds.max(1)));
        let status = match wait_ready(&shared, &base, &mut child, startup).await {
            Ready::Up => {
                started = Instant::now();
                shared.daemon.send_replace(Some(base));
                shared.state.set("connecting", "", true);
                tokio::select! {
                    _ = shared.shutdown.cancelled() => None,
                    s = child.wait() => Some(s),
                }
            }
            Ready::Exited(s) => Some(Ok(s)),
            Ready::TimedOut => {
                tracing::warn!(
                    pid,
                    "signal-cli did not answer /api/v1/check in {} s; killing it",
                    startup.as_secs()
                );
                None
            }
            Ready::Shutdown => None,
        };
        shared.daemon.send_replace(None);
        let status = match status {
            Some(s) => s,
            None => {
                stop(&mut child).await;
                *RUNNING.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if shared.shutdown.is_cancelled() {
                    return;
                }
                let d = backoff.next_delay();
                shared.state.set(
                    "backoff",
                    format!(
                        "signal-cli did not come up in {} s; restarting in {} s",
                        startup.as_secs(),
                        d.as_secs()
                    ),
                    true,
                );
                if !shared.pause(d).await {
                    return;
                }
                continue;
            }
        };
        *RUNNING.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if started.elapsed() >= STABLE {
            backoff.reset();
        }
        // Let the stderr reader drain what the child said last.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let last: Vec<String> = tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let how = match &status {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        if let Some(line) = last.iter().find(|l| l.contains("not registered")) {
            shared.state.set(
                "unregistered",
                format!(
                    "account not registered: {line}; register it (`signal-cli -a {a} register`, then `verify`) or link it (`signal-cli link`), then `switchboard workers restart signal`",
                    a = shared.cfg.account
                ),
                false,
            );
            return;
        }
        let d = backoff.next_delay();
        let said = last.last().map(|l| format!(" ({l})")).unwrap_or_default();
        tracing::warn!(
            pid,
            "signal-cli exited: {how}{said}; restarting in {} ms",
            d.as_millis()
        );
        shared.state.set(
            "backoff",
            format!(
                "signal-cli exited: {how}{said}; restarting in {} s",
                d.as_secs().max(1)
            ),
            true,
        );
        if !shared.pause(d).await {
            return;
        }
    }
}

/// Waits (up to 5 s) until the child is gone, for the worker's `close`.
pub async fn wait_stopped(_shared: &Shared) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while RUNNING.lock().unwrap_or_else(|p| p.into_inner()).is_some() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn spawn(cli: &str, account: &str, port: u16) -> std::io::Result<Child> {
    let mut cmd = Command::new(cli);
    cmd.args(["-a", account, "daemon", "--http"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--no-receive-stdout", "--receive-mode", "on-connection"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let parent = std::process::id();
    // SAFETY: between fork and exec only async-signal-safe calls: prctl and getppid.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            // The worker died before the line above took effect: do not outlive it.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(std::io::Error::other("the worker is gone"));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

enum Ready {
    Up,
    Exited(std::process::ExitStatus),
    TimedOut,
    Shutdown,
}

async fn wait_ready(shared: &Shared, base: &str, child: &mut Child, timeout: Duration) -> Ready {
    let deadline = tokio::time::Instant::now() + timeout;
    let url = format!("{base}/api/v1/check");
    loop {
        let ok = shared
            .http
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ready::Up;
        }
        if tokio::time::Instant::now() >= deadline {
            return Ready::TimedOut;
        }
        tokio::select! {
            _ = shared.shutdown.cancelled() => return Ready::Shutdown,
            s = child.wait() => return match s {
                Ok(s) => Ready::Exited(s),
                Err(_) => Ready::TimedOut,
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// SIGTERM, up to 3 s to exit, then SIGKILL; always reaped.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(Duration::from_secs(3), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}
