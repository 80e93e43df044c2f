//! Live connections and what is pushed to them: the hub (queues, `seq`, fan-out) and the
//! presence list.

pub mod hub;
pub mod presence;
pub mod resume;
