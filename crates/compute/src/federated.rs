//! One site's data plane of a federated job: the job's query compiled to SQL locally, run by
//! DataFusion over the site's consenting patients, laid out in the query's fixed vector and
//! noised with the site's own differential-privacy noise. That vector is what the compute
//! service's aggregation round masks ([`medspace_worker::round`]); only the masked vector ever
//! leaves the site. [`crate::node::VaultPlane`] is this, planned from the ledger, as the node's
//! [`medspace_worker::compute::DataPlane`].

use crate::links::Links;
use crate::local::{self, CONSENTED};
use crate::plan::{PlanError, plan_job};
use medspace_privacy::Mechanism;
use medspace_privacy::query::{Aggregate, GroupField, QuerySpec};
use medspace_privacy::release::{Protection, values_per_group};
use medspace_state::State;
use medspace_types::{JobId, MemberId};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Errors of a site's part of a federated job (nothing leaves a site that fails).
#[derive(Debug, thiserror::Error)]
pub enum FederatedError {
    /// The ledger does not allow the job here.
    #[error("plan: {0}")]
    Plan(#[from] PlanError),
    /// The job's computation is not a valid query specification.
    #[error("query specification: {0}")]
    Query(#[from] medspace_privacy::QueryError),
    /// Local execution failed.
    #[error("local execution: {0}")]
    Local(#[from] local::LocalError),
    /// Sampling noise failed.
    #[error("differential privacy: {0}")]
    Dp(#[from] medspace_privacy::DpError),
    /// The ledger could not be read.
    #[error("ledger: {0}")]
    Ledger(#[from] medspace_state::TxError),
    /// The local result does not fit the agreed layout.
    #[error("result layout: {0}")]
    Layout(String),
}

/// Parses a job's computation as a query specification.
pub fn job_spec(state: &State, job: JobId) -> Result<QuerySpec, FederatedError> {
    let rec = state
        .job(job)?
        .ok_or_else(|| PlanError::UnknownJob(job.to_string()))?;
    let json = std::str::from_utf8(rec.computation.as_bytes())
        .map_err(|_| FederatedError::Layout("computation is not utf-8 json".into()))?;
    Ok(medspace_privacy::query::parse(json)?.0)
}

/// The noise mechanisms for a query's two kinds of cells, splitting the job's epsilon.
fn mechanisms(spec: &QuerySpec, epsilon_micro: u64) -> (Mechanism, Option<Mechanism>) {
    match &spec.aggregate {
        // Each person is in exactly one cell: the histogram's L1 sensitivity is 1.
        Aggregate::Count => (
            Mechanism::Laplace {
                epsilon_micro: epsilon_micro.max(1),
                sensitivity: 1,
            },
            None,
        ),
        // One person adds 1 to their group's entered count and 1 to one bin's events or
        // censored: L1 sensitivity 2.
        Aggregate::Survival(_) => (
            Mechanism::Laplace {
                epsilon_micro: epsilon_micro.max(1),
                sensitivity: 2,
            },
            None,
        ),
        // A person is in one cell of each pair's table: L1 sensitivity is the number of pairs.
        Aggregate::DrugSafety(d) => (
            Mechanism::Laplace {
                epsilon_micro: epsilon_micro.max(1),
                sensitivity: d.pair_indices().len().max(1) as u64,
            },
            None,
        ),
        // A person is counted at most once per syndrome of a window, in one region and band:
        // L1 sensitivity is the number of syndromes.
        Aggregate::Surveillance(s) => (
            Mechanism::Laplace {
                epsilon_micro: epsilon_micro.max(1),
                sensitivity: s.syndromes.len().max(1) as u64,
            },
            None,
        ),
        // A model's statistics are noised per step (`medspace_privacy::glm::noise_stats`); a
        // vertical study's and an overlap's values by their own protocols (the worker's
        // `vertical` and `once`): none of them computes a vector here.
        Aggregate::Model(_) | Aggregate::Claims(_) | Aggregate::Overlap(_) => (
            Mechanism::Laplace {
                epsilon_micro: epsilon_micro.max(1),
                sensitivity: 1,
            },
            None,
        ),
        Aggregate::Mean(m) => {
            let half = (epsilon_micro / 2).max(1);
            let bound = m.lower.abs_nanos().max(m.upper.abs_nanos());
            // One person changes `sum_fixed` by at most the clamping bound, in thousandths
            // (rounded up from billionths).
            let sens = bound.div_ceil(1_000_000).max(1);
            (
                Mechanism::Laplace {
                    epsilon_micro: half,
                    sensitivity: 1,
                },
                Some(Mechanism::Laplace {
                    epsilon_micro: half,
                    sensitivity: sens,
                }),
            )
        }
    }
}

/// What a site computes once the ledger has decided that the job runs here and on whom.
#[derive(Clone, Copy, Debug)]
pub struct SiteJob<'a> {
    /// The job's query specification.
    pub spec: &'a QuerySpec,
    /// The epsilon the job reserved, in micro-epsilon (calibrates the noise).
    pub epsilon_micro: u64,
    /// The protection applied.
    pub protection: Protection,
    /// The surveillance window the ledger scheduled for the job (`None` for other
    /// computations).
    pub window: Option<u32>,
}

/// Wall time of each step of [`site_vector`], for the operator's log and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteTimings {
    /// Opening the vault, running the compiled query on the cohort, laying the result out.
    pub local: Duration,
    /// Adding the noise to every cell (nothing without protection).
    pub noise: Duration,
}

/// The data plane of one site for a planned job: runs the job's compiled query over `cohort`
/// (registered as [`CONSENTED`]) in the vault of `node_dir` (keys `key`), lays the result out in the spec's
/// fixed vector ([`local_vector`]) and adds the site's noise. Returns the noised vector and the
/// time of each step.
pub fn site_vector<R: rand_core::CryptoRng>(
    vault: SiteVault<'_>,
    cohort: &BTreeSet<i64>,
    job: &SiteJob<'_>,
    rng: &mut R,
) -> Result<(Vec<i64>, SiteTimings), FederatedError> {
    let spec = job.spec;
    let t = Instant::now();
    let sql = medspace_privacy::query::compile_sql_at(spec, CONSENTED, job.window)?;
    let rows = local::run_at(vault, cohort, &sql)?;
    let mut vector = rows_vector(spec, &rows)?;
    let local = t.elapsed();
    let t = Instant::now();
    // A survival curve without its `dp` option releases exact counts (only their sum leaves
    // the sites; small risk sets are suppressed at release).
    let noised = match &spec.aggregate {
        Aggregate::Survival(s) => s.dp,
        Aggregate::DrugSafety(d) => d.dp,
        Aggregate::Surveillance(s) => s.dp,
        _ => true,
    };
    if let (Protection::Full { .. }, true) = (job.protection, noised) {
        let per = values_per_group(spec);
        let (count_mech, sum_mech) = mechanisms(spec, job.epsilon_micro);
        for (idx, cell) in vector.iter_mut().enumerate() {
            let mech = if idx % per == 0 {
                &count_mech
            } else {
                sum_mech.as_ref().unwrap_or(&count_mech)
            };
            *cell += mech.noise(rng)?;
        }
    }
    Ok((
        vector,
        SiteTimings {
            local,
            noise: t.elapsed(),
        },
    ))
}

/// The rows of a query's compiled SQL laid out in its vector (before any noise), whatever its
/// aggregate: what a site releases and what a pooled run computes alike.
pub fn rows_vector(spec: &QuerySpec, rows: &[local::Row]) -> Result<Vec<i64>, FederatedError> {
    match &spec.aggregate {
        Aggregate::Survival(s) => survival_vector(spec, s, rows),
        Aggregate::DrugSafety(d) => safety_vector(d, rows),
        Aggregate::Surveillance(s) => surveillance_vector(s, rows),
        Aggregate::Model(_) => Err(FederatedError::Layout(
            "a model's job has no single vector (its rows are read by model_rows)".into(),
        )),
        Aggregate::Claims(_) | Aggregate::Overlap(_) => Err(FederatedError::Layout(
            "a vertical study or an overlap computes in its private set intersection".into(),
        )),
        Aggregate::Count | Aggregate::Mean(_) => Ok(local_vector(spec, rows)),
    }
}

/// The position in `layout` of an output row's group (its `group_by` key columns); `None` for
/// a group outside the layout (e.g. an unknown sex), which is never released.
fn row_group(
    spec: &QuerySpec,
    layout: &[medspace_privacy::query::GroupKey],
    row: &local::Row,
) -> Option<usize> {
    let (mut sex, mut band) = (None, None);
    for (field, value) in spec.group_by.iter().zip(row.key.iter()) {
        match field {
            GroupField::Sex => sex = Some(value.as_str()),
            GroupField::AgeBand => band = Some(value.as_str()),
        }
    }
    medspace_privacy::query::group_index(layout, sex, band)
}

/// A query's output rows laid out in the fixed vector of the spec's groups
/// ([`medspace_privacy::query::groups`]): per group `n`, then `sum_fixed` for a mean; zeros for
/// groups without a row. Rows of a group outside the layout (e.g. an unknown sex) are left out:
/// they are never released.
pub fn local_vector(spec: &QuerySpec, rows: &[local::Row]) -> Vec<i64> {
    let layout = medspace_privacy::query::groups(spec);
    let per = values_per_group(spec);
    let mut vector = vec![0i64; layout.len() * per];
    for row in rows {
        let Some(i) = row_group(spec, &layout, row) else {
            continue;
        };
        for (j, v) in row.values.iter().take(per).enumerate() {
            if let Some(cell) = vector.get_mut(i * per + j) {
                *cell += *v;
            }
        }
    }
    vector
}

/// A survival query's rows (group columns, `days`, `event`) as the site's counts per group and
/// time bin ([`medspace_privacy::survival::site_vector`]); times at or past the horizon are
/// censored there.
pub fn survival_vector(
    spec: &QuerySpec,
    s: &medspace_privacy::query::SurvivalSpec,
    rows: &[local::Row],
) -> Result<Vec<i64>, FederatedError> {
    let layout = medspace_privacy::query::groups(spec);
    let bins = s.bins();
    let end = u32::try_from(bins)
        .unwrap_or(u32::MAX)
        .saturating_mul(s.bin_days);
    let mut times = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(g) = row_group(spec, &layout, row) else {
            continue;
        };
        let (days, event) = match row.values.as_slice() {
            [days, event] => (*days, *event == 1),
            _ => {
                return Err(FederatedError::Layout(
                    "survival rows need days and event".into(),
                ));
            }
        };
        let days = u32::try_from(days.max(0)).unwrap_or(u32::MAX);
        times.push(if days >= s.horizon_days {
            (g, end, false)
        } else {
            (g, days, event)
        });
    }
    medspace_privacy::survival::site_vector(layout.len(), bins, s.bin_days, &times)
        .map_err(|e| FederatedError::Layout(e.to_string()))
}

/// A drug-safety query's tallies (`kind, d, e, v`) as the site's 2×2 tables, laid out per pair
/// ([`medspace_privacy::pharmacovigilance::site_vector_from_tables`]).
pub fn safety_vector(
    d: &medspace_privacy::query::DrugSafetySpec,
    rows: &[local::Row],
) -> Result<Vec<i64>, FederatedError> {
    let tallies: Vec<[i64; 4]> = rows
        .iter()
        .map(|r| match r.values.as_slice() {
            [kind, drug, event, v] => Ok([*kind, *drug, *event, *v]),
            _ => Err(FederatedError::Layout(
                "drug-safety rows need kind, d, e, v".into(),
            )),
        })
        .collect::<Result<_, _>>()?;
    let tables = medspace_privacy::query::health::site_safety_tables(d, &tallies)
        .map_err(|e| FederatedError::Layout(e.to_string()))?;
    medspace_privacy::pharmacovigilance::site_vector_from_tables(&tables)
        .map_err(|e| FederatedError::Layout(e.to_string()))
}

/// One surveillance window's rows (`zip`; `s, age, n`) as the site's vector.
pub fn surveillance_vector(
    s: &medspace_privacy::query::SurveillanceSpec,
    rows: &[local::Row],
) -> Result<Vec<i64>, FederatedError> {
    let cells: Vec<(String, [i64; 3])> = rows
        .iter()
        .map(|r| match (r.key.as_slice(), r.values.as_slice()) {
            ([zip], [syn, age, n]) => Ok((zip.clone(), [*syn, *age, *n])),
            _ => Err(FederatedError::Layout(
                "surveillance rows need zip, s, age, n".into(),
            )),
        })
        .collect::<Result<_, _>>()?;
    Ok(medspace_privacy::query::health::site_surveillance_vector(
        s, &cells,
    ))
}

/// A model's rows at one site: its variables for the consenting cohort (`cohort`), in memory,
/// with the intercept column first and, for a Poisson model, `log(person-days)` as offset.
/// Refused when the site has fewer than `k` complete rows, or not more rows than coefficients.
pub fn model_rows(
    vault: SiteVault<'_>,
    cohort: &BTreeSet<i64>,
    spec: &QuerySpec,
    k: u32,
) -> Result<medspace_worker::compute::ModelRows, FederatedError> {
    let Aggregate::Model(m) = &spec.aggregate else {
        return Err(FederatedError::Layout("not a model".into()));
    };
    let sql = medspace_privacy::query::compile_sql(spec, CONSENTED)?;
    let columns = local::run_f64_at(vault, cohort, &sql)?;
    let column = |name: &str| -> Result<&[f64], FederatedError> {
        columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .ok_or_else(|| {
                FederatedError::Layout(format!("the model's query has no column {name}"))
            })
    };
    let y = column("y")?;
    let xs: Vec<&[f64]> = (0..m.covariates.len())
        .map(|i| column(&format!("x{i}")))
        .collect::<Result<_, _>>()?;
    let days = match m.family {
        medspace_privacy::query::Family::Poisson => Some(column("days")?),
        _ => None,
    };
    let p = m.covariates.len() + 1;
    let mut out = medspace_worker::compute::ModelRows {
        p,
        x: Vec::with_capacity(y.len() * p),
        y: Vec::with_capacity(y.len()),
        offset: days.map(|_| Vec::with_capacity(y.len())),
        cohort: 0,
    };
    for (r, yv) in y.iter().enumerate() {
        if let Some(d) = days {
            match d.get(r) {
                Some(d) if *d > 0.0 => {
                    if let Some(o) = out.offset.as_mut() {
                        o.push(d.ln());
                    }
                }
                // No person-time in the window (died on its first day): not at risk.
                _ => continue,
            }
        }
        out.y.push(*yv);
        out.x.push(1.0);
        for x in &xs {
            out.x.push(x.get(r).copied().unwrap_or(0.0));
        }
    }
    let n = out.y.len();
    if n < k as usize || n <= p {
        return Err(FederatedError::Layout(format!(
            "too few complete rows here for this model (need at least {} and more than {p})",
            k
        )));
    }
    out.cohort = medspace_worker::compute::model::coarse_count(n);
    Ok(out)
}

/// A job's specification and its plan at one site: the ledger allows it here, on these
/// consenting patients, reading only fields its contract covers.
pub(crate) fn plan_site(
    state: &State,
    job: JobId,
    member: &MemberId,
    links: &Links,
) -> Result<(QuerySpec, crate::plan::JobPlan), FederatedError> {
    let spec = job_spec(state, job)?;
    // A vertical study's sides read different tables: each is checked for its own.
    let reads: Vec<(String, String)> = crate::plan::side_reads(state, &spec, member)?
        .iter()
        .map(|(t, f)| (t.to_string(), f.to_string()))
        .collect();
    let plan = plan_job(state, job, member, links, &reads)?;
    Ok((spec, plan))
}

/// The ledger pseudonyms of the patients who may count in `job` at this site (linked here and
/// consenting at the job's height, as its plan says), for the count-once rule
/// ([`medspace_worker::compute::once`]).
pub fn job_patients(
    state: &State,
    job: JobId,
    member: &MemberId,
    links: &Links,
) -> Result<Vec<medspace_types::PatientId>, FederatedError> {
    let (_, plan) = plan_site(state, job, member, links)?;
    Ok(plan
        .cohort
        .iter()
        .filter_map(|person| links.patient_of(*person).copied())
        .collect())
}

/// The ledger pseudonyms of an overlap job's cohort at this site: its consenting patients
/// the query's cohort selects (the persons whose intersection sizes the job counts).
pub fn overlap_patients(
    state: &State,
    job: JobId,
    member: &MemberId,
    vault: SiteVault<'_>,
    links: &Links,
) -> Result<Vec<medspace_types::PatientId>, FederatedError> {
    let (spec, plan) = plan_site(state, job, member, links)?;
    let sql = medspace_privacy::query::compile_sql(&spec, CONSENTED)?;
    let rows = local::run_at(vault, &plan.cohort, &sql)?;
    Ok(rows
        .iter()
        .filter_map(|r| r.values.first())
        .filter_map(|person| links.patient_of(*person).copied())
        .collect())
}

/// A model's job at one site, planned from the ledger like [`run_site`]: its rows.
pub fn run_model_site(
    state: &State,
    job: JobId,
    member: &MemberId,
    vault: SiteVault<'_>,
    links: &Links,
) -> Result<medspace_worker::compute::ModelRows, FederatedError> {
    let (spec, plan) = plan_site(state, job, member, links)?;
    let k = state.policy()?.min_cell_k;
    model_rows(vault, &plan.cohort, &spec, k)
}

/// What a site says it contributed to a job (the weight of its share of the job's value): the
/// total of its vector's count cells, at least zero. It is computed from the very vector the
/// site releases (noised when protected), so it costs no privacy of its own and no exact
/// per-site count ever reaches the ledger or the result.
pub fn contributed_records(spec: &QuerySpec, vector: &[i64]) -> u64 {
    let per = match &spec.aggregate {
        // The persons in the first pair's table (everyone with a record but its prevalent
        // users); every window cell of a surveillance count.
        Aggregate::DrugSafety(_) => {
            let total: i64 = vector.iter().take(4).map(|v| (*v).max(0)).sum();
            return u64::try_from(total).unwrap_or(0);
        }
        Aggregate::Surveillance(_) => 1,
        _ => values_per_group(spec).max(1),
    };
    let total: i64 = vector
        .iter()
        .step_by(per)
        .fold(0i64, |acc, v| acc.saturating_add(*v));
    u64::try_from(total).unwrap_or(0)
}

pub use crate::local::SiteVault;

/// A job at one site, planned from the ledger: its noised vector and what it contributed
/// ([`contributed_records`]).
pub fn run_site<R: rand_core::CryptoRng>(
    state: &State,
    job: JobId,
    member: &MemberId,
    vault: SiteVault<'_>,
    links: &Links,
    protection: Protection,
    rng: &mut R,
) -> Result<(Vec<i64>, u64), FederatedError> {
    let (spec, plan) = plan_site(state, job, member, links)?;
    let site_job = SiteJob {
        spec: &spec,
        epsilon_micro: plan.job.epsilon_reserved,
        protection,
        window: plan.job.window,
    };
    let (vector, _) = site_vector(vault, &plan.cohort, &site_job, rng)?;
    let records = contributed_records(&spec, &vector);
    Ok((vector, records))
}
