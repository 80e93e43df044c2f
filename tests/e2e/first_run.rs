//! The first five minutes (issue #15): the README's set-up, followed literally in a fresh
//! HOME with nothing configured, gives a gateway that its own CLI, WebChat and (in the
//! interop suite) the real openclaw and clawdbot CLIs can all use; the start log says who
//! may connect, and that is what happens.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::harness::*;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
        .expect("README.md")
}

/// The lines of the first ```sh block after `heading`, comments and blanks removed.
fn sh_block(text: &str, heading: &str) -> Vec<String> {
    let at = text
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &text[at..];
    let start = rest.find("```sh").expect("a ```sh block") + 5;
    let end = rest[start..].find("```").expect("the block's end") + start;
    rest[start..end]
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim().to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// `switchboard …` as a fresh user on this host runs it: their HOME, no environment.
fn as_new_user(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(bin("switchboard"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run switchboard")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// An HTTP/1.1 GET of `/` with the given Host header; the whole answer.
fn get_page(port: u16, host: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[tokio::test]
async fn the_readme_set_up_works_as_written_in_a_fresh_home() {
    let readme = readme();
    let setup = sh_block(&readme, "## Set-up");
    let run = setup
        .iter()
        .find(|l| l.contains("gateway run"))
        .expect("the README's command that runs the gateway");
    let args: Vec<&str> = run
        .strip_prefix("cargo run --release -p switchboard --")
        .expect("the README runs the gateway with cargo run")
        .split_whitespace()
        .collect();
    assert!(
        setup.iter().any(|l| l == "cargo test --workspace"),
        "the README's test command"
    );
    // The README's command, as a new user runs it: no config, no environment, default port.
    let home = tempfile::tempdir().unwrap();
    assert!(
        std::net::TcpListener::bind("127.0.0.1:18789").is_ok(),
        "this test runs the README's command on the default port 18789, which is in use here"
    );
    let mut gateway = Command::new(bin("switchboard"))
        .args(&args)
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SWITCHBOARD_AGENT_ECHO_DELAY_MS", "20")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    let stderr = gateway.stderr.take().unwrap();
    let _gateway = StopOnDrop(gateway);
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    {
        use std::io::BufRead;
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
    }
    wait_log(&log, "the gateway to listen", |l| {
        l.contains("listening on ws://127.0.0.1:18789") || l.contains(" ERROR ")
    });
    let start = log.lock().unwrap().clone();
    assert!(!start.contains("any local client may connect"), "{start}");
    assert!(
        start.contains("gateway token generated at first start"),
        "{start}"
    );
    let token_file = home.path().join(".switchboard").join("gateway-token");
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    assert!(!start.contains(&token), "the token reached the log");

    // Every client command of the first five minutes works with no flags.
    let first = sh_block(&readme, "### The first five minutes");
    let commands: Vec<&String> = first
        .iter()
        .filter(|l| l.starts_with("switchboard "))
        .collect();
    for needed in [
        "status",
        "health",
        "workers list",
        "devices list",
        "logs",
        "channels status",
        "gateway status",
    ] {
        assert!(
            commands
                .iter()
                .any(|c| c.trim_start_matches("switchboard ") == needed),
            "the README's first five minutes do not show `switchboard {needed}`"
        );
    }
    for c in &commands {
        let args: Vec<&str> = c.split_whitespace().skip(1).collect();
        if args.iter().any(|a| a.starts_with('$') || *a == "-f") {
            continue; // documented for people to run by hand
        }
        let out = as_new_user(home.path(), &args);
        assert!(out.status.success(), "`{c}` failed:\n{}", text(&out));
    }
    let token_out = as_new_user(home.path(), &["gateway", "token"]);
    assert_eq!(String::from_utf8_lossy(&token_out.stdout).trim(), token);

    // WebChat on this host connects without anything typed, and the echo agent answers.
    let Some(mut b) = Browser::launch().await else {
        return;
    };
    b.goto("http://127.0.0.1:18789/").await;
    b.wait_for(
        "WebChat to connect by itself",
        "document.getElementById('status').textContent.startsWith('connected')",
    )
    .await;
    b.type_into("#input", "hello from the first five minutes")
        .await;
    b.click("#send").await;
    let reply = b
        .wait_for(
            "the agent's answer",
            "(() => { const m = [...document.querySelectorAll('.msg.assistant')].pop();
                      return m && m.dataset.done ? m.textContent : ''; })()",
        )
        .await;
    assert_eq!(reply, "[echo] hello from the first five minutes");
    b.screenshot("first-run-webchat").await;
    // A browser without WebCrypto Ed25519 (protocol v3, no device identity) also connects
    // by itself, with nothing stored from before.
    b.eval("localStorage.clear()").await;
    b.goto("http://127.0.0.1:18789/?protocol=3").await;
    b.wait_for(
        "WebChat without Ed25519 to connect by itself",
        "document.getElementById('status').textContent === 'connected (protocol v3)'",
    )
    .await;
    assert_eq!(
        b.eval("document.getElementById('login').hidden").await,
        true,
        "nothing to type"
    );
    b.screenshot("first-run-webchat-v3").await;
}

/// Stops the process this test started (SIGTERM, by its pid) and reaps it when dropped.
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_start_log_says_who_may_connect_and_each_kind_of_client_finds_it_so() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    let opts = GatewayOpts {
        token: None,
        state: Some(Arc::clone(&state)),
        ..Default::default()
    };
    let gw = Gateway::start_with(opts);
    let log = gw.log();
    assert!(
        log.contains("gateway token generated at first start"),
        "{log}"
    );
    assert!(
        log.contains("clients must present it or a paired device's token"),
        "{log}"
    );
    let token = std::fs::read_to_string(state.path().join("gateway-token"))
        .unwrap()
        .trim()
        .to_owned();
    // "clients must present it": without it, refused; with it, served.
    let mut c = Client::open(&gw.url()).await;
    let refused = c.connect_raw(v3_params(Some("not-the-token"))).await;
    assert_eq!(refused["ok"], false, "{refused}");
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(&token))).await;
    assert_eq!(c.request("health", json!({})).await["ok"], true);
    // "switchboard's own commands on this host read it".
    let out = Command::new(bin("switchboard"))
        .args(["status", "--json", "--state-dir"])
        .arg(state.path())
        .args(["--url", &gw.url()])
        .env_remove("SWITCHBOARD_GATEWAY_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["sessions"].is_object(), "{v}");
    // "WebChat opened on this host gets it from the gateway": the page asked for under
    // the gateway's own name carries it; under another name (a DNS rebinding page) not.
    let own = get_page(gw.port, &format!("127.0.0.1:{}", gw.port));
    assert!(own.starts_with("HTTP/1.1 200"), "{own}");
    assert!(
        own.contains(&format!(
            "<meta name=\"switchboard-token\" content=\"{token}\">"
        )),
        "the page served to this host's user carries the token"
    );
    assert!(own.contains("Cache-Control: no-store"));
    let foreign = get_page(gw.port, &format!("attacker.example:{}", gw.port));
    assert!(foreign.starts_with("HTTP/1.1 200") && !foreign.contains(&token));
    // Another account on this host does not get it (Linux tells who owns the socket).
    if nix::unistd::geteuid().is_root() && Path::new("/proc/net/tcp").exists() {
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{p}; printf 'GET / HTTP/1.1\\r\\nHost: 127.0.0.1:{p}\\r\\nConnection: close\\r\\n\\r\\n' >&3; cat <&3",
            p = gw.port
        );
        use std::os::unix::process::CommandExt;
        let other = Command::new("/bin/bash")
            .args(["-c", &script])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let page = String::from_utf8_lossy(&other.stdout);
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(!page.contains(&token), "another account got the token");
    }
    // A second start keeps the same token, and says so.
    drop(c);
    drop(gw);
    let gw = Gateway::start_with(GatewayOpts {
        token: None,
        state: Some(Arc::clone(&state)),
        ..Default::default()
    });
    assert!(gw.log().contains("gateway token kept in"), "{}", gw.log());
    let (mut c, _) = Client::connect(&gw.url(), v3_params(Some(&token))).await;
    assert_eq!(c.request("health", json!({})).await["ok"], true);
}

#[tokio::test]
async fn webchat_is_whole_on_a_laptop_and_a_phone_and_says_what_to_do_from_elsewhere() {
    let gw = Gateway::start();
    // `sb.test` is this gateway under a name that is not its own: the page is then "on
    // another host" (not a secure context either, so it speaks v3 with a typed token).
    let rule = "--host-resolver-rules=MAP sb.test 127.0.0.1";
    let Some(mut b) = Browser::launch_with(&[rule]).await else {
        return;
    };
    for (w, h, mobile, name) in [(1280, 800, false, "laptop"), (390, 844, true, "phone")] {
        b.viewport(w, h, mobile).await;
        // From elsewhere: the sign-in card alone, with one sentence of what to do.
        b.goto(&format!("http://sb.test:{}/", gw.port)).await;
        b.eval("localStorage.clear()").await;
        b.reload().await;
        b.wait_for(
            "the sign-in card",
            "!document.getElementById('login').hidden",
        )
        .await;
        let layout = b
            .eval(
                "(() => { const m = document.getElementById('main');
                          return { mainShown: getComputedStyle(m).display !== 'none',
                                   overflow: document.documentElement.scrollWidth > innerWidth,
                                   hint: document.getElementById('login-hint').textContent }; })()",
            )
            .await;
        assert_eq!(
            layout["mainShown"], false,
            "{name}: the chat shows under the card"
        );
        assert_eq!(layout["overflow"], false, "{name}: wider than the screen");
        assert!(
            layout["hint"]
                .as_str()
                .unwrap_or_default()
                .contains("switchboard gateway token"),
            "{layout}"
        );
        b.screenshot(&format!("first-run-{name}-sign-in")).await;
        b.type_into("#token", TOKEN).await;
        b.click("#login button[type=submit]").await;
        b.wait_for(
            "the typed token to connect",
            "document.getElementById('status').textContent.startsWith('connected')",
        )
        .await;
        // On this host: connected by itself, the chat whole.
        b.goto(&format!("http://127.0.0.1:{}/", gw.port)).await;
        b.wait_for(
            "the page to connect by itself",
            "document.getElementById('status').textContent.startsWith('connected')",
        )
        .await;
        let layout = b
            .eval(
                "(() => { const c = document.getElementById('composer').getBoundingClientRect();
                          return { loginShown: getComputedStyle(document.getElementById('login')).display !== 'none',
                                   overflow: document.documentElement.scrollWidth > innerWidth,
                                   composerInside: c.bottom <= innerHeight + 1 && c.right <= innerWidth + 1 }; })()",
            )
            .await;
        assert_eq!(layout["loginShown"], false, "{name}: {layout}");
        assert_eq!(layout["overflow"], false, "{name}: {layout}");
        assert_eq!(layout["composerInside"], true, "{name}: {layout}");
        b.screenshot(&format!("first-run-{name}-chat")).await;
    }
}

#[test]
fn switchboard_alone_shows_the_most_used_commands_first() {
    let out = Command::new(bin("switchboard")).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = help.lines().collect();
    assert!(lines.len() < 30, "a short help: {help}");
    let run = help.find("switchboard gateway run").unwrap();
    let more = help.find("More:").unwrap();
    assert!(run < more, "{help}");
}

#[test]
fn client_errors_say_what_to_do_next() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("switchboard"))
        .args(["health", "--url", "ws://127.0.0.1:9", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(
        text(&out).contains("Start it with `switchboard gateway run`"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_refused_token_names_where_to_get_the_right_one() {
    let gw = Gateway::start();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("switchboard"))
        .args([
            "health",
            "--url",
            &gw.url(),
            "--token",
            "wrong",
            "--state-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(
        text(&out).contains("`switchboard gateway token` prints it"),
        "{}",
        text(&out)
    );
}
