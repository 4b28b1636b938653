use super::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

fn unif(r: &mut ChaCha20Rng) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn normal(r: &mut ChaCha20Rng) -> f64 {
    let u = unif(r).max(1e-300);
    let v = unif(r);
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

struct Data {
    x: Vec<f64>,
    y: Vec<f64>,
    off: Vec<f64>,
}

const P: usize = 5;

/// Rows: intercept, N(0,1), binary, N(50, 10)/10 scaled, uniform(0, 1000)/1000.
fn data(family: Family, n: usize, seed: u64) -> Data {
    let mut r = ChaCha20Rng::seed_from_u64(seed);
    let beta = [-0.5, 0.8, -0.4, 0.3, 0.6];
    let (mut x, mut y, mut off) = (vec![], vec![], vec![]);
    for _ in 0..n {
        let row = [
            1.0,
            normal(&mut r),
            if unif(&mut r) < 0.4 { 1.0 } else { 0.0 },
            5.0 + normal(&mut r),
            unif(&mut r) * 1000.0,
        ];
        let mut eta: f64 = row.iter().zip(beta).map(|(a, b)| a * b).sum();
        eta -= row[3] * 0.3 + row[4] * 0.6 - row[4] * 0.0006;
        let t = 0.5 + 4.0 * unif(&mut r);
        let o = t.ln();
        let yv = match family {
            Family::Logistic => {
                if unif(&mut r) < 1.0 / (1.0 + (-eta).exp()) {
                    1.0
                } else {
                    0.0
                }
            }
            Family::Poisson => {
                // Knuth's Poisson sampler, small means.
                let lam = (eta - 1.0 + o).exp();
                let l = (-lam).exp();
                let (mut k, mut prod) = (0.0, unif(&mut r));
                while prod > l {
                    k += 1.0;
                    prod *= unif(&mut r);
                }
                k
            }
            Family::Linear => 3.0 + eta * 2.0 + normal(&mut r) * 1.5,
        };
        x.extend_from_slice(&row);
        y.push(yv);
        off.push(o);
    }
    Data { x, y, off }
}

fn rows<'a>(d: &'a Data, family: Family) -> Rows<'a> {
    Rows {
        p: P,
        x: &d.x,
        y: &d.y,
        offset: (family == Family::Poisson).then_some(&d.off[..]),
    }
}

fn names() -> Vec<String> {
    ["intercept", "a", "b", "c", "d"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn federated(family: Family, sites: &[Data], opts: Options) -> Result<Fit, GlmError> {
    let mut irls = Irls::new(family, P, opts);
    loop {
        let encs = sites
            .iter()
            .map(|d| encode(&site_stats(family, &rows(d, family), irls.beta())?))
            .collect::<Result<Vec<_>, _>>()?;
        let sum = wrapping_sum(encs.iter().map(|v| &v[..]), stats_len(P))?;
        let total = decode(P, &sum)?;
        if irls.update(&total)? == Progress::Converged {
            return summarize(family, &names(), &irls, &total);
        }
    }
}

fn pool(sites: &[Data]) -> Data {
    Data {
        x: sites.iter().flat_map(|d| d.x.clone()).collect(),
        y: sites.iter().flat_map(|d| d.y.clone()).collect(),
        off: sites.iter().flat_map(|d| d.off.clone()).collect(),
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

fn assert_close(fed: &Fit, pooled: &Fit, tol: f64) {
    assert_eq!(fed.n, pooled.n);
    for (a, b) in fed.terms.iter().zip(&pooled.terms) {
        assert!(rel(a.coefficient, b.coefficient) < tol, "{a:?} vs {b:?}");
        assert!(rel(a.std_error, b.std_error) < tol, "{a:?} vs {b:?}");
    }
    assert!(rel(fed.deviance, pooled.deviance) < tol);
}

fn check_family(family: Family) {
    let sites: Vec<Data> = (0..3)
        .map(|s| data(family, 1500 + 300 * s, 100 + s as u64))
        .collect();
    let opts = Options::default();
    let fed = federated(family, &sites, opts).unwrap();
    let all = pool(&sites);
    let pooled = fit_pooled(family, &rows(&all, family), &names(), opts).unwrap();
    assert_close(&fed, &pooled, 1e-9);
    assert!(
        fed.iterations >= 2 && fed.iterations < 25,
        "{}",
        fed.iterations
    );
    assert!(pooled.null_deviance.unwrap() >= pooled.deviance);
}

#[test]
fn federated_equals_pooled_logistic() {
    check_family(Family::Logistic);
}

#[test]
fn federated_equals_pooled_poisson_with_offset() {
    check_family(Family::Poisson);
}

#[test]
fn federated_equals_pooled_linear() {
    check_family(Family::Linear);
}

#[test]
fn linear_matches_closed_form_least_squares() {
    let d = data(Family::Linear, 400, 7);
    let fit = fit_pooled(
        Family::Linear,
        &rows(&d, Family::Linear),
        &names(),
        Options::default(),
    )
    .unwrap();
    // Normal equations: the score at the estimate vanishes.
    let s = site_stats(
        Family::Linear,
        &rows(&d, Family::Linear),
        &fit.terms.iter().map(|t| t.coefficient).collect::<Vec<_>>(),
    )
    .unwrap();
    for g in &s.score {
        assert!(g.abs() < 1e-6, "{g}");
    }
    let n = d.y.len() as f64;
    let mean = d.y.iter().sum::<f64>() / n;
    let tss: f64 = d.y.iter().map(|y| (y - mean).powi(2)).sum();
    assert!(rel(fit.null_deviance.unwrap(), tss) < 1e-10);
    assert!(rel(fit.scale, fit.deviance / (n - P as f64)) < 1e-12);
}

#[test]
fn null_deviance_is_the_intercept_only_deviance() {
    for family in [Family::Logistic, Family::Poisson] {
        let d = data(family, 2000, 9);
        let full = fit_pooled(family, &rows(&d, family), &names(), Options::default()).unwrap();
        let x1 = vec![1.0; d.y.len()];
        let r1 = Rows {
            p: 1,
            x: &x1,
            y: &d.y,
            offset: (family == Family::Poisson).then_some(&d.off[..]),
        };
        let null = fit_pooled(family, &r1, &["i".into()], Options::default()).unwrap();
        assert!(
            rel(full.null_deviance.unwrap(), null.deviance) < 1e-9,
            "{family:?} {:?} {}",
            full.null_deviance,
            null.deviance
        );
    }
}

#[test]
fn encoding_survives_wrapping_sum_of_negative_and_large_values() {
    let mut a = Stats::zero(2);
    a.n = 3;
    a.null_rows = 3;
    a.xtwx = vec![1.5e18, -2.25, 3.0e-9];
    a.score = vec![-1.0e18, 0.125];
    a.deviance = 7.0;
    let mut b = a.clone();
    b.xtwx = vec![1.7e18, -1.0e18, 1.0];
    b.score = vec![-1.5e18, -0.5];
    let sum = wrapping_sum(
        [&encode(&a).unwrap()[..], &encode(&b).unwrap()[..]],
        stats_len(2),
    )
    .unwrap();
    let s = decode(2, &sum).unwrap();
    assert_eq!(s.n, 6);
    assert_eq!(s.xtwx[0], 3.2e18);
    assert_eq!(s.score[0], -2.5e18);
    assert_eq!(s.xtwx[1], -1.0e18 - 2.25);
    assert!((s.xtwx[2] - (1.0 + 3.0e-9)).abs() < 1e-9);
    assert_eq!(s.score[1], -0.375);
    assert_eq!(s.deviance, 14.0);
}

#[test]
fn shape_and_value_errors_are_typed() {
    let x = vec![1.0, 2.0, 1.0, 3.0];
    let y = vec![0.0, 1.0];
    let ok = Rows {
        p: 2,
        x: &x,
        y: &y,
        offset: None,
    };
    assert!(site_stats(Family::Logistic, &ok, &[0.0, 0.0]).is_ok());
    assert!(matches!(
        site_stats(Family::Logistic, &ok, &[0.0]),
        Err(GlmError::Shape { what: "beta", .. })
    ));
    assert!(matches!(
        site_stats(Family::Logistic, &Rows { p: 3, ..ok }, &[0.0; 3]),
        Err(GlmError::Shape { .. })
    ));
    assert!(matches!(
        site_stats(Family::Logistic, &Rows { p: 0, ..ok }, &[]),
        Err(GlmError::BadColumns { p: 0 })
    ));
    let off = [0.0];
    assert!(matches!(
        site_stats(
            Family::Poisson,
            &Rows {
                offset: Some(&off),
                ..ok
            },
            &[0.0; 2]
        ),
        Err(GlmError::Shape { what: "offset", .. })
    ));
    let bad_x = vec![1.0, f64::NAN, 1.0, 3.0];
    assert_eq!(
        site_stats(Family::Linear, &Rows { x: &bad_x, ..ok }, &[0.0; 2]),
        Err(GlmError::NonFinite {
            what: "x",
            index: 1
        })
    );
    let bad_y = vec![0.0, f64::INFINITY];
    assert_eq!(
        site_stats(Family::Linear, &Rows { y: &bad_y, ..ok }, &[0.0; 2]),
        Err(GlmError::NonFinite {
            what: "y",
            index: 1
        })
    );
    let two = vec![0.0, 2.0];
    assert!(matches!(
        site_stats(Family::Logistic, &Rows { y: &two, ..ok }, &[0.0; 2]),
        Err(GlmError::Domain { row: 1, .. })
    ));
    let neg = vec![0.0, -1.0];
    assert!(matches!(
        site_stats(Family::Poisson, &Rows { y: &neg, ..ok }, &[0.0; 2]),
        Err(GlmError::Domain { row: 1, .. })
    ));
    assert!(matches!(
        site_stats(Family::Linear, &ok, &[f64::NAN, 0.0]),
        Err(GlmError::NonFinite { what: "beta", .. })
    ));
    assert!(matches!(decode(2, &[0; 3]), Err(GlmError::Shape { .. })));
    let mut neg_n = vec![0; stats_len(2)];
    neg_n[0] = -1;
    assert!(matches!(
        decode(2, &neg_n),
        Err(GlmError::NegativeCount { .. })
    ));
    let mut s = Stats::zero(2);
    s.deviance = f64::NAN;
    assert!(matches!(encode(&s), Err(GlmError::NonFinite { .. })));
    s.deviance = 1e20;
    assert!(matches!(encode(&s), Err(GlmError::Overflow { .. })));
    s.deviance = 0.0;
    s.score = vec![0.0];
    assert!(matches!(encode(&s), Err(GlmError::Shape { .. })));
    let mut irls = Irls::new(Family::Linear, 3, Options::default());
    assert!(matches!(
        irls.update(&Stats::zero(2)),
        Err(GlmError::Shape { .. })
    ));
    assert!(matches!(
        wrapping_sum([&[1i64, 2][..], &[1][..]], 2),
        Err(GlmError::Shape { .. })
    ));
}

#[test]
fn perfect_separation_is_an_error_not_a_panic() {
    let mut x = vec![];
    let mut y = vec![];
    for i in 0..200 {
        let v = i as f64 / 10.0 - 10.0;
        x.extend_from_slice(&[1.0, v]);
        y.push(if v > 0.0 { 1.0 } else { 0.0 });
    }
    let r = Rows {
        p: 2,
        x: &x,
        y: &y,
        offset: None,
    };
    let err = fit_pooled(
        Family::Logistic,
        &r,
        &["i".into(), "v".into()],
        Options::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            GlmError::NotConverged { .. } | GlmError::NotPositiveDefinite { .. }
        ),
        "{err}"
    );
}

#[test]
fn collinear_columns_are_not_positive_definite() {
    let mut x = vec![];
    let mut y = vec![];
    for i in 0..50 {
        let v = i as f64;
        x.extend_from_slice(&[1.0, v, 2.0 * v]);
        y.push(v * 0.5 + (i % 3) as f64);
    }
    let r = Rows {
        p: 3,
        x: &x,
        y: &y,
        offset: None,
    };
    let names: Vec<String> = vec!["i".into(), "a".into(), "b".into()];
    let err = fit_pooled(Family::Linear, &r, &names, Options::default()).unwrap_err();
    assert!(matches!(err, GlmError::NotPositiveDefinite { .. }), "{err}");
    // A ridge penalty makes it identifiable.
    let opts = Options {
        l2: 1.0,
        ..Options::default()
    };
    let fit = fit_pooled(Family::Linear, &r, &names, opts).unwrap();
    // The penalty splits the effect equally-weighted: b ≈ 2a.
    assert!(rel(fit.terms[2].coefficient, 2.0 * fit.terms[1].coefficient) < 1e-6);
}

#[test]
fn ridge_shrinks_and_solves_the_penalized_score() {
    let d = data(Family::Logistic, 3000, 11);
    let r = rows(&d, Family::Logistic);
    let plain = fit_pooled(Family::Logistic, &r, &names(), Options::default()).unwrap();
    let lambda = 500.0;
    let opts = Options {
        l2: lambda,
        ..Options::default()
    };
    let ridge = fit_pooled(Family::Logistic, &r, &names(), opts).unwrap();
    let norm = |f: &Fit| {
        f.terms
            .iter()
            .skip(1)
            .map(|t| t.coefficient.powi(2))
            .sum::<f64>()
    };
    assert!(norm(&ridge) < norm(&plain));
    let beta: Vec<f64> = ridge.terms.iter().map(|t| t.coefficient).collect();
    let s = site_stats(Family::Logistic, &r, &beta).unwrap();
    for (j, (g, b)) in s.score.iter().zip(&beta).enumerate() {
        let want = if j == 0 { 0.0 } else { lambda * b };
        assert!((g - want).abs() < 1e-5, "j={j} score={g} λβ={want}");
    }
}

#[test]
fn summary_statistics_are_consistent() {
    let d = data(Family::Logistic, 3000, 12);
    let fit = fit_pooled(
        Family::Logistic,
        &rows(&d, Family::Logistic),
        &names(),
        Options::default(),
    )
    .unwrap();
    for t in &fit.terms {
        assert!(rel(t.z, t.coefficient / t.std_error) < 1e-14);
        assert!(rel(t.ci_high - t.ci_low, 2.0 * Z_975 * t.std_error) < 1e-12);
        let (or, lo, hi) = t.ratio.unwrap();
        assert!(rel(or, t.coefficient.exp()) < 1e-14 && lo < or && or < hi);
        assert!((0.0..=1.0).contains(&t.p_value));
    }
    // Two-sided normal tail: known values.
    assert!(rel(normal_two_sided_p(1.959963984540054), 0.05) < 1e-14);
    assert!(rel(normal_two_sided_p(-3.0), 0.0026997960632601866) < 1e-13);
    assert!(rel(normal_two_sided_p(10.0), 1.5239706048320995e-23) < 1e-12);
}

#[test]
fn noise_has_the_calibrated_variance() {
    let dp = DpGlm::new(0.5, vec![1.0, 2.0, 3.0], 5.0);
    let family = Family::Logistic;
    let delta = dp.sensitivity(family).unwrap();
    // Δ² = 1 + (1/4)²·Σ_{j≤k} b_j²b_k² + Σ b_j² + 10².
    let b2 = [1.0, 4.0, 9.0];
    let mut cross = 0.0;
    for j in 0..3 {
        for k in j..3 {
            cross += b2[j] * b2[k];
        }
    }
    let want = (1.0 + cross / 16.0 + 14.0 + 100.0f64).sqrt();
    assert!(rel(delta, want) < 1e-14);
    let sd = dp.noise_sd(family).unwrap();
    let ideal = delta / (2.0 * 0.5f64).sqrt();
    assert!(sd >= ideal && sd < ideal * 1.001, "sd={sd} ideal={ideal}");
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let base = Stats::zero(3);
    let mut sum2 = 0.0;
    let mut count = 0.0;
    for _ in 0..3000 {
        let s = noise_stats(&base, &dp, family, &mut rng).unwrap();
        assert_eq!(s.null_rows, 0);
        for v in s.xtwx.iter().chain(&s.score).chain([&s.deviance]) {
            sum2 += v * v;
            count += 1.0;
        }
    }
    // 30k draws: the variance estimate's relative standard error is √(2/30000) ≈ 0.8%.
    let var = sum2 / count;
    assert!(
        (var / (sd * sd) - 1.0).abs() < 0.04,
        "var={var} sd²={}",
        sd * sd
    );
}

#[test]
fn noisy_fit_runs_its_iterations_and_stays_close() {
    let family = Family::Logistic;
    // Column d rescaled to [0, 1]: one common σ for the whole vector is driven by the largest
    // bound (Δ₂ grows like max b_j²).
    let sites: Vec<Data> = (0..3)
        .map(|s| {
            let mut d = data(family, 20_000, 200 + s);
            for row in d.x.chunks_mut(P) {
                row[4] /= 1000.0;
            }
            d
        })
        .collect();
    let dp = DpGlm::new(
        zcdp_rho(10.0, 1e-6) / 6.0,
        vec![1.0, 4.0, 1.0, 10.0, 1.0],
        1.0,
    );
    let opts = Options {
        max_iter: 6,
        noisy: true,
        ..Options::default()
    };
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut irls = Irls::new(family, P, opts);
    let total = loop {
        let mut encs = vec![];
        for d in &sites {
            let s = site_stats_clipped(family, &rows(d, family), irls.beta(), &dp).unwrap();
            encs.push(encode(&noise_stats(&s, &dp, family, &mut rng).unwrap()).unwrap());
        }
        let total = decode(
            P,
            &wrapping_sum(encs.iter().map(|v| &v[..]), stats_len(P)).unwrap(),
        )
        .unwrap();
        if irls.update(&total).unwrap() == Progress::Converged {
            break total;
        }
    };
    assert_eq!(irls.iteration(), 6);
    let fit = summarize(family, &names(), &irls, &total).unwrap();
    assert_eq!(fit.null_deviance, None);
    let all = pool(&sites);
    let exact = fit_pooled(family, &rows(&all, family), &names(), Options::default()).unwrap();
    // The slope of the N(0, 1) covariate is well determined.
    assert!(
        (fit.terms[1].coefficient - exact.terms[1].coefficient).abs() < 0.2,
        "{fit:?}"
    );
}

/// Standardizing by the bounds and mapping the fit back is the same fit (without noise), and
/// with noise it is the remedy for covariates with large bounds: on the raw scale one σ sized by
/// the largest bound drowns the well-determined slope; standardized, it stays close.
#[test]
fn a_standardized_fit_maps_back_and_survives_large_bounds() {
    let family = Family::Logistic;
    let bound = [1.0, 4.0, 1.0, 10.0, 1.0];
    let d = data(family, 5_000, 31);
    let exact = fit_pooled(family, &rows(&d, family), &names(), Options::default()).unwrap();
    // Bounds that clip nothing: the standardized fit, mapped back, is the raw fit.
    let wide: Vec<f64> = (0..P)
        .map(|j| {
            let m = d.x.chunks(P).map(|r| r[j].abs()).fold(0.0, f64::max);
            if j == 0 { 1.0 } else { 2.0 * m + bound[j] }
        })
        .collect();
    let xs = standardize(&d.x, P, &wide).unwrap();
    let scaled = Rows {
        p: P,
        x: &xs,
        y: &d.y,
        offset: None,
    };
    let back = unscale(
        fit_pooled(family, &scaled, &names(), Options::default()).unwrap(),
        &wide,
    );
    for (a, b) in back.terms.iter().zip(&exact.terms) {
        assert!(rel(a.coefficient, b.coefficient) < 1e-8, "{a:?} {b:?}");
        assert!(rel(a.std_error, b.std_error) < 1e-8, "{a:?} {b:?}");
        assert!(rel(a.z, b.z) < 1e-8);
    }
    assert!(standardize(&d.x, P, &[1.0; 3]).is_err());
    assert!(standardize(&d.x, P, &[1.0, -1.0, 1.0, 1.0, 1.0]).is_err());

    // Large bounds (a covariate up to 1,000, as a lab value can be): the raw-scale noise
    // drowns the slope of column 1; the standardized fit keeps it.
    let large = vec![1.0, 4.0, 1.0, 10.0, 1_000.0];
    let sites: Vec<Data> = (0..3).map(|s| data(family, 20_000, 300 + s)).collect();
    let rho = zcdp_rho(10.0, 1e-6) / 6.0;
    let opts = Options {
        max_iter: 6,
        noisy: true,
        ..Options::default()
    };
    let private_fit = |standard: bool, seed: u64| -> Fit {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut irls = Irls::new(family, P, opts);
        let dp = if standard {
            DpGlm::standardized(rho, P, 1.0)
        } else {
            DpGlm::new(rho, large.clone(), 1.0)
        };
        let xs: Vec<Vec<f64>> = sites
            .iter()
            .map(|d| {
                if standard {
                    standardize(&d.x, P, &large).unwrap()
                } else {
                    d.x.clone()
                }
            })
            .collect();
        let total = loop {
            let mut encs = vec![];
            for (d, x) in sites.iter().zip(&xs) {
                let r = Rows {
                    p: P,
                    x,
                    y: &d.y,
                    offset: None,
                };
                let s = site_stats_clipped(family, &r, irls.beta(), &dp).unwrap();
                encs.push(encode(&noise_stats(&s, &dp, family, &mut rng).unwrap()).unwrap());
            }
            let total = decode(
                P,
                &wrapping_sum(encs.iter().map(|v| &v[..]), stats_len(P)).unwrap(),
            )
            .unwrap();
            if irls.update(&total).unwrap() == Progress::Converged {
                break total;
            }
        };
        let fit = summarize(family, &names(), &irls, &total).unwrap();
        if standard { unscale(fit, &large) } else { fit }
    };
    let all = pool(&sites);
    let exact = fit_pooled(family, &rows(&all, family), &names(), Options::default()).unwrap();
    let err = |f: &Fit| (f.terms[1].coefficient - exact.terms[1].coefficient).abs();
    let (mut raw, mut standard) = (0.0, 0.0);
    for seed in 0..3 {
        raw += err(&private_fit(false, seed));
        standard += err(&private_fit(true, seed));
    }
    println!("slope error over 3 private fits: raw scale {raw:.3}, standardized {standard:.3}");
    assert!(standard < 0.2 * 3.0, "standardized error {standard}");
    assert!(standard * 5.0 < raw, "standardized {standard} vs raw {raw}");
}

#[test]
fn zcdp_conversions_round_trip() {
    for (rho, delta) in [(0.01, 1e-6), (0.5, 1e-5), (2.0, 1e-9), (0.0, 0.1)] {
        let eps = zcdp_epsilon(rho, delta);
        assert!(rel(zcdp_rho(eps, delta), rho) < 1e-9 || rho == 0.0);
    }
    assert!(
        rel(
            zcdp_epsilon(0.5, 1e-5),
            0.5 + 2.0 * (0.5 * 1e5f64.ln()).sqrt()
        ) < 1e-15
    );
    assert!(zcdp_rho(1.0, 0.0).is_nan());
    assert!(zcdp_epsilon(-1.0, 0.5).is_nan());
}

#[test]
fn columns_and_rows_give_the_same_stats() {
    let d = data(Family::Poisson, 777, 3);
    let r = rows(&d, Family::Poisson);
    let cols: Vec<Vec<f64>> = (0..P)
        .map(|j| d.x.chunks(P).map(|row| row[j]).collect())
        .collect();
    let refs: Vec<&[f64]> = cols.iter().map(|c| &c[..]).collect();
    let c = Columns {
        x: &refs,
        y: &d.y,
        offset: Some(&d.off),
    };
    let beta = [0.1, 0.2, -0.1, 0.05, 0.0001];
    assert_eq!(
        site_stats(Family::Poisson, &r, &beta).unwrap(),
        site_stats_columns(Family::Poisson, &c, &beta).unwrap()
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn stats(p: usize) -> impl Strategy<Value = Stats> {
        let vals = prop::collection::vec(-1.0e15f64..1.0e15, tri_len(p) + p + SCALARS);
        (vals, 0u64..1_000_000_000).prop_map(move |(v, n)| {
            let mut s = Stats::zero(p);
            s.n = n;
            s.null_rows = n;
            let mut it = v.into_iter();
            for slot in s.xtwx.iter_mut().chain(s.score.iter_mut()) {
                *slot = it.next().unwrap();
            }
            s.deviance = it.next().unwrap();
            s.y_sum = it.next().unwrap();
            s.y2_sum = it.next().unwrap();
            s.y_log_y = it.next().unwrap();
            s.offset_exp_sum = it.next().unwrap();
            s.y_offset_sum = it.next().unwrap();
            s
        })
    }

    proptest! {
        #[test]
        fn encode_sum_decode_is_the_sum(
            (p, sites) in (1usize..6).prop_flat_map(|p| (Just(p), prop::collection::vec(stats(p), 1..6)))
        ) {
            let encs: Vec<Vec<i64>> = sites.iter().map(|s| encode(s).unwrap()).collect();
            let sum = wrapping_sum(encs.iter().map(|v| &v[..]), stats_len(p)).unwrap();
            let got = decode(p, &sum).unwrap();
            let mut want = Stats::zero(p);
            for s in &sites {
                want.merge(s).unwrap();
            }
            prop_assert_eq!(got.n, want.n);
            prop_assert_eq!(got.null_rows, want.null_rows);
            let flat = |s: &Stats| -> Vec<f64> {
                s.xtwx.iter().chain(&s.score).copied().chain(s.scalars()).collect()
            };
            let k = sites.len() as f64;
            for (a, b) in flat(&got).iter().zip(flat(&want)) {
                // Each site rounds to 2^-32; f64 sums round at 2^-52 relative.
                let tol = k * 2f64.powi(-32) + 4.0 * k * b.abs().max(1e15) * f64::EPSILON;
                prop_assert!((a - b).abs() <= tol, "{} vs {}", a, b);
            }
        }
    }
}
