//! The earnings tree (`glowworm_protocol::merkle`) against OpenZeppelin's own library: for fixed
//! vectors and seeded random trees of 1 to 100,000 leaves, `oz-merkle/compare.mjs` builds
//! `StandardMerkleTree.of` in Node from the same (address, amount) pairs, and the roots, the dumps
//! (byte for byte: `JSON.stringify(tree.dump())` against `EarningsTree::to_json`) and the proofs of a
//! sample of addresses must be equal; the library's dump loads into the Rust tree, the Rust dump
//! loads into the library (`StandardMerkleTree.load`, trees up to 1,000 leaves), and the Rust
//! `verify` accepts the library's proofs and refuses them tampered with.
//!
//! Needs Node.js and the pinned library: `npm ci` in `protocol/tests/oz-merkle` (`cargo xtask test`
//! runs it).

use glowworm_protocol::merkle::{
    Address, Amount, EarningsTree, Node, node_hex, parse_node, verify,
};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn oz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oz-merkle")
}

/// What compare.mjs answers.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Js {
    root: String,
    dump: String,
    proofs: HashMap<String, Vec<String>>,
    verified: Vec<bool>,
    rust_dump_root: Option<String>,
    rust_dump_proofs: Option<HashMap<String, Vec<String>>>,
}

fn run_js(tree: &EarningsTree, prove: &[Address], load_rust_dump: bool) -> Js {
    let dir = oz_dir();
    assert!(
        dir.join("node_modules/@openzeppelin/merkle-tree/package.json")
            .exists(),
        "@openzeppelin/merkle-tree is not installed: run `npm ci` in {} (`cargo xtask test` does)",
        dir.display()
    );
    let values: Vec<[String; 2]> = tree
        .entries()
        .iter()
        .map(|e| [e.address.to_string(), e.amount.to_decimal()])
        .collect();
    let mut input = serde_json::json!({
        "values": values,
        "prove": prove.iter().map(Address::to_string).collect::<Vec<_>>(),
    });
    if load_rust_dump {
        input["rustDump"] = tree.to_json().into();
    }
    let tmp = tempfile::tempdir().unwrap();
    let (input_path, output_path) = (tmp.path().join("in.json"), tmp.path().join("out.json"));
    std::fs::write(&input_path, input.to_string()).unwrap();
    let status = Command::new("node")
        .arg(dir.join("compare.mjs"))
        .arg(&input_path)
        .arg(&output_path)
        .status()
        .unwrap_or_else(|e| panic!("could not run node (Node.js is needed for this test): {e}"));
    assert!(status.success(), "compare.mjs failed: {status}");
    serde_json::from_slice(&std::fs::read(&output_path).unwrap()).unwrap()
}

fn nodes(hex: &[String]) -> Vec<Node> {
    hex.iter().map(|h| parse_node(h).unwrap()).collect()
}

/// Builds the tree in Rust and in Node from `values` and checks they agree, proving `prove`
/// (addresses in the tree); returns the Rust tree.
fn compare(
    values: Vec<(Address, Amount)>,
    prove: &[Address],
    load_rust_dump: bool,
) -> EarningsTree {
    let n = values.len();
    let started = Instant::now();
    let tree = EarningsTree::new(values.clone()).unwrap();
    let built = started.elapsed();
    let js = run_js(&tree, prove, load_rust_dump);
    eprintln!(
        "{n} leaves: Rust built the tree in {built:.2?} (this profile), the dumps are {} bytes",
        js.dump.len()
    );
    let root = tree.root();
    assert_eq!(node_hex(&root), js.root, "roots of {n} leaves");
    let rust_json = tree.to_json();
    assert!(
        rust_json == js.dump,
        "dumps of {n} leaves differ (lengths {} and {})",
        rust_json.len(),
        js.dump.len()
    );
    assert_eq!(EarningsTree::from_json(&js.dump).unwrap(), tree);
    if load_rust_dump {
        assert_eq!(js.rust_dump_root.as_deref(), Some(js.root.as_str()));
    }
    assert_eq!(js.verified, vec![true; prove.len()]);

    // Another tree: the same values but one amount changed.
    let mut changed = values.clone();
    changed[0].1 = bump(changed[0].1);
    let other_root = EarningsTree::new(changed).unwrap().root();
    assert_ne!(other_root, root);

    for (i, address) in prove.iter().enumerate() {
        let js_proof = nodes(&js.proofs[&address.to_string()]);
        assert_eq!(tree.proof(address).unwrap(), js_proof, "proof of {address}");
        if let Some(loaded) = &js.rust_dump_proofs {
            assert_eq!(nodes(&loaded[&address.to_string()]), js_proof);
        }
        let amount = tree.amount(address).unwrap();
        assert!(verify(&root, address, &amount, &js_proof));
        assert!(!verify(&root, address, &bump(amount), &js_proof));
        assert!(!verify(&other_root, address, &amount, &js_proof));
        let mut someone_else = *address;
        someone_else.0[19] ^= 1;
        assert!(!verify(&root, &someone_else, &amount, &js_proof));
        if let Some(other) = prove.get(i + 1) {
            assert!(!verify(&root, other, &amount, &js_proof));
        }
        if !js_proof.is_empty() {
            let truncated = &js_proof[..js_proof.len() - 1];
            assert!(!verify(&root, address, &amount, truncated));
        }
        let mut longer = js_proof.clone();
        longer.push(root);
        assert!(!verify(&root, address, &amount, &longer));
    }
    tree
}

/// A different amount: one more, or one less for 2^256 - 1.
fn bump(amount: Amount) -> Amount {
    let mut bytes = amount.to_be_bytes();
    if amount == Amount::MAX {
        bytes[31] -= 1;
        return Amount::from_be_bytes(bytes);
    }
    for b in bytes.iter_mut().rev() {
        let (sum, carry) = b.overflowing_add(1);
        *b = sum;
        if !carry {
            break;
        }
    }
    Amount::from_be_bytes(bytes)
}

fn addr(byte: u8) -> Address {
    Address([byte; 20])
}

fn amount(decimal: &str) -> Amount {
    Amount::from_decimal(decimal).unwrap()
}

#[test]
fn fixed_vectors_match_openzeppelin() {
    // The vector in shared/toolchain.md.
    let tree = compare(
        vec![
            (addr(0x11), amount("100")),
            (addr(0x22), amount("250")),
            (addr(0x33), amount("7")),
        ],
        &[addr(0x11), addr(0x22), addr(0x33)],
        true,
    );
    assert_eq!(
        node_hex(&tree.root()),
        "0x80d30dca9859e3c2635ecc7018b5777b85f094a9595a8dbe72421225289e78d7"
    );

    // One leaf: the root is the leaf and the proof is empty.
    let tree = compare(vec![(addr(0xab), amount("1"))], &[addr(0xab)], true);
    assert!(tree.proof(&addr(0xab)).unwrap().is_empty());

    // Two leaves, given in both orders: same root, different dumps (values keep their order).
    let a = Address::parse("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").unwrap();
    let b = Address::parse("0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359").unwrap();
    let ab = compare(vec![(a, amount("0")), (b, amount("5"))], &[a, b], true);
    let ba = compare(vec![(b, amount("5")), (a, amount("0"))], &[a, b], true);
    assert_eq!(ab.root(), ba.root());
    assert_ne!(ab.to_json(), ba.to_json());

    // Amounts near 2^64, 2^128 and 2^256.
    let big = [
        "0",
        "18446744073709551615",
        "18446744073709551616",
        "340282366920938463463374607431768211455",
        "340282366920938463463374607431768211456",
        "340282366920938463463374607431768211457",
        "57896044618658097711785492504343953926634992332820282019728792003956564819968",
        "115792089237316195423570985008687907853269984665640564039457584007913129639934",
        "115792089237316195423570985008687907853269984665640564039457584007913129639935",
    ];
    let values: Vec<(Address, Amount)> = big
        .iter()
        .enumerate()
        .map(|(i, a)| (addr(0xc0 + i as u8), amount(a)))
        .collect();
    let prove: Vec<Address> = values.iter().map(|v| v.0).collect();
    compare(values, &prove, true);
}

/// `n` distinct random addresses (checksummed in the dump: mixed case) with amounts of every
/// size: a third below 2^64, a third below 2^128, a third anything up to 2^256 - 1.
fn random_values(rng: &mut ChaCha8Rng, n: usize) -> Vec<(Address, Amount)> {
    let mut seen = std::collections::HashSet::new();
    let mut values = Vec::with_capacity(n);
    while values.len() < n {
        let mut address = [0u8; 20];
        rng.fill_bytes(&mut address);
        if !seen.insert(address) {
            continue;
        }
        let mut bytes = [0u8; 32];
        let from = match rng.next_u32() % 3 {
            0 => 24,
            1 => 16,
            _ => 0,
        };
        rng.fill_bytes(&mut bytes[from..]);
        values.push((Address(address), Amount::from_be_bytes(bytes)));
    }
    values
}

#[test]
fn random_trees_match_openzeppelin() {
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    for n in [1, 2, 3, 7, 1000, 100_000] {
        let values = random_values(&mut rng, n);
        // Every address up to 1,000 leaves; 200 of the 100,000.
        let prove: Vec<Address> = if n <= 1000 {
            values.iter().map(|v| v.0).collect()
        } else {
            (0..200)
                .map(|_| values[rng.next_u32() as usize % n].0)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        compare(values, &prove, n <= 1000);
    }
}
