//! Patient → location: the region the person lives in, for counts by region (public-health
//! surveillance). One row per Patient with an address, keyed by the person's own id
//! (`location_id` = `person_id`), so a new version of the Patient replaces its row and deleting
//! the Patient retracts it, as for the person row.
//!
//! The address is the first `address` with `use` = `home`, else the first that is not
//! `use` = `old` (no longer where the person lives). What is kept: the city, the state (a US
//! state's name becomes its two-letter code, as OMOP's `state` is), the county (FHIR
//! `district`) and only the first three characters of the postal code — HIPAA's Safe Harbor
//! rule, the same cut as the open pool's `zip` (a full postal code is an identifier). Street
//! lines, the full postal code, the country and any geolocation never reach the CDM. An address
//! with none of the kept parts gives no row.

use serde_json::Value;

use super::{Mapping, Val};
use crate::error::VaultError;

/// The kept parts of a Patient's address.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Place<'a> {
    city: Option<&'a str>,
    state: Option<&'a str>,
    zip: Option<String>,
    county: Option<&'a str>,
}

/// The address a location is taken from: home first, else the first not marked `old`.
fn address(patient: &Value) -> Option<&Value> {
    let list = patient.get("address")?.as_array()?;
    let is = |a: &Value, u: &str| a.get("use").and_then(Value::as_str) == Some(u);
    list.iter()
        .find(|a| is(a, "home"))
        .or_else(|| list.iter().find(|a| !is(a, "old")))
}

/// A non-empty trimmed string field of `v`.
fn text<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The first three characters of a postal code (letters and digits only), if it has three.
fn zip3(postal_code: &str) -> Option<String> {
    let zip: String = postal_code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(3)
        .collect();
    (zip.len() == 3).then_some(zip)
}

/// A US state's two-letter code for its name (any case); anything else as given.
fn state_code(state: &str) -> &str {
    US_STATES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(state))
        .map_or(state, |(_, code)| code)
}

/// The kept parts of the Patient's address, if it has one with any.
pub(super) fn place(patient: &Value) -> Option<Place<'_>> {
    let a = address(patient)?;
    let p = Place {
        city: text(a, "city"),
        state: text(a, "state").map(state_code),
        zip: text(a, "postalCode").and_then(zip3),
        county: text(a, "district"),
    };
    (p.city.is_some() || p.state.is_some() || p.zip.is_some() || p.county.is_some()).then_some(p)
}

/// The location row of the Patient with person_id `pid`, if it has an address; returns the
/// `location_id` for its person row.
pub(super) fn map(v: &Value, pid: i64, m: &mut Mapping<'_>) -> Result<Option<i64>, VaultError> {
    let Some(p) = place(v) else {
        return Ok(None);
    };
    m.push(
        "location",
        &[
            Val::I64(Some(pid)),
            Val::Str(p.city),
            Val::Str(p.state),
            Val::Str(p.zip.as_deref()),
            Val::Str(p.county),
        ],
    )?;
    Ok(Some(pid))
}

/// US states, the District of Columbia and the territories: name and USPS code.
const US_STATES: &[(&str, &str)] = &[
    ("Alabama", "AL"),
    ("Alaska", "AK"),
    ("Arizona", "AZ"),
    ("Arkansas", "AR"),
    ("California", "CA"),
    ("Colorado", "CO"),
    ("Connecticut", "CT"),
    ("Delaware", "DE"),
    ("District of Columbia", "DC"),
    ("Florida", "FL"),
    ("Georgia", "GA"),
    ("Hawaii", "HI"),
    ("Idaho", "ID"),
    ("Illinois", "IL"),
    ("Indiana", "IN"),
    ("Iowa", "IA"),
    ("Kansas", "KS"),
    ("Kentucky", "KY"),
    ("Louisiana", "LA"),
    ("Maine", "ME"),
    ("Maryland", "MD"),
    ("Massachusetts", "MA"),
    ("Michigan", "MI"),
    ("Minnesota", "MN"),
    ("Mississippi", "MS"),
    ("Missouri", "MO"),
    ("Montana", "MT"),
    ("Nebraska", "NE"),
    ("Nevada", "NV"),
    ("New Hampshire", "NH"),
    ("New Jersey", "NJ"),
    ("New Mexico", "NM"),
    ("New York", "NY"),
    ("North Carolina", "NC"),
    ("North Dakota", "ND"),
    ("Ohio", "OH"),
    ("Oklahoma", "OK"),
    ("Oregon", "OR"),
    ("Pennsylvania", "PA"),
    ("Rhode Island", "RI"),
    ("South Carolina", "SC"),
    ("South Dakota", "SD"),
    ("Tennessee", "TN"),
    ("Texas", "TX"),
    ("Utah", "UT"),
    ("Vermont", "VT"),
    ("Virginia", "VA"),
    ("Washington", "WA"),
    ("West Virginia", "WV"),
    ("Wisconsin", "WI"),
    ("Wyoming", "WY"),
    ("American Samoa", "AS"),
    ("Guam", "GU"),
    ("Northern Mariana Islands", "MP"),
    ("Puerto Rico", "PR"),
    ("United States Virgin Islands", "VI"),
    ("U.S. Virgin Islands", "VI"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn home_first_then_the_first_current_one() {
        let p = json!({"resourceType": "Patient", "address": [
            {"use": "old", "city": "Old Town", "postalCode": "99999"},
            {"use": "work", "city": "Workville", "postalCode": "02139"},
            {"use": "home", "city": "Worcester", "state": "Massachusetts", "district": "Worcester County",
             "postalCode": "01545-1234", "line": ["141 Schinner Gate Unit 24"]}
        ]});
        assert_eq!(
            place(&p),
            Some(Place {
                city: Some("Worcester"),
                state: Some("MA"),
                zip: Some("015".into()),
                county: Some("Worcester County"),
            })
        );
        let p = json!({"address": [{"use": "old", "city": "Old Town"}, {"city": "Boston", "state": "MA"}]});
        assert_eq!(place(&p).and_then(|p| p.city), Some("Boston"));
        // Only old addresses, none, or one with nothing kept: no location.
        for p in [
            json!({"address": [{"use": "old", "city": "Old Town"}]}),
            json!({"address": []}),
            json!({}),
            json!({"address": [{"line": ["1 Main St"], "country": "US", "postalCode": "1"}]}),
        ] {
            assert_eq!(place(&p), None, "{p}");
        }
    }

    #[test]
    fn only_three_characters_of_a_postal_code() {
        assert_eq!(zip3("01545").as_deref(), Some("015"));
        assert_eq!(zip3(" 0-1545").as_deref(), Some("015"));
        assert_eq!(zip3("SW1A 1AA").as_deref(), Some("SW1"));
        assert_eq!(zip3("12"), None);
        assert_eq!(state_code("massachusetts"), "MA");
        assert_eq!(state_code("Bavaria"), "Bavaria");
    }
}
