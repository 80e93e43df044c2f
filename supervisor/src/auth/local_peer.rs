//! Who is on the other end of a loopback TCP connection: on Linux, the OS user owning the
//! client's socket (from `/proc/net/tcp` and `/proc/net/tcp6`). It lets the gateway hand
//! its token to its own user's browser (the WebChat page) without handing it to another
//! account on the same host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The uid owning the client socket `peer` connected to our `port`, when the kernel says.
pub fn peer_uid(peer: SocketAddr, port: u16) -> Option<u32> {
    let tables: &[&str] = match peer.ip() {
        IpAddr::V4(_) => &["/proc/net/tcp", "/proc/net/tcp6"],
        IpAddr::V6(_) => &["/proc/net/tcp6"],
    };
    tables.iter().find_map(|t| {
        let text = std::fs::read_to_string(t).ok()?;
        find(&text, peer, port)
    })
}

/// Whether the peer runs as this process's own user. `None` when it cannot be told (not
/// Linux, not loopback, or the socket is already gone).
pub fn same_user(peer: SocketAddr, port: u16) -> Option<bool> {
    if !peer.ip().is_loopback() && !is_mapped_loopback(peer.ip()) {
        return None;
    }
    let uid = peer_uid(peer, port)?;
    Some(uid == nix::unistd::geteuid().as_raw())
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

/// The uid column of the row whose local end is `peer` and remote port is `port`.
fn find(table: &str, peer: SocketAddr, port: u16) -> Option<u32> {
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 8 {
            continue;
        }
        let (Some(local), Some(remote)) = (parse_addr(cols[1]), parse_addr(cols[2])) else {
            continue;
        };
        if same_endpoint(local, peer) && remote.port() == port {
            return cols[7].parse().ok();
        }
    }
    None
}

fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    a.port() == b.port() && canon(a.ip()) == canon(b.ip())
}

/// `0100007F:1F90` (IPv4, words in host order) or 32 hex digits (IPv6, four host-order
/// words), then the port in hex.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(&ip[i * 8..i * 8 + 8])?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_of_our_own_loopback_connection_is_us() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server_side, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        if std::path::Path::new("/proc/net/tcp").exists() {
            assert_eq!(same_user(peer, port), Some(true));
            assert_eq!(peer_uid(peer, port), Some(nix::unistd::geteuid().as_raw()));
        }
    }

    #[test]
    fn proc_rows_parse() {
        let row = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:D431 0100007F:4965 01 00000000:00000000 00:00000000 00000000  1000        0 1 1 0";
        if cfg!(target_endian = "little") {
            let peer: SocketAddr = "127.0.0.1:54321".parse().unwrap();
            assert_eq!(find(row, peer, 0x4965), Some(1000));
            assert_eq!(find(row, peer, 1), None);
        }
    }
}
