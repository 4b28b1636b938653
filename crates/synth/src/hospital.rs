//! A hospital's own resources: its Organization and its Practitioners.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::ids::{organization_id, practitioner_id};
use crate::names::{FAMILY_NAMES, GIVEN_F_NAMES, pick};

/// Number of practitioners per hospital.
pub(crate) const PRACTITIONERS: u64 = 8;

/// The Organization and Practitioner resources of hospital `k` (referenced by its patients).
pub fn hospital_resources(seed: u64, hospital: u32) -> Vec<Value> {
    let org = organization_id(seed, hospital);
    let mut out = Vec::with_capacity(PRACTITIONERS as usize + 1);
    out.push(json!({
        "resourceType": "Organization",
        "id": org,
        "identifier": [{"system": "https://medspace.example/hospital", "value": format!("hospital-{hospital}")}],
        "active": true,
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov", "display": "Healthcare Provider"}], "text": "Healthcare Provider"}],
        "name": format!("Synthetic Hospital {}", hospital_letter(hospital)),
    }));
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA11C_E000 ^ u64::from(hospital));
    for i in 0..PRACTITIONERS {
        let family = pick(&mut rng, FAMILY_NAMES);
        let given = pick(&mut rng, GIVEN_F_NAMES);
        out.push(json!({
            "resourceType": "Practitioner",
            "id": practitioner_id(seed, hospital, i),
            "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": format!("99{:08}", u64::from(hospital) * 1000 + i)}],
            "active": true,
            "name": [{"family": family, "given": [given], "prefix": ["Dr."]}],
            "gender": if rng.random_bool(0.5) { "female" } else { "male" },
        }));
    }
    out
}

fn hospital_letter(hospital: u32) -> String {
    match char::from_u32(u32::from(b'A').saturating_add(hospital)) {
        Some(c) if hospital < 26 => c.to_string(),
        _ => hospital.to_string(),
    }
}
