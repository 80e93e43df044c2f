//! A scripted worker for tests. It serves the real contract; its config (`mode`) and the
//! text of `Send` requests tell it to misbehave:
//!
//! * config `mode`: `ok` (default), `wrong-contract` (reports contract version 999),
//!   `exit-at-start` (exits 1 before serving), `config-error` (exits with the config code),
//!   `hang-health` (never answers Health), `fail-while-file` (exits 1 at start while the
//!   file named by config `file` exists).
//! * `Send` text: `crash` (exit 1 at once), `hang` (stop answering Health),
//!   `echo:<text>` (succeeds with message id `m-<text>`), `open:<path>` (reads the file,
//!   or lists the folder) and `write:<path>` (appends to the file, or creates a file in
//!   the folder), whose message id is `ok` or `denied <errno>` (what confinement lets it
//!   do), `signal:<pid>` (`tgkill(pid, pid, 0)`: may it signal that process? `ok` or
//!   `denied <errno>`), `forbidden-syscall` (calls `mount`, outside every worker's seccomp
//!   allow-list), `call:<none|wrong|own>:<socket>` (calls `Hello` on another worker's
//!   socket as a compromised worker would: with no secret, a made-up one, or its own;
//!   `ok` or `refused <code>`).
//!
//! Its commands come over a second socket, `<name>.control.sock` beside its own, that
//! has no secret check: a test cannot call the worker's own socket, which answers only
//! the supervisor (`worker_runtime::auth`). No provider worker has such a socket.
//!
//! Unlike the provider workers it serves the `Worker` service itself rather than through
//! `worker_runtime::channel`: it must be able to break the contract (a wrong version).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use switchboard_proto::CONTRACT_VERSION;
use switchboard_proto::v1::worker_server::{Worker, WorkerServer};
use switchboard_proto::v1::{
    AckReply, AckRequest, EventsRequest, HealthReply, HealthRequest, HelloReply, HelloRequest,
    SendReply, SendRequest, ShutdownReply, ShutdownRequest, WorkerEvent,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use worker_runtime::auth::WorkerSecret;
use worker_runtime::{RuntimeError, WorkerContext, exit};

#[derive(Clone)]
struct Scripted {
    name: String,
    contract: u32,
    hung: Arc<AtomicBool>,
    shutdown: CancellationToken,
    secret: WorkerSecret,
}

#[tonic::async_trait]
impl Worker for Scripted {
    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            contract_version: self.contract,
            name: self.name.clone(),
            channel: "test".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["send".into()],
            pid: std::process::id(),
        }))
    }

    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthReply>, Status> {
        if self.hung.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(HealthReply {
            state: "connected".into(),
            detail: String::new(),
            restartable: true,
            labels: Default::default(),
            connected: Some(true),
        }))
    }

    type EventsStream = ReceiverStream<Result<WorkerEvent, Status>>;

    async fn events(
        &self,
        _: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            drop(tx);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn send(&self, req: Request<SendRequest>) -> Result<Response<SendReply>, Status> {
        let text = req.into_inner().text;
        match text.as_str() {
            "crash" => {
                tracing::warn!("told to crash");
                std::process::exit(1);
            }
            "hang" => {
                tracing::warn!("told to hang");
                self.hung.store(true, Ordering::Relaxed);
                Ok(Response::new(SendReply::default()))
            }
            "forbidden-syscall" => {
                tracing::warn!("told to call mount");
                // SAFETY: null arguments; unconfined it fails with EFAULT or EPERM.
                let rc = unsafe {
                    libc::syscall(
                        libc::SYS_mount,
                        std::ptr::null::<libc::c_char>(),
                        std::ptr::null::<libc::c_char>(),
                        std::ptr::null::<libc::c_char>(),
                        0,
                        std::ptr::null::<libc::c_void>(),
                    )
                };
                Ok(Response::new(SendReply {
                    provider_message_id: format!("survived mount ({rc})"),
                    ..Default::default()
                }))
            }
            t if t.starts_with("signal:") => {
                let pid: libc::pid_t = t["signal:".len()..].trim().parse().unwrap_or(0);
                // SAFETY: signal 0 only checks permission; nothing is delivered.
                let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, pid, 0) };
                let answer = if rc == 0 {
                    "ok".to_owned()
                } else {
                    match std::io::Error::last_os_error().raw_os_error() {
                        Some(libc::EPERM) => "denied EPERM".to_owned(),
                        other => format!("failed {other:?}"),
                    }
                };
                Ok(Response::new(SendReply {
                    provider_message_id: answer,
                    ..Default::default()
                }))
            }
            t if t.starts_with("call:") => {
                let (how, socket) = t["call:".len()..].split_once(':').unwrap_or_default();
                Ok(Response::new(SendReply {
                    provider_message_id: call_other(how, socket, &self.secret).await,
                    ..Default::default()
                }))
            }
            t if t.starts_with("open:") || t.starts_with("write:") || t.starts_with("replace:") => {
                let (verb, path) = t.split_once(':').unwrap_or_default();
                Ok(Response::new(SendReply {
                    provider_message_id: try_path(verb, std::path::Path::new(path)),
                    ..Default::default()
                }))
            }
            other => Ok(Response::new(SendReply {
                provider_message_id: format!("m-{}", other.trim_start_matches("echo:")),
                ..Default::default()
            })),
        }
    }

    async fn ack(&self, _: Request<AckRequest>) -> Result<Response<AckReply>, Status> {
        Ok(Response::new(AckReply {}))
    }

    async fn shutdown(
        &self,
        _: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownReply>, Status> {
        self.shutdown.cancel();
        Ok(Response::new(ShutdownReply {}))
    }
}

/// Calls `Hello` on the worker at `socket`, presenting no secret (`none`), a made-up one
/// (`wrong`) or this worker's own (`own`): `ok`, `refused <code>`, or `failed <why>`.
async fn call_other(how: &str, socket: &str, own: &WorkerSecret) -> String {
    use switchboard_proto::v1::worker_client::WorkerClient;
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("unix://{socket}")) else {
        return "failed bad socket path".into();
    };
    let channel = match endpoint.connect().await {
        Ok(c) => c,
        Err(e) => return format!("failed connect: {e}"),
    };
    let mut req = Request::new(HelloRequest {
        supervisor_contract_version: CONTRACT_VERSION,
    });
    let presented = match how {
        "own" => Some(own.expose().to_owned()),
        "wrong" => Some("f".repeat(64)),
        _ => None,
    };
    if let Some(p) = presented.and_then(|p| p.parse().ok()) {
        req.metadata_mut()
            .insert(switchboard_proto::SECRET_METADATA, p);
    }
    match WorkerClient::new(channel).hello(req).await {
        Ok(_) => "ok".into(),
        Err(status) => format!("refused {:?}", status.code()),
    }
}

/// Reads (`open`) or writes (`write`) `path`: `ok`, or `denied <errno name>`.
fn try_path(verb: &str, path: &std::path::Path) -> String {
    use std::io::{Read, Write};
    let result = match (verb, path.is_dir()) {
        ("open", true) => std::fs::read_dir(path).map(|mut d| {
            let _ = d.next();
        }),
        ("open", false) => std::fs::File::open(path).and_then(|mut f| {
            let mut buf = [0u8; 16];
            f.read(&mut buf).map(|_| ())
        }),
        // Take over a socket path as a compromised worker would: remove what is there
        // and bind its own listener in its place.
        ("replace", _) => std::fs::remove_file(path)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .and_then(|()| std::os::unix::net::UnixListener::bind(path).map(drop)),
        (_, true) => std::fs::File::create(path.join("probe")).map(|_| ()),
        (_, false) => std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .and_then(|mut f| f.write_all(b"x")),
    };
    match result {
        Ok(()) => "ok".into(),
        Err(e) => match e.raw_os_error() {
            Some(libc::EACCES) => "denied EACCES".into(),
            Some(libc::EPERM) => "denied EPERM".into(),
            _ => format!("failed {e}"),
        },
    }
}

#[derive(Debug)]
enum TestError {
    Runtime(RuntimeError),
    Told(u8),
}

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TestError::Runtime(e) => e.fmt(f),
            TestError::Told(code) => write!(f, "told to exit with {code}"),
        }
    }
}

impl worker_runtime::WorkerExit for TestError {
    fn exit_code(&self) -> u8 {
        match self {
            TestError::Runtime(e) => e.exit_code(),
            TestError::Told(code) => *code,
        }
    }
}

async fn serve(ctx: WorkerContext) -> Result<(), TestError> {
    let mode = ctx
        .config
        .get("mode")
        .and_then(|m| m.as_str())
        .unwrap_or("ok")
        .to_owned();
    match mode.as_str() {
        "exit-at-start" => return Err(TestError::Told(exit::FAILURE)),
        "config-error" => return Err(TestError::Told(exit::CONFIG)),
        "fail-while-file" => {
            let file = ctx
                .config
                .get("file")
                .and_then(|f| f.as_str())
                .unwrap_or("");
            if std::path::Path::new(file).exists() {
                return Err(TestError::Told(exit::FAILURE));
            }
        }
        _ => {}
    }
    let worker = Scripted {
        name: ctx.name.clone(),
        contract: if mode == "wrong-contract" {
            999
        } else {
            CONTRACT_VERSION
        },
        hung: Arc::new(AtomicBool::new(mode == "hang-health")),
        shutdown: ctx.shutdown.clone(),
        secret: ctx.secret().clone(),
    };
    serve_control(&ctx, worker.clone()).map_err(TestError::Runtime)?;
    let router = ctx.server().add_service(WorkerServer::new(worker));
    worker_runtime::serve(&ctx, router)
        .await
        .map_err(TestError::Runtime)
}

/// The tests' way in: the same service on `<name>.control.sock`, without the secret
/// check (bound before the worker says it is ready).
fn serve_control(ctx: &WorkerContext, worker: Scripted) -> Result<(), RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    let path = ctx.socket.with_extension("control.sock");
    worker_runtime::prepare_socket_path(&path)?;
    let bind = |source| RuntimeError::Bind {
        path: path.clone(),
        source,
    };
    let listener = tokio::net::UnixListener::bind(&path).map_err(bind)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(bind)?;
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(WorkerServer::new(worker))
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
            .await;
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

fn main() -> std::process::ExitCode {
    worker_runtime::run(serve)
}
