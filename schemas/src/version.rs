use serde::{Deserialize, Serialize};

/// A protocol generation Switchboard speaks. Every connection carries the one it negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProtocolVersion {
    /// Clawdbot-era clients (npm `clawdbot` 2026.1).
    V3,
    /// Today's OpenClaw clients (npm `openclaw` 2026.9).
    V4,
}

impl ProtocolVersion {
    /// Every version this server speaks, lowest first.
    pub const ALL: [ProtocolVersion; 2] = [ProtocolVersion::V3, ProtocolVersion::V4];
    /// The newest version; also the one whose shapes answer a client we share no version with.
    pub const LATEST: ProtocolVersion = ProtocolVersion::V4;

    /// The number sent on the wire (`hello-ok.protocol`, `minProtocol`/`maxProtocol`).
    pub const fn number(self) -> u64 {
        match self {
            ProtocolVersion::V3 => 3,
            ProtocolVersion::V4 => 4,
        }
    }

    /// Short tag used in schema file names (`connect-params.v3.json`).
    pub const fn tag(self) -> &'static str {
        match self {
            ProtocolVersion::V3 => "v3",
            ProtocolVersion::V4 => "v4",
        }
    }

    /// The highest version inside the client's offered range `[min, max]`, if any.
    pub fn negotiate(min: u64, max: u64) -> Option<ProtocolVersion> {
        Self::ALL
            .iter()
            .rev()
            .copied()
            .find(|v| min <= v.number() && v.number() <= max)
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.number())
    }
}

#[cfg(test)]
mod tests {
    use super::ProtocolVersion::{self, V3, V4};

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(ProtocolVersion::negotiate(3, 3), Some(V3));
        assert_eq!(ProtocolVersion::negotiate(3, 4), Some(V4));
        assert_eq!(ProtocolVersion::negotiate(4, 4), Some(V4));
        assert_eq!(ProtocolVersion::negotiate(4, 9), Some(V4));
        assert_eq!(ProtocolVersion::negotiate(2, 3), Some(V3));
        assert_eq!(ProtocolVersion::negotiate(3, 5), Some(V4));
        assert_eq!(ProtocolVersion::negotiate(5, 5), None);
        assert_eq!(ProtocolVersion::negotiate(1, 2), None);
        assert_eq!(ProtocolVersion::negotiate(4, 3), None);
    }
}
