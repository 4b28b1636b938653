//! The grouped private intersection-sum against the plain join, its wire formats against
//! malformed input, re-randomization, and the value and range bounds.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::traits::Identity;
use medspace_privacy::join::{
    CIPHERTEXT_LEN, Ciphertext, Holder, JoinError, MAX_GROUPS, MAX_MEASURES, MAX_RANGE, MAX_VALUE,
    Offer, Sums, WIRE_VERSION, sum_groups,
};
use medspace_privacy::psi::{Mode, PsiError, Receiver, Request};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::BTreeMap;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn ids(values: &[u32]) -> Vec<Vec<u8>> {
    values.iter().map(|v| v.to_le_bytes().to_vec()).collect()
}

/// One study: the hospital's ids and groups, the insurer's ids and row-major values.
#[derive(Debug, Clone)]
struct Study {
    hospital: Vec<u32>,
    groups: Vec<Option<u32>>,
    n_groups: usize,
    insurer: Vec<u32>,
    values: Vec<u64>,
    measures: usize,
}

impl Study {
    /// The join in the clear: per-group counts and group-major sums.
    fn plain(&self) -> (Vec<u64>, Vec<i64>) {
        let rows: BTreeMap<u32, &[u64]> = self
            .insurer
            .iter()
            .copied()
            .zip(self.values.chunks_exact(self.measures))
            .collect();
        let mut counts = vec![0u64; self.n_groups];
        let mut sums = vec![0i64; self.n_groups * self.measures];
        for (id, group) in self.hospital.iter().zip(&self.groups) {
            if let (Some(g), Some(row)) = (group, rows.get(id)) {
                let g = *g as usize;
                counts[g] += 1;
                for (k, v) in row.iter().enumerate() {
                    sums[g * self.measures + k] += *v as i64;
                }
            }
        }
        (counts, sums)
    }

    /// Both parties with every message through bytes; returns the counts, the opened values
    /// and the holder.
    fn run(
        &self,
        noise: &[i64],
        margin: u64,
        threads: usize,
        seed: u64,
    ) -> Result<(Vec<u64>, Vec<i64>, Holder), JoinError> {
        let mut rng = rng(seed);
        let (receiver, request) =
            Receiver::new(&mut rng, &ids(&self.hospital), Mode::Linked, threads)?;
        let request = Request::from_bytes(&request.to_bytes()?)?;
        let holder = Holder::new(
            &mut rng,
            &ids(&self.insurer),
            &self.values,
            self.measures,
            threads,
        )?;
        let offer = holder.respond(&request, &mut rng)?;
        let offer = Offer::from_bytes(&offer.to_bytes()?)?;
        let (counts, sums) = sum_groups(
            &receiver,
            &offer,
            &self.groups,
            self.n_groups,
            noise,
            &mut rng,
        )?;
        let sums = Sums::from_bytes(&sums.to_bytes()?)?;
        let opened = holder.open(&sums, margin)?;
        Ok((counts, opened, holder))
    }
}

/// A fixed study: hospital 0..120 (every third in no group), insurer 60..200, 2 measures.
fn small_study() -> Study {
    let hospital: Vec<u32> = (0..120).collect();
    let groups = hospital
        .iter()
        .map(|i| (i % 3 != 0).then_some(i % 4))
        .collect();
    let insurer: Vec<u32> = (60..200).collect();
    let values = insurer
        .iter()
        .flat_map(|i| [u64::from(i % 7), u64::from(i * i % 1000)])
        .collect();
    Study {
        hospital,
        groups,
        n_groups: 4,
        insurer,
        values,
        measures: 2,
    }
}

/// Hospital and insurer hold the same `n` people, all in group 0, one measure `1..=n`.
fn full_overlap(n: u32) -> Study {
    let people: Vec<u32> = (0..n).collect();
    Study {
        hospital: people.clone(),
        groups: vec![Some(0); n as usize],
        n_groups: 1,
        insurer: people.clone(),
        values: people.iter().map(|i| u64::from(*i) + 1).collect(),
        measures: 1,
    }
}

#[test]
fn small_study_equals_plain_join() {
    let study = small_study();
    let (counts, expected) = study.plain();
    assert_eq!(counts.iter().sum::<u64>(), 40, "60..120 minus every third");
    let (got_counts, opened, holder) = study.run(&[], 0, 1, 1).unwrap();
    assert_eq!(got_counts, counts);
    assert_eq!(opened, expected);
    assert_eq!(holder.len(), 140);
    assert_eq!(holder.measures(), 2);
    let totals: Vec<u64> = (0..2)
        .map(|k| study.values.iter().skip(k).step_by(2).sum())
        .collect();
    assert_eq!(holder.totals(), totals.as_slice());
}

#[test]
fn several_threads_give_the_same_sums() {
    // Above the 256-item threshold, so blinding, encryption, decompression and the search run
    // on several threads.
    let hospital: Vec<u32> = (0..300).collect();
    let insurer: Vec<u32> = (100..420).collect();
    let study = Study {
        groups: hospital.iter().map(|i| Some(i % 2)).collect(),
        hospital,
        n_groups: 2,
        values: insurer.iter().map(|i| u64::from(i % 10)).collect(),
        insurer,
        measures: 1,
    };
    let (counts, expected) = study.plain();
    for threads in [1, 3] {
        let (got_counts, opened, _) = study.run(&[], 5, threads, 2).unwrap();
        assert_eq!(got_counts, counts);
        assert_eq!(opened, expected);
    }
}

#[test]
fn noise_is_added_and_negative_results_decode() {
    let study = small_study();
    let (_, plain) = study.plain();
    // Every cell pushed below zero by more than its sum.
    let noise: Vec<i64> = plain.iter().map(|s| -s - 17).collect();
    let margin = noise.iter().map(|n| n.unsigned_abs()).max().unwrap();
    let (_, opened, _) = study.run(&noise, margin, 1, 3).unwrap();
    assert_eq!(opened, vec![-17; plain.len()]);
    // Positive noise up to the margin above the insurer's total.
    let noise: Vec<i64> = (0..plain.len() as i64).map(|i| 1000 * i - 3000).collect();
    let (_, opened, _) = study.run(&noise, 5000, 1, 4).unwrap();
    let expected: Vec<i64> = plain.iter().zip(&noise).map(|(s, n)| s + n).collect();
    assert_eq!(opened, expected);
}

#[test]
fn noise_beyond_the_margin_has_no_logarithm() {
    let study = small_study();
    let (_, plain) = study.plain();
    let mut noise = vec![0i64; plain.len()];
    noise[3] = -plain[3] - 11;
    match study.run(&noise, 10, 1, 5) {
        Err(JoinError::NoLogarithm { cell: 3 }) => {}
        other => panic!("expected no logarithm in cell 3, got {other:?}"),
    }
}

#[test]
fn empty_sides_and_empty_groups() {
    let mut study = small_study();
    study.hospital.clear();
    study.groups.clear();
    let (counts, opened, _) = study.run(&[], 0, 1, 6).unwrap();
    assert_eq!(counts, vec![0; 4]);
    assert_eq!(opened, vec![0; 8]);

    let mut study = small_study();
    study.insurer.clear();
    study.values.clear();
    let (counts, opened, _) = study.run(&[7; 8], 7, 1, 7).unwrap();
    assert_eq!(counts, vec![0; 4]);
    assert_eq!(opened, vec![7; 8]);

    // No group at all: nothing to send, nothing to open.
    let mut study = small_study();
    study.groups = vec![None; study.hospital.len()];
    study.n_groups = 0;
    let (counts, opened, _) = study.run(&[], 0, 1, 8).unwrap();
    assert!(counts.is_empty() && opened.is_empty());
}

/// The offer and the parties of one run, for the tests that tamper with messages.
struct Parts {
    rng: ChaCha20Rng,
    receiver: Receiver,
    holder: Holder,
    offer: Offer,
    study: Study,
}

fn parts(study: Study, seed: u64) -> Parts {
    let mut rng = rng(seed);
    let (receiver, request) =
        Receiver::new(&mut rng, &ids(&study.hospital), Mode::Linked, 1).unwrap();
    let holder = Holder::new(
        &mut rng,
        &ids(&study.insurer),
        &study.values,
        study.measures,
        1,
    )
    .unwrap();
    let offer = holder.respond(&request, &mut rng).unwrap();
    Parts {
        rng,
        receiver,
        holder,
        offer,
        study,
    }
}

impl Parts {
    fn sum(&mut self, offer: &Offer, noise: &[i64]) -> Result<(Vec<u64>, Sums), JoinError> {
        sum_groups(
            &self.receiver,
            offer,
            &self.study.groups,
            self.study.n_groups,
            noise,
            &mut self.rng,
        )
    }
}

#[test]
fn rerandomized_cell_differs_from_the_plain_homomorphic_sum() {
    let mut p = parts(full_overlap(20), 9);
    let offer = p.offer.clone();
    let (counts, sums) = p.sum(&offer, &[]).unwrap();
    assert_eq!(counts, vec![20]);
    // Everyone matches and is in group 0: the plain sum is every ciphertext of the offer.
    let (mut a, mut b) = (RistrettoPoint::identity(), RistrettoPoint::identity());
    for ct in &p.offer.ciphertexts {
        a += CompressedRistretto(ct.c1).decompress().unwrap();
        b += CompressedRistretto(ct.c2).decompress().unwrap();
    }
    let plain = Ciphertext {
        c1: a.compress().to_bytes(),
        c2: b.compress().to_bytes(),
    };
    assert_ne!(sums.cells[0].c1, plain.c1);
    assert_ne!(sums.cells[0].c2, plain.c2);
    for ct in &p.offer.ciphertexts {
        assert_ne!(sums.cells[0].c1, ct.c1);
    }
    // Both open to the same total, 1 + … + 20.
    let plain_sums = Sums {
        groups: 1,
        measures: 1,
        cells: vec![plain],
    };
    assert_eq!(p.holder.open(&plain_sums, 0).unwrap(), vec![210]);
    assert_eq!(p.holder.open(&sums, 0).unwrap(), vec![210]);
    // A second summation of the same offer gives another ciphertext.
    let (_, again) = p.sum(&offer, &[]).unwrap();
    assert_ne!(again.cells, sums.cells);
    assert_eq!(p.holder.open(&again, 0).unwrap(), vec![210]);
}

#[test]
fn values_above_2_pow_40_are_refused() {
    let mut rng = rng(10);
    let people = ids(&[1, 2, 3]);
    assert!(Holder::new(&mut rng, &people, &[0, MAX_VALUE, 5], 1, 1).is_ok());
    assert_eq!(
        Holder::new(&mut rng, &people, &[0, 1, 2, 3, MAX_VALUE + 1, 5], 2, 1).unwrap_err(),
        JoinError::ValueTooLarge {
            row: 2,
            measure: 0,
            value: MAX_VALUE + 1
        }
    );
    assert_eq!(
        Holder::new(&mut rng, &people, &[u64::MAX, 0, 0], 1, 1).unwrap_err(),
        JoinError::ValueTooLarge {
            row: 0,
            measure: 0,
            value: u64::MAX
        }
    );
}

#[test]
fn holder_input_is_checked() {
    let mut rng = rng(11);
    let people = ids(&[1, 2, 3]);
    assert_eq!(
        Holder::new(&mut rng, &people, &[1, 2], 1, 1).unwrap_err(),
        JoinError::ValuesLength {
            expected: 3,
            got: 2
        }
    );
    assert_eq!(
        Holder::new(&mut rng, &people, &[], 0, 1).unwrap_err(),
        JoinError::Measures(0)
    );
    assert_eq!(
        Holder::new(&mut rng, &people, &[0; 51], MAX_MEASURES + 1, 1).unwrap_err(),
        JoinError::Measures(MAX_MEASURES + 1)
    );
    assert_eq!(
        Holder::new(&mut rng, &ids(&[1, 2, 1]), &[1, 2, 3], 1, 1).unwrap_err(),
        JoinError::DuplicateId
    );
}

#[test]
fn open_refuses_ranges_above_2_pow_46() {
    let mut rng = rng(12);
    // Total 1: the range is 2 + 2·margin values.
    let holder = Holder::new(&mut rng, &ids(&[1]), &[1], 1, 1).unwrap();
    let no_groups = Sums {
        groups: 0,
        measures: 1,
        cells: vec![],
    };
    // Exactly 2^46 values: accepted (and nothing to search).
    assert!(holder.open(&no_groups, (1 << 45) - 1).unwrap().is_empty());
    for margin in [1 << 45, u64::MAX] {
        let width = 2 + 2 * u128::from(margin);
        assert_eq!(
            holder.open(&no_groups, margin).unwrap_err(),
            JoinError::RangeTooWide { measure: 0, width }
        );
    }
    assert!(u128::from(MAX_RANGE) < 2 + 2 * (1u128 << 45));
    // A holder whose total alone is too wide refuses any margin.
    let big = Holder::new(
        &mut rng,
        &ids(&(0..65).collect::<Vec<_>>()),
        &[MAX_VALUE; 65],
        1,
        1,
    )
    .unwrap();
    assert_eq!(big.totals(), &[65 * MAX_VALUE]);
    assert!(matches!(
        big.open(&no_groups, 0),
        Err(JoinError::RangeTooWide { measure: 0, .. })
    ));
}

#[test]
fn hospital_input_is_checked() {
    let mut p = parts(small_study(), 13);
    let offer = p.offer.clone();
    let n = p.study.hospital.len();

    let mut bad = offer.clone();
    bad.ciphertexts.pop();
    let rows = JoinError::Rows {
        points: 140,
        measures: 2,
        ciphertexts: 279,
    };
    assert_eq!(p.sum(&bad, &[]).unwrap_err(), rows);
    assert_eq!(bad.to_bytes().unwrap_err(), rows);
    bad.holder_points.pop();
    assert_eq!(
        p.sum(&bad, &[]).unwrap_err(),
        JoinError::Rows {
            points: 139,
            measures: 2,
            ciphertexts: 279
        }
    );

    assert_eq!(
        p.sum(&offer, &[1, 2, 3]).unwrap_err(),
        JoinError::NoiseLength {
            expected: 8,
            got: 3
        }
    );
    p.study.groups[5] = Some(4);
    assert_eq!(
        p.sum(&offer, &[]).unwrap_err(),
        JoinError::GroupIndex {
            element: 5,
            group: 4,
            n_groups: 4
        }
    );
    p.study.groups.pop();
    assert_eq!(
        p.sum(&offer, &[]).unwrap_err(),
        JoinError::GroupsLength {
            expected: n,
            got: n - 1
        }
    );
    p.study.groups = vec![None; n];
    p.study.n_groups = MAX_GROUPS + 1;
    assert!(matches!(
        p.sum(&offer, &[]),
        Err(JoinError::TooMany { what: "groups", .. })
    ));
    p.study.n_groups = 4;

    let mut bad = offer.clone();
    bad.public_key = RistrettoPoint::identity().compress().to_bytes();
    assert_eq!(p.sum(&bad, &[]).unwrap_err(), JoinError::InvalidPublicKey);
    let mut bad = offer.clone();
    bad.reblinded.pop();
    assert_eq!(
        p.sum(&bad, &[]).unwrap_err(),
        JoinError::Psi(PsiError::CountMismatch {
            expected: n,
            got: n - 1
        })
    );
    let mut bad = offer.clone();
    bad.holder_points[7] = [0xff; 32];
    assert_eq!(
        p.sum(&bad, &[]).unwrap_err(),
        JoinError::Psi(PsiError::InvalidPoint { index: 7 })
    );
}

#[test]
fn garbled_ciphertexts_are_typed_errors() {
    let mut p = parts(full_overlap(10), 14);
    let mut bad = p.offer.clone();
    bad.ciphertexts[4].c2 = [0xff; 32];
    assert_eq!(
        p.sum(&bad, &[]).unwrap_err(),
        JoinError::InvalidCiphertext { index: 4 }
    );
    let mut bad = p.offer.clone();
    bad.ciphertexts[6].c1 = RistrettoPoint::identity().compress().to_bytes();
    assert_eq!(
        p.sum(&bad, &[]).unwrap_err(),
        JoinError::InvalidCiphertext { index: 6 }
    );

    let offer = p.offer.clone();
    let (_, sums) = p.sum(&offer, &[]).unwrap();
    let mut bad = sums.clone();
    bad.cells[0].c1 = [0xff; 32];
    assert_eq!(
        p.holder.open(&bad, 0).unwrap_err(),
        JoinError::InvalidCiphertext { index: 0 }
    );
    let mut bad = sums.clone();
    bad.cells[0].c1 = RistrettoPoint::identity().compress().to_bytes();
    assert_eq!(
        p.holder.open(&bad, 0).unwrap_err(),
        JoinError::InvalidCiphertext { index: 0 }
    );
    // A valid point that encrypts nothing in range.
    let mut bad = sums.clone();
    bad.cells[0].c2 = bad.cells[0].c1;
    assert_eq!(
        p.holder.open(&bad, 0).unwrap_err(),
        JoinError::NoLogarithm { cell: 0 }
    );
    let mut bad = sums.clone();
    bad.measures = 2;
    assert_eq!(
        p.holder.open(&bad, 0).unwrap_err(),
        JoinError::MeasureMismatch {
            expected: 1,
            got: 2
        }
    );
    let mut bad = sums;
    bad.cells.push(bad.cells[0]);
    assert_eq!(
        p.holder.open(&bad, 0).unwrap_err(),
        JoinError::CellCount {
            expected: 1,
            got: 2
        }
    );
}

#[test]
fn modes_and_duplicates_are_refused() {
    let mut rng = rng(15);
    let people = ids(&[1, 2, 3]);
    let holder = Holder::new(&mut rng, &people, &[1, 2, 3], 1, 1).unwrap();
    let (card, request) = Receiver::new(&mut rng, &people, Mode::Cardinality, 1).unwrap();
    assert_eq!(
        holder.respond(&request, &mut rng).unwrap_err(),
        JoinError::Psi(PsiError::ModeMismatch {
            expected: Mode::Linked,
            got: Mode::Cardinality
        })
    );
    // A cardinality receiver cannot link the rows either.
    let (_, linked) = Receiver::new(&mut rng, &people, Mode::Linked, 1).unwrap();
    let offer = holder.respond(&linked, &mut rng).unwrap();
    assert_eq!(
        sum_groups(&card, &offer, &[Some(0); 3], 1, &[], &mut rng).unwrap_err(),
        JoinError::Psi(PsiError::ModeMismatch {
            expected: Mode::Linked,
            got: Mode::Cardinality
        })
    );
    // A hospital listing a patient twice would count the insurer's row twice.
    let twice = ids(&[1, 2, 1]);
    let (receiver, request) = Receiver::new(&mut rng, &twice, Mode::Linked, 1).unwrap();
    let offer = holder.respond(&request, &mut rng).unwrap();
    assert!(matches!(
        sum_groups(&receiver, &offer, &[Some(0); 3], 1, &[], &mut rng),
        Err(JoinError::DuplicateMatch { element: 2, .. })
    ));
}

#[test]
fn truncated_extended_and_garbled_messages_are_typed_errors() {
    let mut p = parts(full_overlap(3), 16);
    let offer = p.offer.clone();
    let bytes = offer.to_bytes().unwrap();
    assert_eq!(bytes.len(), 18 + 32 + 3 * 16 + 3 * 32 + 3 * 64);
    assert_eq!(Offer::from_bytes(&bytes).unwrap(), offer);
    for len in 0..bytes.len() {
        assert!(
            matches!(
                Offer::from_bytes(&bytes[..len]),
                Err(JoinError::Truncated { .. })
            ),
            "length {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Offer::from_bytes(&longer).unwrap_err(),
        JoinError::Length {
            expected: bytes.len(),
            got: bytes.len() + 1
        }
    );
    let mut bad = bytes.clone();
    bad[0] = WIRE_VERSION + 1;
    assert_eq!(
        Offer::from_bytes(&bad).unwrap_err(),
        JoinError::Version(WIRE_VERSION + 1)
    );
    let mut bad = bytes.clone();
    bad[1] = 4;
    assert_eq!(
        Offer::from_bytes(&bad).unwrap_err(),
        JoinError::Kind {
            expected: 3,
            got: 4
        }
    );
    // Measures 0 and 17.
    for k in [0u32, 17] {
        let mut bad = bytes.clone();
        bad[2..6].copy_from_slice(&k.to_le_bytes());
        assert!(Offer::from_bytes(&bad).is_err());
    }
    // A ciphertext count that is not rows × measures, consistent with the length.
    let mut bad = bytes.clone();
    bad[14..18].copy_from_slice(&2u32.to_le_bytes());
    bad.truncate(bytes.len() - CIPHERTEXT_LEN);
    assert_eq!(
        Offer::from_bytes(&bad).unwrap_err(),
        JoinError::Rows {
            points: 3,
            measures: 1,
            ciphertexts: 2
        }
    );
    // A count above the bound.
    let mut bad = bytes.clone();
    bad[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Offer::from_bytes(&bad),
        Err(JoinError::TooMany { what: "rows", .. })
    ));
    // A public key that is not a point, or the identity.
    let mut bad = bytes.clone();
    bad[18..50].copy_from_slice(&[0xff; 32]);
    assert_eq!(
        Offer::from_bytes(&bad).unwrap_err(),
        JoinError::InvalidPublicKey
    );
    let mut bad = bytes.clone();
    bad[18..50].copy_from_slice(&[0; 32]);
    assert_eq!(
        Offer::from_bytes(&bad).unwrap_err(),
        JoinError::InvalidPublicKey
    );

    let (_, sums) = p.sum(&offer, &[]).unwrap();
    let bytes = sums.to_bytes().unwrap();
    assert_eq!(bytes.len(), 10 + 64);
    assert_eq!(Sums::from_bytes(&bytes).unwrap(), sums);
    for len in 0..bytes.len() {
        assert!(
            matches!(
                Sums::from_bytes(&bytes[..len]),
                Err(JoinError::Truncated { .. })
            ),
            "length {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 64]);
    assert_eq!(
        Sums::from_bytes(&longer).unwrap_err(),
        JoinError::Length {
            expected: 74,
            got: 138
        }
    );
    let mut bad = bytes.clone();
    bad[1] = 3;
    assert!(matches!(
        Sums::from_bytes(&bad),
        Err(JoinError::Kind { .. })
    ));
    let mut bad = bytes.clone();
    bad[2..6].copy_from_slice(&(MAX_GROUPS as u32 + 1).to_le_bytes());
    assert!(matches!(
        Sums::from_bytes(&bad),
        Err(JoinError::TooMany { what: "groups", .. })
    ));
    let mut bad = bytes.clone();
    bad[6..10].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(Sums::from_bytes(&bad).unwrap_err(), JoinError::Measures(0));
    // Garbled cell bytes parse, and opening them is a typed error.
    let mut bad = bytes.clone();
    bad[10..42].copy_from_slice(&[0xee; 32]);
    let garbled = Sums::from_bytes(&bad).unwrap();
    assert_eq!(
        p.holder.open(&garbled, 0).unwrap_err(),
        JoinError::InvalidCiphertext { index: 0 }
    );
}

/// Two hospitals join the same insurer's rows; the insurer adds their sums up and opens
/// the total: the plain join of both hospitals' persons (disjoint here) with the insurer's.
#[test]
fn the_total_of_two_hospitals_sums_opens_to_both_joins() {
    let mut r = rng(41);
    let insurer: Vec<u32> = (0..60).collect();
    let values: Vec<u64> = insurer.iter().flat_map(|i| [1, u64::from(*i)]).collect();
    let holder = Holder::new(&mut r, &ids(&insurer), &values, 2, 1).unwrap();
    let mut parts = Vec::new();
    for hospital in [(10..30).collect::<Vec<u32>>(), (40..70).collect()] {
        let (receiver, request) = Receiver::new(&mut r, &ids(&hospital), Mode::Linked, 1).unwrap();
        let offer = holder.respond(&request, &mut r).unwrap();
        let groups: Vec<Option<u32>> = hospital.iter().map(|i| Some(i % 2)).collect();
        let (_, sums) = sum_groups(&receiver, &offer, &groups, 2, &[], &mut r).unwrap();
        parts.push(Sums::from_bytes(&sums.to_bytes().unwrap()).unwrap());
    }
    let opened = holder.open(&Sums::add_all(&parts).unwrap(), 0).unwrap();
    let mut want = [0i64; 4];
    for i in (10..30).chain(40..60) {
        let g = (i % 2) as usize;
        want[g * 2] += 1;
        want[g * 2 + 1] += i64::from(i);
    }
    assert_eq!(opened, want);
    // Parts of another shape, or none, are refused.
    assert!(Sums::add_all(&[]).is_err());
    let mut other = parts[0].clone();
    other.groups = 1;
    other.cells.truncate(2);
    assert!(Sums::add_all(&[parts[0].clone(), other]).is_err());
    let mut garbled = parts[1].clone();
    garbled.cells[0].c1 = [0xff; 32];
    assert!(matches!(
        Sums::add_all(&[parts[0].clone(), garbled]),
        Err(JoinError::InvalidCiphertext { .. })
    ));
}

fn study_strategy() -> impl Strategy<Value = (Study, u64)> {
    (
        proptest::collection::btree_set(0u32..400, 0..160),
        proptest::collection::btree_set(0u32..400, 0..160),
        1usize..=3,
        1usize..=5,
        proptest::collection::vec(proptest::option::of(0u32..1000), 160),
        proptest::collection::vec(0u64..=1000, 480),
        any::<u64>(),
    )
        .prop_map(
            |(hospital, insurer, measures, n_groups, raw_groups, raw_values, seed)| {
                let hospital: Vec<u32> = hospital.into_iter().collect();
                let insurer: Vec<u32> = insurer.into_iter().collect();
                let groups = raw_groups
                    .iter()
                    .take(hospital.len())
                    .map(|g| g.map(|g| g % n_groups as u32))
                    .collect();
                let values = raw_values
                    .into_iter()
                    .take(insurer.len() * measures)
                    .collect();
                (
                    Study {
                        hospital,
                        groups,
                        n_groups,
                        insurer,
                        values,
                        measures,
                    },
                    seed,
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn opened_sums_equal_the_plain_join(
        (study, seed) in study_strategy(),
        raw_noise in proptest::collection::vec(-2000i64..=2000, 15),
        noisy in any::<bool>(),
    ) {
        let (counts, plain) = study.plain();
        let (noise, margin): (Vec<i64>, u64) = if noisy {
            (raw_noise[..plain.len()].to_vec(), 2000)
        } else {
            (vec![], 0)
        };
        let (got_counts, opened, _) = study.run(&noise, margin, 2, seed).unwrap();
        prop_assert_eq!(got_counts, counts);
        let expected: Vec<i64> = if noisy {
            plain.iter().zip(&noise).map(|(s, n)| s + n).collect()
        } else {
            plain
        };
        prop_assert_eq!(opened, expected);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Offer::from_bytes(&bytes);
        let _ = Sums::from_bytes(&bytes);
        // The same bytes behind valid headers, to reach the counts and the body.
        let mut offer = vec![WIRE_VERSION, 3];
        offer.extend_from_slice(&bytes);
        let _ = Offer::from_bytes(&offer);
        let mut sums = vec![WIRE_VERSION, 4];
        sums.extend_from_slice(&bytes);
        let _ = Sums::from_bytes(&sums);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// A valid run's messages with a byte changed: parsing, summing and opening give a value or
    /// a typed error, never a panic.
    #[test]
    fn garbled_messages_never_panic(at in any::<prop::sample::Index>(), xor in 1u8..=255, seed in any::<u64>()) {
        let mut p = parts(full_overlap(4), seed);
        let offer = p.offer.clone();
        let mut bytes = offer.to_bytes().unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(garbled) = Offer::from_bytes(&bytes) {
            let _ = p.sum(&garbled, &[]);
        }
        let (_, sums) = p.sum(&offer, &[]).unwrap();
        let mut bytes = sums.to_bytes().unwrap();
        let i = at.index(bytes.len());
        bytes[i] ^= xor;
        if let Ok(garbled) = Sums::from_bytes(&bytes) {
            let _ = p.holder.open(&garbled, 3);
        }
    }
}
