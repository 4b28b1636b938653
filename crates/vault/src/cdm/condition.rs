//! Condition → condition_occurrence: onset and abatement, clinical status, visit.

use serde_json::Value;

use super::extract::{code_of, date_of, first_coding};
use super::{Mapping, TYPE_EHR, Val};
use crate::error::VaultError;

pub(super) fn map(v: &Value, m: &mut Mapping<'_>) -> Result<(), VaultError> {
    let Some(pid) = m.person_of(v, "subject") else {
        return Ok(());
    };
    let visit = m.visit_of(v);
    let code = first_coding(v.get("code"));
    let mapped = m.concepts(code);
    let status = code_of(v.get("clinicalStatus"));
    let id = m.next_id("condition_occurrence");
    m.push(
        "condition_occurrence",
        &[
            Val::I64(Some(id)),
            Val::I64(Some(pid)),
            Val::I32(Some(mapped.concept_id)),
            Val::Date(date_of(
                v,
                &["onsetDateTime", "onsetPeriod.start", "recordedDate"],
            )),
            Val::Date(date_of(v, &["abatementDateTime", "abatementPeriod.end"])),
            Val::I32(Some(TYPE_EHR)),
            Val::Str(status),
            Val::I64(visit),
            Val::Str(code.map(|(_, c)| c)),
            Val::I32(Some(mapped.source_concept_id)),
        ],
    )
}
