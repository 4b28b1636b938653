// The regulator's auditor's explorer (/console/explorer.html): the consortium's health, the
// latest blocks each with its finality certificate verified here against the genesis
// validators, a block's transactions, the recorded consensus faults, and contracts by status
// with their privacy budgets. Live: a long-poll on the next block re-draws the page when one
// is final. The key is the one signed in at /console/ (in this browser); every read is signed
// and the node gates it; this page also refuses, in words, anyone but an auditor of a
// regulator member.

import * as L from "./ledger.js";
import * as c from "./codec.js";
import { t, getLocale, setLocale, LOCALES, date, number } from "./i18n.js";
import { governancePage } from "./governance.js";

const ROLE_AUDITOR = 7;
const BLOCKS_SHOWN = 10;

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) el.append(k instanceof Node ? k : String(k));
  return el;
}

function explain(e) {
  if (e instanceof L.Refused) {
    const k = { 401: "refused_401", 403: "refused_403", 404: "refused_404", 429: "refused_429" }[e.status];
    return t(k || "refused_other");
  }
  if (e instanceof L.Verification) return t("verification_failed");
  return t("refused_other");
}

const ago = (ms) => t("ex_ago", { s: number(Math.max(0, Math.round(ms / 1000))) });

/// Who the signed-in key is, from proven records: its key record, and for a user their user
/// record (institution and role). `null` for a key the ledger does not know.
export async function whoAmI(client) {
  const key = c.concat(c.u8(0x02), c.unhex(client.session.public));
  let a;
  try {
    a = await client.anchored(`/v1/records/${c.hex(key)}`);
  } catch (e) {
    if (e instanceof L.Refused && (e.status === 404 || e.status === 403)) return null;
    throw e;
  }
  const p = await L.checkProven(a.root, a.body);
  if (!p.ok || !c.equal(p.key, key)) throw new L.Verification("key record");
  const r = new c.Reader(p.value);
  const tag = r.u8();
  const kind = [null, "member", "user", "patient"][tag];
  if (kind === "member") return { kind, member: r.name() };
  if (kind !== "user") return { kind };
  const user = r.name();
  const ukey = c.concat(c.u8(0x06), c.name(user));
  const u = await client.anchored(`/v1/records/${c.hex(ukey)}`);
  const up = await L.checkProven(u.root, u.body);
  if (!up.ok || !c.equal(up.key, ukey)) throw new L.Verification("user record");
  const ur = new c.Reader(up.value);
  ur.name(); // id
  const member = ur.name();
  const role = ur.u8();
  return { kind, user, member, role };
}

/// Whether `who` is an auditor of an active regulator member.
async function isAuditor(client, who) {
  if (!who || who.kind !== "user" || who.role !== ROLE_AUDITOR) return false;
  const members = await client.get("/v1/members");
  return (members.members || []).some((m) => m.active && m.member && m.member.id === who.member && m.member.kind === "regulator");
}

/// The consortium's health as this node sees it.
export async function healthSection(client) {
  const s = await client.get("/v1/consortium");
  const rows = s.validators.map((v) =>
    h(
      "tr",
      {},
      h("td", {}, v.name, v.this_node ? h("span", { class: "muted" }, " " + t("ex_this_node")) : ""),
      h("td", {}, h("span", { class: "badge " + (v.reachable ? "ok" : "bad") }, t(v.reachable ? "ex_reachable" : "ex_unreachable"))),
      h("td", {}, v.last_seen_age_ms === null ? t("ex_never") : ago(v.last_seen_age_ms)),
    ),
  );
  return h(
    "section",
    { id: "health", "aria-labelledby": "health-h" },
    h("h2", { id: "health-h" }, t("ex_health")),
    h(
      "p",
      { class: s.can_finalize ? "done" : "notice", role: s.can_finalize ? null : "alert" },
      s.can_finalize
        ? t("ex_can_finalize", { n: s.reachable, total: s.validators.length, needed: s.needed })
        : t("ex_cannot_finalize", { who: s.unreachable.join(", "), n: s.reachable, total: s.validators.length, needed: s.needed }),
    ),
    h("p", {}, t("ex_last_final", { height: number(s.height), age: ago(s.finalized_age_ms) })),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("ex_validator")), h("th", { scope: "col" }, t("ex_state")), h("th", { scope: "col" }, t("ex_last_seen")))), h("tbody", {}, rows)),
  );
}

/// One block's row: its certificate verified here against the genesis validators.
export async function blockRow(client, height) {
  let verified = false;
  let time = null;
  try {
    const hd = await client.header(height);
    verified = true;
    time = Number(hd.timeMs);
  } catch (e) {
    if (!(e instanceof L.Verification)) throw e;
  }
  const detail = await client.get(`/v1/blocks/${height}`);
  return h(
    "tr",
    { class: "block", "data-verified": verified ? "yes" : "no", "data-height": String(height) },
    h("td", {}, h("a", { href: `#/block/${height}` }, number(height))),
    h("td", {}, time ? date(time) : ""),
    h("td", {}, number(detail.tx_ids.length)),
    h("td", {}, h("span", { class: "badge " + (verified ? "ok" : "bad") }, t(verified ? "ex_cert_ok" : "ex_cert_bad"))),
    h("td", { class: "muted" }, detail.digest.slice(0, 16) + "…"),
  );
}

/// `types::Payload`'s variants, by tag.
const KINDS = [null, "add_member", "remove_member", "update_policy", "vote", "register_user", "rotate_key", "register_patient", "publish_dataset", "set_consent", "revoke_consent", "issue_grant", "revoke_grant", "submit_request", "approve", "reject", "terminate", "submit_job", "post_result", "record_access", "attest_destruction", "settle", "close_round", "appoint_user", "dismiss_user", "rotate_node_key", "rebind_patient", "cancel_rebind", "complete_rebind", "publish_release", "deliver_release", "record_alert"];

/// A finalized block's transactions from its raw bytes, checked here: its header is the one
/// whose certificate `client.header` verified (same digest), and the transactions hash to the
/// header's transaction root (`chain::block::tx_root`). Each: id, kind, signer, nonce.
export async function blockTransactions(client, height) {
  const certified = await client.header(height);
  const raw = await client.get(`/v1/blocks/${height}/raw`, true);
  const head = raw.subarray(0, 112);
  if (!c.equal(await c.sha256(head), certified.digest)) throw new L.Verification("another block than the certified one");
  const r = new c.Reader(raw.subarray(112));
  const n = Number(r.varint());
  const txs = [];
  for (let i = 0; i < n; i++) txs.push(r.take(Number(r.varint())));
  const ids = [];
  for (const tx of txs) ids.push(await c.sha256(tx));
  const root = await c.sha256(c.concat(c.u64(BigInt(n)), ...ids));
  if (!c.equal(root, head.subarray(48, 80))) throw new L.Verification("transactions do not match the header");
  return txs.map((tx, i) => {
    const t = new c.Reader(tx);
    t.u8(); // version
    t.name(); // chain id
    const signer = c.hex(t.take(32));
    const nonce = t.u64();
    return { id: c.hex(ids[i]), kind: KINDS[t.u8()] || "unknown", signer, nonce };
  });
}

/// The latest blocks, each certificate verified here; the chosen block's transactions.
export async function blocksSection(client, chosen) {
  const b = await client.get("/v1/blocks");
  const heights = [];
  for (let x = b.height; x >= 1 && heights.length < BLOCKS_SHOWN; x--) heights.push(x);
  const rows = [];
  for (const height of heights) rows.push(await blockRow(client, height));
  const parts = [
    h("h2", { id: "blocks-h" }, t("ex_blocks")),
    h("p", { class: "muted", id: "live", "aria-live": "polite" }, t("ex_live", { height: number(b.height) })),
    h(
      "table",
      { class: "blocks" },
      h("thead", {}, h("tr", {}, ...["ex_height", "ex_time", "ex_txs", "ex_certificate", "ex_digest"].map((k) => h("th", { scope: "col" }, t(k))))),
      h("tbody", { id: "block-rows" }, rows),
    ),
  ];
  if (chosen) {
    const d = await client.get(`/v1/blocks/${chosen}`);
    const hd = await client.header(chosen);
    parts.push(
      h("h2", { id: "block-h" }, t("ex_block", { height: number(chosen) })),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, t("ex_digest")),
        h("dd", {}, d.digest),
        h("dt", {}, t("ex_state_root")),
        h("dd", {}, c.hex(hd.stateRoot)),
        h("dt", {}, t("ex_certificate")),
        h("dd", {}, t("ex_cert_detail")),
      ),
    );
    const txs = await blockTransactions(client, chosen);
    parts.push(
      ...(txs.length
        ? [
            h("p", { class: "done", id: "txs-verified" }, t("ex_txs_verified", { n: number(txs.length) })),
            h(
              "table",
              { id: "txs" },
              h("thead", {}, h("tr", {}, ...["ex_kind", "ex_signer", "ex_nonce", "ex_tx"].map((k) => h("th", { scope: "col" }, t(k))))),
              h(
                "tbody",
                {},
                txs.map((x) => h("tr", {}, h("td", {}, t("ex_k_" + x.kind)), h("td", { class: "muted" }, x.signer.slice(0, 16) + "…"), h("td", {}, number(x.nonce)), h("td", { class: "muted" }, x.id.slice(0, 16) + "…"))),
              ),
            ),
          ]
        : [h("p", { id: "txs-verified" }, t("ex_no_txs"))]),
    );
  }
  return h("section", { id: "blocks", "aria-labelledby": "blocks-h" }, parts);
}

/// Recorded consensus faults (`GET /v1/faults`): who signed which conflicting votes, with the
/// evidence to download — the two signed votes, which anyone holding the genesis validator set
/// can check.
export async function faultsSection(client) {
  let s = null;
  try {
    const r = await fetch("/v1/faults", { cache: "no-store" });
    if (r.ok) s = await r.json();
  } catch {
    /* not served here */
  }
  const n = s ? Number(s.total) : null;
  const names = new Map(((client && client.genesis && client.genesis.validators) || []).map((v) => [String(v.public_key), v.name]));
  const faults = (s && s.faults) || [];
  const rows = faults.map((f) => {
    let bytes = new Uint8Array();
    try {
      bytes = c.unhex(f.evidence);
    } catch {
      /* malformed evidence: offered as nothing rather than breaking the page */
    }
    const href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
    const who = names.get(f.validator);
    return h(
      "tr",
      { class: "fault", "data-kind": f.kind, "data-validator": f.validator },
      h("td", {}, t("ex_fault_" + f.kind)),
      h("td", {}, who || h("code", { translate: "no" }, f.validator.slice(0, 16) + "…")),
      h("td", {}, number(f.epoch), " / ", number(f.view)),
      h("td", {}, h("a", { href, download: `fault-${f.kind}-${f.view}.bin` }, t("ex_fault_evidence", { n: number(bytes.length) }))),
    );
  });
  return h(
    "section",
    { id: "faults", "aria-labelledby": "faults-h" },
    h("h2", { id: "faults-h" }, t("ex_faults")),
    h("p", {}, n === null ? t("ex_faults_unknown") : n === 0 ? t("ex_faults_none") : t("ex_faults_n", { n: number(n) })),
    rows.length
      ? h(
          "table",
          { id: "fault-list" },
          h("thead", {}, h("tr", {}, [t("ex_fault_kind"), t("ex_validator"), t("ex_fault_view"), t("ex_fault_proof")].map((x) => h("th", { scope: "col" }, x)))),
          h("tbody", {}, rows),
        )
      : null,
  );
}

/// Contracts by status, with their privacy budget spent.
export async function contractsSection(client) {
  const all = (await client.get("/v1/contracts")).contracts || [];
  const by = new Map();
  for (const k of all) by.set(k.status, [...(by.get(k.status) || []), k]);
  const eps = (micro) => number(Number(micro) / 1e6);
  const parts = [h("h2", { id: "contracts-h" }, t("ex_contracts"))];
  if (!all.length) parts.push(h("p", {}, t("ex_no_contracts")));
  for (const [status, list] of [...by.entries()].sort()) {
    parts.push(
      h("h3", {}, t("ex_status", { status: t("ex_st_" + status), n: number(list.length) })),
      h(
        "table",
        { class: "contracts" },
        h("thead", {}, h("tr", {}, ...["ex_contract", "ex_purpose", "ex_requester", "ex_budget"].map((k) => h("th", { scope: "col" }, t(k))))),
        h(
          "tbody",
          {},
          list.map((k) =>
            h(
              "tr",
              {},
              h("td", {}, k.id),
              h("td", {}, t("p_" + k.purpose)),
              h("td", {}, k.requester),
              h("td", {}, t("ex_spent", { spent: eps(k.epsilon_spent), budget: eps(k.epsilon_budget) })),
            ),
          ),
        ),
      ),
    );
  }
  // Per dataset: its lifetime privacy account (every contract and job that touches it) against
  // the policy's budget per dataset, and how many contracts read it.
  const readers = new Map();
  for (const k of all) for (const d of k.datasets || []) readers.set(d, (readers.get(d) || 0) + 1);
  const budgets = (await client.get("/v1/catalog")).budgets || [];
  if (budgets.length) {
    parts.push(
      h("h3", { id: "datasets-h" }, t("ex_by_dataset")),
      h(
        "table",
        { id: "datasets" },
        h("thead", {}, h("tr", {}, ...["ex_dataset", "ex_dataset_contracts", "ex_dataset_spent"].map((k) => h("th", { scope: "col" }, t(k))))),
        h(
          "tbody",
          {},
          budgets.map((b) =>
            h(
              "tr",
              {},
              h("td", {}, b.dataset),
              h("td", {}, number(readers.get(b.dataset) || 0)),
              h("td", {}, t("ex_dataset_account", { spent: eps(b.epsilon_spent), reserved: eps(b.epsilon_reserved), budget: eps(b.epsilon_budget) })),
            ),
          ),
        ),
      ),
    );
  }
  return h("section", { id: "contracts", "aria-labelledby": "contracts-h" }, parts);
}

/// Record-level deliveries whose recipient has not yet attested destroying the copy, and the
/// copies of open-pool releases with when each is due (the overdue ones first, marked: they
/// block their recipient's new requests).
export async function destructionSection(client) {
  const answer = await client.get("/v1/accesses/undestroyed");
  const list = answer.accesses || [];
  const releases = (answer.releases || []).slice().sort((a, b) => Number(b.overdue) - Number(a.overdue) || a.due_ms - b.due_ms);
  const late = releases.filter((r) => r.overdue);
  return h(
    "section",
    { id: "destruction", "aria-labelledby": "destruction-h" },
    h("h2", { id: "destruction-h" }, t("ex_release_copies")),
    late.length ? h("div", { class: "notice", role: "alert", id: "overdue-copies" }, t("ex_overdue_block", { n: number(late.length), who: [...new Set(late.map((r) => r.recipient))].join(", ") })) : null,
    releases.length
      ? h(
          "table",
          { id: "release-copies" },
          h("thead", {}, h("tr", {}, ...["ex_access", "ex_release", "ex_holder", "ex_recipient", "ex_time", "ex_due"].map((k) => h("th", { scope: "col" }, t(k))))),
          h(
            "tbody",
            {},
            releases.map((r) =>
              h(
                "tr",
                { "data-delivery": r.id, "data-overdue": r.overdue ? "true" : "false" },
                h("td", {}, r.id, h("br"), h("span", { class: "muted" }, r.contract)),
                h("td", {}, h("span", { translate: "no" }, r.dataset), " ", t("ex_release_version", { v: number(r.version) })),
                h("td", {}, r.holder),
                h("td", {}, r.recipient),
                h("td", {}, date(r.time_ms)),
                h("td", {}, h("span", { class: "badge " + (r.overdue ? "bad" : "ok") }, r.overdue ? t("ex_overdue", { when: date(r.due_ms) }) : t("ex_due_at", { when: date(r.due_ms) }))),
              ),
            ),
          ),
        )
      : h("p", { id: "no-release-copies" }, t("ex_release_copies_none")),
    h("p", { class: "muted" }, t("ex_overdue_rule")),
    h("h2", { id: "destruction-records-h" }, t("ex_destruction")),
    list.length
      ? h(
          "table",
          {},
          h("thead", {}, h("tr", {}, ...["ex_access", "ex_holder", "ex_recipient", "ex_resources", "ex_time"].map((k) => h("th", { scope: "col" }, t(k))))),
          h(
            "tbody",
            {},
            list.map((a) => h("tr", {}, h("td", {}, a.id), h("td", {}, a.holder), h("td", {}, a.recipient), h("td", {}, number(a.resource_count)), h("td", {}, date(a.time_ms)))),
          ),
        )
      : h("p", {}, t("ex_destruction_none")),
  );
}

/// The whole explorer page for a signed-in auditor (or the refusal in words).
export async function explorerPage(client, chosen) {
  const who = await whoAmI(client);
  if (!(await isAuditor(client, who))) {
    return [h("h1", {}, t("ex_title")), h("div", { class: "notice", role: "alert", id: "who" }, t("ex_not_auditor"))];
  }
  return [
    h("h1", {}, t("ex_title")),
    h("p", { class: "lead", id: "who" }, t("ex_signed_in", { user: who.user })),
    await healthSection(client),
    await blocksSection(client, chosen),
    await faultsSection(client),
    await contractsSection(client),
    await destructionSection(client),
  ];
}

// ---------------------------------------------------------------- the page itself

const state = { client: null, height: 0, live: 0, genesisInfo: null };

function chrome() {
  const g = state.genesisInfo;
  const banner = document.getElementById("genesis");
  if (g) {
    banner.textContent = g.pinnedOk === false ? t("genesis_bad") : g.pinnedOk ? t("genesis_ok", { hash: g.hash.slice(0, 16) }) : t("genesis_unpinned", { hash: g.hash });
    banner.className = g.pinnedOk === false ? "bad" : "";
  }
  document.documentElement.lang = getLocale() === "zh" ? "zh-CN" : "en";
  document.title = t("ex_title");
  document.getElementById("skip").textContent = t("skip");
  document.getElementById("locale-label").textContent = t("language");
  const sel = document.getElementById("locale");
  sel.replaceChildren(...Object.entries(LOCALES).map(([k, v]) => h("option", { value: k, selected: k === getLocale(), lang: k === "zh" ? "zh-CN" : "en" }, v)));
  const nav = document.getElementById("nav");
  nav.setAttribute("aria-label", t("nav_label"));
  const gov = location.hash.startsWith("#/governance");
  nav.replaceChildren(
    h(
      "ul",
      {},
      h("li", {}, h("a", { href: "#/", "aria-current": gov ? null : "page" }, t("ex_nav"))),
      h("li", {}, h("a", { href: "#/governance", "aria-current": gov ? "page" : null }, t("gv_nav"))),
      h("li", {}, h("a", { href: "/console/" }, t("ex_portal"))),
    ),
  );
}

async function render(said) {
  chrome();
  const main = document.getElementById("main");
  if (location.hash.startsWith("#/governance")) {
    state.live += 1;
    document.title = t("gv_title");
    try {
      const who = await whoAmI(state.client);
      main.replaceChildren(...(await governancePage(state.client, who, (outcome) => render(outcome), said instanceof Node ? said : null)));
    } catch (e) {
      if (!(e instanceof L.Refused) && !(e instanceof L.Verification)) console.error(e);
      main.replaceChildren(h("h1", {}, t("gv_title")), h("div", { class: "notice", role: "alert" }, explain(e)));
    }
    document.body.dataset.ready = "governance";
    return;
  }
  const chosen = Number((/^#\/block\/(\d+)$/.exec(location.hash) || [])[1]) || null;
  try {
    state.live += 1;
    const nodes = await explorerPage(state.client, chosen);
    main.replaceChildren(...nodes);
    const top = document.querySelector("#block-rows tr");
    if (top) {
      state.height = Number(top.dataset.height);
      document.body.dataset.height = String(state.height);
      live(state.live);
    }
  } catch (e) {
    if (!(e instanceof L.Refused) && !(e instanceof L.Verification)) console.error(e);
    main.replaceChildren(h("h1", {}, t("ex_title")), h("div", { class: "notice", role: "alert" }, explain(e)));
  }
  document.body.dataset.ready = "explorer";
}

/// Waits for blocks above the last one drawn (the node's long-poll): each new block's row, its
/// certificate verified, goes on top of the table; the consortium's health is re-read with it.
async function live(generation) {
  let healthAt = Date.now();
  while (generation === state.live) {
    try {
      const b = await state.client.get(`/v1/blocks?after=${state.height}&wait_ms=10000`);
      if (generation !== state.live) return;
      const tbody = document.getElementById("block-rows");
      for (let x = Math.max(state.height + 1, b.height - BLOCKS_SHOWN + 1); x <= b.height; x++) {
        const row = await blockRow(state.client, x);
        if (generation !== state.live) return;
        if (tbody) {
          tbody.prepend(row);
          while (tbody.children.length > BLOCKS_SHOWN) tbody.lastElementChild.remove();
        }
      }
      if (b.height > state.height) {
        state.height = b.height;
        const el = document.getElementById("live");
        if (el) el.textContent = t("ex_live", { height: number(b.height) });
        document.body.dataset.height = String(b.height);
      }
      if (Date.now() - healthAt > 5000) {
        healthAt = Date.now();
        const old = document.getElementById("health");
        if (old) old.replaceWith(await healthSection(state.client));
      }
    } catch (e) {
      if (!(e instanceof L.Refused) && !(e instanceof L.Verification)) console.error(e);
      await new Promise((res) => setTimeout(res, 3000));
    }
  }
}

async function start() {
  const pinned = new URLSearchParams(location.hash.split("#").find((x) => x.startsWith("genesis=")) || "").get("genesis") || sessionStorage.getItem("medspace.genesis");
  if (pinned) sessionStorage.setItem("medspace.genesis", pinned);
  const g = await L.loadGenesis(pinned);
  const member = (await (await fetch("/console/node.json")).json()).member;
  state.genesisInfo = g;
  if (location.hash.startsWith("#genesis=")) history.replaceState(null, "", "#/");
  document.getElementById("locale").addEventListener("change", (e) => {
    setLocale(e.target.value);
    render();
  });
  const session = await L.loadSession();
  if (!session || g.pinnedOk === false) {
    chrome();
    document.getElementById("main").replaceChildren(
      h("h1", {}, t("ex_title")),
      h("div", { class: "notice", role: "alert", id: "who" }, g.pinnedOk === false ? t("genesis_bad") : t("ex_sign_in_first")),
      g.pinnedOk === false ? "" : h("p", {}, h("a", { href: "/console/#/signin" }, t("ex_portal"))),
    );
    document.body.dataset.ready = "explorer";
    return;
  }
  state.client = new L.Client(g.genesis, member, session);
  window.addEventListener("hashchange", () => render());
  await render();
}

if (document.querySelector('script[src="/console/explorer.js"]')) start().catch((e) => console.error(e));
