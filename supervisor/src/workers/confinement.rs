//! What a worker may touch once it has confined itself (the worker runtime does it, before
//! any provider code runs: Landlock for the filesystem, a seccomp allow-list for system
//! calls). The supervisor only says which paths a worker needs beyond the runtime's
//! defaults (shared libraries, CA certificates, time zones, name resolution,
//! `/dev/urandom`, its own socket) and whether it may spawn a helper. Defaults come from
//! the provider registry (`channels::providers`); an operator loosens one worker in
//! config (`confinement.<worker>`), which is logged as a warning at every start.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// One worker's extra rights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    /// Read and write (its state folder).
    pub read_write: Vec<PathBuf>,
    /// Read only.
    pub read_only: Vec<PathBuf>,
    /// Executable (and readable): the helper it spawns. Only with `spawn`.
    pub exec: Vec<PathBuf>,
    /// May start child processes.
    pub spawn: bool,
    /// Not confined at all (the operator's choice).
    pub off: bool,
    /// What the operator's config added, for the start-up warning (empty: the defaults).
    pub loosened: Vec<String>,
}

impl Confinement {
    /// The policy the worker runtime reads from `SWITCHBOARD_WORKER_CONFINEMENT`.
    pub fn to_env(&self) -> String {
        json!({
            "readWrite": self.read_write,
            "readOnly": self.read_only,
            "exec": self.exec,
            "spawn": self.spawn,
            "off": self.off,
        })
        .to_string()
    }

    /// Adds the operator's `confinement.<worker>` entry; `Err` names what is wrong.
    pub fn loosen(&mut self, entry: &Value) -> Result<(), String> {
        let Some(obj) = entry.as_object() else {
            return Err("must be an object ({ readWrite, readOnly, exec, spawn, off })".into());
        };
        for (key, v) in obj {
            match key.as_str() {
                "readWrite" | "readOnly" | "exec" => {
                    let paths = v
                        .as_array()
                        .ok_or_else(|| format!("{key}: must be a list of absolute paths"))?;
                    let mut added = Vec::new();
                    for p in paths {
                        let p = p
                            .as_str()
                            .map(PathBuf::from)
                            .filter(|p| p.is_absolute())
                            .ok_or_else(|| format!("{key}: {p} is not an absolute path"))?;
                        added.push(p);
                    }
                    if !added.is_empty() {
                        self.loosened.push(format!(
                            "{key} {}",
                            added
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    match key.as_str() {
                        "readWrite" => self.read_write.extend(added),
                        "readOnly" => self.read_only.extend(added),
                        _ => self.exec.extend(added),
                    }
                }
                "spawn" | "off" => {
                    let b = v
                        .as_bool()
                        .ok_or_else(|| format!("{key}: must be true or false"))?;
                    if b {
                        self.loosened.push(key.clone());
                    }
                    if key == "spawn" {
                        self.spawn |= b;
                    } else {
                        self.off |= b;
                    }
                }
                other => {
                    return Err(format!(
                        "unknown key {other:?} (known: readWrite, readOnly, exec, spawn, off)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Where `program` is: itself when it names a path, else the first match on `PATH`.
pub fn resolve_program(program: &str) -> Option<PathBuf> {
    let program = program.trim();
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The folders a helper program is installed as: the program itself, and when it is a
/// launcher in a `bin` folder (signal-cli's shell script), the install folder above it
/// (its `lib`); symlinks followed.
pub fn program_folders(program: &Path) -> Vec<PathBuf> {
    let mut out = vec![program.to_owned()];
    if let Ok(real) = std::fs::canonicalize(program) {
        if real != program {
            out.push(real.clone());
        }
        if let Some(dir) = real.parent()
            && dir.file_name().is_some_and(|n| n == "bin")
            && let Some(install) = dir.parent()
            && !matches!(install.to_str(), Some("/" | "/usr" | "/usr/local"))
        {
            out.push(install.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loosening_adds_paths_and_says_what() {
        let mut c = Confinement::default();
        c.loosen(&json!({"readOnly": ["/srv/a"], "spawn": true}))
            .unwrap();
        assert_eq!(c.read_only, vec![PathBuf::from("/srv/a")]);
        assert!(c.spawn);
        assert_eq!(c.loosened, vec!["readOnly /srv/a", "spawn"]);
        assert!(c.loosen(&json!({"readOnly": ["relative"]})).is_err());
        assert!(c.loosen(&json!({"everything": true})).is_err());
        let env: Value = serde_json::from_str(&c.to_env()).unwrap();
        assert_eq!(env["readOnly"][0], "/srv/a");
        assert_eq!(env["spawn"], true);
    }
}
