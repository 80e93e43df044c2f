//! Process exit codes of `switchboard`: a small documented set scripts can act on.

/// Why the process ended. The numbers are part of the CLI's contract (`--help` lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Clean exit (including a graceful shutdown on SIGINT/SIGTERM).
    Ok = 0,
    /// An unexpected runtime failure.
    Failure = 1,
    /// Bad command line (clap's own code).
    Usage = 2,
    /// The configuration is invalid (bad flag value, refused bind without auth, …).
    Config = 3,
    /// Another gateway already listens on the port.
    PortInUse = 4,
    /// Another gateway already holds the state directory's lock.
    StateDirLocked = 5,
    /// The state directory or its database could not be opened.
    State = 6,
    /// A client command could not reach the gateway or was refused by it.
    Unreachable = 7,
    /// The state directory was used before but its database is missing, empty or
    /// unreadable: the gateway refuses to start over it silently (`--reset-state`).
    StateLost = 8,
}

impl ExitCode {
    pub const HELP: &'static str = "Exit codes: 0 ok, 1 failure, 2 usage, 3 config error, \
4 port in use (another gateway), 5 state directory locked (another gateway), \
6 state directory/database error, 7 gateway unreachable or request refused, \
8 database missing, empty or unreadable in a used state directory (see --reset-state).";
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}
