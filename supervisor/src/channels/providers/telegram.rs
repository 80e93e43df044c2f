//! Telegram: a bot driven through the Bot API by `switchboard-worker-telegram`
//! (long polling). Configured by `channels.telegram` or `TELEGRAM_BOT_TOKEN` alone.

use serde_json::{Value, json};

use super::{DmPeer, Provider};
use crate::config::channel::{ChannelConfig, Section, channel_section};
use crate::secret::Secret;

/// The bot token's environment variable (the reference's name).
pub const TOKEN_ENV: &str = "TELEGRAM_BOT_TOKEN";
pub const DEFAULT_API: &str = "https://api.telegram.org";

pub const PROVIDER: Provider = Provider {
    id: "telegram",
    label: "Telegram",
    worker: "switchboard-worker-telegram",
    enabled_by_env: &[TOKEN_ENV],
    configure,
    id_prefixes: &["tg:", "telegram:"],
    connected_states: &["polling", "connected"],
    // Group and supergroup chat ids are negative.
    is_group_target: |to| to.trim().starts_with('-'),
    group_kind: "group",
    dm_peer: DmPeer::Chat,
    confinement: super::network_only,
    setup_hint: "a bot token from @BotFather in channels.telegram.botToken or TELEGRAM_BOT_TOKEN",
};

channel_section!(
    /// `channels.telegram`.
    TelegramSection {
        bot_token: Option<Secret>,
        /// Bot API base URL (default `https://api.telegram.org`).
        api_url: Option<String>,
        /// Long-polling timeout of `getUpdates`, in seconds (default 30).
        poll_timeout_seconds: Option<u32>,
    }
);

fn configure(s: &mut Section<'_>) -> Option<(ChannelConfig, Value)> {
    let t: TelegramSection = s.parse()?;
    let routing = s.routing(t.policy(), PROVIDER.id_prefixes);
    let Some(token) = s.secret("botToken", &[TOKEN_ENV], &t.bot_token) else {
        s.problem(
            "botToken",
            format!("required (or set {TOKEN_ENV}); get one from @BotFather"),
        );
        return None;
    };
    if !looks_like_bot_token(token.expose()) {
        s.problem(
            "botToken",
            "does not look like a bot token (expected <digits>:<secret>, as @BotFather gives it)",
        );
    }
    let api_url = s
        .var(&["SWITCHBOARD_TELEGRAM_API_URL"])
        .or(t.api_url)
        .unwrap_or_else(|| DEFAULT_API.into());
    if !is_http_url(&api_url) {
        s.problem("apiUrl", format!("{api_url:?} is not an http(s) URL"));
    }
    let poll = t.poll_timeout_seconds.unwrap_or(30);
    if poll > 600 {
        s.problem("pollTimeoutSeconds", "must be at most 600");
    }
    Some((
        routing,
        json!({
            "botToken": token.expose(),
            "apiUrl": api_url.trim_end_matches('/'),
            "pollTimeoutSeconds": poll,
        }),
    ))
}

fn is_http_url(u: &str) -> bool {
    let u = u.trim();
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.split("://")
            .nth(1)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

/// `<digits>:<35ish url-safe chars>`, as @BotFather issues them.
fn looks_like_bot_token(t: &str) -> bool {
    match t.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && id.chars().all(|c| c.is_ascii_digit())
                && !secret.is_empty()
                && secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::channel::testing::configure as run;
    use crate::config::file::DmPolicy;

    #[test]
    fn every_problem_is_named_by_its_key_and_never_shows_the_token() {
        let c = run(
            "telegram",
            configure,
            Some(
                json!({"botToken": "not a token sekrit", "dmPolicy": "open", "apiUrl": "ftp://x"}),
            ),
            &[],
        );
        let all = c.problems.join("\n");
        for key in [
            "channels.telegram.botToken: does not look like a bot token",
            "channels.telegram.dmPolicy:",
            "channels.telegram.apiUrl:",
        ] {
            assert!(all.contains(key), "{key} missing from:\n{all}");
        }
        assert!(!all.contains("sekrit"), "the token leaked:\n{all}");
    }

    #[test]
    fn a_token_is_required_from_the_section_or_the_environment() {
        let c = run("telegram", configure, Some(json!({})), &[]);
        assert!(c.result.is_none());
        assert!(
            c.problems[0].starts_with("channels.telegram.botToken: required"),
            "{:?}",
            c.problems
        );
        let c = run("telegram", configure, None, &[(TOKEN_ENV, "123:abc_DEF-9")]);
        let (routing, worker) = c.result.expect("configured from the environment");
        assert_eq!(worker["apiUrl"], DEFAULT_API);
        assert_eq!(routing.dm_policy, DmPolicy::Pairing);
        assert_eq!(
            c.sources["channels.telegram.botToken"],
            "env TELEGRAM_BOT_TOKEN"
        );
        let c = run(
            "telegram",
            configure,
            Some(json!({"dmPolicy": "nobody"})),
            &[(TOKEN_ENV, "1:a")],
        );
        let all = c.problems.join("\n");
        assert!(all.contains("channels.telegram.dmPolicy"), "{all}");
        assert!(all.contains("pairing"), "names the allowed values: {all}");
    }

    #[test]
    fn the_reference_section_carries_over() {
        let c = run(
            "telegram",
            configure,
            Some(
                json!({"botToken": "1:abc", "dmPolicy": "pairing", "allowFrom": [12345, "@alice"],
                        "groups": {"*": {"requireMention": true}}}),
            ),
            &[],
        );
        let (tg, _) = c.result.unwrap();
        assert_eq!(tg.allow_from, vec!["12345", "@alice"]);
        assert_eq!(tg.groups["*"].require_mention, Some(true));
        assert_eq!(tg.id_prefixes, PROVIDER.id_prefixes);
    }
}
