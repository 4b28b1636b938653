// Bytes, hex, SHA-256 and the commonware-codec encodings the ledger uses, for the browser.
// Integers are fixed-width big-endian (u8, u32, u64); lengths of byte strings and lists are
// LEB128 varints (commonware's usize); names are one length byte and UTF-8.

const enc = new TextEncoder();

export function utf8(s) {
  return enc.encode(s);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function unhex(s) {
  if (typeof s !== "string" || s.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(s)) {
    throw new Error("not hex");
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function concat(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

export async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
}

export function varint(n) {
  const out = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return new Uint8Array(out);
}

export function u8(n) {
  return new Uint8Array([n & 0xff]);
}

export function u32(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

export function u64(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}

export function bool(v) {
  return u8(v ? 1 : 0);
}

/// A `Name` (identifiers: members, studies, the chain id): one length byte, then UTF-8.
export function name(s) {
  const b = utf8(s);
  if (b.length > 64) throw new Error("name too long");
  return concat(u8(b.length), b);
}

/// A `Text`: varint length, then UTF-8.
export function text(s) {
  const b = utf8(s);
  return concat(varint(b.length), b);
}

export function option(value, write) {
  return value === null || value === undefined ? u8(0) : concat(u8(1), write(value));
}

export function list(items, write) {
  return concat(varint(items.length), ...items.map(write));
}

/// Reads what the writers above write; every read checks the bytes are there.
export class Reader {
  constructor(bytes) {
    this.b = bytes;
    this.at = 0;
  }
  take(n) {
    if (this.at + n > this.b.length) throw new Error("end of buffer");
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  u8() {
    return this.take(1)[0];
  }
  u32() {
    const s = this.take(4);
    return new DataView(s.buffer, s.byteOffset, 4).getUint32(0);
  }
  u64() {
    const s = this.take(8);
    return new DataView(s.buffer, s.byteOffset, 8).getBigUint64(0);
  }
  varint() {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.u8();
      v |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return v;
      shift += 7n;
      if (shift > 63n) throw new Error("varint too long");
    }
  }
  bool() {
    const v = this.u8();
    if (v > 1) throw new Error("bad bool");
    return v === 1;
  }
  name() {
    return new TextDecoder().decode(this.take(this.u8()));
  }
  text() {
    return new TextDecoder().decode(this.take(Number(this.varint())));
  }
  option(read) {
    return this.bool() ? read(this) : null;
  }
  list(read) {
    const n = Number(this.varint());
    const out = [];
    for (let i = 0; i < n; i++) out.push(read(this));
    return out;
  }
  done() {
    return this.at === this.b.length;
  }
}
