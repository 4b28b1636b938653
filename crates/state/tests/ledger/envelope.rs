//! The envelope checks every transaction passes first: signature, chain id, nonce, signer.

use super::fixture::*;
use medspace_state::TxError;
use medspace_types::*;

fn consent_payload() -> Payload {
    Payload::SetConsent(SetConsent {
        purpose: Purpose::Research,
        study: None,
        decision: Decision::Allow,
        l4_opt_in: false,
    })
}

#[test]
fn replayed_transaction_is_refused() {
    let mut net = Net::new();
    let p = net.patient(0);
    let tx = net.tx(&p, consent_payload());
    net.apply_tx(&tx).unwrap();
    let err = net.refuse_tx(&tx);
    assert!(
        matches!(
            err,
            TxError::Nonce {
                expected: 2,
                got: 1,
                ..
            }
        ),
        "{err:?}"
    );
    // Replayed in a later block too.
    net.next_block();
    assert!(matches!(net.refuse_tx(&tx), TxError::Nonce { .. }));
}

#[test]
fn future_and_past_nonces_are_refused() {
    let mut net = Net::new();
    let k = net.user(RESEARCHER);
    let n = net.nonce(&k);
    let future = SignedTx::new(&net.chain, &k, n + 1, consent_payload());
    let err = net.refuse_tx(&future);
    assert!(matches!(err, TxError::Nonce { expected, got, .. } if expected == n && got == n + 1));
    let m = net.member("hospital-a");
    net.ok(
        &m,
        Payload::PublishDataset(PublishDataset {
            dataset: dataset_desc("hospital-a", 2),
        }),
    );
    let past = SignedTx::new(
        &net.chain,
        &m,
        0,
        Payload::PublishDataset(PublishDataset {
            dataset: dataset_desc("hospital-a", 3),
        }),
    );
    assert!(matches!(
        net.refuse_tx(&past),
        TxError::Nonce {
            expected: 1,
            got: 0,
            ..
        }
    ));
}

#[test]
fn tampered_signature_is_refused() {
    let mut net = Net::new();
    let p = net.patient(0);
    let tx = net.tx(&p, consent_payload());
    let mut bytes = tx.to_bytes().to_vec();
    let n = bytes.len();
    // Flip a bit in the signature's R part (the last 64 bytes are the signature).
    bytes[n - 64] ^= 0x01;
    let bad = SignedTx::from_bytes(bytes).expect("still decodes");
    assert!(!bad.verify_signature());
    assert!(matches!(net.refuse_tx(&bad), TxError::BadSignature { .. }));
    // Flip a bit in the S part.
    let mut bytes = tx.to_bytes().to_vec();
    bytes[n - 10] ^= 0x04;
    if let Ok(bad) = SignedTx::from_bytes(bytes) {
        assert!(matches!(net.refuse_tx(&bad), TxError::BadSignature { .. }));
    }
    // The genuine one still applies.
    net.apply_tx(&tx).unwrap();
}

#[test]
fn tampered_body_is_refused() {
    let mut net = Net::new();
    let k = net.user(RESEARCHER);
    let c_payload = request(
        Purpose::Research,
        Mode::Compute,
        &["hospital-a"],
        Level::L1,
        net.ctx.time_ms + DAY_MS,
        1_000,
        10,
    );
    let tx = net.tx(&k, c_payload);
    let mut bad = tx.clone();
    if let Payload::SubmitRequest(r) = &mut bad.body.payload {
        r.fee = 0;
    }
    assert!(matches!(net.refuse_tx(&bad), TxError::BadSignature { .. }));
    let mut bad = tx.clone();
    bad.body.signer = net.user(AUDITOR).public();
    assert!(matches!(net.refuse_tx(&bad), TxError::BadSignature { .. }));
    // Signed by someone else than the claimed signer.
    let forged = tx.body.clone().sign(&net.user(AUDITOR));
    assert!(matches!(
        net.refuse_tx(&forged),
        TxError::BadSignature { .. }
    ));
    net.apply_tx(&tx).unwrap();
}

#[test]
fn wrong_chain_id_is_refused() {
    let mut net = Net::new();
    let k = net.patient(1);
    let tx = SignedTx::new(&name("other-chain"), &k, net.nonce(&k), consent_payload());
    let err = net.refuse_tx(&tx);
    assert_eq!(
        err,
        TxError::ChainId {
            expected: "medspace-test".into(),
            got: "other-chain".into()
        }
    );
    assert!(matches!(
        net.state.check_tx(&tx),
        Err(TxError::ChainId { .. })
    ));
}

#[test]
fn unknown_signer_is_refused() {
    let mut net = Net::new();
    let stranger = Keypair::from_seed(9_999);
    let payloads = vec![
        consent_payload(),
        approve(medspace_types::ContractId(1)),
        Payload::Vote(Vote {
            proposal: ProposalId(1),
            approve: true,
        }),
        Payload::PublishDataset(PublishDataset {
            dataset: dataset_desc("hospital-a", 9),
        }),
    ];
    for p in payloads {
        let tx = SignedTx::new(&net.chain, &stranger, 0, p);
        assert!(matches!(
            net.state.check_tx(&tx),
            Err(TxError::UnknownSigner { .. })
        ));
        let err = net.refuse_tx(&tx);
        assert!(matches!(err, TxError::UnknownSigner { .. }), "{err:?}");
    }
    // A rotation by an unknown key.
    let new = Keypair::from_seed(9_998);
    let proof = new.sign(
        ROTATE_NAMESPACE,
        &rotation_message(&net.chain, &stranger.public(), 0),
    );
    let tx = SignedTx::new(
        &net.chain,
        &stranger,
        0,
        Payload::RotateKey(RotateKey {
            new_key: new.public(),
            proof,
        }),
    );
    assert!(matches!(net.refuse_tx(&tx), TxError::UnknownSigner { .. }));
}

#[test]
fn check_tx_admits_valid_and_refuses_used_nonces() {
    let mut net = Net::new();
    let k = net.patient(0);
    let tx = net.tx(&k, consent_payload());
    net.state.check_tx(&tx).unwrap();
    // check_tx writes nothing.
    assert_eq!(net.nonce(&k), tx.body.nonce);
    net.apply_tx(&tx).unwrap();
    assert!(matches!(
        net.state.check_tx(&tx),
        Err(TxError::Nonce { .. })
    ));
    let newcomer = Keypair::from_seed(5_000);
    let reg = SignedTx::new(
        &net.chain,
        &newcomer,
        0,
        net.registration(&newcomer.public(), "hospital-b"),
    );
    net.state.check_tx(&reg).unwrap();
    // Without a hospital's attestation a fresh key is not even admitted to a mempool.
    let forged = SignedTx::new(
        &net.chain,
        &newcomer,
        0,
        Payload::RegisterPatient(RegisterPatient::attested(
            &net.chain,
            &newcomer.public(),
            mid("hospital-b"),
            &newcomer,
        )),
    );
    assert!(matches!(
        net.state.check_tx(&forged),
        Err(TxError::Invalid {
            field: "attestation",
            ..
        })
    ));
}

#[test]
fn retired_key_cannot_sign_after_rotation() {
    let mut net = Net::new();
    for who in ["user", "member", "patient"] {
        let old = match who {
            "user" => net.user(RESEARCHER),
            "member" => net.member("hospital-b"),
            _ => net.patient(2),
        };
        let new = Keypair::from_seed(7_000 + who.len() as u64);
        let nonce = net.nonce(&old);
        // A proof by another key than the new one is refused.
        let wrong = Keypair::from_seed(7_100);
        let bad_proof = wrong.sign(
            ROTATE_NAMESPACE,
            &rotation_message(&net.chain, &old.public(), nonce),
        );
        let err = net.refuse(
            &old,
            Payload::RotateKey(RotateKey {
                new_key: new.public(),
                proof: bad_proof,
            }),
        );
        assert!(
            matches!(err, TxError::Invalid { field: "proof", .. }),
            "{err:?}"
        );
        // A proof for another nonce is refused (no replay of a rotation).
        let stale = new.sign(
            ROTATE_NAMESPACE,
            &rotation_message(&net.chain, &old.public(), nonce + 1),
        );
        let err = net.refuse(
            &old,
            Payload::RotateKey(RotateKey {
                new_key: new.public(),
                proof: stale,
            }),
        );
        assert!(matches!(err, TxError::Invalid { field: "proof", .. }));
        // Rotating to a key that is already registered is refused.
        let taken = net.user(AUDITOR);
        let proof = taken.sign(
            ROTATE_NAMESPACE,
            &rotation_message(&net.chain, &old.public(), nonce),
        );
        let err = net.refuse(
            &old,
            Payload::RotateKey(RotateKey {
                new_key: taken.public(),
                proof,
            }),
        );
        assert!(matches!(
            err,
            TxError::Invalid {
                field: "new_key",
                ..
            }
        ));

        let proof = new.sign(
            ROTATE_NAMESPACE,
            &rotation_message(&net.chain, &old.public(), nonce),
        );
        net.ok(
            &old,
            Payload::RotateKey(RotateKey {
                new_key: new.public(),
                proof,
            }),
        );
        let err = net.refuse(&old, consent_payload());
        assert!(matches!(err, TxError::RetiredKey { .. }), "{who}: {err:?}");
        assert!(matches!(
            net.state.check_tx(&net.tx(&old, consent_payload())),
            Err(TxError::RetiredKey { .. })
        ));
        assert_eq!(net.nonce(&new), 0);
        match who {
            "user" => {
                let rec = net.state.user(&uid(RESEARCHER)).unwrap().unwrap();
                assert_eq!(rec.key, new.public());
                // The new key acts as the researcher.
                net.ok(
                    &new,
                    request(
                        Purpose::Research,
                        Mode::Compute,
                        &["hospital-a"],
                        Level::L1,
                        net.ctx.time_ms + DAY_MS,
                        10,
                        0,
                    ),
                );
                net.users.insert(RESEARCHER.into(), new);
            }
            "member" => {
                let rec = net.state.member(&mid("hospital-b")).unwrap().unwrap();
                assert_eq!(rec.member.key, new.public());
                net.ok(
                    &new,
                    Payload::PublishDataset(PublishDataset {
                        dataset: dataset_desc("hospital-b", 2),
                    }),
                );
                net.members.insert("hospital-b".into(), new);
            }
            _ => {
                let rec = net.state.patient(&net.pid(2)).unwrap().unwrap();
                assert_eq!(rec.key, new.public());
                net.ok(&new, consent_payload());
                // The pseudonym stays the same.
                assert_eq!(net.state.consents_of(&net.pid(2)).unwrap().len(), 1);
            }
        }
    }
}

#[test]
fn register_patient_twice_is_refused() {
    let mut net = Net::new();
    let p = net.patient(0);
    // A registered key signing register_patient again.
    let again = net.registration(&p.public(), "hospital-a");
    let err = net.refuse(&p, again);
    assert!(
        matches!(err, TxError::Invalid { field: "key", .. }),
        "{err:?}"
    );
    // A user key cannot register as a patient.
    let u = net.user(RESEARCHER);
    let reg = net.registration(&u.public(), "hospital-a");
    let err = net.refuse(&u, reg);
    assert!(matches!(err, TxError::Invalid { field: "key", .. }));
    // A patient's first transaction must carry nonce 0.
    let k = Keypair::from_seed(4_242);
    let tx = SignedTx::new(
        &net.chain,
        &k,
        1,
        net.registration(&k.public(), "hospital-a"),
    );
    assert!(matches!(
        net.refuse_tx(&tx),
        TxError::Nonce {
            expected: 0,
            got: 1,
            ..
        }
    ));
    let id = net.register_patient(4_242);
    let rec = net.state.patient(&id).unwrap().unwrap();
    assert_eq!(rec.key, k.public());
    assert_eq!(rec.registered_height, net.ctx.height);
}

#[test]
fn apply_block_refuses_a_signer_key_that_is_not_a_point() {
    let mut net = Net::new();
    let good = net.tx(&net.patient(0), consent_payload());
    let mut bad = net.tx(&net.patient(1), consent_payload());
    bad.body.signer = (2u8..)
        .map(|b| {
            let mut a = [0u8; 32];
            a[0] = b;
            PublicKey::from_bytes(a)
        })
        .find(|k| !k.is_valid())
        .unwrap();
    let good2 = net.tx(&net.patient(2), consent_payload());
    let ctx = net.ctx;
    let root = net.state.root();
    let mut one_by_one = net.state.clone();
    let out = net
        .state
        .apply_block(&ctx, &[good.clone(), bad.clone(), good2.clone()]);
    assert!(out[0].is_ok() && out[2].is_ok());
    assert!(matches!(out[1], Err(TxError::BadSignature { .. })));
    assert_ne!(net.state.root(), root);
    // The same as applying one by one.
    assert!(one_by_one.apply(&good, &ctx).is_ok());
    assert!(matches!(
        one_by_one.apply(&bad, &ctx),
        Err(TxError::BadSignature { .. })
    ));
    assert!(one_by_one.apply(&good2, &ctx).is_ok());
    assert_eq!(one_by_one.root(), net.state.root());
    // An empty block changes nothing.
    let before = net.state.root();
    assert!(net.state.apply_block(&ctx, &[]).is_empty());
    assert_eq!(net.state.root(), before);
}

#[test]
fn apply_block_with_a_tampered_signature_among_good_ones() {
    let mut net = Net::new();
    let ctx = net.ctx;
    let mut txs: Vec<SignedTx> = (0..PATIENTS)
        .map(|i| net.tx(&net.patient(i), consent_payload()))
        .collect();
    txs[2].body.nonce += 5;
    let out = net.state.apply_block(&ctx, &txs);
    for (i, o) in out.iter().enumerate() {
        if i == 2 {
            assert!(matches!(o, Err(TxError::BadSignature { .. })), "{o:?}");
        } else {
            assert!(o.is_ok(), "{i}: {o:?}");
        }
    }
    assert_eq!(
        net.nonce(&net.patient(2)),
        1,
        "the refused one used no nonce"
    );
    assert_eq!(net.nonce(&net.patient(3)), 2);
}
