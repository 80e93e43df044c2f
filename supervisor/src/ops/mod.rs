//! Running it for years: logging, metrics exposition, systemd's notify protocol, the user
//! service files, the process exit codes, and giving memory back after a crowd leaves.

pub mod exit;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod sd_notify;
pub mod service;
