//! `medspace bench glm`: a federated logistic regression (three hospitals, Newton/IRLS over
//! secure aggregation) against the same fit over the pooled data in one process.
//!
//! Each hospital gets N synthetic persons as one Arrow `RecordBatch` of `Float64` columns: an
//! intercept column, ten covariates (age, sex, BMI, systolic blood pressure, LDL, HbA1c, eGFR,
//! smoker, diabetes, CRP — in natural units, so the information matrix is as ill-scaled as real
//! data makes it) and a binary outcome drawn from a logistic model with known coefficients
//! ([`TRUE_BETA`], seeded). The pooled side concatenates the three batches into one batch of 3N
//! rows and runs the IRLS of `medspace_privacy::glm` over its columns. The federated side runs,
//! per iteration, one hospital after another (as the data plane does today), each computing
//! [`medspace_privacy::glm::site_stats_columns`] over its own columns and encoding them
//! (exact fixed point), then one full secure aggregation round over the three vectors (dealing,
//! share checking, double masking, reveals and unmasking, `medspace_privacy::secagg`), decoding
//! the sum and taking the Newton step. Both sides compute their statistics the same way (the same
//! kernel, the same number of threads) and report wall time per iteration and in total; the
//! benchmark fails unless both converge in the same number of iterations to the same
//! coefficients (max relative difference below 1e-9).

use datafusion::arrow::array::{Array, ArrayRef, Float64Array};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use medspace_privacy::glm::{
    self, Columns, Family, GlmError, Irls, Options, Progress, Stats, decode, encode,
    site_stats_columns,
};
use medspace_privacy::secagg::{self, SecAggError};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

/// The hospitals.
pub const SITES: usize = 3;
/// Names of the design's columns (intercept first) and of the outcome.
pub const COLUMNS: [&str; 11] = [
    "intercept",
    "age",
    "sex",
    "bmi",
    "sbp",
    "ldl",
    "hba1c",
    "egfr",
    "smoker",
    "diabetes",
    "crp",
];
/// The coefficients the outcome is drawn from (prevalence about 17%).
pub const TRUE_BETA: [f64; 11] = [
    -8.0, 0.03, -0.25, 0.05, 0.01, 0.2, 0.3, -0.01, 0.6, 0.5, 0.05,
];
/// Agreement required between the federated and the pooled coefficients.
pub const AGREEMENT: f64 = 1e-9;
/// The target ratio of federated to pooled time.
pub const TARGET_RATIO: f64 = 2.0;

const P: usize = COLUMNS.len();

/// Errors of the GLM benchmark.
#[derive(Debug, thiserror::Error)]
pub enum GlmBenchError {
    /// The GLM statistics or the IRLS failed.
    #[error("glm: {0}")]
    Glm(#[from] GlmError),
    /// The secure aggregation round failed.
    #[error("secure aggregation: {0}")]
    SecAgg(#[from] SecAggError),
    /// Building the Arrow batches failed.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// A column is missing or not `Float64` without nulls.
    #[error("column {0} is missing or not a non-null Float64 column")]
    Column(usize),
    /// A worker thread panicked.
    #[error("a statistics thread panicked")]
    Thread,
    /// A parameter out of range.
    #[error("invalid benchmark parameter: {name}={value} ({need})")]
    Parameter {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: usize,
        /// What it must be.
        need: &'static str,
    },
    /// The two sides disagree.
    #[error(
        "federated and pooled fits disagree: iterations {federated_iterations} vs \
         {pooled_iterations}, max relative coefficient difference {max_rel_diff:e}"
    )]
    Disagree {
        /// Federated iterations.
        federated_iterations: u32,
        /// Pooled iterations.
        pooled_iterations: u32,
        /// Max relative difference.
        max_rel_diff: f64,
    },
}

/// Benchmark options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlmBenchOptions {
    /// Persons per hospital.
    pub persons_per_site: usize,
    /// Threads of each statistics pass (both sides alike).
    pub threads: usize,
    /// Seed of the data.
    pub seed: u64,
}

impl Default for GlmBenchOptions {
    fn default() -> Self {
        Self {
            persons_per_site: 1_000_000,
            threads: 1,
            seed: 1,
        }
    }
}

/// Timings of one side.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SideTimes {
    /// Iterations (statistics evaluations) to convergence.
    pub iterations: u32,
    /// Wall time of each iteration.
    pub per_iteration: Vec<Duration>,
    /// Time in the statistics passes (federated: all three sites, one after another).
    pub stats: Duration,
    /// Federated: encoding, the secure aggregation rounds and decoding; pooled: zero.
    pub aggregation: Duration,
    /// The whole fit.
    pub total: Duration,
}

impl SideTimes {
    /// Mean wall time per iteration.
    pub fn mean_iteration(&self) -> Duration {
        self.total
            .checked_div(self.iterations.max(1))
            .unwrap_or_default()
    }
}

/// The benchmark's result.
#[derive(Debug, Clone, PartialEq)]
pub struct GlmBench {
    /// The options it ran with.
    pub options: GlmBenchOptions,
    /// Time to generate the data and build the batches.
    pub build: Duration,
    /// The pooled fit.
    pub pooled: SideTimes,
    /// The federated fit.
    pub federated: SideTimes,
    /// Per column: (name, true, pooled, federated, federated SE).
    pub coefficients: Vec<(String, f64, f64, f64, f64)>,
    /// Max relative difference between the federated and the pooled coefficients.
    pub max_rel_diff: f64,
}

impl GlmBench {
    /// Federated over pooled total time.
    pub fn ratio(&self) -> f64 {
        self.federated.total.as_secs_f64() / self.pooled.total.as_secs_f64().max(1e-12)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl fmt::Display for GlmBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "federated logistic regression: {SITES} hospitals x {} persons, {} covariates + intercept, {} thread(s) per statistics pass (data built in {:.0} ms)",
            o.persons_per_site,
            P - 1,
            o.threads,
            ms(self.build)
        )?;
        let (p, fd) = (&self.pooled, &self.federated);
        writeln!(
            f,
            "pooled    (one process, {} rows in one RecordBatch): {} iterations, {:.1} ms/iteration, {:.1} ms total",
            o.persons_per_site * SITES,
            p.iterations,
            ms(p.mean_iteration()),
            ms(p.total)
        )?;
        writeln!(
            f,
            "federated (3 sites in turn + secure aggregation):  {} iterations, {:.1} ms/iteration ({:.1} statistics, {:.1} encode + secure aggregation + decode), {:.1} ms total",
            fd.iterations,
            ms(fd.mean_iteration()),
            ms(fd
                .stats
                .checked_div(fd.iterations.max(1))
                .unwrap_or_default()),
            ms(fd
                .aggregation
                .checked_div(fd.iterations.max(1))
                .unwrap_or_default()),
            ms(fd.total)
        )?;
        let ratio = self.ratio();
        writeln!(
            f,
            "ratio federated/pooled: {ratio:.2}x (target <= {TARGET_RATIO}x: {})",
            if ratio <= TARGET_RATIO {
                "met"
            } else {
                "NOT met"
            }
        )?;
        writeln!(
            f,
            "coefficients agree: max relative difference federated vs pooled {:.1e} (required < {AGREEMENT:e})",
            self.max_rel_diff
        )?;
        writeln!(
            f,
            "{:<10} {:>10} {:>16} {:>16} {:>10}",
            "term", "true", "pooled", "federated", "SE"
        )?;
        for (name, t, pooled, fed, se) in &self.coefficients {
            writeln!(
                f,
                "{name:<10} {t:>10.4} {pooled:>16.10} {fed:>16.10} {se:>10.6}"
            )?;
        }
        let per = |s: &SideTimes| {
            s.per_iteration
                .iter()
                .map(|d| format!("{:.0}", ms(*d)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        writeln!(f, "per iteration (ms): pooled [{}]", per(p))?;
        write!(f, "                    federated [{}]", per(fd))
    }
}

fn unif(r: &mut ChaCha8Rng) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn normal(r: &mut ChaCha8Rng) -> f64 {
    let u = unif(r).max(1e-300);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * unif(r)).cos()
}

fn bernoulli(r: &mut ChaCha8Rng, p: f64) -> f64 {
    if unif(r) < p { 1.0 } else { 0.0 }
}

fn schema() -> Arc<Schema> {
    let mut fields: Vec<Field> = COLUMNS
        .iter()
        .map(|n| Field::new(*n, DataType::Float64, false))
        .collect();
    fields.push(Field::new("outcome", DataType::Float64, false));
    Arc::new(Schema::new(fields))
}

/// One hospital's synthetic persons as one batch (`COLUMNS` then `outcome`).
pub fn synthetic_batch(persons: usize, seed: u64) -> Result<RecordBatch, GlmBenchError> {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let mut cols: Vec<Vec<f64>> = (0..=P).map(|_| Vec::with_capacity(persons)).collect();
    for _ in 0..persons {
        let row = [
            1.0,
            60.0 + 12.0 * normal(&mut r),
            bernoulli(&mut r, 0.5),
            27.0 + 4.5 * normal(&mut r),
            130.0 + 15.0 * normal(&mut r),
            3.2 + 0.8 * normal(&mut r),
            5.8 + 0.9 * normal(&mut r),
            85.0 + 18.0 * normal(&mut r),
            bernoulli(&mut r, 0.22),
            bernoulli(&mut r, 0.12),
            (2f64.ln() + 0.8 * normal(&mut r)).exp(),
        ];
        let eta: f64 = row.iter().zip(TRUE_BETA).map(|(x, b)| x * b).sum();
        let y = bernoulli(&mut r, 1.0 / (1.0 + (-eta).exp()));
        for (c, v) in cols.iter_mut().zip(row.iter().chain([&y])) {
            c.push(*v);
        }
    }
    let arrays: Vec<ArrayRef> = cols
        .into_iter()
        .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef)
        .collect();
    Ok(RecordBatch::try_new(schema(), arrays)?)
}

/// The design columns and the outcome of a batch, as slices.
fn slices(batch: &RecordBatch) -> Result<(Vec<&[f64]>, &[f64]), GlmBenchError> {
    let mut out = Vec::with_capacity(P + 1);
    for i in 0..=P {
        let col = batch
            .columns()
            .get(i)
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
            .filter(|a| a.null_count() == 0)
            .ok_or(GlmBenchError::Column(i))?;
        out.push(&col.values()[..]);
    }
    let y = out.pop().ok_or(GlmBenchError::Column(P))?;
    Ok((out, y))
}

/// The statistics over columns, split over `threads` scoped threads and merged.
pub fn stats_threaded(
    family: Family,
    x: &[&[f64]],
    y: &[f64],
    beta: &[f64],
    threads: usize,
) -> Result<Stats, GlmBenchError> {
    let n = y.len();
    let threads = threads.clamp(1, 64);
    if threads == 1 {
        let cols = Columns { x, y, offset: None };
        return Ok(site_stats_columns(family, &cols, beta)?);
    }
    let chunk = n.div_ceil(threads).max(1);
    let parts: Vec<Result<Stats, GlmError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let lo = (t * chunk).min(n);
                let hi = ((t + 1) * chunk).min(n);
                s.spawn(move || {
                    let xs: Vec<&[f64]> = x.iter().map(|c| c.get(lo..hi).unwrap_or(&[])).collect();
                    let cols = Columns {
                        x: &xs,
                        y: y.get(lo..hi).unwrap_or(&[]),
                        offset: None,
                    };
                    site_stats_columns(family, &cols, beta)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err(GlmError::BadColumns { p: 0 })))
            .collect()
    });
    let mut total = Stats::zero(x.len());
    for part in parts {
        total.merge(&part.map_err(|e| match e {
            GlmError::BadColumns { p: 0 } => GlmBenchError::Thread,
            e => GlmBenchError::Glm(e),
        })?)?;
    }
    Ok(total)
}

/// The three hospitals' aggregation keys.
struct Keys {
    secrets: Vec<StaticSecret>,
    peers: Vec<PublicKey>,
}

// INVARIANT: every index ranges over `0..SITES`; `vectors`, `secrets` and `peers` have SITES
// entries (built here).
#[allow(clippy::indexing_slicing)]
/// One full secure aggregation round over the sites' vectors (every site deals, masks and
/// reveals; nobody drops); the unmasked sum.
fn secure_sum(
    job: [u8; 32],
    keys: &Keys,
    vectors: &[Vec<i64>],
    rng: &mut ChaCha8Rng,
) -> Result<Vec<i64>, GlmBenchError> {
    let n = keys.secrets.len();
    if vectors.len() != n {
        return Err(GlmBenchError::Parameter {
            name: "vectors",
            value: vectors.len(),
            need: "one per site",
        });
    }
    let round = secagg::Round::new(job, n)?;
    let all: Vec<usize> = (0..n).collect();
    let k = |i: usize| secagg::Keys {
        me: i,
        secret: &keys.secrets[i],
        peers: &keys.peers,
    };
    let secrets: Vec<secagg::SiteSecrets> = all
        .iter()
        .map(|_| secagg::SiteSecrets::random(&mut *rng))
        .collect();
    let dealings: Vec<(usize, secagg::Dealing)> = all
        .iter()
        .map(|&i| secagg::deal(&round, &k(i), &secrets[i]).map(|d| (i, d)))
        .collect::<Result<_, _>>()?;
    let mut masked = Vec::with_capacity(n);
    let mut reveals = Vec::with_capacity(n);
    for &i in &all {
        let held: Vec<(usize, secagg::HeldShare)> = dealings
            .iter()
            .map(|(d, dl)| secagg::open_share(&round, &k(i), *d, dl).map(|s| (*d, s)))
            .collect::<Result<_, _>>()?;
        let encoded: Vec<u64> = vectors[i].iter().map(|v| secagg::encode_i64(*v)).collect();
        masked.push((i, secagg::mask(&round, &k(i), &all, &secrets[i], &encoded)?));
        reveals.push(secagg::reveal(&round, i, &all, &all, &held)?);
    }
    let (sum, _) = secagg::unmask(&round, &all, &all, &dealings, &masked, &reveals)?;
    Ok(sum.into_iter().map(secagg::decode_i64).collect())
}

/// Runs the benchmark; `progress` gets one line per iteration of each side.
pub fn bench_glm(
    options: &GlmBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<GlmBench, GlmBenchError> {
    if options.persons_per_site < P {
        return Err(GlmBenchError::Parameter {
            name: "persons",
            value: options.persons_per_site,
            need: "at least the number of columns",
        });
    }
    let family = Family::Logistic;
    let names: Vec<String> = COLUMNS.iter().map(|s| s.to_string()).collect();
    let t = Instant::now();
    let batches: Vec<RecordBatch> = (0..SITES)
        .map(|s| synthetic_batch(options.persons_per_site, options.seed * 1000 + s as u64))
        .collect::<Result<_, _>>()?;
    let pooled_batch = concat_batches(&schema(), &batches)?;
    let build = t.elapsed();
    progress(&format!(
        "built {SITES} x {} persons in {:.0} ms",
        options.persons_per_site,
        ms(build)
    ));

    // Pooled.
    let (px, py) = slices(&pooled_batch)?;
    let mut irls = Irls::new(family, P, Options::default());
    let mut pooled = SideTimes::default();
    let start = Instant::now();
    let pooled_last = loop {
        let it = Instant::now();
        let stats = stats_threaded(family, &px, py, irls.beta(), options.threads)?;
        pooled.stats += it.elapsed();
        let step = irls.update(&stats)?;
        pooled.per_iteration.push(it.elapsed());
        progress(&format!(
            "pooled    iteration {:>2}: deviance {:.6} ({:.1} ms)",
            irls.iteration(),
            stats.deviance,
            ms(it.elapsed())
        ));
        if step == Progress::Converged {
            break stats;
        }
    };
    pooled.total = start.elapsed();
    pooled.iterations = irls.iteration();
    let pooled_fit = glm::summarize(family, &names, &irls, &pooled_last)?;

    // Federated.
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed ^ 0x5eca_6600);
    let secrets: Vec<StaticSecret> = (0..SITES)
        .map(|_| {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            StaticSecret::from(b)
        })
        .collect();
    let keys = Keys {
        peers: secrets.iter().map(PublicKey::from).collect(),
        secrets,
    };
    let site_cols = batches.iter().map(slices).collect::<Result<Vec<_>, _>>()?;
    let mut irls = Irls::new(family, P, Options::default());
    let mut fed = SideTimes::default();
    let start = Instant::now();
    let fed_last = loop {
        let it = Instant::now();
        let mut vectors = Vec::with_capacity(SITES);
        for (x, y) in &site_cols {
            let s = Instant::now();
            let stats = stats_threaded(family, x, y, irls.beta(), options.threads)?;
            fed.stats += s.elapsed();
            let s = Instant::now();
            vectors.push(encode(&stats)?);
            fed.aggregation += s.elapsed();
        }
        let s = Instant::now();
        let mut job = [0u8; 32];
        if let Some(head) = job.first_chunk_mut::<4>() {
            *head = irls.iteration().to_be_bytes();
        }
        let sum = secure_sum(job, &keys, &vectors, &mut rng)?;
        let total = decode(P, &sum)?;
        fed.aggregation += s.elapsed();
        let step = irls.update(&total)?;
        fed.per_iteration.push(it.elapsed());
        progress(&format!(
            "federated iteration {:>2}: deviance {:.6} ({:.1} ms)",
            irls.iteration(),
            total.deviance,
            ms(it.elapsed())
        ));
        if step == Progress::Converged {
            break total;
        }
    };
    fed.total = start.elapsed();
    fed.iterations = irls.iteration();
    let fed_fit = glm::summarize(family, &names, &irls, &fed_last)?;

    let max_rel_diff = pooled_fit
        .terms
        .iter()
        .zip(&fed_fit.terms)
        .map(|(a, b)| (a.coefficient - b.coefficient).abs() / a.coefficient.abs().max(1e-12))
        .fold(0.0, f64::max);
    if fed.iterations != pooled.iterations || max_rel_diff.is_nan() || max_rel_diff >= AGREEMENT {
        return Err(GlmBenchError::Disagree {
            federated_iterations: fed.iterations,
            pooled_iterations: pooled.iterations,
            max_rel_diff,
        });
    }
    let coefficients = names
        .into_iter()
        .zip(TRUE_BETA)
        .zip(pooled_fit.terms.iter().zip(&fed_fit.terms))
        .map(|((n, t), (p, f))| (n, t, p.coefficient, f.coefficient, f.std_error))
        .collect();
    Ok(GlmBench {
        options: *options,
        build,
        pooled,
        federated: fed,
        coefficients,
        max_rel_diff,
    })
}

/// `medspace bench glm`: runs with progress on stderr and prints the report on stdout.
pub fn run_cli(persons_per_site: usize, threads: usize) -> Result<(), GlmBenchError> {
    let options = GlmBenchOptions {
        persons_per_site,
        threads,
        ..GlmBenchOptions::default()
    };
    let report = bench_glm(&options, &mut |line| eprintln!("{line}"))?;
    println!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bench_agrees_and_reports() {
        let options = GlmBenchOptions {
            persons_per_site: 20_000,
            threads: 2,
            seed: 3,
        };
        let mut lines = 0;
        let r = bench_glm(&options, &mut |_| lines += 1).unwrap();
        assert!(r.max_rel_diff < AGREEMENT);
        assert_eq!(r.pooled.iterations, r.federated.iterations);
        assert_eq!(lines as u32, 1 + 2 * r.pooled.iterations);
        // The estimates are near the truth (20k rows per site).
        for (name, t, p, _, se) in &r.coefficients {
            assert!((p - t).abs() < 5.0 * se, "{name}: {p} vs {t} (SE {se})");
        }
        let text = r.to_string();
        assert!(text.contains("ratio federated/pooled"), "{text}");
        assert!(text.contains("coefficients agree"), "{text}");
    }

    #[test]
    fn threads_do_not_change_the_statistics_beyond_rounding() {
        let b = synthetic_batch(5000, 9).unwrap();
        let (x, y) = slices(&b).unwrap();
        let beta = [0.01; P];
        let one = stats_threaded(Family::Logistic, &x, y, &beta, 1).unwrap();
        let three = stats_threaded(Family::Logistic, &x, y, &beta, 3).unwrap();
        assert_eq!(one.n, three.n);
        for (a, b) in one.xtwx.iter().zip(&three.xtwx) {
            assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0));
        }
    }
}
