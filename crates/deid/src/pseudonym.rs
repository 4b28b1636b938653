//! Per-release pseudonyms and per-patient date shifts.
//!
//! The release key is HMAC-SHA-256 under the dataset's key (held by the hospital's vault,
//! never released) of a domain tag, the dataset name and — for unlinkable releases, the
//! default — the release id. A linkable release's key depends on the dataset only, so the same
//! person has the same pseudonym in every linkable release of that dataset; an unlinkable
//! release's pseudonyms are unrelated to any other release's. Without the dataset key nobody can
//! test a guessed person id against a pseudonym.
//!
//! A person's date shift is derived from the same release key (a separate domain), uniform in
//! `[-n, n]` by rejection sampling, and applied to every date of the person, so intervals
//! between a person's events are preserved.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        // HMAC accepts keys of any length; unreachable.
        Err(_) => return [0; 32],
    };
    for p in parts {
        // Length-prefixed: no two part lists encode the same.
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// Pseudonyms and date shifts of one release.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: [u8; 32],
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(..)")
    }
}

impl Pseudonymizer {
    /// The release's pseudonymizer: `linkable` ignores `release_id`.
    pub fn new(dataset_key: &[u8], dataset: &str, release_id: &str, linkable: bool) -> Self {
        let key = if linkable {
            mac(
                dataset_key,
                &[b"medspace-deid/release-key/v1/linkable", dataset.as_bytes()],
            )
        } else {
            mac(
                dataset_key,
                &[
                    b"medspace-deid/release-key/v1/unlinkable",
                    dataset.as_bytes(),
                    release_id.as_bytes(),
                ],
            )
        };
        Pseudonymizer { key }
    }

    /// A person's pseudonym: 16 bytes of HMAC-SHA-256, in hex.
    pub fn pseudonym(&self, person_id: &str) -> String {
        let m = mac(&self.key, &[b"pseudonym", person_id.as_bytes()]);
        hex::encode(m.get(..16).unwrap_or(&m))
    }

    /// A person's date shift in days, uniform in `[-max_days, max_days]`.
    pub fn date_shift(&self, person_id: &str, max_days: u32) -> i32 {
        let range = 2 * u64::from(max_days) + 1;
        // Largest multiple of `range` below 2^64: values above it are rejected (bias-free).
        let zone = u64::MAX - (u64::MAX % range);
        let mut last = 0u64;
        for counter in 0u32..64 {
            let m = mac(
                &self.key,
                &[b"date-shift", person_id.as_bytes(), &counter.to_be_bytes()],
            );
            let mut b = [0u8; 8];
            b.copy_from_slice(m.get(..8).unwrap_or(&[0; 8]));
            last = u64::from_be_bytes(b);
            if last < zone {
                break;
            }
        }
        // The probability of 64 rejections is below 2^-64·32; the last draw is then used.
        ((last % range) as i64 - i64::from(max_days)) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linkability() {
        let key = [7u8; 32];
        let a = Pseudonymizer::new(&key, "ds", "r1", true);
        let b = Pseudonymizer::new(&key, "ds", "r2", true);
        assert_eq!(a.pseudonym("42"), b.pseudonym("42"));
        let c = Pseudonymizer::new(&key, "ds", "r1", false);
        let d = Pseudonymizer::new(&key, "ds", "r2", false);
        assert_ne!(c.pseudonym("42"), d.pseudonym("42"));
        assert_ne!(a.pseudonym("42"), c.pseudonym("42"));
        assert_ne!(a.pseudonym("42"), a.pseudonym("43"));
        assert_ne!(
            a.pseudonym("42"),
            Pseudonymizer::new(&[8u8; 32], "ds", "r1", true).pseudonym("42")
        );
        assert_ne!(
            a.pseudonym("42"),
            Pseudonymizer::new(&key, "other", "r1", true).pseudonym("42")
        );
        assert_eq!(a.pseudonym("42").len(), 32);
        assert_eq!(
            c.pseudonym("42"),
            Pseudonymizer::new(&key, "ds", "r1", false).pseudonym("42")
        );
    }

    #[test]
    fn date_shift_uniform_in_range() {
        let p = Pseudonymizer::new(&[1u8; 32], "ds", "r", false);
        let n = 3u32;
        let mut seen = [0u32; 7];
        for i in 0..7000 {
            let s = p.date_shift(&i.to_string(), n);
            assert!((-3..=3).contains(&s));
            seen[(s + 3) as usize] += 1;
        }
        // Each of the 7 values about 1000 times (a 5-sigma band).
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
        assert_eq!(p.date_shift("x", 30), p.date_shift("x", 30));
        assert_eq!(p.date_shift("x", 0), 0);
    }
}
