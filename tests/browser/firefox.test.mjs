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
//
// The checks come from checks.mjs (shared with console.test.mjs); this file
// launches Firefox and adapts puppeteer-core to the checks' driver.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import { setBrowser, parseArgs, run } from './fixture.mjs';
import { runChecks, VIEWPORT, WAIT_MS } from './checks.mjs';

const FIREFOX = process.env.MAILTRAIL_TEST_FIREFOX || '/usr/bin/firefox-esr';

// ---- the checks' driver, over puppeteer-core -----------------------------------------

function pageDriver(page) {
  return {
    goto: (url) => page.goto(url),
    url: () => page.url(),
    goBack: () => page.goBack(), // browsingContext.traverseHistory, as the Back button
    close: () => page.close(),
    click: (sel) => page.click(sel),
    /* Replaces a text field's content by typing, as a person would. */
    async fill(sel, s) {
      await page.$eval(sel, (el) => { el.value = ''; });
      await page.type(sel, s);
    },
    press: (key) => page.keyboard.press(key),
    select: (sel, v) => page.select(sel, v),
    value: (sel) => page.$eval(sel, (el) => el.value),
    text: (sel) => page.$eval(sel, (el) => el.textContent),
    attr: (sel, name) => page.$eval(sel, (el, n) => el.getAttribute(n), name),
    count: (sel) => page.$$eval(sel, (els) => els.length),
    async visible(sel) {
      const h = await page.$(sel);
      if (!h) return false;
      try { return await h.isVisible(); } finally { await h.dispose(); }
    },
    evaluate: (fn, arg) => page.evaluate(fn, arg),
    $$eval: (sel, fn) => page.$$eval(sel, fn),
    waitVisible: (sel) => page.waitForSelector(sel, { visible: true, timeout: WAIT_MS }),
    waitFunction: (fn, arg) => page.waitForFunction(fn, { timeout: WAIT_MS, polling: 50 },
      ...(arg === undefined ? [] : [arg])),
    setViewport: (size) => page.setViewport(size),
    screenshot: (file) => page.screenshot({ path: file }),
    onRequest: (cb) => page.on('request', (r) => {
      const h = r.headers();
      cb({ url: r.url(), authorization: h.authorization || h.Authorization || null });
    }),
    onPageError: (cb) => page.on('pageerror', cb),
    onConsole: (cb) => page.on('console', (m) => cb(m.text())),
    // A preload script of the browser's own (not subject to the page's CSP).
    addInitScript: (fn) => page.evaluateOnNewDocument(fn),
  };
}

async function launch({ tmpRoot }) {
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
  return {
    caps: { firefoxBidi: true, typesKeys: true, apiTokenHttp: false },
    version,
    protocol: browser.protocol,
    async newContext() {
      const context = await browser.createBrowserContext();
      return {
        async newPage() {
          const page = await context.newPage();
          await page.setViewport(VIEWPORT);
          return pageDriver(page);
        },
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
  const args = parseArgs('firefox.test.mjs');
  assert.ok(fs.existsSync(FIREFOX), `${FIREFOX} not found: install Debian's firefox-esr package`);
  await runChecks({ ...args, shotName: 'firefox.png', launch });
});
