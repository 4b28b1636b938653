//! Deterministic UUID-shaped ids: the hospital's Organization and Practitioners, the patients,
//! the insurer's members, and each patient's resources (drawn from the patient's own random
//! stream).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Id kinds, mixed into the seed of [`make_id`].
const KIND_ORGANIZATION: u64 = 1;
const KIND_PRACTITIONER: u64 = 2;
const KIND_PATIENT: u64 = 3;
const KIND_MEMBER: u64 = 4;
const KIND_INSURER_ONLY_MEMBER: u64 = 5;

/// A deterministic UUID-shaped id for `(seed, hospital, kind, index)`.
pub(crate) fn make_id(seed: u64, hospital: u32, kind: u64, index: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed ^ (u64::from(hospital) << 48) ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index,
    );
    let a: u64 = rng.random();
    let b: u64 = rng.random();
    uuid_string(a, b)
}

/// The next id from a patient's random stream (two draws).
pub(crate) fn next_id(rng: &mut ChaCha8Rng) -> String {
    let a: u64 = rng.random();
    let b: u64 = rng.random();
    uuid_string(a, b)
}

fn uuid_string(a: u64, b: u64) -> String {
    // Version 4 / RFC 4122 variant bits so the ids look like ordinary random UUIDs.
    let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

/// The Organization id of hospital `k`.
pub fn organization_id(seed: u64, hospital: u32) -> String {
    make_id(seed, hospital, KIND_ORGANIZATION, 0)
}

/// The id of practitioner `i` of a hospital.
pub(crate) fn practitioner_id(seed: u64, hospital: u32, i: u64) -> String {
    make_id(seed, hospital, KIND_PRACTITIONER, i)
}

/// The Patient id of patient `index` of a hospital.
pub fn patient_id(seed: u64, hospital: u32, index: u64) -> String {
    make_id(seed, hospital, KIND_PATIENT, index)
}

/// The insurer's member id of patient `index` of a hospital (another id than its Patient id).
pub(crate) fn member_id(seed: u64, hospital: u32, index: u64) -> String {
    make_id(seed, hospital, KIND_MEMBER, index)
}

/// The member id of the insurer's member `index` who is no hospital's patient.
pub(crate) fn insurer_only_member_id(seed: u64, index: u64) -> String {
    make_id(seed, 0, KIND_INSURER_ONLY_MEMBER, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        let a = make_id(1, 0, KIND_PATIENT, 0);
        let b = make_id(1, 0, KIND_PATIENT, 1);
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
