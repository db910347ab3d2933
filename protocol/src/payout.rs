//! Calls to the payout contract (`contracts/src/GlowwormPayout.sol`), ABI-encoded by hand so the
//! browser module can build them without alloy: the page sends [`claim_calldata`] through the
//! person's wallet (`eth_sendTransaction`) and reads [`latest_root_calldata`] and
//! [`claimed_calldata`] with `eth_call`.
//!
//! Standard Solidity ABI encoding: a call is the function's 4-byte selector (the first 4 bytes of
//! `keccak256` of its signature) followed by its arguments in 32-byte words; a dynamic argument
//! (`bytes32[]`) is an offset in the head and its length and elements in the tail.
//! `contracts/src/lib.rs` tests these bytes against alloy's encoding from the compiled ABI.

use crate::merkle::{Address, Amount, Node};
use sha3::{Digest, Keccak256};

/// The signature of the contract's `claim`.
pub const CLAIM_SIGNATURE: &str = "claim(address,uint256,bytes32[])";
/// The signature of the view of the latest published root.
pub const LATEST_ROOT_SIGNATURE: &str = "latestRoot()";
/// The signature of the view of what an account was paid so far.
pub const CLAIMED_SIGNATURE: &str = "claimed(address)";

/// The 4-byte selector of a function: the first 4 bytes of `keccak256(signature)`.
pub fn selector(signature: &str) -> [u8; 4] {
    let hash = Keccak256::digest(signature.as_bytes());
    [hash[0], hash[1], hash[2], hash[3]]
}

/// `latestRoot()`'s whole calldata (its selector: it takes no argument).
pub fn latest_root_calldata() -> Vec<u8> {
    selector(LATEST_ROOT_SIGNATURE).to_vec()
}

fn address_word(address: &Address) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[12..].copy_from_slice(&address.0);
    word
}

fn usize_word(n: usize) -> [u8; 32] {
    let mut word = [0u8; 32];
    word[24..].copy_from_slice(&(n as u64).to_be_bytes());
    word
}

/// `claimed(address)`'s calldata: what the contract has paid `account` so far.
pub fn claimed_calldata(account: &Address) -> Vec<u8> {
    let mut data = selector(CLAIMED_SIGNATURE).to_vec();
    data.extend_from_slice(&address_word(account));
    data
}

/// `claim(account, cumulative_amount, proof)`'s calldata: the contract pays `account` its
/// lifetime `cumulative_amount` minus what it paid before, once `proof` leads from that leaf to
/// its latest root.
pub fn claim_calldata(account: &Address, cumulative_amount: &Amount, proof: &[Node]) -> Vec<u8> {
    let mut data = Vec::with_capacity(4 + 32 * (4 + proof.len()));
    data.extend_from_slice(&selector(CLAIM_SIGNATURE));
    data.extend_from_slice(&address_word(account));
    data.extend_from_slice(&cumulative_amount.to_be_bytes());
    // The head's third word: where the array starts, counted from the arguments' start.
    data.extend_from_slice(&usize_word(3 * 32));
    data.extend_from_slice(&usize_word(proof.len()));
    for node in proof {
        data.extend_from_slice(node);
    }
    data
}

/// [`claim_calldata`] on text, as a page has it: the address (lowercase, uppercase or
/// checksummed), the amount in decimal and the proof's hashes as `0x` and 64 hex characters;
/// the calldata as `0x` and lowercase hex, for `eth_sendTransaction`.
pub fn claim_calldata_hex<S: AsRef<str>>(
    account: &str,
    cumulative_amount: &str,
    proof: &[S],
) -> Result<String, crate::merkle::MerkleError> {
    let account = Address::parse(account)?;
    let amount = Amount::from_decimal(cumulative_amount)?;
    let proof = proof
        .iter()
        .map(|p| crate::merkle::parse_node(p.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!(
        "0x{}",
        hex::encode(claim_calldata(&account, &amount, &proof))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARTIFACT: &str = include_str!("../../contracts/out/GlowwormPayout.json");

    #[test]
    fn selectors_match_the_compiled_contract() {
        // solc writes each function's selector in the artifact's methodIdentifiers (or we find
        // the functions in the ABI): the hand-written signatures must name real functions.
        let artifact: serde_json::Value = serde_json::from_str(ARTIFACT).unwrap();
        let abi = artifact["abi"].as_array().expect("the artifact has an ABI");
        let signature_of = |name: &str| {
            let f = abi
                .iter()
                .find(|f| f["type"] == "function" && f["name"] == name)
                .unwrap_or_else(|| panic!("the ABI has {name}"));
            let inputs: Vec<&str> = f["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["type"].as_str().unwrap())
                .collect();
            format!("{name}({})", inputs.join(","))
        };
        assert_eq!(signature_of("claim"), CLAIM_SIGNATURE);
        assert_eq!(signature_of("latestRoot"), LATEST_ROOT_SIGNATURE);
        assert_eq!(signature_of("claimed"), CLAIMED_SIGNATURE);
        // A known vector: ERC-20's transfer.
        assert_eq!(
            selector("transfer(address,uint256)"),
            [0xa9, 0x05, 0x9c, 0xbb]
        );
    }

    #[test]
    fn claim_calldata_is_the_abi_encoding() {
        let account = Address::parse("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").unwrap();
        let amount = Amount::from_decimal("1000").unwrap();
        let proof = [[0x11; 32], [0x22; 32]];
        let data = claim_calldata(&account, &amount, &proof);
        assert_eq!(data.len(), 4 + 32 * 6);
        assert_eq!(data[..4], selector(CLAIM_SIGNATURE));
        let word = |i: usize| hex::encode(&data[4 + 32 * i..4 + 32 * (i + 1)]);
        assert_eq!(
            word(0),
            format!("{:0>64}", "70997970c51812dc3a010c7d01b50e0d17dc79c8")
        );
        assert_eq!(word(1), format!("{:0>64}", "3e8"));
        assert_eq!(word(2), format!("{:0>64}", "60"));
        assert_eq!(word(3), format!("{:0>64}", "2"));
        assert_eq!(word(4), "11".repeat(32));
        assert_eq!(word(5), "22".repeat(32));

        let empty = claim_calldata(&account, &amount, &[]);
        assert_eq!(
            empty.len(),
            4 + 32 * 4,
            "an empty proof is offset and length 0"
        );
        let text = claim_calldata_hex(
            "0x70997970c51812dc3a010c7d01b50e0d17dc79c8",
            "1000",
            &[node_text(0x11), node_text(0x22)],
        )
        .unwrap();
        assert_eq!(text, format!("0x{}", hex::encode(&data)));
        assert!(claim_calldata_hex("0x1234", "1", &[] as &[&str]).is_err());
        assert!(claim_calldata_hex(&account.to_checksum(), "-1", &[] as &[&str]).is_err());
    }

    #[test]
    fn claimed_calldata_is_the_abi_encoding() {
        let account = Address::parse("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").unwrap();
        let data = claimed_calldata(&account);
        assert_eq!(data.len(), 36);
        assert_eq!(data[..4], selector(CLAIMED_SIGNATURE));
        assert_eq!(data[4..16], [0; 12]);
        assert_eq!(data[16..], account.0);
    }

    fn node_text(byte: u8) -> String {
        format!("0x{}", hex::encode([byte; 32]))
    }
}
