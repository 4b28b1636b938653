//! The OpenAPI 3.1 document of the node API (hand-written: the API is small, and a test checks
//! that every route of the router is documented).

use serde_json::{Value, json};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: no request signature.
    Open,
    /// A request signed for this node by a key the ledger knows (see the security scheme); the
    /// summary says whose keys are answered.
    Signed,
}

/// Which nodes serve a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// Validators and observers.
    Every,
    /// Validators (the chain's own API).
    Validators,
    /// Validators with a `[worker]` section (the hospitals' data holders).
    Workers,
}

/// One route a node serves: the one list the document is made from, and that the tests hold
/// against the routers.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// The path, with `{parameters}`.
    pub path: &'static str,
    /// `get` or `post`.
    pub method: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Which nodes serve it.
    pub served: Served,
    /// Its optional query parameters: name and meaning.
    pub query: &'static [(&'static str, &'static str)],
    /// What it does.
    pub summary: &'static str,
}

const fn r(
    path: &'static str,
    method: &'static str,
    access: Access,
    served: Served,
    summary: &'static str,
) -> Route {
    Route {
        path,
        method,
        access,
        served,
        query: &[],
        summary,
    }
}

const fn q(
    path: &'static str,
    access: Access,
    served: Served,
    query: &'static [(&'static str, &'static str)],
    summary: &'static str,
) -> Route {
    Route {
        path,
        method: "get",
        access,
        served,
        query,
        summary,
    }
}

use Access::{Open, Signed};
use Served::{Every, Validators, Workers};

const WAIT: (&str, &str) = (
    "wait_ms",
    "wait up to this many ms (at most 10,000) for the height (long-poll); the signature is checked before any wait",
);

/// Every route a node serves: the read API (this crate), the chain's API (`medspace-chain`),
/// the worker's (`medspace-worker`), the console and its relay (`medspace-console`,
/// `medspace-node`) and the consortium's health (`medspace-node`).
pub const ROUTES: &[Route] = &[
    r(
        "/v1/health",
        "get",
        Open,
        Every,
        "liveness and the last finalized height",
    ),
    r("/openapi.json", "get", Open, Every, "this document"),
    r(
        "/health",
        "get",
        Open,
        Validators,
        "the chain's health: height, mempool size, whether it halted (503 if so), the checkpoint height its state started from",
    ),
    r(
        "/metrics",
        "get",
        Open,
        Validators,
        "Prometheus metrics of the node (no patient data)",
    ),
    r(
        "/v1/faults",
        "get",
        Open,
        Validators,
        "the consensus faults this node proved (two contradicting signed votes of one validator), each with its evidence",
    ),
    r("/console", "get", Open, Every, "redirects to /console/"),
    r(
        "/console/",
        "get",
        Open,
        Every,
        "the console: the patient portal's page; its modules and styles are served beside it",
    ),
    r(
        "/console/{asset}",
        "get",
        Open,
        Every,
        "one of the console's embedded files: its ES modules and style sheet",
    ),
    r(
        "/console/genesis.json",
        "get",
        Open,
        Every,
        "this node's genesis file byte for byte: the console checks its SHA-256 against the hash pinned in its address",
    ),
    r(
        "/console/node.json",
        "get",
        Open,
        Every,
        "which member's node this is: the audience of signed requests",
    ),
    r(
        "/console/relay/{member}/v1/records/export",
        "get",
        Signed,
        Validators,
        "passes a patient's record download on to `member`'s node, the authorization header (signed in the browser for that node) untouched",
    ),
    r(
        "/console/relay/{member}/v1/worker/jobs/{job}/result",
        "get",
        Signed,
        Validators,
        "passes a researcher's request for a job's released result on to `member`'s node (the job's aggregator), the authorization header (signed in the browser for that node) untouched",
    ),
    r(
        "/console/relay/{member}/v1/worker/releases/deliver",
        "post",
        Signed,
        Validators,
        "passes a researcher's open-pool fetch on to the release owner's node, the authorization header (signed in the browser for that node) untouched",
    ),
    r(
        "/console/relay/{member}/v1/worker/releases/{dataset}/files/{name}",
        "get",
        Signed,
        Validators,
        "passes the download of a delivered release's file on to its owner's node, the authorization header untouched",
    ),
    r(
        "/v1/tx",
        "post",
        Open,
        Every,
        "submit a signed transaction (canonical bytes; the transaction carries its own signature); answers its id",
    ),
    r(
        "/v1/txs",
        "post",
        Open,
        Validators,
        "submit up to 1,024 signed transactions in one batch (u32 count, then u32 length and bytes each); answers per transaction its id or the refusal and its status",
    ),
    r(
        "/v1/tx/{id}",
        "get",
        Open,
        Every,
        "status of a transaction: unknown, pending, finalized with its receipt, or dropped with the reason",
    ),
    q(
        "/v1/blocks",
        Signed,
        Validators,
        &[
            (
                "after",
                "answer once a block above this height is finalized (live updates)",
            ),
            WAIT,
        ],
        "the latest height and the last (up to) 20 digests and state roots (any registered key)",
    ),
    r(
        "/v1/blocks/{height}",
        "get",
        Signed,
        Validators,
        "a finalized block's header fields and transaction ids (members and their users)",
    ),
    q(
        "/v1/blocks/{height}/raw",
        Signed,
        Validators,
        &[WAIT],
        "a finalized block with its finality certificate, binary (members and their users)",
    ),
    r(
        "/v1/checkpoint",
        "get",
        Signed,
        Validators,
        "the committed state as a checkpoint of the committed height, binary, for a follower to start from after checking it against that height's certified header (members and their users)",
    ),
    q(
        "/v1/blocks/{height}/header",
        Signed,
        Validators,
        &[WAIT],
        "a finalized block's header with its finality certificate, binary, for light clients (any registered key)",
    ),
    r(
        "/v1/consortium",
        "get",
        Signed,
        Every,
        "which validators this node reaches and when it last did, the last finalized height and its age, whether enough validators answer to finalize (any registered key)",
    ),
    q(
        "/v1/worker/jobs/{job}/dealing",
        Signed,
        Workers,
        &[WAIT],
        "a site's secret-sharing dealing for a job, to the job's aggregator node only",
    ),
    r(
        "/v1/worker/jobs/{job}/mask",
        "post",
        Signed,
        Workers,
        "a site's mask share for a job, from the job's aggregator node only",
    ),
    q(
        "/v1/worker/jobs/{job}/reveal",
        Signed,
        Workers,
        &[WAIT],
        "a site's reveal of a dropped site's masks, to the job's aggregator node only",
    ),
    r(
        "/v1/worker/jobs/{job}/step",
        "post",
        Signed,
        Workers,
        "a site's masked statistics for one step of a model's fit, to the job's aggregator node only (each iteration once, in order, for the set the ledger fixed; 202 before)",
    ),
    r(
        "/v1/worker/jobs/{job}/psi",
        "post",
        Signed,
        Workers,
        "a site's answer to a later site's count-once or overlap set (private set intersection of the job's patients), to a later site's node only, and a vertical study's insurer's answer (its encrypted values) to a hospital of the study (one set per site and job; 202 while computing)",
    ),
    q(
        "/v1/worker/jobs/{job}/sums",
        Signed,
        Workers,
        &[WAIT],
        "a hospital's signed, encrypted sums of a vertical study, to the job's aggregator node only (202 while it joins with the insurer)",
    ),
    r(
        "/v1/worker/jobs/{job}/open",
        "post",
        Signed,
        Workers,
        "the insurer of a vertical study opens the total of every hospital's signed sums, for the job's aggregator node only, once per job and once the ledger closed the round with every site",
    ),
    r(
        "/v1/worker/jobs/{job}/result",
        "get",
        Signed,
        Workers,
        "a job's released result, to its submitter only and only once the ledger holds its hash (202 before)",
    ),
    r(
        "/v1/worker/vault",
        "get",
        Signed,
        Workers,
        "the hospital's vault for its own stewards (or member key): ingests, rows per CDM table, persons and how many are linked to a pseudonym",
    ),
    r(
        "/v1/worker/vault/entry",
        "get",
        Signed,
        Workers,
        "the catalog entry the vault would publish now (next version, the ledger's classification), for the hospital's own stewards to sign",
    ),
    r(
        "/v1/worker/vault/lookup",
        "post",
        Signed,
        Workers,
        "the pseudonym linked to a local patient id (in the signed body), for the hospital's own stewards who verified the person",
    ),
    r(
        "/v1/worker/releases/plan",
        "post",
        Signed,
        Workers,
        "builds the hospital's open-pool release from its vault (specification, purposes, dataset id in the signed body) for its own stewards to read and sign; nothing is published",
    ),
    r(
        "/v1/worker/releases/deliver",
        "post",
        Signed,
        Workers,
        "an open-pool release's manifest, to the holder of an active contract naming it, once the delivery (with the manifest's hash, which must be the catalog entry's) is final on the ledger",
    ),
    r(
        "/v1/worker/releases/{dataset}/files/{name}",
        "get",
        Signed,
        Workers,
        "a file the release's manifest lists, to an institution with an unattested delivery of its current version under an active contract",
    ),
    r(
        "/v1/records/export",
        "get",
        Signed,
        Workers,
        "the calling patient's own record as a FHIR Bundle (another person's resources withheld)",
    ),
    r(
        "/v1/records/redeem",
        "post",
        Signed,
        Workers,
        "redeem a patient's authorization code for their records (signed by the grantee; five wrong codes lock the grant)",
    ),
    r(
        "/v1/status",
        "get",
        Signed,
        Every,
        "chain id, height, time, state root and the anchor that commits to it",
    ),
    r(
        "/v1/catalog",
        "get",
        Signed,
        Every,
        "the data catalog (descriptions, counts, quality; never data) and each dataset's lifetime privacy budget: spent, reserved, the policy's limit",
    ),
    r(
        "/v1/proposals",
        "get",
        Signed,
        Every,
        "governance proposals with their votes (yes, no) and status",
    ),
    r(
        "/v1/accesses/undestroyed",
        "get",
        Signed,
        Every,
        "record-level deliveries whose recipient has not attested destroying the copy, without the patients' pseudonyms, and the open-pool release copies awaiting a destruction attestation with when each is due and whether it is overdue (a regulator's auditors only)",
    ),
    r(
        "/v1/members",
        "get",
        Signed,
        Every,
        "member institutions and their credit balances",
    ),
    q(
        "/v1/contracts",
        Signed,
        Every,
        &[("status", "only contracts in this status")],
        "data-use contracts",
    ),
    r(
        "/v1/contracts/{id}",
        "get",
        Signed,
        Every,
        "a contract with its inclusion proof and anchor",
    ),
    r(
        "/v1/contracts/{id}/jobs",
        "get",
        Signed,
        Every,
        "the jobs of a contract, each with its inclusion proof",
    ),
    r(
        "/v1/contracts/{id}/alerts",
        "get",
        Signed,
        Every,
        "the surveillance alerts stated under a contract (window, syndrome, region, detector, observed, expected, score), each with its inclusion proof (its requesting institution, the institutions whose data it covers, or a regulator's auditor)",
    ),
    r(
        "/v1/members/{id}/deliveries",
        "get",
        Signed,
        Every,
        "the record deliveries a member served and the open-pool release copies it delivered or received (with when their destruction is due), each with its inclusion proof (its own keys and users, or a regulator's auditor)",
    ),
    r(
        "/v1/jobs/{id}",
        "get",
        Signed,
        Every,
        "a job record (canonical bytes) with its inclusion proof",
    ),
    r(
        "/v1/grants/{id}",
        "get",
        Signed,
        Every,
        "a grant with its inclusion proof (its patient, grantee or holder, or a regulator's auditor; anyone else: not found)",
    ),
    r(
        "/v1/users/{id}/approvals",
        "get",
        Signed,
        Every,
        "contracts waiting for this user's approval",
    ),
    r(
        "/v1/patients/{id}/log",
        "get",
        Signed,
        Every,
        "the patient's log and record accesses, each with its proof (patient or auditor)",
    ),
    q(
        "/v1/patients/{id}/jobs",
        Signed,
        Every,
        &[(
            "holders",
            "the hospitals holding the patient's records, comma-separated",
        )],
        "the aggregate jobs that may have counted the patient, each job and contract with its proof (patient or auditor)",
    ),
    r(
        "/v1/patients/{id}/consents",
        "get",
        Signed,
        Every,
        "the patient's consents with proofs (patient or auditor)",
    ),
    r(
        "/v1/patients/{id}/grants",
        "get",
        Signed,
        Every,
        "the patient's grants with proofs (patient or auditor)",
    ),
    r(
        "/v1/records/{key}",
        "get",
        Signed,
        Every,
        "any state record by hex key, with its inclusion proof",
    ),
    r(
        "/v1/state/pin",
        "get",
        Signed,
        Every,
        "pins the node's last finalized state for a light client's reads and names its height, root and anchor (the consortium's members and their users)",
    ),
    q(
        "/v1/state/nodes",
        Signed,
        Every,
        &[
            ("height", "the pinned height"),
            ("at", "hex path whose bits lead to the piece"),
            ("depth", "the bit the walk stops at"),
            ("toward", "hex key the piece leads toward"),
            (
                "whole_from",
                "the branch bit from which the piece holds whole subtrees",
            ),
        ],
        "a piece of a pinned state's trie, binary, each subtree left out given by its hash, for a light client that checks it against the certified root (the consortium's members and their users)",
    ),
    r(
        "/v1/rebinding",
        "get",
        Signed,
        Every,
        "the pending key re-binding of the signing key, registered or not, with its proof",
    ),
];

/// The `{parameters}` of a path template.
pub fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect()
}

/// The OpenAPI document.
pub fn openapi() -> Value {
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let mut parameters: Vec<Value> = path_parameters(route.path)
            .into_iter()
            .map(|name| {
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
            })
            .collect();
        parameters.extend(route.query.iter().map(|(name, what)| {
            json!({ "name": name, "in": "query", "required": false, "description": what, "schema": { "type": "string" } })
        }));
        let served = match route.served {
            Served::Every => "every node",
            Served::Validators => "validators",
            Served::Workers => "the hospitals' nodes (validators with a worker)",
        };
        let mut op = json!({
            "summary": route.summary,
            "description": format!("Served by {served}."),
            "operationId": format!("{} {}", route.method, route.path),
            "parameters": parameters,
            "responses": {
                "200": { "description": "ok" },
                "400": { "description": "bad input, with {\"error\": message}" },
                "401": { "description": "missing or bad request signature" },
                "403": { "description": "caller not allowed" },
                "404": { "description": "not found" },
                "429": { "description": "rate limited" }
            }
        });
        if let Some(o) = op.as_object_mut() {
            o.insert(
                "security".into(),
                match route.access {
                    Access::Open => json!([]),
                    Access::Signed => json!([{ "medspace": [] }]),
                },
            );
        }
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        if let Some(e) = entry.as_object_mut() {
            e.insert(route.method.to_string(), op);
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
