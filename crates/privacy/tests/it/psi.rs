//! ECDH-PSI against plain set intersection, the wire format against malformed input, the
//! dedup rule, and the keyed identifiers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use medspace_privacy::psi::{
    ContractKey, MAX_ELEMENTS, Mode, PsiError, PsiOutput, Receiver, Request, Response, Sender,
    WIRE_VERSION, dedup_drops, dedup_plan, identifier_key, normalize_national_id,
    pseudonym_identifier,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::BTreeSet;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn ids(values: &[u32]) -> Vec<Vec<u8>> {
    values.iter().map(|v| v.to_le_bytes().to_vec()).collect()
}

/// Runs both parties with every message through bytes.
fn run(x: &[Vec<u8>], y: &[Vec<u8>], mode: Mode, threads: usize, seed: u64) -> PsiOutput {
    let mut rng = rng(seed);
    let (receiver, request) = Receiver::new(&mut rng, x, mode, threads).unwrap();
    let request = Request::from_bytes(&request.to_bytes().unwrap()).unwrap();
    let sender = Sender::new(&mut rng, y, mode, threads).unwrap();
    let response = sender.respond(&request, &mut rng).unwrap();
    let response = Response::from_bytes(&response.to_bytes().unwrap()).unwrap();
    receiver.finish(&response).unwrap()
}

fn plain_indices(x: &[Vec<u8>], y: &[Vec<u8>]) -> Vec<usize> {
    let set: BTreeSet<&Vec<u8>> = y.iter().collect();
    x.iter()
        .enumerate()
        .filter(|(_, v)| set.contains(v))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn linked_and_cardinality_equal_plain_intersection() {
    let x = ids(&(0..700).collect::<Vec<_>>());
    let y = ids(&(400..1500).collect::<Vec<_>>());
    let expected = plain_indices(&x, &y);
    assert_eq!(expected.len(), 300);
    for threads in [1, 2, 3] {
        assert_eq!(
            run(&x, &y, Mode::Linked, threads, 1),
            PsiOutput::Linked(expected.clone())
        );
        assert_eq!(
            run(&x, &y, Mode::Cardinality, threads, 2),
            PsiOutput::Cardinality(300)
        );
    }
}

#[test]
fn empty_sets() {
    let x = ids(&[1, 2, 3]);
    assert_eq!(run(&x, &[], Mode::Linked, 2, 3), PsiOutput::Linked(vec![]));
    assert_eq!(
        run(&[], &x, Mode::Cardinality, 2, 4),
        PsiOutput::Cardinality(0)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn psi_equals_btreeset_intersection(
        x in proptest::collection::btree_set(0u32..400, 0..80),
        y in proptest::collection::btree_set(0u32..400, 0..80),
        threads in 1usize..4,
        seed in any::<u64>(),
    ) {
        // Receiver order is not sorted: reverse it so indices are checked, not just counts.
        let xs: Vec<u32> = x.iter().rev().copied().collect();
        let ys: Vec<u32> = y.iter().copied().collect();
        let (x, y) = (ids(&xs), ids(&ys));
        let expected = plain_indices(&x, &y);
        prop_assert_eq!(run(&x, &y, Mode::Linked, threads, seed), PsiOutput::Linked(expected.clone()));
        prop_assert_eq!(
            run(&x, &y, Mode::Cardinality, threads, seed ^ 1),
            PsiOutput::Cardinality(expected.len())
        );
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Request::from_bytes(&bytes);
        let _ = Response::from_bytes(&bytes);
        // Random bytes behind a valid header reach point decoding: errors, never panics.
        let mut request = vec![WIRE_VERSION, 1, 2];
        request.extend_from_slice(&((bytes.len() / 32) as u32).to_le_bytes());
        request.extend_from_slice(&bytes[..bytes.len() / 32 * 32]);
        if let Ok(request) = Request::from_bytes(&request) {
            let sender = Sender::new(&mut rng(5), &ids(&[1, 2]), Mode::Linked, 1).unwrap();
            let _ = sender.respond(&request, &mut rng(6));
        }
    }
}

fn sample_messages() -> (Receiver, Vec<u8>, Vec<u8>) {
    let mut rng = rng(7);
    let (receiver, request) = Receiver::new(&mut rng, &ids(&[1, 2, 3]), Mode::Linked, 1).unwrap();
    let sender = Sender::new(&mut rng, &ids(&[2, 3, 4, 5]), Mode::Linked, 1).unwrap();
    let response = sender.respond(&request, &mut rng).unwrap();
    (
        receiver,
        request.to_bytes().unwrap(),
        response.to_bytes().unwrap(),
    )
}

#[test]
fn truncated_messages_are_errors() {
    let (_, request, response) = sample_messages();
    assert_eq!(request.len(), 7 + 3 * 32);
    assert_eq!(response.len(), 11 + 3 * 16 + 4 * 32);
    for len in 0..request.len() {
        assert!(
            matches!(
                Request::from_bytes(&request[..len]),
                Err(PsiError::Truncated { .. })
            ),
            "request prefix {len}"
        );
    }
    for len in 0..response.len() {
        assert!(
            matches!(
                Response::from_bytes(&response[..len]),
                Err(PsiError::Truncated { .. })
            ),
            "response prefix {len}"
        );
    }
}

#[test]
fn malformed_headers_are_errors() {
    let (_, request, response) = sample_messages();
    let mut long = request.clone();
    long.push(0);
    assert_eq!(
        Request::from_bytes(&long),
        Err(PsiError::Length {
            expected: request.len(),
            got: request.len() + 1
        })
    );
    let mut long = response.clone();
    long.extend_from_slice(&[0; 16]);
    assert!(matches!(
        Response::from_bytes(&long),
        Err(PsiError::Length { .. })
    ));

    let mut bad = request.clone();
    bad[0] = 9;
    assert_eq!(Request::from_bytes(&bad), Err(PsiError::Version(9)));
    assert_eq!(
        Request::from_bytes(&response),
        Err(PsiError::Kind {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        Response::from_bytes(&request),
        Err(PsiError::Kind {
            expected: 2,
            got: 1
        })
    );
    let mut bad = request.clone();
    bad[2] = 0;
    assert_eq!(Request::from_bytes(&bad), Err(PsiError::UnknownMode(0)));

    // Oversized counts are refused from the header, before any allocation.
    for count in [MAX_ELEMENTS as u32 + 1, u32::MAX] {
        let mut big = vec![WIRE_VERSION, 1, 2];
        big.extend_from_slice(&count.to_le_bytes());
        assert!(matches!(
            Request::from_bytes(&big),
            Err(PsiError::TooMany { .. })
        ));
        let mut big = vec![WIRE_VERSION, 2, 2];
        big.extend_from_slice(&1u32.to_le_bytes());
        big.extend_from_slice(&count.to_le_bytes());
        assert!(matches!(
            Response::from_bytes(&big),
            Err(PsiError::TooMany { .. })
        ));
    }
    // A count that claims more than the body holds.
    let mut short = request.clone();
    short[3] = 4;
    assert!(matches!(
        Request::from_bytes(&short),
        Err(PsiError::Truncated { .. })
    ));
}

#[test]
fn invalid_points_are_errors() {
    let sender = Sender::new(&mut rng(8), &ids(&[1, 2]), Mode::Linked, 1).unwrap();
    let (_, request_bytes, response_bytes) = sample_messages();
    let mut request = Request::from_bytes(&request_bytes).unwrap();
    // The identity (all zeros) and a non-canonical encoding (all 0xff).
    for (index, bad) in [(1usize, [0u8; 32]), (2, [0xff; 32])] {
        let mut r = request.clone();
        r.points[index] = bad;
        assert_eq!(
            sender.respond(&r, &mut rng(9)),
            Err(PsiError::InvalidPoint { index })
        );
    }
    // A bad point deep into a multi-threaded batch reports its global index.
    let x = ids(&(0..1000).collect::<Vec<_>>());
    let (_, mut big) = Receiver::new(&mut rng(10), &x, Mode::Linked, 2).unwrap();
    big.points[777] = [0xff; 32];
    let sender3 = Sender::new(&mut rng(11), &ids(&[1]), Mode::Linked, 3).unwrap();
    assert_eq!(
        sender3.respond(&big, &mut rng(12)),
        Err(PsiError::InvalidPoint { index: 777 })
    );

    let (receiver, _, _) = sample_messages();
    let mut response = Response::from_bytes(&response_bytes).unwrap();
    response.sender_points[3] = [0xff; 32];
    assert_eq!(
        receiver.finish(&response),
        Err(PsiError::InvalidPoint { index: 3 })
    );
    response.reblinded.pop();
    assert_eq!(
        receiver.finish(&response),
        Err(PsiError::CountMismatch {
            expected: 3,
            got: 2
        })
    );
    request.mode = Mode::Cardinality;
    assert!(matches!(
        sender.respond(&request, &mut rng(13)),
        Err(PsiError::ModeMismatch { .. })
    ));
}

#[test]
fn dedup_plan_on_three_sites_equals_the_plain_rule() {
    let sites: Vec<Vec<Vec<u8>>> = vec![
        ids(&(0..300).collect::<Vec<_>>()),
        ids(&(200..600).rev().collect::<Vec<_>>()),
        ids(&(100..150)
            .chain(500..800)
            .chain(250..260)
            .collect::<Vec<_>>()),
    ];
    let plan = dedup_plan(&mut rng(14), &sites, 2).unwrap();
    let expected: Vec<Vec<usize>> = sites
        .iter()
        .enumerate()
        .map(|(k, ids)| {
            let earlier: BTreeSet<&Vec<u8>> = sites[..k].iter().flatten().collect();
            ids.iter()
                .enumerate()
                .filter(|(_, id)| earlier.contains(id))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    assert_eq!(expected[0].len(), 0);
    assert_eq!(expected[1].len(), 100);
    assert_eq!(expected[2].len(), 50 + 100 + 10);
    assert_eq!(plan, expected);

    // The later site's function refuses a cardinality-only receiver.
    let (receiver, _) = Receiver::new(&mut rng(15), &sites[1], Mode::Cardinality, 1).unwrap();
    assert!(matches!(
        dedup_drops(&receiver, &[]),
        Err(PsiError::ModeMismatch { .. })
    ));
}

#[test]
fn keyed_identifiers() {
    let a = ContractKey::derive(b"consortium secret", b"contract A");
    let b = ContractKey::derive(b"consortium secret", b"contract B");
    assert_eq!(normalize_national_id(" 756.1234-5678/97 "), "7561234567897");
    assert_eq!(normalize_national_id("ab 12"), "AB12");
    assert_eq!(
        identifier_key(&a, "756.1234.5678.97"),
        identifier_key(&a, " 7561234567897")
    );
    let raw: Vec<String> = (0..1000).map(|i| format!("756{i:010}")).collect();
    let under_a: BTreeSet<_> = raw.iter().map(|r| identifier_key(&a, r)).collect();
    let under_b: BTreeSet<_> = raw.iter().map(|r| identifier_key(&b, r)).collect();
    assert_eq!(under_a.len(), 1000);
    assert_eq!(under_b.len(), 1000);
    assert!(
        under_a.is_disjoint(&under_b),
        "a different contract key gives disjoint identifiers"
    );
    // A pseudonym never equals the national ID with the same bytes.
    assert_ne!(
        pseudonym_identifier(&a, b"7561234567897"),
        identifier_key(&a, "7561234567897")
    );
    assert_eq!(
        pseudonym_identifier(&a, b"p-1"),
        pseudonym_identifier(&a, b"p-1")
    );
    assert_ne!(
        pseudonym_identifier(&a, b"p-1"),
        pseudonym_identifier(&b, b"p-1")
    );
    // The keyed identifiers run through PSI like any bytes.
    let x: Vec<_> = raw[..600].iter().map(|r| identifier_key(&a, r)).collect();
    let y: Vec<_> = raw[400..].iter().map(|r| identifier_key(&a, r)).collect();
    let mut rng = rng(16);
    let (receiver, request) = Receiver::new(&mut rng, &x, Mode::Linked, 2).unwrap();
    let sender = Sender::new(&mut rng, &y, Mode::Linked, 2).unwrap();
    let out = receiver
        .finish(&sender.respond(&request, &mut rng).unwrap())
        .unwrap();
    assert_eq!(out, PsiOutput::Linked((400..600).collect()));
}

#[test]
fn bench_small_run_agrees_with_plain_intersection() {
    use medspace_privacy::psi::bench::{BenchOptions, run};
    let mut lines = 0;
    let report = run(
        BenchOptions {
            n: 2000,
            overlap: 0.3,
            threads: 2,
            mode: Mode::Linked,
        },
        &mut |_| lines += 1,
    )
    .unwrap();
    assert_eq!(report.intersection, 600);
    assert_eq!(report.plain_intersection, 600);
    assert_eq!(report.bytes_to_sender, 7 + 2000 * 32);
    assert_eq!(report.bytes_to_receiver, 11 + 2000 * 48);
    assert!(lines >= 5);
    let text = report.to_string();
    assert!(text.contains("core-µs per element"), "{text}");
    assert!(text.contains("SecretFlow"), "{text}");
    assert!(
        run(
            BenchOptions {
                n: 10,
                overlap: 1.5,
                threads: 1,
                mode: Mode::Linked
            },
            &mut |_| {}
        )
        .is_err()
    );
}
