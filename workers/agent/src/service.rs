//! The gRPC services of the agent worker.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_proto::v1::agent_runner_server::{AgentRunner, AgentRunnerServer};
use switchboard_proto::v1::worker_server::{Worker, WorkerServer};
use switchboard_proto::v1::{
    AbortReply, AbortRequest, AckReply, AckRequest, EventsRequest, HealthReply, HealthRequest,
    HelloReply, HelloRequest, ModelInfo, ModelsReply, ModelsRequest, RunAborted, RunEvent,
    RunFailed, RunFinished, RunRequest, RunStarted, SendReply, SendRequest, ShutdownReply,
    ShutdownRequest, ToolCall, ToolResultReply, ToolResultRequest, WorkerEvent, run_event,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use worker_runtime::{RuntimeError, WorkerContext};

use crate::backend::{self, BackendConfig, Step};

#[derive(Clone)]
struct Agent {
    name: String,
    cfg: Arc<BackendConfig>,
    http: reqwest::Client,
    runs: Arc<Mutex<HashMap<String, CancellationToken>>>,
    /// Where each live run waits for its tool calls' outcomes (`ToolResult`).
    tool_results: Arc<Mutex<HashMap<String, mpsc::Sender<backend::ToolOutcome>>>>,
    shutdown: CancellationToken,
}

/// The worker's entry point: builds the services and serves them until shutdown.
pub async fn serve(ctx: WorkerContext) -> Result<(), RuntimeError> {
    let cfg: BackendConfig =
        serde_json::from_value(ctx.config.clone()).map_err(RuntimeError::Config)?;
    tracing::info!(backend = cfg.label(), model = %cfg.model(), "agent backend");
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| RuntimeError::Config(serde::de::Error::custom(e.to_string())))?;
    let agent = Agent {
        name: ctx.name.clone(),
        cfg: Arc::new(cfg),
        http,
        runs: Arc::default(),
        tool_results: Arc::default(),
        shutdown: ctx.shutdown.clone(),
    };
    let router = ctx
        .server()
        .add_service(WorkerServer::new(agent.clone()))
        .add_service(AgentRunnerServer::new(agent));
    worker_runtime::serve(&ctx, router).await
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Worker for Agent {
    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(worker_runtime::hello_reply(
            &self.name,
            "",
            env!("CARGO_PKG_VERSION"),
            &["agent.run"],
        )))
    }

    async fn health(&self, _: Request<HealthRequest>) -> Result<Response<HealthReply>, Status> {
        let mut labels = HashMap::new();
        labels.insert("backend".into(), self.cfg.label().into());
        labels.insert("model".into(), self.cfg.model());
        let running = self.runs.lock().unwrap_or_else(|p| p.into_inner()).len();
        labels.insert("runs".into(), running.to_string());
        let detail = match self.cfg.backend {
            backend::BackendKind::Echo => "local echo backend: no model configured".into(),
            backend::BackendKind::Openai => {
                format!("openai-compatible backend at {}", self.cfg.base_url())
            }
        };
        Ok(Response::new(HealthReply {
            state: "ready".into(),
            detail,
            restartable: true,
            labels,
            connected: None,
        }))
    }

    type EventsStream = Boxed<WorkerEvent>;

    async fn events(
        &self,
        _: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        // The agent runner has no inbound provider events; the stream stays open until
        // shutdown so the supervisor treats every worker alike.
        let (tx, rx) = mpsc::channel(1);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            drop(tx);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn send(&self, _: Request<SendRequest>) -> Result<Response<SendReply>, Status> {
        Err(Status::unimplemented(
            "the agent worker does not deliver messages",
        ))
    }

    async fn ack(&self, _: Request<AckRequest>) -> Result<Response<AckReply>, Status> {
        Ok(Response::new(AckReply {}))
    }

    async fn shutdown(
        &self,
        req: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownReply>, Status> {
        tracing::info!(reason = %req.get_ref().reason, "shutdown requested");
        self.shutdown.cancel();
        Ok(Response::new(ShutdownReply {}))
    }
}

fn event(e: run_event::Event) -> Result<RunEvent, Status> {
    Ok(RunEvent { event: Some(e) })
}

#[tonic::async_trait]
impl AgentRunner for Agent {
    type RunStream = Boxed<RunEvent>;

    async fn run(&self, req: Request<RunRequest>) -> Result<Response<Self::RunStream>, Status> {
        let req = req.into_inner();
        if req.run_id.is_empty() {
            return Err(Status::invalid_argument("run_id is required"));
        }
        let cancel = self.shutdown.child_token();
        {
            let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            if runs.contains_key(&req.run_id) {
                return Err(Status::already_exists("a run with this id is in progress"));
            }
            runs.insert(req.run_id.clone(), cancel.clone());
        }
        let (tx, rx) = mpsc::channel(64);
        // Bounded by the calls one round makes (at most 16); a late or unknown answer is
        // refused by `tool_result` rather than queued.
        let (results_tx, mut results) = mpsc::channel(16);
        self.tool_results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(req.run_id.clone(), results_tx);
        let agent = self.clone();
        tokio::spawn(async move {
            let _ = tx
                .send(event(run_event::Event::Started(RunStarted {
                    backend: agent.cfg.label().into(),
                    model: agent.cfg.model(),
                })))
                .await;
            let timeout = Duration::from_millis(if req.timeout_ms > 0 {
                req.timeout_ms
            } else {
                agent.cfg.timeout_ms.unwrap_or(600_000)
            });
            let (steps_tx, mut steps) = mpsc::channel(64);
            let runner = {
                let cfg = Arc::clone(&agent.cfg);
                let http = agent.http.clone();
                let cancel = cancel.clone();
                let messages = req.messages.clone();
                let tools = req.tools.clone();
                tokio::spawn(async move {
                    backend::run(
                        &cfg,
                        &http,
                        &messages,
                        &tools,
                        &mut results,
                        &cancel,
                        &steps_tx,
                    )
                    .await
                })
            };
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            loop {
                let step = tokio::select! {
                    s = steps.recv() => s,
                    _ = &mut deadline => {
                        cancel.cancel();
                        let _ = tx.send(event(run_event::Event::Failed(RunFailed {
                            error: format!("agent run timed out after {} ms", timeout.as_millis()),
                            retryable: true,
                        }))).await;
                        break;
                    }
                };
                let e = match step {
                    Some(Step::Delta(d)) => run_event::Event::Delta(d),
                    Some(Step::Done { text, stop_reason }) => {
                        run_event::Event::Finished(RunFinished { text, stop_reason })
                    }
                    Some(Step::Failed { error, retryable }) => {
                        run_event::Event::Failed(RunFailed { error, retryable })
                    }
                    Some(Step::Aborted { partial }) => run_event::Event::Aborted(RunAborted {
                        partial_text: partial,
                    }),
                    Some(Step::ToolCall {
                        call_id,
                        name,
                        arguments,
                    }) => run_event::Event::ToolCall(ToolCall {
                        call_id,
                        name,
                        arguments_json: arguments,
                    }),
                    None => break,
                };
                let terminal = !matches!(
                    e,
                    run_event::Event::Delta(_) | run_event::Event::ToolCall(_)
                );
                if tx.send(event(e)).await.is_err() {
                    // The supervisor went away: stop the backend too.
                    cancel.cancel();
                    break;
                }
                if terminal {
                    break;
                }
            }
            runner.abort();
            agent
                .runs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&req.run_id);
            agent
                .tool_results
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&req.run_id);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn abort(&self, req: Request<AbortRequest>) -> Result<Response<AbortReply>, Status> {
        let run_id = req.into_inner().run_id;
        let token = self
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&run_id)
            .cloned();
        if let Some(t) = &token {
            t.cancel();
        }
        Ok(Response::new(AbortReply {
            aborted: token.is_some(),
        }))
    }

    async fn tool_result(
        &self,
        req: Request<ToolResultRequest>,
    ) -> Result<Response<ToolResultReply>, Status> {
        let r = req.into_inner();
        let waiting = self
            .tool_results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&r.run_id)
            .cloned();
        let accepted = match waiting {
            Some(tx) => tx
                .try_send(backend::ToolOutcome {
                    call_id: r.call_id,
                    ok: r.ok,
                    output: r.output,
                })
                .is_ok(),
            None => false,
        };
        Ok(Response::new(ToolResultReply { accepted }))
    }

    async fn models(&self, _: Request<ModelsRequest>) -> Result<Response<ModelsReply>, Status> {
        let model = match self.cfg.backend {
            backend::BackendKind::Echo => ModelInfo {
                id: "echo".into(),
                name: "Echo (local; no model configured)".into(),
                provider: "switchboard".into(),
                context_window: 0,
            },
            backend::BackendKind::Openai => ModelInfo {
                id: self.cfg.model(),
                name: self.cfg.model(),
                provider: "openai-compatible".into(),
                context_window: 0,
            },
        };
        Ok(Response::new(ModelsReply {
            models: vec![model],
        }))
    }
}
