//! The config file (JSON5) through parsing, resolution and validation
//! (`config::resolve`), as `switchboard gateway run` and `config validate` read it.
//!
//! Invariants: nothing panics; a secret written in the file (`token`, `password`,
//! `apiKey`, `botToken`, `appToken`, …) never appears in an error message or in the
//! resolved config's debug output.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard::config::env::MapEnv;
use switchboard::config::{Flags, resolve};

const SECRET_KEYS: &[&str] = &[
    "token",
    "password",
    "apiKey",
    "botToken",
    "appToken",
    "signingSecret",
];

fn dir() -> &'static tempfile::TempDir {
    static D: OnceLock<tempfile::TempDir> = OnceLock::new();
    D.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

fn secrets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::String(s) if SECRET_KEYS.contains(&k.as_str()) => {
                        out.push(s.trim().to_owned())
                    }
                    _ => secrets(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| secrets(v, out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let state = dir().path();
    let path = state.join("config.json5");
    std::fs::write(&path, text).expect("write config");
    let flags = Flags {
        state_dir: Some(state.to_owned()),
        config: Some(path),
        ..Flags::default()
    };
    let env = MapEnv::with(&[("HOME", state.to_str().unwrap())]);
    let shown = match resolve(&flags, &env) {
        Ok(cfg) => format!("{cfg:?}"),
        Err(e) => e.to_string(),
    };
    let mut found = Vec::new();
    if let Ok(v) = json5::from_str::<Value>(text) {
        secrets(&v, &mut found);
    }
    for s in found {
        // Only distinctive secrets that appear once in the file: a value that is also a
        // key or another setting's value may rightly be named.
        if s.len() >= 8 && text.matches(s.as_str()).count() == 1 {
            assert!(!shown.contains(&s), "a secret reached the output: {shown}");
        }
    }
});
