// Browser test of the console's SNS wiring panel (status.js, GET /v1/status).
//
//   node tests/browser/status.test.mjs MAILTRAIL_BINARY TESTS_DATA_DIR OUTPUT_DIR
//
// Real pieces only: a redis-server on a free loopback port, the mailtrail
// binary (--auto-confirm no, an API token, a certificate host pattern that
// also allows 127.0.0.1:1, where nothing listens), and Debian's Chromium
// driven headless by playwright-core.  The wiring faults are driven for
// real through the webhook: a raw delivery, an unconfirmed subscription, a
// refused subscription and a notification of a topic not in --topic, a
// certificate host that refuses connections; then the page must show each
// with its hint, the topics table, and a refresh.  Every check is printed;
// the exit status is 0 only when all pass.  Every child is killed on exit.

import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.MAILTRAIL_TEST_CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 15000;
const TOKEN = 'mt-browser-status-token-42a7c9e1';
const OURS = 'arn:aws:sns:eu-west-1:123456789012:ses-events';
const SECOND = 'arn:aws:sns:eu-west-1:123456789012:second';
const THEIRS = 'arn:aws:sns:eu-west-1:999999999999:someone-else';
const CERT_NAME = 'SimpleNotificationService-statustest.pem';
const CERT_URL = `https://sns.eu-west-1.amazonaws.com/${CERT_NAME}`;
const UNREACHABLE = '127.0.0.1:1';

// ---- bookkeeping -------------------------------------------------------------------

let passed = 0;
let failed = 0;
const children = new Set();
let tmp = null;
let browser = null;
const logs = [];

async function acheck(desc, fn) {
  try {
    await fn();
  } catch (e) {
    failed++;
    console.log(`not ok ${passed + failed} - ${desc}`);
    throw e;
  }
  passed++;
  console.log(`ok ${passed} - ${desc}`);
}

function cleanup() {
  for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } }
  if (tmp && !process.env.MAILTRAIL_TEST_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { cleanup(); process.exit(128 + 1); });
}

function spawnTracked(cmd, args) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const lines = [];
  for (const s of [child.stdout, child.stderr]) {
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) { lines.push(buf.slice(0, i)); buf = buf.slice(i + 1); }
    });
  }
  logs.push([cmd, lines]);
  return { child, lines };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function waitFor(what, fn) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// ---- the stack -------------------------------------------------------------------

async function startRedis(dir) {
  const port = await freePort();
  const { child } = spawnTracked('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
    '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no']);
  await waitFor('redis-server', () => new Promise((resolve) => {
    if (child.exitCode !== null) resolve(false);
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    sock.on('error', () => { sock.destroy(); resolve(false); });
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => { got += d; if (got.includes('\r\n')) { sock.destroy(); resolve(got.startsWith('+PONG')); } });
  }));
  return port;
}

async function startMailtrail(bin, redisPort, certDir) {
  const pattern = `^(sns\\.[a-z0-9-]+\\.amazonaws\\.com|${UNREACHABLE.replace(/\./g, '\\.')})$`;
  const { child, lines } = spawnTracked(bin, ['--listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0',
    '--redis', `redis://127.0.0.1:${redisPort}/0`, '--cert-cache-dir', certDir,
    '--topic', 'arn:aws:sns:*:123456789012:*', '--auto-confirm', 'no', '--api-token', TOKEN,
    '--cert-host-pattern', pattern, '--log-format', 'json']);
  const found = await waitFor('mailtrail listening', () => {
    if (child.exitCode !== null) throw new Error(`mailtrail exited:\n${lines.join('\n')}`);
    let hook = null;
    let api = null;
    for (const l of lines) {
      let o;
      try { o = JSON.parse(l); } catch { continue; }
      if (o.msg === 'listening') hook = o.listen;
      if (o.msg === 'api listening') api = o.listen;
    }
    return hook && api ? { hook: `http://${hook}`, api: `http://${api}` } : null;
  });
  return { child, ...found };
}

// ---- SNS messages --------------------------------------------------------------------

function sign(msg, keyPem, fields) {
  let s = '';
  for (const k of fields) if (msg[k] !== undefined) s += `${k}\n${msg[k]}\n`;
  const signer = crypto.createSign('RSA-SHA256');
  signer.update(s, 'utf8');
  msg.Signature = signer.sign(keyPem, 'base64');
  return msg;
}

function notification(ses, keyPem, topic, certUrl = CERT_URL) {
  return sign({
    Type: 'Notification', MessageId: crypto.randomUUID(), TopicArn: topic,
    Message: ses, Timestamp: new Date().toISOString(), SignatureVersion: '2',
    SigningCertURL: certUrl,
    UnsubscribeURL: `https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=${topic}:0`,
  }, keyPem, ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type']);
}

function confirmation(keyPem, topic) {
  const token = crypto.randomBytes(32).toString('hex');
  return sign({
    Type: 'SubscriptionConfirmation', MessageId: crypto.randomUUID(), Token: token,
    TopicArn: topic, Message: `You have chosen to subscribe to the topic ${topic}.`,
    SubscribeURL: `https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=${topic}&Token=${token}`,
    Timestamp: new Date().toISOString(), SignatureVersion: '2', SigningCertURL: CERT_URL,
  }, keyPem, ['Message', 'MessageId', 'SubscribeURL', 'Timestamp', 'Token', 'TopicArn', 'Type']);
}

async function post(hook, body, headers) {
  const r = await fetch(`${hook}/sns`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain; charset=UTF-8', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  await r.text();
  return r.status;
}

// ---- the test ----------------------------------------------------------------------------

async function main() {
  const [bin, dataDir, outDir] = process.argv.slice(2);
  if (!bin || !dataDir || !outDir) {
    console.error('usage: status.test.mjs MAILTRAIL_BINARY TESTS_DATA_DIR OUTPUT_DIR');
    process.exit(2);
  }
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: install Debian's chromium package`);
  fs.mkdirSync(outDir, { recursive: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mailtrail-browser-status-'));
  const certDir = path.join(tmp, 'certs');
  fs.mkdirSync(certDir);
  fs.mkdirSync(path.join(tmp, 'redis'));
  const key = path.join(tmp, 'signing.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
    '-out', path.join(certDir, CERT_NAME), '-subj', '/CN=sns.amazonaws.com', '-days', '3650',
    '-addext', 'keyUsage=critical,digitalSignature',
    '-addext', 'basicConstraints=critical,CA:FALSE'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const keyPem = fs.readFileSync(key, 'utf8');
  const created = Date.now();
  const redisPort = await startRedis(path.join(tmp, 'redis'));
  const mt = await startMailtrail(path.resolve(bin), redisPort, certDir);
  console.log(`# mailtrail webhook ${mt.hook}, api ${mt.api}`);
  while (Date.now() < created + 1100) await sleep(100);
  const ses = JSON.stringify(JSON.parse(fs.readFileSync(
    path.join(dataDir, 'ses', 'awsdoc-identity-bounce-permanent-general-with-dsn.json'), 'utf8')));

  const conf = confirmation(keyPem, OURS);
  await acheck('the wiring faults, driven through the webhook, get their answers', async () => {
    assert.equal(await post(mt.hook, conf, { 'x-amz-sns-message-type': 'SubscriptionConfirmation' }), 200);
    assert.equal(await post(mt.hook, notification(ses, keyPem, OURS), { 'x-amz-sns-message-type': 'Notification' }), 200);
    assert.equal(await post(mt.hook, ses, { 'x-amz-sns-message-type': 'Notification',
      'x-amz-sns-rawdelivery': 'true', 'x-amz-sns-topic-arn': OURS }), 403);
    assert.equal(await post(mt.hook, notification(ses, keyPem, THEIRS)), 403);
    assert.equal(await post(mt.hook, confirmation(keyPem, THEIRS)), 403);
    assert.equal(await post(mt.hook, notification(ses, keyPem, SECOND,
      `https://${UNREACHABLE}/SimpleNotificationService-unreachable.pem`)), 503);
  });

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US' });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (/Content[- ]Security[- ]Policy|Refused to/i.test(m.text())) problems.push(m.text()); });
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  await page.goto(`${mt.api}/`);

  await acheck('without the token the panel stays hidden; the token prompt shows', async () => {
    await page.locator('#token-prompt').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await page.locator('#wiring').isVisible(), false);
  });
  await page.fill('#token', TOKEN);
  await page.click('#token-submit');

  const hint = (re) => page.waitForFunction((src) => {
    const r = new RegExp(src);
    return [...document.querySelectorAll('#wiring-hints li')].some((li) => r.test(li.textContent));
  }, re.source, { timeout: WAIT_MS });
  await acheck('after the token: the wiring panel with one hint per problem', async () => {
    await page.locator('#wiring').waitFor({ state: 'visible', timeout: WAIT_MS });
    await hint(/these deliveries are raw \(unsigned\): turn off RawMessageDelivery/);
    await hint(/topic arn:aws:sns:eu-west-1:999999999999:someone-else is not in --topic: add it if it is yours/);
    await hint(/the signing certificate could not be fetched from 127\.0\.0\.1:1: allow outbound HTTPS to it/);
    await hint(/subscription to arn:aws:sns:eu-west-1:123456789012:ses-events is not confirmed \(--auto-confirm no\)/);
    await hint(/confirmation of arn:aws:sns:eu-west-1:999999999999:someone-else was refused/);
    const items = await page.$$eval('#wiring-hints li', (lis) => lis.map((li) => li.getAttribute('data-topic')));
    assert.ok(items.includes(OURS) && items.includes(THEIRS) && items.includes(SECOND), items.join(' '));
    assert.match(await page.textContent('#wiring-summary'), /^3 topics seen; \d+ problems to fix:$/);
    assert.ok(await page.evaluate(() => document.getElementById('wiring').classList.contains('wiring-problem')));
    // The SubscribeURL to visit is in the hint, as text.
    const pending = await page.$$eval('#wiring-hints li', (lis) => lis.map((li) => li.textContent)
      .find((t) => t.includes('--auto-confirm no')));
    assert.ok(pending.includes(conf.SubscribeURL), pending);
    assert.equal(await page.locator('#wiring-hints a').count(), 0);
  });

  await acheck('"Topics" opens the table: accepted, subscription, deliveries, refused per topic', async () => {
    assert.equal(await page.locator('#wiring-details').isVisible(), false);
    await page.click('#wiring-toggle');
    await page.locator('#wiring-details').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await page.getAttribute('#wiring-toggle', 'aria-expanded'), 'true');
    const rows = await page.$$eval('#wiring-topics tbody tr', (trs) => Object.fromEntries(trs.map((tr) =>
      [tr.getAttribute('data-topic'), [...tr.cells].map((c) => c.textContent)])));
    assert.deepEqual(Object.keys(rows).sort(), [OURS, SECOND, THEIRS].sort());
    const ours = rows[OURS];
    assert.equal(ours[1], 'yes');
    assert.match(ours[2], /^pending: not confirmed, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ s ago\)$/);
    assert.match(ours[3], /UTC \(\d+ s ago\)$/);
    assert.equal(ours[4], '1 / 1');
    assert.equal(ours[5], 'raw delivery 1');
    const theirs = rows[THEIRS];
    assert.match(theirs[0], /\(not verified\)$/);
    assert.equal(theirs[1], 'no');
    assert.match(theirs[2], /^refused, /);
    assert.equal(theirs[5], 'topic not accepted 2');
    assert.equal(rows[SECOND][5], 'certificate not fetched 1');
    assert.equal(rows[SECOND][3], '—');
  });

  await acheck('"Refresh" reads the status again', async () => {
    assert.equal(await post(mt.hook, ses, { 'x-amz-sns-rawdelivery': 'true', 'x-amz-sns-topic-arn': OURS }), 403);
    await page.click('#wiring-refresh');
    await page.waitForFunction((t) => {
      const tr = [...document.querySelectorAll('#wiring-topics tbody tr')].find((r) => r.getAttribute('data-topic') === t);
      return tr && tr.cells[5].textContent === 'raw delivery 2';
    }, OURS, { timeout: WAIT_MS });
    await page.screenshot({ path: path.join(outDir, 'console-status.png'), fullPage: true });
  });

  await acheck('no script error and no Content-Security-Policy violation', async () => {
    assert.deepEqual(await page.evaluate(() => window.__csp), []);
    assert.deepEqual(problems, []);
    for (const [p, type] of [['/status.js', /javascript/], ['/status.css', /^text\/css/]]) {
      const r = await fetch(`${mt.api}${p}`);
      assert.equal(r.status, 200, p);
      assert.match(r.headers.get('content-type') || '', type);
      assert.equal(await r.text(), fs.readFileSync(new URL(`../../src/console${p}`, import.meta.url), 'utf8'));
    }
  });
  await browser.close();
  browser = null;
}

main().then(() => {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}, async (err) => {
  console.log(`# FAILED: ${err && err.stack ? err.stack : err}`);
  for (const [name, lines] of logs) {
    console.log(`# last output of ${name}:`);
    for (const l of lines.slice(-30)) console.log(`#   ${l}`);
  }
  if (browser) await browser.close().catch(() => {});
  console.log(`${passed} passed, ${failed || 1} failed`);
  process.exit(1);
});
