//! Each worker is confined (issue #24): the real test worker under the real supervisor,
//! told over its own socket to open files it must not reach, and to make a system call
//! outside its allow-list. Linux only (Landlock and seccomp); this kernel has both.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_proto::v1::SendRequest;
use switchboard_proto::v1::worker_client::WorkerClient;

use crate::harness::*;

/// Tells test worker `name` (over its control socket: its own socket answers only the
/// supervisor) to do `what`; its answer (`ok`, `denied EACCES`, …).
async fn tell(gw: &Gateway, name: &str, what: &str) -> String {
    let socket = gw
        .state
        .path()
        .join(format!("sockets/{name}/{name}.control.sock"));
    let channel = tonic::transport::Endpoint::from_shared(format!("unix://{}", socket.display()))
        .unwrap()
        .connect()
        .await
        .expect("connect to the worker socket");
    WorkerClient::new(channel)
        .send(SendRequest {
            text: what.into(),
            ..Default::default()
        })
        .await
        .expect("the worker answers")
        .into_inner()
        .provider_message_id
}

fn test_worker(name: &str) -> Value {
    json!({"name": name, "program": bin("switchboard-worker-test"), "config": {}})
}

async fn admin(gw: &Gateway) -> Client {
    Client::connect(&gw.url(), v3_params(Some(TOKEN))).await.0
}

#[tokio::test]
async fn a_confined_worker_cannot_open_the_supervisors_files_another_workers_session_or_home() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519"), "not a real key").unwrap();
    let own = tmp.path().join("own");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("mine.txt"), "mine").unwrap();
    let outside = tmp.path().join("outside.txt");
    std::fs::write(&outside, "not yours").unwrap();

    let state = Arc::new(tempfile::tempdir().unwrap());
    // Another worker's session folder, with something in it.
    let session = state.path().join("whatsapp");
    std::fs::create_dir_all(&session).unwrap();
    std::fs::write(session.join("creds.json"), "{}").unwrap();
    let config = json!({
        "channels": {"whatsapp": {}},
        "workers": [test_worker("t1"), test_worker("t2")],
        "confinement": {
            "t1": {"readWrite": [own]},
            "t2": {"off": true},
        },
    });
    std::fs::write(state.path().join("config.json5"), config.to_string()).unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(state),
        env: vec![("HOME".into(), home.display().to_string())],
        ..Default::default()
    });
    let mut c = admin(&gw).await;
    let t1 = c
        .wait_worker("t1", "running", |w| w["state"] == "running")
        .await;
    let confinement = t1["confinement"].as_str().unwrap_or_default().to_owned();
    assert!(
        confinement.starts_with("landlock: abi ") && confinement.ends_with(", seccomp: on"),
        "{t1}"
    );
    // The provider workers are confined the same way.
    let wa = c
        .wait_worker("whatsapp", "running", |w| w["state"] == "running")
        .await;
    assert!(
        wa["confinement"]
            .as_str()
            .is_some_and(|s| s.starts_with("landlock: abi ")),
        "{wa}"
    );

    let st = gw.state.path();
    let forbidden = [
        st.join("switchboard.sqlite"),
        st.join("device-token.key"),
        st.join("config.json5"),
        session.join("creds.json"),
        session.clone(),
        home.join(".ssh/id_ed25519"),
        home.join(".ssh"),
        outside.clone(),
    ];
    for path in &forbidden {
        assert!(path.exists(), "{} should exist", path.display());
        let answer = tell(&gw, "t1", &format!("open:{}", path.display())).await;
        assert!(
            answer == "denied EACCES" || answer == "denied EPERM",
            "{}: {answer}",
            path.display()
        );
        let answer = tell(&gw, "t1", &format!("write:{}", path.display())).await;
        assert!(
            answer.starts_with("denied E"),
            "writing {}: {answer}",
            path.display()
        );
    }
    // Its own folder it can read and write; the system's CA certificates and time zones
    // it can read.
    assert_eq!(
        tell(
            &gw,
            "t1",
            &format!("open:{}", own.join("mine.txt").display())
        )
        .await,
        "ok"
    );
    assert_eq!(
        tell(
            &gw,
            "t1",
            &format!("write:{}", own.join("new.txt").display())
        )
        .await,
        "ok"
    );
    assert_eq!(tell(&gw, "t1", "open:/usr/share/zoneinfo").await, "ok");
    // It cannot signal the supervisor (Landlock's signal scope), though the unconfined
    // worker below can.
    let supervisor = format!("signal:{}", gw.child.id());
    assert_eq!(tell(&gw, "t1", &supervisor).await, "denied EPERM");
    assert_eq!(tell(&gw, "t1", "open:/dev/urandom").await, "ok");

    // The worker the operator unconfined reads what t1 cannot, and says so everywhere.
    let t2 = c
        .wait_worker("t2", "running", |w| w["state"] == "running")
        .await;
    assert!(
        t2["confinement"]
            .as_str()
            .is_some_and(|s| s.starts_with("landlock: off")),
        "{t2}"
    );
    assert_eq!(
        tell(
            &gw,
            "t2",
            &format!("open:{}", st.join("device-token.key").display())
        )
        .await,
        "ok"
    );
    assert_eq!(tell(&gw, "t2", &supervisor).await, "ok");
    let h = c.request("health", json!({"probe": true})).await;
    let listed = h["payload"]["workers"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|w| w["name"] == "t2" && w["confinement"] == t2["confinement"]),
        "{listed:?}"
    );
    // `switchboard workers list` prints each worker's confinement under its row.
    let out = std::process::Command::new(bin("switchboard"))
        .args(["workers", "list", "--url", &gw.url(), "--token", TOKEN])
        .output()
        .expect("run the CLI");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("confinement: {confinement}"))
            && printed.contains("confinement: landlock: off"),
        "{printed}"
    );
    let log = gw.log();
    assert!(
        log.contains("confinement of worker t2 loosened by config (confinement.t2): off"),
        "{log}"
    );
    assert!(
        log.contains("confinement of worker t1 loosened by config (confinement.t1): readWrite"),
        "{log}"
    );
    assert!(log.contains("running unconfined: landlock: off"), "{log}");
}

#[tokio::test]
async fn a_forbidden_system_call_ends_the_worker_and_it_is_restarted_as_for_any_crash() {
    let gw = Gateway::start_with(GatewayOpts {
        extra: vec!["--worker".into(), test_worker("t1").to_string()],
        ..Default::default()
    });
    let mut c = admin(&gw).await;
    let before = c
        .wait_worker("t1", "running", |w| w["state"] == "running")
        .await;
    // The call never returns: the kernel kills the process.
    let socket = gw.state.path().join("sockets/t1/t1.control.sock");
    let channel = tonic::transport::Endpoint::from_shared(format!("unix://{}", socket.display()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let answer = WorkerClient::new(channel)
        .send(SendRequest {
            text: "forbidden-syscall".into(),
            ..Default::default()
        })
        .await;
    assert!(answer.is_err(), "{answer:?}");
    let after = c
        .wait_worker("t1", "restarted", |w| {
            w["state"] == "running" && w["pid"] != before["pid"]
        })
        .await;
    assert_eq!(after["restarts"], 1);
    assert_eq!(
        after["lastExit"],
        "killed by SIGSYS (a system call outside its seccomp allow-list)"
    );
    assert_eq!(after["confinement"], before["confinement"]);
}

/// What a call on `socket` presenting `secret` gets: `ok` or the refusal's code.
async fn hello_on(socket: &std::path::Path, secret: Option<&str>) -> Result<(), tonic::Code> {
    use switchboard_proto::v1::HelloRequest;
    let channel = tonic::transport::Endpoint::from_shared(format!("unix://{}", socket.display()))
        .unwrap()
        .connect()
        .await
        .expect("connect to the worker socket");
    let mut req = tonic::Request::new(HelloRequest {
        supervisor_contract_version: switchboard_proto::CONTRACT_VERSION,
    });
    if let Some(s) = secret {
        req.metadata_mut()
            .insert(switchboard_proto::SECRET_METADATA, s.parse().unwrap());
    }
    WorkerClient::new(channel)
        .hello(req)
        .await
        .map(|_| ())
        .map_err(|s| s.code())
}

/// Runs of 32 or more hex digits in `text` (a worker secret is 64).
fn long_hex_runs(text: &[u8]) -> Vec<String> {
    text.split(|b| !b.is_ascii_hexdigit())
        .filter(|run| run.len() >= 32)
        .map(|run| String::from_utf8_lossy(run).into_owned())
        .collect()
}

#[tokio::test]
async fn a_worker_refuses_calls_without_its_secret_even_from_another_confined_worker() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    let config = json!({
        "channels": {"whatsapp": {}},
        "workers": [test_worker("t1"), test_worker("t2")],
    });
    std::fs::write(state.path().join("config.json5"), config.to_string()).unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(state),
        ..Default::default()
    });
    let mut c = admin(&gw).await;
    let t1 = c
        .wait_worker("t1", "running", |w| w["state"] == "running")
        .await;
    assert!(
        t1["confinement"]
            .as_str()
            .is_some_and(|s| s.starts_with("landlock: abi ") && s.ends_with("seccomp: on")),
        "{t1}"
    );
    for name in ["t2", "whatsapp", "agent"] {
        c.wait_worker(name, "running", |w| w["state"] == "running")
            .await;
    }
    let sockets = gw.state.path().join("sockets");

    // From inside confined t1, acting as a compromised worker: t2's socket, the WhatsApp
    // worker's (`channel::serve`) and the agent runner's all refuse it, whatever it
    // presents, its own secret included (each spawn has its own).
    for target in ["t2", "whatsapp", "agent"] {
        let socket = sockets.join(format!("{target}/{target}.sock"));
        for how in ["none", "wrong", "own"] {
            let answer = tell(&gw, "t1", &format!("call:{how}:{}", socket.display())).await;
            assert_eq!(answer, "refused Unauthenticated", "t1 → {target} ({how})");
        }
    }
    // From the test itself, on every service a worker serves: Worker, Linker, AgentRunner.
    for target in ["t1", "t2", "whatsapp", "agent"] {
        let socket = sockets.join(format!("{target}/{target}.sock"));
        assert_eq!(
            hello_on(&socket, None).await,
            Err(tonic::Code::Unauthenticated),
            "{target}"
        );
        assert_eq!(
            hello_on(&socket, Some(&"0".repeat(64))).await,
            Err(tonic::Code::Unauthenticated),
            "{target}"
        );
    }
    let connect = |name: &str| {
        let socket = sockets.join(format!("{name}/{name}.sock"));
        async move {
            tonic::transport::Endpoint::from_shared(format!("unix://{}", socket.display()))
                .unwrap()
                .connect()
                .await
                .unwrap()
        }
    };
    let send = WorkerClient::new(connect("whatsapp").await)
        .send(SendRequest {
            to: "+15550001111".into(),
            text: "pwned".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(send.unwrap_err().code(), tonic::Code::Unauthenticated);
    let logout = switchboard_proto::v1::linker_client::LinkerClient::new(connect("whatsapp").await)
        .logout(switchboard_proto::v1::LogoutRequest::default())
        .await;
    assert_eq!(logout.unwrap_err().code(), tonic::Code::Unauthenticated);
    let run =
        switchboard_proto::v1::agent_runner_client::AgentRunnerClient::new(connect("agent").await)
            .run(switchboard_proto::v1::RunRequest::default())
            .await;
    assert_eq!(run.unwrap_err().code(), tonic::Code::Unauthenticated);

    // The supervisor's own calls still work: an agent run through the runner, and its
    // health checks (t2 keeps its pid and reports its provider state).
    let id = "agent-secret";
    c.send_json(&json!({"type":"req","id": id,"method":"agent","params":{"message": "still here","idempotencyKey": "secret-1"}}))
        .await;
    let ack = c.response(id).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let fin = c.response(id).await;
    assert_eq!(
        fin["payload"]["result"]["payloads"][0]["text"], "[echo] still here",
        "{fin}"
    );
    let t2 = c
        .wait_worker("t2", "health-checked", |w| {
            w["providerState"] == "connected"
        })
        .await;
    assert_eq!(t2["restarts"], 0, "{t2}");

    // The secret is on no command line, in no environment and in no log line.
    let pid = t2["pid"].as_u64().unwrap();
    for file in ["cmdline", "environ"] {
        let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
        assert_eq!(long_hex_runs(&bytes), Vec::<String>::new(), "{file}");
    }
    assert_eq!(long_hex_runs(gw.log().as_bytes()), Vec::<String>::new());
}

#[tokio::test]
async fn a_confined_worker_cannot_replace_another_workers_socket_only_its_own() {
    let state = Arc::new(tempfile::tempdir().unwrap());
    let config = json!({"workers": [test_worker("t1"), test_worker("t2")]});
    std::fs::write(state.path().join("config.json5"), config.to_string()).unwrap();
    let gw = Gateway::start_with(GatewayOpts {
        state: Some(state),
        ..Default::default()
    });
    let mut c = admin(&gw).await;
    for name in ["t1", "t2", "agent"] {
        c.wait_worker(name, "running", |w| w["state"] == "running")
            .await;
    }
    let t2_before = c
        .wait_worker("t2", "running", |w| w["state"] == "running")
        .await;
    let sockets = gw.state.path().join("sockets");
    // Each worker's socket is in a folder of its own, private to the user.
    for name in ["t1", "t2", "agent"] {
        let dir = sockets.join(name);
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        assert!(
            dir.join(format!("{name}.sock")).exists(),
            "{}",
            dir.display()
        );
    }
    // From inside confined t1: removing and rebinding another worker's socket, or making
    // a socket of its own beside theirs, is refused by the kernel.
    for target in [
        sockets.join("t2/t2.sock"),
        sockets.join("agent/agent.sock"),
        sockets.join("t2/decoy.sock"),
        sockets.join("decoy.sock"),
    ] {
        let answer = tell(&gw, "t1", &format!("replace:{}", target.display())).await;
        assert!(
            answer.starts_with("denied "),
            "{}: {answer}",
            target.display()
        );
    }
    assert!(!sockets.join("decoy.sock").exists());
    assert!(!sockets.join("t2/decoy.sock").exists());
    // In its own folder it may (that is how it binds its socket).
    let own = sockets.join("t1/spare.sock");
    assert_eq!(
        tell(&gw, "t1", &format!("replace:{}", own.display())).await,
        "ok"
    );
    // t2 still answers on its socket (the test's call is refused for want of the secret,
    // which proves t2's own server is the one listening) and was never restarted.
    assert_eq!(
        hello_on(&sockets.join("t2/t2.sock"), None).await,
        Err(tonic::Code::Unauthenticated)
    );
    let t2 = c
        .wait_worker("t2", "health-checked", |w| {
            w["providerState"] == "connected"
        })
        .await;
    assert_eq!(t2["pid"], t2_before["pid"], "{t2}");
    assert_eq!(t2["restarts"], 0, "{t2}");
}
