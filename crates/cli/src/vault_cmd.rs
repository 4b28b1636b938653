//! Commands of the hospital's vault: ingest, sql, quality, catalog profile, export, synth, and
//! the vault benchmarks. All logic lives in `medspace-vault` / `medspace-synth`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use medspace_vault::seal::{KdfParams, Passphrase};
use medspace_vault::{
    IngestOptions, OnError, Vault, VaultKey, Vocabulary, bench, catalog, export, fhir, quality,
};

/// The passphrase of a node's vault, or of `file` when given (see
/// [`medspace_node::vault_passphrase`]).
fn passphrase(node: &Path, file: Option<&Path>) -> anyhow::Result<Passphrase> {
    Ok(medspace_node::vault_passphrase(node, file)?)
}

/// Unlocks a node's vault (argon2id once).
pub fn vault_key(node: &Path) -> anyhow::Result<VaultKey> {
    Ok(VaultKey::unlock(node, &passphrase(node, None)?)?)
}

/// `medspace vault ...`.
#[derive(Subcommand, Debug)]
pub enum VaultCmd {
    /// Seal the vault's keys under a new passphrase (cheap: the data is not rewritten).
    Rewrap {
        /// Node directory.
        #[arg(long)]
        node: PathBuf,
        /// File holding the new passphrase.
        #[arg(long)]
        new_passphrase_file: PathBuf,
    },
    /// Re-encrypt every file of the vault under a fresh data key (stop the node first).
    RotateKey {
        /// Node directory.
        #[arg(long)]
        node: PathBuf,
        /// Seal the new key under this passphrase instead of the current one.
        #[arg(long)]
        new_passphrase_file: Option<PathBuf>,
    },
    /// Convert a vault written unencrypted by an earlier version (stop the node first).
    Encrypt {
        /// Node directory.
        #[arg(long)]
        node: PathBuf,
    },
    /// Run the hospital's Apache Ballista scheduler for its vault's queries; a node uses it
    /// with `[vault] scheduler = "df://<address>"`.
    Scheduler {
        /// Address to listen on (port 0: any free port, printed).
        #[arg(long, default_value = "127.0.0.1:50050")]
        listen: String,
    },
    /// Run a Ballista executor that reads the node's vault (its passphrase as for `ingest`).
    Executor(medspace_cluster::executor::ExecutorSettings),
}

/// Runs `medspace vault ...`.
pub fn run_vault(cmd: VaultCmd) -> anyhow::Result<()> {
    match cmd {
        VaultCmd::Scheduler { listen } => medspace_cluster::scheduler::serve(&listen, |a| {
            println!("scheduler listening on {a}");
        })?,
        VaultCmd::Executor(s) => {
            let key = vault_key(&s.node)?;
            medspace_cluster::executor::serve(s, &key)?;
        }
        VaultCmd::Rewrap {
            node,
            new_passphrase_file,
        } => {
            let old = passphrase(&node, None)?;
            let new = passphrase(&node, Some(&new_passphrase_file))?;
            let t = std::time::Instant::now();
            VaultKey::rewrap(&node, &old, &new, KdfParams::DEFAULT)?;
            println!(
                "vault keys of {} sealed under the new passphrase ({} ms); point the node's [vault] passphrase_file (or {}) at it",
                node.display(),
                t.elapsed().as_millis(),
                medspace_vault::at_rest::PASSPHRASE_ENV
            );
        }
        VaultCmd::RotateKey {
            node,
            new_passphrase_file,
        } => {
            let old = passphrase(&node, None)?;
            let new = match &new_passphrase_file {
                Some(f) => passphrase(&node, Some(f))?,
                None => old.clone(),
            };
            let key = VaultKey::unlock(&node, &old)?;
            let t = std::time::Instant::now();
            Vault::reencrypt(&node, &key, &new, KdfParams::DEFAULT)?;
            println!(
                "vault of {} re-encrypted under a new data key in {:.1} s",
                node.display(),
                t.elapsed().as_secs_f64()
            );
        }
        VaultCmd::Encrypt { node } => {
            let pass = passphrase(&node, None)?;
            Vault::encrypt_plain(&node, &pass, KdfParams::DEFAULT)?;
            println!("vault of {} is now encrypted", node.display());
        }
    }
    Ok(())
}

/// What to do with a bad resource.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OnErrorArg {
    /// Skip the bad resource and store the rest.
    Skip,
    /// Refuse the whole batch.
    Refuse,
}

/// `medspace ingest`.
#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Node directory (the vault lives in `<node>/vault`).
    #[arg(long)]
    pub node: PathBuf,
    /// FHIR R4 Bundle JSON files, folders of them, or Bulk NDJSON files.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Skip bad resources, or refuse the whole batch.
    #[arg(long, value_enum, default_value = "skip")]
    pub on_error: OnErrorArg,
    /// OMOP vocabulary directory (CONCEPT.csv ...); default `$MEDSPACE_VOCAB` or
    /// `../shared/reference/omop-vocabulary-subset` when present.
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// The source system the files come from (`lab-system`, `ehr`): resources are keyed by
    /// (source, type, id), so two sources never collide and references resolve within their
    /// source. Default: the vault's default namespace (where every earlier ingest lives).
    #[arg(long)]
    pub source: Option<String>,
    /// An update feed: changed content for a stored resource is a new version (its CDM rows
    /// replace the old ones; every version is kept). Without it a changed clinical resource is
    /// refused as a conflict, with everything that refers to it.
    #[arg(long)]
    pub update: bool,
    /// An incremental (Bulk Data `_since`) feed: the instant it covers changes since. Implies
    /// `--update`; recorded with the ingest.
    #[arg(long, value_name = "INSTANT")]
    pub since: Option<String>,
    /// Threads that parse the files (0: one per core); the outcome is the same for any number.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Commit in batches of about this many resources (memory holds one batch); run again, an
    /// interrupted ingest resumes after its last commit. 0 or `--on-error refuse`: one batch.
    #[arg(long, default_value_t = medspace_vault::COMMIT_EVERY)]
    pub commit_every: usize,
    /// Print the report as JSON, with the process's peak memory (for `bench ingest`).
    #[arg(long, hide = true)]
    pub json: bool,
}

/// `medspace sql` (the institution's own operator only; never exposed to other parties).
#[derive(Args, Debug)]
pub struct SqlArgs {
    /// Node directory.
    #[arg(long)]
    pub node: PathBuf,
    /// SQL over the CDM tables.
    pub query: String,
}

/// `medspace quality`.
#[derive(Args, Debug)]
pub struct QualityArgs {
    /// Node directory.
    #[arg(long)]
    pub node: PathBuf,
    /// Dates after this day (YYYY-MM-DD) count as implausible; default today (UTC).
    #[arg(long)]
    pub as_of: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The failing checks with their records and how to fix each (unmapped codes looked up in
    /// the vocabulary of `--vocab`).
    #[arg(long)]
    pub checks: bool,
    /// Map every stored record's codes again through the vocabulary of `--vocab` (the fix for
    /// unmapped codes), then print the checks.
    #[arg(long)]
    pub remap: bool,
    /// OMOP vocabulary directory (default `$MEDSPACE_VOCAB` or the shared subset).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
}

/// `medspace catalog ...` (vault part).
#[derive(Subcommand, Debug)]
pub enum CatalogCmd {
    /// Write the dataset description (tables, fields, counts, quality, privacy levels, hash).
    Profile(CatalogProfileArgs),
}

/// `medspace catalog profile`.
#[derive(Args, Debug)]
pub struct CatalogProfileArgs {
    /// Node directory.
    #[arg(long)]
    pub node: PathBuf,
    /// Output file (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// "As of" date for the quality profile (YYYY-MM-DD); default today (UTC).
    #[arg(long)]
    pub as_of: Option<String>,
}

/// `medspace export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Node directory.
    #[arg(long)]
    pub node: PathBuf,
    /// One patient: person_id, source Patient.id or pseudonym.
    #[arg(long, conflicts_with = "ndjson", required_unless_present = "ndjson")]
    pub patient: Option<String>,
    /// Output file for `--patient` (default: stdout).
    #[arg(long, requires = "patient")]
    pub out: Option<PathBuf>,
    /// Write Bulk NDJSON of every stored resource into this directory.
    #[arg(long)]
    pub ndjson: Option<PathBuf>,
}

/// `medspace synth`.
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Number of patients.
    #[arg(long)]
    pub patients: u64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Hospital number (each hospital gets its own patients).
    #[arg(long, default_value_t = 0)]
    pub hospital: u32,
    /// Output directory (Bulk NDJSON, one file per resource type).
    #[arg(long)]
    pub out: PathBuf,
    /// Inject the example surveillance scenario: four syndromes (influenza-like illness, acute
    /// gastroenteritis, fever with rash, severe acute respiratory infection) seen day by day
    /// over the 56 days before the generator's "as of" date, with an outbreak of
    /// influenza-like illness in one region. The ground truth is printed.
    #[arg(long)]
    pub outbreak: bool,
    /// Inject the example drug-safety scenario: ibuprofen causes gastrointestinal hemorrhage
    /// within 30 days, acetaminophen does not (each prescribed to 30 % of the patients,
    /// background risk 5 %). The ground truth is printed.
    #[arg(long)]
    pub safety: bool,
}

/// `medspace bench ...` (vault part; the lead merges this with the other benches).
#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Ingest speed into the CDM tables, one core, printed as `<n> resources/s`.
    Ingest(BenchIngestArgs),
    /// Cohort query (condition + lab threshold, by sex and age band) on N persons.
    Cohort(BenchCohortArgs),
}

/// `medspace bench ingest`.
#[derive(Args, Debug)]
pub struct BenchIngestArgs {
    /// Synthetic patients to generate and ingest.
    #[arg(long, default_value_t = 2000)]
    pub patients: u64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads of the parallel run (0: one per core); the baseline runs on one.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// The input: `bundles`, one transaction Bundle file per patient (as Synthea writes
    /// them), or `ndjson`, Bulk NDJSON (one file per resource type).
    #[arg(long, default_value = "bundles", value_parser = ["bundles", "ndjson"])]
    pub format: String,
    /// Work directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `medspace bench cohort`.
#[derive(Args, Debug)]
pub struct BenchCohortArgs {
    /// Persons in the vault.
    #[arg(long, default_value_t = 1_000_000)]
    pub persons: u64,
    /// Timed runs of the query.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Work directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also run it on an Apache Ballista scheduler with two executors (child processes of this
    /// binary, on loopback), each taking this many tasks at once, and print both.
    #[arg(long)]
    pub cluster: Option<usize>,
}

pub fn load_vocab(flag: Option<&Path>) -> anyhow::Result<Option<Arc<Vocabulary>>> {
    let dir = match flag {
        Some(d) => Some(d.to_path_buf()),
        None => std::env::var_os("MEDSPACE_VOCAB")
            .map(PathBuf::from)
            .or_else(|| {
                let d = PathBuf::from("../shared/reference/omop-vocabulary-subset");
                d.join("CONCEPT.csv").exists().then_some(d)
            }),
    };
    match dir {
        Some(d) => {
            let v = Vocabulary::load(&d)
                .with_context(|| format!("loading vocabulary from {}", d.display()))?;
            Ok(Some(Arc::new(v)))
        }
        None => {
            eprintln!(
                "note: no vocabulary found (--vocab); concept ids will be 0, source codes are kept"
            );
            Ok(None)
        }
    }
}

fn as_of(flag: Option<&str>) -> anyhow::Result<i32> {
    match flag {
        Some(s) => {
            fhir::parse_date(s).with_context(|| format!("--as-of is not a date (YYYY-MM-DD): {s}"))
        }
        None => {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            Ok(i32::try_from(secs / 86_400)?)
        }
    }
}

/// Runs `medspace ingest`.
pub fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    let vocabulary = load_vocab(args.vocab.as_deref())?;
    // A first ingest creates the vault, its keys sealed under the node's passphrase.
    let key = VaultKey::unlock_or_create(
        &args.node,
        &passphrase(&args.node, None)?,
        KdfParams::DEFAULT,
    )?;
    let mut vault = Vault::open(&args.node, &key)?;
    let opts = IngestOptions {
        on_error: match args.on_error {
            OnErrorArg::Skip => OnError::Skip,
            OnErrorArg::Refuse => OnError::Refuse,
        },
        progress: !args.quiet,
        vocabulary,
        source: args.source,
        updates: args.update,
        since: args.since,
        threads: args.threads,
        commit_every: args.commit_every,
        ..IngestOptions::default()
    };
    let report = vault.ingest_paths(&args.paths, &opts)?;
    const SHOWN: usize = 50;
    for e in report.errors.iter().take(SHOWN) {
        eprintln!("error: {e}");
    }
    if report.errors.len() > SHOWN {
        eprintln!("error: ... and {} more", report.errors.len() - SHOWN);
    }
    let peak_kib = medspace_vault::bench::peak_rss_kib();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"report": report, "peak_rss_kib": peak_kib})
        );
        return Ok(());
    }
    println!("{}", report.printed(peak_kib));
    if report.refused > 0 {
        bail!(
            "batch refused: {} bad resources (--on-error refuse); the vault is unchanged",
            report.errors.len()
        );
    }
    Ok(())
}

/// Runs `medspace sql`.
pub fn run_sql(args: SqlArgs) -> anyhow::Result<()> {
    let key = vault_key(&args.node)?;
    println!(
        "{}",
        medspace_vault::sql_blocking(&args.node, &key, &args.query)?
    );
    Ok(())
}

/// Runs `medspace quality`.
pub fn run_quality(args: QualityArgs) -> anyhow::Result<()> {
    let key = vault_key(&args.node)?;
    let vocab = if args.checks || args.remap {
        load_vocab(args.vocab.as_deref())?
    } else {
        None
    };
    if args.remap {
        let v = vocab
            .clone()
            .context("--remap needs a vocabulary (--vocab)")?;
        let mut vault = Vault::open(&args.node, &key)?;
        let done = vault.remap(v, true)?;
        for r in &done.batches {
            eprintln!(
                "re-mapped {} resources; rows per table: {:?}",
                r.updated, r.rows_by_table
            );
        }
        if done.unversioned > 0 {
            eprintln!(
                "{} resources were stored before versioning and cannot be re-mapped: ingest them again",
                done.unversioned
            );
        }
    }
    let p = quality::profile_node(&args.node, &key, as_of(args.as_of.as_deref())?)?;
    if args.checks || args.remap {
        let unmapped = medspace_vault::checks::unmapped_codes(&args.node, &key)?;
        let checks = medspace_vault::checks::checks(&p, &unmapped, vocab.as_deref());
        if args.json {
            println!("{}", serde_json::to_string_pretty(&checks)?);
        } else {
            print!("{}", medspace_vault::checks::render(&checks));
        }
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", p.render());
    }
    Ok(())
}

/// Runs `medspace catalog profile` (and the other vault catalog commands).
pub fn run_catalog(cmd: CatalogCmd) -> anyhow::Result<()> {
    match cmd {
        CatalogCmd::Profile(args) => {
            let key = vault_key(&args.node)?;
            let d = catalog::describe_node(&args.node, &key, as_of(args.as_of.as_deref())?)?;
            let json = serde_json::to_string_pretty(&d)?;
            match args.out {
                Some(path) => {
                    std::fs::write(&path, json)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {} (content_hash {})", path.display(), d.content_hash);
                }
                None => println!("{json}"),
            }
        }
    }
    Ok(())
}

/// Runs `medspace export`.
pub fn run_export(args: ExportArgs) -> anyhow::Result<()> {
    let key = vault_key(&args.node)?;
    let vault = Vault::open_read_only(&args.node, &key)?;
    if let Some(dir) = args.ndjson {
        let s = export::export_ndjson(&vault, &dir)?;
        let total: u64 = s.by_type.values().sum();
        eprintln!("wrote {total} resources as NDJSON into {}", dir.display());
        for (t, n) in s.by_type {
            eprintln!("  {t}: {n}");
        }
        return Ok(());
    }
    let Some(id) = args.patient else {
        bail!("give --patient <id> or --ndjson <dir>")
    };
    let bundle = export::export_patient(&vault, &id)?;
    let json = serde_json::to_string_pretty(&bundle)?;
    match args.out {
        Some(path) => {
            std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?
        }
        None => println!("{json}"),
    }
    Ok(())
}

/// Runs `medspace synth`.
pub fn run_synth(args: SynthArgs) -> anyhow::Result<()> {
    let bar = ProgressBar::new(args.patients);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} patients ({per_sec}) {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let cfg = medspace_synth::SynthConfig {
        patients: args.patients,
        seed: args.seed,
        hospital: args.hospital,
    };
    let scenarios = medspace_synth::Scenarios {
        safety: args
            .safety
            .then(|| medspace_synth::SafetyScenario::example(0.3, 0.3, 0.05)),
        outbreak: args
            .outbreak
            .then(medspace_synth::OutbreakScenario::example),
    };
    let s = medspace_synth::write_ndjson_with(cfg, &scenarios, &args.out, |n| {
        if n % 256 == 0 {
            bar.set_position(n);
        }
    })?;
    bar.finish_and_clear();
    println!(
        "wrote {} patients, {} resources into {}",
        s.patients,
        s.resources,
        args.out.display()
    );
    if let Some(o) = &scenarios.outbreak {
        print!("{}", o.describe());
    }
    if let Some(sc) = &scenarios.safety {
        print!("{}", sc.describe());
    }
    Ok(())
}

pub(crate) fn work_dir(flag: Option<PathBuf>) -> anyhow::Result<(PathBuf, bool)> {
    match flag {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            Ok((d, false))
        }
        None => {
            let secs = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let d =
                std::env::temp_dir().join(format!("medspace-bench-{}-{secs}", std::process::id()));
            std::fs::create_dir_all(&d)?;
            Ok((d, true))
        }
    }
}

/// Runs `medspace bench ingest` / `bench cohort`.
pub fn run_bench(cmd: Bench) -> anyhow::Result<()> {
    match cmd {
        Bench::Ingest(a) => {
            let (dir, temp) = work_dir(a.dir)?;
            let format = match a.format.as_str() {
                "ndjson" => bench::IngestFormat::Ndjson,
                _ => bench::IngestFormat::Bundles,
            };
            let exe = std::env::current_exe()?;
            let r = bench::bench_ingest(&exe, &dir, a.patients, a.seed, a.threads, format);
            if temp {
                let _ = std::fs::remove_dir_all(&dir);
            }
            println!("{}", r?);
        }
        Bench::Cohort(BenchCohortArgs {
            cluster: Some(vcores),
            persons,
            runs,
            seed,
            dir,
        }) => {
            let (dir, temp) = work_dir(dir)?;
            let exe = std::env::current_exe()?;
            let r = medspace_cluster::bench::cohort(
                &exe,
                &dir,
                persons,
                seed,
                runs,
                vcores,
                &mut |s| eprintln!("bench cohort: {s}"),
            );
            if temp {
                let _ = std::fs::remove_dir_all(&dir);
            }
            println!(
                "bench cohort: {persons} persons; query: {}\n{}",
                bench::COHORT_SQL,
                r?
            );
        }
        Bench::Cohort(a) => {
            let (dir, temp) = work_dir(a.dir)?;
            let r = bench::bench_cohort(&dir, a.persons, a.seed, a.runs);
            if temp {
                let _ = std::fs::remove_dir_all(&dir);
            }
            let r = r?;
            println!(
                "bench cohort: {} persons, {} measurements (tables built in {:.1} s)",
                r.persons, r.measurements, r.build_seconds
            );
            println!("query: {}", bench::COHORT_SQL);
            let runs: Vec<String> = r.runs_ms.iter().map(|m| format!("{m:.1}")).collect();
            println!("runs (ms): {}", runs.join(" "));
            println!(
                "median {:.1} ms; cohort {} persons in {} groups",
                r.median_ms, r.cohort_persons, r.groups
            );
            if let Some(kib) = r.peak_rss_kib {
                println!("peak memory (VmHWM): {:.1} MiB", kib as f64 / 1024.0);
            }
        }
    }
    Ok(())
}
