//! Outbound: one `Send` = one imsg `send` (`{to | chat_id, text, service?}`); imsg's
//! answer (`{ok, id, guid}` or an error) is the verdict.
//!
//! A delivery whose earlier attempt may have reached Messages (the supervisor says so,
//! or imsg died or timed out mid-call here) is first looked up in the chat's recent
//! history: a message from this Mac with the same text counts as delivered.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_proto::v1::SendRequest;
use worker_runtime::channel::Delivery;

use crate::rpc::{CallError, Imsg};
use crate::watch::normalize_handle;
use crate::{Shared, permission_problem};

/// Messages.app may take a while (AppleScript, the ghost-row check).
const SEND_TIMEOUT: Duration = Duration::from_secs(60);
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Deliveries whose outcome this worker did not learn (the last 256).
static UNCERTAIN: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// Where a send goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// imsg's chat id (`42`, `chat_id:42`): groups, or any existing chat.
    Chat(i64),
    /// A phone number or e-mail address.
    Handle(String),
}

pub fn parse_target(to: &str) -> Option<Target> {
    let t = to.trim();
    let t = ["imessage:", "imsg:"]
        .iter()
        .find_map(|p| t.strip_prefix(p))
        .unwrap_or(t)
        .trim();
    let id = t.strip_prefix("chat_id:").unwrap_or(t);
    if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) {
        return id.parse().ok().map(Target::Chat);
    }
    let handle = normalize_handle(t);
    let phone = handle.starts_with('+')
        && handle.len() > 4
        && handle[1..].chars().all(|c| c.is_ascii_digit());
    let email = handle
        .split_once('@')
        .is_some_and(|(u, d)| !u.is_empty() && d.contains('.') && !d.contains('@'));
    (phone || email).then_some(Target::Handle(handle))
}

fn uncertain(id: &str) -> bool {
    UNCERTAIN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|d| d == id)
}

fn mark_uncertain(id: &str) {
    let mut u = UNCERTAIN.lock().unwrap_or_else(|p| p.into_inner());
    if u.len() >= 256 {
        u.pop_front();
    }
    u.push_back(id.to_owned());
}

pub async fn deliver(shared: &Shared, req: SendRequest) -> Delivery {
    let state = shared.state.get();
    if state.state == "permission" && state.detail.starts_with("Automation") {
        return Delivery::Refused(state.detail);
    }
    let Some(target) = parse_target(&req.to) else {
        return Delivery::Refused(format!(
            "invalid imessage target {:?}: expected a phone number (+14155551212), an e-mail address, or imsg's chat id (42)",
            req.to
        ));
    };
    if req.text.trim().is_empty() {
        return Delivery::Refused("the message is empty".into());
    }
    let Some(imsg) = shared.imsg() else {
        return Delivery::Retry(format!(
            "imsg is not running ({}: {})",
            state.state, state.detail
        ));
    };
    if (req.uncertain || uncertain(&req.delivery_id))
        && let Some(id) = already_sent(&imsg, &target, &req.text).await
    {
        tracing::info!(delivery = %req.delivery_id, "an earlier attempt was delivered; not sending again");
        return Delivery::Delivered(id);
    }
    let mut params = match &target {
        Target::Chat(id) => json!({"chat_id": id, "text": req.text}),
        Target::Handle(h) => json!({"to": h, "text": req.text}),
    };
    if let Some(s) = &shared.cfg.service {
        params["service"] = json!(s);
    }
    let r = tokio::select! {
        _ = shared.shutdown.cancelled() => {
            mark_uncertain(&req.delivery_id);
            return Delivery::Retry("the imessage worker is stopping".into());
        }
        r = imsg.call("send", params, SEND_TIMEOUT) => r,
    };
    match r {
        Ok(v) if v["ok"] == true => Delivery::Delivered(message_id(&v)),
        Ok(v) => Delivery::Retry(format!("imsg did not confirm the send: {v}")),
        Err(CallError::Rpc(e)) => {
            let text = e.text();
            tracing::warn!(delivery = %req.delivery_id, code = e.code, "imsg send failed: {text}");
            if let Some(detail) = permission_problem(&shared.cfg, &text) {
                shared.state.set("permission", detail.clone(), false);
                return Delivery::Refused(detail);
            }
            // -32602: invalid params (bad handle, unknown chat); the rest may pass.
            let lower = text.to_lowercase();
            if e.code == -32602 || lower.contains("not found") || lower.contains("invalid") {
                Delivery::Refused(format!("imsg refused the message: {text}"))
            } else {
                Delivery::Retry(format!("imsg could not send: {text}"))
            }
        }
        Err(e @ (CallError::Exited | CallError::Timeout(..))) => {
            // It may have reached Messages: look before sending again.
            mark_uncertain(&req.delivery_id);
            Delivery::Retry(format!(
                "{e}; the send will be checked before it is repeated"
            ))
        }
        Err(e) => Delivery::Retry(e.to_string()),
    }
}

/// imsg's `guid` (or row `id`); both are best-effort, so `sent` when neither came.
fn message_id(v: &Value) -> String {
    match (&v["guid"], &v["id"]) {
        (Value::String(g), _) if !g.is_empty() => g.clone(),
        (_, Value::Number(n)) => n.to_string(),
        _ => "sent".into(),
    }
}

/// A message from this Mac with this text among the chat's last 20: its id.
async fn already_sent(imsg: &Imsg, target: &Target, text: &str) -> Option<String> {
    let chat_id = match target {
        Target::Chat(id) => *id,
        Target::Handle(h) => {
            let chats = imsg
                .call("chats.list", json!({"limit": 100}), LOOKUP_TIMEOUT)
                .await
                .ok()?;
            chats["chats"].as_array()?.iter().find_map(|c| {
                let ident = normalize_handle(c["identifier"].as_str().unwrap_or_default());
                (c["is_group"] != true && ident == *h).then(|| c["id"].as_i64())?
            })?
        }
    };
    let h = imsg
        .call(
            "messages.history",
            json!({"chat_id": chat_id, "limit": 20}),
            LOOKUP_TIMEOUT,
        )
        .await
        .ok()?;
    h["messages"].as_array()?.iter().find_map(|m| {
        (m["is_from_me"] == true && m["text"].as_str() == Some(text)).then(|| message_id(m))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(parse_target("42"), Some(Target::Chat(42)));
        assert_eq!(parse_target("imessage:chat_id:7"), Some(Target::Chat(7)));
        assert_eq!(
            parse_target(" +14155551212 "),
            Some(Target::Handle("+14155551212".into()))
        );
        assert_eq!(
            parse_target("imsg:Bob@Example.com"),
            Some(Target::Handle("bob@example.com".into()))
        );
        assert_eq!(parse_target("bob"), None);
        assert_eq!(parse_target("+1"), None);
        assert_eq!(parse_target(""), None);
    }
}
