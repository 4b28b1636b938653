//! The signed-request parser fed arbitrary and damaged headers: it never panics, it answers a
//! typed error, and a damaged header never passes as the signer's request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use medspace_api::auth::{AuthError, NONCE_LEN, ReplayGuard, Request};
use medspace_types::Keypair;
use proptest::prelude::*;

const REQ: Request<'static> = Request {
    method: "POST",
    path_and_query: "/v1/records/redeem?x=1",
    audience: "hospital-a",
    body: br#"{"grant":"g-0000000000000001","code":"AAAA-BBBB-CCCC-DDDD"}"#,
};
const NOW: u64 = 1_700_000_000_000;

fn valid() -> String {
    REQ.sign_with(&Keypair::from_seed(7), NOW, [9; NONCE_LEN])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_headers_never_panic(header in ".{0,600}") {
        if let Ok(v) = REQ.verify(Some(&header), NOW) {
            prop_assert_eq!(v.key, Keypair::from_seed(7).public());
        }
    }

    #[test]
    fn arbitrary_bytes_as_a_header_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = REQ.verify(Some(&text), NOW);
        let _ = ReplayGuard::default().check(&REQ, Some(&text), NOW);
    }

    #[test]
    fn a_damaged_header_is_refused(at in any::<usize>(), ch in any::<char>(), how in 0u8..3) {
        let h = valid();
        let mut chars: Vec<char> = h.chars().collect();
        let i = at % chars.len();
        match how {
            0 => chars[i] = ch,
            1 => { chars.remove(i); }
            _ => chars.insert(i, ch),
        }
        let damaged: String = chars.into_iter().collect();
        prop_assume!(damaged != h);
        match REQ.verify(Some(&damaged), NOW) {
            // Only a change that keeps every field's value may pass: whitespace around a
            // field (trimmed) or the case of a hex digit (the same bytes).
            Ok(_) => {
                let norm = |s: &str| s.split_whitespace().collect::<String>().to_ascii_lowercase();
                prop_assert_eq!(norm(&damaged), norm(&h));
            }
            Err(e) => prop_assert!(!matches!(e, AuthError::Replay | AuthError::Busy)),
        }
    }

    #[test]
    fn another_request_under_a_valid_header_is_refused(path in "/[a-z/]{0,30}", body in proptest::collection::vec(any::<u8>(), 0..64)) {
        let h = valid();
        let other = Request { path_and_query: &path, body: &body, ..REQ };
        prop_assume!(path != REQ.path_and_query || body != REQ.body);
        prop_assert!(other.verify(Some(&h), NOW).is_err());
    }
}

/// A `+` before the timestamp (which `u64::from_str` would take) makes another header, refused.
#[test]
fn a_signed_timestamp_is_refused() {
    let damaged = valid().replace("ts=", "ts=+");
    assert!(matches!(
        REQ.verify(Some(&damaged), NOW),
        Err(AuthError::Malformed(_))
    ));
}
