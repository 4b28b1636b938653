//! `medspace`: the one binary of the medspace trusted data space.
//!
//! A thin layer of glue: every subcommand parses its flags here and calls into the library
//! crates under `crates/`, which hold all the logic. Errors become `anyhow` only at this edge.

mod bench;
mod bench_federated;
mod bench_redeem;
mod chain_cmd;
mod consortium;
mod demo;
mod devnet;
mod hospitals;
mod local;
mod patient_cmd;
mod publish;
mod query_cmd;
mod remote;
mod study;
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
        /// Where the consortium's node directories go (recreated on every run).
        #[arg(long, default_value = ".medspace/demo")]
        dir: PathBuf,
        /// First loopback port of the demo's nodes (p2p from here, HTTP from here + 100).
        #[arg(long, default_value_t = 27_400)]
        base_port: u16,
    },
    /// Start (or resume) the default consortium on this machine: four validators and the
    /// regulator's observer as real node processes over loopback TCP, until Ctrl-C.
    Devnet {
        /// Where the devnet lives (created on first start, resumed afterwards).
        #[arg(long, default_value = ".medspace/devnet")]
        dir: PathBuf,
        /// Generated patients per hospital (first start).
        #[arg(long, default_value_t = 200)]
        patients: usize,
        /// Seed of every key and generated patient (first start).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// One FHIR R4 folder per hospital instead of generated patients (first start).
        #[arg(long, num_args = 1.., value_name = "DIR")]
        fhir: Vec<PathBuf>,
        /// First loopback port (p2p from here, HTTP from here + 100).
        #[arg(long, default_value_t = 7_400)]
        base_port: u16,
    },
    /// A researcher's federated study on a running consortium: contract, approvals, jobs,
    /// results (run by the hospitals' own nodes; only protected aggregates leave them).
    Query(query_cmd::QueryArgs),
    /// A patient's authorization codes and proven access log, and a grantee's redemption of a
    /// code at the holding hospital's node.
    Patient(patient_cmd::PatientArgs),
    /// The hospital confirms that one of its records belongs to a patient's ledger pseudonym
    /// (after checking who they are at the desk): the link stays in the node directory.
    Link {
        /// The hospital's node directory (its vault and links).
        #[arg(long)]
        node: PathBuf,
        /// The record: person_id or source Patient.id.
        #[arg(long)]
        person: String,
        /// The patient's pseudonym (from their wallet).
        #[arg(long)]
        patient: String,
    },
    /// Audit commands.
    #[command(subcommand)]
    Audit(AuditCommand),
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
enum AuditCommand {
    /// Re-verify a stopped node's whole stored chain: finality certificates, hashes,
    /// signatures, re-execution to the same state roots. Names the first faulty height.
    Verify {
        /// The node's directory (holding node.toml) or its data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// Finds the node config for `audit verify --data-dir`.
fn node_config_for(dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let candidates = [
        dir.join("node.toml"),
        dir.parent()
            .map(|p| p.join("node.toml"))
            .unwrap_or_default(),
    ];
    candidates
        .into_iter()
        .find(|c| c.is_file())
        .with_context(|| format!("no node.toml in {} or its parent", dir.display()))
}

fn audit_verify(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let config = node_config_for(data_dir)?;
    let report = medspace_node::audit(&config).map_err(anyhow::Error::msg)?;
    match report.fault {
        None => {
            println!(
                "audit verify: {} blocks verified from genesis, state root {}",
                report.verified_height,
                hex::encode(report.root)
            );
            Ok(())
        }
        Some((height, reason)) => anyhow::bail!(
            "audit verify: fault at height {height}: {reason} (blocks 1..={} verified)",
            report.verified_height
        ),
    }
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
        #[arg(long, default_value_t = 80_000)]
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
    /// Redeeming a patient's code at the holding hospital's node: latency and rate.
    Redeem(bench_redeem::BenchRedeemArgs),
}

/// Writes a secret (hex) to a new owner-only file; refuses to overwrite.
pub(crate) fn write_secret(out: &std::path::Path, hex_secret: &str) -> anyhow::Result<()> {
    if out.exists() {
        anyhow::bail!("refusing to overwrite existing key file {}", out.display());
    }
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
    std::io::Write::write_all(&mut f, format!("{hex_secret}\n").as_bytes())?;
    Ok(())
}

fn link(node: &std::path::Path, person: &str, patient: &str) -> anyhow::Result<()> {
    let vault = medspace_vault::Vault::open_read_only(node)?;
    let person_id = vault
        .resolve_patient(person)
        .with_context(|| format!("no record of person={person} in {}", node.display()))?;
    let id: medspace_types::PatientId = patient
        .parse()
        .map_err(|e| anyhow::anyhow!("bad pseudonym `{patient}`: {e}"))?;
    let mut links = medspace_compute::Links::load(node)?;
    links.link(person_id, id)?;
    links.save(node)?;
    println!(
        "linked record {person_id} of {} to patient {id}",
        node.display()
    );
    Ok(())
}

fn keygen(out: &std::path::Path) -> anyhow::Result<()> {
    let key = medspace_types::Keypair::generate(rand::rng());
    write_secret(out, &key.secret_hex())?;
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
            base_port,
        } => demo::run(&demo::DemoOptions {
            patients,
            seed,
            fhir,
            dir,
            base_port,
        }),
        Command::Devnet {
            dir,
            patients,
            seed,
            fhir,
            base_port,
        } => devnet::run(&devnet::RunOptions {
            dir,
            options: devnet::DevnetOptions {
                seed,
                patients,
                fhir,
                base_port,
            },
        }),
        Command::Audit(AuditCommand::Verify { data_dir }) => audit_verify(&data_dir),
        Command::Query(a) => query_cmd::run(a),
        Command::Patient(a) => patient_cmd::run(a),
        Command::Link {
            node,
            person,
            patient,
        } => link(&node, &person, &patient),
        Command::Keygen { out } => keygen(&out),
        Command::Init(args) => chain_cmd::init(args),
        Command::Node { config } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .init();
            medspace_node::run(&config).map_err(anyhow::Error::msg)
        }
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
        Command::Bench(BenchCommand::Redeem(a)) => bench_redeem::run(a),
        Command::Ingest(a) => vault_cmd::run_ingest(a),
        Command::Sql(a) => vault_cmd::run_sql(a),
        Command::Quality(a) => vault_cmd::run_quality(a),
        Command::Catalog(c) => vault_cmd::run_catalog(c),
        Command::Export(a) => vault_cmd::run_export(a),
        Command::Synth(a) => vault_cmd::run_synth(a),
    }
}
