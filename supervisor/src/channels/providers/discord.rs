//! Discord: a bot application driven by `switchboard-worker-discord` (the gateway
//! WebSocket in, REST out). Configured by `channels.discord` or `DISCORD_BOT_TOKEN` alone.
//!
//! Guild channels are admitted as `guilds.<guildId>.channels.<channelId>` (or the shared
//! `groups.<channelId>`); each becomes a group of the routing config, keyed by its
//! channel id, with its `requireMention` (a guild's own `requireMention` is the default
//! of its channels). The worker asks for the privileged `MESSAGE_CONTENT` intent only
//! when some admitted channel takes messages without a mention: without it Discord still
//! sends the text of DMs and of messages that mention the bot.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{DmPeer, Provider};
use crate::config::channel::{ChannelConfig, GroupFile, GroupSettings, Section, channel_section};
use crate::config::file::GroupPolicy;
use crate::secret::Secret;

/// The bot token's environment variable.
pub const TOKEN_ENV: &str = "DISCORD_BOT_TOKEN";
pub const DEFAULT_API: &str = "https://discord.com";

pub const PROVIDER: Provider = Provider {
    id: "discord",
    label: "Discord",
    worker: "switchboard-worker-discord",
    enabled_by_env: &[TOKEN_ENV],
    configure,
    id_prefixes: &["discord:", "user:", "channel:"],
    connected_states: &["connected"],
    is_group_target,
    group_kind: "channel",
    // A DM's channel id is not the user's id: DM sessions are named by the sender.
    dm_peer: DmPeer::Sender,
    confinement: super::network_only,
    setup_hint: "a bot token from the Discord developer portal (your application → Bot → Reset Token) in channels.discord.token or DISCORD_BOT_TOKEN",
};

/// One guild's admitted channels.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GuildFile {
    /// The default for this guild's channels (default `true`).
    pub require_mention: Option<bool>,
    /// Channels by id; listing a channel admits it.
    pub channels: BTreeMap<String, GroupFile>,
}

channel_section!(
    /// `channels.discord`.
    DiscordSection {
        token: Option<Secret>,
        /// REST base URL (default `https://discord.com`).
        api_url: Option<String>,
        /// Gateway URL (default: what `GET /gateway/bot` answers).
        gateway_url: Option<String>,
        /// Admitted guild channels, by guild id.
        guilds: BTreeMap<String, GuildFile>,
    }
);

fn configure(s: &mut Section<'_>) -> Option<(ChannelConfig, Value)> {
    let d: DiscordSection = s.parse()?;
    let mut routing = s.routing(d.policy(), PROVIDER.id_prefixes);
    for (guild, g) in &d.guilds {
        let guild = guild.trim();
        if guild != "*" && !is_snowflake(guild) {
            s.problem(
                &format!("guilds.{guild}"),
                "a guild is named by its id (digits; Developer Mode → right-click the server → Copy Server ID) or \"*\"",
            );
            continue;
        }
        if g.channels.is_empty() {
            s.problem(
                &format!("guilds.{guild}.channels"),
                "list the channels the bot may answer in (by channel id, or \"*\" under guild \"*\")",
            );
        }
        for (channel, c) in &g.channels {
            let channel = channel.trim();
            let key = format!("guilds.{guild}.channels.{channel}");
            if channel == "*" && guild != "*" {
                s.problem(
                    &key,
                    "\"*\" would admit every channel of every guild; list this guild's channel ids, or use guild \"*\"",
                );
                continue;
            }
            if channel != "*" && !is_snowflake(channel) {
                s.problem(&key, "a channel is named by its id (digits) or \"*\"");
                continue;
            }
            if routing.groups.contains_key(channel) {
                s.problem(&key, "this channel is listed twice");
                continue;
            }
            routing.groups.insert(
                channel.to_owned(),
                GroupSettings {
                    require_mention: c.require_mention.or(g.require_mention),
                },
            );
        }
    }
    let Some(token) = s.secret("token", &[TOKEN_ENV], &d.token) else {
        s.problem(
            "token",
            format!(
                "required (or set {TOKEN_ENV}); the developer portal shows it under your application → Bot → Reset Token"
            ),
        );
        return None;
    };
    let t = token.expose().trim();
    if t.starts_with("Bot ") {
        s.problem("token", "give the token without the \"Bot \" prefix");
    } else if !looks_like_bot_token(t) {
        s.problem(
            "token",
            "does not look like a Discord bot token (three dot-separated parts, as the developer portal gives it)",
        );
    }
    let api_url = d
        .api_url
        .as_deref()
        .map(str::trim)
        .unwrap_or(DEFAULT_API)
        .trim_end_matches('/')
        .to_owned();
    s.check_url("apiUrl", &api_url, &["http", "https"]);
    let mut config = json!({
        "token": t,
        "apiUrl": api_url,
        "messageContent": needs_message_content(&routing),
    });
    if let Some(g) = d.gateway_url.as_deref().map(str::trim) {
        s.check_url("gatewayUrl", g, &["ws", "wss"]);
        config["gatewayUrl"] = json!(g.trim_end_matches('/'));
    }
    Some((routing, config))
}

/// `MESSAGE_CONTENT` is needed exactly when an admitted guild channel takes messages
/// that do not mention the bot.
fn needs_message_content(r: &ChannelConfig) -> bool {
    r.group_policy != GroupPolicy::Disabled
        && r.groups.values().any(|g| g.require_mention == Some(false))
}

fn is_snowflake(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.chars().all(|c| c.is_ascii_digit())
}

/// Three dot-separated url-safe base64 parts.
fn looks_like_bot_token(t: &str) -> bool {
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// `channel:<id>` or a bare id names a channel; `user:<id>` and `<@id>` name a person.
fn is_group_target(to: &str) -> bool {
    let t = to.trim();
    let t = t.strip_prefix("discord:").unwrap_or(t);
    !(t.starts_with("user:") || t.starts_with("<@"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::channel::testing::configure as run;
    use crate::config::file::DmPolicy;

    const TOKEN: &str = "MTIz.Gx_y.abc-DEF";

    #[test]
    fn every_problem_is_named_by_its_key_and_never_shows_the_token() {
        let c = run(
            "discord",
            configure,
            Some(
                json!({"token": "not a token sekrit", "apiUrl": "http://example.com",
                        "gatewayUrl": "https://x", "guilds": {"abc": {}, "12": {"channels": {"*": {}}}}}),
            ),
            &[],
        );
        let all = c.problems.join("\n");
        for key in [
            "channels.discord.token: does not look like",
            "channels.discord.apiUrl:",
            "channels.discord.gatewayUrl:",
            "channels.discord.guilds.abc:",
            "channels.discord.guilds.12.channels.*:",
        ] {
            assert!(all.contains(key), "{key} missing from:\n{all}");
        }
        assert!(!all.contains("sekrit"), "the token leaked:\n{all}");
    }

    #[test]
    fn the_token_comes_from_the_section_or_the_environment() {
        let c = run("discord", configure, Some(json!({})), &[]);
        assert!(c.result.is_none());
        assert!(c.problems[0].starts_with("channels.discord.token: required"));
        let c = run("discord", configure, None, &[(TOKEN_ENV, TOKEN)]);
        let (routing, worker) = c.result.expect("configured from the environment");
        assert_eq!(worker["apiUrl"], DEFAULT_API);
        assert!(
            worker.get("gatewayUrl").is_none(),
            "asked of GET /gateway/bot"
        );
        assert_eq!(worker["messageContent"], false);
        assert_eq!(routing.dm_policy, DmPolicy::Pairing);
        assert_eq!(c.sources["channels.discord.token"], "env DISCORD_BOT_TOKEN");
        assert!(c.problems.is_empty(), "{:?}", c.problems);
    }

    #[test]
    fn guild_channels_become_groups_and_only_mentionless_ones_need_message_content() {
        let c = run(
            "discord",
            configure,
            Some(
                json!({"token": TOKEN, "guilds": {"111": {"requireMention": false,
                "channels": {"222": {}, "333": {"requireMention": true}}}}}),
            ),
            &[],
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let (routing, worker) = c.result.unwrap();
        assert_eq!(routing.groups["222"].require_mention, Some(false));
        assert_eq!(routing.groups["333"].require_mention, Some(true));
        assert_eq!(worker["messageContent"], true);
        let c = run(
            "discord",
            configure,
            Some(
                json!({"token": TOKEN, "groupPolicy": "open", "gatewayUrl": "ws://127.0.0.1:9/gw",
                        "guilds": {"111": {"channels": {"222": {}}}}}),
            ),
            &[],
        );
        let (routing, worker) = c.result.unwrap();
        assert_eq!(routing.groups["222"].require_mention, None);
        assert_eq!(worker["messageContent"], false, "mentions carry their text");
        assert_eq!(worker["gatewayUrl"], "ws://127.0.0.1:9/gw");
    }

    #[test]
    fn targets_name_channels_unless_they_name_a_user() {
        assert!(is_group_target("123"));
        assert!(is_group_target("channel:123"));
        assert!(!is_group_target("user:123"));
        assert!(!is_group_target("discord:user:123"));
        assert!(!is_group_target("<@123>"));
    }
}
