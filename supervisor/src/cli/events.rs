//! `events`: the gateway's event stream, as a read-only operator sees it. With `-f` it
//! follows across gateway restarts and network blips on a resumable session
//! (`docs/resume.md`): after a reconnect it gets every event it missed, in order, or an
//! explicit gap notice when the gateway could not keep them. Never a silent gap.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard_schemas::connect::ResumeRequest;

use super::args::EventsArgs;
use super::client::{Client, ClientError};
use super::remote::*;
use crate::ops::exit::ExitCode;

/// Waits between reconnect attempts: from the first to the last, then the last again.
const BACKOFF: &[Duration] = &[
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// What the follower keeps between connections.
#[derive(Default)]
struct Cursor {
    session_id: Option<String>,
    epoch: Option<String>,
    last_seq: u64,
}

impl Cursor {
    fn ask(&self) -> ResumeRequest {
        match (&self.session_id, &self.epoch) {
            (Some(id), Some(epoch)) => ResumeRequest {
                session_id: Some(id.clone()),
                epoch: Some(epoch.clone()),
                last_seq: Some(self.last_seq),
            },
            _ => ResumeRequest::default(),
        }
    }

    /// Takes `hello-ok.resume` in; the refusal reason, when the session could not be
    /// continued (then numbering starts again).
    fn took(&mut self, hello: &Value) -> Option<String> {
        let r = &hello["resume"];
        let asked = self.session_id.is_some();
        self.session_id = r["sessionId"].as_str().map(str::to_owned);
        self.epoch = r["epoch"].as_str().map(str::to_owned);
        if r["ok"] == true {
            return None;
        }
        self.last_seq = 0;
        asked.then(|| r["reason"].as_str().unwrap_or("refused").to_owned())
    }
}

pub(super) fn events(args: EventsArgs) -> ExitCode {
    let t = target(args.conn);
    let Some(rt) = runtime() else {
        return ExitCode::Failure;
    };
    let mut cursor = Cursor::default();
    let mut attempt = 0usize;
    // Off when the gateway is not Switchboard (it refuses the field): then a blip may
    // lose events, and the follower says so.
    let mut resumable = true;
    loop {
        let connected = rt.block_on(Client::connect_resuming(
            &t.url,
            &t.auth,
            t.pin.as_deref(),
            &[crate::auth::access::READ],
            resumable.then(|| cursor.ask()),
        ));
        let mut c = match connected {
            Ok(c) => c,
            Err(ClientError::Refused(why)) if resumable && why.contains("resume") => {
                eprintln!(
                    "note: this gateway cannot resume event streams; events sent while disconnected are lost"
                );
                resumable = false;
                continue;
            }
            // Refused (bad token, pairing): retrying will not help.
            Err(e @ ClientError::Refused(_)) => {
                eprintln!("error: {e}");
                return ExitCode::Unreachable;
            }
            Err(e) if !args.follow || (cursor.session_id.is_none() && cursor.last_seq == 0) => {
                eprintln!("error: {e}");
                return ExitCode::Unreachable;
            }
            Err(e) => {
                let wait = BACKOFF[attempt.min(BACKOFF.len() - 1)];
                attempt += 1;
                if attempt == 1 {
                    eprintln!("-- connection lost ({e}); reconnecting --");
                }
                std::thread::sleep(wait);
                continue;
            }
        };
        if attempt > 0 {
            eprintln!("-- reconnected --");
        }
        if !resumable && cursor.last_seq > 0 {
            if t.json {
                println!("{}", json!({"type": "gap", "reason": "not-resumable"}));
            } else {
                eprintln!("-- gap: events sent while disconnected are lost --");
            }
        }
        if resumable && let Some(reason) = cursor.took(&c.hello) {
            if t.json {
                println!("{}", json!({"type": "gap", "reason": reason}));
            } else {
                eprintln!("-- gap: events were missed ({reason}); numbering starts again --");
            }
        }
        // Three ticks without a frame: the link is dead even if the socket is not closed.
        let tick = c.hello["policy"]["tickIntervalMs"]
            .as_u64()
            .unwrap_or(30_000);
        c.set_timeout(Duration::from_millis(tick.saturating_mul(3).max(1_000)));
        loop {
            let ev = match rt.block_on(c.next_event()) {
                Ok(ev) => ev,
                Err(e) => {
                    if !args.follow {
                        eprintln!("error: {e}");
                        return ExitCode::Unreachable;
                    }
                    eprintln!("-- connection lost ({e}); reconnecting --");
                    attempt = 1;
                    break;
                }
            };
            if let Some(seq) = ev["seq"].as_u64() {
                cursor.last_seq = seq;
            }
            let name = ev["event"].as_str().unwrap_or_default();
            if !args.event.is_empty() && !args.event.iter().any(|e| e == name) {
                continue;
            }
            if t.json {
                println!("{ev}");
            } else {
                let seq = ev["seq"]
                    .as_u64()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                println!("{seq} {name} {}", ev["payload"]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_asks_for_a_session_then_resumes_it_and_reports_a_refusal_as_a_gap() {
        let mut c = Cursor::default();
        assert_eq!(c.ask(), ResumeRequest::default());
        let first = json!({"resume": {"ok": true, "sessionId": "s1", "epoch": "e1"}});
        assert_eq!(c.took(&first), None);
        c.last_seq = 9;
        assert_eq!(c.ask().last_seq, Some(9));
        assert_eq!(c.ask().session_id.as_deref(), Some("s1"));
        let refused = json!({"resume": {"ok": false, "reason": "epoch-changed", "sessionId": "s2", "epoch": "e2"}});
        assert_eq!(c.took(&refused).as_deref(), Some("epoch-changed"));
        assert_eq!((c.last_seq, c.ask().session_id.as_deref()), (0, Some("s2")));
    }
}
