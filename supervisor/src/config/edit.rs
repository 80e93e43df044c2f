//! Editing the config file from a client (`config.get`/`set`/`patch`/`apply`, as the
//! Control UIs do): what the file holds, with secrets replaced by the reference's
//! sentinel; a new text checked exactly as `switchboard config validate` checks it; and
//! the write.
//!
//! Invariants:
//! * No secret leaves the gateway: every value under a secret-looking key (token,
//!   password, secret, API key, private key) is sent as [`REDACTED`], and a submitted
//!   [`REDACTED`] is put back to the value the file holds at that path (a sentinel with
//!   no saved value is refused, never written).
//! * Nothing invalid is written: the candidate goes to a temporary file beside the
//!   config, is resolved by the same [`super::resolve`] with the gateway's own flags and
//!   environment, and only then renamed over the config (fsynced, then the folder).
//!   The previous file is kept as `<name>.bak`: the file is rewritten as JSON, so its
//!   comments would otherwise be lost.
//! * A write is based on what the client saw: `baseHash` (the SHA-256 of the file's
//!   bytes, as `config.get` gave it) must match the file now, except for a patch that
//!   only touches `ui.prefs` (the reference's last-writer-wins paths).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Env, Flags};

/// What the reference sends in place of a secret, and accepts back as "unchanged".
pub const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// Paths a patch may change without a base hash (the reference's list).
pub const HASHLESS_PATHS: &[&str] = &["ui.prefs"];

/// The config file as it is now.
#[derive(Debug, Clone)]
pub struct FileSnapshot {
    pub path: PathBuf,
    pub exists: bool,
    /// SHA-256 of its bytes, hex (`None` when it does not exist).
    pub hash: Option<String>,
    /// Its value (`{}` when absent or empty).
    pub value: Value,
}

/// Why an edit was refused (the message is the client's, and names no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// The file changed since the client read it, or no hash was given.
    Conflict(String),
    /// The submitted text or the config it makes is invalid: every problem.
    Invalid(Vec<String>),
    /// The file could not be read or written.
    Io(String),
}

impl std::fmt::Display for EditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EditError::Conflict(m) | EditError::Io(m) => f.write_str(m),
            EditError::Invalid(p) => write!(f, "invalid config: {}", p.join("; ")),
        }
    }
}

pub fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn read(path: &Path) -> Result<FileSnapshot, EditError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let value = if text.trim().is_empty() {
                Value::Object(Map::new())
            } else {
                json5::from_str(&text).unwrap_or(Value::Object(Map::new()))
            };
            Ok(FileSnapshot {
                path: path.to_owned(),
                exists: true,
                hash: Some(hash(&bytes)),
                value,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileSnapshot {
            path: path.to_owned(),
            exists: false,
            hash: None,
            value: Value::Object(Map::new()),
        }),
        Err(e) => Err(EditError::Io(format!(
            "cannot read {}: {}",
            path.display(),
            e.kind()
        ))),
    }
}

/// Whether a key names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace(['_', '-'], "");
    [
        "token",
        "password",
        "secret",
        "apikey",
        "privatekey",
        "passphrase",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// The value with every secret replaced by [`REDACTED`].
pub fn redact(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() && !v.is_object() {
                        Value::String(REDACTED.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Puts back every [`REDACTED`] in `new` from `old` at the same path.
pub fn restore(new: &mut Value, old: &Value) -> Result<(), EditError> {
    fn walk(new: &mut Value, old: Option<&Value>, path: &str, missing: &mut Vec<String>) {
        match new {
            Value::String(s) if s == REDACTED => match old {
                Some(o) if !o.is_null() && o.as_str() != Some(REDACTED) => *new = o.clone(),
                _ => missing.push(format!(
                    "{path}: a redacted value with no saved value; enter it again"
                )),
            },
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, old.and_then(|o| o.get(k)), &p, missing);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter_mut().enumerate() {
                    walk(
                        v,
                        old.and_then(|o| o.get(i)),
                        &format!("{path}[{i}]"),
                        missing,
                    );
                }
            }
            _ => {}
        }
    }
    let mut missing = Vec::new();
    walk(new, Some(old), "", &mut missing);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(EditError::Invalid(missing))
    }
}

/// RFC 7396 merge patch (`null` removes a key).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// The leaf paths whose values differ (`a.b`, `[i]` for arrays as a whole).
pub fn changed_paths(a: &Value, b: &Value) -> Vec<String> {
    fn walk(a: Option<&Value>, b: Option<&Value>, path: &str, out: &mut Vec<String>) {
        fn obj<'v>(
            v: Option<&'v Value>,
            empty: &'v Map<String, Value>,
        ) -> Option<&'v Map<String, Value>> {
            match v {
                Some(Value::Object(m)) => Some(m),
                None => Some(empty),
                _ => None,
            }
        }
        let empty = Map::new();
        match (obj(a, &empty), obj(b, &empty)) {
            (Some(x), Some(y)) if a.is_some() || b.is_some() => {
                if (x.is_empty() && y.is_empty()) && a != b {
                    out.push(path.to_owned());
                    return;
                }
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(x.get(k), y.get(k), &p, out);
                }
            }
            _ if a == b => {}
            _ => out.push(if path.is_empty() {
                "<root>".into()
            } else {
                path.to_owned()
            }),
        }
    }
    let mut out = Vec::new();
    walk(Some(a), Some(b), "", &mut out);
    out
}

/// Whether every path is one a patch may change without a base hash.
pub fn only_hashless(paths: &[String]) -> bool {
    paths.iter().all(|p| {
        HASHLESS_PATHS
            .iter()
            .any(|h| p == h || p.starts_with(&format!("{h}.")))
    })
}

/// Whether these changes need a restart to take effect (everything but the Control UI's
/// own `ui` section, which Switchboard keeps for it and does not read).
pub fn needs_restart(paths: &[String]) -> bool {
    paths.iter().any(|p| p != "ui" && !p.starts_with("ui."))
}

/// Refuses a write not based on the file as it is now.
pub fn check_base(snapshot: &FileSnapshot, base_hash: Option<&str>) -> Result<(), EditError> {
    let Some(current) = &snapshot.hash else {
        return Ok(());
    };
    match base_hash {
        None => Err(EditError::Conflict(
            "config base hash required; re-run config.get and retry".into(),
        )),
        Some(h) if h == current => Ok(()),
        Some(_) => Err(EditError::Conflict(
            "config changed since last load; re-run config.get and retry".into(),
        )),
    }
}

/// Parses a client's JSON5 text into an object.
pub fn parse_object(raw: &str) -> Result<Value, EditError> {
    let v: Value = json5::from_str(raw)
        .map_err(|e| EditError::Invalid(vec![format!("not valid JSON5: {e}")]))?;
    if !v.is_object() {
        return Err(EditError::Invalid(vec![
            "the top level must be an object ({ … })".into(),
        ]));
    }
    Ok(v)
}

/// Validates `value` as `switchboard config validate` would the gateway's config, then
/// writes it over `path` (atomically, keeping the old file as `.bak`); returns the new
/// hash.
pub fn write_validated(
    flags: &Flags,
    env: &dyn Env,
    path: &Path,
    value: &Value,
) -> Result<String, EditError> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default() + "\n";
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |what: &str, e: std::io::Error| {
        EditError::Io(format!(
            "cannot {what} beside {}: {}",
            path.display(),
            e.kind()
        ))
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".config-edit-")
        .suffix(".json5")
        .tempfile_in(dir)
        .map_err(|e| io("create a temporary file", e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| io("write a temporary file", e))?;
    let mut check = flags.clone();
    check.config = Some(tmp.path().to_owned());
    if let Err(e) = super::resolve(&check, env) {
        let tmp_name = tmp.path().display().to_string();
        let problems = match e {
            super::ConfigError::Invalid { problems, .. } => problems,
            other => vec![other.to_string()],
        };
        // The temporary file's name means nothing to the client: name the config.
        let shown = path.display().to_string();
        return Err(EditError::Invalid(
            problems
                .into_iter()
                .map(|p| p.replace(&tmp_name, &shown))
                .collect(),
        ));
    }
    if path.exists() {
        let bak = path.with_extension(match path.extension() {
            Some(x) => format!("{}.bak", x.to_string_lossy()),
            None => "bak".into(),
        });
        std::fs::copy(path, &bak).map_err(|e| io("keep a backup", e))?;
    }
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600));
    tmp.persist(path)
        .map_err(|e| io("replace the config file", e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(hash(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_and_restored_from_the_file() {
        let file =
            json!({"gateway": {"auth": {"token": "s3cret"}, "port": 1}, "agent": {"apiKey": "k"}});
        let shown = redact(&file);
        assert_eq!(shown["gateway"]["auth"]["token"], REDACTED);
        assert_eq!(shown["agent"]["apiKey"], REDACTED);
        assert_eq!(shown["gateway"]["port"], 1);
        assert!(!shown.to_string().contains("s3cret"));
        let mut edited = shown.clone();
        edited["gateway"]["port"] = json!(2);
        restore(&mut edited, &file).unwrap();
        assert_eq!(edited["gateway"]["auth"]["token"], "s3cret");
        assert_eq!(edited["gateway"]["port"], 2);
        // A sentinel where the file has nothing is refused.
        let mut bad = json!({"gateway": {"auth": {"password": REDACTED}}});
        assert!(matches!(
            restore(&mut bad, &file),
            Err(EditError::Invalid(_))
        ));
    }

    #[test]
    fn a_merge_patch_and_its_changed_paths() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "ui": {"prefs": {"x": 1}}});
        let before = v.clone();
        merge_patch(
            &mut v,
            &json!({"a": {"c": null, "d": 3}, "ui": {"prefs": {"x": 2}}}),
        );
        assert_eq!(v, json!({"a": {"b": 1, "d": 3}, "ui": {"prefs": {"x": 2}}}));
        let paths = changed_paths(&before, &v);
        assert_eq!(paths, vec!["a.c", "a.d", "ui.prefs.x"]);
        assert!(!only_hashless(&paths));
        assert!(only_hashless(&["ui.prefs.x".to_owned()]));
        assert!(!needs_restart(&["ui.prefs.x".to_owned()]));
        assert!(needs_restart(&paths));
        // A section the file does not have yet: its leaves, not the section.
        let added = changed_paths(&json!({}), &json!({"ui": {"prefs": {"x": 1}}}));
        assert_eq!(added, vec!["ui.prefs.x"]);
    }
}
