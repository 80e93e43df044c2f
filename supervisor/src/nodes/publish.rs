//! What a v4 node publishes about itself after it connects, kept per live connection:
//! its skills (`node.skills.update`), its plugin/MCP tools (`node.pluginTools.update`),
//! its runner inventory (`node.runnerInventory.update`) and its host stats (the
//! `node.host.stats` event), normalized as the reference normalizes them. Operators see
//! the tools and the stats in `node.list` / `node.describe`; skills are kept for the agent
//! (the reference does not list them either).
//!
//! Invariant: an update is accepted only from the connection that registered the node
//! (a stale connection of the same node changes nothing).

use serde_json::{Map, Value, json};
use switchboard_schemas::methods::{NodePluginTool, NodeSkill};

use super::Nodes;
use crate::clock::now_ms;

/// At most this many skills are kept per node, …
const MAX_SKILLS: usize = 64;
/// … with at most this many bytes of content in all.
const MAX_SKILL_BYTES: usize = 512 * 1024;
const MAX_SKILL_CONTENT_BYTES: usize = 64 * 1024;
/// At most this many plugin tools are shown per node.
const MAX_PLUGIN_TOOLS: usize = 128;
const MAX_TOOL_DESCRIPTION_CHARS: usize = 1024;
/// The runner protocol the reference speaks, and the ones it retired.
const RUNNER_FEATURE: &str = "node-worker-supervisor-v6";
const RETIRED_RUNNER_FEATURES: &[&str] = &[
    "node-worker-supervisor-v1",
    "node-worker-supervisor-v2",
    "node-worker-supervisor-v3",
    "node-worker-supervisor-v4",
    "node-worker-supervisor-v5",
];
const WORKER_HOST_FLAGS: &[&str] = &[
    "bundlePrewarm",
    "bundleRetention",
    "bundleStatus",
    "portalStream",
    "environmentSession",
    "preparedWorkspace",
];

/// Why a node's update was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum PublishRefusal {
    /// No live node on this connection.
    UnknownNode,
    /// The node's commands still wait for an operator (the pending request's id).
    AwaitingApproval(Option<String>),
}

/// The skills the gateway keeps: valid, unique by name, within the budget, sorted.
pub fn normalize_skills(skills: &[NodeSkill]) -> Result<Vec<Value>, String> {
    if let Some(bad) = skills.iter().find(|s| s.name.contains("--")) {
        return Err(format!(
            "invalid node.skills.update params: skill name {:?} contains \"--\"",
            bad.name
        ));
    }
    let mut kept: Vec<Value> = Vec::new();
    let mut total = 0usize;
    for s in skills {
        let name = s.name.trim();
        let description = s.description.trim();
        let bytes = s.content.len();
        let duplicate = kept.iter().any(|k| k["name"] == name);
        if name.is_empty()
            || description.is_empty()
            || s.content.is_empty()
            || bytes > MAX_SKILL_CONTENT_BYTES
            || duplicate
            || kept.len() >= MAX_SKILLS
            || total + bytes > MAX_SKILL_BYTES
        {
            continue;
        }
        total += bytes;
        kept.push(json!({"name": name, "description": description, "content": s.content}));
    }
    kept.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(kept)
}

/// The declared tools as descriptors (what the node sent, trimmed).
pub fn declared_tools(tools: &[NodePluginTool]) -> Vec<Value> {
    tools
        .iter()
        .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
        .collect()
}

/// The tools operators and the agent see: each runs through a command the node may run
/// now (so none while its commands wait for approval), one per plugin and name, sorted.
pub fn effective_tools(declared: &[Value], commands: &[String]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for t in declared {
        let text = |k: &str| t[k].as_str().map(str::trim).unwrap_or_default().to_owned();
        let (plugin_id, name, command) = (text("pluginId"), text("name"), text("command"));
        let description: String = text("description")
            .chars()
            .take(MAX_TOOL_DESCRIPTION_CHARS)
            .collect();
        if plugin_id.is_empty()
            || name.is_empty()
            || description.is_empty()
            || !commands.contains(&command)
        {
            continue;
        }
        let mcp = (t["mcp"]["server"].as_str(), t["mcp"]["tool"].as_str());
        if plugin_id == "node-mcp" && (command != "mcp.tools.call.v1" || mcp.0.is_none()) {
            continue;
        }
        let parameters = match &t["parameters"] {
            Value::Object(p) => Value::Object(p.clone()),
            _ => json!({"type": "object", "properties": {}}),
        };
        let mut d = json!({
            "pluginId": plugin_id, "name": name, "description": description,
            "parameters": parameters, "command": command,
        });
        if let (Some(server), Some(tool)) = mcp {
            d["mcp"] = json!({"server": server, "tool": tool});
        }
        out.push(d);
    }
    let key = |v: &Value| {
        (
            v["pluginId"].as_str().unwrap_or_default().to_owned(),
            v["name"].as_str().unwrap_or_default().to_owned(),
            v["command"].as_str().unwrap_or_default().to_owned(),
        )
    };
    out.sort_by_key(key);
    out.dedup_by(|b, a| a["pluginId"] == b["pluginId"] && a["name"] == b["name"]);
    out.truncate(MAX_PLUGIN_TOOLS);
    out
}

/// A runner inventory declaration, as the reference parses it (a closed shape; anything
/// else is `None`, "invalid node runner inventory").
#[derive(Debug, Clone, PartialEq)]
pub enum RunnerInventory {
    /// `{protocolFeatures: []}`: the node runs no workers.
    None,
    /// A retired runner protocol: the node must be updated.
    Retired,
    /// The current protocol; `worker_host` is the normalized `workerHost`.
    Current { worker_host: Value },
}

pub fn parse_runner_inventory(v: &Value) -> Option<RunnerInventory> {
    let obj = v.as_object()?;
    let features = obj.get("protocolFeatures")?.as_array()?;
    match features.as_slice() {
        [] => (obj.len() == 1).then_some(RunnerInventory::None),
        [feature] => {
            let feature = feature.as_str()?;
            if RETIRED_RUNNER_FEATURES.contains(&feature) {
                let keys_ok = obj.len() <= 2
                    && obj.keys().all(|k| {
                        matches!(k.as_str(), "protocolFeatures" | "workerRuns" | "workerHost")
                    });
                return keys_ok.then_some(RunnerInventory::Retired);
            }
            if feature != RUNNER_FEATURE || obj.len() != 2 {
                return None;
            }
            let worker_host = parse_worker_host(obj.get("workerHost")?)?;
            Some(RunnerInventory::Current { worker_host })
        }
        _ => None,
    }
}

fn parse_worker_host(v: &Value) -> Option<Value> {
    let obj = v.as_object()?;
    let enabled = obj.get("enabled")?.as_bool()?;
    if !enabled {
        return (obj.len() == 1).then(|| json!({"enabled": false}));
    }
    let capacity = parse_capacity(obj.get("capacity")?)?;
    let known = |k: &str| {
        k == "enabled"
            || k == "capacity"
            || k == "capturedExecPolicy"
            || WORKER_HOST_FLAGS.contains(&k)
    };
    if obj.len() > 9 || !obj.keys().all(|k| known(k)) {
        return None;
    }
    let mut out = Map::new();
    out.insert("enabled".into(), json!(true));
    out.insert("capacity".into(), capacity);
    for flag in WORKER_HOST_FLAGS {
        match obj.get(*flag) {
            None => {}
            Some(f) if f.as_u64() == Some(1) => {
                out.insert((*flag).into(), json!(1));
            }
            Some(_) => return None,
        }
    }
    if obj.contains_key("bundleStatus") && !obj.contains_key("bundleRetention") {
        return None;
    }
    match obj.get("capturedExecPolicy") {
        None => {}
        Some(Value::Bool(true)) => {
            out.insert("capturedExecPolicy".into(), json!(true));
        }
        Some(_) => return None,
    }
    Some(Value::Object(out))
}

fn parse_capacity(v: &Value) -> Option<Value> {
    let obj = v.as_object()?;
    if obj.len() != 2 {
        return None;
    }
    let total = obj.get("total")?.as_u64()?;
    let available = obj.get("available")?.as_u64()?;
    ((1..=1024).contains(&total) && available <= total)
        .then(|| json!({"total": total, "available": available}))
}

/// A `node.host.stats` payload, checked as the reference checks it (a closed shape, free
/// never above total, disk values paired), stamped with the time it was received.
pub fn parse_host_stats(v: &Value) -> Option<Value> {
    let obj = v.as_object()?;
    const KEYS: &[&str] = &[
        "cpuCount",
        "loadAverage",
        "memoryTotalBytes",
        "memoryFreeBytes",
        "diskTotalBytes",
        "diskAvailableBytes",
    ];
    if !obj.keys().all(|k| KEYS.contains(&k.as_str())) {
        return None;
    }
    let int = |k: &str| obj.get(k).map(|v| v.as_u64().ok_or(())).transpose();
    let cpu = int("cpuCount").ok()??;
    let mem_total = int("memoryTotalBytes").ok()??;
    let mem_free = int("memoryFreeBytes").ok()??;
    let disk_total = int("diskTotalBytes").ok()?;
    let disk_free = int("diskAvailableBytes").ok()?;
    if !(1..=4096).contains(&cpu) || mem_free > mem_total {
        return None;
    }
    match (disk_total, disk_free) {
        (None, None) => {}
        (Some(t), Some(f)) if f <= t => {}
        _ => return None,
    }
    if let Some(load) = obj.get("loadAverage") {
        let l = load.as_array()?;
        let in_range = |x: &Value| x.as_f64().is_some_and(|x| (0.0..=100_000.0).contains(&x));
        if l.len() != 3 || !l.iter().all(in_range) {
            return None;
        }
    }
    let mut out = obj.clone();
    out.insert("updatedAtMs".into(), json!(now_ms()));
    Some(Value::Object(out))
}

impl Nodes {
    /// Runs `f` on the live node `node_id` if `conn_id` is its current connection.
    fn with_current<T>(
        &self,
        node_id: &str,
        conn_id: u64,
        f: impl FnOnce(&mut super::NodeInfo) -> T,
    ) -> Option<T> {
        let mut live = self.live();
        let l = live.get_mut(node_id).filter(|l| l.conn.id == conn_id)?;
        Some(f(&mut l.info))
    }

    /// `node.skills.update`: replaces the node's skills; returns what is kept.
    pub fn update_skills(
        &self,
        node_id: &str,
        conn_id: u64,
        skills: Vec<Value>,
    ) -> Option<Vec<Value>> {
        self.with_current(node_id, conn_id, |n| {
            n.skills = skills;
            n.skills.clone()
        })
    }

    /// `node.pluginTools.update`: replaces the node's declared tools; returns the tools in
    /// effect (those its current commands can run).
    pub fn update_plugin_tools(
        &self,
        node_id: &str,
        conn_id: u64,
        declared: Vec<Value>,
    ) -> Option<Vec<Value>> {
        self.with_current(node_id, conn_id, |n| {
            n.declared_tools = declared;
            effective_tools(&n.declared_tools, &n.commands)
        })
    }

    /// `node.runnerInventory.update`: recorded once the node's commands are approved.
    pub fn update_runner_inventory(
        &self,
        node_id: &str,
        conn_id: u64,
        inventory: Value,
    ) -> Result<(), PublishRefusal> {
        self.with_current(node_id, conn_id, |n| {
            if n.approval_state.as_deref() == Some("pending-approval") {
                return Err(PublishRefusal::AwaitingApproval(n.pending_request.clone()));
            }
            n.runner_inventory = Some(inventory);
            Ok(())
        })
        .unwrap_or(Err(PublishRefusal::UnknownNode))
    }

    /// The `node.host.stats` event: the node's latest stats.
    pub fn update_host_stats(&self, node_id: &str, conn_id: u64, stats: Value) -> Option<Value> {
        self.with_current(node_id, conn_id, |n| {
            n.host_stats = Some(stats.clone());
            stats
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_inventory_is_parsed_as_the_reference_parses_it() {
        let off = json!({"protocolFeatures": [RUNNER_FEATURE], "workerHost": {"enabled": false}});
        assert_eq!(
            parse_runner_inventory(&off),
            Some(RunnerInventory::Current {
                worker_host: json!({"enabled": false})
            })
        );
        assert_eq!(
            parse_runner_inventory(&json!({"protocolFeatures": []})),
            Some(RunnerInventory::None)
        );
        let retired = json!({"protocolFeatures": ["node-worker-supervisor-v2"], "workerRuns": 1});
        assert_eq!(
            parse_runner_inventory(&retired),
            Some(RunnerInventory::Retired)
        );
        let on = json!({"protocolFeatures": [RUNNER_FEATURE],
            "workerHost": {"enabled": true, "capacity": {"total": 2, "available": 1}, "bundlePrewarm": 1}});
        assert!(matches!(
            parse_runner_inventory(&on),
            Some(RunnerInventory::Current { .. })
        ));
        for bad in [
            json!({}),
            json!({"protocolFeatures": [], "x": 1}),
            json!({"protocolFeatures": ["other"], "workerHost": {"enabled": false}}),
            json!({"protocolFeatures": [RUNNER_FEATURE], "workerHost": {"enabled": false, "capacity": {}}}),
            json!({"protocolFeatures": [RUNNER_FEATURE], "workerHost": {"enabled": true, "capacity": {"total": 0, "available": 0}}}),
            json!({"protocolFeatures": [RUNNER_FEATURE], "workerHost": {"enabled": true, "capacity": {"total": 2, "available": 1}, "bundleStatus": 1}}),
        ] {
            assert_eq!(parse_runner_inventory(&bad), None, "{bad}");
        }
    }

    #[test]
    fn host_stats_are_checked_and_stamped() {
        let ok = json!({"cpuCount": 2, "loadAverage": [1.0, 0.5, 0.25], "memoryTotalBytes": 10,
            "memoryFreeBytes": 4, "diskTotalBytes": 100, "diskAvailableBytes": 50});
        let s = parse_host_stats(&ok).unwrap();
        assert_eq!(s["cpuCount"], 2);
        assert!(s["updatedAtMs"].as_u64().unwrap() > 0);
        for bad in [
            json!({"cpuCount": 0, "memoryTotalBytes": 1, "memoryFreeBytes": 0}),
            json!({"cpuCount": 1, "memoryTotalBytes": 1, "memoryFreeBytes": 2}),
            json!({"cpuCount": 1, "memoryTotalBytes": 1, "memoryFreeBytes": 0, "diskTotalBytes": 5}),
            json!({"cpuCount": 1, "memoryTotalBytes": 1, "memoryFreeBytes": 0, "extra": 1}),
            json!({"cpuCount": 1, "memoryTotalBytes": 1, "memoryFreeBytes": 0, "loadAverage": [1]}),
            json!("x"),
        ] {
            assert_eq!(parse_host_stats(&bad), None, "{bad}");
        }
    }

    #[test]
    fn tools_need_a_command_the_node_may_run() {
        let declared = vec![
            json!({"pluginId": "p", "name": "b", "description": "d", "command": "system.which"}),
            json!({"pluginId": "p", "name": "a", "description": "d", "command": "system.run"}),
            json!({"pluginId": "p", "name": "c", "description": "d", "command": "camera.snap"}),
            json!({"pluginId": "p", "name": "n", "description": "d"}),
        ];
        let cmds = vec!["system.run".to_owned(), "system.which".to_owned()];
        let eff = effective_tools(&declared, &cmds);
        let names: Vec<_> = eff.iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(eff[0]["parameters"]["type"], "object");
        assert!(effective_tools(&declared, &[]).is_empty());
    }
}
