//! Differential-privacy accounting beyond one contract: a per-job cap, no job without epsilon,
//! and a lifetime budget per dataset across every contract, charged as the per-contract
//! reservation is (the whole reservation once the round closed, nothing otherwise).

use super::fixture::*;
use medspace_state::TxError;
use medspace_types::*;

fn account(net: &Net, h: &str) -> (u64, u64) {
    let a = net.state.dataset_epsilon(&dataset_of(h)).unwrap();
    (a.spent, a.reserved)
}

#[test]
fn a_job_reserves_some_epsilon_within_the_policys_cap() {
    let mut net = Net::new_with(|g, _| g.policy.max_job_epsilon_micro = 250_000);
    let c = net.active(Mode::Compute, &["hospital-a"], Level::L1);
    let r = net.user(RESEARCHER);
    for bad in [0, 250_001, u64::MAX] {
        let err = net.refuse(&r, submit_job(c, bad));
        assert!(
            matches!(
                err,
                TxError::Invalid {
                    field: "epsilon",
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
    }
    net.job(c, 250_000);
    assert_eq!(account(&net, "hospital-a"), (0, 250_000));
}

#[test]
fn a_datasets_budget_spans_every_contract() {
    let mut net = Net::new_with(|g, _| g.policy.dataset_epsilon_micro = 1_000_000);
    let both = net.active(Mode::Compute, &["hospital-a", "hospital-b"], Level::L1);
    let only_a = net.active(Mode::Compute, &["hospital-a"], Level::L1);
    let r = net.user(RESEARCHER);
    // Two sites: 300,000 per site is 600,000 for a patient treated at both.
    let j1 = net.job(both, 300_000);
    assert_eq!(account(&net, "hospital-a"), (0, 600_000));
    assert_eq!(account(&net, "hospital-b"), (0, 600_000));
    // Another contract's job on the same dataset: within its own contract's budget, beyond
    // the dataset's.
    let err = net.refuse(&r, submit_job(only_a, 500_000));
    assert_eq!(
        err,
        TxError::DatasetBudgetExceeded {
            dataset: "hospital-a.cdm".into(),
            budget: 1_000_000,
            spent: 0,
            reserved: 600_000,
            requested: 500_000,
        }
    );
    // A job whose round never closed released nothing: its reservation comes back.
    net.finish(j1, &[]);
    assert_eq!(account(&net, "hospital-a"), (0, 0));
    let j2 = net.job(only_a, 500_000);
    net.finish(j2, &[("hospital-a", 3)]);
    assert_eq!(account(&net, "hospital-a"), (500_000, 0));
    assert_eq!(account(&net, "hospital-b"), (0, 0));
    // A contract terminated after its job's round closed: the sites revealed, so the
    // reservation is charged, to the contract and to every dataset it names.
    let j3 = net.job(both, 200_000);
    let h = net.node("hospital-a");
    net.ok(
        &h,
        close_round(
            j3,
            &["hospital-a", "hospital-b"],
            &["hospital-a", "hospital-b"],
        ),
    );
    let j4 = net.job(both, 25_000);
    net.ok(&r, terminate(both));
    assert_eq!(account(&net, "hospital-a"), (900_000, 0));
    assert_eq!(account(&net, "hospital-b"), (400_000, 0));
    let rec = net.state.contract(both).unwrap().unwrap();
    assert_eq!((rec.epsilon_spent, rec.epsilon_reserved), (400_000, 0));
    let _ = j4;
    // hospital-a's dataset has 100,000 left for every contract there is.
    let err = net.refuse(&r, submit_job(only_a, 100_001));
    assert!(
        matches!(err, TxError::DatasetBudgetExceeded { spent: 900_000, .. }),
        "{err:?}"
    );
    net.job(only_a, 100_000);
}

#[test]
fn a_patient_at_every_site_is_charged_once_per_site() {
    // Each site releases its own noised counts: a patient treated at all three is counted
    // three times, so a job costs them its per-site epsilon three times. The per-job cap,
    // the contract's budget and every dataset's budget see that product.
    let mut net = Net::new_with(|g, _| g.policy.max_job_epsilon_micro = 1_000_000);
    let three = net.active(
        Mode::Compute,
        &["hospital-a", "hospital-b", "hospital-c"],
        Level::L1,
    );
    let r = net.user(RESEARCHER);
    let before = net.state.root();
    let err = net.refuse(&r, submit_job(three, 400_000));
    assert!(
        matches!(&err, TxError::Invalid { field: "epsilon", reason } if reason.contains("3 sites")),
        "{err:?}"
    );
    assert_eq!(net.state.root(), before, "a refused job changes nothing");
    let j = net.job(three, 300_000);
    for site in ["hospital-a", "hospital-b", "hospital-c"] {
        assert_eq!(account(&net, site), (0, 900_000), "{site}");
    }
    assert_eq!(
        net.state.budget_left(three).unwrap(),
        Some(1_000_000 - 900_000)
    );
    let job = net.state.job(j).unwrap().unwrap();
    assert_eq!(
        job.epsilon_reserved, 300_000,
        "the sites calibrate to their own"
    );
}
