//! Patient grants: issue and revoke.

use super::fixture::*;
use medspace_state::records::PatientEvent;
use medspace_state::{Created, TxError};
use medspace_types::*;

pub fn issue(net: &mut Net, patient: usize, g: IssueGrant) -> GrantId {
    let k = net.patient(patient);
    match net.ok(&k, Payload::IssueGrant(g)).created {
        Some(Created::Grant(id)) => id,
        other => panic!("no grant: {other:?}"),
    }
}

#[test]
fn patient_issues_and_revokes_a_grant() {
    let mut net = Net::new();
    let expiry = net.ctx.time_ms + DAY_MS;
    let mut terms = grant(
        "hospital-b",
        "hospital-a",
        &["Encounter", "Observation"],
        expiry,
        2,
    );
    terms.code_hash = code_hash(&net.pid(0), "ABCD-EFGH-JKLM-NPQR");
    let g = issue(&mut net, 0, terms.clone());
    let rec = net.state.grant(g).unwrap().unwrap();
    assert_eq!(rec.patient, net.pid(0));
    assert_eq!(rec.terms, terms);
    assert_eq!(rec.uses, 0);
    assert!(!rec.revoked);
    assert_eq!(rec.issued_height, net.ctx.height);
    let mine = net.state.grants_of(&net.pid(0)).unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].record.id, g);
    mine[0].verify(&net.state.root()).unwrap();
    assert!(net.state.grants_of(&net.pid(1)).unwrap().is_empty());
    // Another patient cannot revoke it.
    let other = net.patient(1);
    let err = net.refuse(&other, Payload::RevokeGrant(RevokeGrant { grant: g }));
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    // Nor can the holder or the grantee.
    for k in [net.member("hospital-a"), net.user(&clinician("hospital-b"))] {
        let err = net.refuse(&k, Payload::RevokeGrant(RevokeGrant { grant: g }));
        assert!(matches!(
            err,
            TxError::WrongSigner {
                kind: "revoke_grant",
                ..
            }
        ));
    }
    let p = net.patient(0);
    net.ok(&p, Payload::RevokeGrant(RevokeGrant { grant: g }));
    assert!(net.state.grant(g).unwrap().unwrap().revoked);
    let err = net.refuse(&p, Payload::RevokeGrant(RevokeGrant { grant: g }));
    assert!(matches!(err, TxError::Forbidden { .. }));
    let err = net.refuse(&p, Payload::RevokeGrant(RevokeGrant { grant: GrantId(3) }));
    assert!(matches!(err, TxError::NotFound { what: "grant", .. }));
    let events: Vec<PatientEvent> = net
        .state
        .patient_log(&net.pid(0))
        .unwrap()
        .into_iter()
        .map(|e| e.record.event)
        .collect();
    assert_eq!(
        events,
        vec![PatientEvent::GrantIssued(g), PatientEvent::GrantRevoked(g)]
    );
    // grants_of still lists the revoked grant, marked revoked.
    let mine = net.state.grants_of(&net.pid(0)).unwrap();
    assert!(mine[0].record.revoked);
}

#[test]
fn issue_grant_refusals() {
    let mut net = Net::new();
    let p = net.patient(0);
    let now = net.ctx.time_ms;
    let good = grant("hospital-b", "hospital-a", &["Encounter"], now + DAY_MS, 1);
    // Only patients issue grants.
    for k in [net.user(&clinician("hospital-b")), net.member("hospital-a")] {
        let err = net.refuse(&k, Payload::IssueGrant(good.clone()));
        assert!(matches!(
            err,
            TxError::WrongSigner {
                kind: "issue_grant",
                ..
            }
        ));
    }
    let mut g = good.clone();
    g.grantee = mid("nobody");
    assert!(matches!(
        net.refuse(&p, Payload::IssueGrant(g)),
        TxError::NotMember { .. }
    ));
    let mut g = good.clone();
    g.holder = mid("nobody");
    assert!(matches!(
        net.refuse(&p, Payload::IssueGrant(g)),
        TxError::NotMember { .. }
    ));
    let mut g = good.clone();
    g.grantee = mid("hospital-a");
    let err = net.refuse(&p, Payload::IssueGrant(g));
    assert!(matches!(
        err,
        TxError::Invalid {
            field: "grantee",
            ..
        }
    ));
    for e in [now - 1, now] {
        let mut g = good.clone();
        g.expiry_ms = e;
        let err = net.refuse(&p, Payload::IssueGrant(g));
        assert!(matches!(err, TxError::Expired { what: "grant", .. }));
    }
    let mut g = good.clone();
    g.period_from_ms = g.period_to_ms + 1;
    let err = net.refuse(&p, Payload::IssueGrant(g));
    assert!(matches!(
        err,
        TxError::Invalid {
            field: "period",
            ..
        }
    ));
    let mut g = good.clone();
    g.resource_types = List::default();
    let err = net.refuse(&p, Payload::IssueGrant(g));
    assert!(matches!(
        err,
        TxError::Invalid {
            field: "resource_types",
            ..
        }
    ));
    for bad in ["encounter", "Encounter/1", "", "Obs ervation"] {
        let mut g = good.clone();
        g.resource_types = list(vec![text(bad)]);
        let err = net.refuse(&p, Payload::IssueGrant(g));
        assert!(
            matches!(
                err,
                TxError::Invalid {
                    field: "resource_types",
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
    }
    // An unregistered key (not yet a patient).
    let stranger = Keypair::from_seed(8_888);
    let err = net.refuse(&stranger, Payload::IssueGrant(good.clone()));
    assert!(matches!(err, TxError::UnknownSigner { .. }));
    issue(&mut net, 0, good);
}
