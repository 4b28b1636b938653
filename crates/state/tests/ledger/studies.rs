//! Studies belong to the institution whose contract named them first; purposes with implied
//! consent are requested only by the roles and kinds of institution the policy allows.

use super::fixture::*;
use medspace_state::TxError;
use medspace_types::*;

fn study(s: &str) -> StudyId {
    StudyId::new(s).unwrap()
}

fn request_for(net: &Net, purpose: Purpose, owners: &[&str], study: Option<&str>) -> Payload {
    let mut p = request(
        purpose,
        Mode::Compute,
        owners,
        Level::L2,
        net.ctx.time_ms + 30 * DAY_MS,
        1_000_000,
        0,
    );
    if let Payload::SubmitRequest(r) = &mut p {
        r.study = study.map(|s| StudyId::new(s).unwrap());
    }
    p
}

#[test]
fn a_study_belongs_to_the_institution_whose_contract_named_it_first() {
    let mut net = Net::new();
    let p = request_for(
        &net,
        Purpose::Research,
        &["hospital-a"],
        Some("diabetes-2026"),
    );
    let c = net.submit(RESEARCHER, p);
    let s = net.state.study(&study("diabetes-2026")).unwrap().unwrap();
    assert_eq!(s.owner, mid("research-1"));
    assert_eq!(s.first_contract, c);
    // Patients consent to that study: another institution cannot name it and inherit them.
    net.consent(0, Purpose::Research, false);
    net.register_user("hospital-b", "hospital-b.researcher", Role::Researcher, 900);
    let k = net.user("hospital-b.researcher");
    let p = request_for(
        &net,
        Purpose::Research,
        &["hospital-a"],
        Some("diabetes-2026"),
    );
    let err = net.refuse(&k, p);
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    // Its own institution may run it again; another study is hospital-b's own.
    let p = request_for(
        &net,
        Purpose::Research,
        &["hospital-b"],
        Some("diabetes-2026"),
    );
    net.submit(RESEARCHER, p);
    let p = request_for(
        &net,
        Purpose::Research,
        &["hospital-a"],
        Some("asthma-2026"),
    );
    net.submit("hospital-b.researcher", p);
    let s = net.state.study(&study("asthma-2026")).unwrap().unwrap();
    assert_eq!(s.owner, mid("hospital-b"));
}

#[test]
fn implied_consent_purposes_are_requested_only_as_the_policy_allows() {
    let mut net = Net::new();
    let refused = |net: &mut Net, who: &str, purpose: Purpose, owners: &[&str]| {
        let k = net.user(who);
        let p = request_for(net, purpose, owners, None);
        net.refuse(&k, p)
    };
    // A research institute's researcher: research, teaching, drug safety only.
    for purpose in [
        Purpose::PublicHealth,
        Purpose::QualityManagement,
        Purpose::Treatment,
        Purpose::InsuranceClaim,
        Purpose::PatientAccess,
    ] {
        let err = refused(&mut net, RESEARCHER, purpose, &["hospital-a"]);
        assert!(
            matches!(
                err,
                TxError::WrongRole {
                    kind: "submit_request",
                    ..
                }
            ),
            "{purpose}: {err:?}"
        );
    }
    for purpose in [Purpose::Research, Purpose::Teaching, Purpose::DrugSafety] {
        let p = request_for(&net, purpose, &["hospital-a"], None);
        net.submit(RESEARCHER, p);
    }
    // The regulator's auditor: public health and quality management.
    for purpose in [Purpose::PublicHealth, Purpose::QualityManagement] {
        let p = request_for(&net, purpose, &["hospital-a", "hospital-b"], None);
        net.submit(AUDITOR, p);
    }
    let err = refused(&mut net, AUDITOR, Purpose::Research, &["hospital-a"]);
    assert!(matches!(err, TxError::WrongRole { .. }), "{err:?}");
    // A hospital's staff: quality management of its own data only.
    let p = request_for(&net, Purpose::QualityManagement, &["hospital-a"], None);
    net.submit(&steward("hospital-a"), p);
    let p = request_for(&net, Purpose::QualityManagement, &["hospital-a"], None);
    net.submit(&clinician("hospital-a"), p);
    let err = refused(
        &mut net,
        &steward("hospital-a"),
        Purpose::QualityManagement,
        &["hospital-a", "hospital-b"],
    );
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    let err = refused(
        &mut net,
        &clinician("hospital-a"),
        Purpose::PublicHealth,
        &["hospital-a"],
    );
    assert!(matches!(err, TxError::WrongRole { .. }), "{err:?}");
    // A public-health agency's researcher may ask for public health.
    let mut net = Net::new_from(Net::genesis_with_members(|g, members, users| {
        let k = Keypair::from_seed(910);
        g.members.push(GenesisMember {
            member: member_desc("agency-1", MemberKind::PublicHealthAgency, &k),
            balance: BALANCE,
        });
        members.insert("agency-1".into(), k);
        let u = Keypair::from_seed(911);
        g.users.push(GenesisUser {
            id: uid("agency-1.researcher"),
            member: mid("agency-1"),
            role: Role::Researcher,
            key: u.public(),
        });
        users.insert("agency-1.researcher".into(), u);
    }));
    let p = request_for(&net, Purpose::PublicHealth, &["hospital-a"], None);
    net.submit("agency-1.researcher", p);
}
