//! The search on hand-computed tables and, by proptest, on random microdata and specs: the
//! released table always satisfies the models per `verify`, suppression stays within budget,
//! and the chosen node's loss is the least over all satisfying nodes (brute force).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use medspace_deid::hierarchy::Hierarchy;
use medspace_deid::search::{Phase, brute_force};
use medspace_deid::spec::{Dates, LDiversity, QuasiIdentifier, ReleaseSpec, Utility};
use medspace_deid::{DeidError, Microdata, Parents, Record, Value, plan, verify};
use proptest::prelude::*;

fn spec_json(extra: &str) -> ReleaseSpec {
    ReleaseSpec::from_json(&format!(
        r#"{{"version":1,"dataset":"t","quasi_identifiers":[
            {{"field":"age","hierarchy":{{"kind":"interval","widths":[10,20]}}}},
            {{"field":"sex","hierarchy":{{"kind":"suppress"}}}}],
           "sensitive":["dx"], {extra}}}"#
    ))
    .unwrap()
}

fn data(rows: &[(i64, &str, &str)]) -> Microdata {
    Microdata {
        qi: vec!["age".into(), "sex".into()],
        sensitive: vec!["dx".into()],
        rows: rows
            .iter()
            .map(|r| Record {
                qi: vec![Value::Int(r.0), Value::Text(r.1.into())],
                sensitive: vec![r.2.into()],
            })
            .collect(),
    }
}

#[test]
fn hand_computed_optimum() {
    // Ages 30..=33 F and 34..=37 M: exact ages are unique; 10-year bands give classes
    // {30-39 F: 4}, {30-39 M: 4}; k=4 needs the bands and keeps sex.
    let rows: Vec<(i64, &str, &str)> = (30..38)
        .map(|a| {
            (
                a,
                if a < 34 { "F" } else { "M" },
                if a % 2 == 0 { "flu" } else { "cold" },
            )
        })
        .collect();
    let d = data(&rows);
    let spec = spec_json(r#""k":4,"l":{"distinct":2},"max_suppression":0"#);
    let mut phases = Vec::new();
    let p = plan(&spec, &d, &Parents::new(), &mut |p| phases.push(p.phase)).unwrap();
    assert_eq!(p.node.levels, vec![1, 0]);
    assert_eq!(p.node.names, vec!["width 10", "value"]);
    assert_eq!(p.lattice_size, 8);
    assert!(p.suppressed.is_empty());
    assert_eq!(p.labels()[0], vec!["30-39", "F"]);
    assert_eq!(p.report.figures.k, 4);
    assert_eq!(p.report.class_sizes, vec![(4, 2)]);
    assert_eq!(p.report.risk.prosecutor.highest, 0.25);
    // Entropy loss: every age (1 of 8 records... 1 of 8 in its band of 8) costs log2(8) = 3 bits.
    assert!(
        (p.report.information_loss - 24.0).abs() < 1e-9,
        "{}",
        p.report.information_loss
    );
    assert_eq!(phases.first(), Some(&Phase::Encoded));
    assert_eq!(phases.last(), Some(&Phase::Release));
    // With 25 % suppression allowed and k=2 the exact ages fail, but a suppression of
    // two outliers lets a cheaper node win.
    let mut rows2 = vec![
        (30, "F", "a"),
        (30, "F", "b"),
        (31, "F", "a"),
        (31, "F", "b"),
        (32, "M", "a"),
        (57, "M", "b"),
    ];
    rows2.extend([(30, "F", "c"), (31, "F", "c")]);
    let d2 = data(&rows2);
    let spec2 = spec_json(r#""k":2,"max_suppression":0.25"#);
    let p2 = plan(&spec2, &d2, &Parents::new(), &mut |_| {}).unwrap();
    assert_eq!(p2.node.levels, vec![0, 0]);
    assert_eq!(p2.suppressed, vec![4, 5]);
    assert_eq!(p2.report.suppressed, 2);
}

#[test]
fn errors_are_typed_and_value_free() {
    let d = data(&[(30, "F", "flu"), (99, "M", "cold")]);
    let spec = spec_json(r#""k":3,"max_suppression":0"#);
    let e = plan(&spec, &d, &Parents::new(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, DeidError::NoSolution { .. }), "{e}");
    // A wrong type names the field and row, not the value.
    let mut bad = d.clone();
    bad.rows[1].qi[0] = Value::Text("secret-value".into());
    let e = plan(&spec, &bad, &Parents::new(), &mut |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("row 1") && msg.contains("`age`") && !msg.contains("secret"),
        "{msg}"
    );
    let mut bad = d.clone();
    bad.qi[0] = "years".into();
    assert!(matches!(
        plan(&spec, &bad, &Parents::new(), &mut |_| {}),
        Err(DeidError::Columns(_))
    ));
    let mut bad = d;
    bad.rows[0].sensitive.clear();
    assert!(matches!(
        plan(&spec, &bad, &Parents::new(), &mut |_| {}),
        Err(DeidError::Arity { row: 0, .. })
    ));
}

#[test]
fn dates_month_floor_and_html() {
    let spec = ReleaseSpec::from_json(
        r#"{"version":1,"dataset":"t","quasi_identifiers":[{"field":"d","hierarchy":{"kind":"date"}}],"k":2,"max_suppression":0,"dates":"month"}"#,
    )
    .unwrap();
    let d = Microdata {
        qi: vec!["d".into()],
        sensitive: vec![],
        rows: (0..4)
            .map(|i| Record {
                qi: vec![Value::Date(17_000 + i)],
                sensitive: vec![],
            })
            .collect(),
    };
    let p = plan(&spec, &d, &Parents::new(), &mut |_| {}).unwrap();
    // Day level is excluded by "month": the lattice has 3 nodes, month satisfies k=2.
    assert_eq!(p.lattice_size, 3);
    assert_eq!(p.node.names, vec!["month"]);
    assert_eq!(p.labels()[0], vec!["2016-07"]);
    let html = p.report.to_html();
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("<svg") && !html.contains("<script")
    );
    assert!(!html.contains("http://") || html.matches("http://").count() == 1); // the SVG namespace only
    let json: serde_json::Value = serde_json::from_str(&p.report.to_json()).unwrap();
    assert_eq!(json["figures"]["k"], 4);
}

#[test]
fn tree_hierarchy_with_parents() {
    let spec = ReleaseSpec::from_json(
        r#"{"version":1,"dataset":"t","quasi_identifiers":[{"field":"c","hierarchy":{"kind":"tree","levels":1}}],"k":2,"max_suppression":0}"#,
    )
    .unwrap();
    let mut parents = Parents::new();
    for (c, p) in [
        ("E11.1", "E11"),
        ("E11.9", "E11"),
        ("I10.0", "I10"),
        ("I10.1", "I10"),
    ] {
        parents.insert(c.into(), p.into());
    }
    let d = Microdata {
        qi: vec!["c".into()],
        sensitive: vec![],
        rows: ["E11.1", "E11.9", "I10.0", "I10.1"]
            .iter()
            .map(|c| Record {
                qi: vec![Value::Text((*c).into())],
                sensitive: vec![],
            })
            .collect(),
    };
    let p = plan(&spec, &d, &Parents::new(), &mut |_| {}).unwrap();
    assert_eq!(p.node.names, vec!["*"]);
    let p = plan(&spec, &d, &parents, &mut |_| {}).unwrap();
    assert_eq!(p.node.names, vec!["parent"]);
    assert_eq!(
        p.labels(),
        vec![vec!["E11"], vec!["E11"], vec!["I10"], vec!["I10"]]
    );
}

fn arb_case() -> impl Strategy<Value = (ReleaseSpec, Microdata)> {
    let rows = prop::collection::vec(
        (
            0i64..40,
            0usize..3,
            0usize..9,
            0i32..120,
            0usize..4,
            0usize..3,
            prop::bool::weighted(0.05),
        ),
        0..60,
    );
    (
        rows,
        2u32..5,
        0usize..3,
        prop::option::of(0.15f64..1.0),
        0.0f64..0.4,
        prop::bool::ANY,
        1usize..3,
        0usize..3,
    )
        .prop_map(|(rows, k, lkind, t, supp, dm, n_sa, nq)| {
            let mut qis = vec![
                QuasiIdentifier {
                    field: "age".into(),
                    hierarchy: Hierarchy::Interval {
                        widths: vec![5, 10],
                    },
                },
                QuasiIdentifier {
                    field: "sex".into(),
                    hierarchy: Hierarchy::Suppress {},
                },
                QuasiIdentifier {
                    field: "zip".into(),
                    hierarchy: Hierarchy::Prefix { keep: vec![2, 1] },
                },
                QuasiIdentifier {
                    field: "day".into(),
                    hierarchy: Hierarchy::Date {},
                },
            ];
            qis.truncate(2 + nq);
            let sensitive: Vec<String> = ["dx", "drug"]
                .iter()
                .take(n_sa)
                .map(|s| s.to_string())
                .collect();
            let l = match lkind {
                0 => None,
                1 => Some(LDiversity::Distinct(2.min(k))),
                _ => Some(LDiversity::Entropy(1.5)),
            };
            let spec = ReleaseSpec {
                version: 1,
                dataset: "prop".into(),
                tables: Default::default(),
                quasi_identifiers: qis.clone(),
                sensitive: sensitive.clone(),
                k,
                l,
                t,
                max_suppression: supp,
                dates: Dates::ShiftDays(10),
                linkable: false,
                utility: if dm {
                    Utility::Discernibility
                } else {
                    Utility::Entropy
                },
                risk_threshold: 0.2,
            };
            let data = Microdata {
                qi: qis.iter().map(|q| q.field.clone()).collect(),
                sensitive,
                rows: rows
                    .iter()
                    .map(|&(age, sex, zip, day, dx, drug, missing)| {
                        let mut qi = vec![
                            if missing {
                                Value::Missing
                            } else {
                                Value::Int(age)
                            },
                            Value::Text(["F", "M", "U"][sex].into()),
                            Value::Text(format!("{}{}{}", zip / 3, zip % 3, zip % 2)),
                            Value::Date(17_500 + day),
                        ];
                        qi.truncate(2 + nq);
                        let mut s = vec![format!("d{dx}"), format!("m{drug}")];
                        s.truncate(n_sa);
                        Record { qi, sensitive: s }
                    })
                    .collect(),
            };
            (spec, data)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn plans_satisfy_and_are_optimal((spec, data) in arb_case()) {
        let parents = Parents::new();
        let all = brute_force(&spec, &data, &parents).unwrap();
        match plan(&spec, &data, &parents, &mut |_| {}) {
            Err(DeidError::NoSolution { .. }) => prop_assert!(all.is_empty(), "no solution, but brute force found {:?}", all),
            Err(e) => prop_assert!(false, "{e}"),
            Ok(p) => {
                let n = data.rows.len();
                prop_assert_eq!(p.kept.len() + p.suppressed.len(), n);
                prop_assert!(p.suppressed.len() as f64 <= spec.max_suppression * n as f64 + 1e-9);
                let labels = p.labels();
                let sens = p.sensitive(&data);
                let f = verify(&labels, &sens, &spec);
                if f.records > 0 {
                    prop_assert!(f.k >= u64::from(spec.k), "k {} < {}", f.k, spec.k);
                    match spec.l {
                        Some(LDiversity::Distinct(l)) => prop_assert!(f.distinct_l().unwrap() >= u64::from(l)),
                        Some(LDiversity::Entropy(x)) => prop_assert!(f.entropy_l().unwrap() >= x - 1e-9),
                        None => {}
                    }
                    if let Some(t) = spec.t {
                        prop_assert!(f.t().unwrap() <= t + 1e-9, "t {} > {}", f.t().unwrap(), t);
                    }
                }
                // The report's figures are verify's.
                let r = &p.report.figures;
                prop_assert_eq!((r.records, r.classes, r.k), (f.records, f.classes, f.k));
                for (a, b) in r.sensitive.iter().zip(&f.sensitive) {
                    prop_assert_eq!(a.distinct_l, b.distinct_l);
                    prop_assert!((a.entropy_l - b.entropy_l).abs() < 1e-9);
                    prop_assert!((a.t - b.t).abs() < 1e-9);
                }
                // Optimal: no satisfying node has a smaller loss.
                let min = all.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
                let loss = p.report.information_loss;
                prop_assert!(loss <= min + 1e-9 * min.abs().max(1.0), "loss {} > brute-force minimum {} ({:?})", loss, min, all);
                prop_assert!(all.iter().any(|x| x.0 == p.node.levels), "chosen node not satisfying per brute force");
                // Deterministic.
                let again = plan(&spec, &data, &parents, &mut |_| {}).unwrap();
                prop_assert_eq!(again.node, p.node);
                prop_assert_eq!(again.suppressed, p.suppressed);
            }
        }
    }
}
