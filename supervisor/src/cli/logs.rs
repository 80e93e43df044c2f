//! `logs`: the gateway's log through `logs.tail`, else the local file, optionally followed.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use switchboard_schemas::methods::LogsTailParams;

use super::args::*;
use super::client::{Client, ClientError};
use super::remote::*;
use crate::config::{self, Flags, ProcessEnv};
use crate::ops::exit::ExitCode;

/// `logs`: from the gateway (`logs.tail`), else the local file.
pub(super) fn logs(args: LogsArgs) -> ExitCode {
    let t = target(args.conn);
    let local_file = t
        .state_dir
        .as_ref()
        .and_then(|d| runtime_info(d).and_then(|i| i["logFile"].as_str().map(PathBuf::from)))
        .or_else(|| {
            config::resolve(&Flags::default(), &ProcessEnv)
                .ok()
                .and_then(|c| c.logging.file)
        })
        .or_else(|| {
            t.state_dir
                .as_ref()
                .map(|d| d.join("logs").join("switchboard.log"))
        });
    let Some(rt) = runtime() else {
        return ExitCode::Failure;
    };
    let mut remote = if args.local {
        None
    } else {
        match rt.block_on(connect(&t)) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("note: {e}; reading the local log file instead");
                None
            }
        }
    };
    let limit = args.lines.clamp(1, crate::ops::logging::TAIL_MAX_LIMIT);
    let mut cursor: Option<u64> = None;
    loop {
        let slice = match remote.as_mut() {
            Some(c) => {
                let params = LogsTailParams {
                    cursor,
                    limit: Some(limit as u64),
                    max_bytes: Some(crate::ops::logging::TAIL_MAX_BYTES),
                };
                match rt.block_on(c.call("logs.tail", &params)) {
                    Ok(v) => serde_json::from_value::<TailView>(v).ok(),
                    Err(e) if args.follow && is_link_loss(&e) => {
                        // A blip or a restart: the file cursor resumes exactly where it
                        // stopped (a rotation in between is reported as one).
                        eprintln!("-- connection lost ({e}); reconnecting --");
                        *c = reconnect(&rt, &t);
                        eprintln!("-- reconnected --");
                        continue;
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::Unreachable;
                    }
                }
            }
            None => {
                let Some(path) = &local_file else {
                    eprintln!("error: no log file is configured");
                    return ExitCode::Config;
                };
                match crate::ops::logging::tail(
                    path,
                    cursor,
                    limit,
                    crate::ops::logging::TAIL_MAX_BYTES,
                ) {
                    Ok(t) => Some(TailView {
                        cursor: t.cursor,
                        lines: t.lines,
                        reset: t.reset,
                    }),
                    Err(e) => {
                        eprintln!("error: cannot read {}: {e}", path.display());
                        return ExitCode::Failure;
                    }
                }
            }
        };
        let Some(slice) = slice else {
            eprintln!("error: unexpected logs.tail answer");
            return ExitCode::Failure;
        };
        if slice.reset && cursor.is_some() {
            if t.json {
                println!(
                    "{}",
                    json!({"type": "notice", "message": "log file rotated"})
                );
            } else {
                eprintln!("-- log file rotated --");
            }
        }
        for line in &slice.lines {
            if t.json {
                match serde_json::from_str::<Value>(line) {
                    Ok(Value::Object(mut m)) => {
                        m.insert("type".into(), json!("log"));
                        println!("{}", Value::Object(m));
                    }
                    _ => println!("{}", json!({"type": "raw", "line": line})),
                }
            } else {
                println!("{line}");
            }
        }
        cursor = Some(slice.cursor);
        if !args.follow {
            return ExitCode::Ok;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether a failed call means the link went (worth reconnecting), not a refusal.
fn is_link_loss(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Closed | ClientError::Timeout | ClientError::Unreachable { .. }
    )
}

/// Connects again, waiting longer between attempts (up to 5 s), until it works.
fn reconnect(rt: &tokio::runtime::Runtime, t: &Target) -> Client {
    let mut wait = Duration::from_millis(100);
    loop {
        std::thread::sleep(wait);
        if let Ok(c) = rt.block_on(connect(t)) {
            return c;
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

#[derive(serde::Deserialize)]
pub(super) struct TailView {
    cursor: u64,
    lines: Vec<String>,
    #[serde(default)]
    reset: bool,
}
