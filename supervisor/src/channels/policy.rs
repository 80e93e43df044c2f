//! The routing rule for inbound messages (the reference gateway's `dmPolicy`,
//! `groupPolicy`, allow-lists, pairing and mentions) and the per-chat ordering lock. A
//! leaf: pure decisions over the channel's resolved config.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::{ChannelConfig, DmPolicy, GroupPolicy};

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run the agent and reply.
    Run,
    /// An unknown sender under `dmPolicy: pairing`.
    Pairing,
    /// Not allowed; no reply.
    Drop(&'static str),
    /// Allowed, but not addressed to the bot (a group message without a mention).
    Skip(&'static str),
}

/// The facts about a message the policy looks at.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub sender_id: &'a str,
    pub sender_username: &'a str,
    pub chat_id: &'a str,
    pub is_group: bool,
    pub mentioned: bool,
    /// Approved earlier through DM pairing.
    pub paired: bool,
}

/// Whether `list` admits the sender: `*`, the id (also behind one of the provider's
/// prefixes, e.g. `tg:<id>`), or the username (`@name` or `name`, any case).
fn listed(list: &[String], prefixes: &[&str], f: &Facts<'_>) -> bool {
    list.iter().any(|entry| {
        let e = entry.trim();
        let bare = prefixes.iter().find_map(|p| e.strip_prefix(p)).unwrap_or(e);
        e == "*"
            || bare == f.sender_id
            || (!f.sender_username.is_empty()
                && bare
                    .trim_start_matches('@')
                    .eq_ignore_ascii_case(f.sender_username))
    })
}

/// The routing rule, as the reference gateway defines it.
pub fn decide(p: &ChannelConfig, f: &Facts<'_>) -> Decision {
    if !f.is_group {
        let allowed = f.paired || listed(&p.allow_from, p.id_prefixes, f);
        return match p.dm_policy {
            DmPolicy::Disabled => {
                Decision::Drop("direct messages are disabled (dmPolicy: disabled)")
            }
            DmPolicy::Open => Decision::Run,
            DmPolicy::Allowlist if allowed => Decision::Run,
            DmPolicy::Allowlist => {
                Decision::Drop("the sender is not in allowFrom (dmPolicy: allowlist)")
            }
            DmPolicy::Pairing if allowed => Decision::Run,
            DmPolicy::Pairing => Decision::Pairing,
        };
    }
    let group_listed = p.groups.contains_key(f.chat_id) || p.groups.contains_key("*");
    let senders = if p.group_allow_from.is_empty() {
        &p.allow_from
    } else {
        &p.group_allow_from
    };
    let admitted = match p.group_policy {
        GroupPolicy::Disabled => {
            return Decision::Drop("group messages are disabled (groupPolicy: disabled)");
        }
        GroupPolicy::Open => true,
        GroupPolicy::Allowlist => group_listed || f.paired || listed(senders, p.id_prefixes, f),
    };
    if !admitted {
        return Decision::Drop(
            "neither the group nor the sender is allowed (groupPolicy: allowlist)",
        );
    }
    let require_mention = p
        .groups
        .get(f.chat_id)
        .and_then(|g| g.require_mention)
        .or_else(|| p.groups.get("*").and_then(|g| g.require_mention))
        .unwrap_or(true);
    if require_mention && !f.mentioned {
        return Decision::Skip("not mentioned (requireMention)");
    }
    Decision::Run
}

/// One chat at a time: messages of a chat are handled in order, never concurrently.
#[derive(Default)]
pub struct ChatLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ChatLocks {
    pub fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut l = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Forget idle chats now and then (only this map holds their lock).
        if l.len() > 1024 {
            l.retain(|_, m| Arc::strong_count(m) > 1);
        }
        Arc::clone(l.entry(key.to_owned()).or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupSettings;

    fn facts<'a>(sender: &'a str, group: bool, mentioned: bool) -> Facts<'a> {
        Facts {
            sender_id: sender,
            sender_username: "Alice",
            chat_id: "-100",
            is_group: group,
            mentioned,
            paired: false,
        }
    }

    #[test]
    fn direct_messages_follow_the_dm_policy() {
        let mut p = ChannelConfig::defaults("chat");
        p.id_prefixes = &["tg:"];
        assert_eq!(decide(&p, &facts("1", false, false)), Decision::Pairing);
        p.allow_from = vec!["@alice".into()];
        assert_eq!(
            decide(&p, &facts("1", false, false)),
            Decision::Run,
            "usernames match in any case"
        );
        p.allow_from = vec!["tg:1".into()];
        assert_eq!(decide(&p, &facts("1", false, false)), Decision::Run);
        p.dm_policy = DmPolicy::Allowlist;
        assert!(matches!(
            decide(&p, &facts("2", false, false)),
            Decision::Drop(_)
        ));
        let mut paired = facts("2", false, false);
        paired.paired = true;
        assert_eq!(decide(&p, &paired), Decision::Run);
        p.dm_policy = DmPolicy::Disabled;
        assert!(matches!(decide(&p, &paired), Decision::Drop(_)));
        p.dm_policy = DmPolicy::Open;
        assert_eq!(decide(&p, &facts("9", false, false)), Decision::Run);
    }

    #[test]
    fn groups_need_admission_and_a_mention_unless_configured_otherwise() {
        let mut p = ChannelConfig::defaults("chat");
        assert!(
            matches!(decide(&p, &facts("1", true, true)), Decision::Drop(_)),
            "allowlist, nothing listed"
        );
        let mut paired = facts("1", true, true);
        paired.paired = true;
        assert_eq!(
            decide(&p, &paired),
            Decision::Run,
            "a paired sender may address the bot in a group"
        );
        p.groups.insert("-100".into(), GroupSettings::default());
        assert_eq!(decide(&p, &facts("7", true, true)), Decision::Run);
        assert!(matches!(
            decide(&p, &facts("7", true, false)),
            Decision::Skip(_)
        ));
        p.groups.insert(
            "*".into(),
            GroupSettings {
                require_mention: Some(false),
            },
        );
        assert_eq!(
            decide(&p, &facts("7", true, false)),
            Decision::Run,
            "\"*\" turns the mention rule off"
        );
        p.groups.insert(
            "-100".into(),
            GroupSettings {
                require_mention: Some(true),
            },
        );
        assert!(
            matches!(decide(&p, &facts("7", true, false)), Decision::Skip(_)),
            "the group's own setting wins"
        );
        p.group_policy = GroupPolicy::Disabled;
        assert!(matches!(
            decide(&p, &facts("7", true, true)),
            Decision::Drop(_)
        ));
    }
}
