// The public-health agency's surveillance page: its standing surveillance contracts; for one,
// every window's released counts (each fetched from the window's aggregator and shown only if
// it hashes to the result the proven job record holds), one syndrome × region series at a time
// as a line chart with the expected band of EARS C2 drawn around it, and the alerts the agency
// stated on the ledger (`RecordAlert`, each proven) as red markers and in a table.

import * as L from "./ledger.js";
import * as c from "./codec.js";
import { t, number, list, intlTag } from "./i18n.js";
import { state, h, s as svgEl, show, facts, table, onNewBlocks } from "./ui.js";
import { provenContract, released, statusName } from "./researcher.js";

/// The EARS parameters of `medspace_privacy::aberration::EarsParams::default()`.
const EARS = { baseline: 7, minBaseline: 4, guard: 2, h: 3, minSd: 0.2 };
/// Detectors the ledger accepts (`state::apply::alerts::ALERT_METHODS`), in their order.
const METHODS = ["c1", "c2", "c3", "seasonal", "combined"];
/// Results fetched and verified, by job and result hash: immutable once the ledger holds them.
const verified = new Map();

const DAY_MS = 86400000;
const fixed = (x, d) => (Number.isFinite(Number(x)) ? new Intl.NumberFormat(intlTag(), { minimumFractionDigits: d, maximumFractionDigits: d }).format(Number(x)) : "—");

/// A calendar day (`YYYY-MM-DD`, or ms since the epoch at midnight UTC) in the reader's locale.
export function day(d, style = "medium") {
  const ms = typeof d === "string" ? Date.parse(d + "T00:00:00Z") : Number(d);
  const opts = style === "short" ? { day: "numeric", month: "short", timeZone: "UTC" } : { dateStyle: "medium", timeZone: "UTC" };
  return new Intl.DateTimeFormat(intlTag(), opts).format(new Date(ms));
}

/// The first day of window `w` of a definition (ms, midnight UTC).
export function windowStart(spec, w) {
  return Date.parse(spec.start + "T00:00:00Z") + w * spec.window_days * DAY_MS;
}

/// A syndrome's name in words where the console knows it (the generator's four), else as the
/// definition names it.
export function syndromeName(name) {
  const k = "hs_syn_" + name;
  const said = t(k);
  return said === k ? name : said;
}

export const methodName = (m) => (METHODS.includes(m) ? t("hs_m_" + m) : m);

/// The surveillance definition a contract approved, or `null`.
export function surveillanceOf(rec) {
  try {
    const spec = JSON.parse(rec.computation);
    const s = spec && spec.aggregate && spec.aggregate.surveillance;
    return s && Array.isArray(s.syndromes) && Array.isArray(s.regions) ? s : null;
  } catch {
    return null;
  }
}

/// The jobs of a contract, every one proven against a certified header.
export async function provenJobs(id) {
  const a = await state.client.anchored(`/v1/contracts/${id}/jobs`);
  const jobs = [];
  for (const p of a.body.jobs || []) {
    const chk = await L.checkProven(a.root, p);
    if (!chk.ok) throw new L.Verification("job fails its proof");
    const j = L.decodeJob(chk.value);
    if (j.contract !== id) throw new L.Verification("a job of another contract");
    jobs.push(j);
  }
  return jobs;
}

/// The alerts stated under contract `id`, every one proven against a certified header and
/// found under the key its own fields give (`records::keys::alert`); with the header's height.
export async function provenAlerts(id) {
  const a = await state.client.anchored(`/v1/contracts/${id}/alerts`);
  const alerts = [];
  for (const p of a.body.alerts || []) {
    const chk = await L.checkProven(a.root, p);
    if (!chk.ok) throw new L.Verification("alert fails its proof");
    const al = L.decodeAlert(chk.value);
    const key = c.concat(c.u8(0x14), c.u64(BigInt("0x" + id.slice(2))), c.u32(al.window), c.text(al.syndrome), c.text(al.region), c.text(al.method));
    if (al.contract !== id || !c.equal(key, chk.key)) throw new L.Verification("an alert under another key");
    alerts.push(al);
  }
  return { alerts, height: a.body.height };
}

/// Every window's released counts: `results[w]` is the verified result document of window
/// `w`'s job, an error (fetch or verification failed), or absent (no result yet). Fetched a
/// few at a time through this node's relay; each checked against the hash of its proven job.
async function windowResults(jobs, onProgress) {
  const todo = jobs.filter((j) => j.window !== null && j.result);
  const results = [];
  let done = 0;
  const one = async (j) => {
    const key = j.id + ":" + j.result.hash;
    let r = verified.get(key);
    if (!r) {
      try {
        r = await released(j);
        verified.set(key, r);
      } catch (e) {
        r = e;
      }
    }
    results[j.window] = r;
    onProgress(++done, todo.length);
  };
  const queue = todo.slice();
  await Promise.all(
    Array.from({ length: Math.min(4, queue.length) }, async () => {
      while (queue.length) await one(queue.shift());
    }),
  );
  return results;
}

/// The series of syndrome `si` in region `ri`: per window `{v, withheld}` or `null` (no
/// result). A total withheld below `k` counts as `(k − 1) / 2`, the middle of what it can be —
/// as `client::health::Series::totals` does, so the band here is the one the agency's detector
/// saw.
export function seriesOf(spec, results, si, ri) {
  const at = si * spec.regions.length + ri;
  const out = [];
  for (let w = 0; w < spec.windows; w++) {
    const doc = results[w];
    const sv = doc && !(doc instanceof Error) ? doc.surveillance : null;
    if (!sv) {
      out.push(null);
      continue;
    }
    const v = sv.totals[at];
    out.push(v === null || v === undefined ? { v: Math.max(0, Number(doc.k) - 1) / 2, withheld: true } : { v: Number(v), withheld: false });
  }
  return out;
}

/// The expected band of EARS C2 for each day of `values` (numbers, `null` where missing): the
/// mean of the 7-day baseline that ends 2 days before the day (the guard band), up to the mean
/// plus 3 sample standard deviations (n − 1, floored at 0.2), where the baseline has at least
/// 4 present days — the rule of `medspace_privacy::aberration` (`Method::C2` with
/// `EarsParams::default()`), whose `expected` and `threshold` these are. `null` where C2 has
/// no point (a missing day, or too short a baseline).
export function c2Band(values) {
  return values.map((x, t0) => {
    const end = t0 - EARS.guard;
    const begin = end - EARS.baseline;
    if (x === null || begin < 0) return null;
    const base = values.slice(begin, end).filter((v) => v !== null);
    if (base.length < EARS.minBaseline) return null;
    const mean = base.reduce((a, v) => a + v, 0) / base.length;
    const ss = base.reduce((a, v) => a + (v - mean) * (v - mean), 0);
    const sd = Math.max(Math.sqrt(ss / (base.length - 1)), EARS.minSd);
    return { expected: mean, threshold: mean + EARS.h * sd };
  });
}

/// Round axis ticks from 0 to about `hi`.
function yTicks(hi) {
  const raw = Math.max(1, hi) / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((x) => x * mag).find((x) => x >= raw);
  const out = [];
  for (let v = 0; v <= hi + 1e-9; v += step) out.push(v);
  if (out[out.length - 1] < hi) out.push(out[out.length - 1] + step);
  return out;
}

/// The series as a line chart: released counts per window (withheld ones as open circles at
/// the middle of `[0, k)`), the C2 expected band and expected line, and the ledger's alerts of
/// this series as red markers (one per window, naming its detectors).
export function seriesChart(spec, series, band, alerts, k, title) {
  const w = 760;
  const left = 56;
  const right = 18;
  const top = 14;
  const plotH = 260;
  const n = Math.max(2, series.length);
  const values = series.filter(Boolean).map((p) => p.v);
  const hi = Math.max(1, ...values, ...band.filter(Boolean).map((b) => b.threshold));
  const yt = yTicks(hi * 1.05);
  const yMax = yt[yt.length - 1];
  const x = (i) => left + ((w - left - right) * i) / (n - 1);
  const y = (v) => top + plotH * (1 - Math.max(0, v) / yMax);
  const legendY = top + plotH + 74;
  const height = legendY + 16;
  const descId = "hs-desc-" + Math.random().toString(36).slice(2, 8);
  const svg = svgEl(
    "svg",
    { viewBox: `0 0 ${w} ${height}`, role: "img", "aria-label": title, "aria-describedby": descId, class: "chart series", id: "hs-chart" },
    svgEl("title", {}, title),
    svgEl("desc", { id: descId }, t("hs_chart_desc")),
  );
  for (const v of yt) svg.append(svgEl("line", { x1: left, x2: w - right, y1: y(v), y2: y(v), class: "grid" }), svgEl("text", { x: left - 8, y: y(v) + 5, "text-anchor": "end", class: "tick" }, number(v)));
  // Without noise, totals below k are withheld: the zone where they lie.
  if (k > 0 && series.some((p) => p && p.withheld)) svg.append(svgEl("rect", { x: left, y: y(k), width: w - left - right, height: y(0) - y(k), class: "below-k" }));
  // Ticks on the first day of each week of windows (or fewer, for long series).
  const every = Math.max(1, Math.ceil(series.length / 8 / 7) * 7);
  for (let i = 0; i < series.length; i += every) {
    svg.append(
      svgEl("line", { x1: x(i), x2: x(i), y1: top + plotH, y2: top + plotH + 5, class: "axis" }),
      svgEl("text", { x: x(i), y: top + plotH + 22, "text-anchor": "middle", class: "tick" }, day(windowStart(spec, i), "short")),
    );
  }
  svg.append(
    svgEl("line", { x1: left, x2: w - right, y1: top + plotH, y2: top + plotH, class: "axis" }),
    svgEl("line", { x1: left, x2: left, y1: top, y2: top + plotH, class: "axis" }),
    svgEl("text", { x: (left + w - right) / 2, y: top + plotH + 44, "text-anchor": "middle", class: "axis-label" }, t(spec.window_days === 1 ? "hs_axis_x_day" : "hs_axis_x", { days: number(spec.window_days) })),
    svgEl("text", { x: 14, y: top + plotH / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${top + plotH / 2})`, class: "axis-label" }, t("hs_axis_y")),
  );
  // Runs of consecutive days that have a value (resp. a band): lines break at gaps.
  const runs = (ok) => {
    const out = [];
    let cur = [];
    for (let i = 0; i < series.length; i++) {
      if (ok(i)) cur.push(i);
      else if (cur.length) (out.push(cur), (cur = []));
    }
    if (cur.length) out.push(cur);
    return out;
  };
  for (const r of runs((i) => band[i] !== null)) {
    const up = r.map((i) => `${x(i).toFixed(1)},${y(band[i].threshold).toFixed(1)}`);
    const low = r.map((i) => `${x(i).toFixed(1)},${y(band[i].expected).toFixed(1)}`).reverse();
    svg.append(
      svgEl("polygon", { points: [...up, ...low].join(" "), class: "expected-band" }),
      svgEl("polyline", { points: low.slice().reverse().join(" "), class: "expected" }),
    );
  }
  // Released counts as a solid line; a step to or from a withheld total (drawn at the middle
  // of [0, k), not a count anyone saw) dotted.
  for (let i = 1; i < series.length; i++) {
    const [a, b] = [series[i - 1], series[i]];
    if (!a || !b) continue;
    svg.append(svgEl("line", { x1: x(i - 1), y1: y(a.v), x2: x(i), y2: y(b.v), class: a.withheld || b.withheld ? "observed guess" : "observed" }));
  }
  series.forEach((p, i) => {
    if (p && p.withheld) svg.append(svgEl("circle", { cx: x(i), cy: y(p.v), r: 2.5, class: "withheld" }, svgEl("title", {}, t("hs_withheld_point", { day: day(windowStart(spec, i)) }))));
    else if (p && series.length <= 120) svg.append(svgEl("circle", { cx: x(i), cy: y(p.v), r: 2.5, class: "released" }, svgEl("title", {}, t("hs_point", { day: day(windowStart(spec, i)), n: number(p.v) }))));
  });
  // One marker per window with alerts, naming every detector that stated one.
  const byWindow = new Map();
  for (const a of alerts) byWindow.set(a.window, [...(byWindow.get(a.window) || []), a]);
  for (const [win, as] of [...byWindow].sort((p, q) => p[0] - q[0])) {
    const p = series[win];
    const v = p ? p.v : Number(as[0].observed);
    const label = t("hs_marker", { day: day(windowStart(spec, win)), n: number(as[0].observed), who: list(as.map((a) => methodName(a.method))) });
    svg.append(
      svgEl("line", { x1: x(win), x2: x(win), y1: top, y2: top + plotH, class: "alert-line" }),
      svgEl("circle", { cx: x(win), cy: y(v), r: 6, class: "alert marker", "data-window": String(win) }, svgEl("title", {}, label)),
    );
  }
  // The legend, under the axis.
  const items = [
    ["observed", t("hs_legend_observed")],
    ["band", t("hs_legend_band")],
    ["alert", t("hs_legend_alert")],
    ["withheld", t("hs_legend_withheld", { k: number(k) })],
  ].filter(([kind]) => kind !== "withheld" || series.some((p) => p && p.withheld));
  const widths = items.map(([, s]) => 40 + [...s].reduce((a, ch) => a + (ch.charCodeAt(0) > 0x2e80 ? 14 : 7.4), 0));
  const scale = Math.min(1, (w - left) / widths.reduce((a, b) => a + b + 16, 0));
  let lx = left;
  for (const [i, [kind, s]] of items.entries()) {
    const mark =
      kind === "observed"
        ? svgEl("line", { x1: lx, x2: lx + 26, y1: legendY - 5, y2: legendY - 5, class: "observed" })
        : kind === "band"
          ? svgEl("rect", { x: lx, y: legendY - 12, width: 26, height: 12, class: "expected-band" })
          : kind === "withheld"
            ? svgEl("g", {}, svgEl("rect", { x: lx, y: legendY - 12, width: 26, height: 12, class: "below-k" }), svgEl("circle", { cx: lx + 13, cy: legendY - 6, r: 2.5, class: "withheld" }))
            : svgEl("circle", { cx: lx + 13, cy: legendY - 5, r: 6, class: kind });
    svg.append(mark, svgEl("text", { x: lx + 32, y: legendY, class: "lab legend" }, s));
    lx += (widths[i] + 16) * scale;
  }
  return svg;
}

// ---------------------------------------------------------------- the pages

const isAgencyResearcher = (p) => p.kind === "user" && p.role === "researcher" && p.memberKind === "public_health_agency";

/// The signed-in user's surveillance contracts, each proven, with its jobs and alerts.
async function mySurveillance() {
  const all = (await state.client.get("/v1/contracts")).contracts || [];
  const out = [];
  for (const x of all.filter((x) => x.requester === state.principal.id && x.purpose === "public_health").reverse()) {
    const { rec } = await provenContract(x.id);
    const spec = surveillanceOf(rec);
    if (!spec) continue;
    const [jobs, { alerts }] = await Promise.all([provenJobs(x.id), provenAlerts(x.id)]);
    out.push({ rec, spec, jobs, alerts });
  }
  return out;
}

/// The latest alert in words: its day, syndrome and region ("—" without one).
function latestAlert(spec, alerts) {
  const a = alerts.reduce((x, y) => (!x || y.window > x.window ? y : x), null);
  return a ? t("hs_latest", { day: day(windowStart(spec, a.window)), syndrome: syndromeName(a.syndrome), region: a.region }) : "—";
}

async function listPage() {
  const mine = await mySurveillance();
  const rows = mine.map(({ rec, spec, jobs, alerts }) =>
    h(
      "tr",
      { "data-contract": rec.id },
      [
        h("a", { href: "#/health?contract=" + rec.id }, rec.id),
        statusName(rec.status),
        [list(spec.syndromes.map((s) => syndromeName(s.name))), h("br"), h("span", { class: "muted" }, t("hs_regions_n", { n: number(spec.regions.length) }))],
        t("hs_windows_of", { n: number(jobs.filter((j) => j.result).length), total: number(spec.windows) }),
        h("span", { class: alerts.length ? "badge bad" : "" }, number(alerts.length)),
        latestAlert(spec, alerts),
      ].map((v, i) => h("td", { class: i === 3 || i === 4 ? "num" : null }, v)),
    ),
  );
  show(
    h("h1", {}, t("hs_title")),
    h("p", { class: "lead" }, t("hs_intro")),
    rows.length
      ? h("div", { class: "scroll" }, table([t("col_contract"), t("col_status"), t("hs_col_syndromes"), t("hs_col_windows"), t("hs_col_alerts"), t("hs_col_latest")], rows, { id: "hs-contracts" }))
      : h("p", { id: "empty" }, t("hs_none")),
  );
}

/// The suppression threshold of the released windows (0 before any).
const kOf = (results) => {
  const r = results.find((x) => x && !(x instanceof Error));
  return r ? Number(r.k) : 0;
};

/// The series with the most alerts (the first, in the definition's order, on a tie).
function busiest(spec, alerts) {
  let best = [0, 0, -1];
  spec.syndromes.forEach((s, si) =>
    spec.regions.forEach((r, ri) => {
      const n = alerts.filter((a) => a.syndrome === s.name && a.region === r).length;
      if (n > best[2]) best = [si, ri, n];
    }),
  );
  return best;
}

async function contractPage(id, q) {
  const { rec } = await provenContract(id);
  const spec = surveillanceOf(rec);
  if (!spec) {
    show(h("h1", {}, t("hs_contract_title", { id })), h("div", { class: "notice", role: "alert", id: "not-surveillance" }, t("hs_not_surveillance")), h("p", {}, h("a", { href: "#/health" }, t("hs_back"))));
    return;
  }
  const progress = h("p", { "aria-live": "polite", id: "hs-progress" });
  show(h("h1", {}, t("hs_contract_title", { id })), h("p", {}, h("a", { href: "#/health" }, t("hs_back"))), progress);
  let jobs = await provenJobs(id);
  let { alerts, height } = await provenAlerts(id);
  let results = await windowResults(jobs, (d, n) => progress.replaceChildren(t("hs_fetching", { d: number(d), n: number(n) })));

  // The selection: from the address, else the series with the most alerts.
  const [si0, ri0] = busiest(spec, alerts);
  const pick = (v, names, dflt) => Math.max(0, names.includes(v) ? names.indexOf(v) : dflt);
  let si = pick(q.get("syndrome"), spec.syndromes.map((s) => s.name), si0);
  let ri = pick(q.get("region"), spec.regions, ri0);

  const synSel = h("select", { id: "hs-syndrome" });
  const regSel = h("select", { id: "hs-region" });
  const chartBox = h("div", { id: "hs-series" });
  const head = h("div", { id: "hs-head" });
  const alertBox = h("section", { id: "hs-alerts", "aria-labelledby": "hs-alerts-h" });

  const countOf = (s, r) => alerts.filter((a) => a.syndrome === s && a.region === r).length;
  const fillSelectors = () => {
    const syn = spec.syndromes[si].name;
    synSel.replaceChildren(
      ...spec.syndromes.map((s, i) => {
        const n = alerts.filter((a) => a.syndrome === s.name).length;
        return h("option", { value: s.name, selected: i === si }, n ? t("hs_option_alerts", { name: syndromeName(s.name), n: number(n) }) : syndromeName(s.name));
      }),
    );
    regSel.replaceChildren(
      ...spec.regions.map((r, i) => {
        const n = countOf(syn, r);
        return h("option", { value: r, selected: i === ri }, n ? t("hs_option_alerts", { name: r, n: number(n) }) : r);
      }),
    );
  };

  const renderHead = () => {
    const docs = results.filter((r) => r && !(r instanceof Error));
    const released = docs.filter((r) => r.surveillance).length;
    const nothing = docs.filter((r) => !r.surveillance);
    const failed = results.filter((r) => r instanceof Error);
    const k = results.find((r) => r && !(r instanceof Error));
    const latest = alerts.reduce((a, b) => (!a || b.window > a.window ? b : a), null);
    const series = new Set(alerts.map((a) => a.syndrome + "|" + a.region));
    const end = windowStart(spec, spec.windows) - DAY_MS;
    head.replaceChildren(
      h(
        "p",
        { class: "lead answer", id: "hs-answer", "data-alerts": String(alerts.length) },
        alerts.length
          ? t("hs_answer_alerts", { n: number(alerts.length), series: number(series.size), day: day(windowStart(spec, latest.window)), syndrome: syndromeName(latest.syndrome), region: latest.region })
          : t("hs_answer_none", { n: number(released) }),
      ),
      facts([
        [t("col_status"), statusName(rec.status)],
        [t("hs_syndromes"), h("ul", { class: "plain" }, spec.syndromes.map((s) => h("li", {}, syndromeName(s.name), " ", h("span", { class: "muted", translate: "no" }, "(" + s.codes.join(", ") + ")"))))],
        [t("hs_col_regions"), h("details", {}, h("summary", {}, t("hs_regions_n", { n: number(spec.regions.length) })), h("span", { translate: "no" }, spec.regions.join(", ")))],
        [t("hs_period"), t("hs_period_is", { from: day(spec.start), to: day(end), n: number(spec.windows), days: number(spec.window_days) })],
        [
          t("hs_col_windows"),
          h(
            "span",
            { id: "hs-released", "data-released": String(released), "data-nothing": String(nothing.length) },
            t("hs_windows_of", { n: number(released), total: number(spec.windows) }),
            nothing.length ? [" ", h("span", { class: "muted" }, t("hs_released_nothing", { n: number(nothing.length) }), " ", h("q", { translate: "no" }, nothing[0].failure || ""))] : "",
          ),
        ],
        [t("hs_protection"), spec.dp ? t("hs_protect_dp", { eps: spec.epsilon_per_window }) : t("hs_protect_exact", { k: number(k ? k.k : 0), mid: fixed(k ? Math.max(0, k.k - 1) / 2 : 0, 1) })],
      ]),
      failed.length ? h("div", { class: "notice", role: "alert" }, t("hs_failed", { n: number(failed.length) }), " ", failed[0] instanceof L.Verification ? t("verification_failed") : "") : "",
    );
  };

  const renderSeries = () => {
    const s = spec.syndromes[si];
    const r = spec.regions[ri];
    const series = seriesOf(spec, results, si, ri);
    const band = c2Band(series.map((p) => (p ? p.v : null)));
    const mine = alerts.filter((a) => a.syndrome === s.name && a.region === r);
    const title = t("hs_chart_title", { syndrome: syndromeName(s.name), region: r });
    const rows = series.map((p, i) => {
      const b = band[i];
      const at = mine.filter((a) => a.window === i);
      return h(
        "tr",
        {
          "data-window": String(i),
          class: at.length ? "alerting" : null,
          // The figures unformatted, for tests and for copying.
          "data-observed": p === null ? "" : String(p.v),
          "data-withheld": p !== null && p.withheld ? "true" : null,
          "data-expected": b ? String(b.expected) : "",
          "data-threshold": b ? String(b.threshold) : "",
        },
        [
          day(windowStart(spec, i)),
          p === null ? (results[i] && !(results[i] instanceof Error) ? t("hs_nothing") : t("hs_no_result")) : p.withheld ? t("hs_withheld", { v: fixed(p.v, 1) }) : number(p.v),
          b ? fixed(b.expected, 2) : "—",
          b ? fixed(b.threshold, 2) : "—",
          at.length ? list(at.map((a) => methodName(a.method))) : "",
        ].map((v, j) => h("td", { class: j && j < 4 ? "num" : null, "data-col": ["day", "observed", "expected", "threshold", "alerts"][j] }, v)),
      );
    });
    const scroller = h("div", { class: "scroll" }, seriesChart(spec, series, band, mine, kOf(results), title));
    chartBox.replaceChildren(
      h("h2", { id: "hs-series-h", "data-syndrome": s.name, "data-region": r, "data-alerts": String(mine.length) }, title),
      h("p", { class: "muted" }, t("hs_band_hint")),
      scroller,
      h("details", {}, h("summary", {}, t("hs_table")), h("div", { class: "scroll" }, table([t("hs_col_day"), t("hs_col_observed"), t("hs_col_expected"), t("hs_col_threshold"), t("hs_col_alerts")], rows, { id: "hs-points" }))),
    );
    for (const tr of alertBox.querySelectorAll("tr[data-syndrome]")) tr.classList.toggle("current", tr.dataset.syndrome === s.name && tr.dataset.region === r);
    // Where the chart is wider than the screen (a phone), the latest windows show first.
    requestAnimationFrame(() => (scroller.scrollLeft = scroller.scrollWidth));
  };

  const select = (nsi, nri) => {
    si = nsi;
    ri = nri;
    const u = new URLSearchParams({ contract: id, syndrome: spec.syndromes[si].name, region: spec.regions[ri] });
    history.replaceState(null, "", "#/health?" + u.toString());
    fillSelectors();
    renderSeries();
  };
  synSel.addEventListener("change", () => {
    const nsi = synSel.selectedIndex;
    // The region with the most alerts of that syndrome, else the same region.
    const counts = spec.regions.map((r) => countOf(spec.syndromes[nsi].name, r));
    const most = Math.max(...counts);
    select(nsi, most > 0 ? counts.indexOf(most) : ri);
  });
  regSel.addEventListener("change", () => select(si, regSel.selectedIndex));

  const renderAlerts = () => {
    const rows = alerts
      .slice()
      .sort((a, b) => b.window - a.window || (a.syndrome < b.syndrome ? -1 : 1) || (a.region < b.region ? -1 : 1) || METHODS.indexOf(a.method) - METHODS.indexOf(b.method))
      .map((a) =>
        h(
          "tr",
          { "data-window": String(a.window), "data-syndrome": a.syndrome, "data-region": a.region, "data-method": a.method },
          [
            day(windowStart(spec, a.window)),
            h("button", { type: "button", class: "link", onclick: () => select(Math.max(0, spec.syndromes.findIndex((s) => s.name === a.syndrome)), Math.max(0, spec.regions.indexOf(a.region))) }, syndromeName(a.syndrome)),
            h("span", { translate: "no" }, a.region),
            methodName(a.method),
            number(a.observed),
            fixed(Number(a.expectedMilli) / 1000, 1),
            fixed(Number(a.scoreMilli) / 1000, 2),
            "#" + number(a.height),
          ].map((v, j) => h("td", { class: j >= 4 ? "num" : null }, v)),
        ),
      );
    alertBox.replaceChildren(
      h("h2", { id: "hs-alerts-h" }, t("hs_alerts_title")),
      h("p", { class: "muted" }, alerts.length ? t("hs_alerts_proven", { height: number(height) }) : t("hs_alerts_none")),
      rows.length
        ? h("div", { class: "scroll" }, table([t("hs_col_day"), t("hs_col_syndrome"), t("hs_col_region"), t("hs_col_detector"), t("hs_col_observed"), t("hs_col_expected"), t("hs_col_score"), t("hs_col_height")], rows, { id: "hs-alert-table" }))
        : "",
    );
  };

  progress.replaceChildren();
  show(
    h("h1", {}, t("hs_contract_title", { id })),
    h("p", {}, h("a", { href: "#/health" }, t("hs_back"))),
    head,
    h("section", { class: "panel", "aria-label": t("hs_choose") }, h("div", { class: "row" }, h("span", {}, h("label", { for: "hs-syndrome" }, t("hs_col_syndrome")), synSel), h("span", {}, h("label", { for: "hs-region" }, t("hs_col_region")), regSel))),
    chartBox,
    alertBox,
    h("details", {}, h("summary", {}, t("preview_spec")), h("pre", {}, rec.computation), h("p", { class: "muted" }, t("computation_hash", { hash: rec.computationHash }))),
  );
  fillSelectors();
  renderHead();
  renderAlerts();
  renderSeries();

  // Live: a new window's result or a new alert is shown at the next block, without a reload.
  let last = JSON.stringify([jobs.map((j) => [j.id, !!j.result]), alerts.length]);
  onNewBlocks(async () => {
    try {
      const nj = await provenJobs(id);
      const na = await provenAlerts(id);
      const key = JSON.stringify([nj.map((j) => [j.id, !!j.result]), na.alerts.length]);
      if (key === last) return;
      last = key;
      jobs = nj;
      ({ alerts, height } = na);
      results = await windowResults(jobs, () => {});
      fillSelectors();
      renderHead();
      renderAlerts();
      renderSeries();
    } catch {
      /* the next block tries again */
    }
  });
}

async function healthPage(q) {
  const id = q.get("contract");
  if (id) return contractPage(id, q);
  return listPage();
}

/// The agency's page, for the router: a researcher of a public-health agency.
export const pages = [{ id: "health", nav: "nav_health", title: "hs_title", may: isAgencyResearcher, render: (q) => healthPage(q) }];
