// The researcher's pages: the catalog (datasets, fields and their privacy levels, row counts,
// the quality profile drawn as charts), the study builder (a federated query specification,
// the level it needs and the approvals that level requires, shown before it is signed), and
// their studies: each contract's approvals as they come in (one long-poll per block), its
// jobs, and the released results — checked against the hash on the ledger — as a chart, a
// table and a CSV file.

import * as L from "./ledger.js";
import { t, date, number, list, intlTag } from "./i18n.js";
import { state, h, s as svgEl, show, notice, facts, table, bars, submitting, onNewBlocks } from "./ui.js";

const LEVEL = { L1: 1, L2: 2, L3: 3, L4: 4 };
const PURPOSES = ["research", "public_health", "drug_safety"];
const micro = (eps) => Math.round(Number(eps) * 1e6);
const eps = (m) => (Number(m) / 1e6).toFixed(3);
/// Parts per million as a percentage with one decimal.
export const pct = (ppm) => `${(Number(ppm) / 10000).toFixed(1)} %`;

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
  const agg = spec.aggregate || {};
  if (agg.model) {
    out.push(["person", "gender_source_value"]);
    for (const v of [agg.model.outcome, ...(agg.model.covariates || [])]) out.push(...featureReads(v));
  }
  if (agg.survival) {
    out.push(["death", "person_id"], ["death", "death_date"], ["visit_occurrence", "person_id"], ["visit_occurrence", "visit_start_date"]);
    if (agg.survival.event && agg.survival.event.condition !== undefined) table(true, "condition_occurrence", "condition_source_value", "condition_start_date");
  }
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

// ---------------------------------------------------------------- models and survival curves

/// A model's variable kinds (`types::model::Feature`) and the fields each takes.
export const FEATURE_KINDS = ["age", "female", "condition", "drug", "procedure", "measurement", "above", "condition_within", "count_within"];
const KIND_FIELDS = {
  age: [],
  female: [],
  condition: ["code"],
  drug: ["code"],
  procedure: ["code"],
  measurement: ["code", "lower", "upper"],
  above: ["code", "op", "value"],
  condition_within: ["code", "days"],
  count_within: ["code", "days"],
};
const OPS = [">=", ">", "<=", "<", "="];
const MAX_COVARIATES = 16;
const MAX_ITERATIONS = 50;
const MAX_DAYS = 10958;
const MAX_BINS = 4096;
const CODE = /^[A-Za-z0-9.-]{1,32}$/;
const NUM = /^-?\d{1,10}(\.\d{1,9})?$/;
const kindOf = (v) => (typeof v === "string" ? v : Object.keys(v || {})[0]);
const isBinary = (k) => !["age", "measurement", "count_within"].includes(k);
const val = (x) => (x && x.value !== undefined ? String(x.value).trim() : "");
// Whole numbers as JSON numbers; anything else stays text (and is refused by the checks).
const whole = (v) => (/^\d{1,9}$/.test(String(v).trim()) ? Number(v) : String(v).trim());

/// A variable's JSON from its row (`row.kind.value`, `row.code.value`, …).
export function featureOf(r) {
  const k = r.kind.value;
  const code = val(r.code);
  if (k === "measurement") return { measurement: { code, lower: dec(val(r.lower) || "0"), upper: dec(val(r.upper) || "0") } };
  if (k === "above") return { above: { code, op: r.op.value, value: dec(val(r.value) || "0") } };
  if (k === "condition_within" || k === "count_within") return { [k]: { code, days: whole(val(r.days)) } };
  if (KIND_FIELDS[k] && KIND_FIELDS[k].length) return { [k]: code };
  return k;
}

/// What a variable reads: `Feature::reads`.
function featureReads(v) {
  const coded = (t, code, d) => [[t, "person_id"], [t, code], [t, d]];
  const cond = coded("condition_occurrence", "condition_source_value", "condition_start_date");
  switch (kindOf(v)) {
    case "age":
      return [["person", "year_of_birth"]];
    case "female":
      return [["person", "gender_source_value"]];
    case "condition":
    case "condition_within":
      return cond;
    case "count_within":
      return [...cond, ["death", "person_id"], ["death", "death_date"]];
    case "drug":
      return coded("drug_exposure", "drug_source_value", "drug_exposure_start_date");
    case "procedure":
      return coded("procedure_occurrence", "procedure_source_value", "procedure_date");
    case "measurement":
    case "above":
      return [...coded("measurement", "measurement_source_value", "measurement_date"), ["measurement", "value_as_number"]];
    default:
      return [];
  }
}

/// The `[table, code]` pairs a specification filters or models on (`types::query::codes`).
export function specCodes(spec) {
  const c = spec.cohort || {};
  const out = [];
  for (const x of c.conditions || []) out.push(["condition_occurrence", x]);
  for (const x of c.drugs || []) out.push(["drug_exposure", x]);
  for (const x of c.procedures || []) out.push(["procedure_occurrence", x]);
  if (c.measurement) out.push(["measurement", c.measurement.code]);
  const agg = spec.aggregate || {};
  if (agg.mean) out.push(["measurement", agg.mean.measurement]);
  if (agg.model) {
    for (const v of [agg.model.outcome, ...(agg.model.covariates || [])]) {
      const k = kindOf(v);
      const x = typeof v === "object" && v ? v[k] : null;
      const table = { condition: "condition_occurrence", drug: "drug_exposure", procedure: "procedure_occurrence", measurement: "measurement", above: "measurement", condition_within: "condition_occurrence", count_within: "condition_occurrence" }[k];
      if (table) out.push([table, typeof x === "string" ? x : x && x.code]);
    }
  }
  if (agg.survival && agg.survival.event && agg.survival.event.condition !== undefined) out.push(["condition_occurrence", agg.survival.event.condition]);
  return out.filter(([, code]) => typeof code === "string");
}

/// The codes of a specification the consortium classes as highly sensitive
/// (`Classification::sensitive`: the same table, and the same code or one it prefixes).
export function sensitiveCodes(spec, classification) {
  const list = (classification && classification.sensitive) || [];
  return specCodes(spec).filter(([table, code]) => list.some((s) => s.table === table && (s.prefix ? code.startsWith(s.code) : code === s.code)));
}

/// The problems of one variable's row, each `[field id, message]`.
function featureProblems(r) {
  const out = [];
  const k = r.kind.value;
  const need = KIND_FIELDS[k] || [];
  if (need.includes("code") && !CODE.test(val(r.code))) out.push([r.p + "-code", t("err_code")]);
  if (k === "measurement") {
    if (!NUM.test(val(r.lower)) || !NUM.test(val(r.upper))) out.push([r.p + "-lower", t("err_clamp_number")]);
    else if (!(Number(val(r.lower)) < Number(val(r.upper)))) out.push([r.p + "-lower", t("err_bounds")]);
  }
  if (k === "above" && !NUM.test(val(r.value))) out.push([r.p + "-value", t("err_number")]);
  if (need.includes("days")) {
    const d = whole(val(r.days));
    if (!(Number.isInteger(d) && d >= 1 && d <= MAX_DAYS)) out.push([r.p + "-days", t("err_window", { max: number(MAX_DAYS) })]);
  }
  return out;
}

/// The problems of a model or survival specification (the rules of `ModelSpec::validate` and
/// `SurvivalSpec::validate`, said in words).
function modelProblems(f, spec) {
  const out = [];
  const agg = spec.aggregate;
  if (agg.model) {
    const m = agg.model;
    const rows = [f.outcome, ...f.covariates];
    for (const r of rows) out.push(...featureProblems(r));
    if (!f.covariates.length || f.covariates.length > MAX_COVARIATES) out.push(["add-covariate", t("err_covariates", { max: number(MAX_COVARIATES) })]);
    const keys = rows.map((r) => specJson(featureOf(r)));
    f.covariates.forEach((r, i) => {
      if (keys.indexOf(keys[i + 1]) < i + 1) out.push([r.p + "-kind", t("err_repeat", { n: number(i + 1) })]);
    });
    const k = f.outcome.kind.value;
    const fits = { logistic: isBinary(k), poisson: k === "count_within", linear: k === "measurement" || k === "age" }[m.family];
    if (!fits) out.push(["out-kind", t("err_family_" + m.family)]);
    const it = m.max_iterations;
    if (!(Number.isInteger(it) && it >= 1 && it <= MAX_ITERATIONS)) out.push(["iters", t("err_iterations", { max: number(MAX_ITERATIONS) })]);
  }
  if (agg.survival) {
    const sv = agg.survival;
    if (sv.event !== "death" && !CODE.test(sv.event.condition)) out.push(["ecode", t("err_code")]);
    const hz = sv.horizon_days;
    const b = sv.bin_days;
    if (!(Number.isInteger(hz) && hz >= 1 && hz <= MAX_DAYS)) out.push(["horizon", t("err_horizon", { max: number(MAX_DAYS) })]);
    else if (!(Number.isInteger(b) && b >= 1 && b <= hz)) out.push(["bin", t("err_bin")]);
    else if (Math.ceil(hz / b) > MAX_BINS) out.push(["bin", t("err_bins", { max: number(MAX_BINS) })]);
  }
  return out;
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
  const spec = { version: 1, cohort };
  const g = [];
  if (f.gsex.checked) g.push("sex");
  if (f.gage.checked) g.push("age_band");
  // A model is fitted on the whole cohort: no group_by.
  if (g.length && f.agg.value !== "model") spec.group_by = g;
  spec.aggregate = "count";
  if (f.agg.value === "mean") spec.aggregate = { mean: { measurement: f.mean.value.trim(), lower: dec(f.lower.value.trim() || "0"), upper: dec(f.upper.value.trim() || "0") } };
  if (f.agg.value === "model") {
    spec.aggregate = { model: { family: f.family.value, outcome: featureOf(f.outcome), covariates: f.covariates.map(featureOf), max_iterations: whole(f.iters.value), dp: !!f.mdp.checked } };
  }
  if (f.agg.value === "survival") {
    const event = f.event.value === "condition" ? { condition: f.ecode.value.trim() } : "death";
    spec.aggregate = { survival: { event, horizon_days: whole(f.horizon.value), bin_days: whole(f.bin.value), dp: !!f.sdp.checked } };
  }
  return spec;
}

/// The problems of the form, each `[field id, message]` (the error summary links to the field).
export function problems(f, spec, hospitals) {
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
  out.push(...modelProblems(f, spec));
  const b = Number(f.budget.value);
  if (!(b > 0 && b <= 1000)) out.push(["budget", t("err_budget")]);
  if (!(Number(f.days.value) >= 1)) out.push(["days", t("err_days")]);
  return out;
}

async function studyPage() {
  const [datasets, status, listed] = await Promise.all([catalog(), state.client.get("/v1/status"), state.client.get("/v1/members").catch(() => ({ members: [] }))]);
  const policy = status.policy || { requirements: [] };
  // A study covers the hospitals by default; another data holder's CDM (an insurer's claims)
  // is offered unchecked.
  const kinds = Object.fromEntries((listed.members || []).filter((m) => m.member).map((m) => [m.member.id, m.member.kind]));
  const byDefault = (o) => kinds[o] === undefined || String(kinds[o]).toLowerCase() === "hospital";
  // The data holders a query can run at: the members whose CDM (a dataset with a person
  // table, not a release) is in the catalog; an aggregate source such as pharmacy sales is not.
  const cdms = datasets.filter((d) => !d.release && d.description.tables.some((x) => x.name === "person"));
  const owners = [...new Set(cdms.map((d) => d.owner))];
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
    agg: h("select", { id: "agg" }, [["count", "agg_count"], ["mean", "agg_mean"], ["model", "agg_model"], ["survival", "agg_survival"]].map(([v, k]) => h("option", { value: v }, t(k)))),
    family: h("select", { id: "family" }, ["logistic", "poisson", "linear"].map((v) => h("option", { value: v }, t("fam_" + v)))),
    outcome: null,
    covariates: [],
    iters: h("input", { id: "iters", type: "number", min: "1", max: String(MAX_ITERATIONS), value: "25" }),
    mdp: h("input", { id: "mdp", type: "checkbox" }),
    event: h("select", { id: "event" }, [["death", "ev_death"], ["condition", "ev_condition"]].map(([v, k]) => h("option", { value: v }, t(k)))),
    ecode: input("ecode"),
    horizon: h("input", { id: "horizon", type: "number", min: "1", max: String(MAX_DAYS), value: "1825" }),
    bin: h("input", { id: "bin", type: "number", min: "1", max: String(MAX_DAYS), value: "30" }),
    sdp: h("input", { id: "sdp", type: "checkbox" }),
    mean: input("mean"),
    lower: input("lower", { inputmode: "decimal" }),
    upper: input("upper", { inputmode: "decimal" }),
    gsex: h("input", { id: "gsex", type: "checkbox", checked: true }),
    gage: h("input", { id: "gage", type: "checkbox" }),
    budget: h("input", { id: "budget", type: "number", min: "0.01", step: "0.01", value: "1" }),
    days: h("input", { id: "days", type: "number", min: "1", value: "90" }),
    fee: h("input", { id: "fee", type: "number", min: "0", value: "0" }),
  };
  const boxes = owners.map((o) => h("span", { class: "check" }, h("input", { type: "checkbox", id: "h-" + o, value: o, checked: byDefault(o), class: "hospital" }), " ", h("label", { for: "h-" + o }, o), " "));
  const meanBox = h("div", { id: "mean-box" }, h("label", { for: "mean" }, t("mean_code")), f.mean, h("div", { class: "row" }, h("span", {}, h("label", { for: "lower" }, t("mean_lower")), f.lower), h("span", {}, h("label", { for: "upper" }, t("mean_upper")), f.upper)));
  // A model's variables: the outcome, then the covariates, each a kind and the fields it takes.
  let serial = 0;
  const featureRow = (p, kind, legend) => {
    const r = { p, el: null, legendEl: h("legend", {}, legend) };
    r.kind = h("select", { id: p + "-kind" }, FEATURE_KINDS.map((k) => h("option", { value: k, selected: k === kind }, t("fk_" + k))));
    r.code = input(p + "-code", { "aria-describedby": "codes-hint" });
    r.lower = input(p + "-lower", { inputmode: "decimal" });
    r.upper = input(p + "-upper", { inputmode: "decimal" });
    r.op = h("select", { id: p + "-op" }, OPS.map((o) => h("option", { value: o }, o)));
    r.value = input(p + "-value", { inputmode: "decimal" });
    r.days = h("input", { id: p + "-days", name: p + "-days", type: "number", min: "1", max: String(MAX_DAYS) });
    const cell = (k, label, el) => (r["box_" + k] = h("span", { "data-field": k }, h("label", { for: el.id }, label), el));
    r.el = h(
      "fieldset",
      { class: "feature", id: p },
      r.legendEl,
      h("label", { for: p + "-kind" }, t("f_kind")),
      r.kind,
      h("div", { class: "row" }, cell("code", t("f_code"), r.code), cell("lower", t("mean_lower"), r.lower), cell("upper", t("mean_upper"), r.upper), cell("op", t("comparison"), r.op), cell("value", t("threshold"), r.value), cell("days", t("f_days"), r.days)),
    );
    r.sync = () => {
      const need = KIND_FIELDS[r.kind.value] || [];
      for (const k of ["code", "lower", "upper", "op", "value", "days"]) r["box_" + k].hidden = !need.includes(k);
    };
    return r;
  };
  f.outcome = featureRow("out", "condition", t("model_outcome"));
  const covList = h("div", { id: "covariates" });
  const addCovariate = (kind) => {
    const r = featureRow("cov-" + ++serial, kind, "");
    r.remove = h("button", { type: "button", class: "secondary", id: r.p + "-remove", onclick: () => {
      f.covariates = f.covariates.filter((x) => x !== r);
      r.el.remove();
      update();
      document.getElementById("add-covariate").focus();
    } }, t("cov_remove"));
    r.el.append(h("p", {}, r.remove));
    f.covariates.push(r);
    covList.append(r.el);
    return r;
  };
  addCovariate("age");
  const addBtn = h("button", { type: "button", class: "secondary", id: "add-covariate", onclick: () => {
    const r = addCovariate("condition");
    update();
    r.kind.focus();
  } }, t("cov_add"));
  const modelBox = h(
    "div",
    { id: "model-box" },
    h("p", { class: "muted" }, t("model_hint")),
    h("label", { for: "family" }, t("model_family")),
    f.family,
    f.outcome.el,
    h("fieldset", { id: "covariates-box" }, h("legend", {}, t("model_covariates", { max: number(MAX_COVARIATES) })), covList, h("p", {}, addBtn)),
    h("label", { for: "iters" }, t("model_iterations", { max: number(MAX_ITERATIONS) })),
    f.iters,
    h("p", { class: "check" }, f.mdp, " ", h("label", { for: "mdp" }, t("model_dp"))),
  );
  const ecodeBox = h("span", {}, h("label", { for: "ecode" }, t("ev_code")), f.ecode);
  const survBox = h(
    "div",
    { id: "survival-box" },
    h("p", { class: "muted" }, t("surv_hint")),
    h("div", { class: "row" }, h("span", {}, h("label", { for: "event" }, t("surv_event")), f.event), ecodeBox),
    h("div", { class: "row" }, h("span", {}, h("label", { for: "horizon" }, t("surv_horizon")), f.horizon), h("span", {}, h("label", { for: "bin" }, t("surv_bin")), f.bin)),
    h("p", { class: "check" }, f.sdp, " ", h("label", { for: "sdp" }, t("surv_dp"))),
  );
  const groupBox = h("fieldset", { id: "group-box" }, h("legend", {}, t("group_by")), h("span", { class: "check" }, f.gsex, " ", h("label", { for: "gsex" }, t("g_sex"))), " ", h("span", { class: "check" }, f.gage, " ", h("label", { for: "gage" }, t("g_age"))));
  const preview = h("section", { id: "preview", class: "panel", "aria-live": "polite", "aria-labelledby": "preview-h" });
  const errors = h("div", { id: "errors" });
  const status2 = h("div", { "aria-live": "polite", id: "study-status" });
  const chosen = () => owners.filter((o) => document.getElementById("h-" + o).checked);

  const update = () => {
    meanBox.hidden = f.agg.value !== "mean";
    modelBox.hidden = f.agg.value !== "model";
    survBox.hidden = f.agg.value !== "survival";
    groupBox.hidden = f.agg.value === "model";
    ecodeBox.hidden = f.event.value !== "condition";
    for (const r of [f.outcome, ...f.covariates]) r.sync();
    f.covariates.forEach((r, i) => {
      r.legendEl.textContent = t("model_covariate", { n: number(i + 1) });
      r.remove.setAttribute("aria-label", t("cov_remove_n", { n: number(i + 1) }));
    });
    addBtn.disabled = f.covariates.length >= MAX_COVARIATES;
    const spec = specOf(f);
    const hs = chosen();
    const r = reads(spec);
    const fields = [];
    for (const hname of hs) {
      const d = cdms.find((x) => x.owner === hname);
      for (const [tb, fl] of r) {
        const fd = d && (d.description.tables.find((x) => x.name === tb) || { fields: [] }).fields.find((x) => x.name === fl);
        fields.push({ dataset: d ? d.description.id : `${hname}.cdm`, table: tb, field: fl, level: fd ? LEVEL[fd.level] : 3 });
      }
    }
    // A highly sensitive code makes the request L4 whatever the fields (as the ledger decides).
    const sensitive = sensitiveCodes(spec, policy.classification);
    const level = Math.max(1, ...fields.map((x) => x.level), sensitive.length ? 4 : 1);
    const slots = [];
    for (const req of policy.requirements || []) {
      if (LEVEL[req.level] > level) continue;
      if (req.scope === "per_owner") for (const o of hs) slots.push({ role: req.role, member: o });
      else slots.push({ role: req.role, member: null });
    }
    const uniq = r.map(([a, b]) => {
      const lv = Math.max(...fields.filter((x) => x.table === a && x.field === b).map((x) => x.level), 1);
      return [h("span", { translate: "no" }, `${a}.`, h("wbr"), b), h("span", { class: "lv lv" + lv }, levelName(lv))];
    });
    preview.replaceChildren(
      h("h2", { id: "preview-h" }, t("preview_title")),
      facts([
        [t("preview_level"), h("strong", { id: "preview-level" }, levelName(level))],
        [t("preview_approvals"), slots.length ? h("ul", { id: "preview-approvals" }, slots.map((a) => h("li", {}, slotName(a)))) : t("preview_no_approvals")],
      ]),
      sensitive.length
        ? h("p", { class: "notice", id: "preview-sensitive" }, t("preview_sensitive_found", { codes: list(sensitive.map(([, code]) => code)) }))
        : h("p", { class: "muted" }, t("preview_sensitive")),
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
      h("label", { for: "agg" }, t("aggregate")), f.agg, meanBox, modelBox, survBox,
      groupBox),
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
export async function released(job) {
  // The aggregator answers 202 until its own node has the block holding the result's hash (this
  // page's node may have it first): ask again for a while, as the CLI does.
  let bytes;
  for (let tries = 0; !bytes; tries++) {
    try {
      bytes = await state.client.getAtBytes(job.result.postedBy, `/v1/worker/jobs/${job.id}/result`);
    } catch (e) {
      if (!(e instanceof L.Refused) || e.status !== 202 || tries >= 60) throw e;
      await new Promise((done) => setTimeout(done, 250));
    }
  }
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

// ---------------------------------------------------------------- model and survival results

const fixed = (x, d) => (Number.isFinite(Number(x)) ? new Intl.NumberFormat(intlTag(), { minimumFractionDigits: d, maximumFractionDigits: d }).format(Number(x)) : "—");
const pText = (p) => (Number(p) < 0.001 ? "< " + fixed(0.001, 3) : fixed(p, 3));
const percent = (x, d = 1) => new Intl.NumberFormat(intlTag(), { style: "percent", minimumFractionDigits: d, maximumFractionDigits: d }).format(Number(x));
const csvEsc = (v) => (/[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
const csvLink = (job, text, key) => h("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: `${job.id}.csv`, class: "button secondary", id: "csv-" + job.id }, t(key));
const COLOURS = ["#1d70b8", "#d4351c", "#00703c", "#6f3c97", "#b58840", "#505a5f"];
const DASHES = [null, "8 4", "2 4", "10 4 2 4"];

/// A model term in words: `intercept`, `age`, `condition 44054006`, `count 1 within 365d`, …
/// (the names `Feature::name` gives), translated where the console knows the form.
export function termName(name) {
  const n = String(name);
  if (n === "intercept" || n === "age" || n === "female") return t("term_" + n);
  let m = /^(condition|count) (\S+) within (\d+)d$/.exec(n);
  if (m) return t(m[1] === "count" ? "term_count_within" : "term_condition_within", { code: m[2], days: number(m[3]) });
  m = /^(condition|drug|procedure|measurement) (\S+)$/.exec(n);
  if (m) return t("term_" + m[1], { code: m[2] });
  return n;
}

/// Nice round axis ticks between `lo` and `hi` (about `n` of them).
function ticks(lo, hi, n = 5) {
  const span = hi - lo || 1;
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((x) => x * mag).find((x) => x >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/// Text width in the chart's 14 px font (CJK characters are about twice a Latin one).
const textWidth = (str) => [...String(str)].reduce((a, c) => a + (c.charCodeAt(0) > 0x2e80 ? 15 : 8.6), 0);

/// A forest plot: each covariate's ratio (log axis, 1 = no effect) or coefficient (linear
/// models, 0 = no effect) with its 95 % interval.
export function forestPlot(m, title) {
  const ratios = m.family !== "linear";
  const rows = (m.terms || [])
    .filter((x) => x.name !== "intercept")
    .map((x) => (ratios ? (x.ratio ? [x.name, ...x.ratio] : [x.name, Math.exp(x.coefficient), Math.exp(x.ci_low), Math.exp(x.ci_high)]) : [x.name, x.coefficient, x.ci_low, x.ci_high]))
    .filter(([, v, lo, hi]) => [v, lo, hi].every((z) => Number.isFinite(z) && (!ratios || z > 0)));
  const labels = rows.map(([n]) => termName(n));
  const valueText = ([, v, lo, hi]) => `${fixed(v, ratios ? 2 : 3)} (${fixed(lo, ratios ? 2 : 3)}–${fixed(hi, ratios ? 2 : 3)})`;
  const w = 680;
  const left = Math.min(260, 16 + Math.max(40, ...labels.map(textWidth)));
  const right = Math.min(220, 20 + Math.max(60, ...rows.map((r) => textWidth(valueText(r)))));
  const rh = 30;
  const top = 12;
  const height = top + rows.length * rh + 62;
  const tf = ratios ? Math.log : (x) => x;
  let lo = Math.min(ratios ? 1 : 0, ...rows.map((r) => r[2]));
  let hi = Math.max(ratios ? 1 : 0, ...rows.map((r) => r[3]));
  if (lo === hi) [lo, hi] = ratios ? [lo / 2, hi * 2] : [lo - 1, hi + 1];
  // Ratios: the axis reaches the round values (…, 0.5, 1, 2, 5, …) around the intervals.
  const NICE = [];
  for (let e = -4; e <= 4; e++) for (const k of [1, 2, 5]) NICE.push(k * 10 ** e);
  if (ratios) {
    lo = Math.max(...NICE.filter((v) => v <= lo), NICE[0]);
    hi = Math.min(...NICE.filter((v) => v >= hi), NICE[NICE.length - 1]);
  }
  const [a, b] = [tf(lo), tf(hi)];
  const pad = (b - a) * 0.05;
  const x = (v) => left + ((tf(v) - a + pad) / (b - a + 2 * pad)) * (w - left - right);
  let marks;
  if (ratios) {
    marks = NICE.filter((v) => v >= lo && v <= hi);
    if (marks.length > 7) marks = marks.filter((v) => String(v).replace(/0|\./g, "") === "1");
    if (marks.length < 2) marks = [lo, 1, hi].filter((v, i, z) => z.indexOf(v) === i).sort((p, q) => p - q);
  } else marks = ticks(lo, hi);
  const descId = "forest-desc-" + Math.random().toString(36).slice(2, 8);
  const svg = svgEl(
    "svg",
    { viewBox: `0 0 ${w} ${height}`, role: "img", "aria-label": title, "aria-describedby": descId, class: "chart forest" },
    svgEl("title", {}, title),
    svgEl("desc", { id: descId }, t(ratios ? "forest_desc_ratio" : "forest_desc_linear")),
  );
  const axisY = top + rows.length * rh + 6;
  for (const v of marks) {
    svg.append(
      svgEl("line", { x1: x(v), x2: x(v), y1: top, y2: axisY, class: "grid" }),
      svgEl("text", { x: x(v), y: axisY + 18, "text-anchor": "middle", class: "tick" }, fixed(v, ratios ? Math.max(0, -Math.floor(Math.log10(v) + 1e-9)) : Math.max(0, -Math.floor(Math.log10(Math.abs(marks[1] - marks[0] || 1)))))),
    );
  }
  svg.append(
    svgEl("line", { x1: x(ratios ? 1 : 0), x2: x(ratios ? 1 : 0), y1: top, y2: axisY, class: "null-line" }),
    svgEl("line", { x1: left, x2: w - right, y1: axisY, y2: axisY, class: "axis" }),
    svgEl("text", { x: (left + w - right) / 2, y: axisY + 42, "text-anchor": "middle", class: "axis-label" }, t(ratios ? "forest_axis_" + m.family : "forest_axis_linear")),
  );
  rows.forEach((r, i) => {
    const [, v, l, u] = r;
    const y = top + i * rh + rh / 2;
    svg.append(
      svgEl("text", { x: left - 10, y: y + 5, "text-anchor": "end", class: "lab" }, labels[i]),
      svgEl("line", { x1: x(l), x2: x(u), y1: y, y2: y, class: "ci" }),
      svgEl("rect", { x: x(v) - 5, y: y - 5, width: 10, height: 10, class: "point" }),
      svgEl("text", { x: w - right + 12, y: y + 5, class: "val" }, valueText(r)),
    );
  });
  return svg;
}

function modelCsv(m) {
  const lines = [["term", "coefficient", "std_error", "z", "p_value", "ci_low", "ci_high", "ratio", "ratio_low", "ratio_high"].join(",")];
  for (const x of m.terms || []) {
    const r = x.name !== "intercept" && x.ratio ? x.ratio : ["", "", ""];
    lines.push([csvEsc(x.name), x.coefficient, x.std_error, x.z, x.p_value, x.ci_low, x.ci_high, ...r].join(","));
  }
  return lines.join("\n") + "\n";
}

function modelView(job, doc) {
  const m = doc.model;
  const ratios = m.family !== "linear";
  const cols = [t("col_term"), t("col_coef"), t("col_se"), t("col_z"), t("col_p"), ratios ? t("col_ratio_" + m.family) : t("col_ci")];
  const rows = (m.terms || []).map((x) => {
    const ratio = !ratios ? `${fixed(x.ci_low, 3)} – ${fixed(x.ci_high, 3)}` : x.name === "intercept" || !x.ratio ? "" : `${fixed(x.ratio[0], 2)} (${fixed(x.ratio[1], 2)}–${fixed(x.ratio[2], 2)})`;
    return h("tr", { "data-term": x.name }, [termName(x.name), fixed(x.coefficient, 4), fixed(x.std_error, 4), fixed(x.z, 2), pText(x.p_value), ratio].map((c, i) => h("td", { class: i ? "num" : null }, c)));
  });
  return [
    facts([
      [t("model_family"), t("fam_" + m.family)],
      [t("model_n"), number(m.n)],
      [t("model_fit"), t("model_fit_is", { it: number(m.iterations), dev: fixed(m.deviance, 2) })],
      ...(m.family === "linear" ? [[t("model_scale"), fixed(m.scale, 4)]] : []),
      [t("model_noise"), m.dp ? t("model_dp_yes", { eps: eps(doc.epsilon_micro) }) : t("model_dp_no")],
    ]),
    h("div", { class: "scroll" }, table(cols, rows, { class: "terms" })),
    h("div", { class: "scroll" }, forestPlot(m, t("forest_title", { job: job.id }))),
    h("p", {}, csvLink(job, modelCsv(m), "csv_model")),
  ];
}

/// Kaplan–Meier step curves per group with their 95 % bands, on an axis that starts near the
/// lowest band (curves near 1 stay readable), and the log-rank test under the chart.
export function kmChart(sv, title) {
  const curves = sv.curves || [];
  const bin = Number(sv.bin_days) || 1;
  const w = 680;
  const left = 88;
  const right = 20;
  const top = 14;
  const plotH = 300;
  const legendTop = top + plotH + 74;
  const perRow = 2;
  const height = legendTop + Math.ceil(Math.max(1, curves.length) / perRow) * 24 + (sv.log_rank ? 28 : 6);
  const days = Math.max(1, ...curves.map((c) => (c.points.length ? c.points[c.points.length - 1].day + bin : 0)));
  let floor = Math.min(1, ...curves.flatMap((c) => c.points.map((p) => p.ci_low)));
  floor = Math.min(0.9, Math.max(0, Math.floor(floor * 10) / 10));
  const x = (d) => left + (d / days) * (w - left - right);
  const y = (v) => top + (1 - (Math.min(1, Math.max(floor, v)) - floor) / (1 - floor)) * plotH;
  const descId = "km-desc-" + Math.random().toString(36).slice(2, 8);
  const svg = svgEl(
    "svg",
    { viewBox: `0 0 ${w} ${height}`, role: "img", "aria-label": title, "aria-describedby": descId, class: "chart km" },
    svgEl("title", {}, title),
    svgEl("desc", { id: descId }, t("km_desc", { floor: percent(floor, 0) })),
  );
  for (let i = 0; i <= 4; i++) {
    const v = floor + ((1 - floor) * i) / 4;
    svg.append(svgEl("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), class: "grid" }), svgEl("text", { x: left - 8, y: y(v) + 5, "text-anchor": "end", class: "tick" }, percent(v, floor > 0.5 ? 1 : 0)));
  }
  for (const d of ticks(0, days, 6)) svg.append(svgEl("line", { x1: x(d), x2: x(d), y1: top + plotH, y2: top + plotH + 5, class: "axis" }), svgEl("text", { x: x(d), y: top + plotH + 22, "text-anchor": "middle", class: "tick" }, number(d)));
  svg.append(
    svgEl("line", { x1: left, x2: w - right, y1: top + plotH, y2: top + plotH, class: "axis" }),
    svgEl("line", { x1: left, x2: left, y1: top, y2: top + plotH, class: "axis" }),
    svgEl("text", { x: (left + w - right) / 2, y: top + plotH + 46, "text-anchor": "middle", class: "axis-label" }, t("km_axis_x", { bin: number(bin) })),
    svgEl("text", { x: 16, y: top + plotH / 2, "text-anchor": "middle", transform: `rotate(-90 16 ${top + plotH / 2})`, class: "axis-label" }, t("km_axis_y")),
  );
  curves.forEach((c, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const dash = DASHES[i % DASHES.length];
    let line = `M${x(0).toFixed(1)},${y(1).toFixed(1)}`;
    const up = [];
    const low = [];
    let prevHi = 1;
    let prevLo = 1;
    let from = 0;
    for (const p of c.points) {
      const end = p.day + bin;
      line += ` H${x(end).toFixed(1)} V${y(p.survival).toFixed(1)}`;
      // The band steps with the curve: the previous bin's interval until this bin ends.
      up.push(`${x(from).toFixed(1)},${y(prevHi).toFixed(1)}`, `${x(end).toFixed(1)},${y(prevHi).toFixed(1)}`);
      low.push(`${x(from).toFixed(1)},${y(prevLo).toFixed(1)}`, `${x(end).toFixed(1)},${y(prevLo).toFixed(1)}`);
      prevHi = p.ci_high;
      prevLo = p.ci_low;
      from = end;
    }
    if (up.length) svg.append(svgEl("polygon", { points: [...up, ...low.reverse()].join(" "), fill: colour, class: "band" }));
    svg.append(svgEl("path", { d: line, stroke: colour, "stroke-dasharray": dash, class: "curve", "data-group": c.group }));
    const lx = left + (i % perRow) * ((w - left - right) / perRow);
    const ly = legendTop + Math.floor(i / perRow) * 24;
    svg.append(
      svgEl("line", { x1: lx, x2: lx + 28, y1: ly - 5, y2: ly - 5, stroke: colour, "stroke-dasharray": dash, class: "curve" }),
      svgEl("text", { x: lx + 36, y: ly, class: "lab" }, t("km_legend", { group: groupName(c.group), n: number(c.entered) })),
    );
  });
  if (sv.log_rank) svg.append(svgEl("text", { x: left, y: height - 8, class: "lab", id: "log-rank-line" }, logRankText(sv.log_rank)));
  return svg;
}

const logRankText = ([chi2, df, p]) => t("log_rank", { chi2: fixed(chi2, 2), df: number(df), p: pText(p) });

function survivalCsv(sv) {
  const lines = [["group", "day", "at_risk", "events", "censored", "survival", "ci_low", "ci_high"].join(",")];
  for (const c of sv.curves || []) for (const p of c.points) lines.push([csvEsc(c.group), p.day, p.at_risk, p.events, p.censored, p.survival, p.ci_low, p.ci_high].join(","));
  return lines.join("\n") + "\n";
}

function survivalView(job, doc, spec) {
  const sv = doc.survival;
  // Whether the counts were noised is the approved computation's (`dp`), not the result's.
  const dp = spec && spec.aggregate && spec.aggregate.survival ? !!spec.aggregate.survival.dp : null;
  const bin = Number(sv.bin_days) || 1;
  const curves = sv.curves || [];
  const summary = curves.map((c) => {
    const last = c.points[c.points.length - 1];
    const events = c.points.reduce((a, p) => a + Number(p.events), 0);
    return h(
      "tr",
      { "data-group": c.group },
      [
        groupName(c.group),
        number(c.entered),
        number(events),
        last ? t("surv_at", { s: percent(last.survival), lo: percent(last.ci_low), hi: percent(last.ci_high), day: number(last.day + bin) }) : "—",
        c.suppressed_bins ? t("surv_withheld_n", { n: number(c.suppressed_bins) }) : "—",
      ].map((x, i) => h("td", { class: i && i < 3 ? "num" : null }, x)),
    );
  });
  return [
    h("p", { class: "muted" }, t("surv_protection", { k: number(doc.k) }), dp === null ? null : [" ", dp ? t("surv_noise", { eps: eps(doc.epsilon_micro) }) : t("surv_exact")]),
    h("div", { class: "scroll" }, table([t("col_group"), t("col_entered"), t("col_events"), t("col_surv_last"), t("col_withheld")], summary, { class: "curves" })),
    sv.log_rank ? h("p", { id: "log-rank-" + job.id }, logRankText(sv.log_rank)) : h("p", { class: "muted" }, t("log_rank_none")),
    h("div", { class: "scroll" }, kmChart(sv, t("km_title", { job: job.id }))),
    h(
      "details",
      {},
      h("summary", {}, t("km_table")),
      curves.map((c) =>
        h(
          "div",
          { class: "scroll" },
          table(
            [t("col_day"), t("col_at_risk"), t("col_events"), t("col_censored"), t("col_survival")],
            c.points.map((p) => [number(p.day + bin), number(p.at_risk), number(p.events), number(p.censored), `${percent(p.survival)} (${percent(p.ci_low)}–${percent(p.ci_high)})`]),
            { class: "points", "data-group": c.group, "aria-label": groupName(c.group) },
          ),
        ),
      ),
    ),
    h("p", {}, csvLink(job, survivalCsv(sv), "csv_survival")),
  ];
}

// ---------------------------------------------------------------- drug safety and surveillance

/// An estimate with its 95 % interval under it (smaller), so the table fits a page's width.
const withCi = (v, x) => [h("span", { class: "est" }, fixed(v, 2)), h("span", { class: "ci" }, Array.isArray(x) && x.length === 2 ? `${fixed(x[0], 2)}–${fixed(x[1], 2)}` : "—")];

/// Whether a released pair signals: the scan's Benjamini–Hochberg verdict in a scan, else the
/// PRR rule (Evans et al.) or the IC rule; which, in words.
function pairSignal(p) {
  if (p.suppressed || !p.stats) return null;
  if (p.scan_signal !== null && p.scan_signal !== undefined) return p.scan_signal ? t("pv_signal_scan") : null;
  const rules = [p.stats.signals.prr_rule ? t("pv_rule_prr") : null, p.stats.signals.ic_rule ? t("pv_rule_ic") : null].filter(Boolean);
  return rules.length ? t("pv_signal_rules", { rules: list(rules) }) : null;
}

function drugSafetyCsv(r) {
  const lines = [["drug", "event", "suppressed", "a", "b", "c", "d", "prr", "prr_low", "prr_high", "ror", "ror_low", "ror_high", "ic", "ic025", "ic975", "chi2", "chi2_p", "prr_rule", "ic_rule", "scan_signal"].join(",")];
  for (const p of r.pairs || []) {
    const tb = p.table || {};
    const st = p.stats || { signals: {} };
    const v = (x) => (x === null || x === undefined ? "" : x);
    const pair = (x, i) => (Array.isArray(x) ? x[i] : "");
    lines.push([csvEsc(p.pair.drug), csvEsc(p.pair.event), p.suppressed, v(tb.a), v(tb.b), v(tb.c), v(tb.d), v(st.prr), pair(st.prr_ci, 0), pair(st.prr_ci, 1), v(st.ror), pair(st.ror_ci, 0), pair(st.ror_ci, 1), v(st.ic), v(st.ic025), v(st.ic975), v(st.chi2), v(st.chi2_p), v(st.signals.prr_rule), v(st.signals.ic_rule), v(p.scan_signal)].join(","));
  }
  return lines.join("\n") + "\n";
}

/// A drug-safety result: every drug → event pair's 2×2 table and disproportionality (PRR and
/// ROR with their 95 % intervals, the information component's lower bound, Yates' χ²), pairs
/// with a cell below `k` marked suppressed, signals highlighted.
export function drugSafetyView(job, doc) {
  const r = doc.drug_safety;
  const pairs = r.pairs || [];
  const signals = pairs.filter(pairSignal);
  const rows = pairs.map((p) => {
    const sig = pairSignal(p);
    const attrs = { "data-pair": `${p.pair.drug}>${p.pair.event}`, "data-signal": sig ? "true" : "false", "data-suppressed": p.suppressed ? "true" : "false", class: sig ? "signal" : p.suppressed ? "suppressed" : null };
    const name = h("th", { scope: "row" }, h("span", { translate: "no" }, p.pair.drug), " → ", h("span", { translate: "no" }, p.pair.event));
    if (p.suppressed || !p.table || !p.stats) {
      return h("tr", attrs, name, h("td", { colspan: "9", class: "muted" }, t("pv_suppressed", { k: number(doc.k) })));
    }
    const tb = p.table;
    const st = p.stats;
    return h(
      "tr",
      attrs,
      name,
      ...[number(tb.a), number(tb.b), number(tb.c), number(tb.d), withCi(st.prr, st.prr_ci), withCi(st.ror, st.ror_ci), fixed(st.ic025, 2), fixed(st.chi2, 1)].map((x, i) => h("td", { class: "num", "data-col": ["a", "b", "c", "d", "prr", "ror", "ic025", "chi2"][i] }, x)),
      h("td", { "data-col": "signal" }, sig ? h("span", { class: "badge bad" }, sig) : "—"),
    );
  });
  // The answer first: which pairs signal (drug and event names are the specification's).
  const named = signals.flatMap((p, i) => [i ? ", " : "", h("span", { translate: "no" }, `${p.pair.drug} → ${p.pair.event}`)]);
  return [
    h("p", { class: signals.length ? "pv-summary signals" : "pv-summary", id: "pv-summary-" + job.id }, signals.length ? [t("pv_signals"), " ", ...named] : t("pv_no_signal")),
    h("p", {}, r.scan ? t("pv_design_scan", { fdr: fixed((r.fdr || 0) * 100, 0) }) : t("pv_design_pairs"), " ", t("pv_design_window", { washout: number(r.washout_days), window: number(r.window_days) })),
    h("p", { class: "muted" }, t("pv_protection", { k: number(doc.k) }), " ", r.dp ? t("pv_noise", { eps: eps(doc.epsilon_micro) }) : t("pv_exact")),
    h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "drug-safety", id: "pv-" + job.id },
        h("thead", {}, h("tr", {}, [t("pv_col_pair"), "a", "b", "c", "d", t("pv_col_prr"), t("pv_col_ror"), "IC025", "χ²", t("pv_col_signal")].map((x) => h("th", { scope: "col" }, x)))),
        h("tbody", {}, rows),
      ),
    ),
    h("p", { class: "muted" }, t("pv_legend")),
    h("p", {}, csvLink(job, drugSafetyCsv(r), "csv_pv")),
  ];
}

/// A vertical study's cell in words: its group and, for a comparison, with or without the
/// condition (its name is the specification's).
function verticalCellName(c, name) {
  const group = groupName(c.group);
  if (c.with === undefined || c.with === null || !name) return group;
  const split = t(c.with ? "vt_with" : "vt_without", { name });
  return c.group === "all" ? split : `${group}, ${split}`;
}

/// `key`'s text with the specification's `name` in it marked as data (not to translate).
function withName(key, name) {
  const [before, after] = t(key, { name: "\u0000" }).split("\u0000");
  return h("span", {}, before || "", h("span", { translate: "no" }, name), after || "");
}

/// [`verticalCellName`] in a table's cell: the condition's name marked as data.
function verticalCellNode(c, name) {
  if (c.with === undefined || c.with === null || !name) return groupName(c.group);
  return h("span", {}, c.group === "all" ? "" : `${groupName(c.group)}, `, withName(c.with ? "vt_with" : "vt_without", name));
}

function verticalCsv(v, k) {
  const lines = [["group", "with_condition", "persons", "claims_mean", "claims_sd", "paid_mean", "paid_sd", "withheld_below_k"].join(",")];
  const x = (v) => (v === null || v === undefined ? "" : v);
  for (const c of v.cells || []) lines.push([csvEsc(c.group), x(c.with), x(c.n), x(c.claims_mean), x(c.claims_sd), x(c.paid_mean), x(c.paid_sd), c.n === null || c.n === undefined ? k : ""].join(","));
  return lines.join("\n") + "\n";
}

/// A vertical study's result: per cell the persons a hospital and the insurer both hold, and
/// claims and amount paid per person in the window (with standard deviations when exact); a
/// chart of the amount paid per person.
function verticalView(job, doc) {
  const v = doc.vertical;
  const cells = v.cells || [];
  const none = (c) => c.n === null || c.n === undefined;
  const sd = (m, d, digits) => (m === null || m === undefined ? "—" : d === null || d === undefined ? fixed(m, digits) : `${fixed(m, digits)} (${t("vt_sd")} ${fixed(d, digits)})`);
  const withheld = t("suppressed", { k: number(doc.k) });
  const rows = cells.map((c) =>
    h(
      "tr",
      { "data-cell": `${c.group}|${c.with === undefined ? "" : c.with}` },
      h("th", { scope: "row" }, verticalCellNode(c, v.compare)),
      ...(none(c) ? [h("td", { colspan: "3", class: "muted" }, withheld)] : [number(c.n), sd(c.claims_mean, c.claims_sd, 2), sd(c.paid_mean, c.paid_sd, 0)].map((x) => h("td", { class: "num" }, x))),
    ),
  );
  return [
    h("p", {}, t("vt_design", { days: number(v.days) }), " ", v.compare ? withName("vt_compare", v.compare) : ""),
    h("p", { class: "muted" }, v.dp ? t("vt_noise", { eps: eps(doc.epsilon_micro) }) : t("vt_exact", { k: number(doc.k) })),
    bars(
      cells.map((c) => [verticalCellName(c, v.compare), none(c) || c.paid_mean === null || c.paid_mean === undefined ? null : Math.round(c.paid_mean), withheld]),
      t("vt_chart"),
      { labelsAreData: true },
    ),
    table([t("vt_col_cell"), t("vt_col_persons"), t("vt_col_claims"), t("vt_col_paid")], rows, { class: "vertical", id: "vt-" + job.id }),
    h("p", {}, csvLink(job, verticalCsv(v, doc.k), "csv_vt")),
  ];
}

/// An overlap job's result: how many persons of the cohort each pair of hospitals both hold.
function overlapView(job, doc) {
  const o = doc.overlap;
  const pairs = o.pairs || [];
  const withheld = t("ov_withheld", { k: number(doc.k) });
  const lines = [["site", "other_site", "shared_persons"].join(",")].concat(pairs.map(([a, b, n]) => [a, b, n === null || n === undefined ? "" : n].join(",")));
  return [
    h("p", {}, t("ov_design"), " ", o.dp ? t("ov_noise", { eps: eps(doc.epsilon_micro) }) : t("ov_exact", { k: number(doc.k) })),
    bars(
      pairs.map(([a, b, n]) => [`${a} ∩ ${b}`, n === null || n === undefined ? null : Math.max(0, n), withheld]),
      t("ov_chart"),
      { labelsAreData: true },
    ),
    table(
      [t("ov_col_pair"), t("ov_col_shared")],
      pairs.map(([a, b, n]) => h("tr", { "data-pair": `${a}|${b}` }, h("th", { scope: "row" }, h("span", { translate: "no" }, `${a} ∩ ${b}`)), h("td", { class: "num" }, n === null || n === undefined ? withheld : number(n)))),
      { class: "overlap", id: "ov-" + job.id },
    ),
    h("p", {}, csvLink(job, lines.join("\n") + "\n", "csv_ov")),
  ];
}

/// A surveillance window's result: its totals in one line; the series and the agency's alerts
/// are on the surveillance page.
function surveillanceView(job, doc) {
  const sv = doc.surveillance;
  const total = (sv.totals || []).reduce((a, v) => a + (v === null || v === undefined ? 0 : Number(v)), 0);
  const withheld = (sv.totals || []).filter((v) => v === null || v === undefined).length;
  return [
    h("p", {}, t("sv_window", { w: number(sv.window), from: sv.from, days: number(sv.days), n: number(total), regions: number((sv.regions || []).length) }), " ", withheld ? t("sv_withheld", { n: number(withheld), k: number(doc.k) }) : ""),
    h("p", {}, h("a", { href: `#/health?contract=${doc.contract}` }, t("sv_see_series"))),
  ];
}

/// A released result: a coefficient table and forest plot for a model, Kaplan–Meier curves for
/// survival, the pairs' table for drug safety, a window's totals for surveillance, else the
/// counts or means per group. `computation` is the contract's spec text.
export function resultView(job, doc, computation) {
  if (doc.model || doc.survival || doc.drug_safety || doc.surveillance || doc.vertical || doc.overlap) {
    const kind = doc.model ? "model" : doc.survival ? "survival" : doc.drug_safety ? "drug_safety" : doc.vertical ? "vertical" : doc.overlap ? "overlap" : "surveillance";
    const view = {
      model: () => modelView(job, doc),
      survival: () => survivalView(job, doc, specOfText(computation)),
      drug_safety: () => drugSafetyView(job, doc),
      surveillance: () => surveillanceView(job, doc),
      vertical: () => verticalView(job, doc),
      overlap: () => overlapView(job, doc),
    }[kind];
    return h(
      "div",
      { class: "result", "data-job": job.id, "data-verified": "true", "data-kind": kind },
      h("p", {}, h("span", { class: "badge ok" }, "✓ " + t("result_verified"))),
      view(),
      (doc.contributions || []).length ? h("p", { class: "muted" }, t("contributed", { who: list(doc.contributions.map(([m, n]) => t("contrib_one", { m, n: number(n) }))) })) : null,
      (doc.dropped || []).map(([m, why]) => h("p", { class: "muted" }, t("dropped", { m, why }))),
      onceView(doc),
      doc.failure ? h("div", { class: "notice" }, t("nothing_released", { why: doc.failure })) : null,
    );
  }
  return countView(job, doc);
}

/// Whether each patient counted once across the contributing hospitals, or which pairs were
/// not matched.
function onceView(doc) {
  if (doc.failure || doc.overlap || (doc.contributions || []).length < 2) return null;
  const pairs = doc.not_counted_once || [];
  if (!pairs.length) return h("p", { class: "muted", "data-once": "all" }, t("counted_once"));
  return pairs.map(([later, earlier]) => h("p", { class: "notice", "data-once": "missing" }, t("not_counted_once", { later, earlier })));
}

const specOfText = (text) => {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
};

function countView(job, doc) {
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
    onceView(doc),
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
                !j.result ? h("p", {}, t("job_running")) : r instanceof Error ? notice(r) : resultView(j, r, rec.computation),
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
