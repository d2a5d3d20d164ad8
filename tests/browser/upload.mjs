// Uploads a file cross-origin from a page, as a browser app does with an upload slot: opens
// PAGE_URL (a page on the application's origin) in a real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core), then from that page PUTs a File to SLOT_URL
// twice with fetch(). Prints one JSON array on stdout: for each attempt its status, its
// X-Mediagate-Reason header (as the page can read it) and its body; an attempt the browser
// blocked (CORS) is {"error": "..."}.
//
// Environment (set by tests/browser.rs):
//   PAGE_URL         the page to upload from
//   SLOT_URL         the slot (media origin, path and token)
//   BROWSER_PROFILE  a fresh, empty directory for Chromium's profile
import { firstPage, launch } from './chromium.mjs';

const { PAGE_URL: pageUrl, SLOT_URL: slotUrl, BROWSER_PROFILE: profile } = process.env;
if (!pageUrl || !slotUrl || !profile) {
  console.error('upload.mjs: PAGE_URL, SLOT_URL and BROWSER_PROFILE are required');
  process.exit(2);
}

const context = await launch(profile);
try {
  const page = await firstPage(context);
  await page.goto(pageUrl, { waitUntil: 'load', timeout: 20000 });
  const attempts = await page.evaluate(async (slot) => {
    const file = new File(['bytes from a real browser\n'], 'photo.png', { type: 'image/png' });
    const results = [];
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const response = await fetch(slot, { method: 'PUT', body: file });
        results.push({
          status: response.status,
          reason: response.headers.get('x-mediagate-reason'),
          body: await response.text(),
        });
      } catch (error) {
        results.push({ error: String(error) });
      }
    }
    return results;
  }, slotUrl);
  console.log(JSON.stringify(attempts));
} finally {
  await context.close();
}
