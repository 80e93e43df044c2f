//! The process environment, injectable for tests, and the places it points to.

use std::path::PathBuf;

use crate::secret::Secret;

/// Reads the environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;

    /// The first non-blank value among `names`, with the name it came from.
    fn first(&self, names: &[&'static str]) -> Option<(&'static str, String)> {
        names.iter().find_map(|n| {
            self.var(n)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (*n, v))
        })
    }
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed environment (tests).
#[derive(Default)]
pub struct MapEnv(pub std::collections::HashMap<String, String>);

impl MapEnv {
    /// `HOME=/home/u` plus `pairs`.
    pub fn with(pairs: &[(&str, &str)]) -> MapEnv {
        let mut m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.entry("HOME".into()).or_insert_with(|| "/home/u".into());
        MapEnv(m)
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// The first non-empty secret among the given environment variables.
pub fn secret_from_env(names: &[&'static str]) -> Option<Secret> {
    ProcessEnv.first(names).and_then(|(_, v)| Secret::new(v))
}

/// Where worker binaries live: `$SWITCHBOARD_WORKER_DIR`, else next to this executable.
pub fn worker_dir(env: &dyn Env) -> PathBuf {
    if let Some((_, dir)) = env.first(&["SWITCHBOARD_WORKER_DIR"]) {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."))
}
