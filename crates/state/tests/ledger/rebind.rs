//! A patient who lost their key is re-bound to a new one through the hospital that registered
//! them: asked by its steward, vetoable by the current key during the policy's delay, completed
//! by the new key. Every other way in is tried and refused with nothing changed.

use super::fixture::*;
use medspace_state::TxError;
use medspace_state::records::{PatientEvent, RebindEvent};
use medspace_types::*;

const DAY: u64 = 24 * 3600 * 1000;

fn rebind(net: &Net, patient: PatientId, new_key: &Keypair, via: &str) -> Payload {
    Payload::RebindPatient(RebindPatient {
        patient,
        new_key: new_key.public(),
        proof: RebindPatient::claim(&net.chain, &mid(via), new_key),
    })
}

/// Whether `e` refuses the field `field` as invalid.
fn invalid(e: &TxError, field: &str) -> bool {
    matches!(e, TxError::Invalid { field: f, .. } if *f == field)
}

fn events(net: &Net, patient: &PatientId) -> Vec<PatientEvent> {
    net.state
        .patient_log(patient)
        .unwrap()
        .into_iter()
        .map(|e| e.record.event)
        .collect()
}

#[test]
fn a_lost_key_is_rebound_through_its_hospital_and_the_history_stays() {
    let mut net = Net::new();
    let (old, pid) = (net.patient(0), net.pid(0));
    net.consent(0, Purpose::Research, false);
    net.next_block();
    let before = events(&net, &pid);
    assert!(!before.is_empty());
    let new = Keypair::from_seed(7_001);
    let steward = net.user(&steward("hospital-a"));
    let asked_at = net.ctx.time_ms;
    net.ok(&steward, rebind(&net, pid, &new, "hospital-a"));
    let pending = net.state.rebind_of(&new.public()).unwrap().unwrap();
    assert_eq!(pending.patient, pid);
    assert_eq!(
        pending.effective_ms,
        asked_at + Policy::default().rebind_delay_ms
    );
    // Until it completes the old key still signs for the patient.
    net.next_block();
    net.ok(
        &old,
        Payload::SetConsent(SetConsent {
            purpose: Purpose::Teaching,
            study: None,
            decision: Decision::Allow,
            l4_opt_in: false,
        }),
    );
    net.advance(3 * DAY);
    let r = net.ok(
        &new,
        Payload::CompleteRebind(CompleteRebind { patient: pid }),
    );
    assert_eq!(r.kind, "complete_rebind");
    // The same pseudonym, its whole log kept, the re-binding in it.
    let after = events(&net, &pid);
    assert_eq!(&after[..before.len()], &before[..]);
    let asked = RebindEvent {
        hospital: mid("hospital-a"),
        new_key: new.public(),
        effective_ms: pending.effective_ms,
    };
    assert_eq!(
        &after[before.len()..],
        &[
            PatientEvent::RebindAsked(asked.clone()),
            after[before.len() + 1].clone(),
            PatientEvent::Rebound(asked),
        ]
    );
    assert_eq!(net.state.patient(&pid).unwrap().unwrap().key, new.public());
    assert!(net.state.rebind_of(&new.public()).unwrap().is_none());
    // The old key is retired; the new one signs for the same patient.
    let e = net.refuse(
        &old,
        Payload::RevokeConsent(RevokeConsent {
            purpose: Purpose::Research,
            study: None,
        }),
    );
    assert!(matches!(e, TxError::RetiredKey { .. }), "{e}");
    net.ok(
        &new,
        Payload::RevokeConsent(RevokeConsent {
            purpose: Purpose::Research,
            study: None,
        }),
    );
    // And the new key is never taken over again by the same claim.
    let e = net.refuse(&steward, rebind(&net, pid, &new, "hospital-a"));
    assert!(invalid(&e, "new_key"), "{e}");
}

#[test]
fn only_the_registering_hospitals_steward_asks_with_the_new_keys_own_claim() {
    let mut net = Net::new();
    let pid = net.pid(0);
    let new = Keypair::from_seed(7_002);
    let chain = net.chain.clone();
    let wrong_signers = [
        (
            "another hospital's steward",
            net.user(&steward("hospital-b")),
        ),
        ("the hospital's data committee", net.user(&dc("hospital-a"))),
        (
            "the hospital's clinician",
            net.user(&clinician("hospital-a")),
        ),
        ("the hospital's member key", net.member("hospital-a")),
        ("the hospital's node key", net.node("hospital-a")),
        ("the patient", net.patient(0)),
        ("a researcher", net.user(RESEARCHER)),
    ];
    for (who, key) in wrong_signers {
        let e = net.refuse(&key, rebind(&net, pid, &new, "hospital-a"));
        assert!(
            matches!(e, TxError::WrongSigner { .. } | TxError::Forbidden { .. }),
            "{who}: {e}"
        );
    }
    let steward = net.user(&steward("hospital-a"));
    let other = Keypair::from_seed(7_003);
    let claim = |key: &Keypair, proof: Signature| {
        Payload::RebindPatient(RebindPatient {
            patient: pid,
            new_key: key.public(),
            proof,
        })
    };
    let bad_claims = [
        (
            "a claim made for another hospital",
            claim(&new, RebindPatient::claim(&chain, &mid("hospital-b"), &new)),
        ),
        (
            "a claim made on another chain",
            claim(
                &new,
                RebindPatient::claim(&name("other-chain"), &mid("hospital-a"), &new),
            ),
        ),
        (
            "another key's claim",
            claim(
                &new,
                RebindPatient::claim(&chain, &mid("hospital-a"), &other),
            ),
        ),
    ];
    for (what, p) in bad_claims {
        let e = net.refuse(&steward, p);
        assert!(invalid(&e, "proof"), "{what}: {e}");
    }
    // A key already registered (another patient's) cannot be taken over.
    let taken = net.patient(1);
    let e = net.refuse(&steward, rebind(&net, pid, &taken, "hospital-a"));
    assert!(invalid(&e, "new_key"), "{e}");
    // An unknown pseudonym.
    let nobody = PatientId::from_key(&Keypair::from_seed(7_004).public());
    let e = net.refuse(&steward, rebind(&net, nobody, &new, "hospital-a"));
    assert!(matches!(e, TxError::NotFound { .. }), "{e}");
    // One pending re-binding per patient, one patient per new key.
    net.ok(&steward, rebind(&net, pid, &new, "hospital-a"));
    let e = net.refuse(&steward, rebind(&net, pid, &other, "hospital-a"));
    assert!(matches!(e, TxError::Forbidden { .. }), "{e}");
    let e = net.refuse(&steward, rebind(&net, net.pid(1), &new, "hospital-a"));
    assert!(invalid(&e, "new_key"), "{e}");
    // Nor can the waiting key register as a patient of its own, or be rotated to.
    let e = net.refuse(&new, net.registration(&new.public(), "hospital-b"));
    assert!(invalid(&e, "key"), "{e}");
    let p2 = net.patient(2);
    let rotate = Payload::RotateKey(RotateKey {
        new_key: new.public(),
        proof: new.sign(
            ROTATE_NAMESPACE,
            &rotation_message(&chain, &p2.public(), net.nonce(&p2)),
        ),
    });
    let e = net.refuse(&p2, rotate);
    assert!(invalid(&e, "new_key"), "{e}");
}

#[test]
fn completion_waits_out_the_delay_is_the_new_keys_alone_and_a_veto_ends_it() {
    let mut net = Net::new();
    let (old, pid) = (net.patient(0), net.pid(0));
    let new = Keypair::from_seed(7_005);
    let intruder = Keypair::from_seed(7_006);
    let asking = net.user(&steward("hospital-a"));
    net.ok(&asking, rebind(&net, pid, &new, "hospital-a"));
    let complete = Payload::CompleteRebind(CompleteRebind { patient: pid });
    // Too early.
    net.advance(3 * DAY - 2_000);
    let e = net.refuse(&new, complete.clone());
    assert!(matches!(e, TxError::Forbidden { .. }), "{e}");
    // Not the new key: the mempool does not even admit an unknown key's completion.
    net.advance(DAY);
    let tx = net.tx(&intruder, complete.clone());
    assert!(matches!(
        net.state.check_tx(&tx),
        Err(TxError::UnknownSigner { .. })
    ));
    let e = net.refuse_tx(&tx);
    assert!(matches!(e, TxError::WrongSigner { .. }), "{e}");
    for (who, key) in [
        ("the old key", old.clone()),
        ("the steward", asking.clone()),
    ] {
        let e = net.refuse(&key, complete.clone());
        assert!(matches!(e, TxError::WrongSigner { .. }), "{who}: {e}");
    }
    // A veto by anyone but the patient or the asking hospital is refused.
    let cancel = Payload::CancelRebind(CancelRebind { patient: pid });
    for (who, key) in [
        ("another patient", net.patient(1)),
        (
            "another hospital's steward",
            net.user(&steward("hospital-b")),
        ),
        ("the new key", new.clone()),
    ] {
        let e = net.refuse(&key, cancel.clone());
        assert!(
            matches!(
                e,
                TxError::WrongSigner { .. } | TxError::UnknownSigner { .. }
            ),
            "{who}: {e}"
        );
    }
    // The patient's current key vetoes; the completion then finds nothing.
    net.ok(&old, cancel.clone());
    assert!(matches!(
        events(&net, &pid).last(),
        Some(PatientEvent::RebindCancelled(_))
    ));
    let e = net.refuse(&new, complete.clone());
    assert!(
        matches!(e, TxError::UnknownSigner { .. } | TxError::NotFound { .. }),
        "{e}"
    );
    assert_eq!(net.state.patient(&pid).unwrap().unwrap().key, old.public());
    // The hospital may withdraw its own request too, and ask again later.
    net.ok(&asking, rebind(&net, pid, &new, "hospital-a"));
    net.ok(&asking, cancel.clone());
    let e = net.refuse(&old, cancel);
    assert!(matches!(e, TxError::NotFound { .. }), "{e}");
}
