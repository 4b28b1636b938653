//! Inclusion proofs: verify against the root alone; fail for tampered values, tampered proof
//! steps and other roots.

use super::fixture::*;
use super::grants::issue;
use commonware_codec::Encode;
use medspace_state::records::keys;
use medspace_state::trie::ProofError;
use medspace_types::*;

#[test]
fn contract_proof_verifies_and_detects_tampering() {
    let mut net = Net::new();
    let c = net.active(Mode::Compute, &["hospital-a", "hospital-b"], Level::L3);
    let root = net.state.root();
    let proven = net.state.proven_contract(c).unwrap().unwrap();
    proven.verify(&root).unwrap();
    assert_eq!(proven.record.encode().to_vec(), proven.value);
    assert_eq!(proven.key, keys::contract(c));
    assert!(!proven.proof.path.is_empty());

    // A tampered value: flip one byte anywhere.
    for i in [0, proven.value.len() / 2, proven.value.len() - 1] {
        let mut t = proven.clone();
        t.value[i] ^= 0x01;
        assert!(
            matches!(t.verify(&root), Err(ProofError::RootMismatch { .. })),
            "byte {i}"
        );
    }
    // A value with a byte more or less.
    let mut t = proven.clone();
    t.value.push(0);
    assert!(t.verify(&root).is_err());
    let mut t = proven.clone();
    t.value.pop();
    assert!(t.verify(&root).is_err());
    // Another key.
    let mut t = proven.clone();
    t.key = keys::contract(ContractId(c.0 ^ 1));
    assert!(t.verify(&root).is_err());
    // A tampered proof step: sibling hash, branch bit, a dropped or repeated step.
    for i in 0..proven.proof.path.len() {
        let mut t = proven.clone();
        t.proof.path[i].sibling.0[0] ^= 0x80;
        assert!(
            matches!(t.verify(&root), Err(ProofError::RootMismatch { .. })),
            "step {i}"
        );
        let mut t = proven.clone();
        t.proof.path[i].bit += 1;
        assert!(t.verify(&root).is_err(), "bit of step {i}");
    }
    let mut t = proven.clone();
    t.proof.path.remove(0);
    assert!(t.verify(&root).is_err());
    let mut t = proven.clone();
    let first = t.proof.path[0].clone();
    t.proof.path.insert(0, first);
    assert!(matches!(t.verify(&root), Err(ProofError::Malformed { .. })));

    // Another root: a later state's.
    let k = net.user(RESEARCHER);
    net.ok(&k, submit_job(c, 10));
    let later = net.state.root();
    assert_ne!(later, root);
    assert!(matches!(
        proven.verify(&later),
        Err(ProofError::RootMismatch { .. })
    ));
    assert!(proven.verify(&Hash([0; 32])).is_err());
    // A fresh proof verifies against the later root, and shows the new record.
    let fresh = net.state.proven_contract(c).unwrap().unwrap();
    fresh.verify(&later).unwrap();
    // Per site x the contract's sites.
    assert_eq!(
        fresh.record.epsilon_reserved,
        10 * fresh.record.owners.len() as u64
    );
    assert!(fresh.verify(&root).is_err());
}

#[test]
fn every_patient_facing_record_comes_with_a_proof() {
    let mut net = Net::new();
    let now = net.ctx.time_ms;
    net.consent(0, Purpose::Research, true);
    let g = issue(
        &mut net,
        0,
        grant("hospital-b", "hospital-a", &["Encounter"], now + DAY_MS, 0),
    );
    let h = net.node("hospital-a");
    let pid = net.pid(0);
    net.ok(
        &h,
        record_access(pid, "hospital-b", AccessBasis::Grant(g), &["Encounter"]),
    );
    let root = net.state.root();
    let consents = net.state.consents_of(&pid).unwrap();
    let grants = net.state.grants_of(&pid).unwrap();
    let accesses = net.state.accesses_of(&pid).unwrap();
    let log = net.state.patient_log(&pid).unwrap();
    assert_eq!(
        (consents.len(), grants.len(), accesses.len(), log.len()),
        (1, 1, 1, 3)
    );
    consents[0].verify(&root).unwrap();
    grants[0].verify(&root).unwrap();
    accesses[0].verify(&root).unwrap();
    for e in &log {
        e.verify(&root).unwrap();
        let mut t = e.clone();
        let last = t.value.len() - 1;
        t.value[last] ^= 0xff;
        assert!(t.verify(&root).is_err());
    }
    let pg = net.state.proven_grant(g).unwrap().unwrap();
    pg.verify(&root).unwrap();
    assert_eq!(pg.value, grants[0].value);
    // A proof for one patient's record does not pass as another key's.
    let mut t = accesses[0].clone();
    t.key = keys::grant(g);
    assert!(t.verify(&root).is_err());
    // Raw proofs of any record: the policy, a member's balance.
    for key in [
        keys::policy(),
        keys::balance(&mid("hospital-a")),
        keys::chain_id(),
    ] {
        let (value, proof) = net.state.prove(&key).unwrap().unwrap();
        proof.verify(&root, &key, &value).unwrap();
        assert_eq!(
            net.state.get_raw(&key).unwrap().as_deref(),
            Some(&value[..])
        );
    }
    assert!(net.state.prove(&keys::grant(GrantId(1))).unwrap().is_none());
    assert!(net.state.proven_contract(ContractId(1)).unwrap().is_none());
}
