//! The committed artifacts (contracts/out/*.json, which the `sol!` bindings are generated from)
//! are what the Solidity sources compile to, and the tests' Merkle tree is OpenZeppelin's.
//! Both need Node.js and contracts/node_modules (`cargo xtask test` installs them).

mod common;

use alloy::primitives::{Address, B256};
use common::{INSTALL_HINT, Tree, contracts_dir};
use std::process::Command;

fn require_node_modules() {
    let solc = contracts_dir().join("node_modules/solc");
    assert!(
        solc.exists(),
        "{} is missing: {INSTALL_HINT}",
        solc.display()
    );
}

fn node(args: &[&str]) -> std::process::Output {
    Command::new("node")
        .args(args)
        .current_dir(contracts_dir())
        .output()
        .expect("could not run node: Node.js is needed (apt-get install nodejs npm)")
}

#[test]
fn committed_artifacts_match_a_fresh_compile() {
    require_node_modules();
    let out = node(&["build.mjs", "--check"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Root and proofs from @openzeppelin/merkle-tree for trees of 1 to 7 leaves.
#[test]
fn test_tree_matches_openzeppelin_merkle_tree() {
    require_node_modules();
    for n in 1..=7u8 {
        let values: Vec<(Address, u64)> = (1..=n)
            .map(|i| (Address::repeat_byte(i * 17), u64::from(i) * 1_000 + 3))
            .collect();
        let json_values: Vec<String> = values
            .iter()
            .map(|(a, v)| format!("[\"{a}\",\"{v}\"]"))
            .collect();
        let script = format!(
            "import {{ StandardMerkleTree }} from '@openzeppelin/merkle-tree';
             const t = StandardMerkleTree.of([{}], ['address', 'uint256']);
             console.log(JSON.stringify({{ root: t.root, proofs: Array.from(t.entries()).map(([i, v]) => [v[0], t.getProof(i)]) }}));",
            json_values.join(",")
        );
        let out = node(&["--input-type=module", "-e", &script]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let js: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let tree = Tree::of(&values);
        assert_eq!(
            js["root"].as_str().unwrap(),
            tree.root().to_string(),
            "n = {n}"
        );
        for entry in js["proofs"].as_array().unwrap() {
            let account: Address = entry[0].as_str().unwrap().parse().unwrap();
            let amount = values.iter().find(|(a, _)| *a == account).unwrap().1;
            let proof: Vec<B256> = entry[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().parse().unwrap())
                .collect();
            assert_eq!(proof, tree.proof(account, amount), "n = {n}, {account}");
        }
    }
}
