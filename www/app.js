// The page's main thread: UI only. Its contribution session (session.js, shared with the widget)
// detects WebGPU, creates the Web Worker (worker.js) when the person clicks Contribute, and turns
// the worker's messages into status texts and progress numbers, which this file draws. All GPU
// work, key handling and relay traffic for units happen in the worker.
//
// Connect wallet links the contributor's key to an Ethereum address with one wallet signature
// (Sign-In with Ethereum): the page finds the browser's wallets (EIP-6963, else window.ethereum),
// opens the worker without starting it (it builds the message and signs it with the key), asks
// the wallet to sign the same message, and hands both signatures to the relay. From then on the
// relay credits the address; no result ever needs a wallet signature.
//
// Once linked, the earnings panel (earnings.js) shows the address's earnings, the latest root
// and claims, and claims through the same wallet.

import { bindControls } from './controls.js';
import { EARNINGS_REFRESH_MS, EarningsPanel } from './earnings.js';
import { forgetIdentity, forgetWallet, loadIdentity, loadWallet, saveWallet } from './keystore.js';
import { detectWebGPU, Session, TEXTS } from './session.js';

/** The relay's base URL without a trailing slash; '' = this page's own origin. */
const RELAY = String(globalThis.GLOWWORM_CONFIG?.relay ?? '').replace(/\/+$/, '');
const NETWORK_REFRESH_MS = 15_000;
/** While contributing, the network panel refreshes at most this often. */
const NETWORK_REFRESH_RUNNING_MS = 5000;
/** How long Connect waits for wallets to answer an EIP-6963 request when none has announced yet. */
const WALLET_DISCOVERY_MS = 500;
/** How long a Sign-In with Ethereum message stays valid. */
const LINK_MESSAGE_VALID_MS = 10 * 60_000;
/** EIP-1193: the person rejected the request in their wallet. */
const USER_REJECTED = 4001;
/** EIP-1193 / JSON-RPC: the wallet already has a request of this kind waiting for the person. */
const REQUEST_PENDING = -32002;

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
  connect: $('connect'),
  disconnect: $('disconnect'),
  walletConnected: $('wallet-connected'),
  walletAddress: $('wallet-address'),
  walletBalance: $('wallet-balance'),
  walletDevices: $('wallet-devices'),
  walletChooser: $('wallet-chooser'),
  walletList: $('wallet-list'),
  walletCancel: $('wallet-cancel'),
  walletMessage: $('wallet-message'),
};

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const gflop = new Intl.NumberFormat(undefined, { minimumFractionDigits: 3, maximumFractionDigits: 3 });

let webgpuReady = false;
let linkedProvider = null; // the EIP-1193 provider that linked, while this page lives
let networkRefreshedAt = 0;

let linkedWallet = null; // {address (EIP-55), publicKey, chainId?, walletName?} once linked
let linking = false; // a Connect is in progress
let walletEpoch = 0; // bumped by every change of linkedWallet, so stale answers are dropped
let walletRefreshSeq = 0; // only the newest balance request may draw

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

// --- The contributor's saved identity and balance (reads only; nothing computes) -------------

async function showSavedIdentity() {
  let identity;
  let wallet;
  try {
    identity = await loadIdentity();
    wallet = await loadWallet();
  } catch {
    return; // no IndexedDB (e.g. some private modes): the worker will say so if it matters
  }
  if (!identity || session.hasWorker || linking) return;
  ui.publicKey.textContent = identity.publicKey;
  ui.keyNote.textContent = '(saved in this browser)';
  const epoch = walletEpoch;
  if (wallet && wallet.publicKey === identity.publicKey && !linkedWallet) {
    setLinkedWallet(wallet); // shown at once; the relay confirms below
    refreshWallet();
  }
  try {
    const response = await fetch(`${RELAY}/v1/contributors/${identity.publicKey}`);
    if (response.ok) {
      const me = await response.json();
      ui.credits.textContent = formatCredits(me.credits);
      adoptRelayLink(epoch, identity.publicKey, me.linked_address ?? null);
    } else if (response.status === 404) {
      adoptRelayLink(epoch, identity.publicKey, null); // this relay has never seen the key
    }
  } catch {
    // The network panel reports an unreachable relay.
  }
}

/** The relay knows where this key's credits go: show that (and remember it) over the local record. */
function adoptRelayLink(epoch, publicKey, address) {
  if (epoch !== walletEpoch || linking) return; // the wallet changed meanwhile
  if (address && linkedWallet?.address !== address) {
    setLinkedWallet({ address, publicKey });
    saveWallet({ address, publicKey }).catch(() => {});
    refreshWallet();
  } else if (!address && linkedWallet) {
    setLinkedWallet(null);
    forgetWallet().catch(() => {});
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

// --- Running: the session draws here ------------------------------------------------------------

const session = new Session({
  relay: RELAY,
  texts: TEXTS.page,
  status(text, state, message) {
    setStatus(text, state);
    if (message?.state === 'idle') maybeRefreshNetwork();
  },
  ready(message) {
    ui.publicKey.textContent = message.publicKey;
    ui.keyNote.textContent = message.keySaved ? '(saved in this browser)' : '(not saved: a reload will start a new id)';
  },
  progress(totals, message) {
    ui.units.textContent = integer.format(totals.units);
    ui.gflop.textContent = gflop.format(totals.flop / 1e9);
    ui.credits.textContent = formatCredits(totals.balance);
    ui.kernel.textContent = message.kernel;
    // Once linked, the balance the relay reports is the address's, across all its devices.
    if (linkedWallet) {
      showWalletBalance(totals.balance);
      earnings.sessionCredits(totals.balance);
    }
    showError('');
    maybeRefreshNetwork();
  },
  error(message) {
    showError(message);
  },
  ended() {
    ui.stop.disabled = true;
    ui.contribute.disabled = !webgpuReady;
    refreshNetwork();
    renderWallet();
    refreshWallet();
    earnings.refresh();
  },
});

/** Intensity and pauses (controls.js); sent to a started worker whenever they change. */
const controls = bindControls(document, (settings) => session.settings(settings));

function start() {
  if (!webgpuReady || session.started) return;
  showError('');
  ui.contribute.disabled = true;
  ui.stop.disabled = false;
  // The worker is created only now, after the person asked: nothing leases or computes before.
  // (One opened a moment ago to sign a wallet link is reused: it has loaded the key, no more.)
  session.start(controls.current());
  renderWallet();
  refreshNetwork();
}

function stop() {
  if (session.stop()) ui.stop.disabled = true;
}

// --- The wallet: linking this contributor's key to an Ethereum address ------------------------

/** 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed -> 0x5aAe…eAed */
function shortAddress(address) {
  return `${address.slice(0, 6)}…${address.slice(-4)}`;
}

function setWalletMessage(text, kind = 'info') {
  ui.walletMessage.textContent = text;
  ui.walletMessage.dataset.kind = kind;
  ui.walletMessage.hidden = !text;
}

function setLinkedWallet(wallet) {
  if (wallet?.address !== linkedWallet?.address) linkedProvider = null;
  linkedWallet = wallet;
  earnings.setAddress(wallet?.address ?? null);
  walletEpoch += 1;
  walletRefreshSeq += 1; // a balance on its way is for the wallet before
  ui.walletBalance.textContent = '…';
  ui.walletDevices.textContent = '';
  renderWallet();
}

/** Draws the wallet card from linkedWallet, linking and the worker's state. */
function renderWallet() {
  const connected = Boolean(linkedWallet);
  ui.walletConnected.hidden = !connected;
  if (connected) {
    ui.walletAddress.textContent = shortAddress(linkedWallet.address);
    ui.walletAddress.title = linkedWallet.address;
  }
  ui.connect.hidden = connected;
  ui.connect.disabled = !webgpuReady || linking;
  ui.connect.textContent = linking ? 'Connecting…' : 'Connect wallet';
  ui.disconnect.hidden = !connected;
  // The link of a key is permanent, so Disconnect replaces the key: never under a running session.
  ui.disconnect.disabled = session.started || linking;
  ui.disconnect.title = session.started ? 'Stop contributing first' : '';
}

function showWalletBalance(credits, devices) {
  walletRefreshSeq += 1; // newer than any balance still on its way
  ui.walletBalance.textContent = formatCredits(credits);
  if (devices !== undefined) {
    ui.walletDevices.textContent = `(across ${integer.format(devices)} linked ${devices === 1 ? 'device' : 'devices'})`;
  }
}

/** Fetches the linked address's balance across every device linked to it. */
async function refreshWallet() {
  const wallet = linkedWallet;
  if (!wallet) return;
  const seq = ++walletRefreshSeq;
  try {
    const account = await relayJson(`/v1/accounts/${wallet.address}`);
    if (seq !== walletRefreshSeq || wallet !== linkedWallet) return;
    showWalletBalance(account.credits, account.linked_sessions?.length ?? 0);
  } catch (err) {
    if (seq === walletRefreshSeq && wallet === linkedWallet) {
      ui.walletBalance.textContent = 'unknown';
      console.warn(`Glowworm: could not read the balance of ${wallet.address}: ${err.message ?? err}`);
    }
  }
}

/** Calls the relay's API; a refusal becomes an Error carrying the relay's own message. */
async function relayJson(path, body) {
  const init = body === undefined
    ? {}
    : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
  const response = await fetch(`${RELAY}${path}`, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON: described by the status below
  }
  if (!response.ok) {
    const err = new Error(data?.error?.message ?? `HTTP ${response.status}`);
    err.relay = true;
    throw err;
  }
  return data;
}

// Wallets announce themselves (EIP-6963) in answer to 'eip6963:requestProvider'; keep every
// announcement, one per uuid, from the start.
const announcedWallets = new Map();
window.addEventListener('eip6963:announceProvider', (event) => {
  const { info, provider } = event.detail ?? {};
  if (!info || typeof info.uuid !== 'string' || typeof provider?.request !== 'function') return;
  announcedWallets.set(info.uuid, { info, provider });
});

function requestWallets() {
  window.dispatchEvent(new Event('eip6963:requestProvider'));
}

/** The wallets in this browser: EIP-6963 ones, else the legacy window.ethereum (EIP-1193). */
async function discoverWallets() {
  requestWallets();
  if (announcedWallets.size === 0) await new Promise((resolve) => setTimeout(resolve, WALLET_DISCOVERY_MS));
  const wallets = [...announcedWallets.values()].map(({ info, provider }) => ({
    name: String(info.name ?? '').trim().slice(0, 60) || 'Unnamed wallet',
    // Only inline images: an icon must not make the page fetch anything (and the CSP allows data:).
    icon: typeof info.icon === 'string' && /^data:image\//i.test(info.icon) ? info.icon : '',
    provider,
  }));
  const legacy = window.ethereum;
  if (wallets.length === 0 && typeof legacy?.request === 'function') {
    const name = legacy.isMetaMask ? 'MetaMask' : legacy.isCoinbaseWallet ? 'Coinbase Wallet' : 'Browser wallet';
    wallets.push({ name, icon: '', provider: legacy });
  }
  return wallets;
}

/** Lets the person pick one of several wallets by name and icon; resolves null on Cancel. */
function chooseWallet(wallets) {
  if (wallets.length === 1) return Promise.resolve(wallets[0]);
  return new Promise((resolve) => {
    const done = (wallet) => {
      ui.walletChooser.hidden = true;
      ui.walletList.replaceChildren();
      ui.walletCancel.onclick = null;
      resolve(wallet);
    };
    ui.walletList.replaceChildren(...wallets.map((wallet) => {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'wallet-option';
      if (wallet.icon) {
        const icon = document.createElement('img');
        icon.src = wallet.icon;
        icon.alt = '';
        button.append(icon);
      }
      const name = document.createElement('span');
      name.textContent = wallet.name;
      button.append(name);
      button.addEventListener('click', () => done(wallet));
      const item = document.createElement('li');
      item.append(button);
      return item;
    }));
    ui.walletCancel.onclick = () => done(null);
    ui.walletChooser.hidden = false;
    ui.walletList.querySelector('button')?.focus();
  });
}

/** '0x' and the hex of the UTF-8 bytes: how personal_sign takes a text message. */
function hexUtf8(text) {
  return `0x${Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, '0')).join('')}`;
}

const ANONYMOUS_STILL = 'Nothing was linked: you keep contributing anonymously under your contributor id, and can connect again at any time.';

async function connect() {
  if (linking || linkedWallet || !webgpuReady) return;
  linking = true;
  walletEpoch += 1; // the relay's answer to the page's first look is stale from here
  renderWallet();
  setWalletMessage('Looking for a wallet in this browser…');
  let name = 'your wallet';
  try {
    const wallets = await discoverWallets();
    if (wallets.length === 0) {
      setWalletMessage('No browser wallet found. Install one (for example MetaMask, Rabby or Coinbase Wallet) and reload this page.', 'error');
      return;
    }
    if (wallets.length > 1) setWalletMessage('Choose the wallet to connect.');
    const wallet = await chooseWallet(wallets);
    if (!wallet) {
      setWalletMessage('');
      return;
    }
    name = wallet.name;
    const { provider } = wallet;

    setWalletMessage(`Asking ${name} for your address…`);
    let accounts;
    try {
      accounts = await provider.request({ method: 'eth_requestAccounts' });
    } catch (err) {
      if (err?.code === USER_REJECTED) {
        setWalletMessage(`You declined to share an address with this page in ${name}. ${ANONYMOUS_STILL}`, 'warn');
        return;
      }
      throw err;
    }
    const address = Array.isArray(accounts) ? accounts[0] : undefined;
    if (typeof address !== 'string') throw new Error(`${name} shared no address`);
    const chainId = Number(BigInt(await provider.request({ method: 'eth_chainId' })));

    // The worker loads the key (and the module) to build the message and sign it; it computes
    // nothing. The relay's domain and URI are the relay as this browser addresses it.
    setWalletMessage('Preparing the message to sign…');
    session.open();
    const relayUrl = new URL(RELAY || window.location.origin);
    const { nonce } = await relayJson('/v1/auth/nonce', {});
    const issuedAt = new Date();
    const signed = await session.ask({
      type: 'link',
      fields: {
        domain: relayUrl.host,
        address,
        uri: relayUrl.origin,
        chainId,
        nonce,
        issuedAt: issuedAt.toISOString(),
        expirationTime: new Date(issuedAt.getTime() + LINK_MESSAGE_VALID_MS).toISOString(),
      },
    });
    session.closeIdle();
    const checksummed = signed.message.split('\n')[1]; // the message names it EIP-55 checksummed

    setWalletMessage(
      `Sign the message in ${name}: one signature sends the credits of this browser's contributor id ` +
      `to ${shortAddress(checksummed)}. It is not a transaction and costs nothing.`);
    let signature;
    try {
      signature = await provider.request({ method: 'personal_sign', params: [hexUtf8(signed.message), address] });
    } catch (err) {
      if (err?.code === USER_REJECTED) {
        setWalletMessage(`You rejected the signature request in ${name}. ${ANONYMOUS_STILL}`, 'warn');
        return;
      }
      throw err;
    }

    setWalletMessage('Checking the signatures at the relay…');
    const reply = await relayJson('/v1/auth/link', {
      message: signed.message,
      signature,
      public_key: signed.publicKey,
      session_signature: signed.sessionSignature,
    });
    const linked = { address: reply.address, publicKey: reply.public_key, chainId, walletName: name };
    setLinkedWallet(linked);
    linkedProvider = provider;
    showWalletBalance(reply.balance);
    ui.credits.textContent = formatCredits(reply.balance);
    try {
      await saveWallet(linked);
    } catch (err) {
      console.warn(`Glowworm: could not remember the wallet in this browser: ${err.message ?? err}`);
    }
    const moved = Number(reply.credits_moved) > 0
      ? ` The ${formatCredits(reply.credits_moved)} credits you had earned anonymously moved there.`
      : '';
    setWalletMessage(`Connected: your credits go to ${reply.address}, now and from every later result.${moved}`);
    refreshWallet();
  } catch (err) {
    const why = String(err?.message ?? err).replace(/\.+$/, '');
    if (err?.relay) setWalletMessage(`The relay refused the link: ${why}. ${ANONYMOUS_STILL}`, 'error');
    else if (err?.code === REQUEST_PENDING) setWalletMessage(`${name} already has a request waiting: open it to answer.`, 'error');
    else setWalletMessage(`Could not connect ${name}: ${why}. ${ANONYMOUS_STILL}`, 'error');
  } finally {
    linking = false;
    session.closeIdle();
    renderWallet();
  }
}

/**
 * Forgets the address and the contributor's key in this browser: the relay's link of a key is
 * permanent, so the next session starts with a fresh key, a new anonymous contributor.
 */
async function disconnect() {
  if (!linkedWallet || linking || session.started) return;
  const { address } = linkedWallet;
  try {
    await forgetIdentity();
  } catch (err) {
    setWalletMessage(`Could not forget the key in this browser: ${err.message ?? err}`, 'error');
    return;
  }
  setLinkedWallet(null);
  ui.publicKey.textContent = 'not created yet';
  ui.keyNote.textContent = '(a fresh one is made when you next contribute or connect)';
  ui.credits.textContent = '0';
  setWalletMessage(
    `Disconnected. This browser forgot ${shortAddress(address)} and replaced its contributor id: ` +
    `you are now a new anonymous contributor. Credits already earned stay with ${address}.`);
}

// --- Earnings and claims (earnings.js) ---------------------------------------------------------

/**
 * The linked wallet's provider: the one that linked, or after a reload the wallet of the same
 * name (or the only one; with several, the person chooses).
 */
async function walletProvider() {
  if (linkedProvider) return linkedProvider;
  const wallets = await discoverWallets();
  if (wallets.length === 0) throw new Error('No browser wallet found: install or unlock the wallet you linked and reload this page');
  const named = wallets.find((w) => w.name === linkedWallet?.walletName);
  const wallet = named ?? await chooseWallet(wallets);
  if (!wallet) throw new Error('No wallet chosen');
  linkedProvider = wallet.provider;
  return linkedProvider;
}

const earnings = new EarningsPanel({
  ui: {
    panel: $('earnings'),
    earnedCredits: $('earn-credits'),
    earned: $('earn-earned'),
    inRoot: $('earn-in-root'),
    epoch: $('earn-epoch'),
    claimed: $('earn-claimed'),
    claimable: $('earn-claimable'),
    rate: $('earn-rate'),
    contract: $('earn-contract'),
    contractLine: $('earn-contract-line'),
    off: $('earn-off'),
    claim: $('claim'),
    checkProof: $('check-proof'),
    message: $('earn-message'),
  },
  relayJson: (path) => relayJson(path),
  walletProvider,
});

// --- Startup ----------------------------------------------------------------------------------

async function main() {
  ui.relay.textContent = RELAY || window.location.origin;
  ui.contribute.addEventListener('click', start);
  ui.stop.addEventListener('click', stop);
  ui.connect.addEventListener('click', connect);
  ui.disconnect.addEventListener('click', disconnect);
  requestWallets(); // wallets announce themselves now, so Connect can list them at once

  refreshNetwork();
  setInterval(refreshNetwork, NETWORK_REFRESH_MS);
  setInterval(() => { if (!document.hidden) earnings.refresh(); }, EARNINGS_REFRESH_MS);
  showSavedIdentity();

  const gpu = await detectWebGPU(TEXTS.page);
  if (!gpu.ok) {
    ui.adapter.textContent = 'not available';
    setStatus(gpu.why, 'unsupported');
    ui.connect.title = 'Linking a wallet needs the module, which needs WebGPU';
    return;
  }
  ui.adapter.textContent = gpu.name;
  webgpuReady = true;
  ui.contribute.disabled = false;
  renderWallet();
  setStatus('Ready. Nothing runs until you click Contribute.', 'ready');
}

main();
