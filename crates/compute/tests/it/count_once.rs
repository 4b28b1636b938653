//! Patients held by two hospitals count once: each site's patients of a job (its ledger plan),
//! a linked private set intersection with every earlier site through the wire format, the
//! matches left out, and the federated count and model then equal the same computation on the
//! pooled vault, where every person is once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use medspace_compute::Links;
use medspace_compute::federated::{SiteVault, job_patients, run_model_site, run_site};
use medspace_privacy::glm;
use medspace_privacy::query::parse;
use medspace_privacy::release::{Protection, release_totals};
use medspace_types::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::BTreeSet;

use crate::support;
use support::*;

const MODEL: &str = r#"{"version":1,"cohort":{"index_date":"2022-01-01"},"aggregate":{"model":{"family":"logistic","outcome":{"condition":"44054006"},"covariates":["age","female",{"condition":"38341003"}]}}}"#;

fn member(i: usize) -> MemberId {
    MemberId::new(HOSPITALS[i]).unwrap()
}

fn links(w: &World, i: usize) -> Links {
    Links::load(&w.dirs[i], &vkey(&w.dirs[i])).unwrap()
}

/// `f` on site `i`'s vault.
fn with_vault<T>(w: &World, i: usize, f: impl FnOnce(SiteVault<'_>) -> T) -> T {
    let key = vkey(&w.dirs[i]);
    f(SiteVault::embedded(&w.dirs[i], &key))
}

/// What each site leaves out of `job` by the count-once rule, as the workers decide it: its
/// patients of the job, blinded and matched with every earlier site's through the messages'
/// bytes. Checked against the plain rule on the same sets (a site leaves out exactly its
/// patients an earlier site also has).
fn leave_outs(w: &World, job: JobId) -> Vec<BTreeSet<PatientId>> {
    let sets: Vec<Vec<PatientId>> = (0..3)
        .map(|i| job_patients(&w.state, job, &member(i), &links(w, i)).unwrap())
        .collect();
    let ids: Vec<_> = sets
        .iter()
        .map(|s| medspace_worker::compute::once::identifiers(job, s))
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let plan = medspace_privacy::psi::dedup_plan(&mut rng, &ids, 2).unwrap();
    let out: Vec<BTreeSet<PatientId>> = plan
        .iter()
        .zip(&sets)
        .map(|(drops, set)| drops.iter().map(|i| set[*i]).collect())
        .collect();
    for (k, set) in sets.iter().enumerate() {
        let earlier: BTreeSet<PatientId> = sets[..k].iter().flatten().copied().collect();
        let plain: BTreeSet<PatientId> = set
            .iter()
            .filter(|p| earlier.contains(p))
            .copied()
            .collect();
        assert_eq!(
            out[k], plain,
            "site {k}: the PSI's matches are the plain intersection"
        );
    }
    out
}

/// Every site's count for `job`, each leaving out `leave[i]`, securely summed and released
/// without protection.
fn federated_count(w: &World, job: JobId, leave: &[BTreeSet<PatientId>]) -> i64 {
    let spec = parse(SPEC).unwrap().0;
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let vectors: Vec<Option<Vec<i64>>> = (0..3)
        .map(|i| {
            let links = links(w, i).without(&leave[i]);
            let (v, _) = with_vault(w, i, |v| {
                run_site(
                    &w.state,
                    job,
                    &member(i),
                    v,
                    &links,
                    Protection::TestNone,
                    &mut rng,
                )
            })
            .unwrap();
            Some(v)
        })
        .collect();
    release_totals(&spec, &secure_total(job, &vectors), Protection::TestNone)
        .unwrap()
        .iter()
        .map(|c| c.n.unwrap_or(0))
        .sum()
}

/// The same count on the pooled vault (every person once).
fn pooled_count(w: &World) -> i64 {
    let spec = parse(SPEC).unwrap().0;
    let sql =
        medspace_privacy::query::compile_sql(&spec, medspace_compute::local::CONSENTED).unwrap();
    let cohort = w.pooled_persons();
    medspace_compute::local::run(&w.pooled, &vkey(&w.pooled), &cohort, &sql)
        .unwrap()
        .iter()
        .map(|r| r.values[0])
        .sum()
}

#[test]
fn a_patient_held_by_two_hospitals_counts_once_in_a_count_and_a_model() {
    let root = tempfile::tempdir().unwrap();
    let mut w = World::with_referrals(root.path());
    let contract = w.contract(&ALL_FIELDS);
    let job = w.job(contract);
    let leave = leave_outs(&w, job);
    // Each hospital refers twelve of its patients to the next (c's to a). a keeps everyone;
    // b leaves out the twelve a referred; c the twelve b referred and its own twelve a holds.
    assert!(leave[0].is_empty());
    assert_eq!(leave[1].len(), 12);
    assert_eq!(leave[2].len(), 24);

    let once = federated_count(&w, job, &leave);
    let twice = federated_count(
        &w,
        job,
        &[BTreeSet::new(), BTreeSet::new(), BTreeSet::new()],
    );
    let pooled = pooled_count(&w);
    assert!(pooled > 0, "the cohort is not empty");
    assert_eq!(once, pooled, "each person once, as in the pooled vault");
    assert!(
        twice > pooled,
        "without the rule the referred patients in the cohort count twice: {twice} vs {pooled}"
    );

    // A model: the sites' rows after the rule are the pooled rows (same count, same fit).
    let model = w.contract_for(&ALL_FIELDS, MODEL);
    let job = w.job_with(model, MODEL, 100_000);
    let leave = leave_outs(&w, job);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (i, out) in leave.iter().enumerate() {
        let links = links(&w, i).without(out);
        let rows = with_vault(&w, i, |v| {
            run_model_site(&w.state, job, &member(i), v, &links)
        })
        .unwrap();
        x.extend(rows.x);
        y.extend(rows.y);
    }
    let spec = parse(MODEL).unwrap().0;
    let sql =
        medspace_privacy::query::compile_sql(&spec, medspace_compute::local::CONSENTED).unwrap();
    let cohort = w.pooled_persons();
    let cols =
        medspace_compute::local::run_f64(&w.pooled, &vkey(&w.pooled), &cohort, &sql).unwrap();
    assert_eq!(y.len(), cols[0].1.len(), "one row per person");
    let p = 4;
    let fit = |x: &[f64], y: &[f64]| {
        let rows = glm::Rows {
            p,
            x,
            y,
            offset: None,
        };
        let names: Vec<String> = (0..p).map(|i| format!("b{i}")).collect();
        glm::fit_pooled(
            glm::Family::Logistic,
            &rows,
            &names,
            glm::Options::default(),
        )
        .unwrap()
    };
    let column = |name: &str| &cols.iter().find(|(n, _)| n == name).unwrap().1;
    let mut pooled_x = Vec::new();
    for r in 0..column("y").len() {
        pooled_x.push(1.0);
        for c in ["x0", "x1", "x2"] {
            pooled_x.push(column(c)[r]);
        }
    }
    let (a, b) = (fit(&x, &y), fit(&pooled_x, column("y")));
    for (s, t) in a.terms.iter().zip(&b.terms) {
        assert!(
            (s.coefficient - t.coefficient).abs() <= 1e-9 * t.coefficient.abs().max(1.0),
            "{} {} vs pooled {}",
            s.name,
            s.coefficient,
            t.coefficient
        );
    }
}

/// An overlap job: each site's cohort (the query selects it over the consenting patients), a
/// cardinality-only PSI of each later site with each earlier one through the wire format, and
/// the counts equal the plain intersections of the same persons.
#[test]
fn an_overlap_job_counts_the_cohort_each_pair_of_hospitals_shares() {
    const OVERLAP: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"index_date":"2025-01-01"},"aggregate":{"overlap":{"dp":false}}}"#;
    let root = tempfile::tempdir().unwrap();
    let mut w = World::with_referrals(root.path());
    let contract = w.contract_for(&ALL_FIELDS, OVERLAP);
    let job = w.job_with(contract, OVERLAP, 100_000);
    let sets: Vec<Vec<PatientId>> = (0..3)
        .map(|i| {
            with_vault(&w, i, |v| {
                medspace_compute::federated::overlap_patients(
                    &w.state,
                    job,
                    &member(i),
                    v,
                    &links(&w, i),
                )
            })
            .unwrap()
        })
        .collect();
    // The cohort, not every consenting patient: fewer than the sites' linked patients.
    let everyone = job_patients(&w.state, job, &member(0), &links(&w, 0)).unwrap();
    assert!(!sets[0].is_empty() && sets[0].len() < everyone.len());
    let ids: Vec<_> = sets
        .iter()
        .map(|s| medspace_worker::compute::once::identifiers(job, s))
        .collect();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mode = medspace_privacy::psi::Mode::Cardinality;
    let mut shared_any = false;
    for (i, j) in medspace_worker::compute::once::overlap_pairs(3) {
        let sender = medspace_privacy::psi::Sender::new(&mut rng, &ids[i], mode, 2).unwrap();
        let (receiver, request) =
            medspace_privacy::psi::Receiver::new(&mut rng, &ids[j], mode, 2).unwrap();
        let request =
            medspace_privacy::psi::Request::from_bytes(&request.to_bytes().unwrap()).unwrap();
        let response = medspace_privacy::psi::Response::from_bytes(
            &sender
                .respond(&request, &mut rng)
                .unwrap()
                .to_bytes()
                .unwrap(),
        )
        .unwrap();
        let got = receiver.finish(&response).unwrap();
        let a: BTreeSet<&PatientId> = sets[i].iter().collect();
        let plain = sets[j].iter().filter(|p| a.contains(p)).count();
        assert_eq!(
            got,
            medspace_privacy::psi::PsiOutput::Cardinality(plain),
            "pair {i}-{j}"
        );
        shared_any |= plain > 0;
    }
    assert!(
        shared_any,
        "referred diabetic patients are shared by some pair"
    );
}
