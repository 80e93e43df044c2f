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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::frames::StateVersion;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::access::{self, Grant, Role};
use crate::events::resume::{self, Owner, Refusal, ResumeLimits};
use crate::protocol::frame::EventTemplate;

/// Frames a connection's queue holds at most (besides the byte bound).
pub const QUEUE_FRAMES: usize = 4096;

/// What the writer task sends.
#[derive(Debug)]
pub enum Outbound {
    Text(String),
    /// A sequenced event: the shared encoding with this connection's `seq`.
    Event(EventTemplate, u64),
    /// Send a close frame and stop (boxed: rare, and every queue slot is the size of
    /// the largest variant).
    Close(Box<(u16, String)>),
}

impl Outbound {
    /// Bytes this frame counts for in the queue bound.
    pub fn len(&self) -> usize {
        match self {
            Outbound::Text(t) => t.len(),
            Outbound::Event(t, seq) => t.len(*seq),
            Outbound::Close(..) => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Bytes queued for all clients together, unless configured otherwise: past it, the
/// longest queues are cut first (`slow consumer`) until the total is back under 90%.
pub const DEFAULT_MAX_QUEUED_TOTAL: usize = 256 * 1024 * 1024;

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
    /// Bytes queued over every connection (shared with the hub).
    total: Arc<AtomicUsize>,
    max_buffered: usize,
    seq: AtomicU64,
    /// Fired to make the writer close the connection at once (slow consumer, revocation,
    /// shutdown); the close code and reason wait in `close_with`.
    cut: CancellationToken,
    close_with: Mutex<Option<(u16, String)>>,
    /// When the writer began the socket write it is still waiting on (milliseconds on
    /// [`clock_ms`], 0 when it is not waiting): a client that stopped reading leaves its
    /// writer waiting, one that reads slowly does not.
    write_started: AtomicU64,
    /// The presence version this client's `hello-ok` snapshot carried: a `presence`
    /// event of that version or older tells it nothing new and is not sent.
    presence_seen: AtomicU64,
    /// It asked for `sessions.changed` events (`sessions.subscribe`); only such
    /// connections get them, for as long as they stay connected (as the reference).
    sessions_events: AtomicBool,
    /// Its resumable session, when it asked for one (`events::resume`): then events are
    /// numbered and held by the session, and a drop-if-slow event is never skipped
    /// silently (the client is cut and resumes instead).
    resume: OnceLock<Arc<resume::Session>>,
}

/// A writer that has waited this long on one write counts as stalled when the global
/// bound picks whom to cut.
pub const STALLED_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// Milliseconds on the monotonic clock from a base an hour before the first call (so
/// never 0, and a time a little in the past can always be written down).
fn clock_ms() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(|| {
        let now = std::time::Instant::now();
        now.checked_sub(std::time::Duration::from_secs(3600))
            .unwrap_or(now)
    });
    base.elapsed().as_millis() as u64 + 1
}

/// A connection's outbound queue, as its writer task drains it. Whatever is still in it
/// when it is dropped is taken off the byte counts, so a closed connection never leaves
/// bytes counted against the global bound.
pub struct Queue {
    rx: mpsc::Receiver<Outbound>,
    handle: Arc<ConnHandle>,
}

impl Queue {
    pub async fn recv(&mut self) -> Option<Outbound> {
        self.rx.recv().await
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(f) = self.rx.try_recv() {
            self.handle.written(f.len());
        }
    }
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
    /// The hub's running total of queued bytes.
    pub total: Arc<AtomicUsize>,
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
    pub fn new(id: u64, c: NewConn) -> (Arc<ConnHandle>, Queue) {
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
            total: c.total,
            max_buffered: c.max_buffered,
            seq: AtomicU64::new(0),
            cut: CancellationToken::new(),
            close_with: Mutex::new(None),
            write_started: AtomicU64::new(0),
            presence_seen: AtomicU64::new(0),
            sessions_events: AtomicBool::new(false),
            resume: OnceLock::new(),
        };
        let handle = Arc::new(handle);
        let queue = Queue {
            rx,
            handle: Arc::clone(&handle),
        };
        (handle, queue)
    }

    pub fn role(&self) -> Role {
        self.grant.role
    }

    /// From now on this connection gets `sessions.changed` events.
    pub fn subscribe_sessions(&self) {
        self.sessions_events.store(true, Ordering::Relaxed);
    }

    pub fn wants_sessions_events(&self) -> bool {
        self.sessions_events.load(Ordering::Relaxed)
    }

    /// Bytes queued but not yet written to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The writer reports a frame written (or dropped unsent).
    pub fn written(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
        self.total.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The writer starts (`true`) or finishes (`false`) one socket write.
    pub fn writing(&self, started: bool) {
        let v = if started { clock_ms() } else { 0 };
        self.write_started.store(v, Ordering::Relaxed);
    }

    /// How long the writer has waited on its current write (zero when it is not writing).
    pub fn write_waiting(&self) -> std::time::Duration {
        match self.write_started.load(Ordering::Relaxed) {
            0 => std::time::Duration::ZERO,
            t => std::time::Duration::from_millis(clock_ms().saturating_sub(t)),
        }
    }

    /// Notes the presence version the client's `hello-ok` carried.
    pub fn saw_presence(&self, version: u64) {
        self.presence_seen.fetch_max(version, Ordering::Relaxed);
    }

    /// Whether the connection is already being closed.
    pub fn is_cut(&self) -> bool {
        self.cut.is_cancelled()
    }

    /// Queues a frame; see the module docs for the slow-consumer rule.
    pub fn push(&self, text: String, drop_if_slow: bool) -> Pushed {
        self.push_frame(Outbound::Text(text), drop_if_slow)
    }

    fn push_frame(&self, frame: Outbound, drop_if_slow: bool) -> Pushed {
        // A resumable client is never skipped an event: it is cut, and its resume
        // replays what it missed (or says it cannot).
        let drop_if_slow = drop_if_slow && self.resume.get().is_none();
        if self.cut.is_cancelled() {
            return Pushed::Gone;
        }
        if self.queued.load(Ordering::Relaxed) > self.max_buffered {
            return self.slow(drop_if_slow);
        }
        let len = frame.len();
        self.queued.fetch_add(len, Ordering::Relaxed);
        self.total.fetch_add(len, Ordering::Relaxed);
        match self.tx.try_send(frame) {
            Ok(()) => Pushed::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.written(len);
                self.slow(drop_if_slow)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.written(len);
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
            .try_send(Outbound::Close(Box::new((code, reason.to_owned()))))
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

    /// Its resumable session, if it has one.
    pub fn resume_session(&self) -> Option<&Arc<resume::Session>> {
        self.resume.get()
    }
}

/// What a connection that asked to resume got (`hello-ok.resume`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    pub session_id: String,
    pub epoch: String,
    /// Why the session asked for could not be continued (a fresh one was made).
    pub refused: Option<Refusal>,
    /// Events replayed.
    pub replayed: usize,
}

/// An event to fan out: encoded once per protocol version that needs it.
pub struct Broadcast {
    pub event: String,
    pub drop_if_slow: bool,
    templates: [Option<EventTemplate>; 2],
    /// For `presence`: the list's version (0: not a presence list).
    presence_version: u64,
}

impl Broadcast {
    /// One encoding for every version, from a payload already encoded as JSON.
    pub fn encoded(
        event: &str,
        payload: &str,
        state_version: Option<StateVersion>,
        drop_if_slow: bool,
    ) -> Broadcast {
        let t = EventTemplate::from_json(event, payload, state_version);
        Broadcast {
            event: event.to_owned(),
            drop_if_slow,
            templates: [Some(t.clone()), Some(t)],
            presence_version: 0,
        }
    }
}

impl Broadcast {
    /// A payload per version made of a shared body inside a fixed wrapper (the presence
    /// event: `{"presence":` list `}`), each encoded with one copy of its body.
    pub fn wrapped_per_version(
        event: &str,
        wrapper: (&str, &str),
        bodies: [&str; 2],
        state_version: Option<StateVersion>,
        drop_if_slow: bool,
    ) -> Broadcast {
        Broadcast {
            event: event.to_owned(),
            drop_if_slow,
            templates: bodies.map(|b| {
                Some(EventTemplate::from_json_parts(
                    event,
                    &[wrapper.0, b, wrapper.1],
                    state_version,
                ))
            }),
            presence_version: 0,
        }
    }

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
            presence_version: 0,
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
            presence_version: 0,
        }
    }

    /// Sent only to clients of `version` (an event the other generation does not have).
    pub fn only_for(mut self, version: ProtocolVersion) -> Broadcast {
        for v in ProtocolVersion::ALL {
            if v != version {
                self.templates[v as usize] = None;
            }
        }
        self
    }

    /// A presence list of this version: not sent to clients whose `hello-ok` had it.
    pub fn of_presence_version(mut self, version: u64) -> Broadcast {
        self.presence_version = version;
        self
    }

    fn template(&self, v: ProtocolVersion) -> Option<&EventTemplate> {
        self.templates[v as usize].as_ref()
    }
}

/// The event sent only to connections that called `sessions.subscribe`.
pub const SESSIONS_CHANGED: &str = "sessions.changed";

/// All live connections.
pub struct Hub {
    next_id: AtomicU64,
    conns: RwLock<HashMap<u64, Arc<ConnHandle>>>,
    /// Bytes queued over every connection, and the bound on it.
    total: Arc<AtomicUsize>,
    max_total: usize,
    /// Held while a broadcast stamps and queues, so each connection sees events in the
    /// order of their numbers.
    bus: Mutex<()>,
    slow_cuts: AtomicU64,
    /// The most connections held at once since `take_peak` last read it.
    peak: AtomicUsize,
    /// Resumable sessions by id, attached or not (empty unless a client asked).
    resumes: Mutex<HashMap<String, Arc<resume::Session>>>,
    resume_limits: ResumeLimits,
    /// This process's epoch: a resume from another one cannot be honoured.
    epoch: String,
    /// When detached sessions were last checked for their window.
    last_sweep: Mutex<std::time::Instant>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct HubCounts {
    pub total: u64,
    pub operators: u64,
    pub nodes: u64,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(DEFAULT_MAX_QUEUED_TOTAL)
    }
}

impl Hub {
    pub fn new(max_total: usize) -> Hub {
        Hub {
            next_id: AtomicU64::new(0),
            conns: RwLock::new(HashMap::new()),
            total: Arc::new(AtomicUsize::new(0)),
            max_total,
            bus: Mutex::new(()),
            slow_cuts: AtomicU64::new(0),
            peak: AtomicUsize::new(0),
            resumes: Mutex::new(HashMap::new()),
            resume_limits: ResumeLimits::default(),
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            last_sweep: Mutex::new(std::time::Instant::now()),
        }
    }

    /// With these replay bounds and this epoch (the gateway's boot id).
    pub fn with_resume(mut self, limits: ResumeLimits, epoch: &str) -> Hub {
        self.resume_limits = limits;
        self.epoch = epoch.to_owned();
        self
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn resumes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<resume::Session>>> {
        self.resumes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resumable sessions held now: (attached or not, detached).
    pub fn resume_sessions(&self) -> (usize, usize) {
        let all = self.resumes();
        let detached = all
            .values()
            .filter(|s| s.detached_since().is_some())
            .count();
        (all.len(), detached)
    }

    /// Registers a connection that asked to resume (`ask`: the session, epoch and last
    /// `seq` it names; `None` for a fresh session). Under the bus lock, so that nothing
    /// is numbered in between: continues the session or makes a fresh one, queues the
    /// held events after `lastSeq` (they follow `hello-ok`, which is written before the
    /// queue), then adds the connection to the live ones.
    pub fn insert_resumable(
        &self,
        handle: &Arc<ConnHandle>,
        ask: Option<(&str, &str, u64)>,
    ) -> Resumed {
        let owner = Owner::new(
            handle.version,
            &handle.grant,
            handle.device_id.as_deref(),
            &handle.client_id,
            &handle.client_mode,
        );
        let _order = self.bus.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.resume_limits.window;
        let mut refused = None;
        let mut found = None;
        if let Some((id, epoch, last_seq)) = ask {
            let known = self.resumes().get(id).cloned();
            let checked = if epoch != self.epoch {
                Err(Refusal::Epoch)
            } else {
                match known {
                    None => Err(Refusal::UnknownSession),
                    Some(s) if s.owner != owner => Err(Refusal::UnknownSession),
                    Some(s) if s.detached_since().is_some_and(|t| t.elapsed() >= window) => {
                        Err(Refusal::Expired)
                    }
                    Some(s) => s.check(last_seq).map(|()| (s, last_seq)),
                }
            };
            match checked {
                Ok(f) => found = Some(f),
                Err(r) => refused = Some(r),
            }
        }
        self.sweep(true);
        let (session, last_seq) = match found {
            Some(f) => f,
            None => {
                let s = Arc::new(resume::Session::new(owner, handle.grant.clone()));
                self.resumes().insert(s.id.clone(), Arc::clone(&s));
                (s, 0)
            }
        };
        let (before, sessions_events) = session.attach(handle.id);
        if let Some(old) = before.and_then(|id| self.conns.read().ok()?.get(&id).cloned()) {
            old.close(1000, "resumed on another connection");
        }
        if sessions_events {
            handle.subscribe_sessions();
        }
        // The connection's own counter carries on from the session's (unused while the
        // session numbers its events, but kept true).
        let replay = session.after(last_seq);
        let _ = handle.resume.set(Arc::clone(&session));
        for (seq, t) in &replay {
            handle.seq.store(*seq, Ordering::Relaxed);
            handle.push_frame(Outbound::Event(t.clone(), *seq), false);
        }
        self.insert(Arc::clone(handle));
        Resumed {
            session_id: session.id.clone(),
            epoch: self.epoch.clone(),
            refused,
            replayed: replay.len(),
        }
    }

    /// Releases detached sessions past their window, and the longest-detached ones over
    /// the bound on how many are kept (callers hold the bus lock). At most once a second
    /// unless `now`.
    fn sweep(&self, now: bool) {
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            if !now && last.elapsed() < std::time::Duration::from_secs(1) {
                return;
            }
            *last = std::time::Instant::now();
        }
        let mut all = self.resumes();
        if all.is_empty() {
            return;
        }
        let window = self.resume_limits.window;
        let before = all.len();
        all.retain(|_, s| s.detached_since().is_none_or(|t| t.elapsed() < window));
        let expired = before - all.len();
        let mut detached: Vec<(std::time::Instant, String)> = all
            .values()
            .filter_map(|s| Some((s.detached_since()?, s.id.clone())))
            .collect();
        let mut over = 0;
        if detached.len() > self.resume_limits.max_detached {
            detached.sort();
            over = detached.len() - self.resume_limits.max_detached;
            for (_, id) in detached.into_iter().take(over) {
                all.remove(&id);
            }
        }
        if expired + over > 0 {
            tracing::info!(
                released = expired + over,
                over_bound = over,
                kept = all.len(),
                "resumable sessions released (not resumed within their window)"
            );
        }
    }

    /// The most connections held at once since the last call (then starts again from the
    /// number held now), and the number held now.
    pub fn take_peak(&self) -> (usize, usize) {
        let now = self.conns.read().unwrap_or_else(|p| p.into_inner()).len();
        (self.peak.swap(now, Ordering::Relaxed).max(now), now)
    }

    /// The counter a new connection's queue adds to.
    pub fn total_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.total)
    }

    /// Bytes queued for all clients together.
    pub fn queued_total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Over the global bound: cut clients until the total is under 90% of it. Clients
    /// whose writer has waited on one write for [`STALLED_AFTER`] (they stopped reading)
    /// go first, longest queue first; only then clients that read but fell behind. A
    /// client that keeps up keeps a short queue and is the last one cut. Bytes of clients
    /// already being closed count as freed: they are released as their writers stop.
    fn shed(&self) {
        let total = self.queued_total();
        if total <= self.max_total {
            return;
        }
        let mut left = total;
        let mut conns = Vec::new();
        for c in self.snapshot() {
            let q = c.queued_bytes();
            if c.is_cut() {
                left = left.saturating_sub(q);
            } else if q > 0 {
                conns.push((c.write_waiting() < STALLED_AFTER, q, c));
            }
        }
        conns.sort_by_key(|(reading, q, _)| (*reading, std::cmp::Reverse(*q)));
        for (reading, q, c) in conns {
            if left <= self.max_total / 10 * 9 {
                break;
            }
            c.close(1008, "slow consumer");
            self.slow_cuts.fetch_add(1, Ordering::Relaxed);
            let why = if reading {
                "reading too slowly"
            } else {
                "not reading"
            };
            tracing::warn!(conn = %c.conn_id, queued = q, total, "slow consumer cut ({why}): all queues together are over their bound");
            left = left.saturating_sub(q);
        }
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn insert(&self, handle: Arc<ConnHandle>) {
        let mut conns = self.conns.write().unwrap_or_else(|p| p.into_inner());
        conns.insert(handle.id, handle);
        self.peak.fetch_max(conns.len(), Ordering::Relaxed);
    }

    /// Takes a connection off the live ones; its resumable session, if it has one,
    /// waits detached for its window.
    pub fn remove(&self, id: u64) -> Option<Arc<ConnHandle>> {
        let gone = self
            .conns
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(c) = &gone
            && let Some(s) = c.resume.get()
        {
            let _order = self.bus.lock().unwrap_or_else(|p| p.into_inner());
            s.detach(
                id,
                c.presence_seen.load(Ordering::Relaxed),
                c.wants_sessions_events(),
            );
        }
        gone
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

    /// Connections held now.
    pub fn connections(&self) -> usize {
        self.conns.read().unwrap_or_else(|p| p.into_inner()).len()
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
        self.record_detached(b);
    }

    /// Detached resumable sessions record what their client would have been sent.
    fn record_detached(&self, b: &Broadcast) {
        self.sweep(false);
        let sessions: Vec<Arc<resume::Session>> = {
            let all = self.resumes();
            if all.is_empty() {
                return;
            }
            all.values().cloned().collect()
        };
        for s in sessions {
            let Some(template) = b.template(s.owner.version) else {
                continue;
            };
            if !access::may_receive(s.owner.version, &s.grant, &b.event) {
                continue;
            }
            if s.detached_wants(b.presence_version, b.event == SESSIONS_CHANGED) == Some(true) {
                s.record(template, &self.resume_limits);
            }
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
        if b.presence_version != 0
            && conn.presence_seen.load(Ordering::Relaxed) >= b.presence_version
        {
            return;
        }
        if b.event == SESSIONS_CHANGED && !conn.wants_sessions_events() {
            return;
        }
        self.stamp_and_push(conn, b);
    }

    /// Whether any connection asked for `sessions.changed` (so a change is worth
    /// describing at all).
    pub fn has_sessions_subscribers(&self) -> bool {
        self.conns
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|c| c.wants_sessions_events())
    }

    fn stamp_and_push(&self, conn: &ConnHandle, b: &Broadcast) {
        let Some(template) = b.template(conn.version) else {
            return;
        };
        let seq = match conn.resume.get() {
            Some(s) => s.record(template, &self.resume_limits),
            None => conn.next_seq(),
        };
        match conn.push_frame(Outbound::Event(template.clone(), seq), b.drop_if_slow) {
            Pushed::Cut => {
                self.slow_cuts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(conn = %conn.conn_id, event = %b.event, "slow consumer cut");
            }
            Pushed::Queued if self.queued_total() > self.max_total => self.shed(),
            _ => {}
        }
    }

    /// A direct response; a client over its bound is cut like for events.
    pub fn send_direct(&self, conn: &ConnHandle, text: String) -> Pushed {
        let pushed = conn.push(text, false);
        if pushed == Pushed::Cut {
            self.slow_cuts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(conn = %conn.conn_id, "slow consumer cut (response)");
        } else if pushed == Pushed::Queued && self.queued_total() > self.max_total {
            self.shed();
        }
        pushed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every slot of every connection's queue is this big (tokio allocates them in
    /// blocks of 32 per connection).
    #[test]
    fn a_queued_frame_is_small() {
        assert!(std::mem::size_of::<Outbound>() <= 32);
        assert_eq!(std::mem::size_of::<EventTemplate>(), 8);
    }

    fn conn(hub: &Hub, version: ProtocolVersion) -> (Arc<ConnHandle>, Queue) {
        ConnHandle::new(
            hub.next_id(),
            NewConn {
                total: hub.total_counter(),
                conn_id: "c".into(),
                version,
                grant: Grant {
                    role: Role::Operator,
                    scopes: vec![access::ADMIN.into()],
                },
                peer: "127.0.0.1:1".parse().unwrap(),
                client_id: "test".into(),
                client_mode: "test".into(),
                presence_key: None,
                device_id: None,
                max_buffered: 1 << 20,
            },
        )
    }

    #[tokio::test]
    async fn a_broadcast_to_many_connections_is_encoded_once_and_its_bytes_shared() {
        let hub = Hub::default();
        let mut queues = Vec::new();
        for i in 0..50 {
            let v = if i % 2 == 0 {
                ProtocolVersion::V3
            } else {
                ProtocolVersion::V4
            };
            let (h, q) = conn(&hub, v);
            hub.insert(h);
            queues.push(q);
        }
        let payload = serde_json::json!({"presence": vec!["x".repeat(1000); 20]});
        let count = || crate::protocol::frame::EVENTS_ENCODED.with(|n| n.get());
        let before = count();
        hub.broadcast(&Broadcast::new("presence", &payload, None, true));
        let encoded = count() - before;
        assert_eq!(encoded, 1, "one serialization for 50 recipients");
        let mut first: Option<EventTemplate> = None;
        for q in &mut queues {
            match q.recv().await {
                Some(Outbound::Event(t, seq)) => {
                    assert_eq!(seq, 1);
                    if let Some(f) = &first {
                        assert!(t.shares_bytes_with(f), "every queue holds the same bytes");
                    }
                    first.get_or_insert(t);
                }
                other => panic!("expected an event, got {other:?}"),
            }
        }
        // Queued bytes are counted per connection and in all, and released when written.
        assert!(hub.queued_total() > 50 * 20_000);
        for c in hub.snapshot() {
            c.written(c.queued_bytes());
        }
        assert_eq!(hub.queued_total(), 0);
    }

    #[tokio::test]
    async fn a_resumable_client_is_cut_not_skipped_and_its_resume_replays_what_it_missed() {
        let hub = Hub::default();
        let (slow, _q) = conn(&hub, ProtocolVersion::V4);
        let first = hub.insert_resumable(&slow, None);
        assert_eq!(first.refused, None);
        // Over its queue bound: a plain client would be skipped this drop-if-slow event.
        hub.send_direct(&slow, "x".repeat((1 << 20) + 1));
        hub.broadcast(&Broadcast::new(
            "tick",
            &serde_json::json!({"ts": 1}),
            None,
            true,
        ));
        assert!(slow.is_cut(), "cut, so that the skip cannot go unnoticed");
        hub.remove(slow.id);
        // Its resume from before the event gets it.
        let (again, mut q) = conn(&hub, ProtocolVersion::V4);
        let r = hub.insert_resumable(&again, Some((&first.session_id, &first.epoch, 0)));
        assert_eq!((r.refused, r.replayed), (None, 1), "{r:?}");
        match q.recv().await {
            Some(Outbound::Event(t, 1)) => {
                assert!(t.shares_bytes_with(&hub.resumes()[&first.session_id].after(0)[0].1))
            }
            other => panic!("expected the missed tick as seq 1, got {other:?}"),
        }
        // A plain connection is not affected: it skips and stays.
        let (plain, _pq) = conn(&hub, ProtocolVersion::V4);
        hub.insert(Arc::clone(&plain));
        hub.send_direct(&plain, "x".repeat((1 << 20) + 1));
        hub.broadcast(&Broadcast::new(
            "tick",
            &serde_json::json!({"ts": 2}),
            None,
            true,
        ));
        assert!(!plain.is_cut());
    }

    #[tokio::test]
    async fn over_the_global_bound_the_longest_queue_is_cut_first() {
        let hub = Hub::new(100_000);
        let (reader, mut rq) = conn(&hub, ProtocolVersion::V4);
        let (stalled, _sq) = conn(&hub, ProtocolVersion::V4);
        hub.insert(Arc::clone(&reader));
        hub.insert(Arc::clone(&stalled));
        // The stalled client has 60 kB queued already; the reader keeps up.
        hub.send_direct(&stalled, "s".repeat(60_000));
        let big = "r".repeat(50_000);
        hub.send_direct(&reader, big.clone());
        assert!(
            stalled.cut_token().is_cancelled(),
            "the longest queue is cut"
        );
        assert!(!reader.cut_token().is_cancelled());
        if let Some(f) = rq.recv().await {
            reader.written(f.len());
        }
        // A dropped queue gives its bytes back.
        drop(_sq);
        assert!(hub.queued_total() <= 100_000, "{}", hub.queued_total());
    }

    #[tokio::test]
    async fn a_client_that_stopped_reading_is_cut_before_one_that_reads_slowly() {
        let hub = Hub::new(100_000);
        let (slow, _slq) = conn(&hub, ProtocolVersion::V4);
        let (stalled, _stq) = conn(&hub, ProtocolVersion::V4);
        hub.insert(Arc::clone(&slow));
        hub.insert(Arc::clone(&stalled));
        // The stalled client's writer has waited on one write for a second; the slow
        // reader's writer is not waiting, but its queue is longer.
        stalled
            .write_started
            .store(clock_ms() - 1000, Ordering::Relaxed);
        hub.send_direct(&stalled, "s".repeat(30_000));
        hub.send_direct(&slow, "r".repeat(60_000));
        hub.send_direct(&slow, "r".repeat(20_000));
        assert!(
            stalled.is_cut(),
            "the client that stopped reading goes first"
        );
        assert!(!slow.is_cut(), "{} bytes left", hub.queued_total());
        // Once freed bytes are counted, cutting the stalled one was enough: a second push
        // over the bound does not cut the reader while the stalled one's bytes drain.
        hub.send_direct(&slow, "r".repeat(5_000));
        assert!(!slow.is_cut());
    }
}
