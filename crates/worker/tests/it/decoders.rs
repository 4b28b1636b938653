//! Every message a worker reads from another node or a client, fed arbitrary and damaged input:
//! decoding never panics, and a message that decodes is checked by the round's rules, which
//! refuse it with a typed error or accept it, never panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use medspace_consortium::{Consortium, GENESIS_MS};
use medspace_privacy::secagg::SiteSecrets;
use medspace_state::{BlockContext, State};
use medspace_types::*;
use medspace_worker::records::Redeem;
use medspace_worker::round::Job;
use medspace_worker::wire::{DealingMsg, MaskRequest, MaskedMsg, ResultDoc, RevealMsg};
use proptest::prelude::*;
use rand_core::SeedableRng as _;
use std::sync::OnceLock;

const SPEC: &str =
    r#"{"version":1,"cohort":{"index_date":"2025-01-01"},"aggregate":"count","group_by":["sex"]}"#;

/// A ledger with one job over the three hospitals, and valid messages of its round.
struct Fixture {
    c: Consortium,
    state: State,
    job: JobId,
    dealings: Vec<DealingMsg>,
    request: MaskRequest,
    masked: MaskedMsg,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let c = Consortium::default_devnet(1, GENESIS_MS).unwrap();
        let mut state = State::genesis(&c.genesis).unwrap();
        let mut h = 0;
        let mut apply = |state: &mut State, key: &Keypair, p: Payload| {
            h += 1;
            let nonce = state.next_nonce(&key.public()).unwrap();
            let tx = SignedTx::new(&c.genesis.chain_id, key, nonce, p);
            state
                .apply(
                    &tx,
                    &BlockContext {
                        height: h,
                        time_ms: GENESIS_MS + h,
                    },
                )
                .unwrap()
        };
        let field = |name: &str| FieldDesc {
            name: Text::new(name).unwrap(),
            level: Level::L2,
            missing_ppm: 0,
            invalid_ppm: 0,
        };
        for hosp in medspace_consortium::HOSPITALS {
            apply(
                &mut state,
                c.user_key(&format!("{hosp}.steward")).unwrap(),
                Payload::PublishDataset(PublishDataset {
                    dataset: DatasetDescription {
                        id: DatasetId::new(&format!("{hosp}.cdm")).unwrap(),
                        title: Text::new("cdm").unwrap(),
                        version: 1,
                        tables: List::new(vec![TableDesc {
                            name: Text::new("person").unwrap(),
                            rows: 10,
                            duplicate_ppm: 0,
                            implausible_ppm: 0,
                            fields: List::new(vec![
                                field("person_id"),
                                field("gender_source_value"),
                            ])
                            .unwrap(),
                        }])
                        .unwrap(),
                        content_hash: Hash::default(),
                    },
                }),
            );
        }
        let fields: Vec<FieldRef> = medspace_consortium::HOSPITALS
            .iter()
            .map(|hosp| FieldRef {
                dataset: DatasetId::new(&format!("{hosp}.cdm")).unwrap(),
                table: Text::new("person").unwrap(),
                field: Text::new("gender_source_value").unwrap(),
            })
            .collect();
        let researcher = c.user_key("research-1.researcher").unwrap().clone();
        let r = apply(
            &mut state,
            &researcher,
            Payload::SubmitRequest(SubmitRequest {
                purpose: Purpose::Research,
                mode: Mode::Compute,
                study: None,
                fields: List::new(fields).unwrap(),
                computation: Blob::new(SPEC.as_bytes().to_vec()).unwrap(),
                expiry_ms: GENESIS_MS + 86_400_000,
                epsilon_budget: 1_000_000,
                fee: 0,
            }),
        );
        let Some(medspace_state::Created::Contract(contract)) = r.created else {
            panic!()
        };
        for hosp in medspace_consortium::HOSPITALS {
            apply(
                &mut state,
                c.user_key(&format!("{hosp}.steward")).unwrap(),
                Payload::Approve(Approve { contract }),
            );
        }
        let r = apply(
            &mut state,
            &researcher,
            Payload::SubmitJob(SubmitJob {
                contract,
                computation: Blob::new(SPEC.as_bytes().to_vec()).unwrap(),
                epsilon: 1000,
            }),
        );
        let Some(medspace_state::Created::Job(job)) = r.created else {
            panic!()
        };
        let j = Job::from_ledger(&state, job).unwrap();
        let secrets: Vec<SiteSecrets> = (0..3)
            .map(|i| SiteSecrets::random(rand_chacha::ChaCha20Rng::seed_from_u64(i)))
            .collect();
        let dealings: Vec<DealingMsg> = medspace_consortium::HOSPITALS
            .iter()
            .zip(&secrets)
            .map(|(hosp, s)| {
                j.dealing(
                    &MemberId::new(hosp).unwrap(),
                    c.node_key(hosp).unwrap(),
                    &c.agreement(hosp),
                    s,
                )
                .unwrap()
            })
            .collect();
        let request = MaskRequest {
            job,
            dealings: dealings.clone(),
        };
        let b = MemberId::new("hospital-b").unwrap();
        let (_, _, masked) = j
            .accept_mask(
                &b,
                c.node_key("hospital-b").unwrap(),
                &c.agreement("hospital-b"),
                &secrets[1],
                &vec![5; j.layout_len()],
                5,
                &request,
            )
            .unwrap();
        Fixture {
            c,
            state,
            job,
            dealings,
            request,
            masked,
        }
    })
}

/// Feeds `bytes` to every decoder and, where it decodes, to the round's checks.
fn feed(bytes: &[u8]) {
    let f = fixture();
    let j = Job::from_ledger(&f.state, f.job).unwrap();
    if let Ok(d) = serde_json::from_slice::<DealingMsg>(bytes) {
        let _ = j.check_dealing(&d);
    }
    if let Ok(m) = serde_json::from_slice::<MaskedMsg>(bytes) {
        let _ = j.check_masked(&m, &[0, 1, 2]);
    }
    if let Ok(r) = serde_json::from_slice::<RevealMsg>(bytes) {
        let _ = j.check_reveal(&r, &[0, 1, 2]);
    }
    if let Ok(req) = serde_json::from_slice::<MaskRequest>(bytes) {
        let c = &f.c;
        let _ = j.accept_mask(
            &MemberId::new("hospital-c").unwrap(),
            c.node_key("hospital-c").unwrap(),
            &c.agreement("hospital-c"),
            &SiteSecrets::random(rand_chacha::ChaCha20Rng::seed_from_u64(9)),
            &vec![1; j.layout_len()],
            1,
            &req,
        );
    }
    let _ = serde_json::from_slice::<ResultDoc>(bytes);
    let _ = serde_json::from_slice::<Redeem>(bytes);
}

/// A valid encoding with one byte changed, one cut, or bytes added.
fn mutate(valid: &[u8], at: usize, byte: u8, how: u8) -> Vec<u8> {
    let mut v = valid.to_vec();
    let i = at % v.len().max(1);
    match how % 3 {
        0 => {
            if let Some(b) = v.get_mut(i) {
                *b = byte;
            }
        }
        1 => v.truncate(i),
        _ => v.insert(i, byte),
    }
    v
}

fn valid_encodings() -> Vec<Vec<u8>> {
    let f = fixture();
    vec![
        serde_json::to_vec(&f.dealings[0]).unwrap(),
        serde_json::to_vec(&f.request).unwrap(),
        serde_json::to_vec(&f.masked).unwrap(),
    ]
}

#[test]
fn the_valid_messages_pass_their_checks() {
    let f = fixture();
    let j = Job::from_ledger(&f.state, f.job).unwrap();
    for d in &f.dealings {
        j.check_dealing(d).unwrap();
    }
    assert_eq!(j.check_masked(&f.masked, &[0, 1, 2]).unwrap(), 1);
    // A changed share is refused by the site it is sealed for.
    let mut bad = f.request.clone();
    let mut share = bad.dealings[0].body.shares[2].0.clone();
    share[0] ^= 1;
    bad.dealings[0].body.shares[2].0 = share;
    assert!(
        j.check_dealing(&bad.dealings[0]).is_err(),
        "the signature covers the shares"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        feed(&bytes);
    }

    #[test]
    fn damaged_messages_never_panic(which in 0usize..3, at in any::<usize>(), byte in any::<u8>(), how in any::<u8>()) {
        let valid = valid_encodings();
        feed(&mutate(&valid[which], at, byte, how));
    }
}
