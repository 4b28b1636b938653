//! Federated generalized linear models by Newton–Raphson / IRLS over summed sufficient
//! statistics.
//!
//! With a canonical link (logit for [`Family::Logistic`], log for [`Family::Poisson`], identity
//! for [`Family::Linear`]) one Newton step needs only sums over rows: the Fisher information
//! `X'WX` (`W = diag(∂μ/∂η)`), the score `X'(y − μ)` and the deviance. Every site computes these
//! on its own rows at the coordinator's current coefficients ([`site_stats`]), encodes them as
//! exact fixed-point integers ([`encode`]) for secure aggregation (which adds vectors mod 2^64),
//! and the coordinator decodes the sum ([`decode`]) and takes the step ([`Irls::update`]). The
//! same loop on one process is [`fit_pooled`]; with the encoding below the federated fit equals
//! the pooled one to rounding (tested to 1e-9 relative).
//!
//! # Fixed-point encoding
//!
//! A value `v` becomes the integer `V = round(v · 2^32)` (so the resolution is 2^-32 ≈ 2.3e-10
//! absolute), which is split into two limbs `V = hi · 2^40 + lo` with `lo ∈ [0, 2^40)` (floor
//! division, so `hi` is negative for negative `V`). Each site accepts `|v| < 2^64` (an
//! [`GlmError::Overflow`] otherwise), so `|hi| < 2^56`. Summing the limbs of up to
//! [`crate::secagg::MAX_SITES`] = 64 sites never leaves the range of an `i64` (`Σ hi`) or of a
//! `u64` (`Σ lo < 2^46`), so the wrapping sum mod 2^64 that secure aggregation computes equals
//! the true integer sums, and `Σ V = (Σ hi)·2^40 + Σ lo` exactly. Counts (`n`, `null_rows`) are
//! one limb each. For 3 × 1M rows and covariates up to 1e3, the largest entry of `X'WX` is about
//! 3e12, far below 2^64 ≈ 1.8e19.
//!
//! Layout of the encoded vector (length [`stats_len`]): `[n, null_rows]`, then two limbs per
//! value of `xtwx` (upper triangle, row by row), `score`, `deviance`, `y_sum`, `y2_sum`,
//! `y_log_y`, `offset_exp_sum`, `y_offset_sum`.
//!
//! # Conventions
//!
//! - The caller supplies the design matrix including the intercept column; **column 0 is taken
//!   as the intercept**: it is not penalized by the L2 option, and the null deviance is that of
//!   the intercept-only model (with the offset for Poisson).
//! - Iteration starts at β = 0. A step that increases the (penalized) deviance is halved
//!   towards the previous coefficients (as R's `glm.fit` does); convergence is
//!   `|D_k − D_{k−1}| ≤ tol · (|D_k| + 0.1)` on the deviance (R's criterion; statsmodels
//!   compares the deviance with an absolute tolerance).
//! - Standard errors: the inverse of `X'WX` at the final coefficients, times the scale (1 for
//!   logistic and Poisson; `deviance/(n − p)`, the Pearson χ²/(n − p), for linear, as statsmodels
//!   GLM Gaussian). p-values from the standard normal for every family (as statsmodels GLM);
//!   95% Wald intervals with z = 1.959963984540054.
//! - **L2** (`Options::l2 = λ`): the fit minimizes `D(β)/2 + (λ/2)·Σ_{j≥1} β_j²` (ridge on every
//!   column but the intercept, column 0); standard errors then come from the inverse of the
//!   penalized information `X'WX + λ·diag(0, 1, …, 1)`.
//!
//! # Differential privacy
//!
//! [`site_stats_clipped`] computes a site's statistics with per-row clipping ([`DpGlm`]), and
//! [`noise_stats`] adds discrete Gaussian noise (the exact sampler of [`crate::dp`]) calibrated
//! to the L2 sensitivity of one person's row, for ρ-zCDP per iteration. See [`DpGlm`] for the
//! derivation. A noisy fit runs with `Options::noisy = true`: exactly `max_iter` iterations (no
//! convergence test, no step halving on a noisy deviance) and a Hessian repaired by diagonal
//! loading when the noise makes it indefinite.
//!
//! The normal tail uses `libm::erfc` (the FreeBSD/musl implementation, < 1 ulp; `libm` is
//! already in the workspace's lock file through other dependencies, so no new crate is built).

use crate::dp::{DpError, sample_discrete_gaussian};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most columns of a design matrix.
pub const MAX_P: usize = 64;
/// 97.5% quantile of the standard normal (95% two-sided Wald intervals).
pub const Z_975: f64 = 1.959963984540054;
/// Fractional bits of the fixed-point encoding.
const FRAC: f64 = 4_294_967_296.0; // 2^32
/// Bits of the low limb.
const LO_BITS: u32 = 40;
/// Largest magnitude one site may encode (2^64).
const MAX_ABS: f64 = 18_446_744_073_709_551_616.0;
/// Rows per block of the statistics kernel.
const BLOCK: usize = 256;
/// Largest linear predictor (with offset) used for the Poisson mean: μ ≤ e^30 ≈ 1.07e13, so a
/// diverging step gives a large finite deviance (and is halved) instead of an overflow.
const POISSON_ETA_MAX: f64 = 30.0;
/// Values per `Stats` besides the matrix and the score.
const SCALARS: usize = 6;

/// The GLM family, each with its canonical link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Binary (or proportion in [0, 1]) outcome, logit link.
    Logistic,
    /// Count outcome, log link; the offset is typically log person-time.
    Poisson,
    /// Gaussian outcome, identity link.
    Linear,
}

/// Errors of the GLM statistics, encoding and fitting.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum GlmError {
    /// The number of columns is zero or above [`MAX_P`].
    #[error("bad number of columns: p={p} (must be 1..={MAX_P})")]
    BadColumns {
        /// The number of columns.
        p: usize,
    },
    /// Two inputs disagree in length.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// The expected length.
        expected: usize,
        /// The actual length.
        got: usize,
    },
    /// A NaN or infinite value.
    #[error("non-finite value in {what} at index {index}")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Its index (row for y/offset, flat index for x).
        index: usize,
    },
    /// An outcome outside the family's domain (logistic: [0, 1]; Poisson: ≥ 0).
    #[error("outcome out of range for the {family:?} family at row {row}: {value}")]
    Domain {
        /// The family.
        family: Family,
        /// The row.
        row: usize,
        /// The value.
        value: f64,
    },
    /// A value too large for the fixed-point encoding (|v| ≥ 2^64), or a count above i64.
    #[error("value too large for the fixed-point encoding: {what}={value:e} (the fit diverged?)")]
    Overflow {
        /// Which value.
        what: &'static str,
        /// The value.
        value: f64,
    },
    /// A decoded count is negative.
    #[error("negative count in an encoded sum: {what}={value}")]
    NegativeCount {
        /// Which count.
        what: &'static str,
        /// The value.
        value: i64,
    },
    /// The (penalized) information matrix is not positive definite.
    #[error(
        "X'WX is not positive definite (pivot {pivot}): collinear or constant covariates, \
         perfect separation, or too few rows for the number of columns"
    )]
    NotPositiveDefinite {
        /// The column at which the Cholesky factorization failed.
        pivot: usize,
    },
    /// No convergence within `max_iter` iterations.
    #[error(
        "IRLS did not converge in {iterations} iterations (deviance {deviance}); with a binary \
         outcome this usually means perfect or quasi-perfect separation"
    )]
    NotConverged {
        /// Iterations run.
        iterations: u32,
        /// The last deviance.
        deviance: f64,
    },
    /// Step halving could not decrease the deviance.
    #[error("IRLS diverged: the deviance kept increasing after {halvings} step halvings")]
    Diverged {
        /// Halvings tried.
        halvings: u32,
    },
    /// Fewer rows than needed (the linear scale needs n > p).
    #[error("too few rows: n={n} p={p}")]
    TooFewRows {
        /// Rows.
        n: u64,
        /// Columns.
        p: usize,
    },
    /// An option or DP parameter out of range.
    #[error("invalid parameter {name}={value}")]
    BadParameter {
        /// Its name.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// The noise sampler failed.
    #[error(transparent)]
    Dp(#[from] DpError),
}

/// One site's rows.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    /// Columns of the design matrix (the caller includes the intercept column, first).
    pub p: usize,
    /// The design matrix, n × p row-major.
    pub x: &'a [f64],
    /// The outcome, n values.
    pub y: &'a [f64],
    /// An offset added to the linear predictor (log person-time for Poisson), n values.
    pub offset: Option<&'a [f64]>,
}

/// One site's rows as columns (e.g. Arrow `Float64` arrays), same meaning as [`Rows`].
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    /// The p columns of the design matrix (intercept first), n values each.
    pub x: &'a [&'a [f64]],
    /// The outcome.
    pub y: &'a [f64],
    /// The offset.
    pub offset: Option<&'a [f64]>,
}

/// Sufficient statistics of one Newton step at given coefficients (of one site, or summed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats {
    /// Columns.
    pub p: usize,
    /// Rows.
    pub n: u64,
    /// Upper triangle of X'WX, row by row, p(p+1)/2 values.
    pub xtwx: Vec<f64>,
    /// The score X'(y − μ) (the log-likelihood's gradient under the canonical link).
    pub score: Vec<f64>,
    /// The deviance at these coefficients.
    pub deviance: f64,
    /// Σy (linear: Σ(y − offset)), for the null deviance.
    pub y_sum: f64,
    /// Linear: Σ(y − offset)²; 0 otherwise.
    pub y2_sum: f64,
    /// Logistic: Σ[y ln y + (1−y) ln(1−y)]; Poisson: Σ y ln y; 0 for linear (0·ln 0 = 0).
    pub y_log_y: f64,
    /// Poisson: Σ exp(offset) (person-time); 0 otherwise.
    pub offset_exp_sum: f64,
    /// Poisson: Σ y·offset; 0 otherwise.
    pub y_offset_sum: f64,
    /// Rows that contributed the null-deviance sums (n normally; 0 after [`noise_stats`],
    /// which does not release them, and then there is no null deviance).
    pub null_rows: u64,
}

impl Stats {
    /// Zero statistics for p columns.
    pub fn zero(p: usize) -> Self {
        Self {
            p,
            xtwx: vec![0.0; tri_len(p)],
            score: vec![0.0; p],
            ..Self::default()
        }
    }

    /// Adds another site's statistics (the pooled equivalent of summing encodings).
    pub fn merge(&mut self, other: &Stats) -> Result<(), GlmError> {
        if other.p != self.p {
            return Err(GlmError::Shape {
                what: "stats p",
                expected: self.p,
                got: other.p,
            });
        }
        check_stats_shape(other)?;
        check_stats_shape(self)?;
        self.n = self.n.saturating_add(other.n);
        self.null_rows = self.null_rows.saturating_add(other.null_rows);
        for (a, b) in self.xtwx.iter_mut().zip(&other.xtwx) {
            *a += b;
        }
        for (a, b) in self.score.iter_mut().zip(&other.score) {
            *a += b;
        }
        self.deviance += other.deviance;
        self.y_sum += other.y_sum;
        self.y2_sum += other.y2_sum;
        self.y_log_y += other.y_log_y;
        self.offset_exp_sum += other.offset_exp_sum;
        self.y_offset_sum += other.y_offset_sum;
        Ok(())
    }

    fn scalars(&self) -> [f64; SCALARS] {
        [
            self.deviance,
            self.y_sum,
            self.y2_sum,
            self.y_log_y,
            self.offset_exp_sum,
            self.y_offset_sum,
        ]
    }
}

fn tri_len(p: usize) -> usize {
    p * (p + 1) / 2
}

fn check_p(p: usize) -> Result<(), GlmError> {
    if p == 0 || p > MAX_P {
        return Err(GlmError::BadColumns { p });
    }
    Ok(())
}

fn check_stats_shape(s: &Stats) -> Result<(), GlmError> {
    check_p(s.p)?;
    if s.xtwx.len() != tri_len(s.p) {
        return Err(GlmError::Shape {
            what: "stats xtwx",
            expected: tri_len(s.p),
            got: s.xtwx.len(),
        });
    }
    if s.score.len() != s.p {
        return Err(GlmError::Shape {
            what: "stats score",
            expected: s.p,
            got: s.score.len(),
        });
    }
    Ok(())
}

/// Per-row clipping for the DP statistics.
#[derive(Debug, Clone, Copy)]
struct Clip<'a> {
    x_bound: &'a [f64],
    y_bound: f64,
    deviance_bound: f64,
}

/// Block buffers of the kernel, allocated once per call.
struct Scratch {
    /// p columns of `m` values, column-major.
    x: Vec<f64>,
    eta: Vec<f64>,
    w: Vec<f64>,
    r: Vec<f64>,
    wx: Vec<f64>,
}

fn ln_or_zero(v: f64) -> f64 {
    if v > 0.0 { v * v.ln() } else { 0.0 }
}

/// ln(1 + e^z) without overflow.
fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// Four-accumulator dot product (the compiler cannot reassociate a single float sum).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let (ca, ra) = a.as_chunks::<4>();
    let (cb, rb) = b.as_chunks::<4>();
    let mut s = [0.0f64; 4];
    for (x, y) in ca.iter().zip(cb) {
        s[0] += x[0] * y[0];
        s[1] += x[1] * y[1];
        s[2] += x[2] * y[2];
        s[3] += x[3] * y[3];
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// The statistics kernel over `n` rows: `fill(start, m, buf, clip)` writes the rows
/// `start..start+m` column-major into `buf` (p·m values), checked and clipped.
#[allow(clippy::too_many_arguments)]
fn stats_impl(
    family: Family,
    p: usize,
    n: usize,
    y: &[f64],
    offset: Option<&[f64]>,
    beta: &[f64],
    clip: Option<Clip<'_>>,
    mut fill: impl FnMut(usize, usize, &mut [f64]) -> Result<(), GlmError>,
) -> Result<Stats, GlmError> {
    check_p(p)?;
    if beta.len() != p {
        return Err(GlmError::Shape {
            what: "beta",
            expected: p,
            got: beta.len(),
        });
    }
    if let Some((index, _)) = beta.iter().enumerate().find(|(_, b)| !b.is_finite()) {
        return Err(GlmError::NonFinite {
            what: "beta",
            index,
        });
    }
    if y.len() != n {
        return Err(GlmError::Shape {
            what: "y",
            expected: n,
            got: y.len(),
        });
    }
    if let Some(o) = offset
        && o.len() != n
    {
        return Err(GlmError::Shape {
            what: "offset",
            expected: n,
            got: o.len(),
        });
    }
    let mut s = Stats::zero(p);
    s.n = n as u64;
    let mut sc = Scratch {
        x: vec![0.0; p * BLOCK],
        eta: vec![0.0; BLOCK],
        w: vec![0.0; BLOCK],
        r: vec![0.0; BLOCK],
        wx: vec![0.0; BLOCK],
    };
    let mut start = 0;
    while start < n {
        let m = BLOCK.min(n - start);
        let xb = sc.x.get_mut(..p * m).ok_or(GlmError::Shape {
            what: "block",
            expected: p * m,
            got: 0,
        })?;
        fill(start, m, xb)?;
        let yb = y.get(start..start + m).ok_or(GlmError::Shape {
            what: "y",
            expected: n,
            got: y.len(),
        })?;
        let ob = match offset {
            Some(o) => Some(o.get(start..start + m).ok_or(GlmError::Shape {
                what: "offset",
                expected: n,
                got: o.len(),
            })?),
            None => None,
        };
        block(family, p, m, start, yb, ob, beta, clip, &mut sc, &mut s)?;
        start += m;
    }
    s.null_rows = if clip.is_some() { 0 } else { s.n };
    if clip.is_some() {
        s.y_sum = 0.0;
        s.y2_sum = 0.0;
        s.y_log_y = 0.0;
        s.offset_exp_sum = 0.0;
        s.y_offset_sum = 0.0;
    }
    Ok(s)
}

/// One block of `m ≤ BLOCK` rows whose design is in `sc.x` (column-major).
#[allow(clippy::too_many_arguments)]
fn block(
    family: Family,
    p: usize,
    m: usize,
    start: usize,
    y: &[f64],
    offset: Option<&[f64]>,
    beta: &[f64],
    clip: Option<Clip<'_>>,
    sc: &mut Scratch,
    s: &mut Stats,
) -> Result<(), GlmError> {
    let (Some(xb), Some(eta), Some(w), Some(r), Some(wx)) = (
        sc.x.get(..p * m),
        sc.eta.get_mut(..m),
        sc.w.get_mut(..m),
        sc.r.get_mut(..m),
        sc.wx.get_mut(..m),
    ) else {
        return Err(GlmError::Shape {
            what: "block",
            expected: m,
            got: 0,
        });
    };
    eta.fill(0.0);
    for (col, b) in xb.chunks_exact(m).zip(beta) {
        for (e, x) in eta.iter_mut().zip(col) {
            *e += b * x;
        }
    }
    for (i, (((e, wi), ri), yi)) in eta
        .iter()
        .zip(w.iter_mut())
        .zip(r.iter_mut())
        .zip(y)
        .enumerate()
    {
        let row = start + i;
        let mut yv = *yi;
        if !yv.is_finite() {
            return Err(GlmError::NonFinite {
                what: "y",
                index: row,
            });
        }
        let o = match offset {
            Some(ob) => {
                let o = ob.get(i).copied().unwrap_or(0.0);
                if !o.is_finite() {
                    return Err(GlmError::NonFinite {
                        what: "offset",
                        index: row,
                    });
                }
                o
            }
            None => 0.0,
        };
        let lin = e + o;
        let dev;
        match family {
            Family::Logistic => {
                if let Some(_c) = clip {
                    yv = yv.clamp(0.0, 1.0);
                } else if !(0.0..=1.0).contains(&yv) {
                    return Err(GlmError::Domain {
                        family,
                        row,
                        value: yv,
                    });
                }
                // μ = 1/(1 + e^{−η}), computed on the stable side.
                let mu = if lin >= 0.0 {
                    1.0 / (1.0 + (-lin).exp())
                } else {
                    let t = lin.exp();
                    t / (1.0 + t)
                };
                *wi = mu * (1.0 - mu);
                *ri = yv - mu;
                let ent = ln_or_zero(yv) + ln_or_zero(1.0 - yv);
                dev = 2.0 * (ent + yv * softplus(-lin) + (1.0 - yv) * softplus(lin));
                s.y_sum += yv;
                s.y_log_y += ent;
            }
            Family::Poisson => {
                if let Some(c) = clip {
                    yv = yv.clamp(0.0, c.y_bound);
                } else if yv < 0.0 {
                    return Err(GlmError::Domain {
                        family,
                        row,
                        value: yv,
                    });
                }
                let l = lin.min(POISSON_ETA_MAX);
                let mut mu = l.exp();
                if let Some(c) = clip {
                    mu = mu.min(c.y_bound);
                }
                *wi = mu;
                *ri = yv - mu;
                let yly = ln_or_zero(yv);
                dev = 2.0 * (yly - yv * mu.ln().max(-745.0) - yv + mu);
                // y·ln(μ) with y = 0 is 0 even for μ → 0.
                let dev = if yv == 0.0 { 2.0 * mu } else { dev };
                s.deviance += match clip {
                    Some(c) => dev.clamp(0.0, c.deviance_bound),
                    None => dev,
                };
                s.y_sum += yv;
                s.y_log_y += yly;
                s.offset_exp_sum += o.exp();
                s.y_offset_sum += yv * o;
                continue;
            }
            Family::Linear => {
                if let Some(c) = clip {
                    yv = yv.clamp(-c.y_bound, c.y_bound);
                }
                let mut res = yv - lin;
                if let Some(c) = clip {
                    res = res.clamp(-2.0 * c.y_bound, 2.0 * c.y_bound);
                }
                *wi = 1.0;
                *ri = res;
                dev = res * res;
                s.y_sum += yv - o;
                s.y2_sum += (yv - o) * (yv - o);
            }
        }
        s.deviance += match clip {
            Some(c) => dev.clamp(0.0, c.deviance_bound),
            None => dev,
        };
    }
    let mut out = s.xtwx.iter_mut();
    for (j, (colj, g)) in xb.chunks_exact(m).zip(s.score.iter_mut()).enumerate() {
        *g += dot(r, colj);
        for ((t, wv), xv) in wx.iter_mut().zip(w.iter()).zip(colj) {
            *t = wv * xv;
        }
        for colk in xb.chunks_exact(m).skip(j) {
            if let Some(slot) = out.next() {
                *slot += dot(wx, colk);
            }
        }
    }
    Ok(())
}

fn check_x(v: f64, index: usize, clip: Option<Clip<'_>>, j: usize) -> Result<f64, GlmError> {
    if !v.is_finite() {
        return Err(GlmError::NonFinite { what: "x", index });
    }
    Ok(match clip {
        Some(c) => {
            let b = c.x_bound.get(j).copied().unwrap_or(0.0);
            v.clamp(-b, b)
        }
        None => v,
    })
}

fn rows_impl(
    family: Family,
    rows: &Rows<'_>,
    beta: &[f64],
    clip: Option<Clip<'_>>,
) -> Result<Stats, GlmError> {
    let p = rows.p;
    check_p(p)?;
    let n = rows.y.len();
    if rows.x.len() != n * p {
        return Err(GlmError::Shape {
            what: "x (n × p)",
            expected: n * p,
            got: rows.x.len(),
        });
    }
    stats_impl(
        family,
        p,
        n,
        rows.y,
        rows.offset,
        beta,
        clip,
        |start, m, buf| {
            let src = rows.x.get(start * p..(start + m) * p).unwrap_or(&[]);
            for (i, row) in src.chunks_exact(p).enumerate() {
                for (j, v) in row.iter().enumerate() {
                    let v = check_x(*v, (start + i) * p + j, clip, j)?;
                    if let Some(slot) = buf.get_mut(j * m + i) {
                        *slot = v;
                    }
                }
            }
            Ok(())
        },
    )
}

fn columns_impl(
    family: Family,
    cols: &Columns<'_>,
    beta: &[f64],
    clip: Option<Clip<'_>>,
) -> Result<Stats, GlmError> {
    let p = cols.x.len();
    check_p(p)?;
    let n = cols.y.len();
    if let Some(c) = cols.x.iter().find(|c| c.len() != n) {
        return Err(GlmError::Shape {
            what: "x column",
            expected: n,
            got: c.len(),
        });
    }
    stats_impl(
        family,
        p,
        n,
        cols.y,
        cols.offset,
        beta,
        clip,
        |start, m, buf| {
            for (j, (col, dst)) in cols.x.iter().zip(buf.chunks_exact_mut(m)).enumerate() {
                let src = col.get(start..start + m).unwrap_or(&[]);
                for (i, (d, v)) in dst.iter_mut().zip(src).enumerate() {
                    *d = check_x(*v, (start + i) * p + j, clip, j)?;
                }
            }
            Ok(())
        },
    )
}

/// A site's statistics at coefficients `beta`: one pass over the rows, no per-row allocation.
pub fn site_stats(family: Family, rows: &Rows<'_>, beta: &[f64]) -> Result<Stats, GlmError> {
    rows_impl(family, rows, beta, None)
}

/// [`site_stats`] over column slices (e.g. Arrow arrays).
pub fn site_stats_columns(
    family: Family,
    cols: &Columns<'_>,
    beta: &[f64],
) -> Result<Stats, GlmError> {
    columns_impl(family, cols, beta, None)
}

/// A site's statistics with the per-row clipping of `dp` (see [`DpGlm`]), ready for
/// [`noise_stats`]. The null-deviance sums are not computed (zero, `null_rows = 0`).
pub fn site_stats_clipped(
    family: Family,
    rows: &Rows<'_>,
    beta: &[f64],
    dp: &DpGlm,
) -> Result<Stats, GlmError> {
    dp.check(rows.p)?;
    rows_impl(family, rows, beta, Some(dp.clip()))
}

/// [`site_stats_clipped`] over column slices.
pub fn site_stats_columns_clipped(
    family: Family,
    cols: &Columns<'_>,
    beta: &[f64],
    dp: &DpGlm,
) -> Result<Stats, GlmError> {
    dp.check(cols.x.len())?;
    columns_impl(family, cols, beta, Some(dp.clip()))
}

/// Length of the encoded vector for p columns: 2 counts + 2 limbs per value.
pub fn stats_len(p: usize) -> usize {
    2 + 2 * (tri_len(p) + p + SCALARS)
}

fn push_fixed(out: &mut Vec<i64>, what: &'static str, v: f64) -> Result<(), GlmError> {
    if !v.is_finite() {
        return Err(GlmError::NonFinite {
            what,
            index: out.len(),
        });
    }
    if v.abs() >= MAX_ABS {
        return Err(GlmError::Overflow { what, value: v });
    }
    // |V| < 2^96: exact in i128, and hi = V >> 40 is below 2^56 in magnitude.
    let big = (v * FRAC).round() as i128;
    out.push((big >> LO_BITS) as i64);
    out.push((big & ((1i128 << LO_BITS) - 1)) as i64);
    Ok(())
}

/// Encodes statistics as exact fixed-point integers (see the module documentation); the
/// wrapping sum of several sites' encodings [`decode`]s to the sum of their statistics.
pub fn encode(stats: &Stats) -> Result<Vec<i64>, GlmError> {
    check_stats_shape(stats)?;
    let mut out = Vec::with_capacity(stats_len(stats.p));
    for (what, count) in [("n", stats.n), ("null_rows", stats.null_rows)] {
        out.push(i64::try_from(count).map_err(|_| GlmError::Overflow {
            what,
            value: count as f64,
        })?);
    }
    for v in &stats.xtwx {
        push_fixed(&mut out, "xtwx", *v)?;
    }
    for v in &stats.score {
        push_fixed(&mut out, "score", *v)?;
    }
    for v in stats.scalars() {
        push_fixed(&mut out, "scalar", v)?;
    }
    Ok(out)
}

/// Decodes the (wrapping) sum of sites' encodings for p columns.
pub fn decode(p: usize, sum: &[i64]) -> Result<Stats, GlmError> {
    check_p(p)?;
    if sum.len() != stats_len(p) {
        return Err(GlmError::Shape {
            what: "encoded stats",
            expected: stats_len(p),
            got: sum.len(),
        });
    }
    let (counts, limbs) = sum.split_at(2);
    let count = |i: usize, what: &'static str| -> Result<u64, GlmError> {
        let v = counts.get(i).copied().unwrap_or(0);
        u64::try_from(v).map_err(|_| GlmError::NegativeCount { what, value: v })
    };
    let mut values = limbs.as_chunks::<2>().0.iter().map(|[hi, lo]| {
        // Σlo is a non-negative sum below 2^46: read it unsigned.
        let big = (i128::from(*hi) << LO_BITS) + i128::from(*lo as u64);
        big as f64 / FRAC
    });
    let mut s = Stats::zero(p);
    s.n = count(0, "n")?;
    s.null_rows = count(1, "null_rows")?;
    for slot in s.xtwx.iter_mut().chain(s.score.iter_mut()) {
        *slot = values.next().unwrap_or(0.0);
    }
    let mut scalars = [0.0; SCALARS];
    for slot in &mut scalars {
        *slot = values.next().unwrap_or(0.0);
    }
    let [
        deviance,
        y_sum,
        y2_sum,
        y_log_y,
        offset_exp_sum,
        y_offset_sum,
    ] = scalars;
    s.deviance = deviance;
    s.y_sum = y_sum;
    s.y2_sum = y2_sum;
    s.y_log_y = y_log_y;
    s.offset_exp_sum = offset_exp_sum;
    s.y_offset_sum = y_offset_sum;
    Ok(s)
}

/// Wrapping (mod 2^64) element-wise sum of encodings, as secure aggregation computes it.
pub fn wrapping_sum<'a>(
    vectors: impl IntoIterator<Item = &'a [i64]>,
    len: usize,
) -> Result<Vec<i64>, GlmError> {
    let mut out = vec![0i64; len];
    for v in vectors {
        if v.len() != len {
            return Err(GlmError::Shape {
                what: "encoded stats",
                expected: len,
                got: v.len(),
            });
        }
        for (a, b) in out.iter_mut().zip(v) {
            *a = a.wrapping_add(*b);
        }
    }
    Ok(out)
}

// ----------------------------------------------------------------------------------------------
// Linear algebra (p ≤ 64): Cholesky of a symmetric matrix given by its upper triangle.

/// The full p × p row-major matrix of an upper triangle, plus `ridge` on the diagonal of
/// columns 1.. (and `load` on every diagonal entry).
fn full(p: usize, tri: &[f64], ridge: f64, load: f64) -> Vec<f64> {
    let mut a = vec![0.0; p * p];
    let mut it = tri.iter();
    for j in 0..p {
        for k in j..p {
            let v = it.next().copied().unwrap_or(0.0);
            let v = if j == k {
                v + load + if j > 0 { ridge } else { 0.0 }
            } else {
                v
            };
            if let Some(s) = a.get_mut(j * p + k) {
                *s = v;
            }
            if let Some(s) = a.get_mut(k * p + j) {
                *s = v;
            }
        }
    }
    a
}

/// In-place Cholesky `A = L·Lᵀ` (L in the lower triangle). A pivot that is not positive, or
/// below 1e-12 of its original diagonal entry (numerically singular), is an error.
// INVARIANT: every index is below p·p and `a.len() == p * p` is checked first.
#[allow(clippy::indexing_slicing)]
fn cholesky(a: &mut [f64], p: usize) -> Result<(), GlmError> {
    if a.len() != p * p {
        return Err(GlmError::Shape {
            what: "matrix",
            expected: p * p,
            got: a.len(),
        });
    }
    for j in 0..p {
        let orig = a[j * p + j];
        let mut d = orig;
        for k in 0..j {
            d -= a[j * p + k] * a[j * p + k];
        }
        if !(d.is_finite() && d > 0.0 && d > 1e-12 * orig.abs()) {
            return Err(GlmError::NotPositiveDefinite { pivot: j });
        }
        let l = d.sqrt();
        a[j * p + j] = l;
        for i in j + 1..p {
            let mut v = a[i * p + j];
            for k in 0..j {
                v -= a[i * p + k] * a[j * p + k];
            }
            a[i * p + j] = v / l;
        }
    }
    Ok(())
}

/// Solves `L·Lᵀ x = b` in place.
// INVARIANT: `l.len() == p * p` and `b.len() == p`, checked first.
#[allow(clippy::indexing_slicing)]
fn chol_solve(l: &[f64], p: usize, b: &mut [f64]) {
    if l.len() != p * p || b.len() != p {
        return;
    }
    for i in 0..p {
        let mut v = b[i];
        for k in 0..i {
            v -= l[i * p + k] * b[k];
        }
        b[i] = v / l[i * p + i];
    }
    for i in (0..p).rev() {
        let mut v = b[i];
        for k in i + 1..p {
            v -= l[k * p + i] * b[k];
        }
        b[i] = v / l[i * p + i];
    }
}

/// The diagonal of the inverse of `L·Lᵀ`.
fn chol_inverse_diag(l: &[f64], p: usize) -> Vec<f64> {
    (0..p)
        .map(|j| {
            let mut e = vec![0.0; p];
            if let Some(v) = e.get_mut(j) {
                *v = 1.0;
            }
            chol_solve(l, p, &mut e);
            e.get(j).copied().unwrap_or(f64::NAN)
        })
        .collect()
}

/// Cholesky of the (penalized) information; with `repair`, an indefinite matrix (noisy DP
/// statistics) gets diagonal loading δ·I, δ starting at 1e-8 of the mean |diagonal| and
/// doubling until the factorization succeeds (at most 80 times).
fn factor(p: usize, xtwx: &[f64], ridge: f64, repair: bool) -> Result<Vec<f64>, GlmError> {
    let mut a = full(p, xtwx, ridge, 0.0);
    match cholesky(&mut a, p) {
        Ok(()) => Ok(a),
        Err(e) if !repair => Err(e),
        Err(e) => {
            let mean_diag = (0..p)
                .filter_map(|j| xtwx.get(j * p - j * j.saturating_sub(1) / 2))
                .map(|v| v.abs())
                .sum::<f64>()
                / p as f64;
            let mut delta = 1e-8 * mean_diag.max(1e-300);
            for _ in 0..80 {
                let mut a = full(p, xtwx, ridge, delta);
                if cholesky(&mut a, p).is_ok() {
                    return Ok(a);
                }
                delta *= 2.0;
            }
            Err(e)
        }
    }
}

// ----------------------------------------------------------------------------------------------
// The coordinator.

/// IRLS options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    /// Most iterations (statistics evaluations).
    pub max_iter: u32,
    /// Convergence: `|D_k − D_{k−1}| ≤ tol · (|D_k| + 0.1)`.
    pub tol: f64,
    /// Ridge penalty λ on every column but column 0 (the intercept).
    pub l2: f64,
    /// The statistics are DP-noisy: run exactly `max_iter` iterations (no convergence test, no
    /// step halving) and repair an indefinite Hessian by diagonal loading.
    pub noisy: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_iter: 25,
            tol: 1e-10,
            l2: 0.0,
            noisy: false,
        }
    }
}

/// The outcome of one [`Irls::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// New coefficients are available ([`Irls::beta`]): compute statistics there.
    Continue,
    /// Converged: [`Irls::beta`] is the estimate and the last statistics are at it.
    Converged,
}

/// The coordinator's Newton/IRLS state machine.
#[derive(Debug, Clone)]
pub struct Irls {
    family: Family,
    p: usize,
    opts: Options,
    beta: Vec<f64>,
    iteration: u32,
    /// The last accepted coefficients and their penalized deviance.
    accepted: Option<(Vec<f64>, f64)>,
    halvings: u32,
    converged: bool,
}

impl Irls {
    /// Starts at β = 0.
    pub fn new(family: Family, p: usize, opts: Options) -> Self {
        Self {
            family,
            p,
            opts,
            beta: vec![0.0; p],
            iteration: 0,
            accepted: None,
            halvings: 0,
            converged: false,
        }
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The coefficients at which the next statistics are to be computed.
    pub fn beta(&self) -> &[f64] {
        &self.beta
    }

    /// Statistics evaluations consumed so far.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// Whether [`Irls::update`] has returned [`Progress::Converged`].
    pub fn converged(&self) -> bool {
        self.converged
    }

    fn penalized(&self, deviance: f64) -> f64 {
        let pen: f64 = self.beta.iter().skip(1).map(|b| b * b).sum();
        deviance + self.opts.l2 * pen
    }

    /// Takes the summed statistics at [`Irls::beta`] and moves to the next coefficients.
    pub fn update(&mut self, total: &Stats) -> Result<Progress, GlmError> {
        if self.converged {
            return Ok(Progress::Converged);
        }
        check_stats_shape(total)?;
        if total.p != self.p {
            return Err(GlmError::Shape {
                what: "stats p",
                expected: self.p,
                got: total.p,
            });
        }
        let o = self.opts;
        if o.max_iter == 0 {
            return Err(GlmError::BadParameter {
                name: "max_iter",
                value: 0.0,
            });
        }
        if !(o.tol.is_finite() && o.tol >= 0.0) {
            return Err(GlmError::BadParameter {
                name: "tol",
                value: o.tol,
            });
        }
        if !(o.l2.is_finite() && o.l2 >= 0.0) {
            return Err(GlmError::BadParameter {
                name: "l2",
                value: o.l2,
            });
        }
        for (what, vals) in [("xtwx", &total.xtwx), ("score", &total.score)] {
            if let Some((index, _)) = vals.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(GlmError::NonFinite { what, index });
            }
        }
        self.iteration += 1;
        let dev = self.penalized(total.deviance);
        if o.noisy {
            if self.iteration >= o.max_iter {
                self.converged = true;
                return Ok(Progress::Converged);
            }
            self.step(total, true)?;
            return Ok(Progress::Continue);
        }
        if let Some((prev_beta, prev_dev)) = &self.accepted {
            if dev.is_finite() && (dev - prev_dev).abs() <= o.tol * (dev.abs() + 0.1) {
                self.converged = true;
                return Ok(Progress::Converged);
            }
            if !dev.is_finite() || dev > *prev_dev {
                // Halve the step back towards the last accepted coefficients.
                self.halvings += 1;
                if self.halvings > 40 {
                    return Err(GlmError::Diverged {
                        halvings: self.halvings,
                    });
                }
                if self.iteration >= o.max_iter {
                    return Err(GlmError::NotConverged {
                        iterations: self.iteration,
                        deviance: *prev_dev,
                    });
                }
                for (b, a) in self.beta.iter_mut().zip(prev_beta) {
                    *b = 0.5 * (*b + a);
                }
                return Ok(Progress::Continue);
            }
        } else if !dev.is_finite() {
            return Err(GlmError::NonFinite {
                what: "deviance",
                index: 0,
            });
        }
        if self.iteration >= o.max_iter {
            return Err(GlmError::NotConverged {
                iterations: self.iteration,
                deviance: total.deviance,
            });
        }
        self.accepted = Some((self.beta.clone(), dev));
        self.halvings = 0;
        self.step(total, false)?;
        Ok(Progress::Continue)
    }

    /// β ← β + (X'WX + λD)⁻¹ (score − λDβ).
    fn step(&mut self, total: &Stats, repair: bool) -> Result<(), GlmError> {
        let l = factor(self.p, &total.xtwx, self.opts.l2, repair)?;
        let mut g: Vec<f64> = total
            .score
            .iter()
            .zip(&self.beta)
            .enumerate()
            .map(|(j, (s, b))| if j > 0 { s - self.opts.l2 * b } else { *s })
            .collect();
        chol_solve(&l, self.p, &mut g);
        if let Some((index, _)) = g.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(GlmError::NonFinite {
                what: "newton step",
                index,
            });
        }
        for (b, d) in self.beta.iter_mut().zip(&g) {
            *b += d;
        }
        Ok(())
    }
}

// ----------------------------------------------------------------------------------------------
// Summary.

/// One coefficient of a fitted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Term {
    /// The column's name.
    pub name: String,
    /// β.
    pub coefficient: f64,
    /// Its standard error.
    pub std_error: f64,
    /// β / SE.
    pub z: f64,
    /// Two-sided p-value from the standard normal.
    pub p_value: f64,
    /// 95% Wald interval.
    pub ci_low: f64,
    /// 95% Wald interval.
    pub ci_high: f64,
    /// Logistic: the odds ratio, Poisson: the rate ratio, with its 95% interval
    /// (exp of β and of the bounds); `None` for linear.
    pub ratio: Option<(f64, f64, f64)>,
}

/// A fitted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    /// The family.
    pub family: Family,
    /// The coefficients, in column order.
    pub terms: Vec<Term>,
    /// The deviance at the estimate.
    pub deviance: f64,
    /// The deviance of the intercept-only model (with the offset for Poisson); `None` when the
    /// sums were not released (DP) or are inconsistent.
    pub null_deviance: Option<f64>,
    /// Statistics evaluations (rounds).
    pub iterations: u32,
    /// Rows.
    pub n: u64,
    /// The dispersion: 1 for logistic and Poisson, deviance/(n − p) for linear.
    pub scale: f64,
}

/// The standard normal's two-sided tail probability `P(|Z| ≥ |z|) = erfc(|z|/√2)`.
pub fn normal_two_sided_p(z: f64) -> f64 {
    libm::erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// The null deviance from the sums in `s` (see [`Stats`]).
pub fn null_deviance(family: Family, s: &Stats) -> Option<f64> {
    if s.null_rows == 0 || s.null_rows != s.n {
        return None;
    }
    let n = s.n as f64;
    let v = match family {
        Family::Linear => s.y2_sum - s.y_sum * s.y_sum / n,
        Family::Logistic => {
            let m = s.y_sum / n;
            let fitted = if m > 0.0 { s.y_sum * m.ln() } else { 0.0 }
                + if m < 1.0 {
                    (n - s.y_sum) * (1.0 - m).ln()
                } else {
                    0.0
                };
            2.0 * (s.y_log_y - fitted)
        }
        Family::Poisson => {
            if s.y_sum > 0.0 {
                2.0 * (s.y_log_y - s.y_offset_sum - s.y_sum * (s.y_sum / s.offset_exp_sum).ln())
            } else {
                0.0
            }
        }
    };
    v.is_finite().then_some(v.max(0.0))
}

/// The fitted model from the converged state and the statistics at its coefficients.
pub fn summarize(
    family: Family,
    names: &[String],
    irls: &Irls,
    last: &Stats,
) -> Result<Fit, GlmError> {
    let p = irls.p;
    check_stats_shape(last)?;
    if names.len() != p || last.p != p {
        return Err(GlmError::Shape {
            what: "names/stats",
            expected: p,
            got: if names.len() != p {
                names.len()
            } else {
                last.p
            },
        });
    }
    let scale = match family {
        Family::Linear => {
            if last.n <= p as u64 {
                return Err(GlmError::TooFewRows { n: last.n, p });
            }
            last.deviance / (last.n - p as u64) as f64
        }
        Family::Logistic | Family::Poisson => 1.0,
    };
    let l = factor(p, &last.xtwx, irls.opts.l2, irls.opts.noisy)?;
    let diag = chol_inverse_diag(&l, p);
    let ratio = matches!(family, Family::Logistic | Family::Poisson);
    let terms = names
        .iter()
        .zip(&irls.beta)
        .zip(diag)
        .map(|((name, &b), d)| {
            let se = (scale * d).sqrt();
            let lo = b - Z_975 * se;
            let hi = b + Z_975 * se;
            let z = b / se;
            Term {
                name: name.clone(),
                coefficient: b,
                std_error: se,
                z,
                p_value: normal_two_sided_p(z),
                ci_low: lo,
                ci_high: hi,
                ratio: ratio.then(|| (b.exp(), lo.exp(), hi.exp())),
            }
        })
        .collect();
    Ok(Fit {
        family,
        terms,
        deviance: last.deviance,
        null_deviance: null_deviance(family, last),
        iterations: irls.iteration,
        n: last.n,
        scale,
    })
}

/// The same IRLS on one process over all rows: the test oracle and the bench baseline.
pub fn fit_pooled(
    family: Family,
    rows: &Rows<'_>,
    names: &[String],
    opts: Options,
) -> Result<Fit, GlmError> {
    check_p(rows.p)?;
    let mut irls = Irls::new(family, rows.p, opts);
    loop {
        let stats = site_stats(family, rows, irls.beta())?;
        if irls.update(&stats)? == Progress::Converged {
            return summarize(family, names, &irls, &stats);
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Differential privacy.

/// Differential privacy for a federated GLM: per-row clipping and discrete Gaussian noise.
///
/// **Clipping** (applied by [`site_stats_clipped`]; the caller may also clamp beforehand):
/// every covariate to `|x_j| ≤ x_bound[j]` (use 1 for the intercept), and per family:
///
/// | family   | outcome            | mean / residual                 | w = ∂μ/∂η ≤ W | abs(y − μ) ≤ R | deviance ≤ D |
/// |----------|--------------------|---------------------------------|---------------|-------------|--------------|
/// | logistic | y ∈ [0, 1]         | μ ∈ (0, 1)                      | 1/4           | 1           | `deviance_bound` |
/// | Poisson  | y ∈ [0, y_bound]   | μ clamped to ≤ y_bound          | y_bound       | y_bound     | `deviance_bound` |
/// | linear   | abs(y) ≤ y_bound   | residual clamped to ±2·y_bound  | 1             | 2·y_bound   | 4·y_bound² (and `deviance_bound`) |
///
/// (The per-row deviance is clamped to `[0, deviance_bound]` in every family.)
///
/// **Sensitivity.** Adding or removing one person changes the released vector
/// `(n, X'WX upper triangle, score, deviance)` by that person's row terms, whose L2 norm is at
/// most
///
/// ```text
/// Δ₂² = 1 + W²·Σ_{j≤k} b_j² b_k² + R²·Σ_j b_j² + D²
/// ```
///
/// with `b = x_bound`. [`noise_stats`] rounds each value to a power-of-two grid `g` (fine enough
/// that σ/g ≈ 2^20), which adds at most `√d` grid units (d values) to the sensitivity, and adds
/// discrete Gaussian noise with σ² = (Δ₂/g + √d)² / (2ρ) grid units: ρ-zCDP per iteration
/// (Canonne–Kamath–Steinke 2020, Theorem 4). With `max_iter` iterations the job spends
/// `max_iter · ρ`; see [`zcdp_rho`] to turn a ledger (ε, δ) into ρ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpGlm {
    /// ρ (zCDP) spent by one iteration's release.
    pub rho_per_iteration: f64,
    /// `|x_j| ≤ x_bound[j]`, one per column (intercept: 1).
    pub x_bound: Vec<f64>,
    /// Outcome bound (Poisson, linear; unused by logistic).
    pub y_bound: f64,
    /// Bound on one row's deviance contribution (default 10 via [`DpGlm::new`]).
    pub deviance_bound: f64,
}

impl DpGlm {
    /// DP parameters for [`standardize`]d columns: every covariate bound 1 (`p` columns,
    /// the intercept included), the default deviance bound.
    pub fn standardized(rho_per_iteration: f64, p: usize, y_bound: f64) -> Self {
        Self::new(rho_per_iteration, vec![1.0; p], y_bound)
    }

    /// DP parameters with the default per-row deviance bound of 10.
    pub fn new(rho_per_iteration: f64, x_bound: Vec<f64>, y_bound: f64) -> Self {
        Self {
            rho_per_iteration,
            x_bound,
            y_bound,
            deviance_bound: 10.0,
        }
    }

    fn check(&self, p: usize) -> Result<(), GlmError> {
        check_p(p)?;
        if self.x_bound.len() != p {
            return Err(GlmError::Shape {
                what: "x_bound",
                expected: p,
                got: self.x_bound.len(),
            });
        }
        let positive = |name: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(GlmError::BadParameter { name, value: v })
            }
        };
        positive("rho_per_iteration", self.rho_per_iteration)?;
        positive("y_bound", self.y_bound)?;
        positive("deviance_bound", self.deviance_bound)?;
        for b in &self.x_bound {
            if !(b.is_finite() && *b >= 0.0) {
                return Err(GlmError::BadParameter {
                    name: "x_bound",
                    value: *b,
                });
            }
        }
        Ok(())
    }

    fn clip(&self) -> Clip<'_> {
        Clip {
            x_bound: &self.x_bound,
            y_bound: self.y_bound,
            deviance_bound: self.deviance_bound,
        }
    }

    /// The L2 sensitivity Δ₂ of one person's contribution (see the type's documentation).
    pub fn sensitivity(&self, family: Family) -> Result<f64, GlmError> {
        self.check(self.x_bound.len())?;
        let (w, r, d) = match family {
            Family::Logistic => (0.25, 1.0, self.deviance_bound),
            Family::Poisson => (self.y_bound, self.y_bound, self.deviance_bound),
            Family::Linear => (
                1.0,
                2.0 * self.y_bound,
                self.deviance_bound.min(4.0 * self.y_bound * self.y_bound),
            ),
        };
        let b2: Vec<f64> = self.x_bound.iter().map(|b| b * b).collect();
        let mut cross = 0.0;
        for (j, bj) in b2.iter().enumerate() {
            for bk in b2.iter().skip(j) {
                cross += bj * bk;
            }
        }
        let lin: f64 = b2.iter().sum();
        Ok((1.0 + w * w * cross + r * r * lin + d * d).sqrt())
    }

    /// The noise's standard deviation, in the statistics' units, as [`noise_stats`] adds it
    /// (slightly above Δ₂/√(2ρ) because of the grid rounding).
    pub fn noise_sd(&self, family: Family) -> Result<f64, GlmError> {
        let plan = self.plan(family)?;
        Ok(plan.grid * (plan.sigma2_grid as f64).sqrt())
    }

    fn plan(&self, family: Family) -> Result<NoisePlan, GlmError> {
        let p = self.x_bound.len();
        let delta = self.sensitivity(family)?;
        let rho = self.rho_per_iteration;
        let sigma = delta / (2.0 * rho).sqrt();
        // g = 2^e with σ/g ≈ 2^20, never finer than the encoding's 2^-32.
        let e = ((sigma.log2().floor() as i32) - 20).clamp(-32, 900);
        let grid = 2f64.powi(e);
        let d = (1 + tri_len(p) + p + 1) as f64;
        let delta_grid = delta / grid + d.sqrt();
        let s2 = (delta_grid * delta_grid / (2.0 * rho)).ceil();
        if !(s2.is_finite() && (1.0..4.0e18).contains(&s2)) {
            return Err(GlmError::BadParameter {
                name: "noise variance",
                value: s2,
            });
        }
        Ok(NoisePlan {
            grid,
            sigma2_grid: s2 as u64,
        })
    }
}

struct NoisePlan {
    grid: f64,
    sigma2_grid: u64,
}

/// Adds discrete Gaussian noise to a site's (clipped) statistics: n, X'WX, score and deviance
/// (see [`DpGlm`]). The null-deviance sums are not released (zeroed). The noisy `n` is rounded
/// and clamped at 0 (post-processing).
pub fn noise_stats<R: CryptoRng>(
    stats: &Stats,
    dp: &DpGlm,
    family: Family,
    rng: &mut R,
) -> Result<Stats, GlmError> {
    check_stats_shape(stats)?;
    dp.check(stats.p)?;
    let plan = dp.plan(family)?;
    let mut noisy = |v: f64, what: &'static str| -> Result<f64, GlmError> {
        if !v.is_finite() {
            return Err(GlmError::NonFinite { what, index: 0 });
        }
        let q = (v / plan.grid).round();
        if q.abs() >= 9.0e15 {
            return Err(GlmError::Overflow { what, value: v });
        }
        let z = sample_discrete_gaussian(rng, plan.sigma2_grid, 1)?;
        Ok((q + z as f64) * plan.grid)
    };
    let mut out = Stats::zero(stats.p);
    let n = noisy(stats.n as f64, "n")?;
    out.n = n.round().max(0.0) as u64;
    for (o, v) in out.xtwx.iter_mut().zip(&stats.xtwx) {
        *o = noisy(*v, "xtwx")?;
    }
    for (o, v) in out.score.iter_mut().zip(&stats.score) {
        *o = noisy(*v, "score")?;
    }
    out.deviance = noisy(stats.deviance, "deviance")?;
    Ok(out)
}

/// The design matrix of a private fit, standardized by the covariates' bounds: each
/// `x_j` clamped to `±bound[j]` and divided by it (a column of bound 0 is 0), so every column
/// lies in `[-1, 1]`. With one σ for the whole released vector, the noise is driven by the
/// largest bound (Δ₂ grows like `max b_j²`): on the raw scale, a covariate bounded by a hundred
/// (an age, a lab value) swamps the score and the deviance in noise meant for `X'WX`; on the
/// standardized scale every block of the vector has a sensitivity of the same order. Fit on
/// these rows with [`DpGlm`] bounds of 1 ([`DpGlm::standardized`]) and map the fit back with
/// [`unscale`]. (An L2 penalty then applies to the standardized coefficients.)
pub fn standardize(x: &[f64], p: usize, bound: &[f64]) -> Result<Vec<f64>, GlmError> {
    check_p(p)?;
    if bound.len() != p {
        return Err(GlmError::Shape {
            what: "bound",
            expected: p,
            got: bound.len(),
        });
    }
    if !x.len().is_multiple_of(p) {
        return Err(GlmError::Shape {
            what: "x",
            expected: p,
            got: x.len() % p,
        });
    }
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(p) {
        for (v, b) in row.iter().zip(bound) {
            if !(b.is_finite() && *b >= 0.0) {
                return Err(GlmError::BadParameter {
                    name: "bound",
                    value: *b,
                });
            }
            out.push(if *b > 0.0 { v.clamp(-b, *b) / b } else { 0.0 });
        }
    }
    Ok(out)
}

/// A fit on [`standardize`]d columns, on the original scale: `β_j = β'_j / b_j` and likewise
/// its standard error and interval (z and p are scale-free), ratios recomputed. A column of
/// bound 0 keeps its (zero) coefficient.
pub fn unscale(mut fit: Fit, bound: &[f64]) -> Fit {
    for (t, b) in fit.terms.iter_mut().zip(bound) {
        if *b > 0.0 {
            t.coefficient /= b;
            t.std_error /= b;
            t.ci_low /= b;
            t.ci_high /= b;
            if let Some(r) = t.ratio.as_mut() {
                *r = (t.coefficient.exp(), t.ci_low.exp(), t.ci_high.exp());
            }
        }
    }
    fit
}

/// ε of (ε, δ)-DP implied by ρ-zCDP: ε = ρ + 2·√(ρ·ln(1/δ)) (Bun–Steinke 2016, Prop. 1.3).
/// NaN for ρ < 0 or δ outside (0, 1).
pub fn zcdp_epsilon(rho: f64, delta: f64) -> f64 {
    if !(rho >= 0.0 && delta > 0.0 && delta < 1.0) {
        return f64::NAN;
    }
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// The inverse of [`zcdp_epsilon`]: the largest ρ whose conversion gives at most ε,
/// ρ = (√(L + ε) − √L)² with L = ln(1/δ). NaN for ε < 0 or δ outside (0, 1).
pub fn zcdp_rho(epsilon: f64, delta: f64) -> f64 {
    if !(epsilon >= 0.0 && delta > 0.0 && delta < 1.0) {
        return f64::NAN;
    }
    let l = (1.0 / delta).ln();
    let s = (l + epsilon).sqrt() - l.sqrt();
    s * s
}

#[cfg(test)]
mod tests;
