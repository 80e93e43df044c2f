//! The client-facing protocol as the supervisor applies it: per-version limits, error
//! values, schema validation and outbound frame encoding.
//!
//! The negotiated [`ProtocolVersion`] is data every rule here reads; there is no second
//! copy of the server per version.

pub mod error;
pub mod frame;
pub mod validate;

pub use switchboard_schemas::ProtocolVersion;

/// Largest first frame (before the version is known), for every connection.
pub const PRE_HANDSHAKE_MAX_PAYLOAD: usize = 64 * 1024;
/// WebSocket close reasons are cut to this many bytes (the references do the same).
pub const CLOSE_REASON_MAX_BYTES: usize = 120;

/// Frame and buffer bounds of one protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest inbound frame after the handshake (`policy.maxPayload`).
    pub max_payload: usize,
    /// Unsent bytes allowed per connection before it counts as a slow consumer
    /// (`policy.maxBufferedBytes`).
    pub max_buffered_bytes: usize,
}

pub const fn limits(version: ProtocolVersion) -> Limits {
    match version {
        ProtocolVersion::V3 => Limits {
            max_payload: 512 * 1024,
            max_buffered_bytes: 1536 * 1024,
        },
        ProtocolVersion::V4 => Limits {
            max_payload: 25 * 1024 * 1024,
            max_buffered_bytes: 50 * 1024 * 1024,
        },
    }
}

/// Cuts a close reason to [`CLOSE_REASON_MAX_BYTES`] on a character boundary.
pub fn truncate_close_reason(reason: &str) -> &str {
    if reason.len() <= CLOSE_REASON_MAX_BYTES {
        return reason;
    }
    let mut end = CLOSE_REASON_MAX_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_at_120_bytes_on_a_char_boundary() {
        let long = "é".repeat(100);
        let cut = truncate_close_reason(&long);
        assert!(cut.len() <= 120 && cut.len() >= 119);
        assert_eq!(truncate_close_reason("short"), "short");
    }
}
