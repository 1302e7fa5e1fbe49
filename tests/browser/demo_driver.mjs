// Drives one demo page in Debian's headless Chromium (playwright-core, no
// browser download), one command at a time, for tests/browser_demo.rs:
// the test publishes from the shell, counts server log lines and checks
// what the page shows in between.
//
//   node demo_driver.mjs URL
//
// Reads one JSON command per line on stdin, answers each with one JSON
// line on stdout ({ok: true, ...} or {ok: false, error}). Commands:
//   {do: "rows"}                          the log, oldest first: {name, id, data}
//   {do: "waitRow", data, after?}         until a row shows `data` (and, with
//                                         `after` = n, n ticks after it; data
//                                         null: n ticks)
//   {do: "publish", token, event, data}   with the page's form: {result, cls}
//   {do: "ws"}                            the WebSocket panel, and how many
//                                         sockets the page has opened
//   {do: "wsSend", text}                  once the panel is open
//   {do: "waitWsLine", text}              until the panel shows the line
//   {do: "subscribe", channel}            switches the page to `channel`
//   {do: "waitState", cls}                until the stream's pill has class `cls`
//   {do: "streamRequests"}                how many stream GETs the page made
//   {do: "sleep", ms}
//   {do: "screenshot", path}
// The page is opened first and must reach "open" (the SSE stream).
import { chromium } from "playwright-core";
import readline from "node:readline";

const [url] = process.argv.slice(2);
const answer = v => console.log(JSON.stringify(v));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const errors = [];
page.on("pageerror", e => errors.push(e.message));
let sockets = 0, streamRequests = 0;
page.on("websocket", () => sockets++);
page.on("request", r => {
  if (r.method() === "GET" && r.url().includes("channel=")) streamRequests++;
});
const T = { timeout: 10000 };

const rows = () => page.$$eval("#log li:not(.empty)", lis => lis.map(li => ({
  name: li.querySelector(".name")?.textContent || "",
  id: li.querySelector(".id")?.textContent?.slice(1) || "",
  data: li.querySelector("pre")?.textContent || "",
})).reverse());

const commands = {
  rows: async () => ({ rows: await rows() }),
  waitRow: async ({ data, after }) => {
    await page.waitForFunction(([d, n]) => {
      const lis = [...document.querySelectorAll("#log li")].reverse();
      const i = d === null ? -1 : lis.findIndex(li => li.querySelector("pre")?.textContent === d);
      return (d === null || i >= 0) && lis.slice(i + 1).filter(li => li.querySelector(".name.tick")).length >= n;
    }, [data, after || 0], T);
    return { rows: await rows() };
  },
  publish: async ({ token, event, data }) => {
    await page.fill("#token", token || "");
    await page.fill("#event", event || "");
    await page.fill("#data", data || "");
    await page.evaluate(() => { document.querySelector("#result").textContent = ""; });
    await page.click("#publish button[type=submit]");
    await page.waitForFunction(() => document.querySelector("#result").textContent !== "", null, T);
    return {
      result: await page.evaluate(() => document.querySelector("#result").innerText),
      cls: await page.getAttribute("#result", "class"),
    };
  },
  ws: async () => ({
    state: await page.textContent("#wsstate"),
    cls: await page.getAttribute("#wsstate", "class"),
    info: await page.isVisible("#wsinfo") ? await page.innerText("#wsinfo") : "",
    chatVisible: await page.isVisible("#chat"),
    sendVisible: await page.isVisible("#chat button[type=submit]"),
    sendEnabled: await page.isEnabled("#chat button[type=submit]"),
    sockets,
  }),
  wsSend: async ({ text }) => {
    await page.waitForSelector("#wsstate.open", T);
    await page.fill("#wsmsg", text);
    await page.click("#chat button[type=submit]");
    return {};
  },
  waitWsLine: async ({ text }) => {
    await page.waitForFunction(t => [...document.querySelectorAll("#wslog li")]
      .some(li => li.textContent === t), text, T);
    return { lines: await page.$$eval("#wslog li", lis => lis.map(li => li.textContent)) };
  },
  subscribe: async ({ channel }) => {
    await page.fill("#channel", channel);
    await page.click("#switch");
    return {};
  },
  waitState: async ({ cls }) => {
    await page.waitForSelector("#state." + cls, { timeout: 20000 });
    return { state: await page.textContent("#state") };
  },
  streamRequests: async () => ({ streamRequests }),
  sleep: async ({ ms }) => { await page.waitForTimeout(ms); return {}; },
  screenshot: async ({ path }) => {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path, fullPage: true });
    return {};
  },
};

try {
  await page.goto(url);
  await page.waitForSelector("#state.open", T);
  answer({ ok: true });
} catch (e) {
  answer({ ok: false, error: String(e) });
  await browser.close();
  process.exit(1);
}
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  let cmd;
  try {
    cmd = JSON.parse(line);
    const out = await commands[cmd.do](cmd);
    if (errors.length) throw new Error("page error: " + errors.join("; "));
    answer({ ok: true, ...out });
  } catch (e) {
    answer({ ok: false, error: String(e), rows: await rows().catch(() => []) });
  }
}
await browser.close();
