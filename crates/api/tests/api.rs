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
use medspace_api::{Ledger, Limits, Snapshot, SubmitError, TxStatus, auth, router};
use medspace_state::{BlockContext, State};
use medspace_types::*;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

struct Local {
    inner: Mutex<(State, u64, HashMap<Hash, TxStatus>)>,
}

impl Ledger for Local {
    fn snapshot(&self) -> Snapshot {
        let g = self.inner.lock().unwrap();
        Snapshot {
            state: g.0.clone(),
            height: g.1,
            time_ms: 1_000_000 + g.1,
            anchor: (g.1 > 0).then(|| medspace_api::Anchor {
                height: g.1,
                digest: "test".into(),
                state_root: g.0.root(),
                finality: medspace_ledger::Finality::Certificate,
            }),
        }
    }
    fn submit(&self, tx: SignedTx) -> Result<Hash, SubmitError> {
        let mut g = self.inner.lock().unwrap();
        g.0.check_tx(&tx)
            .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let id = tx.id();
        g.1 += 1;
        let ctx = BlockContext {
            height: g.1,
            time_ms: 1_000_000 + g.1,
        };
        let status = match g.0.apply(&tx, &ctx) {
            Ok(r) => TxStatus::Finalized {
                height: ctx.height,
                receipt: Some(r),
            },
            Err(e) => TxStatus::Refused {
                height: ctx.height,
                reason: e.to_string(),
            },
        };
        g.2.insert(id, status);
        Ok(id)
    }
    fn tx_status(&self, id: &Hash) -> TxStatus {
        self.inner
            .lock()
            .unwrap()
            .2
            .get(id)
            .cloned()
            .unwrap_or(TxStatus::Unknown)
    }
}

fn chain() -> Name {
    Name::new("test-chain").unwrap()
}

/// A patient's registration, attested by hospital-a's member key (seed 1, as in [`setup`]).
fn registration(patient: &PublicKey) -> Payload {
    Payload::RegisterPatient(RegisterPatient::attested(
        &chain(),
        patient,
        MemberId::new("hospital-a").unwrap(),
        &Keypair::from_seed(1),
    ))
}

fn setup() -> (Arc<Local>, Keypair, Keypair) {
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

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
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

fn signed_get(key: &Keypair, path: &str) -> Request<Body> {
    let h = auth::sign_request(key, "GET", path, now(), b"");
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
    let app = router(l, Limits::default());
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
    for p in [
        "/v1/tx",
        "/v1/patients/{id}/log",
        "/v1/records/{key}",
        "/v1/contracts/{id}",
    ] {
        assert!(v["paths"][p].is_object(), "{p} undocumented");
    }
}

#[tokio::test]
async fn bad_transactions_get_4xx_and_change_nothing() {
    let (l, member, _) = setup();
    let app = router(l.clone(), Limits::default());
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
    let app = router(l.clone(), Limits::default());
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
        Limits {
            requests_per_sec: 1,
            burst: 2,
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
