//! `medspace query`: a researcher's federated study on a running consortium, from the command
//! line — the data-use contract for a query specification, its reviewers' approvals, jobs run
//! by the hospitals' own nodes, and the released result.
//!
//! Every command is a signed transaction or a signed read; the client acts only on the state
//! it verified itself from finalized blocks (`medspace_client::Remote`). Keys come from `--key`
//! (a hex secret file) or, on the local devnet, from `--as <user>`.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use medspace_chain::node::Genesis as ChainGenesis;
use medspace_client::Remote;
use medspace_client::study;
use medspace_consortium::{Consortium, GENESIS_MS, HOSPITALS};
use medspace_types::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Who is acting and on which consortium.
#[derive(Args, Clone)]
pub struct Who {
    /// The devnet whose genesis and (deterministic) user keys to use.
    #[arg(long, global = true, default_value = ".medspace/devnet")]
    pub devnet: PathBuf,
    /// The consortium's genesis.json (default: the devnet's).
    #[arg(long, global = true)]
    pub genesis: Option<PathBuf>,
    /// The signer's key file: sealed (`keygen --member`, passphrase in
    /// `$MEDSPACE_KEY_PASSPHRASE`) or hex (default: the devnet user named by --as).
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// The devnet user acting (`medspace query`: default research-1.researcher;
    /// `medspace patient redeem`: default hospital-b.clinician).
    #[arg(long = "as", global = true)]
    pub user: Option<String>,
    /// Give up after this many seconds without a finalized block (the consortium cannot
    /// finalize while too many validators are unreachable; they are named after a few seconds).
    #[arg(long, global = true, default_value_t = medspace_client::remote::FINALITY_TIMEOUT.as_secs())]
    pub finality_timeout_s: u64,
}

/// Connects to the consortium as `key`: waits tell on stderr which validators do not answer,
/// and give up after `--finality-timeout-s` without a finalized block.
pub fn connect(who: &Who, genesis: &ChainGenesis, key: &Keypair) -> anyhow::Result<Remote> {
    let mut ledger = Remote::connect(genesis, key)?;
    eprintln!("ledger: {}", ledger.started());
    ledger.set_finality_timeout(Duration::from_secs(who.finality_timeout_s.max(1)));
    let limit = who.finality_timeout_s;
    ledger.on_stall(move |s| eprintln!("waiting: {}; giving up after {limit} s", s.describe()));
    Ok(ledger)
}

/// `medspace bench sync`: a client's start on the consortium from a validator's checkpoint,
/// against replaying every block from genesis, measured the same way in the same run.
pub fn bench_sync(who: &Who) -> anyhow::Result<()> {
    let (genesis, key) = load(who, "research-1.researcher")?;
    print!("{}", medspace_client::remote::measure_sync(&genesis, &key)?);
    Ok(())
}

/// The seed the devnet was made with (its `devnet.json`).
pub fn devnet_seed(who: &Who) -> anyhow::Result<u64> {
    let record = who.devnet.join("devnet.json");
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&record)
            .with_context(|| format!("reading {} (or give --key)", record.display()))?,
    )?;
    v.pointer("/options/seed")
        .and_then(serde_json::Value::as_u64)
        .with_context(|| format!("no seed in {}", record.display()))
}

/// `medspace query` arguments.
#[derive(Args)]
pub struct QueryArgs {
    #[command(flatten)]
    who: Who,
    #[command(subcommand)]
    command: QueryCommand,
}

#[derive(Subcommand)]
enum QueryCommand {
    /// Ask for a data-use contract covering a query specification over the hospitals' data.
    Contract {
        /// The query specification (versioned JSON: cohort and aggregate).
        #[arg(long)]
        spec: PathBuf,
        /// The hospitals whose data it covers.
        #[arg(long, value_delimiter = ',', default_values_t = HOSPITALS.map(String::from))]
        hospitals: Vec<String>,
        /// The study, for patients' study-specific consent.
        #[arg(long)]
        study: Option<String>,
        /// The purpose (research, public_health, drug_safety, …).
        #[arg(long, default_value = "research")]
        purpose: String,
        /// Epsilon budget over all jobs.
        #[arg(long, default_value_t = 1.0)]
        budget: f64,
        /// Days until the contract expires.
        #[arg(long, default_value_t = 90)]
        days: u64,
        /// Fee in credits, held in escrow and shared among the contributing hospitals.
        #[arg(long, default_value_t = 0)]
        fee: u64,
    },
    /// Approve a contract (as a reviewer: steward, data or ethics committee, regulator).
    Approve {
        /// The contract (its id, or `latest`: the newest on the ledger).
        #[arg(long)]
        contract: String,
    },
    /// A contract's status, approvals, budget and jobs.
    Status {
        /// The contract (its id, or `latest`: the newest on the ledger).
        #[arg(long)]
        contract: String,
    },
    /// Run a job under an active contract and print the released result.
    Run {
        /// The contract (its id, or `latest`: the newest on the ledger).
        #[arg(long)]
        contract: String,
        /// Epsilon each hospital releases its counts under; the ledger charges it times the
        /// contract's hospitals (a patient at every one is counted at each).
        #[arg(long)]
        epsilon: f64,
        /// The query specification (default: the contract's).
        #[arg(long)]
        spec: Option<PathBuf>,
        /// Wait this long for the contract's approvals before giving up.
        #[arg(long, default_value_t = 0)]
        wait_approvals_s: u64,
        /// Give up on the result after this long.
        #[arg(long, default_value_t = 120)]
        timeout_s: u64,
        /// Write a bar chart of the result here (SVG).
        #[arg(long)]
        chart: Option<PathBuf>,
    },
}

fn micro(eps: f64, what: &str) -> anyhow::Result<u64> {
    if !(eps.is_finite() && eps > 0.0 && eps <= 1000.0) {
        bail!("{what} must be a positive number of at most 1000: {what}={eps}");
    }
    Ok((eps * 1e6).round() as u64)
}

/// The consortium's genesis and the signer's key: `--key`, or the devnet user `--as` (or
/// `default_user`).
pub fn load(who: &Who, default_user: &str) -> anyhow::Result<(ChainGenesis, Keypair)> {
    let genesis_path = who
        .genesis
        .clone()
        .unwrap_or_else(|| who.devnet.join("genesis.json"));
    let genesis = ChainGenesis::load(&genesis_path).with_context(|| {
        format!(
            "no consortium at {} (start one with `medspace devnet`, or give --genesis)",
            genesis_path.display()
        )
    })?;
    let key = match &who.key {
        Some(path) => {
            // A sealed member key file (`keygen --member`), opened with the passphrase in
            // `MEDSPACE_KEY_PASSPHRASE`; a plain hex one is accepted too.
            let unlock = medspace_worker::config::cli_unlock()?;
            medspace_worker::config::load_member_key(path, &unlock)
                .with_context(|| format!("key file {}", path.display()))?
        }
        None => Consortium::default_devnet(devnet_seed(who)?, GENESIS_MS)?
            .user_key(who.user.as_deref().unwrap_or(default_user))?
            .clone(),
    };
    Ok((genesis, key))
}

/// A contract's id, or `latest`: the newest contract on the ledger.
pub fn parse_contract(ledger: &Remote, s: &str) -> anyhow::Result<ContractId> {
    if s == "latest" {
        return study::latest_contract(ledger.state())?
            .context("no contract on the ledger yet (`latest` names the newest)");
    }
    s.parse()
        .map_err(|e| anyhow::anyhow!("bad contract id `{s}`: {e}"))
}

/// Runs `medspace query`.
pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let (genesis, key) = load(&args.who, "research-1.researcher")?;
    let mut ledger = connect(&args.who, &genesis, &key)?;
    match args.command {
        QueryCommand::Contract {
            spec,
            hospitals,
            study,
            purpose,
            budget,
            days,
            fee,
        } => {
            let spec_json = std::fs::read_to_string(&spec)
                .with_context(|| format!("reading {}", spec.display()))?;
            let purpose: Purpose = purpose
                .parse()
                .map_err(|e| anyhow::anyhow!("bad purpose `{purpose}`: {e}"))?;
            let study = study.as_deref().map(StudyId::new).transpose()?;
            let hs: Vec<&str> = hospitals.iter().map(String::as_str).collect();
            let contract = study::propose(
                &mut ledger,
                &key,
                &study::Proposal {
                    spec_json: &spec_json,
                    hospitals: &hs,
                    purpose,
                    study,
                    budget_micro: micro(budget, "budget")?,
                    days,
                    fee,
                },
            )?;
            println!("contract {contract}");
            print_status(&ledger, contract)
        }
        QueryCommand::Approve { contract } => {
            let contract = parse_contract(&ledger, &contract)?;
            let r = ledger.must(&key, Payload::Approve(Approve { contract }))?;
            let active = r
                .events
                .iter()
                .any(|e| matches!(e, medspace_state::Event::ContractActivated(_)));
            println!(
                "approved {contract}{}",
                if active { " -> contract ACTIVE" } else { "" }
            );
            print_status(&ledger, contract)
        }
        QueryCommand::Status { contract } => {
            print_status(&ledger, parse_contract(&ledger, &contract)?)
        }
        QueryCommand::Run {
            contract,
            epsilon,
            spec,
            wait_approvals_s,
            timeout_s,
            chart,
        } => {
            let contract = parse_contract(&ledger, &contract)?;
            let waited = Instant::now();
            loop {
                let rec = ledger
                    .state()
                    .contract(contract)?
                    .with_context(|| format!("contract {contract} is not on the ledger"))?;
                if rec.status == medspace_state::records::ContractStatus::Active {
                    break;
                }
                if waited.elapsed() >= Duration::from_secs(wait_approvals_s) {
                    bail!(
                        "contract {contract} is {} (missing approvals: {}); use --wait-approvals-s to wait",
                        rec.status,
                        study::awaited_approvals(&rec).join(", ")
                    );
                }
                ledger.next_block()?;
            }
            let computation = match spec {
                Some(p) => std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
                None => ledger
                    .state()
                    .contract(contract)?
                    .context("contract vanished")?
                    .computation
                    .as_bytes()
                    .to_vec(),
            };
            let run = study::run_job(
                &mut ledger,
                &key,
                contract,
                &computation,
                micro(epsilon, "epsilon")?,
                Duration::from_secs(timeout_s),
            )?;
            println!(
                "job {} result (from {}, hash {} verified against the ledger, {:.2} s after submission):",
                run.job,
                run.result.aggregator,
                run.record.result_hash,
                run.latency.as_secs_f64()
            );
            for l in study::result_lines(&run.result) {
                println!("  {l}");
            }
            for (m, n) in &run.result.contributions {
                println!("  contributed: {m:<12} {n} consenting patients");
            }
            if let Some(path) = chart {
                std::fs::write(
                    &path,
                    study::chart_svg(&run.result, &format!("job {}", run.job)),
                )
                .with_context(|| format!("writing {}", path.display()))?;
                println!("  chart: {}", path.display());
            }
            println!(
                "  epsilon left on {contract}: {:.3}",
                ledger.state().budget_left(contract)?.unwrap_or(0) as f64 / 1e6
            );
            Ok(())
        }
    }
}

fn print_status(ledger: &Remote, contract: ContractId) -> anyhow::Result<()> {
    for line in study::status_lines(ledger.state(), contract)? {
        println!("{line}");
    }
    Ok(())
}
