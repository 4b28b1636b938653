//! Names for the generated people, and the draw that picks one.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// One item of `items`, uniformly (`""` for an empty list).
pub(crate) fn pick<'a>(rng: &mut ChaCha8Rng, items: &[&'a str]) -> &'a str {
    if items.is_empty() {
        return "";
    }
    let i = rng.random_range(0..items.len());
    items.get(i).copied().unwrap_or("")
}

pub(crate) const FAMILY_NAMES: &[&str] = &[
    "Smith",
    "Müller",
    "García",
    "Rossi",
    "Dubois",
    "Novak",
    "Jansen",
    "Silva",
    "Kowalski",
    "Nielsen",
    "Schmidt",
    "Bianchi",
    "Martin",
    "Costa",
    "Fischer",
    "Moreau",
    "Weber",
    "Ricci",
    "Bernard",
    "Kim",
    "Nguyen",
    "Haddad",
    "Okafor",
    "Lindqvist",
];
pub(crate) const GIVEN_F_NAMES: &[&str] = &[
    "Anna", "Maria", "Sofia", "Emma", "Lea", "Clara", "Julia", "Elena", "Ines", "Nora", "Mila",
    "Hanna",
];
pub(crate) const GIVEN_M_NAMES: &[&str] = &[
    "Jonas", "Luca", "Paul", "Noah", "Marco", "David", "Felix", "Elias", "Tomas", "Hugo", "Leon",
    "Adam",
];
