//! Gas per publishRoot and per claim, by tree size (the proof grows with log2 of the leaves).
//! `cargo test -p glowworm-chain --test gas -- --nocapture` prints the table for 3 and 1,000
//! leaves; with GLOWWORM_GAS_100K=1 also for 100,000 (about 30 s more: the test's tree hashes in
//! an unoptimised build). Measured on anvil 1.7.1 (solc 0.8.37, optimizer 200 runs, cancun):
//!
//! | leaves | proof length | publishRoot epoch 1 | publishRoot later | first claim on the contract | an account's first claim | later claim (delta) |
//! |---|---|---|---|---|---|---|
//! | 3 | 2 | 98129 | 63917 | 111060 | 93221 | 59750 |
//! | 1000 | 10 | 98129 | 63941 | 117130 | 100008 | 65784 |
//! | 100000 | 16 | 98153 | 63941 | 121624 | 104500 | 71075 |

mod common;

use alloy::primitives::{Address, U256, keccak256};
use common::{Chain, Tree};
use glowworm_chain::Published;

struct Row {
    leaves: usize,
    proof_len: usize,
    publish_first: u64,
    publish_later: u64,
    claim_first_ever: u64,
    claim_first_for_account: u64,
    claim_later: u64,
}

async fn measure(leaves: usize) -> Row {
    let chain = Chain::start();
    let token = chain.deploy_token().await;
    let payout = chain.deploy_payout(token).await;
    chain.fund(token, payout, 2, 10_000_000).await;
    let (alice, bob) = (chain.address(3), chain.address(4));
    let others: Vec<(Address, u64)> = (0..leaves as u64 - 2)
        .map(|i| (Address::from_slice(&keccak256(i.to_be_bytes())[12..]), 1))
        .collect();
    let tree_with = |a: u64, b: u64| {
        let mut values = vec![(alice, a), (bob, b)];
        values.extend_from_slice(&others);
        let total = values.iter().map(|(_, n)| n).sum::<u64>();
        (Tree::of(&values), U256::from(total))
    };
    let publisher = chain.publisher(payout);
    let claimer = chain.as_account(payout, 5);
    let publish = |epoch, tree: &Tree, total| {
        let (publisher, root) = (&publisher, tree.root());
        async move {
            match publisher.publish_root(epoch, root, total).await.unwrap() {
                Published::Now(sent) => sent.gas_used,
                Published::Already => panic!("epoch {epoch} already published"),
            }
        }
    };

    let (epoch1, total1) = tree_with(100, 100);
    let publish_first = publish(1, &epoch1, total1).await;
    let proof = epoch1.proof(alice, 100);
    let claim_first_ever = claimer
        .send_claim(alice, U256::from(100), &proof)
        .await
        .unwrap()
        .gas_used;
    let claim_first_for_account = claimer
        .send_claim(bob, U256::from(100), &epoch1.proof(bob, 100))
        .await
        .unwrap()
        .gas_used;
    let (epoch2, total2) = tree_with(150, 100);
    let publish_later = publish(2, &epoch2, total2).await;
    let claim_later = claimer
        .send_claim(alice, U256::from(150), &epoch2.proof(alice, 150))
        .await
        .unwrap()
        .gas_used;
    assert_eq!(chain.balance(token, alice).await, U256::from(150));
    Row {
        leaves,
        proof_len: proof.len(),
        publish_first,
        publish_later,
        claim_first_ever,
        claim_first_for_account,
        claim_later,
    }
}

#[tokio::test]
async fn gas_per_publish_and_claim_by_tree_size() {
    let mut rows = Vec::new();
    let mut sizes = vec![3, 1_000];
    if std::env::var_os("GLOWWORM_GAS_100K").is_some() {
        sizes.push(100_000);
    }
    for leaves in sizes {
        rows.push(measure(leaves).await);
    }
    println!(
        "| leaves | proof length | publishRoot epoch 1 | publishRoot later | first claim on the contract | an account's first claim | later claim (delta) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.leaves,
            r.proof_len,
            r.publish_first,
            r.publish_later,
            r.claim_first_ever,
            r.claim_first_for_account,
            r.claim_later
        );
    }
    // A deeper proof costs more, but claiming stays cheap next to an ERC-20 transfer's scale.
    assert!(rows.iter().all(|r| r.claim_later < 100_000));
}
