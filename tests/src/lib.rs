//! End-to-end tests of Switchboard live in `e2e/` (one test binary, `cargo test -p
//! switchboard-tests`): they start the real `switchboard` binary with a temporary state
//! directory and talk to it over real sockets. This library is intentionally empty.
