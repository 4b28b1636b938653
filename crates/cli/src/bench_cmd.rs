//! `medspace bench apply | ledger | federated | redeem | state`: the figures, printed. Each
//! benchmark lives in its library crate and prints its baseline from the same run, measured the
//! same way, and the ratio.

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use medspace_compute::bench::{self, FederatedOptions, Population, Progress};
use medspace_devnet::bench::{percentile, sorted};
use std::path::PathBuf;

fn bar(len: u64, template: &str, msg: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(msg);
    bar
}

/// `medspace bench apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Transactions in the timed mix.
    #[arg(long, default_value_t = 100_000)]
    pub txs: usize,
    /// Transactions per block.
    #[arg(long, default_value_t = 2_000)]
    pub block: usize,
    /// Registered patients.
    #[arg(long, default_value_t = 20_000)]
    pub patients: usize,
}

/// Runs `medspace bench apply`.
pub fn apply(a: ApplyArgs) -> anyhow::Result<()> {
    let r = medspace_ledger::bench_apply::apply(
        &medspace_ledger::bench_apply::ApplyOptions {
            txs: a.txs,
            block: a.block,
            patients: a.patients,
        },
        &mut |step| println!("{step}"),
    )?;
    println!("state: {} records, root {}", r.records, r.root);
    println!(
        "one core, blocks of {} transactions; both sides verify the same signatures in one batch per block",
        a.block
    );
    for (name, rate, raw) in [
        (
            "cold keys (every signer's key decompressed in the run)",
            r.cold,
            r.raw_cold,
        ),
        ("warm keys (keys already decompressed)", r.warm, r.raw_warm),
    ] {
        println!("{name}:");
        println!(
            "  apply (signatures + rules + state root): {:>8.0} tx/s  [signatures {:.0}%, rules {:.0}%, root {:.0}%]",
            rate.tx_per_s,
            100.0 * rate.signatures,
            100.0 * rate.rules,
            100.0 * rate.root
        );
        println!("  raw ed25519 batch verification:          {raw:>8.0} tx/s");
        println!("  ratio apply / raw: {:.2}", rate.tx_per_s / raw.max(1e-9));
    }
    Ok(())
}

/// `medspace bench ledger`.
#[derive(Args, Debug)]
pub struct LedgerArgs {
    /// Transactions to submit.
    #[arg(long, default_value_t = 80_000)]
    pub txs: usize,
    /// Submission rate (tx/s).
    #[arg(long, default_value_t = 8_000)]
    pub rate: u64,
    /// First loopback port.
    #[arg(long, default_value_t = 17_400)]
    pub base_port: u16,
    /// Where the validators run: in this process (four engines on one runtime), as one OS
    /// process per validator (`medspace node`, as a consortium really runs), or both.
    #[arg(long, value_enum, default_value_t = LedgerMode::Both)]
    pub mode: LedgerMode,
    /// The validators' HTTP APIs over TLS, plain HTTP, or both one after the other with the
    /// ratio (the processes mode; the in-process validators are driven without HTTP).
    #[arg(long, value_enum, default_value_t = TlsArg::Both)]
    pub tls: TlsArg,
    /// Where the processes hold their ledger state: in their on-disk stores (the default),
    /// whole in memory (`[state] store = "memory"`), or both one after the other with the
    /// ratio (the cost of the stores).
    #[arg(long, value_enum, default_value_t = StateArg::Disk)]
    pub state: StateArg,
}

/// Where `bench ledger`'s validator processes keep their state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// In the on-disk store (`[state] store = "disk"`).
    Disk,
    /// Whole in memory.
    Memory,
    /// Both, on disk first, then the ratio disk / memory.
    Both,
}

impl StateArg {
    /// The runs it asks for: `true` for in memory.
    fn runs(self) -> &'static [bool] {
        match self {
            StateArg::Disk => &[false],
            StateArg::Memory => &[true],
            StateArg::Both => &[false, true],
        }
    }
}

/// Whether a benchmark's HTTP hops speak TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TlsArg {
    /// TLS, the certificates pinned in the genesis (what a consortium runs).
    On,
    /// Plain HTTP (no certificates; the nodes allow it).
    Off,
    /// Both, TLS first, then the ratio TLS / plain.
    Both,
}

impl TlsArg {
    /// The runs it asks for: `true` for TLS.
    fn runs(self) -> &'static [bool] {
        match self {
            TlsArg::On => &[true],
            TlsArg::Off => &[false],
            TlsArg::Both => &[true, false],
        }
    }
}

fn tls_label(tls: bool) -> &'static str {
    if tls { "tls" } else { "plain http" }
}

/// Where `bench ledger`'s validators run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LedgerMode {
    /// Four engines in this process.
    InProcess,
    /// One `medspace node` process per validator.
    Processes,
    /// Both, one after the other.
    Both,
}

/// Runs `medspace bench ledger`.
pub fn ledger(a: LedgerArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut in_process_tps = None;
    if a.mode != LedgerMode::Processes {
        let opts = medspace_chain::bench::BenchOptions {
            txs: a.txs,
            rate: a.rate,
            base_port: a.base_port,
            ..Default::default()
        };
        let dir = medspace_chain::bench::temp_work_dir()?;
        let workload = medspace_ledger::bench::workload(a.txs)?;
        println!(
            "bench ledger (in process): the medspace state machine on {} validators over loopback TCP in one process; {} transactions (patients registering, then consenting) offered at {} tx/s",
            opts.validators, a.txs, a.rate
        );
        let report = medspace_chain::bench::bench_workload(&opts, &dir, workload);
        let _ = std::fs::remove_dir_all(&dir);
        let report = report?;
        println!(
            "bench ledger (in process): validators={} {report}",
            opts.validators
        );
        in_process_tps = Some(report.tps);
        let ceiling = report.apply_tps * cores / opts.validators as f64;
        println!(
            "machine ceiling (apply rate x {cores} cores / {} validators) = {ceiling:.0} tx/s; finalized/ceiling ratio {:.2}",
            opts.validators,
            report.tps / ceiling.max(1e-9)
        );
    }
    if a.mode != LedgerMode::Processes {
        println!(
            "  (in process the validators are driven through their handles and talk commonware-p2p, encrypted and authenticated by their ed25519 keys: no HTTP hop, so TLS does not apply; --tls applies to the processes mode)"
        );
    }
    if a.mode != LedgerMode::InProcess {
        let exe = std::env::current_exe().context("locating the medspace binary")?;
        println!(
            "bench ledger (processes): 4 `medspace node` validator processes over loopback TCP; the same workload, each validator's share posted as POST /v1/txs batches"
        );
        medspace_devnet::bench::ledger_process_runs(
            &exe,
            medspace_devnet::bench::LedgerOptions {
                txs: a.txs,
                rate: a.rate,
                base_port: a.base_port.saturating_add(1000),
                tls: true,
                state_in_memory: false,
            },
            &a.tls
                .runs()
                .iter()
                .flat_map(|t| a.state.runs().iter().map(|m| (*t, *m)))
                .collect::<Vec<_>>(),
            in_process_tps,
            &mut |line| println!("{line}"),
        )?;
    }
    Ok(())
}

/// Which aggregate the federated benchmark's query computes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AggregateArg {
    /// Persons by sex and age band (20 cells).
    Count,
    /// Mean of the latest HbA1c by sex (count and clamped sum per cell).
    Mean,
    /// One daily surveillance window: 10 syndromes x 20 regions x 5 age bands (1,000 cells).
    Surveil,
    /// A drug-safety scan: 100 drugs x 50 event groups (5,000 2x2 tables).
    DrugSafety,
}

/// `medspace bench federated`.
#[derive(Args, Debug)]
pub struct FederatedArgs {
    /// Synthetic persons per hospital (three hospitals).
    #[arg(long, default_value_t = 1_000_000)]
    pub persons: u64,
    /// Timed runs of each side.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Seed of the data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The aggregate of the query.
    #[arg(long, value_enum, default_value_t = AggregateArg::Count)]
    pub aggregate: AggregateArg,
    /// Work directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Jobs timed end to end on a devnet (submission to finalized result; 0 skips it).
    #[arg(long, default_value_t = 20)]
    pub e2e_jobs: usize,
    /// Generated patients per hospital of that devnet.
    #[arg(long, default_value_t = 200)]
    pub e2e_patients: usize,
    /// First loopback port of that devnet.
    #[arg(long, default_value_t = 27_600)]
    pub e2e_base_port: u16,
}

fn list(ms: &[f64]) -> String {
    ms.iter()
        .map(|m| format!("{m:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `medspace bench federated`.
pub fn federated(args: FederatedArgs) -> anyhow::Result<()> {
    let (spec, population, window) = match args.aggregate {
        AggregateArg::Count => (bench::COUNT_SPEC.to_string(), Population::Clinical, None),
        AggregateArg::Mean => (bench::MEAN_SPEC.to_string(), Population::Clinical, None),
        AggregateArg::Surveil => (bench::surveil_spec(), Population::PublicHealth, Some(15)),
        AggregateArg::DrugSafety => (bench::drug_safety_spec(), Population::PublicHealth, None),
    };
    let spec = spec.as_str();
    let options = FederatedOptions {
        persons_per_site: args.persons,
        runs: args.runs,
        seed: args.seed,
        spec: spec.to_string(),
        population,
        window,
    };
    let (dir, temp) = crate::vault_cmd::work_dir(args.dir.clone())?;
    let b = bar(
        args.persons.saturating_mul(bench::SITES.len() as u64),
        "{msg} {bar:40} {pos}/{len} ({per_sec}) {eta}",
        "building the hospitals' CDM tables (persons)",
    );
    let result = bench::bench_federated(&dir, &options, &mut |p| match p {
        Progress::Building { done, .. } => b.set_position(done),
        Progress::Built => {
            b.set_message("check run without protection, then timed runs");
            b.set_length(options.runs.max(1) as u64);
            b.set_position(0);
        }
        Progress::Runs { done, .. } => b.set_position(done as u64),
    });
    b.finish_and_clear();
    let e2e = if args.e2e_jobs > 0 && population == Population::Clinical && result.is_ok() {
        let b = bar(
            args.e2e_jobs as u64,
            "{msg} {bar:40} {pos}/{len} {eta}",
            "end-to-end jobs on the devnet",
        );
        let out = medspace_devnet::bench::jobs_end_to_end(
            &dir.join("e2e-devnet"),
            &medspace_devnet::bench::JobsOptions {
                net: medspace_devnet::devnet::DevnetOptions {
                    seed: args.seed,
                    patients: args.e2e_patients,
                    fhir: Vec::new(),
                    base_port: args.e2e_base_port,
                    plain_http: false,
                },
                jobs: args.e2e_jobs,
            },
            &mut |done, _| b.set_position(done as u64),
        );
        b.finish_and_clear();
        Some(out)
    } else {
        None
    };
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let r = result?;
    print!("{}", r.report(spec));
    if let Some(ms) = e2e {
        let ms = sorted(ms?);
        println!(
            "end to end on a devnet (4 validator processes + observer, {} generated patients per hospital): {} jobs, submission -> result finalized and verified by the client (ms): {}",
            args.e2e_patients,
            ms.len(),
            list(&ms)
        );
        println!(
            "e2e p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
            percentile(&ms, 0.5),
            percentile(&ms, 0.9),
            ms.last().copied().unwrap_or(0.0)
        );
    }
    Ok(())
}

/// `medspace bench redeem`.
#[derive(Args, Debug)]
pub struct RedeemArgs {
    /// Generated patients per hospital.
    #[arg(long, default_value_t = 40)]
    pub patients: usize,
    /// One FHIR folder per hospital instead (e.g. the Synthea split).
    #[arg(long, num_args = 1.., value_name = "DIR")]
    pub fhir: Vec<PathBuf>,
    /// Sequential redemptions timed.
    #[arg(long, default_value_t = 30)]
    pub redemptions: usize,
    /// Concurrent clients for the rate.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Redemptions in the rate run.
    #[arg(long, default_value_t = 200)]
    pub rate_redemptions: usize,
    /// First loopback port of the devnet.
    #[arg(long, default_value_t = 27_800)]
    pub base_port: u16,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The nodes' HTTP APIs over TLS, plain HTTP, or both (one devnet each, one after the
    /// other) with the ratio.
    #[arg(long, value_enum, default_value_t = TlsArg::Both)]
    pub tls: TlsArg,
}

/// Runs `medspace bench redeem`.
pub fn redeem(a: RedeemArgs) -> anyhow::Result<()> {
    // (tls, sequential p50 ms, transfer p50 ms, concurrent redemptions/s) of each run.
    let mut figures = Vec::new();
    for (run, &tls) in a.tls.runs().iter().enumerate() {
        figures.push((tls, redeem_once(&a, tls, run)?));
    }
    if let [(true, t), (false, p)] = figures.as_slice() {
        println!(
            "bench redeem: tls / plain http, same run: {}",
            medspace_devnet::bench::ratios(&[
                ("sequential p50", t.0, p.0, "ms", 0),
                ("transfer and client p50", t.1, p.1, "ms", 1),
                ("concurrent rate", t.2, p.2, "redemptions/s", 1),
            ])
        );
    }
    Ok(())
}

/// One devnet's redemptions, printed; returns (sequential p50 ms, transfer and client p50 ms,
/// concurrent redemptions/s).
fn redeem_once(a: &RedeemArgs, tls: bool, run: usize) -> anyhow::Result<(f64, f64, f64)> {
    let b = bar(
        (a.redemptions + a.rate_redemptions) as u64,
        "{msg} {bar:40} {pos}/{len}",
        if tls {
            "redemptions (tls)"
        } else {
            "redemptions (plain http)"
        },
    );
    let r = medspace_devnet::bench::redeem(
        &medspace_devnet::bench::RedeemOptions {
            net: medspace_devnet::devnet::DevnetOptions {
                seed: a.seed,
                patients: a.patients,
                fhir: a.fhir.clone(),
                // Each run on its own ports: the previous devnet's sockets may still linger.
                base_port: a.base_port.saturating_add(200 * run as u16),
                plain_http: !tls,
            },
            redemptions: a.redemptions,
            concurrency: a.concurrency,
            rate_redemptions: a.rate_redemptions,
        },
        &mut |done, _| b.set_position(done as u64),
    )?;
    b.finish_and_clear();
    println!("bench redeem ({}):", tls_label(tls));
    let sizes = &r.record_sizes;
    println!(
        "bench redeem: a devnet of 4 validator processes + observer; hospital-a holds {} patients ({} resources each on average, the largest {})",
        sizes.len(),
        sizes.iter().sum::<usize>() / sizes.len().max(1),
        sizes.iter().max().copied().unwrap_or(0)
    );
    let seq = &r.sequential;
    let total = sorted(seq.iter().map(|t| t.total_ms));
    let prep = sorted(seq.iter().map(|t| t.prepare_ms));
    let fin = sorted(seq.iter().map(|t| t.finality_ms));
    let rest = sorted(
        seq.iter()
            .map(|t| t.total_ms - t.prepare_ms - t.finality_ms),
    );
    println!(
        "{} sequential redemptions of the largest record ({} resources each): client p50 {:.0} ms, p90 {:.0} ms, request to last byte, the access record's finality included",
        seq.len(),
        seq.first().map_or(0, |t| t.resources),
        percentile(&total, 0.5),
        percentile(&total, 0.9),
    );
    let local = sorted(r.local_ms.iter().copied());
    println!(
        "  baseline, same run: reading, scoping, serializing and hashing that record from the vault in-process p50 {:.1} ms; a redemption costs {:.1}x that",
        percentile(&local, 0.5),
        percentile(&total, 0.5) / percentile(&local, 0.5).max(1e-9),
    );
    println!(
        "  split (p50): holder prepares {:.1} ms + the access record's finality {:.0} ms + transfer and client {:.1} ms",
        percentile(&prep, 0.5),
        percentile(&fin, 0.5),
        percentile(&rest, 0.5),
    );
    let conc = sorted(r.concurrent.iter().map(|t| t.total_ms));
    println!(
        "{} redemptions by {} concurrent clients over {} grants in {:.1} s: {:.1} redemptions/s at one node (client p50 {:.0} ms)",
        r.concurrent.len(),
        a.concurrency,
        r.grants,
        r.concurrent_s,
        r.concurrent.len() as f64 / r.concurrent_s.max(1e-9),
        percentile(&conc, 0.5)
    );
    Ok((
        percentile(&total, 0.5),
        percentile(&rest, 0.5),
        r.concurrent.len() as f64 / r.concurrent_s.max(1e-9),
    ))
}

/// `medspace bench state`.
#[derive(Args, Debug)]
pub struct StateArgs {
    /// Registered patients (three consents each).
    #[arg(long, default_value_t = 1_000_000)]
    pub patients: u64,
    /// Patient grants.
    #[arg(long, default_value_t = 100_000)]
    pub grants: u64,
    /// Record accesses (each under a grant).
    #[arg(long, default_value_t = 1_000_000)]
    pub accesses: u64,
    /// Patients linked at the hospital whose worker plans the job (at most --patients).
    #[arg(long, default_value_t = 1_000_000)]
    pub linked: u64,
    /// Where the checkpoint and the state stores are written (default: a temporary
    /// directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The node cache the on-disk state is read through, MiB (what bounds its memory).
    #[arg(long, default_value_t = 256)]
    pub cache_mib: usize,
    /// Build the state whole in memory instead of into an on-disk store (the old layout).
    #[arg(long)]
    pub in_memory: bool,
}

/// `medspace query status latest` as a fresh light client runs it on `state`, served by the
/// node's read API: the latest contract, its approvals, budget and jobs, and the signer's nonce
/// (what any command that signs reads first).
fn light_status(
    state: &medspace_state::State,
    height: u64,
    reader: &medspace_types::Keypair,
) -> Result<medspace_compute::bench_state::LightFigures, String> {
    use medspace_client::study;
    let figures =
        medspace_client::pinned::measure(state.clone(), height, "hospital-a", reader, 5, |light| {
            light.next_nonce(&reader.public())?;
            let contract = study::latest_contract(light)?
                .ok_or_else(|| medspace_client::ClientError::Missing("no contract".into()))?;
            Ok(study::status_lines(light, contract)?.len())
        })
        .map_err(|e| e.to_string())?;
    Ok(medspace_compute::bench_state::LightFigures {
        command: "query status latest".into(),
        runs: figures.runs,
        pieces: figures.pieces,
        bytes: figures.bytes,
    })
}

/// Runs `medspace bench state`.
pub fn state(a: StateArgs) -> anyhow::Result<()> {
    let (dir, temp) = crate::vault_cmd::work_dir(a.dir)?;
    let opts = medspace_compute::bench_state::StateOptions {
        patients: a.patients,
        grants: a.grants,
        accesses: a.accesses,
        linked: a.linked.min(a.patients),
        dir: dir.clone(),
        store_cache: (!a.in_memory).then(|| a.cache_mib.saturating_mul(1 << 20)),
    };
    let started = std::time::Instant::now();
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let result = medspace_compute::bench_state::state(&opts, Some(&light_status), &mut |step| {
        spinner.set_message(step.to_string());
    });
    spinner.finish_and_clear();
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let r = result.context("bench state")?;
    print!("{}", r.report());
    println!(
        "wall time {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if temp {
            " (the temporary checkpoint was removed)"
        } else {
            ""
        }
    );
    Ok(())
}
