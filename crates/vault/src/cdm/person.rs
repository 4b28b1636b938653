//! Patient → person: sex, birth date (as precise as given), US Core race and ethnicity, the
//! ledger pseudonym as `person_source_value` (never the source id), and the person's location
//! row (see `location`) when the Patient has an address.

use serde_json::Value;

use super::extract::ext_code;
use super::{Mapping, Val};
use crate::error::VaultError;
use crate::fhir::parse_date;

const US_CORE_RACE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race";
const US_CORE_ETHNICITY: &str = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity";

/// The person row of a Patient with person_id `pid`, living at `location` (its location row's
/// id, if it has one).
pub(super) fn map(
    v: &Value,
    pid: i64,
    location: Option<i64>,
    pseudonym: &dyn Fn(&str) -> String,
    m: &mut Mapping<'_>,
) -> Result<(), VaultError> {
    let id = v.get("id").and_then(Value::as_str).unwrap_or("");
    let gender = v.get("gender").and_then(Value::as_str);
    let gender_concept = match gender {
        Some("male") => Some(8507),
        Some("female") => Some(8532),
        _ => Some(0),
    };
    let birth = v.get("birthDate").and_then(Value::as_str);
    let birth_days = birth.and_then(parse_date);
    let (y, mo, d) = match birth_days {
        Some(days) => {
            let (y, mo, d) = medspace_synth::civil_from_days(i64::from(days));
            (Some(y), i32::try_from(mo).ok(), i32::try_from(d).ok())
        }
        None => (None, None, None),
    };
    // Partial birth dates ("1980" or "1980-05") keep only what was given.
    let precision = birth.map(str::len).unwrap_or(0);
    let race = ext_code(v, US_CORE_RACE);
    let eth = ext_code(v, US_CORE_ETHNICITY);
    let race_concept = match race {
        Some("2106-3") => 8527,
        Some("2054-5") => 8516,
        Some("2028-9") => 8515,
        Some("1002-5") => 8657,
        Some("2076-8") => 8557,
        _ => 0,
    };
    let eth_concept = match eth {
        Some("2135-2") => 38_003_563,
        Some("2186-5") => 38_003_564,
        _ => 0,
    };
    let pseudo = pseudonym(id);
    m.push(
        "person",
        &[
            Val::I64(Some(pid)),
            Val::I32(gender_concept),
            Val::I32(y),
            Val::I32(if precision >= 7 { mo } else { None }),
            Val::I32(if precision >= 10 { d } else { None }),
            Val::Date(if precision >= 10 { birth_days } else { None }),
            Val::I32(Some(race_concept)),
            Val::I32(Some(eth_concept)),
            Val::Str(Some(&pseudo)),
            Val::Str(gender),
            Val::Str(race),
            Val::Str(eth),
            Val::I64(location),
        ],
    )
}
