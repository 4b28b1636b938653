//! AllergyIntolerance → observation: an `allergy` observation with the substance code.

use serde_json::Value;

use super::extract::{date_of, first_coding};
use super::{Mapping, TYPE_EHR, Val};
use crate::error::VaultError;

pub(super) fn map(v: &Value, m: &mut Mapping<'_>) -> Result<(), VaultError> {
    let Some(pid) = m.person_of(v, "patient") else {
        return Ok(());
    };
    let visit = m.visit_of(v);
    let code = first_coding(v.get("code"));
    let mapped = m.concepts(code);
    let id = m.next_id("observation");
    m.push(
        "observation",
        &[
            Val::I64(Some(id)),
            Val::I64(Some(pid)),
            Val::I32(Some(mapped.concept_id)),
            Val::Date(date_of(v, &["onsetDateTime", "recordedDate"])),
            Val::I32(Some(TYPE_EHR)),
            Val::F64(None),
            Val::Str(Some("allergy")),
            Val::I32(None),
            Val::Str(None),
            Val::I64(visit),
            Val::Str(code.map(|(_, c)| c)),
            Val::I32(Some(mapped.source_concept_id)),
        ],
    )
}
