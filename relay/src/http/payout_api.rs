//! The payouts API: closed epochs (`GET /v1/epochs`, `/v1/epochs/{epoch}`), each epoch's whole
//! earnings tree as OpenZeppelin's `standard-v1` JSON (`/v1/epochs/{epoch}/tree.json`), and what
//! an address has earned and can claim with its proof (`/v1/payouts/{address}`). All public:
//! the tree is the relay's published statement, and an address's earnings are in it anyway.

use crate::accounts::epochs::{self, Epoch};
use crate::accounts::ledger;
use crate::error::ApiError;
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::state::AppState;
use crate::ids::canonical_address;
use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use glowworm_protocol::merkle::{Address, Amount, node_hex};
use glowworm_protocol::wire::{EpochInfo, EpochList, Payout};
use serde::Deserialize;

/// `?limit=` of `GET /v1/epochs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochQuery {
    limit: Option<u32>,
}

/// Credits in the payout token's units, as a decimal string.
fn token_units(credits: i64, units_per_credit: u64) -> String {
    (credits as i128 * units_per_credit as i128).to_string()
}

fn info(epoch: Epoch, units_per_credit: u64) -> EpochInfo {
    EpochInfo {
        tree_url: format!("/v1/epochs/{}/tree.json", epoch.epoch),
        epoch: epoch.epoch,
        ledger_position: epoch.ledger_position,
        root: epoch.root,
        total: token_units(epoch.total, units_per_credit),
        leaves: epoch.leaves,
        tree_hash: epoch.tree_hash,
        closed_at_unix_ms: epoch.closed_at_ms,
        publish_tx: epoch.publish_tx,
    }
}

fn no_such_epoch(epoch: i64) -> ApiError {
    ApiError::not_found("unknown_epoch", format!("no epoch {epoch} has been closed"))
}

/// `GET /v1/epochs`: the latest epochs (at most `limit`, default 100), newest first.
pub async fn list_epochs(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<EpochQuery>,
) -> Result<Json<EpochList>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let epochs = state.db.read(move |conn| epochs::list(conn, limit)).await?;
    let units = state.config.token_units_per_credit;
    Ok(Json(EpochList {
        epochs: epochs.into_iter().map(|e| info(e, units)).collect(),
    }))
}

async fn epoch(state: &AppState, epoch: i64) -> Result<Epoch, ApiError> {
    state
        .db
        .read(move |conn| epochs::get(conn, epoch))
        .await?
        .ok_or_else(|| no_such_epoch(epoch))
}

/// `GET /v1/epochs/{epoch}`.
pub async fn get_epoch(
    State(state): State<AppState>,
    ApiPath(number): ApiPath<i64>,
) -> Result<Json<EpochInfo>, ApiError> {
    Ok(Json(info(
        epoch(&state, number).await?,
        state.config.token_units_per_credit,
    )))
}

/// `GET /v1/epochs/{epoch}/tree.json`: the tree's JSON, as written when the epoch closed.
pub async fn get_epoch_tree(
    State(state): State<AppState>,
    ApiPath(number): ApiPath<i64>,
) -> Result<Response, ApiError> {
    let epoch = epoch(&state, number).await?;
    let (store, hash) = (state.db.blob_store().clone(), epoch.tree_hash);
    let bytes = state
        .db
        .read(move |conn| store.get_required(conn, &hash))
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /v1/payouts/{address}`: what the address has earned, what the latest root (with a chain:
/// the latest published one, which claims are checked against) holds for it with the proof, and
/// (with a chain) what it has claimed and can claim. Amounts are in the payout token's units.
pub async fn get_payout(
    State(state): State<AppState>,
    ApiPath(address): ApiPath<String>,
) -> Result<Json<Payout>, ApiError> {
    let address = canonical_address(&address)?;
    let account = address.clone();
    let chain = state.payout_chain.clone();
    // With a chain, the root a claim is checked against: the latest published one.
    let on_chain = chain.is_some();
    let (earned, latest) = state
        .db
        .read(move |conn| {
            let latest = match on_chain {
                true => epochs::latest_published(conn)?,
                false => epochs::latest(conn)?,
            };
            Ok((ledger::balance(conn, &account)?, latest))
        })
        .await?;
    let mut payout = Payout {
        address: address.clone(),
        earned: token_units(earned, state.config.token_units_per_credit),
        epoch: None,
        root: None,
        in_root: "0".into(),
        proof: Vec::new(),
        claimed: None,
        claimable: None,
        contract: chain.as_ref().map(|chain| chain.contract()),
        chain_id: chain.as_ref().map(|chain| chain.chain_id()),
        claims_enabled: false,
    };
    let mut in_root = Amount::ZERO;
    if let Some(latest) = latest {
        let tree = state.epoch_trees.tree(&state.db, &latest).await?;
        let leaf = Address::parse(&address)
            .map_err(|e| ApiError::Internal(format!("address {address}: {e}")))?;
        if let Some(amount) = tree.amount(&leaf) {
            in_root = amount;
            payout.in_root = amount.to_decimal();
            payout.proof = tree
                .proof(&leaf)
                .map_err(|e| ApiError::Internal(format!("proof for {address}: {e}")))?
                .iter()
                .map(node_hex)
                .collect();
        }
        payout.epoch = Some(latest.epoch);
        payout.root = Some(latest.root);
        payout.claims_enabled = on_chain;
    }
    if let Some(chain) = chain {
        let claimed = chain.claimed(&address).await?;
        let in_root = glowworm_chain::U256::from_be_bytes(in_root.to_be_bytes());
        payout.claimed = Some(claimed.to_string());
        payout.claimable = Some(in_root.saturating_sub(claimed).to_string());
    }
    Ok(Json(payout))
}
