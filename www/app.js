// The page's main thread: UI only. It detects WebGPU, creates the Web Worker (worker.js) when the
// person clicks Contribute, and draws the progress messages the worker posts. All GPU work, key
// handling and relay traffic for units happen in the worker.

import { loadIdentity } from './keystore.js';

/** The relay's base URL without a trailing slash; '' = this page's own origin. */
const RELAY = String(globalThis.GLOWWORM_CONFIG?.relay ?? '').replace(/\/+$/, '');
/** How long Stop waits for the worker to finish cleanly before terminating it. */
const STOP_GRACE_MS = 5000;
const NETWORK_REFRESH_MS = 15_000;
/** While contributing, the network panel refreshes at most this often. */
const NETWORK_REFRESH_RUNNING_MS = 5000;

const $ = (id) => document.getElementById(id);
const ui = {
  contribute: $('contribute'),
  stop: $('stop'),
  status: $('status'),
  adapter: $('adapter'),
  units: $('units'),
  gflop: $('gflop'),
  credits: $('credits'),
  kernel: $('kernel'),
  publicKey: $('public-key'),
  keyNote: $('key-note'),
  error: $('error'),
  relay: $('relay'),
  network: $('network'),
};

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const gflop = new Intl.NumberFormat(undefined, { minimumFractionDigits: 3, maximumFractionDigits: 3 });

let webgpuReady = false;
let worker = null; // the running worker, if any
let stopTimer = null; // terminates a worker that does not stop in time
let networkRefreshedAt = 0;

/** Sets the status line and the page state (drives the pulsing indicator in style.css). */
function setStatus(text, state) {
  ui.status.textContent = text;
  if (state) document.body.dataset.state = state;
}

function showError(message) {
  ui.error.textContent = message ? `Last error: ${message}` : '';
  ui.error.hidden = !message;
}

function formatCredits(value) {
  // Credits are integers (1 credit = 1 verified FLOP); they may arrive as Number or BigInt.
  return integer.format(typeof value === 'bigint' ? value : Math.trunc(Number(value)));
}

// --- WebGPU detection (main thread only looks; the worker opens its own device) ---------------

async function detectWebGPU() {
  if (!window.isSecureContext) {
    return { ok: false, why: 'WebGPU needs a secure context: open this page over HTTPS or from localhost.' };
  }
  if (!('gpu' in navigator)) {
    return { ok: false, why: 'This browser has no WebGPU, so it cannot contribute. Try a recent Chrome, Edge or Safari.' };
  }
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (err) {
    return { ok: false, why: `WebGPU is present but asking for a GPU failed: ${err.message ?? err}` };
  }
  if (!adapter) {
    return { ok: false, why: 'WebGPU is present but found no usable GPU (it may be disabled or blocklisted).' };
  }
  const info = adapter.info ?? {};
  const name = [info.vendor, info.architecture].filter(Boolean).join(' ') || 'a WebGPU adapter';
  return { ok: true, name, info };
}

// --- The contributor's saved identity and balance (reads only; nothing computes) -------------

async function showSavedIdentity() {
  let identity;
  try {
    identity = await loadIdentity();
  } catch {
    return; // no IndexedDB (e.g. some private modes): the worker will say so if it matters
  }
  if (!identity || worker) return;
  ui.publicKey.textContent = identity.publicKey;
  ui.keyNote.textContent = '(saved in this browser)';
  try {
    const response = await fetch(`${RELAY}/v1/contributors/${identity.publicKey}`);
    if (response.ok) {
      const me = await response.json();
      ui.credits.textContent = formatCredits(me.credits);
    }
  } catch {
    // The network panel reports an unreachable relay.
  }
}

async function refreshNetwork() {
  networkRefreshedAt = Date.now();
  try {
    const response = await fetch(`${RELAY}/v1/stats`);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const s = await response.json();
    ui.network.textContent =
      `${integer.format(s.contributors_online)} contributors online · ` +
      `${integer.format(s.units_completed)} units verified · ` +
      `${gflop.format(Number(s.flop_verified) / 1e9)} GFLOP verified · ` +
      `${integer.format(s.jobs_done)} jobs done`;
  } catch (err) {
    ui.network.textContent = `The relay is not reachable right now (${err.message ?? err}).`;
  }
}

function maybeRefreshNetwork() {
  if (Date.now() - networkRefreshedAt > NETWORK_REFRESH_RUNNING_MS) refreshNetwork();
}

// --- Running: the worker and its messages -----------------------------------------------------

const STATE_TEXT = {
  starting: 'Starting: loading the module and opening the GPU…',
  running: 'Contributing: computing work units',
  idle: 'Contributing: waiting for work from the relay',
  stopping: 'Stopping…',
};

function onWorkerMessage(message) {
  switch (message.type) {
    case 'state':
      if (stopTimer) break; // keep showing "Stopping…"
      if (message.state === 'retrying') {
        setStatus(`Contributing: retrying in ${Math.round(message.retryInMs / 1000)} s`, 'running');
      } else {
        setStatus(STATE_TEXT[message.state] ?? message.state, 'running');
        if (message.state === 'idle') maybeRefreshNetwork();
      }
      break;
    case 'ready':
      ui.publicKey.textContent = message.publicKey;
      ui.keyNote.textContent = message.keySaved ? '(saved in this browser)' : '(not saved: a reload will start a new id)';
      break;
    case 'progress':
      ui.units.textContent = integer.format(message.units);
      ui.gflop.textContent = gflop.format(message.flop / 1e9);
      ui.credits.textContent = formatCredits(message.balance);
      ui.kernel.textContent = message.kernel;
      showError('');
      maybeRefreshNetwork();
      break;
    case 'error':
      showError(message.message);
      if (message.fatal) console.error(`Glowworm: ${message.message}`);
      else console.warn(`Glowworm: ${message.message}`);
      break;
    case 'stopped':
      finish('Stopped. Nothing runs until you click Contribute again.');
      break;
    default:
      console.warn('Glowworm: unknown message from the worker', message);
  }
}

function start() {
  if (!webgpuReady || worker) return;
  showError('');
  ui.contribute.disabled = true;
  ui.stop.disabled = false;
  setStatus(STATE_TEXT.starting, 'running');

  // The worker is created only now, after the person asked: nothing leases or computes before.
  const w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  worker = w;
  // Ignore anything a worker says after its session ended.
  w.onmessage = (event) => {
    if (w === worker) onWorkerMessage(event.data ?? {});
  };
  w.onerror = (event) => {
    event.preventDefault();
    if (w !== worker) return;
    showError(`the worker failed: ${event.message || 'could not load worker.js'}`);
    finish('Stopped after an error.');
  };
  w.postMessage({ type: 'start', relay: RELAY });
  refreshNetwork();
}

function stop() {
  if (!worker || stopTimer) return;
  ui.stop.disabled = true;
  setStatus(STATE_TEXT.stopping, 'stopping');
  worker.postMessage({ type: 'stop' });
  // The worker finishes the step in flight and gives back its prefetched lease; if it hangs
  // (say, on a stuck GPU), stop it the hard way.
  stopTimer = setTimeout(() => finish('Stopped (the worker did not answer in time).'), STOP_GRACE_MS);
}

/** Ends a session: terminates the worker and resets the controls. */
function finish(text) {
  clearTimeout(stopTimer);
  stopTimer = null;
  if (worker) worker.terminate();
  worker = null;
  ui.stop.disabled = true;
  ui.contribute.disabled = !webgpuReady;
  setStatus(text, 'stopped');
  refreshNetwork();
}

// --- Startup ----------------------------------------------------------------------------------

async function main() {
  ui.relay.textContent = RELAY || window.location.origin;
  ui.contribute.addEventListener('click', start);
  ui.stop.addEventListener('click', stop);

  refreshNetwork();
  setInterval(refreshNetwork, NETWORK_REFRESH_MS);
  showSavedIdentity();

  const gpu = await detectWebGPU();
  if (!gpu.ok) {
    ui.adapter.textContent = 'not available';
    setStatus(gpu.why, 'unsupported');
    return;
  }
  ui.adapter.textContent = gpu.name;
  webgpuReady = true;
  ui.contribute.disabled = false;
  setStatus('Ready. Nothing runs until you click Contribute.', 'ready');
}

main();
