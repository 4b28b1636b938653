//! The console's relay of a patient's record download: the page a patient opened at one node
//! asks every hospital for its part of the record, but the page may talk to its own node only
//! (content security policy `default-src 'self'`, and the browser knows no other node's pinned
//! certificate). So the node passes exactly one kind of request on —
//! `GET /console/relay/{member}/v1/records/export` becomes `GET /v1/records/export` at
//! `member`'s node, over the client that pins the genesis certificates — with the patient's
//! authorization header untouched. That header is signed in the browser for `member`'s node and
//! for that path only, so the relaying node can neither read it as its own nor replay it at
//! another node; it sees the bytes pass, as any TLS-terminating hop would. The researcher's
//! pages need one more: `GET /console/relay/{member}/v1/worker/jobs/{job}/result`, a released
//! study result at the aggregating hospital's node (signed for that node and path alike; the
//! page checks the bytes against the result hash on the ledger). Nothing else is relayed.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The largest record relayed (a patient's Bundle is far smaller).
const MAX_RELAYED_BYTES: usize = 64 * 1024 * 1024;

struct Relay {
    client: reqwest::Client,
    nodes: BTreeMap<String, String>,
}

/// The relay's route, reaching `nodes` (member name to API base URL) with `client`.
pub fn router(client: reqwest::Client, nodes: BTreeMap<String, String>) -> Router {
    Router::new()
        .route("/console/relay/{member}/v1/records/export", get(export))
        .route(
            "/console/relay/{member}/v1/worker/jobs/{job}/result",
            get(job_result),
        )
        .with_state(Arc::new(Relay { client, nodes }))
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": msg }).to_string(),
    )
        .into_response()
}

async fn export(
    State(r): State<Arc<Relay>>,
    Path(member): Path<String>,
    headers: HeaderMap,
) -> Response {
    pass(&r, &member, "/v1/records/export".to_string(), &headers).await
}

async fn job_result(
    State(r): State<Arc<Relay>>,
    Path((member, job)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    // A job id only (`j-` and hex): nothing that could reach another path.
    let ok = job.strip_prefix("j-").is_some_and(|h| {
        !h.is_empty() && h.len() <= 16 && h.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if !ok {
        return refuse(StatusCode::BAD_REQUEST, "not a job id");
    }
    pass(
        &r,
        &member,
        format!("/v1/worker/jobs/{job}/result"),
        &headers,
    )
    .await
}

async fn pass(r: &Relay, member: &str, path: String, headers: &HeaderMap) -> Response {
    let Some(base) = r.nodes.get(member) else {
        return refuse(StatusCode::NOT_FOUND, "no such node in the genesis");
    };
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "missing authorization header: sign the request with your key",
        );
    };
    let sent = r
        .client
        .get(format!("{base}{path}"))
        .header(header::AUTHORIZATION, auth.clone())
        .send()
        .await;
    let resp = match sent {
        Ok(resp) => resp,
        Err(e) => {
            tracing::warn!(member = %member, error = %e, "node.relay.export: unreachable");
            return refuse(
                StatusCode::BAD_GATEWAY,
                "the hospital's node is unreachable",
            );
        }
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RELAYED_BYTES as u64)
    {
        return refuse(
            StatusCode::BAD_GATEWAY,
            "the hospital's answer is too large",
        );
    }
    match resp.bytes().await {
        Ok(body) if body.len() <= MAX_RELAYED_BYTES => {
            let mut out = Response::new(Body::from(body));
            *out.status_mut() = status;
            out.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            out
        }
        Ok(_) => refuse(
            StatusCode::BAD_GATEWAY,
            "the hospital's answer is too large",
        ),
        Err(_) => refuse(StatusCode::BAD_GATEWAY, "the hospital's answer was cut off"),
    }
}
