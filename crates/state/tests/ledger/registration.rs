//! A patient registers only with the attestation of a hospital that verified the person.

use super::fixture::*;
use medspace_state::TxError;
use medspace_types::*;

fn attested(chain: &Name, patient: &PublicKey, named: &str, signer: &Keypair) -> Payload {
    Payload::RegisterPatient(RegisterPatient::attested(
        chain,
        patient,
        mid(named),
        signer,
    ))
}

#[test]
fn a_patient_registers_only_with_a_hospitals_attestation() {
    let mut net = Net::new();
    let k = Keypair::from_seed(950);
    let other = Keypair::from_seed(951);
    let chain = net.chain.clone();
    let hospital = net.member("hospital-a");
    let cases: Vec<(&str, Payload)> = vec![
        (
            "self-attested",
            attested(&chain, &k.public(), "hospital-a", &k),
        ),
        (
            "for another key",
            attested(&chain, &other.public(), "hospital-a", &hospital),
        ),
        (
            "for another chain",
            attested(&name("other-chain"), &k.public(), "hospital-a", &hospital),
        ),
        (
            "naming another hospital",
            attested(&chain, &k.public(), "hospital-b", &hospital),
        ),
        (
            "by a steward's key",
            attested(
                &chain,
                &k.public(),
                "hospital-a",
                &net.user(&steward("hospital-a")),
            ),
        ),
    ];
    for (what, p) in cases {
        let tx = SignedTx::new(&net.chain, &k, 0, p);
        assert!(
            matches!(
                net.state.check_tx(&tx),
                Err(TxError::Invalid {
                    field: "attestation",
                    ..
                })
            ),
            "{what}: admitted"
        );
        let err = net.refuse_tx(&tx);
        assert!(
            matches!(
                err,
                TxError::Invalid {
                    field: "attestation",
                    ..
                }
            ),
            "{what}: {err:?}"
        );
    }
    // Only a hospital attests, and only while it is a member.
    let research = net.member("research-1");
    let err = net.refuse(&k, attested(&chain, &k.public(), "research-1", &research));
    assert!(matches!(err, TxError::Forbidden { .. }), "{err:?}");
    let err = net.refuse(&k, attested(&chain, &k.public(), "hospital-z", &hospital));
    assert!(matches!(err, TxError::NotMember { .. }), "{err:?}");
    let p = net.registration(&k.public(), "hospital-c");
    net.pass(
        "hospital-a",
        Payload::RemoveMember(RemoveMember {
            member: mid("hospital-c"),
        }),
    );
    let err = net.refuse(&k, p.clone());
    assert!(matches!(err, TxError::NotMember { .. }), "{err:?}");
    // A live hospital's attestation registers the key, once.
    let p = net.registration(&k.public(), "hospital-b");
    net.ok(&k, p.clone());
    let err = net.refuse(&k, p);
    assert!(
        matches!(err, TxError::Invalid { field: "key", .. }),
        "{err:?}"
    );
}
