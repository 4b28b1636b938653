//! The state in pieces, for light clients of the consortium.
//!
//! A client that holds only a certified state root reads the state through
//! [`medspace_state::trie::remote`]: pieces of the trie, each checked against the hash its
//! parent names. It first *pins* a height (`GET /v1/state/pin`): the node keeps that height's
//! state (an O(1) snapshot) while the client reads it, so every piece of one session comes from
//! one state even as blocks finalize. Then `GET /v1/state/nodes` serves pieces of a pinned
//! state.
//!
//! Who may read: the consortium — an active member's keys and its users — who read every
//! transaction in whole blocks already. A patient's key reads its own records through the
//! record routes, with their proofs, and nothing in pieces.
//!
//! Pins are bounded: at most [`MAX_PINS`] heights, each dropped [`PIN_IDLE`] after its last
//! read (a client whose pin is gone is told so with `410`). Clients that pin within
//! [`PIN_SHARE`] of each other share one height, so the snapshots held follow the clients'
//! arrivals, not the block rate.

use super::{ApiError, Ctx, Ledger, Snapshot, authenticate_within, bad, internal};
use axum::Json;
use axum::extract::{Query, State as AxState, rejection::QueryRejection};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use medspace_state::records::Principal;
use medspace_state::trie::remote::Locate;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most heights a node keeps pinned at once.
pub const MAX_PINS: usize = 128;
/// A pin this recent is given to the next client too, instead of a newer height.
pub const PIN_SHARE: Duration = Duration::from_secs(2);
/// How long a pinned height is kept after its last read.
pub const PIN_IDLE: Duration = Duration::from_secs(300);
/// The longest path or key a piece request may name, in bytes.
const MAX_PATH_BYTES: usize = 1024;

/// The pinned snapshots of one node's API.
#[derive(Default)]
pub(crate) struct Pins {
    /// Each pinned state, when it was pinned and when it was last read.
    held: std::sync::Mutex<Vec<(Snapshot, Instant, Instant)>>,
}

impl Pins {
    /// The state a new client gets: with `share`, a pin made in the last [`PIN_SHARE`];
    /// otherwise `latest`, kept (refreshed if held). Idle and surplus pins are dropped.
    fn pin(&self, latest: Snapshot, now: Instant, share: bool) -> Snapshot {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|(_, _, used)| now.duration_since(*used) < PIN_IDLE);
        if let Some((snap, _, used)) = held
            .iter_mut()
            .filter(|(_, made, _)| share && now.duration_since(*made) < PIN_SHARE)
            .max_by_key(|(s, ..)| s.height)
        {
            *used = now;
            return snap.clone();
        }
        match held.iter_mut().find(|(s, ..)| s.height == latest.height) {
            Some((_, _, used)) => *used = now,
            None => held.push((latest.clone(), now, now)),
        }
        if held.len() > MAX_PINS {
            held.sort_by_key(|(_, _, used)| std::cmp::Reverse(*used));
            held.truncate(MAX_PINS);
        }
        latest
    }

    /// The pinned state at `height`, its last read now.
    fn get(&self, height: u64, now: Instant) -> Option<Snapshot> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|(_, _, used)| now.duration_since(*used) < PIN_IDLE);
        let (snap, _, used) = held.iter_mut().find(|(s, ..)| s.height == height)?;
        *used = now;
        Some(snap.clone())
    }
}

/// The signed caller, refused unless it reads for the consortium (a patient reads its own
/// records, proven, through the record routes).
fn consortium_reader<L: Ledger>(
    ctx: &Ctx<L>,
    snap: &Snapshot,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let caller = authenticate_within(ctx, &ctx.piece_reads, snap, method, uri, headers)?;
    match (&caller.principal, &caller.member) {
        (Principal::Member(_) | Principal::Node(_), _) | (Principal::User(_), Some(_)) => Ok(()),
        _ => Err(ApiError(
            StatusCode::FORBIDDEN,
            "the state in pieces is for the consortium's members and their users; a patient reads its records with their proofs at /v1/records".into(),
        )),
    }
}

/// `GET /v1/state/pin`: pins the node's last finalized state and names it — height, root,
/// its anchor (the client checks the root against that height's certified header) and the
/// number of records (reported, not proven).
pub(crate) async fn pin<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let latest = ctx.ledger.snapshot();
    consortium_reader(&ctx, &latest, &method, &uri, &headers)?;
    let snap = ctx.pins.pin(latest, Instant::now(), true);
    Ok(Json(json!({
        "height": snap.height,
        "root": snap.state.root(),
        "records": snap.state.len(),
        "anchor": snap.anchor,
    })))
}

/// Query of `GET /v1/state/nodes`: see [`Locate`].
#[derive(Deserialize)]
pub(crate) struct PieceQuery {
    height: u64,
    #[serde(default)]
    at: String,
    #[serde(default)]
    depth: u32,
    #[serde(default)]
    toward: String,
    #[serde(default)]
    whole_from: Option<u32>,
}

fn hex_path(s: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    if s.len() > MAX_PATH_BYTES * 2 {
        return Err(bad(format!("{what} longer than {MAX_PATH_BYTES} bytes")));
    }
    hex::decode(s).map_err(|_| bad(format!("{what} is not hex")))
}

/// `GET /v1/state/nodes?height=H&at=..&depth=..&toward=..&whole_from=..`: one piece of the
/// pinned state at `H`, binary ([`medspace_state::trie::Trie::piece`]).
pub(crate) async fn nodes<L: Ledger>(
    AxState(ctx): AxState<Arc<Ctx<L>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    q: Result<Query<PieceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let latest = ctx.ledger.snapshot();
    consortium_reader(&ctx, &latest, &method, &uri, &headers)?;
    let Query(q) = q.map_err(|e| bad(format!("state nodes query: {}", e.body_text())))?;
    let (path, toward) = (hex_path(&q.at, "at")?, hex_path(&q.toward, "toward")?);
    let now = Instant::now();
    let snap = match ctx.pins.get(q.height, now) {
        Some(snap) => snap,
        None if latest.height == q.height => ctx.pins.pin(latest, now, false),
        None => {
            return Err(ApiError(
                StatusCode::GONE,
                format!(
                    "the state at height {} is not pinned here (any more): pin again",
                    q.height
                ),
            ));
        }
    };
    let whole_from = q.whole_from.unwrap_or(u32::MAX);
    let depth = q.depth;
    // Pieces of a stored state are read from disk: off the async workers.
    let piece = tokio::task::spawn_blocking(move || {
        snap.state.piece(Locate {
            path: &path,
            depth,
            toward: &toward,
            whole_from,
        })
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    Ok(([("content-type", "application/octet-stream")], piece).into_response())
}
