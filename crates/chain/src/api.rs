//! Node HTTP API (axum): submit signed transactions, transaction status, blocks, health and
//! Prometheus metrics, with a body-size limit and a submission rate limit.
//!
//! Routes (JSON answers, errors as `{"error": "..."}`):
//! - `POST /v1/tx` — raw transaction bytes; `200 {"tx_id": hex}`; `400` garbage / bad signature /
//!   wrong chain id / replayed nonce / oversized (via [`crate::Application::check_tx`] and the
//!   block limits), `409` duplicate, `413` body too large, `429` rate limited, `503` mempool full.
//! - `POST /v1/txs` — up to 1,024 transactions in the framing of
//!   [`crate::engine::encode_tx_batch`], for gateways that forward many clients' transactions:
//!   their signatures are verified in one batch. `200 {"accepted": n, "results": [...]}` with,
//!   per transaction in order, `{"tx_id": hex}` or `{"error": "...", "status": code}` (the code
//!   `POST /v1/tx` would have answered); `400` when the framing is malformed (nothing admitted).
//! - `GET /v1/tx/{id}` — `pending`, `finalized` (height, outcome), `dropped` (reason) or `404`.
//!
//! The chain's contents are read through a [`ReadGate`] the node provides (the chain itself knows
//! no identities): whole blocks — every transaction — only for callers the gate grants
//! [`ChainAccess::Blocks`] (a consortium's members and their staff), headers with their
//! finality certificates for [`ChainAccess::Headers`] (any registered key: a patient's light
//! client checks proofs against them).
//! - `GET /v1/blocks/{height}` (blocks) — header fields, tx ids, whether a finality certificate
//!   is stored.
//! - `GET /v1/blocks/{height}/raw?wait_ms=N` (blocks) — the finalized block and its finality
//!   certificate in the binary form of [`crate::follow::encode_finalized`], waiting up to `N`
//!   ms (≤ 10 s) for that height to be finalized; what observers and verifying clients follow.
//!   A block finalized through a later block's certificate has none of its own: it is served
//!   alone ([`crate::follow::encode_linked`]), final once a certified block links back to it.
//! - `GET /v1/blocks/{height}/header?wait_ms=N` (headers) — the header and its finality
//!   certificate ([`crate::follow::encode_certified_header`]); what light clients follow.
//! - `GET /v1/blocks?after=H&wait_ms=N` (headers) — the latest height and the last (up to) 20
//!   digests and roots; with `after`, waiting up to `N` ms (≤ 10 s) for a block above `H` (how
//!   the console learns of new blocks without reloading).
//! - `GET /health`, `GET /metrics`;
//! - `GET /v1/faults` — the consensus faults this node proved (two contradicting signed votes
//!   of one validator), each with its evidence, which anyone holding the validator set can
//!   verify.
//!
//! [`router`] takes `extra` routes so the state layer can add record + inclusion-proof routes.

use crate::{
    Application,
    block::tx_hash,
    engine::{Handle, SubmitError, TxStatus},
    mempool::MempoolError,
};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

/// What a caller may read of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChainAccess {
    /// Headers and their finality certificates.
    Headers,
    /// Whole blocks: every transaction.
    Blocks,
}

/// Why a read of the chain was refused: an HTTP status and a reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct GateRefusal {
    /// The HTTP status to answer (401, 403, 429).
    pub status: u16,
    /// Why.
    pub reason: String,
}

/// Decides who may read what of the chain over the API, from the request (its method, path and
/// headers: typically a signed request naming a key the application knows).
pub trait ReadGate: Send + Sync + 'static {
    /// What the caller of this request may read, or why nothing.
    fn access(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &axum::http::HeaderMap,
    ) -> Result<ChainAccess, GateRefusal>;
}

/// A gate open to everyone: for a chain without identities (the chain's own tests and
/// benchmarks, a private test network). A medspace node never uses it.
pub struct OpenGate;

impl ReadGate for OpenGate {
    fn access(
        &self,
        _: &str,
        _: &str,
        _: &axum::http::HeaderMap,
    ) -> Result<ChainAccess, GateRefusal> {
        Ok(ChainAccess::Blocks)
    }
}

/// API limits.
#[derive(Clone, Copy, Debug)]
pub struct ApiLimits {
    /// Maximum body size in bytes.
    pub body_limit: usize,
    /// Accepted submissions per second (node-wide).
    pub submit_per_second: u32,
}

struct RateLimiter {
    per_second: u32,
    window: Mutex<(Instant, u32)>,
}

impl RateLimiter {
    /// Takes `n` submissions from this second's allowance, or none if fewer are left.
    fn allow(&self, n: u32) -> bool {
        let mut w = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if now.duration_since(w.0).as_secs_f64() >= 1.0 {
            *w = (now, 0);
        }
        if w.1.saturating_add(n) > self.per_second {
            return false;
        }
        w.1 += n;
        true
    }
}

struct ApiState<A: Application> {
    handle: Handle<A>,
    gate: Arc<dyn ReadGate>,
    limiter: RateLimiter,
    metrics: Box<dyn Fn() -> String + Send + Sync>,
    submitted: AtomicU64,
    rejected: AtomicU64,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The status `POST /v1/tx` answers for a refused transaction.
fn refusal_status(e: &SubmitError) -> StatusCode {
    match e {
        SubmitError::Rejected(_) | SubmitError::TooLarge { .. } => StatusCode::BAD_REQUEST,
        SubmitError::AlreadyFinalized(_) | SubmitError::Mempool(MempoolError::Duplicate(_)) => {
            StatusCode::CONFLICT
        }
        SubmitError::Mempool(MempoolError::Full { .. }) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn rate_limited() -> Response {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate limited: too many submissions",
    )
}

async fn submit<A: Application>(State(s): State<Arc<ApiState<A>>>, body: Bytes) -> Response {
    if !s.limiter.allow(1) {
        return rate_limited();
    }
    match s.handle.submit(body) {
        Ok(id) => {
            s.submitted.fetch_add(1, Ordering::Relaxed);
            (StatusCode::OK, Json(json!({ "tx_id": hex::encode(id) }))).into_response()
        }
        Err(e) => {
            s.rejected.fetch_add(1, Ordering::Relaxed);
            error(refusal_status(&e), e.to_string())
        }
    }
}

/// Largest body of `POST /v1/txs`: a full batch of the largest transactions a block admits.
const MAX_BATCH_BODY: usize = 4 * 1024 * 1024;

async fn submit_batch<A: Application>(State(s): State<Arc<ApiState<A>>>, body: Bytes) -> Response {
    let Some(txs) = crate::engine::decode_tx_batch(&body, s.handle.max_tx_bytes()) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "malformed transaction batch: expected u32 count (at most {}) then u32 length and bytes per transaction, body_len={}",
                crate::engine::GOSSIP_BATCH_TXS,
                body.len()
            ),
        );
    };
    if !s
        .limiter
        .allow(u32::try_from(txs.len()).unwrap_or(u32::MAX))
    {
        return rate_limited();
    }
    let outcomes = s.handle.submit_many(&txs);
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
    s.submitted.fetch_add(accepted, Ordering::Relaxed);
    s.rejected
        .fetch_add(outcomes.len() as u64 - accepted, Ordering::Relaxed);
    let results: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| match o {
            Ok(id) => json!({ "tx_id": hex::encode(id) }),
            Err(e) => json!({ "error": e.to_string(), "status": refusal_status(e).as_u16() }),
        })
        .collect();
    Json(json!({ "accepted": accepted, "results": results })).into_response()
}

async fn tx_status<A: Application>(
    State(s): State<Arc<ApiState<A>>>,
    Path(id): Path<String>,
) -> Response {
    let Ok(bytes) = hex::decode(&id) else {
        return error(StatusCode::BAD_REQUEST, "tx id is not hex");
    };
    let Ok(id) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("tx id must be 32 bytes: len={}", bytes.len()),
        );
    };
    match s.handle.status(&id) {
        TxStatus::Pending => Json(json!({ "status": "pending" })).into_response(),
        TxStatus::Finalized { height, outcome } => Json(json!({
            "status": "finalized",
            "height": height,
            "applied": outcome.is_ok(),
            "refused": outcome.err(),
        }))
        .into_response(),
        TxStatus::Dropped(reason) => {
            Json(json!({ "status": "dropped", "reason": reason })).into_response()
        }
        TxStatus::Unknown => error(StatusCode::NOT_FOUND, "unknown transaction"),
    }
}

/// `None` when the caller's access is at least `need`; else the refusal to answer.
fn gate<A: Application>(
    s: &ApiState<A>,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    need: ChainAccess,
) -> Option<Response> {
    let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    match s.gate.access("GET", pq, headers) {
        Ok(have) if have >= need => None,
        Ok(_) => Some(error(
            StatusCode::FORBIDDEN,
            "block bodies are for the consortium's members and appointed observers; read headers at /v1/blocks/{height}/header",
        )),
        Err(r) => Some(error(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN),
            r.reason,
        )),
    }
}

async fn block<A: Application>(
    State(s): State<Arc<ApiState<A>>>,
    Path(height): Path<u64>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(refused) = gate(&s, &uri, &headers, ChainAccess::Blocks) {
        return refused;
    }
    match s.handle.block(height).await {
        Some((b, fin)) => Json(json!({
            "height": b.header.height,
            "digest": hex::encode(b.header.digest()),
            "parent": hex::encode(b.header.parent),
            "time_ms": b.header.time_ms,
            "tx_root": hex::encode(b.header.tx_root),
            "state_root": hex::encode(b.header.state_root),
            "tx_ids": b.txs.iter().map(|t| hex::encode(tx_hash(t))).collect::<Vec<_>>(),
            "finalization_stored": fin.is_some(),
        }))
        .into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no finalized block: height={height}"),
        ),
    }
}

/// Query of `GET /v1/blocks/{height}/raw`.
#[derive(serde::Deserialize)]
struct RawQuery {
    /// Wait up to this long (capped at 10 s) for the height to be finalized.
    #[serde(default)]
    wait_ms: u64,
}

/// Longest a follower may wait at one request for the next block.
const MAX_WAIT_MS: u64 = 10_000;

async fn block_raw<A: Application>(
    State(s): State<Arc<ApiState<A>>>,
    Path(height): Path<u64>,
    axum::extract::Query(q): axum::extract::Query<RawQuery>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    finalized(&s, height, q, &uri, &headers, ChainAccess::Blocks).await
}

async fn block_header<A: Application>(
    State(s): State<Arc<ApiState<A>>>,
    Path(height): Path<u64>,
    axum::extract::Query(q): axum::extract::Query<RawQuery>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    finalized(&s, height, q, &uri, &headers, ChainAccess::Headers).await
}

/// A finalized block (`Blocks`) or its certified header (`Headers`), after the gate and, if
/// asked, a wait for the height. The gate is passed before anything waits.
async fn finalized<A: Application>(
    s: &ApiState<A>,
    height: u64,
    q: RawQuery,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    what: ChainAccess,
) -> Response {
    if let Some(refused) = gate(s, uri, headers, what) {
        return refused;
    }
    if height == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "height 0 is the genesis block, derived from the genesis file",
        );
    }
    if s.handle.height() < height && q.wait_ms > 0 {
        let wait = std::time::Duration::from_millis(q.wait_ms.min(MAX_WAIT_MS));
        let _ = tokio::time::timeout(wait, s.handle.wait_for_height(height)).await;
    }
    if s.handle.height() < height {
        return error(
            StatusCode::NOT_FOUND,
            format!("no finalized block: height={height}"),
        );
    }
    match s.handle.block(height).await {
        Some((b, Some(fin))) => (
            [("content-type", "application/octet-stream")],
            match what {
                ChainAccess::Blocks => crate::follow::encode_finalized(&b, &fin),
                ChainAccess::Headers => crate::follow::encode_certified_header(&b.header, &fin),
            },
        )
            .into_response(),
        // Finalized through a later block's certificate: a follower takes the block alone and
        // trusts it once a certified block links back to it; a light client needs a
        // certificate of the height itself.
        Some((b, None)) if what == ChainAccess::Blocks => (
            [("content-type", "application/octet-stream")],
            crate::follow::encode_linked(&b),
        )
            .into_response(),
        Some((_, None)) => error(
            StatusCode::NOT_FOUND,
            format!("finality certificate not stored: height={height}"),
        ),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no finalized block: height={height}"),
        ),
    }
}

/// `GET /v1/checkpoint`: the committed state at the committed height, for a follower to start
/// from (it checks the state against that height's certified header). Read like whole blocks
/// (the same gate), encoded off the async workers.
async fn checkpoint<A: Application>(
    State(s): State<Arc<ApiState<A>>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(refused) = gate(&s, &uri, &headers, ChainAccess::Blocks) {
        return refused;
    }
    let handle = s.handle.clone();
    let (chunks, mut received) = tokio::sync::mpsc::channel(CHECKPOINT_CHUNKS);
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = Chunks {
            chunks,
            buf: Vec::new(),
            size: CHECKPOINT_CHUNK,
        };
        handle
            .write_checkpoint(&mut out)
            .map(|written| written.and_then(|n| std::io::Write::flush(&mut out).map(|()| n)))
    });
    let failed = |e: String| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("checkpoint failed: {e}"),
        )
    };
    let Some(first) = received.recv().await else {
        // Nothing was written: no checkpoint, or it failed before its first chunk.
        return match writer.await {
            Ok(None) => error(StatusCode::NOT_FOUND, "this chain keeps no checkpoints"),
            Ok(Some(Err(e))) => failed(e.to_string()),
            Ok(Some(Ok(_))) => failed("it wrote nothing".into()),
            Err(e) => failed(e.to_string()),
        };
    };
    // The rest as it is encoded; a failure after the first chunk ends the body with an error
    // (the client's checksum would refuse a cut checkpoint anyway).
    let rest = futures::stream::unfold(Some((received, writer)), |left| async move {
        let (mut received, writer) = left?;
        match received.recv().await {
            Some(chunk) => Some((Ok(chunk), Some((received, writer)))),
            None => match writer.await {
                Ok(Some(Ok(_))) => None,
                Ok(Some(Err(e))) => Some((Err(e), None)),
                Ok(None) => Some((Err(std::io::Error::other("no checkpoint")), None)),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            },
        }
    });
    let body = futures::StreamExt::chain(
        futures::stream::once(async move { Ok::<Bytes, std::io::Error>(first) }),
        rest,
    );
    (
        [("content-type", "application/octet-stream")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

/// Bytes of a checkpoint handed to the response at once.
const CHECKPOINT_CHUNK: usize = 1 << 20;
/// Chunks encoded ahead of the client: what serving a checkpoint holds in memory, whatever
/// its size.
const CHECKPOINT_CHUNKS: usize = 4;

/// A writer that hands what is written to a channel in chunks of `size` bytes; a write fails
/// once the receiver is gone (the client left), which stops the encoding.
struct Chunks {
    chunks: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    size: usize,
}

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.chunks
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= self.size {
            self.send()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

/// Query of `GET /v1/blocks`: long-poll for a block above `after`.
#[derive(serde::Deserialize)]
struct BlocksQuery {
    /// Answer once a block above this height is finalized (or the wait is over).
    after: Option<u64>,
    /// Wait up to this long (capped at 10 s).
    #[serde(default)]
    wait_ms: u64,
}

async fn blocks<A: Application>(
    State(s): State<Arc<ApiState<A>>>,
    axum::extract::Query(q): axum::extract::Query<BlocksQuery>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(refused) = gate(&s, &uri, &headers, ChainAccess::Headers) {
        return refused;
    }
    // Live updates (the console): the gate is passed before anything waits.
    if let Some(after) = q.after
        && s.handle.height() <= after
        && q.wait_ms > 0
    {
        let wait = std::time::Duration::from_millis(q.wait_ms.min(MAX_WAIT_MS));
        let _ = tokio::time::timeout(wait, s.handle.wait_for_height(after + 1)).await;
    }
    let first = s.handle.finalized_from();
    let chain = s.handle.finalized_chain();
    let from = chain.len().saturating_sub(20);
    let recent: Vec<_> = chain
        .iter()
        .enumerate()
        .skip(from)
        .map(|(i, (d, r))| json!({ "height": first + i as u64, "digest": hex::encode(d), "state_root": hex::encode(r) }))
        .collect();
    Json(json!({ "height": s.handle.height(), "recent": recent })).into_response()
}

async fn health<A: Application>(State(s): State<Arc<ApiState<A>>>) -> Response {
    let body = json!({
        "height": s.handle.height(),
        "mempool": s.handle.mempool_len(),
        "halted": s.handle.halted(),
        // The checkpoint this node's state was restored from at its start (0: replayed from
        // genesis).
        "started_from": s.handle.finalized_from(),
    });
    if s.handle.halted().is_some() {
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    } else {
        Json(body).into_response()
    }
}

async fn metrics<A: Application>(State(s): State<Arc<ApiState<A>>>) -> Response {
    let mut out = (s.metrics)();
    out.push_str(&format!(
        "# TYPE medspace_chain_height gauge\nmedspace_chain_height {}\n# TYPE medspace_mempool_txs gauge\nmedspace_mempool_txs {}\n# TYPE medspace_api_submitted_total counter\nmedspace_api_submitted_total {}\n# TYPE medspace_api_rejected_total counter\nmedspace_api_rejected_total {}\n",
        s.handle.height(),
        s.handle.mempool_len(),
        s.submitted.load(Ordering::Relaxed),
        s.rejected.load(Ordering::Relaxed),
    ));
    out.push_str(&format!(
        "# TYPE medspace_chain_faults_total counter\nmedspace_chain_faults_total {}\n",
        s.handle.fault_count()
    ));
    ([("content-type", "text/plain; version=0.0.4")], out).into_response()
}

/// The recorded faults as JSON: the total seen and the most recent ones, each with its kind,
/// the validator's key, the epoch and view, and the evidence (simplex's encoded activity) in hex.
pub fn faults_json(total: u64, faults: &[crate::engine::Fault]) -> serde_json::Value {
    use commonware_codec::Encode as _;
    json!({
        "total": total,
        "faults": faults
            .iter()
            .map(|f| json!({
                "kind": f.kind.as_str(),
                "validator": hex::encode(f.validator.encode()),
                "epoch": f.epoch,
                "view": f.view,
                "evidence": hex::encode(&f.evidence),
            }))
            .collect::<Vec<_>>(),
    })
}

async fn faults<A: Application>(State(s): State<Arc<ApiState<A>>>) -> Response {
    Json(faults_json(s.handle.fault_count(), &s.handle.faults())).into_response()
}

/// Builds the node API. `metrics` renders runtime metrics in Prometheus text format (e.g. the
/// commonware context's `encode()`); `extra` routes are merged in (state records and proofs);
/// `gate` decides who reads the chain.
pub fn router<A: Application>(
    handle: Handle<A>,
    limits: ApiLimits,
    metrics_text: impl Fn() -> String + Send + Sync + 'static,
    extra: Router,
    gate: Arc<dyn ReadGate>,
) -> Router {
    let state = Arc::new(ApiState {
        handle,
        gate,
        limiter: RateLimiter {
            per_second: limits.submit_per_second,
            window: Mutex::new((Instant::now(), 0)),
        },
        metrics: Box::new(metrics_text),
        submitted: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
    });
    Router::new()
        .route("/v1/tx", post(submit::<A>))
        .route(
            "/v1/txs",
            post(submit_batch::<A>).layer(DefaultBodyLimit::max(MAX_BATCH_BODY)),
        )
        .route("/v1/tx/{id}", get(tx_status::<A>))
        .route("/v1/blocks", get(blocks::<A>))
        .route("/v1/blocks/{height}", get(block::<A>))
        .route("/v1/blocks/{height}/raw", get(block_raw::<A>))
        .route("/v1/blocks/{height}/header", get(block_header::<A>))
        .route("/v1/checkpoint", get(checkpoint::<A>))
        .route("/health", get(health::<A>))
        .route("/metrics", get(metrics::<A>))
        .route("/v1/faults", get(faults::<A>))
        .with_state(state)
        .merge(extra)
        .layer(DefaultBodyLimit::max(limits.body_limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn a_checkpoint_is_handed_over_in_chunks_in_order_and_stops_when_the_client_left() {
        let (chunks, mut received) = tokio::sync::mpsc::channel(64);
        let mut out = Chunks {
            chunks,
            buf: Vec::new(),
            size: 10,
        };
        let data: Vec<u8> = (0..=255u8).collect();
        for piece in data.chunks(7) {
            out.write_all(piece).unwrap();
        }
        out.flush().unwrap();
        drop(out);
        let (mut got, mut sizes) = (Vec::new(), Vec::new());
        while let Ok(chunk) = received.try_recv() {
            sizes.push(chunk.len());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, data);
        let (last, full) = sizes.split_last().unwrap();
        assert!(full.iter().all(|s| (10..17).contains(s)), "{sizes:?}");
        assert!(*last > 0);
        // The client left: the next chunk cannot be handed over, and the encoding stops.
        let (chunks, received) = tokio::sync::mpsc::channel(1);
        drop(received);
        let mut out = Chunks {
            chunks,
            buf: Vec::new(),
            size: 4,
        };
        let err = out.write_all(&[0; 8]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
