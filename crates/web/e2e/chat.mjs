// Browser test of Palaver's web client: two people chat through `palaver web` in headless
// Chromium, against a cluster that the calling test has started.
//
// Environment: PALAVER_BIN (the palaver binary), PALAVER_BROKER and PALAVER_SUB (the cluster's
// client and subscriber endpoints), SCREENSHOT (where to write a PNG of the chat), CHROMIUM
// (the browser; /usr/bin/chromium by default). Prints one line per step; exits non-zero with
// the reason on the first expectation not met.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BIN = required('PALAVER_BIN');
const BROKER = required('PALAVER_BROKER');
const SUB = required('PALAVER_SUB');
const SCREENSHOT = process.env.SCREENSHOT || path.join(os.tmpdir(), 'palaver-web-chat.png');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const WAIT_MS = 15000; // for what the page should show soon
const RECONNECT_MS = 30000; // for what comes after the gateway is back
const HEALTH_MS = 30000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`chat.mjs: set ${name}`);
    process.exit(2);
  }
  return value;
}

let stepNo = 0;
function passed(text) {
  stepNo += 1;
  console.log(`step ${stepNo} ok: ${text}`);
}

/** Polls `fn` until it returns a truthy value (which it returns), or fails after `ms`. */
async function until(fn, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
      last = value;
    } catch (e) {
      last = e.message;
    }
    if (Date.now() > deadline) {
      throw new Error(`waited ${ms} ms for ${what}; last seen: ${JSON.stringify(last)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// ---- The gateway -------------------------------------------------------------------------

/**
 * The port to run the gateway on: the one PALAVER_WEB_LISTEN names (the test keeps it free,
 * away from the ports the kernel hands to outgoing connections), or else one free right now.
 */
function gatewayPort() {
  const listen = process.env.PALAVER_WEB_LISTEN;
  if (listen) return Promise.resolve(Number(listen.split(':').pop()));
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

let gateway = null;

/** Runs `palaver web` on `port` and waits until /health answers 200. */
async function startGateway(port) {
  const child = spawn(BIN, ['web', '--listen', `127.0.0.1:${port}`, '--broker', BROKER, '--sub', SUB], {
    stdio: ['ignore', 2, 2],
  });
  gateway = child;
  let exited = null;
  child.once('exit', (code, signal) => { exited = signal || `exit code ${code}`; });
  await until(async () => {
    if (exited) return true;
    try {
      const response = await fetch(`http://127.0.0.1:${port}/health`);
      return response.status === 200;
    } catch {
      return false;
    }
  }, `palaver web on port ${port} to answer /health`, HEALTH_MS);
  if (exited) throw new Error(`palaver web ended (${exited}) before it was healthy`);
}

function running(child) {
  return child !== null && child.exitCode === null && child.signalCode === null;
}

/** Stops the gateway: `signal`, then SIGKILL if it has not ended within 3 s. */
async function stopGateway(signal = 'SIGTERM') {
  const child = gateway;
  if (!running(child)) return;
  const ended = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  const timer = setTimeout(() => { if (running(child)) child.kill('SIGKILL'); }, 3000);
  await ended;
  clearTimeout(timer);
}

process.on('exit', () => {
  if (running(gateway)) gateway.kill('SIGKILL');
});

// ---- The pages ---------------------------------------------------------------------------

const pageErrors = [];

async function newPage(browser, who) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`${who}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`[${who} console] ${m.text()}`);
  });
  return page;
}

async function register(page, url, user, password) {
  await page.goto(url);
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#register-button');
  await page.waitForSelector('#app:not([hidden])', { timeout: WAIT_MS }).catch(async () => {
    const why = await page.textContent('#login-error');
    throw new Error(`${user} could not register and log in: ${why}`);
  });
  await until(async () => (await page.textContent('#me')) === user, `#me to show ${user}`);
}

/** Joins or creates `room` and waits until it is the open place. */
async function joinRoom(page, room) {
  await page.fill('#join-input', room);
  await page.click('#join-button');
  await page.waitForSelector(`li.place.open[data-place="#${room}"]`, { timeout: WAIT_MS });
}

async function openPlace(page, key) {
  await page.click(`li.place[data-place="${key}"]`);
  await until(async () => (await page.textContent('#place-title')) === key, `${key} to be open`);
}

async function send(page, text) {
  await page.fill('#composer', text);
  await page.press('#composer', 'Enter');
}

/** The messages shown whose text is exactly `text`: [{id, pending, receipt}]. */
function messagesWith(page, text) {
  return page.$$eval('#messages .msg', (nodes, wanted) => nodes
    .filter((n) => n.querySelector('.text')?.textContent === wanted)
    .map((n) => ({
      id: n.dataset.id || null,
      pending: n.classList.contains('pending') || n.querySelector('.pending-mark') !== null,
      receipt: n.querySelector('.receipt')?.dataset.state || null,
    })), text);
}

/** Waits until exactly one message with `text` is shown, stored (it has an id). */
async function seesOnce(page, who, text, ms = WAIT_MS) {
  return until(async () => {
    const found = await messagesWith(page, text);
    return found.length === 1 && found[0].id && !found[0].pending ? found[0] : false;
  }, `${who} to show ${JSON.stringify(text)} once, stored`, ms);
}

async function noDuplicates(page, who) {
  const ids = await page.$$eval('#messages .msg[data-id]', (nodes) => nodes.map((n) => n.dataset.id));
  const twice = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (twice.length) throw new Error(`${who} shows messages twice: ${twice.join(', ')}`);
  return ids.length;
}

async function linkSays(page, who, text, ms) {
  await until(async () => (await page.textContent('#status-link')) === text, `${who}'s status to say ${text}`, ms);
}

// ---- The scenario ------------------------------------------------------------------------

async function scenario(browser, port) {
  const url = `http://127.0.0.1:${port}/`;
  const rand = randomBytes(3).toString('hex');
  const ana = `ana${rand}`;
  const bob = `bob${rand}`;
  const room = `den${rand}`;
  const a = await newPage(browser, 'A');
  const b = await newPage(browser, 'B');

  await register(a, url, ana, 'correct horse battery');
  await register(b, url, bob, 'staple battery horse');
  passed(`${ana} and ${bob} registered and logged in`);

  await joinRoom(a, room);
  await joinRoom(b, room);
  await until(async () => (await a.$$eval('#messages .notice', (ns) => ns.map((n) => n.textContent)))
    .includes(`${bob} joined`), `A to see "${bob} joined"`);
  passed(`${ana} created #${room}, ${bob} joined, ${ana} saw the notice`);

  await send(a, '/topic plans for the week');
  await until(async () => (await b.textContent('#place-topic')) === 'plans for the week',
    'B to show the topic A set in the header');
  await until(async () => (await b.$$eval('#messages .notice', (ns) => ns.map((n) => n.textContent)))
    .includes(`${ana} set the topic: plans for the week`), 'B to see the topic notice');
  passed(`${ana} set the topic of #${room}; ${bob} sees it in the header`);

  await send(a, 'hello from ana');
  await seesOnce(b, 'B', 'hello from ana');
  await send(b, 'hi ana');
  await seesOnce(a, 'A', 'hi ana');
  passed('room posts reached the other person');

  await a.fill('#dm-input', bob);
  await a.click('#dm-button');
  await until(async () => (await a.textContent('#place-title')) === `@${bob}`, 'A to open @bob');
  await send(a, 'psst bob');
  await seesOnce(a, 'A', 'psst bob');
  const badge = `li.place[data-place="@${ana}"] .unread`;
  await until(async () => (await b.textContent('#place-title')) === `#${room}`
    && (await b.isVisible(badge)) && (await b.textContent(badge)) === '1',
  `B (with #${room} open) to show @${ana} with an unread badge of 1`);
  await openPlace(b, `@${ana}`);
  await seesOnce(b, 'B', 'psst bob');
  await until(async () => (await messagesWith(a, 'psst bob'))[0]?.receipt === 'read',
    'A\'s "psst bob" to show the receipt "read"');
  passed('private message: unread badge 1 for B, read receipt for A');

  const hostile = '<script>window.__pwned=1</script><b>bold</b>';
  await openPlace(a, `#${room}`);
  await openPlace(b, `#${room}`);
  await send(a, hostile);
  await seesOnce(b, 'B', hostile);
  for (const [page, who] of [[a, 'A'], [b, 'B']]) {
    if (await page.evaluate(() => window.__pwned !== undefined)) throw new Error(`${who} ran the posted script`);
    if ((await page.$$('#messages b')).length > 0) throw new Error(`${who} rendered posted markup as HTML`);
  }
  passed('posted markup shows as text and runs nothing');

  await stopGateway('SIGKILL');
  await linkSays(a, 'A', 'reconnecting…');
  await linkSays(b, 'B', 'reconnecting…');
  const downText = 'sent while the gateway was down';
  await send(b, downText);
  await until(async () => {
    const found = await messagesWith(b, downText);
    return found.length === 1 && found[0].pending && !found[0].id;
  }, 'B to show its message as pending while the gateway is down');
  await startGateway(port);
  await linkSays(a, 'A', 'connected', RECONNECT_MS);
  await linkSays(b, 'B', 'connected', RECONNECT_MS);
  const onA = await seesOnce(a, 'A', downText, RECONNECT_MS);
  const onB = await seesOnce(b, 'B', downText, RECONNECT_MS);
  if (onA.id !== onB.id) throw new Error(`the message has two ids: ${onA.id} on A, ${onB.id} on B`);
  await send(a, 'after restart');
  await seesOnce(b, 'B', 'after restart', RECONNECT_MS);
  await seesOnce(a, 'A', downText);
  const shownA = await noDuplicates(a, 'A');
  const shownB = await noDuplicates(b, 'B');
  passed(`gateway restarted: the pending message went out once (${onA.id}); ${shownA} and ${shownB} messages shown, none twice`);

  await until(async () => (await a.$$('#members li')).length === 2, 'A to list 2 members');
  await a.screenshot({ path: SCREENSHOT });
  passed(`screenshot of A written to ${SCREENSHOT}`);

  if (pageErrors.length) throw new Error(`errors in the pages: ${pageErrors.join('; ')}`);
  passed('no script errors in either page');
}

async function main() {
  const port = await gatewayPort();
  let browser = null;
  try {
    await startGateway(port);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    await scenario(browser, port);
    console.log('web chat: all steps passed');
  } finally {
    if (browser) await browser.close().catch(() => {});
    await stopGateway();
  }
}

main().catch((e) => {
  console.error(`web chat FAILED at step ${stepNo + 1}: ${e.message}`);
  process.exitCode = 1;
});
