// End to end: earnings claimed on a real chain from the page. anvil (a real local chain) with the
// test token and the payout contract (deployed by `glowworm-relay chain deploy`), a requester's
// deposit that covers the earnings, the real relay publishing roots to it, real headless
// Chromium with WebGPU, the real page, and an injected EIP-1193 wallet backed by an anvil
// account (its requests go to anvil, which signs for its unlocked accounts). The person links,
// contributes until credited, the operator closes an epoch, the relay publishes its root; the
// page shows the earnings, "Check my proof" finds the proof valid against the contract's root,
// Claim sends the transaction through the wallet, and the token balance on chain rises by
// exactly the claimed amount. A relay without a chain says claims are off.
//
// Run from the repository root after `cargo xtask build` and `cargo build -p glowworm-relay`:
//   node --test tests/e2e/claim.test.mjs
// Needs contracts/node_modules (anvil and the compiled artifacts in contracts/out).
// Environment and helpers: see harness.mjs. On failure, artifacts go to tests/e2e/artifacts/.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ethers } from 'ethers';
import {
  ConsoleLog, RELAY_BIN, ROOT, clickStopAndWait, getJson, integerIn, launchBrowser, netlifyCsp, openPage,
  saveArtifacts, serveWithCsp, startRelay, stopRelay, waitFor,
} from './harness.mjs';

const ANVIL = process.env.ANVIL
  ?? path.join(ROOT, 'contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil');
const CHAIN_ID = 31337;
// SwiftShader / lavapipe are slow: be generous, as the other browser tests are.
const VERIFIED_TIMEOUT_MS = 120_000;
const LINK_TIMEOUT_MS = 60_000;
const PUBLISH_TIMEOUT_MS = 60_000;
const PAGE_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 300_000;

// The well-known anvil development keys (public, worth nothing): 0 deploys and owns, 1 publishes
// roots (the relay's publisher key), 2 is a requester who deposits, 3 and 4 contribute.
const KEYS = [
  '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80',
  '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
  '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a',
  '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6',
  '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a',
];
const addressOf = (key) => new ethers.Wallet(key).address;
const DEPOSIT = 10n ** 18n;

async function artifact(name) {
  return JSON.parse(await readFile(path.join(ROOT, 'contracts/out', `${name}.json`), 'utf8'));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** anvil on a free port, mining a block every second (so confirmations come by themselves). */
async function startAnvil() {
  const port = await freePort();
  const child = spawn(ANVIL, ['--port', String(port), '--chain-id', String(CHAIN_ID), '--block-time', '1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = [];
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk) => log.push(chunk));
  child.stderr.on('data', (chunk) => log.push(chunk));
  const url = `http://127.0.0.1:${port}`;
  await waitFor('anvil to listen', async () => {
    if (child.exitCode !== null) throw new Error(`anvil exited: ${log.join('')}`);
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
    });
    return response.ok;
  }, { timeoutMs: 30_000 });
  return { child, url, log };
}

async function stopChild(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** Runs the relay binary with `args` to completion; resolves its stdout. */
async function relayCommand(args) {
  const child = spawn(RELAY_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (chunk) => { stdout += chunk; });
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, `glowworm-relay ${args.slice(0, 2).join(' ')}: ${stderr}`);
  return stdout;
}

/** A private key in a 0600 file, as the relay asks. */
async function keyFile(dir, name, key) {
  const file = path.join(dir, name);
  await writeFile(file, `${key.slice(2)}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return file;
}

/**
 * Runs in the page before its own scripts: one EIP-1193 wallet, announced by EIP-6963, for
 * `address`; every request but the account list goes to anvil through window.__anvil (a
 * Playwright binding: the page's CSP allows it no connection to anvil itself). Requests are
 * logged in window.__walletCalls; window.__rejectNext = method makes the next request of that
 * method fail as a person's rejection does (EIP-1193 code 4001).
 */
function installAnvilWallet({ address, uuid }) {
  window.__walletCalls = [];
  const info = Object.freeze({
    uuid,
    name: 'Anvil Test Wallet',
    icon: 'data:image/svg+xml;base64,PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciLz4=',
    rdns: 'org.glowworm.test.anvil',
  });
  const provider = {
    async request({ method, params = [] }) {
      window.__walletCalls.push({ method, params });
      if (method === window.__rejectNext) {
        window.__rejectNext = null;
        throw Object.assign(new Error('User rejected the request.'), { code: 4001 });
      }
      if (method === 'eth_requestAccounts' || method === 'eth_accounts') return [address.toLowerCase()];
      const reply = await window.__anvil(method, params);
      if (reply.error) throw Object.assign(new Error(reply.error.message), { code: reply.error.code });
      return reply.result;
    },
    on() {},
    removeListener() {},
  };
  const announce = () => window.dispatchEvent(new CustomEvent('eip6963:announceProvider', {
    detail: Object.freeze({ info, provider }),
  }));
  window.addEventListener('eip6963:requestProvider', announce);
  announce();
}

async function textOf(page, selector) {
  return ((await page.locator(selector).textContent()) ?? '').trim();
}

describe('claiming earnings on a real chain from the page', { timeout: 2 * TEST_TIMEOUT_MS + 120_000 }, () => {
  let workDir;
  let anvil;
  let relay;
  let offRelay;
  let browser;
  let csp;
  let provider;
  let token;
  let payout;
  const consoleLog = new ConsoleLog();
  let contexts = [];

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'glowworm-e2e-claim-'));
    anvil = await startAnvil();
    console.log(`anvil: ${anvil.url}`);
    provider = new ethers.JsonRpcProvider(anvil.url, CHAIN_ID, { staticNetwork: true, pollingInterval: 250 });
    const deployer = new ethers.Wallet(KEYS[0], provider);

    // The token, then the payout contract by the operator's own command.
    const tokenArtifact = await artifact('TestToken');
    const deployed = await new ethers.ContractFactory(tokenArtifact.abi, tokenArtifact.bytecode, deployer).deploy();
    await deployed.waitForDeployment();
    const tokenAddress = await deployed.getAddress();
    const ownerKey = await keyFile(workDir, 'owner.key', KEYS[0]);
    const publisherKey = await keyFile(workDir, 'publisher.key', KEYS[1]);
    const contract = (await relayCommand([
      'chain', 'deploy', '--rpc-url', anvil.url, '--key-file', ownerKey,
      '--token', tokenAddress, '--publisher', addressOf(KEYS[1]),
    ])).trim();
    assert.match(contract, /^0x[0-9a-fA-F]{40}$/, 'chain deploy prints the contract address');
    console.log(`token ${tokenAddress}, payout contract ${contract}`);
    payout = new ethers.Contract(contract, (await artifact('GlowwormPayout')).abi, provider);
    token = new ethers.Contract(tokenAddress, tokenArtifact.abi, provider);

    // A requester deposits enough to cover every root of the test (the contract refuses a root
    // whose total exceeds the deposits).
    const requester = new ethers.Wallet(KEYS[2], provider);
    await (await token.connect(requester).mint(requester.address, DEPOSIT)).wait();
    await (await token.connect(requester).approve(contract, DEPOSIT)).wait();
    await (await payout.connect(requester).deposit(DEPOSIT, ethers.ZeroHash)).wait();
    assert.equal(await payout.totalDeposited(), DEPOSIT);

    relay = await startRelay(workDir, [
      '--siwe-chain-id', String(CHAIN_ID),
      '--chain-rpc-url', anvil.url,
      '--payout-contract', contract,
      '--publisher-key-file', publisherKey,
      '--chain-id', String(CHAIN_ID),
      '--confirmations', '1',
      '--token-units-per-credit', '1',
      '--chain-poll-seconds', '1',
      '--epoch-seconds', '0',
    ]);
    console.log(`relay: ${relay.url}`);
    csp = await netlifyCsp();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close().catch((err) => console.error(`closing the browser: ${err.message}`));
    await stopRelay(relay);
    await stopRelay(offRelay);
    await stopChild(anvil?.child);
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  /** A fresh browser profile with the anvil wallet of `key` injected. */
  async function walletContext(relayUrl, key) {
    const context = await browser.newContext();
    contexts.push(context);
    await context.exposeFunction('__anvil', async (method, params) => {
      const response = await fetch(anvil.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
      });
      return response.json();
    });
    await context.addInitScript(installAnvilWallet, { address: addressOf(key), uuid: crypto.randomUUID() });
    await serveWithCsp(context, relayUrl, csp);
    return context;
  }

  const withArtifacts = (name, relayOf, body) => async () => {
    contexts = [];
    try {
      await body();
      assert.deepEqual(consoleLog.errors, [], 'no console errors in the browser');
    } catch (err) {
      await saveArtifacts(`claim-${name}`, contexts, consoleLog, relayOf());
      if (anvil) console.error(`anvil log (tail):\n${anvil.log.join('').slice(-3000)}`);
      throw err;
    } finally {
      for (const context of contexts) await context.close().catch(() => {});
      consoleLog.errors.length = 0;
    }
  };

  async function connect(page, address) {
    await page.click('#connect');
    await waitFor('the page to show the linked address', async () => {
      const message = await textOf(page, '#wallet-message');
      if (/refused|could not|no browser wallet/i.test(message)) throw new Error(`the page says: ${message}`);
      return (await page.locator('#wallet-connected').isVisible())
        && (await page.locator('#wallet-address').getAttribute('title')) === address;
    }, { timeoutMs: LINK_TIMEOUT_MS });
  }

  test('link, contribute, check the proof against the contract, claim: the balance rises by the claim',
    { timeout: TEST_TIMEOUT_MS },
    withArtifacts('chain', () => relay, async () => {
      const started = Date.now();
      const address = addressOf(KEYS[3]);
      const context = await walletContext(relay.url, KEYS[3]);
      const page = await openPage(context, `${relay.url}/`, 'claim', consoleLog);
      await connect(page, address);
      await page.locator('#earnings').waitFor({ state: 'visible', timeout: 10_000 });
      await waitFor('the panel to say no root is published yet', async () =>
        /no earnings root is published/i.test(await textOf(page, '#earn-off')), { timeoutMs: PAGE_TIMEOUT_MS });
      assert.ok(await page.locator('#claim').isHidden(), 'no Claim before a root is published');

      // Contribute until the address is credited.
      await page.click('#contribute');
      await waitFor('a verified unit credited to the address', async () =>
        (await getJson(`${relay.url}/v1/accounts/${address}`)).credits > 0, { timeoutMs: VERIFIED_TIMEOUT_MS });
      await clickStopAndWait(page);
      await waitFor('no leases left', async () => (await getJson(`${relay.url}/v1/stats`)).units_leased === 0,
        { timeoutMs: 15_000 });
      const account = await getJson(`${relay.url}/v1/accounts/${address}`);
      console.log(`${address} earned ${account.credits} credits (${Date.now() - started} ms in)`);

      // The operator closes an epoch; the relay publishes its root to the contract.
      await relayCommand(['payouts', 'close-epoch', '--database', path.join(workDir, 'db.sqlite')]);
      await waitFor('the root of epoch 1 on chain', async () => (await payout.latestEpoch()) === 1n,
        { timeoutMs: PUBLISH_TIMEOUT_MS, intervalMs: 500 });
      const owed = await waitFor('the relay to answer against the published root', async () => {
        const p = await getJson(`${relay.url}/v1/payouts/${address}`);
        return p.claims_enabled && p.epoch === 1 ? p : null;
      }, { timeoutMs: PAGE_TIMEOUT_MS });
      console.log(`epoch 1 published: ${address} is owed ${owed.in_root} (root ${owed.root})`);
      assert.equal(owed.in_root, String(account.credits), 'the root holds the credits, one token unit each');
      assert.equal(owed.claimed, '0');
      assert.equal(owed.claimable, owed.in_root);
      assert.equal(await payout.latestRoot(), owed.root);

      // The page shows it (it refreshes by itself).
      await waitFor('the page to offer Claim', async () =>
        (await page.locator('#claim').isVisible()) && (await page.locator('#claim').isEnabled()),
      { timeoutMs: PAGE_TIMEOUT_MS });
      assert.equal(await integerIn(page, '#earn-in-root'), BigInt(owed.in_root));
      assert.equal(await integerIn(page, '#earn-claimable'), BigInt(owed.in_root));
      assert.equal(await integerIn(page, '#earn-claimed'), 0n);
      assert.equal(await integerIn(page, '#earn-earned'), BigInt(owed.earned));
      assert.equal(await integerIn(page, '#earn-credits'), BigInt(account.credits));
      assert.match(await textOf(page, '#earn-epoch'), /epoch 1/);
      assert.ok(await page.locator('#earn-off').isHidden(), 'no "claims are off" note');

      // Check my proof: the contract's root, read through the wallet, and the proof checked here.
      await page.click('#check-proof');
      const verdict = await waitFor('the proof check', async () => {
        const text = await textOf(page, '#earn-message');
        return /^(valid|invalid)|could not|not in/i.test(text) && !(await page.locator('#check-proof').isDisabled()) ? text : null;
      }, { timeoutMs: PAGE_TIMEOUT_MS });
      console.log(`Check my proof: ${verdict}`);
      assert.match(verdict, /^Valid/);
      assert.equal(await page.locator('#earnings').getAttribute('data-proof'), 'valid');
      const calls = await page.evaluate(() => window.__walletCalls);
      const rootCall = calls.find((c) => c.method === 'eth_call');
      assert.equal(rootCall.params[0].to.toLowerCase(), (await payout.getAddress()).toLowerCase());
      assert.equal(rootCall.params[0].data, payout.interface.encodeFunctionData('latestRoot'));

      // Claim: the balance on chain rises by exactly what was owed. First the person rejects the
      // transaction in the wallet: the page says so and nothing is paid.
      const before = await token.balanceOf(address);
      await page.evaluate(() => { window.__rejectNext = 'eth_sendTransaction'; });
      await page.click('#claim');
      const rejected = await waitFor('the page to say the claim was rejected', async () => {
        const text = await textOf(page, '#earn-message');
        return /rejected/i.test(text) && (await page.locator('#claim').isEnabled()) ? text : null;
      }, { timeoutMs: PAGE_TIMEOUT_MS });
      assert.equal(await page.locator('#earn-message').getAttribute('data-kind'), 'warn', rejected);
      assert.equal(await token.balanceOf(address), before, 'a rejected claim pays nothing');

      await page.click('#claim');
      const outcome = await waitFor('the claim to end', async () => {
        const text = await textOf(page, '#earn-message');
        const kind = await page.locator('#earn-message').getAttribute('data-kind');
        const ended = (kind === 'ok' && /^Claimed/.test(text)) || kind === 'error' || kind === 'warn';
        return ended ? { text, kind } : null;
      }, { timeoutMs: PAGE_TIMEOUT_MS });
      console.log(`Claim: ${outcome.text}`);
      assert.equal(outcome.kind, 'ok', outcome.text);
      assert.match(outcome.text, /^Claimed/);
      const after = await token.balanceOf(address);
      assert.equal(after - before, BigInt(owed.in_root), 'the token balance rose by exactly the claim');
      assert.equal(await payout.claimed(address), BigInt(owed.in_root));

      const sent = (await page.evaluate(() => window.__walletCalls)).filter((c) => c.method === 'eth_sendTransaction');
      assert.equal(sent.length, 2, 'the rejected transaction and the claim');
      const claimTx = sent[1].params[0];
      assert.equal(claimTx.from, address);
      assert.equal(claimTx.to.toLowerCase(), (await payout.getAddress()).toLowerCase());
      assert.equal(claimTx.data,
        payout.interface.encodeFunctionData('claim', [address, owed.in_root, owed.proof]),
        "the page's calldata is what ethers encodes from the ABI");
      const tx = await page.locator('#earnings').getAttribute('data-claim-tx');
      assert.equal((await provider.getTransactionReceipt(tx)).status, 1);

      // After the claim the page shows it paid, and nothing left to claim.
      const paid = await getJson(`${relay.url}/v1/payouts/${address}`);
      assert.equal(paid.claimed, owed.in_root);
      assert.equal(paid.claimable, '0');
      await waitFor('the page to show the claim', async () =>
        (await integerIn(page, '#earn-claimed')) === BigInt(owed.in_root)
        && (await integerIn(page, '#earn-claimable')) === 0n
        && (await page.locator('#claim').isDisabled()), { timeoutMs: PAGE_TIMEOUT_MS });
      console.log(`claimed on chain in ${Date.now() - started} ms`);
    }));

  test('a relay without a chain says claims are off', { timeout: TEST_TIMEOUT_MS },
    withArtifacts('off', () => offRelay, async () => {
      const offDir = path.join(workDir, 'off');
      await rm(offDir, { recursive: true, force: true });
      await mkdir(offDir);
      offRelay = await startRelay(offDir, ['--siwe-chain-id', String(CHAIN_ID)]);
      const address = addressOf(KEYS[4]);
      const context = await walletContext(offRelay.url, KEYS[4]);
      const page = await openPage(context, `${offRelay.url}/`, 'off', consoleLog);
      await connect(page, address);
      await waitFor('the panel to say claims are off', async () =>
        /claims are off on this relay/i.test(await textOf(page, '#earn-off')), { timeoutMs: PAGE_TIMEOUT_MS });
      assert.ok(await page.locator('#claim').isHidden(), 'no Claim');
      assert.ok(await page.locator('#check-proof').isHidden(), 'no Check my proof');
      assert.equal(await textOf(page, '#earn-claimable'), 'no chain');
    }));
});
