// The contributor's identity, kept in this browser's IndexedDB so that a reload (or a later visit)
// is the same contributor and keeps earning into the same balance.
//
// Database 'glowworm', object store 'keys', records:
//   'contributor': { secretKey: Uint8Array(32), publicKey: '64 hex chars', savedUnixMs: number }
//   'wallet':      { address: '0x… (EIP-55)', publicKey, chainId, walletName, linkedUnixMs }
//                  the address that contributor's key is linked to (a cache of what the relay
//                  knows, so the page can show it at once; the link itself lives at the relay).
//
// The Web Worker (worker.js) reads the secret key and writes it after the module generated one.
// The page (app.js) reads the public key, to show "your contributor id" before anything runs,
// keeps the wallet record, and forgets both on Disconnect (the next session makes a fresh key).

const DB_NAME = 'glowworm';
const STORE = 'keys';
const RECORD = 'contributor';
const WALLET = 'wallet';

/** Opens (and on first use creates) the database. */
function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => {
      if (!request.result.objectStoreNames.contains(STORE)) {
        request.result.createObjectStore(STORE);
      }
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error('the key database is blocked by another tab'));
  });
}

/** Runs one request against the 'keys' store and resolves with its result. */
async function withStore(mode, makeRequest) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = makeRequest(tx.objectStore(STORE));
      // Resolve when the transaction has committed, so a write is durable before we go on.
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('key database transaction aborted'));
    });
  } finally {
    db.close();
  }
}

/** The saved identity, or undefined when this browser has none yet. */
export async function loadIdentity() {
  const record = await withStore('readonly', (store) => store.get(RECORD));
  if (!record || !(record.secretKey instanceof Uint8Array) || record.secretKey.length !== 32) {
    return undefined;
  }
  return record;
}

/** Saves the identity (secret key and its public key). */
export async function saveIdentity(secretKey, publicKey) {
  const record = { secretKey: new Uint8Array(secretKey), publicKey, savedUnixMs: Date.now() };
  await withStore('readwrite', (store) => store.put(record, RECORD));
}

/** The wallet the saved contributor is linked to, or undefined. */
export async function loadWallet() {
  const record = await withStore('readonly', (store) => store.get(WALLET));
  if (!record || typeof record.address !== 'string' || typeof record.publicKey !== 'string') {
    return undefined;
  }
  return record;
}

/** Remembers that the contributor `publicKey` is linked to `address`. */
export async function saveWallet({ address, publicKey, chainId, walletName }) {
  const record = { address, publicKey, chainId, walletName, linkedUnixMs: Date.now() };
  await withStore('readwrite', (store) => store.put(record, WALLET));
}

/** Forgets the wallet record only (the relay says this key is linked to nothing). */
export async function forgetWallet() {
  await withStore('readwrite', (store) => store.delete(WALLET));
}

/**
 * Forgets the contributor's key and its wallet in one transaction: the next session generates a
 * fresh key, a new anonymous contributor. (A key's link at the relay is permanent, so forgetting
 * the address alone would not stop its credits from going there.)
 */
export async function forgetIdentity() {
  await withStore('readwrite', (store) => {
    store.delete(WALLET);
    return store.delete(RECORD);
  });
}
