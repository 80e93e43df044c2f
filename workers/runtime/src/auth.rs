//! Only the supervisor may call a worker: every call must carry the secret the supervisor
//! made for this worker at this spawn.
//!
//! Landlock does not restrict `connect()` to path-named Unix sockets, so a confined worker
//! can reach another worker's socket; without this check it could ask the WhatsApp worker
//! to send. The secret comes as the first line of stdin, the lifeline pipe the supervisor
//! already holds: a pipe's contents are gone once read, where an environment variable
//! stays readable in `/proc/PID/environ` even after `remove_var` (the kernel shows the
//! original environment block) and argv is world-readable in `/proc/PID/cmdline`.
//!
//! Every service a worker serves goes through [`WorkerContext::server`], whose layer
//! refuses a call without the exact secret (constant-time compare) with `Unauthenticated`
//! before any service code runs; [`crate::serve`] accepts only routers built on it.

use std::io::BufRead;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use switchboard_proto::SECRET_METADATA;
use tonic::service::{Interceptor, InterceptorLayer};
use tonic::transport::Server;
use tower_layer::{Identity, Stack};

use crate::{RuntimeError, WorkerContext};

/// The longest secret line read from stdin; the supervisor sends 64 hex digits.
const MAX_SECRET_LINE: u64 = 256;
/// The shortest secret accepted: 128 bits written as hex.
const MIN_SECRET_LEN: usize = 32;

/// The layer stack every worker's server has: the secret check, outermost.
pub type Guarded = Stack<InterceptorLayer<RequireSecret>, Identity>;

/// This worker's secret. `Debug` prints `[redacted]`; it is never logged.
#[derive(Clone)]
pub struct WorkerSecret(Arc<str>);

impl std::fmt::Debug for WorkerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl WorkerSecret {
    /// Reads the first line of `input` (the worker's stdin): the secret, or why not.
    pub fn read_from(input: impl BufRead) -> Result<WorkerSecret, RuntimeError> {
        let mut line = String::new();
        let n = input
            .take(MAX_SECRET_LINE)
            .read_line(&mut line)
            .map_err(|_| RuntimeError::NoSecret)?;
        if n == 0 || !line.ends_with('\n') {
            return Err(RuntimeError::NoSecret);
        }
        let secret = line.trim();
        if secret.len() < MIN_SECRET_LEN || !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RuntimeError::NoSecret);
        }
        Ok(WorkerSecret(Arc::from(secret)))
    }

    /// Whether `presented` is this secret, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(presented).into()
    }

    /// The secret itself, for a worker that must present it (the test worker calling
    /// another worker's socket as a compromised worker would). Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Refuses a call unless it carries this worker's secret; strips it before the service
/// sees the request, so no service code ever holds it.
#[derive(Clone, Debug)]
pub struct RequireSecret(WorkerSecret);

impl Interceptor for RequireSecret {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let ok = req
            .metadata_mut()
            .remove(SECRET_METADATA)
            .is_some_and(|v| self.0.matches(v.as_bytes()));
        if ok {
            Ok(req)
        } else {
            Err(tonic::Status::unauthenticated(
                "this worker answers only the supervisor that started it",
            ))
        }
    }
}

impl WorkerContext {
    /// The server builder every worker builds its services on: calls without this
    /// spawn's secret are refused before they reach a service.
    pub fn server(&self) -> Server<Guarded> {
        Server::builder().layer(InterceptorLayer::new(RequireSecret(self.secret.clone())))
    }

    /// This worker's secret (see [`WorkerSecret::expose`]).
    pub fn secret(&self) -> &WorkerSecret {
        &self.secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> WorkerSecret {
        WorkerSecret::read_from(&b"0123456789abcdef0123456789abcdef0123456789abcdef\nmore"[..])
            .unwrap()
    }

    #[test]
    fn the_secret_is_the_first_stdin_line_and_a_missing_or_short_one_is_refused() {
        assert!(secret().matches(b"0123456789abcdef0123456789abcdef0123456789abcdef"));
        for bad in [
            &b""[..],
            b"short\n",
            b"0123456789abcdef0123456789abcdef",
            b"\n",
        ] {
            assert!(
                matches!(WorkerSecret::read_from(bad), Err(RuntimeError::NoSecret)),
                "{bad:?}"
            );
        }
        let long = vec![b'a'; 1000];
        assert!(WorkerSecret::read_from(&long[..]).is_err());
    }

    #[test]
    fn the_secret_never_prints_itself() {
        let s = secret();
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert!(!format!("{:?}", RequireSecret(s)).contains("0123"));
    }

    #[test]
    fn calls_without_the_exact_secret_are_unauthenticated_and_the_secret_is_stripped() {
        let mut guard = RequireSecret(secret());
        let refused = |guard: &mut RequireSecret, value: Option<&str>| {
            let mut req = tonic::Request::new(());
            if let Some(v) = value {
                req.metadata_mut()
                    .insert(SECRET_METADATA, v.parse().unwrap());
            }
            guard.call(req).err().map(|s| s.code())
        };
        assert_eq!(
            refused(&mut guard, None),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            refused(
                &mut guard,
                Some("0123456789abcdef0123456789abcdef0123456789abcdeX")
            ),
            Some(tonic::Code::Unauthenticated)
        );
        assert_eq!(
            refused(&mut guard, Some("0123456789abcdef")),
            Some(tonic::Code::Unauthenticated)
        );
        let mut req = tonic::Request::new(());
        req.metadata_mut().insert(
            SECRET_METADATA,
            "0123456789abcdef0123456789abcdef0123456789abcdef"
                .parse()
                .unwrap(),
        );
        let passed = guard.call(req).expect("the right secret passes");
        assert!(passed.metadata().get(SECRET_METADATA).is_none());
    }
}
