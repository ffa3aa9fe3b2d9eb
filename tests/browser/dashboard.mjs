// Drives the dashboard in a real browser (Debian's Chromium, headless):
//   node dashboard.mjs <server url> <admin key> <client id to disconnect> <screenshot.png>
// Exits 0 when every step held; otherwise prints what failed and exits 1.
// Started by tests/tests/dashboard_browser.rs against a server it runs.
import { chromium } from "playwright-core";

const [url, key, victim, screenshot] = process.argv.slice(2);
const WAIT = 15000;

function number(text) {
  const m = /^([\d.]+)([kM]?)$/.exec(text.trim());
  if (!m) return NaN;
  return parseFloat(m[1]) * (m[2] === "k" ? 1e3 : m[2] === "M" ? 1e6 : 1);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let failed = null;
const page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
const problems = [];
page.on("pageerror", (e) => problems.push("page error: " + e.message));
page.on("console", (m) => {
  // The refused key's 401 is expected; anything else is a fault of the page.
  if (m.type() === "error" && !m.text().includes("status of 401")) {
    problems.push("console error: " + m.text());
  }
});
try {
  const step = async (name, run) => {
    try {
      await run();
    } catch (e) {
      throw new Error(`${name}: ${e.message.split("\n")[0]}`);
    }
  };

  await step("the page loads and asks for a key", async () => {
    await page.goto(url + "/");
    await page.waitForSelector("#login:not([hidden])", { timeout: WAIT });
  });

  await step("a wrong key is refused", async () => {
    await page.fill("#key", "not-a-key");
    await page.click("#login button[type=submit]");
    await page.waitForFunction(
      () => document.getElementById("login-error").textContent.includes("refused"),
      null,
      { timeout: WAIT },
    );
  });

  await step("the admin key opens the live stream", async () => {
    await page.fill("#key", key);
    await page.click("#login button[type=submit]");
    await page.waitForFunction(
      () => document.getElementById("status").textContent === "live",
      null,
      { timeout: WAIT },
    );
    const stored = await page.evaluate(() => sessionStorage.getItem("shardcast.adminKey"));
    if (stored !== key) throw new Error("the key is not in session storage");
    if (page.url().includes(key)) throw new Error("the key is in the URL");
  });

  await step("the numbers move", async () => {
    await page.waitForFunction(
      () => document.getElementById("connections").textContent !== "–",
      null,
      { timeout: WAIT },
    );
    const first = await page.textContent("#uptime");
    await page.waitForFunction(
      (before) => document.getElementById("uptime").textContent !== before,
      first,
      { timeout: WAIT },
    );
    await page.waitForFunction(
      () => {
        const text = document.getElementById("publish-rate").textContent.trim();
        return text !== "–" && parseFloat(text) > 0;
      },
      null,
      { timeout: WAIT },
    );
    const connections = number(await page.textContent("#connections"));
    if (!(connections >= 1)) throw new Error(`connections shows ${connections}`);
    const latency = await page.textContent("#latency");
    if (!/ms$/.test(latency)) throw new Error(`latency shows ${latency}`);
  });

  await step("the live tail shows events of the chosen channel", async () => {
    await page.click('button[data-channel="market-data"]', { timeout: WAIT });
    await page.waitForFunction(
      () => document.querySelectorAll("#tail li").length >= 3,
      null,
      { timeout: WAIT },
    );
    const status = await page.textContent("#tail-status");
    if (!status.includes("market-data")) throw new Error(`tail status: ${status}`);
  });

  await step("the disconnect button disconnects a slow client", async () => {
    const button = `button[data-client="${victim}"]`;
    await page.waitForSelector(button, { timeout: WAIT });
    await page.click(button);
    await page.waitForFunction(
      (id) => document.getElementById("action-result").textContent.startsWith("Disconnected " + id),
      victim,
      { timeout: WAIT },
    );
  });

  // A frame or two more, so the picture shows the charts with data.
  await page.waitForTimeout(1500);
  await page.screenshot({ path: screenshot, fullPage: true });
  if (problems.length) throw new Error(problems.join("; "));
} catch (e) {
  failed = e;
  await page.screenshot({ path: screenshot, fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
if (failed) {
  console.error("dashboard test failed: " + failed.message);
  process.exit(1);
}
console.log("dashboard test passed");
