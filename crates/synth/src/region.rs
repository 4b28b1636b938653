//! Where a patient lives: one home address per patient in one of [`REGIONS`] regions, each
//! region a three-digit postal code prefix (`010` … `029`, see [`region_zip3`]) with a few
//! towns. The region is the ground truth of counts by region (an injected outbreak strikes one
//! region, see [`crate::outbreak`]).
//!
//! The address is drawn from its own random stream, seeded by `(seed, hospital, index)` and a
//! salt, never from the patient's own stream: the rest of the record is what it was before
//! patients had addresses. Draws, in order: the region (uniform), the town (uniform among the
//! region's), the postal code's last two digits, the house number, the street.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::names::pick;

/// Number of regions.
pub const REGIONS: u32 = 20;

/// Mixed into the address stream's seed so it differs from every other stream of a patient.
const SALT: u64 = 0xAD0D_E55E_5EC7_0A11;

/// The towns of each region, indexed by region.
const TOWNS: [&[&str]; REGIONS as usize] = [
    &["Springfield", "Chicopee"],
    &["Westfield", "Holyoke"],
    &["Pittsfield", "North Adams"],
    &["Greenfield", "Northampton"],
    &["Fitchburg", "Leominster"],
    &["Worcester", "Shrewsbury"],
    &["Auburn", "Webster"],
    &["Framingham", "Marlborough"],
    &["Woburn", "Lowell"],
    &["Lynn", "Salem"],
    &["Brockton", "Stoughton"],
    &["Boston", "Cambridge"],
    &["Quincy", "Braintree"],
    &["Plymouth", "Bridgewater"],
    &["Lexington", "Waltham"],
    &["Falmouth", "Bourne"],
    &["Barnstable", "Yarmouth"],
    &["New Bedford", "Fall River"],
    &["Taunton", "Attleboro"],
    &["Newton", "Brookline"],
];

const STREETS: &[&str] = &[
    "Main Street",
    "Elm Street",
    "Maple Avenue",
    "Oak Street",
    "Pleasant Street",
    "Washington Street",
    "Park Avenue",
    "Church Street",
    "School Street",
    "Highland Avenue",
    "Water Street",
    "Cedar Lane",
];

/// The address stream of patient `index` of hospital `hospital`.
fn stream(seed: u64, hospital: u32, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(
        (seed ^ SALT).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(hospital) << 40) ^ index,
    )
}

/// The region (`0 .. REGIONS`) patient `index` of hospital `hospital` lives in.
pub fn region_of(seed: u64, hospital: u32, index: u64) -> u32 {
    stream(seed, hospital, index).random_range(0..REGIONS)
}

/// The first three digits of the postal codes of `region`: `010` for region 0 … `029` for
/// region 19.
pub fn region_zip3(region: u32) -> String {
    format!("{:03}", 10 + u64::from(region))
}

/// The patient's home address (a FHIR R4 `Address`).
pub(crate) fn home_address(seed: u64, hospital: u32, index: u64) -> Value {
    let mut rng = stream(seed, hospital, index);
    let region = rng.random_range(0..REGIONS);
    let towns = TOWNS.get(region as usize).copied().unwrap_or(&[]);
    let city = pick(&mut rng, towns);
    let postal_code = format!("{}{:02}", region_zip3(region), rng.random_range(0..100u32));
    let number: u32 = rng.random_range(1..400);
    let street = pick(&mut rng, STREETS);
    json!({
        "use": "home",
        "line": [format!("{number} {street}")],
        "city": city,
        "state": "MA",
        "postalCode": postal_code,
        "country": "US",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_in_the_patients_region() {
        let mut seen = [0u32; REGIONS as usize];
        for i in 0..2000 {
            let region = region_of(5, 1, i);
            let a = home_address(5, 1, i);
            let zip = a["postalCode"].as_str().unwrap_or("");
            assert_eq!(zip.len(), 5, "{zip}");
            assert!(zip.starts_with(&region_zip3(region)), "{zip} {region}");
            assert!(TOWNS[region as usize].contains(&a["city"].as_str().unwrap_or("")));
            assert_eq!(a["state"], "MA");
            seen[region as usize] += 1;
        }
        // Uniform: 100 per region expected.
        assert!(seen.iter().all(|n| (60..140).contains(n)), "{seen:?}");
        assert_eq!(region_zip3(0), "010");
        assert_eq!(region_zip3(REGIONS - 1), "029");
        assert_ne!(home_address(5, 1, 0), home_address(5, 2, 0));
    }
}
