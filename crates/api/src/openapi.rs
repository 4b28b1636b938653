//! The OpenAPI 3.1 document of the node API (hand-written: the API is small, and a test checks
//! that every route of the router is documented).

use serde_json::{Value, json};

/// Every documented path with its method.
pub const PATHS: &[(&str, &str, &str)] = &[
    (
        "/v1/health",
        "get",
        "liveness and the last finalized height (open)",
    ),
    ("/openapi.json", "get", "this document (open)"),
    (
        "/console/",
        "get",
        "the console (open): the patient portal's page; its modules and styles are served beside it",
    ),
    (
        "/console/{asset}",
        "get",
        "one of the console's embedded files (open): app.js, ledger.js, codec.js, i18n.js, qr.js, style.css",
    ),
    (
        "/console/genesis.json",
        "get",
        "this node's genesis file byte for byte (open): the console checks its SHA-256 against the hash pinned in its address",
    ),
    (
        "/console/node.json",
        "get",
        "which member's node this is (open): the audience of signed requests",
    ),
    (
        "/v1/tx",
        "post",
        "submit a signed transaction (canonical bytes); answers its id",
    ),
    (
        "/v1/txs",
        "post",
        "submit up to 1,024 signed transactions in one batch (u32 count, then u32 length and bytes each; validators only); answers per transaction its id or the refusal and its status",
    ),
    (
        "/v1/tx/{id}",
        "get",
        "status of a transaction: unknown, pending, finalized with its receipt, or refused with the reason",
    ),
    (
        "/v1/blocks/{height}/raw",
        "get",
        "a finalized block with its finality certificate (?wait_ms= long-polls; signed by an active member's key or its user's; checked before any wait)",
    ),
    (
        "/v1/blocks/{height}/header",
        "get",
        "a finalized block's header with its finality certificate, for light clients (?wait_ms= long-polls; any registered key; checked before any wait)",
    ),
    (
        "/v1/worker/jobs/{job}/result",
        "get",
        "a job's released result, to its submitter only and only once the ledger holds its hash (202 before)",
    ),
    (
        "/v1/records/export",
        "get",
        "the calling patient's own record as a FHIR Bundle (signed by the patient for this node; another person's resources withheld)",
    ),
    (
        "/v1/records/redeem",
        "post",
        "redeem a patient's authorization code for their records (signed by the grantee; five wrong codes lock the grant)",
    ),
    (
        "/v1/status",
        "get",
        "chain id, height, time, state root and the anchor that commits to it",
    ),
    (
        "/v1/catalog",
        "get",
        "the data catalog (descriptions, counts, quality; never data)",
    ),
    (
        "/v1/members",
        "get",
        "member institutions and their credit balances",
    ),
    (
        "/v1/contracts",
        "get",
        "data-use contracts, optionally filtered by ?status=",
    ),
    (
        "/v1/contracts/{id}",
        "get",
        "a contract with its inclusion proof and anchor",
    ),
    (
        "/v1/contracts/{id}/jobs",
        "get",
        "the jobs of a contract, each with its inclusion proof",
    ),
    (
        "/v1/members/{id}/deliveries",
        "get",
        "the record deliveries a member served, each with its inclusion proof (its own keys and users, or a regulator's auditor)",
    ),
    (
        "/v1/jobs/{id}",
        "get",
        "a job record (canonical bytes) with its inclusion proof",
    ),
    (
        "/v1/grants/{id}",
        "get",
        "a grant with its inclusion proof (its patient, grantee or holder, or a regulator's auditor; anyone else: not found)",
    ),
    (
        "/v1/users/{id}/approvals",
        "get",
        "contracts waiting for this user's approval",
    ),
    (
        "/v1/patients/{id}/log",
        "get",
        "the patient's log and record accesses, each with its proof (patient or auditor)",
    ),
    (
        "/v1/patients/{id}/jobs",
        "get",
        "the aggregate jobs that may have counted the patient (?holders=hospital-a,hospital-b: the hospitals holding their records), each job and contract with its proof (patient or auditor)",
    ),
    (
        "/v1/patients/{id}/consents",
        "get",
        "the patient's consents with proofs (patient or auditor)",
    ),
    (
        "/v1/patients/{id}/grants",
        "get",
        "the patient's grants with proofs (patient or auditor)",
    ),
    (
        "/v1/records/{key}",
        "get",
        "any state record by hex key, with its inclusion proof",
    ),
];

/// The OpenAPI document.
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for (path, method, summary) in PATHS {
        let mut op = json!({
            "summary": summary,
            "responses": {
                "200": { "description": "ok" },
                "400": { "description": "bad input, with {\"error\": message}" },
                "401": { "description": "missing or bad request signature" },
                "403": { "description": "caller not allowed" },
                "404": { "description": "not found" },
                "429": { "description": "rate limited" }
            }
        });
        if !matches!(
            *path,
            "/v1/health" | "/openapi.json" | "/v1/tx" | "/v1/txs" | "/v1/tx/{id}"
        ) && let Some(o) = op.as_object_mut()
        {
            o.insert("security".into(), json!([{ "medspace": [] }]));
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        if let Some(e) = entry.as_object_mut() {
            e.insert(method.to_string(), op);
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "medspace node API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "medspace": {
                    "type": "apiKey", "in": "header", "name": "authorization",
                    "description": "Medspace key=<hex ed25519 key>,ts=<unix ms>,nonce=<32 hex>,aud=<member whose node this is>,sig=<hex signature, namespace medspace/api/v2, over medspace-request-v2\\nMETHOD\\nPATH?QUERY\\nAUD\\nTS\\nNONCE\\nhex(sha256(body))>; each signed request is accepted once, within 60 s of the node's clock"
                }
            }
        }
    })
}
