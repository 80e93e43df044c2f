//! Who may connect and what they may do: the `connect` decision, roles and scopes, device
//! identities, the device and node pairing stores, and the back-off of failed attempts.

pub mod access;
pub mod device_identity;
pub mod device_pairing;
pub mod handshake;
pub mod local_peer;
pub mod node_pairing;
pub mod pending;
pub mod rate_limit;
pub mod request_budget;
