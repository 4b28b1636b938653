//! Data-use contracts: submit, required approvals by level, approve/reject, expiry, terminate.

use super::fixture::*;
use medspace_state::records::ContractStatus;
use medspace_state::{Event, TxError};
use medspace_types::*;

fn roles_of(net: &Net, c: ContractId) -> Vec<(Role, Option<String>)> {
    net.state
        .contract(c)
        .unwrap()
        .unwrap()
        .approvals
        .iter()
        .map(|a| (a.role, a.member.as_ref().map(|m| m.to_string())))
        .collect()
}

#[test]
fn l1_request_is_active_immediately() {
    let mut net = Net::new();
    let k = net.user(RESEARCHER);
    let r = net.ok(
        &k,
        request(
            Purpose::Research,
            Mode::Compute,
            &["hospital-a", "hospital-b"],
            Level::L1,
            net.ctx.time_ms + DAY_MS,
            1_000,
            100,
        ),
    );
    let Some(medspace_state::Created::Contract(c)) = r.created else {
        panic!("{r:?}")
    };
    assert_eq!(r.events, vec![Event::ContractActivated(c)]);
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.status, ContractStatus::Active);
    assert_eq!(rec.level, Level::L1);
    assert!(rec.approvals.is_empty());
    assert_eq!(
        rec.owners.as_slice(),
        &[mid("hospital-a"), mid("hospital-b")]
    );
    assert_eq!(rec.escrow, 100);
    assert_eq!(
        net.state.balance(&mid("research-1")).unwrap(),
        BALANCE - 100
    );
    // A job can run at once.
    net.job(c, 10);
}

#[test]
fn l2_needs_each_owners_steward() {
    let mut net = Net::new();
    let c = net.research(Mode::Compute, &["hospital-b", "hospital-a"], Level::L2);
    assert_eq!(
        roles_of(&net, c),
        vec![
            (Role::Steward, Some("hospital-a".into())),
            (Role::Steward, Some("hospital-b".into()))
        ]
    );
    // hospital-c's steward owns nothing here.
    let k = net.user(&steward("hospital-c"));
    let err = net.refuse(&k, approve(c));
    assert!(
        matches!(
            err,
            TxError::WrongRole {
                kind: "approve",
                ..
            }
        ),
        "{err:?}"
    );
    let k = net.user(&steward("hospital-a"));
    assert!(net.ok(&k, approve(c)).events.is_empty());
    // The same steward twice.
    let err = net.refuse(&k, approve(c));
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    let k = net.user(&steward("hospital-b"));
    assert_eq!(
        net.ok(&k, approve(c)).events,
        vec![Event::ContractActivated(c)]
    );
}

#[test]
fn l3_needs_stewards_and_both_committees() {
    let mut net = Net::new();
    let r = net.user(RESEARCHER);
    let mut payload = request(
        Purpose::Research,
        Mode::Compute,
        &["hospital-a"],
        Level::L3,
        net.ctx.time_ms + 30 * DAY_MS,
        1_000_000,
        1_000,
    );
    // Touching an L2 field of hospital-b too: the level is the highest touched.
    if let Payload::SubmitRequest(s) = &mut payload {
        let mut f = s.fields.clone().into_vec();
        f.push(field_at("hospital-b", Level::L2));
        s.fields = list(f);
    }
    let c = match net.ok(&r, payload).created {
        Some(medspace_state::Created::Contract(c)) => c,
        other => panic!("{other:?}"),
    };
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.level, Level::L3);
    assert_eq!(rec.status, ContractStatus::Pending);
    assert_eq!(
        roles_of(&net, c),
        vec![
            (Role::Steward, Some("hospital-a".into())),
            (Role::Steward, Some("hospital-b".into())),
            (Role::DataCommittee, None),
            (Role::EthicsCommittee, None),
        ]
    );
    // Missing approvals: no job on a pending contract.
    let err = net.refuse(&r, submit_job(c, 10));
    assert!(
        matches!(
            err,
            TxError::ContractState {
                status: "pending",
                need: "active",
                ..
            }
        ),
        "{err:?}"
    );
    let now = net.ctx.time_ms;
    let waiting = |net: &Net, u: &str| {
        net.state
            .approvals_waiting_for(&uid(u), now)
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(waiting(&net, &steward("hospital-a")), vec![c]);
    assert_eq!(waiting(&net, &steward("hospital-b")), vec![c]);
    assert_eq!(waiting(&net, &dc("hospital-c")), vec![c]);
    assert_eq!(waiting(&net, &ec("hospital-b")), vec![c]);
    assert!(waiting(&net, &steward("hospital-c")).is_empty());
    assert!(waiting(&net, AUDITOR).is_empty());
    assert!(waiting(&net, RESEARCHER).is_empty());
    assert!(waiting(&net, &clinician("hospital-a")).is_empty());
    assert_eq!(
        net.state
            .contracts_by_status(Some("pending"), now)
            .unwrap()
            .len(),
        1
    );
    for u in [
        steward("hospital-a"),
        steward("hospital-b"),
        dc("hospital-a"),
    ] {
        let k = net.user(&u);
        assert!(net.ok(&k, approve(c)).events.is_empty());
        assert!(waiting(&net, &u).is_empty());
        let err = net.refuse(&r, submit_job(c, 10));
        assert!(matches!(err, TxError::ContractState { .. }));
    }
    // Another data committee member: that approval is given.
    let k = net.user(&dc("hospital-b"));
    assert!(matches!(
        net.refuse(&k, approve(c)),
        TxError::WrongRole { .. }
    ));
    assert!(waiting(&net, &dc("hospital-b")).is_empty());
    let k = net.user(&ec("hospital-c"));
    assert_eq!(
        net.ok(&k, approve(c)).events,
        vec![Event::ContractActivated(c)]
    );
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.status, ContractStatus::Active);
    assert!(rec.approvals.iter().all(|a| a.by.is_some()));
    assert_eq!(
        net.state
            .contracts_by_status(Some("active"), now)
            .unwrap()
            .len(),
        1
    );
    assert!(
        net.state
            .contracts_by_status(Some("pending"), now)
            .unwrap()
            .is_empty()
    );
    net.job(c, 10);
    // Approving an active contract.
    let k = net.user(&ec("hospital-a"));
    let err = net.refuse(&k, approve(c));
    assert!(matches!(
        err,
        TxError::ContractState {
            status: "active",
            need: "pending",
            ..
        }
    ));
}

#[test]
fn l4_adds_the_regulators_auditor() {
    let mut net = Net::new();
    let c = net.research(Mode::Compute, &["hospital-c"], Level::L4);
    assert_eq!(
        roles_of(&net, c),
        vec![
            (Role::Steward, Some("hospital-c".into())),
            (Role::DataCommittee, None),
            (Role::EthicsCommittee, None),
            (Role::Auditor, None),
        ]
    );
    for u in [steward("hospital-c"), dc("hospital-a"), ec("hospital-a")] {
        let k = net.user(&u);
        net.ok(&k, approve(c));
    }
    let r = net.user(RESEARCHER);
    assert!(matches!(
        net.refuse(&r, submit_job(c, 1)),
        TxError::ContractState { .. }
    ));
    let now = net.ctx.time_ms;
    assert_eq!(
        net.state
            .approvals_waiting_for(&uid(AUDITOR), now)
            .unwrap()
            .len(),
        1
    );
    let k = net.user(AUDITOR);
    assert_eq!(
        net.ok(&k, approve(c)).events,
        vec![Event::ContractActivated(c)]
    );
    net.job(c, 1);
}

/// DESIGN §3: L4 needs "L3 + regulator". An auditor registered by a hospital is not the
/// regulator, yet the consortium-scoped auditor approval accepts any member's auditor.
#[test]
fn l4_regulator_approval_needs_the_regulators_auditor() {
    // A hospital cannot give itself an auditor any more; one declared at genesis still cannot
    // fill the regulator's slot.
    let fake = Keypair::from_seed(61);
    let mut net = Net::new_with(|g, users| {
        g.users.push(GenesisUser {
            id: uid("hospital-a.auditor"),
            member: mid("hospital-a"),
            role: Role::Auditor,
            key: fake.public(),
        });
        users.insert("hospital-a.auditor".into(), fake.clone());
    });
    let m = net.member("hospital-a");
    let err = net.refuse(
        &m,
        Payload::RegisterUser(RegisterUser {
            user: uid("hospital-a.auditor2"),
            role: Role::Auditor,
            key: Keypair::from_seed(62).public(),
        }),
    );
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L4);
    let err = net.refuse(&fake, approve(c));
    assert!(matches!(err, TxError::WrongRole { .. }), "{err:?}");
}

#[test]
fn request_refusals() {
    let mut net = Net::new();
    let now = net.ctx.time_ms;
    let req = |purpose, owners: &[&str], expiry, budget, fee| {
        request(
            purpose,
            Mode::Compute,
            owners,
            Level::L2,
            expiry,
            budget,
            fee,
        )
    };
    let ok = req(Purpose::Research, &["hospital-a"], now + DAY_MS, 10, 1);
    // Wrong role for the purpose.
    for u in [
        clinician("hospital-a"),
        steward("hospital-a"),
        AUDITOR.to_string(),
    ] {
        let k = net.user(&u);
        let err = net.refuse(&k, ok.clone());
        assert!(
            matches!(
                err,
                TxError::WrongRole {
                    kind: "submit_request",
                    ..
                }
            ),
            "{u}: {err:?}"
        );
    }
    let r = net.user(RESEARCHER);
    let err = net.refuse(
        &r,
        req(Purpose::Treatment, &["hospital-a"], now + DAY_MS, 10, 1),
    );
    assert!(matches!(err, TxError::WrongRole { .. }));
    let err = net.refuse(
        &r,
        req(Purpose::PatientAccess, &["hospital-a"], now + DAY_MS, 10, 1),
    );
    assert!(matches!(err, TxError::WrongRole { ref need, .. } if need == "none"));
    // Not users.
    let m = net.member("research-1");
    assert!(matches!(
        net.refuse(&m, ok.clone()),
        TxError::WrongSigner { .. }
    ));
    let p = net.patient(0);
    assert!(matches!(
        net.refuse(&p, ok.clone()),
        TxError::WrongSigner { .. }
    ));
    // Expiry in the past or now; lifetime beyond the policy; budget beyond the policy.
    for e in [now - 1, now] {
        let err = net.refuse(&r, req(Purpose::Research, &["hospital-a"], e, 10, 1));
        assert!(matches!(
            err,
            TxError::Expired {
                what: "request",
                ..
            }
        ));
    }
    let policy = net.state.policy().unwrap();
    let err = net.refuse(
        &r,
        req(
            Purpose::Research,
            &["hospital-a"],
            now + policy.max_contract_ms + 1,
            10,
            1,
        ),
    );
    assert!(matches!(
        err,
        TxError::Invalid {
            field: "expiry_ms",
            ..
        }
    ));
    let err = net.refuse(
        &r,
        req(
            Purpose::Research,
            &["hospital-a"],
            now + DAY_MS,
            policy.max_epsilon_micro + 1,
            1,
        ),
    );
    assert!(matches!(
        err,
        TxError::Invalid {
            field: "epsilon_budget",
            ..
        }
    ));
    // No fields, an unknown dataset, an unknown field.
    let err = net.refuse(&r, req(Purpose::Research, &[], now + DAY_MS, 10, 1));
    assert!(matches!(
        err,
        TxError::Invalid {
            field: "fields",
            ..
        }
    ));
    let err = net.refuse(
        &r,
        req(Purpose::Research, &["hospital-z"], now + DAY_MS, 10, 1),
    );
    assert!(matches!(
        err,
        TxError::NotFound {
            what: "dataset",
            ..
        }
    ));
    let mut bad = ok.clone();
    if let Payload::SubmitRequest(s) = &mut bad {
        s.fields = list(vec![FieldRef {
            dataset: dataset_of("hospital-a"),
            table: text("person"),
            field: text("ssn"),
        }]);
    }
    assert!(matches!(net.refuse(&r, bad), TxError::OutOfScope { .. }));
    // More fee than credits.
    let err = net.refuse(
        &r,
        req(
            Purpose::Research,
            &["hospital-a"],
            now + DAY_MS,
            10,
            BALANCE + 1,
        ),
    );
    assert_eq!(
        err,
        TxError::InsufficientBalance {
            member: "research-1".into(),
            balance: BALANCE,
            needed: BALANCE + 1
        }
    );
    net.ok(&r, ok);
}

#[test]
fn approve_refusals() {
    let mut net = Net::new();
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L3);
    // Not a reviewer's role.
    for u in [clinician("hospital-a"), AUDITOR.to_string()] {
        let k = net.user(&u);
        assert!(matches!(
            net.refuse(&k, approve(c)),
            TxError::WrongRole { .. }
        ));
    }
    // The requester cannot approve their own request.
    let r = net.user(RESEARCHER);
    assert!(matches!(
        net.refuse(&r, approve(c)),
        TxError::Forbidden { .. }
    ));
    // Not users.
    for k in [net.member("hospital-a"), net.patient(0)] {
        assert!(matches!(
            net.refuse(&k, approve(c)),
            TxError::WrongSigner { .. }
        ));
    }
    let s = net.user(&steward("hospital-a"));
    let err = net.refuse(&s, approve(ContractId(12345)));
    assert!(matches!(
        err,
        TxError::NotFound {
            what: "contract",
            ..
        }
    ));
    // After expiry.
    let expiry = net.state.contract(c).unwrap().unwrap().expiry_ms;
    net.advance(expiry - net.ctx.time_ms);
    let err = net.refuse(&s, approve(c));
    assert!(
        matches!(
            err,
            TxError::Expired {
                what: "contract",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        net.state
            .approvals_waiting_for(&uid(&steward("hospital-a")), net.ctx.time_ms)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn reject_refunds_and_closes() {
    let mut net = Net::new();
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L3);
    assert_eq!(
        net.state.balance(&mid("research-1")).unwrap(),
        BALANCE - 1_000
    );
    // Only a reviewer whose approval is missing may reject.
    let k = net.user(&clinician("hospital-a"));
    let reject = |c| {
        Payload::Reject(Reject {
            contract: c,
            reason: text("insufficient justification"),
        })
    };
    assert!(matches!(
        net.refuse(&k, reject(c)),
        TxError::WrongRole { kind: "reject", .. }
    ));
    let k = net.user(&steward("hospital-a"));
    net.ok(&k, approve(c));
    assert!(matches!(
        net.refuse(&k, reject(c)),
        TxError::WrongRole { .. }
    ));
    let e = net.user(&ec("hospital-b"));
    assert_eq!(
        net.ok(&e, reject(c)).events,
        vec![Event::ContractRejected(c)]
    );
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.status, ContractStatus::Rejected);
    assert_eq!(rec.closing_reason.as_str(), "insufficient justification");
    assert_eq!(rec.escrow, 0);
    assert_eq!(net.state.balance(&mid("research-1")).unwrap(), BALANCE);
    assert_eq!(
        net.state
            .contracts_by_status(Some("rejected"), net.ctx.time_ms)
            .unwrap()
            .len(),
        1
    );
    let d = net.user(&dc("hospital-a"));
    let err = net.refuse(&d, approve(c));
    assert!(matches!(
        err,
        TxError::ContractState {
            status: "rejected",
            ..
        }
    ));
    assert!(matches!(
        net.refuse(&d, reject(c)),
        TxError::ContractState { .. }
    ));
    // Settling a rejected contract pays nothing twice.
    let r = net.user(RESEARCHER);
    assert!(matches!(
        net.refuse(&r, settle(c)),
        TxError::Forbidden { .. }
    ));
}

#[test]
fn contracts_expire_by_block_time() {
    let mut net = Net::new();
    let c = net.active(Mode::Compute, &["hospital-a"], Level::L2);
    let expiry = net.state.contract(c).unwrap().unwrap().expiry_ms;
    let r = net.user(RESEARCHER);
    net.advance(expiry - 1 - net.ctx.time_ms);
    net.job(c, 1);
    assert_eq!(
        net.state
            .contracts_by_status(Some("active"), net.ctx.time_ms)
            .unwrap()
            .len(),
        1
    );
    net.advance(1);
    assert_eq!(net.ctx.time_ms, expiry);
    let err = net.refuse(&r, submit_job(c, 1));
    assert_eq!(
        err,
        TxError::Expired {
            what: "contract",
            id: c.to_string(),
            expiry_ms: expiry,
            now_ms: expiry
        }
    );
    let now = net.ctx.time_ms;
    assert_eq!(
        net.state
            .contracts_by_status(Some("expired"), now)
            .unwrap()
            .len(),
        1
    );
    assert!(
        net.state
            .contracts_by_status(Some("active"), now)
            .unwrap()
            .is_empty()
    );
    assert_eq!(net.state.contracts_by_status(None, now).unwrap().len(), 1);
    // A record-sharing contract's accesses stop too.
    let c2 = {
        let mut n2 = Net::new();
        n2.consent(0, Purpose::Research, false);
        let c2 = n2.active(Mode::RecordSharing, &["hospital-a"], Level::L2);
        let e = n2.state.contract(c2).unwrap().unwrap().expiry_ms;
        n2.advance(e - n2.ctx.time_ms);
        let h = n2.node("hospital-a");
        let err = n2.refuse(
            &h,
            record_access(
                n2.pid(0),
                "research-1",
                AccessBasis::Contract(c2),
                &["Condition"],
            ),
        );
        assert!(
            matches!(
                err,
                TxError::ContractState {
                    status: "expired",
                    need: "active",
                    ..
                }
            ),
            "{err:?}"
        );
        c2
    };
    let _ = c2;
}

#[test]
fn terminate_by_requester_owner_steward_or_regulator() {
    // A hospital's own auditor can only come from genesis now.
    let own_auditor = Keypair::from_seed(62);
    let mut net = Net::new_with(|g, users| {
        g.users.push(GenesisUser {
            id: uid("hospital-b.auditor"),
            member: mid("hospital-b"),
            role: Role::Auditor,
            key: own_auditor.public(),
        });
        users.insert("hospital-b.auditor".into(), own_auditor.clone());
    });
    // Who may: the requester, the owner's steward, the owner's node, the regulator's auditor.
    let allowed = [
        net.user(RESEARCHER),
        net.user(&steward("hospital-a")),
        net.member("hospital-a"),
        net.user(AUDITOR),
    ];
    // Who may not: another hospital's steward, the owner's clinician and committees, another
    // member's node, the research institute's node, a patient, a hospital's own auditor.
    let refused = [
        net.user(&steward("hospital-b")),
        net.user(&clinician("hospital-a")),
        net.user(&dc("hospital-a")),
        net.member("hospital-b"),
        net.patient(0),
        own_auditor,
    ];
    for (i, k) in allowed.iter().enumerate() {
        let c = net.research(Mode::Compute, &["hospital-a"], Level::L2);
        for bad in &refused {
            let err = net.refuse(bad, terminate(c));
            assert!(
                matches!(
                    err,
                    TxError::WrongSigner {
                        kind: "terminate",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
        if i % 2 == 0 {
            net.approve_all(c);
        }
        net.ok(k, terminate(c));
        let rec = net.state.contract(c).unwrap().unwrap();
        assert_eq!(rec.status, ContractStatus::Terminated);
        assert_eq!(rec.closing_reason.as_str(), "ended early");
        let err = net.refuse(k, terminate(c));
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
        let r = net.user(RESEARCHER);
        assert!(matches!(
            net.refuse(&r, submit_job(c, 1)),
            TxError::ContractState { .. }
        ));
    }
    assert_eq!(
        net.state
            .contracts_by_status(Some("terminated"), net.ctx.time_ms)
            .unwrap()
            .len(),
        4
    );
}

/// A pending contract past its expiry can never be approved (approve answers `Expired`), yet
/// `contracts_by_status` keeps reporting it as `pending`: `ContractRecord::status_at` derives
/// `expired` only for active contracts.
#[test]
fn pending_contract_past_expiry_is_not_listed_as_pending() {
    let mut net = Net::new();
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L3);
    let expiry = net.state.contract(c).unwrap().unwrap().expiry_ms;
    net.advance(expiry - net.ctx.time_ms);
    let s = net.user(&steward("hospital-a"));
    assert!(matches!(
        net.refuse(&s, approve(c)),
        TxError::Expired { .. }
    ));
    let now = net.ctx.time_ms;
    assert!(
        net.state
            .contracts_by_status(Some("pending"), now)
            .unwrap()
            .is_empty(),
        "an expired request is not waiting for anything"
    );
    assert_eq!(
        net.state
            .contracts_by_status(Some("expired"), now)
            .unwrap()
            .len(),
        1
    );
}
