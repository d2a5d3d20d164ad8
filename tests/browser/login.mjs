// Opens a protected URL in a real headless Chromium with no session, expects to land on the
// demo application's login form (examples/demo_app.py), fills in a user name, submits the form
// and prints, as one JSON object on stdout, every top-level navigation response in order
// (method, status, URL, Location) and what the browser ended on: status, URL, content type,
// and the bytes the page reads at that URL (status and body in base64: a PDF is binary).
//
// Environment (set by tests/browser.rs):
//   BROWSER_URL       the URL to open
//   BROWSER_PROFILE   a fresh, empty directory for Chromium's profile
//   BROWSER_USER      the user name to type into the form
import { firstPage, launch } from './chromium.mjs';

const url = process.env.BROWSER_URL;
const profile = process.env.BROWSER_PROFILE;
const user = process.env.BROWSER_USER;
if (!url || !profile || !user) {
  console.error('login.mjs: BROWSER_URL, BROWSER_PROFILE and BROWSER_USER are required');
  process.exit(2);
}

const context = await launch(profile);
try {
  const page = await firstPage(context);
  // Every response to a navigation of the page itself, redirects included, in the order the
  // browser received them.
  const chain = [];
  page.on('response', (response) => {
    const request = response.request();
    if (request.isNavigationRequest() && request.frame() === page.mainFrame()) {
      chain.push(response);
    }
  });

  const first = await page.goto(url, { waitUntil: 'load', timeout: 20000 });
  if (!first) throw new Error(`no response for ${url}`);
  const form = page.locator('form[action="/login"]');
  if ((await form.count()) !== 1) {
    throw new Error(`not on the login form: ${page.url()} ${await page.content()}`);
  }
  await form.locator('input[name="user"]').fill(user);
  const [last] = await Promise.all([
    page.waitForNavigation({ waitUntil: 'load', timeout: 20000 }),
    form.locator('button[type="submit"]').click(),
  ]);
  if (!last) throw new Error('the form submission navigated nowhere');

  const hops = [];
  for (const response of chain) {
    hops.push({
      method: response.request().method(),
      status: response.status(),
      url: response.url(),
      location: (await response.headerValue('location')) ?? null,
    });
  }
  // Chromium hands a PDF to its viewer and reports the viewer's wrapper page as the
  // navigation's body; the bytes at the URL it ended on are read by the page itself.
  const fetched = await page.evaluate(async (at) => {
    const response = await fetch(at, { cache: 'no-store' });
    return {
      status: response.status,
      body: Array.from(new Uint8Array(await response.arrayBuffer())),
    };
  }, page.url());
  const result = {
    status: last.status(),
    url: page.url(),
    contentType: (await last.headerValue('content-type')) ?? '',
    fetchedStatus: fetched.status,
    body: Buffer.from(fetched.body).toString('base64'),
    chain: hops,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
} finally {
  await context.close();
}
