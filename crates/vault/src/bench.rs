//! Benchmarks printed by `medspace bench ingest` and `medspace bench cohort`.
//!
//! * ingest: generated patients written as one transaction Bundle per patient (as Synthea
//!   writes them) or as Bulk NDJSON, then ingested (parse, check, deduplicate, store originals,
//!   map to CDM Parquet, commit in batches) into a fresh vault on one thread, the baseline, and
//!   into others on several: all the input, a quarter of it, and all as one atomic batch, each
//!   run a `medspace ingest` process of its own, so that its peak memory (VmHWM) is its own.
//!   The baseline and the parallel run are repeated, alternating, and their medians printed.
//! * cohort: a vault with N persons (CDM rows written directly, with the generator's
//!   age-dependent diabetes prevalence and HbA1c distribution) and the query "persons with
//!   type 2 diabetes (SNOMED 44054006) and an HbA1c (LOINC 4548-4) over 7 %, counted by sex and
//!   10-year age band", timed over several runs; peak memory from `/proc/self/status` (VmHWM).
//!   The population builder ([`write_synthetic_cdm`]) also makes the three hospitals of
//!   `medspace bench federated` (each with its own `person_id` range).

use std::path::Path;
use std::time::Instant;

use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::at_rest::VaultKey;
use crate::cdm::{Val, next_id};
use crate::error::VaultError;
use crate::store::{IngestOptions, Vault};
use medspace_seal::{KdfParams, Passphrase};

/// The input the ingest benchmark generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IngestFormat {
    /// One FHIR transaction Bundle file per patient, as Synthea writes them (each with its
    /// own copies of the hospital's Organization and Practitioners).
    Bundles,
    /// Bulk Data NDJSON, one file per resource type.
    Ndjson,
}

/// One timed ingest of the benchmark's input into a fresh vault.
#[derive(Clone, Debug, Serialize)]
pub struct IngestRun {
    /// What the run is.
    pub label: String,
    /// Threads the ingest parsed on.
    pub threads: usize,
    /// Items per committed batch (0: one atomic batch).
    pub commit_every: usize,
    /// Input files read.
    pub files: usize,
    /// Resources read (each parsed, checked and hashed; stored or found unchanged).
    pub read: u64,
    /// Resources stored.
    pub resources: u64,
    /// Batches committed.
    pub commits: u64,
    /// Seconds spent in the ingest.
    pub seconds: f64,
    /// Resources read per second.
    pub resources_per_second: f64,
    /// Peak resident memory of the run's process, KiB (VmHWM), if known.
    pub peak_rss_kib: Option<u64>,
    /// Resources read per second of each repeat of this run, in the order they ran (one
    /// unless repeated); the figures above are those of the median repeat.
    pub repeats: Vec<f64>,
}

/// How many times the baseline and the parallel run are repeated, alternating, for their
/// medians: on a shared two-core machine one run of either varies by ±15 %.
pub const INGEST_REPEATS: usize = 5;

/// The repeat with the median rate, carrying every repeat's rate in the order they ran.
fn median_run(runs: Vec<IngestRun>) -> Option<IngestRun> {
    let repeats: Vec<f64> = runs.iter().map(|r| r.resources_per_second).collect();
    let mut sorted = runs;
    sorted.sort_by(|a, b| a.resources_per_second.total_cmp(&b.resources_per_second));
    let mid = sorted.len() / 2;
    let mut median = sorted.into_iter().nth(mid)?;
    median.repeats = repeats;
    Some(median)
}

/// Result of the ingest benchmark: the same input ingested on one thread (the baseline) and on
/// several, each into a fresh vault, and the memory of the ingest at two input sizes.
#[derive(Clone, Debug, Serialize)]
pub struct IngestBench {
    /// Patients generated.
    pub patients: u64,
    /// The input's form.
    pub format: IngestFormat,
    /// Input files.
    pub files: usize,
    /// The ingest on one thread.
    pub baseline: IngestRun,
    /// The ingest on [`IngestRun::threads`] threads.
    pub parallel: IngestRun,
    /// The parallel ingest of a quarter of the files: its peak memory against
    /// [`IngestBench::parallel`]'s shows whether memory grows with the input.
    pub quarter: IngestRun,
    /// The parallel ingest as one atomic batch (`--commit-every 0`), for its memory.
    pub atomic: IngestRun,
    /// Milliseconds to unlock the vault's keys from its passphrase (argon2id, once per open;
    /// not part of the runs' seconds).
    pub unlock_ms: f64,
}

impl IngestBench {
    /// How many times faster the parallel ingest is than the one-thread baseline.
    pub fn speedup(&self) -> f64 {
        self.parallel.resources_per_second / self.baseline.resources_per_second.max(1e-9)
    }
}

impl std::fmt::Display for IngestBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (p, b) = (&self.parallel, &self.baseline);
        writeln!(
            f,
            "bench ingest: {:.0} resources/s on {} threads, {:.2}x the one-thread baseline (medians of {} alternated runs each)",
            p.resources_per_second,
            p.threads,
            self.speedup(),
            p.repeats.len()
        )?;
        let form = match self.format {
            IngestFormat::Bundles => "transaction Bundle files (one per patient, as Synthea)",
            IngestFormat::Ndjson => "Bulk NDJSON files (one per type)",
        };
        writeln!(
            f,
            "  {} patients, {} resources read ({} stored) from {} {form}, each run into a fresh vault",
            self.patients, p.read, p.resources, self.files
        )?;
        let mib = |r: &IngestRun| {
            r.peak_rss_kib
                .map_or("?".to_string(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
        };
        writeln!(
            f,
            "  {:<34} {:>9} {:>9} {:>8} {:>13} {:>12}",
            "run", "resources", "seconds", "commits", "resources/s", "peak memory"
        )?;
        for r in [b, p, &self.quarter, &self.atomic] {
            writeln!(
                f,
                "  {:<34} {:>9} {:>9.2} {:>8} {:>13.0} {:>12}",
                r.label,
                r.read,
                r.seconds,
                r.commits,
                r.resources_per_second,
                mib(r)
            )?;
        }
        for r in [b, p] {
            let rates: Vec<String> = r.repeats.iter().map(|x| format!("{x:.0}")).collect();
            writeln!(
                f,
                "  {} repeats, resources/s in the order run: {}",
                r.label,
                rates.join(" ")
            )?;
        }
        if let (Some(q), Some(a)) = (self.quarter.peak_rss_kib, p.peak_rss_kib) {
            writeln!(
                f,
                "  memory: {:.2}x for {:.1}x the input (committed every {} items); one atomic batch: {}",
                a as f64 / (q as f64).max(1.0),
                p.read as f64 / (self.quarter.read as f64).max(1.0),
                p.commit_every,
                mib(&self.atomic)
            )?;
        }
        write!(
            f,
            "  vault unlock (argon2id, once per open, not in the figures above): {:.0} ms",
            self.unlock_ms
        )
    }
}

/// Writes the benchmark's input: `patients` generated patients into `dir`, as `format`.
fn write_input(
    dir: &Path,
    patients: u64,
    seed: u64,
    format: IngestFormat,
) -> Result<(), VaultError> {
    let cfg = medspace_synth::SynthConfig {
        patients,
        seed,
        hospital: 0,
    };
    let synth_err = |e: String| VaultError::Io {
        path: dir.to_path_buf(),
        source: std::io::Error::other(e),
    };
    match format {
        IngestFormat::Ndjson => medspace_synth::write_ndjson(cfg, dir, |_| {})
            .map(|_| ())
            .map_err(|e| synth_err(e.to_string())),
        IngestFormat::Bundles => {
            std::fs::create_dir_all(dir).map_err(VaultError::io(dir))?;
            for i in 0..patients {
                let path = dir.join(format!("patient-{i:07}.json"));
                let bundle = medspace_synth::patient_bundle(seed, 0, i);
                let bytes = serde_json::to_vec(&bundle).map_err(|e| synth_err(e.to_string()))?;
                std::fs::write(&path, bytes).map_err(VaultError::io(&path))?;
            }
            Ok(())
        }
    }
}

/// Generates `patients` synthetic patients into `work_dir` as `format`, then times their
/// ingest into fresh vaults: on one thread (the baseline), on `threads` threads (0: one per
/// core), on those threads for a quarter of the files, and as one atomic batch; each run
/// committing every [`crate::COMMIT_EVERY`] items but the last. Each run is a `medspace
/// ingest` process of its own (`exe`), so its peak memory is its own.
pub fn bench_ingest(
    exe: &Path,
    work_dir: &Path,
    patients: u64,
    seed: u64,
    threads: usize,
    format: IngestFormat,
) -> Result<IngestBench, VaultError> {
    let input = work_dir.join("input");
    write_input(&input, patients, seed, format)?;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&input)
        .map_err(VaultError::io(&input))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    // A quarter of the files (of each type, for NDJSON: its first quarter of lines).
    let quarter = work_dir.join("input-quarter");
    std::fs::create_dir_all(&quarter).map_err(VaultError::io(&quarter))?;
    match format {
        IngestFormat::Bundles => {
            for f in files.iter().take(files.len().div_ceil(4)) {
                let to = quarter.join(f.file_name().unwrap_or_default());
                std::fs::hard_link(f, &to)
                    .or_else(|_| std::fs::copy(f, &to).map(|_| ()))
                    .map_err(VaultError::io(&to))?;
            }
        }
        IngestFormat::Ndjson => {
            write_input(&quarter, patients.div_ceil(4), seed, format)?;
        }
    }
    let passphrase = Passphrase::generate();
    let n = IngestOptions {
        threads,
        ..IngestOptions::default()
    }
    .threads();
    let run = |label: &str, dir: &Path, threads: usize, commit_every: usize| {
        let node = work_dir.join("node");
        if node.exists() {
            std::fs::remove_dir_all(&node).map_err(VaultError::io(&node))?;
        }
        let out = std::process::Command::new(exe)
            .args(["ingest", "--quiet", "--json", "--node"])
            .arg(&node)
            .args(["--threads", &threads.to_string()])
            .args(["--commit-every", &commit_every.to_string()])
            .arg(dir)
            .env(
                crate::at_rest::PASSPHRASE_ENV,
                String::from_utf8_lossy(passphrase.expose()).as_ref(),
            )
            .env_remove("MEDSPACE_VOCAB")
            .output()
            .map_err(VaultError::io(exe))?;
        std::fs::remove_dir_all(&node).map_err(VaultError::io(&node))?;
        let failed = |why: String| VaultError::Io {
            path: exe.to_path_buf(),
            source: std::io::Error::other(why),
        };
        if !out.status.success() {
            return Err(failed(format!(
                "ingest run failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| failed(format!("ingest run printed no report: {e}")))?;
        let num = |p: &str| {
            v.pointer(p)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        let seconds = v
            .pointer("/report/seconds")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0);
        let read = num("/report/read");
        Ok(IngestRun {
            label: label.to_string(),
            threads: if threads == 0 { n } else { threads },
            commit_every,
            files: std::fs::read_dir(dir).map_err(VaultError::io(dir))?.count(),
            read,
            resources: num("/report/stored"),
            commits: num("/report/commits"),
            seconds,
            resources_per_second: read as f64 / seconds.max(1e-9),
            peak_rss_kib: v
                .pointer("/peak_rss_kib")
                .and_then(serde_json::Value::as_u64),
            repeats: vec![read as f64 / seconds.max(1e-9)],
        })
    };
    let every = crate::COMMIT_EVERY;
    // Alternated, so that a slow spell of the machine falls on both sides.
    let (mut baselines, mut parallels) = (Vec::new(), Vec::new());
    for _ in 0..INGEST_REPEATS {
        baselines.push(run("baseline: 1 thread", &input, 1, every)?);
        parallels.push(run(&format!("{n} threads"), &input, threads, every)?);
    }
    let no_runs = || VaultError::Io {
        path: exe.to_path_buf(),
        source: std::io::Error::other("no runs"),
    };
    let baseline = median_run(baselines).ok_or_else(no_runs)?;
    let parallel = median_run(parallels).ok_or_else(no_runs)?;
    let quarter = run(
        &format!("{n} threads, a quarter of the input"),
        &quarter,
        threads,
        every,
    )?;
    let atomic = run(
        &format!("{n} threads, one atomic batch"),
        &input,
        threads,
        0,
    )?;
    // The vault's own unlock, timed here once (each run unlocks its own).
    let node = work_dir.join("unlock");
    VaultKey::create(&node, &passphrase, KdfParams::DEFAULT)?;
    let t = Instant::now();
    VaultKey::unlock(&node, &passphrase)?;
    let unlock_ms = t.elapsed().as_secs_f64() * 1000.0;
    std::fs::remove_dir_all(&node).map_err(VaultError::io(&node))?;
    Ok(IngestBench {
        patients,
        format,
        files: files.len(),
        baseline,
        parallel,
        quarter,
        atomic,
        unlock_ms,
    })
}

/// Result of the cohort benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct CohortBench {
    /// Persons in the vault.
    pub persons: u64,
    /// Measurement rows.
    pub measurements: u64,
    /// Seconds to build the tables (not part of the query time).
    pub build_seconds: f64,
    /// Query time per run, milliseconds.
    pub runs_ms: Vec<f64>,
    /// Median of `runs_ms`.
    pub median_ms: f64,
    /// Persons in the cohort (sum over groups).
    pub cohort_persons: u64,
    /// Result rows (sex x age band).
    pub groups: usize,
    /// Peak resident memory of the process, KiB (VmHWM).
    pub peak_rss_kib: Option<u64>,
}

/// The cohort query of the benchmark.
pub const COHORT_SQL: &str = "SELECT p.gender_source_value AS sex, \
     CAST(FLOOR((2025 - p.year_of_birth) / 10) * 10 AS INT) AS age_band, COUNT(*) AS persons \
     FROM person p \
     WHERE p.person_id IN (SELECT person_id FROM condition_occurrence WHERE condition_source_value = '44054006') \
       AND p.person_id IN (SELECT person_id FROM measurement WHERE measurement_source_value = '4548-4' AND value_as_number > 7.0) \
     GROUP BY 1, 2 ORDER BY 1, 2";

/// A synthetic population written directly as CDM rows (no FHIR): each person has a sex, a birth
/// year (age 0-94 in 2025), one condition (type 2 diabetes with the age-dependent prevalence of
/// the generator: 2 % under 40, 10 % under 65, 20 % from 65; otherwise hypertension or
/// another code) dated 2022-01-08..2024-10-03, and three HbA1c measurements (LOINC 4548-4, mean
/// 7.8 % for diabetics and 5.4 % otherwise, ±1) dated 2022-01-08..2027-07-01.
#[derive(Clone, Copy, Debug)]
pub struct SyntheticPersons {
    /// Persons to write.
    pub persons: u64,
    /// Seed of every random choice.
    pub seed: u64,
    /// The persons get the `person_id`s `person_id_offset + 1 ..= person_id_offset + persons`
    /// (in a fresh vault), so that several vaults can hold disjoint id ranges, as the hospitals
    /// of a consortium do.
    pub person_id_offset: u32,
}

/// Writes `population` into the vault at `node` (whose keys are `key`) as one new committed
/// segment and returns the number of measurement rows. `progress` is called with
/// the number of persons written so far, every 10,000 persons and at the end.
pub fn write_synthetic_cdm(
    node: &Path,
    key: &VaultKey,
    population: SyntheticPersons,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, VaultError> {
    let mut measurements = 0u64;
    let mut vault = Vault::open(node, key)?;
    let mut rng = rand_chacha_rng(population.seed);
    vault.bench_commit_cdm(&mut |rows| {
        let slot = rows.counters.entry("person".to_string()).or_insert(1);
        // Never reuse an id the vault has already given out.
        *slot = (*slot).max(i64::from(population.person_id_offset) + 1);
        for done in 0..population.persons {
            if done % 10_000 == 0 {
                progress(done);
            }
            let pid = next_id(rows.counters, "person");
            let female = rng.random_bool(0.51);
            let age: i32 = rng.random_range(0..95);
            let yob = 2025 - age;
            let band = if age < 40 {
                0.02
            } else if age < 65 {
                0.10
            } else {
                0.20
            };
            let diabetic = rng.random_bool(band);
            let pseudo = format!("{pid:032x}");
            rows.writer.push(
                "person",
                &[
                    Val::I64(Some(pid)),
                    Val::I32(Some(if female { 8532 } else { 8507 })),
                    Val::I32(Some(yob)),
                    Val::I32(Some(1)),
                    Val::I32(Some(1)),
                    Val::Date(None),
                    Val::I32(Some(0)),
                    Val::I32(Some(0)),
                    Val::Str(Some(&pseudo)),
                    Val::Str(Some(if female { "female" } else { "male" })),
                    Val::Str(None),
                    Val::Str(None),
                    Val::I64(None),
                ],
            )?;
            let code = if diabetic {
                "44054006"
            } else if rng.random_bool(0.3) {
                "38341003"
            } else {
                "444814009"
            };
            let cid = next_id(rows.counters, "condition_occurrence");
            rows.writer.push(
                "condition_occurrence",
                &[
                    Val::I64(Some(cid)),
                    Val::I64(Some(pid)),
                    Val::I32(Some(0)),
                    Val::Date(Some(19_000 + rng.random_range(0..1_000))),
                    Val::Date(None),
                    Val::I32(Some(32817)),
                    Val::Str(Some("active")),
                    Val::I64(None),
                    Val::Str(Some(code)),
                    Val::I32(Some(0)),
                ],
            )?;
            for _ in 0..3 {
                let mean = if diabetic { 7.8 } else { 5.4 };
                let a1c = mean + (rng.random::<f64>() - 0.5) * 2.0;
                let mid = next_id(rows.counters, "measurement");
                measurements += 1;
                rows.writer.push(
                    "measurement",
                    &[
                        Val::I64(Some(mid)),
                        Val::I64(Some(pid)),
                        Val::I32(Some(0)),
                        Val::Date(Some(19_000 + rng.random_range(0..2_000))),
                        Val::I32(Some(32817)),
                        Val::F64(Some((a1c * 10.0).round() / 10.0)),
                        Val::I32(Some(8554)),
                        Val::I64(None),
                        Val::Str(Some("4548-4")),
                        Val::I32(Some(0)),
                        Val::Str(Some("%")),
                        Val::Str(None),
                    ],
                )?;
            }
        }
        progress(population.persons);
        Ok(())
    })?;
    Ok(measurements)
}

/// Regions of the public-health population: postal prefixes `010` to `029`.
pub const HEALTH_REGIONS: u32 = 20;
/// Syndromes of the public-health population: condition codes `S01` to `S10`.
pub const HEALTH_SYNDROMES: u32 = 10;
/// Drugs of the public-health population: drug codes `D001` to `D100`.
pub const HEALTH_DRUGS: u32 = 100;
/// Adverse-event groups of the public-health population: condition codes `E01` to `E50`.
pub const HEALTH_EVENTS: u32 = 50;
/// First day (days since 1970-01-01) of the public-health population's 30-day surveillance
/// period.
pub const HEALTH_PERIOD_START: i32 = 19_700;

/// A public-health population written directly as CDM rows for the surveillance and
/// drug-safety benchmarks: each person has a sex, a birth year (age 0-94 in 2025), a home
/// region (one of [`HEALTH_REGIONS`] postal prefixes, as a `location` row), a first visit in
/// the 700 days before the period; with probability 0.3 one syndrome condition (one of
/// [`HEALTH_SYNDROMES`]) on a day of the 30-day period from [`HEALTH_PERIOD_START`]; two drug
/// exposures (of [`HEALTH_DRUGS`]) after the first visit; and with probability 0.5 one adverse
/// event (of [`HEALTH_EVENTS`]) after it. Returns the rows written.
pub fn write_synthetic_health_cdm(
    node: &Path,
    key: &VaultKey,
    population: SyntheticPersons,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, VaultError> {
    let mut written = 0u64;
    let mut vault = Vault::open(node, key)?;
    let mut rng = rand_chacha_rng(population.seed);
    let start = HEALTH_PERIOD_START;
    vault.bench_commit_cdm(&mut |rows| {
        let slot = rows.counters.entry("person".to_string()).or_insert(1);
        *slot = (*slot).max(i64::from(population.person_id_offset) + 1);
        for done in 0..population.persons {
            if done % 10_000 == 0 {
                progress(done);
            }
            let pid = next_id(rows.counters, "person");
            let female = rng.random_bool(0.51);
            let age: i32 = rng.random_range(0..95);
            let zip = format!("{:03}", 10 + rng.random_range(0..HEALTH_REGIONS));
            let pseudo = format!("{pid:032x}");
            rows.writer.push(
                "person",
                &[
                    Val::I64(Some(pid)),
                    Val::I32(Some(if female { 8532 } else { 8507 })),
                    Val::I32(Some(2025 - age)),
                    Val::I32(Some(1)),
                    Val::I32(Some(1)),
                    Val::Date(None),
                    Val::I32(Some(0)),
                    Val::I32(Some(0)),
                    Val::Str(Some(&pseudo)),
                    Val::Str(Some(if female { "female" } else { "male" })),
                    Val::Str(None),
                    Val::Str(None),
                    Val::I64(Some(pid)),
                ],
            )?;
            rows.writer.push(
                "location",
                &[
                    Val::I64(Some(pid)),
                    Val::Str(None),
                    Val::Str(Some("MA")),
                    Val::Str(Some(&zip)),
                    Val::Str(None),
                ],
            )?;
            let first = start - rng.random_range(1..700);
            let vid = next_id(rows.counters, "visit_occurrence");
            rows.writer.push(
                "visit_occurrence",
                &[
                    Val::I64(Some(vid)),
                    Val::I64(Some(pid)),
                    Val::I32(Some(9202)),
                    Val::Date(Some(first)),
                    Val::Date(Some(first)),
                    Val::I32(Some(32817)),
                    Val::Str(Some("AMB")),
                    Val::I32(Some(0)),
                ],
            )?;
            written += 3;
            let condition = |rows: &mut crate::BenchRows<'_>, code: &str, day: i32| {
                let cid = next_id(rows.counters, "condition_occurrence");
                rows.writer.push(
                    "condition_occurrence",
                    &[
                        Val::I64(Some(cid)),
                        Val::I64(Some(pid)),
                        Val::I32(Some(0)),
                        Val::Date(Some(day)),
                        Val::Date(None),
                        Val::I32(Some(32817)),
                        Val::Str(Some("active")),
                        Val::I64(None),
                        Val::Str(Some(code)),
                        Val::I32(Some(0)),
                    ],
                )
            };
            if rng.random_bool(0.3) {
                let code = format!("S{:02}", 1 + rng.random_range(0..HEALTH_SYNDROMES));
                condition(rows, &code, start + rng.random_range(0..30))?;
                written += 1;
            }
            for _ in 0..2 {
                let code = format!("D{:03}", 1 + rng.random_range(0..HEALTH_DRUGS));
                let day = first + rng.random_range(0..(start + 30 - first).max(1));
                let did = next_id(rows.counters, "drug_exposure");
                rows.writer.push(
                    "drug_exposure",
                    &[
                        Val::I64(Some(did)),
                        Val::I64(Some(pid)),
                        Val::I32(Some(0)),
                        Val::Date(Some(day)),
                        Val::Date(None),
                        Val::I32(Some(38_000_177)),
                        Val::F64(None),
                        Val::I64(None),
                        Val::Str(Some(&code)),
                        Val::I32(Some(0)),
                    ],
                )?;
                written += 1;
            }
            if rng.random_bool(0.5) {
                let code = format!("E{:02}", 1 + rng.random_range(0..HEALTH_EVENTS));
                let day = first + rng.random_range(0..(start + 60 - first).max(1));
                condition(rows, &code, day)?;
                written += 1;
            }
        }
        progress(population.persons);
        Ok(())
    })?;
    Ok(written)
}

/// Builds a vault with `persons` persons at `work_dir/node` (see [`write_synthetic_cdm`]) and
/// times [`COHORT_SQL`] `runs` times.
pub fn bench_cohort(
    work_dir: &Path,
    persons: u64,
    seed: u64,
    runs: usize,
) -> Result<CohortBench, VaultError> {
    let vault = build_cohort_vault(work_dir, &Passphrase::generate(), persons, seed)?;
    let ctx = crate::open_session(&vault.node, &vault.key)?;
    time_cohort(&vault, &ctx, runs)
}

/// The vault of the cohort benchmark.
#[derive(Debug)]
pub struct CohortVault {
    /// Its node directory.
    pub node: std::path::PathBuf,
    /// Its keys.
    pub key: VaultKey,
    /// Persons.
    pub persons: u64,
    /// Measurement rows.
    pub measurements: u64,
    /// Seconds to build it.
    pub build_seconds: f64,
}

/// Builds the cohort benchmark's vault, `persons` persons at `work_dir/node`, sealed under
/// `passphrase` (see [`write_synthetic_cdm`]).
pub fn build_cohort_vault(
    work_dir: &Path,
    passphrase: &Passphrase,
    persons: u64,
    seed: u64,
) -> Result<CohortVault, VaultError> {
    let node = work_dir.join("node");
    if node.exists() {
        std::fs::remove_dir_all(&node).map_err(VaultError::io(&node))?;
    }
    let t = Instant::now();
    let key = VaultKey::create(&node, passphrase, KdfParams::DEFAULT)?;
    let measurements = write_synthetic_cdm(
        &node,
        &key,
        SyntheticPersons {
            persons,
            seed,
            person_id_offset: 0,
        },
        &mut |_| {},
    )?;
    Ok(CohortVault {
        node,
        key,
        persons,
        measurements,
        build_seconds: t.elapsed().as_secs_f64(),
    })
}

/// Times [`COHORT_SQL`] `runs` times in `ctx`, a session over `vault` (in this process, or a
/// client session whose plans run elsewhere).
pub fn time_cohort(
    vault: &CohortVault,
    ctx: &datafusion::prelude::SessionContext,
    runs: usize,
) -> Result<CohortBench, VaultError> {
    let rt = crate::runtime()?;
    let mut runs_ms = Vec::with_capacity(runs);
    let mut cohort_persons = 0u64;
    let mut groups = 0;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let batches = rt.block_on(crate::sql(ctx, COHORT_SQL))?;
        runs_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        groups = batches.iter().map(|b| b.num_rows()).sum();
        cohort_persons = 0;
        for b in &batches {
            if let Some(col) = b.column_by_name("persons") {
                use datafusion::arrow::array::AsArray;
                if let Some(a) = col.as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>() {
                    cohort_persons += a.iter().flatten().map(|x| x as u64).sum::<u64>();
                }
            }
        }
    }
    let mut sorted = runs_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median_ms = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    Ok(CohortBench {
        persons: vault.persons,
        measurements: vault.measurements,
        build_seconds: vault.build_seconds,
        runs_ms,
        median_ms,
        cohort_persons,
        groups,
        peak_rss_kib: peak_rss_kib(),
    })
}

fn rand_chacha_rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Peak resident set size of this process (VmHWM in `/proc/self/status`), KiB.
pub fn peak_rss_kib() -> Option<u64> {
    vm_hwm_kib("/proc/self/status")
}

/// Peak resident set size of process `pid` (VmHWM in `/proc/<pid>/status`), KiB.
pub fn peak_rss_kib_of(pid: u32) -> Option<u64> {
    vm_hwm_kib(&format!("/proc/{pid}/status"))
}

fn vm_hwm_kib(status_file: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
