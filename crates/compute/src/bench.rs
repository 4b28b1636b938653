//! `medspace bench federated`: the data plane of a federated job against the same query over
//! the pooled data.
//!
//! Three hospitals each get N synthetic persons written directly as CDM Parquet tables
//! ([`medspace_vault::bench::write_synthetic_cdm`], each hospital with its own `person_id`
//! range and seed). Every person is in the cohort (the ledger's planning is not timed: the
//! benchmark starts from an already planned cohort). One federated run is, one site after
//! another on this machine, [`site_vector`] at each hospital — open its vault, run the compiled
//! query with the cohort as `consented`, lay the result out, add discrete Laplace noise — and
//! its part of the secure aggregation round (deal its shares, open the others', mask with double
//! masking), then the aggregator's part (the reveals, unmasking the sum, suppressing small
//! cells). The
//! pooled run opens one DataFusion session in which every CDM table is the union of the three
//! vaults' tables ([`medspace_vault::open_pooled_session`]), registers the union of the cohorts
//! as `consented` and runs the same SQL through the same function ([`local::run_in`]). Both
//! sides therefore use the same engine, runtime and configuration.
//!
//! Before the timed runs, one untimed run of each side without protection checks that the
//! federated totals equal the pooled ones cell by cell (the benchmark fails otherwise). The
//! timed federated runs use full protection. Figures are medians over the runs.

use crate::federated::{FederatedError, SiteJob, rows_vector, site_vector};
use crate::local::{self, CONSENTED};
use medspace_privacy::query::QuerySpec;
use medspace_privacy::release::{Cell, Protection, group_label, release_totals};
use medspace_privacy::secagg;
use medspace_types::{Hash, JobId};
use medspace_vault::VaultError;
use medspace_vault::VaultKey;
use medspace_vault::bench::{SyntheticPersons, write_synthetic_cdm};
use medspace_vault::seal::{KdfParams, Passphrase};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

/// The hospitals of the benchmark (also the names of their node directories).
pub const SITES: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];
/// The file in each site's directory holding its vault's generated passphrase.
pub const SITE_PASSPHRASE_FILE: &str = "vault.pass";

/// Persons with type 2 diabetes (SNOMED 44054006) and an HbA1c (LOINC 4548-4) of at least 6.5 %
/// by the index date, counted by sex and 10-year age band (20 cells).
pub const COUNT_SPEC: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"measurement":{"code":"4548-4","op":">=","value":6.5},"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex","age_band"]}"#;

/// The same cohort, with the mean of each person's latest HbA1c (clamped to 0..20 %) by sex.
pub const MEAN_SPEC: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"measurement":{"code":"4548-4","op":">=","value":6.5},"index_date":"2025-01-01"},"aggregate":{"mean":{"measurement":"4548-4","lower":0,"upper":20}},"group_by":["sex"]}"#;

/// The surveillance benchmark's definition over the public-health population: its 10
/// syndromes × 20 regions × 5 age bands, daily over its 30-day period, noised (ε = 1 per window).
pub fn surveil_spec() -> String {
    use medspace_vault::bench::{HEALTH_PERIOD_START, HEALTH_REGIONS, HEALTH_SYNDROMES};
    let start = medspace_privacy::query::date_of_day(i64::from(HEALTH_PERIOD_START));
    let syndromes: Vec<String> = (1..=HEALTH_SYNDROMES)
        .map(|i| format!(r#"{{"name":"s{i:02}","codes":["S{i:02}"]}}"#))
        .collect();
    let regions: Vec<String> = (0..HEALTH_REGIONS)
        .map(|r| format!(r#""{:03}""#, 10 + r))
        .collect();
    format!(
        r#"{{"version":1,"cohort":{{"index_date":"{start}"}},"aggregate":{{"surveillance":{{"syndromes":[{}],"regions":[{}],"start":"{start}","window_days":1,"windows":30,"epsilon_per_window":1}}}}}}"#,
        syndromes.join(","),
        regions.join(",")
    )
}

/// The drug-safety benchmark's scan over the public-health population: its 100 drugs × 50
/// event groups (5,000 pairs), a 30-day risk window, new users after a 30-day washout.
pub fn drug_safety_spec() -> String {
    use medspace_vault::bench::{HEALTH_DRUGS, HEALTH_EVENTS, HEALTH_PERIOD_START};
    let index = medspace_privacy::query::date_of_day(i64::from(HEALTH_PERIOD_START) + 60);
    let drugs: Vec<String> = (1..=HEALTH_DRUGS)
        .map(|i| format!(r#"{{"name":"d{i:03}","codes":["D{i:03}"]}}"#))
        .collect();
    let events: Vec<String> = (1..=HEALTH_EVENTS)
        .map(|i| format!(r#"{{"name":"e{i:02}","codes":["E{i:02}"]}}"#))
        .collect();
    format!(
        r#"{{"version":1,"cohort":{{"index_date":"{index}"}},"aggregate":{{"drug_safety":{{"drugs":[{}],"events":[{}],"window_days":30,"washout_days":30}}}}}}"#,
        drugs.join(","),
        events.join(",")
    )
}

/// Suppression threshold of the timed (protected) runs.
pub const BENCH_K: u32 = 10;
/// Epsilon of the timed (protected) runs, micro-epsilon (ε = 1).
pub const BENCH_EPSILON_MICRO: u64 = 1_000_000;

/// Errors of the federated benchmark.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    /// Building or opening a vault failed.
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    /// A step of the federated job failed.
    #[error("federated job: {0}")]
    Federated(#[from] FederatedError),
    /// The pooled query failed.
    #[error("pooled query: {0}")]
    Local(#[from] local::LocalError),
    /// The secure aggregation round failed.
    #[error("secure aggregation: {0}")]
    SecAgg(#[from] secagg::SecAggError),
    /// A result did not fit the query's layout.
    #[error(transparent)]
    Layout(#[from] medspace_privacy::release::LayoutError),
    /// The query specification is not valid.
    #[error("query specification: {0}")]
    Query(#[from] medspace_privacy::QueryError),
    /// A benchmark parameter is out of range.
    #[error("invalid benchmark parameter: {name}={value} ({need})")]
    Parameter {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it must be.
        need: &'static str,
    },
    /// Without protection, the federated result differs from the pooled one.
    #[error(
        "federated and pooled results differ without protection: group={group} federated={federated} pooled={pooled}"
    )]
    Mismatch {
        /// The first differing cell.
        group: String,
        /// The federated cell.
        federated: String,
        /// The pooled cell.
        pooled: String,
    },
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct FederatedOptions {
    /// Synthetic persons per hospital.
    pub persons_per_site: u64,
    /// Timed runs of each side.
    pub runs: usize,
    /// Seed of the data (hospital `i` uses `seed + i`).
    pub seed: u64,
    /// The query specification (JSON), e.g. [`COUNT_SPEC`].
    pub spec: String,
    /// The population each hospital gets.
    pub population: Population,
    /// The surveillance window the job computes (a surveillance definition only).
    pub window: Option<u32>,
}

/// Which synthetic population the hospitals hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Population {
    /// Conditions and HbA1c measurements ([`write_synthetic_cdm`]).
    Clinical,
    /// Regions, visits, syndromes, drugs and adverse events
    /// ([`medspace_vault::bench::write_synthetic_health_cdm`]).
    PublicHealth,
}

/// Where the benchmark is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Persons written so far, over all hospitals.
    Building {
        /// Written.
        done: u64,
        /// To write.
        total: u64,
    },
    /// The tables are built; the check run is next.
    Built,
    /// Timed runs finished so far.
    Runs {
        /// Finished.
        done: usize,
        /// To run.
        total: usize,
    },
}

/// Median time of each phase of the federated runs, milliseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FederatedPhases {
    /// Per hospital: open the vault, run the query on the cohort, lay the result out.
    pub site_local_ms: Vec<f64>,
    /// Noise at all hospitals together.
    pub noise_ms: f64,
    /// Secure aggregation at all hospitals together: dealing, opening the shares dealt to it,
    /// double masking, revealing.
    pub mask_ms: f64,
    /// The aggregator: check the reveals, unmask the sum, suppress, release.
    pub release_ms: f64,
    /// The slowest hospital plus the aggregator: the run's time if every hospital computed on
    /// its own machine at the same time.
    pub one_machine_per_site_ms: f64,
}

fn cell_text(c: &Cell) -> String {
    let n =
        c.n.map_or_else(|| "suppressed".to_string(), |n| n.to_string());
    match c.mean {
        Some(m) => format!("{}: {n} (mean {m:.3})", group_label(&c.group)),
        None => format!("{}: {n}", group_label(&c.group)),
    }
}

fn ms_list(ms: &[f64]) -> String {
    ms.iter()
        .map(|m| format!("{m:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl FederatedBench {
    /// The figures as the command prints them, for the query `spec`.
    pub fn report(&self, spec: &str) -> String {
        use std::fmt::Write as _;
        let r = self;
        let mut o = String::new();
        let sites = SITES.len();
        let _ = writeln!(
            o,
            "bench federated: {sites} hospitals x {} persons ({} pooled), {} measurement or event rows (tables built in {:.1} s)",
            r.persons_per_site,
            r.persons_per_site * sites as u64,
            r.measurements,
            r.build_seconds
        );
        // A scan's specification lists every drug and event: its head is enough to read.
        match spec.char_indices().nth(400) {
            Some((cut, _)) => {
                let _ = writeln!(
                    o,
                    "query spec: {}… ({} bytes)",
                    spec.get(..cut).unwrap_or(spec),
                    spec.len()
                );
            }
            None => {
                let _ = writeln!(o, "query spec: {spec}");
            }
        }
        let _ = writeln!(
            o,
            "the sites run one after another on this machine ({} cores); every site and the pooled session run the same compiled SQL through compute::local::run_in",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let _ = writeln!(
            o,
            "check without protection: federated = pooled in all {} values",
            r.values
        );
        if r.grouped {
            for c in &r.pooled {
                let _ = writeln!(o, "  {}", cell_text(c));
            }
            let _ = writeln!(
                o,
                "protected release (epsilon {}, k {}) of the last run:\n  {}",
                BENCH_EPSILON_MICRO as f64 / 1e6,
                BENCH_K,
                r.protected
                    .iter()
                    .map(cell_text)
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        let _ = writeln!(o, "federated runs (ms): {}", ms_list(&r.federated_ms));
        let _ = writeln!(o, "pooled runs (ms):    {}", ms_list(&r.pooled_ms));
        let _ = writeln!(o, "federated phases (median ms):");
        for (name, t) in SITES.iter().zip(&r.phases.site_local_ms) {
            let _ = writeln!(o, "  {name}: vault + query + layout {t:.1}");
        }
        let _ = writeln!(o, "  noise, all sites {:.3}", r.phases.noise_ms);
        let _ = writeln!(
            o,
            "  secure aggregation at the sites (deal, open shares, double mask, reveal), all sites {:.3}",
            r.phases.mask_ms
        );
        let _ = writeln!(o, "  unmasking + release {:.3}", r.phases.release_ms);
        let _ = writeln!(
            o,
            "  one machine per site (slowest site + aggregation) {:.1}",
            r.phases.one_machine_per_site_ms
        );
        let _ = writeln!(
            o,
            "median federated {:.1} ms (sites one after another), pooled {:.1} ms; ratio {:.2}",
            r.median_federated_ms, r.median_pooled_ms, r.ratio
        );
        if let Some(kib) = r.peak_rss_kib {
            let _ = writeln!(o, "peak memory (VmHWM): {:.1} MiB", kib as f64 / 1024.0);
        }
        o
    }
}

/// The benchmark's figures.
#[derive(Clone, Debug)]
pub struct FederatedBench {
    /// Values of the query's vector (checked one by one against the pooled run).
    pub values: usize,
    /// Whether the result is a table of counts per group (else a public-health layout, whose
    /// values are not listed).
    pub grouped: bool,
    /// Persons per hospital.
    pub persons_per_site: u64,
    /// Measurement rows over all hospitals.
    pub measurements: u64,
    /// Seconds to write all tables (not timed as part of any run).
    pub build_seconds: f64,
    /// The compiled SQL that every site and the pooled session run.
    pub sql: String,
    /// Wall time of each timed federated run (all sites one after another, then release).
    pub federated_ms: Vec<f64>,
    /// Wall time of each timed pooled run.
    pub pooled_ms: Vec<f64>,
    /// Median of `federated_ms`.
    pub median_federated_ms: f64,
    /// Median of `pooled_ms`.
    pub median_pooled_ms: f64,
    /// `median_federated_ms / median_pooled_ms`.
    pub ratio: f64,
    /// Median phases of the federated runs.
    pub phases: FederatedPhases,
    /// The federated result without protection (the check run).
    pub unprotected: Vec<Cell>,
    /// The pooled result (equal to `unprotected`).
    pub pooled: Vec<Cell>,
    /// The last protected federated result.
    pub protected: Vec<Cell>,
    /// Peak resident memory of the process, KiB (VmHWM).
    pub peak_rss_kib: Option<u64>,
}

struct Site {
    dir: PathBuf,
    key: VaultKey,
    cohort: BTreeSet<i64>,
    secret: StaticSecret,
}

/// One federated run's result and phase times.
struct FederatedRun {
    cells: Vec<Cell>,
    totals: Vec<i64>,
    total: Duration,
    local: Vec<Duration>,
    noise: Duration,
    mask: Duration,
    release: Duration,
    slowest_site: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted.get(n / 2).copied().unwrap_or(0.0),
        n => {
            let a = sorted.get(n / 2 - 1).copied().unwrap_or(0.0);
            let b = sorted.get(n / 2).copied().unwrap_or(0.0);
            (a + b) / 2.0
        }
    }
}

// INVARIANT: every index ranges over `0..sites.len()`, and `vectors`, `secrets` are parallel
// to `sites`.
#[allow(clippy::indexing_slicing)]
/// One secure aggregation round over the sites' vectors (every site deals, masks and
/// reveals; nobody drops): the sum, the sites' time and the aggregator's time.
fn secure_sum(
    job: JobId,
    sites: &[Site],
    peers: &[PublicKey],
    vectors: &[Vec<i64>],
) -> Result<(Vec<i64>, Duration, Duration), ComputeError> {
    let mut rng = medspace_privacy::dp::os_rng().map_err(FederatedError::from)?;
    let round = secagg::Round::new(
        Hash::of(&[b"medspace/job/v1", &job.0.to_be_bytes()]).0,
        sites.len(),
    )?;
    let all: Vec<usize> = (0..sites.len()).collect();
    let keys = |i: usize| secagg::Keys {
        me: i,
        secret: &sites[i].secret,
        peers,
    };
    let t = Instant::now();
    let secrets: Vec<secagg::SiteSecrets> = sites
        .iter()
        .map(|_| secagg::SiteSecrets::random(&mut rng))
        .collect();
    let dealings: Vec<(usize, secagg::Dealing)> = all
        .iter()
        .map(|&i| secagg::deal(&round, &keys(i), &secrets[i]).map(|d| (i, d)))
        .collect::<Result<_, _>>()?;
    let mut masked = Vec::with_capacity(sites.len());
    let mut reveals = Vec::with_capacity(sites.len());
    for &i in &all {
        let held: Vec<(usize, secagg::HeldShare)> = dealings
            .iter()
            .map(|(d, dl)| secagg::open_share(&round, &keys(i), *d, dl).map(|s| (*d, s)))
            .collect::<Result<_, _>>()?;
        let encoded: Vec<u64> = vectors[i].iter().map(|v| secagg::encode_i64(*v)).collect();
        masked.push((
            i,
            secagg::mask(&round, &keys(i), &all, &secrets[i], &encoded)?,
        ));
        reveals.push(secagg::reveal(&round, i, &all, &all, &held)?);
    }
    let sites_time = t.elapsed();
    let t = Instant::now();
    let (sum, _) = secagg::unmask(&round, &all, &all, &dealings, &masked, &reveals)?;
    Ok((
        sum.into_iter().map(secagg::decode_i64).collect(),
        sites_time,
        t.elapsed(),
    ))
}

fn federated_run(
    sites: &[Site],
    peers: &[PublicKey],
    job: &SiteJob<'_>,
    id: JobId,
) -> Result<FederatedRun, ComputeError> {
    let mut rng = medspace_privacy::dp::os_rng().map_err(FederatedError::from)?;
    let (spec, protection, site_job) = (job.spec, job.protection, job);
    let start = Instant::now();
    let mut vectors = Vec::with_capacity(sites.len());
    let (mut local, mut noise) = (Vec::new(), Duration::ZERO);
    let mut slowest_site = Duration::ZERO;
    for site in sites {
        let (vector, t) = site_vector(
            crate::federated::SiteVault::embedded(&site.dir, &site.key),
            &site.cohort,
            site_job,
            &mut rng,
        )?;
        vectors.push(vector);
        local.push(t.local);
        noise += t.noise;
        slowest_site = slowest_site.max(t.local + t.noise);
    }
    let (totals, mask, unmask) = secure_sum(id, sites, peers, &vectors)?;
    let t = Instant::now();
    let cells = release_totals(spec, &totals, protection)?;
    let release = unmask + t.elapsed();
    // Each site's share of the round's work, as if every hospital had its own machine.
    let per_site_mask = mask / u32::try_from(sites.len().max(1)).unwrap_or(1);
    Ok(FederatedRun {
        cells,
        totals,
        total: start.elapsed(),
        local,
        noise,
        mask,
        release,
        slowest_site: slowest_site + per_site_mask,
    })
}

fn pooled_run(
    dirs: &[(&Path, &VaultKey)],
    cohort: &BTreeSet<i64>,
    spec: &QuerySpec,
    sql: &str,
) -> Result<(Vec<Cell>, Vec<i64>, Duration), ComputeError> {
    let start = Instant::now();
    let ctx = medspace_vault::open_pooled_session(dirs)?;
    let rows = local::run_in(&ctx, cohort, sql)?;
    let totals = rows_vector(spec, &rows)?;
    let cells = release_totals(spec, &totals, Protection::TestNone)?;
    Ok((cells, totals, start.elapsed()))
}

fn describe(cell: &Cell) -> String {
    match (cell.n, cell.mean) {
        (Some(n), Some(m)) => format!("n={n} mean={m}"),
        (Some(n), None) => format!("n={n}"),
        (None, _) => "suppressed".into(),
    }
}

/// Builds the three hospitals under `work_dir` (replacing any earlier ones), checks the
/// federated result without protection against the pooled one, and times `runs` protected
/// federated runs against `runs` pooled runs (alternating which goes first).
pub fn bench_federated(
    work_dir: &Path,
    options: &FederatedOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<FederatedBench, ComputeError> {
    let (spec, _) = medspace_privacy::query::parse(&options.spec)?;
    let sql = medspace_privacy::query::compile_sql_at(&spec, CONSENTED, options.window)?;
    let persons = options.persons_per_site;
    let sites_n = SITES.len() as u64;
    let too_many = || ComputeError::Parameter {
        name: "persons",
        value: persons.to_string(),
        need: "the three hospitals' person ids must fit 32 bits: at most 1431655765 per site",
    };
    // Every person id of every site fits in u32, so none of the arithmetic below overflows.
    let total = persons.checked_mul(sites_n).ok_or_else(too_many)?;
    u32::try_from(total).map_err(|_| too_many())?;
    let per_site = u32::try_from(persons).map_err(|_| too_many())?;

    let build = Instant::now();
    let mut sites = Vec::with_capacity(SITES.len());
    let mut measurements = 0;
    let mut offset = 0u32;
    for (i, name) in (0u64..).zip(SITES) {
        let dir = work_dir.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| VaultError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        let before = u64::from(offset);
        // Each site's vault is sealed under a generated passphrase kept beside it, owner-only
        // (`<site>/vault.pass`), so the sites can be reopened after the run.
        let passphrase = Passphrase::generate();
        std::fs::create_dir_all(&dir).map_err(|source| VaultError::Io {
            path: dir.clone(),
            source,
        })?;
        let pass_path = dir.join(SITE_PASSPHRASE_FILE);
        passphrase
            .write_new(&pass_path)
            .map_err(|e| VaultError::Corrupt {
                path: pass_path.clone(),
                reason: e.to_string(),
            })?;
        let key = VaultKey::create(&dir, &passphrase, KdfParams::DEFAULT)?;
        let population = SyntheticPersons {
            persons,
            seed: options.seed.wrapping_add(i),
            person_id_offset: offset,
        };
        let mut report = |done| {
            progress(Progress::Building {
                done: before + done,
                total,
            })
        };
        measurements += match options.population {
            Population::Clinical => write_synthetic_cdm(&dir, &key, population, &mut report)?,
            Population::PublicHealth => medspace_vault::bench::write_synthetic_health_cdm(
                &dir,
                &key,
                population,
                &mut report,
            )?,
        };
        let first = i64::from(offset) + 1;
        let cohort: BTreeSet<i64> = (first..first + i64::from(per_site)).collect();
        let secret = StaticSecret::from(
            Hash::of(&[
                b"medspace/bench/federated",
                &options.seed.to_be_bytes(),
                name.as_bytes(),
            ])
            .0,
        );
        sites.push(Site {
            dir,
            key,
            cohort,
            secret,
        });
        offset = offset.saturating_add(per_site);
    }
    let build_seconds = build.elapsed().as_secs_f64();
    progress(Progress::Built);

    let peers: Vec<PublicKey> = sites.iter().map(|s| PublicKey::from(&s.secret)).collect();
    let dirs: Vec<(&Path, &VaultKey)> = sites.iter().map(|s| (s.dir.as_path(), &s.key)).collect();
    let pooled_cohort: BTreeSet<i64> = sites
        .iter()
        .flat_map(|s| s.cohort.iter().copied())
        .collect();

    // The check (also the warm-up): without protection, federated = pooled, value by value.
    let job = |protection| SiteJob {
        spec: &spec,
        epsilon_micro: BENCH_EPSILON_MICRO,
        protection,
        window: options.window,
    };
    let check = federated_run(&sites, &peers, &job(Protection::TestNone), JobId(0))?;
    let (pooled, pooled_totals, _) = pooled_run(&dirs, &pooled_cohort, &spec, &sql)?;
    if check.totals != pooled_totals {
        let at = check
            .totals
            .iter()
            .zip(&pooled_totals)
            .position(|(f, p)| f != p)
            .unwrap_or(check.totals.len().min(pooled_totals.len()));
        return Err(ComputeError::Mismatch {
            group: format!("value {at} of {}", pooled_totals.len()),
            federated: format!("{:?}", check.totals.get(at)),
            pooled: format!("{:?}", pooled_totals.get(at)),
        });
    }
    for (f, p) in check.cells.iter().zip(&pooled) {
        if f != p {
            return Err(ComputeError::Mismatch {
                group: group_label(&p.group),
                federated: describe(f),
                pooled: describe(p),
            });
        }
    }

    let runs = options.runs.max(1);
    let mut federated_ms = Vec::with_capacity(runs);
    let mut pooled_ms = Vec::with_capacity(runs);
    let mut local_ms: Vec<Vec<f64>> = vec![Vec::new(); sites.len()];
    let (mut noise_ms, mut mask_ms, mut release_ms, mut one_machine_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut protected = Vec::new();
    for run in 0..runs {
        let id = JobId(run as u64 + 1);
        let protection = Protection::Full { k: BENCH_K };
        let (fed, pool_time) = if run % 2 == 0 {
            let fed = federated_run(&sites, &peers, &job(protection), id)?;
            let (_, _, pool_time) = pooled_run(&dirs, &pooled_cohort, &spec, &sql)?;
            (fed, pool_time)
        } else {
            let (_, _, pool_time) = pooled_run(&dirs, &pooled_cohort, &spec, &sql)?;
            let fed = federated_run(&sites, &peers, &job(protection), id)?;
            (fed, pool_time)
        };
        federated_ms.push(ms(fed.total));
        pooled_ms.push(ms(pool_time));
        for (acc, t) in local_ms.iter_mut().zip(&fed.local) {
            acc.push(ms(*t));
        }
        noise_ms.push(ms(fed.noise));
        mask_ms.push(ms(fed.mask));
        release_ms.push(ms(fed.release));
        one_machine_ms.push(ms(fed.slowest_site + fed.release));
        protected = fed.cells;
        progress(Progress::Runs {
            done: run + 1,
            total: runs,
        });
    }
    let median_federated_ms = median(&federated_ms);
    let median_pooled_ms = median(&pooled_ms);
    Ok(FederatedBench {
        values: pooled_totals.len(),
        grouped: matches!(
            spec.aggregate,
            medspace_privacy::query::Aggregate::Count | medspace_privacy::query::Aggregate::Mean(_)
        ),
        persons_per_site: persons,
        measurements,
        build_seconds,
        sql,
        ratio: median_federated_ms / median_pooled_ms.max(1e-9),
        median_federated_ms,
        median_pooled_ms,
        federated_ms,
        pooled_ms,
        phases: FederatedPhases {
            site_local_ms: local_ms.iter().map(|v| median(v)).collect(),
            noise_ms: median(&noise_ms),
            mask_ms: median(&mask_ms),
            release_ms: median(&release_ms),
            one_machine_per_site_ms: median(&one_machine_ms),
        },
        unprotected: check.cells,
        pooled,
        protected,
        peak_rss_kib: medspace_vault::bench::peak_rss_kib(),
    })
}
