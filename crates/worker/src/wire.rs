//! What travels between the data holders' nodes and to the requester. Every protocol message is
//! [`Signed`] by the sending member's node key, so the aggregator (and the sites it forwards
//! dealings to) know who sent what whatever the transport; the released result's hash is what
//! the aggregator posts on the ledger.
//!
//! One job's messages, in order (see [`crate::round`]):
//! 1. [`DealingMsg`] — a site's commitments, its sealed bundle of pairwise seeds and its sealed
//!    shares for every site (answer to the aggregator's dealing request);
//! 2. [`MaskRequest`] — the aggregator forwards every dealing it received (they define `U1`);
//!    the site answers [`MaskedMsg`]: its double-masked vector and its cohort size;
//! 3. [`RevealMsg`] — after the ledger fixed `(U1, U2)`, a survivor's shares of the survivors'
//!    self masks and of the dropped dealers' bundle keys;
//! 4. [`ResultDoc`] — the released result, served to the job's submitter only.
//!
//! A model's job runs many steps over one set of sites instead (see
//! [`crate::compute::model`]): the dealings only say who takes part; once the ledger fixed that
//! set, each iteration is a [`StepRequest`] (the coefficients) answered by a [`StepMsg`] (the
//! site's statistics at them, masked so that only the set's sum opens).

use medspace_types::{ContractId, Hash, JobId, Keypair, MemberId, PublicKey, Signature};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Signing namespace of a site's dealing.
pub const DEALING_NAMESPACE: &[u8] = b"medspace/worker/dealing/v2";
/// Signing namespace of a site's masked vector.
pub const MASKED_NAMESPACE: &[u8] = b"medspace/worker/masked/v2";
/// Signing namespace of a survivor's reveal.
pub const REVEAL_NAMESPACE: &[u8] = b"medspace/worker/reveal/v2";
/// Signing namespace of a site's statistics for one step of a model's fit.
pub const STEP_NAMESPACE: &[u8] = b"medspace/worker/step/v1";
/// Domain of a step's binding (its iteration and coefficients).
pub const STEP_DOMAIN: &[u8] = b"medspace/step/v1";
/// Domain of a released result's hash (the hash posted on the ledger).
pub const RESULT_DOMAIN: &[u8] = b"medspace/result/v1";

/// Bytes carried as lowercase hex in JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hex(pub Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s).map(Hex).map_err(serde::de::Error::custom)
    }
}

/// A message body with the sender's signature over its canonical JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// What is signed.
    pub body: T,
    /// The node key's signature over `SHA-256(namespace | JSON(body))`.
    pub signature: Signature,
}

fn digest<T: Serialize>(body: &T) -> Option<Hash> {
    serde_json::to_vec(body).ok().map(|b| Hash::of(&[&b]))
}

impl<T: Serialize> Signed<T> {
    /// Signs `body` with `key` in `namespace`; `None` only if the body cannot be serialized.
    pub fn sign(key: &Keypair, namespace: &[u8], body: T) -> Option<Self> {
        let d = digest(&body)?;
        Some(Self {
            signature: key.sign(namespace, &d.0),
            body,
        })
    }

    /// Whether `key` signed exactly this body in `namespace`.
    pub fn verify(&self, key: &PublicKey, namespace: &[u8]) -> bool {
        digest(&self.body).is_some_and(|d| key.verify(namespace, &d.0, &self.signature))
    }
}

/// A site's dealing for a job ([`medspace_privacy::secagg::Dealing`] on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealingBody {
    /// The job.
    pub job: JobId,
    /// The dealing site.
    pub member: MemberId,
    /// Feldman commitment to its self-mask polynomial.
    pub self_commitment: Hex,
    /// Feldman commitment to its bundle-key polynomial.
    pub bundle_commitment: Hex,
    /// Its pairwise seeds, sealed under its bundle key.
    pub bundle: Hex,
    /// One sealed share pair per site of the contract, in the contract's owner order.
    pub shares: Vec<Hex>,
    /// The sites before this one whose patients it matched its own with and left out
    /// ([`crate::compute::once`]), in contract order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counted_once_with: Vec<MemberId>,
}

/// A signed dealing.
pub type DealingMsg = Signed<DealingBody>;

/// The aggregator's request for a site's masked vector: the dealings it received, in the
/// contract's owner order. Their senders are `U1`, the sites the vector is masked with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MaskRequest {
    /// The job.
    pub job: JobId,
    /// The dealings of `U1`.
    pub dealings: Vec<DealingMsg>,
}

/// A site's double-masked vector and how many of its patients the job ran on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskedBody {
    /// The job.
    pub job: JobId,
    /// The site.
    pub member: MemberId,
    /// `U1`, the sites it is masked with (contract order).
    pub sharers: Vec<MemberId>,
    /// The masked vector (uniformly random to anyone without the unmasking shares).
    pub masked: Vec<u64>,
    /// What the site contributed, from its released (noised) counts (the ledger's contribution
    /// record); never its exact cohort size.
    pub cohort: u64,
    /// The site's own attestation of that count, for the ledger (signed with its node key).
    pub contribution: medspace_types::SignedContribution,
}

/// A signed masked vector.
pub type MaskedMsg = Signed<MaskedBody>;

/// What a survivor reveals for the ledger's `(U1, U2)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealBody {
    /// The job.
    pub job: JobId,
    /// The revealing site.
    pub member: MemberId,
    /// Its share of each survivor's self mask.
    pub self_shares: Vec<(MemberId, Hex)>,
    /// Its share of each dropped dealer's bundle key.
    pub bundle_shares: Vec<(MemberId, Hex)>,
}

/// A signed reveal.
pub type RevealMsg = Signed<RevealBody>;

/// A later site's set for the count-once rule of a job (see [`crate::compute::once`]): its
/// patients' blinded identifiers, a [`medspace_privacy::psi::Request`] in its byte form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsiAsk {
    /// The job.
    pub job: JobId,
    /// The request's bytes.
    pub request: Hex,
}

/// An earlier site's answer to a [`PsiAsk`]: a [`medspace_privacy::psi::Response`] in its
/// byte form (the receiver's set blinded again, and the sender's own blinded set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsiAnswer {
    /// The job.
    pub job: JobId,
    /// The response's bytes.
    pub response: Hex,
}

/// Namespace of a hospital's sums in a vertical study.
pub const SUMS_NAMESPACE: &[u8] = b"medspace/worker/vertical-sums/v1";

/// A hospital's encrypted, noised sums per cell of a vertical study
/// ([`crate::compute::vertical`]), signed by its node key: a
/// [`medspace_privacy::join::Sums`] in its byte form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SumsBody {
    /// The job.
    pub job: JobId,
    /// The hospital.
    pub member: MemberId,
    /// The sums' bytes.
    pub sums: Hex,
    /// The earlier hospitals it matched its patients with (count once).
    pub counted_once_with: Vec<MemberId>,
    /// Its contribution (persons offered, coarsened), signed by its node key.
    pub contribution: medspace_types::SignedContribution,
}

/// A hospital's signed sums.
pub type SumsMsg = Signed<SumsBody>;

/// The aggregator of a vertical study asks its insurer to open the total of every hospital's
/// sums (the insurer adds them up itself).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenAsk {
    /// The job.
    pub job: JobId,
    /// Every hospital's signed sums, in contract order.
    pub parts: Vec<SumsMsg>,
}

/// The insurer's opened sums (with its own noise), per cell and measure, and its signed
/// contribution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAnswer {
    /// The job.
    pub job: JobId,
    /// Per cell, per measure of the study.
    pub values: Vec<i64>,
    /// The insurer's contribution, signed by its node key.
    pub contribution: medspace_types::SignedContribution,
}

/// A vertical study's release: per cell, the persons both sites hold and the claims measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerticalResult {
    /// The clinical comparison, when the study has one (its cells alternate with and without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare: Option<String>,
    /// The window's days after the index date.
    pub days: u32,
    /// Whether both sides noised the values.
    pub dp: bool,
    /// The cells, in the study's layout.
    pub cells: Vec<VerticalCell>,
}

/// One cell of a vertical study's release.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerticalCell {
    /// The `group_by` group's label (`"all"` without one).
    pub group: String,
    /// With (`true`) or without the compared condition, when the study has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<bool>,
    /// The released values.
    #[serde(flatten)]
    pub values: medspace_privacy::query::claims::ClaimsCell,
}

impl VerticalCell {
    /// The cell in words: its group and, for a comparison of `name`, with or without it.
    pub fn label(&self, name: Option<&str>) -> String {
        let split = match (self.with, name) {
            (Some(true), Some(n)) => format!("with {n}"),
            (Some(false), Some(n)) => format!("without {n}"),
            _ => return self.group.clone(),
        };
        if self.group == "all" {
            split
        } else {
            format!("{}, {split}", self.group)
        }
    }
}

/// An overlap job's release: per pair of sites, how many persons of the cohort both hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlapResult {
    /// Whether the counts were noised.
    pub dp: bool,
    /// `(earlier site, later site, count)`: `None` below `k`, or when the later site could
    /// not match with the earlier one.
    pub pairs: Vec<(MemberId, MemberId, Option<i64>)>,
}

/// The aggregator asks every site of a model's job for its statistics at `beta`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRequest {
    /// The job.
    pub job: JobId,
    /// The iteration (0 first); a site answers each once, in increasing order.
    pub iteration: u32,
    /// The coefficients, intercept first.
    pub beta: Vec<f64>,
    /// Every earlier iteration's answers from the job's set, in order: from them each site
    /// replays the fit and answers only if `beta` is the Newton step they lead to, so the
    /// aggregator never chooses the coefficients a site computes at.
    #[serde(default)]
    pub history: Vec<Vec<StepMsg>>,
}

impl StepRequest {
    /// What binds a site's answer to this step: the job, the iteration and the exact
    /// coefficients (their IEEE bits), so masks cancel only among answers to the same request.
    pub fn binding(&self) -> [u8; 32] {
        let bits: Vec<u8> = self
            .beta
            .iter()
            .flat_map(|b| b.to_bits().to_be_bytes())
            .collect();
        Hash::of(&[
            STEP_DOMAIN,
            &self.job.0.to_be_bytes(),
            &self.iteration.to_be_bytes(),
            &bits,
        ])
        .0
    }
}

/// A site's masked statistics for one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepBody {
    /// The job.
    pub job: JobId,
    /// The site.
    pub member: MemberId,
    /// The iteration answered.
    pub iteration: u32,
    /// The request's [`StepRequest::binding`].
    pub binding: Hex,
    /// The statistics' fixed-point encoding, masked ([`medspace_privacy::secagg::mask_step`]).
    pub masked: Vec<u64>,
    /// The site's attestation of its contribution (its cohort, coarsened), for the ledger.
    pub contribution: medspace_types::SignedContribution,
}

/// A signed step answer.
pub type StepMsg = Signed<StepBody>;

/// One coefficient of a released model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TermRow {
    /// `intercept` or the covariate's name.
    pub name: String,
    /// The coefficient.
    pub coefficient: f64,
    /// Its standard error.
    pub std_error: f64,
    /// Wald z.
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// 95% Wald interval.
    pub ci_low: f64,
    /// 95% Wald interval.
    pub ci_high: f64,
    /// `exp(coefficient)` and its interval: the odds ratio (logistic) or rate ratio (Poisson).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<[f64; 3]>,
}

/// A released model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    /// `logistic`, `poisson` or `linear`.
    pub family: String,
    /// The coefficients, intercept first.
    pub terms: Vec<TermRow>,
    /// Residual deviance.
    pub deviance: f64,
    /// Newton iterations run.
    pub iterations: u32,
    /// Persons in the fit (all sites).
    pub n: u64,
    /// Dispersion (1 for logistic and Poisson).
    pub scale: f64,
    /// Whether each site noised its statistics (differential privacy).
    pub dp: bool,
}

/// One time bin of a released survival curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Start of the bin, days after the index date.
    pub day: u32,
    /// Persons at risk at its start.
    pub at_risk: u64,
    /// Events in it.
    pub events: u64,
    /// Censored in it.
    pub censored: u64,
    /// Survival at its end.
    pub survival: f64,
    /// 95% band.
    pub ci_low: f64,
    /// 95% band.
    pub ci_high: f64,
}

/// A released survival curve of one group; it stops where the risk set fell below `k`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurveResult {
    /// The group (`all`, `female`, …).
    pub group: String,
    /// Persons followed.
    pub entered: u64,
    /// The released bins.
    pub points: Vec<CurvePoint>,
    /// Bins withheld because the risk set was below `k`.
    pub suppressed_bins: u32,
}

/// Released survival curves and the log-rank test between their groups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SurvivalResult {
    /// Width of a bin in days.
    pub bin_days: u32,
    /// One curve per group.
    pub curves: Vec<CurveResult>,
    /// Log-rank chi-square, degrees of freedom and p-value (with two groups or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_rank: Option<(f64, u32, f64)>,
}

/// A drug-safety job's released table: each pair's 2×2 table and statistics, pairs with a cell
/// below `k` suppressed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrugSafetyResult {
    /// Every drug × event pair assessed as one scan (Benjamini–Hochberg at `fdr`).
    pub scan: bool,
    /// The scan's false discovery rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fdr: Option<f64>,
    /// The risk window in days.
    pub window_days: u32,
    /// The new-user washout in days.
    pub washout_days: u32,
    /// Whether the sites noised their cells.
    pub dp: bool,
    /// The pairs, in the specification's order.
    pub pairs: Vec<medspace_privacy::pharmacovigilance::PairResult>,
}

/// A surveillance window's released counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SurveillanceResult {
    /// The window.
    pub window: u32,
    /// Its first day, `YYYY-MM-DD`.
    pub from: String,
    /// Its length in days.
    pub days: u32,
    /// The syndromes' names (outermost in `cells`).
    pub syndromes: Vec<String>,
    /// The regions.
    pub regions: Vec<String>,
    /// The age bands (innermost in `cells`).
    pub bands: Vec<String>,
    /// Whether the counts were noised at every site.
    pub dp: bool,
    /// Persons per syndrome × region × band; `None` when withheld (below `k`; without noise,
    /// every band of a total is withheld when one is).
    pub cells: Vec<Option<i64>>,
    /// Persons per syndrome × region. With noise, the sum of its bands' noised counts
    /// (withheld ones included: post-processing of differentially private counts reveals
    /// nothing more); without, the exact total, `None` below `k`.
    pub totals: Vec<Option<i64>>,
}

/// One released cell of a result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultCell {
    /// The group (`all`, `female`, `male 40-49`, …).
    pub group: String,
    /// Persons, with noise; `None` when suppressed (below `k`).
    pub n: Option<i64>,
    /// Mean of the measurement, for mean queries.
    pub mean: Option<f64>,
}

/// A job's released result, as the requester receives it. Its [`result_hash`] over the exact
/// bytes served is the hash on the ledger.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultDoc {
    /// Format version (2: double-masked aggregation).
    pub version: u32,
    /// The job.
    pub job: JobId,
    /// Its contract.
    pub contract: ContractId,
    /// The aggregating site.
    pub aggregator: MemberId,
    /// Suppression threshold applied.
    pub k: u32,
    /// Epsilon the noise was calibrated to, micro-epsilon.
    pub epsilon_micro: u64,
    /// The cells, in the query's fixed group order.
    pub cells: Vec<ResultCell>,
    /// Sites that contributed, with their cohort sizes.
    pub contributions: Vec<(MemberId, u64)>,
    /// Sites whose data is not in the result, with why.
    pub dropped: Vec<(MemberId, String)>,
    /// Why nothing was released, when nothing was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The fitted model, for a model's job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelResult>,
    /// The survival curves, for a survival job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survival: Option<SurvivalResult>,
    /// The disproportionality table, for a drug-safety job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drug_safety: Option<DrugSafetyResult>,
    /// The window's counts, for a surveillance job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surveillance: Option<SurveillanceResult>,
    /// The cells of a vertical study.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vertical: Option<VerticalResult>,
    /// The intersection sizes of an overlap job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<OverlapResult>,
    /// Pairs of contributing sites (later, earlier) whose patients were NOT matched, so a
    /// patient held by both may count twice (the later one could not reach the earlier one,
    /// or holds no pseudonyms); empty when every patient counts once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_counted_once: Vec<(MemberId, MemberId)>,
}

/// The hash of a served result's bytes: what the aggregator posts on the ledger.
pub fn result_hash(bytes: &[u8]) -> Hash {
    Hash::of(&[RESULT_DOMAIN, bytes])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_messages_verify_only_unchanged_by_their_signer_in_their_namespace() {
        let k = Keypair::from_seed(1);
        let other = Keypair::from_seed(2);
        let body = MaskedBody {
            job: JobId(7),
            member: MemberId::new("hospital-a").unwrap(),
            sharers: vec![MemberId::new("hospital-a").unwrap()],
            masked: vec![1, 2, 3],
            cohort: 12,
            contribution: medspace_types::SignedContribution::sign(
                &k,
                JobId(7),
                MemberId::new("hospital-a").unwrap(),
                12,
            ),
        };
        let s = Signed::sign(&k, MASKED_NAMESPACE, body).unwrap();
        assert!(s.verify(&k.public(), MASKED_NAMESPACE));
        assert!(!s.verify(&other.public(), MASKED_NAMESPACE));
        assert!(!s.verify(&k.public(), REVEAL_NAMESPACE));
        let mut t = s.clone();
        t.body.masked[1] ^= 1;
        assert!(!t.verify(&k.public(), MASKED_NAMESPACE));
        let mut t = s.clone();
        t.body.cohort += 1;
        assert!(!t.verify(&k.public(), MASKED_NAMESPACE));
        let json = serde_json::to_string(&s).unwrap();
        let back: MaskedMsg = serde_json::from_str(&json).unwrap();
        assert!(back.verify(&k.public(), MASKED_NAMESPACE));
        assert!(serde_json::from_str::<Hex>("\"zz\"").is_err());
    }
}
