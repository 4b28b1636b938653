// A small QR code encoder (ISO/IEC 18004): byte mode, error correction level M, versions 1–10
// (up to 213 bytes — an authorization code's payload is about 60). Written for medspace; the
// module matrix is checked against the Rust `qrcode` crate by crates/console/tests/qr.rs.

// Level M: [EC codewords per block, [blocks, data codewords per block], …] for versions 1–10.
const BLOCKS_M = [
  null,
  [10, [1, 16]],
  [16, [1, 28]],
  [26, [1, 44]],
  [18, [2, 32]],
  [24, [2, 43]],
  [16, [4, 27]],
  [18, [4, 31]],
  [22, [2, 38], [2, 39]],
  [22, [3, 36], [2, 37]],
  [26, [4, 43], [1, 44]],
];
const ALIGN = [null, [], [6, 18], [6, 22], [6, 26], [6, 30], [6, 34], [6, 22, 38], [6, 24, 42], [6, 26, 46], [6, 28, 50]];

// GF(256) with the polynomial x^8 + x^4 + x^3 + x^2 + 1.
const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255];
}
const mul = (a, b) => (a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]]);

function generator(degree) {
  // Coefficients, highest power first, of the product of (x - a^i) for i < degree.
  let g = [1];
  for (let i = 0; i < degree; i++) {
    const next = new Array(g.length + 1).fill(0);
    for (let j = 0; j < g.length; j++) {
      next[j] ^= g[j];
      next[j + 1] ^= mul(g[j], EXP[i]);
    }
    g = next;
  }
  return g;
}

function remainder(data, degree) {
  const g = generator(degree);
  const r = new Array(degree).fill(0);
  for (const d of data) {
    const f = d ^ r[0];
    r.shift();
    r.push(0);
    for (let i = 0; i < degree; i++) r[i] ^= mul(g[i + 1], f);
  }
  return r;
}

function capacity(v) {
  const [, ...groups] = BLOCKS_M[v];
  return groups.reduce((n, [b, d]) => n + b * d, 0);
}

function codewords(bytes, v) {
  const bits = [];
  const put = (val, n) => {
    for (let i = n - 1; i >= 0; i--) bits.push((val >> i) & 1);
  };
  put(0b0100, 4);
  put(bytes.length, v < 10 ? 8 : 16);
  for (const b of bytes) put(b, 8);
  const cap = capacity(v) * 8;
  for (let i = 0; i < 4 && bits.length < cap; i++) bits.push(0);
  while (bits.length % 8) bits.push(0);
  const data = [];
  for (let i = 0; i < bits.length; i += 8) data.push(bits.slice(i, i + 8).reduce((a, b) => (a << 1) | b, 0));
  for (let pad = 0xec; data.length < capacity(v); pad ^= 0xec ^ 0x11) data.push(pad);
  // Split into blocks, add each block's error correction, interleave.
  const [ec, ...groups] = BLOCKS_M[v];
  const blocks = [];
  let at = 0;
  for (const [n, d] of groups) {
    for (let i = 0; i < n; i++) {
      const block = data.slice(at, at + d);
      at += d;
      blocks.push([block, remainder(block, ec)]);
    }
  }
  const out = [];
  const maxData = Math.max(...blocks.map(([d]) => d.length));
  for (let i = 0; i < maxData; i++) for (const [d] of blocks) if (i < d.length) out.push(d[i]);
  for (let i = 0; i < ec; i++) for (const [, e] of blocks) out.push(e[i]);
  return out;
}

const MASKS = [
  (r, c) => (r + c) % 2 === 0,
  (r) => r % 2 === 0,
  (r, c) => c % 3 === 0,
  (r, c) => (r + c) % 3 === 0,
  (r, c) => (Math.floor(r / 2) + Math.floor(c / 3)) % 2 === 0,
  (r, c) => ((r * c) % 2) + ((r * c) % 3) === 0,
  (r, c) => (((r * c) % 2) + ((r * c) % 3)) % 2 === 0,
  (r, c) => (((r + c) % 2) + ((r * c) % 3)) % 2 === 0,
];

function bch(value, poly, bitsOfPoly) {
  let r = value << (bitsOfPoly - 1);
  for (let i = 31; i >= bitsOfPoly - 1; i--) if ((r >> i) & 1) r ^= poly << (i - (bitsOfPoly - 1));
  return (value << (bitsOfPoly - 1)) | r;
}

/// The module matrix (rows of booleans, true = dark) of `bytes`, with `mask` (0–7) or the
/// mask of least penalty.
export function encode(bytes, mask = null) {
  let v = 1;
  while (v <= 10 && capacity(v) < bytes.length + (v < 10 ? 2 : 3)) v++;
  if (v > 10) throw new Error("payload too long for a QR code here");
  const size = 17 + 4 * v;
  const m = Array.from({ length: size }, () => new Array(size).fill(false));
  const fn = Array.from({ length: size }, () => new Array(size).fill(false));
  const set = (r, c, dark) => {
    m[r][c] = dark;
    fn[r][c] = true;
  };
  // Finder patterns and their separators.
  for (const [r0, c0] of [[0, 0], [0, size - 7], [size - 7, 0]]) {
    for (let r = -1; r <= 7; r++) {
      for (let c = -1; c <= 7; c++) {
        const rr = r0 + r;
        const cc = c0 + c;
        if (rr < 0 || cc < 0 || rr >= size || cc >= size) continue;
        const inner = r >= 0 && r <= 6 && c >= 0 && c <= 6;
        const ring = r === 0 || r === 6 || c === 0 || c === 6;
        const core = r >= 2 && r <= 4 && c >= 2 && c <= 4;
        set(rr, cc, inner && (ring || core));
      }
    }
  }
  // Timing patterns.
  for (let i = 8; i < size - 8; i++) {
    set(6, i, i % 2 === 0);
    set(i, 6, i % 2 === 0);
  }
  // Alignment patterns (not over the finders).
  const pos = ALIGN[v];
  for (const r of pos) {
    for (const c of pos) {
      if ((r === 6 && c === 6) || (r === 6 && c === pos[pos.length - 1]) || (r === pos[pos.length - 1] && c === 6)) continue;
      for (let dr = -2; dr <= 2; dr++) {
        for (let dc = -2; dc <= 2; dc++) set(r + dr, c + dc, Math.max(Math.abs(dr), Math.abs(dc)) !== 1);
      }
    }
  }
  // Reserve the format areas and the dark module; version information from version 7.
  for (let i = 0; i < 9; i++) {
    fn[8][i] = fn[i][8] = true;
  }
  for (let i = 0; i < 8; i++) {
    fn[8][size - 1 - i] = fn[size - 1 - i][8] = true;
  }
  set(size - 8, 8, true);
  if (v >= 7) {
    const bits = bch(v, 0x1f25, 13);
    for (let i = 0; i < 18; i++) {
      const dark = ((bits >> i) & 1) === 1;
      const a = size - 11 + (i % 3);
      const b = Math.floor(i / 3);
      set(a, b, dark);
      set(b, a, dark);
    }
  }
  // Data, in the zigzag from the bottom right.
  const data = codewords(bytes, v);
  let bit = 0;
  for (let right = size - 1; right >= 1; right -= 2) {
    if (right === 6) right = 5;
    for (let vert = 0; vert < size; vert++) {
      for (let j = 0; j < 2; j++) {
        const c = right - j;
        const upward = ((right + 1) & 2) === 0;
        const r = upward ? size - 1 - vert : vert;
        if (fn[r][c]) continue;
        if (bit < data.length * 8) m[r][c] = ((data[bit >> 3] >> (7 - (bit & 7))) & 1) === 1;
        bit++;
      }
    }
  }
  const withMask = (k) => {
    const out = m.map((row) => row.slice());
    for (let r = 0; r < size; r++) for (let c = 0; c < size; c++) if (!fn[r][c] && MASKS[k](r, c)) out[r][c] = !out[r][c];
    // Format information: level M (00) and the mask, BCH(15,5), XOR 0x5412.
    const f = bch(k, 0x537, 11) ^ 0x5412;
    const fb = (i) => ((f >> i) & 1) === 1;
    for (let i = 0; i <= 5; i++) out[i][8] = fb(i);
    out[7][8] = fb(6);
    out[8][8] = fb(7);
    out[8][7] = fb(8);
    for (let i = 9; i < 15; i++) out[8][14 - i] = fb(i);
    for (let i = 0; i < 8; i++) out[8][size - 1 - i] = fb(i);
    for (let i = 8; i < 15; i++) out[size - 15 + i][8] = fb(i);
    out[size - 8][8] = true;
    return out;
  };
  if (mask !== null) return withMask(mask);
  let best = null;
  let bestScore = Infinity;
  for (let k = 0; k < 8; k++) {
    const cand = withMask(k);
    const s = penalty(cand);
    if (s < bestScore) {
      best = cand;
      bestScore = s;
    }
  }
  return best;
}

function penalty(m) {
  const n = m.length;
  let score = 0;
  const lines = [];
  for (let i = 0; i < n; i++) {
    lines.push(m[i]);
    lines.push(m.map((row) => row[i]));
  }
  for (const line of lines) {
    let run = 1;
    for (let i = 1; i <= n; i++) {
      if (i < n && line[i] === line[i - 1]) run++;
      else {
        if (run >= 5) score += 3 + (run - 5);
        run = 1;
      }
    }
    const s = line.map((d) => (d ? "1" : "0")).join("");
    for (const pat of ["10111010000", "00001011101"]) {
      for (let at = s.indexOf(pat); at >= 0; at = s.indexOf(pat, at + 1)) score += 40;
    }
  }
  for (let r = 0; r < n - 1; r++) {
    for (let c = 0; c < n - 1; c++) {
      const d = m[r][c];
      if (m[r][c + 1] === d && m[r + 1][c] === d && m[r + 1][c + 1] === d) score += 3;
    }
  }
  const dark = m.reduce((a, row) => a + row.filter(Boolean).length, 0);
  score += 10 * Math.floor(Math.abs((dark * 100) / (n * n) - 50) / 5);
  return score;
}

/// An SVG element of the matrix, with a quiet zone of four modules, labelled for assistive
/// technology.
export function svg(matrix, label) {
  const ns = "http://www.w3.org/2000/svg";
  const q = 4;
  const n = matrix.length + 2 * q;
  const el = document.createElementNS(ns, "svg");
  el.setAttribute("viewBox", `0 0 ${n} ${n}`);
  el.setAttribute("role", "img");
  el.setAttribute("aria-label", label);
  el.setAttribute("class", "qr");
  const bg = document.createElementNS(ns, "rect");
  bg.setAttribute("width", n);
  bg.setAttribute("height", n);
  bg.setAttribute("fill", "#fff");
  el.appendChild(bg);
  let d = "";
  matrix.forEach((row, r) => row.forEach((dark, c) => {
    if (dark) d += `M${c + q} ${r + q}h1v1h-1z`;
  }));
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", d);
  path.setAttribute("fill", "#000");
  el.appendChild(path);
  return el;
}
