//! The client-facing wire protocol of Switchboard as Rust types, and the JSON Schemas
//! generated from them.
//!
//! Two protocol generations share these types: v3 (Clawdbot-era clients) and v4 (today's
//! OpenClaw clients). Where the generations differ, one superset type carries every field
//! and [`catalog`] derives each version's schema from it (see `catalog.rs`), so the two
//! variants can never drift apart from the Rust code. The JSON files under `schemas/json/`
//! are those same schemas written out for readers and other-language tooling; a test fails
//! when they are stale (`UPDATE_SCHEMAS=1 cargo test -p switchboard-schemas` rewrites them).

mod catalog;
pub mod connect;
pub mod frames;
pub mod hello;
pub mod limits;
pub mod methods;
mod version;

pub use catalog::{SchemaEntry, catalog, schema_file_name};
pub use version::ProtocolVersion;
