//! Encoding of outbound frames. Field order follows the reference gateways byte for byte:
//! `{type,id,ok,payload,error}` and `{type,event,payload,seq,stateVersion}`.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use switchboard_schemas::frames::{ErrorShape, StateVersion};

use super::error::RpcError;

#[derive(Serialize)]
struct Res<'a, P: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a P>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorShape>,
}

/// `{type:"res", id, ok:true, payload}`.
pub fn ok<P: Serialize>(id: &str, payload: &P) -> String {
    encode(&Res {
        kind: "res",
        id,
        ok: true,
        payload: Some(payload),
        error: None,
    })
}

/// `{type:"res", id, ok:false, error}`.
pub fn err(id: &str, error: &RpcError) -> String {
    encode(&Res::<()> {
        kind: "res",
        id,
        ok: false,
        payload: None,
        error: Some(error.to_shape()),
    })
}

/// `{type:"res", id, ok:false, payload, error}` (a failed run that still reports a payload).
pub fn err_with_payload<P: Serialize>(id: &str, payload: &P, error: &RpcError) -> String {
    encode(&Res {
        kind: "res",
        id,
        ok: false,
        payload: Some(payload),
        error: Some(error.to_shape()),
    })
}

/// `{type:"res", id, ok:true, payload}` with a payload that is already JSON text.
pub fn ok_encoded(id: &str, payload: &str) -> String {
    let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".into());
    format!("{{\"type\":\"res\",\"id\":{id},\"ok\":true,\"payload\":{payload}}}")
}

/// A recorded answer, replayed for a repeated idempotency key: a success as [`ok`], a
/// failure with its payload and its recorded error shape.
pub fn replayed(id: &str, ok: bool, payload: &Value, error: Option<&Value>) -> String {
    if ok {
        return self::ok(id, payload);
    }
    #[derive(Serialize)]
    struct Failed<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        id: &'a str,
        ok: bool,
        payload: &'a Value,
        error: Option<&'a Value>,
    }
    encode(&Failed {
        kind: "res",
        id,
        ok: false,
        payload,
        error,
    })
}

/// The refusal of a frame that is not a valid request: its `id` echoed as it came (any
/// JSON value), or `"invalid"` when it had none.
pub fn err_for_frame(id: Option<&Value>, error: &RpcError) -> String {
    #[derive(Serialize)]
    struct Refused<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        id: &'a Value,
        ok: bool,
        error: ErrorShape,
    }
    let invalid = Value::String("invalid".into());
    let id = match id {
        Some(v) if !v.is_null() => v,
        _ => &invalid,
    };
    encode(&Refused {
        kind: "res",
        id,
        ok: false,
        error: error.to_shape(),
    })
}

/// An event sent to one connection outside the sequence (e.g. `connect.challenge`).
pub fn unsequenced_event<P: Serialize>(event: &str, payload: &P) -> String {
    #[derive(Serialize)]
    struct Ev<'a, P: Serialize> {
        #[serde(rename = "type")]
        kind: &'static str,
        event: &'a str,
        payload: &'a P,
    }
    encode(&Ev {
        kind: "event",
        event,
        payload,
    })
}

/// A sequenced event encoded once, whatever the number of recipients: everything before
/// the `seq` number and everything after it, shared (`Arc`) by every connection's queue.
/// Each connection's frame is the two parts with its own `seq` between them, put together
/// only when it is written to that socket.
#[derive(Debug, Clone)]
pub struct EventTemplate(Arc<Halves>);

/// The encoding around the `seq` number. Shared behind one `Arc`, so that what every
/// connection's queue holds for an event is a pointer and a number.
#[derive(Debug)]
struct Halves {
    head: Bytes,
    tail: Bytes,
}

thread_local! {
    /// How many events this thread encoded (a structural check for tests: a broadcast to
    /// N connections is encoded once per protocol version, not N times).
    pub static EVENTS_ENCODED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl EventTemplate {
    pub fn new<P: Serialize>(
        event: &str,
        payload: &P,
        state_version: Option<StateVersion>,
    ) -> Self {
        let payload = serde_json::to_string(payload).unwrap_or_else(|_| "null".into());
        EventTemplate::from_json(event, &payload, state_version)
    }

    /// From a payload already encoded as JSON.
    pub fn from_json(event: &str, payload: &str, state_version: Option<StateVersion>) -> Self {
        EventTemplate::from_json_parts(event, &[payload], state_version)
    }

    /// From a payload already encoded as JSON, in consecutive parts (copied once, into
    /// a buffer of the exact size).
    pub fn from_json_parts(
        event: &str,
        payload: &[&str],
        state_version: Option<StateVersion>,
    ) -> Self {
        EVENTS_ENCODED.with(|n| n.set(n.get() + 1));
        let event = serde_json::to_string(event).unwrap_or_else(|_| "\"\"".into());
        const OPEN: &str = "{\"type\":\"event\",\"event\":";
        const PAYLOAD: &str = ",\"payload\":";
        const SEQ: &str = ",\"seq\":";
        let len = OPEN.len()
            + event.len()
            + PAYLOAD.len()
            + payload.iter().map(|p| p.len()).sum::<usize>()
            + SEQ.len();
        let mut head = String::with_capacity(len);
        head.push_str(OPEN);
        head.push_str(&event);
        head.push_str(PAYLOAD);
        for p in payload {
            head.push_str(p);
        }
        head.push_str(SEQ);
        let tail = match state_version {
            Some(sv) => format!(
                ",\"stateVersion\":{{\"presence\":{},\"health\":{}}}}}",
                sv.presence, sv.health
            ),
            None => "}".to_owned(),
        };
        EventTemplate(Arc::new(Halves {
            head: Bytes::from(head),
            tail: Bytes::from(tail),
        }))
    }

    /// The frame's length for `seq` (what a connection's queue counts).
    pub fn len(&self, seq: u64) -> usize {
        self.0.head.len() + self.0.tail.len() + digits(seq)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The frame for one connection.
    pub fn stamp(&self, seq: u64) -> String {
        let mut s = Vec::with_capacity(self.len(seq));
        s.extend_from_slice(&self.0.head);
        s.extend_from_slice(itoa(seq, &mut [0u8; 20]).as_bytes());
        s.extend_from_slice(&self.0.tail);
        // Both halves were made from `String`s and the number is ASCII.
        String::from_utf8(s).unwrap_or_default()
    }

    /// The frame for one connection as shared pieces (nothing copied but the number):
    /// what large events are written from (`net::outgoing`).
    pub fn pieces(&self, seq: u64) -> [Bytes; 3] {
        let seq = Bytes::copy_from_slice(itoa(seq, &mut [0u8; 20]).as_bytes());
        [self.0.head.clone(), seq, self.0.tail.clone()]
    }

    /// Whether two templates share their encoded bytes.
    pub fn shares_bytes_with(&self, other: &EventTemplate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// `hello-ok` with its two big parts already encoded: the presence list and the health
/// snapshot are encoded once per state version and shared by every handshake, then put
/// in place of the placeholders `hello` was serialized with (an empty presence list and
/// the health snapshot whose encoding is `health_placeholder`).
pub fn hello_ok<H: Serialize>(
    id: &str,
    hello: &H,
    health_placeholder: &str,
    presence: &Arc<str>,
    health: &Arc<str>,
) -> Vec<Bytes> {
    let text = ok(id, hello);
    let marker = format!("\"presence\":[],\"health\":{health_placeholder}");
    match text.find(&marker) {
        Some(at) => {
            let text = Bytes::from(text);
            vec![
                text.slice(..at),
                Bytes::from_static(b"\"presence\":"),
                Bytes::from_owner(ArcText(Arc::clone(presence))),
                Bytes::from_static(b",\"health\":"),
                Bytes::from_owner(ArcText(Arc::clone(health))),
                text.slice(at + marker.len()..),
            ]
        }
        None => {
            tracing::error!(
                "hello-ok placeholders not found; sending it without the snapshot parts"
            );
            vec![Bytes::from(text)]
        }
    }
}

/// Shared encoded text as the owner of `Bytes` (no copy).
struct ArcText(Arc<str>);

impl AsRef<[u8]> for ArcText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

fn encode<T: Serialize>(value: &T) -> String {
    // Serializing our own types into a String cannot fail (no maps with non-string keys).
    serde_json::to_string(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "frame encoding failed");
        String::from("{}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_frames_keep_the_reference_field_order() {
        let t = EventTemplate::new(
            "presence",
            &json!({"presence": []}),
            Some(StateVersion {
                presence: 2,
                health: 3,
            }),
        );
        assert_eq!(
            t.stamp(7),
            r#"{"type":"event","event":"presence","payload":{"presence":[]},"seq":7,"stateVersion":{"presence":2,"health":3}}"#
        );
        let t = EventTemplate::new("tick", &json!({"ts": 1}), None);
        assert_eq!(
            t.stamp(1),
            r#"{"type":"event","event":"tick","payload":{"ts":1},"seq":1}"#
        );
    }

    #[test]
    fn hello_ok_takes_the_encoded_parts_in_place_of_the_placeholders() {
        let placeholder = json!({"ok": false});
        let hello = json!({"type": "hello-ok", "snapshot": {"presence": [], "health": placeholder, "stateVersion": {"presence": 1}}});
        let pieces = hello_ok(
            "c1",
            &hello,
            &placeholder.to_string(),
            &Arc::from(r#"[{"host":"a"}]"#),
            &Arc::from(r#"{"ok":true}"#),
        );
        let text: Vec<u8> = pieces.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"{"type":"res","id":"c1","ok":true,"payload":{"type":"hello-ok","snapshot":{"presence":[{"host":"a"}],"health":{"ok":true},"stateVersion":{"presence":1}}}}"#
        );
    }

    #[test]
    fn responses_keep_the_reference_field_order() {
        assert_eq!(
            ok("a", &json!({"x": 1})),
            r#"{"type":"res","id":"a","ok":true,"payload":{"x":1}}"#
        );
        assert_eq!(
            err("b", &RpcError::invalid_request("unknown method: x")),
            r#"{"type":"res","id":"b","ok":false,"error":{"code":"INVALID_REQUEST","message":"unknown method: x"}}"#
        );
    }
}
