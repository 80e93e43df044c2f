//! A small WebSocket client for the CLI's commands that talk to a running gateway.
//! It connects as a protocol-v4 `cli` client with the shared token. Every frame it sends is
//! built from the typed params in `switchboard_schemas`, so it cannot send one the
//! schema would refuse.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::Value;
use switchboard_schemas::connect::{
    ClientInfo, ConnectAuth, ConnectParams, NonEmpty, ResumeRequest,
};
use switchboard_schemas::frames::RequestFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::VERSION;

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach the gateway at {url}: {reason}. Is it running? Start it with `switchboard gateway run` \
         (or pass --url for another one)"
    )]
    Unreachable { url: String, reason: String },
    #[error("the gateway refused the connection: {0}{hint}", hint = refused_hint(.0))]
    Refused(String),
    #[error("{method} failed: {code}: {message}")]
    Call {
        method: String,
        code: String,
        message: String,
    },
    #[error("the gateway closed the connection; its log says why: `switchboard logs --local`")]
    Closed,
    #[error(
        "timed out waiting for the gateway; is it busy or stuck? `switchboard gateway status` checks"
    )]
    Timeout,
}

/// What to do after a refusal, by its reason.
fn refused_hint(reason: &str) -> &'static str {
    if reason.starts_with("unauthorized") {
        ". Pass the gateway's token with --token or SWITCHBOARD_GATEWAY_TOKEN \
         (on the gateway's host, `switchboard gateway token` prints it)"
    } else if reason.starts_with("pairing required") {
        ". Approve this device on the gateway's host: `switchboard devices list`, then `switchboard devices approve <requestId>`"
    } else {
        ""
    }
}

/// What the CLI presents: the shared token, else the password.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub token: Option<crate::secret::Secret>,
    pub password: Option<crate::secret::Secret>,
}

pub struct Client {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
    /// How long to wait for the gateway's next frame.
    timeout: Duration,
    /// The `hello-ok` payload.
    pub hello: Value,
}

impl Client {
    /// Connects; with `pin`, a `wss://` URL must present exactly that certificate.
    pub async fn connect(
        url: &str,
        auth: &Credentials,
        pin: Option<&str>,
        scopes: &[&str],
    ) -> Result<Client, ClientError> {
        Client::connect_resuming(url, auth, pin, scopes, None).await
    }

    /// Connects; with `resume`, asks for (`{}`) or resumes a resumable event session
    /// (`hello.resume` says which: `docs/resume.md`).
    pub async fn connect_resuming(
        url: &str,
        auth: &Credentials,
        pin: Option<&str>,
        scopes: &[&str],
        resume: Option<ResumeRequest>,
    ) -> Result<Client, ClientError> {
        let unreachable = |reason: String| ClientError::Unreachable {
            url: url.to_owned(),
            reason,
        };
        let connector = match pin {
            Some(pin) if url.starts_with("wss://") => Some(tokio_tungstenite::Connector::Rustls(
                crate::net::tls::pinned_client_config(pin)
                    .map_err(|e| unreachable(e.to_string()))?,
            )),
            Some(_) => return Err(unreachable("--tls-fingerprint needs a wss:// URL".into())),
            None => None,
        };
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector);
        let (ws, _) = tokio::time::timeout(TIMEOUT, connecting)
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let mut c = Client {
            ws,
            next: 0,
            timeout: TIMEOUT,
            hello: Value::Null,
        };
        // The challenge comes first; a token-only CLI does not sign it.
        c.read().await?;
        let auth = match (&auth.token, &auth.password) {
            (Some(t), _) => Some(ConnectAuth {
                token: Some(t.expose().to_owned()),
                ..Default::default()
            }),
            (None, Some(p)) => Some(ConnectAuth {
                password: Some(p.expose().to_owned()),
                ..Default::default()
            }),
            (None, None) => None,
        };
        let params = ConnectParams {
            min_protocol: 4,
            max_protocol: 4,
            client: ClientInfo {
                id: "cli".into(),
                version: VERSION.into(),
                platform: std::env::consts::OS.into(),
                mode: "cli".into(),
                ..Default::default()
            },
            scopes: Some(scopes.iter().map(|s| NonEmpty((*s).to_owned())).collect()),
            auth,
            resume,
            ..Default::default()
        };
        let res = c.call_raw("connect", &params).await?;
        if res["ok"] != true {
            return Err(ClientError::Refused(
                res["error"]["message"]
                    .as_str()
                    .unwrap_or("refused")
                    .to_owned(),
            ));
        }
        c.hello = res["payload"].clone();
        Ok(c)
    }

    /// The next event frame (responses and anything else are skipped), waiting up to
    /// the timeout (set it past the gateway's tick interval to notice a dead link).
    pub async fn next_event(&mut self) -> Result<Value, ClientError> {
        loop {
            let v = self.read().await?;
            if v["type"] == "event" {
                return Ok(v);
            }
        }
    }

    async fn read(&mut self) -> Result<Value, ClientError> {
        loop {
            let msg = tokio::time::timeout(self.timeout, self.ws.next())
                .await
                .map_err(|_| ClientError::Timeout)?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(v) = serde_json::from_str(t.as_str()) {
                        return Ok(v);
                    }
                }
                Some(Ok(Message::Close(f))) => {
                    // Normal closes, going away and restarts are the link ending, not
                    // a refusal of this client.
                    let ended = |c: u16| matches!(c, 1000 | 1001 | 1006 | 1012 | 1013);
                    return Err(match f {
                        Some(f) if !f.reason.is_empty() && !ended(u16::from(f.code)) => {
                            ClientError::Refused(f.reason.to_string())
                        }
                        _ => ClientError::Closed,
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Err(ClientError::Closed),
            }
        }
    }

    async fn call_raw<P: Serialize>(
        &mut self,
        method: &str,
        params: &P,
    ) -> Result<Value, ClientError> {
        self.next += 1;
        let id = format!("cli-{}", self.next);
        let params = serde_json::to_value(params).map_err(|e| ClientError::Call {
            method: method.to_owned(),
            code: "INVALID_REQUEST".to_owned(),
            message: e.to_string(),
        })?;
        let frame = RequestFrame {
            kind: "req".to_owned(),
            id: id.clone(),
            method: method.to_owned(),
            params: Some(params),
            traceparent: None,
            expected_profile_id: None,
        };
        let text = serde_json::to_string(&frame).map_err(|_| ClientError::Closed)?;
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|_| ClientError::Closed)?;
        loop {
            let v = self.read().await?;
            if v["type"] == "res" && v["id"] == id {
                return Ok(v);
            }
        }
    }

    /// Waits up to `t` for answers from now on (for calls that take long by design).
    pub fn set_timeout(&mut self, t: Duration) {
        self.timeout = t;
    }

    /// Calls `method` with its typed params; the payload, or the error the gateway gave.
    pub async fn call<P: Serialize>(
        &mut self,
        method: &str,
        params: &P,
    ) -> Result<Value, ClientError> {
        let res = self.call_raw(method, params).await?;
        if res["ok"] == true {
            Ok(res["payload"].clone())
        } else {
            Err(ClientError::Call {
                method: method.to_owned(),
                code: res["error"]["code"]
                    .as_str()
                    .unwrap_or("UNKNOWN")
                    .to_owned(),
                message: res["error"]["message"].as_str().unwrap_or("").to_owned(),
            })
        }
    }
}
