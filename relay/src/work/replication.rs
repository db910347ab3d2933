//! Verification by replication: which of a replicated unit's results agree, and what that
//! decides. It only reads; [`crate::work::settlement`] carries out the [`Decision`].
//!
//! A unit whose output no cheap check covers (`verify = 'replicate'`) is leased to distinct
//! contributors ([`crate::work::units::pending_for`] keeps keys, addresses, networks and, optionally,
//! adapter kinds apart). Each result waits as `pending` until [`decide`] finds a group of results
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
//! known-answer canary; [`crate::work::settlement`]). If that check passes, the results it left
//! waiting are valid; if it fails, or none comes within `settle_seconds`
//! ([`crate::work::units::replicate_unsettled`]), their units are replicated after all, so a job's
//! output never rests on an unchecked result of a contributor caught cheating.

use crate::config::Config;
use crate::error::ApiError;
use crate::store::blobs;
use crate::work::result_rows::{self, Replica};
use crate::work::units::UnitState;
use glowworm_protocol::compare::{Tolerance, agree};
use glowworm_protocol::hash::ContentHash;
use rusqlite::Connection;

/// What the results of a replicated unit decide.
#[derive(Debug)]
pub enum Decision {
    /// Nothing yet: more results are due, or a majority waits on its trusted contributor's
    /// next check.
    Wait,
    /// Every result wanted is in and none has a majority: the unit wants this many now.
    MoreReplicas(u32),
    /// The unit's output is known. `winner` is the replica whose output it is (`None` when the
    /// unit was verified before: these are late replicas), and `judged` says of each replica
    /// whether it agrees (`Ok`) or why not.
    Decided {
        winner: Option<usize>,
        judged: Vec<Result<(), String>>,
    },
    /// Proven contributors' results disagree `max_replicas` times: the kernel is at fault and
    /// the unit fails, for the reason given.
    NoMajority { why: String, total: usize },
}

/// Reads the pending results of replicated unit `unit_id` (run it after storing a new one) and
/// decides what can be decided.
pub fn decide(
    conn: &Connection,
    config: &Config,
    unit_id: i64,
    tolerance: &Tolerance,
) -> Result<(Vec<Replica>, Decision), ApiError> {
    let (state, quorum, needed, on_trust, result_hash): (
        UnitState,
        u32,
        u32,
        bool,
        Option<String>,
    ) = conn
        .prepare_cached(
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
    let replicas = result_rows::pending_replicas(conn, unit_id)?;

    if state == UnitState::Verified {
        // Late replicas of a decided unit are judged against its verified output.
        let verified: ContentHash = result_hash
            .ok_or_else(|| ApiError::Internal(format!("verified unit {unit_id} has no output")))?
            .parse()
            .map_err(|e| ApiError::Internal(format!("unit {unit_id} output hash: {e}")))?;
        let answer = blobs::get_required(conn, &verified)?;
        let judged = judge(&replicas, &answer, tolerance);
        return Ok((
            replicas,
            Decision::Decided {
                winner: None,
                judged,
            },
        ));
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
    let decision = match best {
        Some(best) if best.len() >= quorum as usize && 2 * best.len() > counted => {
            if on_trust {
                Decision::Wait
            } else {
                let winner = best[0];
                let judged = judge(&replicas, &replicas[winner].output, tolerance);
                Decision::Decided {
                    winner: Some(winner),
                    judged,
                }
            }
        }
        _ if total >= needed as usize => {
            if proven >= config.max_replicas as usize {
                tracing::warn!(
                    "unit {unit_id}: {total} replicas ({proven} of proven keys) and no majority; \
                     it fails"
                );
                Decision::NoMajority {
                    why: format!(
                        "unit {unit_id}: {total} contributors' results ({proven} of them from \
                         contributors with a verified record) found no majority that agrees (a \
                         kernel must give the same output everywhere, within its tolerance_ulps)"
                    ),
                    total,
                }
            } else {
                Decision::MoreReplicas(needed + 1)
            }
        }
        _ => Decision::Wait,
    };
    Ok((replicas, decision))
}

/// Whether each replica agrees with the unit's decided `answer`, and if not, why not.
fn judge(replicas: &[Replica], answer: &[u8], tolerance: &Tolerance) -> Vec<Result<(), String>> {
    replicas
        .iter()
        .map(|replica| agree(answer, &replica.output, tolerance).map_err(|why| why.to_string()))
        .collect()
}
