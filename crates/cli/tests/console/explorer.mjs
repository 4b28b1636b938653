// Drives the auditor's explorer (/console/explorer.html) in a real Chromium (playwright-core)
// for crates/cli/tests/console.rs. Input by environment; prints one JSON line `RESULT {...}`.
import { createRequire } from "node:module";
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

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--ignore-certificate-errors"],
});
const context = await browser.newContext({ ignoreHTTPSErrors: true, acceptDownloads: true, viewport: { width: 1200, height: 900 } });
const page = await context.newPage();
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(String(e)));
page.on("console", (m) => {
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) pageErrors.push(m.text());
});
const external = [];
page.on("request", (r) => {
  if (!r.url().startsWith(origin) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) external.push(r.url());
});
const shot = (name) => page.screenshot({ path: path.join(shots, name + ".png"), fullPage: true });
const ready = (name, timeout = 60000) => page.waitForSelector(`body[data-ready="${name}"]`, { timeout, state: "attached" });
// Signed in: whichever page the key's role lands on (the console's router decides).
const signedIn = (timeout = 60000) => page.waitForSelector('body[data-ready]:not([data-ready="signin"]):not([data-ready="loading"])', { timeout, state: "attached" });

process.on("unhandledRejection", async (e) => {
  try {
    await shot("explorer-failure");
  } catch {
    /* no page */
  }
  console.log("RESULT " + JSON.stringify({ ok: false, failures: [...failures, String(e)], pageErrors }));
  process.exit(1);
});

async function signIn(file) {
  await page.goto("about:blank");
  await page.goto(base);
  await ready("signin");
  await page.setInputFiles("#wallet-file", file);
  await page.click("#signin");
  await signedIn();
}
async function openExplorer() {
  await page.goto("about:blank");
  await page.goto(origin + "/console/explorer.html");
  await ready("explorer");
}
async function signOut() {
  await page.goto("about:blank");
  await page.goto(origin + "/console/");
  await signedIn();
  await page.click("#signout");
  await ready("signin");
}

// The auditor: blocks with their certificates verified in the page, the consortium's health.
await signIn(env.AUDITOR_KEY);
await openExplorer();
const main = () => page.textContent("main");
check((await main()).includes("Signed in as auditor regulator.auditor"), "the auditor is greeted: " + (await main()).slice(0, 200));
const verified = await page.$$('tr.block[data-verified="yes"]');
const unverified = await page.$$('tr.block[data-verified="no"]');
check(verified.length >= 3, `blocks with verified certificates: ${verified.length}`);
check(unverified.length === 0, `blocks not verified: ${unverified.length}`);
check((await page.textContent("#health")).includes("Blocks are being finalized: 5 of 5"), "all five validators answer: " + (await page.textContent("#health")));
check((await page.textContent("#contracts")).includes("Active"), "an active contract is listed");
check((await page.textContent("#contracts")).includes("spent"), "budgets spent are shown");
check((await page.$$("#datasets tbody tr")).length === 5, "budgets per dataset are shown (three hospitals' CDMs, insurer-1's claims and pharma-1's sales)");
// The job ran at ε 0.2 per hospital: three hospitals, 0.6 charged.
check((await page.textContent("#datasets")).includes("0.6 spent"), "each dataset's account shows the job's ε: " + (await page.textContent("#datasets")));
check((await page.textContent("#contracts")).includes("0.6 of 1 spent"), "the contract's budget shows the job's ε");
check((await page.textContent("#faults")).includes("None recorded"), "no faults recorded");
check((await page.textContent("#destruction")).includes("attested destroyed"), "no delivery awaits destruction: " + (await page.textContent("#destruction")));
await shot("explorer-en");
// A recorded fault, as `GET /v1/faults` serves one (the chain's simulation checks the real
// evidence decodes and verifies): the page names the validator from the genesis and offers the
// evidence's bytes.
{
  const genesis = await page.evaluate(async () => (await fetch("/console/genesis.json")).json());
  const culprit = genesis.validators.find((v) => v.name === "hospital-c");
  const evidence = "ab".repeat(150);
  await page.route("**/v1/faults", (r) => r.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ total: 1, faults: [{ kind: "conflicting_finalize", validator: culprit.public_key, epoch: 0, view: 42, evidence }] }) }));
  await page.reload();
  await ready("explorer");
  const row = await page.textContent("#fault-list tbody tr.fault");
  check(row.includes("hospital-c") && row.includes("two finalize votes") && row.includes("150 bytes"), "the fault names its validator and offers its evidence: " + row);
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#fault-list a[download]")]);
  check(fs.readFileSync(await dl.path()).length === 150, "the evidence downloads whole");
  await page.screenshot({ path: path.join(shots, "explorer-fault-en.png"), fullPage: true });
  await page.unroute("**/v1/faults");
  await page.reload();
  await ready("explorer");
}
// Live: the next block shows without a reload.
const h0 = Number(await page.getAttribute("body", "data-height"));
let h1 = h0;
for (let i = 0; i < 60 && h1 <= h0; i++) {
  await page.waitForTimeout(500);
  h1 = Number(await page.getAttribute("body", "data-height"));
}
check(h1 > h0, `a new block arrived live (${h0} -> ${h1})`);
// Read together: another block may arrive between two separate reads.
const [hNow, live] = await page.evaluate(() => [document.body.getAttribute("data-height"), document.getElementById("live").textContent]);
check(Number(hNow) >= h1 && live.includes(String(hNow)), `the live line shows the new height (${hNow}: ${live})`);
const top = await page.$("#block-rows tr");
check(Number(await top.getAttribute("data-height")) > h0, "the new block's row is on top of the table, without a reload");
check((await top.getAttribute("data-verified")) === "yes", "the live block's certificate is verified");
check((await page.$$('tr.block[data-verified="no"]')).length === 0, "every live row verified");
// A block's detail: its digest, state root, certificate and transactions (decoded and checked
// against the certified header) — a block with transactions.
// (Walked down from the top by the block links' addresses: the latest ten may all be empty.)
let found = null;
const topHeight = Number(await page.getAttribute("body", "data-height"));
for (let hgt = topHeight; hgt >= 1 && found === null; hgt--) {
  await page.goto(origin + "/console/explorer.html#/block/" + hgt);
  await page.waitForSelector(`#block-h:text-is("Block ${hgt}")`, { timeout: 30000 });
  check((await page.textContent("#txs-verified")).length > 0, `block ${hgt}: its transactions checked`);
  if ((await page.$$("#txs tbody tr")).length > 0) found = hgt;
}
check(found !== null, "a block with transactions is found");
if (found !== null) {
  check((await page.textContent("#txs-verified")).includes("checked here against the block's certified header"), "its transactions verified: " + (await page.textContent("#txs-verified")));
}
await shot("explorer-block-en");
// Chinese, and a phone's width.
await page.selectOption("#locale", "zh");
await page.waitForSelector("text=最新区块");
check(!/[A-Za-z]{4,}/.test(((await page.textContent("#genesis")) || "").replace(/genesis|[0-9a-f]{16}/g, "")), "the genesis line is in Chinese: " + (await page.textContent("#genesis")));
await shot("explorer-zh");
await page.setViewportSize({ width: 390, height: 844 });
await shot("explorer-zh-phone");
await page.setViewportSize({ width: 1200, height: 900 });
await page.selectOption("#locale", "en");
await page.waitForSelector("text=Latest blocks");
// Governance, read only for an auditor.
await page.click('a[href="#/governance"]');
await page.waitForSelector("#members");
check((await page.textContent("#who")).includes("only a member institution's key proposes"), "an auditor reads governance only");
check((await page.$$("#propose-appoint")).length === 0, "no proposal forms for an auditor");
await signOut();

// A member institution's key proposes an appointment, signed in the page; it is listed with
// its vote.
await signIn(env.MEMBER_KEY);
await page.goto("about:blank");
await page.goto(origin + "/console/explorer.html#/governance");
await ready("governance");
check((await page.textContent("#who")).includes("member key of hospital-a"), "the member is greeted: " + (await page.textContent("main")).slice(0, 200));
check((await page.$$("#members tbody tr")).length >= 5, "the members are listed");
const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
const pub = Buffer.from(await crypto.subtle.exportKey("raw", pair.publicKey)).toString("hex");
await page.fill("#appoint-user", "hospital-a.ethics-2");
await page.selectOption("#appoint-member", "hospital-a");
await page.selectOption("#appoint-role", "ethics_committee");
await page.fill("#appoint-key", pub);
await page.click("#propose-appoint button[type=submit]");
await page.waitForSelector("#outcome", { timeout: 90000 });
check((await page.getAttribute("#outcome", "class")) === "done", "the proposal is final: " + (await page.textContent("#outcome")));
const card = await page.$('.proposal[data-status="open"]');
check(card !== null, "the open proposal is listed");
if (card) {
  const text = await card.textContent();
  check(text.includes("Appoint hospital-a.ethics-2 at hospital-a as ethics committee") && text.includes("For: hospital-a"), "the proposal and its vote: " + text);
}
await shot("governance-en");
await page.setViewportSize({ width: 390, height: 844 });
await page.selectOption("#locale", "zh");
await page.waitForSelector("text=提案");
await shot("governance-zh-phone");
await page.setViewportSize({ width: 1200, height: 900 });
await page.selectOption("#locale", "en");
await page.waitForSelector("text=Proposals");
await signOut();

// Another member votes for it in the page.
await signIn(env.MEMBER_B_KEY);
await page.goto("about:blank");
await page.goto(origin + "/console/explorer.html#/governance");
await ready("governance");
await page.click('.proposal[data-status="open"] .vote-yes');
await page.waitForSelector("#outcome", { timeout: 90000 });
check((await page.getAttribute("#outcome", "class")) === "done", "the vote is final: " + (await page.textContent("#outcome")));
const after = await page.$(".proposal");
const afterText = after ? await after.textContent() : "";
check(afterText.includes("hospital-a") && afterText.includes("hospital-b") && afterText.startsWith("Appoint"), "both votes counted: " + afterText);
check((await page.$$('.proposal .vote-yes')).length === 0, "no second vote offered");
await shot("governance-voted-en");
// A policy change proposed in the page (the whole policy signed here, byte for byte as the
// Rust encoding: console_signing.rs): the smallest released group one larger; the proposal says
// what it changes, from what to what.
const kNow = Number(await page.inputValue("#pol-min_cell_k"));
await page.fill("#pol-min_cell_k", String(kNow + 1));
await page.click("#propose-policy button[type=submit]");
// The vote's outcome is still on the page: wait for this proposal's (or a refusal).
// (Polled from here: the page's CSP allows no evaluated script.)
for (let i = 0; i < 180; i++) {
  const cards = await page.$$eval(".proposal", (x) => x.map((e) => e.textContent));
  if (cards.some((x) => x.startsWith("Replace")) || (await page.$("#outcome.notice"))) break;
  await page.waitForTimeout(500);
}
check((await page.getAttribute("#outcome", "class")) === "done", "the policy proposal is final: " + (await page.textContent("#outcome")));
const policyCard = (await page.$$eval(".proposal", (x) => x.map((e) => e.textContent))).find((x) => x.startsWith("Replace the consortium's policy")) || "";
check(policyCard.includes(`smallest released group (k) from ${kNow} to ${kNow + 1}`) && policyCard.includes("For: hospital-b"), "the policy proposal says what it changes: " + policyCard);
await shot("governance-policy-en");
// hospital-b registers a researcher of its own, in the page.
const pair2 = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
const pub2 = Buffer.from(await crypto.subtle.exportKey("raw", pair2.publicKey)).toString("hex");
await page.fill("#register-id", "hospital-b.researcher-2");
await page.selectOption("#register-role", "researcher");
await page.fill("#register-key", pub2);
// Clicks `selector` and waits for the next outcome (a new text where the last one was).
// (Polled: the CSP allows no evaluated script.)
async function outcomeText() {
  const el = await page.$("#outcome");
  return el ? (await el.textContent()) || "" : "";
}
async function act(selector) {
  const before = await outcomeText();
  await page.click(selector);
  for (let i = 0; i < 180; i++) {
    const o = await outcomeText();
    if (o && o !== before) return o;
    await page.waitForTimeout(500);
  }
  await shot("governance-no-outcome");
  return "";
}
await act("#register-user button[type=submit]");
check(((await page.textContent("#outcome")) || "").includes("The user is registered"), "the user is registered: " + (await page.textContent("#outcome")));
// A role only the consortium appoints is refused by the ledger, in words.
await page.fill("#register-id", "hospital-b.committee-2");
await page.selectOption("#register-role", "auditor");
const pair3 = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
await page.fill("#register-key", Buffer.from(await crypto.subtle.exportKey("raw", pair3.publicKey)).toString("hex"));
await act("#register-user button[type=submit]");
check((await page.$$("#outcome.notice")).length === 1 && ((await page.textContent("#outcome")) || "").includes("auditor"), "a hospital registering an auditor is refused in words: " + (await page.textContent("#outcome")));
// hospital-b replaces its member key: the new key's file saved first, then the change signed;
// the page goes on with the new key; the old key file is retired.
await page.click("#rotate-start");
await page.waitForSelector("#rotate-save");
check((await page.$$("#rotate-confirm[disabled]")).length === 1, "no replacement before the new key is saved");
const [saved] = await Promise.all([page.waitForEvent("download"), page.click("#rotate-save")]);
const newKeyFile = path.join(os.tmpdir(), `medspace-rotated-${process.pid}.json`);
await saved.saveAs(newKeyFile);
await act("#rotate-confirm");
check(((await page.textContent("#outcome")) || "").includes("The key is replaced"), "the key is replaced: " + (await page.textContent("#outcome")));
check(((await page.textContent("#who")) || "").includes("member key of hospital-b"), "the page goes on with the new key: " + (await page.textContent("#who")));
await shot("governance-rotated-en");
await signOut();
await signIn(env.MEMBER_B_KEY);
await page.goto("about:blank");
await page.goto(origin + "/console/explorer.html#/governance");
await ready("governance");
check(((await page.textContent("#who")) || "").includes("not one of theirs"), "the old key reads nothing: " + (await page.textContent("main")).slice(0, 200));
await signOut();
await signIn(newKeyFile);
await page.goto("about:blank");
await page.goto(origin + "/console/explorer.html#/governance");
await ready("governance");
check(((await page.textContent("#who")) || "").includes("member key of hospital-b"), "the saved new key signs in as hospital-b");
await signOut();
fs.rmSync(newKeyFile, { force: true });

// A researcher's key: refused in words, no chain shown.
await signIn(env.OTHER_KEY);
await openExplorer();
check((await page.textContent("#who")).includes("This explorer is for the auditors of a regulator"), "a non-auditor is refused in words: " + (await main()).slice(0, 200));
check((await page.$$("tr.block")).length === 0, "no blocks for a non-auditor");
await shot("explorer-refused-en");
await signOut();

check(external.length === 0, "no request left the node: " + JSON.stringify(external.slice(0, 3)));
check(pageErrors.length === 0, "no errors in the page: " + JSON.stringify(pageErrors.slice(0, 3)));
await browser.close();
console.log("RESULT " + JSON.stringify({ ok: failures.length === 0, failures, pageErrors }));
