//! A vertical study ([`ClaimsSpec`]): the hospitals' clinical cohort joined with an insurer's
//! claims on the patients both hold, with [`medspace_privacy::join`]. The ledger lists the
//! hospitals first (the first one aggregates) and the insurer last.
//!
//! 1. Each hospital first leaves out the patients an earlier hospital also holds (the
//!    count-once rule, [`super::once`]), then blinds the ledger pseudonyms of its consenting
//!    cohort and sends them to the insurer (`POST /v1/worker/jobs/{job}/psi`, the route of
//!    count-once sets). The insurer checks who asks ([`check_join`]: only a hospital of the
//!    study, one set per hospital and job, no more than the persons its catalog publishes); it
//!    blinds its own consenting members and encrypts their values — the person (1), claims and
//!    paid — under a key drawn once for the job, and answers every hospital from that one set.
//! 2. A hospital learns which of ITS patients the insurer also holds, never a value: it sums the
//!    encrypted values of the matches per cell of the study, adds its own noise (`dp`; without
//!    it, a cell of fewer than `k` of its persons is left empty), re-randomizes, and signs.
//! 3. The aggregator collects every hospital's signed sums (`GET /v1/worker/jobs/{job}/sums`).
//!    A vertical study runs with every site or not at all: a missing hospital ends the job
//!    before anything is opened or charged. It then closes the round on the ledger with every
//!    site: from there the job's epsilon is charged.
//! 4. It sends all the signed sums to the insurer (`POST /v1/worker/jobs/{job}/open`), which
//!    checks ([`check_open`]) that the ledger closed the round with every site, that each part
//!    is a hospital's own, signed by its node key, adds them up and opens only that total, once
//!    per job; it adds its own noise and answers with its signed contribution.
//! 5. The aggregator releases the cells (fewer than `k` persons withheld) and posts the result.
//!
//! So no site ever sees a row of another, the insurer opens only totals over every hospital,
//! and no hospital sees an insurer value but the released ones. The insurer's key and blinded
//! set live in memory only: after a restart it opens nothing for a job it joined before (the
//! job then fails with that reason).

use super::aggregate::Aggregation;
use super::{Config, DataPlane, JoinInput};
use crate::WorkerError;
use crate::round::{Job, job_binding};
use crate::store::Collected;
use crate::transport::{PeerError, Transport, ask_until};
use crate::wire::{
    Hex, OpenAnswer, OpenAsk, PsiAnswer, PsiAsk, SUMS_NAMESPACE, Signed, SumsBody, SumsMsg,
    VerticalCell, VerticalResult,
};
use commonware_runtime::Clock;
use futures::future::join_all;
use medspace_ledger::Ledger;
use medspace_privacy::join::{Holder, Offer, Sums};
use medspace_privacy::psi::{self, ContractKey, Mode};
use medspace_privacy::query::ClaimsSpec;
use medspace_privacy::query::claims::{noise_margin, release_cells, side_noise, values_per_cell};
use medspace_privacy::release::group_label;
use medspace_state::State;
use medspace_types::{JobId, MemberId, PatientId, SignedContribution};
use rand_core::CryptoRng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Threads the curve work of a join may use.
const THREADS: usize = 2;

/// The job's vertical study, if it is one.
pub fn study(job: &Job) -> Option<&ClaimsSpec> {
    match &job.spec.aggregate {
        medspace_privacy::query::Aggregate::Claims(c) => Some(c),
        _ => None,
    }
}

/// Whether `job` is a vertical study, from the ledger.
pub fn is_vertical(state: &State, job: JobId) -> bool {
    Job::from_ledger(state, job).is_ok_and(|j| study(&j).is_some())
}

/// The insurer of a vertical study: its last site.
pub fn insurer(job: &Job) -> Option<&MemberId> {
    study(job).and(job.owners.last())
}

/// The hospitals of a vertical study: every site but the last.
pub fn hospitals(job: &Job) -> &[MemberId] {
    job.owners
        .get(..job.owners.len().saturating_sub(1))
        .unwrap_or_default()
}

/// The identifier key of a job's join: bound to the job, public (the secrecy is the ECDH
/// exponents' and the insurer's ElGamal key, drawn afresh for every job).
fn job_key(job: JobId) -> ContractKey {
    ContractKey::derive(&job_binding(job), b"medspace/vertical/v1")
}

/// The join's elements of `patients`, in their order.
pub fn identifiers(job: JobId, patients: &[PatientId]) -> Vec<psi::Identifier> {
    super::once::keyed(&job_key(job), patients)
}

/// The study's cells (the release's layout).
pub fn cells(job: &Job, c: &ClaimsSpec) -> usize {
    c.cells(&job.spec).len()
}

// ---------------------------------------------------------------------------------------------
// The insurer
// ---------------------------------------------------------------------------------------------

/// The insurer's side of each running vertical study, made once per job and shared by its
/// answers to every hospital and by the opening: in memory only.
pub type Holders = Mutex<BTreeMap<JobId, Arc<Holder>>>;

/// The insurer's checks of a hospital's set, before any work: a vertical job that runs, asked
/// by one of its hospitals of its insurer, a linked set within the persons that hospital's
/// catalog publishes. Returns the parsed request.
pub fn check_join(
    state: &State,
    job: &Job,
    me: &MemberId,
    caller: &MemberId,
    ask: &PsiAsk,
) -> Result<psi::Request, PeerError> {
    if insurer(job) != Some(me) || !hospitals(job).contains(caller) {
        return Err(PeerError::Forbidden(format!(
            "only a hospital of vertical study {} sends its set to its insurer",
            job.id()
        )));
    }
    if job.record.status != medspace_state::records::JobStatus::Submitted {
        return Err(PeerError::Refused(format!("{} already ended", job.id())));
    }
    let request =
        psi::Request::from_bytes(&ask.request.0).map_err(|e| PeerError::Refused(e.to_string()))?;
    if request.mode != Mode::Linked {
        return Err(PeerError::Refused(
            "a vertical study's set runs linked".into(),
        ));
    }
    let bound = super::once::published_persons(state, caller);
    if request.points.len() as u64 > bound {
        return Err(PeerError::Refused(format!(
            "{} elements from {caller}, whose catalog publishes {bound} persons",
            request.points.len()
        )));
    }
    Ok(request)
}

/// The insurer's answer to a hospital's set: its consenting members blinded and their values
/// encrypted, made once per job (kept in `holders` for the other hospitals and the opening).
pub fn answer<P: DataPlane, R: CryptoRng>(
    plane: &P,
    holders: &Holders,
    state: &State,
    job: &Job,
    me: &MemberId,
    request: &psi::Request,
    rng: &mut R,
) -> Result<PsiAnswer, String> {
    let holder = {
        // Held while the set is made: another hospital's answer waits for it.
        let mut kept = holders
            .lock()
            .map_err(|_| "the vertical studies' state is poisoned".to_string())?;
        match kept.get(&job.id()) {
            Some(h) => h.clone(),
            None => {
                let c = study(job).ok_or("not a vertical study")?;
                let JoinInput::Claims { patients, values } = plane
                    .join_input(state, job.id(), me)
                    .map_err(|e| e.to_string())?
                else {
                    return Err("this site holds no claims".into());
                };
                if values.iter().any(|v| v.len() != c.measures().len()) {
                    return Err("the claims values do not match the study's measures".into());
                }
                let ids = identifiers(job.id(), &patients);
                let h = Arc::new(
                    Holder::new(rng, &ids, &values.concat(), c.measures().len(), THREADS)
                        .map_err(|e| e.to_string())?,
                );
                kept.insert(job.id(), h.clone());
                h
            }
        }
    };
    let offer = holder.respond(request, rng).map_err(|e| e.to_string())?;
    Ok(PsiAnswer {
        job: job.id(),
        response: Hex(offer.to_bytes().map_err(|e| e.to_string())?),
    })
}

/// A hospital's signed sums, checked for `job`: signed by that hospital's node key, in the
/// study's layout. Returns the hospital's index and its parsed sums.
pub fn check_sums(job: &Job, c: &ClaimsSpec, msg: &SumsMsg) -> Result<(usize, Sums), String> {
    let b = &msg.body;
    let i = hospitals(job)
        .iter()
        .position(|h| *h == b.member)
        .ok_or_else(|| format!("{} is not a hospital of {}", b.member, job.id()))?;
    let key = job.keys.get(i).ok_or("no node key")?;
    if b.job != job.id() || !msg.verify(key, SUMS_NAMESPACE) {
        return Err(format!(
            "the sums of {} are not signed by its node key",
            b.member
        ));
    }
    if b.contribution.member != b.member || !b.contribution.verify(job.id(), key) {
        return Err(format!(
            "the contribution of {} is not signed by it",
            b.member
        ));
    }
    let sums = Sums::from_bytes(&b.sums.0).map_err(|e| e.to_string())?;
    if sums.groups != cells(job, c) || sums.measures != c.measures().len() {
        return Err(format!(
            "{} cells of {} measures, not the study's {} of {}",
            sums.groups,
            sums.measures,
            cells(job, c),
            c.measures().len()
        ));
    }
    Ok((i, sums))
}

/// The insurer's checks of an opening: asked by the job's aggregator, once the ledger closed
/// the round with every site, with exactly one signed part per hospital, in contract order.
/// Returns the total of the parts (their homomorphic sum).
pub fn check_open(
    job: &Job,
    me: &MemberId,
    caller: &MemberId,
    ask: &OpenAsk,
) -> Result<Sums, PeerError> {
    // Who asks first: anyone but the job's aggregator is refused before anything else.
    if job.aggregator() != Some(caller) {
        return Err(PeerError::Forbidden(format!(
            "only the aggregator of {} asks its insurer to open",
            job.id()
        )));
    }
    let Some(c) = study(job) else {
        return Err(PeerError::Refused(format!(
            "{} is not a vertical study",
            job.id()
        )));
    };
    if insurer(job) != Some(me) {
        return Err(PeerError::Refused(format!(
            "{me} is not the insurer of {}",
            job.id()
        )));
    }
    if job.record.status != medspace_state::records::JobStatus::Submitted {
        return Err(PeerError::Refused(format!("{} already ended", job.id())));
    }
    match &job.record.round {
        None => return Err(PeerError::NotReady),
        Some(r) if r.survivors.len() != job.owners.len() => {
            return Err(PeerError::Refused(format!(
                "the round of {} was closed without every site",
                job.id()
            )));
        }
        Some(_) => {}
    }
    let want = hospitals(job).len();
    if ask.parts.len() != want {
        return Err(PeerError::Refused(format!(
            "{} parts, not one per hospital ({want})",
            ask.parts.len()
        )));
    }
    let mut parts = Vec::with_capacity(want);
    for (k, msg) in ask.parts.iter().enumerate() {
        let (i, sums) = check_sums(job, c, msg).map_err(PeerError::Refused)?;
        if i != k {
            return Err(PeerError::Refused(
                "one part per hospital, in contract order".into(),
            ));
        }
        parts.push(sums);
    }
    Sums::add_all(&parts).map_err(|e| PeerError::Refused(e.to_string()))
}

/// The insurer opens the total and adds its own noise: per cell, each measure's sum.
pub fn open<R: CryptoRng>(
    holder: &Holder,
    job: &Job,
    me: &MemberId,
    key: &medspace_types::Keypair,
    total: &Sums,
    rng: &mut R,
) -> Result<OpenAnswer, String> {
    let c = study(job).ok_or("not a vertical study")?;
    // Every hospital added its own noise.
    let hospitals = hospitals(job).len() as u64;
    let margin = noise_margin(c, job.record.epsilon_reserved)
        .into_iter()
        .max()
        .unwrap_or(0)
        .saturating_mul(hospitals);
    let mut opened = holder.open(total, margin).map_err(|e| e.to_string())?;
    if !c.dp {
        // Exact values: a cell of fewer than k persons (its first measure counts them) is not
        // given out at all, so no hospital, the aggregator included, sees a sum over so few.
        for cell in opened.chunks_mut(total.measures.max(1)) {
            if cell.first().is_some_and(|n| *n < i64::from(job.k)) {
                cell.fill(0);
            }
        }
    }
    let noise =
        side_noise(c, job.record.epsilon_reserved, total.groups, rng).map_err(|e| e.to_string())?;
    let values = opened
        .iter()
        .zip(noise.iter().chain(std::iter::repeat(&0)))
        .map(|(v, n)| v.saturating_add(*n))
        .collect();
    let members = super::model::coarse_count(holder.len());
    Ok(OpenAnswer {
        job: job.id(),
        values,
        contribution: SignedContribution::sign(key, job.id(), me.clone(), members),
    })
}

// ---------------------------------------------------------------------------------------------
// A hospital
// ---------------------------------------------------------------------------------------------

/// A hospital's side up to its sums: its input and its request.
pub struct Clinical {
    receiver: psi::Receiver,
    cells: Vec<Option<u32>>,
    /// The request to send.
    pub request: PsiAsk,
    /// Persons offered (coarse), the hospital's contribution.
    pub offered: u64,
}

impl Clinical {
    /// Blinds the hospital's consenting cohort but `leave_out` (counted at an earlier
    /// hospital).
    pub fn new<P: DataPlane, L, R: CryptoRng>(
        cfg: &Config<L, P>,
        state: &State,
        job: &Job,
        leave_out: &BTreeSet<PatientId>,
        rng: &mut R,
    ) -> Result<Self, String> {
        let JoinInput::Clinical { patients, cells } = cfg
            .plane
            .join_input(state, job.id(), &cfg.member)
            .map_err(|e| e.to_string())?
        else {
            return Err("this site holds no clinical cohort".into());
        };
        let (patients, cells): (Vec<PatientId>, Vec<Option<u32>>) = patients
            .into_iter()
            .zip(cells)
            .filter(|(p, _)| !leave_out.contains(p))
            .map(|(p, c)| (p, Some(c)))
            .unzip();
        let ids = identifiers(job.id(), &patients);
        let (receiver, request) =
            psi::Receiver::new(rng, &ids, Mode::Linked, THREADS).map_err(|e| e.to_string())?;
        Ok(Self {
            receiver,
            cells,
            request: PsiAsk {
                job: job.id(),
                request: Hex(request.to_bytes().map_err(|e| e.to_string())?),
            },
            offered: super::model::coarse_count(patients.len()),
        })
    }

    /// The encrypted, noised, re-randomized sums per cell, from the insurer's answer. Without
    /// noise, the persons of a cell with fewer than `k` of them here are left out of it.
    pub fn sums<R: CryptoRng>(
        &self,
        job: &Job,
        answer: &PsiAnswer,
        rng: &mut R,
    ) -> Result<Sums, String> {
        let c = study(job).ok_or("not a vertical study")?;
        let n_cells = cells(job, c);
        let offer = Offer::from_bytes(&answer.response.0).map_err(|e| e.to_string())?;
        if offer.measures != c.measures().len() {
            return Err(format!(
                "the insurer's answer has {} measures, not the study's {}",
                offer.measures,
                c.measures().len()
            ));
        }
        let noise =
            side_noise(c, job.record.epsilon_reserved, n_cells, rng).map_err(|e| e.to_string())?;
        let join = |groups: &[Option<u32>], rng: &mut R| {
            medspace_privacy::join::sum_groups(&self.receiver, &offer, groups, n_cells, &noise, rng)
                .map_err(|e| e.to_string())
        };
        let (counts, sums) = join(&self.cells, rng)?;
        if c.dp {
            return Ok(sums);
        }
        let small: Vec<u32> = counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0 && **n < u64::from(job.k))
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect();
        if small.is_empty() {
            return Ok(sums);
        }
        let kept: Vec<Option<u32>> = self
            .cells
            .iter()
            .map(|cell| cell.filter(|x| !small.contains(x)))
            .collect();
        Ok(join(&kept, rng)?.1)
    }
}

/// A hospital's signed sums for `job`: it leaves out `leave_out`, joins with the insurer and
/// signs the result (what the aggregator collects).
pub async fn site_sums<E, L, T, P>(
    ctx: &mut E,
    cfg: &Config<L, P>,
    transport: &T,
    job: JobId,
    leave_out: &BTreeSet<PatientId>,
    counted_once_with: Vec<MemberId>,
) -> Result<SumsMsg, String>
where
    E: Clock + CryptoRng,
    L: Ledger,
    T: Transport,
    P: DataPlane,
{
    let state = cfg.ledger.snapshot().state;
    let j = Job::from_ledger(&state, job).map_err(|e| e.to_string())?;
    let insurer = insurer(&j).ok_or("not a vertical study")?.clone();
    let clinical = Clinical::new(cfg, &state, &j, leave_out, ctx)?;
    let deadline = ctx.current() + cfg.step_timeout + super::once::allowance(&state, &j);
    let answer = ask_until(ctx, deadline, |wait| {
        transport.psi(&insurer, clinical.request.clone(), wait)
    })
    .await
    .map_err(|e| format!("{insurer} did not answer the join: {e}"))?;
    let sums = clinical.sums(&j, &answer, ctx)?;
    let body = SumsBody {
        job,
        member: cfg.member.clone(),
        sums: Hex(sums.to_bytes().map_err(|e| e.to_string())?),
        counted_once_with,
        contribution: SignedContribution::sign(&cfg.key, job, cfg.member.clone(), clinical.offered),
    };
    Signed::sign(&cfg.key, SUMS_NAMESPACE, body).ok_or_else(|| "cannot sign".into())
}

// ---------------------------------------------------------------------------------------------
// The aggregator
// ---------------------------------------------------------------------------------------------

impl<L: Ledger, T: Transport, P: DataPlane> Aggregation<L, T, P> {
    async fn sums_of(
        &self,
        site: &MemberId,
        wait: std::time::Duration,
    ) -> Result<SumsMsg, PeerError> {
        if *site == self.cfg.member {
            self.me.sums(self.job, site.clone()).await
        } else {
            self.transport.sums(site, self.job, wait).await
        }
    }

    /// Runs a vertical study's job as its aggregator, to a posted result or failure.
    pub(crate) async fn run_vertical<E: Clock>(
        &self,
        clock: &E,
        job: &Job,
        c: &ClaimsSpec,
    ) -> Result<(), WorkerError> {
        let mut collected = Collected::default();
        let Some(insurer) = insurer(job).cloned() else {
            return self
                .fail(clock, job, &collected, "a vertical study needs its insurer")
                .await;
        };
        let state = self.cfg.ledger.snapshot().state;
        // Every hospital matches with the earlier ones and joins with the insurer first.
        let deadline =
            clock.current() + self.cfg.step_timeout * 2 + super::once::allowance(&state, job) * 2;
        let asks = hospitals(job).iter().map(|h| async move {
            let answer = ask_until(clock, deadline, |wait| self.sums_of(h, wait)).await;
            (h.clone(), answer)
        });
        let mut parts = Vec::new();
        for (h, answer) in join_all(asks).await {
            match answer
                .map_err(|e| e.to_string())
                .and_then(|m| check_sums(job, c, &m).map(|_| m))
            {
                Ok(m) => parts.push(m),
                Err(why) => collected.dropped.push((h.to_string(), why)),
            }
        }
        if parts.len() != hospitals(job).len() {
            // Nothing was opened: the round is not closed and nothing is charged.
            return self
                .fail(
                    clock,
                    job,
                    &collected,
                    "a vertical study runs with every hospital, and one did not answer",
                )
                .await;
        }
        let all: Vec<usize> = (0..job.owners.len()).collect();
        if job.record.round.is_none() {
            self.close(clock, job, &all, &all).await?;
        }
        let ask = OpenAsk {
            job: self.job,
            parts,
        };
        let deadline = clock.current() + self.cfg.step_timeout;
        let opened = ask_until(clock, deadline, |_| {
            self.transport.open(&insurer, ask.clone())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|a| check_opened(job, c, &insurer, &a).map(|()| a));
        let opened = match opened {
            Ok(a) => a,
            Err(why) => {
                collected.dropped.push((insurer.to_string(), why.clone()));
                let why = format!("{insurer} did not open the sums: {why}");
                return self.fail(clock, job, &collected, &why).await;
            }
        };
        let released = release_cells(c, &opened.values, job.k);
        let name = c.compare.as_ref().map(|g| g.name.clone());
        collected.contributions = ask
            .parts
            .iter()
            .map(|p| p.body.contribution.clone())
            .chain(std::iter::once(opened.contribution.clone()))
            .collect();
        self.cfg.store.put_collected(self.job, &collected)?;
        let mut doc = self.doc(job, &collected, Vec::new(), true);
        doc.contributions = collected
            .contributions
            .iter()
            .map(|c| (c.member.clone(), c.records))
            .collect();
        // The hospitals that could not match their patients with an earlier one.
        doc.not_counted_once = not_matched(&ask.parts);
        doc.vertical = Some(VerticalResult {
            compare: name,
            days: c.days,
            dp: c.dp,
            cells: c
                .cells(&job.spec)
                .into_iter()
                .zip(released)
                .map(|((g, with), values)| VerticalCell {
                    group: group_label(&g),
                    with,
                    values,
                })
                .collect(),
        });
        self.release_doc(clock, &doc).await
    }
}

/// The pairs of hospitals (later, earlier) whose patients were not matched.
fn not_matched(parts: &[SumsMsg]) -> Vec<(MemberId, MemberId)> {
    let mut out = Vec::new();
    for (k, later) in parts.iter().enumerate() {
        for earlier in parts.iter().take(k) {
            if !later.body.counted_once_with.contains(&earlier.body.member) {
                out.push((later.body.member.clone(), earlier.body.member.clone()));
            }
        }
    }
    out
}

/// The aggregator's checks of the insurer's opening: one value per cell and measure, and a
/// contribution of the insurer signed by its node key.
fn check_opened(
    job: &Job,
    c: &ClaimsSpec,
    insurer: &MemberId,
    a: &OpenAnswer,
) -> Result<(), String> {
    let want = cells(job, c) * values_per_cell(c);
    if a.job != job.id() || a.values.len() != want {
        return Err(format!("{} values, not the study's {want}", a.values.len()));
    }
    let key = job.keys.last().ok_or("no node key of the insurer")?;
    if a.contribution.member != *insurer || !a.contribution.verify(job.id(), key) {
        return Err("its contribution is not signed by its node key".into());
    }
    Ok(())
}
