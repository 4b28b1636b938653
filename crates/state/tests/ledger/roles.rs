//! Consortium roles are appointed by governance: no member mints the reviewers of its own
//! requests, and no user of a requesting institution fills a consortium slot of its request.

use super::fixture::*;
use medspace_state::TxError;
use medspace_state::records::ContractStatus;
use medspace_types::*;

fn register(id: &str, role: Role, seed: u64) -> Payload {
    Payload::RegisterUser(RegisterUser {
        user: uid(id),
        role,
        key: Keypair::from_seed(seed).public(),
    })
}

fn appoint(id: &str, member: &str, role: Role, key: &Keypair) -> Payload {
    Payload::AppointUser(AppointUser {
        user: uid(id),
        member: mid(member),
        role,
        key: key.public(),
    })
}

#[test]
fn members_cannot_register_consortium_roles() {
    let mut net = Net::new();
    let cases = [
        ("hospital-a", Role::DataCommittee),
        ("hospital-a", Role::EthicsCommittee),
        ("hospital-a", Role::Auditor),
        ("research-1", Role::DataCommittee),
        ("research-1", Role::EthicsCommittee),
        ("research-1", Role::Auditor),
        ("regulator", Role::DataCommittee),
        ("regulator", Role::EthicsCommittee),
    ];
    for (i, (m, role)) in cases.into_iter().enumerate() {
        let k = net.member(m);
        let err = net.refuse(
            &k,
            register(&format!("{m}.minted{i}"), role, 800 + i as u64),
        );
        assert!(
            matches!(err, TxError::Forbidden { .. }),
            "{m} {role}: {err:?}"
        );
    }
    // Institutional roles: by the member's own key, as before.
    for (i, role) in [
        Role::Steward,
        Role::Researcher,
        Role::Clinician,
        Role::ClaimsOfficer,
    ]
    .into_iter()
    .enumerate()
    {
        net.register_user(
            "research-1",
            &format!("research-1.staff{i}"),
            role,
            820 + i as u64,
        );
    }
}

#[test]
fn a_member_cannot_review_its_own_request_with_committees_it_holds() {
    // Even committee members an institution holds from genesis cannot review its requests.
    let mut net = Net::new_with(|g, users| {
        for (id, role, seed) in [
            ("research-1.dc", Role::DataCommittee, 830),
            ("research-1.ec", Role::EthicsCommittee, 831),
        ] {
            let k = Keypair::from_seed(seed);
            g.users.push(GenesisUser {
                id: uid(id),
                member: mid("research-1"),
                role,
                key: k.public(),
            });
            users.insert(id.into(), k);
        }
    });
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L3);
    for own in ["research-1.dc", "research-1.ec"] {
        let k = net.user(own);
        let err = net.refuse(&k, approve(c));
        assert!(matches!(err, TxError::WrongRole { .. }), "{own}: {err:?}");
        let err = net.refuse(
            &k,
            Payload::Reject(Reject {
                contract: c,
                reason: text("mine"),
            }),
        );
        assert!(matches!(err, TxError::WrongRole { .. }), "{own}: {err:?}");
        let waiting = net
            .state
            .approvals_waiting_for(&uid(own), net.ctx.time_ms)
            .unwrap();
        assert!(waiting.is_empty(), "{own} is offered its own request");
    }
    // Other institutions' committees do.
    net.approve_all(c);
}

#[test]
fn no_user_of_the_requesting_hospital_fills_a_consortium_slot() {
    let mut net = Net::new();
    net.register_user("hospital-a", "hospital-a.researcher", Role::Researcher, 840);
    let p = request(
        Purpose::Research,
        Mode::Compute,
        &["hospital-a", "hospital-b"],
        Level::L3,
        net.ctx.time_ms + 30 * DAY_MS,
        1_000_000,
        1_000,
    );
    let c = net.submit("hospital-a.researcher", p);
    for own in [dc("hospital-a"), ec("hospital-a")] {
        let k = net.user(&own);
        let err = net.refuse(&k, approve(c));
        assert!(matches!(err, TxError::WrongRole { .. }), "{own}: {err:?}");
    }
    // The hospital's own steward approves the use of its own data: that is normal.
    let k = net.user(&steward("hospital-a"));
    net.ok(&k, approve(c));
    for other in [dc("hospital-b"), ec("hospital-c"), steward("hospital-b")] {
        let k = net.user(&other);
        net.ok(&k, approve(c));
    }
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.status, ContractStatus::Active);
    assert!(
        rec.approvals
            .iter()
            .filter(|a| a.member.is_none())
            .all(|a| !a.by.as_ref().unwrap().as_str().starts_with("hospital-a."))
    );
}

#[test]
fn a_regulator_registers_its_own_auditors() {
    let mut net = Net::new();
    let auditor = net.register_user("regulator", "regulator.auditor2", Role::Auditor, 850);
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L4);
    for u in [steward("hospital-a"), dc("hospital-b"), ec("hospital-c")] {
        let k = net.user(&u);
        net.ok(&k, approve(c));
    }
    net.ok(&auditor, approve(c));
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.status, ContractStatus::Active);
}

#[test]
fn committee_members_are_appointed_by_a_vote() {
    let mut net = Net::new();
    let key = Keypair::from_seed(860);
    let k = net.member("hospital-a");
    let r = net.ok(
        &k,
        appoint("hospital-c.ec2", "hospital-c", Role::EthicsCommittee, &key),
    );
    assert!(r.created.is_some());
    // Proposed is not appointed: the key is nobody's yet.
    assert!(net.state.user(&uid("hospital-c.ec2")).unwrap().is_none());
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L3);
    let err = net.refuse(&key, approve(c));
    assert!(matches!(err, TxError::UnknownSigner { .. }), "{err:?}");
    net.pass(
        "hospital-b",
        appoint("hospital-c.ec3", "hospital-c", Role::EthicsCommittee, &key),
    );
    let u = net.state.user(&uid("hospital-c.ec3")).unwrap().unwrap();
    assert_eq!(
        (u.role, u.member.as_str()),
        (Role::EthicsCommittee, "hospital-c")
    );
    net.ok(&key, approve(c));
    let rec = net.state.contract(c).unwrap().unwrap();
    let slot = rec
        .approvals
        .iter()
        .find(|a| a.role == Role::EthicsCommittee)
        .unwrap();
    assert_eq!(slot.by, Some(uid("hospital-c.ec3")));
    // The regulator's auditors can be appointed too.
    let auditor = Keypair::from_seed(861);
    net.pass(
        "hospital-a",
        appoint("regulator.auditor3", "regulator", Role::Auditor, &auditor),
    );
    assert!(
        net.state
            .user(&uid("regulator.auditor3"))
            .unwrap()
            .is_some()
    );
}

#[test]
fn appointments_are_validated_when_proposed() {
    let mut net = Net::new();
    let k = net.member("hospital-a");
    let fresh = Keypair::from_seed(870);
    // An institutional role is the member's own business.
    let err = net.refuse(
        &k,
        appoint("hospital-b.x", "hospital-b", Role::Steward, &fresh),
    );
    assert!(
        matches!(err, TxError::Invalid { field: "role", .. }),
        "{err:?}"
    );
    // Auditors are the regulator's.
    let err = net.refuse(
        &k,
        appoint("hospital-b.x", "hospital-b", Role::Auditor, &fresh),
    );
    assert!(
        matches!(err, TxError::Invalid { field: "role", .. }),
        "{err:?}"
    );
    // An unknown member, a taken id, a taken key.
    let err = net.refuse(
        &k,
        appoint("nowhere.x", "nowhere", Role::DataCommittee, &fresh),
    );
    assert!(matches!(err, TxError::NotMember { .. }), "{err:?}");
    let err = net.refuse(
        &k,
        appoint(&dc("hospital-b"), "hospital-b", Role::DataCommittee, &fresh),
    );
    assert!(
        matches!(err, TxError::AlreadyExists { what: "user", .. }),
        "{err:?}"
    );
    let taken = net.user(RESEARCHER);
    let err = net.refuse(
        &k,
        appoint("hospital-b.x", "hospital-b", Role::DataCommittee, &taken),
    );
    assert!(
        matches!(err, TxError::Invalid { field: "key", .. }),
        "{err:?}"
    );
    // Only a member proposes.
    for k in [net.user(&dc("hospital-a")), net.patient(0)] {
        let err = net.refuse(
            &k,
            appoint("hospital-b.x", "hospital-b", Role::DataCommittee, &fresh),
        );
        assert!(matches!(err, TxError::WrongSigner { .. }), "{err:?}");
    }
}

#[test]
fn a_dismissed_user_can_no_longer_sign() {
    let mut net = Net::new();
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L3);
    let dismissed = net.user(&dc("hospital-b"));
    net.pass(
        "hospital-a",
        Payload::DismissUser(DismissUser {
            user: uid(&dc("hospital-b")),
        }),
    );
    let err = net.refuse(&dismissed, approve(c));
    assert!(matches!(err, TxError::RetiredKey { .. }), "{err:?}");
    // Once is enough; an unknown user cannot be dismissed.
    let k = net.member("hospital-a");
    let err = net.refuse(
        &k,
        Payload::DismissUser(DismissUser {
            user: uid(&dc("hospital-b")),
        }),
    );
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    let err = net.refuse(
        &k,
        Payload::DismissUser(DismissUser {
            user: uid("nobody.x"),
        }),
    );
    assert!(
        matches!(err, TxError::NotFound { what: "user", .. }),
        "{err:?}"
    );
}

#[test]
fn only_a_reviewer_who_could_approve_rejects_and_always_says_why() {
    let mut net = Net::new();
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L3);
    let reject = |reason: &str| {
        Payload::Reject(Reject {
            contract: c,
            reason: text(reason),
        })
    };
    for who in [
        clinician("hospital-a"),
        steward("hospital-b"),
        AUDITOR.to_string(),
        RESEARCHER.to_string(),
    ] {
        let k = net.user(&who);
        let err = net.refuse(&k, reject("no"));
        assert!(
            matches!(err, TxError::WrongRole { .. } | TxError::Forbidden { .. }),
            "{who}: {err:?}"
        );
    }
    let k = net.user(&dc("hospital-b"));
    for empty in ["", "   "] {
        let err = net.refuse(&k, reject(empty));
        assert!(
            matches!(
                err,
                TxError::Invalid {
                    field: "reason",
                    ..
                }
            ),
            "{err:?}"
        );
    }
    net.ok(&k, reject("the cohort could identify patients"));
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.status, ContractStatus::Rejected);
    assert_eq!(
        rec.closing_reason.as_str(),
        "the cohort could identify patients"
    );
}
