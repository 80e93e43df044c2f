//! Maximum lengths of the client-supplied strings Switchboard stores or broadcasts, in
//! characters (JSON Schema `maxLength`) and array items (`maxItems`), for both protocol
//! versions. The reference gateways bound only `client.buildId` (96) and
//! `client.timeZone` (64) and session labels (64); these are as tight or tighter, and
//! generous for every real client (the longest values seen from the reference apps and
//! CLIs are a few dozen characters). A frame over a limit is refused with the field's path,
//! as any other schema error.
//!
//! With them, one presence entry is at most a few KiB whatever a client sends, and the
//! presence list is bounded in bytes as well (`supervisor::events::presence`).

/// Display names, host names, node names.
pub const NAME: u32 = 256;
/// Versions, platforms, device families, model identifiers, roles, scopes, capability
/// and command names, client modes, locales.
pub const SHORT: u32 = 128;
/// Instance ids, device ids, node ids, IP addresses as reported.
pub const ID: u32 = 256;
/// Public keys and signatures (base64 or PEM).
pub const KEY: u32 = 1024;
/// Shared secrets and tokens.
pub const SECRET: u32 = 4096;
/// A `system-event` line (kept in the presence list).
pub const TEXT: u32 = 2048;
/// A browser's or HTTP client's user agent.
pub const USER_AGENT: u32 = 1024;
/// A node's reported `PATH`.
pub const PATH_ENV: u32 = 32768;
/// Scopes a client asks for.
pub const SCOPES: u32 = 32;
/// Capabilities a client declares.
pub const CAPS: u32 = 64;
/// Commands a node declares (the OpenClaw node host declares 21).
pub const COMMANDS: u32 = 512;
/// Permission entries a node reports.
pub const PERMISSIONS: u32 = 256;
/// Roles and tags in a `system-event`.
pub const TAGS: u32 = 32;
