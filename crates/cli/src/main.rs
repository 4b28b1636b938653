//! `medspace`: the one binary of the medspace trusted data space.
//!
//! A thin layer of glue: every subcommand parses its flags here and calls into the library
//! crates under `crates/`, which hold all the logic. Errors become `anyhow` only at this edge.

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
enum Command {}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
