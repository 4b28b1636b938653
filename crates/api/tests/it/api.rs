//! The API against an in-process ledger: signed reads, access control, proofs, bad input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use medspace_api::{Config, Ledger, Limits, TxStatus, auth, router};
use medspace_state::State;
use medspace_types::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

use crate::local;
use local::Local;

pub(crate) fn chain() -> Name {
    Name::new("test-chain").unwrap()
}

/// A patient's registration, attested by hospital-a's member key (seed 1, as in [`setup`]).
pub(crate) fn registration(patient: &PublicKey) -> Payload {
    Payload::RegisterPatient(RegisterPatient::attested(
        &chain(),
        patient,
        MemberId::new("hospital-a").unwrap(),
        &Keypair::from_seed(1),
    ))
}

pub(crate) fn setup() -> (Arc<Local>, Keypair, Keypair) {
    let member = Keypair::from_seed(1);
    let auditor = Keypair::from_seed(2);
    let g = medspace_consortium::GenesisBuilder::new("test-chain")
        .unwrap()
        .time(1_000_000)
        .member_with(
            "hospital-a",
            MemberKind::Hospital,
            &member,
            10,
            Hash::default(),
        )
        .unwrap()
        .member("regulator", MemberKind::Regulator, &Keypair::from_seed(3))
        .unwrap()
        .user("regulator.auditor", "regulator", Role::Auditor, &auditor)
        .unwrap()
        .build();
    let state = State::genesis(&g).unwrap();
    (
        Arc::new(Local {
            inner: Mutex::new((state, 0, HashMap::new())),
        }),
        member,
        auditor,
    )
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The node the API under test belongs to.
pub(crate) const NODE: &str = "hospital-a";

pub(crate) fn signed_get(key: &Keypair, path: &str) -> Request<Body> {
    signed_get_for(key, path, NODE)
}

fn signed_get_for(key: &Keypair, path: &str, audience: &str) -> Request<Body> {
    let h = auth::Request {
        method: "GET",
        path_and_query: path,
        audience,
        body: b"",
    }
    .sign(key);
    Request::get(path)
        .header("authorization", h)
        .body(Body::empty())
        .unwrap()
}

fn post_tx(bytes: Vec<u8>) -> Request<Body> {
    Request::post("/v1/tx").body(Body::from(bytes)).unwrap()
}

#[tokio::test]
async fn health_and_openapi_are_open_and_every_route_is_documented() {
    let (l, ..) = setup();
    let app = router(l, Config::new(NODE));
    let (s, v) = call(
        &app,
        Request::get("/v1/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    let (s, v) = call(
        &app,
        Request::get("/openapi.json").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v,
        medspace_api::openapi(),
        "the served document is the one made"
    );
    // Every route registered in the source of any router a node merges is in the one list
    // the document is made from, and every route of the list is registered somewhere (that
    // each is really served is checked on a running devnet: crates/cli/tests/devnet.rs).
    let mut registered = Vec::new();
    for file in ROUTER_SOURCES {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(file);
        let src = std::fs::read_to_string(&path).unwrap();
        let found = registrations(&src);
        assert!(!found.is_empty(), "no routes found in {file}");
        registered.extend(found);
    }
    for (path, method) in &registered {
        assert!(
            medspace_api::ROUTES
                .iter()
                .any(|r| r.path == path && r.method == method),
            "{method} {path} is served but not documented in crates/api/src/openapi.rs ROUTES"
        );
    }
    for r in medspace_api::ROUTES {
        assert!(
            registered.iter().any(|(p, m)| p == r.path && m == r.method),
            "{} {} is documented but no router registers it",
            r.method,
            r.path
        );
        let op = &v["paths"][r.path][r.method];
        assert!(op.is_object(), "{} {} missing", r.method, r.path);
        let declared: Vec<&str> = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(
            declared,
            medspace_api::path_parameters(r.path),
            "{}",
            r.path
        );
    }
    validate_openapi(&v);
}

/// The sources of every router a node serves (validator or observer).
const ROUTER_SOURCES: &[&str] = &[
    "api/src/lib.rs",
    "chain/src/api.rs",
    "worker/src/http.rs",
    "console/src/lib.rs",
    "node/src/relay.rs",
    "node/src/consortium.rs",
];

/// The `(path, method)` of every `.route(PATH, get(..)/post(..))` in `src` (a path given as a
/// constant is looked up in the same file).
fn registrations(src: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let arg = rest.trim_start();
        let path = if let Some(lit) = arg.strip_prefix('"') {
            lit[..lit.find('"').unwrap()].to_string()
        } else {
            let ident = &arg[..arg.find(',').unwrap()];
            let decl = format!("const {ident}: &str = \"");
            let at = src
                .find(&decl)
                .unwrap_or_else(|| panic!("no const {ident}"))
                + decl.len();
            src[at..at + src[at..].find('"').unwrap()].to_string()
        };
        let method = ["get(", "post("]
            .iter()
            .filter_map(|m| rest.find(m).map(|at| (at, m.trim_end_matches('('))))
            .min()
            .unwrap()
            .1;
        out.push((path, method.to_string()));
    }
    out
}

/// Runs the independent validator `openapi-spec-validator` (PyPI, pinned; installed by
/// `.ci/run` into `.ci/venv`) on the document. Without it the check is skipped loudly, except
/// under CI=true, where it fails.
fn validate_openapi(doc: &serde_json::Value) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let exe = root.join(".ci/venv/bin/openapi-spec-validator");
    if !exe.exists() {
        let msg = format!(
            "openapi-spec-validator not found at {} (run .ci/run, or: python3 -m venv .ci/venv && .ci/venv/bin/pip install openapi-spec-validator==0.9.0)",
            exe.display()
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("SKIPPED: the OpenAPI document's independent validation: {msg}");
        return;
    }
    let file = std::env::temp_dir().join(format!("medspace-openapi-{}.json", std::process::id()));
    std::fs::write(&file, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    let out = std::process::Command::new(&exe)
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn bad_transactions_get_4xx_and_change_nothing() {
    let (l, member, _) = setup();
    let app = router(l.clone(), Config::new(NODE));
    let root = l.snapshot().state.root();
    // Garbage bytes.
    let (s, v) = call(&app, post_tx(vec![1, 2, 3])).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("cannot decode transaction")
    );
    // Bad signature.
    let mut tx = SignedTx::new(&chain(), &member, 0, registration(&member.public()));
    tx.body.nonce = 1;
    let (s, v) = call(&app, post_tx(tx.to_bytes().to_vec())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("bad signature"),
        "{v}"
    );
    // Wrong chain id.
    let tx = SignedTx::new(
        &Name::new("other").unwrap(),
        &member,
        0,
        Payload::Settle(Settle {
            contract: ContractId(1),
        }),
    );
    let (s, v) = call(&app, post_tx(tx.to_bytes().to_vec())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("wrong chain id"),
        "{v}"
    );
    // Oversized.
    let (s, _) = call(&app, post_tx(vec![0u8; MAX_TX_BYTES + 1])).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(l.snapshot().state.root(), root, "nothing changed");
    // A good one, then its replay.
    let patient = Keypair::from_seed(50);
    let tx = SignedTx::new(&chain(), &patient, 0, registration(&patient.public()));
    let (s, v) = call(&app, post_tx(tx.to_bytes().to_vec())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["id"], tx.id().to_hex());
    let (s, v) = call(&app, post_tx(tx.to_bytes().to_vec())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("bad nonce"), "{v}");
    let (s, v) = call(
        &app,
        Request::get(format!("/v1/tx/{}", tx.id()))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "finalized");
}

#[tokio::test]
async fn reads_need_a_known_signer_and_patients_see_only_their_own_log() {
    let (l, member, auditor) = setup();
    let app = router(l.clone(), Config::new(NODE));
    let (s, _) = call(
        &app,
        Request::get("/v1/status").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let stranger = Keypair::from_seed(99);
    let (s, _) = call(&app, signed_get(&stranger, "/v1/status")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = call(&app, signed_get(&member, "/v1/status")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["chain_id"], "test-chain");

    let alice = Keypair::from_seed(60);
    let bob = Keypair::from_seed(61);
    for k in [&alice, &bob] {
        l.submit(SignedTx::new(&chain(), k, 0, registration(&k.public())))
            .unwrap();
        l.submit(SignedTx::new(
            &chain(),
            k,
            1,
            Payload::SetConsent(SetConsent {
                purpose: Purpose::Research,
                study: None,
                decision: Decision::Allow,
                l4_opt_in: false,
            }),
        ))
        .unwrap();
    }
    let alice_id = PatientId::from_key(&alice.public());
    let path = format!("/v1/patients/{alice_id}/log");
    let (s, v) = call(&app, signed_get(&alice, &path)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["log"].as_array().unwrap().len(), 1);
    // The proof verifies against the answered root.
    let root: Hash = v["root"].as_str().unwrap().parse().unwrap();
    let entry = &v["log"][0];
    let proof: medspace_state::trie::Proof =
        serde_json::from_value(entry["proof"].clone()).unwrap();
    let key = hex::decode(entry["key"].as_str().unwrap()).unwrap();
    let value = hex::decode(entry["value"].as_str().unwrap()).unwrap();
    proof.verify(&root, &key, &value).unwrap();
    let mut tampered = value.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(proof.verify(&root, &key, &tampered).is_err());
    // Bob and the hospital may not read Alice's log; the auditor may.
    let (s, _) = call(&app, signed_get(&bob, &path)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&app, signed_get(&member, &path)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&app, signed_get(&auditor, &path)).await;
    assert_eq!(s, StatusCode::OK);
    // Raw record route honours the same rule.
    let (s, _) = call(
        &app,
        signed_get(
            &bob,
            &format!("/v1/records/{}", entry["key"].as_str().unwrap()),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn rate_limit_answers_429() {
    let (l, ..) = setup();
    let app = router(
        l,
        Config {
            member: NODE.into(),
            limits: Limits {
                requests_per_sec: 1,
                burst: 2,
                ..Limits::default()
            },
        },
    );
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(
            call(
                &app,
                Request::get("/v1/health").body(Body::empty()).unwrap(),
            )
            .await
            .0,
        );
    }
    assert_eq!(
        codes
            .iter()
            .filter(|c| **c == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        2,
        "{codes:?}"
    );
}

/// A patient registered with a research consent, and the id of a grant they issued to the
/// regulator for records held by hospital-a.
fn patient_with_grant(l: &Local, key: &Keypair) -> GrantId {
    l.submit(SignedTx::new(&chain(), key, 0, registration(&key.public())))
        .unwrap();
    let id = l
        .submit(SignedTx::new(
            &chain(),
            key,
            1,
            Payload::IssueGrant(IssueGrant {
                grantee: MemberId::new("regulator").unwrap(),
                holder: MemberId::new("hospital-a").unwrap(),
                purpose: Purpose::Treatment,
                resource_types: List::new(vec![Text::new("Condition").unwrap()]).unwrap(),
                period_from_ms: 0,
                period_to_ms: 2_000_000,
                expiry_ms: 9_000_000,
                max_uses: 1,
                code_hash: Hash::of(&[b"code"]),
            }),
        ))
        .unwrap();
    match l.tx_status(&id) {
        TxStatus::Finalized {
            receipt: Some(r), ..
        } => match r.created {
            Some(medspace_state::Created::Grant(g)) => g,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn what_concerns_a_patient_answers_them_the_grant_parties_and_the_regulators_auditor() {
    let (l, member, auditor) = setup();
    // An auditor a hospital made for itself (governance would refuse it on the ledger; the
    // read API does not rely on that).
    let own_auditor = Keypair::from_seed(4);
    let g = medspace_consortium::GenesisBuilder::new("test-chain")
        .unwrap()
        .time(1_000_000)
        .member_with(
            "hospital-a",
            MemberKind::Hospital,
            &member,
            10,
            Hash::default(),
        )
        .unwrap()
        .member("regulator", MemberKind::Regulator, &Keypair::from_seed(3))
        .unwrap()
        .user("regulator.auditor", "regulator", Role::Auditor, &auditor)
        .unwrap()
        .member("hospital-b", MemberKind::Hospital, &Keypair::from_seed(5))
        .unwrap()
        .user(
            "hospital-b.auditor",
            "hospital-b",
            Role::Auditor,
            &own_auditor,
        )
        .unwrap()
        .build();
    *l.inner.lock().unwrap() = (State::genesis(&g).unwrap(), 0, HashMap::new());
    let app = router(l.clone(), Config::new(NODE));
    let (alice, bob) = (Keypair::from_seed(60), Keypair::from_seed(61));
    let grant = patient_with_grant(&l, &alice);
    patient_with_grant(&l, &bob);
    let alice_id = PatientId::from_key(&alice.public());
    let root = l.snapshot().state.root();

    let log = format!("/v1/patients/{alice_id}/log");
    let (s, _) = call(&app, signed_get(&own_auditor, &log)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a member's own auditor");
    let (s, _) = call(&app, signed_get(&auditor, &log)).await;
    assert_eq!(s, StatusCode::OK, "the regulator's auditor");
    // Deliveries awaiting destruction: the regulator's auditors only, without pseudonyms.
    let open = "/v1/accesses/undestroyed";
    let (s, v) = call(&app, signed_get(&auditor, open)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["accesses"].is_array(), "{v}");
    assert!(v["releases"].is_array(), "{v}");
    assert!(!v.to_string().contains("pt-"), "{v}");
    for (who, key) in [
        ("a member's own auditor", &own_auditor),
        ("a hospital", &member),
        ("a patient", &alice),
    ] {
        let (s, v) = call(&app, signed_get(key, open)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{who}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("only an auditor"),
            "{v}"
        );
    }

    let by_id = format!("/v1/grants/{grant}");
    let by_key = format!(
        "/v1/records/{}",
        hex::encode(medspace_state::records::keys::grant(grant))
    );
    for path in [&by_id, &by_key] {
        for (who, key, want) in [
            ("the patient", &alice, StatusCode::OK),
            ("the holder", &member, StatusCode::OK),
            (
                "the regulator's auditor (grantee side)",
                &auditor,
                StatusCode::OK,
            ),
            ("another patient", &bob, StatusCode::NOT_FOUND),
            (
                "a member's own auditor",
                &own_auditor,
                StatusCode::NOT_FOUND,
            ),
        ] {
            let (s, v) = call(&app, signed_get(key, path)).await;
            assert_eq!(s, want, "{who} reading {path}: {v}");
        }
    }
    // A grant that does not exist answers the same as one the caller may not read.
    let (s, v) = call(&app, signed_get(&bob, "/v1/grants/g-0000000000000001")).await;
    let (s2, v2) = call(&app, signed_get(&bob, &by_id)).await;
    assert_eq!(
        (s, v["error"].as_str().map(|e| e.contains("not found"))),
        (s2, v2["error"].as_str().map(|e| e.contains("not found")))
    );
    // A hospital's record deliveries: its own keys and users, and the regulator's auditor.
    let deliveries = "/v1/members/hospital-a/deliveries";
    for (who, key, want) in [
        ("the member", &member, StatusCode::OK),
        ("the regulator's auditor", &auditor, StatusCode::OK),
        (
            "another member's auditor",
            &own_auditor,
            StatusCode::NOT_FOUND,
        ),
        ("a patient", &alice, StatusCode::NOT_FOUND),
    ] {
        let (s, v) = call(&app, signed_get(key, deliveries)).await;
        assert_eq!(s, want, "{who} reading {deliveries}: {v}");
        if s == StatusCode::OK {
            assert!(v["deliveries"].is_array(), "{v}");
            assert!(v["releases"].is_array(), "{v}");
        }
    }
    assert_eq!(l.snapshot().state.root(), root, "reads change nothing");
}

#[tokio::test]
async fn a_signed_request_is_good_once_and_at_its_node_only() {
    let (l, member, _) = setup();
    let app = router(l, Config::new(NODE));
    let req = || {
        let h = auth::Request {
            method: "GET",
            path_and_query: "/v1/status",
            audience: NODE,
            body: b"",
        }
        .sign(&member);
        move || {
            Request::get("/v1/status")
                .header("authorization", h.clone())
                .body(Body::empty())
                .unwrap()
        }
    };
    let once = req();
    let (s, _) = call(&app, once()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, once()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["error"].as_str().unwrap().contains("replayed"), "{v}");
    // Signed for another node: refused here.
    let (s, v) = call(&app, signed_get_for(&member, "/v1/status", "hospital-b")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert!(v["error"].as_str().unwrap().contains("another node"), "{v}");
}

#[tokio::test]
async fn one_key_cannot_use_up_the_api_for_the_others() {
    let (l, member, auditor) = setup();
    let app = router(
        l,
        Config {
            member: NODE.into(),
            limits: Limits {
                per_key_per_sec: 1,
                per_key_burst: 3,
                ..Limits::default()
            },
        },
    );
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(call(&app, signed_get(&member, "/v1/status")).await.0);
    }
    assert_eq!(
        codes.iter().filter(|c| **c == StatusCode::OK).count(),
        3,
        "{codes:?}"
    );
    assert_eq!(codes.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    let (s, _) = call(&app, signed_get(&auditor, "/v1/status")).await;
    assert_eq!(s, StatusCode::OK, "another key is served");
}

#[test]
fn whole_blocks_go_to_the_consortium_and_headers_to_any_registered_key() {
    use medspace_chain::api::{ChainAccess, ReadGate};
    let (l, member, auditor) = setup();
    let patient = Keypair::from_seed(70);
    l.submit(SignedTx::new(
        &chain(),
        &patient,
        0,
        registration(&patient.public()),
    ))
    .unwrap();
    let gate = medspace_api::gate::ChainGate::new(l.clone(), NODE);
    let path = "/v1/blocks/1/raw";
    let ask = |key: Option<&Keypair>, audience: &str| {
        let mut h = axum::http::HeaderMap::new();
        if let Some(k) = key {
            let v = auth::Request {
                method: "GET",
                path_and_query: path,
                audience,
                body: b"",
            }
            .sign(k);
            h.insert("authorization", v.parse().unwrap());
        }
        gate.access("GET", path, &h)
    };
    assert_eq!(
        ask(Some(&member), NODE).unwrap(),
        ChainAccess::Blocks,
        "a member"
    );
    assert_eq!(
        ask(Some(&auditor), NODE).unwrap(),
        ChainAccess::Blocks,
        "a member's user"
    );
    assert_eq!(
        ask(Some(&patient), NODE).unwrap(),
        ChainAccess::Headers,
        "a patient"
    );
    assert_eq!(
        ask(Some(&Keypair::from_seed(99)), NODE).unwrap_err().status,
        403,
        "unknown"
    );
    assert_eq!(ask(None, NODE).unwrap_err().status, 401, "unsigned");
    assert_eq!(
        ask(Some(&member), "hospital-b").unwrap_err().status,
        401,
        "another node's"
    );
    // A member's node key reads for its member (an observer follows with it): blocks, as the
    // member key, no more.
    let node = medspace_consortium::derived_node_key(&member);
    assert_eq!(
        ask(Some(&node), NODE).unwrap(),
        ChainAccess::Blocks,
        "a member's node key"
    );
    assert_eq!(
        ask(Some(&node), "hospital-b").unwrap_err().status,
        401,
        "a node key's request for another node"
    );
    // A genesis validator's key reads whole blocks (a validator joining by state sync reads its
    // peer's checkpoint with it) where the gate is told the validators, and nowhere else.
    let validator = Keypair::from_seed(71);
    assert_eq!(
        ask(Some(&validator), NODE).unwrap_err().status,
        403,
        "a validator key at a gate that knows no validators"
    );
    let gate =
        medspace_api::gate::ChainGate::new(l.clone(), NODE).with_validators([validator.public()]);
    let ask = |key: &Keypair, audience: &str| {
        let mut h = axum::http::HeaderMap::new();
        let v = auth::Request {
            method: "GET",
            path_and_query: path,
            audience,
            body: b"",
        }
        .sign(key);
        h.insert("authorization", v.parse().unwrap());
        gate.access("GET", path, &h)
    };
    assert_eq!(
        ask(&validator, NODE).unwrap(),
        ChainAccess::Blocks,
        "a genesis validator"
    );
    assert_eq!(
        ask(&validator, "hospital-b").unwrap_err().status,
        401,
        "a validator's request for another node"
    );
    assert_eq!(
        ask(&Keypair::from_seed(99), NODE).unwrap_err().status,
        403,
        "unknown, still"
    );
}
