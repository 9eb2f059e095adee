// drive.mjs: opens one page in Debian's headless chromium (playwright-core,
// no browser download) and reports what the page reports, one JSON line
// per event on stdout, for the Go end-to-end test (browser_test.go).
//
//   node drive.mjs PAGE_URL [TIMEOUT_MS]
//
// The page sets window.lcpushEvents (an array); every new entry is printed
// as a line. The run ends when the page pushes {"event":"done"} or
// {"event":"error"}, or at the timeout (exit 2).
import { chromium } from 'playwright-core';

const [url, timeoutArg] = process.argv.slice(2);
if (!url) {
  console.error('usage: node drive.mjs PAGE_URL [TIMEOUT_MS]');
  process.exit(64);
}
const timeout = Number(timeoutArg || 30000);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const browser = await chromium.launch({
  executablePath,
  // The wss case goes through a terminator with a self-signed certificate.
  args: ['--no-sandbox', '--ignore-certificate-errors', '--disable-gpu'],
});
let code = 2;
try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await ctx.newPage();
  page.on('console', (m) => console.error(`[page] ${m.text()}`));
  page.on('pageerror', (e) => console.log(JSON.stringify({ event: 'error', message: String(e) })));
  await page.goto(url);
  const deadline = Date.now() + timeout;
  let seen = 0;
  for (;;) {
    const events = await page.evaluate(() => window.lcpushEvents || []);
    for (; seen < events.length; seen++) {
      console.log(JSON.stringify(events[seen]));
      if (events[seen].event === 'done') code = 0;
      if (events[seen].event === 'error') code = 1;
    }
    if (code !== 2 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (code === 2) console.log(JSON.stringify({ event: 'error', message: `timeout after ${timeout} ms` }));
} finally {
  await browser.close();
}
process.exit(code);
