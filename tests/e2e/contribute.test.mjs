// End to end: a real relay, real headless Chromium with WebGPU (SwiftShader on a CPU-only machine),
// the real page. A person opens the page, nothing runs, they click Contribute, the relay verifies
// and credits the browser's results, they click Stop and everything stops and is given back.
//
// Run from the repository root after `cargo xtask build` and `cargo build -p glowworm-relay`:
//   node --test tests/e2e/
// Environment and helpers: see harness.mjs.
// On failure, a screenshot, the browser console and the relay's log go to tests/e2e/artifacts/.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ConsoleLog, clickStopAndWait, getJson, integerIn, launchProfile, netlifyCsp,
  openPage as openPageLogged, saveArtifacts, serveWithCsp, sleep, startRelay, stopRelay, waitFor,
} from './harness.mjs';

// SwiftShader is slow (about 0.3 GFLOP/s, 1-2 s per compute pipeline): be generous.
const VERIFIED_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 240_000;

/** Console lines of every page, for the test output and the failure artifacts. */
const consoleLog = new ConsoleLog();
const consoleErrors = consoleLog.errors;
const openPage = (context, url, label) => openPageLogged(context, url, label, consoleLog);

// --- The tests --------------------------------------------------------------------------------

describe('contributing from the page', { timeout: 2 * TEST_TIMEOUT_MS + 60_000 }, () => {
  let workDir;
  let relay;
  let context;
  let csp; // the production Content-Security-Policy, from netlify.toml
  let servedWithCsp; // static paths the test served under the production CSP

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'glowworm-e2e-'));
    relay = await startRelay(workDir);
    console.log(`relay: ${relay.url}`);
    csp = await netlifyCsp();

    context = await launchProfile(path.join(workDir, 'profile'));
    // Serve the static files with the CSP that production (netlify.toml) uses, so a CSP
    // violation (an inline script, a missing 'wasm-unsafe-eval', ...) fails this test too.
    servedWithCsp = await serveWithCsp(context, relay.url, csp);
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
      await saveArtifacts(name, [context], consoleLog, relay);
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
