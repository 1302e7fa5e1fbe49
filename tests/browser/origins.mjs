// Pages on other origins in Debian's headless Chromium (playwright-core):
// cross-origin EventSource with credentials, and forged form POSTs.
// Started by tests/browser_origins.rs, which owns every server and the
// pages' content (the pages do the work; this script only opens them and
// reports what they saw).
//
//   node origins.mjs
//
// Protocol: one JSON command per line on stdin, one JSON answer per line on
// stdout ({ok: true, ...} or {ok: false, error}). Commands:
//
//   {op: "context", name, warm?, credentials?}   a browser context (its
//       own HTTP auth cache and cookies); `warm` is a URL navigated first,
//       e.g. with user:password@ in it, so the context holds Basic
//       credentials the way a visitor's browser does after logging in;
//       `credentials` ({username, password}) answer every auth challenge
//       (Playwright's httpCredentials), as a visitor typing them would.
//   {op: "open", ctx, page, url, ms?}   opens a page that reads a stream;
//       waits until its EventSource is open, or has failed and is CLOSED
//       (for at most ms, default 10 s; `settled` says whether it did).
//       Answers the page's state and `streams`: each EventSource request
//       as the network stack saw it (statuses, credentials sent, failure).
//   {op: "wait", page, data, ms}   waits until the page saw an event whose
//       data contains `data` (or ms pass); answers as "open" does.
//   {op: "post", ctx, url, action} opens a page that submits a form to
//       `action`; answers the status, body and request headers of the POST.
//   {op: "quit"}
// The script ends itself after 150 s whatever happens.
import { chromium } from "playwright-core";
import readline from "node:readline";

setTimeout(() => { console.log(JSON.stringify({ ok: false, error: "origins.mjs: overall timeout" })); process.exit(2); }, 150000).unref();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const contexts = new Map();
const pages = new Map();

// What a reading page exposes (the page keeps it in window.report).
const stateOf = page => page.evaluate(() => ({
  ...window.report,
  readyState: window.es ? window.es.readyState : null,
  withCredentials: window.es ? window.es.withCredentials : null,
}));

const ops = {
  async context({ name, warm, credentials }) {
    const ctx = await browser.newContext(credentials ? { httpCredentials: credentials } : {});
    contexts.set(name, ctx);
    if (!warm) return {};
    const page = await ctx.newPage();
    const resp = await page.goto(warm, { timeout: 10000 });
    const status = resp ? resp.status() : null;
    await page.close();
    return { status };
  },
  async open({ ctx, page: name, url, ms }) {
    const page = await contexts.get(ctx).newPage();
    // What went over the wire for the EventSource, as Chromium's network
    // stack saw it: also for a response CORS hides from the page (and from
    // Playwright's response events), and with the headers the stack
    // added (a cached Authorization).
    const wire = new Map();
    const entry = id => { if (!wire.has(id)) wire.set(id, {}); return wire.get(id); };
    const cdp = await page.context().newCDPSession(page);
    cdp.on("Network.requestWillBeSent", e => { entry(e.requestId).type = e.type; entry(e.requestId).url = e.request.url; });
    cdp.on("Network.requestWillBeSentExtraInfo", e => {
      const sent = Object.keys(e.headers).map(h => h.toLowerCase());
      (entry(e.requestId).sent ??= []).push({
        authorization: sent.includes("authorization"), cookie: sent.includes("cookie") });
    });
    cdp.on("Network.responseReceivedExtraInfo", e => { (entry(e.requestId).statuses ??= []).push(e.statusCode); });
    cdp.on("Network.loadingFailed", e => { entry(e.requestId).failed = e.errorText + (e.corsErrorStatus ? " " + e.corsErrorStatus.corsError : ""); });
    await cdp.send("Network.enable");
    const streams = () => [...wire.values()].filter(w => w.type === "EventSource");
    pages.set(name, { page, streams });
    await page.goto(url, { timeout: 10000 });
    const settled = await page.waitForFunction(() => window.report && (window.report.opened ||
      (window.report.errors > 0 && window.es.readyState === EventSource.CLOSED)), null, { timeout: ms || 10000 })
      .then(() => true, () => false);
    return { settled, state: await stateOf(page), streams: streams() };
  },
  async wait({ page: name, data, ms }) {
    const { page, streams } = pages.get(name);
    const seen = await page.waitForFunction(d => window.report.seen.some(e => e.data.includes(d)), data,
      { timeout: ms }).then(() => true, () => false);
    return { seen, state: await stateOf(page), streams: streams() };
  },
  async post({ ctx, url, action }) {
    const page = await contexts.get(ctx).newPage();
    try {
      const posted = page.waitForResponse(r => r.request().method() === "POST" && r.url().startsWith(action),
        { timeout: 10000 });
      await page.goto(url, { timeout: 10000 });
      const resp = await posted;
      const request = resp.request();
      return {
        status: resp.status(),
        body: await resp.text().catch(e => "(no body: " + e.message + ")"),
        requestHeaders: await request.allHeaders(),
        postData: request.postData(),
        frame: resp.frame() === page.mainFrame() ? "main" : "iframe",
      };
    } finally {
      await page.close();
    }
  },
};

const lines = readline.createInterface({ input: process.stdin });
try {
  for await (const line of lines) {
    const cmd = JSON.parse(line);
    if (cmd.op === "quit") break;
    try {
      const answer = await ops[cmd.op](cmd);
      console.log(JSON.stringify({ ok: true, ...answer }));
    } catch (e) {
      console.log(JSON.stringify({ ok: false, error: String(e) }));
    }
  }
} finally {
  await browser.close();
  lines.close();
}
