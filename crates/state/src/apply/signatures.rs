//! Batch verification of the signatures of a block, with the cache of decompressed signer keys
//! ([`KeyCache`], owned by whoever verifies: every [`State`] holds one, shared by its clones,
//! fresh at genesis, never part of the state root; a node that checks signatures outside any
//! state passes its own to [`verify_signatures_with`]).
//!
//! [`State`]: crate::State

pub use crate::key_cache::KeyCache;
use bytes::Bytes;
use commonware_codec::Encode as _;
use commonware_cryptography::{
    BatchEntry, BatchVerifier, Hasher as _, Sha256, Verifier as _, ed25519,
};
use commonware_parallel::Sequential;
use medspace_types::{SignedTx, TX_NAMESPACE};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Below this many signatures a batch costs more than checking them one by one.
const BATCH_FROM: usize = 3;

/// Checks every signature of a block, in one batch when all are good, with a fresh
/// [`KeyCache`]: signer keys are decompressed once per call. A caller that checks batch after
/// batch (a node's admission, a benchmark) should hold a cache and use
/// [`verify_signatures_with`].
pub fn verify_signatures(txs: &[SignedTx]) -> Vec<bool> {
    verify_signatures_with(&KeyCache::new(), txs)
}

/// [`verify_signatures`] with signer keys decompressed through `cache`. The outcome does not
/// depend on the cache's content.
pub fn verify_signatures_with(cache: &KeyCache, txs: &[SignedTx]) -> Vec<bool> {
    if txs.len() < BATCH_FROM {
        return txs.iter().map(|t| verify_one(cache, t)).collect();
    }
    let bodies: Vec<Bytes> = txs.iter().map(|t| t.body.encode()).collect();
    let mut rng = batch_rng(&bodies, txs);
    let signers: Vec<Option<ed25519::PublicKey>> =
        txs.iter().map(|t| cache.verifier(&t.body.signer)).collect();
    if signers.iter().any(Option::is_none) {
        return txs.iter().map(SignedTx::verify_signature).collect();
    }
    let items: Vec<(usize, &ed25519::PublicKey, &SignedTx)> = txs
        .iter()
        .zip(signers.iter())
        .enumerate()
        .filter_map(|(i, (tx, k))| k.as_ref().map(|k| (i, k, tx)))
        .collect();
    let ok = ed25519::PublicKey::verify_batch(
        &mut rng,
        &items,
        |_, (i, key, tx)| BatchEntry {
            namespace: TX_NAMESPACE,
            message: bodies.get(*i).map_or(&[][..], |b| &b[..]),
            public_key: key,
            signature: &tx.signature.0,
        },
        &Sequential,
    );
    if ok {
        vec![true; txs.len()]
    } else {
        txs.iter().map(SignedTx::verify_signature).collect()
    }
}

/// One signature, its signer's key through the cache.
fn verify_one(cache: &KeyCache, tx: &SignedTx) -> bool {
    cache
        .verifier(&tx.body.signer)
        .is_some_and(|k| k.verify(TX_NAMESPACE, &tx.body.encode(), &tx.signature.0))
}

/// The batch's random coefficients must be unpredictable to whoever chose the signatures:
/// derive them from a hash of the whole batch (bodies and signatures), which keeps the state
/// machine free of ambient randomness and every node's outcome identical.
fn batch_rng(bodies: &[Bytes], txs: &[SignedTx]) -> ChaCha20Rng {
    let mut seed = Sha256::default();
    seed.update(b"medspace/batch/v1");
    for (body, tx) in bodies.iter().zip(txs) {
        seed.update(body);
        seed.update(tx.signature.0.as_ref());
    }
    let (_, seed) = seed.finalize();
    ChaCha20Rng::from_seed(seed.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockContext, State};
    use medspace_types::PublicKey;
    use medspace_types::{
        Genesis, GenesisMember, Hash, Keypair, Member, MemberId, MemberKind, Name, Payload, Policy,
        RegisterUser, Role, Text, UserId,
    };

    fn genesis(member: &Keypair) -> Genesis {
        Genesis {
            chain_id: Name::new("cache-test").unwrap(),
            time_ms: 0,
            members: vec![GenesisMember {
                member: Member {
                    id: MemberId::new("hospital-a").unwrap(),
                    name: Text::new("Hospital A").unwrap(),
                    kind: MemberKind::Hospital,
                    key: member.public(),
                    node_key: Keypair::from_seed(0xdead).public(),
                    agreement_key: Hash::default(),
                },
                balance: 100,
            }],
            users: Vec::new(),
            policy: Policy::default(),
        }
    }

    /// `n` user registrations signed by the member, nonces from `from`.
    fn registrations(g: &Genesis, member: &Keypair, from: u64, n: u64) -> Vec<SignedTx> {
        (from..from + n)
            .map(|i| {
                let payload = Payload::RegisterUser(RegisterUser {
                    user: UserId::new(&format!("hospital-a.user-{i}")).unwrap(),
                    role: Role::Researcher,
                    key: Keypair::from_seed(1_000 + i).public(),
                });
                SignedTx::new(&g.chain_id, member, i, payload)
            })
            .collect()
    }

    const CTX: BlockContext = BlockContext {
        height: 1,
        time_ms: 1_000,
    };

    #[test]
    fn states_from_one_genesis_do_not_share_a_cache_and_clones_do() {
        let member = Keypair::from_seed(1);
        let g = genesis(&member);
        let mut a = State::genesis(&g).unwrap();
        let b = State::genesis(&g).unwrap();
        let clone = a.clone();
        assert!(!a.key_cache().shares_with(b.key_cache()));
        assert!(a.key_cache().shares_with(clone.key_cache()));
        assert!(a.key_cache().is_empty());

        let block = registrations(&g, &member, 0, 4);
        assert!(a.apply_block(&CTX, &block).iter().all(Result::is_ok));
        assert_eq!(
            a.key_cache().len(),
            1,
            "the member's key, decompressed once"
        );
        assert_eq!(clone.key_cache().len(), 1, "a clone sees the same cache");
        assert!(b.key_cache().is_empty(), "another genesis state does not");

        let cold = clone.with_key_cache(KeyCache::new());
        assert!(cold.key_cache().is_empty());
        assert!(!cold.key_cache().shares_with(a.key_cache()));
    }

    #[test]
    fn cold_and_warm_caches_give_the_same_outcomes_and_roots() {
        let member = Keypair::from_seed(1);
        let g = genesis(&member);
        let mut warm = State::genesis(&g).unwrap();
        let first = registrations(&g, &member, 0, 3);
        assert!(warm.apply_block(&CTX, &first).iter().all(Result::is_ok));
        let mut cold = warm.clone();
        cold.set_key_cache(KeyCache::new());
        assert!(!warm.key_cache().is_empty());

        let mut second = registrations(&g, &member, 3, 5);
        if let Some(tx) = second.get_mut(2) {
            tx.signature = Keypair::from_seed(9).sign(TX_NAMESPACE, b"x");
        }
        let ctx = BlockContext {
            height: 2,
            time_ms: 2_000,
        };
        let from_warm = warm.apply_block(&ctx, &second);
        let from_cold = cold.apply_block(&ctx, &second);
        assert_eq!(from_warm, from_cold);
        assert!(from_warm.iter().any(Result::is_err), "the bad signature");
        assert_eq!(warm.root(), cold.root());
    }

    #[test]
    fn cached_checks_match_one_by_one_checks() {
        let member = Keypair::from_seed(1);
        let g = genesis(&member);
        let mut txs = registrations(&g, &member, 0, 6);
        // A stranger's valid transaction, a forged signature and a key that is not a point.
        txs.push(SignedTx::new(
            &g.chain_id,
            &Keypair::from_seed(2),
            0,
            Payload::RegisterUser(RegisterUser {
                user: UserId::new("x.y").unwrap(),
                role: Role::Researcher,
                key: Keypair::from_seed(3).public(),
            }),
        ));
        if let Some(tx) = txs.get_mut(1) {
            tx.body.nonce = 99;
        }
        let mut bad_key = txs.first().cloned().unwrap();
        bad_key.body.signer = (0..=u8::MAX)
            .map(|b| PublicKey::from_bytes([b; 32]))
            .find(|k| !k.is_valid())
            .unwrap();
        txs.push(bad_key);
        let cache = KeyCache::new();
        for n in 0..=txs.len() {
            let batch = &txs[..n];
            let expected: Vec<bool> = batch.iter().map(SignedTx::verify_signature).collect();
            assert_eq!(verify_signatures(batch), expected, "n={n}");
            assert_eq!(verify_signatures_with(&cache, batch), expected, "n={n}");
            assert_eq!(
                verify_signatures_with(&cache, batch),
                expected,
                "n={n}, warm"
            );
        }
        assert_eq!(
            cache.len(),
            2,
            "two valid signer keys, the invalid one not remembered"
        );
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = KeyCache::bounded(2);
        let keys: Vec<PublicKey> = (0..3).map(|i| Keypair::from_seed(i).public()).collect();
        for k in &keys {
            assert!(cache.verifier(k).is_some());
            assert!(cache.len() <= 2);
        }
        assert_eq!(cache.len(), 1, "emptied when full, then the third key");
        assert!(KeyCache::new().is_empty());
        assert_eq!(format!("{:?}", cache), "KeyCache(len=1)");
    }
}
