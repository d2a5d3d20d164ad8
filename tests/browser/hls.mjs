// Plays one HLS stream to its end in a real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core) from a page, either natively (`<video src=playlist>`, Chromium's
// own HLS support) or with hls.js (Media Source Extensions; the page fetches the playlist and
// every segment itself, cross-origin, so the media origin must answer with CORS headers), or
// the page's own `<video>` ("page": the first one on the page, as the page set it up, e.g.
// the demo's `/video` with `autoplay`; the script adds nothing and only waits).
// Every step waits on the media element's or hls.js's events; nothing sleeps. Prints one JSON
// object on stdout: whether the element reached `ended`, its source, final time and duration, the
// fatal error if one stopped it (a media error code, or hls.js's "type:details"), and every
// request of the page other than the page itself, in order: URL and status (null if it never
// answered; a redirect hop is its own entry).
//
// Environment (set by tests/browser.rs):
//   BROWSER_PAGE_URL     the page the player is put on (its origin is the player's origin)
//   BROWSER_HLS_URL      the playlist's URL (with "page": what the page's video must name)
//   BROWSER_HLS_PLAYER   "native", "hlsjs" or "page"
//   BROWSER_PROFILE      a fresh, empty directory for Chromium's profile
//   BROWSER_COOKIE_URL   optional: the origin the cookie belongs to (e.g. http://www.localhost:P/)
//   BROWSER_COOKIE       optional: name=value of that cookie
import { createRequire } from 'node:module';
import { firstPage, launch, openPage, recordRequests, settled } from './chromium.mjs';

const pageUrl = process.env.BROWSER_PAGE_URL;
const hlsUrl = process.env.BROWSER_HLS_URL;
const player = process.env.BROWSER_HLS_PLAYER;
const profile = process.env.BROWSER_PROFILE;
if (!pageUrl || !hlsUrl || !profile || !['native', 'hlsjs', 'page'].includes(player)) {
  console.error(
    'hls.mjs: BROWSER_PAGE_URL, BROWSER_HLS_URL, BROWSER_HLS_PLAYER (native|hlsjs|page) and BROWSER_PROFILE are required',
  );
  process.exit(2);
}

// Muted media may start without a user gesture; the policy switch makes that explicit.
const context = await launch(profile, ['--autoplay-policy=no-user-gesture-required']);
try {
  const page = await firstPage(context);
  // Every request after the page itself, in order, with the status it was answered with.
  const requests = recordRequests(page, (url) => (url === pageUrl ? null : url));
  await openPage(page, pageUrl);
  if (player === 'hlsjs') {
    // The page's own copy of hls.js (tests/browser/package.json pins it), as a site ships it.
    const require = createRequire(import.meta.url);
    await page.addScriptTag({ path: require.resolve('hls.js/dist/hls.min.js') });
  }
  const played = await page.evaluate(
    async ({ src, player }) => {
      const video =
        player === 'page' ? document.querySelector('video') : document.createElement('video');
      if (!video) {
        return { ended: false, src: '', currentTime: 0, duration: null, error: 'the page has no <video>' };
      }
      if (player !== 'page') {
        video.muted = true;
        video.preload = 'auto';
        document.body.append(video);
      }
      const state = () =>
        `readyState ${video.readyState}, networkState ${video.networkState}, ` +
        `currentTime ${video.currentTime}, error ${video.error ? `${video.error.code} ${video.error.message}` : 'none'}`;
      // Resolves with null on `ended`, with the fatal error's description when playback
      // stops for good; rejects after `seconds` (a stuck player fails the test, not hangs it).
      const outcome = new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for the end: ${state()}`)),
          60000,
        );
        const settle = (error) => {
          clearTimeout(timer);
          resolve(error);
        };
        video.addEventListener('ended', () => settle(null));
        video.addEventListener('error', () =>
          settle(`media:${video.error ? video.error.code : 'unknown'}`),
        );
        if (player === 'hlsjs') {
          if (!window.Hls || !window.Hls.isSupported()) {
            settle('hls.js is not supported in this browser');
            return;
          }
          const hls = new window.Hls({ enableWorker: false });
          hls.on(window.Hls.Events.ERROR, (_, data) => {
            if (data.fatal) settle(`${data.type}:${data.details}`);
          });
          hls.loadSource(src);
          hls.attachMedia(video);
          hls.on(window.Hls.Events.MANIFEST_PARSED, () => {
            video.play().catch((error) => settle(`play: ${error}`));
          });
        } else if (player === 'page') {
          // The page's own element started on its own (autoplay) when the page loaded: it may
          // have finished or failed already.
          if (video.ended) settle(null);
          else if (video.error) settle(`media:${video.error.code}`);
        } else {
          if (video.canPlayType('application/vnd.apple.mpegurl') === '') {
            settle('this browser has no native HLS');
            return;
          }
          video.src = src;
          video.play().catch((error) => settle(`play: ${error}`));
        }
      });
      const error = await outcome;
      return {
        ended: video.ended,
        src: video.currentSrc,
        currentTime: video.currentTime,
        duration: video.duration,
        error,
      };
    },
    { src: hlsUrl, player },
  );
  // Playback ended (or failed for good): every request it needed has been answered or
  // abandoned. Their answers are on the way on loopback; ten seconds bound a stuck one.
  await settled(requests);
  const seen = requests.map(({ url, status }) => ({ url, status }));
  process.stdout.write(JSON.stringify({ ...played, requests: seen }) + '\n');
} finally {
  await context.close();
}
