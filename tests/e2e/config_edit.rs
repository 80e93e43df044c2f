//! #27 point 2: the Control UIs edit the config file through `config.get`, `config.set`,
//! `config.patch` and `config.apply`, in the v4 reference's shapes: secrets never leave
//! the gateway (the reference's `__OPENCLAW_REDACTED__` sentinel, put back on write), a
//! write is checked exactly as `switchboard config validate` checks the file and based
//! on the hash the client read, the file is replaced atomically with a backup, and an
//! apply restarts the gateway in place.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::harness::*;

const SENTINEL: &str = "__OPENCLAW_REDACTED__";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn agent_model(get: &Value) -> Value {
    get["payload"]["resolved"]["workers"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["name"] == "agent"))
        .map(|w| w["config"]["model"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_control_ui_edits_the_config_file_with_secrets_redacted_validated_and_applied_by_a_restart()
 {
    let state = Arc::new(tempfile::tempdir().unwrap());
    let path = state.path().join("config.json5");
    std::fs::write(
        &path,
        format!("// mine\n{{ gateway: {{ auth: {{ token: \"{TOKEN}\" }} }}, agent: {{ model: \"m1\" }} }}\n"),
    )
    .unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(Arc::clone(&state)),
        ..Default::default()
    });
    let admin = || v4_cli_params(TOKEN, &["operator.admin"]);
    let (mut c, _) = Client::connect(&gw.url(), admin()).await;

    // config.get: the file, its hash, no secret.
    let get = c.request("config.get", json!({})).await;
    assert_eq!(get["ok"], true, "{get}");
    let p = &get["payload"];
    assert!(
        !get.to_string().contains(TOKEN),
        "the token is never sent: {get}"
    );
    assert_eq!(p["exists"], true);
    assert_eq!(p["parsed"]["gateway"]["auth"]["token"], SENTINEL);
    assert_eq!(p["hash"], sha256_hex(&std::fs::read(&path).unwrap()));
    assert_eq!(agent_model(&get), "m1");
    let raw: Value = serde_json::from_str(p["raw"].as_str().unwrap()).unwrap();
    assert_eq!(raw["agent"]["model"], "m1");
    let hash = p["hash"].as_str().unwrap().to_owned();

    // config.schema: the shape of the config.
    let schema = c.request("config.schema", json!({})).await;
    let s = &schema["payload"]["schema"];
    assert!(s["properties"]["gateway"].is_object(), "{schema}");

    // config.set: the edited text (sentinel kept) is written with the secret restored.
    let mut edited = raw.clone();
    edited["agent"]["model"] = json!("m2");
    let set = c
        .request(
            "config.set",
            json!({"raw": edited.to_string(), "baseHash": hash}),
        )
        .await;
    assert_eq!(set["ok"], true, "{set}");
    assert!(!set.to_string().contains(TOKEN), "{set}");
    let on_disk: Value = json5::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk["agent"]["model"], "m2");
    assert_eq!(
        on_disk["gateway"]["auth"]["token"], TOKEN,
        "the secret is put back"
    );
    assert_eq!(
        set["payload"]["hash"],
        sha256_hex(&std::fs::read(&path).unwrap())
    );
    let bak = std::fs::read_to_string(state.path().join("config.json5.bak")).unwrap();
    assert!(
        bak.starts_with("// mine"),
        "the previous file is kept: {bak}"
    );
    let new_hash = set["payload"]["hash"].as_str().unwrap().to_owned();

    // A write based on an old read is refused, and changes nothing.
    let before = std::fs::read(&path).unwrap();
    let stale = c
        .request(
            "config.set",
            json!({"raw": edited.to_string(), "baseHash": hash}),
        )
        .await;
    assert_eq!(stale["ok"], false);
    assert_eq!(
        stale["error"]["message"],
        "config changed since last load; re-run config.get and retry"
    );
    let none = c
        .request("config.set", json!({"raw": edited.to_string()}))
        .await;
    assert_eq!(
        none["error"]["message"],
        "config base hash required; re-run config.get and retry"
    );

    // An invalid config is refused with the very problems `config validate` reports.
    let mut bad = edited.clone();
    bad["gateway"]["nope"] = json!(1);
    bad["gateway"]["bind"] = json!("nowhere");
    let refused = c
        .request(
            "config.set",
            json!({"raw": bad.to_string(), "baseHash": new_hash}),
        )
        .await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert_eq!(refused["error"]["code"], "INVALID_REQUEST");
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("config.json5");
    std::fs::write(&probe, bad.to_string()).unwrap();
    let out = std::process::Command::new(bin("switchboard"))
        .args(["config", "validate", "--json", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let validate: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = validate["problems"].as_array().unwrap();
    assert!(!problems.is_empty(), "{validate}");
    let issues: Vec<String> = refused["error"]["details"]["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["message"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = problems
        .iter()
        .map(|p| {
            p.as_str()
                .unwrap()
                .replace(&probe.display().to_string(), &path.display().to_string())
        })
        .collect();
    assert_eq!(issues, expected, "{refused}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing written");
    // A sentinel with no saved value is refused too.
    let mut lost = edited.clone();
    lost["gateway"]["auth"]["password"] = json!(SENTINEL);
    let r = c
        .request(
            "config.set",
            json!({"raw": lost.to_string(), "baseHash": new_hash}),
        )
        .await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing written");

    // config.patch: the UI's prefs need no hash and no restart; anything else needs both.
    let prefs = c
        .request(
            "config.patch",
            json!({"raw": "{\"ui\":{\"prefs\":{\"theme\":\"dark\"}}}", "note": "control-ui prefs sync"}),
        )
        .await;
    assert_eq!(prefs["ok"], true, "{prefs}");
    assert_eq!(prefs["payload"]["changedPaths"], json!(["ui.prefs.theme"]));
    assert!(prefs["payload"]["restart"].is_null(), "{prefs}");
    let guarded = c
        .request(
            "config.patch",
            json!({"raw": "{\"agent\":{\"model\":\"m9\"}}"}),
        )
        .await;
    assert_eq!(
        guarded["error"]["message"],
        "config base hash required for agent.model; re-run config.get and retry with baseHash"
    );
    let noop = c
        .request(
            "config.patch",
            json!({"raw": "{\"ui\":{\"prefs\":{\"theme\":\"dark\"}}}"}),
        )
        .await;
    assert_eq!(noop["payload"]["noop"], true, "{noop}");

    // A read-only operator may read but not write.
    let (mut reader, _) =
        Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    assert_eq!(reader.request("config.get", json!({})).await["ok"], true);
    let denied = reader
        .request("config.set", json!({"raw": "{}", "baseHash": "x"}))
        .await;
    assert_eq!(denied["ok"], false);

    // config.apply: written, then the gateway restarts in place and serves the new config.
    let hash = c.request("config.get", json!({})).await["payload"]["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    edited["agent"]["model"] = json!("m3");
    let applied = c
        .request(
            "config.apply",
            json!({"raw": edited.to_string(), "baseHash": hash}),
        )
        .await;
    assert_eq!(applied["ok"], true, "{applied}");
    assert_eq!(applied["payload"]["restart"]["reason"], "config.apply");
    assert_eq!(
        applied["payload"]["sentinel"]["payload"]["stats"]["requiresRestart"],
        true
    );
    let ev = c.event("shutdown").await;
    assert_eq!(ev["payload"]["reason"], "gateway restarting");
    assert_eq!(c.closed().await.map(|c| c.0), Some(1012));
    gw.wait_log("the restarted gateway to listen", |l| {
        l.matches("listening on ws://127.0.0.1").count() >= 2
    });
    let (mut c, _) = Client::connect(&gw.url(), admin()).await;
    let get = c.request("config.get", json!({})).await;
    assert_eq!(agent_model(&get), "m3", "{get}");
    assert_eq!(get["payload"]["hash"], applied["payload"]["hash"]);
}
