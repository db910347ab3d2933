//! Settlement: the one place credits are made. It takes a verdict on a result (from Freivalds'
//! check in [`crate::work::results`], a quorum's [`Decision`] from [`crate::work::replication`], a canary's
//! known answer) and carries it out: credits the contributor's account and the partner's share,
//! counts the result for the contributor's reputation (a strike for an invalid one, and the
//! quarantine that may follow, withholding what the key has pending), settles the results a
//! trusted contributor left waiting, and completes or fails units and jobs.
//!
//! The ledger's one other write is a wallet link moving a key's balance, unchanged, to its
//! address ([`ledger::move_for_link`], from [`crate::accounts::links`]).
//!
//! Every function here runs inside the transaction that stored the result, so a verdict takes
//! effect whole or not at all. The ledger's own rules ([`crate::accounts::ledger`]: append-only,
//! `UNIQUE(result_id, kind)`) make sure nothing is credited twice, whatever happens above.

use crate::accounts::contributors;
use crate::accounts::ledger;
use crate::accounts::links;
use crate::accounts::partners;
use crate::accounts::reputation;
use crate::config::Config;
use crate::error::ApiError;
use crate::work::jobs;
use crate::work::pricing;
use crate::work::replication::Decision;
use crate::work::result_rows::{self, Replica, ResultState};
use crate::work::units::{self, Miss, Verify};
use glowworm_protocol::hash::ContentHash;
use rusqlite::Connection;

/// What became of one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Verified and credited this many credits.
    Valid(i64),
    /// Waiting for other replicas or for a later check of its contributor.
    Pending,
    /// Outvoted or contradicted: not credited.
    Invalid(String),
}

/// A result that passed its own check (Freivalds'): its unit is verified with its output, its
/// contributor's `account` is paid ([`credit`]), the results the key left waiting on trust are
/// settled, and the job is completed if this was its last unit. Returns the contributor's credit.
#[allow(clippy::too_many_arguments)]
pub fn checked_valid(
    conn: &Connection,
    config: &Config,
    unit_id: i64,
    result_id: i64,
    public_key: &str,
    account: &str,
    output_hash: &ContentHash,
    now_ms: i64,
) -> Result<i64, ApiError> {
    let job_id = units::mark_verified(conn, unit_id, output_hash)?;
    let earned = credit(conn, config, result_id, account, unit_id, now_ms)?;
    passed_check(conn, config, public_key, account, now_ms)?;
    jobs::complete_if_done(conn, job_id)?;
    Ok(earned)
}

/// A result that failed its own check: its unit goes back to the queue (a proven lease's
/// result uses one of the unit's attempts, which may fail it and its job; a stranger's holds
/// the unit for keys with a record), and the contributor takes a strike.
pub fn checked_invalid(
    conn: &Connection,
    config: &Config,
    unit_id: i64,
    result_id: i64,
    public_key: &str,
    proven: bool,
    now_ms: i64,
) -> Result<(), ApiError> {
    let miss = if proven {
        Miss::ProvenRejected
    } else {
        Miss::Unproven
    };
    let failed = units::requeue(conn, config, unit_id, miss, now_ms)?;
    jobs::fail_for(conn, failed, now_ms)?;
    failed_check(conn, config, result_id, public_key, now_ms)
}

/// Carries out what a replicated unit's results decided ([`crate::work::replication::decide`]) and
/// returns the verdict on result `result_id`, one of `replicas`.
pub fn replicas(
    conn: &Connection,
    config: &Config,
    unit_id: i64,
    replicas: &[Replica],
    decision: Decision,
    result_id: i64,
    now_ms: i64,
) -> Result<Verdict, ApiError> {
    match decision {
        Decision::Wait => Ok(Verdict::Pending),
        Decision::MoreReplicas(needed) => {
            units::want_replicas(conn, unit_id, needed)?;
            Ok(Verdict::Pending)
        }
        Decision::NoMajority { why, total } => {
            // Nobody is to blame but the kernel: no strikes.
            for replica in replicas {
                result_rows::set_state(conn, replica.id, ResultState::Invalid)?;
            }
            let failed = units::fail(conn, unit_id, why)?;
            jobs::fail_for(conn, failed, now_ms)?;
            Ok(Verdict::Invalid(format!(
                "{total} replicas of unit {unit_id} found no majority"
            )))
        }
        Decision::Decided { winner, judged } => {
            if let Some(winner) = winner {
                let job_id = units::mark_verified(conn, unit_id, &replicas[winner].output_hash)?;
                jobs::complete_if_done(conn, job_id)?;
            }
            let mut verdict = Verdict::Pending;
            for (replica, judgement) in replicas.iter().zip(judged) {
                let this = match judgement {
                    Ok(()) => {
                        let account = links::account_of(conn, &replica.public_key)?;
                        let credited =
                            credit_pending(conn, config, replica.id, &account, unit_id, now_ms)?;
                        passed_check(conn, config, &replica.public_key, &account, now_ms)?;
                        Verdict::Valid(credited)
                    }
                    Err(why) => {
                        tracing::warn!(
                            "replica {} of unit {unit_id} from {} disagrees with the majority: {why}",
                            replica.id,
                            replica.public_key
                        );
                        failed_check(conn, config, replica.id, &replica.public_key, now_ms)?;
                        Verdict::Invalid(format!(
                            "the output disagrees with the other contributors' agreeing results: \
                             {why}"
                        ))
                    }
                };
                if replica.id == result_id {
                    verdict = this;
                }
            }
            Ok(verdict)
        }
    }
}

/// Marks the pending result `result_id` valid and pays it ([`credit`]). Returns what the
/// contributor was credited.
fn credit_pending(
    conn: &Connection,
    config: &Config,
    result_id: i64,
    account: &str,
    unit_id: i64,
    now_ms: i64,
) -> Result<i64, ApiError> {
    result_rows::set_state(conn, result_id, ResultState::Valid)?;
    credit(conn, config, result_id, account, unit_id, now_ms)
}

/// Pays the valid result `result_id` of `unit_id` its unit's price: `account` (the result's
/// key, or the address it linked) is credited the price less the partner's share (when a
/// partner's widget computed it) and the operator's fee. Returns the contributor's credit.
/// Every payment for work goes through here.
///
/// The job's escrow pays for as many results of the unit as the job reserved
/// ([`pricing::results_reserved`]); results beyond those (a late replica, a canary) are paid by
/// the operator while its account can, and are otherwise valid but unpaid, as is every result
/// of a job that stated no price or has ended and released its escrow.
fn credit(
    conn: &Connection,
    config: &Config,
    result_id: i64,
    account: &str,
    unit_id: i64,
    now_ms: i64,
) -> Result<i64, ApiError> {
    contributors::earned(conn, result_id, now_ms)?;
    let (price, job_id, verify) = conn
        .prepare_cached("SELECT price, job_id, verify FROM units WHERE id = ?1")?
        .query_row([unit_id], |row| {
            let verify: String = row.get(2)?;
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                Verify::parse(&verify)?,
            ))
        })?;
    if price == 0 {
        return Ok(0);
    }
    let escrow = ledger::job_account(job_id);
    let reserved = pricing::results_reserved(config, verify);
    let payer = if ledger::results_paid(conn, unit_id)? < reserved
        && ledger::balance(conn, &escrow)? >= price
    {
        escrow
    } else if ledger::balance(conn, ledger::OPERATOR)? >= price {
        ledger::OPERATOR.to_string()
    } else {
        tracing::debug!("result {result_id} of unit {unit_id} is valid but nobody pays for it");
        return Ok(0);
    };
    let fee = if payer == ledger::OPERATOR {
        0
    } else {
        ledger::bps_of(price, config.operator_fee_bps)
    };
    let share = partners::share_for(conn, result_id, account, price)?;
    let earned = price - fee - share.as_ref().map_or(0, |share| share.amount);
    ledger::pay_result(
        conn,
        &ledger::Payment {
            result_id,
            unit_id,
            payer,
            contributor: account.to_string(),
            earned,
            share,
            fee,
        },
        now_ms,
    )?;
    Ok(earned)
}

/// A checked result was valid: counts it for the contributor's reputation and settles the
/// results it left waiting on trust.
fn passed_check(
    conn: &Connection,
    config: &Config,
    public_key: &str,
    account: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    reputation::record_valid(conn, config, &reputation::subjects(public_key, account))?;
    for (result_id, unit_id, output_hash) in result_rows::waiting_on_trust(conn, public_key)? {
        let job_id = units::mark_verified(conn, unit_id, &output_hash)?;
        jobs::complete_if_done(conn, job_id)?;
        credit_pending(conn, config, result_id, account, unit_id, now_ms)?;
    }
    Ok(())
}

/// A checked result was invalid: marks it, counts it against the contributor (which may
/// quarantine it), and has every unit it left waiting on trust replicated after all.
fn failed_check(
    conn: &Connection,
    config: &Config,
    result_id: i64,
    public_key: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    result_rows::set_state(conn, result_id, ResultState::Invalid)?;
    let account = links::account_of(conn, public_key)?;
    let subjects = reputation::subjects(public_key, &account);
    let quarantined = reputation::record_invalid(conn, config, &subjects, now_ms)?;
    units::replicate_on_trust_of(conn, config, public_key)?;
    for subject in quarantined {
        withhold(conn, config, subject)?;
    }
    Ok(())
}

/// A quarantined key or address: its results still pending are withheld (never credited, no
/// longer counted among replicas) and their units go to other contributors.
fn withhold(conn: &Connection, config: &Config, subject: &str) -> Result<(), ApiError> {
    let keys = if subject.starts_with("0x") {
        links::keys_of(conn, subject)?
    } else {
        vec![subject.to_string()]
    };
    for key in keys {
        units::replicate_on_trust_of(conn, config, &key)?;
        units::replicate_pending_of(conn, config, &key)?;
        let withheld = result_rows::withhold_pending_of(conn, &key)?;
        tracing::warn!("{withheld} pending results of quarantined {key} withheld");
    }
    Ok(())
}
