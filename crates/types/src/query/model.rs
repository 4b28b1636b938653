//! The model and survival specifications a federated query may carry as its aggregate: what a
//! contract approves when a study fits a regression or a survival curve instead of counting.
//!
//! Every variable is built from the CDM relative to the cohort's index date, the same way at
//! every site, so the sites' statistics line up:
//!
//! - [`Feature::Age`]: years at the index date (`index year − year_of_birth`);
//! - [`Feature::Female`]: 1 for recorded sex `female`, 0 for `male` (other values leave the
//!   person out of the model);
//! - [`Feature::Condition`], [`Feature::Drug`], [`Feature::Procedure`]: 1 when the code was
//!   recorded on or before the index date;
//! - [`Feature::Measurement`]: the latest value on or before the index date (ties broken by the
//!   larger value), clamped to `[lower, upper]`; a person without one is left out (complete
//!   cases);
//! - [`Feature::Above`]: 1 when that latest value satisfies the comparison (0 without one);
//! - [`Feature::ConditionWithin`]: 1 when the code is recorded after the index date and at most
//!   `days` days after it (an incident outcome);
//! - [`Feature::CountWithin`]: how many times it is recorded in that window (a Poisson outcome;
//!   the person-time is the window, ended early by death, and enters as `log(days)` offset).
//!
//! A survival specification follows each cohort person from the index date until the event
//! (death, or the first record of a condition after the index date) or censoring (the last
//! visit, death for a condition event, or the horizon), in bins of `bin_days`.
//! Persons who died on or before the index date, or who had the condition event already, are
//! not at risk and are left out. The counts are exact (only their sum leaves the sites, and a
//! curve stops where its risk set falls below the policy's `k`) unless `dp` asks each site to
//! noise them.
//!
//! Like the rest of a query, a specification holds no floating point: bounds and penalties are
//! exact [`Decimal`]s.

use super::{CmpOp, Decimal, QueryError, valid_code};
use serde::{Deserialize, Serialize};

/// Most covariates a model may have (besides its intercept).
pub const MAX_COVARIATES: usize = 16;
/// Most iterations a model may run (each is one secure aggregation of its statistics).
pub const MAX_ITERATIONS: u32 = 50;
/// Longest window or horizon in days (30 years).
pub const MAX_DAYS: u32 = 10_958;
/// Most time bins of a survival curve (each is two cells per group).
pub const MAX_BINS: u32 = 4096;

/// A regression's family and canonical link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Binomial outcome, logit link: odds ratios.
    Logistic,
    /// Count outcome, log link, `log(person-days)` offset: rate ratios.
    Poisson,
    /// Continuous outcome, identity link.
    Linear,
}

impl Family {
    /// The family's name as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Logistic => "logistic",
            Family::Poisson => "poisson",
            Family::Linear => "linear",
        }
    }
}

/// A measurement's latest value on or before the index date, clamped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clamped {
    /// LOINC code (bare).
    pub code: String,
    /// Values below count as this.
    pub lower: Decimal,
    /// Values above count as this.
    pub upper: Decimal,
}

/// Whether a measurement's latest value satisfies a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// LOINC code (bare).
    pub code: String,
    /// The comparison.
    pub op: CmpOp,
    /// The threshold.
    pub value: Decimal,
}

/// A code recorded in the window `(index, index + days]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// SNOMED CT code (bare).
    pub code: String,
    /// Length of the window in days.
    pub days: u32,
}

/// One variable of a model, built from the CDM (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Age in years at the index date.
    Age,
    /// 1 for female, 0 for male.
    Female,
    /// A condition recorded on or before the index date.
    Condition(String),
    /// A drug started on or before the index date.
    Drug(String),
    /// A procedure on or before the index date.
    Procedure(String),
    /// The latest measurement value, clamped.
    Measurement(Clamped),
    /// Whether the latest measurement value passes a threshold.
    Above(Threshold),
    /// A condition recorded in the window after the index date.
    ConditionWithin(Window),
    /// How often a condition is recorded in the window after the index date.
    CountWithin(Window),
}

impl Feature {
    /// A short name for result tables (`age`, `female`, `condition 44054006`, …).
    pub fn name(&self) -> String {
        match self {
            Feature::Age => "age".into(),
            Feature::Female => "female".into(),
            Feature::Condition(c) => format!("condition {c}"),
            Feature::Drug(c) => format!("drug {c}"),
            Feature::Procedure(c) => format!("procedure {c}"),
            Feature::Measurement(m) => format!("measurement {}", m.code),
            Feature::Above(t) => format!("{} {} {}", t.code, t.op.as_str(), t.value),
            Feature::ConditionWithin(w) => format!("condition {} within {}d", w.code, w.days),
            Feature::CountWithin(w) => format!("count {} within {}d", w.code, w.days),
        }
    }

    /// Whether the feature is 0 or 1.
    pub fn binary(&self) -> bool {
        !matches!(
            self,
            Feature::Age | Feature::Measurement(_) | Feature::CountWithin(_)
        )
    }

    /// The largest magnitude the feature can take, in whole units (for clipping bounds of
    /// differentially private models): ages are at most 150, measurements their clamp.
    pub fn bound(&self) -> Decimal {
        match self {
            Feature::Age => Decimal::from_nanos(150_000_000_000),
            Feature::Measurement(m) => Decimal::from_nanos(
                i64::try_from(m.lower.abs_nanos().max(m.upper.abs_nanos())).unwrap_or(i64::MAX),
            ),
            Feature::CountWithin(w) => Decimal::from_nanos(i64::from(w.days) * 1_000_000_000),
            _ => Decimal::from_nanos(1_000_000_000),
        }
    }

    /// The `(table, code)` pair the feature matches, if any.
    pub fn code(&self) -> Option<(&'static str, &str)> {
        match self {
            Feature::Age | Feature::Female => None,
            Feature::Condition(c) => Some(("condition_occurrence", c)),
            Feature::Drug(c) => Some(("drug_exposure", c)),
            Feature::Procedure(c) => Some(("procedure_occurrence", c)),
            Feature::Measurement(m) => Some(("measurement", &m.code)),
            Feature::Above(t) => Some(("measurement", &t.code)),
            Feature::ConditionWithin(w) | Feature::CountWithin(w) => {
                Some(("condition_occurrence", &w.code))
            }
        }
    }

    /// The `(table, field)` pairs the feature reads.
    pub fn reads(&self) -> Vec<(&'static str, &'static str)> {
        let coded = |t, code, date| vec![(t, "person_id"), (t, code), (t, date)];
        match self {
            Feature::Age => vec![("person", "year_of_birth")],
            Feature::Female => vec![("person", "gender_source_value")],
            Feature::Condition(_) | Feature::ConditionWithin(_) => coded(
                "condition_occurrence",
                "condition_source_value",
                "condition_start_date",
            ),
            Feature::CountWithin(_) => {
                let mut r = coded(
                    "condition_occurrence",
                    "condition_source_value",
                    "condition_start_date",
                );
                r.extend([("death", "person_id"), ("death", "death_date")]);
                r
            }
            Feature::Drug(_) => coded(
                "drug_exposure",
                "drug_source_value",
                "drug_exposure_start_date",
            ),
            Feature::Procedure(_) => coded(
                "procedure_occurrence",
                "procedure_source_value",
                "procedure_date",
            ),
            Feature::Measurement(_) | Feature::Above(_) => {
                let mut r = coded(
                    "measurement",
                    "measurement_source_value",
                    "measurement_date",
                );
                r.push(("measurement", "value_as_number"));
                r
            }
        }
    }

    fn validate(&self, field: &'static str, position: usize) -> Result<(), QueryError> {
        let bad_code = QueryError::Code { field, position };
        if let Some((_, code)) = self.code()
            && !valid_code(code)
        {
            return Err(bad_code);
        }
        match self {
            Feature::Measurement(m) => {
                super::check_bound(field, m.lower)?;
                super::check_bound(field, m.upper)?;
                if m.lower >= m.upper {
                    return Err(QueryError::Bounds);
                }
            }
            Feature::Above(t) => super::check_bound(field, t.value)?,
            Feature::ConditionWithin(w) | Feature::CountWithin(w)
                if w.days == 0 || w.days > MAX_DAYS =>
            {
                return Err(QueryError::Model {
                    reason: format!("{field}: a window must be 1 to {MAX_DAYS} days"),
                });
            }
            _ => {}
        }
        Ok(())
    }
}

/// A regression fitted across the sites by Newton / IRLS: the approved computation of a
/// contract that fits a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Family and link.
    pub family: Family,
    /// The outcome: binary for logistic, a count for Poisson, a measurement for linear.
    pub outcome: Feature,
    /// The covariates (an intercept is always added first).
    pub covariates: Vec<Feature>,
    /// Ridge penalty on the non-intercept coefficients (0 or absent: none).
    #[serde(default)]
    pub l2: Option<Decimal>,
    /// Most Newton iterations (default 25).
    #[serde(default = "default_iterations")]
    pub max_iterations: u32,
    /// Whether each site adds calibrated Gaussian noise to its statistics at every iteration
    /// (zero-concentrated DP, the job's epsilon spread over `max_iterations`).
    #[serde(default)]
    pub dp: bool,
}

fn default_iterations() -> u32 {
    25
}

impl ModelSpec {
    /// The coefficient names: `intercept`, then each covariate's.
    pub fn terms(&self) -> Vec<String> {
        std::iter::once("intercept".to_string())
            .chain(self.covariates.iter().map(Feature::name))
            .collect()
    }

    /// Checks the specification.
    pub fn validate(&self) -> Result<(), QueryError> {
        let model = |reason: String| Err(QueryError::Model { reason });
        if self.covariates.is_empty() || self.covariates.len() > MAX_COVARIATES {
            return model(format!("a model needs 1 to {MAX_COVARIATES} covariates"));
        }
        if self.max_iterations == 0 || self.max_iterations > MAX_ITERATIONS {
            return model(format!("max_iterations must be 1 to {MAX_ITERATIONS}"));
        }
        if let Some(l2) = self.l2
            && (l2.nanos() < 0 || l2.abs_nanos() > 1_000_000_000_000_000)
        {
            return model("l2 must be 0 to 1e9".into());
        }
        self.outcome.validate("model.outcome", 0)?;
        for (i, c) in self.covariates.iter().enumerate() {
            c.validate("model.covariates", i)?;
            if self.covariates.iter().take(i).any(|d| d == c) || *c == self.outcome {
                return model(format!("covariate {i} repeats a variable"));
            }
        }
        let fits = match self.family {
            Family::Logistic => self.outcome.binary(),
            Family::Poisson => matches!(self.outcome, Feature::CountWithin(_)),
            Family::Linear => matches!(self.outcome, Feature::Measurement(_) | Feature::Age),
        };
        if !fits {
            return model(format!(
                "a {} model needs a {} outcome",
                self.family.as_str(),
                match self.family {
                    Family::Logistic => "binary",
                    Family::Poisson => "count_within",
                    Family::Linear => "measurement",
                }
            ));
        }
        Ok(())
    }

    /// Every variable: the outcome, then the covariates.
    pub fn variables(&self) -> impl Iterator<Item = &Feature> {
        std::iter::once(&self.outcome).chain(self.covariates.iter())
    }
}

/// What ends a survival time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Death (`death.death_date`).
    Death,
    /// The first record of this condition after the index date.
    Condition(String),
}

/// Kaplan–Meier curves per group (the query's `group_by`) and the log-rank test between them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurvivalSpec {
    /// The event.
    pub event: Event,
    /// Follow-up in days; later times are censored here.
    pub horizon_days: u32,
    /// Width of a time bin in days (1: exact daily times).
    pub bin_days: u32,
    /// Whether each site adds discrete Laplace noise to its counts (calibrated to the job's
    /// epsilon). Without it the counts are exact and only their sum leaves the sites (secure
    /// aggregation); a curve stops where its risk set falls below the policy's `k`.
    #[serde(default)]
    pub dp: bool,
}

impl SurvivalSpec {
    /// Number of time bins (`⌈horizon / bin⌉`).
    pub fn bins(&self) -> usize {
        self.horizon_days.div_ceil(self.bin_days.max(1)) as usize
    }

    /// Checks the specification.
    pub fn validate(&self) -> Result<(), QueryError> {
        let bad = |reason: String| Err(QueryError::Model { reason });
        if self.horizon_days == 0 || self.horizon_days > MAX_DAYS {
            return bad(format!("horizon_days must be 1 to {MAX_DAYS}"));
        }
        if self.bin_days == 0 || self.bin_days > self.horizon_days {
            return bad("bin_days must be 1 to horizon_days".into());
        }
        if self.horizon_days.div_ceil(self.bin_days) > MAX_BINS {
            return bad(format!("at most {MAX_BINS} bins (widen bin_days)"));
        }
        if let Event::Condition(c) = &self.event
            && !valid_code(c)
        {
            return Err(QueryError::Code {
                field: "survival.event",
                position: 0,
            });
        }
        Ok(())
    }

    /// The `(table, field)` pairs it reads besides the cohort's.
    pub fn reads(&self) -> Vec<(&'static str, &'static str)> {
        let mut r = vec![
            ("death", "person_id"),
            ("death", "death_date"),
            ("visit_occurrence", "person_id"),
            ("visit_occurrence", "visit_start_date"),
        ];
        if let Event::Condition(_) = self.event {
            r.extend([
                ("condition_occurrence", "person_id"),
                ("condition_occurrence", "condition_source_value"),
                ("condition_occurrence", "condition_start_date"),
            ]);
        }
        r
    }
}
