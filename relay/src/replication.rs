//! Verification by replication, adaptive replication and the settling of results: every path by
//! which a result becomes valid (and is credited) or invalid.
//!
//! A unit whose output no cheap check covers (`verify = 'replicate'`) is leased to distinct
//! contributors ([`crate::units::pending_for`] keeps keys, addresses, networks and, optionally,
//! adapter kinds apart). Each result waits as `pending` until [`resolve`] finds a group of results
//! that agree ([`glowworm_protocol::compare::agree`], with the kernel's float tolerance) and that is at
//! least the unit's `quorum` and a strict majority of the results that count: those are valid
//! and credited, the rest invalid. A result of an unproven key (one not trusted when it leased
//! the unit) that agrees with no other does not count, so strangers sending garbage cannot keep
//! a unit from being decided. When all `replicas_needed` results are in and no such group
//! exists, the unit needs one more replica; once `max_replicas` results of proven keys disagree
//! so, the kernel is at fault (it does not give one output everywhere) and the unit fails with
//! its job. Disagreeing strangers alone never fail a job.
//!
//! Adaptive replication: a trusted contributor's replicated unit is usually given to it alone
//! (`on_trust`, quorum 1). Its result is not credited at once: it is settled by the
//! contributor's next check (a Freivalds-checked unit, a replica compared with others, a
//! known-answer canary). If that check passes, the results it left waiting are valid; if it
//! fails, or none comes within `settle_seconds`, their units are replicated after all, so a
//! job's output never rests on an unchecked result of a contributor caught cheating.

use crate::blobs::{self, hash_column};
use crate::config::Config;
use crate::contributors;
use crate::error::ApiError;
use crate::jobs;
use crate::ledger;
use crate::links;
use crate::partners;
use crate::reputation;
use glowworm_protocol::compare::{Tolerance, agree};
use glowworm_protocol::hash::ContentHash;
use rusqlite::{Connection, params};

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

/// Marks pending result `result_id` valid and credits `account` (its key's, or the address the
/// key linked) with the unit's FLOP ([`credit_valid`]). Returns the credits.
pub fn credit(
    conn: &Connection,
    result_id: i64,
    account: &str,
    unit_id: i64,
    now_ms: i64,
) -> Result<i64, ApiError> {
    let flop: i64 = conn
        .prepare_cached("SELECT flop FROM units WHERE id = ?1")?
        .query_row([unit_id], |row| row.get(0))?;
    conn.prepare_cached("UPDATE results SET state = 'valid', verified = 1 WHERE id = ?1")?
        .execute([result_id])?;
    credit_valid(conn, result_id, account, unit_id, flop, now_ms)?;
    Ok(flop)
}

/// Credits `account` (the result's key, or the address it linked) with `flop` for the valid
/// result `result_id`, and the partner whose widget computed it its share on top. This is the
/// one place a result is credited.
pub fn credit_valid(
    conn: &Connection,
    result_id: i64,
    account: &str,
    unit_id: i64,
    flop: i64,
    now_ms: i64,
) -> Result<(), ApiError> {
    ledger::credit_verified_unit(conn, account, flop, unit_id, result_id, now_ms)?;
    partners::credit_share(conn, result_id, flop, now_ms)?;
    contributors::earned(conn, result_id, now_ms)?;
    Ok(())
}

/// A checked result was valid: counts it for the contributor's reputation and settles the
/// results it left waiting on trust.
pub fn passed_check(
    conn: &Connection,
    config: &Config,
    public_key: &str,
    account: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    reputation::record_valid(conn, config, &reputation::subjects(public_key, account))?;
    let waiting: Vec<(i64, i64, ContentHash)> = conn
        .prepare_cached(
            "SELECT results.id, results.unit_id, results.output_hash
             FROM results JOIN units ON units.id = results.unit_id
                  JOIN leases ON leases.lease_id = results.lease_id
             WHERE results.public_key = ?1 AND results.state = 'pending'
               AND leases.on_trust = 1 AND units.on_trust = 1 AND units.state = 'leased'",
        )?
        .query_map([public_key], |row| {
            Ok((row.get(0)?, row.get(1)?, hash_column(row, 2)?))
        })?
        .collect::<Result<_, _>>()?;
    for (result_id, unit_id, output_hash) in waiting {
        mark_unit_verified(conn, unit_id, &output_hash)?;
        credit(conn, result_id, account, unit_id, now_ms)?;
    }
    Ok(())
}

/// A checked result was invalid: marks it, counts it against the contributor (which may
/// quarantine it), and has every unit it left waiting on trust replicated after all.
pub fn failed_check(
    conn: &Connection,
    config: &Config,
    result_id: i64,
    public_key: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    conn.prepare_cached("UPDATE results SET state = 'invalid', verified = 0 WHERE id = ?1")?
        .execute([result_id])?;
    let account = links::account_of(conn, public_key)?;
    let subjects = reputation::subjects(public_key, &account);
    let quarantined = reputation::record_invalid(conn, config, &subjects, now_ms)?;
    replicate_trusted_results_of(conn, config, public_key)?;
    for subject in quarantined {
        withhold(conn, config, subject)?;
    }
    Ok(())
}

/// Gives every unit that waits on a trusted result of `public_key` to more contributors.
fn replicate_trusted_results_of(
    conn: &Connection,
    config: &Config,
    public_key: &str,
) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE units SET on_trust = 0, quorum = ?2, replicas_needed = ?2, state = 'pending'
         WHERE on_trust = 1 AND state = 'leased' AND id IN
               (SELECT unit_id FROM results WHERE public_key = ?1 AND state = 'pending')",
    )?
    .execute(params![public_key, config.replicas])?;
    Ok(())
}

/// A quarantined key or address: its results still pending are withheld (never credited, no
/// longer counted among replicas) and their units go to other contributors.
fn withhold(conn: &Connection, config: &Config, subject: &str) -> Result<(), ApiError> {
    let keys: Vec<String> = if subject.starts_with("0x") {
        conn.prepare_cached("SELECT public_key FROM links WHERE address = ?1")?
            .query_map([subject], |row| row.get(0))?
            .collect::<Result<_, _>>()?
    } else {
        vec![subject.to_string()]
    };
    for key in keys {
        replicate_trusted_results_of(conn, config, &key)?;
        conn.prepare_cached(
            "UPDATE units SET state = 'pending',
                              quorum = MAX(quorum, ?2), replicas_needed = MAX(replicas_needed, ?2)
             WHERE state IN ('leased', 'pending') AND id IN
                   (SELECT unit_id FROM results WHERE public_key = ?1 AND state = 'pending')",
        )?
        .execute(params![key, config.replicas])?;
        let withheld = conn
            .prepare_cached(
                "UPDATE results SET state = 'withheld' WHERE public_key = ?1 AND state = 'pending'",
            )?
            .execute([&key])?;
        tracing::warn!("{withheld} pending results of quarantined {key} withheld");
    }
    Ok(())
}

/// Units left on trust whose result has waited longer than `settle_seconds` for a later check
/// of its contributor are replicated after all. Runs with every lease request.
pub fn replicate_unsettled(
    conn: &Connection,
    config: &Config,
    now_ms: i64,
) -> Result<(), ApiError> {
    // A read first: most leases find nothing overdue, and a read costs less than an UPDATE.
    let overdue: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM results WHERE state = 'pending' AND created_at < ?1)",
        )?
        .query_row([now_ms - config.settle_ms()], |row| row.get(0))?;
    if !overdue {
        return Ok(());
    }
    conn.prepare_cached(
        "UPDATE units SET on_trust = 0, quorum = ?2, replicas_needed = ?2, state = 'pending'
         WHERE on_trust = 1 AND state = 'leased' AND id IN
               (SELECT unit_id FROM results WHERE state = 'pending' AND created_at < ?1)",
    )?
    .execute(params![now_ms - config.settle_ms(), config.replicas])?;
    Ok(())
}

fn mark_unit_verified(
    conn: &Connection,
    unit_id: i64,
    output_hash: &ContentHash,
) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE units SET state = 'verified', on_trust = 0, result_hash = ?2 WHERE id = ?1",
    )?
    .execute(params![unit_id, output_hash.to_string()])?;
    let job_id: i64 = conn
        .prepare_cached("SELECT job_id FROM units WHERE id = ?1")?
        .query_row([unit_id], |row| row.get(0))?;
    jobs::complete_if_done(conn, job_id)?;
    Ok(())
}

/// A result of a replicated unit waiting to be compared.
struct Replica {
    id: i64,
    public_key: String,
    /// Its lease was proven: its key was trusted when it leased the unit.
    proven: bool,
    output_hash: ContentHash,
    output: Vec<u8>,
}

/// Compares the pending results of replicated unit `unit_id` (run it after storing a new one)
/// and decides whatever can be decided. Returns the verdict on `result_id`.
pub fn resolve(
    conn: &Connection,
    config: &Config,
    unit_id: i64,
    result_id: i64,
    tolerance: &Tolerance,
    now_ms: i64,
) -> Result<Verdict, ApiError> {
    let (state, quorum, needed, on_trust, result_hash): (String, u32, u32, bool, Option<String>) =
        conn.prepare_cached(
            "SELECT state, quorum, replicas_needed, on_trust, result_hash FROM units WHERE id = ?1",
        )?
        .query_row([unit_id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?;
    let replicas = pending_replicas(conn, unit_id)?;
    let mut verdicts = Vec::new();

    if state == "verified" {
        // Late replicas of a decided unit are judged against its verified output.
        let verified: ContentHash = result_hash
            .ok_or_else(|| ApiError::Internal(format!("verified unit {unit_id} has no output")))?
            .parse()
            .map_err(|e| ApiError::Internal(format!("unit {unit_id} output hash: {e}")))?;
        let answer = blobs::get_required(conn, &verified)?;
        for replica in &replicas {
            verdicts.push(judge(
                conn, config, replica, unit_id, &answer, tolerance, now_ms,
            )?);
        }
        return Ok(verdict_of(&replicas, &verdicts, result_id));
    }

    // Group the results: each joins the first group whose first member it agrees with.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|g| agree(&replicas[g[0]].output, &replica.output, tolerance).is_ok())
        {
            Some(group) => group.push(i),
            None => groups.push(vec![i]),
        }
    }
    let total = replicas.len();
    // Strangers' results that agree with nobody do not count.
    let counted = total
        - groups
            .iter()
            .filter(|g| g.len() == 1 && !replicas[g[0]].proven)
            .count();
    let proven = replicas.iter().filter(|r| r.proven).count();
    let best = groups
        .iter()
        .max_by_key(|g| (g.len(), std::cmp::Reverse(g[0])));
    match best {
        Some(best) if best.len() >= quorum as usize && 2 * best.len() > counted => {
            if on_trust {
                return Ok(Verdict::Pending);
            }
            let winner = &replicas[best[0]];
            mark_unit_verified(conn, unit_id, &winner.output_hash)?;
            let answer = winner.output.clone();
            for replica in &replicas {
                verdicts.push(judge(
                    conn, config, replica, unit_id, &answer, tolerance, now_ms,
                )?);
            }
            Ok(verdict_of(&replicas, &verdicts, result_id))
        }
        _ if total >= needed as usize => {
            if proven >= config.max_replicas as usize {
                tracing::warn!(
                    "unit {unit_id}: {total} replicas ({proven} of proven keys) and no majority; \
                     it fails"
                );
                for replica in &replicas {
                    conn.prepare_cached(
                        "UPDATE results SET state = 'invalid', verified = 0 WHERE id = ?1",
                    )?
                    .execute([replica.id])?;
                }
                let job_id: i64 = conn
                    .prepare_cached(
                        "UPDATE units SET state = 'failed' WHERE id = ?1
                         RETURNING CASE WHEN canary_of IS NULL THEN job_id END",
                    )?
                    .query_row([unit_id], |row| row.get::<_, Option<i64>>(0))?
                    .unwrap_or(0);
                if job_id != 0 {
                    let why = format!(
                        "unit {unit_id}: {total} contributors' results ({proven} of them from \
                         contributors with a verified record) found no majority that agrees (a \
                         kernel must give the same output everywhere, within its tolerance_ulps)"
                    );
                    jobs::fail(conn, job_id, &why)?;
                }
                return Ok(Verdict::Invalid(format!(
                    "{total} replicas of unit {unit_id} found no majority"
                )));
            }
            conn.prepare_cached(
                "UPDATE units SET replicas_needed = ?2, state = 'pending' WHERE id = ?1",
            )?
            .execute(params![unit_id, needed + 1])?;
            Ok(Verdict::Pending)
        }
        _ => Ok(Verdict::Pending),
    }
}

/// Credits `replica` if it agrees with the unit's decided `answer`, else marks it invalid.
fn judge(
    conn: &Connection,
    config: &Config,
    replica: &Replica,
    unit_id: i64,
    answer: &[u8],
    tolerance: &Tolerance,
    now_ms: i64,
) -> Result<Verdict, ApiError> {
    match agree(answer, &replica.output, tolerance) {
        Ok(()) => {
            let account = links::account_of(conn, &replica.public_key)?;
            let credited = credit(conn, replica.id, &account, unit_id, now_ms)?;
            passed_check(conn, config, &replica.public_key, &account, now_ms)?;
            Ok(Verdict::Valid(credited))
        }
        Err(why) => {
            tracing::warn!(
                "replica {} of unit {unit_id} from {} disagrees with the majority: {why}",
                replica.id,
                replica.public_key
            );
            failed_check(conn, config, replica.id, &replica.public_key, now_ms)?;
            Ok(Verdict::Invalid(format!(
                "the output disagrees with the other contributors' agreeing results: {why}"
            )))
        }
    }
}

fn verdict_of(replicas: &[Replica], verdicts: &[Verdict], result_id: i64) -> Verdict {
    replicas
        .iter()
        .zip(verdicts)
        .find(|(replica, _)| replica.id == result_id)
        .map(|(_, verdict)| verdict.clone())
        .unwrap_or(Verdict::Pending)
}

fn pending_replicas(conn: &Connection, unit_id: i64) -> Result<Vec<Replica>, ApiError> {
    let rows: Vec<(i64, String, ContentHash, bool)> = conn
        .prepare_cached(
            "SELECT results.id, results.public_key, results.output_hash, leases.proven
             FROM results JOIN leases ON leases.lease_id = results.lease_id
             WHERE results.unit_id = ?1 AND results.state = 'pending' ORDER BY results.id",
        )?
        .query_map([unit_id], |row| {
            Ok((row.get(0)?, row.get(1)?, hash_column(row, 2)?, row.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, public_key, output_hash, proven)| {
            Ok(Replica {
                id,
                public_key,
                proven,
                output: blobs::get_required(conn, &output_hash)?,
                output_hash,
            })
        })
        .collect()
}
