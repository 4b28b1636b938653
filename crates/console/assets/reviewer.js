// The reviewer's pages (a hospital's data steward, the data committee, the ethics committee,
// the regulator's auditor): what waits for their decision, with everything needed to decide —
// requester, purpose, study, the fields and their levels, the exact computation, epsilon, fee,
// expiry — approve, or reject with a reason (the ledger requires one); and their decisions.
// Every contract shown is proven against a certified block.

import * as L from "./ledger.js";
import { t, date, number, list } from "./i18n.js";
import { state, h, show, facts, table, submitting } from "./ui.js";
import { provenContract, approvalsView, levelName, slotName, statusName } from "./researcher.js";

const REVIEWERS = ["steward", "data_committee", "ethics_committee", "auditor"];
const eps = (m) => (Number(m) / 1e6).toFixed(3);

/// Whether the signed-in reviewer could fill `slot` (the ledger's `may_fill`, but for the
/// regulator check, which the ledger makes).
function mine(slot, rec) {
  const p = state.principal;
  return !slot.by && slot.role === p.role && (slot.member ? slot.member === p.member : p.member !== rec.institution);
}

/// Everything needed to decide on one contract.
function decisionCard(rec, open) {
  const fields = new Map();
  for (const f of rec.fields) {
    const k = `${f.table}.${f.field}`;
    fields.set(k, [...(fields.get(k) || []), f.dataset]);
  }
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
    table([t("col_field"), t("col_datasets")], [...fields].map(([k, ds]) => [k, list(ds)]), { class: "fields" }),
    h("h3", {}, t("decide_computation")),
    h("pre", { tabindex: "0", class: "spec" }, spec),
    h("p", { class: "muted" }, t("computation_hash", { hash: rec.computationHash })),
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

async function queuePage(q) {
  const one = q.get("contract");
  if (one) {
    const { rec } = await provenContract(one);
    show(h("h1", {}, t("queue_title")), h("p", {}, h("a", { href: "#/queue" }, t("back_queue"))), decisionCard(rec, true));
    return;
  }
  const waiting = (await state.client.get(`/v1/users/${state.principal.id}/approvals`)).contracts || [];
  const cards = [];
  for (const s of waiting) cards.push(decisionCard((await provenContract(s.id)).rec, true));
  show(
    h("h1", {}, t("queue_title")),
    h("p", { class: "lead" }, t("queue_intro", { role: t("role_" + state.principal.role), member: state.principal.member })),
    cards.length ? cards : h("p", { id: "empty" }, t("queue_none")),
  );
}

async function decisionsPage() {
  const all = (await state.client.get("/v1/contracts")).contracts || [];
  const rows = [];
  for (const s of all.slice().reverse()) {
    const { rec } = await provenContract(s.id);
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
