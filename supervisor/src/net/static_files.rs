//! Files of one folder served read-only over HTTP: an installed Control UI
//! (`gateway.controlUi.root`).
//!
//! Invariants: nothing outside the folder is ever read — the request path is
//! percent-decoded once, any `..` segment, backslash, NUL or drive-like segment is
//! refused, and the file actually opened is checked again after symlinks are resolved
//! (a link out of the folder is a 404, as is a missing file); no directory is ever
//! listed; every file goes out with the content type its extension says and `nosniff`.

use std::path::{Component, Path, PathBuf};

/// The largest file served (a UI bundle is a few MB).
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// What a request path resolved to.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A regular file inside the folder: its canonical path and content type.
    File(PathBuf, &'static str),
    /// Nothing to serve there (missing, a folder, outside, or too big).
    NotFound,
    /// A path no file can have (`..`, encoded or not; NUL; a backslash).
    Refused,
}

/// `%XX` decoded once; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A path no file inside the folder can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutsidePath;

/// The relative path a request path names under the folder, or why not.
pub fn relative(request_path: &str) -> Result<PathBuf, OutsidePath> {
    let decoded = percent_decode(request_path).ok_or(OutsidePath)?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return Err(OutsidePath);
    }
    let mut rel = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(OutsidePath),
            s => {
                // One normal component each: nothing that a platform reads as a root.
                let mut parts = Path::new(s).components();
                match (parts.next(), parts.next()) {
                    (Some(Component::Normal(_)), None) => rel.push(s),
                    _ => return Err(OutsidePath),
                }
            }
        }
    }
    Ok(rel)
}

/// Finds `request_path` under `root` (canonical). A folder is served by its
/// `index.html`, never listed.
pub fn lookup(root: &Path, request_path: &str) -> Lookup {
    let Ok(rel) = relative(request_path) else {
        return Lookup::Refused;
    };
    let mut path = root.join(&rel);
    if path.is_dir() {
        path.push("index.html");
    }
    // Symlinks resolved: the file must still be inside the folder.
    let Ok(real) = path.canonicalize() else {
        return Lookup::NotFound;
    };
    if !real.starts_with(root) {
        return Lookup::NotFound;
    }
    match real.metadata() {
        Ok(m) if m.is_file() && m.len() <= MAX_FILE_BYTES => {
            let ty = content_type(&real);
            Lookup::File(real, ty)
        }
        _ => Lookup::NotFound,
    }
}

/// Whether a path that names no file is a route of the single-page app (no extension in
/// its last segment) and so gets `index.html`, rather than a missing asset (a 404).
pub fn is_app_route(request_path: &str) -> bool {
    let last = request_path.rsplit('/').next().unwrap_or_default();
    !last.contains('.')
}

/// The content type by extension; unknown types are `application/octet-stream` (with
/// `nosniff`, a browser will not run them).
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

/// The Control UI's Content-Security-Policy, as the reference serves it: its own scripts
/// (and the page's inline ones by hash), styles, images and fonts; connections to this
/// gateway (`ws:`/`wss:`); no objects, no framing, no `<base>`.
pub fn control_ui_csp(index_html: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let mut scripts = vec!["'self'".to_owned()];
    let mut rest = index_html;
    while let Some(open) = rest.find("<script") {
        let after = &rest[open..];
        let Some(tag_end) = after.find('>') else {
            break;
        };
        let tag = &after[..tag_end];
        let body = &after[tag_end + 1..];
        let Some(close) = body.find("</script>") else {
            break;
        };
        if !tag.contains(" src=") && !body[..close].is_empty() {
            let digest = Sha256::digest(&body.as_bytes()[..close]);
            scripts.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        rest = &body[close..];
    }
    format!(
        "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; \
         script-src {}; style-src 'self' 'unsafe-inline' https://fonts.googleapis.com; \
         img-src 'self' data: blob: https:; media-src 'self' data: blob:; \
         font-src 'self' https://fonts.gstatic.com; worker-src 'self'; \
         connect-src 'self' ws: wss: data:",
        scripts.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("ui");
        std::fs::create_dir_all(root.join("assets/sub")).unwrap();
        std::fs::write(root.join("index.html"), "<html></html>").unwrap();
        std::fs::write(root.join("assets/app.js"), "x").unwrap();
        std::fs::write(root.join("assets/sub/index.html"), "sub").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        let root = root.canonicalize().unwrap();
        (dir, root)
    }

    #[test]
    fn files_inside_are_served_with_their_type_and_nothing_outside_is() {
        let (_dir, root) = folder();
        assert_eq!(
            lookup(&root, "/assets/app.js"),
            Lookup::File(root.join("assets/app.js"), "text/javascript; charset=utf-8")
        );
        assert_eq!(
            lookup(&root, "/"),
            Lookup::File(root.join("index.html"), "text/html; charset=utf-8")
        );
        // A folder is its index.html, never a listing; a folder without one is nothing.
        assert_eq!(
            lookup(&root, "/assets/sub/"),
            Lookup::File(
                root.join("assets/sub/index.html"),
                "text/html; charset=utf-8"
            )
        );
        assert_eq!(lookup(&root, "/assets"), Lookup::NotFound);
        assert_eq!(
            lookup(&root, "/assets/%61pp.js"),
            lookup(&root, "/assets/app.js")
        );
        for refused in [
            "/../secret.txt",
            "/assets/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/assets%2f..%2f..%2fsecret.txt",
            "/..%5csecret.txt",
            "/a%00b",
            "/%zz",
            "/%c0%ae%c0%ae/secret.txt",
        ] {
            assert_eq!(lookup(&root, refused), Lookup::Refused, "{refused}");
        }
        // Symlinks out of the folder, and absolute paths inside the request, lead nowhere.
        assert_eq!(lookup(&root, "/link.txt"), Lookup::NotFound);
        assert_eq!(lookup(&root, "/up/secret.txt"), Lookup::NotFound);
        assert_eq!(lookup(&root, "//etc/passwd"), Lookup::NotFound);
        assert_eq!(lookup(&root, "/%2fetc%2fpasswd"), Lookup::NotFound);
        assert_eq!(lookup(&root, "/missing.js"), Lookup::NotFound);
    }

    #[test]
    fn app_routes_are_told_from_missing_assets() {
        assert!(is_app_route("/chat"));
        assert!(is_app_route("/settings/config"));
        assert!(!is_app_route("/assets/missing.js"));
    }

    #[test]
    fn the_csp_hashes_inline_scripts_only() {
        let csp =
            control_ui_csp("<script>boot()</script><script type=module src=\"/a.js\"></script>");
        assert_eq!(csp.matches("'sha256-").count(), 1, "{csp}");
        assert!(csp.contains("connect-src 'self' ws: wss:"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
}
