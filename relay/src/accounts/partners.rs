//! Partner widgets: which partner and site a lease was computed through, the partner's share of
//! the credit, the partners the operator registered, and what `GET /v1/partners/{address}` shows.
//!
//! A page embedding the widget (`www/widget.js`) names a partner, an Ethereum address; the
//! widget's worker sends it, with the embedding site's origin, in every lease request
//! ([`glowworm_protocol::wire::LeaseRequest`]). [`attribution`] checks their form, and
//! [`registered_attribution`] that the partner is registered and the origin is one of its sites,
//! before anything is written; [`record_lease`] stores them beside the new lease in
//! `lease_partners`, with the share rate of that moment. When the lease's result is verified and
//! its contributor credited, [`share_for`] says what [`crate::work::settlement`] credits the partner in the same transaction: a
//! `partner_share` ledger entry of `floor(credited * share_bps / 10000)` on top of the
//! contributor's credit, with the embedding origin. The contributor's own credit is never reduced.
//!
//! The partner and the origin are declared by the contributor's browser: the relay cannot see
//! which page framed the widget. So only partners the operator registered are paid
//! (`glowworm-relay partners add`, [`register`]; or the settings' `partner_addresses`, on the
//! sites of `embed_origins`), only for leases naming one of their sites, and never for work
//! credited to any of their own addresses (a key linked to one of them): a contributor who names
//! itself, a second address of its own or a made-up site earns nothing more. A lease naming a
//! partner or site that is not registered is refused (403), so the widget's owner learns of it
//! at once rather than finding its shares missing.

use crate::accounts::ledger::{self, BPS_PER_WHOLE, Share};
use crate::config::Config;
use crate::error::ApiError;
use crate::ids::canonical_address;
pub use crate::ids::canonical_origin;
use crate::store::Db;
use axum::http::StatusCode;
use glowworm_protocol::wire::{LeaseRequest, PartnerInfo, PartnerSite};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;

/// A lease's partner (EIP-55) and embedding origin (canonical, such as "https://blog.example").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub partner: String,
    pub origin: String,
}

/// Checks the partner settings; [`crate::AppState::open`] calls it, as the relay opens.
pub fn validate_config(config: &Config) -> Result<(), String> {
    if config.partner_share_bps as u64 + config.operator_fee_bps as u64 > BPS_PER_WHOLE as u64 {
        return Err(format!(
            "partner_share_bps and operator_fee_bps together must be at most {BPS_PER_WHOLE} \
             (100% of a unit's price)"
        ));
    }
    for address in &config.partner_addresses {
        glowworm_protocol::link::checksum_address(address)
            .map_err(|e| format!("partner address {address:?}: {e}"))?;
    }
    if !config.partner_addresses.is_empty() && config.embed_origins.is_empty() {
        return Err(
            "partner_addresses are paid only on the sites of embed_origins, and none is listed; \
             list the partners' sites there, or register partners with their sites with \
             `glowworm-relay partners add`"
                .to_string(),
        );
    }
    for origin in &config.embed_origins {
        let canonical = canonical_origin(origin).map_err(|e| format!("embed origin {e}"))?;
        if &canonical != origin {
            return Err(format!(
                "embed origin {origin:?} must be written as browsers send it: {canonical:?}"
            ));
        }
    }
    Ok(())
}

/// The attribution a lease request carries, checked for form: both fields or neither, a
/// well-formed address and origin (400). Whether the relay pays that partner on that site is
/// [`registered_attribution`]'s question.
pub fn attribution(
    _config: &Config,
    request: &LeaseRequest,
) -> Result<Option<Attribution>, ApiError> {
    let (partner, origin) = match (&request.partner, &request.origin) {
        (None, None) => return Ok(None),
        (Some(partner), Some(origin)) => (partner, origin),
        _ => {
            return Err(ApiError::bad_request(
                "incomplete_attribution",
                "a lease request names a partner and the embedding origin together, or neither",
            ));
        }
    };
    let partner = canonical_address(partner)?;
    let origin = canonical_origin(origin).map_err(|e| ApiError::bad_request("bad_origin", e))?;
    Ok(Some(Attribution { partner, origin }))
}

/// The attribution of a lease request, checked for form ([`attribution`]) and against the
/// registered partners ([`check_registered`], on a read connection): 403 `partner_not_accepted`
/// for a partner that is not registered (or was revoked), 403 `origin_not_allowed` for a site
/// that is not one of the partner's.
pub async fn registered_attribution(
    db: &Db,
    config: &Arc<Config>,
    request: &LeaseRequest,
) -> Result<Option<Attribution>, ApiError> {
    let Some(attribution) = attribution(config, request)? else {
        return Ok(None);
    };
    let config = config.clone();
    db.read(move |conn| {
        check_registered(conn, &config, &attribution)?;
        Ok(Some(attribution))
    })
    .await
}

/// Whether `attribution` names a registered partner on one of its sites: a partner of the
/// database (not revoked) and one of its origins, or a partner of `partner_addresses` and one
/// of `embed_origins`.
pub fn check_registered(
    conn: &Connection,
    config: &Config,
    attribution: &Attribution,
) -> Result<(), ApiError> {
    let Attribution { partner, origin } = attribution;
    let not_allowed = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!(
                "{origin} is not one of the sites partner {partner} registered with this relay; \
                 the relay's operator registers them (glowworm-relay partners add --origin)"
            ),
        )
    };
    let in_settings = config
        .partner_addresses
        .iter()
        .any(|a| glowworm_protocol::link::checksum_address(a).is_ok_and(|a| &a == partner));
    if in_settings && config.embed_origins.contains(origin) {
        return Ok(());
    }
    let registered: Option<(Option<i64>, bool)> = conn
        .prepare_cached(
            "SELECT partners.revoked_at_ms,
                    EXISTS (SELECT 1 FROM partner_origins
                            WHERE partner_id = partners.id AND origin = ?2)
             FROM partner_addresses JOIN partners ON partners.id = partner_addresses.partner_id
             WHERE partner_addresses.address = ?1",
        )?
        .query_row(params![partner, origin], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    match registered {
        Some((None, true)) => Ok(()),
        Some((None, false)) => Err(not_allowed()),
        _ if in_settings => Err(not_allowed()),
        Some((Some(_), _)) | None => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "partner_not_accepted",
            format!(
                "{partner} is not a partner registered with this relay, so no lease can name it; \
                 the relay's operator registers partners and their sites (glowworm-relay \
                 partners add), or leave the partner out to contribute without one"
            ),
        )),
    }
}

/// Records that the new lease `lease_id` is computed through `attribution`'s widget, at the share
/// rate `share_bps`. Run it in the transaction that issues the lease.
pub fn record_lease(
    conn: &Connection,
    lease_id: &str,
    attribution: &Attribution,
    share_bps: u32,
) -> Result<(), ApiError> {
    conn.prepare_cached(
        "INSERT INTO lease_partners (lease_id, partner, origin, share_bps) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        lease_id,
        attribution.partner,
        attribution.origin,
        share_bps
    ])?;
    Ok(())
}

/// The share of `credited` (credited to `account`) that the partner whose widget computed
/// result `result_id` earns, if any: the lease named it (`lease_partners`), the share rounds to
/// more than 0, and the contributor's credits do not go to an address of the partner's own (the
/// one the lease named, or any other address registered to the same partner).
pub fn share_for(
    conn: &Connection,
    result_id: i64,
    account: &str,
    credited: i64,
) -> Result<Option<Share>, ApiError> {
    let attributed: Option<(String, String, u32, i64)> = conn
        .prepare_cached(
            "SELECT lease_partners.partner, lease_partners.origin, lease_partners.share_bps,
                    results.unit_id
             FROM results JOIN lease_partners ON lease_partners.lease_id = results.lease_id
             WHERE results.id = ?1",
        )?
        .query_row([result_id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    let Some((partner, origin, share_bps, unit_id)) = attributed else {
        return Ok(None);
    };
    let amount = ledger::bps_of(credited, share_bps);
    if amount <= 0 || account == partner || same_partner(conn, &partner, account)? {
        return Ok(None);
    }
    Ok(Some(Share {
        partner,
        origin,
        unit_id,
        amount,
    }))
}

/// What `address` (EIP-55) earned as a partner; zeros for one that earned nothing.
pub fn info(conn: &Connection, address: &str) -> Result<PartnerInfo, ApiError> {
    // The partial index ledger_by_address serves `account = ?1` with its own condition repeated.
    const FROM: &str = "FROM ledger JOIN results ON results.id = ledger.result_id
         WHERE ledger.account = ?1 AND substr(ledger.account, 1, 2) = '0x'
           AND ledger.kind = 'partner_share'";
    let (credits, contributors, units) = conn.query_row(
        &format!(
            "SELECT COALESCE(SUM(ledger.amount), 0), COUNT(DISTINCT results.public_key),
                    COUNT(DISTINCT ledger.unit_id) {FROM}"
        ),
        [address],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let mut by_site = conn.prepare(&format!(
        "SELECT ledger.origin, SUM(ledger.amount), COUNT(DISTINCT results.public_key),
                COUNT(DISTINCT ledger.unit_id) {FROM}
         GROUP BY ledger.origin ORDER BY 2 DESC, 1"
    ))?;
    let sites = by_site
        .query_map([address], |row| {
            Ok(PartnerSite {
                origin: row.get(0)?,
                credits: row.get(1)?,
                contributors: row.get(2)?,
                units: row.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(PartnerInfo {
        address: address.to_string(),
        credits,
        contributors,
        units,
        sites,
    })
}

/// Whether `a` and `b` are addresses registered to one partner.
fn same_partner(conn: &Connection, a: &str, b: &str) -> Result<bool, ApiError> {
    if !b.starts_with("0x") {
        return Ok(false); // an unlinked key's own account
    }
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM partner_addresses one
                            JOIN partner_addresses other ON other.partner_id = one.partner_id
                            WHERE one.address = ?1 AND other.address = ?2)",
        )?
        .query_row(params![a, b], |row| row.get(0))?)
}

/// A registered partner, as `glowworm-relay partners list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partner {
    pub id: i64,
    pub name: Option<String>,
    /// EIP-55, sorted.
    pub addresses: Vec<String>,
    /// Canonical origins, sorted.
    pub origins: Vec<String>,
    pub registered_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// Why a registry command failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error("no partner with id, name or address {0:?}")]
    Unknown(String),
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
}

/// Registers a partner with its `addresses` (paid when a lease names one of them; the partner
/// earns nothing on work credited to any of them) and the `origins` of its sites. When one of
/// the addresses already belongs to a registered partner, the others and the origins are added to
/// that partner instead (an address of a revoked partner stays that partner's: it is refused).
pub fn register(
    conn: &mut Connection,
    name: Option<&str>,
    addresses: &[String],
    origins: &[String],
    now_ms: i64,
) -> Result<Partner, RegistryError> {
    let invalid = |message: String| RegistryError::Invalid(message);
    if addresses.is_empty() || origins.is_empty() {
        return Err(invalid(
            "a partner needs at least one address (--address) and one site (--origin)".into(),
        ));
    }
    if let Some(name) = name
        && (name.is_empty() || name.len() > 64 || name.chars().any(char::is_control))
    {
        return Err(invalid(format!(
            "name {name:?}: 1 to 64 characters of printable text"
        )));
    }
    let addresses = addresses
        .iter()
        .map(|a| {
            canonical_address(a).map_err(|e| {
                let (_, code) = e.status_and_code();
                invalid(format!("address {a:?} is not an Ethereum address ({code})"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let origins = origins
        .iter()
        .map(|o| canonical_origin(o).map_err(|e| invalid(format!("origin {e}"))))
        .collect::<Result<Vec<_>, _>>()?;

    let tx = conn.transaction()?;
    let mut existing: Option<i64> = None;
    for address in &addresses {
        let owner: Option<(i64, Option<i64>)> = tx
            .query_row(
                "SELECT partners.id, partners.revoked_at_ms FROM partner_addresses
                 JOIN partners ON partners.id = partner_addresses.partner_id
                 WHERE partner_addresses.address = ?1",
                [address],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        match (owner, existing) {
            (None, _) => {}
            (Some((id, Some(_))), _) => {
                return Err(invalid(format!(
                    "{address} belongs to partner {id}, which was revoked; an address stays \
                     with its partner"
                )));
            }
            (Some((id, None)), Some(other)) if id != other => {
                return Err(invalid(format!(
                    "{address} belongs to partner {id}, the other addresses to partner {other}"
                )));
            }
            (Some((id, None)), _) => existing = Some(id),
        }
    }
    let id = match existing {
        Some(id) => {
            if let Some(name) = name {
                tx.execute(
                    "UPDATE partners SET name = ?2 WHERE id = ?1",
                    params![id, name],
                )?;
            }
            id
        }
        None => {
            tx.execute(
                "INSERT INTO partners (name, registered_at_ms) VALUES (?1, ?2)",
                params![name, now_ms],
            )?;
            tx.last_insert_rowid()
        }
    };
    for address in &addresses {
        tx.execute(
            "INSERT OR IGNORE INTO partner_addresses (address, partner_id) VALUES (?1, ?2)",
            params![address, id],
        )?;
    }
    for origin in &origins {
        tx.execute(
            "INSERT OR IGNORE INTO partner_origins (partner_id, origin) VALUES (?1, ?2)",
            params![id, origin],
        )?;
    }
    let partner = load(&tx, id)?;
    tx.commit()?;
    Ok(partner)
}

/// Every registered partner, revoked ones included, by id.
pub fn list(conn: &Connection) -> Result<Vec<Partner>, RegistryError> {
    let ids: Vec<i64> = conn
        .prepare("SELECT id FROM partners ORDER BY id")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    ids.into_iter().map(|id| load(conn, id)).collect()
}

/// Revokes the partner with this id, name or address: leases can no longer name it (shares of
/// leases issued before are still paid). Its addresses stay its own.
pub fn revoke(conn: &Connection, which: &str, now_ms: i64) -> Result<Partner, RegistryError> {
    let address = canonical_address(which).ok();
    let id: Option<i64> = conn
        .query_row(
            "SELECT id FROM partners
             WHERE CAST(id AS TEXT) = ?1 OR name = ?1
                OR id = (SELECT partner_id FROM partner_addresses WHERE address = ?2)
             ORDER BY id LIMIT 1",
            params![which, address],
            |row| row.get(0),
        )
        .optional()?;
    let id = id.ok_or_else(|| RegistryError::Unknown(which.to_string()))?;
    conn.execute(
        "UPDATE partners SET revoked_at_ms = COALESCE(revoked_at_ms, ?2) WHERE id = ?1",
        params![id, now_ms],
    )?;
    load(conn, id)
}

fn load(conn: &Connection, id: i64) -> Result<Partner, RegistryError> {
    let (name, registered_at_ms, revoked_at_ms) = conn.query_row(
        "SELECT name, registered_at_ms, revoked_at_ms FROM partners WHERE id = ?1",
        [id],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    let addresses = conn
        .prepare("SELECT address FROM partner_addresses WHERE partner_id = ?1 ORDER BY address")?
        .query_map([id], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let origins = conn
        .prepare("SELECT origin FROM partner_origins WHERE partner_id = ?1 ORDER BY origin")?
        .query_map([id], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Partner {
        id,
        name,
        addresses,
        origins,
        registered_at_ms,
        revoked_at_ms,
    })
}

/// The sites that may frame the widget when `embed_origins` restricts them: those, and every
/// site of a partner registered and not revoked. Empty means `embed_origins` is empty: any site.
pub fn frame_origins(conn: &Connection, config: &Config) -> Result<Vec<String>, ApiError> {
    if config.embed_origins.is_empty() {
        return Ok(Vec::new());
    }
    let mut origins: Vec<String> = conn
        .prepare_cached(
            "SELECT DISTINCT origin FROM partner_origins
             JOIN partners ON partners.id = partner_origins.partner_id
             WHERE partners.revoked_at_ms IS NULL",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    origins.extend(config.embed_origins.iter().cloned());
    origins.sort();
    origins.dedup();
    Ok(origins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_floored_basis_points() {
        assert_eq!(ledger::bps_of(524_288, 1000), 52_428); // 52428.8
        assert_eq!(ledger::bps_of(9, 1000), 0);
        assert_eq!(ledger::bps_of(10_000, 1), 1);
        assert_eq!(ledger::bps_of(i64::MAX, 10_000), i64::MAX);
        assert_eq!(ledger::bps_of(123, 0), 0);
    }
}
