// Opens one URL in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core, which never downloads a browser) and prints what the user ended on as one
// JSON object on stdout: the final status, URL, content type, response body, rendered text and
// the chain of navigations (every redirect hop with its status and Location).
//
// Environment (set by tests/browser.rs):
//   BROWSER_URL          the URL to open
//   BROWSER_PROFILE      a fresh, empty directory for Chromium's profile
//   BROWSER_COOKIE_URL   optional: the origin the cookie belongs to (e.g. http://www.localhost:P/)
//   BROWSER_COOKIE       optional: name=value of that cookie
import { firstPage, launch } from './chromium.mjs';

const url = process.env.BROWSER_URL;
const profile = process.env.BROWSER_PROFILE;
if (!url || !profile) {
  console.error('navigate.mjs: BROWSER_URL and BROWSER_PROFILE are required');
  process.exit(2);
}

const context = await launch(profile);
try {
  const page = await firstPage(context);
  const response = await page.goto(url, { waitUntil: 'load', timeout: 20000 });
  if (!response) throw new Error(`no response for ${url}`);
  // The redirects, oldest first: each request the final one was redirected from.
  const requests = [];
  for (let request = response.request(); request; request = request.redirectedFrom()) {
    requests.unshift(request);
  }
  const chain = [];
  for (const request of requests) {
    const hop = await request.response();
    chain.push({
      url: request.url(),
      status: hop ? hop.status() : null,
      location: hop ? (await hop.headerValue('location')) : null,
    });
  }
  const result = {
    status: response.status(),
    url: page.url(),
    contentType: (await response.headerValue('content-type')) ?? '',
    body: await response.text(),
    text: await page.innerText('body'),
    chain,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
} finally {
  await context.close();
}
