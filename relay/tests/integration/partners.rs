//! Partner widgets: a lease names the partner and the embedding site; when its result is
//! verified, the partner is credited a floored share on top of the contributor's credit, in the
//! same transaction, with the origin; `GET /v1/partners/{address}` shows it by site. Only
//! partners the operator registered (`glowworm-relay partners add`) are paid, on their own sites,
//! and never for work credited to any of their addresses: a stranger with free keys who names
//! itself, a second address or a made-up site earns nothing. Bad attributions are refused before
//! anything is written, and only the allowed sites may frame the widget page.

use crate::common;

use crate::common::{Contributor, TestRelay, check_schema};
use axum::http::StatusCode;
use clap::Parser;
use glowworm_protocol::wire::{AccountInfo, Lease, PartnerInfo};
use glowworm_relay::accounts::partners::{self, Partner};
use glowworm_relay::{ApiError, Config, ServeArgs};
use serde_json::Value;

/// Anvil's first two accounts: one EIP-55 address, one written in lowercase.
const PARTNER: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const OTHER_PARTNER: &str = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8";
const OTHER_PARTNER_EIP55: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

/// A third address (Anvil's third account), never registered here unless a test says so.
const STRANGER: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

/// Registers a partner with `addresses` and `origins`, as `glowworm-relay partners add` does.
async fn register(relay: &TestRelay, addresses: &[&str], origins: &[&str]) -> Partner {
    let addresses: Vec<String> = addresses.iter().map(|s| s.to_string()).collect();
    let origins: Vec<String> = origins.iter().map(|s| s.to_string()).collect();
    let now = relay.clock_now();
    relay
        .state
        .db
        .call(move |conn| {
            partners::register(conn, None, &addresses, &origins, now)
                .map_err(|e| ApiError::Internal(e.to_string()))
        })
        .await
        .unwrap()
}

/// Links `who`'s key to `address` (the evidence is not checked here; the wallet tests check
/// links).
async fn link_to(relay: &TestRelay, who: &Contributor, address: &str) {
    let (key, address) = (who.public_key(), address.to_string());
    relay
        .state
        .db
        .call(move |conn| {
            Ok(conn.execute(
                "INSERT INTO links (public_key, address, chain_id, linked_at_ms, siwe_message,
                                    wallet_signature, session_signature)
                 VALUES (?1, ?2, 1, 0, 'm', 's', 's')",
                [key.as_str(), address.as_str()],
            )?)
        })
        .await
        .unwrap();
}

/// The reply to a lease request through `partner`'s widget on `origin`, signed.
async fn lease_reply(
    relay: &TestRelay,
    who: &Contributor,
    partner: &str,
    origin: &str,
) -> common::Reply {
    who.lease_reply_with(relay, None, Some(partner), Some(origin))
        .await
}

async fn partner_shares(relay: &TestRelay) -> i64 {
    relay
        .count("SELECT COUNT(*) FROM ledger WHERE kind = 'partner_share'")
        .await
}

/// Leases a unit through a partner's widget on `origin`; `Some(lease)` on 200, `None` on 204.
async fn lease_through(
    relay: &TestRelay,
    who: &Contributor,
    partner: &str,
    origin: &str,
) -> Option<Lease> {
    let reply = lease_reply(relay, who, partner, origin).await;
    match reply.status {
        StatusCode::OK => Some(reply.json()),
        StatusCode::NO_CONTENT => None,
        other => panic!(
            "lease through a widget answered {other}: {}",
            String::from_utf8_lossy(&reply.body)
        ),
    }
}

/// Computes and submits `lease`; asserts it is accepted and returns the amount credited.
async fn submit(relay: &TestRelay, who: &Contributor, lease: &Lease) -> i64 {
    who.complete(relay, lease).await.credited
}

async fn partner(relay: &TestRelay, address: &str) -> PartnerInfo {
    let reply = relay.get(&format!("/v1/partners/{address}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    check_schema(&reply.json(), "PartnerInfo");
    reply.json()
}

#[tokio::test]
async fn widget_units_pay_the_partner_a_floored_share_of_the_price_by_site() {
    let relay = TestRelay::new(); // the default share: 1000 bps, 10%
    register(
        &relay,
        &[PARTNER],
        &["https://blog.example", "http://forum.example:8080"],
    )
    .await;
    relay.queue_demo_job().await; // four units: two 64x64x64, two 64x32x64
    let (alice, bob, carol) = (Contributor::new(), Contributor::new(), Contributor::new());

    // Alice computes two units through the widget on a blog (origin given in another case),
    // Bob one on a forum, Carol one on the Glowworm page itself (no partner).
    let a1 = lease_through(&relay, &alice, PARTNER, "https://Blog.Example:443")
        .await
        .unwrap();
    let a2 = lease_through(
        &relay,
        &alice,
        &PARTNER.to_lowercase(),
        "https://blog.example",
    )
    .await
    .unwrap();
    let b1 = lease_through(&relay, &bob, PARTNER, "http://forum.example:8080")
        .await
        .unwrap();
    let c1 = carol.lease(&relay).await.unwrap();
    assert_eq!(
        relay.count("SELECT COUNT(*) FROM lease_partners").await,
        3,
        "only widget leases are attributed"
    );

    // Each unit's price (its FLOP, by default) is split: the partner's floored 10%, the
    // contributor the rest; a unit from the page itself pays the contributor all of it.
    let share = |price: i64| price * 1000 / 10_000;
    let mut credited = Vec::new();
    let mut prices = Vec::new();
    for (who, lease) in [(&alice, &a1), (&alice, &a2), (&bob, &b1), (&carol, &c1)] {
        let amount = submit(&relay, who, lease).await;
        prices.push(lease.flop as i64);
        credited.push(amount);
    }
    for i in 0..3 {
        assert_eq!(credited[i], prices[i] - share(prices[i]));
    }
    assert_eq!(credited[3], prices[3], "no partner, no share");
    assert_eq!(alice.balance(&relay).await, credited[0] + credited[1]);
    assert_eq!(bob.balance(&relay).await, credited[2]);
    assert_eq!(carol.balance(&relay).await, credited[3]);

    let blog = share(prices[0]) + share(prices[1]);
    let forum = share(prices[2]);
    let info = partner(&relay, &PARTNER.to_lowercase()).await;
    assert_eq!(info.address, PARTNER);
    assert_eq!(info.credits, blog + forum);
    assert_eq!((info.contributors, info.units), (2, 3));
    let sites: Vec<_> = info
        .sites
        .iter()
        .map(|s| (s.origin.as_str(), s.credits, s.contributors, s.units))
        .collect();
    let mut expected = vec![
        ("https://blog.example", blog, 1, 2),
        ("http://forum.example:8080", forum, 1, 1),
    ];
    expected.sort_by_key(|s| -s.1);
    assert_eq!(sites, expected);

    // The ledger records each share with its unit, result and origin, once per result.
    let rows: i64 = relay
        .count(
            "SELECT COUNT(*) FROM ledger JOIN lease_partners ON lease_partners.origin = ledger.origin
             JOIN results ON results.id = ledger.result_id AND results.lease_id = lease_partners.lease_id
             WHERE ledger.kind = 'partner_share' AND ledger.unit_id = results.unit_id",
        )
        .await;
    assert_eq!(rows, 3);
    // The partner's account shows the entries too, naming the contributor who earned them.
    let reply = relay.get(&format!("/v1/accounts/{PARTNER}")).await;
    check_schema(&reply.json(), "AccountInfo");
    let account: AccountInfo = reply.json();
    assert_eq!(account.credits, blog + forum);
    assert!(
        account
            .entries
            .iter()
            .all(|e| e.kind == "partner_share" && e.unit_id.is_some())
    );
    assert_eq!(
        account
            .entries
            .iter()
            .filter(|e| e.public_key.as_deref() == Some(&alice.public_key()))
            .count(),
        2
    );

    // An address that was never a partner has zeros; a malformed one is refused.
    let nobody = partner(&relay, OTHER_PARTNER).await;
    assert_eq!(nobody.address, OTHER_PARTNER_EIP55);
    assert_eq!(
        (nobody.credits, nobody.units, nobody.sites.len()),
        (0, 0, 0)
    );
    relay
        .get("/v1/partners/0x1234")
        .await
        .assert_error(400, "bad_address");
    relay
        .get("/v1/partners/0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266")
        .await
        .assert_error(400, "bad_checksum");
}

#[tokio::test]
async fn the_share_rate_is_configured_and_fixed_when_the_lease_is_issued() {
    let relay = TestRelay::with_config(|c| c.partner_share_bps = 2500);
    register(&relay, &[PARTNER], &["https://blog.example"]).await;
    relay.queue_demo_job().await;
    let alice = Contributor::new();
    let lease = lease_through(&relay, &alice, PARTNER, "https://blog.example")
        .await
        .unwrap();
    let credited = submit(&relay, &alice, &lease).await;
    let price = lease.flop as i64;
    assert_eq!(partner(&relay, PARTNER).await.credits, price / 4);
    assert_eq!(credited, price - price / 4);

    // A relay paying no share records the attribution and credits nothing more.
    let relay = TestRelay::with_config(|c| c.partner_share_bps = 0);
    register(&relay, &[PARTNER], &["https://blog.example"]).await;
    relay.queue_demo_job().await;
    let lease = lease_through(&relay, &alice, PARTNER, "https://blog.example")
        .await
        .unwrap();
    let credited = submit(&relay, &alice, &lease).await;
    assert_eq!(relay.count("SELECT COUNT(*) FROM lease_partners").await, 1);
    assert_eq!(
        relay
            .count(
                "SELECT COALESCE(SUM(amount), 0) FROM ledger
                 WHERE kind IN ('unit_verified', 'partner_share')"
            )
            .await,
        credited
    );
    assert_eq!(partner(&relay, PARTNER).await.units, 0);
}

#[tokio::test]
async fn bad_attributions_are_refused_before_anything_is_written() {
    let relay = TestRelay::with_config(|c| {
        c.partner_addresses = vec![PARTNER.to_string(), OTHER_PARTNER.to_string()];
        c.embed_origins = vec![
            "https://blog.example".to_string(),
            "http://127.0.0.2:8080".to_string(),
        ];
    });
    relay.queue_demo_job().await;
    let alice = Contributor::new();
    let before = relay.footprint().await;
    // Each request is signed with the attribution it names, as a widget would send it.
    let signed = |partner: Option<&str>, origin: Option<&str>| {
        serde_json::to_value(alice.lease_request_with(&relay, None, partner, origin)).unwrap()
    };
    let endless = format!("https://{}.example", "a".repeat(300));
    let mut not_a_string = signed(None, Some("https://blog.example"));
    not_a_string["partner"] = 5.into();
    let mut bad_key = signed(Some(PARTNER), Some("https://blog.example"));
    bad_key["public_key"] = "zz".into();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "partner without origin",
            signed(Some(PARTNER), None),
            400,
            "incomplete_attribution",
        ),
        (
            "origin without partner",
            signed(None, Some("https://blog.example")),
            400,
            "incomplete_attribution",
        ),
        (
            "not an address",
            signed(Some("0x1234"), Some("https://blog.example")),
            400,
            "bad_address",
        ),
        (
            "wrong checksum",
            signed(
                Some("0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
                Some("https://blog.example"),
            ),
            400,
            "bad_checksum",
        ),
        (
            "a URL, not an origin",
            signed(Some(PARTNER), Some("https://blog.example/post/1")),
            400,
            "bad_origin",
        ),
        (
            "not http",
            signed(Some(PARTNER), Some("file:///etc")),
            400,
            "bad_origin",
        ),
        (
            "an opaque origin",
            signed(Some(PARTNER), Some("null")),
            400,
            "bad_origin",
        ),
        (
            "an endless origin",
            signed(Some(PARTNER), Some(&endless)),
            400,
            "bad_origin",
        ),
        (
            "partner not a string",
            not_a_string,
            400,
            "malformed_request",
        ),
        (
            "a partner the relay does not accept",
            signed(
                Some("0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc"),
                Some("https://blog.example"),
            ),
            403,
            "partner_not_accepted",
        ),
        (
            "a site that may not embed",
            signed(Some(PARTNER), Some("https://evil.example")),
            403,
            "origin_not_allowed",
        ),
        ("bad key first", bad_key, 400, "bad_public_key"),
    ];
    for (name, body, status, code) in cases {
        let reply = relay.post("/v1/leases", &body).await;
        assert_eq!(reply.status.as_u16(), status, "{name}");
        reply.assert_error(status, code);
        assert_eq!(relay.footprint().await, before, "{name} changes nothing");
    }
    assert_eq!(relay.count("SELECT COUNT(*) FROM lease_partners").await, 0);
    assert_eq!(relay.count("SELECT COUNT(*) FROM leases").await, 0);

    // The listed partners (in any accepted case) and sites are accepted.
    assert!(
        lease_through(&relay, &alice, OTHER_PARTNER_EIP55, "http://127.0.0.2:8080")
            .await
            .is_some()
    );
}

#[tokio::test]
async fn rejected_results_credit_no_partner() {
    let relay = TestRelay::new();
    register(&relay, &[PARTNER], &["https://blog.example"]).await;
    relay.queue_demo_job().await;
    let mallory = Contributor::new();
    let lease = lease_through(&relay, &mallory, PARTNER, "https://blog.example")
        .await
        .unwrap();
    let mut output = mallory.compute(&relay, &lease).await;
    output[3] ^= 0x40; // one value wrong in its exponent
    relay
        .post("/v1/results", &mallory.submission(&lease, &output))
        .await
        .assert_error(422, "verification_failed");
    assert_eq!(
        relay
            .count("SELECT COUNT(*) FROM ledger WHERE kind IN ('unit_verified', 'partner_share')")
            .await,
        0
    );
    assert_eq!(partner(&relay, PARTNER).await.credits, 0);
}

#[tokio::test]
async fn a_partner_earns_no_share_of_its_own_work() {
    let relay = TestRelay::new();
    register(&relay, &[PARTNER], &["https://blog.example"]).await;
    relay.queue_demo_job().await;
    // The partner's own device, linked to its address.
    let owner = Contributor::new();
    link_to(&relay, &owner, PARTNER).await;
    let lease = lease_through(&relay, &owner, PARTNER, "https://blog.example")
        .await
        .unwrap();
    let credited = submit(&relay, &owner, &lease).await;
    let account: AccountInfo = relay.get(&format!("/v1/accounts/{PARTNER}")).await.json();
    assert_eq!(account.credits, credited, "the unit's credit, and no share");
    assert_eq!(partner(&relay, PARTNER).await.units, 0);
}

#[tokio::test]
async fn a_partner_earns_nothing_on_keys_linked_to_any_of_its_addresses() {
    let relay = TestRelay::new();
    // One partner with two addresses; its widget names the first.
    register(
        &relay,
        &[PARTNER, OTHER_PARTNER_EIP55],
        &["https://blog.example"],
    )
    .await;
    relay.queue_demo_job().await;
    let (second_address, visitor) = (Contributor::new(), Contributor::new());
    link_to(&relay, &second_address, OTHER_PARTNER_EIP55).await;
    link_to(&relay, &visitor, STRANGER).await;

    let own = lease_through(&relay, &second_address, PARTNER, "https://blog.example")
        .await
        .unwrap();
    let own_credit = submit(&relay, &second_address, &own).await;
    assert_eq!(partner_shares(&relay).await, 0, "no share of its own work");
    let account: AccountInfo = relay
        .get(&format!("/v1/accounts/{OTHER_PARTNER_EIP55}"))
        .await
        .json();
    assert_eq!(
        account.credits, own_credit,
        "the contributor's credit is whole"
    );

    // A visitor linked to someone else earns the partner its share.
    let theirs = lease_through(&relay, &visitor, PARTNER, "https://blog.example")
        .await
        .unwrap();
    let credited = submit(&relay, &visitor, &theirs).await;
    let info = partner(&relay, PARTNER).await;
    let price = theirs.flop as i64;
    assert_eq!((info.credits, info.units), (price / 10, 1));
    assert_eq!(credited, price - price / 10);
}

#[tokio::test]
async fn strangers_naming_themselves_or_a_made_up_site_earn_nothing() {
    // Nothing registered, the defaults: nobody is a partner.
    let relay = TestRelay::new();
    relay.queue_demo_job().await;
    let before = relay.footprint().await;
    // Twenty free keys, each naming as partner an address of its own (the address it linked,
    // or any other) or a registered partner's address on a made-up site: every lease is
    // refused before anything is written.
    for i in 0..20 {
        let key = Contributor::new();
        if i % 2 == 0 {
            link_to(&relay, &key, STRANGER).await;
        }
        lease_reply(&relay, &key, STRANGER, "https://blog.example")
            .await
            .assert_error(403, "partner_not_accepted");
    }
    assert_eq!(relay.footprint().await, before);

    register(&relay, &[PARTNER], &["https://blog.example"]).await;
    let mallory = Contributor::new();
    for (named, origin, code) in [
        (STRANGER, "https://blog.example", "partner_not_accepted"),
        (PARTNER, "https://mallory.example", "origin_not_allowed"),
        (PARTNER, "http://blog.example", "origin_not_allowed"),
    ] {
        lease_reply(&relay, &mallory, named, origin)
            .await
            .assert_error(403, code);
    }
    assert_eq!(relay.footprint().await, before);
    assert_eq!(relay.count("SELECT COUNT(*) FROM lease_partners").await, 0);

    // Without a partner the same keys contribute as ever, and no share is paid to anyone.
    let lease = mallory.lease(&relay).await.unwrap();
    submit(&relay, &mallory, &lease).await;
    assert_eq!(partner_shares(&relay).await, 0);
}

#[tokio::test]
async fn a_revoked_partner_is_refused_and_its_addresses_stay_its_own() {
    let relay = TestRelay::new();
    let registered = register(&relay, &[PARTNER], &["https://blog.example"]).await;
    assert_eq!(registered.addresses, [PARTNER]);
    relay.queue_demo_job().await;
    let alice = Contributor::new();
    // A lease issued before the partner is revoked still pays its share.
    let lease = lease_through(&relay, &alice, PARTNER, "https://blog.example")
        .await
        .unwrap();
    let now = relay.clock_now();
    relay
        .state
        .db
        .call(move |conn| {
            partners::revoke(conn, PARTNER, now).map_err(|e| ApiError::Internal(e.to_string()))
        })
        .await
        .unwrap();
    lease_reply(&relay, &alice, PARTNER, "https://blog.example")
        .await
        .assert_error(403, "partner_not_accepted");
    submit(&relay, &alice, &lease).await;
    assert_eq!(
        partner(&relay, PARTNER).await.credits,
        lease.flop as i64 / 10
    );

    // Its address cannot be registered again, alone or beside another.
    let refused = relay
        .state
        .db
        .call(move |conn| {
            let addresses = [STRANGER.to_string(), PARTNER.to_string()];
            let origins = ["https://blog.example".to_string()];
            Ok(partners::register(conn, None, &addresses, &origins, now)
                .unwrap_err()
                .to_string())
        })
        .await
        .unwrap();
    assert!(refused.contains("revoked"), "{refused}");
}

#[test]
fn the_operator_commands_register_list_and_revoke_partners() {
    let dir = tempfile::TempDir::new().unwrap();
    let database = dir.path().join("relay.sqlite");
    let relay_cmd = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_glowworm-relay"))
            .args(args)
            .arg("--database")
            .arg(&database)
            .env_remove("GLOWWORM_CONFIG")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, out, err) = relay_cmd(&[
        "partners",
        "add",
        "--name",
        "blog",
        "--address",
        &PARTNER.to_lowercase(),
        "--origin",
        "https://Blog.Example",
        "--origin",
        "http://127.0.0.2:8080",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains(PARTNER),
        "addresses are shown as EIP-55: {out}"
    );
    assert!(
        out.contains("https://blog.example http://127.0.0.2:8080")
            || out.contains("http://127.0.0.2:8080 https://blog.example"),
        "{out}"
    );
    // A second address for the same partner, by naming one it has.
    let (ok, _, err) = relay_cmd(&[
        "partners",
        "add",
        "--address",
        PARTNER,
        "--address",
        OTHER_PARTNER,
        "--origin",
        "https://blog.example",
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = relay_cmd(&[
        "partners",
        "add",
        "--address",
        "0x12",
        "--origin",
        "https://a.example",
    ]);
    assert!(!ok && err.contains("0x12"), "{err}");
    let (ok, _, err) = relay_cmd(&[
        "partners",
        "add",
        "--address",
        STRANGER,
        "--origin",
        "https://a.example/x",
    ]);
    assert!(!ok && err.contains("origin"), "{err}");
    let (ok, out, _) = relay_cmd(&["partners", "list"]);
    assert!(ok);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("blog") && lines[0].contains("active"),
        "{out}"
    );
    assert!(lines[0].contains(OTHER_PARTNER_EIP55), "{out}");

    // The relay on that database pays the partner on its sites, and no more once revoked.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let relay = TestRelay::with_config(|c| c.database = database.clone());
        relay.queue_demo_job().await;
        let alice = Contributor::new();
        assert!(
            lease_through(&relay, &alice, OTHER_PARTNER, "http://127.0.0.2:8080")
                .await
                .is_some()
        );
        lease_reply(&relay, &alice, PARTNER, "https://elsewhere.example")
            .await
            .assert_error(403, "origin_not_allowed");
        let (ok, _, err) = relay_cmd(&["partners", "remove", "blog"]);
        assert!(ok, "{err}");
        lease_reply(&relay, &alice, PARTNER, "https://blog.example")
            .await
            .assert_error(403, "partner_not_accepted");
    });
    let (_, out, _) = relay_cmd(&["partners", "list"]);
    assert!(out.contains("revoked"), "{out}");
    let (ok, _, err) = relay_cmd(&["partners", "revoke", "nobody"]);
    assert!(!ok && err.contains("nobody"), "{err}");
}

#[tokio::test]
async fn only_the_allowed_sites_may_frame_the_widget_and_no_site_the_page() {
    for (embed_origins, widget_policy) in [
        (vec![], "frame-ancestors *"),
        (
            vec!["https://blog.example", "http://127.0.0.2:8080"],
            "frame-ancestors http://127.0.0.2:8080 https://blog.example https://partner.example",
        ),
    ] {
        let relay = TestRelay::with_config(|c| {
            c.embed_origins = embed_origins.iter().map(|s| s.to_string()).collect();
        });
        // A registered partner's sites may frame it too, where the sites are listed; a revoked
        // partner's may not.
        register(&relay, &[PARTNER], &["https://partner.example"]).await;
        register(&relay, &[OTHER_PARTNER], &["https://gone.example"]).await;
        let now = relay.clock_now();
        relay
            .state
            .db
            .call(move |conn| {
                partners::revoke(conn, OTHER_PARTNER_EIP55, now)
                    .map_err(|e| ApiError::Internal(e.to_string()))
            })
            .await
            .unwrap();
        let www = relay.dir.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), "<!doctype html><title>page</title>").unwrap();
        std::fs::write(
            www.join("widget.html"),
            "<!doctype html><title>card</title>",
        )
        .unwrap();

        let widget = relay.get("/widget.html").await;
        assert_eq!(widget.status, StatusCode::OK);
        assert_eq!(widget.headers["content-security-policy"], widget_policy);
        assert!(!widget.headers.contains_key("x-frame-options"));
        for path in ["/", "/index.html", "/no-such-file"] {
            let page = relay.get(path).await;
            assert_eq!(
                page.headers["content-security-policy"],
                "frame-ancestors 'none'"
            );
            assert_eq!(page.headers["x-frame-options"], "DENY", "{path}");
        }
        let api = relay.get("/v1/health").await;
        assert!(!api.headers.contains_key("x-frame-options"));
        assert!(!api.headers.contains_key("content-security-policy"));
    }
}

#[test]
fn partner_settings_come_in_layers_and_are_checked() {
    let args = ServeArgs::try_parse_from([
        "serve",
        "--partner-share-bps",
        "500",
        "--partner-address",
        PARTNER,
        "--embed-origin",
        "https://a.example",
        "--embed-origin",
        "https://b.example",
    ])
    .unwrap();
    let config = Config::load(&args, |_| None).unwrap();
    assert_eq!(config.partner_share_bps, 500);
    assert_eq!(config.partner_addresses, [PARTNER]);
    assert_eq!(
        config.embed_origins,
        ["https://a.example", "https://b.example"]
    );

    let env = |name: &str| match name {
        "GLOWWORM_PARTNER_SHARE_BPS" => Some("250".to_string()),
        "GLOWWORM_PARTNER_ADDRESSES" => Some(format!("{PARTNER}, {OTHER_PARTNER}")),
        "GLOWWORM_EMBED_ORIGINS" => Some("http://127.0.0.2:8080".to_string()),
        _ => None,
    };
    let config = Config::load(&ServeArgs::default(), env).unwrap();
    assert_eq!(config.partner_share_bps, 250);
    assert_eq!(config.partner_addresses, [PARTNER, OTHER_PARTNER]);
    assert_eq!(config.embed_origins, ["http://127.0.0.2:8080"]);
    assert_eq!(Config::default().partner_share_bps, 1000, "10% by default");

    let refused = |adjust: fn(&mut Config)| {
        let mut config = Config::default();
        adjust(&mut config);
        glowworm_relay::accounts::partners::validate_config(&config).unwrap_err()
    };
    assert!(refused(|c| c.partner_share_bps = 10_001).contains("partner_share_bps"));
    assert!(
        refused(|c| {
            c.partner_addresses = vec!["0x12".into()];
            c.embed_origins = vec!["https://a.example".into()];
        })
        .contains("partner address")
    );
    // Partners of the settings are paid only on listed sites.
    assert!(refused(|c| c.partner_addresses = vec![PARTNER.into()]).contains("embed_origins"));
    assert!(
        refused(|c| c.embed_origins = vec!["https://a.example/".into()])
            .contains("\"https://a.example\"")
    );
    assert!(refused(|c| c.embed_origins = vec!["*".into()]).contains("embed origin"));
}
