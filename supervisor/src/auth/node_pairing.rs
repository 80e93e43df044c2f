//! The node pairing store of `node.pair.*` (protocol v3; see the reference's
//! `docs/gateway/pairing.md`). It is separate from device pairing and does not gate the
//! WebSocket handshake: clients that use it request pairing for a node, an operator
//! approves (which issues a fresh token, returned once) and the node's token can then be
//! verified. Only the token's SHA-256 is stored.

use std::collections::HashMap;
use std::sync::Mutex;

use rusqlite::params;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::pending::{Pending, PendingError};
use crate::clock::now_ms;
use crate::state::db::{Db, DbError};

#[derive(Default)]
struct State {
    paired: HashMap<String, (Value, String)>,
}

pub struct NodePairing {
    db: Db,
    pending: Pending<Value>,
    state: Mutex<State>,
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    crate::auth::device_identity::encode_b64url(&bytes)
}

#[derive(Debug, thiserror::Error)]
pub enum NodePairingError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Pending(#[from] PendingError),
}

impl NodePairing {
    pub async fn open(db: Db) -> Result<NodePairing, DbError> {
        let state = db
            .call(|c| {
                let mut st = State::default();
                let mut stmt =
                    c.prepare("SELECT node_id, record, token_hash FROM node_pairing_paired")?;
                let rows = stmt.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?;
                for row in rows {
                    let (id, rec, h) = row?;
                    if let Ok(v) = serde_json::from_str::<Value>(&rec) {
                        st.paired.insert(id, (v, h));
                    }
                }
                Ok(st)
            })
            .await?;
        Ok(NodePairing {
            pending: Pending::open(db.clone(), "node").await?,
            db,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `node.pair.request`: idempotent per node. Returns `(request, created)`.
    pub async fn request(&self, params: &Value) -> Result<(Value, bool), NodePairingError> {
        let node_id = params["nodeId"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let repair = self.lock().paired.contains_key(&node_id);
        let make = || {
            let mut request = params.clone();
            request["requestId"] = json!(uuid::Uuid::new_v4().to_string());
            request["nodeId"] = json!(node_id);
            request["isRepair"] = json!(repair);
            request["ts"] = json!(now_ms());
            request
        };
        Ok(self.pending.file(&node_id, make).await?)
    }

    pub fn list(&self) -> Value {
        let pending = self.pending.list();
        let st = self.lock();
        let mut paired: Vec<Value> = st.paired.values().map(|(v, _)| v.clone()).collect();
        paired.sort_by_key(|p| std::cmp::Reverse(p["approvedAtMs"].as_u64().unwrap_or(0)));
        json!({"pending": pending, "paired": paired})
    }

    /// A live pending request (left pending).
    pub fn pending_request(&self, request_id: &str) -> Option<Value> {
        self.pending.peek(request_id)
    }

    /// Approves: a fresh token, returned in the result only.
    pub async fn approve(&self, request_id: &str) -> Result<Option<Value>, DbError> {
        let now = now_ms();
        let Some(req) = self.pending.take(request_id) else {
            return Ok(None);
        };
        let (node, token) = {
            let mut st = self.lock();
            let node_id = req["nodeId"].as_str().unwrap_or_default().to_owned();
            let created = st
                .paired
                .get(&node_id)
                .and_then(|(v, _)| v["createdAtMs"].as_u64())
                .unwrap_or(now);
            let mut node = req.clone();
            if let Some(o) = node.as_object_mut() {
                for k in ["requestId", "ts", "isRepair", "silent"] {
                    o.remove(k);
                }
            }
            node["createdAtMs"] = json!(created);
            node["approvedAtMs"] = json!(now);
            let token = new_token();
            st.paired.insert(node_id, (node.clone(), hash(&token)));
            (node, token)
        };
        let kind = self.pending.kind();
        let (id, rec, h, rid) = (
            node["nodeId"].as_str().unwrap_or_default().to_owned(),
            node.to_string(),
            hash(&token),
            request_id.to_owned(),
        );
        self.db
            .call(move |c| {
                let tx = c.transaction()?;
                tx.execute(
                    "INSERT OR REPLACE INTO node_pairing_paired (node_id, record, token_hash) VALUES (?1, ?2, ?3)",
                    params![id, rec, h],
                )?;
                Pending::<Value>::delete_in(&tx, kind, &rid)?;
                tx.commit()
            })
            .await?;
        let mut with_token = node;
        with_token["token"] = json!(token);
        Ok(Some(json!({"requestId": request_id, "node": with_token})))
    }

    pub async fn reject(&self, request_id: &str) -> Result<Option<Value>, DbError> {
        let Some(req) = self.pending.take(request_id) else {
            return Ok(None);
        };
        self.pending.delete(request_id).await?;
        Ok(Some(
            json!({"requestId": request_id, "nodeId": req["nodeId"]}),
        ))
    }

    /// Commands approved for a node (v4 command approval).
    pub fn approved_commands(&self, node_id: &str) -> Vec<String> {
        self.lock()
            .paired
            .get(node_id)
            .and_then(|(v, _)| v["commands"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect()
    }

    /// `node.pair.verify`: `{ok, node?}`.
    pub fn verify(&self, node_id: &str, token: &str) -> Value {
        let st = self.lock();
        match st.paired.get(node_id.trim()) {
            Some((node, h)) if bool::from(hash(token).as_bytes().ct_eq(h.as_bytes())) => {
                json!({"ok": true, "node": node})
            }
            _ => json!({"ok": false}),
        }
    }

    /// `node.rename`.
    pub async fn rename(&self, node_id: &str, name: &str) -> Result<Option<Value>, DbError> {
        let rec = {
            let mut st = self.lock();
            let Some((node, _)) = st.paired.get_mut(node_id) else {
                return Ok(None);
            };
            node["displayName"] = json!(name);
            node.to_string()
        };
        let id = node_id.to_owned();
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE node_pairing_paired SET record = ?2 WHERE node_id = ?1",
                    params![id, rec],
                )
                .map(|_| ())
            })
            .await?;
        Ok(Some(json!({"nodeId": node_id, "displayName": name})))
    }
}
