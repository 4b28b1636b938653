// What every page shares: the session's state, elements, refusals in words, the chrome (nav,
// language, genesis) and small charts drawn as inline SVG.

import * as L from "./ledger.js";
import { t, getLocale, LOCALES, number, list } from "./i18n.js";

/// The tab's state: the pinned genesis, this node's member, the signed-in key and who it is.
export const state = { genesis: null, member: null, session: null, client: null, pinned: null, principal: null };

/// An element: `h("p", {class: "x"}, "text", child)`; attributes starting with `on` are handlers.
export function h(tag, attrs = {}, ...kids) {
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

/// An SVG element (charts are drawn here, no library).
export function s(tag, attrs = {}, ...kids) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const k of kids.flat()) if (k !== null && k !== undefined) el.append(k instanceof Node ? k : String(k));
  return el;
}

export const main = () => document.getElementById("main");

export function show(...nodes) {
  main().replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined));
}

/// A refusal or failure in words, never a raw status.
export function explain(e) {
  if (e instanceof L.Refused) {
    if (e.what === "tx") return t("refused_tx", { reason: reasonInWords(e.reason) });
    if (e.status === 403 && state.notRegistered) return t("not_registered");
    if (e.status === 403 && state.principal && state.principal.kind !== "patient") return t("refused_403_staff");
    const k = { 401: "refused_401", 403: "refused_403", 404: "refused_404", 429: "refused_429" }[e.status];
    return t(k || "refused_other");
  }
  if (e instanceof L.Verification) return t("verification_failed");
  if (e instanceof L.Stalled) {
    const s = e.health;
    return t("tx_stalled", { who: list(s.unreachable || []), n: s.reachable, total: (s.validators || []).length, needed: s.needed });
  }
  const words = { "claim-malformed": "rb_claim_malformed", "claim-other-hospital": "rb_claim_other", "pseudonym-malformed": "rb_pseudonym_malformed" };
  if (e && words[e.message]) return t(words[e.message]);
  if (e && (e.message === "wallet-malformed" || e.message === "wallet-mismatch")) {
    return t(e.message === "wallet-malformed" ? "wallet_malformed" : "wallet_mismatch");
  }
  return t("refused_other");
}

/// The ledger's reason (English, from the Rust rules) said in the reader's language where the
/// console knows it; else quoted as it is.
export function reasonInWords(reason) {
  const r = String(reason || "");
  const known = [
    [/already approved|already decided/i, "why_already"],
    [/forbidden|not authorized|unauthorized|may not|not allowed|role/i, "why_role"],
    [/reason/i, "why_reason"],
    [/budget|epsilon/i, "why_budget"],
    [/not active|not pending|expired|status/i, "why_status"],
    [/nonce/i, "why_nonce"],
  ];
  for (const [re, k] of known) if (re.test(r)) return r ? `${t(k)} (${r})` : t(k);
  return r || t("refused_other");
}

export function notice(e) {
  return h("div", { class: "notice", role: "alert" }, explain(e));
}

export function done(text) {
  return h("div", { class: "done", role: "status" }, text);
}

/// A definition list from `[label, value]` pairs.
export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/// A table: column headers, then rows of cells.
export function table(cols, rows, attrs = {}) {
  return h("table", attrs, h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows.map((r) => (r instanceof Node ? r : h("tr", {}, r.map((x) => h("td", {}, x)))))));
}

/// A horizontal bar chart of `[label, value, note]` (value `null`: drawn empty, `note` said).
export function bars(items, title, opts = {}) {
  const w = 560;
  // Room for the longest label (14 px text, about 8 px a character).
  const left = opts.left || Math.min(300, 20 + 8.2 * Math.max(4, ...items.map(([l]) => [...String(l)].length)));
  const bh = 24;
  const gap = 8;
  const top = 8;
  const max = Math.max(1, ...items.map(([, v]) => (v === null ? 0 : Number(v))));
  const height = top + items.length * (bh + gap) + 4;
  const svg = s("svg", { viewBox: `0 0 ${w} ${height}`, role: "img", "aria-label": title, class: "chart" }, s("title", {}, title));
  items.forEach(([label, v, note], i) => {
    const y = top + i * (bh + gap);
    const len = v === null ? 0 : Math.max(1, ((w - left - 90) * Number(v)) / max);
    svg.append(
      s("text", { x: left - 8, y: y + bh * 0.7, "text-anchor": "end", class: "lab", translate: opts.labelsAreData ? "no" : null }, label),
      s("rect", { x: left, y, width: len, height: bh, class: v === null ? "bar empty" : "bar" }),
      s("text", { x: left + len + 6, y: y + bh * 0.7, class: "val" }, v === null ? note || "" : opts.fmt ? opts.fmt(v) : number(v)),
    );
  });
  return svg;
}

/// The header, navigation and genesis line: `nav` is `[[page, label key]]` for this principal.
export function chrome(page, nav, titleKey) {
  document.documentElement.lang = getLocale() === "zh" ? "zh-CN" : "en";
  document.title = t(titleKey || "app_title");
  document.getElementById("skip").textContent = t("skip");
  document.getElementById("brand").textContent = t(titleKey || "app_title");
  document.getElementById("locale-label").textContent = t("language");
  const sel = document.getElementById("locale");
  sel.replaceChildren(...Object.entries(LOCALES).map(([k, v]) => h("option", { value: k, selected: k === getLocale(), lang: k === "zh" ? "zh-CN" : "en" }, v)));
  const out = document.getElementById("signout");
  out.textContent = t("sign_out");
  out.hidden = !state.session;
  const navEl = document.getElementById("nav");
  navEl.setAttribute("aria-label", t("nav_label"));
  navEl.replaceChildren(
    state.session && state.pinned !== false && nav.length
      ? h("ul", {}, nav.map(([p, k]) => h("li", {}, h("a", { href: p.endsWith(".html") ? p : "#/" + p, "aria-current": p === page ? "page" : null }, t(k)))))
      : "",
  );
  const g = document.getElementById("genesis");
  g.className = state.pinned === false ? "bad" : "";
  g.textContent =
    state.pinned === true
      ? t("genesis_ok", { hash: state.genesisHash.slice(0, 16) })
      : state.pinned === false
        ? t("genesis_bad")
        : t("genesis_unpinned", { hash: state.genesisHash || "" });
}

/// A signed transaction from a form: `status` shows the wait, then the ledger's answer in words.
export async function submitting(status, payload, okText) {
  status.replaceChildren(h("p", {}, t("saving")));
  try {
    const id = await state.client.submit(payload);
    status.replaceChildren(done(okText || t("saved")));
    return id;
  } catch (e) {
    status.replaceChildren(notice(e));
    return null;
  }
}

/// Calls `f` whenever a new block is final (long-polls the next header), until the page changes.
export function onNewBlocks(f) {
  const token = (state.pollToken = (state.pollToken || 0) + 1);
  (async () => {
    let height = null;
    while (state.pollToken === token) {
      try {
        if (height === null) height = (await state.client.get("/v1/status")).height;
        await state.client.get(`/v1/blocks/${height + 1}/header?wait_ms=5000`, true);
        height += 1;
        if (state.pollToken !== token) return;
        await f(height);
      } catch {
        await new Promise((r) => setTimeout(r, 1000));
        height = null;
      }
    }
  })();
}

export function stopPolling() {
  state.pollToken = (state.pollToken || 0) + 1;
}
