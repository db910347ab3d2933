// What the end-to-end tests share: the real relay binary on a free port with a fresh database,
// headless Chromium with WebGPU, the production Content-Security-Policy, polling, and failure
// artifacts (screenshots, the browser console, the relay's log) in tests/e2e/artifacts/.
//
// Environment: GLOWWORM_RELAY_BIN (default target/debug/glowworm-relay),
//              GLOWWORM_WWW (default www), CHROMIUM (default /usr/bin/chromium).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..', '..');
export const RELAY_BIN = process.env.GLOWWORM_RELAY_BIN
  ? path.resolve(process.env.GLOWWORM_RELAY_BIN)
  : path.join(ROOT, 'target/debug/glowworm-relay');
export const WWW = process.env.GLOWWORM_WWW ? path.resolve(process.env.GLOWWORM_WWW) : path.join(ROOT, 'www');
export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
export const ARTIFACTS = path.join(HERE, 'artifacts');

/** Chromium flags: WebGPU (SwiftShader without a GPU), and quiet on a machine with no network. */
export const CHROMIUM_ARGS = [
  '--enable-unsafe-webgpu',
  '--no-sandbox',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Headless Chromium with WebGPU: a browser, whose contexts each get fresh storage. */
export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/**
 * Headless Chromium with WebGPU on a persistent profile in `profileDir` (storage, and so the
 * contributor key, kept across pages); `options` adds Playwright context options (a viewport).
 */
export function launchProfile(profileDir, options = {}) {
  return chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    ...options,
  });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it returns a truthy value; returns that value. */
export async function waitFor(what, probe, { timeoutMs = 30_000, intervalMs = 200 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${lastError.message}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

/** The Content-Security-Policy that netlify.toml sets, so the tests hold the page to it. */
export async function netlifyCsp() {
  const toml = await readFile(path.join(ROOT, 'netlify.toml'), 'utf8');
  const match = toml.match(/^\s*Content-Security-Policy\s*=\s*"([^"]+)"/m);
  assert.ok(match, 'netlify.toml sets a Content-Security-Policy');
  return match[1];
}

// --- The relay --------------------------------------------------------------------------------

/** Grants the demo budget of the database at `database` (`glowworm-relay budget grant demo`). */
async function grantDemoBudget(database) {
  const child = spawn(RELAY_BIN, ['budget', 'grant', 'demo', '1000000000000000', '--database', database], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 0, `glowworm-relay budget grant demo: ${stderr}`);
}

/**
 * Starts the relay on a free port (or on `listen`, such as the address of a relay that was
 * killed) with the database in `workDir`; resolves once it prints its URL.
 */
export async function startRelay(workDir, extraArgs = [], { listen = '127.0.0.1:0' } = {}) {
  // The demo generator's jobs are paid from the demo budget: the operator grants it.
  await grantDemoBudget(path.join(workDir, 'db.sqlite'));
  const args = [
    'serve',
    '--listen', listen,
    '--database', path.join(workDir, 'db.sqlite'),
    '--www-dir', WWW,
    ...extraArgs,
  ];
  const child = spawn(RELAY_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  const relay = { child, log, url: null };

  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => log.push(chunk));

  relay.url = await new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`the relay printed no URL within 30 s:\n${log.join('')}`)), 30_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${RELAY_BIN}: ${err.message} (build it: cargo build -p glowworm-relay)`));
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the relay exited (${code ?? signal}) before listening:\n${log.join('')}`));
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      buffered += chunk;
      log.push(chunk);
      const match = buffered.match(/^Glowworm relay listening on (http:\/\/127\.0\.0\.1:\d+)\s*$/m);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
  });
  return relay;
}

export async function stopRelay(relay) {
  if (!relay || relay.child.exitCode !== null || relay.child.signalCode !== null) return;
  const exited = new Promise((resolve) => relay.child.once('exit', resolve));
  relay.child.kill('SIGTERM');
  const timer = setTimeout(() => relay.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** GETs JSON; null for a 404. */
export async function getJson(url) {
  const response = await fetch(url);
  if (response.status === 404) return null;
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status} ${await response.text()}`);
  return response.json();
}

// --- The browser ------------------------------------------------------------------------------

/** Collects the console lines of every page it watches, for the test output and the artifacts. */
export class ConsoleLog {
  lines = [];
  errors = [];

  watch(page, label) {
    page.on('console', (msg) => {
      const line = `[${label}] console.${msg.type()}: ${msg.text()}`;
      this.lines.push(line);
      if (msg.type() === 'error') {
        this.errors.push(line);
        console.error(line); // forward browser errors to the test output
      }
    });
    page.on('pageerror', (err) => {
      const line = `[${label}] uncaught: ${err.stack ?? err.message}`;
      this.lines.push(line);
      this.errors.push(line);
      console.error(line);
    });
    page.on('worker', (worker) => this.lines.push(`[${label}] worker started: ${worker.url()}`));
    page.on('crash', () => {
      this.lines.push(`[${label}] page crashed`);
      console.error(`[${label}] page crashed`);
    });
  }
}

/** Saves a screenshot of every open page of `contexts`, the console log and the relay log. */
export async function saveArtifacts(name, contexts, consoleLog, relay) {
  try {
    await mkdir(ARTIFACTS, { recursive: true });
    const safe = name.replace(/[^a-z0-9]+/gi, '-').toLowerCase();
    const pages = contexts.filter(Boolean).flatMap((context) => context.pages());
    for (const [i, page] of pages.entries()) {
      await page.screenshot({ path: path.join(ARTIFACTS, `${safe}-page${i}.png`), fullPage: true }).catch(() => {});
    }
    await writeFile(path.join(ARTIFACTS, `${safe}-console.log`), consoleLog.lines.join('\n') + '\n');
    if (relay) await writeFile(path.join(ARTIFACTS, `${safe}-relay.log`), relay.log.join(''));
    console.error(`artifacts saved in ${ARTIFACTS} (${safe}-*)`);
  } catch (err) {
    console.error(`could not save artifacts: ${err.message}`);
  }
}

/**
 * Serves the relay's static files under the production CSP (netlify.toml), so a CSP violation
 * (an inline script, a missing 'wasm-unsafe-eval', ...) fails the tests too. Returns the set of
 * static paths served that way.
 */
export async function serveWithCsp(context, relayUrl, csp) {
  const served = new Set();
  await context.route(`${relayUrl}/**`, async (route) => {
    const pathname = new URL(route.request().url()).pathname;
    if (pathname.startsWith('/v1/')) return route.continue();
    served.add(pathname);
    const response = await route.fetch();
    await route.fulfill({ response, headers: { ...response.headers(), 'content-security-policy': csp } });
  });
  return served;
}

/** The digits of an element's text as a BigInt (credits are shown with thousands separators). */
export async function integerIn(page, selector) {
  const text = await page.locator(selector).textContent();
  const digits = (text ?? '').replace(/\D/g, '');
  return digits ? BigInt(digits) : null;
}

/** Opens the page and waits until WebGPU detection has finished (Contribute enabled). */
export async function openPage(context, url, label, consoleLog) {
  const page = await context.newPage();
  consoleLog.watch(page, label);
  const response = await page.goto(url);
  page.documentCsp = response.headers()['content-security-policy'];
  await page.waitForFunction(() => !document.getElementById('contribute').disabled, null, { timeout: 30_000 });
  return page;
}

export async function clickStopAndWait(page) {
  const clicked = Date.now();
  await page.click('#stop');
  await page.waitForFunction(
    () => /stopped/i.test(document.getElementById('status').textContent),
    null,
    { timeout: 10_000 },
  );
  return Date.now() - clicked;
}

/**
 * The headers netlify.toml gives `pathname`, as Netlify does: every [[headers]] rule whose `for`
 * pattern matches (`*` matches anything), a header set by several rules joined with ", ".
 */
export async function netlifyHeaders(pathname) {
  const toml = await readFile(path.join(ROOT, 'netlify.toml'), 'utf8');
  const headers = {};
  for (const block of toml.split(/^\[\[headers\]\]\s*$/m).slice(1)) {
    const pattern = block.match(/^\s*for\s*=\s*"([^"]+)"/m)?.[1];
    if (!pattern) continue;
    const regex = new RegExp(`^${pattern.split('*').map((part) => part.replace(/[.?+^$()[\]{}|\\/]/g, '\\$&')).join('.*')}$`);
    if (!regex.test(pathname)) continue;
    const values = block.split(/^\s*\[headers\.values\]\s*$/m)[1] ?? '';
    for (const [, name, value] of values.matchAll(/^\s*([A-Za-z-]+)\s*=\s*"([^"]*)"/gm)) {
      const key = name.toLowerCase();
      headers[key] = headers[key] ? `${headers[key]}, ${value}` : value;
    }
  }
  return headers;
}

/**
 * Serves the relay's static files with the headers netlify.toml gives each path (in place of the
 * relay's own security headers), as static hosting would.
 */
export async function serveWithNetlifyHeaders(context, relayUrl) {
  await context.route(`${relayUrl}/**`, async (route) => {
    const pathname = new URL(route.request().url()).pathname;
    if (pathname.startsWith('/v1/')) return route.continue();
    const response = await route.fetch();
    const headers = { ...response.headers() };
    delete headers['content-security-policy'];
    delete headers['x-frame-options'];
    await route.fulfill({ response, headers: { ...headers, ...(await netlifyHeaders(pathname)) } });
  });
}
