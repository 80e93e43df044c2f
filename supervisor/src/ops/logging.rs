//! Logs: always to stderr (the service manager's journal), and to a size-rotated file in
//! the state directory (`logs/switchboard.log`, then `.1` … `.N-1`), as text or JSON
//! lines. `logs.tail` and `switchboard logs` read the current file by byte cursor, as the
//! reference's `logs.tail` does: a cursor past the end means the file was rotated.
//!
//! Writes to the file are synchronous and unbuffered, so nothing logged before a crash
//! is lost; log volume at `info` is a few lines per connection.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// A log file that rotates itself when it would grow past its limit.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    state: Mutex<Option<(File, u64)>>,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> std::io::Result<RotatingFile> {
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = open_append(path)?;
        let len = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_owned(),
            max_bytes,
            max_files,
            state: Mutex::new(Some((file, len))),
        })
    }

    fn rotate(&self) -> std::io::Result<File> {
        // switchboard.log.(N-2) → .(N-1), …, switchboard.log → .1; the oldest falls off.
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.max_files > 1 {
            for i in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            std::fs::rename(&self.path, name(1))?;
        } else {
            std::fs::remove_file(&self.path)?;
        }
        open_append(&self.path)
    }

    fn write_line(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, len)) = state.as_ref()
            && *len > 0
            && len + buf.len() as u64 > self.max_bytes
        {
            // On failure keep writing to the old file rather than lose lines.
            if let Ok(f) = self.rotate() {
                *state = Some((f, 0));
            }
        }
        if let Some((file, len)) = state.as_mut() {
            file.write_all(buf)?;
            *len += buf.len() as u64;
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// tracing's writer for one event: buffers the formatted line, writes it whole on drop.
pub struct LineWriter {
    file: Arc<RotatingFile>,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.file.write_line(&self.buf);
        }
    }
}

#[derive(Clone)]
pub struct FileSink(Arc<RotatingFile>);

impl<'a> MakeWriter<'a> for FileSink {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            file: Arc::clone(&self.0),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Installs the global subscriber: stderr, plus the rotating file when configured.
/// Returns a warning to log once logging is up (the file could not be opened).
pub fn init(cfg: &LogConfig) -> Option<String> {
    use std::io::IsTerminal;
    let filter = || EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter());
    let (file, warning) = match &cfg.file {
        Some(path) => match RotatingFile::open(path, cfg.max_file_bytes, cfg.max_files) {
            Ok(f) => (Some(FileSink(Arc::new(f))), None),
            Err(e) => (
                None,
                Some(format!(
                    "cannot open log file {}: {e}; logging to stderr only",
                    path.display()
                )),
            ),
        },
        None => (None, None),
    };
    let (text, json) = match (file, cfg.format) {
        (Some(f), LogFormat::Text) => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_target(false)
                    .with_writer(f)
                    .with_filter(filter()),
            ),
            None,
        ),
        (Some(f), LogFormat::Json) => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .with_writer(f)
                    .with_filter(filter()),
            ),
        ),
        (None, _) => (None, None),
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(text)
        .with(json)
        .try_init();
    warning
}

use tracing_subscriber::Layer as _;

/// Stderr only (client commands).
pub fn init_stderr(level: &str) {
    let cfg = LogConfig {
        level: level.into(),
        format: LogFormat::Text,
        file: None,
        max_file_bytes: 0,
        max_files: 1,
    };
    init(&cfg);
}

/// Bounds of one `logs.tail` answer (the reference's).
pub const TAIL_DEFAULT_LIMIT: usize = 500;
pub const TAIL_MAX_LIMIT: usize = 5000;
pub const TAIL_DEFAULT_BYTES: u64 = 250_000;
pub const TAIL_MAX_BYTES: u64 = 1_000_000;

/// One slice of the log file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Tail {
    pub cursor: u64,
    pub size: u64,
    pub lines: Vec<String>,
    pub truncated: bool,
    pub reset: bool,
}

/// Lines after `cursor` (or the last `max_bytes` without one), at most `limit` of them.
/// A cursor past the end means the file was rotated: start again from its tail.
pub fn tail(
    path: &Path,
    cursor: Option<u64>,
    limit: usize,
    max_bytes: u64,
) -> std::io::Result<Tail> {
    let limit = limit.clamp(1, TAIL_MAX_LIMIT);
    let max_bytes = max_bytes.clamp(1, TAIL_MAX_BYTES);
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Tail {
                cursor: 0,
                size: 0,
                lines: vec![],
                truncated: false,
                reset: false,
            });
        }
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    let (start, truncated, reset) = match cursor {
        Some(c) if c > size => {
            let s = size.saturating_sub(max_bytes);
            (s, s > 0, true)
        }
        Some(c) if size - c > max_bytes => (size - max_bytes, true, true),
        Some(c) => (c, false, false),
        None => {
            let s = size.saturating_sub(max_bytes);
            (s, s > 0, false)
        }
    };
    let mut lines = Vec::new();
    if size > start {
        // Starting mid-line? Then the first partial line is dropped.
        let mut at_line_start = start == 0;
        if start > 0 {
            let mut prev = [0u8; 1];
            file.seek(SeekFrom::Start(start - 1))?;
            file.read_exact(&mut prev)?;
            at_line_start = prev[0] == b'\n';
        }
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((size - start) as usize);
        file.take(size - start).read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let mut it = text.split('\n').map(str::to_owned).collect::<Vec<_>>();
        if !at_line_start && !it.is_empty() {
            it.remove(0);
        }
        if it.last().is_some_and(String::is_empty) {
            it.pop();
        }
        if it.len() > limit {
            it.drain(..it.len() - limit);
        }
        lines = it;
    }
    Ok(Tail {
        cursor: size,
        size,
        lines,
        truncated,
        reset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_at_its_limit_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/s.log");
        let f = RotatingFile::open(&path, 100, 3).unwrap();
        for i in 0..12 {
            f.write_line(format!("line {i:02} {}\n", "x".repeat(20)).as_bytes())
                .unwrap();
        }
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(
            current.contains("line 11") && current.len() <= 100,
            "{current}"
        );
        let older = std::fs::read_to_string(format!("{}.1", path.display())).unwrap();
        assert!(older.contains("line 08"), "{older}");
    }

    #[test]
    fn tail_follows_a_cursor_and_notices_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        let t = tail(&path, None, 2, 1000).unwrap();
        assert_eq!(t.lines, vec!["b", "c"]);
        assert_eq!(t.cursor, 6);
        std::fs::write(&path, "a\nb\nc\nd\n").unwrap();
        let t2 = tail(&path, Some(t.cursor), 100, 1000).unwrap();
        assert_eq!((t2.lines.clone(), t2.reset), (vec!["d".to_owned()], false));
        std::fs::write(&path, "z\n").unwrap();
        let t3 = tail(&path, Some(t2.cursor), 100, 1000).unwrap();
        assert!(t3.reset);
        assert_eq!(t3.lines, vec!["z"]);
        // A byte window that starts mid-line drops the partial line.
        std::fs::write(&path, "first line\nsecond\n").unwrap();
        let t4 = tail(&path, None, 100, 9).unwrap();
        assert_eq!(t4.lines, vec!["second"]);
        assert!(t4.truncated);
        let missing = tail(&dir.path().join("none.log"), None, 10, 10).unwrap();
        assert_eq!(missing.size, 0);
    }
}
