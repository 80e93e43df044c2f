//! The shared runtime of every worker process.
//!
//! A worker's `main` is a few lines: [`run`] sets up logging (every line names the
//! worker), the async runtime, death with the parent and graceful shutdown, then calls the
//! worker's function, which builds its tonic services and hands them to [`serve`].
//!
//! Dying with the parent: the supervisor keeps the write end of the worker's stdin; when
//! the supervisor dies, however it dies, the kernel closes it and the worker reads EOF and
//! exits. The parent pid is also polled as a second line of defence (a reparented worker
//! exits too), which works the same on Linux and macOS.

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use switchboard_proto::{CONFINEMENT_LINE, FAILED_LINE, READY_LINE, env};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Longest socket path accepted: `sun_path` is 108 bytes on Linux and 104 on macOS,
/// including the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 103;
/// After the parent is gone, how long graceful shutdown may take before a hard exit.
const ORPHAN_GRACE: Duration = Duration::from_millis(500);
/// After shutdown is requested, how long in-flight calls may finish.
const DRAIN: Duration = Duration::from_millis(500);

pub mod auth;
pub mod backoff;
pub mod channel;
pub mod confine;
pub mod events;
pub mod status;
pub mod text;

/// Worker exit codes the supervisor understands.
pub mod exit {
    /// Ordinary failure: restart with backoff.
    pub const FAILURE: u8 = 1;
    /// Bad configuration: restarting will not help; an operator must act.
    pub const CONFIG: u8 = 3;
    /// The provider refused our credentials: an operator must act.
    pub const UNAUTHORIZED: u8 = 4;
    /// An exclusive resource is held elsewhere (e.g. the WhatsApp session lock).
    pub const LOCKED: u8 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0} is not set: workers are started by the switchboard supervisor")]
    MissingEnv(&'static str),
    #[error(
        "socket path {path} is {len} bytes; the limit is {MAX_SOCKET_PATH} (use a shorter state directory)"
    )]
    SocketPathTooLong { path: PathBuf, len: usize },
    #[error("socket path {0} exists and is not a socket")]
    NotASocket(PathBuf),
    #[error("cannot bind {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no worker secret on the first line of stdin: workers are started by the switchboard supervisor"
    )]
    NoSecret,
    #[error("worker config is not valid JSON: {0}")]
    Config(serde_json::Error),
    #[error("{0}")]
    Connect(String),
    #[error("serving failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// What the supervisor told this worker.
#[derive(Debug, Clone)]
pub struct WorkerContext {
    pub name: String,
    pub socket: PathBuf,
    /// The worker's own configuration (may hold secrets: never log it whole).
    pub config: serde_json::Value,
    /// Cancelled on SIGTERM, on the `Shutdown` RPC, or when the supervisor is gone.
    pub shutdown: CancellationToken,
    /// What every call must carry ([`auth`]); read from stdin before anything else runs.
    secret: auth::WorkerSecret,
}

impl WorkerContext {
    fn from_env(shutdown: CancellationToken) -> Result<WorkerContext, RuntimeError> {
        let socket = std::env::var_os(env::SOCKET).ok_or(RuntimeError::MissingEnv(env::SOCKET))?;
        let name = std::env::var(env::NAME).map_err(|_| RuntimeError::MissingEnv(env::NAME))?;
        let config = match std::env::var(env::CONFIG) {
            Ok(s) if !s.trim().is_empty() => {
                serde_json::from_str(&s).map_err(RuntimeError::Config)?
            }
            _ => serde_json::Value::Object(Default::default()),
        };
        let secret = auth::WorkerSecret::read_from(std::io::stdin().lock())?;
        Ok(WorkerContext {
            name,
            socket: PathBuf::from(socket),
            config,
            shutdown,
            secret,
        })
    }
}

fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if std::env::var(env::LOG_FORMAT).is_ok_and(|f| f == "plain") {
        // Supervised: the supervisor adds the time and the worker's name.
        builder
            .without_time()
            .with_ansi(false)
            .with_level(true)
            .init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Runs a worker: `body` gets the context and returns when the worker is done.
pub fn run<F, Fut, E>(body: F) -> ExitCode
where
    F: FnOnce(WorkerContext) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display + WorkerExit,
{
    init_logging();
    let shutdown = CancellationToken::new();
    let ctx = match WorkerContext::from_env(shutdown.clone()) {
        Ok(ctx) => ctx,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    let span = tracing::info_span!("worker", worker = %ctx.name, pid = std::process::id());
    // Confined while still one thread (Landlock binds the calling thread and those it
    // starts), before any provider code runs.
    {
        let _in = span.enter();
        let began = std::time::Instant::now();
        let policy = confine::policy_from_env();
        let report = confine::confine(&policy, &ctx.socket);
        let took_us = began.elapsed().as_micros() as u64;
        if report.confined {
            tracing::info!(took_us, "confined: {report}");
        } else {
            tracing::warn!("running unconfined: {report}");
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{CONFINEMENT_LINE} {report}");
        let _ = out.flush();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let code = rt.block_on(
        async move {
            watch_parent(shutdown.clone());
            watch_signals(shutdown.clone());
            match body(ctx).await {
                Ok(()) => {
                    tracing::info!("worker stopped");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    tracing::error!("{e}");
                    // The reason, for the supervisor's health report (one line).
                    let reason = e.to_string().replace('\n', " ");
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{FAILED_LINE} {reason}");
                    let _ = out.flush();
                    ExitCode::from(e.exit_code())
                }
            }
        }
        .instrument(span),
    );
    // The stdin watcher blocks a pool thread on a read that only the supervisor's exit
    // ends; do not wait for it.
    rt.shutdown_timeout(Duration::from_millis(100));
    code
}

/// How a worker error maps to an exit code.
pub trait WorkerExit {
    fn exit_code(&self) -> u8 {
        exit::FAILURE
    }
}

impl WorkerExit for RuntimeError {
    fn exit_code(&self) -> u8 {
        match self {
            RuntimeError::MissingEnv(_)
            | RuntimeError::SocketPathTooLong { .. }
            | RuntimeError::NotASocket(_)
            | RuntimeError::Config(_)
            | RuntimeError::NoSecret => exit::CONFIG,
            _ => exit::FAILURE,
        }
    }
}

fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    tokio::spawn(
        async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
            }
            shutdown.cancel();
        }
        .in_current_span(),
    );
}

/// Exits when the supervisor is gone: stdin reaches EOF, or we were reparented.
fn watch_parent(shutdown: CancellationToken) {
    let expected: Option<i32> = std::env::var(env::SUPERVISOR_PID)
        .ok()
        .and_then(|p| p.parse().ok());
    let orphaned = CancellationToken::new();
    let on_eof = orphaned.clone();
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        on_eof.cancel();
    });
    if let Some(expected) = expected {
        let on_reparent = orphaned.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(200));
            loop {
                every.tick().await;
                if nix::unistd::getppid().as_raw() != expected {
                    on_reparent.cancel();
                    return;
                }
            }
        });
    }
    tokio::spawn(
        async move {
            orphaned.cancelled().await;
            tracing::warn!("supervisor is gone: exiting");
            shutdown.cancel();
            tokio::time::sleep(ORPHAN_GRACE).await;
            std::process::exit(i32::from(exit::FAILURE));
        }
        .in_current_span(),
    );
}

/// The `Hello` answer every worker gives: this contract version, its name and channel
/// (empty for the agent runner), its version and capabilities, its pid.
pub fn hello_reply(
    name: &str,
    channel: &str,
    version: &str,
    capabilities: &[&str],
) -> switchboard_proto::v1::HelloReply {
    switchboard_proto::v1::HelloReply {
        contract_version: switchboard_proto::CONTRACT_VERSION,
        name: name.to_owned(),
        channel: channel.to_owned(),
        version: version.to_owned(),
        capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
        pid: std::process::id(),
    }
}

/// Checks and prepares the socket path: short enough, and no live file in the way.
pub fn prepare_socket_path(path: &Path) -> Result<(), RuntimeError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(RuntimeError::SocketPathTooLong {
            path: path.to_owned(),
            len,
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket left by a dead predecessor; the supervisor owns this path.
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => return Err(RuntimeError::NotASocket(path.to_owned())),
        Err(_) => {}
    }
    Ok(())
}

/// Binds the socket (mode 0600), announces readiness on stdout, and serves `router`
/// until shutdown. `router` is built on [`WorkerContext::server`], so every call it
/// serves was checked for this worker's secret.
pub async fn serve(
    ctx: &WorkerContext,
    router: tonic::transport::server::Router<auth::Guarded>,
) -> Result<(), RuntimeError> {
    prepare_socket_path(&ctx.socket)?;
    let listener =
        tokio::net::UnixListener::bind(&ctx.socket).map_err(|source| RuntimeError::Bind {
            path: ctx.socket.clone(),
            source,
        })?;
    std::fs::set_permissions(&ctx.socket, std::fs::Permissions::from_mode(0o600)).map_err(
        |source| RuntimeError::Bind {
            path: ctx.socket.clone(),
            source,
        },
    )?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{READY_LINE}");
        let _ = out.flush();
    }
    tracing::info!(socket = %ctx.socket.display(), "serving");
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let shutdown = ctx.shutdown.clone();
    let serving =
        router.serve_with_incoming_shutdown(incoming, async move { shutdown.cancelled().await });
    // Graceful shutdown waits for open connections; the supervisor's stays open, so
    // in-flight calls get a bounded drain and then the worker exits regardless.
    let drained = async {
        ctx.shutdown.cancelled().await;
        tokio::time::sleep(DRAIN).await;
    };
    let res = tokio::select! {
        r = serving => r,
        _ = drained => Ok(()),
    };
    let _ = std::fs::remove_file(&ctx.socket);
    res.map_err(RuntimeError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_longer_than_sun_path_are_refused() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        assert!(matches!(
            prepare_socket_path(&long),
            Err(RuntimeError::SocketPathTooLong { .. })
        ));
        assert!(prepare_socket_path(Path::new("/tmp/definitely-not-here.sock")).is_ok());
    }
}
