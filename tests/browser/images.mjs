// Loads images into a page the way a site embeds them, in a real headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core): the page at BROWSER_PAGE_URL gets one
// `<img src=…>` per URL of BROWSER_IMAGE_URLS (space-separated), one after the other, each
// awaited until it loaded or failed (nothing sleeps). Prints one JSON object on stdout: for
// each image whether it loaded and its natural width, every response Chromium got for the
// media and session hosts (URL, status, whether the request carried a Cookie header), and the
// cookies the browser then held.
//
// Environment (set by tests/browser.rs):
//   BROWSER_PAGE_URL     the page the images are put on
//   BROWSER_IMAGE_URLS   the images' URLs, space-separated, loaded in this order
//   BROWSER_PROFILE      a fresh, empty directory for Chromium's profile
//   BROWSER_COOKIE_URL   optional: the origin the cookie belongs to (the session origin)
//   BROWSER_COOKIE       optional: name=value of that cookie (the user's session)
import { firstPage, launch, openPage, recordRequests, settled } from './chromium.mjs';

const pageUrl = process.env.BROWSER_PAGE_URL;
const imageUrls = (process.env.BROWSER_IMAGE_URLS ?? '').split(' ').filter(Boolean);
const profile = process.env.BROWSER_PROFILE;
if (!pageUrl || !profile || imageUrls.length === 0) {
  console.error('images.mjs: BROWSER_PAGE_URL, BROWSER_IMAGE_URLS and BROWSER_PROFILE are required');
  process.exit(2);
}

const context = await launch(profile);
try {
  const page = await firstPage(context);
  // Every request after the page itself, in order: its status and whether it sent cookies.
  let recording = false;
  const requests = recordRequests(page, (url) => (recording ? url : null));
  await openPage(page, pageUrl);
  recording = true;
  const images = [];
  for (const src of imageUrls) {
    images.push(
      await page.evaluate(
        (src) =>
          new Promise((resolve) => {
            const img = document.createElement('img');
            // Resolves on load or error; a stuck load fails the test instead of hanging it.
            const timer = setTimeout(() => resolve({ src, loaded: false, error: 'timeout' }), 20000);
            img.addEventListener('load', () => {
              clearTimeout(timer);
              resolve({ src, loaded: true, width: img.naturalWidth });
            });
            img.addEventListener('error', () => {
              clearTimeout(timer);
              resolve({ src, loaded: false, error: 'error' });
            });
            img.src = src;
            document.body.append(img);
          }),
        src,
      ),
    );
  }
  await settled(requests);
  const cookies = await context.cookies();
  process.stdout.write(
    JSON.stringify({
      images,
      responses: requests.map(({ url, status, cookie }) => ({ url, status, cookie })),
      cookies,
    }) + '\n',
  );
} finally {
  await context.close();
}
