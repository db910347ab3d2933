//! Claiming earnings from the payout contract: the relay says what an address can claim and with
//! which proof (`GET /v1/payouts/{address}`); [`plan`] turns that into the contract call, which
//! the worker either prints for another tool or wallet to sign ([`Plan::transaction`]) or sends
//! itself, signed with a key file ([`send`]). The tokens always go to the address, whoever sends.

use crate::client::RelayClient;
use glowworm_chain::{Address, B256, Payout as Contract, U256};
use glowworm_protocol::protocol::{RelayError, Transport};
use glowworm_protocol::wire::Payout;

/// Why there is nothing to send.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error("claims are off on this relay: it has no payout contract (chain_rpc_url)")]
    NoChain,
    #[error("no epoch of this relay is published on chain yet; earnings so far: {0}")]
    NotPublished(String),
    #[error("nothing to claim for {address}: {in_root} in the latest root, {claimed} claimed")]
    NothingToClaim {
        address: String,
        in_root: String,
        claimed: String,
    },
    #[error("the relay's payout for {0} is malformed: {1}")]
    Malformed(String, String),
    #[error(transparent)]
    Chain(#[from] glowworm_chain::Error),
}

/// A claim ready to send: `claim(account, amount, proof)` on `contract`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub contract: Address,
    pub chain_id: u64,
    pub account: Address,
    /// Lifetime earnings in the latest published root, in token units.
    pub amount: U256,
    /// What this claim pays: `amount` less what was claimed before.
    pub claimable: U256,
    pub proof: Vec<B256>,
    pub epoch: i64,
}

impl Plan {
    /// The transaction to sign, as JSON (EIP-1193's `eth_sendTransaction` fields).
    pub fn transaction(&self) -> serde_json::Value {
        let data = glowworm_chain::claim_calldata(self.account, self.amount, &self.proof);
        serde_json::json!({
            "to": self.contract.to_checksum(None),
            "data": data.to_string(),
            "value": "0x0",
            "chainId": format!("0x{:x}", self.chain_id),
        })
    }
}

/// Asks the relay what `address` can claim.
pub async fn payout(client: &RelayClient, address: &str) -> Result<Payout, ClaimError> {
    Ok(client.get_json(&format!("/v1/payouts/{address}")).await?)
}

/// The claim `payout` allows, or why there is none.
pub fn plan(payout: &Payout) -> Result<Plan, ClaimError> {
    let malformed = |what: &str| ClaimError::Malformed(payout.address.clone(), what.to_string());
    let (Some(contract), Some(chain_id)) = (&payout.contract, payout.chain_id) else {
        return Err(ClaimError::NoChain);
    };
    let Some(epoch) = payout.epoch.filter(|_| payout.claims_enabled) else {
        return Err(ClaimError::NotPublished(payout.earned.clone()));
    };
    let claimed = payout.claimed.clone().unwrap_or_else(|| "0".into());
    let claimable: U256 = payout
        .claimable
        .as_deref()
        .unwrap_or("0")
        .parse()
        .map_err(|_| malformed("claimable"))?;
    if claimable.is_zero() {
        return Err(ClaimError::NothingToClaim {
            address: payout.address.clone(),
            in_root: payout.in_root.clone(),
            claimed,
        });
    }
    Ok(Plan {
        contract: contract.parse().map_err(|_| malformed("contract"))?,
        chain_id,
        account: payout.address.parse().map_err(|_| malformed("address"))?,
        amount: payout.in_root.parse().map_err(|_| malformed("in_root"))?,
        claimable,
        proof: payout
            .proof
            .iter()
            .map(|node| node.parse().map_err(|_| malformed("proof")))
            .collect::<Result<_, _>>()?,
        epoch,
    })
}

/// Sends the claim through `rpc`, signed with the key in `key_file` (any funded key: the tokens
/// go to the plan's account); returns the transaction's hash once it is mined.
pub async fn send(plan: &Plan, rpc: &str, key_file: &std::path::Path) -> Result<B256, ClaimError> {
    let signer = glowworm_chain::read_key_file(key_file)?;
    let contract = Contract::with_signer(rpc, plan.contract, signer)?;
    let chain_id = contract.chain_id().await?;
    if chain_id != plan.chain_id {
        return Err(ClaimError::Malformed(
            plan.account.to_string(),
            format!(
                "the RPC's chain is {chain_id}, the relay's contract is on {}",
                plan.chain_id
            ),
        ));
    }
    let sent = contract
        .send_claim(plan.account, plan.amount, &plan.proof)
        .await?;
    Ok(sent.tx_hash)
}
