// Drives the console's staff pages in Chromium (playwright-core) for
// crates/cli/tests/console_study.rs: one browser context per person. Input by environment;
// prints one JSON line `RESULT {...}`.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const env = process.env;
const require = createRequire(path.join(env.BROWSER_DIR, "package.json"));
const { chromium } = require("playwright-core");
const origin = env.CONSOLE_URL.split("/console/")[0];
const genesis = env.CONSOLE_URL.split("#genesis=")[1];
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

/// A person in their own browser context, signed in with their key.
async function person(user, locale = "en", url = env.CONSOLE_URL) {
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
  if (locale !== "en") await page.selectOption("#locale", locale);
  await page.setInputFiles("#wallet-file", key(user));
  await page.click("#signin");
  await page.waitForSelector("body[data-ready]:not([data-ready='signin'])", { state: "attached", timeout: 60000 });
  const p = {
    page,
    context,
    user,
    async ready(name, timeout = 60000) {
      await page.waitForSelector(`body[data-ready="${name}"]`, { timeout, state: "attached" });
    },
    async go(hash, name) {
      await page.goto("about:blank");
      await page.goto(origin + "/console/" + hash);
      await p.ready(name);
    },
    async shot(name) {
      await page.screenshot({ path: path.join(shots, "study-" + name + ".png"), fullPage: true });
    },
    async text(sel) {
      return (await page.textContent(sel)) || "";
    },
  };
  people.push(p);
  return p;
}

/// Submits the builder's study and waits for its contract page (or says why it did not come).
async function submitStudy() {
  await res.page.click("#submit-study");
  await res.page.waitForSelector("#contract-status, #study-status .notice, #error-summary", { timeout: 60000 });
  if (!(await res.page.$("#contract-status"))) {
    await res.shot("failure");
    throw new Error("the study was not submitted: " + (await res.text("main")).slice(0, 400));
  }
  await res.ready("studies");
}

const people = [];
const fail = async (e) => {
  for (const p of people) await p.shot("failure-" + p.user).catch(() => {});
  console.log("RESULT " + JSON.stringify({ ok: false, failures: [...failures, String(e && e.stack ? e.stack : e), ...pageErrors], pageErrors, timing: {} }));
  process.exit(1);
};
process.on("unhandledRejection", fail);
process.on("uncaughtException", fail);

// ---------------------------------------------------------------- the researcher's catalog
const relayed = [];
const res = await person("research-1.researcher", "en", env.RESEARCH_URL);
res.page.on("request", (r) => {
  if (r.url().includes("/console/relay/")) relayed.push(r.url());
});
const relayedBodies = [];
res.page.on("response", async (r) => {
  if (!r.url().includes("/console/relay/")) return;
  // A response still arriving as the page closes has no body to read any more.
  const body = await r.text().catch(() => "(page closed)");
  relayedBodies.push(`${r.status()} ${JSON.stringify(r.headers())} ${body.slice(0, 300)}`);
});
await res.ready("catalog");
check((await res.page.$$("section.card[data-dataset]")).length >= 3, "the catalog lists the hospitals' datasets");
check((await res.page.$$("section.card svg.chart rect.bar")).length >= 3, "the catalog draws its charts");
check(!(await res.text("#nav")).includes("Waiting for me"), "the researcher's nav has no reviewer page");
await res.shot("catalog-en");

// ---------------------------------------------------------------- building a study
await res.go("#/study", "study");
await res.page.fill("#study-id", "");
await res.page.click("#submit-study");
await res.page.waitForSelector("#error-summary");
check((await res.text("#error-summary")).includes("identifier"), "a missing study id is named in the error summary");
await res.page.fill("#study-id", "browser-study");
await res.page.fill("#index", "2025-01-01");
await res.page.fill("#amin", "0");
await res.page.fill("#amax", "150");
// One group (everyone): the released number is above the suppression threshold whatever the
// consents of the day.
await res.page.uncheck("#gsex");
await res.page.fill("#budget", "2");
const level = await res.text("#preview-level");
const approvalsNeeded = await res.page.$$eval("#preview-approvals li", (l) => l.map((x) => x.textContent));
check(/^L[1-4]/.test(level), "the level needed is shown before submitting: " + level);
check(approvalsNeeded.length >= 1, "the approvals needed are shown before submitting");
check((await res.text("#spec-json")).includes('"index_date": "2025-01-01"'), "the exact computation is shown");
await res.shot("builder-en");
await submitStudy();
const contract = res.page.url().split("contract=")[1];
check((await res.page.getAttribute("#contract-status", "data-status")) === "pending", "the new contract waits for approvals");
check((await res.page.$$(".approvals li.waiting")).length === approvalsNeeded.length, "the contract waits for the approvals the builder showed");
await res.shot("contract-pending-en");

// ---------------------------------------------------------------- each reviewer approves
const reviewers = {};
let firstQueue = true;
for (const u of USERS_REVIEWING()) {
  const r = await person(u);
  reviewers[u] = r;
  await r.ready("queue");
  const card = `section.decision[data-contract="${contract}"]`;
  if (!(await r.page.$(card))) continue;
  check((await r.text(card)).includes("research-1.researcher") && (await r.text(card)).includes("index_date"), `${u} sees requester and computation`);
  if (firstQueue) {
    // The quality of the data the request touches, per field, from the hospitals' catalog
    // entries: a share for each field the request reads.
    const quality = await r.page.$$eval(`${card} table.fields tbody tr`, (rows) => rows.map((x) => ({ field: x.dataset.field, missing: x.cells[2].textContent, ppm: (x.cells[2].querySelector("[data-ppm]") || {}).dataset })));
    check(quality.length > 0 && quality.every((q) => /\d\.\d %/.test(q.missing) && q.ppm && q.ppm.ppm !== undefined), `${u} sees each field's quality: ${JSON.stringify(quality)}`);
    await r.shot("queue-en");
    firstQueue = false;
  }
  await r.page.click(`${card} button.approve`);
  await r.page.waitForSelector(`${card} .decide-status .done`, { timeout: 60000 });
}
// The researcher's page turned active by itself (a long-poll per block, no reload).
await res.page.waitForSelector('#contract-status[data-status="active"]', { timeout: 60000 });
check((await res.page.$$(".approvals li.waiting")).length === 0, "every approval shows as given");

// ---------------------------------------------------------------- the job and its result
// ε 0.5 per hospital is 1.5 for three: over the policy's per-job cap, refused in words.
await res.page.fill("#job-eps", "0.5");
await res.page.click("#run-job");
await res.page.waitForSelector("#job-status .notice", { timeout: 60000 });
check((await res.text("#job-status .notice")).includes("cap"), "an over-cap job is refused in words: " + (await res.text("#job-status .notice")));
await res.shot("study-over-cap-en");
await res.page.fill("#job-eps", "0.3");
await res.page.click("#run-job");
await res.page.waitForSelector(".result[data-verified='true'], section.job .notice", { timeout: 180000 });
if (!(await res.page.$(".result[data-verified='true']"))) throw new Error("no verified result: " + (await res.text("section.job")) + " relayed: " + JSON.stringify(relayedBodies));
const job = await res.page.getAttribute(".result", "data-job");
const shown = await res.page.$$eval(".result table.cells tbody tr", (rows) =>
  rows.map((r) => {
    const n = r.querySelector(".n");
    return [r.dataset.group, n ? Number(n.textContent.replace(/[^0-9-]/g, "")) : null];
  }),
);
check(shown.length >= 1, "the result's table has rows");
check((await res.page.$$(".result svg.chart rect.bar")).length === shown.length, "the chart draws one bar per group");
check((await res.text("#eps-left")).startsWith("1.100 of 2.000"), "the epsilon left is shown: " + (await res.text("#eps-left")));
const [download] = await Promise.all([res.page.waitForEvent("download"), res.page.click(`#csv-${job}`)]);
await download.saveAs(env.CSV_OUT);
check(relayed.some((u) => /\/console\/relay\/hospital-a\/v1\/worker\/jobs\/j-[0-9a-f]{16}\/result$/.test(u)), "the result came through the researcher's node's relay: " + JSON.stringify(relayed));
await res.shot("result-en");

// ---------------------------------------------------------------- a second study, rejected
await res.go("#/study", "study");
await res.page.fill("#study-id", "browser-study-two");
await res.page.fill("#index", "2025-01-01");
await submitStudy();
const second = res.page.url().split("contract=")[1];
check(second !== contract, "a second contract");
{
  const dc = reviewers["hospital-b.steward"];
  await dc.go("#/queue", "queue");
  const card = `section.decision[data-contract="${second}"]`;
  await dc.page.click(`${card} button.approve`);
  await dc.page.waitForSelector(`${card} .decide-status .done`, { timeout: 60000 });
  // A forbidden action: approving again what is no longer theirs to approve.
  await dc.go(`#/queue?contract=${second}`, "queue");
  check(!!(await dc.page.$(`#not-yours-${second}`)), "the reviewer is told no approval of it waits for them");
  await dc.page.click(`${card} button.approve`);
  await dc.page.waitForSelector(`${card} .decide-status .notice`, { timeout: 60000 });
  const refusal = await dc.text(`${card} .decide-status .notice`);
  check(refusal.includes("already decided"), "the refusal says why in words: " + refusal);
  check(refusal.startsWith("The ledger did not accept this") && !/Error|status \d|at [a-z]+\.js/.test(refusal), "a forbidden approval is refused in words: " + refusal);
  await dc.shot("refused-en");
  const st = reviewers["hospital-a.steward"];
  await st.go("#/queue", "queue");
  await st.page.click(`${card} button.reject`);
  check((await st.text(`${card} .decide-status`)).includes("Give a reason"), "a reject without a reason asks for one");
  await st.page.fill(`#reason-${second}`, "The cohort is broader than the purpose needs.");
  await st.page.click(`${card} button.reject`);
  await st.page.waitForSelector(`${card} .decide-status .done`, { timeout: 60000 });
  await st.go("#/decisions", "decisions");
  check((await st.text("#decisions")).includes(contract) && (await st.text("#decisions")).includes("broader"), "the steward's decisions list both");
  await st.shot("decisions-en");
}
// The steward's hospital: its catalog entry and the contracts covering its data, with what it gave.
{
  const st = reviewers["hospital-a.steward"];
  await st.go("#/hospital", "hospital");
  const row = await st.text(`#hospital-contracts tr[data-contract="${contract}"]`);
  check(row.includes("active") && row.includes("research-1.researcher"), "the steward sees the contract covering its data: " + row);
  check((await st.page.$$("section.card[data-dataset='hospital-a.cdm'] svg.chart")).length === 2, "the steward sees its vault's counts per table");
  check((await st.page.$$("#deliveries tr[data-verified='true']")).length >= 1, "the steward sees the hospital's record delivery, verified");
  await st.shot("hospital-en");
}
await res.page.waitForSelector('#contract-status[data-status="rejected"]', { timeout: 60000 });
check((await res.text("#closing-reason")).includes("broader than the purpose"), "the researcher reads the reason");
await res.shot("rejected-en");

// ---------------------------------------------------------------- no page of another role
await res.go("#/queue", "queue");
check((await res.text("#who")).includes("another role"), "the researcher is refused the reviewer's queue in words");
await res.shot("role-refused-en");
const eth = reviewers["hospital-b.ethics-committee"];
await eth.go("#/study", "study");
check((await eth.text("#who")).includes("another role"), "a reviewer is refused the study builder");
check(!(await eth.text("#nav")).includes("Catalog"), "a reviewer's nav has no researcher page");
const clin = await person("hospital-a.clinician");
await clin.ready("none");
check((await clin.text("#who")).includes("no pages"), "a clinician is told there is no page for them");
await clin.go("#/studies", "studies");
check((await clin.text("#who")).includes("no pages"), "a clinician is refused the researcher's studies: " + (await clin.text("#who")));

// ---------------------------------------------------------------- Chinese
const allowed = /([a-z0-9-]+\.[a-z0-9_-]+|[a-z_]+\.[a-z_]+|[0-9a-f]{16,}|SHA-256|SNOMED CT|RxNorm|LOINC|CSV|medspace|hospital-[a-z]|research-\d|regulator|browser-study(-two|-three)?|[cj]-[0-9a-f]{16}|L[1-4]|ε|English|"[a-z_]+"|[a-z_]+(?=":)|[A-Za-z]+-[A-Za-z0-9]+)/g;
async function noEnglish(p, hash, name, shotName) {
  await p.go(hash, name);
  await p.page.waitForTimeout(300);
  const leftovers = await p.page.evaluate((src) => {
    const re = new RegExp(src, "g");
    const out = [];
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const el = n.parentElement;
      if (!el || el.closest("script,style,pre,[translate=no]") || (el.offsetParent === null && el.tagName !== "OPTION" && !el.closest("svg"))) continue;
      const rest = n.textContent.replace(re, "");
      if (/[A-Za-z]{2,}/.test(rest)) out.push(n.textContent.trim().slice(0, 60));
    }
    for (const e of document.querySelectorAll("[aria-label]:not([translate=no])")) {
      if (/[A-Za-z]{2,}/.test(e.getAttribute("aria-label").replace(re, ""))) out.push("aria-label: " + e.getAttribute("aria-label"));
    }
    return out;
  }, allowed.source);
  check(leftovers.length === 0, `zh ${shotName}: untranslated ${JSON.stringify(leftovers)}`);
  await p.shot(shotName);
}
// A third study, left waiting: the reviewers' pages in Chinese have a request to show.
await res.go("#/study", "study");
await res.page.fill("#study-id", "browser-study-three");
await res.page.fill("#index", "2025-01-01");
await res.page.fill("#mcode", "4548-4");
await res.page.fill("#mvalue", "6.5");
await submitStudy();
const third = res.page.url().split("contract=")[1];
await res.page.selectOption("#locale", "zh");
await noEnglish(res, "#/catalog", "catalog", "catalog-zh");
await noEnglish(res, "#/study", "study", "builder-zh");
await noEnglish(res, "#/studies", "studies", "studies-zh");
await noEnglish(res, `#/studies?contract=${contract}`, "studies", "result-zh");
await noEnglish(res, `#/studies?contract=${second}`, "studies", "rejected-zh");
const st = reviewers["hospital-a.steward"];
await st.page.selectOption("#locale", "zh");
await noEnglish(st, "#/queue", "queue", "queue-zh");
check(!!(await st.page.$(`section.decision[data-contract="${third}"]`)), "the steward's queue shows the waiting study in Chinese");
await noEnglish(st, "#/decisions", "decisions", "decisions-zh");
await noEnglish(st, "#/hospital", "hospital", "hospital-zh");
await noEnglish(st, "#/study", "study", "role-refused-zh");
// A phone's width.
await res.page.setViewportSize({ width: 390, height: 844 });
await res.go("#/study", "study");
await res.shot("builder-zh-phone");
await res.go(`#/studies?contract=${contract}`, "studies");
await res.shot("result-zh-phone");
await res.page.setViewportSize({ width: 1200, height: 900 });
await res.page.selectOption("#locale", "en");
await st.page.selectOption("#locale", "en");

// ---------------------------------------------------------------- keyboard
{
  await res.go("#/study", "study");
  const unlabelled = await res.page.$$eval("main input, main select, main textarea, main button", (els) =>
    els.filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !(e.tagName === "BUTTON" && e.textContent.trim())).map((e) => e.id || e.outerHTML.slice(0, 60)),
  );
  check(unlabelled.length === 0, "every control of the builder is labelled: " + JSON.stringify(unlabelled));
  let reached = false;
  for (let i = 0; i < 80 && !reached; i++) {
    await res.page.keyboard.press("Tab");
    reached = (await res.page.evaluate(() => document.activeElement && document.activeElement.id)) === "submit-study";
  }
  check(reached, "the builder's submit button is reached by Tab");
}

// ---------------------------------------------------------------- page loads
const timing = {};
for (const [p, hash, name] of [
  [res, "#/catalog", "catalog"],
  [res, "#/study", "study"],
  [res, "#/studies", "studies"],
  [res, `#/studies?contract=${contract}`, "studies"],
  [st, "#/queue", "queue"],
  [st, "#/decisions", "decisions"],
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
  timing[hash.includes("contract=") ? "result" : name] = { p50: q(0.5), p95: q(0.95), n: samples.length };
}

check(external.length === 0, "no request left the node: " + JSON.stringify(external.slice(0, 3)));
check(pageErrors.length === 0, "no errors in the pages: " + JSON.stringify(pageErrors.slice(0, 3)));
await browser.close();
console.log("RESULT " + JSON.stringify({ ok: failures.length === 0, failures, timing, job, shown, contract, second }));

function USERS_REVIEWING() {
  return ["hospital-a.steward", "hospital-b.steward", "hospital-c.steward", "hospital-a.data-committee", "hospital-b.ethics-committee", "regulator.auditor"];
}
