// Drives the open pool in Chromium (playwright-core) for crates/cli/tests/console_openpool.rs:
// hospital-a's steward plans and publishes a release, research-1's researcher asks for it, the
// steward approves, the researcher downloads and verifies it (through the relay of research-1's
// node) and attests its destruction; the regulator's auditor sees the copy awaiting
// destruction. Input by environment; prints one JSON line `RESULT {...}`.
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
  await page.waitForSelector("body[data-ready]:not([data-ready='signin'])", { state: "attached", timeout: 60000 });
  const p = {
    page,
    user,
    origin,
    async ready(name, timeout = 60000) {
      await page.waitForSelector(`body[data-ready="${name}"]`, { timeout, state: "attached" });
    },
    async go(hash, name) {
      await page.goto("about:blank");
      await page.goto(origin + "/console/" + hash);
      await p.ready(name);
    },
    async shot(name) {
      await page.screenshot({ path: path.join(shots, "openpool-" + name + ".png"), fullPage: true });
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
  console.log("RESULT " + JSON.stringify({ ok: false, failures: [...failures, String(e && e.stack ? e.stack : e), ...pageErrors], pageErrors, timing: {} }));
  process.exit(1);
};
process.on("unhandledRejection", fail);
process.on("uncaughtException", fail);

// ---------------------------------------------------------------- the steward plans and publishes
const st = await person("hospital-a.steward", env.CONSOLE_URL);
await st.go("#/hospital", "hospital");
check(!!(await st.page.$("#release-plan")), "the steward's hospital page offers to build a release");
check((await st.page.inputValue("#rl-spec")).includes('"dataset": "hospital-a.cdm"'), "the specification is prefilled for the hospital's dataset");
check(!!(await st.page.$("#no-releases")), "no release yet");
// A broken specification is named in the error summary, nothing is asked of the node.
const good = await st.page.inputValue("#rl-spec");
await st.page.fill("#rl-spec", "{ not json");
await st.page.click("#rl-plan");
await st.page.waitForSelector("#rl-error-summary");
check((await st.text("#rl-error-summary")).includes("not valid JSON"), "a broken specification is named: " + (await st.text("#rl-error-summary")));
await st.page.fill("#rl-spec", good);
const planned = Date.now();
await st.page.click("#rl-plan");
await st.page.waitForSelector("#rl-plan-result, #rl-status .notice", { timeout: 300000 });
if (!(await st.page.$("#rl-plan-result"))) {
  await st.shot("plan-failure");
  throw new Error("no plan: " + (await st.text("#rl-status")));
}
const planMs = Date.now() - planned;
const k = Number(await st.page.getAttribute("#rl-plan-result", "data-k"));
const l = Number(await st.page.getAttribute("#rl-plan-result", "data-l"));
check(k >= 5 && l >= 2, `the plan reaches k ≥ 5 and l ≥ 2: k=${k} l=${l}`);
check((await st.page.$$("#rl-plan-result svg.chart rect.bar")).length >= 1, "the plan draws the classes' sizes");
check((await st.text("#rl-plan-result")).includes("Information lost") && (await st.text("#rl-plan-result")).includes("year_of_birth"), "the plan shows the chosen levels and the information lost");
await st.shot("plan-en");
await st.page.click("#rl-publish");
await st.page.waitForSelector("#rl-published, #rl-publish-status .notice", { timeout: 60000 });
check(!!(await st.page.$("#rl-published")), "the release is published: " + (await st.text("#rl-publish-status")));
await st.page.waitForSelector('section.release[data-dataset="hospital-a.open"]', { timeout: 30000 });
check((await st.text('section.release[data-dataset="hospital-a.open"] .protect')).includes(`k = ${k}`), "the hospital page shows the published release's k");
await st.shot("hospital-en");

// ---------------------------------------------------------------- the researcher asks for it
const relayed = [];
const res = await person("research-1.researcher", env.RESEARCH_URL);
res.page.on("request", (r) => {
  if (r.url().includes("/console/relay/")) relayed.push(r.method() + " " + r.url().replace(res.origin, ""));
});
check((await res.text("#nav")).includes("Open pool"), "the researcher's nav offers the open pool");
await res.go("#/openpool", "openpool");
const card = 'section.release[data-dataset="hospital-a.open"]';
check(!!(await res.page.$(card)), "the open pool lists hospital-a's release");
check((await res.page.getAttribute(`${card} .protect`, "data-k")) === String(k), "the open pool shows the release's k");
check((await res.page.getAttribute(`${card} .protect`, "data-l")) === String(l), "the open pool shows the release's l");
check(/%/.test(await res.text(card)), "the risks are shown as percentages");
await res.shot("pool-en");
await res.page.click(`${card} button.ask-button`);
await res.page.waitForSelector(`${card} div.contract[data-status="pending"], ${card} .ask-status .notice`, { timeout: 60000 });
if (!(await res.page.$(`${card} div.contract[data-status="pending"]`))) throw new Error("not requested: " + (await res.text(`${card} .ask-status`)));
const contract = await res.page.getAttribute(`${card} div.contract`, "data-contract");
check((await res.text(`${card} div.contract`)).includes("steward of hospital-a"), "the request waits for hospital-a's steward");
await res.shot("requested-en");

// ---------------------------------------------------------------- the steward approves
await st.go("#/queue", "queue");
const decision = `section.decision[data-contract="${contract}"]`;
check(!!(await st.page.$(decision)), "the steward's queue shows the open-pool request");
check((await st.text(decision)).includes("A published release, whole"), "the queue says what an open-pool request receives");
await st.shot("queue-en");
// A request over data below the quality floor shows every reviewer its failing check.
const flagged = `section.decision[data-contract="${process.env.FLAGGED}"] #quality-${process.env.FLAGGED}`;
check(!!(await st.page.$(flagged)), "the queue flags the request over data below the quality floor");
if (await st.page.$(flagged)) {
  const said = await st.text(flagged);
  check(said.includes("condition_occurrence.condition_concept_id") && said.includes("invalid or unmapped codes 100.0 %") && said.includes("10.0 %"), "the flag names the field, the check, the figure and the floor: " + said);
  await st.page.$eval(flagged, (e) => e.scrollIntoView());
  await st.page.screenshot({ path: path.join(shots, "openpool-quality-flag-en.png") });
}
await st.page.click(`${decision} button.approve`);
await st.page.waitForSelector(`${decision} .decide-status .done, ${decision} .decide-status .notice`, { timeout: 60000 });
check(!!(await st.page.$(`${decision} .decide-status .done`)), "the steward approves: " + (await st.text(`${decision} .decide-status`)));

// ---------------------------------------------------------------- download and verify
const active = `div.contract[data-contract="${contract}"][data-status="active"]`;
await res.page.waitForSelector(active, { timeout: 60000 });
await res.page.click(`#download-${contract}`);
await res.page.waitForSelector(`#dl-${contract} .download[data-verified="true"], #dl-${contract} [data-verified="false"]`, { timeout: 180000 });
if (!(await res.page.$(`#dl-${contract} .download[data-verified="true"]`))) {
  await res.shot("download-failure");
  throw new Error("not verified: " + (await res.text(`#dl-${contract}`)) + " relayed: " + JSON.stringify(relayed));
}
const files = await res.page.$$eval(`#dl-${contract} tr[data-file]`, (rows) => rows.map((r) => [r.dataset.file, r.dataset.verified, !!r.querySelector("a[download]")]));
check(files.length >= 6 && files.every(([, v, a]) => v === "true" && a), "every file verified and offered: " + JSON.stringify(files));
for (const f of ["manifest.json", "risk_report.json", "data_dictionary.json", "person.csv", "person.parquet"]) check(files.some(([n]) => n === f), `${f} is offered`);
const report = await res.text(`#dl-${contract} .report`);
check(report.includes("Groups of indistinguishable persons") && report.includes("year_of_birth"), "the risk report is rendered: " + report.slice(0, 200));
check((await res.page.$$(`#dl-${contract} .report svg.chart rect.bar`)).length >= 1, "the report draws the classes' sizes");
check(relayed.some((u) => u === "POST /console/relay/hospital-a/v1/worker/releases/deliver"), "the manifest came through research-1's relay: " + JSON.stringify(relayed));
check(relayed.some((u) => /^GET \/console\/relay\/hospital-a\/v1\/worker\/releases\/hospital-a\.open\/files\/person\.csv$/.test(u)), "the files came through research-1's relay");
const [download] = await Promise.all([res.page.waitForEvent("download"), res.page.click(`#dl-${contract} tr[data-file="person.csv"] a`)]);
await download.saveAs(env.CSV_OUT);
await res.shot("downloaded-en");
// The copy appears among the institution's (a block later, without a reload).
await res.page.waitForSelector('#op-copies tr[data-state="held"]', { timeout: 60000 });
const delivery = await res.page.getAttribute('#op-copies tr[data-state="held"]', "data-delivery");
check((await res.text(`#op-copies tr[data-delivery="${delivery}"]`)).includes("due"), "the copy shows its due date");

// ---------------------------------------------------------------- the auditor's view
const aud = await person("regulator.auditor", env.CONSOLE_URL);
await aud.page.goto("about:blank");
await aud.page.goto(aud.origin + "/console/explorer.html");
await aud.ready("explorer");
const row = `#release-copies tr[data-delivery="${delivery}"]`;
check(!!(await aud.page.$(row)), "the auditor sees the copy awaiting destruction");
check((await aud.page.getAttribute(row, "data-overdue")) === "false", "the copy is not overdue");
check((await aud.text(row)).includes("research-1") && (await aud.text(row)).includes("hospital-a.open"), "the auditor sees who holds what");
check((await aud.text("#destruction")).includes("block their recipient's new requests"), "the auditor is told overdue copies block new requests");
await aud.page.screenshot({ path: path.join(shots, "openpool-auditor-en.png"), fullPage: true });

// ---------------------------------------------------------------- destruction attested
await res.shot("copies-en");
await res.page.click(`#attest-${delivery}`);
await res.page.waitForSelector(`#op-copies tr[data-delivery="${delivery}"][data-state="destroyed"], #op-copies .attest-status .notice`, { timeout: 60000 });
check(!!(await res.page.$(`#op-copies tr[data-delivery="${delivery}"][data-state="destroyed"]`)), "the destruction is attested: " + (await res.text("#op-copies")));
await res.shot("destroyed-en");
await aud.page.goto("about:blank");
await aud.page.goto(aud.origin + "/console/explorer.html");
await aud.ready("explorer");
check(!(await aud.page.$(row)), "the destroyed copy no longer awaits destruction");
// The steward sees the delivery, destroyed.
await st.go("#/hospital", "hospital");
check(!!(await st.page.$(`#release-deliveries tr[data-delivery="${delivery}"][data-state="destroyed"]`)), "the steward sees the delivery, destroyed");
await st.shot("hospital-delivered-en");

// ---------------------------------------------------------------- Chinese, and a phone's width
const allowed = /([a-z0-9-]+\.[a-z0-9_-]+|[a-z_]+\.[a-z_]+|[0-9a-f]{16,}|medspace|hospital-[a-z]|research-\d|regulator|[acj]-[0-9a-f]{16}|L[1-4]|English|k = \d+|l = \d+|\(k\)|\(l\)|[kl]、[kl]|\bk\b|\bl\b|MB|kB|"[a-z_]+"|[a-z_]+(?=":)|[A-Za-z]+-[A-Za-z0-9]+)/g;
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
await res.page.selectOption("#locale", "zh");
await noEnglish(res, "#/openpool", "openpool", "pool-zh");
await st.page.selectOption("#locale", "zh");
await noEnglish(st, "#/hospital", "hospital", "hospital-zh");
await res.page.setViewportSize({ width: 390, height: 844 });
await res.go("#/openpool", "openpool");
await res.shot("pool-zh-phone");
await res.page.setViewportSize({ width: 1200, height: 900 });
await res.page.selectOption("#locale", "en");
await st.page.selectOption("#locale", "en");

// ---------------------------------------------------------------- page loads
const timing = {};
for (const [p, hash, name] of [
  [res, "#/openpool", "openpool"],
  [st, "#/hospital", "hospital"],
]) {
  const samples = [];
  for (let i = 0; i < 7; i++) {
    const t0 = Date.now();
    await p.go(hash, name);
    samples.push(Date.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const q = (x) => samples[Math.min(samples.length - 1, Math.ceil(x * samples.length) - 1)];
  timing[name] = { p50: q(0.5), p95: q(0.95), n: samples.length };
}

check(external.length === 0, "no request left the node: " + JSON.stringify(external.slice(0, 3)));
check(pageErrors.length === 0, "no errors in the pages: " + JSON.stringify(pageErrors.slice(0, 3)));
await browser.close();
console.log("RESULT " + JSON.stringify({ ok: failures.length === 0, failures, timing, contract, delivery, k, l, files: files.map(([n]) => n), planMs }));
