//! Fault reporting: simplex's evidence that a validator signed two contradicting votes is checked
//! (both signatures verified), logged, counted and kept in a bounded log the [`super::Handle`]
//! reads. Simplex itself blocks the offending peer through the configured p2p blocker.

use super::config::{PublicKey, Scheme};
use bytes::Bytes;
use commonware_actor::Feedback;
use commonware_codec::Encode as _;
use commonware_consensus::{
    Epochable as _, Reporter, Viewable as _,
    simplex::types::{Activity, Attributable as _},
};
use commonware_cryptography::{certificate::Scheme as _, sha256::Digest};
use commonware_parallel::Sequential;
use commonware_utils::sync::Mutex;
use rand_core::CryptoRng;
use std::{collections::VecDeque, sync::Arc};
use tracing::{debug, warn};

/// How many proven faults a node keeps (the oldest are dropped first; the count keeps growing).
pub const MAX_RECORDED_FAULTS: usize = 1024;

/// What a validator provably did wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Two notarize votes for different proposals in the same view.
    ConflictingNotarize,
    /// Two finalize votes for different proposals in the same view.
    ConflictingFinalize,
    /// A nullify vote and a finalize vote in the same view.
    NullifyFinalize,
}

impl FaultKind {
    /// Stable lowercase name (logs, metrics).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConflictingNotarize => "conflicting_notarize",
            Self::ConflictingFinalize => "conflicting_finalize",
            Self::NullifyFinalize => "nullify_finalize",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A consensus fault proven by two signed votes of the same validator that contradict each
/// other (both signatures verified by this node before recording).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// What the validator did.
    pub kind: FaultKind,
    /// The offending validator.
    pub validator: PublicKey,
    /// Consensus epoch of the conflicting votes.
    pub epoch: u64,
    /// Consensus view of the conflicting votes.
    pub view: u64,
    /// The evidence: simplex's encoded `Activity` holding both votes, verifiable by anyone who
    /// knows the validator set and the chain id.
    pub evidence: Bytes,
}

/// Proven faults seen by this node: the most recent ones and a running total.
#[derive(Default)]
pub(super) struct FaultLog {
    recent: VecDeque<Fault>,
    total: u64,
}

impl FaultLog {
    /// The recorded faults, oldest first.
    pub(super) fn recent(&self) -> Vec<Fault> {
        self.recent.iter().cloned().collect()
    }

    /// Number of distinct faults recorded, including those no longer kept.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// Records a fault unless the same (kind, validator, round) is already recorded. Returns
    /// whether it was new.
    fn record(&mut self, fault: Fault) -> bool {
        let seen = self.recent.iter().any(|f| {
            f.kind == fault.kind
                && f.validator == fault.validator
                && f.epoch == fault.epoch
                && f.view == fault.view
        });
        if seen {
            return false;
        }
        if self.recent.len() >= MAX_RECORDED_FAULTS {
            self.recent.pop_front();
        }
        self.recent.push_back(fault);
        self.total = self.total.saturating_add(1);
        true
    }
}

/// Simplex reporter: forwards every activity to marshal (through its `Inline` wrapper) and records the
/// fault evidence simplex produces, after verifying both of its signatures.
pub(super) struct Accountable<R, E> {
    inner: R,
    rng: Arc<Mutex<E>>,
    scheme: Scheme,
    faults: Arc<Mutex<FaultLog>>,
}

impl<R: Clone, E> Clone for Accountable<R, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            rng: self.rng.clone(),
            scheme: self.scheme.clone(),
            faults: self.faults.clone(),
        }
    }
}

impl<R, E> Accountable<R, E> {
    /// A reporter forwarding to `inner` that records verified faults in `faults`; `rng` is
    /// used to verify the evidence's signatures.
    pub(super) fn new(inner: R, rng: E, scheme: Scheme, faults: Arc<Mutex<FaultLog>>) -> Self {
        Self {
            inner,
            rng: Arc::new(Mutex::new(rng)),
            scheme,
            faults,
        }
    }
}

impl<R, E> Accountable<R, E>
where
    E: CryptoRng,
{
    fn record(&mut self, activity: &Activity<Scheme, Digest>) {
        let (kind, signer) = match activity {
            Activity::ConflictingNotarize(c) => (FaultKind::ConflictingNotarize, c.signer()),
            Activity::ConflictingFinalize(c) => (FaultKind::ConflictingFinalize, c.signer()),
            Activity::NullifyFinalize(c) => (FaultKind::NullifyFinalize, c.signer()),
            _ => return,
        };
        let (epoch, view) = (activity.epoch().get(), activity.view().get());
        // Simplex reports conflicts before it verifies vote signatures: only keep evidence that
        // proves the fault to a third party. (Simplex blocks the sender either way.)
        if !activity.verify(&mut *self.rng.lock(), &self.scheme, &Sequential) {
            debug!(%kind, epoch, view, "chain.consensus.fault: evidence does not verify; ignored");
            return;
        }
        let Some(validator) = self.scheme.participants().get(usize::from(signer)).cloned() else {
            debug!(%kind, %signer, "chain.consensus.fault: signer is not a validator; ignored");
            return;
        };
        let fault = Fault {
            kind,
            validator: validator.clone(),
            epoch,
            view,
            evidence: Bytes::from(activity.encode().to_vec()),
        };
        if self.faults.lock().record(fault) {
            warn!(
                %kind,
                validator = %validator,
                epoch,
                view,
                "chain.consensus.fault: validator signed conflicting votes"
            );
        }
    }
}

impl<R, E> Reporter for Accountable<R, E>
where
    R: Reporter<Activity = Activity<Scheme, Digest>>,
    E: CryptoRng + Send + 'static,
{
    type Activity = Activity<Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        self.record(&activity);
        self.inner.report(activity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::{Signer as _, ed25519};

    fn fault(kind: FaultKind, seed: u64, view: u64) -> Fault {
        Fault {
            kind,
            validator: ed25519::PrivateKey::from_seed(seed).public_key(),
            epoch: 0,
            view,
            evidence: Bytes::new(),
        }
    }

    #[test]
    fn fault_log_counts_each_kind_validator_and_round_once() {
        let mut log = FaultLog::default();
        assert!(log.record(fault(FaultKind::ConflictingNotarize, 3, 5)));
        assert!(!log.record(fault(FaultKind::ConflictingNotarize, 3, 5)));
        assert!(log.record(fault(FaultKind::ConflictingFinalize, 3, 5)));
        assert!(log.record(fault(FaultKind::ConflictingNotarize, 2, 5)));
        assert!(log.record(fault(FaultKind::ConflictingNotarize, 3, 6)));
        assert_eq!(log.total, 4);
        assert_eq!(log.recent.len(), 4);
    }

    #[test]
    fn fault_log_keeps_the_most_recent_and_the_full_count() {
        let mut log = FaultLog::default();
        let extra = 10u64;
        for view in 0..MAX_RECORDED_FAULTS as u64 + extra {
            assert!(log.record(fault(FaultKind::NullifyFinalize, 1, view)));
        }
        assert_eq!(log.total, MAX_RECORDED_FAULTS as u64 + extra);
        assert_eq!(log.recent.len(), MAX_RECORDED_FAULTS);
        assert_eq!(log.recent.front().map(|f| f.view), Some(extra));
    }
}
