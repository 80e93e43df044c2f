//! Slack: a Slack app's bot user, driven by `switchboard-worker-slack` (Socket Mode in,
//! the Web API out). Configured by `channels.slack` or `SLACK_BOT_TOKEN` and
//! `SLACK_APP_TOKEN` alone.

use serde_json::{Value, json};

use super::{DmPeer, Provider};
use crate::config::channel::{ChannelConfig, GroupFile, GroupSettings, Section, channel_section};
use crate::secret::Secret;

/// The bot token (`xoxb-…`, OAuth & Permissions) and the app-level token (`xapp-…`,
/// Basic Information → App-Level Tokens, scope `connections:write`).
pub const BOT_TOKEN_ENV: &str = "SLACK_BOT_TOKEN";
pub const APP_TOKEN_ENV: &str = "SLACK_APP_TOKEN";
pub const DEFAULT_API: &str = "https://slack.com/api";

pub const PROVIDER: Provider = Provider {
    id: "slack",
    label: "Slack",
    worker: "switchboard-worker-slack",
    enabled_by_env: &[BOT_TOKEN_ENV, APP_TOKEN_ENV],
    configure,
    id_prefixes: &["slack:", "user:"],
    connected_states: &["connected"],
    is_group_target,
    group_kind: "channel",
    // A DM's channel id (`D…`) is not the user's id (`U…`): sessions are per user.
    dm_peer: DmPeer::Sender,
    confinement: super::network_only,
    setup_hint: "a Slack app with Socket Mode on: its bot token (xoxb-…) in channels.slack.botToken or SLACK_BOT_TOKEN and an app-level token (xapp-…) in channels.slack.appToken or SLACK_APP_TOKEN",
};

channel_section!(
    /// `channels.slack`.
    SlackSection {
        bot_token: Option<Secret>,
        app_token: Option<Secret>,
        /// Web API base URL (default `https://slack.com/api`).
        api_url: Option<String>,
        /// Per-channel settings by channel id (`C…`), `"*"` for every channel; the
        /// reference's name for `groups` (both are read). Listing a channel admits it.
        channels: std::collections::BTreeMap<String, GroupFile>,
        /// No frame and no pong on the Socket Mode connection for this long means it is
        /// dead and is replaced (default 30).
        socket_timeout_seconds: Option<u32>,
    }
);

fn configure(s: &mut Section<'_>) -> Option<(ChannelConfig, Value)> {
    let c: SlackSection = s.parse()?;
    let mut routing = s.routing(c.policy(), PROVIDER.id_prefixes);
    for (id, g) in &c.channels {
        routing.groups.insert(
            id.trim().to_owned(),
            GroupSettings {
                require_mention: g.require_mention,
            },
        );
    }
    let bot = s.secret("botToken", &[BOT_TOKEN_ENV], &c.bot_token);
    let app = s.secret("appToken", &[APP_TOKEN_ENV], &c.app_token);
    if bot.is_none() {
        s.problem(
            "botToken",
            format!(
                "required (or set {BOT_TOKEN_ENV}): the bot token (xoxb-…) from OAuth & Permissions"
            ),
        );
    }
    if app.is_none() {
        s.problem(
            "appToken",
            format!("required (or set {APP_TOKEN_ENV}): an app-level token (xapp-…) with connections:write, from Basic Information"),
        );
    }
    let (Some(bot), Some(app)) = (bot, app) else {
        return None;
    };
    if !bot.expose().starts_with("xoxb-") {
        s.problem(
            "botToken",
            "does not look like a bot token (expected xoxb-…, from OAuth & Permissions)",
        );
    }
    if !app.expose().starts_with("xapp-") {
        s.problem(
            "appToken",
            "does not look like an app-level token (expected xapp-…, from Basic Information → App-Level Tokens)",
        );
    }
    let api_url = c.api_url.unwrap_or_else(|| DEFAULT_API.into());
    s.check_url("apiUrl", &api_url, &["http", "https"]);
    let timeout = c.socket_timeout_seconds.unwrap_or(30);
    if !(1..=600).contains(&timeout) {
        s.problem("socketTimeoutSeconds", "must be between 1 and 600");
    }
    Some((
        routing,
        json!({
            "botToken": bot.expose(),
            "appToken": app.expose(),
            "apiUrl": api_url.trim().trim_end_matches('/'),
            "socketTimeoutSeconds": timeout,
        }),
    ))
}

/// Channels (`C…`) and private channels or group DMs (`G…`) are conversations of many;
/// users (`U…`, `W…`) and DMs (`D…`) are one person.
fn is_group_target(to: &str) -> bool {
    let t = to.trim();
    let t = t.strip_prefix("slack:").unwrap_or(t);
    let t = t.strip_prefix("channel:").unwrap_or(t);
    t.starts_with('C') || t.starts_with('G')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::channel::testing::configure as run;
    use crate::config::file::DmPolicy;

    #[test]
    fn both_tokens_are_required_and_never_shown() {
        let c = run("slack", configure, Some(json!({})), &[]);
        assert!(c.result.is_none());
        let all = c.problems.join("\n");
        assert!(all.contains("channels.slack.botToken: required"), "{all}");
        assert!(all.contains("channels.slack.appToken: required"), "{all}");
        let c = run(
            "slack",
            configure,
            Some(
                json!({"botToken": "nope-sekrit", "appToken": "xoxb-sekrit2", "apiUrl": "http://10.1.1.1/api"}),
            ),
            &[],
        );
        let all = c.problems.join("\n");
        for key in [
            "channels.slack.botToken: does not look",
            "channels.slack.appToken: does not look",
            "channels.slack.apiUrl:",
        ] {
            assert!(all.contains(key), "{key} missing from:\n{all}");
        }
        assert!(!all.contains("sekrit"), "a token leaked:\n{all}");
    }

    #[test]
    fn tokens_come_from_the_environment_and_channels_carry_require_mention() {
        let c = run(
            "slack",
            configure,
            None,
            &[(BOT_TOKEN_ENV, "xoxb-1-2"), (APP_TOKEN_ENV, "xapp-1-A-3")],
        );
        let (routing, worker) = c.result.expect("configured from the environment");
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(worker["apiUrl"], DEFAULT_API);
        assert_eq!(worker["socketTimeoutSeconds"], 30);
        assert_eq!(routing.dm_policy, DmPolicy::Pairing);
        assert_eq!(c.sources["channels.slack.appToken"], "env SLACK_APP_TOKEN");
        let c = run(
            "slack",
            configure,
            Some(json!({"botToken": "xoxb-1", "appToken": "xapp-1",
                "apiUrl": "http://127.0.0.1:9/api/", "allowFrom": ["U123"],
                "channels": {"C042": {"requireMention": false}}})),
            &[],
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let (routing, worker) = c.result.unwrap();
        assert_eq!(worker["apiUrl"], "http://127.0.0.1:9/api");
        assert_eq!(routing.groups["C042"].require_mention, Some(false));
        assert_eq!(routing.allow_from, vec!["U123"]);
    }

    #[test]
    fn channel_targets_are_told_from_people() {
        assert!(is_group_target("C0123"));
        assert!(is_group_target("slack:G0123"));
        assert!(!is_group_target("U0123"));
        assert!(!is_group_target("D0123"));
    }
}
