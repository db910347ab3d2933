//! `glowworm-worker claim`: against a relay without a chain it says claims are off; against a
//! relay on a real chain (anvil) it prints the claim for a wallet to sign, and sends it with a key
//! file, after which the linked address holds exactly its earnings in tokens.

mod common;

use alloy::node_bindings::Anvil;
use alloy::signers::local::PrivateKeySigner;
use common::{start_relay, start_relay_with};
use glowworm_chain::{Payout, U256};
use glowworm_protocol::signing::ContributorKey;
use glowworm_worker::client::RelayClient;
use glowworm_worker::gpu_thread::GpuThread;
use glowworm_worker::runner::{self, RunOptions, StopSignal};
use std::path::Path;
use std::process::Command;

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    TestToken,
    "../contracts/out/TestToken.json"
);

/// `glowworm-worker claim` with `args`, run on a thread of its own (it blocks on its runtime).
async fn worker_claim(relay: &str, args: Vec<String>) -> std::process::Output {
    let relay = relay.to_string();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_glowworm-worker"))
            .args(["--relay", &relay, "claim"])
            .args(args)
            .env(
                "GLOWWORM_WORKER_KEY",
                std::env::temp_dir().join("claim-test-worker.key"),
            )
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_chain_claims_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _state) = start_relay(&dir).await;
    let out = worker_claim(
        &url,
        vec![
            "--address".into(),
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("claims are off"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_claims_its_earnings_on_chain() {
    let anvil_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        anvil_path.exists(),
        "anvil is missing: run `npm ci --ignore-scripts` in contracts/ (cargo xtask test does)"
    );
    let anvil = Anvil::at(anvil_path).try_spawn().unwrap();
    let rpc = anvil.endpoint();
    let signer = |i: usize| PrivateKeySigner::from(anvil.keys()[i].clone());
    let owner = glowworm_chain::signing_provider(&rpc, signer(0)).unwrap();
    let token = *TestToken::deploy(owner.clone()).await.unwrap().address();
    let contract = glowworm_chain::deploy(&rpc, signer(0), token, anvil.addresses()[1])
        .await
        .unwrap();
    // The contract must hold what it will pay: a deposit (with no requester of this relay).
    TestToken::new(
        token,
        glowworm_chain::signing_provider(&rpc, signer(2)).unwrap(),
    )
    .mint(anvil.addresses()[2], U256::from(10u64.pow(12)))
    .send()
    .await
    .unwrap()
    .get_receipt()
    .await
    .unwrap();
    Payout::with_signer(&rpc, contract, signer(2))
        .unwrap()
        .deposit(U256::from(10u64.pow(12)), Default::default())
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let publisher_key = dir.path().join("publisher.key");
    private_file(&publisher_key, &hex::encode(signer(1).to_bytes()));
    let (rpc_url, contract_text) = (rpc.clone(), contract.to_string());
    let (url, state) = start_relay_with(&dir, |c| {
        c.chain_rpc_url = Some(rpc_url);
        c.payout_contract = Some(contract_text);
        c.publisher_key_file = Some(publisher_key);
        c.confirmations = 1;
    })
    .await;

    // A worker linked to account 3 computes a demo job (paid from the operator's grant).
    let key = ContributorKey::generate().unwrap();
    let account = anvil.addresses()[3];
    let (public, address) = (key.public_hex(), account.to_checksum(None));
    state
        .db
        .call(move |conn| {
            Ok(conn.execute(
                "INSERT INTO links (public_key, address, chain_id, linked_at_ms, siwe_message,
                                    wallet_signature, session_signature)
                 VALUES (?1, ?2, 31337, 0, 'm', 's', 's')",
                [public.as_str(), address.as_str()],
            )?)
        })
        .await
        .unwrap();
    glowworm_relay::work::demo::tick(&state.db, &state.config, state.now_ms())
        .await
        .unwrap()
        .expect("a demo job");
    let gpu = GpuThread::start().expect("a Vulkan driver (apt-get install mesa-vulkan-drivers)");
    let options = RunOptions {
        in_flight: 1,
        max_units: Some(2),
        ..Default::default()
    };
    let client = RelayClient::new(&url).unwrap();
    let totals = runner::run(
        &client,
        &key,
        &gpu,
        &options,
        &StopSignal::default(),
        &|_| {},
    )
    .await;
    assert_eq!(totals.units, 2);

    // Before a published root there is nothing to claim.
    let early = worker_claim(&url, vec!["--address".into(), account.to_string()]).await;
    assert_eq!(early.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&early.stderr).contains("no epoch"));

    glowworm_relay::accounts::epochs::close(&state.db, 1, state.now_ms())
        .await
        .unwrap()
        .expect("an epoch");
    let chain = state.payout_chain.clone().unwrap();
    chain
        .publish_pending(&state.db, state.now_ms())
        .await
        .unwrap();

    // Printed for a wallet: the contract's claim call for the account.
    let printed = worker_claim(&url, vec!["--address".into(), account.to_string()]).await;
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let tx: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(tx["to"], contract.to_checksum(None));
    assert_eq!(tx["chainId"], "0x7a69");
    assert!(tx["data"].as_str().unwrap().starts_with("0x"));

    // Sent with another account's key (5 pays the gas): account 3 receives its earnings.
    let sender_key = dir.path().join("sender.key");
    private_file(&sender_key, &hex::encode(signer(5).to_bytes()));
    let payout = Payout::connect(&rpc, contract).unwrap();
    let before = payout.token_balance(account).await.unwrap();
    let sent = worker_claim(
        &url,
        vec![
            "--address".into(),
            account.to_string(),
            "--eth-key-file".into(),
            sender_key.display().to_string(),
            "--rpc-url".into(),
            rpc.clone(),
        ],
    )
    .await;
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let received = payout.token_balance(account).await.unwrap() - before;
    assert_eq!(received, U256::from(totals.credited as u64));

    // Claimed in full: a second claim has nothing to send.
    let again = worker_claim(&url, vec!["--address".into(), account.to_string()]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("nothing to claim"));
}
