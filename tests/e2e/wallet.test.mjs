// End to end: connecting a browser wallet. A real relay, real headless Chromium with WebGPU, the
// real page, and an injected EIP-1193 wallet that announces itself by EIP-6963 and signs with a
// real secp256k1 key (ethers). The person contributes anonymously, connects, signs once, and the
// relay moves their credits to the address and credits it from then on; rejecting the signature
// leaves them anonymous; with two wallets they choose one; connecting computes nothing; and
// Disconnect makes this browser a new anonymous contributor.
//
// Run from the repository root after `cargo xtask build` and `cargo build -p glowworm-relay`:
//   node --test tests/e2e/
// Environment and helpers: see harness.mjs.
// On failure, screenshots, the browser console and the relay's log go to tests/e2e/artifacts/.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ethers } from 'ethers';
import {
  ConsoleLog, HERE, clickStopAndWait, getJson, integerIn, launchBrowser, netlifyCsp, openPage,
  saveArtifacts, serveWithCsp, sleep, startRelay, stopRelay, waitFor,
} from './harness.mjs';

// SwiftShader is slow (about 0.3 GFLOP/s, 1-2 s per compute pipeline): be generous.
const VERIFIED_TIMEOUT_MS = 120_000;
const LINK_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 240_000;

const ETHERS_UMD = path.join(HERE, 'node_modules/ethers/dist/ethers.umd.min.js');

// Fixed test keys: the first accounts of the well-known Hardhat/Anvil development mnemonic,
// public knowledge and worth nothing. One per test, so the accounts at the relay never mix.
const KEYS = {
  quiet: '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
  main: '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a',
  rejecting: '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6',
  one: '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a',
  two: '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba',
  leaving: '0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e',
};
/** EIP-55 addresses, computed by ethers (independently of the crate's and the relay's code). */
const addressOf = (key) => new ethers.Wallet(key).address;
/** How the page shortens an address: 0x5aAe…eAed. */
const short = (address) => `${address.slice(0, 6)}…${address.slice(-4)}`;

function svgIcon(color) {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="16" cy="16" r="14" fill="${color}"/></svg>`;
  return `data:image/svg+xml;base64,${Buffer.from(svg).toString('base64')}`;
}

/** A test wallet's description for the init script. */
function testWallet(name, key, { color = '#f6851b', rejectSign = false } = {}) {
  const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '-');
  return {
    name,
    privateKey: key,
    icon: svgIcon(color),
    rdns: `org.glowworm.test.${slug}`,
    uuid: crypto.randomUUID(),
    rejectSign,
  };
}

/**
 * Runs in the page before its own scripts (after ethers' UMD build): installs each wallet as an
 * EIP-1193 provider that announces itself by EIP-6963 at once and on every
 * eip6963:requestProvider, signing with its own key. Every request is logged in
 * window.__walletCalls (personal_sign with its result). With one wallet, it is also the legacy window.ethereum.
 */
function installTestWallets(wallets) {
  window.__walletCalls = [];
  for (const w of wallets) {
    const signer = new ethers.Wallet(w.privateKey);
    const info = Object.freeze({ uuid: w.uuid, name: w.name, icon: w.icon, rdns: w.rdns });
    const provider = {
      async request({ method, params = [] }) {
        const call = { wallet: w.name, method, params };
        window.__walletCalls.push(call);
        switch (method) {
          case 'eth_requestAccounts':
          case 'eth_accounts':
            return [signer.address.toLowerCase()]; // as many wallets do: the page must checksum
          case 'eth_chainId':
            return '0x1';
          case 'personal_sign': {
            if (w.rejectSign) throw { code: 4001, message: 'User rejected the request.' };
            const [data, address] = params;
            if (String(address).toLowerCase() !== signer.address.toLowerCase()) {
              throw { code: 4100, message: `not an account of ${w.name}: ${address}` };
            }
            call.result = await signer.signMessage(ethers.getBytes(data));
            return call.result;
          }
          default:
            throw { code: 4200, message: `${w.name} does not support ${method}` };
        }
      },
      on() {},
      removeListener() {},
    };
    const announce = () => window.dispatchEvent(new CustomEvent('eip6963:announceProvider', {
      detail: Object.freeze({ info, provider }),
    }));
    window.addEventListener('eip6963:requestProvider', announce);
    announce();
    if (wallets.length === 1) window.ethereum = provider;
  }
}

/** The wallet requests the page made, optionally of one wallet and one method. */
async function walletCalls(page, { wallet, method } = {}) {
  const calls = await page.evaluate(() => window.__walletCalls ?? []);
  return calls.filter((c) => (!wallet || c.wallet === wallet) && (!method || c.method === method));
}

async function textOf(page, selector) {
  return ((await page.locator(selector).textContent()) ?? '').trim();
}

async function publicKeyShown(page) {
  return waitFor('the public key on the page', async () => {
    const text = await textOf(page, '#public-key');
    return /^[0-9a-f]{64}$/.test(text) ? text : null;
  }, { timeoutMs: 60_000 });
}

/** Clicks Connect (choosing `choose` if the chooser appears) and waits for the shown address. */
async function connectAndWait(page, address, { choose } = {}) {
  await page.click('#connect');
  if (choose) {
    await page.locator('#wallet-chooser').waitFor({ state: 'visible', timeout: 10_000 });
    await page.locator('#wallet-list button', { hasText: choose }).click();
  }
  await waitFor(`the page to show ${short(address)}`, async () => {
    const message = await textOf(page, '#wallet-message');
    if (/refused|could not|no browser wallet/i.test(message)) throw new Error(`the page says: ${message}`);
    return (await page.locator('#wallet-connected').isVisible()) && (await textOf(page, '#wallet-address')) === short(address);
  }, { timeoutMs: LINK_TIMEOUT_MS });
}

async function waitNoWorker(page, why) {
  await waitFor(`no worker (${why})`, async () => page.workers().length === 0, { timeoutMs: 10_000 });
}

describe('connecting a browser wallet', { timeout: 5 * TEST_TIMEOUT_MS + 60_000 }, () => {
  let workDir;
  let relay;
  let browser;
  let csp;
  const consoleLog = new ConsoleLog();
  let contexts = []; // the current test's browser contexts

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'glowworm-e2e-wallet-'));
    // The demo generator keeps work available; the relay accepts chain 1 only, so the page must
    // pass the wallet's eth_chainId (hex) on correctly.
    relay = await startRelay(workDir, ['--siwe-chain-id', '1']);
    console.log(`relay: ${relay.url}`);
    csp = await netlifyCsp();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close().catch((err) => console.error(`closing the browser: ${err.message}`));
    await stopRelay(relay);
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  /** A fresh browser profile (so a fresh contributor key) with `wallets` injected. */
  async function walletContext(wallets) {
    const context = await browser.newContext();
    contexts.push(context);
    await context.addInitScript({ path: ETHERS_UMD });
    await context.addInitScript(installTestWallets, wallets);
    await serveWithCsp(context, relay.url, csp);
    return context;
  }

  /** Runs a test body; on failure saves artifacts; always closes the test's contexts. */
  const withArtifacts = (name, body) => async () => {
    contexts = [];
    try {
      await body();
      assert.deepEqual(consoleLog.errors, [], 'no console errors in the browser');
    } catch (err) {
      await saveArtifacts(`wallet-${name}`, contexts, consoleLog, relay);
      throw err;
    } finally {
      for (const context of contexts) await context.close().catch(() => {});
      consoleLog.errors.length = 0;
    }
  };

  /** Stops contributing and waits until the relay has every lease back. */
  async function stopAndSettle(page) {
    await clickStopAndWait(page);
    await waitFor('no leases left', async () => (await getJson(`${relay.url}/v1/stats`)).units_leased === 0,
      { timeoutMs: 10_000 });
  }

  test('connecting a wallet computes nothing before Contribute',
    { timeout: TEST_TIMEOUT_MS },
    withArtifacts('quiet', async () => {
      const address = addressOf(KEYS.quiet);
      const context = await walletContext([testWallet('Quiet Test Wallet', KEYS.quiet)]);
      const page = await openPage(context, `${relay.url}/`, 'quiet', consoleLog);
      assert.equal(page.documentCsp, csp, 'the page is served with the CSP of netlify.toml');
      assert.ok(await page.locator('#connect').isEnabled(), 'Connect wallet can be clicked');
      assert.ok(await page.locator('#wallet-connected').isHidden(), 'no address is shown before connecting');

      await connectAndWait(page, address);
      const publicKey = await publicKeyShown(page);
      await waitNoWorker(page, 'the worker opened to sign the link is gone');

      // Time for anything that might have started to show at the relay.
      await sleep(3000);
      const stats = await getJson(`${relay.url}/v1/stats`);
      assert.equal(stats.units_leased, 0, 'no unit is leased after connecting');
      assert.equal(stats.units_completed, 0, 'no unit is computed after connecting');
      const me = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
      assert.ok(me === null || me.units_verified === 0, 'the contributor has computed nothing');
      assert.equal(me?.linked_address ?? address, address, 'the key is linked to the address');
      const account = await getJson(`${relay.url}/v1/accounts/${address}`);
      assert.equal(account.units_verified, 0);
      assert.equal(account.credits, 0);
      assert.equal(page.workers().length, 0, 'no worker runs after connecting');
      assert.equal(await page.evaluate(() => document.body.dataset.state), 'ready', 'the page is not running');
      assert.ok(await page.locator('#stop').isDisabled(), 'Stop is disabled: nothing runs');
      assert.equal(await integerIn(page, '#units'), 0n, 'no units done');
    }));

  test('anonymous credits move to the address; later credits go there; the page matches the relay',
    { timeout: TEST_TIMEOUT_MS },
    withArtifacts('main', async () => {
      const address = addressOf(KEYS.main);
      const walletName = 'Glowworm Test Wallet';
      const context = await walletContext([testWallet(walletName, KEYS.main)]);
      const page = await openPage(context, `${relay.url}/`, 'main', consoleLog);

      // Contribute anonymously a few units.
      await page.click('#contribute');
      const publicKey = await publicKeyShown(page);
      await waitFor('two anonymous verified units', async () => {
        const me = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
        return me && me.units_verified >= 2;
      }, { timeoutMs: VERIFIED_TIMEOUT_MS });
      await stopAndSettle(page);
      const anonymous = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
      assert.ok(anonymous.credits > 0, 'the key earned credits anonymously');
      assert.equal(anonymous.linked_address ?? null, null, 'not linked yet');
      console.log(`anonymous: ${anonymous.units_verified} units, ${anonymous.credits} credits for ${publicKey}`);

      // Connect and sign once.
      await connectAndWait(page, address);
      assert.equal(await page.locator('#wallet-address').getAttribute('title'), address,
        'the full EIP-55 address is in the tooltip');
      assert.match(await textOf(page, '#wallet-message'), /moved/i, 'the page says the credits moved');
      assert.equal(await textOf(page, '#public-key'), publicKey, 'the same contributor id');
      await waitNoWorker(page, 'the worker opened to sign the link is gone');

      const signs = await walletCalls(page, { method: 'personal_sign' });
      assert.equal(signs.length, 1, 'one wallet signature');
      const signed = ethers.toUtf8String(signs[0].params[0]);
      const relayHost = new URL(relay.url).host;
      assert.ok(signed.startsWith(`${relayHost} wants you to sign in with your Ethereum account:\n${address}\n`),
        `the message is for the relay's host and names the checksummed address:\n${signed}`);
      assert.match(signed, /\nChain ID: 1\n/);
      assert.ok(signed.includes(publicKey), 'the message names the session key');
      assert.equal(ethers.verifyMessage(signed, signs[0].result), address, 'the wallet signed as the address');

      const linked = await getJson(`${relay.url}/v1/accounts/${address}`);
      console.log(`linked: ${address} has ${linked.credits} credits, ${linked.units_verified} units`);
      assert.ok(linked.credits >= anonymous.credits, 'the anonymous credits moved to the address');
      assert.deepEqual(linked.linked_sessions.map((s) => s.public_key), [publicKey]);
      assert.equal(linked.linked_sessions[0].chain_id, 1);
      const me = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
      assert.equal(me.linked_address, address);
      assert.equal(me.credits, linked.credits, "the key's balance is the address's");
      await waitFor('the page to show the address balance', async () =>
        (await integerIn(page, '#wallet-balance')) === BigInt(linked.credits));
      assert.match(await textOf(page, '#wallet-devices'), /1 linked device/);

      // Contribute more: the account grows, with no more wallet signatures.
      await page.click('#contribute');
      assert.ok(await page.locator('#disconnect').isDisabled(), 'Disconnect is disabled while contributing');
      await waitFor('two more verified units, credited to the address', async () => {
        const now = await getJson(`${relay.url}/v1/accounts/${address}`);
        return now.units_verified >= linked.units_verified + 2 && now.credits > linked.credits;
      }, { timeoutMs: VERIFIED_TIMEOUT_MS });
      await stopAndSettle(page);
      const after = await getJson(`${relay.url}/v1/accounts/${address}`);
      console.log(`after contributing more: ${after.credits} credits, ${after.units_verified} units`);
      assert.ok(after.credits > linked.credits, "the account's credits grew");
      const key = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
      assert.equal(key.credits, after.credits, 'results after the link are credited to the address');

      await waitFor('the page balance to match the relay', async () =>
        (await integerIn(page, '#wallet-balance')) === BigInt(after.credits));
      assert.equal(await integerIn(page, '#credits'), BigInt(after.credits), 'Credits earned shows the same balance');
      assert.ok(await page.locator('#disconnect').isEnabled(), 'Disconnect is possible after Stop');
      assert.equal((await walletCalls(page, { method: 'personal_sign' })).length, 1,
        'still one wallet signature: results need none');

      // A reload shows the address and its balance again, from this browser and the relay alone.
      await page.reload();
      await page.waitForFunction(() => !document.getElementById('contribute').disabled, null, { timeout: 30_000 });
      await waitFor('the address and balance after the reload', async () =>
        (await textOf(page, '#wallet-address')) === short(address) &&
        (await integerIn(page, '#wallet-balance')) === BigInt(after.credits));
      assert.deepEqual(await walletCalls(page), [], 'no wallet request after the reload');
    }));

  test('rejecting the signature leaves the page working anonymously',
    { timeout: TEST_TIMEOUT_MS },
    withArtifacts('reject', async () => {
      const address = addressOf(KEYS.rejecting);
      const context = await walletContext([testWallet('Rejecting Test Wallet', KEYS.rejecting, { rejectSign: true })]);
      const page = await openPage(context, `${relay.url}/`, 'reject', consoleLog);

      await page.click('#connect');
      const message = await waitFor('a message about the rejection', async () => {
        const text = await textOf(page, '#wallet-message');
        return /rejected/i.test(text) ? text : null;
      }, { timeoutMs: LINK_TIMEOUT_MS });
      console.log(`the page says: ${message}`);
      assert.match(message, /anonymous/i, 'the message says the person stays anonymous');
      assert.equal(await page.locator('#wallet-message').getAttribute('data-kind'), 'warn');
      assert.ok(await page.locator('#wallet-connected').isHidden(), 'no address is shown');
      await page.waitForFunction(() => !document.getElementById('connect').disabled, null, { timeout: 10_000 });
      assert.ok(await page.locator('#connect').isVisible(), 'Connect can be tried again');
      assert.equal((await walletCalls(page, { method: 'personal_sign' })).length, 1, 'the wallet was asked once');
      await waitNoWorker(page, 'the worker opened to sign the link is gone');
      const account = await getJson(`${relay.url}/v1/accounts/${address}`);
      assert.deepEqual(account.linked_sessions, [], 'nothing was linked');

      // Contribute still works and credits the key.
      await page.click('#contribute');
      const publicKey = await publicKeyShown(page);
      const me = await waitFor('a verified unit for the key', async () => {
        const now = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
        return now && now.units_verified >= 1 ? now : null;
      }, { timeoutMs: VERIFIED_TIMEOUT_MS });
      await stopAndSettle(page);
      const final = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
      assert.ok(me.credits > 0 && final.credits >= me.credits, 'the key is credited');
      assert.equal(final.linked_address ?? null, null, 'the key is not linked');
      assert.equal(await integerIn(page, '#credits'), BigInt(final.credits), 'the page shows the key balance');
      assert.equal((await getJson(`${relay.url}/v1/accounts/${address}`)).credits, 0, 'the address got nothing');
    }));

  test('with two wallets the person chooses one by name and icon, and that one signs',
    { timeout: TEST_TIMEOUT_MS },
    withArtifacts('chooser', async () => {
      const one = testWallet('Test Wallet One', KEYS.one, { color: '#1b6cf6' });
      const two = testWallet('Test Wallet Two', KEYS.two, { color: '#f61b8a' });
      const context = await walletContext([one, two]);
      const page = await openPage(context, `${relay.url}/`, 'chooser', consoleLog);

      // The chooser lists both, by name and icon; Cancel asks no wallet anything.
      await page.click('#connect');
      await page.locator('#wallet-chooser').waitFor({ state: 'visible', timeout: 10_000 });
      const options = page.locator('#wallet-list button');
      assert.deepEqual((await options.allTextContents()).map((t) => t.trim()).sort(), [one.name, two.name]);
      const icons = await page.locator('#wallet-list img').evaluateAll((imgs) => imgs.map((img) => img.getAttribute('src')));
      assert.deepEqual(icons.sort(), [one.icon, two.icon].sort(), 'each wallet shows its own icon');
      await page.click('#wallet-cancel');
      await page.locator('#wallet-chooser').waitFor({ state: 'hidden', timeout: 5000 });
      assert.deepEqual(await walletCalls(page), [], 'Cancel asked no wallet anything');
      await page.waitForFunction(() => !document.getElementById('connect').disabled, null, { timeout: 5000 });

      await connectAndWait(page, addressOf(two.privateKey), { choose: two.name });
      assert.ok(await page.locator('#wallet-chooser').isHidden(), 'the chooser closed');
      assert.deepEqual(await walletCalls(page, { wallet: one.name }), [], 'the other wallet was not asked');
      assert.equal((await walletCalls(page, { wallet: two.name, method: 'personal_sign' })).length, 1);
      const account = await getJson(`${relay.url}/v1/accounts/${addressOf(two.privateKey)}`);
      assert.equal(account.linked_sessions.length, 1, 'the chosen wallet is linked');
      const other = await getJson(`${relay.url}/v1/accounts/${addressOf(one.privateKey)}`);
      assert.equal(other.linked_sessions.length, 0, 'the other is not');
    }));

  test('the link survives a reload; Disconnect makes this browser a new anonymous contributor',
    { timeout: TEST_TIMEOUT_MS },
    withArtifacts('disconnect', async () => {
      const address = addressOf(KEYS.leaving);
      const context = await walletContext([testWallet('Leaving Test Wallet', KEYS.leaving)]);
      const page = await openPage(context, `${relay.url}/`, 'disconnect', consoleLog);
      await connectAndWait(page, address);
      const oldKey = await publicKeyShown(page);

      // A reload shows the same address without asking the wallet anything.
      await page.reload();
      await page.waitForFunction(() => !document.getElementById('contribute').disabled, null, { timeout: 30_000 });
      await waitFor('the address after the reload', async () =>
        (await textOf(page, '#wallet-address')) === short(address) && (await page.locator('#wallet-connected').isVisible()));
      assert.equal(await textOf(page, '#public-key'), oldKey);
      await waitFor('the balance after the reload', async () => (await integerIn(page, '#wallet-balance')) === 0n);
      assert.deepEqual(await walletCalls(page), [], 'no wallet request after the reload');

      await page.click('#disconnect');
      const message = await waitFor('the page to say it disconnected', async () => {
        const text = await textOf(page, '#wallet-message');
        return /disconnected/i.test(text) ? text : null;
      });
      console.log(`the page says: ${message}`);
      assert.match(message, /new anonymous contributor/i);
      assert.ok(await page.locator('#wallet-connected').isHidden(), 'no address is shown');
      assert.ok(await page.locator('#connect').isVisible(), 'Connect is offered again');
      assert.notEqual(await textOf(page, '#public-key'), oldKey, 'the old id is gone from the page');

      // After a reload too; and contributing makes a fresh key, credited to itself.
      await page.reload();
      await page.waitForFunction(() => !document.getElementById('contribute').disabled, null, { timeout: 30_000 });
      await sleep(1000);
      assert.ok(await page.locator('#wallet-connected').isHidden(), 'no address after the reload');
      await page.click('#contribute');
      const newKey = await publicKeyShown(page);
      assert.notEqual(newKey, oldKey, 'a fresh contributor key');
      await waitFor('a verified unit for the new key', async () => {
        const me = await getJson(`${relay.url}/v1/contributors/${newKey}`);
        return me && me.units_verified >= 1;
      }, { timeoutMs: VERIFIED_TIMEOUT_MS });
      await stopAndSettle(page);
      const fresh = await getJson(`${relay.url}/v1/contributors/${newKey}`);
      assert.equal(fresh.linked_address ?? null, null, 'the new key is anonymous');
      assert.ok(fresh.credits > 0, 'and credited itself');
      const account = await getJson(`${relay.url}/v1/accounts/${address}`);
      assert.equal(account.units_verified, 0, 'the address got nothing from the new key');
      assert.deepEqual(account.linked_sessions.map((s) => s.public_key), [oldKey], 'the old link stays at the relay');
    }));
});

