// The patient portal: decisions (study invitations, consent per purpose, L4 opt-in), access
// codes (QR, copy, revoke), the access log with every entry verified here, and the record.

import * as L from "./ledger.js";
import { t, date, number, list } from "./i18n.js";
import * as qr from "./qr.js";
import { state, h, show, notice } from "./ui.js";

function purposeName(p) {
  return t("p_" + p);
}

function typesName(types) {
  return list(types.map((x) => t("t_" + x)));
}

// ---------------------------------------------------------------- decisions

async function consentsPage() {
  const c = state.client;
  const pt = state.session.patient;
  const a = await c.anchored(`/v1/patients/${pt}/consents`);
  const consents = [];
  for (const p of a.body.consents || []) {
    const chk = await L.checkProven(a.root, p);
    if (chk.ok) consents.push(L.decodeConsent(chk.key, chk.value));
  }
  const byStudy = new Map(consents.filter((x) => x.study).map((x) => [x.study, x]));
  // Study invitations: research contracts naming a study, their head proven.
  const contracts = await c.get("/v1/contracts");
  const invitations = [];
  const seen = new Set();
  // Every research contract's head proven at once (each its own proof).
  const heads = await Promise.all(
    (contracts.contracts || [])
      .filter((s) => s.purpose === "research")
      .map(async (s) => {
        try {
          const ca = await c.anchored(`/v1/contracts/${s.id}`);
          const chk = await L.checkProven(ca.root, ca.body.contract);
          return chk.ok ? L.decodeContractHead(chk.value) : null;
        } catch {
          return null; // a contract that does not verify is not shown
        }
      }),
  );
  for (const head of heads) {
    if (head && head.study && !seen.has(head.study)) {
      seen.add(head.study);
      invitations.push(head);
    }
  }
  const status = h("div", { "aria-live": "polite", id: "consent-status" });
  const decide = (purpose, study, allow, l4) => async () => {
    status.replaceChildren(h("p", {}, t("saving")));
    try {
      await c.submit(L.setConsent(purpose, study, allow, l4));
      await state.route();
      document.getElementById("consent-status").replaceChildren(h("div", { class: "done", role: "status" }, t("saved")));
    } catch (e) {
      status.replaceChildren(notice(e));
    }
  };
  const research = consents.find((x) => x.purpose === "research" && !x.study);
  const l4 = h("input", { type: "checkbox", id: "l4", checked: research && research.now && research.now.l4 });
  // Undecided studies first: they are what waits.
  invitations.sort((a, b) => Number(!!(byStudy.get(a.study) || {}).now) - Number(!!(byStudy.get(b.study) || {}).now));
  const general = research && research.now ? research.now.state : null;
  const inv = invitations.map((i) => {
    const d = byStudy.get(i.study);
    return h(
      "section",
      { class: "card", "aria-labelledby": "inv-" + i.study },
      h("h3", { id: "inv-" + i.study }, t("invitation", { study: i.study })),
      h("p", {}, t("invitation_by", { who: i.institution, purpose: purposeName(i.purpose) })),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, t("inv_reads")),
        h("dd", {}, i.fields.length ? list(i.fields) : "—"),
        h("dt", {}, t("inv_where")),
        h("dd", {}, list(i.owners)),
        h("dt", {}, t("inv_how")),
        h("dd", {}, t("mode_" + i.mode), " ", t("level_" + i.level)),
      ),
      d && d.now
        ? h("p", {}, t(d.now.state === "allow" ? "decided_allow" : "decided_deny"))
        : [
            h("p", {}, t(general === "allow" ? "inv_until_allow" : "inv_until_deny")),
            h(
            "div",
            { class: "row" },
            h("button", { type: "button", onclick: decide("research", i.study, true, false), "aria-describedby": "inv-" + i.study }, t("allow")),
            h("button", { type: "button", class: "warn", onclick: decide("research", i.study, false, false), "aria-describedby": "inv-" + i.study }, t("decline")),
          ),
          ],
    );
  });
  const purposes = ["research", "public_health", "drug_safety", "teaching"];
  const rows = purposes.map((p) => {
    const cur = consents.find((x) => x.purpose === p && !x.study);
    const st = cur && cur.now ? cur.now.state : null;
    return h(
      "tr",
      {},
      h("th", { scope: "row" }, purposeName(p)),
      h("td", {}, t(st ? "state_" + st : "state_none"), st === "allow" && cur.now.l4 ? h("span", { class: "muted l4-on" }, h("br"), t("l4_on")) : null),
      h("td", {}, cur && cur.now ? number(cur.now.height) : "—"),
      h(
        "td",
        {},
        h(
          "div",
          { class: "row" },
          h("button", { type: "button", class: "secondary", onclick: () => decide(p, null, true, p === "research" && l4.checked)(), "aria-label": `${t("allow")}: ${purposeName(p)}` }, t("allow")),
          h("button", { type: "button", class: "secondary", onclick: decide(p, null, false, false), "aria-label": `${t("decline")}: ${purposeName(p)}` }, t("decline")),
        ),
      ),
    );
  });
  show(
    h("h1", {}, t("consents_title")),
    status,
    inv.length ? inv : h("p", {}, t("invitations_none")),
    h("h2", {}, t("general_title")),
    h("table", { class: "consents" }, h("thead", {}, h("tr", {}, ["purpose_col", "state_col", "since_col", "action_col"].map((k) => h("th", { scope: "col" }, t(k))))), h("tbody", {}, rows)),
    h("p", { class: "check" }, l4, " ", h("label", { for: "l4" }, t("l4_label"))),
  );
}

// ---------------------------------------------------------------- access codes

const TYPES = ["Encounter", "Condition", "Observation", "MedicationRequest"];

async function grantsPage(fresh) {
  const c = state.client;
  const pt = state.session.patient;
  const a = await c.anchored(`/v1/patients/${pt}/grants`);
  const grants = [];
  for (const p of a.body.grants || []) {
    const chk = await L.checkProven(a.root, p);
    if (chk.ok) grants.push(L.decodeGrant(chk.value));
  }
  const names = state.genesis.validators.map((v) => v.name).concat((state.genesis.observers || []).map((v) => v.name));
  const hospitals = state.genesis.validators.map((v) => v.name).filter((n) => n.startsWith("hospital"));
  const sel = (id, opts, value) => h("select", { id }, opts.map((o) => h("option", { value: o, selected: o === value }, o)));
  const grantee = sel("grantee", names, names.find((n) => n !== state.member && n.startsWith("hospital")));
  const holder = sel("holder", hospitals.length ? hospitals : names, state.member);
  const purpose = h("select", { id: "purpose" }, ["treatment", "insurance_claim", "patient_access"].map((p) => h("option", { value: p }, purposeName(p))));
  const days = h("input", { type: "number", id: "days", min: "1", max: "365", value: "30" });
  const boxes = TYPES.map((ty) => {
    const id = "type-" + ty;
    return h("span", { class: "check" }, h("input", { type: "checkbox", id, value: ty, checked: true }), " ", h("label", { for: id }, t("t_" + ty)), " ");
  });
  const status = h("div", { "aria-live": "polite", id: "grant-status" });
  const issue = async (ev) => {
    ev.preventDefault();
    status.replaceChildren(h("p", {}, t("saving")));
    try {
      const code = L.newCode();
      const now = Date.now();
      const types = TYPES.filter((ty) => document.getElementById("type-" + ty).checked);
      const { payload, codeHash } = await L.issueGrant(pt, {
        grantee: grantee.value,
        holder: holder.value,
        purpose: purpose.value,
        resourceTypes: types,
        fromMs: 0,
        toMs: now,
        expiryMs: now + Math.max(1, Number(days.value) || 30) * 86400000,
        maxUses: 0,
        code,
      });
      await c.submit(payload);
      await grantsPage({ code, codeHash, grantee: grantee.value });
    } catch (e) {
      status.replaceChildren(notice(e));
    }
  };
  const revoke = (id) => async () => {
    status.replaceChildren(h("p", {}, t("saving")));
    try {
      await c.submit(L.revokeGrant(id));
      await grantsPage();
      document.getElementById("grant-status").replaceChildren(h("div", { class: "done", role: "status" }, t("saved")));
    } catch (e) {
      status.replaceChildren(notice(e));
    }
  };
  let codeBox = null;
  if (fresh) {
    const g = grants.find((x) => x.codeHash === fresh.codeHash);
    const id = g ? g.id : "";
    const payload = `medspace:grant=${id};code=${fresh.code}`;
    const copied = h("span", { "aria-live": "polite" });
    codeBox = h(
      "section",
      { class: "done", "aria-labelledby": "code-h", id: "code-box", "data-grant": id },
      h("h2", { id: "code-h" }, t("code_title")),
      h("p", { class: "code", id: "code" }, fresh.code),
      h("p", { class: "muted" }, id),
      qr.svg(qr.encode(new TextEncoder().encode(payload)), t("qr_label")),
      h("p", {}, t("code_hint", { who: fresh.grantee })),
      h("div", { class: "row" }, h("button", { type: "button", class: "secondary", id: "copy", onclick: async () => {
        try {
          await navigator.clipboard.writeText(fresh.code);
        } catch {
          /* the code stays on screen */
        }
        copied.textContent = t("copied");
      } }, t("copy")), copied),
    );
  }
  const rows = grants
    .slice()
    .reverse()
    .map((g) =>
      h(
        "li",
        { class: "card", "data-grant": g.id },
        h("p", {}, t("grant_row", { grantee: g.grantee, holder: g.holder, types: typesName(g.resourceTypes) })),
        h("p", { class: "muted" }, `${g.id} · ${purposeName(g.purpose)} · ${date(g.expiryMs)} · ${t("grant_uses", { n: number(g.uses) })} · `, h("strong", {}, t(g.revoked ? "grant_revoked" : "grant_active"))),
        g.revoked ? null : h("button", { type: "button", class: "warn", onclick: revoke(g.id), "aria-label": `${t("revoke")} ${g.id}` }, t("revoke")),
      ),
    );
  show(
    h("h1", {}, t("grants_title")),
    codeBox,
    status,
    h(
      "form",
      { onsubmit: issue },
      h("label", { for: "grantee" }, t("grantee")),
      grantee,
      h("label", { for: "holder" }, t("holder")),
      holder,
      h("label", { for: "purpose" }, t("purpose")),
      purpose,
      h("fieldset", {}, h("legend", {}, t("types")), boxes),
      h("label", { for: "days" }, t("days")),
      days,
      h("p", {}, h("button", { type: "submit", id: "issue" }, t("issue"))),
    ),
    h("h2", {}, t("grants_list")),
    rows.length ? h("ul", { class: "plain" }, rows) : h("p", {}, t("grants_none")),
  );
}

// ---------------------------------------------------------------- the log

async function logPage(patient) {
  const c = state.client;
  const body = await c.get(`/v1/patients/${patient}/log`);
  let header = null;
  let blockError = null;
  try {
    header = await c.header(body.height);
  } catch (e) {
    blockError = e;
  }
  const prefix = "0f" + patient.replace(/^pt-/, "");
  const accesses = new Map();
  for (const p of body.accesses || []) {
    const chk = header ? await L.checkProven(header.stateRoot, p) : { ok: false, value: null };
    if (chk.ok) {
      const acc = L.decodeAccess(chk.value);
      accesses.set(acc.id, acc);
    }
  }
  const rows = [];
  for (const p of body.log || []) {
    let ok = false;
    let entry = null;
    try {
      const chk = header ? await L.checkProven(header.stateRoot, p) : { ok: false, value: new Uint8Array() };
      ok = chk.ok && p.key.startsWith(prefix);
      entry = L.decodeLogEntry(chk.value.length ? chk.value : Uint8Array.from((p.value || "").match(/../g) || [], (x) => parseInt(x, 16)));
    } catch {
      ok = false;
    }
    rows.push(
      h(
        "tr",
        { "data-verified": ok ? "true" : "false", "data-height": ok && entry ? String(entry.height) : "0" },
        h("td", {}, ok && entry ? date(entry.timeMs) : "—", h("br"), h("span", { class: "muted" }, ok && entry ? "#" + number(entry.height) : "")),
        // What an entry says is shown only once its proof holds.
        h("td", {}, ok && entry ? describe(entry.event, accesses) : h("em", {}, t("entry_unverified"))),
        h("td", {}, h("span", { class: "badge " + (ok ? "ok" : "bad") }, ok ? "✓ " + t("verified") : "✗ " + t("not_verified"))),
      ),
    );
  }
  // Jobs that may have counted the patient at their hospitals: job and contract proven at the
  // answer's own certified height.
  const jobRows = [];
  try {
    const members = await c.get("/v1/members");
    const hospitals = (members.members || []).filter((m) => m.active && m.member && m.member.kind === "hospital").map((m) => m.member.id);
    const ja = await c.get(`/v1/patients/${patient}/jobs?holders=${hospitals.join(",")}`);
    const jh = await c.header(ja.height);
    for (const j of ja.jobs || []) {
      const job = await L.checkProven(jh.stateRoot, j.job);
      const con = await L.checkProven(jh.stateRoot, j.contract);
      let ok = job.ok && con.ok && hospitals.includes(j.at);
      let jr = null;
      let cr = null;
      try {
        jr = L.decodeJobHead(job.value);
        cr = L.decodeContractHead(con.value);
        ok = ok && jr.contract === cr.id;
      } catch {
        ok = false;
      }
      jobRows.push(
        h(
          "tr",
          { "data-verified": ok ? "true" : "false", class: "job", "data-height": ok ? String(jr.height) : "0" },
          h("td", {}, ok ? date(jr.timeMs) : "—", h("br"), h("span", { class: "muted" }, ok ? "#" + number(jr.height) : "")),
          h(
            "td",
            {},
            ok
              ? t(jr.done ? "ev_job_done" : "ev_job_running", {
                  job: jr.id,
                  who: cr.institution,
                  purpose: purposeName(cr.purpose),
                  study: cr.study ? t("ev_study", { study: cr.study }) : "",
                  at: j.at,
                })
              : h("em", {}, t("entry_unverified")),
          ),
          h("td", {}, h("span", { class: "badge " + (ok ? "ok" : "bad") }, ok ? "✓ " + t("verified") : "✗ " + t("not_verified"))),
        ),
      );
    }
  } catch {
    // No jobs are listed unless their block verifies: the notice above says so when it
    // does not; a refusal of the jobs query leaves the rest of the log standing.
  }
  rows.push(...jobRows);
  rows.sort((a, b) => Number(a.dataset.height) - Number(b.dataset.height));
  show(
    h("h1", {}, t("log_title")),
    h("p", { class: "lead" }, t("log_intro")),
    header
      ? h("p", { class: "muted", id: "block" }, t("block_ok", { height: number(header.height), n: number(state.genesis.validators.length) }))
      : h("div", { class: "notice", role: "alert", id: "block" }, t("block_bad")),
    // Without a verified block nothing is listed: the notice above says why.
    !header
      ? null
      : rows.length
      ? h("table", { id: "log" }, h("thead", {}, h("tr", {}, ["when_col", "what_col", "proof_col"].map((k) => h("th", { scope: "col" }, t(k))))), h("tbody", {}, rows))
      : h("p", {}, t("log_none")),
  );
  void blockError;
}

function describe(ev, accesses) {
  switch (ev.kind) {
    case "consent":
      return t("ev_consent", {
        purpose: purposeName(ev.purpose),
        study: ev.study ? t("ev_study", { study: ev.study }) : "",
        state: t("state_" + ev.state),
      });
    case "grant_issued":
      return t("ev_grant_issued", { id: ev.id });
    case "grant_revoked":
      return t("ev_grant_revoked", { id: ev.id });
    case "accessed": {
      const a = accesses.get(ev.id);
      return a
        ? t("ev_accessed", { recipient: a.recipient, holder: a.holder, count: number(a.resourceCount), types: typesName(a.resourceTypes) })
        : t("ev_accessed_unknown", { id: ev.id });
    }
    case "rebind_asked":
      return t("ev_rebind_asked", { hospital: ev.hospital, key: ev.newKey.slice(0, 16) + "…", from: date(ev.effectiveMs) });
    case "rebind_cancelled":
      return t("ev_rebind_cancelled", { hospital: ev.hospital, key: ev.newKey.slice(0, 16) + "…" });
    case "rebound":
      return t("ev_rebound", { hospital: ev.hospital, key: ev.newKey.slice(0, 16) + "…" });
    default:
      return t("ev_destroyed", { id: ev.id });
  }
}

// ---------------------------------------------------------------- the record

function recordPage() {
  const status = h("div", { "aria-live": "polite", id: "record-status" });
  const download = async () => {
    status.replaceChildren(h("p", {}, t("record_fetching")));
    try {
      const rec = await state.client.exportRecord();
      if (!rec.from.length) {
        status.replaceChildren(h("div", { class: "notice", role: "alert" }, t("record_none")));
        return;
      }
      const total = rec.from.reduce((a, [, n]) => a + n, 0);
      const blob = new Blob([JSON.stringify(rec.bundle, null, 2)], { type: "application/fhir+json" });
      const a = h("a", { href: URL.createObjectURL(blob), download: "medical-record.json", id: "record-file" }, t("record_save"));
      status.replaceChildren(
        h(
          "div",
          { class: "done", role: "status" },
          h("p", {}, t("record_ready", { n: number(total), from: list(rec.from.map(([m, n]) => t("record_from", { m, n: number(n) }))) })),
          rec.unreachable.length ? h("p", {}, t("record_unreachable", { who: list(rec.unreachable) })) : null,
          h("p", {}, a),
        ),
      );
      a.click();
    } catch (e) {
      status.replaceChildren(notice(e));
    }
  };
  show(
    h("h1", {}, t("record_title")),
    h("p", { class: "lead" }, t("record_intro")),
    h("p", {}, h("button", { type: "button", id: "download", onclick: download }, t("record_download"))),
    status,
  );
}


const isPatient = (p) => p.kind === "patient";

/// The patient's pages, for the router.
export const pages = [
  { id: "consents", nav: "nav_consents", title: "consents_title", may: isPatient, render: () => consentsPage() },
  { id: "grants", nav: "nav_grants", title: "grants_title", may: isPatient, render: () => grantsPage() },
  { id: "log", nav: "nav_log", title: "log_title", may: isPatient, render: (q) => logPage(q.get("patient") || state.session.patient) },
  { id: "record", nav: "nav_record", title: "record_title", may: isPatient, render: () => recordPage() },
];
