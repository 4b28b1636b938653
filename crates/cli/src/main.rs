//! `medspace`: the one binary of the medspace trusted data space.
//!
//! A thin layer of glue: every subcommand parses its flags here and calls into the library
//! crates under `crates/`, which hold all the logic. Errors become `anyhow` only at this edge.

mod vault_cmd;

use clap::{Parser, Subcommand};

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
    /// Benchmarks.
    #[command(subcommand)]
    Bench(vault_cmd::Bench),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ingest(a) => vault_cmd::run_ingest(a),
        Command::Sql(a) => vault_cmd::run_sql(a),
        Command::Quality(a) => vault_cmd::run_quality(a),
        Command::Catalog(c) => vault_cmd::run_catalog(c),
        Command::Export(a) => vault_cmd::run_export(a),
        Command::Synth(a) => vault_cmd::run_synth(a),
        Command::Bench(b) => vault_cmd::run_bench(b),
    }
}
