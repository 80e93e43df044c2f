//! The agent runner worker: runs one agent turn per `Run` call and streams the reply.
//!
//! Backends: an OpenAI-compatible chat-completions API with streaming (`backend: "openai"`,
//! `baseUrl`, `apiKey`, `model`), and the default local echo backend, which answers
//! `[echo] <your message>` and says in `status`/`models.list` that no model is configured.
//! The worker keeps no conversation state: the supervisor sends the history with each run.

mod backend;
mod service;

pub use backend::{BackendConfig, BackendKind};
pub use service::serve;
