//! Client-supplied strings that the gateway stores or broadcasts (issue #17 point 2):
//! each has a documented maximum length in both versions' schemas
//! (`schemas/src/limits.rs`), the presence list is bounded in bytes as well as in entries,
//! and which clients are tracked at all follows each reference.

use serde_json::{Value, json};

use crate::harness::*;

const NAME_MAX: usize = 256;

fn with_display_name(mut p: Value, len: usize) -> Value {
    p["client"]["displayName"] = json!("n".repeat(len));
    p
}

#[tokio::test]
async fn a_display_name_over_its_limit_is_refused_in_both_versions_and_one_at_it_is_accepted() {
    let gw = Gateway::start();
    for params in [v3_params(Some(TOKEN)), v4_params(Some(TOKEN))] {
        let version = params["minProtocol"].clone();
        let mut c = Client::open(&gw.url()).await;
        let r = c
            .connect_raw(with_display_name(params.clone(), NAME_MAX + 1))
            .await;
        assert_eq!(r["ok"], false, "v{version}: {r}");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("displayName") && msg.contains("256"),
            "v{version}: the refusal names the field and its limit: {msg}"
        );
        let (_, hello) = Client::connect(&gw.url(), with_display_name(params, NAME_MAX)).await;
        assert_eq!(hello["type"], "hello-ok");
    }
}

#[tokio::test]
async fn system_event_fields_are_bounded_too() {
    let gw = Gateway::start();
    let (mut admin, _) =
        Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.admin"])).await;
    let r = admin
        .request(
            "system-event",
            json!({"text": "t".repeat(2049), "host": "h"}),
        )
        .await;
    assert_eq!(r["ok"], false, "{r}");
    let r = admin
        .request(
            "system-event",
            json!({"text": "ok", "host": "h", "tags": vec!["x".repeat(129)]}),
        )
        .await;
    assert_eq!(r["ok"], false, "{r}");
    let r = admin
        .request(
            "system-event",
            json!({"text": "t".repeat(2048), "host": "h"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
}

#[tokio::test]
async fn the_presence_list_stays_bounded_in_bytes_however_large_its_entries() {
    let gw = Gateway::start();
    let (mut admin, _) =
        Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.admin"])).await;
    // 150 entries at every field's limit: about 20 KiB each, 3 MB unbounded.
    for i in 0..150 {
        let r = admin
            .request(
                "system-event",
                json!({
                    "text": format!("{i:03}{}", "t".repeat(2045)),
                    "host": format!("{i:03}{}", "h".repeat(253)),
                    "instanceId": format!("{i:03}{}", "i".repeat(253)),
                    "platform": "p".repeat(128),
                    "version": "v".repeat(128),
                    "tags": (0..32).map(|t| format!("{t:02}{}", "g".repeat(126))).collect::<Vec<_>>(),
                    "roles": (0..32).map(|t| format!("{t:02}{}", "r".repeat(126))).collect::<Vec<_>>(),
                    "scopes": (0..32).map(|t| format!("{t:02}{}", "s".repeat(126))).collect::<Vec<_>>(),
                }),
            )
            .await;
        assert_eq!(r["ok"], true, "{r}");
    }
    for params in [v3_params(Some(TOKEN)), v4_params(Some(TOKEN))] {
        let (_, hello) = Client::connect(&gw.url(), params).await;
        let presence = &hello["snapshot"]["presence"];
        let bytes = presence.to_string().len();
        assert!(
            bytes <= 256 * 1024 + 4096,
            "hello-ok carries {bytes} bytes of presence"
        );
        let entries = presence.as_array().unwrap();
        assert!(entries.len() > 5, "{} entries", entries.len());
        // The newest system event is kept; the oldest gave way.
        let texts: Vec<&str> = entries.iter().filter_map(|e| e["text"].as_str()).collect();
        assert!(texts.iter().any(|t| t.starts_with("149")));
        assert!(!texts.iter().any(|t| t.starts_with("000")));
    }
}

async fn presence_modes(c: &mut Client) -> Vec<String> {
    let r = c.request("system-presence", json!({})).await;
    assert_eq!(r["ok"], true, "{r}");
    r["payload"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["mode"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn which_clients_are_tracked_follows_each_reference() {
    let gw = Gateway::start();
    let (mut watcher, _) =
        Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.read"])).await;
    let client = |v: u64, mode: &str| {
        json!({
            "minProtocol": v, "maxProtocol": v,
            "client": {"id": "gateway-client", "version": "1", "platform": "linux", "mode": mode},
            "auth": {"token": TOKEN},
        })
    };
    // v4 (OpenClaw): backend and probe clients are ephemeral, not tracked, even with no
    // scopes at all; a ui client with no scopes is.
    let (_b4, _) = Client::connect(&gw.url(), client(4, "backend")).await;
    let (_p4, _) = Client::connect(&gw.url(), client(4, "probe")).await;
    let (_u4, _) = Client::connect(&gw.url(), client(4, "ui")).await;
    // v3 (clawdbot): only CLI clients are left out.
    let (_b3, _) = Client::connect(&gw.url(), client(3, "backend")).await;
    let modes = presence_modes(&mut watcher).await;
    assert_eq!(
        modes.iter().filter(|m| *m == "backend").count(),
        1,
        "only the v3 backend client is tracked: {modes:?}"
    );
    assert!(!modes.iter().any(|m| m == "probe"), "{modes:?}");
    assert!(modes.iter().any(|m| m == "ui"), "{modes:?}");
    assert!(!modes.iter().any(|m| m == "cli"), "{modes:?}");
}
