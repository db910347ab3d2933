//! The chain side of Glowworm's payouts: the `GlowwormPayout` contract (`contracts/src/
//! GlowwormPayout.sol`) seen from Rust, through alloy.
//!
//! How money and data flow:
//! 1. An operator deploys the contract once ([`deploy`]), naming the ERC-20 token and the relay's
//!    publisher key.
//! 2. Requesters deposit tokens to the contract (`deposit(amount, requester)` from their own
//!    wallet, or [`Payout::deposit`] with a key file). The relay polls [`Payout::deposits_since`] and credits each [`Deposit`] to the
//!    requester's budget once it has enough confirmations (a deposit in a block that a reorg
//!    removes is not seen yet); `(tx_hash, log_index)` identifies a deposit, so crediting can
//!    be made idempotent.
//! 3. The relay's ledger pays contributors for verified work. At the end of each epoch the relay
//!    builds an OpenZeppelin StandardMerkleTree of (address, lifetime earnings) and publishes its
//!    root and total with [`Payout::publish_root`] (epochs strictly in order, see there for what a
//!    retry after a crash does).
//! 4. A contributor claims with the proof of their leaf: in the browser through their wallet, or
//!    from the native worker, which either prints [`claim_calldata`] for another tool to sign or
//!    sends it with [`Payout::send_claim`]. The contract pays the lifetime amount minus what it
//!    already paid ([`Payout::claimed`]).
//!
//! The contract's ABI and bytecode come from `contracts/out/*.json`, compiled offline with npm's
//! solc by `cargo xtask contracts` and committed, so building this crate needs no Node.js.
//!
//! HTTP RPC endpoints only, without TLS for now (`http://`: a local node, or a TLS proxy in front
//! of a remote one). TLS is alloy's `reqwest-rustls-tls` feature, which builds aws-lc; left for
//! when an operator needs it.

use alloy::contract::Error as ContractError;
use alloy::network::EthereumWallet;
use alloy::primitives::{Bytes, TxHash};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolCall;
use alloy::transports::http::reqwest::Url;

pub use alloy::primitives::{Address, B256, U256};
pub use alloy::signers::local::PrivateKeySigner;

/// The bindings generated from the compiled artifact (`contracts/out/GlowwormPayout.json`), and
/// the two ERC-20 functions a requester's deposit needs.
pub mod bindings {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        GlowwormPayout,
        "out/GlowwormPayout.json"
    );

    alloy::sol! {
        #[sol(rpc)]
        interface IERC20 {
            function approve(address spender, uint256 amount) external returns (bool);
            function balanceOf(address account) external view returns (uint256);
        }
    }
}

use bindings::GlowwormPayout;
pub use bindings::GlowwormPayout::GlowwormPayoutErrors as ContractRevert;

/// The most blocks one [`Payout::deposits_since`] call scans: public RPC endpoints refuse
/// `eth_getLogs` over very long ranges. The caller continues from `next_from_block`.
pub const MAX_LOG_RANGE: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid RPC URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The contract refused the call; the decoded reason.
    #[error("the payout contract reverted: {0:?}")]
    Reverted(ContractRevert),
    /// A transaction was mined but failed, with no decodable reason.
    #[error("transaction {0} was mined but reverted")]
    TransactionFailed(TxHash),
    /// The chain already holds a different root for this epoch: the relay's record of the epoch
    /// disagrees with what it published before. Never overwritten; an operator must look.
    #[error("epoch {epoch} is already published on chain with root {on_chain}, not {ours}")]
    EpochConflict {
        epoch: u64,
        on_chain: B256,
        ours: B256,
    },
    /// The relay asked to publish an epoch beyond the next one.
    #[error("cannot publish epoch {requested}: the chain is at epoch {latest}, the next is {}", latest + 1)]
    EpochGap { latest: u64, requested: u64 },
    #[error("the chain's RPC failed: {0}")]
    Rpc(String),
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<ContractError> for Error {
    fn from(e: ContractError) -> Self {
        match e.as_decoded_interface_error::<ContractRevert>() {
            Some(revert) => Error::Reverted(revert),
            None => Error::Rpc(e.to_string()),
        }
    }
}

impl From<alloy::transports::TransportError> for Error {
    fn from(e: alloy::transports::TransportError) -> Self {
        ContractError::from(e).into()
    }
}

impl From<alloy::providers::PendingTransactionError> for Error {
    fn from(e: alloy::providers::PendingTransactionError) -> Self {
        Error::Rpc(e.to_string())
    }
}

/// A mined, successful transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub tx_hash: TxHash,
    pub block_number: u64,
    pub gas_used: u64,
}

/// What [`Payout::publish_root`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// This call published the epoch.
    Now(Sent),
    /// The chain already held this epoch with this very root (an earlier attempt got through):
    /// nothing was sent.
    Already,
}

/// A requester's deposit, read from a `Deposited` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deposit {
    /// The wallet the tokens came from.
    pub from: Address,
    /// The relay-side requester the deposit funds (the `requester` argument of `deposit`).
    pub requester: B256,
    /// Tokens the contract received (in the token's smallest unit).
    pub amount: U256,
    pub block_number: u64,
    /// With `log_index`, identifies the deposit: credit each (tx_hash, log_index) once.
    pub tx_hash: TxHash,
    pub log_index: u64,
}

/// The result of one scan for deposits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositScan {
    /// Deposits with enough confirmations, in chain order.
    pub deposits: Vec<Deposit>,
    /// Where the next scan starts: every block before it has been scanned.
    pub next_from_block: u64,
}

/// The calldata of `claim(account, cumulativeAmount, proof)`: sent to the contract's address by
/// whoever pays the gas; the tokens go to `account` in any case.
pub fn claim_calldata(account: Address, cumulative_amount: U256, proof: &[B256]) -> Bytes {
    GlowwormPayout::claimCall {
        account,
        cumulativeAmount: cumulative_amount,
        proof: proof.to_vec(),
    }
    .abi_encode()
    .into()
}

/// Reads a secp256k1 private key (64 hex digits, `0x` optional, surrounding whitespace ignored)
/// from a file that only its owner may read: the relay's publisher key, or a contributor's key
/// for `claim`. On Unix a file readable or writable by group or others (not 0600 or 0400) is
/// refused, as ssh refuses such keys.
pub fn read_key_file(path: &std::path::Path) -> Result<PrivateKeySigner> {
    let fail = |reason: String| Error::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| fail(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "its mode is {:o}: make it private with `chmod 600 {}`",
                mode & 0o777,
                path.display()
            )));
        }
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    text.trim()
        .parse::<PrivateKeySigner>()
        .map_err(|_| fail("not a private key (64 hex digits)".into()))
}

fn parse_url(rpc: &str) -> Result<Url> {
    rpc.parse::<Url>().map_err(|e| Error::BadUrl {
        url: rpc.to_string(),
        reason: e.to_string(),
    })
}

/// A provider that signs with `signer` and fills each transaction's gas, chain id and nonce.
///
/// The nonce is read from the node (`pending`) for every transaction rather than counted in
/// memory: alloy's default counter also advances when a transaction fails before it is sent
/// (a revert found while estimating gas), after which every later transaction waits forever
/// behind the missing nonce. One transaction at a time per key, then: the relay publishes
/// epochs one by one.
pub fn signing_provider(rpc: &str, signer: PrivateKeySigner) -> Result<DynProvider> {
    let url = parse_url(rpc)?;
    Ok(ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url)
        .erased())
}

/// Deploys a new payout contract for `token`, owned by `signer`, with `publisher` as the key
/// allowed to publish roots. Returns the contract's address once the deployment is mined.
pub async fn deploy(
    rpc: &str,
    signer: PrivateKeySigner,
    token: Address,
    publisher: Address,
) -> Result<Address> {
    let provider = signing_provider(rpc, signer)?;
    let contract = GlowwormPayout::deploy(provider, token, publisher).await?;
    Ok(*contract.address())
}

/// A deployed payout contract, reached through one RPC endpoint, optionally with a key that
/// signs the transactions sent through it (the publisher's, or a contributor's for claims).
#[derive(Clone)]
pub struct Payout {
    contract: GlowwormPayout::GlowwormPayoutInstance<DynProvider>,
}

impl Payout {
    /// A read-only handle: views and deposit scans; sending fails (no key).
    pub fn connect(rpc: &str, contract: Address) -> Result<Self> {
        let provider = ProviderBuilder::new()
            .connect_http(parse_url(rpc)?)
            .erased();
        Ok(Self::with_provider(provider, contract))
    }

    /// A handle that signs its transactions with `signer`.
    pub fn with_signer(rpc: &str, contract: Address, signer: PrivateKeySigner) -> Result<Self> {
        Ok(Self::with_provider(
            signing_provider(rpc, signer)?,
            contract,
        ))
    }

    /// Over any provider already built (tests, or a relay sharing one provider).
    pub fn with_provider(provider: DynProvider, contract: Address) -> Self {
        Self {
            contract: GlowwormPayout::new(contract, provider),
        }
    }

    pub fn address(&self) -> Address {
        *self.contract.address()
    }

    pub fn provider(&self) -> &DynProvider {
        self.contract.provider()
    }

    pub async fn chain_id(&self) -> Result<u64> {
        Ok(self.provider().get_chain_id().await?)
    }

    /// The last published epoch, 0 before the first.
    pub async fn latest_epoch(&self) -> Result<u64> {
        Ok(self.contract.latestEpoch().call().await?)
    }

    /// The root claims are proven against (zero before the first epoch).
    pub async fn latest_root(&self) -> Result<B256> {
        Ok(self.contract.latestRoot().call().await?)
    }

    /// The sum of lifetime earnings in the latest root.
    pub async fn latest_total(&self) -> Result<U256> {
        Ok(self.contract.latestTotal().call().await?)
    }

    /// The root published for `epoch` (zero if none).
    pub async fn epoch_root(&self, epoch: u64) -> Result<B256> {
        Ok(self.contract.epochRoot(epoch).call().await?)
    }

    /// What `account` has been paid so far: its claimable amount is its lifetime earnings in the
    /// latest root minus this.
    pub async fn claimed(&self, account: Address) -> Result<U256> {
        Ok(self.contract.claimed(account).call().await?)
    }

    pub async fn token(&self) -> Result<Address> {
        Ok(self.contract.token().call().await?)
    }

    pub async fn publisher(&self) -> Result<Address> {
        Ok(self.contract.publisher().call().await?)
    }

    pub async fn total_deposited(&self) -> Result<U256> {
        Ok(self.contract.totalDeposited().call().await?)
    }

    pub async fn total_claimed(&self) -> Result<U256> {
        Ok(self.contract.totalClaimed().call().await?)
    }

    /// Publishes `root` (with the tree's `total`) as `epoch`, and waits for it to be mined.
    ///
    /// Safe to retry: it reads the chain's latest epoch first.
    /// - `epoch` is already on chain with the same root: returns [`Published::Already`] and sends
    ///   nothing (a relay that crashed after its transaction was mined just records it).
    /// - `epoch` is on chain with another root: [`Error::EpochConflict`], nothing is sent.
    /// - `epoch` is beyond the next one: [`Error::EpochGap`].
    /// - Otherwise it sends the transaction and waits for its receipt. If an earlier attempt is
    ///   still pending in the mempool, the contract takes only one of the two: the other fails
    ///   ([`Error::Reverted`] with `EpochOutOfOrder` if the first was mined before this one was
    ///   estimated, [`Error::TransactionFailed`] if both were in flight); calling again then
    ///   returns `Already`.
    ///
    /// The relay records the epoch as published only once this returns `Ok`, and calls it again
    /// for the same epoch and root after a crash: no epoch is skipped or published twice.
    pub async fn publish_root(&self, epoch: u64, root: B256, total: U256) -> Result<Published> {
        let latest = self.latest_epoch().await?;
        if epoch <= latest {
            let on_chain = self.epoch_root(epoch).await?;
            if on_chain == root {
                return Ok(Published::Already);
            }
            return Err(Error::EpochConflict {
                epoch,
                on_chain,
                ours: root,
            });
        }
        if epoch > latest + 1 {
            return Err(Error::EpochGap {
                latest,
                requested: epoch,
            });
        }
        let pending = self.contract.publishRoot(epoch, root, total).send().await?;
        Ok(Published::Now(mined(pending.get_receipt().await?)?))
    }

    /// Sends `claim(account, cumulativeAmount, proof)` signed by this handle's key (which need not
    /// be `account`'s: the tokens go to `account`), and waits for it to be mined.
    pub async fn send_claim(
        &self,
        account: Address,
        cumulative_amount: U256,
        proof: &[B256],
    ) -> Result<Sent> {
        let pending = self
            .contract
            .claim(account, cumulative_amount, proof.to_vec())
            .send()
            .await?;
        mined(pending.get_receipt().await?)
    }

    /// The token balance of `account` (the contract's own: what it holds for future claims).
    pub async fn token_balance(&self, account: Address) -> Result<U256> {
        let token = bindings::IERC20::new(self.token().await?, self.provider().clone());
        Ok(token.balanceOf(account).call().await?)
    }

    /// A requester's deposit from this handle's key: approves the contract for `amount` of the
    /// token, then calls `deposit(amount, requester)`. The relay credits `requester` once it sees
    /// the deposit with enough confirmations ([`Payout::deposits_since`]).
    pub async fn deposit(&self, amount: U256, requester: B256) -> Result<Sent> {
        let token = bindings::IERC20::new(self.token().await?, self.provider().clone());
        let approval = token.approve(self.address(), amount).send().await?;
        mined(approval.get_receipt().await?)?;
        let pending = self.contract.deposit(amount, requester).send().await?;
        mined(pending.get_receipt().await?)
    }

    /// Deposits made in blocks `from_block..` that have at least `confirmations` confirmations
    /// (a deposit in the chain's head block has 1; 0 is taken as 1), scanning at most
    /// [`MAX_LOG_RANGE`] blocks. Call again from `next_from_block` to continue.
    pub async fn deposits_since(&self, from_block: u64, confirmations: u64) -> Result<DepositScan> {
        let head = self.provider().get_block_number().await?;
        let Some(last_confirmed) = (head + 1).checked_sub(confirmations.max(1)) else {
            return Ok(DepositScan {
                deposits: Vec::new(),
                next_from_block: from_block,
            });
        };
        if last_confirmed < from_block {
            return Ok(DepositScan {
                deposits: Vec::new(),
                next_from_block: from_block,
            });
        }
        let to_block = last_confirmed.min(from_block + MAX_LOG_RANGE - 1);
        let logs = self
            .contract
            .Deposited_filter()
            .from_block(from_block)
            .to_block(to_block)
            .query()
            .await?;
        let mut deposits = Vec::with_capacity(logs.len());
        for (event, log) in logs {
            let (Some(block_number), Some(tx_hash), Some(log_index)) =
                (log.block_number, log.transaction_hash, log.log_index)
            else {
                return Err(Error::Rpc(
                    "the node returned a Deposited log without its block, transaction or index"
                        .into(),
                ));
            };
            deposits.push(Deposit {
                from: event.from,
                requester: event.requester,
                amount: event.amount,
                block_number,
                tx_hash,
                log_index,
            });
        }
        Ok(DepositScan {
            deposits,
            next_from_block: to_block + 1,
        })
    }
}

fn mined(receipt: TransactionReceipt) -> Result<Sent> {
    if !receipt.status() {
        return Err(Error::TransactionFailed(receipt.transaction_hash));
    }
    Ok(Sent {
        tx_hash: receipt.transaction_hash,
        block_number: receipt.block_number.unwrap_or_default(),
        gas_used: receipt.gas_used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        file
    }

    // anvil's first account.
    const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    #[test]
    fn reads_a_private_key_file() {
        let file = key_file(&format!("{KEY}\n"), 0o600);
        let signer = read_key_file(file.path()).unwrap();
        assert_eq!(signer.address(), ADDRESS.parse::<Address>().unwrap());
        let bare = key_file(KEY.trim_start_matches("0x"), 0o400);
        assert_eq!(
            read_key_file(bare.path()).unwrap().address(),
            signer.address()
        );
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_file_others_can_read() {
        let file = key_file(KEY, 0o644);
        let err = read_key_file(file.path()).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn refuses_what_is_not_a_key() {
        let file = key_file("hello", 0o600);
        assert!(matches!(
            read_key_file(file.path()),
            Err(Error::KeyFile { .. })
        ));
    }

    #[test]
    fn refuses_a_bad_url() {
        assert!(matches!(
            Payout::connect("not a url", Address::ZERO),
            Err(Error::BadUrl { .. })
        ));
    }
}
