//! A worker OS process: spawned in its own process group, dying with the supervisor,
//! killed (whole group) and reaped when its handle is dropped. No zombie, no orphan.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use switchboard_proto::{CONFINEMENT_LINE, FAILED_LINE, READY_LINE, env};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::secret::WorkerSecret;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

pub struct WorkerProcess {
    child: Child,
    pid: u32,
    /// Held open for the worker's life: when the supervisor dies the kernel closes it and
    /// the worker reads EOF on stdin and exits.
    _lifeline: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    reaped: bool,
    /// How the worker confined itself, from its stdout before it was ready.
    confinement: Option<String>,
    /// This spawn's secret: the first line of the worker's stdin, on every call to it.
    secret: WorkerSecret,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot make the worker's secret: {0}")]
    Secret(#[from] super::secret::NoRandom),
    #[error("cannot hand the worker its secret: {0}")]
    Handover(std::io::Error),
    #[error("worker exited before it was ready ({0})")]
    ExitedEarly(String),
    #[error("worker was not ready within {0:?}")]
    NotReady(Duration),
}

impl WorkerProcess {
    /// Starts the worker and writes its fresh secret as the first line of its stdin
    /// (a pipe holds it until the worker reads it; no other process can see it).
    pub async fn spawn(
        program: &Path,
        name: &str,
        socket: &Path,
        config: &str,
        confinement: &str,
    ) -> Result<WorkerProcess, SpawnError> {
        let secret = WorkerSecret::generate()?;
        let mut cmd = Command::new(program);
        cmd.env(env::SOCKET, socket)
            .env(env::NAME, name)
            .env(env::SUPERVISOR_PID, std::process::id().to_string())
            .env(env::CONFIG, config)
            .env(env::CONFINEMENT, confinement)
            .env(env::LOG_FORMAT, "plain")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent; the
        // child gets SIGKILL if the supervisor dies even when its own runtime is stuck.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().map_err(|source| SpawnError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let mut lifeline = child.stdin.take();
        if let Some(stdin) = lifeline.as_mut() {
            // 65 bytes into an empty pipe: never blocks on the worker.
            stdin
                .write_all(secret.line().as_bytes())
                .await
                .map_err(SpawnError::Handover)?;
            stdin.flush().await.map_err(SpawnError::Handover)?;
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(relay_log(stderr));
        }
        Ok(WorkerProcess {
            _lifeline: lifeline,
            stdout: child.stdout.take(),
            child,
            pid,
            reaped: false,
            confinement: None,
            secret,
        })
    }

    /// This spawn's secret, for the channel every call to the worker goes through.
    pub fn secret(&self) -> &WorkerSecret {
        &self.secret
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How the worker said it is confined (`None` until [`ready`](Self::ready), or when it
    /// did not say: a worker not built on the worker runtime).
    pub fn confinement(&self) -> Option<&str> {
        self.confinement.as_deref()
    }

    /// Waits for the worker's ready line (its socket is then bound), then keeps draining
    /// its stdout so it can never block on a full pipe.
    pub async fn ready(&mut self, deadline: Duration) -> Result<(), SpawnError> {
        let Some(stdout) = self.stdout.take() else {
            return Ok(());
        };
        let mut lines = BufReader::new(stdout).lines();
        let mut reason = None;
        let confinement = &mut self.confinement;
        let wait_line = async {
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l.trim() == READY_LINE => return true,
                    Ok(Some(l)) => {
                        if let Some(r) = l.strip_prefix(FAILED_LINE) {
                            reason = Some(r.trim().to_owned());
                        } else if let Some(c) = l.strip_prefix(CONFINEMENT_LINE) {
                            *confinement = Some(c.trim().chars().take(200).collect());
                        }
                    }
                    _ => return false,
                }
            }
        };
        match tokio::time::timeout(deadline, wait_line).await {
            Ok(true) => {
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                Ok(())
            }
            Ok(false) => {
                let status = self.wait().await;
                let exit = describe_exit(status.ok());
                Err(SpawnError::ExitedEarly(match reason {
                    Some(r) => format!("{exit}: {r}"),
                    None => exit,
                }))
            }
            Err(_) => Err(SpawnError::NotReady(deadline)),
        }
    }

    /// Waits for exit (cancel-safe).
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        let status = self.child.wait().await;
        self.reaped = true;
        status
    }

    /// Sends `sig` to the worker's whole process group.
    pub fn signal(&self, sig: Signal) {
        if self.pid > 0 && !self.reaped {
            let _ = killpg(Pid::from_raw(self.pid as i32), sig);
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; returns the exit status.
    pub async fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        match tokio::time::timeout(grace, self.wait()).await {
            Ok(s) => s.ok(),
            Err(_) => {
                self.signal(Signal::SIGKILL);
                self.wait().await.ok()
            }
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // kill_on_drop kills the leader; the group kill also takes any grandchildren.
        self.signal(Signal::SIGKILL);
    }
}

/// Re-emits a worker's log lines (`LEVEL worker{worker=… pid=…}: message…`, as the runtime
/// writes them when supervised) through the supervisor's own logging, so they reach its
/// log file too. Ends when the worker closes stderr (it exited).
async fn relay_log(stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim_start();
        let (level, rest) = match line.split_once(' ') {
            Some((l, r)) if matches!(l, "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE") => {
                (l, r.trim_start())
            }
            _ => ("INFO", line),
        };
        match level {
            "ERROR" => tracing::error!(target: "worker", "{rest}"),
            "WARN" => tracing::warn!(target: "worker", "{rest}"),
            "DEBUG" => tracing::debug!(target: "worker", "{rest}"),
            "TRACE" => tracing::trace!(target: "worker", "{rest}"),
            _ => tracing::info!(target: "worker", "{rest}"),
        }
    }
}

/// "exit code 1", "killed by SIGKILL", …
pub fn describe_exit(status: Option<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => "exit status unknown".into(),
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(sig)) if sig == Signal::SIGSYS as i32 => {
                "killed by SIGSYS (a system call outside its seccomp allow-list)".into()
            }
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(sig) => format!("killed by {sig}"),
                Err(_) => format!("killed by signal {sig}"),
            },
            _ => "exited".into(),
        },
    }
}
