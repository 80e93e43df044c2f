//! `gateway run`: take the state directory, bind the port, serve until a signal, then stop
//! gracefully in two phases: first drain (stop accepting, send every client `shutdown`
//! and close it 1012, let in-flight agent runs finish within the grace period), then stop
//! the workers. SIGINT/SIGTERM stop; SIGUSR1 (or `switchboard gateway restart`, or
//! systemd's `reload`) restarts in place: same pid, the binary re-executed from its path,
//! so an upgraded binary takes over without the service manager noticing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::{ConfigError, GatewayConfig};
use crate::events::hub::Broadcast;
use crate::ops::exit::ExitCode;
use crate::protocol::validate::{SchemaError, Validators};
use crate::state::db::{Db, DbError};
use crate::state::state_dir::{StateDir, StateDirError};

/// How long clients get to receive `shutdown` and close before we go on anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// What a restarting gateway tells clients to expect (the reference's figure).
const RESTART_EXPECTED_MS: u64 = 1500;
/// The runtime file: where a running gateway says how to reach it.
pub const RUNTIME_FILE: &str = "gateway.json";

/// How the gateway stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT/SIGTERM: exit.
    Exit,
    /// SIGUSR1: execute the binary again in this process, on the port it had.
    Restart { port: u16 },
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Devices(#[from] crate::auth::device_pairing::DevicesError),
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
    #[error(transparent)]
    TokenFile(#[from] crate::state::gateway_token::TokenFileError),
    #[error("another gateway instance is already listening on ws://{0}")]
    PortInUse(String),
    #[error("failed to bind gateway socket on ws://{addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

impl RunError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Config(_) => ExitCode::Config,
            RunError::StateDir(StateDirError::Locked { .. }) => ExitCode::StateDirLocked,
            RunError::Db(DbError::Missing { .. } | DbError::Damaged { .. }) => ExitCode::StateLost,
            RunError::StateDir(_)
            | RunError::Db(_)
            | RunError::Devices(_)
            | RunError::TokenFile(_) => ExitCode::State,
            RunError::PortInUse(_) => ExitCode::PortInUse,
            RunError::Tls(_) => ExitCode::Config,
            RunError::Bind { .. } | RunError::Schema(_) | RunError::Signals(_) => ExitCode::Failure,
        }
    }
}

fn ws_addr(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

fn bind(ip: IpAddr, port: u16) -> Result<TcpListener, RunError> {
    let addr = SocketAddr::new(ip, port);
    let std_listener = std::net::TcpListener::bind(addr).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            RunError::PortInUse(ws_addr(ip, port))
        } else {
            RunError::Bind {
                addr: ws_addr(ip, port),
                source,
            }
        }
    })?;
    std_listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(std_listener))
        .map_err(|source| RunError::Bind {
            addr: ws_addr(ip, port),
            source,
        })
}

/// Serves until a signal; returns once every client has been told and closed.
pub async fn run(mut config: GatewayConfig) -> Result<Stopped, RunError> {
    config.validate()?;
    let state = StateDir::open(&config.state_dir)?;
    // Looked at before this start creates anything in the directory.
    let used_before = state.used_before();
    // No token or password configured: the gateway's own token, made at first start.
    let generated = if config.auth.token.is_none() && config.auth.password.is_none() {
        let (token, created) = crate::state::gateway_token::load_or_create(state.path())?;
        config.auth.token = Some(token);
        let path = crate::state::gateway_token::path(state.path());
        config.sources.insert(
            "gateway.auth.token".into(),
            format!("generated, {}", path.display()),
        );
        Some((path, created))
    } else {
        None
    };
    let db = open_database(&state, used_before.as_deref(), config.reset_state)?;
    if let Err(e) = state.mark_used() {
        tracing::warn!(error = %e, dir = %state.path().display(), "cannot write the state directory's marker");
    }
    let validators = Validators::build()?;

    let addrs = config.bind.addrs();
    let first = bind(addrs[0], config.port)?;
    let port = first.local_addr().map(|a| a.port()).unwrap_or(config.port);
    let mut listeners = vec![(addrs[0], first)];
    for ip in &addrs[1..] {
        match bind(*ip, port) {
            Ok(l) => listeners.push((*ip, l)),
            Err(e) => tracing::debug!(error = %e, "optional listener not bound"),
        }
    }

    let tls = match &config.tls {
        Some(files) => {
            crate::net::tls::ensure_certificate(&files.cert, &files.key)?;
            let (server_config, fingerprint) =
                crate::net::tls::server_config(&files.cert, &files.key)?;
            tracing::info!(fingerprint = %fingerprint, "TLS on (clients pin this SHA-256 fingerprint)");
            Some(tokio_rustls::TlsAcceptor::from(server_config))
        }
        None => None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let shutdown = CancellationToken::new();
    let specs = config.workers.clone();
    let timing = config.worker_timing;
    let devices = crate::auth::device_pairing::Devices::open(db.clone(), state.path()).await?;
    let node_pairing = crate::auth::node_pairing::NodePairing::open(db.clone()).await?;
    let app = App::new(
        config,
        port,
        db,
        devices,
        node_pairing,
        validators,
        std::sync::Arc::new(crate::app::metrics::Metrics::new(crate::rpc::method_names())),
        shutdown.clone(),
    )
    .await;
    crate::agent::finish_orphans(&app).await;
    match app.idempotency.prune().await {
        Ok(n) if n > 0 => tracing::info!(expired = n, "pruned idempotency records"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning idempotency records failed"),
    }
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Signals)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(RunError::Signals)?;

    let mut tasks = tokio::task::JoinSet::new();
    let socket_dir = state.path().join("sockets");
    create_private_dir(&socket_dir)?;
    let weak = Arc::downgrade(&app);
    let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        if let Some(app) = weak.upgrade() {
            app.health_changed();
        }
    });
    let workers = crate::workers::Workers::start(
        specs,
        socket_dir,
        timing,
        on_change,
        shutdown.clone(),
        &mut tasks,
    );
    app.attach_workers(workers);
    match app.outbox.recover().await {
        Ok((resumed, pruned)) => {
            if resumed > 0 {
                tracing::warn!(
                    resumed,
                    "deliveries interrupted by the last stop are attempted again"
                );
            }
            if pruned > 0 {
                tracing::info!(pruned, "dropped finished deliveries older than a week");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot recover the outbox"),
    }
    for channel in app.config.channels.iter().map(|c| c.channel.clone()) {
        tasks.spawn(crate::channels::outbox::dispatch(
            Arc::clone(&app),
            channel.clone(),
        ));
        tasks.spawn(crate::channels::inbound::listen(Arc::clone(&app), channel));
    }
    crate::channels::inbound::resume(&app).await;
    tasks.spawn(Arc::clone(&app).run_ticker());
    if let Some(off) = crate::clock::test_offset() {
        tracing::warn!(
            offset_ms = off,
            "test clock: the clock is shifted (SWITCHBOARD_TEST_CLOCK)"
        );
    }
    tasks.spawn(crate::cron::run_scheduler(Arc::clone(&app)));
    tasks.spawn(crate::cron::heartbeat::run(Arc::clone(&app)));
    tasks.spawn(Arc::clone(&app).run_health_refresher());
    tasks.spawn(Arc::clone(&app).run_storage_watch());
    tasks.spawn(Arc::clone(&app).run_presence_broadcaster());
    tasks.spawn(crate::ops::memory::run_trimmer(Arc::clone(&app)));
    if app.canvas.root().is_some() {
        bind_canvas_port(&app, &addrs, tls.clone(), &mut tasks);
    }
    for (ip, listener) in listeners {
        tracing::info!(
            pid = std::process::id(),
            "listening on {scheme}://{}",
            ws_addr(ip, port)
        );
        tasks.spawn(crate::net::accept::accept_loop(
            Arc::clone(&app),
            listener,
            tls.clone(),
            crate::net::conn::Gateway,
            "gateway",
        ));
    }
    match (&generated, app.config.auth.password.is_some()) {
        (Some((path, created)), _) => tracing::info!(
            "gateway token {} {} (owner-only): clients must present it or a paired device's token; \
             `switchboard gateway token` prints it, switchboard's own commands on this host read it, \
             and WebChat opened on this host gets it from the gateway",
            if *created {
                "generated at first start in"
            } else {
                "kept in"
            },
            path.display()
        ),
        (None, false) => tracing::info!(
            "gateway auth: token ({}); clients must present it or a paired device's token",
            app.config
                .sources
                .get("gateway.auth.token")
                .map(String::as_str)
                .unwrap_or("config")
        ),
        (None, true) => tracing::info!(
            "gateway auth: password; clients must present it or a paired device's token"
        ),
    }
    tracing::info!(state_dir = %state.path().display(), "state directory locked");
    let runtime_file = state.path().join(RUNTIME_FILE);
    write_runtime_file(&runtime_file, &app, scheme);
    let notifier = crate::ops::sd_notify::Notifier::from_env();
    if let Some(n) = &notifier {
        n.send(&format!(
            "READY=1\nMAINPID={}\nSTATUS=serving on {scheme}://127.0.0.1:{port}",
            std::process::id()
        ));
    }
    if let Some(every) = crate::ops::sd_notify::watchdog_interval() {
        tasks.spawn(watchdog(every, shutdown.clone()));
    }

    let (signal, stopped) = tokio::select! {
        _ = term.recv() => ("SIGTERM", Stopped::Exit),
        _ = int.recv() => ("SIGINT", Stopped::Exit),
        _ = usr1.recv() => ("SIGUSR1", Stopped::Restart { port }),
        _ = app.restart_requested() => ("config change", Stopped::Restart { port }),
    };
    match stopped {
        Stopped::Exit => {
            tracing::info!(signal, "shutting down");
            if let Some(n) = &notifier {
                n.send("STOPPING=1\nSTATUS=stopping");
            }
        }
        Stopped::Restart { .. } => {
            tracing::info!(signal, "restarting in place");
            if let Some(n) = &notifier {
                n.send(&format!(
                    "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=restarting",
                    crate::ops::sd_notify::monotonic_usec()
                ));
            }
        }
    }
    drain(&app, stopped).await;
    shutdown.cancel();
    // Workers stop gracefully (Shutdown RPC, then SIGTERM, then SIGKILL); bounded.
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some tasks did not stop in time");
    }
    tasks.shutdown().await;
    let _ = std::fs::remove_file(&runtime_file);
    drop(state);
    tracing::info!("gateway stopped");
    Ok(stopped)
}

/// The database, refusing to replace a lost one silently unless `reset` (`--reset-state`):
/// then an unreadable file is moved aside, and a missing or empty one is started afresh.
fn open_database(state: &StateDir, used_before: Option<&str>, reset: bool) -> Result<Db, RunError> {
    let path = state.db_path();
    match Db::open_state(&path, used_before) {
        Err(DbError::Missing { .. }) if reset => {
            tracing::warn!(path = %path.display(), "--reset-state: the missing or empty database starts afresh");
            Ok(Db::open_state(&path, None)?)
        }
        Err(DbError::Damaged { reason, .. }) if reset => {
            let aside = path.with_extension(format!("sqlite.damaged-{}", crate::clock::now_ms()));
            let moved = std::fs::rename(&path, &aside);
            for suffix in ["-wal", "-shm"] {
                let mut side = path.clone().into_os_string();
                side.push(suffix);
                let mut moved_side = aside.clone().into_os_string();
                moved_side.push(suffix);
                let _ = std::fs::rename(&side, &moved_side);
            }
            if let Err(e) = moved {
                return Err(RunError::Db(DbError::Damaged {
                    reason: format!(
                        "{reason}; moving it aside to {} failed: {e}",
                        aside.display()
                    ),
                    path,
                }));
            }
            tracing::warn!(
                path = %path.display(),
                moved_to = %aside.display(),
                reason,
                "--reset-state: the damaged database was moved aside; starting with an empty one"
            );
            Ok(Db::open_state(&path, None)?)
        }
        other => Ok(other?),
    }
}

/// Pings systemd's watchdog from the runtime: if the runtime stalls, the pings stop and
/// systemd restarts the gateway.
async fn watchdog(every: Duration, shutdown: CancellationToken) {
    let Some(n) = crate::ops::sd_notify::Notifier::from_env() else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => n.send("WATCHDOG=1"),
        }
    }
}

/// What `gateway status` and the CLI read to find this gateway.
fn write_runtime_file(path: &std::path::Path, app: &App, scheme: &str) {
    let info = serde_json::json!({
        "pid": std::process::id(),
        "port": app.port,
        "bind": app.config.bind.describe(),
        "url": format!("{scheme}://127.0.0.1:{}", app.port),
        "startedAtMs": crate::clock::now_ms().saturating_sub(app.uptime_ms()),
        "version": crate::VERSION,
        "configFile": app.config.config_file,
        "logFile": app.config.logging.file,
    });
    let tmp = path.with_extension("json.tmp");
    let written = std::fs::write(&tmp, info.to_string()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(error = %e, path = %path.display(), "cannot write the runtime file");
    }
}

fn create_private_dir(path: &std::path::Path) -> Result<(), RunError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| {
            RunError::StateDir(StateDirError::Create {
                path: path.to_owned(),
                source,
            })
        })
}

/// The v3 canvas host on `gateway.canvasHost.port`, on the gateway's addresses. A busy
/// port does not stop the gateway: v3 clients then get no `canvasHostUrl`, and the log
/// says why.
fn bind_canvas_port(
    app: &Arc<App>,
    addrs: &[IpAddr],
    tls: Option<tokio_rustls::TlsAcceptor>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let wanted = app.config.canvas_port;
    let first = match bind(addrs[0], wanted) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                port = wanted,
                error = %e,
                "the v3 canvas port cannot be bound: v3 clients get no canvasHostUrl (set gateway.canvasHost.port, 0 for any free one)"
            );
            return;
        }
    };
    let port = first.local_addr().map(|a| a.port()).unwrap_or(wanted);
    let mut listeners = vec![first];
    for ip in &addrs[1..] {
        if let Ok(l) = bind(*ip, port) {
            listeners.push(l);
        }
    }
    app.canvas.set_v3_port(port);
    tracing::info!(
        port,
        root = %app.canvas.root().map(|r| r.display().to_string()).unwrap_or_default(),
        "canvas: v3 at /__clawdbot__/canvas/ on port {port}, v4 at /__openclaw__/canvas/ on the gateway port"
    );
    for l in listeners {
        tasks.spawn(crate::net::accept::accept_loop(
            Arc::clone(app),
            l,
            tls.clone(),
            crate::net::canvas_http::V3CanvasPort,
            "canvas",
        ));
    }
}

/// Phase one of stopping: refuse new clients, tell everyone (`shutdown`, with the
/// reference's restart hint when restarting) and close them 1012, then give in-flight
/// agent runs the grace period to finish. Accepted work is durable either way: a run
/// still going when the grace ends is recorded as interrupted for its retry.
async fn drain(app: &App, stopped: Stopped) {
    app.draining.cancel();
    let payload = match stopped {
        Stopped::Exit => {
            serde_json::json!({ "reason": "gateway stopping", "restartExpectedMs": null })
        }
        Stopped::Restart { .. } => serde_json::json!({
            "reason": "gateway restarting",
            "restartExpectedMs": RESTART_EXPECTED_MS,
        }),
    };
    app.hub
        .broadcast(&Broadcast::new("shutdown", &payload, None, false));
    for conn in app.hub.snapshot() {
        conn.close_after_queued(1012, "service restart");
    }
    let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
    while app.hub.counts().total > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = tokio::time::Instant::now() + app.config.shutdown_grace;
    let mut logged = false;
    while app.runs.live_count() > 0 && tokio::time::Instant::now() < deadline {
        if !logged {
            tracing::info!(
                runs = app.runs.live_count(),
                grace_ms = app.config.shutdown_grace.as_millis() as u64,
                "waiting for in-flight agent runs"
            );
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if app.runs.live_count() > 0 {
        tracing::warn!(
            runs = app.runs.live_count(),
            "agent runs still going after the grace period; they are recorded as interrupted"
        );
    }
}
