//! Shared by the tests: a real anvil chain from contracts/node_modules, accounts with their
//! providers, the test token, and an OpenZeppelin-shaped Merkle tree of (address, uint256).

#![allow(dead_code)]

use alloy::node_bindings::{Anvil, AnvilInstance};
use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use glowworm_chain::{ContractRevert, Error, Payout};
use std::path::{Path, PathBuf};

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    TestToken,
    "out/TestToken.json"
);

pub const INSTALL_HINT: &str =
    "run `npm install --ignore-scripts` in contracts/ (or `cargo xtask contracts`)";

pub fn contracts_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The anvil binary shipped in the npm package `@foundry-rs/anvil-linux-amd64`, or the one named
/// by GLOWWORM_ANVIL.
pub fn anvil_path() -> PathBuf {
    if let Some(path) = std::env::var_os("GLOWWORM_ANVIL") {
        return PathBuf::from(path);
    }
    let path = contracts_dir().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(
        path.exists(),
        "anvil is missing at {}: {INSTALL_HINT}",
        path.display()
    );
    path
}

/// A fresh local chain with its ten funded accounts.
pub struct Chain {
    pub anvil: AnvilInstance,
}

impl Chain {
    pub fn start() -> Self {
        let anvil = Anvil::at(anvil_path())
            .try_spawn()
            .unwrap_or_else(|e| panic!("could not start anvil ({}): {e}", anvil_path().display()));
        Self { anvil }
    }

    pub fn rpc(&self) -> String {
        self.anvil.endpoint()
    }

    pub fn signer(&self, index: usize) -> PrivateKeySigner {
        PrivateKeySigner::from(self.anvil.keys()[index].clone())
    }

    pub fn address(&self, index: usize) -> Address {
        self.anvil.addresses()[index]
    }

    /// A provider that signs with account `index`.
    pub fn provider(&self, index: usize) -> DynProvider {
        glowworm_chain::signing_provider(&self.rpc(), self.signer(index)).unwrap()
    }

    /// Mines `blocks` empty blocks (anvil_mine).
    pub async fn mine(&self, blocks: u64) {
        let provider = self.provider(0);
        let _: serde_json::Value = provider
            .raw_request("anvil_mine".into(), (U256::from(blocks),))
            .await
            .expect("anvil_mine");
    }

    /// Deploys the test token from account 0.
    pub async fn deploy_token(&self) -> Address {
        let token = TestToken::deploy(self.provider(0))
            .await
            .expect("deploy TestToken");
        *token.address()
    }

    pub fn token(&self, token: Address, index: usize) -> TestToken::TestTokenInstance<DynProvider> {
        TestToken::new(token, self.provider(index))
    }

    pub async fn balance(&self, token: Address, account: Address) -> U256 {
        self.token(token, 0)
            .balanceOf(account)
            .call()
            .await
            .expect("balanceOf")
    }

    /// Account `index` mints `amount` and deposits it for the requester `[index; 32]` through
    /// [`Payout::deposit`] (approve, then deposit); returns the deposit's gas.
    pub async fn fund(&self, token: Address, payout: Address, index: usize, amount: u64) -> u64 {
        let amount = U256::from(amount);
        self.token(token, index)
            .mint(self.address(index), amount)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        self.as_account(payout, index)
            .deposit(amount, B256::repeat_byte(index as u8))
            .await
            .expect("deposit")
            .gas_used
    }

    /// A payout contract over `token`: account 0 deploys and owns it, account 1 publishes.
    pub async fn deploy_payout(&self, token: Address) -> Address {
        glowworm_chain::deploy(&self.rpc(), self.signer(0), token, self.address(1))
            .await
            .expect("deploy GlowwormPayout")
    }

    /// The publisher's handle (account 1).
    pub fn publisher(&self, payout: Address) -> Payout {
        Payout::with_signer(&self.rpc(), payout, self.signer(1)).unwrap()
    }

    /// A handle signing with account `index`.
    pub fn as_account(&self, payout: Address, index: usize) -> Payout {
        Payout::with_signer(&self.rpc(), payout, self.signer(index)).unwrap()
    }
}

/// The contract's reason for refusing, or a panic naming what happened instead.
pub fn revert<T: std::fmt::Debug>(result: Result<T, Error>) -> ContractRevert {
    match result {
        Err(Error::Reverted(revert)) => revert,
        other => panic!("expected the contract to revert, got {other:?}"),
    }
}

/// OpenZeppelin's StandardMerkleTree of (address, uint256), built the way
/// @openzeppelin/merkle-tree builds it: leaves are keccak256(keccak256(abi.encode(a, n))), sorted
/// ascending, laid out from the end of an array of 2n-1 nodes; each parent hashes its two
/// children sorted.
pub struct Tree {
    nodes: Vec<B256>,
    /// (account, amount) -> index of its leaf in `nodes`.
    leaves: Vec<((Address, U256), usize)>,
}

pub fn leaf_hash(account: Address, amount: U256) -> B256 {
    keccak256(keccak256((account, amount).abi_encode()))
}

fn hash_pair(a: B256, b: B256) -> B256 {
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    keccak256([low.as_slice(), high.as_slice()].concat())
}

impl Tree {
    pub fn of(values: &[(Address, u64)]) -> Self {
        assert!(!values.is_empty());
        let mut hashed: Vec<(B256, (Address, U256))> = values
            .iter()
            .map(|&(a, n)| (leaf_hash(a, U256::from(n)), (a, U256::from(n))))
            .collect();
        hashed.sort_by_key(|(h, _)| *h);
        let n = hashed.len();
        let mut nodes = vec![B256::ZERO; 2 * n - 1];
        let mut leaves = Vec::new();
        for (i, (hash, value)) in hashed.into_iter().enumerate() {
            let at = nodes.len() - 1 - i;
            nodes[at] = hash;
            leaves.push((value, at));
        }
        for i in (0..nodes.len() - n).rev() {
            nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2]);
        }
        Self { nodes, leaves }
    }

    pub fn root(&self) -> B256 {
        self.nodes[0]
    }

    pub fn proof(&self, account: Address, amount: u64) -> Vec<B256> {
        let (_, mut i) = *self
            .leaves
            .iter()
            .find(|((a, n), _)| *a == account && *n == U256::from(amount))
            .expect("leaf in tree");
        let mut proof = Vec::new();
        while i > 0 {
            let sibling = if i % 2 == 1 { i + 1 } else { i - 1 };
            proof.push(self.nodes[sibling]);
            i = (i - 1) / 2;
        }
        proof
    }
}
