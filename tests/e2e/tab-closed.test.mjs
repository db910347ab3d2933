// End to end: a tab is closed while it uploads a result. The page reaches the relay through a
// small reverse proxy that passes everything through, except that it holds the first result
// upload: the relay gets the request's headers and half its body, and the rest never comes.
// Then the tab is closed, the proxy drops the upload's connection, and the relay is left with a
// request cut off mid-body, as when a tab closes on a slow uplink.
//
// What must hold: the cut-off result is never credited, the relay carries on unharmed, the lease
// expires and its unit goes to another browser, the job completes, nothing fails, and the
// signed result replayed after the deadline is refused.
//
// Run from the repository root after `cargo xtask build` and `cargo build -p glowworm-relay`:
//   node --test tests/e2e/tab-closed.test.mjs

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ConsoleLog, clickStopAndWait, getJson, launchBrowser, openPage, saveArtifacts, sleep, startRelay,
  stopRelay, waitFor,
} from './harness.mjs';

const TEST_TIMEOUT_MS = 240_000;
// Short leases, so the unit whose upload was cut off is soon reissued.
const LEASE_SECONDS = 5;

/**
 * A reverse proxy to `relayUrl` on 127.0.0.1. Every request is passed through on its own
 * upstream connection, except the first `POST /v1/results`: its headers and the first half of
 * its body go to the relay, and the proxy waits. When the browser's side of that request closes,
 * the proxy destroys the upstream connection too, mid-body.
 *
 * `held` resolves with the held submission (parsed) and the lease it answers (as the relay
 * granted it through the proxy) once half of it has been sent on; `cutOff` resolves once the
 * browser's side closed and the relay's side was destroyed.
 */
async function startHoldingProxy(relayUrl) {
  const upstream = new URL(relayUrl);
  let holding = false;
  let resolveHeld;
  let resolveCutOff;
  const held = new Promise((resolve) => { resolveHeld = resolve; });
  const cutOff = new Promise((resolve) => { resolveCutOff = resolve; });
  const leases = new Map();

  const server = http.createServer((req, res) => {
    const forward = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent: false,
    });
    forward.on('response', (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      if (req.url === '/v1/leases' && answer.statusCode === 200) {
        const chunks = [];
        answer.on('data', (chunk) => chunks.push(chunk));
        answer.on('end', () => {
          const lease = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          leases.set(lease.lease_id, lease);
        });
      }
      answer.pipe(res);
    });
    forward.on('error', () => res.destroy());

    if (!holding && req.method === 'POST' && req.url === '/v1/results') {
      holding = true;
      const chunks = [];
      req.on('data', (chunk) => chunks.push(chunk));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const half = body.subarray(0, body.length >> 1);
        res.on('close', () => {
          forward.destroy();
          resolveCutOff();
        });
        const submission = JSON.parse(body.toString('utf8'));
        forward.write(half, () => resolveHeld({
          submission,
          lease: leases.get(submission.lease_id),
          sentBytes: half.length,
          totalBytes: body.length,
        }));
      });
    } else {
      req.pipe(forward);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  const close = () => new Promise((resolve) => {
    server.closeAllConnections();
    server.close(resolve);
  });
  return { url, held, cutOff, close };
}

describe('a tab closed mid-upload', { timeout: TEST_TIMEOUT_MS + 30_000 }, () => {
  const consoleLog = new ConsoleLog();
  let workDir;
  let relay;
  let proxy;
  let browser;
  let closing;
  let taking;

  before(async () => {
    workDir = await mkdtemp(path.join(tmpdir(), 'glowworm-e2e-tab-closed-'));
    relay = await startRelay(workDir, ['--lease-seconds', String(LEASE_SECONDS)]);
    proxy = await startHoldingProxy(relay.url);
    console.log(`relay: ${relay.url}, holding proxy: ${proxy.url}`);
    browser = await launchBrowser();
    // Two profiles, so two contributor keys: the one whose tab is closed, and the one that
    // takes its unit over.
    closing = await browser.newContext();
    taking = await browser.newContext();
  });

  after(async () => {
    await browser?.close().catch((err) => console.error(`closing the browser: ${err.message}`));
    await proxy?.close();
    await stopRelay(relay);
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  test('the cut-off result is never credited, and its unit is reissued and completed',
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      try {
        const page = await openPage(closing, `${proxy.url}/`, 'closed tab', consoleLog);
        await page.click('#contribute');
        const { submission, lease, sentBytes, totalBytes } = await proxy.held;
        assert.ok(lease, 'the held result answers a lease granted through the proxy');
        console.log(`holding the result of unit ${lease.unit_id} of job ${lease.job_id} (lease ${lease.lease_id}) after ${sentBytes} of ${totalBytes} bytes`);
        const contributorUrl = `${relay.url}/v1/contributors/${submission.public_key}`;
        // A key the relay has never credited is unknown to it (404): nothing earned yet.
        const earned = async () =>
          (await getJson(contributorUrl)) ?? { credits: 0, units_verified: 0 };
        const beforeClose = await earned();

        await page.close();
        await Promise.race([
          proxy.cutOff,
          sleep(15_000).then(() => { throw new Error('the closed tab left its upload open for 15 s'); }),
        ]);
        const cutAt = Date.now();

        // The relay carries on: it answers, and has credited nothing for the cut-off upload.
        const afterCut = await earned();
        assert.equal(afterCut.credits, beforeClose.credits, 'nothing credited for a cut-off upload');
        assert.equal(afterCut.units_verified, beforeClose.units_verified);

        // Another browser takes over; the cut-off unit's job is completed once the lease expired.
        const other = await openPage(taking, `${relay.url}/`, 'other tab', consoleLog);
        await other.click('#contribute');
        const job = await waitFor(`job ${lease.job_id}, the cut-off unit's, to be done`, async () => {
          const status = await getJson(`${relay.url}/v1/jobs/${lease.job_id}`);
          return status.state === 'done' ? status : null;
        }, { timeoutMs: 180_000 });
        console.log(`job ${lease.job_id} done ${Date.now() - cutAt} ms after the cut: ${job.units_verified} of ${job.units_total} units verified`);
        assert.equal(job.units_verified, job.units_total);
        await clickStopAndWait(other);
        const stats = await getJson(`${relay.url}/v1/stats`);
        assert.equal(stats.units_failed, 0, 'no unit failed because a tab closed');

        // The signed result, replayed after its deadline, is refused and earns nothing.
        const replay = await fetch(`${relay.url}/v1/results`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(submission),
        });
        const body = await replay.json();
        assert.equal(replay.status, 410, `a replay after the deadline is refused: ${JSON.stringify(body)}`);
        assert.equal(body.error.code, 'lease_expired');
        const atEnd = await earned();
        assert.equal(atEnd.credits, beforeClose.credits, 'the closed tab earned nothing more');
        console.log(`lease ${lease.lease_id} expired unanswered; the closed tab keeps ${atEnd.credits} credits for ${atEnd.units_verified} units`);

        assert.match(relay.log.join(''), new RegExp(`lease ${lease.lease_id} of unit ${lease.unit_id} expired`),
          'the relay expired the cut-off lease and put its unit back in the queue');
        const errors = relay.log.join('').split('\n').filter((line) => /\bERROR\b/.test(line));
        assert.deepEqual(errors, [], 'the relay logged no error');
      } catch (err) {
        await saveArtifacts('tab-closed', [closing, taking], consoleLog, relay);
        throw err;
      }
    });
});
