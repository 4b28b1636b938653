//! The state in pieces (`/v1/state/pin`, `/v1/state/nodes`): a light client's state read
//! through the API equals the node's, one pinned height stays readable as blocks finalize,
//! and only the consortium reads pieces.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use medspace_api::{Config, Ledger, router};
use medspace_state::State;
use medspace_state::records::keys;
use medspace_state::trie::remote::{Locate, NodeSource, RemoteNodes};
use medspace_types::*;
use serde_json::Value;
use tower::ServiceExt;

use crate::api::{NODE, chain, registration, setup, signed_get as signed};
use crate::local::Local;

fn register(l: &Local, patient: &Keypair) {
    l.submit(SignedTx::new(
        &chain(),
        patient,
        0,
        registration(&patient.public()),
    ))
    .unwrap();
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

/// Pieces through the router, as a client's HTTP reader would fetch them.
struct Through {
    app: axum::Router,
    key: Keypair,
    height: u64,
    runtime: tokio::runtime::Handle,
}

impl NodeSource for Through {
    fn fetch(&self, at: Locate<'_>) -> Result<Vec<u8>, String> {
        let path = format!(
            "/v1/state/nodes?height={}&at={}&depth={}&toward={}&whole_from={}",
            self.height,
            hex::encode(at.path),
            at.depth,
            hex::encode(at.toward),
            at.whole_from
        );
        let (status, body) = self
            .runtime
            .block_on(call(&self.app, signed(&self.key, &path)));
        if status == StatusCode::OK {
            Ok(body)
        } else {
            Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_light_state_read_through_the_api_equals_the_nodes_and_stays_pinned() {
    // The regulator's auditor: a user of an active member.
    let (l, member, auditor) = setup();
    let patients: Vec<Keypair> = (0..40).map(|i| Keypair::from_seed(100 + i)).collect();
    for p in &patients {
        register(&l, p);
    }
    let app = router(l.clone(), Config::new(NODE));
    let (s, body) = call(&app, signed(&auditor, "/v1/state/pin")).await;
    assert_eq!(s, StatusCode::OK);
    let pin: Value = serde_json::from_slice(&body).unwrap();
    let pinned = l.snapshot();
    assert_eq!(pin["height"], pinned.height);
    assert_eq!(pin["root"], pinned.state.root().to_string());

    // Blocks finalize after the pin; the pinned height is still what the pieces are of.
    for p in (0..5).map(|i| Keypair::from_seed(500 + i)) {
        register(&l, &p);
    }
    assert_ne!(l.snapshot().state.root(), pinned.state.root());

    let source = Through {
        app: app.clone(),
        key: auditor.clone(),
        height: pinned.height,
        runtime: tokio::runtime::Handle::current(),
    };
    let expected = pinned.state.clone();
    let late = Keypair::from_seed(500);
    let (fetches, light_root) = tokio::task::spawn_blocking(move || {
        let nodes = RemoteNodes::new(source, 1024);
        let light = State::remote(expected.root(), expected.len(), &nodes).unwrap();
        for p in &patients {
            assert_eq!(
                light.key_record(&p.public()).unwrap(),
                expected.key_record(&p.public()).unwrap()
            );
            let k = keys::principal(&p.public());
            assert_eq!(light.prove(&k).unwrap(), expected.prove(&k).unwrap());
        }
        // A key registered after the pin is not in the pinned state.
        assert_eq!(light.key_record(&late.public()).unwrap(), None);
        assert_eq!(light.members().unwrap(), expected.members().unwrap());
        assert_eq!(light.policy().unwrap(), expected.policy().unwrap());
        (nodes.fetches(), light.root())
    })
    .await
    .unwrap();
    assert_eq!(light_root, pinned.state.root());
    // A fetch per uncached read, not per trie level, nor per record of the state.
    assert!(fetches > 0 && fetches < 120, "{fetches}");

    // A height nobody pinned is gone; garbage is refused.
    let (s, _) = call(
        &app,
        signed(&auditor, "/v1/state/nodes?height=3&at=&depth=0&toward="),
    )
    .await;
    assert_eq!(s, StatusCode::GONE);
    let path = format!(
        "/v1/state/nodes?height={}&at=zz&depth=0&toward=",
        pinned.height
    );
    let (s, _) = call(&app, signed(&auditor, &path)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let long = "00".repeat(2000);
    let path = format!(
        "/v1/state/nodes?height={}&at={long}&depth=0&toward=",
        pinned.height
    );
    let (s, _) = call(&app, signed(&member, &path)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // A query without its height, or with one that is not a number: a clear 400 in JSON.
    for path in [
        "/v1/state/nodes?at=&depth=0&toward=",
        "/v1/state/nodes?height=tall&at=&depth=0&toward=",
        "/v1/state/nodes?height=1&depth=-1",
    ] {
        let (s, body) = call(&app, signed(&member, path)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"].is_string(), "{path}: {v}");
    }
}

#[tokio::test]
async fn only_the_consortium_reads_pieces() {
    let (l, member, _) = setup();
    let patient = Keypair::from_seed(60);
    register(&l, &patient);
    let app = router(l.clone(), Config::new(NODE));
    let height = l.snapshot().height;
    let nodes = format!("/v1/state/nodes?height={height}&at=&depth=0&toward=");
    for path in ["/v1/state/pin", nodes.as_str()] {
        // A patient reads its own records with their proofs, not the state in pieces.
        let (s, _) = call(&app, signed(&patient, path)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
        let (s, _) = call(&app, signed(&Keypair::from_seed(99), path)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
        let (s, _) = call(&app, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        // The member itself reads it (a fresh signature each time).
        let (s, _) = call(&app, signed(&member, path)).await;
        assert_eq!(s, StatusCode::OK, "{path}");
    }
}
