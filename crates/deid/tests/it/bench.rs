//! The benchmark's machinery on a small population (the 1,000,000-person figures come from
//! `cargo run --release -p medspace-deid --example bench_deid`, or the ignored test below).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use medspace_deid::bench::{run, synthetic};

#[test]
fn small_bench_agrees_with_naive() {
    let f = run(3000, 7, &mut |_| {}).unwrap();
    assert_eq!(f.lattice_size, 960);
    assert!(f.nodes_evaluated < f.lattice_size);
    assert!(
        f.baseline.same_node,
        "the search and the naive baseline chose different nodes"
    );
    assert_eq!(f.baseline.rows, 3000);
    assert!(f.k >= 5 && f.l >= 2);
    assert!(f.suppressed_share <= 0.05);
}

#[test]
fn synthetic_is_deterministic_and_skewed() {
    let a = synthetic(2000, 1);
    assert_eq!(a, synthetic(2000, 1));
    assert_ne!(a, synthetic(2000, 2));
    // Postal codes are skewed: the most common 3-digit region holds well over 1/60 of persons.
    let mut by_region = std::collections::HashMap::new();
    for r in &a.rows {
        if let medspace_deid::Value::Text(z) = &r.qi[2] {
            *by_region.entry(z[..3].to_string()).or_insert(0usize) += 1;
        }
    }
    assert!(*by_region.values().max().unwrap() > 2000 / 20);
}

/// 1,000,000 persons, release build: `cargo test --release -p medspace-deid --test it -- bench:: --ignored --nocapture`.
#[test]
#[ignore]
fn one_million_persons() {
    let f = run(1_000_000, 17, &mut |_| {}).unwrap();
    eprintln!("{f:#?}");
    assert!(f.encode_secs + f.search_secs + f.release_secs <= 60.0);
    assert!(f.baseline.same_node);
}
