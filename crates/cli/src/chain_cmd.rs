//! Chain subcommands: `medspace init --consortium <spec> --out <dir>` and
//! `medspace bench ledger`.

use anyhow::Context as _;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// `medspace init`.
#[derive(Args)]
pub struct InitArgs {
    /// Consortium spec (TOML, or JSON if it ends in .json): chain_id, nodes (name, validator,
    /// p2p, http) and the application genesis `app` (members, users, policy).
    #[arg(long)]
    pub consortium: PathBuf,
    /// Output directory (genesis.json, <node>/node.key, <node>/node.toml).
    #[arg(long)]
    pub out: PathBuf,
}

/// `medspace bench <name>`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Four validators over loopback TCP running the ledger state machine: finalized tx/s,
    /// p50/p99 submission→finality latency, single-node apply rate.
    Ledger {
        /// Transactions to submit.
        #[arg(long, default_value_t = 80_000)]
        txs: usize,
        /// Submission rate (tx/s).
        #[arg(long, default_value_t = 8_000)]
        rate: u64,
        /// First loopback port.
        #[arg(long, default_value_t = 17_400)]
        base_port: u16,
    },
}

/// Runs `medspace init`.
pub fn init(args: InitArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.consortium)
        .with_context(|| format!("reading consortium spec {}", args.consortium.display()))?;
    let is_json = args
        .consortium
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let spec: medspace_chain::node::ConsortiumSpec = if is_json {
        serde_json::from_str(&text)
            .with_context(|| format!("parsing consortium spec {}", args.consortium.display()))?
    } else {
        toml::from_str(&text)
            .with_context(|| format!("parsing consortium spec {}", args.consortium.display()))?
    };
    let configs = medspace_chain::node::init_consortium(&spec, &args.out)?;
    println!("genesis: {}", args.out.join("genesis.json").display());
    for c in configs {
        println!("node config: {}", c.display());
    }
    Ok(())
}

/// Runs `medspace bench ...`.
pub fn bench(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Ledger {
            txs,
            rate,
            base_port,
        } => {
            let opts = medspace_chain::bench::BenchOptions {
                txs,
                rate,
                base_port,
                ..Default::default()
            };
            let dir = medspace_chain::bench::temp_work_dir()?;
            let workload = medspace_node::bench_workload(txs).map_err(anyhow::Error::msg)?;
            println!(
                "bench ledger: the medspace state machine on {} validators over loopback TCP; {txs} transactions (patients registering, then consenting) offered at {rate} tx/s",
                opts.validators
            );
            let report = medspace_chain::bench::bench_workload(&opts, &dir, workload);
            let _ = std::fs::remove_dir_all(&dir);
            let report = report?;
            println!("bench ledger: validators={} {report}", opts.validators);
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let ceiling = report.apply_tps * cores / opts.validators as f64;
            println!(
                "machine ceiling (apply rate x {cores} cores / {} validators) = {ceiling:.0} tx/s; finalized/ceiling ratio {:.2}",
                opts.validators,
                report.tps / ceiling.max(1e-9)
            );
            Ok(())
        }
    }
}
