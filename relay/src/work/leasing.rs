//! Leases: a unit handed to one contributor until a deadline.
//!
//! A lease is `active` until its result is `submitted`, it is `released` by the contributor, its
//! result is `rejected` by verification, or its deadline passes and it is `expired`. Expired leases
//! are swept at the start of every lease and release request, which puts their units back in the
//! queue; an expiry counts against its key and address (their run of valid results ends), never
//! against the unit or its job. How many leases one key, address or network may hold at once is
//! [`crate::work::lease_caps`]'s business, checked before a lease is issued.
//!
//! A lease is `proven` when its key was trusted as it was issued. Only a proven lease's failures
//! count against its unit: a rejected result uses an attempt ([`units::requeue`]), and a kernel
//! unit's GPU budget is charged only with proven leases' time ([`charge_gpu_time`]).

use crate::accounts::contributors;
use crate::accounts::{links, reputation};
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::{self, Stage};
use crate::random;
use crate::work::units::{self, Holder, Miss, Unit, UnitState, Verify, Work};
use crate::work::{canaries, jobs, lease_caps};
use axum::http::StatusCode;
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::kernels;
use glowworm_protocol::wire::{BlobRef, KernelRef, Lease, LeaseWork, ReleaseReason, Reputation};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

crate::sql_enum! {
    /// Where a lease is (`leases.state`).
    pub enum LeaseState {
        /// Issued; its contributor may submit until its deadline.
        Active = "active",
        /// A result for it was accepted (valid or pending).
        Submitted = "submitted",
        /// Its deadline passed without a result.
        Expired = "expired",
        /// Its contributor gave it back unworked.
        Released = "released",
        /// Its result failed verification.
        Rejected = "rejected",
    }
}

/// A row of the `leases` table.
#[derive(Debug, Clone)]
pub struct LeaseRow {
    pub lease_id: String,
    pub unit_id: i64,
    pub public_key: String,
    pub deadline_ms: i64,
    pub state: LeaseState,
    /// Its key was trusted when it was issued: its failures count against its unit.
    pub proven: bool,
}

pub fn get(conn: &Connection, lease_id: &str) -> Result<Option<LeaseRow>, ApiError> {
    let lease = conn
        .prepare_cached(
            "SELECT lease_id, unit_id, public_key, deadline_ms, state, proven FROM leases
             WHERE lease_id = ?1",
        )?
        .query_row([lease_id], |row| {
            Ok(LeaseRow {
                lease_id: row.get(0)?,
                unit_id: row.get(1)?,
                public_key: row.get(2)?,
                deadline_ms: row.get(3)?,
                state: row.get(4)?,
                proven: row.get(5)?,
            })
        })
        .optional()?;
    Ok(lease)
}

impl LeaseRow {
    /// Refuses unless the lease is active and its deadline has not passed at `now_ms`.
    pub fn require_open(&self, now_ms: i64) -> Result<(), ApiError> {
        match self.state {
            LeaseState::Submitted => Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_submitted",
                format!("a result for lease {} was already accepted", self.lease_id),
            )),
            LeaseState::Active if now_ms <= self.deadline_ms => Ok(()),
            _ => {
                let why = if self.state == LeaseState::Active {
                    "its deadline passed"
                } else {
                    self.state.as_str()
                };
                Err(ApiError::new(
                    StatusCode::GONE,
                    "lease_expired",
                    format!("lease {} is closed: {why}", self.lease_id),
                ))
            }
        }
    }

    /// Refuses unless `public_key` holds this lease.
    pub fn require_holder(&self, public_key: &str) -> Result<(), ApiError> {
        if self.public_key == public_key {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_contributor",
                format!("lease {} belongs to another contributor", self.lease_id),
            ))
        }
    }
}

/// Closes lease `lease_id`: its result was accepted (`Submitted`) or rejected (`Rejected`).
pub fn close(conn: &Connection, lease_id: &str, state: LeaseState) -> Result<(), ApiError> {
    conn.prepare_cached("UPDATE leases SET state = ?2 WHERE lease_id = ?1")?
        .execute(params![lease_id, state])?;
    Ok(())
}

/// The 404 for a lease id the relay never issued.
pub fn unknown_lease(lease_id: &str) -> ApiError {
    ApiError::not_found("unknown_lease", format!("no lease with id {lease_id:?}"))
}

/// Expires every active lease whose deadline passed before `now_ms`: its unit goes back to the
/// queue, and its key and address lose their run of valid results. A proven lease of a kernel
/// unit charges its time to the unit's GPU budget ([`charge_gpu_time`]).
pub fn expire_overdue(conn: &Connection, config: &Config, now_ms: i64) -> Result<(), ApiError> {
    let mut stmt = conn.prepare_cached(
        "UPDATE leases SET state = 'expired'
         WHERE state = 'active' AND deadline_ms < ?1
         RETURNING lease_id, unit_id, on_trust, public_key, account, deadline_ms, proven",
    )?;
    let overdue = stmt
        .query_map([now_ms], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, bool>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, bool>(6)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (lease_id, unit_id, on_trust, public_key, account, deadline_ms, proven) in overdue {
        tracing::info!("lease {lease_id} of unit {unit_id} expired");
        if on_trust {
            units::end_trust(conn, config, unit_id)?;
        }
        let account = account.unwrap_or_else(|| public_key.clone());
        reputation::record_missed(conn, &reputation::subjects(&public_key, &account))?;
        if !charge_gpu_time(conn, config, &lease_id, deadline_ms, false)? {
            let miss = if proven {
                Miss::ProvenExpired
            } else {
                Miss::Unproven
            };
            // The miss happened at the deadline, whenever the sweep comes.
            let failed = units::requeue(conn, config, unit_id, miss, deadline_ms)?;
            jobs::fail_for(conn, failed, now_ms)?;
        }
    }
    Ok(())
}

/// Adds the time lease `lease_id` held its kernel unit (issue to `now_ms`) to the unit's GPU
/// time, counting a GPU failure when `failed`; a unit over `unit_gpu_seconds` or
/// `max_gpu_failures` fails for good, and fails its job, with that reason. Only proven leases
/// are charged: a stranger's key that holds a lease to its deadline or says its GPU failed
/// costs the job nothing. Matmul units run the relay's own kernels and are not charged.
/// Returns whether the unit failed.
pub fn charge_gpu_time(
    conn: &Connection,
    config: &Config,
    lease_id: &str,
    now_ms: i64,
    failed: bool,
) -> Result<bool, ApiError> {
    let charged: Option<(i64, i64, u32)> = conn
        .prepare_cached(
            "UPDATE units SET
                 gpu_ms = gpu_ms + MAX(0, ?2 - (SELECT issued_at_ms FROM leases
                                                 WHERE lease_id = ?1)),
                 gpu_failures = gpu_failures + ?3
             WHERE id = (SELECT unit_id FROM leases WHERE lease_id = ?1 AND proven = 1)
               AND kernel_unit IS NOT NULL
             RETURNING id, gpu_ms, gpu_failures",
        )?
        .query_row(params![lease_id, now_ms, i64::from(failed)], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((unit_id, gpu_ms, failures)) = charged else {
        return Ok(false);
    };
    let why = if failures >= config.max_gpu_failures {
        format!(
            "unit {unit_id}: the GPU failed running the kernel for {failures} contributors \
             (for example a lost device: a dispatch that runs too long is reset by the GPU's \
             watchdog); the kernel must finish each dispatch quickly"
        )
    } else if gpu_ms > config.unit_gpu_ms() {
        format!(
            "unit {unit_id}: the kernel used {:.1} s of contributors' GPU time, over the \
             budget of {} s a unit may use in all (unit_gpu_seconds); split the work into more, \
             smaller units",
            gpu_ms as f64 / 1000.0,
            config.unit_gpu_seconds
        )
    } else {
        return Ok(false);
    };
    let failed = units::fail_unfinished(conn, unit_id, why)?;
    let failed_now = failed.is_some();
    jobs::fail_for(conn, failed, now_ms)?;
    Ok(failed_now)
}

/// A matmul unit made by an older relay names a tiled kernel the catalogue no longer has (the
/// kernel was retuned since). Every matmul kernel the relay made units for computes the same
/// product, so the unit is moved to today's ([`kernels::matmul::TILED`]) and runs; returns
/// true. The exception is a replicated unit with a replica still being computed: that
/// contributor signs the kernel hash its lease named, which must stay the unit's until it
/// submits. Such a unit fails for good (failing its job) instead of blocking the queue; returns
/// false. Replicas already submitted do not matter: their signatures were checked, and replicas
/// are compared by value, whichever kernel computed them.
fn retire_kernel(conn: &Connection, unit: &mut Unit, now_ms: i64) -> Result<bool, ApiError> {
    let in_flight: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM leases
                            WHERE unit_id = ?1 AND state = 'active')",
        )?
        .query_row([unit.id], |row| row.get(0))?;
    if in_flight {
        tracing::warn!(
            "unit {} names a kernel not in the catalogue and a replica is being computed; it fails",
            unit.id
        );
        let why = format!(
            "unit {} named a kernel this relay no longer has while a replica was being computed",
            unit.id
        );
        let failed = units::fail(conn, unit.id, why)?;
        jobs::fail_for(conn, failed, now_ms)?;
        return Ok(false);
    }
    let current = kernels::matmul::TILED.hash();
    tracing::info!(
        "unit {} named the retired kernel {}; it runs with {} ({})",
        unit.id,
        unit.kernel_hash,
        kernels::matmul::TILED.id,
        current
    );
    conn.prepare_cached("UPDATE units SET kernel_hash = ?2 WHERE id = ?1")?
        .execute(params![unit.id, current.to_string()])?;
    unit.kernel_hash = current;
    Ok(true)
}

/// Marks every lease still active from before this start of the relay `outlived_relay`;
/// returns how many there were. Call it once when the relay starts serving (not from other
/// users of the database, such as `keys`).
///
/// A relay that crashes or restarts may have issued a lease whose reply never reached its
/// contributor, or may have lost the contributor's result with the connection. Such a lease
/// stays active until its deadline, so a contributor that did get it can still submit its
/// result; should it expire, that costs its unit nothing (no expiry does), and the mark tells
/// an operator reading the table why so many leases of that moment expired.
pub fn mark_interrupted(conn: &Connection) -> Result<usize, ApiError> {
    Ok(conn.execute(
        "UPDATE leases SET outlived_relay = 1 WHERE state = 'active' AND outlived_relay = 0",
        [],
    )?)
}

/// A lease as issued: what the contributor receives, the row stored, and its unit.
pub struct Issued {
    pub lease: Lease,
    pub row: LeaseRow,
    pub unit: Unit,
}

/// Who asks for work, as the lease handler knows them.
#[derive(Debug, Clone)]
pub struct Asker {
    /// Canonical (lowercase hex) public key.
    pub public_key: String,
    /// The client's /24 or /64 network ([`crate::http::network`]), when known.
    pub network: Option<String>,
    /// What the per-network lease caps count the lease against ([`crate::http::network::ClientNetwork`]).
    pub source: Option<String>,
    /// "vendor/architecture" of the adapter, when the contributor said.
    pub adapter_class: Option<String>,
}

/// Oldest pending units looked at per lease; a replicated one is picked at random among them,
/// so that contributors asking one after another (colluders, say) do not get the replicas of
/// one unit in turn.
const CANDIDATES: u32 = 8;

/// Leases the oldest pending unit `asker` may take (or, now and then, a known-answer canary), or
/// returns `None` when there is no work. Run it inside a transaction
/// ([`crate::store::Db::batch_refusing_first`] does: it refuses a quarantined contributor, and one
/// over its lease caps, before its first write, and after that only a database error can make
/// it fail).
pub fn lease_next(
    conn: &Connection,
    config: &Config,
    asker: &Asker,
    now_ms: i64,
) -> Result<Option<Issued>, ApiError> {
    let _span = metrics::span(Stage::LeaseTx);
    let public_key = asker.public_key.as_str();
    let account = links::account_of(conn, public_key)?;
    let standing = reputation::Standing::of(conn, config, public_key, &account)?;
    standing.refuse_quarantined(public_key, &account)?;
    let address = (account != public_key).then_some(account.as_str());
    // A lease of the key's that expired but is not swept yet ends its run already.
    let missed = lease_caps::has_overdue(conn, public_key, now_ms)?;
    let proven = !missed && standing.trusted();
    let run = |r: &Reputation| u32::try_from(r.consecutive_valid).unwrap_or(u32::MAX);
    let capped = lease_caps::Asker {
        public_key,
        address,
        source: asker.source.as_deref(),
        proven,
        key_run: if missed { 0 } else { run(&standing.key) },
        address_run: standing.address.as_ref().map(run).unwrap_or(0),
    };
    lease_caps::check(conn, config, &capped, now_ms)?;
    let lease_id = new_lease_id(now_ms)?;
    expire_overdue(conn, config, now_ms)?;
    units::replicate_unsettled(conn, config, now_ms)?;

    let adapter_class = asker
        .adapter_class
        .as_deref()
        .filter(|_| config.homogeneous_redundancy);
    let network = asker
        .network
        .as_deref()
        .filter(|_| config.distinct_networks);
    let holder = Holder {
        public_key,
        address,
        network,
        adapter_class,
        proven,
    };
    let canary = if random::chance(config.canary_permille)? {
        canaries::pick(conn, &holder)?
    } else {
        None
    };
    let is_canary = canary.is_some();
    let mut unit = match canary {
        Some(canary) => canary,
        None => {
            // The oldest first: a Freivalds-checked unit (most of them) is taken as it is.
            let mut candidates = units::pending_for(conn, &holder, 1, now_ms)?;
            if candidates
                .first()
                .is_some_and(|u| u.verify == Verify::Replicate)
            {
                candidates = units::pending_for(conn, &holder, CANDIDATES, now_ms)?;
            }
            let Some(unit) = pick(candidates)? else {
                return Ok(None);
            };
            unit
        }
    };
    if matches!(unit.work, Work::Matmul { .. })
        && kernels::by_hash(&unit.kernel_hash).is_none()
        && !retire_kernel(conn, &mut unit, now_ms)?
    {
        return lease_next(conn, config, asker, now_ms);
    }
    let outstanding: u32 = if unit.verify == Verify::Replicate && !is_canary {
        conn.prepare_cached(
            "SELECT (SELECT COUNT(*) FROM leases WHERE unit_id = ?1 AND state = 'active')
                  + (SELECT COUNT(*) FROM results WHERE unit_id = ?1 AND state = 'pending')",
        )?
        .query_row([unit.id], |row| row.get(0))?
    } else {
        0
    };
    // A requester's kernel job asked for its replicas: only the relay's own replicated matmul
    // units are left to a trusted contributor alone, and only while no other replica is out.
    // The trust is this lease's: should it end without a result, the unit is replicated as
    // usual (`end_trust`).
    let mut on_trust = false;
    if !is_canary
        && unit.verify == Verify::Replicate
        && matches!(unit.work, Work::Matmul { .. })
        && unit.canary_of.is_none()
        && outstanding == 0
        && unit.quorum > 1
        && proven
        && !random::chance(config.trusted_replication_permille)?
    {
        units::put_on_trust(conn, unit.id)?;
        (unit.on_trust, unit.quorum, unit.replicas_needed) = (true, 1, 1);
        on_trust = true;
    }
    let deadline_ms = now_ms + config.lease_ms();
    let lease = wire_lease(&unit, lease_id.clone(), deadline_ms)?;
    let state = if outstanding + 1 >= unit.replicas_needed {
        UnitState::Leased
    } else {
        UnitState::Pending
    };
    // A canary's unit is verified already: its state stays as it is.
    if !is_canary {
        units::mark_leased(conn, unit.id, state, adapter_class)?;
    }
    conn.prepare_cached(
        "INSERT INTO leases (lease_id, unit_id, public_key, issued_at_ms, deadline_ms, state,
                             account, network, adapter_class, on_trust, canary, proven, source)
         VALUES (?1, ?2, ?3, ?4, ?5, ?13, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        lease_id,
        unit.id,
        public_key,
        now_ms,
        deadline_ms,
        address,
        asker.network,
        asker.adapter_class,
        on_trust,
        is_canary,
        proven,
        asker.source,
        LeaseState::Active
    ])?;
    contributors::seen(conn, public_key, now_ms)?;
    let row = LeaseRow {
        lease_id,
        unit_id: unit.id,
        public_key: public_key.to_string(),
        deadline_ms,
        state: LeaseState::Active,
        proven,
    };
    Ok(Some(Issued { lease, row, unit }))
}

/// The unit to lease among the oldest candidates: the oldest, unless it is replicated, then
/// one of the replicated ones at random.
fn pick(mut candidates: Vec<Unit>) -> Result<Option<Unit>, ApiError> {
    if candidates
        .first()
        .is_none_or(|u| u.verify == Verify::Freivalds)
    {
        return Ok(candidates.into_iter().next());
    }
    candidates.retain(|u| u.verify == Verify::Replicate);
    let i = random::below(candidates.len() as u32)? as usize;
    Ok(Some(candidates.swap_remove(i)))
}

/// Most leases [`RecentLeases`] remembers.
const MAX_RECENT: usize = 1 << 16;

/// Leases this relay issued lately, with their units, so that the first checks of a result need
/// no database read. What is remembered never changes for a lease (its holder, its unit, its
/// deadline), except whether it is still open, which the transaction recording the result checks
/// again ([`crate::work::results`]); a lease remembered as open that has since closed only costs its
/// result a verification before the same refusal.
#[derive(Default)]
pub struct RecentLeases {
    leases: Mutex<HashMap<String, Arc<(LeaseRow, Unit)>>>,
}

impl RecentLeases {
    pub fn remember(&self, row: LeaseRow, unit: Unit, now_ms: i64) {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        if leases.len() >= MAX_RECENT {
            leases.retain(|_, lease| lease.0.deadline_ms >= now_ms);
            if leases.len() >= MAX_RECENT {
                leases.clear();
            }
        }
        leases.insert(row.lease_id.clone(), Arc::new((row, unit)));
    }

    pub fn get(&self, lease_id: &str) -> Option<Arc<(LeaseRow, Unit)>> {
        let leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        leases.get(lease_id).cloned()
    }

    /// Forgets a lease that has (or may have) closed.
    pub fn forget(&self, lease_id: &str) {
        let mut leases = self.leases.lock().unwrap_or_else(PoisonError::into_inner);
        leases.remove(lease_id);
    }
}

/// A new lease id: the issue time (48-bit Unix milliseconds, big-endian) then 80 random bits,
/// 32 hex characters. Ids in time order make the indexes on lease ids (of leases and of results)
/// grow at their end, instead of touching a random page of each for every lease.
fn new_lease_id(now_ms: i64) -> Result<String, ApiError> {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    id[6..].copy_from_slice(&random::bytes::<10>()?);
    Ok(hex::encode(id))
}

/// The [`Lease`] a contributor receives for `unit`.
fn wire_lease(unit: &Unit, lease_id: String, deadline_ms: i64) -> Result<Lease, ApiError> {
    let (kernel, work, inputs) = match &unit.work {
        Work::Matmul {
            shape,
            a_hash,
            b_hash,
        } => {
            let kernel = kernels::by_hash(&unit.kernel_hash).ok_or_else(|| {
                ApiError::Internal(format!(
                    "unit {} names kernel {}, which is not in the catalogue",
                    unit.id, unit.kernel_hash
                ))
            })?;
            let panel = |name: &str, hash: ContentHash, elements: u64| BlobRef {
                name: name.into(),
                hash,
                bytes: 4 * elements,
                binding: None,
            };
            let inputs = vec![
                panel("a", *a_hash, shape.m as u64 * shape.k as u64),
                panel("b", *b_hash, shape.k as u64 * shape.n as u64),
            ];
            let work = LeaseWork::Matmul { shape: *shape };
            (kernel.reference(), work, inputs)
        }
        Work::Kernel(kernel_unit) => {
            let kernel = KernelRef {
                id: kernel_unit.kernel_name.clone(),
                hash: unit.kernel_hash,
            };
            let work = LeaseWork::Dispatch(kernel_unit.dispatch);
            (kernel, work, kernel_unit.inputs.clone())
        }
    };
    Ok(Lease {
        lease_id,
        unit_id: unit.id,
        job_id: unit.job_id,
        kernel,
        work,
        inputs,
        output_bytes: unit.work.output_bytes(),
        flop: unit.flop,
        deadline_unix_ms: deadline_ms,
    })
}

/// Gives an active lease back unworked: its unit is pending again. A proven lease's release
/// because the GPU failed ([`ReleaseReason::GpuFailed`]) charges the lease's time to a kernel
/// unit's budget ([`charge_gpu_time`]), so a kernel that never finishes (or loses every device
/// it runs on) fails its job instead of going round forever. Releasing a lease
/// that is already released succeeds again, so a retry is harmless. Run it inside a
/// transaction ([`crate::store::Db::batch`] does).
pub fn release(
    conn: &Connection,
    config: &Config,
    lease_id: &str,
    public_key: &str,
    reason: ReleaseReason,
    now_ms: i64,
) -> Result<(), ApiError> {
    expire_overdue(conn, config, now_ms)?;
    let lease = get(conn, lease_id)?.ok_or_else(|| unknown_lease(lease_id))?;
    lease.require_holder(public_key)?;
    contributors::seen(conn, public_key, now_ms)?;
    if lease.state != LeaseState::Released {
        lease.require_open(now_ms)?;
        let on_trust: bool = conn
            .prepare_cached("SELECT on_trust FROM leases WHERE lease_id = ?1")?
            .query_row([lease_id], |row| row.get(0))?;
        conn.prepare_cached(
            "UPDATE leases SET state = ?3, release_reason = ?2 WHERE lease_id = ?1",
        )?
        .execute(params![lease_id, reason.as_str(), LeaseState::Released])?;
        if on_trust {
            units::end_trust(conn, config, lease.unit_id)?;
        }
        if reason == ReleaseReason::GpuFailed
            && charge_gpu_time(conn, config, lease_id, now_ms, true)?
        {
            return Ok(());
        }
        units::requeue_released(conn, lease.unit_id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::LeaseState;

    #[test]
    fn lease_states_are_the_schemas() {
        crate::sql_enum::assert_matches_schema("leases", "state", LeaseState::TEXTS);
    }
}
