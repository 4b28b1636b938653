//! HTTP API on a live 4-validator loopback consortium: bad input gets a clear 4xx and changes
//! nothing; a good transaction is answered with its id and becomes finalized.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, StatusCode},
};
use commonware_runtime::{Runner as _, Supervisor as _};
use medspace_chain::{
    api::{ApiLimits, ChainAccess, GateRefusal, OpenGate, ReadGate, router},
    node::{ConsortiumSpec, Genesis, NodeConfig, SpecNode, init_consortium, start_node},
    testing::{CounterApp, sign_tx, test_key},
};
use std::net::SocketAddr;
use tower::ServiceExt as _;

const CHAIN: &str = "medspace-api";

/// Headers to callers with an `authorization` header, nothing to others.
struct HeadersOnly;

impl ReadGate for HeadersOnly {
    fn access(
        &self,
        _: &str,
        _: &str,
        headers: &axum::http::HeaderMap,
    ) -> Result<ChainAccess, GateRefusal> {
        if headers.contains_key("authorization") {
            Ok(ChainAccess::Headers)
        } else {
            Err(GateRefusal {
                status: 401,
                reason: "sign the request".into(),
            })
        }
    }
}

async fn raw_call(app: &Router, uri: &str, signed: bool) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method("GET").uri(uri);
    if signed {
        req = req.header("authorization", "test");
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    (status, bytes.to_vec())
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Vec<u8>,
) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

#[test]
fn api_rejects_bad_input_and_finalizes_good_tx() {
    let dir = medspace_chain::bench::temp_work_dir().expect("dir");
    // Ports chosen by the operating system right before the validators start.
    let ports = medspace_chain::bench::free_ports(8).expect("free ports");
    let spec = ConsortiumSpec {
        chain_id: CHAIN.into(),
        nodes: ports
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| SpecNode {
                name: format!("n{i}"),
                validator: true,
                p2p: SocketAddr::from(([127, 0, 0, 1], pair[0])),
                http: SocketAddr::from(([127, 0, 0, 1], pair[1])),
            })
            .collect(),
        app: serde_json::Value::Null,
        plain_http: false,
    };
    let configs = init_consortium(&spec, &dir).expect("init");
    let genesis_file = dir.join("genesis.json");
    let runner = commonware_runtime::tokio::Runner::new(
        commonware_runtime::tokio::Config::new().with_storage_directory(dir.join("storage")),
    );
    runner.start(|context| async move {
        let mut handles = Vec::new();
        for path in &configs {
            let c = NodeConfig::load(path).expect("config");
            let g = Genesis::load(&c.node.genesis_file).expect("genesis");
            let k = c.load_node_key().expect("key");
            handles.push(
                start_node(context.child("node"), &c, &g, k, CounterApp::new(CHAIN))
                    .await
                    .expect("node"),
            );
        }
        let api = router(
            handles[0].clone(),
            ApiLimits {
                body_limit: 4096,
                submit_per_second: 1000,
            },
            String::new,
            Router::new(),
            std::sync::Arc::new(OpenGate),
        );
        // The same node behind a gate that gives headers only, and to signed callers only.
        let gated = router(
            handles[0].clone(),
            ApiLimits {
                body_limit: 4096,
                submit_per_second: 1000,
            },
            String::new,
            Router::new(),
            std::sync::Arc::new(HeadersOnly),
        );
        let genesis = Genesis::load(&genesis_file).expect("genesis");
        let key = test_key(3);
        let good = sign_tx(&key, CHAIN, 1, "a", 2);
        let mut bad_sig = good.to_vec();
        bad_sig[25] ^= 1;
        let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
            (b"garbage".to_vec(), StatusCode::BAD_REQUEST, "rejected"),
            (bad_sig, StatusCode::BAD_REQUEST, "signature"),
            (
                sign_tx(&key, "other", 1, "a", 2).to_vec(),
                StatusCode::BAD_REQUEST,
                "chain id",
            ),
            (vec![1u8; 10_000], StatusCode::PAYLOAD_TOO_LARGE, ""),
        ];
        for (body, status, needle) in cases {
            let (s, j) = call(&api, "POST", "/v1/tx", body).await;
            assert_eq!(s, status, "{j}");
            if !needle.is_empty() {
                assert!(j["error"].as_str().unwrap_or("").contains(needle), "{j}");
            }
        }
        assert_eq!(handles[0].mempool_len(), 0, "nothing entered the mempool");
        let (s, j) = call(&api, "POST", "/v1/tx", good.to_vec()).await;
        assert_eq!(s, StatusCode::OK, "{j}");
        let id = j["tx_id"].as_str().expect("tx id").to_string();
        let (s, _) = call(&api, "POST", "/v1/tx", good.to_vec()).await;
        assert_eq!(s, StatusCode::CONFLICT, "duplicate");
        // Recorded consensus faults are open to anyone (like `/metrics`): none among honest
        // validators, even behind the gate and unsigned.
        for app in [&api, &gated] {
            let (s, j) = call(app, "GET", "/v1/faults", vec![]).await;
            assert_eq!(s, StatusCode::OK, "{j}");
            assert_eq!(j, serde_json::json!({ "total": 0, "faults": [] }));
        }
        // Wait for finality through the handle (no sleeping), then query the API.
        let mut sub = handles[0].subscribe();
        loop {
            let (_, j) = call(&api, "GET", &format!("/v1/tx/{id}"), vec![]).await;
            if j["status"] == "finalized" {
                assert_eq!(j["applied"], true);
                let h = j["height"].as_u64().expect("height");
                let (s, b) = call(&api, "GET", &format!("/v1/blocks/{h}"), vec![]).await;
                assert_eq!(s, StatusCode::OK);
                assert_eq!(b["finalization_stored"], true);
                assert!(
                    b["tx_ids"]
                        .as_array()
                        .expect("ids")
                        .iter()
                        .any(|t| t == &serde_json::json!(id))
                );
                // Behind the gate: no body, no transactions, but a certified header.
                for path in [format!("/v1/blocks/{h}"), format!("/v1/blocks/{h}/raw")] {
                    let (s, _) = raw_call(&gated, &path, true).await;
                    assert_eq!(s, StatusCode::FORBIDDEN, "{path}");
                }
                let (s, _) = raw_call(&gated, &format!("/v1/blocks/{h}/header"), false).await;
                assert_eq!(s, StatusCode::UNAUTHORIZED, "unsigned");
                let (s, header) = raw_call(&gated, &format!("/v1/blocks/{h}/header"), true).await;
                assert_eq!(s, StatusCode::OK);
                let check = medspace_chain::follow::HeaderCheck::new(&genesis).expect("check");
                let verified = check.verify(h, &header).expect("a certified header");
                assert_eq!(verified.height, h);
                assert!(check.verify(h + 1, &header).is_err(), "another height");
                let mut forged = header.clone();
                forged[90] ^= 1; // the state root
                assert!(check.verify(h, &forged).is_err(), "a changed root");
                // The gate answers before anything waits: an unsigned long-poll for a height
                // far ahead is refused at once, not after its ten seconds.
                let far = format!("/v1/blocks/{}/header?wait_ms=10000", h + 1_000);
                let (s, _) = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    raw_call(&gated, &far, false),
                )
                .await
                .expect("refused without waiting");
                assert_eq!(s, StatusCode::UNAUTHORIZED, "unsigned long-poll");
                // Live updates: `/v1/blocks?after=` answers as soon as a block above `after`
                // is finalized (the chain keeps making blocks), and at once for an old one;
                // unsigned, it is refused before any wait.
                let (s, j) = call(&api, "GET", "/v1/blocks?after=0&wait_ms=10000", vec![]).await;
                assert_eq!(s, StatusCode::OK, "{j}");
                assert!(j["height"].as_u64().expect("height") >= h, "{j}");
                let now = handles[0].height();
                let started = std::time::Instant::now();
                let (s, j) = call(
                    &api,
                    "GET",
                    &format!("/v1/blocks?after={now}&wait_ms=10000"),
                    vec![],
                )
                .await;
                assert_eq!(s, StatusCode::OK, "{j}");
                assert!(j["height"].as_u64().expect("height") > now, "{j}");
                assert!(started.elapsed() < std::time::Duration::from_secs(10));
                let (s, _) = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    raw_call(
                        &gated,
                        &format!("/v1/blocks?after={}&wait_ms=10000", h + 1_000),
                        false,
                    ),
                )
                .await
                .expect("refused without waiting");
                assert_eq!(s, StatusCode::UNAUTHORIZED, "unsigned live updates");
                break;
            }
            futures::StreamExt::next(&mut sub).await.expect("running");
        }
        // A gateway's batch: each transaction gets the answer `POST /v1/tx` would have given,
        // signatures checked in one batch; a body over the single-tx limit is fine here.
        let many: Vec<bytes::Bytes> = (0..40u64)
            .map(|i| sign_tx(&test_key(100 + i), CHAIN, 0, "b", 1))
            .collect();
        let mut bad_in_batch = many[1].to_vec();
        bad_in_batch[25] ^= 1;
        let mut batch = many.clone();
        batch[1] = bad_in_batch.into();
        batch.push(many[0].clone());
        batch.push(sign_tx(&key, "other", 2, "a", 2));
        batch.push(good.clone());
        let body = medspace_chain::engine::encode_tx_batch(&batch);
        assert!(
            body.len() > 4096,
            "the batch is larger than one transaction's limit"
        );
        let before = handles[0].mempool_len();
        let (s, j) = call(&api, "POST", "/v1/txs", body.to_vec()).await;
        assert_eq!(s, StatusCode::OK, "{j}");
        let results = j["results"].as_array().expect("results");
        assert_eq!(results.len(), batch.len());
        assert_eq!(j["accepted"], 39, "{j}");
        assert!(results[0]["tx_id"].is_string());
        assert_eq!(results[1]["status"], 400);
        assert!(
            results[1]["error"]
                .as_str()
                .unwrap_or("")
                .contains("signature"),
            "{j}"
        );
        assert!(results[2..40].iter().all(|r| r["tx_id"].is_string()), "{j}");
        assert_eq!(
            results[40]["status"], 409,
            "a copy of an admitted transaction: {j}"
        );
        assert_eq!(results[41]["status"], 400);
        assert!(
            results[41]["error"]
                .as_str()
                .unwrap_or("")
                .contains("chain id"),
            "{j}"
        );
        assert_eq!(results[42]["status"], 400, "already finalized: {j}");
        assert!(handles[0].mempool_len() <= before + 39);
        // Malformed framing: refused whole, nothing admitted.
        let mut truncated =
            medspace_chain::engine::encode_tx_batch(std::slice::from_ref(&good)).to_vec();
        truncated.pop();
        let pool = handles[0].mempool_len();
        for body in [truncated, b"xy".to_vec(), vec![]] {
            let (s, j) = call(&api, "POST", "/v1/txs", body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{j}");
            assert!(
                j["error"].as_str().unwrap_or("").contains("malformed"),
                "{j}"
            );
        }
        assert!(
            handles[0].mempool_len() <= pool,
            "nothing entered the mempool"
        );
        // Replay after finality: refused by check_tx (nonce used).
        let (s, j) = call(&api, "POST", "/v1/tx", good.to_vec()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{j}");
        assert!(j["error"].as_str().unwrap_or("").contains("nonce"));
        let (s, _) = call(&api, "GET", "/health", vec![]).await;
        assert_eq!(s, StatusCode::OK);
        let (s, _) = call(&api, "GET", "/v1/tx/zz", vec![]).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
