// Browser test of the mailtrail support console.
//
//   node tests/browser/console.test.mjs MAILTRAIL_BINARY TESTS_DATA_DIR OUTPUT_DIR
//
// Real pieces only: a redis-server on a free loopback port, the mailtrail
// binary with both listeners on port 0, events seeded through the real
// webhook as SNS Notifications signed with a test key (its certificate sits
// in --cert-cache-dir, so nothing is fetched), and Debian's Chromium driven
// headless by playwright-core.  Every check is printed; the exit status is 0
// only when all pass.  Every child is killed on exit, also on failure.

import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CONSOLE_SRC = path.resolve(HERE, '..', '..', 'src', 'console');
const CHROMIUM = process.env.MAILTRAIL_TEST_CHROMIUM || '/usr/bin/chromium';
const CERT_NAME = 'SimpleNotificationService-browsertest.pem';
const CERT_URL = `https://sns.us-east-1.amazonaws.com/${CERT_NAME}`;
const TOPIC = 'arn:aws:sns:us-east-1:123456789012:ses-events';
const ADDRESS = 'alice+test@example.com';
const OTHER = 'bob@example.org';
const XSS_IMG = '<img src=x onerror="window.__pwned=1">';
const XSS_SCRIPT = '<script>window.__pwned=1</script>';
const XSS_LINK = 'javascript:window.__pwned=1';
const OLD_DELIVERIES = 60;
const WAIT_MS = 15000;

// ---- bookkeeping: checks, children, clean-up --------------------------------

let passed = 0;
let failed = 0;
const children = new Set();
let tmpRoot = null;
let browser = null;
const logs = new Map(); // name -> array of output lines

function check(desc, fn) {
  try {
    fn();
  } catch (e) {
    failed++;
    console.log(`not ok ${passed + failed} - ${desc}`);
    throw e;
  }
  passed++;
  console.log(`ok ${passed} - ${desc}`);
}

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

function killChildren() {
  for (const c of children) {
    try { c.kill('SIGKILL'); } catch { /* gone */ }
  }
  children.clear();
}

function cleanup() {
  killChildren();
  if (tmpRoot && !process.env.MAILTRAIL_TEST_KEEP) {
    try { fs.rmSync(tmpRoot, { recursive: true, force: true }); } catch { /* best effort */ }
  }
}

process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.log(`# interrupted by ${sig}`);
    if (browser) browser.close().catch(() => {});
    cleanup();
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
  });
}

function track(name, child) {
  children.add(child);
  const lines = [];
  logs.set(name, lines);
  const collect = (stream) => {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (lines.length > 2000) lines.shift();
      }
    });
  };
  if (child.stdout) collect(child.stdout);
  if (child.stderr) collect(child.stderr);
  child.on('exit', () => children.delete(child));
  return lines;
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await done;
  clearTimeout(t);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- set-up helpers ------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function redisPing(port) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    const done = (v) => { sock.destroy(); resolve(v); };
    sock.setTimeout(1000, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => { got += d; if (got.includes('\r\n')) done(got.startsWith('+PONG')); });
  });
}

async function startRedis(dir) {
  const port = await freePort();
  const child = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', dir, '--daemonize', 'no', '--protected-mode', 'yes',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = track('redis', child);
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${lines.slice(-20).join('\n')}`);
    if (await redisPing(port)) return { port, child };
    await sleep(50);
  }
  throw new Error(`redis-server on port ${port} did not answer PING`);
}

function makeSigningCert(dir, certDir) {
  const key = path.join(dir, 'signing.key');
  const cert = path.join(certDir, CERT_NAME);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key,
    '-out', cert, '-subj', '/CN=sns.amazonaws.com', '-days', '3650',
    '-addext', 'keyUsage=critical,digitalSignature',
    '-addext', 'basicConstraints=critical,CA:FALSE'], { stdio: ['ignore', 'ignore', 'pipe'] });
  return { keyPem: fs.readFileSync(key, 'utf8'), created: Date.now() };
}

async function startMailtrail(bin, redisPort, certDir, extra, name) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('MAILTRAIL_')) delete env[k];
  const args = ['--listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0',
    '--redis', `redis://127.0.0.1:${redisPort}/0`, '--cert-cache-dir', certDir,
    '--log-format', 'json', ...extra];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const lines = track(name, child);
  let hook = null;
  let api = null;
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline && !(hook && api)) {
    if (child.exitCode !== null) {
      throw new Error(`mailtrail exited with ${child.exitCode}:\n${lines.join('\n')}`);
    }
    for (const line of lines) {
      let o;
      try { o = JSON.parse(line); } catch { continue; }
      if (o.msg === 'listening' && o.listen) hook = o.listen;
      if (o.msg === 'api listening' && o.listen) api = o.listen;
    }
    if (!(hook && api)) await sleep(50);
  }
  if (!hook || !api) {
    throw new Error(`mailtrail did not log both "listening" and "api listening" lines:\n${lines.join('\n')}`);
  }
  return { child, hook: `http://${hook}`, api: `http://${api}`, lines };
}

// ---- SNS signing and seeding ------------------------------------------------------

function isoMs(ms) { return new Date(ms).toISOString(); }

function snsNotification(message, keyPem, { subject, version = '2' } = {}) {
  const msg = {
    Type: 'Notification',
    MessageId: crypto.randomUUID(),
    TopicArn: TOPIC,
    Message: message,
    Timestamp: new Date().toISOString(),
    SignatureVersion: version,
    SigningCertURL: CERT_URL,
    UnsubscribeURL: `https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=${TOPIC}:0`,
  };
  if (subject !== undefined) msg.Subject = subject;
  let s = '';
  for (const k of ['Message', 'MessageId', 'Subject', 'Timestamp', 'TopicArn', 'Type']) {
    if (k === 'Subject' && msg.Subject === undefined) continue;
    s += `${k}\n${msg[k]}\n`;
  }
  const signer = crypto.createSign(version === '1' ? 'RSA-SHA1' : 'RSA-SHA256');
  signer.update(s, 'utf8');
  msg.Signature = signer.sign(keyPem, 'base64');
  return msg;
}

async function postSns(hook, msg) {
  const res = await fetch(`${hook}/sns`, {
    method: 'POST',
    headers: {
      'content-type': 'text/plain; charset=UTF-8',
      'x-amz-sns-message-type': 'Notification',
    },
    body: JSON.stringify(msg),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `webhook answered ${res.status} ${text} for ${msg.MessageId}`);
  return JSON.parse(text);
}

function loadSes(dataDir, name) {
  return JSON.parse(fs.readFileSync(path.join(dataDir, 'ses', name), 'utf8'));
}

/* Builds the seeded SES events; returns [{sesJson, subject, version, key}]. */
function buildEvents(dataDir, t0) {
  const min = 60 * 1000;
  const out = [];
  const add = (key, obj, typeKey, when, opts = {}) => {
    obj.mail.timestamp = isoMs(when - 5000);
    if (typeKey) obj[typeKey].timestamp = isoMs(when);
    out.push({ key, ses: obj, when, ...opts });
  };

  // The story a support engineer reads, newest first.
  const complaint = loadSes(dataDir, 'awsdoc-identity-complaint-with-feedback-report.json');
  complaint.complaint.complainedRecipients = [{ emailAddress: 'Alice+Test@Example.COM' }];
  complaint.mail.destination = ['Alice+Test@Example.COM'];
  complaint.complaint.arrivalDate = isoMs(t0);
  add('complaint', complaint, 'complaint', t0, { version: '1' });

  const click = loadSes(dataDir, 'awsdoc-event-click.json');
  click.mail.destination = [ADDRESS];
  click.click.link = 'https://downloads.example.net/invoice/2026-11.pdf';
  add('click', click, 'click', t0 - 2 * min, { subject: 'Amazon SES Email Event Notification' });

  const open = loadSes(dataDir, 'awsdoc-event-open.json');
  open.mail.destination = [ADDRESS];
  add('open', open, 'open', t0 - 3 * min, { subject: 'Amazon SES Email Event Notification' });

  const delivery = loadSes(dataDir, 'awsdoc-identity-delivery.json');
  delivery.mail.destination = [ADDRESS];
  delivery.delivery.recipients = [ADDRESS];
  add('delivery', delivery, 'delivery', t0 - 4 * min);

  const delay = loadSes(dataDir, 'awsdoc-event-deliverydelay.json');
  delay.mail.destination = [ADDRESS];
  delay.deliveryDelay.delayedRecipients[0].emailAddress = ADDRESS;
  delay.deliveryDelay.expirationTime = isoMs(t0 + 60 * min);
  add('delay', delay, 'deliveryDelay', t0 - 10 * min, { subject: 'Amazon SES Email Event Notification' });

  const bounce = loadSes(dataDir, 'awsdoc-identity-bounce-permanent-general-with-dsn.json');
  bounce.bounce.bouncedRecipients[0].emailAddress = ADDRESS;
  bounce.bounce.bouncedRecipients[0].diagnosticCode = 'smtp; 550 5.1.1 <alice+test@example.com>... User unknown';
  bounce.mail.destination = [ADDRESS];
  add('bounce', bounce, 'bounce', t0 - 60 * min);

  // Hostile content from "remote mail servers".
  const b1 = loadSes(dataDir, 'awsdoc-identity-bounce-permanent-general-with-dsn.json');
  b1.bounce.bouncedRecipients[0].emailAddress = ADDRESS;
  b1.bounce.bouncedRecipients[0].diagnosticCode = XSS_IMG;
  b1.mail.destination = [ADDRESS];
  b1.mail.messageId = '0000014fxss-img-0000';
  add('xss-img', b1, 'bounce', t0 - 120 * min);

  const b2 = loadSes(dataDir, 'awsdoc-identity-bounce-permanent-general-with-dsn.json');
  b2.bounce.bounceType = 'Transient';
  b2.bounce.bounceSubType = 'MailboxFull';
  b2.bounce.bouncedRecipients[0].emailAddress = ADDRESS;
  b2.bounce.bouncedRecipients[0].diagnosticCode = XSS_SCRIPT;
  b2.bounce.bouncedRecipients[0].status = '4.2.2';
  b2.mail.destination = [ADDRESS];
  b2.mail.messageId = '0000014fxss-script-0000';
  add('xss-script', b2, 'bounce', t0 - 180 * min);

  const c2 = loadSes(dataDir, 'awsdoc-event-click.json');
  c2.mail.destination = [ADDRESS];
  c2.click.link = XSS_LINK;
  add('xss-link', c2, 'click', t0 - 240 * min);

  // Enough older deliveries that the timeline needs a second page.
  for (let i = 0; i < OLD_DELIVERIES; i++) {
    const d = loadSes(dataDir, 'awsdoc-identity-delivery.json');
    d.mail.destination = [ADDRESS];
    d.mail.messageId = `0000014644fe5ef6-old-${String(i).padStart(4, '0')}-000000`;
    d.delivery.recipients = [i === 7 ? 'ALICE+TEST@example.com' : ADDRESS];
    d.delivery.smtpResponse = `250 2.0.0 OK queued as old-${i}`;
    add(`old-${i}`, d, 'delivery', t0 - 24 * 60 * min - i * 5 * min, { version: i % 2 ? '1' : '2' });
  }

  // Someone else, newest of all (the recent-events view starts with it).
  const other = loadSes(dataDir, 'awsdoc-identity-delivery.json');
  other.mail.destination = [OTHER];
  other.delivery.recipients = [OTHER];
  add('other', other, 'delivery', t0 + min);
  return out;
}

// ---- browser helpers ----------------------------------------------------------------

function watchPage(page, problems) {
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    const t = m.text();
    if (/Content Security Policy|Refused to/i.test(t)) problems.push(`CSP: ${t}`);
  });
  // Registered by the browser itself (not subject to the page's CSP).
  return page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
}

async function rowsCount(page, table = '#timeline') {
  return page.locator(`${table} tbody tr`).count();
}

async function waitRows(page, n, table = '#timeline') {
  await page.waitForFunction(([sel, want]) =>
    document.querySelectorAll(`${sel} tbody tr`).length === want, [table, n], { timeout: WAIT_MS });
}

async function rowIds(page, table = '#timeline') {
  return page.$$eval(`${table} tbody tr`, (trs) => trs.map((tr) => tr.getAttribute('data-id')));
}

async function rowTimes(page, table = '#timeline') {
  return page.$$eval(`${table} tbody tr time`, (ts) => ts.map((t) => Date.parse(t.getAttribute('datetime'))));
}

async function fieldText(page, id, field) {
  return page.locator(`#timeline tbody tr[data-id="${id}"] dd[data-field="${field}"]`).textContent();
}

async function explainText(page, id) {
  return page.locator(`#timeline tbody tr[data-id="${id}"] .explain`).textContent();
}

async function visible(page, sel) {
  return page.locator(sel).isVisible();
}

// ---- the test ----------------------------------------------------------------------

async function main() {
  const [bin, dataDir, outDir] = process.argv.slice(2);
  if (!bin || !dataDir || !outDir) {
    console.error('usage: console.test.mjs MAILTRAIL_BINARY TESTS_DATA_DIR OUTPUT_DIR');
    process.exit(2);
  }
  fs.mkdirSync(outDir, { recursive: true });
  for (const tool of ['redis-server', 'openssl']) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }); } catch {
      throw new Error(`required command ${tool} not found (never skipped: install it)`);
    }
  }
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: install Debian's chromium package`);

  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'mailtrail-browser-'));
  const certDir = path.join(tmpRoot, 'certs');
  const redisDir = path.join(tmpRoot, 'redis');
  fs.mkdirSync(certDir);
  fs.mkdirSync(redisDir);

  const { keyPem, created } = makeSigningCert(tmpRoot, certDir);
  const redis = await startRedis(redisDir);
  console.log(`# redis-server on 127.0.0.1:${redis.port}`);
  let mt = await startMailtrail(path.resolve(bin), redis.port, certDir, [], 'mailtrail');
  console.log(`# mailtrail webhook ${mt.hook}, api ${mt.api}`);

  // The certificate must be valid at the messages' Timestamp (strictly after
  // its notBefore, which has one-second resolution).
  while (Date.now() < created + 1100) await sleep(100);

  // ---- seed through the real webhook --------------------------------------------
  const t0 = Date.now() - 30 * 60 * 1000;
  const events = buildEvents(dataDir, t0);
  const ids = {};
  for (const e of events) {
    const msg = snsNotification(JSON.stringify(e.ses), keyPem, { subject: e.subject, version: e.version });
    const ans = await postSns(mt.hook, msg);
    assert.equal(ans.status, 'stored', `${e.key}: ${JSON.stringify(ans)}`);
    ids[e.key] = msg.MessageId;
  }
  const aliceTotal = events.length - 1;
  check(`seeded ${events.length} signed SNS notifications through POST /sns (${aliceTotal} for ${ADDRESS})`, () => {});

  // ---- the API and the console's files, as the browser will see them ------------
  const enc = encodeURIComponent(ADDRESS);
  const summary = await (await fetch(`${mt.api}/v1/recipients/${enc}`)).json();
  check('API summary: suppressed with a reason, counts per type', () => {
    assert.equal(summary.recipient, ADDRESS);
    assert.equal(summary.suppressed, true, JSON.stringify(summary));
    assert.ok(['Bounce/Permanent', 'Complaint'].includes(summary.reason), JSON.stringify(summary));
    assert.deepEqual(summary.counts, { Bounce: 3, Complaint: 1, Delivery: 61, Click: 2, Open: 1, DeliveryDelay: 1 });
  });

  const index = await fetch(`${mt.api}/`);
  const indexBody = await index.text();
  check('GET / serves the console page with a strict Content-Security-Policy', () => {
    assert.equal(index.status, 200);
    assert.match(index.headers.get('content-type') || '', /^text\/html/);
    const csp = index.headers.get('content-security-policy') || '';
    for (const d of ["default-src 'self'", "script-src 'self'", "style-src 'self'",
      "connect-src 'self'", "frame-ancestors 'none'"]) {
      assert.ok(csp.includes(d), `CSP "${csp}" lacks ${d}`);
    }
    assert.equal(indexBody, fs.readFileSync(path.join(CONSOLE_SRC, 'index.html'), 'utf8'));
  });
  for (const [p, type, file] of [['/app.js', /javascript/, 'app.js'], ['/app.css', /^text\/css/, 'app.css']]) {
    const r = await fetch(`${mt.api}${p}`);
    const body = await r.text();
    check(`GET ${p} serves src/console/${file} as built into the binary`, () => {
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') || '', type);
      assert.equal(body, fs.readFileSync(path.join(CONSOLE_SRC, file), 'utf8'));
    });
  }

  // ---- the browser -----------------------------------------------------------------
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({
    viewport: { width: 1440, height: 1000 },
    locale: 'en-US',
    timezoneId: 'America/New_York',
  });
  const problems = [];
  const page = await context.newPage();
  await watchPage(page, problems);
  const apiRequests = [];
  page.on('request', (r) => apiRequests.push(r.url()));

  await page.goto(`${mt.api}/`);
  await acheck('with no address the console shows the recent-events view (GET /v1/events)', async () => {
    await page.locator('#recent').waitFor({ state: 'visible', timeout: WAIT_MS });
    await waitRows(page, 50, '#recent-table');
    const first = await page.locator('#recent-table tbody tr').first();
    assert.equal(await first.getAttribute('data-id'), ids.other, 'newest event first');
    assert.equal((await first.locator('.col-rcpt').textContent()).trim(), OTHER);
    assert.ok(await visible(page, '#recent-older'));
    assert.equal(await visible(page, '#timeline-section'), false);
  });
  await acheck('recent view pages to older events without duplicates', async () => {
    await page.click('#recent-older');
    await waitRows(page, events.length, '#recent-table');
    const rids = await rowIds(page, '#recent-table');
    assert.equal(new Set(rids).size, rids.length);
  });

  await acheck('searching the address shows its timeline, newest first', async () => {
    await page.fill('#address', ADDRESS);
    await page.click('#search');
    await waitRows(page, 50);
    const got = await rowIds(page);
    assert.deepEqual(got.slice(0, 9), ['complaint', 'click', 'open', 'delivery', 'delay', 'bounce',
      'xss-img', 'xss-script', 'xss-link'].map((k) => ids[k]));
    const times = await rowTimes(page);
    for (let i = 1; i < times.length; i++) assert.ok(times[i - 1] >= times[i], 'newest first');
    assert.ok(apiRequests.some((u) => u.includes(`/v1/recipients/${enc}/events`)),
      'address URL-encoded with encodeURIComponent in the API path');
    assert.equal(new URL(page.url()).search, `?address=${enc}`);
    assert.equal(await visible(page, '#recent'), false);
  });

  await acheck('bounce row: badge, type/subtype, status, diagnostic code, reporting MTA, sender, message id', async () => {
    const row = page.locator(`#timeline tbody tr[data-id="${ids.bounce}"]`);
    assert.equal((await row.locator('.badge').textContent()).trim(), 'Bounce');
    assert.match(await row.locator('.badge').getAttribute('class'), /badge-bounce/);
    assert.equal(await fieldText(page, ids.bounce, 'bounceType'), 'Permanent');
    assert.equal(await fieldText(page, ids.bounce, 'bounceSubType'), 'General');
    assert.equal(await fieldText(page, ids.bounce, 'status'), '5.1.1');
    assert.equal(await fieldText(page, ids.bounce, 'action'), 'failed');
    assert.equal(await fieldText(page, ids.bounce, 'diagnosticCode'),
      'smtp; 550 5.1.1 <alice+test@example.com>... User unknown');
    assert.equal(await fieldText(page, ids.bounce, 'reportingMTA'), 'dns; email.example.com');
    assert.equal((await row.locator('.col-sender').textContent()).trim(), 'john@example.com');
    assert.equal((await row.locator('.col-msgid').textContent()).trim(),
      '00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000');
  });
  await acheck('time shown in UTC and in the viewer\'s local time', async () => {
    const cell = page.locator(`#timeline tbody tr[data-id="${ids.bounce}"] .col-time`);
    const utc = (await cell.locator('.utc').textContent()).trim();
    const d = new Date(t0 - 60 * 60 * 1000);
    assert.equal(utc, d.toISOString().replace('T', ' ').replace('Z', ' UTC'));
    const local = (await cell.locator('.local').textContent()).trim();
    assert.match(local, /E[SD]T/, `local time in America/New_York: ${local}`);
  });
  await acheck('plain-language explanations: bounce, soft bounce, complaint, delay', async () => {
    assert.match(await explainText(page, ids.bounce), /^Permanent \/ General: Hard bounce/);
    assert.match(await explainText(page, ids['xss-script']), /^Transient \/ MailboxFull: .*mailbox is full/);
    assert.match(await explainText(page, ids.complaint), /^abuse: .*spam/);
    assert.match(await explainText(page, ids.delay), /^TransientCommunicationFailure: .*SES keeps trying/);
  });
  await acheck('complaint row: feedback type and reporter; delivery row: SMTP response, processing time', async () => {
    assert.equal(await fieldText(page, ids.complaint, 'complaintFeedbackType'), 'abuse');
    assert.equal(await fieldText(page, ids.complaint, 'userAgent'), 'AnyCompany Feedback Loop (V0.01)');
    assert.equal(await fieldText(page, ids.delivery, 'smtpResponse'), '250 ok:  Message 64111812 accepted');
    assert.equal(await fieldText(page, ids.delivery, 'processingTimeMillis'), '546 ms');
    assert.equal(await fieldText(page, ids.delivery, 'reportingMTA'), 'a8-70.smtp-out.amazonses.com');
    assert.equal(await fieldText(page, ids.delay, 'delayType'), 'TransientCommunicationFailure');
    assert.equal(await fieldText(page, ids.open, 'ipAddress'), '192.0.2.1');
    assert.equal(await fieldText(page, ids.click, 'link'), 'https://downloads.example.net/invoice/2026-11.pdf');
  });
  await acheck('suppression banner says why, in plain words; counts per type', async () => {
    assert.ok(await visible(page, '#banner'));
    const title = await page.locator('#banner-title').textContent();
    const text = await page.locator('#banner-text').textContent();
    if (summary.reason === 'Complaint') {
      assert.match(title, /complained/);
      assert.match(text, /spam/);
    } else {
      assert.match(title, /hard-bounced/);
      assert.match(text, /permanent bounce/);
    }
    const counts = await page.$$eval('#counts li', (lis) => Object.fromEntries(lis.map((li) =>
      [li.getAttribute('data-type'), li.querySelector('.count-n').textContent])));
    assert.deepEqual(counts, { Bounce: '3', Complaint: '1', Delivery: '61', Click: '2', Open: '1', DeliveryDelay: '1' });
  });
  await acheck('markup from remote servers is shown as literal text and never runs', async () => {
    assert.equal(await fieldText(page, ids['xss-img'], 'diagnosticCode'), XSS_IMG);
    assert.equal(await fieldText(page, ids['xss-script'], 'diagnosticCode'), XSS_SCRIPT);
    assert.equal(await fieldText(page, ids['xss-link'], 'link'), XSS_LINK);
    assert.equal(await page.locator('#timeline img, #timeline script, #timeline iframe').count(), 0);
    assert.equal(await page.locator('#timeline a').count(), 0, 'links are text, not anchors');
    await sleep(300); // give a would-be onerror handler its chance
    assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');
  });

  // Tall enough to show the summary and the first rows down to the bounces.
  await page.setViewportSize({ width: 1440, height: 1560 });
  await page.screenshot({ path: path.join(outDir, 'console.png') });
  await page.setViewportSize({ width: 1440, height: 1000 });
  check(`screenshot saved to ${path.join(outDir, 'console.png')}`, () => {
    assert.ok(fs.statSync(path.join(outDir, 'console.png')).size > 10000);
  });

  await acheck('"Older events" pages back (next_before): every event exactly once, in order', async () => {
    assert.ok(await visible(page, '#older'));
    await page.click('#older');
    await waitRows(page, aliceTotal);
    const all = await rowIds(page);
    assert.equal(new Set(all).size, all.length, 'no duplicate SNS ids');
    const want = events.filter((e) => e.key !== 'other').map((e) => ids[e.key]);
    assert.deepEqual(all, want);
    const times = await rowTimes(page);
    for (let i = 1; i < times.length; i++) assert.ok(times[i - 1] >= times[i], 'newest first');
    assert.equal(await visible(page, '#older'), false, 'no more pages');
    assert.ok(await visible(page, '#end-note'));
  });

  await acheck('type filter re-queries with type= and goes into the URL', async () => {
    await page.selectOption('#type-filter', 'Bounce');
    await waitRows(page, 3);
    const types = await page.$$eval('#timeline tbody tr', (trs) => trs.map((t) => t.getAttribute('data-type')));
    assert.deepEqual(types, ['Bounce', 'Bounce', 'Bounce']);
    assert.deepEqual(await rowIds(page), [ids.bounce, ids['xss-img'], ids['xss-script']]);
    assert.ok(apiRequests.some((u) => u.includes('type=Bounce')));
    assert.equal(new URL(page.url()).search, `?address=${enc}&type=Bounce`);
  });

  const deepLink = page.url();
  await acheck('deep link opened in a new page shows the same filtered timeline', async () => {
    const p2 = await context.newPage();
    await watchPage(p2, problems);
    await p2.goto(deepLink);
    await waitRows(p2, 3);
    assert.deepEqual(await rowIds(p2), [ids.bounce, ids['xss-img'], ids['xss-script']]);
    assert.equal(await p2.inputValue('#address'), ADDRESS);
    assert.equal(await p2.inputValue('#type-filter'), 'Bounce');
    assert.ok(await visible(p2, '#banner'));
    assert.equal(await p2.evaluate(() => typeof window.__pwned), 'undefined');
    assert.deepEqual(await p2.evaluate(() => window.__csp), []);
    await p2.close();
  });
  await acheck('hand-written deep link with a literal "+" and mixed case finds the same recipient', async () => {
    const p3 = await context.newPage();
    await watchPage(p3, problems);
    await p3.goto(`${mt.api}/?address=Alice+Test@Example.com`);
    await waitRows(p3, 50);
    assert.equal((await p3.locator('#summary-address').textContent()).trim(), ADDRESS);
    assert.equal((await p3.locator('#timeline tbody tr').first().getAttribute('data-id')), ids.complaint);
    await p3.close();
  });

  await acheck('an address never seen shows the empty state', async () => {
    await page.fill('#address', 'nobody@example.com');
    await page.selectOption('#type-filter', '');
    await page.click('#search');
    await page.locator('#empty').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.match(await page.locator('#empty').textContent(), /never seen/i);
    assert.match(await page.locator('#empty').textContent(), /nobody@example\.com/);
    assert.equal(await visible(page, '#timeline-section'), false);
    assert.equal(await visible(page, '#banner'), false);
  });
  await acheck('browser Back returns to the previous view (history.pushState)', async () => {
    await page.goBack();
    await waitRows(page, 3);
    assert.equal(await page.inputValue('#address'), ADDRESS);
    assert.equal(await page.inputValue('#type-filter'), 'Bounce');
  });
  await acheck('an API error (400 for an unknown type) is shown as a message', async () => {
    await page.goto(`${mt.api}/?address=${enc}&type=NoSuchType`);
    await page.locator('#error').waitFor({ state: 'visible', timeout: WAIT_MS });
    const t = await page.locator('#error').textContent();
    assert.match(t, /400/);
    assert.match(t, /type/);
  });
  await acheck('a recipient in the recent view links to its timeline (not suppressed)', async () => {
    await page.goto(`${mt.api}/`);
    await waitRows(page, 50, '#recent-table');
    await page.locator('#recent-table tbody tr').first().locator('.col-rcpt a').click();
    await waitRows(page, 1);
    assert.equal(new URL(page.url()).search, `?address=${encodeURIComponent(OTHER)}`);
    assert.equal(await visible(page, '#banner'), false);
    assert.ok(await visible(page, '#clear'));
  });
  await acheck('no script error and no Content-Security-Policy violation on any page', async () => {
    assert.deepEqual(await page.evaluate(() => window.__csp), []);
    assert.deepEqual(problems, []);
    assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');
  });
  await context.close();

  // ---- with --api-token: the console asks for the token ----------------------------
  await stopChild(mt.child);
  mt = await startMailtrail(path.resolve(bin), redis.port, certDir, ['--api-token', 'secret'], 'mailtrail-token');
  console.log(`# mailtrail with --api-token: api ${mt.api}`);
  await acheck('with --api-token the API answers 401 with WWW-Authenticate: Bearer; the page itself loads', async () => {
    const r = await fetch(`${mt.api}/v1/recipients/${enc}`);
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate') || '', /^Bearer/);
    const ok = await fetch(`${mt.api}/v1/recipients/${enc}`, { headers: { authorization: 'Bearer secret' } });
    assert.equal(ok.status, 200);
    for (const p of ['/', '/app.js', '/app.css']) {
      assert.equal((await fetch(`${mt.api}${p}`)).status, 200, `${p} without a token`);
    }
  });
  const tctx = await browser.newContext({ viewport: { width: 1440, height: 1000 }, locale: 'en-US' });
  const tp = await tctx.newPage();
  const tproblems = [];
  await watchPage(tp, tproblems);
  const auth = [];
  tp.on('request', (r) => { if (r.url().includes('/v1/')) auth.push(r.headers().authorization || null); });
  await tp.goto(`${mt.api}/?address=${enc}`);
  await acheck('the token prompt appears (password field, focused) when the API answers 401', async () => {
    await tp.locator('#token-prompt').waitFor({ state: 'visible', timeout: WAIT_MS });
    assert.equal(await tp.getAttribute('#token', 'type'), 'password');
    assert.equal(await tp.evaluate(() => document.activeElement && document.activeElement.id), 'token');
    assert.equal(await rowsCount(tp), 0);
  });
  await acheck('a wrong token is refused and the prompt asks again', async () => {
    await tp.fill('#token', 'wrong');
    await tp.click('#token-submit');
    await tp.waitForFunction(() => /not accepted/.test(document.getElementById('token-msg').textContent),
      null, { timeout: WAIT_MS });
    assert.ok(await visible(tp, '#token-prompt'));
  });
  await acheck('the right token loads the timeline; it is sent as Bearer and kept in sessionStorage only', async () => {
    await tp.fill('#token', 'secret');
    await tp.click('#token-submit');
    await waitRows(tp, 50);
    assert.equal(await visible(tp, '#token-prompt'), false);
    assert.ok(await visible(tp, '#banner'));
    assert.ok(auth.includes('Bearer secret'));
    assert.ok(auth.includes('Bearer wrong'));
    assert.equal(await tp.evaluate(() => Object.values(sessionStorage).includes('secret')), true);
    assert.equal(await tp.evaluate(() => Object.values(localStorage).includes('secret')), false);
    assert.equal(await tp.evaluate(() => document.cookie), '');
    await tp.click('#older');
    await waitRows(tp, aliceTotal);
    assert.deepEqual(tproblems, []);
  });
  await tctx.close();
  await browser.close();
  browser = null;
  await stopChild(mt.child);
  await stopChild(redis.child);
}

main().then(() => {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}, async (err) => {
  console.log(`# FAILED: ${err && err.stack ? err.stack : err}`);
  for (const [name, lines] of logs) {
    if (!name.startsWith('mailtrail')) continue;
    console.log(`# last output of ${name}:`);
    for (const l of lines.slice(-30)) console.log(`#   ${l}`);
  }
  if (browser) await browser.close().catch(() => {});
  console.log(`${passed} passed, ${failed || 1} failed`);
  process.exit(1);
});
