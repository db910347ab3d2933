// The earnings panel of the linked address: what it earned at the relay, what the latest
// published earnings root gives it, what the payout contract already paid and what it can claim
// (`GET /v1/payouts/{address}`), the rate of this session, and two buttons:
//
// - Check my proof reads the root the contract holds (`latestRoot()`, an eth_call through the
//   person's wallet) and checks the relay's proof against it in this browser
//   (`verifyEarningsProof` of the contributor module): no need to trust the relay's word.
// - Claim sends the contract's `claim(address, amount, proof)` (built by `claimCalldata` of the
//   module) as a transaction from the linked address through the wallet (EIP-1193
//   eth_sendTransaction), follows it to its receipt and shows how it ended.
//
// The module is loaded on the main thread only when a button needs it (it computes nothing here).

/** EIP-1193: the person rejected the request in their wallet. */
const USER_REJECTED = 4001;
/** EIP-1193 / EIP-3326: the wallet does not know the chain asked for. */
const UNKNOWN_CHAIN = 4902;
/** How often the panel asks the relay again while an address is linked. */
export const EARNINGS_REFRESH_MS = 10_000;
/** How long Claim follows a transaction before it gives up watching (it may still confirm). */
const RECEIPT_TIMEOUT_MS = 5 * 60_000;
const RECEIPT_POLL_MS = 1000;

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

/** A decimal string of any size, grouped for reading ("1234567" -> "1,234,567"). */
export function formatUnits(decimal) {
  if (decimal === null || decimal === undefined) return '–';
  try {
    return integer.format(BigInt(decimal));
  } catch {
    return String(decimal);
  }
}

let modulePromise = null;
/** The contributor module's exports, on the main thread (loaded once, on first use). */
function module() {
  modulePromise ??= import('./pkg/glowworm.js').then(async (m) => {
    await m.default();
    return m;
  });
  return modulePromise;
}

function describeError(err) {
  return String(err?.message ?? err).replace(/\.+$/, '');
}

export class EarningsPanel {
  /**
   * `ui`: the panel's elements; `relayJson(path)`: GETs the relay's API; `walletProvider()`:
   * resolves the linked wallet's EIP-1193 provider (or throws saying why there is none).
   */
  constructor({ ui, relayJson, walletProvider }) {
    this.ui = ui;
    this.relayJson = relayJson;
    this.walletProvider = walletProvider;
    this.address = null;
    this.payout = null;
    this.busy = false;
    this.seq = 0;
    this.rate = null; // {firstCredits, firstAt, lastCredits, lastAt} of this session
    ui.claim.addEventListener('click', () => this.claim());
    ui.checkProof.addEventListener('click', () => this.checkProof());
  }

  /** The linked address (EIP-55), or null: the panel hides. */
  setAddress(address) {
    if (address === this.address) return;
    this.address = address;
    this.payout = null;
    this.seq += 1;
    this.ui.panel.hidden = !address;
    this.message('');
    this.render();
    if (address) this.refresh();
  }

  /** The address's balance in credits as the session reports it: the rate of this session. */
  sessionCredits(credits) {
    const now = Date.now();
    const value = Number(credits);
    if (!Number.isFinite(value)) return;
    if (!this.rate) this.rate = { firstCredits: value, firstAt: now, lastCredits: value, lastAt: now };
    else Object.assign(this.rate, { lastCredits: value, lastAt: now });
    this.renderRate();
  }

  message(text, kind = 'info') {
    this.ui.message.textContent = text;
    this.ui.message.dataset.kind = kind;
    this.ui.message.hidden = !text;
  }

  /** Asks the relay for the address's payout and redraws. */
  async refresh() {
    const address = this.address;
    if (!address) return;
    const seq = ++this.seq;
    try {
      const [payout, account] = await Promise.all([
        this.relayJson(`/v1/payouts/${address}`),
        this.relayJson(`/v1/accounts/${address}`),
      ]);
      if (seq !== this.seq || address !== this.address) return;
      this.payout = payout;
      this.credits = account?.credits;
      this.ui.panel.dataset.loaded = 'true';
    } catch (err) {
      if (seq !== this.seq || address !== this.address) return;
      this.ui.off.hidden = false;
      this.ui.off.textContent = `Could not read your earnings from the relay: ${describeError(err)}.`;
      return;
    }
    this.render();
  }

  render() {
    const { ui, payout } = this;
    const chain = Boolean(payout?.contract);
    ui.earned.textContent = payout ? formatUnits(payout.earned) : '…';
    ui.earnedCredits.textContent = this.credits === undefined ? '…' : formatUnits(this.credits);
    ui.inRoot.textContent = payout ? formatUnits(payout.in_root) : '…';
    ui.epoch.textContent = payout?.epoch === null || payout?.epoch === undefined
      ? '(no epoch closed yet)'
      : `(epoch ${payout.epoch})`;
    ui.claimed.textContent = payout ? (chain ? formatUnits(payout.claimed) : 'no chain') : '…';
    ui.claimable.textContent = payout ? (chain ? formatUnits(payout.claimable) : 'no chain') : '…';
    ui.contract.textContent = chain ? `${payout.contract} on chain ${payout.chain_id}` : '';
    ui.contractLine.hidden = !chain;
    if (payout && !chain) {
      ui.off.hidden = false;
      ui.off.textContent = 'Claims are off on this relay: it has no payout contract. Your credits stay in its ledger.';
    } else if (payout && !payout.claims_enabled) {
      ui.off.hidden = false;
      ui.off.textContent = 'No earnings root is published on chain yet: claims open once the relay publishes one.';
    } else {
      ui.off.hidden = true;
    }
    const canClaim = Boolean(payout?.claims_enabled) && BigInt(payout.claimable ?? '0') > 0n;
    ui.claim.hidden = !payout?.claims_enabled;
    ui.claim.disabled = this.busy || !canClaim;
    ui.claim.title = canClaim ? '' : 'Nothing to claim right now';
    ui.checkProof.hidden = !chain;
    ui.checkProof.disabled = this.busy || !payout?.claims_enabled;
    this.renderRate();
  }

  renderRate() {
    const r = this.rate;
    const hours = r ? (r.lastAt - r.firstAt) / 3_600_000 : 0;
    if (!r || hours <= 0 || r.lastCredits <= r.firstCredits) {
      this.ui.rate.textContent = 'contribute to see your rate (1 credit per verified floating-point operation)';
      return;
    }
    this.ui.rate.textContent = `${formatUnits(Math.round((r.lastCredits - r.firstCredits) / hours))} credits per hour this session`;
  }

  /** The provider, after checking it shares the linked address and is on the contract's chain. */
  async readyWallet() {
    const provider = await this.walletProvider();
    const accounts = await provider.request({ method: 'eth_requestAccounts' });
    const wanted = this.address.toLowerCase();
    if (!Array.isArray(accounts) || !accounts.some((a) => String(a).toLowerCase() === wanted)) {
      throw new Error(`the wallet does not offer ${this.address}: switch to that account in your wallet and try again`);
    }
    const chainId = Number(BigInt(await provider.request({ method: 'eth_chainId' })));
    if (chainId !== this.payout.chain_id) {
      const hex = `0x${this.payout.chain_id.toString(16)}`;
      try {
        await provider.request({ method: 'wallet_switchEthereumChain', params: [{ chainId: hex }] });
      } catch (err) {
        if (err?.code === USER_REJECTED) throw err;
        const why = err?.code === UNKNOWN_CHAIN ? 'your wallet does not know that chain' : describeError(err);
        throw new Error(`the payout contract is on chain ${this.payout.chain_id} and your wallet is on chain ${chainId} (${why}); switch chains in your wallet and try again`);
      }
    }
    return provider;
  }

  async withBusy(body) {
    if (this.busy || !this.address) return;
    this.busy = true;
    this.render();
    try {
      await body();
    } catch (err) {
      if (err?.code === USER_REJECTED) this.message('You rejected the request in your wallet. Nothing was sent.', 'warn');
      else this.message(`${describeError(err)}.`, 'error');
    } finally {
      this.busy = false;
      this.render();
    }
  }

  /** Check my proof: the contract's root, and the relay's proof checked against it here. */
  checkProof() {
    return this.withBusy(async () => {
      this.message('Reading the root the payout contract holds…');
      await this.refresh();
      const { payout } = this;
      if (!payout?.claims_enabled) throw new Error('No earnings root is published on chain yet');
      const m = await module();
      const provider = await this.readyWallet(); // on the contract's chain, or eth_call asks another
      const root = await provider.request({
        method: 'eth_call',
        params: [{ to: payout.contract, data: m.latestRootCalldata() }, 'latest'],
      });
      if (typeof root !== 'string' || !/^0x[0-9a-fA-F]{64}$/.test(root)) {
        throw new Error(`The contract answered something that is not a root: ${String(root).slice(0, 80)}`);
      }
      if (BigInt(payout.in_root) === 0n) {
        this.message(`Your address is not in the contract's root ${root.slice(0, 10)}… yet: it enters it at the next epoch.`, 'warn');
        return;
      }
      const valid = m.verifyEarningsProof(root, payout.address, payout.in_root, payout.proof);
      this.ui.panel.dataset.proof = valid ? 'valid' : 'invalid';
      if (valid) {
        this.message(`Valid: your proof checks out in this browser against the contract's root ${root.slice(0, 10)}…: it owes ${payout.address} ${formatUnits(payout.in_root)} in total.`, 'ok');
      } else {
        this.message(`Invalid: the relay's proof does not lead to the contract's root ${root.slice(0, 10)}…${root.toLowerCase() === String(payout.root).toLowerCase() ? '' : ' (the relay answered for another root; try again in a moment)'}. Do not claim with it.`, 'error');
      }
    });
  }

  /** Claim: one transaction from the linked address, followed until it is mined. */
  claim() {
    return this.withBusy(async () => {
      this.message('Preparing the claim…');
      await this.refresh();
      const { payout } = this;
      if (!payout?.claims_enabled) throw new Error('Claims are not open: no earnings root is published on chain');
      const claimable = BigInt(payout.claimable ?? '0');
      if (claimable <= 0n) throw new Error('Nothing to claim: everything in the latest root was paid already');
      const m = await module();
      const data = m.claimCalldata(payout.address, payout.in_root, payout.proof);
      this.message('Confirm the claim in your wallet…');
      const provider = await this.readyWallet();
      const hash = await provider.request({
        method: 'eth_sendTransaction',
        params: [{ from: payout.address, to: payout.contract, data }],
      });
      if (typeof hash !== 'string') throw new Error('The wallet returned no transaction hash');
      this.message(`Claim sent (${hash.slice(0, 10)}…): waiting for it to be mined…`);
      const deadline = Date.now() + RECEIPT_TIMEOUT_MS;
      let receipt = null;
      while (!receipt) {
        if (Date.now() > deadline) {
          throw new Error(`Transaction ${hash} is not mined after ${RECEIPT_TIMEOUT_MS / 60_000} minutes; check it in your wallet`);
        }
        await new Promise((resolve) => setTimeout(resolve, RECEIPT_POLL_MS));
        receipt = await provider.request({ method: 'eth_getTransactionReceipt', params: [hash] });
      }
      if (BigInt(receipt.status ?? '0x0') !== 1n) {
        throw new Error(`The claim failed on chain (transaction ${hash} reverted); nothing was paid`);
      }
      this.ui.panel.dataset.claimTx = hash;
      await this.refresh();
      this.message(`Claimed ${formatUnits(claimable)} token units: transaction ${hash} is mined in block ${BigInt(receipt.blockNumber)}.`, 'ok');
    });
  }
}
