//! Record-level access audit: deliveries under grants and record-sharing contracts, the
//! patient's log, destruction attestations.

use super::fixture::*;
use super::grants::issue;
use medspace_state::records::PatientEvent;
use medspace_state::{Created, TxError};
use medspace_types::*;

fn access(net: &mut Net, holder: &str, p: Payload) -> AccessId {
    let k = net.node(holder);
    match net.ok(&k, p).created {
        Some(Created::Access(a)) => a,
        other => panic!("no access: {other:?}"),
    }
}

#[test]
fn grant_redeemed_by_record_access() {
    let mut net = Net::new();
    let expiry = net.ctx.time_ms + DAY_MS;
    let g = issue(
        &mut net,
        0,
        grant(
            "hospital-b",
            "hospital-a",
            &["Encounter", "Condition"],
            expiry,
            2,
        ),
    );
    let pid = net.pid(0);
    let a = access(
        &mut net,
        "hospital-a",
        record_access(pid, "hospital-b", AccessBasis::Grant(g), &["Encounter"]),
    );
    let rec = net.state.access(a).unwrap().unwrap();
    assert_eq!(rec.patient, pid);
    assert_eq!(rec.holder, mid("hospital-a"));
    assert_eq!(rec.recipient, mid("hospital-b"));
    assert_eq!(rec.basis, AccessBasis::Grant(g));
    assert_eq!(rec.resource_count, 3);
    assert_eq!(rec.height, net.ctx.height);
    assert_eq!(rec.destroyed_height, None);
    assert_eq!(net.state.grant(g).unwrap().unwrap().uses, 1);
    let seen = net.state.accesses_of(&pid).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].record, rec);
    seen[0].verify(&net.state.root()).unwrap();
}

#[test]
fn grant_redemption_refusals() {
    let mut net = Net::new();
    let now = net.ctx.time_ms;
    let g = issue(
        &mut net,
        0,
        grant("hospital-b", "hospital-a", &["Encounter"], now + DAY_MS, 1),
    );
    let pid = net.pid(0);
    let h = net.node("hospital-a");
    let ra = |pid, recipient, types: &[&str]| {
        record_access(pid, recipient, AccessBasis::Grant(g), types)
    };
    // Wrong grantee.
    let err = net.refuse(&h, ra(pid, "hospital-c", &["Encounter"]));
    assert!(matches!(err, TxError::OutOfScope { .. }), "{err:?}");
    // Wrong holder: hospital-c does not hold the granted records.
    let hc = net.node("hospital-c");
    let err = net.refuse(&hc, ra(pid, "hospital-b", &["Encounter"]));
    assert!(matches!(err, TxError::OutOfScope { .. }));
    // The grantee itself cannot "deliver" to itself under it.
    let hb = net.node("hospital-b");
    assert!(matches!(
        net.refuse(&hb, ra(pid, "hospital-b", &["Encounter"])),
        TxError::OutOfScope { .. }
    ));
    // Resource type out of scope.
    let err = net.refuse(&h, ra(pid, "hospital-b", &["Encounter", "Observation"]));
    assert!(matches!(err, TxError::OutOfScope { .. }));
    // Another patient's records under this grant.
    let err = net.refuse(&h, ra(net.pid(1), "hospital-b", &["Encounter"]));
    assert!(matches!(err, TxError::OutOfScope { .. }));
    // An unregistered patient, an unknown grant, a non-member recipient.
    let err = net.refuse(&h, ra(PatientId([7; 32]), "hospital-b", &["Encounter"]));
    assert!(matches!(
        err,
        TxError::NotFound {
            what: "patient",
            ..
        }
    ));
    let err = net.refuse(
        &h,
        record_access(
            pid,
            "hospital-b",
            AccessBasis::Grant(GrantId(1)),
            &["Encounter"],
        ),
    );
    assert!(matches!(err, TxError::NotFound { what: "grant", .. }));
    let err = net.refuse(&h, ra(pid, "nobody", &["Encounter"]));
    assert!(matches!(err, TxError::NotMember { .. }));
    // Users and patients do not record deliveries: the holding node does.
    for k in [net.user(&steward("hospital-a")), net.patient(0)] {
        let err = net.refuse(&k, ra(pid, "hospital-b", &["Encounter"]));
        assert!(matches!(
            err,
            TxError::WrongSigner {
                kind: "record_access",
                ..
            }
        ));
    }
    // Used up with max_uses = 1.
    net.ok(&h, ra(pid, "hospital-b", &["Encounter"]));
    let err = net.refuse(&h, ra(pid, "hospital-b", &["Encounter"]));
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    assert_eq!(net.state.grant(g).unwrap().unwrap().uses, 1);
}

#[test]
fn revoked_and_expired_grants_cannot_be_redeemed() {
    let mut net = Net::new();
    let now = net.ctx.time_ms;
    let g1 = issue(
        &mut net,
        1,
        grant("hospital-c", "hospital-a", &["Encounter"], now + DAY_MS, 0),
    );
    let g2 = issue(
        &mut net,
        1,
        grant("hospital-c", "hospital-b", &["Encounter"], now + 5_000, 0),
    );
    let pid = net.pid(1);
    let ha = net.node("hospital-a");
    let hb = net.node("hospital-b");
    // Unlimited uses until expiry or revocation.
    for _ in 0..3 {
        net.ok(
            &ha,
            record_access(pid, "hospital-c", AccessBasis::Grant(g1), &["Encounter"]),
        );
    }
    let p = net.patient(1);
    net.ok(&p, Payload::RevokeGrant(RevokeGrant { grant: g1 }));
    let err = net.refuse(
        &ha,
        record_access(pid, "hospital-c", AccessBasis::Grant(g1), &["Encounter"]),
    );
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    net.ok(
        &hb,
        record_access(pid, "hospital-c", AccessBasis::Grant(g2), &["Encounter"]),
    );
    net.advance(5_000);
    let err = net.refuse(
        &hb,
        record_access(pid, "hospital-c", AccessBasis::Grant(g2), &["Encounter"]),
    );
    assert_eq!(
        err,
        TxError::Expired {
            what: "grant",
            id: g2.to_string(),
            expiry_ms: now + 5_000,
            now_ms: net.ctx.time_ms
        }
    );
    assert_eq!(net.state.accesses_of(&pid).unwrap().len(), 4);
}

#[test]
fn record_sharing_contract_needs_consent_at_the_access_height() {
    let mut net = Net::new();
    net.consent(0, Purpose::Research, false);
    let c = net.active(
        Mode::RecordSharing,
        &["hospital-a", "hospital-b"],
        Level::L3,
    );
    let h = net.node("hospital-a");
    let (p0, p1) = (net.pid(0), net.pid(1));
    let basis = AccessBasis::Contract(c);
    let a = access(
        &mut net,
        "hospital-a",
        record_access(p0, "research-1", basis.clone(), &["Condition"]),
    );
    assert_eq!(net.state.access(a).unwrap().unwrap().basis, basis);
    // Patient 1 never consented to research.
    let err = net.refuse(
        &h,
        record_access(p1, "research-1", basis.clone(), &["Condition"]),
    );
    assert_eq!(
        err,
        TxError::NoConsent {
            patient: p1.to_string(),
            purpose: "research".into(),
            level: Level::L3
        }
    );
    // Patient 0 revokes: refused from the revocation's own block on.
    net.next_block();
    let h_before = net.ctx.height - 1;
    let p = net.patient(0);
    net.ok(
        &p,
        Payload::RevokeConsent(RevokeConsent {
            purpose: Purpose::Research,
            study: None,
        }),
    );
    let err = net.refuse(
        &h,
        record_access(p0, "research-1", basis.clone(), &["Condition"]),
    );
    assert!(matches!(err, TxError::NoConsent { .. }), "{err:?}");
    let allows = |net: &Net, height| {
        net.state
            .consent_allows(&p0, Purpose::Research, None, Level::L3, height)
            .unwrap()
    };
    assert!(allows(&net, h_before));
    assert!(!allows(&net, net.ctx.height));
    net.next_block();
    assert!(matches!(
        net.refuse(
            &h,
            record_access(p0, "research-1", basis.clone(), &["Condition"])
        ),
        TxError::NoConsent { .. }
    ));
    // Other contract checks: the recipient must be the contract holder, the holder an owner.
    net.consent(2, Purpose::Research, false);
    let p2 = net.pid(2);
    let err = net.refuse(
        &h,
        record_access(p2, "hospital-b", basis.clone(), &["Condition"]),
    );
    assert!(matches!(err, TxError::OutOfScope { .. }));
    let hc = net.node("hospital-c");
    let err = net.refuse(
        &hc,
        record_access(p2, "research-1", basis.clone(), &["Condition"]),
    );
    assert!(matches!(err, TxError::OutOfScope { .. }));
    // Not under a compute contract, and not under a pending one.
    let compute = net.active(Mode::Compute, &["hospital-a"], Level::L2);
    let err = net.refuse(
        &h,
        record_access(
            p2,
            "research-1",
            AccessBasis::Contract(compute),
            &["Condition"],
        ),
    );
    assert!(matches!(err, TxError::OutOfScope { .. }));
    let pending = net.research(Mode::RecordSharing, &["hospital-a"], Level::L2);
    let err = net.refuse(
        &h,
        record_access(
            p2,
            "research-1",
            AccessBasis::Contract(pending),
            &["Condition"],
        ),
    );
    assert!(matches!(
        err,
        TxError::ContractState {
            status: "pending",
            ..
        }
    ));
    net.ok(&h, record_access(p2, "research-1", basis, &["Condition"]));
}

#[test]
fn l4_record_sharing_needs_the_explicit_opt_in() {
    let mut net = Net::new();
    net.consent(0, Purpose::Research, false);
    net.consent(1, Purpose::Research, true);
    let c = net.active(Mode::RecordSharing, &["hospital-a"], Level::L4);
    let h = net.node("hospital-a");
    let basis = AccessBasis::Contract(c);
    let err = net.refuse(
        &h,
        record_access(net.pid(0), "research-1", basis.clone(), &["Observation"]),
    );
    assert!(matches!(
        err,
        TxError::NoConsent {
            level: Level::L4,
            ..
        }
    ));
    net.ok(
        &h,
        record_access(net.pid(1), "research-1", basis, &["Observation"]),
    );
}

#[test]
fn patient_log_shows_every_access_and_nothing_of_others() {
    let mut net = Net::new();
    let now = net.ctx.time_ms;
    net.consent(0, Purpose::Research, false);
    net.consent(1, Purpose::Research, false);
    let g = issue(
        &mut net,
        0,
        grant("hospital-b", "hospital-a", &["Encounter"], now + DAY_MS, 0),
    );
    let g1 = issue(
        &mut net,
        1,
        grant("hospital-b", "hospital-a", &["Encounter"], now + DAY_MS, 0),
    );
    let c = net.active(Mode::RecordSharing, &["hospital-a"], Level::L2);
    let (p0, p1) = (net.pid(0), net.pid(1));
    let a1 = access(
        &mut net,
        "hospital-a",
        record_access(p0, "hospital-b", AccessBasis::Grant(g), &["Encounter"]),
    );
    let b1 = access(
        &mut net,
        "hospital-a",
        record_access(p1, "hospital-b", AccessBasis::Grant(g1), &["Encounter"]),
    );
    net.next_block();
    let a2 = access(
        &mut net,
        "hospital-a",
        record_access(p0, "research-1", AccessBasis::Contract(c), &["Condition"]),
    );
    let b2 = access(
        &mut net,
        "hospital-a",
        record_access(p1, "research-1", AccessBasis::Contract(c), &["Condition"]),
    );
    // The recipient attests destruction of one copy.
    let r = net.user(RESEARCHER);
    net.ok(
        &r,
        Payload::AttestDestruction(AttestDestruction { access: a2 }),
    );
    let root = net.state.root();
    let log = net.state.patient_log(&p0).unwrap();
    let events: Vec<PatientEvent> = log.iter().map(|e| e.record.event.clone()).collect();
    assert!(matches!(events[0], PatientEvent::Consent(_)));
    assert_eq!(
        events[1..].to_vec(),
        vec![
            PatientEvent::GrantIssued(g),
            PatientEvent::Accessed(a1),
            PatientEvent::Accessed(a2),
            PatientEvent::Destroyed(a2),
        ]
    );
    for e in &log {
        e.verify(&root).unwrap();
    }
    assert!(
        log.windows(2)
            .all(|w| w[0].record.height <= w[1].record.height)
    );
    let accesses: Vec<AccessId> = net
        .state
        .accesses_of(&p0)
        .unwrap()
        .iter()
        .map(|a| a.record.id)
        .collect();
    assert_eq!(accesses, vec![a1, a2]);
    assert!(
        net.state
            .accesses_of(&p0)
            .unwrap()
            .iter()
            .all(|a| a.record.patient == p0)
    );
    let accesses1: Vec<AccessId> = net
        .state
        .accesses_of(&p1)
        .unwrap()
        .iter()
        .map(|a| a.record.id)
        .collect();
    assert_eq!(accesses1, vec![b1, b2]);
    assert!(net.state.accesses_of(&net.pid(2)).unwrap().is_empty());
    assert!(net.state.patient_log(&net.pid(2)).unwrap().is_empty());
    let destroyed = net.state.access(a2).unwrap().unwrap();
    assert_eq!(destroyed.destroyed_height, Some(net.ctx.height));
}

#[test]
fn attest_destruction_only_by_the_recipient_once() {
    let mut net = Net::new();
    let now = net.ctx.time_ms;
    let g = issue(
        &mut net,
        0,
        grant("hospital-b", "hospital-a", &["Encounter"], now + DAY_MS, 0),
    );
    let pid = net.pid(0);
    let a = access(
        &mut net,
        "hospital-a",
        record_access(pid, "hospital-b", AccessBasis::Grant(g), &["Encounter"]),
    );
    let b = access(
        &mut net,
        "hospital-a",
        record_access(pid, "hospital-b", AccessBasis::Grant(g), &["Encounter"]),
    );
    let attest = |a| Payload::AttestDestruction(AttestDestruction { access: a });
    // The holder, a third member, another member's users: not the recipient.
    for k in [
        net.member("hospital-a"),
        net.member("hospital-c"),
        net.user(&steward("hospital-a")),
        net.user(RESEARCHER),
    ] {
        let err = net.refuse(&k, attest(a));
        assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    }
    let err = net.refuse(&net.patient(0), attest(a));
    assert!(matches!(
        err,
        TxError::WrongSigner {
            kind: "attest_destruction",
            ..
        }
    ));
    let hb = net.member("hospital-b");
    let err = net.refuse(&hb, attest(AccessId(77)));
    assert!(matches!(err, TxError::NotFound { what: "access", .. }));
    // The recipient's node key, or one of its users.
    net.ok(&hb, attest(a));
    let err = net.refuse(&hb, attest(a));
    assert!(matches!(err, TxError::Forbidden { .. }));
    let u = net.user(&clinician("hospital-b"));
    assert!(matches!(
        net.refuse(&u, attest(a)),
        TxError::Forbidden { .. }
    ));
    net.ok(&u, attest(b));
    assert!(
        net.state
            .access(b)
            .unwrap()
            .unwrap()
            .destroyed_height
            .is_some()
    );
}

#[test]
fn study_specific_consent_governs_a_study_contract() {
    let mut net = Net::new();
    // Both allow research broadly; patient 1 says no to study-9 in particular.
    net.consent(0, Purpose::Research, false);
    net.consent(1, Purpose::Research, false);
    let p1 = net.patient(1);
    net.ok(
        &p1,
        Payload::SetConsent(SetConsent {
            purpose: Purpose::Research,
            study: Some(StudyId::new("study-9").unwrap()),
            decision: Decision::Deny,
            l4_opt_in: false,
        }),
    );
    let mut req = request(
        Purpose::Research,
        Mode::RecordSharing,
        &["hospital-a"],
        Level::L2,
        net.ctx.time_ms + DAY_MS,
        10,
        0,
    );
    if let Payload::SubmitRequest(s) = &mut req {
        s.study = Some(StudyId::new("study-9").unwrap());
    }
    let c = net.submit(RESEARCHER, req);
    net.approve_all(c);
    assert_eq!(
        net.state.contract(c).unwrap().unwrap().study,
        Some(StudyId::new("study-9").unwrap())
    );
    let h = net.node("hospital-a");
    let basis = AccessBasis::Contract(c);
    net.ok(
        &h,
        record_access(net.pid(0), "research-1", basis.clone(), &["Condition"]),
    );
    let err = net.refuse(
        &h,
        record_access(net.pid(1), "research-1", basis.clone(), &["Condition"]),
    );
    assert!(matches!(err, TxError::NoConsent { .. }), "{err:?}");
    // A contract for another study (or none) follows the broad consent.
    let other = net.active(Mode::RecordSharing, &["hospital-a"], Level::L2);
    net.ok(
        &h,
        record_access(
            net.pid(1),
            "research-1",
            AccessBasis::Contract(other),
            &["Condition"],
        ),
    );
}

#[test]
fn implied_purpose_needs_no_consent_below_l4() {
    let mut net = Net::new();
    // A public-health record-sharing contract of the regulator's auditor.
    let mk = |net: &Net, level| {
        request(
            Purpose::PublicHealth,
            Mode::RecordSharing,
            &["hospital-b"],
            level,
            net.ctx.time_ms + DAY_MS,
            10,
            0,
        )
    };
    let p3 = mk(&net, Level::L3);
    let c3 = net.submit(AUDITOR, p3);
    net.approve_all(c3);
    let p4 = mk(&net, Level::L4);
    let c4 = net.submit(AUDITOR, p4);
    // The auditor cannot approve their own request; another auditor would be needed.
    let rec = net.state.contract(c4).unwrap().unwrap();
    assert!(rec.approvals.iter().any(|a| a.role == Role::Auditor));
    let a = net.user(AUDITOR);
    assert!(matches!(
        net.refuse(&a, approve(c4)),
        TxError::Forbidden { .. }
    ));
    let h = net.node("hospital-b");
    net.ok(
        &h,
        record_access(
            net.pid(2),
            "regulator",
            AccessBasis::Contract(c3),
            &["Condition"],
        ),
    );
    // The patient denies public health explicitly: refused from then on.
    let p = net.patient(2);
    net.ok(
        &p,
        Payload::SetConsent(SetConsent {
            purpose: Purpose::PublicHealth,
            study: None,
            decision: Decision::Deny,
            l4_opt_in: false,
        }),
    );
    let err = net.refuse(
        &h,
        record_access(
            net.pid(2),
            "regulator",
            AccessBasis::Contract(c3),
            &["Condition"],
        ),
    );
    assert!(matches!(err, TxError::NoConsent { .. }));
}
