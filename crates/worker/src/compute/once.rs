//! Counting a patient once across sites: before a site computes its part of a job, it runs a
//! linked private set intersection ([`medspace_privacy::psi`], ECDH on ristretto255) with every
//! site before it in the contract's order, over the ledger pseudonyms of the patients who may
//! count in the job (linked here and consenting at the job's height), and leaves out the
//! patients an earlier site also holds. The earliest site keeps everyone, so a patient treated
//! at several hospitals counts once, with the record of the first of them.
//!
//! Roles, for each pair of sites `i < j`: `j` is the receiver (it sends its blinded set to `i`
//! at `POST /v1/worker/jobs/{job}/psi` and learns which of its own patients `i` also holds),
//! `i` the sender (it learns only how many patients `j` sent). Neither learns anything of the
//! other's patients outside the intersection.
//!
//! What a sender enforces ([`check_request`]), since the receiver chooses its set and the
//! ledger's pseudonyms are public: only a later site of the job may ask, while the job runs;
//! one set per (job, receiver), ever (the first request's hash is kept, so a second, stuffed
//! set is refused even after a restart); no more elements than the persons the receiver's own
//! catalog entries publish. A receiver could still put other pseudonyms in place of its own
//! within that bound; the request's size and hash are kept on both sides for the audit, and
//! what it could learn is limited to whether those patients are at the sender.
//!
//! A sender that cannot be reached within half the job's dealing deadline (plus the matching's
//! [`allowance`], which grows with the persons the sites publish) is not waited for: it will not
//! contribute either, so nobody is counted twice (its patients shared with this site then
//! count here). A sender that refuses is logged and its patients kept here.

use super::{Config, DataPlane};
use crate::round::{Job, job_binding};
use crate::transport::{PeerError, Transport};
use crate::wire::{Hex, PsiAnswer, PsiAsk};
use medspace_ledger::Ledger;
use medspace_privacy::psi::{self, ContractKey, Mode, Receiver, Sender};
use medspace_state::State;
use medspace_types::{Hash, JobId, MemberId, PatientId};
use rand_core::CryptoRng;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

/// Threads a PSI computation may use (the node's other services keep running beside it).
const THREADS: usize = 2;

/// The PSI mode of `job`'s runs between sites: cardinality-only for an overlap job (a later
/// site learns how many persons it shares with an earlier one, nothing else), linked for the
/// count-once rule of every other job.
pub fn mode_of(job: &Job) -> Mode {
    match job.spec.aggregate {
        medspace_privacy::query::Aggregate::Overlap(_) => Mode::Cardinality,
        _ => Mode::Linked,
    }
}

/// The identifier key of a job's count-once runs: the pseudonyms are hashed under a key bound
/// to the job, so one job's messages cannot be matched with another's. It is public (derived
/// from the job); the secrecy is the ECDH exponents', drawn afresh for every run.
fn job_key(job: JobId) -> ContractKey {
    ContractKey::derive(&job_binding(job), b"medspace/count-once/v1")
}

/// The PSI elements of `patients`, in their order.
pub fn identifiers(job: JobId, patients: &[PatientId]) -> Vec<psi::Identifier> {
    keyed(&job_key(job), patients)
}

/// `patients`' pseudonyms hashed under `key`, in their order.
pub(crate) fn keyed(key: &ContractKey, patients: &[PatientId]) -> Vec<psi::Identifier> {
    patients
        .iter()
        .map(|p| psi::pseudonym_identifier(key, &p.0))
        .collect()
}

/// The hash a sender keeps of the first request of each receiver.
pub fn request_hash(bytes: &[u8]) -> Hash {
    Hash::of(&[b"medspace/count-once/request/v1", bytes])
}

/// The most persons `member`'s own catalog entries publish (its `person` tables' rows): the
/// bound on the set it may send.
pub(crate) fn published_persons(state: &State, member: &MemberId) -> u64 {
    state
        .datasets()
        .unwrap_or_default()
        .iter()
        .filter(|d| d.owner == *member)
        .flat_map(|d| d.description.tables.iter())
        .filter(|t| t.name.as_str() == "person")
        .map(|t| t.rows)
        .sum()
}

/// Wall time the matching may take per person the job's sites publish: both parties' curve
/// work is about 80 core-µs per element (`medspace bench psi`), done on two threads, with room
/// for a busy node.
const PER_PERSON: Duration = Duration::from_micros(100);
/// The most the matching of one job is allowed, whatever the catalog says.
const MAX_ALLOWANCE: Duration = Duration::from_secs(30 * 60);

/// The time the count-once matching of `job` is allowed on top of the round's own deadline,
/// from the persons its sites publish (the sets are at most that large): what lets a job over
/// large hospitals still match before the sites deal, and the aggregator wait for them. The
/// same on every node (it reads only the ledger).
pub fn allowance(state: &State, job: &Job) -> Duration {
    if job.owners.len() < 2 {
        return Duration::ZERO;
    }
    let persons: u64 = job
        .owners
        .iter()
        .map(|m| published_persons(state, m))
        .fold(0, u64::saturating_add);
    allowance_for(persons)
}

/// [`allowance`] for `persons` published in all.
fn allowance_for(persons: u64) -> Duration {
    PER_PERSON
        .saturating_mul(u32::try_from(persons).unwrap_or(u32::MAX))
        .min(MAX_ALLOWANCE)
}

/// A sender's checks of a receiver's request, before any work: the job runs, the caller is a
/// site after this one, the set is a linked one within the caller's published persons.
/// Who asks is checked first.
/// Returns the parsed request.
pub fn check_request(
    state: &State,
    job: &Job,
    me: &MemberId,
    caller: &MemberId,
    ask: &PsiAsk,
) -> Result<psi::Request, PeerError> {
    let (Some(mine), Some(theirs)) = (job.index(me), job.index(caller)) else {
        return Err(PeerError::Forbidden(format!(
            "{caller} is not a data holder of {}",
            job.id()
        )));
    };
    if theirs <= mine {
        return Err(PeerError::Forbidden(format!(
            "only a site after {me} in the contract's order sends it its set, not {caller}"
        )));
    }
    if job.record.status != medspace_state::records::JobStatus::Submitted {
        return Err(PeerError::Refused(format!("{} already ended", job.id())));
    }
    let request =
        psi::Request::from_bytes(&ask.request.0).map_err(|e| PeerError::Refused(e.to_string()))?;
    if request.mode != mode_of(job) {
        return Err(PeerError::Refused(format!(
            "this job's sets run {}",
            match mode_of(job) {
                Mode::Linked => "linked",
                Mode::Cardinality => "cardinality-only",
            }
        )));
    }
    let bound = published_persons(state, caller);
    if request.points.len() as u64 > bound {
        return Err(PeerError::Refused(format!(
            "{} elements from {caller}, whose catalog publishes {bound} persons",
            request.points.len()
        )));
    }
    Ok(request)
}

/// A site's blinded set per running job, made once and used for every later site's answer (as
/// [`psi::dedup_plan`] does): the sets' hashing and blinding is half a sender's work.
pub type Senders = std::sync::Mutex<std::collections::BTreeMap<JobId, std::sync::Arc<Sender>>>;

/// The sender's answer: its own patients of the job, blinded under a secret drawn once per job
/// (kept in `senders`), and the receiver's set blinded again.
pub fn answer<P: DataPlane, R: CryptoRng>(
    plane: &P,
    senders: &Senders,
    state: &State,
    job: JobId,
    me: &MemberId,
    request: &psi::Request,
    rng: &mut R,
) -> Result<PsiAnswer, String> {
    let sender = {
        // Held while the set is blinded: a second receiver's answer waits for it rather than
        // blinding it again.
        let mut kept = senders
            .lock()
            .map_err(|_| "the count-once state is poisoned".to_string())?;
        match kept.get(&job) {
            Some(s) => s.clone(),
            None => {
                let patients = plane
                    .job_patients(state, job, me)
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default();
                let ids = identifiers(job, &patients);
                let s = std::sync::Arc::new(
                    Sender::new(rng, &ids, request.mode, THREADS).map_err(|e| e.to_string())?,
                );
                kept.insert(job, s.clone());
                s
            }
        }
    };
    let response = sender.respond(request, rng).map_err(|e| e.to_string())?;
    Ok(PsiAnswer {
        job,
        response: Hex(response.to_bytes().map_err(|e| e.to_string())?),
    })
}

/// What a site found before computing a job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matched {
    /// Its patients a site before it also holds: left out here.
    pub leave_out: BTreeSet<PatientId>,
    /// The sites before it it matched its patients with (all of them when it has no patient
    /// in the job; none for a data plane without pseudonyms).
    pub with: Vec<MemberId>,
    /// For an overlap job: how many of its persons each earlier site also holds (the sites
    /// that answered), and how many persons it offered.
    pub shared: Vec<(MemberId, u64)>,
    /// The persons it offered.
    pub offered: u64,
}

/// What this site leaves out of `job`: its patients that a site before it also holds. Empty
/// for the first site, for a data plane without pseudonyms, and when no earlier site answers.
pub async fn leave_out<E, L, T, P>(
    ctx: &mut E,
    cfg: &Config<L, P>,
    transport: &T,
    job: JobId,
) -> Matched
where
    E: commonware_runtime::Clock + CryptoRng,
    L: Ledger,
    T: Transport,
    P: DataPlane,
{
    let state = cfg.ledger.snapshot().state;
    let Ok(j) = Job::from_ledger(&state, job) else {
        return Matched::default();
    };
    // Half the aggregator's wait for dealings plus the matching's allowance (which the
    // aggregator adds to its wait too): a site that gives up on an unreachable earlier one
    // still deals in time.
    let deadline = ctx.current() + cfg.step_timeout / 2 + allowance(&state, &j);
    let Some(mine) = j.index(&cfg.member) else {
        return Matched::default();
    };
    let earlier = j.owners.get(..mine).unwrap_or_default();
    if earlier.is_empty() {
        return Matched::default();
    }
    let patients = match cfg.plane.job_patients(&state, job, &cfg.member) {
        Ok(Some(p)) if p.is_empty() => {
            // Nobody here to count twice (or to share).
            return Matched {
                leave_out: BTreeSet::new(),
                with: earlier.to_vec(),
                shared: earlier.iter().map(|m| (m.clone(), 0)).collect(),
                offered: 0,
            };
        }
        Ok(Some(p)) => p,
        Ok(None) => return Matched::default(),
        Err(e) => {
            tracing::warn!(job = %job, error = %e, "worker.once: no set");
            return Matched::default();
        }
    };
    let ids = identifiers(job, &patients);
    let mode = mode_of(&j);
    let (receiver, request) =
        match Receiver::new(ctx, &ids, mode, THREADS).and_then(|(r, q)| Ok((r, q.to_bytes()?))) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(job = %job, error = %e, "worker.once: cannot blind the set");
                return Matched::default();
            }
        };
    let mut out = Matched {
        offered: patients.len() as u64,
        ..Matched::default()
    };
    for site in earlier {
        let ask = PsiAsk {
            job,
            request: Hex(request.clone()),
        };
        let answered = ask_site(ctx, deadline, transport, site, ask).await;
        let found = answered.and_then(|a| {
            let response = psi::Response::from_bytes(&a.response.0)
                .map_err(|e| PeerError::Malformed(e.to_string()))?;
            receiver
                .finish(&response)
                .map_err(|e| PeerError::Malformed(e.to_string()))
        });
        match found {
            Ok(psi::PsiOutput::Linked(hits)) => {
                tracing::info!(job = %job, site = %site, shared = hits.len(), "worker.once: patients left to an earlier site");
                out.leave_out
                    .extend(hits.iter().filter_map(|i| patients.get(*i).copied()));
                out.with.push(site.clone());
            }
            Ok(psi::PsiOutput::Cardinality(n)) => {
                tracing::info!(job = %job, site = %site, shared = n, "worker.overlap: counted");
                out.shared.push((site.clone(), n as u64));
                out.with.push(site.clone());
            }
            Err(e) => {
                tracing::warn!(job = %job, site = %site, error = %e, "worker.once: no answer; its shared patients count here")
            }
        }
    }
    out
}

/// The pairs of an overlap job's `m` sites in layout order: `(i, j)` for `i < j`, by `i`
/// then `j`.
pub fn overlap_pairs(m: usize) -> Vec<(usize, usize)> {
    (0..m)
        .flat_map(|i| ((i + 1)..m).map(move |j| (i, j)))
        .collect()
}

/// This site's vector of an overlap job: its noised count (with `dp`) for each earlier site it
/// was matched with, zeros elsewhere; its contribution is the persons it offered, coarsened.
/// A person here changes at most the counts with the `sites - 1` others.
pub fn overlap_vector<P: DataPlane, L, R: CryptoRng>(
    cfg: &Config<L, P>,
    state: &State,
    job: &Job,
    matched: &Matched,
    rng: &mut R,
) -> Result<super::SiteVector, String> {
    let medspace_privacy::query::Aggregate::Overlap(spec) = &job.spec.aggregate else {
        return Err("not an overlap job".into());
    };
    let m = job.owners.len();
    let mine = job.index(&cfg.member).ok_or("not a site of this job")?;
    let pairs = overlap_pairs(m);
    let mut values = vec![0i64; pairs.len()];
    let mechanism = medspace_privacy::dp::Mechanism::Laplace {
        epsilon_micro: job.record.epsilon_reserved,
        sensitivity: m.saturating_sub(1).max(1) as u64,
    };
    for (site, n) in &matched.shared {
        let Some(i) = job.index(site) else { continue };
        let Some(cell) = pairs.iter().position(|p| *p == (i, mine)) else {
            continue;
        };
        let noise = if spec.dp {
            mechanism.noise(rng).map_err(|e| e.to_string())?
        } else {
            0
        };
        if let Some(v) = values.get_mut(cell) {
            *v = i64::try_from(*n).unwrap_or(i64::MAX).saturating_add(noise);
        }
    }
    let offered = if mine == 0 {
        cfg.plane
            .job_patients(state, job.id(), &cfg.member)
            .map_err(|e| e.to_string())?
            .map_or(0, |p| p.len() as u64)
    } else {
        matched.offered
    };
    Ok(super::SiteVector {
        values,
        cohort: super::model::coarse_count(usize::try_from(offered).unwrap_or(usize::MAX)),
    })
}

async fn ask_site<E: commonware_runtime::Clock, T: Transport>(
    clock: &E,
    deadline: SystemTime,
    transport: &T,
    site: &MemberId,
    ask: PsiAsk,
) -> Result<PsiAnswer, PeerError> {
    crate::transport::ask_until(clock, deadline, |wait| {
        transport.psi(site, ask.clone(), wait)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_grows_with_the_persons_and_is_capped() {
        let per = allowance_for;
        assert_eq!(per(0), Duration::ZERO);
        // Three hospitals of a million persons: five minutes.
        assert_eq!(per(3_000_000), Duration::from_secs(300));
        assert_eq!(per(u64::MAX), MAX_ALLOWANCE);
    }
}
