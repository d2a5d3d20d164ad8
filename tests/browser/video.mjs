// Plays one video in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) the way a page embeds it: the page at BROWSER_PAGE_URL gets a
// `<video src=BROWSER_VIDEO_URL>`, which must reach `canplay` (readyState >= 3), play, be
// sought to BROWSER_SEEK_TO seconds and play on past that point. Every step waits on the
// media element's events; nothing sleeps. Prints one JSON object on stdout: what the element
// reached, and every request Chromium made for the video (its Range header and status).
//
// Environment (set by tests/browser.rs):
//   BROWSER_PAGE_URL     the page the video element is put on (its origin embeds the video)
//   BROWSER_VIDEO_URL    the video's URL (a limited-use link)
//   BROWSER_SEEK_TO      where to seek, in seconds
//   BROWSER_PROFILE      a fresh, empty directory for Chromium's profile
import { firstPage, launch, openPage, recordRequests, settled } from './chromium.mjs';

const pageUrl = process.env.BROWSER_PAGE_URL;
const videoUrl = process.env.BROWSER_VIDEO_URL;
const seekTo = Number(process.env.BROWSER_SEEK_TO);
const profile = process.env.BROWSER_PROFILE;
if (!pageUrl || !videoUrl || !profile || !(seekTo > 0)) {
  console.error(
    'video.mjs: BROWSER_PAGE_URL, BROWSER_VIDEO_URL, BROWSER_SEEK_TO (> 0) and BROWSER_PROFILE are required',
  );
  process.exit(2);
}

// Muted media may start without a user gesture; the policy switch makes that explicit.
const context = await launch(profile, ['--autoplay-policy=no-user-gesture-required']);
try {
  const page = await firstPage(context);
  // Every request for the video, in the order Chromium sent them: its Range header and the
  // status it was answered with (null if it never was, e.g. cut off by the next seek).
  const requests = recordRequests(page, (url) => (url === videoUrl ? url : null));
  await openPage(page, pageUrl);
  const played = await page.evaluate(
    async ({ src, seekTo }) => {
      // media-page.js, injected by launch(): the element, once it can play.
      const { video, until } = await window.mediagateVideo(src);
      const readyStateAtCanplay = video.readyState;
      const canPlay = {
        mp4: video.canPlayType('video/mp4; codecs="avc1.42E01E, mp4a.40.2"'),
        webm: video.canPlayType('video/webm; codecs="vp9, opus"'),
      };
      const duration = video.duration;
      await video.play();
      await until('timeupdate', () => video.currentTime > 0.2, 20, 'playback past 0.2 s');
      const playedBeforeSeek = video.currentTime;
      const seeked = until('seeked', () => !video.seeking && video.currentTime >= seekTo, 20, `the seek to ${seekTo} s`);
      video.currentTime = seekTo;
      await seeked;
      await until('timeupdate', () => video.currentTime > seekTo + 0.5, 20, `playback past ${seekTo + 0.5} s`);
      const playedAfterSeek = video.currentTime;
      video.pause();
      return {
        canPlay,
        readyStateAtCanplay,
        duration,
        playedBeforeSeek,
        playedAfterSeek,
        paused: video.paused,
        error: video.error ? video.error.code : null,
        userAgent: navigator.userAgent,
      };
    },
    { src: videoUrl, seekTo },
  );
  // The element played past the seek point: every request it needed has answered.
  // Their answers' headers are on the way on loopback; ten seconds bound a stuck one.
  await settled(requests);
  const seen = requests.map(({ range, status }) => ({ range, status }));
  process.stdout.write(JSON.stringify({ ...played, requests: seen }) + '\n');
} finally {
  await context.close();
}
