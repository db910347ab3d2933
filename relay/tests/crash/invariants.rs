//! The invariants the database must keep through any number of crashes, checked with direct SQL
//! once every job is done and the relay is stopped. Each broken one is a line in
//! [`Findings::violations`].

use crate::load::{Record, SHAPE};
use glowworm_protocol::compare;
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::wire::MatmulShape;
use glowworm_relay::accounts::ledger::bps_of;
use glowworm_relay::store::blobs::BlobStore;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::Path;

/// What the checks found.
#[derive(Debug, Default)]
pub struct Findings {
    pub violations: Vec<String>,
    pub jobs: usize,
    /// Jobs whose upload reply was lost but that were created.
    pub jobs_unacknowledged: usize,
    pub units: usize,
    pub leases: usize,
    pub leases_expired: usize,
    pub leases_released: usize,
    /// Results credited (state 'valid'), and those whose reply never reached the contributor.
    pub results_credited: usize,
    pub credited_unacknowledged: usize,
    pub partner_shares: usize,
    /// Temporary files of unfinished blob writes (the relay removes them when it starts).
    pub temp_files: usize,
}

impl Findings {
    fn violation(&mut self, what: String) {
        eprintln!("VIOLATION {what}");
        self.violations.push(what);
    }
}

/// Runs every check on the stopped relay's database. `api_credits` are the contributors'
/// balances as `GET /v1/contributors/{key}` showed them; `end_ms` is a time after the last
/// request.
pub fn check(
    database: &Path,
    record: &Record,
    api_credits: &HashMap<String, i64>,
    end_ms: i64,
) -> rusqlite::Result<Findings> {
    let conn = Connection::open(database)?;
    let mut found = Findings::default();
    database_is_sound(&conn, &mut found)?;
    credits_match_results(&conn, &mut found)?;
    partner_shares(&conn, &mut found)?;
    balances(&conn, api_credits, &mut found)?;
    units(&conn, &mut found)?;
    leases(&conn, end_ms, &mut found)?;
    acknowledged(&conn, record, &mut found)?;
    jobs(&conn, &BlobStore::beside(database), record, &mut found)?;
    blob_table(&conn, &mut found)?;
    blob_files(&BlobStore::beside(database), &mut found);
    Ok(found)
}

/// SQLite's own checks: the file is intact and every reference resolves.
fn database_is_sound(conn: &Connection, found: &mut Findings) -> rusqlite::Result<()> {
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if integrity != "ok" {
        found.violation(format!("integrity_check: {integrity}"));
    }
    let broken: Vec<String> = conn
        .prepare("PRAGMA foreign_key_check")?
        .query_map([], |row| {
            Ok(format!(
                "{} row {} refers to a missing {} row",
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?
            ))
        })?
        .collect::<Result<_, _>>()?;
    for what in broken {
        found.violation(format!("foreign_key_check: {what}"));
    }
    Ok(())
}

/// Every credit is for exactly one valid result, of the right amount, to the right account; every
/// valid result is credited exactly once; nothing else is in the ledger.
fn credits_match_results(conn: &Connection, found: &mut Findings) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT ledger.id, ledger.account, ledger.amount, ledger.unit_id,
                results.id, results.state, results.verified, results.unit_id, results.public_key,
                units.price
                  - COALESCE((SELECT SUM(cut.amount) FROM ledger AS cut
                              WHERE cut.result_id = ledger.result_id
                                AND cut.kind IN ('partner_share', 'operator_fee')), 0),
                leases.account,
                (SELECT SUM(paid.amount) FROM ledger AS paid
                 WHERE paid.result_id = ledger.result_id AND paid.kind = 'unit_paid'),
                units.price
         FROM ledger
         LEFT JOIN results ON results.id = ledger.result_id
         LEFT JOIN units ON units.id = results.unit_id
         LEFT JOIN leases ON leases.lease_id = results.lease_id
         WHERE ledger.kind = 'unit_verified'",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let ledger_id: i64 = row.get(0)?;
        let account: String = row.get(1)?;
        let amount: i64 = row.get(2)?;
        let unit_id: Option<i64> = row.get(3)?;
        let Some(result_id) = row.get::<_, Option<i64>>(4)? else {
            found.violation(format!("credit {ledger_id} names no stored result"));
            continue;
        };
        let (state, verified): (String, bool) = (row.get(5)?, row.get(6)?);
        let result_unit: i64 = row.get(7)?;
        let public_key: String = row.get(8)?;
        let earns: i64 = row.get(9)?;
        let linked: Option<String> = row.get(10)?;
        let (paid, price): (Option<i64>, i64) = (row.get(11)?, row.get(12)?);
        if paid != Some(-price) {
            found.violation(format!(
                "result {result_id} of a unit priced {price} was paid for by {paid:?}"
            ));
        }
        if state != "valid" || !verified {
            found.violation(format!(
                "credit {ledger_id} is for result {result_id}, which is {state} (verified {verified})"
            ));
        }
        if unit_id != Some(result_unit) {
            found.violation(format!(
                "credit {ledger_id} names unit {unit_id:?}; its result is of unit {result_unit}"
            ));
        }
        if amount != earns {
            found.violation(format!(
                "credit {ledger_id} is {amount}; unit {result_unit} earns {earns} after the \
                 partner's share and the operator's fee"
            ));
        }
        if account != linked.unwrap_or(public_key) {
            found.violation(format!(
                "credit {ledger_id} went to {account}, not the result's account"
            ));
        }
    }

    let mut stmt = conn.prepare(
        "SELECT results.id, results.state, results.verified,
                (SELECT COUNT(*) FROM ledger
                 WHERE ledger.result_id = results.id AND ledger.kind = 'unit_verified')
         FROM results",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, state, verified, credits): (i64, String, bool, i64) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        if state == "valid" {
            found.results_credited += 1;
        } else {
            // Every contributor here is honest, and no result waits for replicas.
            found.violation(format!("result {id} of an honest contributor is {state}"));
        }
        if verified != (state == "valid") {
            found.violation(format!("result {id} is {state} with verified = {verified}"));
        }
        let expected = i64::from(state == "valid");
        if credits != expected {
            found.violation(format!(
                "result {id} ({state}) has {credits} credits in the ledger, not {expected}"
            ));
        }
    }

    let mut stmt = conn.prepare(
        "SELECT kind, COUNT(*) FROM ledger
         WHERE kind NOT IN ('unit_verified', 'partner_share', 'operator_fee', 'unit_paid',
                            'grant_out', 'grant_in', 'reserve_out', 'reserve_in',
                            'release_out', 'release_in')
         GROUP BY kind",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (kind, count): (String, i64) = (row.get(0)?, row.get(1)?);
        found.violation(format!(
            "{count} ledger rows of kind {kind}, which nothing here makes"
        ));
    }
    // The books balance: every entry sums to zero, no budget or escrow is below zero.
    let audit = glowworm_relay::accounts::ledger::audit(conn)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.to_string().into()))?;
    if !audit.holds() {
        found.violation(format!("the books do not balance: {audit:?}"));
    }
    Ok(())
}

/// Every partner share is the partner's rate of one credited result of a lease through its
/// widget, and every such result has its share.
fn partner_shares(conn: &Connection, found: &mut Findings) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT ledger.id, ledger.account, ledger.amount, lease_partners.partner,
                lease_partners.share_bps, units.price, credit.id
         FROM ledger
         LEFT JOIN results ON results.id = ledger.result_id
         LEFT JOIN units ON units.id = results.unit_id
         LEFT JOIN lease_partners ON lease_partners.lease_id = results.lease_id
         LEFT JOIN ledger AS credit
                ON credit.result_id = ledger.result_id AND credit.kind = 'unit_verified'
         WHERE ledger.kind = 'partner_share'",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        found.partner_shares += 1;
        let (id, account, amount): (i64, String, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let partner: Option<String> = row.get(3)?;
        let share_bps: Option<u32> = row.get(4)?;
        let price: Option<i64> = row.get(5)?;
        let credit: Option<i64> = row.get(6)?;
        let (Some(partner), Some(share_bps), Some(price), Some(_)) =
            (partner, share_bps, price, credit)
        else {
            found.violation(format!(
                "partner share {id} is not for a credited result of a widget's lease"
            ));
            continue;
        };
        if account != partner || amount != bps_of(price, share_bps) {
            found.violation(format!(
                "partner share {id}: {amount} to {account}; expected {} to {partner}",
                bps_of(price, share_bps)
            ));
        }
    }

    let mut stmt = conn.prepare(
        "SELECT results.id, units.price, lease_partners.share_bps
         FROM results
         JOIN units ON units.id = results.unit_id
         JOIN lease_partners ON lease_partners.lease_id = results.lease_id
         JOIN ledger AS credit ON credit.result_id = results.id AND credit.kind = 'unit_verified'
         WHERE (SELECT COUNT(*) FROM ledger AS share
                WHERE share.result_id = results.id AND share.kind = 'partner_share') != 1",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, price, share_bps): (i64, i64, u32) = (row.get(0)?, row.get(1)?, row.get(2)?);
        if bps_of(price, share_bps) > 0 {
            found.violation(format!(
                "result {id} through a partner's widget has no single partner share"
            ));
        }
    }
    Ok(())
}

/// Balances are the sums of the ledger, in the `balances` table and through the API.
fn balances(
    conn: &Connection,
    api_credits: &HashMap<String, i64>,
    found: &mut Findings,
) -> rusqlite::Result<()> {
    let sums: HashMap<String, i64> = conn
        .prepare("SELECT account, SUM(amount) FROM ledger GROUP BY account")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let kept: HashMap<String, i64> = conn
        .prepare("SELECT account, amount FROM balances")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (account, sum) in &sums {
        if kept.get(account) != Some(sum) {
            found.violation(format!(
                "balance of {account} is {:?}; its ledger rows sum to {sum}",
                kept.get(account)
            ));
        }
    }
    for account in kept.keys().filter(|a| !sums.contains_key(*a)) {
        found.violation(format!("balance of {account} without ledger rows"));
    }
    for (public_key, credits) in api_credits {
        let sum = sums.get(public_key).copied().unwrap_or(0);
        if *credits != sum {
            found.violation(format!(
                "the API shows {credits} credits for {public_key}; its ledger rows sum to {sum}"
            ));
        }
    }
    Ok(())
}

/// Every unit is verified, by exactly one valid result whose output is stored intact, and has
/// counted one attempt per proven lease whose result was rejected: expiries, releases and
/// crashes never use attempts.
fn units(conn: &Connection, found: &mut Findings) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT units.id, units.state, units.result_hash, units.attempts,
                (SELECT COUNT(*) FROM results
                 WHERE results.unit_id = units.id AND results.state = 'valid'),
                (SELECT MIN(output_hash) FROM results
                 WHERE results.unit_id = units.id AND results.state = 'valid'),
                (SELECT COUNT(*) FROM leases
                 WHERE leases.unit_id = units.id AND leases.state = 'rejected'
                   AND leases.proven = 1),
                (SELECT bytes FROM blobs WHERE blobs.hash = units.result_hash)
         FROM units",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        found.units += 1;
        let (id, state): (i64, String) = (row.get(0)?, row.get(1)?);
        let result_hash: Option<String> = row.get(2)?;
        let (attempts, valid, leases): (i64, i64, i64) = (row.get(3)?, row.get(4)?, row.get(6)?);
        let output_hash: Option<String> = row.get(5)?;
        let stored: Option<Vec<u8>> = row.get(7)?;
        if state != "verified" {
            found.violation(format!("unit {id} is {state} after every job is done"));
            continue;
        }
        if valid != 1 {
            found.violation(format!("verified unit {id} has {valid} valid results"));
        }
        if result_hash.is_none() || result_hash != output_hash {
            found.violation(format!(
                "unit {id}'s output {result_hash:?} is not its valid result's {output_hash:?}"
            ));
        }
        match stored {
            Some(bytes) if Some(ContentHash::of(&bytes).to_string()) == result_hash => {}
            Some(_) => found.violation(format!("unit {id}'s output blob does not match its hash")),
            None => found.violation(format!("unit {id}'s output blob is missing")),
        }
        if attempts != leases {
            found.violation(format!(
                "unit {id} counts {attempts} attempts but has {leases} rejected proven leases"
            ));
        }
    }
    Ok(())
}

/// Every lease ended: submitted (with its one result), released, or expired after its deadline
/// and its unit leased again only then; a unit's last lease is the one whose result was credited.
fn leases(conn: &Connection, end_ms: i64, found: &mut Findings) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT results.id, results.unit_id, results.public_key,
                leases.unit_id, leases.public_key, leases.state
         FROM results LEFT JOIN leases ON leases.lease_id = results.lease_id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (id, unit_id, public_key): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let lease: Option<(i64, String, String)> = match row.get::<_, Option<i64>>(3)? {
            Some(lease_unit) => Some((lease_unit, row.get(4)?, row.get(5)?)),
            None => None,
        };
        match lease {
            Some((lease_unit, holder, state))
                if lease_unit == unit_id && holder == public_key && state == "submitted" => {}
            other => found.violation(format!(
                "result {id} (unit {unit_id}) does not match its lease: {other:?}"
            )),
        }
    }
    let unmatched: i64 = conn.query_row(
        "SELECT COUNT(*) FROM leases WHERE state = 'submitted'
           AND NOT EXISTS (SELECT 1 FROM results WHERE results.lease_id = leases.lease_id)",
        [],
        |row| row.get(0),
    )?;
    if unmatched > 0 {
        found.violation(format!("{unmatched} submitted leases have no result"));
    }

    // Each unit's leases in the order they were issued (rowid breaks ties within a millisecond).
    let mut stmt = conn.prepare(
        "SELECT unit_id, lease_id, state, issued_at_ms, deadline_ms FROM leases
         ORDER BY unit_id, issued_at_ms, rowid",
    )?;
    let all: Vec<(i64, String, String, i64, i64)> = stmt
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    found.leases = all.len();
    for (i, (unit_id, lease_id, state, _, deadline_ms)) in all.iter().enumerate() {
        let next = all.get(i + 1).filter(|next| next.0 == *unit_id);
        match state.as_str() {
            "expired" => found.leases_expired += 1,
            "released" => found.leases_released += 1,
            _ => {}
        }
        match (state.as_str(), next) {
            ("active", _) => found.violation(format!(
                "lease {lease_id} of unit {unit_id} is still active after every job is done"
            )),
            ("expired", _) if *deadline_ms >= end_ms => found.violation(format!(
                "lease {lease_id} of unit {unit_id} expired before its deadline"
            )),
            ("expired", Some(next)) if next.3 <= *deadline_ms => found.violation(format!(
                "unit {unit_id} was leased again ({}) before lease {lease_id}'s deadline",
                next.1
            )),
            ("submitted", Some(next)) => found.violation(format!(
                "unit {unit_id} was leased again ({}) after lease {lease_id}'s result was accepted",
                next.1
            )),
            ("submitted", None) => {}
            (_, None) => found.violation(format!(
                "unit {unit_id}'s last lease {lease_id} is {state}: it was never reissued"
            )),
            ("expired" | "released" | "rejected", Some(_)) => {}
            (other, _) => found.violation(format!("lease {lease_id} is in state {other}")),
        }
    }
    Ok(())
}

/// What the relay acknowledged is there: every lease it granted, every credit it receipted.
fn acknowledged(conn: &Connection, record: &Record, found: &mut Findings) -> rusqlite::Result<()> {
    for (lease_id, granted) in &record.leases {
        let stored: Option<(i64, String, i64, bool)> = conn
            .query_row(
                "SELECT unit_id, public_key, deadline_ms,
                        EXISTS (SELECT 1 FROM lease_partners WHERE lease_id = ?1)
                 FROM leases WHERE lease_id = ?1",
                [lease_id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?;
        let expected = (
            granted.unit_id,
            granted.public_key.clone(),
            granted.deadline_ms,
            granted.through_partner,
        );
        match stored {
            Some(stored) if stored == expected => {}
            Some(stored) => found.violation(format!(
                "granted lease {lease_id} is stored as {stored:?}, not {expected:?}"
            )),
            None => found.violation(format!("granted lease {lease_id} is lost")),
        }
    }
    for (lease_id, credited) in &record.credited {
        let stored: Option<(i64, String, String, Option<i64>)> = conn
            .query_row(
                "SELECT results.unit_id, results.public_key, results.state, ledger.amount
                 FROM results
                 LEFT JOIN ledger
                        ON ledger.result_id = results.id AND ledger.kind = 'unit_verified'
                 WHERE results.lease_id = ?1",
                [lease_id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?;
        let receipt = &credited.receipt;
        let expected = (
            receipt.unit_id,
            credited.public_key.clone(),
            "valid".to_string(),
            Some(receipt.credited),
        );
        match stored {
            Some(stored) if stored == expected => {}
            Some(stored) => found.violation(format!(
                "acknowledged credit of lease {lease_id} is stored as {stored:?}, not {expected:?}"
            )),
            None => found.violation(format!(
                "acknowledged credit of lease {lease_id} (unit {}) is lost",
                receipt.unit_id
            )),
        }
    }
    let valid_leases: Vec<String> = conn
        .prepare("SELECT lease_id FROM results WHERE state = 'valid'")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    found.credited_unacknowledged = valid_leases
        .iter()
        .filter(|lease_id| !record.credited.contains_key(*lease_id))
        .count();
    Ok(())
}

/// A unit of a job, as the checks need it.
struct Tile {
    row0: usize,
    col0: usize,
    rows: usize,
    cols: usize,
    a_hash: String,
    b_hash: String,
    result_hash: Option<String>,
}

/// Every job is done, and its output is intact: the blob hashes to its name, equals A·B (A and
/// B put back together from the units' input panels, and for acknowledged jobs equal to what
/// the requester sent) within the kernel's tolerance, and holds each unit's output exactly.
fn jobs(
    conn: &Connection,
    store: &BlobStore,
    record: &Record,
    found: &mut Findings,
) -> rusqlite::Result<()> {
    let jobs: Vec<(i64, String, Option<String>)> = conn
        .prepare("SELECT id, state, output_hash FROM jobs ORDER BY id")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<Result<_, _>>()?;
    found.jobs = jobs.len();
    for job_id in record.jobs.keys() {
        if !jobs.iter().any(|(id, _, _)| id == job_id) {
            found.violation(format!("acknowledged job {job_id} is lost"));
        }
    }
    for (job_id, state, output_hash) in jobs {
        if !record.jobs.contains_key(&job_id) {
            found.jobs_unacknowledged += 1;
        }
        if state != "done" {
            found.violation(format!("job {job_id} is {state} at the end"));
            continue;
        }
        let tiles: Vec<Tile> = conn
            .prepare(
                "SELECT row0, col0, m, n, a_hash, b_hash, result_hash FROM units
                 WHERE job_id = ?1 AND canary_of IS NULL",
            )?
            .query_map(params![job_id], |row| {
                Ok(Tile {
                    row0: row.get(0)?,
                    col0: row.get(1)?,
                    rows: row.get(2)?,
                    cols: row.get(3)?,
                    a_hash: row.get(4)?,
                    b_hash: row.get(5)?,
                    result_hash: row.get(6)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let seed = record.jobs.get(&job_id).copied();
        if let Err(why) = job_output_intact(conn, store, &tiles, output_hash, seed) {
            found.violation(format!("job {job_id}: {why}"));
        }
    }
    Ok(())
}

/// A blob's bytes, checked against its name.
fn blob(conn: &Connection, store: &BlobStore, hash: &str) -> Result<Vec<u8>, String> {
    let parsed: ContentHash = hash.parse().map_err(|_| format!("bad hash {hash}"))?;
    let bytes = store
        .get(conn, &parsed)
        .map_err(|e| format!("blob {hash}: {e}"))?
        .ok_or_else(|| format!("blob {hash} is missing"))?;
    if ContentHash::of(&bytes) != parsed {
        return Err(format!("blob {hash} does not hash to its name"));
    }
    Ok(bytes)
}

fn floats(bytes: &[u8]) -> Result<Vec<f32>, String> {
    bytes_to_f32s(bytes).map_err(|e| e.to_string())
}

fn job_output_intact(
    conn: &Connection,
    store: &BlobStore,
    tiles: &[Tile],
    output_hash: Option<String>,
    seed: Option<u64>,
) -> Result<(), String> {
    let MatmulShape { m, n, k } = SHAPE;
    let (m, n, k) = (m as usize, n as usize, k as usize);
    let output_hash = output_hash.ok_or("done without an output")?;
    let output = blob(conn, store, &output_hash)?;
    if output.len() != 4 * m * n {
        return Err(format!(
            "output has {} bytes, not {}",
            output.len(),
            4 * m * n
        ));
    }

    // A and B from the units' panels; every element of C from exactly one unit.
    let (mut a, mut b) = (vec![0f32; m * k], vec![0f32; k * n]);
    let mut covered = vec![0u8; m * n];
    for tile in tiles {
        let a_panel = floats(&blob(conn, store, &tile.a_hash)?)?;
        let b_panel = floats(&blob(conn, store, &tile.b_hash)?)?;
        if a_panel.len() != tile.rows * k || b_panel.len() != k * tile.cols {
            return Err(format!(
                "a unit at ({}, {}) has panels of the wrong size",
                tile.row0, tile.col0
            ));
        }
        a[tile.row0 * k..(tile.row0 + tile.rows) * k].copy_from_slice(&a_panel);
        for l in 0..k {
            let row = &b_panel[l * tile.cols..(l + 1) * tile.cols];
            b[l * n + tile.col0..l * n + tile.col0 + tile.cols].copy_from_slice(row);
        }
        // The unit's own output is exactly its tile of C.
        let result_hash = tile.result_hash.as_deref().ok_or("a unit has no output")?;
        let result = blob(conn, store, result_hash)?;
        for i in 0..tile.rows {
            let start = 4 * ((tile.row0 + i) * n + tile.col0);
            let row = &result[4 * i * tile.cols..4 * (i + 1) * tile.cols];
            if output[start..start + 4 * tile.cols] != *row {
                return Err(format!(
                    "output row {} differs from unit ({}, {})'s result",
                    tile.row0 + i,
                    tile.row0,
                    tile.col0
                ));
            }
            for j in 0..tile.cols {
                covered[(tile.row0 + i) * n + tile.col0 + j] += 1;
            }
        }
    }
    if covered.iter().any(|&c| c != 1) {
        return Err("its units do not cover C exactly once".into());
    }
    if let Some(seed) = seed {
        let (sent_a, sent_b) = glowworm_relay::work::demo::demo_matrices(seed, SHAPE);
        if f32s_to_bytes(&sent_a) != f32s_to_bytes(&a)
            || f32s_to_bytes(&sent_b) != f32s_to_bytes(&b)
        {
            return Err("its inputs are not the ones the requester uploaded".into());
        }
    }
    let expected = f32s_to_bytes(&matmul::reference(&a, &b, SHAPE));
    let tolerance = matmul::replica_tolerance(&a, &b, SHAPE);
    compare::agree(&output, &expected, &tolerance)
        .map_err(|e| format!("output is not A·B within the kernel tolerance: {e}"))
}

/// Every blob in the database's table (the units' outputs) hashes to its name.
fn blob_table(conn: &Connection, found: &mut Findings) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT hash, bytes FROM blobs")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (hash, bytes): (String, Vec<u8>) = (row.get(0)?, row.get(1)?);
        if ContentHash::of(&bytes).to_string() != hash {
            found.violation(format!(
                "blob {hash} in the database does not hash to its name"
            ));
        }
    }
    Ok(())
}

/// Every file in the blob store hashes to its name. Temporary files of writes a crash cut short
/// are counted: the relay removes them when it starts, and every job was done after the last
/// start, so none should be left.
fn blob_files(store: &BlobStore, found: &mut Findings) {
    let Ok(prefixes) = std::fs::read_dir(store.dir()) else {
        found.violation(format!("no blob store at {}", store.dir().display()));
        return;
    };
    for prefix in prefixes.flatten() {
        for file in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().to_string();
            if name.parse::<ContentHash>().is_err() {
                found.temp_files += 1;
                found.violation(format!(
                    "blob file {name} is left from an unfinished write after the last start"
                ));
                continue;
            }
            match std::fs::read(file.path()) {
                Ok(bytes) if ContentHash::of(&bytes).to_string() == name => {}
                Ok(_) => found.violation(format!("blob file {name} does not hash to its name")),
                Err(e) => found.violation(format!("blob file {name}: {e}")),
            }
        }
    }
}
