//! The gateway token a gateway generates for itself when none is configured: written
//! once, owner-only (0600), in the state directory, and used from then on, so the clients
//! configured with it keep working across restarts. Whoever can read the state directory
//! (the gateway's own OS user) can read it; `switchboard gateway token` prints it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::secret::Secret;

pub const FILE_NAME: &str = "gateway-token";

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read or write the gateway token {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the gateway token file {0} is empty or not text; delete it to have a new one generated"
    )]
    Invalid(PathBuf),
}

/// The token in the state directory, if there is one.
pub fn read(state_dir: &Path) -> Result<Option<Secret>, TokenFileError> {
    let path = path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Secret::new(text.trim())
            .map(Some)
            .ok_or(TokenFileError::Invalid(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(TokenFileError::Invalid(path)),
        Err(source) => Err(TokenFileError::Io { path, source }),
    }
}

/// The stored token, or a new one (256 random bits, URL-safe) written owner-only.
/// `true` when it was created now.
pub fn load_or_create(state_dir: &Path) -> Result<(Secret, bool), TokenFileError> {
    if let Some(t) = read(state_dir)? {
        let path = path(state_dir);
        // Tighten a file someone loosened by hand; the token is a credential.
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        return Ok((t, false));
    }
    let path = path(state_dir);
    let err = |source| TokenFileError::Io {
        path: path.clone(),
        source,
    };
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let token = format!(
        "sbgt_{}",
        crate::auth::device_identity::encode_b64url(&bytes)
    );
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(token.as_bytes()).map_err(err)?;
        f.write_all(b"\n").map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, &path).map_err(err)?;
    let secret = Secret::new(token).ok_or_else(|| TokenFileError::Invalid(path.clone()))?;
    Ok((secret, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_made_once_owner_only_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        let (a, created) = load_or_create(dir.path()).unwrap();
        assert!(created && a.expose().starts_with("sbgt_") && a.expose().len() > 40);
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(a.expose(), b.expose());
        std::fs::write(path(dir.path()), "  \n").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(TokenFileError::Invalid(_))
        ));
    }
}
