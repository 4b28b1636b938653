//! medspace-compute: a data-holding node's data plane over its vault.
//!
//! For each job addressed to this institution, the worker reads the ledger *as of the job's
//! block* and decides whether and on whom it may compute ([`plan`]): the contract must be active
//! and unexpired when the job was submitted, this institution must own data in its scope, the
//! job must stay within the contract's approved fields, and only patients whose consent allows
//! the contract's purpose (and study, and level — L4 needs explicit opt-in) at that height are
//! in the cohort. Patients are linked to the ledger's pseudonyms by the hospital ([`links`]).
//! On that cohort the site runs the job's compiled query in its vault ([`local`]) and adds its
//! noise ([`federated`]); the node's compute service masks that vector in the job's
//! aggregation round (`medspace-worker`). [`node`] plugs the vault into the node's services
//! (the compute service's data plane, record sharing's source). [`bench`] times the data plane
//! with secure aggregation against the same query over the pooled data
//! (`medspace bench federated`); [`bench_glm`] times a federated logistic regression (IRLS over
//! secure aggregation) against the pooled fit (`medspace bench glm`); [`bench_state`] builds a
//! registry-scale ledger state and measures its size, memory, checkpoint restart and the plan of
//! a job over a million linked patients on it (`medspace bench state`).

pub mod bench;
pub mod bench_glm;
pub mod bench_state;
pub mod federated;
pub mod links;
pub mod local;
pub mod node;
pub mod plan;
pub mod publish;
pub mod release;
pub mod vertical;

pub use links::Links;
pub use plan::{JobPlan, PlanError, plan_job};
