// Drives the public-health pages in Chromium (playwright-core) for
// crates/cli/tests/console_health.rs: the agency's epidemiologist reads its surveillance
// contract (every window fetched through research-1's relay and checked against the ledger,
// the series with its C2 band, the alerts proven), and pharma-1's safety officer reads the
// drug-safety scan's table. Input by environment; prints one JSON line `RESULT {...}` with what
// the pages showed, which the Rust side compares with the ledger and its own detectors.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const env = process.env;
const require = createRequire(path.join(env.BROWSER_DIR, "package.json"));
const { chromium } = require("playwright-core");
const shots = env.SHOTS;
fs.mkdirSync(shots, { recursive: true });
const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
};
const key = (u) => path.join(env.KEYS, u + ".json");
const CONTRACT = env.SURVEILLANCE;
const DRUG = env.DRUG_SAFETY;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--ignore-certificate-errors"],
});
const pageErrors = [];
const external = [];
const people = [];

/// A person in their own browser context, signed in with their key at the node of `url`.
async function person(user, url) {
  const origin = url.split("/console/")[0];
  const genesis = url.split("#genesis=")[1];
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(`${user}: ${e}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(`${user}: ${m.text()}`);
  });
  page.on("request", (r) => {
    if (!r.url().startsWith(origin) && !/^(blob|data):/.test(r.url())) external.push(r.url());
  });
  await page.goto(origin + "/console/#genesis=" + genesis);
  await page.waitForSelector('body[data-ready="signin"]', { state: "attached" });
  await page.setInputFiles("#wallet-file", key(user));
  await page.click("#signin");
  await page.waitForSelector("body[data-ready]:not([data-ready='signin'])", { state: "attached", timeout: 120000 });
  const p = {
    page,
    user,
    origin,
    async ready(name, timeout = 120000) {
      await page.waitForSelector(`body[data-ready="${name}"]`, { timeout, state: "attached" });
    },
    async go(hash, name) {
      await page.goto("about:blank");
      await page.goto(origin + "/console/" + hash);
      await p.ready(name);
    },
    async shot(name) {
      await page.screenshot({ path: path.join(shots, "health-" + name + ".png"), fullPage: true });
    },
    // Text of `sel`, or "" when it is not on the page (never a 30 s wait).
    async text(sel) {
      return (await page.$(sel)) ? (await page.textContent(sel)) || "" : "";
    },
  };
  people.push(p);
  return p;
}

const fail = async (e) => {
  for (const p of people) await p.shot("failure-" + p.user).catch(() => {});
  console.log("RESULT " + JSON.stringify({ ok: false, failures: [...failures, String(e && e.stack ? e.stack : e), ...pageErrors], pageErrors }));
  process.exit(1);
};
process.on("unhandledRejection", fail);
process.on("uncaughtException", fail);

/// What the surveillance page shows now: the selected series, its points, markers and the
/// alert table.
async function surveillanceShown(p) {
  return p.page.evaluate(() => {
    const hd = document.getElementById("hs-series-h");
    return {
      syndrome: hd && hd.dataset.syndrome,
      region: hd && hd.dataset.region,
      seriesAlerts: hd ? Number(hd.dataset.alerts) : -1,
      markers: [...document.querySelectorAll("#hs-chart circle.marker")].map((c) => Number(c.dataset.window)),
      bandPolygons: document.querySelectorAll("#hs-chart polygon.expected-band").length,
      points: [...document.querySelectorAll("#hs-points tbody tr")].map((r) => [Number(r.dataset.window), r.dataset.observed === "" ? null : Number(r.dataset.observed), r.dataset.withheld === "true", r.dataset.expected === "" ? null : Number(r.dataset.expected), r.dataset.threshold === "" ? null : Number(r.dataset.threshold)]),
      alerts: [...document.querySelectorAll("#hs-alert-table tbody tr")].map((r) => [Number(r.dataset.window), r.dataset.syndrome, r.dataset.region, r.dataset.method, r.children[4].textContent]),
      released: Number((document.getElementById("hs-released") || { dataset: {} }).dataset.released),
      nothing: Number((document.getElementById("hs-released") || { dataset: {} }).dataset.nothing),
      answer: (document.getElementById("hs-answer") || {}).textContent || "",
    };
  });
}

// ---------------------------------------------------------------- the agency's surveillance
const relayed = [];
const ag = await person("health-agency.epidemiologist", env.RESEARCH_URL);
ag.page.on("request", (r) => {
  if (r.url().includes("/console/relay/")) relayed.push(r.method() + " " + r.url().replace(ag.origin, ""));
});
check((await ag.text("#nav")).includes("Surveillance"), "the agency's nav offers surveillance: " + (await ag.text("#nav")));
check((await ag.page.getAttribute("body", "data-ready")) === "health", "the agency lands on surveillance: " + (await ag.page.getAttribute("body", "data-ready")));
await ag.go("#/health", "health");
const listed = `#hs-contracts tr[data-contract="${CONTRACT}"]`;
check(!!(await ag.page.$(listed)), "the list shows the surveillance contract");
const listedText = await ag.text(listed);
check(listedText.includes(`${env.WINDOWS} of ${env.WINDOWS}`), "the list shows every window's result posted: " + listedText);
check(listedText.includes("Influenza-like illness"), "the list names the syndromes: " + listedText);
await ag.shot("list-en");
const loaded = Date.now();
await ag.page.click(`${listed} a`);
await ag.page.waitForSelector("#hs-series-h", { timeout: 180000 });
await ag.ready("health");
const loadMs = Date.now() - loaded;
const shown = await surveillanceShown(ag);
check(shown.syndrome === "ili" && shown.region === "013", `the series with the most alerts is shown first: ${shown.syndrome} ${shown.region}`);
check(shown.markers.length > 0, "the ILI series of region 013 has red markers");
check(shown.bandPolygons > 0, "the chart draws the expected band");
check(shown.released === Number(env.RELEASED) && shown.nothing === Number(env.NOTHING), `every window verified, ${env.RELEASED} with counts, ${env.NOTHING} with nothing: ${shown.released}, ${shown.nothing}`);
check(/alerts on the ledger/.test(shown.answer), "the page says first how many alerts there are: " + shown.answer);
check(relayed.some((u) => /^GET \/console\/relay\/[a-z0-9-]+\/v1\/worker\/jobs\/j-[0-9a-f]{16}\/result$/.test(u)), "the windows came through research-1's relay: " + JSON.stringify(relayed.slice(0, 3)));
await ag.shot("surveillance-en");
const chart = await ag.page.$("#hs-chart");
await chart.screenshot({ path: path.join(shots, "health-chart-en.png") });
// Another series, chosen from the selectors; the address follows; the alert table row leads back.
await ag.page.selectOption("#hs-region", "010");
await ag.page.waitForFunction(() => document.getElementById("hs-series-h").dataset.region === "010");
check(ag.page.url().includes("region=010"), "the address names the chosen series: " + ag.page.url());
const other = await surveillanceShown(ag);
const otherWindows = new Set(other.alerts.filter((a) => a[1] === other.syndrome && a[2] === other.region).map((a) => a[0]));
check(other.markers.length === otherWindows.size && other.markers.every((w) => otherWindows.has(w)), "another series' markers are its own alerts");
await ag.page.click('#hs-alert-table tr[data-region="013"] button.link');
await ag.page.waitForFunction(() => document.getElementById("hs-series-h").dataset.region === "013");
check((await ag.page.$$("#hs-alert-table tr.current")).length === shown.alerts.filter((a) => a[1] === "ili" && a[2] === "013").length, "the table marks the shown series' alerts");

// ---------------------------------------------------------------- pharma's drug-safety table
const ph = await person("pharma-1.safety", env.RESEARCH_URL);
check(!(await ph.text("#nav")).includes("Surveillance"), "a pharma researcher is not offered surveillance");
await ph.go(`#/studies?contract=${DRUG}`, "studies");
await ph.page.waitForSelector("table.drug-safety", { timeout: 120000 });
const pairs = await ph.page.$$eval("table.drug-safety tbody tr", (rows) =>
  rows.map((r) => ({
    pair: r.dataset.pair,
    signal: r.dataset.signal === "true",
    suppressed: r.dataset.suppressed === "true",
    cells: ["a", "b", "c", "d"].map((k) => {
      const td = r.querySelector(`td[data-col="${k}"]`);
      return td ? Number(td.textContent.replace(/[^0-9]/g, "")) : null;
    }),
    prr: (r.querySelector('td[data-col="prr"]') || {}).textContent || "",
  })),
);
const ibu = pairs.find((p) => p.pair === "ibuprofen>gi_bleeding");
check(ibu && ibu.signal && !ibu.suppressed, "ibuprofen → gi_bleeding is flagged: " + JSON.stringify(ibu));
const acet = pairs.find((p) => p.pair === "acetaminophen>gi_bleeding");
check(acet && !acet.signal, "acetaminophen → gi_bleeding is not flagged: " + JSON.stringify(acet));
check(pairs.some((p) => p.suppressed), "suppressed pairs are marked");
check(!(await ph.page.$(".result[data-kind='drug_safety'] table.cells")), "no count cells for a drug-safety result");
await ph.shot("drug-safety-en");
const table = await ph.page.$("table.drug-safety");
await table.screenshot({ path: path.join(shots, "health-drug-safety-table-en.png") });

// ---------------------------------------------------------------- Chinese, and a phone's width
const allowed = /([a-z0-9-]+\.[a-z0-9_-]+|[a-z_]+\.[a-z_]+|[0-9a-f]{16,}|medspace|hospital-[a-z]|research-\d|regulator|[acj]-[0-9a-f]{16}|L[1-4]|EARS|C[123]|PRR|ROR|IC025|IC|CSV|Benjamini|Hochberg|Yates|SHA-256|ε|English|\bk\b|"[a-z_]+"|[a-z_]+(?=":)|[A-Za-z]+-[A-Za-z0-9]+)/g;
async function noEnglish(p, hash, name, shotName) {
  await p.go(hash, name);
  await p.page.waitForTimeout(300);
  const leftovers = await p.page.evaluate((src) => {
    const re = new RegExp(src, "g");
    const out = [];
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const el = n.parentElement;
      if (!el || el.closest("script,style,pre,textarea,[translate=no]") || (el.offsetParent === null && el.tagName !== "OPTION" && !el.closest("svg"))) continue;
      const rest = n.textContent.replace(re, "");
      if (/[A-Za-z]{2,}/.test(rest)) out.push(n.textContent.trim().slice(0, 60));
    }
    return out;
  }, allowed.source);
  check(leftovers.length === 0, `zh ${shotName}: untranslated ${JSON.stringify(leftovers)}`);
  await p.shot(shotName);
}
await ag.page.selectOption("#locale", "zh");
await noEnglish(ag, "#/health", "health", "list-zh");
await noEnglish(ag, `#/health?contract=${CONTRACT}`, "health", "surveillance-zh");
await (await ag.page.$("#hs-chart")).screenshot({ path: path.join(shots, "health-chart-zh.png") });
await ph.page.selectOption("#locale", "zh");
await noEnglish(ph, `#/studies?contract=${DRUG}`, "studies", "drug-safety-zh");
await ag.page.setViewportSize({ width: 390, height: 844 });
await ag.go(`#/health?contract=${CONTRACT}`, "health");
await ag.shot("surveillance-zh-phone");
await ph.page.setViewportSize({ width: 390, height: 844 });
await ph.go(`#/studies?contract=${DRUG}`, "studies");
await ph.shot("drug-safety-zh-phone");

check(external.length === 0, "no request left the node: " + JSON.stringify(external.slice(0, 3)));
check(pageErrors.length === 0, "no errors in the pages: " + JSON.stringify(pageErrors.slice(0, 3)));
await browser.close();
console.log("RESULT " + JSON.stringify({ ok: failures.length === 0, failures, shown, pairs, loadMs }));
