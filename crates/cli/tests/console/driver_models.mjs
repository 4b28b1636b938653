// Drives the console's study builder and result views for models and survival curves in
// Chromium (playwright-core) for crates/cli/tests/console_models.rs. The console's own modules
// are served here as the node serves them (same files, same `default-src 'self'` policy); the
// builder talks to a stub of the node's catalog and status, and the released results are fixed
// `ResultDoc`s rendered by `researcher.js`'s `resultView`. Prints one line `RESULT {...}`.
import { createRequire } from "node:module";
import fs from "node:fs";
import http from "node:http";
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
const MIME = { js: "text/javascript", css: "text/css", html: "text/html", json: "application/json" };
const server = http.createServer((req, res) => {
  const name = path.basename(new URL(req.url, "http://x").pathname) || "page.html";
  const file = path.join(env.ASSETS, name);
  if (!fs.existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": MIME[name.split(".").pop()] || "application/octet-stream", "content-security-policy": "default-src 'self'" });
  res.end(fs.readFileSync(file));
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${server.address().port}`;
const model = JSON.parse(fs.readFileSync(env.MODEL_DOC, "utf8"));
const survival = JSON.parse(fs.readFileSync(env.SURVIVAL_DOC, "utf8"));
const vertical = JSON.parse(fs.readFileSync(env.VERTICAL_DOC, "utf8"));
const overlap = JSON.parse(fs.readFileSync(env.OVERLAP_DOC, "utf8"));
// The consortium's default classification (its sensitive codes), as `/v1/status` carries it.
const classification = JSON.parse(fs.readFileSync(env.CLASSIFICATION, "utf8"));
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
const pageErrors = [];

async function open(locale, width = 1200) {
  const context = await browser.newContext({ viewport: { width, height: 900 }, acceptDownloads: true });
  await context.addInitScript((l) => localStorage.setItem("medspace.locale", l), locale);
  const page = await context.newPage();
  page.on("requestfailed", (r) => pageErrors.push(`${locale}: ${r.url()} failed`));
  page.on("response", (r) => r.status() >= 400 && !r.url().endsWith("/favicon.ico") && pageErrors.push(`${locale}: ${r.url()} ${r.status()}`));
  page.on("pageerror", (e) => pageErrors.push(`${locale}: ${e}`));
  page.on("console", (m) => m.type() === "error" && !/favicon|Failed to load resource/.test(m.text()) && pageErrors.push(`${locale}: ${m.text()}`));
  await page.goto(origin + "/page.html");
  return page;
}

// The builder, against a stub of the node's catalog and policy.
async function builder(page) {
  await page.evaluate(async (classification) => {
    const ui = await import("./ui.js");
    const f = (name, level) => ({ name, level, missing_ppm: 0, invalid_ppm: 0 });
    const tb = (name, fields) => ({ name, rows: 8, duplicate_ppm: 0, implausible_ppm: 0, fields });
    const coded = (t, code, d) => [f("person_id", "L2"), f(code, "L3"), f(d, "L2")];
    const tables = [
      tb("person", [f("person_id", "L2"), f("year_of_birth", "L2"), f("gender_source_value", "L2")]),
      tb("condition_occurrence", coded("condition_occurrence", "condition_source_value", "condition_start_date")),
      tb("measurement", [...coded("measurement", "measurement_source_value", "measurement_date"), f("value_as_number", "L3")]),
      tb("death", [f("person_id", "L2"), f("death_date", "L3")]),
      tb("visit_occurrence", [f("person_id", "L2"), f("visit_start_date", "L2")]),
    ];
    const datasets = ["hospital-a", "hospital-b"].map((owner) => ({ owner, published_height: 3, description: { id: owner + ".cdm", title: owner, version: 1, tables } }));
    const policy = { requirements: [{ level: "L2", role: "steward", scope: "per_owner" }, { level: "L3", role: "data_committee", scope: "any" }], classification };
    ui.state.principal = { kind: "user", role: "researcher", id: "research-1.researcher" };
    ui.state.client = { get: async (p) => (p === "/v1/catalog" ? { datasets } : p === "/v1/status" ? { policy, height: 3 } : { contracts: [] }) };
    const R = await import("./researcher.js");
    await R.pages.find((x) => x.id === "study").render(new URLSearchParams());
  }, classification);
  await page.waitForSelector("#spec-json");
}
const spec = async (page) => JSON.parse(await page.textContent("#spec-json"));
// The spec's text without the preview's indentation (key order kept).
const compact = async (page) => JSON.stringify(await spec(page));

// ---- English: a logistic model as in ARCHITECTURE.md
const en = await open("en");
await builder(en);
await en.fill("#index", "2025-01-01");
await en.selectOption("#agg", "model");
check(await en.isVisible("#model-box"), "the model box shows");
check(!(await en.isVisible("#group-box")), "a model hides group by");
await en.selectOption("#family", "logistic");
await en.selectOption("#out-kind", "condition");
await en.fill("#out-code", "44054006");
check((await en.inputValue("#cov-1-kind")) === "age", "the first covariate starts as age");
await en.click("#add-covariate");
await en.selectOption("#cov-2-kind", "female");
check(!(await en.isVisible("#cov-2-code")), "female takes no code");
await en.click("#add-covariate");
await en.selectOption("#cov-3-kind", "measurement");
check(await en.isVisible("#cov-3-lower"), "a measurement takes its clamps");
check(!(await en.isVisible("#cov-3-days")), "a measurement takes no window");
await en.fill("#cov-3-code", "39156-5");
await en.fill("#cov-3-lower", "12");
await en.fill("#cov-3-upper", "60");
await en.click("#add-covariate");
await en.fill("#cov-4-code", "38341003");
await en.fill("#iters", "25");
const modelSpec = await spec(en);
const modelText = await compact(en);
const modelLevel = await en.textContent("#preview-level");
// A highly sensitive code (HIV infection) in the cohort: the preview says L4 and why, as the
// ledger will when it records the request.
check(!(await en.isVisible("#preview-sensitive")), "no sensitive code yet");
await en.fill("#conditions", "86406008");
const sensitiveLevel = await en.textContent("#preview-level");
const sensitiveNote = (await en.isVisible("#preview-sensitive")) && (await en.textContent("#preview-sensitive"));
await en.screenshot({ path: path.join(shots, "models-builder-sensitive.png"), fullPage: true });
await en.fill("#conditions", "");
check(/^L4/.test(sensitiveLevel), `a sensitive code makes the preview L4: ${sensitiveLevel}`);
check(sensitiveNote && sensitiveNote.includes("86406008"), `the preview names the sensitive code: ${sensitiveNote}`);
check(!(await en.isVisible("#preview-sensitive")), "the note leaves with the code");
const modelReads = await en.$$eval("#preview-reads tbody tr td:first-child", (x) => x.map((e) => e.textContent));
await en.screenshot({ path: path.join(shots, "models-builder-model.png"), fullPage: true });
// A Poisson model with all kinds of covariates.
await en.selectOption("#family", "poisson");
await en.selectOption("#out-kind", "count_within");
await en.fill("#out-code", "44054006");
await en.fill("#out-days", "365");
await en.selectOption("#cov-4-kind", "above");
await en.selectOption("#cov-4-op", ">");
await en.fill("#cov-4-value", "6.5");
await en.fill("#cov-4-code", "4548-4");
await en.click("#add-covariate");
await en.selectOption("#cov-5-kind", "condition_within");
await en.fill("#cov-5-code", "38341003");
await en.fill("#cov-5-days", "90");
await en.check("#mdp");
const poissonSpec = await spec(en);
const poissonReads = await en.$$eval("#preview-reads tbody tr td:first-child", (x) => x.map((e) => e.textContent));
// Invalid: Poisson with a yes/no outcome and no covariates.
await en.selectOption("#out-kind", "condition");
for (const i of [5, 4, 3, 2, 1]) await en.click(`#cov-${i}-remove`);
check((await en.$$("#covariates fieldset")).length === 0, "every covariate removed");
await en.click("#submit-study");
await en.waitForSelector("#error-summary");
const invalid = await en.$$eval("#error-summary li", (x) => x.map((e) => e.textContent));
const invalidFocus = await en.evaluate(() => document.activeElement && document.activeElement.id);
await en.click("#error-summary li:last-child a");
const linkFocus = await en.evaluate(() => document.activeElement && document.activeElement.id);
await en.screenshot({ path: path.join(shots, "models-builder-invalid.png"), fullPage: true });
// Survival curves by sex.
await en.selectOption("#agg", "survival");
check(await en.isVisible("#survival-box"), "the survival box shows");
check(await en.isVisible("#group-box"), "survival groups");
check(!(await en.isVisible("#ecode")), "death takes no code");
await en.fill("#horizon", "1825");
await en.fill("#bin", "30");
await en.fill("#index", "2020-01-01");
const survivalSpec = await spec(en);
const survivalText = await compact(en);
const survivalReads = await en.$$eval("#preview-reads tbody tr td:first-child", (x) => x.map((e) => e.textContent));
await en.selectOption("#event", "condition");
await en.fill("#ecode", "44054006");
await en.check("#gage");
await en.check("#sdp");
const survivalSpec2 = await spec(en);
const survivalReads2 = await en.$$eval("#preview-reads tbody tr td:first-child", (x) => x.map((e) => e.textContent));
await en.fill("#bin", "0");
await en.click("#submit-study");
await en.waitForSelector("#error-summary");
const invalidSurvival = await en.$$eval("#error-summary li", (x) => x.map((e) => e.textContent));
await en.screenshot({ path: path.join(shots, "models-builder-survival.png"), fullPage: true });

// ---- the released results
async function results(page, locale) {
  await page.evaluate(
    async ([m, s]) => {
      const ui = await import("./ui.js");
      const R = await import("./researcher.js");
      ui.show(ui.h("h1", {}, "…"), ui.h("section", { class: "card job" }, R.resultView({ id: m.job }, m)), ui.h("section", { class: "card job" }, R.resultView({ id: s.job }, s, '{"aggregate":{"survival":{"dp":false}}}')));
    },
    [model, survival],
  );
  const out = {};
  out.terms = await page.$$eval(`.result[data-job="${model.job}"] table.terms tbody tr`, (x) => x.map((r) => [r.dataset.term, ...[...r.cells].map((c) => c.textContent)]));
  out.forest = await page.$$eval(`.result[data-job="${model.job}"] svg.forest`, (x) => x.map((s) => ({ title: s.querySelector("title").textContent, desc: s.querySelector("desc").textContent, rows: s.querySelectorAll("rect.point").length, labelledBy: !!document.getElementById(s.getAttribute("aria-describedby")) })));
  out.curves = await page.$$eval(`.result[data-job="${survival.job}"] table.curves tbody tr`, (x) => x.map((r) => [r.dataset.group, ...[...r.cells].map((c) => c.textContent)]));
  out.km = await page.$$eval(`.result[data-job="${survival.job}"] svg.km`, (x) => x.map((s) => ({ title: s.querySelector("title").textContent, paths: s.querySelectorAll("path.curve").length, bands: s.querySelectorAll("polygon.band").length, logRank: (s.querySelector("#log-rank-line") || {}).textContent || "" })));
  out.survivalText = await page.textContent(`.result[data-job="${survival.job}"]`);
  out.points = await page.$$eval(`.result[data-job="${survival.job}"] table.points tbody tr`, (x) => x.length);
  // Counted once: the model's hospitals all matched; the curves' result names the pair that did not.
  const once = (job) => page.$$eval(`.result[data-job="${job}"] [data-once]`, (x) => x.map((e) => e.dataset.once + ": " + e.textContent));
  out.onceModel = await once(model.job);
  out.onceSurvival = await once(survival.job);
  check(out.onceModel.length === 1 && out.onceModel[0].startsWith("all: "), `${locale}: counted once: ${out.onceModel}`);
  check(out.onceSurvival.length === 1 && out.onceSurvival[0].startsWith("missing: ") && out.onceSurvival[0].includes("hospital-c") && out.onceSurvival[0].includes("hospital-b"), `${locale}: not counted once: ${out.onceSurvival}`);
  const csv = async (job) => {
    const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#csv-" + job)]);
    return fs.readFileSync(await dl.path(), "utf8");
  };
  out.modelCsv = await csv(model.job);
  out.survivalCsv = await csv(survival.job);
  const m = await page.$(`.result[data-job="${model.job}"]`);
  await m.screenshot({ path: path.join(shots, `models-result-model-${locale}.png`) });
  const s = await page.$(`.result[data-job="${survival.job}"]`);
  await s.screenshot({ path: path.join(shots, `models-result-survival-${locale}.png`) });
  // No chart text overflows its chart.
  out.overflow = await page.evaluate(() =>
    [...document.querySelectorAll("svg.chart")].flatMap((svg) => {
      const o = svg.getBoundingClientRect();
      return [...svg.querySelectorAll("text")]
        .filter((t) => {
          const b = t.getBoundingClientRect();
          return b.left < o.left - 1 || b.top < o.top - 1 || b.right > o.right + 1 || b.bottom > o.bottom + 1;
        })
        .map((t) => t.textContent);
    }),
  );
  check(out.overflow.length === 0, `${locale}: chart text overflows: ${out.overflow.join(" | ")}`);
  if (locale === "zh") {
    const left = await english(page);
    check(left.length === 0, "zh model and survival results: untranslated " + JSON.stringify(left));
  }
  // A vertical study's cells and an overlap's pairs.
  await page.evaluate(
    async ([v, o]) => {
      const ui = await import("./ui.js");
      const R = await import("./researcher.js");
      ui.show(ui.h("h1", {}, "…"), ui.h("section", { class: "card job" }, R.resultView({ id: v.job }, v)), ui.h("section", { class: "card job" }, R.resultView({ id: o.job }, o)));
    },
    [vertical, overlap],
  );
  out.vertical = await page.$$eval(`.result[data-job="${vertical.job}"] table.vertical tbody tr`, (x) => x.map((r) => [r.dataset.cell, ...[...r.cells].map((c) => c.textContent)]));
  out.overlap = await page.$$eval(`.result[data-job="${overlap.job}"] table.overlap tbody tr`, (x) => x.map((r) => [r.dataset.pair, ...[...r.cells].map((c) => c.textContent)]));
  check(out.vertical.length === 2 && out.vertical[0][0] === "all|true" && out.vertical[0][2] === "26", `${locale}: vertical cells: ${JSON.stringify(out.vertical)}`);
  check(out.vertical[0][1].includes("diabetes"), `${locale}: the condition is named: ${JSON.stringify(out.vertical)}`);
  check(out.overlap.length === 3 && out.overlap[0][2] === "12" && !/\d/.test(out.overlap[2][2].replace(/10/, "")), `${locale}: overlap pairs: ${JSON.stringify(out.overlap)}`);
  check((await page.$$(`.result[data-job="${vertical.job}"] svg.chart`)).length === 1, `${locale}: the vertical study's chart`);
  out.verticalCsv = await csv(vertical.job);
  out.overlapCsv = await csv(overlap.job);
  const vt = await page.$(`.result[data-job="${vertical.job}"]`);
  await vt.screenshot({ path: path.join(shots, `models-result-vertical-${locale}.png`) });
  const ov = await page.$(`.result[data-job="${overlap.job}"]`);
  await ov.screenshot({ path: path.join(shots, `models-result-overlap-${locale}.png`) });
  if (locale === "zh") {
    const left = await english(page);
    check(left.length === 0, "zh vertical and overlap results: untranslated " + JSON.stringify(left));
  }
  return out;
}
const enResults = await results(en, "en");
const zh = await open("zh");
// No English left on the Chinese pages (as console_study.rs checks its pages), charts included.
const allowed = /([a-z0-9-]+\.[a-z0-9_-]+|[a-z_]+\.[a-z_]+|[0-9a-f]{16,}|SNOMED CT|RxNorm|LOINC|CSV|hospital-[a-z]|[cj]-[0-9a-f]{16}|L[1-4]|ε|English|"[a-z_]+"|[a-z_]+(?=":)|[A-Za-z]+-[A-Za-z0-9]+)/g;
const english = (page) =>
  page.evaluate((src) => {
    const re = new RegExp(src, "g");
    const out = [];
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const el = n.parentElement;
      if (!el || el.closest("script,style,pre,[translate=no]")) continue;
      if (/[A-Za-z]{2,}/.test(n.textContent.replace(re, ""))) out.push(n.textContent.trim().slice(0, 60));
    }
    for (const e of document.querySelectorAll("[aria-label]")) if (/[A-Za-z]{2,}/.test(e.getAttribute("aria-label").replace(re, ""))) out.push("aria-label: " + e.getAttribute("aria-label"));
    return out;
  }, allowed.source);
const zhResults = await results(zh, "zh");
const left1 = await english(zh);
check(left1.length === 0, "zh results: untranslated " + JSON.stringify(left1));
await builder(zh);
await zh.selectOption("#agg", "model");
const left2 = await english(zh);
check(left2.length === 0, "zh model builder: untranslated " + JSON.stringify(left2));
await zh.selectOption("#agg", "survival");
await zh.selectOption("#event", "condition");
const left3 = await english(zh);
check(left3.length === 0, "zh survival builder: untranslated " + JSON.stringify(left3));
await zh.selectOption("#agg", "model");
await zh.screenshot({ path: path.join(shots, "models-builder-model-zh.png"), fullPage: true });
const zhBuilderText = await zh.textContent("#study-form");
const phone = await open("en", 390);
await results(phone, "phone");

await browser.close();
server.close();
console.log(
  "RESULT " +
    JSON.stringify({
      ok: failures.length === 0 && pageErrors.length === 0,
      failures,
      pageErrors,
      modelSpec,
      modelText,
      survivalText,
      modelLevel,
      modelReads,
      poissonSpec,
      poissonReads,
      invalid,
      invalidFocus,
      linkFocus,
      survivalSpec,
      survivalReads,
      survivalSpec2,
      survivalReads2,
      invalidSurvival,
      en: enResults,
      zh: zhResults,
      zhBuilderText,
    }),
);
