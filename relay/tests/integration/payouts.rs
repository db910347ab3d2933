//! Epochs and payouts: closing an epoch states every address's lifetime earnings as a Merkle tree
//! (OpenZeppelin's StandardMerkleTree, checked against the JS library in the protocol crate's
//! tests); the tree is served whole so anyone can recompute the root; `GET /v1/payouts/{address}`
//! gives the amount in the latest root with a proof that verifies against it; epochs are
//! numbered without gaps and cannot be changed.

use crate::common::{Contributor, TestRelay, check_schema};
use axum::http::StatusCode;
use glowworm_protocol::merkle::{EarningsTree, node_hex, verify_hex};
use glowworm_protocol::wire::{EpochInfo, EpochList, Payout};
use glowworm_relay::accounts::epochs;

/// Anvil's first two accounts.
const ALICE: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const BOB: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

async fn close(relay: &TestRelay) -> Option<epochs::Epoch> {
    epochs::close(&relay.state.db, 1, relay.clock_now())
        .await
        .unwrap()
}

async fn payout(relay: &TestRelay, address: &str) -> Payout {
    let reply = relay.get(&format!("/v1/payouts/{address}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    check_schema(&reply.json(), "Payout");
    reply.json()
}

/// `who`, linked to `address`, computes one unit; returns what it was credited.
async fn earn_one(relay: &TestRelay, who: &Contributor) -> i64 {
    let reply = who.lease_reply(relay).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let lease: glowworm_protocol::wire::Lease = reply.json();
    who.complete(relay, &lease).await.credited
}

#[tokio::test]
async fn an_epoch_states_each_address_earnings_and_its_proof_verifies_against_the_root() {
    let relay = TestRelay::new();
    assert!(close(&relay).await.is_none(), "nothing earned: no epoch");
    let none = payout(&relay, ALICE).await;
    assert_eq!((none.epoch, none.in_root.as_str()), (None, "0"));

    relay.queue_demo_job().await; // four units
    let (alice, bob, stranger) = (Contributor::new(), Contributor::new(), Contributor::new());
    relay.link(&alice, ALICE).await;
    relay.link(&bob, BOB).await;
    let alice_earned = earn_one(&relay, &alice).await + earn_one(&relay, &alice).await;
    let bob_earned = earn_one(&relay, &bob).await;
    earn_one(&relay, &stranger).await; // an unlinked key: not an address, not in the tree

    let first = close(&relay).await.expect("epoch 1");
    assert_eq!((first.epoch, first.leaves), (1, 2));
    assert_eq!(first.total, alice_earned + bob_earned);
    assert!(
        close(&relay).await.is_none(),
        "nothing new: no second epoch"
    );

    // The whole tree, served as OpenZeppelin's dump: it loads, and has the same root.
    let tree = relay.get("/v1/epochs/1/tree.json").await;
    assert_eq!(tree.status, StatusCode::OK);
    let tree = EarningsTree::from_json(&tree.text()).unwrap();
    assert_eq!(node_hex(&tree.root()), first.root);

    let info: EpochInfo = relay.get("/v1/epochs/1").await.json();
    check_schema(&serde_json::to_value(&info).unwrap(), "EpochInfo");
    assert_eq!(
        (info.root.as_str(), info.total.as_str(), info.leaves),
        (
            first.root.as_str(),
            &*(alice_earned + bob_earned).to_string(),
            2
        )
    );
    relay
        .get("/v1/epochs/2")
        .await
        .assert_error(404, "unknown_epoch");

    // Each address's payout: its amount in the root with a proof that verifies; tampering fails.
    let paid = payout(&relay, &ALICE.to_lowercase()).await;
    assert_eq!(paid.address, ALICE);
    assert_eq!(paid.epoch, Some(1));
    assert_eq!(paid.in_root, alice_earned.to_string());
    assert_eq!(paid.earned, alice_earned.to_string());
    assert_eq!(
        (paid.claimed, paid.claimable, paid.claims_enabled),
        (None, None, false),
        "no chain: nothing to claim yet"
    );
    let root = paid.root.clone().unwrap();
    assert!(verify_hex(&root, ALICE, &paid.in_root, &paid.proof).unwrap());
    let more = (alice_earned + 1).to_string();
    assert!(!verify_hex(&root, ALICE, &more, &paid.proof).unwrap());
    assert!(!verify_hex(&root, BOB, &paid.in_root, &paid.proof).unwrap());
    let outsider = payout(&relay, "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC").await;
    assert_eq!((outsider.in_root.as_str(), outsider.proof.len()), ("0", 0));

    // More work: earnings grow in the ledger at once, in the tree at the next epoch, which
    // states lifetime earnings (not the difference).
    relay.queue_demo_job().await;
    let later = earn_one(&relay, &alice).await;
    let between = payout(&relay, ALICE).await;
    assert_eq!(
        (between.earned, between.in_root),
        ((alice_earned + later).to_string(), alice_earned.to_string())
    );
    let second = close(&relay).await.expect("epoch 2");
    assert_eq!(second.epoch, 2);
    assert!(second.ledger_position > first.ledger_position);
    let now = payout(&relay, ALICE).await;
    assert_eq!(now.in_root, (alice_earned + later).to_string());
    assert!(verify_hex(now.root.as_ref().unwrap(), ALICE, &now.in_root, &now.proof).unwrap());
    assert!(
        !verify_hex(
            now.root.as_ref().unwrap(),
            ALICE,
            &paid.in_root,
            &paid.proof
        )
        .unwrap(),
        "epoch 1's proof is stale against epoch 2's root"
    );
    let list: EpochList = relay.get("/v1/epochs").await.json();
    check_schema(&serde_json::to_value(&list).unwrap(), "EpochList");
    assert_eq!(
        list.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        [2, 1]
    );
}

#[tokio::test]
async fn epochs_cannot_be_changed_removed_or_skipped_and_racing_closes_add_one() {
    let relay = TestRelay::new();
    relay.queue_demo_job().await;
    let alice = Contributor::new();
    relay.link(&alice, ALICE).await;
    earn_one(&relay, &alice).await;

    let (one, two) = tokio::join!(close(&relay), close(&relay));
    assert_eq!(
        [one.is_some(), two.is_some()]
            .iter()
            .filter(|c| **c)
            .count(),
        1,
        "two closers of the same ledger add one epoch"
    );
    assert_eq!(relay.count("SELECT COUNT(*) FROM epochs").await, 1);

    for sql in [
        "UPDATE epochs SET total = total + 1",
        "UPDATE epochs SET root = '0x00'",
        "DELETE FROM epochs",
        "INSERT INTO epochs (epoch, ledger_position, root, total, leaves, tree_hash, closed_at_ms)
         VALUES (0, 1, 'r', 1, 1, 'h', 1)",
    ] {
        let refused = relay
            .state
            .db
            .call(move |conn| Ok(conn.execute(sql, [])?))
            .await;
        assert!(refused.is_err(), "{sql} must be refused");
    }
    // Its publication is recorded once, and then stays.
    relay
        .state
        .db
        .call(|conn| epochs::mark_published(conn, 1, "0xabc", 5))
        .await
        .unwrap();
    let refused = relay
        .state
        .db
        .call(|conn| Ok(conn.execute("UPDATE epochs SET publish_tx = '0xdef'", [])?))
        .await;
    assert!(refused.is_err());
    let info: EpochInfo = relay.get("/v1/epochs/1").await.json();
    assert_eq!(info.publish_tx.as_deref(), Some("0xabc"));
}
