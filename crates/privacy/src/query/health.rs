//! The public-health aggregates compiled to SQL after the cohort of [`super::compile_sql_at`]:
//! a drug-safety specification's tallies and one window of a surveillance definition. What
//! the queries return never leaves the site; the data plane turns it into the site's vector
//! ([`site_safety_tables`], [`site_surveillance_vector`]) and only that (masked) does.
//!
//! **Drug safety** returns rows of five Int64 columns `kind, d, e, v` (and a padding 0), one
//! query for every tally the 2×2 tables need, so no row ever pairs a person with a drug and an
//! event outside the site:
//! - kind 0: `N`, the cohort persons with a record (at least one visit);
//! - kind 1, per drug `d`: persons ever exposed;
//! - kind 2, per drug `d`: new users (first exposure at least the washout after the record's
//!   first visit);
//! - kind 3, per event `e`: persons with the event on or after their first visit;
//! - kind 4, per pair: persons ever exposed to `d` with event `e` on or after their first visit;
//! - kind 5, per pair: new users of `d` with `e` 1 to `window_days` days after the first
//!   exposure (`a`).
//!
//! Then `a` = kind 5, `b` = new users − `a`, `c` = persons with the event − exposed persons with
//! it, `d` = (`N` − exposed) − `c`: exactly the cells of
//! [`crate::pharmacovigilance::classify`] applied to every person (checked by a test on random
//! records).
//!
//! **Surveillance** returns one row per (syndrome, region, age band) with persons: `zip`
//! (Utf8), `s`, `age` and `n` (Int64).

use super::{DrugSafetySpec, QueryError, SurveillanceSpec, index_day};
use crate::pharmacovigilance::{PvError, Table2x2};
use std::collections::HashMap;
use std::fmt::Write as _;

fn day(col: &str) -> String {
    format!("CAST({col} AS BIGINT)")
}

/// `(VALUES ('code', i), …)`: every code of every group with the group's index. Codes are
/// validated to `[A-Za-z0-9.-]`, so they cannot leave their literal.
fn code_table(groups: &[super::CodeGroup], index: &str) -> String {
    let rows: Vec<String> = groups
        .iter()
        .enumerate()
        .flat_map(|(i, g)| g.codes.iter().map(move |c| format!("('{c}', {i})")))
        .collect();
    format!(
        "SELECT column1 AS code, CAST(column2 AS BIGINT) AS {index} FROM (VALUES {})",
        rows.join(", ")
    )
}

/// Appends to `sql` (which holds the `WITH cohort AS (…)` head) a drug-safety query.
pub(crate) fn drug_safety_rows(sql: &mut String, d: &DrugSafetySpec) {
    let w = d.window_days;
    let washout = d.washout_days;
    let _ = write!(
        sql,
        ",
obs AS (SELECT v.person_id, MIN({visit}) AS f FROM visit_occurrence v JOIN cohort k ON k.person_id = v.person_id GROUP BY v.person_id),
dc AS ({dc}),
ec AS ({ec}),
ex AS (SELECT x.person_id, dc.d, MIN({start}) AS i FROM drug_exposure x JOIN dc ON x.drug_source_value = dc.code JOIN obs ON obs.person_id = x.person_id GROUP BY x.person_id, dc.d),
nu AS (SELECT ex.person_id, ex.d, ex.i FROM ex JOIN obs ON obs.person_id = ex.person_id WHERE ex.i - obs.f >= {washout}),
ev AS (SELECT DISTINCT o.person_id, ec.e, {cond} AS t FROM condition_occurrence o JOIN ec ON o.condition_source_value = ec.code JOIN obs ON obs.person_id = o.person_id WHERE {cond} >= obs.f),
evp AS (SELECT DISTINCT person_id, e FROM ev)
SELECT CAST(0 AS BIGINT) AS kind, CAST(-1 AS BIGINT) AS d, CAST(-1 AS BIGINT) AS e, COUNT(*) AS v FROM obs
UNION ALL SELECT CAST(1 AS BIGINT), d, CAST(-1 AS BIGINT), COUNT(*) FROM ex GROUP BY d
UNION ALL SELECT CAST(2 AS BIGINT), d, CAST(-1 AS BIGINT), COUNT(*) FROM nu GROUP BY d
UNION ALL SELECT CAST(3 AS BIGINT), CAST(-1 AS BIGINT), e, COUNT(*) FROM evp GROUP BY e
UNION ALL SELECT CAST(4 AS BIGINT), ex.d, evp.e, COUNT(*) FROM ex JOIN evp ON evp.person_id = ex.person_id GROUP BY ex.d, evp.e
UNION ALL SELECT CAST(5 AS BIGINT), nu.d, ev.e, COUNT(DISTINCT nu.person_id) FROM nu JOIN ev ON ev.person_id = nu.person_id WHERE ev.t - nu.i BETWEEN 1 AND {w} GROUP BY nu.d, ev.e",
        visit = day("v.visit_start_date"),
        dc = code_table(&d.drugs, "d"),
        ec = code_table(&d.events, "e"),
        start = day("x.drug_exposure_start_date"),
        cond = day("o.condition_start_date"),
    );
}

/// The site's 2×2 table of every pair of `d` (in [`DrugSafetySpec::pair_indices`] order) from
/// the rows of its compiled query (`kind, d, e, v`).
pub fn site_safety_tables(d: &DrugSafetySpec, rows: &[[i64; 4]]) -> Result<Vec<Table2x2>, PvError> {
    let mut n = 0i64;
    let mut exposed: HashMap<i64, i64> = HashMap::new();
    let mut new_users: HashMap<i64, i64> = HashMap::new();
    let mut with_event: HashMap<i64, i64> = HashMap::new();
    let mut exposed_event: HashMap<(i64, i64), i64> = HashMap::new();
    let mut a_cells: HashMap<(i64, i64), i64> = HashMap::new();
    for [kind, drug, event, v] in rows.iter().copied() {
        match kind {
            0 => n = v,
            1 => {
                exposed.insert(drug, v);
            }
            2 => {
                new_users.insert(drug, v);
            }
            3 => {
                with_event.insert(event, v);
            }
            4 => {
                exposed_event.insert((drug, event), v);
            }
            5 => {
                a_cells.insert((drug, event), v);
            }
            _ => return Err(PvError::Overflow),
        }
    }
    let get = |m: &HashMap<i64, i64>, k: usize| m.get(&(k as i64)).copied().unwrap_or(0);
    let get2 = |m: &HashMap<(i64, i64), i64>, d: usize, e: usize| {
        m.get(&(d as i64, e as i64)).copied().unwrap_or(0)
    };
    let mut out = Vec::new();
    for (di, ei) in d.pair_indices() {
        let a = get2(&a_cells, di, ei);
        let b = get(&new_users, di) - a;
        let c = get(&with_event, ei) - get2(&exposed_event, di, ei);
        let dd = n - get(&exposed, di) - c;
        if a < 0 || b < 0 || c < 0 || dd < 0 {
            return Err(PvError::Overflow);
        }
        out.push(Table2x2::from_cells(&[a, b, c, dd])?);
    }
    Ok(out)
}

/// The first year of window `w` (for the age of its counts).
pub(crate) fn window_year(s: &SurveillanceSpec, w: u32) -> Result<i32, QueryError> {
    let (first, _) = s.window_days_range(w)?;
    let (y, _, _) = super::civil_of_day(first);
    i32::try_from(y).map_err(|_| QueryError::IndexDate)
}

/// Appends to `sql` (which holds the `WITH cohort AS (…)` head, its age at the window's year)
/// one window's surveillance counts.
pub(crate) fn surveillance_rows(
    sql: &mut String,
    s: &SurveillanceSpec,
    w: u32,
) -> Result<(), QueryError> {
    let (first, end) = s.window_days_range(w)?;
    // Validated: the start is a real date (so `index_day` agrees with the range).
    index_day(&s.start)?;
    let regions: Vec<String> = s.regions.iter().map(|r| format!("'{r}'")).collect();
    let _ = write!(
        sql,
        ",
sc AS ({sc}),
hits AS (SELECT DISTINCT o.person_id, sc.s FROM condition_occurrence o JOIN sc ON o.condition_source_value = sc.code WHERE {cond} >= {first} AND {cond} < {end}),
placed AS (SELECT k.person_id, k.age, l.zip FROM cohort k JOIN person p ON p.person_id = k.person_id JOIN location l ON l.location_id = p.location_id WHERE l.zip IN ({regions}))
SELECT placed.zip AS zip, hits.s AS s, CAST(placed.age AS BIGINT) AS age, COUNT(*) AS n FROM hits JOIN placed ON placed.person_id = hits.person_id GROUP BY placed.zip, hits.s, placed.age",
        sc = code_table(&s.syndromes, "s"),
        cond = day("o.condition_start_date"),
        regions = regions.join(", "),
    );
    Ok(())
}

/// One site's window vector ([`SurveillanceSpec::cell`] layout) from the rows of its compiled
/// query (`zip`; `s, age, n`). Rows outside the layout (an unknown region or syndrome, an age
/// without a band) are left out.
pub fn site_surveillance_vector(s: &SurveillanceSpec, rows: &[(String, [i64; 3])]) -> Vec<i64> {
    let mut v = vec![0i64; s.cells()];
    for (zip, [syndrome, age, n]) in rows {
        let Some(r) = s.regions.iter().position(|x| x == zip) else {
            continue;
        };
        let Ok(syn) = usize::try_from(*syndrome) else {
            continue;
        };
        let Some(band) = SurveillanceSpec::band_of(*age) else {
            continue;
        };
        if syn >= s.syndromes.len() {
            continue;
        }
        if let Some(cell) = v.get_mut(s.cell(syn, r, band)) {
            *cell = cell.saturating_add(*n);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::{Aggregate, compile_sql, compile_sql_at, parse};
    use super::*;
    use crate::pharmacovigilance::{Cell, classify};
    use proptest::prelude::*;

    #[test]
    fn civil_dates_invert_day_numbers() {
        use super::super::{civil_of_day, date_of_day};
        assert_eq!(civil_of_day(0), (1970, 1, 1));
        assert_eq!(civil_of_day(20_454), (2026, 1, 1));
        assert_eq!(civil_of_day(20_453), (2025, 12, 31));
        assert_eq!(date_of_day(11_016), "2000-02-29");
        for day in (-60_000..2_900_000).step_by(997) {
            assert_eq!(index_day(&date_of_day(day)).unwrap(), day, "{day}");
        }
    }

    #[test]
    fn surveillance_compiles_only_for_a_window() {
        let (spec, _) = parse(
            r#"{"version":1,"cohort":{"index_date":"2025-12-01"},
            "aggregate":{"surveillance":{"syndromes":[{"name":"ili","codes":["6142004","386661006"]}],
            "regions":["010","013"],"start":"2025-12-30","window_days":1,"windows":56,"epsilon_per_window":0.5}}}"#,
        )
        .unwrap();
        assert!(compile_sql(&spec, "consented").is_err());
        // Window 2 is 2026-01-01: its counts use the ages of 2026.
        let sql = compile_sql_at(&spec, "consented", Some(2)).unwrap();
        assert!(sql.contains("(2026 - p.year_of_birth)"), "{sql}");
        assert!(sql.contains(">= 20454 AND"), "{sql}");
        assert!(sql.contains("< 20455"), "{sql}");
        assert!(sql.contains("('386661006', 0)"), "{sql}");
        assert!(sql.contains("IN ('010', '013')"), "{sql}");
        let Aggregate::Surveillance(s) = &spec.aggregate else {
            panic!()
        };
        let v = site_surveillance_vector(
            s,
            &[
                ("013".into(), [0, 70, 4]),
                ("013".into(), [0, 3, 1]),
                ("999".into(), [0, 3, 1]),
                ("010".into(), [7, 3, 1]),
            ],
        );
        assert_eq!(v.len(), 10);
        assert_eq!(v[s.cell(0, 1, 4)], 4);
        assert_eq!(v[s.cell(0, 1, 0)], 1);
        assert_eq!(v.iter().sum::<i64>(), 5);
    }

    /// One person's record for the tallies: first visit, drug exposures per drug, events per
    /// event group (day numbers).
    #[derive(Debug, Clone)]
    struct Person {
        first: i64,
        exposures: Vec<Vec<i64>>,
        events: Vec<Vec<i64>>,
    }

    fn person(drugs: usize, events: usize) -> impl Strategy<Value = Person> {
        (
            0i64..400,
            proptest::collection::vec(proptest::collection::vec(0i64..800, 0..3), drugs),
            proptest::collection::vec(proptest::collection::vec(0i64..800, 0..3), events),
        )
            .prop_map(|(first, exposures, events)| Person {
                first,
                exposures,
                events,
            })
    }

    /// The query's tallies computed directly from the records, as the SQL defines them.
    fn tallies(people: &[Person], d: &DrugSafetySpec) -> Vec<[i64; 4]> {
        let mut rows = vec![[0, -1, -1, people.len() as i64]];
        let (nd, ne) = (d.drugs.len(), d.events.len());
        let has_event = |p: &Person, e: usize| p.events[e].iter().any(|&t| t >= p.first);
        let first_exp = |p: &Person, x: usize| p.exposures[x].iter().copied().min();
        for x in 0..nd {
            let exp = people.iter().filter(|p| first_exp(p, x).is_some()).count() as i64;
            let nu = people
                .iter()
                .filter(|p| {
                    first_exp(p, x).is_some_and(|i| i - p.first >= i64::from(d.washout_days))
                })
                .count() as i64;
            rows.push([1, x as i64, -1, exp]);
            rows.push([2, x as i64, -1, nu]);
            for e in 0..ne {
                let xe = people
                    .iter()
                    .filter(|p| first_exp(p, x).is_some() && has_event(p, e))
                    .count() as i64;
                rows.push([4, x as i64, e as i64, xe]);
                let a = people
                    .iter()
                    .filter(|p| {
                        first_exp(p, x).is_some_and(|i| {
                            i - p.first >= i64::from(d.washout_days)
                                && p.events[e].iter().any(|&t| {
                                    t >= p.first
                                        && (1..=i64::from(d.window_days)).contains(&(t - i))
                                })
                        })
                    })
                    .count() as i64;
                rows.push([5, x as i64, e as i64, a]);
            }
        }
        for e in 0..ne {
            let n = people.iter().filter(|p| has_event(p, e)).count() as i64;
            rows.push([3, -1, e as i64, n]);
        }
        rows
    }

    fn spec(window_days: u32, washout_days: u32) -> DrugSafetySpec {
        let g = |name: &str, code: &str| super::super::CodeGroup {
            name: name.into(),
            codes: vec![code.into()],
        };
        DrugSafetySpec {
            drugs: vec![g("d0", "1"), g("d1", "2")],
            events: vec![g("e0", "3"), g("e1", "4")],
            pairs: vec![],
            window_days,
            washout_days,
            thresholds: Default::default(),
            fdr: None,
            dp: false,
        }
    }

    proptest! {
        /// The tallies give exactly the cells of `classify` applied person by person.
        #[test]
        fn tallies_give_the_cells_of_the_risk_window_rule(
            people in proptest::collection::vec(person(2, 2), 0..40),
            window in 1u32..60,
            washout in 0u32..200,
        ) {
            let d = spec(window, washout);
            let tables = site_safety_tables(&d, &tallies(&people, &d)).unwrap();
            for (i, (x, e)) in d.pair_indices().into_iter().enumerate() {
                let mut want = [0u64; 4];
                for p in &people {
                    let events: Vec<i64> = p.events[e].iter().copied().filter(|&t| t >= p.first).collect();
                    if let Some(c) = classify(p.first, &p.exposures[x], &events, window, washout) {
                        want[match c { Cell::A => 0, Cell::B => 1, Cell::C => 2, Cell::D => 3 }] += 1;
                    }
                }
                prop_assert_eq!(tables[i].cells(), want);
            }
        }
    }

    #[test]
    fn drug_safety_compiles_every_tally() {
        let (spec, _) = parse(
            r#"{"version":1,"cohort":{"index_date":"2026-01-01"},
            "aggregate":{"drug_safety":{"drugs":[{"name":"warfarin","codes":["855332"]}],
            "events":[{"name":"bleeding","codes":["131148009","74474003"]}],"window_days":30,"washout_days":180}}}"#,
        )
        .unwrap();
        let sql = compile_sql(&spec, "consented").unwrap();
        for kind in 0..6 {
            assert!(sql.contains(&format!("CAST({kind} AS BIGINT)")), "{sql}");
        }
        assert!(sql.contains("BETWEEN 1 AND 30"), "{sql}");
        assert!(sql.contains(">= 180"), "{sql}");
        assert!(sql.contains("('74474003', 0)"), "{sql}");
        assert!(
            site_safety_tables(
                match &spec.aggregate {
                    Aggregate::DrugSafety(d) => d,
                    _ => panic!(),
                },
                &[[9, 0, 0, 1]]
            )
            .is_err()
        );
    }
}
