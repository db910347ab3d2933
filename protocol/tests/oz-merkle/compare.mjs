// Runs OpenZeppelin's StandardMerkleTree (@openzeppelin/merkle-tree, pinned in package.json) on
// the vectors that protocol/tests/oz_merkle.rs writes, so the Rust tree is checked against the
// library itself rather than against a copy of its algorithm.
//
// Usage: node compare.mjs INPUT.json OUTPUT.json
//   INPUT:  {"values": [[address, amount decimal], ...], "prove": [address, ...],
//            "rustDump": "<the Rust tree's dump JSON>" (optional)}
//   OUTPUT: {"root": "0x…", "dump": "<JSON.stringify(tree.dump())>",
//            "proofs": {address: ["0x…", …]}, "verified": [true, …] (each proof, by the library),
//            "rustDumpRoot": "0x…" (StandardMerkleTree.load of rustDump, its root),
//            "rustDumpProofs": {address: […]} (proofs from that loaded tree)}
import { StandardMerkleTree } from '@openzeppelin/merkle-tree';
import { readFileSync, writeFileSync } from 'node:fs';

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: node compare.mjs INPUT.json OUTPUT.json');
  process.exit(2);
}
const { values, prove, rustDump } = JSON.parse(readFileSync(input, 'utf8'));
const encoding = ['address', 'uint256'];
const tree = StandardMerkleTree.of(values, encoding);
const amountOf = new Map(values.map(([a, v]) => [a.toLowerCase(), v]));
const proofsOf = (t) =>
  Object.fromEntries(prove.map((a) => [a, t.getProof([a, amountOf.get(a.toLowerCase())])]));
const proofs = proofsOf(tree);
const result = {
  root: tree.root,
  dump: JSON.stringify(tree.dump()),
  proofs,
  verified: prove.map((a) =>
    StandardMerkleTree.verify(tree.root, encoding, [a, amountOf.get(a.toLowerCase())], proofs[a]),
  ),
};
if (rustDump !== undefined) {
  const loaded = StandardMerkleTree.load(JSON.parse(rustDump)); // validates every node and leaf
  result.rustDumpRoot = loaded.root;
  result.rustDumpProofs = proofsOf(loaded);
}
writeFileSync(output, JSON.stringify(result));
