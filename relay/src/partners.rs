//! Partner widgets: which partner and site a lease was computed through, the partner's share of
//! the credit, and what `GET /v1/partners/{address}` shows.
//!
//! A page embedding the widget (`www/widget.js`) names a partner, an Ethereum address; the
//! widget's worker sends it, with the embedding site's origin, in every lease request
//! ([`glowworm::wire::LeaseRequest`]). [`attribution`] checks both against the settings before
//! anything is written; [`record_lease`] stores them beside the new lease in `lease_partners`,
//! with the share rate of that moment. When the lease's result is verified and its contributor
//! credited, [`credit_share`] credits the partner in the same transaction: a `partner_share`
//! ledger entry of `floor(credited * share_bps / 10000)` on top of the contributor's credit, with
//! the embedding origin. The contributor's own credit is never reduced. A partner is paid no
//! share of its own work (a contributor whose credits go to the partner's address).
//!
//! The partner and the origin are declared by the contributor's browser: the relay cannot see
//! which page framed the widget. A contributor could name itself as partner to collect the share
//! without any widget; a relay that pays partners for real should accept only the partners it
//! knows (`partner_addresses`) and the sites they registered (`embed_origins`).

use crate::accounts::canonical_address;
use crate::config::Config;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::links;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use glowworm::wire::{LeaseRequest, PartnerInfo, PartnerSite};
use rusqlite::{Connection, OptionalExtension, params};

/// The ledger kind of a partner's share of a verified unit.
pub const PARTNER_SHARE: &str = "partner_share";
/// Basis points in one whole: a share of 10000 bps equals the contributor's credit.
pub const BPS_PER_WHOLE: u32 = 10_000;
/// The longest origin accepted.
const MAX_ORIGIN_LEN: usize = 256;

/// A lease's partner (EIP-55) and embedding origin (canonical, such as "https://blog.example").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub partner: String,
    pub origin: String,
}

/// The share of `credited` at `share_bps`, rounded down; integer arithmetic only.
pub fn share_of(credited: i64, share_bps: u32) -> i64 {
    let share = i128::from(credited) * i128::from(share_bps) / i128::from(BPS_PER_WHOLE);
    i64::try_from(share).unwrap_or(i64::MAX)
}

/// The origin of a web page, as browsers serialize it: `http` or `https`, the host in lowercase
/// (IDNA as punycode), and the port unless it is the scheme's default; nothing else (no path,
/// query, fragment or user). Errors say what is wrong.
pub fn canonical_origin(text: &str) -> Result<String, String> {
    if text.len() > MAX_ORIGIN_LEN {
        return Err(format!("an origin is at most {MAX_ORIGIN_LEN} characters"));
    }
    let url = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not an origin: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: an origin is http:// or https://"));
    }
    let bare = url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && !text.trim_end_matches('/').ends_with(['?', '#'])
        && !text.ends_with("//");
    if !bare || url.host().is_none() {
        return Err(format!(
            "{text:?}: an origin is scheme://host[:port], without path, query or user"
        ));
    }
    // IDNA can make the host longer (punycode): the canonical form must fit too, or the relay
    // would refuse the very origin it stored.
    let canonical = url.origin().ascii_serialization();
    if canonical.len() > MAX_ORIGIN_LEN {
        return Err(format!(
            "{text:?}: its canonical form is {} characters, more than the {MAX_ORIGIN_LEN} accepted",
            canonical.len()
        ));
    }
    Ok(canonical)
}

/// Checks the partner settings; [`Config::validate`] calls it.
pub fn validate_config(config: &Config) -> Result<(), String> {
    if config.partner_share_bps > BPS_PER_WHOLE {
        return Err(format!(
            "partner_share_bps must be at most {BPS_PER_WHOLE} (100%)"
        ));
    }
    for address in &config.partner_addresses {
        glowworm::link::checksum_address(address)
            .map_err(|e| format!("partner address {address:?}: {e}"))?;
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

/// The attribution a lease request carries, checked: both fields or neither, a well-formed
/// address and origin (400), an accepted partner and an allowed site (403).
pub fn attribution(
    config: &Config,
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
    let accepted = config.partner_addresses.is_empty()
        || config
            .partner_addresses
            .iter()
            .any(|a| glowworm::link::checksum_address(a).is_ok_and(|a| a == partner));
    if !accepted {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "partner_not_accepted",
            format!("this relay does not accept {partner} as a partner"),
        ));
    }
    if !config.embed_origins.is_empty() && !config.embed_origins.contains(&origin) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!("{origin} may not embed this relay's widget"),
        ));
    }
    Ok(Some(Attribution { partner, origin }))
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

/// Credits the partner of the lease of the verified result `result_id`, if it has one, its share
/// of the `credited` amount. Run it in the transaction that credits the contributor, right after
/// that credit, so both happen or neither; it reads the lease, unit and key from the result's row,
/// so it needs nothing else from the caller. Nothing is written when the share rounds to 0 or the
/// contributor's credits go to the partner's own address.
pub fn credit_share(
    conn: &Connection,
    result_id: i64,
    credited: i64,
    now_ms: i64,
) -> Result<(), ApiError> {
    let attributed: Option<(String, String, u32, i64, String)> = conn
        .prepare_cached(
            "SELECT lease_partners.partner, lease_partners.origin, lease_partners.share_bps,
                    results.unit_id, results.public_key
             FROM results JOIN lease_partners ON lease_partners.lease_id = results.lease_id
             WHERE results.id = ?1",
        )?
        .query_row([result_id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })
        .optional()?;
    let Some((partner, origin, share_bps, unit_id, public_key)) = attributed else {
        return Ok(());
    };
    let amount = share_of(credited, share_bps);
    if amount <= 0 || links::account_of(conn, &public_key)? == partner {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO ledger (account, amount, kind, unit_id, result_id, created_at_ms, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        partner,
        amount,
        PARTNER_SHARE,
        unit_id,
        result_id,
        now_ms,
        origin
    ])?;
    Ok(())
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

/// `GET /v1/partners/{address}`: 200 for any well-formed address.
pub async fn get_partner(
    State(state): State<AppState>,
    ApiPath(address): ApiPath<String>,
) -> Result<Json<PartnerInfo>, ApiError> {
    let address = canonical_address(&address)?;
    let info = state.db.read(move |conn| info(conn, &address)).await?;
    Ok(Json(info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_floored_basis_points() {
        assert_eq!(share_of(524_288, 1000), 52_428); // 52428.8
        assert_eq!(share_of(9, 1000), 0);
        assert_eq!(share_of(10_000, 1), 1);
        assert_eq!(share_of(i64::MAX, 10_000), i64::MAX);
        assert_eq!(share_of(123, 0), 0);
    }

    #[test]
    fn origins_are_canonical_or_refused() {
        let ok = |text: &str| canonical_origin(text).unwrap();
        assert_eq!(ok("https://Blog.Example"), "https://blog.example");
        assert_eq!(ok("https://blog.example:443"), "https://blog.example");
        assert_eq!(ok("http://127.0.0.2:8080"), "http://127.0.0.2:8080");
        assert_eq!(ok("https://blog.example/"), "https://blog.example");
        for bad in [
            "",
            "blog.example",
            "ftp://blog.example",
            "https://blog.example/page",
            "https://blog.example?x=1",
            "https://blog.example#top",
            "https://user@blog.example",
            "javascript:alert(1)",
            "null",
            "data:text/html,hi",
        ] {
            assert!(canonical_origin(bad).is_err(), "{bad:?} is refused");
        }
        assert!(canonical_origin(&format!("https://{}.example", "a".repeat(300))).is_err());
    }

    #[test]
    fn a_canonical_origin_is_itself_accepted() {
        // Found by the `protocol` fuzz target: 255 characters, but 260 once the host is punycode
        // ("https://xn--aaa…-…"); the relay stored an origin it would refuse.
        let long = format!("https://{}\u{e9}\u{e9}", "a".repeat(243));
        assert!(long.len() <= MAX_ORIGIN_LEN);
        assert!(canonical_origin(&long).is_err());
        let idna = canonical_origin("https://b\u{fc}cher.example").unwrap();
        assert_eq!(idna, "https://xn--bcher-kva.example");
        assert_eq!(canonical_origin(&idna), Ok(idna.clone()));
    }
}
