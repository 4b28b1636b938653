//! A member's two keys: the member key (governance, users, catalog, business) stays with the
//! institution's CLI; the node key is what its network-facing node holds, and it can only do
//! node work (a job's round and result, access records, destruction attestations). Every cheat
//! is refused with nothing changed (`Net::refuse` checks the root, the record count, the
//! signer's nonce and the credits).

use super::fixture::*;
use medspace_state::{Created, TxError};
use medspace_types::*;

fn wrong_signer(err: &TxError, want: &str) -> bool {
    matches!(err, TxError::WrongSigner { kind, .. } if *kind == want)
}

/// An active compute contract of hospital-a and hospital-b with a submitted job.
fn job(net: &mut Net) -> (ContractId, JobId) {
    let c = net.active(Mode::Compute, &["hospital-a", "hospital-b"], Level::L2);
    let j = net.job(c, 1_000);
    (c, j)
}

#[test]
fn a_node_key_cannot_govern_register_users_rotate_or_do_business() {
    let mut net = Net::new();
    let (c, _) = job(&mut net);
    let node = net.node("hospital-a");
    let fresh = Keypair::from_seed(7_001);
    // A proposal to vote on, by a member key.
    let b = net.member("hospital-b");
    let proposal = match net
        .ok(
            &b,
            Payload::UpdatePolicy(UpdatePolicy {
                policy: net.state.policy().unwrap(),
            }),
        )
        .created
    {
        Some(Created::Proposal(p)) => p,
        other => panic!("no proposal: {other:?}"),
    };
    let nonce = net.nonce(&node);
    let cheats: Vec<(&str, Payload)> = vec![
        (
            "add_member",
            Payload::AddMember(AddMember {
                member: member_desc("insurer-7", MemberKind::Insurer, &fresh),
                initial_balance: 1_000_000,
            }),
        ),
        (
            "remove_member",
            Payload::RemoveMember(RemoveMember {
                member: mid("hospital-c"),
            }),
        ),
        (
            "update_policy",
            Payload::UpdatePolicy(UpdatePolicy {
                policy: net.state.policy().unwrap(),
            }),
        ),
        (
            "appoint_user",
            Payload::AppointUser(AppointUser {
                user: uid("hospital-a.dc2"),
                member: mid("hospital-a"),
                role: Role::DataCommittee,
                key: fresh.public(),
            }),
        ),
        (
            "dismiss_user",
            Payload::DismissUser(DismissUser {
                user: uid(&ec("hospital-b")),
            }),
        ),
        (
            "vote",
            Payload::Vote(Vote {
                proposal,
                approve: true,
            }),
        ),
        (
            "register_user",
            Payload::RegisterUser(RegisterUser {
                user: uid("hospital-a.researcher2"),
                role: Role::Researcher,
                key: fresh.public(),
            }),
        ),
        (
            "rotate_key",
            Payload::RotateKey(RotateKey {
                new_key: fresh.public(),
                proof: fresh.sign(
                    ROTATE_NAMESPACE,
                    &rotation_message(&net.chain, &node.public(), nonce),
                ),
            }),
        ),
        (
            "rotate_node_key",
            Payload::RotateNodeKey(RotateNodeKey::new(
                &net.chain,
                &node.public(),
                nonce,
                &fresh,
            )),
        ),
        (
            "publish_dataset",
            Payload::PublishDataset(PublishDataset {
                dataset: dataset_desc("hospital-a", 2),
            }),
        ),
        ("terminate", terminate(c)),
        ("settle", settle(c)),
    ];
    for (kind, p) in cheats {
        let err = net.refuse(&node, p);
        assert!(wrong_signer(&err, kind), "{kind}: {err:?}");
        assert!(
            err.to_string().contains("node key"),
            "the refusal names the node key: {err}"
        );
    }
    // The member key it would have stood for still can.
    let a = net.member("hospital-a");
    net.ok(
        &a,
        Payload::Vote(Vote {
            proposal,
            approve: true,
        }),
    );
}

#[test]
fn node_work_is_signed_by_the_node_key_not_the_member_key() {
    let mut net = Net::new();
    let (_, j) = job(&mut net);
    let a = net.member("hospital-a");
    let all = ["hospital-a", "hospital-b"];
    let err = net.refuse(&a, close_round(j, &all, &all));
    assert!(wrong_signer(&err, "close_round"), "{err:?}");
    let err = net.refuse(&a, post_result(j, 0, &[]));
    assert!(wrong_signer(&err, "post_result"), "{err:?}");
    let node = net.node("hospital-a");
    net.ok(&node, close_round(j, &all, &all));
    // A contribution signed by the site's member key instead of its node key.
    let mut p = post_result(j, 1_000, &[("hospital-a", 3), ("hospital-b", 4)]);
    if let Payload::PostResult(r) = &mut p {
        r.contributions = list(vec![
            SignedContribution::sign(&node_keypair("hospital-a"), j, mid("hospital-a"), 3),
            SignedContribution::sign(&member_keypair("hospital-b"), j, mid("hospital-b"), 4),
        ]);
    }
    let err = net.refuse(&node, p);
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
    // A delivery record by the holder's member key.
    let pid = net.pid(0);
    let expiry = net.ctx.time_ms + DAY_MS;
    let g = super::grants::issue(
        &mut net,
        0,
        grant("hospital-b", "hospital-a", &["Encounter"], expiry, 1),
    );
    let ra = record_access(pid, "hospital-b", AccessBasis::Grant(g), &["Encounter"]);
    let err = net.refuse(&a, ra.clone());
    assert!(wrong_signer(&err, "record_access"), "{err:?}");
    net.ok(&node, ra);
    net.ok(
        &node,
        post_result(j, 1_000, &[("hospital-a", 3), ("hospital-b", 4)]),
    );
}

#[test]
fn a_member_replaces_its_compromised_node_key_and_the_old_one_never_signs_again() {
    let mut net = Net::new();
    let (_, j) = job(&mut net);
    let a = net.member("hospital-a");
    let old = net.node("hospital-a");
    let new = Keypair::from_seed(7_100);
    let nonce = net.nonce(&a);
    // The proof must be the new key's, for this member key and nonce.
    let other = Keypair::from_seed(7_101);
    let mut forged = RotateNodeKey::new(&net.chain, &a.public(), nonce, &other);
    forged.new_key = new.public();
    let err = net.refuse(&a, Payload::RotateNodeKey(forged));
    assert!(
        matches!(err, TxError::Invalid { field: "proof", .. }),
        "{err:?}"
    );
    // A key registered to anyone else (here another member's node) is not a new node key.
    let taken = net.node("hospital-b");
    let err = net.refuse(
        &a,
        Payload::RotateNodeKey(RotateNodeKey::new(&net.chain, &a.public(), nonce, &taken)),
    );
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "new_key",
                ..
            }
        ),
        "{err:?}"
    );
    // Another member cannot replace hospital-a's node key: it replaces its own.
    let b = net.member("hospital-b");
    let nb = net.nonce(&b);
    let fresh_b = Keypair::from_seed(7_102);
    net.ok(
        &b,
        Payload::RotateNodeKey(RotateNodeKey::new(&net.chain, &b.public(), nb, &fresh_b)),
    );
    assert_eq!(
        net.state
            .member(&mid("hospital-b"))
            .unwrap()
            .unwrap()
            .member
            .node_key,
        fresh_b.public()
    );
    assert_eq!(
        net.state
            .member(&mid("hospital-a"))
            .unwrap()
            .unwrap()
            .member
            .node_key,
        old.public()
    );
    // hospital-a replaces its node key.
    let nonce = net.nonce(&a);
    let r = net.ok(
        &a,
        Payload::RotateNodeKey(RotateNodeKey::new(&net.chain, &a.public(), nonce, &new)),
    );
    assert_eq!(r.kind, "rotate_node_key");
    let rec = net.state.member(&mid("hospital-a")).unwrap().unwrap();
    assert_eq!(rec.member.node_key, new.public());
    assert_eq!(rec.member.key, a.public(), "the member key stays");
    // The old node key is retired: refused at admission and at execution, for anything.
    let all = ["hospital-a", "hospital-b"];
    let tx = net.tx(&old, close_round(j, &all, &all));
    assert!(matches!(
        net.state.check_tx(&tx),
        Err(TxError::RetiredKey { .. })
    ));
    let err = net.refuse_tx(&tx);
    assert!(matches!(err, TxError::RetiredKey { .. }), "{err:?}");
    // The new node key works; a contribution signed by the old key is refused.
    net.ok(&new, close_round(j, &all, &all));
    let mut p = post_result(j, 1_000, &[("hospital-a", 3), ("hospital-b", 4)]);
    if let Payload::PostResult(r) = &mut p {
        r.contributions = list(vec![
            SignedContribution::sign(&old, j, mid("hospital-a"), 3),
            SignedContribution::sign(&fresh_b, j, mid("hospital-b"), 4),
        ]);
    }
    let err = net.refuse(&new, p.clone());
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
    if let Payload::PostResult(r) = &mut p {
        r.contributions = list(vec![
            SignedContribution::sign(&new, j, mid("hospital-a"), 3),
            SignedContribution::sign(&fresh_b, j, mid("hospital-b"), 4),
        ]);
    }
    net.ok(&new, p);
    // Replacing it once more retires the second key too.
    let nonce = net.nonce(&a);
    let third = Keypair::from_seed(7_103);
    net.ok(
        &a,
        Payload::RotateNodeKey(RotateNodeKey::new(&net.chain, &a.public(), nonce, &third)),
    );
    let err = net.refuse(&new, post_result(JobId(1), 0, &[]));
    assert!(matches!(err, TxError::RetiredKey { .. }), "{err:?}");
}

#[test]
fn a_removed_members_node_key_cannot_sign() {
    let mut net = Net::new();
    let (_, j) = job(&mut net);
    net.pass(
        "hospital-b",
        Payload::RemoveMember(RemoveMember {
            member: mid("hospital-a"),
        }),
    );
    let node = net.node("hospital-a");
    let all = ["hospital-a", "hospital-b"];
    let err = net.refuse(&node, close_round(j, &all, &all));
    assert!(matches!(err, TxError::NotMember { .. }), "{err:?}");
}

#[test]
fn a_patient_attestation_by_a_node_key_is_refused() {
    let mut net = Net::new();
    let patient = Keypair::from_seed(7_200);
    let by_node = Payload::RegisterPatient(RegisterPatient::attested(
        &net.chain,
        &patient.public(),
        mid("hospital-a"),
        &net.node("hospital-a"),
    ));
    let tx = net.tx(&patient, by_node);
    assert!(matches!(
        net.state.check_tx(&tx),
        Err(TxError::Invalid {
            field: "attestation",
            ..
        })
    ));
    let err = net.refuse_tx(&tx);
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "attestation",
                ..
            }
        ),
        "{err:?}"
    );
    let by_member = net.registration(&patient.public(), "hospital-a");
    net.ok(&patient, by_member);
}

#[test]
fn a_node_key_is_valid_distinct_and_unused_at_genesis_and_admission() {
    // Genesis: a member whose node key is its member key, or another's key.
    let (mut g, members, _) = genesis();
    g.members[0].member.node_key = g.members[0].member.key.clone();
    assert!(medspace_state::State::genesis(&g).is_err());
    let (mut g, _, _) = genesis();
    g.members[0].member.node_key = g.members[1].member.key.clone();
    assert!(medspace_state::State::genesis(&g).is_err());
    let _ = members;
    // AddMember: the same rules, checked when proposed.
    let mut net = Net::new();
    let a = net.member("hospital-a");
    let k = Keypair::from_seed(7_300);
    let mut m = member_desc("insurer-7", MemberKind::Insurer, &k);
    m.node_key = k.public();
    let err = net.refuse(
        &a,
        Payload::AddMember(AddMember {
            member: m.clone(),
            initial_balance: 0,
        }),
    );
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "node_key",
                ..
            }
        ),
        "{err:?}"
    );
    m.node_key = net.node("hospital-b").public();
    let err = net.refuse(
        &a,
        Payload::AddMember(AddMember {
            member: m,
            initial_balance: 0,
        }),
    );
    assert!(
        matches!(
            err,
            TxError::Invalid {
                field: "node_key",
                ..
            }
        ),
        "{err:?}"
    );
    // A member admitted by vote gets its node key registered as such.
    let m = member_desc("insurer-7", MemberKind::Insurer, &k);
    net.pass(
        "hospital-a",
        Payload::AddMember(AddMember {
            member: m.clone(),
            initial_balance: 0,
        }),
    );
    let rec = net.state.key_record(&m.node_key).unwrap().unwrap();
    assert_eq!(
        rec.principal,
        medspace_state::records::Principal::Node(mid("insurer-7"))
    );
}
