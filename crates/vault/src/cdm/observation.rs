//! Observation → measurement or observation. A value with a quantity, or a laboratory /
//! vital-signs observation without a coded value, is a measurement; anything else (coded or
//! string values, social history) an observation. Multi-component observations (blood pressure
//! panels) give one row per component, plus one for the observation's own value if it has one.

use serde_json::Value;

use super::extract::{code_of, date_of, first_coding};
use super::{Mapping, TYPE_EHR, Val};
use crate::error::VaultError;

/// What the rows of one Observation share.
struct Recorded {
    pid: i64,
    visit: Option<i64>,
    date: Option<i32>,
    /// Category `laboratory` or `vital-signs`.
    measurement_category: bool,
}

pub(super) fn map(v: &Value, m: &mut Mapping<'_>) -> Result<(), VaultError> {
    let Some(pid) = m.person_of(v, "subject") else {
        return Ok(());
    };
    let date = date_of(
        v,
        &[
            "effectiveDateTime",
            "effectivePeriod.start",
            "effectiveInstant",
            "issued",
        ],
    );
    let category = v
        .get("category")
        .and_then(Value::as_array)
        .and_then(|cats| {
            cats.iter()
                .filter_map(|c| code_of(Some(c)))
                .find(|code| matches!(*code, "laboratory" | "vital-signs"))
        });
    let rec = Recorded {
        pid,
        visit: m.visit_of(v),
        date,
        measurement_category: category.is_some(),
    };
    if let Some(components) = v.get("component").and_then(Value::as_array) {
        for comp in components {
            map_value(comp, &rec, m)?;
        }
        if !has_value(v) {
            return Ok(());
        }
    }
    map_value(v, &rec, m)
}

fn has_value(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.keys().any(|k| k.starts_with("value")))
}

/// OMOP unit concept of a UCUM unit (0 when not covered).
fn unit_concept(unit: &str) -> i32 {
    match unit {
        "%" => 8554,
        "mg/dL" => 8840,
        "mm[Hg]" => 8876,
        "kg/m2" => 9531,
        "kg" => 9529,
        "cm" => 8582,
        "/min" => 8541,
        _ => 0,
    }
}

/// One row for the code and value of an Observation or of one of its components.
fn map_value(v: &Value, rec: &Recorded, m: &mut Mapping<'_>) -> Result<(), VaultError> {
    let code = first_coding(v.get("code"));
    let mapped = m.concepts(code);
    let quantity = v.get("valueQuantity");
    let number = quantity
        .and_then(|q| q.get("value"))
        .and_then(Value::as_f64)
        .or_else(|| v.get("valueInteger").and_then(Value::as_f64));
    let unit = quantity
        .and_then(|q| q.get("code").or_else(|| q.get("unit")))
        .and_then(Value::as_str);
    let concept_value = first_coding(v.get("valueCodeableConcept"));
    let string_value = v
        .get("valueString")
        .and_then(Value::as_str)
        .or(concept_value.map(|(_, c)| c));
    if quantity.is_some() || (rec.measurement_category && concept_value.is_none()) {
        let id = m.next_id("measurement");
        m.push(
            "measurement",
            &[
                Val::I64(Some(id)),
                Val::I64(Some(rec.pid)),
                Val::I32(Some(mapped.concept_id)),
                Val::Date(rec.date),
                Val::I32(Some(TYPE_EHR)),
                Val::F64(number),
                Val::I32(unit.map(unit_concept)),
                Val::I64(rec.visit),
                Val::Str(code.map(|(_, c)| c)),
                Val::I32(Some(mapped.source_concept_id)),
                Val::Str(unit),
                Val::Str(string_value),
            ],
        )
    } else {
        let value_concept = concept_value.map(|c| m.concepts(Some(c)).concept_id);
        let id = m.next_id("observation");
        m.push(
            "observation",
            &[
                Val::I64(Some(id)),
                Val::I64(Some(rec.pid)),
                Val::I32(Some(mapped.concept_id)),
                Val::Date(rec.date),
                Val::I32(Some(TYPE_EHR)),
                Val::F64(number),
                Val::Str(string_value),
                Val::I32(value_concept),
                Val::Str(unit),
                Val::I64(rec.visit),
                Val::Str(code.map(|(_, c)| c)),
                Val::I32(Some(mapped.source_concept_id)),
            ],
        )
    }
}
