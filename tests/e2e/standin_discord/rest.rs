//! The stand-in's REST API (`/api/v10`): see the parent module's documentation.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{BOT_ID, BOT_NAME, BOT_TOKEN, Fail, Sent, State, dm_channel_of};

pub(super) async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let s = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let s = Arc::clone(&s);
                async move { Ok::<_, Infallible>(handle(req, s).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn api_error(status: u16, code: u64, message: &str) -> Response<Full<Bytes>> {
    reply(status, json!({"code": code, "message": message}))
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: Arc<Mutex<State>>,
) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let Some(route) = path.strip_prefix("/api/v10") else {
        return api_error(404, 0, "404: Not Found");
    };
    if auth != format!("Bot {BOT_TOKEN}") {
        state.lock().unwrap().unauthorized_calls += 1;
        return api_error(401, 0, "401: Unauthorized");
    }
    let params: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    match (method.as_str(), route) {
        ("GET", "/gateway/bot") => {
            s.gateway_bot_calls += 1;
            reply(
                200,
                json!({
                    "url": format!("ws://127.0.0.1:{}", s.gateway_port),
                    "shards": 1,
                    "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1},
                }),
            )
        }
        ("POST", "/users/@me/channels") => {
            let Some(user) = params["recipient_id"].as_str().map(str::to_owned) else {
                return api_error(400, 50035, "Invalid Form Body");
            };
            s.dm_opens.push(user.clone());
            let id = dm_channel_of(&mut s, &user);
            reply(
                200,
                json!({"id": id, "type": 1, "last_message_id": null,
                "recipients": [{"id": user, "username": "someone", "discriminator": "0", "avatar": null}]}),
            )
        }
        ("POST", r) if r.starts_with("/channels/") && r.ends_with("/messages") => {
            let channel = r["/channels/".len()..r.len() - "/messages".len()].to_owned();
            s.send_attempts.push(Instant::now());
            let fail = s.fail_next.pop_front();
            match fail {
                Some(Fail::RateLimited(secs)) => {
                    return Response::builder()
                        .status(429)
                        .header("content-type", "application/json")
                        .header("retry-after", format!("{}", secs.ceil() as u64))
                        .header("x-ratelimit-limit", "5")
                        .header("x-ratelimit-remaining", "0")
                        .header("x-ratelimit-reset-after", format!("{secs:.3}"))
                        .header("x-ratelimit-bucket", "abcd1234")
                        .header("x-ratelimit-scope", "user")
                        .body(Full::new(Bytes::from(
                            json!({"message": "You are being rate limited.", "retry_after": secs, "global": false})
                                .to_string(),
                        )))
                        .unwrap();
                }
                Some(Fail::Forbidden) => return api_error(403, 50001, "Missing Access"),
                Some(Fail::UnknownChannel) => return api_error(404, 10003, "Unknown Channel"),
                _ => {}
            }
            let content = params["content"].as_str().unwrap_or_default().to_owned();
            if content.is_empty() {
                return api_error(400, 50006, "Cannot send an empty message");
            }
            if content.chars().count() > 2000 {
                return reply(
                    400,
                    json!({"code": 50035, "message": "Invalid Form Body",
                    "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}}),
                );
            }
            let nonce = match &params["nonce"] {
                Value::String(n) => Some(n.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            if params["enforce_nonce"] == true
                && let Some(m) = nonce.as_ref().and_then(|n| s.nonces.get(n))
            {
                return reply(200, m.clone());
            }
            let id = s.snowflake();
            let mut m = json!({
                "id": id, "channel_id": channel, "type": 0, "content": content,
                "author": {"id": BOT_ID, "username": BOT_NAME, "discriminator": "0", "bot": true, "avatar": null},
                "timestamp": "2026-01-01T00:00:00.000000+00:00", "edited_timestamp": null,
                "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
                "attachments": [], "embeds": [], "pinned": false, "nonce": nonce,
            });
            if let Some(g) = s.guild_channels.get(&channel) {
                m["guild_id"] = json!(g);
            }
            if let Some(n) = &nonce {
                s.nonces.insert(n.clone(), m.clone());
            }
            s.sent.push(Sent {
                channel_id: channel,
                content,
                id,
            });
            // The bot's own message comes back to it on the gateway.
            if !s.sessions.is_empty() {
                s.dispatch("MESSAGE_CREATE", m.clone());
            }
            if matches!(fail, Some(Fail::CreatedThen502)) {
                return reply(502, json!({"message": "Bad Gateway"}));
            }
            reply(200, m)
        }
        _ => api_error(404, 0, "404: Not Found"),
    }
}
