// Shared set-up of the mailtrail browser tests (console.test.mjs drives
// Debian's Chromium with playwright-core, firefox.test.mjs drives Debian's
// Firefox ESR with puppeteer-core over WebDriver BiDi; both run the checks
// of checks.mjs).
//
// Real pieces only: a redis-server on a free loopback port, the mailtrail
// binary with both listeners on port 0, events seeded through the real
// webhook as SNS Notifications signed with a test key (its certificate sits
// in --cert-cache-dir, so nothing is fetched).  Also the bookkeeping every
// test shares: numbered checks, tracked children that are killed on exit
// (also on failure or a signal), and the final "N passed, N failed" line.

import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const CONSOLE_SRC = path.resolve(HERE, '..', '..', 'src', 'console');
const CERT_NAME = 'SimpleNotificationService-browsertest.pem';
const CERT_URL = `https://sns.us-east-1.amazonaws.com/${CERT_NAME}`;
const TOPIC = 'arn:aws:sns:us-east-1:123456789012:ses-events';
export const ADDRESS = 'alice+test@example.com';
export const OTHER = 'bob@example.org';
export const GONE = 'carol@nxdomain.example';
export const XSS_IMG = '<img src=x onerror="window.__pwned=1">';
export const XSS_SCRIPT = '<script>window.__pwned=1</script>';
export const XSS_LINK = 'javascript:window.__pwned=1';
export const OLD_DELIVERIES = 60;
export const WAIT_MS = 15000;

// ---- bookkeeping: checks, children, clean-up --------------------------------

let passed = 0;
let failed = 0;
const children = new Set();
let tmpRoot = null;
let browser = null; // closed (best effort) on a signal or a failure
const logs = new Map(); // name -> array of output lines

export function check(desc, fn) {
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

export async function acheck(desc, fn) {
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

/* The test's browser, closed (best effort) on a signal or a failure; a
   browser child process given here is also killed, with its process group,
   when this process exits. */
export function setBrowser(b, proc = null) {
  browser = b;
  if (proc && proc.exitCode === null && proc.signalCode === null) {
    const entry = {
      kill: (sig) => {
        try { process.kill(-proc.pid, sig); } catch { /* no group of its own */ }
        proc.kill(sig);
      },
    };
    children.add(entry);
    // Its helpers (content, socket, RDD processes) go with it.
    proc.once('exit', () => {
      children.delete(entry);
      try { process.kill(-proc.pid, 'SIGKILL'); } catch { /* none left */ }
    });
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

export async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await done;
  clearTimeout(t);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

export async function startMailtrail(bin, redisPort, certDir, extra, name) {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('MAILTRAIL_')) delete env[k];
  const args = ['--listen', '127.0.0.1:0', '--api-listen', '127.0.0.1:0',
    '--redis', `redis://127.0.0.1:${redisPort}/0`, '--cert-cache-dir', certDir,
    '--topic', TOPIC, '--message-index', '--log-format', 'json', ...extra];
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

  // A transient bounce whose status means the address is gone (5.4.4):
  // suppressed by the policy (--suppress-statuses' default).  40 days old,
  // so outside every window of the health view.
  const gone = loadSes(dataDir, 'awsdoc-identity-bounce-permanent-general-with-dsn.json');
  gone.bounce.bounceType = 'Transient';
  gone.bounce.bounceSubType = 'General';
  gone.bounce.bouncedRecipients[0].emailAddress = GONE;
  gone.bounce.bouncedRecipients[0].status = '5.4.4';
  gone.bounce.bouncedRecipients[0].diagnosticCode = 'smtp; 550 5.4.4 host not found';
  gone.mail.destination = [GONE];
  gone.mail.messageId = '0000014fgone-0000';
  add('gone', gone, 'bounce', t0 - 40 * 24 * 60 * min);

  // Someone else, newest of all (the recent-events view starts with it).
  const other = loadSes(dataDir, 'awsdoc-identity-delivery.json');
  other.mail.destination = [OTHER];
  other.delivery.recipients = [OTHER];
  add('other', other, 'delivery', t0 + min);
  return out;
}


// ---- the health view's events: two identities with known rates ---------------------
//
// All at one time `when` (one UTC hour and day), posted after the checks of
// the recent-events view (they are the newest events).  What the health
// view must show for them (the contract's rates; status thresholds: bounce
// review 5% pause 10%, complaint review 0.1% pause 0.5%, min volume 100):
//
//   shop.example.net (sourceArn identity): 200 Send (188 at ok.example,
//     12 at gone.example), 150 Delivery, 12 permanent bounces (gone.example)
//     -> sends 200, bounce rate 12/200 = 6% (at risk), complaint rate 0
//   mailer@news.example (email identity, no Send events): 150 Delivery
//     (list.example), 3 permanent bounces (old.example), 1 complaint
//     (list.example) -> sends 150 + 3, bounce rate 3/153 = 1.96%,
//     complaint rate 1/150 = 0.667% (pause risk)
//   a hostile sourceArn identity (markup; not a valid name: "(other)"),
//     one Send and one permanent bounce to a non-ASCII domain ("(other)")
//   a valid but odd identity (ODD_IDENTITY), one Send and one permanent
//     bounce to a valid but odd domain (ODD_DOMAIN)
export const SHOP = 'shop.example.net';
export const NEWS = 'mailer@news.example';
export const XSS_IDENTITY = '<img src=x onerror="window.__pwned=1">';
export const ODD_IDENTITY = 'javascript.alert_1+x@-.-';
export const ODD_DOMAIN = '--odd..domain-';

export function buildHealthEvents(dataDir, when) {
  const out = [];
  let n = 0;
  const mail = (obj, identity, source, destination) => {
    obj.mail.timestamp = isoMs(when - 5000);
    obj.mail.source = source;
    if (identity === null) delete obj.mail.sourceArn;
    else obj.mail.sourceArn = `arn:aws:ses:us-east-1:123456789012:identity/${identity}`;
    obj.mail.messageId = `0000health${String(n++).padStart(4, '0')}-000000`;
    obj.mail.destination = destination;
    delete obj.mail.tags;
    return obj;
  };
  const send = (identity, source, rcpts) => {
    const o = mail(loadSes(dataDir, 'awsdoc-event-send.json'), identity, source, rcpts);
    o.mail.timestamp = isoMs(when);
    out.push({ ses: o, subject: 'Amazon SES Email Event Notification' });
  };
  const delivery = (identity, source, rcpts) => {
    const o = mail(loadSes(dataDir, 'awsdoc-identity-delivery.json'), identity, source, rcpts);
    o.delivery.recipients = rcpts;
    o.delivery.timestamp = isoMs(when);
    out.push({ ses: o });
  };
  const bounce = (identity, source, rcpts) => {
    const o = mail(loadSes(dataDir, 'awsdoc-identity-bounce-permanent-general-with-dsn.json'),
      identity, source, rcpts);
    const tmpl = o.bounce.bouncedRecipients[0];
    o.bounce.bounceType = 'Permanent';
    o.bounce.bounceSubType = 'General';
    o.bounce.bouncedRecipients = rcpts.map((r) => ({ ...tmpl, emailAddress: r }));
    o.bounce.timestamp = isoMs(when);
    out.push({ ses: o });
  };
  const complaint = (identity, source, rcpts) => {
    const o = mail(loadSes(dataDir, 'awsdoc-identity-complaint-with-feedback-report.json'),
      identity, source, rcpts);
    o.complaint.complainedRecipients = rcpts.map((r) => ({ emailAddress: r }));
    o.complaint.timestamp = isoMs(when);
    o.complaint.arrivalDate = isoMs(when);
    out.push({ ses: o });
  };
  const range = (k, f) => Array.from({ length: k }, (_, i) => f(i));

  const ok = range(188, (i) => `customer${i}@ok.example`);
  const gone = range(12, (i) => `gone${i}@gone.example`);
  send(SHOP, `orders@${SHOP}`, [...ok, ...gone]);
  delivery(SHOP, `orders@${SHOP}`, ok.slice(0, 150));
  bounce(SHOP, `orders@${SHOP}`, gone);

  const list = range(150, (i) => `reader${i}@list.example`);
  delivery(NEWS, NEWS, list);
  bounce(NEWS, NEWS, range(3, (i) => `old${i}@old.example`));
  complaint(NEWS, NEWS, [list[0]]);

  const utf8 = ['h0@b\u00fccher.example']; // a domain that is not a valid name: "(other)"
  send(XSS_IDENTITY, 'x@hostile.example', utf8);
  bounce(XSS_IDENTITY, 'x@hostile.example', utf8);

  send(ODD_IDENTITY, 'odd@hostile.example', [`eve@${ODD_DOMAIN}`]);
  bounce(ODD_IDENTITY, 'odd@hostile.example', [`eve@${ODD_DOMAIN}`]);
  return out;
}

// ---- the stack: redis, mailtrail, seeded events -------------------------------------

/* Checks the arguments and the tools every test needs; returns them. */
export function parseArgs(script) {
  const [bin, dataDir, outDir] = process.argv.slice(2);
  if (!bin || !dataDir || !outDir) {
    console.error(`usage: ${script} MAILTRAIL_BINARY TESTS_DATA_DIR OUTPUT_DIR`);
    process.exit(2);
  }
  fs.mkdirSync(outDir, { recursive: true });
  for (const tool of ['redis-server', 'openssl']) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }); } catch {
      throw new Error(`required command ${tool} not found (never skipped: install it)`);
    }
  }
  return { bin, dataDir, outDir };
}

/* A fresh temporary directory (removed on exit unless MAILTRAIL_TEST_KEEP),
   the signing certificate, redis-server and mailtrail; then every event of
   buildEvents posted through the real webhook.  Returns what the checks
   need; the "seeded" check itself is the caller's. */
export async function startStack(bin, dataDir) {
  tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'mailtrail-browser-'));
  const certDir = path.join(tmpRoot, 'certs');
  const redisDir = path.join(tmpRoot, 'redis');
  fs.mkdirSync(certDir);
  fs.mkdirSync(redisDir);

  const { keyPem, created } = makeSigningCert(tmpRoot, certDir);
  const redis = await startRedis(redisDir);
  console.log(`# redis-server on 127.0.0.1:${redis.port}`);
  const mt = await startMailtrail(path.resolve(bin), redis.port, certDir, [], 'mailtrail');
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
  const aliceTotal = events.filter((e) => e.key !== 'other' && e.key !== 'gone').length;
  /* Posts more SES messages ([{ses, subject, version}]) as signed SNS
     notifications through the webhook at hook; each must be stored. */
  const seed = async (hook, list) => {
    for (const e of list) {
      const msg = snsNotification(JSON.stringify(e.ses), keyPem, { subject: e.subject, version: e.version });
      const ans = await postSns(hook, msg);
      assert.equal(ans.status, 'stored', `${e.ses.mail.messageId}: ${JSON.stringify(ans)}`);
    }
  };
  return { tmpRoot, certDir, redis, mt, t0, events, ids, aliceTotal, seed };
}

/* Checks the API summary and the console's files as the browser will see
   them (no browser involved); returns the summary. */
export async function checkApiAndFiles(api) {
  const enc = encodeURIComponent(ADDRESS);
  const summary = await (await fetch(`${api}/v1/recipients/${enc}`)).json();
  check('API summary: suppressed with a reason, counts per type', () => {
    assert.equal(summary.recipient, ADDRESS);
    assert.equal(summary.suppressed, true, JSON.stringify(summary));
    assert.ok(['Bounce/Permanent', 'Complaint'].includes(summary.reason), JSON.stringify(summary));
    assert.deepEqual(summary.counts, { Bounce: 3, Complaint: 1, Delivery: 61, Click: 2, Open: 1, DeliveryDelay: 1 });
  });

  const index = await fetch(`${api}/`);
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
    const r = await fetch(`${api}${p}`);
    const body = await r.text();
    check(`GET ${p} serves src/console/${file} as built into the binary`, () => {
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') || '', type);
      assert.equal(body, fs.readFileSync(path.join(CONSOLE_SRC, file), 'utf8'));
    });
  }
  return summary;
}

/* Runs a test's main(): prints the tally and exits 0 only when every check
   passed; on an exception, the last output of mailtrail too. */
export function run(main) {
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
}
