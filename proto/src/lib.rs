//! The supervisor↔worker contract (`proto/switchboard/worker/v1/worker.proto`) and its
//! generated tonic/prost code. Both sides depend on this crate, neither on the other.

/// Version of the contract this build speaks. A worker reporting another version in
/// `HelloReply.contract_version` is refused by the supervisor.
pub const CONTRACT_VERSION: u32 = 1;

/// Environment variables through which the supervisor configures a worker process.
pub mod env {
    /// Path of the Unix socket the worker must serve on.
    pub const SOCKET: &str = "SWITCHBOARD_WORKER_SOCKET";
    /// The worker's configured name.
    pub const NAME: &str = "SWITCHBOARD_WORKER_NAME";
    /// The supervisor's pid; the worker exits when its parent is no longer this process.
    pub const SUPERVISOR_PID: &str = "SWITCHBOARD_SUPERVISOR_PID";
    /// The worker's configuration as a JSON object (secrets included; never logged).
    pub const CONFIG: &str = "SWITCHBOARD_WORKER_CONFIG";
    /// `plain`: log lines as `LEVEL message` without time or colour (the supervisor
    /// relays them into its own log).
    pub const LOG_FORMAT: &str = "SWITCHBOARD_WORKER_LOG_FORMAT";
    /// What the worker may touch once confined (`worker_runtime::confine::Policy` as
    /// JSON: `readWrite`, `readOnly`, `exec`, `spawn`, `off`).
    pub const CONFINEMENT: &str = "SWITCHBOARD_WORKER_CONFINEMENT";
}

/// The gRPC metadata key every supervisor call to a worker carries: the worker's secret,
/// fresh at each spawn and handed over as the first line of the worker's stdin (never
/// argv or the environment, which `/proc/PID/cmdline` and `/proc/PID/environ` show). A
/// worker refuses every call without it (`Unauthenticated`): Landlock cannot stop one
/// worker from connecting to another's socket, so the socket alone proves nothing.
pub const SECRET_METADATA: &str = "x-switchboard-worker-secret";

/// The line a worker prints on stdout once it serves.
pub const READY_LINE: &str = "SWITCHBOARD_WORKER_READY";
/// The line a worker prints on stdout, followed by a space and the reason, when it
/// gives up (e.g. its session lock is held); the supervisor reports the reason.
pub const FAILED_LINE: &str = "SWITCHBOARD_WORKER_FAILED";
/// The line a worker prints on stdout, before it serves, followed by a space and how it
/// is confined (`landlock: abi 7, seccomp: on`, or why not).
pub const CONFINEMENT_LINE: &str = "SWITCHBOARD_WORKER_CONFINEMENT";

/// Capability names a worker announces in `HelloReply.capabilities`.
pub mod capability {
    /// Delivers outbound messages (`Send`).
    pub const SEND: &str = "send";
    /// Streams inbound events (`Events`, `Ack`).
    pub const EVENTS: &str = "events";
    /// Runs agent turns (`AgentRunner`).
    pub const AGENT_RUN: &str = "agent.run";
    /// Links its account by a QR code scanned on a phone (`Linker`).
    pub const LOGIN_QR: &str = "login.qr";
    /// Links its account by a code entered on a phone (`Linker`).
    pub const LOGIN_PHONE: &str = "login.phone";
    /// Sends and receives media, not only text.
    pub const MEDIA: &str = "media";
    /// Takes part in group conversations.
    pub const GROUPS: &str = "groups";
    /// Keeps replies in the thread of the message they answer.
    pub const THREADS: &str = "threads";
    pub const REACTIONS: &str = "reactions";
    pub const EDITS: &str = "edits";
    pub const TYPING: &str = "typing";
    /// Resumes its event stream from `EventsRequest.cursor`.
    pub const CURSOR: &str = "cursor";
}

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("switchboard.worker.v1");
}
