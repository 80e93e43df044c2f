//! A stand-in `signal-cli` executable for tests that give the Signal worker a `cliPath`:
//! it understands `[-a ACCOUNT] daemon --http [HOST:PORT] [--no-receive-stdout]
//! [--receive-mode on-start|on-connection|manual]` (signal-cli(1)) and serves the
//! daemon's HTTP API from `switchboard_tests::standin_signal` (written from signal-cli's
//! documentation; see there).
//!
//! Test controls, from the environment: `STANDIN_SIGNAL_DIR` (each run writes
//! `<pid>.json` there: pid, port, arguments), `STANDIN_SIGNAL_KEEPALIVE_MS` (default
//! 15000, signal-cli's), `STANDIN_SIGNAL_STARTUP_MS` (time before it listens, as the JVM
//! takes; default 200), `STANDIN_SIGNAL_UNREGISTERED=1` (fails as signal-cli does for an
//! account it does not know).

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_tests::standin_signal::{State, serve};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut account = None;
    let mut http = None;
    let mut mode = "on-start".to_owned();
    let mut daemon = false;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-a" | "--account" => {
                i += 1;
                account = args.get(i).cloned();
            }
            "daemon" => daemon = true,
            "--http" => {
                // The address is optional (default localhost:8080).
                match args.get(i + 1) {
                    Some(a) if !a.starts_with('-') => {
                        http = Some(a.clone());
                        i += 1;
                    }
                    _ => http = Some("localhost:8080".into()),
                }
            }
            "--receive-mode" => {
                i += 1;
                mode = args.get(i).cloned().unwrap_or_default();
            }
            "--no-receive-stdout" => {}
            other => {
                eprintln!("signal-cli: error: unrecognized arguments: '{other}'");
                return ExitCode::from(1);
            }
        }
        i += 1;
    }
    let (Some(account), true, Some(http)) = (account, daemon, http) else {
        eprintln!("usage: standin-signal-cli -a ACCOUNT daemon --http HOST:PORT");
        return ExitCode::from(1);
    };
    if !["on-start", "on-connection", "manual"].contains(&mode.as_str()) {
        eprintln!("signal-cli: error: argument --receive-mode: invalid choice: '{mode}'");
        return ExitCode::from(1);
    }
    let env_ms = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    std::thread::sleep(Duration::from_millis(env_ms(
        "STANDIN_SIGNAL_STARTUP_MS",
        200,
    )));
    if std::env::var("STANDIN_SIGNAL_UNREGISTERED").is_ok_and(|v| v == "1") {
        eprintln!("User {account} is not registered.");
        return ExitCode::from(1);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&http).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("Failed to start HTTP server on {http}: {e}");
                return ExitCode::from(3);
            }
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let host = http.rsplit_once(':').map(|(h, _)| h).unwrap_or("localhost").to_owned();
        let mut st = State::new_for(&account);
        st.keepalive = Duration::from_millis(env_ms("STANDIN_SIGNAL_KEEPALIVE_MS", 15_000));
        st.on_connection = mode != "on-start";
        if let Ok(dir) = std::env::var("STANDIN_SIGNAL_DIR") {
            let pid = std::process::id();
            let info = serde_json::json!({"pid": pid, "port": port, "args": std::env::args().skip(1).collect::<Vec<_>>()});
            let tmp = format!("{dir}/{pid}.tmp");
            let _ = std::fs::write(&tmp, info.to_string());
            let _ = std::fs::rename(&tmp, format!("{dir}/{pid}.json"));
        }
        eprintln!("INFO  HttpServerHandler - Started HTTP server on {http}");
        serve(listener, host, Arc::new(Mutex::new(st)), Arc::default()).await;
        ExitCode::SUCCESS
    })
}
