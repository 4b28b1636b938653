//! An in-process ledger: the state machine driven block by block on this machine, with no
//! consensus. Used by the demo and the benchmarks; the chain replicates exactly the same
//! `apply_block` across validators.

use anyhow::Context;
use medspace_state::{BlockContext, Receipt, State};
use medspace_types::*;

/// A single-process ledger that seals one block per [`Local::block`] call.
pub struct Local {
    pub state: State,
    pub chain_id: Name,
    pub height: u64,
    pub time_ms: u64,
    pending: Vec<SignedTx>,
}

impl Local {
    /// Starts from genesis.
    pub fn new(genesis: &Genesis) -> anyhow::Result<Self> {
        Ok(Self {
            state: State::genesis(genesis)?,
            chain_id: genesis.chain_id.clone(),
            height: 0,
            time_ms: genesis.time_ms,
            pending: Vec::new(),
        })
    }

    /// Signs a transaction with the signer's next nonce (counting pending ones).
    pub fn sign(&self, key: &Keypair, payload: Payload) -> anyhow::Result<SignedTx> {
        let pk = key.public();
        let queued = self.pending.iter().filter(|t| t.body.signer == pk).count() as u64;
        let nonce = self.state.next_nonce(&pk)? + queued;
        Ok(SignedTx::new(&self.chain_id, key, nonce, payload))
    }

    /// Queues a transaction for the next block.
    pub fn submit(&mut self, key: &Keypair, payload: Payload) -> anyhow::Result<Hash> {
        let tx = self.sign(key, payload)?;
        let id = tx.id();
        self.pending.push(tx);
        Ok(id)
    }

    /// Seals the queued transactions into a block `step_ms` after the previous one.
    pub fn block(&mut self, step_ms: u64) -> Vec<Result<Receipt, medspace_state::TxError>> {
        self.height += 1;
        self.time_ms += step_ms;
        let ctx = BlockContext {
            height: self.height,
            time_ms: self.time_ms,
        };
        let txs = std::mem::take(&mut self.pending);
        self.state.apply_block(&ctx, &txs)
    }

    /// Seals the queued transactions and insists that all are accepted.
    pub fn must_block(&mut self, step_ms: u64) -> anyhow::Result<Vec<Receipt>> {
        self.block(step_ms)
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.with_context(|| format!("transaction {i} of block {} refused", self.height))
            })
            .collect()
    }
}
