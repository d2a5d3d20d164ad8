// The one way the browser tests start Chromium: Debian's /usr/bin/chromium, driven by
// playwright-core (which never downloads a browser), headless, with a fresh profile, and
// with nothing that reaches beyond loopback (no update checks, sync, QUIC or first-run calls
// home). `extraArgs` adds switches for one script (e.g. the autoplay policy).
import { chromium } from 'playwright-core';

export async function launch(profile, extraArgs = []) {
  return chromium.launchPersistentContext(profile, {
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
}
