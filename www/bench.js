// The kernel benchmark page (bench.html): times the tiled and naive matmul kernels on this
// browser's WebGPU adapter through the module's benchMatmul export, with no relay, and checks
// their products against a CPU reference computed here. tests/bench/browser.mjs drives it through
// globalThis.glowwormBench.compare; a person clicks Run.

// The bench module (www/pkg-bench/, the `bench` feature): the contributor module lacks benchMatmul.
import init, { benchMatmul } from './pkg-bench/glowworm.js';

/** m, n, k: the relay's unit (one 64x64 tile of C over k = 256), then square products. */
export const SIZES = [
  [64, 64, 256],
  [256, 256, 256],
];
/** Added on a real GPU; a CPU fallback (SwiftShader) would take minutes over it. */
const LARGE = [1024, 1024, 1024];
/** Timed batches per kernel and round, and rounds of (naive, tiled). */
export const REPS = 3;
export const ROUNDS = 3;

const loaded = init();

const median = (values) => {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.floor(sorted.length / 2)];
};

/** `len` reproducible pseudo-random values in [-1, 1) (mulberry32). */
function sampleMatrix(len, seed) {
  const out = new Float32Array(len);
  let state = seed >>> 0;
  for (let i = 0; i < len; i += 1) {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    out[i] = (((z ^ (z >>> 14)) >>> 0) / 2 ** 32) * 2 - 1;
  }
  return out;
}

/** Largest |c - A B| over C, with A B computed here in f64. */
function maxError(a, b, c, m, n, k) {
  let worst = 0;
  const row = new Float64Array(n);
  for (let i = 0; i < m; i += 1) {
    row.fill(0);
    for (let l = 0; l < k; l += 1) {
      const x = a[i * k + l];
      for (let j = 0; j < n; j += 1) row[j] += x * b[l * n + j];
    }
    for (let j = 0; j < n; j += 1) {
      const e = Math.abs(c[i * n + j] - row[j]);
      if (Number.isNaN(e)) return NaN;
      if (e > worst) worst = e;
    }
  }
  return worst;
}

/**
 * Times both kernels on m x n x k in alternating rounds, after checking each one's product
 * against a CPU reference; resolves to {m, n, k, naive: {kernel, gflops, medianMs, ms, batch,
 * maxError}, tiled: {...}, ratio}. Rejects if a kernel computes a wrong product.
 */
export async function compare(m, n, k, { reps = REPS, rounds = ROUNDS } = {}) {
  await loaded;
  const a = sampleMatrix(m * k, 1);
  const b = sampleMatrix(k * n, 2);
  // Inputs lie in [-1, 1): an f32 dot product of length k is off by at most about k * eps.
  const tolerance = 8 * k * 2 ** -23;
  const runs = { naive: [], tiled: [] };
  for (let round = 0; round < rounds; round += 1) {
    for (const kernel of ['naive', 'tiled']) {
      const report = await benchMatmul(kernel, a, b, m, n, k, reps);
      const error = maxError(a, b, report.c, m, n, k);
      if (!(error <= tolerance)) {
        throw new Error(`${report.kernel} computed a wrong ${m}x${n}x${k} product: off by ${error} (tolerance ${tolerance})`);
      }
      runs[kernel].push({ ...report, error });
    }
  }
  const flop = 2 * m * n * k;
  const figures = (kernel) => {
    const ms = runs[kernel].flatMap((r) => Array.from(r.ms));
    const medianMs = median(ms);
    const last = runs[kernel].at(-1);
    const maxError = Math.max(...runs[kernel].map((r) => r.error));
    return { kernel: last.kernel, gflops: flop / medianMs / 1e6, medianMs, ms, batch: last.batch, maxError };
  };
  const naive = figures('naive');
  const tiled = figures('tiled');
  return { m, n, k, naive, tiled, ratio: tiled.gflops / naive.gflops };
}

/** What navigator.gpu offers here, or null without WebGPU. */
export async function adapterInfo() {
  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) return null;
  const { vendor, architecture, device, description } = adapter.info ?? {};
  return { vendor, architecture, device, description };
}

globalThis.glowwormBench = { loaded, compare, adapterInfo, SIZES };

// --- The page ---------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

let sizes = SIZES;

async function run() {
  $('run').disabled = true;
  document.body.dataset.state = 'running';
  const rows = $('results').tBodies[0];
  rows.replaceChildren();
  try {
    for (const [m, n, k] of sizes) {
      $('status').textContent = `Running ${m}×${n}×${k}…`;
      const r = await compare(m, n, k);
      const tr = document.createElement('tr');
      for (const text of [`${m}×${n}×${k}`, r.naive.gflops.toFixed(2), r.tiled.gflops.toFixed(2), `${r.ratio.toFixed(2)}×`]) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.append(td);
      }
      rows.append(tr);
    }
    $('status').textContent = 'Done.';
  } catch (err) {
    $('status').textContent = `Failed: ${err.message ?? err}`;
  } finally {
    $('run').disabled = false;
    document.body.dataset.state = 'stopped';
  }
}

async function main() {
  $('run').addEventListener('click', run);
  const info = await adapterInfo().catch(() => null);
  if (!info) {
    $('adapter').textContent = 'not available: this browser has no WebGPU';
    document.body.dataset.state = 'unsupported';
    return;
  }
  $('adapter').textContent = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'a WebGPU adapter';
  if (!/swiftshader/i.test(info.architecture ?? '')) sizes = [...SIZES, LARGE];
  $('run').disabled = false;
  document.body.dataset.state = 'ready';
}

main();
