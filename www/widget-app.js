// The partner widget's card (widget.html), framed on partner sites by widget.js. It runs on the
// Glowworm origin, so its key store and its worker (worker.js, the same as the page's, driven by
// the same session.js) are Glowworm's own and the embedding page can reach neither.
//
// Consent: nothing computes before the visitor's own click on Contribute inside this frame. A
// click counts only when it is a trusted event (event.isTrusted: made by the person, not by a
// script) and the card has been fully visible, neither covered nor faded nor transformed, for
// MIN_VISIBLE_MS and still is (IntersectionObserver v2 `isVisible` where the browser has it;
// elsewhere only "fully inside the viewport"). The consent is remembered per embedding site (its
// origin) in this browser: coming back to a site where the visitor left it running resumes it,
// visibly, once the card is visible; Stop means "not now" (the next visit waits for a click), and
// "Forget my consent for this site" stops and forgets it.
//
// The host page hears what happens by postMessage ({source: 'glowworm', type, ...}, sent only to
// the embedding origin): ready, started, stopped, paused, credited. It may send {glowworm: 'stop'}
// from the embedding origin; nothing it sends can start computing.

import { bindControls } from './controls.js';
import { detectWebGPU, Session, TEXTS } from './session.js';

const RELAY = String(globalThis.GLOWWORM_CONFIG?.relay ?? '').replace(/\/+$/, '');
/** How long the card must have been fully visible before a click on Contribute counts. */
const MIN_VISIBLE_MS = 500;
const CONSENT_KEY = 'glowworm.widget.consent';
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

const $ = (id) => document.getElementById(id);
const ui = {
  card: $('card'),
  consent: $('consent'),
  status: $('status'),
  partnerNote: $('partner-note'),
  running: $('running'),
  runningIntensity: $('running-intensity'),
  units: $('units'),
  credits: $('credits'),
  contribute: $('contribute'),
  stop: $('stop'),
  forget: $('forget'),
  error: $('error'),
};
const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

const params = new URLSearchParams(window.location.hash.slice(1));
const partner = ADDRESS.test(params.get('partner') ?? '') ? params.get('partner') : null;
document.documentElement.dataset.theme = ['light', 'dark'].includes(params.get('theme')) ? params.get('theme') : 'auto';

/** The origin of the page that frames this card (null when opened on its own). */
const embedder = (() => {
  if (window.parent === window) return null;
  const parent = window.location.ancestorOrigins?.[0];
  if (parent && parent !== 'null') return parent;
  try {
    return document.referrer ? new URL(document.referrer).origin : null;
  } catch {
    return null;
  }
})();
/** Whose consent this is: the embedding site, or the Glowworm site itself. */
const site = embedder ?? window.location.origin;

let webgpuReady = false;

const session = new Session({
  relay: RELAY,
  texts: TEXTS.widget,
  status(text, state, message) {
    setStatus(text, state);
    if (message?.state === 'paused') tell('paused', { reason: message.reason });
  },
  progress(totals, message) {
    ui.units.textContent = integer.format(totals.units);
    ui.credits.textContent = integer.format(totals.credited);
    showError('');
    tell('credited', {
      units: message.units,
      credited: message.credited,
      balance: message.balance,
      flop: message.unitFlop,
      unitId: message.unitId,
      computeMs: message.computeMs,
      stepMs: message.stepMs,
    });
  },
  error(message) {
    showError(message);
  },
  ended() {
    ui.stop.disabled = true;
    ui.contribute.disabled = !webgpuReady;
    ui.running.hidden = true;
    tell('stopped', { units: session.totals.units, credits: session.totals.credited });
  },
});

const controls = bindControls(document, (settings) => {
  ui.runningIntensity.textContent = `${Math.round(settings.intensity * 100)}%`;
  session.settings(settings);
}, { intensity: 50, pauseHidden: true, pauseBattery: true, batteryThreshold: 20 });

// --- Talking to the host page -----------------------------------------------------------------

function tell(type, detail = {}) {
  if (!embedder) return;
  window.parent.postMessage({ source: 'glowworm', type, ...detail }, embedder);
}

window.addEventListener('message', (event) => {
  if (!embedder || event.source !== window.parent || event.origin !== embedder) return;
  if (event.data?.glowworm === 'stop') stop('host');
  // Nothing else is a command: in particular, nothing the host sends can start computing.
});

// --- Consent, remembered per embedding site ---------------------------------------------------

function consents() {
  try {
    return JSON.parse(localStorage.getItem(CONSENT_KEY) ?? '{}') ?? {};
  } catch {
    return {};
  }
}

function setConsent(record) {
  const all = consents();
  if (record) all[site] = record;
  else delete all[site];
  try {
    localStorage.setItem(CONSENT_KEY, JSON.stringify(all));
  } catch {
    // not remembered: this visit still works
  }
  ui.forget.disabled = !all[site];
}

// --- Visibility: a click counts only on a card the visitor can see ----------------------------

const visibilityV2 = typeof IntersectionObserverEntry === 'function'
  && 'isVisible' in IntersectionObserverEntry.prototype;
const OBSERVE = { threshold: [0, 0.99, 1], trackVisibility: true, delay: 100 };
const fullyVisible = (entry) => entry.intersectionRatio >= 0.99 && (!visibilityV2 || entry.isVisible);
let visibleSince = null; // performance.now() since when the consent area is fully visible
let onVisible = null; // called once the consent area becomes steadily visible (auto-resume)

new IntersectionObserver((entries) => {
  const entry = entries.at(-1);
  if (fullyVisible(entry)) {
    visibleSince ??= performance.now();
    if (onVisible) setTimeout(() => onVisible?.(), MIN_VISIBLE_MS);
  } else {
    visibleSince = null;
  }
}, OBSERVE).observe(ui.consent);

/** A fresh look (a new observer reports the present state once) at the consent area. */
function visibleNow() {
  return new Promise((resolve) => {
    const observer = new IntersectionObserver((entries) => {
      observer.disconnect();
      resolve(fullyVisible(entries.at(-1)));
    }, OBSERVE);
    observer.observe(ui.consent);
  });
}

async function steadilyVisible() {
  return visibleSince !== null && performance.now() - visibleSince >= MIN_VISIBLE_MS && visibleNow();
}

// --- Drawing ------------------------------------------------------------------------------------

function setStatus(text, state) {
  ui.status.textContent = text;
  if (state) document.body.dataset.state = state;
}

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

function shortAddress(address) {
  return `${address.slice(0, 6)}…${address.slice(-4)}`;
}

function drawPartner() {
  if (partner && embedder) {
    const host = new URL(embedder).host;
    ui.partnerNote.textContent = `${host} (partner ${shortAddress(partner)}) earns a share on top of your credits, not out of them.`;
  } else if (embedder) {
    ui.partnerNote.textContent = 'This site names no valid partner address: only you are credited.';
  }
}

// --- Running ----------------------------------------------------------------------------------

function start(how) {
  if (!webgpuReady || session.hasWorker) return;
  showError('');
  onVisible = null;
  ui.units.textContent = '0';
  ui.credits.textContent = '0';
  ui.contribute.disabled = true;
  ui.stop.disabled = false;
  ui.running.hidden = false;
  setConsent({ grantedAtMs: consents()[site]?.grantedAtMs ?? Date.now(), resume: true });
  const attributed = partner && embedder ? { partner, origin: embedder } : {};
  session.start(controls.current(), attributed);
  tell('started', { how, intensity: controls.current().intensity, partner: attributed.partner ?? null });
}

/** who: 'visitor' (Stop), 'host' (the page asked) or 'forget'. */
function stop(who) {
  if (who !== 'forget' && consents()[site]) setConsent({ ...consents()[site], resume: false });
  if (session.stop()) ui.stop.disabled = true;
}

// --- The visitor's controls ---------------------------------------------------------------------

ui.contribute.addEventListener('click', async (event) => {
  // Only the visitor's own click: a script's synthetic click (event.isTrusted false) is ignored.
  if (!event.isTrusted || session.hasWorker || !webgpuReady) return;
  if (!(await steadilyVisible())) {
    showError('This card must be fully visible (not covered, faded or moved) to start. Nothing runs.');
    return;
  }
  start('click');
});
ui.stop.addEventListener('click', () => stop('visitor'));
ui.forget.addEventListener('click', (event) => {
  if (!event.isTrusted) return;
  stop('forget');
  setConsent(null);
  setStatus(`Forgot your consent for ${new URL(site).host}. Nothing runs until you click Contribute.`);
});

async function main() {
  drawPartner();
  setConsent(consents()[site] ?? null);
  tell('ready', { partner });
  const gpu = await detectWebGPU(TEXTS.widget);
  if (!gpu.ok) {
    setStatus(gpu.why, 'unsupported');
    return;
  }
  webgpuReady = true;
  ui.contribute.disabled = false;
  const consent = consents()[site];
  if (consent?.resume) {
    // The visitor agreed on this site before and left it running: resume once the card is
    // steadily visible, showing that it runs, with Stop.
    setStatus('Resuming: you agreed to contribute on this site', 'ready');
    onVisible = async () => {
      if (onVisible && !session.hasWorker && (await steadilyVisible())) start('remembered');
    };
    if (visibleSince !== null) setTimeout(() => onVisible?.(), MIN_VISIBLE_MS);
  } else {
    setStatus('Ready', 'ready');
  }
}

main();
