//! The canvas: agent-editable files in `<state dir>/canvas/`, served read-only over HTTP
//! (`net/canvas_http.rs`) to nodes' canvas panels and browsers, and the capabilities
//! that let a v4 client's panel fetch them without the gateway token.
//!
//! Invariants: nothing here ever writes outside the folder (every path is checked by
//! `net::static_files::relative` and written through a temporary file renamed into
//! place, never following a link); a capability is tied to one connection, slides its
//! expiry on use and is gone when its connection closes or it is rotated.

pub mod caps;

use std::path::{Path, PathBuf};

/// The largest file the agent may write into the canvas.
pub const MAX_WRITE_BYTES: usize = 4 * 1024 * 1024;

/// The page a fresh canvas folder starts with (the reference writes one too): says what
/// the folder is and where it lives, nothing else.
const DEFAULT_INDEX: &str = include_str!("../../canvas/default-index.html");

/// Why a write was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("invalid canvas path {0:?}: a relative path inside the canvas folder, without `..`")]
    BadPath(String),
    #[error("the canvas file is {0} bytes; at most {MAX_WRITE_BYTES} are accepted")]
    TooBig(usize),
    #[error("the canvas is turned off (gateway.canvasHost.enabled: false)")]
    Disabled,
    #[error("cannot write the canvas file: {0}")]
    Io(String),
}

pub struct CanvasHost {
    /// `None` when the operator turned the canvas off.
    root: Option<PathBuf>,
    pub caps: caps::Capabilities,
    /// The v3 canvas port actually bound (0 until then, or when it could not be bound).
    v3_port: std::sync::atomic::AtomicU16,
}

impl CanvasHost {
    /// The canvas at `<state dir>/canvas` (created owner-only with its default page on
    /// first use), or a disabled one.
    pub fn open(state_dir: &Path, enabled: bool) -> CanvasHost {
        let root = enabled.then(|| state_dir.join("canvas")).and_then(|dir| {
            match prepare(&dir) {
                Ok(real) => Some(real),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "the canvas folder cannot be used; the canvas is off");
                    None
                }
            }
        });
        CanvasHost {
            root,
            caps: caps::Capabilities::default(),
            v3_port: Default::default(),
        }
    }

    /// The folder (canonical), when the canvas is on.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    pub fn set_v3_port(&self, port: u16) {
        self.v3_port
            .store(port, std::sync::atomic::Ordering::Relaxed);
    }

    /// The bound v3 canvas port, if any.
    pub fn v3_port(&self) -> Option<u16> {
        Some(self.v3_port.load(std::sync::atomic::Ordering::Relaxed)).filter(|p| *p != 0)
    }

    /// Writes `content` at `rel` in the canvas folder, replacing what was there: a
    /// temporary file beside it, synced, then renamed into place (a reader never sees a
    /// half-written page). Parent folders are created. Returns the path written,
    /// relative to the folder.
    pub fn write(&self, rel: &str, content: &[u8]) -> Result<String, WriteError> {
        let root = self.root.as_deref().ok_or(WriteError::Disabled)?;
        if content.len() > MAX_WRITE_BYTES {
            return Err(WriteError::TooBig(content.len()));
        }
        let bad = || WriteError::BadPath(rel.chars().take(200).collect());
        if rel.starts_with('/') || rel.contains('%') {
            return Err(bad());
        }
        let relative = crate::net::static_files::relative(rel).map_err(|_| bad())?;
        if relative.as_os_str().is_empty() {
            return Err(bad());
        }
        let target = root.join(&relative);
        let parent = target.parent().ok_or_else(bad)?;
        create_dirs_inside(root, parent).map_err(|e| match e {
            DirError::Outside => bad(),
            DirError::Io(e) => WriteError::Io(e.to_string()),
        })?;
        // A link where the file goes is not followed: it is replaced by the file.
        let tmp = parent.join(format!(
            ".{}.tmp-{}",
            target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("file"),
            uuid::Uuid::new_v4().simple()
        ));
        let io = |e: std::io::Error| WriteError::Io(e.to_string());
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(nix::libc::O_NOFOLLOW)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(content)
                .and_then(|()| f.sync_all())
                .map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    io(e)
                })?;
        }
        std::fs::rename(&tmp, &target).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })?;
        Ok(relative.to_string_lossy().into_owned())
    }
}

enum DirError {
    Outside,
    Io(std::io::Error),
}

/// Creates `dir` and its parents below `root`, refusing any existing component that is
/// a link or not a folder (so a link planted in the canvas cannot carry a write out).
fn create_dirs_inside(root: &Path, dir: &Path) -> Result<(), DirError> {
    let rest = dir.strip_prefix(root).map_err(|_| DirError::Outside)?;
    let mut at = root.to_path_buf();
    for part in rest.components() {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(DirError::Outside),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&at)
                    .map_err(DirError::Io)?;
            }
            Err(e) => return Err(DirError::Io(e)),
        }
    }
    Ok(())
}

/// Creates the folder (0700) with its default page the first time; its canonical path.
fn prepare(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let fresh = !dir.exists();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if fresh {
        std::fs::write(dir.join("index.html"), DEFAULT_INDEX)?;
    }
    dir.canonicalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stay_inside_the_folder_and_replace_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let host = CanvasHost::open(dir.path(), true);
        let root = host.root().unwrap().to_path_buf();
        assert!(root.join("index.html").is_file(), "the default page");
        assert_eq!(
            host.write("app/page.html", b"<p>1</p>").unwrap(),
            "app/page.html"
        );
        assert_eq!(
            host.write("app/page.html", b"<p>2</p>").unwrap(),
            "app/page.html"
        );
        assert_eq!(
            std::fs::read(root.join("app/page.html")).unwrap(),
            b"<p>2</p>"
        );
        for bad in [
            "../x.html",
            "/etc/passwd",
            "a/../../x",
            "%2e%2e/x",
            "",
            "a\\b",
            "a\0b",
        ] {
            assert!(
                matches!(host.write(bad, b"x"), Err(WriteError::BadPath(_))),
                "{bad:?}"
            );
        }
        // A link inside the folder does not carry a write out of it.
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("out")).unwrap();
        assert!(matches!(
            host.write("out/x.html", b"x"),
            Err(WriteError::BadPath(_))
        ));
        std::os::unix::fs::symlink(outside.path().join("f"), root.join("link.html")).unwrap();
        host.write("link.html", b"mine").unwrap();
        assert!(
            !outside.path().join("f").exists(),
            "the link was replaced, not followed"
        );
        assert_eq!(
            host.write("big.bin", &vec![0u8; MAX_WRITE_BYTES + 1]),
            Err(WriteError::TooBig(MAX_WRITE_BYTES + 1))
        );
        let leftovers: Vec<_> = std::fs::read_dir(root.join("app"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["page.html"], "no temporary file left behind");
    }

    #[test]
    fn a_disabled_canvas_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let host = CanvasHost::open(dir.path(), false);
        assert!(host.root().is_none());
        assert_eq!(host.write("a.html", b"x"), Err(WriteError::Disabled));
        assert!(!dir.path().join("canvas").exists());
    }
}
