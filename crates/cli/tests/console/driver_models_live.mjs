// The researcher's contract pages of a model's and a survival study's jobs, run on a devnet by
// crates/cli/tests/console_models.rs: signs in with the researcher's key, opens each contract
// and reads the released result as the page shows it (checked against the ledger's hash by the
// page). Prints one line `RESULT {...}`.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const env = process.env;
const require = createRequire(path.join(env.BROWSER_DIR, "package.json"));
const { chromium } = require("playwright-core");
const shots = env.SHOTS;
fs.mkdirSync(shots, { recursive: true });
const url = env.RESEARCH_URL;
const origin = url.split("/console/")[0];
const pageErrors = [];
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--ignore-certificate-errors"],
});
const out = { ok: false };
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(origin + "/console/#genesis=" + url.split("#genesis=")[1]);
  await page.waitForSelector('body[data-ready="signin"]', { state: "attached" });
  await page.setInputFiles("#wallet-file", env.KEY);
  await page.click("#signin");
  await page.waitForSelector("body[data-ready]:not([data-ready='signin'])", { state: "attached", timeout: 60000 });
  // The aggregator's node answers 202 while it has not yet applied the block holding the
  // result's hash (this page's node may have it first): the first answer per job is that 202,
  // and the page must ask again rather than take the refusal's body for the result.
  const asked = new Set();
  out.notYet = 0;
  await page.route("**/v1/worker/jobs/*/result", (route) => {
    const job = route.request().url().split("/jobs/")[1].split("/")[0];
    if (asked.has(job)) return route.continue();
    asked.add(job);
    out.notYet += 1;
    return route.fulfill({ status: 202, contentType: "application/json", body: JSON.stringify({ error: `the result of ${job} is not final on the ledger yet` }) });
  });
  for (const [kind, contract] of [["model", env.MODEL_CONTRACT], ["survival", env.SURVIVAL_CONTRACT]]) {
    await page.goto("about:blank");
    await page.goto(origin + "/console/#/studies?contract=" + contract);
    const sel = `.result[data-kind="${kind}"]`;
    await page.waitForSelector(sel, { timeout: 60000 });
    out[kind] = {
      job: await page.getAttribute(sel, "data-job"),
      terms: await page.$$eval(`${sel} table.terms tbody tr`, (x) => x.map((r) => r.dataset.term)),
      forest: (await page.$$(`${sel} svg.forest`)).length,
      groups: await page.$$eval(`${sel} table.curves tbody tr`, (x) => x.map((r) => r.dataset.group)),
      curves: (await page.$$(`${sel} svg.km path.curve`)).length,
      text: await page.textContent(sel),
    };
    await page.screenshot({ path: path.join(shots, `models-live-${kind}.png`), fullPage: true });
  }
  out.ok = pageErrors.length === 0;
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
}
out.pageErrors = pageErrors;
await browser.close();
console.log("RESULT " + JSON.stringify(out));
