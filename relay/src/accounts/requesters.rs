//! Requesters and their API keys.
//!
//! An operator creates a key with `glowworm-relay keys create --name NAME` ([`create`]); it is
//! shown once and only its SHA-256 is stored, so a stolen database yields no usable key. Every
//! requester endpoint takes the key as `Authorization: Bearer gw_...` ([`Authenticated`]),
//! which names the requester; a revoked key ([`revoke`]) is refused from then on. Each key
//! has a quota: the most units its queued jobs may have at once.

use crate::error::ApiError;
use crate::random;
use axum::http::StatusCode;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// What every key starts with, so that a leaked one is recognisable.
pub const KEY_PREFIX: &str = "gw_";

/// A requester, as its key authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    pub id: i64,
    pub name: String,
    /// Most units its queued jobs may have at once.
    pub quota_units: u64,
}

/// A key as `keys list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub id: i64,
    pub name: String,
    pub quota_units: u64,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// Why a key could not be created or revoked (for the admin command).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a requester name is 1 to 64 characters of letters, digits, '-', '_' or '.'")]
    BadName,
    #[error("a key named {0:?} exists already; revoke it or choose another name")]
    NameTaken(String),
    #[error("no key has id or name {0:?}")]
    Unknown(String),
    #[error("the quota must be at least one unit")]
    BadQuota,
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Database(#[from] rusqlite::Error),
}

fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates a requester with a fresh key; returns the key (the only time it is seen) and the
/// requester.
pub fn create(
    conn: &Connection,
    name: &str,
    quota_units: u64,
    now_ms: i64,
) -> Result<(String, KeyInfo), KeyError> {
    let fits = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !fits {
        return Err(KeyError::BadName);
    }
    if quota_units == 0 {
        return Err(KeyError::BadQuota);
    }
    let taken: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM requesters WHERE name = ?1)",
        [name],
        |row| row.get(0),
    )?;
    if taken {
        return Err(KeyError::NameTaken(name.to_string()));
    }
    // 43 characters of 62: 256 bits.
    let key = format!("{KEY_PREFIX}{}", random::alphanumeric(43)?);
    conn.execute(
        "INSERT INTO requesters (name, key_hash, quota_units, created_at_ms)
         VALUES (?1, ?2, ?3, ?4)",
        params![name, key_hash(&key), quota_units as i64, now_ms],
    )?;
    let info = KeyInfo {
        id: conn.last_insert_rowid(),
        name: name.to_string(),
        quota_units,
        created_at_ms: now_ms,
        revoked_at_ms: None,
    };
    Ok((key, info))
}

/// Every key, oldest first.
pub fn list(conn: &Connection) -> Result<Vec<KeyInfo>, KeyError> {
    let keys = conn
        .prepare(
            "SELECT id, name, quota_units, created_at_ms, revoked_at_ms FROM requesters
             ORDER BY id",
        )?
        .query_map([], |row| {
            Ok(KeyInfo {
                id: row.get(0)?,
                name: row.get(1)?,
                quota_units: row.get::<_, i64>(2)? as u64,
                created_at_ms: row.get(3)?,
                revoked_at_ms: row.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(keys)
}

/// The id of the requester with this id or name.
pub fn find(conn: &Connection, id_or_name: &str) -> Result<i64, KeyError> {
    let id: Option<i64> = conn
        .query_row(
            "SELECT id FROM requesters WHERE name = ?1 OR CAST(id AS TEXT) = ?1",
            [id_or_name],
            |row| row.get(0),
        )
        .optional()?;
    id.ok_or_else(|| KeyError::Unknown(id_or_name.to_string()))
}

/// Revokes the key with this id or name (again: no change). Its jobs keep running; it can
/// submit, read or cancel nothing more.
pub fn revoke(conn: &Connection, id_or_name: &str, now_ms: i64) -> Result<KeyInfo, KeyError> {
    let id = find(conn, id_or_name)?;
    conn.execute(
        "UPDATE requesters SET revoked_at_ms = COALESCE(revoked_at_ms, ?2) WHERE id = ?1",
        params![id, now_ms],
    )?;
    Ok(list(conn)?
        .into_iter()
        .find(|key| key.id == id)
        .expect("the key just revoked exists"))
}

/// The requester whose key this is: 401 `bad_api_key` for a key the relay never issued,
/// 403 `revoked_api_key` for a revoked one.
pub fn authenticate(conn: &Connection, key: &str) -> Result<Requester, ApiError> {
    let row: Option<(i64, String, i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT id, name, quota_units, revoked_at_ms FROM requesters WHERE key_hash = ?1",
        )?
        .query_row([key_hash(key)], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    match row {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_api_key",
            "this API key is not one the relay issued",
        )),
        Some((_, name, _, Some(_))) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "revoked_api_key",
            format!("the API key of requester '{name}' has been revoked"),
        )),
        Some((id, name, quota, None)) => Ok(Requester {
            id,
            name,
            quota_units: quota as u64,
        }),
    }
}

/// The requester of a request, from its `Authorization: Bearer` key. Handlers that take it
/// are requester endpoints; the others need no key.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Requester);
