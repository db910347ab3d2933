//! Wallet links (Sign-In with Ethereum). The messages and wallet signatures come from viem, an
//! implementation independent of the relay's (`fixtures/siwe/make-fixtures.mjs` wrote
//! `fixtures.json`); the session keys are recreated here from their fixed seeds. A link moves
//! the key's anonymous credits to the address and later results are credited there; every
//! refusal has its own code and changes nothing, not even the nonce.

use crate::common::{Contributor, Reply, TestRelay, check_schema};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use glowworm_protocol::signing::{ContributorKey, session_resource};
use glowworm_protocol::wire::{
    AccountInfo, ContributorInfo, LinkReply, LinkRequest, NonceReply, Stats,
};
use glowworm_relay::accounts::nonces;
use glowworm_relay::{Clock, Config};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Deserialize)]
struct Fixtures {
    domain: String,
    chain_id: u64,
    now_unix_ms: i64,
    nonces: HashMap<String, String>,
    wallets: HashMap<String, String>,
    sessions: HashMap<String, String>,
    cases: HashMap<String, Case>,
}

#[derive(Deserialize, Clone)]
struct Case {
    description: String,
    message: String,
    signature: String,
    address: String,
    public_key: String,
    session_seed: String,
    session_signature: String,
    expect: Expect,
    erc1271_calldata: Option<String>,
}

#[derive(Deserialize, Clone)]
struct Expect {
    status: u16,
    code: Option<String>,
}

fn fixtures() -> Fixtures {
    serde_json::from_str(include_str!("../fixtures/siwe/fixtures.json")).unwrap()
}

impl Fixtures {
    fn case(&self, name: &str) -> &Case {
        &self.cases[name]
    }

    fn nonce(&self, name: &str) -> &str {
        &self.nonces[name]
    }
}

impl Case {
    fn session(&self) -> Contributor {
        Contributor::from_seed(&hex::decode(&self.session_seed).unwrap())
    }

    /// What the page posts: the session signature is made here, by this implementation.
    fn request(&self) -> LinkRequest {
        LinkRequest {
            message: self.message.clone(),
            signature: self.signature.clone(),
            public_key: self.public_key.clone(),
            session_signature: self.session().key.sign_link(&self.message),
        }
    }
}

/// A relay at the fixtures' "now", at their domain (its public origin) and for their chain,
/// with `nonces` issued.
async fn relay_with(fx: &Fixtures, nonces: &[&str], adjust: impl FnOnce(&mut Config)) -> TestRelay {
    let origin = format!("https://{}", fx.domain);
    let chain = fx.chain_id;
    let relay = TestRelay::at(fx.now_unix_ms, |c| {
        c.public_origin = Some(origin);
        c.siwe_chain_ids = vec![chain];
        adjust(c);
    });
    for &nonce in nonces {
        issue(&relay, nonce).await;
    }
    relay
}

/// Issues a fixed nonce now, for the usual ten minutes.
async fn issue(relay: &TestRelay, nonce: &str) {
    let (nonce, now) = (nonce.to_string(), relay.clock_now());
    relay
        .state
        .db
        .call(move |conn| nonces::issue_nonce_with_value(conn, &nonce, now, now + 600_000))
        .await
        .unwrap();
}

async fn link(relay: &TestRelay, request: &LinkRequest) -> Reply {
    relay.post("/v1/auth/link", request).await
}

/// Asserts a link succeeded; returns its reply.
fn linked(reply: &Reply) -> LinkReply {
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    check_schema(&reply.json(), "LinkReply");
    reply.json()
}

/// Everything a link could change: links, ledger rows and sums, nonce use, contributors.
async fn link_footprint(relay: &TestRelay) -> [i64; 6] {
    [
        relay.count("SELECT COUNT(*) FROM links").await,
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
            .await,
        relay
            .count("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account LIKE '0x%'")
            .await,
        relay
            .count("SELECT COUNT(*) FROM nonces WHERE used_at_ms IS NOT NULL")
            .await,
        relay.count("SELECT COUNT(*) FROM nonces").await,
        relay.count("SELECT COUNT(*) FROM contributors").await,
    ]
}

async fn account(relay: &TestRelay, address: &str, query: &str) -> AccountInfo {
    let reply = relay.get(&format!("/v1/accounts/{address}{query}")).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    check_schema(&reply.json(), "AccountInfo");
    reply.json()
}

async fn contributor(relay: &TestRelay, public_key: &str) -> ContributorInfo {
    let reply = relay.get(&format!("/v1/contributors/{public_key}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    check_schema(&reply.json(), "ContributorInfo");
    reply.json()
}

#[test]
fn the_fixtures_session_keys_and_signatures_agree_with_this_implementation() {
    let fx = fixtures();
    for (name, seed) in [("a", 1u8), ("b", 2), ("c", 3)] {
        let key = ContributorKey::from_secret_bytes(&[seed; 32]).unwrap();
        assert_eq!(key.public_hex(), fx.sessions[name], "session {name}");
    }
    for (name, case) in &fx.cases {
        let key = case.session().key;
        assert_eq!(key.public_hex(), case.public_key, "{name}");
        // ed25519 is deterministic: Node's signature of LINK_DOMAIN || message is ours too.
        assert_eq!(
            key.sign_link(&case.message),
            case.session_signature,
            "{name}: {}",
            case.description
        );
    }
    let valid = fx.case("valid");
    assert!(
        valid
            .message
            .ends_with(&format!("- {}", session_resource(&valid.public_key)))
    );
}

#[tokio::test]
async fn a_link_moves_anonymous_credits_and_later_results_credit_the_address() {
    let fx = fixtures();
    let relay = relay_with(&fx, &[fx.nonce("a")], |_| {}).await;
    relay.queue_demo_job().await;
    let valid = fx.case("valid");
    let alice = valid.session();
    let wallet = &fx.wallets["wallet_1"];

    let first = alice.earn(&relay).await;
    let earned = first.credited;
    assert_eq!(first.balance, earned, "credited to the key's own account");
    let before = contributor(&relay, &valid.public_key).await;
    assert_eq!(before.linked_address, None);

    let request = valid.request();
    let reply = linked(&link(&relay, &request).await);
    assert_eq!(
        reply,
        LinkReply {
            address: wallet.clone(),
            public_key: valid.public_key.clone(),
            credits_moved: earned,
            balance: earned,
        }
    );

    // Two ledger entries moved the credits, both naming the link; the key's own account is empty.
    let moves = relay
        .state
        .db
        .call(|conn| {
            let mut rows = conn.prepare(
                "SELECT account, amount, kind, link_key FROM ledger
                 WHERE kind IN ('link_out', 'link_in') ORDER BY id",
            )?;
            let rows = rows
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<Vec<(String, i64, String, String)>, _>>()?;
            Ok(rows)
        })
        .await
        .unwrap();
    let key = valid.public_key.clone();
    assert_eq!(
        moves,
        [
            (key.clone(), -earned, "link_out".into(), key.clone()),
            (wallet.clone(), earned, "link_in".into(), key.clone()),
        ]
    );
    // The link keeps its evidence.
    let evidence = relay
        .state
        .db
        .call(|conn| {
            Ok(conn.query_row(
                "SELECT address, chain_id, siwe_message, wallet_signature, session_signature
                 FROM links",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )?)
        })
        .await
        .unwrap();
    assert_eq!(
        evidence,
        (
            wallet.clone(),
            1,
            request.message.clone(),
            request.signature.clone(),
            request.session_signature.clone()
        )
    );
    // The move entries cannot be written twice for the same link.
    let again = relay
        .state
        .db
        .call(|conn| {
            Ok(conn.execute(
                "INSERT INTO ledger (account, amount, kind, link_key, created_at_ms)
                 SELECT account, amount, kind, link_key, created_at_ms FROM ledger
                 WHERE kind = 'link_in'",
                [],
            )?)
        })
        .await;
    assert!(again.is_err(), "UNIQUE(link_key, kind)");
    // Nor can the link be changed.
    let changed = relay
        .state
        .db
        .call(|conn| Ok(conn.execute("UPDATE links SET address = 'someone else'", [])?))
        .await;
    assert!(changed.unwrap_err().to_string().contains("append-only"));

    // From now on, this key's verified results are credited to the address.
    let second = alice.earn(&relay).await;
    assert_eq!(second.balance, earned + second.credited);
    let own = format!(
        "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE account = '{}'",
        valid.public_key
    );
    let own: &'static str = Box::leak(own.into_boxed_str());
    assert_eq!(relay.count(own).await, 0);

    let info = contributor(&relay, &valid.public_key).await;
    assert_eq!(info.linked_address.as_deref(), Some(wallet.as_str()));
    assert_eq!(info.units_verified, 2, "its own units");
    assert_eq!(info.flop_verified, earned + second.credited);
    assert_eq!(
        info.credits,
        earned + second.credited,
        "the address's balance"
    );

    let stats: Stats = relay.get("/v1/stats").await.json();
    assert_eq!(
        stats.credits_issued,
        earned + second.credited,
        "moves net to 0"
    );

    let account = account(&relay, &wallet.to_ascii_lowercase(), "").await;
    assert_eq!(account.address, *wallet, "shown EIP-55 checksummed");
    assert_eq!(account.credits, earned + second.credited);
    assert_eq!(account.units_verified, 2);
    assert_eq!(account.flop_verified, earned + second.credited);
    assert_eq!(account.linked_sessions.len(), 1);
    assert_eq!(account.linked_sessions[0].public_key, valid.public_key);
    assert_eq!(account.linked_sessions[0].chain_id, 1);
    assert_eq!(account.linked_sessions[0].linked_at_unix_ms, fx.now_unix_ms);
    let kinds: Vec<_> = account
        .entries
        .iter()
        .map(|e| (e.kind.as_str(), e.amount, e.public_key.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("unit_verified", second.credited, Some(key.as_str())),
            ("link_in", earned, Some(key.as_str())),
        ]
    );
    assert_eq!(account.entries[0].unit_id, Some(second.unit_id));
    assert_eq!(account.entries[1].unit_id, None);
    assert_eq!(account.next_before, None);

    // The same request again: its nonce is used.
    let replay = link(&relay, &request).await;
    replay.assert_error(409, "nonce_used");
}

/// The fixture cases that use nonce A and must be refused, with what each must be refused as.
const REFUSED_WITH_NONCE_A: &[&str] = &[
    "wrong_domain",
    "wrong_uri",
    "wrong_chain",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "missing_expiration",
    "other_signer",
    "other_session_key",
    "malformed",
];

#[tokio::test]
async fn every_refused_link_changes_nothing_and_leaves_the_nonce_usable() {
    let fx = fixtures();
    let relay = relay_with(&fx, &[fx.nonce("a"), fx.nonce("contract")], |_| {}).await;
    relay.queue_demo_job().await;
    let valid = fx.case("valid");
    let earned = valid.session().earn(&relay).await.credited;
    let footprint = link_footprint(&relay).await;

    let mut refusals: Vec<(String, LinkRequest, u16, &str)> = Vec::new();
    let mut from_fixture = |name: &str| {
        let case = fx.case(name);
        let code = case.expect.code.clone().unwrap();
        let code: &'static str = Box::leak(code.into_boxed_str());
        refusals.push((name.to_string(), case.request(), case.expect.status, code));
    };
    for name in REFUSED_WITH_NONCE_A {
        from_fixture(name);
    }
    from_fixture("unknown_nonce");

    // And requests spoiled here.
    let good = valid.request();
    let spoiled = |name: &str, change: &dyn Fn(&mut LinkRequest), status, code| {
        let mut request = good.clone();
        change(&mut request);
        (name.to_string(), request, status, code)
    };
    let other_key = ContributorKey::from_secret_bytes(&[9; 32]).unwrap();
    let tampered = valid.message.replace("Credit my", "Send all my");
    refusals.extend([
        spoiled(
            "bad key",
            &|r| r.public_key = "zz".repeat(32),
            400,
            "bad_public_key",
        ),
        spoiled(
            "short key",
            &|r| r.public_key.truncate(10),
            400,
            "bad_public_key",
        ),
        spoiled(
            "another session key signed",
            &|r| r.session_signature = other_key.sign_link(&r.message),
            403,
            "bad_session_signature",
        ),
        spoiled(
            "a session signature of something else",
            &|r| r.session_signature = "ab".repeat(64),
            403,
            "bad_session_signature",
        ),
        spoiled(
            "session signature not hex",
            &|r| r.session_signature = "zz".repeat(64),
            400,
            "bad_session_signature_format",
        ),
        spoiled(
            "wallet signature without 0x",
            &|r| r.signature = r.signature[2..].to_string(),
            400,
            "bad_wallet_signature_format",
        ),
        spoiled(
            "wallet signature too short",
            &|r| r.signature.truncate(100),
            400,
            "bad_wallet_signature_format",
        ),
        spoiled(
            "wallet signature not hex",
            &|r| r.signature = format!("0x{}", "zz".repeat(65)),
            400,
            "bad_wallet_signature_format",
        ),
        spoiled(
            "wallet signature of zeros",
            &|r| r.signature = format!("0x{}", "00".repeat(65)),
            403,
            "bad_wallet_signature",
        ),
        spoiled(
            "message changed after the wallet signed it",
            &|r| {
                r.message = tampered.clone();
                r.session_signature = valid.session().key.sign_link(&tampered);
            },
            403,
            "bad_wallet_signature",
        ),
        spoiled(
            "message with a trailing line break",
            &|r| {
                r.message.push('\n');
                r.session_signature = valid.session().key.sign_link(&r.message);
            },
            400,
            "malformed_message",
        ),
        spoiled(
            "message too long",
            &|r| r.message = "x".repeat(5000),
            400,
            "malformed_message",
        ),
    ]);
    // A contract wallet, while the relay has no Ethereum node to ask.
    let contract = fx.case("contract_wallet");
    refusals.push((
        "contract wallet without eth_rpc_url".into(),
        contract.request(),
        403,
        "bad_wallet_signature",
    ));
    let long = fx.case("contract_wallet_long_signature");
    refusals.push((
        "contract wallet's long signature without eth_rpc_url".into(),
        long.request(),
        400,
        "bad_wallet_signature_format",
    ));

    for (name, request, status, code) in &refusals {
        let reply = link(&relay, request).await;
        reply.assert_error(*status, code);
        assert_eq!(
            link_footprint(&relay).await,
            footprint,
            "{name} changed something"
        );
        let message = reply.json::<Value>()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        if *code == "bad_wallet_signature" || name.contains("long signature") {
            assert!(
                message.contains("ERC-1271") && message.contains("eth_rpc_url"),
                "{name}: {message}"
            );
        }
    }
    let missing = relay.post_raw("/v1/auth/link", r#"{"message": "m"}"#).await;
    missing.assert_error(400, "malformed_request");
    let contributor_before = contributor(&relay, &valid.public_key).await;
    assert_eq!(contributor_before.credits, earned);
    assert_eq!(contributor_before.linked_address, None);

    // Nonce A is still usable: the valid link succeeds with it.
    let reply = linked(&link(&relay, &good).await);
    assert_eq!(reply.credits_moved, earned);
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM nonces WHERE used_at_ms IS NOT NULL")
            .await,
        1
    );
    link(&relay, &good).await.assert_error(409, "nonce_used");
}

#[tokio::test]
async fn a_key_links_one_address_and_linking_it_again_is_idempotent() {
    let fx = fixtures();
    let nonce_names = ["a", "b", "relink", "other"];
    let nonces: Vec<&str> = nonce_names.iter().map(|n| fx.nonce(n)).collect();
    let relay = relay_with(&fx, &nonces, |_| {}).await;
    relay.queue_demo_job().await;
    let alice = fx.case("valid").session();
    let earned = alice.earn(&relay).await.credited;
    let wallet = &fx.wallets["wallet_1"];

    let first = linked(&link(&relay, &fx.case("valid").request()).await);
    assert_eq!(first.credits_moved, earned);

    // Another wallet cannot take the key over, and its nonce stays usable.
    let footprint = link_footprint(&relay).await;
    let other = link(&relay, &fx.case("relink_other_address").request()).await;
    other.assert_error(409, "already_linked");
    assert_eq!(link_footprint(&relay).await, footprint);
    assert_eq!(
        contributor(&relay, &first.public_key)
            .await
            .linked_address
            .as_deref(),
        Some(wallet.as_str())
    );

    // The same wallet again: 200, nothing moves, the nonce is used.
    let ledger_rows = relay
        .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
        .await;
    let again = linked(&link(&relay, &fx.case("relink_same_address").request()).await);
    assert_eq!(
        again,
        LinkReply {
            address: wallet.clone(),
            public_key: first.public_key.clone(),
            credits_moved: 0,
            balance: earned,
        }
    );
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
            .await,
        ledger_rows
    );
    assert_eq!(relay.count("SELECT COUNT(*) FROM links").await, 1);
    link(&relay, &fx.case("relink_same_address").request())
        .await
        .assert_error(409, "nonce_used");

    // One address can have several session keys; a message without a statement works too.
    let bob = linked(&link(&relay, &fx.case("valid_no_statement").request()).await);
    assert_eq!(
        (bob.address.as_str(), bob.credits_moved),
        (wallet.as_str(), 0)
    );
    let account = account(&relay, wallet, "").await;
    let mut keys: Vec<_> = account
        .linked_sessions
        .iter()
        .map(|s| s.public_key.clone())
        .collect();
    keys.sort();
    let mut expected = vec![fx.sessions["a"].clone(), fx.sessions["b"].clone()];
    expected.sort();
    assert_eq!(keys, expected);
    // Bob was never seen before linking; now he is known, linked, with no units.
    let bob_info = contributor(&relay, &fx.sessions["b"]).await;
    assert_eq!(bob_info.linked_address.as_deref(), Some(wallet.as_str()));
    assert_eq!(bob_info.units_verified, 0);
}

#[tokio::test]
async fn the_account_endpoint_pages_entries_newest_first() {
    let fx = fixtures();
    let relay = relay_with(&fx, &[fx.nonce("a"), fx.nonce("b")], |_| {}).await;
    relay.queue_demo_job().await;
    let wallet = fx.wallets["wallet_1"].clone();
    let alice = fx.case("valid").session();
    let bob = fx.case("valid_no_statement").session();

    let a1 = alice.earn(&relay).await;
    linked(&link(&relay, &fx.case("valid").request()).await);
    let a2 = alice.earn(&relay).await;
    let a3 = alice.earn(&relay).await;
    let b1 = bob.earn(&relay).await;
    let bob_link = linked(&link(&relay, &fx.case("valid_no_statement").request()).await);
    assert_eq!(bob_link.credits_moved, b1.credited);
    let total = a1.credited + a2.credited + a3.credited + b1.credited;
    assert_eq!(bob_link.balance, total);

    let all = account(&relay, &wallet, "").await;
    assert_eq!(all.credits, total);
    assert_eq!((all.units_verified, all.flop_verified), (4, total));
    let shape: Vec<_> = all
        .entries
        .iter()
        .map(|e| (e.kind.as_str(), e.unit_id))
        .collect();
    assert_eq!(
        shape,
        [
            ("link_in", None),
            ("unit_verified", Some(a3.unit_id)),
            ("unit_verified", Some(a2.unit_id)),
            ("link_in", None),
        ]
    );
    assert!(all.entries.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(all.next_before, None);

    let first = account(&relay, &wallet, "?limit=3").await;
    assert_eq!(first.entries, all.entries[..3]);
    assert_eq!(first.next_before, Some(all.entries[2].id));
    let second = account(
        &relay,
        &wallet,
        &format!("?limit=3&before={}", first.next_before.unwrap()),
    )
    .await;
    assert_eq!(second.entries, all.entries[3..]);
    assert_eq!(second.next_before, None);
    let exact = account(&relay, &wallet, "?limit=4").await;
    assert_eq!((exact.entries.len(), exact.next_before), (4, None));
    assert_eq!(
        account(&relay, &wallet, "?limit=500").await.entries.len(),
        4
    );

    // Any case of a valid address is the same account, shown checksummed.
    let upper = format!("0x{}", wallet[2..].to_ascii_uppercase());
    for form in [wallet.to_ascii_lowercase(), upper] {
        let same = account(&relay, &form, "").await;
        assert_eq!(
            (same.address.as_str(), same.credits),
            (wallet.as_str(), total)
        );
    }
    // An address nothing was credited to: zeros.
    let nobody = account(&relay, &fx.wallets["wallet_2"], "").await;
    assert_eq!(
        nobody,
        AccountInfo {
            address: fx.wallets["wallet_2"].clone(),
            credits: 0,
            units_verified: 0,
            flop_verified: 0,
            pending_credits: 0,
            reputation: Default::default(),
            linked_sessions: vec![],
            entries: vec![],
            next_before: None,
        }
    );

    let mut wrong_case = wallet.clone().into_bytes();
    let flip = wrong_case
        .iter()
        .rposition(|b| b.is_ascii_alphabetic() && *b != b'x')
        .unwrap();
    wrong_case[flip] ^= 0x20;
    let wrong_case = String::from_utf8(wrong_case).unwrap();
    for (path, code) in [
        (format!("/v1/accounts/{}", &wallet[2..]), "bad_address"),
        (format!("/v1/accounts/{}", &wallet[..41]), "bad_address"),
        ("/v1/accounts/0xnothex".to_string(), "bad_address"),
        (format!("/v1/accounts/{wrong_case}"), "bad_checksum"),
        (format!("/v1/accounts/{wallet}?limit=0"), "bad_query"),
        (format!("/v1/accounts/{wallet}?limit=501"), "bad_query"),
        (format!("/v1/accounts/{wallet}?limit=many"), "bad_query"),
        (format!("/v1/accounts/{wallet}?before=x"), "bad_query"),
    ] {
        relay.get(&path).await.assert_error(400, code);
    }
}

#[tokio::test]
async fn nonces_are_random_expire_and_are_limited() {
    let fx = fixtures();
    let relay = relay_with(&fx, &[], |c| {
        c.nonce_seconds = 30;
        c.max_pending_nonces = 2;
    })
    .await;
    let reply = relay.post_raw("/v1/auth/nonce", "").await;
    assert_eq!(reply.status, StatusCode::OK);
    check_schema(&reply.json(), "NonceReply");
    let first: NonceReply = reply.json();
    assert!(first.nonce.len() >= 16, "{}", first.nonce);
    assert!(first.nonce.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(first.expires_unix_ms, relay.clock_now() + 30_000);
    let second: NonceReply = relay.post("/v1/auth/nonce", &json!({})).await.json();
    assert_ne!(first.nonce, second.nonce);

    // No more than max_pending_nonces at once, until some expire.
    let full = relay.post_raw("/v1/auth/nonce", "").await;
    full.assert_error(429, "too_many_nonces");
    assert_eq!(full.headers["retry-after"], "1");
    relay.advance(Duration::from_secs(30));
    assert_eq!(
        relay.post_raw("/v1/auth/nonce", "").await.status,
        StatusCode::OK
    );
    assert_eq!(
        relay.count("SELECT COUNT(*) FROM nonces").await,
        1,
        "expired ones pruned"
    );

    // An expired nonce is unknown, even inside the message's own validity.
    let fresh = relay_with(&fx, &[], |_| {}).await;
    let (nonce, now) = (fx.nonce("a").to_string(), fresh.clock_now());
    fresh
        .state
        .db
        .call(move |conn| nonces::issue_nonce_with_value(conn, &nonce, now, now + 60_000))
        .await
        .unwrap();
    fresh.advance(Duration::from_secs(60));
    let request = fx.case("valid").request();
    link(&fresh, &request)
        .await
        .assert_error(400, "unknown_nonce");
    assert_eq!(link_footprint(&fresh).await[0], 0);

    // The nonce endpoint's default lifetime is ten minutes.
    let defaults = TestRelay::new();
    let nonce: NonceReply = defaults.post_raw("/v1/auth/nonce", "").await.json();
    assert_eq!(nonce.expires_unix_ms, defaults.clock_now() + 600_000);
    assert_eq!(nonce.nonce.len(), nonces::NONCE_LEN);
}

fn link_request_to(host: Option<&str>, request: &LinkRequest) -> Request<Body> {
    let mut builder = Request::post("/v1/auth/link").header("content-type", "application/json");
    if let Some(host) = host {
        builder = builder.header("host", host);
    }
    builder
        .body(Body::from(serde_json::to_vec(request).unwrap()))
        .unwrap()
}

#[tokio::test]
async fn the_domain_is_the_relays_public_origin_never_the_host_a_request_names() {
    let fx = fixtures();
    // The defaults: no public_origin, so the relay signs in for its listen address,
    // 127.0.0.1:8787, whatever the request's Host.
    let relay = relay_with(&fx, &[fx.nonce("a")], |c| c.public_origin = None).await;
    let evil = fx.case("wrong_domain"); // a message for evil.example, signed by wallet 1
    assert!(evil.message.starts_with("evil.example wants you"));
    for host in [None, Some("evil.example")] {
        relay
            .send(link_request_to(host, &evil.request()))
            .await
            .assert_error(400, "wrong_domain");
    }
    let valid = fx.case("valid").request();
    for host in [None, Some("relay.glowworm.test"), Some("evil.example")] {
        relay
            .send(link_request_to(host, &valid))
            .await
            .assert_error(400, "wrong_domain");
    }
    assert_eq!(link_footprint(&relay).await[0], 0);

    // With the public origin set, the Host does not matter either: its own domain links, and a
    // message for another site does not, even sent with that site as Host.
    let public = relay_with(&fx, &[fx.nonce("a")], |_| {}).await;
    public
        .send(link_request_to(Some("evil.example"), &evil.request()))
        .await
        .assert_error(400, "wrong_domain");
    let reply = public
        .send(link_request_to(Some("evil.example"), &valid))
        .await;
    assert_eq!(linked(&reply).address, fx.wallets["wallet_1"]);

    // The URI must be on the public origin, scheme included.
    let plain = relay_with(&fx, &[fx.nonce("a")], |c| {
        c.public_origin = Some("http://relay.glowworm.test".into())
    })
    .await;
    plain
        .send(link_request_to(None, &valid))
        .await
        .assert_error(400, "wrong_uri");

    // siwe_domain, from older configurations, still names the domain (http or https URIs).
    let pinned = relay_with(&fx, &[fx.nonce("a")], |c| {
        c.public_origin = None;
        c.siwe_domain = Some("Relay.Glowworm.Test".into());
    })
    .await;
    let reply = pinned
        .send(link_request_to(Some("evil.example"), &valid))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[test]
fn the_public_origin_defaults_to_the_listen_address_and_is_checked() {
    let config = Config::default();
    assert_eq!(config.public_origin(), "http://127.0.0.1:8787");
    assert_eq!(config.siwe_domain(), "127.0.0.1:8787");
    let config = Config {
        listen: "[::1]:80".parse().unwrap(),
        ..Config::default()
    };
    assert_eq!(config.public_origin(), "http://[::1]");
    assert_eq!(config.siwe_domain(), "[::1]");
    let config = Config {
        public_origin: Some("https://glowworm.example".into()),
        ..Config::default()
    };
    assert_eq!(config.siwe_domain(), "glowworm.example");
    for bad in [
        "glowworm.example",
        "https://glowworm.example/",
        "https://Glowworm.example",
    ] {
        let config = Config {
            public_origin: Some(bad.into()),
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("public_origin"), "{bad}: {error}");
    }
}

fn nonce_request_from(peer: &str, forwarded: Option<&str>) -> Request<Body> {
    let mut builder = Request::post("/v1/auth/nonce").extension(axum::extract::ConnectInfo(
        peer.parse::<std::net::SocketAddr>().unwrap(),
    ));
    if let Some(forwarded) = forwarded {
        builder = builder.header("x-forwarded-for", forwarded);
    }
    builder.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn one_address_cannot_take_every_nonce() {
    let relay = TestRelay::with_config(|c| {
        c.max_nonces_per_address = 3;
        c.nonce_seconds = 60;
    });
    // One client takes its three, then is refused, however it names itself in headers it is
    // not trusted to set; IPv6 addresses count by their /64.
    for (first, second) in [
        ("203.0.113.7:5000", "203.0.113.7:6000"),
        ("[2001:db8:1:2::1]:5000", "[2001:db8:1:2:ffff::9]:5000"),
    ] {
        for i in 0..3 {
            let peer = if i % 2 == 0 { first } else { second };
            let forged = format!("198.51.100.{i}");
            let reply = relay.send(nonce_request_from(peer, Some(&forged))).await;
            assert_eq!(reply.status, StatusCode::OK, "nonce {i} for {peer}");
        }
        let refused = relay
            .send(nonce_request_from(second, Some("198.51.100.99")))
            .await;
        refused.assert_error(429, "too_many_nonces");
        assert!(refused.headers.contains_key("retry-after"));
        let body: Value = refused.json();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("expires in 60 s"), "{message}");
    }
    // Everyone else still gets nonces: the next address, the next /64.
    for other in ["203.0.113.8:5000", "[2001:db8:1:3::1]:5000"] {
        let reply = relay.send(nonce_request_from(other, None)).await;
        assert_eq!(reply.status, StatusCode::OK, "{other}");
    }
    // Once its nonces expire the first address gets new ones.
    relay.advance(Duration::from_secs(60));
    let reply = relay
        .send(nonce_request_from("203.0.113.7:5000", None))
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    // Behind a trusted proxy the address is the forwarded one.
    let proxied = TestRelay::with_config(|c| {
        c.max_nonces_per_address = 1;
        c.trust_forwarded_for = true;
    });
    let reply = proxied
        .send(nonce_request_from("127.0.0.1:5000", Some("203.0.113.7")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    proxied
        .send(nonce_request_from("127.0.0.1:5000", Some("203.0.113.7")))
        .await
        .assert_error(429, "too_many_nonces");
    let reply = proxied
        .send(nonce_request_from("127.0.0.1:5000", Some("203.0.113.8")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// A fake Ethereum node: answers eth_chainId with `chain`, and eth_call with the ERC-1271 magic
/// value when the call is exactly one of `accepted` (to, data) and `accept` is on.
struct FakeNode {
    url: String,
    accept: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

async fn fake_node(chain: &str, accepted: Vec<(String, String)>) -> FakeNode {
    use axum::Json;
    use axum::routing::post;
    let accept = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(AtomicUsize::new(0));
    let chain = chain.to_string();
    let (accept_in, calls_in) = (accept.clone(), calls.clone());
    let app = axum::Router::new().route(
        "/rpc/secret-key",
        post(move |Json(request): Json<Value>| {
            let (chain, accepted) = (chain.clone(), accepted.clone());
            let (accept, calls) = (accept_in.clone(), calls_in.clone());
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                assert_eq!(request["jsonrpc"], "2.0");
                let result = match request["method"].as_str().unwrap() {
                    "eth_chainId" => json!(chain),
                    "eth_call" => {
                        let call = &request["params"][0];
                        assert_eq!(request["params"][1], "latest");
                        let to = call["to"].as_str().unwrap().to_ascii_lowercase();
                        let data = call["data"].as_str().unwrap().to_ascii_lowercase();
                        let known = accepted.iter().any(|(t, d)| *t == to && *d == data);
                        if known && accept.load(Ordering::SeqCst) {
                            json!(format!("0x1626ba7e{}", "00".repeat(28)))
                        } else if known {
                            json!(format!("0x{}", "00".repeat(32)))
                        } else {
                            // No contract there: an empty result.
                            json!("0x")
                        }
                    }
                    other => panic!("unexpected JSON-RPC method {other}"),
                };
                Json(json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeNode {
        url: format!("http://{address}/rpc/secret-key"),
        accept,
        calls,
    }
}

#[tokio::test]
async fn contract_wallets_are_checked_with_erc1271_through_the_configured_node() {
    let fx = fixtures();
    let contract = fx.case("contract_wallet");
    let long = fx.case("contract_wallet_long_signature");
    let accepted: Vec<(String, String)> = [contract, long]
        .iter()
        .map(|c| {
            (
                c.address.to_ascii_lowercase(),
                c.erc1271_calldata.clone().unwrap(),
            )
        })
        .collect();
    let node = fake_node("0x1", accepted.clone()).await;
    let url = node.url.clone();
    let relay = relay_with(&fx, &[fx.nonce("contract"), fx.nonce("a")], |c| {
        c.eth_rpc_url = Some(url)
    })
    .await;

    // The wallet refuses: 403, nothing changes.
    node.accept.store(false, Ordering::SeqCst);
    let footprint = link_footprint(&relay).await;
    let refused = link(&relay, &contract.request()).await;
    refused.assert_error(403, "bad_wallet_signature");
    assert_eq!(link_footprint(&relay).await, footprint);
    // An EOA's wrong signature: recovery fails and the address has no contract.
    link(&relay, &fx.case("other_signer").request())
        .await
        .assert_error(403, "bad_wallet_signature");

    // The wallet accepts: linked to the contract's address. The calldata matched viem's
    // encoding of isValidSignature(hashMessage(message), signature) exactly.
    node.accept.store(true, Ordering::SeqCst);
    let reply = linked(&link(&relay, &contract.request()).await);
    assert_eq!(reply.address, fx.wallets["contract"]);

    // An ordinary wallet never reaches the node.
    let calls = node.calls.load(Ordering::SeqCst);
    let other = relay_with(&fx, &[fx.nonce("a")], |c| {
        c.eth_rpc_url = Some(node.url.clone())
    })
    .await;
    linked(&link(&other, &fx.case("valid").request()).await);
    assert_eq!(node.calls.load(Ordering::SeqCst), calls);

    // A signature longer than 65 bytes, as multi-owner wallets make.
    let multi = relay_with(&fx, &[fx.nonce("contract")], |c| {
        c.eth_rpc_url = Some(node.url.clone())
    })
    .await;
    let reply = linked(&link(&multi, &long.request()).await);
    assert_eq!(reply.address, fx.wallets["contract"]);

    // A node on another chain is not asked about this chain's contract.
    let mainnet_only = fake_node("0x5", accepted).await;
    let elsewhere = relay_with(&fx, &[fx.nonce("contract")], |c| {
        c.eth_rpc_url = Some(mainnet_only.url.clone())
    })
    .await;
    let reply = link(&elsewhere, &contract.request()).await;
    reply.assert_error(403, "bad_wallet_signature");
    let message = reply.json::<Value>()["error"]["message"].to_string();
    assert!(message.contains("chain 5"), "{message}");

    // A node that cannot be reached: 502, nothing changes, and its URL is not shown.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/rpc/secret-key", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = relay_with(&fx, &[fx.nonce("contract")], |c| {
        c.eth_rpc_url = Some(dead_url)
    })
    .await;
    let footprint = link_footprint(&unreachable).await;
    let reply = link(&unreachable, &contract.request()).await;
    reply.assert_error(502, "rpc_failed");
    assert!(!String::from_utf8_lossy(&reply.body).contains("secret-key"));
    assert_eq!(link_footprint(&unreachable).await, footprint);
}

#[tokio::test]
async fn a_wallet_links_over_real_http() {
    let fx = fixtures();
    let relay = relay_with(&fx, &[fx.nonce("a")], |_| {}).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = relay.app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();

    let nonce = http
        .post(format!("{base}/v1/auth/nonce"))
        .send()
        .await
        .unwrap();
    assert_eq!(nonce.status(), StatusCode::OK);
    let nonce: NonceReply = nonce.json().await.unwrap();
    assert_eq!(nonce.nonce.len(), nonces::NONCE_LEN);

    let valid = fx.case("valid");
    let reply = http
        .post(format!("{base}/v1/auth/link"))
        .json(&valid.request())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let reply: LinkReply = reply.json().await.unwrap();
    assert_eq!(reply.address, fx.wallets["wallet_1"]);
    assert_eq!(reply.credits_moved, 0);

    let again = http
        .post(format!("{base}/v1/auth/link"))
        .json(&valid.request())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let error: Value = again.json().await.unwrap();
    assert_eq!(error["error"]["code"], "nonce_used");

    let account: AccountInfo = http
        .get(format!(
            "{base}/v1/accounts/{}",
            reply.address.to_ascii_lowercase()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account.linked_sessions[0].public_key, valid.public_key);
    let info: ContributorInfo = http
        .get(format!("{base}/v1/contributors/{}", valid.public_key))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info.linked_address, Some(reply.address));
    assert_eq!(relay.clock.now_ms(), fx.now_unix_ms);
}
