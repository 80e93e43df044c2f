//! Signal: the user's number (registered or linked in `signal-cli`) reached through
//! signal-cli's JSON-RPC daemon by `switchboard-worker-signal`, either at `httpUrl` (a
//! daemon that already runs) or spawned by the worker from `cliPath`. Turned on by a
//! `channels.signal` section with an `account`.

use serde_json::{Value, json};

use super::{DmPeer, Provider};
use crate::config::channel::{ChannelConfig, Section, channel_section};
use crate::workers::{Confinement, program_folders, resolve_program};

pub const PROVIDER: Provider = Provider {
    id: "signal",
    label: "Signal",
    worker: "switchboard-worker-signal",
    enabled_by_env: &[],
    configure,
    id_prefixes: &["signal:", "uuid:"],
    connected_states: &["connected"],
    is_group_target,
    group_kind: "group",
    dm_peer: DmPeer::Chat,
    confinement,
    setup_hint: "the account's number in channels.signal.account (registered or linked with signal-cli), and channels.signal.httpUrl or cliPath",
};

/// The default idle time after which the event stream counts as dead: three missed
/// keep-alives (signal-cli sends one every 15 s).
pub const DEFAULT_STREAM_TIMEOUT_SECONDS: u32 = 45;

channel_section!(
    /// `channels.signal`.
    SignalSection {
        /// The account's phone number, E.164 (`+15551234567`).
        account: Option<String>,
        /// A running daemon (`signal-cli daemon --http`), e.g. `http://127.0.0.1:8080`.
        http_url: Option<String>,
        /// The `signal-cli` executable the worker starts itself (default `signal-cli`
        /// on PATH); used when `httpUrl` is not set.
        cli_path: Option<String>,
        /// No keep-alive or event for this long means the event stream is dead and is
        /// reopened (default 45).
        event_stream_timeout_seconds: Option<u32>,
        /// How long a spawned daemon may take to answer `/api/v1/check` (default 120).
        startup_timeout_seconds: Option<u32>,
    }
);

/// With `httpUrl`: the network only. With `cliPath`: it spawns signal-cli, which gets its
/// program (and install folder: the launcher script's `lib`, the JVM under `/usr`), its
/// data folder (`$XDG_DATA_HOME/signal-cli`, else `~/.local/share/signal-cli`) read-write,
/// and `/tmp` (the JVM and libsignal unpack native code there).
fn confinement(worker: &Value) -> Confinement {
    let Some(cli) = worker["cliPath"].as_str() else {
        return Confinement::default();
    };
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/share")))
        .map(|d| d.join("signal-cli"));
    Confinement {
        read_write: data
            .into_iter()
            .chain([std::path::PathBuf::from("/tmp")])
            .collect(),
        exec: resolve_program(cli)
            .map(|p| program_folders(&p))
            .unwrap_or_default(),
        spawn: true,
        ..Confinement::default()
    }
}

fn configure(s: &mut Section<'_>) -> Option<(ChannelConfig, Value)> {
    let c: SignalSection = s.parse()?;
    let routing = s.routing(c.policy(), PROVIDER.id_prefixes);
    let Some(account) = c.account.as_deref().map(str::trim) else {
        s.problem(
            "account",
            "required: the Signal account's phone number in E.164 form (e.g. \"+15551234567\"), registered or linked with signal-cli",
        );
        return None;
    };
    if !is_e164(account) {
        s.problem(
            "account",
            format!("{account:?} is not a phone number in E.164 form (\"+\" then 7 to 15 digits)"),
        );
    }
    let mut config = json!({ "account": account });
    match (&c.http_url, &c.cli_path) {
        (Some(_), Some(_)) => s.problem(
            "httpUrl",
            "set either httpUrl (a running daemon) or cliPath (the worker starts signal-cli), not both",
        ),
        (Some(url), None) => {
            s.check_url("httpUrl", url, &["http", "https"]);
            config["httpUrl"] = json!(url.trim().trim_end_matches('/'));
        }
        (None, cli) => {
            let cli = cli.as_deref().map(str::trim).unwrap_or("signal-cli");
            if cli.is_empty() {
                s.problem("cliPath", "must not be empty");
            }
            config["cliPath"] = json!(cli);
        }
    }
    let timeout = c
        .event_stream_timeout_seconds
        .unwrap_or(DEFAULT_STREAM_TIMEOUT_SECONDS);
    if !(1..=3600).contains(&timeout) {
        s.problem("eventStreamTimeoutSeconds", "must be between 1 and 3600");
    }
    config["eventStreamTimeoutSeconds"] = json!(timeout);
    let startup = c.startup_timeout_seconds.unwrap_or(120);
    if !(1..=3600).contains(&startup) {
        s.problem("startupTimeoutSeconds", "must be between 1 and 3600");
    }
    config["startupTimeoutSeconds"] = json!(startup);
    Some((routing, config))
}

/// `+` and 7 to 15 digits.
fn is_e164(n: &str) -> bool {
    n.strip_prefix('+')
        .is_some_and(|d| (7..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()))
}

/// A UUID (a Signal service id) in its 8-4-4-4-12 hex form.
fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Groups are named by their base64 id (or `group:<id>`); people by number or UUID.
fn is_group_target(to: &str) -> bool {
    let t = to.trim();
    let t = t.strip_prefix("signal:").unwrap_or(t);
    if t.starts_with("group:") {
        return true;
    }
    let t = t.strip_prefix("uuid:").unwrap_or(t);
    !t.is_empty() && !t.starts_with('+') && !is_uuid(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::channel::testing::configure as run;

    #[test]
    fn the_account_is_required_and_must_be_a_number() {
        let c = run("signal", configure, Some(json!({})), &[]);
        assert!(c.result.is_none());
        assert!(c.problems[0].starts_with("channels.signal.account: required"));
        let c = run(
            "signal",
            configure,
            Some(json!({"account": "0049 123"})),
            &[],
        );
        assert!(c.problems[0].contains("E.164"), "{:?}", c.problems);
    }

    #[test]
    fn a_daemon_beyond_loopback_needs_https_and_one_mode_is_chosen() {
        let c = run(
            "signal",
            configure,
            Some(json!({"account": "+15550001111", "httpUrl": "http://10.0.0.5:8080"})),
            &[],
        );
        assert!(
            c.problems
                .iter()
                .any(|p| p.starts_with("channels.signal.httpUrl:") && p.contains("https")),
            "{:?}",
            c.problems
        );
        let c = run(
            "signal",
            configure,
            Some(
                json!({"account": "+15550001111", "httpUrl": "http://127.0.0.1:8080/", "cliPath": "x"}),
            ),
            &[],
        );
        assert!(c.problems[0].contains("not both"), "{:?}", c.problems);
        let c = run(
            "signal",
            configure,
            Some(
                json!({"account": "+15550001111", "httpUrl": "https://signal.example:8443",
                "allowFrom": ["+15550002222", "uuid:0b3d6c1e-3f0a-4d5e-9a8b-1c2d3e4f5a6b"],
                "groups": {"aGVsbG8gd29ybGQgZ3JvdXAgaWQgMTIzNDU2Nzg5MDE=": {"requireMention": false}}}),
            ),
            &[],
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let (routing, worker) = c.result.unwrap();
        assert_eq!(worker["httpUrl"], "https://signal.example:8443");
        assert_eq!(worker["eventStreamTimeoutSeconds"], 45);
        assert_eq!(routing.allow_from.len(), 2);
        let c = run(
            "signal",
            configure,
            Some(json!({"account": "+15550001111"})),
            &[],
        );
        assert_eq!(c.result.unwrap().1["cliPath"], "signal-cli");
    }

    #[test]
    fn group_targets_are_told_from_people() {
        assert!(!is_group_target("+15550001111"));
        assert!(!is_group_target("signal:+15550001111"));
        assert!(!is_group_target("0b3d6c1e-3f0a-4d5e-9a8b-1c2d3e4f5a6b"));
        assert!(!is_group_target(
            "uuid:0b3d6c1e-3f0a-4d5e-9a8b-1c2d3e4f5a6b"
        ));
        assert!(is_group_target(
            "aGVsbG8gd29ybGQgZ3JvdXAgaWQgMTIzNDU2Nzg5MDE="
        ));
        assert!(is_group_target("group:abc"));
    }
}
