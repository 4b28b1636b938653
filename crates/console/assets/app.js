// The console's shell: sign-in, who the signed-in key is (a patient, a user with a role, or a
// member key) and a router over the pages of each role. Pages live in their own modules; each
// exports `pages`: `{ id, nav, title, may(principal), render(params) }`. Adding a module is one
// import and one entry of MODULES. Pages are addressed by the fragment: `#/page?params`.

import * as L from "./ledger.js";
import * as c from "./codec.js";
import { t, setLocale } from "./i18n.js";
import { state, h, show, notice, chrome, stopPolling } from "./ui.js";
import * as patient from "./patient.js";
import * as researcher from "./researcher.js";
import * as reviewer from "./reviewer.js";
import * as steward from "./steward.js";
import * as rebind from "./rebind.js";
import * as openpool from "./openpool.js";
import * as health from "./health.js";

// A public-health agency's researcher lands on surveillance (offered to no one else).
const MODULES = [patient, health, researcher, openpool, reviewer, steward, rebind];
const PAGES = MODULES.flatMap((m) => m.pages);

// ---------------------------------------------------------------- sign-in

function signinPage() {
  if (state.pinned === false) {
    // The node serves another consortium than the address promised: no sign-in here.
    show(h("h1", {}, t("signin_title")), h("div", { class: "notice", role: "alert", id: "refused-genesis" }, t("genesis_bad")));
    return;
  }
  const file = h("input", { type: "file", id: "wallet-file", accept: ".json,application/json" });
  const text = h("textarea", { id: "wallet-text", spellcheck: "false", autocomplete: "off" });
  const status = h("div", { "aria-live": "polite", id: "signin-status" });
  const submit = async (ev) => {
    ev.preventDefault();
    try {
      const content = file.files && file.files[0] ? await file.files[0].text() : text.value;
      state.session = await L.importWallet(content);
      state.principal = null;
      text.value = "";
      location.hash = "#/";
      await route();
    } catch (e) {
      status.replaceChildren(notice(e));
    }
  };
  const create = async () => {
    const w = await L.newWallet();
    const a = h("a", { href: URL.createObjectURL(new Blob([w], { type: "application/json" })), download: "wallet.json", id: "new-wallet-save" }, t("new_wallet_save"));
    created.replaceChildren(h("p", {}, t("new_wallet_hint")), a);
  };
  const created = h("div", { "aria-live": "polite" });
  show(
    h("h1", {}, t("signin_title")),
    h("p", { class: "lead" }, t("signin_intro")),
    h(
      "form",
      { onsubmit: submit, "aria-labelledby": "signin-h" },
      h("label", { for: "wallet-file", id: "signin-h" }, t("wallet_file")),
      file,
      h("label", { for: "wallet-text" }, t("wallet_text")),
      text,
      h("p", {}, h("button", { type: "submit", id: "signin" }, t("signin"))),
      status,
    ),
    h("h2", {}, t("new_wallet")),
    h("button", { type: "button", class: "secondary", id: "new-wallet", onclick: create }, t("new_wallet")),
    created,
  );
}

// ---------------------------------------------------------------- who is signed in

/// The signed-in key's principal, from its proven key record (and, for a user, their proven
/// user record): `{kind: "patient"}`, `{kind: "user", id, member, role}`, `{kind: "member", id}`
/// or `{kind: "unknown"}`. Remembered for this tab: it only chooses which pages to offer; every
/// read and transaction is still signed and refused by the node and the ledger to anyone else.
async function whoIsSignedIn() {
  const cacheKey = "medspace.principal." + state.session.public;
  const cached = sessionStorage.getItem(cacheKey);
  if (cached) return JSON.parse(cached);
  const rec = await state.client.keyRecord();
  let p = { kind: rec && rec.retired ? "retired" : "unknown" };
  if (rec && !rec.retired) {
    p = { kind: rec.kind, id: rec.name };
    if (rec.kind === "user") {
      const key = "06" + L.hexName(rec.name);
      const a = await state.client.anchored(`/v1/records/${key}`);
      const chk = await L.checkProven(a.root, a.body);
      if (!chk.ok) throw new L.Verification("user record fails its proof");
      Object.assign(p, L.decodeUser(chk.value));
      // What kind of institution they work for (a public-health agency sees surveillance).
      const mk = "04" + L.hexName(p.member);
      const m = await state.client.anchored(`/v1/records/${mk}`);
      const mchk = await L.checkProven(m.root, m.body);
      if (!mchk.ok || c.hex(mchk.key) !== mk) throw new L.Verification("member record fails its proof");
      p.memberKind = L.decodeMember(mchk.value).kind;
    }
  }
  if (p.kind !== "unknown" && p.kind !== "retired") sessionStorage.setItem(cacheKey, JSON.stringify(p));
  return p;
}

// ---------------------------------------------------------------- routing

async function route() {
  stopPolling();
  const [path, query] = (location.hash.replace(/^#\/?/, "") || "").split("?");
  if (!state.session || state.pinned === false || path === "signin") {
    chrome("signin", [], "app_title");
    signinPage();
    document.body.dataset.ready = "signin";
    return;
  }
  state.client = state.client && state.client.session === state.session ? state.client : new L.Client(state.genesis, state.member, state.session);
  chrome(path, [], "app_title");
  show(h("p", { "aria-live": "polite" }, t("loading")));
  let page = null;
  try {
    state.principal = state.principal || (await whoIsSignedIn());
    const p = state.principal;
    // A patient is the pseudonym the ledger binds their key to (a re-bound key's is not the
    // one derived from it).
    if (p.kind === "patient" && p.id) state.session.patient = p.id;
    const mine = PAGES.filter((x) => x.may(p));
    // A key registered to nobody (or retired) is, in all likelihood, a patient's.
    const titleKey = ["patient", "unknown", "retired"].includes(p.kind) ? "app_title" : "app_title_staff";
    // The explorer (its own page) for the regulator's auditors and members' keys: the node's
    // gate decides what it shows them.
    const explorer = p.kind === "member" || (p.kind === "user" && p.role === "auditor") ? [["explorer.html", "ex_nav"]] : [];
    chrome(path, mine.map((x) => [x.id, x.nav]).concat(explorer), titleKey);
    page = mine.find((x) => x.id === path) || (path ? null : mine[0]);
    if (!page) {
      const who = p.kind === "user" ? t("role_" + p.role) : t("kind_" + p.kind);
      const msg = p.kind === "retired" ? t("key_retired") : p.kind === "unknown" ? t("not_registered") : !mine.length ? t("no_pages", { who }) : t("not_your_page", { who });
      show(h("h1", {}, t(titleKey)), h("div", { class: "notice", role: "alert", id: "who" }, msg), mine.length ? h("p", {}, h("a", { href: "#/" + mine[0].id }, t(mine[0].nav))) : null);
      document.body.dataset.ready = path || "none";
      return;
    }
    await page.render(new URLSearchParams(query || ""));
  } catch (e) {
    // A bug, not a refusal: reported to the console (the browser test fails on it).
    if (!(e instanceof L.Refused) && !(e instanceof L.Verification)) console.error(e);
    state.notRegistered = false;
    show(h("h1", {}, t(page ? page.title : "app_title")), notice(e));
  }
  document.body.dataset.ready = page ? page.id : path;
}

state.route = route;

async function start() {
  const pinned = new URLSearchParams(location.hash.split("#").find((x) => x.startsWith("genesis=")) || "").get("genesis") || sessionStorage.getItem("medspace.genesis");
  if (pinned) sessionStorage.setItem("medspace.genesis", pinned);
  const g = await L.loadGenesis(pinned);
  state.genesis = g.genesis;
  state.genesisHash = g.hash;
  state.pinned = g.pinnedOk;
  state.member = (await (await fetch("/console/node.json")).json()).member;
  state.session = await L.loadSession();
  if (location.hash.startsWith("#genesis=")) history.replaceState(null, "", "#/");
  document.getElementById("locale").addEventListener("change", (e) => {
    setLocale(e.target.value);
    route();
  });
  document.getElementById("signout").addEventListener("click", async () => {
    await L.signOut();
    // Who a key was is asked again at the next sign-in (it may have been retired meanwhile).
    for (const k of Object.keys(sessionStorage)) if (k.startsWith("medspace.principal.")) sessionStorage.removeItem(k);
    state.session = null;
    state.client = null;
    state.principal = null;
    stopPolling();
    location.hash = "#/signin";
  });
  window.addEventListener("hashchange", route);
  await route();
}

start().catch((e) => show(notice(e)));
