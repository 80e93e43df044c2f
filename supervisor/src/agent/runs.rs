//! Agent runs in flight and recently finished: what `agent.wait`, `chat.abort` and
//! `chat.history`'s `inFlightRun` read. A leaf: it knows nothing of connections or workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: &'static str,
    pub started_at: u64,
    pub ended_at: u64,
    pub error: Option<String>,
}

pub struct Run {
    pub run_id: String,
    pub session_key: String,
    pub started_at: u64,
    /// The reply so far (v4 `chat.history`'s `inFlightRun`).
    pub(crate) partial: Mutex<String>,
    pub(crate) cancel: CancellationToken,
    pub(crate) done: watch::Sender<Option<Outcome>>,
}

impl Run {
    pub(crate) fn new(run_id: &str, session_key: String) -> Arc<Run> {
        Arc::new(Run {
            run_id: run_id.to_owned(),
            session_key,
            started_at: now_ms(),
            partial: Mutex::new(String::new()),
            cancel: CancellationToken::new(),
            done: watch::channel(None).0,
        })
    }

    pub fn partial(&self) -> String {
        self.partial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[derive(Default)]
pub struct Runs {
    live: Mutex<HashMap<String, Arc<Run>>>,
    /// Recently finished runs, for `agent.wait` (bounded).
    finished: Mutex<Vec<(String, Outcome)>>,
}

const FINISHED_KEPT: usize = 1000;

impl Runs {
    pub(crate) fn insert(&self, run: Arc<Run>) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(run.run_id.clone(), run);
    }

    pub(crate) fn finish(&self, run_id: &str, outcome: Outcome) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(run_id);
        let mut f = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        f.push((run_id.to_owned(), outcome));
        if f.len() > FINISHED_KEPT {
            let excess = f.len() - FINISHED_KEPT;
            f.drain(..excess);
        }
    }

    /// Runs going on in a session.
    pub fn live_in(&self, session_key: &str) -> Vec<Arc<Run>> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|r| r.session_key == session_key)
            .cloned()
            .collect()
    }

    /// Runs still going.
    pub fn live_count(&self) -> usize {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub(crate) fn live(&self, run_id: &str) -> Option<Arc<Run>> {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(run_id)
            .cloned()
    }

    pub(crate) fn finished(&self, run_id: &str) -> Option<Outcome> {
        self.finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find(|(id, _)| id == run_id)
            .map(|(_, o)| o.clone())
    }

    /// Cancels live runs of a session (all, or the one with `run_id`).
    pub fn abort(&self, session_key: &str, run_id: Option<&str>) -> Vec<String> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.values()
            .filter(|r| r.session_key == session_key && run_id.is_none_or(|id| id == r.run_id))
            .map(|r| {
                r.cancel.cancel();
                r.run_id.clone()
            })
            .collect()
    }
}
