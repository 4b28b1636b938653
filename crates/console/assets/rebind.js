// Re-binding a patient who lost their key, in three hands: the new key's claim (made in the
// browser of whoever holds it), the steward of the hospital that registered the patient (who
// verifies the person and asks), and the patient's current key (which may veto during the
// policy's delay). Then the new key completes it and the same pseudonym, with its whole log,
// answers to it. Every record shown here is proven against a certified block.

import * as L from "./ledger.js";
import * as c from "./codec.js";
import { t, date as day } from "./i18n.js";
import * as qr from "./qr.js";
import { state, h, show, notice, facts } from "./ui.js";

/// The proven record under the state key `keyHex`, read at `path` (by default the record
/// route), decoded by `decode`, with the certified header it is proven at; `null` when the node
/// answers that there is none. A proof of any other key is refused: the node's word is not
/// taken for which record it is.
async function proven(keyHex, decode, path = `/v1/records/${keyHex}`) {
  let a;
  try {
    a = await state.client.anchored(path);
  } catch (e) {
    if (e instanceof L.Refused && e.status === 404) return null;
    throw e;
  }
  const chk = await L.checkProven(a.root, a.body);
  if (!chk.ok) throw new L.Verification("record fails its proof");
  if (c.hex(chk.key) !== keyHex) throw new L.Verification("the proof is of another record");
  return { value: decode(chk.value), header: a.header };
}

const patientKey = (pt) => "07" + pt.replace(/^pt-/, "");
const rebindKey = (key) => "12" + key;
const short = (hex) => hex.slice(0, 16) + "…";
/// A time to the second: the waits here may be short (a devnet's is seconds).
const date = (ms) => day(ms, { seconds: true });

/// The patient's proven record, and the pending re-binding it names (if any).
export async function patientRebinding(pt) {
  const rec = await proven(patientKey(pt), L.decodePatient);
  if (!rec) throw new L.Verification("no patient record");
  const pending = rec.value.rebinding ? await proven(rebindKey(rec.value.rebinding), L.decodeRebind) : null;
  return { patient: rec.value, pending: pending && pending.value, header: rec.header };
}

/// What a pending re-binding says, and from when it may complete.
function pendingText(p, key) {
  return t("rb_pending", { hospital: p.hospital, steward: p.steward, key: short(key), asked: date(p.requestedMs), from: date(p.effectiveMs) });
}

// ---------------------------------------------------------------- the patient's key

async function keyPage() {
  const pt = state.session.patient;
  const { patient, pending, header } = await patientRebinding(pt);
  const status = h("div", { "aria-live": "polite", id: "rebind-status" });
  const veto = async () => {
    status.replaceChildren(h("p", {}, t("saving")));
    try {
      await state.client.submit(L.cancelRebind(pt));
      await state.route();
      document.getElementById("rebind-status").replaceChildren(h("div", { class: "done", role: "status" }, t("rb_vetoed")));
    } catch (e) {
      status.replaceChildren(notice(e));
    }
  };
  show(
    h("h1", {}, t("rb_key_title")),
    h("p", { class: "lead" }, t("rb_key_intro")),
    facts([
      [t("rb_pseudonym"), h("code", { translate: "no" }, pt)],
      [t("rb_this_key"), h("code", { translate: "no" }, short(patient.key))],
      [t("rb_registered_by"), patient.hospital],
    ]),
    h("p", { class: "muted" }, t("block_ok", { height: String(header.height), n: String(state.genesis.validators.length) })),
    pending
      ? h(
          "section",
          { class: "notice", role: "alert", id: "rebind-pending", "aria-labelledby": "rb-pending-h" },
          h("h2", { id: "rb-pending-h" }, t("rb_pending_title")),
          h("p", {}, pendingText(pending, patient.rebinding)),
          h("p", {}, t("rb_veto_hint")),
          h("p", {}, h("button", { type: "button", id: "veto", onclick: veto }, t("rb_veto"))),
        )
      : h("p", { id: "rebind-none" }, t("rb_none")),
    status,
    h("h2", {}, t("rb_lost_title")),
    h("p", {}, t("rb_lost_hint", { hospital: patient.hospital })),
  );
}

// ---------------------------------------------------------------- a new key

async function newKeyPage() {
  const mine = await proven(rebindKey(state.session.public), L.decodeRebind, "/v1/rebinding");
  if (mine) return takeOver(mine.value, mine.header);
  const hospital = h("input", { id: "claim-hospital", type: "text", value: state.member, autocomplete: "off", spellcheck: "false" });
  const out = h("div", { "aria-live": "polite", id: "claim-box" });
  const make = async (ev) => {
    ev.preventDefault();
    try {
      const claim = await L.rebindClaim(state.session, state.genesis.chain_id, hospital.value.trim());
      const copied = h("span", { "aria-live": "polite" });
      out.replaceChildren(
        h(
          "section",
          { class: "done", "aria-labelledby": "claim-h" },
          h("h2", { id: "claim-h" }, t("rb_claim_title")),
          qr.svg(qr.encode(new TextEncoder().encode(claim)), t("rb_claim_qr")),
          h("p", {}, h("code", { id: "claim-text", translate: "no", class: "wrap" }, claim)),
          h("p", {}, t("rb_claim_hint", { hospital: hospital.value.trim() })),
          h("div", { class: "row" }, h("button", { type: "button", class: "secondary", id: "claim-copy", onclick: async () => {
            try {
              await navigator.clipboard.writeText(claim);
            } catch {
              /* the claim stays on screen */
            }
            copied.textContent = t("copied");
          } }, t("copy")), copied),
        ),
      );
    } catch (e) {
      out.replaceChildren(notice(e));
    }
  };
  show(
    h("h1", {}, t("rb_new_title")),
    h("div", { class: "notice", role: "alert", id: "who" }, t("not_registered")),
    h("h2", {}, t("rb_lost_title")),
    h("p", {}, t("rb_new_intro")),
    h(
      "form",
      { onsubmit: make, "aria-labelledby": "claim-form-h" },
      h("h3", { id: "claim-form-h" }, t("rb_claim_make")),
      h("label", { for: "claim-hospital" }, t("rb_claim_hospital")),
      hospital,
      h("p", {}, h("button", { type: "submit", id: "claim-make" }, t("rb_claim_make"))),
    ),
    out,
  );
}

/// The new key's page while a re-binding to it waits: when it may complete, and the button
/// that completes it (the ledger refuses it before then).
function takeOver(p, header) {
  const status = h("div", { "aria-live": "polite", id: "rebind-status" });
  const now = Number(header.timeMs);
  const early = now < p.effectiveMs;
  const complete = async () => {
    status.replaceChildren(h("p", {}, t("saving")));
    try {
      await state.client.submit(L.completeRebind(p.patient));
      // The key now answers for the patient: ask the ledger again who it is.
      sessionStorage.removeItem("medspace.principal." + state.session.public);
      state.principal = null;
      // (No hashchange: that would route a second time, over the answer below.)
      history.replaceState(null, "", "#/rebind-key");
      await state.route();
      document.getElementById("rebind-status").replaceChildren(h("div", { class: "done", role: "status" }, t("rb_done")));
    } catch (e) {
      status.replaceChildren(notice(e));
    }
  };
  show(
    h("h1", {}, t("rb_take_title")),
    h("p", { class: "lead", id: "rebind-waiting" }, pendingText(p, state.session.public)),
    facts([
      [t("rb_pseudonym"), h("code", { translate: "no" }, p.patient)],
      [t("rb_from"), date(p.effectiveMs)],
    ]),
    h("p", { class: "muted" }, t("block_ok", { height: String(header.height), n: String(state.genesis.validators.length) })),
    early ? h("p", { id: "rebind-early" }, t("rb_early", { from: date(p.effectiveMs) })) : null,
    h("p", {}, h("button", { type: "button", id: "complete", onclick: complete, disabled: early }, t("rb_complete"))),
    status,
  );
  // Live: once the delay has passed (by block time), the page offers the completion.
  if (early) {
    const wait = Math.min(Math.max(p.effectiveMs - now, 500), 60000);
    const token = (state.pollToken = (state.pollToken || 0) + 1);
    setTimeout(() => {
      // Any other page since (a route stops polling) moved the token on.
      if (state.pollToken === token) state.route();
    }, wait + 1000);
  }
}

// ---------------------------------------------------------------- the steward

function stewardPage() {
  const member = state.principal.member;
  // The pseudonym of a person the steward has in front of them, from this hospital's links.
  const local = h("input", { id: "lookup-id", type: "text", autocomplete: "off", spellcheck: "false" });
  const found = h("div", { "aria-live": "polite", id: "lookup-status" });
  const lookup = async (ev) => {
    ev.preventDefault();
    try {
      const r = await state.client.post("/v1/worker/vault/lookup", { patient_id: local.value.trim() });
      pt.value = r.patient;
      found.replaceChildren(h("p", { class: "done", role: "status" }, t("rb_found", { patient: r.patient })));
    } catch (e) {
      found.replaceChildren(e instanceof L.Refused && e.status === 404 ? h("div", { class: "notice", role: "alert" }, t("rb_not_found")) : notice(e));
    }
  };
  const lookupForm =
    state.member === member
      ? h(
          "form",
          { onsubmit: lookup, "aria-labelledby": "lookup-h", id: "lookup-form" },
          h("h2", { id: "lookup-h" }, t("rb_lookup_title")),
          h("label", { for: "lookup-id" }, t("rb_lookup_label")),
          local,
          h("p", {}, h("button", { type: "submit", class: "secondary", id: "lookup" }, t("rb_lookup"))),
          found,
        )
      : null;
  const pt = h("input", { id: "rebind-patient", autocomplete: "off", spellcheck: "false", placeholder: "pt-…", size: 70, type: "text" });
  const claimText = h("textarea", { id: "rebind-claim", autocomplete: "off", spellcheck: "false", rows: 3 });
  const status = h("div", { "aria-live": "polite", id: "rebind-status" });
  const ask = async (ev) => {
    ev.preventDefault();
    status.replaceChildren(h("p", {}, t("saving")));
    try {
      const patient = pt.value.trim();
      if (!/^pt-[0-9a-f]{64}$/.test(patient)) throw new Error("pseudonym-malformed");
      const parsed = L.parseClaim(claimText.value);
      if (parsed.hospital !== member) throw new Error("claim-other-hospital");
      await state.client.submit(L.rebindPatient(patient, parsed));
      const rec = await proven(rebindKey(parsed.key), L.decodeRebind);
      const withdraw = async () => {
        try {
          await state.client.submit(L.cancelRebind(patient));
          status.replaceChildren(h("div", { class: "done", role: "status", id: "rebind-withdrawn" }, t("rb_withdrawn")));
        } catch (e) {
          status.replaceChildren(notice(e));
        }
      };
      status.replaceChildren(
        h(
          "div",
          { class: "done", role: "status", id: "rebind-asked" },
          h("p", {}, rec ? pendingText(rec.value, parsed.key) : t("saved")),
          h("p", {}, t("rb_asked_hint")),
          h("p", {}, h("button", { type: "button", class: "secondary", id: "withdraw", onclick: withdraw }, t("rb_withdraw"))),
        ),
      );
    } catch (e) {
      status.replaceChildren(notice(e));
    }
  };
  show(
    h("h1", {}, t("rb_steward_title")),
    h("p", { class: "lead" }, t("rb_steward_intro", { member })),
    lookupForm,
    h(
      "form",
      { onsubmit: ask, "aria-labelledby": "rb-form-h", id: "rebind-form" },
      h("h2", { id: "rb-form-h" }, t("rb_steward_form")),
      h("label", { for: "rebind-patient" }, t("rb_pseudonym")),
      pt,
      h("label", { for: "rebind-claim" }, t("rb_claim_label")),
      claimText,
      h("p", {}, h("button", { type: "submit", id: "rebind-ask" }, t("rb_ask"))),
      status,
    ),
  );
}

const isPatient = (p) => p.kind === "patient";
const isUnknown = (p) => p.kind === "unknown";
const isSteward = (p) => p.kind === "user" && p.role === "steward";

/// The re-binding pages, for the router.
export const pages = [
  { id: "rebind-key", nav: "nav_rebind_key", title: "rb_key_title", may: isPatient, render: () => keyPage() },
  { id: "rebind-new", nav: "nav_rebind_new", title: "rb_new_title", may: isUnknown, render: () => newKeyPage() },
  { id: "rebind", nav: "nav_rebind", title: "rb_steward_title", may: isSteward, render: () => stewardPage() },
];
