//! Secure aggregation with double masking (Bonawitz et al., "Practical Secure Aggregation for
//! Privacy-Preserving Machine Learning", CCS 2017), over integer vectors in Z/2^64.
//!
//! The sites of a job are numbered `0..n` (the contract's data holders, in ledger order). Each
//! site `u` hides its vector `x_u` as
//!
//! ```text
//! y_u = x_u + PRG(b_u) + Σ_{v ∈ U1, v ≠ u} ±PRG(s_uv)      (+ if u < v, − if u > v)
//! ```
//!
//! - `s_uv` is a pairwise seed both sites derive from their X25519 agreement keys (registered on
//!   the ledger) and the job, so the pairwise masks cancel in the sum over `U1`;
//! - `b_u` is the site's **self mask**, a fresh secret per job, so that even a site's pairwise
//!   masks, once revealed, do not expose `x_u`.
//!
//! Before masking, every site *deals*: it Shamir-shares two secrets among all `n` sites with
//! threshold `t` — its self mask `b_u` and a key `k_u` that unlocks the list of its pairwise
//! seeds (the "bundle", sent encrypted under `k_u`) — and commits to both sharing polynomials
//! (Feldman commitments in BLS12-381's G1), so that every share can be checked by whoever
//! receives it. Each share travels encrypted to its holder under a key from the pair's X25519
//! agreement (ChaCha20-Poly1305). The sites that dealt form `U1`; those whose masked vector
//! arrived form `U2 ⊆ U1`. To unmask, the holders reveal, **for the one `(U1, U2)` fixed on the
//! ledger**, shares of `b_u` for `u ∈ U2` and shares of `k_d` for `d ∈ U1 \ U2` — never both
//! for the same site. With `t` shares of each the aggregator removes the self masks of the
//! survivors and the pairwise masks of the sites that dropped after dealing.
//!
//! **What the aggregator can learn.** For any single site `u` it would need both `b_u` (only
//! revealed when `u` is a survivor) and all of `u`'s pairwise seeds with honest sites (only
//! revealed when `u` dropped). The ledger fixes one `(U1, U2)` per job, so honest holders reveal
//! only one kind per site; the aggregator, holding one share itself, would need `t − 1` more
//! from colluding sites. So the aggregator alone, or with up to `t − 2` colluding sites, learns
//! nothing about a site's vector beyond the released sum over `U2` (`|U2| ≥ t`). With the
//! default `t = ⌊n/2⌋ + 1` that is: no collusion needed to be safe for `n ≤ 3`, one colluding site
//! tolerated for `n = 4, 5`, and so on. The sum itself is public by design; each site's vector
//! is differentially private on its own, so even a small `U2` reveals only DP-protected values.
//!
//! The field arithmetic (BLS12-381 scalars, polynomials, Lagrange interpolation, G1 commitments)
//! is commonware's (`commonware-math`, `commonware-cryptography`), as is the AEAD. What is ours is
//! the protocol glue, which no library offers: pairwise and self masks over Z/2^64 and the
//! dealing, checking and reconstruction steps.
//!
//! Signed values are carried in two's complement ([`encode_i64`], [`decode_i64`]): sums wrap
//! consistently and decode correctly as long as the true total fits in an `i64`.

use bytes::Buf as _;
use commonware_codec::{Copying, Decode as _, DecodeExt, Encode, FixedSize, RangeCfg, Read as _};
use commonware_cryptography::Cipher as _;
/// An element of BLS12-381's scalar field: secrets and their shares.
pub use commonware_cryptography::bls12381::primitives::group::Scalar;
use commonware_cryptography::bls12381::primitives::group::{G1, ScalarReadCfg};
use commonware_cryptography::chacha20_poly1305::ChaCha20Poly1305;
use commonware_math::algebra::{CryptoGroup as _, Random as _};
use commonware_math::poly::{Interpolator, Poly};
use commonware_parallel::Sequential;
use commonware_utils::ordered::Map;
use hkdf::Hkdf;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, Rng, SeedableRng};
use sha2::{Digest as _, Sha256};
use std::num::NonZeroU32;
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};

/// Domain of the pairwise seed derivation.
pub const PAIR_INFO: &[u8] = b"medspace/secagg/pair/v2";
/// Domain of the key that encrypts a share for its holder.
pub const SHARE_INFO: &[u8] = b"medspace/secagg/share/v2";
/// Domain of the pairwise seeds of one step of a multi-step job ([`mask_step`]).
pub const STEP_INFO: &[u8] = b"medspace/secagg/step/v1";
/// Domain of the self-mask expansion.
pub const SELF_DOMAIN: &[u8] = b"medspace/secagg/self/v2";
/// Domain of the key that encrypts a site's bundle of pairwise seeds.
pub const BUNDLE_DOMAIN: &[u8] = b"medspace/secagg/bundle/v2";

/// Most sites in one aggregation (bounds every decoder).
pub const MAX_SITES: usize = 64;
/// Bytes of one encoded scalar.
const SCALAR: usize = Scalar::SIZE;
/// Bytes of one sealed share: two scalars and the AEAD tag.
pub const SEALED_SHARE_BYTES: usize = 2 * SCALAR + 16;

/// Errors of masking, dealing, checking and unmasking.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecAggError {
    /// A site index is not below the number of sites.
    #[error("site index out of range: index={index} sites={sites}")]
    SiteOutOfRange {
        /// The index.
        index: usize,
        /// How many sites there are.
        sites: usize,
    },
    /// Too many or too few sites, or a threshold that cannot work.
    #[error("bad round shape: sites={sites} threshold={threshold}")]
    BadShape {
        /// Sites.
        sites: usize,
        /// Threshold.
        threshold: usize,
    },
    /// The public key at our own position is not the one derived from our secret.
    #[error("own public key does not match the site list: site={site}")]
    KeyMismatch {
        /// Our index.
        site: usize,
    },
    /// A peer's public key gives an all-zero (non-contributory) shared secret.
    #[error("peer public key is a low-order point: site={site}")]
    WeakPeerKey {
        /// The peer.
        site: usize,
    },
    /// Key derivation refused the output length (cannot happen for 32 bytes).
    #[error("key derivation failed")]
    Kdf,
    /// A sealed share, bundle or commitment does not decode or authenticate.
    #[error("malformed {what} from site={site}")]
    Malformed {
        /// What.
        what: &'static str,
        /// Who sent or dealt it.
        site: usize,
    },
    /// A share does not lie on the dealer's committed polynomial.
    #[error("share of site={dealer} held by site={holder} does not match the dealer's commitment")]
    BadShare {
        /// The dealer.
        dealer: usize,
        /// The holder that sent it.
        holder: usize,
    },
    /// Fewer valid shares than the threshold.
    #[error("not enough shares to reconstruct site={dealer}: have={have} need={need}")]
    NotEnoughShares {
        /// The dealer.
        dealer: usize,
        /// Valid shares.
        have: usize,
        /// Threshold.
        need: usize,
    },
    /// Vectors of different lengths.
    #[error("vector length mismatch: site={site} expected={expected} got={got}")]
    LengthMismatch {
        /// The site.
        site: usize,
        /// The agreed length.
        expected: usize,
        /// What it sent.
        got: usize,
    },
    /// The survivor sets are inconsistent (a survivor that did not deal, a site listed twice).
    #[error("inconsistent sets: {0}")]
    Sets(&'static str),
}

/// Two's complement encoding of a signed value into Z/2^64.
pub fn encode_i64(value: i64) -> u64 {
    value as u64
}

/// Inverse of [`encode_i64`]: the signed value of a (summed) element of Z/2^64.
pub fn decode_i64(value: u64) -> i64 {
    value as i64
}

/// The default threshold for `n` sites: a strict majority, `⌊n/2⌋ + 1`.
pub fn threshold(n: usize) -> usize {
    n / 2 + 1
}

/// The shape of one aggregation: the job it is bound to, how many sites, the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Round {
    /// 32 bytes binding every key, mask and share to one job.
    pub job: [u8; 32],
    /// Number of sites `n` (dealers and holders).
    pub sites: usize,
    /// Shares needed to reconstruct a secret, and the fewest survivors allowed.
    pub threshold: usize,
}

impl Round {
    /// A round of `sites` sites with the default [`threshold`].
    pub fn new(job: [u8; 32], sites: usize) -> Result<Self, SecAggError> {
        Self::with_threshold(job, sites, threshold(sites))
    }

    /// A round with an explicit threshold (`1 ≤ t ≤ n ≤ MAX_SITES`).
    pub fn with_threshold(
        job: [u8; 32],
        sites: usize,
        threshold: usize,
    ) -> Result<Self, SecAggError> {
        if sites == 0 || sites > MAX_SITES || threshold == 0 || threshold > sites {
            return Err(SecAggError::BadShape { sites, threshold });
        }
        Ok(Self {
            job,
            sites,
            threshold,
        })
    }

    fn check(&self, index: usize) -> Result<(), SecAggError> {
        if index >= self.sites {
            return Err(SecAggError::SiteOutOfRange {
                index,
                sites: self.sites,
            });
        }
        Ok(())
    }

    /// The evaluation point of site `index` (never zero, which is the secret's).
    fn point(index: usize) -> Scalar {
        Scalar::from(index as u64 + 1)
    }

    fn degree(&self) -> u32 {
        // INVARIANT: 1 ≤ threshold ≤ MAX_SITES, checked at construction.
        (self.threshold - 1) as u32
    }
}

/// A site's X25519 keys for a round: its own secret and every site's public key, in site order.
pub struct Keys<'a> {
    /// Our position.
    pub me: usize,
    /// Our X25519 secret.
    pub secret: &'a StaticSecret,
    /// Every site's public key (ours included), in site order.
    pub peers: &'a [PublicKey],
}

impl Keys<'_> {
    fn check(&self, round: &Round) -> Result<(), SecAggError> {
        round.check(self.me)?;
        if self.peers.len() != round.sites {
            return Err(SecAggError::BadShape {
                sites: self.peers.len(),
                threshold: round.threshold,
            });
        }
        let mine = self.peer(self.me)?;
        if PublicKey::from(self.secret).as_bytes() != mine.as_bytes() {
            return Err(SecAggError::KeyMismatch { site: self.me });
        }
        Ok(())
    }

    fn peer(&self, index: usize) -> Result<&PublicKey, SecAggError> {
        self.peers.get(index).ok_or(SecAggError::SiteOutOfRange {
            index,
            sites: self.peers.len(),
        })
    }

    /// 32 bytes from the X25519 agreement with `other`, expanded with HKDF for `info`.
    fn agree(&self, other: usize, info: &[&[u8]]) -> Result<[u8; 32], SecAggError> {
        let shared = self.secret.diffie_hellman(self.peer(other)?);
        if !shared.was_contributory() {
            return Err(SecAggError::WeakPeerKey { site: other });
        }
        let info: Vec<u8> = info.concat();
        let mut out = [0u8; 32];
        Hkdf::<Sha256>::new(None, shared.as_bytes())
            .expand(&info, &mut out)
            .map_err(|_| SecAggError::Kdf)?;
        Ok(out)
    }

    /// The pairwise seed of sites `me` and `other` for the round's job (the same on both sides).
    pub fn pair_seed(&self, round: &Round, other: usize) -> Result<[u8; 32], SecAggError> {
        let (lo, hi) = (self.me.min(other) as u64, self.me.max(other) as u64);
        self.agree(
            other,
            &[PAIR_INFO, &round.job, &lo.to_be_bytes(), &hi.to_be_bytes()],
        )
    }

    /// The key sealing the share `dealer` deals to `holder` (one of them is us).
    fn share_key(
        &self,
        round: &Round,
        dealer: usize,
        holder: usize,
    ) -> Result<[u8; 32], SecAggError> {
        let other = if dealer == self.me { holder } else { dealer };
        self.agree(
            other,
            &[
                SHARE_INFO,
                &round.job,
                &(dealer as u64).to_be_bytes(),
                &(holder as u64).to_be_bytes(),
            ],
        )
    }
}

/// A pseudo-random vector of `len` words from a 32-byte seed (ChaCha20).
fn expand(seed: [u8; 32], len: usize) -> Vec<u64> {
    let mut rng = ChaCha20Rng::from_seed(seed);
    (0..len).map(|_| rng.next_u64()).collect()
}

fn add_into(acc: &mut [u64], v: &[u64], add: bool) {
    for (a, m) in acc.iter_mut().zip(v) {
        *a = if add {
            a.wrapping_add(*m)
        } else {
            a.wrapping_sub(*m)
        };
    }
}

fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// A one-message cipher keyed by 32 secret bytes (commonware's ChaCha20-Poly1305 takes its key
/// from a random source; a ChaCha20 stream seeded with the key is that source).
fn cipher(key: [u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::random(ChaCha20Rng::from_seed(key))
}

fn seal(key: [u8; 32], aad: &[u8], mut data: Vec<u8>) -> Option<Vec<u8>> {
    let (_, tag) = cipher(key).seal(aad, &mut data)?;
    data.extend_from_slice(tag.as_ref());
    Some(data)
}

fn open(key: [u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let cut = sealed.len().checked_sub(16)?;
    let (body, tag) = sealed.split_at(cut);
    let tag = commonware_utils::sequence::FixedBytes::<16>::decode(Copying(tag)).ok()?;
    let mut data = body.to_vec();
    cipher(key).open(aad, &mut data, &tag)?;
    Some(data)
}

fn scalar_bytes(s: &Scalar) -> [u8; SCALAR] {
    let mut out = [0u8; SCALAR];
    out.copy_from_slice(&s.encode());
    out
}

fn scalar_from(bytes: &[u8]) -> Option<Scalar> {
    Scalar::decode_cfg(Copying(bytes), &ScalarReadCfg::AllowZero).ok()
}

/// The two secrets a site draws for one job. Kept by the site until the round ends (a restart
/// must deal and mask with the same secrets, never fresh ones).
#[derive(Clone, PartialEq, Eq)]
pub struct SiteSecrets {
    /// The self mask's secret `b_u`.
    self_mask: Scalar,
    /// The key `k_u` of the site's bundle of pairwise seeds.
    bundle_key: Scalar,
    /// Seed of the sharing polynomials (so a dealing is reproducible from what is kept).
    poly_seed: [u8; 32],
}

impl std::fmt::Debug for SiteSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteSecrets(..)")
    }
}

impl SiteSecrets {
    /// Fresh secrets from a cryptographically secure source.
    pub fn random(mut rng: impl CryptoRng) -> Self {
        let mut poly_seed = [0u8; 32];
        rng.fill_bytes(&mut poly_seed);
        Self {
            self_mask: Scalar::random(&mut rng),
            bundle_key: Scalar::random(&mut rng),
            poly_seed,
        }
    }

    /// The 96 bytes to keep on disk.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 * SCALAR + 32);
        out.extend_from_slice(&scalar_bytes(&self.self_mask));
        out.extend_from_slice(&scalar_bytes(&self.bundle_key));
        out.extend_from_slice(&self.poly_seed);
        out
    }

    /// Reads what [`SiteSecrets::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 2 * SCALAR + 32 {
            return None;
        }
        let (b, rest) = bytes.split_at(SCALAR);
        let (k, seed) = rest.split_at(SCALAR);
        Some(Self {
            self_mask: scalar_from(b)?,
            bundle_key: scalar_from(k)?,
            poly_seed: seed.try_into().ok()?,
        })
    }

    fn polys(&self, round: &Round) -> (Poly<Scalar>, Poly<Scalar>) {
        let mut rng = ChaCha20Rng::from_seed(hash(&[b"medspace/secagg/poly/v2", &self.poly_seed]));
        let b = Poly::new_with_constant(&mut rng, round.degree(), self.self_mask.clone());
        let k = Poly::new_with_constant(&mut rng, round.degree(), self.bundle_key.clone());
        (b, k)
    }
}

/// The self-mask vector of a secret `b` for the round.
fn self_mask(round: &Round, b: &Scalar, len: usize) -> Vec<u64> {
    expand(hash(&[SELF_DOMAIN, &round.job, &scalar_bytes(b)]), len)
}

fn bundle_cipher_key(round: &Round, k: &Scalar) -> [u8; 32] {
    hash(&[BUNDLE_DOMAIN, &round.job, &scalar_bytes(k)])
}

fn encode_commitment(p: &Poly<G1>) -> Vec<u8> {
    p.encode().to_vec()
}

fn decode_commitment(round: &Round, bytes: &[u8], site: usize) -> Result<Poly<G1>, SecAggError> {
    let coefficients = NonZeroU32::new(round.threshold as u32).ok_or(SecAggError::BadShape {
        sites: round.sites,
        threshold: round.threshold,
    })?;
    let cfg = (RangeCfg::exact(coefficients), ());
    let mut buf = Copying(bytes);
    let p = Poly::<G1>::read_cfg(&mut buf, &cfg).map_err(|_| SecAggError::Malformed {
        what: "commitment",
        site,
    })?;
    if buf.has_remaining() {
        return Err(SecAggError::Malformed {
            what: "commitment",
            site,
        });
    }
    Ok(p)
}

/// What a site deals to the round: public commitments to its two sharing polynomials, its
/// bundle of pairwise seeds sealed under `k_u`, and one sealed share pair per site (its own
/// included), in site order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dealing {
    /// Feldman commitment to the self-mask polynomial (encoded `Poly<G1>`).
    pub self_commitment: Vec<u8>,
    /// Feldman commitment to the bundle-key polynomial.
    pub bundle_commitment: Vec<u8>,
    /// The pairwise seeds with every other site, in site order, sealed under `k_u`.
    pub bundle: Vec<u8>,
    /// Sealed `(b share, k share)` for each site, in site order.
    pub shares: Vec<Vec<u8>>,
}

/// Deals `secrets` for the round: see [`Dealing`]. Deterministic for the same secrets.
pub fn deal(round: &Round, keys: &Keys<'_>, secrets: &SiteSecrets) -> Result<Dealing, SecAggError> {
    keys.check(round)?;
    let (b_poly, k_poly) = secrets.polys(round);
    let mut shares = Vec::with_capacity(round.sites);
    for holder in 0..round.sites {
        let point = Round::point(holder);
        let mut plain = Vec::with_capacity(2 * SCALAR);
        plain.extend_from_slice(&scalar_bytes(&b_poly.eval(&point)));
        plain.extend_from_slice(&scalar_bytes(&k_poly.eval(&point)));
        let key = keys.share_key(round, keys.me, holder)?;
        let aad = share_aad(round, keys.me, holder);
        shares.push(seal(key, &aad, plain).ok_or(SecAggError::Malformed {
            what: "share",
            site: keys.me,
        })?);
    }
    let mut seeds = Vec::with_capacity(32 * round.sites);
    for other in (0..round.sites).filter(|o| *o != keys.me) {
        seeds.extend_from_slice(&keys.pair_seed(round, other)?);
    }
    let bundle = seal(
        bundle_cipher_key(round, &secrets.bundle_key),
        &share_aad(round, keys.me, keys.me),
        seeds,
    )
    .ok_or(SecAggError::Malformed {
        what: "bundle",
        site: keys.me,
    })?;
    Ok(Dealing {
        self_commitment: encode_commitment(&Poly::<G1>::commit(b_poly)),
        bundle_commitment: encode_commitment(&Poly::<G1>::commit(k_poly)),
        bundle,
        shares,
    })
}

fn share_aad(round: &Round, dealer: usize, holder: usize) -> Vec<u8> {
    [
        &round.job[..],
        &(dealer as u64).to_be_bytes(),
        &(holder as u64).to_be_bytes(),
    ]
    .concat()
}

/// The shares a holder keeps of one dealer's two secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct HeldShare {
    /// Share of the dealer's self mask.
    pub self_share: Scalar,
    /// Share of the dealer's bundle key.
    pub bundle_share: Scalar,
}

impl std::fmt::Debug for HeldShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldShare(..)")
    }
}

impl HeldShare {
    /// 64 bytes to keep on disk.
    pub fn to_bytes(&self) -> Vec<u8> {
        [
            scalar_bytes(&self.self_share),
            scalar_bytes(&self.bundle_share),
        ]
        .concat()
    }

    /// Reads what [`HeldShare::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 2 * SCALAR {
            return None;
        }
        let (b, k) = bytes.split_at(SCALAR);
        Some(Self {
            self_share: scalar_from(b)?,
            bundle_share: scalar_from(k)?,
        })
    }
}

fn check_share(
    commitment: &Poly<G1>,
    holder: usize,
    share: &Scalar,
    dealer: usize,
) -> Result<(), SecAggError> {
    if G1::generator() * share != commitment.eval(&Round::point(holder)) {
        return Err(SecAggError::BadShare { dealer, holder });
    }
    Ok(())
}

/// Opens the share `dealer` sealed for us (`keys.me`) and checks it against the dealer's
/// commitments: a share that does not authenticate or does not lie on the committed polynomial
/// is refused.
pub fn open_share(
    round: &Round,
    keys: &Keys<'_>,
    dealer: usize,
    dealing: &Dealing,
) -> Result<HeldShare, SecAggError> {
    keys.check(round)?;
    round.check(dealer)?;
    let malformed = |what| SecAggError::Malformed { what, site: dealer };
    let sealed = dealing.shares.get(keys.me).ok_or(malformed("share"))?;
    if dealing.shares.len() != round.sites || sealed.len() != SEALED_SHARE_BYTES {
        return Err(malformed("share"));
    }
    let key = keys.share_key(round, dealer, keys.me)?;
    let plain = open(key, &share_aad(round, dealer, keys.me), sealed).ok_or(malformed("share"))?;
    let held = HeldShare::from_bytes(&plain).ok_or(malformed("share"))?;
    let b = decode_commitment(round, &dealing.self_commitment, dealer)?;
    let k = decode_commitment(round, &dealing.bundle_commitment, dealer)?;
    check_share(&b, keys.me, &held.self_share, dealer)?;
    check_share(&k, keys.me, &held.bundle_share, dealer)?;
    Ok(held)
}

/// Masks site `keys.me`'s `values`: its self mask plus the pairwise masks with every other
/// site in `u1` (the sites that dealt). `u1` must contain `keys.me`.
pub fn mask(
    round: &Round,
    keys: &Keys<'_>,
    u1: &[usize],
    secrets: &SiteSecrets,
    values: &[u64],
) -> Result<Vec<u64>, SecAggError> {
    keys.check(round)?;
    check_set(round, u1)?;
    if !u1.contains(&keys.me) {
        return Err(SecAggError::Sets(
            "a site masks only within a set it belongs to",
        ));
    }
    let mut out = values.to_vec();
    add_into(
        &mut out,
        &self_mask(round, &secrets.self_mask, values.len()),
        true,
    );
    for &other in u1.iter().filter(|o| **o != keys.me) {
        let m = expand(keys.pair_seed(round, other)?, values.len());
        add_into(&mut out, &m, keys.me < other);
    }
    Ok(out)
}

/// Masks site `keys.me`'s `values` for one step of a multi-step job (an iteration of a model
/// fit) over a `set` of sites fixed for the whole job: the pairwise masks with every other site
/// of `set`, each seeded from the X25519 agreement, the job and `step` (which binds the
/// iteration and the parameters it was computed at), so the masks of all sites of `set` cancel
/// in the sum of their answers for the same step, and only there.
///
/// There is no self mask and no dropout recovery: nothing is ever revealed. A site that does not
/// answer ends the job, so the aggregator never learns one site's values, and a set fixed on the
/// ledger before the first step stops it from differencing the sums of two sets.
pub fn mask_step(
    round: &Round,
    keys: &Keys<'_>,
    set: &[usize],
    step: &[u8],
    values: &[u64],
) -> Result<Vec<u64>, SecAggError> {
    keys.check(round)?;
    check_set(round, set)?;
    if !set.contains(&keys.me) {
        return Err(SecAggError::Sets(
            "a site masks only within a set it belongs to",
        ));
    }
    let mut out = values.to_vec();
    for &other in set.iter().filter(|o| **o != keys.me) {
        let (lo, hi) = (keys.me.min(other) as u64, keys.me.max(other) as u64);
        let seed = keys.agree(
            other,
            &[
                STEP_INFO,
                &round.job,
                &lo.to_be_bytes(),
                &hi.to_be_bytes(),
                step,
            ],
        )?;
        add_into(&mut out, &expand(seed, values.len()), keys.me < other);
    }
    Ok(out)
}

/// Checks that `set` is strictly increasing and within the round.
fn check_set(round: &Round, set: &[usize]) -> Result<(), SecAggError> {
    for pair in set.windows(2) {
        if let [a, b] = pair
            && a >= b
        {
            return Err(SecAggError::Sets("sets must be strictly increasing"));
        }
    }
    if let Some(last) = set.last() {
        round.check(*last)?;
    }
    Ok(())
}

/// What one holder reveals for the unmasking, as the ledger's `(U1, U2)` allow: its share of
/// each survivor's self mask and of each dropped dealer's bundle key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revealed {
    /// The holder.
    pub holder: usize,
    /// `(survivor, share of its self mask)` for every survivor in `U2`.
    pub self_shares: Vec<(usize, Scalar)>,
    /// `(dropped dealer, share of its bundle key)` for every site in `U1 \ U2`.
    pub bundle_shares: Vec<(usize, Scalar)>,
}

/// The reveal of a holder from the shares it kept (`held[d]`: its shares of dealer `d`, for
/// every `d ∈ U1`), for the ledger's `u1` and `u2`. Refuses unless `u2 ⊆ u1`, `|u2| ≥ t` and
/// the holder kept a share of every dealer of `u1`.
pub fn reveal(
    round: &Round,
    holder: usize,
    u1: &[usize],
    u2: &[usize],
    held: &[(usize, HeldShare)],
) -> Result<Revealed, SecAggError> {
    check_sets(round, u1, u2)?;
    let find = |d: usize| -> Result<&HeldShare, SecAggError> {
        held.iter()
            .find(|(dealer, _)| *dealer == d)
            .map(|(_, s)| s)
            .ok_or(SecAggError::NotEnoughShares {
                dealer: d,
                have: 0,
                need: 1,
            })
    };
    let mut out = Revealed {
        holder,
        self_shares: Vec::new(),
        bundle_shares: Vec::new(),
    };
    for &d in u1 {
        let share = find(d)?;
        if u2.contains(&d) {
            out.self_shares.push((d, share.self_share.clone()));
        } else {
            out.bundle_shares.push((d, share.bundle_share.clone()));
        }
    }
    Ok(out)
}

fn check_sets(round: &Round, u1: &[usize], u2: &[usize]) -> Result<(), SecAggError> {
    check_set(round, u1)?;
    check_set(round, u2)?;
    if !u2.iter().all(|s| u1.contains(s)) {
        return Err(SecAggError::Sets("every survivor must have dealt"));
    }
    if u2.len() < round.threshold {
        return Err(SecAggError::Sets("fewer survivors than the threshold"));
    }
    Ok(())
}

/// A secret reconstructed from `t` shares that each matched the dealer's commitment; shares that
/// do not match are skipped (and reported), so one cheating holder cannot corrupt the sum.
fn reconstruct(
    round: &Round,
    dealer: usize,
    commitment: &Poly<G1>,
    shares: &[(usize, &Scalar)],
    cheaters: &mut Vec<usize>,
) -> Result<Scalar, SecAggError> {
    let mut good: Vec<(usize, Scalar)> = Vec::new();
    for (holder, share) in shares {
        if good.len() == round.threshold {
            break;
        }
        match check_share(commitment, *holder, share, dealer) {
            Ok(()) => good.push((*holder, (*share).clone())),
            Err(_) => {
                if !cheaters.contains(holder) {
                    cheaters.push(*holder);
                }
            }
        }
    }
    if good.len() < round.threshold {
        return Err(SecAggError::NotEnoughShares {
            dealer,
            have: good.len(),
            need: round.threshold,
        });
    }
    let interpolator = Interpolator::new(good.iter().map(|(h, _)| (*h, Round::point(*h))));
    let evals = Map::from_iter_dedup(good);
    interpolator
        .interpolate(&evals, &Sequential)
        .ok_or(SecAggError::NotEnoughShares {
            dealer,
            have: 0,
            need: round.threshold,
        })
}

/// The aggregator's unmasking: from the survivors' masked vectors, every dealer's dealing and
/// the holders' reveals, the sum of the survivors' values. Returns the sum and the holders
/// whose reveals did not match a commitment (their shares were not used).
pub fn unmask(
    round: &Round,
    u1: &[usize],
    u2: &[usize],
    dealings: &[(usize, Dealing)],
    masked: &[(usize, Vec<u64>)],
    reveals: &[Revealed],
) -> Result<(Vec<u64>, Vec<usize>), SecAggError> {
    check_sets(round, u1, u2)?;
    let dealing = |d: usize| -> Result<&Dealing, SecAggError> {
        dealings
            .iter()
            .find(|(x, _)| *x == d)
            .map(|(_, dl)| dl)
            .ok_or(SecAggError::Sets("a dealer of U1 without its dealing"))
    };
    let len = masked.first().map(|(_, v)| v.len()).unwrap_or(0);
    let mut sum = vec![0u64; len];
    for &u in u2 {
        let (_, y) = masked
            .iter()
            .find(|(s, _)| *s == u)
            .ok_or(SecAggError::Sets("a survivor without its masked vector"))?;
        if y.len() != len {
            return Err(SecAggError::LengthMismatch {
                site: u,
                expected: len,
                got: y.len(),
            });
        }
        add_into(&mut sum, y, true);
    }
    let mut cheaters = Vec::new();
    // Remove each survivor's self mask.
    for &u in u2 {
        let commitment = decode_commitment(round, &dealing(u)?.self_commitment, u)?;
        let shares: Vec<(usize, &Scalar)> = reveals
            .iter()
            .filter_map(|r| {
                r.self_shares
                    .iter()
                    .find(|(d, _)| *d == u)
                    .map(|(_, s)| (r.holder, s))
            })
            .collect();
        let b = reconstruct(round, u, &commitment, &shares, &mut cheaters)?;
        add_into(&mut sum, &self_mask(round, &b, len), false);
    }
    // Remove the survivors' pairwise masks with each site that dealt but did not survive.
    for &d in u1.iter().filter(|d| !u2.contains(d)) {
        let dl = dealing(d)?;
        let commitment = decode_commitment(round, &dl.bundle_commitment, d)?;
        let shares: Vec<(usize, &Scalar)> = reveals
            .iter()
            .filter_map(|r| {
                r.bundle_shares
                    .iter()
                    .find(|(x, _)| *x == d)
                    .map(|(_, s)| (r.holder, s))
            })
            .collect();
        let k = reconstruct(round, d, &commitment, &shares, &mut cheaters)?;
        let seeds = open(
            bundle_cipher_key(round, &k),
            &share_aad(round, d, d),
            &dl.bundle,
        )
        .ok_or(SecAggError::Malformed {
            what: "bundle",
            site: d,
        })?;
        if seeds.len() != 32 * (round.sites - 1) {
            return Err(SecAggError::Malformed {
                what: "bundle",
                site: d,
            });
        }
        for &v in u2 {
            // The bundle lists d's seeds with every other site in order, skipping d itself.
            let slot = if v < d { v } else { v - 1 };
            let seed: [u8; 32] = seeds
                .get(slot * 32..slot * 32 + 32)
                .and_then(|s| s.try_into().ok())
                .ok_or(SecAggError::Malformed {
                    what: "bundle",
                    site: d,
                })?;
            // y_v carried +PRG(s_vd) if v < d, −PRG(s_vd) otherwise: take it back out.
            add_into(&mut sum, &expand(seed, len), v > d);
        }
    }
    Ok((sum, cheaters))
}

impl Revealed {
    /// The shares as bytes, for the wire: `(site, 32-byte scalar)` lists.
    pub fn encode_shares(list: &[(usize, Scalar)]) -> Vec<(usize, Vec<u8>)> {
        list.iter()
            .map(|(s, x)| (*s, scalar_bytes(x).to_vec()))
            .collect()
    }

    /// Reads a list written by [`Revealed::encode_shares`]; `None` if a scalar is malformed.
    pub fn decode_shares(list: &[(usize, Vec<u8>)]) -> Option<Vec<(usize, Scalar)>> {
        list.iter()
            .map(|(s, b)| scalar_from(b).map(|x| (*s, x)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(n: usize, seed: u64) -> (Vec<StaticSecret>, Vec<PublicKey>) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
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

    fn plain_sum(vals: &[&Vec<u64>]) -> Vec<u64> {
        let mut s = vec![0u64; vals[0].len()];
        for v in vals {
            add_into(&mut s, v, true);
        }
        s
    }

    #[test]
    fn step_masks_cancel_only_within_the_same_step_and_set() {
        let round = Round::new([9u8; 32], 3).unwrap();
        let (x, pubs) = sites(3, 41);
        let vals = values(3, 5);
        let set = [0usize, 1, 2];
        let masked = |step: &[&[u8]]| -> Vec<Vec<u64>> {
            (0..3)
                .map(|i| {
                    mask_step(&round, &self_keys(&x, &pubs, i), &set, step[i], &vals[i]).unwrap()
                })
                .collect()
        };
        let same = masked(&[b"t1", b"t1", b"t1"]);
        assert_ne!(same[0], vals[0], "a masked vector hides the site's values");
        let refs: Vec<&Vec<u64>> = same.iter().collect();
        let want: Vec<&Vec<u64>> = vals.iter().collect();
        assert_eq!(plain_sum(&refs), plain_sum(&want));
        // A site asked for another step (other parameters) does not cancel.
        let mixed = masked(&[b"t1", b"t2", b"t1"]);
        let refs: Vec<&Vec<u64>> = mixed.iter().collect();
        assert_ne!(plain_sum(&refs), plain_sum(&want));
        // A site outside the set, or a set without it, is refused.
        assert!(mask_step(&round, &self_keys(&x, &pubs, 2), &[0, 1], b"t1", &vals[2]).is_err());
        assert!(mask_step(&round, &self_keys(&x, &pubs, 0), &[1, 0], b"t1", &vals[0]).is_err());
    }

    struct Sim {
        round: Round,
        x: Vec<StaticSecret>,
        pubs: Vec<PublicKey>,
        secrets: Vec<SiteSecrets>,
        dealings: Vec<Dealing>,
    }

    impl Sim {
        fn new(n: usize, seed: u64) -> Self {
            let round = Round::new([7u8; 32], n).unwrap();
            let (x, pubs) = sites(n, seed);
            let mut rng = ChaCha20Rng::seed_from_u64(seed + 1);
            let secrets: Vec<SiteSecrets> = (0..n).map(|_| SiteSecrets::random(&mut rng)).collect();
            let dealings = (0..n)
                .map(|i| deal(&round, &self_keys(&x, &pubs, i), &secrets[i]).unwrap())
                .collect();
            Self {
                round,
                x,
                pubs,
                secrets,
                dealings,
            }
        }

        fn keys(&self, i: usize) -> Keys<'_> {
            self_keys(&self.x, &self.pubs, i)
        }

        /// Runs a round where `u1` dealt and `u2` sent masked vectors; every site in `answer`
        /// reveals. Returns the unmasked sum.
        fn run(
            &self,
            vals: &[Vec<u64>],
            u1: &[usize],
            u2: &[usize],
            answer: &[usize],
        ) -> Result<(Vec<u64>, Vec<usize>), SecAggError> {
            let masked: Vec<(usize, Vec<u64>)> = u2
                .iter()
                .map(|&u| {
                    (
                        u,
                        mask(&self.round, &self.keys(u), u1, &self.secrets[u], &vals[u]).unwrap(),
                    )
                })
                .collect();
            let reveals: Vec<Revealed> = answer
                .iter()
                .map(|&h| {
                    let held: Vec<(usize, HeldShare)> = u1
                        .iter()
                        .map(|&d| {
                            (
                                d,
                                open_share(&self.round, &self.keys(h), d, &self.dealings[d])
                                    .unwrap(),
                            )
                        })
                        .collect();
                    reveal(&self.round, h, u1, u2, &held).unwrap()
                })
                .collect();
            let dealings: Vec<(usize, Dealing)> =
                u1.iter().map(|&d| (d, self.dealings[d].clone())).collect();
            unmask(&self.round, u1, u2, &dealings, &masked, &reveals)
        }
    }

    fn self_keys<'a>(x: &'a [StaticSecret], pubs: &'a [PublicKey], i: usize) -> Keys<'a> {
        Keys {
            me: i,
            secret: &x[i],
            peers: pubs,
        }
    }

    #[test]
    fn every_site_present_gives_the_exact_sum() {
        for n in [1, 2, 3, 5] {
            let sim = Sim::new(n, n as u64);
            let vals = values(n, 9);
            let all: Vec<usize> = (0..n).collect();
            let (sum, cheaters) = sim.run(&vals, &all, &all, &all).unwrap();
            assert_eq!(sum, plain_sum(&vals.iter().collect::<Vec<_>>()), "n={n}");
            assert!(cheaters.is_empty());
        }
    }

    #[test]
    fn a_masked_vector_hides_the_values() {
        let sim = Sim::new(3, 1);
        let vals = values(3, 4);
        let y = mask(
            &sim.round,
            &sim.keys(0),
            &[0, 1, 2],
            &sim.secrets[0],
            &vals[0],
        )
        .unwrap();
        assert_ne!(y, vals[0]);
        // Even with every pairwise mask removed, the self mask remains.
        let mut peeled = y.clone();
        for other in [1, 2] {
            let m = expand(sim.keys(0).pair_seed(&sim.round, other).unwrap(), 4);
            add_into(&mut peeled, &m, false);
        }
        assert_ne!(peeled, vals[0]);
    }

    #[test]
    fn sites_dropping_before_dealing_or_before_masking_are_recovered() {
        let n = 5;
        let sim = Sim::new(n, 9);
        let vals = values(n, 6);
        // Site 4 never dealt; site 2 dealt but its masked vector never arrived.
        let u1 = [0, 1, 2, 3];
        let u2 = [0, 1, 3];
        let (sum, _) = sim.run(&vals, &u1, &u2, &[0, 1, 3]).unwrap();
        assert_eq!(sum, plain_sum(&[&vals[0], &vals[1], &vals[3]]));
        // Only t = 3 of the survivors need to answer the reveal.
        let (again, _) = sim.run(&vals, &u1, &u2, &[0, 3, 1]).unwrap();
        assert_eq!(again, sum);
    }

    #[test]
    fn too_few_reveals_or_survivors_are_refused() {
        let sim = Sim::new(5, 2);
        let vals = values(5, 3);
        let all: Vec<usize> = (0..5).collect();
        assert!(matches!(
            sim.run(&vals, &all, &all, &[0, 1]),
            Err(SecAggError::NotEnoughShares { need: 3, .. })
        ));
        let held: Vec<(usize, HeldShare)> = all
            .iter()
            .map(|&d| {
                (
                    d,
                    open_share(&sim.round, &sim.keys(0), d, &sim.dealings[d]).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            reveal(&sim.round, 0, &all, &[0, 1], &held),
            Err(SecAggError::Sets("fewer survivors than the threshold"))
        );
        assert!(reveal(&sim.round, 0, &[0, 1, 2], &[0, 1, 3], &held).is_err());
    }

    #[test]
    fn a_tampered_share_is_refused_by_its_holder() {
        let sim = Sim::new(3, 3);
        let mut dealing = sim.dealings[1].clone();
        dealing.shares[2][0] ^= 1;
        assert_eq!(
            open_share(&sim.round, &sim.keys(2), 1, &dealing),
            Err(SecAggError::Malformed {
                what: "share",
                site: 1
            })
        );
        // A share sealed correctly but off the committed polynomial is caught by the commitment.
        let mut other = sim.dealings[1].clone();
        other.self_commitment = sim.dealings[0].self_commitment.clone();
        assert!(matches!(
            open_share(&sim.round, &sim.keys(2), 1, &other),
            Err(SecAggError::BadShare {
                dealer: 1,
                holder: 2
            })
        ));
        // Nobody else can open a share sealed for site 2.
        let mut swapped = sim.dealings[1].clone();
        swapped.shares.swap(0, 2);
        assert!(open_share(&sim.round, &sim.keys(0), 1, &swapped).is_err());
    }

    #[test]
    fn a_holder_revealing_a_wrong_share_is_named_and_skipped() {
        let n = 5;
        let sim = Sim::new(n, 4);
        let vals = values(n, 5);
        let all: Vec<usize> = (0..n).collect();
        let masked: Vec<(usize, Vec<u64>)> = all
            .iter()
            .map(|&u| {
                (
                    u,
                    mask(&sim.round, &sim.keys(u), &all, &sim.secrets[u], &vals[u]).unwrap(),
                )
            })
            .collect();
        let mut reveals: Vec<Revealed> = all
            .iter()
            .map(|&h| {
                let held: Vec<(usize, HeldShare)> = all
                    .iter()
                    .map(|&d| {
                        (
                            d,
                            open_share(&sim.round, &sim.keys(h), d, &sim.dealings[d]).unwrap(),
                        )
                    })
                    .collect();
                reveal(&sim.round, h, &all, &all, &held).unwrap()
            })
            .collect();
        // Holder 1 lies about its share of site 3's self mask.
        reveals[1].self_shares[3].1 = Scalar::from(42u64);
        let dealings: Vec<(usize, Dealing)> =
            all.iter().map(|&d| (d, sim.dealings[d].clone())).collect();
        let (sum, cheaters) = unmask(&sim.round, &all, &all, &dealings, &masked, &reveals).unwrap();
        assert_eq!(sum, plain_sum(&vals.iter().collect::<Vec<_>>()));
        assert_eq!(cheaters, vec![1]);
    }

    /// The attack double masking exists for: the aggregator (site 0) received site 2's masked
    /// vector but claims site 2 dropped after dealing. It then gets site 2's pairwise seeds, but
    /// never its self mask: what it can peel off is still uniformly masked.
    #[test]
    fn a_lying_aggregator_learns_nothing_of_a_site_it_calls_dropped() {
        let n = 3;
        let sim = Sim::new(n, 5);
        let vals = values(n, 4);
        let u1 = [0, 1, 2];
        let y2 = mask(&sim.round, &sim.keys(2), &u1, &sim.secrets[2], &vals[2]).unwrap();
        // The ledger records U2 = {0, 1}: the honest holders reveal site 2's bundle key shares.
        let u2 = [0, 1];
        let held = |h: usize| -> Vec<(usize, HeldShare)> {
            u1.iter()
                .map(|&d| {
                    (
                        d,
                        open_share(&sim.round, &sim.keys(h), d, &sim.dealings[d]).unwrap(),
                    )
                })
                .collect()
        };
        let r0 = reveal(&sim.round, 0, &u1, &u2, &held(0)).unwrap();
        let r1 = reveal(&sim.round, 1, &u1, &u2, &held(1)).unwrap();
        assert!(r0.self_shares.iter().all(|(d, _)| *d != 2));
        assert!(r1.self_shares.iter().all(|(d, _)| *d != 2));
        // Reconstruct k_2, open the bundle, remove every pairwise mask from y_2 …
        let commitment =
            decode_commitment(&sim.round, &sim.dealings[2].bundle_commitment, 2).unwrap();
        let shares = [(0, &r0.bundle_shares[0].1), (1, &r1.bundle_shares[0].1)];
        let k = reconstruct(&sim.round, 2, &commitment, &shares, &mut Vec::new()).unwrap();
        let seeds = open(
            bundle_cipher_key(&sim.round, &k),
            &share_aad(&sim.round, 2, 2),
            &sim.dealings[2].bundle,
        )
        .unwrap();
        let mut peeled = y2.clone();
        for (slot, v) in [0usize, 1].iter().enumerate() {
            let seed: [u8; 32] = seeds[slot * 32..slot * 32 + 32].try_into().unwrap();
            add_into(&mut peeled, &expand(seed, 4), *v < 2);
        }
        // … and what is left is x_2 + PRG(b_2), not x_2.
        assert_ne!(peeled, vals[2]);
        let mut with_self = vals[2].clone();
        add_into(
            &mut with_self,
            &self_mask(&sim.round, &sim.secrets[2].self_mask, 4),
            true,
        );
        assert_eq!(
            peeled, with_self,
            "only the self mask is left, and it is never revealed"
        );
        // A single share of b_2 (the aggregator's own) is below the threshold.
        let own = open_share(&sim.round, &sim.keys(0), 2, &sim.dealings[2]).unwrap();
        let b_commit = decode_commitment(&sim.round, &sim.dealings[2].self_commitment, 2).unwrap();
        assert!(
            reconstruct(
                &sim.round,
                2,
                &b_commit,
                &[(0, &own.self_share)],
                &mut Vec::new()
            )
            .is_err()
        );
    }

    #[test]
    fn dealing_is_reproducible_and_secrets_round_trip() {
        let sim = Sim::new(3, 6);
        let again = deal(&sim.round, &sim.keys(1), &sim.secrets[1]).unwrap();
        assert_eq!(again, sim.dealings[1]);
        let bytes = sim.secrets[1].to_bytes();
        assert_eq!(SiteSecrets::from_bytes(&bytes).unwrap(), sim.secrets[1]);
        assert!(SiteSecrets::from_bytes(&bytes[1..]).is_none());
        let held = open_share(&sim.round, &sim.keys(0), 1, &sim.dealings[1]).unwrap();
        assert_eq!(HeldShare::from_bytes(&held.to_bytes()).unwrap(), held);
    }

    #[test]
    fn signed_values_round_trip() {
        let sim = Sim::new(3, 8);
        let vals: Vec<Vec<u64>> = [[-5i64, 10], [-7, -20], [3, 1]]
            .iter()
            .map(|v| v.iter().map(|&x| encode_i64(x)).collect())
            .collect();
        let (sum, _) = sim.run(&vals, &[0, 1, 2], &[0, 1, 2], &[0, 1, 2]).unwrap();
        let total: Vec<i64> = sum.into_iter().map(decode_i64).collect();
        assert_eq!(total, vec![-9, -9]);
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(Round::new([0; 32], 0).is_err());
        assert!(Round::with_threshold([0; 32], 3, 4).is_err());
        assert!(Round::with_threshold([0; 32], 3, 0).is_err());
        assert!(Round::new([0; 32], MAX_SITES + 1).is_err());
        assert_eq!(threshold(3), 2);
        assert_eq!(threshold(4), 3);
        let sim = Sim::new(3, 7);
        assert!(mask(&sim.round, &sim.keys(0), &[1, 2], &sim.secrets[0], &[1]).is_err());
        assert!(mask(&sim.round, &sim.keys(0), &[0, 2, 1], &sim.secrets[0], &[1]).is_err());
        let wrong = Keys {
            me: 1,
            secret: &sim.x[0],
            peers: &sim.pubs,
        };
        assert_eq!(
            deal(&sim.round, &wrong, &sim.secrets[0]),
            Err(SecAggError::KeyMismatch { site: 1 })
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]
            #[test]
            fn any_allowed_dropout_pattern_gives_the_survivors_sum(
                n in 1usize..6,
                seed in any::<u64>(),
                dealt_mask in any::<u8>(),
                survived_mask in any::<u8>(),
            ) {
                let sim = Sim::new(n, seed);
                let vals = values(n, 3);
                let u1: Vec<usize> = (0..n).filter(|i| dealt_mask & (1 << i) != 0).collect();
                let u2: Vec<usize> = u1.iter().copied().filter(|i| survived_mask & (1 << i) != 0).collect();
                prop_assume!(u2.len() >= sim.round.threshold);
                let (sum, _) = sim.run(&vals, &u1, &u2, &u2).unwrap();
                let expect: Vec<&Vec<u64>> = u2.iter().map(|&i| &vals[i]).collect();
                prop_assert_eq!(sum, plain_sum(&expect));
            }

            #[test]
            fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = SiteSecrets::from_bytes(&bytes);
                let _ = HeldShare::from_bytes(&bytes);
                let round = Round::new([1; 32], 3).unwrap();
                let _ = decode_commitment(&round, &bytes, 0);
                let _ = open([3; 32], b"", &bytes);
            }
        }
    }
}
