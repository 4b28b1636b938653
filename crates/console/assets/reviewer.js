// The reviewer's pages (a hospital's data steward, the data committee, the ethics committee,
// the regulator's auditor): what waits for their decision, with everything needed to decide —
// requester, purpose, study, the fields and their levels, the exact computation, epsilon, fee,
// expiry — approve, or reject with a reason (the ledger requires one); and their decisions.
// Every contract shown is proven against a certified block.

import * as L from "./ledger.js";
import { t, date, number, list } from "./i18n.js";
import { state, h, show, facts, table, submitting } from "./ui.js";
import { provenContract, approvalsView, levelName, slotName, statusName, pct } from "./researcher.js";
import { releaseFacts } from "./openpool.js";

const REVIEWERS = ["steward", "data_committee", "ethics_committee", "auditor"];
const eps = (m) => (Number(m) / 1e6).toFixed(3);

/// Whether the signed-in reviewer could fill `slot` (the ledger's `may_fill`, but for the
/// regulator check, which the ledger makes).
function mine(slot, rec) {
  const p = state.principal;
  return !slot.by && slot.role === p.role && (slot.member ? slot.member === p.member : p.member !== rec.institution);
}

/// A field's published quality in a dataset of the catalog: `{ missing, invalid }` in parts per
/// million, or `null` when the catalog does not describe it.
function quality(catalog, dataset, table, field) {
  const d = catalog.find((x) => x.description && x.description.id === dataset);
  const tb = d && (d.description.tables || []).find((x) => x.name === table);
  const f = tb && (tb.fields || []).find((x) => x.name === field);
  return f ? { missing: Number(f.missing_ppm), invalid: Number(f.invalid_ppm) } : null;
}

/// Everything needed to decide on one contract, the quality of the data it touches included
/// (each field's missing and invalid shares, per hospital, as its catalog entry publishes them).
function decisionCard(rec, open, catalog = []) {
  const fields = new Map();
  for (const f of rec.fields) {
    const k = `${f.table}.${f.field}`;
    fields.set(k, [...(fields.get(k) || []), f]);
  }
  const worst = (fs, key) => {
    const qs = fs.map((f) => [f.dataset, quality(catalog, f.dataset, f.table, f.field)]).filter(([, q]) => q);
    if (!qs.length) return "—";
    const [ds, q] = qs.reduce((a, b) => (b[1][key] > a[1][key] ? b : a));
    // Which hospital is worst, said only where the hospitals differ.
    const differ = qs.some(([, x]) => x[key] !== q[key]);
    return h("span", { class: "q", "data-ppm": String(q[key]), title: list(qs.map(([d, x]) => `${d}: ${pct(x[key])}`)) }, pct(q[key]), differ ? h("span", { class: "muted" }, " " + t("quality_at", { ds })) : "");
  };
  let spec = rec.computation;
  try {
    spec = JSON.stringify(JSON.parse(rec.computation), null, 1);
  } catch {
    /* shown as it is */
  }
  const status = h("div", { "aria-live": "polite", id: "decide-status-" + rec.id, class: "decide-status" });
  const reason = h("textarea", { id: "reason-" + rec.id, rows: "3", "aria-describedby": "reason-hint-" + rec.id, maxlength: "256" });
  const decided = async (payload, ok) => {
    const id = await submitting(status, payload, ok);
    if (id) setTimeout(() => state.route(), 600);
  };
  const approve = () => decided(L.approve(rec.id), t("approved_done"));
  const reject = (ev) => {
    ev.preventDefault();
    const why = reason.value.trim();
    if (!why) {
      status.replaceChildren(h("div", { class: "notice", role: "alert" }, h("a", { href: "#reason-" + rec.id, onclick: (e) => (e.preventDefault(), reason.focus()) }, t("reason_required"))));
      reason.focus();
      return;
    }
    decided(L.reject(rec.id, why), t("rejected_done"));
  };
  return h(
    "section",
    { class: "card decision", "data-contract": rec.id, "aria-labelledby": "dh-" + rec.id },
    h("h2", { id: "dh-" + rec.id }, t("decide_head", { id: rec.id, study: rec.study || "—" })),
    facts([
      [t("requester"), t("requester_at", { who: rec.requester, inst: rec.institution })],
      [t("purpose"), t("p_" + rec.purpose)],
      [t("study_id"), rec.study || "—"],
      [t("col_level"), h("strong", {}, levelName(rec.level))],
      [t("hospitals"), list(rec.owners)],
      [t("budget"), eps(rec.budget)],
      [t("fee"), number(rec.escrow)],
      [t("expires"), date(rec.expiryMs)],
      [t("col_status"), statusName(rec.status)],
    ]),
    h("h3", {}, t("decide_fields")),
    table(
      [t("col_field"), t("col_datasets"), t("col_missing"), t("col_invalid")],
      [...fields].map(([k, fs]) => h("tr", { "data-field": k }, [k, list(fs.map((f) => f.dataset)), worst(fs, "missing"), worst(fs, "invalid")].map((x) => h("td", {}, x)))),
      { class: "fields" },
    ),
    h("p", { class: "muted" }, t("quality_hint")),
    // The checks the ledger found failing against the consortium's quality floor: shown to
    // every reviewer; the data's owner must approve.
    rec.quality && rec.quality.length
      ? h(
          "div",
          { class: "notice", role: "note", id: "quality-" + rec.id },
          h("strong", {}, t("rv_quality_head")),
          h(
            "ul",
            {},
            rec.quality.map((q) =>
              h(
                "li",
                { "data-check": q.check },
                t("rv_quality_item", {
                  what: q.field ? `${q.dataset} ${q.table}.${q.field}` : `${q.dataset} ${q.table}`,
                  check: t("rv_check_" + q.check),
                  value: pct(q.valuePpm),
                  max: pct(q.maxPpm),
                }),
              ),
            ),
          ),
          h("p", { class: "muted" }, t("rv_quality_hint")),
        )
      : null,
    rec.mode === "open_pool"
      ? [
          // An open-pool request takes a published release whole: what protects its persons
          // is what its catalog entry states.
          h("h3", {}, t("rv_open_pool")),
          h("p", { class: "muted" }, t("rv_open_pool_hint")),
          ...[...new Set(rec.fields.map((f) => f.dataset))].map((id) => {
            const d = catalog.find((x) => x.description && x.description.id === id && x.release);
            return d ? h("div", { class: "release", "data-dataset": id }, h("h4", { translate: "no" }, d.description.title || id), releaseFacts(d).slice(0, 2)) : h("p", {}, h("code", { translate: "no" }, id));
          }),
        ]
      : [
          h("h3", {}, t("decide_computation")),
          h("pre", { tabindex: "0", class: "spec" }, spec),
          h("p", { class: "muted" }, t("computation_hash", { hash: rec.computationHash })),
        ],
    h("h3", {}, t("approvals_title")),
    approvalsView(rec),
    open && rec.status === "pending"
      ? h(
          "div",
          { class: "decide" },
          rec.approvals.some((a) => mine(a, rec)) ? null : h("p", { class: "muted", id: "not-yours-" + rec.id }, t("decide_not_yours")),
          h("p", {}, h("button", { type: "button", class: "approve", onclick: approve, "aria-describedby": "dh-" + rec.id }, t("approve"))),
          h(
            "form",
            { onsubmit: reject, novalidate: true },
            h("label", { for: "reason-" + rec.id }, t("reason")),
            h("p", { class: "muted", id: "reason-hint-" + rec.id }, t("reason_hint")),
            reason,
            h("p", {}, h("button", { type: "submit", class: "warn reject", "aria-describedby": "dh-" + rec.id }, t("reject"))),
          ),
          status,
        )
      : null,
  );
}

/// The catalog's datasets (their quality profile), or none when it cannot be read.
const catalogOf = () =>
  state.client
    .get("/v1/catalog")
    .then((x) => x.datasets || [])
    .catch(() => []);

async function queuePage(q) {
  const one = q.get("contract");
  if (one) {
    const [{ rec }, catalog] = await Promise.all([provenContract(one), catalogOf()]);
    show(h("h1", {}, t("queue_title")), h("p", {}, h("a", { href: "#/queue" }, t("back_queue"))), decisionCard(rec, true, catalog));
    return;
  }
  const [waiting, catalog] = await Promise.all([state.client.get(`/v1/users/${state.principal.id}/approvals`).then((x) => x.contracts || []), catalogOf()]);
  // Every contract proven at once (each is its own proof; none waits for another).
  const recs = await Promise.all(waiting.map((s) => provenContract(s.id)));
  const cards = recs.map(({ rec }) => decisionCard(rec, true, catalog));
  show(
    h("h1", {}, t("queue_title")),
    h("p", { class: "lead" }, t("queue_intro", { role: t("role_" + state.principal.role), member: state.principal.member })),
    cards.length ? cards : h("p", { id: "empty" }, t("queue_none")),
  );
}

async function decisionsPage() {
  const all = (await state.client.get("/v1/contracts")).contracts || [];
  const rows = [];
  const recs = await Promise.all(all.slice().reverse().map((s) => provenContract(s.id)));
  for (const { rec } of recs) {
    const approved = rec.approvals.find((a) => a.by === state.principal.id);
    const rejectedMine = rec.status === "rejected" && rec.approvals.some((a) => mine(a, rec));
    if (!approved && !rejectedMine) continue;
    rows.push(
      h(
        "tr",
        { "data-contract": rec.id },
        h("td", {}, h("a", { href: "#/queue?contract=" + rec.id }, rec.id)),
        h("td", {}, rec.study || "—"),
        h("td", {}, approved ? t("dec_approved", { slot: slotName(approved) }) : [t("dec_rejected"), " ", h("q", { translate: "no" }, rec.reason)]),
        h("td", {}, statusName(rec.status)),
      ),
    );
  }
  show(
    h("h1", {}, t("decisions_title")),
    h("p", { class: "lead" }, t("decisions_intro")),
    rows.length ? table([t("col_contract"), t("study_id"), t("col_decision"), t("col_status")], rows, { id: "decisions" }) : h("p", { id: "empty" }, t("decisions_none")),
  );
}

const isReviewer = (p) => p.kind === "user" && REVIEWERS.includes(p.role);

/// The reviewer's pages, for the router.
export const pages = [
  { id: "queue", nav: "nav_queue", title: "queue_title", may: isReviewer, render: (q) => queuePage(q) },
  { id: "decisions", nav: "nav_decisions", title: "decisions_title", may: isReviewer, render: () => decisionsPage() },
];
