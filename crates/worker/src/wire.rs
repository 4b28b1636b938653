//! What travels between nodes and to the requester: a site's masked share, a survivor's mask
//! reveal for dropped sites, and the released result. Shares and reveals are signed by the
//! sending member's ledger key, so the aggregator knows who sent what whatever the transport;
//! the result's hash is what the aggregator posts on the ledger.

use medspace_types::{Hash, JobId, Keypair, MemberId, PublicKey, Signature};
use serde::{Deserialize, Serialize};

/// Signing namespace of a site's share.
pub const SHARE_NAMESPACE: &[u8] = b"medspace/worker/share/v1";
/// Signing namespace of a survivor's reveal.
pub const REVEAL_NAMESPACE: &[u8] = b"medspace/worker/reveal/v1";
/// Domain of a released result's hash (the hash posted on the ledger).
pub const RESULT_DOMAIN: &[u8] = b"medspace/result/v1";

fn words_hash(words: &[u64]) -> Hash {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
    Hash::of(&[&bytes])
}

/// One site's contribution to a job: its masked vector (uniformly random to anyone without the
/// other sites' shares) and how many of its patients were in the cohort.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// The job.
    pub job: JobId,
    /// The sending site.
    pub member: MemberId,
    /// Consenting patients the site's query ran on (the ledger's contribution record).
    pub cohort: u64,
    /// The masked, noised vector.
    pub masked: Vec<u64>,
    /// The member key's signature over all of the above.
    pub signature: Signature,
}

impl Share {
    fn message(job: JobId, member: &MemberId, cohort: u64, masked: &[u64]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&job.0.to_be_bytes());
        m.extend_from_slice(member.as_str().as_bytes());
        m.push(0);
        m.extend_from_slice(&cohort.to_be_bytes());
        m.extend_from_slice(&words_hash(masked).0);
        m
    }

    /// A share signed by the site's member key.
    pub fn sign(
        key: &Keypair,
        job: JobId,
        member: MemberId,
        cohort: u64,
        masked: Vec<u64>,
    ) -> Self {
        let signature = key.sign(
            SHARE_NAMESPACE,
            &Self::message(job, &member, cohort, &masked),
        );
        Self {
            job,
            member,
            cohort,
            masked,
            signature,
        }
    }

    /// Whether `key` signed exactly this share.
    pub fn verify(&self, key: &PublicKey) -> bool {
        key.verify(
            SHARE_NAMESPACE,
            &Self::message(self.job, &self.member, self.cohort, &self.masked),
            &self.signature,
        )
    }
}

/// What a surviving site reveals when others dropped out: the net of its pairwise masks with the
/// dropped sites, which the aggregator subtracts from the survivors' sum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reveal {
    /// The job.
    pub job: JobId,
    /// The revealing site.
    pub member: MemberId,
    /// The sites that dropped out, in the contract's owner order.
    pub dropped: Vec<MemberId>,
    /// The net mask with them.
    pub values: Vec<u64>,
    /// The member key's signature over all of the above.
    pub signature: Signature,
}

impl Reveal {
    fn message(job: JobId, member: &MemberId, dropped: &[MemberId], values: &[u64]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&job.0.to_be_bytes());
        m.extend_from_slice(member.as_str().as_bytes());
        for d in dropped {
            m.push(0);
            m.extend_from_slice(d.as_str().as_bytes());
        }
        m.push(1);
        m.extend_from_slice(&words_hash(values).0);
        m
    }

    /// A reveal signed by the site's member key.
    pub fn sign(
        key: &Keypair,
        job: JobId,
        member: MemberId,
        dropped: Vec<MemberId>,
        values: Vec<u64>,
    ) -> Self {
        let signature = key.sign(
            REVEAL_NAMESPACE,
            &Self::message(job, &member, &dropped, &values),
        );
        Self {
            job,
            member,
            dropped,
            values,
            signature,
        }
    }

    /// Whether `key` signed exactly this reveal.
    pub fn verify(&self, key: &PublicKey) -> bool {
        key.verify(
            REVEAL_NAMESPACE,
            &Self::message(self.job, &self.member, &self.dropped, &self.values),
            &self.signature,
        )
    }
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
    /// Format version (1).
    pub version: u32,
    /// The job.
    pub job: JobId,
    /// Its contract.
    pub contract: medspace_types::ContractId,
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
    /// Sites whose share did not arrive (their data is not in the result), with why.
    pub dropped: Vec<(MemberId, String)>,
}

/// The hash of a served result's bytes: what the aggregator posts on the ledger.
pub fn result_hash(bytes: &[u8]) -> Hash {
    Hash::of(&[RESULT_DOMAIN, bytes])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_reveals_verify_only_unchanged_and_by_their_signer() {
        let k = Keypair::from_seed(1);
        let other = Keypair::from_seed(2);
        let m = MemberId::new("hospital-a").unwrap();
        let s = Share::sign(&k, JobId(7), m.clone(), 12, vec![1, 2, 3]);
        assert!(s.verify(&k.public()));
        assert!(!s.verify(&other.public()));
        let mut t = s.clone();
        t.masked[1] ^= 1;
        assert!(!t.verify(&k.public()));
        let mut t = s.clone();
        t.cohort += 1;
        assert!(!t.verify(&k.public()));
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Share>(&json).unwrap(), s);

        let d = vec![MemberId::new("hospital-c").unwrap()];
        let r = Reveal::sign(&k, JobId(7), m, d, vec![9, 9]);
        assert!(r.verify(&k.public()));
        let mut t = r.clone();
        t.dropped.clear();
        assert!(!t.verify(&k.public()));
    }
}
