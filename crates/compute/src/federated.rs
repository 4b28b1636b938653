//! A federated job end to end inside and between the data holders' nodes: each site plans the
//! job from the ledger, runs its compiled query on its consenting patients, adds its own
//! differential-privacy noise, masks its vector for secure aggregation and sends only that
//! share; the aggregator sums the shares (learning only the noisy total) and applies
//! small-cell suppression before anything is released.

use crate::links::Links;
use crate::local::{self, CONSENTED};
use crate::plan::{PlanError, plan_job};
use medspace_privacy::query::{Aggregate, GroupField, GroupKey, QuerySpec};
use medspace_privacy::{Mechanism, secagg};
use medspace_state::State;
use medspace_types::{Hash, JobId, MemberId};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};
use x25519_dalek::{PublicKey, StaticSecret};

/// Errors of a federated job (nothing leaves a site that fails).
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
    /// Masking or aggregation failed.
    #[error("secure aggregation: {0}")]
    SecAgg(#[from] medspace_privacy::SecAggError),
    /// The ledger could not be read.
    #[error("ledger: {0}")]
    Ledger(#[from] medspace_state::TxError),
    /// The local result does not fit the agreed layout.
    #[error("result layout: {0}")]
    Layout(String),
}

/// How much protection the sites apply. Production is always [`Protection::Full`]; the
/// unprotected setting exists only so tests can compare federated and pooled results exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// Discrete Laplace noise from each site and small-cell suppression with this `k`.
    Full {
        /// Suppression threshold (the policy's `min_cell_k`).
        k: u32,
    },
    /// No noise, no suppression: only for tests that compare federated and pooled results.
    TestNone,
}

/// What one site sends to the aggregator: its masked vector and how many of its patients were
/// in the cohort (a count, for the ledger's contribution record).
#[derive(Clone, Debug)]
pub struct SiteShare {
    /// The site.
    pub member: MemberId,
    /// The masked vector (uniformly random to anyone but the sum of all shares).
    pub masked: Vec<u64>,
    /// Consenting patients of this site that the job ran on.
    pub cohort: u64,
}

/// A site's keys and place in the aggregation.
pub struct SiteKeys<'a> {
    /// Position of this site among `peers`.
    pub me: usize,
    /// This site's X25519 secret.
    pub secret: &'a StaticSecret,
    /// Every participating site's X25519 public key, in the agreed order.
    pub peers: &'a [PublicKey],
}

/// The released cell: its group, and the protected value (`None`: suppressed).
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// The group.
    pub group: GroupKey,
    /// Persons (noisy), or `None` when below the threshold.
    pub n: Option<i64>,
    /// Mean of the measurement (from noisy sum and count), for mean queries.
    pub mean: Option<f64>,
}

/// The 32-byte job identity that binds masks to one job.
pub fn job_binding(job: JobId) -> [u8; 32] {
    Hash::of(&[b"medspace/job/v1", &job.0.to_be_bytes()]).0
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

fn values_per_group(spec: &QuerySpec) -> usize {
    match spec.aggregate {
        Aggregate::Count => 1,
        Aggregate::Mean(_) => 2,
    }
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
        Aggregate::Mean(m) => {
            let half = (epsilon_micro / 2).max(1);
            let bound = m.lower.abs().max(m.upper.abs());
            // One person changes `sum_fixed` by at most the clamping bound, in thousandths.
            let sens = (bound * 1000.0).ceil().max(1.0) as u64;
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
    /// The job (its identity binds the masks).
    pub job: JobId,
    /// The job's query specification.
    pub spec: &'a QuerySpec,
    /// The epsilon the job reserved, in micro-epsilon (calibrates the noise).
    pub epsilon_micro: u64,
    /// The protection applied.
    pub protection: Protection,
}

/// Wall time of each step of [`site_share`], for the operator's log and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteTimings {
    /// Opening the vault, running the compiled query on the cohort, laying the result out.
    pub local: Duration,
    /// Adding the noise to every cell (nothing without protection).
    pub noise: Duration,
    /// Masking the vector for secure aggregation.
    pub mask: Duration,
}

/// The data plane of one site for a planned job: runs the job's compiled query over `cohort`
/// (registered as [`CONSENTED`]) in the vault of `node_dir`, lays the result out in the spec's
/// fixed vector ([`local_vector`]), adds the site's noise and masks the vector. Returns the
/// masked vector, the only thing that leaves the site, and the time of each step.
/// [`run_site`] is this after planning the job and its cohort from the ledger.
pub fn site_share<R: rand_core::CryptoRng>(
    node_dir: &Path,
    cohort: &BTreeSet<i64>,
    job: &SiteJob<'_>,
    keys: &SiteKeys<'_>,
    rng: &mut R,
) -> Result<(Vec<u64>, SiteTimings), FederatedError> {
    let spec = job.spec;
    let t = Instant::now();
    let sql = medspace_privacy::query::compile_sql(spec, CONSENTED)?;
    let rows = local::run(node_dir, cohort, &sql)?;
    let mut vector = local_vector(spec, &rows);
    let local = t.elapsed();
    let t = Instant::now();
    if let Protection::Full { .. } = job.protection {
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
    let noise = t.elapsed();
    let t = Instant::now();
    let encoded: Vec<u64> = vector.iter().map(|v| secagg::encode_i64(*v)).collect();
    let masked = secagg::mask(
        &job_binding(job.job),
        keys.me,
        keys.secret,
        keys.peers,
        &encoded,
    )?;
    let mask = t.elapsed();
    Ok((masked, SiteTimings { local, noise, mask }))
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
        let (mut sex, mut band) = (None, None);
        for (field, value) in spec.group_by.iter().zip(row.key.iter()) {
            match field {
                GroupField::Sex => sex = Some(value.as_str()),
                GroupField::AgeBand => band = Some(value.as_str()),
            }
        }
        let Some(i) = medspace_privacy::query::group_index(&layout, sex, band) else {
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

/// Runs a job at one site and returns its masked share.
#[allow(clippy::too_many_arguments)]
pub fn run_site<R: rand_core::CryptoRng>(
    state: &State,
    job: JobId,
    member: &MemberId,
    node_dir: &Path,
    links: &Links,
    keys: &SiteKeys<'_>,
    protection: Protection,
    rng: &mut R,
) -> Result<SiteShare, FederatedError> {
    let spec = job_spec(state, job)?;
    let validated = medspace_privacy::query::validate(&spec)?;
    let reads: Vec<(String, String)> = validated
        .reads
        .iter()
        .map(|(t, f)| (t.to_string(), f.to_string()))
        .collect();
    let plan = plan_job(state, job, member, links, &reads)?;
    let site_job = SiteJob {
        job,
        spec: &spec,
        epsilon_micro: plan.job.epsilon_reserved,
        protection,
    };
    let (masked, _) = site_share(node_dir, &plan.cohort, &site_job, keys, rng)?;
    Ok(SiteShare {
        member: member.clone(),
        masked,
        cohort: plan.cohort.len() as u64,
    })
}

/// The aggregator's side: sums the shares (and survivors' reveals for dropped sites) and
/// releases the cells after suppression.
pub fn release(
    spec: &QuerySpec,
    shares: &[Vec<u64>],
    reveals: &[Vec<u64>],
    protection: Protection,
) -> Result<Vec<Cell>, FederatedError> {
    let sum = secagg::aggregate_with_dropouts(shares, reveals)?;
    let totals: Vec<i64> = sum.iter().map(|v| secagg::decode_i64(*v)).collect();
    release_totals(spec, &totals, protection)
}

/// The released cells of a vector of totals in the spec's layout (see [`local_vector`]): `n`
/// after suppression below `k` (none without protection) and, for a mean, the mean of the
/// clamped values from `sum_fixed / n`.
pub fn release_totals(
    spec: &QuerySpec,
    totals: &[i64],
    protection: Protection,
) -> Result<Vec<Cell>, FederatedError> {
    let layout = medspace_privacy::query::groups(spec);
    let per = values_per_group(spec);
    if totals.len() != layout.len() * per {
        return Err(FederatedError::Layout(format!(
            "expected {} values, got {}",
            layout.len() * per,
            totals.len()
        )));
    }
    let mut cells = Vec::with_capacity(layout.len());
    for (i, group) in layout.iter().enumerate() {
        let n = totals.get(i * per).copied().unwrap_or(0);
        let n = match protection {
            Protection::Full { k } => medspace_privacy::suppress_small(n, k),
            Protection::TestNone => Some(n),
        };
        let mean = match (&spec.aggregate, n) {
            (Aggregate::Mean(_), Some(count)) if count > 0 => totals
                .get(i * per + 1)
                .map(|v| *v as f64 / 1000.0 / count as f64),
            _ => None,
        };
        cells.push(Cell {
            group: *group,
            n,
            mean,
        });
    }
    Ok(cells)
}

/// Label of a group for display.
pub fn group_label(g: &GroupKey) -> String {
    let mut parts = Vec::new();
    if let Some(s) = g.sex {
        parts.push(s.as_str().to_string());
    }
    if let Some(b) = g.age_band {
        parts.push(b.label());
    }
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(" ")
    }
}
