//! The Web API calls the worker makes, through slack-morphism's client, and what a
//! failed call means for us ([`Verdict`]).

use std::time::Duration;

use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

/// How long one Web API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `Retry-After` honoured as given (a bigger one is cut to this).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Error codes that mean a token is no good: nothing is called again until an operator
/// fixes it (https://docs.slack.dev/reference/methods, "Errors").
const AUTH_ERRORS: &[&str] = &[
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "not_authed",
    "not_allowed_token_type",
];

/// Error codes Slack documents as passing ("transient issue on our end").
const PASSING_ERRORS: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "ratelimited",
    "rate_limited",
];

/// What a failed call means.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// A token was refused (the error code says how): stop calling Slack.
    Unauthorized(String),
    /// 429: wait this long.
    RetryAfter(Duration),
    /// Network trouble or a server error: try again later.
    Transient(String),
    /// The request itself was refused (`channel_not_found`, `not_in_channel`, …).
    Permanent(String),
}

type Connector = SlackClientHyperHttpsConnector;

/// The Web API client and the two tokens.
pub struct Api {
    client: SlackClient<Connector>,
    bot: SlackApiToken,
    app: SlackApiToken,
    secrets: [String; 2],
}

impl Api {
    /// A client for the API at `base` (`https://slack.com/api`, or `http://` to a
    /// loopback stand-in).
    pub fn new(base: &str, bot_token: &str, app_token: &str) -> Result<Api, String> {
        let base = base.trim().trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(format!("apiUrl {base:?} is not an http(s) URL"));
        }
        if bot_token.trim().is_empty() || app_token.trim().is_empty() {
            return Err("botToken and appToken are required".into());
        }
        // slack-morphism's own `new()` is https-only with HTTP/2 and native roots; the
        // stand-in speaks plain HTTP/1.1 on loopback.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let connector = SlackClientHyperConnector::from(https).with_slack_api_url(base);
        let token = |t: &str| SlackApiToken::new(SlackApiTokenValue::new(t.trim().to_owned()));
        Ok(Api {
            client: SlackClient::new(connector),
            bot: token(bot_token),
            app: token(app_token),
            secrets: [bot_token.trim().to_owned(), app_token.trim().to_owned()],
        })
    }

    /// Removes both tokens from a text meant for a log or an error.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for s in &self.secrets {
            if !s.is_empty() {
                out = out.replace(s.as_str(), "<token>");
            }
        }
        out
    }

    /// `auth.test` with the bot token: the bot's user id, bot id, name and team.
    pub async fn auth_test(&self) -> Result<crate::Me, Verdict> {
        let session = self.client.open_session(&self.bot);
        let r = self.call(session.auth_test()).await?;
        Ok(crate::Me {
            user_id: r.user_id.to_string(),
            bot_id: r.bot_id.map(|b| b.to_string()).unwrap_or_default(),
            name: r.user.unwrap_or_default(),
            team: r.team,
        })
    }

    /// `apps.connections.open` with the app-level token: a fresh Socket Mode URL.
    pub async fn connections_open(&self) -> Result<String, Verdict> {
        let session = self.client.open_session(&self.app);
        let r = self
            .call(session.apps_connections_open(&SlackApiAppsConnectionOpenRequest::new()))
            .await?;
        Ok(r.url.value().to_string())
    }

    /// `chat.postMessage` with the bot token: the new message's `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        thread_ts: Option<&str>,
    ) -> Result<String, Verdict> {
        let session = self.client.open_session(&self.bot);
        let mut req = SlackApiChatPostMessageRequest::new(
            SlackChannelId::new(channel.to_owned()),
            SlackMessageContent::new().with_text(text.to_owned()),
        );
        if let Some(ts) = thread_ts.filter(|t| !t.is_empty()) {
            req = req.with_thread_ts(SlackTs::new(ts.to_owned()));
        }
        let r = self.call(session.chat_post_message(&req)).await?;
        Ok(r.ts.to_string())
    }

    async fn call<T>(
        &self,
        f: impl Future<Output = Result<T, SlackClientError>>,
    ) -> Result<T, Verdict> {
        match tokio::time::timeout(CALL_TIMEOUT, f).await {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(self.classify(&e)),
            Err(_) => Err(Verdict::Transient(format!(
                "network: no answer within {} s",
                CALL_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Classifies an error; texts have the tokens removed.
    pub fn classify(&self, e: &SlackClientError) -> Verdict {
        match e {
            SlackClientError::ApiError(api) => {
                let code = api.code.as_str();
                if AUTH_ERRORS.contains(&code) {
                    Verdict::Unauthorized(code.to_owned())
                } else if PASSING_ERRORS.contains(&code) {
                    Verdict::Transient(format!("slack error {code}"))
                } else {
                    Verdict::Permanent(self.redact(code))
                }
            }
            SlackClientError::RateLimitError(r) => Verdict::RetryAfter(
                r.retry_after
                    .unwrap_or(Duration::from_secs(1))
                    .clamp(Duration::from_millis(100), MAX_RETRY_AFTER),
            ),
            SlackClientError::HttpError(h) => {
                let status = h.status_code.as_u16();
                if status >= 500 || status == 408 {
                    Verdict::Transient(format!("slack server error (HTTP {status})"))
                } else if status == 401 || status == 403 {
                    Verdict::Unauthorized(format!("HTTP {status}"))
                } else {
                    Verdict::Permanent(format!("slack answered HTTP {status}"))
                }
            }
            SlackClientError::ProtocolError(_) => {
                Verdict::Transient("slack answered something that is not the Web API's JSON".into())
            }
            other => Verdict::Transient(format!("network: {}", self.redact(&source_chain(other)))),
        }
    }
}

fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// What an operator must do about a refused token, for health and errors.
pub fn unauthorized_detail(code: &str, which: &str) -> String {
    format!(
        "Slack refused the {which} ({code}): fix channels.slack.botToken / appToken, then `switchboard workers restart slack`"
    )
}
