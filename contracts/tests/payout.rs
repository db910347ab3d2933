//! The payout contract on a real local chain (anvil from contracts/node_modules): deposits seen
//! after confirmations, roots published in order, claims that pay lifetime earnings minus what was
//! paid, and every way a claim or a publication must fail.
//!
//! `cargo test -p glowworm-chain -- --nocapture` also prints the gas figures.

mod common;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use common::{Chain, Tree, revert};
use glowworm_chain::bindings::GlowwormPayout;
use glowworm_chain::{ContractRevert, Error, Payout, Published, claim_calldata};

/// The fixed vector from @openzeppelin/merkle-tree: the test's tree has OpenZeppelin's shape.
#[test]
fn test_tree_matches_openzeppelin_vector() {
    let tree = Tree::of(&[
        (Address::repeat_byte(0x11), 100),
        (Address::repeat_byte(0x22), 250),
        (Address::repeat_byte(0x33), 7),
    ]);
    assert_eq!(
        tree.root().to_string(),
        "0x80d30dca9859e3c2635ecc7018b5777b85f094a9595a8dbe72421225289e78d7"
    );
}

#[tokio::test]
async fn deposits_publish_and_claims_pay_exactly_the_earnings() {
    let chain = Chain::start();
    let token = chain.deploy_token().await;
    let payout = chain.deploy_payout(token).await;
    let reader = Payout::connect(&chain.rpc(), payout).unwrap();
    assert_eq!(reader.token().await.unwrap(), token);
    assert_eq!(reader.publisher().await.unwrap(), chain.address(1));
    assert_eq!(reader.latest_epoch().await.unwrap(), 0);
    assert_eq!(reader.latest_root().await.unwrap(), B256::ZERO);

    // A requester (account 2) deposits; with 3 confirmations it shows once 2 more blocks exist.
    let start = reader.provider().get_block_number().await.unwrap();
    let deposit_gas = chain.fund(token, payout, 2, 1_000).await;
    let scan = reader.deposits_since(start, 3).await.unwrap();
    assert!(scan.deposits.is_empty(), "seen too early: {scan:?}");
    chain.mine(1).await;
    assert!(
        reader
            .deposits_since(start, 3)
            .await
            .unwrap()
            .deposits
            .is_empty()
    );
    chain.mine(1).await;
    let scan = reader.deposits_since(start, 3).await.unwrap();
    assert_eq!(scan.deposits.len(), 1, "{scan:?}");
    let deposit = scan.deposits[0];
    assert_eq!(deposit.from, chain.address(2));
    assert_eq!(deposit.requester, B256::repeat_byte(2));
    assert_eq!(deposit.amount, U256::from(1_000));
    // Continuing from where the scan stopped finds nothing new.
    let again = reader
        .deposits_since(scan.next_from_block, 3)
        .await
        .unwrap();
    assert!(again.deposits.is_empty());
    assert_eq!(again.next_from_block, scan.next_from_block);
    assert_eq!(reader.total_deposited().await.unwrap(), U256::from(1_000));
    assert_eq!(
        reader.token_balance(payout).await.unwrap(),
        U256::from(1_000)
    );

    // Epoch 1: three contributors.
    let (alice, bob, carol) = (chain.address(3), chain.address(4), chain.address(5));
    let epoch1 = Tree::of(&[(alice, 100), (bob, 250), (carol, 7)]);
    let publisher = chain.publisher(payout);
    let Published::Now(publish1) = publisher
        .publish_root(1, epoch1.root(), U256::from(357))
        .await
        .unwrap()
    else {
        panic!("epoch 1 was not published");
    };
    assert_eq!(reader.latest_epoch().await.unwrap(), 1);
    assert_eq!(reader.latest_root().await.unwrap(), epoch1.root());
    assert_eq!(reader.epoch_root(1).await.unwrap(), epoch1.root());

    // Alice claims for herself: exactly 100.
    let alice_payout = chain.as_account(payout, 3);
    let first_claim = alice_payout
        .send_claim(alice, U256::from(100), &epoch1.proof(alice, 100))
        .await
        .unwrap();
    assert_eq!(chain.balance(token, alice).await, U256::from(100));
    assert_eq!(reader.claimed(alice).await.unwrap(), U256::from(100));

    // Carol's claim is sent by someone else (account 6) from the calldata a native worker
    // prints: the tokens go to Carol, the sender only pays gas.
    let data = claim_calldata(carol, U256::from(7), &epoch1.proof(carol, 7));
    let tx = TransactionRequest::default()
        .with_to(payout)
        .with_input(data);
    let receipt = chain
        .provider(6)
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    assert_eq!(chain.balance(token, carol).await, U256::from(7));
    assert_eq!(chain.balance(token, chain.address(6)).await, U256::ZERO);

    // Epoch 2: Alice earned 60 more, Carol 43 more, Dave joins; Bob never claimed epoch 1.
    let dave = chain.address(7);
    let epoch2 = Tree::of(&[(alice, 160), (bob, 250), (carol, 50), (dave, 40)]);
    let Published::Now(publish2) = publisher
        .publish_root(2, epoch2.root(), U256::from(500))
        .await
        .unwrap()
    else {
        panic!("epoch 2 was not published");
    };

    // Alice's second claim pays only the difference.
    let later_claim = alice_payout
        .send_claim(alice, U256::from(160), &epoch2.proof(alice, 160))
        .await
        .unwrap();
    assert_eq!(chain.balance(token, alice).await, U256::from(160));

    // Claiming again pays nothing: it reverts.
    let repeated = alice_payout
        .send_claim(alice, U256::from(160), &epoch2.proof(alice, 160))
        .await;
    assert!(
        matches!(revert(repeated), ContractRevert::NothingToClaim(_)),
        "repeated claim"
    );

    // A forged amount with a real proof of another amount.
    let forged = alice_payout
        .send_claim(bob, U256::from(300), &epoch2.proof(bob, 250))
        .await;
    assert!(matches!(revert(forged), ContractRevert::InvalidProof(_)));

    // A stale proof: Bob's epoch-1 leaf against epoch 2's root (his amount did not even change).
    let stale = alice_payout
        .send_claim(bob, U256::from(250), &epoch1.proof(bob, 250))
        .await;
    assert!(matches!(revert(stale), ContractRevert::InvalidProof(_)));

    // Bob claims both epochs' earnings at once; Carol gets her 43 more; Dave his 40.
    let bob_first = alice_payout
        .send_claim(bob, U256::from(250), &epoch2.proof(bob, 250))
        .await
        .unwrap();
    alice_payout
        .send_claim(carol, U256::from(50), &epoch2.proof(carol, 50))
        .await
        .unwrap();
    alice_payout
        .send_claim(dave, U256::from(40), &epoch2.proof(dave, 40))
        .await
        .unwrap();
    assert_eq!(chain.balance(token, bob).await, U256::from(250));
    assert_eq!(chain.balance(token, carol).await, U256::from(50));
    assert_eq!(chain.balance(token, dave).await, U256::from(40));
    // Everything in the tree is paid, and the rest of the deposit stays in the contract.
    assert_eq!(reader.total_claimed().await.unwrap(), U256::from(500));
    assert_eq!(chain.balance(token, payout).await, U256::from(500));

    println!("gas: the contract's first deposit {deposit_gas}");
    println!(
        "gas: publishRoot epoch 1 {}, epoch 2 {}",
        publish1.gas_used, publish2.gas_used
    );
    println!(
        "gas: claim (2-long proofs): the contract's first {}, an account's first {}, a later delta {}",
        first_claim.gas_used, bob_first.gas_used, later_claim.gas_used
    );
}

#[tokio::test]
async fn roots_are_published_in_order_by_the_publisher_within_the_deposits() {
    let chain = Chain::start();
    let token = chain.deploy_token().await;
    let payout = chain.deploy_payout(token).await;
    chain.fund(token, payout, 2, 1_000).await;
    let root = |n: u8| B256::repeat_byte(n);
    // The contract itself, without Payout::publish_root's checks in front of it.
    let as_publisher = GlowwormPayout::new(payout, chain.provider(1));
    let publish = |epoch: u64, root: B256, total: u64| {
        let call = as_publisher.publishRoot(epoch, root, U256::from(total));
        async move { call.send().await.map(drop).map_err(Error::from) }
    };

    // Skipping epoch 1.
    let skipped = revert(publish(2, root(1), 10).await);
    assert!(
        matches!(skipped, ContractRevert::EpochOutOfOrder(ref e) if e.expected == 1 && e.given == 2),
        "{skipped:?}"
    );
    assert!(matches!(
        revert(publish(0, root(1), 10).await),
        ContractRevert::EpochOutOfOrder(_)
    ));
    // More than was ever deposited.
    let over = revert(publish(1, root(1), 1_001).await);
    assert!(
        matches!(over, ContractRevert::TotalExceedsDeposits(ref e) if e.total == U256::from(1_001) && e.deposited == U256::from(1_000)),
        "{over:?}"
    );
    assert!(matches!(
        revert(publish(1, B256::ZERO, 10).await),
        ContractRevert::ZeroRoot(_)
    ));
    // Someone other than the publisher (the owner included).
    let as_owner = GlowwormPayout::new(payout, chain.provider(0));
    let stranger = as_owner
        .publishRoot(1, root(1), U256::from(10))
        .send()
        .await
        .map(drop)
        .map_err(Error::from);
    assert!(matches!(revert(stranger), ContractRevert::NotPublisher(_)));

    // The real thing: all of the deposits may be promised.
    let publisher = chain.publisher(payout);
    assert!(matches!(
        publisher
            .publish_root(1, root(1), U256::from(1_000))
            .await
            .unwrap(),
        Published::Now(_)
    ));
    // Repeating epoch 1 on the contract reverts...
    assert!(matches!(
        revert(publish(1, root(1), 1_000).await),
        ContractRevert::EpochOutOfOrder(_)
    ));
    // ...and through Payout a retry with the same root is recognised as already done,
    assert_eq!(
        publisher
            .publish_root(1, root(1), U256::from(1_000))
            .await
            .unwrap(),
        Published::Already
    );
    // a different root for a published epoch is a conflict, a gap is refused before sending.
    assert!(matches!(
        publisher.publish_root(1, root(9), U256::from(1_000)).await,
        Err(Error::EpochConflict { epoch: 1, .. })
    ));
    assert!(matches!(
        publisher.publish_root(3, root(3), U256::from(1_000)).await,
        Err(Error::EpochGap {
            latest: 1,
            requested: 3
        })
    ));
    // Lifetime totals never go down.
    chain.fund(token, payout, 2, 500).await;
    assert!(matches!(
        revert(publish(2, root(2), 999).await),
        ContractRevert::TotalDecreased(_)
    ));
    assert!(matches!(
        publisher
            .publish_root(2, root(2), U256::from(1_500))
            .await
            .unwrap(),
        Published::Now(_)
    ));

    // The owner rotates the publisher; the old key is refused from then on.
    let not_owner = GlowwormPayout::new(payout, chain.provider(1))
        .setPublisher(chain.address(8))
        .send()
        .await
        .map(drop)
        .map_err(Error::from);
    assert!(matches!(
        revert(not_owner),
        ContractRevert::OwnableUnauthorizedAccount(_)
    ));
    as_owner
        .setPublisher(chain.address(8))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(matches!(
        revert(publish(3, root(3), 1_500).await),
        ContractRevert::NotPublisher(_)
    ));
    assert!(matches!(
        chain
            .as_account(payout, 8)
            .publish_root(3, root(3), U256::from(1_500))
            .await
            .unwrap(),
        Published::Now(_)
    ));
    let reader = Payout::connect(&chain.rpc(), payout).unwrap();
    assert_eq!(reader.latest_epoch().await.unwrap(), 3);
    assert_eq!(reader.epoch_root(2).await.unwrap(), root(2));
}

#[tokio::test]
async fn never_pays_more_than_it_holds() {
    let chain = Chain::start();
    let token = chain.deploy_token().await;
    let payout = chain.deploy_payout(token).await;
    chain.fund(token, payout, 2, 400).await;
    let (alice, bob) = (chain.address(3), chain.address(4));
    let claimer = chain.as_account(payout, 3);

    // A lying publisher: leaves worth 600 under a total of 400 (all of the deposits).
    let lie = Tree::of(&[(alice, 300), (bob, 300)]);
    chain
        .publisher(payout)
        .publish_root(1, lie.root(), U256::from(400))
        .await
        .unwrap();
    claimer
        .send_claim(alice, U256::from(300), &lie.proof(alice, 300))
        .await
        .unwrap();
    let too_much = claimer
        .send_claim(bob, U256::from(300), &lie.proof(bob, 300))
        .await;
    assert!(
        matches!(revert(too_much), ContractRevert::ClaimsExceedTotal(ref e) if e.wouldBeClaimed == U256::from(600) && e.total == U256::from(400))
    );
    assert_eq!(chain.balance(token, bob).await, U256::ZERO);
    assert_eq!(chain.balance(token, payout).await, U256::from(100));

    // A token that loses the contract's balance (burned here): a claim within the total but
    // above the balance is refused rather than paid from nowhere.
    let honest = Tree::of(&[(alice, 300), (bob, 100)]);
    chain
        .publisher(payout)
        .publish_root(2, honest.root(), U256::from(400))
        .await
        .unwrap();
    chain
        .token(token, 0)
        .burnFrom(payout, U256::from(50))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let short = claimer
        .send_claim(bob, U256::from(100), &honest.proof(bob, 100))
        .await;
    assert!(
        matches!(revert(short), ContractRevert::InsufficientBalance(ref e) if e.payment == U256::from(100) && e.balance == U256::from(50))
    );
    assert_eq!(chain.balance(token, payout).await, U256::from(50));

    // And before any root there is nothing to claim against.
    let fresh = chain.deploy_payout(token).await;
    let none = chain
        .as_account(fresh, 3)
        .send_claim(alice, U256::from(1), &[])
        .await;
    assert!(matches!(revert(none), ContractRevert::NoRoot(_)));
}

#[test]
fn claim_calldata_is_the_claim_call() {
    use alloy::sol_types::SolCall;
    let proof = [B256::repeat_byte(1), B256::repeat_byte(2)];
    let data = claim_calldata(Address::repeat_byte(7), U256::from(42), &proof);
    assert_eq!(data[..4], GlowwormPayout::claimCall::SELECTOR);
    let call = GlowwormPayout::claimCall::abi_decode(&data).unwrap();
    assert_eq!(call.account, Address::repeat_byte(7));
    assert_eq!(call.cumulativeAmount, U256::from(42));
    assert_eq!(call.proof, proof);
}

/// A relay killed at each step of publishing an epoch, then restarted, calls `publish_root` again
/// with the epoch and root it had recorded: each epoch ends up on chain exactly once.
#[tokio::test]
async fn a_publisher_killed_at_each_step_neither_skips_nor_repeats() {
    let chain = Chain::start();
    let token = chain.deploy_token().await;
    let payout = chain.deploy_payout(token).await;
    chain.fund(token, payout, 2, 1_000).await;
    let reader = Payout::connect(&chain.rpc(), payout).unwrap();
    let root = |n: u8| B256::repeat_byte(n);
    let total = U256::from(100);
    let raw = GlowwormPayout::new(payout, chain.provider(1));
    let set_automine = |on: bool| {
        let provider = chain.provider(0);
        async move {
            let _: serde_json::Value = provider
                .raw_request("evm_setAutomine".into(), (on,))
                .await
                .unwrap();
        }
    };

    // Killed before sending: the retry simply publishes.
    let publisher = chain.publisher(payout);
    assert!(matches!(
        publisher.publish_root(1, root(1), total).await.unwrap(),
        Published::Now(_)
    ));

    // Killed after the transaction was mined, before recording it: the retry sends nothing.
    let _mined = raw
        .publishRoot(2, root(2), total)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(
        publisher.publish_root(2, root(2), total).await.unwrap(),
        Published::Already
    );

    // Killed while the transaction was pending: the retry races it, the contract takes one.
    set_automine(false).await;
    let in_flight = raw.publishRoot(3, root(3), total).send().await.unwrap();
    let in_flight_hash = *in_flight.tx_hash();
    drop(in_flight);
    let retry = tokio::spawn({
        let publisher = chain.publisher(payout);
        async move { publisher.publish_root(3, root(3), total).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let _: serde_json::Value = chain
        .provider(0)
        .raw_request("evm_mine".into(), ())
        .await
        .unwrap();
    set_automine(true).await;
    let retried = retry.await.unwrap();
    let first = reader
        .provider()
        .get_transaction_receipt(in_flight_hash)
        .await
        .unwrap()
        .expect("the first attempt was mined");
    assert!(first.status(), "the first attempt took the epoch");
    println!("a retry while the first attempt was pending: {retried:?}");
    match retried {
        Err(Error::Reverted(ContractRevert::EpochOutOfOrder(_)))
        | Err(Error::TransactionFailed(_)) => {}
        other => panic!("the retry should have lost the race: {other:?}"),
    }
    // The restarted relay asks again and learns the epoch is in.
    assert_eq!(
        publisher.publish_root(3, root(3), total).await.unwrap(),
        Published::Already
    );

    // And the next epoch follows without a gap.
    assert!(matches!(
        publisher.publish_root(4, root(4), total).await.unwrap(),
        Published::Now(_)
    ));
    assert_eq!(reader.latest_epoch().await.unwrap(), 4);
    for epoch in 1..=4u8 {
        assert_eq!(reader.epoch_root(epoch.into()).await.unwrap(), root(epoch));
    }
}
