//! Resumable event sessions: Switchboard's extension to both protocol generations
//! (`docs/resume.md`; neither reference gateway replays events).
//!
//! A client that sends `connect.params.resume: {}` gets a session: from then on its
//! events are numbered by the session, not by the connection, and the last events it was
//! sent stay in the session's replay buffer (bounded in events, bytes and time). When the
//! socket goes, the session stays behind, detached, for its window and keeps recording
//! what the client would have been sent (the same scope guards as live delivery). A
//! reconnect with `resume: {sessionId, epoch, lastSeq}` gets, right after `hello-ok`,
//! every held event with `seq > lastSeq`, in order, then live events numbered on from
//! there. When that is not possible (unknown or foreign session, new epoch, events no
//! longer held, window passed) `hello-ok.resume` says `ok: false` with the reason and the
//! client starts a fresh session: never a silent gap.
//!
//! The buffer holds the shared encodings ([`EventTemplate`]: a pointer each), so a
//! broadcast held by many sessions is held once. Connections that never ask cost nothing:
//! no session, no buffer, the connection's own counter.
//!
//! Locking: a session's state is only changed under the hub's bus lock (so numbering and
//! recording agree with delivery order) and its own mutex.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use switchboard_schemas::ProtocolVersion;

use crate::auth::access::Grant;
use crate::protocol::frame::EventTemplate;

/// Bounds of every session's replay buffer, and of the sessions kept (`gateway.resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeLimits {
    /// Events held per session (oldest dropped first).
    pub max_events: usize,
    /// Bytes of events held per session (as sent; shared encodings count in full).
    pub max_bytes: usize,
    /// How long a session waits, detached, for its client to resume.
    pub window: Duration,
    /// Detached sessions kept at once: past it the longest-detached goes first.
    pub max_detached: usize,
}

pub const DEFAULT_MAX_EVENTS: usize = 2048;
pub const DEFAULT_MAX_BYTES: usize = 1024 * 1024;
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);
pub const DEFAULT_MAX_DETACHED: usize = 1024;
/// `maxBytes` stays under v3's per-connection queue bound (1.5 MiB), so that replaying a
/// full buffer never makes the resumed connection a slow consumer.
pub const MAX_BYTES_LIMIT: usize = 1024 * 1024;

impl Default for ResumeLimits {
    fn default() -> Self {
        ResumeLimits {
            max_events: DEFAULT_MAX_EVENTS,
            max_bytes: DEFAULT_MAX_BYTES,
            window: DEFAULT_WINDOW,
            max_detached: DEFAULT_MAX_DETACHED,
        }
    }
}

/// Who may resume a session: the same authenticated identity, asking the same way. The
/// session id alone is not enough (another client that learned it is still refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub version: ProtocolVersion,
    pub role: &'static str,
    /// Sorted.
    pub scopes: Vec<String>,
    pub device_id: Option<String>,
    pub client_id: String,
    pub client_mode: String,
}

impl Owner {
    pub fn new(
        version: ProtocolVersion,
        grant: &Grant,
        device_id: Option<&str>,
        client_id: &str,
        client_mode: &str,
    ) -> Owner {
        let mut scopes = grant.scopes.clone();
        scopes.sort();
        scopes.dedup();
        Owner {
            version,
            role: grant.role.as_str(),
            scopes,
            device_id: device_id.map(str::to_owned),
            client_id: client_id.to_owned(),
            client_mode: client_mode.to_owned(),
        }
    }
}

/// Why a resume was refused (`hello-ok.resume.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The gateway restarted since (the client's `epoch` is not this process's).
    Epoch,
    /// No such session for this client (never existed, another client's, or released).
    UnknownSession,
    /// The session was not resumed within its window.
    Expired,
    /// Events after `lastSeq` are no longer held (the buffer's bound was passed).
    EventsLost,
    /// `lastSeq` is past the last event the session numbered.
    BadSeq,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Epoch => "epoch-changed",
            Refusal::UnknownSession => "unknown-session",
            Refusal::Expired => "expired",
            Refusal::EventsLost => "events-lost",
            Refusal::BadSeq => "bad-seq",
        }
    }
}

/// One resumable session.
pub struct Session {
    pub id: String,
    pub owner: Owner,
    pub grant: Grant,
    st: Mutex<State>,
}

struct State {
    /// The last `seq` given out.
    last_seq: u64,
    buf: VecDeque<(u64, EventTemplate)>,
    bytes: usize,
    /// The highest `seq` no longer held (0: nothing dropped yet).
    lost_through: u64,
    /// The connection it is attached to (the hub's id), if any.
    attached: Option<u64>,
    detached_at: Option<Instant>,
    /// Carried across connections: the `presence` version last shown, and whether it
    /// asked for `sessions.changed`.
    presence_seen: u64,
    sessions_events: bool,
}

impl Session {
    pub fn new(owner: Owner, grant: Grant) -> Session {
        Session {
            id: new_id(),
            owner,
            grant,
            st: Mutex::new(State {
                last_seq: 0,
                buf: VecDeque::new(),
                bytes: 0,
                lost_through: 0,
                attached: None,
                detached_at: None,
                presence_seen: 0,
                sessions_events: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers an event for this session and holds it for replay (callers hold the bus
    /// lock). Over a bound the oldest events go.
    pub fn record(&self, template: &EventTemplate, limits: &ResumeLimits) -> u64 {
        let mut st = self.state();
        st.last_seq += 1;
        let seq = st.last_seq;
        let len = template.len(seq);
        st.buf.push_back((seq, template.clone()));
        st.bytes += len;
        while st.buf.len() > limits.max_events || st.bytes > limits.max_bytes {
            let Some((old, t)) = st.buf.pop_front() else {
                break;
            };
            st.bytes -= t.len(old);
            st.lost_through = old;
        }
        seq
    }

    /// Whether `lastSeq` can be resumed from: every event after it is still held.
    pub fn check(&self, last_seq: u64) -> Result<(), Refusal> {
        let st = self.state();
        if last_seq > st.last_seq {
            Err(Refusal::BadSeq)
        } else if last_seq < st.lost_through {
            Err(Refusal::EventsLost)
        } else {
            Ok(())
        }
    }

    /// The held events after `last_seq`, oldest first.
    pub fn after(&self, last_seq: u64) -> Vec<(u64, EventTemplate)> {
        let st = self.state();
        st.buf
            .iter()
            .filter(|(s, _)| *s > last_seq)
            .map(|(s, t)| (*s, t.clone()))
            .collect()
    }

    /// Attaches the session to connection `conn`; the connection it was attached to
    /// before, if any (the client resumed before that socket was noticed gone).
    pub fn attach(&self, conn: u64) -> (Option<u64>, bool) {
        let mut st = self.state();
        st.detached_at = None;
        (st.attached.replace(conn), st.sessions_events)
    }

    /// Connection `conn` is gone: the session waits for a resume (unless another
    /// connection has it already).
    pub fn detach(&self, conn: u64, presence_seen: u64, sessions_events: bool) {
        let mut st = self.state();
        if st.attached == Some(conn) {
            st.attached = None;
            st.detached_at = Some(Instant::now());
            st.presence_seen = presence_seen;
            st.sessions_events = sessions_events;
        }
    }

    /// When it was detached, if it is.
    pub fn detached_since(&self) -> Option<Instant> {
        self.state().detached_at
    }

    /// Whether a detached session wants `event` recorded (the guards a live connection
    /// would apply): `None` when it is attached (its connection records it).
    pub fn detached_wants(&self, presence_version: u64, sessions_changed: bool) -> Option<bool> {
        let st = self.state();
        if st.attached.is_some() {
            return None;
        }
        let presence_shown = presence_version != 0 && st.presence_seen >= presence_version;
        let unsubscribed = sessions_changed && !st.sessions_events;
        Some(!presence_shown && !unsubscribed)
    }

    /// Events and bytes held now.
    pub fn held(&self) -> (usize, usize) {
        let st = self.state();
        (st.buf.len(), st.bytes)
    }
}

/// A session id: 128 random bits, hex.
fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::access::Role;

    fn session() -> Session {
        let grant = Grant {
            role: Role::Operator,
            scopes: vec!["operator.read".into()],
        };
        Session::new(
            Owner::new(ProtocolVersion::V4, &grant, None, "cli", "cli"),
            grant,
        )
    }

    fn tick(n: u64) -> EventTemplate {
        EventTemplate::new("tick", &serde_json::json!({"ts": n}), None)
    }

    #[test]
    fn events_are_numbered_held_and_dropped_oldest_first_over_a_bound() {
        let s = session();
        let limits = ResumeLimits {
            max_events: 3,
            ..Default::default()
        };
        for n in 1..=5 {
            assert_eq!(s.record(&tick(n), &limits), n);
        }
        assert_eq!(s.held().0, 3);
        assert_eq!(
            s.after(2).iter().map(|e| e.0).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(s.check(2), Ok(()), "3, 4 and 5 are held");
        assert_eq!(s.check(1), Err(Refusal::EventsLost), "2 is gone");
        assert_eq!(s.check(5), Ok(()));
        assert_eq!(s.check(6), Err(Refusal::BadSeq));
    }

    #[test]
    fn the_byte_bound_holds_too() {
        let s = session();
        let one = tick(1).len(1);
        let limits = ResumeLimits {
            max_bytes: one * 2 + 1,
            ..Default::default()
        };
        for n in 1..=4 {
            s.record(&tick(n), &limits);
        }
        let (events, bytes) = s.held();
        assert_eq!(events, 2);
        assert!(bytes <= one * 2 + 1);
        assert_eq!(s.check(1), Err(Refusal::EventsLost));
    }

    #[test]
    fn only_the_connection_attached_detaches_it() {
        let s = session();
        assert_eq!(s.attach(1), (None, false));
        assert_eq!(
            s.attach(2).0,
            Some(1),
            "a resume before the old socket was seen gone"
        );
        s.detach(1, 0, false);
        assert!(
            s.detached_since().is_none(),
            "the old connection's end changes nothing"
        );
        s.detach(2, 7, true);
        assert!(s.detached_since().is_some());
        assert_eq!(
            s.detached_wants(7, false),
            Some(false),
            "presence 7 was shown"
        );
        assert_eq!(s.detached_wants(8, true), Some(true));
        assert_eq!(
            s.attach(3),
            (None, true),
            "its sessions.changed subscription carries over"
        );
    }
}
