//! WhatsApp: the account linked as a device of the user's phone (WhatsApp Web,
//! multi-device) by `switchboard-worker-whatsapp`; one session per host, linked by QR
//! code (`switchboard channels login whatsapp`). Turned on by a `channels.whatsapp`
//! section.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{DmPeer, Provider};
use crate::config::channel::{ChannelConfig, Section, channel_section};
use crate::workers::Confinement;

pub const PROVIDER: Provider = Provider {
    id: "whatsapp",
    label: "WhatsApp",
    worker: "switchboard-worker-whatsapp",
    enabled_by_env: &[],
    configure,
    id_prefixes: &["whatsapp:"],
    connected_states: &["connected"],
    is_group_target: |to| to.trim().ends_with("@g.us"),
    group_kind: "group",
    dm_peer: DmPeer::Chat,
    confinement,
    setup_hint: "a `channels.whatsapp: {}` section, then `switchboard channels login whatsapp` (scan the QR code in WhatsApp → Linked Devices)",
};

channel_section!(
    /// `channels.whatsapp`.
    WhatsAppSection {
        /// Where the session (credentials, lock) lives; default `<state-dir>/whatsapp`.
        session_dir: Option<PathBuf>,
        /// The WhatsApp Web socket URL; only for tests and relays.
        server_url: Option<String>,
        /// Pin the WhatsApp Web client version `[primary, secondary, tertiary]` instead
        /// of asking WhatsApp for the latest; only for tests and relays.
        client_version: Option<[u32; 3]>,
    }
);

/// Its session folder, read-write (credentials, the host lock); nothing else.
fn confinement(worker: &Value) -> Confinement {
    Confinement {
        read_write: worker["sessionDir"]
            .as_str()
            .map(PathBuf::from)
            .into_iter()
            .collect(),
        ..Confinement::default()
    }
}

fn configure(s: &mut Section<'_>) -> Option<(ChannelConfig, Value)> {
    let w: WhatsAppSection = s.parse()?;
    let routing = s.routing(w.policy(), PROVIDER.id_prefixes);
    let session_dir = w
        .session_dir
        .clone()
        .unwrap_or_else(|| s.state_dir.join(PROVIDER.id));
    let mut config = json!({ "sessionDir": session_dir });
    if let Some(url) = &w.server_url {
        if !url.starts_with("ws://") && !url.starts_with("wss://") {
            s.problem("serverUrl", format!("{url:?} is not a ws:// or wss:// URL"));
        }
        config["serverUrl"] = json!(url);
    }
    if let Some(v) = w.client_version {
        config["clientVersion"] = json!(v);
    }
    Some((routing, config))
}
