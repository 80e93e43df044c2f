//! protocol.md "Roles, scopes and who may call what": every advertised method, walked
//! with a connection that lacks its scope, is refused with the protocol's error.

use serde_json::json;

use crate::harness::*;

/// The scope each method needs, as protocol.md gives it (`health`: read on v3, nothing
/// on v4). A method the gateway advertises but this table lacks fails the test.
const SPEC: &[(&str, &str)] = &[
    ("health", "operator.read"),
    ("status", "operator.read"),
    ("system-presence", "operator.read"),
    ("last-heartbeat", "operator.read"),
    ("system-event", "operator.admin"),
    ("sessions.list", "operator.read"),
    ("chat.history", "operator.read"),
    ("logs.tail", "operator.read"),
    ("channels.status", "operator.read"),
    ("models.list", "operator.read"),
    ("node.pair.request", "operator.pairing"),
    ("node.pair.list", "operator.pairing"),
    ("node.pair.approve", "operator.pairing"),
    ("node.pair.reject", "operator.pairing"),
    ("node.pair.verify", "operator.pairing"),
    ("node.rename", "operator.pairing"),
    ("node.list", "operator.read"),
    ("node.describe", "operator.read"),
    ("node.invoke", "operator.write"),
    ("node.invoke.result", "node"),
    ("node.event", "node"),
    ("node.invoke.progress", "node"),
    ("skills.bins", "node"),
    ("node.skills.update", "node"),
    ("node.pluginTools.update", "node"),
    ("node.runnerInventory.update", "node"),
    ("node.pluginSurface.refresh", "node"),
    ("plugin.surface.refresh", "operator.read"),
    ("device.pair.list", "operator.pairing"),
    ("device.pair.approve", "operator.pairing"),
    ("device.pair.reject", "operator.pairing"),
    ("device.token.rotate", "operator.pairing"),
    ("device.token.revoke", "operator.pairing"),
    ("send", "operator.write"),
    ("web.login.start", "operator.admin"),
    ("web.login.wait", "operator.admin"),
    ("channels.logout", "operator.admin"),
    ("pairing.list", "operator.pairing"),
    ("pairing.approve", "operator.pairing"),
    ("pairing.reject", "operator.pairing"),
    ("pairing.revoke", "operator.pairing"),
    ("agent", "operator.write"),
    ("agent.wait", "operator.write"),
    ("chat.send", "operator.write"),
    ("chat.abort", "operator.write"),
    ("workers.list", "operator.admin"),
    ("workers.restart", "operator.admin"),
    ("workers.stop", "operator.admin"),
    ("workers.start", "operator.admin"),
    ("chat.startup", "operator.read"),
    ("chat.metadata", "operator.read"),
    ("agents.list", "operator.read"),
    ("agent.identity.get", "operator.read"),
    ("sessions.describe", "operator.read"),
    ("sessions.subscribe", "operator.read"),
    ("sessions.messages.subscribe", "operator.read"),
    ("sessions.messages.unsubscribe", "operator.read"),
    ("sessions.observer.visibility", "operator.read"),
    ("sessions.branches.list", "operator.read"),
    ("sessions.companion.state", "operator.read"),
    ("sessions.usage", "operator.read"),
    ("usage.status", "operator.read"),
    ("models.authStatus", "operator.read"),
    ("config.get", "operator.read"),
    ("config.schema", "operator.read"),
    ("channels.pairing.list", "operator.pairing"),
    ("system.info", "operator.read"),
    ("diagnostics.lanes", "operator.read"),
    ("update.status", "operator.admin"),
    ("cron.list", "operator.read"),
    ("cron.status", "operator.read"),
    ("cron.runs", "operator.read"),
    ("cron.get", "operator.read"),
    ("cron.add", "operator.admin"),
    ("cron.update", "operator.admin"),
    ("cron.remove", "operator.admin"),
    ("cron.run", "operator.admin"),
    ("cron.scratch.get", "operator.admin"),
    ("cron.scratch.set", "operator.admin"),
    ("set-heartbeats", "operator.admin"),
    ("wake", "operator.write"),
    ("config.set", "operator.admin"),
    ("config.patch", "operator.admin"),
    ("config.apply", "operator.admin"),
    ("exec.approvals.get", "operator.admin"),
    ("exec.approval.list", "operator.approvals"),
    ("plugin.approval.list", "operator.approvals"),
    ("openclaw.approval.list", "operator.approvals"),
    ("approval.history", "operator.approvals"),
    ("question.list", "operator.questions"),
    ("tasks.list", "operator.read"),
    ("progressCard.get", "operator.read"),
    ("talk.catalog", "operator.read"),
    ("plugins.list", "operator.read"),
    ("environments.list", "operator.read"),
    ("skills.status", "operator.read"),
    ("skills.library.list", "operator.read"),
    ("skills.search", "operator.read"),
    ("plugins.catalog.browse", "operator.read"),
    ("artifacts.list", "operator.read"),
    ("themes.list", "operator.read"),
];

/// v3-only methods (v4 answers `unknown method`).
const V3_ONLY: &[&str] = &["node.pair.request", "node.pair.verify"];

/// v4-only methods (v3 answers `unknown method`, as the v3 reference has none of them).
const V4_ONLY: &[&str] = &[
    "cron.get",
    "cron.scratch.get",
    "cron.scratch.set",
    "node.invoke.progress",
    "node.skills.update",
    "node.pluginTools.update",
    "node.pluginSurface.refresh",
    "plugin.surface.refresh",
    "node.runnerInventory.update",
    "chat.startup",
    "chat.metadata",
    "sessions.describe",
    "sessions.subscribe",
    "sessions.messages.subscribe",
    "sessions.messages.unsubscribe",
    "sessions.observer.visibility",
    "sessions.branches.list",
    "sessions.companion.state",
    "sessions.usage",
    "usage.status",
    "models.authStatus",
    "channels.pairing.list",
    "system.info",
    "diagnostics.lanes",
    "update.status",
    "exec.approval.list",
    "plugin.approval.list",
    "openclaw.approval.list",
    "approval.history",
    "question.list",
    "tasks.list",
    "progressCard.get",
    "talk.catalog",
    "plugins.list",
    "environments.list",
    "skills.library.list",
    "skills.search",
    "plugins.catalog.browse",
    "artifacts.list",
    "themes.list",
];

/// Known but not advertised, as the reference hides them.
const HIDDEN: &[&str] = &["node.runnerInventory.update"];

/// A scope set that holds none of `needed` (nor anything implying it).
fn lacking(needed: &str) -> Vec<&'static str> {
    match needed {
        "operator.read" => vec!["operator.approvals"],
        "operator.write" => vec!["operator.read", "operator.pairing"],
        "operator.pairing" => vec!["operator.read", "operator.write"],
        "operator.admin" => vec![
            "operator.read",
            "operator.write",
            "operator.pairing",
            "operator.approvals",
        ],
        "operator.approvals" => vec!["operator.read", "operator.write", "operator.pairing"],
        "operator.questions" => vec![
            "operator.read",
            "operator.write",
            "operator.pairing",
            "operator.approvals",
        ],
        other => panic!("no lacking set for {other}"),
    }
}

#[tokio::test]
async fn every_method_is_denied_without_its_scope_in_both_generations() {
    let gw = Gateway::start();
    for version in [3u64, 4] {
        let (_c, hello) = Client::connect(
            &gw.url(),
            if version == 3 {
                v3_params(Some(TOKEN))
            } else {
                v4_cli_params(TOKEN, &["operator.admin"])
            },
        )
        .await;
        let advertised: Vec<String> = hello["features"]["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect();
        for m in &advertised {
            assert!(
                SPEC.iter().any(|(n, _)| n == m),
                "v{version} advertises {m}, which the spec table lacks"
            );
        }
        for (method, needed) in SPEC {
            if version == 4 && V3_ONLY.contains(method) {
                assert!(
                    !advertised.iter().any(|m| m == method),
                    "v4 advertises {method}"
                );
                let (mut c, _) =
                    Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.admin"])).await;
                let r = c.request(method, json!({})).await;
                assert_eq!(r["error"]["message"], format!("unknown method: {method}"));
                continue;
            }
            if version == 3 && V4_ONLY.contains(method) {
                assert!(
                    !advertised.iter().any(|m| m == method),
                    "v3 advertises {method}"
                );
                let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
                let r = c.request(method, json!({})).await;
                assert_eq!(r["error"]["message"], format!("unknown method: {method}"));
                continue;
            }
            assert_eq!(
                advertised.iter().any(|m| m == method),
                !HIDDEN.contains(method),
                "v{version} advertises {method}: hidden methods are not, others are"
            );
            if version == 4 && *method == "health" {
                continue; // v4: health needs no scope (tested elsewhere)
            }
            if *needed == "node" {
                let (mut c, _) =
                    Client::connect(&gw.url(), v4_cli_params(TOKEN, &["operator.admin"])).await;
                let r = c.request(method, json!({})).await;
                assert_eq!(
                    r["error"]["message"], "unauthorized role: operator",
                    "{method}"
                );
                continue;
            }
            let scopes = lacking(needed);
            let params = if version == 3 {
                let mut p = v3_params(Some(TOKEN));
                p["scopes"] = json!(scopes);
                p
            } else {
                v4_cli_params(TOKEN, &scopes)
            };
            let (mut c, _) = Client::connect(&gw.url(), params).await;
            let r = c.request(method, json!({})).await;
            assert_eq!(r["ok"], false, "v{version} {method} with {scopes:?}: {r}");
            assert_eq!(
                r["error"]["message"],
                format!("missing scope: {needed}"),
                "v{version} {method}"
            );
            let code = if version == 3 {
                "INVALID_REQUEST"
            } else {
                "FORBIDDEN"
            };
            assert_eq!(r["error"]["code"], code, "v{version} {method}");
        }
    }
}

#[tokio::test]
async fn a_node_may_call_nothing_but_node_methods_and_operators_no_node_methods() {
    let gw = Gateway::start();
    let mut p = v3_params(Some(TOKEN));
    p["role"] = json!("node");
    p["client"]["mode"] = json!("node");
    let (mut node, _) = Client::connect(&gw.url(), p).await;
    for (method, needed) in SPEC {
        if *needed == "node" {
            continue;
        }
        let r = node.request(method, json!({})).await;
        assert_eq!(r["error"]["message"], "unauthorized role: node", "{method}");
    }
}
