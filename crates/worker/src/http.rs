//! The worker's routes on its node's HTTP API. Every request is signed by a ledger key
//! (`medspace_api::auth`), and each route answers only the party the ledger names:
//!
//! - `GET /v1/worker/jobs/{job}/dealing?wait_ms=` — the job's aggregator (its node key): this
//!   site's signed dealing (`200`), `202` while its vector is not computed yet (after waiting
//!   up to `wait_ms`), `409` with the reason when this site does not take part;
//! - `POST /v1/worker/jobs/{job}/mask` — the aggregator: this site's masked vector for the
//!   forwarded dealings (one set of dealers per job, ever);
//! - `GET /v1/worker/jobs/{job}/reveal?wait_ms=` — the aggregator: this site's reveal for the
//!   sets the ledger fixed (`202` until the ledger closed the round);
//! - `POST /v1/worker/jobs/{job}/step` — the aggregator of a model's job: this site's masked
//!   statistics at the request's coefficients (each iteration once, in increasing order, only
//!   for the set the ledger fixed; `202` until it did) ([`crate::compute::model`]);
//! - `POST /v1/worker/jobs/{job}/psi?wait_ms=` — a later site of the job (its node key): the
//!   answer to its count-once set (one set per site and job, ever; `202` while computing)
//!   ([`crate::compute::once`]);
//!   — the same route carries a vertical study's set from its hospital to its insurer
//!   ([`crate::compute::vertical`]);
//! - `GET /v1/worker/jobs/{job}/sums?wait_ms=` — the aggregator of a vertical study: this
//!   hospital's signed, encrypted sums (`202` while it joins);
//! - `POST /v1/worker/jobs/{job}/open` — the aggregator of a vertical study (its node key): its
//!   insurer opens the total of every hospital's sums, once per job, once the ledger closed
//!   the round with every site;
//! - `GET /v1/worker/jobs/{job}/result` — the job's submitter only, and only once the result's
//!   hash is final on the ledger: the released result;
//! - `GET /v1/records/export` — the patient only (their own key): their complete record here;
//! - `POST /v1/worker/releases/deliver` — the holder of an approved open-pool contract (its
//!   member key, node key or users): a release's manifest, once the delivery is on the ledger;
//!   `GET /v1/worker/releases/{dataset}/files/{name}` — then the files it lists
//!   ([`crate::releases`]); `POST /v1/worker/releases/plan` — the hospital's own stewards and
//!   its member key: a release built from the vault (entry, figures, risk report) to sign;
//! - `POST /v1/records/redeem` — the grantee institution (its member key, its node key or one of its users):
//!   the granted part of a patient's record, once the access is on the ledger
//!   ([`crate::records`]).

use crate::compute::Mailbox;
use crate::records::{RecordSharing, RecordSource};
use crate::store::Store;
use crate::transport::PeerError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use commonware_runtime::{Clock, Spawner};
use medspace_ledger::Ledger;
use medspace_state::records::Principal;
use medspace_types::{JobId, MemberId};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Longest long-poll a caller may ask for.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Largest step request of a model (every earlier iteration's answers from every site).
const STEP_BODY_LIMIT: usize = 8 << 20;
/// Largest count-once set (two million patients, hex-encoded).
const PSI_BODY_LIMIT: usize = 160 << 20;
/// Largest opening request (the sums of up to 64 hospitals, hex-encoded, in JSON).
const OPEN_BODY_LIMIT: usize = 64 << 20;
/// Largest mask request (the dealings of every site).
const MASK_BODY_LIMIT: usize = 1 << 20;
/// Largest release plan request (a release specification and its purposes).
const PLAN_BODY_LIMIT: usize = 64 << 10;

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

fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::FORBIDDEN)
}

/// What the routes reach.
pub(crate) struct Routes<E, L, R> {
    /// This node's member: the audience every request must be signed for.
    pub(crate) me: MemberId,
    pub(crate) replays: medspace_api::auth::ReplayGuard,
    pub(crate) per_key: medspace_api::limit::KeyLimiter,
    pub(crate) ledger: Arc<L>,
    pub(crate) compute: Mailbox,
    pub(crate) records: Arc<RecordSharing<E, L, R>>,
    pub(crate) store: Store,
}

pub(crate) fn router<E, L, R>(routes: Arc<Routes<E, L, R>>) -> Router
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
{
    Router::new()
        .route("/v1/worker/jobs/{job}/dealing", get(dealing::<E, L, R>))
        .route(
            "/v1/worker/jobs/{job}/mask",
            post(mask::<E, L, R>).layer(DefaultBodyLimit::max(MASK_BODY_LIMIT)),
        )
        .route("/v1/worker/jobs/{job}/reveal", get(reveal::<E, L, R>))
        .route(
            "/v1/worker/jobs/{job}/step",
            post(step::<E, L, R>).layer(DefaultBodyLimit::max(STEP_BODY_LIMIT)),
        )
        .route(
            "/v1/worker/jobs/{job}/psi",
            post(psi::<E, L, R>).layer(DefaultBodyLimit::max(PSI_BODY_LIMIT)),
        )
        .route("/v1/worker/jobs/{job}/sums", get(sums::<E, L, R>))
        .route(
            "/v1/worker/jobs/{job}/open",
            post(open::<E, L, R>).layer(DefaultBodyLimit::max(OPEN_BODY_LIMIT)),
        )
        .route("/v1/worker/jobs/{job}/result", get(result::<E, L, R>))
        .route("/v1/worker/vault", get(vault::<E, L, R>))
        .route("/v1/worker/vault/entry", get(entry::<E, L, R>))
        .route(
            "/v1/worker/vault/lookup",
            post(lookup::<E, L, R>).layer(DefaultBodyLimit::max(1024)),
        )
        .route(
            "/v1/worker/releases/deliver",
            post(deliver_release::<E, L, R>).layer(DefaultBodyLimit::max(1024)),
        )
        .route(
            "/v1/worker/releases/plan",
            post(plan_release::<E, L, R>).layer(DefaultBodyLimit::max(PLAN_BODY_LIMIT)),
        )
        .route(
            "/v1/worker/releases/{dataset}/files/{name}",
            get(release_file::<E, L, R>),
        )
        .route("/v1/records/export", get(export::<E, L, R>))
        .route(
            "/v1/records/redeem",
            post(redeem::<E, L, R>).layer(DefaultBodyLimit::max(4096)),
        )
        .with_state(routes)
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or(uri.path(), |p| p.as_str())
}

/// The caller's ledger identity from the signed request: signed for this node, within its
/// key's rate, never accepted before, by a key the ledger knows. Checked before anything
/// waits or reads a record.
fn caller<E, L: Ledger, R>(
    r: &Routes<E, L, R>,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(medspace_types::PublicKey, Principal), Refusal> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let request = medspace_api::auth::Request {
        method,
        path_and_query: path_and_query(uri),
        audience: r.me.as_str(),
        body,
    };
    let now = crate::now_ms();
    let v = request
        .verify(header, now)
        .map_err(|e| refuse(StatusCode::UNAUTHORIZED, e.to_string()))?;
    if !r.per_key.take(&v.key, std::time::Instant::now()) {
        return Err(refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit of key={} exceeded: slow down", v.key.to_hex()),
        ));
    }
    r.replays
        .admit(&v, now)
        .map_err(|e| refuse(StatusCode::UNAUTHORIZED, e.to_string()))?;
    let key = v.key;
    match r.ledger.snapshot().state.key_record(&key) {
        Ok(Some(r)) if !r.retired => Ok((key, r.principal)),
        Ok(_) => Err(refuse(
            StatusCode::FORBIDDEN,
            format!("key={} is not registered on the ledger", key.to_hex()),
        )),
        Err(e) => Err(internal(e)),
    }
}

/// The calling member (node-to-node routes take only a member's current node key: a member
/// key, which stays with the institution's CLI, takes no part in a round).
fn member<E, L: Ledger, R>(
    r: &Routes<E, L, R>,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<MemberId, Refusal> {
    match caller(r, method, uri, headers, body)?.1 {
        Principal::Node(m) => Ok(m),
        _ => Err(refuse(
            StatusCode::FORBIDDEN,
            "only a member's node key may take part in a round",
        )),
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

#[derive(Deserialize)]
struct Wait {
    wait_ms: Option<u64>,
}

fn wait_of(q: &Wait) -> Duration {
    Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT)
}

/// Answers a round request: the message, `202` when not ready within `wait` (on the worker
/// runtime's clock, so a deterministic simulation drives it too), or the refusal.
async fn answer<T: serde::Serialize>(
    clock: &impl Clock,
    wait: Duration,
    fut: impl std::future::Future<Output = Result<T, PeerError>>,
) -> Response {
    let fut = std::pin::pin!(fut);
    let timer = std::pin::pin!(clock.sleep(wait.max(Duration::from_millis(1))));
    match futures::future::select(fut, timer).await {
        futures::future::Either::Left((Ok(msg), _)) => axum::Json(msg).into_response(),
        futures::future::Either::Left((Err(PeerError::NotReady), _))
        | futures::future::Either::Right(_) => {
            refuse(StatusCode::ACCEPTED, "not ready yet").into_response()
        }
        futures::future::Either::Left((Err(PeerError::Refused(why)), _)) => {
            refuse(StatusCode::CONFLICT, why).into_response()
        }
        futures::future::Either::Left((Err(PeerError::Forbidden(why)), _)) => {
            refuse(StatusCode::FORBIDDEN, why).into_response()
        }
        futures::future::Either::Left((Err(e), _)) => internal(e).into_response(),
    }
}

async fn dealing<E: Clock, L: Ledger, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    Path(job): Path<String>,
    Query(q): Query<Wait>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let job = parse_job(&job)?;
    let who = member(&r, "GET", &uri, &headers, b"")?;
    Ok(answer(r.records.clock(), wait_of(&q), r.compute.dealing(job, who)).await)
}

/// A posted round request's body, which must parse and name the job of its path (a clear 400
/// otherwise).
fn request_for<T: serde::de::DeserializeOwned>(
    job: JobId,
    body: &[u8],
    what: &str,
    job_of: impl Fn(&T) -> JobId,
) -> Result<T, Refusal> {
    let req: T = serde_json::from_slice(body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("bad {what} request: {e}")))?;
    if job_of(&req) != job {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("{what} request for another job"),
        ));
    }
    Ok(req)
}

/// A posted round request: signed by a member's node key, its body for the path's job (`what`
/// names it in refusals), answered by the compute actor within `wait`.
#[allow(clippy::too_many_arguments)]
async fn posted<E, L, R, T, A, Fut>(
    r: &Routes<E, L, R>,
    job: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    what: &str,
    job_of: impl Fn(&T) -> JobId,
    wait: Duration,
    ask: impl FnOnce(T, MemberId) -> Fut,
) -> Result<Response, Refusal>
where
    E: Clock,
    L: Ledger,
    T: serde::de::DeserializeOwned,
    A: serde::Serialize,
    Fut: std::future::Future<Output = Result<A, PeerError>>,
{
    let job = parse_job(job)?;
    let who = member(r, "POST", uri, headers, body)?;
    let req = request_for(job, body, what, job_of)?;
    Ok(answer(r.records.clock(), wait, ask(req, who)).await)
}

async fn mask<E: Clock, L: Ledger, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    Path(job): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let job_of = |m: &crate::wire::MaskRequest| m.job;
    let ask = |req, who| r.compute.mask(req, who);
    posted(
        &r, &job, &uri, &headers, &body, "mask", job_of, MAX_WAIT, ask,
    )
    .await
}

async fn step<E: Clock, L: Ledger, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    Path(job): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let job_of = |s: &crate::wire::StepRequest| s.job;
    let ask = |req, who| r.compute.step(req, who);
    posted(
        &r, &job, &uri, &headers, &body, "step", job_of, MAX_WAIT, ask,
    )
    .await
}

async fn psi<E: Clock, L: Ledger, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    Path(job): Path<String>,
    Query(q): Query<Wait>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let job_of = |a: &crate::wire::PsiAsk| a.job;
    let ask = |req, who| r.compute.psi(req, who);
    // At least a second: a refusal is decided at once, never answered "not ready".
    let wait = wait_of(&q).max(Duration::from_secs(1));
    posted(&r, &job, &uri, &headers, &body, "psi", job_of, wait, ask).await
}

async fn open<E: Clock, L: Ledger, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    Path(job): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let job_of = |a: &crate::wire::OpenAsk| a.job;
    let ask = |req, who| r.compute.open(req, who);
    posted(
        &r, &job, &uri, &headers, &body, "open", job_of, MAX_WAIT, ask,
    )
    .await
}

async fn sums<E: Clock, L: Ledger, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    Path(job): Path<String>,
    Query(q): Query<Wait>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let job = parse_job(&job)?;
    let who = member(&r, "GET", &uri, &headers, b"")?;
    Ok(answer(r.records.clock(), wait_of(&q), r.compute.sums(job, who)).await)
}

async fn reveal<E: Clock, L: Ledger, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    Path(job): Path<String>,
    Query(q): Query<Wait>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let job = parse_job(&job)?;
    let who = member(&r, "GET", &uri, &headers, b"")?;
    Ok(answer(r.records.clock(), wait_of(&q), r.compute.reveal(job, who)).await)
}

async fn result<E, L: Ledger, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    Path(job): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let job = parse_job(&job)?;
    let (_, who) = caller(&r, "GET", &uri, &headers, b"")?;
    let state = r.ledger.snapshot().state;
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
    let bytes = r.store.result(job).map_err(internal)?.ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            format!("no result of {job} released here"),
        )
    })?;
    // Served only once the ledger holds exactly this result: a result posted nowhere, or
    // under a terminated contract's refused post, is never delivered.
    match rec.result {
        Some(posted) if posted.result_hash == crate::wire::result_hash(&bytes) => Ok((
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            Bytes::from(bytes),
        )
            .into_response()),
        Some(_) => Err(refuse(
            StatusCode::CONFLICT,
            format!("the result of {job} on the ledger is not the one kept here"),
        )),
        None => Err(refuse(
            StatusCode::ACCEPTED,
            format!("the result of {job} is not final on the ledger yet"),
        )),
    }
}

async fn redeem<E, L, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal>
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
{
    let (key, _) = caller(&r, "POST", &uri, &headers, &body)?;
    let now = crate::now_ms();
    let as_refusal = |x: crate::records::Refused| refuse(status_of(x.status), x.reason);
    let req: crate::records::Redeem = serde_json::from_slice(&body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("bad redeem request: {e}")))?;
    let d = r
        .records
        .redeem(&key, &req, now)
        .await
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

/// A steward route's answer as JSON, or its refusal.
fn json_or_refusal<T: serde::Serialize>(
    answer: Result<T, crate::records::Refused>,
) -> Result<Response, Refusal> {
    answer
        .map(|v| axum::Json(v).into_response())
        .map_err(|x| refuse(status_of(x.status), x.reason))
}

/// The vault as this hospital's steward sees it: ingests, rows per CDM table, persons and
/// links — nothing about any one patient.
async fn vault<E, L, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal>
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
{
    let (_, who) = caller(&r, "GET", &uri, &headers, b"")?;
    json_or_refusal(r.records.vault_summary(&who).await)
}

/// The catalog entry the vault would publish now, for this hospital's steward to check and
/// sign (`PublishDataset`); the ledger still refuses a field below the consortium's level.
async fn entry<E, L, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal>
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
{
    let (_, who) = caller(&r, "GET", &uri, &headers, b"")?;
    json_or_refusal(r.records.catalog_entry(&who).await)
}

/// A steward route's caller and body: this hospital's stewards (or its member key) only,
/// settled before the body is read, so nobody else learns even what it parses; then the body,
/// or a clear 400 naming what was `expected`.
fn steward_body<E, L, R, T>(
    r: &Routes<E, L, R>,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    expected: &str,
) -> Result<(Principal, T), Refusal>
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
    T: serde::de::DeserializeOwned,
{
    let (_, who) = caller(r, "POST", uri, headers, body)?;
    r.records
        .is_own_steward(&who)
        .map_err(|x| refuse(status_of(x.status), x.reason))?;
    let parsed = serde_json::from_slice(body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("expected {expected}: {e}")))?;
    Ok((who, parsed))
}

/// A lookup's body: the local patient id (in the body, signed, never in a logged path).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Lookup {
    patient_id: String,
}

/// The pseudonym linked to a local patient id, for this hospital's steward who verified the
/// person in person (to re-bind a lost key).
async fn lookup<E, L, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal>
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
{
    let (who, q): (_, Lookup) = steward_body(&r, &uri, &headers, &body, "{\"patient_id\": \"…\"}")?;
    let id = q.patient_id.trim().to_string();
    if id.is_empty() || id.len() > 128 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "a local patient id is 1 to 128 characters",
        ));
    }
    match r
        .records
        .pseudonym_of(&who, id)
        .await
        .map_err(|x| refuse(status_of(x.status), x.reason))?
    {
        Some(p) => Ok(axum::Json(serde_json::json!({ "patient": p })).into_response()),
        None => Err(refuse(
            StatusCode::NOT_FOUND,
            "no linked patient with that local id here",
        )),
    }
}

/// A release plan's body: the specification, the purposes its persons consented to, and the
/// release's dataset id (`<member>.open` when absent).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    spec: serde_json::Map<String, serde_json::Value>,
    purposes: Vec<String>,
    #[serde(default)]
    release: Option<String>,
}

/// Builds this hospital's open-pool release from its vault for its steward to read and sign
/// (`PublishRelease`): the catalog entry, the figures, the risk report and how many persons
/// could have been in it. Nothing is published here.
async fn plan_release<E, L, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal>
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
{
    let (who, plan): (_, Plan) = steward_body(
        &r,
        &uri,
        &headers,
        &body,
        "{\"spec\": {…}, \"purposes\": [\"research\"], \"release\": \"<dataset id>\"}",
    )?;
    if plan.purposes.is_empty() || plan.purposes.len() > 8 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "name 1 to 8 purposes the released persons consented to",
        ));
    }
    let request = serde_json::json!({
        "spec": plan.spec,
        "purposes": plan.purposes,
        "release": plan.release,
    });
    json_or_refusal(r.records.build_release(&who, request).await)
}

/// A release's manifest for the holder of an open-pool contract, once the delivery is final.
async fn deliver_release<E, L, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal>
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
{
    let (key, _) = caller(&r, "POST", &uri, &headers, &body)?;
    let req: crate::releases::Fetch = serde_json::from_slice(&body)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("bad release request: {e}")))?;
    let bytes = r
        .records
        .deliver_release(&key, &req, crate::now_ms())
        .await
        .map_err(|x| refuse(status_of(x.status), x.reason))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Bytes::from(bytes),
    )
        .into_response())
}

/// A file of a delivered release.
async fn release_file<E, L, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    Path((dataset, name)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal>
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
{
    let (key, _) = caller(&r, "GET", &uri, &headers, b"")?;
    let dataset = medspace_types::DatasetId::new(&dataset)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    let bytes = r
        .records
        .release_file(&key, dataset, name, crate::now_ms())
        .await
        .map_err(|x| refuse(status_of(x.status), x.reason))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        Bytes::from(bytes),
    )
        .into_response())
}

async fn export<E, L, R>(
    AxState(r): AxState<Arc<Routes<E, L, R>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, Refusal>
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
{
    let (key, _) = caller(&r, "GET", &uri, &headers, b"")?;
    let bytes = r
        .records
        .export_for(&key)
        .await
        .map_err(|x| refuse(status_of(x.status), x.reason))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/fhir+json")],
        Bytes::from(bytes),
    )
        .into_response())
}
