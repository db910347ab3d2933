//! `glowworm-worker link` against a real relay on 127.0.0.1: the message it prints, signed the way
//! a wallet's personal_sign does (EIP-191, secp256k1 via k256), links the worker's key.

use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::{AccountInfo, ContributorInfo};
use glowworm_relay::{AppState, Config, app};
use glowworm_worker::client::RelayClient;
use glowworm_worker::link::{self, LinkCommandError};
use k256::ecdsa::SigningKey;
use sha3::{Digest, Keccak256};

async fn start_relay(dir: &tempfile::TempDir) -> String {
    // The relay signs in for its public origin, by default the address it listens on.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        database: dir.path().join("relay.sqlite"),
        demo_jobs: false,
        listen: listener.local_addr().unwrap(),
        ..Config::default()
    };
    let state = AppState::open(config).expect("relay state");
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    url
}

/// A wallet: its address (lowercase hex) and personal_sign.
struct Wallet(SigningKey);

impl Wallet {
    fn address(&self) -> String {
        let point = self.0.verifying_key().to_encoded_point(false);
        let hash = Keccak256::digest(&point.as_bytes()[1..]);
        format!("0x{}", hex::encode(&hash[12..]))
    }

    fn personal_sign(&self, message: &str) -> String {
        let prefixed = format!("\x19Ethereum Signed Message:\n{}{message}", message.len());
        let (signature, recovery) = self
            .0
            .sign_digest_recoverable(Keccak256::new_with_prefix(prefixed.as_bytes()))
            .unwrap();
        let mut bytes = signature.to_bytes().to_vec();
        bytes.push(27 + recovery.to_byte());
        format!("0x{}", hex::encode(bytes))
    }
}

#[tokio::test]
async fn a_wallet_signature_of_the_printed_message_links_the_worker() {
    let dir = tempfile::tempdir().unwrap();
    let url = start_relay(&dir).await;
    let client = RelayClient::new(&url).unwrap();
    let key = ContributorKey::generate().unwrap();
    let wallet = Wallet(SigningKey::from_slice(&[7u8; 32]).unwrap());

    let message = link::prepare(&client, &key, &wallet.address(), 1)
        .await
        .unwrap();
    assert!(message.starts_with(&format!(
        "{} wants you to sign in with your Ethereum account:",
        url.trim_start_matches("http://")
    )));
    assert!(message.contains(&format!("urn:glowworm:session:{}", key.public_hex())));

    let reply = link::finish(&client, &key, &message, &wallet.personal_sign(&message))
        .await
        .unwrap();
    assert_eq!(reply.address.to_lowercase(), wallet.address());
    assert_eq!(reply.public_key, key.public_hex());

    let account: AccountInfo = reqwest::get(format!("{url}/v1/accounts/{}", wallet.address()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(account.linked_sessions.len(), 1);
    assert_eq!(account.linked_sessions[0].public_key, key.public_hex());
    let info: ContributorInfo = reqwest::get(format!("{url}/v1/contributors/{}", key.public_hex()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info.linked_address, Some(reply.address));
}

#[tokio::test]
async fn a_signature_by_another_wallet_or_a_malformed_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = start_relay(&dir).await;
    let client = RelayClient::new(&url).unwrap();
    let key = ContributorKey::generate().unwrap();
    let wallet = Wallet(SigningKey::from_slice(&[7u8; 32]).unwrap());
    let other = Wallet(SigningKey::from_slice(&[8u8; 32]).unwrap());
    let message = link::prepare(&client, &key, &wallet.address(), 1)
        .await
        .unwrap();

    let err = link::finish(&client, &key, &message, &other.personal_sign(&message))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("(403 bad_wallet_signature)"),
        "{err}"
    );
    let err = link::finish(&client, &key, &message, "0x1234")
        .await
        .unwrap_err();
    assert!(
        matches!(err, LinkCommandError::MalformedSignature(_)),
        "{err}"
    );
    // Neither attempt used up the nonce: the right signature still links.
    link::finish(&client, &key, &message, &wallet.personal_sign(&message))
        .await
        .unwrap();
}
