//! [`LedgerApp`]: the ledger state machine as the application the consortium chain replicates.
//!
//! A block executes on the state of its parent — the committed state, or the last of the
//! unfinalized blocks it builds on — and the result of a block *is* the next state (the state is
//! a persistent trie, so keeping one per unfinalized block costs only the nodes that block
//! wrote). Committing a finalized block makes its state the committed one.
//!
//! With a state store ([`LedgerApp::with_store`], a validator's own disk), each commit also
//! writes what the block changed to the store and keeps the committed state as one stub into
//! it: memory is then the store's cache plus the unfinalized blocks' writes, whatever the
//! state's size, and a restart opens the store at the last committed height
//! ([`Application::resumed`]) and replays only the blocks after it.

use crate::LedgerError;
use crate::execute::{Refusal, execute_block_with};
use bytes::Bytes;
use medspace_chain::Application;
use medspace_chain::recent::Recent;
use medspace_state::trie::disk::NodeStore;
use medspace_state::{State, checkpoint};
use medspace_types::{Genesis, SignedTx};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

/// How many admitted transaction ids a validator remembers as signature-checked.
const VERIFIED_KEPT: usize = 1 << 20;

/// The state after a block, kept for blocks that are not final yet.
#[derive(Clone, Debug)]
pub struct BlockState {
    /// The state after the block.
    pub state: State,
}

/// The ledger state machine as a chain application.
#[derive(Clone, Debug)]
pub struct LedgerApp {
    committed: State,
    height: u64,
    /// Ids of transactions whose signature this node checked at admission, so executing the
    /// block that carries them need not check again.
    verified: Arc<Mutex<Recent<()>>>,
    /// The genesis state (small), for [`Application::at_genesis`].
    genesis: State,
    /// Where committed states are written, if anywhere.
    store: Option<Arc<Mutex<NodeStore>>>,
    /// The height and root the store held when it was opened.
    resumed: Option<(u64, [u8; 32])>,
    /// Write to the store every this many committed blocks (at heights divisible by it).
    store_every: u64,
}

/// Why a state store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("state store at {dir}: {reason}")]
pub struct StoreError {
    /// The store's directory.
    pub dir: String,
    /// What went wrong.
    pub reason: String,
}

impl LedgerApp {
    /// The application at genesis.
    pub fn new(genesis: &Genesis) -> Result<Self, LedgerError> {
        let state = State::genesis(genesis)?;
        Ok(Self {
            committed: state.clone(),
            height: 0,
            verified: Arc::new(Mutex::new(Recent::new(VERIFIED_KEPT))),
            genesis: state,
            store: None,
            resumed: None,
            store_every: 1,
        })
    }

    /// This application keeping its committed state in the store in `dir` (created if
    /// missing), with a node cache of about `cache_bytes`: it starts at what the store last
    /// committed, if anything (the engine checks that against its finalized blocks), and each
    /// commit from now on is written there. A store of another chain is refused.
    pub fn with_store(
        mut self,
        dir: &std::path::Path,
        cache_bytes: usize,
    ) -> Result<Self, StoreError> {
        let err = |reason: String| StoreError {
            dir: dir.display().to_string(),
            reason,
        };
        let (store, committed) =
            NodeStore::open(dir, cache_bytes).map_err(|e| err(e.to_string()))?;
        if let Some(committed) = committed {
            let height = committed.height;
            let state = State::from_store(committed)
                .map_err(|e| err(e.to_string()))?
                .with_key_cache(self.key_cache().clone());
            let ours = self.genesis.chain_id().map_err(|e| err(e.to_string()))?;
            let theirs = state.chain_id().map_err(|e| err(e.to_string()))?;
            if ours != theirs {
                return Err(err(format!(
                    "it holds chain `{theirs}`, this node is of `{ours}`"
                )));
            }
            self.resumed = Some((height, state.root().0));
            self.committed = state;
            self.height = height;
        }
        self.store = Some(Arc::new(Mutex::new(store)));
        Ok(self)
    }

    /// Writes the committed state to the store only at heights divisible by `every` (at least
    /// 1, every block): the top of the trie, which every block rewrites, is then written once
    /// per `every` blocks, at the cost of up to `every - 1` blocks' writes held in memory and
    /// replayed after a crash.
    pub fn store_every(mut self, every: u64) -> Self {
        self.store_every = every.max(1);
        self
    }

    /// The application from the chain genesis' `app` section (a medspace genesis).
    pub fn from_chain_genesis(app: &serde_json::Value) -> Result<Self, LedgerError> {
        let genesis: Genesis = serde_json::from_value(app.clone())
            .map_err(|e| LedgerError::AppGenesis(e.to_string()))?;
        Self::new(&genesis)
    }

    /// The cache of decompressed signer keys this node's admission and blocks share (one per
    /// node, carried by its committed state).
    pub fn key_cache(&self) -> &medspace_state::KeyCache {
        self.committed.key_cache()
    }

    /// The committed state (after the last finalized block).
    pub fn state(&self) -> &State {
        &self.committed
    }

    /// Height of the last committed block.
    pub fn height(&self) -> u64 {
        self.height
    }
}

impl Application for LedgerApp {
    type Diff = Arc<BlockState>;
    type Refusal = Refusal;

    fn precheck(&self, txs: &[Bytes]) -> Vec<Result<(), Refusal>> {
        let mut out: Vec<Result<(), Refusal>> = Vec::with_capacity(txs.len());
        let mut decoded = Vec::with_capacity(txs.len());
        for raw in txs {
            match SignedTx::from_bytes(raw.clone()) {
                Ok(tx) => {
                    decoded.push(tx);
                    out.push(Ok(()));
                }
                Err(e) => out.push(Err(Refusal::Malformed(e))),
            }
        }
        let mut checked =
            medspace_state::verify_signatures_with(self.committed.key_cache(), &decoded)
                .into_iter();
        let mut signers = decoded.iter();
        for o in out.iter_mut().filter(|o| o.is_ok()) {
            let good = checked.next().unwrap_or(false);
            let signer = signers.next();
            if !good {
                *o = Err(Refusal::Rules(medspace_state::TxError::BadSignature {
                    signer: signer.map(|t| t.body.signer.to_hex()).unwrap_or_default(),
                }));
            }
        }
        out
    }

    /// Admission of a transaction whose decoding and signature [`Application::precheck`]
    /// accepted; remembers its id as signature-checked so that executing it skips the check.
    fn check_prechecked(&self, tx: &[u8]) -> Result<[u8; 32], Refusal> {
        let decoded = SignedTx::from_bytes(Bytes::copy_from_slice(tx))?;
        self.committed.check_admission(&decoded)?;
        let id = medspace_chain::block::tx_hash(tx);
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, ());
        Ok(id)
    }

    fn execute(
        &self,
        pending: &[&Self::Diff],
        height: u64,
        time_ms: u64,
        txs: &[Bytes],
    ) -> (Self::Diff, [u8; 32], Vec<Result<(), Refusal>>) {
        let mut state = pending
            .last()
            .map_or_else(|| self.committed.clone(), |d| d.state.clone());
        let known: HashSet<[u8; 32]> = {
            let cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            txs.iter()
                .map(|t| medspace_chain::block::tx_hash(t))
                .filter(|id| cache.get(id).is_some())
                .collect()
        };
        let outcomes =
            execute_block_with(&mut state, height, time_ms, txs, &|id| known.contains(id))
                .into_iter()
                .map(|(_, r)| r.map(|_| ()))
                .collect();
        let root = state.root().0;
        (Arc::new(BlockState { state }), root, outcomes)
    }

    fn commit(&mut self, height: u64, diff: &Self::Diff) -> [u8; 32] {
        self.committed = diff.state.clone();
        self.height = height;
        if let Some(store) = &self.store
            && height.is_multiple_of(self.store_every)
        {
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            match self.committed.persist(&mut store, height) {
                Ok(stored) => self.committed = stored,
                // The state is whole in memory; a restart resumes from the last good commit.
                Err(e) => tracing::error!(height, error = %e, "ledger.store: commit not written"),
            }
        }
        self.committed.root().0
    }

    fn genesis_root(&self) -> [u8; 32] {
        self.genesis.root().0
    }

    fn resumed(&self) -> Option<(u64, [u8; 32])> {
        self.resumed
    }

    fn at_genesis(&self) -> Result<Self, String> {
        Ok(Self {
            committed: self
                .genesis
                .clone()
                .with_key_cache(self.key_cache().clone()),
            height: 0,
            resumed: None,
            ..self.clone()
        })
    }

    fn root(&self) -> [u8; 32] {
        self.committed.root().0
    }

    fn checkpoint_reader(
        &self,
        height: u64,
        time_ms: u64,
    ) -> Option<Box<dyn std::io::Read + Send>> {
        // A state store that cannot be read fails the reader (the node's next block then halts
        // it at the root check); the writer skips the height.
        (height == self.height).then(|| {
            Box::new(checkpoint::Reader::new(&self.committed, height, time_ms))
                as Box<dyn std::io::Read + Send>
        })
    }

    fn checkpoint_height(&self, bytes: &[u8]) -> Option<u64> {
        checkpoint::summary(bytes).ok().map(|s| s.height)
    }

    fn checkpoint_header_len(&self) -> usize {
        checkpoint::HEADER_LEN
    }

    fn restoring(
        &self,
        height: u64,
        time_ms: u64,
        root: [u8; 32],
    ) -> Result<Box<dyn medspace_chain::Restoring<Self>>, String> {
        let expect = (height, time_ms, root);
        let how = match &self.store {
            // With a store, the checkpoint is built straight into it, so memory stays that of
            // the store's cache whatever the state's size; and only once its header names the
            // certified height, time and root, and its records hash to that root: a refused
            // checkpoint leaves the store as it was.
            Some(store) => {
                let held = store.lock().unwrap_or_else(PoisonError::into_inner);
                match held.committed() {
                    // The store holds that state already (the same checkpoint restored again,
                    // or the store's own commit after the application was set back to
                    // genesis): exactly the certified root at that height, so only the
                    // checkpoint's header is still checked and nothing is written twice.
                    Some(done) if done.height == height && done.trie.root_hash().0 == root => {
                        How::Already {
                            done,
                            head: Vec::new(),
                        }
                    }
                    _ => How::Store {
                        store: store.clone(),
                        restore: Some(Box::new(checkpoint::Restore::new(Some(expect)))),
                    },
                }
            }
            None => How::Memory(Vec::new()),
        };
        Ok(Box::new(LedgerRestoring {
            app: self.clone(),
            expect,
            how,
        }))
    }

    fn restored(&self, height: u64, root: [u8; 32]) -> Result<Self, String> {
        if self.height == height && self.committed.root().0 == root {
            Ok(self.clone())
        } else {
            Err(format!(
                "the application is at height={}, not at the synced height={height} and its root",
                self.height
            ))
        }
    }
}

impl LedgerApp {
    /// This application with `state` committed at `height`.
    fn at(&self, state: State, height: u64) -> Self {
        Self {
            // The node's key cache stays the one its admission shares.
            committed: state.with_key_cache(self.key_cache().clone()),
            height,
            resumed: None,
            ..self.clone()
        }
    }
}

/// A checkpoint being restored into a [`LedgerApp`] ([`Application::restoring`]).
struct LedgerRestoring {
    app: LedgerApp,
    /// The certified block's height, time and state root.
    expect: (u64, u64, [u8; 32]),
    how: How,
}

enum How {
    /// Built into the node's store as it arrives (the lock taken per piece).
    Store {
        store: Arc<Mutex<NodeStore>>,
        /// `None` once finished.
        restore: Option<Box<checkpoint::Restore>>,
    },
    /// The store holds the certified state already: the header is checked, the rest ignored.
    Already {
        done: medspace_state::trie::disk::Committed,
        head: Vec<u8>,
    },
    /// No store: the state lives in memory, and so does the checkpoint until it is decoded.
    Memory(Vec<u8>),
}

impl medspace_chain::Restoring<LedgerApp> for LedgerRestoring {
    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        match &mut self.how {
            How::Store { store, restore } => {
                let restore = restore.as_mut().ok_or("the restore has finished")?;
                let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
                restore.feed(&mut store, bytes).map_err(|e| e.to_string())
            }
            How::Already { head, .. } => {
                let want = checkpoint::HEADER_LEN.saturating_sub(head.len());
                head.extend_from_slice(bytes.get(..want.min(bytes.len())).unwrap_or_default());
                Ok(())
            }
            How::Memory(all) => {
                all.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn finish(mut self: Box<Self>) -> Result<LedgerApp, String> {
        let (height, time_ms, root) = self.expect;
        let state = match &mut self.how {
            How::Store { store, restore } => {
                let restore = restore.take().ok_or("the restore has finished")?;
                let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
                restore.finish(&mut store).map_err(|e| e.to_string())?.1
            }
            How::Already { done, head } => {
                checkpoint::summary(head)
                    .and_then(|s| s.expect(height, time_ms, &root))
                    .map_err(|e| e.to_string())?;
                State::from_store(done.clone()).map_err(|e| e.to_string())?
            }
            How::Memory(all) => {
                let restored = checkpoint::decode(all).map_err(|e| e.to_string())?;
                restored
                    .summary
                    .expect(height, time_ms, &root)
                    .map_err(|e| e.to_string())?;
                restored.state
            }
        };
        Ok(self.app.at(state, height))
    }
}

impl Drop for LedgerRestoring {
    /// A restore dropped unfinished (its source failed) cuts what it wrote into the store.
    fn drop(&mut self) {
        if let How::Store { store, restore } = &mut self.how
            && let Some(restore) = restore.take()
        {
            restore.abandon(&mut store.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execute::{execute_block, execute_block_with};
    use medspace_types::*;

    fn genesis() -> (Genesis, Keypair) {
        let m = Keypair::from_seed(1);
        let g = medspace_consortium::GenesisBuilder::new("t")
            .unwrap()
            .member("a", MemberKind::Hospital, &m)
            .unwrap()
            .build();
        (g, m)
    }

    fn consent(k: &Keypair, nonce: u64) -> Bytes {
        SignedTx::new(
            &Name::new("t").unwrap(),
            k,
            nonce,
            if nonce == 0 {
                Payload::RegisterPatient(RegisterPatient::attested(
                    &Name::new("t").unwrap(),
                    &k.public(),
                    MemberId::new("a").unwrap(),
                    &Keypair::from_seed(1),
                ))
            } else {
                Payload::SetConsent(SetConsent {
                    purpose: Purpose::Research,
                    study: None,
                    decision: Decision::Allow,
                    l4_opt_in: false,
                })
            },
        )
        .to_bytes()
    }

    #[test]
    fn blocks_build_on_pending_parents_and_commit_in_order() {
        let (g, _) = genesis();
        let mut app = LedgerApp::new(&g).unwrap();
        let p = Keypair::from_seed(9);
        let genesis_root = app.root();
        let (d1, r1, o1) = app.execute(&[], 1, 1000, &[consent(&p, 0)]);
        assert!(o1.iter().all(Result::is_ok));
        // Block 2 on unfinalized block 1: sees the registration.
        let (d2, r2, o2) = app.execute(&[&d1], 2, 2000, &[consent(&p, 1)]);
        assert!(o2.iter().all(Result::is_ok), "{o2:?}");
        assert_ne!(r1, r2);
        assert_eq!(app.root(), genesis_root, "nothing committed yet");
        // The same block executed again gives the same root (determinism).
        assert_eq!(app.execute(&[&d1], 2, 2000, &[consent(&p, 1)]).1, r2);
        assert_eq!(app.commit(1, &d1), r1);
        assert_eq!(app.commit(2, &d2), r2);
        assert_eq!(app.height(), 2);
        // A replay is refused at admission and in a block, changing nothing.
        assert!(matches!(
            app.check_tx(&consent(&p, 1)),
            Err(Refusal::Rules(medspace_state::TxError::Nonce { .. }))
        ));
        let (_, r3, o3) = app.execute(
            &[],
            3,
            3000,
            &[consent(&p, 1), Bytes::from_static(b"garbage")],
        );
        assert!(o3.iter().all(Result::is_err));
        assert_eq!(r3, r2);
    }

    #[test]
    fn a_signers_transactions_run_in_nonce_order_whatever_the_block_order() {
        let (g, _) = genesis();
        let app = LedgerApp::new(&g).unwrap();
        let p = Keypair::from_seed(9);
        let q = Keypair::from_seed(10);
        let (_, root_a, oa) = app.execute(
            &[],
            1,
            1000,
            &[consent(&p, 1), consent(&q, 0), consent(&p, 0)],
        );
        assert!(oa.iter().all(Result::is_ok), "{oa:?}");
        let (_, root_b, _) = app.execute(
            &[],
            1,
            1000,
            &[consent(&p, 0), consent(&q, 0), consent(&p, 1)],
        );
        assert_eq!(root_a, root_b);
    }

    #[test]
    fn skipping_known_signatures_changes_no_outcome() {
        let (g, _) = genesis();
        let p = Keypair::from_seed(9);
        let good = [consent(&p, 0), consent(&p, 1)];
        let mut forged = SignedTx::from_bytes(consent(&Keypair::from_seed(10), 0)).unwrap();
        forged.body.nonce = 1; // the signature no longer matches the body
        let txs = vec![good[0].clone(), forged.to_bytes(), good[1].clone()];
        let mut a = State::genesis(&g).unwrap();
        let full = execute_block(&mut a, 1, 1000, &txs);
        let admitted: Vec<[u8; 32]> = good
            .iter()
            .map(|t| medspace_chain::block::tx_hash(t))
            .collect();
        let mut b = State::genesis(&g).unwrap();
        let skipped = execute_block_with(&mut b, 1, 1000, &txs, &|id| admitted.contains(id));
        assert_eq!(a.root(), b.root());
        let ok = |o: &[([u8; 32], crate::TxOutcome)]| {
            o.iter().map(|(_, r)| r.is_ok()).collect::<Vec<_>>()
        };
        assert_eq!(ok(&full), vec![true, false, true]);
        assert_eq!(ok(&full), ok(&skipped));
        assert!(
            skipped[1]
                .1
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("signature")
        );
    }

    #[test]
    fn check_tx_ids_are_the_chains_tx_hash() {
        let (g, _) = genesis();
        let app = LedgerApp::new(&g).unwrap();
        let tx = consent(&Keypair::from_seed(9), 0);
        assert_eq!(
            app.check_tx(&tx).unwrap(),
            medspace_chain::block::tx_hash(&tx)
        );
        assert!(app.check_tx(b"junk").is_err());
    }

    #[test]
    fn a_batch_precheck_refuses_exactly_the_bad_transactions() {
        let (g, _) = genesis();
        let app = LedgerApp::new(&g).unwrap();
        let mut txs: Vec<Bytes> = (0..12)
            .map(|i| consent(&Keypair::from_seed(100 + i), 0))
            .collect();
        let flip = |tx: &Bytes| {
            let mut b = tx.to_vec();
            if let Some(last) = b.last_mut() {
                *last ^= 1;
            }
            Bytes::from(b)
        };
        txs[3] = flip(&txs[3]);
        txs[8] = flip(&txs[8]);
        txs[5] = Bytes::from_static(b"junk");
        let out = app.precheck(&txs);
        assert_eq!(out.len(), txs.len());
        for (i, o) in out.iter().enumerate() {
            match i {
                3 | 8 => assert!(
                    matches!(
                        o,
                        Err(Refusal::Rules(medspace_state::TxError::BadSignature { .. }))
                    ),
                    "{i}: {o:?}"
                ),
                5 => assert!(o.is_err(), "{i}"),
                _ => assert!(o.is_ok(), "{i}: {o:?}"),
            }
        }
        // The same verdicts one by one (below the batch size) and through the full check.
        for (i, tx) in txs.iter().enumerate() {
            let single = app.precheck(std::slice::from_ref(tx));
            assert_eq!(single[0].is_ok(), out[i].is_ok(), "{i}");
            assert_eq!(app.check_tx(tx).is_ok(), out[i].is_ok(), "{i}");
        }
        // Admission after a precheck still applies the stateful rules: an unknown signer.
        assert!(
            app.check_prechecked(&consent(&Keypair::from_seed(100), 1))
                .is_err()
        );
    }
}
