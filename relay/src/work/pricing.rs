//! Prices: what each verified result of a unit pays, stated when its job is accepted, and the
//! reserve the job takes from its owner's budget then ([`fund`]).
//!
//! A matmul tile's price is its FLOP at `price_per_gflop` (rounded down); a kernel unit's is
//! what the requester offers per unit (`price_per_unit` in its spec), or its invocations at the
//! same rate. A job reserves, for each unit, its price times the results it may pay
//! ([`results_reserved`]: one for a unit checked by Freivalds' check, up to `max_replicas` for a
//! replicated one), so that it can never owe more than it holds; what is not paid goes back to
//! the budget when the job ends ([`crate::work::jobs`]). The ledger moves the money
//! ([`crate::accounts::ledger`]); [`crate::work::settlement`] pays each result.

use crate::accounts::ledger;
use crate::config::Config;
use crate::error::ApiError;
use crate::work::units::Verify;
use rusqlite::{Connection, params};

/// How many results of a unit its job pays for: one for Freivalds' check, up to
/// `max_replicas` agreeing replicas for replication.
pub fn results_reserved(config: &Config, verify: Verify) -> u32 {
    match verify {
        Verify::Freivalds => 1,
        Verify::Replicate => config.max_replicas,
    }
}

/// The price of one verified result of a unit of `flop` operations: `offered` when the
/// requester named one, else the FLOP at `price_per_gflop`.
pub fn unit_price(config: &Config, flop: u64, offered: Option<u64>) -> Result<i64, ApiError> {
    let price = match offered {
        Some(offered) => offered as u128,
        None => flop as u128 * config.price_per_gflop as u128 / 1_000_000_000,
    };
    i64::try_from(price).map_err(|_| {
        ApiError::bad_request(
            "price_too_high",
            format!("a unit's price of {price} credits is more than the ledger can hold"),
        )
    })
}

/// What a job does when its owner's budget cannot cover it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortfall {
    /// Refuse the job: 402 `insufficient_budget` (a requester's job).
    Refuse,
    /// Post it unpaid, every price 0 (a demo job).
    Unpaid,
}

/// Prices job `job_id`'s units and reserves what they may cost from `budget`; returns the
/// reserve. Run it inside the transaction that inserts the job ([`crate::work::jobs`] does), so
/// that a refused job is rolled back with it.
pub fn fund(
    conn: &Connection,
    config: &Config,
    job_id: i64,
    budget: &str,
    shortfall: Shortfall,
    offered: Option<u64>,
    now_ms: i64,
) -> Result<i64, ApiError> {
    let units: Vec<(i64, u64, String)> = conn
        .prepare_cached("SELECT id, flop, verify FROM units WHERE job_id = ?1")?
        .query_map([job_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let mut reserve: i128 = 0;
    let mut prices = Vec::with_capacity(units.len());
    for (unit_id, flop, verify) in units {
        let price = unit_price(config, flop, offered)?;
        let verify = Verify::parse(&verify)?;
        reserve += price as i128 * results_reserved(config, verify) as i128;
        prices.push((unit_id, price));
    }
    let reserve = i64::try_from(reserve).map_err(|_| {
        ApiError::bad_request(
            "price_too_high",
            "this job's price is more than the ledger can hold",
        )
    })?;
    if shortfall == Shortfall::Unpaid && ledger::balance(conn, budget)? < reserve {
        tracing::info!(
            "job {job_id} is unpaid: {budget} cannot cover its {reserve} credits \
             (glowworm-relay budget grant)"
        );
        return Ok(0);
    }
    let mut set_price = conn.prepare_cached("UPDATE units SET price = ?2 WHERE id = ?1")?;
    for (unit_id, price) in prices {
        set_price.execute(params![unit_id, price])?;
    }
    if reserve > 0 {
        ledger::reserve(conn, job_id, budget, reserve, now_ms)?;
    }
    Ok(reserve)
}
