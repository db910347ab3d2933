// End to end: a real relay, real headless Chromium with WebGPU (SwiftShader on a CPU-only machine),
// the real page. A person opens the page, nothing runs, they click Contribute, the relay verifies
// and credits the browser's results, they click Stop and everything stops and is given back.
//
// Run from the repository root after `cargo xtask build` and `cargo build -p glowworm-relay`:
//   node --test tests/e2e/
// Environment: GLOWWORM_RELAY_BIN (default target/debug/glowworm-relay),
//              GLOWWORM_WWW (default www), CHROMIUM (default /usr/bin/chromium).
// On failure, a screenshot, the browser console and the relay's log go to tests/e2e/artifacts/.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const RELAY_BIN = process.env.GLOWWORM_RELAY_BIN
  ? path.resolve(process.env.GLOWWORM_RELAY_BIN)
  : path.join(ROOT, 'target/debug/glowworm-relay');
const WWW = process.env.GLOWWORM_WWW ? path.resolve(process.env.GLOWWORM_WWW) : path.join(ROOT, 'www');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(HERE, 'artifacts');

// SwiftShader is slow (about 0.3 GFLOP/s, 1-2 s per compute pipeline): be generous.
const VERIFIED_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 240_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns a truthy value; returns that value. */
async function waitFor(what, probe, { timeoutMs = 30_000, intervalMs = 200 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError.message}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

/** The Content-Security-Policy that netlify.toml sets, so the test holds the page to it. */
async function netlifyCsp() {
  const toml = await readFile(path.join(ROOT, 'netlify.toml'), 'utf8');
  const match = toml.match(/^\s*Content-Security-Policy\s*=\s*"([^"]+)"/m);
  assert.ok(match, 'netlify.toml sets a Content-Security-Policy');
  return match[1];
}

// --- The relay --------------------------------------------------------------------------------

/** Starts the relay on a free port with a fresh database; resolves once it prints its URL. */
async function startRelay(workDir) {
  const args = [
    'serve',
    '--listen', '127.0.0.1:0',
    '--database', path.join(workDir, 'db.sqlite'),
    '--www-dir', WWW,
  ];
  const child = spawn(RELAY_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  const relay = { child, log, url: null };

  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => log.push(chunk));

  relay.url = await new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`the relay printed no URL within 30 s:\n${log.join('')}`)), 30_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${RELAY_BIN}: ${err.message} (build it: cargo build -p glowworm-relay)`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the relay exited (${code ?? signal}) before listening:\n${log.join('')}`));
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      log.push(chunk);
      const match = buffered.match(/^Glowworm relay listening on (http:\/\/127\.0\.0\.1:\d+)\s*$/m);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  return relay;
}

async function stopRelay(relay) {
  if (!relay || relay.child.exitCode !== null || relay.child.signalCode !== null) return;
  const exited = new Promise((resolve) => relay.child.once('exit', resolve));
  relay.child.kill('SIGTERM');
  const timer = setTimeout(() => relay.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

async function getJson(url) {
  const response = await fetch(url);
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

// --- The browser ------------------------------------------------------------------------------

/** Console lines of every page, for the test output and the failure artifacts. */
const consoleLog = [];
const consoleErrors = [];

function watchPage(page, label) {
  page.on('console', (msg) => {
    const line = `[${label}] console.${msg.type()}: ${msg.text()}`;
    consoleLog.push(line);
    if (msg.type() === 'error') {
      consoleErrors.push(line);
      console.error(line); // forward browser errors to the test output
    }
  });
  page.on('pageerror', (err) => {
    const line = `[${label}] uncaught: ${err.stack ?? err.message}`;
    consoleLog.push(line);
    consoleErrors.push(line);
    console.error(line);
  });
  page.on('worker', (worker) => consoleLog.push(`[${label}] worker started: ${worker.url()}`));
  page.on('crash', () => {
    consoleLog.push(`[${label}] page crashed`);
    console.error(`[${label}] page crashed`);
  });
}

/** Saves a screenshot of every open page, the console log and the relay log. */
async function saveArtifacts(name, context, relay) {
  try {
    await mkdir(ARTIFACTS, { recursive: true });
    const safe = name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
    const pages = context ? context.pages() : [];
    for (const [i, page] of pages.entries()) {
      await page.screenshot({ path: path.join(ARTIFACTS, `${safe}-page${i}.png`), fullPage: true }).catch(() => {});
    }
    await writeFile(path.join(ARTIFACTS, `${safe}-console.log`), consoleLog.join('\n') + '\n');
    if (relay) await writeFile(path.join(ARTIFACTS, `${safe}-relay.log`), relay.log.join(''));
    console.error(`artifacts saved in ${ARTIFACTS} (${safe}-*)`);
  } catch (err) {
    console.error(`could not save artifacts: ${err.message}`);
  }
}

/** The digits of an element's text as a BigInt (credits are shown with thousands separators). */
async function integerIn(page, selector) {
  const text = await page.locator(selector).textContent();
  const digits = (text ?? '').replace(/\D/g, '');
  return digits ? BigInt(digits) : null;
}

/** Opens the page and waits until WebGPU detection has finished (Contribute enabled). */
async function openPage(context, url, label) {
  const page = await context.newPage();
  watchPage(page, label);
  const response = await page.goto(url);
  page.documentCsp = response.headers()['content-security-policy'];
  await page.waitForFunction(() => !document.getElementById('contribute').disabled, null, { timeout: 30_000 });
  return page;
}

async function clickStopAndWait(page) {
  const clicked = Date.now();
  await page.click('#stop');
  await page.waitForFunction(
    () => /stopped/i.test(document.getElementById('status').textContent),
    null,
    { timeout: 10_000 },
  );
  return Date.now() - clicked;
}

// --- The tests --------------------------------------------------------------------------------

describe('contributing from the page', { timeout: 2 * TEST_TIMEOUT_MS + 60_000 }, () => {
  let workDir;
  let relay;
  let context;
  let csp; // the production Content-Security-Policy, from netlify.toml
  const servedWithCsp = new Set(); // static paths the test served under the production CSP

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'glowworm-e2e-'));
    relay = await startRelay(workDir);
    console.log(`relay: ${relay.url}`);
    csp = await netlifyCsp();

    context = await chromium.launchPersistentContext(path.join(workDir, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--enable-unsafe-webgpu',
        '--no-sandbox',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    // Serve the static files with the CSP that production (netlify.toml) uses, so a CSP
    // violation (an inline script, a missing 'wasm-unsafe-eval', ...) fails this test too.
    await context.route(`${relay.url}/**`, async (route) => {
      const pathname = new URL(route.request().url()).pathname;
      if (pathname.startsWith('/v1/')) return route.continue();
      servedWithCsp.add(pathname);
      const response = await route.fetch();
      await route.fulfill({ response, headers: { ...response.headers(), 'content-security-policy': csp } });
    });
  });

  after(async () => {
    await context?.close().catch((err) => console.error(`closing the browser: ${err.message}`));
    await stopRelay(relay);
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  /** Runs a test body; on failure saves artifacts before rethrowing. */
  const withArtifacts = (name, body) => async () => {
    try {
      await body();
    } catch (err) {
      await saveArtifacts(name, context, relay);
      throw err;
    }
  };

  test('nothing runs before consent; Contribute earns verified credit; Stop stops and releases',
    { timeout: TEST_TIMEOUT_MS },
    withArtifacts('contribute', async () => {
      const page = await openPage(context, `${relay.url}/`, 'page');

      // The page is held to the production CSP: any violation would show as a console error,
      // and the test fails on console errors.
      assert.equal(page.documentCsp, csp, 'the page is served with the CSP of netlify.toml');

      const adapter = (await page.locator('#adapter').textContent()).trim();
      console.log(`adapter shown: ${adapter}`);
      assert.ok(adapter && !/not available|checking/i.test(adapter), `the adapter is shown (got "${adapter}")`);

      // Consent first: the page has loaded and idled; nothing may be leased or computed yet.
      await sleep(2000);
      const before = await getJson(`${relay.url}/v1/stats`);
      assert.equal(before.units_leased, 0, 'no unit is leased before the click');
      assert.equal(before.units_completed, 0, 'no unit is computed before the click');
      assert.equal(page.workers().length, 0, 'no worker exists before the click');
      assert.ok(await page.locator('#stop').isDisabled(), 'Stop is disabled before the click');

      const clicked = Date.now();
      await page.click('#contribute');

      const publicKey = await waitFor('the public key on the page', async () => {
        const text = (await page.locator('#public-key').textContent()).trim();
        return /^[0-9a-f]{64}$/.test(text) ? text : null;
      }, { timeoutMs: 60_000 });
      console.log(`contributor: ${publicKey}`);

      const first = await waitFor('the first verified unit', async () => {
        const me = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
        return me && me.units_verified >= 1 ? me : null;
      }, { timeoutMs: VERIFIED_TIMEOUT_MS, intervalMs: 100 });
      const firstMs = Date.now() - clicked;
      console.log(`click to first verified result: ${firstMs} ms (${first.units_verified} unit(s), ${first.credits} credits)`);

      const three = await waitFor('three verified units', async () => {
        const me = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
        return me && me.units_verified >= 3 ? me : null;
      }, { timeoutMs: VERIFIED_TIMEOUT_MS });
      console.log(`three verified after ${Date.now() - clicked} ms: ${three.units_verified} units, ${three.flop_verified} FLOP, ${three.credits} credits`);
      assert.ok(three.credits > 0, 'the relay credited the contributor');

      // The page shows live figures while running.
      const credits = await waitFor('credits on the page', async () => {
        const shown = await integerIn(page, '#credits');
        return shown && shown > 0n ? shown : null;
      });
      assert.ok(credits > 0n, 'the page shows positive credits');
      assert.ok((await integerIn(page, '#units')) >= 1n, 'the page counts units');
      assert.match(await page.locator('#kernel').textContent(), /matmul/, 'the page shows the kernel');
      assert.match(await page.locator('#status').textContent(), /contribut/i, 'the status says it runs');

      // Stop: it stops within a second or so, and gives back its prefetched lease.
      const stopMs = await clickStopAndWait(page);
      console.log(`click Stop to stopped: ${stopMs} ms`);
      assert.ok(stopMs <= 1500, `Stop takes effect within ~1 s (took ${stopMs} ms)`);
      await sleep(1500);
      const atStop = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
      await sleep(4000);
      const later = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
      assert.equal(later.units_verified, atStop.units_verified, 'nothing is computed after Stop');
      const stats = await getJson(`${relay.url}/v1/stats`);
      assert.equal(stats.units_leased, 0, 'Stop released every lease');
      assert.equal(page.workers().length, 0, 'the worker is gone after Stop');

      // After Stop the page's credits are exactly the relay's balance.
      const shown = await integerIn(page, '#credits');
      assert.equal(shown, BigInt(later.credits), 'the page shows the balance the relay reports');
      assert.ok(await page.locator('#contribute').isEnabled(), 'Contribute can be clicked again');
      console.log(`served under the CSP: ${[...servedWithCsp].sort().join(' ')}`);
      assert.deepEqual(consoleErrors, [], 'no console errors in the browser');
      await page.close();
    }));

  test('a reload is the same contributor (key kept in IndexedDB)',
    { timeout: TEST_TIMEOUT_MS },
    withArtifacts('reload', async () => {
      const page = await openPage(context, `${relay.url}/`, 'reload');

      // Make sure this browser profile has a key (the test above made one, unless run alone).
      let publicKey = (await page.locator('#public-key').textContent()).trim();
      if (!/^[0-9a-f]{64}$/.test(publicKey)) {
        await page.click('#contribute');
        publicKey = await waitFor('the public key on the page', async () => {
          const text = (await page.locator('#public-key').textContent()).trim();
          return /^[0-9a-f]{64}$/.test(text) ? text : null;
        }, { timeoutMs: 60_000 });
        await clickStopAndWait(page);
      }
      const before = (await getJson(`${relay.url}/v1/contributors/${publicKey}`)) ?? { units_verified: 0 };

      await page.reload();
      await page.waitForFunction(() => !document.getElementById('contribute').disabled, null, { timeout: 30_000 });
      await waitFor('the saved public key after the reload', async () =>
        (await page.locator('#public-key').textContent()).trim() === publicKey);

      // Contributing again credits the same key: the worker restored it from IndexedDB.
      await page.click('#contribute');
      const me = await waitFor('a unit verified for the same key', async () => {
        const now = await getJson(`${relay.url}/v1/contributors/${publicKey}`);
        return now && now.units_verified > before.units_verified ? now : null;
      }, { timeoutMs: VERIFIED_TIMEOUT_MS });
      assert.equal((await page.locator('#public-key').textContent()).trim(), publicKey, 'the same id after the reload');
      console.log(`after the reload: ${me.units_verified} units verified for ${publicKey}`);

      await clickStopAndWait(page);
      await waitFor('no leases left', async () => (await getJson(`${relay.url}/v1/stats`)).units_leased === 0,
        { timeoutMs: 5000 });
      assert.deepEqual(consoleErrors, [], 'no console errors in the browser');
      await page.close();
    }));
});
