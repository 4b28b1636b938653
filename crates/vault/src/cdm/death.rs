//! Patient → death: a row when the Patient is deceased (with the date of `deceasedDateTime`, or
//! without a date for `deceasedBoolean: true`).

use serde_json::Value;

use super::extract::date_of;
use super::{Mapping, TYPE_EHR, Val};
use crate::error::VaultError;

/// The death row of a Patient with person_id `pid`, if it died.
pub(super) fn map(v: &Value, pid: i64, m: &mut Mapping<'_>) -> Result<(), VaultError> {
    let date = match date_of(v, &["deceasedDateTime"]) {
        Some(day) => Some(day),
        None if v.get("deceasedBoolean").and_then(Value::as_bool) == Some(true) => None,
        None => return Ok(()),
    };
    m.push(
        "death",
        &[
            Val::I64(Some(pid)),
            Val::Date(date),
            Val::I32(Some(TYPE_EHR)),
            Val::Str(None),
        ],
    )
}
