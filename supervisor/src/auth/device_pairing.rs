//! Paired devices, pairing requests and device tokens.
//!
//! Device tokens are derived, not stored: `HMAC-SHA256(key, device|role|generation)` with a
//! 32-byte key kept in the state directory (mode 0600). The database holds only each
//! token's SHA-256, its scopes and its generation, so the gateway can hand a device its
//! current token again in every `hello-ok` (as the protocol requires) without the
//! database ever holding a usable secret. Rotation bumps the generation; revocation marks
//! the row. Everything is cached in memory and written through to SQLite.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::device_identity::encode_b64url;
use crate::auth::pending::{Pending, PendingError, Request};
use crate::clock::now_ms;
use crate::state::db::{Db, DbError};

pub const KEY_FILE: &str = "device-token.key";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevice {
    pub device_id: String,
    pub public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    pub created_at_ms: u64,
    pub approved_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingRequest {
    pub request_id: String,
    pub device_id: String,
    pub public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    pub role: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    pub silent: bool,
    pub is_repair: bool,
    pub ts: u64,
}

impl Request for PendingRequest {
    fn request_id(&self) -> &str {
        &self.request_id
    }
    fn subject(&self) -> &str {
        &self.device_id
    }
    fn filed_at(&self) -> u64 {
        self.ts
    }
}

/// A device token's public facts.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    pub device_id: String,
    pub role: String,
    pub generation: u64,
    pub scopes: Vec<String>,
    pub issued_at_ms: u64,
    pub revoked_at_ms: Option<u64>,
}

/// What a connecting device needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairStatus {
    Paired,
    NotPaired,
    RoleUpgrade,
    ScopeUpgrade,
}

impl PairStatus {
    pub fn reason(&self) -> &'static str {
        match self {
            PairStatus::Paired => "paired",
            PairStatus::NotPaired => "not-paired",
            PairStatus::RoleUpgrade => "role-upgrade",
            PairStatus::ScopeUpgrade => "scope-upgrade",
        }
    }
}

/// The facts of a connecting device.
#[derive(Debug, Clone)]
pub struct Claim {
    pub device_id: String,
    pub public_key: String,
    pub display_name: Option<String>,
    pub platform: Option<String>,
    pub client_id: Option<String>,
    pub client_mode: Option<String>,
    pub role: String,
    pub scopes: Vec<String>,
    pub remote_ip: Option<String>,
}

#[derive(Default)]
struct State {
    paired: HashMap<String, PairedDevice>,
    tokens: HashMap<(String, String), TokenInfo>,
}

pub struct Devices {
    db: Db,
    pending: Pending<PendingRequest>,
    key: [u8; 32],
    state: Mutex<State>,
}

#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    #[error("cannot read or create the device token key {path}: {source}")]
    Key {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Pending(#[from] PendingError),
}

fn load_key(state_dir: &Path) -> Result<[u8; 32], DevicesError> {
    let path = state_dir.join(KEY_FILE);
    let err = |source| DevicesError::Key {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(&bytes);
            return Ok(k);
        }
        Ok(_) => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the key file is not 32 bytes",
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(err)?;
    f.write_all(&key).map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(key)
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Devices {
    pub async fn open(db: Db, state_dir: &Path) -> Result<Devices, DevicesError> {
        let key = load_key(state_dir)?;
        let state = db
            .call(|c| {
                let mut st = State::default();
                let mut stmt = c.prepare("SELECT record FROM devices")?;
                for rec in stmt.query_map([], |r| r.get::<_, String>(0))? {
                    if let Ok(d) = serde_json::from_str::<PairedDevice>(&rec?) {
                        st.paired.insert(d.device_id.clone(), d);
                    }
                }
                let mut stmt = c.prepare(
                    "SELECT device_id, role, generation, scopes, issued_at, revoked_at FROM device_tokens",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(TokenInfo {
                        device_id: r.get(0)?,
                        role: r.get(1)?,
                        generation: r.get::<_, i64>(2)? as u64,
                        scopes: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                        issued_at_ms: r.get::<_, i64>(4)? as u64,
                        revoked_at_ms: r.get::<_, Option<i64>>(5)?.map(|v| v as u64),
                    })
                })?;
                for t in rows {
                    let t = t?;
                    st.tokens.insert((t.device_id.clone(), t.role.clone()), t);
                }
                Ok(st)
            })
            .await?;
        Ok(Devices {
            pending: Pending::open(db.clone(), "device").await?,
            db,
            key,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token of generation `generation` for a device and role.
    fn derive(&self, device_id: &str, role: &str, generation: u64) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(
            format!("switchboard-device-token|v1|{device_id}|{role}|{generation}").as_bytes(),
        );
        format!("sbdt_{}", encode_b64url(&mac.finalize().into_bytes()))
    }

    /// The live token info when `presented` is this device's current token for `role`.
    pub fn verify_token(&self, device_id: &str, role: &str, presented: &str) -> Option<TokenInfo> {
        let info = self
            .lock()
            .tokens
            .get(&(device_id.to_owned(), role.to_owned()))
            .cloned()?;
        if info.revoked_at_ms.is_some() {
            return None;
        }
        let expected = self.derive(device_id, role, info.generation);
        bool::from(expected.as_bytes().ct_eq(presented.as_bytes())).then_some(info)
    }

    pub fn pair_status(
        &self,
        device_id: &str,
        public_key: &str,
        role: &str,
        scopes: &[String],
    ) -> PairStatus {
        let st = self.lock();
        let Some(d) = st.paired.get(device_id) else {
            return PairStatus::NotPaired;
        };
        if d.public_key != public_key {
            return PairStatus::NotPaired;
        }
        if !d.roles.iter().any(|r| r == role) {
            return PairStatus::RoleUpgrade;
        }
        if scopes.iter().any(|s| !d.scopes.contains(s)) {
            return PairStatus::ScopeUpgrade;
        }
        PairStatus::Paired
    }

    fn merge_into_paired(
        st: &mut State,
        claim_roles: &[String],
        p: &PendingRequest,
    ) -> PairedDevice {
        let now = now_ms();
        let existing = st.paired.get(&p.device_id).cloned();
        let mut roles = existing
            .as_ref()
            .map(|d| d.roles.clone())
            .unwrap_or_default();
        for r in claim_roles {
            if !roles.contains(r) {
                roles.push(r.clone());
            }
        }
        let mut scopes = existing
            .as_ref()
            .map(|d| d.scopes.clone())
            .unwrap_or_default();
        for s in &p.scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let d = PairedDevice {
            device_id: p.device_id.clone(),
            public_key: p.public_key.clone(),
            display_name: p.display_name.clone(),
            platform: p.platform.clone(),
            client_id: p.client_id.clone(),
            client_mode: p.client_mode.clone(),
            roles,
            scopes,
            remote_ip: p.remote_ip.clone(),
            created_at_ms: existing.map(|d| d.created_at_ms).unwrap_or(now),
            approved_at_ms: now,
        };
        st.paired.insert(d.device_id.clone(), d.clone());
        d
    }

    async fn save_device(&self, d: &PairedDevice) -> Result<(), DbError> {
        let id = d.device_id.clone();
        let rec = serde_json::to_string(d).unwrap_or_default();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO devices (device_id, record) VALUES (?1, ?2)",
                    params![id, rec],
                )
                .map(|_| ())
            })
            .await
    }

    fn request_from(claim: &Claim, silent: bool, is_repair: bool) -> PendingRequest {
        PendingRequest {
            request_id: uuid::Uuid::new_v4().to_string(),
            device_id: claim.device_id.clone(),
            public_key: claim.public_key.clone(),
            display_name: claim.display_name.clone(),
            platform: claim.platform.clone(),
            client_id: claim.client_id.clone(),
            client_mode: claim.client_mode.clone(),
            role: claim.role.clone(),
            roles: vec![claim.role.clone()],
            scopes: claim.scopes.clone(),
            remote_ip: claim.remote_ip.clone(),
            silent,
            is_repair,
            ts: now_ms(),
        }
    }

    /// A local device is approved at once; returns the request id it was filed under.
    pub async fn approve_silently(&self, claim: &Claim) -> Result<(String, PairedDevice), DbError> {
        let req = {
            let st = self.lock();
            Self::request_from(claim, true, st.paired.contains_key(&claim.device_id))
        };
        let device = {
            let mut st = self.lock();
            Self::merge_into_paired(&mut st, &req.roles, &req)
        };
        self.save_device(&device).await?;
        tracing::info!(device = %device.device_id, role = %claim.role, "device paired silently (local)");
        Ok((req.request_id, device))
    }

    /// Files (or finds) the device's pending request. `created` says whether it is new.
    pub async fn request(&self, claim: &Claim) -> Result<(PendingRequest, bool), DevicesError> {
        let repair = self.lock().paired.contains_key(&claim.device_id);
        Ok(self
            .pending
            .file(&claim.device_id, || {
                Self::request_from(claim, false, repair)
            })
            .await?)
    }

    pub async fn approve(&self, request_id: &str) -> Result<Option<PairedDevice>, DbError> {
        let Some(req) = self.pending.take(request_id) else {
            return Ok(None);
        };
        let device = Self::merge_into_paired(&mut self.lock(), &req.roles.clone(), &req);
        self.save_device(&device).await?;
        self.pending.delete(request_id).await?;
        Ok(Some(device))
    }

    pub async fn reject(&self, request_id: &str) -> Result<Option<PendingRequest>, DbError> {
        let req = self.pending.take(request_id);
        if req.is_some() {
            self.pending.delete(request_id).await?;
        }
        Ok(req)
    }

    /// The device's current token for `role`, issuing one if it has none (or it was revoked).
    pub async fn ensure_token(
        &self,
        device_id: &str,
        role: &str,
        scopes: &[String],
    ) -> Result<(String, TokenInfo), DbError> {
        let current = self
            .lock()
            .tokens
            .get(&(device_id.to_owned(), role.to_owned()))
            .cloned();
        match current {
            Some(t) if t.revoked_at_ms.is_none() && scopes.iter().all(|s| t.scopes.contains(s)) => {
                Ok((self.derive(device_id, role, t.generation), t))
            }
            Some(t) => {
                let mut merged = t.scopes.clone();
                for s in scopes {
                    if !merged.contains(s) {
                        merged.push(s.clone());
                    }
                }
                self.issue(device_id, role, t.generation + 1, merged).await
            }
            None => self.issue(device_id, role, 1, scopes.to_vec()).await,
        }
    }

    async fn issue(
        &self,
        device_id: &str,
        role: &str,
        generation: u64,
        scopes: Vec<String>,
    ) -> Result<(String, TokenInfo), DbError> {
        let token = self.derive(device_id, role, generation);
        let info = TokenInfo {
            device_id: device_id.to_owned(),
            role: role.to_owned(),
            generation,
            scopes,
            issued_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        let (d, r, h, s, at) = (
            device_id.to_owned(),
            role.to_owned(),
            hash(&token),
            serde_json::to_string(&info.scopes).unwrap_or_default(),
            info.issued_at_ms as i64,
        );
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT OR REPLACE INTO device_tokens (device_id, role, generation, token_hash, scopes, issued_at, revoked_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
                    params![d, r, generation as i64, h, s, at],
                )
                .map(|_| ())
            })
            .await?;
        self.lock()
            .tokens
            .insert((device_id.to_owned(), role.to_owned()), info.clone());
        Ok((token, info))
    }

    /// A fresh token (the old one stops working). `None` if the device is not paired for `role`.
    pub async fn rotate(
        &self,
        device_id: &str,
        role: &str,
        scopes: Option<Vec<String>>,
    ) -> Result<Option<(String, TokenInfo)>, DbError> {
        let (paired, current) = {
            let st = self.lock();
            let paired = st
                .paired
                .get(device_id)
                .is_some_and(|d| d.roles.iter().any(|r| r == role));
            (
                paired,
                st.tokens
                    .get(&(device_id.to_owned(), role.to_owned()))
                    .cloned(),
            )
        };
        if !paired {
            return Ok(None);
        }
        let generation = current.as_ref().map(|t| t.generation + 1).unwrap_or(1);
        let scopes = scopes.or(current.map(|t| t.scopes)).unwrap_or_default();
        self.issue(device_id, role, generation, scopes)
            .await
            .map(Some)
    }

    /// Revokes the token; `None` if there was none.
    pub async fn revoke(&self, device_id: &str, role: &str) -> Result<Option<TokenInfo>, DbError> {
        let now = now_ms();
        let info = {
            let mut st = self.lock();
            let Some(t) = st.tokens.get_mut(&(device_id.to_owned(), role.to_owned())) else {
                return Ok(None);
            };
            t.revoked_at_ms = Some(now);
            t.clone()
        };
        let (d, r) = (device_id.to_owned(), role.to_owned());
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE device_tokens SET revoked_at = ?3 WHERE device_id = ?1 AND role = ?2",
                    params![d, r, now as i64],
                )
                .map(|_| ())
            })
            .await?;
        Ok(Some(info))
    }

    /// `device.pair.list`: pending requests (newest first) and paired devices with their
    /// token summaries (never the tokens).
    pub fn list(&self) -> serde_json::Value {
        let pending = self.pending.list();
        let st = self.lock();
        let mut paired: Vec<serde_json::Value> = st
            .paired
            .values()
            .map(|d| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                let tokens: Vec<serde_json::Value> = st
                    .tokens
                    .values()
                    .filter(|t| t.device_id == d.device_id)
                    .map(|t| {
                        let mut tv = serde_json::json!({"role": t.role, "scopes": t.scopes, "createdAtMs": t.issued_at_ms});
                        if let Some(r) = t.revoked_at_ms {
                            tv["revokedAtMs"] = r.into();
                        }
                        tv
                    })
                    .collect();
                v["tokens"] = tokens.into();
                v
            })
            .collect();
        paired.sort_by_key(|v| std::cmp::Reverse(v["approvedAtMs"].as_u64().unwrap_or(0)));
        serde_json::json!({"pending": pending, "paired": paired})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::pending::{MAX_PENDING, PENDING_TTL_MS};

    fn claim(id: &str) -> Claim {
        Claim {
            device_id: id.into(),
            public_key: "pk".into(),
            display_name: None,
            platform: Some("linux".into()),
            client_id: Some("cli".into()),
            client_mode: Some("cli".into()),
            role: "operator".into(),
            scopes: vec!["operator.read".into()],
            remote_ip: Some("10.0.0.2".into()),
        }
    }

    #[tokio::test]
    async fn tokens_survive_a_reopen_rotate_and_revoke_and_the_db_holds_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.sqlite")).unwrap();
        let d = Devices::open(db.clone(), dir.path()).await.unwrap();
        let (req, created) = d.request(&claim("dev1")).await.unwrap();
        assert!(created);
        assert_eq!(
            d.request(&claim("dev1")).await.unwrap().0.request_id,
            req.request_id,
            "one request per device"
        );
        d.approve(&req.request_id).await.unwrap().expect("approved");
        assert_eq!(
            d.pair_status("dev1", "pk", "operator", &["operator.read".into()]),
            PairStatus::Paired
        );
        assert_eq!(
            d.pair_status("dev1", "pk", "node", &[]),
            PairStatus::RoleUpgrade
        );
        assert_eq!(
            d.pair_status("dev1", "pk", "operator", &["operator.admin".into()]),
            PairStatus::ScopeUpgrade
        );
        let (tok, _) = d
            .ensure_token("dev1", "operator", &["operator.read".into()])
            .await
            .unwrap();
        drop(d);
        let d = Devices::open(db.clone(), dir.path()).await.unwrap();
        assert!(
            d.verify_token("dev1", "operator", &tok).is_some(),
            "same token after reopen"
        );
        let (again, _) = d
            .ensure_token("dev1", "operator", &["operator.read".into()])
            .await
            .unwrap();
        assert_eq!(again, tok, "reused, not reissued");
        let (rotated, info) = d.rotate("dev1", "operator", None).await.unwrap().unwrap();
        assert_ne!(rotated, tok);
        assert_eq!(info.generation, 2);
        assert!(
            d.verify_token("dev1", "operator", &tok).is_none(),
            "old token dead"
        );
        d.revoke("dev1", "operator").await.unwrap().unwrap();
        assert!(d.verify_token("dev1", "operator", &rotated).is_none());
        let hashes: Vec<String> = db
            .call(|c| {
                let mut s = c.prepare("SELECT token_hash FROM device_tokens")?;
                let v = s
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()?;
                Ok(v)
            })
            .await
            .unwrap();
        assert!(!hashes.iter().any(|h| h.contains(&rotated) || h == &rotated));
    }

    #[tokio::test]
    async fn a_pending_request_expires_after_five_minutes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.sqlite")).unwrap();
        let d = Devices::open(db, dir.path()).await.unwrap();
        let (req, _) = d.request(&claim("old")).await.unwrap();
        // Age it past the limit, as five minutes of waiting would.
        d.pending
            .with_mut(&req.request_id, |r| r.ts -= PENDING_TTL_MS);
        assert!(
            d.approve(&req.request_id).await.unwrap().is_none(),
            "expired requests cannot be approved"
        );
        assert_eq!(d.list()["pending"], serde_json::json!([]));
        let (again, created) = d.request(&claim("old")).await.unwrap();
        assert!(
            created && again.request_id != req.request_id,
            "a new request replaces the expired one"
        );
    }

    #[tokio::test]
    async fn pending_requests_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.sqlite")).unwrap();
        let d = Devices::open(db, dir.path()).await.unwrap();
        for i in 0..MAX_PENDING {
            d.request(&claim(&format!("d{i}"))).await.unwrap();
        }
        assert!(matches!(
            d.request(&claim("one-more")).await,
            Err(DevicesError::Pending(PendingError::Full(_)))
        ));
    }
}
