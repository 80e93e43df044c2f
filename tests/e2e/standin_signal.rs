//! The stand-in of signal-cli's JSON-RPC daemon (HTTP mode), written from signal-cli's
//! documentation (`signal-cli-jsonrpc(5)`, `signal-cli(1)`): it lives in the tests
//! crate's library (`tests/src/standin_signal.rs`) because the stand-in executable
//! `standin-signal-cli` (`tests/src/bin/`) serves the same API for `cliPath` tests.
//! signal-cli cannot run here (Java 21+ and a registered number), so this stand-in is the
//! whole test of the Signal worker.

pub use switchboard_tests::standin_signal::*;

use std::time::Duration;

/// The account the tests configure.
pub const ACCOUNT: &str = "+15550000001";
pub const ALICE: &str = "+15550000042";
pub const GROUP: &str = "R3JvdXBJZEZvclRlc3RzMTIzNDU2Nzg5MDEyMzQ1Njc4OTA=";

/// A stand-in daemon sending keep-alives every 200 ms (signal-cli: 15 s), so a worker
/// configured with a short stream timeout sees a live stream as live.
pub fn daemon(set: impl FnOnce(&mut State)) -> Daemon {
    Daemon::start(ACCOUNT, |s| {
        s.keepalive = Duration::from_millis(200);
        set(s)
    })
}

/// A plain HTTP/1.1 request to a stand-in (`Connection: close`); the status and body.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}
