//! Payouts on a real chain (anvil, from contracts/node_modules): a requester deposits tokens to
//! the payout contract and the relay credits its budget once the deposit has its confirmations
//! (once, however often it scans); contributors compute its job; the relay closes an epoch and
//! publishes its root; each contributor claims and its token balance rises by exactly its
//! earnings; a second epoch pays only the difference; and a relay that stopped after sending a
//! root but before recording it neither skips nor repeats an epoch.

use crate::common::{Contributor, TestRelay};
use crate::money::budget;
use crate::requesters::{job_part, multipart_body, npy_matrix, part, submit};
use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::providers::Provider;
use axum::http::StatusCode;
use glowworm_chain::{Address, B256, Payout, PrivateKeySigner, U256};
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::merkle::parse_node;
use glowworm_protocol::wire::JobStatus;
use glowworm_relay::accounts::epochs;
use glowworm_relay::accounts::payout_chain::{ALREADY_ON_CHAIN, PayoutChain};
use serde_json::json;
use std::sync::Arc;

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    TestToken,
    "../contracts/out/TestToken.json"
);

/// Token units per credit in these tests: a credit is worth 1000 of the token's smallest unit.
const UNITS: u64 = 1000;

struct Chain {
    anvil: AnvilInstance,
    token: Address,
    payout: Address,
}

impl Chain {
    /// Anvil with the test token and a payout contract (account 0 owns it, account 1
    /// publishes).
    async fn start() -> Chain {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        assert!(
            path.exists(),
            "anvil is missing at {}: run `npm ci --ignore-scripts` in contracts/ (cargo xtask \
             test does)",
            path.display()
        );
        let anvil = Anvil::at(path).try_spawn().expect("anvil starts");
        let provider =
            glowworm_chain::signing_provider(&anvil.endpoint(), signer(&anvil, 0)).unwrap();
        let token = *TestToken::deploy(provider).await.unwrap().address();
        let payout = glowworm_chain::deploy(
            &anvil.endpoint(),
            signer(&anvil, 0),
            token,
            anvil.addresses()[1],
        )
        .await
        .unwrap();
        Chain {
            anvil,
            token,
            payout,
        }
    }

    fn address(&self, index: usize) -> Address {
        self.anvil.addresses()[index]
    }

    fn as_account(&self, index: usize) -> Payout {
        Payout::with_signer(
            &self.anvil.endpoint(),
            self.payout,
            signer(&self.anvil, index),
        )
        .unwrap()
    }

    async fn balance(&self, index: usize) -> U256 {
        self.as_account(0)
            .token_balance(self.address(index))
            .await
            .unwrap()
    }

    async fn mine(&self, blocks: u64) {
        let provider =
            glowworm_chain::signing_provider(&self.anvil.endpoint(), signer(&self.anvil, 0))
                .unwrap();
        let _: serde_json::Value = provider
            .raw_request("anvil_mine".into(), (U256::from(blocks),))
            .await
            .unwrap();
    }

    /// Account `index` mints `amount` token units and deposits them for `reference`.
    async fn deposit(&self, index: usize, amount: u64, reference: B256) {
        let provider =
            glowworm_chain::signing_provider(&self.anvil.endpoint(), signer(&self.anvil, index))
                .unwrap();
        TestToken::new(self.token, provider)
            .mint(self.address(index), U256::from(amount))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        self.as_account(index)
            .deposit(U256::from(amount), reference)
            .await
            .unwrap();
    }
}

fn signer(anvil: &AnvilInstance, index: usize) -> PrivateKeySigner {
    PrivateKeySigner::from(anvil.keys()[index].clone())
}

/// A test relay whose settings name `chain` (publisher: account 1's key in a 0600 file).
async fn relay_on(chain: &Chain) -> TestRelay {
    let dir = tempfile::TempDir::new().unwrap();
    let key_file = dir.path().join("publisher.key");
    std::fs::write(&key_file, hex::encode(signer(&chain.anvil, 1).to_bytes())).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (url, contract) = (chain.anvil.endpoint(), chain.payout.to_string());
    let mut relay = TestRelay::with_config(|c| {
        c.chain_rpc_url = Some(url);
        c.payout_contract = Some(contract);
        c.publisher_key_file = Some(key_file);
        c.chain_id = Some(31337);
        c.confirmations = 3;
        c.token_units_per_credit = UNITS;
    });
    let connected = PayoutChain::connect(&relay.state.config)
        .await
        .unwrap()
        .expect("a chain");
    relay.state.payout_chain = Some(Arc::new(connected));
    relay.rebuild_app();
    std::mem::forget(dir);
    relay
}

fn payout_chain(relay: &TestRelay) -> Arc<PayoutChain> {
    relay.state.payout_chain.clone().unwrap()
}

async fn payout(relay: &TestRelay, address: Address) -> glowworm_protocol::wire::Payout {
    let reply = relay.get(&format!("/v1/payouts/{address}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    crate::common::check_schema(&reply.json(), "Payout");
    reply.json()
}

/// `who` (account `index`) claims what `GET /v1/payouts` says, sending it itself.
async fn claim(relay: &TestRelay, chain: &Chain, index: usize) -> U256 {
    let owed = payout(relay, chain.address(index)).await;
    assert!(owed.claims_enabled, "{owed:?}");
    let proof: Vec<B256> = owed
        .proof
        .iter()
        .map(|node| B256::from(parse_node(node).unwrap()))
        .collect();
    let amount: U256 = owed.in_root.parse().unwrap();
    let before = chain.balance(index).await;
    chain
        .as_account(index)
        .send_claim(chain.address(index), amount, &proof)
        .await
        .unwrap();
    chain.balance(index).await - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_fund_jobs_and_contributors_claim_exactly_their_earnings_on_chain() {
    let chain = Chain::start().await;
    let relay = relay_on(&chain).await;
    let key = relay.create_api_key_with_budget("lab", 1000, 0).await;
    let lab = budget(&relay, &key).await;
    assert_eq!(lab.payout_contract, Some(chain.payout.to_checksum(None)));

    // 128 x 32 @ 32 x 128: four tiles of 2·64·64·32 FLOP, one credit per FLOP.
    let price = 4 * 2 * 64 * 64 * 32;
    let deposited = price as u64 * UNITS + 999; // 999 units short of one more credit
    chain
        .deposit(2, deposited, lab.deposit_reference.parse().unwrap())
        .await;
    let scanner = payout_chain(&relay);
    scanner
        .credit_deposits(&relay.state.db, relay.clock_now())
        .await
        .unwrap();
    assert_eq!(
        budget(&relay, &key).await.available,
        0,
        "not credited before its confirmations"
    );
    chain.mine(2).await;
    assert_eq!(
        scanner
            .credit_deposits(&relay.state.db, relay.clock_now())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        scanner
            .credit_deposits(&relay.state.db, relay.clock_now())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        budget(&relay, &key).await.available,
        price,
        "credited once, rounded down to whole credits"
    );
    relay.assert_books_balance().await;

    let a = matmul::sample_matrix(128 * 32, 1);
    let b = matmul::sample_matrix(32 * 128, 2);
    let body = multipart_body(&[
        job_part(json!({"kind": "matmul"})),
        part("a", npy_matrix(128, 32, &a)),
        part("b", npy_matrix(32, 128, &b)),
    ]);
    let reply = submit(&relay, Some(&key), body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    let job: JobStatus = reply.json();
    assert_eq!(job.credits_reserved, price);

    // Accounts 3 and 4 contribute: three tiles and one.
    let (alice, bob) = (Contributor::new(), Contributor::new());
    relay
        .link(&alice, &chain.address(3).to_checksum(None))
        .await;
    relay.link(&bob, &chain.address(4).to_checksum(None)).await;
    let mut earned = [0i64; 2];
    for (i, who) in [&alice, &alice, &alice, &bob].into_iter().enumerate() {
        let lease = who.lease(&relay).await.expect("a tile");
        earned[usize::from(i == 3)] += who.complete(&relay, &lease).await.credited;
    }
    assert_eq!(earned[0] + earned[1], price);

    let first = epochs::close(&relay.state.db, UNITS, relay.clock_now())
        .await
        .unwrap()
        .unwrap();
    let unpublished = payout(&relay, chain.address(3)).await;
    assert_eq!(
        unpublished.epoch, None,
        "claims are checked against published roots only"
    );
    assert_eq!(
        scanner
            .publish_pending(&relay.state.db, relay.clock_now())
            .await
            .unwrap(),
        1
    );
    assert_eq!(chain.as_account(0).latest_epoch().await.unwrap(), 1);
    assert_eq!(
        format!("{}", chain.as_account(0).latest_root().await.unwrap()),
        first.root
    );

    assert_eq!(
        claim(&relay, &chain, 3).await,
        U256::from(earned[0] as u64 * UNITS)
    );
    assert_eq!(
        claim(&relay, &chain, 4).await,
        U256::from(earned[1] as u64 * UNITS)
    );
    let after = payout(&relay, chain.address(3)).await;
    assert_eq!(
        (after.claimed.as_deref(), after.claimable.as_deref()),
        (Some(&*(earned[0] as u64 * UNITS).to_string()), Some("0"))
    );
    assert!(
        chain
            .as_account(3)
            .send_claim(chain.address(3), U256::from(earned[0] as u64 * UNITS), &[])
            .await
            .is_err(),
        "a repeated claim reverts"
    );

    // A second job, all Alice's; the next epoch pays her only the difference.
    chain
        .deposit(
            2,
            (2 * 64 * 64 * 32) as u64 * UNITS,
            lab.deposit_reference.parse().unwrap(),
        )
        .await;
    chain.mine(3).await;
    scanner
        .credit_deposits(&relay.state.db, relay.clock_now())
        .await
        .unwrap();
    let body = multipart_body(&[
        job_part(json!({"kind": "matmul"})),
        part("a", npy_matrix(64, 32, &a[..64 * 32])),
        part("b", npy_matrix(32, 64, &matmul::sample_matrix(32 * 64, 3))),
    ]);
    assert_eq!(
        submit(&relay, Some(&key), body).await.status,
        StatusCode::CREATED
    );
    let lease = alice.lease(&relay).await.unwrap();
    let more = alice.complete(&relay, &lease).await.credited;
    epochs::close(&relay.state.db, UNITS, relay.clock_now())
        .await
        .unwrap()
        .unwrap();
    scanner
        .publish_pending(&relay.state.db, relay.clock_now())
        .await
        .unwrap();
    assert_eq!(
        claim(&relay, &chain, 3).await,
        U256::from(more as u64 * UNITS)
    );
    relay.assert_books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stopped_after_sending_a_root_neither_skips_nor_repeats_an_epoch() {
    let chain = Chain::start().await;
    let relay = relay_on(&chain).await;
    let key = relay.create_api_key_with_budget("lab", 1000, 0).await;
    let reference: B256 = budget(&relay, &key)
        .await
        .deposit_reference
        .parse()
        .unwrap();
    chain.deposit(2, 10_000_000 * UNITS, reference).await;
    chain.mine(3).await;
    let scanner = payout_chain(&relay);
    scanner
        .credit_deposits(&relay.state.db, relay.clock_now())
        .await
        .unwrap();
    let alice = Contributor::new();
    relay
        .link(&alice, &chain.address(3).to_checksum(None))
        .await;

    for epoch in 1..=3u64 {
        let body = multipart_body(&[
            job_part(json!({"kind": "matmul"})),
            part("a", npy_matrix(8, 8, &matmul::sample_matrix(64, epoch))),
            part("b", npy_matrix(8, 8, &matmul::sample_matrix(64, 7))),
        ]);
        assert_eq!(
            submit(&relay, Some(&key), body).await.status,
            StatusCode::CREATED
        );
        let lease = alice.lease(&relay).await.unwrap();
        alice.complete(&relay, &lease).await;
        let closed = epochs::close(&relay.state.db, UNITS, relay.clock_now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(closed.epoch as u64, epoch);
        if epoch == 2 {
            // The relay sent epoch 2's root and stopped before recording it: the chain has it,
            // the database does not.
            let total = U256::from(closed.total as u64) * U256::from(UNITS);
            let root = closed.root.parse().unwrap();
            chain
                .as_account(1)
                .publish_root(2, root, total)
                .await
                .unwrap();
            continue;
        }
        scanner
            .publish_pending(&relay.state.db, relay.clock_now())
            .await
            .unwrap();
    }
    let on_chain = chain.as_account(0);
    assert_eq!(on_chain.latest_epoch().await.unwrap(), 3, "none skipped");
    let recorded = relay
        .state
        .db
        .read(|conn| epochs::list(conn, 10))
        .await
        .unwrap();
    let txs: Vec<_> = recorded
        .iter()
        .rev()
        .map(|e| e.publish_tx.clone())
        .collect();
    assert_eq!(txs[1].as_deref(), Some(ALREADY_ON_CHAIN), "{txs:?}");
    assert!(
        txs.iter().all(|tx| tx.is_some()),
        "every epoch recorded: {txs:?}"
    );
    for epoch in &recorded {
        assert_eq!(
            format!("{}", on_chain.epoch_root(epoch.epoch as u64).await.unwrap()),
            epoch.root,
            "epoch {} on chain is the relay's",
            epoch.epoch
        );
    }
    relay.assert_books_balance().await;
}
