//! iMessage: Messages.app on a signed-in Mac, driven by the `imsg` CLI (`imsg rpc`,
//! JSON-RPC over stdio) that `switchboard-worker-imessage` spawns as its child, on this
//! host or on the Mac through `ssh -T <remoteHost>`. Turned on by a `channels.imessage`
//! section.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{DmPeer, Provider};
use crate::config::channel::{ChannelConfig, Section, channel_section};
use crate::workers::{Confinement, program_folders, resolve_program};

pub const PROVIDER: Provider = Provider {
    id: "imessage",
    label: "iMessage",
    worker: "switchboard-worker-imessage",
    enabled_by_env: &[],
    configure,
    id_prefixes: &["imessage:", "imsg:"],
    connected_states: &["connected"],
    // Group chats are addressed by imsg's numeric chat id; people by phone or e-mail.
    is_group_target: is_chat_id,
    group_kind: "group",
    dm_peer: DmPeer::Chat,
    confinement,
    setup_hint: "a `channels.imessage: {}` section on a Mac with `imsg` installed (brew install steipete/tap/imsg) and Full Disk Access granted, or `remoteHost` to reach such a Mac over SSH",
};

channel_section!(
    /// `channels.imessage`.
    IMessageSection {
        /// The `imsg` executable (default `imsg`, found on `PATH`; on the Mac when
        /// `remoteHost` is set).
        cli_path: Option<String>,
        /// Messages' database (`imsg rpc --db`); default `~/Library/Messages/chat.db`.
        db_path: Option<PathBuf>,
        /// Run imsg on this Mac through `ssh -T <remoteHost>` (a host of the user's SSH
        /// config, or `user@host`).
        remote_host: Option<String>,
        /// `send`'s service: `imessage`, `sms` or `auto` (imsg's default).
        service: Option<String>,
    }
);

/// A target of digits only is imsg's `chat_id`; handles are `+<digits>` or e-mails.
fn is_chat_id(to: &str) -> bool {
    let t = to.trim();
    let t = PROVIDER
        .id_prefixes
        .iter()
        .find_map(|p| t.strip_prefix(p))
        .unwrap_or(t);
    let t = t.strip_prefix("chat_id:").unwrap_or(t);
    !t.is_empty() && t.chars().all(|c| c.is_ascii_digit())
}

/// An allow-list entry as imsg reports senders: e-mails in lower case, phone numbers
/// without spaces, dashes, dots or parentheses.
pub fn normalize_handle(h: &str) -> String {
    let h = h.trim();
    if h.contains('@') {
        return h.to_lowercase();
    }
    let phoneish = h
        .chars()
        .all(|c| c.is_ascii_digit() || " +-.()".contains(c));
    if phoneish && h.chars().any(|c| c.is_ascii_digit()) {
        h.chars()
            .filter(|c| *c == '+' || c.is_ascii_digit())
            .collect()
    } else {
        h.to_owned()
    }
}

/// It spawns `imsg`: its program executable, and the folder of `dbPath` read-write (imsg
/// reads Messages' SQLite database, whose `-wal` and `-shm` files live beside it). With
/// `remoteHost` it spawns `ssh` instead (executable; `~/.ssh` read-only: keys, known
/// hosts), and the database is the Mac's. On macOS, where imsg really runs, nothing is
/// confined (see the README).
fn confinement(worker: &Value) -> Confinement {
    let mut c = Confinement {
        spawn: true,
        ..Confinement::default()
    };
    let found = |p: &str| {
        resolve_program(p)
            .map(|p| program_folders(&p))
            .unwrap_or_default()
    };
    if worker["remoteHost"].as_str().is_some() {
        c.exec.extend(found("ssh"));
        if let Some(home) = std::env::var_os("HOME") {
            c.read_only.push(PathBuf::from(home).join(".ssh"));
        }
        return c;
    }
    if let Some(cli) = worker["cliPath"].as_str() {
        c.exec.extend(found(cli));
    }
    if let Some(dir) = worker["dbPath"]
        .as_str()
        .and_then(|db| std::path::Path::new(db).parent())
    {
        c.read_write.push(dir.to_owned());
    }
    c
}

fn configure(s: &mut Section<'_>) -> Option<(ChannelConfig, Value)> {
    let m: IMessageSection = s.parse()?;
    let mut routing = s.routing(m.policy(), PROVIDER.id_prefixes);
    for list in [&mut routing.allow_from, &mut routing.group_allow_from] {
        for e in list.iter_mut() {
            let (prefix, bare) = PROVIDER
                .id_prefixes
                .iter()
                .find_map(|p| e.strip_prefix(p).map(|b| (*p, b)))
                .unwrap_or(("", e.as_str()));
            *e = format!("{prefix}{}", normalize_handle(bare));
        }
    }
    let cli = m.cli_path.unwrap_or_else(|| "imsg".into());
    if cli.trim().is_empty() {
        s.problem("cliPath", "must not be blank (default: imsg)");
    }
    let mut config = json!({ "cliPath": cli.trim() });
    if let Some(db) = &m.db_path {
        if db.as_os_str().is_empty() {
            s.problem("dbPath", "must not be blank");
        }
        config["dbPath"] = json!(db);
    }
    if let Some(host) = m.remote_host.as_deref().map(str::trim) {
        // Handed to ssh as one argument: an option or a space would be an injection.
        if host.is_empty() || host.starts_with('-') || host.contains(char::is_whitespace) {
            s.problem(
                "remoteHost",
                format!(
                    "{host:?} is not an SSH host (expected e.g. \"mac-mini\" or \"me@mac.local\")"
                ),
            );
        }
        config["remoteHost"] = json!(host);
    }
    if let Some(svc) = &m.service {
        if !matches!(svc.as_str(), "imessage" | "sms" | "auto") {
            s.problem(
                "service",
                format!("{svc:?}: expected \"imessage\", \"sms\" or \"auto\""),
            );
        }
        config["service"] = json!(svc);
    }
    Some((routing, config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::channel::testing::configure as run;

    #[test]
    fn the_section_is_checked_key_by_key() {
        let c = run(
            "imessage",
            configure,
            Some(json!({"remoteHost": "-oProxyCommand=x", "service": "fax", "cliPath": " "})),
            &[],
        );
        let all = c.problems.join("\n");
        for key in [
            "channels.imessage.remoteHost:",
            "channels.imessage.service:",
            "channels.imessage.cliPath:",
        ] {
            assert!(all.contains(key), "{key} missing from:\n{all}");
        }
    }

    #[test]
    fn defaults_and_handles_are_normalised() {
        let c = run(
            "imessage",
            configure,
            Some(
                json!({"allowFrom": ["+1 (415) 555-1212", "imessage:Alice@iCloud.com"],
                        "remoteHost": "mac-mini", "dbPath": "/Users/me/chat.db"}),
            ),
            &[],
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let (routing, worker) = c.result.unwrap();
        assert_eq!(
            routing.allow_from,
            vec!["+14155551212", "imessage:alice@icloud.com"]
        );
        assert_eq!(worker["cliPath"], "imsg");
        assert_eq!(worker["remoteHost"], "mac-mini");
        assert_eq!(worker["dbPath"], "/Users/me/chat.db");
    }

    #[test]
    fn chat_ids_are_group_targets_and_handles_are_not() {
        assert!(is_chat_id("42"));
        assert!(is_chat_id("imessage:chat_id:7"));
        assert!(!is_chat_id("+14155551212"));
        assert!(!is_chat_id("bob@example.com"));
        assert!(!is_chat_id(""));
    }
}
