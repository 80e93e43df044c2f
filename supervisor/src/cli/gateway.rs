//! `gateway run|status|restart|install|uninstall|fingerprint` and `config validate|show`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use switchboard_schemas::methods::{HealthParams, NoParams};

use super::args::*;
use super::remote::*;
use crate::config::{self, ProcessEnv};
use crate::ops::exit::ExitCode;

pub(super) fn fingerprint(args: FingerprintArgs) -> ExitCode {
    let state_dir = match args
        .state_dir
        .map(Ok)
        .unwrap_or_else(config::default_state_dir)
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Config;
        }
    };
    let (cert, key) = crate::net::tls::paths(
        &state_dir,
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
    );
    let result = crate::net::tls::ensure_certificate(&cert, &key)
        .and_then(|_| crate::net::tls::file_fingerprint(&cert));
    match result {
        Ok(fp) => {
            if args.json {
                println!(
                    "{}",
                    json!({"sha256": crate::net::tls::normalize_fingerprint(&fp), "fingerprint256": fp, "certificate": cert})
                );
            } else {
                println!("{fp}");
            }
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Config
        }
    }
}

pub(super) fn config_command(command: ConfigCommand) -> ExitCode {
    let (args, show) = match command {
        ConfigCommand::Validate(a) => (a, false),
        ConfigCommand::Show(a) => (a, true),
    };
    let flags = args.locate.flags();
    match config::resolve(&flags, &ProcessEnv) {
        Ok(cfg) => {
            if show {
                print_json(&cfg.masked());
            } else if args.json {
                println!(
                    "{}",
                    json!({"ok": true, "configFile": cfg.config_file, "problems": []})
                );
            } else {
                match &cfg.config_file {
                    Some(p) => println!("configuration OK: {}", p.display()),
                    None => println!("configuration OK (no config file: every default applies)"),
                }
            }
            ExitCode::Ok
        }
        Err(e) => {
            if args.json {
                let problems: Vec<String> = match &e {
                    config::ConfigError::Invalid { problems, .. } => problems.clone(),
                    other => vec![other.to_string()],
                };
                println!("{}", json!({"ok": false, "problems": problems}));
            } else {
                eprintln!("error: {e}");
            }
            ExitCode::Config
        }
    }
}

/// `gateway status`: the runtime file, the process, then the gateway itself.
pub(super) fn gateway_status(args: LocalArgs) -> ExitCode {
    let t = target(args.conn);
    let report = |running: bool, v: Value, text: String| {
        if t.json {
            let mut v = v;
            v["running"] = json!(running);
            print_json(&v);
        } else {
            println!("{text}");
        }
        if running {
            ExitCode::Ok
        } else {
            ExitCode::Unreachable
        }
    };
    let Some(dir) = &t.state_dir else {
        return report(
            false,
            json!({"reason": "no state directory"}),
            "not running (no state directory)".into(),
        );
    };
    let Some(info) = runtime_info(dir) else {
        return report(
            false,
            json!({"stateDir": dir}),
            format!("not running (no gateway for {})", dir.display()),
        );
    };
    let pid = info["pid"].as_u64().unwrap_or(0) as u32;
    if pid == 0 || !pid_alive(pid) {
        return report(
            false,
            json!({"stateDir": dir, "stalePid": pid}),
            format!("not running (the last gateway, pid {pid}, is gone)"),
        );
    }
    let Some(rt) = runtime() else {
        return ExitCode::Failure;
    };
    let url = info["url"].as_str().unwrap_or(&t.url).to_owned();
    let t2 = Target {
        url: url.clone(),
        auth: t.auth.clone(),
        pin: t.pin.clone(),
        json: t.json,
        state_dir: None,
    };
    let status = rt.block_on(async {
        let mut c = connect(&t2).await?;
        let workers = c.call("workers.list", &NoParams {}).await?;
        let health = c.call("health", &HealthParams::default()).await?;
        Ok::<_, crate::cli::client::ClientError>((workers, health))
    });
    match status {
        Ok((workers, health)) => {
            let uptime = health["gateway"]["uptimeMs"].as_u64();
            let v = json!({"pid": pid, "url": url, "stateDir": dir, "version": info["version"],
                           "uptimeMs": uptime, "workers": workers["workers"],
                           "configFile": info["configFile"], "logFile": info["logFile"]});
            if !t.json {
                println!(
                    "running: pid {pid}, {url}, up {}, version {}",
                    uptime
                        .map(|ms| human_duration(Duration::from_millis(ms)))
                        .unwrap_or_else(|| "?".into()),
                    info["version"].as_str().unwrap_or("?")
                );
                println!("state directory: {}", dir.display());
                print_workers(&workers);
            }
            if t.json {
                let mut v = v;
                v["running"] = json!(true);
                print_json(&v);
            }
            ExitCode::Ok
        }
        Err(e) => report(
            false,
            json!({"pid": pid, "url": url, "error": e.to_string()}),
            format!("process {pid} runs but the gateway does not answer at {url}: {e}"),
        ),
    }
}

pub(super) fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

/// `gateway restart`: SIGUSR1 to the local gateway, then wait until it serves again.
pub(super) fn gateway_restart(args: LocalArgs) -> ExitCode {
    let t = target(args.conn);
    let Some(dir) = t.state_dir.clone() else {
        eprintln!("error: no state directory");
        return ExitCode::Config;
    };
    let Some(info) = runtime_info(&dir) else {
        eprintln!("error: no gateway runs for {}", dir.display());
        return ExitCode::Unreachable;
    };
    let pid = info["pid"].as_u64().unwrap_or(0) as u32;
    if pid == 0 || !pid_alive(pid) {
        eprintln!(
            "error: no gateway runs for {} (pid {pid} is gone)",
            dir.display()
        );
        return ExitCode::Unreachable;
    }
    let before = info["startedAtMs"].as_u64().unwrap_or(0);
    let started = std::time::Instant::now();
    if let Err(e) = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGUSR1,
    ) {
        eprintln!("error: cannot signal pid {pid}: {e}");
        return ExitCode::Failure;
    }
    let Some(rt) = runtime() else {
        return ExitCode::Failure;
    };
    let deadline = started + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Some(now) = runtime_info(&dir)
            && now["startedAtMs"].as_u64().unwrap_or(0) > before
        {
            let url = now["url"].as_str().unwrap_or(&t.url).to_owned();
            let t2 = Target {
                url,
                auth: t.auth.clone(),
                pin: t.pin.clone(),
                json: t.json,
                state_dir: None,
            };
            if rt
                .block_on(async {
                    connect(&t2)
                        .await?
                        .call("health", &HealthParams::default())
                        .await
                })
                .is_ok()
            {
                let ms = started.elapsed().as_millis() as u64;
                if t.json {
                    println!("{}", json!({"restarted": true, "pid": pid, "ms": ms}));
                } else {
                    println!("restarted (pid {pid}) and serving again after {ms} ms");
                }
                return ExitCode::Ok;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("error: the gateway did not come back within 60 s; see `switchboard logs --local`");
    ExitCode::Unreachable
}

pub(super) fn install_command(args: InstallArgs, uninstall: bool) -> ExitCode {
    use crate::ops::service::{self, Manager, Program};
    let m = match args.manager {
        Some(ManagerArg::Systemd) => Manager::Systemd,
        Some(ManagerArg::Launchd) => Manager::Launchd,
        None => Manager::native(),
    };
    let home = match service::home() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Config;
        }
    };
    if uninstall {
        return match service::uninstall(m, &home, !args.no_start) {
            Ok(Some(p)) => {
                if args.json {
                    println!("{}", json!({"removed": p}));
                } else {
                    println!("removed {}", p.display());
                }
                ExitCode::Ok
            }
            Ok(None) => {
                if args.json {
                    println!("{}", json!({"removed": null}));
                } else {
                    println!("not installed");
                }
                ExitCode::Ok
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::Failure
            }
        };
    }
    // The unit runs this very binary; a relative state dir would depend on systemd's cwd.
    let absolute = |p: Option<PathBuf>| p.map(|p| std::path::absolute(&p).unwrap_or(p));
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find this executable: {e}");
            return ExitCode::Failure;
        }
    };
    let program = Program {
        exe,
        state_dir: absolute(args.locate.state_dir.clone()),
        config: absolute(args.locate.config.clone()),
    };
    // Refuse to install a service that would fail on its first start.
    if let Err(e) = config::resolve(&args.locate.flags(), &ProcessEnv) {
        eprintln!("error: {e}");
        return ExitCode::Config;
    }
    if args.print {
        match m {
            Manager::Systemd => print!("{}", service::render_systemd(&program)),
            Manager::Launchd => print!(
                "{}",
                service::render_launchd(&program, &home.join("Library/Logs/switchboard"))
            ),
        }
        return ExitCode::Ok;
    }
    match service::install(m, &program, &home, !args.no_start) {
        Ok(path) => {
            if args.json {
                println!("{}", json!({"installed": path, "started": !args.no_start}));
            } else {
                println!("installed {}", path.display());
                if args.no_start {
                    println!("not started (--no-start)");
                } else {
                    println!("started; `switchboard gateway status` shows it");
                }
            }
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Failure
        }
    }
}

pub(super) fn gateway_run(args: RunArgs) -> ExitCode {
    // Captured first: after an upgrade replaced the binary, a restart executes the new one.
    let exe = std::env::current_exe().ok();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let config = match config::resolve(&args.flags(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            crate::ops::logging::init_stderr("info");
            tracing::error!("{e}");
            return ExitCode::Config;
        }
    };
    if let Some(warning) = crate::ops::logging::init(&config.logging) {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::Failure;
        }
    };
    let stopped = runtime.block_on(crate::server::run(config));
    runtime.shutdown_timeout(Duration::from_secs(2));
    match stopped {
        Ok(crate::server::Stopped::Exit) => ExitCode::Ok,
        Ok(crate::server::Stopped::Restart { port }) => {
            let Some(exe) = exe else {
                tracing::error!("cannot restart: the executable's path is unknown");
                return ExitCode::Failure;
            };
            use std::os::unix::process::CommandExt;
            tracing::info!(exe = %exe.display(), "executing the gateway again");
            // Only returns on failure; every descriptor is close-on-exec, so the lock,
            // the database and the sockets are released by the exec.
            let e = std::process::Command::new(&exe)
                .args(&argv)
                .env(config::RESTART_PORT_ENV, port.to_string())
                .exec();
            tracing::error!(error = %e, "cannot execute {}", exe.display());
            ExitCode::Failure
        }
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}

/// `gateway token`: the configured token, else the generated one of the state directory.
pub(super) fn token(args: TokenArgs) -> ExitCode {
    let cfg = match config::resolve(&args.locate.flags(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Config;
        }
    };
    let token = match &cfg.auth.token {
        Some(t) => t.clone(),
        None if cfg.auth.password.is_some() => {
            eprintln!(
                "error: this gateway uses a password, not a token (gateway.auth.password); clients present it as their password"
            );
            return ExitCode::Config;
        }
        None => match crate::state::gateway_token::read(&cfg.state_dir) {
            Ok(Some(t)) => t,
            Ok(None) => {
                eprintln!(
                    "error: no gateway token yet: the gateway makes one at its first start \
                     (run `switchboard gateway run`), in {}",
                    crate::state::gateway_token::path(&cfg.state_dir).display()
                );
                return ExitCode::Unreachable;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::State;
            }
        },
    };
    if args.env {
        for name in config::TOKEN_ENV {
            println!("export {name}={}", token.expose());
        }
    } else {
        println!("{}", token.expose());
    }
    ExitCode::Ok
}
