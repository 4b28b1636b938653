//! `medspace`: the one binary of the medspace trusted data space.
//!
//! Argument parsing and printing only: every subcommand parses its flags here or in its
//! `*_cmd` module and calls the library crates under `crates/` (the client, the devnet, the
//! node, the vault, the benchmarks), which hold all the logic. Errors become `anyhow` only at
//! this edge.

mod bench_cmd;
mod chain_cmd;
mod deid_cmd;
mod devnet_cmd;
mod health_cmd;
mod patient_cmd;
mod query_cmd;
mod vault_cmd;

use clap::{Parser, Subcommand};
use medspace_compute::bench_glm;
use std::path::PathBuf;

/// mimalloc, not the system allocator: the vault's ingest, DataFusion and the node hand memory
/// from thread to thread, and glibc's arenas spent a quarter of a parallel ingest in their
/// locks (`bench ingest` prints the effect); built without huge pages (see Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Demo(devnet_cmd::DemoArgs),
    /// Start (or resume) the default consortium on this machine: five validators (three
    /// hospitals, a research institute, an insurer) and the regulator's observer as real node
    /// processes over loopback TCP, until Ctrl-C.
    Devnet(devnet_cmd::DevnetArgs),
    /// A researcher's federated study on a running consortium: contract, approvals, jobs,
    /// results (run by the hospitals' own nodes; only protected aggregates leave them).
    Query(query_cmd::QueryArgs),
    /// Public-health surveillance: a standing contract's daily windows, outbreak detection,
    /// alerts on the ledger, and the detectors' evaluation. (Drug safety: `medspace query` with
    /// a `drug_safety` aggregate under purpose drug_safety.)
    Surveil(health_cmd::SurveilArgs),
    /// A patient's authorization codes and proven access log, and a grantee's redemption of a
    /// code at the holding hospital's node.
    Patient(patient_cmd::PatientArgs),
    /// The open pool: de-identified releases planned, published, requested, fetched and
    /// destroyed.
    Deid(deid_cmd::DeidArgs),
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
    /// A member replaces its node's ledger key (a compromised or lost node), signed by its
    /// member key; the old node key never signs again. Then install the new key file as the
    /// node's `node_key_file` and restart the node.
    RotateNodeKey(chain_cmd::RotateNodeKeyArgs),
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
    /// Key files for other tools.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Write a new ed25519 key pair: the secret to `<out>` (owner-only), sealed under a
    /// passphrase (argon2id, XChaCha20-Poly1305), the public key to stdout.
    Keygen {
        /// Where to write the secret key.
        #[arg(long)]
        out: PathBuf,
        /// The passphrase file (default: `$MEDSPACE_KEY_PASSPHRASE`).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Write the secret as plain hex instead.
        #[arg(long, conflicts_with = "passphrase_file")]
        plain: bool,
        /// Seal it as a member's (or user's) ledger key — `--key` of the client commands
        /// (governance, users, catalog) — instead of a node's consensus key.
        #[arg(long, conflicts_with = "node_ledger")]
        member: bool,
        /// Seal it as a member's node key — a worker's or observer's `node_key_file`, the
        /// genesis member's `node_key` — instead of a node's consensus key.
        #[arg(long)]
        node_ledger: bool,
    },
    /// The vault's encryption at rest: a new passphrase, a new data key, converting an old
    /// unencrypted vault.
    #[command(subcommand)]
    Vault(vault_cmd::VaultCmd),
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
    /// Generate synthetic FHIR R4 patients (Bulk NDJSON), optionally with a known outbreak
    /// (`--outbreak`) or drug-safety signal (`--safety`) injected.
    Synth(vault_cmd::SynthArgs),
    /// Benchmarks that print their figures.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `medspace key`.
#[derive(Subcommand)]
enum KeyCommand {
    /// Export a member's or user's key for the console in a browser: the sealed key file
    /// (`keygen --member`, passphrase in `$MEDSPACE_KEY_PASSPHRASE`) is opened here and written
    /// UNSEALED as JSON (`{"format": "medspace-browser-key/v1", "secret", "public_key"}`) to a
    /// new owner-only file, which the console imports as a non-extractable WebCrypto key. The
    /// browser does not run argon2: delete the exported file once it is imported.
    ExportBrowser {
        /// The sealed (or plain hex) key file.
        #[arg(long)]
        key: PathBuf,
        /// The new file for the browser (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
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

#[derive(Subcommand)]
enum BenchCommand {
    /// Signed transactions applied per second on one core, cold and warm signer keys, each
    /// against raw ed25519 batch verification measured the same way.
    Apply(bench_cmd::ApplyArgs),
    /// A client's start on a running consortium (default: the devnet): from a validator's
    /// checkpoint against replaying every block from genesis, to the same height.
    Sync(query_cmd::Who),
    /// Four validators over loopback TCP (in one process, and one process each): finalized
    /// tx/s and submission→finality latency.
    Ledger(bench_cmd::LedgerArgs),
    /// Ingest speed into the CDM tables, one core, printed as `<n> resources/s`.
    Ingest(vault_cmd::BenchIngestArgs),
    /// Cohort query (condition + lab threshold, by sex and age band) on N persons.
    Cohort(vault_cmd::BenchCohortArgs),
    /// Three hospitals' federated data plane against the same query over the pooled data.
    Federated(bench_cmd::FederatedArgs),
    /// One surveillance window (10 syndromes x 20 regions x 5 age bands) over 3 hospitals:
    /// the data plane against the same query pooled (`bench federated --aggregate surveil`).
    Surveil(bench_cmd::FederatedArgs),
    /// A drug-safety scan (100 drugs x 50 event groups) over 3 hospitals: the data plane
    /// against the same query pooled (`bench federated --aggregate drug-safety`).
    Drugsafety(bench_cmd::FederatedArgs),
    /// Redeeming a patient's code at the holding hospital's node: latency and rate.
    Redeem(bench_cmd::RedeemArgs),
    /// A registry-scale ledger state: bytes per record, memory, checkpoint restart, job plan.
    State(bench_cmd::StateArgs),
    /// Federated logistic regression (3 hospitals, IRLS over secure aggregation) vs pooled.
    Glm {
        /// Persons per hospital.
        #[arg(long, default_value_t = 1_000_000)]
        persons: usize,
        /// Threads per statistics pass (both sides alike).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// ECDH-PSI (ristretto255) of two sets of --n IDs, both parties in-process, bytes on the wire.
    Psi {
        #[arg(long, default_value_t = 1_000_000)]
        n: usize,
        #[arg(long = "overlap", default_value_t = 0.5)]
        o: f64,
        #[arg(long = "threads")]
        t: Option<usize>,
    },
    /// A vertical study's join (linked PSI + exponential ElGamal sums) of --n hospital
    /// patients with --n insurer members, against the plain join in the same run.
    Join {
        #[arg(long, default_value_t = 100_000)]
        n: usize,
        #[arg(long = "threads")]
        t: Option<usize>,
    },
    /// De-identification: the lattice search and release of --persons synthetic persons with six
    /// quasi-identifiers (k = 5, l = 2), against the naive search of every node.
    Deid {
        #[arg(long, default_value_t = 1_000_000)]
        persons: usize,
        #[arg(long, default_value_t = 17)]
        seed: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(a) => devnet_cmd::demo(a),
        Command::Devnet(a) => devnet_cmd::run(a),
        Command::Query(a) => query_cmd::run(a),
        Command::Surveil(a) => health_cmd::run(a),
        Command::Deid(a) => deid_cmd::run(a),
        Command::Patient(a) => patient_cmd::run(a),
        Command::Link {
            node,
            person,
            patient,
        } => chain_cmd::link(&node, &person, &patient),
        Command::Audit(AuditCommand::Verify { data_dir }) => chain_cmd::audit_verify(&data_dir),
        Command::Init(a) => chain_cmd::init(a),
        Command::RotateNodeKey(a) => chain_cmd::rotate_node_key(a),
        Command::Node { config } => chain_cmd::node(&config),
        Command::Keygen {
            out,
            passphrase_file,
            plain,
            member,
            node_ledger,
        } => {
            let role = if member {
                chain_cmd::KeyRole::Member
            } else if node_ledger {
                chain_cmd::KeyRole::MemberNode
            } else {
                chain_cmd::KeyRole::Consensus
            };
            chain_cmd::keygen(&out, passphrase_file.as_deref(), plain, role)
        }
        Command::Key(KeyCommand::ExportBrowser { key, out }) => {
            chain_cmd::export_browser_key(&key, &out)
        }
        Command::Vault(c) => vault_cmd::run_vault(c),
        Command::Ingest(a) => vault_cmd::run_ingest(a),
        Command::Sql(a) => vault_cmd::run_sql(a),
        Command::Quality(a) => vault_cmd::run_quality(a),
        Command::Catalog(c) => vault_cmd::run_catalog(c),
        Command::Export(a) => vault_cmd::run_export(a),
        Command::Synth(a) => vault_cmd::run_synth(a),
        Command::Bench(b) => match b {
            BenchCommand::Apply(a) => bench_cmd::apply(a),
            BenchCommand::Sync(who) => query_cmd::bench_sync(&who),
            BenchCommand::Ledger(a) => bench_cmd::ledger(a),
            BenchCommand::Ingest(a) => vault_cmd::run_bench(vault_cmd::Bench::Ingest(a)),
            BenchCommand::Cohort(a) => vault_cmd::run_bench(vault_cmd::Bench::Cohort(a)),
            BenchCommand::Federated(a) => bench_cmd::federated(a),
            BenchCommand::Surveil(mut a) => {
                a.aggregate = bench_cmd::AggregateArg::Surveil;
                bench_cmd::federated(a)
            }
            BenchCommand::Drugsafety(mut a) => {
                a.aggregate = bench_cmd::AggregateArg::DrugSafety;
                bench_cmd::federated(a)
            }
            BenchCommand::Redeem(a) => bench_cmd::redeem(a),
            BenchCommand::State(a) => bench_cmd::state(a),
            BenchCommand::Glm { persons, threads } => Ok(bench_glm::run_cli(persons, threads)?),
            BenchCommand::Psi { n, o, t } => Ok(medspace_privacy::psi::bench::print(n, o, t)?),
            BenchCommand::Join { n, t } => Ok(medspace_privacy::join::bench::print(n, t)?),
            BenchCommand::Deid { persons, seed } => Ok(medspace_deid::bench::print(persons, seed)?),
        },
    }
}
