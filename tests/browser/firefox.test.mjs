// Browser test of the mailtrail support console in Firefox.
//
//   node tests/browser/firefox.test.mjs MAILTRAIL_BINARY TESTS_DATA_DIR OUTPUT_DIR
//
// The same real stack as console.test.mjs (fixture.mjs: redis-server, the
// mailtrail binary, events seeded through the real signed webhook), driven
// in Debian's Firefox ESR (/usr/bin/firefox-esr, headless) by puppeteer-core
// over WebDriver BiDi, Firefox's built-in remote protocol.  No browser is
// ever downloaded.  Every check is printed; the exit status is 0 only when
// all pass.  Every child (Firefox with its content processes, mailtrail,
// redis-server) is killed on exit, also on failure.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import {
  ADDRESS, OTHER, XSS_IMG, XSS_SCRIPT, XSS_LINK, WAIT_MS,
  check, acheck, sleep, stopChild, startMailtrail, setBrowser,
  parseArgs, startStack, checkApiAndFiles, run,
} from './fixture.mjs';

const FIREFOX = process.env.MAILTRAIL_TEST_FIREFOX || '/usr/bin/firefox-esr';
const VIEWPORT = { width: 1440, height: 1000 };

// ---- browser helpers (puppeteer) ----------------------------------------------------

async function newPage(ctx, problems) {
  const page = await ctx.newPage();
  await page.setViewport(VIEWPORT);
  page.on('pageerror', (e) => problems.push(`page error: ${e && e.message ? e.message : e}`));
  page.on('console', (m) => {
    const t = m.text();
    if (/Content[- ]Security[- ]Policy|Refused to/i.test(t)) problems.push(`CSP: ${t}`);
  });
  // A preload script of the browser's own (not subject to the page's CSP).
  await page.evaluateOnNewDocument(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return page;
}

async function waitVisible(page, sel) {
  await page.waitForSelector(sel, { visible: true, timeout: WAIT_MS });
}

async function waitRows(page, n, table = '#timeline') {
  await page.waitForFunction((sel, want) =>
    document.querySelectorAll(`${sel} tbody tr`).length === want,
  { timeout: WAIT_MS, polling: 50 }, table, n);
}

async function rowIds(page, table = '#timeline') {
  return page.$$eval(`${table} tbody tr`, (trs) => trs.map((tr) => tr.getAttribute('data-id')));
}

async function rowTimes(page, table = '#timeline') {
  return page.$$eval(`${table} tbody tr time`, (ts) => ts.map((t) => Date.parse(t.getAttribute('datetime'))));
}

async function text(page, sel) {
  return page.$eval(sel, (el) => el.textContent);
}

async function fieldText(page, id, field) {
  return text(page, `#timeline tbody tr[data-id="${id}"] dd[data-field="${field}"]`);
}

async function explainText(page, id) {
  return text(page, `#timeline tbody tr[data-id="${id}"] .explain`);
}

async function count(page, sel) {
  return page.$$eval(sel, (els) => els.length);
}

async function visible(page, sel) {
  const h = await page.$(sel);
  if (!h) return false;
  try { return await h.isVisible(); } finally { await h.dispose(); }
}

async function value(page, sel) {
  return page.$eval(sel, (el) => el.value);
}

/* Replaces a text field's content by typing, as a person would. */
async function typeInto(page, sel, s) {
  await page.$eval(sel, (el) => { el.value = ''; });
  await page.type(sel, s);
}

// ---- the test ----------------------------------------------------------------------

async function main() {
  const { bin, dataDir, outDir } = parseArgs('firefox.test.mjs');
  assert.ok(fs.existsSync(FIREFOX), `${FIREFOX} not found: install Debian's firefox-esr package`);

  const { tmpRoot, certDir, redis, t0, events, ids, aliceTotal, ...stack } = await startStack(bin, dataDir);
  let { mt } = stack;
  check(`seeded ${events.length} signed SNS notifications through POST /sns (${aliceTotal} for ${ADDRESS})`, () => {});

  const enc = encodeURIComponent(ADDRESS);
  const summary = await checkApiAndFiles(mt.api);

  // ---- the browser -----------------------------------------------------------------
  // Profile and home (caches, dconf) inside the test's temporary directory.
  const profile = path.join(tmpRoot, 'firefox-profile');
  const home = path.join(tmpRoot, 'home');
  fs.mkdirSync(profile);
  fs.mkdirSync(home);
  const started = Date.now();
  const browser = await puppeteer.launch({
    browser: 'firefox',
    protocol: 'webDriverBiDi',
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    defaultViewport: VIEWPORT,
    // The fixture's handlers kill the browser (with its process group).
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
    timeout: 60000,
    env: {
      ...process.env,
      HOME: home,
      XDG_CACHE_HOME: path.join(home, '.cache'),
      XDG_CONFIG_HOME: path.join(home, '.config'),
      TZ: 'America/New_York',
      LANG: 'en_US.UTF-8',
      MOZ_CRASHREPORTER_DISABLE: '1',
    },
    extraPrefsFirefox: {
      'intl.locale.requested': 'en-US',
      'intl.accept_languages': 'en-US, en',
      'intl.regional_prefs.use_os_locales': false,
    },
  });
  setBrowser(browser, browser.process());
  const version = await browser.version();
  console.log(`# ${version} (${FIREFOX}) over WebDriver BiDi, started in ${Date.now() - started} ms`);
  check('the browser is Firefox, driven over WebDriver BiDi', () => {
    assert.match(version, /^firefox\//i, version);
    assert.equal(browser.protocol, 'webDriverBiDi');
  });

  const context = await browser.createBrowserContext();
  const problems = [];
  const page = await newPage(context, problems);
  const apiRequests = [];
  page.on('request', (r) => apiRequests.push(r.url()));

  await page.goto(`${mt.api}/`);
  await acheck('with no address the console shows the recent-events view (GET /v1/events)', async () => {
    await waitVisible(page, '#recent');
    await waitRows(page, 50, '#recent-table');
    const rids = await rowIds(page, '#recent-table');
    assert.equal(rids[0], ids.other, 'newest event first');
    assert.equal((await text(page, '#recent-table tbody tr:first-child .col-rcpt')).trim(), OTHER);
    assert.ok(await visible(page, '#recent-older'));
    assert.equal(await visible(page, '#timeline-section'), false);
  });
  await acheck('recent view pages to older events without duplicates', async () => {
    await page.click('#recent-older');
    await waitRows(page, events.length, '#recent-table');
    const rids = await rowIds(page, '#recent-table');
    assert.equal(new Set(rids).size, rids.length);
  });

  await acheck('typing the address and pressing Search shows its timeline, newest first', async () => {
    await typeInto(page, '#address', ADDRESS);
    assert.equal(await value(page, '#address'), ADDRESS);
    await page.click('#search');
    await waitRows(page, 50);
    const got = await rowIds(page);
    assert.deepEqual(got.slice(0, 9), ['complaint', 'click', 'open', 'delivery', 'delay', 'bounce',
      'xss-img', 'xss-script', 'xss-link'].map((k) => ids[k]));
    const times = await rowTimes(page);
    for (let i = 1; i < times.length; i++) assert.ok(times[i - 1] >= times[i], 'newest first');
    assert.ok(apiRequests.some((u) => u.includes(`/v1/recipients/${enc}/events`)),
      `address URL-encoded with encodeURIComponent in the API path: ${apiRequests.join(' ')}`);
    assert.equal(new URL(page.url()).search, `?address=${enc}`);
    assert.equal(await visible(page, '#recent'), false);
  });

  await acheck('bounce row: badge, type/subtype, status, diagnostic code, reporting MTA, sender, message id', async () => {
    const row = `#timeline tbody tr[data-id="${ids.bounce}"]`;
    assert.equal((await text(page, `${row} .badge`)).trim(), 'Bounce');
    assert.match(await page.$eval(`${row} .badge`, (el) => el.className), /badge-bounce/);
    assert.equal(await fieldText(page, ids.bounce, 'bounceType'), 'Permanent');
    assert.equal(await fieldText(page, ids.bounce, 'bounceSubType'), 'General');
    assert.equal(await fieldText(page, ids.bounce, 'status'), '5.1.1');
    assert.equal(await fieldText(page, ids.bounce, 'action'), 'failed');
    assert.equal(await fieldText(page, ids.bounce, 'diagnosticCode'),
      'smtp; 550 5.1.1 <alice+test@example.com>... User unknown');
    assert.equal(await fieldText(page, ids.bounce, 'reportingMTA'), 'dns; email.example.com');
    assert.equal((await text(page, `${row} .col-sender`)).trim(), 'john@example.com');
    assert.equal((await text(page, `${row} .col-msgid`)).trim(),
      '00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000');
  });
  await acheck('time shown in UTC and in the viewer\'s local time', async () => {
    const cell = `#timeline tbody tr[data-id="${ids.bounce}"] .col-time`;
    const utc = (await text(page, `${cell} .utc`)).trim();
    const d = new Date(t0 - 60 * 60 * 1000);
    assert.equal(utc, d.toISOString().replace('T', ' ').replace('Z', ' UTC'));
    const local = (await text(page, `${cell} .local`)).trim();
    assert.match(local, /E[SD]T/, `local time in America/New_York: ${local}`);
  });
  await acheck('plain-language explanations: bounce, soft bounce, complaint, delay', async () => {
    assert.match(await explainText(page, ids.bounce), /^Permanent \/ General: Hard bounce/);
    assert.match(await explainText(page, ids['xss-script']), /^Transient \/ MailboxFull: .*mailbox is full/);
    assert.match(await explainText(page, ids.complaint), /^abuse: .*spam/);
    assert.match(await explainText(page, ids.delay), /^TransientCommunicationFailure: .*SES keeps trying/);
  });
  await acheck('complaint row: feedback type and reporter; delivery row: SMTP response, processing time', async () => {
    assert.equal((await text(page, `#timeline tbody tr[data-id="${ids.complaint}"] .badge`)).trim(), 'Complaint');
    assert.equal(await fieldText(page, ids.complaint, 'complaintFeedbackType'), 'abuse');
    assert.equal(await fieldText(page, ids.complaint, 'userAgent'), 'AnyCompany Feedback Loop (V0.01)');
    assert.equal((await text(page, `#timeline tbody tr[data-id="${ids.delivery}"] .badge`)).trim(), 'Delivery');
    assert.equal(await fieldText(page, ids.delivery, 'smtpResponse'), '250 ok:  Message 64111812 accepted');
    assert.equal(await fieldText(page, ids.delivery, 'processingTimeMillis'), '546 ms');
    assert.equal(await fieldText(page, ids.delivery, 'reportingMTA'), 'a8-70.smtp-out.amazonses.com');
    assert.equal(await fieldText(page, ids.delay, 'delayType'), 'TransientCommunicationFailure');
    assert.equal(await fieldText(page, ids.open, 'ipAddress'), '192.0.2.1');
    assert.equal(await fieldText(page, ids.click, 'link'), 'https://downloads.example.net/invoice/2026-11.pdf');
  });
  await acheck('suppression banner says why, in plain words; counts per type', async () => {
    assert.ok(await visible(page, '#banner'));
    const title = await text(page, '#banner-title');
    const btext = await text(page, '#banner-text');
    if (summary.reason === 'Complaint') {
      assert.match(title, /complained/);
      assert.match(btext, /spam/);
    } else {
      assert.match(title, /hard-bounced/);
      assert.match(btext, /permanent bounce/);
    }
    const counts = await page.$$eval('#counts li', (lis) => Object.fromEntries(lis.map((li) =>
      [li.getAttribute('data-type'), li.querySelector('.count-n').textContent])));
    assert.deepEqual(counts, { Bounce: '3', Complaint: '1', Delivery: '61', Click: '2', Open: '1', DeliveryDelay: '1' });
  });
  await acheck('markup from remote servers is shown as literal text and never runs', async () => {
    assert.equal(await fieldText(page, ids['xss-img'], 'diagnosticCode'), XSS_IMG);
    assert.equal(await fieldText(page, ids['xss-script'], 'diagnosticCode'), XSS_SCRIPT);
    assert.equal(await fieldText(page, ids['xss-link'], 'link'), XSS_LINK);
    assert.equal(await count(page, '#timeline img, #timeline script, #timeline iframe'), 0);
    assert.equal(await count(page, '#timeline a'), 0, 'links are text, not anchors');
    await sleep(300); // give a would-be onerror handler its chance
    assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');
  });

  // Tall enough to show the summary and the first rows down to the bounces.
  const shot = path.join(outDir, 'firefox.png');
  await page.setViewport({ width: 1440, height: 1560 });
  await page.screenshot({ path: shot });
  await page.setViewport(VIEWPORT);
  check(`screenshot saved to ${shot}`, () => {
    const png = fs.readFileSync(shot);
    assert.ok(png.length > 10000, `${png.length} bytes`);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.equal(png.readUInt32BE(16), 1440, 'width');
    assert.equal(png.readUInt32BE(20), 1560, 'height');
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
    await page.select('#type-filter', 'Bounce');
    await waitRows(page, 3);
    const types = await page.$$eval('#timeline tbody tr', (trs) => trs.map((t) => t.getAttribute('data-type')));
    assert.deepEqual(types, ['Bounce', 'Bounce', 'Bounce']);
    assert.deepEqual(await rowIds(page), [ids.bounce, ids['xss-img'], ids['xss-script']]);
    assert.ok(apiRequests.some((u) => u.includes('type=Bounce')));
    assert.equal(new URL(page.url()).search, `?address=${enc}&type=Bounce`);
  });

  const deepLink = page.url();
  await acheck('deep link opened in a new page shows the same filtered timeline', async () => {
    const p2 = await newPage(context, problems);
    await p2.goto(deepLink);
    await waitRows(p2, 3);
    assert.deepEqual(await rowIds(p2), [ids.bounce, ids['xss-img'], ids['xss-script']]);
    assert.equal(await value(p2, '#address'), ADDRESS);
    assert.equal(await value(p2, '#type-filter'), 'Bounce');
    assert.ok(await visible(p2, '#banner'));
    assert.equal(await p2.evaluate(() => typeof window.__pwned), 'undefined');
    assert.deepEqual(await p2.evaluate(() => window.__csp), []);
    await p2.close();
  });
  await acheck('hand-written deep link with a literal "+" and mixed case finds the same recipient', async () => {
    const p3 = await newPage(context, problems);
    await p3.goto(`${mt.api}/?address=Alice+Test@Example.com`);
    await waitRows(p3, 50);
    assert.equal((await text(p3, '#summary-address')).trim(), ADDRESS);
    assert.equal((await rowIds(p3))[0], ids.complaint);
    await p3.close();
  });

  await acheck('an address never seen shows the empty state', async () => {
    await typeInto(page, '#address', 'nobody@example.com');
    await page.select('#type-filter', '');
    await page.click('#search');
    await waitVisible(page, '#empty');
    assert.match(await text(page, '#empty'), /never seen/i);
    assert.match(await text(page, '#empty'), /nobody@example\.com/);
    assert.equal(await visible(page, '#timeline-section'), false);
    assert.equal(await visible(page, '#banner'), false);
  });
  await acheck('browser Back returns to the previous view (history.pushState)', async () => {
    await page.goBack(); // browsingContext.traverseHistory, as the Back button
    await waitRows(page, 3);
    assert.equal(await value(page, '#address'), ADDRESS);
    assert.equal(await value(page, '#type-filter'), 'Bounce');
  });
  await acheck('an API error (400 for an unknown type) is shown as a message', async () => {
    await page.goto(`${mt.api}/?address=${enc}&type=NoSuchType`);
    await waitVisible(page, '#error');
    const t = await text(page, '#error');
    assert.match(t, /400/);
    assert.match(t, /type/);
  });
  await acheck('a recipient in the recent view links to its timeline (not suppressed)', async () => {
    await page.goto(`${mt.api}/`);
    await waitRows(page, 50, '#recent-table');
    await page.click('#recent-table tbody tr:first-child .col-rcpt a');
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
  const tctx = await browser.createBrowserContext();
  const tproblems = [];
  const tp = await newPage(tctx, tproblems);
  const auth = [];
  tp.on('request', (r) => {
    if (!r.url().includes('/v1/')) return;
    const h = r.headers();
    auth.push(h.authorization || h.Authorization || null);
  });
  await tp.goto(`${mt.api}/?address=${enc}`);
  await acheck('the token prompt appears (password field, focused) when the API answers 401', async () => {
    await waitVisible(tp, '#token-prompt');
    assert.equal(await tp.$eval('#token', (el) => el.getAttribute('type')), 'password');
    assert.equal(await tp.evaluate(() => document.activeElement && document.activeElement.id), 'token');
    assert.equal(await count(tp, '#timeline tbody tr'), 0);
  });
  await acheck('a wrong token is refused and the prompt asks again', async () => {
    await typeInto(tp, '#token', 'wrong');
    await tp.click('#token-submit');
    await tp.waitForFunction(() => /not accepted/.test(document.getElementById('token-msg').textContent),
      { timeout: WAIT_MS, polling: 50 });
    assert.ok(await visible(tp, '#token-prompt'));
  });
  await acheck('the right token loads the timeline; it is sent as Bearer and kept in sessionStorage only', async () => {
    await typeInto(tp, '#token', 'secret');
    await tp.keyboard.press('Enter');
    await waitRows(tp, 50);
    assert.equal(await visible(tp, '#token-prompt'), false);
    assert.ok(await visible(tp, '#banner'));
    assert.ok(auth.includes('Bearer secret'), JSON.stringify(auth));
    assert.ok(auth.includes('Bearer wrong'), JSON.stringify(auth));
    assert.equal(await tp.evaluate(() => Object.values(sessionStorage).includes('secret')), true);
    assert.equal(await tp.evaluate(() => Object.values(localStorage).includes('secret')), false);
    assert.equal(await tp.evaluate(() => document.cookie), '');
    await tp.click('#older');
    await waitRows(tp, aliceTotal);
    assert.deepEqual(tproblems, []);
    assert.deepEqual(await tp.evaluate(() => window.__csp), []);
  });
  await tctx.close();
  await browser.close();
  setBrowser(null);
  await stopChild(mt.child);
  await stopChild(redis.child);
}

run(main);
