//! medspace-compute: the compute worker of a data-holding node.
//!
//! For each job addressed to this institution, the worker reads the ledger *as of the job's
//! block* and decides whether and on whom it may compute ([`plan`]): the contract must be active
//! and unexpired when the job was submitted, this institution must own data in its scope, the
//! job must stay within the contract's approved fields, and only patients whose consent allows
//! the contract's purpose (and study, and level — L4 needs explicit opt-in) at that height are
//! in the cohort. Patients are linked to the ledger's pseudonyms by the hospital ([`links`]).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod federated;
pub mod links;
pub mod local;
pub mod plan;

pub use links::Links;
pub use plan::{JobPlan, PlanError, plan_job};
