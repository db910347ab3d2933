//! The browser module's hand-written calldata (`glowworm_protocol::payout`) is byte for byte what
//! alloy encodes from the compiled ABI.

use alloy::sol_types::SolCall;
use glowworm_chain::bindings::GlowwormPayout;
use glowworm_chain::{Address, B256, U256, claim_calldata};
use glowworm_protocol::merkle;
use glowworm_protocol::payout;

#[test]
fn claim_calldata_matches_alloy() {
    let account: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        .parse()
        .unwrap();
    let ours_account = merkle::Address(account.into_array());
    for (amount, proof_len) in [
        ("0", 0usize),
        ("1000", 1),
        ("123456789012345678901234567890", 5),
    ] {
        let proof: Vec<B256> = (0..proof_len)
            .map(|i| B256::repeat_byte(i as u8 * 37 + 1))
            .collect();
        let theirs = claim_calldata(account, U256::from_str_radix(amount, 10).unwrap(), &proof);
        let ours = payout::claim_calldata(
            &ours_account,
            &merkle::Amount::from_decimal(amount).unwrap(),
            &proof.iter().map(|p| p.0).collect::<Vec<_>>(),
        );
        assert_eq!(ours, theirs.to_vec(), "amount {amount}, {proof_len} hashes");
    }
}

#[test]
fn views_match_alloy() {
    let account: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        .parse()
        .unwrap();
    assert_eq!(
        payout::latest_root_calldata(),
        GlowwormPayout::latestRootCall {}.abi_encode()
    );
    assert_eq!(
        payout::claimed_calldata(&merkle::Address(account.into_array())),
        GlowwormPayout::claimedCall { account }.abi_encode()
    );
}
