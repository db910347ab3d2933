// The contribution session, shared by the page (app.js) and the partner widget's card
// (widget-app.js): WebGPU detection, the Web Worker (worker.js) that does the work, the messages
// it posts, the status texts they become, and this session's progress numbers. The two pages
// keep only their own UI (the DOM; the wallet on the page; consent and the host page on the card)
// and hear from a Session through the callbacks they give it.
//
// A Session has at most one worker. It is created when the person starts contributing, or (on
// the page) earlier, opened without leasing anything, to sign a wallet link; a start reuses
// that one. A worker runs one session: once it has stopped, failed, or not stopped in time, it
// is terminated and the next start makes a new one.

import { pauseText } from './controls.js';

/** How long a stop waits for the worker to finish cleanly before terminating it. */
const STOP_GRACE_MS = 5000;

/**
 * What the status line says, on the page and in the widget's smaller card. Each is keyed by the
 * worker's states ('starting', 'running', 'idle', 'retrying', 'paused', 'stopping'), then how a
 * session ends, then why WebGPU is not there.
 */
export const TEXTS = Object.freeze({
  page: {
    starting: 'Starting: loading the module and opening the GPU…',
    running: 'Contributing: computing work units',
    idle: 'Contributing: waiting for work from the relay',
    retrying: (seconds) => `Contributing: retrying in ${seconds} s`,
    paused: (reason) => `${pauseText(reason)}. Stop ends it.`,
    stopping: 'Stopping…',
    stopped: 'Stopped. Nothing runs until you click Contribute again.',
    timedOut: 'Stopped (the worker did not answer in time).',
    failed: 'Stopped after an error.',
    insecure: 'WebGPU needs a secure context: open this page over HTTPS or from localhost.',
    absent: 'This browser has no WebGPU, so it cannot contribute. Try a recent Chrome, Edge or Safari.',
    adapterFailed: (why) => `WebGPU is present but asking for a GPU failed: ${why}`,
    noAdapter: 'WebGPU is present but found no usable GPU (it may be disabled or blocklisted).',
  },
  widget: {
    starting: 'Starting…',
    running: 'Running',
    idle: 'Running: waiting for work',
    retrying: (seconds) => `Running: retrying in ${seconds} s`,
    paused: (reason) => pauseText(reason),
    stopping: 'Stopping…',
    stopped: 'Stopped. Nothing runs until you click Contribute.',
    timedOut: 'Stopped (the worker did not answer in time).',
    failed: 'Stopped after an error.',
    insecure: 'WebGPU needs a secure context (HTTPS).',
    absent: 'This browser has no WebGPU, so it cannot contribute.',
    adapterFailed: (why) => `WebGPU failed: ${why}`,
    noAdapter: 'WebGPU found no usable GPU here (or this site did not allow it).',
  },
});

/**
 * Looks for WebGPU on the main thread (the worker opens its own device). Resolves to
 * {ok: true, name} (the adapter's vendor and architecture) or {ok: false, why} in the words of
 * `texts` (TEXTS.page or TEXTS.widget).
 */
export async function detectWebGPU(texts) {
  if (!window.isSecureContext) return { ok: false, why: texts.insecure };
  if (!('gpu' in navigator)) return { ok: false, why: texts.absent };
  let adapter = null;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (err) {
    return { ok: false, why: texts.adapterFailed(err.message ?? err) };
  }
  if (!adapter) return { ok: false, why: texts.noAdapter };
  const info = adapter.info ?? {};
  const name = [info.vendor, info.architecture].filter(Boolean).join(' ') || 'a WebGPU adapter';
  return { ok: true, name };
}

/**
 * One contributor's session with its worker.
 *
 * `relay` is the relay's base URL ('' = this page's origin), `texts` TEXTS.page or
 * TEXTS.widget. The callbacks, all optional:
 *   status(text, state, message)   the status line changed; state is the page state (running,
 *                                  paused, stopping, stopped) and message the worker's 'state'
 *                                  message (null when the text is the session's own)
 *   ready({publicKey, adapter, keySaved})   the worker loaded the module and the key
 *   progress(totals, message)      a unit was verified; totals = {units, flop, credited, balance}
 *                                  for this session (credited: the sum of this session's credits)
 *   error(message, fatal)          the worker reports an error (it is logged already)
 *   ended(text)                    a started session is over and its worker gone; `text` is
 *                                  what the status line now says
 */
export class Session {
  constructor({ relay, texts, status, ready, progress, error, ended }) {
    this.relay = relay;
    this.texts = texts;
    this.on = {
      status: status ?? (() => {}),
      ready: ready ?? (() => {}),
      progress: progress ?? (() => {}),
      error: error ?? (() => {}),
      ended: ended ?? (() => {}),
    };
    this.worker = null; // contributing, or opened only to sign a wallet link
    this.started = false; // whether `worker` was told to start
    this.stopTimer = null; // terminates a worker that does not stop in time
    this.nextRequestId = 1;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.totals = { units: 0, flop: 0, credited: 0, balance: 0 };
  }

  /** Whether a worker exists (contributing, or opened to sign a link). */
  get hasWorker() {
    return this.worker !== null;
  }

  /**
   * Starts contributing: the worker (reused if opened already) leases and computes until
   * stop(). `settings` as controls.js gives them; `attribution` {partner, origin} for a
   * partner's widget. Does nothing while a session runs.
   */
  start(settings, attribution = {}) {
    if (this.started) return;
    this.totals = { units: 0, flop: 0, credited: 0, balance: 0 };
    this.setStatus(this.texts.starting, 'running');
    const worker = this.worker ?? this.createWorker();
    this.started = true;
    worker.postMessage({ type: 'start', relay: this.relay, settings, ...attribution });
  }

  /** Tells a running session's worker new settings (intensity, pausedBy). */
  settings(settings) {
    if (this.started) this.worker.postMessage({ type: 'settings', ...settings });
  }

  /**
   * Asks the worker to finish its step in flight, give back its prefetched lease and stop; if
   * it hangs (say, on a stuck GPU) it is terminated after STOP_GRACE_MS. Returns whether there
   * was a session to stop.
   */
  stop() {
    if (!this.started || this.stopTimer) return false;
    this.setStatus(this.texts.stopping, 'stopping');
    this.worker.postMessage({ type: 'stop' });
    this.stopTimer = setTimeout(() => this.end(this.texts.timedOut), STOP_GRACE_MS);
    return true;
  }

  /** Opens a worker without starting it (it loads the module and the key, nothing more). */
  open() {
    if (!this.worker) this.createWorker().postMessage({ type: 'open', relay: this.relay });
  }

  /** Sends `message` to the worker with a fresh id; resolves with its answer of the same id. */
  ask(message) {
    const worker = this.worker;
    return new Promise((resolve, reject) => {
      if (!worker) {
        reject(new Error('the worker is not running'));
        return;
      }
      const id = this.nextRequestId++;
      this.pending.set(id, { resolve, reject });
      worker.postMessage({ ...message, id });
    });
  }

  /** A worker opened only to sign a link goes away; a contributing one stays. */
  closeIdle() {
    if (this.worker && !this.started) this.closeWorker();
  }

  // --- Inside ------------------------------------------------------------------------------

  setStatus(text, state, message = null) {
    this.on.status(text, state, message);
  }

  /** Creates the worker (it does nothing until told 'open' or 'start'). */
  createWorker() {
    const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.worker = worker;
    // Ignore anything a worker says after its session ended.
    worker.onmessage = (event) => {
      if (worker === this.worker) this.onMessage(event.data ?? {});
    };
    worker.onerror = (event) => {
      event.preventDefault();
      if (worker !== this.worker) return;
      const why = `the worker failed: ${event.message || 'could not load worker.js'}`;
      if (this.started) {
        this.on.error(why, true);
        this.end(this.texts.failed);
      } else {
        this.closeWorker(new Error(why));
      }
    };
    return worker;
  }

  /** Terminates the worker, if any, and fails the requests it has not answered. */
  closeWorker(reason = new Error('the worker stopped')) {
    this.worker?.terminate();
    this.worker = null;
    this.started = false;
    for (const request of this.pending.values()) request.reject(reason);
    this.pending.clear();
  }

  /** Ends a started session: terminates the worker and tells the page. */
  end(text) {
    clearTimeout(this.stopTimer);
    this.stopTimer = null;
    this.closeWorker();
    this.setStatus(text, 'stopped');
    this.on.ended(text);
  }

  /** The worker's messages; see the top of worker.js. */
  onMessage(message) {
    switch (message.type) {
      case 'state':
        if (this.stopTimer) break; // keep showing "Stopping…"
        if (message.state === 'retrying') {
          this.setStatus(this.texts.retrying(Math.round(message.retryInMs / 1000)), 'running', message);
        } else if (message.state === 'paused') {
          this.setStatus(this.texts.paused(message.reason), 'paused', message);
        } else {
          this.setStatus(this.texts[message.state] ?? message.state, 'running', message);
        }
        break;
      case 'ready':
        this.on.ready(message);
        break;
      case 'progress':
        // The worker counts FLOP for the session; this unit's own is the difference.
        message.unitFlop = message.flop - this.totals.flop;
        this.totals = {
          units: message.units,
          flop: message.flop,
          credited: this.totals.credited + Number(message.credited),
          balance: message.balance,
        };
        this.on.progress(this.totals, message);
        break;
      case 'error':
        if (message.fatal) console.error(`Glowworm: ${message.message}`);
        else console.warn(`Glowworm: ${message.message}`);
        this.on.error(message.message, Boolean(message.fatal));
        break;
      case 'recovered':
        console.warn(`Glowworm: the GPU device was lost (${message.reason}); reopened it and gave back the units in hand`);
        break;
      case 'stopped':
        this.end(this.texts.stopped);
        break;
      case 'link': {
        const request = this.pending.get(message.id);
        if (!request) break;
        this.pending.delete(message.id);
        if (message.error) request.reject(new Error(message.error));
        else request.resolve(message);
        break;
      }
      default:
        console.warn('Glowworm: unknown message from the worker', message);
    }
  }
}
