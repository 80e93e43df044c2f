//! The provider registry: everything the supervisor knows about each messaging provider,
//! one file per provider, and no provider named anywhere else in the supervisor (a test
//! checks it). What a running worker can do comes from its `Hello` capabilities, not
//! from here; this says how a provider is configured, started and addressed.
//!
//! Adding a provider: a file here with its [`Provider`] (and its section type), a line
//! in [`ALL`], and a worker crate implementing `worker_runtime::channel::Channel`.

pub mod discord;
pub mod imessage;
pub mod signal;
pub mod slack;
pub mod telegram;
pub mod whatsapp;

use serde_json::Value;

use crate::config::channel::{ChannelConfig, Section};
use crate::workers::Confinement;

/// Which peer names a direct conversation's session (`agent:main:<id>:dm:<peer>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmPeer {
    /// The chat id (providers whose DM chat is the user, as Telegram's).
    Chat,
    /// The sender (providers whose DM channel id differs from the user's id).
    Sender,
}

/// One messaging provider.
pub struct Provider {
    /// The channel id: the `channels.<id>` config section, the worker's name, and the
    /// session keys' third part.
    pub id: &'static str,
    /// The name people know it by (`channelLabels`).
    pub label: &'static str,
    /// The worker's executable, found in the worker directory.
    pub worker: &'static str,
    /// Environment variables that turn the channel on without a config section (its
    /// credentials); empty when the section is required.
    pub enabled_by_env: &'static [&'static str],
    /// Reads and checks `channels.<id>`: the routing config and the worker's own config
    /// (secrets included; the supervisor never logs it). Problems go to the section;
    /// `None` when the channel cannot start.
    pub configure: fn(&mut Section<'_>) -> Option<(ChannelConfig, Value)>,
    /// Prefixes an allow-list entry may put before a sender id (`tg:123`).
    pub id_prefixes: &'static [&'static str],
    /// Provider states that mean "connected", for a worker that does not say so itself.
    pub connected_states: &'static [&'static str],
    /// Whether a `send` target names a group conversation.
    pub is_group_target: fn(&str) -> bool,
    /// The word for group conversations in session keys (`group`, `channel`).
    pub group_kind: &'static str,
    pub dm_peer: DmPeer,
    /// Where the credentials come from, in one sentence (for `channels status` hints).
    pub setup_hint: &'static str,
    /// What its worker may touch once confined, from its worker config: its state
    /// folder, the helper it spawns. Network-only providers: [`network_only`].
    pub confinement: fn(&Value) -> Confinement,
}

/// The confinement of a provider that needs the network and nothing of the filesystem
/// beyond the runtime's defaults.
pub fn network_only(_: &Value) -> Confinement {
    Confinement::default()
}

/// The channel a v3 `send` without `channel` meant (the v3 reference's default), named
/// in its refusal when nothing is configured.
pub const V3_DEFAULT_SEND_CHANNEL: &str = whatsapp::PROVIDER.id;

/// Every provider Switchboard knows.
pub const ALL: &[&Provider] = &[
    &telegram::PROVIDER,
    &whatsapp::PROVIDER,
    &signal::PROVIDER,
    &imessage::PROVIDER,
    &discord::PROVIDER,
    &slack::PROVIDER,
];

/// The provider with this channel id.
pub fn get(id: &str) -> Option<&'static Provider> {
    ALL.iter().copied().find(|p| p.id == id)
}

/// The ids, for error messages (`telegram, whatsapp`).
pub fn ids() -> String {
    ALL.iter().map(|p| p.id).collect::<Vec<_>>().join(", ")
}

/// The display name of a channel (its id when it is not a registered provider).
pub fn label(id: &str) -> String {
    get(id)
        .map(|p| p.label.to_owned())
        .unwrap_or_else(|| id.to_owned())
}

/// A message's session: `agent:main:<channel>:dm:<peer>` or `…:<group kind>:<chat>`.
pub fn session_key(channel: &str, chat_id: &str, sender_id: &str, is_group: bool) -> String {
    let p = get(channel);
    let kind = if is_group {
        p.map(|p| p.group_kind).unwrap_or("group")
    } else {
        "dm"
    };
    let peer = match (is_group, p.map(|p| p.dm_peer)) {
        (false, Some(DmPeer::Sender)) if !sender_id.is_empty() => sender_id,
        _ => chat_id,
    };
    // A `send` target may carry the provider's prefixes (`user:123`); the conversation
    // is the bare id's, as for the messages that come in.
    let peer = bare_id(peer, p.map_or(&[], |p| p.id_prefixes));
    crate::state::history::conversation_key(channel, kind, peer)
}

/// `id` trimmed and without any of the provider's `prefixes` before it (`user:123` →
/// `123`); a prefix with nothing after it is kept, so an id never becomes empty.
pub fn bare_id<'a>(id: &'a str, prefixes: &[&str]) -> &'a str {
    let mut id = id.trim();
    while let Some(bare) = prefixes
        .iter()
        .find_map(|x| id.strip_prefix(x))
        .filter(|b| !b.is_empty())
    {
        id = bare;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_lowercase() {
        let mut ids: Vec<_> = ALL.iter().map(|p| p.id).collect();
        assert!(
            ids.iter()
                .all(|i| i.chars().all(|c| c.is_ascii_lowercase()))
        );
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(n, ids.len());
    }

    /// No supervisor file outside this folder names a provider: adding one must not
    /// mean edits elsewhere. Ids that are also ordinary words (`signal`, as in Unix
    /// signals) are checked only where they would name the provider: as a string
    /// literal or a config key.
    #[test]
    fn no_supervisor_file_outside_the_registry_names_a_provider() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let registry = root.join("channels").join("providers");
        let mut offenders = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.starts_with(&registry) {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let lower = text.to_lowercase();
                for p in ALL {
                    for word in [p.id.to_string(), p.label.to_lowercase()] {
                        let needles: Vec<String> = if COMMON_WORDS.contains(&p.id) {
                            vec![format!("\"{word}\""), format!("channels.{word}")]
                        } else {
                            vec![word.clone()]
                        };
                        for n in needles {
                            if contains_word(&lower, &n) {
                                offenders.push(format!("{} names {n}", path.display()));
                            }
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:#?}");
    }

    /// Provider ids that are also everyday words in the supervisor's code.
    const COMMON_WORDS: &[&str] = &["signal"];

    fn contains_word(hay: &str, needle: &str) -> bool {
        hay.match_indices(needle).any(|(i, _)| {
            let before = hay[..i].chars().next_back();
            let after = hay[i + needle.len()..].chars().next();
            let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            boundary(before) && boundary(after)
        })
    }
}
