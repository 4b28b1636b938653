//! The open pool: de-identified releases in the catalog, their delivery, and the destruction of
//! delivered copies.
//!
//! - A member (or its steward) publishes a release of one of its own datasets with the figures
//!   its vault measured on the extract. The ledger holds them to the policy's open-pool standard
//!   (k, l, the highest prosecutor risk) and checks that they agree with each other (the
//!   highest prosecutor risk is 1/k), so a member cannot publish an entry that claims less than
//!   it must. The figures cannot be checked against bytes the ledger never sees: the entry's
//!   `content_hash` binds them to the extract, and every recipient can recompute them.
//! - A release's fields are all L1 (de-identified), whatever the consortium's classification
//!   of the source columns; a release is never republished as a plain dataset, nor the other
//!   way round.
//! - Only the owner's node records a delivery, under an active open-pool contract of the
//!   recipient that names the release, and only of the published bytes (their hash).
//! - Once a contract ends (expiry or termination), the recipient has the policy's
//!   `destruction_ms` to attest each copy destroyed; with an attestation overdue it may not
//!   request anything new (see `contracts`), and the regulator sees the overdue copies.

use super::{Created, Receipt, Signer, derive_unguessable_id, forbidden, invalid, not_found};
use crate::error::TxError;
use crate::records::keys;
use crate::records::*;
use crate::state::{BlockContext, State};
use medspace_types::*;

/// One million: risks and shares are in parts per million.
const PPM: u64 = 1_000_000;

impl State {
    pub(super) fn publish_release(
        &mut self,
        signer: Signer,
        ctx: &BlockContext,
        p: &PublishRelease,
    ) -> Result<Receipt, TxError> {
        let owner = Self::steward_member(&signer, "publish_release")?;
        let (d, r) = (&p.dataset, &p.release);
        let source = self
            .dataset(&r.source)?
            .ok_or_else(|| not_found("dataset", &r.source))?;
        if source.owner != owner {
            return Err(forbidden(format!(
                "dataset `{}` belongs to `{}`",
                r.source, source.owner
            )));
        }
        if source.release.is_some() || r.source == d.id {
            return Err(invalid(
                "source",
                "a release is derived from a dataset, not from a release",
            ));
        }
        check_figures(&self.policy()?.open_pool, r)?;
        if r.purposes.is_empty() || r.consent_height > ctx.height {
            return Err(invalid(
                "release",
                "a release names the purposes its persons consented to, at a height already final",
            ));
        }
        for t in &d.tables {
            if let Some(f) = t.fields.iter().find(|f| f.level != Level::L1) {
                return Err(invalid(
                    "level",
                    format!(
                        "`{}.{}` is {}: a release's fields are all L1",
                        t.name, f.name, f.level
                    ),
                ));
            }
        }
        self.check_description(d, &owner, true)?;
        self.put(
            &keys::dataset(&d.id),
            &DatasetRecord {
                owner,
                description: d.clone(),
                published_height: ctx.height,
                release: Some(r.clone()),
            },
        )?;
        Ok(Receipt::new("publish_release"))
    }

    pub(super) fn deliver_release(
        &mut self,
        signer: Signer,
        key: &PublicKey,
        nonce: u64,
        ctx: &BlockContext,
        p: &DeliverRelease,
    ) -> Result<Receipt, TxError> {
        let Signer::Node(holder) = signer else {
            return Err(TxError::WrongSigner {
                kind: "deliver_release",
                need: "the owner's node key",
                have: signer.describe(),
            });
        };
        let holder = holder.member.id;
        let c = self
            .contract(p.contract)?
            .ok_or_else(|| not_found("contract", p.contract))?;
        if !c.is_active(ctx.time_ms) {
            return Err(TxError::ContractState {
                id: c.id.to_string(),
                status: c.status_at(ctx.time_ms),
                need: "active",
            });
        }
        if c.mode != Mode::OpenPool {
            return Err(TxError::OutOfScope {
                reason: format!("contract {} is for {}, not the open pool", c.id, c.mode),
            });
        }
        if !c.fields.iter().any(|f| f.dataset == p.dataset) {
            return Err(TxError::OutOfScope {
                reason: format!("contract {} does not name `{}`", c.id, p.dataset),
            });
        }
        let ds = self
            .dataset(&p.dataset)?
            .ok_or_else(|| not_found("dataset", &p.dataset))?;
        if ds.owner != holder {
            return Err(forbidden(format!(
                "`{}` is `{}`'s to deliver",
                p.dataset, ds.owner
            )));
        }
        if ds.release.is_none() {
            return Err(TxError::OutOfScope {
                reason: format!("`{}` is not a release of the open pool", p.dataset),
            });
        }
        if p.content_hash != ds.description.content_hash {
            return Err(TxError::OutOfScope {
                reason: format!(
                    "the bytes delivered are not the published extract of `{}` (version {})",
                    p.dataset, ds.description.version
                ),
            });
        }
        let id = AccessId(derive_unguessable_id(
            b"delivery",
            key,
            nonce,
            &p.content_hash.0,
        ));
        let k = keys::delivery(&c.requester_member, id);
        if self.get::<DeliveryRecord>(&k)?.is_some() {
            return Err(TxError::AlreadyExists {
                what: "delivery",
                id: id.to_string(),
            });
        }
        let rec = DeliveryRecord {
            id,
            dataset: p.dataset.clone(),
            version: ds.description.version,
            holder,
            recipient: c.requester_member.clone(),
            contract: c.id,
            content_hash: p.content_hash,
            bytes: p.bytes,
            height: ctx.height,
            time_ms: ctx.time_ms,
            destroyed_height: None,
        };
        self.put(&k, &rec)?;
        Ok(Receipt::created("deliver_release", Created::Access(id)))
    }

    /// The recipient's attestation for a delivered release (see `access` for record copies).
    /// `Ok(None)`: `member` received no delivery of this id.
    pub(super) fn attest_delivery_destroyed(
        &mut self,
        member: &MemberId,
        id: AccessId,
        ctx: &BlockContext,
    ) -> Result<Option<Receipt>, TxError> {
        let k = keys::delivery(member, id);
        let Some(mut d) = self.get::<DeliveryRecord>(&k)? else {
            return Ok(None);
        };
        if d.destroyed_height.is_some() {
            return Err(forbidden(format!("destruction of {id} already attested")));
        }
        d.destroyed_height = Some(ctx.height);
        self.put(&k, &d)?;
        Ok(Some(Receipt::new("attest_destruction")))
    }

    /// Refuses a new request of `member` while one of its delivered copies is overdue for a
    /// destruction attestation.
    pub(super) fn check_no_overdue(&self, member: &MemberId, now_ms: u64) -> Result<(), TxError> {
        let overdue = self.overdue_deliveries(member, now_ms)?;
        match overdue.first() {
            None => Ok(()),
            Some((first, due_ms)) => Err(forbidden(format!(
                "`{member}` has {} delivered cop{} whose destruction is overdue (access {}, due at {due_ms} ms)",
                overdue.len(),
                if overdue.len() == 1 { "y" } else { "ies" },
                first.id
            ))),
        }
    }
}

impl State {
    /// Every delivery of a release, to anyone.
    pub fn deliveries(&self) -> Result<Vec<DeliveryRecord>, TxError> {
        self.scan(&[tag::DELIVERY])
    }

    /// The deliveries to `recipient`.
    pub fn deliveries_to(&self, recipient: &MemberId) -> Result<Vec<DeliveryRecord>, TxError> {
        self.scan(&keys::deliveries_to(recipient))
    }

    /// When the destruction of `d` is due: its contract's end plus the policy's period (`None`
    /// once attested). A contract that is gone counts as ended at the delivery.
    pub fn destruction_due_ms(&self, d: &DeliveryRecord) -> Result<Option<u64>, TxError> {
        if d.destroyed_height.is_some() {
            return Ok(None);
        }
        let period = self.policy()?.open_pool.destruction_ms;
        let end = self.contract(d.contract)?.map_or(d.time_ms, |c| c.end_ms());
        Ok(Some(end.saturating_add(period)))
    }

    /// `recipient`'s deliveries whose destruction is overdue at `now_ms`, with when each was due.
    pub fn overdue_deliveries(
        &self,
        recipient: &MemberId,
        now_ms: u64,
    ) -> Result<Vec<(DeliveryRecord, u64)>, TxError> {
        let mut out = Vec::new();
        for d in self.deliveries_to(recipient)? {
            if let Some(due) = self.destruction_due_ms(&d)?
                && due < now_ms
            {
                out.push((d, due));
            }
        }
        Ok(out)
    }
}

/// The release's figures against the open-pool standard, and against each other.
fn check_figures(op: &OpenPoolPolicy, r: &ReleaseFigures) -> Result<(), TxError> {
    let below = |what: &str, have: String, need: String| {
        forbidden(format!(
            "the release's {what} is {have}; the consortium's open pool requires {need}"
        ))
    };
    if r.k < op.min_k.max(2) {
        return Err(below(
            "k",
            r.k.to_string(),
            format!("k ≥ {}", op.min_k.max(2)),
        ));
    }
    if r.l < op.min_l {
        return Err(below("l", r.l.to_string(), format!("l ≥ {}", op.min_l)));
    }
    if r.prosecutor_max_ppm > op.max_risk_ppm {
        return Err(below(
            "highest re-identification risk",
            format!("{} ppm", r.prosecutor_max_ppm),
            format!("at most {} ppm", op.max_risk_ppm),
        ));
    }
    let shares = [
        r.prosecutor_max_ppm,
        r.prosecutor_avg_ppm,
        r.journalist_max_ppm,
        r.marketer_ppm,
        r.at_risk_ppm,
    ];
    if shares.iter().any(|s| u64::from(*s) > PPM) {
        return Err(invalid("release", "a risk or share is above 1,000,000 ppm"));
    }
    // The highest prosecutor risk of a k-anonymous extract is 1/k (its smallest class); figures
    // claiming a lower risk, or an average above the highest, contradict themselves.
    let k = u64::from(r.k);
    let expected = PPM / k;
    if u64::from(r.prosecutor_max_ppm).abs_diff(expected) > 1 {
        return Err(invalid(
            "release",
            format!(
                "a highest prosecutor risk of {} ppm contradicts k = {} ({expected} ppm)",
                r.prosecutor_max_ppm, r.k
            ),
        ));
    }
    if r.prosecutor_avg_ppm > r.prosecutor_max_ppm || r.journalist_max_ppm > r.prosecutor_max_ppm {
        return Err(invalid(
            "release",
            "an average or journalist risk above the highest prosecutor risk",
        ));
    }
    if r.l > r.k {
        return Err(invalid("release", "l cannot exceed k"));
    }
    if r.persons < k {
        return Err(invalid("release", "fewer persons than k"));
    }
    Ok(())
}
