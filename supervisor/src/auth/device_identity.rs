//! Device identity: ed25519 keys, ids derived from them, and the signed connect payloads
//! of each protocol generation.

use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// DER prefix of an ed25519 SubjectPublicKeyInfo; the raw key follows it.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Decodes base64url or standard base64, padded or not.
pub fn decode_b64(input: &str) -> Option<Vec<u8>> {
    let cleaned: String = input
        .trim()
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(cleaned)
        .ok()
}

pub fn encode_b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The raw 32-byte key from base64url raw bytes or a PEM SPKI block.
pub fn raw_public_key(public_key: &str) -> Option<[u8; 32]> {
    let trimmed = public_key.trim();
    let bytes = if trimmed.starts_with("-----BEGIN") {
        let body: String = trimmed
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = decode_b64(&body)?;
        der.strip_prefix(&ED25519_SPKI_PREFIX[..])?.to_vec()
    } else {
        decode_b64(trimmed)?
    };
    bytes.try_into().ok()
}

/// A device's id: lowercase hex SHA-256 of its raw public key.
pub fn device_id(raw: &[u8; 32]) -> String {
    let digest = Sha256::digest(raw);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a device signs, minus the version tag.
pub struct SignedFields<'a> {
    pub device_id: &'a str,
    pub client_id: &'a str,
    pub client_mode: &'a str,
    pub role: &'a str,
    pub scopes: &'a [String],
    pub signed_at_ms: u64,
    pub token: &'a str,
    pub nonce: Option<&'a str>,
    pub platform: &'a str,
    pub device_family: &'a str,
}

/// The payload layouts, `|`-joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadVersion {
    /// `v1|id|client|mode|role|scopes|signedAt|token` (v3 protocol, local peers only).
    V1,
    /// `v2|…|token|nonce`.
    V2,
    /// `v3|…|token|nonce|platform|deviceFamily` (v4 protocol), the last two trimmed and
    /// ASCII-lowercased.
    V3,
}

pub fn payload(version: PayloadVersion, f: &SignedFields<'_>) -> String {
    let tag = match version {
        PayloadVersion::V1 => "v1",
        PayloadVersion::V2 => "v2",
        PayloadVersion::V3 => "v3",
    };
    let signed_at = f.signed_at_ms.to_string();
    let scopes = f.scopes.join(",");
    let mut parts = vec![
        tag,
        f.device_id,
        f.client_id,
        f.client_mode,
        f.role,
        scopes.as_str(),
        signed_at.as_str(),
        f.token,
    ];
    let platform = f.platform.trim().to_ascii_lowercase();
    let family = f.device_family.trim().to_ascii_lowercase();
    match version {
        PayloadVersion::V1 => {}
        PayloadVersion::V2 => parts.push(f.nonce.unwrap_or("")),
        PayloadVersion::V3 => {
            parts.push(f.nonce.unwrap_or(""));
            parts.push(&platform);
            parts.push(&family);
        }
    }
    parts.join("|")
}

/// Checks an ed25519 signature (base64url) over `message`.
pub fn verify(raw_key: &[u8; 32], message: &str, signature_b64: &str) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(raw_key) else {
        return false;
    };
    let Some(sig_bytes) = decode_b64(signature_b64) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&sig_bytes) else {
        return false;
    };
    key.verify(message.as_bytes(), &sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn a_signed_v2_payload_verifies_and_a_tampered_one_does_not() {
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let raw = sk.verifying_key().to_bytes();
        let pk = encode_b64url(&raw);
        assert_eq!(raw_public_key(&pk), Some(raw));
        let id = device_id(&raw);
        assert_eq!(id.len(), 64);
        let scopes = vec!["operator.read".to_string()];
        let f = SignedFields {
            device_id: &id,
            client_id: "cli",
            client_mode: "cli",
            role: "operator",
            scopes: &scopes,
            signed_at_ms: 1,
            token: "t",
            nonce: Some("n"),
            platform: " Linux",
            device_family: "Desk",
        };
        let msg = payload(PayloadVersion::V2, &f);
        assert_eq!(msg, format!("v2|{id}|cli|cli|operator|operator.read|1|t|n"));
        assert!(payload(PayloadVersion::V3, &f).ends_with("|n|linux|desk"));
        let sig = encode_b64url(&sk.sign(msg.as_bytes()).to_bytes());
        assert!(verify(&raw, &msg, &sig));
        assert!(!verify(&raw, &msg.replace("|n", "|m"), &sig));
    }

    #[test]
    fn pem_spki_keys_are_accepted() {
        let sk = SigningKey::from_bytes(&[9u8; 32]);
        let raw = sk.verifying_key().to_bytes();
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert_eq!(raw_public_key(&pem), Some(raw));
    }
}
