//! The files under `schemas/json/` are exactly what the Rust types generate.
//! `UPDATE_SCHEMAS=1 cargo test -p switchboard-schemas` rewrites them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn json_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("json")
}

fn files_on_disk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("schemas/json is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files_on_disk(&path, base, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            let rel = path.strip_prefix(base).expect("under base");
            out.insert(rel.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn schema_files_are_fresh() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let dir = json_dir();
    let mut expected = BTreeSet::new();
    let mut stale = Vec::new();
    for entry in switchboard_schemas::catalog() {
        let file = switchboard_schemas::schema_file_name(&entry.name);
        let path = dir.join(&file);
        let text = serde_json::to_string_pretty(&entry.schema).expect("schema serializes") + "\n";
        if update {
            std::fs::create_dir_all(path.parent().expect("has parent")).expect("mkdir");
            std::fs::write(&path, &text).expect("write schema");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(file.clone());
        }
        expected.insert(file);
    }
    let mut on_disk = BTreeSet::new();
    files_on_disk(&dir, &dir, &mut on_disk);
    let extra: Vec<_> = on_disk.difference(&expected).collect();
    if update {
        for f in &extra {
            std::fs::remove_file(dir.join(f)).expect("remove stale schema");
        }
        return;
    }
    assert!(
        stale.is_empty() && extra.is_empty(),
        "schemas/json is stale (stale: {stale:?}, not generated: {extra:?}); \
         run `UPDATE_SCHEMAS=1 cargo test -p switchboard-schemas` and commit the result"
    );
}

#[test]
fn every_schema_compiles_and_names_are_unique() {
    let mut names = BTreeSet::new();
    for entry in switchboard_schemas::catalog() {
        assert!(
            names.insert(entry.name.clone()),
            "duplicate schema {}",
            entry.name
        );
        let schema = &entry.schema;
        assert!(schema.is_object(), "{} is an object schema", entry.name);
    }
}
