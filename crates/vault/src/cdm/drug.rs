//! MedicationRequest, MedicationStatement, MedicationAdministration and Immunization →
//! drug_exposure: the medication (or vaccine) code, the period, the dispensed quantity.

use serde_json::Value;

use super::extract::{date_of, first_coding};
use super::{Mapping, TYPE_EHR, Val};
use crate::error::VaultError;

/// "Prescription written" drug type concept (OMOP type concept 32838).
const TYPE_PRESCRIPTION: i32 = 32838;

/// `rtype` is the resource type (one of the four above).
pub(super) fn map(v: &Value, rtype: &str, m: &mut Mapping<'_>) -> Result<(), VaultError> {
    let immunization = rtype == "Immunization";
    let field = if immunization { "patient" } else { "subject" };
    let Some(pid) = m.person_of(v, field) else {
        return Ok(());
    };
    let visit = m.visit_of(v);
    let code = if immunization {
        first_coding(v.get("vaccineCode"))
    } else {
        first_coding(v.get("medicationCodeableConcept"))
    };
    let mapped = m.concepts(code);
    let start = date_of(
        v,
        &[
            "authoredOn",
            "occurrenceDateTime",
            "effectiveDateTime",
            "effectivePeriod.start",
            "dispenseRequest.validityPeriod.start",
        ],
    );
    let end = date_of(
        v,
        &["dispenseRequest.validityPeriod.end", "effectivePeriod.end"],
    );
    let quantity = v
        .get("dispenseRequest")
        .and_then(|d| d.get("quantity"))
        .and_then(|q| q.get("value"))
        .and_then(Value::as_f64);
    let id = m.next_id("drug_exposure");
    m.push(
        "drug_exposure",
        &[
            Val::I64(Some(id)),
            Val::I64(Some(pid)),
            Val::I32(Some(mapped.concept_id)),
            Val::Date(start),
            Val::Date(end),
            Val::I32(Some(if rtype == "MedicationRequest" {
                TYPE_PRESCRIPTION
            } else {
                TYPE_EHR
            })),
            Val::F64(quantity),
            Val::I64(visit),
            Val::Str(code.map(|(_, c)| c)),
            Val::I32(Some(mapped.source_concept_id)),
        ],
    )
}
