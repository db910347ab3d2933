//! Content-addressed storage: bytes are stored once under their SHA-256, so units that share an
//! input panel share one blob, and contributors cache it by the same name.

use crate::error::ApiError;
use glowworm::hash::ContentHash;
use rusqlite::{Connection, OptionalExtension, params};

/// Stores `bytes` (once) and returns their hash.
pub fn store(conn: &Connection, bytes: &[u8]) -> Result<ContentHash, ApiError> {
    let hash = ContentHash::of(bytes);
    conn.prepare_cached("INSERT OR IGNORE INTO blobs (hash, bytes) VALUES (?1, ?2)")?
        .execute(params![hash.to_string(), bytes])?;
    Ok(hash)
}

/// The bytes stored under `hash`, if any.
pub fn get(conn: &Connection, hash: &ContentHash) -> Result<Option<Vec<u8>>, ApiError> {
    let bytes = conn
        .prepare_cached("SELECT bytes FROM blobs WHERE hash = ?1")?
        .query_row([hash.to_string()], |row| row.get(0))
        .optional()?;
    Ok(bytes)
}

/// Like [`get`], for a blob the database itself refers to: missing is an internal error.
pub fn get_required(conn: &Connection, hash: &ContentHash) -> Result<Vec<u8>, ApiError> {
    get(conn, hash)?.ok_or_else(|| ApiError::Internal(format!("blob {hash} is missing")))
}

/// Reads a hash stored as hex text in column `index`.
pub fn hash_column(row: &rusqlite::Row, index: usize) -> rusqlite::Result<ContentHash> {
    let text: String = row.get(index)?;
    text.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}
