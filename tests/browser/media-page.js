// Injected into every page the browser tests open (chromium.mjs `launch`): what the scripts
// that drive a <video> share inside the page.
//
// mediagateUntil(video, state, event, done, seconds, what) resolves on the first `event` of
// `video` for which `done()` holds (or at once when it already does); it rejects on a media
// error or after `seconds`, with `what` and `state()` in the message: a stuck player must
// fail the test, not hang it.
window.mediagateUntil = (video, state, event, done, seconds, what) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out waiting for ${what}: ${state()}`));
    }, seconds * 1000);
    const check = () => {
      if (done()) {
        cleanup();
        resolve();
      }
    };
    const failed = () => {
      cleanup();
      reject(new Error(`media error while waiting for ${what}: ${state()}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      video.removeEventListener(event, check);
      video.removeEventListener('error', failed);
    };
    video.addEventListener(event, check);
    video.addEventListener('error', failed);
    check();
  });

// mediagateVideo(src) puts a muted <video> of `src` on the page and resolves once it can
// play, with { video, until }: `until(event, done, seconds, what)` is mediagateUntil for
// that element, its failures naming the element's ready and network state, time and error.
window.mediagateVideo = async (src) => {
  const video = document.createElement('video');
  video.muted = true;
  video.preload = 'auto';
  const state = () =>
    `readyState ${video.readyState}, networkState ${video.networkState}, ` +
    `currentTime ${video.currentTime}, error ${video.error ? `${video.error.code} ${video.error.message}` : 'none'}`;
  const until = (event, done, seconds, what) =>
    window.mediagateUntil(video, state, event, done, seconds, what);
  const canplay = until('canplay', () => video.readyState >= 3, 20, 'canplay');
  video.src = src;
  document.body.append(video);
  await canplay;
  return { video, until };
};
