//! A genesis consortium and helpers to sign and apply transactions.
//!
//! Three hospitals, a research institute and a regulator; a steward, a data committee member,
//! an ethics committee member and a clinician per hospital, a researcher at the institute and
//! an auditor at the regulator; deterministic keys; each hospital publishes a dataset with fields
//! of every level; four patients register.

#![allow(dead_code)]

use medspace_state::{BlockContext, Created, Receipt, State, TxError};
use medspace_types::*;
use std::collections::BTreeMap;

/// Genesis block time.
pub const T0: u64 = 1_700_000_000_000;
/// One day in ms.
pub const DAY_MS: u64 = 86_400_000;
/// Starting credits of every member.
pub const BALANCE: u64 = 1_000_000;
/// The hospitals.
pub const HOSPITALS: [&str; 3] = ["hospital-a", "hospital-b", "hospital-c"];
/// Every member, in genesis order.
pub const MEMBERS: [&str; 5] = [
    "hospital-a",
    "hospital-b",
    "hospital-c",
    "research-1",
    "regulator",
];
/// The researcher.
pub const RESEARCHER: &str = "research-1.researcher";
/// The regulator's auditor.
pub const AUDITOR: &str = "regulator.auditor";
/// The fixture policy's per-job epsilon cap: the largest contract budget, so that the budget
/// tests exercise each contract's own budget (the cap has tests of its own).
pub const FIXTURE_JOB_CAP: u64 = 10_000_000;
/// Patients registered by [`Net::new`].
pub const PATIENTS: usize = 4;
/// The query every fixture request computes: persons counted, no code (L1 under the fixture's
/// classification).
pub const SPEC: &str = r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":"count"}"#;
/// A query filtering on HIV infection, a sensitive code: L4 whatever its fields.
pub const SPEC_HIV: &str = r#"{"version":1,"cohort":{"conditions":["86406008"],"index_date":"2025-01-01"},"aggregate":"count"}"#;

pub fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}
pub fn mid(s: &str) -> MemberId {
    MemberId::new(s).unwrap()
}
pub fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}
pub fn did(s: &str) -> DatasetId {
    DatasetId::new(s).unwrap()
}
pub fn text<const N: usize>(s: &str) -> Text<N> {
    Text::new(s).unwrap()
}
pub fn list<T, const N: usize>(v: Vec<T>) -> List<T, N> {
    List::new(v).unwrap()
}
pub fn steward(h: &str) -> String {
    format!("{h}.steward")
}
pub fn dc(h: &str) -> String {
    format!("{h}.dc")
}
pub fn ec(h: &str) -> String {
    format!("{h}.ec")
}
pub fn clinician(h: &str) -> String {
    format!("{h}.clinician")
}
pub fn dataset_of(h: &str) -> DatasetId {
    did(&format!("{h}.cdm"))
}

/// The users of the genesis consortium: (id, member, role).
pub fn genesis_users() -> Vec<(String, &'static str, Role)> {
    let mut v = Vec::new();
    for h in HOSPITALS {
        v.push((steward(h), h, Role::Steward));
        v.push((dc(h), h, Role::DataCommittee));
        v.push((ec(h), h, Role::EthicsCommittee));
        v.push((clinician(h), h, Role::Clinician));
    }
    v.push((RESEARCHER.to_string(), "research-1", Role::Researcher));
    v.push((AUDITOR.to_string(), "regulator", Role::Auditor));
    v
}

pub fn member_kind(m: &str) -> MemberKind {
    match m {
        "research-1" => MemberKind::ResearchInstitute,
        "regulator" => MemberKind::Regulator,
        _ => MemberKind::Hospital,
    }
}

/// The node key of the member whose member key is `member` (the fixture's derivation).
pub fn node_of(member: &Keypair) -> Keypair {
    let h = Hash::of(&[b"fixture/node-key", member.public().as_ref()]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.0[..8]);
    Keypair::from_seed(u64::from_be_bytes(b))
}

pub fn member_desc(id: &str, kind: MemberKind, key: &Keypair) -> Member {
    Member {
        id: mid(id),
        name: text(&format!("{id} institution")),
        kind,
        key: key.public(),
        node_key: node_of(key).public(),
        agreement_key: Hash::of(&[id.as_bytes()]),
    }
}

pub fn genesis() -> (
    Genesis,
    BTreeMap<String, Keypair>,
    BTreeMap<String, Keypair>,
) {
    let mut members = BTreeMap::new();
    let mut gm = Vec::new();
    for (i, m) in MEMBERS.iter().enumerate() {
        let k = Keypair::from_seed(1 + i as u64);
        gm.push(GenesisMember {
            member: member_desc(m, member_kind(m), &k),
            balance: BALANCE,
        });
        members.insert(m.to_string(), k);
    }
    let mut users = BTreeMap::new();
    let mut gu = Vec::new();
    for (i, (id, m, role)) in genesis_users().into_iter().enumerate() {
        let k = Keypair::from_seed(100 + i as u64);
        gu.push(GenesisUser {
            id: uid(&id),
            member: mid(m),
            role,
            key: k.public(),
        });
        users.insert(id, k);
    }
    let g = Genesis {
        chain_id: name("medspace-test"),
        time_ms: T0,
        members: gm,
        users: gu,
        policy: Policy {
            classification: classification(),
            max_job_epsilon_micro: FIXTURE_JOB_CAP,
            ..Policy::default()
        },
    };
    (g, members, users)
}

pub fn field_desc(n: &str, level: Level) -> FieldDesc {
    FieldDesc {
        name: text(n),
        level,
        missing_ppm: 1_000,
        invalid_ppm: 0,
    }
}

pub fn table_desc(n: &str, rows: u64, fields: Vec<FieldDesc>) -> TableDesc {
    TableDesc {
        name: text(n),
        rows,
        duplicate_ppm: 0,
        implausible_ppm: 0,
        fields: list(fields),
    }
}

/// The dataset a hospital publishes: fields of every level, counts and quality, no data.
pub fn dataset_desc(h: &str, version: u32) -> DatasetDescription {
    DatasetDescription {
        id: dataset_of(h),
        title: text(&format!("{h} OMOP CDM extract")),
        version,
        tables: list(vec![
            table_desc(
                "person",
                20,
                vec![
                    field_desc("gender_concept_id", Level::L1),
                    field_desc("year_of_birth", Level::L2),
                ],
            ),
            table_desc(
                "condition_occurrence",
                120,
                vec![field_desc("condition_source_value", Level::L3)],
            ),
            table_desc("genomics", 20, vec![field_desc("hiv_status", Level::L4)]),
        ]),
        content_hash: Hash::of(&[h.as_bytes(), &version.to_be_bytes()]),
    }
}

/// The id of a hospital's open-pool release.
pub fn release_of(h: &str) -> DatasetId {
    did(&format!("{h}.open"))
}

/// A hospital's de-identified release (every field L1; `person.year_of_birth` is classified L2
/// in its source dataset's entry).
pub fn release_desc(h: &str, version: u32) -> DatasetDescription {
    DatasetDescription {
        id: release_of(h),
        title: text(&format!("{h} de-identified extract")),
        version,
        tables: list(vec![table_desc(
            "person",
            18,
            vec![
                field_desc("gender_concept_id", Level::L1),
                field_desc("year_of_birth", Level::L1),
            ],
        )]),
        content_hash: Hash::of(&[b"extract", h.as_bytes(), &version.to_be_bytes()]),
    }
}

/// The figures of a k = 5, l = 2 release of 18 persons of `h`'s dataset.
pub fn release_figures(h: &str) -> ReleaseFigures {
    ReleaseFigures {
        source: dataset_of(h),
        purposes: list(vec![Purpose::Research, Purpose::Teaching]),
        consent_height: 1,
        spec_hash: Hash::of(&[b"spec", h.as_bytes()]),
        k: 5,
        l: 2,
        persons: 18,
        suppressed: 2,
        prosecutor_max_ppm: 200_000,
        prosecutor_avg_ppm: 166_667,
        journalist_max_ppm: 200_000,
        marketer_ppm: 166_667,
        at_risk_ppm: 0,
    }
}

/// The release transaction of [`release_desc`] and [`release_figures`].
pub fn publish_release(h: &str, version: u32) -> Payload {
    Payload::PublishRelease(PublishRelease {
        dataset: release_desc(h, version),
        release: release_figures(h),
    })
}

/// The fixture consortium's classification: fields up to each level (the ones
/// [`dataset_desc`] publishes), anything else L1.
pub fn classification() -> medspace_types::classification::Classification {
    use medspace_types::classification::{Classification, FieldLevel};
    let f = |table: &str, column: &str, level| FieldLevel {
        table: text(table),
        column: text(column),
        level,
    };
    Classification {
        fields: list(vec![
            f("person", "gender_concept_id", Level::L1),
            // L1 here (published at L2 by the hospitals) so that a query, which always reads the
            // birth year, is L1 unless it filters on a sensitive code.
            f("person", "year_of_birth", Level::L1),
            f("condition_occurrence", "condition_source_value", Level::L3),
            f("genomics", "hiv_status", Level::L4),
        ]),
        sensitive: Classification::default().sensitive,
        unlisted: Level::L1,
    }
}

/// A field of a hospital's dataset at `level`.
pub fn field_at(h: &str, level: Level) -> FieldRef {
    let (table, field) = match level {
        Level::L1 => ("person", "gender_concept_id"),
        Level::L2 => ("person", "year_of_birth"),
        Level::L3 => ("condition_occurrence", "condition_source_value"),
        Level::L4 => ("genomics", "hiv_status"),
    };
    FieldRef {
        dataset: dataset_of(h),
        table: text(table),
        field: text(field),
    }
}

/// A request for `purpose` in `mode` touching the `level` field of each of `owners`.
pub fn request(
    purpose: Purpose,
    mode: Mode,
    owners: &[&str],
    level: Level,
    expiry_ms: u64,
    epsilon_budget: u64,
    fee: u64,
) -> Payload {
    Payload::SubmitRequest(SubmitRequest {
        purpose,
        mode,
        study: None,
        fields: list(owners.iter().map(|h| field_at(h, level)).collect()),
        computation: Blob::new(SPEC.as_bytes().to_vec()).unwrap(),
        expiry_ms,
        epsilon_budget,
        fee,
    })
}

/// The test network: a state, its keys, and the current block. Cloning is cheap (the state is
/// a persistent trie): each cell of the authorization matrix runs on its own clone.
#[derive(Clone)]
pub struct Net {
    pub state: State,
    pub chain: Name,
    pub ctx: BlockContext,
    pub members: BTreeMap<String, Keypair>,
    pub users: BTreeMap<String, Keypair>,
    pub patients: Vec<Keypair>,
}

impl Net {
    /// Genesis only: no datasets, no patients; the next block is height 1.
    pub fn genesis_only() -> Self {
        Self::genesis_with(|_, _| {})
    }

    /// [`Net::genesis_with`] that may also add members (and their keys).
    pub fn genesis_with_members(
        edit: impl FnOnce(&mut Genesis, &mut BTreeMap<String, Keypair>, &mut BTreeMap<String, Keypair>),
    ) -> Self {
        let (mut g, mut members, mut users) = genesis();
        edit(&mut g, &mut members, &mut users);
        Self::from_genesis(&g, members, users)
    }

    /// [`Net::genesis_only`] of the fixture genesis as `edit` changes it (it may add users
    /// and their keys).
    pub fn genesis_with(edit: impl FnOnce(&mut Genesis, &mut BTreeMap<String, Keypair>)) -> Self {
        Self::genesis_with_members(|g, _, users| edit(g, users))
    }

    fn from_genesis(
        g: &Genesis,
        members: BTreeMap<String, Keypair>,
        users: BTreeMap<String, Keypair>,
    ) -> Self {
        let state = State::genesis(g).expect("genesis");
        Self {
            state,
            chain: g.chain_id.clone(),
            ctx: BlockContext {
                height: 1,
                time_ms: T0 + 1_000,
            },
            members,
            users,
            patients: Vec::new(),
        }
    }

    /// Genesis, then block 1: every hospital's steward publishes its dataset and
    /// [`PATIENTS`] patients register. The next block is height 2.
    pub fn new() -> Self {
        Self::new_with(|_, _| {})
    }

    /// [`Net::new`] on the fixture genesis as `edit` changes it.
    pub fn new_with(edit: impl FnOnce(&mut Genesis, &mut BTreeMap<String, Keypair>)) -> Self {
        Self::new_from(Self::genesis_with(edit))
    }

    /// `net` (a genesis), then block 1 as in [`Net::new`].
    pub fn new_from(mut net: Net) -> Self {
        for h in HOSPITALS {
            let k = net.user(&steward(h));
            net.ok(
                &k,
                Payload::PublishDataset(PublishDataset {
                    dataset: dataset_desc(h, 1),
                }),
            );
        }
        for i in 0..PATIENTS {
            net.register_patient(1_000 + i as u64);
        }
        net.next_block();
        net
    }

    pub fn register_patient(&mut self, seed: u64) -> PatientId {
        let k = Keypair::from_seed(seed);
        let r = self.ok(&k, self.registration(&k.public(), "hospital-a"));
        let id = PatientId::from_key(&k.public());
        assert_eq!(r.created, Some(Created::Patient(id)));
        self.patients.push(k);
        id
    }

    /// The registration of `patient`, attested by the member `hospital`'s key.
    pub fn registration(&self, patient: &PublicKey, hospital: &str) -> Payload {
        Payload::RegisterPatient(RegisterPatient::attested(
            &self.chain,
            patient,
            mid(hospital),
            &self.member(hospital),
        ))
    }

    /// `member` registers an institutional user `id` with `role` by its own key; returns the
    /// user's key.
    #[track_caller]
    pub fn register_user(&mut self, member: &str, id: &str, role: Role, seed: u64) -> Keypair {
        let k = Keypair::from_seed(seed);
        let m = self.member(member);
        self.ok(
            &m,
            Payload::RegisterUser(RegisterUser {
                user: uid(id),
                role,
                key: k.public(),
            }),
        );
        self.users.insert(id.to_string(), k.clone());
        k
    }

    /// `proposer` proposes `payload` and every other active member votes yes until it passes;
    /// returns the proposal.
    #[track_caller]
    pub fn pass(&mut self, proposer: &str, payload: Payload) -> ProposalId {
        let k = self.member(proposer);
        let r = self.ok(&k, payload);
        let Some(Created::Proposal(id)) = r.created else {
            panic!("no proposal created: {r:?}");
        };
        let voters: Vec<String> = self
            .state
            .members()
            .unwrap()
            .into_iter()
            .filter(|m| m.active && m.member.id.as_str() != proposer)
            .map(|m| m.member.id.to_string())
            .collect();
        for v in voters {
            if self.state.proposal(id).unwrap().unwrap().status.as_str() != "open" {
                break;
            }
            let k = self.member(&v);
            self.ok(
                &k,
                Payload::Vote(Vote {
                    proposal: id,
                    approve: true,
                }),
            );
        }
        assert_eq!(
            self.state.proposal(id).unwrap().unwrap().status.as_str(),
            "passed"
        );
        id
    }

    pub fn member(&self, m: &str) -> Keypair {
        self.members
            .get(m)
            .unwrap_or_else(|| panic!("member {m}"))
            .clone()
    }
    /// The node key of member `m` (registered with it: [`node_of`] its member key).
    pub fn node(&self, m: &str) -> Keypair {
        node_of(&self.member(m))
    }
    pub fn user(&self, u: &str) -> Keypair {
        self.users
            .get(u)
            .unwrap_or_else(|| panic!("user {u}"))
            .clone()
    }
    pub fn patient(&self, i: usize) -> Keypair {
        self.patients[i].clone()
    }
    pub fn pid(&self, i: usize) -> PatientId {
        PatientId::from_key(&self.patients[i].public())
    }

    /// Moves to the next block (height + 1, time + 1 s).
    pub fn next_block(&mut self) {
        self.ctx.height += 1;
        self.ctx.time_ms += 1_000;
    }

    /// Moves to a block `ms` later.
    pub fn advance(&mut self, ms: u64) {
        self.ctx.height += 1;
        self.ctx.time_ms += ms;
    }

    pub fn nonce(&self, key: &Keypair) -> u64 {
        self.state.next_nonce(&key.public()).unwrap()
    }

    /// `payload` signed by `key` with its next nonce.
    pub fn tx(&self, key: &Keypair, payload: Payload) -> SignedTx {
        SignedTx::new(&self.chain, key, self.nonce(key), payload)
    }

    pub fn apply_tx(&mut self, tx: &SignedTx) -> Result<Receipt, TxError> {
        let ctx = self.ctx;
        self.state.apply(tx, &ctx)
    }

    pub fn try_apply(&mut self, key: &Keypair, payload: Payload) -> Result<Receipt, TxError> {
        let tx = self.tx(key, payload);
        self.apply_tx(&tx)
    }

    /// Applies and expects success; checks that the nonce moved on and credits are conserved.
    #[track_caller]
    pub fn ok(&mut self, key: &Keypair, payload: Payload) -> Receipt {
        let before = self.nonce(key);
        let credits = self.state.total_credits().unwrap();
        let kind = payload.kind();
        let r = self
            .try_apply(key, payload)
            .unwrap_or_else(|e| panic!("{kind} refused: {e}"));
        assert_eq!(r.kind, kind);
        if !matches!(r.kind, "rotate_key") {
            assert_eq!(self.nonce(key), before + 1, "{kind} advances the nonce");
        }
        if !matches!(r.kind, "add_member" | "vote") {
            assert_eq!(
                self.state.total_credits().unwrap(),
                credits,
                "{kind} conserves credits"
            );
        }
        r
    }

    /// Applies a transaction that must be refused; checks that the root, the signer's nonce and
    /// the credits are exactly as before, and returns the error.
    #[track_caller]
    pub fn refuse_tx(&mut self, tx: &SignedTx) -> TxError {
        let root = self.state.root();
        let len = self.state.len();
        let nonce = self.state.next_nonce(&tx.body.signer).unwrap();
        let credits = self.state.total_credits().unwrap();
        let err = match self.apply_tx(tx) {
            Ok(r) => panic!("{} was accepted: {r:?}", tx.body.payload.kind()),
            Err(e) => e,
        };
        assert_eq!(self.state.root(), root, "refusal changed the root: {err}");
        assert_eq!(self.state.len(), len, "refusal changed the record count");
        assert_eq!(
            self.state.next_nonce(&tx.body.signer).unwrap(),
            nonce,
            "refusal changed the nonce: {err}"
        );
        assert_eq!(self.state.total_credits().unwrap(), credits);
        // The message says what was wrong, in lowercase key=value style.
        assert!(!err.to_string().is_empty());
        err
    }

    #[track_caller]
    pub fn refuse(&mut self, key: &Keypair, payload: Payload) -> TxError {
        let tx = self.tx(key, payload);
        self.refuse_tx(&tx)
    }

    /// Submits a request by `requester` and returns the contract id.
    #[track_caller]
    pub fn submit(&mut self, requester: &str, payload: Payload) -> ContractId {
        let k = self.user(requester);
        match self.ok(&k, payload).created {
            Some(Created::Contract(c)) => c,
            other => panic!("no contract created: {other:?}"),
        }
    }

    /// A research request of the researcher: `level` fields of `owners`, 30 days, budget
    /// 1,000,000 micro-epsilon, fee 1,000.
    #[track_caller]
    pub fn research(&mut self, mode: Mode, owners: &[&str], level: Level) -> ContractId {
        let p = request(
            Purpose::Research,
            mode,
            owners,
            level,
            self.ctx.time_ms + 30 * DAY_MS,
            1_000_000,
            1_000,
        );
        self.submit(RESEARCHER, p)
    }

    /// Every missing approval of `c`, each given by the first user who may.
    #[track_caller]
    pub fn approve_all(&mut self, c: ContractId) {
        loop {
            let rec = self.state.contract(c).unwrap().unwrap();
            let Some(missing) = rec.missing_approvals().next().cloned() else {
                break;
            };
            let (who, _, _) = genesis_users()
                .into_iter()
                .find(|(id, m, role)| {
                    *role == missing.role
                        && missing.member.as_ref().is_none_or(|x| x.as_str() == *m)
                        && !rec.approvals.iter().any(|a| a.by == Some(uid(id)))
                })
                .expect("a user who can approve");
            let k = self.user(&who);
            self.ok(&k, Payload::Approve(Approve { contract: c }));
        }
        assert_eq!(
            self.state
                .contract(c)
                .unwrap()
                .unwrap()
                .status_at(self.ctx.time_ms),
            "active"
        );
    }

    /// `h`'s steward publishes its release (version 1).
    #[track_caller]
    pub fn release(&mut self, h: &str) {
        let k = self.user(&steward(h));
        self.ok(&k, publish_release(h, 1));
    }

    /// The researcher's open-pool request for the releases of `owners` (30 days, fee 1,000).
    pub fn open_pool_request(&self, owners: &[&str]) -> Payload {
        Payload::SubmitRequest(SubmitRequest {
            purpose: Purpose::Research,
            mode: Mode::OpenPool,
            study: None,
            fields: list(
                owners
                    .iter()
                    .map(|h| FieldRef {
                        dataset: release_of(h),
                        table: text("person"),
                        field: text("year_of_birth"),
                    })
                    .collect(),
            ),
            computation: Blob::default(),
            expiry_ms: self.ctx.time_ms + 30 * DAY_MS,
            epsilon_budget: 0,
            fee: 1_000,
        })
    }

    /// An approved research contract.
    #[track_caller]
    pub fn active(&mut self, mode: Mode, owners: &[&str], level: Level) -> ContractId {
        let c = self.research(mode, owners, level);
        self.approve_all(c);
        c
    }

    /// Submits a job under `c` (by the researcher) and returns its id.
    #[track_caller]
    pub fn job(&mut self, c: ContractId, epsilon: u64) -> JobId {
        let k = self.user(RESEARCHER);
        match self.ok(&k, submit_job(c, epsilon)).created {
            Some(Created::Job(j)) => j,
            other => panic!("no job created: {other:?}"),
        }
    }

    /// Submits a job running `spec` under `c` (by the researcher) and returns its id.
    #[track_caller]
    pub fn job_of(&mut self, c: ContractId, spec: &str, epsilon: u64) -> JobId {
        let k = self.user(RESEARCHER);
        match self.ok(&k, submit_job_of(c, spec, epsilon)).created {
            Some(Created::Job(j)) => j,
            other => panic!("no job created: {other:?}"),
        }
    }

    /// The job's result as its aggregator (the contract's first owner) posts it: the round
    /// closed with every contributor as dealer and survivor, then the result with the
    /// reservation charged. No contributions: the round stays open, nothing is charged.
    #[track_caller]
    pub fn finish(&mut self, j: JobId, contributions: &[(&str, u64)]) {
        let job = self.state.job(j).unwrap().unwrap();
        let c = self.state.contract(job.contract).unwrap().unwrap();
        let aggregator = c.owners.iter().next().unwrap().to_string();
        let agg = self.node(&aggregator);
        if contributions.is_empty() {
            self.ok(&agg, post_result(j, 0, &[]));
            return;
        }
        let sites: Vec<&str> = contributions.iter().map(|(m, _)| *m).collect();
        self.ok(&agg, close_round(j, &sites, &sites));
        self.ok(&agg, post_result(j, job.epsilon_reserved, contributions));
    }

    /// The patient `i` consents (allow) to `purpose`, broadly.
    #[track_caller]
    pub fn consent(&mut self, i: usize, purpose: Purpose, l4_opt_in: bool) {
        let k = self.patient(i);
        self.ok(
            &k,
            Payload::SetConsent(SetConsent {
                purpose,
                study: None,
                decision: Decision::Allow,
                l4_opt_in,
            }),
        );
    }

    pub fn balances(&self) -> BTreeMap<String, u64> {
        MEMBERS
            .iter()
            .map(|m| (m.to_string(), self.state.balance(&mid(m)).unwrap()))
            .collect()
    }
}

pub fn submit_job(contract: ContractId, epsilon: u64) -> Payload {
    submit_job_of(contract, SPEC, epsilon)
}

/// A job running the computation `spec` under `contract`.
pub fn submit_job_of(contract: ContractId, spec: &str, epsilon: u64) -> Payload {
    Payload::SubmitJob(SubmitJob {
        contract,
        computation: Blob::new(spec.as_bytes().to_vec()).unwrap(),
        epsilon,
    })
}

/// A genesis member's member key (the genesis derivation).
pub fn member_keypair(m: &str) -> Keypair {
    let i = MEMBERS
        .iter()
        .position(|x| *x == m)
        .unwrap_or(MEMBERS.len()) as u64;
    Keypair::from_seed(1 + i)
}

/// A genesis member's node key.
pub fn node_keypair(m: &str) -> Keypair {
    node_of(&member_keypair(m))
}

/// The job's aggregator closes its round: `sharers` dealt, `survivors` sent masked vectors.
pub fn close_round(job: JobId, sharers: &[&str], survivors: &[&str]) -> Payload {
    Payload::CloseRound(CloseRound {
        job,
        sharers: list(sharers.iter().map(|m| mid(m)).collect()),
        survivors: list(survivors.iter().map(|m| mid(m)).collect()),
    })
}

/// A result whose contributions are each signed by their member's node key.
pub fn post_result(job: JobId, epsilon_spent: u64, contributions: &[(&str, u64)]) -> Payload {
    Payload::PostResult(PostResult {
        job,
        result_hash: Hash::of(&[b"result", &job.0.to_be_bytes()]),
        epsilon_spent,
        contributions: list(
            contributions
                .iter()
                .map(|(m, records)| {
                    SignedContribution::sign(&node_keypair(m), job, mid(m), *records)
                })
                .collect(),
        ),
    })
}

pub fn terminate(contract: ContractId) -> Payload {
    Payload::Terminate(Terminate {
        contract,
        reason: text("ended early"),
    })
}

pub fn settle(contract: ContractId) -> Payload {
    Payload::Settle(Settle { contract })
}

pub fn approve(contract: ContractId) -> Payload {
    Payload::Approve(Approve { contract })
}

/// A grant from a patient to `grantee` for records held by `holder`.
pub fn grant(
    grantee: &str,
    holder: &str,
    types: &[&str],
    expiry_ms: u64,
    max_uses: u32,
) -> IssueGrant {
    IssueGrant {
        grantee: mid(grantee),
        holder: mid(holder),
        purpose: Purpose::Treatment,
        resource_types: list(types.iter().map(|t| text(t)).collect()),
        period_from_ms: 0,
        period_to_ms: T0,
        expiry_ms,
        max_uses,
        code_hash: Hash::of(&[b"code"]),
    }
}

pub fn record_access(
    patient: PatientId,
    recipient: &str,
    basis: AccessBasis,
    types: &[&str],
) -> Payload {
    Payload::RecordAccess(RecordAccess {
        patient,
        recipient: mid(recipient),
        basis,
        resource_types: list(types.iter().map(|t| text(t)).collect()),
        resource_count: 3,
        content_hash: Hash::of(&[b"bundle"]),
    })
}

/// The per-window epsilon of [`surveillance_spec`], in micro-epsilon (0.1).
pub const SURVEILLANCE_EPSILON: u64 = 100_000;

/// A surveillance definition: syndromes `ili` and `agi`, regions `010` and `013`, window 0
/// starting on `start`, `windows` windows of `window_days` days, [`SURVEILLANCE_EPSILON`] per
/// window.
pub fn surveillance_spec(start: &str, window_days: u32, windows: u32) -> String {
    format!(
        r#"{{"version":1,"cohort":{{"index_date":"{start}"}},"aggregate":{{"surveillance":{{"syndromes":[{{"name":"ili","codes":["6142004"]}},{{"name":"agi","codes":["25374005"]}}],"regions":["010","013"],"start":"{start}","window_days":{window_days},"windows":{windows},"epsilon_per_window":0.1}}}}}}"#
    )
}

/// An alert on `job`'s surveillance window: 12 observed, 4.5 expected, score 3.1.
pub fn record_alert(job: JobId, syndrome: &str, region: &str, method: &str) -> Payload {
    Payload::RecordAlert(RecordAlert {
        job,
        syndrome: text(syndrome),
        region: text(region),
        method: text(method),
        observed: 12,
        expected_milli: 4_500,
        score_milli: 3_100,
    })
}
