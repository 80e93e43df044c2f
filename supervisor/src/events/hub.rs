//! Live connections, their bounded outbound queues, and event fan-out.
//!
//! Each connection has one writer task draining a bounded queue. Everything sent to a
//! client (responses and events) goes through [`ConnHandle::push`], which counts the
//! unsent bytes: over the version's bound, a drop-if-slow event is skipped and anything
//! else cuts the connection (close 1008 `slow consumer`). So a client that stops reading
//! costs at most its bound plus one frame, never unbounded memory.
//!
//! `seq` is counted per connection (v4's rule, harmless for v3): 1, 2, 3… in the order the
//! client receives events; a skipped drop-if-slow event still uses its number, so a gap
//! always means a dropped event. Broadcasts are serialized so numbering and delivery
//! order agree on every connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::frames::StateVersion;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::access::{self, Grant, Role};
use crate::protocol::frame::EventTemplate;

/// Frames a connection's queue holds at most (besides the byte bound).
pub const QUEUE_FRAMES: usize = 4096;

/// What the writer task sends.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    /// Send a close frame and stop.
    Close(u16, String),
}

/// The shared half of a connection: what other tasks need to reach it.
pub struct ConnHandle {
    pub id: u64,
    pub conn_id: String,
    pub version: ProtocolVersion,
    pub grant: Grant,
    pub peer: SocketAddr,
    pub client_id: String,
    pub client_mode: String,
    pub presence_key: Option<String>,
    pub device_id: Option<String>,
    tx: mpsc::Sender<Outbound>,
    queued: AtomicUsize,
    max_buffered: usize,
    seq: AtomicU64,
    /// Fired to make the writer close the connection at once (slow consumer, revocation,
    /// shutdown); the close code and reason wait in `close_with`.
    cut: CancellationToken,
    close_with: Mutex<Option<(u16, String)>>,
}

/// Result of queuing one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// A drop-if-slow event skipped for a slow client.
    Dropped,
    /// The client was over its bound: it is being cut.
    Cut,
    /// The connection is already gone.
    Gone,
}

pub struct NewConn {
    pub conn_id: String,
    pub version: ProtocolVersion,
    pub grant: Grant,
    pub peer: SocketAddr,
    pub client_id: String,
    pub client_mode: String,
    pub presence_key: Option<String>,
    pub device_id: Option<String>,
    pub max_buffered: usize,
}

impl ConnHandle {
    pub fn new(id: u64, c: NewConn) -> (Arc<ConnHandle>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        let handle = ConnHandle {
            id,
            conn_id: c.conn_id,
            version: c.version,
            grant: c.grant,
            peer: c.peer,
            client_id: c.client_id,
            client_mode: c.client_mode,
            presence_key: c.presence_key,
            device_id: c.device_id,
            tx,
            queued: AtomicUsize::new(0),
            max_buffered: c.max_buffered,
            seq: AtomicU64::new(0),
            cut: CancellationToken::new(),
            close_with: Mutex::new(None),
        };
        (Arc::new(handle), rx)
    }

    pub fn role(&self) -> Role {
        self.grant.role
    }

    /// Bytes queued but not yet written to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The writer reports a frame written.
    pub fn written(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Queues a frame; see the module docs for the slow-consumer rule.
    pub fn push(&self, text: String, drop_if_slow: bool) -> Pushed {
        if self.cut.is_cancelled() {
            return Pushed::Gone;
        }
        if self.queued.load(Ordering::Relaxed) > self.max_buffered {
            return self.slow(drop_if_slow);
        }
        let len = text.len();
        self.queued.fetch_add(len, Ordering::Relaxed);
        match self.tx.try_send(Outbound::Text(text)) {
            Ok(()) => Pushed::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
                self.slow(drop_if_slow)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
                Pushed::Gone
            }
        }
    }

    fn slow(&self, drop_if_slow: bool) -> Pushed {
        if drop_if_slow {
            Pushed::Dropped
        } else {
            self.close(1008, "slow consumer");
            Pushed::Cut
        }
    }

    /// Closes the connection with `code`/`reason` as soon as the writer can; queued frames
    /// are discarded. The first close wins.
    pub fn close(&self, code: u16, reason: &str) {
        {
            let mut slot = self.close_with.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some((code, reason.to_owned()));
            }
        }
        self.cut.cancel();
    }

    /// Queues a close after everything already queued (used after a final response).
    pub fn close_after_queued(&self, code: u16, reason: &str) {
        if self
            .tx
            .try_send(Outbound::Close(code, reason.to_owned()))
            .is_err()
        {
            self.close(code, reason);
        }
    }

    pub fn cut_token(&self) -> CancellationToken {
        self.cut.clone()
    }

    pub fn take_close(&self) -> Option<(u16, String)> {
        self.close_with
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// An event to fan out: encoded once per protocol version that needs it.
pub struct Broadcast {
    pub event: String,
    pub drop_if_slow: bool,
    templates: [Option<EventTemplate>; 2],
}

impl Broadcast {
    /// The same payload for every version.
    pub fn new<P: serde::Serialize>(
        event: &str,
        payload: &P,
        state_version: Option<StateVersion>,
        drop_if_slow: bool,
    ) -> Broadcast {
        let t = EventTemplate::new(event, payload, state_version);
        Broadcast {
            event: event.to_owned(),
            drop_if_slow,
            templates: [Some(t.clone()), Some(t)],
        }
    }

    /// A payload that differs per version (e.g. presence entries with v4-only fields).
    pub fn per_version<P: serde::Serialize>(
        event: &str,
        payload: impl Fn(ProtocolVersion) -> P,
        state_version: Option<StateVersion>,
        drop_if_slow: bool,
    ) -> Broadcast {
        let templates = ProtocolVersion::ALL
            .map(|v| Some(EventTemplate::new(event, &payload(v), state_version)));
        Broadcast {
            event: event.to_owned(),
            drop_if_slow,
            templates,
        }
    }

    fn template(&self, v: ProtocolVersion) -> Option<&EventTemplate> {
        self.templates[v as usize].as_ref()
    }
}

/// All live connections.
#[derive(Default)]
pub struct Hub {
    next_id: AtomicU64,
    conns: RwLock<HashMap<u64, Arc<ConnHandle>>>,
    /// Held while a broadcast stamps and queues, so each connection sees events in the
    /// order of their numbers.
    bus: Mutex<()>,
    slow_cuts: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct HubCounts {
    pub total: u64,
    pub operators: u64,
    pub nodes: u64,
}

impl Hub {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn insert(&self, handle: Arc<ConnHandle>) {
        self.conns
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(handle.id, handle);
    }

    pub fn remove(&self, id: u64) -> Option<Arc<ConnHandle>> {
        self.conns
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
    }

    pub fn snapshot(&self) -> Vec<Arc<ConnHandle>> {
        self.conns
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn counts(&self) -> HubCounts {
        let conns = self.conns.read().unwrap_or_else(|p| p.into_inner());
        let mut c = HubCounts::default();
        for h in conns.values() {
            c.total += 1;
            match h.role() {
                Role::Operator => c.operators += 1,
                Role::Node => c.nodes += 1,
            }
        }
        c
    }

    pub fn slow_cuts(&self) -> u64 {
        self.slow_cuts.load(Ordering::Relaxed)
    }

    /// Sends a sequenced event to every connection allowed to see it.
    pub fn broadcast(&self, b: &Broadcast) {
        let targets = self.snapshot();
        let _order = self.bus.lock().unwrap_or_else(|p| p.into_inner());
        for conn in targets {
            self.send_event_locked(&conn, b);
        }
    }

    /// Sends a sequenced event to one connection (e.g. `node.invoke.request`). Direct
    /// sends are addressed on purpose, so the broadcast scope guards do not apply.
    pub fn send_event(&self, conn: &ConnHandle, b: &Broadcast) {
        let _order = self.bus.lock().unwrap_or_else(|p| p.into_inner());
        self.stamp_and_push(conn, b);
    }

    fn send_event_locked(&self, conn: &ConnHandle, b: &Broadcast) {
        if !access::may_receive(conn.version, &conn.grant, &b.event) {
            return;
        }
        self.stamp_and_push(conn, b);
    }

    fn stamp_and_push(&self, conn: &ConnHandle, b: &Broadcast) {
        let Some(template) = b.template(conn.version) else {
            return;
        };
        let seq = conn.next_seq();
        if conn.push(template.stamp(seq), b.drop_if_slow) == Pushed::Cut {
            self.slow_cuts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(conn = %conn.conn_id, event = %b.event, "slow consumer cut");
        }
    }

    /// A direct response; a client over its bound is cut like for events.
    pub fn send_direct(&self, conn: &ConnHandle, text: String) -> Pushed {
        let pushed = conn.push(text, false);
        if pushed == Pushed::Cut {
            self.slow_cuts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(conn = %conn.conn_id, "slow consumer cut (response)");
        }
        pushed
    }
}
