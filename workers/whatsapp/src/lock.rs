//! Exactly one WhatsApp session per host: an exclusive, non-blocking `flock` on
//! `session.lock` in the session directory, taken before the session is opened and held
//! for the worker's whole life. The kernel releases it when the process dies, however it
//! dies, so a killed worker never blocks the next one; the pid inside is only for the
//! message that names the holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

pub const LOCK_FILE: &str = "session.lock";

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct SessionLock {
    path: PathBuf,
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another WhatsApp session is running on this host (pid {pid} holds {path}); \
         WhatsApp lets one client drive a linked device at a time: stop that one first"
    )]
    Held { path: PathBuf, pid: String },
    #[error("cannot prepare the WhatsApp session directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: nix::Error },
}

impl SessionLock {
    /// Creates the session directory (owner-only) and takes its lock without waiting.
    pub fn acquire(dir: &Path) -> Result<SessionLock, LockError> {
        let io = |source| LockError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| LockError::Io {
                path: path.clone(),
                source,
            })?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((mut file, nix::Error::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim().to_owned();
                return Err(LockError::Held {
                    path,
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid
                    },
                });
            }
            Err((_, source)) => return Err(LockError::Lock { path, source }),
        };
        let _ = lock.set_len(0);
        let _ = lock.seek(SeekFrom::Start(0));
        let _ = writeln!(lock, "{}", std::process::id());
        let _ = lock.flush();
        Ok(SessionLock { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_dropped_one_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let session = dir.path().join("whatsapp");
        let first = SessionLock::acquire(&session).unwrap();
        let err = SessionLock::acquire(&session).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("session.lock"), "{err}");
        drop(first);
        SessionLock::acquire(&session).expect("free again");
        let mode = std::fs::metadata(&session).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
