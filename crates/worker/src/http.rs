//! The worker's routes on its node's HTTP API. Every request is signed by a ledger key
//! (`medspace_api::auth`), and each route answers only the party the ledger names:
//!
//! - `GET /v1/worker/jobs/{job}/share?wait_ms=` — the job's aggregator only: this site's signed
//!   masked share (`200`), `202` while it is not computed yet (after waiting up to `wait_ms`),
//!   `409` with the reason when this site refused the job;
//! - `GET /v1/worker/jobs/{job}/reveal?dropped=a,b` — the aggregator only: this site's net mask
//!   with the dropped sites (one dropped set per job);
//! - `GET /v1/worker/jobs/{job}/result` — the job's submitter only: the released result, whose
//!   hash is on the ledger;
//! - `GET /v1/records/export` — the patient only (their own key): their complete record here;
//! - `POST /v1/records/redeem` — the grantee institution (its member key or one of its users):
//!   the granted part of a patient's record, once the access is on the ledger
//!   ([`crate::records`]).

use crate::Inner;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use medspace_state::State;
use medspace_state::records::{JobRecord, Principal};
use medspace_types::{JobId, MemberId};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest long-poll a caller may ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The text of an error answer (its `error` field, or the status).
pub(crate) fn error_text(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .map_or_else(
            || format!("http status {status}"),
            |e| format!("{e} (http {status})"),
        )
}

/// A refusal: status and lowercase message, answered as `{"error": …}`.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, axum::Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn refuse(status: StatusCode, msg: impl Into<String>) -> Refusal {
    Refusal(status, msg.into())
}

fn internal(e: impl std::fmt::Display) -> Refusal {
    refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

fn answer(status: StatusCode, msg: impl Into<String>) -> Response {
    refuse(status, msg).into_response()
}

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/v1/worker/jobs/{job}/share", get(share))
        .route("/v1/worker/jobs/{job}/reveal", get(reveal))
        .route("/v1/worker/jobs/{job}/result", get(result))
        .route("/v1/records/export", get(export))
        .route(
            "/v1/records/redeem",
            axum::routing::post(redeem).layer(axum::extract::DefaultBodyLimit::max(4096)),
        )
        .with_state(inner)
}

/// The caller's ledger identity from the signed request.
fn caller(state: &State, uri: &Uri, headers: &HeaderMap) -> Result<Principal, Refusal> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let key = medspace_api::auth::verify_request(header, "GET", pq, b"", now_ms())
        .map_err(|e| refuse(StatusCode::UNAUTHORIZED, e.to_string()))?;
    match state.key_record(&key) {
        Ok(Some(r)) if !r.retired => Ok(r.principal),
        Ok(_) => Err(refuse(
            StatusCode::FORBIDDEN,
            format!("key={} is not registered on the ledger", key.to_hex()),
        )),
        Err(e) => Err(internal(e)),
    }
}

fn parse_job(job: &str) -> Result<JobId, Refusal> {
    job.parse().map_err(|_| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("malformed job id: job={job}"),
        )
    })
}

/// The job and whether `who` is its aggregator, waiting (up to `until`) for this node to
/// commit the job's block if it has not yet.
async fn job_for_aggregator(
    inner: &Inner,
    job: JobId,
    uri: &Uri,
    headers: &HeaderMap,
    until: Instant,
) -> Result<(State, JobRecord), Refusal> {
    let mut changed = inner.changed.subscribe();
    loop {
        let (state, _) = inner.ledger.snapshot();
        if let Some(rec) = state.job(job).map_err(internal)? {
            let who = caller(&state, uri, headers)?;
            let contract = state
                .contract(rec.contract)
                .map_err(internal)?
                .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "contract not found"))?;
            let Some(agg) = crate::aggregator(&contract) else {
                return Err(refuse(StatusCode::NOT_FOUND, "contract has no data holder"));
            };
            if !contract.owners.iter().any(|o| *o == inner.p.member) {
                return Err(refuse(
                    StatusCode::NOT_FOUND,
                    format!("{} holds no data of {}", inner.p.member, contract.id),
                ));
            }
            if who != Principal::Member(agg.clone()) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    format!("only the aggregator {agg} of {job} may ask"),
                ));
            }
            return Ok((state, rec));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, changed.changed()).await.is_err() {
            // Unknown here: unauthenticated callers learn nothing more than that.
            let (state, _) = inner.ledger.snapshot();
            caller(&state, uri, headers)?;
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!("job not found: id={job}"),
            ));
        }
    }
}

#[derive(Deserialize)]
struct Wait {
    wait_ms: Option<u64>,
}

async fn share(
    AxState(inner): AxState<Arc<Inner>>,
    Path(job): Path<String>,
    Query(q): Query<Wait>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let job = parse_job(&job)?;
    let until = Instant::now() + Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    job_for_aggregator(&inner, job, &uri, &headers, until).await?;
    let mut changed = inner.changed.subscribe();
    loop {
        if let Some(s) = inner.store.share(job).map_err(internal)? {
            return Ok(axum::Json(s).into_response());
        }
        if let Some(why) = crate::lock(&inner.refused).get(&job).cloned() {
            return Err(refuse(StatusCode::CONFLICT, format!("refused: {why}")));
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, changed.changed()).await.is_err() {
            return Ok(answer(StatusCode::ACCEPTED, "share not computed yet"));
        }
    }
}

#[derive(Deserialize)]
struct Dropped {
    dropped: String,
}

async fn reveal(
    AxState(inner): AxState<Arc<Inner>>,
    Path(job): Path<String>,
    Query(q): Query<Dropped>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let job = parse_job(&job)?;
    let (state, _) = job_for_aggregator(&inner, job, &uri, &headers, Instant::now()).await?;
    let mut dropped = Vec::new();
    for name in q.dropped.split(',').filter(|s| !s.is_empty()) {
        dropped.push(MemberId::new(name).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                format!("bad member in dropped: {e}: member={name}"),
            )
        })?);
    }
    let worker = inner.clone();
    let reveal = tokio::task::spawn_blocking(move || worker.reveal(&state, job, &dropped))
        .await
        .map_err(internal)?
        .map_err(|why| refuse(StatusCode::CONFLICT, why))?;
    Ok(axum::Json(reveal).into_response())
}

async fn result(
    AxState(inner): AxState<Arc<Inner>>,
    Path(job): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let job = parse_job(&job)?;
    let (state, _) = inner.ledger.snapshot();
    let who = caller(&state, &uri, &headers)?;
    let rec = state
        .job(job)
        .map_err(internal)?
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, format!("job not found: id={job}")))?;
    if who != Principal::User(rec.submitter.clone()) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            format!(
                "only the job's submitter {} may read its result",
                rec.submitter
            ),
        ));
    }
    let bytes = inner.store.result(job).map_err(internal)?.ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            format!("no result of {job} released by {}", inner.p.member),
        )
    })?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Bytes::from(bytes),
    )
        .into_response())
}

async fn redeem(
    AxState(inner): AxState<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let now = now_ms();
    let key = medspace_api::auth::verify_request(header, "POST", pq, &body, now)
        .map_err(|e| refuse(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let signature = header
        .and_then(|h| h.rsplit_once("sig="))
        .map_or("", |(_, s)| s);
    let as_refusal = |r: crate::records::Refused| {
        refuse(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN),
            r.reason,
        )
    };
    inner.guards.fresh(signature, now).map_err(as_refusal)?;
    let req: crate::records::Redeem = serde_json::from_slice(&body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("bad redeem request: {e}")))?;
    let worker = inner.clone();
    let d = tokio::task::spawn_blocking(move || worker.redeem(&key, &req, now))
        .await
        .map_err(internal)?
        .map_err(as_refusal)?;
    let header = |name: &'static str| axum::http::HeaderName::from_static(name);
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/fhir+json".to_string(),
            ),
            (
                header("x-medspace-content-hash"),
                crate::records::delivery_hash(&d.bytes).to_string(),
            ),
            (
                header("x-medspace-prepare-us"),
                d.prepare.as_micros().to_string(),
            ),
            (
                header("x-medspace-finality-us"),
                d.finality.as_micros().to_string(),
            ),
        ],
        Bytes::from(d.bytes),
    )
        .into_response())
}

async fn export(
    AxState(inner): AxState<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let key = medspace_api::auth::verify_request(header, "GET", pq, b"", now_ms())
        .map_err(|e| refuse(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let worker = inner.clone();
    let bytes = tokio::task::spawn_blocking(move || worker.export_for(&key))
        .await
        .map_err(internal)?
        .map_err(|r| {
            refuse(
                StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN),
                r.reason,
            )
        })?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/fhir+json")],
        Bytes::from(bytes),
    )
        .into_response())
}
