//! Every decoder of medspace-types, fed bytes and strings it did not write.
//!
//! The properties, for every public decode entry point (`Decode` of each wire type,
//! `SignedTx::from_bytes`, the `FromStr` text forms, the JSON forms, key parsing):
//! - arbitrary input never panics: it gives a typed error or a value;
//! - a value decoded from bytes re-encodes to exactly those bytes (the encoding is canonical),
//!   and a value parsed from text prints to text that parses back to it;
//! - valid encodings with one byte flipped, overwritten, inserted or removed obey the same rule,
//!   and a valid encoding cut short or extended is always refused.
//!
//! 256 cases per property; the whole binary runs in a few seconds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use bytes::Bytes;
use commonware_codec::{DecodeExt, Encode};
use medspace_types::codec::read_tag_pub;
use medspace_types::ids::MAX_NAME;
use medspace_types::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::str::FromStr;
use std::sync::LazyLock;

const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

// ---- the properties ----

/// `bytes` decode as `T` to a value that encodes to exactly `bytes`, or are refused.
fn canonical_or_refused<T>(bytes: &[u8]) -> Result<Option<T>, TestCaseError>
where
    T: DecodeExt<()> + Encode + Debug,
{
    match T::decode(Bytes::copy_from_slice(bytes)) {
        Err(_) => Ok(None),
        Ok(v) => {
            let encoded = v.encode();
            prop_assert_eq!(
                encoded.as_ref(),
                bytes,
                "{} decoded to {:?} but re-encodes differently",
                std::any::type_name::<T>(),
                v
            );
            Ok(Some(v))
        }
    }
}

/// `s` parses as `T` to a value whose text parses back to the same value, or is refused.
fn text_round_trips<T>(s: &str) -> Result<Option<T>, TestCaseError>
where
    T: FromStr + ToString + PartialEq + Debug,
    T::Err: Debug,
{
    match s.parse::<T>() {
        Err(_) => Ok(None),
        Ok(v) => {
            let text = v.to_string();
            let again = text.parse::<T>();
            prop_assert!(
                matches!(&again, Ok(w) if *w == v),
                "{s:?} parsed to {v:?}, printed as {text:?}, which parses to {again:?}"
            );
            Ok(Some(v))
        }
    }
}

/// `bytes` parse as JSON for `T` to a value whose JSON parses back to the same value, or are
/// refused.
fn json_round_trips<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    if let Ok(v) = serde_json::from_slice::<T>(bytes) {
        let json = serde_json::to_vec(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = serde_json::from_slice::<T>(&json);
        prop_assert!(
            matches!(&again, Ok(w) if *w == v),
            "{} from JSON does not round-trip: {again:?}",
            std::any::type_name::<T>()
        );
    }
    Ok(())
}

/// Arbitrary bytes, weighted towards the shapes decoders branch on: short inputs, the exact
/// sizes of fixed-size values (one byte for an enum, 8 for an id, 32 for a hash or a key, 64 for
/// a signature, with or without a tag), small values (tags, lengths, booleans) and long inputs.
fn bytes_s() -> impl Strategy<Value = Vec<u8>> {
    let fixed = prop::sample::select(vec![1usize, 2, 8, 9, 32, 33, 64, 65]);
    prop_oneof![
        vec(any::<u8>(), 0..48),
        fixed.prop_flat_map(|n| vec(any::<u8>(), n)),
        vec(0u8..4, 0..160),
        vec(any::<u8>(), 0..1200),
    ]
}

// ---- arbitrary bytes, one property per wire type ----

macro_rules! arbitrary_bytes {
    ($($test:ident: $ty:ty),* $(,)?) => {
        proptest! {
            #![proptest_config(config())]
            $(
                #[test]
                fn $test(bytes in bytes_s()) {
                    canonical_or_refused::<$ty>(&bytes)?;
                }
            )*
        }

        /// Every wire type, by name, with its property.
        const WIRE_TYPES: &[(&str, Check)] = &[$((stringify!($ty), check::<$ty>)),*];
    };
}

arbitrary_bytes! {
    // codec.rs
    text_48: Text<48>,
    text_256: Text<256>,
    list_of_texts: List<Text<48>, 32>,
    list_of_contributions: List<Contribution, 64>,
    list_of_signed_contributions: List<SignedContribution, 64>,
    list_of_member_ids: List<MemberId, 64>,
    blob: Blob<MAX_COMPUTATION>,
    // ids.rs
    hash: Hash,
    name: Name,
    member_id: MemberId,
    user_id: UserId,
    dataset_id: DatasetId,
    study_id: StudyId,
    contract_id: ContractId,
    job_id: JobId,
    grant_id: GrantId,
    access_id: AccessId,
    proposal_id: ProposalId,
    patient_id: PatientId,
    // keys.rs
    public_key: PublicKey,
    signature: Signature,
    // domain.rs
    role: Role,
    level: Level,
    purpose: Purpose,
    mode: Mode,
    member_kind: MemberKind,
    approval_scope: ApprovalScope,
    decision: Decision,
    member: Member,
    requirement: Requirement,
    policy: Policy,
    field_desc: FieldDesc,
    table_desc: TableDesc,
    dataset_description: DatasetDescription,
    field_ref: FieldRef,
    contribution: Contribution,
    signed_contribution: SignedContribution,
    access_basis: AccessBasis,
    open_pool_policy: OpenPoolPolicy,
    release_figures: ReleaseFigures,
    // tx.rs
    add_member: AddMember,
    remove_member: RemoveMember,
    update_policy: UpdatePolicy,
    vote: Vote,
    register_user: RegisterUser,
    rotate_key: RotateKey,
    register_patient: RegisterPatient,
    rebind_patient: RebindPatient,
    cancel_rebind: CancelRebind,
    complete_rebind: CompleteRebind,
    publish_dataset: PublishDataset,
    set_consent: SetConsent,
    revoke_consent: RevokeConsent,
    issue_grant: IssueGrant,
    revoke_grant: RevokeGrant,
    submit_request: SubmitRequest,
    approve: Approve,
    reject: Reject,
    terminate: Terminate,
    submit_job: SubmitJob,
    post_result: PostResult,
    record_access: RecordAccess,
    attest_destruction: AttestDestruction,
    publish_release: PublishRelease,
    deliver_release: DeliverRelease,
    settle: Settle,
    close_round: CloseRound,
    appoint_user: AppointUser,
    dismiss_user: DismissUser,
    payload: Payload,
    tx_body: TxBody,
    signed_tx: SignedTx,
}

proptest! {
    #![proptest_config(config())]

    /// The entry point nodes and the API use: the size limit, then the canonical decoding; a
    /// decoded transaction's id and signature check work on any content.
    #[test]
    fn signed_tx_from_arbitrary_bytes(bytes in bytes_s()) {
        from_bytes_canonical_or_refused(&bytes)?;
    }

    /// Every tag byte reads as itself; an empty buffer is refused.
    #[test]
    fn tags(bytes in vec(any::<u8>(), 0..3)) {
        let mut buf = Bytes::from(bytes.clone());
        match (read_tag_pub(&mut buf), bytes.first()) {
            (Ok(t), Some(first)) => prop_assert_eq!(t, *first),
            (Err(_), None) => {}
            (got, first) => prop_assert!(false, "tag {got:?} from first byte {first:?}"),
        }
    }

    /// Any 32 bytes are a `PublicKey` (points are validated on use): checking, decompressing and
    /// verifying with one never panics, and an invalid point verifies nothing.
    #[test]
    fn public_key_points(bytes in any::<[u8; 32]>(), sig in any::<[u8; 32]>()) {
        let key = PublicKey::from_bytes(bytes);
        let valid = key.is_valid();
        prop_assert_eq!(key.verifier().is_some(), valid);
        let mut raw = [0u8; 64];
        for (to, from) in raw.iter_mut().zip(sig.iter().chain(bytes.iter())) {
            *to = *from;
        }
        let sig = Signature::decode(Bytes::copy_from_slice(&raw));
        prop_assert!(sig.is_ok(), "any 64 bytes are a signature");
        if let Ok(sig) = sig {
            let ok = key.verify(TX_NAMESPACE, b"message", &sig);
            prop_assert!(valid || !ok);
        }
    }
}

/// [`SignedTx::from_bytes`]: a value that re-encodes to the bytes, or a typed error; oversized
/// input is refused before decoding.
fn from_bytes_canonical_or_refused(bytes: &[u8]) -> Result<(), TestCaseError> {
    match SignedTx::from_bytes(Bytes::copy_from_slice(bytes)) {
        Err(TypeError::TooLong { len, max, .. }) => {
            prop_assert!(len > max && max == MAX_TX_BYTES);
        }
        Err(TypeError::Decode { .. }) => {}
        Err(other) => prop_assert!(false, "unexpected error kind: {other:?}"),
        Ok(tx) => {
            let encoded = tx.to_bytes();
            prop_assert_eq!(encoded.as_ref(), bytes);
            prop_assert_eq!(tx.id(), Hash::of(&[bytes]));
            let _ = tx.verify_signature();
        }
    }
    Ok(())
}

// ---- arbitrary strings ----

/// Arbitrary text, and text shaped like each text form (names, prefixed hex ids, hex keys).
fn text_s() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9._ A-Z-]{0,70}",
        "[cjgap]-[0-9a-fA-F+-]{0,20}",
        "(pt-)?[0-9a-fA-FxX ]{60,68}",
        "[a-z_0-9L]{0,24}",
    ]
}

proptest! {
    #![proptest_config(config())]

    /// Names and name ids: exactly the text they parse from.
    #[test]
    fn name_ids_from_text(s in text_s()) {
        let name = Name::new(&s).ok();
        if let Some(n) = &name {
            prop_assert_eq!(n.as_str(), s.as_str());
            prop_assert!(!s.is_empty() && s.len() <= MAX_NAME);
        }
        let ids = [
            text_round_trips::<MemberId>(&s)?.map(|v| v.to_string()),
            text_round_trips::<UserId>(&s)?.map(|v| v.to_string()),
            text_round_trips::<DatasetId>(&s)?.map(|v| v.to_string()),
            text_round_trips::<StudyId>(&s)?.map(|v| v.to_string()),
        ];
        for id in ids {
            prop_assert_eq!(id.as_deref(), name.as_ref().map(Name::as_str));
        }
    }

    /// Numbered ids, hashes, pseudonyms and keys: their text parses back to them.
    #[test]
    fn numbered_ids_hashes_and_keys_from_text(s in text_s()) {
        text_round_trips::<ContractId>(&s)?;
        text_round_trips::<JobId>(&s)?;
        text_round_trips::<GrantId>(&s)?;
        text_round_trips::<AccessId>(&s)?;
        text_round_trips::<ProposalId>(&s)?;
        if let Some(h) = text_round_trips::<Hash>(&s)? {
            prop_assert_eq!(h.to_hex(), s.to_ascii_lowercase());
        }
        text_round_trips::<PatientId>(&s)?;
        if let Some(k) = text_round_trips::<PublicKey>(&s)? {
            prop_assert!(k.is_valid(), "a parsed key is a valid point");
        }
        if let Ok(k) = Keypair::from_secret_hex(&s) {
            let again = Keypair::from_secret_hex(&k.secret_hex());
            prop_assert!(matches!(again, Ok(a) if a.public() == k.public()));
        }
    }

    /// Field-less enums: exactly their canonical text.
    #[test]
    fn enums_from_text(s in text_s()) {
        macro_rules! exact {
            ($($ty:ty),*) => {$(
                if let Some(v) = text_round_trips::<$ty>(&s)? {
                    prop_assert_eq!(v.as_str(), s.as_str());
                }
            )*};
        }
        exact!(Role, Level, Purpose, Mode, MemberKind, ApprovalScope, Decision);
    }

    /// Bounded text: accepted exactly up to its bound.
    #[test]
    fn bounded_text(s in text_s()) {
        prop_assert_eq!(Text::<48>::new(s.clone()).is_ok(), s.len() <= 48);
        prop_assert_eq!(Blob::<64>::new(s.clone().into_bytes()).is_ok(), s.len() <= 64);
    }
}

// ---- JSON ----

proptest! {
    #![proptest_config(config())]

    /// The JSON forms (API bodies, genesis files) from arbitrary bytes.
    #[test]
    fn json_from_arbitrary_bytes(bytes in bytes_s()) {
        json_round_trips::<SignedTx>(&bytes)?;
        json_round_trips::<Payload>(&bytes)?;
        json_round_trips::<Genesis>(&bytes)?;
        json_round_trips::<Policy>(&bytes)?;
    }

    /// The JSON forms of valid transactions, mutated.
    #[test]
    fn json_of_valid_transactions_mutated(which in any::<Index>(), m in mutation_s()) {
        let tx = which.get(&CORPUS.txs);
        let json = serde_json::to_vec(tx).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mutated = m.apply(&json);
        json_round_trips::<SignedTx>(&mutated)?;
    }

    /// Strings as JSON strings: the text forms behind every id and key field.
    #[test]
    fn json_strings(s in text_s()) {
        let json = serde_json::to_vec(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
        json_round_trips::<Hash>(&json)?;
        json_round_trips::<MemberId>(&json)?;
        json_round_trips::<ContractId>(&json)?;
        json_round_trips::<PatientId>(&json)?;
        json_round_trips::<PublicKey>(&json)?;
        json_round_trips::<Signature>(&json)?;
        json_round_trips::<Role>(&json)?;
        json_round_trips::<Text<48>>(&json)?;
        json_round_trips::<Blob<64>>(&json)?;
    }

    /// The query specification the ledger reads from a contract's computation: arbitrary bytes
    /// never panic the parser, and a spec that parses prints to JSON that parses back to it.
    #[test]
    fn query_specs_from_arbitrary_bytes(bytes in bytes_s()) {
        query_spec_round_trips(&bytes)?;
    }

    /// A valid spec with one edit: refused or a spec that round-trips.
    #[test]
    fn query_specs_mutated(m in mutation_s()) {
        query_spec_round_trips(&m.apply(SPEC.as_bytes()))?;
    }

    /// Numbers as text: an exact decimal that prints to text parsing back to it, or refused.
    #[test]
    fn decimals_from_text(s in "-?[0-9]{0,22}(\\.[0-9]{0,22})?([eE][+-]?[0-9]{0,4})?") {
        if let Ok(d) = query::Decimal::parse(&s) {
            let shown = d.to_string();
            prop_assert_eq!(query::Decimal::parse(&shown), Ok(d), "{} -> {}", s, shown);
        }
    }
}

/// A query specification of every kind of clause.
const SPEC: &str = r#"{"version":1,"cohort":{"conditions":["44054006"],"drugs":["860975"],"procedures":["73761001"],"measurement":{"code":"4548-4","op":">=","value":6.5},"sex":"female","age":{"min":40,"max":80},"index_date":"2024-02-29"},"aggregate":{"mean":{"measurement":"2339-0","lower":-1.25,"upper":4e2}},"group_by":["sex","age_band"]}"#;

fn query_spec_round_trips(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok((spec, validated)) = query::parse_bytes(bytes) {
        let json = serde_json::to_string(&spec).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (back, again) = query::parse(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &spec);
        prop_assert_eq!(again, validated);
    }
    Ok(())
}

#[test]
fn the_sample_spec_parses() {
    assert!(query::parse(SPEC).is_ok());
}

// ---- valid encodings, mutated ----

/// One edit of an encoding.
#[derive(Clone, Debug)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip(Index, u8),
    /// Overwrite one byte (often with a small value: a tag, a length, a boolean).
    Set(Index, u8),
    /// Insert one byte.
    Insert(Index, u8),
    /// Remove one byte.
    Remove(Index),
    /// Keep a strict prefix.
    Truncate(Index),
    /// Append bytes.
    Extend(Vec<u8>),
}

fn mutation_s() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![0u8..4, any::<u8>()];
    prop_oneof![
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<Index>(), byte.clone()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
        vec(any::<u8>(), 1..8).prop_map(Mutation::Extend),
    ]
}

impl Mutation {
    fn apply(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        if out.is_empty() {
            if let Mutation::Insert(_, b) | Mutation::Set(_, b) = self {
                out.push(*b);
            }
            if let Mutation::Extend(more) = self {
                out.extend_from_slice(more);
            }
            return out;
        }
        match self {
            Mutation::Flip(i, x) => {
                if let Some(b) = out.get_mut(i.index(bytes.len())) {
                    *b ^= *x;
                }
            }
            Mutation::Set(i, v) => {
                if let Some(b) = out.get_mut(i.index(bytes.len())) {
                    *b = *v;
                }
            }
            Mutation::Insert(i, v) => out.insert(i.index(bytes.len() + 1), *v),
            Mutation::Remove(i) => {
                out.remove(i.index(bytes.len()));
            }
            Mutation::Truncate(i) => out.truncate(i.index(bytes.len())),
            Mutation::Extend(more) => out.extend_from_slice(more),
        }
        out
    }

    /// Whether the result is a strict prefix or a strict extension of `original`, which a
    /// canonical, self-delimiting encoding must refuse.
    fn must_refuse(&self, original: &[u8]) -> bool {
        match self {
            Mutation::Truncate(_) => !original.is_empty(),
            Mutation::Extend(_) => true,
            _ => false,
        }
    }
}

/// A decoder under test: the name of its type and the property for it.
type Check = fn(&[u8]) -> Result<bool, TestCaseError>;

fn check<T>(bytes: &[u8]) -> Result<bool, TestCaseError>
where
    T: DecodeExt<()> + Encode + Debug,
{
    Ok(canonical_or_refused::<T>(bytes)?.is_some())
}

/// Valid encodings of every wire type, taken from one transaction of each kind.
struct Corpus {
    txs: Vec<SignedTx>,
    encodings: Vec<(&'static str, Vec<u8>, Check)>,
}

static CORPUS: LazyLock<Corpus> = LazyLock::new(corpus);

fn text<const N: usize>(s: &str) -> Text<N> {
    Text::new(s).unwrap()
}

fn mid(s: &str) -> MemberId {
    MemberId::new(s).unwrap()
}

fn dataset() -> DatasetDescription {
    let field = |name: &str, level| FieldDesc {
        name: text(name),
        level,
        missing_ppm: 1_000,
        invalid_ppm: 20,
    };
    DatasetDescription {
        id: DatasetId::new("hospital-a.cdm").unwrap(),
        title: text("Hospital A common data model"),
        version: 3,
        tables: List::new(vec![TableDesc {
            name: text("condition_occurrence"),
            rows: 120_000,
            duplicate_ppm: 5,
            implausible_ppm: 7,
            fields: List::new(vec![
                field("condition_concept_id", Level::L1),
                field("person_id", Level::L2),
                field("genotype", Level::L4),
            ])
            .unwrap(),
        }])
        .unwrap(),
        content_hash: Hash::of(&[b"content"]),
    }
}

fn sample_release() -> ReleaseFigures {
    ReleaseFigures {
        source: DatasetId::new("hospital-a-cdm").unwrap(),
        purposes: List::new(vec![Purpose::Research]).unwrap(),
        consent_height: 3,
        spec_hash: Hash::of(&[b"spec"]),
        k: 5,
        l: 2,
        persons: 180,
        suppressed: 4,
        prosecutor_max_ppm: 200_000,
        prosecutor_avg_ppm: 61_000,
        journalist_max_ppm: 150_000,
        marketer_ppm: 61_000,
        at_risk_ppm: 0,
    }
}

/// The default policy with a classification cut to a few entries of each kind (every byte of
/// every encoding is mutated below: the full classification would only repeat the same shapes).
fn small_policy() -> Policy {
    let mut p = Policy::default();
    let c = &mut p.classification;
    c.fields = List::new(c.fields.iter().take(3).cloned().collect()).unwrap();
    c.sensitive = List::new(c.sensitive.iter().take(2).cloned().collect()).unwrap();
    p
}

fn payloads() -> Vec<Payload> {
    let member = Member {
        id: mid("insurer-1"),
        name: text("Insurer One"),
        kind: MemberKind::Insurer,
        key: Keypair::from_seed(10).public(),
        node_key: Keypair::from_seed(14).public(),
        agreement_key: Hash::of(&[b"x25519"]),
    };
    let types = List::new(vec![text("Encounter"), text("Observation")]).unwrap();
    let computation = Blob::new(br#"{"select":["count"]}"#.to_vec()).unwrap();
    let chain = Name::new("medspace-test").unwrap();
    let old = Keypair::from_seed(1).public();
    let new_key = Keypair::from_seed(11);
    vec![
        Payload::AddMember(AddMember {
            member,
            initial_balance: 500,
        }),
        Payload::RemoveMember(RemoveMember {
            member: mid("hospital-c"),
        }),
        Payload::UpdatePolicy(UpdatePolicy {
            policy: small_policy(),
        }),
        Payload::Vote(Vote {
            proposal: ProposalId(7),
            approve: true,
        }),
        Payload::RegisterUser(RegisterUser {
            user: UserId::new("hospital-a.steward").unwrap(),
            role: Role::Steward,
            key: Keypair::from_seed(12).public(),
        }),
        Payload::RotateKey(RotateKey {
            new_key: new_key.public(),
            proof: new_key.sign(ROTATE_NAMESPACE, &rotation_message(&chain, &old, 4)),
        }),
        Payload::RotateNodeKey(RotateNodeKey::new(&chain, &old, 5, &new_key)),
        Payload::RebindPatient(RebindPatient {
            patient: PatientId::from_key(&old),
            new_key: new_key.public(),
            proof: RebindPatient::claim(&chain, &mid("hospital-a"), &new_key),
        }),
        Payload::CancelRebind(CancelRebind {
            patient: PatientId::from_key(&old),
        }),
        Payload::CompleteRebind(CompleteRebind {
            patient: PatientId::from_key(&old),
        }),
        Payload::RegisterPatient(RegisterPatient::attested(
            &chain,
            &Keypair::from_seed(13).public(),
            mid("hospital-a"),
            &Keypair::from_seed(1),
        )),
        Payload::PublishDataset(PublishDataset { dataset: dataset() }),
        Payload::SetConsent(SetConsent {
            purpose: Purpose::Research,
            study: Some(StudyId::new("study-42").unwrap()),
            decision: Decision::Allow,
            l4_opt_in: true,
        }),
        Payload::RevokeConsent(RevokeConsent {
            purpose: Purpose::Teaching,
            study: None,
        }),
        Payload::IssueGrant(IssueGrant {
            grantee: mid("hospital-b"),
            holder: mid("hospital-a"),
            purpose: Purpose::Treatment,
            resource_types: types.clone(),
            period_from_ms: 1,
            period_to_ms: 2,
            expiry_ms: 3,
            max_uses: 4,
            code_hash: code_hash(&PatientId([9; 32]), "ABCD-EFGH-IJKL"),
        }),
        Payload::RevokeGrant(RevokeGrant { grant: GrantId(5) }),
        Payload::SubmitRequest(SubmitRequest {
            purpose: Purpose::Research,
            mode: Mode::Compute,
            study: Some(StudyId::new("study-42").unwrap()),
            fields: List::new(vec![FieldRef {
                dataset: DatasetId::new("hospital-a.cdm").unwrap(),
                table: text("condition_occurrence"),
                field: text("person_id"),
            }])
            .unwrap(),
            computation: computation.clone(),
            expiry_ms: 1_800_000_000_000,
            epsilon_budget: 1_000_000,
            fee: 300,
        }),
        Payload::Approve(Approve {
            contract: ContractId(6),
        }),
        Payload::Reject(Reject {
            contract: ContractId(6),
            reason: text("scope too broad"),
        }),
        Payload::Terminate(Terminate {
            contract: ContractId(6),
            reason: text("study ended"),
        }),
        Payload::SubmitJob(SubmitJob {
            contract: ContractId(6),
            computation,
            epsilon: 250_000,
        }),
        Payload::PostResult(PostResult {
            job: JobId(8),
            result_hash: Hash::of(&[b"result"]),
            epsilon_spent: 200_000,
            contributions: List::new(vec![
                SignedContribution::sign(
                    &Keypair::from_seed(41),
                    JobId(8),
                    mid("hospital-a"),
                    1_200,
                ),
                SignedContribution::sign(&Keypair::from_seed(42), JobId(8), mid("hospital-b"), 800),
            ])
            .unwrap(),
        }),
        Payload::CloseRound(CloseRound {
            job: JobId(8),
            sharers: List::new(vec![
                mid("hospital-a"),
                mid("hospital-b"),
                mid("hospital-c"),
            ])
            .unwrap(),
            survivors: List::new(vec![mid("hospital-a"), mid("hospital-b")]).unwrap(),
        }),
        Payload::RecordAccess(RecordAccess {
            patient: PatientId([3; 32]),
            recipient: mid("hospital-b"),
            basis: AccessBasis::Grant(GrantId(5)),
            resource_types: types,
            resource_count: 12,
            content_hash: Hash::of(&[b"bundle"]),
        }),
        Payload::AttestDestruction(AttestDestruction {
            access: AccessId(9),
        }),
        Payload::Settle(Settle {
            contract: ContractId(6),
        }),
        Payload::PublishRelease(PublishRelease {
            dataset: dataset(),
            release: sample_release(),
        }),
        Payload::DeliverRelease(DeliverRelease {
            contract: ContractId(6),
            dataset: DatasetId::new("hospital-a-open").unwrap(),
            content_hash: Hash::of(&[b"extract"]),
            bytes: 1 << 20,
        }),
        Payload::RecordAlert(RecordAlert {
            job: JobId(9),
            syndrome: Text::new("ili").unwrap(),
            region: Text::new("013").unwrap(),
            method: Text::new("c2").unwrap(),
            observed: 17,
            expected_milli: 4_250,
            score_milli: -3_100,
        }),
        Payload::AppointUser(AppointUser {
            user: UserId::new("hospital-b.ethics").unwrap(),
            member: mid("hospital-b"),
            role: Role::EthicsCommittee,
            key: Keypair::from_seed(14).public(),
        }),
        Payload::DismissUser(DismissUser {
            user: UserId::new("hospital-b.ethics").unwrap(),
        }),
    ]
}

fn corpus() -> Corpus {
    let chain = Name::new("medspace-test").unwrap();
    let key = Keypair::from_seed(1);
    let txs: Vec<SignedTx> = payloads()
        .into_iter()
        .zip(0u64..)
        .map(|(p, nonce)| SignedTx::new(&chain, &key, nonce, p))
        .collect();
    let mut encodings: Vec<(&'static str, Vec<u8>, Check)> = Vec::new();
    let mut add = |name: &'static str, bytes: Vec<u8>, check: Check| {
        encodings.push((name, bytes, check));
    };
    for tx in &txs {
        add("SignedTx", tx.encode().to_vec(), check::<SignedTx>);
        add("TxBody", tx.body.encode().to_vec(), check::<TxBody>);
        add(
            "Payload",
            tx.body.payload.encode().to_vec(),
            check::<Payload>,
        );
        let (name, bytes, check): (&'static str, Vec<u8>, Check) = match &tx.body.payload {
            Payload::AddMember(p) => ("AddMember", p.encode().to_vec(), check::<AddMember>),
            Payload::RemoveMember(p) => {
                ("RemoveMember", p.encode().to_vec(), check::<RemoveMember>)
            }
            Payload::UpdatePolicy(p) => {
                ("UpdatePolicy", p.encode().to_vec(), check::<UpdatePolicy>)
            }
            Payload::Vote(p) => ("Vote", p.encode().to_vec(), check::<Vote>),
            Payload::RegisterUser(p) => {
                ("RegisterUser", p.encode().to_vec(), check::<RegisterUser>)
            }
            Payload::RotateKey(p) => ("RotateKey", p.encode().to_vec(), check::<RotateKey>),
            Payload::RegisterPatient(p) => (
                "RegisterPatient",
                p.encode().to_vec(),
                check::<RegisterPatient>,
            ),
            Payload::PublishDataset(p) => (
                "PublishDataset",
                p.encode().to_vec(),
                check::<PublishDataset>,
            ),
            Payload::SetConsent(p) => ("SetConsent", p.encode().to_vec(), check::<SetConsent>),
            Payload::RevokeConsent(p) => {
                ("RevokeConsent", p.encode().to_vec(), check::<RevokeConsent>)
            }
            Payload::IssueGrant(p) => ("IssueGrant", p.encode().to_vec(), check::<IssueGrant>),
            Payload::RevokeGrant(p) => ("RevokeGrant", p.encode().to_vec(), check::<RevokeGrant>),
            Payload::SubmitRequest(p) => {
                ("SubmitRequest", p.encode().to_vec(), check::<SubmitRequest>)
            }
            Payload::Approve(p) => ("Approve", p.encode().to_vec(), check::<Approve>),
            Payload::Reject(p) => ("Reject", p.encode().to_vec(), check::<Reject>),
            Payload::Terminate(p) => ("Terminate", p.encode().to_vec(), check::<Terminate>),
            Payload::SubmitJob(p) => ("SubmitJob", p.encode().to_vec(), check::<SubmitJob>),
            Payload::PostResult(p) => ("PostResult", p.encode().to_vec(), check::<PostResult>),
            Payload::RecordAccess(p) => {
                ("RecordAccess", p.encode().to_vec(), check::<RecordAccess>)
            }
            Payload::AttestDestruction(p) => (
                "AttestDestruction",
                p.encode().to_vec(),
                check::<AttestDestruction>,
            ),
            Payload::Settle(p) => ("Settle", p.encode().to_vec(), check::<Settle>),
            Payload::CloseRound(p) => ("CloseRound", p.encode().to_vec(), check::<CloseRound>),
            Payload::AppointUser(p) => ("AppointUser", p.encode().to_vec(), check::<AppointUser>),
            Payload::DismissUser(p) => ("DismissUser", p.encode().to_vec(), check::<DismissUser>),
            Payload::RotateNodeKey(p) => {
                ("RotateNodeKey", p.encode().to_vec(), check::<RotateNodeKey>)
            }
            Payload::RebindPatient(p) => {
                ("RebindPatient", p.encode().to_vec(), check::<RebindPatient>)
            }
            Payload::CancelRebind(p) => {
                ("CancelRebind", p.encode().to_vec(), check::<CancelRebind>)
            }
            Payload::CompleteRebind(p) => (
                "CompleteRebind",
                p.encode().to_vec(),
                check::<CompleteRebind>,
            ),
            Payload::PublishRelease(p) => (
                "PublishRelease",
                p.encode().to_vec(),
                check::<PublishRelease>,
            ),
            Payload::DeliverRelease(p) => (
                "DeliverRelease",
                p.encode().to_vec(),
                check::<DeliverRelease>,
            ),
            Payload::RecordAlert(p) => ("RecordAlert", p.encode().to_vec(), check::<RecordAlert>),
        };
        add(name, bytes, check);
    }
    let d = dataset();
    let policy = small_policy();
    add(
        "Classification",
        policy.classification.encode().to_vec(),
        check::<medspace_types::classification::Classification>,
    );
    add("Policy", policy.encode().to_vec(), check::<Policy>);
    add(
        "OpenPoolPolicy",
        policy.open_pool.encode().to_vec(),
        check::<OpenPoolPolicy>,
    );
    add(
        "ReleaseFigures",
        sample_release().encode().to_vec(),
        check::<ReleaseFigures>,
    );
    for r in &policy.requirements {
        add("Requirement", r.encode().to_vec(), check::<Requirement>);
    }
    add(
        "DatasetDescription",
        d.encode().to_vec(),
        check::<DatasetDescription>,
    );
    for t in &d.tables {
        add("TableDesc", t.encode().to_vec(), check::<TableDesc>);
        for f in &t.fields {
            add("FieldDesc", f.encode().to_vec(), check::<FieldDesc>);
        }
    }
    for p in payloads() {
        match p {
            Payload::AddMember(a) => add("Member", a.member.encode().to_vec(), check::<Member>),
            Payload::SubmitRequest(r) => {
                for f in &r.fields {
                    add("FieldRef", f.encode().to_vec(), check::<FieldRef>);
                }
            }
            Payload::PostResult(r) => {
                for c in &r.contributions {
                    add(
                        "SignedContribution",
                        c.encode().to_vec(),
                        check::<SignedContribution>,
                    );
                    add(
                        "Contribution",
                        c.unsigned().encode().to_vec(),
                        check::<Contribution>,
                    );
                }
            }
            Payload::RecordAccess(r) => {
                add(
                    "AccessBasis",
                    r.basis.encode().to_vec(),
                    check::<AccessBasis>,
                );
                add(
                    "AccessBasis",
                    AccessBasis::Contract(ContractId(u64::MAX))
                        .encode()
                        .to_vec(),
                    check::<AccessBasis>,
                );
                add(
                    "List<Text<48>, 32>",
                    r.resource_types.encode().to_vec(),
                    check::<List<Text<48>, 32>>,
                );
            }
            _ => {}
        }
    }
    add(
        "Name",
        Name::new("hospital-a.steward").unwrap().encode().to_vec(),
        check::<Name>,
    );
    add(
        "Option<StudyId>",
        Some(StudyId::new("s").unwrap()).encode().to_vec(),
        check::<Option<StudyId>>,
    );
    Corpus { txs, encodings }
}

proptest! {
    #![proptest_config(config())]

    /// Valid encodings of every wire type, edited: refused, or a value that re-encodes to the
    /// edited bytes; cut short or extended: always refused.
    #[test]
    fn valid_encodings_mutated(which in any::<Index>(), m in mutation_s()) {
        let (name, bytes, check) = which.get(&CORPUS.encodings);
        prop_assert!(check(bytes)?, "the corpus encoding of {name} decodes");
        let mutated = m.apply(bytes);
        let decoded = check(&mutated)?;
        if m.must_refuse(bytes) {
            prop_assert!(!decoded, "{name} decoded after {m:?}");
        }
    }

    /// Valid transactions, edited, through `SignedTx::from_bytes`.
    #[test]
    fn valid_transactions_mutated(which in any::<Index>(), m in mutation_s()) {
        let tx = which.get(&CORPUS.txs);
        let bytes = tx.to_bytes();
        prop_assert!(tx.verify_signature());
        let mutated = m.apply(&bytes);
        from_bytes_canonical_or_refused(&mutated)?;
        if m.must_refuse(&bytes) {
            prop_assert!(SignedTx::from_bytes(mutated).is_err(), "decoded after {m:?}");
        }
    }

    /// Several edits at once.
    #[test]
    fn valid_transactions_mutated_repeatedly(which in any::<Index>(), ms in vec(mutation_s(), 2..6)) {
        let tx = which.get(&CORPUS.txs);
        let mut bytes = tx.to_bytes().to_vec();
        for m in &ms {
            bytes = m.apply(&bytes);
        }
        from_bytes_canonical_or_refused(&bytes)?;
    }
}

/// Every wire type from the empty input and from every single byte.
#[test]
fn every_single_byte_input() {
    for (name, check) in WIRE_TYPES {
        let inputs = std::iter::once(Vec::new()).chain((0..=u8::MAX).map(|b| vec![b]));
        for input in inputs {
            if let Err(e) = check(&input) {
                panic!("{name} from {input:?}: {e}");
            }
        }
    }
}

/// Every position of every valid encoding, overwritten with each value where the decoders
/// branch (tags, booleans, varint continuation bits, length limits), and every value of the
/// first byte (a tag, a version, a length): refused, or a value that re-encodes to the bytes.
/// Deterministic and exhaustive where the random edits are sparse.
#[test]
fn boundary_bytes_at_every_position() {
    const VALUES: [u8; 16] = [
        0, 1, 2, 3, 4, 5, 21, 22, 0x3f, 0x40, 0x41, 0x7f, 0x80, 0x81, 0xfe, 0xff,
    ];
    let mut decoded = 0usize;
    for (name, bytes, check) in &CORPUS.encodings {
        let firsts = (0..=u8::MAX).map(|v| (0, v));
        let everywhere = (0..bytes.len()).flat_map(|i| VALUES.iter().map(move |v| (i, *v)));
        for (i, v) in firsts.chain(everywhere) {
            let mut edited = bytes.clone();
            if let Some(b) = edited.get_mut(i) {
                *b = v;
            }
            match check(&edited) {
                Ok(ok) => decoded += usize::from(ok),
                Err(e) => panic!("{name} with byte {i} set to {v:#04x}: {e}"),
            }
        }
    }
    assert!(decoded > 0);
}

/// The corpus covers every payload kind, and each encoding decodes to the value it came from.
#[test]
fn corpus_covers_every_kind() {
    let kinds: std::collections::BTreeSet<&str> =
        CORPUS.txs.iter().map(|t| t.body.payload.kind()).collect();
    assert_eq!(kinds.len(), 31);
    for tx in &CORPUS.txs {
        assert_eq!(SignedTx::from_bytes(tx.to_bytes()).as_ref(), Ok(tx));
        assert!(tx.verify_signature());
    }
    for (name, bytes, check) in &CORPUS.encodings {
        assert!(check(bytes).unwrap(), "{name}");
    }
}

/// Input just over the size limit is refused before decoding.
#[test]
fn oversized_input_is_refused_before_decoding() {
    let bytes = vec![0u8; MAX_TX_BYTES + 1];
    assert!(matches!(
        SignedTx::from_bytes(bytes),
        Err(TypeError::TooLong { len, max, .. }) if len == MAX_TX_BYTES + 1 && max == MAX_TX_BYTES
    ));
}
