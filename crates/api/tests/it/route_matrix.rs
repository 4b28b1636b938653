//! The read API's authorization matrix: every route × every kind of caller, generated from
//! one table of routes (each with its rule) and one of callers (each with what it is), every
//! cell asserted. A removed member's keys, a retired key, an outsider's key and an unsigned
//! request are callers like the others.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use medspace_api::{Config, Ledger, TxStatus, auth, router};
use medspace_state::{Created, State};
use medspace_types::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

use crate::local;
use local::Local;

const CHAIN: &str = "matrix-chain";
const NODE: &str = "hospital-a";

fn chain() -> Name {
    Name::new(CHAIN).unwrap()
}

/// The authorization header of `GET path` at this node, signed by `key`.
fn sign(path: &str, key: &Keypair) -> String {
    auth::Request {
        method: "GET",
        path_and_query: path,
        audience: NODE,
        body: b"",
    }
    .sign(key)
}

fn id(s: &str) -> MemberId {
    MemberId::new(s).unwrap()
}

/// Submits `payload` signed by `key` at `nonce`; what it created.
fn apply(l: &Local, key: &Keypair, nonce: u64, payload: Payload) -> Option<Created> {
    let tx_id = l
        .submit(SignedTx::new(&chain(), key, nonce, payload))
        .unwrap();
    match l.tx_status(&tx_id) {
        TxStatus::Finalized {
            receipt: Some(r), ..
        } => r.created,
        other => panic!("setup transaction refused: {other:?}"),
    }
}

/// What a caller is, as far as the read rules go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Is {
    /// No authorization header at all.
    Unsigned,
    /// A key the ledger does not know, a retired key, or a removed member's key: the ledger
    /// gives it no standing.
    NoStanding,
    /// The patient the records are about.
    ThePatient,
    /// Another registered patient.
    AnotherPatient,
    /// The grant's holder (hospital-a: its member key, node key or one of its users).
    Holder,
    /// The grant's grantee (hospital-b's member key).
    Grantee,
    /// An auditor appointed by the active regulator.
    RegulatorAuditor,
    /// A registered key with none of the parts above (the regulator's own member key,
    /// hospital-c's researcher…).
    Registered,
    /// The new key of the patient's pending re-binding: no standing yet, but it may read
    /// that re-binding.
    PendingKey,
}

/// The rule of a route.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Anyone, signed or not.
    Open,
    /// Any key the ledger gives standing.
    Registered,
    /// The patient, or an auditor of the regulator.
    PatientOrAuditor,
    /// The patient, the grant's holder and grantee, or an auditor of the regulator; anyone
    /// else registered is answered "not found", exactly as for a grant that does not exist.
    GrantParties,
    /// hospital-a itself (its keys and users), or an auditor of the regulator; to anyone else
    /// registered the member's records do not exist.
    HolderOrAuditor,
    /// An auditor of the regulator only.
    AuditorOnly,
    /// What a contract's data use produced (a surveillance contract's alerts): its requesting
    /// institution (hospital-a: its keys and users), an institution whose data it covers
    /// (hospital-b's member key), an auditor of the regulator; anyone else registered is
    /// refused.
    ContractParties,
    /// A pending re-binding: the patient, the hospital that asked (hospital-a), an auditor;
    /// anyone else registered is answered "not found".
    RebindParties,
    /// The pending re-binding of the signing key: found only by that key; any other signed
    /// request, registered or not, finds nothing.
    OwnRebinding,
    /// The consortium: the keys of active members and their users (the state in pieces, as
    /// whole blocks); a patient is refused.
    Consortium,
}

/// The answer `rule` gives a caller that `is`.
fn expected(rule: Rule, is: Is) -> StatusCode {
    use StatusCode as S;
    match (rule, is) {
        (Rule::Open, _) => S::OK,
        (_, Is::Unsigned) => S::UNAUTHORIZED,
        (Rule::OwnRebinding, Is::PendingKey) => S::OK,
        (Rule::OwnRebinding, _) => S::NOT_FOUND,
        (_, Is::PendingKey) => S::FORBIDDEN,
        (_, Is::NoStanding) => S::FORBIDDEN,
        (Rule::Registered, _) => S::OK,
        (Rule::PatientOrAuditor, Is::ThePatient | Is::RegulatorAuditor) => S::OK,
        (Rule::PatientOrAuditor, _) => S::FORBIDDEN,
        (Rule::GrantParties, Is::ThePatient | Is::Holder | Is::Grantee | Is::RegulatorAuditor) => {
            S::OK
        }
        (Rule::GrantParties, _) => S::NOT_FOUND,
        (Rule::HolderOrAuditor, Is::Holder | Is::RegulatorAuditor) => S::OK,
        (Rule::HolderOrAuditor, _) => S::NOT_FOUND,
        (Rule::AuditorOnly, Is::RegulatorAuditor) => S::OK,
        (Rule::ContractParties, Is::Holder | Is::Grantee | Is::RegulatorAuditor) => S::OK,
        (Rule::ContractParties, _) => S::FORBIDDEN,
        (Rule::AuditorOnly, _) => S::FORBIDDEN,
        (Rule::RebindParties, Is::ThePatient | Is::Holder | Is::RegulatorAuditor) => S::OK,
        (Rule::RebindParties, _) => S::NOT_FOUND,
        (Rule::Consortium, Is::ThePatient | Is::AnotherPatient) => S::FORBIDDEN,
        (Rule::Consortium, _) => S::OK,
    }
}

/// The consortium the matrices run on, and every kind of caller.
struct World {
    l: Arc<Local>,
    alice: Keypair,
    grant: GrantId,
    /// The key hospital-a's steward asked to re-bind Alice to (pending).
    rebinding: Keypair,
    /// hospital-a's researcher's request over hospital-b's data (pending).
    contract: ContractId,
    callers: Vec<(&'static str, Option<Keypair>, Is)>,
}

/// Three hospitals and a regulator with an auditor; hospital-a's steward (whose first key is
/// retired by a rotation) and researcher; hospital-c's researcher; hospital-c removed by vote;
/// Alice and Bob, registered at hospital-a, Alice granting hospital-b her conditions;
/// hospital-a's researcher's request over hospital-b's published data.
fn world() -> World {
    // The consortium: three hospitals and a regulator with an auditor; hospital-a's steward
    // and researcher; hospital-c's researcher.
    let key = |seed: u64| Keypair::from_seed(seed);
    let (a, b, c, reg) = (key(1), key(2), key(3), key(4));
    let (auditor, steward, researcher, c_researcher) = (key(5), key(6), key(7), key(8));
    let g = medspace_consortium::GenesisBuilder::new(CHAIN)
        .unwrap()
        .time(1_000_000)
        .member("hospital-a", MemberKind::Hospital, &a)
        .unwrap()
        .member("hospital-b", MemberKind::Hospital, &b)
        .unwrap()
        .member("hospital-c", MemberKind::Hospital, &c)
        .unwrap()
        .member("regulator", MemberKind::Regulator, &reg)
        .unwrap()
        .user("regulator.auditor", "regulator", Role::Auditor, &auditor)
        .unwrap()
        .user("hospital-a.steward", "hospital-a", Role::Steward, &steward)
        .unwrap()
        .user(
            "hospital-a.researcher",
            "hospital-a",
            Role::Researcher,
            &researcher,
        )
        .unwrap()
        .user(
            "hospital-c.researcher",
            "hospital-c",
            Role::Researcher,
            &c_researcher,
        )
        .unwrap()
        .build();
    let l = Arc::new(Local {
        inner: Mutex::new((State::genesis(&g).unwrap(), 0, HashMap::new())),
    });

    // Alice, registered at hospital-a, lets hospital-b have her conditions; Bob registers.
    let (alice, bob) = (key(60), key(61));
    for p in [&alice, &bob] {
        let reg = RegisterPatient::attested(&chain(), &p.public(), id("hospital-a"), &a);
        apply(&l, p, 0, Payload::RegisterPatient(reg));
    }
    let Some(Created::Grant(grant)) = apply(
        &l,
        &alice,
        1,
        Payload::IssueGrant(IssueGrant {
            grantee: id("hospital-b"),
            holder: id("hospital-a"),
            purpose: Purpose::Treatment,
            resource_types: List::new(vec![Text::new("Condition").unwrap()]).unwrap(),
            period_from_ms: 0,
            period_to_ms: 2_000_000,
            expiry_ms: 9_000_000,
            max_uses: 1,
            code_hash: Hash::of(&[b"code"]),
        }),
    ) else {
        panic!("no grant")
    };
    // hospital-b publishes its catalog entry; hospital-a's researcher asks to count over it.
    let l4 = |n: &str| FieldDesc {
        name: Text::new(n).unwrap(),
        level: Level::L4,
        missing_ppm: 0,
        invalid_ppm: 0,
    };
    apply(
        &l,
        &b,
        0,
        Payload::PublishDataset(PublishDataset {
            dataset: DatasetDescription {
                id: DatasetId::new("hospital-b.cdm").unwrap(),
                title: Text::new("hospital-b").unwrap(),
                version: 1,
                tables: List::new(vec![TableDesc {
                    name: Text::new("person").unwrap(),
                    rows: 20,
                    duplicate_ppm: 0,
                    implausible_ppm: 0,
                    fields: List::new(vec![l4("person_id"), l4("year_of_birth")]).unwrap(),
                }])
                .unwrap(),
                content_hash: Hash::of(&[b"hospital-b"]),
            },
        }),
    );
    let field = |f: &str| FieldRef {
        dataset: DatasetId::new("hospital-b.cdm").unwrap(),
        table: Text::new("person").unwrap(),
        field: Text::new(f).unwrap(),
    };
    let Some(Created::Contract(contract)) = apply(
        &l,
        &researcher,
        0,
        Payload::SubmitRequest(SubmitRequest {
            purpose: Purpose::Research,
            mode: Mode::Compute,
            study: None,
            fields: List::new(vec![field("person_id"), field("year_of_birth")]).unwrap(),
            computation: Blob::new(
                br#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":"count"}"#
                    .to_vec(),
            )
            .unwrap(),
            expiry_ms: 9_000_000,
            epsilon_budget: 1_000_000,
            fee: 0,
        }),
    ) else {
        panic!("no contract")
    };
    // hospital-a's steward replaces its key: the old one is retired.
    let new_steward = key(9);
    let proof = new_steward.sign(
        ROTATE_NAMESPACE,
        &rotation_message(&chain(), &steward.public(), 0),
    );
    apply(
        &l,
        &steward,
        0,
        Payload::RotateKey(RotateKey {
            new_key: new_steward.public(),
            proof,
        }),
    );
    // hospital-a's steward asks to re-bind Alice to a new key (pending its veto delay).
    let rebinding = key(62);
    apply(
        &l,
        &new_steward,
        l.snapshot()
            .state
            .next_nonce(&new_steward.public())
            .unwrap(),
        Payload::RebindPatient(RebindPatient {
            patient: PatientId::from_key(&alice.public()),
            new_key: rebinding.public(),
            proof: RebindPatient::claim(&chain(), &id("hospital-a"), &rebinding),
        }),
    );
    // The consortium removes hospital-c by vote.
    let Some(Created::Proposal(p)) = apply(
        &l,
        &a,
        0,
        Payload::RemoveMember(RemoveMember {
            member: id("hospital-c"),
        }),
    ) else {
        panic!("no proposal")
    };
    for voter in [&b, &reg] {
        apply(
            &l,
            voter,
            l.snapshot().state.next_nonce(&voter.public()).unwrap(),
            Payload::Vote(Vote {
                proposal: p,
                approve: true,
            }),
        );
    }
    assert!(
        !l.snapshot()
            .state
            .member(&id("hospital-c"))
            .unwrap()
            .unwrap()
            .active,
        "hospital-c was not removed"
    );

    let node_a = medspace_consortium::derived_node_key(&a);
    let outsider = key(99);
    let callers: Vec<(&'static str, Option<Keypair>, Is)> = vec![
        ("unsigned", None, Is::Unsigned),
        ("an outsider's key", Some(outsider.clone()), Is::NoStanding),
        ("a retired key", Some(steward.clone()), Is::NoStanding),
        ("a removed member's key", Some(c.clone()), Is::NoStanding),
        (
            "a removed member's user",
            Some(c_researcher.clone()),
            Is::NoStanding,
        ),
        ("the patient", Some(alice.clone()), Is::ThePatient),
        ("another patient", Some(bob.clone()), Is::AnotherPatient),
        ("the holder's member key", Some(a.clone()), Is::Holder),
        ("the holder's node key", Some(node_a.clone()), Is::Holder),
        (
            "the holder's steward",
            Some(new_steward.clone()),
            Is::Holder,
        ),
        (
            "the holder's researcher",
            Some(researcher.clone()),
            Is::Holder,
        ),
        ("the grantee's member key", Some(b.clone()), Is::Grantee),
        (
            "the regulator's auditor",
            Some(auditor.clone()),
            Is::RegulatorAuditor,
        ),
        (
            "the regulator's member key",
            Some(reg.clone()),
            Is::Registered,
        ),
        (
            "the pending re-binding's new key",
            Some(rebinding.clone()),
            Is::PendingKey,
        ),
    ];
    World {
        l,
        alice,
        grant,
        rebinding,
        contract,
        callers,
    }
}

#[tokio::test]
async fn every_read_route_answers_every_kind_of_caller_as_its_rule_says() {
    let World {
        l,
        alice,
        grant,
        rebinding,
        contract,
        callers,
    } = world();
    let alice_id = PatientId::from_key(&alice.public());
    let grant_key = hex::encode(medspace_state::records::keys::grant(grant));
    let rebind_key = hex::encode(medspace_state::records::keys::rebind(&rebinding.public()));
    let routes: Vec<(String, Rule)> = vec![
        ("/v1/health".into(), Rule::Open),
        ("/openapi.json".into(), Rule::Open),
        ("/v1/status".into(), Rule::Registered),
        ("/v1/catalog".into(), Rule::Registered),
        ("/v1/members".into(), Rule::Registered),
        ("/v1/proposals".into(), Rule::Registered),
        ("/v1/accesses/undestroyed".into(), Rule::AuditorOnly),
        (
            "/v1/members/hospital-a/deliveries".into(),
            Rule::HolderOrAuditor,
        ),
        (
            "/v1/contracts/c-00000000000000a1/jobs".into(),
            Rule::Registered,
        ),
        (format!("/v1/contracts/{contract}/jobs"), Rule::Registered),
        (format!("/v1/contracts/{contract}"), Rule::Registered),
        (
            format!("/v1/contracts/{contract}/alerts"),
            Rule::ContractParties,
        ),
        ("/v1/contracts".into(), Rule::Registered),
        ("/v1/contracts?status=active".into(), Rule::Registered),
        (
            "/v1/users/hospital-a.researcher/approvals".into(),
            Rule::Registered,
        ),
        (
            format!("/v1/patients/{alice_id}/log"),
            Rule::PatientOrAuditor,
        ),
        (
            format!("/v1/patients/{alice_id}/consents"),
            Rule::PatientOrAuditor,
        ),
        (
            format!("/v1/patients/{alice_id}/jobs?holders=hospital-a,hospital-b"),
            Rule::PatientOrAuditor,
        ),
        (
            format!("/v1/patients/{alice_id}/grants"),
            Rule::PatientOrAuditor,
        ),
        (format!("/v1/grants/{grant}"), Rule::GrantParties),
        (format!("/v1/records/{grant_key}"), Rule::GrantParties),
        (format!("/v1/records/{rebind_key}"), Rule::RebindParties),
        ("/v1/rebinding".into(), Rule::OwnRebinding),
        ("/v1/state/pin".into(), Rule::Consortium),
        (
            format!(
                "/v1/state/nodes?height={}&at=&depth=0&toward=",
                l.snapshot().height
            ),
            Rule::Consortium,
        ),
    ];
    let app = router(l.clone(), Config::new(NODE));
    let root = l.snapshot().state.root();
    let mut cells = 0usize;
    let mut wrong = Vec::new();
    for (path, rule) in &routes {
        for (who, k, is) in &callers {
            let mut req = Request::get(path.as_str());
            if let Some(k) = k {
                let h = sign(path, k);
                req = req.header("authorization", h);
            }
            let resp = app
                .clone()
                .oneshot(req.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let want = expected(*rule, *is);
            cells += 1;
            if status != want {
                wrong.push(format!(
                    "GET {path} by {who}: {status}, the rule {rule:?} says {want}: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
        }
    }
    println!(
        "read API authorization matrix: {} routes x {} callers = {cells} cells",
        routes.len(),
        callers.len()
    );
    assert!(
        wrong.is_empty(),
        "{} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(l.snapshot().state.root(), root, "reads change nothing");
}

/// What a chain route needs.
#[derive(Clone, Copy, Debug)]
enum Needs {
    /// Whole blocks (every transaction): the consortium's members and their staff.
    Blocks,
    /// Headers with finality certificates: any key the ledger gives standing.
    Headers,
}

#[test]
fn every_chain_read_answers_every_kind_of_caller_as_its_rule_says() {
    use medspace_chain::api::{ChainAccess, ReadGate};
    let World { l, callers, .. } = world();
    let gate = medspace_api::gate::ChainGate::new(l.clone(), NODE);
    let routes = [
        ("/v1/blocks?from=1&limit=10", Needs::Blocks),
        ("/v1/blocks/1", Needs::Blocks),
        ("/v1/blocks/1/raw", Needs::Blocks),
        // The whole state, what the blocks hold: read like whole blocks.
        ("/v1/checkpoint", Needs::Blocks),
        ("/v1/blocks/1/header", Needs::Headers),
        ("/v1/blocks/1/header?wait_ms=10", Needs::Headers),
    ];
    let root = l.snapshot().state.root();
    let mut cells = 0usize;
    let mut wrong = Vec::new();
    for (path, needs) in routes {
        for (who, k, is) in &callers {
            let mut headers = axum::http::HeaderMap::new();
            if let Some(k) = k {
                let h = sign(path, k);
                headers.insert("authorization", h.parse().unwrap());
            }
            let got = match gate.access("GET", path, &headers) {
                Ok(ChainAccess::Blocks) => 200,
                Ok(ChainAccess::Headers) if matches!(needs, Needs::Headers) => 200,
                // The route answers a headers-only caller 403 for whole blocks.
                Ok(ChainAccess::Headers) => 403,
                Err(r) => r.status,
            };
            let want = match (is, needs) {
                (Is::Unsigned, _) => 401,
                (Is::NoStanding, _) => 403,
                // Patients (light clients) read headers, never whole blocks; so does the new
                // key of a pending re-binding, to check it.
                (Is::ThePatient | Is::AnotherPatient | Is::PendingKey, Needs::Headers) => 200,
                (Is::ThePatient | Is::AnotherPatient | Is::PendingKey, Needs::Blocks) => 403,
                // Every key of an active member, and its users.
                _ => 200,
            };
            cells += 1;
            if got != want {
                wrong.push(format!("GET {path} by {who}: {got}, {needs:?} says {want}"));
            }
        }
    }
    println!(
        "chain read authorization matrix: {} routes x {} callers = {cells} cells",
        routes.len(),
        callers.len()
    );
    assert!(
        wrong.is_empty(),
        "{} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(l.snapshot().state.root(), root, "reads change nothing");
}

#[tokio::test]
async fn a_malformed_path_or_query_is_a_clear_400_and_changes_nothing() {
    let World { l, alice, .. } = world();
    let app = router(l.clone(), Config::new(NODE));
    let root = l.snapshot().state.root();
    for path in [
        "/v1/contracts/not-a-contract",
        "/v1/contracts/not-a-contract/jobs",
        "/v1/contracts/not-a-contract/alerts",
        "/v1/jobs/j-zz",
        "/v1/grants/g-not-hex",
        "/v1/members/NOT%20A%20MEMBER/deliveries",
        "/v1/users/NOT%20A%20USER/approvals",
        "/v1/patients/pt-short/log",
        "/v1/records/not-hex",
    ] {
        let h = auth::Request {
            method: "GET",
            path_and_query: path,
            audience: NODE,
            body: b"",
        }
        .sign(&alice);
        let resp = app
            .clone()
            .oneshot(
                Request::get(path)
                    .header("authorization", h)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let said = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "GET {path}: {said}");
        assert!(said.contains("\"error\""), "GET {path}: {said}");
    }
    assert_eq!(l.snapshot().state.root(), root, "reads change nothing");
}

/// A key reads its own key record whatever it is — registered, retired or waiting for a
/// re-binding (not found) — so a client can tell a retired key from an unknown one; anyone
/// else's key record still needs standing.
#[tokio::test]
async fn a_key_reads_its_own_key_record_even_retired() {
    let World {
        l,
        callers,
        rebinding,
        ..
    } = world();
    let app = router(l.clone(), Config::new(NODE));
    let get = |path: String, key: &Keypair| {
        let h = sign(&path, key);
        let app = app.clone();
        async move {
            let resp = app
                .oneshot(
                    Request::get(path.as_str())
                        .header("authorization", h)
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap();
            resp.status()
        }
    };
    let own = |k: &Keypair| {
        format!(
            "/v1/records/{}",
            hex::encode(medspace_state::records::keys::principal(&k.public()))
        )
    };
    for (who, k, is) in &callers {
        let Some(k) = k else { continue };
        let want = match is {
            // The retired key's record says so; an outsider's does not exist.
            Is::NoStanding if *who == "an outsider's key" => StatusCode::NOT_FOUND,
            Is::PendingKey => StatusCode::NOT_FOUND,
            _ => StatusCode::OK,
        };
        assert_eq!(
            get(own(k), k).await,
            want,
            "{who} reading its own key record"
        );
    }
    // Another key's record is not a retired key's to read.
    let retired = callers
        .iter()
        .find(|(w, ..)| *w == "a retired key")
        .and_then(|(_, k, _)| k.clone())
        .unwrap();
    assert_eq!(get(own(&rebinding), &retired).await, StatusCode::FORBIDDEN);
}
