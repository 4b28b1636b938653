//! A federated job over three hospitals' vaults against the same query on the pooled data,
//! refusals of the plan, and the aggregator's view.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use medspace_compute::Links;
use medspace_compute::federated::{SiteVault, contributed_records, run_site};
use medspace_privacy::query::parse;
use medspace_privacy::release::{Protection, group_label, release_totals};
use medspace_types::*;
use medspace_vault::Vault;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::BTreeSet;
use std::path::Path;

use crate::support;
use support::*;

const SPEC_BY_SEX: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#;
fn run_all(
    w: &World,
    job: JobId,
    protection: Protection,
    drop: Option<usize>,
) -> Vec<(String, Option<i64>)> {
    let json = std::str::from_utf8(w.state.job(job).unwrap().unwrap().computation.as_bytes())
        .unwrap()
        .to_string();
    let spec = parse(&json).unwrap().0;
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut vectors = Vec::new();
    for (i, member) in HOSPITALS.iter().enumerate() {
        if Some(i) == drop {
            vectors.push(None);
            continue;
        }
        let links = Links::load(&w.dirs[i], &vkey(&w.dirs[i])).unwrap();
        let (vector, _) = run_site(
            &w.state,
            job,
            &MemberId::new(member).unwrap(),
            SiteVault::embedded(&w.dirs[i], &vkey(&w.dirs[i])),
            &links,
            protection,
            &mut rng,
        )
        .unwrap();
        vectors.push(Some(vector));
    }
    release_totals(&spec, &secure_total(job, &vectors), protection)
        .unwrap()
        .into_iter()
        .map(|c| (group_label(&c.group), c.n))
        .collect()
}

fn pooled(w: &World, exclude: &[&Path]) -> Vec<(String, Option<i64>)> {
    pooled_for(w, SPEC, exclude)
}

fn pooled_for(w: &World, spec: &str, exclude: &[&Path]) -> Vec<(String, Option<i64>)> {
    // The same compiled query on the pooled vault, every pooled patient consenting.
    let spec = parse(spec).unwrap().0;
    let sql =
        medspace_privacy::query::compile_sql(&spec, medspace_compute::local::CONSENTED).unwrap();
    let vault = Vault::open_read_only(&w.pooled, &vkey(&w.pooled)).unwrap();
    let excluded: BTreeSet<String> = exclude
        .iter()
        .flat_map(|d| {
            Vault::open_read_only(d, &vkey(d))
                .unwrap()
                .persons()
                .into_iter()
                .map(|(_, id, _)| id)
        })
        .collect();
    let cohort: BTreeSet<i64> = vault
        .persons()
        .into_iter()
        .filter(|(_, id, _)| !excluded.contains(id))
        .map(|(p, _, _)| p)
        .collect();
    let rows = medspace_compute::local::run(&w.pooled, &vkey(&w.pooled), &cohort, &sql).unwrap();
    let layout = medspace_privacy::query::groups(&spec);
    let mut out: Vec<(String, Option<i64>)> =
        layout.iter().map(|g| (group_label(g), Some(0))).collect();
    for r in rows {
        let i = medspace_privacy::query::group_index(
            &layout,
            r.key.first().map(String::as_str),
            r.key.get(1).map(String::as_str),
        );
        if let Some(i) = i {
            out[i].1 = Some(r.values[0]);
        }
    }
    out
}

#[test]
fn federated_equals_pooled_without_protection_and_handles_a_dropout() {
    let root = tempfile::tempdir().unwrap();
    let mut w = World::new(root.path());
    let contract = w.contract(&ALL_FIELDS);
    let job = w.job(contract);
    let fed = run_all(&w, job, Protection::TestNone, None);
    let pool = pooled(&w, &[]);
    assert_eq!(fed, pool);
    assert!(
        pool.iter().map(|(_, n)| n.unwrap()).sum::<i64>() > 0,
        "the cohort is not empty"
    );
    // Hospital c drops out before dealing: the survivors' sum is exact.
    let fed = run_all(&w, job, Protection::TestNone, Some(2));
    assert_eq!(fed, pooled(&w, &[&w.dirs[2]]));
    // With protection (by sex, ε=0.3 per site, 0.9 charged for three sites: each site's
    // discrete Laplace noise has scale 3.3), a cell is released noisy but close when well
    // above k, suppressed when well below.
    let by_sex = w.contract_for(&ALL_FIELDS, SPEC_BY_SEX);
    let job = w.job_with(by_sex, SPEC_BY_SEX, 300_000);
    let protected = run_all(&w, job, Protection::Full { k: 10 }, None);
    let exact = pooled_for(&w, SPEC_BY_SEX, &[]);
    let mut released = 0;
    for ((g, p), (_, exact)) in protected.iter().zip(&exact) {
        let exact = exact.unwrap();
        match p {
            None => assert!(exact < 10 + 20, "{g}: a cell of {exact} was suppressed"),
            Some(v) => {
                assert!((v - exact).abs() < 20, "{g}: {v} vs {exact}");
                released += 1;
            }
        }
        if exact >= 30 {
            assert!(p.is_some(), "{g}: a cell of {exact} must be released");
        }
    }
    assert!(
        released > 0,
        "some cells are above k and released: {exact:?}"
    );
}

#[test]
fn a_site_posts_what_its_released_vector_counts_never_its_exact_cohort() {
    let root = tempfile::tempdir().unwrap();
    let mut w = World::new(root.path());
    let contract = w.contract_for(&ALL_FIELDS, SPEC_BY_SEX);
    let job = w.job_with(contract, SPEC_BY_SEX, 300_000);
    let spec = parse(SPEC_BY_SEX).unwrap().0;
    let member = MemberId::new("hospital-a").unwrap();
    let key = vkey(&w.dirs[0]);
    let links = Links::load(&w.dirs[0], &key).unwrap();
    let vault = SiteVault::embedded(&w.dirs[0], &key);
    let site = |protection, seed| {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        run_site(&w.state, job, &member, vault, &links, protection, &mut rng).unwrap()
    };
    // Unprotected, it is exactly the patients the query counted there (not the consenting
    // cohort, which is larger).
    let (exact_vector, exact) = site(Protection::TestNone, 0);
    let counted: i64 = exact_vector.iter().sum();
    assert_eq!(exact, u64::try_from(counted).unwrap());
    assert!(exact > 0);
    // Protected, it is the total of the noised vector the site releases, and that total moves
    // with the noise: the exact number is never what the ledger gets.
    let mut seen = BTreeSet::new();
    for seed in 0..12 {
        let (vector, records) = site(Protection::Full { k: 10 }, seed);
        assert_eq!(records, contributed_records(&spec, &vector), "seed {seed}");
        seen.insert(records);
    }
    assert!(seen.len() > 3, "the posted count is noised: {seen:?}");
}

#[test]
fn revoked_consent_leaves_the_next_jobs_cohort() {
    let root = tempfile::tempdir().unwrap();
    let mut w = World::new(root.path());
    let contract = w.contract(&ALL_FIELDS);
    let job = w.job(contract);
    let links = Links::load(&w.dirs[0], &vkey(&w.dirs[0])).unwrap();
    let member = MemberId::new("hospital-a").unwrap();
    let reads: Vec<(String, String)> = ALL_FIELDS
        .iter()
        .skip(1)
        .map(|(t, f)| (t.to_string(), f.to_string()))
        .collect();
    let before = medspace_compute::plan_job(&w.state, job, &member, &links, &reads)
        .unwrap()
        .cohort
        .len();
    let leaver = w.patients[0][0].clone();
    w.apply(
        &leaver,
        Payload::RevokeConsent(RevokeConsent {
            purpose: Purpose::Research,
            study: None,
        }),
    )
    .unwrap();
    // The job submitted before the revocation is judged at its own height.
    assert_eq!(
        medspace_compute::plan_job(&w.state, job, &member, &links, &reads)
            .unwrap()
            .cohort
            .len(),
        before
    );
    let job2 = w.job(contract);
    assert_eq!(
        medspace_compute::plan_job(&w.state, job2, &member, &links, &reads)
            .unwrap()
            .cohort
            .len(),
        before - 1
    );
}

#[test]
fn out_of_scope_fields_and_ended_contracts_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let mut w = World::new(root.path());
    // A contract that does not cover condition dates.
    let contract = w.contract(&ALL_FIELDS[..4]);
    let job = w.job(contract);
    let links = Links::load(&w.dirs[0], &vkey(&w.dirs[0])).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let err = run_site(
        &w.state,
        job,
        &MemberId::new("hospital-a").unwrap(),
        SiteVault::embedded(&w.dirs[0], &vkey(&w.dirs[0])),
        &links,
        Protection::TestNone,
        &mut rng,
    )
    .unwrap_err();
    assert!(err.to_string().contains("out of scope"), "{err}");
    // A terminated contract: nothing runs.
    let contract = w.contract(&ALL_FIELDS);
    let job = w.job(contract);
    w.apply(
        &w.researcher.clone(),
        Payload::Terminate(Terminate {
            contract,
            reason: Text::new("done").unwrap(),
        }),
    )
    .unwrap();
    let err = run_site(
        &w.state,
        job,
        &MemberId::new("hospital-a").unwrap(),
        SiteVault::embedded(&w.dirs[0], &vkey(&w.dirs[0])),
        &links,
        Protection::TestNone,
        &mut rng,
    )
    .unwrap_err();
    assert!(err.to_string().contains("terminated"), "{err}");
    // A member that owns no data in scope.
    let err = medspace_compute::plan_job(
        &w.state,
        job,
        &MemberId::new("research-1").unwrap(),
        &links,
        &[],
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("terminated") || err.to_string().contains("holds no data"),
        "{err}"
    );
}
