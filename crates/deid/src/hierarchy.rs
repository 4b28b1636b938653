//! Generalization hierarchies: each quasi-identifier is generalized level by level up to `*`.
//!
//! | kind       | levels (0 → top)                                   | values        |
//! |------------|----------------------------------------------------|---------------|
//! | `interval` | exact, one band per width (`40-44`), `*`           | `Int`         |
//! | `date`     | day (`2019-03-14`), month (`2019-03`), year, `*`   | `Date`        |
//! | `prefix`   | full, first `keep[i]` chars padded with `*`, `*`   | `Text`        |
//! | `tree`     | code, parent, …, `levels`-th ancestor, `*`         | `Text`, `Int` |
//! | `suppress` | value, `*`                                         | any           |
//!
//! `Missing` is `*` at every level. Each level is a function of the one below (validated:
//! interval widths divide each other, prefix lengths decrease; the search re-checks on the
//! data), which is what makes the lattice's monotonicity and the roll-up sound.

use serde::{Deserialize, Serialize};

use crate::{Parents, Value};

/// The top label of every hierarchy.
pub const TOP: &str = "*";

/// How one quasi-identifier is generalized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Hierarchy {
    /// Integers in bands: `widths` strictly increasing, each a multiple of the previous.
    Interval { widths: Vec<u32> },
    /// Dates: day, month, year.
    Date {},
    /// Strings cut to a prefix: `keep` strictly decreasing, each at least 1.
    Prefix { keep: Vec<u32> },
    /// Codes rolled up `levels` times by the run-time parent map.
    Tree { levels: u32 },
    /// The value or `*`.
    Suppress {},
}

/// At most this many levels below the top (keeps the lattice small and ids packable).
pub const MAX_LEVELS: usize = 16;

impl Hierarchy {
    /// The kind's name, as in the spec.
    pub fn kind(&self) -> &'static str {
        match self {
            Hierarchy::Interval { .. } => "interval",
            Hierarchy::Date {} => "date",
            Hierarchy::Prefix { .. } => "prefix",
            Hierarchy::Tree { .. } => "tree",
            Hierarchy::Suppress {} => "suppress",
        }
    }

    /// Number of levels, the top `*` included.
    pub fn levels(&self) -> usize {
        match self {
            Hierarchy::Interval { widths } => widths.len().saturating_add(2),
            Hierarchy::Date {} => 4,
            Hierarchy::Prefix { keep } => keep.len().saturating_add(2),
            Hierarchy::Tree { levels } => (*levels as usize).saturating_add(2),
            Hierarchy::Suppress {} => 2,
        }
    }

    /// Checks the parameters; the message names the problem, `field` is the QI's name.
    pub fn validate(&self, field: &str) -> Result<(), String> {
        let err = |m: &str| Err(format!("quasi-identifier `{field}`: {m}"));
        if self.levels() > MAX_LEVELS + 1 {
            return err(&format!("more than {MAX_LEVELS} generalization levels"));
        }
        match self {
            Hierarchy::Interval { widths } => {
                let mut prev = 1u32;
                for &w in widths {
                    if w <= prev || w % prev != 0 {
                        return err(
                            "interval widths must be at least 2, strictly increasing, each a multiple of the previous",
                        );
                    }
                    prev = w;
                }
            }
            Hierarchy::Prefix { keep } => {
                let mut prev = u32::MAX;
                for &k in keep {
                    if k == 0 || k >= prev {
                        return err("prefix lengths must be at least 1 and strictly decreasing");
                    }
                    prev = k;
                }
            }
            Hierarchy::Tree { .. } | Hierarchy::Date {} | Hierarchy::Suppress {} => {}
        }
        Ok(())
    }

    /// A readable name of a level (`"exact"`, `"5"`, `"month"`, `"keep 3"`, `"parent"`, `"*"`).
    pub fn level_name(&self, level: usize) -> String {
        if level.saturating_add(1) >= self.levels() {
            return TOP.to_string();
        }
        match self {
            Hierarchy::Interval { widths } => {
                match level.checked_sub(1).and_then(|i| widths.get(i)) {
                    None => "exact".into(),
                    Some(w) => format!("width {w}"),
                }
            }
            Hierarchy::Date {} => ["day", "month", "year"]
                .get(level)
                .unwrap_or(&TOP)
                .to_string(),
            Hierarchy::Prefix { keep } => match level.checked_sub(1).and_then(|i| keep.get(i)) {
                None => "full".into(),
                Some(k) => format!("keep {k}"),
            },
            Hierarchy::Tree { .. } => match level {
                0 => "code".into(),
                1 => "parent".into(),
                n => format!("ancestor {n}"),
            },
            Hierarchy::Suppress {} => "value".into(),
        }
    }

    /// The label of `value` at `level`, or `None` when the value's type does not fit the kind.
    pub fn label(&self, value: &Value, level: usize, parents: &Parents) -> Option<String> {
        if matches!(value, Value::Missing) || level.saturating_add(1) >= self.levels() {
            return Some(TOP.to_string());
        }
        match (self, value) {
            (Hierarchy::Interval { widths }, Value::Int(v)) => {
                match level.checked_sub(1).and_then(|i| widths.get(i)) {
                    None => Some(v.to_string()),
                    Some(&w) => {
                        let w = i128::from(w);
                        let lo = i128::from(*v).div_euclid(w) * w;
                        Some(format!("{lo}-{}", lo + w - 1))
                    }
                }
            }
            (Hierarchy::Date {}, Value::Date(d)) => {
                let (y, m, day) = civil_from_days(*d);
                Some(match level {
                    0 => format!("{y:04}-{m:02}-{day:02}"),
                    1 => format!("{y:04}-{m:02}"),
                    _ => format!("{y:04}"),
                })
            }
            (Hierarchy::Prefix { keep }, Value::Text(s)) => {
                match level.checked_sub(1).and_then(|i| keep.get(i)) {
                    None => Some(s.clone()),
                    Some(&k) => {
                        let len = s.chars().count();
                        let k = (k as usize).min(len);
                        let mut out: String = s.chars().take(k).collect();
                        out.extend(std::iter::repeat_n('*', len - k));
                        Some(out)
                    }
                }
            }
            (Hierarchy::Tree { .. }, Value::Text(_) | Value::Int(_)) => {
                let mut code = display(value);
                for _ in 0..level {
                    match parents.get(&code) {
                        Some(p) => code = p.clone(),
                        None => break,
                    }
                }
                Some(code)
            }
            (Hierarchy::Suppress {}, v) => Some(display(v)),
            _ => None,
        }
    }
}

/// A raw value as text: integers in decimal, dates as `YYYY-MM-DD`, `*` for missing.
pub fn display(value: &Value) -> String {
    match value {
        Value::Int(v) => v.to_string(),
        Value::Date(d) => {
            let (y, m, day) = civil_from_days(*d);
            format!("{y:04}-{m:02}-{day:02}")
        }
        Value::Text(s) => s.clone(),
        Value::Missing => TOP.to_string(),
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i32) -> (i64, u32, u32) {
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y, m as u32, d as u32)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the inverse of [`civil_from_days`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(h: &Hierarchy, v: Value) -> Vec<String> {
        let p = Parents::new();
        (0..h.levels())
            .map(|l| h.label(&v, l, &p).unwrap())
            .collect()
    }

    #[test]
    fn interval_bands() {
        let h = Hierarchy::Interval {
            widths: vec![5, 10, 20],
        };
        assert_eq!(
            labels(&h, Value::Int(43)),
            ["43", "40-44", "40-49", "40-59", "*"]
        );
        assert_eq!(
            labels(&h, Value::Int(-1)),
            ["-1", "-5--1", "-10--1", "-20--1", "*"]
        );
        assert_eq!(h.level_name(1), "width 5");
        assert_eq!(h.level_name(4), "*");
        assert!(
            h.label(&Value::Text("x".into()), 0, &Parents::new())
                .is_none()
        );
        assert!(
            Hierarchy::Interval { widths: vec![5, 7] }
                .validate("age")
                .is_err()
        );
        assert!(
            Hierarchy::Interval { widths: vec![1] }
                .validate("age")
                .is_err()
        );
        assert!(h.validate("age").is_ok());
    }

    #[test]
    fn date_levels() {
        let d = days_from_civil(2019, 3, 14);
        assert_eq!(civil_from_days(d), (2019, 3, 14));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            labels(&Hierarchy::Date {}, Value::Date(d)),
            ["2019-03-14", "2019-03", "2019", "*"]
        );
        for day in (-800_000..800_000).step_by(997) {
            let (y, m, dd) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, dd), day);
        }
    }

    #[test]
    fn prefix_codes() {
        let h = Hierarchy::Prefix { keep: vec![3, 1] };
        assert_eq!(
            labels(&h, Value::Text("02139".into())),
            ["02139", "021**", "0****", "*"]
        );
        assert_eq!(
            labels(&h, Value::Text("02".into())),
            ["02", "02", "0*", "*"]
        );
        assert!(
            Hierarchy::Prefix { keep: vec![1, 3] }
                .validate("zip")
                .is_err()
        );
        assert!(Hierarchy::Prefix { keep: vec![0] }.validate("zip").is_err());
    }

    #[test]
    fn tree_rollup() {
        let h = Hierarchy::Tree { levels: 2 };
        let mut p = Parents::new();
        p.insert("E11.9".into(), "E11".into());
        p.insert("E11".into(), "E08-E13".into());
        let l: Vec<_> = (0..4)
            .map(|i| h.label(&Value::Text("E11.9".into()), i, &p).unwrap())
            .collect();
        assert_eq!(l, ["E11.9", "E11", "E08-E13", "*"]);
        // Without a parent, a code is its own ancestor.
        let l: Vec<_> = (0..4)
            .map(|i| h.label(&Value::Int(42), i, &p).unwrap())
            .collect();
        assert_eq!(l, ["42", "42", "42", "*"]);
    }

    #[test]
    fn suppress_and_missing() {
        assert_eq!(
            labels(&Hierarchy::Suppress {}, Value::Text("F".into())),
            ["F", "*"]
        );
        assert_eq!(labels(&Hierarchy::Suppress {}, Value::Int(3)), ["3", "*"]);
        assert_eq!(
            labels(&Hierarchy::Date {}, Value::Missing),
            ["*", "*", "*", "*"]
        );
    }

    #[test]
    fn serde_kinds() {
        let h: Hierarchy =
            serde_json::from_str(r#"{"kind":"interval","widths":[5,10,20]}"#).unwrap();
        assert_eq!(h.levels(), 5);
        assert!(serde_json::from_str::<Hierarchy>(r#"{"kind":"bogus"}"#).is_err());
        assert!(serde_json::from_str::<Hierarchy>(r#"{"kind":"date","extra":1}"#).is_err());
        let h: Hierarchy = serde_json::from_str(r#"{"kind":"tree","levels":2}"#).unwrap();
        assert_eq!(h.levels(), 4);
    }
}
