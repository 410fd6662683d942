// The checks of the mailtrail support console, written once for every
// browser: console.test.mjs runs them in Debian's Chromium (playwright-core),
// firefox.test.mjs in Debian's Firefox ESR (puppeteer-core over WebDriver
// BiDi).  The stack and the seeded events come from fixture.mjs.
//
// The checks talk to the browser only through a small driver, which each
// test makes from its own library:
//
//   driver.caps      what differs on purpose between the two tests:
//     firefoxBidi      the browser must be Firefox over WebDriver BiDi
//                      (its own check, with driver.version, driver.protocol)
//     typesKeys        text goes into fields key by key, as a person types,
//                      and the token form is sent with Enter (else: fill,
//                      and a click on the button)
//     apiTokenHttp     also check the --api-token HTTP answers (no browser
//                      involved, so one test is enough)
//   driver.newContext() -> { newPage(), close() }   a fresh browser context,
//                      1440x1000, en-US, America/New_York
//   driver.close()     closes the browser
//
//   page.goto(url)  page.url()  page.goBack()  page.close()
//   page.click(sel)  page.fill(sel, text)  page.press(key)
//   page.select(sel, value)  page.value(sel)
//   page.text(sel)  page.attr(sel, name)  page.count(sel)  page.visible(sel)
//   page.evaluate(fn, arg)  page.$$eval(sel, fn)
//   page.waitVisible(sel)  page.waitFunction(fn, arg)     (WAIT_MS at most)
//   page.setViewport({ width, height })  page.screenshot(file)
//   page.onRequest(({ url, authorization }) => ...)
//   page.onPageError((err) => ...)  page.onConsole((text) => ...)
//   page.addInitScript(fn)           runs in every document before its own

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  ADDRESS, OTHER, GONE, XSS_IMG, XSS_SCRIPT, XSS_LINK, WAIT_MS,
  SHOP, NEWS, XSS_IDENTITY, ODD_IDENTITY, ODD_DOMAIN, buildHealthEvents,
  check, acheck, sleep, stopChild, startMailtrail,
  startStack, checkApiAndFiles,
} from './fixture.mjs';

// mailtrail refuses tokens under 16 characters (and placeholders).
const API_TOKEN = 'browser-check-7f3a9c21d4e8b605';

export { WAIT_MS };
export const VIEWPORT = { width: 1440, height: 1000 };

// ---- page helpers (any driver) -------------------------------------------------------

/* A new page of ctx whose script errors and CSP complaints go to problems;
   the securitypolicyviolation listener is the browser's own preload (not
   subject to the page's CSP). */
async function openPage(ctx, problems) {
  const page = await ctx.newPage();
  page.onPageError((e) => problems.push(`page error: ${e && e.message ? e.message : e}`));
  page.onConsole((t) => {
    if (/Content[- ]Security[- ]Policy|Refused to/i.test(t)) problems.push(`CSP: ${t}`);
  });
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return page;
}

async function waitRows(page, n, table = '#timeline') {
  await page.waitFunction(([sel, want]) =>
    document.querySelectorAll(`${sel} tbody tr`).length === want, [table, n]);
}

async function rowIds(page, table = '#timeline') {
  return page.$$eval(`${table} tbody tr`, (trs) => trs.map((tr) => tr.getAttribute('data-id')));
}

async function rowTimes(page, table = '#timeline') {
  return page.$$eval(`${table} tbody tr time`, (ts) => ts.map((t) => Date.parse(t.getAttribute('datetime'))));
}

async function fieldText(page, id, field) {
  return page.text(`#timeline tbody tr[data-id="${id}"] dd[data-field="${field}"]`);
}

async function explainText(page, id) {
  return page.text(`#timeline tbody tr[data-id="${id}"] .explain`);
}

// ---- the sending health view ----------------------------------------------------------

const DAY = 24 * 3600 * 1000;
const HOUR = 3600 * 1000;
const near = (a, b) => typeof a === 'number' && Math.abs(a - b) < 1e-9;

/* One rate chart as drawn: its kind, threshold lines and dots. */
function readRateChart(page, box) {
  return page.evaluate((sel) => {
    const svg = document.querySelector(`${sel} svg`);
    if (!svg) return null;
    return {
      kind: svg.getAttribute('data-kind'),
      label: svg.getAttribute('aria-label'),
      thresholds: Array.from(svg.querySelectorAll('[data-threshold]')).map((g) => [
        g.getAttribute('data-threshold'), Number(g.getAttribute('data-value')),
        g.querySelector('text').textContent, g.querySelectorAll('line').length]),
      dots: Array.from(svg.querySelectorAll('.rate-dot')).map((c) => ({
        time: Number(c.getAttribute('data-time')), rate: Number(c.getAttribute('data-rate')),
        cls: c.getAttribute('class'), title: c.querySelector('title').textContent })),
      line: svg.querySelectorAll('path.rate-line').length,
    };
  }, box);
}

/* The identity table as shown: name, status and per window [sends, bounce
   rate, complaint rate, window status]. */
function readHealthTable(page) {
  return page.$$eval('#health-table tbody tr', (trs) => trs.map((tr) => ({
    name: tr.getAttribute('data-name'),
    shown: tr.querySelector('th').firstChild.textContent,
    link: tr.querySelector('th a') ? tr.querySelector('th a').getAttribute('href') : null,
    status: tr.querySelector('.col-hstatus .badge').textContent,
    selected: tr.getAttribute('aria-current') === 'true',
    w: Object.fromEntries(Array.from(tr.querySelectorAll('td[data-window]')).map((td) => [
      td.getAttribute('data-window'),
      [td.querySelector('.win-sends').textContent, td.querySelector('.rate-bounce').textContent,
        td.querySelector('.rate-complaint').textContent, td.querySelector('.badge').textContent,
        td.querySelector('.rate-bounce').className.replace(/^rate rate-bounce ?/, '')]])),
  })));
}

function readDomains(page, id) {
  return page.$$eval(`#${id} tbody tr`, (trs) => trs.map((tr) => ({
    domain: tr.getAttribute('data-domain'),
    cells: Array.from(tr.querySelectorAll('td')).map((td) => td.textContent),
    link: tr.querySelector('a') ? tr.querySelector('a').getAttribute('href') : null,
  })));
}

/* Waits until the detail shows name with its charts drawn. */
async function waitDetail(page, name, dots = 1) {
  await page.waitFunction(([n, k]) => {
    const svg = document.querySelector('#chart-bounce svg');
    return document.getElementById('health-name').textContent === n && svg &&
      svg.querySelectorAll('.rate-dot').length === k &&
      document.querySelector('#chart-counts svg') !== null;
  }, [name, dots]);
}

/* The health view over the events of buildHealthEvents (its comment has
   the hand-computed figures), seeded now through the real webhook; first
   the empty state, from a second mailtrail on another key prefix. */
async function healthChecks({ page, context, problems, apiRequests, mt, redis, certDir, bin, seed, dataDir, outDir, shotName }) {
  const empty = await startMailtrail(path.resolve(bin), redis.port, certDir,
    ['--redis-prefix', 'mailtrail-empty:'], 'mailtrail-empty');
  await acheck('health view with nothing counted yet: says so, no table, no charts', async () => {
    const p = await openPage(context, problems);
    await p.goto(`${empty.api}/?view=health`);
    await p.waitVisible('#health-empty');
    assert.match(await p.text('#health-empty'), /No events counted yet/);
    assert.equal(await p.visible('#health-table'), false);
    assert.equal(await p.visible('#health-detail'), false);
    assert.equal(await p.visible('#health-domains'), false);
    await p.close();
  });
  await stopChild(empty.child);

  const when = Date.now() - 2 * 60 * 1000;
  const day = Math.floor(when / DAY) * DAY;
  const hour = Math.floor(when / HOUR) * HOUR;
  const healthEvents = buildHealthEvents(dataDir, when);
  await seed(mt.hook, healthEvents);
  check(`seeded ${healthEvents.length} more signed SNS notifications for the health view (two identities, a hostile and an odd one)`, () => {});

  const hb = await (await fetch(`${mt.api}/v1/health`)).json();
  check('API: /v1/health has the hand-computed rates and status of both identities, the worst first', () => {
    const by = Object.fromEntries(hb.items.map((i) => [i.name, i]));
    assert.deepEqual(hb.items.slice(0, 2).map((i) => i.name), [NEWS, SHOP], JSON.stringify(hb.items.map((i) => i.name)));
    for (const w of ['24h', '7d', '30d']) {
      const s = by[SHOP].windows[w];
      assert.equal(s.sends, 200, w);
      assert.ok(near(s.bounce_rate, 12 / 200), `${w} ${s.bounce_rate}`);
      assert.equal(s.complaint_rate, 0, w);
      assert.equal(s.status, 'at_risk', w);
      const n = by[NEWS].windows[w];
      assert.equal(n.sends, 153, w);
      assert.ok(Math.abs(n.bounce_rate - 3 / 153) < 1e-6, `${w} ${n.bounce_rate}`);
      assert.ok(Math.abs(n.complaint_rate - 1 / 150) < 1e-6, `${w} ${n.complaint_rate}`);
      assert.equal(n.status, 'pause_risk', w);
    }
    assert.ok(by['(other)'], 'the hostile identity is counted as (other)');
    assert.ok(by[ODD_IDENTITY], 'the odd identity is its own name');
    assert.ok(!hb.items.some((i) => /[<>"]/.test(i.name)), JSON.stringify(hb.items.map((i) => i.name)));
  });

  await page.goto(`${mt.api}/`);
  await page.waitVisible('#recent');
  await acheck('the "Sending health" tab shows the identities, the worst first, with status and 24h/7d/30d rates', async () => {
    await page.click('#nav-health');
    await page.waitFunction(() => document.querySelectorAll('#health-table tbody tr').length > 0 &&
      !document.getElementById('health-table').hidden);
    assert.equal(new URL(page.url()).search, '?view=health');
    assert.equal(await page.attr('#nav-health', 'aria-current'), 'page');
    const rows = await readHealthTable(page);
    assert.deepEqual(rows.slice(0, 2).map((r) => [r.name, r.status]), [[NEWS, 'Pause risk'], [SHOP, 'At risk']]);
    const odd = rows.find((r) => r.name === ODD_IDENTITY);
    for (const w of ['24h', '7d', '30d']) {
      assert.deepEqual(rows[0].w[w], ['153 sends', '1.96%', '0.667%', 'Pause risk', ''], w);
      assert.deepEqual(rows[1].w[w], ['200 sends', '6.00%', '0%', 'At risk', 'over-review'], w);
      // 1 bounce of 1 send: 100%, shown but not marked (too few sends to judge)
      assert.deepEqual(odd.w[w], ['1 send', '100.0%', '0%', 'Low volume', 'not-judged'], w);
    }
    assert.match(await page.text('#health-about'), /representative volume/);
    assert.match(await page.text('#health-volume'), /fewer than 100 sends/);
  });
  await acheck('the worst identity is shown first: rate charts with the SES review and pause levels as labelled lines, events per day stacked', async () => {
    await waitDetail(page, NEWS);
    assert.equal((await readHealthTable(page))[0].selected, true);
    const b = await readRateChart(page, '#chart-bounce');
    assert.equal(b.kind, 'bounce');
    assert.deepEqual(b.thresholds, [['review', 0.05, 'SES review 5%', 1], ['pause', 0.1, 'SES pause 10%', 1]]);
    assert.equal(b.dots.length, 1, 'one day with sends');
    assert.equal(b.dots[0].time, day);
    assert.ok(Math.abs(b.dots[0].rate - 3 / 153) < 1e-6, String(b.dots[0].rate));
    assert.match(b.dots[0].title, /1\.96% \(3 hard bounces of 153 sends\)/);
    const c = await readRateChart(page, '#chart-complaint');
    assert.deepEqual(c.thresholds, [['review', 0.001, 'SES review 0.1%', 1], ['pause', 0.005, 'SES pause 0.5%', 1]]);
    assert.equal(c.dots.length, 1);
    assert.ok(Math.abs(c.dots[0].rate - 1 / 150) < 1e-6, String(c.dots[0].rate));
    assert.match(c.dots[0].cls, /over-pause/);
    assert.match(c.dots[0].title, /0\.667% \(1 complaint of 150 sends\)/);
    const legend = await page.$$eval('#counts-legend li', (lis) => lis.map((li) =>
      [li.getAttribute('data-type'), Number(li.getAttribute('data-count'))]));
    assert.deepEqual(legend, [['Bounce/Permanent', 3], ['Complaint', 1], ['Delivery', 150]]);
    const bars = await page.$$eval('#chart-counts svg .bar', (gs) => gs.map((g) => ({
      time: Number(g.getAttribute('data-time')),
      segs: Array.from(g.querySelectorAll('rect')).map((r) => [r.getAttribute('data-type'),
        Number(r.getAttribute('data-count')), Number(r.getAttribute('y')), Number(r.getAttribute('height'))]),
    })));
    assert.equal(bars.length, 30, '30 days');
    assert.equal(bars[29].time - bars[0].time, 29 * DAY);
    const full = bars.filter((x) => x.segs.length);
    assert.equal(full.length, 1);
    assert.equal(full[0].time, day);
    assert.deepEqual(full[0].segs.map((s) => [s[0], s[1]]), [['Bounce/Permanent', 3], ['Complaint', 1], ['Delivery', 150]]);
    const segs = full[0].segs;
    for (let i = 1; i < segs.length; i++) {
      assert.ok(Math.abs(segs[i][2] + segs[i][3] - segs[i - 1][2]) < 0.05, `stacked: ${JSON.stringify(segs)}`);
      assert.ok(Math.abs(segs[i][3] / segs[0][3] - segs[i][1] / segs[0][1]) < 0.02, `heights by count: ${JSON.stringify(segs)}`);
    }
  });
  await acheck('choosing another identity shows its charts; the URL is a deep link to it', async () => {
    await page.click('#health-table tbody tr:nth-child(2) .identity-link');
    await waitDetail(page, SHOP);
    assert.equal(new URL(page.url()).search, `?view=health&name=${SHOP}`);
    assert.equal((await readHealthTable(page))[1].selected, true);
    assert.equal((await page.text('#health-status')).trim(), 'At risk');
    const b = await readRateChart(page, '#chart-bounce');
    assert.ok(near(b.dots[0].rate, 0.06), String(b.dots[0].rate));
    assert.match(b.dots[0].cls, /over-review/);
    assert.doesNotMatch(b.dots[0].cls, /over-pause/);
    const c = await readRateChart(page, '#chart-complaint');
    assert.equal(c.dots[0].rate, 0);
    const legend = await page.$$eval('#counts-legend li', (lis) => lis.map((li) =>
      [li.getAttribute('data-type'), Number(li.getAttribute('data-count'))]));
    assert.deepEqual(legend, [['Bounce/Permanent', 12], ['Delivery', 150], ['Send', 200]]);
  });
  await acheck('rates per hour over 48 hours: 48 buckets, the events in their hour; the bars stay per day', async () => {
    await page.select('#health-range', '48h');
    await page.waitFunction(() => {
      const svg = document.querySelector('#chart-bounce svg');
      return svg && /48 hours/.test(svg.getAttribute('aria-label')) && svg.querySelectorAll('.rate-dot').length === 1;
    });
    const b = await readRateChart(page, '#chart-bounce');
    assert.equal(b.dots[0].time, hour);
    assert.ok(near(b.dots[0].rate, 0.06));
    assert.ok(apiRequests.some((u) => u.includes('/v1/health/series?') && u.includes('step=hour')), 'step=hour asked');
    assert.equal(await page.count('#chart-counts svg .bar'), 30);
  });
  await acheck('recipient domains ranked by bounces and by complaints; "(other)" is text, the odd domain a link', async () => {
    await page.waitFunction(() => document.querySelectorAll('#domains-bounces tbody tr').length > 0);
    const b = await readDomains(page, 'domains-bounces');
    assert.deepEqual(b[0], { domain: 'gone.example', cells: ['12', '12', '100.0%'], link: '?domain=gone.example' });
    const by = Object.fromEntries(b.map((r) => [r.domain, r]));
    assert.deepEqual(by['old.example'].cells, ['3', '3', '100.0%'], 'no Send events: sends = deliveries + bounces');
    assert.equal(by[ODD_DOMAIN].link, `?domain=${encodeURIComponent(ODD_DOMAIN)}`);
    assert.ok(by['(other)'], JSON.stringify(b));
    assert.equal(by['(other)'].link, null);
    const c = await readDomains(page, 'domains-complaints');
    const list = c.find((r) => r.domain === 'list.example');
    assert.deepEqual(list, { domain: 'list.example', cells: ['1', '150', '0.667%'], link: '?domain=list.example' });
    assert.ok(apiRequests.some((u) => u.includes('/v1/health/domains?window=7d&by=complaints')));
  });
  await acheck('a domain opens its recipients\' newest events (/v1/events?domain=); Back returns to the health view', async () => {
    await page.click('#domains-bounces tbody tr:first-child a');
    await waitRows(page, 24, '#recent-table');
    assert.equal(new URL(page.url()).search, '?domain=gone.example');
    assert.match(await page.text('#recent-caption'), /recipients at gone\.example/);
    const got = await page.$$eval('#recent-table tbody tr', (trs) => trs.map((tr) =>
      [tr.querySelector('.col-rcpt').textContent, tr.getAttribute('data-type')]));
    assert.ok(got.every(([r]) => r.endsWith('@gone.example')), JSON.stringify(got));
    assert.equal(got.filter(([, t]) => t === 'Bounce').length, 12);
    assert.equal(got.filter(([, t]) => t === 'Send').length, 12);
    assert.ok(apiRequests.some((u) => u.includes('/v1/events?') && u.includes('domain=gone.example')));
    assert.equal(await page.visible('#health'), false);
    await page.goBack();
    await waitDetail(page, SHOP);
    assert.equal(new URL(page.url()).search, `?view=health&name=${SHOP}`);
  });
  await acheck('hostile names stay text: markup is "(other)"; the odd identity loads through its encoded link', async () => {
    const rows = await readHealthTable(page);
    const by = Object.fromEntries(rows.map((r) => [r.name, r]));
    assert.ok(by['(other)'] && by['(other)'].shown === '(other)', JSON.stringify(rows.map((r) => r.name)));
    assert.equal(by[ODD_IDENTITY].shown, ODD_IDENTITY);
    assert.equal(by[ODD_IDENTITY].link, `?view=health&name=${encodeURIComponent(ODD_IDENTITY)}`);
    assert.equal(await page.count('#health img, #health script, #health iframe, #health foreignObject'), 0);
    await page.click(`#health-table tbody tr:nth-child(${rows.indexOf(by[ODD_IDENTITY]) + 1}) .identity-link`);
    await waitDetail(page, ODD_IDENTITY);
    assert.equal(await page.visible('#health-series-error'), false);
    const b = await readRateChart(page, '#chart-bounce');
    assert.equal(b.dots[0].rate, 1);
    assert.match(b.dots[0].cls, /over-pause/);
    await page.click(`#health-table tbody tr:nth-child(${rows.indexOf(by['(other)']) + 1}) .identity-link`);
    await waitDetail(page, '(other)');
    assert.equal((await readRateChart(page, '#chart-bounce')).dots[0].rate, 1);
    await sleep(300);
    assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');
  });
  await acheck('a deep link naming markup as the identity shows it as text and asks the API nothing for it', async () => {
    const p = await openPage(context, problems);
    const reqs = [];
    p.onRequest((r) => reqs.push(r.url));
    await p.goto(`${mt.api}/?view=health&name=${encodeURIComponent(XSS_IDENTITY)}`);
    await p.waitVisible('#health-series-error');
    assert.equal(await p.text('#health-name'), XSS_IDENTITY);
    assert.match(await p.text('#health-series-error'), /is not an identity name/);
    assert.equal(reqs.filter((u) => u.includes('/v1/health/series')).length, 0, reqs.join(' '));
    assert.equal(await p.count('#health img, #health script'), 0);
    await sleep(300);
    assert.equal(await p.evaluate(() => typeof window.__pwned), 'undefined');
    await p.close();
  });

  // A laptop screen: 1366 px wide.
  await page.setViewport({ width: 1366, height: 768 });
  await page.goto(`${mt.api}/?view=health&name=${SHOP}`);
  await waitDetail(page, SHOP);
  await page.waitFunction(() => document.querySelectorAll('#domains-bounces tbody tr').length > 0);
  await acheck('readable at 1366x768: no sideways scrolling, the two rate charts side by side, text at least 10 px', async () => {
    const m = await page.evaluate(() => {
      const r = (s) => {
        const b = document.querySelector(s).getBoundingClientRect();
        return { top: b.top, width: b.width }; // plain numbers: a DOMRect does not cross BiDi
      };
      const label = document.querySelector('#chart-bounce svg .axis-label').getBoundingClientRect();
      return { scroll: document.documentElement.scrollWidth, b: r('#chart-bounce svg'),
        c: r('#chart-complaint svg'), n: r('#chart-counts svg'), label: label.height };
    });
    assert.ok(m.scroll <= 1366, `page ${m.scroll} px wide`);
    assert.ok(m.b.width >= 500 && m.c.width >= 500, `${m.b.width} ${m.c.width}`);
    assert.equal(Math.round(m.b.top), Math.round(m.c.top), 'side by side');
    assert.ok(m.n.width >= 1000, `counts chart ${m.n.width}`);
    assert.ok(m.label >= 10, `axis label ${m.label} px high`);
  });
  const shot = path.join(outDir, shotName.replace(/\.png$/, '-health.png'));
  const tall = await page.evaluate(() => document.documentElement.scrollHeight);
  await page.setViewport({ width: 1366, height: tall });
  await page.screenshot(shot);
  await page.setViewport(VIEWPORT);
  check(`screenshot of the health view (1366 px wide) saved to ${shot}`, () => {
    const png = fs.readFileSync(shot);
    assert.ok(png.length > 10000, `${png.length} bytes`);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.equal(png.readUInt32BE(16), 1366, 'width');
  });
}

// ---- the checks ------------------------------------------------------------------------

/* The whole test: the stack, the checks without a browser, then
   launch({ tmpRoot }) -> driver and every check in it; the screenshot goes
   to outDir/shotName. */
export async function runChecks({ bin, dataDir, outDir, shotName, launch }) {
  const { tmpRoot, certDir, redis, t0, events, ids, aliceTotal, seed, ...stack } = await startStack(bin, dataDir);
  let { mt } = stack;
  check(`seeded ${events.length} signed SNS notifications through POST /sns (${aliceTotal} for ${ADDRESS})`, () => {});

  // ---- the API and the console's files, as the browser will see them ------------
  const enc = encodeURIComponent(ADDRESS);
  const summary = await checkApiAndFiles(mt.api);

  // ---- the browser -----------------------------------------------------------------
  const d = await launch({ tmpRoot });
  if (d.caps.firefoxBidi) {
    check('the browser is Firefox, driven over WebDriver BiDi', () => {
      assert.match(d.version, /^firefox\//i, d.version);
      assert.equal(d.protocol, 'webDriverBiDi');
    });
  }

  const context = await d.newContext();
  const problems = [];
  const page = await openPage(context, problems);
  const apiRequests = [];
  page.onRequest((r) => apiRequests.push(r.url));

  await page.goto(`${mt.api}/`);
  await acheck('with no address the console shows the recent-events view (GET /v1/events)', async () => {
    await page.waitVisible('#recent');
    await waitRows(page, 50, '#recent-table');
    const rids = await rowIds(page, '#recent-table');
    assert.equal(rids[0], ids.other, 'newest event first');
    assert.equal((await page.text('#recent-table tbody tr:first-child .col-rcpt')).trim(), OTHER);
    assert.ok(await page.visible('#recent-older'));
    assert.equal(await page.visible('#timeline-section'), false);
  });
  await acheck('recent view pages to older events without duplicates', async () => {
    await page.click('#recent-older');
    await waitRows(page, events.length, '#recent-table');
    const rids = await rowIds(page, '#recent-table');
    assert.equal(new Set(rids).size, rids.length);
  });

  await acheck(d.caps.typesKeys
    ? 'typing the address and pressing Search shows its timeline, newest first'
    : 'searching the address shows its timeline, newest first', async () => {
    await page.fill('#address', ADDRESS);
    assert.equal(await page.value('#address'), ADDRESS);
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
    assert.equal(await page.visible('#recent'), false);
  });

  await acheck('bounce row: badge, type/subtype, status, diagnostic code, reporting MTA, sender, message id', async () => {
    const row = `#timeline tbody tr[data-id="${ids.bounce}"]`;
    assert.equal((await page.text(`${row} .badge`)).trim(), 'Bounce');
    assert.match(await page.attr(`${row} .badge`, 'class'), /badge-bounce/);
    assert.equal(await fieldText(page, ids.bounce, 'bounceType'), 'Permanent');
    assert.equal(await fieldText(page, ids.bounce, 'bounceSubType'), 'General');
    assert.equal(await fieldText(page, ids.bounce, 'status'), '5.1.1');
    assert.equal(await fieldText(page, ids.bounce, 'action'), 'failed');
    assert.equal(await fieldText(page, ids.bounce, 'diagnosticCode'),
      'smtp; 550 5.1.1 <alice+test@example.com>... User unknown');
    assert.equal(await fieldText(page, ids.bounce, 'reportingMTA'), 'dns; email.example.com');
    assert.equal((await page.text(`${row} .col-sender`)).trim(), 'john@example.com');
    assert.equal((await page.text(`${row} .col-msgid`)).trim(),
      '00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000');
  });
  await acheck('time shown in UTC and in the viewer\'s local time', async () => {
    const cell = `#timeline tbody tr[data-id="${ids.bounce}"] .col-time`;
    const utc = (await page.text(`${cell} .utc`)).trim();
    const t = new Date(t0 - 60 * 60 * 1000);
    assert.equal(utc, t.toISOString().replace('T', ' ').replace('Z', ' UTC'));
    const local = (await page.text(`${cell} .local`)).trim();
    assert.match(local, /E[SD]T/, `local time in America/New_York: ${local}`);
  });
  await acheck('plain-language explanations: bounce, soft bounce, complaint, delay', async () => {
    assert.match(await explainText(page, ids.bounce), /^Permanent \/ General: Hard bounce/);
    assert.match(await explainText(page, ids['xss-script']), /^Transient \/ MailboxFull: .*mailbox is full/);
    assert.match(await explainText(page, ids.complaint), /^abuse: .*spam/);
    assert.match(await explainText(page, ids.delay), /^TransientCommunicationFailure: .*SES keeps trying/);
  });
  await acheck('complaint row: feedback type and reporter; delivery row: SMTP response, processing time', async () => {
    assert.equal((await page.text(`#timeline tbody tr[data-id="${ids.complaint}"] .badge`)).trim(), 'Complaint');
    assert.equal(await fieldText(page, ids.complaint, 'complaintFeedbackType'), 'abuse');
    assert.equal(await fieldText(page, ids.complaint, 'userAgent'), 'AnyCompany Feedback Loop (V0.01)');
    assert.equal((await page.text(`#timeline tbody tr[data-id="${ids.delivery}"] .badge`)).trim(), 'Delivery');
    assert.equal(await fieldText(page, ids.delivery, 'smtpResponse'), '250 ok:  Message 64111812 accepted');
    assert.equal(await fieldText(page, ids.delivery, 'processingTimeMillis'), '546 ms');
    assert.equal(await fieldText(page, ids.delivery, 'reportingMTA'), 'a8-70.smtp-out.amazonses.com');
    assert.equal(await fieldText(page, ids.delay, 'delayType'), 'TransientCommunicationFailure');
    assert.equal(await fieldText(page, ids.open, 'ipAddress'), '192.0.2.1');
    assert.equal(await fieldText(page, ids.click, 'link'), 'https://downloads.example.net/invoice/2026-11.pdf');
  });
  await acheck('suppression banner says why, in plain words; counts per type', async () => {
    assert.ok(await page.visible('#banner'));
    const title = await page.text('#banner-title');
    const btext = await page.text('#banner-text');
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
    assert.equal(await page.count('#timeline img, #timeline script, #timeline iframe'), 0);
    assert.equal(await page.count('#timeline a'), 0, 'links are text, not anchors');
    await sleep(300); // give a would-be onerror handler its chance
    assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');
  });

  // Tall enough to show the summary and the first rows down to the bounces.
  const shot = path.join(outDir, shotName);
  await page.setViewport({ width: 1440, height: 1560 });
  await page.screenshot(shot);
  await page.setViewport(VIEWPORT);
  check(`screenshot saved to ${shot}`, () => {
    const png = fs.readFileSync(shot);
    assert.ok(png.length > 10000, `${png.length} bytes`);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.equal(png.readUInt32BE(16), 1440, 'width');
    assert.equal(png.readUInt32BE(20), 1560, 'height');
  });

  await acheck('"Older events" pages back (next_before): every event exactly once, in order', async () => {
    assert.ok(await page.visible('#older'));
    await page.click('#older');
    await waitRows(page, aliceTotal);
    const all = await rowIds(page);
    assert.equal(new Set(all).size, all.length, 'no duplicate SNS ids');
    const want = events.filter((e) => e.key !== 'other' && e.key !== 'gone').map((e) => ids[e.key]);
    assert.deepEqual(all, want);
    const times = await rowTimes(page);
    for (let i = 1; i < times.length; i++) assert.ok(times[i - 1] >= times[i], 'newest first');
    assert.equal(await page.visible('#older'), false, 'no more pages');
    assert.ok(await page.visible('#end-note'));
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
    const p2 = await openPage(context, problems);
    await p2.goto(deepLink);
    await waitRows(p2, 3);
    assert.deepEqual(await rowIds(p2), [ids.bounce, ids['xss-img'], ids['xss-script']]);
    assert.equal(await p2.value('#address'), ADDRESS);
    assert.equal(await p2.value('#type-filter'), 'Bounce');
    assert.ok(await p2.visible('#banner'));
    assert.equal(await p2.evaluate(() => typeof window.__pwned), 'undefined');
    assert.deepEqual(await p2.evaluate(() => window.__csp), []);
    await p2.close();
  });
  await acheck('hand-written deep link with a literal "+" and mixed case finds the same recipient', async () => {
    const p3 = await openPage(context, problems);
    await p3.goto(`${mt.api}/?address=Alice+Test@Example.com`);
    await waitRows(p3, 50);
    assert.equal((await p3.text('#summary-address')).trim(), ADDRESS);
    assert.equal((await rowIds(p3))[0], ids.complaint);
    await p3.close();
  });

  await acheck('an address never seen shows the empty state', async () => {
    await page.fill('#address', 'nobody@example.com');
    await page.select('#type-filter', '');
    await page.click('#search');
    await page.waitVisible('#empty');
    assert.match(await page.text('#empty'), /never seen/i);
    assert.match(await page.text('#empty'), /nobody@example\.com/);
    assert.equal(await page.visible('#timeline-section'), false);
    assert.equal(await page.visible('#banner'), false);
  });
  await acheck('a transient 5.4.4 bounce suppresses (the policy), and the banner says why in words', async () => {
    const p5 = await openPage(context, problems);
    await p5.goto(`${mt.api}/?address=${encodeURIComponent(GONE)}`);
    await p5.waitVisible('#banner');
    assert.match(await p5.text('#banner-title'), /address is gone/);
    assert.match(await p5.text('#banner-text'), /5\.4\.4/);
    await p5.close();
  });
  await acheck('browser Back returns to the previous view (history.pushState)', async () => {
    await page.goBack();
    await waitRows(page, 3);
    assert.equal(await page.value('#address'), ADDRESS);
    assert.equal(await page.value('#type-filter'), 'Bounce');
  });
  await acheck('an API error (400 for an unknown type) is shown as a message', async () => {
    await page.goto(`${mt.api}/?address=${enc}&type=NoSuchType`);
    await page.waitVisible('#error');
    const t = await page.text('#error');
    assert.match(t, /400/);
    assert.match(t, /type/);
  });
  await acheck('a recipient in the recent view links to its timeline (not suppressed)', async () => {
    await page.goto(`${mt.api}/`);
    await waitRows(page, 50, '#recent-table');
    await page.click('#recent-table tbody tr:first-child .col-rcpt a');
    await waitRows(page, 1);
    assert.equal(new URL(page.url()).search, `?address=${encodeURIComponent(OTHER)}`);
    assert.equal(await page.visible('#banner'), false);
    assert.ok(await page.visible('#clear'));
  });
  // ---- one sent mail, by its SES message id (GET /v1/messages/{id}) ---------------
  // The delivery template's mail went to ADDRESS (delivery) and OTHER
  // (other); the event templates' mail holds ADDRESS's click, open, delay
  // and the hostile click.
  const MAIL = '0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000';
  const EVENT_MAIL = 'EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000';
  const groupRows = (p) => p.$$eval('#message-groups .msg-group', (ss) => ss.map((s) =>
    [s.getAttribute('data-recipient'),
      Array.from(s.querySelectorAll('tbody tr')).map((tr) => tr.getAttribute('data-id'))]));
  const waitGroupRows = (p, n) => p.waitFunction((want) =>
    document.querySelectorAll('#message-groups tbody tr').length === want &&
    !document.getElementById('message-section').hidden, n);
  await acheck('a message id in the search box shows every recipient of that mail, the newest first', async () => {
    await page.fill('#address', MAIL);
    await page.click('#search');
    await waitGroupRows(page, 2);
    assert.deepEqual(await groupRows(page), [[OTHER, [ids.other]], [ADDRESS, [ids.delivery]]]);
    assert.equal((await page.text('#message-id')).trim(), MAIL);
    assert.match(await page.text('#message-count'), /^2 recipients, 2 events/);
    assert.ok(apiRequests.some((u) => u.endsWith(`/v1/messages/${MAIL}`)), apiRequests.join(' '));
    assert.equal(new URL(page.url()).search, `?message=${MAIL}`);
    assert.equal(await page.visible('#timeline-section'), false);
    assert.equal(await page.visible('#summary'), false);
    assert.equal(await page.visible('#recent'), false);
  });
  const messageShot = path.join(outDir, shotName.replace(/\.png$/, '-message.png'));
  await page.screenshot(messageShot);
  check(`screenshot of the message view saved to ${messageShot}`, () => {
    const png = fs.readFileSync(messageShot);
    assert.ok(png.length > 10000, `${png.length} bytes`);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.equal(png.readUInt32BE(16), VIEWPORT.width, 'width');
  });
  await acheck('message view: one recipient\'s events newest first, with the timeline\'s details; markup stays text', async () => {
    await page.fill('#address', ` ${EVENT_MAIL} `);
    await page.click('#search');
    await waitGroupRows(page, 4);
    assert.deepEqual(await groupRows(page),
      [[ADDRESS, ['click', 'open', 'delay', 'xss-link'].map((k) => ids[k])]]);
    const row = (k, f) => page.text(`#message-groups tr[data-id="${ids[k]}"] dd[data-field="${f}"]`);
    assert.equal(await row('xss-link', 'link'), XSS_LINK);
    assert.equal(await row('delay', 'delayType'), 'TransientCommunicationFailure');
    assert.equal(await row('open', 'ipAddress'), '192.0.2.1');
    assert.equal(await page.count('#message-groups img, #message-groups script, #message-groups iframe'), 0);
    const hrefs = await page.$$eval('#message-groups a', (as) => as.map((a) => a.getAttribute('href')));
    assert.deepEqual(hrefs, [`?address=${enc}`], 'the only link is the recipient\'s timeline');
    await sleep(300);
    assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');
  });
  await acheck('the recipient links to its timeline; Back returns to the message', async () => {
    await page.click('#message-groups .msg-group h3 a');
    await waitRows(page, 50);
    assert.equal(new URL(page.url()).search, `?address=${enc}`);
    assert.equal(await page.visible('#message-section'), false);
    await page.goBack();
    await waitGroupRows(page, 4);
    assert.equal(await page.value('#address'), EVENT_MAIL);
  });
  await acheck('a ?message= deep link opens the message view; an unknown id shows the empty state', async () => {
    const p4 = await openPage(context, problems);
    await p4.goto(`${mt.api}/?message=${MAIL}`);
    await waitGroupRows(p4, 2);
    assert.equal(await p4.value('#address'), MAIL);
    await p4.fill('#address', '0100018c00000000-unknown-000000');
    await p4.click('#search');
    await p4.waitVisible('#empty');
    assert.match(await p4.text('#empty'), /0100018c00000000-unknown-000000/);
    assert.equal(await p4.visible('#message-section'), false);
    assert.deepEqual(await p4.evaluate(() => window.__csp), []);
    await p4.close();
  });
  await acheck('what is neither an address nor a message id is refused in the page, not sent', async () => {
    const before = apiRequests.length;
    await page.fill('#address', 'not an id!');
    await page.click('#search');
    await page.waitVisible('#error');
    assert.match(await page.text('#error'), /neither an email address .* nor an SES message id/);
    assert.equal(apiRequests.slice(before).filter((u) => u.includes('/v1/')).length, 0,
      apiRequests.slice(before).join(' '));
  });
  await healthChecks({ page, context, problems, apiRequests, mt, redis, certDir, bin, seed, dataDir, outDir, shotName });
  await acheck('no script error and no Content-Security-Policy violation on any page', async () => {
    assert.deepEqual(await page.evaluate(() => window.__csp), []);
    assert.deepEqual(problems, []);
    assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');
  });
  await context.close();

  // ---- with --api-token: the console asks for the token ----------------------------
  await stopChild(mt.child);
  mt = await startMailtrail(path.resolve(bin), redis.port, certDir, ['--api-token', API_TOKEN], 'mailtrail-token');
  console.log(`# mailtrail with --api-token: api ${mt.api}`);
  if (d.caps.apiTokenHttp) {
    await acheck('with --api-token the API answers 401 with WWW-Authenticate: Bearer; the page itself loads', async () => {
      const r = await fetch(`${mt.api}/v1/recipients/${enc}`);
      assert.equal(r.status, 401);
      assert.match(r.headers.get('www-authenticate') || '', /^Bearer/);
      const ok = await fetch(`${mt.api}/v1/recipients/${enc}`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
      assert.equal(ok.status, 200);
      for (const p of ['/', '/app.js', '/app.css']) {
        assert.equal((await fetch(`${mt.api}${p}`)).status, 200, `${p} without a token`);
      }
    });
  }
  const tctx = await d.newContext();
  const tproblems = [];
  const tp = await openPage(tctx, tproblems);
  const auth = [];
  tp.onRequest((r) => { if (r.url.includes('/v1/')) auth.push(r.authorization); });
  await tp.goto(`${mt.api}/?address=${enc}`);
  await acheck('the token prompt appears (password field, focused) when the API answers 401', async () => {
    await tp.waitVisible('#token-prompt');
    assert.equal(await tp.attr('#token', 'type'), 'password');
    assert.equal(await tp.evaluate(() => document.activeElement && document.activeElement.id), 'token');
    assert.equal(await tp.count('#timeline tbody tr'), 0);
  });
  await acheck('a wrong token is refused and the prompt asks again', async () => {
    await tp.fill('#token', 'wrong');
    await tp.click('#token-submit');
    await tp.waitFunction(() => /not accepted/.test(document.getElementById('token-msg').textContent));
    assert.ok(await tp.visible('#token-prompt'));
  });
  await acheck('the right token loads the timeline; it is sent as Bearer and kept in sessionStorage only', async () => {
    await tp.fill('#token', API_TOKEN);
    if (d.caps.typesKeys) await tp.press('Enter');
    else await tp.click('#token-submit');
    await waitRows(tp, 50);
    assert.equal(await tp.visible('#token-prompt'), false);
    assert.ok(await tp.visible('#banner'));
    assert.ok(auth.includes(`Bearer ${API_TOKEN}`), JSON.stringify(auth));
    assert.ok(auth.includes('Bearer wrong'), JSON.stringify(auth));
    assert.equal(await tp.evaluate((t) => Object.values(sessionStorage).includes(t), API_TOKEN), true);
    assert.equal(await tp.evaluate((t) => Object.values(localStorage).includes(t), API_TOKEN), false);
    assert.equal(await tp.evaluate(() => document.cookie), '');
    await tp.click('#older');
    await waitRows(tp, aliceTotal);
    assert.deepEqual(tproblems, []);
    assert.deepEqual(await tp.evaluate(() => window.__csp), []);
  });
  await acheck('the health view in a new tab asks for the token too, then shows the identities and charts', async () => {
    const hp = await openPage(tctx, tproblems);
    await hp.goto(`${mt.api}/?view=health`);
    await hp.waitVisible('#token-prompt');
    assert.equal(await hp.visible('#health-table'), false);
    await hp.fill('#token', API_TOKEN);
    if (d.caps.typesKeys) await hp.press('Enter');
    else await hp.click('#token-submit');
    await waitDetail(hp, NEWS);
    await hp.waitFunction(() => document.querySelectorAll('#domains-complaints tbody tr').length > 0);
    assert.deepEqual((await readHealthTable(hp)).slice(0, 2).map((r) => r.name), [NEWS, SHOP]);
    assert.equal(await hp.visible('#token-prompt'), false);
    assert.deepEqual(tproblems, []);
    assert.deepEqual(await hp.evaluate(() => window.__csp), []);
    await hp.close();
  });
  await acheck('with Redis gone, the health view shows the API\'s error', async () => {
    await stopChild(redis.child);
    await tp.goto(`${mt.api}/?view=health`);
    await tp.waitVisible('#error');
    assert.match(await tp.text('#error'), /Could not load\. The API answered 5\d\d/);
    assert.equal(await tp.visible('#health-table'), false);
    assert.equal(await tp.visible('#token-prompt'), false);
  });
  await tctx.close();
  await d.close();
  await stopChild(mt.child);
  await stopChild(redis.child);
}
