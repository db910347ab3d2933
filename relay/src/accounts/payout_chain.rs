//! The relay's side of the payout contract (`contracts/`, through [`glowworm_chain`]): it credits
//! requesters' token deposits to their budgets, publishes closed epochs' roots in order, and
//! reads what an address has claimed.
//!
//! - **Deposits** ([`PayoutChain::credit_deposits`]): the contract's `Deposited` events with
//!   `confirmations` blocks on them are credited once each (the `deposits` table's key is the
//!   event's transaction and log index), `token_units / token_units_per_credit` credits to the
//!   requester its bytes32 reference names ([`requester_ref`]: the requester's id), in the same
//!   transaction that moves the scan's cursor past them.
//! - **Roots** ([`PayoutChain::publish_pending`]): each epoch not yet published, oldest first, is
//!   sent with its root and its total in token units. The contract takes epochs only in order
//!   (epoch = latest + 1), and [`glowworm_chain::Payout::publish_root`] answers `Already` for an
//!   epoch the chain holds with the same root, so a relay killed anywhere while publishing (before
//!   sending, after sending, before recording) neither skips nor repeats an epoch: it records
//!   what the chain says and goes on.
//!
//! Without `chain_rpc_url` there is no chain: earnings accrue, epochs close and are served, and
//! `GET /v1/payouts/{address}` says claims are off.

use crate::accounts::{epochs, ledger};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::ApiError;
use crate::store::Db;
use axum::http::StatusCode;
use glowworm_chain::{Address, B256, Deposit, Payout, Published, U256};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;
use std::time::Duration;

/// Why the chain could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum ChainSetupError {
    #[error("payout_contract {0:?} is not an address (0x and 40 hex characters)")]
    BadContract(String),
    #[error(transparent)]
    Chain(#[from] glowworm_chain::Error),
    #[error("the chain at {url} has id {actual}; chain_id says {expected}")]
    WrongChain {
        url: String,
        expected: u64,
        actual: u64,
    },
}

/// The payout contract, with the publisher's key.
pub struct PayoutChain {
    payout: Payout,
    chain_id: u64,
    confirmations: u64,
    units_per_credit: u64,
}

/// The bytes32 reference a requester's deposits name: its id, as a big-endian number.
pub fn requester_ref(requester_id: i64) -> B256 {
    B256::from(U256::from(requester_id as u64))
}

fn chain_error(e: glowworm_chain::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "chain_unavailable",
        format!("the payout contract's chain did not answer: {e}"),
    )
}

impl PayoutChain {
    /// Connects to the chain the settings name (`None` without `chain_rpc_url`), with the
    /// publisher's key, and checks the chain id when `chain_id` is set.
    pub async fn connect(config: &Config) -> Result<Option<PayoutChain>, ChainSetupError> {
        let (Some(url), Some(contract), Some(key_file)) = (
            &config.chain_rpc_url,
            &config.payout_contract,
            &config.publisher_key_file,
        ) else {
            return Ok(None);
        };
        let address: Address = contract
            .parse()
            .map_err(|_| ChainSetupError::BadContract(contract.clone()))?;
        let signer = glowworm_chain::read_key_file(key_file)?;
        let publisher = signer.address();
        let payout = Payout::with_signer(url, address, signer)?;
        let chain_id = payout.chain_id().await?;
        if let Some(expected) = config.chain_id
            && expected != chain_id
        {
            return Err(ChainSetupError::WrongChain {
                url: url.clone(),
                expected,
                actual: chain_id,
            });
        }
        let allowed = payout.publisher().await?;
        if allowed != publisher {
            tracing::warn!(
                "the payout contract {address} takes roots from {allowed}, not from this relay's \
                 publisher key {publisher}: epochs will not be published until its owner calls \
                 setPublisher"
            );
        }
        tracing::info!("payouts on chain {chain_id}, contract {address}, publisher {publisher}");
        Ok(Some(PayoutChain {
            payout,
            chain_id,
            confirmations: config.confirmations,
            units_per_credit: config.token_units_per_credit,
        }))
    }

    /// The contract's address, EIP-55.
    pub fn contract(&self) -> String {
        self.payout.address().to_checksum(None)
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// What `address` (EIP-55) has claimed from the contract, in token units.
    pub async fn claimed(&self, address: &str) -> Result<U256, ApiError> {
        let account: Address = address
            .parse()
            .map_err(|_| ApiError::Internal(format!("{address} is not an address")))?;
        self.payout.claimed(account).await.map_err(chain_error)
    }

    /// Credits every deposit with enough confirmations since the last scan; returns how many.
    pub async fn credit_deposits(&self, db: &Db, now_ms: i64) -> Result<usize, ApiError> {
        let mut credited = 0;
        loop {
            let from = db.read(next_block).await?;
            let scan = self
                .payout
                .deposits_since(from, self.confirmations)
                .await
                .map_err(chain_error)?;
            if scan.next_from_block == from {
                return Ok(credited);
            }
            let per_credit = self.units_per_credit;
            let deposits = scan.deposits.clone();
            credited += db
                .call(move |conn| {
                    let tx = conn.transaction()?;
                    let mut credited = 0;
                    for deposit in &deposits {
                        if record_deposit(&tx, deposit, per_credit, now_ms)? {
                            credited += 1;
                        }
                    }
                    tx.prepare_cached(
                        "INSERT INTO chain_cursor (id, next_block) VALUES (1, ?1)
                         ON CONFLICT (id) DO UPDATE SET next_block = MAX(next_block, ?1)",
                    )?
                    .execute([scan.next_from_block as i64])?;
                    tx.commit()?;
                    Ok(credited)
                })
                .await?;
        }
    }

    /// Publishes every closed epoch not yet published, oldest first; returns how many it
    /// recorded. Stops at the first the chain refuses (later epochs cannot go before it).
    pub async fn publish_pending(&self, db: &Db, now_ms: i64) -> Result<usize, ApiError> {
        let mut recorded = 0;
        for epoch in db.read(epochs::unpublished).await? {
            let root: B256 = epoch
                .root
                .parse()
                .map_err(|_| ApiError::Internal(format!("epoch {} has a bad root", epoch.epoch)))?;
            let total = U256::from(epoch.total as u64) * U256::from(self.units_per_credit);
            let tx = match self
                .payout
                .publish_root(epoch.epoch as u64, root, total)
                .await
            {
                Ok(Published::Now(sent)) => {
                    tracing::info!(
                        "epoch {} published in {} (block {}, {} gas)",
                        epoch.epoch,
                        sent.tx_hash,
                        sent.block_number,
                        sent.gas_used
                    );
                    sent.tx_hash.to_string()
                }
                Ok(Published::Already) => {
                    tracing::info!("epoch {} was already published on chain", epoch.epoch);
                    ALREADY_ON_CHAIN.to_string()
                }
                Err(e) => {
                    tracing::error!(
                        "publishing epoch {} (total {total} token units): {e}",
                        epoch.epoch
                    );
                    return Err(chain_error(e));
                }
            };
            let number = epoch.epoch;
            db.call(move |conn| epochs::mark_published(conn, number, &tx, now_ms))
                .await?;
            recorded += 1;
        }
        Ok(recorded)
    }
}

/// What an epoch's `publish_tx` says when the chain already held it (an earlier attempt of a
/// relay that stopped before recording its transaction).
pub const ALREADY_ON_CHAIN: &str = "already on chain";

/// Where the next scan for deposits starts.
fn next_block(conn: &Connection) -> Result<u64, ApiError> {
    let next: Option<i64> = conn
        .prepare_cached("SELECT next_block FROM chain_cursor WHERE id = 1")?
        .query_row([], |row| row.get(0))
        .optional()?;
    Ok(next.unwrap_or(0) as u64)
}

/// Records `deposit` and credits it, unless it was before; returns whether it did now.
fn record_deposit(
    conn: &Connection,
    deposit: &Deposit,
    units_per_credit: u64,
    now_ms: i64,
) -> Result<bool, ApiError> {
    let credits = deposit.amount / U256::from(units_per_credit);
    let credits = i64::try_from(credits).map_err(|_| {
        ApiError::Internal(format!(
            "deposit {}:{} of {} token units is more credits than the ledger holds",
            deposit.tx_hash, deposit.log_index, deposit.amount
        ))
    })?;
    let reference = U256::from_be_bytes(deposit.requester.0);
    let requester: Option<i64> = match i64::try_from(reference) {
        Ok(id) => conn
            .prepare_cached("SELECT id FROM requesters WHERE id = ?1")?
            .query_row([id], |row| row.get(0))
            .optional()?,
        Err(_) => None,
    };
    let inserted = conn
        .prepare_cached(
            "INSERT INTO deposits (tx_hash, log_index, block_number, depositor, requester_ref,
                                   requester_id, token_units, credits, credited_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (tx_hash, log_index) DO NOTHING",
        )?
        .execute(params![
            deposit.tx_hash.to_string(),
            deposit.log_index as i64,
            deposit.block_number as i64,
            deposit.from.to_checksum(None),
            deposit.requester.to_string(),
            requester,
            deposit.amount.to_string(),
            credits,
            now_ms
        ])?;
    if inserted == 0 {
        return Ok(false);
    }
    let account = match requester {
        Some(id) => ledger::requester_account(id),
        None => {
            tracing::warn!(
                "deposit {}:{} names requester {}, which is none of ours: held as unassigned",
                deposit.tx_hash,
                deposit.log_index,
                deposit.requester
            );
            "requester:unassigned".to_string()
        }
    };
    if credits > 0 {
        let memo = format!("deposit {}:{}", deposit.tx_hash, deposit.log_index);
        ledger::deposit(conn, &account, credits, &memo, now_ms)?;
    }
    tracing::info!(
        "deposit {}:{}: {} token units, {credits} credits to {account}",
        deposit.tx_hash,
        deposit.log_index,
        deposit.amount
    );
    Ok(true)
}

/// Credits deposits and publishes epochs every `every`, for as long as the relay runs.
pub fn spawn(
    chain: Arc<PayoutChain>,
    db: Db,
    every: Duration,
    clock: Arc<dyn Clock>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(e) = chain.credit_deposits(&db, clock.now_ms()).await {
                tracing::warn!("crediting deposits: {e}");
            }
            if let Err(e) = chain.publish_pending(&db, clock.now_ms()).await {
                tracing::warn!("publishing epochs: {e}");
            }
        }
    })
}
