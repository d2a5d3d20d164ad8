// The one way the browser tests start Chromium: Debian's /usr/bin/chromium, driven by
// playwright-core (which never downloads a browser), headless, with a fresh profile, and
// with nothing that reaches beyond loopback (no update checks, sync, QUIC or first-run calls
// home). `extraArgs` adds switches for one script (e.g. the autoplay policy). Every page gets
// media-page.js. When tests/browser.rs sets BROWSER_COOKIE (name=value, the user's session)
// and BROWSER_COOKIE_URL (the origin it belongs to), the browser starts with that cookie.
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export async function launch(profile, extraArgs = []) {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-sync',
      '--disable-quic',
      ...extraArgs,
    ],
  });
  // What the media scripts share inside their pages (media-page.js).
  await context.addInitScript({ path: fileURLToPath(new URL('./media-page.js', import.meta.url)) });
  if (process.env.BROWSER_COOKIE) {
    const [name, ...rest] = process.env.BROWSER_COOKIE.split('=');
    await context.addCookies([
      { name, value: rest.join('='), url: process.env.BROWSER_COOKIE_URL },
    ]);
  }
  return context;
}

// The page a fresh context opened with (or a new one).
export async function firstPage(context) {
  return context.pages()[0] ?? (await context.newPage());
}

// Waits until every entry's `settled` promise has (an answer's headers arrive on loopback
// after the page saw the answer), for at most `ms`: a stuck one must not hang the script.
export async function settled(entries, ms = 10000) {
  let bound;
  await Promise.race([
    Promise.all(entries.map((entry) => entry.settled)),
    new Promise((resolve) => {
      bound = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(bound);
}

// Records every request of `page` that `label(url)` names (a string, or null to skip), in the
// order Chromium sent them: the label, its Range and Cookie headers, the status it was
// answered with (null if it never was, e.g. cut off by the next seek) and when it was sent.
// Each entry's `settled` resolves once all are known (see `settled`).
export function recordRequests(page, label) {
  const requests = [];
  page.on('request', (request) => {
    const url = label(request.url());
    if (!url) return;
    const entry = { url, range: null, cookie: null, status: null, at: Date.now() };
    requests.push(entry);
    entry.settled = Promise.all([
      request.allHeaders().then((headers) => {
        entry.range = headers.range ?? null;
        entry.cookie = headers.cookie ?? null;
      }),
      request.response().then((response) => {
        entry.status = response ? response.status() : null;
      }),
    ]).catch(() => {});
  });
  return requests;
}

// Opens the page that embeds the media, which must answer 200.
export async function openPage(page, pageUrl) {
  const response = await page.goto(pageUrl, { waitUntil: 'load', timeout: 20000 });
  if (!response || response.status() !== 200) {
    throw new Error(`the embedding page ${pageUrl} answered ${response?.status()}`);
  }
}
