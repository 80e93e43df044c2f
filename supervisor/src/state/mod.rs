//! Durable state: the SQLite database, the state directory and its lock, and the
//! idempotency records of side effects.

pub mod db;
pub mod gateway_token;
pub mod history;
pub mod idempotency;
pub mod state_dir;
