//! The systemd notify protocol (`Type=notify`): `READY=1` once the gateway serves,
//! `WATCHDOG=1` pings while its runtime is responsive, `RELOADING=1` before an in-place
//! restart and `STOPPING=1` on the way out. Without `$NOTIFY_SOCKET` (not under systemd)
//! every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to the service manager's notify socket.
pub struct Notifier {
    socket: UnixDatagram,
    addr: Target,
}

enum Target {
    Path(std::path::PathBuf),
    #[cfg(target_os = "linux")]
    Abstract(Vec<u8>),
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`, if set and usable.
    pub fn from_env() -> Option<Notifier> {
        let raw = std::env::var_os("NOTIFY_SOCKET")?;
        let raw = raw.to_str()?.to_owned();
        let addr = match raw.strip_prefix('@') {
            #[cfg(target_os = "linux")]
            Some(name) => Target::Abstract(name.as_bytes().to_vec()),
            #[cfg(not(target_os = "linux"))]
            Some(_) => return None,
            None if raw.starts_with('/') => Target::Path(raw.into()),
            None => return None,
        };
        let socket = UnixDatagram::unbound().ok()?;
        Some(Notifier { socket, addr })
    }

    /// Sends one message (`KEY=value` lines). Failures are logged, never fatal.
    pub fn send(&self, message: &str) {
        let sent = match &self.addr {
            Target::Path(p) => self.socket.send_to(message.as_bytes(), p),
            #[cfg(target_os = "linux")]
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .and_then(|a| self.socket.send_to_addr(message.as_bytes(), &a))
            }
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }
}

/// How often systemd wants a watchdog ping (half its `WatchdogSec`), if it does, and the
/// ping is meant for this process (`$WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// `CLOCK_MONOTONIC` in microseconds, as `RELOADING=1` wants it beside.
pub fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            addr: Target::Path(path),
        };
        n.send("READY=1\nSTATUS=serving");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
    }
}
