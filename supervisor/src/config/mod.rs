//! The gateway's resolved settings: command-line flags, then environment variables, then
//! the config file (`file.rs`), then embedded defaults — for every setting, in that order.
//!
//! Every setting has a default, so `switchboard gateway run` serves at once with no
//! config. Everything is validated before the gateway takes its lock or binds a port: a
//! bad config never starts a half-working gateway, and every problem is reported at
//! once, each naming its key.

pub mod channel;
pub mod edit;
pub mod env;
pub mod file;
mod resolve;
pub mod schema;
mod settings;

pub use channel::{ChannelConfig, GroupSettings};
pub use env::{Env, ProcessEnv, secret_from_env, worker_dir};
pub use file::{AgentBackend, DmPolicy, GroupPolicy, LogFormat};
pub use resolve::resolve;
pub use settings::*;

/// The echo backend's pause between streamed words: long enough that a reply visibly
/// streams a word at a time in a chat UI, short enough that a test's turn takes well
/// under a second.
pub const DEFAULT_ECHO_DELAY_MS: u64 = 40;
