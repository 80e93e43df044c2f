//! Running it for years: logging, metrics exposition, systemd's notify protocol, the user
//! service files, and the process exit codes.

pub mod exit;
pub mod logging;
pub mod metrics;
pub mod sd_notify;
pub mod service;
