//! Grouped private intersection-sum: a hospital's groups summed over an insurer's values on the
//! patients both hold.
//!
//! A vertical study joins a hospital's clinical data with an insurer's claims. The hospital
//! knows, for each of its patients, a group (a cell of sex × age band × has-diabetes, or none);
//! the insurer knows, for each of its members, a few integer measures (number of claims, paid
//! amount, their squares). The study needs, per group and measure, the sum of the insurer's
//! values over the patients both hold — and nothing else. The protocol is the
//! intersection-sum of Ion et al. ("Private Intersection-Sum-with-Cardinality"), grouped, with
//! exponential ElGamal on ristretto255 in place of Paillier, on top of the linked ECDH-PSI of
//! [`crate::psi`].
//!
//! # Protocol
//!
//! `G` is the ristretto255 basepoint, `H` hashes an identifier to the group, the hospital holds
//! the PSI secret `a`, the insurer ("holder") the PSI secret `b` and a fresh ElGamal key
//! `x`, `X = xG`. A value `m` is encrypted as `Enc(m) = (rG, mG + rX)` for a fresh `r`;
//! ciphertexts add component-wise to the encryption of the sum.
//!
//! 1. Hospital → insurer: a [`Mode::Linked`] [`psi::Request`], `H(p)^a` for each patient `p`
//!    in the hospital's order ([`psi::Receiver::new`]).
//! 2. Insurer → hospital: an [`Offer`] ([`Holder::respond`]): `tag(H(p)^ab)` for each
//!    received point in the received order (exactly [`psi::Sender::respond`] in linked mode),
//!    the insurer's rows — `H(q)^b` with `Enc(v_q,1) … Enc(v_q,K)` for each member `q` — in a
//!    cryptographically shuffled order, `X`, and `K`.
//! 3. Hospital ([`sum_groups`]): finds which of its patients match which insurer row (the tags
//!    of `H(q)^ba`), and for each group `g` and measure `k` adds up the matched rows'
//!    ciphertexts, adds its DP noise `n_g,k` in the exponent, and re-randomizes the sum with a
//!    fresh `Enc(0)`: `Σ Enc(v_q,k) + (sG, n_g,k·G + sX)`. It sends these [`Sums`] and keeps
//!    the exact matched count per group.
//! 4. Insurer ([`Holder::open`]): decrypts each cell to `(Σ v + n)·G` and finds the exponent by
//!    baby-step giant-step in `[-margin, total_k + margin]`, `total_k` its own sum of measure
//!    `k` over all its rows (no group sum exceeds it; `margin` covers the noise).
//!
//! # Ranges
//!
//! Values are at most [`MAX_VALUE`] = 2^40 each, so a square fits when its base is at most
//! 2^20. Sums are exact in the scalar field (order ≈ 2^252): at most 2^24 rows of 2^40 plus a
//! 64-bit noise never wrap. A cell opens only if its search range `total_k + 2·margin + 1` is at
//! most [`MAX_RANGE`] = 2^46 values; the insurer's totals saturate at `u64::MAX`, which any
//! such check refuses. The search costs about `2·√(cells · range)` group operations: one
//! table of `√(cells · range)` baby steps per [`Holder::open`], capped at 2^20 (about 50 MB),
//! then per cell `range / table` giant steps. Counts open in milliseconds; a sum of amounts in
//! cents over a million members (a range of ≈ 2^37) takes 2^17 giant steps per cell once the
//! table is at its cap.
//!
//! # What each side learns
//!
//! - The hospital learns which of ITS OWN patients the insurer holds (linked PSI, allowed by
//!   the design) and the insurer's row count, and nothing about any insurer value: the
//!   ciphertexts are IND-CPA under the decisional Diffie–Hellman assumption, and the insurer's
//!   rows that match none of the hospital's patients stay unlinkable blinded points (see
//!   [`crate::psi`]). It learns the sums only if and as the insurer releases them.
//! - The insurer learns the hospital's set size (the request's length), the number of groups,
//!   and the opened group sums — sums over its own members grouped by the hospital's data, so
//!   they say something about which of its members are in which hospital group. The hospital
//!   protects that with the noise it adds before re-randomizing (drawn by the caller from a DP
//!   sampler); the re-randomization hides which of the insurer's ciphertexts were summed. The
//!   insurer does not learn the per-group counts (they stay at the hospital; the caller decides
//!   whether to release them, noised).
//! - Neither side learns anything about the other's non-matching records beyond their number.
//!
//! # Threat model
//!
//! Semi-honest parties, as in [`crate::psi`]; the ElGamal key is fresh per run and zeroized on
//! drop, and never leaves the insurer. The decrypting party is the insurer itself: if it handed
//! its key to the hospital, the hospital could decrypt every row of the offer and so read the
//! insurer's values of its own matched patients (and the values, though not the identities, of
//! all other members) — no more than the insurer giving its data away, but the protocol cannot
//! prevent it. Conversely a hospital that handed its noise and its PSI secret to the insurer
//! would reveal its patients' group memberships. The hospital chooses the groups: one that holds
//! a single matched patient (or a crafted cell holding one ciphertext) opens to that member's
//! value plus the hospital's noise — to the insurer, who knew it. The hospital learns only
//! what the insurer releases, and the caller adds the insurer's own DP noise to every opened
//! value before it leaves the insurer. The discrete-logarithm search is variable-time in the
//! opened value (the insurer's own machine only). Malformed messages are typed [`JoinError`]s:
//! every point is decompressed with a canonical-encoding check, the public key and the first
//! ciphertext component must not be the identity.
//!
//! # Costs
//!
//! Per insurer row: one hash to the group and one scalar multiplication (the blinding), and per
//! measure two fixed-base multiplications by `G` (`Enc(m) = (rG, (m + r·x)·G)` is `(rG,
//! mG + rX)`, computed with the insurer's secret so that one precomputed table serves both),
//! compressed in batches; the hospital decompresses and re-blinds each row's point (one
//! multiplication). Per hospital patient: a hash and a multiplication at the hospital, a
//! decompression and a multiplication at the insurer. Per matched patient in a group: `2·K`
//! decompressions and additions. Per cell: three fixed-base multiplications at the hospital, one
//! double multiplication and the search at the insurer. Bytes: 32 per patient hospital →
//! insurer; 16 per patient, `32 + 64·K` per insurer row and 32 for the key insurer →
//! hospital; 64 per cell hospital → insurer. Work is split over the `threads` given.

pub mod bench;

use crate::psi::{
    self, MAX_ELEMENTS, Mode, POINT_LEN, PointBytes, PsiError, PsiSecret, TAG_LEN, Tag,
};
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoBasepointTable, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, IsIdentity, MultiscalarMul};
use rand_core::CryptoRng;
use std::collections::HashMap;
use thiserror::Error;
use zeroize::Zeroize;

/// The most measures an insurer row may carry.
pub const MAX_MEASURES: usize = 16;
/// The most groups a hospital may sum into.
pub const MAX_GROUPS: usize = 4096;
/// The largest value an insurer may encrypt (2^40).
pub const MAX_VALUE: u64 = 1 << 40;
/// The widest discrete-logarithm search [`Holder::open`] runs: `total_k + 2·margin + 1` values.
pub const MAX_RANGE: u64 = 1 << 46;
/// Bytes of an encoded [`Ciphertext`].
pub const CIPHERTEXT_LEN: usize = 2 * POINT_LEN;
/// Wire format version (first byte of every message).
pub const WIRE_VERSION: u8 = 1;

/// Message kinds (second byte); distinct from [`crate::psi`]'s request (1) and response (2).
const KIND_OFFER: u8 = 3;
const KIND_SUMS: u8 = 4;
/// `[version][kind][measures][n][m][c]`.
const OFFER_HEADER: usize = 2 + 4 * 4;
/// `[version][kind][groups][measures]`.
const SUMS_HEADER: usize = 2 + 2 * 4;
/// Points multiplied or searched and compressed together (one batch inversion each).
const BATCH: usize = 256;
/// Ciphertexts encrypted or decompressed per block: bounds the working memory.
const BLOCK: usize = 1 << 14;
/// The largest baby-step table of a search.
const BABY_CAP: u64 = 1 << 20;

/// Errors of the grouped intersection-sum, its messages and its parties.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// An error of the underlying PSI (mode, counts, points of the request or the offer).
    #[error(transparent)]
    Psi(#[from] PsiError),
    /// The message ended before its header or body did.
    #[error("truncated message: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    /// The message's length does not match the counts in its header.
    #[error("message length {got} does not match its header ({expected} expected)")]
    Length { expected: usize, got: usize },
    /// Unknown wire format version.
    #[error("unsupported join wire version {0}")]
    Version(u8),
    /// A message of another kind than expected.
    #[error("wrong message kind {got} (expected {expected})")]
    Kind { expected: u8, got: u8 },
    /// A count above its bound (rows, ciphertexts, groups).
    #[error("{count} {what} exceed the maximum of {max}")]
    TooMany {
        what: &'static str,
        count: u64,
        max: u64,
    },
    /// A number of measures outside `1..=MAX_MEASURES`.
    #[error("{0} measures (1 to {MAX_MEASURES} allowed)")]
    Measures(usize),
    /// The values given do not form one row of `measures` values per identifier.
    #[error("{got} values given, {expected} expected (one per identifier and measure)")]
    ValuesLength { expected: usize, got: usize },
    /// A value above [`MAX_VALUE`].
    #[error("value {value} (row {row}, measure {measure}) exceeds the maximum of {MAX_VALUE}")]
    ValueTooLarge {
        row: usize,
        measure: usize,
        value: u64,
    },
    /// The holder's identifiers contain a duplicate.
    #[error("the holder's identifiers contain a duplicate")]
    DuplicateId,
    /// The ciphertexts do not form one row of `measures` per point.
    #[error("{ciphertexts} ciphertexts for {points} rows of {measures} measures")]
    Rows {
        points: usize,
        measures: usize,
        ciphertexts: usize,
    },
    /// The insurer's public key does not decode or is the identity.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// A ciphertext (offer row or sums cell) whose points do not decode, or whose first
    /// component is the identity.
    #[error("invalid ciphertext in row or cell {index}")]
    InvalidCiphertext { index: usize },
    /// The group list does not give one entry per element of the receiver.
    #[error("{got} group entries for {expected} elements")]
    GroupsLength { expected: usize, got: usize },
    /// A group index not below the number of groups.
    #[error("element {element} has group {group}, only {n_groups} groups")]
    GroupIndex {
        element: usize,
        group: u32,
        n_groups: usize,
    },
    /// A noise vector that is neither empty nor one value per group and measure.
    #[error("{got} noise values, expected 0 or {expected}")]
    NoiseLength { expected: usize, got: usize },
    /// An element matched two insurer rows, or two elements one row.
    #[error("element {element} and insurer row {row} are matched more than once")]
    DuplicateMatch { element: usize, row: usize },
    /// Sums of another number of measures than the holder's.
    #[error("sums of {got} measures, the holder has {expected}")]
    MeasureMismatch { expected: usize, got: usize },
    /// Sums whose cells are not one per group and measure.
    #[error("{got} cells, expected {expected}")]
    CellCount { expected: usize, got: usize },
    /// A search range wider than [`MAX_RANGE`].
    #[error("measure {measure}: search range of {width} values exceeds the maximum of {MAX_RANGE}")]
    RangeTooWide { measure: usize, width: u128 },
    /// A cell whose plaintext lies outside `[-margin, total + margin]`.
    #[error("cell {cell} has no value in the search range")]
    NoLogarithm { cell: usize },
}

// ---------------------------------------------------------------------------------------------
// Ciphertexts and keys
// ---------------------------------------------------------------------------------------------

/// An exponential ElGamal ciphertext `(rG, mG + rX)`, both points compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ciphertext {
    /// `rG`.
    pub c1: PointBytes,
    /// `mG + rX`.
    pub c2: PointBytes,
}

impl Ciphertext {
    /// `c1 ‖ c2`.
    pub fn to_bytes(&self) -> [u8; CIPHERTEXT_LEN] {
        let mut out = [0u8; CIPHERTEXT_LEN];
        let (a, b) = out.split_at_mut(POINT_LEN);
        a.copy_from_slice(&self.c1);
        b.copy_from_slice(&self.c2);
        out
    }

    /// Splits 64 bytes into the two points (decoded and checked when used).
    pub fn from_bytes(bytes: &[u8; CIPHERTEXT_LEN]) -> Self {
        let mut c1 = [0u8; POINT_LEN];
        let mut c2 = [0u8; POINT_LEN];
        let (a, b) = bytes.split_at(POINT_LEN);
        c1.copy_from_slice(a);
        c2.copy_from_slice(b);
        Self { c1, c2 }
    }

    /// Both points, canonically encoded, `c1` not the identity (`c1 = rG` is the identity only
    /// for `r = 0`, which an honest party draws with probability 2^-252).
    fn decompress(&self) -> Option<(RistrettoPoint, RistrettoPoint)> {
        let c1 = CompressedRistretto(self.c1)
            .decompress()
            .filter(|p| !p.is_identity())?;
        let c2 = CompressedRistretto(self.c2).decompress()?;
        Some((c1, c2))
    }
}

/// `v` as a scalar, `-|v|` for a negative `v`, without a branch on its sign.
fn scalar_i64(v: i64) -> Scalar {
    // `v as u64` is `v + 2^64` for a negative `v`: subtract 2^64 back when the sign bit is set.
    let two_64 = Scalar::from(u64::MAX) + Scalar::ONE;
    Scalar::from(v as u64) - Scalar::from((v as u64) >> 63) * two_64
}

fn half() -> Scalar {
    Scalar::from(2u64).invert()
}

/// The insurer's ElGamal secret for one run (zeroized on drop).
struct KeySecret(Scalar);

impl KeySecret {
    fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let x = Scalar::random(rng);
            if x != Scalar::ZERO {
                return Self(x);
            }
        }
    }
}

impl Drop for KeySecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

fn check_measures(measures: usize) -> Result<(), JoinError> {
    if measures == 0 || measures > MAX_MEASURES {
        return Err(JoinError::Measures(measures));
    }
    Ok(())
}

fn check_groups(groups: usize) -> Result<(), JoinError> {
    if groups > MAX_GROUPS {
        return Err(JoinError::TooMany {
            what: "groups",
            count: groups as u64,
            max: MAX_GROUPS as u64,
        });
    }
    Ok(())
}

fn check_rows(rows: usize) -> Result<(), JoinError> {
    if rows > MAX_ELEMENTS {
        return Err(JoinError::TooMany {
            what: "rows",
            count: rows as u64,
            max: MAX_ELEMENTS as u64,
        });
    }
    Ok(())
}

/// `rows · measures`, the ciphertexts such rows carry (bounded: rows ≤ 2^24, measures ≤ 16).
fn cells_of(rows: usize, measures: usize) -> Result<usize, JoinError> {
    rows.checked_mul(measures).ok_or(JoinError::TooMany {
        what: "ciphertexts",
        count: u64::MAX,
        max: (MAX_ELEMENTS * MAX_MEASURES) as u64,
    })
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// Insurer → hospital: the PSI answer and the encrypted rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The insurer's ElGamal public key `X`, compressed.
    pub public_key: PointBytes,
    /// Measures per row, `K` (1 to [`MAX_MEASURES`]).
    pub measures: usize,
    /// `tag(H(p)^ab)` for each point of the request, in the request's order.
    pub reblinded: Vec<Tag>,
    /// `H(q)^b` for each insurer row, shuffled.
    pub holder_points: Vec<PointBytes>,
    /// Row-major, aligned with `holder_points`: row `i`'s measure `k` is at `i·K + k`.
    pub ciphertexts: Vec<Ciphertext>,
}

/// Hospital → insurer: one re-randomized ciphertext per group and measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sums {
    /// Number of groups (at most [`MAX_GROUPS`]).
    pub groups: usize,
    /// Measures per group (1 to [`MAX_MEASURES`]).
    pub measures: usize,
    /// Group-major: group `g`'s measure `k` is at `g·measures + k`.
    pub cells: Vec<Ciphertext>,
}

fn u32_of(n: usize, what: &'static str, max: usize) -> Result<u32, JoinError> {
    match u32::try_from(n) {
        Ok(v) if n <= max => Ok(v),
        _ => Err(JoinError::TooMany {
            what,
            count: n as u64,
            max: max as u64,
        }),
    }
}

/// Checks version and kind and the header's length; returns the rest after those two bytes.
fn read_header(bytes: &[u8], kind: u8, header: usize) -> Result<&[u8], JoinError> {
    let truncated = JoinError::Truncated {
        needed: header,
        got: bytes.len(),
    };
    if bytes.len() < header {
        return Err(truncated);
    }
    let Some(([version, got_kind], rest)) = bytes.split_first_chunk::<2>() else {
        return Err(truncated);
    };
    if *version != WIRE_VERSION {
        return Err(JoinError::Version(*version));
    }
    if *got_kind != kind {
        return Err(JoinError::Kind {
            expected: kind,
            got: *got_kind,
        });
    }
    Ok(rest)
}

/// A u32 LE count at most `max`, and the rest.
fn split_count<'a>(
    bytes: &'a [u8],
    what: &'static str,
    max: usize,
) -> Result<(usize, &'a [u8]), JoinError> {
    let Some((count, rest)) = bytes.split_first_chunk::<4>() else {
        return Err(JoinError::Truncated {
            needed: 4,
            got: bytes.len(),
        });
    };
    let n = u32::from_le_bytes(*count);
    match usize::try_from(n) {
        Ok(n) if n <= max => Ok((n, rest)),
        _ => Err(JoinError::TooMany {
            what,
            count: u64::from(n),
            max: max as u64,
        }),
    }
}

fn check_len(got: usize, expected: usize) -> Result<(), JoinError> {
    match got.cmp(&expected) {
        std::cmp::Ordering::Less => Err(JoinError::Truncated {
            needed: expected,
            got,
        }),
        std::cmp::Ordering::Greater => Err(JoinError::Length { expected, got }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

/// `header + Σ count·size`, or an error if it does not fit a `usize`.
fn body_len(header: usize, parts: &[(usize, usize)]) -> Result<usize, JoinError> {
    parts
        .iter()
        .try_fold(header, |acc, (n, size)| {
            n.checked_mul(*size).and_then(|b| acc.checked_add(b))
        })
        .ok_or(JoinError::TooMany {
            what: "bytes",
            count: u64::MAX,
            max: usize::MAX as u64,
        })
}

fn ciphertexts_from(bytes: &[u8]) -> Vec<Ciphertext> {
    let (chunks, _) = bytes.as_chunks::<CIPHERTEXT_LEN>();
    chunks.iter().map(Ciphertext::from_bytes).collect()
}

impl Offer {
    /// `[version][kind=3][K: u32 LE][n: u32 LE][m: u32 LE][c: u32 LE][32-byte public key]`
    /// `[n × 16-byte tag][m × 32-byte point][c × 64-byte ciphertext]`, with `c = m·K`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, JoinError> {
        check_measures(self.measures)?;
        let k = u32_of(self.measures, "measures", MAX_MEASURES)?;
        let n = u32_of(self.reblinded.len(), "elements", MAX_ELEMENTS)?;
        let m = u32_of(self.holder_points.len(), "rows", MAX_ELEMENTS)?;
        if cells_of(self.holder_points.len(), self.measures)? != self.ciphertexts.len() {
            return Err(JoinError::Rows {
                points: self.holder_points.len(),
                measures: self.measures,
                ciphertexts: self.ciphertexts.len(),
            });
        }
        let c = u32_of(
            self.ciphertexts.len(),
            "ciphertexts",
            MAX_ELEMENTS * MAX_MEASURES,
        )?;
        let len = body_len(
            OFFER_HEADER + POINT_LEN,
            &[
                (self.reblinded.len(), TAG_LEN),
                (self.holder_points.len(), POINT_LEN),
                (self.ciphertexts.len(), CIPHERTEXT_LEN),
            ],
        )?;
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&[WIRE_VERSION, KIND_OFFER]);
        for count in [k, n, m, c] {
            out.extend_from_slice(&count.to_le_bytes());
        }
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(self.reblinded.as_flattened());
        out.extend_from_slice(self.holder_points.as_flattened());
        for ct in &self.ciphertexts {
            out.extend_from_slice(&ct.to_bytes());
        }
        Ok(out)
    }

    /// Parses an offer: exact length, bounded counts, `c = m·K`, no trailing bytes, and a
    /// public key that decodes to a point other than the identity. The other points are
    /// checked when the hospital decompresses them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, JoinError> {
        let rest = read_header(bytes, KIND_OFFER, OFFER_HEADER)?;
        let (measures, rest) = split_count(rest, "measures", MAX_MEASURES)?;
        check_measures(measures)?;
        let (n, rest) = split_count(rest, "elements", MAX_ELEMENTS)?;
        let (m, rest) = split_count(rest, "rows", MAX_ELEMENTS)?;
        let (c, rest) = split_count(rest, "ciphertexts", MAX_ELEMENTS * MAX_MEASURES)?;
        if cells_of(m, measures)? != c {
            return Err(JoinError::Rows {
                points: m,
                measures,
                ciphertexts: c,
            });
        }
        let len = body_len(
            OFFER_HEADER + POINT_LEN,
            &[(n, TAG_LEN), (m, POINT_LEN), (c, CIPHERTEXT_LEN)],
        )?;
        check_len(bytes.len(), len)?;
        let too_short = JoinError::Truncated {
            needed: len,
            got: bytes.len(),
        };
        let (key, rest) = rest
            .split_first_chunk::<POINT_LEN>()
            .ok_or(too_short.clone())?;
        public_point(key)?;
        let (tags, rest) = rest
            .split_at_checked(n * TAG_LEN)
            .ok_or(too_short.clone())?;
        let (points, cts) = rest.split_at_checked(m * POINT_LEN).ok_or(too_short)?;
        let (tags, _) = tags.as_chunks::<TAG_LEN>();
        let (points, _) = points.as_chunks::<POINT_LEN>();
        Ok(Self {
            public_key: *key,
            measures,
            reblinded: tags.to_vec(),
            holder_points: points.to_vec(),
            ciphertexts: ciphertexts_from(cts),
        })
    }
}

impl Sums {
    /// `[version][kind=4][groups: u32 LE][measures: u32 LE][groups × measures × 64-byte
    /// ciphertext]`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, JoinError> {
        check_measures(self.measures)?;
        let g = u32_of(self.groups, "groups", MAX_GROUPS)?;
        let k = u32_of(self.measures, "measures", MAX_MEASURES)?;
        let expected = cells_of(self.groups, self.measures)?;
        if self.cells.len() != expected {
            return Err(JoinError::CellCount {
                expected,
                got: self.cells.len(),
            });
        }
        let mut out = Vec::with_capacity(body_len(
            SUMS_HEADER,
            &[(self.cells.len(), CIPHERTEXT_LEN)],
        )?);
        out.extend_from_slice(&[WIRE_VERSION, KIND_SUMS]);
        out.extend_from_slice(&g.to_le_bytes());
        out.extend_from_slice(&k.to_le_bytes());
        for ct in &self.cells {
            out.extend_from_slice(&ct.to_bytes());
        }
        Ok(out)
    }

    /// Parses sums: exact length, bounded counts, no trailing bytes. The points are checked
    /// when the insurer decompresses them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, JoinError> {
        let rest = read_header(bytes, KIND_SUMS, SUMS_HEADER)?;
        let (groups, rest) = split_count(rest, "groups", MAX_GROUPS)?;
        let (measures, rest) = split_count(rest, "measures", MAX_MEASURES)?;
        check_measures(measures)?;
        let cells = cells_of(groups, measures)?;
        check_len(
            bytes.len(),
            body_len(SUMS_HEADER, &[(cells, CIPHERTEXT_LEN)])?,
        )?;
        Ok(Self {
            groups,
            measures,
            cells: ciphertexts_from(rest),
        })
    }
}

impl Sums {
    /// The cell-wise homomorphic sum of several hospitals' sums: the insurer adds them up and
    /// opens only the total, so no hospital's own sums are ever opened. Every part must have
    /// the same groups and measures; a malformed cell is a typed error.
    pub fn add_all(parts: &[Sums]) -> Result<Sums, JoinError> {
        let Some(first) = parts.first() else {
            return Err(JoinError::CellCount {
                expected: 1,
                got: 0,
            });
        };
        let cells = cells_of(first.groups, first.measures)?;
        let mut acc = vec![(RistrettoPoint::identity(), RistrettoPoint::identity()); cells];
        for part in parts {
            if part.groups != first.groups {
                return Err(JoinError::GroupsLength {
                    expected: first.groups,
                    got: part.groups,
                });
            }
            if part.measures != first.measures {
                return Err(JoinError::MeasureMismatch {
                    expected: first.measures,
                    got: part.measures,
                });
            }
            if part.cells.len() != cells {
                return Err(JoinError::CellCount {
                    expected: cells,
                    got: part.cells.len(),
                });
            }
            for (index, (a, ct)) in acc.iter_mut().zip(&part.cells).enumerate() {
                let (c1, c2) = ct
                    .decompress()
                    .ok_or(JoinError::InvalidCiphertext { index })?;
                a.0 += c1;
                a.1 += c2;
            }
        }
        Ok(Sums {
            groups: first.groups,
            measures: first.measures,
            cells: acc
                .into_iter()
                .map(|(c1, c2)| Ciphertext {
                    c1: c1.compress().to_bytes(),
                    c2: c2.compress().to_bytes(),
                })
                .collect(),
        })
    }
}

fn public_point(bytes: &PointBytes) -> Result<RistrettoPoint, JoinError> {
    CompressedRistretto(*bytes)
        .decompress()
        .filter(|p| !p.is_identity())
        .ok_or(JoinError::InvalidPublicKey)
}

// ---------------------------------------------------------------------------------------------
// The insurer
// ---------------------------------------------------------------------------------------------

/// The insurer ("holder"): answers the hospital's request with its encrypted rows and opens
/// the group sums.
pub struct Holder {
    /// The PSI blinding secret `b`.
    blind: PsiSecret,
    /// The ElGamal secret `x`.
    key: KeySecret,
    /// `X = xG`, compressed.
    public_key: PointBytes,
    /// `H(q)^b`, shuffled.
    points: Vec<PointBytes>,
    /// Row-major, aligned with `points`.
    ciphertexts: Vec<Ciphertext>,
    measures: usize,
    totals: Vec<u64>,
    threads: usize,
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder")
            .field("rows", &self.points.len())
            .field("measures", &self.measures)
            .finish_non_exhaustive()
    }
}

/// Encrypts each `[r/2, (m + r·x)/2]` to `(rG, (m + r·x)G) = (rG, mG + rX)`.
fn encrypt_block(
    input: &[[Scalar; 2]],
    output: &mut [Ciphertext],
    threads: usize,
) -> Result<(), PsiError> {
    psi::parallel(input, output, threads, |input, output| {
        let mut c1 = Vec::with_capacity(BATCH);
        let mut c2 = Vec::with_capacity(BATCH);
        for (input, output) in input.chunks(BATCH).zip(output.chunks_mut(BATCH)) {
            c1.clear();
            c2.clear();
            for [r, s] in input {
                c1.push(RISTRETTO_BASEPOINT_TABLE * r);
                c2.push(RISTRETTO_BASEPOINT_TABLE * s);
            }
            let c1 = RistrettoPoint::double_and_compress_batch(&c1);
            let c2 = RistrettoPoint::double_and_compress_batch(&c2);
            for ((o, a), b) in output.iter_mut().zip(c1).zip(c2) {
                *o = Ciphertext {
                    c1: a.to_bytes(),
                    c2: b.to_bytes(),
                };
            }
        }
        Ok(())
    })
}

impl Holder {
    /// Blinds `ids` under a fresh PSI secret, draws a fresh ElGamal key, encrypts `values`
    /// (row-major: identifier `i`'s measure `k` is `values[i·measures + k]`, each at most
    /// [`MAX_VALUE`]) and shuffles the rows. Identifiers must be distinct.
    pub fn new<I, R>(
        rng: &mut R,
        ids: &[I],
        values: &[u64],
        measures: usize,
        threads: usize,
    ) -> Result<Self, JoinError>
    where
        I: AsRef<[u8]> + Sync,
        R: CryptoRng + ?Sized,
    {
        check_measures(measures)?;
        check_rows(ids.len())?;
        let expected = cells_of(ids.len(), measures)?;
        if values.len() != expected {
            return Err(JoinError::ValuesLength {
                expected,
                got: values.len(),
            });
        }
        let mut totals = vec![0u64; measures];
        for (row, vals) in values.chunks_exact(measures).enumerate() {
            for (measure, (&value, total)) in vals.iter().zip(totals.iter_mut()).enumerate() {
                if value > MAX_VALUE {
                    return Err(JoinError::ValueTooLarge {
                        row,
                        measure,
                        value,
                    });
                }
                *total = total.saturating_add(value);
            }
        }

        let blind = PsiSecret::random(rng);
        let blinded = psi::hash_and_blind(ids, &blind, threads)?;
        let mut sorted = blinded.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| matches!(w, [a, b] if a == b)) {
            return Err(JoinError::DuplicateId);
        }
        drop(sorted);

        let key = KeySecret::random(rng);
        let public_key = RistrettoPoint::mul_base(&key.0).compress().to_bytes();

        let mut rows: Vec<(PointBytes, &[u64])> = blinded
            .into_iter()
            .zip(values.chunks_exact(measures))
            .collect();
        psi::shuffle(&mut rows, rng);

        let half = half();
        let mut ciphertexts = Vec::with_capacity(expected);
        let mut nonces: Vec<[Scalar; 2]> = Vec::with_capacity(BLOCK.min(expected));
        let mut block = Vec::with_capacity(BLOCK.min(expected));
        let mut plain = rows.iter().flat_map(|(_, vals)| vals.iter()).peekable();
        while plain.peek().is_some() {
            nonces.clear();
            for &m in plain.by_ref().take(BLOCK) {
                // r = 2·r_half is uniform; the second scalar is (m + r·x) / 2.
                let r_half = Scalar::random(rng);
                let s_half = Scalar::from(m) * half + r_half * key.0;
                nonces.push([r_half, s_half]);
            }
            block.clear();
            block.resize(
                nonces.len(),
                Ciphertext {
                    c1: [0; POINT_LEN],
                    c2: [0; POINT_LEN],
                },
            );
            let result = encrypt_block(&nonces, &mut block, threads);
            nonces.zeroize();
            result?;
            ciphertexts.extend_from_slice(&block);
        }

        Ok(Self {
            blind,
            key,
            public_key,
            points: rows.into_iter().map(|(p, _)| p).collect(),
            ciphertexts,
            measures,
            totals,
            threads,
        })
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the holder has no rows.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Measures per row.
    pub fn measures(&self) -> usize {
        self.measures
    }

    /// The sum of each measure over all rows (saturating at `u64::MAX`): the upper end of
    /// each search in [`Holder::open`], before the margin.
    pub fn totals(&self) -> &[u64] {
        &self.totals
    }

    /// The ElGamal public key `X`, compressed.
    pub fn public_key(&self) -> PointBytes {
        self.public_key
    }

    /// Answers a [`Mode::Linked`] request: its points re-blinded to tags in its order, with the
    /// holder's shuffled rows. The same holder may answer several requests (the rows are
    /// the same each time). `_rng` is unused (a linked answer is not shuffled); it keeps the
    /// signature of [`psi::Sender::respond`].
    pub fn respond<R: CryptoRng + ?Sized>(
        &self,
        request: &psi::Request,
        _rng: &mut R,
    ) -> Result<Offer, JoinError> {
        if request.mode != Mode::Linked {
            return Err(PsiError::ModeMismatch {
                expected: Mode::Linked,
                got: request.mode,
            }
            .into());
        }
        check_rows(request.points.len())?;
        let reblinded = psi::reblind_to_tags(&request.points, &self.blind, self.threads)?;
        Ok(Offer {
            public_key: self.public_key,
            measures: self.measures,
            reblinded,
            holder_points: self.points.clone(),
            ciphertexts: self.ciphertexts.clone(),
        })
    }

    /// Decrypts each cell and recovers its value in `[-margin, total_k + margin]` (`total_k`
    /// from [`Holder::totals`]) by baby-step giant-step. Group-major like the cells: group
    /// `g`'s measure `k` at `g·measures + k`. A range wider than [`MAX_RANGE`] is refused
    /// before any work; a cell outside its range is [`JoinError::NoLogarithm`].
    pub fn open(&self, sums: &Sums, margin: u64) -> Result<Vec<i64>, JoinError> {
        if sums.measures != self.measures {
            return Err(JoinError::MeasureMismatch {
                expected: self.measures,
                got: sums.measures,
            });
        }
        check_groups(sums.groups)?;
        let expected = cells_of(sums.groups, sums.measures)?;
        if sums.cells.len() != expected {
            return Err(JoinError::CellCount {
                expected,
                got: sums.cells.len(),
            });
        }
        let mut widths = Vec::with_capacity(self.measures);
        for (measure, &total) in self.totals.iter().enumerate() {
            let width = u128::from(total) + 2 * u128::from(margin) + 1;
            match u64::try_from(width) {
                Ok(w) if w <= MAX_RANGE => widths.push(w),
                _ => return Err(JoinError::RangeTooWide { measure, width }),
            }
        }
        if sums.cells.is_empty() {
            return Ok(Vec::new());
        }

        // Decrypt: T/2 = (c2 - x·c1 + margin·G) / 2, the value shifted into [0, width).
        let half = half();
        let mut neg_xh = -(self.key.0 * half);
        let margin_half = RISTRETTO_BASEPOINT_TABLE * &(Scalar::from(margin) * half);
        let mut targets = vec![RistrettoPoint::identity(); sums.cells.len()];
        let decrypted = psi::parallel(&sums.cells, &mut targets, self.threads, |cells, out| {
            for (i, (ct, o)) in cells.iter().zip(out.iter_mut()).enumerate() {
                let (c1, c2) = ct.decompress().ok_or(i)?;
                *o = RistrettoPoint::multiscalar_mul([half, neg_xh], [c2, c1]) + margin_half;
            }
            Ok(())
        });
        neg_xh.zeroize();
        decrypted.map_err(|e| match e {
            PsiError::InvalidPoint { index } => JoinError::InvalidCiphertext { index },
            other => JoinError::Psi(other),
        })?;

        // One baby-step table for every cell: about √(Σ cells·width) entries.
        let work: u128 = widths
            .iter()
            .map(|&w| u128::from(w) * sums.groups as u128)
            .sum();
        let widest = widths.iter().copied().max().unwrap_or(1);
        let step = u64::try_from(work.isqrt())
            .unwrap_or(BABY_CAP)
            .saturating_add(1)
            .min(BABY_CAP)
            .min(widest)
            .max(1);
        let search = Search::new(step);

        let input: Vec<(RistrettoPoint, u64)> = targets
            .into_iter()
            .zip(widths.iter().copied().cycle())
            .collect();
        let mut values = vec![0i64; input.len()];
        psi::parallel_above(&input, &mut values, self.threads, 1, |input, out| {
            for (i, ((target, width), o)) in input.iter().zip(out.iter_mut()).enumerate() {
                let j = search.find(*target, *width).ok_or(i)?;
                *o = i64::try_from(i128::from(j) - i128::from(margin)).map_err(|_| i)?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            PsiError::InvalidPoint { index } => JoinError::NoLogarithm { cell: index },
            other => JoinError::Psi(other),
        })?;
        Ok(values)
    }
}

/// Baby-step giant-step over `[0, width)` with a table of `step` baby steps.
struct Search {
    /// `compress(iG) → i` for `i < step`.
    babies: HashMap<[u8; POINT_LEN], u32>,
    step: u64,
    /// `(step / 2)·G`.
    giant_half: RistrettoPoint,
}

impl Search {
    /// `step ≤ BABY_CAP`.
    fn new(step: u64) -> Self {
        let step = step.clamp(1, BABY_CAP);
        let half = half();
        let g_half = RISTRETTO_BASEPOINT_TABLE * &half;
        let mut babies = HashMap::with_capacity(usize::try_from(step).unwrap_or(0));
        let mut p = RistrettoPoint::identity();
        let mut buf = Vec::with_capacity(BATCH);
        let mut i: u32 = 0;
        while u64::from(i) < step {
            buf.clear();
            let start = i;
            while buf.len() < BATCH && u64::from(i) < step {
                buf.push(p);
                p += g_half;
                i += 1;
            }
            for (k, c) in (start..).zip(RistrettoPoint::double_and_compress_batch(&buf)) {
                babies.entry(c.to_bytes()).or_insert(k);
            }
        }
        Self {
            babies,
            step,
            giant_half: RISTRETTO_BASEPOINT_TABLE * &(Scalar::from(step) * half),
        }
    }

    /// The `j` in `[0, width)` with `2·target_half = jG`, if any.
    fn find(&self, target_half: RistrettoPoint, width: u64) -> Option<u64> {
        let giants = width.div_ceil(self.step);
        let mut q = target_half;
        let mut t: u64 = 0;
        let mut buf = Vec::with_capacity(BATCH);
        while t < giants {
            buf.clear();
            let first = t;
            while buf.len() < BATCH && t < giants {
                buf.push(q);
                q -= self.giant_half;
                t += 1;
            }
            for (t, c) in (first..).zip(RistrettoPoint::double_and_compress_batch(&buf)) {
                if let Some(&i) = self.babies.get(c.as_bytes()) {
                    // The first hit is the only `j < giants·step`; beyond `width` it is out of
                    // range.
                    let j = t * self.step + u64::from(i);
                    return (j < width).then_some(j);
                }
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// The hospital
// ---------------------------------------------------------------------------------------------

/// The hospital's side: matches its elements to the offer's rows, sums the matched rows'
/// ciphertexts per group and measure, adds `noise[g·measures + k]` in the exponent (`noise` is
/// empty for none, or one value per group and measure) and re-randomizes each cell with a
/// fresh encryption of 0. `groups[i]` is the group of the receiver's `i`-th element (`None`: in
/// no group). Returns the exact matched count per group (the hospital's to protect) and the
/// cells to send.
pub fn sum_groups<R: CryptoRng + ?Sized>(
    receiver: &psi::Receiver,
    offer: &Offer,
    groups: &[Option<u32>],
    n_groups: usize,
    noise: &[i64],
    rng: &mut R,
) -> Result<(Vec<u64>, Sums), JoinError> {
    check_measures(offer.measures)?;
    check_groups(n_groups)?;
    let measures = offer.measures;
    check_rows(offer.holder_points.len())?;
    if cells_of(offer.holder_points.len(), measures)? != offer.ciphertexts.len() {
        return Err(JoinError::Rows {
            points: offer.holder_points.len(),
            measures,
            ciphertexts: offer.ciphertexts.len(),
        });
    }
    if groups.len() != receiver.count() {
        return Err(JoinError::GroupsLength {
            expected: receiver.count(),
            got: groups.len(),
        });
    }
    for (element, group) in groups.iter().enumerate() {
        if let Some(g) = *group
            && usize::try_from(g).map_or(true, |g| g >= n_groups)
        {
            return Err(JoinError::GroupIndex {
                element,
                group: g,
                n_groups,
            });
        }
    }
    let n_cells = cells_of(n_groups, measures)?;
    if !noise.is_empty() && noise.len() != n_cells {
        return Err(JoinError::NoiseLength {
            expected: n_cells,
            got: noise.len(),
        });
    }
    let public = public_point(&offer.public_key)?;

    let pairs = receiver.linked_pairs(&offer.reblinded, &offer.holder_points)?;
    let mut own_seen = vec![false; groups.len()];
    let mut row_seen = vec![false; offer.holder_points.len()];
    let mut counts = vec![0u64; n_groups];
    // (row, group) of each matched element that has a group.
    let mut matched: Vec<(usize, usize)> = Vec::with_capacity(pairs.len());
    for &(element, row) in &pairs {
        let duplicate = JoinError::DuplicateMatch { element, row };
        let own = own_seen.get_mut(element).ok_or(duplicate.clone())?;
        let theirs = row_seen.get_mut(row).ok_or(duplicate.clone())?;
        if *own || *theirs {
            return Err(duplicate);
        }
        *own = true;
        *theirs = true;
        if let Some(Some(g)) = groups.get(element) {
            let g = usize::try_from(*g).map_err(|_| duplicate)?;
            if let Some(c) = counts.get_mut(g) {
                *c += 1;
            }
            matched.push((row, g));
        }
    }

    // Homomorphic sums, a block of rows at a time.
    let mut acc = vec![(RistrettoPoint::identity(), RistrettoPoint::identity()); n_cells];
    let rows_per_block = (BLOCK / measures).max(1);
    let mut gathered = Vec::with_capacity(rows_per_block * measures);
    let mut points = Vec::with_capacity(rows_per_block * measures);
    for block in matched.chunks(rows_per_block) {
        gathered.clear();
        for &(row, _) in block {
            let cts = row
                .checked_mul(measures)
                .and_then(|start| offer.ciphertexts.get(start..start.checked_add(measures)?))
                .ok_or(JoinError::InvalidCiphertext { index: row })?;
            gathered.extend_from_slice(cts);
        }
        points.clear();
        points.resize(
            gathered.len(),
            (RistrettoPoint::identity(), RistrettoPoint::identity()),
        );
        psi::parallel(&gathered, &mut points, receiver.threads(), |cts, out| {
            for (i, (ct, o)) in cts.iter().zip(out.iter_mut()).enumerate() {
                *o = ct.decompress().ok_or(i)?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            PsiError::InvalidPoint { index } => JoinError::InvalidCiphertext {
                index: block
                    .get(index / measures)
                    .map_or(usize::MAX, |(row, _)| *row),
            },
            other => JoinError::Psi(other),
        })?;
        for (&(_, g), row_points) in block.iter().zip(points.chunks_exact(measures)) {
            let cells = g
                .checked_mul(measures)
                .and_then(|start| acc.get_mut(start..start.checked_add(measures)?))
                .unwrap_or_default();
            for (cell, (a, b)) in cells.iter_mut().zip(row_points) {
                cell.0 += a;
                cell.1 += b;
            }
        }
    }

    // Noise in the exponent and a fresh encryption of 0: (Σa + sG, Σb + n·G + sX).
    let x_table = RistrettoBasepointTable::create(&public);
    let mut cells = Vec::with_capacity(n_cells);
    for (i, (a, b)) in acc.into_iter().enumerate() {
        let mut s = Scalar::random(rng);
        let mut n = noise.get(i).map_or(Scalar::ZERO, |&v| scalar_i64(v));
        let c1 = a + RISTRETTO_BASEPOINT_TABLE * &s;
        let c2 = b + &x_table * &s + RISTRETTO_BASEPOINT_TABLE * &n;
        s.zeroize();
        n.zeroize();
        cells.push(Ciphertext {
            c1: c1.compress().to_bytes(),
            c2: c2.compress().to_bytes(),
        });
    }
    Ok((
        counts,
        Sums {
            groups: n_groups,
            measures,
            cells,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn signed_scalars() {
        for v in [0i64, 1, -1, 42, -42, i64::MAX, i64::MIN] {
            let expected = if v < 0 {
                -Scalar::from(v.unsigned_abs())
            } else {
                Scalar::from(v.unsigned_abs())
            };
            assert_eq!(scalar_i64(v), expected, "{v}");
        }
    }

    #[test]
    fn encryption_is_elgamal_under_the_public_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let ids: Vec<[u8; 4]> = (0u32..3).map(u32::to_le_bytes).collect();
        let values = [5u64, 0, MAX_VALUE, 1, 2, 3];
        let holder = Holder::new(&mut rng, &ids, &values, 2, 1).unwrap();
        let x = holder.key.0;
        let decrypt = |ct: &Ciphertext| {
            let (c1, c2) = ct.decompress().unwrap();
            let m = c2 - x * c1;
            *values
                .iter()
                .find(|&&v| RistrettoPoint::mul_base(&Scalar::from(v)) == m)
                .unwrap()
        };
        let mut rows: Vec<Vec<u64>> = holder
            .ciphertexts
            .chunks_exact(2)
            .map(|row| row.iter().map(decrypt).collect())
            .collect();
        rows.sort_unstable();
        assert_eq!(rows, vec![vec![2, 3], vec![5, 0], vec![MAX_VALUE, 1]]);
        assert_eq!(holder.totals(), &[MAX_VALUE + 7, 4]);
    }

    #[test]
    fn search_finds_every_value_at_the_edges() {
        for step in [1u64, 2, 3, 7, 16] {
            let search = Search::new(step);
            let half = half();
            for width in [1u64, 2, 5, 16, 17, 50] {
                for j in 0..width {
                    let target = RISTRETTO_BASEPOINT_TABLE * &(Scalar::from(j) * half);
                    assert_eq!(search.find(target, width), Some(j), "step {step} j {j}");
                }
                let outside = RISTRETTO_BASEPOINT_TABLE * &(Scalar::from(width) * half);
                assert_eq!(search.find(outside, width), None);
                let negative = RISTRETTO_BASEPOINT_TABLE * &(-half);
                assert_eq!(search.find(negative, width), None);
            }
        }
    }
}
