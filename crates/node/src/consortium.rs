//! `GET /v1/consortium`: what this node knows of the consortium's health — which validators it
//! currently reaches and when it last did, its last finalized height and that block's age, and
//! whether enough validators answer to finalize. The console shows it (and a client can ask it)
//! instead of waiting silently when the chain stalls.
//!
//! Every [`PROBE_EVERY`] the node asks each validator's open `GET /v1/health` over the client
//! that pins the genesis certificates (a validator counts itself as reached). The answer is
//! for any key the ledger knows, in a request signed for this node ([`ReadGate`]: the same
//! rule as block headers): it names institutions' nodes, never a patient.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use medspace_chain::api::ReadGate;
use medspace_ledger::Ledger;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the node asks every validator whether it answers.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// How long one validator may take to answer.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The route's path.
pub const PATH: &str = "/v1/consortium";

#[derive(Clone, Copy, Default)]
struct Seen {
    /// Whether the last probe was answered.
    reachable: bool,
    /// When a probe was last answered (ms since the epoch).
    last_seen_ms: Option<u64>,
}

struct Watch<L> {
    ledger: Arc<L>,
    gate: Arc<dyn ReadGate>,
    me: String,
    /// The validators in genesis order, with their API URL.
    validators: Vec<(String, String)>,
    seen: Mutex<BTreeMap<String, Seen>>,
    /// When the last probe round ended (ms since the epoch).
    checked_ms: Mutex<u64>,
    /// The last finalized height a probe round saw, and when it first saw it.
    finalized: Mutex<(u64, u64)>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The route of `me`'s node, reaching `validators` (name, API URL, in genesis order) with
/// `client`; requests are let in by `gate`. Spawns the prober on the current tokio runtime.
pub fn router<L: Ledger>(
    ledger: Arc<L>,
    gate: Arc<dyn ReadGate>,
    client: reqwest::Client,
    me: String,
    validators: Vec<(String, String)>,
) -> Router {
    let watch = Arc::new(Watch {
        ledger,
        gate,
        me,
        validators,
        seen: Mutex::new(BTreeMap::new()),
        checked_ms: Mutex::new(0),
        finalized: Mutex::new((0, now_ms())),
    });
    let probing = Arc::downgrade(&watch);
    tokio::spawn(async move {
        loop {
            let Some(w) = probing.upgrade() else { break };
            probe(&w, &client).await;
            drop(w);
            tokio::time::sleep(PROBE_EVERY).await;
        }
    });
    Router::new()
        .route(PATH, get(consortium::<L>))
        .with_state(watch)
}

async fn probe<L: Ledger>(w: &Watch<L>, client: &reqwest::Client) {
    let asks: Vec<_> = w
        .validators
        .iter()
        .map(|(name, url)| {
            let req = client.get(format!("{url}/v1/health")).send();
            let myself = *name == w.me;
            let name = name.clone();
            tokio::spawn(async move {
                let ok = myself
                    || tokio::time::timeout(PROBE_TIMEOUT, req)
                        .await
                        .is_ok_and(|r| r.is_ok());
                (name, ok)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for a in asks {
        if let Ok(x) = a.await {
            answers.push(x);
        }
    }
    let now = now_ms();
    let mut seen = w
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (name, ok) in answers {
        let s = seen.entry(name).or_default();
        s.reachable = ok;
        if ok {
            s.last_seen_ms = Some(now);
        }
    }
    *w.checked_ms
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
    let height = w.ledger.snapshot().height;
    let mut f = w
        .finalized
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if f.0 != height {
        *f = (height, now);
    }
}

async fn consortium<L: Ledger>(
    State(w): State<Arc<Watch<L>>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    if let Err(r) = w.gate.access("GET", pq, &headers) {
        return (
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN),
            Json(json!({ "error": r.reason })),
        )
            .into_response();
    }
    let snap = w.ledger.snapshot();
    let now = now_ms();
    let seen = w
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let checked = *w
        .checked_ms
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let validators: Vec<_> = w
        .validators
        .iter()
        .map(|(name, _)| {
            let s = seen.get(name).copied().unwrap_or_default();
            json!({
                "name": name,
                "this_node": *name == w.me,
                "reachable": s.reachable,
                "last_seen_ms": s.last_seen_ms,
                "last_seen_age_ms": s.last_seen_ms.map(|t| now.saturating_sub(t)),
            })
        })
        .collect();
    let n = w.validators.len();
    let needed = n - n.saturating_sub(1) / 3;
    let reachable = w
        .validators
        .iter()
        .filter(|(name, _)| seen.get(name).is_some_and(|s| s.reachable))
        .count();
    let unreachable: Vec<_> = w
        .validators
        .iter()
        .filter(|(name, _)| !seen.get(name).is_some_and(|s| s.reachable))
        .map(|(name, _)| name.clone())
        .collect();
    // The block's own time where the node knows it, else when this node first saw it final.
    let (seen_height, seen_at) = *w
        .finalized
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let finalized_ms = if snap.time_ms > 0 {
        snap.time_ms
    } else if seen_height == snap.height {
        seen_at
    } else {
        now
    };
    Json(json!({
        "node": w.me,
        "height": snap.height,
        "finalized_time_ms": finalized_ms,
        "finalized_age_ms": now.saturating_sub(finalized_ms),
        "validators": validators,
        "reachable": reachable,
        "unreachable": unreachable,
        "needed": needed,
        "can_finalize": reachable >= needed,
        "checked_ms": checked,
        "probe_every_ms": PROBE_EVERY.as_millis() as u64,
    }))
    .into_response()
}
