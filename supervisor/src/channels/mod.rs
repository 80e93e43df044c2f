//! Messaging channels: inbound messages, routing policy, the durable outbox, `send`,
//! linking by QR code, and approval of senders by pairing code.

pub mod inbound;
pub mod linking;
pub mod outbox;
pub mod outbox_store;
pub mod policy;
pub mod providers;
pub mod qr;
pub mod send;
pub mod sender_pairing;
