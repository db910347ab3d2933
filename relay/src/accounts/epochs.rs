//! Epochs: the relay's periodic, append-only statements of what each address has earned.
//!
//! Closing an epoch ([`close`]) fixes a ledger position (the last leg it covers), takes each
//! Ethereum address's lifetime earnings up to there (its balance: an address's legs are only
//! credits and link moves, never debits, since payouts happen on chain) as the leaves of an
//! [`EarningsTree`] (byte for byte OpenZeppelin's `StandardMerkleTree` of (address, uint256)),
//! writes the tree's `standard-v1` JSON to the blob store so anyone can fetch it and recompute the
//! root, and records the epoch. Epochs are numbered 1, 2, ... with no gap: a row is only ever
//! added as the last one plus one, so two closers racing add one epoch, and the rows cannot be
//! changed except to record their publication (triggers refuse the rest).
//!
//! The work is in three steps so that the database's writer thread waits for none of it: the
//! earnings are read on a read connection (a snapshot: the ledger only grows, and `id <=
//! position` is exactly what was committed when it was read), the tree is built and written to
//! a file on a blocking thread, then one short write records the epoch.
//!
//! Publishing a root to the payout contract and reading claims is the chain's side
//! ([`glowworm-chain`]); [`mark_published`] records it.

use crate::error::ApiError;
use crate::store::Db;
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::merkle::{Address, Amount, EarningsTree, node_hex};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::{Arc, Mutex, PoisonError};

/// A closed epoch, as the `epochs` table keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    pub epoch: i64,
    /// The last ledger leg it covers.
    pub ledger_position: i64,
    /// The tree's root, 0x and 64 hex characters.
    pub root: String,
    /// The sum of its leaves, in credits (the root's total is this times
    /// `token_units_per_credit`).
    pub total: i64,
    pub leaves: i64,
    /// The tree's `standard-v1` JSON in the blob store.
    pub tree_hash: ContentHash,
    pub closed_at_ms: i64,
    /// The transaction that published its root, once one did.
    pub publish_tx: Option<String>,
    pub published_at_ms: Option<i64>,
}

const EPOCH_COLUMNS: &str = "epoch, ledger_position, root, total, leaves, tree_hash, closed_at_ms,
    publish_tx, published_at_ms";

fn epoch_from_row(row: &rusqlite::Row) -> rusqlite::Result<Epoch> {
    Ok(Epoch {
        epoch: row.get(0)?,
        ledger_position: row.get(1)?,
        root: row.get(2)?,
        total: row.get(3)?,
        leaves: row.get(4)?,
        tree_hash: crate::store::blobs::hash_column(row, 5)?,
        closed_at_ms: row.get(6)?,
        publish_tx: row.get(7)?,
        published_at_ms: row.get(8)?,
    })
}

/// The latest epoch, if one was closed.
pub fn latest(conn: &Connection) -> Result<Option<Epoch>, ApiError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {EPOCH_COLUMNS} FROM epochs ORDER BY epoch DESC LIMIT 1"
        ))?
        .query_row([], epoch_from_row)
        .optional()?)
}

/// The latest epoch whose root is published, if one is.
pub fn latest_published(conn: &Connection) -> Result<Option<Epoch>, ApiError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {EPOCH_COLUMNS} FROM epochs WHERE publish_tx IS NOT NULL
             ORDER BY epoch DESC LIMIT 1"
        ))?
        .query_row([], epoch_from_row)
        .optional()?)
}

/// Epoch `epoch`, if it was closed.
pub fn get(conn: &Connection, epoch: i64) -> Result<Option<Epoch>, ApiError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {EPOCH_COLUMNS} FROM epochs WHERE epoch = ?1"
        ))?
        .query_row([epoch], epoch_from_row)
        .optional()?)
}

/// The latest `limit` epochs, newest first.
pub fn list(conn: &Connection, limit: u32) -> Result<Vec<Epoch>, ApiError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {EPOCH_COLUMNS} FROM epochs ORDER BY epoch DESC LIMIT ?1"
        ))?
        .query_map([limit], epoch_from_row)?
        .collect::<Result<_, _>>()?)
}

/// The epochs not yet published, oldest first.
pub fn unpublished(conn: &Connection) -> Result<Vec<Epoch>, ApiError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {EPOCH_COLUMNS} FROM epochs WHERE publish_tx IS NULL ORDER BY epoch"
        ))?
        .query_map([], epoch_from_row)?
        .collect::<Result<_, _>>()?)
}

/// Records that epoch `epoch`'s root was published by transaction `tx`.
pub fn mark_published(
    conn: &Connection,
    epoch: i64,
    tx: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE epochs SET publish_tx = ?2, published_at_ms = ?3
         WHERE epoch = ?1 AND publish_tx IS NULL",
    )?
    .execute(params![epoch, tx, now_ms])?;
    Ok(())
}

/// What an epoch closed now would cover: the next epoch's number, the ledger position, and
/// each address's lifetime earnings up to it.
#[derive(Debug, Clone)]
struct Snapshot {
    epoch: i64,
    position: i64,
    earnings: Vec<(String, i64)>,
}

/// Reads the earnings up to the ledger's end; `None` when nothing was appended since the last
/// epoch, or no address has earned anything.
fn snapshot(conn: &Connection) -> Result<Option<Snapshot>, ApiError> {
    let last = latest(conn)?;
    let position: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM ledger", [], |row| {
        row.get(0)
    })?;
    if last
        .as_ref()
        .is_some_and(|last| last.ledger_position >= position)
    {
        return Ok(None);
    }
    // The partial index ledger_by_address serves it, with its own condition repeated.
    let earnings: Vec<(String, i64)> = conn
        .prepare(
            "SELECT account, SUM(amount) FROM ledger
             WHERE substr(account, 1, 2) = '0x' AND id <= ?1
             GROUP BY account HAVING SUM(amount) > 0 ORDER BY account",
        )?
        .query_map([position], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    if earnings.is_empty() {
        return Ok(None);
    }
    Ok(Some(Snapshot {
        epoch: last.map_or(1, |last| last.epoch + 1),
        position,
        earnings,
    }))
}

/// Builds the tree of a snapshot's earnings, each leaf its credits times `units_per_credit`
/// (the payout token's units, what the contract pays); returns it with its total in credits.
fn build(snapshot: &Snapshot, units_per_credit: u64) -> Result<(EarningsTree, i64), ApiError> {
    let mut total: i64 = 0;
    let mut leaves = Vec::with_capacity(snapshot.earnings.len());
    for (account, amount) in &snapshot.earnings {
        let address = Address::parse(account)
            .map_err(|e| ApiError::Internal(format!("ledger account {account}: {e}")))?;
        total = total
            .checked_add(*amount)
            .ok_or_else(|| ApiError::Internal("an epoch's total overflows".into()))?;
        leaves.push((
            address,
            Amount::from(*amount as u128 * units_per_credit as u128),
        ));
    }
    let tree = EarningsTree::new(leaves)
        .map_err(|e| ApiError::Internal(format!("building the earnings tree: {e}")))?;
    Ok((tree, total))
}

/// Closes an epoch now, if anything was earned since the last one; returns it. See the module's
/// doc for the steps. Leaves are in token units, `units_per_credit` per credit.
pub async fn close(db: &Db, units_per_credit: u64, now_ms: i64) -> Result<Option<Epoch>, ApiError> {
    let Some(snapshot) = db.read(snapshot).await? else {
        return Ok(None);
    };
    let store = db.blob_store().clone();
    let epoch = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let (tree, total) = build(&snapshot, units_per_credit)?;
        let tree_hash = store.put(tree.to_json().as_bytes())?;
        let epoch = Epoch {
            epoch: snapshot.epoch,
            ledger_position: snapshot.position,
            root: node_hex(&tree.root()),
            total,
            leaves: tree.len() as i64,
            tree_hash,
            closed_at_ms: now_ms,
            publish_tx: None,
            published_at_ms: None,
        };
        Ok(epoch)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("closing an epoch: {e}")))??;
    let row = epoch.clone();
    let recorded = db
        .call(move |conn| {
            let tx = conn.transaction()?;
            let recorded = record(&tx, &row)?;
            tx.commit()?;
            Ok(recorded)
        })
        .await?;
    if !recorded {
        tracing::info!("epoch {} was closed by someone else meanwhile", epoch.epoch);
        return Ok(None);
    }
    tracing::info!(
        "epoch {} closed at ledger position {}: {} addresses, {} credits, root {}",
        epoch.epoch,
        epoch.ledger_position,
        epoch.leaves,
        epoch.total,
        epoch.root
    );
    Ok(Some(epoch))
}

/// Inserts `epoch` if it follows the latest one; returns whether it did.
fn record(conn: &Connection, epoch: &Epoch) -> Result<bool, ApiError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO epochs (epoch, ledger_position, root, total, leaves, tree_hash,
                                 closed_at_ms)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
             WHERE ?1 = (SELECT COALESCE(MAX(epoch), 0) + 1 FROM epochs)
             ON CONFLICT (epoch) DO NOTHING",
        )?
        .execute(params![
            epoch.epoch,
            epoch.ledger_position,
            epoch.root,
            epoch.total,
            epoch.leaves,
            epoch.tree_hash.to_string(),
            epoch.closed_at_ms
        ])?;
    Ok(inserted == 1)
}

/// The tree of the latest epoch, kept in memory for `GET /v1/payouts/{address}` (a proof
/// needs the whole tree; reading a file of 10^5 leaves for each request would not do).
#[derive(Default)]
pub struct TreeCache {
    latest: Mutex<Option<(i64, Arc<EarningsTree>)>>,
}

impl TreeCache {
    /// The tree of `epoch`: from memory, or read from the blob store once.
    pub async fn tree(&self, db: &Db, epoch: &Epoch) -> Result<Arc<EarningsTree>, ApiError> {
        if let Some((cached, tree)) = &*self.latest.lock().unwrap_or_else(PoisonError::into_inner)
            && *cached == epoch.epoch
        {
            return Ok(tree.clone());
        }
        // Straight from the store, not through the input cache (a tree may be many MiB).
        let (store, hash) = (db.blob_store().clone(), epoch.tree_hash);
        let bytes = db.read(move |conn| store.get_required(conn, &hash)).await?;
        let tree = tokio::task::spawn_blocking(move || {
            EarningsTree::from_json(&String::from_utf8_lossy(&bytes))
        })
        .await
        .map_err(|e| ApiError::Internal(format!("reading an epoch's tree: {e}")))?
        .map_err(|e| ApiError::Internal(format!("reading an epoch's tree: {e}")))?;
        let tree = Arc::new(tree);
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((epoch.epoch, tree.clone()));
        Ok(tree)
    }
}

/// Closes an epoch every `every` (the relay's `epoch_seconds`), for as long as the relay runs.
pub fn spawn(
    db: Db,
    every: std::time::Duration,
    units_per_credit: u64,
    clock: Arc<dyn crate::clock::Clock>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        loop {
            interval.tick().await;
            if let Err(e) = close(&db, units_per_credit, clock.now_ms()).await {
                tracing::error!("closing an epoch: {e}");
            }
        }
    })
}
