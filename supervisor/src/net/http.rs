//! Plain HTTP on the gateway port, beside the WebSocket: `/metrics` (Prometheus),
//! `/healthz`, and whatever else is served over HTTP.
//!
//! Every connection starts with an HTTP request head, read here (bounded in size and
//! time). A WebSocket upgrade is handed on to tungstenite with the bytes already read
//! replayed in front of the socket ([`Prefixed`]); anything else is answered here and
//! closed (`Connection: close`). Nothing but the head is ever buffered.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::app::App;

/// Largest request head accepted (browsers send a few KiB at most).
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: Option<String>,
    headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A WebSocket upgrade request (`Upgrade: websocket`).
    pub fn is_websocket(&self) -> bool {
        self.header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
    }

    /// A proxy forwarded someone else's request (so a loopback peer is not local).
    pub fn is_proxied(&self) -> bool {
        self.header("x-forwarded-for").is_some() || self.header("x-real-ip").is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("connection closed before a request head")]
    Closed,
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one request head. Returns it and every byte read (the head and anything the
/// client sent after it), for replay.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> Result<(Head, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let target = req.path.unwrap_or("/");
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                    None => (target.to_owned(), None),
                };
                let head = Head {
                    method: req.method.unwrap_or("GET").to_owned(),
                    path,
                    query,
                    headers: req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                };
                return Ok((head, buf));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Malformed(e.to_string())),
        }
    }
}

/// Answers a request head that could not be read: `400` for a malformed one, `431` for
/// one over [`MAX_HEAD`]; nothing for a connection that closed first.
pub async fn refuse_head<S: AsyncWrite + Unpin>(stream: &mut S, e: &HeadError) {
    let (status, reason, body) = match e {
        HeadError::Malformed(_) => (400, "Bad Request", "malformed HTTP request head\n"),
        HeadError::TooLarge => (
            431,
            "Request Header Fields Too Large",
            "the request head is over 16 KiB\n",
        ),
        HeadError::Closed | HeadError::Io(_) => return,
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A stream that first yields bytes already read from it, and gathers what is written
/// to it until the next flush, so that a message sent as many WebSocket frames (a large
/// `hello-ok` or presence list, as 4 KiB fragments) reaches the socket in one write rather
/// than one system call per frame. The gathering buffer exists only while a write is in
/// progress: a flush empties and frees it, so an idle connection holds none. At most
/// [`GATHER_MAX`] bytes wait; past that they are written before more are taken.
pub struct Prefixed<S> {
    prefix: Option<Box<[u8]>>,
    pos: usize,
    inner: S,
    out: Vec<u8>,
}

/// The most bytes [`Prefixed`] gathers before it writes them out.
pub const GATHER_MAX: usize = 64 * 1024;
/// Writes of a whole fragment or more (`net::outgoing::FRAGMENT`, here with its header)
/// start gathering; shorter ones with nothing gathered go straight out.
const GATHER_FROM: usize = crate::net::outgoing::FRAGMENT;

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Prefixed<S> {
        Prefixed {
            prefix: (!prefix.is_empty()).then(|| prefix.into_boxed_slice()),
            pos: 0,
            inner,
            out: Vec::new(),
        }
    }
}

impl<S: AsyncWrite + Unpin> Prefixed<S> {
    /// Writes out what was gathered; the buffer is freed once it is all written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut written = 0;
        while written < self.out.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.out[written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.out.drain(..written);
                    return Poll::Pending;
                }
            }
        }
        self.out = Vec::new();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(prefix) = &this.prefix {
            let rest = &prefix[this.pos..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            if this.pos == prefix.len() {
                this.prefix = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        // A small message on its own (nothing gathered yet, less than one fragment) goes
        // straight to the socket: only the fragments of a large message are gathered.
        if this.out.is_empty() && buf.len() < GATHER_FROM {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.out.len() + buf.len() > GATHER_MAX {
            std::task::ready!(this.poll_drain(cx))?;
            if buf.len() >= GATHER_MAX {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            }
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An HTTP response.
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub extra_headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
            extra_headers: Vec::new(),
        }
    }

    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: body.to_string().into_bytes(),
            extra_headers: Vec::new(),
        }
    }

    fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Payload Too Large",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Error",
        }
    }

    pub(super) fn encode(&self, head_only: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
             X-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            self.reason(),
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.extra_headers {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if !head_only {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// Answers a request head that was not a WebSocket upgrade, then closes.
pub async fn serve<S: AsyncWrite + Unpin>(app: &App, head: &Head, mut stream: S, peer: SocketAddr) {
    app.metrics
        .http_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let local = peer.ip().is_loopback() && !head.is_proxied();
    let response = route(app, head, local, peer).await;
    tracing::debug!(%peer, method = %head.method, path = %head.path, status = response.status, "http");
    let _ = stream
        .write_all(&response.encode(head.method == "HEAD"))
        .await;
    let _ = stream.shutdown().await;
}

/// The WebChat page: one file, everything inline.
const WEBCHAT: &str = include_str!("../../webchat/index.html");

/// The page's Content-Security-Policy: only its own inline script and style (by hash),
/// only connections to this gateway, no frames, no other origins.
fn webchat_csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine;
        use sha2::{Digest, Sha256};
        let inline = |open: &str, close: &str| {
            let start = WEBCHAT.find(open).map(|i| i + open.len()).unwrap_or(0);
            let end = WEBCHAT[start..].find(close).map(|i| start + i).unwrap_or(start);
            let digest = Sha256::digest(&WEBCHAT.as_bytes()[start..end]);
            format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            )
        };
        format!(
            "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src 'self' data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            inline("<script>", "</script>"),
            inline("<style>", "</style>")
        )
    })
}

/// Whether the page may carry the gateway token: asked for from this host, by this
/// process's own OS user, under this gateway's own loopback name (not a name that a DNS
/// rebinding attack pointed here). A page of another origin cannot read the answer (the
/// browser's same-origin rule), and a request under a foreign `Host` does not get it.
fn hand_token_to(app: &App, head: &Head, local: bool, peer: SocketAddr) -> bool {
    let own_host = head.header("host").is_some_and(|h| {
        let h = h.trim();
        crate::config::channel::is_loopback_host(h)
            && (h.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()) == Some(app.port))
    });
    if !local || !own_host {
        return false;
    }
    // macOS cannot tell the account behind a loopback socket without privileges; there
    // the page is handed the token on loopback alone (README: who may connect).
    crate::auth::local_peer::same_user(peer, app.port).unwrap_or(cfg!(target_os = "macos"))
}

/// The WebChat page, with the token in a `<meta>` when it may carry it.
fn webchat_page(token: Option<&str>) -> Vec<u8> {
    match token {
        Some(t) => WEBCHAT
            .replacen(
                "<head>",
                &format!(
                    "<head>\n<meta name=\"switchboard-token\" content=\"{}\">",
                    html_attr(t)
                ),
                1,
            )
            .into_bytes(),
        None => WEBCHAT.as_bytes().to_vec(),
    }
}

fn html_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// Switchboard's protocol extensions, for a client to find before it uses one
/// (`docs/resume.md`): the reference gateways answer 404 here.
pub const EXTENSIONS_PATH: &str = "/__switchboard__/extensions";

async fn route(app: &App, head: &Head, local: bool, peer: SocketAddr) -> Response {
    if head.method != "GET" && head.method != "HEAD" {
        let mut r = Response::text(405, "only GET and HEAD are served here\n");
        r.extra_headers.push(("Allow", "GET, HEAD".into()));
        return r;
    }
    // The canvas (v4 paths; `canvas_http`), with or without a capability prefix. Any
    // other path under the prefix is a request as if the prefix were not there, as the
    // reference rewrites it.
    use super::canvas_http::{Port, Scoped, strip_capability};
    let (path, cap) = match strip_capability(head.path.as_str()) {
        Scoped::Plain(p) => (p, None),
        Scoped::Cap(c, p) => (p, Some(c)),
        // The reference answers a capability prefix without a capability or a path 401.
        Scoped::Malformed => return super::canvas_http::unauthorized(),
    };
    if let Some(r) = super::canvas_http::route(app, head, path, cap, Port::Gateway, local).await {
        return r;
    }
    // With a Control UI at `/`, WebChat moves to `/webchat` (the UIs route `/chat`).
    let webchat_paths: &[&str] = if app.config.control_ui_root.is_some() {
        &["/webchat"]
    } else {
        &["/", "/chat", "/index.html"]
    };
    if let Some(root) = &app.config.control_ui_root
        && !webchat_paths.contains(&path)
        && path != "/healthz"
        && path != EXTENSIONS_PATH
        && !(path == "/metrics" && app.config.metrics)
    {
        return control_ui(root, path).await;
    }
    match path {
        p if webchat_paths.contains(&p) => {
            let token = hand_token_to(app, head, local, peer)
                .then(|| app.config.auth.token.as_ref().map(|t| t.expose()))
                .flatten();
            Response {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: webchat_page(token),
                extra_headers: vec![
                    ("Content-Security-Policy", webchat_csp().to_owned()),
                    ("Referrer-Policy", "no-referrer".into()),
                    ("X-Frame-Options", "DENY".into()),
                    ("Cache-Control", "no-store".into()),
                ],
            }
        }
        EXTENSIONS_PATH => {
            let r = &app.config.resume;
            Response::json(
                200,
                &serde_json::json!({"resume": {
                    "version": 1,
                    "maxEvents": r.max_events,
                    "maxBytes": r.max_bytes,
                    "windowMs": r.window.as_millis() as u64,
                }}),
            )
        }
        "/healthz" => match app.db.fault() {
            None => Response::json(
                200,
                &serde_json::json!({"ok": true, "version": crate::VERSION, "uptimeMs": app.uptime_ms()}),
            ),
            Some(fault) => Response::json(
                503,
                &serde_json::json!({
                    "ok": false,
                    "version": crate::VERSION,
                    "uptimeMs": app.uptime_ms(),
                    "error": format!("the database {} cannot record: {}", app.db.path().display(), fault.reason),
                }),
            ),
        },
        "/metrics" if app.config.metrics => {
            if !local && !authorized(app, head) {
                let mut r = Response::text(
                    401,
                    "metrics are served to loopback clients, or with the gateway token as a bearer token\n",
                );
                r.extra_headers
                    .push(("WWW-Authenticate", "Bearer realm=\"switchboard\"".into()));
                return r;
            }
            Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: crate::ops::metrics::render(app).await.into_bytes(),
                extra_headers: Vec::new(),
            }
        }
        _ => Response::text(
            404,
            "not found: the WebChat page is at /, metrics at /metrics; WebSocket clients connect to any path\n",
        ),
    }
}

/// A file of the installed Control UI (`gateway.controlUi.root`); the UI's own routes
/// get its `index.html`.
async fn control_ui(root: &std::path::Path, path: &str) -> Response {
    use super::static_files::{Lookup, is_app_route, lookup};
    let (file, content_type) = match lookup(root, path) {
        Lookup::File(file, ty) => (file, ty),
        Lookup::NotFound if is_app_route(path) => {
            (root.join("index.html"), "text/html; charset=utf-8")
        }
        Lookup::NotFound => return Response::text(404, "not found\n"),
        Lookup::Refused => return Response::text(400, "bad path\n"),
    };
    let body = match tokio::fs::read(&file).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "reading a Control UI file failed");
            return Response::text(404, "not found\n");
        }
    };
    let mut extra_headers = Vec::new();
    if content_type.starts_with("text/html") {
        let csp = super::static_files::control_ui_csp(&String::from_utf8_lossy(&body));
        extra_headers.push(("Content-Security-Policy", csp));
        extra_headers.push(("X-Frame-Options", "DENY".into()));
        extra_headers.push(("Referrer-Policy", "no-referrer".into()));
    }
    Response {
        status: 200,
        content_type,
        body,
        extra_headers,
    }
}

/// `Authorization: Bearer <gateway token or password>`.
pub(super) fn authorized(app: &App, head: &Head) -> bool {
    let Some(presented) = head
        .header("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
    else {
        return false;
    };
    let auth = &app.config.auth;
    auth.token.as_ref().is_some_and(|t| t.matches(presented))
        || auth.password.as_ref().is_some_and(|p| p.matches(presented))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the writes that reach it.
    #[derive(Default)]
    struct Counting {
        writes: usize,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.writes += 1;
            self.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_fragmented_message_is_one_write_and_a_small_one_goes_straight_out() {
        let mut s = Prefixed::new(Vec::new(), Counting::default());
        s.write_all(b"small").await.unwrap();
        assert_eq!(s.inner.writes, 1, "a small message is not held back");
        let fragment = vec![b'x'; GATHER_FROM + 4];
        for _ in 0..15 {
            s.write_all(&fragment).await.unwrap();
        }
        s.write_all(b"last").await.unwrap();
        assert_eq!(s.inner.writes, 1, "fragments wait for the flush");
        s.flush().await.unwrap();
        assert_eq!(s.inner.writes, 2, "one write for the whole message");
        assert_eq!(s.inner.bytes.len(), 5 + 15 * fragment.len() + 4);
        assert_eq!(s.out.capacity(), 0, "nothing is kept after the flush");
    }

    #[tokio::test]
    async fn a_head_is_parsed_and_every_byte_kept_for_replay() {
        let raw = b"GET /chat?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nX-Real-IP: 1.2.3.4\r\n\r\nEXTRA";
        let mut s = &raw[..];
        let (head, bytes) = read_head(&mut s).await.unwrap();
        assert_eq!(head.path, "/chat");
        assert_eq!(head.query.as_deref(), Some("x=1"));
        assert!(head.is_websocket() && head.is_proxied());
        assert_eq!(bytes, raw);
        let mut p = Prefixed::new(bytes, &b"MORE"[..]);
        let mut all = Vec::new();
        p.read_to_end(&mut all).await.unwrap();
        assert!(all.ends_with(b"EXTRAMORE"));
    }

    #[tokio::test]
    async fn oversized_and_garbage_heads_are_refused() {
        let big = vec![b'a'; MAX_HEAD + 10];
        let mut s = &big[..];
        assert!(matches!(
            read_head(&mut s).await,
            Err(HeadError::Malformed(_) | HeadError::TooLarge)
        ));
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.extend(vec![b'a'; MAX_HEAD]);
        let mut s = &long[..];
        assert!(matches!(read_head(&mut s).await, Err(HeadError::TooLarge)));
        let mut s = &b"\x16\x03\x01garbage\r\n\r\n"[..];
        assert!(matches!(
            read_head(&mut s).await,
            Err(HeadError::Malformed(_))
        ));
    }
}
