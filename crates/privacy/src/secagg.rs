//! Pairwise-masked secure aggregation of integer vectors over Z/2^64.
//!
//! Every site `i` holds an X25519 static secret whose public key is registered on the ledger, so
//! every pair of sites `(i, j)` shares a Diffie–Hellman secret. For a job, the pair derives a seed
//! with HKDF-SHA256 (info = `"medspace/secagg/v1" | job | min(i,j) | max(i,j)`, indices as
//! big-endian u64) and expands it with ChaCha20 into a mask vector. Site `i` adds the mask for
//! every `j > i` and subtracts it for every `j < i` (wrapping), so the masks cancel in the sum of
//! all shares and the aggregator learns only the total.
//!
//! Dropout: if some sites never send their share, each survivor reveals the net mask it applied
//! with the dropped sites ([`unmask_dropped`]) and the aggregator removes it
//! ([`aggregate_with_dropouts`]). This is the single-mask variant: a dropped site's share must
//! then never be accepted late, because its masks with the survivors are no longer secret (the
//! aggregator must close the round before asking for reveals). Bonawitz et al.'s double masking
//! would remove that requirement at the price of secret sharing; it is not implemented here.
//!
//! Signed values are carried in two's complement ([`encode_i64`], [`decode_i64`]): sums wrap
//! consistently and decode correctly as long as the true total fits in an `i64`.

use hkdf::Hkdf;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use sha2::Sha256;
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};

/// Domain-separation prefix of the per-pair seed derivation.
pub const INFO_PREFIX: &[u8] = b"medspace/secagg/v1";

/// Errors from masking and aggregation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecAggError {
    /// `me` (or a dropped index) is not a position in the site list.
    #[error("site index out of range: index={index} sites={sites}")]
    SiteOutOfRange { index: usize, sites: usize },
    /// The public key at position `me` is not the one derived from the caller's secret.
    #[error("own public key does not match the site list: site={site}")]
    KeyMismatch { site: usize },
    /// A peer's public key gives an all-zero (non-contributory) shared secret: a low-order point.
    #[error("peer public key is a low-order point: site={site}")]
    WeakPeerKey { site: usize },
    /// A site listed itself as dropped.
    #[error("a survivor cannot reveal masks for itself: site={site}")]
    SelfDropped { site: usize },
    /// HKDF refused the output length (cannot happen for the 32-byte seed).
    #[error("seed derivation failed")]
    Kdf,
    /// Nothing to aggregate.
    #[error("no shares to aggregate")]
    NoShares,
    /// Shares (or reveals) of different lengths.
    #[error("vector length mismatch: index={index} expected={expected} got={got}")]
    LengthMismatch {
        index: usize,
        expected: usize,
        got: usize,
    },
}

/// Two's complement encoding of a signed value into Z/2^64.
pub fn encode_i64(value: i64) -> u64 {
    value as u64
}

/// Inverse of [`encode_i64`]: the signed value of a (summed) element of Z/2^64.
pub fn decode_i64(value: u64) -> i64 {
    value as i64
}

fn check_me(me: usize, my_secret: &StaticSecret, peers: &[PublicKey]) -> Result<(), SecAggError> {
    let mine = peers.get(me).ok_or(SecAggError::SiteOutOfRange {
        index: me,
        sites: peers.len(),
    })?;
    if PublicKey::from(my_secret).as_bytes() != mine.as_bytes() {
        return Err(SecAggError::KeyMismatch { site: me });
    }
    Ok(())
}

/// The pairwise mask vector between `me` and `other` for `job`, as added by the lower index.
fn pair_mask(
    job: &[u8; 32],
    me: usize,
    other: usize,
    my_secret: &StaticSecret,
    other_key: &PublicKey,
    len: usize,
) -> Result<Vec<u64>, SecAggError> {
    let shared = my_secret.diffie_hellman(other_key);
    if !shared.was_contributory() {
        return Err(SecAggError::WeakPeerKey { site: other });
    }
    let (lo, hi) = if me < other { (me, other) } else { (other, me) };
    let mut info = Vec::with_capacity(INFO_PREFIX.len() + 32 + 16);
    info.extend_from_slice(INFO_PREFIX);
    info.extend_from_slice(job);
    info.extend_from_slice(&(lo as u64).to_be_bytes());
    info.extend_from_slice(&(hi as u64).to_be_bytes());
    let mut seed = [0u8; 32];
    // A 32-byte output is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
    Hkdf::<Sha256>::new(None, shared.as_bytes())
        .expand(&info, &mut seed)
        .map_err(|_| SecAggError::Kdf)?;
    let mut rng = ChaCha20Rng::from_seed(seed);
    Ok((0..len).map(|_| rng.next_u64()).collect())
}

/// Adds (`me < j`) or subtracts (`me > j`) the pair mask with `j` into `acc`.
fn apply(acc: &mut [u64], mask: &[u64], add: bool) {
    for (a, m) in acc.iter_mut().zip(mask) {
        *a = if add {
            a.wrapping_add(*m)
        } else {
            a.wrapping_sub(*m)
        };
    }
}

/// Masks site `me`'s `values` for `job`. `peers` lists every site's public key in site order,
/// including `me`'s own (checked against `my_secret`).
pub fn mask(
    job: &[u8; 32],
    me: usize,
    my_secret: &StaticSecret,
    peers: &[PublicKey],
    values: &[u64],
) -> Result<Vec<u64>, SecAggError> {
    check_me(me, my_secret, peers)?;
    let mut out = values.to_vec();
    for (j, key) in peers.iter().enumerate() {
        if j == me {
            continue;
        }
        let m = pair_mask(job, me, j, my_secret, key, values.len())?;
        apply(&mut out, &m, me < j);
    }
    Ok(out)
}

/// Sums masked shares (wrapping). With every site's share present the masks cancel and the
/// result is the sum of the sites' values.
pub fn aggregate(shares: &[Vec<u64>]) -> Result<Vec<u64>, SecAggError> {
    let first = shares.first().ok_or(SecAggError::NoShares)?;
    let mut sum = vec![0u64; first.len()];
    for (index, share) in shares.iter().enumerate() {
        if share.len() != sum.len() {
            return Err(SecAggError::LengthMismatch {
                index,
                expected: sum.len(),
                got: share.len(),
            });
        }
        apply(&mut sum, share, true);
    }
    Ok(sum)
}

/// What survivor `me` reveals after the sites in `dropped` failed to send their shares: the net
/// mask `me` applied with them (vector of length `len`), which the aggregator subtracts.
/// It reveals nothing about `me`'s values or its masks with other survivors.
pub fn unmask_dropped(
    job: &[u8; 32],
    me: usize,
    my_secret: &StaticSecret,
    peers: &[PublicKey],
    dropped: &[usize],
    len: usize,
) -> Result<Vec<u64>, SecAggError> {
    check_me(me, my_secret, peers)?;
    let mut dropped: Vec<usize> = dropped.to_vec();
    dropped.sort_unstable();
    dropped.dedup();
    let mut out = vec![0u64; len];
    for &d in &dropped {
        if d == me {
            return Err(SecAggError::SelfDropped { site: me });
        }
        let key = peers.get(d).ok_or(SecAggError::SiteOutOfRange {
            index: d,
            sites: peers.len(),
        })?;
        let m = pair_mask(job, me, d, my_secret, key, len)?;
        apply(&mut out, &m, me < d);
    }
    Ok(out)
}

/// Total of the survivors' values: the sum of their shares minus every survivor's reveal from
/// [`unmask_dropped`]. All vectors must have the same length.
pub fn aggregate_with_dropouts(
    shares_of_survivors: &[Vec<u64>],
    reveals: &[Vec<u64>],
) -> Result<Vec<u64>, SecAggError> {
    let mut sum = aggregate(shares_of_survivors)?;
    for (index, reveal) in reveals.iter().enumerate() {
        if reveal.len() != sum.len() {
            return Err(SecAggError::LengthMismatch {
                index,
                expected: sum.len(),
                got: reveal.len(),
            });
        }
        apply(&mut sum, reveal, false);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(n: usize) -> (Vec<StaticSecret>, Vec<PublicKey>) {
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let secrets: Vec<StaticSecret> = (0..n)
            .map(|_| {
                let mut b = [0u8; 32];
                rng.fill_bytes(&mut b);
                StaticSecret::from(b)
            })
            .collect();
        let publics = secrets.iter().map(PublicKey::from).collect();
        (secrets, publics)
    }

    fn values(n: usize, len: usize) -> Vec<Vec<u64>> {
        (0..n)
            .map(|i| {
                (0..len)
                    .map(|k| encode_i64((i as i64 + 1) * 100 - k as i64 * 37))
                    .collect()
            })
            .collect()
    }

    fn plain_sum(vals: &[Vec<u64>]) -> Vec<u64> {
        let mut s = vec![0u64; vals[0].len()];
        for v in vals {
            apply(&mut s, v, true);
        }
        s
    }

    const JOB: [u8; 32] = [7u8; 32];

    fn exact_sum(n: usize) {
        let (sec, pubs) = sites(n);
        let vals = values(n, 9);
        let shares: Vec<Vec<u64>> = (0..n)
            .map(|i| mask(&JOB, i, &sec[i], &pubs, &vals[i]).unwrap())
            .collect();
        for (s, v) in shares.iter().zip(&vals) {
            assert_ne!(s, v, "a share must not equal the plain values");
        }
        assert_eq!(aggregate(&shares).unwrap(), plain_sum(&vals));
    }

    #[test]
    fn exact_sum_three_sites() {
        exact_sum(3);
    }

    #[test]
    fn exact_sum_five_sites() {
        exact_sum(5);
    }

    #[test]
    fn signed_values_round_trip() {
        let (sec, pubs) = sites(3);
        let vals: Vec<Vec<u64>> = [[-5i64, 10], [-7, -20], [3, 1]]
            .iter()
            .map(|v| v.iter().map(|&x| encode_i64(x)).collect())
            .collect();
        let shares: Vec<Vec<u64>> = (0..3)
            .map(|i| mask(&JOB, i, &sec[i], &pubs, &vals[i]).unwrap())
            .collect();
        let total: Vec<i64> = aggregate(&shares)
            .unwrap()
            .into_iter()
            .map(decode_i64)
            .collect();
        assert_eq!(total, vec![-9, -9]);
    }

    #[test]
    fn one_site_dropped_is_recovered() {
        let n = 5;
        let dropped = [2usize];
        let (sec, pubs) = sites(n);
        let vals = values(n, 6);
        let survivors: Vec<usize> = (0..n).filter(|i| !dropped.contains(i)).collect();
        let shares: Vec<Vec<u64>> = survivors
            .iter()
            .map(|&i| mask(&JOB, i, &sec[i], &pubs, &vals[i]).unwrap())
            .collect();
        // Without reveals the masks with the dropped site do not cancel.
        let surv_vals: Vec<Vec<u64>> = survivors.iter().map(|&i| vals[i].clone()).collect();
        assert_ne!(aggregate(&shares).unwrap(), plain_sum(&surv_vals));
        let reveals: Vec<Vec<u64>> = survivors
            .iter()
            .map(|&i| unmask_dropped(&JOB, i, &sec[i], &pubs, &dropped, 6).unwrap())
            .collect();
        assert_eq!(
            aggregate_with_dropouts(&shares, &reveals).unwrap(),
            plain_sum(&surv_vals)
        );
    }

    #[test]
    fn wrong_job_id_does_not_cancel() {
        let (sec, pubs) = sites(3);
        let vals = values(3, 4);
        let other = [8u8; 32];
        let shares: Vec<Vec<u64>> = (0..3)
            .map(|i| {
                let job = if i == 1 { &other } else { &JOB };
                mask(job, i, &sec[i], &pubs, &vals[i]).unwrap()
            })
            .collect();
        assert_ne!(aggregate(&shares).unwrap(), plain_sum(&vals));
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let (sec, pubs) = sites(3);
        assert_eq!(
            mask(&JOB, 3, &sec[0], &pubs, &[1]),
            Err(SecAggError::SiteOutOfRange { index: 3, sites: 3 })
        );
        assert_eq!(
            mask(&JOB, 1, &sec[0], &pubs, &[1]),
            Err(SecAggError::KeyMismatch { site: 1 })
        );
        let mut weak = pubs.clone();
        weak[2] = PublicKey::from([0u8; 32]);
        assert_eq!(
            mask(&JOB, 0, &sec[0], &weak, &[1]),
            Err(SecAggError::WeakPeerKey { site: 2 })
        );
        assert_eq!(
            unmask_dropped(&JOB, 0, &sec[0], &pubs, &[0], 1),
            Err(SecAggError::SelfDropped { site: 0 })
        );
        assert_eq!(
            unmask_dropped(&JOB, 0, &sec[0], &pubs, &[9], 1),
            Err(SecAggError::SiteOutOfRange { index: 9, sites: 3 })
        );
        assert_eq!(aggregate(&[]), Err(SecAggError::NoShares));
        assert_eq!(
            aggregate(&[vec![1, 2], vec![1]]),
            Err(SecAggError::LengthMismatch {
                index: 1,
                expected: 2,
                got: 1
            })
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]
            #[test]
            fn masked_sum_equals_plain_sum_with_any_dropouts(
                n in 2usize..6,
                raw in prop::collection::vec(prop::collection::vec(any::<u64>(), 3), 6),
                drop_mask in any::<u8>(),
                job in any::<[u8; 32]>(),
            ) {
                let (sec, pubs) = sites(n);
                let vals: Vec<Vec<u64>> = raw.into_iter().take(n).collect();
                // Keep at least one survivor: site 0 never drops.
                let dropped: Vec<usize> = (1..n).filter(|i| drop_mask & (1 << i) != 0).collect();
                let survivors: Vec<usize> = (0..n).filter(|i| !dropped.contains(i)).collect();
                let shares: Vec<Vec<u64>> = survivors
                    .iter()
                    .map(|&i| mask(&job, i, &sec[i], &pubs, &vals[i]).unwrap())
                    .collect();
                let reveals: Vec<Vec<u64>> = survivors
                    .iter()
                    .map(|&i| unmask_dropped(&job, i, &sec[i], &pubs, &dropped, 3).unwrap())
                    .collect();
                let surv_vals: Vec<Vec<u64>> = survivors.iter().map(|&i| vals[i].clone()).collect();
                prop_assert_eq!(
                    aggregate_with_dropouts(&shares, &reveals).unwrap(),
                    plain_sum(&surv_vals)
                );
            }
        }
    }

    /// Byte frequencies of 80,000 masked bytes from an all-zero input: Pearson chi-square with
    /// 255 degrees of freedom must stay below 330.5 (its 0.999 quantile).
    #[test]
    fn masked_bytes_look_uniform() {
        let (sec, pubs) = sites(3);
        let share = mask(&JOB, 1, &sec[1], &pubs, &vec![0u64; 10_000]).unwrap();
        let mut counts = [0u64; 256];
        for v in &share {
            for b in v.to_le_bytes() {
                counts[b as usize] += 1;
            }
        }
        let total = (share.len() * 8) as f64;
        let expected = total / 256.0;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 330.5, "chi2={chi2}");
        // And the test can fail: an unmasked constant vector is maximally non-uniform.
        assert!(counts.iter().all(|&c| c < total as u64 / 16));
    }
}
