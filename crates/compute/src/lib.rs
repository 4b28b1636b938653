//! medspace-compute: the compute worker of a data-holding node.
//!
//! For each job addressed to this institution, the worker reads the ledger *as of the job's
//! block* and decides whether and on whom it may compute ([`plan`]): the contract must be active
//! and unexpired when the job was submitted, this institution must own data in its scope, the
//! job must stay within the contract's approved fields, and only patients whose consent allows
//! the contract's purpose (and study, and level — L4 needs explicit opt-in) at that height are
//! in the cohort. Patients are linked to the ledger's pseudonyms by the hospital ([`links`]).
//! On that cohort the site runs the job's compiled query in its vault ([`local`]), adds its
//! noise and masks the result; the aggregator sums the masked shares and releases the
//! protected cells ([`federated`]). [`bench`] times that data plane against the same query over
//! the pooled data (`medspace bench federated`).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bench;
pub mod federated;
pub mod links;
pub mod local;
pub mod plan;

pub use links::Links;
pub use plan::{JobPlan, PlanError, plan_job};
