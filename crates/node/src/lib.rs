//! medspace-node: the ledger state machine ([`medspace_state::State`]) as the application the
//! consortium chain ([`medspace_chain`]) replicates, and the node's ledger-read API over it.
//!
//! [`LedgerApp`] implements the chain's `Application`: a block is executed on the state of its
//! parent — the committed state, or the last of the unfinalized blocks it builds on — and the
//! result of a block *is* the next state (the state is a persistent trie, so keeping one per
//! unfinalized block costs only the nodes that block wrote). Committing a finalized block makes
//! its state the committed one.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use bytes::Bytes;
use medspace_chain::Application;
use medspace_state::{BlockContext, State};
use medspace_types::{Genesis, SignedTx};
use std::sync::Arc;

pub mod follow;

/// The ledger benchmark's workload: the real state machine, and patients who each register
/// their key and then set a research consent (two signed transactions per patient, the
/// registrations first; a patient's two go to the same validator).
pub fn bench_workload(txs: usize) -> Result<medspace_chain::bench::Workload<LedgerApp>, String> {
    use medspace_types::*;
    let chain = Name::new(medspace_chain::bench::BENCH_CHAIN).map_err(|e| e.to_string())?;
    let member = Keypair::from_seed(u64::MAX);
    let genesis = Genesis {
        chain_id: chain.clone(),
        time_ms: 0,
        members: vec![GenesisMember {
            member: Member {
                id: MemberId::new("hospital-a").map_err(|e| e.to_string())?,
                name: Text::new("Hospital A").map_err(|e| e.to_string())?,
                kind: MemberKind::Hospital,
                key: member.public(),
                agreement_key: Hash::default(),
            },
            balance: 0,
        }],
        users: vec![],
        policy: Policy::default(),
    };
    let app_genesis = serde_json::to_value(&genesis).map_err(|e| e.to_string())?;
    // All registrations first, then the consents of the same patients in the same order: a
    // validator admits a patient's consent only once the registration is committed.
    let patients = txs.div_ceil(2);
    let keys: Vec<Keypair> = (0..patients)
        .map(|i| Keypair::from_seed(1 << 32 | i as u64))
        .collect();
    let mut out = Vec::with_capacity(txs);
    let mut route = Vec::with_capacity(txs);
    for (i, key) in keys.iter().enumerate() {
        out.push(
            SignedTx::new(&chain, key, 0, Payload::RegisterPatient(RegisterPatient {})).to_bytes(),
        );
        route.push(i);
    }
    for (i, key) in keys.iter().enumerate().take(txs - patients) {
        out.push(
            SignedTx::new(
                &chain,
                key,
                1,
                Payload::SetConsent(SetConsent {
                    purpose: Purpose::Research,
                    study: None,
                    decision: Decision::Allow,
                    l4_opt_in: false,
                }),
            )
            .to_bytes(),
        );
        route.push(i);
    }
    Ok(medspace_chain::bench::Workload {
        make_app: Box::new(move || LedgerApp::new(&genesis).map_err(|e| e.to_string())),
        app_genesis,
        txs: out,
        route,
    })
}

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
    verified: Arc<std::sync::Mutex<Recent<()>>>,
}

/// The most recent entries keyed by transaction id (bounded; the oldest is forgotten first):
/// a validator's ids of signatures checked at admission, a follower's outcomes.
#[derive(Debug)]
pub(crate) struct Recent<V> {
    map: std::collections::HashMap<[u8; 32], V>,
    order: std::collections::VecDeque<[u8; 32]>,
    keep: usize,
}

impl<V> Recent<V> {
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            map: std::collections::HashMap::new(),
            order: std::collections::VecDeque::new(),
            keep,
        }
    }

    pub(crate) fn insert(&mut self, id: [u8; 32], value: V) {
        if self.map.insert(id, value).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.keep {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    pub(crate) fn get(&self, id: &[u8; 32]) -> Option<&V> {
        self.map.get(id)
    }
}

/// How many admitted transaction ids a validator remembers as signature-checked.
const VERIFIED_KEPT: usize = 1 << 20;

impl LedgerApp {
    /// The application at genesis.
    pub fn new(genesis: &Genesis) -> Result<Self, medspace_state::GenesisError> {
        Ok(Self {
            committed: State::genesis(genesis)?,
            height: 0,
            verified: Arc::new(std::sync::Mutex::new(Recent::new(VERIFIED_KEPT))),
        })
    }

    /// The application genesis from the chain's genesis file (`app` holds a medspace genesis).
    pub fn from_chain_genesis(app: &serde_json::Value) -> Result<Self, String> {
        let genesis: Genesis =
            serde_json::from_value(app.clone()).map_err(|e| format!("application genesis: {e}"))?;
        Self::new(&genesis).map_err(|e| e.to_string())
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

/// Orders each signer's transactions by nonce, keeping every signer's slots where they are, so
/// that a proposer's mempool order never makes a signer's later nonce run first. A pure
/// function of the block's list: every validator executes the same order.
fn nonce_order(txs: Vec<(usize, SignedTx)>) -> Vec<(usize, SignedTx)> {
    use std::collections::BTreeMap;
    let mut by_signer: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
    for (slot, (_, tx)) in txs.iter().enumerate() {
        by_signer
            .entry(tx.body.signer.as_ref().to_vec())
            .or_default()
            .push(slot);
    }
    let mut out: Vec<Option<(usize, SignedTx)>> = txs.into_iter().map(Some).collect();
    for slots in by_signer.values() {
        let mut group: Vec<(usize, SignedTx)> = slots
            .iter()
            .filter_map(|s| out.get_mut(*s).and_then(Option::take))
            .collect();
        group.sort_by_key(|(_, tx)| tx.body.nonce);
        for (slot, item) in slots.iter().zip(group) {
            if let Some(place) = out.get_mut(*slot) {
                *place = Some(item);
            }
        }
    }
    out.into_iter().flatten().collect()
}

/// Executes a block's raw transactions on `state` exactly as every validator does: decode, each
/// signer's transactions in nonce order, one batch signature check, the rules. Returns, in block
/// order, each transaction's id and its receipt or refusal reason. Refusals change nothing.
pub fn execute_block(
    state: &mut State,
    height: u64,
    time_ms: u64,
    txs: &[Bytes],
) -> Vec<([u8; 32], Result<medspace_state::Receipt, String>)> {
    execute_block_with(state, height, time_ms, txs, &|_| false)
}

/// [`execute_block`] skipping the signature check of transactions `verified` says this node
/// already checked (same outcome, less work).
pub fn execute_block_with(
    state: &mut State,
    height: u64,
    time_ms: u64,
    txs: &[Bytes],
    verified: &dyn Fn(&[u8; 32]) -> bool,
) -> Vec<([u8; 32], Result<medspace_state::Receipt, String>)> {
    let mut outcomes: Vec<([u8; 32], Result<medspace_state::Receipt, String>)> = txs
        .iter()
        .map(|raw| {
            (
                medspace_chain::block::tx_hash(raw),
                Err("not executed".to_string()),
            )
        })
        .collect();
    let mut decoded = Vec::with_capacity(txs.len());
    for (i, raw) in txs.iter().enumerate() {
        match SignedTx::from_bytes(raw.clone()) {
            Ok(tx) => decoded.push((i, tx)),
            Err(e) => {
                if let Some(o) = outcomes.get_mut(i) {
                    o.1 = Err(e.to_string());
                }
            }
        }
    }
    let ordered = nonce_order(decoded);
    let list: Vec<SignedTx> = ordered.iter().map(|(_, tx)| tx.clone()).collect();
    let pre: Vec<bool> = ordered
        .iter()
        .map(|(i, _)| outcomes.get(*i).is_some_and(|(id, _)| verified(id)))
        .collect();
    let results = state.apply_block_preverified(&BlockContext { height, time_ms }, &list, &pre);
    for ((i, _), r) in ordered.iter().zip(results) {
        if let Some(o) = outcomes.get_mut(*i) {
            o.1 = r.map_err(|e| e.to_string());
        }
    }
    outcomes
}

impl Application for LedgerApp {
    type Diff = Arc<BlockState>;

    fn precheck(txs: &[Bytes]) -> Vec<Result<(), String>> {
        let mut out: Vec<Result<(), String>> = Vec::with_capacity(txs.len());
        let mut decoded = Vec::with_capacity(txs.len());
        for raw in txs {
            match SignedTx::from_bytes(raw.clone()) {
                Ok(tx) => {
                    decoded.push(tx);
                    out.push(Ok(()));
                }
                Err(e) => out.push(Err(e.to_string())),
            }
        }
        let mut checked = medspace_state::verify_signatures(&decoded).into_iter();
        let mut signers = decoded.iter();
        for o in out.iter_mut().filter(|o| o.is_ok()) {
            let good = checked.next().unwrap_or(false);
            let signer = signers.next();
            if !good {
                *o = Err(medspace_state::TxError::BadSignature {
                    signer: signer.map(|t| t.body.signer.to_hex()).unwrap_or_default(),
                }
                .to_string());
            }
        }
        out
    }

    /// Admission of a transaction whose decoding and signature [`Application::precheck`]
    /// accepted; remembers its id as signature-checked so that executing it skips the check.
    fn check_prechecked(&self, tx: &[u8]) -> Result<[u8; 32], String> {
        let decoded =
            SignedTx::from_bytes(Bytes::copy_from_slice(tx)).map_err(|e| e.to_string())?;
        self.committed
            .check_admission(&decoded)
            .map_err(|e| e.to_string())?;
        let id = medspace_chain::block::tx_hash(tx);
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, ());
        Ok(id)
    }

    fn execute(
        &self,
        pending: &[&Self::Diff],
        height: u64,
        time_ms: u64,
        txs: &[Bytes],
    ) -> (Self::Diff, [u8; 32], Vec<Result<(), String>>) {
        let mut state = pending
            .last()
            .map_or_else(|| self.committed.clone(), |d| d.state.clone());
        let known: std::collections::HashSet<[u8; 32]> = {
            let cache = self
                .verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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
        self.committed.root().0
    }

    fn root(&self) -> [u8; 32] {
        self.committed.root().0
    }
}

/// The node's view for the read API: the committed state of a running chain node.
pub struct NodeLedger {
    /// The engine handle.
    pub handle: medspace_chain::engine::Handle<LedgerApp>,
}

impl medspace_api::Ledger for NodeLedger {
    fn snapshot(&self) -> medspace_api::Snapshot {
        let (state, height) = self.handle.with_app(|a| (a.state().clone(), a.height()));
        let anchor = match self.handle.finalized(height) {
            Some((digest, root)) => serde_json::json!({
                "block": { "height": height, "digest": digest.to_string(), "state_root": medspace_types::Hash(root) },
                "finality": "certificate stored with the block: GET /v1/blocks/{height}",
            }),
            None => serde_json::Value::Null,
        };
        medspace_api::Snapshot {
            state,
            height,
            time_ms: 0,
            anchor,
        }
    }

    fn submit(&self, tx: SignedTx) -> Result<medspace_types::Hash, medspace_api::SubmitError> {
        self.handle
            .submit(tx.to_bytes())
            .map(medspace_types::Hash)
            .map_err(|e| medspace_api::SubmitError::Invalid(e.to_string()))
    }

    fn tx_status(&self, id: &medspace_types::Hash) -> medspace_api::TxStatus {
        use medspace_chain::engine::TxStatus as S;
        match self.handle.status(&id.0) {
            S::Pending => medspace_api::TxStatus::Pending,
            S::Finalized {
                height,
                outcome: Ok(()),
            } => medspace_api::TxStatus::Finalized {
                height,
                receipt: serde_json::Value::Null,
            },
            S::Finalized {
                height,
                outcome: Err(reason),
            } => medspace_api::TxStatus::Refused { height, reason },
            S::Dropped(reason) => medspace_api::TxStatus::Refused { height: 0, reason },
            S::Unknown => medspace_api::TxStatus::Unknown,
        }
    }
}

/// The worker's view of a validator: the committed state, the node's mempool, transaction fates.
struct WorkerView {
    handle: medspace_chain::engine::Handle<LedgerApp>,
}

impl medspace_worker::Ledger for WorkerView {
    fn snapshot(&self) -> (State, u64) {
        self.handle.with_app(|a| (a.state().clone(), a.height()))
    }

    fn submit(&self, tx: SignedTx) -> Result<[u8; 32], String> {
        self.handle.submit(tx.to_bytes()).map_err(|e| e.to_string())
    }

    fn tx_state(&self, id: &[u8; 32]) -> medspace_worker::TxState {
        use medspace_chain::engine::TxStatus as S;
        use medspace_worker::TxState as W;
        match self.handle.status(id) {
            S::Pending => W::Pending,
            S::Finalized { outcome, .. } => W::Final(outcome),
            S::Dropped(reason) => W::Dropped(reason),
            S::Unknown => W::Unknown,
        }
    }
}

/// The node's compute worker, from the `[worker]` section of its config (if any): keys loaded
/// and checked against the genesis before the chain starts.
fn prepare_worker(
    config: &std::path::Path,
    cfg: &medspace_chain::node::NodeConfig,
    genesis: &medspace_chain::node::Genesis,
) -> Result<Option<medspace_worker::config::Prepared>, String> {
    let Some(section) = medspace_worker::config::load_section(config).map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let app = LedgerApp::from_chain_genesis(&genesis.app)?;
    let peers = genesis
        .validators
        .iter()
        .chain(&genesis.observers)
        .map(|v| (v.name.clone(), format!("http://{}", v.http)))
        .collect();
    medspace_worker::config::prepare(
        &section,
        app.state(),
        &genesis.chain_id,
        &peers,
        &cfg.node.data_dir.join("worker"),
    )
    .map(Some)
    .map_err(|e| e.to_string())
}

/// Runs a medspace node from its config file until the process stops. A validator (named in
/// the genesis' validators) runs the chain replicating the ledger, its transaction API, the
/// ledger-read API with proofs and, with a `[worker]` section, the data holder's compute worker
/// ([`medspace_worker`]); an observer (named in its observers) follows the validators,
/// verifying every block, and serves the same read API.
pub fn run(config: &std::path::Path) -> Result<(), String> {
    let cfg = medspace_chain::node::NodeConfig::load(config).map_err(|e| e.to_string())?;
    let genesis =
        medspace_chain::node::Genesis::load(&cfg.node.genesis_file).map_err(|e| e.to_string())?;
    let name = &cfg.node.name;
    if genesis.observers.iter().any(|o| &o.name == name) {
        return follow::run_observer(&cfg, &genesis).map_err(|e| e.to_string());
    }
    if !genesis.validators.iter().any(|v| &v.name == name) {
        return Err(format!(
            "node name={name} is neither a validator nor an observer in {}",
            cfg.node.genesis_file.display()
        ));
    }
    let worker = prepare_worker(config, &cfg, &genesis)?;
    medspace_chain::node::run_node(
        cfg,
        |g| LedgerApp::from_chain_genesis(&g.app),
        move |handle| {
            let mut router = medspace_api::read_router(
                Arc::new(NodeLedger {
                    handle: handle.clone(),
                }),
                medspace_api::Limits::default(),
            );
            if let Some(prepared) = worker {
                let view = Arc::new(WorkerView {
                    handle: handle.clone(),
                });
                match medspace_worker::Worker::start(prepared, view) {
                    Ok(w) => {
                        router = router.merge(w.router());
                        tokio::spawn(async move {
                            let mut seen = handle.height();
                            loop {
                                handle.wait_for_height(seen + 1).await;
                                let now = handle.height();
                                if now <= seen {
                                    break; // the engine stopped
                                }
                                seen = now;
                                w.on_block(now);
                            }
                        });
                    }
                    Err(e) => tracing::error!(error = %e, "node.run: the worker did not start"),
                }
            }
            router
        },
    )
    .map_err(|e| e.to_string())
}

/// Re-verifies a stopped node's stored chain (`medspace audit verify`): a validator's
/// finalized-block archives or an observer's block log, from genesis.
pub fn audit(config: &std::path::Path) -> Result<medspace_chain::audit::AuditReport, String> {
    let cfg = medspace_chain::node::NodeConfig::load(config).map_err(|e| e.to_string())?;
    let genesis =
        medspace_chain::node::Genesis::load(&cfg.node.genesis_file).map_err(|e| e.to_string())?;
    let app = LedgerApp::from_chain_genesis(&genesis.app)?;
    medspace_chain::audit::audit_verify(&cfg.node.data_dir, &cfg.node.name, &genesis, app)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use medspace_types::*;

    fn genesis() -> (Genesis, Keypair) {
        let m = Keypair::from_seed(1);
        let g = Genesis {
            chain_id: Name::new("t").unwrap(),
            time_ms: 0,
            members: vec![GenesisMember {
                member: Member {
                    id: MemberId::new("a").unwrap(),
                    name: Text::new("A").unwrap(),
                    kind: MemberKind::Hospital,
                    key: m.public(),
                    agreement_key: Hash::default(),
                },
                balance: 0,
            }],
            users: vec![],
            policy: Policy::default(),
        };
        (g, m)
    }

    fn consent(k: &Keypair, nonce: u64) -> Bytes {
        SignedTx::new(
            &Name::new("t").unwrap(),
            k,
            nonce,
            if nonce == 0 {
                Payload::RegisterPatient(RegisterPatient {})
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
        assert!(app.check_tx(&consent(&p, 1)).unwrap_err().contains("nonce"));
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
        let ok = |o: &[([u8; 32], Result<medspace_state::Receipt, String>)]| {
            o.iter().map(|(_, r)| r.is_ok()).collect::<Vec<_>>()
        };
        assert_eq!(ok(&full), vec![true, false, true]);
        assert_eq!(ok(&full), ok(&skipped));
        assert!(skipped[1].1.as_ref().unwrap_err().contains("signature"));
    }

    #[test]
    fn recent_forgets_the_oldest_first() {
        let mut r = Recent::new(2);
        r.insert([1; 32], 'a');
        r.insert([2; 32], 'b');
        r.insert([1; 32], 'c'); // an update keeps its place
        r.insert([3; 32], 'd');
        assert_eq!(r.get(&[1; 32]), None);
        assert_eq!((r.get(&[2; 32]), r.get(&[3; 32])), (Some(&'b'), Some(&'d')));
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
        let out = LedgerApp::precheck(&txs);
        assert_eq!(out.len(), txs.len());
        for (i, o) in out.iter().enumerate() {
            match i {
                3 | 8 => assert!(o.as_ref().unwrap_err().contains("signature"), "{i}: {o:?}"),
                5 => assert!(o.is_err(), "{i}"),
                _ => assert!(o.is_ok(), "{i}: {o:?}"),
            }
        }
        // The same verdicts one by one (below the batch size) and through the full check.
        for (i, tx) in txs.iter().enumerate() {
            let single = LedgerApp::precheck(std::slice::from_ref(tx));
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
