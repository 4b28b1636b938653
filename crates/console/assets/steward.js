// The data steward's hospital page: what the hospital's vault holds as its catalog entry says
// (rows per CDM table, quality, fields and levels), and every contract that covers its data with
// the patients it contributed — each contract proven against a certified block.

import { t, number } from "./i18n.js";
import { state, h, show } from "./ui.js";
import { catalog, datasetCard, provenContract, levelName, statusName } from "./researcher.js";

async function hospitalPage() {
  const member = state.principal.member;
  const mine = (await catalog()).filter((d) => d.owner === member);
  const all = (await state.client.get("/v1/contracts")).contracts || [];
  const rows = [];
  for (const s of all.slice().reverse()) {
    const { rec } = await provenContract(s.id);
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
  show(
    h("h1", {}, t("hospital_title", { member })),
    h("p", { class: "lead" }, t("hospital_intro")),
    mine.length ? mine.map(datasetCard) : h("p", { id: "empty-dataset" }, t("hospital_no_dataset")),
    h("h2", {}, t("hospital_contracts")),
    rows.length
      ? h("table", { id: "hospital-contracts" }, h("thead", {}, h("tr", {}, [t("col_contract"), t("requester"), t("study_id"), t("col_level"), t("col_status"), t("col_contributed")].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows))
      : h("p", { id: "empty" }, t("hospital_no_contracts")),
    h("p", { class: "muted" }, t("hospital_deliveries_later")),
  );
}

const isSteward = (p) => p.kind === "user" && p.role === "steward";

/// The steward's pages, for the router.
export const pages = [{ id: "hospital", nav: "nav_hospital", title: "hospital_title", may: isSteward, render: () => hospitalPage() }];
