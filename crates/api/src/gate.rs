//! Who reads the chain at a medspace node: the node's [`medspace_chain::api::ReadGate`].
//!
//! Blocks carry every transaction — consents, grants, record accesses — so whole blocks go only
//! to the consortium: the key of an active member, or of a user of an active member. Headers
//! with their finality certificates go to a patient's key too: a light client needs nothing more
//! to check a state root, and proofs of its own records against it. A removed member's keys and
//! users read nothing. A genesis validator's own key reads whole blocks too
//! ([`ChainGate::with_validators`]): it holds every block already, and a validator joining by state
//! sync reads its peer's checkpoint with it. Every request is signed for this node and accepted
//! once ([`crate::auth`]).

use crate::auth::{ReplayGuard, Request, now_ms};
use crate::limit::KeyLimiter;
use medspace_chain::api::{ChainAccess, GateRefusal, ReadGate};
use medspace_ledger::Ledger;
use medspace_state::records::Principal;
use medspace_types::{Keypair, PublicKey};
use std::sync::Arc;
use std::time::Instant;

/// Requests per second one key may make for blocks or headers (a follower catching up asks
/// for one block per request), and its burst.
pub const CHAIN_READS_PER_SEC: u32 = 2000;
/// See [`CHAIN_READS_PER_SEC`].
pub const CHAIN_READS_BURST: u32 = 4000;

/// The read gate of `member`'s node over its ledger.
pub struct ChainGate<L> {
    ledger: Arc<L>,
    member: String,
    validators: Vec<PublicKey>,
    replays: ReplayGuard,
    per_key: KeyLimiter,
}

impl<L: Ledger> ChainGate<L> {
    /// The gate of `member`'s node.
    pub fn new(ledger: Arc<L>, member: impl Into<String>) -> Self {
        Self {
            ledger,
            member: member.into(),
            validators: Vec::new(),
            replays: ReplayGuard::default(),
            per_key: KeyLimiter::new(CHAIN_READS_PER_SEC, CHAIN_READS_BURST),
        }
    }

    /// This gate, also serving whole blocks (and checkpoints) to requests signed by one of
    /// `validators`, the genesis validators' consensus keys: they replicate every block anyway,
    /// and a validator with no chain of its own reads its peer's checkpoint with its key
    /// (`[consensus] sync_from`). Their requests are verified, rate-limited and accepted once
    /// like any other.
    pub fn with_validators(mut self, validators: impl IntoIterator<Item = PublicKey>) -> Self {
        self.validators = validators.into_iter().collect();
        self
    }
}

fn refuse(status: u16, reason: impl Into<String>) -> GateRefusal {
    GateRefusal {
        status,
        reason: reason.into(),
    }
}

impl<L: Ledger> ReadGate for ChainGate<L> {
    fn access(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &axum::http::HeaderMap,
    ) -> Result<ChainAccess, GateRefusal> {
        let header = headers.get("authorization").and_then(|v| v.to_str().ok());
        let now = now_ms();
        let v = Request {
            method,
            path_and_query,
            audience: &self.member,
            body: b"",
        }
        .verify(header, now)
        .map_err(|e| refuse(401, e.to_string()))?;
        if !self.per_key.take(&v.key, Instant::now()) {
            return Err(refuse(
                429,
                format!("rate limit of key={} exceeded", v.key.to_hex()),
            ));
        }
        self.replays
            .admit(&v, now)
            .map_err(|e| refuse(401, e.to_string()))?;
        if self.validators.contains(&v.key) {
            return Ok(ChainAccess::Blocks);
        }
        let state = self.ledger.snapshot().state;
        let internal = |e: medspace_state::TxError| refuse(500, e.to_string());
        let rec = state.key_record(&v.key).map_err(internal)?;
        // The new key of a pending re-binding reads headers already: its light client checks
        // the re-binding's proof before it completes it.
        if rec.is_none() && state.rebind_of(&v.key).map_err(internal)?.is_some() {
            return Ok(ChainAccess::Headers);
        }
        // So does a patient's retired key: its light client proves to its holder that it was
        // retired (headers are what any patient reads; nothing in them is about anyone).
        if rec
            .as_ref()
            .is_some_and(|r| r.retired && matches!(r.principal, Principal::Patient(_)))
        {
            return Ok(ChainAccess::Headers);
        }
        let rec = rec.filter(|r| !r.retired).ok_or_else(|| {
            refuse(
                403,
                format!("key={} is not registered on the ledger", v.key.to_hex()),
            )
        })?;
        let member = match &rec.principal {
            // A member's node key reads for its member (an observer follows with it).
            Principal::Member(m) | Principal::Node(m) => Some(m.clone()),
            Principal::User(u) => state.user(u).map_err(internal)?.map(|u| u.member),
            Principal::Patient(_) => None,
        };
        match member {
            // A patient's key: headers, for its light client.
            None => Ok(ChainAccess::Headers),
            Some(m) => {
                if state
                    .member(&m)
                    .map_err(internal)?
                    .is_some_and(|r| r.active)
                {
                    Ok(ChainAccess::Blocks)
                } else {
                    // A removed member's keys and users keep no standing.
                    Err(refuse(
                        403,
                        format!(
                            "member `{m}` is no longer in the consortium: its keys read nothing"
                        ),
                    ))
                }
            }
        }
    }
}

/// Signs a follower's block and header requests with a ledger key (the chain's
/// [`medspace_chain::follow::RequestSigner`]).
pub struct KeySigner(pub Keypair);

impl medspace_chain::follow::RequestSigner for KeySigner {
    fn authorization(&self, audience: &str, path_and_query: &str) -> String {
        Request {
            method: "GET",
            path_and_query,
            audience,
            body: b"",
        }
        .sign(&self.0)
    }
}
