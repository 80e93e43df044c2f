//! Each worker's secret: made fresh at every spawn, handed over on the worker's stdin (the
//! lifeline pipe, so no other process can read it from `/proc`), and carried by every
//! call the supervisor makes to that worker. The worker runtime refuses calls without it
//! (`worker_runtime::auth`): a confined worker can connect to another worker's socket,
//! but it cannot make that worker do anything.

use std::sync::Arc;

use switchboard_proto::SECRET_METADATA;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The channel every supervisor-side client of a worker is built on: each request gets
/// the worker's secret.
pub type WorkerChannel = InterceptedService<Channel, AddSecret>;

/// 32 random bytes as 64 lowercase hex digits. `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct WorkerSecret(Arc<str>);

impl std::fmt::Debug for WorkerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct NoRandom;

impl WorkerSecret {
    /// A fresh secret from the operating system's CSPRNG.
    pub fn generate() -> Result<WorkerSecret, NoRandom> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| NoRandom)?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(WorkerSecret(Arc::from(hex)))
    }

    /// The line written to the worker's stdin.
    pub(super) fn line(&self) -> String {
        format!("{}\n", self.0)
    }

    /// Wraps `channel` so every call on it carries this secret.
    pub fn channel(&self, channel: Channel) -> WorkerChannel {
        // Hex digits are always a valid header value.
        let value =
            AsciiMetadataValue::try_from(&*self.0).expect("a hex string is a valid metadata value");
        InterceptedService::new(channel, AddSecret(value))
    }
}

/// Puts the worker's secret on each request.
#[derive(Clone)]
pub struct AddSecret(AsciiMetadataValue);

impl Interceptor for AddSecret {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert(SECRET_METADATA, self.0.clone());
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_secret_is_fresh_64_hex_digits_and_never_printed() {
        let a = WorkerSecret::generate().unwrap();
        let b = WorkerSecret::generate().unwrap();
        assert_ne!(a.line(), b.line());
        let line = a.line();
        assert_eq!(line.len(), 65);
        assert!(line.trim_end().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(format!("{a:?}"), "[redacted]");
    }
}
