//! A model's job: a regression fitted by Newton / IRLS across the sites, many secure
//! aggregations over one set of sites fixed on the ledger.
//!
//! 1. **join** — each site plans the job from the ledger (contract, consent at the job's
//!    height), reads its consenting patients' variables into memory
//!    ([`super::DataPlane::model_rows`]) and deals as for any job; the dealers are the sites
//!    that take part.
//! 2. **fix** — the aggregator posts `CloseRound(U, U)`: the ledger now says which sites take
//!    part, for every step, and the job's epsilon is spent from here on.
//! 3. **step** — for iteration `t` the aggregator sends the coefficients to every site of `U`,
//!    with every earlier iteration's signed answers: the site sums them itself, replays the fit
//!    from its start and answers only if the coefficients are the Newton step that history
//!    leads to (the aggregator chooses nothing a site computes at; the update reads only exact
//!    sums, basic arithmetic and square roots, so every site replays it bit for bit); each site
//!    computes its statistics there (`X'WX`, the score, the deviance: never a row),
//!    adds its noise when the model is differentially private, encodes them exactly in fixed
//!    point and masks them pairwise for this step ([`medspace_privacy::secagg::mask_step`]);
//!    the sum of all of `U`'s answers opens, nothing less. A site answers each iteration once,
//!    for one set of coefficients, in increasing order, at most `max_iterations` times, and
//!    only for the ledger's set.
//!    The aggregator keeps every finished iteration's answers, so after a restart it replays
//!    them and asks the same step again (a site answers a repeated request with its kept
//!    answer).
//! 4. **release** — when the fit converges, the aggregator releases the coefficient table and
//!    posts its hash with the sites' signed contributions; a site that does not answer a step
//!    in time, or a fit that does not converge, ends the job with the reason (a later step
//!    cannot drop a site: recovering its masks would expose its earlier answers).

use super::ModelRows;
use crate::round::Job;
use crate::store::StepRecord;
use crate::wire::{
    CurvePoint, CurveResult, Hex, ModelResult, STEP_NAMESPACE, Signed, StepBody, StepMsg,
    StepRequest, SurvivalResult, TermRow,
};
use medspace_privacy::glm::{self, DpGlm, Irls, Options, Progress, Rows};
use medspace_privacy::query::{Aggregate, Family, Feature, ModelSpec};
use medspace_privacy::secagg::{self, Keys};
use medspace_types::{Keypair, MemberId, SignedContribution};
use rand_core::CryptoRng;
use x25519_dalek::StaticSecret;

/// The δ of a differentially private model's (ε, δ): its zero-concentrated budget is converted
/// with this δ (one in a million, far below one over any cohort's size).
pub const DP_DELTA: f64 = 1e-6;

/// What a site attests it contributed: its count rounded down to a multiple of 10 (a coarse,
/// protected figure; the exact cohort size never leaves the site).
pub fn coarse_count(n: usize) -> u64 {
    (n as u64 / 10) * 10
}

/// The job's model specification, if it is a model's job.
pub fn model_of(job: &Job) -> Option<&ModelSpec> {
    match &job.spec.aggregate {
        Aggregate::Model(m) => Some(m),
        _ => None,
    }
}

pub(crate) fn family(f: Family) -> glm::Family {
    match f {
        Family::Logistic => glm::Family::Logistic,
        Family::Poisson => glm::Family::Poisson,
        Family::Linear => glm::Family::Linear,
    }
}

/// The clipping bounds of a private model: each column's largest magnitude (the intercept's
/// is 1) and the outcome's.
pub(crate) fn dp_bounds(m: &ModelSpec) -> (Vec<f64>, f64) {
    let x = std::iter::once(1.0)
        .chain(m.covariates.iter().map(|c| c.bound().to_f64()))
        .collect();
    let y = match &m.outcome {
        Feature::CountWithin(_) | Feature::Measurement(_) | Feature::Age => {
            m.outcome.bound().to_f64()
        }
        _ => 1.0,
    };
    (x, y)
}

/// The Newton options of a model's fit: the same at the aggregator and at every site.
pub fn irls_options(m: &ModelSpec) -> Options {
    // A private fit runs every approved iteration (no convergence test on noisy sums).
    Options {
        max_iter: m.max_iterations,
        l2: m.l2.map(|d| d.to_f64()).unwrap_or(0.0),
        noisy: m.dp,
        ..Options::default()
    }
}

/// The statistics the set's (checked) answers to one step sum to: their masks cancel only in
/// this sum of all of them.
pub(crate) fn open_sum(answers: &[StepMsg], p: usize) -> Result<glm::Stats, String> {
    let mut sum = vec![0u64; glm::stats_len(p)];
    for a in answers {
        for (s, v) in sum.iter_mut().zip(&a.body.masked) {
            *s = s.wrapping_add(*v);
        }
    }
    let total: Vec<i64> = sum.into_iter().map(secagg::decode_i64).collect();
    glm::decode(p, &total).map_err(|e| e.to_string())
}

/// The fit replayed from its start through `history` (each iteration's answers from the set
/// `set`, checked and summed here): the coefficients the next step must use.
pub(crate) fn replay(
    job: &Job,
    m: &ModelSpec,
    set: &[usize],
    history: &[Vec<StepMsg>],
) -> Result<Irls, String> {
    let p = m.covariates.len() + 1;
    let mut irls = Irls::new(family(m.family), p, irls_options(m));
    for (t, answers) in history.iter().enumerate() {
        let step = StepRequest {
            job: job.id(),
            iteration: u32::try_from(t).map_err(|_| "too many iterations")?,
            beta: irls.beta().to_vec(),
            history: Vec::new(),
        };
        if answers.len() != set.len() {
            return Err(format!(
                "iteration {t} needs an answer from each of the {} sites",
                set.len()
            ));
        }
        let mut seen = Vec::with_capacity(set.len());
        for a in answers {
            check_step(job, a, &step, p).map_err(|e| format!("iteration {t}: {e}"))?;
            let i = job
                .index(&a.body.member)
                .ok_or("an answer from outside the job")?;
            if !set.contains(&i) || seen.contains(&i) {
                return Err(format!(
                    "iteration {t}: answers not from the ledger's set, once each"
                ));
            }
            seen.push(i);
        }
        let stats = open_sum(answers, p).map_err(|e| format!("iteration {t}: {e}"))?;
        match irls.update(&stats) {
            Ok(Progress::Continue) => {}
            Ok(Progress::Converged) => {
                return Err(format!("the fit converged at iteration {t}: no later step"));
            }
            Err(e) => return Err(format!("iteration {t}: {e}")),
        }
    }
    Ok(irls)
}

/// What a site needs to answer a step.
pub struct SiteStep<'a> {
    /// This site.
    pub me: &'a MemberId,
    /// Its node key.
    pub key: &'a Keypair,
    /// Its agreement secret.
    pub secret: &'a StaticSecret,
    /// Its rows of the job.
    pub rows: &'a ModelRows,
    /// Its last answered step.
    pub last: Option<&'a StepRecord>,
}

/// A site's answer to `req`, under the rules of the module's documentation. `Ok(None)` when
/// the ledger has not fixed the set yet (ask again later). The same request as the last gets
/// the same answer.
pub fn answer_step<R: CryptoRng>(
    job: &Job,
    site: &SiteStep<'_>,
    req: &StepRequest,
    rng: &mut R,
) -> Result<Option<StepMsg>, String> {
    let Some(m) = model_of(job) else {
        return Err(format!("{} is not a model's job", job.id()));
    };
    if req.job != job.id() {
        return Err("step request for another job".into());
    }
    if job.record.status != medspace_state::records::JobStatus::Submitted {
        return Err(format!("{} is no longer running", job.id()));
    }
    if req.iteration >= m.max_iterations {
        return Err(format!(
            "iteration {} is beyond the approved max_iterations {}",
            req.iteration, m.max_iterations
        ));
    }
    if let Some(last) = site.last {
        if last.iteration == req.iteration && last.answer.body.binding.0 == req.binding() {
            return Ok(Some(last.answer.clone()));
        }
        if req.iteration <= last.iteration {
            return Err(format!(
                "this site already answered iteration {} (each once, in increasing order)",
                last.iteration
            ));
        }
    }
    let Some(round) = &job.record.round else {
        return Ok(None);
    };
    let (u1, u2) = job.ledger_sets(round).map_err(|e| e.to_string())?;
    let me = job
        .index(site.me)
        .ok_or_else(|| format!("{} holds no data of {}", site.me, job.id()))?;
    if u1 != u2 || !u2.contains(&me) {
        return Err("the ledger's set of this job does not include this site".into());
    }
    let p = m.covariates.len() + 1;
    if req.beta.len() != p || req.beta.iter().any(|b| !b.is_finite()) {
        return Err(format!("the coefficients must be {p} finite numbers"));
    }
    if req.history.len() != req.iteration as usize {
        return Err("the request must carry every earlier iteration's answers".into());
    }
    let replayed = replay(job, m, &u2, &req.history)?;
    if replayed
        .beta()
        .iter()
        .map(|b| b.to_bits())
        .ne(req.beta.iter().map(|b| b.to_bits()))
    {
        return Err(
            "the coefficients are not the Newton step the earlier iterations' sums lead to".into(),
        );
    }
    let rows = Rows {
        p: site.rows.p,
        x: &site.rows.x,
        y: &site.rows.y,
        offset: site.rows.offset.as_deref(),
    };
    let fam = family(m.family);
    let stats = if m.dp {
        // Each row clipped to the variables' bounds and standardized by them (the fit runs on
        // that scale; the aggregator maps it back), then the site's calibrated noise: the job's
        // epsilon (at δ = DP_DELTA) spread evenly over every approved iteration.
        let rho = glm::zcdp_rho(job.record.epsilon_reserved as f64 / 1e6, DP_DELTA)
            / f64::from(m.max_iterations);
        let (x_bound, y_bound) = dp_bounds(m);
        let x = glm::standardize(rows.x, rows.p, &x_bound).map_err(|e| e.to_string())?;
        let standard = Rows { x: &x, ..rows };
        let dp = DpGlm::standardized(rho, rows.p, y_bound);
        let clipped =
            glm::site_stats_clipped(fam, &standard, &req.beta, &dp).map_err(|e| e.to_string())?;
        glm::noise_stats(&clipped, &dp, fam, rng).map_err(|e| e.to_string())?
    } else {
        glm::site_stats(fam, &rows, &req.beta).map_err(|e| e.to_string())?
    };
    let encoded: Vec<u64> = glm::encode(&stats)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(secagg::encode_i64)
        .collect();
    let binding = req.binding();
    let keys = Keys {
        me,
        secret: site.secret,
        peers: &job.agreement,
    };
    let masked =
        secagg::mask_step(&job.round, &keys, &u2, &binding, &encoded).map_err(|e| e.to_string())?;
    let body = StepBody {
        job: job.id(),
        member: site.me.clone(),
        iteration: req.iteration,
        binding: Hex(binding.to_vec()),
        masked,
        contribution: SignedContribution::sign(
            site.key,
            job.id(),
            site.me.clone(),
            site.rows.cohort,
        ),
    };
    Signed::sign(site.key, STEP_NAMESPACE, body)
        .map(Some)
        .ok_or_else(|| "cannot sign".into())
}

/// Checks a step answer: for this job, step and set, signed by its site, of the model's length.
pub(crate) fn check_step(
    job: &Job,
    msg: &StepMsg,
    req: &StepRequest,
    p: usize,
) -> Result<(), String> {
    let b = &msg.body;
    let i = job
        .index(&b.member)
        .ok_or_else(|| format!("{} holds no data of the job", b.member))?;
    let key = job.keys.get(i).ok_or("no node key")?;
    if b.job != job.id() || !msg.verify(key, STEP_NAMESPACE) {
        return Err("answer not signed by the site for this job".into());
    }
    if b.iteration != req.iteration || b.binding.0 != req.binding() {
        return Err("answer for another step".into());
    }
    if b.masked.len() != glm::stats_len(p) {
        return Err("answer does not fit the model".into());
    }
    if b.contribution.member != b.member || !b.contribution.verify(job.id(), key) {
        return Err("contribution not attested by the site".into());
    }
    Ok(())
}

pub(crate) fn result(m: &ModelSpec, fit: &glm::Fit) -> ModelResult {
    ModelResult {
        family: m.family.as_str().to_string(),
        terms: fit
            .terms
            .iter()
            .map(|t| TermRow {
                name: t.name.clone(),
                coefficient: t.coefficient,
                std_error: t.std_error,
                z: t.z,
                p_value: t.p_value,
                ci_low: t.ci_low,
                ci_high: t.ci_high,
                ratio: t.ratio.map(|(r, lo, hi)| [r, lo, hi]),
            })
            .collect(),
        deviance: fit.deviance,
        iterations: fit.iterations,
        n: fit.n,
        scale: fit.scale,
        dp: m.dp,
    }
}

/// The released curves of a survival job from the summed counts: each group's Kaplan–Meier
/// curve up to where its risk set falls below `k`, and the log-rank test between the groups.
pub fn survival_result(
    spec: &medspace_privacy::query::QuerySpec,
    s: &medspace_privacy::query::SurvivalSpec,
    totals: &[i64],
    k: u32,
) -> Result<SurvivalResult, String> {
    use medspace_privacy::survival;
    let groups = medspace_privacy::query::groups(spec);
    let bins = s.bins();
    let curves = survival::kaplan_meier(totals, groups.len(), bins, s.bin_days, u64::from(k))
        .map_err(|e| e.to_string())?;
    let log_rank = if groups.len() > 1 {
        survival::log_rank(totals, groups.len(), bins)
            .ok()
            .map(|t| (t.chi2, t.df, t.p_value))
    } else {
        None
    };
    let per = 1 + 2 * bins;
    Ok(SurvivalResult {
        bin_days: s.bin_days,
        curves: curves
            .iter()
            .map(|c| CurveResult {
                group: groups
                    .get(c.group)
                    .map(medspace_privacy::release::group_label)
                    .unwrap_or_default(),
                entered: totals
                    .get(c.group * per)
                    .map(|n| (*n).max(0) as u64)
                    .unwrap_or(0),
                points: c
                    .points
                    .iter()
                    .filter(|p| !p.suppressed)
                    .map(|p| CurvePoint {
                        day: u32::try_from(p.time_days).unwrap_or(u32::MAX),
                        at_risk: p.at_risk,
                        events: p.events,
                        censored: p.censored,
                        survival: p.survival,
                        ci_low: p.ci_low,
                        ci_high: p.ci_high,
                    })
                    .collect(),
                // The curve stops at its first bin whose risk set is below k: every bin from
                // there on is withheld.
                suppressed_bins: if c.points.iter().any(|p| p.suppressed) {
                    u32::try_from(bins - c.points.iter().filter(|p| !p.suppressed).count())
                        .unwrap_or(u32::MAX)
                } else {
                    0
                },
            })
            .collect(),
        log_rank,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use medspace_privacy::secagg::Round;
    use medspace_state::records::{JobRecord, JobStatus, RoundRecord};
    use medspace_types::{Blob, ContractId, JobId, List, UserId};
    use x25519_dalek::PublicKey as XPublic;

    const SPEC: &str = r#"{"version":1,"cohort":{"index_date":"2022-01-01"},"aggregate":{"model":{"family":"logistic","outcome":"female","covariates":["age"],"max_iterations":4}}}"#;

    struct Fixture {
        job: Job,
        keys: Vec<Keypair>,
        secrets: Vec<StaticSecret>,
        rows: ModelRows,
    }

    fn fixture(closed: Option<&[usize]>) -> Fixture {
        let owners: Vec<MemberId> = ["hospital-a", "hospital-b", "hospital-c"]
            .iter()
            .map(|m| MemberId::new(m).unwrap())
            .collect();
        let keys: Vec<Keypair> = (0..3).map(|i| Keypair::from_seed(70 + i)).collect();
        let secrets: Vec<StaticSecret> =
            (0..3u8).map(|i| StaticSecret::from([i + 9; 32])).collect();
        let names =
            |set: &[usize]| List::new(set.iter().map(|i| owners[*i].clone()).collect()).unwrap();
        let record = JobRecord {
            id: JobId(5),
            contract: ContractId(1),
            submitter: UserId::new("research-1.researcher").unwrap(),
            computation: Blob::new(SPEC.as_bytes().to_vec()).unwrap(),
            epsilon_reserved: 100_000,
            status: JobStatus::Submitted,
            submitted_height: 1,
            submitted_ms: 1,
            result: None,
            round: closed.map(|set| RoundRecord {
                sharers: names(set),
                survivors: names(set),
                height: 2,
            }),
            window: None,
        };
        let job = Job {
            record,
            keys: keys.iter().map(Keypair::public).collect(),
            agreement: secrets.iter().map(XPublic::from).collect(),
            round: Round::new(crate::round::job_binding(JobId(5)), 3).unwrap(),
            spec: medspace_privacy::query::parse(SPEC).unwrap().0,
            k: 10,
            owners,
        };
        // 40 rows: age and sex.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..40 {
            x.extend([1.0, 20.0 + i as f64]);
            y.push(f64::from(i % 3 == 0));
        }
        Fixture {
            job,
            keys,
            secrets,
            rows: ModelRows {
                p: 2,
                x,
                y,
                offset: None,
                cohort: 40,
            },
        }
    }

    fn ask(
        f: &Fixture,
        site: usize,
        req: &StepRequest,
        last: Option<&StepRecord>,
    ) -> Result<Option<StepMsg>, String> {
        let me = f.job.owners[site].clone();
        let s = SiteStep {
            me: &me,
            key: &f.keys[site],
            secret: &f.secrets[site],
            rows: &f.rows,
            last,
        };
        answer_step(
            &f.job,
            &s,
            req,
            &mut rand_chacha::ChaCha20Rng::seed_from_u64(1),
        )
    }

    use rand_core::SeedableRng as _;

    fn req(iteration: u32, beta: [f64; 2]) -> StepRequest {
        StepRequest {
            job: JobId(5),
            iteration,
            beta: beta.to_vec(),
            history: Vec::new(),
        }
    }

    #[test]
    fn a_site_answers_only_for_the_ledgers_set_each_iteration_once_and_forward() {
        // Before the ledger fixed the set: ask again later.
        let open = fixture(None);
        assert_eq!(ask(&open, 1, &req(0, [0.0, 0.0]), None), Ok(None));
        let f = fixture(Some(&[0, 1, 2]));
        let first = ask(&f, 1, &req(0, [0.0, 0.0]), None).unwrap().unwrap();
        assert!(first.verify(&f.keys[1].public(), STEP_NAMESPACE));
        let last = StepRecord {
            iteration: 0,
            answer: first.clone(),
        };
        // The same request: the same answer.
        assert_eq!(
            ask(&f, 1, &req(0, [0.0, 0.0]), Some(&last)),
            Ok(Some(first.clone()))
        );
        // Other coefficients for an answered iteration, or going back: refused.
        let again = ask(&f, 1, &req(0, [0.5, 0.0]), Some(&last)).unwrap_err();
        assert!(again.contains("already answered"), "{again}");
        let later = StepRecord {
            iteration: 2,
            answer: first.clone(),
        };
        assert!(ask(&f, 1, &req(1, [0.0, 0.0]), Some(&later)).is_err());
        // Beyond the approved iterations, malformed coefficients: refused.
        assert!(
            ask(&f, 1, &req(4, [0.0, 0.0]), None)
                .unwrap_err()
                .contains("max_iterations")
        );
        assert!(ask(&f, 1, &req(1, [f64::NAN, 0.0]), None).is_err());
        assert!(
            ask(
                &f,
                1,
                &StepRequest {
                    job: JobId(5),
                    iteration: 0,
                    beta: vec![0.0],
                    history: Vec::new(),
                },
                None
            )
            .is_err()
        );
        // A site the ledger's set leaves out answers nothing.
        let two = fixture(Some(&[0, 1]));
        assert!(
            ask(&two, 2, &req(0, [0.0, 0.0]), None)
                .unwrap_err()
                .contains("does not include")
        );
        // A finished job answers nothing.
        let mut done = fixture(Some(&[0, 1, 2]));
        done.job.record.status = JobStatus::Done;
        assert!(
            ask(&done, 1, &req(0, [0.0, 0.0]), None)
                .unwrap_err()
                .contains("no longer running")
        );
    }

    #[test]
    fn a_site_computes_only_at_the_newton_step_the_history_leads_to() {
        let f = fixture(Some(&[0, 1, 2]));
        // Iteration 0 starts at zero: other coefficients are the aggregator's choice, refused.
        let chosen = ask(&f, 0, &req(0, [0.3, -0.02]), None).unwrap_err();
        assert!(chosen.contains("not the Newton step"), "{chosen}");
        let first: Vec<StepMsg> = (0..3)
            .map(|site| ask(&f, site, &req(0, [0.0, 0.0]), None).unwrap().unwrap())
            .collect();
        // The step the sums lead to, computed as the aggregator does.
        let mut irls = Irls::new(
            glm::Family::Logistic,
            2,
            irls_options(model_of(&f.job).unwrap()),
        );
        let mut sum = vec![0u64; glm::stats_len(2)];
        for a in &first {
            for (s, v) in sum.iter_mut().zip(&a.body.masked) {
                *s = s.wrapping_add(*v);
            }
        }
        let total: Vec<i64> = sum.into_iter().map(secagg::decode_i64).collect();
        irls.update(&glm::decode(2, &total).unwrap()).unwrap();
        let next = |beta: Vec<f64>, history: Vec<Vec<StepMsg>>| StepRequest {
            job: JobId(5),
            iteration: 1,
            beta,
            history,
        };
        let last = StepRecord {
            iteration: 0,
            answer: first[1].clone(),
        };
        let good = next(irls.beta().to_vec(), vec![first.clone()]);
        assert!(ask(&f, 1, &good, Some(&last)).unwrap().is_some());
        // A nudged coefficient, a missing history, a history short of one site or with a
        // forged answer: refused, nothing computed.
        let mut nudged = irls.beta().to_vec();
        nudged[1] += 1e-12;
        assert!(ask(&f, 1, &next(nudged, vec![first.clone()]), Some(&last)).is_err());
        assert!(ask(&f, 1, &next(irls.beta().to_vec(), vec![]), Some(&last)).is_err());
        assert!(
            ask(
                &f,
                1,
                &next(irls.beta().to_vec(), vec![first[..2].to_vec()]),
                Some(&last)
            )
            .is_err()
        );
        let mut forged = first.clone();
        forged[2].body.masked[0] ^= 1;
        let why = ask(
            &f,
            1,
            &next(irls.beta().to_vec(), vec![forged]),
            Some(&last),
        )
        .unwrap_err();
        assert!(why.contains("not signed"), "{why}");
        let twice = vec![first[0].clone(), first[0].clone(), first[2].clone()];
        assert!(ask(&f, 1, &next(irls.beta().to_vec(), vec![twice]), Some(&last)).is_err());
    }

    #[test]
    fn the_sum_of_the_sets_answers_opens_to_the_sites_statistics() {
        let f = fixture(Some(&[0, 1, 2]));
        let r = req(0, [0.0, 0.0]);
        let mut sum = vec![0u64; glm::stats_len(2)];
        for site in 0..3 {
            let msg = ask(&f, site, &r, None).unwrap().unwrap();
            check_step(&f.job, &msg, &r, 2).unwrap();
            for (a, b) in sum.iter_mut().zip(&msg.body.masked) {
                *a = a.wrapping_add(*b);
            }
        }
        let total: Vec<i64> = sum.into_iter().map(secagg::decode_i64).collect();
        let stats = glm::decode(2, &total).unwrap();
        let rows = Rows {
            p: 2,
            x: &f.rows.x,
            y: &f.rows.y,
            offset: None,
        };
        let one = glm::site_stats(glm::Family::Logistic, &rows, &r.beta).unwrap();
        assert_eq!(stats.n, 3 * one.n);
        assert!((stats.deviance - 3.0 * one.deviance).abs() < 1e-6);
        // An answer to other coefficients, or from another signer, does not pass the check.
        let msg = ask(&f, 1, &r, None).unwrap().unwrap();
        assert!(check_step(&f.job, &msg, &req(0, [0.2, 0.0]), 2).is_err());
        assert!(check_step(&f.job, &msg, &req(1, [0.0, 0.0]), 2).is_err());
        let mut forged = msg.clone();
        forged.body.member = f.job.owners[2].clone();
        assert!(check_step(&f.job, &forged, &r, 2).is_err());
    }
}
