//! Approved means bound: a contract keeps the hash of its computation and a job runs only that
//! computation; a query's codes count toward the contract's level (a sensitive code makes it
//! L4: the regulator approves, and only patients who opted in at L4 count).

use super::fixture::*;
use medspace_state::TxError;
use medspace_state::records::ContractStatus;
use medspace_types::*;

/// A request of the researcher computing `spec` over the L1 field of hospital-a.
fn request_of(net: &Net, spec: &str) -> Payload {
    let mut p = request(
        Purpose::Research,
        Mode::Compute,
        &["hospital-a"],
        Level::L1,
        net.ctx.time_ms + 30 * DAY_MS,
        1_000_000,
        1_000,
    );
    if let Payload::SubmitRequest(r) = &mut p {
        r.computation = Blob::new(spec.as_bytes().to_vec()).unwrap();
    }
    p
}

#[test]
fn a_job_runs_only_the_computation_its_contract_approved() {
    let mut net = Net::new();
    let c = net.active(Mode::Compute, &["hospital-a"], Level::L1);
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.computation_hash, Hash::of(&[SPEC.as_bytes()]));
    assert_eq!(rec.computation_hash, computation_hash(SPEC.as_bytes()));
    let r = net.user(RESEARCHER);
    let reformatted = SPEC.replace(",", ", ");
    for other in [SPEC_HIV, reformatted.as_str(), "", "SELECT * FROM person"] {
        let err = net.refuse(&r, submit_job_of(c, other, 1_000));
        assert!(
            matches!(err, TxError::OutOfScope { .. }),
            "{other}: {err:?}"
        );
    }
    net.job(c, 1_000);
}

#[test]
fn a_compute_request_carries_a_valid_query() {
    let mut net = Net::new();
    let r = net.user(RESEARCHER);
    for bad in [
        "SELECT count(*) FROM condition_occurrence",
        "{}",
        r#"{"version":2,"cohort":{"index_date":"2025-01-01"},"aggregate":"count"}"#,
        r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":"count","sql":"x"}"#,
    ] {
        let p = request_of(&net, bad);
        let err = net.refuse(&r, p);
        assert!(
            matches!(
                err,
                TxError::Invalid {
                    field: "computation",
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
    }
    // Record sharing computes nothing: its computation is not a query.
    let mut p = request_of(&net, "deliver the discharge letters");
    if let Payload::SubmitRequest(s) = &mut p {
        s.mode = Mode::RecordSharing;
    }
    net.ok(&r, p);
}

#[test]
fn a_sensitive_code_makes_the_contract_l4() {
    let mut net = Net::new();
    // The same L1 fields: without a code the contract is L1 and active at once; with HIV
    // infection as a filter it is L4 and waits for the steward, both committees and the
    // regulator.
    let plain = request_of(&net, SPEC);
    let c = net.submit(RESEARCHER, plain);
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!((rec.level, rec.status), (Level::L1, ContractStatus::Active));
    let hiv = request_of(&net, SPEC_HIV);
    let c = net.submit(RESEARCHER, hiv);
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(
        (rec.level, rec.status),
        (Level::L4, ContractStatus::Pending)
    );
    let roles: Vec<(Role, bool)> = rec
        .approvals
        .iter()
        .map(|a| (a.role, a.member.is_some()))
        .collect();
    assert_eq!(
        roles,
        vec![
            (Role::Steward, true),
            (Role::DataCommittee, false),
            (Role::EthicsCommittee, false),
            (Role::Auditor, false),
        ]
    );
    let r = net.user(RESEARCHER);
    let err = net.refuse(&r, submit_job_of(c, SPEC_HIV, 1_000));
    assert!(matches!(err, TxError::ContractState { .. }), "{err:?}");
    // Without the regulator's auditor the contract does not start.
    for u in [steward("hospital-a"), dc("hospital-b"), ec("hospital-c")] {
        let k = net.user(&u);
        net.ok(&k, approve(c));
    }
    assert_eq!(
        net.state.contract(c).unwrap().unwrap().status,
        ContractStatus::Pending
    );
    let a = net.user(AUDITOR);
    net.ok(&a, approve(c));
    net.job_of(c, SPEC_HIV, 1_000);
    // Its jobs count only patients who opted in at L4.
    net.consent(0, Purpose::Research, false);
    net.consent(1, Purpose::Research, true);
    net.next_block();
    let h = net.ctx.height;
    let allows = |net: &Net, i: usize| {
        net.state
            .consent_allows(&net.pid(i), Purpose::Research, None, rec.level, h)
            .unwrap()
    };
    assert!(!allows(&net, 0), "no L4 opt-in");
    assert!(allows(&net, 1), "L4 opt-in");
}
