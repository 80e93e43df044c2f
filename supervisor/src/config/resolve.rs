//! Resolution: for every setting the flag, else the environment, else the file, else the
//! default, and one validation pass that collects every problem with its key.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::channel;
use super::env::{Env, worker_dir};
use super::file;
use super::settings::*;
use super::{AgentBackend, LogFormat};
use crate::secret::Secret;
use crate::workers::{Confinement, WorkerSpec};

/// Resolves and validates the whole configuration.
pub fn resolve(flags: &Flags, env: &dyn Env) -> Result<GatewayConfig, ConfigError> {
    let (state_dir, path, explicit) = locate(flags, env)?;
    let file = match file::load(&path)? {
        Some(f) => Some(f),
        None if explicit => return Err(ConfigError::Missing(path)),
        None => None,
    };
    let mut r = Resolver {
        flags,
        env,
        problems: Vec::new(),
        cfg: GatewayConfig::with_state_dir(state_dir),
    };
    r.cfg.config_file = file.as_ref().map(|_| path.clone());
    r.cfg.flags = ResolvedFlags(flags.clone());
    r.cfg.config_path = path.clone();
    let f = file.unwrap_or_default();
    r.gateway(&f.gateway);
    r.logging(&f.logging);
    r.cfg.metrics = f.metrics.enabled.unwrap_or(true);
    r.agent(&f.agent);
    r.channels(&f.channels);
    r.extra_workers(&f.workers);
    r.confinement(&f.confinement);
    r.cron(&f.cron, &f.agents);
    if !r.problems.is_empty() {
        return Err(ConfigError::Invalid {
            path: r.cfg.config_file.clone(),
            problems: r.problems,
        });
    }
    r.cfg.validate()?;
    Ok(r.cfg)
}

pub(super) struct Resolver<'a> {
    flags: &'a Flags,
    env: &'a dyn Env,
    problems: Vec<String>,
    cfg: GatewayConfig,
}

impl Resolver<'_> {
    /// `gateway.resume`: each bound within a range that keeps a replay cheap and the
    /// resumed connection under its queue bound.
    fn resume(&mut self, r: &file::ResumeFile) {
        use crate::events::resume::MAX_BYTES_LIMIT;
        let l = &mut self.cfg.resume;
        let mut bad = Vec::new();
        if let Some(n) = r.max_events {
            if (1..=100_000).contains(&n) {
                l.max_events = n;
            } else {
                bad.push((
                    "gateway.resume.maxEvents",
                    "must be between 1 and 100000".to_owned(),
                ));
            }
        }
        if let Some(n) = r.max_bytes {
            if (1024..=MAX_BYTES_LIMIT).contains(&n) {
                l.max_bytes = n;
            } else {
                bad.push((
                    "gateway.resume.maxBytes",
                    format!("must be between 1024 and {MAX_BYTES_LIMIT}"),
                ));
            }
        }
        if let Some(ms) = r.window_ms {
            if (1_000..=3_600_000).contains(&ms) {
                l.window = Duration::from_millis(ms);
            } else {
                bad.push((
                    "gateway.resume.windowMs",
                    "must be between 1000 and 3600000 (an hour)".to_owned(),
                ));
            }
        }
        if let Some(n) = r.max_sessions {
            if (1..=100_000).contains(&n) {
                l.max_detached = n;
            } else {
                bad.push((
                    "gateway.resume.maxSessions",
                    "must be between 1 and 100000".to_owned(),
                ));
            }
        }
        for (key, what) in bad {
            self.problem(key, what);
        }
    }

    fn problem(&mut self, key: &str, what: impl std::fmt::Display) {
        self.problems.push(format!("{key}: {what}"));
    }

    /// `cron` and `agents.defaults` (workspace, heartbeat).
    fn cron(&mut self, c: &file::CronFile, a: &file::AgentsFile) {
        use switchboard_schemas::methods::CronMisfire;
        self.cfg.cron_enabled = c.enabled.unwrap_or(true);
        if c.skip_missed_jobs == Some(true) {
            self.cfg.cron_default_misfire = CronMisfire::Skip;
        }
        if let Some(w) = &a.defaults.workspace {
            self.cfg.workspace = w.clone();
        }
        let h = &a.defaults.heartbeat;
        // Absent or zero: no recurring beats; the rest still applies to a woken beat.
        let every = match h
            .every
            .as_deref()
            .map(crate::cron::schedule::parse_duration)
        {
            None => None,
            Some(Ok(d)) => Some(d).filter(|d| !d.is_zero()),
            Some(Err(e)) => {
                self.problem("agents.defaults.heartbeat.every", e);
                None
            }
        };
        let mut active_hours = None;
        if let Some(ah) = &h.active_hours {
            let start = crate::cron::schedule::parse_hhmm(&ah.start);
            let end = crate::cron::schedule::parse_hhmm(&ah.end);
            let tz_ok = ah
                .timezone
                .as_deref()
                .is_none_or(|z| jiff::tz::TimeZone::get(z).is_ok());
            match (start, end) {
                (Some(s), Some(e)) if tz_ok => {
                    active_hours = Some((s, e, ah.timezone.clone()));
                }
                (Some(_), Some(_)) => self.problem(
                    "agents.defaults.heartbeat.activeHours.timezone",
                    "unknown time zone",
                ),
                _ => self.problem(
                    "agents.defaults.heartbeat.activeHours",
                    "start and end must be HH:MM (00:00-24:00)",
                ),
            }
        }
        use crate::config::settings::HeartbeatTarget;
        let target = match h
            .target
            .as_deref()
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .as_deref()
        {
            None | Some("owner") => HeartbeatTarget::Owner,
            Some("last") => HeartbeatTarget::Last,
            Some("none") => HeartbeatTarget::None,
            Some(c) if crate::channels::providers::get(c).is_some() => {
                HeartbeatTarget::Channel(c.to_owned())
            }
            Some(c) => {
                self.problem(
                    "agents.defaults.heartbeat.target",
                    format!(
                        "unknown target {c:?}: owner, last, none or a channel id ({})",
                        crate::channels::providers::ALL
                            .iter()
                            .map(|p| p.id)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                HeartbeatTarget::None
            }
        };
        self.cfg.heartbeat = crate::config::settings::HeartbeatConfig {
            every,
            active_hours,
            prompt: h
                .prompt
                .clone()
                .filter(|p| !p.trim().is_empty())
                .unwrap_or_else(|| crate::config::settings::DEFAULT_HEARTBEAT_PROMPT.to_owned()),
            target,
            to: h
                .to
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        };
    }

    /// A secret from a flag, else the environment, else the file; records its source.
    fn secret(
        &mut self,
        key: &str,
        flag: Option<(&str, &Option<String>)>,
        env: &[&'static str],
        file: &Option<Secret>,
    ) -> Option<Secret> {
        if let Some((name, Some(v))) = flag
            && let Some(s) = Secret::new(v.as_str())
        {
            self.cfg.sources.insert(key.into(), format!("flag {name}"));
            return Some(s);
        }
        if let Some((name, v)) = self.env.first(env)
            && let Some(s) = Secret::new(v)
        {
            self.cfg.sources.insert(key.into(), format!("env {name}"));
            return Some(s);
        }
        if file.is_some() {
            self.cfg.sources.insert(key.into(), "config file".into());
        }
        file.clone()
    }

    fn gateway(&mut self, g: &file::GatewayFile) {
        let port = self.flags.port.or_else(|| {
            self.env
                .first(&["SWITCHBOARD_GATEWAY_PORT"])
                .and_then(|(_, p)| p.trim().parse().ok())
        });
        self.cfg.port = port.or(g.port).unwrap_or(DEFAULT_PORT);
        // Port 0 means "pick one"; a gateway restarting in place keeps the one it picked.
        if self.cfg.port == 0
            && let Some(p) = self
                .env
                .first(&[RESTART_PORT_ENV])
                .and_then(|(_, p)| p.trim().parse().ok())
        {
            self.cfg.port = p;
        }
        let bind = self
            .flags
            .bind
            .clone()
            .or_else(|| {
                self.env
                    .first(&["SWITCHBOARD_GATEWAY_BIND"])
                    .map(|(_, v)| v)
            })
            .or_else(|| g.bind.clone());
        if let Some(b) = bind {
            match BindMode::parse(&b) {
                Ok(m) => self.cfg.bind = m,
                Err(_) => self.problem(
                    "gateway.bind",
                    format!("{b:?} is not loopback, lan or an IP address"),
                ),
            }
        }
        self.cfg.auth.token = self.secret(
            "gateway.auth.token",
            Some(("--token", &self.flags.token)),
            TOKEN_ENV,
            &g.auth.token,
        );
        self.cfg.auth.password = self.secret(
            "gateway.auth.password",
            Some(("--password", &self.flags.password)),
            PASSWORD_ENV,
            &g.auth.password,
        );
        let tls_on = self.flags.tls
            || self.flags.tls_cert.is_some()
            || self.flags.tls_key.is_some()
            || g.tls.enabled.unwrap_or(false);
        if tls_on {
            let cert = self.flags.tls_cert.clone().or_else(|| g.tls.cert.clone());
            let key = self.flags.tls_key.clone().or_else(|| g.tls.key.clone());
            if cert.is_some() != key.is_some() {
                self.problem(
                    "gateway.tls",
                    "give both a certificate and a key, or neither (a self-signed pair is then generated)",
                );
            }
            for (what, p) in [("cert", &cert), ("key", &key)] {
                if let Some(p) = p
                    && !p.exists()
                {
                    self.problem(
                        &format!("gateway.tls.{what}"),
                        format!("{} does not exist", p.display()),
                    );
                }
            }
            let (cert, key) =
                crate::net::tls::paths(&self.cfg.state_dir, cert.as_deref(), key.as_deref());
            self.cfg.tls = Some(TlsFiles { cert, key });
        }
        if let Some(root) = g.control_ui.root.as_ref()
            && g.control_ui.enabled != Some(false)
        {
            let root = if root.is_absolute() {
                root.clone()
            } else {
                self.cfg.state_dir.join(root)
            };
            match root.canonicalize() {
                Ok(dir) if dir.join("index.html").is_file() => self.cfg.control_ui_root = Some(dir),
                Ok(dir) => self.problem(
                    "gateway.controlUi.root",
                    format!(
                        "{} has no index.html (give the folder of an installed Control UI, e.g. node_modules/openclaw/dist/control-ui)",
                        dir.display()
                    ),
                ),
                Err(e) => self.problem(
                    "gateway.controlUi.root",
                    format!("{}: {e}", root.display()),
                ),
            }
        }
        let per_second = match self.env.first(&["SWITCHBOARD_REQUESTS_PER_SECOND"]) {
            Some((name, v)) => match v.trim().parse::<u32>() {
                Ok(n) => Some(n),
                Err(_) => {
                    self.problem(
                        "gateway.requests.perSecond",
                        format!("{name}={v:?}: expected a whole number (0: no limit)"),
                    );
                    None
                }
            },
            None => g.requests.per_second,
        };
        let mut rate = crate::auth::request_budget::RequestRate::default();
        if let Some(n) = per_second {
            rate.per_second = n;
        }
        if let Some(b) = g.requests.burst {
            if b == 0 {
                self.problem(
                    "gateway.requests.burst",
                    "must be at least 1 (set perSecond to 0 for no limit)",
                );
            }
            rate.burst = b;
        }
        self.cfg.request_rate = rate;
        self.resume(&g.resume);
        self.cfg.canvas_enabled = g.canvas_host.enabled.unwrap_or(true);
        match self.env.first(&["SWITCHBOARD_CANVAS_PORT"]) {
            Some((name, v)) => match v.trim().parse::<u16>() {
                Ok(p) => self.cfg.canvas_port = p,
                Err(_) => self.problem(
                    "gateway.canvasHost.port",
                    format!("{name}={v:?}: expected a port number (0: any free one)"),
                ),
            },
            None => {
                if let Some(p) = g.canvas_host.port {
                    self.cfg.canvas_port = p;
                }
            }
        }
        let n = &g.nodes;
        let listed = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter()
                .chain(b)
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect()
        };
        self.cfg.node_commands = crate::nodes::CommandPolicy {
            allow: listed(&n.commands.allow, &n.allow_commands),
            deny: listed(&n.commands.deny, &n.deny_commands),
        };
        for (key, list) in [
            ("gateway.nodes.commands.allow", &n.commands.allow),
            ("gateway.nodes.allowCommands", &n.allow_commands),
            ("gateway.nodes.commands.deny", &n.commands.deny),
            ("gateway.nodes.denyCommands", &n.deny_commands),
        ] {
            if list.len() > 512 || list.iter().any(|c| c.len() > 128) {
                self.problem(key, "at most 512 commands of at most 128 characters each");
            }
        }
        let handshake = self.flags.handshake_timeout_ms.or(g.handshake_timeout_ms);
        if let Some(ms) = handshake {
            if !(10..=300_000).contains(&ms) {
                self.problem(
                    "gateway.handshakeTimeoutMs",
                    "must be between 10 and 300000",
                );
            }
            self.cfg.handshake_timeout = Duration::from_millis(ms.max(10));
        }
        if let Some(ms) = g.shutdown_grace_ms {
            if ms > 600_000 {
                self.problem(
                    "gateway.shutdownGraceMs",
                    "must be at most 600000 (10 minutes)",
                );
            }
            self.cfg.shutdown_grace = Duration::from_millis(ms);
        }
        if let Some(ms) = self.flags.tick_interval_ms {
            self.cfg.tick_interval = Duration::from_millis(ms.max(10));
        }
        self.cfg.reset_state = self.flags.reset_state;
        if let Some(b) = self.flags.max_queued_bytes {
            self.cfg.max_queued_bytes = b.max(64 * 1024);
        }
        if let Some(ms) = self.flags.worker_health_interval_ms {
            let interval = Duration::from_millis(ms.max(50));
            self.cfg.worker_timing.health_interval = interval;
            self.cfg.worker_timing.health_deadline = (interval / 2).min(Duration::from_secs(1));
        }
    }

    fn logging(&mut self, l: &file::LoggingFile) {
        let level = self
            .env
            .first(&["SWITCHBOARD_LOG", "RUST_LOG"])
            .map(|(_, v)| v)
            .or_else(|| l.level.clone());
        if let Some(level) = level {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
                self.problem(
                    "logging.level",
                    format!("{level:?} is not a log filter: {e}"),
                );
            }
            self.cfg.logging.level = level;
        }
        match self.env.first(&["SWITCHBOARD_LOG_FORMAT"]) {
            Some((_, v)) => match v.trim() {
                "json" => self.cfg.logging.format = LogFormat::Json,
                "text" => self.cfg.logging.format = LogFormat::Text,
                other => self.problem(
                    "logging.format",
                    format!("SWITCHBOARD_LOG_FORMAT={other:?}: expected text or json"),
                ),
            },
            None => self.cfg.logging.format = l.format.unwrap_or(LogFormat::Text),
        }
        match &l.file {
            Some(file::LogFileSetting::Enabled(false)) => self.cfg.logging.file = None,
            Some(file::LogFileSetting::Enabled(true)) | None => {}
            Some(file::LogFileSetting::Path(p)) => self.cfg.logging.file = Some(p.clone()),
        }
        if let Some(b) = l.max_file_bytes {
            if b < 64 * 1024 {
                self.problem("logging.maxFileBytes", "must be at least 65536");
            }
            self.cfg.logging.max_file_bytes = b.max(64 * 1024);
        }
        if let Some(n) = l.max_files {
            if !(1..=100).contains(&n) {
                self.problem("logging.maxFiles", "must be between 1 and 100");
            }
            self.cfg.logging.max_files = n.clamp(1, 100);
        }
    }

    fn agent(&mut self, a: &file::AgentFile) {
        if self.flags.no_agent {
            return;
        }
        let var = |names: &[&'static str]| self.env.first(names).map(|(_, v)| v);
        let base_url =
            var(&["SWITCHBOARD_AGENT_BASE_URL", "OPENAI_BASE_URL"]).or_else(|| a.base_url.clone());
        let api_key = self.secret(
            "agent.apiKey",
            None,
            &["SWITCHBOARD_AGENT_API_KEY", "OPENAI_API_KEY"],
            &a.api_key,
        );
        let backend = match var(&["SWITCHBOARD_AGENT_BACKEND"]) {
            Some(b) => match b.trim() {
                "echo" => AgentBackend::Echo,
                "openai" => AgentBackend::Openai,
                other => {
                    self.problem(
                        "agent.backend",
                        format!("SWITCHBOARD_AGENT_BACKEND={other:?}: expected echo or openai"),
                    );
                    AgentBackend::Echo
                }
            },
            None => a
                .backend
                .unwrap_or(if base_url.is_some() || api_key.is_some() {
                    AgentBackend::Openai
                } else {
                    AgentBackend::Echo
                }),
        };
        if let Some(u) = &base_url
            && !is_http_url(u)
        {
            self.problem("agent.baseUrl", format!("{u:?} is not an http(s) URL"));
        }
        if backend == AgentBackend::Openai && base_url.is_none() && api_key.is_none() {
            self.problem(
                "agent.backend",
                "openai needs agent.baseUrl or agent.apiKey (or SWITCHBOARD_AGENT_BASE_URL / SWITCHBOARD_AGENT_API_KEY)",
            );
        }
        let mut cfg = json!({ "backend": backend.as_str() });
        if let Some(u) = base_url {
            cfg["baseUrl"] = u.into();
        }
        if let Some(k) = api_key {
            cfg["apiKey"] = k.expose().into();
        }
        if let Some(m) = var(&["SWITCHBOARD_AGENT_MODEL"]).or_else(|| a.model.clone()) {
            cfg["model"] = m.into();
        }
        let delay = match var(&["SWITCHBOARD_AGENT_ECHO_DELAY_MS"]) {
            Some(d) => match d.trim().parse::<u64>() {
                Ok(ms) => Some(ms),
                Err(_) => {
                    self.problem(
                        "agent.echoDelayMs",
                        format!("SWITCHBOARD_AGENT_ECHO_DELAY_MS={d:?}: expected milliseconds"),
                    );
                    None
                }
            },
            None => a.echo_delay_ms,
        };
        if backend == AgentBackend::Echo {
            cfg["echoDelayMs"] = delay.unwrap_or(crate::config::DEFAULT_ECHO_DELAY_MS).into();
        }
        self.cfg.workers.push(WorkerSpec {
            name: crate::config::AGENT_WORKER.into(),
            program: worker_dir(self.env).join("switchboard-worker-agent"),
            config: cfg,
            enabled: true,
            // Network only: no files beyond the runtime's defaults, no helper.
            confinement: Confinement::default(),
        });
    }

    /// `channels`: exactly the registered providers; each one's entry reads its section.
    fn channels(&mut self, sections: &BTreeMap<String, Value>) {
        for key in sections.keys() {
            if crate::channels::providers::get(key).is_none() {
                self.problem(
                    &format!("channels.{key}"),
                    format!(
                        "unknown channel (known: {})",
                        crate::channels::providers::ids()
                    ),
                );
            }
        }
        for p in crate::channels::providers::ALL {
            let raw = sections.get(p.id);
            let enabled = match raw {
                Some(section) => match section.get("enabled") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        self.problem(
                            &format!("channels.{}.enabled", p.id),
                            "must be true or false",
                        );
                        false
                    }
                },
                None => self.env.first(p.enabled_by_env).is_some(),
            };
            if !enabled {
                continue;
            }
            if raw.is_some_and(|r| !r.is_object()) {
                self.problem(&format!("channels.{}", p.id), "must be an object ({ … })");
                continue;
            }
            let mut section = channel::Section {
                id: p.id,
                raw,
                env: self.env,
                state_dir: &self.cfg.state_dir,
                problems: &mut self.problems,
                sources: &mut self.cfg.sources,
            };
            let Some((routing, config)) = (p.configure)(&mut section) else {
                continue;
            };
            self.cfg.workers.push(WorkerSpec {
                name: p.id.into(),
                program: worker_dir(self.env).join(p.worker),
                confinement: (p.confinement)(&config),
                config,
                enabled: true,
            });
            self.cfg.channels.push(routing);
        }
    }

    fn extra_workers(&mut self, from_file: &[file::WorkerFile]) {
        for (i, w) in from_file.iter().enumerate() {
            let spec = WorkerSpec {
                name: w.name.clone(),
                program: w.program.clone(),
                config: if w.config.is_null() {
                    json!({})
                } else {
                    w.config.clone()
                },
                enabled: w.enabled.unwrap_or(true),
                confinement: Confinement::default(),
            };
            self.add_worker(&format!("workers[{i}]"), spec);
        }
        for raw in self.flags.workers.clone() {
            match parse_worker_flag(&raw) {
                Ok(spec) => self.add_worker("--worker", spec),
                Err(e) => self.problems.push(e),
            }
        }
    }

    /// `confinement.<worker>`: the operator loosens one worker (warned at every start).
    fn confinement(&mut self, entries: &BTreeMap<String, Value>) {
        for (name, entry) in entries {
            let key = format!("confinement.{name}");
            let Some(spec) = self.cfg.workers.iter_mut().find(|w| &w.name == name) else {
                let known: Vec<&str> = self.cfg.workers.iter().map(|w| w.name.as_str()).collect();
                self.problem(
                    &key,
                    format!("no such worker (configured: {})", known.join(", ")),
                );
                continue;
            };
            if let Err(e) = spec.confinement.loosen(entry) {
                self.problem(&key, e);
            }
        }
    }

    fn add_worker(&mut self, key: &str, spec: WorkerSpec) {
        if spec.name.is_empty()
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.problem(
                &format!("{key}.name"),
                format!(
                    "{:?}: a worker name may use letters, digits, '-' and '_' only",
                    spec.name
                ),
            );
            return;
        }
        if self.cfg.workers.iter().any(|w| w.name == spec.name) {
            self.problem(
                &format!("{key}.name"),
                format!("a worker named {:?} already exists", spec.name),
            );
            return;
        }
        self.cfg.workers.push(spec);
    }
}

fn parse_worker_flag(raw: &str) -> Result<WorkerSpec, String> {
    let bad = |why: &str| format!("--worker {raw:?}: {why}");
    let v: Value = serde_json::from_str(raw).map_err(|e| bad(&e.to_string()))?;
    let name = v["name"].as_str().ok_or_else(|| bad("missing \"name\""))?;
    let program = v["program"]
        .as_str()
        .ok_or_else(|| bad("missing \"program\""))?;
    Ok(WorkerSpec {
        name: name.to_owned(),
        program: program.into(),
        config: v
            .get("config")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
        enabled: v["enabled"].as_bool().unwrap_or(true),
        confinement: Confinement::default(),
    })
}

fn is_http_url(u: &str) -> bool {
    let u = u.trim();
    (u.starts_with("http://") || u.starts_with("https://"))
        && u.split("://")
            .nth(1)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
}

/// Test helpers.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::config::file;

    /// A state directory holding `config.json5` with `text`, and flags pointing at it.
    pub fn with_file(text: &str) -> (tempfile::TempDir, Flags) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file::FILE_NAME), text).unwrap();
        let flags = Flags {
            state_dir: Some(dir.path().to_owned()),
            ..Flags::default()
        };
        (dir, flags)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::with_file;
    use super::*;
    use std::path::Path;

    fn env(pairs: &[(&str, &str)]) -> crate::config::env::MapEnv {
        crate::config::env::MapEnv::with(pairs)
    }

    #[test]
    fn the_channels_section_takes_exactly_the_registered_providers() {
        let (_d, flags) = with_file(r#"{ channels: { carrierpigeon: { } } }"#);
        let e = resolve(&flags, &env(&[])).unwrap_err().to_string();
        assert!(
            e.contains("channels.carrierpigeon: unknown channel (known: "),
            "{e}"
        );
        for p in crate::channels::providers::ALL {
            assert!(e.contains(p.id), "the known list names {}: {e}", p.id);
        }
    }

    #[test]
    fn heartbeat_targets_are_owner_by_default_and_an_unknown_one_is_named() {
        let (_d, flags) = with_file(r#"{ agents: { defaults: { heartbeat: { every: "1h" } } } }"#);
        let c = resolve(&flags, &env(&[])).unwrap();
        assert_eq!(c.heartbeat.target, HeartbeatTarget::Owner);
        assert_eq!(c.heartbeat.every, Some(Duration::from_secs(3600)));
        // Any registered provider is a target, trimmed and case-folded.
        let id = crate::channels::providers::ALL[0].id;
        let (_d, flags) = with_file(&format!(
            r#"{{ agents: {{ defaults: {{ heartbeat: {{ every: "1h", target: " {} ", to: "42" }} }} }} }}"#,
            id.to_uppercase()
        ));
        let h = resolve(&flags, &env(&[])).unwrap().heartbeat;
        assert_eq!(h.target, HeartbeatTarget::Channel(id.into()));
        assert_eq!(h.to.as_deref(), Some("42"));
        let (_d, flags) = with_file(
            r#"{ agents: { defaults: { heartbeat: { every: "1h", target: "carrierpigeon" } } } }"#,
        );
        let e = resolve(&flags, &env(&[])).unwrap_err().to_string();
        assert!(
            e.contains(r#"agents.defaults.heartbeat.target: unknown target "carrierpigeon": owner, last, none or a channel id ("#),
            "{e}"
        );
    }

    #[test]
    fn bind_modes_parse() {
        assert_eq!(BindMode::parse("loopback").unwrap(), BindMode::Loopback);
        assert_eq!(BindMode::parse("lan").unwrap(), BindMode::Lan);
        assert_eq!(
            BindMode::parse("::1").unwrap(),
            BindMode::Addr("::1".parse().unwrap())
        );
        assert!(BindMode::parse("nowhere").is_err());
        assert!(BindMode::parse("127.0.0.2").unwrap().is_loopback());
    }

    #[test]
    fn no_file_means_every_default() {
        let flags = Flags {
            state_dir: Some("/nonexistent-sb".into()),
            ..Flags::default()
        };
        let c = resolve(&flags, &env(&[])).unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.bind, BindMode::Loopback);
        assert!(c.config_file.is_none());
        assert_eq!(
            c.logging.file.as_deref(),
            Some(Path::new("/nonexistent-sb/logs/switchboard.log"))
        );
        assert_eq!(c.workers.len(), 1, "the agent worker only");
        assert_eq!(c.workers[0].config["backend"], "echo");
    }

    #[test]
    fn flags_beat_environment_beat_file() {
        let (_d, mut flags) =
            with_file(r#"{ gateway: { port: 1111, auth: { token: "file-tok" } } }"#);
        let e = env(&[("SWITCHBOARD_GATEWAY_PORT", "2222")]);
        let c = resolve(&flags, &e).unwrap();
        assert_eq!(c.port, 2222);
        assert_eq!(c.auth.token.as_ref().unwrap().expose(), "file-tok");
        assert_eq!(c.sources["gateway.auth.token"], "config file");
        flags.port = Some(3333);
        flags.token = Some("flag-tok".into());
        let c = resolve(&flags, &env(&[("CLAWDBOT_GATEWAY_TOKEN", "env-tok")])).unwrap();
        assert_eq!(c.port, 3333);
        assert_eq!(c.auth.token.as_ref().unwrap().expose(), "flag-tok");
        flags.token = None;
        let c = resolve(&flags, &env(&[("CLAWDBOT_GATEWAY_TOKEN", "env-tok")])).unwrap();
        assert_eq!(
            c.sources["gateway.auth.token"],
            "env CLAWDBOT_GATEWAY_TOKEN"
        );
    }

    #[test]
    fn a_named_config_file_must_exist() {
        let flags = Flags {
            state_dir: Some("/tmp".into()),
            config: Some("/nonexistent/sb.json5".into()),
            ..Flags::default()
        };
        let e = resolve(&flags, &env(&[])).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/sb.json5 does not exist"), "{e}");
    }

    #[test]
    fn the_documented_example_is_valid_and_means_the_defaults() {
        let (_d, flags) = with_file(include_str!("../../../deploy/config.example.json5"));
        let c = resolve(&flags, &env(&[])).expect("the example validates");
        let d = resolve(
            &Flags {
                state_dir: flags.state_dir.clone(),
                config: Some("/dev/null".into()),
                ..Flags::default()
            },
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.port, d.port);
        assert_eq!(c.handshake_timeout, d.handshake_timeout);
        assert_eq!(c.shutdown_grace, d.shutdown_grace);
        assert_eq!(c.logging.level, d.logging.level);
        assert_eq!(c.logging.file, d.logging.file);
        assert_eq!(c.logging.max_file_bytes, d.logging.max_file_bytes);
        assert_eq!(c.logging.max_files, d.logging.max_files);
        assert_eq!(c.metrics, d.metrics);
        assert_eq!(
            c.workers[0].config["backend"],
            d.workers[0].config["backend"]
        );
    }

    #[test]
    fn beyond_loopback_needs_auth() {
        let mut cfg = GatewayConfig::with_state_dir("/tmp/x".into());
        cfg.bind = BindMode::Lan;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("refusing to bind gateway to 0.0.0.0:18789 without auth"),
            "{err}"
        );
        cfg.auth.token = Secret::new("t");
        cfg.validate().expect("token makes it fine");
    }
}
