//! A provider's state in a word, with what is wrong and whether retrying can help: set by
//! the worker's own loops (poller, stream reader, child supervisor), read by `health`.

use std::sync::Mutex;

use crate::channel::Health;

/// The provider state as `Health` reports it.
#[derive(Debug, Clone)]
pub struct Status {
    /// `connecting`, `polling`, `connected`, `backoff`, `unauthorized`, …
    pub state: &'static str,
    /// What is wrong and what to do about it (never secrets).
    pub detail: String,
    /// `false`: only an operator can fix it.
    pub restartable: bool,
}

/// The current [`Status`], shared by the worker's tasks.
#[derive(Debug)]
pub struct StatusCell {
    channel: &'static str,
    now: Mutex<Status>,
}

impl StatusCell {
    /// Starts in `initial`, with nothing wrong.
    pub fn new(channel: &'static str, initial: &'static str) -> StatusCell {
        StatusCell {
            channel,
            now: Mutex::new(Status {
                state: initial,
                detail: String::new(),
                restartable: true,
            }),
        }
    }

    /// Sets the state; a change is logged (as an error when only an operator can fix it).
    pub fn set(&self, state: &'static str, detail: impl Into<String>, restartable: bool) {
        let detail = detail.into();
        let mut s = self.now.lock().unwrap_or_else(|p| p.into_inner());
        if s.state != state || s.detail != detail {
            let channel = self.channel;
            if restartable {
                tracing::info!(channel, state, detail = %detail, "provider state");
            } else {
                tracing::error!(channel, state, detail = %detail, "provider needs an operator");
            }
        }
        *s = Status {
            state,
            detail,
            restartable,
        };
    }

    pub fn get(&self) -> Status {
        self.now.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether an operator must act before anything is tried again.
    pub fn needs_operator(&self) -> bool {
        !self.get().restartable
    }

    /// `Health` for the current state; connected exactly in state `connected`.
    pub fn health(&self, connected: &str) -> Health {
        let s = self.get();
        Health {
            connected: Some(s.state == connected),
            state: s.state.into(),
            detail: s.detail,
            restartable: s.restartable,
            ..Health::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_state_it_was_last_set_to() {
        let s = StatusCell::new("test", "connecting");
        assert_eq!(s.health("polling").connected, Some(false));
        s.set("polling", "", true);
        let h = s.health("polling");
        assert_eq!(
            (h.connected, h.state.as_str(), h.restartable),
            (Some(true), "polling", true)
        );
        s.set("unauthorized", "the token was revoked", false);
        assert!(s.needs_operator());
        assert_eq!(s.health("polling").detail, "the token was revoked");
    }
}
