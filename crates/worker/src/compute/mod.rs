//! The compute service of a data holder's node: it follows the committed jobs of its contracts,
//! has its [`DataPlane`] compute the site's noised vector once per job, takes part in each
//! job's aggregation round as a site ([`crate::round`]), and, for the contracts whose first data
//! holder it is, runs the round as aggregator and posts the result.
//!
//! Shaped like a commonware actor: [`Config`] here, the [`Mailbox`] and its messages in
//! [`ingress`], the loop in [`actor`], the aggregator's task in [`aggregate`]. The actor owns
//! the site's per-job state, so the round's once-only rules (one dealing, one `U1`) are decided
//! in one place, one message at a time. It runs on any commonware runtime: the node's tokio
//! runtime, or the deterministic one in the simulations.

pub mod actor;
pub mod aggregate;
pub mod health;
pub mod ingress;
pub mod model;
pub mod once;
pub mod vertical;

pub use actor::Actor;
pub use ingress::{Mailbox, Message};

use crate::store::Store;
use crate::submit::Submitter;
use medspace_state::State;
use medspace_types::{JobId, Keypair, MemberId, PatientId};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use x25519_dalek::StaticSecret;

/// A site's noised local vector for a job, in the query's layout, and its cohort size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteVector {
    /// Per cell of the layout: count (and sum for a mean), with the site's noise.
    pub values: Vec<i64>,
    /// What the site contributed, from its released (noised) counts; the weight of its share
    /// of the job's value. Never the exact cohort size.
    pub cohort: u64,
}

/// A site's rows of a model's job, in memory only (never written by the worker): the design
/// matrix with its intercept column first, the outcome and, for a Poisson model, the offset.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelRows {
    /// Columns of the design (intercept and covariates).
    pub p: usize,
    /// `n × p`, row-major.
    pub x: Vec<f64>,
    /// The outcome.
    pub y: Vec<f64>,
    /// `log(person-days)` per row, for a Poisson model.
    pub offset: Option<Vec<f64>>,
    /// What the site attests it contributed: its rows, coarsened (see
    /// [`model::coarse_count`]).
    pub cohort: u64,
}

/// A site's input to a vertical study ([`vertical`]), in memory only (never written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinInput {
    /// The hospital: its consenting cohort's pseudonyms and the study cell of each.
    Clinical {
        /// The patients, by ledger pseudonym.
        patients: Vec<PatientId>,
        /// Their cells, in the same order.
        cells: Vec<u32>,
    },
    /// The insurer: its consenting members' pseudonyms and their values (in the order of the
    /// study's measures).
    Claims {
        /// The members, by ledger pseudonym.
        patients: Vec<PatientId>,
        /// Their values, in the same order.
        values: Vec<Vec<u64>>,
    },
}

/// Why a site does not take part in a job (the contract does not allow it here, no consenting
/// patient, the computation failed…): a lowercase reason naming no patient.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlaneRefusal(pub String);

/// Where a site's vector comes from: the hospital's vault (`medspace-compute`) in a node, a
/// scripted one in the simulations.
pub trait DataPlane: Send + Sync + 'static {
    /// Plans `job` from the ledger as of its block (contract, scope, consent) for `member`,
    /// runs its query on the consenting patients but those in `leave_out` (counted at an
    /// earlier site, see [`once`]) and adds this site's noise. Blocking.
    fn site_vector(
        &self,
        state: &State,
        job: JobId,
        member: &MemberId,
        leave_out: &BTreeSet<PatientId>,
    ) -> Result<SiteVector, PlaneRefusal>;

    /// Plans a model's `job` as [`DataPlane::site_vector`] plans a query and returns the
    /// consenting patients' rows of its variables (but `leave_out`'s). Blocking.
    fn model_rows(
        &self,
        _state: &State,
        _job: JobId,
        _member: &MemberId,
        _leave_out: &BTreeSet<PatientId>,
    ) -> Result<ModelRows, PlaneRefusal> {
        Err(PlaneRefusal("this data plane fits no models".into()))
    }

    /// This site's input to a vertical study's `job`, planned as [`DataPlane::site_vector`]
    /// plans a query: the clinical side's cohort with cells, or the claims side's members with
    /// values, by the member's kind. Blocking.
    fn join_input(
        &self,
        _state: &State,
        _job: JobId,
        _member: &MemberId,
    ) -> Result<JoinInput, PlaneRefusal> {
        Err(PlaneRefusal(
            "this data plane runs no vertical study".into(),
        ))
    }

    /// The ledger pseudonyms of the patients who may count in `job` here (linked at this
    /// site, consenting at the job's height), for the count-once rule ([`once`]). `None`: this
    /// plane knows no pseudonyms, and its site takes part in no intersection. Blocking.
    fn job_patients(
        &self,
        _state: &State,
        _job: JobId,
        _member: &MemberId,
    ) -> Result<Option<Vec<PatientId>>, PlaneRefusal> {
        Ok(None)
    }
}

/// What the compute service is and holds.
pub struct Config<L, P> {
    /// The member this node computes for.
    pub member: MemberId,
    /// Its node key (signs dealings, masked vectors, reveals and its transactions).
    pub key: Keypair,
    /// Its X25519 agreement secret (pairwise masks and share encryption).
    pub agreement: StaticSecret,
    /// The node's view of the ledger.
    pub ledger: Arc<L>,
    /// The site's data plane.
    pub plane: Arc<P>,
    /// Per-job files.
    pub store: Store,
    /// The node key's transactions.
    pub submitter: Arc<Submitter<L>>,
    /// How long the aggregator waits for each step's answers before treating a site as dropped.
    pub step_timeout: Duration,
    /// Capacity of the mailbox.
    pub mailbox_size: usize,
}
