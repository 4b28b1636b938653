use super::eval::{Scenario, simulate};
use super::*;
use proptest::prelude::*;

fn some(values: &[f64]) -> Vec<Option<f64>> {
    values.iter().copied().map(Some).collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn c1_by_hand() {
    // Baseline days 0..=6: 10 12 11 13 9 10 12, sum 77, mean 11; deviations −1 1 0 2 −2 −1 1,
    // squares sum 12, variance 12/6 = 2, sd √2. Day 7: z = (20 − 11)/√2 = 6.3640,
    // threshold 11 + 3√2 = 15.2426.
    let series = some(&[10.0, 12.0, 11.0, 13.0, 9.0, 10.0, 12.0, 20.0]);
    let points = detect(Method::C1, &series, &Params::default()).unwrap();
    assert_eq!(points.len(), 1, "only day 7 has a 7-day baseline");
    let p = &points[0];
    assert_eq!(p.day, 7);
    assert!(close(p.expected, 11.0, 1e-12));
    assert!(close(p.score, 9.0 / 2f64.sqrt(), 1e-12));
    assert!(close(p.score, 6.363961030678928, 1e-12));
    assert!(close(p.threshold, 15.242640687119286, 1e-12));
    assert!(p.alert);
}

#[test]
fn c2_skips_the_guard_band() {
    // Day 9's C2 baseline is days 0..=6 (mean 11, sd √2); the guard days 7 and 8 (30, 30) are
    // left out: z = (14 − 11)/√2 = 2.1213, no alert. C1 on day 9 would see the 30s.
    let series = some(&[10.0, 12.0, 11.0, 13.0, 9.0, 10.0, 12.0, 30.0, 30.0, 14.0]);
    let points = detect(Method::C2, &series, &Params::default()).unwrap();
    assert_eq!(points.len(), 1);
    let p = &points[0];
    assert_eq!(p.day, 9);
    assert!(close(p.expected, 11.0, 1e-12));
    assert!(close(p.score, 3.0 / 2f64.sqrt(), 1e-12));
    assert!(!p.alert);
    let c1 = detect(Method::C1, &series, &Params::default()).unwrap();
    let c1_day9 = c1.iter().find(|p| p.day == 9).unwrap();
    assert!(c1_day9.expected > 15.0);
}

/// Days 0..=8 alternate 10, 12 (starting at 10); then three more days.
fn c3_series(last3: [f64; 3]) -> Vec<Option<f64>> {
    let mut v: Vec<f64> = (0..9)
        .map(|d| if d % 2 == 0 { 10.0 } else { 12.0 })
        .collect();
    v.extend(last3);
    some(&v)
}

#[test]
fn c3_by_hand() {
    // C2 baselines: day 9 ← days 0..=6 (10,12,10,12,10,12,10): mean 76/7 = 10.857142857,
    // squares 4·(6/7)² + 3·(8/7)² = 48/7, variance 8/7, sd 1.069044968;
    // day 10 ← days 1..=7 (12,10,…,12): mean 78/7, same sd; day 11 ← days 2..=8: as day 9.
    // z9 = (14 − 76/7)/sd = 2.939873661, z10 = (15 − 78/7)/sd = 3.608026766,
    // z11 = (16 − 76/7)/sd = 4.810702354.
    // C3(11) = 1.939873661 + 2.608026766 + 3.810702354 = 8.358602781 > 2.
    let points = detect(
        Method::C3,
        &c3_series([14.0, 15.0, 16.0]),
        &Params::default(),
    )
    .unwrap();
    assert_eq!(points.len(), 1, "day 11 is the first C3 day");
    let p = &points[0];
    assert_eq!(p.day, 11);
    assert!(close(p.score, 8.358602781278035, 1e-12));
    assert!(close(p.expected, 76.0 / 7.0, 1e-12));
    assert!(p.alert);
    // The two previous terms alone (4.548) exceed 2: any count alerts.
    assert_eq!(p.threshold, f64::NEG_INFINITY);

    // Quiet days 9 and 10 (z below 1: terms 0): C3(11) = z11 − 1 = 3.810702354, and the
    // threshold is mean + sd·(1 + 2 − 0) = 10.857142857 + 3·1.069044968 = 14.064277760.
    let points = detect(
        Method::C3,
        &c3_series([10.0, 11.0, 16.0]),
        &Params::default(),
    )
    .unwrap();
    let p = &points[0];
    assert!(close(p.score, 3.810702354423638, 1e-12));
    assert!(close(p.threshold, 14.06427776009195, 1e-12));
    assert!(p.alert && p.observed > p.threshold);
}

#[test]
fn a_missing_baseline_day_is_left_out() {
    // Day 3 missing: baseline of day 7 = 10 12 11 9 10 12, mean 64/6 = 10.6667,
    // squares (0.4444 + 1.7778 + 0.1111 + 2.7778 + 0.4444 + 1.7778) = 7.3333, var 1.4667.
    let mut series = some(&[10.0, 12.0, 11.0, 13.0, 9.0, 10.0, 12.0, 20.0]);
    series[3] = None;
    let p = detect(Method::C1, &series, &Params::default()).unwrap()[0].clone();
    assert!(close(p.expected, 64.0 / 6.0, 1e-12));
    assert!(close(
        p.score,
        (20.0 - 64.0 / 6.0) / (22.0f64 / 15.0).sqrt(),
        1e-12
    ));
    // Fewer than min_baseline (4) present days: no point.
    let mut sparse = series.clone();
    for d in [0, 1, 2, 4] {
        sparse[d] = None;
    }
    assert!(
        detect(Method::C1, &sparse, &Params::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_flat_series_never_alerts() {
    let series = some(&[5.0; 120]);
    for method in Method::ALL {
        let points = detect(method, &series, &Params::default()).unwrap();
        assert!(!points.is_empty(), "{method}");
        assert!(points.iter().all(|p| !p.alert), "{method}");
    }
    // The sd floor: a flat baseline gives z = (x − 5)/0.2.
    let mut bump = series.clone();
    bump[50] = Some(5.5);
    let p = detect(Method::C1, &bump, &Params::default()).unwrap();
    let p50 = p.iter().find(|p| p.day == 50).unwrap();
    assert!(close(p50.score, 2.5, 1e-12) && !p50.alert);
}

#[test]
fn a_spike_alerts_on_its_day_and_not_before() {
    let mut values: Vec<f64> = (0..40).map(|d| 10.0 + (d % 3) as f64).collect();
    values[30] = 25.0;
    let points = detect(Method::C1, &some(&values), &Params::default()).unwrap();
    let alerts: Vec<usize> = points.iter().filter(|p| p.alert).map(|p| p.day).collect();
    assert_eq!(alerts.first(), Some(&30));
    assert!(points.iter().all(|p| p.day >= 7));
}

#[test]
fn a_missing_day_never_alerts() {
    let mut series = some(&[10.0; 200]);
    for d in (0..200).step_by(3) {
        series[d] = Some(11.0);
    }
    series[150] = None;
    series[151] = Some(40.0);
    for method in Method::ALL {
        let points = detect(method, &series, &Params::default()).unwrap();
        assert!(points.iter().all(|p| p.day != 150), "{method}");
        assert!(
            points.iter().all(|p| series[p.day] == Some(p.observed)),
            "{method}"
        );
        assert!(points.iter().any(|p| p.day == 151 && p.alert), "{method}");
    }
}

fn known_beta() -> Vec<f64> {
    // intercept, trend, sin1, cos1, sin2, cos2, dow1..dow6
    vec![
        10f64.ln(),
        0.1,
        0.3,
        -0.2,
        0.05,
        0.1,
        0.1,
        0.05,
        0.0,
        -0.02,
        -0.15,
        -0.2,
    ]
}

#[test]
fn the_seasonal_fit_recovers_known_coefficients() {
    // A noise-free series y = exp(xβ): the Poisson MLE is β itself, X² = 0, φ = 1.
    let t = 399;
    let design = Design {
        origin: t,
        trend: true,
        harmonics: 2,
        day_of_week: true,
    };
    let beta = known_beta();
    let series: Vec<Option<f64>> = (0..t).map(|d| Some(design.eta(d, &beta).exp())).collect();
    let fit = fit_seasonal(&series, t, &SeasonalParams::default())
        .unwrap()
        .unwrap();
    assert_eq!(fit.design, design);
    assert_eq!(fit.days, (27..392).collect::<Vec<_>>());
    for (name, (got, want)) in design
        .names()
        .iter()
        .zip(fit.coefficients.iter().zip(&beta))
    {
        assert!((got - want).abs() <= 1e-6, "{name}: {got} vs {want}");
    }
    assert!(fit.pearson_chi2 < 1e-12);
    assert_eq!(fit.dispersion, 1.0);
    assert!(close(fit.mean(t), design.eta(t, &beta).exp(), 1e-8));
}

#[test]
fn detect_equals_a_cold_fit_per_day() {
    // detect warm-starts each day from the last fit and measures the trend from the first day
    // of the call; the fitted means must equal independent cold fits.
    let sim = simulate(7, &Scenario::default()).unwrap();
    let series = sim.as_series();
    let params = Params::default();
    let points = detect_days(Method::Seasonal, &series, 600..620, &params).unwrap();
    assert_eq!(points.len(), 20);
    for p in &points {
        let fit = fit_seasonal(&series, p.day, &params.seasonal)
            .unwrap()
            .unwrap();
        assert!(close(p.expected, fit.mean(p.day), 1e-8), "day {}", p.day);
        let phi = fit.dispersion;
        assert_eq!(p.threshold, upper_quantile(fit.mean(p.day), phi, 0.01));
    }
}

#[test]
fn detect_over_a_long_series_moves_the_trend_origin() {
    let s = Scenario {
        days: 1000,
        outbreak_start: 900,
        ..Scenario::default()
    };
    let series = simulate(8, &s).unwrap().as_series();
    let params = Params::default();
    let points = detect(Method::Seasonal, &series, &params).unwrap();
    assert_eq!(points.first().unwrap().day, 63);
    assert_eq!(points.len(), 1000 - 63);
    for day in [63, 200, 372, 730, 731, 999] {
        let p = points.iter().find(|p| p.day == day).unwrap();
        let fit = fit_seasonal(&series, day, &params.seasonal)
            .unwrap()
            .unwrap();
        assert!(close(p.expected, fit.mean(day), 1e-8), "day {day}");
    }
}

#[test]
fn short_history_drops_the_annual_terms() {
    let series = some(&[7.0; 100]);
    let fit = fit_seasonal(&series, 99, &SeasonalParams::default())
        .unwrap()
        .unwrap();
    assert_eq!(fit.design.harmonics, 0);
    assert_eq!(fit.coefficients.len(), 8);
    assert!(close(fit.mean(99), 7.0, 1e-8));
    // Too little history: no fit, no point.
    assert!(
        fit_seasonal(&series[..60], 60, &SeasonalParams::default())
            .unwrap()
            .is_none()
    );
    // All zero: no fit, but a point with expected 0 and threshold 0.
    let mut zeros = some(&[0.0; 100]);
    zeros[99] = Some(1.0);
    let points = detect(Method::Seasonal, &zeros, &Params::default()).unwrap();
    let last = points.last().unwrap();
    assert_eq!((last.day, last.expected, last.threshold), (99, 0.0, 0.0));
    assert!(last.alert);
}

#[test]
fn quantiles_match_scipy() {
    // scipy.stats: poisson.ppf(0.99, 10) = 18; nbinom.ppf(0.99, 20, 2/3) = 20 (mean 10, var 15);
    // nbinom.ppf(0.999, 0.25, 1/3) = 11 (mean 0.5, φ 3); poisson.ppf(0.99, 0.3) = 2;
    // nbinom.ppf(0.99, 1000/1.5, 0.4) = 1119 (mean 1000, φ 2.5).
    assert_eq!(upper_quantile(10.0, 1.0, 0.01), 18.0);
    assert_eq!(upper_quantile(10.0, 1.5, 0.01), 20.0);
    assert_eq!(upper_quantile(0.5, 3.0, 0.001), 11.0);
    assert_eq!(upper_quantile(0.3, 1.0, 0.01), 2.0);
    assert_eq!(upper_quantile(1000.0, 2.5, 0.01), 1119.0);
    assert_eq!(upper_quantile(0.0, 2.0, 0.01), 0.0);
    // Cornish–Fisher beyond the exact range: poisson.ppf(0.99, 1e6) = 1002327,
    // nbinom.ppf(0.99, 2e6, 1/1.5) = 1002851.
    assert!((upper_quantile(1e6, 1.0, 0.01) - 1_002_327.0).abs() <= 1.0);
    assert!((upper_quantile(1e6, 1.5, 0.01) - 1_002_851.0).abs() <= 1.0);
    assert!(close(normal_quantile(0.99), 2.3263478740408408, 1e-14));
    assert!(close(normal_quantile(1e-10), -6.361340902404056, 1e-13));
}

#[test]
fn bad_parameters_and_series_are_typed_errors() {
    let series = some(&[1.0; 20]);
    let bad = |f: fn(&mut Params)| {
        let mut p = Params::default();
        f(&mut p);
        detect(Method::C1, &series, &p).unwrap_err()
    };
    let field = |field| AberrationError::BadParam { field };
    assert_eq!(bad(|p| p.ears.threshold = 0.0), field("threshold"));
    assert_eq!(bad(|p| p.ears.threshold = -1.0), field("threshold"));
    assert_eq!(bad(|p| p.ears.threshold = f64::NAN), field("threshold"));
    assert_eq!(bad(|p| p.ears.c3_threshold = 0.0), field("c3_threshold"));
    assert_eq!(bad(|p| p.ears.min_sd = 0.0), field("min_sd"));
    assert_eq!(bad(|p| p.ears.baseline = 1), field("baseline"));
    assert_eq!(bad(|p| p.ears.min_baseline = 8), field("min_baseline"));
    assert_eq!(bad(|p| p.seasonal.alpha = 0.0), field("alpha"));
    assert_eq!(bad(|p| p.seasonal.alpha = 1.0), field("alpha"));
    assert_eq!(bad(|p| p.seasonal.alpha = f64::NAN), field("alpha"));
    assert_eq!(bad(|p| p.seasonal.harmonics = 7), field("harmonics"));
    assert_eq!(bad(|p| p.seasonal.min_history = 12), field("min_history"));
    assert_eq!(
        detect(Method::C1, &[], &Params::default()).unwrap_err(),
        AberrationError::EmptySeries
    );
    let mut nan = series.clone();
    nan[4] = Some(f64::NAN);
    assert_eq!(
        detect(Method::Seasonal, &nan, &Params::default()).unwrap_err(),
        AberrationError::BadValue { day: 4 }
    );
    let mut huge = series;
    huge[2] = Some(-1e13);
    assert_eq!(
        detect(Method::C3, &huge, &Params::default()).unwrap_err(),
        AberrationError::BadValue { day: 2 }
    );
    let s = Scenario {
        dispersion: 0.5,
        ..Scenario::default()
    };
    assert_eq!(
        simulate(1, &s).unwrap_err(),
        AberrationError::BadScenario {
            field: "dispersion"
        }
    );
}

#[test]
fn names_and_serde() {
    assert_eq!(
        Method::ALL.map(Method::as_str),
        ["c1", "c2", "c3", "seasonal"]
    );
    for m in Method::ALL {
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            format!("\"{}\"", m.as_str())
        );
        assert_eq!(
            serde_json::from_str::<Method>(&format!("\"{m}\"")).unwrap(),
            m
        );
    }
    let p: Params = serde_json::from_str(r#"{"seasonal": {"alpha": 0.001}}"#).unwrap();
    assert_eq!(p.seasonal.alpha, 0.001);
    assert_eq!(p.ears, EarsParams::default());
    assert!(serde_json::from_str::<Params>(r#"{"ears": {"treshold": 2}}"#).is_err());
}

#[test]
fn the_simulation_is_deterministic_and_has_its_moments() {
    let s = Scenario {
        seasonal_amplitude: 0.0,
        weekly_effect: false,
        outbreak_size: 0.0,
        days: 20_000,
        evaluate_from: 0,
        ..Scenario::default()
    };
    let a = simulate(3, &s).unwrap();
    assert_eq!(a, simulate(3, &s).unwrap());
    assert_ne!(a.series, simulate(4, &s).unwrap().series);
    let n = a.series.len() as f64;
    let mean = a.series.iter().sum::<f64>() / n;
    let var = a.series.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    // Mean 10 (se 0.03), variance 15 (se about 0.17).
    assert!((mean - 10.0).abs() < 0.15, "{mean}");
    assert!((var - 15.0).abs() < 1.0, "{var}");
    // Discrete Laplace noise of scale 1/ε = 2 adds variance 2e^(-1/2)/(1 − e^(-1/2))² = 7.83.
    let noisy = simulate(
        3,
        &Scenario {
            dp_epsilon: Some(0.5),
            ..s.clone()
        },
    )
    .unwrap();
    let diff: Vec<f64> = noisy
        .series
        .iter()
        .zip(&a.series)
        .map(|(x, y)| x - y)
        .collect();
    assert!(diff.iter().all(|d| d.fract() == 0.0));
    // Same seed, but the noise draws shift the stream: compare variances only.
    let nmean = noisy.series.iter().sum::<f64>() / n;
    let nvar = noisy
        .series
        .iter()
        .map(|v| (v - nmean).powi(2))
        .sum::<f64>()
        / (n - 1.0);
    assert!((nvar - 22.83).abs() < 1.5, "{nvar}");
}

#[test]
fn the_outbreak_adds_its_size() {
    let base = Scenario {
        outbreak_size: 0.0,
        ..Scenario::default()
    };
    let big = Scenario {
        outbreak_size: 5000.0,
        ..Scenario::default()
    };
    let (a, b) = (simulate(9, &base).unwrap(), simulate(9, &big).unwrap());
    let window = base.outbreak();
    let extra: f64 = window.clone().map(|d| b.series[d] - a.series[d]).sum();
    // The draws after the first outbreak day differ (the outbreak's Poisson draws shift the
    // stream), so compare roughly: 5000 extra cases against a window total near 100.
    assert!((extra - 5000.0).abs() < 400.0, "{extra}");
    assert_eq!(b.outbreak, 660..670);
}

/// Mostly accepted values (counts, noisy negatives, extremes up to ±1e12), rarely a refused one
/// (any f64: NaN, ±∞, beyond 1e12).
fn series_strategy() -> impl Strategy<Value = Vec<Option<f64>>> {
    let value = prop_oneof![
        400 => (0u32..40).prop_map(f64::from),
        200 => -5.0f64..60.0,
        100 => Just(0.0),
        20 => -1e12f64..1e12,
        1 => prop::num::f64::ANY,
    ];
    prop::collection::vec(prop::option::weighted(0.85, value), 0..140)
}

fn small_params() -> Params {
    Params {
        ears: EarsParams {
            baseline: 4,
            min_baseline: 2,
            guard: 1,
            ..EarsParams::default()
        },
        seasonal: SeasonalParams {
            history: 40,
            guard: 2,
            min_history: 14,
            harmonics: 1,
            annual_min_span: 30,
            ..SeasonalParams::default()
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn detect_never_panics(series in series_strategy()) {
        let valid = check_series(&series).is_ok();
        for params in [Params::default(), small_params()] {
            for method in Method::ALL {
                match detect(method, &series, &params) {
                    Err(e) => prop_assert!(!valid, "{e}"),
                    Ok(points) => {
                        let mut last = None;
                        for p in points {
                            prop_assert!(last < Some(p.day));
                            last = Some(p.day);
                            prop_assert_eq!(series.get(p.day).copied().flatten(), Some(p.observed));
                            prop_assert!(p.expected.is_finite() && p.score.is_finite());
                            prop_assert!(
                                p.threshold.is_finite()
                                    || (method == Method::C3 && p.threshold == f64::NEG_INFINITY)
                            );
                        }
                    }
                }
            }
        }
    }
}
