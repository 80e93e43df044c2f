//! Bytes in and out of sockets: the shared accept loop, one connection's life, the HTTP side of the port, TLS, and
//! the read budget before the handshake.

pub mod accept;
pub mod budget;
pub mod canvas_http;
pub mod conn;
pub mod http;
pub mod outgoing;
pub mod static_files;
pub mod tls;
