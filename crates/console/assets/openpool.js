// The researcher's open pool: the hospitals' de-identified releases with what protects the
// people in them (k, l, the re-identification risks, who was suppressed), a request for one
// (an open-pool contract its hospital's steward approves), the download once it is active —
// the manifest checked against the catalog entry's hash proven on the ledger, every file
// against the manifest, nothing offered unless all of them match — and the copies the
// researcher's institution holds, with when each must be destroyed and the attestation.

import * as L from "./ledger.js";
import { t, date, number, list } from "./i18n.js";
import { state, h, show, notice, facts, table, bars, submitting, onNewBlocks } from "./ui.js";
import { catalog, provenContract, approvalsView, statusName } from "./researcher.js";

/// Parts per million as a percentage (two decimals below 1 %).
export const riskPct = (ppm) => {
  const p = Number(ppm) / 10000;
  return `${p < 1 && p > 0 ? p.toFixed(2) : p.toFixed(1)} %`;
};

const purposeName = (p) => t("p_" + p);

/// Facts whose labels are long sentences: two columns sharing the width.
const wide = (dl) => {
  dl.classList.add("wide");
  return dl;
};

/// A release's figures as the catalog states them: the protection first, then the risks.
export function releaseFacts(d) {
  const f = d.release;
  const desc = d.description;
  return [
    h("p", { class: "protect", "data-k": String(f.k), "data-l": String(f.l) }, h("strong", {}, t("op_protect", { k: number(f.k), others: number(Math.max(0, f.k - 1)), l: number(f.l) }))),
    wide(facts([
      [t("op_k"), h("span", { class: "k" }, number(f.k))],
      [t("op_l"), h("span", { class: "l" }, number(f.l))],
      [t("op_persons"), t("op_persons_of", { n: number(f.persons), suppressed: number(f.suppressed) })],
      [t("op_risk_prosecutor"), t("op_risk_max_avg", { max: riskPct(f.prosecutor_max_ppm), avg: riskPct(f.prosecutor_avg_ppm) })],
      [t("op_risk_journalist"), riskPct(f.journalist_max_ppm)],
      [t("op_risk_marketer"), riskPct(f.marketer_ppm)],
      [t("op_at_risk"), riskPct(f.at_risk_ppm)],
      [t("op_purposes"), list(f.purposes.map(purposeName))],
      [t("op_source"), h("code", { translate: "no" }, f.source)],
      [t("ds_owner"), d.owner],
      d.published_height ? [t("ds_version"), t("ds_version_at", { v: number(desc.version), height: number(d.published_height) })] : [t("ds_version"), number(desc.version)],
      [t("op_consent_height"), "#" + number(f.consent_height)],
      [t("op_fingerprint"), h("code", { translate: "no", class: "muted" }, desc.content_hash.slice(0, 16) + "…")],
    ])),
    h(
      "details",
      {},
      h("summary", {}, t("op_tables", { n: number((desc.tables || []).length) })),
      table(
        [t("op_table"), t("ds_rows"), t("op_columns")],
        (desc.tables || []).map((x) => [h("code", { translate: "no" }, x.name), number(x.rows), h("span", { translate: "no", class: "muted" }, (x.fields || []).map((f) => f.name).join(", "))]),
      ),
    ),
  ];
}

// ---------------------------------------------------------------- the download

const SAFE_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;

/// Fetches release `dataset` under `contract` from its owner's node (through this node's relay)
/// and verifies it: the manifest's SHA-256 against the catalog entry proven at a certified
/// block, each file's size and SHA-256 against the manifest. Returns the verified files, or
/// throws (nothing is offered then).
async function fetchRelease(contract, dataset, afterHeight, progress) {
  const entry = await L.provenDataset(state.client, dataset);
  if (!entry.release) throw new L.Verification("not a release");
  progress(t("op_dl_manifest", { owner: entry.owner }));
  const manifestBytes = await state.client.postAtBytes(entry.owner, "/v1/worker/releases/deliver", { contract, dataset, after_height: afterHeight });
  const got = await L.sha256Hex(manifestBytes);
  if (got !== entry.description.content_hash) throw mismatch(t("op_bad_manifest", { got: got.slice(0, 16), want: entry.description.content_hash.slice(0, 16) }));
  const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  if (manifest.dataset !== dataset || !String(manifest.format || "").startsWith("medspace-release/")) throw mismatch(t("op_bad_manifest_of"));
  const files = [];
  for (const [i, f] of (manifest.files || []).entries()) {
    if (!SAFE_NAME.test(f.name) || f.name.includes("..")) throw mismatch(t("op_bad_name"));
    progress(t("op_dl_file", { name: f.name, i: number(i + 1), n: number(manifest.files.length) }));
    const bytes = await state.client.getAtBytes(entry.owner, `/v1/worker/releases/${dataset}/files/${f.name}`);
    const sha = await L.sha256Hex(bytes);
    if (bytes.length !== Number(f.bytes) || sha !== f.sha256) throw mismatch(t("op_bad_file", { name: f.name }));
    files.push({ name: f.name, bytes, sha });
  }
  return { entry, manifestBytes, manifest, files };
}

/// A verification failure said in words.
function mismatch(words) {
  const e = new L.Verification(words);
  e.words = words;
  return e;
}

/// A refusal or failure of the download in words: the node's reason where it gave one.
function downloadError(e) {
  if (e instanceof L.Verification && e.words) return h("div", { class: "notice", role: "alert", "data-verified": "false" }, t("op_not_verified"), " ", e.words);
  if (e instanceof L.Refused && e.reason) {
    const why = /overdue/i.test(e.reason) ? t("op_why_overdue") : /not active|expired|terminated|rejected|pending/i.test(e.reason) ? t("op_why_inactive") : /not the one published/i.test(e.reason) ? t("op_why_changed") : /no live delivery/i.test(e.reason) ? t("op_why_no_delivery") : null;
    return h("div", { class: "notice", role: "alert", "data-verified": "false" }, why ? why + " " : "", h("span", { class: "muted", translate: "no" }, "(" + e.reason + ")"));
  }
  return h("div", { "data-verified": "false" }, notice(e));
}

/// The risk report a release carries (`risk_report.json`), rendered: who is in it, what was
/// generalized, the risks, the information lost, and the sizes of its classes.
export function reportView(r, idPrefix) {
  const sizes = (r.class_sizes || []).map(([size, count]) => [t("op_class_of", { n: number(size) }), Number(count)]);
  const fig = r.figures || {};
  const risk = r.risk || {};
  return h(
    "div",
    { class: "report" },
    wide(facts([
      [t("op_rep_records"), t("op_rep_records_of", { n: number(fig.records ?? 0), of: number(r.records ?? 0), suppressed: number(r.suppressed ?? 0) })],
      [t("op_rep_classes"), number(fig.classes ?? 0)],
      [t("op_k"), number(fig.k ?? 0)],
      ...(fig.sensitive || []).map((s) => [t("op_rep_l_of", { field: s.field }), number(s.distinct_l)]),
      [t("op_rep_levels"), h("span", { translate: "no" }, (r.levels || []).map((l) => `${l.field}: ${l.name}`).join(" · "))],
      [t("op_risk_prosecutor"), risk.prosecutor ? t("op_risk_max_avg", { max: riskPct(risk.prosecutor.highest * 1e6), avg: riskPct(risk.prosecutor.average * 1e6) }) : "—"],
      [t("op_risk_journalist"), risk.journalist ? riskPct(risk.journalist.highest * 1e6) : "—"],
      [t("op_risk_marketer"), risk.marketer !== undefined ? riskPct(risk.marketer * 1e6) : "—"],
      [t("op_rep_loss"), t("op_rep_loss_of", { loss: (Number(r.information_loss_normalized || 0) * 100).toFixed(1) + " %", measure: r.utility === "entropy" ? t("op_entropy") : t("op_discernibility") })],
      [t("op_rep_search"), t("op_rep_search_of", { n: number(r.nodes_evaluated ?? 0), of: number(r.lattice_size ?? 0) })],
    ])),
    sizes.length ? h("h4", { id: idPrefix + "-classes-h" }, t("op_classes_chart")) : null,
    sizes.length ? h("div", { class: "scroll" }, bars(sizes, t("op_classes_chart"))) : null,
    sizes.length ? h("p", { class: "muted" }, t("op_classes_hint")) : null,
  );
}

const sizeText = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n >= 1024 ? `${(n / 1024).toFixed(1)} kB` : t("op_bytes", { n: number(n) }));

/// The verified files offered for download (each a Blob kept in this tab) and the report.
function verifiedView(got, contract) {
  const { entry, files, manifestBytes } = got;
  const all = [...files, { name: "manifest.json", bytes: manifestBytes, sha: entry.description.content_hash }];
  const rows = all.map((f) =>
    h(
      "tr",
      { "data-file": f.name, "data-verified": "true" },
      h("td", {}, h("a", { href: URL.createObjectURL(new Blob([f.bytes], { type: "application/octet-stream" })), download: f.name, translate: "no" }, f.name)),
      h("td", { class: "num" }, sizeText(f.bytes.length)),
      h("td", {}, h("code", { translate: "no", class: "muted" }, f.sha.slice(0, 16) + "…")),
      h("td", {}, h("span", { class: "badge ok" }, "✓ " + t("verified"))),
    ),
  );
  const report = files.find((f) => f.name === "risk_report.json");
  let rendered = null;
  if (report) {
    try {
      rendered = reportView(JSON.parse(new TextDecoder().decode(report.bytes)), "dl-" + contract);
    } catch {
      rendered = h("p", { class: "muted" }, t("op_report_unreadable"));
    }
  }
  return h(
    "div",
    { class: "download", "data-verified": "true", "data-files": String(all.length) },
    h("div", { class: "done", role: "status" }, t("op_verified_all", { n: number(all.length), bytes: sizeText(all.reduce((a, f) => a + f.bytes.length, 0)), height: number(entry.height) })),
    h("p", { class: "muted" }, t("op_keep_hint")),
    table([t("op_file"), t("op_size"), t("op_sha"), t("proof_col")], rows, { class: "files" }),
    rendered ? [h("h4", {}, t("op_report")), rendered] : null,
  );
}

// ---------------------------------------------------------------- the page

const DAY = 86400000;

async function openPoolPage() {
  const me = state.principal;
  const status = h("div", { "aria-live": "polite", id: "op-status" });
  const downloads = new Map();
  const body = h("div", { id: "op-body" });
  let lastKey = "";
  const render = async (force) => {
    const [all, listed, proven] = await Promise.all([catalog(), state.client.get("/v1/contracts"), state.client.anchored(`/v1/members/${me.member}/deliveries`)]);
    const releases = all.filter((d) => d.release);
    const mineList = (listed.contracts || []).filter((x) => x.requester === me.id && x.mode === "open_pool").reverse();
    // The status as of the block (an expired contract is no longer active).
    const contracts = (await Promise.all(mineList.map((x) => provenContract(x.id)))).map(({ rec, height, statusNow }) => ({ rec: { ...rec, status: statusNow || rec.status }, height }));
    // The copies delivered to this institution, each checked against the certified block.
    const copies = [];
    for (const x of proven.body.releases || []) {
      const chk = await L.checkProven(proven.root, x.delivery);
      let d = null;
      try {
        d = chk.ok ? L.decodeDelivery(chk.value) : null;
      } catch {
        d = null;
      }
      if (d && d.recipient !== me.member) continue;
      copies.push({ d, due: x.due_ms, ok: !!d });
    }
    const key = JSON.stringify([releases.map((d) => [d.description.id, d.description.version]), contracts.map(({ rec }) => [rec.id, rec.status, rec.approvals]), copies.map((c) => [c.d && c.d.id, c.d && c.d.destroyedHeight])]);
    if (key === lastKey && !force) return;
    lastKey = key;
    const now = Date.now();
    const overdue = copies.filter((c) => c.d && c.d.destroyedHeight === null && c.due !== null && c.due < now);
    const cards = releases.map((d) => releaseCard(d, contracts.filter(({ rec }) => rec.fields.some((f) => f.dataset === d.description.id)), downloads, status, () => render(true)));
    body.replaceChildren(
      ...[
        overdue.length ? h("div", { class: "notice", role: "alert", id: "op-overdue" }, t("op_overdue_block", { n: number(overdue.length), member: me.member })) : null,
        h("h2", { id: "op-releases-h" }, t("op_releases")),
        cards.length ? cards : h("p", { id: "op-none" }, t("op_none")),
        h("h2", { id: "op-copies-h" }, t("op_copies", { member: me.member })),
        h("p", { class: "muted" }, t("block_ok", { height: number(proven.header.height), n: number(state.genesis.validators.length) })),
        copiesTable(copies, now, () => render(true)),
      ]
        .flat(2)
        .filter((x) => x !== null),
    );
  };
  show(h("h1", {}, t("op_title")), h("p", { class: "lead" }, t("op_intro")), status, body);
  await render(true);
  // Live: a contract approved, a copy delivered or destroyed shows without a reload.
  onNewBlocks(async () => {
    try {
      await render(false);
    } catch {
      /* the next block tries again */
    }
  });
}

/// One release: its figures, the request form, and this researcher's contracts for it.
function releaseCard(d, contracts, downloads, status, redraw) {
  const id = d.description.id;
  const hid = "op-" + id.replace(/[^a-z0-9]/gi, "-");
  const purpose = h("select", { id: hid + "-purpose" }, d.release.purposes.map((p) => h("option", { value: p }, purposeName(p))));
  const days = h("input", { type: "number", id: hid + "-days", min: "1", max: "365", value: "30", inputmode: "numeric" });
  const asked = h("div", { "aria-live": "polite", class: "ask-status" });
  const ask = async (ev) => {
    ev.preventDefault();
    const n = Number(days.value);
    if (!Number.isInteger(n) || n < 1 || n > 365) {
      asked.replaceChildren(h("div", { class: "notice", role: "alert" }, h("a", { href: "#" + days.id, onclick: (e) => (e.preventDefault(), days.focus()) }, t("op_days_bad"))));
      days.focus();
      return;
    }
    if ((await submitting(asked, L.openPoolRequest([d], purpose.value, n, Date.now()), t("op_asked"))) !== null) await redraw();
  };
  return h(
    "section",
    { class: "card release", "data-dataset": id, "aria-labelledby": hid },
    h("h3", { id: hid, translate: "no" }, d.description.title || id),
    releaseFacts(d),
    contracts.length ? h("h4", {}, t("op_my_requests")) : null,
    contracts.map(({ rec, height }) => contractView(rec, height, id, downloads)),
    h(
      "form",
      { class: "ask", onsubmit: ask, novalidate: true },
      h("h4", {}, t("op_ask_title")),
      h("div", { class: "row" }, h("span", {}, h("label", { for: purpose.id }, t("purpose")), purpose), h("span", {}, h("label", { for: days.id }, t("op_days")), days)),
      h("p", { class: "muted" }, t("op_ask_hint", { owner: d.owner })),
      h("p", {}, h("button", { type: "submit", class: "ask-button", id: hid + "-ask" }, t("op_ask"))),
      asked,
    ),
  );
}

/// One of the researcher's open-pool contracts: its status and approvals; active, the download.
function contractView(rec, height, dataset, downloads) {
  // One status element per contract and release for the page's life: a redraw (a new block)
  // moves it, so a download in progress or done stays where the researcher looks.
  const key = rec.id + "/" + dataset;
  const out = downloads.get(key) || h("div", { "aria-live": "polite", class: "dl-status", id: "dl-" + rec.id });
  downloads.set(key, out);
  const download = async () => {
    out.replaceChildren(h("p", {}, t("op_dl_start")));
    try {
      const got = await fetchRelease(rec.id, dataset, height, (what) => out.replaceChildren(h("p", {}, what)));
      out.replaceChildren(verifiedView(got, rec.id));
    } catch (e) {
      if (!(e instanceof L.Refused) && !(e instanceof L.Verification)) console.error(e);
      out.replaceChildren(downloadError(e));
    }
  };
  return h(
    "div",
    { class: "contract", "data-contract": rec.id, "data-status": rec.status },
    h("p", {}, h("a", { href: "#/studies?contract=" + rec.id }, rec.id), " — ", h("strong", {}, statusName(rec.status)), " — ", t("op_for", { purpose: purposeName(rec.purpose), until: date(rec.expiryMs) })),
    rec.status === "pending" ? approvalsView(rec) : null,
    rec.status === "rejected" || rec.status === "terminated" ? h("p", { class: "muted" }, t("closing_reason"), " ", h("q", { translate: "no" }, rec.reason)) : null,
    rec.status === "active" ? h("p", {}, h("button", { type: "button", class: "download-button", id: "download-" + rec.id, onclick: download }, t("op_download"))) : null,
    rec.status === "active" ? h("p", { class: "muted" }, t("op_download_hint")) : null,
    out,
  );
}

/// The copies delivered to this institution: when, what, due or destroyed; the attestation.
function copiesTable(copies, now, redraw) {
  if (!copies.length) return h("p", { id: "op-no-copies" }, t("op_no_copies"));
  const rows = copies
    .slice()
    .sort((a, b) => (b.d ? b.d.height : 0) - (a.d ? a.d.height : 0))
    .map(({ d, due, ok }) => {
      if (!ok) return h("tr", { "data-verified": "false" }, h("td", { colspan: "5" }, h("em", {}, t("entry_unverified"))));
      const live = d.destroyedHeight === null;
      const late = live && due !== null && due < now;
      const st = h("div", { "aria-live": "polite", class: "attest-status" });
      const attest = async () => {
        if ((await submitting(st, L.attestDestruction(d.id), t("op_attested"))) !== null) await redraw();
      };
      return h(
        "tr",
        { "data-delivery": d.id, "data-verified": "true", "data-state": live ? (late ? "overdue" : "held") : "destroyed" },
        h("td", {}, date(d.timeMs), h("br"), h("span", { class: "muted" }, "#" + number(d.height))),
        h("td", {}, h("code", { translate: "no" }, d.dataset), " ", t("op_version", { v: number(d.version) }), h("br"), h("span", { class: "muted" }, t("op_from", { holder: d.holder, contract: d.contract }))),
        h("td", { class: "num" }, sizeText(d.bytes)),
        h(
          "td",
          {},
          live
            ? h("span", { class: "badge " + (late ? "bad" : "ok") }, late ? t("op_overdue_since", { when: date(due) }) : t("op_due", { when: date(due) }))
            : h("span", { class: "badge ok" }, t("op_destroyed_at", { height: number(d.destroyedHeight) })),
        ),
        h("td", {}, live ? [h("button", { type: "button", class: "secondary attest", id: "attest-" + d.id, onclick: attest }, t("op_attest")), st] : "—"),
      );
    });
  return [
    h("p", { class: "muted" }, t("op_copies_hint")),
    h("table", { id: "op-copies" }, h("thead", {}, h("tr", {}, [t("when_col"), t("op_what"), t("rl_bytes"), t("op_destruction"), t("op_action")].map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows)),
  ];
}

const isResearcher = (p) => p.kind === "user" && p.role === "researcher";

/// The researcher's open pool page, for the router.
export const pages = [{ id: "openpool", nav: "nav_openpool", title: "op_title", may: isResearcher, render: () => openPoolPage() }];
