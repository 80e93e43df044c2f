//! A request frame after the handshake: JSON parse, frame schema, method lookup,
//! authorization and params schema (`rpc::check_frame`), for both protocol versions and
//! for an admin, a zero-scope operator and a node.
//!
//! Invariants: nothing panics; a refusal is one well-formed `res` frame with `ok:false`
//! whose size is bounded whatever the input (the error list is cut, never echoed whole).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard::auth::access::{Grant, Role};
use switchboard::protocol::validate::Validators;
use switchboard::rpc::{Checked, check_frame};
use switchboard_schemas::ProtocolVersion;

/// A refusal names at most 20 errors, each with a bounded path and message; the frame's
/// id is echoed (bounded by the frame schema).
const MAX_REFUSAL: usize = 64 * 1024;

fn validators() -> &'static Validators {
    static V: OnceLock<Validators> = OnceLock::new();
    V.get_or_init(|| Validators::build().expect("schemas compile"))
}

fn grants() -> &'static [Grant] {
    static G: OnceLock<Vec<Grant>> = OnceLock::new();
    G.get_or_init(|| {
        vec![
            Grant {
                role: Role::Operator,
                scopes: vec!["operator.admin".into()],
            },
            Grant {
                role: Role::Operator,
                scopes: vec![],
            },
            Grant {
                role: Role::Node,
                scopes: vec![],
            },
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // WebSocket text frames are UTF-8; tungstenite refuses anything else.
    };
    for version in ProtocolVersion::ALL {
        for grant in grants() {
            match check_frame(validators(), version, grant, text, || None) {
                Checked::Ignored => {
                    assert!(serde_json::from_str::<Value>(text).is_err(), "JSON ignored");
                }
                Checked::Refused { frame, .. } => {
                    assert!(
                        frame.len() <= MAX_REFUSAL + text.len().min(MAX_REFUSAL),
                        "refusal of {} bytes for a {}-byte frame",
                        frame.len(),
                        text.len()
                    );
                    let v: Value = serde_json::from_str(&frame).expect("refusal is JSON");
                    assert_eq!(v["type"], "res");
                    assert_eq!(v["ok"], false);
                    assert!(v["error"]["message"].is_string());
                }
                Checked::Ready { params, .. } => {
                    assert!(params.is_object(), "params handed on are an object");
                }
            }
        }
    }
});
