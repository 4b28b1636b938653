//! `medspace bench federated`: the federated data plane over three hospitals against the same
//! query over their pooled data. All logic lives in `medspace_compute::bench`; this prints it.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use medspace_compute::bench::{self, FederatedOptions, Progress};
use medspace_compute::federated::{Cell, group_label};

/// Which aggregate the query computes.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AggregateArg {
    /// Persons by sex and age band (20 cells).
    Count,
    /// Mean of the latest HbA1c by sex (count and clamped sum per cell).
    Mean,
}

/// `medspace bench federated`.
#[derive(Args, Debug)]
pub struct BenchFederatedArgs {
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

fn cell_text(c: &Cell) -> String {
    let n =
        c.n.map_or_else(|| "suppressed".to_string(), |n| n.to_string());
    match c.mean {
        Some(m) => format!("{}: {n} (mean {m:.3})", group_label(&c.group)),
        None => format!("{}: {n}", group_label(&c.group)),
    }
}

fn list(ms: &[f64]) -> String {
    ms.iter()
        .map(|m| format!("{m:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The end-to-end part: a fresh devnet of node processes with their workers; every patient
/// allows research; one L3 contract approved by its reviewers; `jobs` jobs one after another,
/// each timed from submission to the client's verified block holding its result.
fn e2e(args: &BenchFederatedArgs, dir: &std::path::Path) -> anyhow::Result<Vec<f64>> {
    use crate::devnet::{self, Devnet, DevnetOptions};
    use medspace_types::*;
    let net_dir = dir.join("e2e-devnet");
    if net_dir.exists() {
        std::fs::remove_dir_all(&net_dir)?;
    }
    let mut net = Devnet::start(
        &net_dir,
        &DevnetOptions {
            seed: args.seed,
            patients: args.e2e_patients,
            fhir: vec![],
            base_port: args.e2e_base_port,
        },
    )?;
    let outcome = (|| -> anyhow::Result<Vec<f64>> {
        let mut ledger = net.client()?;
        devnet::publish_catalogs(&net, &mut ledger, |_, _, _| {})?;
        devnet::register_patients(&net, &mut ledger)?;
        devnet::simulate_consents(&net, &mut ledger)?;
        let spec = crate::demo::STUDY_SPEC;
        let researcher = net.consortium.user_key("research-1.researcher")?.clone();
        let eps = 10_000;
        let contract = crate::study::propose(
            &mut ledger,
            &researcher,
            &crate::study::Proposal {
                spec_json: spec,
                hospitals: &crate::consortium::HOSPITALS,
                purpose: Purpose::Research,
                study: None,
                budget_micro: eps * args.e2e_jobs.max(1) as u64,
                days: 30,
                fee: 0,
            },
        )?;
        crate::study::approve_all(&mut ledger, &net.consortium, contract)?;
        let bar = ProgressBar::new(args.e2e_jobs as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message("end-to-end jobs on the devnet");
        let mut ms = Vec::new();
        for _ in 0..args.e2e_jobs {
            let run = crate::study::run_job(
                &net.genesis,
                &mut ledger,
                &researcher,
                contract,
                spec.as_bytes(),
                eps,
                std::time::Duration::from_secs(120),
            )?;
            if run.result.contributions.len() != crate::consortium::HOSPITALS.len() {
                anyhow::bail!(
                    "job {} was answered without every hospital: {:?}",
                    run.job,
                    run.result.dropped
                );
            }
            ms.push(run.latency.as_secs_f64() * 1000.0);
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(ms)
    })();
    net.stop();
    outcome
}

/// The `p` quantile (nearest rank) of sorted figures; 0 for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

/// Runs `medspace bench federated`.
pub fn run(args: BenchFederatedArgs) -> anyhow::Result<()> {
    let spec = match args.aggregate {
        AggregateArg::Count => bench::COUNT_SPEC,
        AggregateArg::Mean => bench::MEAN_SPEC,
    };
    let options = FederatedOptions {
        persons_per_site: args.persons,
        runs: args.runs,
        seed: args.seed,
        spec: spec.to_string(),
    };
    let (dir, temp) = crate::vault_cmd::work_dir(args.dir.clone())?;
    let bar = ProgressBar::new(args.persons.saturating_mul(bench::SITES.len() as u64));
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({per_sec}) {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("building the hospitals' CDM tables (persons)");
    let result = bench::bench_federated(&dir, &options, &mut |p| match p {
        Progress::Building { done, .. } => bar.set_position(done),
        Progress::Built => {
            bar.set_message("check run without protection, then timed runs");
            bar.set_length(options.runs.max(1) as u64);
            bar.set_position(0);
        }
        Progress::Runs { done, .. } => bar.set_position(done as u64),
    });
    bar.finish_and_clear();
    let e2e_ms = if args.e2e_jobs > 0 && result.is_ok() {
        Some(e2e(&args, &dir))
    } else {
        None
    };
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let r = result?;
    let sites = bench::SITES.len();
    println!(
        "bench federated: {sites} hospitals x {} persons ({} pooled), {} measurements (tables built in {:.1} s)",
        r.persons_per_site,
        r.persons_per_site * sites as u64,
        r.measurements,
        r.build_seconds
    );
    println!("query spec: {spec}");
    println!(
        "the sites run one after another on this machine ({} cores); every site and the pooled \
         session run the same compiled SQL through compute::local::run_in (DataFusion, 2 target \
         partitions, on a current-thread tokio runtime)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "check without protection: federated = pooled in all {} cells",
        r.pooled.len()
    );
    for c in &r.pooled {
        println!("  {}", cell_text(c));
    }
    println!(
        "protected release (epsilon {}, k {}) of the last run:",
        bench::BENCH_EPSILON_MICRO as f64 / 1e6,
        bench::BENCH_K
    );
    println!(
        "  {}",
        r.protected
            .iter()
            .map(cell_text)
            .collect::<Vec<_>>()
            .join("; ")
    );
    println!("federated runs (ms): {}", list(&r.federated_ms));
    println!("pooled runs (ms):    {}", list(&r.pooled_ms));
    println!("federated phases (median ms):");
    for (name, t) in bench::SITES.iter().zip(&r.phases.site_local_ms) {
        println!("  {name}: vault + query + layout {t:.1}");
    }
    println!("  noise, all sites {:.3}", r.phases.noise_ms);
    println!("  masking, all sites {:.3}", r.phases.mask_ms);
    println!("  aggregation + release {:.3}", r.phases.release_ms);
    println!(
        "  one machine per site (slowest site + aggregation) {:.1}",
        r.phases.one_machine_per_site_ms
    );
    println!(
        "median federated {:.1} ms (sites one after another), pooled {:.1} ms",
        r.median_federated_ms, r.median_pooled_ms
    );
    println!("ratio {:.2}", r.ratio);
    if let Some(ms) = e2e_ms {
        let mut ms = ms?;
        println!(
            "end to end on a devnet (4 validator processes + observer, {} generated patients per hospital, workers in the hospitals' nodes): {} jobs, submission -> result finalized and verified by the client (ms): {}",
            args.e2e_patients,
            ms.len(),
            list(&ms)
        );
        ms.sort_by(f64::total_cmp);
        println!(
            "e2e p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
            percentile(&ms, 0.5),
            percentile(&ms, 0.9),
            ms.last().copied().unwrap_or(0.0)
        );
    }
    if let Some(kib) = r.peak_rss_kib {
        println!("peak memory (VmHWM): {:.1} MiB", kib as f64 / 1024.0);
    }
    Ok(())
}
