//! Batch verification of the signatures of a block, and the memo of decompressed signer keys.

use commonware_cryptography::{BatchEntry, BatchVerifier, ed25519};
use commonware_parallel::Sequential;
use medspace_types::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Decompressed signer keys, memoized: decompressing a point (a field square root) costs about
/// as much as the rest of a signature check, and the same institutions, users and patients sign
/// transaction after transaction. A pure function's memo: it cannot change any outcome.
fn verifier_of(key: &PublicKey) -> Option<ed25519::PublicKey> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    const MAX: usize = 1 << 16;
    static CACHE: OnceLock<Mutex<HashMap<PublicKey, ed25519::PublicKey>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(map) = cache.lock()
        && let Some(k) = map.get(key)
    {
        return Some(k.clone());
    }
    let k = key.verifier()?;
    if let Ok(mut map) = cache.lock() {
        if map.len() >= MAX {
            map.clear();
        }
        map.insert(key.clone(), k.clone());
    }
    Some(k)
}

/// Below this many signatures a batch costs more than checking them one by one.
const BATCH_FROM: usize = 3;

/// Checks every signature of a block, in one batch when all are good.
pub fn verify_signatures(txs: &[SignedTx]) -> Vec<bool> {
    if txs.len() < BATCH_FROM {
        return txs
            .iter()
            .map(|t| {
                verifier_of(&t.body.signer).is_some_and(|k| {
                    commonware_cryptography::Verifier::verify(
                        &k,
                        TX_NAMESPACE,
                        &commonware_codec::Encode::encode(&t.body),
                        &t.signature.0,
                    )
                })
            })
            .collect();
    }
    let bodies: Vec<bytes::Bytes> = txs
        .iter()
        .map(|t| commonware_codec::Encode::encode(&t.body))
        .collect();
    // The batch's random coefficients must be unpredictable to whoever chose the signatures:
    // derive them from a hash of the whole batch (bodies and signatures), which keeps the state
    // machine free of ambient randomness and every node's outcome identical.
    let mut seed = commonware_cryptography::Sha256::default();
    {
        use commonware_cryptography::Hasher as _;
        seed.update(b"medspace/batch/v1");
        for (body, tx) in bodies.iter().zip(txs) {
            seed.update(body);
            seed.update(tx.signature.0.as_ref());
        }
    }
    let (_, seed) = commonware_cryptography::Hasher::finalize(seed);
    let mut rng = ChaCha20Rng::from_seed(seed.0);
    let signers: Vec<Option<ed25519::PublicKey>> =
        txs.iter().map(|t| verifier_of(&t.body.signer)).collect();
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
