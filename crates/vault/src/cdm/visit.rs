//! Encounter → visit_occurrence: the visit concept from the encounter class, the source code
//! from the first type.

use serde_json::Value;

use super::extract::{date_of, first_coding};
use super::{Mapping, TYPE_EHR, Val};
use crate::error::VaultError;

/// The visit row of an Encounter with visit_occurrence_id `own_row_id`.
pub(super) fn map(
    v: &Value,
    own_row_id: Option<i64>,
    m: &mut Mapping<'_>,
) -> Result<(), VaultError> {
    let (Some(vid), Some(pid)) = (own_row_id, m.person_of(v, "subject")) else {
        return Ok(());
    };
    let class = v
        .get("class")
        .and_then(|c| c.get("code"))
        .and_then(Value::as_str);
    let visit_concept = match class {
        Some("AMB") | Some("outpatient") | Some("ambulatory") | Some("wellness") => 9202,
        Some("EMER") | Some("emergency") => 9203,
        Some("IMP") | Some("inpatient") | Some("ACUTE") => 9201,
        _ => 0,
    };
    let ty = first_coding(v.get("type").and_then(|t| t.get(0)));
    let src = ty.map(|(_, c)| c);
    let mapped = m.concepts(ty);
    m.push(
        "visit_occurrence",
        &[
            Val::I64(Some(vid)),
            Val::I64(Some(pid)),
            Val::I32(Some(visit_concept)),
            Val::Date(date_of(v, &["period.start"])),
            Val::Date(date_of(v, &["period.end", "period.start"])),
            Val::I32(Some(TYPE_EHR)),
            Val::Str(src),
            Val::I32(Some(mapped.source_concept_id)),
        ],
    )
}
