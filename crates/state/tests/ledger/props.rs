//! Property tests: the codec of signed transactions, determinism of the state machine, refusals
//! that change nothing, and `apply_block` equal to applying one by one.

use super::fixture::*;
use medspace_state::{BlockContext, Created, Receipt, State, TxError, split_fee};
use medspace_types::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::Union;

// ---- strategies for every payload kind ----

fn name_s() -> impl Strategy<Value = Name> {
    "[a-z0-9][a-z0-9._-]{0,20}".prop_map(|s| Name::new(&s).unwrap())
}
fn member_s() -> impl Strategy<Value = MemberId> {
    name_s().prop_map(MemberId)
}
fn user_s() -> impl Strategy<Value = UserId> {
    name_s().prop_map(UserId)
}
fn study_s() -> impl Strategy<Value = Option<StudyId>> {
    proptest::option::of(name_s().prop_map(StudyId))
}
fn text_s<const N: usize>() -> impl Strategy<Value = Text<N>> {
    "[ -~]{0,40}".prop_map(|s| Text::new(s.chars().take(N).collect::<String>()).unwrap())
}
fn hash_s() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}
fn key_s() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey::from_bytes)
}
fn sig_s() -> impl Strategy<Value = Signature> {
    (0u64..64, vec(any::<u8>(), 0..8)).prop_map(|(seed, m)| Keypair::from_seed(seed).sign(b"x", &m))
}
fn blob_s() -> impl Strategy<Value = Blob<MAX_COMPUTATION>> {
    vec(any::<u8>(), 0..64).prop_map(|b| Blob::new(b).unwrap())
}
fn purpose_s() -> impl Strategy<Value = Purpose> {
    prop::sample::select(vec![
        Purpose::Treatment,
        Purpose::PatientAccess,
        Purpose::Research,
        Purpose::Teaching,
        Purpose::InsuranceClaim,
        Purpose::PublicHealth,
        Purpose::DrugSafety,
        Purpose::QualityManagement,
    ])
}
fn role_s() -> impl Strategy<Value = Role> {
    prop::sample::select(vec![
        Role::Steward,
        Role::DataCommittee,
        Role::EthicsCommittee,
        Role::Researcher,
        Role::Clinician,
        Role::ClaimsOfficer,
        Role::Auditor,
        Role::Patient,
    ])
}
fn level_s() -> impl Strategy<Value = Level> {
    prop::sample::select(vec![Level::L1, Level::L2, Level::L3, Level::L4])
}
fn mode_s() -> impl Strategy<Value = Mode> {
    prop::sample::select(vec![Mode::OpenPool, Mode::RecordSharing, Mode::Compute])
}
fn kind_s() -> impl Strategy<Value = MemberKind> {
    prop::sample::select(vec![
        MemberKind::Hospital,
        MemberKind::Insurer,
        MemberKind::Pharma,
        MemberKind::ResearchInstitute,
        MemberKind::PublicHealthAgency,
        MemberKind::Regulator,
    ])
}
fn types_s() -> impl Strategy<Value = List<Text<48>, 32>> {
    vec(text_s::<48>(), 0..4).prop_map(|v| List::new(v).unwrap())
}
fn contributions_s() -> impl Strategy<Value = List<SignedContribution, 64>> {
    vec(
        (member_s(), any::<u64>(), any::<u64>()).prop_map(|(member, records, seed)| {
            SignedContribution::sign(&Keypair::from_seed(seed), JobId(seed), member, records)
        }),
        0..5,
    )
    .prop_map(|v| List::new(v).unwrap())
}
fn policy_s() -> impl Strategy<Value = Policy> {
    (
        any::<u32>(),
        any::<u32>(),
        vec(
            (level_s(), role_s(), any::<bool>()).prop_map(|(level, role, per)| Requirement {
                level,
                role,
                scope: if per {
                    ApprovalScope::PerOwner
                } else {
                    ApprovalScope::Consortium
                },
            }),
            0..5,
        ),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        vec(purpose_s(), 0..8),
        any::<u64>(),
    )
        .prop_map(|(num, den, reqs, k, ms, eps, implied, ttl)| Policy {
            vote_num: num,
            vote_den: den,
            requirements: List::new(reqs).unwrap(),
            min_cell_k: k,
            max_contract_ms: ms,
            max_epsilon_micro: eps,
            implied_consent: List::new(implied).unwrap(),
            proposal_ttl_ms: ttl,
            max_job_epsilon_micro: eps / 3,
            dataset_epsilon_micro: ms / 5,
            classification: medspace_types::classification::Classification {
                fields: List::new(vec![medspace_types::classification::FieldLevel {
                    table: Text::new("person").unwrap(),
                    column: Text::new("person_id").unwrap(),
                    level: Level::ALL[(k % 4) as usize],
                }])
                .unwrap(),
                sensitive: List::default(),
                unlisted: Level::ALL[(ttl % 4) as usize],
            },
            rebind_delay_ms: ttl / 7,
            open_pool: medspace_types::OpenPoolPolicy {
                min_k: k / 3,
                min_l: k % 7,
                max_risk_ppm: k / 11,
                destruction_ms: ms / 13,
            },
            quality_floors: List::new(vec![medspace_types::QualityFloor {
                purpose: None,
                level: Level::ALL[(k % 4) as usize],
                max_missing_ppm: k / 5,
                max_invalid_ppm: k / 6,
                max_duplicate_ppm: k / 7,
                max_implausible_ppm: k / 8,
            }])
            .unwrap(),
        })
}
fn dataset_s() -> impl Strategy<Value = DatasetDescription> {
    let field = (text_s::<64>(), level_s(), any::<u32>(), any::<u32>()).prop_map(
        |(name, level, missing_ppm, invalid_ppm)| FieldDesc {
            name,
            level,
            missing_ppm,
            invalid_ppm,
        },
    );
    let table = (
        text_s::<64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        vec(field, 0..4),
    )
        .prop_map(|(name, rows, d, i, fields)| TableDesc {
            name,
            rows,
            duplicate_ppm: d,
            implausible_ppm: i,
            fields: List::new(fields).unwrap(),
        });
    (
        name_s(),
        text_s::<256>(),
        any::<u32>(),
        vec(table, 0..3),
        hash_s(),
    )
        .prop_map(
            |(id, title, version, tables, content_hash)| DatasetDescription {
                id: DatasetId(id),
                title,
                version,
                tables: List::new(tables).unwrap(),
                content_hash,
            },
        )
}

fn payload_s() -> impl Strategy<Value = Payload> {
    let member = (
        member_s(),
        text_s::<128>(),
        kind_s(),
        key_s(),
        key_s(),
        hash_s(),
    )
        .prop_map(|(id, name, kind, key, node_key, agreement_key)| Member {
            id,
            name,
            kind,
            key,
            node_key,
            agreement_key,
        });
    let field_ref =
        (name_s(), text_s::<64>(), text_s::<64>()).prop_map(|(d, table, field)| FieldRef {
            dataset: DatasetId(d),
            table,
            field,
        });
    Union::new(vec![
        (member, any::<u64>())
            .prop_map(|(member, initial_balance)| {
                Payload::AddMember(AddMember {
                    member,
                    initial_balance,
                })
            })
            .boxed(),
        member_s()
            .prop_map(|member| Payload::RemoveMember(RemoveMember { member }))
            .boxed(),
        policy_s()
            .prop_map(|policy| Payload::UpdatePolicy(UpdatePolicy { policy }))
            .boxed(),
        (any::<u64>(), any::<bool>())
            .prop_map(|(p, approve)| {
                Payload::Vote(Vote {
                    proposal: ProposalId(p),
                    approve,
                })
            })
            .boxed(),
        (user_s(), role_s(), key_s())
            .prop_map(|(user, role, key)| Payload::RegisterUser(RegisterUser { user, role, key }))
            .boxed(),
        (key_s(), sig_s())
            .prop_map(|(new_key, proof)| Payload::RotateKey(RotateKey { new_key, proof }))
            .boxed(),
        (member_s(), sig_s())
            .prop_map(|(hospital, attestation)| {
                Payload::RegisterPatient(RegisterPatient {
                    hospital,
                    attestation,
                })
            })
            .boxed(),
        (user_s(), member_s(), role_s(), key_s())
            .prop_map(|(user, member, role, key)| {
                Payload::AppointUser(AppointUser {
                    user,
                    member,
                    role,
                    key,
                })
            })
            .boxed(),
        user_s()
            .prop_map(|user| Payload::DismissUser(DismissUser { user }))
            .boxed(),
        dataset_s()
            .prop_map(|dataset| Payload::PublishDataset(PublishDataset { dataset }))
            .boxed(),
        (purpose_s(), study_s(), any::<bool>(), any::<bool>())
            .prop_map(|(purpose, study, allow, l4_opt_in)| {
                Payload::SetConsent(SetConsent {
                    purpose,
                    study,
                    decision: if allow {
                        Decision::Allow
                    } else {
                        Decision::Deny
                    },
                    l4_opt_in,
                })
            })
            .boxed(),
        (purpose_s(), study_s())
            .prop_map(|(purpose, study)| Payload::RevokeConsent(RevokeConsent { purpose, study }))
            .boxed(),
        (
            (member_s(), member_s(), purpose_s(), types_s()),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
                hash_s(),
            ),
        )
            .prop_map(
                |((grantee, holder, purpose, resource_types), (f, t, e, m, h))| {
                    Payload::IssueGrant(IssueGrant {
                        grantee,
                        holder,
                        purpose,
                        resource_types,
                        period_from_ms: f,
                        period_to_ms: t,
                        expiry_ms: e,
                        max_uses: m,
                        code_hash: h,
                    })
                },
            )
            .boxed(),
        any::<u64>()
            .prop_map(|g| Payload::RevokeGrant(RevokeGrant { grant: GrantId(g) }))
            .boxed(),
        (
            (purpose_s(), mode_s(), study_s(), vec(field_ref, 0..4)),
            (blob_s(), any::<u64>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(
                |((purpose, mode, study, fields), (computation, e, b, fee))| {
                    Payload::SubmitRequest(SubmitRequest {
                        purpose,
                        mode,
                        study,
                        fields: List::new(fields).unwrap(),
                        computation,
                        expiry_ms: e,
                        epsilon_budget: b,
                        fee,
                    })
                },
            )
            .boxed(),
        any::<u64>()
            .prop_map(|c| {
                Payload::Approve(Approve {
                    contract: ContractId(c),
                })
            })
            .boxed(),
        (any::<u64>(), text_s::<256>())
            .prop_map(|(c, reason)| {
                Payload::Reject(Reject {
                    contract: ContractId(c),
                    reason,
                })
            })
            .boxed(),
        (any::<u64>(), text_s::<256>())
            .prop_map(|(c, reason)| {
                Payload::Terminate(Terminate {
                    contract: ContractId(c),
                    reason,
                })
            })
            .boxed(),
        (any::<u64>(), blob_s(), any::<u64>())
            .prop_map(|(c, computation, epsilon)| {
                Payload::SubmitJob(SubmitJob {
                    contract: ContractId(c),
                    computation,
                    epsilon,
                })
            })
            .boxed(),
        (any::<u64>(), hash_s(), any::<u64>(), contributions_s())
            .prop_map(|(j, result_hash, epsilon_spent, contributions)| {
                Payload::PostResult(PostResult {
                    job: JobId(j),
                    result_hash,
                    epsilon_spent,
                    contributions,
                })
            })
            .boxed(),
        (any::<u64>(), vec(member_s(), 0..4), vec(member_s(), 0..4))
            .prop_map(|(j, sharers, survivors)| {
                Payload::CloseRound(CloseRound {
                    job: JobId(j),
                    sharers: List::new(sharers).unwrap(),
                    survivors: List::new(survivors).unwrap(),
                })
            })
            .boxed(),
        (
            any::<[u8; 32]>(),
            member_s(),
            any::<(bool, u64)>(),
            types_s(),
            any::<u32>(),
            hash_s(),
        )
            .prop_map(|(p, recipient, (g, id), resource_types, n, h)| {
                Payload::RecordAccess(RecordAccess {
                    patient: PatientId(p),
                    recipient,
                    basis: if g {
                        AccessBasis::Grant(GrantId(id))
                    } else {
                        AccessBasis::Contract(ContractId(id))
                    },
                    resource_types,
                    resource_count: n,
                    content_hash: h,
                })
            })
            .boxed(),
        any::<u64>()
            .prop_map(|a| {
                Payload::AttestDestruction(AttestDestruction {
                    access: AccessId(a),
                })
            })
            .boxed(),
        any::<u64>()
            .prop_map(|c| {
                Payload::Settle(Settle {
                    contract: ContractId(c),
                })
            })
            .boxed(),
    ])
}

fn signed_tx_s() -> impl Strategy<Value = SignedTx> {
    (name_s(), 0u64..32, any::<u64>(), payload_s()).prop_map(|(chain, seed, nonce, payload)| {
        SignedTx::new(&chain, &Keypair::from_seed(seed), nonce, payload)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn signed_tx_round_trips(tx in signed_tx_s()) {
        let bytes = tx.to_bytes();
        let back = SignedTx::from_bytes(bytes.clone()).unwrap();
        prop_assert_eq!(&back, &tx);
        prop_assert_eq!(back.to_bytes(), bytes);
        prop_assert_eq!(back.id(), tx.id());
        prop_assert!(back.verify_signature());
    }

    #[test]
    fn truncated_bytes_are_refused(tx in signed_tx_s(), cut in any::<prop::sample::Index>()) {
        let bytes = tx.to_bytes();
        let len = cut.index(bytes.len());
        prop_assert!(SignedTx::from_bytes(bytes.slice(..len)).is_err(), "prefix of {} bytes", len);
    }

    #[test]
    fn extended_bytes_are_refused(tx in signed_tx_s(), extra in vec(any::<u8>(), 1..4)) {
        let mut bytes = tx.to_bytes().to_vec();
        bytes.extend_from_slice(&extra);
        prop_assert!(SignedTx::from_bytes(bytes).is_err());
    }

    #[test]
    fn unknown_version_is_refused(tx in signed_tx_s(), v in 2u8..=255) {
        let mut bytes = tx.to_bytes().to_vec();
        bytes[0] = v;
        prop_assert!(SignedTx::from_bytes(bytes).is_err());
    }

    #[test]
    fn split_fee_is_exact(fee in any::<u64>(), records in vec(0u64..1_000_000, 0..8)) {
        let con: Vec<Contribution> = records
            .iter()
            .enumerate()
            .map(|(i, r)| Contribution { member: mid(&format!("m{i}")), records: *r })
            .collect();
        let total: u128 = records.iter().map(|r| u128::from(*r)).sum();
        let out = split_fee(fee, &con);
        if total == 0 || fee == 0 {
            prop_assert!(out.is_empty());
        } else {
            let sum: u128 = out.iter().map(|(_, a)| u128::from(*a)).sum();
            prop_assert_eq!(sum, u128::from(fee));
            for (c, (m, amount)) in con.iter().zip(out.iter()) {
                prop_assert_eq!(&c.member, m);
                let exact = u128::from(fee) * u128::from(c.records);
                let floor = exact / total;
                prop_assert!(u128::from(*amount) == floor || u128::from(*amount) == floor + 1);
            }
        }
    }
}

// ---- random sequences of valid and invalid transactions ----

/// One step of a random history: a kind and raw numbers the interpreter turns into a
/// transaction against the current state (so that many are valid, many are not).
#[derive(Clone, Debug)]
struct Op {
    kind: u8,
    a: u8,
    b: u8,
    x: u32,
}

fn op_s() -> impl Strategy<Value = Op> {
    (0u8..32, any::<u8>(), any::<u8>(), any::<u32>()).prop_map(|(kind, a, b, x)| Op {
        kind,
        a,
        b,
        x,
    })
}

#[derive(Default)]
struct Seen {
    contracts: Vec<ContractId>,
    jobs: Vec<JobId>,
    grants: Vec<GrantId>,
    accesses: Vec<AccessId>,
    proposals: Vec<ProposalId>,
    rotations: u64,
}

fn pick<T: Copy>(v: &[T], i: u8, fallback: T) -> T {
    if v.is_empty() {
        fallback
    } else {
        v[usize::from(i) % v.len()]
    }
}

const PURPOSES: [Purpose; 8] = [
    Purpose::Treatment,
    Purpose::PatientAccess,
    Purpose::Research,
    Purpose::Teaching,
    Purpose::InsuranceClaim,
    Purpose::PublicHealth,
    Purpose::DrugSafety,
    Purpose::QualityManagement,
];
const LEVELS: [Level; 4] = [Level::L1, Level::L2, Level::L3, Level::L4];
const MODES: [Mode; 3] = [Mode::Compute, Mode::RecordSharing, Mode::OpenPool];

fn user_key(net: &Net, i: u8) -> (String, Keypair) {
    let names: Vec<&String> = net.users.keys().collect();
    let n = names[usize::from(i) % names.len()].clone();
    let k = net.user(&n);
    (n, k)
}

/// Turns an op into a signed transaction (maybe deliberately broken) for the current block.
fn build(net: &mut Net, seen: &Seen, op: &Op) -> Option<SignedTx> {
    let (a, b, x) = (op.a, op.b, op.x);
    let member = |i: u8| MEMBERS[usize::from(i) % MEMBERS.len()];
    let patient = |net: &Net, i: u8| net.patient(usize::from(i) % PATIENTS);
    let contract = pick(&seen.contracts, b, ContractId(u64::from(b)));
    // Some kinds more often than others: approvals, jobs and results need several steps.
    let kind = match op.kind {
        21..=23 => 3,
        24 | 25 => 5,
        26 | 27 => 6,
        28 => 9,
        29 => 2,
        30 => 11,
        31 => 0,
        k => k,
    };
    let (key, payload) = match kind {
        0 => (
            patient(net, a),
            Payload::SetConsent(SetConsent {
                purpose: PURPOSES[usize::from(b) % 8],
                study: (x & 4 != 0).then(|| StudyId::new("study-1").unwrap()),
                decision: if x & 1 == 0 {
                    Decision::Allow
                } else {
                    Decision::Deny
                },
                l4_opt_in: x & 2 != 0,
            }),
        ),
        1 => (
            patient(net, a),
            Payload::RevokeConsent(RevokeConsent {
                purpose: PURPOSES[usize::from(b) % 8],
                study: (x & 4 != 0).then(|| StudyId::new("study-1").unwrap()),
            }),
        ),
        2 => {
            let who = [
                RESEARCHER.to_string(),
                clinician("hospital-a"),
                AUDITOR.to_string(),
                steward("hospital-b"),
            ];
            let requester = &who[usize::from(a) % if x & 0x1000 == 0 { 1 } else { who.len() }];
            let mask = (x >> 4) % 7 + 1;
            let owners: Vec<&str> = HOSPITALS
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, h)| *h)
                .collect();
            let purpose = if x & 0x2000 == 0 {
                Purpose::Research
            } else {
                PURPOSES[usize::from(b) % 8]
            };
            let expiry = net.ctx.time_ms + 1 + u64::from(x >> 20) * 3_600_000;
            (
                net.user(requester),
                request(
                    purpose,
                    MODES[(x % 3) as usize],
                    &owners,
                    LEVELS[((x >> 2) % 4) as usize],
                    expiry,
                    u64::from(b) * 10_000,
                    u64::from(x >> 8) % 2_000,
                ),
            )
        }
        3 => {
            // Mostly a user whose approval is missing, sometimes anyone.
            let able = net.state.contract(contract).ok().flatten().and_then(|c| {
                let miss = c.missing_approvals().next().cloned()?;
                genesis_users()
                    .into_iter()
                    .find(|(id, m, role)| {
                        *role == miss.role
                            && miss.member.as_ref().is_none_or(|x| x.as_str() == *m)
                            && !c.approvals.iter().any(|ap| ap.by == Some(uid(id)))
                    })
                    .map(|(id, _, _)| id)
            });
            let k = match able {
                Some(id) if a % 4 != 0 => net.user(&id),
                _ => user_key(net, a).1,
            };
            (k, approve(contract))
        }
        4 => (
            user_key(net, a).1,
            Payload::Reject(Reject {
                contract,
                reason: text("no"),
            }),
        ),
        5 => {
            // Mostly under an active compute contract, sometimes anything.
            let target = if a % 4 == 0 {
                contract
            } else {
                let now = net.ctx.time_ms;
                let live: Vec<ContractId> = seen
                    .contracts
                    .iter()
                    .copied()
                    .filter(|c| {
                        net.state
                            .contract(*c)
                            .unwrap()
                            .is_some_and(|r| r.is_active(now) && r.mode == Mode::Compute)
                    })
                    .collect();
                pick(&live, b, contract)
            };
            let k = if a % 8 == 0 {
                user_key(net, b).1
            } else {
                net.user(RESEARCHER)
            };
            (k, submit_job(target, u64::from(x % 400) * 1_000))
        }
        6 => {
            let job = pick(&seen.jobs, b, JobId(u64::from(b)));
            let record = net.state.job(job).unwrap();
            let owners: Vec<MemberId> = record
                .as_ref()
                .and_then(|j| net.state.contract(j.contract).unwrap())
                .map(|c| c.owners.into_vec())
                .unwrap_or_default();
            let poster = match owners.first() {
                Some(o) if a % 4 != 0 => o.to_string(),
                _ => member(a).to_string(),
            };
            let names: Vec<String> = if x & 0x100 == 0 && !owners.is_empty() {
                owners.iter().map(|m| m.to_string()).collect()
            } else {
                HOSPITALS
                    .iter()
                    .take((x % 4) as usize)
                    .map(|h| h.to_string())
                    .collect()
            };
            let sites: Vec<&str> = names.iter().map(String::as_str).collect();
            let closed = record.as_ref().is_some_and(|j| j.round.is_some());
            if !closed && x & 0x200 == 0 {
                // The aggregator (mostly) closes the round with (mostly) every holder.
                (net.node(&poster), close_round(job, &sites, &sites))
            } else {
                // Mostly what the ledger charges (the reservation once closed, 0 before).
                let reserved = record.as_ref().map_or(0, |j| j.epsilon_reserved);
                let spent = match (x >> 10) % 4 {
                    0 => u64::from(x % 300) * 1_000,
                    _ if closed => reserved,
                    _ => 0,
                };
                let contributions: Vec<(&str, u64)> = if closed || x & 0x400 != 0 {
                    sites
                        .iter()
                        .map(|h| (*h, u64::from(x >> 12) % 50))
                        .collect()
                } else {
                    Vec::new()
                };
                (net.node(&poster), post_result(job, spent, &contributions))
            }
        }
        7 => {
            let expiry = net.ctx.time_ms + u64::from(x % 20) * 1_000;
            (
                patient(net, a),
                Payload::IssueGrant(grant(
                    member(b),
                    member(b.wrapping_add(1 + (x % 2) as u8)),
                    if x & 8 == 0 {
                        &["Encounter"]
                    } else {
                        &["Encounter", "Observation"]
                    },
                    expiry,
                    x % 3,
                )),
            )
        }
        8 => (
            patient(net, a),
            Payload::RevokeGrant(RevokeGrant {
                grant: pick(&seen.grants, b, GrantId(u64::from(b))),
            }),
        ),
        9 => {
            let types: &[&str] = if x & 2 == 0 {
                &["Encounter"]
            } else {
                &["Condition"]
            };
            let (holder, p) = if x & 1 == 0 {
                let g = pick(&seen.grants, b, GrantId(1));
                match net.state.grant(g).unwrap() {
                    Some(rec) if a % 4 != 0 => (
                        rec.terms.holder.to_string(),
                        record_access(
                            rec.patient,
                            rec.terms.grantee.as_str(),
                            AccessBasis::Grant(g),
                            types,
                        ),
                    ),
                    _ => (
                        member(a / 4).to_string(),
                        record_access(
                            net.pid(usize::from(a) % PATIENTS),
                            member((x >> 4) as u8),
                            AccessBasis::Grant(g),
                            types,
                        ),
                    ),
                }
            } else {
                let pid = net.pid(usize::from(a) % PATIENTS);
                match net.state.contract(contract).unwrap() {
                    Some(c) if a % 4 != 0 && !c.owners.is_empty() => (
                        c.owners.as_slice()[usize::from(b) % c.owners.len()].to_string(),
                        record_access(
                            pid,
                            c.requester_member.as_str(),
                            AccessBasis::Contract(contract),
                            types,
                        ),
                    ),
                    _ => (
                        member(a / 4).to_string(),
                        record_access(
                            pid,
                            member((x >> 4) as u8),
                            AccessBasis::Contract(contract),
                            types,
                        ),
                    ),
                }
            };
            (net.node(&holder), p)
        }
        10 => {
            let k = if a % 2 == 0 {
                net.member(member(b))
            } else {
                user_key(net, b).1
            };
            (
                k,
                Payload::AttestDestruction(AttestDestruction {
                    access: pick(&seen.accesses, a, AccessId(1)),
                }),
            )
        }
        11 => {
            let k = match a % 3 {
                0 => net.user(RESEARCHER),
                1 => net.member(member(b)),
                _ => user_key(net, b).1,
            };
            (k, settle(contract))
        }
        12 => {
            let k = match a % 3 {
                0 => net.user(RESEARCHER),
                1 => net.member(member(b)),
                _ => user_key(net, b).1,
            };
            (k, terminate(contract))
        }
        13 => {
            // A new block, sometimes days later (contracts and grants expire).
            if x % 20 == 0 {
                net.advance(u64::from(x % 40) * DAY_MS);
            } else {
                net.advance(u64::from(x % 10_000));
            }
            return None;
        }
        14 => {
            // A bad nonce.
            let (_, k) = user_key(net, a);
            let n = net.nonce(&k);
            let nonce = if x % 2 == 0 {
                n + 1 + u64::from(b)
            } else {
                n.wrapping_sub(1)
            };
            return Some(SignedTx::new(&net.chain, &k, nonce, approve(contract)));
        }
        15 => {
            // A bad signature: the body is changed after signing.
            let mut tx = net.tx(
                &patient(net, a),
                Payload::SetConsent(SetConsent {
                    purpose: Purpose::Research,
                    study: None,
                    decision: Decision::Allow,
                    l4_opt_in: false,
                }),
            );
            tx.body.nonce += 1;
            return Some(tx);
        }
        16 => {
            // The wrong chain.
            let k = net.user(RESEARCHER);
            return Some(SignedTx::new(
                &name("other-chain"),
                &k,
                net.nonce(&k),
                approve(contract),
            ));
        }
        17 => {
            let k = net.member(member(a));
            if x % 3 == 0 || seen.proposals.is_empty() {
                let id = format!("insurer-{}", x % 3);
                (
                    k,
                    Payload::AddMember(AddMember {
                        member: member_desc(
                            &id,
                            MemberKind::Insurer,
                            &Keypair::from_seed(300 + u64::from(x % 3)),
                        ),
                        initial_balance: u64::from(b) * 100,
                    }),
                )
            } else {
                (
                    k,
                    Payload::Vote(Vote {
                        proposal: pick(&seen.proposals, b, ProposalId(0)),
                        approve: x & 1 == 0,
                    }),
                )
            }
        }
        18 => {
            let k = net.member(member(a));
            (
                k,
                Payload::RegisterUser(RegisterUser {
                    user: uid(&format!("{}.extra{}", member(a), b % 4)),
                    role: Role::Researcher,
                    key: Keypair::from_seed(400 + u64::from(b % 8)).public(),
                }),
            )
        }
        19 => {
            // A user rotates their key.
            let (n, old) = user_key(net, a);
            let new = Keypair::from_seed(500 + seen.rotations);
            let nonce = net.nonce(&old);
            let proof = new.sign(
                ROTATE_NAMESPACE,
                &rotation_message(&net.chain, &old.public(), nonce),
            );
            let tx = SignedTx::new(
                &net.chain,
                &old,
                nonce,
                Payload::RotateKey(RotateKey {
                    new_key: new.public(),
                    proof,
                }),
            );
            if x % 32 == 0 {
                // Keep signing with the old key afterwards (retired-key refusals).
                return Some(tx);
            }
            net.users.insert(n, new);
            return Some(tx);
        }
        _ => {
            let k = net.member(member(a));
            (
                k,
                Payload::PublishDataset(PublishDataset {
                    dataset: dataset_desc(HOSPITALS[usize::from(b) % 3], x % 4),
                }),
            )
        }
    };
    Some(net.tx(&key, payload))
}

fn note(seen: &mut Seen, tx: &SignedTx, r: &Receipt) {
    match r.created {
        Some(Created::Contract(c)) => seen.contracts.push(c),
        Some(Created::Job(j)) => seen.jobs.push(j),
        Some(Created::Grant(g)) => seen.grants.push(g),
        Some(Created::Access(a)) => seen.accesses.push(a),
        Some(Created::Proposal(p)) => seen.proposals.push(p),
        _ => {}
    }
    if matches!(tx.body.payload, Payload::RotateKey(_)) {
        seen.rotations += 1;
    }
}

type History = Vec<(BlockContext, SignedTx, Result<Receipt, TxError>)>;

/// Applies the ops to a fresh consortium, checking after every transaction that a refusal
/// changed nothing and that credits are conserved; returns the history and the final state.
fn run(ops: &[Op]) -> (History, State) {
    let mut net = Net::new();
    let mut seen = Seen::default();
    let mut minted: u128 = 0;
    let initial = net.state.total_credits().unwrap();
    let mut history = Vec::new();
    for op in ops {
        let Some(tx) = build(&mut net, &seen, op) else {
            continue;
        };
        let root = net.state.root();
        let nonce = net.state.next_nonce(&tx.body.signer).unwrap();
        let credits = net.state.total_credits().unwrap();
        let out = net.apply_tx(&tx);
        match &out {
            Err(e) => {
                assert_eq!(net.state.root(), root, "refusal changed the root: {e}");
                assert_eq!(net.state.next_nonce(&tx.body.signer).unwrap(), nonce);
                assert_eq!(net.state.total_credits().unwrap(), credits);
            }
            Ok(r) => {
                let now = net.state.total_credits().unwrap();
                if matches!(r.kind, "add_member" | "vote") {
                    assert!(now >= credits);
                    minted += now - credits;
                } else {
                    assert_eq!(now, credits, "{} changed the credits", r.kind);
                }
                note(&mut seen, &tx, r);
            }
        }
        assert_eq!(net.state.total_credits().unwrap(), initial + minted);
        history.push((net.ctx, tx, out));
    }
    (history, net.state)
}

fn fresh() -> State {
    Net::new().state
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The same random sequence of valid and invalid transactions, applied twice to fresh
    /// genesis states, gives the same outcomes and the same root; applying it block by block
    /// with `apply_block` gives the same again.
    #[test]
    fn same_transactions_same_root(ops in vec(op_s(), 1..80)) {
        let (history, state) = run(&ops);
        let mut again = fresh();
        for (ctx, tx, out) in &history {
            let root = again.root();
            let r = again.apply(tx, ctx);
            prop_assert_eq!(&r, out);
            if r.is_err() {
                prop_assert_eq!(again.root(), root);
            }
        }
        prop_assert_eq!(again.root(), state.root());

        let mut blocks = fresh();
        let mut i = 0;
        while i < history.len() {
            let ctx = history[i].0;
            let mut j = i;
            while j < history.len() && history[j].0 == ctx {
                j += 1;
            }
            let txs: Vec<SignedTx> = history[i..j].iter().map(|h| h.1.clone()).collect();
            let outs = blocks.apply_block(&ctx, &txs);
            for (k, o) in outs.iter().enumerate() {
                prop_assert_eq!(o, &history[i + k].2);
            }
            i = j;
        }
        prop_assert_eq!(blocks.root(), state.root());
        prop_assert_eq!(blocks.len(), state.len());
    }
}

/// The random histories are not all refusals: a long one built from the same strategy
/// succeeds at every main kind of transaction, and refuses with many kinds of errors.
#[test]
fn random_history_exercises_every_kind() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeMap;
    let mut runner = TestRunner::deterministic();
    let ops = vec(op_s(), 1500..1501)
        .new_tree(&mut runner)
        .unwrap()
        .current();
    let (history, state) = run(&ops);
    let mut ok: BTreeMap<&str, usize> = BTreeMap::new();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for (_, tx, out) in &history {
        match out {
            Ok(r) => *ok.entry(r.kind).or_default() += 1,
            Err(e) => {
                let variant = format!("{e:?}");
                let variant = variant
                    .split([' ', '{', '('])
                    .next()
                    .unwrap_or("")
                    .to_string();
                *refused
                    .entry(format!("{}:{variant}", tx.body.payload.kind()))
                    .or_default() += 1
            }
        }
    }
    eprintln!("accepted: {ok:?}");
    eprintln!("refused: {refused:?}");
    for kind in [
        "set_consent",
        "revoke_consent",
        "submit_request",
        "approve",
        "submit_job",
        "post_result",
        "close_round",
        "issue_grant",
        "record_access",
        "settle",
        "terminate",
        "rotate_key",
    ] {
        assert!(
            ok.get(kind).copied().unwrap_or(0) > 0,
            "no accepted {kind}: {ok:?}"
        );
    }
    assert!(refused.len() >= 15, "{refused:?}");
    let mut again = fresh();
    for (ctx, tx, out) in &history {
        assert_eq!(&again.apply(tx, ctx), out);
    }
    assert_eq!(again.root(), state.root());
}

fn all_keys(net: &Net) -> Vec<Keypair> {
    let mut keys: Vec<Keypair> = net.members.values().cloned().collect();
    keys.extend(net.users.values().cloned());
    keys.extend(net.patients.iter().cloned());
    keys.push(Keypair::from_seed(77_777));
    keys
}

/// Avoids the known overflow (see `update_policy_with_large_threshold_terms_does_not_overflow`)
/// so that this property checks everything else.
fn avoids_known_overflow(p: &Payload) -> bool {
    !matches!(p, Payload::UpdatePolicy(u) if u.policy.vote_num.checked_mul(2).is_none())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Arbitrary payloads signed by any key of the consortium (or a stranger) with the right
    /// nonce: the state machine never panics, and every refusal leaves root, nonce and credits
    /// as they were.
    #[test]
    fn arbitrary_payloads_refused_without_change(
        payloads in vec(payload_s().prop_filter("known overflow", avoids_known_overflow), 1..12),
        signers in vec(any::<prop::sample::Index>(), 12),
    ) {
        let mut net = Net::new();
        let keys = all_keys(&net);
        for (payload, who) in payloads.into_iter().zip(signers) {
            let key = who.get(&keys).clone();
            let tx = net.tx(&key, payload);
            let root = net.state.root();
            let nonce = net.nonce(&key);
            let credits = net.state.total_credits().unwrap();
            match net.apply_tx(&tx) {
                Err(_) => {
                    prop_assert_eq!(net.state.root(), root);
                    prop_assert_eq!(net.nonce(&key), nonce);
                    prop_assert_eq!(net.state.total_credits().unwrap(), credits);
                }
                Ok(r) => {
                    prop_assert_ne!(net.state.root(), root);
                    if !matches!(r.kind, "add_member" | "vote") {
                        prop_assert_eq!(net.state.total_credits().unwrap(), credits);
                    }
                }
            }
        }
    }
}

#[test]
fn oversized_and_malformed_bytes_are_refused() {
    let net = Net::new();
    let k = net.user(RESEARCHER);
    // Over the size limit.
    let err = SignedTx::from_bytes(vec![1u8; MAX_TX_BYTES + 1]).unwrap_err();
    assert!(
        matches!(
            err,
            TypeError::TooLong {
                what: "transaction",
                ..
            }
        ),
        "{err:?}"
    );
    // Empty, and an unknown payload tag.
    assert!(SignedTx::from_bytes(Vec::new()).is_err());
    let tx = net.tx(&k, settle(ContractId(1)));
    let mut bytes = tx.to_bytes().to_vec();
    // version | chain id (len + bytes) | signer (32) | nonce (8) | payload tag
    let tag_at = 1 + 1 + net.chain.as_str().len() + 32 + 8;
    assert_eq!(bytes[tag_at], 21, "settle's tag");
    bytes[tag_at] = 200;
    assert!(SignedTx::from_bytes(bytes.clone()).is_err());
    bytes[tag_at] = 0;
    assert!(SignedTx::from_bytes(bytes).is_err());
    // A chain id that is not a valid name (upper case).
    let mut bytes = tx.to_bytes().to_vec();
    bytes[2] = b'M';
    assert!(SignedTx::from_bytes(bytes).is_err());
    // A computation one byte over its bound cannot even be built.
    assert!(Blob::<MAX_COMPUTATION>::new(vec![0; MAX_COMPUTATION + 1]).is_err());
}
