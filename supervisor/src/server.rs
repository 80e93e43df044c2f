//! `gateway run`: take the state directory, bind the port, serve until SIGINT/SIGTERM,
//! then shut down gracefully (a `shutdown` event to every client, clean closes, exit 0).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, GatewayConfig};
use crate::db::{Db, DbError};
use crate::exit::ExitCode;
use crate::gateway::Gateway;
use crate::hub::Broadcast;
use crate::protocol::validate::{SchemaError, Validators};
use crate::state_dir::{StateDir, StateDirError};

/// How long clients get to receive `shutdown` and close before we exit anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

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
    Devices(#[from] crate::devices::DevicesError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
            RunError::StateDir(_) | RunError::Db(_) | RunError::Devices(_) => ExitCode::State,
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
pub async fn run(config: GatewayConfig) -> Result<(), RunError> {
    config.validate()?;
    let state = StateDir::open(&config.state_dir)?;
    let db = Db::open(&state.db_path())?;
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
            crate::tls::ensure_certificate(&files.cert, &files.key)?;
            let (server_config, fingerprint) = crate::tls::server_config(&files.cert, &files.key)?;
            tracing::info!(fingerprint = %fingerprint, "TLS on (clients pin this SHA-256 fingerprint)");
            Some(tokio_rustls::TlsAcceptor::from(server_config))
        }
        None => None,
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let shutdown = CancellationToken::new();
    let specs = config.workers.clone();
    let timing = config.worker_timing;
    let devices = crate::devices::Devices::open(db.clone(), state.path()).await?;
    let node_pairing = crate::node_pairing::NodePairing::open(db.clone()).await?;
    let gw = Gateway::new(
        config,
        port,
        db,
        devices,
        node_pairing,
        validators,
        shutdown.clone(),
    )
    .await;
    crate::agent::finish_orphans(&gw).await;
    match gw.idempotency.prune().await {
        Ok(n) if n > 0 => tracing::info!(expired = n, "pruned idempotency records"),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "pruning idempotency records failed"),
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(RunError::Signals)?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(RunError::Signals)?;

    let mut tasks = tokio::task::JoinSet::new();
    let socket_dir = state.path().join("sockets");
    create_private_dir(&socket_dir)?;
    let weak = Arc::downgrade(&gw);
    let on_change: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        if let Some(gw) = weak.upgrade() {
            gw.health_changed();
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
    gw.attach_workers(workers);
    tasks.spawn(Arc::clone(&gw).run_ticker());
    tasks.spawn(Arc::clone(&gw).run_health_refresher());
    for (ip, listener) in listeners {
        tracing::info!(
            pid = std::process::id(),
            "listening on {scheme}://{}",
            ws_addr(ip, port)
        );
        tasks.spawn(accept_loop(Arc::clone(&gw), listener, tls.clone()));
    }
    match (&gw.config.auth.token, &gw.config.auth.password) {
        (None, None) => tracing::warn!(
            "no gateway token configured: serving loopback only, any local client may connect \
             (set --token or SWITCHBOARD_GATEWAY_TOKEN to require one)"
        ),
        (Some(_), _) => tracing::info!("gateway auth: token"),
        (None, Some(_)) => tracing::info!("gateway auth: password"),
    }
    tracing::info!(state_dir = %state.path().display(), "state directory locked");

    let signal = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal, "shutting down");
    shutdown_clients(&gw).await;
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
    drop(state);
    tracing::info!("gateway stopped");
    Ok(())
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

async fn accept_loop(
    gw: Arc<Gateway>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        tokio::select! {
            _ = gw.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => match &tls {
                    Some(acceptor) => {
                        tokio::spawn(crate::conn::serve_tls(Arc::clone(&gw), tcp, peer, acceptor.clone()));
                    }
                    None => {
                        tokio::spawn(crate::conn::serve_tcp(Arc::clone(&gw), tcp, peer));
                    }
                },
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// `shutdown` to everyone, then close 1012 after it; wait until they are gone.
async fn shutdown_clients(gw: &Gateway) {
    let payload = serde_json::json!({ "reason": "gateway stopping" });
    gw.hub
        .broadcast(&Broadcast::new("shutdown", &payload, None, false));
    for conn in gw.hub.snapshot() {
        conn.close_after_queued(1012, "service restart");
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while gw.hub.counts().total > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
