//! `medspace`: the one binary of the medspace trusted data space.
//!
//! A thin layer of glue: every subcommand parses its flags here and calls into the library
//! crates under `crates/`, which hold all the logic. Errors become `anyhow` only at this edge.

mod bench;
mod consortium;
mod demo;
mod local;

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
        /// Patients per hospital.
        #[arg(long, default_value_t = 40)]
        patients: usize,
        /// Seed of every key and choice.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Write a new ed25519 key pair: the secret to `<out>` (owner-only), the public key to stdout.
    Keygen {
        /// Where to write the secret key.
        #[arg(long)]
        out: PathBuf,
    },
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
        Command::Demo { patients, seed } => demo::run(&demo::DemoOptions { patients, seed }),
        Command::Keygen { out } => keygen(&out),
        Command::Bench(BenchCommand::Apply {
            txs,
            block,
            patients,
        }) => bench::apply(&bench::ApplyBench {
            txs,
            block,
            patients,
        }),
    }
}
