// The data steward's hospital page: what the hospital's vault holds as its catalog entry says
// (rows per CDM table, quality, fields and levels), and every contract that covers its data with
// the patients it contributed — each contract proven against a certified block.

import * as L from "./ledger.js";
import { t, date, number, list } from "./i18n.js";
import { state, h, show, bars, table, notice } from "./ui.js";
import { publishDataset } from "./governance.js";
import { catalog, datasetCard, provenContract, levelName, statusName } from "./researcher.js";

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
  const rowsOn = (d) => Object.fromEntries(((d && d.tables) || []).map((x) => [x.name, Number(x.rows)]));
  const onLedger = rowsOn(published && published.description);
  const same = published && tables.every(([k, n]) => onLedger[k] === n) && Object.keys(onLedger).length === tables.length;
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
  const vault = vaultSection(member, mine[0]);
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
    mine.length ? mine.map(datasetCard) : h("p", { id: "empty-dataset" }, t("hospital_no_dataset")),
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
