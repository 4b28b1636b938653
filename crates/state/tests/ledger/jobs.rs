//! Execution: jobs under active contracts, the epsilon budget, posted results.

use super::fixture::*;
use medspace_state::records::JobStatus;
use medspace_state::{Created, TxError};
use medspace_types::*;

const BUDGET: u64 = 1_000_000;

#[test]
fn job_reserves_budget_and_a_closed_round_spends_all_of_it() {
    let mut net = Net::new();
    let c = net.active(Mode::Compute, &["hospital-a", "hospital-b"], Level::L3);
    assert_eq!(net.state.budget_left(c).unwrap(), Some(BUDGET));
    let j = net.job(c, 300_000);
    let job = net.state.job(j).unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Submitted);
    assert_eq!(job.contract, c);
    assert_eq!(job.submitter, uid(RESEARCHER));
    assert_eq!(job.submitted_height, net.ctx.height);
    assert_eq!(job.round, None);
    // Two sites: a patient treated at both is counted twice, so the job reserves twice its
    // per-site epsilon.
    assert_eq!(net.state.budget_left(c).unwrap(), Some(BUDGET - 600_000));
    let h = net.node("hospital-a");
    net.ok(
        &h,
        close_round(
            j,
            &["hospital-a", "hospital-b"],
            &["hospital-a", "hospital-b"],
        ),
    );
    let round = net.state.job(j).unwrap().unwrap().round.unwrap();
    assert_eq!(round.survivors.len(), 2);
    assert_eq!(round.height, net.ctx.height);
    // Once the round is closed, less than the reservation cannot be claimed as spent.
    let err = net.refuse(
        &h,
        post_result(j, 200_000, &[("hospital-a", 12), ("hospital-b", 7)]),
    );
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "epsilon_spent",
                ..
            }
        ),
        "{err:?}"
    );
    net.ok(
        &h,
        post_result(j, 300_000, &[("hospital-a", 12), ("hospital-b", 7)]),
    );
    let job = net.state.job(j).unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Done);
    let res = job.result.unwrap();
    assert_eq!(res.epsilon_spent, 600_000, "charged per site x 2 sites");
    assert_eq!(res.posted_by, mid("hospital-a"));
    assert_eq!(res.contributions.len(), 2);
    assert_eq!(net.state.budget_left(c).unwrap(), Some(BUDGET - 600_000));
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!((rec.epsilon_spent, rec.epsilon_reserved), (600_000, 0));
    assert_eq!(rec.contributions.len(), 2);
    // A second result for the same job.
    let err = net.refuse(&h, post_result(j, 0, &[]));
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    // Contributions add up over jobs.
    let j2 = net.job(c, 100_000);
    net.finish(j2, &[("hospital-a", 1), ("hospital-b", 3)]);
    let rec = net.state.contract(c).unwrap().unwrap();
    let b = rec
        .contributions
        .iter()
        .find(|x| x.member == mid("hospital-b"))
        .unwrap();
    assert_eq!(b.records, 10);
    assert_eq!(net.state.budget_left(c).unwrap(), Some(BUDGET - 800_000));
}

#[test]
fn a_round_never_closed_releases_nothing_and_spends_nothing() {
    let mut net = Net::new();
    let c = net.active(Mode::Compute, &["hospital-a", "hospital-b"], Level::L2);
    let j = net.job(c, 300_000);
    let h = net.node("hospital-a");
    // Without a closed round, nothing was released: no contributions, nothing spent.
    let err = net.refuse(
        &h,
        post_result(j, 0, &[("hospital-a", 3), ("hospital-b", 4)]),
    );
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "contributions",
                ..
            }
        ),
        "{err:?}"
    );
    let err = net.refuse(&h, post_result(j, 300_000, &[]));
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "epsilon_spent",
                ..
            }
        ),
        "{err:?}"
    );
    net.ok(&h, post_result(j, 0, &[]));
    assert_eq!(net.state.budget_left(c).unwrap(), Some(BUDGET));
    // A round closed then failing still spends the reservation: the sites revealed.
    let j = net.job(c, 300_000);
    net.ok(
        &h,
        close_round(
            j,
            &["hospital-a", "hospital-b"],
            &["hospital-a", "hospital-b"],
        ),
    );
    let err = net.refuse(&h, post_result(j, 0, &[]));
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "epsilon_spent",
                ..
            }
        ),
        "{err:?}"
    );
    net.ok(&h, post_result(j, 300_000, &[]));
    assert_eq!(net.state.budget_left(c).unwrap(), Some(BUDGET - 600_000));
}

#[test]
fn a_round_is_closed_once_by_the_aggregator_with_sets_that_hold() {
    let mut net = Net::new();
    let c = net.active(
        Mode::Compute,
        &["hospital-a", "hospital-b", "hospital-c"],
        Level::L2,
    );
    let j = net.job(c, 1_000);
    let all = ["hospital-a", "hospital-b", "hospital-c"];
    // Only the aggregator (the contract's first data holder) closes.
    for m in ["hospital-b", "hospital-c", "research-1"] {
        let k = net.node(m);
        let err = net.refuse(&k, close_round(j, &all, &all));
        assert!(matches!(err, TxError::Forbidden { .. }), "{m}: {err:?}");
    }
    let steward = net.user(&steward("hospital-a"));
    assert!(matches!(
        net.refuse(&steward, close_round(j, &all, &all)),
        TxError::WrongSigner {
            kind: "close_round",
            ..
        }
    ));
    let h = net.node("hospital-a");
    // Sets: holders only, in contract order, survivors among the dealers, a majority.
    for (sharers, survivors, field) in [
        (
            &["hospital-a", "research-1"][..],
            &["hospital-a"][..],
            "sharers",
        ),
        (
            &["hospital-b", "hospital-a"][..],
            &["hospital-a", "hospital-b"][..],
            "sharers",
        ),
        (
            &["hospital-a", "hospital-a"][..],
            &["hospital-a"][..],
            "sharers",
        ),
        (
            &["hospital-a", "hospital-b"][..],
            &["hospital-a", "hospital-c"][..],
            "survivors",
        ),
        (&all[..], &["hospital-a"][..], "survivors"),
    ] {
        let err = net.refuse(&h, close_round(j, sharers, survivors));
        assert!(
            matches!(&err, TxError::Invalid { field: f, .. } if *f == field),
            "{sharers:?} {survivors:?}: {err:?}"
        );
    }
    // Two closes with different sets in one block: exactly the first is kept.
    net.next_block();
    let n = net.nonce(&h);
    let txs = vec![
        SignedTx::new(
            &net.chain,
            &h,
            n,
            close_round(j, &all, &["hospital-a", "hospital-b"]),
        ),
        SignedTx::new(&net.chain, &h, n + 1, close_round(j, &all, &all)),
    ];
    let ctx = net.ctx;
    let out = net.state.apply_block(&ctx, &txs);
    assert!(out[0].is_ok(), "{:?}", out[0]);
    assert!(
        matches!(out[1], Err(TxError::Forbidden { .. })),
        "{:?}",
        out[1]
    );
    let round = net.state.job(j).unwrap().unwrap().round.unwrap();
    assert_eq!(round.survivors.len(), 2);
    // The result's contributors are exactly the survivors, each signed by its own key.
    let err = net.refuse(&h, post_result(j, 1_000, &[("hospital-a", 1)]));
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "contributions",
                ..
            }
        ),
        "{err:?}"
    );
    let err = net.refuse(
        &h,
        post_result(j, 1_000, &[("hospital-b", 1), ("hospital-a", 1)]),
    );
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "contributions",
                ..
            }
        ),
        "{err:?}"
    );
    // The aggregator cannot invent a survivor's contribution.
    let mut forged = post_result(j, 1_000, &[("hospital-a", 1), ("hospital-b", 2)]);
    if let Payload::PostResult(p) = &mut forged {
        let mut list = p.contributions.as_slice().to_vec();
        list[1] = SignedContribution::sign(&node_keypair("hospital-a"), j, mid("hospital-b"), 900);
        p.contributions = List::new(list).unwrap();
    }
    let err = net.refuse(&h, forged);
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "contributions",
                ..
            }
        ),
        "{err:?}"
    );
    net.ok(
        &h,
        post_result(j, 1_000, &[("hospital-a", 1), ("hospital-b", 2)]),
    );
}

#[test]
fn budget_exceeded_is_refused() {
    let mut net = Net::new();
    let c = net.active(Mode::Compute, &["hospital-a"], Level::L2);
    let r = net.user(RESEARCHER);
    let err = net.refuse(&r, submit_job(c, BUDGET + 1));
    assert_eq!(
        err,
        TxError::BudgetExceeded {
            contract: c.to_string(),
            budget: BUDGET,
            spent: 0,
            reserved: 0,
            requested: BUDGET + 1
        }
    );
    // Two jobs in the same block whose sum exceeds the budget: the second is refused.
    let j1 = net.job(c, 600_000);
    let err = net.refuse(&r, submit_job(c, 500_000));
    assert_eq!(
        err,
        TxError::BudgetExceeded {
            contract: c.to_string(),
            budget: BUDGET,
            spent: 0,
            reserved: 600_000,
            requested: 500_000
        }
    );
    // Exactly what is left is fine.
    let j2 = net.job(c, 400_000);
    assert_eq!(net.state.budget_left(c).unwrap(), Some(0));
    let err = net.refuse(&r, submit_job(c, 1));
    assert!(matches!(err, TxError::BudgetExceeded { .. }));
    // A result is charged exactly its job's reservation.
    let h = net.node("hospital-a");
    net.ok(&h, close_round(j1, &["hospital-a"], &["hospital-a"]));
    let err = net.refuse(&h, post_result(j1, 600_001, &[("hospital-a", 1)]));
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "epsilon_spent",
                ..
            }
        ),
        "{err:?}"
    );
    net.ok(&h, post_result(j1, 600_000, &[("hospital-a", 1)]));
    net.finish(j2, &[("hospital-a", 1)]);
    assert_eq!(net.state.budget_left(c).unwrap(), Some(0));
    assert!(matches!(
        net.refuse(&r, submit_job(c, 1)),
        TxError::BudgetExceeded { .. }
    ));
}

#[test]
fn two_jobs_in_one_block_over_budget_via_apply_block() {
    let mut net = Net::new();
    let c = net.active(Mode::Compute, &["hospital-a"], Level::L2);
    net.next_block();
    let r = net.user(RESEARCHER);
    let n = net.nonce(&r);
    let txs = vec![
        SignedTx::new(&net.chain, &r, n, submit_job(c, 700_000)),
        SignedTx::new(&net.chain, &r, n + 1, submit_job(c, 700_000)),
    ];
    let ctx = net.ctx;
    let out = net.state.apply_block(&ctx, &txs);
    assert!(matches!(out[0], Ok(ref rc) if matches!(rc.created, Some(Created::Job(_)))));
    assert!(
        matches!(
            out[1],
            Err(TxError::BudgetExceeded {
                reserved: 700_000,
                requested: 700_000,
                ..
            })
        ),
        "{:?}",
        out[1]
    );
    assert_eq!(net.state.budget_left(c).unwrap(), Some(300_000));
    assert_eq!(
        net.nonce(&r),
        n + 1,
        "the refused one did not use its nonce"
    );
}

#[test]
fn submit_job_refusals() {
    let mut net = Net::new();
    let c = net.active(Mode::Compute, &["hospital-a"], Level::L2);
    // Only the contract holder.
    for u in [steward("hospital-a"), clinician("hospital-a")] {
        let k = net.user(&u);
        assert!(matches!(
            net.refuse(&k, submit_job(c, 1)),
            TxError::Forbidden { .. }
        ));
    }
    for k in [net.member("research-1"), net.patient(0)] {
        let err = net.refuse(&k, submit_job(c, 1));
        assert!(matches!(
            err,
            TxError::WrongSigner {
                kind: "submit_job",
                ..
            }
        ));
    }
    let r = net.user(RESEARCHER);
    let err = net.refuse(&r, submit_job(ContractId(7), 1));
    assert!(matches!(
        err,
        TxError::NotFound {
            what: "contract",
            ..
        }
    ));
    // Jobs only under compute contracts.
    let rs = net.active(Mode::RecordSharing, &["hospital-a"], Level::L2);
    assert!(matches!(
        net.refuse(&r, submit_job(rs, 1)),
        TxError::OutOfScope { .. }
    ));
    net.release("hospital-a");
    let op = net.submit(RESEARCHER, net.open_pool_request(&["hospital-a"]));
    net.approve_all(op);
    assert!(matches!(
        net.refuse(&r, submit_job(op, 1)),
        TxError::OutOfScope { .. }
    ));
}

#[test]
fn post_result_only_by_the_aggregators_node_key() {
    let mut net = Net::new();
    let c = net.active(Mode::Compute, &["hospital-a", "hospital-b"], Level::L2);
    let j = net.job(c, 1_000);
    let h = net.node("hospital-a");
    net.ok(
        &h,
        close_round(
            j,
            &["hospital-a", "hospital-b"],
            &["hospital-a", "hospital-b"],
        ),
    );
    let ok = post_result(j, 1_000, &[("hospital-a", 1), ("hospital-b", 2)]);
    // Not the aggregator, even another data owner.
    for m in ["hospital-b", "hospital-c", "research-1", "regulator"] {
        let k = net.node(m);
        assert!(
            matches!(net.refuse(&k, ok.clone()), TxError::Forbidden { .. }),
            "{m}"
        );
    }
    // Users (even the owner's steward) and patients do not post results.
    for k in [
        net.user(&steward("hospital-a")),
        net.user(RESEARCHER),
        net.patient(0),
    ] {
        let err = net.refuse(&k, ok.clone());
        assert!(matches!(
            err,
            TxError::WrongSigner {
                kind: "post_result",
                ..
            }
        ));
    }
    // An unknown job.
    let err = net.refuse(&h, post_result(JobId(99), 1, &[]));
    assert!(matches!(err, TxError::NotFound { what: "job", .. }));
    net.ok(&h, ok);
}

#[test]
fn post_result_refused_after_termination() {
    let mut net = Net::new();
    let c = net.active(Mode::Compute, &["hospital-a"], Level::L2);
    let j = net.job(c, 1_000);
    let r = net.user(RESEARCHER);
    net.ok(&r, terminate(c));
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.epsilon_reserved, 0);
    let h = net.node("hospital-a");
    for p in [
        close_round(j, &["hospital-a"], &["hospital-a"]),
        post_result(j, 0, &[]),
    ] {
        let err = net.refuse(&h, p);
        assert!(
            matches!(
                err,
                TxError::ContractState {
                    status: "terminated",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn consent_of_a_job_is_judged_at_its_height() {
    // Compute jobs run in the hospitals' nodes, which include a patient only if
    // `consent_allows` at the job's submission height: a revocation applies to every job
    // submitted after it (and in its own block), not to earlier ones.
    let mut net = Net::new();
    net.consent(0, Purpose::Research, false);
    net.consent(1, Purpose::Research, false);
    let c = net.active(Mode::Compute, &["hospital-a"], Level::L3);
    net.next_block();
    let j1 = net.job(c, 10);
    net.next_block();
    let p = net.patient(0);
    net.ok(
        &p,
        Payload::RevokeConsent(RevokeConsent {
            purpose: Purpose::Research,
            study: None,
        }),
    );
    let j2 = net.job(c, 10);
    let h1 = net.state.job(j1).unwrap().unwrap().submitted_height;
    let h2 = net.state.job(j2).unwrap().unwrap().submitted_height;
    assert!(h2 > h1);
    let allows = |net: &Net, i: usize, h| {
        net.state
            .consent_allows(&net.pid(i), Purpose::Research, None, Level::L3, h)
            .unwrap()
    };
    assert!(allows(&net, 0, h1));
    assert!(!allows(&net, 0, h2));
    assert!(allows(&net, 1, h1) && allows(&net, 1, h2));
}
