//! The TypeScript client (clients/typescript) under Node against the real gateway and the
//! real Telegram worker pointed at the Bot API stand-in: health, status, an agent run to its
//! final answer, a `send`, a wrong token, a device identity (test/gateway.test.ts), and the
//! client's own protocol tests (test/protocol.test.ts).
//!
//! Needs Node 20 and npm (the client's pinned packages are installed with `npm ci` when
//! absent). Without `node` the test says so and passes, unless `SWITCHBOARD_REQUIRE_NODE=1`
//! (CI sets it), so `cargo test --workspace` works on a machine without Node.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::harness::*;
use crate::standin_telegram::{BOT_TOKEN, Telegram};

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/typescript")
}

fn have_node() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

/// Installs the pinned packages (once) and compiles the client and its tests.
fn build_client() -> PathBuf {
    let dir = package_dir();
    if !dir.join("node_modules/ws/package.json").exists() {
        run(
            &dir,
            "npm",
            &[
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--prefer-offline",
            ],
            &[],
        );
    }
    run(
        &dir,
        "node",
        &["node_modules/typescript/bin/tsc", "-p", "."],
        &[],
    );
    dir
}

#[tokio::test]
async fn the_typescript_client_talks_to_the_real_gateway() {
    if !have_node() {
        assert!(
            std::env::var("SWITCHBOARD_REQUIRE_NODE").is_err(),
            "node is required (SWITCHBOARD_REQUIRE_NODE) but not installed"
        );
        eprintln!("skipping the TypeScript client test: node is not installed");
        return;
    }
    let dir = tokio::task::spawn_blocking(build_client).await.unwrap();
    let tg = Telegram::start();
    let state = Arc::new(tempfile::tempdir().unwrap());
    std::fs::write(
        state.path().join("config.json5"),
        format!(
            r#"{{ channels: {{ telegram: {{ botToken: "{BOT_TOKEN}", apiUrl: "{}", pollTimeoutSeconds: 1 }} }} }}"#,
            tg.url
        ),
    )
    .unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(state),
        extra: vec!["--worker-health-interval-ms".into(), "100".into()],
        ..Default::default()
    });
    let (mut op, _) = Client::connect(&gw.url(), v3_params(Some(TOKEN))).await;
    op.wait_worker("telegram", "polling", |w| w["providerState"] == "polling")
        .await;
    let env = vec![
        ("SWITCHBOARD_URL", gw.url()),
        ("SWITCHBOARD_TOKEN", TOKEN.to_owned()),
        ("SWITCHBOARD_SEND_TO", "42".to_owned()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        run(
            &dir,
            "node",
            &[
                "--test",
                "dist/test/gateway.test.js",
                "dist/test/protocol.test.js",
            ],
            &env,
        )
    })
    .await
    .unwrap();
    assert!(
        out.contains("# pass 8") && out.contains("# fail 0"),
        "{out}"
    );
    // The `send` really went out through the Telegram worker.
    let sent = tg.sent_to("42");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].text, "hello from the TypeScript client");

    // The README's example, exactly as written, from inside the package.
    let example = readme_example();
    assert!(
        example.lines().count() <= 10,
        "the README example is ten lines at most:\n{example}"
    );
    let file = package_dir().join("dist/readme-example.mjs");
    std::fs::write(&file, &example).unwrap();
    let env = vec![
        ("SWITCHBOARD_URL", gw.url()),
        ("SWITCHBOARD_GATEWAY_TOKEN", TOKEN.to_owned()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        run(&package_dir(), "node", &["dist/readme-example.mjs"], &env)
    })
    .await
    .unwrap();
    assert!(out.contains("sessions: "), "{out}");
    assert!(out.contains("agent: [echo] hello"), "{out}");
}

/// The README's ```js block under "Client models and the TypeScript client".
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let section = readme
        .split("\n## Client models and the TypeScript client\n")
        .nth(1)
        .expect("the README has the client section");
    let start = section.find("```js\n").expect("a ```js block") + "```js\n".len();
    let len = section[start..].find("```\n").expect("the block ends");
    section[start..start + len].to_owned()
}
