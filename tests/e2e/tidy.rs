//! Tidy checks over the repository itself (no binaries run): the codemap stays true.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// A backticked span of the codemap, with where it is said: the crate of its `###`
/// section and the folder its bullet is about (its first span ending in `/`), against
/// which bare file names are read.
struct Span {
    code: String,
    krate: String,
    folder: String,
}

fn code_spans(text: &str) -> Vec<Span> {
    let mut out = Vec::new();
    let (mut in_fence, mut krate, mut folder) = (false, String::new(), String::new());
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        if line.starts_with('#') || line.starts_with("* ") || line.trim().is_empty() {
            folder.clear();
        }
        let mut parts = line.split('`');
        parts.next();
        let mut first = true;
        while let (Some(code), Some(_)) = (parts.next(), parts.next()) {
            if line.starts_with("### ") && first {
                krate = code.trim_end_matches('/').to_owned();
            } else if folder.is_empty() && code.ends_with('/') && !code.starts_with("..") {
                folder = code.to_owned();
            }
            first = false;
            out.push(Span {
                code: code.to_owned(),
                krate: krate.clone(),
                folder: folder.clone(),
            });
        }
    }
    out
}

/// Where a path named in the codemap may live: the root, or inside a crate's sources.
const BASES: &[&str] = &[
    "",
    "supervisor/src",
    "schemas/src",
    "workers/runtime/src",
    "workers/telegram/src",
    "workers/whatsapp/src",
    "workers/signal/src",
    "workers/imessage/src",
    "workers/agent/src",
    "tests/src",
    "tests/e2e",
];

#[test]
fn codemap_names_only_paths_that_exist() {
    let root = root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let src = root.join("supervisor/src");
    let tops: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut missing = Vec::new();
    for span in code_spans(&text) {
        let s = span.code.trim();
        let looks_like_path = (s.ends_with(".rs") || s.ends_with('/') || s.ends_with(".proto"))
            && !s.contains(' ')
            && !s.starts_with("../")
            && !s.contains('<')
            && !s.contains('*');
        if looks_like_path {
            let mut bases: Vec<PathBuf> = BASES.iter().map(|b| root.join(b)).collect();
            if !span.krate.is_empty() {
                bases.push(root.join(&span.krate));
                bases.push(root.join(&span.krate).join("src"));
            }
            let found = bases.iter().any(|b| {
                b.join(s).exists()
                    || (!span.folder.is_empty() && b.join(&span.folder).join(s).exists())
            });
            if !found {
                missing.push(s.to_owned());
            }
            continue;
        }
        // `channels::providers::ALL`: a module path of the supervisor must name modules
        // that exist (the last segment may be an item inside them).
        let segs: Vec<&str> = s.split("::").collect();
        if segs.len() >= 2
            && tops.iter().any(|t| t == segs[0])
            && segs
                .iter()
                .all(|x| !x.is_empty() && x.chars().all(|c| c.is_alphanumeric() || c == '_'))
        {
            let mut dir = src.clone();
            let mut ok = true;
            for (i, seg) in segs.iter().enumerate() {
                let as_dir = dir.join(seg);
                let as_file = dir.join(format!("{seg}.rs"));
                if as_dir.is_dir() {
                    dir = as_dir;
                } else if as_file.exists() {
                    break;
                } else if i + 1 == segs.len() {
                    // An item of the module `dir` (a type, a function, a constant).
                } else {
                    ok = false;
                    break;
                }
            }
            if !ok {
                missing.push(s.to_owned());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what does not exist: {missing:?}"
    );
}

#[test]
fn codemap_describes_every_crate() {
    let root = root();
    let text = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .split("members")
        .nth(1)
        .and_then(|m| m.split(']').next())
        .unwrap_or_default();
    for member in members.split('"').skip(1).step_by(2) {
        assert!(
            text.contains(&format!("`{member}/`")) || text.contains(&format!("`{member}`")),
            "ARCHITECTURE.md does not describe the crate {member}"
        );
    }
}
