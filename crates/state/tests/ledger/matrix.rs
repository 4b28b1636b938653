//! The authorization matrix: every transaction kind (and the variants the rules tell apart)
//! signed by every kind of signer — a patient's key, a user of each role, a member of each
//! kind, a member's node key, a removed member's key, a retired key, a replaced node key, an
//! outsider's key — each cell applied to its
//! own copy of one prepared consortium and checked against ONE table: allowed, or refused with
//! the root, the record count, the signer's nonce and the credits unchanged.

use super::fixture::*;
use medspace_state::Created;
use medspace_types::*;
use std::collections::BTreeSet;

/// The signers, the matrix's columns.
const SIGNERS: [&str; 20] = [
    "patient",
    "steward",
    "data_committee",
    "ethics_committee",
    "researcher",
    "clinician",
    "claims_officer",
    "auditor",
    "hospital",
    "research_institute",
    "regulator",
    "insurer",
    "pharma",
    "public_health_agency",
    "hospital_node",
    "insurer_node",
    "removed_member",
    "retired_key",
    "retired_node_key",
    "outsider",
];

/// Every active member, whatever its kind.
const MEMBERS_ALL: &str =
    "hospital research_institute regulator insurer pharma public_health_agency";
/// Every registered, active principal.
const REGISTERED: &str = "patient steward data_committee ethics_committee researcher clinician claims_officer auditor hospital research_institute regulator insurer pharma public_health_agency";

/// THE table: each row is a transaction (kind and variant) and the signers allowed to carry
/// it; every other signer is refused.
const TABLE: &[(&str, &str)] = &[
    // Governance: proposals and votes by members only.
    ("add_member", MEMBERS_ALL),
    ("remove_member", MEMBERS_ALL),
    ("update_policy", MEMBERS_ALL),
    ("appoint_user(ethics_committee)", MEMBERS_ALL),
    ("dismiss_user", MEMBERS_ALL),
    ("vote", MEMBERS_ALL),
    // A member registers its institutional users; consortium roles are appointed by vote,
    // except a regulator's own auditors.
    ("register_user(researcher)", MEMBERS_ALL),
    ("register_user(data_committee)", ""),
    ("register_user(ethics_committee)", ""),
    ("register_user(auditor)", "regulator"),
    // A node key never rotates itself: its member replaces it.
    ("rotate_key", REGISTERED),
    ("rotate_node_key", MEMBERS_ALL),
    // Only a fresh key, and only with a hospital's attestation by its member key.
    ("register_patient(attested)", "outsider"),
    ("register_patient(unattested)", ""),
    ("register_patient(attested by a node key)", ""),
    // The member itself or its steward publishes its dataset.
    ("publish_dataset(hospital's)", "steward hospital"),
    // The patient's own decisions.
    ("set_consent", "patient"),
    ("revoke_consent", "patient"),
    ("issue_grant", "patient"),
    ("revoke_grant", "patient"),
    // Requests: by purpose, role and kind of institution.
    ("submit_request(research)", "researcher"),
    ("submit_request(treatment)", "clinician"),
    ("submit_request(insurance_claim)", "claims_officer"),
    ("submit_request(public_health)", "auditor"),
    (
        "submit_request(quality_management, own data)",
        "steward clinician auditor",
    ),
    (
        "submit_request(quality_management, another's data)",
        "auditor",
    ),
    ("submit_request(patient_access)", ""),
    // Reviews: the roles whose approval is missing, never of the requesting institution.
    ("approve(L3)", "steward data_committee ethics_committee"),
    (
        "approve(L4)",
        "steward data_committee ethics_committee auditor",
    ),
    (
        "approve(L3 of the data committee's institution)",
        "steward ethics_committee",
    ),
    (
        "reject(L3, with a reason)",
        "steward data_committee ethics_committee",
    ),
    ("reject(L3, no reason)", ""),
    ("terminate", "researcher steward hospital auditor"),
    // Jobs: the approved computation by its holder; the round and result by the aggregator.
    ("submit_job(approved computation)", "researcher"),
    ("submit_job(another computation)", ""),
    ("submit_job(no epsilon)", ""),
    // by its node key, never its member key; each contribution signed by its site's node key.
    ("close_round", "hospital_node"),
    ("post_result", "hospital_node"),
    ("post_result(contribution signed by the member key)", ""),
    // Records: the holder's node records a delivery, the recipient institution (its member
    // key, its node or its user) attests destruction.
    ("record_access", "hospital_node"),
    ("attest_destruction", "claims_officer insurer insurer_node"),
    // Value: the requester (or its institution) or a data owner (or its steward).
    ("settle", "researcher steward hospital research_institute"),
    // A lost patient key: the registering hospital's steward asks; the patient's key or that
    // steward cancels; only the new key completes, after the delay (`rebind.rs`).
    ("rebind_patient", "steward"),
    ("cancel_rebind", "patient steward"),
    ("complete_rebind", ""),
    // The open pool (`open_pool.rs`): the member or its steward publishes a release; the
    // researcher requests it; the owner's node delivers; the recipient attests destruction.
    ("publish_release(hospital's)", "steward hospital"),
    ("submit_request(open_pool)", "researcher"),
    ("deliver_release", "hospital_node"),
    (
        "attest_destruction(release)",
        "researcher research_institute",
    ),
    // Public health (`public_health.rs`): a surveillance definition by a public-health requester
    // (the matrix's is the regulator's auditor); an alert on a finished window only by the
    // contract's holder (the auditor's surveillance contract).
    ("submit_request(surveillance)", "auditor"),
    ("record_alert", "auditor"),
];

/// The first day of the matrix's surveillance definition: its three daily windows ended before
/// genesis, so its jobs run at once.
const SURVEILLANCE_START: &str = "2023-11-01";

/// What the cells act on, prepared once.
struct World {
    net: Net,
    keys: Vec<(&'static str, Keypair)>,
    proposal: ProposalId,
    pending_l3: ContractId,
    pending_l4: ContractId,
    pending_of_b: ContractId,
    active: ContractId,
    ended: ContractId,
    open_job: JobId,
    closed_job: JobId,
    grant: GrantId,
    access: AccessId,
    open_pool: ContractId,
    delivery: AccessId,
    window_job: JobId,
}

fn add_member(
    g: &mut Genesis,
    members: &mut std::collections::BTreeMap<String, Keypair>,
    id: &str,
    kind: MemberKind,
    seed: u64,
) {
    let k = Keypair::from_seed(seed);
    g.members.push(GenesisMember {
        member: member_desc(id, kind, &k),
        balance: BALANCE,
    });
    members.insert(id.into(), k);
}

fn add_user(
    g: &mut Genesis,
    users: &mut std::collections::BTreeMap<String, Keypair>,
    id: &str,
    member: &str,
    role: Role,
    seed: u64,
) {
    let k = Keypair::from_seed(seed);
    g.users.push(GenesisUser {
        id: uid(id),
        member: mid(member),
        role,
        key: k.public(),
    });
    users.insert(id.into(), k);
}

/// A surveillance definition over hospital-a's conditions (three windows from
/// [`SURVEILLANCE_START`]), its budget just enough.
fn surveillance_request(now: u64) -> Payload {
    Payload::SubmitRequest(SubmitRequest {
        purpose: Purpose::PublicHealth,
        mode: Mode::Compute,
        study: None,
        fields: list(vec![field_at("hospital-a", Level::L3)]),
        computation: Blob::new(surveillance_spec(SURVEILLANCE_START, 1, 3).into_bytes()).unwrap(),
        expiry_ms: now + 30 * DAY_MS,
        epsilon_budget: 3 * SURVEILLANCE_EPSILON,
        fee: 0,
    })
}

fn created_contract(r: medspace_state::Receipt) -> ContractId {
    match r.created {
        Some(Created::Contract(c)) => c,
        other => panic!("no contract: {other:?}"),
    }
}

fn world() -> World {
    let mut net = Net::new_from(Net::genesis_with_members(|g, members, users| {
        add_member(g, members, "insurer-1", MemberKind::Insurer, 1_101);
        add_member(g, members, "pharma-1", MemberKind::Pharma, 1_102);
        add_member(
            g,
            members,
            "agency-1",
            MemberKind::PublicHealthAgency,
            1_103,
        );
        add_member(g, members, "hospital-x", MemberKind::Hospital, 1_104);
        add_user(
            g,
            users,
            "insurer-1.claims",
            "insurer-1",
            Role::ClaimsOfficer,
            1_111,
        );
        add_user(
            g,
            users,
            "hospital-b.researcher",
            "hospital-b",
            Role::Researcher,
            1_112,
        );
        add_user(
            g,
            users,
            "hospital-a.rotating",
            "hospital-a",
            Role::Clinician,
            1_113,
        );
    }));
    // A removed member, a retired key.
    net.pass(
        "hospital-a",
        Payload::RemoveMember(RemoveMember {
            member: mid("hospital-x"),
        }),
    );
    let removed = net.member("hospital-x");
    let retired = net.user("hospital-a.rotating");
    let new = Keypair::from_seed(1_120);
    let nonce = net.nonce(&retired);
    let proof = new.sign(
        ROTATE_NAMESPACE,
        &rotation_message(&net.chain, &retired.public(), nonce),
    );
    net.ok(
        &retired,
        Payload::RotateKey(RotateKey {
            new_key: new.public(),
            proof,
        }),
    );
    // An open proposal (by hospital-b, so every other member may vote).
    let b = net.member("hospital-b");
    let proposal = match net
        .ok(
            &b,
            Payload::AddMember(AddMember {
                member: member_desc("insurer-9", MemberKind::Insurer, &Keypair::from_seed(1_130)),
                initial_balance: 0,
            }),
        )
        .created
    {
        Some(Created::Proposal(p)) => p,
        other => panic!("no proposal: {other:?}"),
    };
    // Contracts: pending L3 and L4 requests of the research institute, a pending L3 request of
    // hospital-b (the data committee's institution), an active compute contract with an open
    // job and a job whose round is closed, a contract already ended.
    let pending_l3 = net.research(Mode::Compute, &["hospital-a"], Level::L3);
    let pending_l4 = net.research(Mode::Compute, &["hospital-a"], Level::L4);
    let p = request(
        Purpose::Research,
        Mode::Compute,
        &["hospital-a"],
        Level::L3,
        net.ctx.time_ms + 30 * DAY_MS,
        1_000_000,
        0,
    );
    let pending_of_b = net.submit("hospital-b.researcher", p);
    let active = net.active(Mode::Compute, &["hospital-a"], Level::L1);
    let open_job = net.job(active, 100_000);
    let closed_job = net.job(active, 100_000);
    let h = net.node("hospital-a");
    net.ok(
        &h,
        close_round(closed_job, &["hospital-a"], &["hospital-a"]),
    );
    let r = net.user(RESEARCHER);
    let ended = created_contract(net.ok(
        &r,
        request(
            Purpose::Research,
            Mode::Compute,
            &["hospital-a"],
            Level::L1,
            net.ctx.time_ms + 2_000,
            1_000_000,
            500,
        ),
    ));
    // The auditor's surveillance contract, its window 0's job finished.
    let auditor = net.user(AUDITOR);
    let surveillance = created_contract(net.ok(&auditor, surveillance_request(net.ctx.time_ms)));
    net.approve_all(surveillance);
    let window_job = match net
        .ok(
            &auditor,
            submit_job_of(
                surveillance,
                &surveillance_spec(SURVEILLANCE_START, 1, 3),
                SURVEILLANCE_EPSILON,
            ),
        )
        .created
    {
        Some(Created::Job(j)) => j,
        other => panic!("no job: {other:?}"),
    };
    assert_eq!(net.state.job(window_job).unwrap().unwrap().window, Some(0));
    net.finish(window_job, &[("hospital-a", 4)]);
    // A patient's consent, a grant to the insurer, a delivery under it.
    net.consent(0, Purpose::Research, false);
    let p = net.patient(0);
    let grant = match net
        .ok(
            &p,
            Payload::IssueGrant(grant(
                "insurer-1",
                "hospital-a",
                &["Encounter"],
                net.ctx.time_ms + 30 * DAY_MS,
                0,
            )),
        )
        .created
    {
        Some(Created::Grant(g)) => g,
        other => panic!("no grant: {other:?}"),
    };
    let access = match net
        .ok(
            &h,
            record_access(
                net.pid(0),
                "insurer-1",
                AccessBasis::Grant(grant),
                &["Encounter"],
            ),
        )
        .created
    {
        Some(Created::Access(a)) => a,
        other => panic!("no access: {other:?}"),
    };
    // A replaced node key: hospital-b's member key gives its node a new key.
    let old_node = net.node("hospital-b");
    let b = net.member("hospital-b");
    let nonce = net.nonce(&b);
    let rotation = RotateNodeKey::new(&net.chain, &b.public(), nonce, &Keypair::from_seed(1_121));
    net.ok(&b, Payload::RotateNodeKey(rotation));
    // A re-binding of the patient's pseudonym to a new key, pending.
    let new_key = Keypair::from_seed(1_160);
    let steward_a = net.user(&steward("hospital-a"));
    net.ok(
        &steward_a,
        Payload::RebindPatient(RebindPatient {
            patient: net.pid(0),
            new_key: new_key.public(),
            proof: RebindPatient::claim(&net.chain, &mid("hospital-a"), &new_key),
        }),
    );
    // A release of hospital-a, an approved open-pool contract of the researcher, a delivery.
    net.release("hospital-a");
    let open_pool = net.submit(RESEARCHER, net.open_pool_request(&["hospital-a"]));
    net.approve_all(open_pool);
    let delivery = match net.ok(&h, deliver(open_pool)).created {
        Some(Created::Access(a)) => a,
        other => panic!("no delivery: {other:?}"),
    };
    net.advance(10_000);
    let keys = vec![
        ("patient", net.patient(0)),
        ("steward", net.user(&steward("hospital-a"))),
        ("data_committee", net.user(&dc("hospital-b"))),
        ("ethics_committee", net.user(&ec("hospital-c"))),
        ("researcher", net.user(RESEARCHER)),
        ("clinician", net.user(&clinician("hospital-a"))),
        ("claims_officer", net.user("insurer-1.claims")),
        ("auditor", net.user(AUDITOR)),
        ("hospital", net.member("hospital-a")),
        ("research_institute", net.member("research-1")),
        ("regulator", net.member("regulator")),
        ("insurer", net.member("insurer-1")),
        ("pharma", net.member("pharma-1")),
        ("public_health_agency", net.member("agency-1")),
        ("hospital_node", net.node("hospital-a")),
        ("insurer_node", net.node("insurer-1")),
        ("removed_member", removed),
        ("retired_key", retired),
        ("retired_node_key", old_node),
        ("outsider", Keypair::from_seed(1_140)),
    ];
    World {
        net,
        keys,
        proposal,
        pending_l3,
        pending_l4,
        pending_of_b,
        active,
        ended,
        open_job,
        closed_job,
        grant,
        access,
        open_pool,
        delivery,
        window_job,
    }
}

/// hospital-a's node delivers its release under `c`.
fn deliver(c: ContractId) -> Payload {
    Payload::DeliverRelease(DeliverRelease {
        contract: c,
        dataset: release_of("hospital-a"),
        content_hash: release_desc("hospital-a", 1).content_hash,
        bytes: 4_096,
    })
}

/// The transaction of row `row` as `signer` (`key`) would send it.
fn payload(w: &World, row: &str, signer: &str, key: &Keypair) -> Payload {
    let net = &w.net;
    let now = net.ctx.time_ms;
    let fresh = Keypair::from_seed(1_150);
    let reject = |c, reason: &str| {
        Payload::Reject(Reject {
            contract: c,
            reason: text(reason),
        })
    };
    let request_for = |purpose, mode, owners: &[&str]| {
        request(purpose, mode, owners, Level::L2, now + 30 * DAY_MS, 0, 0)
    };
    let register = |role| {
        Payload::RegisterUser(RegisterUser {
            user: uid(&format!("new.{signer}")),
            role,
            key: fresh.public(),
        })
    };
    match row {
        "add_member" => Payload::AddMember(AddMember {
            member: member_desc("insurer-8", MemberKind::Insurer, &fresh),
            initial_balance: 0,
        }),
        "remove_member" => Payload::RemoveMember(RemoveMember {
            member: mid("hospital-c"),
        }),
        "update_policy" => Payload::UpdatePolicy(UpdatePolicy {
            policy: net.state.policy().unwrap(),
        }),
        "appoint_user(ethics_committee)" => Payload::AppointUser(AppointUser {
            user: uid("hospital-c.ec2"),
            member: mid("hospital-c"),
            role: Role::EthicsCommittee,
            key: fresh.public(),
        }),
        "dismiss_user" => Payload::DismissUser(DismissUser {
            user: uid(&ec("hospital-a")),
        }),
        "vote" => Payload::Vote(Vote {
            proposal: w.proposal,
            approve: false,
        }),
        "register_user(researcher)" => register(Role::Researcher),
        "register_user(data_committee)" => register(Role::DataCommittee),
        "register_user(ethics_committee)" => register(Role::EthicsCommittee),
        "register_user(auditor)" => register(Role::Auditor),
        "rotate_key" => {
            let nonce = net.nonce(key);
            Payload::RotateKey(RotateKey {
                new_key: fresh.public(),
                proof: fresh.sign(
                    ROTATE_NAMESPACE,
                    &rotation_message(&net.chain, &key.public(), nonce),
                ),
            })
        }
        "rotate_node_key" => Payload::RotateNodeKey(RotateNodeKey::new(
            &net.chain,
            &key.public(),
            net.nonce(key),
            &fresh,
        )),
        "register_patient(attested)" => net.registration(&key.public(), "hospital-b"),
        "register_patient(attested by a node key)" => {
            Payload::RegisterPatient(RegisterPatient::attested(
                &net.chain,
                &key.public(),
                mid("hospital-a"),
                &net.node("hospital-a"),
            ))
        }
        "register_patient(unattested)" => Payload::RegisterPatient(RegisterPatient::attested(
            &net.chain,
            &key.public(),
            mid("hospital-b"),
            key,
        )),
        "publish_dataset(hospital's)" => Payload::PublishDataset(PublishDataset {
            dataset: dataset_desc("hospital-a", 2),
        }),
        "set_consent" => Payload::SetConsent(SetConsent {
            purpose: Purpose::Teaching,
            study: None,
            decision: Decision::Allow,
            l4_opt_in: false,
        }),
        "revoke_consent" => Payload::RevokeConsent(RevokeConsent {
            purpose: Purpose::Research,
            study: None,
        }),
        "issue_grant" => Payload::IssueGrant(grant(
            "hospital-b",
            "hospital-a",
            &["Encounter"],
            now + DAY_MS,
            1,
        )),
        "revoke_grant" => Payload::RevokeGrant(RevokeGrant { grant: w.grant }),
        "submit_request(research)" => {
            request_for(Purpose::Research, Mode::Compute, &["hospital-a"])
        }
        "submit_request(treatment)" => {
            request_for(Purpose::Treatment, Mode::RecordSharing, &["hospital-a"])
        }
        "submit_request(insurance_claim)" => request_for(
            Purpose::InsuranceClaim,
            Mode::RecordSharing,
            &["hospital-a"],
        ),
        "submit_request(public_health)" => request_for(
            Purpose::PublicHealth,
            Mode::Compute,
            &["hospital-a", "hospital-b"],
        ),
        "submit_request(quality_management, own data)" => {
            request_for(Purpose::QualityManagement, Mode::Compute, &["hospital-a"])
        }
        "submit_request(quality_management, another's data)" => {
            request_for(Purpose::QualityManagement, Mode::Compute, &["hospital-b"])
        }
        "submit_request(patient_access)" => {
            request_for(Purpose::PatientAccess, Mode::RecordSharing, &["hospital-a"])
        }
        "approve(L3)" => approve(w.pending_l3),
        "approve(L4)" => approve(w.pending_l4),
        "approve(L3 of the data committee's institution)" => approve(w.pending_of_b),
        "reject(L3, with a reason)" => reject(w.pending_l3, "the cohort is too small"),
        "reject(L3, no reason)" => reject(w.pending_l3, " "),
        "terminate" => terminate(w.active),
        "submit_job(approved computation)" => submit_job(w.active, 1_000),
        "submit_job(another computation)" => submit_job_of(w.active, SPEC_HIV, 1_000),
        "submit_job(no epsilon)" => submit_job(w.active, 0),
        "close_round" => close_round(w.open_job, &["hospital-a"], &["hospital-a"]),
        "post_result" => post_result(w.closed_job, 100_000, &[("hospital-a", 4)]),
        "post_result(contribution signed by the member key)" => {
            let mut p = post_result(w.closed_job, 100_000, &[("hospital-a", 4)]);
            if let Payload::PostResult(r) = &mut p {
                r.contributions = list(vec![SignedContribution::sign(
                    &net.member("hospital-a"),
                    w.closed_job,
                    mid("hospital-a"),
                    4,
                )]);
            }
            p
        }
        "record_access" => record_access(
            net.pid(0),
            "insurer-1",
            AccessBasis::Grant(w.grant),
            &["Encounter"],
        ),
        "attest_destruction" => Payload::AttestDestruction(AttestDestruction { access: w.access }),
        "settle" => settle(w.ended),
        "rebind_patient" => Payload::RebindPatient(RebindPatient {
            patient: net.pid(2),
            new_key: fresh.public(),
            proof: RebindPatient::claim(&net.chain, &mid("hospital-a"), &fresh),
        }),
        "cancel_rebind" => Payload::CancelRebind(CancelRebind {
            patient: net.pid(0),
        }),
        "complete_rebind" => Payload::CompleteRebind(CompleteRebind {
            patient: net.pid(0),
        }),
        "publish_release(hospital's)" => publish_release("hospital-a", 2),
        "submit_request(open_pool)" => net.open_pool_request(&["hospital-a"]),
        "deliver_release" => deliver(w.open_pool),
        "attest_destruction(release)" => {
            Payload::AttestDestruction(AttestDestruction { access: w.delivery })
        }
        "submit_request(surveillance)" => surveillance_request(now),
        "record_alert" => record_alert(w.window_job, "ili", "010", "c1"),
        other => panic!("no payload for row {other}"),
    }
}

#[test]
fn authorization_matrix() {
    let w = world();
    let columns: Vec<&str> = w.keys.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        columns, SIGNERS,
        "the prepared keys are the matrix's columns"
    );
    let mut cells = 0;
    let mut wrong = Vec::new();
    let mut kinds = BTreeSet::new();
    let mut grid = String::new();
    for (row, allowed) in TABLE {
        let allowed: BTreeSet<&str> = allowed.split_whitespace().collect();
        assert!(
            allowed.iter().all(|a| SIGNERS.contains(a)),
            "{row}: unknown signer in {allowed:?}"
        );
        let mut line = String::new();
        for (signer, key) in &w.keys {
            let mut net = w.net.clone();
            let p = payload(&w, row, signer, key);
            kinds.insert(p.kind());
            let tx = net.tx(key, p);
            let root = net.state.root();
            let len = net.state.len();
            let nonce = net.nonce(key);
            let credits = net.state.total_credits().unwrap();
            let out = net.apply_tx(&tx);
            let expected = allowed.contains(signer);
            cells += 1;
            line.push(if out.is_ok() { 'Y' } else { '.' });
            match (&out, expected) {
                (Ok(_), true) => {}
                (Err(e), false) => {
                    // A refusal changed nothing.
                    let unchanged = net.state.root() == root
                        && net.state.len() == len
                        && net.nonce(key) == nonce
                        && net.state.total_credits().unwrap() == credits;
                    if !unchanged {
                        wrong.push(format!(
                            "{row} by {signer}: refused ({e}) but changed the state"
                        ));
                    }
                }
                (Ok(r), false) => wrong.push(format!("{row} by {signer}: accepted ({r:?})")),
                (Err(e), true) => wrong.push(format!("{row} by {signer}: refused: {e}")),
            }
        }
        grid.push_str(&format!("{line}  {row}\n"));
    }
    let every: BTreeSet<&str> = [
        "add_member",
        "remove_member",
        "update_policy",
        "vote",
        "register_user",
        "rotate_key",
        "register_patient",
        "publish_dataset",
        "set_consent",
        "revoke_consent",
        "issue_grant",
        "revoke_grant",
        "submit_request",
        "approve",
        "reject",
        "terminate",
        "submit_job",
        "post_result",
        "record_access",
        "attest_destruction",
        "settle",
        "close_round",
        "appoint_user",
        "dismiss_user",
        "rotate_node_key",
        "rebind_patient",
        "cancel_rebind",
        "complete_rebind",
        "publish_release",
        "deliver_release",
        "record_alert",
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds, every, "the matrix covers every transaction kind");
    println!("columns: {}", SIGNERS.join(" "));
    print!("{grid}");
    println!(
        "authorization matrix: {} rows ({} transaction kinds) x {} signers = {cells} cells",
        TABLE.len(),
        kinds.len(),
        SIGNERS.len()
    );
    assert!(
        wrong.is_empty(),
        "{} cells disagree with the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(cells, TABLE.len() * SIGNERS.len());
}
