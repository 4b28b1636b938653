// Governance (/console/explorer.html#/governance): the consortium's members and its proposals
// with their votes; a member institution's key proposes (admit or remove a member, appoint a
// user to a consortium role, dismiss a user) and votes, every transaction signed in this browser. The
// payload encodings below equal `types::Payload`'s byte for byte (crates/cli/tests/
// console_signing.rs holds them against the Rust ones).

import * as L from "./ledger.js";
import * as c from "./codec.js";
import { t, number, date, list } from "./i18n.js";

/// `Payload::Vote`: the proposal (`p-` and 16 hex digits) and yes or no.
export function vote(proposal, approve) {
  const id = /^p-([0-9a-f]{16})$/.exec(proposal);
  if (!id) throw new Error("bad proposal id");
  return c.concat(c.u8(4), c.u64(BigInt("0x" + id[1])), c.bool(approve));
}

/// The kinds of member institutions (`types::MemberKind`).
export const MEMBER_KINDS = { hospital: 1, insurer: 2, pharma: 3, research_institute: 4, public_health_agency: 5, regulator: 6 };

const HEX32 = /^[0-9a-fA-F]{64}$/;

/// `Payload::AddMember`: the member (id, display name, kind, member key, node key, X25519
/// agreement key; keys as hex) and the credits it starts with.
export function addMember(m, initialBalance) {
  if (!(m.kind in MEMBER_KINDS)) throw new Error("bad kind");
  for (const k of [m.key, m.nodeKey, m.agreementKey]) if (!HEX32.test(k)) throw new Error("bad key");
  return c.concat(
    c.u8(1),
    c.name(m.id),
    c.text(m.name),
    c.u8(MEMBER_KINDS[m.kind]),
    c.unhex(m.key),
    c.unhex(m.nodeKey),
    c.unhex(m.agreementKey),
    c.u64(BigInt(initialBalance)),
  );
}

/// `Payload::RemoveMember`.
export function removeMember(member) {
  return c.concat(c.u8(2), c.name(member));
}

/// The roles a vote appoints (`types::Role`).
export const APPOINTED_ROLES = { data_committee: 2, ethics_committee: 3, auditor: 7 };

/// `Payload::AppointUser`: the user, their institution, a consortium role and their key (hex).
export function appointUser(user, member, role, keyHex) {
  if (!(role in APPOINTED_ROLES)) throw new Error("bad role");
  if (!/^[0-9a-fA-F]{64}$/.test(keyHex)) throw new Error("bad key");
  return c.concat(c.u8(23), c.name(user), c.name(member), c.u8(APPOINTED_ROLES[role]), c.unhex(keyHex));
}

/// `Payload::DismissUser`.
export function dismissUser(user) {
  return c.concat(c.u8(24), c.name(user));
}

// The unit enums a policy carries, by their JSON names (`types::domain`, `types::classification`).
const LEVELS = { L1: 1, L2: 2, L3: 3, L4: 4 };
const ROLES = { steward: 1, data_committee: 2, ethics_committee: 3, researcher: 4, clinician: 5, claims_officer: 6, auditor: 7, patient: 8 };
const SCOPES = { per_owner: 1, consortium: 2 };
const PURPOSES = { treatment: 1, patient_access: 2, research: 3, teaching: 4, insurance_claim: 5, public_health: 6, drug_safety: 7, quality_management: 8 };
const SENSITIVE = { hiv_sti: 1, mental_health: 2, substance_use: 3, reproductive: 4, genetic: 5 };

/// A unit enum's tag byte by its JSON name, or an error.
const en = (map, v) => {
  if (!(v in map)) throw new Error("bad value " + v);
  return c.u8(map[v]);
};
/// A whole number (as JSON gives it), or an error.
const whole = (n) => {
  if (!Number.isSafeInteger(Number(n)) || Number(n) < 0) throw new Error("bad number");
  return BigInt(n);
};

/// `Payload::PublishDataset` of a dataset description as its JSON reads (`types::
/// DatasetDescription`, as the node's `/v1/worker/vault/entry` serves it).
export function publishDataset(d) {
  return c.concat(c.u8(8), description(d));
}

/// A dataset description's bytes (`types::DatasetDescription`'s codec).
function description(d) {
  if (!/^[0-9a-f]{64}$/.test(d.content_hash)) throw new Error("bad content hash");
  return c.concat(
    c.name(d.id),
    c.text(d.title),
    c.u32(Number(whole(d.version))),
    c.list(d.tables, (t) =>
      c.concat(
        c.text(t.name),
        c.u64(whole(t.rows)),
        c.u32(Number(whole(t.duplicate_ppm))),
        c.u32(Number(whole(t.implausible_ppm))),
        c.list(t.fields, (f) => c.concat(c.text(f.name), en(LEVELS, f.level), c.u32(Number(whole(f.missing_ppm))), c.u32(Number(whole(f.invalid_ppm))))),
      ),
    ),
    c.unhex(d.content_hash),
  );
}

/// `Payload::PublishRelease`: a release's catalog entry (its JSON as the node's
/// `/v1/worker/releases/plan` answers it) and its figures (`types::ReleaseFigures`, fields in
/// the codec's order).
export function publishRelease(entry, f) {
  if (!/^[0-9a-f]{64}$/.test(f.spec_hash)) throw new Error("bad spec hash");
  return c.concat(
    c.u8(29),
    description(entry),
    c.name(f.source),
    c.list(f.purposes, (x) => en(PURPOSES, x)),
    c.u64(whole(f.consent_height)),
    c.unhex(f.spec_hash),
    c.u32(Number(whole(f.k))),
    c.u32(Number(whole(f.l))),
    c.u64(whole(f.persons)),
    c.u64(whole(f.suppressed)),
    c.u32(Number(whole(f.prosecutor_max_ppm))),
    c.u32(Number(whole(f.prosecutor_avg_ppm))),
    c.u32(Number(whole(f.journalist_max_ppm))),
    c.u32(Number(whole(f.marketer_ppm))),
    c.u32(Number(whole(f.at_risk_ppm))),
  );
}

/// `Payload::RegisterUser`: a member registers one of its own users (its institutional roles;
/// the ledger refuses the others).
export function registerUser(user, role, keyHex) {
  if (!/^[0-9a-f]{64}$/.test(keyHex) || !(role in ROLES)) throw new Error("bad input");
  return c.concat(c.u8(5), c.name(user), c.u8(ROLES[role]), c.unhex(keyHex));
}

/// `Payload::UpdatePolicy`: the whole policy (as `/v1/status` gives it), every field in the
/// order `types::Policy`'s codec writes it.
export function updatePolicy(p) {
  const cl = p.classification;
  return c.concat(
    c.u8(3),
    c.u32(Number(whole(p.vote_num))),
    c.u32(Number(whole(p.vote_den))),
    c.list(p.requirements, (r) => c.concat(en(LEVELS, r.level), en(ROLES, r.role), en(SCOPES, r.scope))),
    c.u32(Number(whole(p.min_cell_k))),
    c.u64(whole(p.max_contract_ms)),
    c.u64(whole(p.max_epsilon_micro)),
    c.list(p.implied_consent, (x) => en(PURPOSES, x)),
    c.u64(whole(p.proposal_ttl_ms)),
    c.u64(whole(p.max_job_epsilon_micro)),
    c.u64(whole(p.dataset_epsilon_micro)),
    c.list(cl.fields, (f) => c.concat(c.text(f.table), c.text(f.column), en(LEVELS, f.level))),
    c.list(cl.sensitive, (s) => c.concat(c.text(s.table), c.text(s.code), c.bool(s.prefix), en(SENSITIVE, s.category))),
    en(LEVELS, cl.unlisted),
    c.u64(whole(p.rebind_delay_ms)),
    c.u32(Number(whole(p.open_pool.min_k))),
    c.u32(Number(whole(p.open_pool.min_l))),
    c.u32(Number(whole(p.open_pool.max_risk_ppm))),
    c.u64(whole(p.open_pool.destruction_ms)),
    c.list(p.quality_floors, (f) =>
      c.concat(
        c.option(f.purpose, (x) => en(PURPOSES, x)),
        en(LEVELS, f.level),
        c.u32(Number(whole(f.max_missing_ppm))),
        c.u32(Number(whole(f.max_invalid_ppm))),
        c.u32(Number(whole(f.max_duplicate_ppm))),
        c.u32(Number(whole(f.max_implausible_ppm))),
      ),
    ),
  );
}

/// The policy's numbers a member may propose to change in the page: name, how it is shown
/// and typed (ε, days, a whole number) and how it is kept.
const POLICY_NUMBERS = [
  ["min_cell_k", "whole"],
  ["max_job_epsilon_micro", "eps"],
  ["max_epsilon_micro", "eps"],
  ["dataset_epsilon_micro", "eps"],
  ["max_contract_ms", "days"],
  ["rebind_delay_ms", "s"],
];
const SCALE = { eps: 1e6, days: 86400000, s: 1000, whole: 1 };
const shown = (unit, v) => Number(v) / SCALE[unit];
const kept = (unit, s) => {
  const x = Number(String(s).trim());
  if (!Number.isFinite(x) || x <= 0) throw new Error("bad number");
  const v = unit === "whole" ? x : Math.round(x * SCALE[unit]);
  if (!Number.isSafeInteger(v)) throw new Error("bad number");
  return v;
};

/// What a policy proposal changes, against the policy in force: `[name, from, to]` in the
/// units the form uses (other fields compared whole).
export function policyChanges(current, next) {
  const out = POLICY_NUMBERS.filter(([k]) => Number(current[k]) !== Number(next[k])).map(([k, unit]) => [k, shown(unit, current[k]), shown(unit, next[k])]);
  for (const k of ["vote_num", "vote_den", "proposal_ttl_ms", "requirements", "implied_consent", "classification", "open_pool", "quality_floors"]) {
    if (JSON.stringify(current[k]) !== JSON.stringify(next[k]) && !POLICY_NUMBERS.some(([n]) => n === k)) out.push([k, null, null]);
  }
  return out;
}

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

function describe(action, policy) {
  const [kind, a] = Object.entries(action)[0] || ["", {}];
  if (kind === "update_policy" && policy && a && a.policy) {
    const changes = policyChanges(policy, a.policy).map(([k, from, to]) => (from === null ? t("gv_pol_" + k) : t("gv_pol_change", { what: t("gv_pol_" + k), from: number(from), to: number(to) })));
    return t("gv_do_policy") + (changes.length ? ": " + list(changes) : "");
  }
  if (kind === "remove_member") return t("gv_do_remove", { member: a.member });
  if (kind === "add_member") return t("gv_do_add", { member: a.member.id });
  if (kind === "appoint_user") return t("gv_do_appoint", { user: a.user, member: a.member, role: t("gv_role_" + a.role) });
  if (kind === "dismiss_user") return t("gv_do_dismiss", { user: a.user });
  if (kind === "update_policy") return t("gv_do_policy");
  return kind;
}

function refusal(e) {
  if (e instanceof L.Refused && e.what === "tx") return t("refused_tx", { reason: e.reason || t("refused_other") });
  if (e instanceof L.Refused) return t({ 401: "refused_401", 403: "refused_403", 404: "refused_404", 429: "refused_429" }[e.status] || "refused_other");
  if (e instanceof L.Verification) return t("verification_failed");
  return t("gv_bad_input");
}

/// The governance page for the signed-in key (`who`: see explorer.js `whoAmI`); `redraw` draws
/// it again after a transaction; `said` is the outcome of the last one.
export async function governancePage(client, who, redraw, said) {
  const title = h("h1", {}, t("gv_title"));
  if (!who || (who.kind !== "member" && who.kind !== "user")) {
    return [title, h("div", { class: "notice", role: "alert", id: "who" }, t("gv_not_member"))];
  }
  const canAct = who.kind === "member";
  const members = ((await client.get("/v1/members")).members || []).filter((m) => m.member);
  const proposals = (await client.get("/v1/proposals")).proposals || [];
  const policy = (await client.get("/v1/status")).policy || null;
  const act = async (payload, done, then = null) => {
    let outcome;
    try {
      await client.submit(payload, { retiresKey: !!then });
      if (then) await then();
      outcome = h("div", { class: "done", role: "status", id: "outcome" }, done);
    } catch (e) {
      if (!(e instanceof L.Refused) && !(e instanceof L.Verification) && !(e instanceof Error)) console.error(e);
      outcome = h("div", { class: "notice", role: "alert", id: "outcome" }, refusal(e));
    }
    await redraw(outcome);
  };
  const parts = [
    title,
    h("p", { class: "lead", id: "who" }, canAct ? t("gv_as_member", { member: who.member }) : t("gv_read_only")),
    said || "",
    h("h2", { id: "members-h" }, t("gv_members")),
    h(
      "table",
      { id: "members" },
      h("thead", {}, h("tr", {}, ...["gv_member", "gv_kind", "gv_active", "gv_balance"].map((k) => h("th", { scope: "col" }, t(k))))),
      h(
        "tbody",
        {},
        members.map((m) =>
          h(
            "tr",
            {},
            h("td", {}, m.member.name, h("br"), h("span", { class: "muted" }, m.member.id)),
            h("td", {}, t("gv_kind_" + m.member.kind)),
            h("td", {}, h("span", { class: "badge " + (m.active ? "ok" : "bad") }, t(m.active ? "gv_yes" : "gv_no"))),
            h("td", {}, number(m.balance)),
          ),
        ),
      ),
    ),
    h("h2", { id: "proposals-h" }, t("gv_proposals")),
  ];
  const order = { open: 0, passed: 1, failed: 2 };
  const sorted = [...proposals].sort((a, b) => order[a.status] - order[b.status] || b.created_ms - a.created_ms);
  if (!sorted.length) parts.push(h("p", {}, t("gv_no_proposals")));
  for (const p of sorted) {
    const voted = p.yes.includes(who.member) || p.no.includes(who.member);
    parts.push(
      h(
        "div",
        { class: "card proposal", "data-id": p.id, "data-status": p.status },
        h("p", {}, h("strong", {}, describe(p.action, policy))),
        h("p", { class: "muted" }, t("gv_by", { id: p.id, member: p.proposer, when: date(p.created_ms) })),
        h("p", {}, h("span", { class: "badge " + (p.status === "failed" ? "bad" : "ok") }, t("gv_st_" + p.status)), " ", t("gv_votes", { yes: p.yes.length ? list(p.yes) : "—", no: p.no.length ? list(p.no) : "—" })),
        canAct && p.status === "open" && !voted
          ? h(
              "div",
              { class: "row" },
              h("button", { type: "button", class: "vote-yes", onclick: () => act(vote(p.id, true), t("gv_voted")) }, t("gv_vote_yes")),
              h("button", { type: "button", class: "warn vote-no", onclick: () => act(vote(p.id, false), t("gv_voted")) }, t("gv_vote_no")),
            )
          : "",
      ),
    );
  }
  if (canAct) {
    const others = members.filter((m) => m.active && m.member.id !== who.member).map((m) => m.member.id);
    const sel = (id, options) => h("select", { id }, options.map(([v, label]) => h("option", { value: v }, label)));
    const field = (id, label, control) => [h("label", { for: id }, label), control];
    const v = (id) => document.getElementById(id).value.trim();
    // A form whose payload `build` makes from its fields: bad input is said before anything is
    // signed; the rest goes to the ledger and its answer is shown.
    const form = (id, build, doneText, ...kids) =>
      h(
        "form",
        {
          id,
          class: "card",
          onsubmit: (e) => {
            e.preventDefault();
            let payload;
            try {
              payload = build();
            } catch {
              redraw(h("div", { class: "notice", role: "alert", id: "outcome" }, t("gv_bad_input")));
              return;
            }
            act(payload, doneText);
          },
        },
        ...kids,
      );
    parts.push(
      h("h2", { id: "propose-h" }, t("gv_propose")),
      form(
        "propose-add",
        () => addMember({ id: v("add-id"), name: v("add-name"), kind: v("add-kind"), key: v("add-key"), nodeKey: v("add-node-key"), agreementKey: v("add-agreement-key") }, 0n),
        t("gv_proposed"),
        h("h3", {}, t("gv_add_title")),
        field("add-id", t("gv_add_id"), h("input", { type: "text", id: "add-id", required: true, autocomplete: "off" })),
        field("add-name", t("gv_add_name"), h("input", { type: "text", id: "add-name", required: true, autocomplete: "off" })),
        field("add-kind", t("gv_kind"), sel("add-kind", Object.keys(MEMBER_KINDS).map((k) => [k, t("gv_kind_" + k)]))),
        field("add-key", t("gv_add_key"), h("input", { type: "text", id: "add-key", required: true, autocomplete: "off", spellcheck: "false", size: "66" })),
        field("add-node-key", t("gv_add_node_key"), h("input", { type: "text", id: "add-node-key", required: true, autocomplete: "off", spellcheck: "false", size: "66" })),
        field("add-agreement-key", t("gv_add_agreement_key"), h("input", { type: "text", id: "add-agreement-key", required: true, autocomplete: "off", spellcheck: "false", size: "66" })),
        h("p", {}, h("button", { type: "submit" }, t("gv_propose_button"))),
      ),
      form(
        "propose-remove",
        () => removeMember(v("remove-member")),
        t("gv_proposed"),
        h("h3", {}, t("gv_remove_title")),
        field("remove-member", t("gv_member"), sel("remove-member", others.map((m) => [m, m]))),
        h("p", {}, h("button", { type: "submit" }, t("gv_propose_button"))),
      ),
      form(
        "propose-appoint",
        () => appointUser(v("appoint-user"), v("appoint-member"), v("appoint-role"), v("appoint-key")),
        t("gv_proposed"),
        h("h3", {}, t("gv_appoint_title")),
        field("appoint-user", t("gv_user"), h("input", { type: "text", id: "appoint-user", required: true, autocomplete: "off" })),
        field("appoint-member", t("gv_member"), sel("appoint-member", members.filter((m) => m.active).map((m) => [m.member.id, m.member.id]))),
        field("appoint-role", t("gv_role"), sel("appoint-role", Object.keys(APPOINTED_ROLES).map((r) => [r, t("gv_role_" + r)]))),
        field("appoint-key", t("gv_key"), h("input", { type: "text", id: "appoint-key", required: true, autocomplete: "off", spellcheck: "false", size: "66" })),
        h("p", {}, h("button", { type: "submit" }, t("gv_propose_button"))),
      ),
      policy
        ? form(
            "propose-policy",
            () => {
              const next = { ...policy };
              for (const [k, unit] of POLICY_NUMBERS) next[k] = kept(unit, v("pol-" + k));
              if (!policyChanges(policy, next).length) throw new Error("nothing changes");
              return updatePolicy(next);
            },
            t("gv_proposed"),
            h("h3", {}, t("gv_policy_title")),
            h("p", { class: "muted" }, t("gv_policy_hint")),
            POLICY_NUMBERS.flatMap(([k, unit]) => field("pol-" + k, t("gv_pol_" + k), h("input", { type: "text", inputmode: "decimal", id: "pol-" + k, value: String(shown(unit, policy[k])), autocomplete: "off", size: "12" }))),
            h("p", {}, h("button", { type: "submit" }, t("gv_propose_button"))),
          )
        : "",
      form(
        "propose-dismiss",
        () => dismissUser(v("dismiss-user")),
        t("gv_proposed"),
        h("h3", {}, t("gv_dismiss_title")),
        field("dismiss-user", t("gv_user"), h("input", { type: "text", id: "dismiss-user", required: true, autocomplete: "off" })),
        h("p", {}, h("button", { type: "submit" }, t("gv_propose_button"))),
      ),
      h("h2", {}, t("gv_register_title")),
      form(
        "register-user",
        () => registerUser(v("register-id"), v("register-role"), v("register-key").toLowerCase()),
        t("gv_registered"),
        h("p", {}, t("gv_register_intro", { member: who.member })),
        field("register-id", t("gv_register_id", { member: who.member }), h("input", { type: "text", id: "register-id", required: true, autocomplete: "off" })),
        field("register-role", t("gv_register_role"), sel("register-role", ["steward", "researcher", "clinician", "claims_officer", "auditor"].map((r) => [r, t("role_" + r)]))),
        field("register-key", t("gv_key"), h("input", { type: "text", id: "register-key", required: true, autocomplete: "off", spellcheck: "false", size: "66" })),
        h("p", {}, h("button", { type: "submit" }, t("gv_register_button"))),
      ),
    );
  }
  parts.push(rotateSection(client, act));
  return parts;
}

/// Replacing the signed-in key (a member's or a user's): a new key made here, its file saved
/// first, then `RotateKey` signed by the old key with the new key's proof of possession; the
/// page then signs with the new key and the old one is retired.
function rotateSection(client, act) {
  const box = h("div", { "aria-live": "polite", id: "rotate-box" });
  const start = async () => {
    const nonce = await client.nonce();
    const made = await L.newKeyFor(client.session, client.genesis.chain_id, nonce);
    const save = h("a", { href: URL.createObjectURL(new Blob([made.file], { type: "application/json" })), download: "new-key.json", id: "rotate-save" }, t("gv_rotate_save"));
    const confirm = h("button", { type: "button", id: "rotate-confirm", disabled: true }, t("gv_rotate_confirm"));
    save.addEventListener("click", () => confirm.removeAttribute("disabled"));
    confirm.addEventListener("click", () =>
      act(made.payload, t("gv_rotated"), async () => {
        // From now on this page signs with the new key (kept non-extractable, as at sign-in),
        // once its own proven record shows it in force.
        const old = client.session;
        client.session = await L.importWallet(made.file);
        const rec = await client.keyRecord();
        if (!rec || rec.retired) {
          client.session = old;
          throw new L.Verification("the new key is not in force");
        }
      }),
    );
    box.replaceChildren(h("p", {}, t("gv_rotate_saving", { key: made.public.slice(0, 16) })), h("p", {}, save), h("p", {}, confirm));
  };
  return h(
    "section",
    { class: "card", "aria-labelledby": "rotate-h", id: "rotate" },
    h("h2", { id: "rotate-h" }, t("gv_rotate_title")),
    h("p", {}, t("gv_rotate_intro")),
    h("p", {}, h("button", { type: "button", class: "secondary", id: "rotate-start", onclick: start }, t("gv_rotate_start"))),
    box,
  );
}
