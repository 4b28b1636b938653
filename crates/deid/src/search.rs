//! The lattice search: the generalization with the least information loss that satisfies the
//! privacy models within the suppression budget. Implemented here (no Rust library does
//! ARX-style search); the design follows ARX (Prasser, Kohlmayer et al.): Flash's binary
//! search on chains with predictive tagging, roll-up, and a collapsed data representation.
//!
//! # Representation
//!
//! Per QI: the distinct level-0 labels get ids; each level's labels get ids; `up[a][b]` maps a
//! level-`a` id to its level-`b` id (checked to be a function: each level determines the next).
//! A row is the tuple of its level-0 ids, and rows with equal tuples and equal sensitive values
//! are collapsed into one *cell* `(key, sensitive combination, count)`, the ids packed into a
//! `u64` key. A lattice node is evaluated on cells, never on the rows: every cell's key is
//! remapped to the node's levels, the cells are sorted by `(key, combination)` and merged;
//! runs of equal keys are the equivalence classes with their sensitive histograms. The source
//! cells are those of the cheapest already-evaluated node below the target (roll-up: a node's
//! classes are unions of the classes of any node below it), or the lattice's bottom.
//!
//! # Pruning (monotone criteria)
//!
//! k-anonymity with class suppression and distinct l-diversity are monotone: going up the
//! lattice merges classes; a merged class containing a kept class (≥ k records, ≥ l distinct
//! values) is kept, so the suppressed count never grows. Hence a node that satisfies (suppressed
//! ≤ budget) has only satisfying ancestors, a failing node only failing descendants. Entropy
//! l-diversity (`exp(H) ≥ x`) requires `⌈x⌉` distinct values, so its monotone part is distinct
//! `⌈x⌉`-diversity. The search visits nodes by height; from each untagged node it builds a chain
//! upwards through untagged nodes, binary-searches the chain for its lowest satisfying node and
//! tags every evaluated node's ancestors (satisfying) or descendants (failing). At the end every
//! node is tagged and the satisfying set `S` is known exactly.
//!
//! # Optimum (branch and bound)
//!
//! Entropy l-diversity and t-closeness with suppression are not monotone (merging a diverse class
//! with a skewed one can fail; t is measured against the released distribution, which changes),
//! so they are checked, never pruned on, on candidates from `S`. Neither is the loss with
//! suppression: going up, kept records lose more, but records that were suppressed may be kept
//! and lose less — "only minimal satisfying nodes" would be a heuristic. So the optimum is found
//! by branch and bound over `S` with admissible lower bounds:
//!
//! - non-uniform entropy: the loss of the generalization with no suppression,
//!   `LB = Σ_QI Σ_records −log2 P(raw | generalized)`, additive over QIs and computed in O(#QI);
//!   a suppressed record costs `−log2 P(raw | *)`, at least its cost at any level, so loss ≥ LB.
//!   Candidates are taken in increasing `LB`; the search stops when `LB` exceeds the best loss.
//! - discernibility: `Σ_classes |E|²` without suppression is monotone and at most the loss (a
//!   suppressed record costs `n ≥ |E|`), so the largest such value over the evaluated nodes
//!   below a candidate bounds it.
//!
//! Ties are broken by the smaller level vector (lexicographic), so the plan is deterministic.

use std::collections::HashMap;

use crate::error::DeidError;
use crate::figures::{Acc, Figures, emd, entropy, exp_l};
use crate::hierarchy::Hierarchy;
use crate::report::{QiLevel, Report, risk};
use crate::spec::{LDiversity, ReleaseSpec, Utility};
use crate::{Microdata, Parents, Value};

/// Where the search is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Rows encoded and collapsed.
    Encoded,
    /// Monotone criteria: binary search on chains.
    Search,
    /// Branch and bound over the satisfying nodes.
    Optimize,
    /// Producing the release.
    Release,
}

/// A progress report, sent after each phase and each node evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub evaluated: u64,
    pub lattice: u64,
}

/// A lattice node: one level per QI.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Node {
    pub levels: Vec<u32>,
    pub names: Vec<String>,
}

/// The result of the search.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The chosen generalization.
    pub node: Node,
    /// The QI field names, in the spec's order (the order of [`Plan::labels`]' columns).
    pub fields: Vec<String>,
    /// Indices of the released rows, ascending.
    pub kept: Vec<usize>,
    /// Indices of the suppressed rows, ascending.
    pub suppressed: Vec<usize>,
    pub report: Report,
    pub lattice_size: u64,
    pub nodes_evaluated: u64,
    /// Per QI: the labels of the chosen level.
    dict: Vec<Vec<String>>,
    /// Per released row, per QI: the label id (row-major, `fields.len()` per row).
    ids: Vec<u32>,
}

impl Plan {
    /// The label of QI `q` of the `i`-th released row (`kept[i]`).
    pub fn label(&self, i: usize, q: usize) -> Option<&str> {
        let n = self.fields.len();
        let id = *self.ids.get(i.checked_mul(n)?.checked_add(q)?)?;
        self.dict.get(q)?.get(id as usize).map(String::as_str)
    }

    /// The generalized QI labels of the released rows, in [`Plan::kept`]'s order.
    pub fn labels(&self) -> Vec<Vec<String>> {
        let n = self.fields.len().max(1);
        self.ids
            .chunks(n)
            .map(|row| {
                row.iter()
                    .zip(&self.dict)
                    .map(|(id, d)| d.get(*id as usize).cloned().unwrap_or_default())
                    .collect()
            })
            .collect()
    }

    /// The released rows' sensitive values, in [`Plan::kept`]'s order, from the input.
    pub fn sensitive(&self, data: &Microdata) -> Vec<Vec<String>> {
        self.kept
            .iter()
            .map(|&i| {
                data.rows
                    .get(i)
                    .map(|r| r.sensitive.clone())
                    .unwrap_or_default()
            })
            .collect()
    }
}

const UNKNOWN: u8 = 0;
const SAT: u8 = 1;
const FAIL: u8 = 2;
/// Largest lattice searched.
pub const MAX_LATTICE: u64 = 1 << 22;
/// Cells kept in the roll-up cache (16 bytes each).
const CACHE_CELLS: usize = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cell {
    key: u64,
    combo: u32,
    count: u32,
}

/// One QI, encoded.
struct QiEnc {
    min: usize,
    levels: usize,
    labels: Vec<Vec<String>>,
    /// `up[a][d]`: level-`a` id → level-`a + d` id.
    up: Vec<Vec<Vec<u32>>>,
    /// Records per id, per level.
    count: Vec<Vec<u64>>,
    /// Entropy loss of the whole column at each level (bits).
    level_loss: Vec<f64>,
    shift: u32,
    mask: u64,
}

impl QiEnc {
    fn map(&self, from: usize, to: usize) -> Option<&[u32]> {
        self.up
            .get(from)?
            .get(to.checked_sub(from)?)
            .map(Vec::as_slice)
    }
}

/// The encoded input.
pub(crate) struct Encoded {
    qis: Vec<QiEnc>,
    /// Per row, its level-0 ids (row-major).
    row_ids: Vec<u32>,
    /// Per row, its sensitive combination.
    row_combo: Vec<u32>,
    /// Per combination, the value id of each sensitive attribute.
    combos: Vec<Vec<u32>>,
    /// Per sensitive attribute, the number of distinct values.
    sa_values: Vec<usize>,
    n: u64,
    /// Radix of each lattice dimension and its stride (QI 0 most significant).
    radix: Vec<u64>,
    stride: Vec<u64>,
    size: u64,
}

fn internal(what: &str) -> DeidError {
    DeidError::TooLarge(format!("internal inconsistency: {what}"))
}

impl Encoded {
    pub(crate) fn new(
        spec: &ReleaseSpec,
        data: &Microdata,
        parents: &Parents,
    ) -> Result<Self, DeidError> {
        spec.validate()?;
        let nq = spec.quasi_identifiers.len();
        let n = data.rows.len();
        if u32::try_from(n).is_err() {
            return Err(DeidError::TooLarge(format!(
                "{n} rows (at most {})",
                u32::MAX
            )));
        }
        // Columns by name.
        let mut qcol = Vec::with_capacity(nq);
        for q in &spec.quasi_identifiers {
            let pos = data.qi.iter().position(|c| c == &q.field).ok_or_else(|| {
                DeidError::Columns(format!(
                    "quasi-identifier `{}` is not a column of the microdata",
                    q.field
                ))
            })?;
            qcol.push(pos);
        }
        let mut scol = Vec::with_capacity(spec.sensitive.len());
        for s in &spec.sensitive {
            let pos = data.sensitive.iter().position(|c| c == s).ok_or_else(|| {
                DeidError::Columns(format!(
                    "sensitive attribute `{s}` is not a column of the microdata"
                ))
            })?;
            scol.push(pos);
        }
        for (row, r) in data.rows.iter().enumerate() {
            if r.qi.len() != data.qi.len() {
                return Err(DeidError::Arity {
                    row,
                    what: "quasi-identifier",
                    expected: data.qi.len(),
                    found: r.qi.len(),
                });
            }
            if r.sensitive.len() != data.sensitive.len() {
                return Err(DeidError::Arity {
                    row,
                    what: "sensitive",
                    expected: data.sensitive.len(),
                    found: r.sensitive.len(),
                });
            }
        }
        let mut qis = Vec::with_capacity(nq);
        let mut row_ids = vec![0u32; n.saturating_mul(nq)];
        let mut shift = 0u32;
        for (q, (qs, &col)) in spec.quasi_identifiers.iter().zip(&qcol).enumerate() {
            let h = &qs.hierarchy;
            // Distinct raw values, sorted, with their first row.
            let mut first: HashMap<&Value, usize> = HashMap::new();
            for (row, r) in data.rows.iter().enumerate() {
                if let Some(v) = r.qi.get(col) {
                    first.entry(v).or_insert(row);
                }
            }
            let mut vals: Vec<(&Value, usize)> = first.into_iter().collect();
            vals.sort_unstable();
            let levels = h.levels();
            let min = if matches!(h, Hierarchy::Date {}) {
                spec.dates.min_date_level().min(levels.saturating_sub(1))
            } else {
                0
            };
            // gen[level][raw] and labels[level].
            let mut labels: Vec<Vec<String>> = Vec::with_capacity(levels);
            let mut gen_ids: Vec<Vec<u32>> = Vec::with_capacity(levels);
            for level in 0..levels {
                let mut ids: HashMap<String, u32> = HashMap::new();
                let mut names = Vec::new();
                let mut g = Vec::with_capacity(vals.len());
                for &(v, row) in &vals {
                    let label = h.label(v, level, parents).ok_or_else(|| DeidError::Type {
                        field: qs.field.clone(),
                        row,
                        kind: h.kind(),
                    })?;
                    let next = names.len() as u32;
                    let id = *ids.entry(label.clone()).or_insert(next);
                    if id == next {
                        names.push(label);
                    }
                    g.push(id);
                }
                labels.push(names);
                gen_ids.push(g);
            }
            // Each level is a function of the one below: single steps, then compositions.
            let mut step: Vec<Vec<u32>> = Vec::with_capacity(levels);
            for level in 0..levels.saturating_sub(1) {
                let (Some(lo), Some(hi), Some(lab)) = (
                    gen_ids.get(level),
                    gen_ids.get(level + 1),
                    labels.get(level),
                ) else {
                    return Err(internal("levels"));
                };
                let mut m = vec![u32::MAX; lab.len()];
                for (&a, &b) in lo.iter().zip(hi) {
                    let slot = m.get_mut(a as usize).ok_or_else(|| internal("level ids"))?;
                    if *slot == u32::MAX {
                        *slot = b;
                    } else if *slot != b {
                        return Err(DeidError::Hierarchy {
                            field: qs.field.clone(),
                            level,
                            next: level + 1,
                        });
                    }
                }
                step.push(m);
            }
            let mut up: Vec<Vec<Vec<u32>>> = Vec::with_capacity(levels);
            for a in 0..levels {
                let count = labels.get(a).map_or(0, Vec::len) as u32;
                let mut maps = vec![(0..count).collect::<Vec<u32>>()];
                for b in a..levels.saturating_sub(1) {
                    let (Some(prev), Some(s)) = (maps.last(), step.get(b)) else {
                        return Err(internal("compose"));
                    };
                    let next: Vec<u32> = prev
                        .iter()
                        .map(|&i| s.get(i as usize).copied().unwrap_or(0))
                        .collect();
                    maps.push(next);
                }
                up.push(maps);
            }
            // Rows: level-0 ids.
            let mut raw_of: HashMap<&Value, u32> = HashMap::with_capacity(vals.len());
            for (i, &(v, _)) in vals.iter().enumerate() {
                let g0 = gen_ids
                    .first()
                    .and_then(|g| g.get(i))
                    .copied()
                    .ok_or_else(|| internal("raw"))?;
                raw_of.insert(v, g0);
            }
            for (row, r) in data.rows.iter().enumerate() {
                let id =
                    r.qi.get(col)
                        .and_then(|v| raw_of.get(v))
                        .copied()
                        .ok_or_else(|| internal("row value"))?;
                if let Some(slot) = row_ids.get_mut(row * nq + q) {
                    *slot = id;
                }
            }
            // Counts per id at each level, entropy loss per level.
            let n0 = labels.first().map_or(0, Vec::len);
            let mut c0 = vec![0u64; n0];
            for row in 0..n {
                if let Some(c) = row_ids
                    .get(row * nq + q)
                    .and_then(|&id| c0.get_mut(id as usize))
                {
                    *c += 1;
                }
            }
            let mut count = Vec::with_capacity(levels);
            let mut level_loss = Vec::with_capacity(levels);
            for level in 0..levels {
                let m = up
                    .first()
                    .and_then(|u| u.get(level))
                    .ok_or_else(|| internal("up"))?;
                let mut c = vec![0u64; labels.get(level).map_or(0, Vec::len)];
                for (id0, &k) in c0.iter().enumerate() {
                    if let Some(slot) = m.get(id0).and_then(|&g| c.get_mut(g as usize)) {
                        *slot += k;
                    }
                }
                let mut loss = 0.0;
                for (id0, &k) in c0.iter().enumerate() {
                    let g = m
                        .get(id0)
                        .and_then(|&g| c.get(g as usize))
                        .copied()
                        .unwrap_or(k);
                    if k > 0 && g > k {
                        loss += k as f64 * (g as f64 / k as f64).log2();
                    }
                }
                count.push(c);
                level_loss.push(loss);
            }
            let bits = (64 - (n0.max(2) as u64 - 1).leading_zeros()).max(1);
            let mask = if bits >= 64 {
                u64::MAX
            } else {
                (1u64 << bits) - 1
            };
            qis.push(QiEnc {
                min,
                levels,
                labels,
                up,
                count,
                level_loss,
                shift,
                mask,
            });
            shift = shift.saturating_add(bits);
            if shift > 64 {
                return Err(DeidError::TooLarge(
                    "the quasi-identifiers' distinct values need more than 64 bits to pack; generalize a QI before the search".into(),
                ));
            }
        }
        // Sensitive values and combinations.
        let mut sa_ids: Vec<HashMap<&str, u32>> = Vec::with_capacity(scol.len());
        for &col in &scol {
            let mut vals: Vec<&str> = data
                .rows
                .iter()
                .filter_map(|r| r.sensitive.get(col).map(String::as_str))
                .collect();
            vals.sort_unstable();
            vals.dedup();
            sa_ids.push(
                vals.into_iter()
                    .enumerate()
                    .map(|(i, v)| (v, i as u32))
                    .collect(),
            );
        }
        let sa_values = sa_ids.iter().map(HashMap::len).collect();
        let mut combo_of: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut combos = Vec::new();
        let mut row_combo = Vec::with_capacity(n);
        let mut buf = Vec::with_capacity(scol.len());
        for r in &data.rows {
            buf.clear();
            for (&col, ids) in scol.iter().zip(&sa_ids) {
                buf.push(
                    r.sensitive
                        .get(col)
                        .and_then(|v| ids.get(v.as_str()))
                        .copied()
                        .unwrap_or(0),
                );
            }
            let next = combos.len() as u32;
            let c = match combo_of.get(&buf) {
                Some(&c) => c,
                None => {
                    combo_of.insert(buf.clone(), next);
                    combos.push(buf.clone());
                    next
                }
            };
            row_combo.push(c);
        }
        // Lattice.
        let radix: Vec<u64> = qis
            .iter()
            .map(|q| q.levels.saturating_sub(q.min) as u64)
            .collect();
        let mut size = 1u64;
        for &r in &radix {
            size = size.saturating_mul(r.max(1));
        }
        if size > MAX_LATTICE {
            return Err(DeidError::TooLarge(format!(
                "a lattice of {size} nodes (at most {MAX_LATTICE})"
            )));
        }
        let mut stride = vec![1u64; nq];
        for q in (0..nq.saturating_sub(1)).rev() {
            let s =
                stride.get(q + 1).copied().unwrap_or(1) * radix.get(q + 1).copied().unwrap_or(1);
            if let Some(slot) = stride.get_mut(q) {
                *slot = s;
            }
        }
        Ok(Encoded {
            qis,
            row_ids,
            row_combo,
            combos,
            sa_values,
            n: n as u64,
            radix,
            stride,
            size,
        })
    }

    fn levels_of(&self, node: u64) -> Vec<usize> {
        self.qis
            .iter()
            .zip(self.radix.iter().zip(&self.stride))
            .map(|(q, (&r, &s))| q.min + ((node / s.max(1)) % r.max(1)) as usize)
            .collect()
    }

    fn height(&self, node: u64) -> usize {
        self.levels_of(node)
            .iter()
            .zip(&self.qis)
            .map(|(l, q)| l - q.min)
            .sum()
    }

    /// `a ≤ b` componentwise.
    fn below(&self, a: u64, b: u64) -> bool {
        self.radix
            .iter()
            .zip(&self.stride)
            .all(|(&r, &s)| (a / s.max(1)) % r.max(1) <= (b / s.max(1)) % r.max(1))
    }

    fn successors(&self, node: u64) -> impl Iterator<Item = u64> + '_ {
        self.radix
            .iter()
            .zip(&self.stride)
            .filter_map(move |(&r, &s)| {
                let d = (node / s.max(1)) % r.max(1);
                (d + 1 < r).then(|| node + s)
            })
    }

    fn predecessors(&self, node: u64) -> impl Iterator<Item = u64> + '_ {
        self.radix
            .iter()
            .zip(&self.stride)
            .filter_map(move |(&r, &s)| {
                let d = (node / s.max(1)) % r.max(1);
                (d > 0).then(|| node - s)
            })
    }

    /// The key of row `row` at `levels`.
    fn row_key(&self, row: usize, levels: &[usize]) -> Result<u64, DeidError> {
        let nq = self.qis.len();
        let mut key = 0u64;
        for (q, (enc, &l)) in self.qis.iter().zip(levels).enumerate() {
            let id0 = self
                .row_ids
                .get(row * nq + q)
                .copied()
                .ok_or_else(|| internal("row ids"))?;
            let id = enc
                .map(0, l)
                .and_then(|m| m.get(id0 as usize))
                .copied()
                .ok_or_else(|| internal("row map"))?;
            key |= u64::from(id) << enc.shift;
        }
        Ok(key)
    }

    /// The raw rows as cells at `levels`, not collapsed (the naive baseline's input).
    fn raw_cells(&self, levels: &[usize]) -> Result<Vec<Cell>, DeidError> {
        let mut cells = Vec::with_capacity(self.n as usize);
        for (row, &combo) in self.row_combo.iter().enumerate() {
            cells.push(Cell {
                key: self.row_key(row, levels)?,
                combo,
                count: 1,
            });
        }
        Ok(cells)
    }

    /// Remaps cells from `from` levels to `to` levels, then sorts and merges them.
    fn roll_up(
        &self,
        cells: &[Cell],
        from: &[usize],
        to: &[usize],
    ) -> Result<Vec<Cell>, DeidError> {
        let mut maps: Vec<(&[u32], u32, u64)> = Vec::new();
        let mut keep_mask = 0u64;
        for (enc, (&a, &b)) in self.qis.iter().zip(from.iter().zip(to)) {
            if a == b {
                keep_mask |= enc.mask << enc.shift;
            } else {
                maps.push((
                    enc.map(a, b).ok_or_else(|| internal("roll-up levels"))?,
                    enc.shift,
                    enc.mask,
                ));
            }
        }
        let mut out = Vec::with_capacity(cells.len());
        for c in cells {
            let mut key = c.key & keep_mask;
            for &(m, shift, mask) in &maps {
                let id = ((c.key >> shift) & mask) as usize;
                let g = m.get(id).copied().ok_or_else(|| internal("roll-up id"))?;
                key |= u64::from(g) << shift;
            }
            out.push(Cell {
                key,
                combo: c.combo,
                count: c.count,
            });
        }
        merge(&mut out);
        Ok(out)
    }
}

fn merge(cells: &mut Vec<Cell>) {
    cells.sort_unstable_by_key(|c| (c.key, c.combo));
    cells.dedup_by(|b, a| {
        if a.key == b.key && a.combo == b.combo {
            a.count = a.count.saturating_add(b.count);
            true
        } else {
            false
        }
    });
}

/// An equivalence class: a run of cells with the same key.
#[derive(Clone, Copy, Debug)]
struct Class {
    start: usize,
    end: usize,
    size: u64,
}

fn classes(cells: &[Cell]) -> Vec<Class> {
    let mut out: Vec<Class> = Vec::new();
    let mut prev: Option<u64> = None;
    for (i, c) in cells.iter().enumerate() {
        if prev == Some(c.key) {
            if let Some(last) = out.last_mut() {
                last.end = i + 1;
                last.size += u64::from(c.count);
            }
        } else {
            out.push(Class {
                start: i,
                end: i + 1,
                size: u64::from(c.count),
            });
            prev = Some(c.key);
        }
    }
    out
}

/// The privacy criteria, resolved.
struct Criteria {
    k: u64,
    /// Distinct values every class needs (monotone).
    distinct: u64,
    entropy: Option<f64>,
    t: Option<f64>,
    budget: u64,
}

impl Criteria {
    fn new(spec: &ReleaseSpec, n: u64) -> Self {
        let budget = (spec.max_suppression * n as f64).floor();
        Criteria {
            k: u64::from(spec.k),
            distinct: spec.l.map_or(0, |l| l.distinct_needed()),
            entropy: match spec.l {
                Some(LDiversity::Entropy(x)) => Some(x),
                _ => None,
            },
            t: spec.t,
            budget: if budget.is_finite() && budget >= 0.0 {
                (budget as u64).min(n)
            } else {
                0
            },
        }
    }
}

/// Scratch for per-class sensitive histograms.
struct Hist {
    buf: Vec<(usize, u64)>,
}

impl Hist {
    /// The class's histogram of attribute `a`, sorted by value id, merged.
    fn of(&mut self, enc: &Encoded, cells: &[Cell], class: Class, a: usize) -> &[(usize, u64)] {
        self.buf.clear();
        for c in cells.get(class.start..class.end).unwrap_or(&[]) {
            let v = enc
                .combos
                .get(c.combo as usize)
                .and_then(|cv| cv.get(a))
                .copied()
                .unwrap_or(0);
            self.buf.push((v as usize, u64::from(c.count)));
        }
        if enc.combos.first().map_or(0, Vec::len) > 1 {
            self.buf.sort_unstable();
            self.buf.dedup_by(|b, a| {
                if a.0 == b.0 {
                    a.1 += b.1;
                    true
                } else {
                    false
                }
            });
        }
        &self.buf
    }
}

/// A node's classes with their fate.
struct Evaluation {
    cells: Vec<Cell>,
    classes: Vec<Class>,
    kept: Vec<bool>,
    suppressed: u64,
}

/// Marks the classes failing the monotone criteria (and, if `full`, all criteria).
fn judge(enc: &Encoded, crit: &Criteria, cells: Vec<Cell>, full: bool) -> Evaluation {
    let classes = classes(&cells);
    let n_sa = enc.sa_values.len();
    let mut hist = Hist { buf: Vec::new() };
    let mut kept = Vec::with_capacity(classes.len());
    let mut suppressed = 0u64;
    for &c in &classes {
        let mut ok = c.size >= crit.k;
        if ok && (crit.distinct > 1 || (full && crit.entropy.is_some())) {
            for a in 0..n_sa {
                let h = hist.of(enc, &cells, c, a);
                if (h.len() as u64) < crit.distinct {
                    ok = false;
                    break;
                }
                if full
                    && let Some(x) = crit.entropy
                    && exp_l(entropy(h.iter().map(|p| p.1), c.size)) < x
                {
                    ok = false;
                    break;
                }
            }
        }
        if !ok {
            suppressed += c.size;
        }
        kept.push(ok);
    }
    if full && let Some(t) = crit.t {
        // t against the released distribution, which suppression changes: repeat until stable.
        while suppressed <= crit.budget {
            let dist = released_dist(enc, &cells, &classes, &kept);
            let mut newly = 0u64;
            for (i, &c) in classes.iter().enumerate() {
                if !kept.get(i).copied().unwrap_or(false) {
                    continue;
                }
                let far = (0..n_sa).any(|a| {
                    let d = dist.get(a).map(Vec::as_slice).unwrap_or(&[]);
                    emd(hist.of(enc, &cells, c, a).iter().copied(), c.size, d) > t
                });
                if far {
                    if let Some(k) = kept.get_mut(i) {
                        *k = false;
                    }
                    suppressed += c.size;
                    newly += 1;
                }
            }
            if newly == 0 {
                break;
            }
        }
    }
    Evaluation {
        cells,
        classes,
        kept,
        suppressed,
    }
}

/// Per attribute, the distribution of the kept records' values.
fn released_dist(enc: &Encoded, cells: &[Cell], classes: &[Class], kept: &[bool]) -> Vec<Vec<f64>> {
    let mut counts: Vec<Vec<u64>> = enc.sa_values.iter().map(|&m| vec![0; m]).collect();
    let mut total = 0u64;
    for (c, _) in classes.iter().zip(kept).filter(|(_, k)| **k) {
        for cell in cells.get(c.start..c.end).unwrap_or(&[]) {
            total += u64::from(cell.count);
            if let Some(cv) = enc.combos.get(cell.combo as usize) {
                for (a, &v) in cv.iter().enumerate() {
                    if let Some(x) = counts.get_mut(a).and_then(|h| h.get_mut(v as usize)) {
                        *x += u64::from(cell.count);
                    }
                }
            }
        }
    }
    counts
        .iter()
        .map(|h| h.iter().map(|&c| c as f64 / total.max(1) as f64).collect())
        .collect()
}

/// The information loss of an evaluated node and its admissible lower bound.
fn loss(enc: &Encoded, utility: Utility, levels: &[usize], ev: &Evaluation) -> f64 {
    match utility {
        Utility::Entropy => {
            let mut l = entropy_lb(enc, levels);
            let n = enc.n as f64;
            for (c, _) in ev.classes.iter().zip(&ev.kept).filter(|(_, k)| !**k) {
                let key = ev.cells.get(c.start).map_or(0, |x| x.key);
                let mut per = 0.0;
                for (q, &lv) in enc.qis.iter().zip(levels) {
                    let id = ((key >> q.shift) & q.mask) as usize;
                    let g = q
                        .count
                        .get(lv)
                        .and_then(|cnt| cnt.get(id))
                        .copied()
                        .unwrap_or(1)
                        .max(1);
                    per += (n / g as f64).log2().max(0.0);
                }
                l += c.size as f64 * per;
            }
            l
        }
        Utility::Discernibility => {
            let mut dm = 0u128;
            for (c, k) in ev.classes.iter().zip(&ev.kept) {
                dm += if *k {
                    u128::from(c.size) * u128::from(c.size)
                } else {
                    u128::from(c.size) * u128::from(enc.n)
                };
            }
            dm as f64
        }
    }
}

fn entropy_lb(enc: &Encoded, levels: &[usize]) -> f64 {
    enc.qis
        .iter()
        .zip(levels)
        .map(|(q, &l)| q.level_loss.get(l).copied().unwrap_or(0.0))
        .sum()
}

fn dm_nosupp(ev: &Evaluation) -> f64 {
    ev.classes
        .iter()
        .map(|c| u128::from(c.size) * u128::from(c.size))
        .sum::<u128>() as f64
}

/// The search state: the bottom cells, the cache of evaluated nodes' cells, the tags.
struct Search<'a> {
    enc: &'a Encoded,
    crit: Criteria,
    bottom: Vec<Cell>,
    bottom_levels: Vec<usize>,
    cache: Vec<(u64, Vec<Cell>)>,
    cached_cells: usize,
    evaluated: u64,
    status: Vec<u8>,
    /// Discernibility without suppression of the evaluated nodes (a monotone lower bound).
    dm_seen: Vec<(u64, f64)>,
}

impl<'a> Search<'a> {
    fn new(enc: &'a Encoded, spec: &ReleaseSpec) -> Result<Self, DeidError> {
        let bottom_levels: Vec<usize> = enc.qis.iter().map(|q| q.min).collect();
        let mut bottom = enc.raw_cells(&bottom_levels)?;
        merge(&mut bottom);
        Ok(Search {
            enc,
            crit: Criteria::new(spec, enc.n),
            bottom,
            bottom_levels,
            cache: Vec::new(),
            cached_cells: 0,
            evaluated: 0,
            status: vec![UNKNOWN; enc.size as usize],
            dm_seen: Vec::new(),
        })
    }

    /// A node's cells, rolled up from the smallest cached node below it (or the bottom).
    fn cells(&mut self, node: u64) -> Result<Vec<Cell>, DeidError> {
        let target = self.enc.levels_of(node);
        let best = self
            .cache
            .iter()
            .filter(|(m, _)| self.enc.below(*m, node))
            .min_by_key(|(m, c)| (c.len(), *m));
        let cells = match best {
            Some((m, c)) if *m == node => c.clone(),
            Some((m, c)) => self.enc.roll_up(c, &self.enc.levels_of(*m), &target)?,
            None => self
                .enc
                .roll_up(&self.bottom, &self.bottom_levels, &target)?,
        };
        if cells.len() <= CACHE_CELLS / 4 && !self.cache.iter().any(|(m, _)| *m == node) {
            self.cached_cells += cells.len();
            self.cache.push((node, cells.clone()));
            while self.cached_cells > CACHE_CELLS {
                // Evict the largest.
                let Some(i) = self
                    .cache
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, (_, c))| c.len())
                    .map(|(i, _)| i)
                else {
                    break;
                };
                let (_, c) = self.cache.swap_remove(i);
                self.cached_cells -= c.len();
            }
        }
        Ok(cells)
    }

    fn evaluate(&mut self, node: u64, full: bool) -> Result<Evaluation, DeidError> {
        let cells = self.cells(node)?;
        self.evaluated += 1;
        let ev = judge(self.enc, &self.crit, cells, full);
        self.dm_seen.push((node, dm_nosupp(&ev)));
        Ok(ev)
    }

    fn tag(&mut self, node: u64, sat: bool) {
        let (mark, mut stack) = (if sat { SAT } else { FAIL }, vec![node]);
        if let Some(s) = self.status.get_mut(node as usize) {
            *s = mark;
        }
        while let Some(x) = stack.pop() {
            let next: Vec<u64> = if sat {
                self.enc.successors(x).collect()
            } else {
                self.enc.predecessors(x).collect()
            };
            for y in next {
                if let Some(s) = self.status.get_mut(y as usize)
                    && *s == UNKNOWN
                {
                    *s = mark;
                    stack.push(y);
                }
            }
        }
    }

    fn status(&self, node: u64) -> u8 {
        self.status.get(node as usize).copied().unwrap_or(FAIL)
    }

    /// Flash: binary search on chains, predictive tagging. Every node ends tagged.
    fn tag_all(&mut self, progress: &mut dyn FnMut(Progress)) -> Result<(), DeidError> {
        let mut order: Vec<u64> = (0..self.enc.size).collect();
        order.sort_by_cached_key(|&n| (self.enc.height(n), n));
        for &start in &order {
            if self.status(start) != UNKNOWN {
                continue;
            }
            let mut path = vec![start];
            let mut cur = start;
            while let Some(next) = self
                .enc
                .successors(cur)
                .find(|&s| self.status(s) == UNKNOWN)
            {
                path.push(next);
                cur = next;
            }
            let (mut lo, mut hi) = (0usize, path.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let node = path.get(mid).copied().ok_or_else(|| internal("path"))?;
                let sat = match self.status(node) {
                    SAT => true,
                    FAIL => false,
                    _ => {
                        let ev = self.evaluate(node, false)?;
                        let sat = ev.suppressed <= self.crit.budget;
                        self.tag(node, sat);
                        progress(Progress {
                            phase: Phase::Search,
                            evaluated: self.evaluated,
                            lattice: self.enc.size,
                        });
                        sat
                    }
                };
                if sat {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
        }
        Ok(())
    }
}

/// The chosen node, its evaluation and its loss.
struct Best {
    node: u64,
    loss: f64,
    ev: Evaluation,
}

fn better(loss: f64, levels: &[usize], best: &Option<Best>, enc: &Encoded) -> bool {
    match best {
        None => true,
        Some(b) => match loss.total_cmp(&b.loss) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Greater => false,
            std::cmp::Ordering::Equal => levels < enc.levels_of(b.node).as_slice(),
        },
    }
}

/// Runs the search and produces the release plan.
pub fn plan(
    spec: &ReleaseSpec,
    data: &Microdata,
    parents: &Parents,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan, DeidError> {
    let enc = Encoded::new(spec, data, parents)?;
    progress(Progress {
        phase: Phase::Encoded,
        evaluated: 0,
        lattice: enc.size,
    });
    let mut s = Search::new(&enc, spec)?;
    s.tag_all(progress)?;
    let mut candidates: Vec<u64> = (0..enc.size).filter(|&n| s.status(n) == SAT).collect();
    let no_solution = DeidError::NoSolution {
        lattice: enc.size,
        budget: s.crit.budget,
        records: enc.n,
    };
    if candidates.is_empty() {
        return Err(no_solution);
    }
    // Branch and bound.
    let lb_entropy = |n: u64| entropy_lb(&enc, &enc.levels_of(n));
    match spec.utility {
        Utility::Entropy => {
            candidates.sort_by(|&a, &b| lb_entropy(a).total_cmp(&lb_entropy(b)).then(a.cmp(&b)))
        }
        Utility::Discernibility => candidates.sort_by_cached_key(|&n| (enc.height(n), n)),
    }
    let mut best: Option<Best> = None;
    for &c in &candidates {
        if let Some(b) = &best {
            let lb = match spec.utility {
                Utility::Entropy => lb_entropy(c),
                Utility::Discernibility => s
                    .dm_seen
                    .iter()
                    .filter(|(m, _)| enc.below(*m, c))
                    .map(|p| p.1)
                    .fold(enc.n as f64, f64::max),
            };
            if lb > b.loss {
                if spec.utility == Utility::Entropy {
                    break;
                }
                continue;
            }
        }
        let ev = s.evaluate(c, true)?;
        progress(Progress {
            phase: Phase::Optimize,
            evaluated: s.evaluated,
            lattice: enc.size,
        });
        if ev.suppressed > s.crit.budget {
            continue;
        }
        let levels = enc.levels_of(c);
        let l = loss(&enc, spec.utility, &levels, &ev);
        if better(l, &levels, &best, &enc) {
            best = Some(Best {
                node: c,
                loss: l,
                ev,
            });
        }
    }
    let Some(best) = best else {
        return Err(no_solution);
    };
    progress(Progress {
        phase: Phase::Release,
        evaluated: s.evaluated,
        lattice: enc.size,
    });
    release(spec, &enc, best, s.evaluated)
}

/// The naive baseline for the benchmark: every node evaluated from the raw rows (no collapsing,
/// no pruning, no roll-up), the same criteria and loss. Returns the chosen levels, the loss
/// and the number of nodes evaluated.
pub fn naive(
    spec: &ReleaseSpec,
    data: &Microdata,
    parents: &Parents,
) -> Result<(Vec<u32>, f64, u64), DeidError> {
    let enc = Encoded::new(spec, data, parents)?;
    let crit = Criteria::new(spec, enc.n);
    let mut best: Option<Best> = None;
    for node in 0..enc.size {
        let levels = enc.levels_of(node);
        let mut cells = enc.raw_cells(&levels)?;
        merge(&mut cells);
        let ev = judge(&enc, &crit, cells, true);
        if ev.suppressed > crit.budget {
            continue;
        }
        let l = loss(&enc, spec.utility, &levels, &ev);
        if better(l, &levels, &best, &enc) {
            best = Some(Best { node, loss: l, ev });
        }
    }
    let b = best.ok_or(DeidError::NoSolution {
        lattice: enc.size,
        budget: crit.budget,
        records: enc.n,
    })?;
    Ok((
        enc.levels_of(b.node).iter().map(|&l| l as u32).collect(),
        b.loss,
        enc.size,
    ))
}

/// All satisfying nodes with their loss, by brute force (tests: the optimum's check).
#[doc(hidden)]
pub fn brute_force(
    spec: &ReleaseSpec,
    data: &Microdata,
    parents: &Parents,
) -> Result<Vec<(Vec<u32>, f64)>, DeidError> {
    let enc = Encoded::new(spec, data, parents)?;
    let crit = Criteria::new(spec, enc.n);
    let mut out = Vec::new();
    for node in 0..enc.size {
        let levels = enc.levels_of(node);
        let mut cells = enc.raw_cells(&levels)?;
        merge(&mut cells);
        let ev = judge(&enc, &crit, cells, true);
        if ev.suppressed <= crit.budget {
            out.push((
                levels.iter().map(|&l| l as u32).collect(),
                loss(&enc, spec.utility, &levels, &ev),
            ));
        }
    }
    Ok(out)
}

fn release(
    spec: &ReleaseSpec,
    enc: &Encoded,
    best: Best,
    evaluated: u64,
) -> Result<Plan, DeidError> {
    let levels = enc.levels_of(best.node);
    let ev = &best.ev;
    // Kept keys, sorted (cells are sorted by key).
    let kept_keys: Vec<u64> = ev
        .classes
        .iter()
        .zip(&ev.kept)
        .filter(|(_, k)| **k)
        .filter_map(|(c, _)| ev.cells.get(c.start).map(|x| x.key))
        .collect();
    let nq = enc.qis.len();
    let (mut kept, mut suppressed) = (Vec::new(), Vec::new());
    let mut ids = Vec::new();
    for row in 0..enc.n as usize {
        let key = enc.row_key(row, &levels)?;
        if kept_keys.binary_search(&key).is_ok() {
            kept.push(row);
            for q in &enc.qis {
                ids.push(((key >> q.shift) & q.mask) as u32);
            }
        } else {
            suppressed.push(row);
        }
    }
    let dict: Vec<Vec<String>> = enc
        .qis
        .iter()
        .zip(&levels)
        .map(|(q, &l)| q.labels.get(l).cloned().unwrap_or_default())
        .collect();
    // Figures from the kept classes.
    let dist = released_dist(enc, &ev.cells, &ev.classes, &ev.kept);
    let n_sa = enc.sa_values.len();
    let mut accs = vec![Acc::new(); n_sa];
    let mut hist = Hist { buf: Vec::new() };
    let mut k = u64::MAX;
    let mut sizes: Vec<(u64, u64)> = Vec::new();
    let mut by_size: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for (c, _) in ev.classes.iter().zip(&ev.kept).filter(|(_, k)| **k) {
        k = k.min(c.size);
        sizes.push((c.size, c.size));
        *by_size.entry(c.size).or_insert(0) += 1;
        for (a, acc) in accs.iter_mut().enumerate() {
            let h = hist.of(enc, &ev.cells, *c, a);
            let e = entropy(h.iter().map(|p| p.1), c.size);
            let t = emd(
                h.iter().copied(),
                c.size,
                dist.get(a).map(Vec::as_slice).unwrap_or(&[]),
            );
            acc.add(h.len() as u64, e, t);
        }
    }
    let released = kept.len() as u64;
    let figures = Figures {
        records: released,
        classes: sizes.len() as u64,
        k: if sizes.is_empty() { 0 } else { k },
        sensitive: accs
            .iter()
            .zip(&spec.sensitive)
            .map(|(a, f)| a.finish(f))
            .collect(),
    };
    let n = enc.n;
    let normalized = match spec.utility {
        Utility::Entropy => {
            let top: f64 = enc
                .qis
                .iter()
                .map(|q| q.level_loss.last().copied().unwrap_or(0.0))
                .sum();
            if top > 0.0 {
                (best.loss / top).clamp(0.0, 1.0)
            } else {
                0.0
            }
        }
        Utility::Discernibility => {
            let (nf, span) = (n as f64, (n as f64) * (n as f64) - n as f64);
            if span > 0.0 {
                ((best.loss - nf) / span).clamp(0.0, 1.0)
            } else {
                0.0
            }
        }
    };
    let node = Node {
        levels: levels.iter().map(|&l| l as u32).collect(),
        names: spec
            .quasi_identifiers
            .iter()
            .zip(&levels)
            .map(|(q, &l)| q.hierarchy.level_name(l))
            .collect(),
    };
    let report = Report {
        version: 1,
        dataset: spec.dataset.clone(),
        spec_hash: spec.hash_hex(),
        records: n,
        figures,
        risk: risk(&sizes, spec.risk_threshold),
        suppressed: ev.suppressed,
        suppressed_share: if n == 0 {
            0.0
        } else {
            ev.suppressed as f64 / n as f64
        },
        levels: spec
            .quasi_identifiers
            .iter()
            .zip(node.levels.iter().zip(&node.names))
            .map(|(q, (&level, name))| QiLevel {
                field: q.field.clone(),
                level,
                name: name.clone(),
            })
            .collect(),
        utility: match spec.utility {
            Utility::Entropy => "entropy".into(),
            Utility::Discernibility => "discernibility".into(),
        },
        information_loss: best.loss,
        information_loss_normalized: normalized,
        class_sizes: by_size.into_iter().collect(),
        lattice_size: enc.size,
        nodes_evaluated: evaluated,
    };
    let _ = nq;
    Ok(Plan {
        node,
        fields: spec
            .quasi_identifiers
            .iter()
            .map(|q| q.field.clone())
            .collect(),
        kept,
        suppressed,
        report,
        lattice_size: enc.size,
        nodes_evaluated: evaluated,
        dict,
        ids,
    })
}
