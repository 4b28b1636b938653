//! Runs the ledger benchmark: `cargo run --release -p medspace-chain --example bench_ledger -- [txs] [rate]`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
fn main() {
    let mut args = std::env::args().skip(1);
    let mut opts = medspace_chain::bench::BenchOptions::default();
    if let Some(txs) = args.next().and_then(|a| a.parse().ok()) {
        opts.txs = txs;
    }
    if let Some(rate) = args.next().and_then(|a| a.parse().ok()) {
        opts.rate = rate;
    }
    let dir = match medspace_chain::bench::temp_work_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    match medspace_chain::bench::bench_ledger(&opts, &dir) {
        Ok(report) => println!("bench ledger: validators={} {report}", opts.validators),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
