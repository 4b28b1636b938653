//! medspace-api: the node's HTTP/JSON API (axum).
//!
//! One router per node, generic over [`medspace_ledger::Ledger`] — what the node knows: the
//! state at its last finalized block with the anchor (block header and finality certificate)
//! that commits to its root, a mempool to submit to, and the status of submitted transactions.
//! A validator's chain handle and an observer's follower implement it; tests implement it over
//! an in-process state.
//!
//! - `POST /v1/tx` takes a signed transaction (its canonical bytes); the transaction carries its
//!   own signature, so no request signature is needed. Body size and request rate are limited.
//! - Every `GET /v1/...` read of ledger records must be a signed request ([`auth`]) for this
//!   node, from a key the ledger knows, accepted once; each key has its own request rate.
//! - What concerns a patient — their registration, consents, log, grants and the record-level
//!   accesses to their data — answers only that patient, the parties a grant or an access names,
//!   and the appointed auditors of an active regulator member. Grants and accesses that the
//!   caller may not read answer exactly as ones that do not exist.
//! - Record routes answer the record, its canonical bytes, its inclusion proof and the anchor.
//! - `GET /v1/health` and `GET /openapi.json` are open.

pub mod auth;
pub mod gate;
pub mod limit;
pub mod openapi;
pub mod pieces;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use medspace_state::records::{Principal, keys};
use medspace_state::{Proven, State, records::ContractRecord};
use medspace_types::{
    ContractId, GrantId, Hash, JobId, MAX_TX_BYTES, PatientId, Role, SignedTx, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub use openapi::{Access, ROUTES, Route, Served, openapi, path_parameters};

pub use medspace_ledger::{Anchor, Ledger, Snapshot, SubmitError, TxStatus};

/// Limits of the API.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Requests per second over all callers (token bucket).
    pub requests_per_sec: u32,
    /// Burst size.
    pub burst: u32,
    /// Requests per second of one key.
    pub per_key_per_sec: u32,
    /// One key's burst.
    pub per_key_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            requests_per_sec: 2000,
            burst: 4000,
            per_key_per_sec: 50,
            per_key_burst: 200,
        }
    }
}

/// A node's read API: whose node it is and its limits.
#[derive(Clone, Debug)]
pub struct Config {
    /// The member whose node serves the API: the audience every signed request must name.
    pub member: String,
    /// Rate limits.
    pub limits: Limits,
}

impl Config {
    /// The API of `member`'s node with the default limits.
    pub fn new(member: impl Into<String>) -> Self {
        Self {
            member: member.into(),
            limits: Limits::default(),
        }
    }
}

struct Ctx<L> {
    ledger: Arc<L>,
    member: String,
    bucket: Mutex<limit::Bucket>,
    per_key: limit::KeyLimiter,
    /// Light clients' piece reads: one command reads many, as a follower reads blocks.
    piece_reads: limit::KeyLimiter,
    pins: pieces::Pins,
    replays: auth::ReplayGuard,
}

/// An API error: a status and a lowercase message.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The router of a node's API.
pub fn router<L: Ledger>(ledger: Arc<L>, config: Config) -> Router {
    routes(ledger, config, true)
}

/// The ledger-read routes only (for a node whose chain layer serves `/v1/tx` itself).
pub fn read_router<L: Ledger>(ledger: Arc<L>, config: Config) -> Router {
    routes(ledger, config, false)
}

fn routes<L: Ledger>(ledger: Arc<L>, config: Config, with_tx: bool) -> Router {
    let l = &config.limits;
    let ctx = Arc::new(Ctx {
        ledger,
        bucket: Mutex::new(limit::Bucket::new(l.requests_per_sec, l.burst)),
        per_key: limit::KeyLimiter::new(l.per_key_per_sec, l.per_key_burst),
        piece_reads: limit::KeyLimiter::new(gate::CHAIN_READS_PER_SEC, gate::CHAIN_READS_BURST),
        pins: pieces::Pins::default(),
        replays: auth::ReplayGuard::default(),
        member: config.member,
    });
    let mut r = Router::new()
        .route("/v1/health", get(health::<L>))
        .route("/openapi.json", get(|| async { Json(openapi()) }));
    if with_tx {
        r = r
            .route(
                "/v1/tx",
                post(submit_tx::<L>).layer(DefaultBodyLimit::max(MAX_TX_BYTES)),
            )
            .route("/v1/tx/{id}", get(tx_status::<L>));
    }
    r.route("/v1/status", get(status::<L>))
        .route("/v1/catalog", get(catalog::<L>))
        .route("/v1/members", get(members::<L>))
        .route("/v1/proposals", get(proposals::<L>))
        .route("/v1/accesses/undestroyed", get(undestroyed::<L>))
        .route("/v1/contracts", get(contracts::<L>))
        .route("/v1/contracts/{id}", get(contract::<L>))
        .route("/v1/contracts/{id}/jobs", get(contract_jobs::<L>))
        .route("/v1/contracts/{id}/alerts", get(contract_alerts::<L>))
        .route("/v1/members/{id}/deliveries", get(member_deliveries::<L>))
        .route("/v1/jobs/{id}", get(job::<L>))
        .route("/v1/grants/{id}", get(grant::<L>))
        .route("/v1/users/{id}/approvals", get(approvals::<L>))
        .route("/v1/patients/{id}/log", get(patient_log::<L>))
        .route("/v1/patients/{id}/consents", get(patient_consents::<L>))
        .route("/v1/patients/{id}/jobs", get(patient_jobs::<L>))
        .route("/v1/patients/{id}/grants", get(patient_grants::<L>))
        .route("/v1/records/{key}", get(record::<L>))
        .route("/v1/rebinding", get(rebinding::<L>))
        .route("/v1/state/pin", get(pieces::pin::<L>))
        .route("/v1/state/nodes", get(pieces::nodes::<L>))
        .layer(middleware::from_fn_with_state(ctx.clone(), rate_limit::<L>))
        .with_state(ctx)
}

async fn rate_limit<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    req: Request,
    next: Next,
) -> Response {
    if !ctx.bucket.lock().await.take(Instant::now()) {
        return ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded: slow down".into(),
        )
        .into_response();
    }
    next.run(req).await
}

/// Who is calling, as the ledger knows them.
struct Caller {
    principal: Principal,
    role: Option<Role>,
    /// For a user, their institution.
    member: Option<medspace_types::MemberId>,
}

/// The key that signed the request (signature, freshness, rate and replay checked), registered
/// or not.
fn signing_key<L: Ledger>(
    ctx: &Ctx<L>,
    limiter: &limit::KeyLimiter,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<medspace_types::PublicKey, ApiError> {
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let request = auth::Request {
        method: method.as_str(),
        path_and_query: pq,
        audience: &ctx.member,
        body: b"",
    };
    let now = auth::now_ms();
    let v = request
        .verify(header, now)
        .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e.to_string()))?;
    if !limiter.take(&v.key, Instant::now()) {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("rate limit of key={} exceeded: slow down", v.key.to_hex()),
        ));
    }
    ctx.replays
        .admit(&v, now)
        .map_err(|e| ApiError(StatusCode::UNAUTHORIZED, e.to_string()))?;
    Ok(v.key)
}

fn authenticate<L: Ledger>(
    ctx: &Ctx<L>,
    snap: &Snapshot,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    authenticate_within(ctx, &ctx.per_key, snap, method, uri, headers)
}

/// [`authenticate`], the key's rate counted by `limiter`.
fn authenticate_within<L: Ledger>(
    ctx: &Ctx<L>,
    limiter: &limit::KeyLimiter,
    snap: &Snapshot,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let key = signing_key(ctx, limiter, method, uri, headers)?;
    caller_of(snap, &key)
}

/// Who `key` is on the ledger: refused if it is registered to nobody, retired, or its member
/// was removed.
fn caller_of(snap: &Snapshot, key: &medspace_types::PublicKey) -> Result<Caller, ApiError> {
    let rec = snap
        .state
        .key_record(key)
        .map_err(internal)?
        .filter(|r| !r.retired)
        .ok_or_else(|| {
            ApiError(
                StatusCode::FORBIDDEN,
                format!("key={} is not registered on the ledger", key.to_hex()),
            )
        })?;
    let (role, member) = match &rec.principal {
        Principal::User(u) => snap
            .state
            .user(u)
            .map_err(internal)?
            .map_or((None, None), |u| (Some(u.role), Some(u.member))),
        _ => (None, None),
    };
    // A removed member's keys and users keep no standing: they read nothing a registered
    // key may read.
    let acts_for = match &rec.principal {
        Principal::Member(m) | Principal::Node(m) => Some(m),
        Principal::User(_) => member.as_ref(),
        Principal::Patient(_) => None,
    };
    if let Some(m) = acts_for
        && !snap
            .state
            .member(m)
            .map_err(internal)?
            .is_some_and(|r| r.active)
    {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("member `{m}` is no longer in the consortium: its keys read nothing"),
        ));
    }
    Ok(Caller {
        principal: rec.principal,
        role,
        member,
    })
}

impl Caller {
    /// An auditor appointed by an active regulator member.
    fn is_regulator_auditor(&self, state: &State) -> Result<bool, ApiError> {
        let (Some(Role::Auditor), Some(m)) = (self.role, &self.member) else {
            return Ok(false);
        };
        Ok(state
            .member(m)
            .map_err(internal)?
            .is_some_and(|r| r.active && r.member.kind == medspace_types::MemberKind::Regulator))
    }

    /// The member itself (its member key or its node key), or one of its users.
    fn acts_for(&self, member: &medspace_types::MemberId) -> bool {
        match &self.principal {
            Principal::Member(m) | Principal::Node(m) => m == member,
            Principal::User(_) => self.member.as_ref() == Some(member),
            Principal::Patient(_) => false,
        }
    }
}

fn may_read_patient(state: &State, caller: &Caller, patient: &PatientId) -> Result<(), ApiError> {
    if matches!(&caller.principal, Principal::Patient(p) if p == patient)
        || caller.is_regulator_auditor(state)?
    {
        return Ok(());
    }
    Err(ApiError(
        StatusCode::FORBIDDEN,
        "only the patient (or an auditor of the regulator) may read a patient's records".into(),
    ))
}

/// Whether `caller` may read `grant`: its patient, its grantee, its holder, an auditor.
fn may_read_grant(
    state: &State,
    caller: &Caller,
    grant: &medspace_state::records::GrantRecord,
) -> Result<bool, ApiError> {
    Ok(
        matches!(&caller.principal, Principal::Patient(p) if *p == grant.patient)
            || caller.acts_for(&grant.terms.grantee)
            || caller.acts_for(&grant.terms.holder)
            || caller.is_regulator_auditor(state)?,
    )
}

/// Whether `caller` may read `access`: its patient, its holder, its recipient, an auditor.
fn may_read_access(
    state: &State,
    caller: &Caller,
    access: &medspace_state::records::AccessRecord,
) -> Result<bool, ApiError> {
    Ok(
        matches!(&caller.principal, Principal::Patient(p) if *p == access.patient)
            || caller.acts_for(&access.holder)
            || caller.acts_for(&access.recipient)
            || caller.is_regulator_auditor(state)?,
    )
}

#[derive(Serialize)]
struct Anchored<T: Serialize> {
    height: u64,
    root: Hash,
    anchor: Option<Anchor>,
    #[serde(flatten)]
    body: T,
}

fn anchored<T: Serialize>(snap: &Snapshot, body: T) -> Json<Anchored<T>> {
    Json(Anchored {
        height: snap.height,
        root: snap.state.root(),
        anchor: snap.anchor.clone(),
        body,
    })
}

async fn health<L: Ledger>(AxState(ctx): AxState<Arc<Ctx<L>>>) -> Json<Value> {
    let s = ctx.ledger.snapshot();
    Json(json!({ "status": "ok", "height": s.height, "root": s.state.root() }))
}

async fn submit_tx<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let tx = SignedTx::from_bytes(body).map_err(|e| bad(e.to_string()))?;
    match ctx.ledger.submit(tx) {
        Ok(id) => Ok(Json(json!({ "id": id }))),
        Err(SubmitError::Invalid(m)) => Err(bad(m)),
        Err(e @ SubmitError::Duplicate(_)) => Err(ApiError(StatusCode::CONFLICT, e.to_string())),
        Err(e @ SubmitError::Full) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(e @ SubmitError::ReadOnly) => {
            Err(ApiError(StatusCode::METHOD_NOT_ALLOWED, e.to_string()))
        }
    }
}

async fn tx_status<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    Path(id): Path<String>,
) -> Result<Json<TxStatus>, ApiError> {
    let id: Hash = id
        .parse()
        .map_err(|e: medspace_types::TypeError| bad(e.to_string()))?;
    Ok(Json(ctx.ledger.tx_status(&id)))
}

macro_rules! signed_read {
    ($ctx:ident, $method:ident, $uri:ident, $headers:ident) => {{
        let snap = $ctx.ledger.snapshot();
        let caller = authenticate(&$ctx, &snap, &$method, &$uri, &$headers)?;
        (snap, caller)
    }};
}

async fn status<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (snap, _) = signed_read!(ctx, method, uri, headers);
    Ok(Json(json!({
        "chain_id": snap.state.chain_id().map_err(internal)?,
        "height": snap.height,
        "time_ms": snap.time_ms,
        "root": snap.state.root(),
        "anchor": snap.anchor,
        "policy": snap.state.policy().map_err(internal)?,
    })))
}

async fn catalog<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (snap, _) = signed_read!(ctx, method, uri, headers);
    let datasets = snap.state.datasets().map_err(internal)?;
    // Each dataset's lifetime privacy account against the policy's budget per dataset.
    let budget = snap.state.policy().map_err(internal)?.dataset_epsilon_micro;
    let mut budgets = Vec::new();
    for d in &datasets {
        let acc = snap
            .state
            .dataset_epsilon(&d.description.id)
            .map_err(internal)?;
        budgets.push(json!({
            "dataset": d.description.id,
            "epsilon_spent": acc.spent,
            "epsilon_reserved": acc.reserved,
            "epsilon_budget": budget,
        }));
    }
    Ok(Json(
        json!({ "height": snap.height, "datasets": datasets, "budgets": budgets }),
    ))
}

/// Record-level deliveries whose recipient has not attested destroying the copy: for the
/// regulator's auditors only, and without the patient's pseudonym.
async fn undestroyed<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (snap, caller) = signed_read!(ctx, method, uri, headers);
    if !caller.is_regulator_auditor(&snap.state)? {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "only an auditor of the regulator may list deliveries awaiting destruction".into(),
        ));
    }
    let key = keys::access(medspace_types::AccessId(0));
    let table = key.get(..1).unwrap_or_default();
    let mut out = Vec::new();
    for (_, bytes) in snap.state.scan_raw(table).map_err(internal)? {
        let a = <medspace_state::records::AccessRecord as commonware_codec::DecodeExt<()>>::decode(
            Bytes::copy_from_slice(&bytes),
        )
        .map_err(internal)?;
        if a.destroyed_height.is_none() {
            out.push(json!({
                "id": a.id,
                "holder": a.holder,
                "recipient": a.recipient,
                "resource_types": a.resource_types,
                "resource_count": a.resource_count,
                "height": a.height,
                "time_ms": a.time_ms,
            }));
        }
    }
    // Copies of open-pool releases, with when each must be attested destroyed; the overdue
    // ones block their recipient's new requests.
    let mut releases = Vec::new();
    for d in snap.state.deliveries().map_err(internal)? {
        let Some(due_ms) = snap.state.destruction_due_ms(&d).map_err(internal)? else {
            continue;
        };
        releases.push(json!({
            "id": d.id,
            "dataset": d.dataset,
            "version": d.version,
            "holder": d.holder,
            "recipient": d.recipient,
            "contract": d.contract,
            "bytes": d.bytes,
            "height": d.height,
            "time_ms": d.time_ms,
            "due_ms": due_ms,
            "overdue": due_ms < snap.time_ms,
        }));
    }
    Ok(Json(
        json!({ "height": snap.height, "accesses": out, "releases": releases }),
    ))
}

async fn proposals<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (snap, _) = signed_read!(ctx, method, uri, headers);
    let list = snap.state.proposals().map_err(internal)?;
    Ok(Json(json!({ "height": snap.height, "proposals": list })))
}

async fn members<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let (snap, _) = signed_read!(ctx, method, uri, headers);
    let mut out = Vec::new();
    for m in snap.state.members().map_err(internal)? {
        let balance = snap.state.balance(&m.member.id).map_err(internal)?;
        out.push(json!({ "member": m.member, "active": m.active, "balance": balance }));
    }
    Ok(Json(json!({ "height": snap.height, "members": out })))
}

#[derive(Deserialize)]
struct StatusFilter {
    status: Option<String>,
}

async fn contracts<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(f): Query<StatusFilter>,
) -> Result<Json<Value>, ApiError> {
    let (snap, _) = signed_read!(ctx, method, uri, headers);
    let list: Vec<ContractSummary> = snap
        .state
        .contracts_by_status(f.status.as_deref(), snap.time_ms)
        .map_err(internal)?
        .iter()
        .map(|c| ContractSummary::of(c, snap.time_ms))
        .collect();
    Ok(Json(json!({ "height": snap.height, "contracts": list })))
}

#[derive(Serialize)]
struct ContractSummary {
    id: ContractId,
    status: &'static str,
    requester: UserId,
    purpose: medspace_types::Purpose,
    mode: medspace_types::Mode,
    level: medspace_types::Level,
    epsilon_budget: u64,
    epsilon_spent: u64,
    epsilon_left: u64,
    missing_approvals: usize,
    /// The datasets its fields read.
    datasets: std::collections::BTreeSet<medspace_types::DatasetId>,
}

impl ContractSummary {
    fn of(c: &ContractRecord, now_ms: u64) -> Self {
        Self {
            id: c.id,
            status: c.status_at(now_ms),
            requester: c.requester.clone(),
            purpose: c.purpose,
            mode: c.mode,
            level: c.level,
            epsilon_budget: c.epsilon_budget,
            epsilon_spent: c.epsilon_spent,
            epsilon_left: c.epsilon_left(),
            missing_approvals: c.missing_approvals().count(),
            datasets: c.fields.iter().map(|f| f.dataset.clone()).collect(),
        }
    }
}

fn parse<T: std::str::FromStr<Err = medspace_types::TypeError>>(s: &str) -> Result<T, ApiError> {
    s.parse()
        .map_err(|e: medspace_types::TypeError| bad(e.to_string()))
}

async fn contract<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (snap, _) = signed_read!(ctx, method, uri, headers);
    let id: ContractId = parse(&id)?;
    let p = snap
        .state
        .proven_contract(id)
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("contract not found: id={id}")))?;
    Ok(anchored(
        &snap,
        json!({ "contract": p, "status_now": p.record.status_at(snap.time_ms) }),
    )
    .into_response())
}

async fn contract_jobs<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (snap, _) = signed_read!(ctx, method, uri, headers);
    let id: ContractId = parse(&id)?;
    let jobs = snap.state.proven_jobs_of(id).map_err(internal)?;
    Ok(anchored(&snap, json!({ "jobs": jobs })).into_response())
}

/// Whether `caller` may read what a contract's data use produced for its parties (a
/// surveillance contract's alerts): the requesting institution (its keys and users), an
/// institution whose data it covers, an auditor of the regulator.
fn may_read_contract_output(
    state: &State,
    caller: &Caller,
    c: &ContractRecord,
) -> Result<bool, ApiError> {
    Ok(caller.acts_for(&c.requester_member)
        || c.owners.iter().any(|o| caller.acts_for(o))
        || caller.is_regulator_auditor(state)?)
}

/// The alerts stated under a surveillance contract (`RecordAlert`), each with its inclusion
/// proof, in key order (window, syndrome, region, detector): for the requesting institution,
/// the hospitals whose data raised them, and the regulator's auditors.
async fn contract_alerts<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (snap, caller) = signed_read!(ctx, method, uri, headers);
    let id: ContractId = parse(&id)?;
    let c = snap
        .state
        .contract(id)
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("contract not found: id={id}")))?;
    if !may_read_contract_output(&snap.state, &caller, &c)? {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "the alerts of contract={id} are read by its requesting institution, the institutions whose data it covers and the regulator's auditors only"
            ),
        ));
    }
    let mut alerts = Vec::new();
    for a in snap.state.alerts_of(id).map_err(internal)? {
        let key = keys::alert(&a);
        let (value, proof) = snap
            .state
            .prove(&key)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("alert without a proof: contract={id}")))?;
        alerts.push(Proven {
            record: a,
            key,
            value,
            proof,
        });
    }
    Ok(anchored(&snap, json!({ "alerts": alerts })).into_response())
}

/// The record deliveries a member's node served: for that member's keys and users, and the
/// regulator's auditor; to anyone else they do not exist.
async fn member_deliveries<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (snap, caller) = signed_read!(ctx, method, uri, headers);
    let member = medspace_types::MemberId::new(&id).map_err(|e| bad(e.to_string()))?;
    if !(caller.acts_for(&member) || caller.is_regulator_auditor(&snap.state)?) {
        return Err(not_found(format!("member not found: id={id}")));
    }
    let deliveries = snap.state.proven_deliveries_of(&member).map_err(internal)?;
    let releases: Vec<Value> = snap
        .state
        .proven_release_deliveries(&member)
        .map_err(internal)?
        .into_iter()
        .map(|(d, due_ms)| json!({ "delivery": d, "due_ms": due_ms }))
        .collect();
    Ok(anchored(
        &snap,
        json!({ "deliveries": deliveries, "releases": releases }),
    )
    .into_response())
}

async fn job<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (snap, _) = signed_read!(ctx, method, uri, headers);
    let id: JobId = parse(&id)?;
    proven_record(&snap, keys::job(id), "job")
}

async fn grant<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (snap, caller) = signed_read!(ctx, method, uri, headers);
    let id: GrantId = parse(&id)?;
    // A grant the caller may not read answers as one that does not exist.
    let missing = || not_found(format!("grant not found: id={id}"));
    let p = snap
        .state
        .proven_grant(id)
        .map_err(internal)?
        .ok_or_else(missing)?;
    if !may_read_grant(&snap.state, &caller, &p.record)? {
        return Err(missing());
    }
    Ok(anchored(&snap, json!({ "grant": p })).into_response())
}

fn proven_record(snap: &Snapshot, key: Vec<u8>, what: &str) -> Result<Response, ApiError> {
    let (value, proof) = snap
        .state
        .prove(&key)
        .map_err(internal)?
        .ok_or_else(|| not_found(format!("{what} not found")))?;
    Ok(anchored(
        snap,
        json!({ "key": hex::encode(&key), "value": hex::encode(&value), "proof": proof }),
    )
    .into_response())
}

async fn approvals<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (snap, _) = signed_read!(ctx, method, uri, headers);
    let user: UserId = parse(&id)?;
    let list: Vec<ContractSummary> = snap
        .state
        .approvals_waiting_for(&user, snap.time_ms)
        .map_err(internal)?
        .iter()
        .map(|c| ContractSummary::of(c, snap.time_ms))
        .collect();
    Ok(Json(json!({ "height": snap.height, "contracts": list })))
}

async fn patient_log<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (snap, caller) = signed_read!(ctx, method, uri, headers);
    let patient: PatientId = parse(&id)?;
    may_read_patient(&snap.state, &caller, &patient)?;
    let log: Vec<Proven<_>> = snap.state.patient_log(&patient).map_err(internal)?;
    let accesses = snap.state.accesses_of(&patient).map_err(internal)?;
    Ok(anchored(&snap, json!({ "log": log, "accesses": accesses })).into_response())
}

async fn patient_consents<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (snap, caller) = signed_read!(ctx, method, uri, headers);
    let patient: PatientId = parse(&id)?;
    may_read_patient(&snap.state, &caller, &patient)?;
    let c = snap.state.consents_of(&patient).map_err(internal)?;
    Ok(anchored(&snap, json!({ "consents": c })).into_response())
}

/// Query of `GET /v1/patients/{id}/jobs`.
#[derive(Deserialize)]
struct Holders {
    /// Comma-separated member ids.
    holders: String,
}

/// Most hospitals one jobs query may name.
const MAX_HOLDERS: usize = 32;

async fn patient_jobs<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Holders>,
) -> Result<Response, ApiError> {
    let (snap, caller) = signed_read!(ctx, method, uri, headers);
    let patient: PatientId = parse(&id)?;
    may_read_patient(&snap.state, &caller, &patient)?;
    let holders: Vec<medspace_types::MemberId> = q
        .holders
        .split(',')
        .filter(|h| !h.is_empty())
        .take(MAX_HOLDERS + 1)
        .map(medspace_types::MemberId::new)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if holders.len() > MAX_HOLDERS {
        return Err(bad(format!("at most {MAX_HOLDERS} holders")));
    }
    let jobs = snap
        .state
        .jobs_that_may_have_counted(&patient, &holders)
        .map_err(internal)?;
    Ok(anchored(&snap, json!({ "jobs": jobs })).into_response())
}

async fn patient_grants<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (snap, caller) = signed_read!(ctx, method, uri, headers);
    let patient: PatientId = parse(&id)?;
    may_read_patient(&snap.state, &caller, &patient)?;
    let g = snap.state.grants_of(&patient).map_err(internal)?;
    Ok(anchored(&snap, json!({ "grants": g })).into_response())
}

async fn record<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let snap = ctx.ledger.snapshot();
    let signer = signing_key(&ctx, &ctx.per_key, &method, &uri, &headers)?;
    let key = hex::decode(&key).map_err(|_| bad("key is not hex"))?;
    // A key reads its own record whatever it is (unregistered: not found; retired: so marked),
    // so a client can tell a retired key from one never registered.
    if key == keys::principal(&signer) {
        return proven_record(&snap, key, "record");
    }
    let caller = caller_of(&snap, &signer)?;
    use medspace_state::records::tag;
    match key.first().copied() {
        // Patient-keyed tables answer only that patient (or an auditor).
        Some(tag::PATIENT | tag::CONSENT | tag::PATIENT_LOG) => {
            let mut id = [0u8; 32];
            let part = key
                .get(1..33)
                .ok_or_else(|| bad("key too short for a patient table"))?;
            id.copy_from_slice(part);
            may_read_patient(&snap.state, &caller, &PatientId(id))?;
        }
        // Grants and accesses answer their parties; to anyone else they do not exist.
        Some(tag::GRANT) => {
            let id = GrantId(id_after_tag(&key)?);
            if keys::grant(id) != key {
                return Err(bad("not a grant's key"));
            }
            let allowed = match snap.state.grant(id).map_err(internal)? {
                Some(g) => may_read_grant(&snap.state, &caller, &g)?,
                None => false,
            };
            if !allowed {
                return Err(not_found("record not found"));
            }
        }
        Some(tag::ACCESS) => {
            let id = medspace_types::AccessId(id_after_tag(&key)?);
            if keys::access(id) != key {
                return Err(bad("not an access's key"));
            }
            let allowed = match snap.state.access(id).map_err(internal)? {
                Some(a) => may_read_access(&snap.state, &caller, &a)?,
                None => false,
            };
            if !allowed {
                return Err(not_found("record not found"));
            }
        }
        // A pending re-binding answers its patient, the hospital that asked, an auditor (and,
        // through `/v1/rebinding`, the new key itself).
        Some(tag::REBIND) => {
            let new_key = key
                .get(1..)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(medspace_types::PublicKey::from_bytes)
                .filter(|k| keys::rebind(k) == key)
                .ok_or_else(|| bad("not a re-binding's key"))?;
            let allowed = match snap.state.rebind_of(&new_key).map_err(internal)? {
                Some(r) => {
                    matches!(&caller.principal, Principal::Patient(p) if *p == r.patient)
                        || caller.acts_for(&r.hospital)
                        || caller.is_regulator_auditor(&snap.state)?
                }
                None => false,
            };
            if !allowed {
                return Err(not_found("record not found"));
            }
        }
        _ => {}
    }
    proven_record(&snap, key, "record")
}

/// The pending re-binding of the key that signs the request, proven: how a patient's new key,
/// registered to nobody yet, learns which pseudonym it is to take over and from when.
async fn rebinding<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let snap = ctx.ledger.snapshot();
    let key = signing_key(&ctx, &ctx.per_key, &method, &uri, &headers)?;
    proven_record(&snap, keys::rebind(&key), "pending re-binding")
}

/// The 8-byte id after a table tag.
fn id_after_tag(key: &[u8]) -> Result<u64, ApiError> {
    key.get(1..9)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .filter(|_| key.len() == 9)
        .ok_or_else(|| bad("not a key of that table"))
}

/// Serves the router on `addr` until `shutdown` completes.
pub async fn serve<L: Ledger>(
    ledger: Arc<L>,
    config: Config,
    addr: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router(ledger, config))
        .with_graceful_shutdown(shutdown)
        .await
}

/// How long clients should wait between polls of a pending transaction.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
