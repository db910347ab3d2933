// The dedicated module Web Worker that does all the heavy work, so the page's main thread only draws.
//
// It loads the WebAssembly module, restores the contributor's key from IndexedDB (or saves the one
// the module generates), and then runs units one after another until the page says stop. It can
// also be opened without running anything, to sign a wallet link with the contributor's key.
//
// Messages from the session (session.js, for the page and the widget alike):
//   {type: 'open', relay}    load the module and the key (opens the GPU device) and answer 'ready';
//                            nothing is leased or computed. Optional: 'start' opens too. Errors
//                            surface in the answers to later requests.
//   {type: 'start', relay, settings?, partner?, origin?}   relay: the relay's base URL ('' = the
//                            page's own origin). Sent once. partner and origin: a partner widget's
//                            attribution, sent with every lease request.
//   {type: 'settings', intensity, pausedBy}   at any time. intensity: the share of time the GPU
//                            is busy, 0.05 to 1 (after a step of t ms the worker rests
//                            t * (1 - intensity) / intensity ms). pausedBy: null, or why to pause
//                            ('hidden', 'battery'): the step in flight finishes, the prefetched
//                            lease is given back, and nothing runs until it is null again.
//   {type: 'stop'}           finish the step in flight (if any), release a prefetched lease, stop.
//   {type: 'link', id, fields}   after 'open' or 'start': build the Sign-In with Ethereum message
//                            that links this contributor's key to a wallet, and sign it with the
//                            key. fields: {domain, address, uri, chainId, nonce, issuedAt,
//                            expirationTime}. Computes nothing; works while running too.
// Messages to the session:
//   {type: 'state', state, retryInMs?, reason?}   state: 'starting' | 'running' | 'idle' |
//                                        'retrying' | 'paused' (reason: pausedBy) | 'stopping'
//   {type: 'ready', publicKey, adapter, keySaved}
//   {type: 'progress', units, flop, balance, credited, kernel, unitId, jobId, computeMs,
//                      stepMs, bytesDownloaded, cacheHits}   (units and flop count this session)
//   {type: 'recovered', reason, recoveries}  the GPU device was lost (reason: 'destroyed' or
//                                        'unknown'); the module gave back the leases in hand and
//                                        opened a new device
//   {type: 'error', message, fatal, retryInMs?}          fatal: the worker has given up
//   {type: 'stopped', units, flop}                       the last message; the page may terminate us
//   {type: 'link', id, message, sessionSignature, publicKey}   or {type: 'link', id, error}

import init, { Contributor } from './pkg/glowworm.js';
import { loadIdentity, saveIdentity } from './keystore.js';

const MAX_BACKOFF_MS = 30_000;
/** The longest rest between two steps at low intensity. */
const MAX_REST_MS = 30_000;
const MIN_INTENSITY = 0.05;

/** Settings from the page; see 'settings' above. */
let intensity = 1;
let pausedBy = null;
/** The partner widget's attribution, if any: {partner, origin}. */
let attribution = null;

let running = false; // false once the page said stop
let started = false; // a worker runs one session; the page makes a new worker for the next
let wake = null; // ends the current sleep early (set while sleeping)
let opening = null; // the promise of open(), once 'open' or 'start' arrived
let contributor = null; // the open Contributor; null once freed
let recoveries = 0; // GPU devices reopened after a loss, this session (the module reopens them)

self.onmessage = (event) => {
  const message = event.data ?? {};
  if (message.type === 'open') {
    open(String(message.relay ?? '')).catch(() => {}); // reported to whoever needs it
  } else if (message.type === 'link') {
    signLink(message.id, message.fields);
  } else if (message.type === 'settings') {
    applySettings(message);
  } else if (message.type === 'start') {
    if (started) {
      post({ type: 'error', message: 'this worker has already been started', fatal: false });
      return;
    }
    started = true;
    running = true;
    if (message.settings) applySettings(message.settings);
    if (message.partner && message.origin) {
      attribution = { partner: String(message.partner), origin: String(message.origin) };
    }
    run(String(message.relay ?? '')).catch((err) => {
      // run() handles its own errors; this is a last resort so the page never waits forever.
      post({ type: 'error', message: describe(err), fatal: true });
      post({ type: 'stopped', units: 0, flop: 0 });
    });
  } else if (message.type === 'stop') {
    running = false;
    if (wake) wake();
    if (!started) post({ type: 'stopped', units: 0, flop: 0 });
  }
};

function post(message) {
  self.postMessage(message);
}

function applySettings({ intensity: i, pausedBy: why }) {
  const value = Number(i);
  if (Number.isFinite(value)) intensity = Math.min(1, Math.max(MIN_INTENSITY, value));
  pausedBy = why ? String(why) : null;
  if (wake) wake(); // re-check a rest or a pause at once
}

/** A readable message for anything thrown (wasm-bindgen throws Error objects; be tolerant). */
function describe(err) {
  if (err instanceof Error) return err.message || String(err);
  return String(err);
}

/** Waits `ms`, or less if the page says stop meanwhile. */
function sleep(ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      wake = null;
      resolve();
    };
    const timer = setTimeout(done, ms);
    wake = done;
  });
}

/** Opens the GPU and the contributor's identity, saving a freshly generated key. */
async function openContributor(relay) {
  let saved;
  try {
    saved = await loadIdentity();
  } catch (err) {
    post({ type: 'error', message: `could not read the saved key: ${describe(err)}`, fatal: false });
  }
  const contributor = await Contributor.start(relay, saved?.secretKey, attribution?.partner, attribution?.origin);
  let keySaved = true;
  if (!saved || saved.publicKey !== contributor.publicKey()) {
    try {
      await saveIdentity(contributor.secretKey(), contributor.publicKey());
    } catch (err) {
      keySaved = false;
      post({
        type: 'error',
        message: `could not save the key in this browser (a reload will be a new contributor): ${describe(err)}`,
        fatal: false,
      });
    }
  }
  return { contributor, keySaved };
}

/**
 * Loads the module and opens the contributor once (GPU device and key; nothing is leased) and
 * tells the page who it is. Every later call returns the same promise.
 */
function open(relay) {
  opening ??= (async () => {
    await init(); // fetches pkg/glowworm_bg.wasm
    const opened = await openContributor(relay);
    contributor = opened.contributor;
    post({
      type: 'ready',
      publicKey: contributor.publicKey(),
      adapter: contributor.adapter(),
      keySaved: opened.keySaved,
    });
  })();
  return opening;
}

/** Answers a 'link' request: the SIWE message naming this key, and the key's signature of it. */
async function signLink(id, fields) {
  try {
    if (!opening) throw new Error("the worker was asked to sign a link before 'open'");
    await opening;
    if (!contributor) throw new Error('the contributor has stopped');
    const message = contributor.siweMessage(fields);
    const sessionSignature = contributor.signLink(message);
    post({ type: 'link', id, message, sessionSignature, publicKey: contributor.publicKey() });
  } catch (err) {
    post({ type: 'link', id, error: describe(err) });
  }
}

async function run(relay) {
  post({ type: 'state', state: 'starting' });
  try {
    await open(relay); // at once if the page opened us already (to link a wallet)
  } catch (err) {
    post({ type: 'error', message: `could not start: ${describe(err)}`, fatal: true });
    post({ type: 'stopped', units: 0, flop: 0 });
    return;
  }

  let units = 0;
  let flop = 0;
  let failures = 0; // consecutive failed steps, for the backoff
  let state = '';
  const setState = (next, extra = {}) => {
    if (next !== state || extra.retryInMs !== undefined) post({ type: 'state', state: next, ...extra });
    state = next;
  };
  const backoff = async (message) => {
    failures += 1;
    const retryInMs = Math.min(1000 * 2 ** (failures - 1), MAX_BACKOFF_MS);
    post({ type: 'error', message, fatal: false, retryInMs });
    setState('retrying', { retryInMs });
    await sleep(retryInMs);
  };

  while (running) {
    if (pausedBy) {
      // Give back the prefetched lease: a pause may outlast its deadline.
      setState('paused', { reason: pausedBy });
      try {
        await contributor?.release();
      } catch (err) {
        post({ type: 'error', message: `could not release the prefetched unit: ${describe(err)}`, fatal: false });
      }
      while (running && pausedBy) await sleep(60_000);
      continue;
    }
    setState('running');
    const began = performance.now();
    try {
      const report = await contributor.step();
      failures = 0;
      const stepMs = performance.now() - began;
      if (report.kind === 'verified') {
        units += 1;
        flop += Number(report.flop);
        post({
          type: 'progress',
          units,
          flop,
          balance: report.balance,
          credited: report.credited,
          kernel: report.kernel,
          unitId: report.unitId,
          jobId: report.jobId,
          computeMs: report.computeMs,
          stepMs,
          bytesDownloaded: report.bytesDownloaded,
          cacheHits: report.cacheHits,
        });
        // Intensity: rest in proportion to the time the step kept the GPU and the network busy.
        if (intensity < 1) await sleep(Math.min(MAX_REST_MS, (stepMs * (1 - intensity)) / intensity));
      } else if (report.kind === 'recovered') {
        // The GPU device was lost (a driver reset, a GPU watchdog, the browser reclaiming it):
        // the module gave back the leases in hand and opened a new device. Wait a little, as
        // after a failed step, in case the new device fares no better.
        recoveries += 1;
        post({ type: 'recovered', reason: report.reason, recoveries });
        await backoff(`the GPU device was lost (${report.reason}): ${report.message}`);
      } else {
        // The relay has no work right now.
        setState('idle');
        await sleep(Math.max(100, Number(report.retryAfterMs) || 1000));
      }
    } catch (err) {
      // A step that failed on the GPU gave its unit back; a lost device is replaced by the
      // module at its next step.
      await backoff(describe(err));
    }
  }

  setState('stopping');
  try {
    await contributor?.release(); // give back a prefetched lease, if any
  } catch (err) {
    post({ type: 'error', message: `could not release the prefetched unit: ${describe(err)}`, fatal: false });
  }
  contributor?.free();
  contributor = null;
  post({ type: 'stopped', units, flop });
}
