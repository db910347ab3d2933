//! The ledger: double-entry, append-only, in integer credits (the payout token's smallest unit).
//! Every movement of money is an entry here, and this module is the only writer of one.
//!
//! An entry ([`post`]) is a `ledger_entries` row and two or more legs (`ledger` rows) whose
//! amounts sum to zero, so the sum over all accounts is always zero: nothing is credited that
//! was not debited somewhere. A balance is the sum of an account's legs, kept in the `balances`
//! table by a trigger on every append; SQLite triggers refuse every UPDATE and DELETE of a leg.
//! Only a source account may go below zero: every other one is checked after each debit.
//!
//! Accounts:
//! - `source:grants`, `source:deposits`: where money enters (an operator's grant from the
//!   command line; a requester's token deposit to the payout contract). They go negative by
//!   what entered.
//! - `requester:ID` (and `requester:demo` for the demo generator): a requester's budget.
//! - `job:ID`: a job's escrow, what it reserved when it was accepted ([`reserve`]) less what it
//!   has paid ([`pay_result`]); what is left goes back to the budget when it ends ([`release`]).
//! - a contributor's public key (64 lowercase hex characters) or, once it has linked a wallet,
//!   its Ethereum address (EIP-55); a partner's address; `operator`, the operator's fees.
//!
//! The flows, with the kind of each leg:
//! - grant: `grant_out` on `source:grants`, `grant_in` on the budget.
//! - deposit: `deposit_out` on `source:deposits`, `deposit_in` on the budget (a deposit no
//!   requester's reference names goes to `requester:unassigned`).
//! - reserve: `reserve_out` on the budget, `reserve_in` on the job (`UNIQUE(job_id, kind)`: once).
//! - a verified result: `unit_paid` on the payer (the job, or the operator for results beyond
//!   what the job reserved), `unit_verified` to the contributor, `partner_share` and
//!   `operator_fee` (`UNIQUE(result_id, kind)`: a result is paid at most once).
//! - release: `release_out` on the job, `release_in` on the budget (once per job).
//! - a wallet link: `link_out` on the session key, `link_in` on the address (once per link).

use crate::error::ApiError;
use axum::http::StatusCode;
use rusqlite::{Connection, OptionalExtension, params};

/// The ledger kind of a contributor's credit for a verified unit.
pub const UNIT_VERIFIED: &str = "unit_verified";
/// The ledger kind of a partner's share of a unit's price.
pub const PARTNER_SHARE: &str = "partner_share";
/// The ledger kind of the operator's fee from a unit's price.
pub const OPERATOR_FEE: &str = "operator_fee";
/// The ledger kind of the debit that pays for a verified unit.
pub const UNIT_PAID: &str = "unit_paid";
/// The ledger kind of the debit of a session key's own account when it links a wallet.
pub const LINK_OUT: &str = "link_out";
/// The ledger kind of the matching credit of the linked address.
pub const LINK_IN: &str = "link_in";

/// Where an operator's grants come from.
pub const GRANTS: &str = "source:grants";
/// Where requesters' on-chain deposits come from.
pub const DEPOSITS: &str = "source:deposits";
/// The operator's fees (and the payer of results beyond what their job reserved).
pub const OPERATOR: &str = "operator";
/// The budget the demo generator's jobs are paid from.
pub const DEMO_BUDGET: &str = "requester:demo";
/// Single-entry credits of databases from before the double-entry ledger: nobody paid for them.
pub const LEGACY: &str = "source:legacy";

/// One whole in basis points.
pub const BPS_PER_WHOLE: u32 = 10_000;

/// `bps` basis points of `amount`, rounded down (a partner's share, the operator's fee).
pub fn bps_of(amount: i64, bps: u32) -> i64 {
    let part = i128::from(amount) * i128::from(bps) / i128::from(BPS_PER_WHOLE);
    i64::try_from(part).unwrap_or(i64::MAX)
}

/// The budget account of requester `id`.
pub fn requester_account(id: i64) -> String {
    format!("requester:{id}")
}

/// The escrow account of job `id`.
pub fn job_account(id: i64) -> String {
    format!("job:{id}")
}

/// Whether `account` may go below zero (only a source may).
fn may_go_negative(account: &str) -> bool {
    account.starts_with("source:")
}

/// One leg of an entry: an amount on one account, and what it is for.
#[derive(Debug, Clone, Default)]
pub struct Leg {
    pub account: String,
    pub amount: i64,
    pub kind: &'static str,
    pub unit_id: Option<i64>,
    pub result_id: Option<i64>,
    pub job_id: Option<i64>,
    pub link_key: Option<String>,
    pub origin: Option<String>,
}

impl Leg {
    fn new(account: &str, amount: i64, kind: &'static str) -> Leg {
        Leg {
            account: account.to_string(),
            amount,
            kind,
            ..Leg::default()
        }
    }
}

/// Appends one entry of `legs` (legs of amount 0 are left out); returns the entry's id. Refuses
/// (an internal error, which rolls the caller's transaction back) legs that do not sum to zero
/// or that would take an account other than a source below zero: callers check what they can
/// pay first, so either is a bug.
pub fn post(
    conn: &Connection,
    kind: &str,
    memo: Option<&str>,
    legs: &[Leg],
    now_ms: i64,
) -> Result<i64, ApiError> {
    let sum: i128 = legs.iter().map(|leg| leg.amount as i128).sum();
    if sum != 0 {
        return Err(ApiError::Internal(format!(
            "a {kind} entry's legs sum to {sum}, not 0"
        )));
    }
    conn.prepare_cached(
        "INSERT INTO ledger_entries (kind, created_at_ms, memo) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![kind, now_ms, memo])?;
    let entry = conn.last_insert_rowid();
    let mut insert = conn.prepare_cached(
        "INSERT INTO ledger (account, amount, kind, unit_id, result_id, job_id, link_key, origin,
                             entry, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for leg in legs.iter().filter(|leg| leg.amount != 0) {
        insert.execute(params![
            leg.account,
            leg.amount,
            leg.kind,
            leg.unit_id,
            leg.result_id,
            leg.job_id,
            leg.link_key,
            leg.origin,
            entry,
            now_ms
        ])?;
        if leg.amount < 0 && !may_go_negative(&leg.account) {
            let left = balance(conn, &leg.account)?;
            if left < 0 {
                return Err(ApiError::Internal(format!(
                    "a {kind} entry would leave {} at {left}",
                    leg.account
                )));
            }
        }
    }
    Ok(entry)
}

/// Grants `amount` credits to the budget `account` from `source:grants` (an operator's
/// command); `memo` says why. Returns the budget's new balance.
pub fn grant(
    conn: &Connection,
    account: &str,
    amount: i64,
    memo: &str,
    now_ms: i64,
) -> Result<i64, ApiError> {
    if amount <= 0 {
        return Err(ApiError::bad_request(
            "bad_amount",
            "a grant is a positive whole number of credits",
        ));
    }
    post(
        conn,
        "grant",
        Some(memo),
        &[
            Leg::new(GRANTS, -amount, "grant_out"),
            Leg::new(account, amount, "grant_in"),
        ],
        now_ms,
    )?;
    balance(conn, account)
}

/// Credits a requester's on-chain deposit of `amount` credits to its budget `account`, from
/// `source:deposits`; `memo` names the deposit (its transaction and log index).
pub fn deposit(
    conn: &Connection,
    account: &str,
    amount: i64,
    memo: &str,
    now_ms: i64,
) -> Result<(), ApiError> {
    post(
        conn,
        "deposit",
        Some(memo),
        &[
            Leg::new(DEPOSITS, -amount, "deposit_out"),
            Leg::new(account, amount, "deposit_in"),
        ],
        now_ms,
    )?;
    Ok(())
}

/// Reserves `amount` of `budget` for job `job_id`, into the job's escrow. A budget that cannot
/// cover it is refused with 402 `insufficient_budget`.
pub fn reserve(
    conn: &Connection,
    job_id: i64,
    budget: &str,
    amount: i64,
    now_ms: i64,
) -> Result<(), ApiError> {
    let available = balance(conn, budget)?;
    if amount > available {
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_budget",
            format!(
                "this job costs up to {amount} credits and your budget has {available}; \
                 deposit to the payout contract or ask the relay's operator for a grant, or \
                 submit a smaller job"
            ),
        ));
    }
    let escrow = job_account(job_id);
    post(
        conn,
        "reserve",
        None,
        &[
            Leg {
                job_id: Some(job_id),
                ..Leg::new(budget, -amount, "reserve_out")
            },
            Leg {
                job_id: Some(job_id),
                ..Leg::new(&escrow, amount, "reserve_in")
            },
        ],
        now_ms,
    )?;
    Ok(())
}

/// Returns what is left in job `job_id`'s escrow to `budget`, when the job ends (done, failed
/// or cancelled); returns the amount (nothing is written when it is 0).
pub fn release(conn: &Connection, job_id: i64, budget: &str, now_ms: i64) -> Result<i64, ApiError> {
    let escrow = job_account(job_id);
    let left = balance(conn, &escrow)?;
    if left <= 0 {
        return Ok(0);
    }
    post(
        conn,
        "release",
        None,
        &[
            Leg {
                job_id: Some(job_id),
                ..Leg::new(&escrow, -left, "release_out")
            },
            Leg {
                job_id: Some(job_id),
                ..Leg::new(budget, left, "release_in")
            },
        ],
        now_ms,
    )?;
    Ok(left)
}

/// How a verified result's price is split, as [`crate::work::settlement`] decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub result_id: i64,
    pub unit_id: i64,
    /// Who pays: the job's escrow, or the operator.
    pub payer: String,
    /// The contributor's account: its key, or the address it linked.
    pub contributor: String,
    /// What the contributor is credited.
    pub earned: i64,
    /// The partner whose widget computed it, if one is paid.
    pub share: Option<Share>,
    /// The operator's fee.
    pub fee: i64,
}

/// A partner's share of a unit's price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The partner's address.
    pub partner: String,
    /// The site the widget ran on.
    pub origin: String,
    pub unit_id: i64,
    pub amount: i64,
}

/// Pays a verified result: the payer is debited the whole price, the contributor, the partner
/// and the operator credited their parts.
pub fn pay_result(conn: &Connection, payment: &Payment, now_ms: i64) -> Result<(), ApiError> {
    let share_amount = payment.share.as_ref().map_or(0, |share| share.amount);
    let price = payment.earned + share_amount + payment.fee;
    let of_result = |leg: Leg| Leg {
        unit_id: Some(payment.unit_id),
        result_id: Some(payment.result_id),
        ..leg
    };
    let mut legs = vec![
        of_result(Leg::new(&payment.payer, -price, UNIT_PAID)),
        of_result(Leg::new(
            &payment.contributor,
            payment.earned,
            UNIT_VERIFIED,
        )),
        of_result(Leg::new(OPERATOR, payment.fee, OPERATOR_FEE)),
    ];
    if let Some(share) = &payment.share {
        legs.push(of_result(Leg {
            origin: Some(share.origin.clone()),
            ..Leg::new(&share.partner, share.amount, PARTNER_SHARE)
        }));
    }
    post(conn, "unit", None, &legs, now_ms)?;
    Ok(())
}

/// How many results of `unit_id` have been paid.
pub fn results_paid(conn: &Connection, unit_id: i64) -> Result<u32, ApiError> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM ledger INDEXED BY ledger_paid_by_unit
             WHERE unit_id = ?1 AND kind = 'unit_paid'",
        )?
        .query_row([unit_id], |row| row.get(0))?)
}

/// Moves the whole balance of the session key `public_key` to `address`, for the link of that
/// key: `link_out` -X on the key, `link_in` +X on the address. Returns X (nothing is written
/// when it is 0).
pub fn move_for_link(
    conn: &Connection,
    public_key: &str,
    address: &str,
    now_ms: i64,
) -> Result<i64, ApiError> {
    let amount = balance(conn, public_key)?;
    if amount <= 0 {
        return Ok(0);
    }
    let of_link = |leg: Leg| Leg {
        link_key: Some(public_key.to_string()),
        ..leg
    };
    post(
        conn,
        "link",
        None,
        &[
            of_link(Leg::new(public_key, -amount, LINK_OUT)),
            of_link(Leg::new(address, amount, LINK_IN)),
        ],
        now_ms,
    )?;
    Ok(amount)
}

/// The sum of an account's ledger rows (0 for an account with none), as the `balances` table
/// keeps it.
pub fn balance(conn: &Connection, account: &str) -> Result<i64, ApiError> {
    let balance = conn
        .prepare_cached("SELECT amount FROM balances WHERE account = ?1")?
        .query_row([account], |row| row.get(0))
        .optional()?;
    Ok(balance.unwrap_or(0))
}

/// What the books say as a whole, for tests and the operator's `budget audit`: the sum over all
/// legs (0 when they balance), the entries whose legs do not sum to zero (the one
/// `legacy_unfunded` entry balances the single-entry rows of an old database instead), and the
/// accounts other than sources that are below zero.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Audit {
    pub total: i64,
    pub unbalanced_entries: Vec<i64>,
    pub negative_accounts: Vec<(String, i64)>,
    /// Accounts whose `balances` row disagrees with the sum of their legs.
    pub stale_balances: Vec<String>,
}

impl Audit {
    /// Whether the books balance.
    pub fn holds(&self) -> bool {
        self.total == 0
            && self.unbalanced_entries.is_empty()
            && self.negative_accounts.is_empty()
            && self.stale_balances.is_empty()
    }
}

/// Checks the books: every entry sums to zero, so does everything; no account but a source
/// is below zero; `balances` agrees with the legs. Reads the whole ledger.
pub fn audit(conn: &Connection) -> Result<Audit, ApiError> {
    let total: i64 = conn.query_row("SELECT COALESCE(SUM(amount), 0) FROM ledger", [], |row| {
        row.get(0)
    })?;
    let unbalanced_entries = conn
        .prepare(
            "SELECT entry FROM ledger
             WHERE entry IS NOT NULL
               AND entry NOT IN (SELECT id FROM ledger_entries WHERE kind = 'legacy_unfunded')
             GROUP BY entry HAVING SUM(amount) != 0 ORDER BY entry",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    let negative_accounts = conn
        .prepare(
            "SELECT account, amount FROM balances
             WHERE amount < 0 AND account NOT LIKE 'source:%' ORDER BY account",
        )?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<Vec<(String, i64)>, _>>()?;
    let stale_balances = conn
        .prepare(
            "SELECT account FROM (SELECT account, SUM(amount) AS sum FROM ledger GROUP BY account)
                  AS sums LEFT JOIN balances USING (account)
             WHERE balances.amount IS NULL OR balances.amount != sums.sum
             ORDER BY account",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(Audit {
        total,
        unbalanced_entries,
        negative_accounts,
        stale_balances,
    })
}
