//! Params and results of the methods Switchboard serves.
//!
//! Where the reference gateways accept any params for a method (e.g. `health`, `status`),
//! the params type is open (`additionalProperties` allowed) so existing clients keep
//! working; the fields we read are still typed.

mod agent;
mod channels;
mod chat;
mod cron;
mod devices;
mod nodes;
mod system;
mod workers;

pub use agent::*;
pub use channels::*;
pub use chat::*;
pub use cron::*;
pub use devices::*;
pub use nodes::*;
pub use system::*;
pub use workers::*;
