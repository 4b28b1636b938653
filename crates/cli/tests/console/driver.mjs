// Drives the console's patient portal in a real Chromium (playwright-core) for
// crates/cli/tests/console.rs. Input by environment; prints one JSON line `RESULT {...}`.
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import os from "node:os";

const env = process.env;
const require = createRequire(path.join(env.BROWSER_DIR, "package.json"));
const { chromium } = require("playwright-core");
const base = env.CONSOLE_URL; // https://127.0.0.1:port/console/#genesis=…
const origin = base.split("/console/")[0];
const shots = env.SHOTS;
fs.mkdirSync(shots, { recursive: true });
const failures = [];
const check = (ok, what) => {
  if (!ok) failures.push(what);
};

const userData = fs.mkdtempSync(path.join(os.tmpdir(), "medspace-chromium-"));
// A fresh profile: launch() makes a new temporary one each time.
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--ignore-certificate-errors",
  ],
});
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 900 } });
const page = await context.newPage();
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));
page.on("console", (m) => {
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
});
const external = [];
page.on("request", (r) => {
  if (!r.url().startsWith(origin) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) external.push(r.url());
});

async function ready(name, timeout = 60000) {
  // A selector, not waitForFunction: the page's CSP forbids the eval that one needs.
  await page.waitForSelector(`body[data-ready="${name}"]`, { timeout, state: "attached" });
}
async function go(hash, name) {
  // A full load each time (from a blank page: a goto that changes only the fragment would not
  // reload): the key is in IndexedDB, the locale in localStorage.
  await page.goto("about:blank");
  await page.goto(origin + "/console/" + hash);
  await ready(name);
}
async function shot(name) {
  await page.screenshot({ path: path.join(shots, name + ".png"), fullPage: true });
}
async function waitText(selector, timeout = 90000) {
  await page.waitForSelector(selector, { timeout });
}

process.on("unhandledRejection", async (e) => {
  try {
    await shot("failure");
  } catch {
    /* no page */
  }
  console.log("RESULT " + JSON.stringify({ ok: false, failures: [...failures, String(e)], pageErrors: consoleErrors, timing: {} }));
  process.exit(1);
});

// Sign-in with the wallet file.
await page.goto(base);
await ready("signin");
check((await page.textContent("#genesis")).includes("expected"), "genesis pinned and accepted");
await shot("signin-en");
// A new wallet made in the browser, saved by the person (signed in with at the end: no
// hospital registered it).
await page.click("#new-wallet");
await page.waitForSelector("#new-wallet-save");
const [walletDownload] = await Promise.all([page.waitForEvent("download"), page.click("#new-wallet-save")]);
const newWallet = path.join(userData, "browser-wallet.json");
await walletDownload.saveAs(newWallet);
{
  const w = JSON.parse(fs.readFileSync(newWallet, "utf8"));
  check(/^[0-9a-f]{64}$/.test(w.secret) && /^pt-[0-9a-f]{64}$/.test(w.patient), "the browser's new wallet has a key and a pseudonym");
}
await page.setInputFiles("#wallet-file", env.WALLET);
await page.click("#signin");
await ready("consents");

// A study invitation: decline it.
const inv = await page.$$("section.card");
check(inv.length >= 1, "a study invitation is shown");
await shot("consents-en");
if (inv.length) {
  await page.click('section.card[aria-labelledby="inv-cli-study"] button.warn');
  await waitText("#consent-status .done");
  check((await page.textContent("main")).includes("You declined this study."), "the study shows as declined");
  check((await page.textContent('section.card[aria-labelledby="inv-cli-study"]')).includes("What it reads"), "the study says what it reads");
}

// L4 opt-in with the general research consent, sent while the consortium cannot finalize: the
// node's answers about the transaction (still pending) and the consortium (two of four
// validators silent) are replaced at the network. Within seconds the page says so, naming them,
// instead of waiting silently; the transaction was sent all the same and is recorded.
await go("#/consents", "consents");
const health = { can_finalize: false, unreachable: ["hospital-b", "hospital-c"], reachable: 2, needed: 3, validators: [{ name: "hospital-a" }, { name: "hospital-b" }, { name: "hospital-c" }, { name: "research-1" }], height: 1, finalized_age_ms: 9000 };
await page.route("**/v1/tx/*", (r) => (r.request().method() === "GET" ? r.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ status: "pending" }) }) : r.continue()));
await page.route("**/v1/consortium", (r) => r.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(health) }));
await page.check("#l4");
const sentAt = Date.now();
await page.click('button[aria-label="Allow: research"]');
await waitText("#consent-status .notice", 20000);
const stalled = await page.textContent("#consent-status");
check(stalled.includes("hospital-b") && stalled.includes("hospital-c") && stalled.includes("cannot finalize"), `the stalled consortium is named: ${stalled}`);
check(Date.now() - sentAt < 10000, `said within seconds (${Date.now() - sentAt} ms)`);
await shot("consents-stalled-en");
await page.unroute("**/v1/tx/*");
await page.unroute("**/v1/consortium");
let recorded = false;
for (let i = 0; i < 30 && !recorded; i++) {
  await go("#/consents", "consents");
  recorded = (await page.textContent("table.consents")).includes("including highly sensitive data");
  if (!recorded) await new Promise((r) => setTimeout(r, 1000));
}
check(recorded, "the L4 opt-in sent while stalled is recorded and shown");

// An access code for hospital-b, its QR code, redeemed by hospital-b, then revoked.
await go("#/grants", "grants");
await page.selectOption("#grantee", "hospital-b");
await page.selectOption("#holder", "hospital-a");
await page.click("#issue");
await waitText("#code-box");
const code = (await page.textContent("#code")).trim();
const grant = await page.getAttribute("#code-box", "data-grant");
check(/^[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$/.test(code), "a code is shown");
check(/^g-[0-9a-f]{16}$/.test(grant || ""), "the grant id is known");
check((await page.$$("#code-box svg.qr path")).length === 1, "the QR code is drawn");
await shot("grants-code-en");
let redeemed = "";
try {
  redeemed = execFileSync(env.MEDSPACE_BIN, ["patient", "--devnet", env.DEVNET_DIR, "redeem", "--grant", grant, "--code", code, "--out", path.join(userData, "bundle.json")], { encoding: "utf8" });
} catch (e) {
  failures.push("redeem failed: " + String(e.stdout || "") + String(e.stderr || ""));
}
await go("#/grants", "grants");
await page.click(`li[data-grant="${grant}"] button.warn`);
await waitText("#grant-status .done");
check((await page.textContent(`li[data-grant="${grant}"]`)).includes("revoked"), "the grant shows revoked");
await shot("grants-en");

// The log: every entry verified in the page.
await go("#/log", "log");
const rows = await page.$$eval("#log tbody tr", (trs) => trs.map((tr) => ({ v: tr.dataset.verified, text: tr.textContent })));
check(rows.length >= 4, "log has the consent, grant, access and revocation entries");
check(rows.every((r) => r.v === "true"), "every entry verified");
check(rows.some((r) => r.text.includes("hospital-b received")), "the access by hospital-b is in the log");
check(rows.some((r) => r.text.includes("(study cli-study): declined")), "the declined study is in the log");
check(rows.some((r) => r.text.includes("You revoked access code")), "the revocation is in the log");
check(rows.some((r) => r.text.includes("for research (study study-two) may have counted you at hospital-a")), "the job that may have counted the patient is in the log");
await shot("log-en");

// A tampered proof shows as not verified.
let intercepted = 0;
const isLog = (url) => /\/v1\/patients\/[^/]+\/log$/.test(url.pathname);
await page.route(isLog, async (route) => {
  intercepted++;
  const resp = await route.fetch();
  const body = await resp.json();
  if (body.log && body.log[0]) {
    const v = body.log[0].value;
    body.log[0].value = v.slice(0, -1) + (v.endsWith("0") ? "1" : "0");
  }
  await route.fulfill({ response: resp, json: body });
});
await go("#/log", "log");
const tampered = await page.$$eval("#log tbody tr", (trs) => trs.map((tr) => tr.dataset.verified));
check(tampered[0] === "false", `the tampered entry is not verified: ${JSON.stringify(tampered)} intercepted=${intercepted}`);
check((await page.textContent("#log")).includes("not verified"), "the page says not verified");
await shot("log-tampered-en");
await page.unroute(isLog);

// The complete record from every hospital, as one FHIR Bundle (validated by the Rust test).
await go("#/record", "record");
const [download] = await Promise.all([page.waitForEvent("download", { timeout: 90000 }), page.click("#download")]);
await download.saveAs(env.RECORD_OUT);
check((await page.textContent("#record-status")).includes("from hospital-a"), "the record names where it came from");
await shot("record-en");

// A forged finality certificate: the block is not verified, and no entry is.
const isHeader = (url) => /\/v1\/blocks\/\d+\/header$/.test(url.pathname);
await page.route(isHeader, async (route) => {
  const resp = await route.fetch();
  const body = Buffer.from(await resp.body());
  body[body.length - 1] ^= 1;
  await route.fulfill({ response: resp, body });
});
await go("#/log", "log");
check((await page.textContent("#block")).includes("could not be verified"), "a forged certificate is refused");
check((await page.$$("#log")).length === 0, "nothing is listed without a verified block");
check(
  (await page.$$eval("#log tbody tr", (trs) => trs.map((tr) => tr.dataset.verified))).every((v) => v === "false"),
  "no entry is verified without a verified block",
);
await shot("log-forged-block-en");
await page.unroute(isHeader);

// Another patient's log: refused, in words.
await go(`#/log?patient=${env.OTHER_PATIENT}`, "log");
const refusal = (await page.textContent("main .notice")) || "";
check(refusal.includes("not yours to see"), "another patient's data is refused in words");
check(!/\b(403|Forbidden|Error)\b/.test(refusal), "no raw status in the refusal");
await shot("log-refused-en");

// Accessibility: every control labelled; the tab order reaches every control.
const pages = [["#/consents", "consents"], ["#/grants", "grants"], ["#/log", "log"], ["#/record", "record"], ["#/rebind-key", "rebind-key"]];
for (const [hash, name] of pages) {
  await go(hash, name);
  const unlabelled = await page.$$eval("input, select, textarea, button, a[href]", (els) =>
    els
      .filter((e) => e.offsetParent !== null)
      .filter((e) => {
        const own = (e.getAttribute("aria-label") || "").trim() || (e.labels && e.labels.length ? e.labels[0].textContent.trim() : "");
        const text = e.tagName === "BUTTON" || e.tagName === "A" ? e.textContent.trim() : "";
        return !(own || text);
      })
      .map((e) => e.outerHTML.slice(0, 80)),
  );
  check(unlabelled.length === 0, `${name}: unlabelled controls ${JSON.stringify(unlabelled)}`);
  const controls = await page.$$eval("input, select, textarea, button, a[href]", (els) => els.filter((e) => e.offsetParent !== null && !e.disabled).length);
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  await page.focus("body");
  const reached = new Set();
  for (let i = 0; i < controls + 4; i++) {
    await page.keyboard.press("Tab");
    const id = await page.evaluate(() => {
      const e = document.activeElement;
      if (!e || e === document.body) return null;
      if (!e.dataset.tabid) e.dataset.tabid = String(Math.random());
      return e.dataset.tabid;
    });
    if (id) reached.add(id);
  }
  check(reached.size >= controls, `${name}: tab reached ${reached.size} of ${controls} controls`);
  const roles = await page.evaluate(() => ({ main: !!document.querySelector("main"), nav: !!document.querySelector("nav[aria-label]"), h1: document.querySelectorAll("h1").length }));
  check(roles.main && roles.nav && roles.h1 === 1, `${name}: landmarks and one h1`);
}

// Chinese: every page, no untranslated string in any text node.
await page.selectOption("#locale", "zh");
const allowed = /([a-z_]+\.[a-z_]+|[0-9a-f]{16}|FHIR R4|medspace|hospital-[a-z]|research-\d|insurer-\d|regulator|cli-study|study-two|pt-[0-9a-f]+|[gcaj]-[0-9a-f]{16}|QR|L4|English|[0-9A-Z]{4}(-[0-9A-Z]{4}){3})/g;
async function untranslated() {
  return page.evaluate((src) => {
    const re = new RegExp(src, "g");
    const out = [];
    const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const p = n.parentElement;
      if (!p || p.closest("script,style") || p.offsetParent === null && p.tagName !== "OPTION") continue;
      const rest = n.textContent.replace(re, "");
      if (/[A-Za-z]{2,}/.test(rest)) out.push(n.textContent.trim().slice(0, 60));
    }
    for (const e of document.querySelectorAll("[aria-label]")) {
      if (/[A-Za-z]{2,}/.test(e.getAttribute("aria-label").replace(re, ""))) out.push("aria-label: " + e.getAttribute("aria-label"));
    }
    return out;
  }, allowed.source);
}
for (const [hash, name] of [...pages, ["#/signin", "signin"]]) {
  await go(hash, name);
  const leftovers = await untranslated();
  check(leftovers.length === 0, `zh ${name}: untranslated ${JSON.stringify(leftovers)}`);
  await shot(`${name}-zh`);
}
await page.setViewportSize({ width: 390, height: 844 });
await go("#/log", "log");
await shot("log-zh-phone");
await go("#/grants", "grants");
await shot("grants-zh-phone");
await page.setViewportSize({ width: 1200, height: 900 });
await page.selectOption("#locale", "en");

// Page-load timing: a full load of each page until it has rendered its verified content.
const timing = {};
for (const [hash, name] of [["#/signin", "signin"], ...pages]) {
  const samples = [];
  for (let i = 0; i < 7; i++) {
    const t0 = Date.now();
    await page.goto("about:blank");
    await page.goto(origin + "/console/" + hash);
    await ready(name);
    samples.push(Date.now() - t0);
  }
  samples.sort((a, b) => a - b);
  const q = (p) => samples[Math.min(samples.length - 1, Math.ceil(p * samples.length) - 1)];
  timing[name] = { p50: q(0.5), p95: q(0.95), n: samples.length };
}

// An address pinning another genesis: refused in words, no sign-in offered.
{
  const other = await context.newPage();
  await other.goto(origin + "/console/#genesis=" + "0".repeat(64));
  await other.waitForSelector('body[data-ready="signin"]', { state: "attached" });
  check(((await other.textContent("#refused-genesis")) || "").includes("different consortium"), "a wrong genesis hash is refused");
  check((await other.$$("#wallet-file")).length === 0, "no sign-in under a wrong genesis");
  await other.screenshot({ path: path.join(shots, "genesis-mismatch-en.png"), fullPage: true });
  await other.close();
}

// Sign-out forgets the key.
await page.click("#signout");
await ready("signin");
await page.reload();
await ready("signin");

// A staff key exported for the browser (`medspace key export-browser`): told in words what it
// can do.
async function signIn(file, name = null) {
  await page.setInputFiles("#wallet-file", file);
  await page.click("#signin");
  if (name) await ready(name);
  else await page.waitForSelector('body[data-ready]:not([data-ready="signin"])', { timeout: 60000, state: "attached" });
}
async function signOut() {
  await page.click("#signout");
  await ready("signin");
}
await signIn(env.STAFF_KEY, "none");
check(((await page.textContent("main")) || "").includes("no pages for that yet"), "staff key: no pages for that yet");
await shot("staff-key-en");
await signOut();

// A patient who lost their key. The browser's new wallet, registered to nobody, is told so and
// makes a claim; hospital-a's steward (who registered the patient) asks to re-bind the patient's
// pseudonym to it; the patient's current key sees the request and refuses it. Asked again, the
// new key waits out the veto delay, completes, and answers for the same pseudonym with its whole
// history; the old key is retired.
const pt = JSON.parse(fs.readFileSync(env.WALLET, "utf8")).patient;
// A page of this section in Chinese: nothing left untranslated; a screenshot.
async function inChinese(hash, name, shotName) {
  await page.selectOption("#locale", "zh");
  await go(hash, name);
  const left = await untranslated();
  check(left.length === 0, `zh ${name}: untranslated ${JSON.stringify(left)}`);
  await shot(shotName);
  await page.selectOption("#locale", "en");
}
await signIn(newWallet, "rebind-new");
check(((await page.textContent("main")) || "").includes("not registered yet"), "unregistered wallet: not registered yet");
await page.click("#claim-make");
await page.waitForSelector("#claim-text");
const claim = (await page.textContent("#claim-text")).trim();
check(/^medspace-rebind:hospital-a:[A-Za-z0-9_-]{128}$/.test(claim), "the new key makes a claim: " + claim);
check((await page.$$("#claim-box svg.qr path")).length === 1, "the claim's QR code is drawn");
await shot("rebind-new-en");
await inChinese("#/rebind-new", "rebind-new", "rebind-new-zh");
await signOut();

// The steward's hospital page shows the vault: its persons and links, rows per table, ingests.
await signIn(env.STEWARD_KEY);
await go("#/hospital", "hospital");
check(/\d+ persons, \d+ of them linked/.test((await page.textContent("#vault-links")) || ""), "the vault's persons and links: " + (await page.textContent("main")).slice(0, 300));
check((await page.$$("#vault-ingests tbody tr")).length >= 1, "the vault's ingests are listed");
check(((await page.textContent("#catalog-state")) || "").includes("says what the vault holds"), "the published entry matches the vault: " + (await page.textContent("#catalog-state")));
await shot("hospital-vault-en");
// The steward republishes the catalog entry from the vault, signed in the page.
await page.click("#publish");
await page.waitForSelector("#publish-sign", { timeout: 60000 });
check(((await page.textContent("#publish-entry")) || "").includes("hospital-a.cdm version 2"), "the next version is prepared: " + (await page.textContent("#publish-entry")));
await page.click("#publish-sign");
await page.waitForSelector("#publish-status .done, #publish-status .notice", { timeout: 60000 });
check(((await page.textContent("#publish-status")) || "").includes("version 2 is the catalog entry"), "the entry is published: " + (await page.textContent("#publish-status")));
check(((await page.textContent("main")) || "").includes("2, published at block"), "the catalog shows version 2");
await shot("hospital-published-en");
await signOut();

async function stewardAsks(claimText) {
  await signIn(env.STEWARD_KEY);
  await go("#/rebind", "rebind");
  // The person in front of the steward, found by their id in the hospital's records.
  await page.fill("#lookup-id", "no-such-patient");
  await page.click("#lookup");
  await page.waitForSelector("#lookup-status .notice", { timeout: 30000 });
  await page.fill("#lookup-id", env.LOCAL_ID);
  await page.click("#lookup");
  await page.waitForSelector("#lookup-status .done", { timeout: 30000 });
  check((await page.inputValue("#rebind-patient")) === pt, "the lookup finds the patient's pseudonym");
  await page.fill("#rebind-claim", claimText);
  await page.click("#rebind-ask");
  await page.waitForSelector("#rebind-status .done, #rebind-status .notice", { timeout: 60000 });
}
// A mangled claim is refused in words, before anything is signed.
await stewardAsks(claim.slice(0, -3));
check(((await page.textContent("#rebind-status")) || "").includes("That is not a claim"), "a mangled claim is refused in words");
await signOut();
await stewardAsks(claim);
check(((await page.textContent("#rebind-asked")) || "").includes("may take over from"), "the steward's request is recorded: " + (await page.textContent("main")).slice(0, 300));
await shot("rebind-steward-en");
await inChinese("#/rebind", "rebind", "rebind-steward-zh");
await signOut();

await signIn(env.WALLET);
await go("#/rebind-key", "rebind-key");
check(((await page.textContent("#rebind-pending")) || "").includes("hospital-a"), "the patient sees the pending re-binding");
await shot("rebind-pending-en");
await page.click("#veto");
await page.waitForSelector("#rebind-status .done, #rebind-status .notice", { timeout: 60000 });
check((await page.$$("#rebind-none")).length === 1, "after the veto nothing waits: " + (await page.textContent("main")).slice(0, 300));
await go("#/log", "log");
const vetoed = await page.$$eval("#log tbody tr", (trs) => trs.map((tr) => ({ v: tr.dataset.verified, text: tr.textContent })));
check(vetoed.some((r) => r.v === "true" && r.text.includes("asked to re-bind your record")), "the request is in the log, verified");
check(vetoed.some((r) => r.v === "true" && r.text.includes("was cancelled")), "the veto is in the log, verified");
await signOut();

await stewardAsks(claim);
check((await page.$$("#rebind-asked")).length === 1, "asked again");
await signOut();
await signIn(newWallet, "rebind-new");
check((await page.$$("#rebind-early")).length === 1 && (await page.$$("#complete[disabled]")).length === 1, "the new key waits out the veto delay");
await shot("rebind-take-en");
await page.waitForSelector("#complete:not([disabled])", { timeout: 90000 });
await page.click("#complete");
await page.waitForSelector("#rebind-status .done, #rebind-status .notice", { timeout: 60000 });
check(((await page.textContent("#rebind-status")) || "").includes("now answers for your record"), "the new key took over: " + (await page.textContent("main")).slice(0, 300));
check(((await page.textContent("main")) || "").includes(pt), "under the same pseudonym");
await go("#/log", "log");
const rebound = await page.$$eval("#log tbody tr", (trs) => trs.map((tr) => ({ v: tr.dataset.verified, text: tr.textContent })));
check(rebound.every((r) => r.v === "true"), "the new key's log verifies");
check(rebound.some((r) => r.text.includes("hospital-b received")), "the history is kept under the new key");
check(rebound.some((r) => r.text.includes("re-bound through hospital-a")), "the re-binding is in the log");
await shot("rebind-log-en");
await signOut();
await signIn(env.WALLET, "none");
check(((await page.textContent("main")) || "").includes("retired"), "the old key is told it was retired");
await shot("rebind-retired-en");
await signOut();

check(external.length === 0, "no request left the node: " + JSON.stringify(external.slice(0, 3)));
check(consoleErrors.length === 0, "no errors in the page: " + JSON.stringify(consoleErrors.slice(0, 3)));
await browser.close();
fs.rmSync(userData, { recursive: true, force: true });
console.log("RESULT " + JSON.stringify({ ok: failures.length === 0, failures, timing, redeemed: redeemed.trim().split("\n")[0] || "" }));
