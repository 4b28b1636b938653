//! `medspace surveil`: a public-health agency's standing surveillance contract — its windows run
//! as the ledger's schedule allows, detectors over the released series, alerts stated on the
//! ledger — and the detectors' evaluation over generated outbreaks. Drug safety runs through
//! `medspace query` (purpose `drug_safety`, a `drug_safety` aggregate).

use crate::query_cmd::{Who, connect, load, parse_contract};
use anyhow::Context;
use clap::{Args, Subcommand};
use medspace_client::health::{self, Series};
use medspace_client::study;
use medspace_consortium::HOSPITALS;
use medspace_privacy::aberration::{Method, Params, eval};
use medspace_types::DatasetId;
use std::path::PathBuf;
use std::time::Duration;

/// `medspace surveil` arguments.
#[derive(Args)]
pub struct SurveilArgs {
    #[command(flatten)]
    who: Who,
    #[command(subcommand)]
    command: SurveilCommand,
}

#[derive(Subcommand)]
enum SurveilCommand {
    /// Ask for a standing surveillance contract (purpose public_health); its budget covers
    /// every window at every hospital.
    Contract {
        /// The surveillance definition (a query specification with a `surveillance`
        /// aggregate; default: the devnet generator's syndromes, regions and period).
        #[arg(long)]
        spec: Option<PathBuf>,
        /// The hospitals it covers.
        #[arg(long, value_delimiter = ',', default_values_t = HOSPITALS.map(String::from))]
        hospitals: Vec<String>,
        /// Days until the contract expires.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// Run every window that is due (complete in block time and not yet run).
    Run {
        /// The contract (its id, or `latest`).
        #[arg(long, default_value = "latest")]
        contract: String,
        /// At most this many windows now.
        #[arg(long, default_value_t = 400)]
        limit: u32,
        /// Give up on the results after this long.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
        /// Keep running: each window as soon as block time passes its end, until the last.
        #[arg(long)]
        follow: bool,
    },
    /// Run the detectors over the released series; print (and with --record, state on the
    /// ledger) the alerts.
    Detect {
        /// The contract (its id, or `latest`).
        #[arg(long, default_value = "latest")]
        contract: String,
        /// The detectors.
        #[arg(long, value_delimiter = ',', default_value = "c1,c2,c3,seasonal")]
        methods: Vec<String>,
        /// State the alerts on the ledger as the agency's signed statement.
        #[arg(long)]
        record: bool,
        /// Write a chart (SVG) of each series with an alert into this directory.
        #[arg(long)]
        charts: Option<PathBuf>,
        /// A second, non-hospital source in the catalog (e.g. `pharma-1.otc-sales`): its
        /// file is checked against the dataset's hash and combined with each series.
        #[arg(long, requires = "source_file")]
        source: Option<String>,
        /// That source's file (CSV `day,region,count`; on a devnet
        /// `<devnet>/pharma-1/otc-sales.csv`).
        #[arg(long, requires = "source")]
        source_file: Option<PathBuf>,
        /// The syndrome the second source speaks for (fever medicine: influenza-like illness).
        #[arg(long, default_value = "ili")]
        source_syndrome: String,
    },
    /// The alerts stated on the ledger under a contract (what a hospital's data triggered).
    Alerts {
        /// The contract (its id, or `latest`).
        #[arg(long, default_value = "latest")]
        contract: String,
    },
    /// The detectors' sensitivity, false alerts per year and days to detection on generated
    /// series with an injected outbreak, over many seeds, without and with noise.
    Evaluate {
        /// Seeds (series) per figure.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// Per-window epsilon of the noised run.
        #[arg(long, default_value_t = 1.0)]
        epsilon: f64,
    },
}

fn methods(names: &[String]) -> anyhow::Result<Vec<Method>> {
    names
        .iter()
        .map(|n| {
            Method::ALL
                .into_iter()
                .find(|m| m.as_str() == n)
                .with_context(|| format!("unknown detector `{n}` (c1, c2, c3, seasonal)"))
        })
        .collect()
}

/// Runs `medspace surveil`.
pub fn run(args: SurveilArgs) -> anyhow::Result<()> {
    if let SurveilCommand::Evaluate { seeds, epsilon } = args.command {
        return evaluate(seeds, epsilon);
    }
    let (genesis, key) = load(&args.who, "health-agency.epidemiologist")?;
    let mut ledger = connect(&args.who, &genesis, &key)?;
    match args.command {
        SurveilCommand::Contract {
            spec,
            hospitals,
            days,
        } => {
            let spec_json = match spec {
                Some(p) => std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?,
                None => medspace_devnet::health::example_definition(),
            };
            let hs: Vec<&str> = hospitals.iter().map(String::as_str).collect();
            let contract = medspace_devnet::health::propose_surveillance(
                &mut ledger,
                &key,
                &spec_json,
                &hs,
                days,
            )?;
            println!("contract {contract} (public_health, a standing surveillance definition)");
            for l in study::quality_lines(&ledger.state().contract(contract)?.context("gone")?) {
                println!("  {l}");
            }
            Ok(())
        }
        SurveilCommand::Run {
            contract,
            limit,
            timeout_s,
            follow,
        } => {
            let contract = parse_contract(&ledger, &contract)?;
            loop {
                let runs = health::run_due_windows(
                    &mut ledger,
                    &key,
                    contract,
                    limit,
                    Duration::from_secs(timeout_s),
                    |done, total| eprint!("\r  windows: {done}/{total}"),
                )?;
                if !runs.is_empty() {
                    eprintln!();
                }
                for r in &runs {
                    for l in study::result_lines(&r.result) {
                        println!("  job {}: {l}", r.job);
                    }
                }
                println!("{} window(s) run under {contract}", runs.len());
                let rec = ledger.state().contract(contract)?.context("gone")?;
                let spec = health::definition(&ledger, contract)?;
                if !follow || rec.windows_run >= spec.windows {
                    return Ok(());
                }
                // Wait for the chain to pass the next window's end (block time, not ours).
                let end = spec.window_end_ms(rec.windows_run)?;
                while ledger.time_ms() < end {
                    ledger.next_block()?;
                }
            }
        }
        SurveilCommand::Detect {
            contract,
            methods: names,
            record,
            charts,
            source,
            source_file,
            source_syndrome,
        } => {
            let contract = parse_contract(&ledger, &contract)?;
            let series = Series::fetch(&ledger, &key, contract)?;
            let ms = methods(&names)?;
            let (mut alerts, tracks) = health::detect(&series, &ms, &Params::default())?;
            if let (Some(id), Some(file)) = (source, source_file) {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                let other = health::OtherSource::verified(&ledger, &DatasetId::new(&id)?, &bytes)?;
                for t in tracks.iter().filter(|t| t.syndrome == source_syndrome) {
                    let s = series
                        .spec
                        .syndromes
                        .iter()
                        .position(|g| g.name == t.syndrome);
                    let r = series.spec.regions.iter().position(|x| *x == t.region);
                    let (Some(s), Some(r)) = (s, r) else { continue };
                    let points = health::combine(
                        &series.totals(s, r),
                        &other.series(&series, &t.region),
                        &Params::default(),
                    )?;
                    alerts.extend(health::combined_alerts(
                        &series,
                        &t.syndrome,
                        &t.region,
                        &points,
                    ));
                }
                println!(
                    "second source {id}: checked against the catalog's hash, combined with every {source_syndrome} series"
                );
            }
            println!(
                "{} windows, {} series; {} alert(s):",
                series.windows.len(),
                tracks.len(),
                alerts.len()
            );
            for a in &alerts {
                println!(
                    "  {} {:<10} region {} {:<8} observed {:.0} expected {:.1} score {:.2}",
                    a.day,
                    a.syndrome,
                    a.region,
                    a.method,
                    a.point.observed,
                    a.point.expected,
                    a.point.score
                );
            }
            if let Some(dir) = charts {
                std::fs::create_dir_all(&dir)?;
                for t in tracks.iter().filter(|t| {
                    alerts
                        .iter()
                        .any(|a| a.syndrome == t.syndrome && a.region == t.region)
                }) {
                    let m = ms.first().copied().unwrap_or(Method::C2);
                    let path = dir.join(format!("{}-{}.svg", t.syndrome, t.region));
                    let title = format!("{} in region {} ({m})", t.syndrome, t.region);
                    std::fs::write(&path, health::series_svg(&series, t, m, &title))?;
                    println!("  chart: {}", path.display());
                }
            }
            if record {
                let n = health::record_alerts(&mut ledger, &key, contract, &alerts)?;
                println!("{n} alert(s) stated on the ledger");
            }
            Ok(())
        }
        SurveilCommand::Alerts { contract } => {
            let contract = parse_contract(&ledger, &contract)?;
            let alerts = ledger.state().alerts_of(contract)?;
            println!("{} alert(s) under {contract}:", alerts.len());
            for l in health::alert_lines(&alerts, None) {
                println!("  {l}");
            }
            Ok(())
        }
        SurveilCommand::Evaluate { .. } => Ok(()),
    }
}

fn evaluate(seeds: u64, epsilon: f64) -> anyhow::Result<()> {
    let base = eval::Scenario::default();
    println!(
        "{seeds} generated series each: {} days, baseline {}/day, outbreak of {} extra cases over {} days",
        base.days, base.baseline, base.outbreak_size, base.outbreak_days
    );
    println!(
        "{:<10} {:<9} {:>11} {:>18} {:>22}",
        "noise", "method", "sensitivity", "false alerts/year", "median days to detect"
    );
    for dp in [None, Some(epsilon)] {
        let s = eval::Scenario {
            dp_epsilon: dp,
            ..base.clone()
        };
        for f in eval::evaluate(0..seeds, &s, &Params::default())? {
            println!(
                "{:<10} {:<9} {:>11.2} {:>18.2} {:>22}",
                dp.map_or_else(|| "none".into(), |e| format!("ε={e}")),
                f.method.as_str(),
                f.sensitivity,
                f.false_alerts_per_year,
                f.median_days_to_detection
                    .map_or_else(|| "-".into(), |d| format!("{d:.1}"))
            );
        }
    }
    Ok(())
}
