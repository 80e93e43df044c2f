//! DM pairing: who may talk to the agent through a messaging channel when its
//! `dmPolicy` is `pairing` (the reference gateway's rules).
//!
//! An unknown sender gets a code — 8 characters, uppercase, without the ambiguous
//! `0 O 1 I` — and their message is not processed. An operator approves the code
//! (`switchboard pairing approve <channel> CODE`); from then on the sender is allowed.
//! Codes expire after an hour; at most 3 are pending per channel (more senders are
//! ignored until one is approved or expires), so a stranger cannot flood the store or
//! make the bot spam replies. Everything lives in SQLite.

use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use crate::clock::now_ms;
use crate::state::db::{Db, DbError};

pub const CODE_LENGTH: usize = 8;
pub const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
pub const CODE_TTL_MS: u64 = 60 * 60 * 1000;
pub const MAX_PENDING: i64 = 3;

/// Who is asking.
#[derive(Debug, Clone)]
pub struct Sender {
    pub channel: String,
    pub sender_id: String,
    pub chat_id: String,
    pub name: String,
    pub username: String,
}

/// What became of a pairing request.
#[derive(Debug, Clone, PartialEq)]
pub enum Requested {
    /// A new code: tell the sender.
    New(String),
    /// The sender already has a pending code (not sent again).
    Pending,
    /// The channel has too many pending requests; ignored.
    Full,
}

fn random_code() -> String {
    // uuid v4: random bytes from the OS RNG, except the version (byte 6) and variant
    // (byte 8) bits, which are skipped so every character is uniform over the alphabet.
    let bytes = uuid::Uuid::new_v4();
    bytes
        .as_bytes()
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 6 && *i != 8)
        .map(|(_, b)| b)
        .take(CODE_LENGTH)
        .map(|b| CODE_ALPHABET[*b as usize % CODE_ALPHABET.len()] as char)
        .collect()
}

/// Files a pairing request for an unknown sender.
pub async fn request(db: &Db, s: Sender) -> Result<Requested, DbError> {
    db.call(move |c| {
        let now = now_ms() as i64;
        let tx = c.transaction()?;
        tx.execute("DELETE FROM dm_pairing WHERE expires_at <= ?1", [now])?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT code FROM dm_pairing WHERE channel = ?1 AND sender_id = ?2",
                params![s.channel, s.sender_id],
                |r| r.get(0),
            )
            .optional()?;
        if existing.is_some() {
            tx.commit()?;
            return Ok(Requested::Pending);
        }
        let pending: i64 = tx.query_row(
            "SELECT COUNT(*) FROM dm_pairing WHERE channel = ?1",
            [&s.channel],
            |r| r.get(0),
        )?;
        if pending >= MAX_PENDING {
            tx.commit()?;
            return Ok(Requested::Full);
        }
        let mut code = random_code();
        for _ in 0..16 {
            let taken: bool = tx.query_row(
                "SELECT EXISTS(SELECT 1 FROM dm_pairing WHERE channel = ?1 AND code = ?2)",
                params![s.channel, code],
                |r| r.get(0),
            )?;
            if !taken {
                break;
            }
            code = random_code();
        }
        tx.execute(
            "INSERT INTO dm_pairing (channel, code, sender_id, chat_id, sender_name, sender_username, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![s.channel, code, s.sender_id, s.chat_id, s.name, s.username, now, now + CODE_TTL_MS as i64],
        )?;
        tx.commit()?;
        Ok(Requested::New(code))
    })
    .await
}

/// Whether the sender was approved by pairing earlier.
pub async fn is_allowed(db: &Db, channel: &str, sender_id: &str) -> Result<bool, DbError> {
    let (channel, sender_id) = (channel.to_owned(), sender_id.to_owned());
    db.call(move |c| {
        c.query_row(
            "SELECT EXISTS(SELECT 1 FROM dm_allowed WHERE channel = ?1 AND sender_id = ?2)",
            params![channel, sender_id],
            |r| r.get(0),
        )
    })
    .await
}

/// An approved request: who, and where to tell them.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Approved {
    pub channel: String,
    pub id: String,
    pub chat_id: String,
    pub name: String,
    pub username: String,
}

/// Approves a pending code (case-insensitive). `None` if no such pending code.
pub async fn approve(db: &Db, channel: &str, code: &str) -> Result<Option<Approved>, DbError> {
    let (channel, code) = (channel.to_owned(), code.trim().to_ascii_uppercase());
    db.call(move |c| {
        let now = now_ms() as i64;
        let tx = c.transaction()?;
        let found = tx
            .query_row(
                "SELECT sender_id, chat_id, sender_name, sender_username FROM dm_pairing
                 WHERE channel = ?1 AND code = ?2 AND expires_at > ?3",
                params![channel, code, now],
                |r| {
                    Ok(Approved {
                        channel: channel.clone(),
                        id: r.get(0)?,
                        chat_id: r.get(1)?,
                        name: r.get(2)?,
                        username: r.get(3)?,
                    })
                },
            )
            .optional()?;
        let Some(a) = found else {
            return Ok(None);
        };
        tx.execute(
            "INSERT INTO dm_allowed (channel, sender_id, sender_name, sender_username, approved_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(channel, sender_id) DO UPDATE SET approved_at = excluded.approved_at",
            params![a.channel, a.id, a.name, a.username, now],
        )?;
        tx.execute(
            "DELETE FROM dm_pairing WHERE channel = ?1 AND sender_id = ?2",
            params![a.channel, a.id],
        )?;
        tx.commit()?;
        Ok(Some(a))
    })
    .await
}

/// Rejects a pending code. Returns whether there was one.
pub async fn reject(db: &Db, channel: &str, code: &str) -> Result<bool, DbError> {
    let (channel, code) = (channel.to_owned(), code.trim().to_ascii_uppercase());
    db.call(move |c| {
        c.execute(
            "DELETE FROM dm_pairing WHERE channel = ?1 AND code = ?2",
            params![channel, code],
        )
        .map(|n| n > 0)
    })
    .await
}

/// Removes an approved sender. Returns whether there was one.
pub async fn revoke(db: &Db, channel: &str, sender_id: &str) -> Result<bool, DbError> {
    let (channel, sender_id) = (channel.to_owned(), sender_id.trim().to_owned());
    db.call(move |c| {
        c.execute(
            "DELETE FROM dm_allowed WHERE channel = ?1 AND sender_id = ?2",
            params![channel, sender_id],
        )
        .map(|n| n > 0)
    })
    .await
}

/// Pending requests and approved senders, optionally of one channel.
pub async fn list(db: &Db, channel: Option<String>) -> Result<Value, DbError> {
    db.call(move |c| {
        let now = now_ms() as i64;
        let mut stmt = c.prepare(
            "SELECT channel, code, sender_id, chat_id, sender_name, sender_username, created_at, expires_at
             FROM dm_pairing WHERE expires_at > ?1 AND (?2 IS NULL OR channel = ?2) ORDER BY created_at",
        )?;
        let requests = stmt
            .query_map(params![now, channel], |r| {
                Ok(json!({
                    "channel": r.get::<_, String>(0)?, "code": r.get::<_, String>(1)?,
                    "id": r.get::<_, String>(2)?, "chatId": r.get::<_, String>(3)?,
                    "name": r.get::<_, String>(4)?, "username": r.get::<_, String>(5)?,
                    "createdAt": r.get::<_, i64>(6)?, "expiresAt": r.get::<_, i64>(7)?,
                }))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut stmt = c.prepare(
            "SELECT channel, sender_id, sender_name, sender_username, approved_at FROM dm_allowed
             WHERE (?1 IS NULL OR channel = ?1) ORDER BY approved_at",
        )?;
        let allowed = stmt
            .query_map(params![channel], |r| {
                Ok(json!({
                    "channel": r.get::<_, String>(0)?, "id": r.get::<_, String>(1)?,
                    "name": r.get::<_, String>(2)?, "username": r.get::<_, String>(3)?,
                    "approvedAt": r.get::<_, i64>(4)?,
                }))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(json!({"requests": requests, "allowed": allowed}))
    })
    .await
}

/// The reply an unknown sender gets (the reference's wording, our command).
pub fn request_text(channel: &str, sender_id: &str, code: &str) -> String {
    format!(
        "Switchboard: access not configured.\n\nYour {channel} user id: {sender_id}\n\nPairing code: {code}\n\n\
         Ask the bot owner to approve with:\nswitchboard pairing approve {channel} {code}"
    )
}

pub const APPROVED_TEXT: &str = "✅ Switchboard access approved. Send a message to start chatting.";

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(id: &str) -> Sender {
        Sender {
            channel: "chat-a".into(),
            sender_id: id.into(),
            chat_id: id.into(),
            name: "N".into(),
            username: String::new(),
        }
    }

    #[tokio::test]
    async fn codes_are_issued_once_capped_at_three_and_approved_case_insensitively() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.sqlite")).unwrap();
        let Requested::New(code) = request(&db, sender("1")).await.unwrap() else {
            panic!("a new code")
        };
        assert_eq!(code.len(), CODE_LENGTH);
        assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        assert_eq!(request(&db, sender("1")).await.unwrap(), Requested::Pending);
        assert!(matches!(
            request(&db, sender("2")).await.unwrap(),
            Requested::New(_)
        ));
        assert!(matches!(
            request(&db, sender("3")).await.unwrap(),
            Requested::New(_)
        ));
        assert_eq!(request(&db, sender("4")).await.unwrap(), Requested::Full);
        assert!(!is_allowed(&db, "chat-a", "1").await.unwrap());
        let a = approve(&db, "chat-a", &code.to_lowercase())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.id, "1");
        assert!(is_allowed(&db, "chat-a", "1").await.unwrap());
        assert!(
            approve(&db, "chat-a", &code).await.unwrap().is_none(),
            "used once"
        );
        assert!(matches!(
            request(&db, sender("4")).await.unwrap(),
            Requested::New(_)
        ));
        assert!(revoke(&db, "chat-a", "1").await.unwrap());
        assert!(!is_allowed(&db, "chat-a", "1").await.unwrap());
    }
}
