//! Exact differential-privacy noise over the integers.
//!
//! The samplers follow Canonne, Kamath and Steinke, "The Discrete Gaussian for Differential
//! Privacy" (NeurIPS 2020): Bernoulli(exp(-γ)) for rational γ by the exact alternating-series
//! method, geometric by repeated Bernoulli(exp(-1)), the discrete Laplace by their Algorithm 2 and
//! the discrete Gaussian by rejection from a discrete Laplace (Algorithm 3). Only integer and
//! rational arithmetic on `u64`/`u128` is used, so there is no floating-point leakage of the kind
//! that breaks textbook `scale * ln(u)` Laplace samplers (Mironov 2012).
//!
//! Why not the `opendp` crate: its Rust core pulls in a large dependency tree (its FFI layer,
//! polars integration options, arbitrary-precision `rug`/GMP for the exact samplers) that would
//! dominate the build of every node on the 2-core machines, for three small samplers. The
//! algorithms here are the same published ones OpenDP implements and are tested against the exact
//! probability mass functions.

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, SeedableRng};
use thiserror::Error;

/// Errors from the noise samplers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DpError {
    /// A scale or variance with a zero numerator or denominator.
    #[error("invalid noise parameter: num={num} den={den} (both must be positive)")]
    InvalidParameter { num: u64, den: u64 },
    /// A privacy parameter of zero.
    #[error("invalid privacy parameter: {name}=0 (must be positive)")]
    ZeroPrivacyParameter { name: &'static str },
    /// The operating system's random source failed.
    #[error("os random source unavailable: {reason}")]
    OsRandom { reason: String },
    /// Intermediate rational arithmetic exceeded 128 bits.
    #[error("arithmetic overflow in sampler: step={step}")]
    Overflow { step: &'static str },
}

/// The production noise RNG: ChaCha20 seeded with 32 bytes from the operating system.
pub fn os_rng() -> Result<ChaCha20Rng, DpError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| DpError::OsRandom {
        reason: e.to_string(),
    })?;
    Ok(ChaCha20Rng::from_seed(seed))
}

/// A uniform integer in `[0, bound)` by rejection from full 128-bit draws (exact, unbiased);
/// 0 for a bound of 0 or 1.
fn uniform_below<R: CryptoRng + ?Sized>(rng: &mut R, bound: u128) -> u128 {
    if bound <= 1 {
        return 0;
    }
    // Largest multiple of `bound` that fits; draws at or above it are rejected.
    let zone = u128::MAX - (u128::MAX % bound + 1) % bound;
    loop {
        let hi = u128::from(rng.next_u64());
        let lo = u128::from(rng.next_u64());
        let x = (hi << 64) | lo;
        if x <= zone {
            return x % bound;
        }
    }
}

/// Bernoulli(num/den) for `num <= den`, `den > 0`.
fn bernoulli_rational<R: CryptoRng + ?Sized>(rng: &mut R, num: u128, den: u128) -> bool {
    uniform_below(rng, den) < num
}

/// Bernoulli(exp(-num/den)), exact, for any `num >= 0`, `den > 0`.
fn bernoulli_exp<R: CryptoRng + ?Sized>(
    rng: &mut R,
    num: u128,
    den: u128,
) -> Result<bool, DpError> {
    if num <= den {
        return bernoulli_exp_unit(rng, num, den);
    }
    // exp(-γ) = exp(-1)^floor(γ) * exp(-(γ - floor(γ))).
    let whole = num / den;
    for _ in 0..whole {
        if !bernoulli_exp_unit(rng, 1, 1)? {
            return Ok(false);
        }
    }
    bernoulli_exp_unit(rng, num % den, den)
}

/// Bernoulli(exp(-γ)) for γ = num/den in [0, 1]: draw A_k ~ Bernoulli(γ/k) for k = 1, 2, ...
/// until the first failure at K; the result is "K is odd".
fn bernoulli_exp_unit<R: CryptoRng + ?Sized>(
    rng: &mut R,
    num: u128,
    den: u128,
) -> Result<bool, DpError> {
    let mut k: u128 = 1;
    loop {
        let scaled = den.checked_mul(k).ok_or(DpError::Overflow {
            step: "bernoulli_exp",
        })?;
        if !bernoulli_rational(rng, num, scaled) {
            return Ok(k % 2 == 1);
        }
        k += 1;
    }
}

/// Geometric with success probability 1 - exp(-1): the number of Bernoulli(exp(-1)) successes
/// before the first failure.
fn geometric_exp1<R: CryptoRng + ?Sized>(rng: &mut R) -> Result<u128, DpError> {
    let mut v: u128 = 0;
    while bernoulli_exp_unit(rng, 1, 1)? {
        v += 1;
    }
    Ok(v)
}

/// Samples the discrete Laplace distribution with scale `scale_num / scale_den`:
/// `P[X = x] ∝ exp(-|x| * scale_den / scale_num)` over all integers.
pub fn sample_discrete_laplace<R: CryptoRng + ?Sized>(
    rng: &mut R,
    scale_num: u64,
    scale_den: u64,
) -> Result<i64, DpError> {
    if scale_num == 0 || scale_den == 0 {
        return Err(DpError::InvalidParameter {
            num: scale_num,
            den: scale_den,
        });
    }
    // Algorithm 2 of CKS20 with t = scale_num, s = scale_den.
    let t = u128::from(scale_num);
    let s = u128::from(scale_den);
    loop {
        let u = uniform_below(rng, t);
        if !bernoulli_exp(rng, u, t)? {
            continue;
        }
        let v = geometric_exp1(rng)?;
        let x = t
            .checked_mul(v)
            .and_then(|tv| tv.checked_add(u))
            .ok_or(DpError::Overflow { step: "laplace" })?
            / s;
        let negative = rng.next_u32() & 1 == 1;
        if negative && x == 0 {
            continue;
        }
        let x = i64::try_from(x).map_err(|_| DpError::Overflow { step: "laplace" })?;
        return Ok(if negative { -x } else { x });
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Samples the discrete Gaussian with variance parameter σ² = `sigma2_num / sigma2_den`:
/// `P[X = x] ∝ exp(-x² / (2σ²))` over all integers.
pub fn sample_discrete_gaussian<R: CryptoRng + ?Sized>(
    rng: &mut R,
    sigma2_num: u64,
    sigma2_den: u64,
) -> Result<i64, DpError> {
    if sigma2_num == 0 || sigma2_den == 0 {
        return Err(DpError::InvalidParameter {
            num: sigma2_num,
            den: sigma2_den,
        });
    }
    let g = gcd(u128::from(sigma2_num), u128::from(sigma2_den));
    let a = u128::from(sigma2_num) / g;
    let b = u128::from(sigma2_den) / g;
    // t = floor(σ) + 1, with floor(sqrt(a/b)) = isqrt(floor(a/b)).
    let t = (a / b).isqrt() + 1;
    let t64 = u64::try_from(t).map_err(|_| DpError::Overflow { step: "gaussian_t" })?;
    let overflow = DpError::Overflow { step: "gaussian" };
    // γ = (|y| - σ²/t)² / (2σ²) = (|y|·b·t - a)² / (2·a·b·t²).
    let bt = b.checked_mul(t).ok_or(overflow.clone())?;
    let den = a
        .checked_mul(2)
        .and_then(|x| x.checked_mul(bt))
        .and_then(|x| x.checked_mul(t))
        .ok_or(overflow.clone())?;
    loop {
        let y = sample_discrete_laplace(rng, t64, 1)?;
        let abs = u128::from(y.unsigned_abs());
        let lhs = abs.checked_mul(bt).ok_or(overflow.clone())?;
        let diff = lhs.abs_diff(a);
        let num = diff.checked_mul(diff).ok_or(overflow.clone())?;
        let g = gcd(num, den);
        let (num, den) = if g > 1 {
            (num / g, den / g)
        } else {
            (num, den)
        };
        if bernoulli_exp(rng, num, den)? {
            return Ok(y);
        }
    }
}

/// A noise mechanism for an integer query answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// Discrete Laplace with scale `sensitivity / epsilon`: pure ε-DP for an L1 sensitivity.
    /// Epsilon is in millionths (`epsilon_micro = 1_000_000` means ε = 1).
    Laplace {
        epsilon_micro: u64,
        sensitivity: u64,
    },
    /// Discrete Gaussian with σ² = sensitivity² / (2ρ): ρ-zero-concentrated DP for an L2
    /// sensitivity (CKS20, Theorem 4). Rho is in millionths.
    Gaussian { rho_micro: u64, sensitivity: u64 },
}

impl Mechanism {
    /// Draws one noise value to add to a true answer.
    pub fn noise<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> Result<i64, DpError> {
        match *self {
            Mechanism::Laplace {
                epsilon_micro,
                sensitivity,
            } => {
                if epsilon_micro == 0 {
                    return Err(DpError::ZeroPrivacyParameter {
                        name: "epsilon_micro",
                    });
                }
                if sensitivity == 0 {
                    return Ok(0);
                }
                let num = u128::from(sensitivity) * 1_000_000;
                let den = u128::from(epsilon_micro);
                let g = gcd(num, den);
                let num =
                    u64::try_from(num / g).map_err(|_| DpError::Overflow { step: "scale" })?;
                let den =
                    u64::try_from(den / g).map_err(|_| DpError::Overflow { step: "scale" })?;
                sample_discrete_laplace(rng, num, den)
            }
            Mechanism::Gaussian {
                rho_micro,
                sensitivity,
            } => {
                if rho_micro == 0 {
                    return Err(DpError::ZeroPrivacyParameter { name: "rho_micro" });
                }
                if sensitivity == 0 {
                    return Ok(0);
                }
                // σ² = Δ² · 10⁶ / (2 ρ_micro).
                let num = u128::from(sensitivity) * u128::from(sensitivity) * 1_000_000;
                let den = 2 * u128::from(rho_micro);
                let g = gcd(num, den);
                let num =
                    u64::try_from(num / g).map_err(|_| DpError::Overflow { step: "sigma2" })?;
                let den =
                    u64::try_from(den / g).map_err(|_| DpError::Overflow { step: "sigma2" })?;
                sample_discrete_gaussian(rng, num, den)
            }
        }
    }
}

/// Small-cell suppression: `None` when `count` is below the threshold `k`, else the count.
pub fn suppress_small(count: i64, k: u32) -> Option<i64> {
    if count < i64::from(k) {
        None
    } else {
        Some(count)
    }
}

/// Releases one count: adds the mechanism's noise, then suppresses the noisy value below `k`.
/// Suppression is decided on the noisy value so that the decision itself is covered by the
/// mechanism's guarantee (thresholding the true count would not be differentially private).
pub fn release_count<R: CryptoRng + ?Sized>(
    rng: &mut R,
    mechanism: &Mechanism,
    true_count: i64,
    k: u32,
) -> Result<Option<i64>, DpError> {
    let noisy = true_count.saturating_add(mechanism.noise(rng)?);
    Ok(suppress_small(noisy, k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{Rng, SeedableRng};

    const N: usize = 100_000;
    /// Per-point tolerance on |p̂ − p| for |x| ≤ 5. With n = 100k the standard error of p̂ is at
    /// most 0.0016, so 0.005 is over 3 standard errors.
    const PMF_TOL: f64 = 0.005;

    fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    fn check_pmf(samples: &[i64], pmf: impl Fn(i64) -> f64, var: f64) {
        let n = samples.len() as f64;
        for x in -5..=5 {
            let count = samples.iter().filter(|&&s| s == x).count() as f64;
            let p_hat = count / n;
            let p = pmf(x);
            assert!((p_hat - p).abs() < PMF_TOL, "x={x} p_hat={p_hat} p={p}");
        }
        let mean = samples.iter().map(|&s| s as f64).sum::<f64>() / n;
        // Mean within 4 standard errors of 0.
        assert!(mean.abs() < 4.0 * (var / n).sqrt(), "mean={mean}");
        let v = samples
            .iter()
            .map(|&s| (s as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!((v / var - 1.0).abs() < 0.05, "variance={v} expected={var}");
    }

    #[test]
    fn bernoulli_exp_matches_probability() {
        let mut r = rng(1);
        for (num, den) in [(1u128, 2u128), (1, 1), (3, 1), (7, 3)] {
            let p = (-(num as f64) / den as f64).exp();
            let hits = (0..N)
                .filter(|_| bernoulli_exp(&mut r, num, den).unwrap())
                .count();
            let p_hat = hits as f64 / N as f64;
            assert!(
                (p_hat - p).abs() < PMF_TOL,
                "gamma={num}/{den} p_hat={p_hat} p={p}"
            );
        }
    }

    #[test]
    fn discrete_laplace_matches_exact_pmf() {
        for (seed, num, den) in [(2u64, 2u64, 1u64), (3, 3, 2)] {
            let mut r = rng(seed);
            let samples: Vec<i64> = (0..N)
                .map(|_| sample_discrete_laplace(&mut r, num, den).unwrap())
                .collect();
            let q = (-(den as f64) / num as f64).exp();
            let pmf = |x: i64| (1.0 - q) / (1.0 + q) * q.powi(x.unsigned_abs() as i32);
            let var = 2.0 * q / (1.0 - q).powi(2);
            check_pmf(&samples, pmf, var);
        }
    }

    #[test]
    fn discrete_gaussian_matches_exact_pmf() {
        for (seed, num, den) in [(4u64, 4u64, 1u64), (5, 9, 4)] {
            let mut r = rng(seed);
            let samples: Vec<i64> = (0..N)
                .map(|_| sample_discrete_gaussian(&mut r, num, den).unwrap())
                .collect();
            let s2 = num as f64 / den as f64;
            let w = |x: i64| (-(x as f64).powi(2) / (2.0 * s2)).exp();
            let z: f64 = (-200..=200).map(w).sum();
            let var: f64 = (-200..=200).map(|x| (x as f64).powi(2) * w(x)).sum::<f64>() / z;
            check_pmf(&samples, |x| w(x) / z, var);
        }
    }

    #[test]
    fn mechanism_laplace_scale_follows_epsilon() {
        // ε = 0.5, Δ = 1 → scale 2.
        let m = Mechanism::Laplace {
            epsilon_micro: 500_000,
            sensitivity: 1,
        };
        let mut r = rng(6);
        let samples: Vec<i64> = (0..N).map(|_| m.noise(&mut r).unwrap()).collect();
        let q = (-0.5f64).exp();
        let var = 2.0 * q / (1.0 - q).powi(2);
        check_pmf(
            &samples,
            |x| (1.0 - q) / (1.0 + q) * q.powi(x.unsigned_abs() as i32),
            var,
        );
    }

    #[test]
    fn mechanism_gaussian_variance_follows_rho() {
        // ρ = 0.125, Δ = 1 → σ² = 4.
        let m = Mechanism::Gaussian {
            rho_micro: 125_000,
            sensitivity: 1,
        };
        let mut r = rng(7);
        let samples: Vec<i64> = (0..N).map(|_| m.noise(&mut r).unwrap()).collect();
        let v = samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / N as f64;
        assert!((v / 4.0 - 1.0).abs() < 0.05, "variance={v}");
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        let mut r = rng(8);
        assert_eq!(
            sample_discrete_laplace(&mut r, 0, 1),
            Err(DpError::InvalidParameter { num: 0, den: 1 })
        );
        assert_eq!(
            sample_discrete_gaussian(&mut r, 1, 0),
            Err(DpError::InvalidParameter { num: 1, den: 0 })
        );
        let m = Mechanism::Laplace {
            epsilon_micro: 0,
            sensitivity: 1,
        };
        assert_eq!(
            m.noise(&mut r),
            Err(DpError::ZeroPrivacyParameter {
                name: "epsilon_micro"
            })
        );
        let m = Mechanism::Gaussian {
            rho_micro: 0,
            sensitivity: 1,
        };
        assert_eq!(
            m.noise(&mut r),
            Err(DpError::ZeroPrivacyParameter { name: "rho_micro" })
        );
    }

    #[test]
    fn large_scales_sample_without_overflow() {
        let mut r = rng(9);
        for _ in 0..100 {
            sample_discrete_laplace(&mut r, 1 << 50, 3).unwrap();
            sample_discrete_gaussian(&mut r, 1_000_000_000_000, 7).unwrap();
        }
    }

    #[test]
    fn release_adds_noise_then_suppresses() {
        let m = Mechanism::Laplace {
            epsilon_micro: 1_000_000,
            sensitivity: 1,
        };
        let mut r = rng(10);
        let released: Vec<Option<i64>> = (0..2000)
            .map(|_| release_count(&mut r, &m, 10, 10).unwrap())
            .collect();
        // Suppressed iff the noise is negative: P = (1 − P[0]) / 2 = e⁻¹/(1 + e⁻¹) ≈ 0.269, so
        // about 538 of 2000 (standard deviation about 20).
        let suppressed = released.iter().filter(|x| x.is_none()).count();
        assert!((440..640).contains(&suppressed), "suppressed={suppressed}");
        assert!(released.iter().flatten().all(|&x| x >= 10));
        assert!(released.iter().flatten().any(|&x| x > 10));
    }

    #[test]
    fn os_rng_seeds_differently() {
        let a = os_rng().unwrap().next_u64();
        let b = os_rng().unwrap().next_u64();
        assert_ne!(a, b);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn samplers_never_fail_on_moderate_parameters(
                seed in any::<u64>(),
                num in 1u64..1_000_000_000,
                den in 1u64..1_000_000,
            ) {
                let mut r = rng(seed);
                prop_assert!(sample_discrete_laplace(&mut r, num, den).is_ok());
                prop_assert!(sample_discrete_gaussian(&mut r, num, den).is_ok());
            }
        }
    }

    #[test]
    fn suppression_threshold() {
        assert_eq!(suppress_small(4, 5), None);
        assert_eq!(suppress_small(5, 5), Some(5));
        assert_eq!(suppress_small(-1, 0), None);
        assert_eq!(suppress_small(0, 0), Some(0));
    }
}
