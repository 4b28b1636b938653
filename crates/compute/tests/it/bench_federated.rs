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
        population: medspace_compute::bench::Population::Clinical,
        window: None,
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
    let rows = medspace_compute::local::run(node, &vkey(node), &BTreeSet::new(), sql).unwrap();
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

/// The mean of each sex's latest HbA1c (latest date, then highest value; clamped to 0..20; in
/// thousandths as the release computes it), over the hospitals' cohorts, computed here from the
/// raw rows rather than by the compiled query: (sex, persons, mean).
fn hand_means(nodes: &[std::path::PathBuf]) -> Vec<(String, i64, f64)> {
    use std::collections::BTreeMap;
    let cohort_sql = "SELECT DISTINCT p.person_id AS pid, p.gender_source_value AS sex \
        FROM person p \
        JOIN condition_occurrence c ON c.person_id = p.person_id \
          AND c.condition_source_value = '44054006' AND c.condition_start_date <= DATE '2025-01-01' \
        JOIN measurement m ON m.person_id = p.person_id \
          AND m.measurement_source_value = '4548-4' AND m.measurement_date <= DATE '2025-01-01' \
          AND m.value_as_number >= 6.5 \
        WHERE p.gender_source_value IN ('female', 'male') AND p.year_of_birth <= 2025";
    let values_sql = "SELECT person_id AS pid, \
        CAST(date_part('year', measurement_date) * 10000 + date_part('month', measurement_date) * 100 \
          + date_part('day', measurement_date) AS BIGINT) AS d, \
        CAST(ROUND(value_as_number * 1000) AS BIGINT) AS v FROM measurement \
        WHERE measurement_source_value = '4548-4' AND measurement_date <= DATE '2025-01-01' \
        AND value_as_number IS NOT NULL";
    let mut by_sex: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for node in nodes {
        let none = BTreeSet::new();
        let cohort = medspace_compute::local::run(node, &vkey(node), &none, cohort_sql).unwrap();
        let mut latest: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for r in medspace_compute::local::run(node, &vkey(node), &none, values_sql).unwrap() {
            let candidate = (r.values[1], r.values[2]);
            let slot = latest.entry(r.values[0]).or_insert(candidate);
            if candidate > *slot {
                *slot = candidate;
            }
        }
        for r in cohort {
            let (_, v) = &latest[&r.values[0]];
            let e = by_sex.entry(r.key[0].clone()).or_insert((0, 0));
            e.0 += 1;
            e.1 += (*v).clamp(0, 20_000);
        }
    }
    by_sex
        .into_iter()
        .map(|(sex, (n, sum))| (sex, n, sum as f64 / 1000.0 / n as f64))
        .collect()
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
    // Each cell's count and mean equal the ones computed by hand from the raw rows.
    let nodes: Vec<std::path::PathBuf> = SITES.iter().map(|s| dir.path().join(s)).collect();
    let hand = hand_means(&nodes);
    assert_eq!(hand.len(), r.pooled.len());
    for (c, (sex, n, mean)) in r.pooled.iter().zip(&hand) {
        assert_eq!(c.group.sex.map(|s| s.as_str()), Some(sex.as_str()));
        assert_eq!(c.n, Some(*n), "{sex}");
        assert!(
            (c.mean.unwrap() - mean).abs() < 1e-9,
            "{sex}: {:?} vs {mean}",
            c.mean
        );
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

/// A benchmark site's vault keys, unlocked with the passphrase the benchmark kept beside it.
fn vkey(node: &std::path::Path) -> medspace_vault::VaultKey {
    let pass = medspace_vault::seal::Passphrase::from_file(
        &node.join(medspace_compute::bench::SITE_PASSPHRASE_FILE),
    )
    .unwrap();
    medspace_vault::VaultKey::unlock(node, &pass).unwrap()
}
