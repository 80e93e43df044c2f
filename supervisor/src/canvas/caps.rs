//! Capabilities: what lets a v4 client's canvas panel fetch `/__openclaw__/canvas/…` and
//! `/__openclaw__/a2ui/…` without the gateway token, as the reference mints them: 18
//! random bytes (base64url, 24 characters), one per connection and surface, valid for
//! [`TTL_MS`] after its last use, revoked when rotated (`plugin.surface.refresh`) or when
//! its connection closes. Bounded by the number of live connections (one each).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::clock::now_ms;

/// How long a capability stays valid after it was minted or last used (the reference's
/// `DEFAULT_PLUGIN_NODE_CAPABILITY_TTL_MS`).
pub const TTL_MS: u64 = 600_000;

struct Entry {
    /// `None`: valid for as long as its connection lives (v3 has no refresh method).
    expires_at_ms: Option<u64>,
}

#[derive(Default)]
pub struct Capabilities {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_cap: HashMap<String, Entry>,
    /// A connection's capability and the origin its URL was built on.
    by_conn: HashMap<String, (String, String)>,
}

/// A capability URL: `<origin>/__openclaw__/cap/<cap>`.
pub fn url(origin: &str, cap: &str) -> String {
    format!("{origin}{}{cap}", crate::net::canvas_http::CAP_PREFIX)
}

/// A fresh capability: 18 bytes from the system's CSPRNG, base64url without padding.
fn mint() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 18];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Capabilities {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new capability for `conn_id`, replacing (revoking) the one it had: its URL on
    /// `origin`, and when it expires (`None`: with the connection).
    pub fn issue(&self, conn_id: &str, origin: &str, expires: bool) -> (String, Option<u64>) {
        let cap = mint();
        let expires_at_ms = expires.then(|| now_ms() + TTL_MS);
        let mut g = self.lock();
        let old = g
            .by_conn
            .insert(conn_id.to_owned(), (cap.clone(), origin.to_owned()));
        if let Some((old, _)) = old {
            g.by_cap.remove(&old);
        }
        g.by_cap.insert(cap.clone(), Entry { expires_at_ms });
        (url(origin, &cap), expires_at_ms)
    }

    /// The connection's current capability URL and whether it is still valid; `None`
    /// when it never had one.
    pub fn current(&self, conn_id: &str) -> Option<(String, String, bool)> {
        let g = self.lock();
        let (cap, origin) = g.by_conn.get(conn_id)?;
        let valid = g
            .by_cap
            .get(cap)
            .is_some_and(|e| e.expires_at_ms.is_none_or(|t| t > now_ms()));
        Some((url(origin, cap), origin.clone(), valid))
    }

    /// Whether `presented` is a live capability; a use slides its expiry. (The lookup
    /// is a keyed-hash map's: its timing says nothing usable about 144 random bits.)
    pub fn check(&self, presented: &str) -> bool {
        let now = now_ms();
        let mut g = self.lock();
        let Some(e) = g.by_cap.get_mut(presented) else {
            return false;
        };
        match e.expires_at_ms {
            None => true,
            Some(t) if t <= now => false,
            Some(_) => {
                e.expires_at_ms = Some(now + TTL_MS);
                true
            }
        }
    }

    /// The connection closed: its capability is gone at once.
    pub fn revoke_conn(&self, conn_id: &str) {
        let mut g = self.lock();
        if let Some((cap, _)) = g.by_conn.remove(conn_id) {
            g.by_cap.remove(&cap);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().by_cap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capability_is_the_connections_until_rotated_or_closed() {
        let caps = Capabilities::default();
        let o = "http://127.0.0.1:18789";
        let (a_url, exp) = caps.issue("conn-a", o, true);
        let a = a_url.rsplit('/').next().unwrap().to_owned();
        assert_eq!(a_url, format!("{o}/__openclaw__/cap/{a}"));
        assert_eq!(a.len(), 24);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(exp.unwrap() > now_ms() + TTL_MS - 5_000);
        assert!(caps.check(&a));
        assert!(!caps.check("not-a-capability-at-all"));
        assert_eq!(
            caps.current("conn-a"),
            Some((a_url.clone(), o.to_owned(), true))
        );
        let (b_url, _) = caps.issue("conn-a", o, true);
        let b = b_url.rsplit('/').next().unwrap().to_owned();
        assert_ne!(a, b);
        assert!(!caps.check(&a), "rotation revokes the old one at once");
        assert!(caps.check(&b));
        let (c_url, never) = caps.issue("conn-b", o, false);
        assert_eq!(never, None);
        let c = c_url.rsplit('/').next().unwrap().to_owned();
        caps.revoke_conn("conn-a");
        assert!(!caps.check(&b), "closing the connection revokes it");
        assert!(caps.current("conn-a").is_none());
        assert!(caps.check(&c), "another connection's stays");
        assert_eq!(caps.len(), 1);
        caps.revoke_conn("conn-b");
        assert!(caps.is_empty());
    }
}
