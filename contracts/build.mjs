// Compiles the payout contract (and the test token) offline with npm's solc into out/*.json,
// artifacts with "abi", "bytecode" and "deployedBytecode" (the shape alloy's `sol!` macro reads).
//
//   node build.mjs          write out/GlowwormPayout.json and out/TestToken.json
//   node build.mjs --check  compile and compare with the committed files; exit 1 if they differ
//
// Run `npm install --ignore-scripts` in this folder first (`cargo xtask contracts` does both).
// The artifacts are committed so that building the Rust crates needs no Node.js.

import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import solc from 'solc';

const here = dirname(fileURLToPath(import.meta.url));

// The contracts compiled, by source unit name (a path relative to this folder), and the
// contract in each that gets an artifact.
const CONTRACTS = [
  { source: 'src/GlowwormPayout.sol', name: 'GlowwormPayout' },
  { source: 'test/TestToken.sol', name: 'TestToken' },
];

// Fixed settings, so the bytecode is the same on every machine. "cancun" runs on Ethereum and
// on the usual L2s; newer targets would add opcodes some chains lack.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};

// Imports such as "@openzeppelin/contracts/..." come from node_modules.
function findImport(path) {
  const file = join(here, 'node_modules', path);
  if (!existsSync(file)) {
    return { error: `not found: ${path} (run \`npm install --ignore-scripts\` in contracts/)` };
  }
  return { contents: readFileSync(file, 'utf8') };
}

function compile() {
  const sources = {};
  for (const { source } of CONTRACTS) {
    sources[source] = { content: readFileSync(join(here, source), 'utf8') };
  }
  const input = { language: 'Solidity', sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const problems = (output.errors ?? []).filter((e) => e.severity === 'error');
  for (const e of output.errors ?? []) {
    console.error(e.formattedMessage);
  }
  if (problems.length > 0) {
    throw new Error(`solc reported ${problems.length} error(s)`);
  }
  const artifacts = {};
  for (const { source, name } of CONTRACTS) {
    const contract = output.contracts[source][name];
    const artifact = {
      contractName: name,
      sourceName: source,
      compiler: { version: solc.version(), settings: SETTINGS },
      abi: contract.abi,
      bytecode: `0x${contract.evm.bytecode.object}`,
      deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
    };
    artifacts[`out/${name}.json`] = `${JSON.stringify(artifact, null, 2)}\n`;
  }
  return artifacts;
}

const check = process.argv.includes('--check');
const artifacts = compile();
let stale = [];
for (const [path, text] of Object.entries(artifacts)) {
  const file = join(here, path);
  if (check) {
    const committed = existsSync(file) ? readFileSync(file, 'utf8') : null;
    if (committed !== text) stale.push(`contracts/${path}`);
  } else {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
    console.log(`wrote contracts/${path}`);
  }
}
if (stale.length > 0) {
  console.error(
    `${stale.join(', ')} differ from a fresh compile of the Solidity sources: ` +
      'rebuild them with `cargo xtask contracts` and commit the result',
  );
  process.exit(1);
}
if (check) console.log('contracts/out/*.json match a fresh compile');
