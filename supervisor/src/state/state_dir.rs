//! The state directory: created owner-only, and locked so one gateway owns it.
//!
//! The lock is an exclusive `flock` on `gateway.lock`, held for the process's life. The
//! kernel drops it when the process dies, however it dies, so a stale lock file from a
//! killed gateway never blocks a restart; the pid written inside is only for messages.
//!
//! The directory knows it has been used: [`MARKER_FILE`] is written once the database
//! was opened at the first start, and the key files made at first start count too (for
//! directories from before the marker). A used directory whose database is missing or
//! empty is refused at start (`--reset-state` overrides).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// An open, locked state directory.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: Flock<File>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("cannot create state directory {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open lock file {path}: {source}")]
    LockFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another gateway (pid {pid}) already uses the state directory {path}; \
         stop it or choose another --state-dir"
    )]
    Locked { path: PathBuf, pid: String },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: nix::Error },
}

pub const LOCK_FILE: &str = "gateway.lock";
pub const DB_FILE: &str = "switchboard.sqlite";
/// Written at the first start: this directory has held a gateway's state.
pub const MARKER_FILE: &str = "state-initialized";

impl StateDir {
    /// Creates the directory (mode 0700) if needed and takes its lock without waiting.
    pub fn open(path: &Path) -> Result<StateDir, StateDirError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| StateDirError::Create {
                path: path.to_owned(),
                source,
            })?;
        // An existing directory may have been created more permissively by hand.
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
        let lock_path = path.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| StateDirError::LockFile {
                path: lock_path.clone(),
                source,
            })?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::Error::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim().to_owned();
                return Err(StateDirError::Locked {
                    path: path.to_owned(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid
                    },
                });
            }
            Err((_, source)) => {
                return Err(StateDirError::Lock {
                    path: lock_path,
                    source,
                });
            }
        };
        // Best effort: the pid is informational, the flock is the lock.
        let _ = lock.set_len(0);
        let _ = lock.seek(SeekFrom::Start(0));
        let _ = writeln!(lock, "{}", std::process::id());
        let _ = lock.flush();
        Ok(StateDir {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn db_path(&self) -> PathBuf {
        self.path.join(DB_FILE)
    }

    /// What shows an earlier start used this directory (the files found), if anything.
    /// Call before this start creates any of them.
    pub fn used_before(&self) -> Option<String> {
        let found: Vec<&str> = [
            MARKER_FILE,
            crate::auth::device_pairing::KEY_FILE,
            crate::state::gateway_token::FILE_NAME,
        ]
        .into_iter()
        .filter(|f| self.path.join(f).exists())
        .collect();
        (!found.is_empty()).then(|| format!("found {}", found.join(", ")))
    }

    /// Records that this directory holds a gateway's state (once; durable).
    pub fn mark_used(&self) -> std::io::Result<()> {
        let path = self.path.join(MARKER_FILE);
        if path.exists() {
            return Ok(());
        }
        let tmp = path.with_extension("tmp");
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            writeln!(
                f,
                "{{\"createdAtMs\":{},\"version\":\"{}\"}}",
                crate::clock::now_ms(),
                crate::VERSION
            )?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        File::open(&self.path)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_of_a_locked_state_dir_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateDir::open(dir.path()).expect("first lock");
        let err = StateDir::open(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        StateDir::open(dir.path()).expect("lock is free again after drop");
        let mode = std::fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
