//! Four validators on the tokio runtime over real loopback TCP finalize every submitted
//! transaction (small load; the benchmark measures speed).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use medspace_chain::bench::{BenchOptions, bench_ledger, temp_work_dir};

#[test]
fn four_validators_over_loopback_finalize_all_transactions() {
    let dir = temp_work_dir().expect("work dir");
    let opts = BenchOptions {
        txs: 600,
        rate: 600,
        // Ports chosen by the operating system right before the validators start.
        base_port: 0,
        ..BenchOptions::default()
    };
    let report = bench_ledger(&opts, &dir).expect("bench runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(report.finalized, 600, "{report}");
    assert!(report.blocks > 0);
}
