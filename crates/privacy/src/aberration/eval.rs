//! The detectors on simulated daily series with a known outbreak: sensitivity, false alerts per
//! year and time to detection, over many seeds.
//!
//! **Simulation** ([`simulate`]), everything drawn from one `ChaCha20Rng` seeded by the seed:
//! - the expected count of day `t` is `baseline · (1 + seasonal_amplitude·cos(2πt/365.25)) · w`,
//!   with `w` the weekday factor `[1.2, 1.1, 1.0, 1.0, 1.0, 0.85, 0.85]` of `t mod 7` (mean 1; all
//!   1 without `weekly_effect`), so the yearly mean is `baseline`;
//! - the count is negative binomial with that mean `m` and variance `dispersion·m`, drawn as a
//!   gamma–Poisson mixture (Marsaglia–Tsang gamma with shape `m/(dispersion − 1)`, then Poisson);
//!   Poisson when `dispersion = 1`. Poisson draws are by inversion (sequential search from 0) in
//!   pieces of mean at most 500, whose sum is Poisson with the whole mean;
//! - the outbreak adds, on day `outbreak_start + i` (`i < outbreak_days`), a Poisson number of
//!   cases with mean `outbreak_size·(F(i + 1) − F(i))/F(outbreak_days)`, where `F` is the
//!   log-normal distribution function with median `outbreak_days/2` and σ = 0.5 (an epidemic
//!   curve rising then falling within the window, as the log-normal outbreaks of Noufaily et al.
//!   2013);
//! - with `dp_epsilon`, each day's released count gets discrete Laplace noise of scale
//!   `dp_sensitivity/ε` ([`crate::dp::sample_discrete_laplace`]; ε is rounded to 6 decimals to make
//!   the scale rational: `sensitivity·10⁶ / round(ε·10⁶)`).
//!
//! **Figures** ([`evaluate`]): only the days `evaluate_from..days` are evaluated (the days before
//! are history: the seasonal method needs a year of it). Per method, the *sensitivity* is the
//! share of seeds with at least one alert inside the outbreak; *false alerts per year* are the
//! alerts outside the outbreak per 365 evaluated days outside it (a day is evaluated when the
//! method returns a point for it); the *median days to detection* is the median over the detected
//! seeds of the first alert's day minus the outbreak's start.

use std::ops::Range;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{AberrationError, MAX_DAYS, Method, Params, YEAR, detect_days};
use crate::dp::sample_discrete_laplace;

/// Weekday factors (mean 1), Monday-like first.
const WEEKLY: [f64; 7] = [1.2, 1.1, 1.0, 1.0, 1.0, 0.85, 0.85];
/// The log-normal epidemic curve's σ.
const OUTBREAK_SIGMA: f64 = 0.5;
/// Largest mean of one inversion piece of a Poisson draw (`exp(−500)` is far from underflow).
const POISSON_PIECE: f64 = 500.0;
/// ε's rounding unit for the rational noise scale.
const EPSILON_UNIT: f64 = 1e6;

/// A simulated surveillance series with an outbreak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Days simulated (730).
    pub days: usize,
    /// Mean daily count over a year (10).
    pub baseline: f64,
    /// Relative amplitude of the annual cycle, in [0, 1) (0.4).
    pub seasonal_amplitude: f64,
    /// Weekday factors (on).
    pub weekly_effect: bool,
    /// Variance over mean of the daily count, ≥ 1 (1.5; 1 is Poisson).
    pub dispersion: f64,
    /// First outbreak day (660, in the last 90 days).
    pub outbreak_start: usize,
    /// Outbreak length in days (10).
    pub outbreak_days: usize,
    /// Expected extra cases over the whole outbreak (60: 6 days' worth of baseline).
    pub outbreak_size: f64,
    /// DP noise on every day's count (none).
    pub dp_epsilon: Option<f64>,
    /// The noise's sensitivity (1: one person counts once per day).
    pub dp_sensitivity: u32,
    /// First evaluated day (365: one year of history before it).
    pub evaluate_from: usize,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            days: 730,
            baseline: 10.0,
            seasonal_amplitude: 0.4,
            weekly_effect: true,
            dispersion: 1.5,
            outbreak_start: 660,
            outbreak_days: 10,
            outbreak_size: 60.0,
            dp_epsilon: None,
            dp_sensitivity: 1,
            evaluate_from: 365,
        }
    }
}

impl Scenario {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), AberrationError> {
        let check = |ok: bool, field: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(AberrationError::BadScenario { field })
            }
        };
        check((1..=MAX_DAYS).contains(&self.days), "days")?;
        check(
            self.baseline.is_finite() && self.baseline > 0.0 && self.baseline <= 1e5,
            "baseline",
        )?;
        check(
            (0.0..1.0).contains(&self.seasonal_amplitude),
            "seasonal_amplitude",
        )?;
        check(
            self.dispersion.is_finite() && (1.0..=100.0).contains(&self.dispersion),
            "dispersion",
        )?;
        check(
            self.outbreak_days >= 1 && self.outbreak_days <= self.days,
            "outbreak_days",
        )?;
        check(
            self.outbreak_start <= self.days - self.outbreak_days,
            "outbreak_start",
        )?;
        check(
            self.outbreak_size.is_finite() && (0.0..=1e7).contains(&self.outbreak_size),
            "outbreak_size",
        )?;
        if let Some(eps) = self.dp_epsilon {
            check(
                eps.is_finite() && (1.0 / EPSILON_UNIT..=EPSILON_UNIT).contains(&eps),
                "dp_epsilon",
            )?;
            check(self.dp_sensitivity >= 1, "dp_sensitivity")?;
        }
        check(self.evaluate_from < self.days, "evaluate_from")
    }

    /// The outbreak's days.
    pub fn outbreak(&self) -> Range<usize> {
        self.outbreak_start..self.outbreak_start + self.outbreak_days
    }
}

/// A simulated series.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulated {
    /// The released count of every day (noisy with DP).
    pub series: Vec<f64>,
    /// The outbreak's days.
    pub outbreak: Range<usize>,
}

impl Simulated {
    /// The series as the detectors take it (no missing day).
    pub fn as_series(&self) -> Vec<Option<f64>> {
        self.series.iter().copied().map(Some).collect()
    }
}

/// Uniform in (0, 1): 53 random bits, centred in their cell.
fn uniform(rng: &mut ChaCha20Rng) -> f64 {
    ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Standard normal (Box–Muller, one value per call).
fn normal(rng: &mut ChaCha20Rng) -> f64 {
    let u = uniform(rng);
    let v = uniform(rng);
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Gamma with the given shape and scale 1: Marsaglia & Tsang, *ACM TOMS* 2000;26:363–372, with
/// the `U^(1/a)` boost for shapes below 1.
fn gamma(rng: &mut ChaCha20Rng, shape: f64) -> f64 {
    if !(shape > 0.0 && shape.is_finite()) {
        return 0.0;
    }
    let (a, boost) = if shape < 1.0 {
        (shape + 1.0, uniform(rng).powf(1.0 / shape))
    } else {
        (shape, 1.0)
    };
    let d = a - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    // Acceptance is above 95 % per round; the bound only guards termination.
    for _ in 0..10_000 {
        let x = normal(rng);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = uniform(rng);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v * boost;
        }
    }
    d * boost
}

/// Poisson with mean `lambda`, by inversion in pieces of mean at most [`POISSON_PIECE`].
fn poisson(rng: &mut ChaCha20Rng, lambda: f64) -> f64 {
    if !(lambda > 0.0 && lambda.is_finite()) {
        return 0.0;
    }
    let mut left = lambda;
    let mut total = 0.0;
    while left > 0.0 {
        let piece = left.min(POISSON_PIECE);
        left -= piece;
        let u = uniform(rng);
        let mut p = (-piece).exp();
        let mut cdf = p;
        let mut k = 0.0;
        let cap = piece + 40.0 * piece.sqrt() + 40.0;
        while u > cdf && k < cap {
            k += 1.0;
            p *= piece / k;
            cdf += p;
        }
        total += k;
    }
    total
}

/// Negative binomial with mean `mean` and variance `dispersion·mean` (Poisson at 1).
fn negative_binomial(rng: &mut ChaCha20Rng, mean: f64, dispersion: f64) -> f64 {
    if dispersion <= 1.0 {
        return poisson(rng, mean);
    }
    let extra = dispersion - 1.0;
    let lambda = gamma(rng, mean / extra) * extra;
    poisson(rng, lambda)
}

/// The share of the outbreak's cases on each of its days.
fn outbreak_shares(days: usize) -> Vec<f64> {
    let median = days as f64 / 2.0;
    let cdf = |u: f64| {
        if u <= 0.0 {
            0.0
        } else {
            0.5 * libm::erfc(-(u / median).ln() / (OUTBREAK_SIGMA * std::f64::consts::SQRT_2))
        }
    };
    let total = cdf(days as f64);
    (0..days)
        .map(|i| (cdf(i as f64 + 1.0) - cdf(i as f64)) / total)
        .collect()
}

/// Simulates one series (see the module docs).
pub fn simulate(seed: u64, s: &Scenario) -> Result<Simulated, AberrationError> {
    s.validate()?;
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let shares = outbreak_shares(s.outbreak_days);
    let outbreak = s.outbreak();
    let noise_scale = s.dp_epsilon.map(|eps| {
        (
            u64::from(s.dp_sensitivity) * EPSILON_UNIT as u64,
            (eps * EPSILON_UNIT).round() as u64,
        )
    });
    let mut series = Vec::with_capacity(s.days);
    for t in 0..s.days {
        let season = 1.0 + s.seasonal_amplitude * (std::f64::consts::TAU * t as f64 / YEAR).cos();
        let weekday = if s.weekly_effect {
            WEEKLY.get(t % 7).copied().unwrap_or(1.0)
        } else {
            1.0
        };
        let mut count = negative_binomial(&mut rng, s.baseline * season * weekday, s.dispersion);
        if let Some(share) = t
            .checked_sub(outbreak.start)
            .and_then(|i| shares.get(i))
            .filter(|_| outbreak.contains(&t))
        {
            count += poisson(&mut rng, s.outbreak_size * share);
        }
        if let Some((num, den)) = noise_scale {
            count += sample_discrete_laplace(&mut rng, num, den)? as f64;
        }
        series.push(count);
    }
    Ok(Simulated { series, outbreak })
}

/// One method's figures over many seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodFigures {
    /// The method.
    pub method: Method,
    /// Seeds run.
    pub seeds: usize,
    /// Seeds with at least one alert inside the outbreak.
    pub detected: usize,
    /// `detected / seeds`.
    pub sensitivity: f64,
    /// Alerts on evaluated days outside the outbreak, over all seeds.
    pub false_alerts: usize,
    /// Evaluated days outside the outbreak, over all seeds.
    pub evaluated_days: usize,
    /// `365 · false_alerts / evaluated_days`.
    pub false_alerts_per_year: f64,
    /// Median over the detected seeds of the first alert's day minus the outbreak's start.
    pub median_days_to_detection: Option<f64>,
}

#[derive(Default)]
struct Tally {
    detected: usize,
    false_alerts: usize,
    evaluated_days: usize,
    delays: Vec<f64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.detected += other.detected;
        self.false_alerts += other.false_alerts;
        self.evaluated_days += other.evaluated_days;
        self.delays.extend(other.delays);
    }
}

/// Adds one seed's series to every method's tally.
fn run_seed(
    seed: u64,
    s: &Scenario,
    params: &Params,
    tallies: &mut [Tally],
) -> Result<(), AberrationError> {
    let sim = simulate(seed, s)?;
    let series = sim.as_series();
    for (&method, tally) in Method::ALL.iter().zip(tallies.iter_mut()) {
        let points = detect_days(method, &series, s.evaluate_from..s.days, params)?;
        let mut first: Option<usize> = None;
        for p in &points {
            if sim.outbreak.contains(&p.day) {
                if p.alert && first.is_none() {
                    first = Some(p.day);
                }
            } else {
                tally.evaluated_days += 1;
                tally.false_alerts += usize::from(p.alert);
            }
        }
        if let Some(day) = first {
            tally.detected += 1;
            tally.delays.push((day - sim.outbreak.start) as f64);
        }
    }
    Ok(())
}

/// Runs every method on the series of every seed (see the module docs), on as many threads as
/// the machine has cores (at most 8); the figures do not depend on the number of threads.
pub fn evaluate(
    seeds: Range<u64>,
    s: &Scenario,
    params: &Params,
) -> Result<Vec<MethodFigures>, AberrationError> {
    s.validate()?;
    params.validate()?;
    let new_tallies = || -> Vec<Tally> { Method::ALL.iter().map(|_| Tally::default()).collect() };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let n_seeds = usize::try_from(seeds.end.saturating_sub(seeds.start)).unwrap_or(usize::MAX);
    let mut tallies = new_tallies();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|worker| {
                let seeds = seeds.clone();
                scope.spawn(move || -> Result<Vec<Tally>, AberrationError> {
                    let mut mine = new_tallies();
                    for seed in seeds.skip(worker).step_by(workers) {
                        run_seed(seed, s, params, &mut mine)?;
                    }
                    Ok(mine)
                })
            })
            .collect();
        for handle in handles {
            let theirs = handle.join().map_err(|_| AberrationError::Worker)??;
            for (t, o) in tallies.iter_mut().zip(theirs) {
                t.merge(o);
            }
        }
        Ok::<(), AberrationError>(())
    })?;
    Ok(Method::ALL
        .iter()
        .zip(tallies)
        .map(|(&method, mut t)| {
            t.delays.sort_by(f64::total_cmp);
            let mid = t.delays.len() / 2;
            let median = if t.delays.len() % 2 == 1 {
                t.delays.get(mid).copied()
            } else {
                mid.checked_sub(1)
                    .and_then(|lo| Some((t.delays.get(lo)? + t.delays.get(mid)?) / 2.0))
            };
            MethodFigures {
                method,
                seeds: n_seeds,
                detected: t.detected,
                sensitivity: if n_seeds == 0 {
                    0.0
                } else {
                    t.detected as f64 / n_seeds as f64
                },
                false_alerts: t.false_alerts,
                evaluated_days: t.evaluated_days,
                false_alerts_per_year: if t.evaluated_days == 0 {
                    0.0
                } else {
                    365.0 * t.false_alerts as f64 / t.evaluated_days as f64
                },
                median_days_to_detection: median,
            }
        })
        .collect())
}
