// Drives the demo page in Debian's headless Chromium (playwright-core, no
// browser download). Started by tests/browser.rs, which owns the server:
//
//   node demo.mjs URL TOKEN SCREENSHOT
//
// Protocol on stdout/stdin: prints "RESTART" when the server should be
// stopped and restarted (events published meanwhile), waits for a line on
// stdin, then prints one JSON line with what the page showed. Exit 0 = pass.
import { chromium } from "playwright-core";
import readline from "node:readline";

const [url, token, screenshot] = process.argv.slice(2);
const fail = msg => { console.log(JSON.stringify({ ok: false, error: msg })); process.exit(1); };
const lines = readline.createInterface({ input: process.stdin });
const nextLine = () => new Promise(resolve => lines.once("line", resolve));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", e => fail("page error: " + e.message));
  await page.goto(url);
  await page.waitForSelector("#state.open", { timeout: 10000 });
  // The ticker shows up live: rows arrive one by one.
  await page.waitForFunction(() => document.querySelectorAll("#log li .name.tick").length >= 2,
                             null, { timeout: 10000 });
  // Publish from the page with the token.
  await page.fill("#token", token);
  await page.fill("#event", "chat");
  await page.fill("#data", "hello from the browser");
  await page.click("#publish button[type=submit]");
  await page.waitForFunction(() => [...document.querySelectorAll("#log li pre")]
    .some(p => p.textContent === "hello from the browser"), null, { timeout: 10000 });
  // The 201 and the event race each other to the page: wait for both.
  await page.waitForFunction(() => document.querySelector("#result").textContent !== "",
                             null, { timeout: 10000 });
  const published = await page.textContent("#result");
  if (!published.startsWith("published")) fail("publish result: " + published);
  const batching = await page.isVisible("#batch.show");
  if (screenshot) {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshot, fullPage: true });
  }

  console.log("RESTART");
  await nextLine();
  // The server came back; events published while it was down must arrive
  // through Last-Event-ID, with no gap.
  await page.waitForFunction(() => [...document.querySelectorAll("#log li pre")]
    .some(p => p.textContent === "while down 2"), null, { timeout: 20000 });
  await page.waitForSelector("#state.open", { timeout: 10000 });
  const rows = await page.$$eval("#log li", lis => lis.map(li => ({
    name: li.querySelector(".name")?.textContent,
    id: li.querySelector(".id")?.textContent?.slice(1) || "",
    data: li.querySelector("pre")?.textContent,
  })).reverse());
  const reconnects = Number(await page.textContent("#reconnects"));
  console.log(JSON.stringify({ ok: true, batching, reconnects, rows }));
} catch (e) {
  fail(String(e));
} finally {
  await browser.close();
  lines.close();
}
