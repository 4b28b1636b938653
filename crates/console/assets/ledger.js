// The patient's light client in the browser: the key (non-extractable WebCrypto Ed25519),
// signed requests exactly as medspace-api's auth::Request signs them, the genesis pinned by
// its hash, finality certificates of simplex (ed25519 scheme) checked against the genesis
// validators, inclusion proofs of the state trie, and transactions encoded and signed here.
// Nothing the node says about the ledger is taken without a proof.

import * as c from "./codec.js";

const API_NAMESPACE = c.utf8("medspace/api/v2");
const TX_NAMESPACE = c.utf8("medspace/tx/v1");
const TX_VERSION = 1;
const PKCS8_ED25519 = c.unhex("302e020100300506032b657004220420");

export const PURPOSES = [
  null,
  "treatment",
  "patient_access",
  "research",
  "teaching",
  "insurance_claim",
  "public_health",
  "drug_safety",
  "quality_management",
];
const CONSENT_STATES = [null, "allow", "deny", "revoked"];

/// commonware's namespaced message: varint(len(namespace)) || namespace || message.
export function unionUnique(namespace, msg) {
  return c.concat(c.varint(namespace.length), namespace, msg);
}

// ---------------------------------------------------------------- genesis

/// The genesis file served by the node, accepted only if its SHA-256 is `pinned` (from the
/// console's address). Returns the parsed genesis and its hash.
export async function loadGenesis(pinned) {
  const r = await fetch("/console/genesis.json", { cache: "no-store" });
  if (!r.ok) throw new Error("genesis-unavailable");
  const bytes = new Uint8Array(await r.arrayBuffer());
  const hash = c.hex(await c.sha256(bytes));
  const genesis = JSON.parse(new TextDecoder().decode(bytes));
  return { genesis, hash, pinnedOk: pinned ? pinned.toLowerCase() === hash : null };
}

// ---------------------------------------------------------------- the key

const DB = "medspace-console";

function idb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore("keys");
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function idbDo(mode, f) {
  const db = await idb();
  return new Promise((resolve, reject) => {
    const tx = db.transaction("keys", mode);
    const req = f(tx.objectStore("keys"));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error);
  });
}

/// The signed-in identity: a non-extractable private key and the public key (hex).
export async function loadSession() {
  return (await idbDo("readonly", (s) => s.get("session"))) || null;
}

export async function signOut() {
  await idbDo("readwrite", (s) => s.delete("session"));
}

/// Imports a wallet file's text (`{"secret": hex, "patient": "pt-…"}` as medspace-patient
/// writes it). The seed is imported as a non-extractable key; the public key is derived once
/// through a transient extractable copy that is dropped at once.
export async function importWallet(text) {
  let w;
  try {
    w = JSON.parse(text);
  } catch {
    throw new Error("wallet-malformed");
  }
  if (typeof w.secret !== "string" || !/^[0-9a-fA-F]{64}$/.test(w.secret)) {
    throw new Error("wallet-malformed");
  }
  const pkcs8 = c.concat(PKCS8_ED25519, c.unhex(w.secret));
  const transient = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, [
    "sign",
  ]);
  const jwk = await crypto.subtle.exportKey("jwk", transient);
  const pub = b64url(jwk.x);
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, false, ["sign"]);
  pkcs8.fill(0);
  const patient = "pt-" + c.hex(await c.sha256(c.utf8("medspace/patient/v1"), pub));
  if (w.patient && w.patient !== patient) throw new Error("wallet-mismatch");
  const session = { key, public: c.hex(pub), patient };
  await idbDo("readwrite", (s) => s.put(session, "session"));
  return session;
}

/// A new patient wallet made in the browser: the key is generated non-extractable except for
/// the one export the wallet file needs, which is handed to the person to save.
export async function newWallet() {
  const { secret, pub } = await freshKey();
  const patient = "pt-" + c.hex(await c.sha256(c.utf8("medspace/patient/v1"), pub));
  return JSON.stringify({ secret, patient, links: [] }, null, 2);
}

/// A new Ed25519 key made in the browser: the pair, its seed in hex (the one export a key file
/// needs) and its public key.
async function freshKey() {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const pk = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const secret = c.hex(pk.subarray(PKCS8_ED25519.length));
  pk.fill(0);
  const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return { pair, secret, pub };
}

function b64url(s) {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(b, (ch) => ch.charCodeAt(0));
}

async function sign(session, namespace, msg) {
  return new Uint8Array(
    await crypto.subtle.sign({ name: "Ed25519" }, session.key, unionUnique(namespace, msg)),
  );
}

// ---------------------------------------------------------------- signed requests

/// The message of medspace-api's `Request::message`.
export async function requestMessage(method, pathAndQuery, audience, tsMs, nonce, body) {
  const bodyHash = c.hex(await c.sha256(body));
  return c.utf8(
    `medspace-request-v2\n${method}\n${pathAndQuery}\n${audience}\n${tsMs}\n${c.hex(nonce)}\n${bodyHash}`,
  );
}

export async function authorization(session, method, pathAndQuery, audience, body) {
  const ts = Date.now();
  const nonce = crypto.getRandomValues(new Uint8Array(16));
  const msg = await requestMessage(method, pathAndQuery, audience, ts, nonce, body);
  const sig = await sign(session, API_NAMESPACE, msg);
  return `Medspace key=${session.public},ts=${ts},nonce=${c.hex(nonce)},aud=${audience},sig=${c.hex(sig)}`;
}

/// A refusal with the node's status, for the page to put in words.
export class Refused extends Error {
  constructor(status, what) {
    super(`refused ${status}`);
    this.status = status;
    this.what = what;
  }
}

export class Verification extends Error {}

/// A refusal from a node's answer `r`, with the reason it gave (`{"error": …}`), if any.
async function refusedBy(r, path) {
  const e = new Refused(r.status, path);
  try {
    e.reason = (await r.json()).error || "";
  } catch {
    e.reason = "";
  }
  return e;
}

/// A transaction sent while the consortium cannot finalize (too few validators answer):
/// `health` is the node's `/v1/consortium` view, naming those that do not.
export class Stalled extends Error {
  constructor(health) {
    super("the consortium cannot finalize");
    this.health = health;
  }
}

export class Client {
  constructor(genesis, member, session) {
    this.genesis = genesis;
    this.member = member;
    this.session = session;
    this.validators = genesis.validators.map((v) => c.unhex(v.public_key));
    this.headers = new Map();
  }

  async get(path, raw = false) {
    const auth = await authorization(this.session, "GET", path, this.member, new Uint8Array());
    const r = await fetch(path, { headers: { authorization: auth }, cache: "no-store" });
    if (!r.ok) throw new Refused(r.status, path);
    return raw ? new Uint8Array(await r.arrayBuffer()) : r.json();
  }

  /// A signed `POST` of the JSON `body` to `path` at this node; the answer's JSON (a refusal
  /// carries the node's reason).
  async post(path, body) {
    const bytes = c.utf8(JSON.stringify(body));
    const auth = await authorization(this.session, "POST", path, this.member, bytes);
    const r = await fetch(path, { method: "POST", body: bytes, headers: { authorization: auth, "content-type": "application/json" }, cache: "no-store" });
    if (!r.ok) throw await refusedBy(r, path);
    return r.json();
  }

  /// A signed `GET` of `path` at `member`'s node: directly if it is this node, else through
  /// this node's relay (the signature is for `member` and `path`: the relay cannot reuse it).
  async getAt(member, path) {
    const auth = await authorization(this.session, "GET", path, member, new Uint8Array());
    const url = member === this.member ? path : `/console/relay/${encodeURIComponent(member)}${path}`;
    const r = await fetch(url, { headers: { authorization: auth }, cache: "no-store" });
    if (!r.ok) throw new Refused(r.status, path);
    return r.json();
  }

  /// The bytes of a signed `GET` of `path` at `member`'s node (through this node's relay).
  async getAtBytes(member, path) {
    const auth = await authorization(this.session, "GET", path, member, new Uint8Array());
    const url = member === this.member ? path : `/console/relay/${encodeURIComponent(member)}${path}`;
    const r = await fetch(url, { headers: { authorization: auth }, cache: "no-store" });
    // Only a 200 carries the bytes asked for: a 202 ("not ready yet") is a refusal to retry.
    if (r.status !== 200) throw await refusedBy(r, path);
    return new Uint8Array(await r.arrayBuffer());
  }

  /// The bytes answering a signed `POST` of the JSON `body` to `path` at `member`'s node
  /// (through this node's relay, which passes the signed bytes on unchanged).
  async postAtBytes(member, path, body) {
    const bytes = c.utf8(JSON.stringify(body));
    const auth = await authorization(this.session, "POST", path, member, bytes);
    const url = member === this.member ? path : `/console/relay/${encodeURIComponent(member)}${path}`;
    const r = await fetch(url, { method: "POST", body: bytes, headers: { authorization: auth, "content-type": "application/json" }, cache: "no-store" });
    if (r.status !== 200) throw await refusedBy(r, path);
    return new Uint8Array(await r.arrayBuffer());
  }

  /// The patient's complete record: every hospital's Bundle merged into one, each resource
  /// once (as `medspace patient export` does). Returns the Bundle and what came from where.
  async exportRecord() {
    const members = await this.get("/v1/members");
    const hospitals = (members.members || [])
      .filter((m) => m.active && m.member && m.member.kind === "hospital")
      .map((m) => m.member.id);
    const entries = [];
    const seen = new Set();
    const from = [];
    const unreachable = [];
    for (const h of hospitals) {
      let bundle;
      try {
        bundle = await this.getAt(h, "/v1/records/export");
      } catch (e) {
        if (!(e instanceof Refused) || e.status >= 500) unreachable.push(h);
        continue;
      }
      let n = 0;
      for (const e of bundle.entry || []) {
        const url = e.fullUrl || "";
        if (!url || !seen.has(url)) {
          if (url) seen.add(url);
          entries.push(e);
          n++;
        }
      }
      from.push([h, n]);
    }
    return { bundle: { resourceType: "Bundle", type: "collection", entry: entries }, from, unreachable };
  }

  /// The header at `height`, its finality certificate checked against the genesis validators.
  /// Kept per height as the promise, so proofs anchored at once at one height share one fetch
  /// and one verification (a failed one is forgotten).
  async header(height) {
    if (!this.headers.has(height)) {
      const verified = (async () => {
        const raw = await this.get(`/v1/blocks/${height}/header?wait_ms=5000`, true);
        return verifyCertifiedHeader(this.genesis.chain_id, this.validators, height, raw);
      })();
      this.headers.set(height, verified);
      verified.catch(() => this.headers.delete(height));
    }
    return this.headers.get(height);
  }

  /// An answer and the certified state root of its height.
  async anchored(path) {
    const body = await this.get(path);
    if (typeof body.height !== "number") throw new Verification("no height");
    const header = await this.header(body.height);
    return { body, root: header.stateRoot, header };
  }

  /// The signed-in key's proven record: who it is (`member`, `user` or `patient`) and its next
  /// nonce; `null` for a key the ledger does not know.
  async keyRecord() {
    const key = c.concat(c.u8(0x02), c.unhex(this.session.public));
    let a;
    try {
      a = await this.anchored(`/v1/records/${c.hex(key)}`);
    } catch (e) {
      if (e instanceof Refused && (e.status === 404 || e.status === 403)) return null;
      throw e;
    }
    const p = await checkProven(a.root, a.body);
    if (!p.ok) throw new Verification("key record fails its proof");
    if (!c.equal(p.key, key)) throw new Verification("key record of another key");
    const r = new c.Reader(p.value);
    const tag = r.u8();
    const name = tag === 3 ? "pt-" + c.hex(r.take(32)) : r.name();
    const retired = r.bool();
    return { kind: [null, "member", "user", "patient"][tag], name, retired, nonce: r.u64() };
  }

  /// The proven next nonce of the signed-in key (0 for a key the ledger does not know).
  async nonce() {
    const rec = await this.keyRecord();
    return rec ? rec.nonce : 0n;
  }

  async chainId() {
    return this.genesis.chain_id;
  }

  /// Signs `payload` (its encoding) with the next nonce, submits it and waits until final.
  /// With `retiresKey` (a key rotation) the old key can no longer read its own proof: the
  /// caller checks the new key's record instead.
  async submit(payload, opts = {}) {
    const nonce = await this.nonce();
    const tx = await signTx(this.session, this.genesis.chain_id, nonce, payload);
    const id = c.hex(await c.sha256(tx));
    const r = await fetch("/v1/tx", {
      method: "POST",
      body: tx,
      headers: { "content-type": "application/octet-stream" },
    });
    if (!r.ok) {
      let reason = "";
      try {
        reason = (await r.json()).error || "";
      } catch {
        /* no reason */
      }
      const e = new Refused(r.status, "tx");
      e.reason = reason;
      throw e;
    }
    const started = Date.now();
    let asked = started;
    for (;;) {
      // Honest waiting: not final after a few seconds, ask the node whether the consortium can
      // finalize at all, and say so (naming who does not answer) rather than wait silently.
      if (Date.now() - asked > 3000) {
        asked = Date.now();
        const health = await this.get("/v1/consortium").catch(() => null);
        if (health && health.can_finalize === false) throw new Stalled(health);
      }
      const s = await (await fetch(`/v1/tx/${id}`, { cache: "no-store" })).json();
      if (s.status === "finalized") {
        if (s.applied === false) {
          // Final, but the ledger refused it: its reason is on the block.
          const e = new Refused(400, "tx");
          e.reason = s.refused || "";
          throw e;
        }
        break;
      }
      if (s.status === "dropped") {
        const e = new Refused(400, "tx");
        e.reason = s.reason || "";
        throw e;
      }
      if (Date.now() - started > 60000) throw new Refused(504, "tx");
      await new Promise((res) => setTimeout(res, 150));
    }
    if (!opts.retiresKey && (await this.nonce()) <= nonce) throw new Verification("not applied");
    return id;
  }
}

/// A signed transaction's bytes, as `types::SignedTx::new` makes them: the body (version,
/// chain id, signer, nonce, payload), then the signature over it in the namespace
/// `medspace/tx/v1`.
export async function signTx(session, chainId, nonce, payload) {
  const body = c.concat(c.u8(TX_VERSION), c.name(chainId), c.unhex(session.public), c.u64(nonce), payload);
  return c.concat(body, await sign(session, TX_NAMESPACE, body));
}

// ---------------------------------------------------------------- finality certificates

const HEADER_SIZE = 112;

/// Checks `raw` (a header's 112 bytes, then simplex's `Finalization<ed25519::Scheme, Digest>`)
/// for `height`: the proposal's payload is the header's digest and a quorum of the genesis
/// validators signed the finalize subject. Returns the header's fields.
export async function verifyCertifiedHeader(chainId, validators, height, raw) {
  if (raw.length < HEADER_SIZE) throw new Verification("short header");
  const head = raw.subarray(0, HEADER_SIZE);
  const hv = new DataView(head.buffer, head.byteOffset, HEADER_SIZE);
  const header = {
    height: hv.getBigUint64(32),
    timeMs: hv.getBigUint64(40),
    stateRoot: head.slice(80, 112),
    digest: await c.sha256(head),
  };
  if (header.height !== BigInt(height)) throw new Verification("header of another height");
  const r = new c.Reader(raw.subarray(HEADER_SIZE));
  const start = r.at;
  r.varint(); // epoch
  r.varint(); // view
  r.varint(); // parent view
  const payload = r.take(32);
  const proposal = r.b.subarray(start, r.at);
  if (!c.equal(payload, header.digest)) throw new Verification("certificate for another block");
  const bits = Number(r.u64());
  const n = validators.length;
  if (bits !== n) throw new Verification("signer bitmap of another size");
  const bitmap = r.take(Math.ceil(bits / 8));
  const signers = [];
  for (let i = 0; i < bits; i++) if (bitmap[i >> 3] & (1 << (i & 7))) signers.push(i);
  const count = Number(r.varint());
  if (count !== signers.length) throw new Verification("signatures do not match the signers");
  const sigs = [];
  for (let i = 0; i < count; i++) sigs.push(r.take(64));
  if (!r.done()) throw new Verification("trailing bytes");
  const quorum = n - Math.floor((n - 1) / 3);
  if (signers.length < quorum) throw new Verification("no quorum");
  // Participants are the genesis validators' keys in sorted order (an ordered set).
  const ordered = [...validators].sort(compareBytes);
  const ns = c.concat(c.utf8(chainId), c.utf8("_FINALIZE"));
  const msg = unionUnique(ns, proposal);
  for (let i = 0; i < signers.length; i++) {
    const pk = await crypto.subtle.importKey("raw", ordered[signers[i]], { name: "Ed25519" }, false, [
      "verify",
    ]);
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, pk, sigs[i], msg))) {
      throw new Verification("bad validator signature");
    }
  }
  return header;
}

function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

// ---------------------------------------------------------------- inclusion proofs

function bitAt(key, bit) {
  const byte = bit >> 3;
  return byte < key.length && ((key[byte] >> (7 - (bit & 7))) & 1) === 1;
}

/// `state::trie::Proof::verify`: the leaf hash folded up the path must give `root`.
export async function verifyProof(root, key, value, proof) {
  const path = proof && Array.isArray(proof.path) ? proof.path : null;
  if (!path) return false;
  for (let i = 1; i < path.length; i++) if (path[i - 1].bit >= path[i].bit) return false;
  let h = await c.sha256(c.u8(0), c.u32(key.length), key, value);
  for (let i = path.length - 1; i >= 0; i--) {
    const { bit } = path[i];
    const sib = c.unhex(path[i].sibling);
    h = bitAt(key, bit)
      ? await c.sha256(c.u8(1), c.u32(bit), sib, h)
      : await c.sha256(c.u8(1), c.u32(bit), h, sib);
  }
  return c.equal(h, root);
}

/// A proven record (`key`, `value`, `proof` in hex/JSON): its bytes and whether the proof holds.
export async function checkProven(root, p) {
  const key = c.unhex(p.key);
  const value = c.unhex(p.value);
  const ok = await verifyProof(root, key, value, p.proof);
  return { key, value, ok };
}

// ---------------------------------------------------------------- records

export function decodeLogEntry(value) {
  const r = new c.Reader(value);
  const height = r.u64();
  const timeMs = r.u64();
  const tag = r.u8();
  let event;
  if (tag === 1) {
    const purpose = PURPOSES[r.u8()];
    const study = r.option((x) => x.name());
    const state = CONSENT_STATES[r.u8()];
    event = { kind: "consent", purpose, study, state };
  } else if (tag >= 2 && tag <= 5) {
    const id = r.u64().toString(16).padStart(16, "0");
    event = [null, null, { kind: "grant_issued", id: "g-" + id }, { kind: "grant_revoked", id: "g-" + id },
      { kind: "accessed", id: "a-" + id }, { kind: "destroyed", id: "a-" + id }][tag];
  } else if (tag >= 6 && tag <= 8) {
    // A key re-binding: asked by a hospital, cancelled, or completed.
    const hospital = r.name();
    const newKey = c.hex(r.take(32));
    const effectiveMs = Number(r.u64());
    event = { kind: [null, null, null, null, null, null, "rebind_asked", "rebind_cancelled", "rebound"][tag], hospital, newKey, effectiveMs };
  } else throw new Error("unknown event");
  if (!r.done()) throw new Error("trailing bytes");
  return { height, timeMs, event };
}

export function decodeAccess(value) {
  const r = new c.Reader(value);
  const id = "a-" + r.u64().toString(16).padStart(16, "0");
  const patient = c.hex(r.take(32));
  const holder = r.name();
  const recipient = r.name();
  const basisTag = r.u8();
  const basisId = r.u64().toString(16).padStart(16, "0");
  const basis = basisTag === 1 ? "g-" + basisId : "c-" + basisId;
  const resourceTypes = r.list((x) => x.text());
  const resourceCount = r.u32();
  r.take(32);
  const height = r.u64();
  const timeMs = r.u64();
  return { id, patient, holder, recipient, basis, resourceTypes, resourceCount, height, timeMs };
}

export function decodeConsent(key, value) {
  const k = new c.Reader(key);
  k.u8();
  k.take(32);
  const purpose = PURPOSES[k.u8()];
  const study = k.option((x) => x.name());
  const r = new c.Reader(value);
  const history = r.list((x) => ({
    height: x.u64(),
    state: CONSENT_STATES[x.u8()],
    l4: x.bool(),
  }));
  return { purpose, study, history, now: history[history.length - 1] || null };
}

export function decodeGrant(value) {
  const r = new c.Reader(value);
  const id = "g-" + r.u64().toString(16).padStart(16, "0");
  r.take(32);
  const grantee = r.name();
  const holder = r.name();
  const purpose = PURPOSES[r.u8()];
  const resourceTypes = r.list((x) => x.text());
  const fromMs = r.u64();
  const toMs = r.u64();
  const expiryMs = r.u64();
  const maxUses = r.u32();
  const codeHash = c.hex(r.take(32));
  const issuedHeight = r.u64();
  const uses = r.u32();
  const revoked = r.bool();
  return { id, grantee, holder, purpose, resourceTypes, fromMs, toMs, expiryMs, maxUses, codeHash, issuedHeight, uses, revoked };
}

/// The proven prefix of a job record: id, contract, submitter, status, submission.
export function decodeJobHead(value) {
  const r = new c.Reader(value);
  const id = "j-" + r.u64().toString(16).padStart(16, "0");
  const contract = "c-" + r.u64().toString(16).padStart(16, "0");
  const submitter = r.name();
  r.take(Number(r.varint()));
  r.u64();
  const done = r.u8() === 2;
  const height = r.u64();
  const timeMs = r.u64();
  return { id, contract, submitter, done, height, timeMs };
}

/// The proven prefix of a contract record: id, requester, institution, purpose, mode, study.
/// With it what the patient reads before deciding: the fields it reads, its level and the
/// hospitals that hold the data.
export function decodeContractHead(value) {
  const r = new c.Reader(value);
  const id = "c-" + r.u64().toString(16).padStart(16, "0");
  const requester = r.name();
  const institution = r.name();
  const purpose = PURPOSES[r.u8()];
  const mode = [null, "open_pool", "record_sharing", "compute"][r.u8()];
  const study = r.option((x) => x.name());
  const fields = r.list((x) => {
    x.name();
    return `${x.text()}.${x.text()}`;
  });
  r.take(Number(r.varint()));
  r.take(32);
  const level = r.u8();
  const owners = r.list((x) => x.name());
  return { id, requester, institution, purpose, mode, study, fields: [...new Set(fields)], level, owners };
}

// ---------------------------------------------------------------- transactions

export function purposeTag(p) {
  const i = PURPOSES.indexOf(p);
  if (i < 1) throw new Error("unknown purpose");
  return i;
}

/// `Payload::SetConsent`.
export function setConsent(purpose, study, allow, l4) {
  return c.concat(
    c.u8(9),
    c.u8(purposeTag(purpose)),
    c.option(study, c.name),
    c.u8(allow ? 1 : 2),
    c.bool(l4),
  );
}

/// `Payload::IssueGrant`, its code hashed as `types::code_hash` does.
export async function issueGrant(patient, t) {
  const codeHash = await c.sha256(
    c.utf8("medspace/grant-code/v1"),
    c.unhex(patient.replace(/^pt-/, "")),
    c.utf8(t.code.replace(/[^0-9A-Za-z]/g, "").toUpperCase()),
  );
  const payload = c.concat(
    c.u8(11),
    c.name(t.grantee),
    c.name(t.holder),
    c.u8(purposeTag(t.purpose)),
    c.list(t.resourceTypes, c.text),
    c.u64(t.fromMs),
    c.u64(t.toMs),
    c.u64(t.expiryMs),
    c.u32(t.maxUses),
    codeHash,
  );
  return { payload, codeHash: c.hex(codeHash) };
}

// ---------------------------------------------------------------- replacing a key

const ROTATE_NAMESPACE = c.utf8("medspace/rotate/v1");

/// A new key for the signed-in principal: its file (`{"secret": hex}`, to be saved before the
/// change is sent) and `Payload::RotateKey` with the new key's proof of possession over
/// `chain id | old key | nonce` (`types::rotation_message`), `nonce` being the old key's next.
export async function newKeyFor(session, chainId, nonce) {
  const { pair, secret, pub } = await freshKey();
  const msg = c.concat(c.name(chainId), c.unhex(session.public), c.u64(nonce));
  const proof = new Uint8Array(await crypto.subtle.sign({ name: "Ed25519" }, pair.privateKey, unionUnique(ROTATE_NAMESPACE, msg)));
  return { file: JSON.stringify({ secret }, null, 2), payload: c.concat(c.u8(6), pub, proof), public: c.hex(pub) };
}

// ---------------------------------------------------------------- re-binding a lost key

const REBIND_NAMESPACE = c.utf8("medspace/rebind/v1");

/// The signed-in key's claim to take over a patient's pseudonym through `hospital` (what
/// `types::RebindPatient::claim` signs), as the text the patient hands to the hospital (short
/// enough for a QR code): `medspace-rebind:<hospital>:<base64url(key | signature)>`.
export async function rebindClaim(session, chainId, hospital) {
  const key = c.unhex(session.public);
  const proof = await sign(session, REBIND_NAMESPACE, c.concat(c.name(chainId), c.name(hospital), key));
  const both = c.concat(key, proof);
  const b64 = btoa(String.fromCharCode(...both)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return `medspace-rebind:${hospital}:${b64}`;
}

/// A claim's parts (`key` and `proof` in hex), or an error `claim-malformed`.
export function parseClaim(text) {
  const m = /^medspace-rebind:([a-z0-9][a-z0-9._-]{0,47}):([A-Za-z0-9_-]{128})$/.exec(String(text).trim());
  if (!m) throw new Error("claim-malformed");
  const both = b64url(m[2]);
  if (both.length !== 96) throw new Error("claim-malformed");
  return { hospital: m[1], key: c.hex(both.subarray(0, 32)), proof: c.hex(both.subarray(32)) };
}

/// `Payload::RebindPatient`: a steward asks to re-bind `patient` (pt-…) to a claim's key.
export function rebindPatient(patient, claim) {
  return c.concat(c.u8(26), c.unhex(patient.replace(/^pt-/, "")), c.unhex(claim.key), c.unhex(claim.proof));
}

/// `Payload::CancelRebind`: the patient's veto, or the hospital's withdrawal.
export function cancelRebind(patient) {
  return c.concat(c.u8(27), c.unhex(patient.replace(/^pt-/, "")));
}

/// `Payload::CompleteRebind`: the new key takes over.
export function completeRebind(patient) {
  return c.concat(c.u8(28), c.unhex(patient.replace(/^pt-/, "")));
}

/// A pending re-binding (`state::records::RebindRecord`).
export function decodeRebind(value) {
  const r = new c.Reader(value);
  const patient = "pt-" + c.hex(r.take(32));
  const hospital = r.name();
  const steward = r.name();
  const requestedMs = Number(r.u64());
  const effectiveMs = Number(r.u64());
  if (!r.done()) throw new Error("trailing bytes");
  return { patient, hospital, steward, requestedMs, effectiveMs };
}

/// A patient's record (`state::records::PatientRecord`): their key, the hospital that
/// registered them and the new key of a pending re-binding.
export function decodePatient(value) {
  const r = new c.Reader(value);
  const key = c.hex(r.take(32));
  const registeredHeight = r.u64();
  const logLen = r.u64();
  const hospital = r.name();
  const rebinding = r.option((x) => c.hex(x.take(32)));
  if (!r.done()) throw new Error("trailing bytes");
  return { key, registeredHeight, logLen, hospital, rebinding };
}

/// `Payload::RevokeGrant`.
export function revokeGrant(id) {
  return c.concat(c.u8(12), c.u64(BigInt("0x" + id.replace(/^g-/, ""))));
}

const CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A fresh authorization code: 80 bits from the browser's CSPRNG, `XXXX-XXXX-XXXX-XXXX`.
export function newCode() {
  const b = crypto.getRandomValues(new Uint8Array(10));
  let acc = 0n;
  for (const x of b) acc = (acc << 8n) | BigInt(x);
  let s = "";
  for (let i = 15; i >= 0; i--) s += CODE_ALPHABET[Number((acc >> BigInt(i * 5)) & 31n)];
  return s.match(/.{4}/g).join("-");
}

// ---------------------------------------------------------------- studies (staff)

export const ROLES = [null, "steward", "data_committee", "ethics_committee", "researcher", "clinician", "claims_officer", "auditor", "patient"];
const MODES = [null, "open_pool", "record_sharing", "compute"];
const CONTRACT_STATUS = [null, "pending", "active", "rejected", "terminated"];

function idNum(s, prefix) {
  const hexPart = String(s).replace(prefix, "");
  if (!/^[0-9a-fA-F]{1,16}$/.test(hexPart)) throw new Error("bad id");
  return BigInt("0x" + hexPart);
}

const blob = (bytes) => c.concat(c.varint(bytes.length), bytes);

/// `Payload::SubmitRequest` for a federated query (mode compute): `fields` as
/// `{dataset, table, field}`, `computation` the specification's bytes.
export function submitRequest(r) {
  return c.concat(
    c.u8(13),
    c.u8(purposeTag(r.purpose)),
    c.u8(MODES.indexOf(r.mode || "compute")),
    c.option(r.study, c.name),
    c.list(r.fields, (f) => c.concat(c.name(f.dataset), c.text(f.table), c.text(f.field))),
    blob(r.computation),
    c.u64(r.expiryMs),
    c.u64(r.epsilonBudget),
    c.u64(r.fee || 0),
  );
}

/// `Payload::Approve`.
export function approve(contract) {
  return c.concat(c.u8(14), c.u64(idNum(contract, /^c-/)));
}

/// `Payload::Reject`: a reason is required by the ledger.
export function reject(contract, reason) {
  return c.concat(c.u8(15), c.u64(idNum(contract, /^c-/)), c.text(reason));
}

/// `Payload::SubmitJob`.
export function submitJob(contract, computation, epsilonMicro) {
  return c.concat(c.u8(17), c.u64(idNum(contract, /^c-/)), blob(computation), c.u64(epsilonMicro));
}

const idHex = (r, p) => p + r.u64().toString(16).padStart(16, "0");
const contributions = (r) => r.list((x) => ({ member: x.name(), records: x.u64() }));

/// A whole contract record (`records::ContractRecord`), from its proven bytes.
export function decodeContract(value) {
  const r = new c.Reader(value);
  const out = {};
  out.id = idHex(r, "c-");
  out.requester = r.name();
  out.institution = r.name();
  out.purpose = PURPOSES[r.u8()];
  out.mode = MODES[r.u8()];
  out.study = r.option((x) => x.name());
  out.fields = r.list((x) => ({ dataset: x.name(), table: x.text(), field: x.text() }));
  out.computation = new TextDecoder().decode(r.take(Number(r.varint())));
  out.computationHash = c.hex(r.take(32));
  out.level = r.u8();
  out.owners = r.list((x) => x.name());
  out.approvals = r.list((x) => ({ role: ROLES[x.u8()], member: x.option((y) => y.name()), by: x.option((y) => y.name()) }));
  out.status = CONTRACT_STATUS[r.u8()];
  out.expiryMs = r.u64();
  out.budget = r.u64();
  out.spent = r.u64();
  out.reserved = r.u64();
  out.closed = r.u64();
  out.escrow = r.u64();
  out.contributions = contributions(r);
  out.settled = r.bool();
  out.submittedHeight = r.u64();
  out.reason = r.text();
  out.endedMs = r.u64();
  // Each failing quality check of the data it reads (figure and floor, ppm).
  out.quality = r.list((x) => ({ dataset: x.name(), table: x.text(), field: x.text(), check: [null, "missing", "invalid", "duplicate", "implausible"][x.u8()], valuePpm: x.u32(), maxPpm: x.u32() }));
  // A standing surveillance definition: how many of its windows have had their job.
  out.windowsRun = r.u32();
  if (!r.done()) throw new Verification("contract record has trailing bytes");
  return out;
}

/// A whole job record (`records::JobRecord`), from its proven bytes.
export function decodeJob(value) {
  const r = new c.Reader(value);
  const out = {};
  out.id = idHex(r, "j-");
  out.contract = idHex(r, "c-");
  out.submitter = r.name();
  out.computation = new TextDecoder().decode(r.take(Number(r.varint())));
  out.reserved = r.u64();
  out.done = r.u8() === 2;
  out.height = r.u64();
  out.timeMs = r.u64();
  out.result = r.option((x) => ({
    hash: c.hex(x.take(32)),
    spent: x.u64(),
    contributions: contributions(x),
    postedBy: x.name(),
    height: x.u64(),
  }));
  out.round = r.option((x) => ({ sharers: x.list((y) => y.name()), survivors: x.list((y) => y.name()), height: x.u64() }));
  // For a surveillance definition, the window the ledger scheduled this job for.
  out.window = r.option((x) => x.u32());
  if (!r.done()) throw new Verification("job record has trailing bytes");
  return out;
}

/// A surveillance alert (`records::AlertRecord`) from its proven bytes: figures in
/// thousandths as the ledger keeps them, and as numbers.
export function decodeAlert(value) {
  const r = new c.Reader(value);
  const i64 = () => {
    const b = r.take(8);
    return new DataView(b.buffer, b.byteOffset, 8).getBigInt64(0);
  };
  const out = {
    contract: idHex(r, "c-"),
    job: idHex(r, "j-"),
    window: r.u32(),
    syndrome: r.text(),
    region: r.text(),
    method: r.text(),
    observed: i64(),
    expectedMilli: i64(),
    scoreMilli: i64(),
    by: r.name(),
    height: Number(r.u64()),
    timeMs: Number(r.u64()),
  };
  if (!r.done()) throw new Verification("alert record has trailing bytes");
  return out;
}

const MEMBER_KINDS = [null, "hospital", "insurer", "pharma", "research_institute", "public_health_agency", "regulator"];

/// A member's record (`records::MemberRecord`) from its proven bytes: id, name, kind, whether
/// it is active.
export function decodeMember(value) {
  const r = new c.Reader(value);
  const id = r.name();
  const name = r.text();
  const kind = MEMBER_KINDS[r.u8()] || "unknown";
  r.take(32 + 32 + 32);
  const active = r.bool();
  const joinedHeight = Number(r.u64());
  if (!r.done()) throw new Verification("member record has trailing bytes");
  return { id, name, kind, active, joinedHeight };
}

/// `Payload::AttestDestruction`: the recipient attests a delivered copy (a record access or a
/// release delivery, `a-` and 16 hex digits) was destroyed.
export function attestDestruction(access) {
  return c.concat(c.u8(20), c.u64(idNum(access, /^a-/)));
}

/// An open-pool request (`Payload::SubmitRequest`, mode open_pool) for the releases
/// `datasets` (their catalog entries): every field of their tables, for `purpose`, for `days`
/// from `nowMs`, no computation, no budget, no fee.
export function openPoolRequest(datasets, purpose, days, nowMs) {
  const fields = [];
  for (const d of datasets) for (const tb of d.description.tables || []) for (const f of tb.fields || []) fields.push({ dataset: d.description.id, table: tb.name, field: f.name });
  return submitRequest({ purpose, mode: "open_pool", study: null, fields: fields.slice(0, 256), computation: new Uint8Array(), expiryMs: BigInt(Math.round(nowMs + days * 86400000)), epsilonBudget: 0, fee: 0 });
}

const LEVEL_NAMES = [null, "L1", "L2", "L3", "L4"];

/// A catalog entry's description (`types::DatasetDescription`), as its JSON reads.
function readDescription(r) {
  const id = r.name();
  const title = r.text();
  const version = r.u32();
  const tables = r.list((x) => ({
    name: x.text(),
    rows: Number(x.u64()),
    duplicate_ppm: x.u32(),
    implausible_ppm: x.u32(),
    fields: x.list((y) => ({ name: y.text(), level: LEVEL_NAMES[y.u8()], missing_ppm: y.u32(), invalid_ppm: y.u32() })),
  }));
  const content_hash = c.hex(r.take(32));
  return { id, title, version, tables, content_hash };
}

/// A release's figures (`types::ReleaseFigures`), as their JSON reads.
function readFigures(r) {
  return {
    source: r.name(),
    purposes: r.list((x) => PURPOSES[x.u8()]),
    consent_height: Number(r.u64()),
    spec_hash: c.hex(r.take(32)),
    k: r.u32(),
    l: r.u32(),
    persons: Number(r.u64()),
    suppressed: Number(r.u64()),
    prosecutor_max_ppm: r.u32(),
    prosecutor_avg_ppm: r.u32(),
    journalist_max_ppm: r.u32(),
    marketer_ppm: r.u32(),
    at_risk_ppm: r.u32(),
  };
}

/// A catalog entry (`records::DatasetRecord`) from its proven bytes: owner, description,
/// height published, and a release's figures (`null` for a plain dataset).
export function decodeDatasetRecord(value) {
  const r = new c.Reader(value);
  const out = { owner: r.name(), description: readDescription(r), published_height: Number(r.u64()), release: r.option(readFigures) };
  if (!r.done()) throw new Verification("dataset record has trailing bytes");
  return out;
}

/// The proven catalog entry of `dataset` at a certified block.
export async function provenDataset(client, dataset) {
  const key = "0a" + hexName(dataset);
  const a = await client.anchored(`/v1/records/${key}`);
  const chk = await checkProven(a.root, a.body);
  if (!chk.ok || c.hex(chk.key) !== key) throw new Verification("catalog entry fails its proof");
  return { ...decodeDatasetRecord(chk.value), height: a.body.height };
}

/// An open-pool delivery (`records::DeliveryRecord`) from its proven bytes.
export function decodeDelivery(value) {
  const r = new c.Reader(value);
  const out = {
    id: idHex(r, "a-"),
    dataset: r.name(),
    version: r.u32(),
    holder: r.name(),
    recipient: r.name(),
    contract: idHex(r, "c-"),
    contentHash: c.hex(r.take(32)),
    bytes: Number(r.u64()),
    height: Number(r.u64()),
    timeMs: Number(r.u64()),
    destroyedHeight: r.option((x) => Number(x.u64())),
  };
  if (!r.done()) throw new Verification("delivery record has trailing bytes");
  return out;
}

/// SHA-256 of `bytes` in hex: `types::Hash::of(&[bytes])`, as a release's manifest and catalog
/// entry state it.
export async function sha256Hex(bytes) {
  return c.hex(await c.sha256(bytes));
}

/// A user record (`records::UserRecord`): who they are, where, in which role.
export function decodeUser(value) {
  const r = new c.Reader(value);
  return { id: r.name(), member: r.name(), role: ROLES[r.u8()] };
}

/// The SHA-256 the aggregator's node posts for a released result (`wire::result_hash`).
export async function resultHash(bytes) {
  return c.hex(await c.sha256(c.utf8("medspace/result/v1"), bytes));
}

/// The hex of a `Name` (as record keys embed it).
export function hexName(s) {
  return c.hex(c.name(s));
}
