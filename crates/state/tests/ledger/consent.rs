//! Consent: set/revoke per purpose and per study, L4 opt-in, history by height.

use super::fixture::*;
use medspace_state::TxError;
use medspace_state::records::{ConsentState, PatientEvent};
use medspace_types::*;

fn set(purpose: Purpose, study: Option<&str>, decision: Decision, l4: bool) -> Payload {
    Payload::SetConsent(SetConsent {
        purpose,
        study: study.map(|s| StudyId::new(s).unwrap()),
        decision,
        l4_opt_in: l4,
    })
}

fn revoke(purpose: Purpose, study: Option<&str>) -> Payload {
    Payload::RevokeConsent(RevokeConsent {
        purpose,
        study: study.map(|s| StudyId::new(s).unwrap()),
    })
}

#[test]
fn consent_set_and_revoked_with_history() {
    let mut net = Net::new();
    let p = net.patient(0);
    let id = net.pid(0);
    let h1 = net.ctx.height;
    assert!(
        !net.state
            .consent_allows(&id, Purpose::Research, None, Level::L2, h1)
            .unwrap()
    );
    net.ok(&p, set(Purpose::Research, None, Decision::Allow, false));
    assert!(
        net.state
            .consent_allows(&id, Purpose::Research, None, Level::L3, h1)
            .unwrap()
    );
    assert!(
        !net.state
            .consent_allows(&id, Purpose::Research, None, Level::L4, h1)
            .unwrap(),
        "L4 needs the explicit opt-in"
    );
    let consents = net.state.consents_of(&id).unwrap();
    assert_eq!(consents.len(), 1);
    assert_eq!(
        consents[0].record.current().unwrap().state,
        ConsentState::Allow
    );
    net.advance(5_000);
    let h2 = net.ctx.height;
    net.ok(&p, revoke(Purpose::Research, None));
    // A revocation at height h applies to height h and later, not before.
    for (h, allowed) in [(h1, true), (h2 - 1, true), (h2, false), (h2 + 10, false)] {
        assert_eq!(
            net.state
                .consent_allows(&id, Purpose::Research, None, Level::L2, h)
                .unwrap(),
            allowed,
            "height {h}"
        );
    }
    // Other patients are unaffected.
    assert!(net.state.consents_of(&net.pid(1)).unwrap().is_empty());
    // The log shows both changes.
    let log = net.state.patient_log(&id).unwrap();
    let states: Vec<ConsentState> = log
        .iter()
        .filter_map(|e| match &e.record.event {
            PatientEvent::Consent(c) => Some(c.state),
            _ => None,
        })
        .collect();
    assert_eq!(states, vec![ConsentState::Allow, ConsentState::Revoked]);
    // Revoking again is refused: there is nothing in force.
    net.next_block();
    let err = net.refuse(&p, revoke(Purpose::Research, None));
    assert!(
        matches!(
            err,
            TxError::NotFound {
                what: "consent",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn revoking_what_was_never_given_is_refused() {
    let mut net = Net::new();
    let p = net.patient(1);
    let err = net.refuse(&p, revoke(Purpose::Teaching, None));
    assert!(matches!(
        err,
        TxError::NotFound {
            what: "consent",
            ..
        }
    ));
    net.ok(
        &p,
        set(Purpose::Teaching, Some("study-1"), Decision::Allow, false),
    );
    // The broad one was never given.
    let err = net.refuse(&p, revoke(Purpose::Teaching, None));
    assert!(matches!(err, TxError::NotFound { .. }));
    net.ok(&p, revoke(Purpose::Teaching, Some("study-1")));
}

#[test]
fn only_the_patient_sets_consent() {
    let mut net = Net::new();
    for k in [
        net.user(&clinician("hospital-a")),
        net.user(&steward("hospital-a")),
        net.member("hospital-a"),
    ] {
        let err = net.refuse(&k, set(Purpose::Research, None, Decision::Allow, true));
        assert!(
            matches!(
                err,
                TxError::WrongSigner {
                    kind: "set_consent",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = net.refuse(&k, revoke(Purpose::Research, None));
        assert!(matches!(
            err,
            TxError::WrongSigner {
                kind: "revoke_consent",
                ..
            }
        ));
    }
}

#[test]
fn study_consent_overrides_broad_and_l4_needs_opt_in() {
    let mut net = Net::new();
    let p = net.patient(2);
    let id = net.pid(2);
    let study = StudyId::new("study-7").unwrap();
    net.ok(&p, set(Purpose::Research, None, Decision::Allow, true));
    net.ok(
        &p,
        set(Purpose::Research, Some("study-7"), Decision::Deny, false),
    );
    let h = net.ctx.height;
    let allows = |net: &Net, s: Option<&StudyId>, l, h| {
        net.state
            .consent_allows(&id, Purpose::Research, s, l, h)
            .unwrap()
    };
    assert!(allows(&net, None, Level::L4, h), "broad allow with opt-in");
    assert!(!allows(&net, Some(&study), Level::L2, h), "study says no");
    let other = StudyId::new("study-8").unwrap();
    assert!(
        allows(&net, Some(&other), Level::L3, h),
        "other study: broad"
    );
    // The deny for the study is revoked: the broad answer applies again.
    net.next_block();
    net.ok(&p, revoke(Purpose::Research, Some("study-7")));
    assert!(allows(&net, Some(&study), Level::L2, net.ctx.height));
    // An allow without opt-in does not cover L4.
    net.next_block();
    net.ok(&p, set(Purpose::Research, None, Decision::Allow, false));
    assert!(!allows(&net, None, Level::L4, net.ctx.height));
    assert!(
        allows(&net, None, Level::L4, h),
        "history keeps the old answer"
    );
    // A deny with the opt-in flag does not opt in.
    net.next_block();
    net.ok(&p, set(Purpose::Research, None, Decision::Deny, true));
    assert!(!allows(&net, None, Level::L1, net.ctx.height));
    let c = net.state.consents_of(&id).unwrap();
    assert_eq!(c.len(), 2);
    for pc in &c {
        pc.verify(&net.state.root()).unwrap();
    }
}

#[test]
fn implied_purposes_need_no_consent_below_l4() {
    let net = Net::new();
    let id = net.pid(3);
    let h = net.ctx.height;
    let allows = |purpose, level| {
        net.state
            .consent_allows(&id, purpose, None, level, h)
            .unwrap()
    };
    assert!(allows(Purpose::Treatment, Level::L3));
    assert!(allows(Purpose::PublicHealth, Level::L2));
    assert!(!allows(Purpose::Treatment, Level::L4));
    assert!(!allows(Purpose::Research, Level::L1));
    assert!(!allows(Purpose::InsuranceClaim, Level::L2));
}

#[test]
fn a_patient_may_deny_an_implied_purpose() {
    let mut net = Net::new();
    let p = net.patient(3);
    let id = net.pid(3);
    net.ok(&p, set(Purpose::Treatment, None, Decision::Deny, false));
    assert!(
        !net.state
            .consent_allows(&id, Purpose::Treatment, None, Level::L2, net.ctx.height)
            .unwrap()
    );
}

#[test]
fn several_changes_in_one_block_the_last_wins() {
    let mut net = Net::new();
    let p = net.patient(0);
    let id = net.pid(0);
    net.ok(&p, set(Purpose::Research, None, Decision::Allow, false));
    net.ok(&p, revoke(Purpose::Research, None));
    let h = net.ctx.height;
    assert!(
        !net.state
            .consent_allows(&id, Purpose::Research, None, Level::L2, h)
            .unwrap()
    );
    let c = &net.state.consents_of(&id).unwrap()[0];
    assert_eq!(c.record.history.len(), 1);
    // Both changes are in the log.
    assert_eq!(net.state.patient_log(&id).unwrap().len(), 2);
}

/// A consent keeps its last 32 changes; a query for a height older than those must answer
/// "no consent" (records.rs: "queries older than these are answered deny"). For a purpose the
/// policy lists as implied (treatment), `consent_allows` instead falls back to the implied
/// allow, so a patient's explicit deny at that height turns into an allow.
#[test]
fn explicit_deny_is_not_forgotten_when_history_is_trimmed() {
    let mut net = Net::new();
    let p = net.patient(0);
    let id = net.pid(0);
    net.ok(&p, set(Purpose::Treatment, None, Decision::Deny, false));
    let h0 = net.ctx.height;
    let allows = |net: &Net| {
        net.state
            .consent_allows(&id, Purpose::Treatment, None, Level::L2, h0)
            .unwrap()
    };
    assert!(!allows(&net));
    for i in 0..medspace_state::records::CONSENT_HISTORY {
        net.next_block();
        let d = if i % 2 == 0 {
            Decision::Allow
        } else {
            Decision::Deny
        };
        net.ok(&p, set(Purpose::Treatment, None, d, false));
    }
    assert!(
        !allows(&net),
        "the patient denied treatment at height {h0}; trimming history must not turn it into an allow"
    );
}

#[test]
fn consent_history_keeps_the_last_changes() {
    let mut net = Net::new();
    let p = net.patient(1);
    let id = net.pid(1);
    let mut heights = Vec::new();
    for i in 0..40 {
        net.next_block();
        let d = if i % 2 == 0 {
            Decision::Allow
        } else {
            Decision::Deny
        };
        net.ok(&p, set(Purpose::Research, None, d, false));
        heights.push((net.ctx.height, i % 2 == 0));
    }
    let c = &net.state.consents_of(&id).unwrap()[0];
    assert_eq!(
        c.record.history.len(),
        medspace_state::records::CONSENT_HISTORY
    );
    // Recent heights are answered from the history.
    for (h, allowed) in heights.iter().rev().take(30) {
        assert_eq!(
            net.state
                .consent_allows(&id, Purpose::Research, None, Level::L2, *h)
                .unwrap(),
            *allowed,
            "height {h}"
        );
    }
    // Older ones are answered "no" for a purpose that needs consent.
    let (h, allowed) = heights[0];
    assert!(allowed);
    assert!(
        !net.state
            .consent_allows(&id, Purpose::Research, None, Level::L2, h)
            .unwrap()
    );
}

/// A plan's batch of consents (one walk over many patients) answers as each patient's own
/// check: broad and study consents, denials, revocations, L4, unregistered patients, any order,
/// repeats, and heights before and after a change.
#[test]
fn consents_of_many_patients_at_once_equal_each_alone() {
    let mut net = Net::new();
    let study = StudyId::new("t2d-outcomes-2026").unwrap();
    let choices = [
        vec![set(Purpose::Research, None, Decision::Allow, false)],
        vec![set(Purpose::Research, None, Decision::Allow, true)],
        vec![
            set(Purpose::Research, None, Decision::Allow, false),
            set(
                Purpose::Research,
                Some(study.as_str()),
                Decision::Deny,
                false,
            ),
        ],
        vec![set(
            Purpose::Research,
            Some(study.as_str()),
            Decision::Allow,
            false,
        )],
        vec![set(Purpose::Research, None, Decision::Deny, false)],
        vec![],
    ];
    for seed in net.patients.len()..choices.len() * 2 {
        net.register_patient(seed as u64 + 500);
    }
    net.next_block();
    for i in 0..choices.len() * 2 {
        let p = net.patient(i);
        for payload in &choices[i % choices.len()] {
            net.ok(&p, payload.clone());
        }
    }
    let before = net.ctx.height;
    net.advance(5_000);
    net.ok(&net.patient(0), revoke(Purpose::Research, None));
    let after = net.ctx.height;
    let mut asked: Vec<PatientId> = (0..choices.len() * 2).rev().map(|i| net.pid(i)).collect();
    asked.push(net.pid(3));
    asked.push(PatientId::from_key(&Keypair::from_seed(999).public()));
    for study in [None, Some(&study)] {
        for level in [Level::L2, Level::L4] {
            for h in [before, after] {
                let together = net
                    .state
                    .consents_allow(
                        asked.iter(),
                        Purpose::Research,
                        study,
                        level,
                        h,
                        medspace_state::CONSENT_BATCH,
                    )
                    .unwrap();
                let alone: Vec<bool> = asked
                    .iter()
                    .map(|p| {
                        net.state
                            .consent_allows(p, Purpose::Research, study, level, h)
                            .unwrap()
                    })
                    .collect();
                assert_eq!(together, alone, "study {study:?}, {level:?}, height {h}");
                for batch in [0, 1, 2, 5] {
                    let batched = net
                        .state
                        .consents_allow(asked.iter(), Purpose::Research, study, level, h, batch)
                        .unwrap();
                    assert_eq!(batched, alone, "batches of {batch}");
                }
                assert!(together.iter().any(|a| *a) && together.iter().any(|a| !*a));
            }
        }
    }
}
