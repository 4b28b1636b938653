// The researcher's pages: the catalog (datasets, fields and their privacy levels, row counts,
// the quality profile drawn as charts), the study builder (a federated query specification,
// the level it needs and the approvals that level requires, shown before it is signed), and
// their studies: each contract's approvals as they come in (one long-poll per block), its
// jobs, and the released results — checked against the hash on the ledger — as a chart, a
// table and a CSV file.

import * as L from "./ledger.js";
import { t, date, number, list } from "./i18n.js";
import { state, h, show, notice, facts, table, bars, submitting, onNewBlocks } from "./ui.js";

const LEVEL = { L1: 1, L2: 2, L3: 3, L4: 4 };
const PURPOSES = ["research", "public_health", "drug_safety"];
const micro = (eps) => Math.round(Number(eps) * 1e6);
const eps = (m) => (Number(m) / 1e6).toFixed(3);
const pct = (ppm) => `${(Number(ppm) / 10000).toFixed(1)} %`;

export function levelName(n) {
  return t("lv_" + n);
}

export function roleName(r) {
  return t("role_" + r);
}

/// An approval slot in words: "steward of hospital-a" or "data committee (any member)".
export function slotName(a) {
  return a.member ? t("slot_of", { role: roleName(a.role), member: a.member }) : t("slot_any", { role: roleName(a.role) });
}

export async function catalog() {
  const c = await state.client.get("/v1/catalog");
  return c.datasets || [];
}

// ---------------------------------------------------------------- the catalog

/// One dataset's catalog entry: its facts, rows per table and quality profile as charts, and
/// each table's fields with their levels.
export function datasetCard(d) {
  {
    const desc = d.description;
    const tables = desc.tables || [];
    const total = tables.reduce((a, x) => a + Number(x.rows), 0);
    const id = "ds-" + desc.id.replace(/[^a-z0-9]/gi, "-");
    return h(
      "section",
      { class: "card", "aria-labelledby": id, "data-dataset": desc.id },
      h("h2", { id, translate: "no" }, desc.title || desc.id),
      facts([
        [t("ds_id"), h("code", { translate: "no" }, desc.id)],
        [t("ds_owner"), d.owner],
        [t("ds_rows"), number(total)],
        [t("ds_version"), t("ds_version_at", { v: number(desc.version), height: number(d.published_height) })],
      ]),
      h("h3", {}, t("ds_rows_chart")),
      bars(tables.map((x) => [x.name, Number(x.rows)]), t("ds_rows_chart_label", { id: desc.id }), { labelsAreData: true }),
      h("h3", {}, t("ds_quality")),
      bars(
        tables.map((x) => [x.name, Number(x.duplicate_ppm) + Number(x.implausible_ppm)]),
        t("ds_quality_label", { id: desc.id }),
        { fmt: pct, labelsAreData: true },
      ),
      h("p", { class: "muted" }, t("ds_quality_hint")),
      tables.map((x) =>
        h(
          "details",
          {},
          h("summary", {}, h("code", { translate: "no" }, x.name), " ", t("ds_table_summary", { n: number(x.rows), f: number((x.fields || []).length) })),
          table(
            [t("col_field"), t("col_level"), t("col_missing"), t("col_invalid")],
            (x.fields || []).map((f) => [h("code", { translate: "no" }, f.name), h("span", { class: "lv lv" + LEVEL[f.level] }, levelName(LEVEL[f.level])), pct(f.missing_ppm), pct(f.invalid_ppm)]),
          ),
        ),
      ),
    );
  }
}

async function catalogPage() {
  const cards = (await catalog()).map(datasetCard);
  show(h("h1", {}, t("catalog_title")), h("p", { class: "lead" }, t("catalog_intro")), cards.length ? cards : h("p", { id: "empty" }, t("catalog_none")));
}

// ---------------------------------------------------------------- the study builder

/// What a specification reads: `types::query::validate`'s `reads`, besides `person.person_id`.
export function reads(spec) {
  const c = spec.cohort;
  const out = [["person", "person_id"], ["person", "year_of_birth"]];
  if (c.sex || (spec.group_by || []).includes("sex")) out.push(["person", "gender_source_value"]);
  const table = (on, t, code, d) => on && out.push([t, "person_id"], [t, code], [t, d]);
  table((c.conditions || []).length, "condition_occurrence", "condition_source_value", "condition_start_date");
  table((c.drugs || []).length, "drug_exposure", "drug_source_value", "drug_exposure_start_date");
  table((c.procedures || []).length, "procedure_occurrence", "procedure_source_value", "procedure_date");
  const measured = !!c.measurement || (spec.aggregate && spec.aggregate.mean);
  table(measured, "measurement", "measurement_source_value", "measurement_date");
  if (measured) out.push(["measurement", "value_as_number"]);
  const seen = new Set();
  return out.filter(([a, b]) => !seen.has(a + "." + b) && seen.add(a + "." + b)).sort((x, y) => (x.join(".") < y.join(".") ? -1 : 1));
}

const codesOf = (s) => s.split(/[\s,;]+/).filter(Boolean);

// A specification's numbers are exact decimals, written as JSON numbers from the text typed
// (never through a float): marked here, unquoted by `specJson`.
const DEC = "@@decimal:";
const dec = (s) => (/^-?\d{1,10}(\.\d{1,9})?$/.test(s) ? DEC + s : s);

/// The specification's JSON text: what the contract carries, byte for byte.
export function specJson(spec, indent) {
  return JSON.stringify(spec, null, indent).replace(/"@@decimal:(-?[0-9.]+)"/g, "$1");
}

/// The specification the form describes (the exact computation the contract will carry).
export function specOf(f) {
  const cohort = {};
  for (const k of ["conditions", "drugs", "procedures"]) {
    const v = codesOf(f[k].value);
    if (v.length) cohort[k] = v;
  }
  if (f.mcode.value.trim()) cohort.measurement = { code: f.mcode.value.trim(), op: f.mop.value, value: dec(f.mvalue.value.trim() || "0") };
  if (f.sex.value) cohort.sex = f.sex.value;
  if (f.amin.value !== "" || f.amax.value !== "") cohort.age = { min: Number(f.amin.value || 0), max: Number(f.amax.value || 150) };
  cohort.index_date = f.index.value;
  const spec = { version: 1, cohort, aggregate: "count" };
  if (f.agg.value === "mean") spec.aggregate = { mean: { measurement: f.mean.value.trim(), lower: dec(f.lower.value.trim() || "0"), upper: dec(f.upper.value.trim() || "0") } };
  const g = [];
  if (f.gsex.checked) g.push("sex");
  if (f.gage.checked) g.push("age_band");
  if (g.length) spec.group_by = g;
  return spec;
}

/// The problems of the form, each `[field id, message]` (the error summary links to the field).
function problems(f, spec, hospitals) {
  const out = [];
  const code = /^[A-Za-z0-9.-]{1,32}$/;
  if (!/^[a-z0-9][a-z0-9.-]{0,63}$/.test(f.study.value)) out.push(["study-id", t("err_study")]);
  if (!hospitals.length) out.push(["hospitals", t("err_hospitals")]);
  for (const k of ["conditions", "drugs", "procedures"]) if ((spec.cohort[k] || []).some((x) => !code.test(x))) out.push([k, t("err_code")]);
  if (spec.cohort.measurement) {
    if (!code.test(spec.cohort.measurement.code)) out.push(["mcode", t("err_code")]);
    if (!/^-?\d{1,10}(\.\d{1,9})?$/.test(f.mvalue.value.trim() || "0")) out.push(["mvalue", t("err_number")]);
  }
  const a = spec.cohort.age;
  if (a && !(a.min >= 0 && a.min <= a.max && a.max <= 150)) out.push(["amin", t("err_age")]);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(spec.cohort.index_date)) out.push(["index", t("err_date")]);
  if (spec.aggregate.mean) {
    const m = spec.aggregate.mean;
    if (!code.test(m.measurement)) out.push(["mean", t("err_code")]);
    const num = (x) => Number(String(x).replace(DEC, ""));
    if (!(num(m.lower) < num(m.upper)) || String(m.lower + m.upper).split(DEC).length !== 3) out.push(["lower", t("err_bounds")]);
  }
  const b = Number(f.budget.value);
  if (!(b > 0 && b <= 1000)) out.push(["budget", t("err_budget")]);
  if (!(Number(f.days.value) >= 1)) out.push(["days", t("err_days")]);
  return out;
}

async function studyPage() {
  const [datasets, status] = await Promise.all([catalog(), state.client.get("/v1/status")]);
  const policy = status.policy || { requirements: [] };
  const owners = [...new Set(datasets.map((d) => d.owner))];
  const input = (id, attrs = {}) => h("input", { id, name: id, type: "text", autocomplete: "off", ...attrs });
  const f = {
    study: input("study-id", { value: "study-" + Date.now().toString(36).slice(-5), "aria-describedby": "study-id-hint" }),
    purpose: h("select", { id: "purpose" }, PURPOSES.map((p) => h("option", { value: p }, t("p_" + p)))),
    conditions: input("conditions", { "aria-describedby": "codes-hint" }),
    drugs: input("drugs", { "aria-describedby": "codes-hint" }),
    procedures: input("procedures", { "aria-describedby": "codes-hint" }),
    mcode: input("mcode"),
    mop: h("select", { id: "mop" }, [">=", ">", "<=", "<", "="].map((o) => h("option", { value: o }, o))),
    mvalue: input("mvalue", { inputmode: "decimal" }),
    sex: h("select", { id: "sex" }, [["", "sex_any"], ["female", "sex_female"], ["male", "sex_male"]].map(([v, k]) => h("option", { value: v }, t(k)))),
    amin: h("input", { id: "amin", type: "number", min: "0", max: "150" }),
    amax: h("input", { id: "amax", type: "number", min: "0", max: "150" }),
    index: h("input", { id: "index", type: "date", value: new Date().toISOString().slice(0, 10) }),
    agg: h("select", { id: "agg" }, [["count", "agg_count"], ["mean", "agg_mean"]].map(([v, k]) => h("option", { value: v }, t(k)))),
    mean: input("mean"),
    lower: input("lower", { inputmode: "decimal" }),
    upper: input("upper", { inputmode: "decimal" }),
    gsex: h("input", { id: "gsex", type: "checkbox", checked: true }),
    gage: h("input", { id: "gage", type: "checkbox" }),
    budget: h("input", { id: "budget", type: "number", min: "0.01", step: "0.01", value: "1" }),
    days: h("input", { id: "days", type: "number", min: "1", value: "90" }),
    fee: h("input", { id: "fee", type: "number", min: "0", value: "0" }),
  };
  const boxes = owners.map((o) => h("span", { class: "check" }, h("input", { type: "checkbox", id: "h-" + o, value: o, checked: true, class: "hospital" }), " ", h("label", { for: "h-" + o }, o), " "));
  const meanBox = h("div", { id: "mean-box" }, h("label", { for: "mean" }, t("mean_code")), f.mean, h("div", { class: "row" }, h("span", {}, h("label", { for: "lower" }, t("mean_lower")), f.lower), h("span", {}, h("label", { for: "upper" }, t("mean_upper")), f.upper)));
  const preview = h("section", { id: "preview", class: "panel", "aria-live": "polite", "aria-labelledby": "preview-h" });
  const errors = h("div", { id: "errors" });
  const status2 = h("div", { "aria-live": "polite", id: "study-status" });
  const chosen = () => owners.filter((o) => document.getElementById("h-" + o).checked);

  const update = () => {
    meanBox.hidden = f.agg.value !== "mean";
    const spec = specOf(f);
    const hs = chosen();
    const r = reads(spec);
    const fields = [];
    for (const hname of hs) {
      const d = datasets.find((x) => x.owner === hname);
      for (const [tb, fl] of r) {
        const fd = d && (d.description.tables.find((x) => x.name === tb) || { fields: [] }).fields.find((x) => x.name === fl);
        fields.push({ dataset: d ? d.description.id : `${hname}.cdm`, table: tb, field: fl, level: fd ? LEVEL[fd.level] : 3 });
      }
    }
    const level = Math.max(1, ...fields.map((x) => x.level));
    const slots = [];
    for (const req of policy.requirements || []) {
      if (LEVEL[req.level] > level) continue;
      if (req.scope === "per_owner") for (const o of hs) slots.push({ role: req.role, member: o });
      else slots.push({ role: req.role, member: null });
    }
    const uniq = r.map(([a, b]) => {
      const lv = Math.max(...fields.filter((x) => x.table === a && x.field === b).map((x) => x.level), 1);
      return [`${a}.${b}`, h("span", { class: "lv lv" + lv }, levelName(lv))];
    });
    preview.replaceChildren(
      h("h2", { id: "preview-h" }, t("preview_title")),
      facts([
        [t("preview_level"), h("strong", { id: "preview-level" }, levelName(level))],
        [t("preview_approvals"), slots.length ? h("ul", { id: "preview-approvals" }, slots.map((a) => h("li", {}, slotName(a)))) : t("preview_no_approvals")],
      ]),
      h("p", { class: "muted" }, t("preview_sensitive")),
      h("h3", {}, t("preview_reads")),
      table([t("col_field"), t("col_level")], uniq, { id: "preview-reads" }),
      h("h3", {}, t("preview_spec")),
      h("pre", { id: "spec-json", tabindex: "0" }, specJson(spec, 1)),
    );
    return { spec, hs, fields };
  };

  const submit = async (ev) => {
    ev.preventDefault();
    const { spec, hs, fields } = update();
    const bad = problems(f, spec, hs);
    if (bad.length) {
      errors.replaceChildren(
        h("div", { class: "notice", role: "alert", tabindex: "-1", id: "error-summary" }, h("h2", {}, t("err_title")), h("ul", {}, bad.map(([id, m]) => h("li", {}, h("a", { href: "#" + id, onclick: (e) => (e.preventDefault(), document.getElementById(id === "hospitals" ? "h-" + owners[0] : id).focus()) }, m))))),
      );
      document.getElementById("error-summary").focus();
      return;
    }
    errors.replaceChildren();
    const before = new Set(((await state.client.get("/v1/contracts")).contracts || []).map((x) => x.id));
    // The ledger's time: the last certified block's (the contract's expiry is in block time).
    const st = await state.client.get("/v1/status");
    const now = (await state.client.header(st.height)).timeMs;
    const json = specJson(spec);
    const payload = L.submitRequest({
      purpose: f.purpose.value,
      study: f.study.value,
      fields: fields.map(({ dataset, table: tb, field }) => ({ dataset, table: tb, field })),
      computation: new TextEncoder().encode(json),
      expiryMs: Number(now) + Number(f.days.value) * 86400000,
      epsilonBudget: micro(f.budget.value),
      fee: Number(f.fee.value || 0),
    });
    const id = await submitting(status2, payload, t("study_submitted"));
    if (!id) return;
    const after = ((await state.client.get("/v1/contracts")).contracts || []).filter((x) => !before.has(x.id) && x.requester === state.principal.id);
    const mine = after.map((x) => x.id).sort().pop();
    if (mine) location.hash = "#/studies?contract=" + mine;
  };

  const form = h(
    "form",
    { id: "study-form", onsubmit: submit, oninput: update, onchange: update, novalidate: true },
    errors,
    h("fieldset", {}, h("legend", {}, t("fs_study")),
      h("label", { for: "study-id" }, t("study_id")), h("p", { class: "muted", id: "study-id-hint" }, t("study_id_hint")), f.study,
      h("label", { for: "purpose" }, t("purpose")), f.purpose,
      h("fieldset", { id: "hospitals" }, h("legend", {}, t("hospitals")), boxes.length ? boxes : h("p", {}, t("catalog_none")))),
    h("fieldset", {}, h("legend", {}, t("fs_cohort")),
      h("p", { class: "muted", id: "codes-hint" }, t("codes_hint")),
      h("label", { for: "conditions" }, t("conditions")), f.conditions,
      h("label", { for: "drugs" }, t("drugs")), f.drugs,
      h("label", { for: "procedures" }, t("procedures")), f.procedures,
      h("div", { class: "row" }, h("span", {}, h("label", { for: "mcode" }, t("measurement")), f.mcode), h("span", {}, h("label", { for: "mop" }, t("comparison")), f.mop), h("span", {}, h("label", { for: "mvalue" }, t("threshold")), f.mvalue)),
      h("label", { for: "sex" }, t("sex")), f.sex,
      h("div", { class: "row" }, h("span", {}, h("label", { for: "amin" }, t("age_min")), f.amin), h("span", {}, h("label", { for: "amax" }, t("age_max")), f.amax)),
      h("label", { for: "index" }, t("index_date")), f.index),
    h("fieldset", {}, h("legend", {}, t("fs_output")),
      h("label", { for: "agg" }, t("aggregate")), f.agg, meanBox,
      h("fieldset", {}, h("legend", {}, t("group_by")), h("span", { class: "check" }, f.gsex, " ", h("label", { for: "gsex" }, t("g_sex"))), " ", h("span", { class: "check" }, f.gage, " ", h("label", { for: "gage" }, t("g_age"))))),
    h("fieldset", {}, h("legend", {}, t("fs_terms")),
      h("label", { for: "budget" }, t("budget")), f.budget,
      h("label", { for: "days" }, t("days_valid")), f.days,
      h("label", { for: "fee" }, t("fee")), f.fee),
  );
  // The button after the preview: on a phone too, what it needs is read before it is signed.
  show(
    h("h1", {}, t("builder_title")),
    h("p", { class: "lead" }, t("builder_intro")),
    h("div", { class: "builder" }, form, preview),
    h("p", {}, h("button", { type: "submit", form: "study-form", id: "submit-study" }, t("submit_study"))),
    status2,
  );
  update();
}

// ---------------------------------------------------------------- my studies

/// A contract proven against a certified block, decoded whole.
export async function provenContract(id) {
  const a = await state.client.anchored(`/v1/contracts/${id}`);
  const chk = await L.checkProven(a.root, a.body.contract);
  if (!chk.ok) throw new L.Verification("contract fails its proof");
  const rec = L.decodeContract(chk.value);
  if (rec.id !== id) throw new L.Verification("another contract");
  return { rec, height: a.body.height, statusNow: a.body.status_now };
}

/// The approvals of a contract as a progress bar and a list (who approved, who is awaited).
export function approvalsView(rec) {
  const given = rec.approvals.filter((a) => a.by).length;
  const n = rec.approvals.length;
  return h(
    "div",
    { class: "approvals" },
    h("p", {}, t("approvals_progress", { given: number(given), n: number(n) })),
    h("progress", { max: String(n || 1), value: String(given), "aria-label": t("approvals_progress", { given: number(given), n: number(n) }) }),
    h(
      "ul",
      { class: "plain" },
      rec.approvals.map((a) => h("li", { class: a.by ? "given" : "waiting" }, a.by ? "✓ " : "… ", slotName(a), " — ", a.by ? t("approved_by", { who: a.by }) : t("waiting"))),
    ),
  );
}

export function statusName(s) {
  return t("cs_" + s);
}

async function myContracts() {
  const all = (await state.client.get("/v1/contracts")).contracts || [];
  return all.filter((x) => x.requester === state.principal.id).reverse();
}

async function studiesPage(q) {
  const id = q.get("contract");
  if (id) return contractPage(id);
  const mine = await myContracts();
  const rows = mine.map((x) => [
    h("a", { href: "#/studies?contract=" + x.id }, x.id),
    statusName(x.status),
    levelName(LEVEL[x.level]),
    x.missing_approvals ? t("missing_n", { n: number(x.missing_approvals) }) : "—",
    eps(x.epsilon_left),
  ]);
  show(
    h("h1", {}, t("studies_title")),
    h("p", {}, h("a", { href: "#/study" }, t("new_study"))),
    rows.length ? table([t("col_contract"), t("col_status"), t("col_level"), t("col_missing"), t("col_eps_left")], rows, { id: "studies" }) : h("p", { id: "empty" }, t("studies_none")),
  );
}

/// A released result, fetched from the aggregator (through this node) and checked against the
/// hash the ledger holds; `null` with the reason when it cannot be.
async function released(job) {
  const bytes = await state.client.getAtBytes(job.result.postedBy, `/v1/worker/jobs/${job.id}/result`);
  if ((await L.resultHash(bytes)) !== job.result.hash) throw new L.Verification("result differs from the hash on the ledger");
  return JSON.parse(new TextDecoder().decode(bytes));
}

/// A released group's label in words: sex and "all" translated, age bands as they are.
function groupName(g) {
  return String(g)
    .split(" ")
    .map((w) => ({ female: t("sex_female"), male: t("sex_male"), all: t("group_all") })[w] || w)
    .join(" ");
}

function csvOf(doc) {
  const esc = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  const lines = [["group", "n", "mean", "suppressed_below_k", "epsilon"].join(",")];
  for (const c of doc.cells) lines.push([esc(c.group), c.n === null || c.n === undefined ? "" : c.n, c.mean === null || c.mean === undefined ? "" : c.mean, c.n === null || c.n === undefined ? doc.k : "", eps(doc.epsilon_micro)].join(","));
  return lines.join("\n") + "\n";
}

function resultView(job, doc) {
  const cells = doc.cells || [];
  const mean = cells.some((c) => c.mean !== null && c.mean !== undefined);
  const label = t("result_chart_label", { job: job.id });
  const csv = h("a", { href: URL.createObjectURL(new Blob([csvOf(doc)], { type: "text/csv" })), download: `${job.id}.csv`, class: "button secondary", id: "csv-" + job.id }, t("csv_download"));
  return h(
    "div",
    { class: "result", "data-job": job.id, "data-verified": "true" },
    h("p", {}, h("span", { class: "badge ok" }, "✓ " + t("result_verified")), " ", t("result_protection", { eps: eps(doc.epsilon_micro), k: number(doc.k) })),
    bars(cells.map((c) => [groupName(c.group), c.n === null || c.n === undefined ? null : Math.max(0, c.n), t("suppressed", { k: number(doc.k) })]), label),
    table(
      [t("col_group"), t("col_n"), ...(mean ? [t("col_mean")] : [])],
      cells.map((c) => h("tr", { "data-group": c.group }, [groupName(c.group), c.n === null || c.n === undefined ? t("suppressed", { k: number(doc.k) }) : h("span", { class: "n" }, number(c.n)), ...(mean ? [c.mean === null || c.mean === undefined ? "—" : number(c.mean.toFixed(2))] : [])].map((x) => h("td", {}, x)))),
      { class: "cells" },
    ),
    h("p", { class: "muted" }, t("result_noise", { eps: eps(doc.epsilon_micro) })),
    (doc.contributions || []).length ? h("p", { class: "muted" }, t("contributed", { who: list(doc.contributions.map(([m, n]) => t("contrib_one", { m, n: number(n) }))) })) : null,
    (doc.dropped || []).map(([m, why]) => h("p", { class: "muted" }, t("dropped", { m, why }))),
    doc.failure ? h("div", { class: "notice" }, t("nothing_released", { why: doc.failure })) : null,
    h("p", {}, csv),
  );
}

async function contractPage(id) {
  const body = h("div", { id: "contract-body" });
  const status = h("div", { "aria-live": "polite", id: "job-status" });
  const epsIn = h("input", { id: "job-eps", type: "number", min: "0.01", step: "0.01", value: "0.3" });
  let lastKey = "";
  const results = new Map();
  const render = async () => {
    const { rec } = await provenContract(id);
    const ja = await state.client.anchored(`/v1/contracts/${id}/jobs`);
    const jobs = [];
    for (const p of ja.body.jobs || []) {
      const chk = await L.checkProven(ja.root, p);
      if (chk.ok) jobs.push(L.decodeJob(chk.value));
    }
    const key = JSON.stringify([rec.status, rec.approvals, String(rec.spent), String(rec.reserved), jobs.map((j) => [j.id, !!j.result])]);
    if (key === lastKey) return;
    lastKey = key;
    for (const j of jobs) {
      if (j.result && !results.has(j.id)) {
        try {
          results.set(j.id, await released(j));
        } catch (e) {
          results.set(j.id, e);
        }
      }
    }
    const left = rec.budget - rec.spent - rec.reserved;
    body.replaceChildren(
      ...[
      h("p", { class: "lead", id: "contract-status", "data-status": rec.status }, t("cs_long_" + rec.status)),
      rec.status === "rejected" || rec.status === "terminated" ? h("div", { class: "notice", role: "alert", id: "closing-reason" }, t("closing_reason"), " ", h("q", { translate: "no" }, rec.reason)) : null,
      facts([
        [t("col_contract"), rec.id],
        [t("study_id"), rec.study || "—"],
        [t("purpose"), t("p_" + rec.purpose)],
        [t("col_level"), levelName(rec.level)],
        [t("hospitals"), list(rec.owners)],
        [t("expires"), date(rec.expiryMs)],
        [t("col_eps_left"), h("span", { id: "eps-left" }, t("eps_left", { left: eps(left), budget: eps(rec.budget) }))],
      ]),
      h("h2", {}, t("approvals_title")),
      approvalsView(rec),
      h("h2", {}, t("jobs_title")),
      rec.status === "active"
        ? h("form", { onsubmit: run, class: "row" }, h("span", {}, h("label", { for: "job-eps" }, t("job_epsilon")), epsIn), h("button", { type: "submit", id: "run-job" }, t("run_job")))
        : rec.status === "pending"
          ? h("p", { class: "muted" }, t("jobs_wait_active"))
          : null,
      status,
      jobs.length
        ? jobs
            .slice()
            .reverse()
            .map((j) => {
              const r = results.get(j.id);
              return h(
                "section",
                { class: "card job", "data-job": j.id, "aria-labelledby": "h-" + j.id },
                h("h3", { id: "h-" + j.id }, t("job_head", { job: j.id, when: date(j.timeMs) })),
                !j.result ? h("p", {}, t("job_running")) : r instanceof Error ? notice(r) : resultView(j, r),
              );
            })
        : h("p", {}, t("jobs_none")),
      h("details", {}, h("summary", {}, t("preview_spec")), h("pre", {}, rec.computation), h("p", { class: "muted" }, t("computation_hash", { hash: rec.computationHash }))),
      ]
        .flat()
        .filter((x) => x !== null && x !== undefined),
    );
    document.body.dataset.contract = rec.status;
  };
  const run = async (ev) => {
    ev.preventDefault();
    const { rec } = await provenContract(id);
    // A refusal stays on the page (the ledger's reason in words); a job re-renders the page.
    if ((await submitting(status, L.submitJob(id, new TextEncoder().encode(rec.computation), micro(epsIn.value)), t("job_submitted"))) === null) return;
    lastKey = "";
    await render();
  };
  show(h("h1", {}, t("contract_title", { id })), h("p", {}, h("a", { href: "#/studies" }, t("back_studies"))), body);
  await render();
  // Live: every new block re-reads the contract and its jobs (no reload).
  onNewBlocks(async () => {
    try {
      await render();
    } catch {
      /* the next block tries again */
    }
  });
}

const isResearcher = (p) => p.kind === "user" && p.role === "researcher";

/// The researcher's pages, for the router.
export const pages = [
  { id: "catalog", nav: "nav_catalog", title: "catalog_title", may: isResearcher, render: () => catalogPage() },
  { id: "study", nav: "nav_study", title: "builder_title", may: isResearcher, render: () => studyPage() },
  { id: "studies", nav: "nav_studies", title: "studies_title", may: isResearcher, render: (q) => studiesPage(q) },
];
