//! End-to-end tests of Switchboard live in `e2e/` (one test binary, `cargo test -p
//! switchboard-tests`): they start the real `switchboard` binary with a temporary state
//! directory and talk to it over real sockets. This library holds the stand-ins that are
//! also served by stand-in executables (`src/bin/`), which tests hand to the gateway in
//! place of a provider's program.

pub mod standin_signal;
