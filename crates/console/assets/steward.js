// The data steward's hospital page: what the hospital's vault holds as its catalog entry says
// (rows per CDM table, quality, fields and levels), and every contract that covers its data with
// the patients it contributed — each contract proven against a certified block.

import * as L from "./ledger.js";
import { t, date, number, list } from "./i18n.js";
import { state, h, show, bars, table, notice } from "./ui.js";
import { publishDataset, publishRelease } from "./governance.js";
import { catalog, datasetCard, provenContract, levelName, statusName } from "./researcher.js";
import { releaseFacts, reportView, riskPct } from "./openpool.js";

/// A sensible first release specification (the demo's): year of birth in bands, gender, race
/// and ethnicity kept or suppressed, the condition as the sensitive attribute, k = 5, l = 2,
/// dates shifted per person; for the hospital's own dataset.
function defaultSpec(member) {
  return {
    version: 1,
    dataset: `${member}.cdm`,
    tables: {
      condition_occurrence: ["condition_concept_id", "condition_start_date", "condition_source_value"],
      visit_occurrence: ["visit_concept_id", "visit_start_date", "visit_end_date"],
      measurement: ["measurement_source_value", "measurement_date", "value_as_number", "unit_source_value"],
    },
    quasi_identifiers: [
      { field: "year_of_birth", hierarchy: { kind: "interval", widths: [5, 10, 20, 40] } },
      { field: "gender", hierarchy: { kind: "suppress" } },
      { field: "race", hierarchy: { kind: "suppress" } },
      { field: "ethnicity", hierarchy: { kind: "suppress" } },
    ],
    sensitive: ["condition"],
    k: 5,
    l: { distinct: 2 },
    max_suppression: 0.2,
    dates: { shift_days: 30 },
  };
}

const OPEN_PURPOSES = ["research", "public_health", "drug_safety", "quality_management", "teaching"];

/// A release's deliveries as the ledger records them (each proven), with whether each copy
/// was destroyed, is due, or is overdue.
function releaseDeliveries(d, member) {
  const rows = [];
  const now = Date.now();
  return (async () => {
    for (const x of d.body.releases || []) {
      const chk = await L.checkProven(d.root, x.delivery);
      let r = null;
      try {
        r = chk.ok ? L.decodeDelivery(chk.value) : null;
      } catch {
        r = null;
      }
      if (r && r.holder !== member) continue;
      if (!r) {
        rows.push(h("tr", { "data-verified": "false" }, h("td", { colspan: "5" }, h("em", {}, t("entry_unverified")))));
        continue;
      }
      const live = r.destroyedHeight === null;
      const late = live && x.due_ms !== null && x.due_ms < now;
      rows.push(
        h(
          "tr",
          { "data-delivery": r.id, "data-verified": "true", "data-state": live ? (late ? "overdue" : "held") : "destroyed" },
          h("td", {}, date(r.timeMs), h("br"), h("span", { class: "muted" }, "#" + number(r.height))),
          h("td", {}, r.recipient, h("br"), h("span", { class: "muted" }, r.contract)),
          h("td", {}, h("code", { translate: "no" }, r.dataset), " ", t("op_version", { v: number(r.version) })),
          h("td", { class: "num" }, number(r.bytes)),
          h(
            "td",
            {},
            live
              ? h("span", { class: "badge " + (late ? "bad" : "ok") }, late ? t("op_overdue_since", { when: date(x.due_ms) }) : t("op_due", { when: date(x.due_ms) }))
              : h("span", { class: "badge ok" }, t("op_destroyed_at", { height: number(r.destroyedHeight) })),
          ),
        ),
      );
    }
    return rows;
  })();
}

/// The hospital's open-pool releases: what each states, its deliveries, and (at the
/// hospital's own node) a new release planned from the vault and published by the steward.
async function releasesSection(member, datasets, proven) {
  const mine = datasets.filter((d) => d.owner === member && d.release);
  const sources = datasets.filter((d) => d.owner === member && !d.release);
  const rows = await releaseDeliveries(proven, member);
  const parts = [
    h("h2", { id: "releases-h" }, t("rl_title")),
    h("p", { class: "lead" }, t("rl_intro")),
    mine.length
      ? mine.map((d) => h("section", { class: "card release", "data-dataset": d.description.id, "aria-labelledby": "rl-" + d.description.id.replace(/[^a-z0-9]/gi, "-") }, h("h3", { id: "rl-" + d.description.id.replace(/[^a-z0-9]/gi, "-"), translate: "no" }, d.description.title || d.description.id), releaseFacts(d)))
      : h("p", { id: "no-releases" }, t("rl_none")),
    h("h3", {}, t("rl_deliveries")),
    rows.length
      ? h("table", { id: "release-deliveries" }, h("thead", {}, h("tr", {}, [t("when_col"), t("rl_recipient"), t("op_what"), t("rl_bytes"), t("op_destruction")].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows))
      : h("p", { id: "no-release-deliveries" }, t("rl_no_deliveries")),
  ];
  if (state.member !== member) {
    parts.push(h("p", { class: "muted", id: "release-elsewhere" }, t("rl_elsewhere", { member })));
    return parts.flat();
  }
  parts.push(planForm(member, sources.length ? sources[0].description.id : `${member}.cdm`));
  return parts.flat();
}

/// The release builder: a specification (prefilled), its purposes and the release's id; the
/// plan the node builds from the vault (nothing published); then the steward signs it.
function planForm(member, source) {
  const spec = defaultSpec(member);
  spec.dataset = source;
  const text = h("textarea", { id: "rl-spec", rows: "18", spellcheck: "false", autocomplete: "off", "aria-describedby": "rl-spec-hint" }, JSON.stringify(spec, null, 2));
  const release = h("input", { type: "text", id: "rl-release", value: `${member}.open`, autocomplete: "off", spellcheck: "false", size: "30" });
  const purposes = OPEN_PURPOSES.map((p) => h("span", { class: "check" }, h("input", { type: "checkbox", id: "rl-p-" + p, value: p, checked: p === "research" }), " ", h("label", { for: "rl-p-" + p }, t("p_" + p))));
  const status = h("div", { "aria-live": "polite", id: "rl-status" });
  const errors = h("div", { id: "rl-errors" });
  const plan = async (ev) => {
    ev.preventDefault();
    errors.replaceChildren();
    const problems = [];
    let parsed = null;
    try {
      parsed = JSON.parse(text.value);
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
    } catch {
      problems.push(["rl-spec", t("rl_bad_spec")]);
    }
    const chosen = OPEN_PURPOSES.filter((p) => document.getElementById("rl-p-" + p).checked);
    if (!chosen.length) problems.push(["rl-p-research", t("rl_bad_purposes")]);
    if (!/^[a-z0-9][a-z0-9._-]{0,47}$/.test(release.value.trim())) problems.push(["rl-release", t("rl_bad_release")]);
    if (problems.length) {
      errors.replaceChildren(
        h(
          "div",
          { class: "notice", role: "alert", id: "rl-error-summary", tabindex: "-1" },
          h("p", {}, t("rl_problems")),
          h("ul", {}, problems.map(([id, msg]) => h("li", {}, h("a", { href: "#" + id, onclick: (e) => (e.preventDefault(), document.getElementById(id).focus()) }, msg)))),
        ),
      );
      document.getElementById("rl-error-summary").focus();
      return;
    }
    status.replaceChildren(h("p", {}, t("rl_planning")));
    let p;
    try {
      p = await state.client.post("/v1/worker/releases/plan", { spec: parsed, purposes: chosen, release: release.value.trim() });
    } catch (e) {
      status.replaceChildren(e instanceof L.Refused && e.reason ? h("div", { class: "notice", role: "alert" }, t("rl_refused"), " ", h("span", { translate: "no" }, "(" + e.reason + ")")) : notice(e));
      return;
    }
    status.replaceChildren(planView(p, member));
  };
  return h(
    "form",
    { class: "card", id: "release-plan", onsubmit: plan, novalidate: true, "aria-labelledby": "rl-plan-h" },
    h("h3", { id: "rl-plan-h" }, t("rl_plan_title")),
    h("p", {}, t("rl_plan_intro")),
    errors,
    h("label", { for: "rl-spec" }, t("rl_spec")),
    h("p", { class: "muted", id: "rl-spec-hint" }, t("rl_spec_hint")),
    text,
    h("fieldset", {}, h("legend", {}, t("rl_purposes")), h("div", { class: "row" }, purposes)),
    h("label", { for: "rl-release" }, t("rl_release_id")),
    release,
    h("p", { class: "muted" }, t("rl_plan_warn")),
    h("p", {}, h("button", { type: "submit", id: "rl-plan" }, t("rl_plan"))),
    status,
  );
}

/// What the plan would publish: the chosen generalization, k, l, the risks, the information
/// lost and the classes' sizes; then the steward's signature publishes it.
function planView(p, member) {
  const f = p.figures;
  const e = p.entry;
  const out = h("div", { "aria-live": "polite", id: "rl-publish-status" });
  const sign = async () => {
    out.replaceChildren(h("p", {}, t("saving")));
    try {
      await state.client.submit(publishRelease(e, f));
      await state.route();
      const st = document.getElementById("rl-status");
      if (st) st.replaceChildren(h("div", { class: "done", role: "status", id: "rl-published" }, t("rl_published", { id: e.id, version: number(e.version) })));
    } catch (err) {
      out.replaceChildren(notice(err));
    }
  };
  return h(
    "div",
    { class: "card", id: "rl-plan-result", "data-k": String(f.k), "data-l": String(f.l) },
    h("p", {}, h("strong", {}, t("rl_plan_what", { id: e.id, version: number(e.version), persons: number(f.persons), eligible: number(p.eligible), suppressed: number(f.suppressed) }))),
    releaseFacts({ owner: member, description: e, published_height: 0, release: f })[0],
    h("p", { class: "muted" }, t("rl_risk_standard", { max: riskPct(f.prosecutor_max_ppm) })),
    h("h4", {}, t("op_report")),
    reportView(p.report, "plan"),
    h("p", {}, h("button", { type: "button", id: "rl-publish", onclick: sign }, t("rl_publish"))),
    out,
  );
}

/// A FHIR resource type in words where the console has them, else as it is.
function typeName(x) {
  const k = "t_" + x;
  const v = t(k);
  return v === k ? x : v;
}

/// The vault as this hospital's node reports it to its steward: persons and links, rows per
/// CDM table (a chart), every ingest. Only the hospital's own node holds it.
async function vaultSection(member, published) {
  if (state.member !== member) return [h("h2", {}, t("vault_title")), h("p", { id: "vault-elsewhere" }, t("vault_elsewhere", { member }))];
  const v = await state.client.get("/v1/worker/vault");
  const tables = Object.entries(v.tables || {}).sort((a, b) => b[1] - a[1]);
  // Whether the catalog entry on the ledger still says what the vault holds; publishing signs
  // the entry the node builds from the vault (its next version), after the steward reads it.
  // Empty tables count as absent on either side (the vault lists every CDM table).
  const rowsOn = (d) => Object.fromEntries(((d && d.tables) || []).filter((x) => Number(x.rows) > 0).map((x) => [x.name, Number(x.rows)]));
  const onLedger = rowsOn(published && published.description);
  const held = tables.filter(([, n]) => n > 0);
  const same = published && held.every(([k, n]) => onLedger[k] === n) && Object.keys(onLedger).length === held.length;
  const status = h("div", { "aria-live": "polite", id: "publish-status" });
  const prepare = async () => {
    status.replaceChildren(h("p", {}, t("publish_building")));
    try {
      const entry = await state.client.get("/v1/worker/vault/entry");
      const rows = entry.tables.reduce((a, x) => a + Number(x.rows), 0);
      const sign = async () => {
        status.replaceChildren(h("p", {}, t("saving")));
        try {
          await state.client.submit(publishDataset(entry));
          await state.route();
          document.getElementById("publish-status").replaceChildren(h("div", { class: "done", role: "status" }, t("publish_done", { version: number(entry.version) })));
        } catch (e) {
          status.replaceChildren(notice(e));
        }
      };
      status.replaceChildren(
        h(
          "div",
          { class: "card", id: "publish-entry" },
          h("p", {}, t("publish_what", { id: entry.id, version: number(entry.version), tables: number(entry.tables.length), rows: number(rows) })),
          h("p", { class: "muted" }, t("publish_levels")),
          h("p", {}, h("button", { type: "button", id: "publish-sign", onclick: sign }, t("publish_sign"))),
        ),
      );
    } catch (e) {
      status.replaceChildren(notice(e));
    }
  };
  return [
    h("h2", {}, t("vault_title")),
    h("p", { id: "vault-links" }, t("vault_links", { persons: number(v.persons), linked: number(v.linked) })),
    bars(tables.map(([k, n]) => [k, n]), t("vault_rows_chart"), { labelsAreData: true }),
    h("h3", {}, t("vault_ingests")),
    table(
      [t("vault_ingest"), t("vault_resources"), t("vault_rows")],
      (v.ingests || []).map((i) => [h("code", { translate: "no" }, i.name), number(i.resources), number(Object.values(i.tables || {}).reduce((a, b) => a + b, 0))]),
      { id: "vault-ingests" },
    ),
    h("p", { id: "catalog-state", class: same ? "muted" : null }, t(same ? "publish_current" : "publish_stale")),
    h("p", {}, h("button", { type: "button", class: same ? "secondary" : null, id: "publish", onclick: prepare }, t("publish_prepare"))),
    status,
  ];
}

async function hospitalPage() {
  const member = state.principal.member;
  // The deliveries' proof is fetched beside the rest, not after it.
  const proven = state.client.anchored(`/v1/members/${member}/deliveries`);
  const [datasets, listed] = await Promise.all([catalog(), state.client.get("/v1/contracts")]);
  const mine = datasets.filter((d) => d.owner === member);
  const vault = vaultSection(member, mine.find((x) => !x.release));
  const all = listed.contracts || [];
  const rows = [];
  // Every contract proven at once (each is its own proof; none waits for another).
  const recs = await Promise.all(all.slice().reverse().map((s) => provenContract(s.id)));
  for (const { rec } of recs) {
    if (!rec.owners.includes(member)) continue;
    const given = rec.contributions.find((c) => c.member === member);
    rows.push(
      h(
        "tr",
        { "data-contract": rec.id },
        h("td", {}, h("a", { href: "#/queue?contract=" + rec.id }, rec.id)),
        h("td", {}, rec.requester),
        h("td", {}, rec.study || "—"),
        h("td", {}, levelName(rec.level)),
        h("td", {}, statusName(rec.status)),
        h("td", {}, given ? number(given.records) : "0"),
      ),
    );
  }
  // Every record delivery this hospital served, each checked against a certified block.
  const d = await proven;
  const deliveries = [];
  for (const p of d.body.deliveries || []) {
    const chk = await L.checkProven(d.root, p);
    let a = null;
    try {
      a = chk.ok ? L.decodeAccess(chk.value) : null;
    } catch {
      a = null;
    }
    deliveries.push(
      h(
        "tr",
        { "data-verified": a && a.holder === member ? "true" : "false", "data-access": a ? a.id : "" },
        h("td", {}, a ? date(a.timeMs) : "—", h("br"), h("span", { class: "muted" }, a ? "#" + number(a.height) : "")),
        h("td", {}, a ? t("delivery_row", { recipient: a.recipient, n: number(a.resourceCount), types: list(a.resourceTypes.map(typeName)) }) : h("em", {}, t("entry_unverified"))),
        h("td", {}, a ? h("code", { translate: "no" }, "pt-" + a.patient.slice(0, 12) + "…") : "—"),
        h("td", {}, h("span", { class: "badge " + (a ? "ok" : "bad") }, a ? "✓ " + t("verified") : "✗ " + t("not_verified"))),
      ),
    );
  }
  show(
    h("h1", {}, t("hospital_title", { member })),
    h("p", { class: "lead" }, t("hospital_intro")),
    await vault,
    mine.some((x) => !x.release) ? mine.filter((x) => !x.release).map(datasetCard) : h("p", { id: "empty-dataset" }, t("hospital_no_dataset")),
    await releasesSection(member, datasets, d),
    h("h2", {}, t("hospital_contracts")),
    rows.length
      ? h("table", { id: "hospital-contracts" }, h("thead", {}, h("tr", {}, [t("col_contract"), t("requester"), t("study_id"), t("col_level"), t("col_status"), t("col_contributed")].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows))
      : h("p", { id: "empty" }, t("hospital_no_contracts")),
    h("h2", {}, t("hospital_deliveries")),
    h("p", { class: "muted" }, t("block_ok", { height: number(d.header.height), n: number(state.genesis.validators.length) })),
    deliveries.length
      ? h("table", { id: "deliveries" }, h("thead", {}, h("tr", {}, [t("when_col"), t("what_col"), t("col_patient"), t("proof_col")].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, deliveries))
      : h("p", { id: "no-deliveries" }, t("hospital_no_deliveries")),
  );
}

const isSteward = (p) => p.kind === "user" && p.role === "steward";

/// The steward's pages, for the router.
export const pages = [{ id: "hospital", nav: "nav_hospital", title: "hospital_title", may: isSteward, render: () => hospitalPage() }];
