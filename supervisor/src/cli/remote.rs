//! Client commands: finding the gateway and its credentials, one request, printing
//! the answer; `channels login`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use switchboard_schemas::methods::{ChannelsStatusParams, WebLoginStartParams, WebLoginWaitParams};

use super::args::*;
use crate::cli::client::{Client, Credentials};
use crate::config::{self, PASSWORD_ENV, ProcessEnv, TOKEN_ENV};
use crate::ops::exit::ExitCode;
use crate::secret::Secret;

/// What a running gateway publishes in its state directory (`gateway.json`).
pub(super) fn runtime_info(state_dir: &std::path::Path) -> Option<Value> {
    let text = std::fs::read_to_string(state_dir.join(crate::server::RUNTIME_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

pub(super) fn pid_alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// The URL and credentials a client command uses.
pub(super) struct Target {
    pub url: String,
    pub auth: Credentials,
    pub pin: Option<String>,
    pub json: bool,
    pub state_dir: Option<PathBuf>,
}

pub(super) fn target(conn: ConnArgs) -> Target {
    let env = ProcessEnv;
    let located = config::locate(&conn.locate.flags(), &env).ok();
    let file = located
        .as_ref()
        .and_then(|(_, path, _)| config::file::load(path).ok().flatten());
    let url = conn.url.clone().unwrap_or_else(|| {
        located
            .as_ref()
            .and_then(|(dir, _, _)| runtime_info(dir))
            .and_then(|i| i["url"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                let port = file
                    .as_ref()
                    .and_then(|f| f.gateway.port)
                    .unwrap_or(config::DEFAULT_PORT);
                format!("ws://127.0.0.1:{port}")
            })
    });
    // The token a local gateway generated for itself; only ever sent to a local gateway.
    let to_local = conn.url.as_deref().is_none_or(is_loopback_url);
    let generated = || {
        located
            .as_ref()
            .filter(|_| to_local)
            .and_then(|(dir, _, _)| crate::state::gateway_token::read(dir).ok().flatten())
    };
    let token = conn
        .token
        .and_then(Secret::new)
        .or_else(|| config::secret_from_env(TOKEN_ENV))
        .or_else(|| file.as_ref().and_then(|f| f.gateway.auth.token.clone()))
        .or_else(generated);
    let password = conn
        .password
        .and_then(Secret::new)
        .or_else(|| config::secret_from_env(PASSWORD_ENV))
        .or_else(|| file.as_ref().and_then(|f| f.gateway.auth.password.clone()));
    Target {
        url,
        auth: Credentials { token, password },
        pin: conn.tls_fingerprint,
        json: conn.json,
        state_dir: located.map(|(d, _, _)| d),
    }
}

/// `ws://127.0.0.1:…`, `ws://localhost:…`, `ws://[::1]:…`.
pub(super) fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    crate::config::channel::is_loopback_host(authority)
}

pub(super) fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

pub(super) async fn connect(t: &Target) -> Result<Client, crate::cli::client::ClientError> {
    Client::connect(
        &t.url,
        &t.auth,
        t.pin.as_deref(),
        &[crate::auth::access::ADMIN],
    )
    .await
}

pub(super) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs one request against the running gateway and prints the answer.
pub(super) fn call_gateway<P: serde::Serialize>(
    conn: ConnArgs,
    method: &str,
    params: &P,
) -> ExitCode {
    let t = target(conn);
    let Some(rt) = runtime() else {
        return ExitCode::Failure;
    };
    let result = rt.block_on(async { connect(&t).await?.call(method, params).await });
    match result {
        Ok(payload) => {
            if t.json {
                print_json(&payload);
            } else if method == "device.pair.list" {
                print_devices(&payload);
            } else if method == "pairing.list" {
                print_pairing(&payload);
            } else if method == "channels.status" {
                print_channels(&payload);
            } else if method == "channels.logout" {
                println!("{}", payload["message"].as_str().unwrap_or("logged out"));
            } else if method == "pairing.approve" {
                let a = &payload["approved"];
                println!(
                    "approved {} sender {} ({}){}",
                    a["channel"].as_str().unwrap_or("?"),
                    a["id"].as_str().unwrap_or("?"),
                    a["name"].as_str().unwrap_or(""),
                    if payload["notified"] == true {
                        "; they were told"
                    } else {
                        ""
                    }
                );
            } else if let Some(action) = method.strip_prefix("workers.") {
                if action == "list" {
                    print_workers(&payload);
                } else {
                    let w = &payload["worker"];
                    println!(
                        "{}: {action} requested (now {})",
                        w["name"].as_str().unwrap_or("?"),
                        w["state"].as_str().unwrap_or("?")
                    );
                }
            } else {
                print_json(&payload);
            }
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Unreachable
        }
    }
}

pub(super) fn print_workers(list: &Value) {
    println!(
        "{:<12} {:<9} {:>8} {:>8} {:>10}  last exit",
        "NAME", "STATE", "PID", "RESTARTS", "UPTIME"
    );
    for w in list["workers"].as_array().into_iter().flatten() {
        let uptime = w["uptimeMs"]
            .as_u64()
            .map(|ms| format!("{}s", ms / 1000))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<12} {:<9} {:>8} {:>8} {:>10}  {}",
            w["name"].as_str().unwrap_or("?"),
            w["state"].as_str().unwrap_or("?"),
            w["pid"]
                .as_u64()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            w["restarts"].as_u64().unwrap_or(0),
            uptime,
            w["lastExit"].as_str().unwrap_or("-"),
        );
        if let Some(c) = w["confinement"].as_str() {
            println!("{:<12} confinement: {c}", "");
        }
    }
}

pub(super) fn print_devices(list: &Value) {
    println!("PENDING");
    for p in list["pending"].as_array().into_iter().flatten() {
        println!(
            "  {}  device {}  {} {} from {}",
            p["requestId"].as_str().unwrap_or("?"),
            p["deviceId"].as_str().unwrap_or("?"),
            p["clientId"].as_str().unwrap_or("?"),
            p["role"].as_str().unwrap_or("?"),
            p["remoteIp"].as_str().unwrap_or("local"),
        );
    }
    println!("PAIRED");
    for d in list["paired"].as_array().into_iter().flatten() {
        println!(
            "  {}  {}  roles {}",
            d["deviceId"].as_str().unwrap_or("?"),
            d["displayName"]
                .as_str()
                .or(d["clientId"].as_str())
                .unwrap_or("?"),
            d["roles"],
        );
    }
}

pub(super) fn print_channels(status: &Value) {
    let order = status["channelOrder"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if order.is_empty() {
        let sections: Vec<String> = crate::channels::providers::ALL
            .iter()
            .map(|p| format!("channels.{}", p.id))
            .collect();
        println!(
            "no channels configured (see {} in config.json5)",
            sections.join(", ")
        );
    }
    for c in order {
        let name = c.as_str().unwrap_or("?");
        let s = &status["channels"][name];
        println!(
            "{:<10} {:<14} {}",
            name,
            s["state"].as_str().unwrap_or("?"),
            s["lastError"].as_str().unwrap_or("")
        );
    }
}

/// `channels login`: QR codes until one is scanned (the code rotates; each is shown).
pub(super) fn channels_login(conn: ConnArgs, channel: &str, force: bool, timeout: u64) -> ExitCode {
    let t = target(conn);
    let Some(rt) = runtime() else {
        return ExitCode::Failure;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(timeout.max(5));
    let result: Result<Result<String, String>, crate::cli::client::ClientError> = rt.block_on(async {
        let mut c = connect(&t).await?;
        // Only a channel whose worker announced QR linking can do this.
        let status = c.call("channels.status", &ChannelsStatusParams::default()).await?;
        let entry = &status["channels"][channel];
        if entry.is_null() {
            return Ok(Err(format!(
                "{channel} is not a configured channel (see `switchboard channels status`)"
            )));
        }
        let can_link = entry["capabilities"]
            .as_array()
            .is_some_and(|caps| caps.iter().any(|c| c == "login.qr"));
        if !can_link && entry["running"] == true {
            return Ok(Err(format!(
                "{channel} does not link by QR code; its credentials are set in config.json5"
            )));
        }
        c.set_timeout(Duration::from_secs(330));
        let mut last_qr = String::new();
        let mut force = force;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(Err("gave up waiting for the QR code to be scanned".to_owned()));
            }
            let start = c
                .call(
                    "web.login.start",
                    &WebLoginStartParams {
                        force: Some(force),
                        timeout_ms: Some(left.min(Duration::from_secs(30)).as_millis() as u64),
                        ..Default::default()
                    },
                )
                .await?;
            force = false;
            let message = start["message"].as_str().unwrap_or("").to_owned();
            if start["linkedAs"].is_string() {
                return Ok(Ok(message));
            }
            match start["qrCode"].as_str() {
                Some(qr) if qr != last_qr => {
                    if t.json {
                        println!("{}", json!({"qrCode": qr, "qrDataUrl": start["qrDataUrl"], "message": message}));
                    } else {
                        println!("{}", crate::channels::qr::terminal(qr).unwrap_or_default());
                        println!("{message} (the code changes every ~20 s; this command keeps up)");
                    }
                    last_qr = qr.to_owned();
                }
                Some(_) => {}
                None => return Ok(Err(message)),
            }
            let valid = start["qrValidMs"].as_u64().unwrap_or(20_000).max(1_000);
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let wait_ms = (valid as u128).min(left.as_millis()).max(1_000) as u64;
            let w = c
                .call(
                    "web.login.wait",
                    &WebLoginWaitParams {
                        timeout_ms: Some(wait_ms),
                        ..Default::default()
                    },
                ).await?;
            let message = w["message"].as_str().unwrap_or("").to_owned();
            if w["connected"] == true {
                return Ok(Ok(message));
            }
            if !message.starts_with("Still waiting") {
                return Ok(Err(message));
            }
        }
    });
    match result {
        Ok(Ok(message)) => {
            if t.json {
                println!("{}", json!({"linked": true, "message": message}));
            } else {
                println!("{message}");
            }
            ExitCode::Ok
        }
        Ok(Err(message)) => {
            if t.json {
                println!("{}", json!({"linked": false, "message": message}));
            }
            eprintln!("error: {message}");
            ExitCode::Unreachable
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Unreachable
        }
    }
}

pub(super) fn print_pairing(list: &Value) {
    println!("PENDING");
    for r in list["requests"].as_array().into_iter().flatten() {
        println!(
            "  {:<9} {}  {} {}  (expires in {} min)",
            r["channel"].as_str().unwrap_or("?"),
            r["code"].as_str().unwrap_or("?"),
            r["id"].as_str().unwrap_or("?"),
            r["name"].as_str().unwrap_or(""),
            r["expiresAt"]
                .as_u64()
                .map(|t| t.saturating_sub(crate::clock::now_ms()) / 60_000)
                .unwrap_or(0),
        );
    }
    println!("APPROVED");
    for a in list["allowed"].as_array().into_iter().flatten() {
        println!(
            "  {:<9} {}  {}",
            a["channel"].as_str().unwrap_or("?"),
            a["id"].as_str().unwrap_or("?"),
            a["name"].as_str().unwrap_or(""),
        );
    }
}
