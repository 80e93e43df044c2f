//! Which node commands the gateway allows, per platform, as each reference generation
//! does. Invariant: a command runs only if the node declared it, this policy permits it
//! for the node's platform, and (v4) an operator approved it.
//!
//! * **v3 nodes** (Clawdbot 2026.1's `node-command-policy`): one static list per
//!   platform (`PLATFORM_DEFAULTS_V3`), plus `gateway.nodes.allowCommands`, minus
//!   `gateway.nodes.denyCommands`.
//! * **v4 nodes** (OpenClaw 2026.9's `node-command-policy`, documented in its
//!   `docs/nodes/command-policy.md`): a smaller static ceiling per platform; the desktop
//!   host commands (`system.run`, `browser.proxy`, …) are allowed on macOS, Windows and
//!   Linux once an operator approved a pairing request that declares them; the Canvas
//!   plugin's defaults on macOS and the bundled Ollama plugin's `ollama.models` /
//!   `ollama.chat` on desktops; `talk.ptt.*` for nodes with the `talk` capability;
//!   dangerous or privacy-heavy commands (`camera.snap`, `sms.send`, …) only with an
//!   explicit `gateway.nodes.commands.allow`; `gateway.nodes.commands.deny` always wins;
//!   the private `worker.*` controls never.
//!
//! The config's allow and deny lists apply to both generations (both spellings are read).

use std::collections::BTreeSet;

use switchboard_schemas::ProtocolVersion;

// ---- v3 (Clawdbot) ---------------------------------------------------------------------

const CANVAS: &[&str] = &[
    "canvas.present",
    "canvas.hide",
    "canvas.navigate",
    "canvas.eval",
    "canvas.snapshot",
    "canvas.a2ui.push",
    "canvas.a2ui.pushJSONL",
    "canvas.a2ui.reset",
];
const CAMERA: &[&str] = &["camera.list", "camera.snap", "camera.clip"];
const SCREEN: &[&str] = &["screen.record"];
const LOCATION: &[&str] = &["location.get"];
const SMS: &[&str] = &["sms.send"];
const SYSTEM: &[&str] = &[
    "system.run",
    "system.which",
    "system.notify",
    "system.execApprovals.get",
    "system.execApprovals.set",
    "browser.proxy",
];

/// v3: the platform family a node's `client.platform` / `deviceFamily` names.
pub fn platform_id(platform: &str, family: Option<&str>) -> &'static str {
    let p = platform.trim().to_lowercase();
    let f = family.unwrap_or("").trim().to_lowercase();
    if p.starts_with("ios") || f.contains("iphone") || f.contains("ipad") || f.contains("ios") {
        "ios"
    } else if p.starts_with("android") || f.contains("android") {
        "android"
    } else if p.starts_with("mac") || p.starts_with("darwin") || f.contains("mac") {
        "macos"
    } else if p.starts_with("win") || f.contains("windows") {
        "windows"
    } else if p.starts_with("linux") || f.contains("linux") {
        "linux"
    } else {
        "unknown"
    }
}

/// v3: the commands the gateway allows for a platform (Clawdbot's defaults).
pub fn allowlist(platform: &str) -> Vec<&'static str> {
    let groups: &[&[&str]] = match platform {
        "ios" => &[CANVAS, CAMERA, SCREEN, LOCATION],
        "android" => &[CANVAS, CAMERA, SCREEN, LOCATION, SMS],
        "macos" => &[CANVAS, CAMERA, SCREEN, LOCATION, SYSTEM],
        "linux" | "windows" => &[SYSTEM],
        _ => &[CANVAS, CAMERA, SCREEN, LOCATION, SMS, SYSTEM],
    };
    groups.iter().flat_map(|g| g.iter().copied()).collect()
}

// ---- v4 (OpenClaw) ---------------------------------------------------------------------

const V4_SYSTEM_RUN: &[&str] = &["system.run.prepare", "system.run", "system.which"];
const V4_EXEC_APPROVALS: &[&str] = &["system.execApprovals.get", "system.execApprovals.set"];
const V4_FILES: &[&str] = &["fs.listDir", "terminal.upload"];
const V4_BROWSER_PROXY: &[&str] = &["browser.proxy", "browser.proxy.upload.v1"];
const V4_MCP: &str = "mcp.tools.call.v1";
const V4_CLAUDE_RUN: &str = "agent.cli.claude.run.v1";
const V4_NOTIFY: &str = "system.notify";
const V4_DESKTOP_STREAM: &str = "desktop.stream";
const V4_DEVICE_APPS: &str = "device.apps";

/// Node controls the gateway keeps to itself: never allowed, never invocable.
const V4_PRIVATE: &[&str] = &[
    "worker.bundle.install.v1",
    "worker.launch.v1",
    "worker.status.v1",
    "worker.cancel.v1",
    "worker.environment.stop.v1",
    "worker.workspace.exec.v1",
    "worker.workspace.prepare.v1",
    "worker.workspace.retain.v1",
    "worker.desktop.stream.v1",
    "worker.desktop.launch.v1",
    "worker.desktop.computer.v1",
    "worker.portal.stream.v1",
];

/// Need `operator.admin` to invoke (they cross a host boundary).
const V4_ADMIN_ONLY: &[&str] = &[
    "browser.proxy",
    "browser.proxy.upload.v1",
    "fs.listDir",
    "terminal.upload",
];

/// Allowed only with an explicit `gateway.nodes.commands.allow`.
const V4_DANGEROUS: &[&str] = &[
    "camera.snap",
    "camera.clip",
    "camera.ptz.control",
    "screen.record",
    "contacts.add",
    "calendar.add",
    "reminders.add",
    "health.summary",
    "sms.send",
    "sms.search",
];

const V4_TALK: &[&str] = &[
    "talk.ptt.start",
    "talk.ptt.stop",
    "talk.ptt.cancel",
    "talk.ptt.once",
];
const V4_WATCH_RELAY: &[&str] = &["watch.status", "watch.notify"];
/// The Canvas plugin's defaults (macOS only).
const V4_CANVAS_MACOS: &[&str] = &["canvas.present", "canvas.hide", "canvas.navigate"];
/// The bundled Ollama plugin's node-inference commands (macOS, Linux, Windows): the
/// node runs the model; the gateway only forwards.
const V4_OLLAMA_DESKTOP: &[&str] = &["ollama.models", "ollama.chat"];

fn v4_system() -> Vec<&'static str> {
    let mut v = Vec::new();
    v.extend_from_slice(V4_SYSTEM_RUN);
    v.extend_from_slice(V4_EXEC_APPROVALS);
    v.extend_from_slice(V4_FILES);
    v.push(V4_NOTIFY);
    v.extend_from_slice(V4_BROWSER_PROXY);
    v.push(V4_MCP);
    v.push(V4_CLAUDE_RUN);
    v
}

/// Host commands that come with an approved pairing request on a desktop platform,
/// never from the static table.
fn v4_desktop_host(command: &str) -> bool {
    V4_SYSTEM_RUN.contains(&command)
        || V4_EXEC_APPROVALS.contains(&command)
        || V4_FILES.contains(&command)
        || V4_BROWSER_PROXY.contains(&command)
        || [V4_MCP, V4_CLAUDE_RUN, "screen.snapshot", V4_DESKTOP_STREAM].contains(&command)
}

/// The v4 static ceiling of a platform (OpenClaw's `PLATFORM_DEFAULTS`).
fn v4_platform_defaults(platform: &str) -> Vec<&'static str> {
    let device = ["device.info", "device.status"];
    let personal = [
        "contacts.search",
        "calendar.events",
        "reminders.list",
        "photos.latest",
        "motion.activity",
        "motion.pedometer",
    ];
    let desktop_screen = ["screen.snapshot", V4_DESKTOP_STREAM];
    let mut v: Vec<&'static str> = Vec::new();
    match platform {
        "ios" => {
            v.extend(["camera.list", "location.get"]);
            v.extend(device);
            v.extend(personal);
            v.push(V4_NOTIFY);
        }
        "watchos" => {
            v.extend(device);
            v.push(V4_NOTIFY);
        }
        "android" => {
            v.extend([
                "camera.list",
                "location.get",
                "notifications.list",
                "notifications.actions",
                V4_NOTIFY,
            ]);
            v.extend(device);
            v.extend(["device.permissions", "device.health", V4_DEVICE_APPS]);
            v.extend(["contacts.search", "calendar.events", "callLog.search"]);
            v.extend([
                "reminders.list",
                "photos.latest",
                "motion.activity",
                "motion.pedometer",
            ]);
            v.extend(["mobile.ui.observe", "mobile.ui.act"]);
        }
        "macos" => {
            v.extend(["camera.list", "camera.ptz.status", "location.get"]);
            v.extend(device);
            v.push(V4_DEVICE_APPS);
            v.extend(personal);
            v.extend(v4_system());
            v.extend(desktop_screen);
            v.push("computer.act");
        }
        "linux" => {
            v.extend(v4_system());
            v.extend(desktop_screen);
            v.push("computer.act");
        }
        "windows" => {
            v.extend(["camera.list", "location.get"]);
            v.extend(device);
            v.extend(v4_system());
            v.extend(desktop_screen);
            v.push("computer.act");
        }
        _ => v.extend(["camera.list", "location.get", V4_NOTIFY]),
    }
    v
}

fn is_desktop(platform: &str) -> bool {
    matches!(platform, "macos" | "windows" | "linux")
}

/// v4: the platform a node's metadata names, as OpenClaw classifies it: a canonical id
/// must agree with the device family; a native label (`iOS 18.1`, `macOS 15`,
/// `Android 15 (SDK 35)`) needs the matching family; any other label is `unknown`; with
/// no label the family decides. A protocol-3-era node host (`node-host`/`node`) that
/// says `linux`, `darwin` or `win32` gets the family its platform implies.
pub fn platform_id_v4(
    platform: &str,
    family: Option<&str>,
    client_id: &str,
    client_mode: &str,
) -> &'static str {
    let norm = |s: &str| s.trim().to_lowercase();
    let mut raw = norm(platform);
    let mut fam = norm(family.unwrap_or(""));
    if client_id == "node-host" && client_mode == "node" {
        let legacy = match raw.as_str() {
            "darwin" | "macos" => Some(("macos", "mac")),
            "linux" => Some(("linux", "linux")),
            "win32" | "windows" => Some(("windows", "windows")),
            _ => None,
        };
        if let Some((p, f)) = legacy
            && (fam.is_empty() || fam == f)
        {
            raw = p.to_owned();
            fam = f.to_owned();
        }
    }
    let canonical = ["ios", "watchos", "android", "macos", "windows", "linux"];
    if let Some(p) = canonical.iter().find(|p| **p == raw) {
        let agrees = match *p {
            "ios" => fam.is_empty() || ["iphone", "ipad", "ios"].contains(&fam.as_str()),
            "watchos" => fam == "apple watch" || fam == "watchos",
            "android" => fam.is_empty() || fam == "android",
            "macos" => fam == "mac",
            "windows" => fam == "windows",
            _ => fam == "linux",
        };
        return if agrees { p } else { "unknown" };
    }
    if let Some(p) = native_label(&raw, &fam) {
        return p;
    }
    if !raw.is_empty() {
        return "unknown";
    }
    let rules: [(&'static str, &[&str]); 6] = [
        ("ios", &["iphone", "ipad", "ios"]),
        ("watchos", &["apple watch", "watchos"]),
        ("android", &["android"]),
        ("macos", &["mac"]),
        ("windows", &["windows"]),
        ("linux", &["linux"]),
    ];
    rules
        .iter()
        .find(|(_, tokens)| tokens.iter().any(|t| fam.contains(t)))
        .map(|(p, _)| *p)
        .unwrap_or("unknown")
}

/// `ios 18`, `ipados 17.1`, `watchos 11`, `macos 15.2`, `android 15 (sdk 35)`.
fn native_label(raw: &str, fam: &str) -> Option<&'static str> {
    let (name, rest) = raw.split_once(' ')?;
    let version_ok = |v: &str| {
        let parts: Vec<&str> = v.split('.').collect();
        parts.len() <= 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let (version, sdk) = match rest.split_once(' ') {
        Some((v, s)) => (v, Some(s)),
        None => (rest, None),
    };
    let sdk_ok = |s: Option<&str>| match s {
        None => true,
        Some(s) => s
            .strip_prefix("(sdk ")
            .and_then(|s| s.strip_suffix(')'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
    };
    if !version_ok(version) {
        return None;
    }
    match name {
        "ios" | "ipados" if sdk.is_none() => {
            ["iphone", "ipad", "ios"].contains(&fam).then_some("ios")
        }
        "watchos" if sdk.is_none() => ["apple watch", "watchos"]
            .contains(&fam)
            .then_some("watchos"),
        "macos" if sdk.is_none() => (fam == "mac").then_some("macos"),
        "android" if sdk_ok(sdk) => (fam == "android").then_some("android"),
        _ => None,
    }
}

/// What the operator's config adds to and takes from every platform's list.
#[derive(Debug, Clone, Default)]
pub struct CommandPolicy {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// Everything the policy looks at about one node.
pub struct NodeFacts<'a> {
    pub generation: ProtocolVersion,
    pub platform: &'a str,
    pub device_family: Option<&'a str>,
    pub client_id: &'a str,
    pub client_mode: &'a str,
    pub caps: &'a [String],
    pub declared: &'a [String],
}

impl NodeFacts<'_> {
    /// The platform id the generation's policy uses (and names in its errors).
    pub fn platform(&self) -> &'static str {
        match self.generation {
            ProtocolVersion::V3 => platform_id(self.platform, self.device_family),
            _ => platform_id_v4(
                self.platform,
                self.device_family,
                self.client_id,
                self.client_mode,
            ),
        }
    }

    fn has_talk(&self) -> bool {
        self.caps
            .iter()
            .any(|c| c.trim().eq_ignore_ascii_case("talk"))
            || self
                .declared
                .iter()
                .any(|c| c.trim().to_lowercase().starts_with("talk."))
    }
}

/// When the list is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// At connect: which declared commands a pairing request may name (v4 keeps the
    /// desktop host and dangerous commands here, so an operator can approve them).
    Pairing,
    /// At `node.invoke`: `approved` are the commands the operator approved.
    Invoke,
}

impl CommandPolicy {
    /// The set of commands allowed for a node at `stage`.
    pub fn allowed(&self, node: &NodeFacts, stage: Stage, approved: &[String]) -> BTreeSet<String> {
        let platform = node.platform();
        let trimmed = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect()
        };
        let extra = trimmed(&self.allow);
        let deny = trimmed(&self.deny);
        if node.generation == ProtocolVersion::V3 {
            let mut set: BTreeSet<String> = allowlist(platform)
                .into_iter()
                .map(str::to_owned)
                .chain(extra)
                .collect();
            for d in &deny {
                set.remove(d);
            }
            return set;
        }
        let pairing = stage == Stage::Pairing;
        let mut base: Vec<&str> = v4_platform_defaults(platform);
        if !pairing && is_desktop(platform) {
            base.retain(|c| !v4_desktop_host(c));
        }
        let mut candidates: Vec<String> = base.into_iter().map(str::to_owned).collect();
        if platform == "ios"
            && node
                .device_family
                .is_some_and(|f| f.trim().eq_ignore_ascii_case("iphone"))
        {
            candidates.extend(V4_WATCH_RELAY.iter().map(|c| (*c).to_owned()));
        }
        if node.has_talk() {
            candidates.extend(V4_TALK.iter().map(|c| (*c).to_owned()));
        }
        if platform == "macos" {
            candidates.extend(V4_CANVAS_MACOS.iter().map(|c| (*c).to_owned()));
        }
        if is_desktop(platform) {
            candidates.extend(V4_OLLAMA_DESKTOP.iter().map(|c| (*c).to_owned()));
        }
        if is_desktop(platform) {
            let runtime: &[String] = if pairing { node.declared } else { approved };
            candidates.extend(
                runtime
                    .iter()
                    .map(|c| c.trim())
                    .filter(|c| v4_desktop_host(c))
                    .map(str::to_owned),
            );
        }
        let mut set: BTreeSet<String> = candidates
            .into_iter()
            .filter(|c| !c.is_empty() && (pairing || !V4_DANGEROUS.contains(&c.as_str())))
            .collect();
        set.extend(extra);
        for d in &deny {
            // At pairing, a denied dangerous command may still be named (and approved),
            // as the reference: it stays refused at invoke.
            if !(pairing && V4_DANGEROUS.contains(&d.as_str())) {
                set.remove(d);
            }
        }
        for p in V4_PRIVATE {
            set.remove(*p);
        }
        set
    }
}

/// v4: a private node control (never invocable through `node.invoke`).
pub fn is_private(command: &str) -> bool {
    V4_PRIVATE.contains(&command.trim())
}

/// v4: a command only `operator.admin` may invoke.
pub fn is_admin_only(command: &str) -> bool {
    V4_ADMIN_ONLY.contains(&command)
}

/// v4: a command whose approval needs `operator.admin` (besides `operator.pairing`).
pub fn approval_needs_admin(command: &str) -> bool {
    is_admin_only(command)
        || V4_SYSTEM_RUN.contains(&command)
        || V4_EXEC_APPROVALS.contains(&command)
}

/// v4: a `browser.proxy` call that would change the node's persistent browser profiles.
pub fn is_browser_profile_mutation(command: &str, params: Option<&serde_json::Value>) -> bool {
    if !V4_BROWSER_PROXY.contains(&command) {
        return false;
    }
    let Some(p) = params else { return false };
    let method = p["method"].as_str().unwrap_or("").trim().to_uppercase();
    let path = p["path"].as_str().unwrap_or("").trim();
    if method.is_empty() || path.is_empty() {
        return false;
    }
    let mut path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    while path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    (method == "POST" && (path == "/profiles/create" || path == "/reset-profile"))
        || (method == "DELETE"
            && path
                .strip_prefix("/profiles/")
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/')))
}

/// v4: `agent.cli.claude.run.v1`, which `node.invoke` refuses.
pub fn is_claude_run(command: &str) -> bool {
    command == V4_CLAUDE_RUN
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtocolVersion::{V3, V4};

    fn facts<'a>(
        generation: ProtocolVersion,
        platform: &'a str,
        family: Option<&'a str>,
        declared: &'a [String],
    ) -> NodeFacts<'a> {
        NodeFacts {
            generation,
            platform,
            device_family: family,
            client_id: "node-host",
            client_mode: "node",
            caps: &[],
            declared,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn platforms_map_to_the_reference_allow_lists() {
        assert_eq!(platform_id("iOS 18", None), "ios");
        assert_eq!(platform_id("darwin", None), "macos");
        assert_eq!(platform_id("x", Some("Android phone")), "android");
        assert!(allowlist("linux").contains(&"system.run"));
        assert!(!allowlist("linux").contains(&"camera.snap"));
        assert!(allowlist("ios").contains(&"camera.snap"));
        assert!(!allowlist("ios").contains(&"system.run"));
    }

    #[test]
    fn v4_platforms_are_classified_as_openclaw_does() {
        assert_eq!(platform_id_v4("linux", None, "node-host", "node"), "linux");
        assert_eq!(platform_id_v4("darwin", None, "node-host", "node"), "macos");
        assert_eq!(platform_id_v4("linux", None, "my-app", "node"), "unknown");
        assert_eq!(platform_id_v4("macos", Some("Mac"), "app", "node"), "macos");
        assert_eq!(
            platform_id_v4("iOS 18.1", Some("iPhone"), "app", "node"),
            "ios"
        );
        assert_eq!(
            platform_id_v4("iOS 18.1", Some("Mac"), "app", "node"),
            "unknown"
        );
        assert_eq!(
            platform_id_v4("Android 15 (SDK 35)", Some("Android"), "a", "node"),
            "android"
        );
        assert_eq!(
            platform_id_v4("", Some("Samsung Android"), "a", "node"),
            "android"
        );
        assert_eq!(
            platform_id_v4("beos", Some("linux"), "a", "node"),
            "unknown"
        );
    }

    #[test]
    fn a_v4_linux_node_host_may_name_its_host_commands_and_use_them_once_approved() {
        let declared = strings(&[
            "system.run",
            "system.run.prepare",
            "system.which",
            "system.notify",
            "system.execApprovals.get",
            "browser.proxy",
            "fs.listDir",
            "camera.snap",
            "worker.launch.v1",
            "canvas.present",
        ]);
        let node = facts(V4, "linux", None, &declared);
        let policy = CommandPolicy::default();
        let pairing = policy.allowed(&node, Stage::Pairing, &[]);
        for c in [
            "system.run",
            "system.run.prepare",
            "system.which",
            "browser.proxy",
            "fs.listDir",
        ] {
            assert!(pairing.contains(c), "{c} may be approved");
        }
        for c in ["camera.snap", "worker.launch.v1", "canvas.present"] {
            assert!(!pairing.contains(c), "{c} is not for a linux node");
        }
        // Before approval only the static ceiling: system.notify, not system.run.
        let invoke = policy.allowed(&node, Stage::Invoke, &[]);
        assert!(invoke.contains("system.notify"));
        assert!(
            invoke.contains("ollama.chat"),
            "the Ollama plugin's desktop default"
        );
        assert!(!invoke.contains("system.run"));
        let invoke = policy.allowed(&node, Stage::Invoke, &strings(&["system.run"]));
        assert!(invoke.contains("system.run"));
        assert!(!invoke.contains("system.which"));
    }

    #[test]
    fn v4_dangerous_commands_need_the_config_and_deny_wins() {
        let declared = strings(&["camera.snap", "camera.list"]);
        let node = NodeFacts {
            client_id: "ios-app",
            ..facts(V4, "ios", Some("iPhone"), &declared)
        };
        let none = CommandPolicy::default();
        assert!(
            !none
                .allowed(&node, Stage::Invoke, &[])
                .contains("camera.snap")
        );
        assert!(
            none.allowed(&node, Stage::Invoke, &[])
                .contains("watch.notify")
        );
        let opted = CommandPolicy {
            allow: strings(&["camera.snap"]),
            deny: strings(&["camera.list"]),
        };
        let set = opted.allowed(&node, Stage::Invoke, &[]);
        assert!(set.contains("camera.snap"));
        assert!(!set.contains("camera.list"));
        // v3 keeps Clawdbot's static lists, with the same config.
        let v3 = facts(V3, "ios", None, &declared);
        assert!(
            none.allowed(&v3, Stage::Invoke, &[])
                .contains("camera.snap")
        );
        assert!(
            !opted
                .allowed(&v3, Stage::Invoke, &[])
                .contains("camera.list")
        );
    }

    #[test]
    fn browser_profile_mutations_are_recognized() {
        let p = |m: &str, path: &str| serde_json::json!({"method": m, "path": path});
        assert!(is_browser_profile_mutation(
            "browser.proxy",
            Some(&p("post", "profiles/create/"))
        ));
        assert!(is_browser_profile_mutation(
            "browser.proxy",
            Some(&p("DELETE", "/profiles/work"))
        ));
        assert!(!is_browser_profile_mutation(
            "browser.proxy",
            Some(&p("GET", "/profiles/work"))
        ));
        assert!(!is_browser_profile_mutation(
            "system.run",
            Some(&p("POST", "/reset-profile"))
        ));
    }
}
