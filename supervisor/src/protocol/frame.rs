//! Encoding of outbound frames. Field order follows the reference gateways byte for byte:
//! `{type,id,ok,payload,error}` and `{type,event,payload,seq,stateVersion}`.

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

/// A sequenced event encoded once and stamped per connection: everything before the
/// `seq` number, and everything after it.
#[derive(Debug, Clone)]
pub struct EventTemplate {
    head: String,
    tail: String,
}

impl EventTemplate {
    pub fn new<P: Serialize>(
        event: &str,
        payload: &P,
        state_version: Option<StateVersion>,
    ) -> Self {
        let event = serde_json::to_string(event).unwrap_or_else(|_| "\"\"".into());
        let payload = serde_json::to_string(payload).unwrap_or_else(|_| "null".into());
        let head = format!("{{\"type\":\"event\",\"event\":{event},\"payload\":{payload},\"seq\":");
        let tail = match state_version {
            Some(sv) => format!(
                ",\"stateVersion\":{{\"presence\":{},\"health\":{}}}}}",
                sv.presence, sv.health
            ),
            None => "}".to_owned(),
        };
        EventTemplate { head, tail }
    }

    /// The frame for one connection.
    pub fn stamp(&self, seq: u64) -> String {
        let mut s = String::with_capacity(self.head.len() + self.tail.len() + 20);
        s.push_str(&self.head);
        s.push_str(&seq.to_string());
        s.push_str(&self.tail);
        s
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
