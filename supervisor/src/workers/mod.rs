//! The worker manager: one supervising task per configured worker process.
//!
//! Each task owns its worker's lifecycle — spawn, readiness, contract check, health
//! checks, exit, backoff, restart-intensity limit — and publishes a status snapshot and,
//! while running, a gRPC channel. Operators send it `Start`/`Stop`/`Restart`. Nothing
//! here can block the supervisor: every call to a worker has a deadline.

mod confinement;
mod policy;
mod process;
mod secret;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use switchboard_proto::CONTRACT_VERSION;
use switchboard_proto::v1::worker_client::WorkerClient;
use switchboard_proto::v1::{HealthRequest, HelloRequest, ShutdownRequest};
use switchboard_schemas::methods::WorkerHealth;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

pub use secret::WorkerChannel;

pub use confinement::{Confinement, program_folders, resolve_program};
pub use policy::{Decision, RestartLimits, RestartPolicy};
pub use process::{SpawnError, WorkerProcess, describe_exit};

/// Exit codes of `worker_runtime::exit` that mean "an operator must act".
const NON_RESTARTABLE_EXITS: &[i32] = &[3, 4, 5];
/// `sun_path` limit (macOS: 104 including NUL).
const MAX_SOCKET_PATH: usize = 103;

/// One worker to supervise.
#[derive(Clone)]
pub struct WorkerSpec {
    pub name: String,
    pub program: PathBuf,
    /// Passed to the worker as JSON (may hold secrets; never logged).
    pub config: Value,
    pub enabled: bool,
    /// What it may touch beyond the runtime's defaults once confined.
    pub confinement: Confinement,
}

/// Names the config's keys, never its values (tokens live there).
impl std::fmt::Debug for WorkerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self
            .config
            .as_object()
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        f.debug_struct("WorkerSpec")
            .field("name", &self.name)
            .field("program", &self.program)
            .field("config_keys", &keys)
            .field("enabled", &self.enabled)
            .field("confinement", &self.confinement)
            .finish()
    }
}

/// Timings of supervision (defaults suit production; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub ready_deadline: Duration,
    pub health_interval: Duration,
    pub health_deadline: Duration,
    /// Missed health checks in a row before a worker counts as hung.
    pub health_misses: u32,
    pub stop_grace: Duration,
    pub restart: RestartLimits,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ready_deadline: Duration::from_secs(10),
            health_interval: Duration::from_secs(2),
            health_deadline: Duration::from_secs(1),
            health_misses: 3,
            stop_grace: Duration::from_secs(3),
            restart: RestartLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Starting,
    Running,
    Backoff,
    Failed,
    Stopped,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Running => "running",
            WorkerState::Backoff => "backoff",
            WorkerState::Failed => "failed",
            WorkerState::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Clone)]
struct Status {
    state: WorkerState,
    pid: Option<u32>,
    restarts: u64,
    last_exit: Option<String>,
    running_since: Option<Instant>,
    /// Provider state and detail from the last health check.
    provider_state: Option<String>,
    detail: Option<String>,
    labels: HashMap<String, String>,
    /// Whether the provider is connected, in the worker's own words (last health check).
    connected: Option<bool>,
    /// What the worker announced in its `Hello`.
    capabilities: Vec<String>,
    /// How it confined itself, in its own words (`landlock: abi 7, seccomp: on`).
    confinement: Option<String>,
}

/// An operator's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Start,
    Stop,
    Restart,
}

struct Slot {
    spec: WorkerSpec,
    socket: PathBuf,
    status: Mutex<Status>,
    /// The gRPC channel while the worker runs (`None` otherwise), watchable.
    channel: watch::Sender<Option<WorkerChannel>>,
    control: mpsc::Sender<Control>,
}

/// Why a worker cannot be used right now.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("unknown worker: {0}")]
    Unknown(String),
    #[error("worker {name} is not running (state: {state})")]
    NotRunning { name: String, state: &'static str },
}

pub struct Workers {
    slots: Vec<Arc<Slot>>,
}

type OnChange = Arc<dyn Fn() + Send + Sync>;

impl Workers {
    /// Starts supervising every spec; sockets live in `socket_dir`.
    pub fn start(
        specs: Vec<WorkerSpec>,
        socket_dir: PathBuf,
        timing: Timing,
        on_change: OnChange,
        shutdown: CancellationToken,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Arc<Workers> {
        let mut slots = Vec::new();
        for spec in specs {
            if !spec.confinement.loosened.is_empty() {
                tracing::warn!(
                    worker = %spec.name,
                    "confinement of worker {} loosened by config (confinement.{}): {}",
                    spec.name,
                    spec.name,
                    spec.confinement.loosened.join("; ")
                );
            }
            let (tx, rx) = mpsc::channel(8);
            // Each worker has its own folder for its socket: a confined worker may make
            // and remove sockets only there, so it cannot replace another worker's socket
            // and receive the calls (and the secret) meant for that worker.
            let socket = socket_dir
                .join(&spec.name)
                .join(format!("{}.sock", spec.name));
            let slot = Arc::new(Slot {
                socket,
                status: Mutex::new(Status {
                    state: if spec.enabled {
                        WorkerState::Starting
                    } else {
                        WorkerState::Stopped
                    },
                    pid: None,
                    restarts: 0,
                    last_exit: None,
                    running_since: None,
                    provider_state: None,
                    detail: None,
                    labels: HashMap::new(),
                    connected: None,
                    capabilities: Vec::new(),
                    confinement: None,
                }),
                channel: watch::channel(None).0,
                control: tx,
                spec,
            });
            tasks.spawn(supervise(
                Arc::clone(&slot),
                rx,
                timing,
                Arc::clone(&on_change),
                shutdown.clone(),
            ));
            slots.push(slot);
        }
        Arc::new(Workers { slots })
    }

    /// A manager supervising nothing.
    pub fn none() -> Arc<Workers> {
        Arc::new(Workers { slots: vec![] })
    }

    fn slot(&self, name: &str) -> Result<&Arc<Slot>, WorkerError> {
        self.slots
            .iter()
            .find(|s| s.spec.name == name)
            .ok_or_else(|| WorkerError::Unknown(name.to_owned()))
    }

    /// Every worker's status, for `health`, `status` and `workers.list`.
    pub fn list(&self) -> Vec<WorkerHealth> {
        self.slots.iter().map(|s| s.health()).collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.spec.name.clone()).collect()
    }

    /// A channel to a running worker.
    pub fn channel(&self, name: &str) -> Result<WorkerChannel, WorkerError> {
        let slot = self.slot(name)?;
        let channel = slot.channel.borrow().clone();
        channel.ok_or_else(|| WorkerError::NotRunning {
            name: name.to_owned(),
            state: slot.state().as_str(),
        })
    }

    /// Watches a worker's channel: `Some` while it runs, `None` while it does not.
    pub fn watch(&self, name: &str) -> Result<watch::Receiver<Option<WorkerChannel>>, WorkerError> {
        Ok(self.slot(name)?.channel.subscribe())
    }

    /// Whether the worker announced `capability` in its last `Hello`.
    pub fn can(&self, name: &str, capability: &str) -> bool {
        self.slot(name).is_ok_and(|s| {
            s.status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .capabilities
                .iter()
                .any(|c| c == capability)
        })
    }

    /// The workers that announced `capability`, in config order.
    pub fn with_capability(&self, capability: &str) -> Vec<String> {
        self.names()
            .into_iter()
            .filter(|n| self.can(n, capability))
            .collect()
    }

    pub fn health_of(&self, name: &str) -> Result<WorkerHealth, WorkerError> {
        Ok(self.slot(name)?.health())
    }

    /// Sends an operator command; returns at once (the state changes as it is carried out).
    pub async fn control(&self, name: &str, c: Control) -> Result<(), WorkerError> {
        let slot = self.slot(name)?;
        slot.control
            .send(c)
            .await
            .map_err(|_| WorkerError::NotRunning {
                name: name.to_owned(),
                state: "stopped",
            })
    }
}

impl Slot {
    fn state(&self) -> WorkerState {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).state
    }

    fn health(&self) -> WorkerHealth {
        let s = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        WorkerHealth {
            name: self.spec.name.clone(),
            state: s.state.as_str().into(),
            pid: s.pid,
            restarts: s.restarts,
            last_exit: s.last_exit,
            uptime_ms: s.running_since.map(|t| t.elapsed().as_millis() as u64),
            provider_state: s.provider_state,
            detail: s.detail,
            labels: (!s.labels.is_empty()).then(|| s.labels.into_iter().collect()),
            connected: s.connected,
            capabilities: (!s.capabilities.is_empty()).then_some(s.capabilities),
            confinement: s.confinement,
        }
    }

    fn update(&self, on_change: &OnChange, f: impl FnOnce(&mut Status)) {
        {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
        }
        on_change();
    }

    fn set_channel(&self, c: Option<WorkerChannel>) {
        self.channel.send_replace(c);
    }
}

/// How one run of the worker process ended.
enum Outcome {
    Exited {
        reason: String,
        restartable: bool,
    },
    /// Refused without restarting (e.g. another contract version).
    Refused(String),
    Stopped,
    Restart,
    Shutdown,
}

async fn supervise(
    slot: Arc<Slot>,
    mut control: mpsc::Receiver<Control>,
    timing: Timing,
    on_change: OnChange,
    shutdown: CancellationToken,
) {
    let name = slot.spec.name.clone();
    let mut policy = RestartPolicy::new(timing.restart);
    let mut want_running = slot.spec.enabled;
    loop {
        if !want_running {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                c = control.recv() => match c {
                    Some(Control::Start | Control::Restart) => {
                        want_running = true;
                        policy.reset();
                        tracing::info!(worker = %name, "started by operator");
                    }
                    Some(Control::Stop) => continue,
                    None => return,
                },
            }
        }
        slot.update(&on_change, |s| {
            s.state = WorkerState::Starting;
            s.pid = None;
            s.running_since = None;
            s.connected = None;
        });
        let outcome = run_once(&slot, &mut control, &timing, &on_change, &shutdown).await;
        slot.set_channel(None);
        match outcome {
            Outcome::Shutdown => {
                slot.update(&on_change, |s| {
                    s.state = WorkerState::Stopped;
                    s.pid = None;
                    s.running_since = None;
                });
                return;
            }
            Outcome::Stopped => {
                tracing::info!(worker = %name, "stopped by operator");
                want_running = false;
                slot.update(&on_change, |s| {
                    s.state = WorkerState::Stopped;
                    s.pid = None;
                    s.running_since = None;
                    s.last_exit = Some("stopped by operator".into());
                });
            }
            Outcome::Restart => {
                tracing::info!(worker = %name, "restarted by operator");
                slot.update(&on_change, |s| {
                    s.restarts += 1;
                    s.last_exit = Some("restarted by operator".into());
                });
            }
            Outcome::Refused(reason) => {
                tracing::error!(worker = %name, "{reason}");
                want_running = false;
                slot.update(&on_change, |s| {
                    s.state = WorkerState::Failed;
                    s.pid = None;
                    s.running_since = None;
                    s.last_exit = Some(reason);
                });
            }
            Outcome::Exited {
                reason,
                restartable,
            } => {
                if shutdown.is_cancelled() {
                    return;
                }
                if !restartable {
                    tracing::error!(worker = %name, %reason, "worker failed; it needs an operator (not restarting)");
                    want_running = false;
                    slot.update(&on_change, |s| {
                        s.state = WorkerState::Failed;
                        s.pid = None;
                        s.running_since = None;
                        s.last_exit = Some(reason);
                    });
                    continue;
                }
                match policy.on_exit(Instant::now(), policy::jitter()) {
                    Decision::GiveUp { restarts } => {
                        let why = format!(
                            "{reason}; gave up after {restarts} exits within {} s (start it again with workers.start)",
                            timing.restart.window.as_secs()
                        );
                        tracing::error!(worker = %name, "{why}");
                        want_running = false;
                        slot.update(&on_change, |s| {
                            s.state = WorkerState::Failed;
                            s.pid = None;
                            s.running_since = None;
                            s.last_exit = Some(why);
                        });
                    }
                    Decision::RestartAfter(delay) => {
                        tracing::warn!(worker = %name, %reason, delay_ms = delay.as_millis() as u64, "worker exited; restarting");
                        slot.update(&on_change, |s| {
                            s.state = WorkerState::Backoff;
                            s.pid = None;
                            s.running_since = None;
                            s.restarts += 1;
                            s.last_exit = Some(reason);
                        });
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(delay) => {}
                            c = control.recv() => match c {
                                Some(Control::Stop) => {
                                    want_running = false;
                                    slot.update(&on_change, |s| s.state = WorkerState::Stopped);
                                }
                                Some(_) => {}
                                None => return,
                            },
                        }
                    }
                }
            }
        }
    }
}

async fn connect(socket: &std::path::Path, deadline: Duration) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("unix://{}", socket.display()))
        .map_err(|e| e.to_string())?
        .connect_timeout(deadline);
    tokio::time::timeout(deadline, endpoint.connect())
        .await
        .map_err(|_| "connecting to the worker socket timed out".to_owned())?
        .map_err(|e| format!("cannot connect to the worker socket: {e}"))
}

/// The worker's own socket folder, private to the user (0700); made once, kept across
/// restarts.
fn create_socket_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

async fn run_once(
    slot: &Arc<Slot>,
    control: &mut mpsc::Receiver<Control>,
    timing: &Timing,
    on_change: &OnChange,
    shutdown: &CancellationToken,
) -> Outcome {
    let spec = &slot.spec;
    if slot.socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Outcome::Refused(format!(
            "socket path {} is too long for a Unix socket; use a shorter state directory",
            slot.socket.display()
        ));
    }
    if let Some(dir) = slot.socket.parent()
        && let Err(e) = create_socket_dir(dir)
    {
        return Outcome::Exited {
            reason: format!("cannot create the socket folder {}: {e}", dir.display()),
            restartable: true,
        };
    }
    let config = spec.config.to_string();
    let mut proc = match WorkerProcess::spawn(
        &spec.program,
        &spec.name,
        &slot.socket,
        &config,
        &spec.confinement.to_env(),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            return Outcome::Exited {
                reason: e.to_string(),
                restartable: true,
            };
        }
    };
    let pid = proc.pid();
    slot.update(on_change, |s| s.pid = Some(pid));
    tracing::info!(worker = %spec.name, pid, "worker spawned");

    // Readiness (the socket is bound), then the contract handshake.
    let ready = tokio::select! {
        r = proc.ready(timing.ready_deadline) => r,
        _ = shutdown.cancelled() => { proc.terminate(timing.stop_grace).await; return Outcome::Shutdown; }
        c = control.recv() => {
            proc.terminate(timing.stop_grace).await;
            return match c { Some(Control::Restart) => Outcome::Restart, _ => Outcome::Stopped };
        }
    };
    if let Some(how) = proc.confinement() {
        let how = how.to_owned();
        slot.update(on_change, |s| s.confinement = Some(how));
    }
    if let Err(e) = ready {
        let status = proc.terminate(Duration::from_millis(200)).await;
        let restartable =
            !matches!(status.and_then(|s| s.code()), Some(c) if NON_RESTARTABLE_EXITS.contains(&c));
        return Outcome::Exited {
            reason: match e {
                // The worker's own reason, when it printed one.
                SpawnError::ExitedEarly(why) => format!("exited before it was ready ({why})"),
                other => other.to_string(),
            },
            restartable,
        };
    }
    let channel = match connect(&slot.socket, timing.ready_deadline).await {
        Ok(c) => proc.secret().channel(c),
        Err(e) => {
            proc.terminate(Duration::from_millis(200)).await;
            return Outcome::Exited {
                reason: e,
                restartable: true,
            };
        }
    };
    let mut client = WorkerClient::new(channel.clone());
    let hello = tokio::time::timeout(
        timing.ready_deadline,
        client.hello(HelloRequest {
            supervisor_contract_version: CONTRACT_VERSION,
        }),
    )
    .await;
    match hello {
        Ok(Ok(reply)) => {
            let reply = reply.into_inner();
            slot.update(on_change, |s| s.capabilities = reply.capabilities.clone());
            if reply.contract_version != CONTRACT_VERSION {
                proc.terminate(timing.stop_grace).await;
                return Outcome::Refused(format!(
                    "worker {} speaks contract version {}, this supervisor speaks {}; \
                     install matching versions of switchboard and its workers",
                    spec.name, reply.contract_version, CONTRACT_VERSION
                ));
            }
        }
        Ok(Err(status)) => {
            proc.terminate(timing.stop_grace).await;
            return Outcome::Exited {
                reason: format!("hello failed: {}", status.message()),
                restartable: true,
            };
        }
        Err(_) => {
            proc.terminate(timing.stop_grace).await;
            return Outcome::Exited {
                reason: "hello timed out".into(),
                restartable: true,
            };
        }
    }
    slot.set_channel(Some(channel));
    slot.update(on_change, |s| {
        s.state = WorkerState::Running;
        s.running_since = Some(Instant::now());
    });
    tracing::info!(worker = %spec.name, pid, "worker running");

    let mut restartable = true;
    let mut misses = 0u32;
    let mut ticker = tokio::time::interval(timing.health_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            status = proc.wait() => {
                let status = status.ok();
                let code = status.and_then(|s| s.code());
                let operator_needed = matches!(code, Some(c) if NON_RESTARTABLE_EXITS.contains(&c));
                return Outcome::Exited {
                    reason: describe_exit(status),
                    restartable: restartable && !operator_needed,
                };
            }
            _ = ticker.tick() => {
                match tokio::time::timeout(timing.health_deadline, client.health(HealthRequest {})).await {
                    Ok(Ok(reply)) => {
                        misses = 0;
                        let r = reply.into_inner();
                        restartable = r.restartable;
                        let changed = {
                            let s = slot.status.lock().unwrap_or_else(|p| p.into_inner());
                            s.provider_state.as_deref() != Some(r.state.as_str())
                                || s.detail.as_deref() != Some(r.detail.as_str())
                                || s.connected != r.connected
                        };
                        let apply = |s: &mut Status| {
                            s.provider_state = Some(r.state.clone());
                            s.detail = (!r.detail.is_empty()).then(|| r.detail.clone());
                            s.labels = r.labels.clone();
                            s.connected = r.connected;
                        };
                        if changed {
                            slot.update(on_change, apply);
                        } else {
                            apply(&mut slot.status.lock().unwrap_or_else(|p| p.into_inner()));
                        }
                    }
                    _ => {
                        misses += 1;
                        tracing::warn!(worker = %spec.name, misses, "health check missed");
                        if misses >= timing.health_misses {
                            proc.signal(nix::sys::signal::Signal::SIGKILL);
                            let _ = proc.wait().await;
                            return Outcome::Exited {
                                reason: format!("hung: {misses} health checks missed; killed"),
                                restartable: true,
                            };
                        }
                    }
                }
            }
            c = control.recv() => match c {
                Some(Control::Start) => {}
                Some(c @ (Control::Stop | Control::Restart)) => {
                    stop(&mut proc, &mut client, timing).await;
                    return if c == Control::Stop { Outcome::Stopped } else { Outcome::Restart };
                }
                None => return Outcome::Shutdown,
            },
            _ = shutdown.cancelled() => {
                stop(&mut proc, &mut client, timing).await;
                return Outcome::Shutdown;
            }
        }
    }
}

/// Graceful stop: the `Shutdown` RPC, then SIGTERM, then SIGKILL.
async fn stop(proc: &mut WorkerProcess, client: &mut WorkerClient<WorkerChannel>, timing: &Timing) {
    let asked = tokio::time::timeout(
        timing.health_deadline,
        client.shutdown(ShutdownRequest {
            reason: "supervisor request".into(),
        }),
    )
    .await;
    if matches!(asked, Ok(Ok(_)))
        && tokio::time::timeout(timing.stop_grace, proc.wait())
            .await
            .is_ok()
    {
        return;
    }
    proc.terminate(timing.stop_grace).await;
}
