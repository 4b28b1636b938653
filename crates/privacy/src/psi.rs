//! Private set intersection: ECDH-PSI on ristretto255.
//!
//! Two uses in a consortium: hospitals count a patient present at several sites once (the
//! dedup rule, [`dedup_drops`] / [`dedup_plan`]), and a hospital joins its clinical data with an
//! insurer's claims on the intersection only (linked mode).
//!
//! # Identifiers
//!
//! Raw national identifiers never enter the protocol. Each party first maps them with
//! [`identifier_key`]: HMAC-SHA-256 under the contract's [`ContractKey`] (shared by the contract's
//! parties, unknown to everyone else) of the [`normalize_national_id`] form, domain-separated.
//! A patient's ledger pseudonym is keyed the same way under its own domain
//! ([`pseudonym_identifier`]). A different contract key gives unrelated identifiers, so two
//! contracts' runs cannot be linked, and an outsider without the key cannot test a guessed
//! national ID against what crosses the wire.
//!
//! # Protocol
//!
//! `H` hashes an identifier to the group: SHA-512 with a domain prefix, then
//! `RistrettoPoint::from_uniform_bytes` (two Elligator maps, a uniformly random point). The
//! receiver `R` holds set `X` and a random secret scalar `a`; the sender `S` holds `Y` and `b`.
//!
//! 1. `R → S` [`Request`]: `H(x)^a` for each `x ∈ X`, in `R`'s order (32 bytes each).
//! 2. `S → R` [`Response`]: `tag(H(x)^ab)` for each received point (in the received order in
//!    [`Mode::Linked`], shuffled in [`Mode::Cardinality`]), and `H(y)^b` for each `y ∈ Y`, shuffled.
//! 3. `R` computes `tag(H(y)^ba)` and compares: equal tags are common elements.
//!
//! `tag` is the first [`TAG_LEN`] = 16 bytes of SHA-256 over the compressed point (domain
//! separated): the doubly-blinded values are only compared, never decompressed, so they are
//! truncated to halve that message. Tags of distinct points are independent 128-bit values
//! (random oracle), so a false match among `|X|·|Y| ≤ 2^24·2^24 = 2^48` pairs has probability at
//! most `2^48 / 2^128 = 2^-80`; with the [`MAX_ELEMENTS`] bound that holds for every run.
//!
//! Every point a party decompresses is checked (canonical encoding, not the identity) before
//! it is multiplied; malformed messages are typed [`PsiError`]s, never panics.
//!
//! # What each side learns
//!
//! - Both learn the other's set size (the message lengths).
//! - [`Mode::Cardinality`]: `R` learns `|X ∩ Y|` only — the returned tags are shuffled, so their
//!   positions cannot be linked to `R`'s elements. `S` learns nothing more than `|X|`.
//! - [`Mode::Linked`]: `R` learns which of ITS OWN elements are in the intersection (indices into
//!   its input). It learns nothing about `S`'s other elements: `H(y)^b` for `y ∉ X` is, under
//!   the decisional Diffie–Hellman assumption in ristretto255 with `H` a random oracle,
//!   indistinguishable from a random point, and `S`'s list is shuffled so even the positions of
//!   the matching ones say nothing about `S`'s input order. `S` learns nothing more than `|X|`.
//!
//! # Threat model
//!
//! Semi-honest (honest-but-curious) parties that follow the protocol and may try to learn more
//! from what they see. Secrets are fresh per run ([`PsiSecret::random`] from a `CryptoRng`) and
//! are zeroized on drop. A party that lies about its set (adds or omits elements) only changes
//! the answer it contributes to — as with any PSI, input substitution cannot be prevented
//! cryptographically; the contract's audit trail is the deterrent. A malicious sender could
//! also return wrong tags and so falsify the receiver's answer; this protocol does not protect
//! against that (the receiver only ever learns a subset of its own elements, never new data).
//!
//! # Costs
//!
//! Per pair of elements: two hashes to the group, four constant-time variable-base scalar
//! multiplications and two decompressions. Compression is batched: each party multiplies by
//! `s/2` and uses `double_and_compress_batch` (one inversion per batch instead of one inverse
//! square root per point). Bytes: 32 per element `R → S`, 16 + 32 per element `S → R`. Work is
//! split over `threads` scoped threads. [`bench`] measures it end to end.

pub mod bench;

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use hkdf::{Hkdf, HkdfExtract};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256, Sha512};
use thiserror::Error;
use zeroize::Zeroize;

/// Bytes of a compressed ristretto255 point on the wire.
pub const POINT_LEN: usize = 32;
/// Bytes of a truncated doubly-blinded value (see the module docs for the collision bound).
pub const TAG_LEN: usize = 16;
/// The largest set either side may hold (2^24): bounds every message and the collision bound.
pub const MAX_ELEMENTS: usize = 1 << 24;
/// Wire format version (first byte of every message).
pub const WIRE_VERSION: u8 = 1;

const KIND_REQUEST: u8 = 1;
const KIND_RESPONSE: u8 = 2;
/// Points hashed, multiplied and compressed together (one batch inversion each).
const BATCH: usize = 256;

const DOMAIN_NATIONAL_ID: &[u8] = b"medspace/psi/id/national/v1\0";
const DOMAIN_PSEUDONYM: &[u8] = b"medspace/psi/id/pseudonym/v1\0";
const DOMAIN_CONTRACT_KEY: &[u8] = b"medspace/psi/contract-key/v1";
const DOMAIN_H2G: &[u8] = b"medspace/psi/hash-to-ristretto255/v1\0";
const DOMAIN_TAG: &[u8] = b"medspace/psi/tag/v1\0";

/// An encoded point (32 bytes).
pub type PointBytes = [u8; POINT_LEN];
/// A truncated doubly-blinded value.
pub type Tag = [u8; TAG_LEN];

/// Errors of the PSI protocol, its messages and its benchmark.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PsiError {
    /// The message ended before its header or body did.
    #[error("truncated message: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    /// The message's length does not match the counts in its header.
    #[error("message length {got} does not match its header ({expected} expected)")]
    Length { expected: usize, got: usize },
    /// Unknown wire format version.
    #[error("unsupported PSI wire version {0}")]
    Version(u8),
    /// A message of another kind than expected.
    #[error("wrong message kind {got} (expected {expected})")]
    Kind { expected: u8, got: u8 },
    /// Unknown mode byte.
    #[error("unknown PSI mode byte {0}")]
    UnknownMode(u8),
    /// A set larger than [`MAX_ELEMENTS`].
    #[error("{count} elements exceed the maximum of {max}")]
    TooMany { count: u64, max: usize },
    /// A point that does not decode, or is the identity.
    #[error("invalid point at index {index}")]
    InvalidPoint { index: usize },
    /// The peer runs another mode than this party.
    #[error("mode mismatch: this party runs {expected:?}, the message is {got:?}")]
    ModeMismatch { expected: Mode, got: Mode },
    /// The response does not answer each element of the request once.
    #[error("response answers {got} elements, the request had {expected}")]
    CountMismatch { expected: usize, got: usize },
    /// A worker thread failed.
    #[error("a PSI worker thread panicked")]
    Thread,
    /// The operating system's random source failed.
    #[error("os random source unavailable: {reason}")]
    OsRandom { reason: String },
    /// A benchmark or plan argument out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The benchmark's PSI answer differs from the plain intersection.
    #[error("PSI found {psi} common elements, the plain intersection {plain}")]
    Mismatch { psi: usize, plain: usize },
}

/// What the receiver learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Only the size of the intersection.
    Cardinality,
    /// Which of the receiver's own elements are in the intersection.
    Linked,
}

impl Mode {
    fn to_byte(self) -> u8 {
        match self {
            Mode::Cardinality => 1,
            Mode::Linked => 2,
        }
    }

    fn from_byte(b: u8) -> Result<Self, PsiError> {
        match b {
            1 => Ok(Mode::Cardinality),
            2 => Ok(Mode::Linked),
            other => Err(PsiError::UnknownMode(other)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------------------------

/// The per-contract identifier key, shared by the contract's parties only.
#[derive(Clone)]
pub struct ContractKey([u8; 32]);

impl ContractKey {
    /// A key from 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key for `contract_id` derived (HKDF-SHA-256) from a secret the contract's parties
    /// share.
    pub fn derive(shared_secret: &[u8], contract_id: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(DOMAIN_CONTRACT_KEY), shared_secret);
        let mut out = [0u8; 32];
        // A 32-byte output is always within HKDF-SHA-256's 8160-byte limit; on the impossible
        // error the key would stay zero, which the expand never returns for this length.
        let _ = hk.expand(contract_id, &mut out);
        Self(out)
    }
}

impl Drop for ContractKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for ContractKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContractKey(..)")
    }
}

/// A keyed identifier: what enters the protocol in place of the raw identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identifier(pub [u8; 32]);

impl AsRef<[u8]> for Identifier {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The canonical form of a national identifier: surrounding and inner whitespace and the
/// separators `-` `.` `/` `_` removed, letters upper-cased. `"756.1234.5678.97"`,
/// `" 756-1234-5678-97 "` and `"7561234567897"` are the same person.
pub fn normalize_national_id(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '-' | '.' | '/' | '_'))
        .flat_map(char::to_uppercase)
        .collect()
}

fn keyed(key: &ContractKey, domain: &[u8], data: &[u8]) -> Identifier {
    // HKDF-Extract(salt = key, ikm = domain || data) is HMAC-SHA-256(key, domain || data).
    let mut extract = HkdfExtract::<Sha256>::new(Some(&key.0));
    extract.input_ikm(domain);
    extract.input_ikm(data);
    let (prk, _) = extract.finalize();
    Identifier(prk.into())
}

/// The keyed identifier of a national ID: HMAC-SHA-256 under the contract key of the
/// normalized ID, domain-separated.
pub fn identifier_key(key: &ContractKey, national_id: &str) -> Identifier {
    keyed(
        key,
        DOMAIN_NATIONAL_ID,
        normalize_national_id(national_id).as_bytes(),
    )
}

/// The keyed identifier of a patient's ledger pseudonym (any bytes), in its own domain so it
/// never equals a national ID's.
pub fn pseudonym_identifier(key: &ContractKey, pseudonym: &[u8]) -> Identifier {
    keyed(key, DOMAIN_PSEUDONYM, pseudonym)
}

// ---------------------------------------------------------------------------------------------
// Group operations
// ---------------------------------------------------------------------------------------------

/// `H`: SHA-512 of the domain-separated identifier, mapped to a uniformly random point.
pub fn hash_to_group(id: &[u8]) -> RistrettoPoint {
    let digest: [u8; 64] = Sha512::new()
        .chain_update(DOMAIN_H2G)
        .chain_update(id)
        .finalize()
        .into();
    RistrettoPoint::from_uniform_bytes(&digest)
}

fn tag_of(point: &CompressedRistretto) -> Tag {
    let digest = Sha256::new()
        .chain_update(DOMAIN_TAG)
        .chain_update(point.as_bytes())
        .finalize();
    let mut tag = [0u8; TAG_LEN];
    for (t, d) in tag.iter_mut().zip(digest.iter()) {
        *t = *d;
    }
    tag
}

/// A party's secret exponent for one run (zeroized on drop).
pub struct PsiSecret {
    /// `s / 2`: points are multiplied by it and then doubled while compressing in a batch.
    half: Scalar,
}

impl PsiSecret {
    /// A fresh uniformly random non-zero secret.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        loop {
            let s = Scalar::random(rng);
            if s != Scalar::ZERO {
                return Self {
                    half: s * Scalar::from(2u64).invert(),
                };
            }
        }
    }
}

impl Drop for PsiSecret {
    fn drop(&mut self) {
        self.half.zeroize();
    }
}

/// Runs `f` over matching chunks of `input` and `output` on up to `threads` scoped threads.
/// `f` returns the chunk-relative index of a bad input; the result is its global index.
pub(crate) fn parallel<T, U, F>(
    input: &[T],
    output: &mut [U],
    threads: usize,
    f: F,
) -> Result<(), PsiError>
where
    T: Sync,
    U: Send,
    F: Fn(&[T], &mut [U]) -> Result<(), usize> + Sync,
{
    parallel_above(input, output, threads, BATCH, f)
}

/// [`parallel`], single-threaded when `input` has at most `serial_up_to` items (for work whose
/// items are each expensive, such as a discrete-logarithm search).
pub(crate) fn parallel_above<T, U, F>(
    input: &[T],
    output: &mut [U],
    threads: usize,
    serial_up_to: usize,
    f: F,
) -> Result<(), PsiError>
where
    T: Sync,
    U: Send,
    F: Fn(&[T], &mut [U]) -> Result<(), usize> + Sync,
{
    let threads = threads.clamp(1, 256);
    if threads == 1 || input.len() <= serial_up_to {
        return f(input, output).map_err(|index| PsiError::InvalidPoint { index });
    }
    let chunk = input.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = input
            .chunks(chunk)
            .zip(output.chunks_mut(chunk))
            .enumerate()
            .map(|(i, (inp, out))| {
                scope.spawn(move || {
                    f(inp, out).map_err(|index| PsiError::InvalidPoint {
                        index: i.saturating_mul(chunk).saturating_add(index),
                    })
                })
            })
            .collect();
        let mut result = Ok(());
        for h in handles {
            let r = h.join().unwrap_or(Err(PsiError::Thread));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Multiplies each point by `secret` (`2 · half`) and compresses, one batch at a time.
fn blind_batch(points: &mut Vec<RistrettoPoint>, out: &mut [PointBytes]) {
    for (o, c) in out
        .iter_mut()
        .zip(RistrettoPoint::double_and_compress_batch(points.iter()))
    {
        *o = c.to_bytes();
    }
    points.clear();
}

/// `H(id)^s` compressed, for each id.
pub(crate) fn hash_and_blind<I: AsRef<[u8]> + Sync>(
    ids: &[I],
    secret: &PsiSecret,
    threads: usize,
) -> Result<Vec<PointBytes>, PsiError> {
    let mut out = vec![[0u8; POINT_LEN]; ids.len()];
    parallel(ids, &mut out, threads, |ids, out| {
        let mut buf = Vec::with_capacity(BATCH);
        for (ids, out) in ids.chunks(BATCH).zip(out.chunks_mut(BATCH)) {
            buf.extend(
                ids.iter()
                    .map(|id| secret.half * hash_to_group(id.as_ref())),
            );
            blind_batch(&mut buf, out);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Decompresses, checks and multiplies each received point by `secret`; writes the tags.
pub(crate) fn reblind_to_tags(
    points: &[PointBytes],
    secret: &PsiSecret,
    threads: usize,
) -> Result<Vec<Tag>, PsiError> {
    let mut out = vec![[0u8; TAG_LEN]; points.len()];
    parallel(points, &mut out, threads, |points, out| {
        let mut buf = Vec::with_capacity(BATCH);
        for (b, (points, out)) in points.chunks(BATCH).zip(out.chunks_mut(BATCH)).enumerate() {
            for (i, bytes) in points.iter().enumerate() {
                let p = CompressedRistretto(*bytes)
                    .decompress()
                    .filter(|p| !p.is_identity())
                    .ok_or(b.saturating_mul(BATCH).saturating_add(i))?;
                buf.push(secret.half * p);
            }
            for (o, c) in out
                .iter_mut()
                .zip(RistrettoPoint::double_and_compress_batch(buf.iter()))
            {
                *o = tag_of(&c);
            }
            buf.clear();
        }
        Ok(())
    })?;
    Ok(out)
}

/// A uniform index in `[0, bound)` (Lemire's multiply-and-reject, unbiased); 0 for bound 0.
fn uniform_below<R: CryptoRng + ?Sized>(rng: &mut R, bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let m = u128::from(rng.next_u64()) * u128::from(bound);
        // Truncation keeps the low 64 bits: the rejection test of Lemire's method.
        let low = m as u64;
        if low >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// Fisher–Yates shuffle from a cryptographic RNG.
pub(crate) fn shuffle<T, R: CryptoRng + ?Sized>(items: &mut [T], rng: &mut R) {
    for i in (1..items.len()).rev() {
        let j = uniform_below(rng, i as u64 + 1);
        // `j ≤ i < len` by construction; `usize::try_from` cannot fail for it.
        if let Ok(j) = usize::try_from(j) {
            items.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// `R → S`: the receiver's blinded set `H(x)^a`, in the receiver's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The mode the receiver runs.
    pub mode: Mode,
    /// `H(x)^a`, compressed.
    pub points: Vec<PointBytes>,
}

/// `S → R`: the receiver's points blinded again (as tags) and the sender's blinded set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The mode the sender ran.
    pub mode: Mode,
    /// `tag(H(x)^ab)`: in the request's order in linked mode, shuffled in cardinality mode.
    pub reblinded: Vec<Tag>,
    /// `H(y)^b`, compressed, shuffled.
    pub sender_points: Vec<PointBytes>,
}

const REQUEST_HEADER: usize = 2 + 1 + 4;
const RESPONSE_HEADER: usize = 2 + 1 + 4 + 4;

fn count_u32(n: usize) -> Result<u32, PsiError> {
    if n > MAX_ELEMENTS {
        return Err(PsiError::TooMany {
            count: n as u64,
            max: MAX_ELEMENTS,
        });
    }
    u32::try_from(n).map_err(|_| PsiError::TooMany {
        count: n as u64,
        max: MAX_ELEMENTS,
    })
}

fn read_count(bytes: [u8; 4]) -> Result<usize, PsiError> {
    let n = u32::from_le_bytes(bytes);
    match usize::try_from(n) {
        Ok(n) if n <= MAX_ELEMENTS => Ok(n),
        _ => Err(PsiError::TooMany {
            count: u64::from(n),
            max: MAX_ELEMENTS,
        }),
    }
}

/// Checks version and kind, returns the mode and the rest.
fn read_header(bytes: &[u8], kind: u8, header: usize) -> Result<(Mode, &[u8]), PsiError> {
    if bytes.len() < header {
        return Err(PsiError::Truncated {
            needed: header,
            got: bytes.len(),
        });
    }
    let Some(([version, got_kind, mode], rest)) = bytes.split_first_chunk::<3>() else {
        return Err(PsiError::Truncated {
            needed: header,
            got: bytes.len(),
        });
    };
    if *version != WIRE_VERSION {
        return Err(PsiError::Version(*version));
    }
    if *got_kind != kind {
        return Err(PsiError::Kind {
            expected: kind,
            got: *got_kind,
        });
    }
    Ok((Mode::from_byte(*mode)?, rest))
}

fn split_count(bytes: &[u8]) -> Result<(usize, &[u8]), PsiError> {
    let Some((count, rest)) = bytes.split_first_chunk::<4>() else {
        return Err(PsiError::Truncated {
            needed: 4,
            got: bytes.len(),
        });
    };
    Ok((read_count(*count)?, rest))
}

fn check_len(got: usize, expected: usize) -> Result<(), PsiError> {
    match got.cmp(&expected) {
        std::cmp::Ordering::Less => Err(PsiError::Truncated {
            needed: expected,
            got,
        }),
        std::cmp::Ordering::Greater => Err(PsiError::Length { expected, got }),
        std::cmp::Ordering::Equal => Ok(()),
    }
}

impl Request {
    /// `[version][kind=1][mode][count: u32 LE][count × 32-byte point]`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PsiError> {
        let count = count_u32(self.points.len())?;
        let mut out = Vec::with_capacity(REQUEST_HEADER + self.points.len() * POINT_LEN);
        out.extend_from_slice(&[WIRE_VERSION, KIND_REQUEST, self.mode.to_byte()]);
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(self.points.as_flattened());
        Ok(out)
    }

    /// Parses a request; exact length, bounded count, no trailing bytes. Points are checked
    /// when the sender decompresses them.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PsiError> {
        let (mode, rest) = read_header(bytes, KIND_REQUEST, REQUEST_HEADER)?;
        let (count, body) = split_count(rest)?;
        check_len(bytes.len(), REQUEST_HEADER + count * POINT_LEN)?;
        let (points, _) = body.as_chunks::<POINT_LEN>();
        Ok(Self {
            mode,
            points: points.to_vec(),
        })
    }
}

impl Response {
    /// `[version][kind=2][mode][n: u32 LE][m: u32 LE][n × 16-byte tag][m × 32-byte point]`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PsiError> {
        let n = count_u32(self.reblinded.len())?;
        let m = count_u32(self.sender_points.len())?;
        let mut out = Vec::with_capacity(
            RESPONSE_HEADER + self.reblinded.len() * TAG_LEN + self.sender_points.len() * POINT_LEN,
        );
        out.extend_from_slice(&[WIRE_VERSION, KIND_RESPONSE, self.mode.to_byte()]);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&m.to_le_bytes());
        out.extend_from_slice(self.reblinded.as_flattened());
        out.extend_from_slice(self.sender_points.as_flattened());
        Ok(out)
    }

    /// Parses a response; exact length, bounded counts, no trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PsiError> {
        let (mode, rest) = read_header(bytes, KIND_RESPONSE, RESPONSE_HEADER)?;
        let (n, rest) = split_count(rest)?;
        let (m, body) = split_count(rest)?;
        check_len(bytes.len(), RESPONSE_HEADER + n * TAG_LEN + m * POINT_LEN)?;
        let (tags, points) = body
            .split_at_checked(n * TAG_LEN)
            .ok_or(PsiError::Truncated {
                needed: RESPONSE_HEADER + n * TAG_LEN,
                got: bytes.len(),
            })?;
        let (tags, _) = tags.as_chunks::<TAG_LEN>();
        let (points, _) = points.as_chunks::<POINT_LEN>();
        Ok(Self {
            mode,
            reblinded: tags.to_vec(),
            sender_points: points.to_vec(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Parties
// ---------------------------------------------------------------------------------------------

fn check_size(n: usize) -> Result<(), PsiError> {
    if n > MAX_ELEMENTS {
        return Err(PsiError::TooMany {
            count: n as u64,
            max: MAX_ELEMENTS,
        });
    }
    Ok(())
}

/// The receiver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PsiOutput {
    /// The size of the intersection.
    Cardinality(usize),
    /// The indices (ascending) of the receiver's own elements in the intersection.
    Linked(Vec<usize>),
}

impl PsiOutput {
    /// The size of the intersection.
    pub fn count(&self) -> usize {
        match self {
            PsiOutput::Cardinality(n) => *n,
            PsiOutput::Linked(v) => v.len(),
        }
    }
}

/// The receiver `R`: learns the intersection (its size, or which of its elements).
pub struct Receiver {
    secret: PsiSecret,
    mode: Mode,
    count: usize,
    threads: usize,
}

impl Receiver {
    /// Blinds `ids` under a fresh secret; returns the receiver and its [`Request`]. The same
    /// request may go to several senders (each answer is finished separately).
    pub fn new<I, R>(
        rng: &mut R,
        ids: &[I],
        mode: Mode,
        threads: usize,
    ) -> Result<(Self, Request), PsiError>
    where
        I: AsRef<[u8]> + Sync,
        R: CryptoRng + ?Sized,
    {
        check_size(ids.len())?;
        let secret = PsiSecret::random(rng);
        let points = hash_and_blind(ids, &secret, threads)?;
        Ok((
            Self {
                secret,
                mode,
                count: ids.len(),
                threads,
            },
            Request { mode, points },
        ))
    }

    /// The number of own elements the request blinded.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The worker threads this receiver was created with.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Linked mode: for each common element, `(own index, sender row)` — the position of the
    /// receiver's element in its input and the position of the matching point in
    /// `sender_points` — ascending by own index (a sender point that occurs twice gives two
    /// pairs; the caller decides whether that is an error). `reblinded` answers the request in
    /// its order, as in a [`Mode::Linked`] [`Response`].
    pub(crate) fn linked_pairs(
        &self,
        reblinded: &[Tag],
        sender_points: &[PointBytes],
    ) -> Result<Vec<(usize, usize)>, PsiError> {
        if self.mode != Mode::Linked {
            return Err(PsiError::ModeMismatch {
                expected: Mode::Linked,
                got: self.mode,
            });
        }
        if reblinded.len() != self.count {
            return Err(PsiError::CountMismatch {
                expected: self.count,
                got: reblinded.len(),
            });
        }
        check_size(sender_points.len())?;
        let mut theirs: Vec<(Tag, usize)> =
            reblind_to_tags(sender_points, &self.secret, self.threads)?
                .into_iter()
                .enumerate()
                .map(|(row, tag)| (tag, row))
                .collect();
        theirs.sort_unstable();
        let mut pairs = Vec::new();
        for (own, tag) in reblinded.iter().enumerate() {
            let start = theirs.partition_point(|(t, _)| t < tag);
            let equal = theirs
                .get(start..)
                .unwrap_or_default()
                .iter()
                .take_while(|(t, _)| t == tag);
            pairs.extend(equal.map(|(_, row)| (own, *row)));
        }
        Ok(pairs)
    }

    /// The intersection from a sender's response.
    pub fn finish(&self, response: &Response) -> Result<PsiOutput, PsiError> {
        if response.mode != self.mode {
            return Err(PsiError::ModeMismatch {
                expected: self.mode,
                got: response.mode,
            });
        }
        if response.reblinded.len() != self.count {
            return Err(PsiError::CountMismatch {
                expected: self.count,
                got: response.reblinded.len(),
            });
        }
        check_size(response.sender_points.len())?;
        let mut theirs = reblind_to_tags(&response.sender_points, &self.secret, self.threads)?;
        theirs.sort_unstable();
        let hits = response
            .reblinded
            .iter()
            .enumerate()
            .filter(|(_, t)| theirs.binary_search(t).is_ok())
            .map(|(i, _)| i);
        Ok(match self.mode {
            Mode::Cardinality => PsiOutput::Cardinality(hits.count()),
            Mode::Linked => PsiOutput::Linked(hits.collect()),
        })
    }
}

/// The sender `S`: answers requests; learns only their sizes.
pub struct Sender {
    secret: PsiSecret,
    mode: Mode,
    /// `H(y)^b`, shuffled.
    points: Vec<PointBytes>,
    threads: usize,
}

impl Sender {
    /// Blinds and shuffles `ids` under a fresh secret.
    pub fn new<I, R>(rng: &mut R, ids: &[I], mode: Mode, threads: usize) -> Result<Self, PsiError>
    where
        I: AsRef<[u8]> + Sync,
        R: CryptoRng + ?Sized,
    {
        check_size(ids.len())?;
        let secret = PsiSecret::random(rng);
        let mut points = hash_and_blind(ids, &secret, threads)?;
        shuffle(&mut points, rng);
        Ok(Self {
            secret,
            mode,
            points,
            threads,
        })
    }

    /// Answers one request (the request's mode must be this sender's).
    pub fn respond<R: CryptoRng + ?Sized>(
        &self,
        request: &Request,
        rng: &mut R,
    ) -> Result<Response, PsiError> {
        if request.mode != self.mode {
            return Err(PsiError::ModeMismatch {
                expected: self.mode,
                got: request.mode,
            });
        }
        check_size(request.points.len())?;
        let mut reblinded = reblind_to_tags(&request.points, &self.secret, self.threads)?;
        if self.mode == Mode::Cardinality {
            shuffle(&mut reblinded, rng);
        }
        Ok(Response {
            mode: self.mode,
            reblinded,
            sender_points: self.points.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Dedup across sites
// ---------------------------------------------------------------------------------------------

/// What a later site drops under the dedup rule: the union of the linked intersections with
/// every EARLIER site in the job's fixed order (this site is the receiver in each, with one
/// [`Receiver`] and one [`Request`] sent to all of them). Ascending indices into its input.
pub fn dedup_drops(receiver: &Receiver, earlier: &[Response]) -> Result<Vec<usize>, PsiError> {
    if receiver.mode != Mode::Linked {
        return Err(PsiError::ModeMismatch {
            expected: Mode::Linked,
            got: receiver.mode,
        });
    }
    let mut drops = std::collections::BTreeSet::new();
    for response in earlier {
        if let PsiOutput::Linked(indices) = receiver.finish(response)? {
            drops.extend(indices);
        }
    }
    Ok(drops.into_iter().collect())
}

/// The dedup rule run in one process (for tests and benchmarks), every message through bytes:
/// site `k` keeps a patient unless a site `j < k` also has them. Returns, per site, the indices
/// it drops (site 0 drops none).
pub fn dedup_plan<I, R>(
    rng: &mut R,
    sites: &[Vec<I>],
    threads: usize,
) -> Result<Vec<Vec<usize>>, PsiError>
where
    I: AsRef<[u8]> + Sync,
    R: CryptoRng + ?Sized,
{
    // Every site but the last answers the sites after it.
    let senders = sites
        .iter()
        .take(sites.len().saturating_sub(1))
        .map(|ids| Sender::new(rng, ids, Mode::Linked, threads))
        .collect::<Result<Vec<_>, _>>()?;
    let mut plan = Vec::with_capacity(sites.len());
    for (k, ids) in sites.iter().enumerate() {
        let (receiver, request) = Receiver::new(rng, ids, Mode::Linked, threads)?;
        let request = Request::from_bytes(&request.to_bytes()?)?;
        let responses = senders
            .iter()
            .take(k)
            .map(|s| Response::from_bytes(&s.respond(&request, rng)?.to_bytes()?))
            .collect::<Result<Vec<_>, _>>()?;
        plan.push(dedup_drops(&receiver, &responses)?);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn batch_blinding_equals_plain_multiplication() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let secret = PsiSecret::random(&mut rng);
        let s = secret.half + secret.half;
        let ids: Vec<[u8; 4]> = (0u32..600).map(u32::to_le_bytes).collect();
        let blinded = hash_and_blind(&ids, &secret, 3).unwrap();
        for (id, b) in ids.iter().zip(&blinded) {
            assert_eq!(*b, (s * hash_to_group(id)).compress().to_bytes());
        }
        let tags = reblind_to_tags(&blinded, &secret, 2).unwrap();
        for (b, t) in blinded.iter().zip(&tags) {
            let p = CompressedRistretto(*b).decompress().unwrap();
            assert_eq!(*t, tag_of(&(s * p).compress()));
        }
    }

    #[test]
    fn cardinality_response_is_shuffled_linked_is_not() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let ids: Vec<[u8; 4]> = (0u32..500).map(u32::to_le_bytes).collect();
        for mode in [Mode::Cardinality, Mode::Linked] {
            let (receiver, request) = Receiver::new(&mut rng, &ids, mode, 2).unwrap();
            let sender = Sender::new(&mut rng, &ids, mode, 2).unwrap();
            let response = sender.respond(&request, &mut rng).unwrap();
            // The answers in the request's order, computed with the sender's secret.
            let in_order = reblind_to_tags(&request.points, &sender.secret, 1).unwrap();
            let mut a = response.reblinded.clone();
            let mut b = in_order.clone();
            a.sort_unstable();
            b.sort_unstable();
            assert_eq!(a, b, "the same multiset of tags");
            match mode {
                Mode::Cardinality => {
                    assert_ne!(response.reblinded, in_order, "shuffled");
                    let fixed = response
                        .reblinded
                        .iter()
                        .zip(&in_order)
                        .filter(|(x, y)| x == y)
                        .count();
                    assert!(fixed < 10, "{fixed} positions unmoved");
                    assert_eq!(
                        receiver.finish(&response).unwrap(),
                        PsiOutput::Cardinality(500)
                    );
                }
                Mode::Linked => {
                    assert_eq!(response.reblinded, in_order);
                    assert_eq!(
                        receiver.finish(&response).unwrap(),
                        PsiOutput::Linked((0..500).collect())
                    );
                }
            }
            // The sender's own points are shuffled too.
            let sender_in_order = hash_and_blind(&ids, &sender.secret, 1).unwrap();
            assert_ne!(response.sender_points, sender_in_order);
        }
    }

    #[test]
    fn uniform_below_stays_in_range() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let v = uniform_below(&mut rng, 7);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        assert_eq!(uniform_below(&mut rng, 0), 0);
        assert_eq!(uniform_below(&mut rng, 1), 0);
    }
}
