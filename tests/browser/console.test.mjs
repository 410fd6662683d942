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

//
// The stack and the seeded events come from fixture.mjs (shared with
// firefox.test.mjs).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import {
  ADDRESS, OTHER, XSS_IMG, XSS_SCRIPT, XSS_LINK, WAIT_MS,
  check, acheck, sleep, stopChild, startMailtrail, setBrowser,
  parseArgs, startStack, checkApiAndFiles, run,
} from './fixture.mjs';

const CHROMIUM = process.env.MAILTRAIL_TEST_CHROMIUM || '/usr/bin/chromium';

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
  const { bin, dataDir, outDir } = parseArgs('console.test.mjs');
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: install Debian's chromium package`);

  const { certDir, redis, t0, events, ids, aliceTotal, ...stack } = await startStack(bin, dataDir);
  let { mt } = stack;
  check(`seeded ${events.length} signed SNS notifications through POST /sns (${aliceTotal} for ${ADDRESS})`, () => {});

  // ---- the API and the console's files, as the browser will see them ------------
  const enc = encodeURIComponent(ADDRESS);
  const summary = await checkApiAndFiles(mt.api);

  // ---- the browser -----------------------------------------------------------------
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  setBrowser(browser);
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
  setBrowser(null);
  await stopChild(mt.child);
  await stopChild(redis.child);
}

run(main);
