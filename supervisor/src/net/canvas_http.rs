//! The canvas over HTTP (`crate::canvas` holds the files and capabilities).
//!
//! * v4, on the gateway port, under the reference's paths: `/__openclaw__/canvas/<file>`
//!   (the canvas folder; the reference's documents live at `documents/<id>/…` inside it)
//!   and `/__openclaw__/a2ui/` (Switchboard's A2UI host page). Authorized by the gateway
//!   token or password as a bearer token, or by a live capability, carried as the path
//!   prefix `/__openclaw__/cap/<cap>/…` or the query parameter `oc_cap`; otherwise `401`
//!   in the reference's JSON.
//! * v3, on its own port (`gateway.canvasHost.port`, default 18793, the gateway's bind
//!   and TLS): `/__clawdbot__/canvas/<file>` and `/__clawdbot__/a2ui/`. A loopback client
//!   is served as the reference serves everyone; any other needs the bearer token or a
//!   capability (its `hello-ok.canvasHostUrl` carries one).
//!
//! Files come from `static_files::lookup` (no `..`, no links out, no listings); every
//! answer carries `nosniff`, `no-referrer` and a `Permissions-Policy`; canvas pages a
//! sandboxing CSP (an opaque origin: an agent-written page can read nothing of the
//! gateway's origin, such as a Control UI's stored token, and can connect nowhere).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::http::{Head, Response};
use crate::app::App;

pub const V4_CANVAS: &str = "/__openclaw__/canvas";
pub const V4_A2UI: &str = "/__openclaw__/a2ui";
pub const V3_CANVAS: &str = "/__clawdbot__/canvas";
pub const V3_A2UI: &str = "/__clawdbot__/a2ui";
/// The capability path prefix: `/__openclaw__/cap/<cap>/<canonical path>`.
pub const CAP_PREFIX: &str = "/__openclaw__/cap/";
/// The capability query parameter.
pub const CAP_QUERY: &str = "oc_cap";

const A2UI_INDEX: &str = include_str!("../../canvas/a2ui/index.html");
const A2UI_JS: &str = include_str!("../../canvas/a2ui/a2ui.js");
const A2UI_CSS: &str = include_str!("../../canvas/a2ui/a2ui.css");

/// Agent-written pages: their own scripts and styles (inline too: an agent writes one
/// file), images and media from the canvas or inline data; no connections, no plugins,
/// no forms, no `<base>`, framed only by the same origin; and sandboxed into an opaque
/// origin.
pub const CANVAS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' data: blob:; \
    font-src 'self' data:; connect-src 'none'; object-src 'none'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'self'; sandbox allow-scripts";
/// The A2UI host page: only its own script and style; images from the canvas, inline
/// data or https (A2UI `Image` components name URLs); nothing else.
pub const A2UI_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: https:; connect-src 'none'; object-src 'none'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'self'";
const PERMISSIONS_POLICY: &str = "camera=(), microphone=(), geolocation=()";

/// Which listener a request came in on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Port {
    Gateway,
    V3Canvas,
}

/// A request path with its capability prefix taken off.
#[derive(Debug, PartialEq, Eq)]
pub enum Scoped<'a> {
    /// No prefix.
    Plain(&'a str),
    /// `/__openclaw__/cap/<cap>/<rest>`: the capability and `/<rest>`.
    Cap(&'a str, &'a str),
    /// The prefix without a capability or without a path after it.
    Malformed,
}

pub fn strip_capability(path: &str) -> Scoped<'_> {
    let Some(rest) = path.strip_prefix(CAP_PREFIX) else {
        return Scoped::Plain(path);
    };
    match rest.find('/') {
        Some(0) | None => Scoped::Malformed,
        Some(i) => Scoped::Cap(&rest[..i], &rest[i..]),
    }
}

/// `oc_cap` from a query string.
fn query_capability(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix(CAP_QUERY)?.strip_prefix('='))
        .filter(|c| !c.is_empty())
}

/// Whether a path is a canvas route of that port.
pub fn is_canvas_path(path: &str, port: Port) -> bool {
    let (canvas, a2ui) = prefixes(port);
    under(path, canvas).is_some() || under(path, a2ui).is_some()
}

fn prefixes(port: Port) -> (&'static str, &'static str) {
    match port {
        Port::Gateway => (V4_CANVAS, V4_A2UI),
        Port::V3Canvas => (V3_CANVAS, V3_A2UI),
    }
}

/// The rest of `path` under `prefix` (`""` for the prefix itself), if it is under it.
fn under<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

fn with_policy(mut r: Response) -> Response {
    r.extra_headers
        .push(("Referrer-Policy", "no-referrer".into()));
    r.extra_headers
        .push(("Permissions-Policy", PERMISSIONS_POLICY.into()));
    r
}

/// The reference's `401` (`sendGatewayAuthFailure`).
pub fn unauthorized() -> Response {
    let mut r = Response::json(
        401,
        &serde_json::json!({"error": {"message": "Unauthorized", "type": "unauthorized"}}),
    );
    r.content_type = "application/json; charset=utf-8";
    with_policy(r)
}

/// Answers a canvas route (`path` already without a capability prefix; `cap` the one
/// presented by prefix, if any). `None`: not a canvas route.
pub async fn route(
    app: &App,
    head: &Head,
    path: &str,
    cap: Option<&str>,
    port: Port,
    local: bool,
) -> Option<Response> {
    let (canvas, a2ui) = prefixes(port);
    let (in_canvas, rest) = match (under(path, canvas), under(path, a2ui)) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return None,
    };
    let cap = cap.or_else(|| query_capability(head.query.as_deref()));
    let allowed = (port == Port::V3Canvas && local)
        || super::http::authorized(app, head)
        || cap.is_some_and(|c| app.canvas.caps.check(c));
    if !allowed {
        return Some(unauthorized());
    }
    let response = if in_canvas {
        canvas_file(app, rest).await
    } else {
        a2ui_asset(rest)
    };
    Some(with_policy(response))
}

async fn canvas_file(app: &App, rest: &str) -> Response {
    use super::static_files::{Lookup, lookup};
    let Some(root) = app.canvas.root() else {
        return Response::text(
            404,
            "the canvas is turned off (gateway.canvasHost.enabled: false)\n",
        );
    };
    let (file, content_type) = match lookup(root, rest) {
        Lookup::File(file, ty) => (file, ty),
        Lookup::NotFound => return Response::text(404, "not found\n"),
        Lookup::Refused => return Response::text(400, "bad path\n"),
    };
    match tokio::fs::read(&file).await {
        Ok(body) => {
            let mut r = Response {
                status: 200,
                content_type,
                body,
                extra_headers: Vec::new(),
            };
            if content_type.starts_with("text/html") || content_type.starts_with("image/svg") {
                r.extra_headers
                    .push(("Content-Security-Policy", CANVAS_CSP.into()));
            }
            r
        }
        Err(e) => {
            tracing::debug!(file = %file.display(), error = %e, "reading a canvas file failed");
            Response::text(404, "not found\n")
        }
    }
}

fn a2ui_asset(rest: &str) -> Response {
    let (body, content_type) = match rest {
        "" | "/" | "/index.html" => (A2UI_INDEX, "text/html; charset=utf-8"),
        // `a2ui.bundle.js`: the name the reference's pages load.
        "/a2ui.js" | "/a2ui.bundle.js" => (A2UI_JS, "text/javascript; charset=utf-8"),
        "/a2ui.css" => (A2UI_CSS, "text/css; charset=utf-8"),
        _ => return Response::text(404, "not found\n"),
    };
    let mut r = Response {
        status: 200,
        content_type,
        body: body.as_bytes().to_vec(),
        extra_headers: Vec::new(),
    };
    if content_type.starts_with("text/html") {
        r.extra_headers
            .push(("Content-Security-Policy", A2UI_CSP.into()));
    }
    r
}

/// The v3 canvas port's service (behind the gateway's TLS when it has TLS): each
/// connection is one request, a canvas route or a 404; never a WebSocket.
#[derive(Clone, Copy)]
pub struct V3CanvasPort;

impl super::accept::Service for V3CanvasPort {
    async fn serve<S: super::conn::Transport>(self, app: Arc<App>, stream: S, peer: SocketAddr) {
        one_request(&app, stream, peer).await
    }
}

async fn one_request<S>(app: &App, mut stream: S, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = match tokio::time::timeout(
        app.config.handshake_timeout,
        super::http::read_head(&mut stream),
    )
    .await
    {
        Ok(Ok((head, _))) => head,
        Ok(Err(e)) => {
            super::http::refuse_head(&mut stream, &e).await;
            return;
        }
        Err(_) => return,
    };
    let local = peer.ip().is_loopback() && !head.is_proxied();
    let response = if head.method != "GET" && head.method != "HEAD" {
        let mut r = Response::text(405, "only GET and HEAD are served here\n");
        r.extra_headers.push(("Allow", "GET, HEAD".into()));
        r
    } else {
        let (path, cap) = match strip_capability(&head.path) {
            Scoped::Plain(p) => (p, None),
            Scoped::Cap(c, p) => (p, Some(c)),
            Scoped::Malformed => ("", None),
        };
        match route(app, &head, path, cap, Port::V3Canvas, local).await {
            Some(r) => r,
            None if path.is_empty() => unauthorized(),
            None => with_policy(Response::text(
                404,
                "not found: this port serves the canvas at /__clawdbot__/canvas/ and A2UI at /__clawdbot__/a2ui/\n",
            )),
        }
    };
    tracing::debug!(%peer, method = %head.method, path = %head.path, status = response.status, "canvas http");
    let _ = stream
        .write_all(&response.encode(head.method == "HEAD"))
        .await;
    let _ = stream.shutdown().await;
}

/// The canvas URL a connection's `hello-ok` names: `scheme://host[:port]` from the
/// `Host` the client used (its port kept, as the reference does for v4), or the bind
/// address when it sent none usable.
pub fn origin(host_header: Option<&str>, tls: bool, fallback_port: u16) -> String {
    let scheme = if tls { "https" } else { "http" };
    match host_header.map(str::trim).filter(|h| valid_host(h)) {
        Some(h) => format!("{scheme}://{h}"),
        None => format!("{scheme}://127.0.0.1:{fallback_port}"),
    }
}

/// `scheme://hostname:port` with the port replaced (v3's separate canvas port).
pub fn origin_with_port(host_header: Option<&str>, tls: bool, port: u16) -> String {
    let scheme = if tls { "https" } else { "http" };
    let name = host_header
        .map(str::trim)
        .filter(|h| valid_host(h))
        .map(hostname)
        .unwrap_or("127.0.0.1");
    format!("{scheme}://{name}:{port}")
}

/// A `Host` value safe to put in a URL: a name, an IPv4 address or a bracketed IPv6
/// one, with an optional port; nothing else (no user info, path or spaces).
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
        && (h.starts_with('[') == h.contains(']'))
}

/// The host name of a `Host` value, without its port (`[::1]:80` → `[::1]`).
fn hostname(h: &str) -> &str {
    if h.starts_with('[') {
        return h.find(']').map(|i| &h[..=i]).unwrap_or(h);
    }
    h.rsplit_once(':').map(|(name, _)| name).unwrap_or(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capability_prefix_is_taken_off_or_refused() {
        assert_eq!(
            strip_capability("/__openclaw__/cap/abc/__openclaw__/canvas/x.html"),
            Scoped::Cap("abc", "/__openclaw__/canvas/x.html")
        );
        assert_eq!(strip_capability("/__openclaw__/cap/abc"), Scoped::Malformed);
        assert_eq!(strip_capability("/__openclaw__/cap//x"), Scoped::Malformed);
        assert_eq!(strip_capability("/__openclaw__/cap/"), Scoped::Malformed);
        assert_eq!(strip_capability("/healthz"), Scoped::Plain("/healthz"));
        assert_eq!(query_capability(Some("a=1&oc_cap=xyz")), Some("xyz"));
        assert_eq!(query_capability(Some("oc_cap=")), None);
        assert_eq!(query_capability(Some("oc_capx=1")), None);
    }

    #[test]
    fn canvas_routes_are_exactly_the_prefixes() {
        assert!(is_canvas_path("/__openclaw__/canvas", Port::Gateway));
        assert!(is_canvas_path(
            "/__openclaw__/canvas/a/b.html",
            Port::Gateway
        ));
        assert!(is_canvas_path("/__openclaw__/a2ui/", Port::Gateway));
        assert!(!is_canvas_path("/__openclaw__/canvasX", Port::Gateway));
        assert!(!is_canvas_path("/__clawdbot__/canvas/", Port::Gateway));
        assert!(is_canvas_path("/__clawdbot__/canvas/", Port::V3Canvas));
    }

    #[test]
    fn origins_come_from_a_valid_host_header_only() {
        assert_eq!(
            origin(Some("127.0.0.1:18789"), false, 1),
            "http://127.0.0.1:18789"
        );
        assert_eq!(origin(Some("[::1]:18789"), true, 1), "https://[::1]:18789");
        assert_eq!(
            origin(Some("evil.example/x?y"), false, 7),
            "http://127.0.0.1:7"
        );
        assert_eq!(origin(None, false, 7), "http://127.0.0.1:7");
        assert_eq!(
            origin_with_port(Some("[::1]:18789"), false, 18793),
            "http://[::1]:18793",
            "not the reference's [[::1]]"
        );
        assert_eq!(
            origin_with_port(Some("gw.example:9999"), false, 18793),
            "http://gw.example:18793"
        );
        assert_eq!(
            origin_with_port(Some("localhost"), false, 5),
            "http://localhost:5"
        );
    }
}
