//! TLS for remote access: the gateway's certificate (given, or self-signed and generated
//! into the state directory on first use), its SHA-256 fingerprint, and the client side's
//! certificate pinning. rustls on the ring provider only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

pub const CERT_FILE: &str = "tls/gateway-cert.pem";
pub const KEY_FILE: &str = "tls/gateway-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS {what} {path} is not valid PEM: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
}

/// The ring provider, installed process-wide once (also for tokio-tungstenite's client).
pub fn provider() -> Arc<CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Where the certificate and key live: the given paths, or the state directory's.
pub fn paths(state_dir: &Path, cert: Option<&Path>, key: Option<&Path>) -> (PathBuf, PathBuf) {
    (
        cert.map(Path::to_path_buf)
            .unwrap_or_else(|| state_dir.join(CERT_FILE)),
        key.map(Path::to_path_buf)
            .unwrap_or_else(|| state_dir.join(KEY_FILE)),
    )
}

/// Generates a self-signed certificate (ECDSA P-256, for localhost and this host) when
/// neither file exists. Files are written owner-only.
pub fn ensure_certificate(cert: &Path, key: &Path) -> Result<bool, TlsError> {
    if cert.exists() || key.exists() {
        return Ok(false);
    }
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        host,
    ];
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    for (path, pem, what) in [
        (cert, generated.cert.pem(), "certificate"),
        (key, generated.signing_key.serialize_pem(), "key"),
    ] {
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| TlsError::Read {
                    what,
                    path: dir.to_owned(),
                    source,
                })?;
        }
        write_private(path, pem.as_bytes()).map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })?;
    }
    tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate");
    Ok(true)
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Pem {
            what: "certificate",
            path: path.to_owned(),
            reason: e.to_string(),
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: "certificate",
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: "certificate",
            path: path.to_owned(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// The server's TLS configuration and its leaf certificate's fingerprint.
pub fn server_config(
    cert: &Path,
    key: &Path,
) -> Result<(Arc<rustls::ServerConfig>, String), TlsError> {
    let certs = load_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Pem {
        what: "key",
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let fp = fingerprint(&certs[0]);
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    Ok((Arc::new(config), fp))
}

/// The fingerprint of the certificate at `cert`.
pub fn file_fingerprint(cert: &Path) -> Result<String, TlsError> {
    Ok(fingerprint(&load_certs(cert)?[0]))
}

/// SHA-256 of the certificate's DER, as `AB:CD:…` (the form browsers and Node print).
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Any spelling of a fingerprint (`sha256:`, colons, case) → lowercase hex.
pub fn normalize_fingerprint(s: &str) -> String {
    let t = s.trim();
    let t = t
        .strip_prefix("sha256:")
        .or_else(|| t.strip_prefix("SHA256:"))
        .or_else(|| t.strip_prefix("sha-256:"))
        .unwrap_or(t);
    t.chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Accepts exactly one certificate: the one whose SHA-256 is the pin.
#[derive(Debug)]
struct Pinned {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = normalize_fingerprint(&fingerprint(end_entity));
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint mismatch: expected {}, got {}",
                self.pin, got
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration that trusts only the certificate with this fingerprint.
pub fn pinned_client_config(pin: &str) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            pin: normalize_fingerprint(pin),
            provider,
        }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_normalize_from_any_spelling() {
        let fp = fingerprint(b"x");
        assert_eq!(fp.len(), 32 * 3 - 1);
        let n = normalize_fingerprint(&fp);
        assert_eq!(n.len(), 64);
        assert_eq!(
            normalize_fingerprint(&format!("sha256:{}", n.to_uppercase())),
            n
        );
    }

    #[test]
    fn a_generated_certificate_loads_and_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = paths(dir.path(), None, None);
        assert!(ensure_certificate(&cert, &key).unwrap());
        assert!(!ensure_certificate(&cert, &key).unwrap(), "generated once");
        let (_, fp) = server_config(&cert, &key).unwrap();
        assert_eq!(fp, file_fingerprint(&cert).unwrap());
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
