//! The federated query language's compiler. The specification itself — a versioned,
//! declarative cohort + aggregate (JSON), never SQL from outside — lives in
//! [`medspace_types::query`] (the ledger classifies requests by it) and is re-exported here, so
//! `medspace_privacy::query::{QuerySpec, parse, groups, …}` keep working. This module compiles a
//! validated spec to SQL over the node's OMOP-like tables, always joined to the contract's
//! consent allow-list; the result is vectorized over the fixed group layout of [`groups`] so
//! every site's vector lines up for secure aggregation. The semantics of a compiled query are
//! those documented on [`medspace_types::query`].

pub mod claims;
pub mod features;
pub mod health;

use std::fmt::Write as _;

pub use medspace_types::query::*;

fn valid_table_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A decimal as a SQL literal: always with a decimal point, never an exponent.
pub(crate) fn sql_decimal(v: Decimal) -> String {
    v.to_string()
}

/// Compiles a spec to one SQL statement for DataFusion over the node's tables and the consent
/// allow-list `consented_table(person_id Int64)`. Codes are validated to `[A-Za-z0-9.-]` and so
/// cannot break out of their string literals; the table name is validated and double-quoted.
/// A surveillance definition runs per window: it compiles only with [`compile_sql_at`].
pub fn compile_sql(spec: &QuerySpec, consented_table: &str) -> Result<String, QueryError> {
    compile_sql_at(spec, consented_table, None)
}

/// [`compile_sql`] for window `window` of a surveillance definition (the ledger's schedule
/// gives each job its window): the cohort's age and birth-year bound are those of the window's
/// first year. Other aggregates take no window.
pub fn compile_sql_at(
    spec: &QuerySpec,
    consented_table: &str,
    window: Option<u32>,
) -> Result<String, QueryError> {
    validate(spec)?;
    if !valid_table_name(consented_table) {
        return Err(QueryError::TableName);
    }
    let c = &spec.cohort;
    let year = match (&spec.aggregate, window) {
        (Aggregate::Surveillance(s), Some(w)) => health::window_year(s, w)?,
        (Aggregate::Surveillance(_), None) => {
            return Err(QueryError::Model {
                reason: "a surveillance definition runs per window (the ledger gives each job its window)".into(),
            });
        }
        (_, Some(_)) => {
            return Err(QueryError::Model {
                reason: "only a surveillance definition runs per window".into(),
            });
        }
        (_, None) => index_year(&c.index_date)?,
    };
    let date = format!("DATE '{}'", c.index_date);
    let age = format!("({year} - p.year_of_birth)");

    let mut sql = String::new();
    let _ = writeln!(sql, "WITH cohort AS (");
    let _ = writeln!(
        sql,
        "  SELECT p.person_id, p.gender_source_value AS sex, {age} AS age"
    );
    let _ = writeln!(sql, "  FROM person p");
    let _ = writeln!(
        sql,
        "  JOIN (SELECT DISTINCT person_id FROM \"{consented_table}\") c ON c.person_id = p.person_id"
    );
    let _ = writeln!(sql, "  WHERE p.year_of_birth <= {year}");
    if let Some(sex) = c.sex {
        let _ = writeln!(sql, "    AND p.gender_source_value = '{}'", sex.as_str());
    } else if spec.group_by.contains(&GroupField::Sex) {
        let _ = writeln!(sql, "    AND p.gender_source_value IN ('female', 'male')");
    }
    if let Some(range) = c.age {
        let _ = writeln!(sql, "    AND {age} BETWEEN {} AND {}", range.min, range.max);
    }
    let lists: [(&[String], &str, &str, &str); 3] = [
        (
            &c.conditions,
            "condition_occurrence",
            "condition_source_value",
            "condition_start_date",
        ),
        (
            &c.drugs,
            "drug_exposure",
            "drug_source_value",
            "drug_exposure_start_date",
        ),
        (
            &c.procedures,
            "procedure_occurrence",
            "procedure_source_value",
            "procedure_date",
        ),
    ];
    for (codes, table, code_col, date_col) in lists {
        for code in codes {
            let _ = writeln!(
                sql,
                "    AND p.person_id IN (SELECT person_id FROM {table} WHERE {code_col} = '{code}' AND {date_col} <= {date})"
            );
        }
    }
    if let Some(m) = &c.measurement {
        let _ = writeln!(
            sql,
            "    AND p.person_id IN (SELECT person_id FROM measurement WHERE measurement_source_value = '{}' AND measurement_date <= {date} AND value_as_number {} {})",
            m.code,
            m.op.as_str(),
            sql_decimal(m.value)
        );
    }
    let _ = write!(sql, ")");
    match &spec.aggregate {
        Aggregate::Model(model) => {
            features::model_rows(&mut sql, model, &c.index_date)?;
            return Ok(sql);
        }
        Aggregate::Survival(surv) => {
            features::survival_rows(&mut sql, surv, &c.index_date, &spec.group_by)?;
            return Ok(sql);
        }
        Aggregate::DrugSafety(d) => {
            health::drug_safety_rows(&mut sql, d);
            return Ok(sql);
        }
        Aggregate::Surveillance(s) => {
            // INVARIANT: a surveillance spec reached here with a window (checked above).
            health::surveillance_rows(&mut sql, s, window.unwrap_or(0))?;
            return Ok(sql);
        }
        Aggregate::Claims(c) => {
            claims::clinical_rows(&mut sql, c, spec);
            return Ok(sql);
        }
        Aggregate::Overlap(_) => {
            // The cohort's persons: their pseudonyms go into the intersection, never a row.
            let _ = write!(sql, "\nSELECT person_id FROM cohort ORDER BY person_id");
            return Ok(sql);
        }
        Aggregate::Count | Aggregate::Mean(_) => {}
    }

    let mut cols: Vec<String> = Vec::new();
    for field in &spec.group_by {
        cols.push(
            match field {
                GroupField::Sex => "sex",
                GroupField::AgeBand => "age_band",
            }
            .to_string(),
        );
    }
    let keys = cols.join(", ");
    cols.push("CAST(COUNT(*) AS BIGINT) AS n".to_string());
    let band = age_band_sql("k.age");
    match &spec.aggregate {
        Aggregate::Count => {
            let _ = writeln!(sql, ",");
            let _ = writeln!(sql, "cells AS (");
            let _ = writeln!(sql, "  SELECT k.sex AS sex, {band} AS age_band");
            let _ = writeln!(sql, "  FROM cohort k");
            let _ = writeln!(sql, ")");
        }
        Aggregate::Model(_)
        | Aggregate::Survival(_)
        | Aggregate::DrugSafety(_)
        | Aggregate::Surveillance(_)
        | Aggregate::Claims(_)
        | Aggregate::Overlap(_) => {}
        Aggregate::Mean(mean) => {
            let _ = writeln!(sql, ",");
            let _ = writeln!(sql, "latest AS (");
            let _ = writeln!(sql, "  SELECT person_id, v FROM (");
            let _ = writeln!(
                sql,
                "    SELECT person_id, value_as_number AS v, ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY measurement_date DESC, value_as_number DESC) AS rn"
            );
            let _ = writeln!(
                sql,
                "    FROM measurement WHERE measurement_source_value = '{}' AND measurement_date <= {date} AND value_as_number IS NOT NULL",
                mean.measurement
            );
            let _ = writeln!(sql, "  ) m WHERE rn = 1");
            let _ = writeln!(sql, "),");
            let _ = writeln!(sql, "cells AS (");
            let _ = writeln!(sql, "  SELECT k.sex AS sex, {band} AS age_band, l.v AS v");
            let _ = writeln!(
                sql,
                "  FROM cohort k JOIN latest l ON l.person_id = k.person_id"
            );
            let _ = writeln!(sql, ")");
            let (lo, hi) = (sql_decimal(mean.lower), sql_decimal(mean.upper));
            cols.push(format!(
                "CAST(COALESCE(SUM(CAST(ROUND((CASE WHEN v < {lo} THEN {lo} WHEN v > {hi} THEN {hi} ELSE v END) * {FIXED_POINT_SCALE}.0) AS BIGINT)), 0) AS BIGINT) AS sum_fixed"
            ));
        }
    }
    let _ = write!(sql, "SELECT {}\nFROM cells", cols.join(", "));
    if !keys.is_empty() {
        let _ = write!(sql, "\nGROUP BY {keys}\nORDER BY {keys}");
    }
    Ok(sql)
}

/// `CASE` expression mapping an age column to its band label.
pub(crate) fn age_band_sql(col: &str) -> String {
    let mut s = String::from("CASE");
    for band in AgeBand::all().take(9) {
        let _ = write!(
            s,
            " WHEN {col} < {} THEN '{}'",
            (u32::from(band.index()) + 1) * 10,
            band.label()
        );
    }
    s.push_str(" ELSE '90+' END");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> QuerySpec {
        serde_json::from_str(
            r#"{ "version": 1,
                 "cohort": { "conditions": ["44054006"], "drugs": [], "procedures": [],
                             "measurement": {"code": "4548-4", "op": ">=", "value": 6.5},
                             "sex": "female", "age": {"min": 40, "max": 80},
                             "index_date": "2024-01-01" },
                 "aggregate": "count",
                 "group_by": ["sex", "age_band"] }"#,
        )
        .unwrap()
    }

    const BAND: &str = "CASE WHEN k.age < 10 THEN '0-9' WHEN k.age < 20 THEN '10-19' WHEN k.age < 30 THEN '20-29' WHEN k.age < 40 THEN '30-39' WHEN k.age < 50 THEN '40-49' WHEN k.age < 60 THEN '50-59' WHEN k.age < 70 THEN '60-69' WHEN k.age < 80 THEN '70-79' WHEN k.age < 90 THEN '80-89' ELSE '90+' END";

    #[test]
    fn golden_count_grouped() {
        let sql = compile_sql(&example(), "consented_job_1").unwrap();
        let expected = format!(
            "WITH cohort AS (
  SELECT p.person_id, p.gender_source_value AS sex, (2024 - p.year_of_birth) AS age
  FROM person p
  JOIN (SELECT DISTINCT person_id FROM \"consented_job_1\") c ON c.person_id = p.person_id
  WHERE p.year_of_birth <= 2024
    AND p.gender_source_value = 'female'
    AND (2024 - p.year_of_birth) BETWEEN 40 AND 80
    AND p.person_id IN (SELECT person_id FROM condition_occurrence WHERE condition_source_value = '44054006' AND condition_start_date <= DATE '2024-01-01')
    AND p.person_id IN (SELECT person_id FROM measurement WHERE measurement_source_value = '4548-4' AND measurement_date <= DATE '2024-01-01' AND value_as_number >= 6.5)
),
cells AS (
  SELECT k.sex AS sex, {BAND} AS age_band
  FROM cohort k
)
SELECT sex, age_band, CAST(COUNT(*) AS BIGINT) AS n
FROM cells
GROUP BY sex, age_band
ORDER BY sex, age_band"
        );
        assert_eq!(sql, expected);
    }

    #[test]
    fn golden_mean_ungrouped() {
        let spec: QuerySpec = serde_json::from_str(
            r#"{ "version": 1,
                 "cohort": { "drugs": ["860975"], "procedures": ["73761001"], "index_date": "2020-02-29" },
                 "aggregate": {"mean": {"measurement": "4548-4", "lower": 0, "upper": 20}} }"#,
        )
        .unwrap();
        let sql = compile_sql(&spec, "allow").unwrap();
        let expected = format!(
            "WITH cohort AS (
  SELECT p.person_id, p.gender_source_value AS sex, (2020 - p.year_of_birth) AS age
  FROM person p
  JOIN (SELECT DISTINCT person_id FROM \"allow\") c ON c.person_id = p.person_id
  WHERE p.year_of_birth <= 2020
    AND p.person_id IN (SELECT person_id FROM drug_exposure WHERE drug_source_value = '860975' AND drug_exposure_start_date <= DATE '2020-02-29')
    AND p.person_id IN (SELECT person_id FROM procedure_occurrence WHERE procedure_source_value = '73761001' AND procedure_date <= DATE '2020-02-29')
),
latest AS (
  SELECT person_id, v FROM (
    SELECT person_id, value_as_number AS v, ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY measurement_date DESC, value_as_number DESC) AS rn
    FROM measurement WHERE measurement_source_value = '4548-4' AND measurement_date <= DATE '2020-02-29' AND value_as_number IS NOT NULL
  ) m WHERE rn = 1
),
cells AS (
  SELECT k.sex AS sex, {BAND} AS age_band, l.v AS v
  FROM cohort k JOIN latest l ON l.person_id = k.person_id
)
SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(SUM(CAST(ROUND((CASE WHEN v < 0.0 THEN 0.0 WHEN v > 20.0 THEN 20.0 ELSE v END) * 1000.0) AS BIGINT)), 0) AS BIGINT) AS sum_fixed
FROM cells"
        );
        assert_eq!(sql, expected);
        let v = validate(&spec).unwrap();
        assert_eq!(
            v.groups,
            vec![GroupKey {
                sex: None,
                age_band: None
            }]
        );
        assert_eq!(
            v.reads,
            vec![
                ("drug_exposure", "drug_exposure_start_date"),
                ("drug_exposure", "drug_source_value"),
                ("drug_exposure", "person_id"),
                ("measurement", "measurement_date"),
                ("measurement", "measurement_source_value"),
                ("measurement", "person_id"),
                ("measurement", "value_as_number"),
                ("person", "person_id"),
                ("person", "year_of_birth"),
                ("procedure_occurrence", "person_id"),
                ("procedure_occurrence", "procedure_date"),
                ("procedure_occurrence", "procedure_source_value"),
            ]
        );
    }

    #[test]
    fn group_by_sex_only_restricts_to_known_sexes() {
        let mut spec = example();
        spec.cohort.sex = None;
        spec.group_by = vec![GroupField::Sex];
        let sql = compile_sql(&spec, "allow").unwrap();
        assert!(sql.contains("AND p.gender_source_value IN ('female', 'male')"));
        assert!(sql.ends_with("GROUP BY sex\nORDER BY sex"));
    }

    #[test]
    fn hostile_strings_are_rejected() {
        for bad in [
            "44054006'; DROP TABLE person; --",
            "x' OR '1'='1",
            "",
            "a b",
            "a\"b",
            "123456789012345678901234567890123",
            "é",
            "a\nb",
            "a/*",
        ] {
            let mut spec = example();
            spec.cohort.conditions = vec!["1".into(), bad.into()];
            assert_eq!(
                validate(&spec),
                Err(QueryError::Code {
                    field: "conditions",
                    position: 1
                }),
                "{bad:?}"
            );
            assert!(compile_sql(&spec, "allow").is_err());
            let mut spec = example();
            spec.cohort.index_date = bad.into();
            assert_eq!(validate(&spec), Err(QueryError::IndexDate));
            let mut spec = example();
            spec.aggregate = Aggregate::Mean(MeanSpec {
                measurement: bad.into(),
                lower: Decimal::from_nanos(0),
                upper: Decimal::from_units(1).unwrap(),
            });
            assert!(validate(&spec).is_err());
            assert_eq!(compile_sql(&example(), bad), Err(QueryError::TableName));
        }
        for bad in ["allow\"; DROP TABLE person; --", "1abc", "a-b", "a.b"] {
            assert_eq!(compile_sql(&example(), bad), Err(QueryError::TableName));
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// The largest magnitude a valid number has, in billionths (1e9 units).
        const NANOS_MAX: i64 = 1_000_000_000_000_000_000;

        fn code() -> impl Strategy<Value = String> {
            "[A-Za-z0-9.-]{1,32}"
        }

        fn spec() -> impl Strategy<Value = QuerySpec> {
            let cohort = (
                prop::collection::vec(code(), 0..3),
                prop::collection::vec(code(), 0..3),
                prop::collection::vec(code(), 0..3),
                prop::option::of((code(), 0usize..5, -NANOS_MAX..=NANOS_MAX)),
                prop::option::of(prop::bool::ANY),
                prop::option::of((0u32..=150, 0u32..=150)),
                (1800u32..3000, 1u32..=12, 1u32..=28),
            );
            let aggregate = prop::option::of((code(), -NANOS_MAX..0, 0..=NANOS_MAX));
            let group_by =
                prop::sample::subsequence(vec![GroupField::Sex, GroupField::AgeBand], 0..=2)
                    .prop_shuffle();
            (cohort, aggregate, group_by).prop_map(|((c, d, p, m, s, a, (y, mo, da)), agg, g)| {
                let ops = [CmpOp::Ge, CmpOp::Gt, CmpOp::Le, CmpOp::Lt, CmpOp::Eq];
                QuerySpec {
                    version: 1,
                    cohort: Cohort {
                        conditions: c,
                        drugs: d,
                        procedures: p,
                        measurement: m.map(|(code, op, value)| MeasurementFilter {
                            code,
                            op: ops[op],
                            value: Decimal::from_nanos(value),
                        }),
                        sex: s.map(|f| if f { Sex::Female } else { Sex::Male }),
                        age: a.map(|(x, y)| AgeRange {
                            min: x.min(y),
                            max: x.max(y),
                        }),
                        index_date: format!("{y:04}-{mo:02}-{da:02}"),
                    },
                    aggregate: match agg {
                        None => Aggregate::Count,
                        Some((measurement, lower, upper)) => Aggregate::Mean(MeanSpec {
                            measurement,
                            lower: Decimal::from_nanos(lower),
                            upper: Decimal::from_nanos(upper),
                        }),
                    },
                    group_by: g,
                }
            })
        }

        proptest! {
            #[test]
            fn every_valid_spec_compiles(spec in spec()) {
                let v = validate(&spec).unwrap();
                let sql = compile_sql(&spec, "consented").unwrap();
                prop_assert!(sql.contains("FROM \"consented\") c ON c.person_id = p.person_id"));
                prop_assert_eq!(v.groups.len(), groups(&spec).len());
                let expected = spec.group_by.iter().map(|f| match f {
                    GroupField::Sex => 2,
                    GroupField::AgeBand => 10,
                }).product::<usize>();
                prop_assert_eq!(v.groups.len(), expected);
                // JSON round trip gives the same SQL.
                let json = serde_json::to_string(&spec).unwrap();
                let (back, _) = parse(&json).unwrap();
                prop_assert_eq!(compile_sql(&back, "consented").unwrap(), sql);
            }

            #[test]
            fn arbitrary_codes_validate_iff_well_formed(s in ".{0,40}") {
                let mut spec = example();
                spec.cohort.drugs = vec![s.clone()];
                let ok = valid_code(&s);
                prop_assert_eq!(validate(&spec).is_ok(), ok);
                if !ok {
                    prop_assert!(compile_sql(&spec, "consented").is_err());
                }
            }
        }
    }
}
