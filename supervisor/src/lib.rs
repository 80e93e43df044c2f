//! Switchboard's supervisor: the gateway daemon (WebSocket API, auth, event bus, durable
//! state) and its command line. See ARCHITECTURE.md for the map.

pub mod access;
pub mod agent;
pub mod auth_limit;
pub mod budget;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod conn;
pub mod db;
pub mod device;
pub mod devices;
pub mod exit;
pub mod gateway;
pub mod handshake;
pub mod http;
pub mod hub;
pub mod idempotency;
pub mod logging;
pub mod methods;
pub mod metrics;
pub mod node_pairing;
pub mod nodes;
pub mod presence;
pub mod protocol;
pub mod sd_notify;
pub mod secret;
pub mod server;
pub mod service;
pub mod sessions;
pub mod state_dir;
pub mod tls;
pub mod workers;
