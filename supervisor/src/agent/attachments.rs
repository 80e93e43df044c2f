//! Attachments of `agent` and `chat.send` (the reference's `{type?, mimeType?, fileName?,
//! content: <base64>}`): checked before anything is recorded, described to the agent.

use serde_json::Value;

use crate::protocol::error::RpcError;

/// Attachments in all (decoded), as `hello-ok.policy.attachments` announces on v4.
pub const ATTACHMENTS_MAX_BYTES: u64 = 5_000_000;

/// One attachment: `{type?, mimeType?, fileName?, content: <base64>}` (the reference's).
pub(super) fn decode_attachment(a: &Value) -> Result<(String, String, Vec<u8>), RpcError> {
    use base64::Engine;
    let content = a["content"].as_str().ok_or_else(|| {
        RpcError::invalid_request("invalid attachment: content must be a base64 string")
    })?;
    let b64 = content
        .split_once(";base64,")
        .map(|x| x.1)
        .unwrap_or(content);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64.trim()))
        .map_err(|_| RpcError::invalid_request("invalid attachment: content is not base64"))?;
    let name = a["fileName"].as_str().unwrap_or("attachment").to_owned();
    let mime = a["mimeType"]
        .as_str()
        .unwrap_or("application/octet-stream")
        .to_owned();
    Ok((name, mime, bytes))
}

/// Refuses attachments that are malformed or too large, before anything is recorded.
pub(super) fn check_attachments(list: &[Value]) -> Result<(), RpcError> {
    let mut total = 0u64;
    for a in list {
        total += decode_attachment(a)?.2.len() as u64;
    }
    if total > ATTACHMENTS_MAX_BYTES {
        return Err(RpcError::invalid_request(format!(
            "attachments too large: {total} bytes, at most {ATTACHMENTS_MAX_BYTES}"
        )));
    }
    Ok(())
}

/// What the agent is told of attachments: text files in full, other files by name (the
/// backends here read text only).
pub(super) fn describe_attachments(list: &[Value]) -> String {
    let mut out = String::new();
    for a in list {
        let Ok((name, mime, bytes)) = decode_attachment(a) else {
            continue;
        };
        let texty = mime.starts_with("text/")
            || matches!(
                mime.as_str(),
                "application/json" | "application/xml" | "application/yaml" | "application/x-yaml"
            );
        match std::str::from_utf8(&bytes) {
            Ok(text) if texty => out.push_str(&format!(
                "\n\n[attachment {name} ({mime}, {} bytes)]\n{text}",
                bytes.len()
            )),
            _ => out.push_str(&format!(
                "\n\n[attachment {name} ({mime}, {} bytes): not shown; only text attachments reach the agent]",
                bytes.len()
            )),
        }
    }
    out
}
