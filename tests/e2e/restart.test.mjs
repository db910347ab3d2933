// End to end: the relay dies (SIGKILL) while a browser contributes, and comes back on the same
// address and database. The page shows that it is retrying, reconnects with backoff by itself,
// and carries on; every credit the relay acknowledged before the crash is still there.
//
// Run from the repository root after `cargo xtask build` and `cargo build -p glowworm-relay`:
//   node --test tests/e2e/restart.test.mjs

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ConsoleLog, clickStopAndWait, getJson, integerIn, launchProfile, openPage, saveArtifacts, sleep,
  startRelay, stopRelay, waitFor,
} from './harness.mjs';

const TEST_TIMEOUT_MS = 240_000;
// Short leases, so units the dead relay had leased are soon reissued.
const RELAY_ARGS = ['--lease-seconds', '5'];

describe('a relay restart while a browser contributes', { timeout: TEST_TIMEOUT_MS + 30_000 }, () => {
  const consoleLog = new ConsoleLog();
  let workDir;
  let relay;
  let context;

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'glowworm-e2e-restart-'));
    relay = await startRelay(workDir, RELAY_ARGS);
    console.log(`relay: ${relay.url}`);
    context = await launchProfile(path.join(workDir, 'profile'));
  });

  after(async () => {
    await context?.close().catch((err) => console.error(`closing the browser: ${err.message}`));
    await stopRelay(relay);
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  test('the page retries with backoff, reconnects by itself, and no acknowledged credit is lost',
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      try {
        const page = await openPage(context, `${relay.url}/`, 'page', consoleLog);
        await page.click('#contribute');
        const publicKey = await waitFor('the public key on the page', async () => {
          const text = (await page.locator('#public-key').textContent()).trim();
          return /^[0-9a-f]{64}$/.test(text) ? text : null;
        }, { timeoutMs: 60_000 });
        const me = () => getJson(`${relay.url}/v1/contributors/${publicKey}`);
        const beforeCrash = await waitFor('two verified units', async () => {
          const info = await me();
          return info && info.units_verified >= 2 ? info : null;
        }, { timeoutMs: 120_000 });

        // SIGKILL: no graceful shutdown, whatever was in flight is cut off.
        const address = new URL(relay.url).host;
        const exited = new Promise((resolve) => relay.child.once('exit', resolve));
        relay.child.kill('SIGKILL');
        await exited;
        const killedAt = Date.now();
        await waitFor('the page to say it is retrying', async () =>
          /retrying/i.test(await page.locator('#status').textContent()), { timeoutMs: 30_000 });
        console.log(`page status while the relay is down: ${(await page.locator('#status').textContent()).trim()}`);
        await sleep(2000); // a few failed retries, so the backoff has grown

        relay = await startRelay(workDir, RELAY_ARGS, { listen: address });
        console.log(`relay restarted on ${relay.url} after ${Date.now() - killedAt} ms down`);
        const afterRestart = await me();
        assert.ok(afterRestart.units_verified >= beforeCrash.units_verified,
          `verified units survive the crash (${beforeCrash.units_verified} before, ${afterRestart.units_verified} after)`);
        assert.ok(afterRestart.credits >= beforeCrash.credits,
          `acknowledged credits survive the crash (${beforeCrash.credits} before, ${afterRestart.credits} after)`);

        // The page reconnects by itself: no click, no reload.
        const restartedAt = Date.now();
        const carriedOn = await waitFor('two more verified units after the restart', async () => {
          const info = await me();
          return info.units_verified >= afterRestart.units_verified + 2 ? info : null;
        }, { timeoutMs: 120_000 });
        console.log(`back to work ${Date.now() - restartedAt} ms after the restart: ${carriedOn.units_verified} units, ${carriedOn.credits} credits`);
        assert.match(await page.locator('#status').textContent(), /contribut/i);
        assert.doesNotMatch(await page.locator('#status').textContent(), /retrying/i);

        // The page's figure catches up with the relay's ledger.
        await waitFor('the page to show the relay\'s balance', async () => {
          const shown = await integerIn(page, '#credits');
          const info = await me();
          return shown !== null && shown === BigInt(info.credits);
        }, { timeoutMs: 30_000 });

        await clickStopAndWait(page);
        // Units leased to the dead relay's page were reissued, none failed for it.
        await sleep(5500);
        const stats = await getJson(`${relay.url}/v1/stats`);
        assert.equal(stats.units_failed, 0, 'no unit failed because of the crash');
      } catch (err) {
        await saveArtifacts('restart', [context], consoleLog, relay);
        throw err;
      }
    });
});
