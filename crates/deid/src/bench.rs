//! `medspace bench deid`: the search on synthetic persons, against the naive search.
//!
//! Synthetic persons have 6 quasi-identifiers — age (skewed to adults), sex, a 5-digit postal
//! code (Zipf-skewed regions and codes within a region), race, ethnicity, admission date (five
//! years, shifted per patient so days are allowed) — and a diagnosis group (20 groups, Zipf,
//! correlated with age) as the sensitive attribute. The spec: k = 5, distinct l = 2, at most
//! 5 % suppressed, non-uniform entropy. The baseline is the naive search: every lattice node
//! evaluated from the raw rows (no collapsing, no pruning, no roll-up), the same criteria and
//! loss; it runs on a prefix of the persons ([`BASELINE_ROWS`]) when there are more, and the
//! search is timed again on that same prefix for the ratio.

use std::time::Instant;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::hierarchy::days_from_civil;
use crate::search::{Phase, Progress, naive, plan};
use crate::spec::ReleaseSpec;
use crate::{DeidError, Microdata, Parents, Record, Value};

/// Rows the naive baseline runs on at most (it evaluates every node from every row).
pub const BASELINE_ROWS: usize = 1_000_000;

/// The benchmark's spec.
pub const SPEC: &str = r#"{
  "version": 1, "dataset": "bench/synthetic",
  "tables": {"person": ["person_id", "year_of_birth", "gender_concept_id", "race_concept_id", "ethnicity_concept_id"]},
  "quasi_identifiers": [
    {"field": "age", "hierarchy": {"kind": "interval", "widths": [5, 10, 20]}},
    {"field": "sex", "hierarchy": {"kind": "suppress"}},
    {"field": "zip", "hierarchy": {"kind": "prefix", "keep": [4, 3, 2, 1]}},
    {"field": "race", "hierarchy": {"kind": "suppress"}},
    {"field": "ethnicity", "hierarchy": {"kind": "suppress"}},
    {"field": "admitted", "hierarchy": {"kind": "date"}}
  ],
  "sensitive": ["diagnosis"],
  "k": 5, "l": {"distinct": 2}, "max_suppression": 0.05,
  "dates": {"shift_days": 30}
}"#;

fn unif(r: &mut ChaCha20Rng) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// Cumulative Zipf weights over `n` items with exponent `s`.
fn zipf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    let mut c: Vec<f64> = (1..=n)
        .map(|i| {
            acc += 1.0 / (i as f64).powf(s);
            acc
        })
        .collect();
    for x in &mut c {
        *x /= acc;
    }
    c
}

fn pick(cum: &[f64], u: f64) -> usize {
    cum.partition_point(|&c| c < u)
        .min(cum.len().saturating_sub(1))
}

/// `persons` synthetic persons from `seed`.
pub fn synthetic(persons: usize, seed: u64) -> Microdata {
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    let regions = zipf(60, 1.1);
    let locals = zipf(50, 1.0);
    let races = [0.62, 0.13, 0.06, 0.012, 0.003, 0.175];
    let race_cum: Vec<f64> = races
        .iter()
        .scan(0.0, |a, x| {
            *a += x;
            Some(*a)
        })
        .collect();
    let dx = zipf(20, 0.9);
    let start = days_from_civil(2018, 1, 1);
    let mut rows = Vec::with_capacity(persons);
    for _ in 0..persons {
        let age = ((unif(&mut r).powf(0.8) * 90.0) + 10.0 * unif(&mut r))
            .floor()
            .min(104.0) as i64;
        let sex = if unif(&mut r) < 0.51 { "F" } else { "M" };
        let region = pick(&regions, unif(&mut r));
        let local = pick(&locals, unif(&mut r));
        let zip = format!("{:03}{:02}", 100 + region * 7, local);
        let race = pick(&race_cum, unif(&mut r));
        let eth = if unif(&mut r) < 0.82 {
            "not hispanic"
        } else if unif(&mut r) < 0.9 {
            "hispanic"
        } else {
            "unknown"
        };
        let admitted = start + (unif(&mut r) * 1826.0) as i32;
        // Older persons have the later diagnosis groups more often.
        let u = (unif(&mut r) + age as f64 / 300.0).fract();
        let d = pick(&dx, u);
        rows.push(Record {
            qi: vec![
                Value::Int(age),
                Value::Text(sex.into()),
                Value::Text(zip),
                Value::Text(format!("race-{race}")),
                Value::Text(eth.into()),
                Value::Date(admitted),
            ],
            sensitive: vec![format!("dx-{d:02}")],
        });
    }
    Microdata {
        qi: ["age", "sex", "zip", "race", "ethnicity", "admitted"]
            .map(String::from)
            .to_vec(),
        sensitive: vec!["diagnosis".into()],
        rows,
    }
}

/// The naive baseline's figures.
#[derive(Clone, Debug)]
pub struct Baseline {
    /// Rows it ran on (a prefix of the persons when fewer than them).
    pub rows: usize,
    pub secs: f64,
    pub nodes_evaluated: u64,
    /// The search's time on the same rows, measured the same way.
    pub search_secs: f64,
    /// Both chose the same node.
    pub same_node: bool,
}

/// What the benchmark measured.
#[derive(Clone, Debug)]
pub struct BenchFigures {
    pub persons: usize,
    pub lattice_size: u64,
    pub nodes_evaluated: u64,
    pub encode_secs: f64,
    pub search_secs: f64,
    pub release_secs: f64,
    pub information_loss: f64,
    pub information_loss_normalized: f64,
    pub k: u64,
    pub l: u64,
    pub suppressed: u64,
    pub suppressed_share: f64,
    pub node: Vec<String>,
    pub baseline: Baseline,
}

/// Runs the benchmark.
pub fn run(
    persons: usize,
    seed: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<BenchFigures, DeidError> {
    let spec = ReleaseSpec::from_json(SPEC)?;
    let data = synthetic(persons, seed);
    let parents = Parents::new();
    let t0 = Instant::now();
    let (mut encoded, mut searched) = (None, None);
    let p = plan(&spec, &data, &parents, &mut |p: Progress| {
        match p.phase {
            Phase::Encoded => encoded = Some(t0.elapsed()),
            Phase::Release => searched = Some(t0.elapsed()),
            _ => {}
        }
        progress(p);
    })?;
    // Producing the release: the plan's rows as labels with their sensitive values, the report.
    let labels = p.labels();
    let sensitive = p.sensitive(&data);
    let json = p.report.to_json();
    let html = p.report.to_html();
    let total = t0.elapsed();
    let (encoded, searched) = (encoded.unwrap_or_default(), searched.unwrap_or(total));
    std::hint::black_box((labels.len(), sensitive.len(), json.len(), html.len()));

    let rows = persons.min(BASELINE_ROWS);
    let prefix = Microdata {
        rows: data.rows.get(..rows).unwrap_or(&data.rows).to_vec(),
        ..data.clone()
    };
    let t1 = Instant::now();
    let ours = plan(&spec, &prefix, &parents, &mut |_| {})?;
    let ours_secs = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let (naive_levels, _, naive_nodes) = naive(&spec, &prefix, &parents)?;
    let naive_secs = t2.elapsed().as_secs_f64();

    Ok(BenchFigures {
        persons,
        lattice_size: p.lattice_size,
        nodes_evaluated: p.nodes_evaluated,
        encode_secs: encoded.as_secs_f64(),
        search_secs: (searched - encoded).as_secs_f64(),
        release_secs: (total - searched).as_secs_f64(),
        information_loss: p.report.information_loss,
        information_loss_normalized: p.report.information_loss_normalized,
        k: p.report.figures.k,
        l: p.report.figures.distinct_l().unwrap_or(0),
        suppressed: p.report.suppressed,
        suppressed_share: p.report.suppressed_share,
        node: p
            .report
            .levels
            .iter()
            .map(|l| format!("{}={}", l.field, l.name))
            .collect(),
        baseline: Baseline {
            rows,
            secs: naive_secs,
            nodes_evaluated: naive_nodes,
            search_secs: ours_secs,
            same_node: ours.node.levels == naive_levels,
        },
    })
}

/// Runs the benchmark and prints its figures.
pub fn print(persons: usize, seed: u64) -> Result<(), DeidError> {
    let f = run(persons, seed, &mut |_| {})?;
    println!(
        "deid bench: {} synthetic persons (seed {seed}), 6 quasi-identifiers, k=5, distinct l=2, max suppression 5 %",
        f.persons
    );
    println!(
        "  lattice: {} nodes, {} evaluated ({:.1} %)",
        f.lattice_size,
        f.nodes_evaluated,
        100.0 * f.nodes_evaluated as f64 / f.lattice_size.max(1) as f64
    );
    println!(
        "  encode {:.2} s, search {:.2} s, release {:.2} s, total {:.2} s",
        f.encode_secs,
        f.search_secs,
        f.release_secs,
        f.encode_secs + f.search_secs + f.release_secs
    );
    println!("  chosen node: {}", f.node.join(", "));
    println!(
        "  achieved: k={}, distinct l={}, suppressed {} ({:.2} %)",
        f.k,
        f.l,
        f.suppressed,
        100.0 * f.suppressed_share
    );
    println!(
        "  information loss (non-uniform entropy): {:.1} bits, normalized {:.4}",
        f.information_loss, f.information_loss_normalized
    );
    let b = &f.baseline;
    let on = if b.rows < f.persons {
        format!(
            "on the first {} persons only (naive is too slow for all)",
            b.rows
        )
    } else {
        "on the same persons".to_string()
    };
    println!(
        "  baseline, naive search (every node from the raw rows, no pruning, no roll-up) {on}: {:.2} s, {} nodes",
        b.secs, b.nodes_evaluated
    );
    println!(
        "  this search on the same rows: {:.2} s; speed-up {:.1}x; same node chosen: {}",
        b.search_secs,
        b.secs / b.search_secs.max(1e-9),
        if b.same_node { "yes" } else { "NO" }
    );
    Ok(())
}
