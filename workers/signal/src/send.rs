//! Outbound: one `send` RPC per part of a text to a person (number or UUID) or a group
//! (its base64 id). The per-recipient `results` decide the verdict: `SUCCESS` delivered;
//! `RATE_LIMIT_FAILURE` (and error −5) retry after `retryAfterSeconds`;
//! `UNREGISTERED_FAILURE` and user errors (−1) refused; an untrusted identity (−4)
//! refused with how to trust the key; I/O trouble (−3) and network failures retried.
//!
//! Parts of a long text already sent under a delivery id are remembered (bounded), so
//! the outbox's retry continues where it stopped instead of repeating them.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_proto::v1::SendRequest;
use worker_runtime::channel::Delivery;
use worker_runtime::text::{Progress, chunks};

use crate::Shared;
use crate::rpc::{self, IO_ERROR, RATELIMIT_ERROR, RpcError, UNTRUSTED_KEY_ERROR, USER_ERROR};

/// Signal sends longer texts as attachments; stay below its 2000 characters.
pub const CHUNK_CHARS: usize = 2000;
static PROGRESS: Progress = Progress::new(1024);
/// A send waits for Signal's servers; give it time rather than risk a second copy.
const SEND_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Recipient(String),
    Group(String),
}

/// `+15551234567`, a UUID, `group:<id>` or a bare base64 group id, optionally behind
/// `signal:` (and `uuid:` before a UUID).
pub fn parse_target(to: &str) -> Option<Target> {
    let t = to.trim();
    let t = t.strip_prefix("signal:").unwrap_or(t).trim();
    if let Some(g) = t.strip_prefix("group:") {
        return is_group_id(g).then(|| Target::Group(g.to_owned()));
    }
    let t = t.strip_prefix("uuid:").unwrap_or(t);
    if let Some(d) = t.strip_prefix('+') {
        return (!d.is_empty() && d.len() <= 15 && d.chars().all(|c| c.is_ascii_digit()))
            .then(|| Target::Recipient(t.to_owned()));
    }
    if is_uuid(t) {
        return Some(Target::Recipient(t.to_ascii_lowercase()));
    }
    is_group_id(t).then(|| Target::Group(t.to_owned()))
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn is_group_id(s: &str) -> bool {
    s.len() >= 4
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_'))
}

pub async fn deliver(shared: &Shared, req: SendRequest) -> Delivery {
    let state = shared.state.get();
    if !state.restartable {
        // Kept in the outbox: delivered once an operator fixed it.
        return Delivery::Retry(state.detail);
    }
    let Some(target) = parse_target(&req.to) else {
        return Delivery::Refused(format!(
            "invalid signal target {:?}: expected a phone number (+15551234567), a UUID, or a group id",
            req.to
        ));
    };
    if req.text.trim().is_empty() {
        return Delivery::Refused("the message is empty".into());
    }
    let parts = chunks(&req.text, CHUNK_CHARS);
    let (mut sent, mut last_id) = PROGRESS.of(&req.delivery_id);
    while sent < parts.len() {
        let mut params = json!({"account": shared.cfg.account, "message": parts[sent]});
        match &target {
            Target::Recipient(r) => params["recipient"] = json!([r]),
            Target::Group(g) => params["groupId"] = json!(g),
        }
        let r = tokio::select! {
            _ = shared.shutdown.cancelled() => {
                return Delivery::Retry("the signal worker is stopping".into());
            }
            r = rpc::call(shared, "send", params, SEND_TIMEOUT) => r,
        };
        let verdict = match r {
            Ok(result) => of_results(&result, &shared.cfg.account, None),
            Err(e) => of_error(e, &shared.cfg.account),
        };
        match verdict {
            Ok(ts) => {
                sent += 1;
                last_id = ts;
                PROGRESS.record(&req.delivery_id, sent, &last_id);
            }
            Err(d) => {
                tracing::warn!(delivery = %req.delivery_id, part = sent, verdict = ?d, "signal send failed");
                return d;
            }
        }
    }
    Delivery::Delivered(last_id)
}

fn address(r: &Value) -> String {
    let a = &r["recipientAddress"];
    a["number"]
        .as_str()
        .or(a["uuid"].as_str())
        .unwrap_or("the recipient")
        .to_owned()
}

fn trust_hint(account: &str, who: &str) -> String {
    format!(
        "signal refused the message: the safety number of {who} changed (untrusted identity). Compare it in the Signal app, then trust the new key with `signal-cli -a {account} trust --verified-safety-number <SAFETY_NUMBER> {who}` (or `trust --trust-all-known-keys {who}`), and send again"
    )
}

/// The verdict of a send's `{timestamp, results}`: the timestamp (the message's id at
/// Signal) when delivered. `error` is the JSON-RPC error that carried them, if any.
fn of_results(
    result: &Value,
    account: &str,
    error: Option<(i64, &str)>,
) -> Result<String, Delivery> {
    let ts = result["timestamp"]
        .as_i64()
        .map(|t| t.to_string())
        .unwrap_or_default();
    let results = result["results"].as_array().cloned().unwrap_or_default();
    let ok = results.iter().filter(|r| r["type"] == "SUCCESS").count();
    if error.is_none() && (ok > 0 || results.is_empty()) {
        if ok < results.len() {
            tracing::warn!(
                delivered = ok,
                of = results.len(),
                "a group message reached only some members"
            );
        }
        return Ok(ts);
    }
    let failed: Vec<&Value> = results.iter().filter(|r| r["type"] != "SUCCESS").collect();
    let of_type = |t: &'static str| failed.iter().copied().filter(move |r| r["type"] == t);
    if of_type("IDENTITY_FAILURE").next().is_some()
        && of_type("IDENTITY_FAILURE").count() == failed.len()
    {
        let who = failed.first().map(|r| address(r)).unwrap_or_default();
        return Err(Delivery::Refused(trust_hint(account, &who)));
    }
    if let Some(wait) = of_type("RATE_LIMIT_FAILURE")
        .filter_map(|r| r["retryAfterSeconds"].as_u64())
        .max()
    {
        return Err(Delivery::RetryAfter {
            after: Duration::from_secs(wait.max(1)),
            error: format!("rate limited by signal (retry after {wait} s)"),
        });
    }
    if of_type("RATE_LIMIT_FAILURE").next().is_some() {
        return Err(Delivery::Retry("rate limited by signal".into()));
    }
    if let Some(r) = of_type("UNREGISTERED_FAILURE").next() {
        return Err(Delivery::Refused(format!(
            "signal refused the message: {} is not registered on Signal",
            address(r)
        )));
    }
    if let Some(r) = failed.first() {
        let t = r["type"].as_str().unwrap_or("an unknown failure");
        return Err(Delivery::Retry(format!(
            "signal could not deliver to {}: {t}",
            address(r)
        )));
    }
    match error {
        Some((code, message)) => Err(of_code(code, message, account, Value::Null)),
        None => Ok(ts),
    }
}

fn of_error(e: RpcError, account: &str) -> Result<String, Delivery> {
    match e {
        RpcError::Rpc {
            code,
            message,
            data,
        } => {
            let response = &data["response"];
            if response["results"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
            {
                return of_results(response, account, Some((code, &message)));
            }
            Err(of_code(code, &message, account, data))
        }
        RpcError::Http(s) if (400..500).contains(&s) => Err(Delivery::Refused(format!(
            "signal-cli refused the request: HTTP {s}"
        ))),
        other => Err(Delivery::Retry(other.to_string())),
    }
}

fn of_code(code: i64, message: &str, account: &str, _data: Value) -> Delivery {
    match code {
        USER_ERROR => Delivery::Refused(format!("signal refused the message: {message}")),
        UNTRUSTED_KEY_ERROR => Delivery::Refused(trust_hint(account, "the recipient")),
        RATELIMIT_ERROR => Delivery::Retry(format!("rate limited by signal: {message}")),
        IO_ERROR => Delivery::Retry(format!("signal-cli i/o error: {message}")),
        // JSON-RPC's own codes: the request is wrong, retrying cannot help.
        -32602 | -32601 | -32600 | -32700 => Delivery::Refused(format!(
            "signal-cli refused the request: {message} (error {code})"
        )),
        _ => Delivery::Retry(format!("signal-cli: {message} (error {code})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("+15550001111"),
            Some(Target::Recipient("+15550001111".into()))
        );
        assert_eq!(
            parse_target("signal:uuid:0B3D6C1E-3f0a-4d5e-9a8b-1c2d3e4f5a6b"),
            Some(Target::Recipient(
                "0b3d6c1e-3f0a-4d5e-9a8b-1c2d3e4f5a6b".into()
            ))
        );
        assert_eq!(
            parse_target("group:R0lEaWQ="),
            Some(Target::Group("R0lEaWQ=".into()))
        );
        assert_eq!(
            parse_target("R0lEaWQ="),
            Some(Target::Group("R0lEaWQ=".into()))
        );
        assert_eq!(parse_target("+1 555"), None);
        assert_eq!(parse_target("bob smith"), None);
    }

    #[test]
    fn results_decide_the_verdict() {
        let a = "+15550000001";
        let ok = json!({"timestamp": 99, "results": [{"recipientAddress": {"number": "+2"}, "type": "SUCCESS"}]});
        assert_eq!(of_results(&ok, a, None), Ok("99".into()));
        let err = |data: Value, code: i64| RpcError::Rpc {
            code,
            message: "Failed to send message".into(),
            data,
        };
        let rl = json!({"response": {"timestamp": 1, "results": [{"recipientAddress": {"number": "+2"}, "type": "RATE_LIMIT_FAILURE", "retryAfterSeconds": 7}]}});
        assert!(
            matches!(of_error(err(rl, -5), a), Err(Delivery::RetryAfter { after, .. }) if after == Duration::from_secs(7))
        );
        let un = json!({"response": {"timestamp": 1, "results": [{"recipientAddress": {"number": "+2"}, "type": "UNREGISTERED_FAILURE"}]}});
        assert!(
            matches!(of_error(err(un, -1), a), Err(Delivery::Refused(m)) if m.contains("not registered"))
        );
        let id = json!({"response": {"timestamp": 1, "results": [{"recipientAddress": {"number": "+2"}, "type": "IDENTITY_FAILURE"}]}});
        assert!(
            matches!(of_error(err(id, -4), a), Err(Delivery::Refused(m)) if m.contains("trust"))
        );
        assert!(matches!(
            of_error(err(Value::Null, -3), a),
            Err(Delivery::Retry(_))
        ));
        assert!(matches!(
            of_error(RpcError::NotRunning, a),
            Err(Delivery::Retry(_))
        ));
    }
}
