// End to end: the real page and module in headless Chromium with WebGPU run custom-kernel leases
// (a requester's WGSL dispatched once, inputs bound at their bindings, the output read back as
// bytes). The relay here is a stand-in on loopback that serves the page's files from www/ and a
// fixed list of leases: SAXPY, then two conv1d units sharing their weights (fetched once), with
// the output at binding 0 and an input at binding 3. It checks each submitted output against a
// computation here and its ed25519 signature over exactly those bytes.
//
// Run from the repository root after `cargo xtask build`: node --test tests/e2e/
// Environment and helpers: see harness.mjs.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createPublicKey, verify } from 'node:crypto';
import http from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { tmpdir } from 'node:os';
import {
  ConsoleLog, WWW, launchProfile, openPage, saveArtifacts, waitFor,
} from './harness.mjs';

const TEST_TIMEOUT_MS = 240_000;

const sha256 = (bytes) => createHash('sha256').update(bytes).digest();
const f32Bytes = (values) => Buffer.from(new Float32Array(values).buffer);

const SAXPY = `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i < arrayLength(&out)) {
        out[i] = 2.0 * x[i] + y[i];
    }
}
`;

const CONV1D = `@group(0) @binding(3) var<storage, read> signal: array<f32>;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(0) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn conv(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= arrayLength(&out)) {
        return;
    }
    var sum = 0.0;
    for (var j = 0u; j < arrayLength(&weights); j++) {
        sum += weights[j] * signal[i + j];
    }
    out[i] = sum;
}
`;

/**
 * The bytes the contributor signs for a result (protocol/src/signing.rs, result_message):
 * domain || u32be(len(lease_id)) || lease_id || i64be(unit_id) || kernel hash || sha256(output).
 */
function resultMessage(unitId, leaseId, kernelHash, outputDigest) {
  const lease = Buffer.from(leaseId);
  const leaseLen = Buffer.alloc(4);
  leaseLen.writeUInt32BE(lease.length);
  const unit = Buffer.alloc(8);
  unit.writeBigInt64BE(BigInt(unitId));
  return Buffer.concat([
    Buffer.from('glowworm/result/v1\0'), leaseLen, lease, unit, Buffer.from(kernelHash, 'hex'), outputDigest,
  ]);
}

/** A stand-in relay: the leases it is given, then none; every submission kept. */
class StandInRelay {
  blobs = new Map();
  kernels = new Map();
  leases = [];
  expected = new Map();
  kernelOf = new Map();
  submissions = [];
  blobFetches = 0;

  blob(name, bytes, binding) {
    const hash = sha256(bytes).toString('hex');
    this.blobs.set(hash, bytes);
    return { name, hash, bytes: bytes.length, binding };
  }

  kernel(id, wgsl, entryPoint) {
    const hash = sha256(Buffer.from(wgsl)).toString('hex');
    this.kernels.set(hash, { id, hash, entry_point: entryPoint, wgsl, tile: [0, 0] });
    return { id, hash };
  }

  addLease(lease, expected) {
    const unitId = this.leases.length + 1;
    this.leases.push({
      lease_id: `lease-${unitId}`, unit_id: unitId, job_id: 1, flop: 0,
      deadline_unix_ms: Date.now() + 600_000, ...lease,
    });
    this.expected.set(unitId, expected);
    this.kernelOf.set(unitId, lease.kernel.hash);
  }

  async handle(req, res) {
    const url = new URL(req.url, 'http://relay');
    const p = url.pathname;
    let body = '';
    for await (const chunk of req) body += chunk;
    const json = (status, value) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    if (p === '/v1/leases') {
      const lease = this.leases.shift();
      if (!lease) {
        res.writeHead(204);
        return res.end();
      }
      return json(200, lease);
    }
    if (p.startsWith('/v1/kernels/')) return json(200, this.kernels.get(p.slice('/v1/kernels/'.length)));
    if (p.startsWith('/v1/blobs/')) {
      this.blobFetches += 1;
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      return res.end(this.blobs.get(p.slice('/v1/blobs/'.length)));
    }
    if (p === '/v1/results') {
      const submission = JSON.parse(body);
      this.submissions.push(submission);
      return json(200, {
        unit_id: submission.unit_id, status: 'pending', credited: 0, pending: 0, balance: 0, flop: 0,
      });
    }
    if (p.startsWith('/v1/leases/')) return json(200, { released: true });
    if (p === '/v1/stats') {
      return json(200, {
        contributors_online: 1, units_completed: 0, units_pending: 0, units_leased: 0, units_failed: 0,
        flop_verified: 0, credits_issued: 0, jobs_done: 0,
      });
    }
    if (p.startsWith('/v1/')) return json(404, { error: { code: 'not_found', message: p } });
    const file = p === '/' ? 'index.html' : p;
    const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm' };
    try {
      const bytes = await readFile(path.join(WWW, path.normalize(file)));
      res.writeHead(200, { 'content-type': types[path.extname(file)] ?? 'application/octet-stream' });
      res.end(bytes);
    } catch {
      res.writeHead(404);
      res.end();
    }
  }
}

describe('custom kernels in the browser', { timeout: TEST_TIMEOUT_MS + 60_000 }, () => {
  const relay = new StandInRelay();
  const consoleLog = new ConsoleLog();
  let server;
  let url;
  let workDir;
  let context;

  before(async () => {
    const n = 1000;
    const x = Array.from({ length: n }, (_, i) => i * 0.5);
    const y = Array.from({ length: n }, (_, i) => 1 - i);
    relay.addLease({
      kernel: relay.kernel('saxpy', SAXPY, 'main'),
      work: { kind: 'dispatch', workgroups: [Math.ceil(n / 64), 1, 1], output_binding: 2 },
      inputs: [relay.blob('x', f32Bytes(x), 0), relay.blob('y', f32Bytes(y), 1)],
      output_bytes: 4 * n,
    }, x.map((v, i) => Math.fround(2 * v + y[i])));
    const weights = [0.25, 0.5, 0.25];
    for (const seed of [1, 2]) {
      const signal = Array.from({ length: 130 }, (_, i) => Math.fround(Math.sin(i * seed)));
      const outputs = signal.length - weights.length + 1;
      relay.addLease({
        kernel: relay.kernel('conv1d', CONV1D, 'conv'),
        work: { kind: 'dispatch', workgroups: [Math.ceil(outputs / 64), 1, 1], output_binding: 0 },
        inputs: [relay.blob('signal', f32Bytes(signal), 3), relay.blob('weights', f32Bytes(weights), 1)],
        output_bytes: 4 * outputs,
      }, Array.from({ length: outputs }, (_, i) => weights.reduce((sum, w, j) => sum + w * signal[i + j], 0)));
    }

    server = http.createServer((req, res) => relay.handle(req, res).catch((err) => {
      res.writeHead(500);
      res.end(String(err));
    }));
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${server.address().port}`;
    workDir = await mkdtemp(path.join(tmpdir(), 'glowworm-e2e-custom-'));
    context = await launchProfile(path.join(workDir, 'profile'));
  });

  after(async () => {
    await context?.close().catch((err) => console.error(`closing the browser: ${err.message}`));
    server?.close();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  test('SAXPY and conv1d units are computed, read back as bytes and signed over them',
    { timeout: TEST_TIMEOUT_MS },
    async () => {
      try {
        const page = await openPage(context, `${url}/`, 'page', consoleLog);
        await page.click('#contribute');
        await waitFor('three submitted results', async () => relay.submissions.length >= 3 || null, {
          timeoutMs: 180_000,
        });
        for (const s of relay.submissions) {
          const output = Buffer.from(s.output, 'base64');
          const got = Array.from(new Float32Array(output.buffer, output.byteOffset, output.length / 4));
          const want = relay.expected.get(s.unit_id);
          assert.equal(got.length, want.length, `unit ${s.unit_id}: output length`);
          const worst = Math.max(...got.map((g, i) => Math.abs(g - want[i]) / (1 + Math.abs(want[i]))));
          console.log(`unit ${s.unit_id}: ${got.length} values, largest relative error ${worst}`);
          assert.ok(worst <= 1e-5, `unit ${s.unit_id} is off by ${worst}`);

          const message = resultMessage(s.unit_id, s.lease_id, relay.kernelOf.get(s.unit_id), sha256(output));
          const key = createPublicKey({
            key: Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), Buffer.from(s.public_key, 'hex')]),
            format: 'der',
            type: 'spki',
          });
          assert.ok(verify(null, message, key, Buffer.from(s.signature, 'hex')), `unit ${s.unit_id}: the signature covers the output bytes`);
        }
        // Six inputs in three units; the conv1d weights are shared, so fetched once.
        assert.equal(relay.blobFetches, 5, 'a shared input is fetched once');
        assert.deepEqual(consoleLog.errors, [], 'no errors in the console');
      } catch (err) {
        await saveArtifacts('custom-kernel', [context], consoleLog, null);
        throw err;
      }
    });
});
