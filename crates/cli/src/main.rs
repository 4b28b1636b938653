//! `medspace`: the one binary of the medspace trusted data space.
//!
//! A thin layer of glue: every subcommand parses its flags here and calls into the library
//! crates under `crates/`, which hold all the logic. Errors become `anyhow` only at this edge.

mod chain_cmd;

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
    /// Create a consortium: keys, genesis and one config per node.
    Init(chain_cmd::InitArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(chain_cmd::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Init(args) => chain_cmd::init(args),
        Command::Bench(cmd) => chain_cmd::bench(cmd),
    }
}
