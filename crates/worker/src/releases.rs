//! The open pool at the owner's node: a recipient holding an approved open-pool contract that
//! names one of this hospital's releases fetches it.
//!
//! 1. `POST /v1/worker/releases/deliver` ([`Fetch`]): every check against the ledger (the
//!    caller's institution holds the contract, active, in open-pool mode, naming the release;
//!    the release is this hospital's), then the release's manifest as kept here must hash to
//!    the extract hash its catalog entry published (a release edited after publication is
//!    never delivered); then `DeliverRelease` is final on the ledger, and only then the
//!    manifest's bytes leave. The manifest lists every file with its size and SHA-256.
//! 2. `GET /v1/worker/releases/{dataset}/files/{name}`: a file the manifest lists, to an
//!    institution with an unattested delivery of the release's current version under a
//!    contract that is still active. The recipient checks each file against the manifest, and
//!    the manifest against the ledger.

use crate::WorkerError;
use crate::records::{RecordSharing, RecordSource, Refused};
use commonware_runtime::{Clock, Spawner};
use medspace_ledger::Ledger;
use medspace_state::State;
use medspace_state::records::{ContractRecord, DeliveryRecord, Principal};
use medspace_types::{
    ContractId, DatasetId, DeliverRelease, Hash, MemberId, Mode, Payload, PublicKey,
};
use serde::Deserialize;

/// A fetch request's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fetch {
    /// The open-pool contract.
    pub contract: ContractId,
    /// The release.
    pub dataset: DatasetId,
    /// The finalized height at which the caller saw the contract active (see
    /// [`crate::records::Redeem::after_height`]).
    #[serde(default)]
    pub after_height: u64,
}

fn refused(status: u16, reason: impl Into<String>) -> Refused {
    Refused {
        status,
        reason: reason.into(),
    }
}

/// The hash a release's catalog entry publishes: SHA-256 of its manifest's bytes.
pub fn manifest_hash(manifest: &[u8]) -> Hash {
    Hash::of(&[manifest])
}

/// The institution of a registered caller key (patients fetch nothing from the open pool).
fn institution(state: &State, key: &PublicKey) -> Result<MemberId, Refused> {
    let who = match state.key_record(key) {
        Ok(Some(r)) if !r.retired => r.principal,
        Ok(_) => {
            return Err(refused(
                403,
                format!("key={} is not registered on the ledger", key.to_hex()),
            ));
        }
        Err(e) => return Err(refused(500, e.to_string())),
    };
    match who {
        Principal::Member(m) | Principal::Node(m) => Ok(m),
        Principal::User(u) => state
            .user(&u)
            .map_err(|e| refused(500, e.to_string()))?
            .map(|r| r.member)
            .ok_or_else(|| refused(403, format!("user {u} is not registered"))),
        Principal::Patient(_) => Err(refused(
            403,
            "the open pool delivers to institutions under a contract",
        )),
    }
}

/// The contract, if it lets `member` receive `dataset` from `me` now.
fn check_contract(
    state: &State,
    contract: ContractId,
    dataset: &DatasetId,
    me: &MemberId,
    member: &MemberId,
    now_ms: u64,
) -> Result<ContractRecord, Refused> {
    let c = state
        .contract(contract)
        .map_err(|e| refused(500, e.to_string()))?
        .ok_or_else(|| refused(404, format!("contract not found: id={contract}")))?;
    if c.requester_member != *member {
        return Err(refused(
            403,
            format!(
                "contract {contract} is held by {}, not {member}",
                c.requester_member
            ),
        ));
    }
    if c.mode != Mode::OpenPool {
        return Err(refused(
            403,
            format!("contract {contract} is not for the open pool"),
        ));
    }
    if !c.is_active(now_ms) {
        return Err(refused(
            403,
            format!("contract {contract} is {}", c.status_at(now_ms)),
        ));
    }
    if !c.fields.iter().any(|f| f.dataset == *dataset) {
        return Err(refused(
            403,
            format!("contract {contract} does not name {dataset}"),
        ));
    }
    if !c.owners.iter().any(|o| o == me) {
        return Err(refused(
            404,
            format!("{me} holds no data of contract {contract}"),
        ));
    }
    Ok(c)
}

impl<E, L, R> RecordSharing<E, L, R>
where
    E: Spawner + Clock,
    L: Ledger,
    R: RecordSource,
{
    /// Delivers a release's manifest to `caller` under its open-pool contract: every check,
    /// the manifest's hash against the catalog, the delivery on the ledger, then the bytes.
    pub async fn deliver_release(
        &self,
        caller: &PublicKey,
        req: &Fetch,
        now_ms: u64,
    ) -> Result<Vec<u8>, Refused> {
        self.submitter()
            .reached(self.clock(), req.after_height, crate::records::CATCH_UP)
            .await;
        let state = self.ledger().snapshot().state;
        let member = institution(&state, caller)?;
        check_contract(
            &state,
            req.contract,
            &req.dataset,
            self.member(),
            &member,
            now_ms,
        )?;
        let entry = state
            .dataset(&req.dataset)
            .map_err(|e| refused(500, e.to_string()))?
            .filter(|d| d.owner == *self.member() && d.release.is_some())
            .ok_or_else(|| {
                refused(
                    404,
                    format!("{} publishes no release {}", self.member(), req.dataset),
                )
            })?;
        let dataset = req.dataset.clone();
        let manifest = self
            .blocking(move |s| s.release_manifest(&dataset))
            .await?
            .ok_or_else(|| refused(404, format!("release {} is not kept here", req.dataset)))?;
        let hash = manifest_hash(&manifest);
        if hash != entry.description.content_hash {
            return Err(refused(
                409,
                format!(
                    "the release {} kept here is not the one published (version {})",
                    req.dataset, entry.description.version
                ),
            ));
        }
        let bytes = u64::try_from(manifest.len()).unwrap_or(u64::MAX);
        let payload = Payload::DeliverRelease(DeliverRelease {
            contract: req.contract,
            dataset: req.dataset.clone(),
            content_hash: hash,
            bytes,
        });
        self.submitter()
            .submit_and_wait(self.clock(), payload, &|_| true)
            .await
            .map_err(|e| match e {
                WorkerError::Ledger(reason) => {
                    refused(403, format!("the ledger refused the delivery: {reason}"))
                }
                other => refused(500, other.to_string()),
            })?;
        tracing::info!(dataset = %req.dataset, recipient = %member, "releases.deliver: delivered");
        Ok(manifest)
    }

    /// One file of a release, to an institution with an unattested delivery of its current
    /// version under a contract still active.
    pub async fn release_file(
        &self,
        caller: &PublicKey,
        dataset: DatasetId,
        name: String,
        now_ms: u64,
    ) -> Result<Vec<u8>, Refused> {
        let state = self.ledger().snapshot().state;
        let member = institution(&state, caller)?;
        let entry = state
            .dataset(&dataset)
            .map_err(|e| refused(500, e.to_string()))?
            .filter(|d| d.owner == *self.member() && d.release.is_some())
            .ok_or_else(|| {
                refused(
                    404,
                    format!("{} publishes no release {dataset}", self.member()),
                )
            })?;
        let deliveries = state
            .deliveries_to(&member)
            .map_err(|e| refused(500, e.to_string()))?;
        let live = |d: &DeliveryRecord| {
            d.dataset == dataset
                && d.version == entry.description.version
                && d.destroyed_height.is_none()
                && check_contract(&state, d.contract, &dataset, self.member(), &member, now_ms)
                    .is_ok()
        };
        if !deliveries.iter().any(live) {
            return Err(refused(
                403,
                format!("no live delivery of {dataset} to {member}: fetch its manifest first"),
            ));
        }
        self.blocking(move |s| s.release_file(&dataset, &name))
            .await?
            .ok_or_else(|| refused(404, "no such file in the release"))
    }
}
