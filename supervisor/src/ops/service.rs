//! `switchboard gateway install` / `uninstall`: the service definitions in `deploy/`,
//! rendered with this binary's path, written for the current user and loaded with
//! `systemctl --user` (Linux) or `launchctl` (macOS).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The unit shipped in `deploy/systemd/`.
pub const SYSTEMD_TEMPLATE: &str = include_str!("../../../deploy/systemd/switchboard.service");
/// The agent shipped in `deploy/launchd/`.
pub const LAUNCHD_TEMPLATE: &str =
    include_str!("../../../deploy/launchd/ai.switchboard.gateway.plist");
pub const SYSTEMD_UNIT: &str = "switchboard.service";
pub const LAUNCHD_LABEL: &str = "ai.switchboard.gateway";

/// Which service manager to write for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    pub fn native() -> Manager {
        if cfg!(target_os = "macos") {
            Manager::Launchd
        } else {
            Manager::Systemd
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot find the home directory (HOME is not set)")]
    NoHome,
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{command} failed: {output}")]
    Command { command: String, output: String },
}

/// What to run: this binary with `gateway run` and the arguments to keep.
#[derive(Debug, Clone)]
pub struct Program {
    pub exe: PathBuf,
    pub state_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

impl Program {
    fn args(&self) -> Vec<String> {
        let mut a = vec![
            self.exe.display().to_string(),
            "gateway".into(),
            "run".into(),
        ];
        if let Some(d) = &self.state_dir {
            a.push("--state-dir".into());
            a.push(d.display().to_string());
        }
        if let Some(c) = &self.config {
            a.push("--config".into());
            a.push(c.display().to_string());
        }
        a
    }
}

/// The systemd unit with this program's `ExecStart`.
pub fn render_systemd(p: &Program) -> String {
    let exec = p
        .args()
        .iter()
        .map(|a| systemd_quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    SYSTEMD_TEMPLATE
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                format!("ExecStart={exec}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn systemd_quote(a: &str) -> String {
    // `%` is a specifier in unit files; `$` would be expanded.
    let a = a.replace('%', "%%").replace('$', "$$");
    if a.chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\')
    {
        format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        a
    }
}

/// The launchd plist with this program's arguments and log paths.
pub fn render_launchd(p: &Program, log_dir: &Path) -> String {
    let start = LAUNCHD_TEMPLATE
        .find("<key>ProgramArguments</key>")
        .expect("template has ProgramArguments");
    let end = start
        + LAUNCHD_TEMPLATE[start..]
            .find("</array>")
            .expect("template closes ProgramArguments")
        + "</array>".len();
    let mut args = String::from("<key>ProgramArguments</key>\n  <array>\n");
    for a in p.args() {
        args.push_str(&format!("    <string>{}</string>\n", xml_escape(&a)));
    }
    args.push_str("  </array>");
    let out = format!(
        "{}{}{}",
        &LAUNCHD_TEMPLATE[..start],
        args,
        &LAUNCHD_TEMPLATE[end..]
    );
    out.replace(
        "/tmp/switchboard.gateway.out.log",
        &xml_escape(&log_dir.join("gateway.out.log").display().to_string()),
    )
    .replace(
        "/tmp/switchboard.gateway.err.log",
        &xml_escape(&log_dir.join("gateway.err.log").display().to_string()),
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Where the service file goes for the current user.
pub fn service_path(m: Manager, home: &Path) -> PathBuf {
    match m {
        Manager::Systemd => home.join(".config/systemd/user").join(SYSTEMD_UNIT),
        Manager::Launchd => home
            .join("Library/LaunchAgents")
            .join(format!("{LAUNCHD_LABEL}.plist")),
    }
}

pub fn home() -> Result<PathBuf, ServiceError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or(ServiceError::NoHome)
}

/// Writes the service file; loads and starts it unless `start` is false. Returns the
/// path written.
pub fn install(m: Manager, p: &Program, home: &Path, start: bool) -> Result<PathBuf, ServiceError> {
    let path = service_path(m, home);
    let text = match m {
        Manager::Systemd => render_systemd(p),
        Manager::Launchd => render_launchd(p, &home.join("Library/Logs/switchboard")),
    };
    let write = |path: &Path, text: &str| -> Result<(), ServiceError> {
        let err = |source| ServiceError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        std::fs::write(path, text).map_err(err)
    };
    write(&path, &text)?;
    if m == Manager::Launchd {
        let _ = std::fs::create_dir_all(home.join("Library/Logs/switchboard"));
    }
    if start {
        match m {
            Manager::Systemd => {
                run(&["systemctl", "--user", "daemon-reload"])?;
                run(&["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT])?;
            }
            Manager::Launchd => {
                let domain = format!("gui/{}", nix::unistd::getuid());
                let _ = run(&["launchctl", "bootout", &domain, &path.display().to_string()]);
                run(&[
                    "launchctl",
                    "bootstrap",
                    &domain,
                    &path.display().to_string(),
                ])?;
            }
        }
    }
    Ok(path)
}

/// Stops and removes the service. Returns the path removed, if there was one.
pub fn uninstall(m: Manager, home: &Path, stop: bool) -> Result<Option<PathBuf>, ServiceError> {
    let path = service_path(m, home);
    if stop {
        match m {
            Manager::Systemd => {
                let _ = run(&["systemctl", "--user", "disable", "--now", SYSTEMD_UNIT]);
            }
            Manager::Launchd => {
                let domain = format!("gui/{}", nix::unistd::getuid());
                let _ = run(&["launchctl", "bootout", &domain, &path.display().to_string()]);
            }
        }
    }
    if !path.exists() {
        return Ok(None);
    }
    std::fs::remove_file(&path).map_err(|source| ServiceError::Write {
        path: path.clone(),
        source,
    })?;
    if stop && m == Manager::Systemd {
        let _ = run(&["systemctl", "--user", "daemon-reload"]);
    }
    Ok(Some(path))
}

fn run(argv: &[&str]) -> Result<(), ServiceError> {
    let command = argv.join(" ");
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| ServiceError::Command {
            command: command.clone(),
            output: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ServiceError::Command {
            command,
            output: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program() -> Program {
        Program {
            exe: "/opt/my apps/switchboard".into(),
            state_dir: Some("/var/lib/sb 100%".into()),
            config: None,
        }
    }

    #[test]
    fn the_unit_runs_this_binary_with_its_state_dir() {
        let unit = render_systemd(&program());
        assert!(
            unit.contains("\nExecStart=\"/opt/my apps/switchboard\" gateway run --state-dir \"/var/lib/sb 100%%\"\n"),
            "{unit}"
        );
        assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
        assert_eq!(unit.matches("ExecStart=").count(), 1);
    }

    #[test]
    fn the_plist_runs_this_binary_and_logs_under_the_home() {
        let plist = render_launchd(&program(), Path::new("/Users/u/Library/Logs/switchboard"));
        assert!(
            plist.contains(
                "<string>/opt/my apps/switchboard</string>\n    <string>gateway</string>"
            ),
            "{plist}"
        );
        assert!(plist.contains("/Users/u/Library/Logs/switchboard/gateway.err.log"));
        assert!(!plist.contains("/usr/local/bin/switchboard"));
    }
}
