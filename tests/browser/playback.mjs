// Long playback in a real headless Chromium: a `<video src=BROWSER_VIDEO_URL>` (a query-form
// link expiring at BROWSER_EXPIRES, unix seconds) on the page BROWSER_PAGE_URL starts
// playing, waits until the link has expired (the condition itself, nothing else is timed),
// then seeks to BROWSER_SEEK_TO seconds and tries to play on. With a playback grant, the
// first range was redirected to the path-form grant URL and the seek plays; without one, the
// seek's range is sent to the session domain and the element fails. Prints one JSON object:
// how the seek ended ("played" or the media error) and every request for the video (which
// URL: "link" or "grant", its Range header, its status, when it was sent).
//
// Environment (set by tests/browser.rs):
//   BROWSER_PAGE_URL, BROWSER_VIDEO_URL, BROWSER_EXPIRES, BROWSER_SEEK_TO, BROWSER_PROFILE
import { firstPage, launch, openPage, recordRequests, settled } from './chromium.mjs';

const pageUrl = process.env.BROWSER_PAGE_URL;
const videoUrl = process.env.BROWSER_VIDEO_URL;
const expires = Number(process.env.BROWSER_EXPIRES);
const seekTo = Number(process.env.BROWSER_SEEK_TO);
const profile = process.env.BROWSER_PROFILE;
if (!pageUrl || !videoUrl || !profile || !(expires > 0) || !(seekTo > 0)) {
  console.error('playback.mjs: BROWSER_PAGE_URL, BROWSER_VIDEO_URL, BROWSER_EXPIRES, BROWSER_SEEK_TO and BROWSER_PROFILE are required');
  process.exit(2);
}
const link = new URL(videoUrl);
const file = link.pathname.slice(link.pathname.lastIndexOf('/'));
// The grant URL: same origin, a `~mg~` segment, the same file name.
const kind = (url) => {
  const seen = new URL(url);
  if (seen.href === link.href) return 'link';
  if (seen.origin === link.origin && seen.pathname.includes('/~mg~') && seen.pathname.endsWith(file)) return 'grant';
  return null;
};

const context = await launch(profile, ['--autoplay-policy=no-user-gesture-required']);
try {
  const page = await firstPage(context);
  const requests = recordRequests(page, kind);
  await openPage(page, pageUrl);
  const played = await page.evaluate(
    async ({ src, seekTo, expires }) => {
      // media-page.js, injected by launch(): the element, once it can play.
      const { video, until } = await window.mediagateVideo(src);
      await video.play();
      await until('timeupdate', () => video.currentTime > 0.2, 20, 'playback past 0.2 s');
      video.pause();
      const playedBeforeSeek = video.currentTime;
      // The link must have expired before the seek: wait for exactly that.
      const left = expires * 1000 - Date.now();
      if (left > 0) await new Promise((resolve) => setTimeout(resolve, left + 50));
      const seekAt = Date.now();
      let afterExpiry = 'played';
      try {
        const seeked = until('seeked', () => !video.seeking && video.currentTime >= seekTo, 20, `the seek to ${seekTo} s`);
        video.currentTime = seekTo;
        await seeked;
        await video.play();
        await until('timeupdate', () => video.currentTime > seekTo + 0.5, 20, `playback past ${seekTo + 0.5} s`);
      } catch (error) {
        afterExpiry = `failed: ${error.message}`;
      }
      const playedAfterSeek = video.currentTime;
      video.pause();
      return { playedBeforeSeek, seekAt, afterExpiry, playedAfterSeek, error: video.error ? video.error.code : null };
    },
    { src: videoUrl, seekTo, expires },
  );
  await settled(requests);
  const seen = requests.map(({ url, range, status, at }) => ({ url, range, status, at }));
  process.stdout.write(JSON.stringify({ ...played, requests: seen }) + '\n');
} finally {
  await context.close();
}
