//! The presence list: the gateway itself, connected clients, and `system-event` lines.
//!
//! Entries are keyed (lower-cased) by device id, else instance id, else connection id;
//! a departed client's entry stays with `reason:"disconnect"` until it expires, as in the
//! reference. One list serves v3 and v4 clients; v4-only fields are cut for v3 readers.
//!
//! Each entry is kept encoded for both generations, re-encoded only when it changes, so
//! the whole list's JSON (`encoded`, for `hello-ok` and `presence` events) is a sort and
//! a concatenation, never a re-serialization of every entry.

use std::collections::HashMap;

use switchboard_schemas::ProtocolVersion;
use switchboard_schemas::hello::PresenceEntry;
use switchboard_schemas::methods::SystemEventParams;

use crate::clock::now_ms;

const TTL_MS: u64 = 5 * 60 * 1000;
const MAX_ENTRIES: usize = 200;
/// The whole list's v4 JSON stays under this, whatever clients put in their entries
/// (each field is bounded by the schemas' `limits`, so one entry is a few KiB at most):
/// `hello-ok` and every `presence` event carry it to every tracked client.
pub const MAX_BYTES: usize = 256 * 1024;

pub struct Presence {
    self_key: String,
    /// The gateway's own entry, touched at every look at the list.
    self_entry: PresenceEntry,
    entries: HashMap<Box<str>, Slot>,
}

/// One entry as what the list is made of: its JSON for v3 and v4, one after the other in
/// a single allocation of their size, and what pruning looks at. The entry itself is read
/// back from its v4 JSON (which has every field) when it changes, which is rare. Entries
/// outlive the connections around them (a departed client stays until its TTL), and
/// each allocation they keep can pin a page among the freed ones of a crowd that left:
/// one per entry keeps that to a minimum.
struct Slot {
    ts: u64,
    departed: bool,
    json: Box<str>,
    v3_len: usize,
}

impl Slot {
    fn new(e: &PresenceEntry) -> Slot {
        let [v3, v4] = encode(e);
        let mut json = String::with_capacity(v3.len() + v4.len());
        json.push_str(&v3);
        json.push_str(&v4);
        Slot {
            ts: e.ts,
            departed: e.reason.as_deref() == Some("disconnect"),
            json: json.into_boxed_str(),
            v3_len: v3.len(),
        }
    }

    fn encoded(&self, v: usize) -> &str {
        if v == 0 {
            &self.json[..self.v3_len]
        } else {
            &self.json[self.v3_len..]
        }
    }

    fn entry(&self) -> PresenceEntry {
        serde_json::from_str(self.encoded(1)).unwrap_or_default()
    }
}

fn encode(e: &PresenceEntry) -> [String; 2] {
    let one =
        |v| serde_json::to_string(&for_version(std::slice::from_ref(e), v)[0]).unwrap_or_default();
    [one(ProtocolVersion::V3), one(ProtocolVersion::V4)]
}

fn norm(key: &str) -> Option<String> {
    let t = key.trim();
    (!t.is_empty()).then(|| t.to_lowercase())
}

fn merge_lists(a: Option<Vec<String>>, b: Option<Vec<String>>) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for s in a.into_iter().flatten().chain(b.into_iter().flatten()) {
        let s = s.trim().to_owned();
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    }
    (!out.is_empty()).then_some(out)
}

impl Presence {
    pub fn new(host: &str, version: &str) -> Presence {
        let platform = format!("{} {}", std::env::consts::OS, os_release());
        let device_family = match std::env::consts::OS {
            "macos" => "Mac",
            "linux" => "Linux",
            "windows" => "Windows",
            other => other,
        };
        let entry = PresenceEntry {
            host: Some(host.to_owned()),
            version: Some(version.to_owned()),
            platform: Some(platform),
            device_family: Some(device_family.to_owned()),
            model_identifier: Some(std::env::consts::ARCH.to_owned()),
            mode: Some("gateway".into()),
            reason: Some("self".into()),
            text: Some(format!(
                "Gateway: {host} · app {version} · mode gateway · reason self"
            )),
            ts: now_ms(),
            ..Default::default()
        };
        let self_key = host.to_lowercase();
        let mut entries = HashMap::new();
        entries.insert(Box::from(self_key.as_str()), Slot::new(&entry));
        Presence {
            self_key,
            self_entry: entry,
            entries,
        }
    }

    /// Stores an entry, encoded.
    fn put(&mut self, key: &str, entry: &PresenceEntry) {
        self.entries.insert(Box::from(key), Slot::new(entry));
    }

    /// Drops expired entries, and the oldest beyond the bound. Runs for every change of
    /// a crowd's list, so it clones no key it keeps and sorts only when over the bound.
    fn prune(&mut self, now: u64) {
        let self_key = self.self_key.as_str();
        self.entries
            .retain(|k, s| &**k == self_key || now.saturating_sub(s.ts) <= TTL_MS);
        let over = self.entries.len().saturating_sub(MAX_ENTRIES);
        if over > 0 {
            let mut by_age: Vec<(u64, &Box<str>)> = self
                .entries
                .iter()
                .filter(|(k, _)| &***k != self_key)
                .map(|(k, s)| (s.ts, k))
                .collect();
            let gone: Vec<Box<str>> = if over == 1 {
                by_age
                    .iter()
                    .min()
                    .map(|(_, k)| (*k).clone())
                    .into_iter()
                    .collect()
            } else {
                by_age.sort_unstable();
                by_age
                    .iter()
                    .take(over)
                    .map(|(_, k)| (*k).clone())
                    .collect()
            };
            for k in gone {
                self.entries.remove(&k);
            }
        }
        self.bound_bytes();
    }

    /// Drops entries until the list's v4 JSON fits [`MAX_BYTES`]: departed clients first,
    /// then the oldest. The gateway's own entry stays.
    fn bound_bytes(&mut self) {
        let mut total: usize = self.entries.values().map(|s| s.encoded(1).len() + 1).sum();
        if total <= MAX_BYTES {
            return;
        }
        let mut victims: Vec<(bool, u64, Box<str>)> = self
            .entries
            .iter()
            .filter(|(k, _)| ***k != *self.self_key)
            .map(|(k, s)| (!s.departed, s.ts, k.clone()))
            .collect();
        victims.sort();
        for (_, _, k) in victims {
            if total <= MAX_BYTES {
                break;
            }
            if let Some(s) = self.entries.remove(&k) {
                total -= s.encoded(1).len() + 1;
            }
        }
    }

    /// The entries in list order: the gateway first (it was just touched, so it is the
    /// newest, as in the reference), then newest first.
    fn order(&self) -> Vec<&Slot> {
        let mut others: Vec<&Slot> = self
            .entries
            .iter()
            .filter(|(k, _)| ***k != *self.self_key)
            .map(|(_, s)| s)
            .collect();
        others.sort_by_key(|s| std::cmp::Reverse(s.ts));
        let mut slots = Vec::with_capacity(others.len() + 1);
        slots.extend(self.entries.get(self.self_key.as_str()));
        slots.extend(others);
        slots
    }

    /// Prunes expired entries and marks the gateway's own entry as seen now.
    fn refresh(&mut self) {
        let now = now_ms();
        self.prune(now);
        self.self_entry.ts = now;
        let slot = Slot::new(&self.self_entry);
        self.entries.insert(Box::from(self.self_key.as_str()), slot);
    }

    /// The list as a JSON array for `version`, pruned of expired entries: one
    /// allocation of the exact size and a copy of each entry's encoding.
    pub fn encoded_for(&mut self, version: ProtocolVersion) -> String {
        self.refresh();
        let v = usize::from(version == ProtocolVersion::V4);
        let slots = self.order();
        let len = 2 + slots.iter().map(|s| s.encoded(v).len() + 1).sum::<usize>();
        let mut out = String::with_capacity(len);
        out.push('[');
        for (i, s) in slots.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(s.encoded(v));
        }
        out.push(']');
        out
    }

    /// The list as JSON arrays, for v3 and v4, pruned of expired entries.
    pub fn encoded(&mut self) -> [String; 2] {
        [
            self.encoded_for(ProtocolVersion::V3),
            self.encoded_for(ProtocolVersion::V4),
        ]
    }

    /// Records a connected client.
    pub fn upsert(&mut self, key: &str, mut entry: PresenceEntry) {
        let Some(key) = norm(key) else { return };
        let existing = self
            .entries
            .remove(key.as_str())
            .map(|s| s.entry())
            .unwrap_or_default();
        entry.roles = merge_lists(existing.roles.clone(), entry.roles.take());
        entry.scopes = merge_lists(existing.scopes.clone(), entry.scopes.take());
        if entry.text.is_none() {
            entry.text = existing.text.clone().or_else(|| {
                Some(format!(
                    "Node: {} · mode {}",
                    entry
                        .host
                        .as_deref()
                        .or(existing.host.as_deref())
                        .unwrap_or("unknown"),
                    entry
                        .mode
                        .as_deref()
                        .or(existing.mode.as_deref())
                        .unwrap_or("unknown"),
                ))
            });
        }
        entry.online_since = entry.online_since.or(existing.online_since);
        entry.ts = now_ms();
        self.put(&key, &entry);
    }

    /// Marks a departed client; its entry stays until it expires.
    pub fn disconnect(&mut self, key: &str) {
        let Some(key) = norm(key) else { return };
        if let Some(mut e) = self.entries.get(key.as_str()).map(Slot::entry) {
            e.reason = Some("disconnect".into());
            e.ts = now_ms();
            self.put(&key, &e);
        }
    }

    /// Applies a `system-event` line.
    pub fn system_event(&mut self, p: &SystemEventParams, text: &str) {
        let key = [
            p.device_id.as_deref(),
            p.instance_id.as_deref(),
            p.host.as_deref(),
        ]
        .into_iter()
        .flatten()
        .find_map(norm)
        .or_else(|| p.ip.clone())
        .unwrap_or_else(|| text.chars().take(64).collect());
        let mut entry = self
            .entries
            .get(key.as_str())
            .map(Slot::entry)
            .unwrap_or_default();
        let e = &mut entry;
        e.host = p.host.clone().or(e.host.take());
        e.ip = p.ip.clone().or(e.ip.take());
        e.version = p.version.clone().or(e.version.take());
        e.platform = p.platform.clone().or(e.platform.take());
        e.device_family = p.device_family.clone().or(e.device_family.take());
        e.model_identifier = p.model_identifier.clone().or(e.model_identifier.take());
        e.mode = p.mode.clone().or(e.mode.take());
        e.last_input_seconds = p
            .last_input_seconds
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| s as u64)
            .or(e.last_input_seconds);
        e.reason = p.reason.clone().or(e.reason.take());
        e.device_id = p.device_id.clone().or(e.device_id.take());
        e.roles = merge_lists(e.roles.take(), p.roles.clone());
        e.scopes = merge_lists(e.scopes.take(), p.scopes.clone());
        e.tags = p.tags.clone().or(e.tags.take());
        e.instance_id = p.instance_id.clone().or(e.instance_id.take());
        e.text = Some(text.to_owned());
        e.ts = now_ms();
        self.put(&key, &entry);
    }

    /// The list, newest first, pruned of expired entries.
    pub fn list(&mut self) -> Vec<PresenceEntry> {
        self.refresh();
        self.order().into_iter().map(Slot::entry).collect()
    }
}

/// The list as a client of `version` sees it.
pub fn for_version(list: &[PresenceEntry], version: ProtocolVersion) -> Vec<PresenceEntry> {
    match version {
        ProtocolVersion::V4 => list.to_vec(),
        ProtocolVersion::V3 => list
            .iter()
            .cloned()
            .map(|mut e| {
                e.client_id = None;
                e.time_zone = None;
                e.online_since = None;
                e
            })
            .collect(),
    }
}

fn os_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_bounded_in_bytes_and_departed_clients_go_first() {
        let mut p = Presence::new("Host", "0.1.0");
        let big = |i: usize| PresenceEntry {
            host: Some(format!("{i:03}{}", "h".repeat(250))),
            platform: Some("p".repeat(128)),
            version: Some("v".repeat(128)),
            mode: Some("ui".into()),
            scopes: Some(
                (0..32)
                    .map(|s| format!("{s:02}{}", "s".repeat(126)))
                    .collect(),
            ),
            ..Default::default()
        };
        for i in 0..150 {
            p.upsert(&format!("dev-{i}"), big(i));
        }
        // Departing marks the entry as just seen: it is the newest but goes first.
        p.disconnect("dev-140");
        p.upsert("dev-new", big(999));
        let [v3, v4] = p.encoded();
        assert!(v4.len() <= MAX_BYTES + 1024, "{} bytes", v4.len());
        assert!(v3.len() <= v4.len());
        let list = p.list();
        assert!(list.len() < 150, "{} entries kept", list.len());
        let hosts: Vec<&str> = list.iter().filter_map(|e| e.host.as_deref()).collect();
        assert!(hosts.contains(&"Host"), "the gateway's own entry stays");
        assert!(
            hosts.iter().any(|h| h.starts_with("999")),
            "the newest stays"
        );
        assert!(
            !hosts.iter().any(|h| h.starts_with("140")),
            "the departed one went first"
        );
        assert!(
            hosts.iter().any(|h| h.starts_with("149")),
            "then the oldest"
        );
    }

    #[test]
    fn the_encoded_list_is_the_list_serialized() {
        let mut p = Presence::new("Host", "0.1.0");
        for i in 0..5 {
            p.upsert(
                &format!("dev-{i}"),
                PresenceEntry {
                    host: Some(format!("h{i}")),
                    client_id: Some("openclaw-macos".into()),
                    mode: Some("ui".into()),
                    ..Default::default()
                },
            );
        }
        p.disconnect("dev-2");
        let [v3, v4] = p.encoded();
        let list = p.list();
        // Same order and content as serializing the list (timestamps of the gateway's own
        // entry aside, which `list` just touched again).
        let strip = |s: &str| {
            let mut v: serde_json::Value = serde_json::from_str(s).unwrap();
            v[0]["ts"] = 0.into();
            v
        };
        let want = |ver| {
            let mut v = serde_json::to_value(for_version(&list, ver)).unwrap();
            v[0]["ts"] = 0.into();
            v
        };
        assert_eq!(strip(&v4), want(ProtocolVersion::V4));
        assert_eq!(strip(&v3), want(ProtocolVersion::V3));
        assert!(!v3.contains("clientId") && v4.contains("clientId"));
    }

    #[test]
    fn gateway_is_listed_and_departed_clients_stay_marked() {
        let mut p = Presence::new("Host", "0.1.0");
        p.upsert(
            "Dev-1",
            PresenceEntry {
                host: Some("laptop".into()),
                mode: Some("ui".into()),
                ..Default::default()
            },
        );
        let list = p.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].reason.as_deref(), Some("self"));
        let client = list
            .iter()
            .find(|e| e.host.as_deref() == Some("laptop"))
            .unwrap();
        assert_eq!(client.text.as_deref(), Some("Node: laptop · mode ui"));
        p.disconnect("dev-1");
        let list = p.list();
        assert!(
            list.iter()
                .any(|e| e.reason.as_deref() == Some("disconnect"))
        );
    }
}
