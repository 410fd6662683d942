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
// The stack and the seeded events come from fixture.mjs, the checks from
// checks.mjs (both shared with firefox.test.mjs); this file launches
// Chromium and adapts playwright-core to the checks' driver.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { chromium } from 'playwright-core';
import { setBrowser, parseArgs, run } from './fixture.mjs';
import { runChecks, VIEWPORT, WAIT_MS } from './checks.mjs';

const CHROMIUM = process.env.MAILTRAIL_TEST_CHROMIUM || '/usr/bin/chromium';

// ---- the checks' driver, over playwright-core ----------------------------------------

function pageDriver(page) {
  return {
    goto: (url) => page.goto(url),
    url: () => page.url(),
    goBack: () => page.goBack(),
    close: () => page.close(),
    click: (sel) => page.click(sel),
    fill: (sel, s) => page.fill(sel, s),
    press: (key) => page.keyboard.press(key),
    select: (sel, v) => page.selectOption(sel, v),
    value: (sel) => page.inputValue(sel),
    text: (sel) => page.locator(sel).textContent(),
    attr: (sel, name) => page.locator(sel).getAttribute(name),
    count: (sel) => page.locator(sel).count(),
    visible: (sel) => page.locator(sel).isVisible(),
    evaluate: (fn, arg) => page.evaluate(fn, arg),
    $$eval: (sel, fn) => page.$$eval(sel, fn),
    waitVisible: (sel) => page.locator(sel).waitFor({ state: 'visible', timeout: WAIT_MS }),
    waitFunction: (fn, arg) => page.waitForFunction(fn, arg, { timeout: WAIT_MS }),
    setViewport: (size) => page.setViewportSize(size),
    screenshot: (file) => page.screenshot({ path: file }),
    onRequest: (cb) => page.on('request', (r) =>
      cb({ url: r.url(), authorization: r.headers().authorization || null })),
    onPageError: (cb) => page.on('pageerror', cb),
    onConsole: (cb) => page.on('console', (m) => cb(m.text())),
    // Registered by the browser itself (not subject to the page's CSP).
    addInitScript: (fn) => page.addInitScript(fn),
  };
}

async function launch() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  setBrowser(browser);
  return {
    caps: { firefoxBidi: false, typesKeys: false, apiTokenHttp: true },
    async newContext() {
      const context = await browser.newContext({
        viewport: VIEWPORT,
        locale: 'en-US',
        timezoneId: 'America/New_York',
      });
      return {
        newPage: async () => pageDriver(await context.newPage()),
        close: () => context.close(),
      };
    },
    async close() {
      await browser.close();
      setBrowser(null);
    },
  };
}

run(async () => {
  const args = parseArgs('console.test.mjs');
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: install Debian's chromium package`);
  await runChecks({ ...args, shotName: 'console.png', launch });
});
