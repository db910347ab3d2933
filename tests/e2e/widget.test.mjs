// End to end: the partner widget. A host page on one loopback origin (127.0.0.2) embeds the
// widget with one tag served by the real relay on another (127.0.0.1), in real headless Chromium
// with WebGPU. Nothing computes before the visitor's click inside the card (the relay sees no
// lease); after it, units are verified and both the contributor and the partner are credited;
// a hidden tab pauses; Stop stops; a host page that clicks the button for the visitor, or hides
// the card under a decoy, does not start it. The card is served with the headers of netlify.toml.
// The partner is registered on the host page's origin with `glowworm-relay partners add`, as a
// relay's operator does: the relay pays no share to a partner it does not know.
//
// Run from the repository root after `cargo xtask build` and `cargo build -p glowworm-relay`:
//   node --test tests/e2e/widget.test.mjs

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ConsoleLog, getJson, launchProfile, RELAY_BIN, saveArtifacts, serveWithNetlifyHeaders, sleep,
  startRelay, stopRelay, waitFor,
} from './harness.mjs';

const PARTNER = '0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266';
const SHARE_BPS = 1000; // the relay's default: 10% on top
const VERIFIED_TIMEOUT_MS = 120_000;
const TEST_TIMEOUT_MS = 240_000;
/** How long the tests watch for work that must not happen. */
const QUIET_MS = 4000;

const consoleLog = new ConsoleLog();

/** A host page: the one tag, plus a recorder of the widget's events (and maybe an attack). */
function hostPage(relayUrl, { attack = '', style = '' } = {}) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>A partner's blog</title>
<style>body { font-family: sans-serif; } ${style}</style></head>
<body>
<h1>A partner's blog</h1>
<p>Some article text.</p>
<button id="decoy">Win a prize</button>
<script>
  window.events = [];
  window.rawMessages = [];
  document.addEventListener('glowworm:started', (e) => events.push({ type: 'started', at: Date.now(), ...e.detail }));
  document.addEventListener('glowworm:stopped', (e) => events.push({ type: 'stopped', at: Date.now(), ...e.detail }));
  document.addEventListener('glowworm:paused', (e) => events.push({ type: 'paused', at: Date.now(), ...e.detail }));
  document.addEventListener('glowworm:credited', (e) => events.push({ type: 'credited', at: Date.now(), ...e.detail }));
  window.addEventListener('message', (e) => {
    if (e.origin === ${JSON.stringify(relayUrl)} && e.data && e.data.source === 'glowworm') rawMessages.push(e.data.type);
  });
</script>
<script src="${relayUrl}/widget.js" data-partner="${PARTNER}" data-theme="light" async></script>
<script>${attack}</script>
</body></html>`;
}

/** Serves host pages on 127.0.0.2: GET /<name> answers pages[name]. */
async function startHost(pages) {
  const server = createServer((request, response) => {
    const body = pages[new URL(request.url, 'http://x').pathname.slice(1)];
    response.writeHead(body ? 200 : 404, { 'content-type': 'text/html; charset=utf-8' });
    response.end(body ?? 'not found');
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.2', resolve);
  });
  return { server, url: `http://127.0.0.2:${server.address().port}` };
}

describe('the partner widget', { timeout: 4 * TEST_TIMEOUT_MS }, () => {
  let workDir;
  let relay;
  let host;
  const pages = {};
  const contexts = [];

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'glowworm-widget-'));
    host = await startHost(pages);
    execFileSync(RELAY_BIN, [
      'partners', 'add', '--name', 'blog', '--address', PARTNER, '--origin', host.url,
      '--database', path.join(workDir, 'db.sqlite'),
    ], { stdio: ['ignore', 'ignore', 'inherit'] });
    relay = await startRelay(workDir);
    console.log(`relay: ${relay.url}, host: ${host.url}`);
  });

  after(async () => {
    for (const context of contexts) await context.close().catch(() => {});
    await stopRelay(relay);
    await new Promise((resolve) => host?.server.close(resolve));
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  /** A fresh browser profile whose Glowworm files come with netlify.toml's headers. */
  async function newBrowser(name) {
    const context = await launchProfile(path.join(workDir, `profile-${name}`), {
      viewport: { width: 900, height: 700 },
    });
    contexts.push(context);
    await serveWithNetlifyHeaders(context, relay.url);
    return context;
  }

  /** Opens a host page; resolves with the page and the card's frame once WebGPU was found. */
  async function openHost(context, name, label) {
    const page = await context.newPage();
    consoleLog.watch(page, label);
    await page.goto(`${host.url}/${name}`);
    const card = page.frameLocator('iframe[title^="Glowworm"]');
    await card.locator('#contribute:not([disabled])').waitFor({ timeout: 30_000 });
    return { page, card };
  }

  const stats = () => getJson(`${relay.url}/v1/stats`);
  const events = (page, type) => page.evaluate((t) => window.events.filter((e) => e.type === t), type);

  /**
   * Asserts that for QUIET_MS the relay sees nobody lease anything: no unit leased, and no
   * contributor asking for work (contributors_online counts those seen in the last minute, so it
   * may only fall from what earlier tests left).
   */
  async function assertNoLease(why) {
    const online = (await stats()).contributors_online;
    const deadline = Date.now() + QUIET_MS;
    while (Date.now() < deadline) {
      const s = await stats();
      assert.equal(s.units_leased, 0, `${why}: no unit is leased`);
      assert.ok(s.contributors_online <= online, `${why}: no contributor has asked the relay for work`);
      await sleep(250);
    }
  }

  const withArtifacts = (name, body) => async () => {
    try {
      await body();
    } catch (err) {
      await saveArtifacts(name, contexts, consoleLog, relay);
      throw err;
    }
  };

  test('nothing runs before the click; the click earns verified credit for contributor and partner; hidden pauses; Stop stops',
    { timeout: TEST_TIMEOUT_MS },
    withArtifacts('widget-contribute', async () => {
      pages['blog.html'] = hostPage(relay.url);
      const context = await newBrowser('visitor');
      const { page, card } = await openHost(context, 'blog.html', 'blog');

      // The card says what it does and for whom, and nothing has run.
      assert.match(await card.locator('#partner-note').textContent(), /127\.0\.0\.2.*0xf39F…2266/);
      await assertNoLease('before the click');
      assert.deepEqual(await events(page, 'started'), []);

      // The visitor's own click inside the card.
      await card.locator('#settings summary').click();
      await card.locator('#intensity').fill('100');
      await card.locator('#settings summary').click();
      const clickedAt = Date.now();
      await card.locator('#contribute').click();
      const [credited] = await waitFor('a credited event on the host page',
        async () => (await events(page, 'credited')).slice(0, 1).filter(Boolean).length && events(page, 'credited'),
        { timeoutMs: VERIFIED_TIMEOUT_MS });
      console.log(`click -> first credit through the widget: ${credited.at - clickedAt} ms`);
      const [started] = await events(page, 'started');
      assert.equal(started.how, 'click');
      assert.equal(started.partner, PARTNER);
      assert.ok(credited.credited > 0 && credited.balance >= credited.credited);
      assert.match(await card.locator('#status').textContent(), /Running/);
      assert.equal(await card.locator('#running').isVisible(), true, 'the card shows that it runs');
      assert.deepEqual([...new Set(await page.evaluate(() => window.rawMessages))].sort(),
        ['credited', 'ready', 'started'], 'the host hears the raw messages too');

      // Hidden tab: the card pauses, the host hears it, and no more units are done. Headless
      // Chromium keeps every page visible (minimizing its window leaves visibilityState
      // 'visible'), so the test sets the card's document hidden as a background tab's is and
      // fires visibilitychange, as the browser does.
      const frame = page.frames().find((f) => f.url().startsWith(`${relay.url}/widget.html`));
      const setVisibility = (state) => frame.evaluate((value) => {
        Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => value });
        Object.defineProperty(document, 'hidden', { configurable: true, get: () => value === 'hidden' });
        document.dispatchEvent(new Event('visibilitychange'));
      }, state);
      await setVisibility('hidden');
      await waitFor('a paused event', async () => (await events(page, 'paused')).length > 0, { timeoutMs: 30_000 });
      assert.equal((await events(page, 'paused'))[0].reason, 'hidden');
      await waitFor('the prefetched lease to be given back', async () => (await stats()).units_leased === 0,
        { timeoutMs: 30_000 });
      const creditedWhileHidden = (await events(page, 'credited')).length;
      await sleep(QUIET_MS);
      assert.equal((await events(page, 'credited')).length, creditedWhileHidden, 'nothing is computed while hidden');
      assert.equal((await stats()).units_leased, 0);
      await setVisibility('visible');
      await waitFor('work after the tab is visible again',
        async () => (await events(page, 'credited')).length > creditedWhileHidden, { timeoutMs: VERIFIED_TIMEOUT_MS });

      // Stop stops: the host hears it, every lease is given back, nothing more is credited.
      await card.locator('#stop').click();
      await waitFor('a stopped event', async () => (await events(page, 'stopped')).length > 0, { timeoutMs: 10_000 });
      await waitFor('no lease held', async () => (await stats()).units_leased === 0, { timeoutMs: 10_000 });
      const all = await events(page, 'credited');
      await sleep(QUIET_MS);
      assert.equal((await events(page, 'credited')).length, all.length, 'nothing after Stop');
      assert.equal((await stats()).units_leased, 0);

      // Both were credited, by this site: each unit's price (one credit per FLOP by default) is
      // split, the partner's 10% share and the contributor the rest.
      const contributorCredits = all.reduce((sum, e) => sum + Number(e.credited), 0);
      const balance = Number(all.at(-1).balance);
      assert.equal(balance, contributorCredits, "the contributor's balance is every unit's credit");
      const partner = await getJson(`${relay.url}/v1/partners/${PARTNER}`);
      const share = all.reduce((sum, e) => sum + Math.floor((Number(e.flop) * SHARE_BPS) / 10_000), 0);
      assert.equal(contributorCredits + share, all.reduce((sum, e) => sum + Number(e.flop), 0),
        'the contributor and the partner split each unit\'s price');
      assert.equal(partner.credits, share);
      assert.equal(partner.units, all.length);
      assert.equal(partner.contributors, 1);
      assert.deepEqual(partner.sites.map((s) => s.origin), [host.url]);
      const s = await stats();
      assert.equal(s.credits_issued, contributorCredits + share);
      assert.deepEqual(consoleLog.errors, []);
      await context.close();
    }));

  test('a host page cannot start it: synthetic clicks, messages, or a faded card under a decoy',
    { timeout: TEST_TIMEOUT_MS },
    withArtifacts('widget-clickjacking', async () => {
      const before = await stats();
      // The host tries everything a page can do to the frame from outside.
      pages['attack.html'] = hostPage(relay.url, {
        attack: `
          window.attempts = 0;
          setInterval(() => {
            const frame = document.querySelector('iframe');
            if (!frame) return;
            attempts += 1;
            frame.dispatchEvent(new MouseEvent('click', { bubbles: true, clientX: 40, clientY: 90 }));
            frame.click();
            frame.focus();
            frame.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
            for (const message of [{ glowworm: 'start' }, { type: 'start' }, { type: 'start', relay: '' },
                                   { source: 'glowworm', type: 'started' }, 'start']) {
              frame.contentWindow.postMessage(message, '*');
            }
            try { frame.contentWindow.document.getElementById('contribute').click(); } catch { window.blocked = true; }
          }, 200);`,
      });
      const context = await newBrowser('attacked');
      const { page, card } = await openHost(context, 'attack.html', 'attack');
      await assertNoLease('while the host page attacks');
      assert.ok(await page.evaluate(() => window.attempts) > 5);
      assert.equal(await page.evaluate(() => window.blocked), true, "the card's document is out of the host's reach");
      assert.deepEqual(await events(page, 'started'), []);
      await page.close();

      // A real (trusted) click that lands on a faded card placed over a decoy does not count.
      pages['decoy.html'] = hostPage(relay.url, {
        style: 'iframe { opacity: 0.01; position: absolute !important; top: 0; left: 0; }',
      });
      const decoy = await openHost(context, 'decoy.html', 'decoy');
      await sleep(1000);
      const box = await decoy.page.locator('iframe').boundingBox();
      const button = await decoy.card.locator('#contribute').boundingBox();
      assert.ok(box && button);
      await decoy.page.mouse.click(button.x + button.width / 2, button.y + button.height / 2);
      await waitFor('the card to refuse', async () => /fully visible/.test(await decoy.card.locator('#error').textContent()),
        { timeoutMs: 10_000 });
      await assertNoLease('after a click on a faded card');
      assert.deepEqual(await events(decoy.page, 'started'), []);
      const after = await stats();
      assert.equal(after.units_completed, before.units_completed);
      await context.close();
    }));

  test('a lost GPU device is reopened, the units in hand given back, and work goes on',
    { timeout: TEST_TIMEOUT_MS },
    withArtifacts('device-lost', async () => {
      // The page and the widget share worker.js; the page's worker is in reach of the test.
      const context = await newBrowser('device');
      const page = await context.newPage();
      consoleLog.watch(page, 'device');
      await page.goto(`${relay.url}/`);
      await page.waitForFunction(() => !document.getElementById('contribute').disabled, null, { timeout: 30_000 });
      await page.click('#contribute');
      const units = async () => Number((await page.locator('#units').textContent()).replace(/\D/g, ''));
      await waitFor('a first verified unit', async () => (await units()) >= 1, { timeoutMs: VERIFIED_TIMEOUT_MS });

      // Lose the device the way a driver reset does, in the middle of the next unit.
      const [worker] = page.workers();
      assert.ok(worker, 'the page runs a worker');
      await worker.evaluate(() => {
        const original = GPUDevice.prototype.createCommandEncoder;
        GPUDevice.prototype.createCommandEncoder = function loseOnce(...args) {
          GPUDevice.prototype.createCommandEncoder = original;
          this.destroy();
          return original.apply(this, args);
        };
      });
      const lostAt = await units();
      await waitFor('the device to be reopened', async () => consoleLog.lines.some((l) => /GPU device was lost \(destroyed\); reopened/.test(l)),
        { timeoutMs: 60_000 });
      await waitFor('more verified units on the new device', async () => (await units()) >= lostAt + 2,
        { timeoutMs: VERIFIED_TIMEOUT_MS });
      assert.equal(consoleLog.lines.filter((l) => /could not release/.test(l)).length, 0, 'every unit in hand was given back');

      await page.click('#stop');
      await page.waitForFunction(() => /stopped/i.test(document.getElementById('status').textContent), null, { timeout: 10_000 });
      await waitFor('no lease held', async () => (await stats()).units_leased === 0, { timeoutMs: 10_000 });
      await context.close();
    }));
});
