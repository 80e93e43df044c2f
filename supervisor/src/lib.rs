//! Switchboard's supervisor: the gateway daemon (WebSocket API, auth, event bus, durable
//! state) and its command line. See ARCHITECTURE.md for the map.

/// This build's version, as `hello-ok.server.version` and `/healthz` report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod agent;
pub mod app;
pub mod auth;
pub mod canvas;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cron;
pub mod events;
pub mod net;
pub mod nodes;
pub mod ops;
pub mod protocol;
pub mod rpc;
pub mod secret;
pub mod server;
pub mod state;
pub mod workers;
