//! Reading the parts of a FHIR resource the mappers need: the coding of a CodeableConcept, a
//! reference, the first date among several fields, a US Core extension code.

use serde_json::Value;

use crate::fhir::parse_date;
use crate::vocab::CodeSystem;

/// The first coding of a CodeableConcept: (system, code). A coding from a system the vault maps
/// wins over the first coding with a code.
pub(super) fn first_coding(cc: Option<&Value>) -> Option<(CodeSystem, &str)> {
    let codings = cc?.get("coding")?.as_array()?;
    let known = codings.iter().find_map(|c| {
        let sys = CodeSystem::from_uri(c.get("system")?.as_str()?);
        let code = c.get("code")?.as_str()?;
        (sys != CodeSystem::Other).then_some((sys, code))
    });
    known.or_else(|| {
        codings.iter().find_map(|c| {
            let code = c.get("code")?.as_str()?;
            Some((CodeSystem::Other, code))
        })
    })
}

/// The code of a CodeableConcept's first coding, as [`first_coding`].
pub(super) fn code_of(cc: Option<&Value>) -> Option<&str> {
    first_coding(cc).map(|(_, c)| c)
}

/// `v.<field>.reference`.
pub(super) fn ref_of<'v>(v: &'v Value, field: &str) -> Option<&'v str> {
    v.get(field)?.get("reference")?.as_str()
}

/// The first of `fields` (dotted paths such as `period.start`) that holds a FHIR date, as days
/// since 1970-01-01.
pub(super) fn date_of(v: &Value, fields: &[&str]) -> Option<i32> {
    fields.iter().find_map(|f| {
        let mut cur = v;
        for part in f.split('.') {
            cur = cur.get(part)?;
        }
        parse_date(cur.as_str()?)
    })
}

/// The `ombCategory` code of a US Core race or ethnicity extension of a Patient.
pub(super) fn ext_code<'v>(patient: &'v Value, url: &str) -> Option<&'v str> {
    patient
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))?
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some("ombCategory"))?
        .get("valueCoding")?
        .get("code")?
        .as_str()
}
