// Two pages of the demo in headless Chromium: a message sent from one
// page's WebSocket panel appears in the other page's WebSocket panel and in
// both pages' SSE logs. Prints one JSON line; exit 0 = pass.
import { chromium } from "playwright-core";

const [url] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const one = await browser.newPage();
  const two = await browser.newPage();
  for (const p of [one, two]) {
    await p.goto(url);
    await p.waitForSelector("#wsstate.open", { timeout: 10000 });
    await p.waitForSelector("#state.open", { timeout: 10000 });
  }
  await one.fill("#wsmsg", "hi from page one");
  await one.click("#chat button[type=submit]");
  await two.waitForFunction(() => [...document.querySelectorAll("#wslog li")]
    .some(li => li.textContent === "hi from page one"), null, { timeout: 10000 });
  for (const p of [one, two]) {
    await p.waitForFunction(() => [...document.querySelectorAll("#log li pre")]
      .some(pre => pre.textContent === "hi from page one"), null, { timeout: 10000 });
  }
  // The sender's panel shows only its own line, not an echo from the server.
  const mine = await one.$$eval("#wslog li", lis => lis.map(li => li.textContent));
  console.log(JSON.stringify({ ok: true, senderPanel: mine }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
