//! `medspace`: the one binary of the medspace trusted data space.
//!
//! A thin layer of glue: every subcommand parses its flags here and calls into the library
//! crates under `crates/`, which hold all the logic. Errors become `anyhow` only at this edge.

mod bench;
mod bench_federated;
mod chain_cmd;
mod consortium;
mod demo;
mod hospitals;
mod local;
mod publish;
mod vault_cmd;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "medspace",
    version,
    about = "A trusted data space for medical data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole story end to end and print what happened.
    Demo {
        /// Generated patients per hospital.
        #[arg(long, default_value_t = 200)]
        patients: usize,
        /// Seed of every key and choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One FHIR R4 folder per hospital (e.g. the Synthea split) instead of generated patients.
        #[arg(long, num_args = 1.., value_name = "DIR")]
        fhir: Vec<PathBuf>,
        /// Where the hospitals' node directories go (recreated on every run).
        #[arg(long, default_value = ".medspace/demo")]
        dir: PathBuf,
    },
    /// Create a consortium: keys, genesis and one config per node.
    Init(chain_cmd::InitArgs),
    /// Run one node of a consortium (its chain validator and APIs) from its config file.
    Node {
        /// The node's TOML config (written by `medspace init`).
        #[arg(long)]
        config: PathBuf,
    },
    /// Write a new ed25519 key pair: the secret to `<out>` (owner-only), the public key to stdout.
    Keygen {
        /// Where to write the secret key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Ingest FHIR R4 (Bundle JSON, folders, Bulk NDJSON) into the node's vault.
    Ingest(vault_cmd::IngestArgs),
    /// Run SQL over the vault's CDM tables (the institution's own operator only).
    Sql(vault_cmd::SqlArgs),
    /// Print the vault's data-quality profile.
    Quality(vault_cmd::QualityArgs),
    /// Catalog commands.
    #[command(subcommand)]
    Catalog(vault_cmd::CatalogCmd),
    /// Export one patient as a FHIR Bundle, or everything as Bulk NDJSON.
    Export(vault_cmd::ExportArgs),
    /// Generate synthetic FHIR R4 patients (Bulk NDJSON).
    Synth(vault_cmd::SynthArgs),
    /// Benchmarks that print their figures.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Signed transactions applied per second on one core, against raw ed25519 verification.
    Apply {
        /// Transactions in the timed mix.
        #[arg(long, default_value_t = 100_000)]
        txs: usize,
        /// Transactions per block.
        #[arg(long, default_value_t = 2_000)]
        block: usize,
        /// Registered patients.
        #[arg(long, default_value_t = 20_000)]
        patients: usize,
    },
    /// Four validators over loopback TCP: finalized tx/s and submission→finality latency.
    Ledger {
        /// Transactions to submit.
        #[arg(long, default_value_t = 40_000)]
        txs: usize,
        /// Submission rate (tx/s).
        #[arg(long, default_value_t = 8_000)]
        rate: u64,
        /// First loopback port.
        #[arg(long, default_value_t = 17_400)]
        base_port: u16,
    },
    /// Ingest speed into the CDM tables, one core, printed as `<n> resources/s`.
    Ingest(vault_cmd::BenchIngestArgs),
    /// Cohort query (condition + lab threshold, by sex and age band) on N persons.
    Cohort(vault_cmd::BenchCohortArgs),
    /// Three hospitals' federated data plane against the same query over the pooled data.
    Federated(bench_federated::BenchFederatedArgs),
}

fn keygen(out: &std::path::Path) -> anyhow::Result<()> {
    if out.exists() {
        anyhow::bail!("refusing to overwrite existing key file {}", out.display());
    }
    let key = medspace_types::Keypair::generate(rand::rng());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    std::io::Write::write_all(&mut f, format!("{}\n", key.secret_hex()).as_bytes())?;
    println!("{}", key.public());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo {
            patients,
            seed,
            fhir,
            dir,
        } => demo::run(&demo::DemoOptions {
            patients,
            seed,
            fhir,
            dir,
        }),
        Command::Keygen { out } => keygen(&out),
        Command::Init(args) => chain_cmd::init(args),
        Command::Node { config } => medspace_node::run(&config).map_err(anyhow::Error::msg),
        Command::Bench(BenchCommand::Ledger {
            txs,
            rate,
            base_port,
        }) => chain_cmd::bench(chain_cmd::BenchCommand::Ledger {
            txs,
            rate,
            base_port,
        }),
        Command::Bench(BenchCommand::Apply {
            txs,
            block,
            patients,
        }) => bench::apply(&bench::ApplyBench {
            txs,
            block,
            patients,
        }),
        Command::Bench(BenchCommand::Ingest(a)) => {
            vault_cmd::run_bench(vault_cmd::Bench::Ingest(a))
        }
        Command::Bench(BenchCommand::Cohort(a)) => {
            vault_cmd::run_bench(vault_cmd::Bench::Cohort(a))
        }
        Command::Bench(BenchCommand::Federated(a)) => bench_federated::run(a),
        Command::Ingest(a) => vault_cmd::run_ingest(a),
        Command::Sql(a) => vault_cmd::run_sql(a),
        Command::Quality(a) => vault_cmd::run_quality(a),
        Command::Catalog(c) => vault_cmd::run_catalog(c),
        Command::Export(a) => vault_cmd::run_export(a),
        Command::Synth(a) => vault_cmd::run_synth(a),
    }
}
