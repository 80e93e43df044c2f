//! The first frame of a connection through the whole `connect` decision
//! (`auth::handshake::decide`): frame shape, version negotiation, schema, role, lockout,
//! device proof, shared secret, pairing, scopes — against a real device store (SQLite in
//! a temporary state directory), from a local and from a remote peer.
//!
//! Invariants: nothing panics; a refusal's close code is a valid one and its reason fits
//! a close frame (≤ 123 bytes); its reply, when there is one, is an `ok:false` `res`;
//! an acceptance never happens with a wrong token.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard::auth::device_pairing::Devices;
use switchboard::auth::handshake::{HandshakeCtx, Peer, decide};
use switchboard::auth::rate_limit::AuthLimiter;
use switchboard::config::AuthConfig;
use switchboard::protocol::validate::Validators;
use switchboard::secret::Secret;
use switchboard::state::db::Db;

const TOKEN: &str = "fuzz-gateway-token";

struct World {
    rt: tokio::runtime::Runtime,
    validators: Validators,
    devices: Devices,
    auth: AuthConfig,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let db = Db::open(&dir.path().join("switchboard.sqlite")).expect("database");
        let devices = rt
            .block_on(Devices::open(db, dir.path()))
            .expect("device store");
        World {
            rt,
            validators: Validators::build().expect("schemas compile"),
            devices,
            auth: AuthConfig {
                token: Secret::new(TOKEN),
                password: None,
            },
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let w = world();
    let limiter = AuthLimiter::default();
    let local = selector & 1 == 0;
    let ctx = HandshakeCtx {
        validators: &w.validators,
        devices: &w.devices,
        auth: &w.auth,
        limiter: &limiter,
        nonce: "fuzz-nonce",
        peer: Peer {
            ip: if local {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
            },
            local,
        },
        now_ms: 1_800_000_000_000,
    };
    match w.rt.block_on(decide(&ctx, text)) {
        Ok(accepted) => {
            let v: Value = serde_json::from_str(text).expect("accepted frames are JSON");
            let token = v["params"]["auth"]["token"].as_str();
            let device = accepted.device_id.is_some();
            assert!(
                token == Some(TOKEN) || device,
                "accepted without the gateway token or a device"
            );
        }
        Err(rejected) => {
            assert!(
                matches!(
                    rejected.close_code,
                    1000 | 1002 | 1008 | 1009 | 1011 | 4000..=4999
                ),
                "close code {}",
                rejected.close_code
            );
            assert!(rejected.close_reason.len() <= 123, "close reason too long");
            if let Some(reply) = &rejected.reply {
                let v: Value = serde_json::from_str(reply).expect("reply is JSON");
                assert_eq!(v["type"], "res");
                assert_eq!(v["ok"], false);
            }
        }
    }
});
