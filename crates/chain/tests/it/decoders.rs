//! Every decoder of the chain fed arbitrary bytes and damaged valid input (a flipped bit, a
//! truncation, bytes appended): none panics, each answers with its typed error (or `None`), and
//! whatever it does accept is exactly what its encoder writes.
//!
//! - blocks (`Block` from the codec, header included), with the validators' limits and a
//!   follower's;
//! - the transaction batch framing (`decode_tx_batch`: gossip messages and `POST /v1/txs`
//!   bodies, the HTTP API's only parser of raw bytes — a single `POST /v1/tx` body goes to the
//!   application's admission, here the counter application's `decode_tx`);
//! - the finalized-block wire form (`ChainCheck::decode` of `encode_finalized`), with real
//!   quorum certificates: a damaged one never passes `ChainCheck::check` as another block;
//! - an observer's block log file (`BlockLog::read` / `BlockLog::open`);
//! - a node's files: the TOML config, the genesis file, the key file.
//!
//! Case counts are small so the whole binary runs in seconds; `MEDSPACE_DECODER_SCALE=n` runs
//! `n` times as many.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
use bytes::Bytes;
use commonware_codec::{Decode as _, Encode as _};
use commonware_consensus::{
    simplex::types::{Finalization, Finalize, Proposal},
    types::{Epoch, Round, View},
};
use commonware_cryptography::{Digestible as _, Signer as _, sha256::Digest};
use commonware_parallel::Sequential;
use commonware_utils::{iter::NonEmpty, ordered::Set};
use medspace_chain::{
    block::{Block, BlockLimits},
    engine::{
        BlockFinalization, GOSSIP_BATCH_TXS, PublicKey, Scheme, decode_tx_batch, encode_tx_batch,
    },
    follow::{BlockLog, ChainCheck, FollowError, LogError, encode_finalized},
    node::{Genesis, GenesisValidator, NodeConfig, NodeError, load_key},
    testing::{decode_tx, sign_tx, sim, test_key},
};
use proptest::prelude::*;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// A change to valid input.
#[derive(Clone, Debug)]
enum Damage {
    /// Flip bit `bit` of the byte at `at` (modulo the length).
    Flip { at: usize, bit: u8 },
    /// Keep only the first `at` bytes (modulo the length: always a strict prefix).
    Truncate { at: usize },
    /// Append these bytes (at least one).
    Extend(Vec<u8>),
}

impl Damage {
    fn apply(&self, valid: &[u8]) -> Vec<u8> {
        let mut out = valid.to_vec();
        match self {
            Self::Flip { at, bit } => {
                if !out.is_empty() {
                    let i = at % out.len();
                    out[i] ^= 1 << (bit % 8);
                }
            }
            Self::Truncate { at } => out.truncate(at % valid.len().max(1)),
            Self::Extend(more) => out.extend_from_slice(more),
        }
        out
    }
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
        any::<usize>().prop_map(|at| Damage::Truncate { at }),
        proptest::collection::vec(any::<u8>(), 1..24).prop_map(Damage::Extend),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn txs(max_txs: usize, max_len: usize) -> impl Strategy<Value = Vec<Bytes>> {
    proptest::collection::vec(bytes(max_len).prop_map(Bytes::from), 0..max_txs)
}

/// `cases` per property, times `MEDSPACE_DECODER_SCALE` (default 1) for a longer search.
fn config(cases: u32) -> ProptestConfig {
    let scale = std::env::var("MEDSPACE_DECODER_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    ProptestConfig {
        cases: cases.saturating_mul(scale),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Blocks.

/// What a follower accepts (no limits of its own).
const FOLLOWER: BlockLimits = BlockLimits {
    max_txs: usize::MAX / 4,
    max_tx_bytes: usize::MAX / 4,
    max_block_bytes: usize::MAX / 4,
};

/// Decodes a block; whatever decodes re-encodes to the same bytes, respects `limits`, and its
/// digest is its header's.
fn check_block(raw: &[u8], limits: &BlockLimits) -> Result<Block, commonware_codec::Error> {
    let block = Block::decode_cfg(Bytes::copy_from_slice(raw), limits)?;
    assert_eq!(block.encode().as_ref(), raw, "accepted bytes are canonical");
    assert_eq!(block.digest(), block.header.digest());
    assert!(block.txs.len() <= limits.max_txs);
    assert!(block.txs.iter().all(|t| t.len() <= limits.max_tx_bytes));
    assert!(block.tx_bytes() <= limits.max_block_bytes);
    Ok(block)
}

fn block_strategy() -> impl Strategy<Value = Block> {
    (txs(6, 48), any::<u64>(), any::<u64>(), any::<[u8; 32]>()).prop_map(
        |(txs, height, time, root)| Block::new(Digest::from([3u8; 32]), height, time, txs, root),
    )
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn block_from_arbitrary_bytes(raw in bytes(400)) {
        let _ = check_block(&raw, &BlockLimits::default());
        let _ = check_block(&raw, &FOLLOWER);
    }

    #[test]
    fn block_with_small_limits_from_arbitrary_bytes(
        raw in bytes(300),
        max_txs in 0usize..6,
        max_tx_bytes in 0usize..64,
        max_block_bytes in 0usize..128,
    ) {
        let _ = check_block(&raw, &BlockLimits { max_txs, max_tx_bytes, max_block_bytes });
    }

    #[test]
    fn block_header_then_arbitrary_bytes(block in block_strategy(), tail in bytes(200)) {
        // A valid header followed by garbage reaches the transaction decoding.
        let mut raw = block.header.to_bytes().to_vec();
        raw.extend_from_slice(&tail);
        let _ = check_block(&raw, &BlockLimits::default());
        let _ = check_block(&raw, &FOLLOWER);
    }

    #[test]
    fn block_limits_are_exact(block in block_strategy()) {
        // Limits a valid block just meets decode it; one less refuses it.
        let raw = block.encode().to_vec();
        let longest = block.txs.iter().map(Bytes::len).max().unwrap_or(0);
        let exact = BlockLimits {
            max_txs: block.txs.len(),
            max_tx_bytes: longest,
            max_block_bytes: block.tx_bytes(),
        };
        prop_assert_eq!(&check_block(&raw, &exact).expect("within limits"), &block);
        if let Some(max_txs) = exact.max_txs.checked_sub(1) {
            let tighter = BlockLimits { max_txs, ..exact };
            prop_assert!(check_block(&raw, &tighter).is_err());
        }
        if let Some(max_tx_bytes) = longest.checked_sub(1) {
            let tighter = BlockLimits { max_tx_bytes, ..exact };
            prop_assert!(check_block(&raw, &tighter).is_err());
        }
        if let Some(max_block_bytes) = exact.max_block_bytes.checked_sub(1) {
            let tighter = BlockLimits { max_block_bytes, ..exact };
            prop_assert!(check_block(&raw, &tighter).is_err());
        }
    }

    #[test]
    fn damaged_block(block in block_strategy(), damage in damage()) {
        let valid = block.encode().to_vec();
        prop_assert_eq!(&check_block(&valid, &FOLLOWER).expect("valid block"), &block);
        let raw = damage.apply(&valid);
        let decoded = check_block(&raw, &FOLLOWER);
        match damage {
            // A flip may leave a valid block (another height, time or root): then it is that
            // block, with another digest.
            Damage::Flip { .. } => {
                if let Ok(other) = decoded {
                    prop_assert_ne!(other.digest(), block.digest());
                }
            }
            Damage::Truncate { .. } | Damage::Extend(_) => prop_assert!(decoded.is_err()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Transaction batches.

/// Decodes a batch; whatever decodes re-encodes to the same bytes and respects the limits.
fn check_batch(raw: &[u8], max_tx_bytes: usize) -> Option<Vec<Bytes>> {
    let txs = decode_tx_batch(raw, max_tx_bytes)?;
    assert_eq!(
        encode_tx_batch(&txs).as_ref(),
        raw,
        "accepted bytes are canonical"
    );
    assert!(txs.len() <= GOSSIP_BATCH_TXS);
    assert!(txs.iter().all(|t| t.len() <= max_tx_bytes));
    Some(txs)
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn tx_batch_from_arbitrary_bytes(raw in bytes(300), max in 0usize..128) {
        let _ = check_batch(&raw, max);
        let _ = check_batch(&raw, usize::MAX);
    }

    #[test]
    fn tx_batch_count_then_arbitrary_bytes(count in 0u32..(GOSSIP_BATCH_TXS as u32 + 2), tail in bytes(300)) {
        // A plausible count reaches the per-transaction framing.
        let mut raw = count.to_be_bytes().to_vec();
        raw.extend_from_slice(&tail);
        let _ = check_batch(&raw, 64);
        let _ = check_batch(&raw, usize::MAX);
    }

    #[test]
    fn tx_batch_limits_are_exact(len in 0usize..64) {
        // The longest transaction allowed decodes, one byte more does not; so for the count.
        let tx = Bytes::from(vec![7u8; len]);
        let raw = encode_tx_batch(std::slice::from_ref(&tx));
        prop_assert_eq!(check_batch(&raw, len), Some(vec![tx]));
        if let Some(max) = len.checked_sub(1) {
            prop_assert_eq!(check_batch(&raw, max), None);
        }
        let full = vec![Bytes::new(); GOSSIP_BATCH_TXS];
        prop_assert_eq!(check_batch(&encode_tx_batch(&full), len).map(|t| t.len()), Some(GOSSIP_BATCH_TXS));
        let over = vec![Bytes::new(); GOSSIP_BATCH_TXS + 1];
        prop_assert_eq!(check_batch(&encode_tx_batch(&over), len), None);
    }

    #[test]
    fn damaged_tx_batch(txs in txs(8, 40), damage in damage()) {
        let valid = encode_tx_batch(&txs);
        prop_assert_eq!(check_batch(&valid, 40), Some(txs.clone()));
        let raw = damage.apply(&valid);
        let decoded = check_batch(&raw, 40);
        if !matches!(damage, Damage::Flip { .. }) {
            prop_assert_eq!(decoded, None);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The finalized-block wire form.

const CHAIN: &str = "medspace-decoders";
const VALIDATORS: usize = 4;

/// A genesis file for the validators of [`sim::keys`] and the signing schemes of each.
fn consortium() -> (Genesis, Vec<Scheme>) {
    let keys = sim::keys(VALIDATORS);
    let peers: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
    let participants = Set::try_from(peers.clone()).expect("distinct validators");
    let schemes = keys
        .iter()
        .map(|k| {
            Scheme::signer(CHAIN.as_bytes(), participants.clone(), k.clone()).expect("validator")
        })
        .collect();
    let address = SocketAddr::from(([127, 0, 0, 1], 1));
    let genesis = Genesis {
        chain_id: CHAIN.into(),
        validators: peers
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                name: format!("v{i}"),
                public_key: hex::encode(k.encode()),
                p2p: address,
                http: address,
                tls_cert: None,
            })
            .collect(),
        observers: Vec::new(),
        app: serde_json::Value::Null,
    };
    (genesis, schemes)
}

/// The next block after genesis with `txs`, and a quorum certificate (`signers` of the
/// validators) finalizing it.
fn finalized(
    check: &ChainCheck,
    schemes: &[Scheme],
    signers: usize,
    txs: Vec<Bytes>,
    view: u64,
) -> (Block, BlockFinalization) {
    let block = Block::new(check.last_digest(), 1, 1_000, txs, [5u8; 32]);
    let proposal = Proposal::new(
        Round::new(Epoch::zero(), View::new(view)),
        View::new(view - 1),
        block.digest(),
    );
    let votes: Vec<Finalize<Scheme, Digest>> = schemes
        .iter()
        .take(signers)
        .map(|s| Finalize::sign(s, proposal.clone()).expect("signer"))
        .collect();
    let votes = NonEmpty::try_new(votes.iter()).expect("votes");
    let fin = Finalization::from_finalizes(&schemes[0], votes, &Sequential).expect("quorum");
    (block, fin)
}

/// Decodes a finalized block as a follower at height 1 does; a decode error names that height.
fn check_finalized(
    check: &ChainCheck,
    raw: &[u8],
) -> Result<(Block, BlockFinalization), FollowError> {
    let decoded = check.decode(1, raw);
    if let Err(e) = &decoded {
        assert!(matches!(e, FollowError::Decode { height: 1, .. }), "{e}");
    }
    decoded
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn finalized_block_from_arbitrary_bytes(raw in bytes(600), height in any::<u64>()) {
        let (genesis, _) = consortium();
        let check = ChainCheck::new(&genesis, [0u8; 32]).expect("genesis");
        if let Err(e) = check.decode(height, &raw) {
            prop_assert!(matches!(e, FollowError::Decode { height: h, .. } if h == height), "{}", e);
        }
    }

    #[test]
    fn valid_block_then_arbitrary_certificate_bytes(txs in txs(4, 32), tail in bytes(400)) {
        // A valid block followed by garbage reaches the certificate decoding.
        let (genesis, _) = consortium();
        let check = ChainCheck::new(&genesis, [0u8; 32]).expect("genesis");
        let block = Block::new(check.last_digest(), 1, 1_000, txs, [5u8; 32]);
        let mut raw = block.encode().to_vec();
        raw.extend_from_slice(&tail);
        if let Ok((b, fin)) = check_finalized(&check, &raw) {
            prop_assert_eq!(&b, &block);
            prop_assert!(check.check(&b, &fin).is_err(), "garbage is no certificate");
        }
    }

    #[test]
    fn damaged_finalized_block(
        txs in txs(4, 32),
        signers in 3usize..=VALIDATORS,
        view in 1u64..1_000,
        damage in damage(),
    ) {
        let (genesis, schemes) = consortium();
        let check = ChainCheck::new(&genesis, [0u8; 32]).expect("genesis");
        let (block, fin) = finalized(&check, &schemes, signers, txs, view);
        let valid = encode_finalized(&block, &fin);
        let (b, f) = check_finalized(&check, &valid).expect("valid wire form");
        prop_assert_eq!(&b, &block);
        prop_assert!(check.check(&b, &f).is_ok());

        let raw = damage.apply(&valid);
        let decoded = check_finalized(&check, &raw);
        match damage {
            Damage::Truncate { .. } | Damage::Extend(_) => prop_assert!(decoded.is_err()),
            // Whatever a flip leaves decodable passes the check only as the block and certificate
            // that were sent.
            Damage::Flip { .. } => {
                if let Ok((b, f)) = decoded
                    && check.check(&b, &f).is_ok()
                {
                    prop_assert_eq!(&b, &block);
                    prop_assert_eq!(f.encode(), fin.encode());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// An observer's block log.

/// A fresh path for one file in the temporary directory (each case removes its files).
fn log_path() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "medspace-decoders-{}-{}.log",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The file form of `entries` (what [`BlockLog::append`] writes for each).
fn framed(entries: &[Vec<u8>]) -> Vec<u8> {
    let path = log_path();
    let (mut log, _) = BlockLog::open(&path).expect("new log");
    for e in entries {
        log.append(e).expect("append");
    }
    drop(log);
    let data = std::fs::read(&path).expect("read");
    let _ = std::fs::remove_file(&path);
    data
}

/// Reads and opens a log holding `data`; checks that both agree and that what they accept is a
/// framed prefix of `data`. Returns the entries and the corrupt height.
fn check_log(data: &[u8]) -> (Vec<Vec<u8>>, Option<u64>) {
    let path = log_path();
    std::fs::write(&path, data).expect("write");
    let (entries, corrupt) = BlockLog::read(&path).expect("a readable file reads");
    let prefix = framed(&entries);
    assert!(
        data.starts_with(&prefix),
        "entries are a prefix of the file"
    );
    match (BlockLog::open(&path), corrupt) {
        (Err(LogError::Corrupt { height, .. }), Some(c)) => {
            assert_eq!(height, c);
            assert_eq!(c, entries.len() as u64 + 1, "the first entry not returned");
            assert_eq!(std::fs::read(&path).expect("read"), data, "left as it was");
        }
        (Ok((_, opened)), None) => {
            assert_eq!(opened, entries);
            // An incomplete last entry is cut off.
            assert_eq!(std::fs::read(&path).expect("read"), prefix);
        }
        (Ok(_), Some(c)) => panic!("opened a log with a corrupt entry at height={c}"),
        (Err(e), None) => panic!("open failed where read found no damage: {e}"),
        (Err(e), Some(_)) => panic!("unexpected error: {e}"),
    }
    let _ = std::fs::remove_file(&path);
    (entries, corrupt)
}

/// Where entry `i` of `entries` starts in their file form, and where its length field ends.
fn entry_starts(entries: &[Vec<u8>]) -> Vec<usize> {
    let mut at = 0;
    entries
        .iter()
        .map(|e| {
            let start = at;
            at += framed(std::slice::from_ref(e)).len();
            start
        })
        .collect()
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn block_log_from_arbitrary_bytes(data in bytes(300)) {
        let _ = check_log(&data);
    }

    #[test]
    fn block_log_from_plausible_lengths(entries in proptest::collection::vec((0u32..64, bytes(80)), 0..5)) {
        // Length fields that fit the file reach the checksum comparison.
        let mut data = Vec::new();
        for (len, body) in entries {
            data.extend_from_slice(&len.to_be_bytes());
            data.extend_from_slice(&body);
        }
        let _ = check_log(&data);
    }

    #[test]
    fn damaged_block_log(entries in proptest::collection::vec(bytes(40), 1..5), damage in damage()) {
        let valid = framed(&entries);
        prop_assert_eq!(check_log(&valid), (entries.clone(), None));
        let raw = damage.apply(&valid);
        let (read, corrupt) = check_log(&raw);
        let starts = entry_starts(&entries);
        match damage {
            Damage::Truncate { at } => {
                // The complete entries before the cut, and no damage (a torn tail).
                let at = at % valid.len();
                let complete = entries
                    .iter()
                    .zip(&starts)
                    .take_while(|(e, s)| **s + framed(std::slice::from_ref(*e)).len() <= at)
                    .count();
                prop_assert_eq!(read, entries[..complete].to_vec());
                prop_assert_eq!(corrupt, None);
            }
            Damage::Extend(_) => {
                // Every entry; the extra bytes are a torn tail or a corrupt entry after them.
                prop_assert_eq!(&read, &entries);
                prop_assert!(corrupt.is_none() || corrupt == Some(entries.len() as u64 + 1));
            }
            Damage::Flip { at, .. } => {
                // The entries before the damaged one; the damaged one is named, except when the
                // flip is in its length field and the length now runs past the end of the file,
                // which looks like a torn tail.
                let at = at % valid.len();
                let hit = starts.iter().rposition(|s| *s <= at).expect("some entry");
                prop_assert_eq!(read, entries[..hit].to_vec());
                let in_length = at < starts[hit] + 4;
                prop_assert!(
                    corrupt == Some(hit as u64 + 1) || (in_length && corrupt.is_none()),
                    "flip at={} entry={} corrupt={:?}", at, hit, corrupt
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Transactions of the counter application (the body of `POST /v1/tx` in the tests).

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn counter_tx_from_arbitrary_bytes(raw in bytes(200)) {
        let _ = decode_tx(&raw);
    }

    #[test]
    fn damaged_counter_tx(seed in 0u64..8, nonce in any::<u64>(), key in "[a-z]{0,12}", delta in any::<i64>(), damage in damage()) {
        let valid = sign_tx(&test_key(seed), CHAIN, nonce, &key, delta);
        prop_assert!(decode_tx(&valid).is_ok());
        // Every byte is signed or is the signature: any damage is refused.
        prop_assert!(decode_tx(&damage.apply(&valid)).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// A node's files.

/// Writes `data` to a fresh file and gives its path.
fn file_with(data: &[u8]) -> PathBuf {
    let path = log_path().with_extension("file");
    std::fs::write(&path, data).expect("write");
    path
}

/// A file's content refused as `what`, naming the file: invalid, or not text at all (which the
/// loaders report as a read error).
/// Plain key files allowed (what these tests feed is hex or garbage, never sealed).
fn plain_allowed() -> medspace_seal::Unlock {
    medspace_seal::Unlock {
        passphrase: None,
        allow_plain: true,
    }
}

fn is_refused(e: &NodeError, what: &str, path: &Path) -> bool {
    let file = path.display().to_string();
    match e {
        NodeError::Invalid {
            what: w, path: p, ..
        } => *w == what && *p == file,
        NodeError::Io { path: p, error } => *p == file && error.contains("UTF-8"),
        NodeError::Key { path: p, .. } => what == "key file" && *p == file,
        NodeError::Engine(_) | NodeError::StateSync { .. } => false,
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn node_config_from_arbitrary_text(text in "\\PC{0,200}") {
        let _ = NodeConfig::from_toml(&text, Path::new("/base"));
    }

    #[test]
    fn node_config_from_plausible_toml(
        section in prop::sample::select(vec!["node", "p2p", "http", "consensus", "mempool", "other"]),
        key in "[a-z_]{1,24}",
        value in prop_oneof![any::<i64>().prop_map(|v| v.to_string()), "\"\\PC{0,20}\"", Just("[".to_string())],
    ) {
        let text = format!("[{section}]\n{key} = {value}\n");
        if let Ok(c) = NodeConfig::from_toml(&text, Path::new("/base")) {
            prop_assert!(c.validate().is_ok());
        }
    }

    #[test]
    fn genesis_and_key_files_from_arbitrary_bytes(data in bytes(200)) {
        let path = file_with(&data);
        if let Err(e) = Genesis::load(&path) {
            prop_assert!(is_refused(&e, "genesis", &path), "{}", e);
        }
        if let Err(e) = load_key(&path, &plain_allowed()) {
            prop_assert!(is_refused(&e, "key file", &path), "{}", e);
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn damaged_genesis_file(damage in damage()) {
        let (genesis, _) = consortium();
        let valid = serde_json::to_vec_pretty(&genesis).expect("json");
        let path = file_with(&damage.apply(&valid));
        match Genesis::load(&path) {
            Ok(g) => prop_assert!(!g.validators.is_empty() && g.validator_keys().is_ok()),
            Err(e) => prop_assert!(is_refused(&e, "genesis", &path), "{}", e),
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn damaged_key_file(seed in any::<u64>(), damage in damage()) {
        let key = commonware_cryptography::ed25519::PrivateKey::from_seed(seed);
        let valid = hex::encode(key.encode());
        let path = file_with(&damage.apply(valid.as_bytes()));
        if let Err(e) = load_key(&path, &plain_allowed()) {
            prop_assert!(is_refused(&e, "key file", &path), "{}", e);
        }
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn pruning_without_checkpoints_is_refused_at_load() {
    let text = "[consensus]\nprune = true\ncheckpoint_every = 0\n";
    assert!(NodeConfig::from_toml(text, Path::new("/base")).is_err());
    let text = "[consensus]\nprune = true\nsync_from = \"hospital-a\"\n";
    let c = NodeConfig::from_toml(text, Path::new("/base")).expect("prunes with checkpoints");
    assert!(c.consensus.prune && !c.consensus.sync_fallback_genesis);
    assert_eq!(c.consensus.sync_from.as_deref(), Some("hospital-a"));
}
