//! The earnings tree: each address's lifetime earnings as the leaves of a Merkle tree that is
//! byte for byte OpenZeppelin's `StandardMerkleTree` of `(address, uint256)`
//! (`@openzeppelin/merkle-tree` 1.0.x), so that the payout contract's `MerkleProof.verify` and the
//! JS library accept what the relay builds.
//!
//! Data flows like this:
//!
//! 1. At the end of an epoch the relay builds an [`EarningsTree`] from every address's lifetime
//!    earnings ([`EarningsTree::new`]), publishes [`EarningsTree::root`] to the payout contract and
//!    serves [`EarningsTree::to_json`] (OpenZeppelin's `standard-v1` dump, which
//!    `StandardMerkleTree.load` reads) as a public file, so anyone can recompute the root.
//! 2. `GET /v1/payouts/{address}` answers with [`EarningsTree::proof`] for that address.
//! 3. The contract, the page ("check my proof": [`verify_hex`] in the browser module) and anyone
//!    else check a claim with [`verify`] against the root the contract holds.
//!
//! The tree, exactly as the JS library builds it:
//!
//! - a leaf is `keccak256(keccak256(abi.encode(address, uint256)))` ([`leaf_hash`]);
//! - an inner node is `keccak256` of its two children concatenated smaller first ([`node_hash`]),
//!   so a proof is a plain list of siblings, leaf to root;
//! - the leaves are sorted by hash (`StandardMerkleTree.of`'s default) and stored as a complete
//!   binary tree in one array (`makeMerkleTree`): node `i`'s children are `2i + 1` and `2i + 2`,
//!   the root is node 0 and the `n` sorted leaves fill the last `n` places in reverse order (the
//!   smallest hash last);
//! - the dump lists the values in the order they were given, each with its place in the array.
//!
//! One leaf makes a tree whose root is that leaf and whose proofs are empty, as in the JS library;
//! no leaf is an error ([`MerkleError::Empty`]), as it is there. Unlike the JS library, an
//! address may appear only once ([`MerkleError::DuplicateAddress`]): a leaf is an address's
//! whole lifetime earnings.
//!
//! Addresses are written EIP-55 checksummed, in the dump and everywhere else: the JS library hashes
//! the address's bytes and writes back whatever string it was given, so the case changes no hash,
//! and the relay keeps addresses checksummed already. [`EarningsTree::load`] and [`verify_hex`]
//! accept lowercase, uppercase or correctly checksummed addresses and refuse a mixed case whose
//! checksum is wrong (a typo, as EIP-55 intends). Amounts are `uint256` ([`Amount`]), written as
//! decimal strings; the relay's ledger amounts (`u128`) convert with `From`.

use crate::link::{LinkError, checksum_address};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Keccak256};
use std::collections::HashMap;
use std::fmt;

/// A node of the tree (and a leaf's hash): 32 bytes.
pub type Node = [u8; 32];

/// The dump's `format`.
pub const FORMAT: &str = "standard-v1";
/// The dump's `leafEncoding`: the Solidity types of a leaf's values.
pub const LEAF_ENCODING: [&str; 2] = ["address", "uint256"];

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("an earnings tree needs at least one address")]
    Empty,
    #[error("address {0} appears more than once")]
    DuplicateAddress(Address),
    #[error(transparent)]
    Address(#[from] LinkError),
    #[error("an amount is a decimal integer from 0 to 2^256 - 1, got {0:?}")]
    Amount(String),
    #[error("a hash is 0x followed by 64 hex characters, got {0:?}")]
    Hash(String),
    #[error("address {0} is not in the tree")]
    NotInTree(Address),
    #[error("not an earnings tree dump: {0}")]
    Json(String),
    #[error("unknown format {0:?}, expected \"standard-v1\"")]
    Format(String),
    #[error("leaf encoding {0:?}, expected [\"address\", \"uint256\"]")]
    LeafEncoding(Vec<String>),
    #[error("invalid tree: {0}")]
    Invalid(String),
}

/// A 20-byte Ethereum address; displayed EIP-55 checksummed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 20]);

impl Address {
    /// Parses `0x` and 40 hex characters: lowercase, uppercase or correctly checksummed.
    pub fn parse(text: &str) -> Result<Address, MerkleError> {
        let checksummed = checksum_address(text)?;
        let mut bytes = [0; 20];
        hex::decode_to_slice(&checksummed[2..], &mut bytes)
            .expect("checksum_address returns 40 hex characters");
        Ok(Address(bytes))
    }

    /// The EIP-55 checksummed form, such as "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".
    pub fn to_checksum(&self) -> String {
        let lower = hex::encode(self.0);
        let hash = Keccak256::digest(lower.as_bytes());
        let mut out = String::with_capacity(42);
        out.push_str("0x");
        for (i, c) in lower.chars().enumerate() {
            let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0xf;
            out.push(if c.is_ascii_alphabetic() && nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            });
        }
        out
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_checksum())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

/// A Solidity `uint256`: an amount in the token's smallest unit. Stored big-endian, so the
/// derived order is the numeric one and [`Amount::to_be_bytes`] is its ABI encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount([u8; 32]);

impl Amount {
    pub const ZERO: Amount = Amount([0; 32]);
    /// 2^256 - 1.
    pub const MAX: Amount = Amount([0xff; 32]);

    pub fn from_be_bytes(bytes: [u8; 32]) -> Amount {
        Amount(bytes)
    }

    pub fn to_be_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The amount as a `u128`, if it fits.
    pub fn to_u128(&self) -> Option<u128> {
        if self.0[..16].iter().any(|&b| b != 0) {
            return None;
        }
        Some(u128::from_be_bytes(self.0[16..].try_into().unwrap()))
    }

    /// Parses decimal digits (leading zeros allowed, nothing else: no sign, no space, no `0x`).
    pub fn from_decimal(text: &str) -> Result<Amount, MerkleError> {
        let bad = || MerkleError::Amount(text.to_string());
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        // Little-endian 64-bit limbs: value = value * 10 + digit, failing on a carry out.
        let mut limbs = [0u64; 4];
        for digit in text.bytes().map(|b| u64::from(b - b'0')) {
            let mut carry = digit as u128;
            for limb in &mut limbs {
                let wide = *limb as u128 * 10 + carry;
                *limb = wide as u64;
                carry = wide >> 64;
            }
            if carry != 0 {
                return Err(bad());
            }
        }
        let mut bytes = [0; 32];
        for (i, limb) in limbs.iter().enumerate() {
            bytes[32 - 8 * (i + 1)..32 - 8 * i].copy_from_slice(&limb.to_be_bytes());
        }
        Ok(Amount(bytes))
    }

    /// The decimal digits, without leading zeros ("0" for zero).
    pub fn to_decimal(&self) -> String {
        if let Some(small) = self.to_u128() {
            return small.to_string();
        }
        let mut limbs: [u64; 4] = std::array::from_fn(|i| {
            u64::from_be_bytes(self.0[24 - 8 * i..32 - 8 * i].try_into().unwrap())
        });
        // Divide by 10^19 (the largest power of ten in a u64) until nothing is left.
        const CHUNK: u128 = 10_000_000_000_000_000_000;
        let mut chunks = Vec::new();
        while limbs.iter().any(|&l| l != 0) {
            let mut rest = 0u128;
            for limb in limbs.iter_mut().rev() {
                let wide = (rest << 64) | *limb as u128;
                *limb = (wide / CHUNK) as u64;
                rest = wide % CHUNK;
            }
            chunks.push(rest as u64);
        }
        let mut out = chunks.pop().map(|c| c.to_string()).unwrap_or_default();
        for chunk in chunks.iter().rev() {
            out.push_str(&format!("{chunk:019}"));
        }
        out
    }
}

impl From<u128> for Amount {
    fn from(value: u128) -> Amount {
        let mut bytes = [0; 32];
        bytes[16..].copy_from_slice(&value.to_be_bytes());
        Amount(bytes)
    }
}

impl From<u64> for Amount {
    fn from(value: u64) -> Amount {
        Amount::from(value as u128)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal())
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({self})")
    }
}

/// As the checksummed string, for the relay's JSON answers; reads any case [`Address::parse`] takes.
impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_checksum())
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Address::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// As a decimal string (JSON numbers lose precision in JS above 2^53).
impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_decimal())
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Amount::from_decimal(&text).map_err(serde::de::Error::custom)
    }
}

fn keccak(data: &[u8]) -> Node {
    Keccak256::digest(data).into()
}

/// A leaf: `keccak256(bytes.concat(keccak256(abi.encode(address, amount))))`.
pub fn leaf_hash(address: &Address, amount: &Amount) -> Node {
    let mut encoded = [0u8; 64];
    encoded[12..32].copy_from_slice(&address.0);
    encoded[32..].copy_from_slice(&amount.0);
    keccak(&keccak(&encoded))
}

/// An inner node: `keccak256` of the two children, the smaller first (OpenZeppelin's
/// `Hashes.commutativeKeccak256`).
pub fn node_hash(a: &Node, b: &Node) -> Node {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(lo);
    both[32..].copy_from_slice(hi);
    keccak(&both)
}

/// The root a proof leads to from `leaf` (`MerkleProof.processProof`).
pub fn process_proof(leaf: Node, proof: &[Node]) -> Node {
    proof
        .iter()
        .fold(leaf, |acc, sibling| node_hash(&acc, sibling))
}

/// Whether `proof` shows that `address` is owed `amount` (in total) in the tree whose root is
/// `root`: what the payout contract checks before it pays.
pub fn verify(root: &Node, address: &Address, amount: &Amount, proof: &[Node]) -> bool {
    process_proof(leaf_hash(address, amount), proof) == *root
}

/// [`verify`] on text, as a page or a script has it: the root and the proof's hashes as `0x` and
/// 64 hex characters, the address (lowercase, uppercase or checksummed) and the amount in
/// decimal. Malformed text is an error; a well-formed proof that does not verify is `false`.
pub fn verify_hex<S: AsRef<str>>(
    root: &str,
    address: &str,
    amount: &str,
    proof: &[S],
) -> Result<bool, MerkleError> {
    let root = parse_node(root)?;
    let address = Address::parse(address)?;
    let amount = Amount::from_decimal(amount)?;
    let proof = proof
        .iter()
        .map(|p| parse_node(p.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(verify(&root, &address, &amount, &proof))
}

/// Parses `0x` and 64 hex characters (either case).
pub fn parse_node(text: &str) -> Result<Node, MerkleError> {
    let mut node = [0; 32];
    text.strip_prefix("0x")
        .filter(|h| h.len() == 64)
        .and_then(|h| hex::decode_to_slice(h, &mut node).ok())
        .ok_or_else(|| MerkleError::Hash(text.to_string()))?;
    Ok(node)
}

/// `0x` and 64 lowercase hex characters, as the JS library writes hashes.
pub fn node_hex(node: &Node) -> String {
    format!("0x{}", hex::encode(node))
}

/// One address's leaf, in the order the tree was given its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub address: Address,
    pub amount: Amount,
    /// Its leaf's place in [`EarningsTree::nodes`].
    pub tree_index: usize,
}

/// OpenZeppelin's `StandardMerkleTree` of `(address, uint256)`, one leaf per address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarningsTree {
    /// The complete binary tree: the root first, the leaves last.
    tree: Vec<Node>,
    /// In the order given.
    entries: Vec<Entry>,
    /// Address → its place in `entries`.
    index: HashMap<Address, usize>,
}

impl EarningsTree {
    /// Builds the tree `StandardMerkleTree.of(values, ["address", "uint256"])` builds (leaves
    /// sorted by hash); the dump keeps `values` in the order given.
    pub fn new(values: impl IntoIterator<Item = (Address, Amount)>) -> Result<Self, MerkleError> {
        let values: Vec<(Address, Amount)> = values.into_iter().collect();
        if values.is_empty() {
            return Err(MerkleError::Empty);
        }
        let mut index = HashMap::with_capacity(values.len());
        for (i, (address, _)) in values.iter().enumerate() {
            if index.insert(*address, i).is_some() {
                return Err(MerkleError::DuplicateAddress(*address));
            }
        }
        let mut hashed: Vec<(Node, usize)> = values
            .iter()
            .enumerate()
            .map(|(i, (address, amount))| (leaf_hash(address, amount), i))
            .collect();
        // Distinct addresses make distinct leaves (barring a keccak collision), so this order is
        // the JS library's stable sort by hash.
        hashed.sort_unstable();
        let n = hashed.len();
        let len = 2 * n - 1;
        let mut tree = vec![[0u8; 32]; len];
        let mut entries: Vec<Entry> = values
            .iter()
            .map(|&(address, amount)| Entry {
                address,
                amount,
                tree_index: 0,
            })
            .collect();
        for (leaf_index, (hash, value_index)) in hashed.into_iter().enumerate() {
            let tree_index = len - 1 - leaf_index;
            tree[tree_index] = hash;
            entries[value_index].tree_index = tree_index;
        }
        for i in (0..len - n).rev() {
            tree[i] = node_hash(&tree[2 * i + 1], &tree[2 * i + 2]);
        }
        Ok(EarningsTree {
            tree,
            entries,
            index,
        })
    }

    /// The root the payout contract holds.
    pub fn root(&self) -> Node {
        self.tree[0]
    }

    /// How many addresses (leaves) it has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Never true: a tree has at least one leaf.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every node, the root first (the dump's `tree`).
    pub fn nodes(&self) -> &[Node] {
        &self.tree
    }

    /// The leaves in the order the tree was given them (the dump's `values`).
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The amount the tree owes `address`, if it has a leaf.
    pub fn amount(&self, address: &Address) -> Option<Amount> {
        self.index.get(address).map(|&i| self.entries[i].amount)
    }

    /// The siblings from `address`'s leaf up to the root (`getProof`): what a claim sends to the
    /// contract with the amount.
    pub fn proof(&self, address: &Address) -> Result<Vec<Node>, MerkleError> {
        let &i = self
            .index
            .get(address)
            .ok_or(MerkleError::NotInTree(*address))?;
        let mut at = self.entries[i].tree_index;
        let mut proof = Vec::new();
        while at > 0 {
            let sibling = if at % 2 == 1 { at + 1 } else { at - 1 };
            proof.push(self.tree[sibling]);
            at = (at - 1) / 2;
        }
        Ok(proof)
    }

    /// OpenZeppelin's `standard-v1` dump (`StandardMerkleTree.dump()`).
    pub fn dump(&self) -> Dump {
        Dump {
            format: FORMAT.to_string(),
            leaf_encoding: LEAF_ENCODING.iter().map(|s| s.to_string()).collect(),
            tree: self.tree.iter().map(node_hex).collect(),
            values: self
                .entries
                .iter()
                .map(|e| DumpValue {
                    value: [e.address.to_checksum(), e.amount.to_decimal()],
                    tree_index: e.tree_index,
                })
                .collect(),
        }
    }

    /// The dump as compact JSON: byte for byte `JSON.stringify(tree.dump())` of the JS library's
    /// tree built from the same checksummed addresses and decimal amounts.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.dump()).expect("a dump serializes")
    }

    /// Reads a `standard-v1` dump and checks it as `StandardMerkleTree.load` does (every inner
    /// node is the hash of its children; every value's leaf is where it says), and more: there is
    /// one value per leaf, in distinct places, with distinct addresses. A dump that is not sorted
    /// by hash (built with `sortLeaves: false`) loads too, as in the JS library.
    pub fn load(dump: &Dump) -> Result<Self, MerkleError> {
        if dump.format != FORMAT {
            return Err(MerkleError::Format(dump.format.clone()));
        }
        if dump.leaf_encoding != LEAF_ENCODING {
            return Err(MerkleError::LeafEncoding(dump.leaf_encoding.clone()));
        }
        let tree = dump
            .tree
            .iter()
            .map(|h| parse_node(h))
            .collect::<Result<Vec<_>, _>>()?;
        if tree.is_empty() {
            return Err(MerkleError::Empty);
        }
        let len = tree.len();
        if len % 2 == 0 {
            return Err(MerkleError::Invalid(format!(
                "{len} nodes: a tree of n leaves has 2n - 1"
            )));
        }
        let leaves = len.div_ceil(2);
        for i in 0..len - leaves {
            if tree[i] != node_hash(&tree[2 * i + 1], &tree[2 * i + 2]) {
                return Err(MerkleError::Invalid(format!(
                    "node {i} is not the hash of its children"
                )));
            }
        }
        if dump.values.len() != leaves {
            return Err(MerkleError::Invalid(format!(
                "{} values for {leaves} leaves",
                dump.values.len()
            )));
        }
        let mut index = HashMap::with_capacity(leaves);
        let mut taken = vec![false; leaves];
        let mut entries = Vec::with_capacity(leaves);
        for (i, v) in dump.values.iter().enumerate() {
            let address = Address::parse(&v.value[0])?;
            let amount = Amount::from_decimal(&v.value[1])?;
            let tree_index = v.tree_index;
            if tree_index < len - leaves || tree_index >= len {
                return Err(MerkleError::Invalid(format!(
                    "value {i} has treeIndex {tree_index}, not a leaf"
                )));
            }
            if std::mem::replace(&mut taken[tree_index - (len - leaves)], true) {
                return Err(MerkleError::Invalid(format!(
                    "two values have treeIndex {tree_index}"
                )));
            }
            if tree[tree_index] != leaf_hash(&address, &amount) {
                return Err(MerkleError::Invalid(format!(
                    "value {i} ({address}, {amount}) is not the leaf at {tree_index}"
                )));
            }
            if index.insert(address, i).is_some() {
                return Err(MerkleError::DuplicateAddress(address));
            }
            entries.push(Entry {
                address,
                amount,
                tree_index,
            });
        }
        Ok(EarningsTree {
            tree,
            entries,
            index,
        })
    }

    /// [`EarningsTree::load`] from the dump's JSON text.
    pub fn from_json(json: &str) -> Result<Self, MerkleError> {
        let dump: Dump =
            serde_json::from_str(json).map_err(|e| MerkleError::Json(e.to_string()))?;
        Self::load(&dump)
    }
}

/// OpenZeppelin's `standard-v1` dump, field for field and in its key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dump {
    /// "standard-v1".
    pub format: String,
    /// `["address", "uint256"]`.
    pub leaf_encoding: Vec<String>,
    /// Every node as `0x` and 64 hex characters, the root first.
    pub tree: Vec<String>,
    pub values: Vec<DumpValue>,
}

/// One value of a dump: `[address, amount in decimal]` and its leaf's place in `tree`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DumpValue {
    pub value: [String; 2],
    pub tree_index: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(byte: u8) -> Address {
        Address([byte; 20])
    }

    fn toolchain_vector() -> EarningsTree {
        EarningsTree::new([
            (addr(0x11), Amount::from(100u64)),
            (addr(0x22), Amount::from(250u64)),
            (addr(0x33), Amount::from(7u64)),
        ])
        .unwrap()
    }

    #[test]
    fn matches_the_root_the_js_library_gives_for_three_leaves() {
        let tree = toolchain_vector();
        assert_eq!(
            node_hex(&tree.root()),
            "0x80d30dca9859e3c2635ecc7018b5777b85f094a9595a8dbe72421225289e78d7"
        );
        for e in tree.entries() {
            let proof = tree.proof(&e.address).unwrap();
            assert!(verify(&tree.root(), &e.address, &e.amount, &proof));
            let more = Amount::from(e.amount.to_u128().unwrap() + 1);
            assert!(!verify(&tree.root(), &e.address, &more, &proof));
        }
    }

    #[test]
    fn one_leaf_is_its_own_root_and_none_is_an_error() {
        let tree = EarningsTree::new([(addr(0x44), Amount::from(5u64))]).unwrap();
        assert_eq!(tree.root(), leaf_hash(&addr(0x44), &Amount::from(5u64)));
        assert_eq!(tree.proof(&addr(0x44)).unwrap(), Vec::<Node>::new());
        assert_eq!(EarningsTree::new([]), Err(MerkleError::Empty));
        assert_eq!(
            EarningsTree::new([(addr(1), Amount::ZERO), (addr(1), Amount::from(2u64))]),
            Err(MerkleError::DuplicateAddress(addr(1)))
        );
        assert_eq!(tree.proof(&addr(2)), Err(MerkleError::NotInTree(addr(2))));
    }

    #[test]
    fn amounts_round_trip_through_decimal() {
        for text in [
            "0",
            "7",
            "18446744073709551615",
            "18446744073709551616",
            "340282366920938463463374607431768211455",
            "340282366920938463463374607431768211456",
            "10000000000000000000000000000000000000000000000000000000000",
            "115792089237316195423570985008687907853269984665640564039457584007913129639935",
        ] {
            assert_eq!(Amount::from_decimal(text).unwrap().to_decimal(), text);
        }
        assert_eq!(
            Amount::from_decimal(
                "115792089237316195423570985008687907853269984665640564039457584007913129639935"
            )
            .unwrap(),
            Amount::MAX
        );
        assert_eq!(Amount::from_decimal("007").unwrap(), Amount::from(7u64));
        assert_eq!(Amount::from(u128::MAX).to_decimal(), u128::MAX.to_string());
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "0x10",
            "1e3",
            "115792089237316195423570985008687907853269984665640564039457584007913129639936",
        ] {
            assert_eq!(
                Amount::from_decimal(bad),
                Err(MerkleError::Amount(bad.to_string()))
            );
        }
    }

    #[test]
    fn addresses_and_amounts_are_json_strings() {
        let a = Address::parse("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").unwrap();
        let json = serde_json::to_string(&(a, Amount::MAX)).unwrap();
        assert_eq!(
            json,
            r#"["0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed","115792089237316195423570985008687907853269984665640564039457584007913129639935"]"#
        );
        assert_eq!(
            serde_json::from_str::<(Address, Amount)>(&json).unwrap(),
            (a, Amount::MAX)
        );
        assert!(serde_json::from_str::<Amount>("7").is_err());
        assert!(
            serde_json::from_str::<Address>(r#""0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD""#)
                .is_err()
        );
    }

    #[test]
    fn dumps_load_back_and_tampered_dumps_do_not() {
        let tree = toolchain_vector();
        let json = tree.to_json();
        assert!(json.starts_with(
            r#"{"format":"standard-v1","leafEncoding":["address","uint256"],"tree":["0x80d30dca"#
        ));
        assert!(json.contains(
            r#"{"value":["0x1111111111111111111111111111111111111111","100"],"treeIndex":"#
        ));
        assert_eq!(EarningsTree::from_json(&json).unwrap(), tree);

        // Lowercase addresses load too (and are written back checksummed).
        let mixed = EarningsTree::new([(
            Address::parse("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").unwrap(),
            Amount::from(1u64),
        )])
        .unwrap();
        let lower = mixed.to_json().replace(
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        );
        assert_ne!(lower, mixed.to_json());
        assert_eq!(EarningsTree::from_json(&lower).unwrap(), mixed);
        let bad_checksum = mixed.to_json().replace(
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",
        );
        assert!(matches!(
            EarningsTree::from_json(&bad_checksum),
            Err(MerkleError::Address(LinkError::BadChecksum { .. }))
        ));

        let mut dump = tree.dump();
        dump.values[0].value[1] = "101".into();
        assert!(matches!(
            EarningsTree::load(&dump),
            Err(MerkleError::Invalid(_))
        ));
        let mut dump = tree.dump();
        dump.tree[0] = node_hex(&[0; 32]);
        assert!(matches!(
            EarningsTree::load(&dump),
            Err(MerkleError::Invalid(_))
        ));
        let mut dump = tree.dump();
        dump.values.pop();
        assert!(matches!(
            EarningsTree::load(&dump),
            Err(MerkleError::Invalid(_))
        ));
        let mut dump = tree.dump();
        dump.values[1].tree_index = dump.values[0].tree_index;
        assert!(matches!(
            EarningsTree::load(&dump),
            Err(MerkleError::Invalid(_))
        ));
        let mut dump = tree.dump();
        dump.format = "simple-v1".into();
        assert_eq!(
            EarningsTree::load(&dump),
            Err(MerkleError::Format("simple-v1".into()))
        );
        assert!(matches!(
            EarningsTree::from_json("{}"),
            Err(MerkleError::Json(_))
        ));
    }

    #[test]
    fn verify_hex_reads_text_and_refuses_malformed_text() {
        let tree = toolchain_vector();
        let root = node_hex(&tree.root());
        // 0x3333…'s leaf is one of the two deepest (its proof has two hashes).
        let proof: Vec<String> = tree
            .proof(&addr(0x33))
            .unwrap()
            .iter()
            .map(node_hex)
            .collect();
        assert_eq!(proof.len(), 2);
        let a = "0x3333333333333333333333333333333333333333";
        assert_eq!(verify_hex(&root, a, "7", &proof), Ok(true));
        assert_eq!(verify_hex(&root, a, "8", &proof), Ok(false));
        assert_eq!(verify_hex(&root, a, "7", &proof[..1]), Ok(false));
        assert!(matches!(
            verify_hex(&root, "0x3333", "7", &proof),
            Err(MerkleError::Address(_))
        ));
        assert!(matches!(
            verify_hex(&root, a, "2.5", &proof),
            Err(MerkleError::Amount(_))
        ));
        assert!(matches!(
            verify_hex(&root[..10], a, "7", &proof),
            Err(MerkleError::Hash(_))
        ));
    }
}
