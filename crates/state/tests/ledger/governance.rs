//! Governance: proposals and 2/3 votes (add/remove member, policy), user registration.

use super::fixture::*;
use medspace_state::records::ProposalStatus;
use medspace_state::{Created, Event, TxError};
use medspace_types::*;

fn propose(net: &mut Net, by: &str, payload: Payload) -> ProposalId {
    let k = net.member(by);
    match net.ok(&k, payload).created {
        Some(Created::Proposal(p)) => p,
        other => panic!("no proposal: {other:?}"),
    }
}

fn vote(net: &mut Net, by: &str, proposal: ProposalId, yes: bool) -> Vec<Event> {
    let k = net.member(by);
    net.ok(
        &k,
        Payload::Vote(Vote {
            proposal,
            approve: yes,
        }),
    )
    .events
}

fn add_member_payload(id: &str, seed: u64, balance: u64) -> Payload {
    Payload::AddMember(AddMember {
        member: member_desc(id, MemberKind::Insurer, &Keypair::from_seed(seed)),
        initial_balance: balance,
    })
}

/// With 5 members and the 2/3 policy a proposal needs `yes * 3 >= 5 * 2`, i.e. 4 yes votes.
#[test]
fn add_member_needs_two_thirds() {
    let mut net = Net::new();
    let policy = net.state.policy().unwrap();
    assert_eq!((policy.vote_num, policy.vote_den), (2, 3));
    let credits = net.state.total_credits().unwrap();
    let p = propose(
        &mut net,
        "hospital-a",
        add_member_payload("insurer-1", 50, 5_000),
    );
    let status = |net: &Net| net.state.proposal(p).unwrap().unwrap().status;
    assert_eq!(status(&net), ProposalStatus::Open);
    assert!(vote(&mut net, "hospital-b", p, true).is_empty());
    // 3 of 5: 9 < 10, short of 2/3.
    assert!(vote(&mut net, "hospital-c", p, true).is_empty());
    assert_eq!(status(&net), ProposalStatus::Open);
    assert!(net.state.member(&mid("insurer-1")).unwrap().is_none());
    // The new member's key cannot sign yet.
    let newcomer = Keypair::from_seed(50);
    let err = net.refuse(
        &newcomer,
        Payload::Vote(Vote {
            proposal: p,
            approve: true,
        }),
    );
    assert!(matches!(err, TxError::UnknownSigner { .. }));
    // The 4th yes passes it.
    let events = vote(&mut net, "research-1", p, true);
    assert_eq!(events, vec![Event::ProposalPassed(p)]);
    assert_eq!(status(&net), ProposalStatus::Passed);
    let m = net.state.member(&mid("insurer-1")).unwrap().unwrap();
    assert!(m.active);
    assert_eq!(m.member.kind, MemberKind::Insurer);
    assert_eq!(m.joined_height, net.ctx.height);
    assert_eq!(net.state.balance(&mid("insurer-1")).unwrap(), 5_000);
    assert_eq!(net.state.total_credits().unwrap(), credits + 5_000);
    // Voting on a passed proposal is refused.
    let k = net.member("regulator");
    let err = net.refuse(
        &k,
        Payload::Vote(Vote {
            proposal: p,
            approve: true,
        }),
    );
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    // The new member signs with its key: it registers a user.
    net.members.insert("insurer-1".into(), newcomer.clone());
    net.ok(
        &newcomer,
        Payload::RegisterUser(RegisterUser {
            user: uid("insurer-1.claims"),
            role: Role::ClaimsOfficer,
            key: Keypair::from_seed(51).public(),
        }),
    );
    // Now 6 members: 2/3 means yes * 3 >= 12, i.e. 4 yes; 3 is short.
    let p2 = propose(
        &mut net,
        "insurer-1",
        add_member_payload("insurer-2", 52, 0),
    );
    vote(&mut net, "hospital-a", p2, true);
    assert!(vote(&mut net, "hospital-b", p2, true).is_empty());
    assert_eq!(
        net.state.proposal(p2).unwrap().unwrap().status,
        ProposalStatus::Open
    );
    assert_eq!(
        vote(&mut net, "hospital-c", p2, true),
        vec![Event::ProposalPassed(p2)]
    );
}

#[test]
fn proposal_fails_when_it_can_no_longer_pass() {
    let mut net = Net::new();
    let p = propose(
        &mut net,
        "hospital-a",
        add_member_payload("insurer-1", 50, 0),
    );
    // One no: 4 may still say yes.
    assert!(vote(&mut net, "hospital-b", p, false).is_empty());
    // Two no: at most 3 yes of 5, short of 2/3.
    assert_eq!(
        vote(&mut net, "hospital-c", p, false),
        vec![Event::ProposalFailed(p)]
    );
    let rec = net.state.proposal(p).unwrap().unwrap();
    assert_eq!(rec.status, ProposalStatus::Failed);
    assert!(net.state.member(&mid("insurer-1")).unwrap().is_none());
    let k = net.member("research-1");
    let err = net.refuse(
        &k,
        Payload::Vote(Vote {
            proposal: p,
            approve: true,
        }),
    );
    assert!(matches!(err, TxError::Forbidden { .. }));
}

#[test]
fn vote_refusals() {
    let mut net = Net::new();
    let p = propose(
        &mut net,
        "hospital-a",
        add_member_payload("insurer-1", 50, 0),
    );
    let v = |yes| {
        Payload::Vote(Vote {
            proposal: p,
            approve: yes,
        })
    };
    // The proposer already voted yes.
    let k = net.member("hospital-a");
    assert!(matches!(net.refuse(&k, v(true)), TxError::Forbidden { .. }));
    vote(&mut net, "hospital-b", p, true);
    let k = net.member("hospital-b");
    assert!(matches!(
        net.refuse(&k, v(false)),
        TxError::Forbidden { .. }
    ));
    // Users vote through their institution, never themselves.
    let u = net.user(&steward("hospital-c"));
    let err = net.refuse(&u, v(true));
    assert!(
        matches!(err, TxError::WrongSigner { kind: "vote", .. }),
        "{err:?}"
    );
    let pt = net.patient(0);
    assert!(matches!(
        net.refuse(&pt, v(true)),
        TxError::WrongSigner { .. }
    ));
    // Unknown proposal.
    let k = net.member("hospital-c");
    let err = net.refuse(
        &k,
        Payload::Vote(Vote {
            proposal: ProposalId(42),
            approve: true,
        }),
    );
    assert!(matches!(
        err,
        TxError::NotFound {
            what: "proposal",
            ..
        }
    ));
    // After the proposal's lifetime.
    let ttl = net.state.policy().unwrap().proposal_ttl_ms;
    net.advance(ttl);
    let err = net.refuse(&k, v(true));
    assert!(
        matches!(
            err,
            TxError::Expired {
                what: "proposal",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn proposals_are_validated() {
    let mut net = Net::new();
    // Only member keys propose.
    let u = net.user(&steward("hospital-a"));
    let err = net.refuse(&u, add_member_payload("insurer-1", 50, 0));
    assert!(matches!(
        err,
        TxError::WrongSigner {
            kind: "add_member",
            ..
        }
    ));
    let err = net.refuse(
        &u,
        Payload::RemoveMember(RemoveMember {
            member: mid("hospital-c"),
        }),
    );
    assert!(matches!(
        err,
        TxError::WrongSigner {
            kind: "remove_member",
            ..
        }
    ));
    let err = net.refuse(
        &u,
        Payload::UpdatePolicy(UpdatePolicy {
            policy: Policy::default(),
        }),
    );
    assert!(matches!(
        err,
        TxError::WrongSigner {
            kind: "update_policy",
            ..
        }
    ));
    let k = net.member("hospital-a");
    // An existing member id.
    let err = net.refuse(&k, add_member_payload("hospital-b", 50, 0));
    assert!(matches!(err, TxError::AlreadyExists { what: "member", .. }));
    // A key that is already someone's.
    let taken = net.user(RESEARCHER);
    let err = net.refuse(
        &k,
        Payload::AddMember(AddMember {
            member: member_desc("insurer-1", MemberKind::Insurer, &taken),
            initial_balance: 0,
        }),
    );
    assert!(matches!(err, TxError::Invalid { field: "key", .. }));
    // Not a valid ed25519 point.
    let mut m = member_desc("insurer-1", MemberKind::Insurer, &taken);
    m.key = (2u8..)
        .map(|b| {
            let mut a = [0u8; 32];
            a[0] = b;
            PublicKey::from_bytes(a)
        })
        .find(|k| !k.is_valid())
        .unwrap();
    let err = net.refuse(
        &k,
        Payload::AddMember(AddMember {
            member: m,
            initial_balance: 0,
        }),
    );
    assert!(matches!(err, TxError::Invalid { field: "key", .. }));
    // Removing a non-member.
    let err = net.refuse(
        &k,
        Payload::RemoveMember(RemoveMember {
            member: mid("nobody"),
        }),
    );
    assert!(matches!(err, TxError::NotMember { .. }));
    // A policy whose threshold is not a majority, or not a fraction.
    for (num, den) in [(1, 2), (0, 3), (4, 3), (1, 0)] {
        let policy = Policy {
            vote_num: num,
            vote_den: den,
            ..Policy::default()
        };
        let err = net.refuse(&k, Payload::UpdatePolicy(UpdatePolicy { policy }));
        assert!(
            matches!(
                err,
                TxError::Invalid {
                    field: "policy",
                    ..
                }
            ),
            "{num}/{den}: {err:?}"
        );
    }
}

#[test]
fn update_policy_by_vote_changes_required_approvals() {
    let mut net = Net::new();
    // New policy: L2 also needs the data committee; contracts live at most 40 days.
    let before = net.state.policy().unwrap();
    let mut policy = before.clone();
    let mut reqs = policy.requirements.clone().into_vec();
    reqs.push(Requirement {
        level: Level::L2,
        role: Role::DataCommittee,
        scope: ApprovalScope::PerOwner,
    });
    policy.requirements = list(reqs);
    policy.max_contract_ms = 40 * DAY_MS;
    let p = propose(
        &mut net,
        "regulator",
        Payload::UpdatePolicy(UpdatePolicy {
            policy: policy.clone(),
        }),
    );
    vote(&mut net, "hospital-a", p, true);
    vote(&mut net, "hospital-b", p, true);
    assert_eq!(net.state.policy().unwrap(), before, "not yet");
    assert_eq!(
        vote(&mut net, "hospital-c", p, true),
        vec![Event::ProposalPassed(p)]
    );
    assert_eq!(net.state.policy().unwrap(), policy);
    // The new policy governs new requests.
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L2);
    let rec = net.state.contract(c).unwrap().unwrap();
    let roles: Vec<Role> = rec.approvals.iter().map(|a| a.role).collect();
    assert_eq!(roles, vec![Role::Steward, Role::DataCommittee]);
    let k = net.user(RESEARCHER);
    let err = net.refuse(
        &k,
        request(
            Purpose::Research,
            Mode::Compute,
            &["hospital-a"],
            Level::L1,
            net.ctx.time_ms + 41 * DAY_MS,
            10,
            0,
        ),
    );
    assert!(matches!(
        err,
        TxError::Invalid {
            field: "expiry_ms",
            ..
        }
    ));
}

#[test]
fn removed_member_and_its_users_can_no_longer_sign() {
    let mut net = Net::new();
    let p = propose(
        &mut net,
        "hospital-a",
        Payload::RemoveMember(RemoveMember {
            member: mid("hospital-c"),
        }),
    );
    vote(&mut net, "hospital-b", p, true);
    vote(&mut net, "research-1", p, true);
    // hospital-c itself votes against: still 3 of 5.
    vote(&mut net, "hospital-c", p, false);
    assert_eq!(
        vote(&mut net, "regulator", p, true),
        vec![Event::ProposalPassed(p)]
    );
    let rec = net.state.member(&mid("hospital-c")).unwrap().unwrap();
    assert!(!rec.active);
    // Its member key and every user of it are refused.
    let k = net.member("hospital-c");
    let err = net.refuse(
        &k,
        Payload::PublishDataset(PublishDataset {
            dataset: dataset_desc("hospital-c", 2),
        }),
    );
    assert_eq!(
        err,
        TxError::NotMember {
            member: "hospital-c".into()
        }
    );
    for u in [
        steward("hospital-c"),
        dc("hospital-c"),
        clinician("hospital-c"),
    ] {
        let k = net.user(&u);
        let err = net.refuse(&k, approve(ContractId(1)));
        assert!(matches!(err, TxError::NotMember { .. }), "{u}: {err:?}");
    }
    // Its data can no longer be requested, and it can receive no grant.
    let r = net.user(RESEARCHER);
    let err = net.refuse(
        &r,
        request(
            Purpose::Research,
            Mode::Compute,
            &["hospital-c"],
            Level::L1,
            net.ctx.time_ms + DAY_MS,
            10,
            0,
        ),
    );
    assert!(matches!(err, TxError::NotMember { .. }));
    let pt = net.patient(0);
    let err = net.refuse(
        &pt,
        Payload::IssueGrant(grant(
            "hospital-c",
            "hospital-a",
            &["Encounter"],
            net.ctx.time_ms + DAY_MS,
            0,
        )),
    );
    assert!(matches!(err, TxError::NotMember { .. }));
    // With 4 active members, 3 yes are 2/3 (9 >= 8).
    let p2 = propose(
        &mut net,
        "hospital-a",
        add_member_payload("insurer-1", 50, 0),
    );
    vote(&mut net, "hospital-b", p2, true);
    assert_eq!(
        vote(&mut net, "regulator", p2, true),
        vec![Event::ProposalPassed(p2)]
    );
}

#[test]
fn the_last_member_cannot_be_removed() {
    // A consortium of one.
    let (mut g, _, _) = genesis();
    g.members.truncate(1);
    g.users.retain(|u| u.member.as_str() == "hospital-a");
    let mut state = medspace_state::State::genesis(&g).unwrap();
    let k = Keypair::from_seed(1);
    let tx = SignedTx::new(
        &g.chain_id,
        &k,
        0,
        Payload::RemoveMember(RemoveMember {
            member: mid("hospital-a"),
        }),
    );
    let root = state.root();
    let ctx = medspace_state::BlockContext {
        height: 1,
        time_ms: T0 + 1,
    };
    let err = state.apply(&tx, &ctx).unwrap_err();
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    assert_eq!(state.root(), root);
}

#[test]
fn register_user_only_by_the_member_key() {
    let mut net = Net::new();
    let new = Keypair::from_seed(60);
    let payload = |user: &str, role, key: &Keypair| {
        Payload::RegisterUser(RegisterUser {
            user: uid(user),
            role,
            key: key.public(),
        })
    };
    // Not by its steward, a patient or a stranger.
    let s = net.user(&steward("hospital-a"));
    let err = net.refuse(&s, payload("hospital-a.r2", Role::Researcher, &new));
    assert!(matches!(
        err,
        TxError::WrongSigner {
            kind: "register_user",
            ..
        }
    ));
    let pt = net.patient(0);
    let err = net.refuse(&pt, payload("hospital-a.r2", Role::Researcher, &new));
    assert!(matches!(err, TxError::WrongSigner { .. }));
    let m = net.member("hospital-a");
    // Patients register themselves.
    let err = net.refuse(&m, payload("hospital-a.p", Role::Patient, &new));
    assert!(matches!(err, TxError::Invalid { field: "role", .. }));
    // An existing user id.
    let err = net.refuse(&m, payload(RESEARCHER, Role::Researcher, &new));
    assert!(matches!(err, TxError::AlreadyExists { what: "user", .. }));
    // A key that is already registered.
    let err = net.refuse(&m, payload("hospital-a.r2", Role::Researcher, &s));
    assert!(matches!(err, TxError::Invalid { field: "key", .. }));
    net.ok(&m, payload("hospital-a.r2", Role::Researcher, &new));
    let rec = net.state.user(&uid("hospital-a.r2")).unwrap().unwrap();
    assert_eq!(rec.member, mid("hospital-a"));
    assert_eq!(rec.role, Role::Researcher);
    assert_eq!(rec.key, new.public());
    // The new user can act in their role.
    net.users.insert("hospital-a.r2".into(), new);
    let c = net.submit(
        "hospital-a.r2",
        request(
            Purpose::Research,
            Mode::Compute,
            &["hospital-b"],
            Level::L1,
            net.ctx.time_ms + DAY_MS,
            10,
            5,
        ),
    );
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.requester_member, mid("hospital-a"));
    assert_eq!(net.state.balance(&mid("hospital-a")).unwrap(), BALANCE - 5);
}

/// A 3/4 threshold written with large numbers is a valid majority. The majority check in
/// `validate_action` multiplies `vote_num * 2` in u32, which overflows (a panic in debug
/// builds, a wrong refusal in release).
#[test]
fn update_policy_with_large_threshold_terms_does_not_overflow() {
    let mut net = Net::new();
    let k = net.member("hospital-a");
    let policy = Policy {
        vote_num: 3_000_000_000,
        vote_den: 4_000_000_000,
        ..Policy::default()
    };
    let r = net.try_apply(&k, Payload::UpdatePolicy(UpdatePolicy { policy }));
    assert!(
        matches!(r, Ok(ref r) if matches!(r.created, Some(Created::Proposal(_)))),
        "{r:?}"
    );
}

#[test]
fn votes_of_a_removed_member_stop_counting() {
    let mut net = Net::new();
    // hospital-c votes yes on adding insurer-1, then hospital-c is removed.
    let add = propose(
        &mut net,
        "hospital-a",
        add_member_payload("insurer-1", 50, 0),
    );
    vote(&mut net, "hospital-c", add, true);
    let rm = propose(
        &mut net,
        "hospital-a",
        Payload::RemoveMember(RemoveMember {
            member: mid("hospital-c"),
        }),
    );
    vote(&mut net, "hospital-b", rm, true);
    vote(&mut net, "research-1", rm, true);
    assert_eq!(
        vote(&mut net, "regulator", rm, true),
        vec![Event::ProposalPassed(rm)]
    );
    // Of 4 active members, hospital-a's yes counts, hospital-c's does not: 1 * 3 < 8.
    // hospital-b makes 2 (6 < 8): still open; research-1 makes 3 (9 >= 8): passed.
    assert!(vote(&mut net, "hospital-b", add, true).is_empty());
    assert_eq!(
        net.state.proposal(add).unwrap().unwrap().status,
        ProposalStatus::Open
    );
    assert_eq!(
        vote(&mut net, "research-1", add, true),
        vec![Event::ProposalPassed(add)]
    );
    // A removed member cannot vote.
    let c = net.member("hospital-c");
    let p = propose(
        &mut net,
        "regulator",
        add_member_payload("insurer-2", 51, 0),
    );
    let err = net.refuse(
        &c,
        Payload::Vote(Vote {
            proposal: p,
            approve: true,
        }),
    );
    assert!(matches!(err, TxError::NotMember { .. }));
}

/// The classification of fields is consortium policy: a vote reclassifies a field, and from
/// then on requests touching it need the approvals of its new level, and no owner may publish
/// it lower.
#[test]
fn a_vote_reclassifies_a_field_for_every_later_request_and_publication() {
    let mut net = Net::new();
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L2);
    assert_eq!(net.state.contract(c).unwrap().unwrap().level, Level::L2);
    let mut policy = net.state.policy().unwrap();
    let mut fields = policy.classification.fields.clone().into_vec();
    for f in fields.iter_mut() {
        if f.column.as_str() == "year_of_birth" {
            f.level = Level::L3;
        }
    }
    policy.classification.fields = list(fields);
    let p = propose(
        &mut net,
        "regulator",
        Payload::UpdatePolicy(UpdatePolicy {
            policy: policy.clone(),
        }),
    );
    for m in ["hospital-a", "hospital-b", "hospital-c"] {
        vote(&mut net, m, p, true);
    }
    assert_eq!(net.state.policy().unwrap(), policy);
    // The same fields, published at L2 before the vote, now make an L3 request.
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L2);
    let rec = net.state.contract(c).unwrap().unwrap();
    assert_eq!(rec.level, Level::L3);
    let roles: Vec<Role> = rec.approvals.iter().map(|a| a.role).collect();
    assert!(roles.contains(&Role::EthicsCommittee), "{roles:?}");
    // Republishing the field at L2 is refused; at L3 or higher it is fine.
    let s = net.user(&steward("hospital-a"));
    let root = net.state.root();
    let err = net.refuse(
        &s,
        Payload::PublishDataset(PublishDataset {
            dataset: dataset_desc("hospital-a", 2),
        }),
    );
    assert!(
        matches!(err, TxError::Invalid { field: "level", .. }),
        "{err:?}"
    );
    assert_eq!(net.state.root(), root, "nothing changed");
    let mut d = dataset_desc("hospital-a", 2);
    let mut tables = d.tables.clone().into_vec();
    let mut fields = tables[0].fields.clone().into_vec();
    fields[1].level = Level::L4;
    tables[0].fields = list(fields);
    d.tables = list(tables);
    net.ok(&s, Payload::PublishDataset(PublishDataset { dataset: d }));
    // A field the owner published above the consortium's level keeps the owner's level.
    let c = net.research(Mode::Compute, &["hospital-a"], Level::L2);
    assert_eq!(net.state.contract(c).unwrap().unwrap().level, Level::L4);
}
