//! What every messaging channel's config shares: the routing keys (the reference's
//! `dmPolicy`, `allowFrom`, `groupPolicy`, `groupAllowFrom`, `groups`), their resolved
//! form ([`ChannelConfig`]), and the [`Section`] a provider's registry entry reads its
//! `channels.<id>` section through. A leaf: providers import it, it imports no provider.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::env::Env;
use super::file::{DmPolicy, GroupPolicy, Id};
use crate::secret::Secret;

/// Settings of one group (by id, or `"*"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_mention: Option<bool>,
}

/// How the supervisor routes one messaging channel's inbound messages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelConfig {
    /// The channel id (the registry's), also its worker's name.
    pub channel: String,
    pub dm_policy: DmPolicy,
    pub allow_from: Vec<String>,
    pub group_policy: GroupPolicy,
    pub group_allow_from: Vec<String>,
    pub groups: BTreeMap<String, GroupSettings>,
    /// Prefixes an allow-list entry may put before a sender id (from the registry).
    #[serde(skip)]
    pub id_prefixes: &'static [&'static str],
}

impl ChannelConfig {
    /// The reference's defaults: pairing for DMs, allow-listed groups, mentions required.
    pub fn defaults(channel: &str) -> ChannelConfig {
        ChannelConfig {
            channel: channel.to_owned(),
            dm_policy: DmPolicy::Pairing,
            allow_from: Vec::new(),
            group_policy: GroupPolicy::Allowlist,
            group_allow_from: Vec::new(),
            groups: BTreeMap::new(),
            id_prefixes: &[],
        }
    }
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct GroupFile {
    pub require_mention: Option<bool>,
}

/// The routing keys of a channel section.
#[derive(Debug, Clone, Copy)]
pub struct PolicyFile<'a> {
    pub dm_policy: Option<DmPolicy>,
    pub allow_from: &'a [Id],
    pub group_policy: Option<GroupPolicy>,
    pub group_allow_from: &'a [Id],
    pub groups: &'a BTreeMap<String, GroupFile>,
}

/// Declares a provider's section struct: the routing keys every messaging channel shares,
/// then the provider's own. (`serde(flatten)` cannot be combined with
/// `deny_unknown_fields`, hence a macro rather than a shared struct.)
macro_rules! channel_section {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "camelCase", default)]
        pub struct $name {
            /// Default: on when the section exists.
            pub enabled: Option<bool>,
            pub dm_policy: Option<$crate::config::file::DmPolicy>,
            pub allow_from: Vec<$crate::config::file::Id>,
            pub group_policy: Option<$crate::config::file::GroupPolicy>,
            pub group_allow_from: Vec<$crate::config::file::Id>,
            /// Per-group settings by group id, `"*"` for every group. Listing a group admits it.
            pub groups: std::collections::BTreeMap<String, $crate::config::channel::GroupFile>,
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl $name {
            pub fn policy(&self) -> $crate::config::channel::PolicyFile<'_> {
                $crate::config::channel::PolicyFile {
                    dm_policy: self.dm_policy,
                    allow_from: &self.allow_from,
                    group_policy: self.group_policy,
                    group_allow_from: &self.group_allow_from,
                    groups: &self.groups,
                }
            }
        }
    };
}
pub(crate) use channel_section;

/// One provider's `channels.<id>` section as its registry entry reads it: typed parsing
/// with key-named errors, secrets with their source, the environment, and problems, which
/// all end up in the one report `config validate` prints.
pub struct Section<'a> {
    pub id: &'static str,
    /// The section as written (`None`: absent, the channel was turned on from the
    /// environment).
    pub raw: Option<&'a Value>,
    pub env: &'a dyn Env,
    pub state_dir: &'a Path,
    pub(super) problems: &'a mut Vec<String>,
    pub(super) sources: &'a mut BTreeMap<String, String>,
}

impl Section<'_> {
    /// `channels.<id>.<key>`.
    pub fn key(&self, key: &str) -> String {
        format!("channels.{}.{key}", self.id)
    }

    pub fn problem(&mut self, key: &str, what: impl std::fmt::Display) {
        let key = self.key(key);
        self.problems.push(format!("{key}: {what}"));
    }

    /// The section as the provider's type; `None` (and a key-named problem) when it does
    /// not fit. An absent section is the type's default.
    pub fn parse<T: DeserializeOwned + Default>(&mut self) -> Option<T> {
        let Some(raw) = self.raw else {
            return Some(T::default());
        };
        match serde_path_to_error::deserialize::<_, T>(raw) {
            Ok(t) => Some(t),
            Err(e) => {
                let path = e.path().to_string();
                let key = if path == "." {
                    format!("channels.{}", self.id)
                } else {
                    self.key(&path)
                };
                self.problems.push(format!("{key}: {}", e.into_inner()));
                None
            }
        }
    }

    /// A secret from the environment, else the file; records where it came from.
    pub fn secret(
        &mut self,
        key: &str,
        env: &[&'static str],
        file: &Option<Secret>,
    ) -> Option<Secret> {
        let key = self.key(key);
        if let Some((name, v)) = self.env.first(env)
            && let Some(s) = Secret::new(v)
        {
            self.sources.insert(key, format!("env {name}"));
            return Some(s);
        }
        if file.is_some() {
            self.sources.insert(key, "config file".into());
        }
        file.clone()
    }

    /// The first non-blank value of these environment variables.
    pub fn var(&self, names: &[&'static str]) -> Option<String> {
        self.env.first(names).map(|(_, v)| v)
    }

    /// Resolves the routing keys (the reference's defaults where unset).
    pub fn routing(
        &mut self,
        p: PolicyFile<'_>,
        id_prefixes: &'static [&'static str],
    ) -> ChannelConfig {
        let mut c = ChannelConfig::defaults(self.id);
        c.id_prefixes = id_prefixes;
        let ids = |v: &[Id]| -> Vec<String> {
            v.iter()
                .map(Id::as_string)
                .filter(|s| !s.is_empty())
                .collect()
        };
        c.allow_from = ids(p.allow_from);
        c.group_allow_from = ids(p.group_allow_from);
        if let Some(d) = p.dm_policy {
            c.dm_policy = d;
        }
        if let Some(g) = p.group_policy {
            c.group_policy = g;
        }
        c.groups = p
            .groups
            .iter()
            .map(|(k, g)| {
                (
                    k.trim().to_owned(),
                    GroupSettings {
                        require_mention: g.require_mention,
                    },
                )
            })
            .collect();
        if c.dm_policy == DmPolicy::Open && !c.allow_from.iter().any(|a| a == "*") {
            self.problem(
                "dmPolicy",
                "\"open\" lets anyone talk to your agent; confirm it by adding \"*\" to allowFrom",
            );
        }
        c
    }

    /// Checks a provider URL: `https`, or `http`/`ws` only to a loopback host (a test
    /// stand-in or a local relay); `schemes` lists what the key accepts.
    pub fn check_url(&mut self, key: &str, url: &str, schemes: &[&str]) {
        let u = url.trim();
        let Some((scheme, rest)) = u.split_once("://") else {
            self.problem(key, format!("{u:?} is not a URL"));
            return;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority
            .rsplit_once('@')
            .map(|(_, h)| h)
            .unwrap_or(authority);
        if host.is_empty() {
            self.problem(key, format!("{u:?} has no host"));
            return;
        }
        if !schemes.contains(&scheme) {
            self.problem(
                key,
                format!("{u:?}: the scheme must be one of {}", schemes.join(", ")),
            );
            return;
        }
        let plain = matches!(scheme, "http" | "ws");
        if plain && !is_loopback_host(host) {
            self.problem(
                key,
                format!(
                    "{u:?}: plain {scheme}:// is allowed only to a loopback host (127.0.0.1, ::1, localhost); use {scheme}s://"
                ),
            );
        }
    }
}

/// `127.0.0.1:8080`, `[::1]:80`, `localhost` …
pub fn is_loopback_host(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host_port
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(host_port)
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Runs a provider's `configure` on a section, as the resolver would (tests).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub struct Configured {
        pub result: Option<(ChannelConfig, Value)>,
        pub problems: Vec<String>,
        pub sources: BTreeMap<String, String>,
    }

    pub fn configure(
        id: &'static str,
        configure: fn(&mut Section<'_>) -> Option<(ChannelConfig, Value)>,
        raw: Option<Value>,
        env: &[(&str, &str)],
    ) -> Configured {
        let env = crate::config::env::MapEnv::with(env);
        let (mut problems, mut sources) = (Vec::new(), BTreeMap::new());
        let mut s = Section {
            id,
            raw: raw.as_ref(),
            env: &env,
            state_dir: Path::new("/tmp/sb-test-state"),
            problems: &mut problems,
            sources: &mut sources,
        };
        let result = configure(&mut s);
        Configured {
            result,
            problems,
            sources,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback_host("127.0.0.1:8080"));
        assert!(is_loopback_host("[::1]:9"));
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("example.com:80"));
        assert!(!is_loopback_host("10.0.0.1"));
    }
}
