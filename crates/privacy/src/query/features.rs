//! The per-person rows of a model or a survival curve, compiled to SQL after the cohort of
//! [`super::compile_sql`]. These rows never leave the site: the data plane turns them
//! into the site's statistics ([`crate::glm::site_stats`], [`crate::survival::site_vector`]),
//! and only those (masked) do.
//!
//! A model's query returns one row per cohort person with a complete set of variables:
//! `y`, `x0 … x{k-1}` (Float64, the covariates in the specification's order) and, for a Poisson
//! model, `days` (Float64, the person-time of the outcome's window, ended early by death). A
//! survival query returns the group columns of `group_by`, `days` (Int64, from the index date to
//! the event or censoring, at least 0) and `event` (Int64, 1 or 0).
//!
//! Dates are compared as their day numbers (`CAST(date AS BIGINT)`, days since 1970-01-01), so a
//! window is integer arithmetic on the index day computed here.

use super::{
    Clamped, Event, Feature, GroupField, ModelSpec, QueryError, SurvivalSpec, Threshold,
    age_band_sql, index_day, sql_decimal,
};
use std::fmt::Write as _;

/// How a variable joins the cohort and the expression that gives its value.
struct Joined {
    cte: Option<String>,
    join: Option<String>,
    expr: String,
}

fn day(col: &str) -> String {
    format!("CAST({col} AS BIGINT)")
}

fn latest(name: &str, code: &str, idx: i64) -> String {
    format!(
        "{name} AS (\n  SELECT person_id, v FROM (\n    SELECT person_id, value_as_number AS v, ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY measurement_date DESC, value_as_number DESC) AS rn\n    FROM measurement WHERE measurement_source_value = '{code}' AND {} <= {idx} AND value_as_number IS NOT NULL\n  ) m WHERE rn = 1\n)",
        day("measurement_date")
    )
}

fn coded(feature: &Feature) -> Option<(&'static str, &'static str, &'static str)> {
    match feature {
        Feature::Condition(_) | Feature::ConditionWithin(_) | Feature::CountWithin(_) => Some((
            "condition_occurrence",
            "condition_source_value",
            "condition_start_date",
        )),
        Feature::Drug(_) => Some((
            "drug_exposure",
            "drug_source_value",
            "drug_exposure_start_date",
        )),
        Feature::Procedure(_) => Some((
            "procedure_occurrence",
            "procedure_source_value",
            "procedure_date",
        )),
        _ => None,
    }
}

fn joined(feature: &Feature, name: &str, idx: i64) -> Joined {
    let present = format!("CASE WHEN {name}.person_id IS NULL THEN 0.0 ELSE 1.0 END");
    let left = Some(format!(
        "LEFT JOIN {name} ON {name}.person_id = k.person_id"
    ));
    match feature {
        Feature::Age => Joined {
            cte: None,
            join: None,
            expr: "CAST(k.age AS DOUBLE)".into(),
        },
        Feature::Female => Joined {
            cte: None,
            join: None,
            expr: "CASE WHEN k.sex = 'female' THEN 1.0 ELSE 0.0 END".into(),
        },
        Feature::Condition(code) | Feature::Drug(code) | Feature::Procedure(code) => {
            let (table, code_col, date_col) = coded(feature).unwrap_or_default();
            Joined {
                cte: Some(format!(
                    "{name} AS (SELECT DISTINCT person_id FROM {table} WHERE {code_col} = '{code}' AND {} <= {idx})",
                    day(date_col)
                )),
                join: left,
                expr: present,
            }
        }
        Feature::ConditionWithin(w) => Joined {
            cte: Some(format!(
                "{name} AS (SELECT DISTINCT person_id FROM condition_occurrence WHERE condition_source_value = '{}' AND {d} > {idx} AND {d} <= {})",
                w.code,
                idx + i64::from(w.days),
                d = day("condition_start_date"),
            )),
            join: left,
            expr: present,
        },
        Feature::CountWithin(w) => Joined {
            cte: Some(format!(
                "{name} AS (SELECT person_id, COUNT(*) AS c FROM condition_occurrence WHERE condition_source_value = '{}' AND {d} > {idx} AND {d} <= {} GROUP BY person_id)",
                w.code,
                idx + i64::from(w.days),
                d = day("condition_start_date"),
            )),
            join: left,
            expr: format!("CAST(COALESCE({name}.c, 0) AS DOUBLE)"),
        },
        Feature::Measurement(Clamped { code, lower, upper }) => {
            let (lo, hi) = (sql_decimal(*lower), sql_decimal(*upper));
            Joined {
                cte: Some(latest(name, code, idx)),
                join: Some(format!("JOIN {name} ON {name}.person_id = k.person_id")),
                expr: format!(
                    "CAST(CASE WHEN {name}.v < {lo} THEN {lo} WHEN {name}.v > {hi} THEN {hi} ELSE {name}.v END AS DOUBLE)"
                ),
            }
        }
        Feature::Above(Threshold { code, op, value }) => Joined {
            cte: Some(latest(name, code, idx)),
            join: left,
            expr: format!(
                "CASE WHEN {name}.v {} {} THEN 1.0 ELSE 0.0 END",
                op.as_str(),
                sql_decimal(*value)
            ),
        },
    }
}

/// Appends to `sql` (which holds the `WITH cohort AS (…)` head) the rest of a model's query.
pub(crate) fn model_rows(
    sql: &mut String,
    model: &ModelSpec,
    index_date: &str,
) -> Result<(), QueryError> {
    let idx = index_day(index_date)?;
    let mut ctes = Vec::new();
    let mut joins = Vec::new();
    let mut cols = Vec::new();
    for (i, feature) in model.variables().enumerate() {
        let j = joined(feature, &format!("v{i}"), idx);
        ctes.extend(j.cte);
        joins.extend(j.join);
        let col = if i == 0 {
            "y".to_string()
        } else {
            format!("x{}", i - 1)
        };
        cols.push(format!("{} AS {col}", j.expr));
    }
    let mut filters = vec!["k.sex IN ('female', 'male')".to_string()];
    if let Feature::CountWithin(w) = &model.outcome {
        ctes.push(format!(
            "dth AS (SELECT person_id, MIN({}) AS d FROM death GROUP BY person_id)",
            day("death_date")
        ));
        joins.push("LEFT JOIN dth ON dth.person_id = k.person_id".into());
        filters.push(format!("(dth.d IS NULL OR dth.d > {idx})"));
        let end = idx + i64::from(w.days);
        cols.push(format!(
            "CAST(CASE WHEN dth.d IS NOT NULL AND dth.d < {end} THEN dth.d - {idx} ELSE {} END AS DOUBLE) AS days",
            w.days
        ));
    }
    for cte in &ctes {
        let _ = write!(sql, ",\n{cte}");
    }
    let _ = write!(
        sql,
        "\nSELECT {}\nFROM cohort k\n{}\nWHERE {}\nORDER BY k.person_id",
        cols.join(", "),
        joins.join("\n"),
        filters.join(" AND ")
    );
    Ok(())
}

/// Appends to `sql` (which holds the `WITH cohort AS (…)` head) the rest of a survival query.
pub(crate) fn survival_rows(
    sql: &mut String,
    surv: &SurvivalSpec,
    index_date: &str,
    group_by: &[GroupField],
) -> Result<(), QueryError> {
    let idx = index_day(index_date)?;
    let _ = write!(
        sql,
        ",\ndth AS (SELECT person_id, MIN({}) AS d FROM death GROUP BY person_id),\nlastv AS (SELECT person_id, MAX({}) AS l FROM visit_occurrence GROUP BY person_id)",
        day("death_date"),
        day("visit_start_date")
    );
    let mut filters = vec![format!("(dth.d IS NULL OR dth.d > {idx})")];
    let mut joins = vec![
        "LEFT JOIN dth ON dth.person_id = k.person_id".to_string(),
        "LEFT JOIN lastv ON lastv.person_id = k.person_id".to_string(),
    ];
    let censor = format!("GREATEST(COALESCE(lastv.l, {idx}), {idx})");
    let (end, event) = match &surv.event {
        Event::Death => (
            format!("CASE WHEN dth.d IS NOT NULL THEN dth.d ELSE {censor} END"),
            "dth.d IS NOT NULL".to_string(),
        ),
        Event::Condition(code) => {
            let d = day("condition_start_date");
            let _ = write!(
                sql,
                ",\nev AS (SELECT person_id, MIN({d}) AS e FROM condition_occurrence WHERE condition_source_value = '{code}' AND {d} > {idx} GROUP BY person_id),\nprior AS (SELECT DISTINCT person_id FROM condition_occurrence WHERE condition_source_value = '{code}' AND {d} <= {idx})"
            );
            joins.push("LEFT JOIN ev ON ev.person_id = k.person_id".into());
            joins.push("LEFT JOIN prior ON prior.person_id = k.person_id".into());
            filters.push("prior.person_id IS NULL".into());
            (
                format!(
                    "CASE WHEN ev.e IS NOT NULL THEN ev.e WHEN dth.d IS NOT NULL AND dth.d < {censor} THEN dth.d ELSE {censor} END"
                ),
                "ev.e IS NOT NULL".to_string(),
            )
        }
    };
    let mut cols = Vec::new();
    for field in group_by {
        cols.push(match field {
            GroupField::Sex => "k.sex AS sex".to_string(),
            GroupField::AgeBand => format!("{} AS age_band", age_band_sql("k.age")),
        });
    }
    cols.push(format!("CAST(({end}) - {idx} AS BIGINT) AS days"));
    cols.push(format!(
        "CAST(CASE WHEN {event} THEN 1 ELSE 0 END AS BIGINT) AS event"
    ));
    let _ = write!(
        sql,
        "\nSELECT {}\nFROM cohort k\n{}\nWHERE {}\nORDER BY k.person_id",
        cols.join(", "),
        joins.join("\n"),
        filters.join(" AND ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::{compile_sql, parse};

    #[test]
    fn a_model_selects_one_row_per_person_with_its_variables() {
        let (spec, v) = parse(
            r#"{"version":1,"cohort":{"index_date":"2020-01-01"},
                "aggregate":{"model":{"family":"logistic","outcome":{"condition":"44054006"},
                  "covariates":["age","female",{"measurement":{"code":"39156-5","lower":10,"upper":60}},
                                {"above":{"code":"4548-4","op":">=","value":6.5}}]}}}"#,
        )
        .unwrap();
        let sql = compile_sql(&spec, "consented").unwrap();
        assert!(sql.contains("AS y, CAST(k.age AS DOUBLE) AS x0"), "{sql}");
        assert!(sql.contains("JOIN v3 ON v3.person_id"), "{sql}");
        assert!(sql.contains("LEFT JOIN v4"), "{sql}");
        assert!(v.reads.contains(&("measurement", "value_as_number")));
        assert!(
            v.reads
                .contains(&("condition_occurrence", "condition_source_value"))
        );
    }

    #[test]
    fn survival_and_model_specs_are_checked() {
        let bad = [
            // a model cannot be grouped
            r#"{"version":1,"cohort":{"index_date":"2020-01-01"},"group_by":["sex"],
                "aggregate":{"model":{"family":"logistic","outcome":"female","covariates":["age"]}}}"#,
            // a Poisson model needs a count outcome
            r#"{"version":1,"cohort":{"index_date":"2020-01-01"},
                "aggregate":{"model":{"family":"poisson","outcome":"female","covariates":["age"]}}}"#,
            // no covariates
            r#"{"version":1,"cohort":{"index_date":"2020-01-01"},
                "aggregate":{"model":{"family":"logistic","outcome":"female","covariates":[]}}}"#,
            // a bad code
            r#"{"version":1,"cohort":{"index_date":"2020-01-01"},
                "aggregate":{"model":{"family":"logistic","outcome":{"condition":"x'--"},"covariates":["age"]}}}"#,
            // too many bins
            r#"{"version":1,"cohort":{"index_date":"2020-01-01"},
                "aggregate":{"survival":{"event":"death","horizon_days":10000,"bin_days":1}}}"#,
            // an outcome repeated as a covariate
            r#"{"version":1,"cohort":{"index_date":"2020-01-01"},
                "aggregate":{"model":{"family":"logistic","outcome":"female","covariates":["female"]}}}"#,
        ];
        for json in bad {
            assert!(parse(json).is_err(), "{json}");
        }
        let (spec, v) = parse(
            r#"{"version":1,"cohort":{"index_date":"2020-01-01"},"group_by":["sex"],
                "aggregate":{"survival":{"event":{"condition":"44054006"},"horizon_days":3650,"bin_days":30}}}"#,
        )
        .unwrap();
        assert!(v.reads.contains(&("death", "death_date")));
        let sql = compile_sql(&spec, "consented").unwrap();
        assert!(sql.contains("prior.person_id IS NULL"), "{sql}");
        assert!(sql.contains("k.sex AS sex"), "{sql}");
    }
}
