//! The federated benchmark at a small size: without protection its federated totals equal the
//! pooled ones, and both equal an independent count written by hand.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use medspace_compute::bench::{
    COUNT_SPEC, ComputeError, FederatedOptions, MEAN_SPEC, SITES, bench_federated,
};
use std::collections::BTreeSet;

const PERSONS: u64 = 2_000;

fn options(spec: &str) -> FederatedOptions {
    FederatedOptions {
        persons_per_site: PERSONS,
        runs: 1,
        seed: 3,
        spec: spec.to_string(),
    }
}

/// Persons with the condition and a qualifying HbA1c by the index date, sex female or male, in
/// one hospital's vault, counted with SQL written here rather than compiled from the spec.
fn hand_count(node: &std::path::Path) -> i64 {
    let sql = "SELECT CAST(COUNT(DISTINCT p.person_id) AS BIGINT) AS n FROM person p \
        JOIN condition_occurrence c ON c.person_id = p.person_id \
          AND c.condition_source_value = '44054006' AND c.condition_start_date <= DATE '2025-01-01' \
        JOIN measurement m ON m.person_id = p.person_id \
          AND m.measurement_source_value = '4548-4' AND m.measurement_date <= DATE '2025-01-01' \
          AND m.value_as_number >= 6.5 \
        WHERE p.gender_source_value IN ('female', 'male') AND p.year_of_birth <= 2025";
    // The `consented` table is registered but not used by this query.
    let rows = medspace_compute::local::run(node, &BTreeSet::new(), sql).unwrap();
    rows[0].values[0]
}

#[test]
fn count_federated_totals_equal_pooled_without_protection() {
    let dir = tempfile::tempdir().unwrap();
    let mut built = 0;
    let r = bench_federated(dir.path(), &options(COUNT_SPEC), &mut |p| {
        if let medspace_compute::bench::Progress::Building { done, total } = p {
            assert!(done <= total);
            built = done;
        }
    })
    .unwrap();
    assert_eq!(built, PERSONS * 3, "progress reached every person");
    assert_eq!(r.unprotected.len(), 20, "sex x 10 age bands");
    assert_eq!(r.unprotected, r.pooled);
    let total: i64 = r.pooled.iter().map(|c| c.n.unwrap()).sum();
    let by_hand: i64 = SITES.iter().map(|s| hand_count(&dir.path().join(s))).sum();
    assert_eq!(total, by_hand);
    assert!(total > 0 && total < (PERSONS * 3) as i64, "{total}");
    assert_eq!(r.federated_ms.len(), 1);
    assert_eq!(r.pooled_ms.len(), 1);
    assert_eq!(r.phases.site_local_ms.len(), 3);
    assert!(r.ratio > 0.0 && r.ratio.is_finite());
    assert_eq!(r.protected.len(), 20);
}

#[test]
fn mean_federated_totals_equal_pooled_without_protection() {
    let dir = tempfile::tempdir().unwrap();
    let r = bench_federated(dir.path(), &options(MEAN_SPEC), &mut |_| {}).unwrap();
    assert_eq!(r.unprotected.len(), 2, "female, male");
    assert_eq!(r.unprotected, r.pooled);
    let total: i64 = r.pooled.iter().map(|c| c.n.unwrap()).sum();
    let by_hand: i64 = SITES.iter().map(|s| hand_count(&dir.path().join(s))).sum();
    assert_eq!(total, by_hand);
    for c in &r.pooled {
        let mean = c.mean.unwrap();
        // Everyone in the cohort has an HbA1c of at least 6.5 % (generated in 4.4..8.8).
        assert!((4.0..=9.0).contains(&mean), "{mean}");
    }
}

#[test]
fn too_many_persons_are_refused_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(COUNT_SPEC);
    o.persons_per_site = 2_000_000_000;
    let err = bench_federated(dir.path(), &o, &mut |_| {}).unwrap_err();
    assert!(matches!(err, ComputeError::Parameter { .. }), "{err}");
    assert!(err.to_string().contains("persons=2000000000"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}
